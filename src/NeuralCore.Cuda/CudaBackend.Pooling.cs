using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using NeuralCore.Backends;
using NeuralCore.Cuda.Interop;

namespace NeuralCore.Cuda;

// Pooling: x [N, C, H, W] -> y [N, C, P, Q], Int32 indices [N, C, P, Q] for max pooling, all contiguous.
// The kernels in pooling.cu do both directions. cuDNN serves forward passes that need no indices (max pooling
// in inference, average pooling) without ceil mode; its backward needs x and y, which Pool2dBackward is not given.
public sealed partial class CudaBackend
{
    private readonly ConcurrentDictionary<(PoolKind, Pool2dParams), (nint Pool, nint X, nint Y)> _poolDescriptors = new();

    /// <summary>The kernels' <c>PoolGeom</c> struct (kernels/pooling.cu).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct PoolGeom
    {
        public int N, C, H, W, KernelH, KernelW, StrideH, StrideW, PadH, PadW, P, Q;

        public static PoolGeom Of(in Pool2dParams p) => new()
        {
            N = p.N, C = p.C, H = p.H, W = p.W, KernelH = p.KernelH, KernelW = p.KernelW, StrideH = p.StrideH, StrideW = p.StrideW,
            PadH = p.PadH, PadW = p.PadW, P = p.P, Q = p.Q,
        };
    }

    /// <inheritdoc />
    public unsafe void Pool2d(PoolKind kind, Tensor x, Tensor y, Tensor? indices, in Pool2dParams p)
    {
        p.Validate();
        if (y.NumElements == 0) return;
        if (UsesCudnn && !p.CeilMode && (kind == PoolKind.Average || indices is null))
        {
            var (pool, xd, yd) = PoolDescriptors(kind, p);
            float one = 1, zero = 0;
            _dev.MakeCurrent();
            Cudnn.Check(Cudnn.cudnnPoolingForward(_dev.CudnnHandle, pool, &one, xd, Ptr(x), &zero, yd, Ptr(y)), "cudnnPoolingForward");
            return;
        }
        var args = new KernelArgs();
        args.Add(Ptr(x)); args.Add(Ptr(y));
        if (kind == PoolKind.Max) args.Add(PtrOrZero(indices));
        args.Add(PoolGeom.Of(p));
        Launch("pooling.cu", kind == PoolKind.Max ? "max_pool2d_forward_f32" : "avg_pool2d_forward_f32", y.NumElements, ref args);
    }

    /// <inheritdoc />
    public void Pool2dBackward(PoolKind kind, Tensor dy, Tensor? indices, Tensor dx, in Pool2dParams p)
    {
        p.Validate();
        if (kind == PoolKind.Max && indices is null)
            throw new ArgumentException("Max pool backward needs the indices of the forward pass; pass the Int32 indices tensor that Pool2d filled.");
        if (dx.NumElements == 0) return;
        var args = new KernelArgs();
        args.Add(Ptr(dy));
        if (kind == PoolKind.Max) args.Add(Ptr(indices!));
        args.Add(Ptr(dx)); args.Add(PoolGeom.Of(p));
        Launch("pooling.cu", kind == PoolKind.Max ? "max_pool2d_backward_f32" : "avg_pool2d_backward_f32", dx.NumElements, ref args);
    }

    private (nint Pool, nint X, nint Y) PoolDescriptors(PoolKind kind, in Pool2dParams p)
    {
        if (_poolDescriptors.TryGetValue((kind, p), out var d)) return d;
        _dev.MakeCurrent();
        Cudnn.Check(Cudnn.cudnnCreatePoolingDescriptor(out var pool), "cudnnCreatePoolingDescriptor");
        Cudnn.Check(Cudnn.cudnnSetPooling2dDescriptor(pool, kind == PoolKind.Max ? Cudnn.PoolingMax : Cudnn.PoolingAverageIncludePadding,
            Cudnn.PropagateNan, p.KernelH, p.KernelW, p.PadH, p.PadW, p.StrideH, p.StrideW), "cudnnSetPooling2dDescriptor");
        Cudnn.Check(Cudnn.cudnnCreateTensorDescriptor(out var x), "cudnnCreateTensorDescriptor");
        Cudnn.Check(Cudnn.cudnnSetTensor4dDescriptor(x, Cudnn.TensorNchw, Cudnn.DataFloat, p.N, p.C, p.H, p.W), "cudnnSetTensor4dDescriptor");
        Cudnn.Check(Cudnn.cudnnCreateTensorDescriptor(out var y), "cudnnCreateTensorDescriptor");
        Cudnn.Check(Cudnn.cudnnSetTensor4dDescriptor(y, Cudnn.TensorNchw, Cudnn.DataFloat, p.N, p.C, p.P, p.Q), "cudnnSetTensor4dDescriptor");
        return _poolDescriptors.GetOrAdd((kind, p), (pool, x, y));
    }
}
