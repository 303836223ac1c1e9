using System.Runtime.InteropServices;
using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Cuda.Interop;

namespace NeuralCore.Cuda;

/// <summary>
/// The CUDA backend: NeuralCore's kernels (kernels/*.cu, compiled by NVRTC for the GPU at first use), cuBLAS
/// for matrix products, and cuDNN for convolution, batch norm and pooling when installed (else the custom
/// kernels cover them too). Every operation is enqueued on one non-blocking stream per GPU; only copies to
/// the host (and the loss's target check) wait for the GPU. This file holds memory, element-wise, reduction,
/// matrix, indexing, softmax/loss and optimizer methods; convolution, pooling and batch norm live beside it.
/// </summary>
/// <remarks>Call <see cref="Register"/> once so that <c>Device.Cuda(i)</c> and <c>tensor.To(Device.Cuda())</c> work.</remarks>
public sealed partial class CudaBackend : IBackend
{
    private const int Block = 256;
    private readonly CudaDevice _dev;

    /// <summary>Creates a backend for GPU <paramref name="ordinal"/>; backends of one ordinal share its memory and stream.</summary>
    /// <exception cref="CudaUnavailableException">No driver or GPU, or NVRTC / cuBLAS missing: the message says what and how to fix it.</exception>
    public CudaBackend(int ordinal = 0, CudaOptions? options = null)
    {
        _dev = CudaDevice.Get(ordinal);
        Options = options ?? new CudaOptions();
    }

    /// <summary>Registers the CUDA backend so that <c>Device.Cuda(i)</c> resolves to it (options default to <see cref="CudaOptions.FromEnvironment()"/>).</summary>
    public static void Register(CudaOptions? options = null) =>
        BackendRegistry.Register(DeviceType.Cuda, ordinal => new CudaBackend(ordinal, options ?? CudaOptions.FromEnvironment()));

    /// <summary>True when GPU <paramref name="ordinal"/> can be used; otherwise <paramref name="reason"/> is the one-sentence explanation.</summary>
    public static bool IsAvailable(out string reason, int ordinal = 0)
    {
        try
        {
            CudaDevice.Get(ordinal);
            reason = "";
            return true;
        }
        catch (CudaUnavailableException e)
        {
            reason = e.Message;
            return false;
        }
    }

    /// <inheritdoc />
    public Device Device => Device.Cuda(_dev.Ordinal);

    /// <summary>This backend's settings.</summary>
    public CudaOptions Options { get; }

    /// <summary>True when convolution and batch norm go through cuDNN (enabled in <see cref="Options"/> and installed).</summary>
    public bool UsesCudnn => Options.UseCudnn && _dev.HasCudnn;

    /// <summary>The GPU's name and compute capability, e.g. <c>cuda:0 NVIDIA H100 (compute capability 9.0, 132 SMs)</c>.</summary>
    public string DeviceDescription => _dev.ToString();

    /// <summary>Bytes of GPU memory held by live tensors.</summary>
    public long MemoryInUse => _dev.Allocator.InUseBytes;

    /// <summary>Bytes of GPU memory cached for reuse by the allocator.</summary>
    public long MemoryCached => _dev.Allocator.CachedBytes;

    /// <summary>The peak of <see cref="MemoryInUse"/> since the device was first used or <see cref="ResetPeakMemoryInUse"/>.</summary>
    public long PeakMemoryInUse => _dev.Allocator.PeakBytes;

    /// <summary>Starts a new <see cref="PeakMemoryInUse"/> from the memory in use now (PyTorch's <c>reset_peak_memory_stats</c>).</summary>
    public void ResetPeakMemoryInUse() => _dev.Allocator.ResetPeak();

    /// <summary>Waits until the GPU has finished everything enqueued so far (call before timing).</summary>
    public void Synchronize() => _dev.Synchronize();

    /// <summary>Returns the allocator's cached blocks to the driver (live tensors keep theirs).</summary>
    public void EmptyCache() => _dev.Allocator.EmptyCache();

    // ---- helpers ------------------------------------------------------------------------------

    /// <summary>The device address of <paramref name="t"/>'s first element.</summary>
    private ulong Ptr(Tensor t)
    {
        if (t.Storage is not CudaStorage s || s.CudaDevice != _dev)
            throw new ArgumentException($"Expected a tensor on {Device}, found one on {t.Device}; move it with To({Device}).");
        return s.DevicePointer + (ulong)((long)t.StorageOffset * s.ElementSize);
    }

    private ulong PtrOrZero(Tensor? t) => t is null ? 0 : Ptr(t);

    private static string Suffix(DType dtype) => dtype switch
    {
        DType.Float32 => "f32",
        DType.Int64 => "i64",
        DType.Int32 => "i32",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown dtype."),
    };

    /// <summary>Launches a grid-stride kernel over <paramref name="n"/> elements.</summary>
    private void Launch(string file, string kernel, long n, ref KernelArgs args) =>
        _dev.Launch(_dev.Function(file, kernel), _dev.GridFor(n), Block, ref args, kernel);

    /// <summary>Launches one block of <paramref name="block"/> threads per row.</summary>
    private void LaunchRows(string file, string kernel, int rows, uint block, ref KernelArgs args) =>
        _dev.Launch(_dev.Function(file, kernel), (uint)rows, block, ref args, kernel);

    /// <summary>Threads per block for a per-row reduction over <paramref name="cols"/> values: a multiple of 32, at most 256.</summary>
    private static uint RowBlock(int cols) => (uint)Math.Clamp((cols + 31) / 32 * 32, 32, 256);

    // ---- memory -------------------------------------------------------------------------------

    /// <inheritdoc />
    public Storage Allocate(DType dtype, int length)
    {
        var storage = NewStorage(dtype, length);
        _dev.Memset(storage.DevicePointer, (long)length * dtype.ElementSize());
        return storage;
    }

    /// <inheritdoc />
    public Storage AllocateUninitialized(DType dtype, int length)
    {
        var storage = NewStorage(dtype, length);
        // Every 4 bytes a float NaN: a kernel that leaves part of its output unwritten shows up in a comparison.
        if (PoisonUninitialized && length > 0)
            CudaDriver.Check(CudaDriver.cuMemsetD32Async(storage.DevicePointer, 0x7FC00000u, (nuint)((long)length * dtype.ElementSize() / 4), _dev.Stream), "cuMemsetD32Async");
        return storage;
    }

    /// <summary>
    /// When true, <see cref="AllocateUninitialized"/> fills new storage with NaN instead of leaving the cache's old
    /// contents, so the self-test catches a kernel that relies on zeroed output memory. Off outside the self-test.
    /// </summary>
    internal static bool PoisonUninitialized { get; set; }

    private CudaStorage NewStorage(DType dtype, int length)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length), length, "Storage length must be non-negative.");
        var bytes = (long)length * dtype.ElementSize();
        return new CudaStorage(_dev, dtype, length, bytes == 0 ? null : _dev.Allocator.Allocate(bytes));
    }

    /// <inheritdoc />
    public unsafe Storage FromHost(Array data)
    {
        var dtype = data switch
        {
            float[] => DType.Float32,
            long[] => DType.Int64,
            int[] => DType.Int32,
            _ => throw new ArgumentException($"FromHost takes float[], long[] or int[], not {data.GetType().Name}.", nameof(data)),
        };
        var storage = NewStorage(dtype, data.Length);
        // SAFETY: the array is pinned while its bytes are copied into the pinned staging buffer.
        fixed (byte* p = &MemoryMarshal.GetArrayDataReference(data))
            _dev.CopyToDevice(storage.DevicePointer, p, (long)data.Length * dtype.ElementSize());
        return storage;
    }

    /// <inheritdoc />
    public unsafe void CopyToHost(Tensor src, Array dst)
    {
        if (!src.IsContiguous) throw new ArgumentException("CopyToHost needs a contiguous tensor; call Contiguous() first.", nameof(src));
        var size = src.DType.ElementSize();
        if (dst.Length < src.NumElements || Buffer.ByteLength(dst) / Math.Max(dst.Length, 1) != size)
            throw new ArgumentException($"CopyToHost into a {dst.GetType().Name} of {dst.Length} elements cannot hold {src.NumElements} {src.DType} elements.", nameof(dst));
        // SAFETY: the destination is pinned and holds at least NumElements elements of the tensor's size (checked above).
        fixed (byte* p = &MemoryMarshal.GetArrayDataReference(dst))
            _dev.CopyToHost(p, Ptr(src), (long)src.NumElements * size);
    }

    /// <inheritdoc />
    public void Fill(Tensor dst, double value)
    {
        var n = dst.NumElements;
        if (n == 0) return;
        var p = Ptr(dst);
        if (!dst.IsContiguous)
        {
            using var full = Tensor.Full(dst.ShapeArray(), value, Device, dst.DType);
            Copy(full, dst);
            return;
        }
        _dev.MakeCurrent();
        switch (dst.DType)
        {
            case DType.Float32:
                CudaDriver.Check(CudaDriver.cuMemsetD32Async(p, BitConverter.SingleToUInt32Bits((float)value), (nuint)n, _dev.Stream), "cuMemsetD32Async");
                break;
            case DType.Int32:
                CudaDriver.Check(CudaDriver.cuMemsetD32Async(p, unchecked((uint)(int)value), (nuint)n, _dev.Stream), "cuMemsetD32Async");
                break;
            default:
                var args = new KernelArgs();
                args.Add(p); args.Add(n); args.Add((long)value);
                Launch("copy.cu", "fill_i64", n, ref args);
                break;
        }
    }

    /// <inheritdoc />
    public void Copy(Tensor src, Tensor dst)
    {
        if (!src.Shape.SequenceEqual(dst.Shape))
            throw new ArgumentException($"Copy between shapes {Tensor.FormatShape(src.Shape)} and {Tensor.FormatShape(dst.Shape)}.");
        var n = dst.NumElements;
        if (n == 0) return;
        if (src.DType == dst.DType && src.IsContiguous && dst.IsContiguous)
        {
            _dev.CopyDeviceToDevice(Ptr(dst), Ptr(src), (long)n * src.DType.ElementSize());
            return;
        }
        var args = new KernelArgs();
        var name = $"copy_{Suffix(src.DType)}_to_{Suffix(dst.DType)}";
        if (src.IsContiguous && dst.IsContiguous)
        {
            args.Add(Ptr(src)); args.Add(Ptr(dst)); args.Add(n);
        }
        else
        {
            args.Add(Ptr(src)); args.Add(CudaLayout.Of(src)); args.Add(Ptr(dst)); args.Add(CudaLayout.Of(dst)); args.Add(n);
            name += "_strided";
        }
        Launch("copy.cu", name, n, ref args);
    }

    /// <inheritdoc />
    public void RandomUniform(Tensor dst, float low, float high, Generator generator) =>
        FromHostSamples(dst, host => CpuBackend.Instance.RandomUniform(host, low, high, generator));

    /// <inheritdoc />
    public void RandomNormal(Tensor dst, float mean, float std, Generator generator) =>
        FromHostSamples(dst, host => CpuBackend.Instance.RandomNormal(host, mean, std, generator));

    /// <summary>
    /// Draws the samples on the host with the CPU backend and uploads them, so a seed gives the same numbers on
    /// every device (initialisation, not the hot path, draws random numbers).
    /// </summary>
    private unsafe void FromHostSamples(Tensor dst, Action<Tensor> draw)
    {
        if (dst.DType != DType.Float32 || !dst.IsContiguous)
            throw new ArgumentException($"Random fills need a contiguous Float32 tensor, got {dst.DType}{(dst.IsContiguous ? "" : " (non-contiguous)")}.", nameof(dst));
        var host = Tensor.Zeros(dst.ShapeArray());
        draw(host);
        var span = host.AsSpan();
        // SAFETY: the span's array is pinned for the copy; lengths match by construction.
        fixed (float* p = span) _dev.CopyToDevice(Ptr(dst), p, (long)span.Length * sizeof(float));
    }

    // ---- element-wise -------------------------------------------------------------------------

    /// <summary>The kernel-name form of an enum member: Relu6 -> relu6, Hardswish -> hardswish, AddScaled -> add_scaled.</summary>
    internal static string KernelName(Enum op)
    {
        var s = op.ToString();
        var sb = new System.Text.StringBuilder(s.Length + 4);
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsUpper(s[i]) && i > 0) sb.Append('_');
            sb.Append(char.ToLowerInvariant(s[i]));
        }
        return sb.ToString();
    }

    /// <inheritdoc />
    public void Unary(UnaryOp op, Tensor x, Tensor y, float alpha, float beta)
    {
        var n = x.NumElements;
        if (n == 0) return;
        var args = new KernelArgs();
        args.Add(Ptr(x)); args.Add(Ptr(y)); args.Add(n); args.Add(alpha); args.Add(beta);
        Launch("elementwise.cu", $"unary_{KernelName(op)}", n, ref args);
    }

    /// <inheritdoc />
    public void UnaryBackward(UnaryOp op, Tensor x, Tensor y, Tensor dy, Tensor dx, float alpha, float beta)
    {
        var n = x.NumElements;
        if (n == 0) return;
        var args = new KernelArgs();
        args.Add(Ptr(x)); args.Add(Ptr(y)); args.Add(Ptr(dy)); args.Add(Ptr(dx)); args.Add(n); args.Add(alpha); args.Add(beta);
        Launch("elementwise.cu", $"unary_backward_{KernelName(op)}", n, ref args);
    }

    /// <inheritdoc />
    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y)
    {
        var n = y.NumElements;
        if (n == 0) return;
        var name = $"binary_{KernelName(op)}_{Suffix(a.DType)}";
        var args = new KernelArgs();
        if (a.IsContiguous && b.IsContiguous)
        {
            args.Add(Ptr(a)); args.Add(Ptr(b)); args.Add(Ptr(y)); args.Add(n);
        }
        else
        {
            args.Add(Ptr(a)); args.Add(CudaLayout.Of(a)); args.Add(Ptr(b)); args.Add(CudaLayout.Of(b)); args.Add(Ptr(y)); args.Add(n);
            name += "_strided";
        }
        Launch("elementwise.cu", name, n, ref args);
    }

    /// <inheritdoc />
    public void AddScaled(Tensor y, Tensor x, float alpha)
    {
        var n = y.NumElements;
        if (n == 0) return;
        var args = new KernelArgs();
        args.Add(Ptr(y)); args.Add(Ptr(x)); args.Add(n); args.Add(alpha);
        Launch("elementwise.cu", "add_scaled_f32", n, ref args);
    }

    // ---- reductions ---------------------------------------------------------------------------

    /// <inheritdoc />
    public void Reduce(ReduceOp op, Tensor x, Tensor y, Tensor? indices, int outer, int reduce, int inner)
    {
        if ((long)outer * inner == 0) return;
        if (reduce == 0) throw new ArgumentException($"{op} over an empty dimension has no value.");
        var args = new KernelArgs();
        args.Add(Ptr(x)); args.Add(Ptr(y)); args.Add(PtrOrZero(indices));
        // Long rows with inner == 1 (a row per output): one block per row reads contiguously.
        if (inner == 1 && reduce >= 64)
        {
            args.Add(reduce);
            LaunchRows("reductions.cu", $"reduce_{KernelName(op)}_f32_rows", outer, RowBlock(reduce), ref args);
            return;
        }
        args.Add(outer); args.Add(reduce); args.Add(inner);
        Launch("reductions.cu", $"reduce_{KernelName(op)}_f32", (long)outer * inner, ref args);
    }

    // ---- linear algebra -----------------------------------------------------------------------

    /// <inheritdoc />
    public void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, int batch, int m, int n, int k, int strideA, int strideB, float beta)
    {
        if (batch == 0 || m == 0 || n == 0) return;
        Gemm(transA, transB, m, n, k, Ptr(a), transA ? m : k, strideA, Ptr(b), transB ? k : n, strideB, beta, Ptr(c), n, (long)m * n, batch);
    }

    /// <summary>
    /// Row-major batched C[i] = op(A[i]) op(B[i]) + beta C[i] through column-major cuBLAS: the row-major C is the
    /// column-major C^T = op(B)^T op(A)^T, so the operands swap places and keep their transpose flags.
    /// </summary>
    private unsafe void Gemm(bool transA, bool transB, int m, int n, int k, ulong a, int lda, long strideA, ulong b, int ldb, long strideB,
        float beta, ulong c, int ldc, long strideC, int batch)
    {
        _dev.MakeCurrent();
        _dev.SetCublasTf32(Options.AllowTf32);
        var alpha = 1f;
        int opA = transA ? Cublas.OpT : Cublas.OpN, opB = transB ? Cublas.OpT : Cublas.OpN;
        if (batch == 1)
            Cublas.Check(Cublas.cublasSgemm(_dev.CublasHandle, opB, opA, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc), "cublasSgemm");
        else
            Cublas.Check(Cublas.cublasSgemmStridedBatched(_dev.CublasHandle, opB, opA, n, m, k, &alpha, b, ldb, strideB, a, lda, strideA,
                &beta, c, ldc, strideC, batch), "cublasSgemmStridedBatched");
    }

    // ---- indexing -----------------------------------------------------------------------------

    /// <inheritdoc />
    public void IndexSelect(Tensor x, Tensor indices, Tensor y, int outer, int dimSize, int inner)
    {
        var count = indices.NumElements;
        var total = (long)outer * count * inner;
        if (total == 0) return;
        var args = new KernelArgs();
        args.Add(Ptr(x)); args.Add(Ptr(indices)); args.Add(Ptr(y)); args.Add(outer); args.Add(dimSize); args.Add(count); args.Add(inner);
        Launch("indexing.cu", $"index_select_{Suffix(x.DType)}", total, ref args);
    }

    /// <inheritdoc />
    public void IndexAdd(Tensor dy, Tensor indices, Tensor dx, int outer, int dimSize, int inner)
    {
        var count = indices.NumElements;
        if ((long)outer * inner * count == 0) return;
        var args = new KernelArgs();
        args.Add(Ptr(dy)); args.Add(Ptr(indices)); args.Add(Ptr(dx)); args.Add(outer); args.Add(dimSize); args.Add(count); args.Add(inner);
        Launch("indexing.cu", "index_add_f32", (long)outer * inner, ref args);
    }

    // ---- softmax and losses -------------------------------------------------------------------

    /// <inheritdoc />
    public void Softmax(Tensor x, Tensor y, int rows, int cols, bool log)
    {
        if ((long)rows * cols == 0) return;
        var args = new KernelArgs();
        args.Add(Ptr(x)); args.Add(Ptr(y)); args.Add(cols); args.Add(log ? 1 : 0);
        LaunchRows("softmax_loss.cu", "softmax_forward_f32", rows, RowBlock(cols), ref args);
    }

    /// <inheritdoc />
    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, int rows, int cols, bool log)
    {
        if ((long)rows * cols == 0) return;
        var args = new KernelArgs();
        args.Add(Ptr(y)); args.Add(Ptr(dy)); args.Add(Ptr(dx)); args.Add(cols); args.Add(log ? 1 : 0);
        LaunchRows("softmax_loss.cu", "softmax_backward_f32", rows, RowBlock(cols), ref args);
    }

    /// <inheritdoc />
    /// <remarks>Waits for the GPU once to check the targets, so an out-of-range class index fails here, as on the CPU.</remarks>
    public unsafe void NllLoss(Tensor logProbs, Tensor targets, Tensor? classWeights, float labelSmoothing, Tensor losses, int rows, int cols)
    {
        if (rows == 0) return;
        using var bad = new CudaStorage(_dev, DType.Int32, 1, _dev.Allocator.Allocate(4));
        _dev.MakeCurrent();
        CudaDriver.Check(CudaDriver.cuMemsetD32Async(bad.DevicePointer, int.MaxValue, 1, _dev.Stream), "cuMemsetD32Async");
        var args = new KernelArgs();
        args.Add(Ptr(logProbs)); args.Add(Ptr(targets)); args.Add(PtrOrZero(classWeights)); args.Add(labelSmoothing);
        args.Add(Ptr(losses)); args.Add(cols); args.Add(bad.DevicePointer);
        LaunchRows("softmax_loss.cu", "nll_loss_f32", rows, RowBlock(cols), ref args);
        int badRow;
        _dev.CopyToHost(&badRow, bad.DevicePointer, sizeof(int));
        if (badRow != int.MaxValue)
        {
            long target;
            _dev.CopyToHost(&target, Ptr(targets) + (ulong)badRow * sizeof(long), sizeof(long));
            throw new ArgumentOutOfRangeException(nameof(targets), $"Target {target} at row {badRow} is outside [0, {cols}).");
        }
    }

    /// <inheritdoc />
    public void NllLossBackward(Tensor targets, Tensor? classWeights, float labelSmoothing, Tensor dLosses, Tensor dLogProbs, int rows, int cols)
    {
        var total = (long)rows * cols;
        if (total == 0) return;
        var args = new KernelArgs();
        args.Add(Ptr(targets)); args.Add(PtrOrZero(classWeights)); args.Add(labelSmoothing); args.Add(Ptr(dLosses)); args.Add(Ptr(dLogProbs));
        args.Add(rows); args.Add(cols);
        Launch("softmax_loss.cu", "nll_loss_backward_f32", total, ref args);
    }

    // ---- optimizers ---------------------------------------------------------------------------

    /// <inheritdoc />
    public void AdamStep(Tensor p, Tensor g, Tensor m, Tensor v, Tensor? vMax, in AdamParams h)
    {
        var n = p.NumElements;
        if (n == 0) return;
        var bc1 = 1 - Math.Pow(h.Beta1, h.Step);
        var bc2 = 1 - Math.Pow(h.Beta2, h.Step);
        var args = new KernelArgs();
        args.Add(Ptr(p)); args.Add(Ptr(g)); args.Add(Ptr(m)); args.Add(Ptr(v)); args.Add(h.Amsgrad ? PtrOrZero(vMax) : 0UL); args.Add(n);
        args.Add(h.Lr); args.Add(h.Beta1); args.Add(h.Beta2); args.Add(h.Eps); args.Add(h.WeightDecay); args.Add(h.Decoupled ? 1 : 0);
        args.Add((float)(h.Lr / bc1)); args.Add((float)Math.Sqrt(bc2));
        Launch("optimizers.cu", "adam_step_f32", n, ref args);
    }

    /// <inheritdoc />
    public void SgdStep(Tensor p, Tensor g, Tensor? momentumBuffer, in SgdParams h)
    {
        var n = p.NumElements;
        if (n == 0) return;
        if (h.Momentum != 0 && momentumBuffer is null)
            throw new ArgumentException($"SGD with momentum {h.Momentum} needs a momentum buffer.", nameof(momentumBuffer));
        var args = new KernelArgs();
        args.Add(Ptr(p)); args.Add(Ptr(g)); args.Add(h.Momentum != 0 ? Ptr(momentumBuffer!) : 0UL); args.Add(n);
        args.Add(h.Lr); args.Add(h.Momentum); args.Add(h.Dampening); args.Add(h.WeightDecay); args.Add(h.Nesterov ? 1 : 0); args.Add(h.FirstStep ? 1 : 0);
        Launch("optimizers.cu", "sgd_step_f32", n, ref args);
    }
}

/// <summary>A strided view as the kernels' <c>Layout</c> struct (kernels/common.cuh): rank, then 8 sizes and 8 strides.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CudaLayout
{
    /// <summary>The most dimensions a strided kernel handles.</summary>
    public const int MaxRank = 8;

    public int Rank;
    public fixed int Shape[MaxRank];
    public fixed int Strides[MaxRank];

    /// <summary>The layout of <paramref name="t"/> (offset excluded: it goes into the pointer).</summary>
    public static CudaLayout Of(Tensor t)
    {
        if (t.Rank > MaxRank)
            throw new ArgumentException($"CUDA strided kernels handle up to {MaxRank} dimensions; this tensor has shape {Tensor.FormatShape(t.Shape)}. Call Contiguous() first.");
        var l = new CudaLayout { Rank = t.Rank };
        for (var d = 0; d < t.Rank; d++)
        {
            l.Shape[d] = t.Shape[d];
            l.Strides[d] = t.Strides[d];
        }
        return l;
    }
}
