namespace NeuralCore.Backends.Cpu;

// Placeholder until the convolution kernels land (helper-4 replaces this whole file).
public sealed partial class CpuBackend
{
    /// <inheritdoc />
    public void Conv2d(Tensor x, Tensor w, Tensor? bias, Tensor y, in Conv2dParams p) => throw new NotSupportedException("conv pending");
    /// <inheritdoc />
    public void Conv2dBackwardData(Tensor dy, Tensor w, Tensor dx, in Conv2dParams p) => throw new NotSupportedException("conv pending");
    /// <inheritdoc />
    public void Conv2dBackwardWeight(Tensor dy, Tensor x, Tensor dw, in Conv2dParams p) => throw new NotSupportedException("conv pending");
}
