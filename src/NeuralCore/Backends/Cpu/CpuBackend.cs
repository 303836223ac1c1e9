using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// The CPU backend: the specification every other backend is tested against, and fast in its own right
/// (vectorised inner loops, work split over <see cref="CpuThreading.Threads"/> with a fixed partition so
/// results are bit-identical run to run). This file holds memory, element-wise, reduction, indexing,
/// matrix and loss kernels; convolution, pooling and batch norm live beside it.
/// </summary>
public sealed partial class CpuBackend : IBackend
{
    private CpuBackend() { }

    /// <summary>The single CPU backend.</summary>
    public static CpuBackend Instance { get; } = new();

    /// <summary>
    /// The widest vector kernels this machine runs: "AVX-512" (every fast path), "AVX2" (256-bit kernels with FMA; the
    /// stems' direct kernels, Winograd, the strips and the direct weight gradients are 512-bit only, and the GEMM and
    /// general paths that run instead train CP-ResNet about 1.4-2x slower) or "scalar" (no AVX2 or FMA: plain loops).
    /// <c>DOTNET_EnableAVX512=0</c> runs the AVX2 kernels on a machine with AVX-512.
    /// </summary>
    public static string VectorKernels => Gemm.Best switch
    {
        Gemm.KernelKind.Vector512 => "AVX-512",
        Gemm.KernelKind.Vector256 => "AVX2",
        _ => "scalar",
    };

    /// <summary>
    /// Element count below which element-wise work runs on the calling thread. At 64 K the pruned model's additions over
    /// 38 channels of 1 x 6 maps at batch 256 (58 K values) ran on one thread (`--profile`: 31-36 µs; 17-19 µs on two).
    /// </summary>
    private const int ParallelThreshold = 1 << 15;
    // Row-wise softmax takes an exponential per value (about 10 ns in double), so fewer values are worth a second thread.
    private const int SoftmaxParallelThreshold = 1 << 11;

    /// <inheritdoc />
    public Device Device => Device.Cpu;

    internal static float[] F(Tensor t) => ((CpuStorage)t.Storage).Floats;
    internal static long[] L(Tensor t) => ((CpuStorage)t.Storage).Longs;
    internal static int[] I(Tensor t) => ((CpuStorage)t.Storage).Ints;
    internal static Span<float> Span(Tensor t) => F(t).AsSpan(t.StorageOffset, t.NumElements);

    /// <summary>Runs body(start, end) over [0, n) in equal chunks, on one thread when n is small.</summary>
    internal static void Chunked(int n, Action<int, int> body, int threshold = ParallelThreshold) =>
        Chunked(n, new ActionRange(body), threshold);

    /// <summary>Work over one range of indices, carried in a struct so that <see cref="Chunked{TWork}"/> allocates nothing.</summary>
    internal interface IRangeWork
    {
        void Run(int start, int end);
    }

    private readonly struct ActionRange(Action<int, int> body) : IRangeWork
    {
        public void Run(int start, int end) => body(start, end);
    }

    /// <summary>
    /// Runs work.Run(start, end) over [0, n) in equal chunks, one per thread (on the calling thread when n is below
    /// <paramref name="threshold"/>), without allocating: the kernels a compiled training step calls go through here.
    /// </summary>
    internal static unsafe void Chunked<TWork>(int n, TWork work, int threshold = ParallelThreshold) where TWork : struct, IRangeWork
    {
        var threads = CpuThreading.Threads;
        if (n < threshold || threads == 1) { work.Run(0, n); return; }
        var job = new ChunkJob<TWork> { Work = work, N = n, Chunk = (n + threads - 1) / threads };
        // SAFETY: the job lives in this frame, which ForParts outlasts (it returns when every part is done); the GC
        // still sees the references in it, and stack memory does not move.
        CpuThreading.ForParts(threads, &RunChunk<TWork>, Unsafe.AsPointer(ref job));
    }

    private struct ChunkJob<TWork> where TWork : struct, IRangeWork
    {
        public TWork Work;
        public int N, Chunk;
    }

    private static unsafe void RunChunk<TWork>(void* state, int part) where TWork : struct, IRangeWork
    {
        ref var job = ref Unsafe.AsRef<ChunkJob<TWork>>(state);
        int start = part * job.Chunk, end = Math.Min(job.N, start + job.Chunk);
        if (start < end) job.Work.Run(start, end);
    }

    // ---- memory -------------------------------------------------------------------------------

    /// <inheritdoc />
    public Storage Allocate(DType dtype, int length) => CpuStorage.Allocate(dtype, length);

    /// <inheritdoc />
    public Storage FromHost(Array data) => new CpuStorage((Array)data.Clone());

    /// <inheritdoc />
    public void CopyToHost(Tensor src, Array dst) =>
        Array.Copy(((CpuStorage)src.Storage).Array, src.StorageOffset, dst, 0, src.NumElements);

    /// <inheritdoc />
    public void Fill(Tensor dst, double value)
    {
        switch (dst.DType)
        {
            case DType.Float32: Span(dst).Fill((float)value); break;
            case DType.Int64: L(dst).AsSpan(dst.StorageOffset, dst.NumElements).Fill((long)value); break;
            default: I(dst).AsSpan(dst.StorageOffset, dst.NumElements).Fill((int)value); break;
        }
    }

    /// <inheritdoc />
    public void Copy(Tensor src, Tensor dst)
    {
        if (!src.Shape.SequenceEqual(dst.Shape))
            throw new ArgumentException($"Copy between shapes {Tensor.FormatShape(src.Shape)} and {Tensor.FormatShape(dst.Shape)}.");
        var n = dst.NumElements;
        if (n == 0) return;
        var srcArr = ((CpuStorage)src.Storage).Array;
        var dstArr = ((CpuStorage)dst.Storage).Array;
        if (src.DType == dst.DType && src.IsContiguous && dst.IsContiguous)
        {
            Array.Copy(srcArr, src.StorageOffset, dstArr, dst.StorageOffset, n);
            return;
        }
        var shape = dst.Shape.ToArray();
        var ss = src.Strides.ToArray();
        var ds = dst.Strides.ToArray();
        if (src.DType == DType.Float32 && dst.DType == DType.Float32)
        {
            var s = (float[])srcArr; var d = (float[])dstArr;
            StridedPairs(shape, ss, src.StorageOffset, ds, dst.StorageOffset, (si, di, len, sStep, dStep) =>
            {
                for (var i = 0; i < len; i++) d[di + i * dStep] = s[si + i * sStep];
            });
            return;
        }
        StridedPairs(shape, ss, src.StorageOffset, ds, dst.StorageOffset, (si, di, len, sStep, dStep) =>
        {
            for (var i = 0; i < len; i++) SetElement(dstArr, di + i * dStep, GetElement(srcArr, si + i * sStep));
        });
    }

    private static double GetElement(Array a, int i) => a switch
    {
        // NOTE: the casts matter: without them the arms' common type is float, and Int64 values above 2^24 lose digits.
        float[] f => (double)f[i],
        long[] l => (double)l[i],
        int[] n => (double)n[i],
        _ => throw new InvalidOperationException(),
    };

    private static void SetElement(Array a, int i, double v)
    {
        switch (a)
        {
            case float[] f: f[i] = (float)v; break;
            case long[] l: l[i] = (long)v; break;
            // Through long, so an Int32 result out of range wraps as PyTorch's does instead of saturating.
            case int[] n: n[i] = unchecked((int)(long)v); break;
        }
    }

    /// <summary>
    /// Walks two strided layouts of the same shape row by row, calling body(srcStart, dstStart, length,
    /// srcStep, dstStep) for each run along the last dimension.
    /// </summary>
    internal static void StridedPairs(int[] shape, int[] sStrides, int sOffset, int[] dStrides, int dOffset, Action<int, int, int, int, int> body)
    {
        var rank = shape.Length;
        if (rank == 0) { body(sOffset, dOffset, 1, 0, 0); return; }
        var last = shape[rank - 1];
        var rows = 1;
        for (var d = 0; d < rank - 1; d++) rows *= shape[d];
        var idx = new int[Math.Max(rank - 1, 1)];
        var si = sOffset; var di = dOffset;
        for (var r = 0; r < rows; r++)
        {
            body(si, di, last, sStrides[rank - 1], dStrides[rank - 1]);
            for (var d = rank - 2; d >= 0; d--)
            {
                idx[d]++;
                si += sStrides[d]; di += dStrides[d];
                if (idx[d] < shape[d]) break;
                si -= sStrides[d] * shape[d]; di -= dStrides[d] * shape[d];
                idx[d] = 0;
            }
        }
    }

    /// <inheritdoc />
    public void RandomUniform(Tensor dst, float low, float high, Generator generator)
    {
        var s = Span(dst);
        var scale = high - low;
        for (var i = 0; i < s.Length; i++) s[i] = low + scale * generator.NextSingle();
    }

    /// <inheritdoc />
    public void RandomNormal(Tensor dst, float mean, float std, Generator generator)
    {
        var s = Span(dst);
        for (var i = 0; i < s.Length; i++) s[i] = (float)(mean + std * generator.NextNormal());
    }

    // ---- element-wise -------------------------------------------------------------------------

    /// <inheritdoc />
    public void Unary(UnaryOp op, Tensor x, Tensor y, float alpha, float beta)
    {
        Chunked(x.NumElements, new UnaryWork(op, F(x), x.StorageOffset, F(y), y.StorageOffset, alpha, beta));
    }

    private readonly struct UnaryWork(UnaryOp op, float[] x, int xo, float[] y, int yo, float alpha, float beta) : IRangeWork
    {
        public void Run(int s, int e) => UnaryRange(op, x.AsSpan(xo + s, e - s), y.AsSpan(yo + s, e - s), alpha, beta);
    }

    /// <summary>y = op(x) over one range (x and y may be the same memory).</summary>
    internal static void UnaryRange(UnaryOp op, ReadOnlySpan<float> x, Span<float> y, float alpha, float beta)
    {
        var i = 0;
        var vc = Vector<float>.Count;
        switch (op)
        {
            case UnaryOp.Relu:
                for (; i <= x.Length - vc; i += vc) Vector.Max(new Vector<float>(x[i..]), Vector<float>.Zero).CopyTo(y[i..]);
                // IEEE's maximum, as Vector.Max above: NaN kept (PyTorch's relu), +0 for -0.
                for (; i < x.Length; i++) y[i] = MathF.Max(x[i], 0f);
                return;
            case UnaryOp.Affine:
                var va = new Vector<float>(alpha); var vb = new Vector<float>(beta);
                for (; i <= x.Length - vc; i += vc) (new Vector<float>(x[i..]) * va + vb).CopyTo(y[i..]);
                for (; i < x.Length; i++) y[i] = x[i] * alpha + beta;
                return;
            case UnaryOp.Hardswish:
                var three = new Vector<float>(3f); var six = new Vector<float>(6f); var sixth = new Vector<float>(1f / 6f);
                for (; i <= x.Length - vc; i += vc)
                {
                    var v = new Vector<float>(x[i..]);
                    (v * Vector.Min(Vector.Max(v + three, Vector<float>.Zero), six) * sixth).CopyTo(y[i..]);
                }
                for (; i < x.Length; i++) y[i] = x[i] * Math.Clamp(x[i] + 3f, 0f, 6f) * (1f / 6f);
                return;
        }
        for (; i < x.Length; i++) y[i] = UnaryScalar(op, x[i], alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float UnaryScalar(UnaryOp op, float v, float alpha, float beta) => op switch
    {
        UnaryOp.Neg => -v,
        UnaryOp.Exp => MathF.Exp(v),
        UnaryOp.Log => MathF.Log(v),
        UnaryOp.Sqrt => MathF.Sqrt(v),
        UnaryOp.Abs => MathF.Abs(v),
        UnaryOp.Pow => MathF.Pow(v, alpha),
        UnaryOp.Clamp => v < alpha ? alpha : v > beta ? beta : v,
        UnaryOp.Relu => MathF.Max(v, 0f),
        UnaryOp.Relu6 => v < 0 ? 0 : v > 6 ? 6 : v,
        UnaryOp.Hardswish => v * Math.Clamp(v + 3f, 0f, 6f) * (1f / 6f),
        UnaryOp.Sigmoid => 1f / (1f + MathF.Exp(-v)),
        UnaryOp.Tanh => MathF.Tanh(v),
        UnaryOp.Affine => v * alpha + beta,
        UnaryOp.Reciprocal => alpha / v,
        UnaryOp.Square => v * v,
        UnaryOp.Sign => v > 0 ? 1 : v < 0 ? -1 : 0,
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, null),
    };

    /// <inheritdoc />
    public void UnaryBackward(UnaryOp op, Tensor x, Tensor y, Tensor dy, Tensor dx, float alpha, float beta)
    {
        Chunked(x.NumElements, new UnaryBackwardWork(op, F(x), x.StorageOffset, F(y), y.StorageOffset, F(dy), dy.StorageOffset,
            F(dx), dx.StorageOffset, alpha, beta));
    }

    private readonly struct UnaryBackwardWork(UnaryOp op, float[] x, int xo, float[] y, int yo, float[] dy, int dyo,
        float[] dx, int dxo, float alpha, float beta) : IRangeWork
    {
        public void Run(int s, int e) => UnaryBackwardRange(op, x.AsSpan(xo + s, e - s), y.AsSpan(yo + s, e - s),
            dy.AsSpan(dyo + s, e - s), dx.AsSpan(dxo + s, e - s), alpha, beta);
    }

    private static void UnaryBackwardRange(UnaryOp op, ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy,
        Span<float> dx, float alpha, float beta)
    {
        var i = 0;
        var vc = Vector<float>.Count;
        switch (op)
        {
            case UnaryOp.Relu:
                for (; i <= x.Length - vc; i += vc)
                {
                    var mask = Vector.GreaterThan(new Vector<float>(x[i..]), Vector<float>.Zero);
                    Vector.ConditionalSelect(mask, new Vector<float>(dy[i..]), Vector<float>.Zero).CopyTo(dx[i..]);
                }
                break;
            case UnaryOp.Hardswish:
                var lo = new Vector<float>(-3f); var hi = new Vector<float>(3f);
                var half = new Vector<float>(0.5f);
                for (; i <= x.Length - vc; i += vc)
                {
                    var v = new Vector<float>(x[i..]);
                    // 0 below -3, 1 above 3, x/3 + 1/2 between (as the scalar rule below).
                    var slope = Vector.ConditionalSelect(Vector.GreaterThan(v, hi), Vector<float>.One, v / hi + half);
                    slope = Vector.ConditionalSelect(Vector.LessThan(v, lo), Vector<float>.Zero, slope);
                    (new Vector<float>(dy[i..]) * slope).CopyTo(dx[i..]);
                }
                break;
            case UnaryOp.Affine:
                var va = new Vector<float>(alpha);
                for (; i <= x.Length - vc; i += vc) (new Vector<float>(dy[i..]) * va).CopyTo(dx[i..]);
                break;
        }
        for (; i < x.Length; i++) dx[i] = dy[i] * UnaryDerivative(op, x[i], y[i], alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float UnaryDerivative(UnaryOp op, float x, float y, float alpha, float beta) => op switch
    {
        UnaryOp.Neg => -1,
        UnaryOp.Exp => y,
        UnaryOp.Log => 1 / x,
        UnaryOp.Sqrt => 0.5f / y,
        UnaryOp.Abs => x > 0 ? 1 : x < 0 ? -1 : 0,
        UnaryOp.Pow => alpha == 0 ? 0 : alpha * MathF.Pow(x, alpha - 1),
        UnaryOp.Clamp => x >= alpha && x <= beta ? 1 : 0,
        UnaryOp.Relu => x > 0 ? 1 : 0,
        UnaryOp.Relu6 => x > 0 && x < 6 ? 1 : 0,
        // PyTorch: 0 below -3, 1 above 3 (inclusive), x/3 + 1/2 between.
        UnaryOp.Hardswish => x < -3 ? 0 : x <= 3 ? x / 3 + 0.5f : 1,
        UnaryOp.Sigmoid => y * (1 - y),
        UnaryOp.Tanh => 1 - y * y,
        UnaryOp.Affine => alpha,
        UnaryOp.Reciprocal => -y / x,
        UnaryOp.Square => 2 * x,
        UnaryOp.Sign => 0,
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, null),
    };

    /// <inheritdoc />
    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y)
    {
        var n = y.NumElements;
        if (n == 0) return;
        if (a.DType != DType.Float32) { BinaryGeneric(op, a, b, y); return; }
        if (a.IsContiguous && b.IsContiguous)
        {
            Chunked(n, new BinaryWork(op, F(a), a.StorageOffset, F(b), b.StorageOffset, F(y), y.StorageOffset));
            return;
        }
        BinaryStrided(op, a, b, y);
    }

    private readonly struct BinaryWork(BinaryOp op, float[] a, int ao, float[] b, int bo, float[] y, int yo) : IRangeWork
    {
        public void Run(int s, int e) => BinaryRange(op, a.AsSpan(ao + s, e - s), b.AsSpan(bo + s, e - s), y.AsSpan(yo + s, e - s));
    }

    /// <summary>
    /// y = relu(a + b) for contiguous Float32 tensors of one shape, in one pass: what <see cref="Binary"/>'s addition and
    /// <see cref="Unary"/>'s ReLU give one after the other, bit for bit (the same ranges, vectors and scalar tails), for a
    /// compiled training step whose sum is read only by the ReLU.
    /// </summary>
    internal void AddRelu(Tensor a, Tensor b, Tensor y)
    {
        if (!a.IsContiguous || !b.IsContiguous || !y.IsContiguous || a.NumElements != y.NumElements || b.NumElements != y.NumElements)
            throw new ArgumentException($"AddRelu takes contiguous tensors of one size, got {Tensor.FormatShape(a.Shape)}, {Tensor.FormatShape(b.Shape)} and {Tensor.FormatShape(y.Shape)}.");
        if (y.NumElements == 0) return;
        Chunked(y.NumElements, new AddReluWork(F(a), a.StorageOffset, F(b), b.StorageOffset, F(y), y.StorageOffset));
    }

    private readonly struct AddReluWork(float[] a, int ao, float[] b, int bo, float[] y, int yo) : IRangeWork
    {
        public void Run(int s, int e)
        {
            ReadOnlySpan<float> x = a.AsSpan(ao + s, e - s), z = b.AsSpan(bo + s, e - s);
            Span<float> o = y.AsSpan(yo + s, e - s);
            var i = 0;
            var vc = Vector<float>.Count;
            for (; i <= o.Length - vc; i += vc) Vector.Max(new Vector<float>(x[i..]) + new Vector<float>(z[i..]), Vector<float>.Zero).CopyTo(o[i..]);
            for (; i < o.Length; i++)
            {
                o[i] = MathF.Max(x[i] + z[i], 0f);
            }
        }
    }

    private static void BinaryStrided(BinaryOp op, Tensor a, Tensor b, Tensor y)
    {
        var n = y.NumElements;
        var ys = F(y); var yo = y.StorageOffset;
        var aa = F(a); var ba = F(b);
        // Broadcast or strided: walk rows of the last dimension; a scalar operand (stride 0) in the row is common (bias, BN).
        var shape = y.Shape.ToArray();
        var ast = a.Strides.ToArray(); var bst = b.Strides.ToArray();
        var rank = shape.Length;
        var last = shape[rank - 1];
        var rows = n / last;
        Chunked(rows, (r0, r1) =>
        {
            Span<float> tmpA = last <= 1024 ? stackalloc float[last] : new float[last];
            Span<float> tmpB = last <= 1024 ? stackalloc float[last] : new float[last];
            for (var r = r0; r < r1; r++)
            {
                int ai = a.StorageOffset, bi = b.StorageOffset, rem = r;
                for (var d = rank - 2; d >= 0; d--)
                {
                    var c = rem % shape[d]; rem /= shape[d];
                    ai += c * ast[d]; bi += c * bst[d];
                }
                var av = Row(aa, ai, last, ast[rank - 1], tmpA);
                var bv = Row(ba, bi, last, bst[rank - 1], tmpB);
                BinaryRange(op, av, bv, ys.AsSpan(yo + r * last, last));
            }
        }, threshold: Math.Max(1, ParallelThreshold / Math.Max(last, 1)));
    }

    private static ReadOnlySpan<float> Row(float[] data, int start, int len, int step, Span<float> tmp)
    {
        if (step == 1) return data.AsSpan(start, len);
        if (step == 0) { tmp[..len].Fill(data[start]); return tmp[..len]; }
        for (var i = 0; i < len; i++) tmp[i] = data[start + i * step];
        return tmp[..len];
    }

    private static void BinaryRange(BinaryOp op, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y)
    {
        var i = 0;
        var vc = Vector<float>.Count;
        switch (op)
        {
            case BinaryOp.Add: for (; i <= y.Length - vc; i += vc) (new Vector<float>(a[i..]) + new Vector<float>(b[i..])).CopyTo(y[i..]); break;
            case BinaryOp.Sub: for (; i <= y.Length - vc; i += vc) (new Vector<float>(a[i..]) - new Vector<float>(b[i..])).CopyTo(y[i..]); break;
            case BinaryOp.Mul: for (; i <= y.Length - vc; i += vc) (new Vector<float>(a[i..]) * new Vector<float>(b[i..])).CopyTo(y[i..]); break;
            case BinaryOp.Div: for (; i <= y.Length - vc; i += vc) (new Vector<float>(a[i..]) / new Vector<float>(b[i..])).CopyTo(y[i..]); break;
        }
        for (; i < y.Length; i++)
        {
            float x = a[i], z = b[i];
            y[i] = op switch
            {
                BinaryOp.Add => x + z,
                BinaryOp.Sub => x - z,
                BinaryOp.Mul => x * z,
                BinaryOp.Div => x / z,
                BinaryOp.Maximum => x >= z || float.IsNaN(x) ? x : z,
                BinaryOp.Minimum => x <= z || float.IsNaN(x) ? x : z,
                BinaryOp.Equal => x == z ? 1 : 0,
                BinaryOp.Greater => x > z ? 1 : 0,
                _ => throw new ArgumentOutOfRangeException(nameof(op), op, null),
            };
        }
    }

    private static void BinaryGeneric(BinaryOp op, Tensor a, Tensor b, Tensor y)
    {
        // Integer operands (labels, arg indices): element by element in double, exact below 2^53, written back
        // in y's dtype (Equal/Greater give 0 or 1; Tensor.Div divides integers as floats and never comes here with them).
        var shape = y.Shape.ToArray();
        var av = Gathered(a, shape); var bv = Gathered(b, shape);
        var ya = ((CpuStorage)y.Storage).Array;
        for (var i = 0; i < av.Length; i++)
        {
            double x = av[i], z = bv[i];
            SetElement(ya, y.StorageOffset + i, op switch
            {
                BinaryOp.Add => x + z,
                BinaryOp.Sub => x - z,
                BinaryOp.Mul => x * z,
                BinaryOp.Div => x / z,
                BinaryOp.Maximum => Math.Max(x, z),
                BinaryOp.Minimum => Math.Min(x, z),
                BinaryOp.Equal => x == z ? 1 : 0,
                BinaryOp.Greater => x > z ? 1 : 0,
                _ => throw new ArgumentOutOfRangeException(nameof(op), op, null),
            });
        }
    }

    /// <summary>The elements of a strided tensor of any dtype as doubles in row-major order.</summary>
    private static double[] Gathered(Tensor t, int[] shape)
    {
        var result = new double[t.NumElements];
        var arr = ((CpuStorage)t.Storage).Array;
        StridedPairs(shape, t.Strides.ToArray(), t.StorageOffset, Tensor.ContiguousStrides(shape), 0, (si, di, len, sStep, dStep) =>
        {
            for (var i = 0; i < len; i++) result[di + i * dStep] = GetElement(arr, si + i * sStep);
        });
        return result;
    }

    /// <inheritdoc />
    public void AddScaled(Tensor y, Tensor x, float alpha)
    {
        Chunked(y.NumElements, new AddScaledWork(F(y), y.StorageOffset, F(x), x.StorageOffset, alpha));
    }

    private readonly struct AddScaledWork(float[] y, int yo, float[] x, int xo, float alpha) : IRangeWork
    {
        public void Run(int s, int e)
        {
            var yv = y.AsSpan(yo + s, e - s); var xv = x.AsSpan(xo + s, e - s);
            var i = 0; var vc = Vector<float>.Count; var va = new Vector<float>(alpha);
            for (; i <= yv.Length - vc; i += vc) (new Vector<float>(yv[i..]) + va * new Vector<float>(xv[i..])).CopyTo(yv[i..]);
            for (; i < yv.Length; i++) yv[i] += alpha * xv[i];
        }
    }

    // ---- reductions ---------------------------------------------------------------------------

    /// <inheritdoc />
    public void Reduce(ReduceOp op, Tensor x, Tensor y, Tensor? indices, int outer, int reduce, int inner)
    {
        var xs = F(x); var ys = F(y);
        var xo = x.StorageOffset; var yo = y.StorageOffset;
        long[]? idx = indices is null ? null : L(indices);
        var io = indices?.StorageOffset ?? 0;
        Chunked(outer * inner, new ReduceWork(op, xs, xo, ys, yo, idx, io, reduce, inner), threshold: Math.Max(1, ParallelThreshold / Math.Max(reduce, 1)));
    }

    private readonly struct ReduceWork(ReduceOp op, float[] xs, int xo, float[] ys, int yo, long[]? idx, int io, int reduce, int inner) : IRangeWork
    {
        public void Run(int s, int e)
        {
            if (inner == 1)
            {
                for (var o = s; o < e; o++)
                {
                    var row = xs.AsSpan(xo + o * reduce, reduce);
                    if (op is ReduceOp.Sum or ReduceOp.Mean)
                    {
                        var sum = SumRow(row);
                        ys[yo + o] = op == ReduceOp.Mean ? sum / reduce : sum;
                    }
                    else
                    {
                        var (v, at) = ArgExtreme(row, 1, op == ReduceOp.Max);
                        ys[yo + o] = v;
                        if (idx is not null) idx[io + o] = at;
                    }
                }
                return;
            }
            for (var t = s; t < e; t++)
            {
                int o = t / inner, i = t % inner;
                var start = xo + o * reduce * inner + i;
                if (op is ReduceOp.Sum or ReduceOp.Mean)
                {
                    var sum = 0f;
                    for (var r = 0; r < reduce; r++) sum += xs[start + r * inner];
                    ys[yo + t] = op == ReduceOp.Mean ? sum / reduce : sum;
                }
                else
                {
                    var (v, at) = ArgExtreme(xs.AsSpan(start), inner, op == ReduceOp.Max, reduce);
                    ys[yo + t] = v;
                    if (idx is not null) idx[io + t] = at;
                }
            }
        }
    }

    private static float SumRow(ReadOnlySpan<float> row)
    {
        var vc = Vector<float>.Count;
        Vector<float> a0 = default, a1 = default;
        var i = 0;
        for (; i <= row.Length - 2 * vc; i += 2 * vc) { a0 += new Vector<float>(row[i..]); a1 += new Vector<float>(row[(i + vc)..]); }
        var sum = Vector.Sum(a0 + a1);
        for (; i < row.Length; i++) sum += row[i];
        return sum;
    }

    private static (float Value, long Index) ArgExtreme(ReadOnlySpan<float> data, int step, bool max, int count = -1)
    {
        var n = count < 0 ? data.Length : count;
        var best = data[0];
        long at = 0;
        for (var r = 1; r < n; r++)
        {
            var v = data[r * step];
            // NaN propagates, as in PyTorch.
            if (float.IsNaN(best)) break;
            if (float.IsNaN(v) || (max ? v > best : v < best)) { best = v; at = r; }
        }
        return (best, at);
    }

    // ---- matrix -------------------------------------------------------------------------------

    /// <inheritdoc />
    public unsafe void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, int batch, int m, int n, int k, int strideA, int strideB, float beta)
    {
        if (batch == 0 || m == 0 || n == 0) return;
        if (k == 0)
        {
            // An empty sum: C = beta * C (zeros for beta 0, whatever C held), as BLAS defines it.
            var cs = Span(c);
            if (beta == 0) cs.Clear();
            else for (int i = 0; i < cs.Length; i++) cs[i] *= beta;
            return;
        }
        var lda = transA ? m : k;
        var ldb = transB ? k : n;
        // SAFETY: the arrays are pinned for the call; offsets and matrix strides stay inside them by the caller's shape checks.
        fixed (float* pa = F(a), pb = F(b), pc = F(c))
        {
            var ap = pa + a.StorageOffset; var bp = pb + b.StorageOffset; var cp = pc + c.StorageOffset;
            if (batch == 1) Gemm.Sgemm(transA, transB, m, n, k, 1f, ap, lda, bp, ldb, beta, cp, n);
            else Gemm.SgemmBatched(transA, transB, m, n, k, 1f, ap, lda, strideA, bp, ldb, strideB, beta, cp, n, m * n, batch);
        }
    }

    // ---- indexing -----------------------------------------------------------------------------

    /// <inheritdoc />
    public void IndexSelect(Tensor x, Tensor indices, Tensor y, int outer, int dimSize, int inner)
    {
        var idx = L(indices).AsSpan(indices.StorageOffset, indices.NumElements).ToArray();
        var xa = ((CpuStorage)x.Storage).Array; var ya = ((CpuStorage)y.Storage).Array;
        var nIdx = idx.Length;
        for (var o = 0; o < outer; o++)
            for (var j = 0; j < nIdx; j++)
                Array.Copy(xa, x.StorageOffset + (o * dimSize + (int)idx[j]) * inner, ya, y.StorageOffset + (o * nIdx + j) * inner, inner);
    }

    /// <inheritdoc />
    public void IndexAdd(Tensor dy, Tensor indices, Tensor dx, int outer, int dimSize, int inner)
    {
        var idx = L(indices).AsSpan(indices.StorageOffset, indices.NumElements);
        var g = F(dy); var d = F(dx);
        var nIdx = idx.Length;
        for (var o = 0; o < outer; o++)
            for (var j = 0; j < nIdx; j++)
            {
                var src = g.AsSpan(dy.StorageOffset + (o * nIdx + j) * inner, inner);
                var dst = d.AsSpan(dx.StorageOffset + (o * dimSize + (int)idx[j]) * inner, inner);
                for (var i = 0; i < inner; i++) dst[i] += src[i];
            }
    }

    // ---- softmax and losses -------------------------------------------------------------------

    /// <inheritdoc />
    public void Softmax(Tensor x, Tensor y, int rows, int cols, bool log)
    {
        var xs = F(x); var ys = F(y);
        int xo = x.StorageOffset, yo = y.StorageOffset;
        Chunked(rows, new SoftmaxWork(xs, xo, ys, yo, cols, log), threshold: Math.Max(1, SoftmaxParallelThreshold / Math.Max(cols, 1)));
    }

    private readonly struct SoftmaxWork(float[] xs, int xo, float[] ys, int yo, int cols, bool log) : IRangeWork
    {
        public void Run(int s, int e)
        {
            for (var r = s; r < e; r++)
            {
                var xr = xs.AsSpan(xo + r * cols, cols);
                var yr = ys.AsSpan(yo + r * cols, cols);
                var max = float.NegativeInfinity;
                foreach (var v in xr) if (v > max) max = v;
                double sum = 0;
                for (var c = 0; c < cols; c++) sum += Math.Exp(xr[c] - max);
                if (log)
                {
                    // (x - max) - log(sum) in double: rounding max + log(sum) to float first would cost
                    // digits when the logits are large (at 1000 the float spacing is 6e-5).
                    var logSum = Math.Log(sum);
                    for (var c = 0; c < cols; c++) yr[c] = (float)((double)xr[c] - max - logSum);
                }
                else
                {
                    var inv = 1.0 / sum;
                    for (var c = 0; c < cols; c++) yr[c] = (float)(Math.Exp(xr[c] - max) * inv);
                }
            }
        }
    }

    /// <inheritdoc />
    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, int rows, int cols, bool log)
    {
        var ys = F(y); var gs = F(dy); var ds = F(dx);
        int yo = y.StorageOffset, go = dy.StorageOffset, dO = dx.StorageOffset;
        Chunked(rows, new SoftmaxBackwardWork(ys, yo, gs, go, ds, dO, cols, log), threshold: Math.Max(1, SoftmaxParallelThreshold / Math.Max(cols, 1)));
    }

    private readonly struct SoftmaxBackwardWork(float[] ys, int yo, float[] gs, int go, float[] ds, int dO, int cols, bool log) : IRangeWork
    {
        public void Run(int s, int e)
        {
            for (var r = s; r < e; r++)
            {
                var yr = ys.AsSpan(yo + r * cols, cols);
                var gr = gs.AsSpan(go + r * cols, cols);
                var dr = ds.AsSpan(dO + r * cols, cols);
                double acc = 0;
                if (log)
                {
                    // d/dx log_softmax: g - softmax * sum(g)
                    for (var c = 0; c < cols; c++) acc += gr[c];
                    for (var c = 0; c < cols; c++) dr[c] = (float)(gr[c] - Math.Exp(yr[c]) * acc);
                }
                else
                {
                    // d/dx softmax: y * (g - sum(g * y))
                    for (var c = 0; c < cols; c++) acc += gr[c] * yr[c];
                    for (var c = 0; c < cols; c++) dr[c] = (float)(yr[c] * (gr[c] - acc));
                }
            }
        }
    }

    /// <inheritdoc />
    public void NllLoss(Tensor logProbs, Tensor targets, Tensor? classWeights, float labelSmoothing, Tensor losses, int rows, int cols)
    {
        var lp = F(logProbs); var t = L(targets); var outp = F(losses);
        var w = classWeights is null ? null : F(classWeights);
        int lo = logProbs.StorageOffset, to = targets.StorageOffset, oo = losses.StorageOffset, wo = classWeights?.StorageOffset ?? 0;
        for (var r = 0; r < rows; r++)
        {
            var target = t[to + r];
            if (target < 0 || target >= cols) throw new ArgumentOutOfRangeException(nameof(targets), $"Target {target} at row {r} is outside [0, {cols}).");
            var row = lp.AsSpan(lo + r * cols, cols);
            var wt = w is null ? 1f : w[wo + target];
            double loss = -(1 - labelSmoothing) * wt * row[(int)target];
            if (labelSmoothing != 0)
            {
                double smooth = 0;
                for (var c = 0; c < cols; c++) smooth += (w is null ? 1f : w[wo + c]) * row[c];
                loss -= labelSmoothing / cols * smooth;
            }
            outp[oo + r] = (float)loss;
        }
    }

    /// <inheritdoc />
    public void NllLossBackward(Tensor targets, Tensor? classWeights, float labelSmoothing, Tensor dLosses, Tensor dLogProbs, int rows, int cols)
    {
        var t = L(targets); var g = F(dLosses); var d = F(dLogProbs);
        var w = classWeights is null ? null : F(classWeights);
        int to = targets.StorageOffset, go = dLosses.StorageOffset, dO = dLogProbs.StorageOffset, wo = classWeights?.StorageOffset ?? 0;
        for (var r = 0; r < rows; r++)
        {
            var row = d.AsSpan(dO + r * cols, cols);
            var gr = g[go + r];
            for (var c = 0; c < cols; c++) row[c] = labelSmoothing == 0 ? 0 : -gr * labelSmoothing / cols * (w is null ? 1f : w[wo + c]);
            var target = (int)t[to + r];
            row[target] -= gr * (1 - labelSmoothing) * (w is null ? 1f : w[wo + target]);
        }
    }

    // ---- optimizers ---------------------------------------------------------------------------

    /// <inheritdoc />
    public unsafe void AdamStep(Tensor p, Tensor g, Tensor m, Tensor v, Tensor? vMax, in AdamParams h)
    {
        var ps = Span(p); var gs = Span(g); var ms = Span(m); var vs = Span(v);
        var vmax = vMax is null ? default : Span(vMax);
        var bc1 = 1 - Math.Pow(h.Beta1, h.Step);
        var bc2 = 1 - Math.Pow(h.Beta2, h.Step);
        var stepSize = (float)(h.Lr / bc1);
        var bc2Sqrt = (float)Math.Sqrt(bc2);
        int i = 0;
        if (Vector.IsHardwareAccelerated && !h.Amsgrad)
        {
            // Vector<float>.Count parameters at a time (8 with AVX2 or AVX-512, 4 with NEON), each with the loop's
            // operations in its order (no fused multiply-adds): the same bits.
            fixed (float* pp = ps, pg = gs, pm = ms, pv = vs)
            {
                var beta1 = new Vector<float>(h.Beta1);
                var beta2 = new Vector<float>(h.Beta2);
                var oneMinusBeta1 = new Vector<float>(1 - h.Beta1);
                var oneMinusBeta2 = new Vector<float>(1 - h.Beta2);
                var decay = new Vector<float>(h.WeightDecay);
                var shrink = new Vector<float>(1 - h.Lr * h.WeightDecay);
                var divisor = new Vector<float>(bc2Sqrt);
                var eps = new Vector<float>(h.Eps);
                var size = new Vector<float>(stepSize);
                for (; i <= ps.Length - Vector<float>.Count; i += Vector<float>.Count)
                {
                    var grad = Vector.Load(pg + i);
                    var param = Vector.Load(pp + i);
                    if (h.WeightDecay != 0)
                    {
                        if (h.Decoupled) param *= shrink;
                        else grad += decay * param;
                    }
                    var first = beta1 * Vector.Load(pm + i) + oneMinusBeta1 * grad;
                    var second = beta2 * Vector.Load(pv + i) + oneMinusBeta2 * grad * grad;
                    Vector.Store(first, pm + i);
                    Vector.Store(second, pv + i);
                    var denom = Vector.SquareRoot(second) / divisor + eps;
                    Vector.Store(param - size * first / denom, pp + i);
                }
            }
        }
        for (; i < ps.Length; i++)
        {
            var grad = gs[i];
            if (h.WeightDecay != 0)
            {
                if (h.Decoupled) ps[i] *= 1 - h.Lr * h.WeightDecay;
                else grad += h.WeightDecay * ps[i];
            }
            ms[i] = h.Beta1 * ms[i] + (1 - h.Beta1) * grad;
            vs[i] = h.Beta2 * vs[i] + (1 - h.Beta2) * grad * grad;
            var second = vs[i];
            if (h.Amsgrad) { vmax[i] = MathF.Max(vmax[i], second); second = vmax[i]; }
            var denom = MathF.Sqrt(second) / bc2Sqrt + h.Eps;
            ps[i] -= stepSize * ms[i] / denom;
        }
    }

    /// <inheritdoc />
    public void SgdStep(Tensor p, Tensor g, Tensor? momentumBuffer, in SgdParams h)
    {
        var ps = Span(p); var gs = Span(g);
        var buf = momentumBuffer is null ? default : Span(momentumBuffer);
        for (var i = 0; i < ps.Length; i++)
        {
            var d = gs[i] + h.WeightDecay * ps[i];
            if (h.Momentum != 0)
            {
                buf[i] = h.FirstStep ? d : h.Momentum * buf[i] + (1 - h.Dampening) * d;
                d = h.Nesterov ? d + h.Momentum * buf[i] : buf[i];
            }
            ps[i] -= h.Lr * d;
        }
    }
}
