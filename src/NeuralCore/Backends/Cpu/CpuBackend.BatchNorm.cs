namespace NeuralCore.Backends.Cpu;

// Placeholder until the batch-norm kernels land (helper-4 replaces this whole file).
public sealed partial class CpuBackend
{
    /// <inheritdoc />
    public void BatchNormTraining(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd, Tensor? runningMean, Tensor? runningVar, float momentum, float eps, int n, int c, int hw) => throw new NotSupportedException("bn pending");
    /// <inheritdoc />
    public void BatchNormInference(Tensor x, Tensor gamma, Tensor beta, Tensor runningMean, Tensor runningVar, Tensor y, float eps, int n, int c, int hw) => throw new NotSupportedException("bn pending");
    /// <inheritdoc />
    public void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx, Tensor dgamma, Tensor dbeta, int n, int c, int hw) => throw new NotSupportedException("bn pending");
}
