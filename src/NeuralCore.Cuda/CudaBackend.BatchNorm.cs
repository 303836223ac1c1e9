using System.Collections.Concurrent;
using NeuralCore.Cuda.Interop;

namespace NeuralCore.Cuda;

// Batch norm: x, y, dy, dx [N, C, HW]; gamma, beta, saved and running statistics [C]; all contiguous.
// cuDNN's spatial mode sees x as [N, C, HW, 1]; it saves the same mean and 1/sqrt(var + eps) as batchnorm.cu,
// so either path's saved statistics feed either path's backward.
public sealed partial class CudaBackend
{
    private readonly ConcurrentDictionary<(int N, int C, int HW), (nint X, nint Bn)> _bnDescriptors = new();

    /// <inheritdoc />
    public unsafe void BatchNormTraining(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd,
        Tensor? runningMean, Tensor? runningVar, float momentum, float eps, int n, int c, int hw)
    {
        CheckBatchNorm(n, c, hw);
        if ((long)n * hw <= 1)
            throw new ArgumentException($"BatchNorm in training mode needs more than one value per channel, got N={n} and HW={hw}.");
        // cuDNN needs both running statistics or neither, and an epsilon of at least CUDNN_BN_MIN_EPSILON.
        if (UsesCudnn && eps >= Cudnn.BatchNormMinEpsilon && (runningMean is null) == (runningVar is null))
        {
            var (xd, bn) = BatchNormDescriptors(n, c, hw);
            float one = 1, zero = 0;
            _dev.MakeCurrent();
            Cudnn.Check(Cudnn.cudnnBatchNormalizationForwardTraining(_dev.CudnnHandle, Cudnn.BatchNormSpatial, &one, &zero, xd, Ptr(x), xd, Ptr(y),
                bn, Ptr(gamma), Ptr(beta), momentum, PtrOrZero(runningMean), PtrOrZero(runningVar), eps, Ptr(saveMean), Ptr(saveInvStd)),
                "cudnnBatchNormalizationForwardTraining");
            return;
        }
        var stats = new KernelArgs();
        stats.Add(Ptr(x)); stats.Add(Ptr(saveMean)); stats.Add(Ptr(saveInvStd)); stats.Add(PtrOrZero(runningMean)); stats.Add(PtrOrZero(runningVar));
        stats.Add(momentum); stats.Add(eps); stats.Add(n); stats.Add(c); stats.Add(hw);
        LaunchRows("batchnorm.cu", "batch_norm_stats_f32", c, Block, ref stats);
        var apply = new KernelArgs();
        apply.Add(Ptr(x)); apply.Add(Ptr(gamma)); apply.Add(Ptr(beta)); apply.Add(Ptr(saveMean)); apply.Add(Ptr(saveInvStd)); apply.Add(Ptr(y));
        apply.Add(n); apply.Add(c); apply.Add(hw);
        Launch("batchnorm.cu", "batch_norm_apply_f32", (long)n * c * hw, ref apply);
    }

    /// <inheritdoc />
    public unsafe void BatchNormInference(Tensor x, Tensor gamma, Tensor beta, Tensor runningMean, Tensor runningVar, Tensor y,
        float eps, int n, int c, int hw)
    {
        CheckBatchNorm(n, c, hw);
        if ((long)n * hw == 0) return;
        if (UsesCudnn && eps >= Cudnn.BatchNormMinEpsilon)
        {
            var (xd, bn) = BatchNormDescriptors(n, c, hw);
            float one = 1, zero = 0;
            _dev.MakeCurrent();
            Cudnn.Check(Cudnn.cudnnBatchNormalizationForwardInference(_dev.CudnnHandle, Cudnn.BatchNormSpatial, &one, &zero, xd, Ptr(x), xd, Ptr(y),
                bn, Ptr(gamma), Ptr(beta), Ptr(runningMean), Ptr(runningVar), eps), "cudnnBatchNormalizationForwardInference");
            return;
        }
        var args = new KernelArgs();
        args.Add(Ptr(x)); args.Add(Ptr(gamma)); args.Add(Ptr(beta)); args.Add(Ptr(runningMean)); args.Add(Ptr(runningVar)); args.Add(Ptr(y));
        args.Add(eps); args.Add(n); args.Add(c); args.Add(hw);
        Launch("batchnorm.cu", "batch_norm_inference_f32", (long)n * c * hw, ref args);
    }

    /// <inheritdoc />
    public unsafe void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx,
        Tensor dgamma, Tensor dbeta, int n, int c, int hw)
    {
        CheckBatchNorm(n, c, hw);
        if ((long)n * hw == 0)
        {
            _dev.Memset(Ptr(dgamma), (long)c * sizeof(float));
            _dev.Memset(Ptr(dbeta), (long)c * sizeof(float));
            return;
        }
        if (UsesCudnn && (long)n * hw > 1)
        {
            var (xd, bn) = BatchNormDescriptors(n, c, hw);
            float one = 1, zero = 0;
            _dev.MakeCurrent();
            // With the saved mean and inverse std given, cuDNN does not use epsilon; it only has to pass its minimum.
            Cudnn.Check(Cudnn.cudnnBatchNormalizationBackward(_dev.CudnnHandle, Cudnn.BatchNormSpatial, &one, &zero, &one, &zero,
                xd, Ptr(x), xd, Ptr(dy), xd, Ptr(dx), bn, Ptr(gamma), Ptr(dgamma), Ptr(dbeta), Cudnn.BatchNormMinEpsilon,
                Ptr(saveMean), Ptr(saveInvStd)), "cudnnBatchNormalizationBackward");
            return;
        }
        var reduce = new KernelArgs();
        reduce.Add(Ptr(x)); reduce.Add(Ptr(dy)); reduce.Add(Ptr(saveMean)); reduce.Add(Ptr(saveInvStd)); reduce.Add(Ptr(dgamma)); reduce.Add(Ptr(dbeta));
        reduce.Add(n); reduce.Add(c); reduce.Add(hw);
        LaunchRows("batchnorm.cu", "batch_norm_backward_reduce_f32", c, Block, ref reduce);
        var apply = new KernelArgs();
        apply.Add(Ptr(x)); apply.Add(Ptr(dy)); apply.Add(Ptr(gamma)); apply.Add(Ptr(saveMean)); apply.Add(Ptr(saveInvStd));
        apply.Add(Ptr(dgamma)); apply.Add(Ptr(dbeta)); apply.Add(Ptr(dx)); apply.Add(n); apply.Add(c); apply.Add(hw);
        Launch("batchnorm.cu", "batch_norm_backward_apply_f32", (long)n * c * hw, ref apply);
    }

    private (nint X, nint Bn) BatchNormDescriptors(int n, int c, int hw)
    {
        if (_bnDescriptors.TryGetValue((n, c, hw), out var d)) return d;
        _dev.MakeCurrent();
        Cudnn.Check(Cudnn.cudnnCreateTensorDescriptor(out var x), "cudnnCreateTensorDescriptor");
        Cudnn.Check(Cudnn.cudnnSetTensor4dDescriptor(x, Cudnn.TensorNchw, Cudnn.DataFloat, n, c, hw, 1), "cudnnSetTensor4dDescriptor");
        Cudnn.Check(Cudnn.cudnnCreateTensorDescriptor(out var bn), "cudnnCreateTensorDescriptor");
        Cudnn.Check(Cudnn.cudnnSetTensor4dDescriptor(bn, Cudnn.TensorNchw, Cudnn.DataFloat, 1, c, 1, 1), "cudnnSetTensor4dDescriptor");
        return _bnDescriptors.GetOrAdd((n, c, hw), (x, bn));
    }

    private static void CheckBatchNorm(int n, int c, int hw)
    {
        if (n < 0 || c < 1 || hw < 0)
            throw new ArgumentException($"BatchNorm needs N >= 0, C >= 1 and HW >= 0, got N={n}, C={c}, HW={hw}.");
    }
}
