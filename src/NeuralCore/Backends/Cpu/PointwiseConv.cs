using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// A 1x1, stride-1 convolution of sample-major tensors whose planes hold a few positions (MNIST's 1 x 6 maps), computed
/// in place: each sample's output [K, 6] is a row of K * 6 floats, and its vectors run over that row as it lies
/// (lane L of the row is channel L / 6 at position L % 6), so no chunk of samples is copied channel-major, packed
/// for a GEMM or scattered back, and odd channel counts waste only the row's last vector. A block of 3 vectors holds
/// 8 whole channels; every block needs the same three arrangements of one input plane (lane i: position
/// (16 u + i) mod 6, u = 0, 1, 2), made once per input channel by permutes. The weights are expanded by each part into
/// the lanes' layout, [pass][c][vector]: a pass is up to 3 blocks for two samples at a time (18 accumulators in
/// registers), so each weight vector loaded serves both.
/// </summary>
/// <remarks>
/// Each output is summed as the GEMM path sums it (from zero, one fused multiply-add per input channel in order; the
/// bias added last), so the results are the same bits. The input channels are walked in slices whose expanded weights
/// stay in L1, the accumulators stored and reloaded between slices (exact).
/// </remarks>
internal static unsafe class PointwiseConv
{
    private const int Lanes = 16;
    // Positions per plane. The layout works for any plane size that divides 48 and fits a 256-bit load (up to 8); only 6
    // (MNIST's 1 x 6 maps) was measured.
    private const int Plane = 6;
    // One block: 3 vectors, the period of the input's arrangements.
    private const int BlockLanes = 48;
    private const int MaxBlocks = 3;
    private const int PassLanes = MaxBlocks * BlockLanes;
    // A slice's expanded weights (input channels x 9 vectors of 64 bytes) within about 24 KiB, the most of L1 left
    // beside an input row and the output.
    private const int MaxSliceWeightFloats = 6 * 1024;
    // Below this many multiply-adds per part, waking a worker costs more than it saves.
    private const long MinMacsPerPart = 1 << 18;

    /// <summary>Whether the convolutions use it (tests turn it off to compare it with the GEMM path).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>A 1x1, stride-1, unpadded, ungrouped convolution over planes of 6 positions (where it was measured).</summary>
    internal static bool CanRun(in Conv2dParams p)
    {
        return Enabled && Avx512F.IsSupported && Gemm.Kind == Gemm.KernelKind.Vector512 && p.R == 1 && p.S == 1
            && p.StrideH == 1 && p.StrideW == 1 && p.PadH == 0 && p.PadW == 0 && p.Groups == 1
            && p.H * p.W == Plane;
    }

    // Per lane of a block's three vectors: the position it reads from an input plane, and (over a pass's 9 vectors) the
    // channel of the pass it belongs to.
    private static readonly Vector512<int>[] Positions = [Arrangement(0, channel: false), Arrangement(Lanes, channel: false), Arrangement(2 * Lanes, channel: false)];
    private static readonly Vector512<int>[] Channels = [.. Enumerable.Range(0, PassLanes / Lanes).Select(v => Arrangement(v * Lanes, channel: true))];

    private struct Job
    {
        public float* X, W, Bias, Y;
        public bool Transposed;
        public int N, C, K, Passes, Slice, Parts;
        // Positions, copied here: read into locals just before the loop over input channels, they stay in registers
        // there (read from the start, or from the static array, the JIT reloaded one per permute).
        public Vector512<int> Arrange0, Arrange1, Arrange2;
    }

    /// <summary>y [N, K, 6] = w [K, C] * x [N, C, 6] (+ bias [K]) per sample.</summary>
    internal static void Forward(float* x, float* w, float* bias, float* y, in Conv2dParams p) => Run(x, w, transposed: false, bias, y, p);

    /// <summary>
    /// dx [N, C, 6] = w^T * dy [N, K, 6] per sample, for the convolution <paramref name="p"/> (which
    /// <see cref="CanRun"/> accepts): the forward of the transposed kernel, read from w [K, C] as it lies, without a
    /// flipped copy.
    /// </summary>
    internal static void BackwardData(float* dy, float* w, float* dx, in Conv2dParams p) =>
        Run(dy, w, transposed: true, null, dx, new Conv2dParams(p.N, p.K, p.H, p.W, p.C, 1, 1, 1, 1, 0, 0, 1, 1, 1));

    /// <summary>
    /// y [N, K, 6] = M [K, C] * x [N, C, 6] (+ bias) per sample for the geometry <paramref name="p"/>, M = w [K, C], or
    /// with <paramref name="transposed"/> M = w^T for w stored [C, K].
    /// </summary>
    private static void Run(float* x, float* w, bool transposed, float* bias, float* y, in Conv2dParams p)
    {
        const int channelsPerPass = PassLanes / Plane;
        int slices = (p.C * PassLanes + MaxSliceWeightFloats - 1) / MaxSliceWeightFloats;
        var job = new Job
        {
            X = x, W = w, Transposed = transposed, Bias = bias, Y = y, N = p.N, C = p.C, K = p.K,
            Passes = (p.K + channelsPerPass - 1) / channelsPerPass,
            Slice = (p.C + slices - 1) / slices,
            Arrange0 = Positions[0], Arrange1 = Positions[1], Arrange2 = Positions[2],
        };
        long macs = (long)p.N * p.K * p.C * Plane;
        job.Parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, Math.Min(CpuThreading.Threads, p.N));
        // SAFETY: job outlives ForParts, which returns when every part is done.
        if (job.Parts == 1) RunPart(&job, 0);
        else CpuThreading.ForParts(job.Parts, &RunPart, &job);
    }

    /// <summary>
    /// weights[pass][c][lane] = M[k, c] for output channel k = pass * 24 + lane / 6 (zero past K), and
    /// bias[pass][lane] likewise: each pass's channel values are first laid out per input channel ([c][32]; the rows of
    /// w read front to back, or with <paramref name="transposed"/> copied from w [c, k]), then spread over the lanes by
    /// permutes.
    /// </summary>
    [SkipLocalsInit]
    private static void Expand(float* w, bool transposed, float* bias, float* weights, float* expandedBias, int k, int c, int passes,
        float* staged)
    {
        const int channelsPerPass = PassLanes / Plane;
        int rows = c + (expandedBias == null ? 0 : 1);
        for (int pass = 0; pass < passes; pass++)
        {
            int k0 = pass * channelsPerPass, count = Math.Min(channelsPerPass, k - k0);
            // staged[ci][j] = w[k0 + j, ci], and the bias as row c; channels past K read zero.
            if (count < channelsPerPass) new Span<float>(staged, rows * 2 * Lanes).Clear();
            if (transposed)
            {
                for (int ci = 0; ci < c; ci++) new Span<float>(w + (long)ci * k + k0, count).CopyTo(new Span<float>(staged + ci * 2 * Lanes, count));
            }
            else
            {
                // 8 x 8 transposes, then the rows and columns they leave.
                int rowsWhole = count / 8 * 8, columnsWhole = Avx.IsSupported ? c / 8 * 8 : 0;
                for (int j0 = 0; j0 < rowsWhole; j0 += 8)
                    for (int c0 = 0; c0 < columnsWhole; c0 += 8)
                        Gemm.Transpose8x8(w + (long)(k0 + j0) * c + c0, c, staged + c0 * 2 * Lanes + j0, 2 * Lanes);
                for (int j = 0; j < count; j++)
                {
                    float* row = w + (long)(k0 + j) * c;
                    for (int ci = j < rowsWhole ? columnsWhole : 0; ci < c; ci++) staged[ci * 2 * Lanes + j] = row[ci];
                }
            }
            if (expandedBias != null) new Span<float>(bias + k0, count).CopyTo(new Span<float>(staged + c * 2 * Lanes, count));
            for (int ci = 0; ci < rows; ci++)
            {
                var low = Vector512.Load(staged + ci * 2 * Lanes);
                var high = Vector512.Load(staged + ci * 2 * Lanes + Lanes);
                float* o = ci < c ? weights + ((long)pass * c + ci) * PassLanes : expandedBias + pass * PassLanes;
                for (int v = 0; v < PassLanes / Lanes; v++) Avx512F.PermuteVar16x32x2(low, Channels[v], high).Store(o + v * Lanes);
            }
        }
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        int first = (int)((long)part * job.N / job.Parts), end = (int)((long)(part + 1) * job.N / job.Parts);
        const int channelsPerPass = PassLanes / Plane;
        // Each part expands the weights into its own thread's scratch, as each part of the GEMM path packs its own: a
        // copy that one thread made and the other read cost more on two threads than making it twice (the big model's
        // 128 -> 128 steps).
        var scratch = ConvScratch.Current;
        // Aligned to 64 bytes: a weight vector that straddled two cache lines would cost two loads.
        float* weights = scratch.Get(ConvScratch.Slot.PackedWeights, (long)job.Passes * job.C * PassLanes + Lanes);
        weights = (float*)(((nint)weights + 63) & ~(nint)63);
        float* expandedBias = job.Bias == null ? null : scratch.Get(ConvScratch.Slot.Weights, (long)job.Passes * PassLanes);
        float* staged = scratch.Get(ConvScratch.Slot.Rows, (long)(job.C + 1) * 2 * Lanes);
        Expand(job.W, job.Transposed, job.Bias, weights, expandedBias, job.K, job.C, job.Passes, staged);
        for (int pass = 0; pass < job.Passes; pass++)
        {
            int k0 = pass * channelsPerPass;
            int lanes = Math.Min(channelsPerPass, job.K - k0) * Plane;
            int blocks = (lanes + BlockLanes - 1) / BlockLanes;
            for (int c0 = 0; c0 < job.C; c0 += job.Slice)
            {
                int c1 = Math.Min(job.C, c0 + job.Slice);
                switch (blocks)
                {
                    case 1: Slice<Gemm.N1>(ref job, weights, expandedBias, pass, k0, lanes, c0, c1, first, end); break;
                    case 2: Slice<Gemm.N2>(ref job, weights, expandedBias, pass, k0, lanes, c0, c1, first, end); break;
                    default: Slice<Gemm.N3>(ref job, weights, expandedBias, pass, k0, lanes, c0, c1, first, end); break;
                }
            }
        }
    }

    /// <summary>
    /// Input channels [c0, c1) of one pass (TBlocks blocks of output lanes from channel k0, <paramref name="lanes"/> of
    /// them real) for samples [first, end), two at a time so that each weight vector loaded serves both: the
    /// accumulators start at zero on the first slice, else at the stored partial sums; the last slice adds the bias.
    /// </summary>
    [SkipLocalsInit]
    private static void Slice<TBlocks>(ref Job job, float* expanded, float* expandedBias, int pass, int k0, int lanes, int c0, int c1, int first, int end)
        where TBlocks : struct, Gemm.IConstant
    {
        int blocks = TBlocks.Value;
        bool resume = c0 > 0, last = c1 == job.C;
        var planeMask = ConvKernels.FirstLanes(Plane);
        float* weights = expanded + (long)pass * job.C * PassLanes;
        float* bias = expandedBias == null || !last ? null : expandedBias + pass * PassLanes;
        long xStride = (long)job.C * Plane, yStride = (long)job.K * Plane;
        // A plane is read as 8 floats (the 2 past it are never arranged) except near the tensor's end.
        long wholeUntil = (long)job.N * xStride - Lanes;
        for (int n = first; n < end; n += 2)
        {
            bool pair = n + 1 < end;
            float* y = job.Y + n * yStride + (long)k0 * Plane, z = y + yStride;
            float* x = job.X + n * xStride, x2 = pair ? x + xStride : x;
            Vector512<float> a0, a1, a2, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default, a8 = default;
            Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default;
            Vector512<float> b6 = default, b7 = default, b8 = default;
            if (resume)
            {
                a0 = Load(y, lanes, 0); a1 = Load(y, lanes, 1); a2 = Load(y, lanes, 2);
                if (blocks > 1) { a3 = Load(y, lanes, 3); a4 = Load(y, lanes, 4); a5 = Load(y, lanes, 5); }
                if (blocks > 2) { a6 = Load(y, lanes, 6); a7 = Load(y, lanes, 7); a8 = Load(y, lanes, 8); }
                if (pair)
                {
                    b0 = Load(z, lanes, 0); b1 = Load(z, lanes, 1); b2 = Load(z, lanes, 2);
                    if (blocks > 1) { b3 = Load(z, lanes, 3); b4 = Load(z, lanes, 4); b5 = Load(z, lanes, 5); }
                    if (blocks > 2) { b6 = Load(z, lanes, 6); b7 = Load(z, lanes, 7); b8 = Load(z, lanes, 8); }
                }
            }
            else
            {
                a0 = a1 = a2 = Vector512<float>.Zero;
            }
            bool whole = (x2 - job.X) + (long)(c1 - 1) * Plane <= wholeUntil;
            float* wc = weights + (long)c0 * PassLanes;
            // Read here so that they live in registers through the loop only (kept from the start, they were spilled).
            Vector512<int> arrange0 = job.Arrange0, arrange1 = job.Arrange1, arrange2 = job.Arrange2;
            for (int c = c0; c < c1; c++, wc += PassLanes)
            {
                Vector512<float> plane, plane2;
                if (whole)
                {
                    plane = Vector256.Load(x + (long)c * Plane).ToVector512Unsafe();
                    plane2 = Vector256.Load(x2 + (long)c * Plane).ToVector512Unsafe();
                }
                else
                {
                    plane = Avx512F.MaskLoad(x + (long)c * Plane, planeMask, Vector512<float>.Zero);
                    plane2 = Avx512F.MaskLoad(x2 + (long)c * Plane, planeMask, Vector512<float>.Zero);
                }
                var u0 = Avx512F.PermuteVar16x32(plane, arrange0);
                var v0 = Avx512F.PermuteVar16x32(plane2, arrange0);
                var w = Vector512.Load(wc);
                a0 = Vector512.FusedMultiplyAdd(w, u0, a0); b0 = Vector512.FusedMultiplyAdd(w, v0, b0);
                if (blocks > 1) { w = Vector512.Load(wc + 48); a3 = Vector512.FusedMultiplyAdd(w, u0, a3); b3 = Vector512.FusedMultiplyAdd(w, v0, b3); }
                if (blocks > 2) { w = Vector512.Load(wc + 96); a6 = Vector512.FusedMultiplyAdd(w, u0, a6); b6 = Vector512.FusedMultiplyAdd(w, v0, b6); }
                var u1 = Avx512F.PermuteVar16x32(plane, arrange1);
                var v1 = Avx512F.PermuteVar16x32(plane2, arrange1);
                w = Vector512.Load(wc + 16);
                a1 = Vector512.FusedMultiplyAdd(w, u1, a1); b1 = Vector512.FusedMultiplyAdd(w, v1, b1);
                if (blocks > 1) { w = Vector512.Load(wc + 64); a4 = Vector512.FusedMultiplyAdd(w, u1, a4); b4 = Vector512.FusedMultiplyAdd(w, v1, b4); }
                if (blocks > 2) { w = Vector512.Load(wc + 112); a7 = Vector512.FusedMultiplyAdd(w, u1, a7); b7 = Vector512.FusedMultiplyAdd(w, v1, b7); }
                var u2 = Avx512F.PermuteVar16x32(plane, arrange2);
                var v2 = Avx512F.PermuteVar16x32(plane2, arrange2);
                w = Vector512.Load(wc + 32);
                a2 = Vector512.FusedMultiplyAdd(w, u2, a2); b2 = Vector512.FusedMultiplyAdd(w, v2, b2);
                if (blocks > 1) { w = Vector512.Load(wc + 80); a5 = Vector512.FusedMultiplyAdd(w, u2, a5); b5 = Vector512.FusedMultiplyAdd(w, v2, b5); }
                if (blocks > 2) { w = Vector512.Load(wc + 128); a8 = Vector512.FusedMultiplyAdd(w, u2, a8); b8 = Vector512.FusedMultiplyAdd(w, v2, b8); }
            }
            Store(y, lanes, 0, a0, bias); Store(y, lanes, 1, a1, bias); Store(y, lanes, 2, a2, bias);
            if (blocks > 1) { Store(y, lanes, 3, a3, bias); Store(y, lanes, 4, a4, bias); Store(y, lanes, 5, a5, bias); }
            if (blocks > 2) { Store(y, lanes, 6, a6, bias); Store(y, lanes, 7, a7, bias); Store(y, lanes, 8, a8, bias); }
            if (pair)
            {
                Store(z, lanes, 0, b0, bias); Store(z, lanes, 1, b1, bias); Store(z, lanes, 2, b2, bias);
                if (blocks > 1) { Store(z, lanes, 3, b3, bias); Store(z, lanes, 4, b4, bias); Store(z, lanes, 5, b5, bias); }
                if (blocks > 2) { Store(z, lanes, 6, b6, bias); Store(z, lanes, 7, b7, bias); Store(z, lanes, 8, b8, bias); }
            }
        }
    }

    /// <summary>Per lane i of the vector starting at lane <paramref name="start"/> of a row: its channel (start + i) / 6, or its position (start + i) mod 6.</summary>
    private static Vector512<int> Arrangement(int start, bool channel)
    {
        var lanes = new int[Lanes];
        for (int i = 0; i < Lanes; i++) lanes[i] = channel ? (start + i) / Plane : (start + i) % Plane;
        return Vector512.Create(lanes);
    }

    /// <summary>Vector v of a pass's output row: its real lanes (of <paramref name="lanes"/>), zero past them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Load(float* y, int lanes, int v)
    {
        int real = lanes - v * Lanes;
        if (real >= Lanes) return Vector512.Load(y + v * Lanes);
        return real > 0 ? Avx512F.MaskLoad(y + v * Lanes, ConvKernels.FirstLanes(real), Vector512<float>.Zero) : Vector512<float>.Zero;
    }

    /// <summary>Vector v of a pass's output row, plus the bias when given: only its real lanes are written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* y, int lanes, int v, Vector512<float> sum, float* bias)
    {
        int real = lanes - v * Lanes;
        if (real <= 0) return;
        if (bias != null) sum += Vector512.Load(bias + v * Lanes);
        if (real >= Lanes) sum.Store(y + v * Lanes);
        else Avx512F.MaskStore(y + v * Lanes, ConvKernels.FirstLanes(real), sum);
    }
}
