namespace NeuralCore.NN;

// Element-wise activations: output has the input's shape.

/// <summary>max(x, 0) (PyTorch's <c>nn.ReLU</c>).</summary>
public sealed class ReLU : Module
{
    /// <inheritdoc />
    public override Tensor Forward(Tensor input) => input.Relu();
}

/// <summary>min(max(x, 0), 6) (PyTorch's <c>nn.ReLU6</c>).</summary>
public sealed class ReLU6 : Module
{
    /// <inheritdoc />
    public override Tensor Forward(Tensor input) => input.Relu6();
}

/// <summary>x * relu6(x + 3) / 6 (PyTorch's <c>nn.Hardswish</c>, the CP-ResNet stem activation).</summary>
public sealed class Hardswish : Module
{
    /// <inheritdoc />
    public override Tensor Forward(Tensor input) => input.Hardswish();
}

/// <summary>1 / (1 + e^-x) (PyTorch's <c>nn.Sigmoid</c>).</summary>
public sealed class Sigmoid : Module
{
    /// <inheritdoc />
    public override Tensor Forward(Tensor input) => input.Sigmoid();
}

/// <summary>Hyperbolic tangent (PyTorch's <c>nn.Tanh</c>).</summary>
public sealed class Tanh : Module
{
    /// <inheritdoc />
    public override Tensor Forward(Tensor input) => input.Tanh();
}
