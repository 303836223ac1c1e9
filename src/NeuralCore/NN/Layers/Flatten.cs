namespace NeuralCore.NN;

/// <summary>
/// Flattens dimensions <see cref="StartDim"/>..<see cref="EndDim"/> into one (PyTorch's <c>nn.Flatten</c>; by
/// default [N, C, H, W] -> [N, C*H*W]).
/// </summary>
/// <param name="startDim">First dimension to flatten (default 1, keeping the batch).</param>
/// <param name="endDim">Last dimension to flatten (default -1, the last).</param>
public sealed class Flatten(int startDim = 1, int endDim = -1) : Module
{
    /// <summary>First dimension to flatten.</summary>
    public int StartDim { get; } = startDim;

    /// <summary>Last dimension to flatten (negative counts from the end).</summary>
    public int EndDim { get; } = endDim;

    /// <inheritdoc />
    public override Tensor Forward(Tensor input) => input.Flatten(StartDim, EndDim);

    /// <summary>PyTorch's form, e.g. <c>start_dim=1, end_dim=-1</c>.</summary>
    public override string ExtraRepr() => $"start_dim={StartDim}, end_dim={EndDim}";
}
