namespace NeuralCore.Backends.Cpu;

// Placeholder until the pooling kernels land (helper-4 replaces this whole file).
public sealed partial class CpuBackend
{
    /// <inheritdoc />
    public void Pool2d(PoolKind kind, Tensor x, Tensor y, Tensor? indices, in Pool2dParams p) => throw new NotSupportedException("pool pending");
    /// <inheritdoc />
    public void Pool2dBackward(PoolKind kind, Tensor dy, Tensor? indices, Tensor dx, in Pool2dParams p) => throw new NotSupportedException("pool pending");
}
