using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// 2-D max and average pooling over the planes of x [N, C, H, W] into y [N, C, P, Q], PyTorch semantics:
/// max pooling pads with -inf and records the first maximum in the window's row-major scan order
/// (a NaN wins and propagates); average pooling counts zero padding in the divisor, and with ceil mode
/// clips the window at the padded border before counting.
/// </summary>
/// <remarks>
/// Planes are split over <see cref="CpuThreading.Threads"/>; every plane is computed the same way
/// whatever the split, so results do not depend on the thread count. Within a plane the kernel walks
/// one window offset (kernel row, kernel column) at a time across a whole output row, which makes the
/// common stride-1-along-W case (CP-ResNet's (2, 1) pools) a vector operation; stride 2 along W (the
/// 2x2 pools) first gathers every other input into a stack buffer. Max windows one column wide (the (2, 1)
/// pools) take a vector per output row, or per 16 values of it (8 with AVX2), forward and backward
/// (<see cref="MaxPlaneColumn"/>); other planes with output rows too short for vectors gather each window
/// offset of the whole plane through a precomputed index table and scan the plane as one vector. Max pooling
/// without indices (inference) takes a separable kernel instead (<see cref="MaxPlanes(float*, float*, int, in Pool2dParams)"/>), vectorised along rows of any width.
/// </remarks>
internal static unsafe partial class PoolKernels
{
    // Below this many input elements per part, waking a worker costs more than it saves. At 32 K the pruned mel b1 plan's
    // 2 x 2 pool step without AVX-512 (19 planes of 63 x 49, 59 K) ran on one thread, 12.6 µs against the big model's
    // 10 µs on two; at 16 K its pass took 0.946 of the time (docs/benchmarks.md, step 155).
    private const long MinElementsPerPart = 1 << 14;

    // Forward pooling with output rows shorter than this (too short for the row kernel's vectors) scans
    // whole planes through a window table of at most MaxNarrowTable entries instead.
    private const int NarrowRow = 16;
    private const int MaxNarrowTable = 4096;

    // Output rows up to this long gather strided inputs into a stack buffer and take the vector path.
    private const int MaxGatheredRow = 1024;

    /// <summary>
    /// <see cref="Pool2dParams"/> with the output size computed once: its P and Q are properties that
    /// divide on every read, which costs more than the pooling itself for small planes.
    /// </summary>
    internal readonly struct Geometry(in Pool2dParams p)
    {
        public readonly int N = p.N, C = p.C, H = p.H, W = p.W, P = p.P, Q = p.Q;
        public readonly int KernelH = p.KernelH, KernelW = p.KernelW, StrideH = p.StrideH, StrideW = p.StrideW, PadH = p.PadH, PadW = p.PadW;
    }

    private struct Job
    {
        public PoolKind Kind;
        public bool Backward;
        public Geometry P;
        public float* X, Y;
        public int* Indices;
        public int Planes, Parts;
        // A residual addition + ReLU pooled as it is made (column windows only): forward, the sum's other operand
        // [N, C, H, W]; backward, the pooled values [N, C, P, Q] whose sign masks the gradient.
        public float* Addend, ReluOutput;
        // Max pooling without indices on a geometry the separable kernel runs.
        public Pool2dParams Params;
        public bool Separable;
    }

    /// <summary>y = pool(x); for max pooling, indices (or null) receives the flat h*W+w index of each maximum.</summary>
    internal static void Forward(PoolKind kind, float* x, float* y, int* indices, in Pool2dParams p)
    {
        var job = new Job { Kind = kind, P = new Geometry(p), X = x, Y = y, Indices = indices, Params = p, Separable = SeparableMax(p) };
        Execute(ref job);
    }

    /// <summary>
    /// True for a max pool <see cref="AddReluMaxForward"/> takes: windows one column wide (stride 1 along W, no padding
    /// there) that tile the rows (stride = kernel height, no padding, floor mode), with AVX-512 or AVX2.
    /// </summary>
    internal static bool FusesAddRelu(in Pool2dParams p) => IsColumn(new Geometry(p)) && IsDisjointColumn(new Geometry(p)) && !p.CeilMode;

    /// <summary>
    /// y = maxpool(relu(a + b)) with its indices, relu(a + b) never stored, for a <see cref="FusesAddRelu"/> pool: a
    /// compiled training step's residual addition + ReLU whose output only that pool reads (<see cref="MaxPlaneColumn"/>
    /// with an addend). The bits of AddRelu and then the pool.
    /// </summary>
    internal static void AddReluMaxForward(float* a, float* b, float* y, int* indices, in Pool2dParams p)
    {
        var job = new Job { Kind = PoolKind.Max, P = new Geometry(p), X = a, Addend = b, Y = y, Indices = indices, Params = p };
        Execute(ref job);
    }

    /// <summary>
    /// dx = the gradient <see cref="AddReluMaxForward"/>'s operands get for the pool's output gradient dy: 0 + dy where a
    /// window's index points and its pooled value y is positive, +0 elsewhere (<see cref="MaxBackwardPlaneColumn"/> with
    /// the pooled values): the bits of the pool's backward and then the ReLU's. An index outside its window is an error.
    /// </summary>
    internal static void ReluMaxBackward(float* dy, int* indices, float* y, float* dx, in Pool2dParams p)
    {
        var job = new Job { Kind = PoolKind.Max, Backward = true, P = new Geometry(p), X = dx, Y = dy, Indices = indices, ReluOutput = y };
        Execute(ref job);
    }

    /// <summary>dx = gradient of the pooling for output gradient dy (dx overwritten); max pooling needs the forward indices.</summary>
    internal static void Backward(PoolKind kind, float* dy, int* indices, float* dx, in Pool2dParams p)
    {
        var job = new Job { Kind = kind, Backward = true, P = new Geometry(p), X = dx, Y = dy, Indices = indices };
        Execute(ref job);
    }

    private static void Execute(ref Job job)
    {
        ref readonly Geometry p = ref job.P;
        job.Planes = p.N * p.C;
        long elements = (long)job.Planes * p.H * p.W;
        job.Parts = (int)Math.Clamp(elements / MinElementsPerPart, 1, Math.Min(CpuThreading.Threads, Math.Max(job.Planes, 1)));
        // SAFETY: job lives on this stack frame and ForParts returns only after every part is done.
        fixed (Job* state = &job) CpuThreading.ForParts(job.Parts, &RunPart, state);
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        ref readonly Geometry p = ref job.P;
        int first = (int)((long)part * job.Planes / job.Parts);
        int end = (int)((long)(part + 1) * job.Planes / job.Parts);
        long hw = (long)p.H * p.W, pq = (long)p.P * p.Q;
        if (!job.Backward && job.Kind == PoolKind.Max && job.Indices == null && job.Separable)
        {
            MaxPlanes(job.X + first * hw, job.Y + first * pq, end - first, job.Params);
            return;
        }
        if (!job.Backward && job.Kind == PoolKind.Average && p.KernelH == p.H && p.KernelW == p.W && p.PadH == 0 && p.PadW == 0)
        {
            // Global average (CP-ResNet's head): one mean per plane, summed in row-major order as the window kernels do.
            for (int plane = first; plane < end; plane++)
            {
                float* x = job.X + plane * hw;
                float sum = 0;
                for (long i = 0; i < hw; i++) sum += x[i];
                job.Y[plane] = sum / hw;
            }
            return;
        }
        if (job.Backward && job.Kind == PoolKind.Average && IsGlobal(p))
        {
            GlobalAverageBackward(job.Y + first, job.X + first * hw, end - first, (int)hw);
            return;
        }
        if (job.Kind == PoolKind.Max && IsColumn(p))
        {
            // CP-ResNet's 2 x 1 pools: a vector per output row (or per 16 values of it, 8 with AVX2), no window table.
            for (int plane = first; plane < end; plane++)
            {
                float* x = job.X + plane * hw, y = job.Y + plane * pq;
                int* indices = job.Indices == null ? null : job.Indices + plane * pq;
                // Narrow rows' whole-vector stores run on into what is written after them, up to the part's last plane.
                float* addend = job.Addend == null ? null : job.Addend + plane * hw;
                if (!job.Backward)
                {
                    if (Avx512F.IsSupported) MaxPlaneColumn(x, y, indices, p, end - plane, addend);
                    else MaxPlaneColumnAvx2(x, y, indices, p, end - plane, addend);
                }
                else
                {
                    float* mask = job.ReluOutput == null ? null : job.ReluOutput + plane * pq;
                    if (IsDisjointColumn(p)
                        && (Avx512F.IsSupported ? MaxBackwardPlaneColumn(y, indices, x, p, end - plane, mask) : MaxBackwardPlaneColumnAvx2(y, indices, x, p, end - plane, mask)))
                        continue;
                    if (mask != null)
                        throw new InvalidOperationException("ReluMaxBackward found a pool index outside its window; the indices must be those its forward wrote.");
                    MaxBackwardPlane(y, indices, x, p);
                }
            }
            return;
        }
        if (!job.Backward && job.Kind == PoolKind.Max && IsWhole2x2(p))
        {
            // The stem's 2 x 2 / 2 pool in vectors of windows, ahead of the narrow rows' window table (MNIST's 13 x 13 ->
            // 6 x 6, 256 x 19 planes: 0.07-0.10 against 0.28-0.37 ms with AVX-512, 0.13 against 0.32 ms with AVX2).
            for (int plane = first; plane < end; plane++)
                MaxPlane2x2(job.X + plane * hw, job.Y + plane * pq, job.Indices == null ? null : job.Indices + plane * pq, p);
            return;
        }
        if (!job.Backward && p.Q < NarrowRow && RunNarrow(ref job, first, end)) return;
        for (int plane = first; plane < end; plane++)
        {
            float* x = job.X + plane * hw;
            float* y = job.Y + plane * pq;
            int* indices = job.Indices == null ? null : job.Indices + plane * pq;
            if (job.Kind == PoolKind.Max)
            {
                if (job.Backward) MaxBackwardPlane(y, indices, x, p);
                else MaxPlane(x, y, indices, p);
            }
            else
            {
                if (job.Backward) AverageBackwardPlane(y, x, p);
                else AveragePlane(x, y, p);
            }
        }
    }

    /// <summary>
    /// Forward pooling of planes [first, end) whose output rows are too short for the row kernels, through
    /// one window table shared by the planes; false (nothing done) when the table would be too large.
    /// </summary>
    private static bool RunNarrow(ref Job job, int first, int end)
    {
        ref readonly Geometry p = ref job.P;
        long hw = (long)p.H * p.W, pq = (long)p.P * p.Q;
        int padded = (int)((pq + Vector256<float>.Count - 1) / Vector256<float>.Count * Vector256<float>.Count);
        long tableLength = (long)padded * p.KernelH * p.KernelW;
        if (tableLength > MaxNarrowTable) return false;
        int* table = stackalloc int[(int)tableLength];
        int* firstAt = stackalloc int[padded];
        // Max: best value and its index so far; average: running sum and divisor.
        float* best = stackalloc float[padded];
        int* at = stackalloc int[padded];
        float* sum = stackalloc float[padded];
        float* divisor = stackalloc float[padded];
        float* values = stackalloc float[padded];
        BuildWindowTable(p, padded, table, firstAt);
        if (job.Kind == PoolKind.Average)
        {
            for (int o = 0; o < p.P * p.Q; o++)
            {
                int hs = o / p.Q * p.StrideH - p.PadH;
                divisor[o] = Divisor(p, hs, Math.Min(hs + p.KernelH, p.H + p.PadH), o % p.Q);
            }
        }
        for (int plane = first; plane < end; plane++)
        {
            float* x = job.X + plane * hw, y = job.Y + plane * pq;
            if (job.Kind == PoolKind.Average) AveragePlaneNarrow(x, y, p, padded, table, divisor, sum, values);
            else MaxPlaneNarrow(x, y, job.Indices == null ? null : job.Indices + plane * pq, p, padded, table, firstAt, best, at, values);
        }
        return true;
    }

    /// <summary>A 2 x 2 window, stride 2, no padding, and every window inside the input (the stem's pool), with AVX-512 or AVX2.</summary>
    private static bool IsWhole2x2(in Geometry p) =>
        (Avx512F.IsSupported || Avx2.IsSupported) && p.KernelH == 2 && p.KernelW == 2 && p.StrideH == 2 && p.StrideW == 2 && p.PadH == 0 && p.PadW == 0
        && 2 * p.P <= p.H && 2 * p.Q <= p.W;

    /// <inheritdoc cref="IsWhole2x2(in Geometry)"/>
    internal static bool IsWhole2x2(in Pool2dParams p) => !p.CeilMode && IsWhole2x2(new Geometry(p));

    private static void MaxPlane2x2(float* x, float* y, int* indices, in Geometry p) => MaxPlane2x2(x, y, indices, p.W, p.P, p.Q);

    /// <summary>
    /// <see cref="MaxPlane"/> for <see cref="IsWhole2x2(in Geometry)"/> geometries (input rows <paramref name="w"/> wide,
    /// output <paramref name="outH"/> x <paramref name="outW"/>): 16 outputs at a time from two 32-float loads per input row,
    /// split into even and odd columns by permutes, then the window's four values compared in PyTorch's scan order (a later
    /// value wins only when greater, or NaN), with the flat index of the winner. Also the pool of a batch norm that a
    /// compiled training step runs fused with it, plane by plane. Without AVX-512, <see cref="MaxPlane2x2Avx2{TIndexed}"/>.
    /// </summary>
    internal static void MaxPlane2x2(float* x, float* y, int* indices, int w, int outH, int outW)
    {
        if (!Avx512F.IsSupported)
        {
            if (indices == null) MaxPlane2x2Avx2<Gemm.N0>(x, y, null, w, outH, outW);
            else MaxPlane2x2Avx2<Gemm.N1>(x, y, indices, w, outH, outW);
            return;
        }
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var odd = even + Vector512<int>.One;
        var lane = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        int first = 0;
        if (2 * outW <= 16)
        {
            // Output rows of at most 8 (the stem's 6 x 6 from 13 x 13): two rows a vector, row oh in lanes [0, outW) and
            // oh + 1 in [outW, 2 outW), which lie side by side in y. Each window's top row comes from input row 2 oh or
            // 2 oh + 2, loaded into two vectors whose even and odd columns one permute each gathers.
            var second = Vector512.GreaterThanOrEqual(lane, Vector512.Create(outW));
            var column = lane - (Vector512.Create(outW) & second);
            var pairEven = (column * 2) + (Vector512.Create(16) & second);
            var pairOdd = pairEven + Vector512<int>.One;
            // Each lane's window's first input, relative to row 2 oh.
            var offset = (Vector512.Create(2 * w) & second) + column * 2;
            var loads = Vector512.LessThan(lane, Vector512.Create(2 * outW)).AsSingle();
            var stores = Vector512.LessThan(lane, Vector512.Create(2 * outW));
            for (; first + 2 <= outH; first += 2)
            {
                float* r0 = x + 2 * first * w, r1 = r0 + w, r2 = r1 + w, r3 = r2 + w;
                var a = Avx512F.MaskLoad(r0, loads, Vector512<float>.Zero);
                var b = Avx512F.MaskLoad(r2, loads, Vector512<float>.Zero);
                var c = Avx512F.MaskLoad(r1, loads, Vector512<float>.Zero);
                var d = Avx512F.MaskLoad(r3, loads, Vector512<float>.Zero);
                var at = Vector512.Create(2 * first * w) + offset;
                var best = Avx512F.PermuteVar16x32x2(a, pairEven, b);
                var index = at;
                Take(ref best, ref index, Avx512F.PermuteVar16x32x2(a, pairOdd, b), at + Vector512<int>.One);
                Take(ref best, ref index, Avx512F.PermuteVar16x32x2(c, pairEven, d), at + Vector512.Create(w));
                Take(ref best, ref index, Avx512F.PermuteVar16x32x2(c, pairOdd, d), at + Vector512.Create(w + 1));
                Avx512F.MaskStore(y + first * outW, stores.AsSingle(), best);
                if (indices != null) Avx512F.MaskStore(indices + first * outW, stores, index);
            }
        }
        for (int oh = first; oh < outH; oh++)
        {
            float* r0 = x + 2 * oh * w, r1 = r0 + w;
            int rowBase = 2 * oh * w;
            for (int q = 0; q < outW; q += 16)
            {
                int count = Math.Min(16, outW - q);
                // Masked loads: the 2 * count inputs of the block, never past them.
                var inLo = Vector512.LessThan(lane, Vector512.Create(2 * count)).AsSingle();
                var inHi = Vector512.LessThan(lane + Vector512.Create(16), Vector512.Create(2 * count)).AsSingle();
                var a = Avx512F.MaskLoad(r0 + 2 * q, inLo, Vector512<float>.Zero);
                var b = Avx512F.MaskLoad(r0 + 2 * q + 16, inHi, Vector512<float>.Zero);
                var c = Avx512F.MaskLoad(r1 + 2 * q, inLo, Vector512<float>.Zero);
                var d = Avx512F.MaskLoad(r1 + 2 * q + 16, inHi, Vector512<float>.Zero);
                var at = Vector512.Create(rowBase + 2 * q) + lane * 2;
                var best = Avx512F.PermuteVar16x32x2(a, even, b);
                var index = at;
                Take(ref best, ref index, Avx512F.PermuteVar16x32x2(a, odd, b), at + Vector512<int>.One);
                Take(ref best, ref index, Avx512F.PermuteVar16x32x2(c, even, d), at + Vector512.Create(w));
                Take(ref best, ref index, Avx512F.PermuteVar16x32x2(c, odd, d), at + Vector512.Create(w + 1));
                var outMask = Vector512.LessThan(lane, Vector512.Create(count));
                Avx512F.MaskStore(y + oh * outW + q, outMask.AsSingle(), best);
                if (indices != null) Avx512F.MaskStore(indices + oh * outW + q, outMask, index);
            }
        }

        static void Take(ref Vector512<float> best, ref Vector512<int> index, Vector512<float> v, Vector512<int> at)
        {
            var take = Vector512.GreaterThan(v, best) | ~Vector512.Equals(v, v);
            best = Vector512.ConditionalSelect(take, v, best);
            index = Vector512.ConditionalSelect(take.AsInt32(), at, index);
        }
    }

    /// <summary>
    /// <see cref="MaxPlane2x2(float*, float*, int*, int, int, int)"/> on 256-bit vectors (AVX2): each output row 8
    /// outputs at a time from two 8-float masked loads per input row (never past the row's 2 x 8 inputs), split into
    /// even and odd columns by a permute within each load and a swap of their halves, then the same comparisons in the
    /// same scan order: the same values and indices (TIndexed 1; with 0 no index is computed). Writes only the output
    /// plane, but lanes past a row's end before that row's successors are written.
    /// </summary>
    private static void MaxPlane2x2Avx2<TIndexed>(float* x, float* y, int* indices, int w, int outH, int outW) where TIndexed : struct, Gemm.IConstant
    {
        bool indexed = TIndexed.Value != 0;
        // Each load's even columns to its lower half and odd ones to its upper half.
        var split = Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7);
        var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        for (int oh = 0; oh < outH; oh++)
        {
            float* r0 = x + 2 * oh * w, r1 = r0 + w;
            int rowBase = 2 * oh * w;
            for (int q = 0; q < outW; q += 8)
            {
                int count = Math.Min(8, outW - q);
                var inLo = Vector256.LessThan(lane, Vector256.Create(2 * count)).AsSingle();
                var inHi = Vector256.LessThan(lane + Vector256.Create(8), Vector256.Create(2 * count)).AsSingle();
                var (top0, top1) = EvenOdd(Avx.MaskLoad(r0 + 2 * q, inLo), Avx.MaskLoad(r0 + 2 * q + 8, inHi), split);
                var (bottom0, bottom1) = EvenOdd(Avx.MaskLoad(r1 + 2 * q, inLo), Avx.MaskLoad(r1 + 2 * q + 8, inHi), split);
                var at = Vector256.Create(rowBase + 2 * q) + lane * 2;
                var best = top0;
                var index = at;
                Take(ref best, ref index, top1, at + Vector256<int>.One, indexed);
                Take(ref best, ref index, bottom0, at + Vector256.Create(w), indexed);
                Take(ref best, ref index, bottom1, at + Vector256.Create(w + 1), indexed);
                // A row's short last vector stores all 8 lanes when they end inside the plane: the lanes past the row
                // land on outputs written after it (AMD's masked stores cost several times a store).
                if (count == 8 || (long)oh * outW + q + 8 <= (long)outH * outW)
                {
                    best.Store(y + oh * outW + q);
                    if (indexed) index.Store(indices + oh * outW + q);
                }
                else
                {
                    var outMask = Vector256.LessThan(lane, Vector256.Create(count));
                    Avx.MaskStore(y + oh * outW + q, outMask.AsSingle(), best);
                    if (indexed) Avx2.MaskStore(indices + oh * outW + q, outMask, index);
                }
            }
        }

        // Columns 0, 2, ..., 14 and 1, 3, ..., 15 of the 16 floats in a (0-7) and b (8-15).
        static (Vector256<float> Even, Vector256<float> Odd) EvenOdd(Vector256<float> a, Vector256<float> b, Vector256<int> split)
        {
            var pa = Avx2.PermuteVar8x32(a, split);
            var pb = Avx2.PermuteVar8x32(b, split);
            return (Avx.Permute2x128(pa, pb, 0x20), Avx.Permute2x128(pa, pb, 0x31));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static void Take(ref Vector256<float> best, ref Vector256<int> index, Vector256<float> v, Vector256<int> at, bool indexed)
        {
            var take = Vector256.GreaterThan(v, best) | ~Vector256.Equals(v, v);
            best = Vector256.ConditionalSelect(take, v, best);
            if (indexed) index = Vector256.ConditionalSelect(take.AsInt32(), at, index);
        }
    }

    /// <summary>One window over the whole plane, without padding (a global average: CP-ResNet's head).</summary>
    private static bool IsGlobal(in Geometry p) => Avx512F.IsSupported && p.KernelH == p.H && p.KernelW == p.W && p.PadH == 0 && p.PadW == 0;

    /// <summary>
    /// <see cref="AverageBackwardPlane"/> for <see cref="IsGlobal"/> windows over <paramref name="planes"/> planes of
    /// <paramref name="hw"/> values: each value of plane n is 0 + dy[n] / hw, the bits of that loop's clear, division and
    /// add, written 16 at a time (its per-plane loop and clear cost 9 ns a plane of 6 values, more than the writes).
    /// </summary>
    private static void GlobalAverageBackward(float* dy, float* dx, int planes, int hw)
    {
        float divisor = hw;
        var tail = ConvKernels.FirstLanes(hw % Vector512<float>.Count);
        int whole = hw - hw % Vector512<float>.Count;
        for (int n = 0; n < planes; n++)
        {
            var g = Vector512.Create(dy[n] / divisor + 0f);
            float* plane = dx + (long)n * hw;
            for (int i = 0; i < whole; i += Vector512<float>.Count) Vector512.Store(g, plane + i);
            if (whole < hw) Avx512F.MaskStore(plane + whole, tail, g);
        }
    }

    /// <summary>
    /// Windows one column wide (stride 1 along W, no padding there): CP-ResNet's 2 x 1 pools, on MNIST's 6-wide maps
    /// (which the window table would otherwise gather value by value) and mel's 24-wide ones (whose window loop set up
    /// each output row's maxima and indices value by value, then compared 8 at a time: harness, 64 samples x 19
    /// channels on 31 x 24, two threads, alternated, forward with indices 0.26-0.33 of its time, backward 0.36-0.51).
    /// </summary>
    private static bool IsColumn(in Geometry p) => (Avx512F.IsSupported || Avx2.IsSupported) && p.KernelW == 1 && p.StrideW == 1 && p.PadW == 0;

    /// <summary>
    /// <see cref="IsColumn"/> windows that tile the rows without overlap or padding (stride = kernel height), so
    /// that each input lies in at most one window.
    /// </summary>
    private static bool IsDisjointColumn(in Geometry p) => p.StrideH == p.KernelH && p.PadH == 0;

    /// <summary>
    /// One plane of <see cref="AddReluMaxForward"/>: y and indices [P, Q] = maxpool(relu(a + b)) of the planes a and b
    /// [H, W] for a <see cref="FusesAddRelu"/> pool <paramref name="p"/> (checked by the caller; its N and C are not
    /// read), the same bits; a batch norm that computes the addition pools each plane with it
    /// (<see cref="BatchNormKernels"/>). Writes nothing past the plane's output.
    /// </summary>
    internal static void AddReluMaxPlane(float* a, float* b, float* y, int* indices, in Geometry p)
    {
        if (Avx512F.IsSupported) MaxPlaneColumn(a, y, indices, p, 1, b);
        else MaxPlaneColumnAvx2(a, y, indices, p, 1, b);
    }

    /// <summary>
    /// <see cref="MaxPlane"/> for <see cref="IsColumn"/> geometries: each output row is one vector (or, over 16 values,
    /// several, the last masked), the window's input rows compared into it in scan order (a later value wins only when
    /// greater, or NaN), with the flat index of the winner; a window with nothing above -inf points at its first input,
    /// as PyTorch's does. With <paramref name="addend"/> the values compared are relu(x + addend) (a residual addition +
    /// ReLU pooled as it is made, <see cref="AddReluMaxForward"/>), each <see cref="ConvKernels.Relu(Vector512{float})"/>
    /// of the sum as AddRelu takes it.
    /// </summary>
    private static void MaxPlaneColumn(float* x, float* y, int* indices, in Geometry p, int planesLeft, float* addend = null)
    {
        int w = p.W;
        // Narrow rows from this one on are stored masked: a whole vector would reach past the part's last plane.
        int room = (int)Math.Min((long)planesLeft * p.P * w - Vector512<float>.Count, int.MaxValue);
        var lane = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var negative = Vector512.Create(float.NegativeInfinity);
        for (int oh = 0; oh < p.P; oh++)
        {
            int hs = oh * p.StrideH - p.PadH;
            int h0 = Math.Max(hs, 0), h1 = Math.Min(hs + p.KernelH, p.H);
            for (int c0 = 0; c0 < w; c0 += Vector512<float>.Count)
            {
                var row = Vector512.LessThan(lane, Vector512.Create(w - c0));
                var best = negative;
                var index = Vector512.Create(h0 * w + c0) + lane;
                for (int ih = h0; ih < h1; ih++)
                {
                    var v = Avx512F.MaskLoad(x + ih * w + c0, row.AsSingle(), negative);
                    if (addend != null) v = ConvKernels.Relu(v + Avx512F.MaskLoad(addend + ih * w + c0, row.AsSingle(), Vector512<float>.Zero));
                    var take = Vector512.GreaterThan(v, best) | ~Vector512.Equals(v, v);
                    best = Vector512.ConditionalSelect(take, v, best);
                    index = Vector512.ConditionalSelect(take.AsInt32(), Vector512.Create(ih * w + c0) + lane, index);
                }
                // A narrow row's whole vector runs into the next row, written after it; a wide row's last is masked.
                bool masked = w > Vector512<float>.Count ? w - c0 < Vector512<float>.Count : oh * w > room;
                StoreRow(y + oh * w + c0, best, row, masked);
                if (indices != null) StoreRow((float*)(indices + oh * w + c0), index.AsSingle(), row, masked);
            }
        }
    }

    /// <summary>
    /// <see cref="MaxBackwardPlane(float*, int*, float*, int, int, bool)"/> for <see cref="IsDisjointColumn"/> windows, a
    /// row at a time: each input of a window row gets 0 + dy where the window's index points at it and zero elsewhere (the
    /// bits of the scalar loop's clear and add); rows below the last window are zero. False, with dx to be rewritten,
    /// when some index does not point into its own window (indices not written by the forward pass): the scalar loop then
    /// rejects it or adds it where it points, as it would for any geometry. With <paramref name="reluOutput"/> (the pooled
    /// values of a ReLU pooled as it was made), each 0 + dy is kept only where that value is positive: the ReLU's
    /// backward after the pool's (<see cref="ReluMaxBackward"/>).
    /// </summary>
    private static bool MaxBackwardPlaneColumn(float* dy, int* indices, float* dx, in Geometry p, int planesLeft, float* reluOutput = null)
    {
        int w = p.W, kh = p.KernelH;
        // Narrow rows from this one on are stored masked: a whole vector would reach past the part's last plane.
        int room = (int)Math.Min((long)planesLeft * p.H * w - Vector512<float>.Count, int.MaxValue);
        var lane = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        bool wide = w > Vector512<float>.Count, found = true;
        for (int c0 = 0; c0 < w; c0 += Vector512<float>.Count)
        {
            var row = Vector512.LessThan(lane, Vector512.Create(w - c0));
            bool partial = w - c0 < Vector512<float>.Count;
            for (int oh = 0; oh < p.P; oh++)
            {
                var g = Avx512F.MaskLoad(dy + oh * w + c0, row.AsSingle(), Vector512<float>.Zero) + Vector512<float>.Zero;
                if (reluOutput != null)
                {
                    var positive = Vector512.GreaterThan(Avx512F.MaskLoad(reluOutput + oh * w + c0, row.AsSingle(), Vector512<float>.Zero), Vector512<float>.Zero);
                    g = Vector512.ConditionalSelect(positive, g, Vector512<float>.Zero);
                }
                var at = Avx512F.MaskLoad(indices + oh * w + c0, row, Vector512<int>.Zero);
                var seen = ~row;
                for (int ih = oh * kh; ih < oh * kh + kh; ih++)
                {
                    var here = Vector512.Equals(at, Vector512.Create(ih * w + c0) + lane);
                    seen |= here;
                    StoreRow(dx + ih * w + c0, g & here.AsSingle(), row, wide ? partial : ih * w > room);
                }
                found &= Vector512.EqualsAll(seen, Vector512<int>.AllBitsSet);
            }
            for (int ih = p.P * kh; ih < p.H; ih++) StoreRow(dx + ih * w + c0, Vector512<float>.Zero, row, wide ? partial : ih * w > room);
        }
        return found;
    }

    /// <summary>
    /// <see cref="MaxPlaneColumn"/> on 256-bit vectors (AVX2): 8 values of an output row a vector, the same comparisons in
    /// the same scan order, so the same values and indices.
    /// </summary>
    private static void MaxPlaneColumnAvx2(float* x, float* y, int* indices, in Geometry p, int planesLeft, float* addend)
    {
        int w = p.W;
        // Narrow rows from this one on are stored masked: a whole vector would reach past the part's last plane.
        int room = (int)Math.Min((long)planesLeft * p.P * w - Vector256<float>.Count, int.MaxValue);
        var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        var negative = Vector256.Create(float.NegativeInfinity);
        for (int oh = 0; oh < p.P; oh++)
        {
            int hs = oh * p.StrideH - p.PadH;
            int h0 = Math.Max(hs, 0), h1 = Math.Min(hs + p.KernelH, p.H);
            for (int c0 = 0; c0 < w; c0 += Vector256<float>.Count)
            {
                var row = Vector256.LessThan(lane, Vector256.Create(w - c0));
                var best = negative;
                var index = Vector256.Create(h0 * w + c0) + lane;
                for (int ih = h0; ih < h1; ih++)
                {
                    var v = Vector256.ConditionalSelect(row.AsSingle(), Avx.MaskLoad(x + ih * w + c0, row.AsSingle()), negative);
                    if (addend != null) v = ConvKernels.Relu(v + Avx.MaskLoad(addend + ih * w + c0, row.AsSingle()));
                    var take = Vector256.GreaterThan(v, best) | ~Vector256.Equals(v, v);
                    best = Vector256.ConditionalSelect(take, v, best);
                    index = Vector256.ConditionalSelect(take.AsInt32(), Vector256.Create(ih * w + c0) + lane, index);
                }
                // A narrow row's whole vector runs into the next row, written after it; a wide row's last is masked.
                bool masked = w > Vector256<float>.Count ? w - c0 < Vector256<float>.Count : oh * w > room;
                StoreRowAvx2(y + oh * w + c0, best, row, masked);
                if (indices != null) StoreRowAvx2((float*)(indices + oh * w + c0), index.AsSingle(), row, masked);
            }
        }
    }

    /// <summary>
    /// <see cref="MaxBackwardPlaneColumn"/> on 256-bit vectors (AVX2): 8 values of a window row a vector, the same
    /// values written; false when some index does not point into its own window.
    /// </summary>
    private static bool MaxBackwardPlaneColumnAvx2(float* dy, int* indices, float* dx, in Geometry p, int planesLeft, float* reluOutput)
    {
        int w = p.W, kh = p.KernelH;
        // Narrow rows from this one on are stored masked: a whole vector would reach past the part's last plane.
        int room = (int)Math.Min((long)planesLeft * p.H * w - Vector256<float>.Count, int.MaxValue);
        var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        bool wide = w > Vector256<float>.Count, found = true;
        for (int c0 = 0; c0 < w; c0 += Vector256<float>.Count)
        {
            var row = Vector256.LessThan(lane, Vector256.Create(w - c0));
            bool partial = w - c0 < Vector256<float>.Count;
            for (int oh = 0; oh < p.P; oh++)
            {
                var g = Avx.MaskLoad(dy + oh * w + c0, row.AsSingle()) + Vector256<float>.Zero;
                if (reluOutput != null)
                {
                    var positive = Vector256.GreaterThan(Avx.MaskLoad(reluOutput + oh * w + c0, row.AsSingle()), Vector256<float>.Zero);
                    g = Vector256.ConditionalSelect(positive, g, Vector256<float>.Zero);
                }
                var at = Avx2.MaskLoad(indices + oh * w + c0, row);
                var seen = ~row;
                for (int ih = oh * kh; ih < oh * kh + kh; ih++)
                {
                    var here = Vector256.Equals(at, Vector256.Create(ih * w + c0) + lane);
                    seen |= here;
                    StoreRowAvx2(dx + ih * w + c0, g & here.AsSingle(), row, wide ? partial : ih * w > room);
                }
                found &= Vector256.EqualsAll(seen, Vector256<int>.AllBitsSet);
            }
            for (int ih = p.P * kh; ih < p.H; ih++) StoreRowAvx2(dx + ih * w + c0, Vector256<float>.Zero, row, wide ? partial : ih * w > room);
        }
        return found;
    }

    /// <summary><see cref="StoreRow"/> for 8 values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRowAvx2(float* at, Vector256<float> values, Vector256<int> row, bool masked)
    {
        if (masked) Avx.MaskStore(at, row.AsSingle(), values);
        else Vector256.Store(values, at);
    }

    /// <summary>One row of a plane (or 16 values of it): the lanes of <paramref name="row"/> when <paramref name="masked"/>, else a whole vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* at, Vector512<float> values, Vector512<int> row, bool masked)
    {
        if (masked) Avx512F.MaskStore(at, row.AsSingle(), values);
        else Vector512.Store(values, at);
    }

    private static void MaxPlane(float* x, float* y, int* indices, in Geometry p)
    {
        int outW = p.Q, sw = p.StrideW;
        bool gather = sw == 2 && outW <= MaxGatheredRow;
        float* gathered = stackalloc float[gather ? outW : 0];
        for (int oh = 0; oh < p.P; oh++)
        {
            int hs = oh * p.StrideH - p.PadH;
            int h0 = Math.Max(hs, 0), h1 = Math.Min(hs + p.KernelH, p.H);
            float* yr = y + oh * outW;
            int* ir = indices == null ? null : indices + oh * outW;
            for (int q = 0; q < outW; q++)
            {
                yr[q] = float.NegativeInfinity;
                // PyTorch's index for an all -inf window: the window's first position inside the input.
                if (ir != null) ir[q] = h0 * p.W + Math.Max(q * sw - p.PadW, 0);
            }
            for (int ih = h0; ih < h1; ih++)
            {
                float* xr = x + ih * p.W;
                for (int kw = 0; kw < p.KernelW; kw++)
                {
                    int offset = kw - p.PadW;
                    var (qLow, qHigh) = ConvKernels.ValidRange(offset, sw, p.W, outW);
                    int rowBase = ih * p.W + offset;
                    if (sw == 1)
                    {
                        MaxRow(yr, ir, xr + offset, rowBase, 1, qLow, qHigh);
                    }
                    else if (gather)
                    {
                        ConvKernels.GatherStride2(gathered + qLow, xr + offset + 2 * qLow, qHigh - qLow);
                        MaxRow(yr, ir, gathered, rowBase, 2, qLow, qHigh);
                    }
                    else
                    {
                        for (int q = qLow; q < qHigh; q++) MaxStep(yr, ir, q, xr[q * sw + offset], rowBase + q * sw);
                    }
                }
            }
        }
    }

    /// <summary>
    /// The window table of a narrow plane (output rows too short for vectors): for window offset k
    /// (kernel row-major) and output o, table[k * padded + o] is the flat input index or -1 when the
    /// offset falls in the padding (or o is past the end); first[o] is the window's first input position.
    /// </summary>
    private static void BuildWindowTable(in Geometry p, int padded, int* table, int* first)
    {
        int pq = p.P * p.Q;
        for (int o = 0; o < padded; o++)
        {
            int oh = o / p.Q, q = o % p.Q;
            int hs = oh * p.StrideH - p.PadH, ws = q * p.StrideW - p.PadW;
            first[o] = o < pq ? Math.Max(hs, 0) * p.W + Math.Max(ws, 0) : 0;
            for (int kh = 0; kh < p.KernelH; kh++)
            {
                for (int kw = 0; kw < p.KernelW; kw++)
                {
                    int ih = hs + kh, iw = ws + kw;
                    bool inside = o < pq && (uint)ih < (uint)p.H && (uint)iw < (uint)p.W;
                    table[(kh * p.KernelW + kw) * padded + o] = inside ? ih * p.W + iw : -1;
                }
            }
        }
    }

    /// <summary>
    /// Average pooling of a narrow plane through its window table (padding reads as 0); divisor[o] is
    /// output o's count_include_pad divisor. sum and values are scratch of <paramref name="padded"/> elements.
    /// </summary>
    private static void AveragePlaneNarrow(float* x, float* y, in Geometry p, int padded, int* table, float* divisor,
        float* sum, float* values)
    {
        new Span<float>(sum, padded).Clear();
        int windows = p.KernelH * p.KernelW;
        for (int k = 0; k < windows; k++)
        {
            int* t = table + k * padded;
            for (int o = 0; o < padded; o++) values[o] = t[o] >= 0 ? x[t[o]] : 0f;
            ConvKernels.Add(sum, values, padded);
        }
        int pq = p.P * p.Q;
        for (int o = 0; o < pq; o++) y[o] = sum[o] / divisor[o];
    }

    /// <summary>
    /// Max pooling of a narrow plane through its window table: one gather and one vector scan of the
    /// whole plane per window offset. best, at and values are scratch of <paramref name="padded"/> elements.
    /// </summary>
    private static void MaxPlaneNarrow(float* x, float* y, int* indices, in Geometry p, int padded, int* table, int* first,
        float* best, int* at, float* values)
    {
        for (int o = 0; o < padded; o++) best[o] = float.NegativeInfinity;
        Unsafe.CopyBlockUnaligned(at, first, (uint)padded * sizeof(int));
        int windows = p.KernelH * p.KernelW;
        for (int k = 0; k < windows; k++)
        {
            int* t = table + k * padded;
            for (int o = 0; o < padded; o++) values[o] = t[o] >= 0 ? x[t[o]] : float.NegativeInfinity;
            int q = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                for (; q <= padded - Vector256<float>.Count; q += Vector256<float>.Count)
                {
                    var v = Vector256.Load(values + q);
                    var m = Vector256.Load(best + q);
                    var take = Vector256.GreaterThan(v, m) | ~Vector256.Equals(v, v);
                    Vector256.Store(Vector256.ConditionalSelect(take, v, m), best + q);
                    Vector256.Store(Vector256.ConditionalSelect(take.AsInt32(), Vector256.Load(t + q), Vector256.Load(at + q)), at + q);
                }
            }
            for (; q < padded; q++)
            {
                float v = values[q];
                if (v > best[q] || float.IsNaN(v))
                {
                    best[q] = v;
                    at[q] = t[q];
                }
            }
        }
        int pq = p.P * p.Q;
        Unsafe.CopyBlockUnaligned(y, best, (uint)pq * sizeof(float));
        if (indices != null) Unsafe.CopyBlockUnaligned(indices, at, (uint)pq * sizeof(int));
    }

    /// <summary>For q in [low, high): if src[q] &gt; y[q] or is NaN, y[q] = src[q] and indices[q] = rowBase + q * step.</summary>
    private static void MaxRow(float* y, int* indices, float* src, int rowBase, int step, int low, int high)
    {
        int q = low;
        if (Vector256.IsHardwareAccelerated)
        {
            var lanes = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * step;
            for (; q <= high - Vector256<float>.Count; q += Vector256<float>.Count)
            {
                var v = Vector256.Load(src + q);
                var m = Vector256.Load(y + q);
                var take = Vector256.GreaterThan(v, m) | ~Vector256.Equals(v, v);
                Vector256.Store(Vector256.ConditionalSelect(take, v, m), y + q);
                if (indices != null)
                {
                    var at = Vector256.Create(rowBase + q * step) + lanes;
                    Vector256.Store(Vector256.ConditionalSelect(take.AsInt32(), at, Vector256.Load(indices + q)), indices + q);
                }
            }
        }
        for (; q < high; q++) MaxStep(y, indices, q, src[q], rowBase + q * step);
    }

    /// <summary>One scalar step of the scan, written without branches on the data (random inputs defeat prediction).</summary>
    private static void MaxStep(float* y, int* indices, int q, float v, int at)
    {
        float m = y[q];
        bool take = v > m || float.IsNaN(v);
        y[q] = take ? v : m;
        if (indices != null) indices[q] = take ? at : indices[q];
    }

    private static void MaxBackwardPlane(float* dy, int* indices, float* dx, in Geometry p) => MaxBackwardPlane(dy, indices, dx, p.H * p.W, p.P * p.Q);

    /// <summary>
    /// <see cref="MaxBackwardPlane(float*, int*, float*, int, int, bool)"/> (disjoint) for <see cref="IsWhole2x2(in Pool2dParams)"/>
    /// windows: a plane of <paramref name="h"/> x <paramref name="w"/> under <paramref name="outH"/> x
    /// <paramref name="outW"/> outputs, the same bits. With AVX-512 it is written row by row, 16 values a vector from 8
    /// windows, each lane 0 + dy where its window's index names it and +0 elsewhere, instead of cleared and then
    /// scattered value by value, for output rows of at least <see cref="MinUnpoolVectorWidth"/>. If an index does not lie
    /// in its own window, the plane is redone by the scatter, which puts it where it points or reports it off the plane.
    /// </summary>
    /// <remarks>
    /// Harness, a fused batch norm's backward sums over the stem's planes (one thread, alternated): mel b64, 63 x 49 planes,
    /// 0.88-0.93 of the scatter's time; MNIST b256, 13 x 13 planes with rows of 6 windows, 1.14 (hence the bar).
    /// </remarks>
    internal static void MaxBackwardPlane2x2(float* dy, int* indices, float* dx, int h, int w, int outH, int outW)
    {
        if (!Avx512F.IsSupported || outW < MinUnpoolVectorWidth || !MaxBackwardRows2x2(dy, indices, dx, h, w, outH, outW))
            MaxBackwardPlane(dy, indices, dx, h * w, outH * outW, disjoint: true);
    }

    /// <summary>Output rows from this many windows go through <see cref="MaxBackwardPlane2x2"/>'s vectors: one vector's worth.</summary>
    internal const int MinUnpoolVectorWidth = 8;

    /// <summary><see cref="MaxBackwardPlane2x2"/>'s vectors; false when some index lies outside its window.</summary>
    private static bool MaxBackwardRows2x2(float* dy, int* indices, float* dx, int h, int w, int outH, int outW)
    {
        var lane = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        // Lane l takes window l / 2 of the vector's 8.
        var windows = Vector512.ShiftRightLogical(lane, 1);
        int found = 0, rows = 2 * outH;
        for (int r = 0; r < rows; r++)
        {
            float* g = dy + (r >> 1) * outW, row = dx + r * w;
            int* at = indices + (r >> 1) * outW;
            int column = 0;
            for (int q = 0; q < outW; q += 8, column += 16)
            {
                // The vector's windows, then (in the row's last vector) the columns after them: no window's index names those.
                var loads = ConvKernels.FirstLanes(Math.Min(8, outW - q));
                var value = Avx512F.PermuteVar16x32(Avx512F.MaskLoad(g + q, loads, Vector512<float>.Zero), windows);
                var index = Avx512F.PermuteVar16x32(Avx512F.MaskLoad(at + q, loads.AsInt32(), Vector512<int>.Zero), windows);
                var hit = Vector512.Equals(index, Vector512.Create(r * w + column) + lane);
                found += System.Numerics.BitOperations.PopCount(hit.ExtractMostSignificantBits());
                var v = Vector512.ConditionalSelect(hit.AsSingle(), Vector512<float>.Zero + value, Vector512<float>.Zero);
                Avx512F.MaskStore(row + column, ConvKernels.FirstLanes(Math.Min(16, w - column)), v);
            }
            // Columns past the last window, without a call (the loop's vectors would be saved around it).
            for (; column < w; column += 16) Avx512F.MaskStore(row + column, ConvKernels.FirstLanes(Math.Min(16, w - column)), Vector512<float>.Zero);
        }
        if (rows < h) new Span<float>(dx + (long)rows * w, (h - rows) * w).Clear();
        return found == outH * outW;
    }

    /// <summary>
    /// dx [hw] = the max pool's input gradient of one plane: zero, plus each output's dy at its maximum's index. With
    /// <paramref name="disjoint"/> (windows that do not overlap, each input in at most one, as in
    /// <see cref="IsWhole2x2(in Pool2dParams)"/>) each maximum's gradient is written as 0 + dy, the bits the sum gives
    /// there, without reading dx back.
    /// </summary>
    internal static void MaxBackwardPlane(float* dy, int* indices, float* dx, int hw, int pq, bool disjoint = false)
    {
        new Span<float>(dx, hw).Clear();
        for (int i = 0; i < pq; i++)
        {
            int at = indices[i];
            if ((uint)at >= (uint)hw)
            {
                throw new ArgumentException(
                    $"MaxPool2d backward found index {at} outside the input plane of {hw} values; pass the indices written by the forward pass with the same geometry.");
            }
            if (disjoint) dx[at] = 0f + dy[i];
            else dx[at] += dy[i];
        }
    }

    private static void AveragePlane(float* x, float* y, in Geometry p)
    {
        int outW = p.Q, sw = p.StrideW;
        bool gather = sw == 2 && outW <= MaxGatheredRow;
        float* gathered = stackalloc float[gather ? outW : 0];
        for (int oh = 0; oh < p.P; oh++)
        {
            int hs = oh * p.StrideH - p.PadH;
            int he = Math.Min(hs + p.KernelH, p.H + p.PadH);
            int h0 = Math.Max(hs, 0), h1 = Math.Min(he, p.H);
            float* yr = y + oh * outW;
            new Span<float>(yr, outW).Clear();
            for (int ih = h0; ih < h1; ih++)
            {
                float* xr = x + ih * p.W;
                for (int kw = 0; kw < p.KernelW; kw++)
                {
                    int offset = kw - p.PadW;
                    var (qLow, qHigh) = ConvKernels.ValidRange(offset, sw, p.W, outW);
                    if (sw == 1)
                    {
                        ConvKernels.Add(yr + qLow, xr + offset + qLow, qHigh - qLow);
                    }
                    else if (gather)
                    {
                        ConvKernels.GatherStride2(gathered + qLow, xr + offset + 2 * qLow, qHigh - qLow);
                        ConvKernels.Add(yr + qLow, gathered + qLow, qHigh - qLow);
                    }
                    else
                    {
                        for (int q = qLow; q < qHigh; q++) yr[q] += xr[q * sw + offset];
                    }
                }
            }
            for (int q = 0; q < outW; q++) yr[q] /= Divisor(p, hs, he, q);
        }
    }

    /// <summary>The count_include_pad divisor: the window clipped to the padded input, padding included.</summary>
    private static int Divisor(in Geometry p, int hs, int he, int q)
    {
        int ws = q * p.StrideW - p.PadW;
        int we = Math.Min(ws + p.KernelW, p.W + p.PadW);
        return (he - hs) * (we - ws);
    }

    private static void AverageBackwardPlane(float* dy, float* dx, in Geometry p)
    {
        new Span<float>(dx, p.H * p.W).Clear();
        for (int oh = 0; oh < p.P; oh++)
        {
            int hs = oh * p.StrideH - p.PadH;
            int he = Math.Min(hs + p.KernelH, p.H + p.PadH);
            int h0 = Math.Max(hs, 0), h1 = Math.Min(he, p.H);
            for (int q = 0; q < p.Q; q++)
            {
                float g = dy[oh * p.Q + q] / Divisor(p, hs, he, q);
                int ws = q * p.StrideW - p.PadW;
                int w0 = Math.Max(ws, 0), w1 = Math.Min(ws + p.KernelW, p.W);
                for (int ih = h0; ih < h1; ih++)
                {
                    float* dr = dx + ih * p.W;
                    for (int iw = w0; iw < w1; iw++) dr[iw] += g;
                }
            }
        }
    }
}
