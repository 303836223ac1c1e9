namespace NeuralCore.NN;

/// <summary>Returns its input unchanged (PyTorch's <c>nn.Identity</c>), e.g. as the shortcut of a residual block whose widths agree.</summary>
public sealed class Identity : Module
{
    /// <inheritdoc />
    public override Tensor Forward(Tensor input) => input;
}
