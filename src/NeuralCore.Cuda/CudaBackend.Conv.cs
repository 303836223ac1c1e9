using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using NeuralCore.Backends;
using NeuralCore.Cuda.Interop;

namespace NeuralCore.Cuda;

// Convolution: x [N, C, H, W], w [K, C/groups, R, S], bias [K], y [N, K, P, Q], all contiguous.
// With cuDNN: one cached plan (descriptors + chosen algorithms) per geometry. Without: im2col of a chunk of
// images into [batch, Cg*R*S, P*Q], then a strided-batched cuBLAS GEMM per group; col2im for the data gradient.
public sealed partial class CudaBackend
{
    private readonly ConcurrentDictionary<Conv2dParams, ConvPlan> _convPlans = new();

    /// <summary>The kernels' <c>ConvGeom</c> struct (kernels/im2col.cu).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct ConvGeom
    {
        public int C, H, W, Cg, R, S, StrideH, StrideW, PadH, PadW, DilationH, DilationW, P, Q;

        public static ConvGeom Of(in Conv2dParams p) => new()
        {
            C = p.C, H = p.H, W = p.W, Cg = p.C / p.Groups, R = p.R, S = p.S, StrideH = p.StrideH, StrideW = p.StrideW,
            PadH = p.PadH, PadW = p.PadW, DilationH = p.DilationH, DilationW = p.DilationW, P = p.P, Q = p.Q,
        };
    }

    /// <inheritdoc />
    public void Conv2d(Tensor x, Tensor w, Tensor? bias, Tensor y, in Conv2dParams p)
    {
        p.Validate();
        if (y.NumElements == 0) return;
        if (UsesCudnn) CudnnConvForward(Ptr(x), Ptr(w), Ptr(y), p);
        else GemmConvForward(Ptr(x), Ptr(w), Ptr(y), p);
        if (bias is not null)
        {
            var args = new KernelArgs();
            args.Add(Ptr(y)); args.Add(Ptr(bias)); args.Add(p.N); args.Add(p.K); args.Add(p.P * p.Q);
            Launch("elementwise.cu", "add_channel_bias_f32", (long)p.N * p.K * p.P * p.Q, ref args);
        }
    }

    /// <inheritdoc />
    public void Conv2dBackwardData(Tensor dy, Tensor w, Tensor dx, in Conv2dParams p)
    {
        p.Validate();
        if (dx.NumElements == 0) return;
        if (UsesCudnn) CudnnConvBackwardData(Ptr(dy), Ptr(w), Ptr(dx), p);
        else GemmConvBackwardData(Ptr(dy), Ptr(w), Ptr(dx), p);
    }

    /// <inheritdoc />
    public void Conv2dBackwardWeight(Tensor dy, Tensor x, Tensor dw, in Conv2dParams p)
    {
        p.Validate();
        if (dw.NumElements == 0) return;
        if (p.N == 0)
        {
            _dev.Memset(Ptr(dw), (long)dw.NumElements * sizeof(float));
            return;
        }
        if (UsesCudnn) CudnnConvBackwardWeight(Ptr(dy), Ptr(x), Ptr(dw), p);
        else GemmConvBackwardWeight(Ptr(dy), Ptr(x), Ptr(dw), p);
    }

    // ---- im2col + GEMM ------------------------------------------------------------------------

    /// <summary>Images per im2col chunk so the column buffer stays within the workspace limit.</summary>
    private int ChunkImages(in Conv2dParams p)
    {
        var perImage = (long)(p.C / p.Groups) * p.R * p.S * p.P * p.Q * sizeof(float);
        return (int)Math.Clamp(Options.MaxWorkspaceBytes / Math.Max(perImage, 1), 1, Math.Max(p.N, 1));
    }

    private void Im2col(ulong x, ulong col, int images, in Conv2dParams p)
    {
        var g = ConvGeom.Of(p);
        var args = new KernelArgs();
        args.Add(x); args.Add(col); args.Add(images); args.Add(g);
        Launch("im2col.cu", "im2col_f32", (long)images * g.Cg * p.R * p.S * p.P * p.Q, ref args);
    }

    private void GemmConvForward(ulong x, ulong w, ulong y, in Conv2dParams p)
    {
        int cg = p.C / p.Groups, kg = p.K / p.Groups, crs = cg * p.R * p.S, pq = p.P * p.Q;
        var chunk = ChunkImages(p);
        using var col = _dev.Allocator.Allocate((long)chunk * crs * pq * sizeof(float));
        for (var n0 = 0; n0 < p.N; n0 += chunk)
        {
            var nb = Math.Min(chunk, p.N - n0);
            for (var grp = 0; grp < p.Groups; grp++)
            {
                Im2col(x + Bytes(((long)n0 * p.C + (long)grp * cg) * p.H * p.W), col.Pointer, nb, p);
                // y[n, grp*kg.., :] [kg, pq] = w_grp [kg, crs] x col[n] [crs, pq], for each image n of the chunk.
                Gemm(false, false, kg, pq, crs, w + Bytes((long)grp * kg * crs), crs, 0, col.Pointer, pq, (long)crs * pq,
                    0f, y + Bytes(((long)n0 * p.K + (long)grp * kg) * pq), pq, (long)p.K * pq, nb);
            }
        }
    }

    private void GemmConvBackwardData(ulong dy, ulong w, ulong dx, in Conv2dParams p)
    {
        int cg = p.C / p.Groups, kg = p.K / p.Groups, crs = cg * p.R * p.S, pq = p.P * p.Q;
        var chunk = ChunkImages(p);
        using var col = _dev.Allocator.Allocate((long)chunk * crs * pq * sizeof(float));
        var g = ConvGeom.Of(p);
        for (var n0 = 0; n0 < p.N; n0 += chunk)
        {
            var nb = Math.Min(chunk, p.N - n0);
            for (var grp = 0; grp < p.Groups; grp++)
            {
                // dcol[n] [crs, pq] = w_grp^T [crs, kg] x dy[n, grp] [kg, pq]
                Gemm(true, false, crs, pq, kg, w + Bytes((long)grp * kg * crs), crs, 0, dy + Bytes(((long)n0 * p.K + (long)grp * kg) * pq), pq,
                    (long)p.K * pq, 0f, col.Pointer, pq, (long)crs * pq, nb);
                var args = new KernelArgs();
                args.Add(col.Pointer); args.Add(dx + Bytes(((long)n0 * p.C + (long)grp * cg) * p.H * p.W)); args.Add(nb); args.Add(g);
                Launch("im2col.cu", "col2im_f32", (long)nb * cg * p.H * p.W, ref args);
            }
        }
    }

    private void GemmConvBackwardWeight(ulong dy, ulong x, ulong dw, in Conv2dParams p)
    {
        int cg = p.C / p.Groups, kg = p.K / p.Groups, crs = cg * p.R * p.S, pq = p.P * p.Q;
        // Each image of a chunk gets its own weight gradient from one batched GEMM; a second GEMM, with a row of ones,
        // sums them into dw. (One GEMM per image costs a launch, and often a split-K reduction, per image.)
        var perImage = ((long)crs * pq + (long)kg * crs) * sizeof(float);
        var chunk = (int)Math.Clamp(Options.MaxWorkspaceBytes / Math.Max(perImage, 1), 1, Math.Max(p.N, 1));
        using var col = _dev.Allocator.Allocate((long)chunk * crs * pq * sizeof(float));
        using var perImageGrad = _dev.Allocator.Allocate((long)chunk * kg * crs * sizeof(float));
        using var ones = _dev.Allocator.Allocate((long)chunk * sizeof(float));
        _dev.MakeCurrent();
        CudaDriver.Check(CudaDriver.cuMemsetD32Async(ones.Pointer, BitConverter.SingleToUInt32Bits(1f), (nuint)chunk, _dev.Stream), "cuMemsetD32Async");
        for (var n0 = 0; n0 < p.N; n0 += chunk)
        {
            var nb = Math.Min(chunk, p.N - n0);
            for (var grp = 0; grp < p.Groups; grp++)
            {
                Im2col(x + Bytes(((long)n0 * p.C + (long)grp * cg) * p.H * p.W), col.Pointer, nb, p);
                // g[n] [kg, crs] = dy[n, grp] [kg, pq] x col[n]^T [pq, crs], for each image n of the chunk.
                Gemm(false, true, kg, crs, pq, dy + Bytes(((long)n0 * p.K + (long)grp * kg) * pq), pq, (long)p.K * pq,
                    col.Pointer, pq, (long)crs * pq, 0f, perImageGrad.Pointer, crs, (long)kg * crs, nb);
                // dw_grp as a row [1, kg*crs] (+)= ones [1, nb] x g [nb, kg*crs]
                Gemm(false, false, 1, kg * crs, nb, ones.Pointer, nb, 0, perImageGrad.Pointer, kg * crs, 0,
                    n0 == 0 ? 0f : 1f, dw + Bytes((long)grp * kg * crs), kg * crs, 0, 1);
            }
        }
    }

    private static ulong Bytes(long floats) => (ulong)(floats * sizeof(float));

    // ---- cuDNN --------------------------------------------------------------------------------

    /// <summary>cuDNN descriptors and, per direction, the chosen algorithm with its workspace size, for one convolution geometry.</summary>
    private sealed class ConvPlan
    {
        public nint X, W, Y, Conv;
        public Algorithm? Forward, BackwardData, BackwardFilter;
    }

    /// <summary>A cuDNN algorithm and the workspace bytes it needs for the plan's geometry (asked once, not per call).</summary>
    private readonly record struct Algorithm(int Id, nuint WorkspaceBytes);

    private ConvPlan Plan(in Conv2dParams p)
    {
        if (_convPlans.TryGetValue(p, out var plan)) return plan;
        _dev.MakeCurrent();
        plan = new ConvPlan();
        Cudnn.Check(Cudnn.cudnnCreateTensorDescriptor(out plan.X), "cudnnCreateTensorDescriptor");
        Cudnn.Check(Cudnn.cudnnSetTensor4dDescriptor(plan.X, Cudnn.TensorNchw, Cudnn.DataFloat, p.N, p.C, p.H, p.W), "cudnnSetTensor4dDescriptor");
        Cudnn.Check(Cudnn.cudnnCreateTensorDescriptor(out plan.Y), "cudnnCreateTensorDescriptor");
        Cudnn.Check(Cudnn.cudnnSetTensor4dDescriptor(plan.Y, Cudnn.TensorNchw, Cudnn.DataFloat, p.N, p.K, p.P, p.Q), "cudnnSetTensor4dDescriptor");
        Cudnn.Check(Cudnn.cudnnCreateFilterDescriptor(out plan.W), "cudnnCreateFilterDescriptor");
        Cudnn.Check(Cudnn.cudnnSetFilter4dDescriptor(plan.W, Cudnn.DataFloat, Cudnn.TensorNchw, p.K, p.C / p.Groups, p.R, p.S), "cudnnSetFilter4dDescriptor");
        Cudnn.Check(Cudnn.cudnnCreateConvolutionDescriptor(out plan.Conv), "cudnnCreateConvolutionDescriptor");
        Cudnn.Check(Cudnn.cudnnSetConvolution2dDescriptor(plan.Conv, p.PadH, p.PadW, p.StrideH, p.StrideW, p.DilationH, p.DilationW,
            Cudnn.CrossCorrelation, Cudnn.DataFloat), "cudnnSetConvolution2dDescriptor");
        Cudnn.Check(Cudnn.cudnnSetConvolutionGroupCount(plan.Conv, p.Groups), "cudnnSetConvolutionGroupCount");
        // NOTE: cuDNN's default math lets FP32 convolutions use TF32 tensor cores on Ampere and newer; FMA math keeps exact FP32.
        Cudnn.Check(Cudnn.cudnnSetConvolutionMathType(plan.Conv, Options.AllowTf32 ? Cudnn.DefaultMath : Cudnn.FmaMath), "cudnnSetConvolutionMathType");
        return _convPlans.GetOrAdd(p, plan);
    }

    private unsafe delegate int AlgoQuery(int requested, out int returned, Cudnn.AlgoPerf* results);

    /// <summary>The first algorithm cuDNN ranks as working whose workspace fits the limit.</summary>
    private unsafe int ChooseAlgorithm(AlgoQuery query, string call)
    {
        const int requested = 16;
        var results = stackalloc Cudnn.AlgoPerf[requested];
        Cudnn.Check(query(requested, out var returned, results), call);
        for (var i = 0; i < returned; i++)
            if (results[i].Status == 0 && (long)results[i].Memory <= Options.MaxWorkspaceBytes) return results[i].Algo;
        throw new CudaException("cuDNN", call, 0, "NO_ALGORITHM",
            $"no convolution algorithm works within the {Options.MaxWorkspaceBytes >> 20} MiB workspace limit; raise CudaOptions.MaxWorkspaceBytes or run without cuDNN (the default; unset NEURALCORE_CUDNN)");
    }

    private unsafe void CudnnConvForward(ulong x, ulong w, ulong y, in Conv2dParams p)
    {
        var plan = Plan(p);
        var h = _dev.CudnnHandle;
        plan.Forward ??= Choose(ChooseAlgorithm((int req, out int ret, Cudnn.AlgoPerf* r) => Options.CudnnBenchmark
            ? Cudnn.cudnnFindConvolutionForwardAlgorithm(h, plan.X, plan.W, plan.Conv, plan.Y, req, out ret, r)
            : Cudnn.cudnnGetConvolutionForwardAlgorithm_v7(h, plan.X, plan.W, plan.Conv, plan.Y, req, out ret, r), "cudnnGetConvolutionForwardAlgorithm"),
            algo => (Cudnn.cudnnGetConvolutionForwardWorkspaceSize(h, plan.X, plan.W, plan.Conv, plan.Y, algo, out var bytes), bytes), "cudnnGetConvolutionForwardWorkspaceSize");
        var (id, bytes) = plan.Forward.Value;
        using var ws = bytes == 0 ? null : _dev.Allocator.Allocate((long)bytes);
        float alpha = 1, beta = 0;
        _dev.MakeCurrent();
        Cudnn.Check(Cudnn.cudnnConvolutionForward(h, &alpha, plan.X, x, plan.W, w, plan.Conv, id, ws?.Pointer ?? 0, bytes, &beta, plan.Y, y),
            "cudnnConvolutionForward");
    }

    private unsafe void CudnnConvBackwardData(ulong dy, ulong w, ulong dx, in Conv2dParams p)
    {
        var plan = Plan(p);
        var h = _dev.CudnnHandle;
        plan.BackwardData ??= Choose(ChooseAlgorithm((int req, out int ret, Cudnn.AlgoPerf* r) => Options.CudnnBenchmark
            ? Cudnn.cudnnFindConvolutionBackwardDataAlgorithm(h, plan.W, plan.Y, plan.Conv, plan.X, req, out ret, r)
            : Cudnn.cudnnGetConvolutionBackwardDataAlgorithm_v7(h, plan.W, plan.Y, plan.Conv, plan.X, req, out ret, r), "cudnnGetConvolutionBackwardDataAlgorithm"),
            algo => (Cudnn.cudnnGetConvolutionBackwardDataWorkspaceSize(h, plan.W, plan.Y, plan.Conv, plan.X, algo, out var bytes), bytes), "cudnnGetConvolutionBackwardDataWorkspaceSize");
        var (id, bytes) = plan.BackwardData.Value;
        using var ws = bytes == 0 ? null : _dev.Allocator.Allocate((long)bytes);
        float alpha = 1, beta = 0;
        _dev.MakeCurrent();
        Cudnn.Check(Cudnn.cudnnConvolutionBackwardData(h, &alpha, plan.W, w, plan.Y, dy, plan.Conv, id, ws?.Pointer ?? 0, bytes, &beta, plan.X, dx),
            "cudnnConvolutionBackwardData");
    }

    private unsafe void CudnnConvBackwardWeight(ulong dy, ulong x, ulong dw, in Conv2dParams p)
    {
        var plan = Plan(p);
        var h = _dev.CudnnHandle;
        plan.BackwardFilter ??= Choose(ChooseAlgorithm((int req, out int ret, Cudnn.AlgoPerf* r) => Options.CudnnBenchmark
            ? Cudnn.cudnnFindConvolutionBackwardFilterAlgorithm(h, plan.X, plan.Y, plan.Conv, plan.W, req, out ret, r)
            : Cudnn.cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, plan.X, plan.Y, plan.Conv, plan.W, req, out ret, r), "cudnnGetConvolutionBackwardFilterAlgorithm"),
            algo => (Cudnn.cudnnGetConvolutionBackwardFilterWorkspaceSize(h, plan.X, plan.Y, plan.Conv, plan.W, algo, out var bytes), bytes), "cudnnGetConvolutionBackwardFilterWorkspaceSize");
        var (id, bytes) = plan.BackwardFilter.Value;
        using var ws = bytes == 0 ? null : _dev.Allocator.Allocate((long)bytes);
        float alpha = 1, beta = 0;
        _dev.MakeCurrent();
        Cudnn.Check(Cudnn.cudnnConvolutionBackwardFilter(h, &alpha, plan.X, x, plan.Y, dy, plan.Conv, id, ws?.Pointer ?? 0, bytes, &beta, plan.W, dw),
            "cudnnConvolutionBackwardFilter");
    }

    /// <summary>The algorithm <paramref name="id"/> with its workspace size, asked of cuDNN once per plan and direction.</summary>
    private static Algorithm Choose(int id, Func<int, (int Status, nuint Bytes)> workspace, string call)
    {
        var (status, bytes) = workspace(id);
        Cudnn.Check(status, call);
        return new Algorithm(id, bytes);
    }
}
