namespace NeuralCore.NN;

// Shapes: input [N, C, H, W], output [N, C, P, Q].

/// <summary>2-D max pooling (PyTorch's <c>nn.MaxPool2d</c>; padding counts as -inf; no dilation).</summary>
/// <param name="kernelSize">Window size (R, S).</param>
/// <param name="stride">Step between windows; defaults to the kernel size.</param>
/// <param name="padding">Implicit padding on each side (at most half the kernel).</param>
/// <param name="ceilMode">Round the output size up instead of down (the last window must start inside the input).</param>
public sealed class MaxPool2d(Size2 kernelSize, Size2? stride = null, Size2? padding = null, bool ceilMode = false) : Module
{
    /// <summary>Window size (R, S).</summary>
    public Size2 KernelSize { get; } = kernelSize;

    /// <summary>Step between windows.</summary>
    public Size2 Stride { get; } = stride ?? kernelSize;

    /// <summary>Implicit padding on each side.</summary>
    public Size2 Padding { get; } = padding ?? 0;

    /// <summary>Whether the output size is rounded up.</summary>
    public bool CeilMode { get; } = ceilMode;

    /// <inheritdoc />
    public override Tensor Forward(Tensor input) =>
        Functional.MaxPool2d(input, KernelSize.ToTuple(), Stride.ToTuple(), Padding.ToTuple(), CeilMode);

    /// <summary>PyTorch's form, e.g. <c>kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False</c> (a pair prints as one number when both sizes agree).</summary>
    public override string ExtraRepr() =>
        $"kernel_size={Repr.Size(KernelSize)}, stride={Repr.Size(Stride)}, padding={Repr.Size(Padding)}, dilation=1, ceil_mode={Repr.Bool(CeilMode)}";
}

/// <summary>2-D average pooling (PyTorch's <c>nn.AvgPool2d</c>; zero padding counts in the average).</summary>
/// <param name="kernelSize">Window size (R, S).</param>
/// <param name="stride">Step between windows; defaults to the kernel size.</param>
/// <param name="padding">Implicit zero padding on each side (at most half the kernel).</param>
/// <param name="ceilMode">Round the output size up instead of down.</param>
public sealed class AvgPool2d(Size2 kernelSize, Size2? stride = null, Size2? padding = null, bool ceilMode = false) : Module
{
    /// <summary>Window size (R, S).</summary>
    public Size2 KernelSize { get; } = kernelSize;

    /// <summary>Step between windows.</summary>
    public Size2 Stride { get; } = stride ?? kernelSize;

    /// <summary>Implicit zero padding on each side.</summary>
    public Size2 Padding { get; } = padding ?? 0;

    /// <summary>Whether the output size is rounded up.</summary>
    public bool CeilMode { get; } = ceilMode;

    /// <inheritdoc />
    public override Tensor Forward(Tensor input) =>
        Functional.AvgPool2d(input, KernelSize.ToTuple(), Stride.ToTuple(), Padding.ToTuple(), CeilMode);

    /// <summary>PyTorch's form, e.g. <c>kernel_size=2, stride=2, padding=0</c>.</summary>
    public override string ExtraRepr() =>
        $"kernel_size={Repr.Size(KernelSize)}, stride={Repr.Size(Stride)}, padding={Repr.Size(Padding)}";
}

/// <summary>
/// Adaptive average pooling to a fixed output size (PyTorch's <c>nn.AdaptiveAvgPool2d</c>): output cell (i, j)
/// averages input rows floor(i*H/P) .. ceil((i+1)*H/P) and the same for columns.
/// </summary>
/// <param name="outputSize">Output size (P, Q); an int means square.</param>
public sealed class AdaptiveAvgPool2d(Size2 outputSize) : Module
{
    /// <summary>Output size (P, Q).</summary>
    public Size2 OutputSize { get; } = outputSize;

    /// <inheritdoc />
    public override Tensor Forward(Tensor input) => Functional.AdaptiveAvgPool2d(input, OutputSize.ToTuple());

    /// <summary>PyTorch's form for a tuple argument, e.g. <c>output_size=(1, 1)</c>.</summary>
    public override string ExtraRepr() => $"output_size={OutputSize}";
}
