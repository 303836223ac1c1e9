using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// Convolution as an implicit GEMM on channel-major tensors x [C, N, H, W] and y [K, N, P, Q] (inference plans): the
/// output columns (sample, row, column) of the whole batch form one GEMM Y[K, N*P*Q] = W[K, C*R*S] * X', and each
/// 32-column B micro-panel of X' is filled straight from x, with no im2col buffer and no second packing pass, then
/// multiplied by the weights packed once (<see cref="Weights"/>) while it is in L1. With stride 1 and "same" padding
/// (3x3 with padding 1, 1x1) the value a tap reads for output column j is the one at j plus a fixed offset, or zero
/// where the tap falls off the plane, so a panel row is two masked loads; strided geometries (the stem) fill each row
/// from the runs of columns along output rows. Bias, residual and ReLU/Hardswish run in one pass over each block of
/// output columns while it is in cache, and a following max pool can run there too (<see cref="FusedPool"/>).
/// </summary>
/// <remarks>
/// Taps that no output position can reach (the outer rows of a 3x3 kernel on a plane one row high) are dropped from
/// the weights and the panels, so they cost nothing. Threads share the blocks of columns, or, when there are too few
/// (a single sample's small maps), the output channels. Each output value is one dot product in a fixed order, so
/// results do not depend on the thread count. Needs AVX-512 (the 8 x 32 GEMM micro-kernel); <see cref="Supports"/>
/// says when this path applies, and <see cref="Supports256"/> when "same" convolutions run here on 256-bit vectors
/// (without AVX-512: the panels filled and multiplied in quarters of that tile, <see cref="Gemm.MultiplyPanel256"/>).
/// </remarks>
internal static unsafe class ImplicitGemmConv
{
    private const int Lanes = Gemm.PanelColumns;
    // Columns per block: the epilogue runs on a block's output rows while they are in cache.
    private const int MaxBlockColumns = 8 * Lanes;
    // Columns per block of a 1x1 that reads its input in place (ReadsInPlace): six 48-column tiles, nine panels.
    private const int InPlaceBlockColumns = 6 * Gemm.WideColumns;
    // Panels at most this wide multiply the other way round (Y^T = X^T W^T): their columns become the micro-kernel's
    // rows and 32 output channels its columns, instead of a 32-column panel that is mostly padding.
    private const int NarrowPanel = 2 * Gemm.PanelRows;
    // Below this many multiply-adds per part, waking a worker costs more than it saves: 48 K where the output has
    // enough columns (a batch-1 mel map) for the parts to share panels or channels evenly, so that the pruned model's
    // 1x1 steps there (19->38 on 7 x 24: 121 K; 38->38: 243 K) use both threads (its mel b1 pass 0.177-0.179 ->
    // 0.174-0.177 ms); MNIST's one-sample maps (6 to 144 columns) keep the higher bar, where a second thread made
    // batch 1 slower.
    private const long MinMacsPerPart = 1 << 18;
    private const long MinMacsPerPartWide = 3 << 14;
    private const int WideColumns = 160;
    // From this many output columns (16 KiB per row: a batch's activations that do not stay in L2), the panels' input,
    // output and residual lines are prefetched a panel ahead: mel b64's 1x1 32->32 + residual + pool step ran 1.50-1.68
    // instead of 2.26-2.55 ms, the big model's plan 20.4 instead of 23.1 ms.
    private const long PrefetchColumns = 4096;
    // Plane positions below this are found by float division in Coordinates (exactly: see there).
    private const long MaxVectorPosition = 1 << 16;
    // Ways of each of L1's 64 sets kept for the weights' and the output's lines beside the rows a tile reads in place
    // (ReadsInPlace): 8 of the Xeon's 12 ways for the rows (128 channels in a piece of 5 or 8 mel samples, measured), 4 of
    // Zen 4's 8 (not measured there).
    private const int WaysLeft = 4;

    /// <summary>
    /// Whether a full panel of a "same" geometry is filled while its first tile is multiplied (see
    /// <see cref="MultiplyFirstTile"/>); tests turn it off to compare with the panel filled on its own.
    /// </summary>
    internal static bool FillsWhileMultiplying { get; set; } = true;

    /// <summary>The ways of one core's L1 data cache, which <see cref="ReadsInPlace(in Conv2dParams, long, long)"/> sizes for (tests set it).</summary>
    internal static int L1Ways { get; set; } = CpuCaches.LevelOneWays();

    /// <summary>Whether 1x1 convolutions read their input rows where they lie (see <see cref="ReadsInPlace(ref Job)"/>); tests turn it off to compare.</summary>
    internal static bool InPlacePointwise { get; set; } = true;

    /// <summary>
    /// Whether a block's last 33-47 columns of an in-place 1x1 with fewer than 64 output channels run as one wide tile
    /// with B's third vector masked (<see cref="Gemm.MultiplyWideRowsMasked"/>) instead of a 32-column tile and a
    /// remainder of 1-15 columns through a narrow panel; the same sums (tests and benchmarks compare the two).
    /// </summary>
    internal static bool MaskedWideTiles { get; set; } = true;

    /// <summary>Whether geometries that <see cref="RunsStrips"/> takes run in strips; tests turn it off to compare with the tiles.</summary>
    internal static bool Strips { get; set; } = true;

    /// <summary>Weights packed for the kernel, with the taps that never read the input dropped (pointers into pinned memory).</summary>
    internal readonly struct Packing(float* packed, float* transposed, int* tapOffsetH, int* tapOffsetW, int rowsPerGroup, int taps)
    {
        /// <summary>Per group, the [K/G, C/G * taps] weights in the GEMM's A micro-panel order.</summary>
        internal readonly float* Packed = packed;

        /// <summary>Per group, their transpose in B micro-panels of 32 output channels: panels of few columns multiply as Y^T = X^T W^T.</summary>
        internal readonly float* Transposed = transposed;

        /// <summary>Per kept tap (r, s): r * dilationH - padH and s * dilationW - padW, the offset it reads at.</summary>
        internal readonly int* TapOffsetH = tapOffsetH;

        /// <inheritdoc cref="TapOffsetH"/>
        internal readonly int* TapOffsetW = tapOffsetW;

        /// <summary>The GEMM's inner dimension: C/G input channels times the kept taps.</summary>
        internal readonly int RowsPerGroup = rowsPerGroup;

        /// <summary>Kept taps out of R * S.</summary>
        internal readonly int Taps = taps;
    }

    /// <summary>Packed weights that live as long as an inference plan: the arrays behind a <see cref="Packing"/>.</summary>
    internal sealed class Weights
    {
        private readonly float[] _packed, _transposed;
        private readonly int[] _offH, _offW;

        internal Weights(ReadOnlySpan<float> w, in Conv2dParams p)
        {
            _offH = GC.AllocateArray<int>(p.R * p.S, pinned: true);
            _offW = GC.AllocateArray<int>(p.R * p.S, pinned: true);
            var kept = new int[p.R * p.S];
            fixed (int* oh = _offH, ow = _offW, k = kept)
                Taps = LiveTaps(p, oh, ow, k);
            RowsPerGroup = p.C / p.Groups * Taps;
            _packed = GC.AllocateArray<float>((int)Math.Max(1, PackedLength(p, Taps)), pinned: true);
            _transposed = GC.AllocateArray<float>((int)Math.Max(1, TransposedLength(p, Taps)), pinned: true);
            var rows = new float[Math.Max(1, (long)p.K * RowsPerGroup)];
            fixed (float* src = w, r = rows, packed = _packed, transposed = _transposed)
            fixed (int* k = kept)
                Pack(src, p, Taps, k, r, packed, transposed);
        }

        /// <summary>Kept taps out of R * S.</summary>
        internal int Taps { get; }

        /// <summary>The GEMM's inner dimension: C/G input channels times the kept taps.</summary>
        internal int RowsPerGroup { get; }

        /// <summary>Pointers to the packed weights (the arrays are pinned).</summary>
        internal Packing View() => new(
            (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_packed)),
            (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_transposed)),
            (int*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_offH)),
            (int*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_offW)),
            RowsPerGroup, Taps);
    }

    /// <summary>
    /// Packs <paramref name="w"/> [K, C/G, R, S] for one call into <paramref name="scratch"/>'s
    /// <see cref="ConvScratch.Slot.PackedWeights"/> (the training passes, whose weights change every step); the packing
    /// is valid until that slot is next used.
    /// </summary>
    internal static Packing PackInto(float* w, in Conv2dParams p, ConvScratch scratch)
    {
        int rs = p.R * p.S;
        // Tap tables first (ints in float-sized slots), then the live weights row-major, the A panels and the B panels.
        int* probe = stackalloc int[3 * rs];
        int taps = LiveTaps(p, probe, probe + rs, probe + 2 * rs);
        int rowsPerGroup = p.C / p.Groups * taps;
        long rowsLength = Math.Max(1, (long)p.K * rowsPerGroup), packedLength = PackedLength(p, taps);
        float* buffer = scratch.Get(ConvScratch.Slot.PackedWeights, 3L * rs + rowsLength + packedLength + TransposedLength(p, taps));
        int* offH = (int*)buffer, offW = offH + rs, kept = offW + rs;
        new Span<int>(offH, 3 * rs).Clear();
        for (int i = 0; i < taps; i++)
        {
            offH[i] = probe[i];
            offW[i] = probe[rs + i];
            kept[i] = probe[2 * rs + i];
        }
        float* rows = buffer + 3L * rs, packed = rows + rowsLength, transposed = packed + packedLength;
        Pack(w, p, taps, kept, rows, packed, transposed);
        return new Packing(packed, transposed, offH, offW, rowsPerGroup, taps);
    }

    /// <summary>
    /// True when <see cref="Forward"/> may run a sample-major convolution of the training passes through channel-major
    /// copies of chunks of samples (<see cref="ConvKernels.Forward"/>, for planes too small to run one sample at a time
    /// through <see cref="ForwardRange"/>): stride 1 with the output the size of the input, and a kernel wider than one
    /// tap (a 1x1 over small planes takes the GEMM path or a kernel of its own).
    /// </summary>
    internal static bool SupportsSampleMajor(in Conv2dParams p) => (Supports(p) || Supports256(p)) && IsSame(p) && p.R * p.S > 1;

    /// <summary>
    /// True when this path runs the convolution on this machine (AVX-512): every stride-1 convolution whose output is
    /// the size of its input, and convolutions of stride 1 or 2 along the width (strided stems) with at least
    /// <see cref="MinRunOutputs"/> output channels per group and output rows at least <see cref="MinRunLength"/> wide,
    /// where the runs a panel is filled from are long enough next to the multiply-adds they feed.
    /// </summary>
    internal static bool Supports(in Conv2dParams p) =>
        Gemm.Kind == Gemm.KernelKind.Vector512 && Avx512F.IsSupported
        && (IsSame(p) || (p.StrideW <= 2 && p.K / p.Groups >= MinRunOutputs && p.Q >= MinRunLength));

    /// <summary>
    /// True when this path runs a "same" convolution without AVX-512 (<see cref="Gemm.Runs256"/>): each panel is filled
    /// with 256-bit masked loads and multiplied in quarters of the 8 x 32 tile (<see cref="Gemm.MultiplyPanel256"/>), the
    /// same sums as the 512-bit tiles, and bias, residual and activation applied in a pass over each block. The inference
    /// plans take it for their unpooled "same" convolutions, the training passes for those of more than one tap
    /// (<see cref="SupportsSampleMajor"/>; their 1x1s ran 1.03-1.08x as long this way on mel's maps than through the GEMM
    /// path). The strips, fused tiles and pools, in-place 1x1s and strided runs are 512-bit only.
    /// </summary>
    internal static bool Supports256(in Conv2dParams p) => Gemm.Runs256 && IsSame(p);

    /// <summary>Stride 1 and the output the size of the input: a tap reads the input at the output's index plus a constant.</summary>
    internal static bool IsSame(in Conv2dParams p) => p.StrideH == 1 && p.StrideW == 1 && p.P == p.H && p.Q == p.W;

    private const int MinRunOutputs = 16;
    private const int MinRunLength = 8;

    /// <summary>
    /// The taps (r, s) that some output position reads inside the input: their offsets (r * dilationH - padH,
    /// s * dilationW - padW) and indices r * S + s, each array holding R * S entries; returns how many.
    /// </summary>
    private static int LiveTaps(in Conv2dParams p, int* offH, int* offW, int* kept)
    {
        int taps = 0;
        for (int r = 0; r < p.R; r++)
            for (int s = 0; s < p.S; s++)
            {
                int dh = r * p.DilationH - p.PadH, dw = s * p.DilationW - p.PadW;
                if (!Reaches(dh, p.StrideH, p.P, p.H) || !Reaches(dw, p.StrideW, p.Q, p.W)) continue;
                offH[taps] = dh;
                offW[taps] = dw;
                kept[taps++] = r * p.S + s;
            }
        return taps;
    }

    private static long PackedLength(in Conv2dParams p, int taps) => Gemm.PackedRowsLength(p.K / p.Groups, p.C / p.Groups * taps) * p.Groups;

    private static long TransposedLength(in Conv2dParams p, int taps) => Gemm.PackedColumnsLength(p.K / p.Groups, p.C / p.Groups * taps) * p.Groups;

    /// <summary>
    /// rows = w [K, C/G, R, S] restricted to the kept taps, row-major per group (scratch); packed = the same in A
    /// micro-panels, transposed = its transpose in B micro-panels.
    /// </summary>
    private static void Pack(float* w, in Conv2dParams p, int taps, int* kept, float* rows, float* packed, float* transposed)
    {
        int cg = p.C / p.Groups, kg = p.K / p.Groups, rs = p.R * p.S, kc = cg * taps;
        long perGroup = Gemm.PackedRowsLength(kg, kc), perGroupTransposed = Gemm.PackedColumnsLength(kg, kc);
        for (int g = 0; g < p.Groups; g++)
        {
            long group = (long)g * kg * kc;
            for (int k = 0; k < kg; k++)
                for (int c = 0; c < cg; c++)
                    for (int t = 0; t < taps; t++)
                        rows[group + (k * cg + c) * taps + t] = w[((long)(g * kg + k) * cg + c) * rs + kept[t]];
            if (kc == 0) continue;
            Gemm.PackRows(rows + group, kc, kg, kc, packed + g * perGroup);
            Gemm.PackColumnsOfTranspose(rows + group, kc, kg, kc, transposed + g * perGroupTransposed);
        }
    }

    /// <summary>True when some output index o in [0, outputs) reads input index o * stride + offset inside [0, size).</summary>
    private static bool Reaches(int offset, int stride, int outputs, int size)
    {
        for (int o = 0; o < outputs; o++)
            if ((uint)(o * stride + offset) < (uint)size) return true;
        return false;
    }

    /// <summary>
    /// A max pooling applied to the convolution's output inside the kernel: each block of whole output planes is pooled
    /// while in cache, and the unpooled output never reaches memory. <see cref="Params"/> describes the pooling of the
    /// full output ([N, K, P, Q] in); it must satisfy <see cref="PoolKernels.SeparableMax"/>.
    /// </summary>
    internal readonly record struct FusedPool(Pool2dParams Params);

    /// <summary>One call's arguments, shared by the parts working on it.</summary>
    private struct Job
    {
        public Conv2dParams P;
        public float* X, W, Transposed, Bias, Y, Residual;
        public int* OffH, OffW;
        public int Cg, Kg, Kc, Taps, BlockColumns, Blocks, Parts;
        // Above 0: the parts split the output channels in runs of this many rows (one group) instead of the blocks.
        public int RowsPerPart;
        public long PerGroup, PerGroupTransposed, Columns, InPlane, OutPlane;
        // Floats from one channel's row to the next in x, y and the residual (a plane of the batch, unless the caller
        // holds them otherwise: see ForwardRange), and how many floats x may be read from its start.
        public long XStride, YStride, ResidualStride, XLength;
        // Rows -1 and H of x are in memory (a row band's halo rows, ForwardBand) instead of padding.
        public bool Halo;
        // The output columns [First, End) that the blocks cover (all of them, but for ForwardRange).
        public long First, End;
        public bool Same;
        // Whether full panels multiply the input rows where they lie (ReadsInPlace), decided once per call when the
        // strides are known.
        public bool InPlace;
        // Rows long enough (PrefetchColumns) that the next panel's lines are fetched ahead by software.
        public bool Prefetch;
        // A fused pooling (y is the pooled output [K, N, Po, Qo]): a block is either SamplesPerBlock whole planes
        // (Bands == 1) or, when pooling windows do not overlap vertically, one band of BandRows pooled rows of one plane.
        public bool Pooled;
        public FusedPool Pool;
        public int SamplesPerBlock, Bands, BandRows;
        // Floats between the pooled y's channels (N pooled planes, unless the caller holds them otherwise: ForwardBand).
        public long PooledStride;
        public bool HasActivation;
        public UnaryOp Activation;
        public float Alpha, Beta;
    }

    /// <summary>
    /// y = act(conv2d(x, w) + bias + residual) for channel-major x [C, N, H, W] and y, residual [K, N, P, Q], with the
    /// weights packed by <see cref="Weights"/>, then <paramref name="pool"/> when given (y is then the pooled output
    /// [K, N, Po, Qo]; bias, residual and activation apply before pooling). Bias and residual may be null; the
    /// activation is skipped when <paramref name="hasActivation"/> is false.
    /// </summary>
    internal static void Forward(float* x, in Packing weights, float* bias, float* y, in Conv2dParams p, float* residual,
        bool hasActivation, UnaryOp activation, float alpha, float beta, FusedPool? pool = null)
    {
        var job = NewJob(x, weights, bias, y, p, residual, hasActivation, activation, alpha, beta);
        job.InPlace = ReadsInPlace(ref job);
        // Threads worth waking for this much work; blocks small enough that each of them gets a few, whole panels, at
        // most 256 columns.
        long macs = (long)p.K * job.Kc * job.Columns;
        int parts = (int)Math.Clamp(macs / (job.Columns >= WideColumns ? MinMacsPerPartWide : MinMacsPerPart), 1, CpuThreading.Threads);
        long perThread = (job.Columns + 2L * parts - 1) / (2L * parts);
        job.BlockColumns = (int)Math.Clamp((perThread + Lanes - 1) / Lanes * Lanes, Lanes, MaxBlockColumns);
        // Full-size blocks of in-place tiles hold whole 48-column tiles (256 would end in two of 32).
        if (job.BlockColumns == MaxBlockColumns && pool is null && job.InPlace) job.BlockColumns = InPlaceBlockColumns;
        job.Blocks = (int)((job.Columns + job.BlockColumns - 1) / job.BlockColumns);
        if (pool is { } fused) PlanPooledBlocks(ref job, fused, parts);
        if (parts > 1 && job.Blocks < 2 * parts && !job.Pooled && job.Columns > (2L * parts - 1) * Lanes)
        {
            // Too few blocks to share: blocks of one panel instead (168 columns: 3 + 3 panels, the last of 8 columns).
            // Splitting the output channels instead (below) would have each part fill every panel, reading every input
            // column, half of which the other thread's previous step wrote: at mel batch 1 the 76- and 128-channel
            // steps on 168 columns ran faster this way, the whole pass 1.5 % (big) and 2.5 % (pruned).
            job.BlockColumns = Lanes;
            job.Blocks = (int)((job.Columns + Lanes - 1) / Lanes);
        }
        if (parts > 1 && job.Blocks < 2 * parts && p.Groups == 1 && p.K >= 16 * parts)
        {
            // Too few blocks to share evenly (a single sample's small maps): the parts split the output channels
            // instead, in whole micro-panels of 8 rows, each filling the same panels for its own rows.
            job.RowsPerPart = ((p.K + 7) / 8 + parts - 1) / parts * 8;
            job.Parts = (p.K + job.RowsPerPart - 1) / job.RowsPerPart;
        }
        else
        {
            job.Parts = Math.Min(parts, job.Blocks);
        }
        // SAFETY: job lives on this frame and ForParts returns only after every part is done.
        if (job.Parts == 1) RunBlocks(ref job, 0, job.Blocks, 0, job.Kg);
        else CpuThreading.ForParts(job.Parts, &RunPart, &job);
    }

    /// <summary>
    /// Output columns [<paramref name="first"/>, first + <paramref name="columns"/>) of <see cref="Forward"/>'s
    /// convolution (no fused pool), on the calling thread, with the rows of x, y and the residual
    /// <paramref name="xStride"/>, <paramref name="yStride"/> and <paramref name="residualStride"/> floats apart instead
    /// of a plane of the batch: column j of channel c is at x + c * xStride + j, and x may be read from x up to
    /// <paramref name="xLength"/> floats. A thread that keeps only its own columns, as a block [channels, columns],
    /// passes that block's start minus <paramref name="first"/> with a stride of <paramref name="columns"/>, and the
    /// inference plan's column chains do (<see cref="CpuInferencePlan"/>). Each value is the same dot product in the same
    /// order as in <see cref="Forward"/>. With <paramref name="prefetch"/> each panel fetches the next one's input, output
    /// and residual lines ahead, as <see cref="Forward"/> does on rows of 4096 columns or more: for rows that come from
    /// memory (a training pass's samples), too many streams for the hardware prefetcher.
    /// </summary>
    internal static void ForwardRange(float* x, long xStride, long xLength, in Packing weights, float* bias, float* y, long yStride,
        float* residual, long residualStride, in Conv2dParams p, long first, int columns, bool hasActivation, UnaryOp activation,
        float alpha, float beta, bool prefetch = false)
    {
        var job = NewJob(x, weights, bias, y, p, residual, hasActivation, activation, alpha, beta);
        job.Prefetch = prefetch;
        job.XStride = xStride;
        job.XLength = xLength;
        job.YStride = yStride;
        job.ResidualStride = residualStride;
        job.First = first;
        job.End = first + columns;
        job.InPlace = ReadsInPlace(ref job);
        job.BlockColumns = (int)Math.Clamp((columns + Lanes - 1) / Lanes * Lanes, Lanes, MaxBlockColumns);
        job.Blocks = (columns + job.BlockColumns - 1) / job.BlockColumns;
        job.Parts = 1;
        // SAFETY: the caller's rows hold the columns the strides give.
        RunBlocks(ref job, 0, job.Blocks, 0, job.Kg);
    }

    /// <summary>
    /// <see cref="Forward"/> of a "same" convolution (stride 1, the output the size of the input) for one band of rows of
    /// one sample (<paramref name="p"/>.N 1, H the band's rows), on the calling thread, followed by <paramref name="pool"/>
    /// when given (its <see cref="Pool2dParams.H"/> and <see cref="Pool2dParams.P"/> the band's): the channels of x, the
    /// residual and y (or the pooled y) <paramref name="xStride"/>, <paramref name="residualStride"/> and
    /// <paramref name="yStride"/> floats apart, x readable for <paramref name="xLength"/> floats from its start, and x's
    /// rows -1 and H read from memory (the band's halo rows: the neighbouring bands' edge rows, or zeros at the map's
    /// edges) instead of as padding. The inference plan's row bands run a thread's rows this way; every value is the one
    /// <see cref="Forward"/> computes on the whole map.
    /// </summary>
    internal static void ForwardBand(float* x, long xStride, long xLength, in Packing weights, float* bias, float* y, long yStride,
        float* residual, long residualStride, in Conv2dParams p, bool hasActivation, UnaryOp activation, float alpha, float beta,
        FusedPool? pool)
    {
        if (p.N != 1 || !IsSame(p) || p.Groups != 1)
            throw new ArgumentException("ImplicitGemmConv.ForwardBand takes a \"same\" convolution of one group on one sample.", nameof(p));
        var job = NewJob(x, weights, bias, y, p, residual, hasActivation, activation, alpha, beta);
        job.Halo = true;
        job.XStride = xStride;
        job.XLength = xLength;
        job.ResidualStride = residualStride;
        job.InPlace = ReadsInPlace(ref job);
        if (pool is { } fused)
        {
            PlanPooledBlocks(ref job, fused, parts: 1);
            job.PooledStride = yStride;
        }
        else
        {
            job.YStride = yStride;
            job.BlockColumns = (int)Math.Clamp((job.Columns + Lanes - 1) / Lanes * Lanes, Lanes, MaxBlockColumns);
            job.Blocks = (int)((job.Columns + job.BlockColumns - 1) / job.BlockColumns);
        }
        job.Parts = 1;
        // SAFETY: the caller's rows hold what the strides give.
        RunBlocks(ref job, 0, job.Blocks, 0, job.Kg);
    }

    /// <summary>A call's job before its blocks and parts are chosen: x, y and the residual channel-major, as <see cref="Forward"/> takes them.</summary>
    private static Job NewJob(float* x, in Packing weights, float* bias, float* y, in Conv2dParams p, float* residual,
        bool hasActivation, UnaryOp activation, float alpha, float beta)
    {
        var job = new Job
        {
            P = p,
            X = x, Bias = bias, Y = y, Residual = residual,
            Cg = p.C / p.Groups, Kg = p.K / p.Groups, Kc = weights.RowsPerGroup, Taps = weights.Taps,
            InPlane = (long)p.H * p.W,
            OutPlane = (long)p.P * p.Q,
            Same = IsSame(p),
            HasActivation = hasActivation, Activation = activation, Alpha = alpha, Beta = beta,
            // SAFETY: the packed weights stay pinned for the call.
            W = weights.Packed, Transposed = weights.Transposed, OffH = weights.TapOffsetH, OffW = weights.TapOffsetW,
        };
        job.Columns = p.N * job.OutPlane;
        job.XStride = p.N * job.InPlane;
        job.XLength = p.C * job.XStride;
        job.YStride = job.ResidualStride = job.Columns;
        job.End = job.Columns;
        job.Prefetch = job.Columns >= PrefetchColumns;
        job.PerGroup = Gemm.PackedRowsLength(job.Kg, job.Kc);
        job.PerGroupTransposed = Gemm.PackedColumnsLength(job.Kg, job.Kc);
        return job;
    }

    /// <summary>
    /// Blocks for a fused pool: about 256 columns of whole planes (32 output channels of them fill 32 KiB, one L1; at 512
    /// the pooled steps ran 4-7 % slower), with at least two blocks per part (thread) where the batch allows; planes too
    /// large for that are cut into bands of pooled rows when the pooling windows do not overlap vertically (kernel height
    /// at most the stride, no vertical padding, floor mode), so batch 1 still uses every thread. One part cuts a plane
    /// only where it exceeds the block: MNIST's 6 x 6 maps in two bands (24 + 12 columns: a partial panel and a
    /// transposed one, each with its epilogue as a second pass) made the pooled 1x1 step at batch 1 1.6x slower than one
    /// band of 36 (2.41 against 1.54 µs, 32 channels).
    /// </summary>
    private static void PlanPooledBlocks(ref Job job, FusedPool fused, int parts)
    {
        job.Pooled = true;
        job.Pool = fused;
        Pool2dParams pp = fused.Params;
        job.PooledStride = (long)job.P.N * pp.P * pp.Q;
        int target = MaxBlockColumns;
        int samples = (int)Math.Max(1, target / job.OutPlane);
        samples = Math.Max(1, Math.Min(samples, (job.P.N + 2 * parts - 1) / (2 * parts)));
        bool bandable = pp.KernelH <= pp.StrideH && pp.PadH == 0 && !pp.CeilMode;
        if (samples == 1 && bandable)
        {
            int pooledRows = pp.P;
            int rows = Math.Max(1, target / (pp.StrideH * job.P.Q));
            int bandsWanted = parts == 1 ? 1 : (2 * parts + job.P.N - 1) / job.P.N;
            rows = Math.Max(1, Math.Min(rows, (pooledRows + bandsWanted - 1) / bandsWanted));
            job.SamplesPerBlock = 1;
            job.BandRows = rows;
            job.Bands = (pooledRows + rows - 1) / rows;
            job.Blocks = job.P.N * job.Bands;
            // A single band is the whole plane (BlockRange takes it as one sample's block), the rows that a floor-mode
            // pool leaves out included (MNIST's 3 x 6 map at batch 1: 18 columns, not the 12 the pooled row reads); the
            // block's scratch rows are sized by this.
            job.BlockColumns = job.Bands == 1 ? (int)job.OutPlane : Math.Min(rows * pp.StrideH, job.P.P) * job.P.Q;
            return;
        }
        job.SamplesPerBlock = samples;
        job.Bands = 1;
        job.BandRows = pp.P;
        job.Blocks = (job.P.N + samples - 1) / samples;
        job.BlockColumns = (int)(samples * job.OutPlane);
    }

    /// <summary>
    /// For tests: the columns <see cref="Forward"/> sizes each block's scratch rows for with <paramref name="pool"/> fused on
    /// <paramref name="parts"/> threads, and the most columns any of its blocks computes (which must not exceed them).
    /// </summary>
    internal static (int BlockColumns, int LargestBlock) PooledBlockColumns(in Conv2dParams p, Pool2dParams pool, int parts)
    {
        var job = new Job { P = p, OutPlane = (long)p.P * p.Q };
        PlanPooledBlocks(ref job, new FusedPool(pool), parts);
        int largest = 0;
        for (int block = 0; block < job.Blocks; block++)
        {
            BlockRange(ref job, block, out _, out int cols, out _, out _, out _, out _);
            largest = Math.Max(largest, cols);
        }
        return (job.BlockColumns, largest);
    }

    /// <summary>Where block <paramref name="block"/> lies: its output columns and, for a fused pool, its samples and pooled rows.</summary>
    private static void BlockRange(ref Job job, int block, out long c0, out int cols, out int n0, out int nb, out int pooledRow0, out int convRows)
    {
        n0 = nb = pooledRow0 = convRows = 0;
        if (!job.Pooled)
        {
            c0 = job.First + (long)block * job.BlockColumns;
            cols = (int)Math.Min(job.BlockColumns, job.End - c0);
            return;
        }
        if (job.Bands == 1)
        {
            n0 = block * job.SamplesPerBlock;
            nb = Math.Min(job.SamplesPerBlock, job.P.N - n0);
            c0 = n0 * job.OutPlane;
            cols = (int)(nb * job.OutPlane);
            convRows = job.P.P;
            return;
        }
        // One band of one plane: pooled rows [pooledRow0, end) read convolution rows [pooledRow0 * strideH, end * strideH),
        // clipped to the plane; rows no window reads are never computed.
        n0 = block / job.Bands;
        nb = 1;
        int band = block % job.Bands, stride = job.Pool.Params.StrideH;
        pooledRow0 = band * job.BandRows;
        int pooledEnd = Math.Min(pooledRow0 + job.BandRows, job.Pool.Params.P);
        int r0 = pooledRow0 * stride, r1 = Math.Min(pooledEnd * stride, job.P.P);
        convRows = r1 - r0;
        c0 = n0 * job.OutPlane + (long)r0 * job.P.Q;
        cols = convRows * job.P.Q;
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        if (job.RowsPerPart > 0)
        {
            int k0 = part * job.RowsPerPart;
            RunBlocks(ref job, 0, job.Blocks, k0, Math.Min(job.Kg, k0 + job.RowsPerPart));
            return;
        }
        RunBlocks(ref job, (int)((long)part * job.Blocks / job.Parts), (int)((long)(part + 1) * job.Blocks / job.Parts), 0, job.Kg);
    }

    /// <summary>Blocks [first, end), output channels [k0, k1) of each group.</summary>
    [SkipLocalsInit]
    private static void RunBlocks(ref Job job, int first, int end, int k0, int k1)
    {
        if (first >= end || k0 >= k1) return;
        int rows = k1 - k0;
        ConvScratch scratch = ConvScratch.Current;
        // The panel, then room for its first 16 lanes repacked as two A micro-panels (MultiplyTransposed).
        float* panel = scratch.Get(ConvScratch.Slot.Columns, (long)Math.Max(1, job.Kc) * (Lanes + 2 * Gemm.PanelRows));
        float* tile = scratch.Get(ConvScratch.Slot.Rows, 8 * Gemm.WideColumns);
        // With a fused pool the block's output rows go to scratch ([K, block columns]) and only the pooled planes to y.
        float* unpooled = job.Pooled ? scratch.Get(ConvScratch.Slot.Block, (long)job.P.K * job.BlockColumns) : null;
        int* coords = stackalloc int[2 * Lanes];
        // Per panel of a "same" geometry, each kept tap's lane masks and read offset (TapMasks), shared by its groups.
        var masks = stackalloc Vector512<float>[job.Same ? 2 * job.Taps : 0];
        var offsets = stackalloc long[job.Same ? job.Taps : 0];
        // Without AVX-512 (Supports256) each panel is filled and multiplied in quarters of the tile (a narrow one
        // transposed, as below), and the epilogue runs as a pass over the block.
        bool wide = Gemm.Runs512;
        for (int block = first; block < end; block++)
        {
            BlockRange(ref job, block, out long c0, out int cols, out int n0, out int nb, out int pooledRow0, out int convRows);
            // Bias, residual and activation are applied as each tile is stored (from registers, or as a narrow panel's
            // transposed tiles are written back) instead of in a second pass over the block.
            int kind = job.Kc > 0 && wide ? EpilogueKind(ref job) : -1;
            bool fusedEpilogue = kind >= 0;
            for (int j = 0, width; j < cols; j += width)
            {
                long j0 = c0 + j;
                // Output rows: y itself (row stride: all columns), or the block's scratch (row stride: the block's columns).
                long ld = job.Pooled ? cols : job.YStride;
                float* yj = job.Pooled ? unpooled + j : job.Y + j0;
                width = job.InPlace && job.Kc > 0 ? InPlaceWidth(cols - j, MaskedWideTiles && job.Kg < MaskedTileMaxChannels) : 0;
                if (width > 0)
                {
                    for (int g = 0; g < job.P.Groups; g++)
                        MultiplyInPlace(ref job, g, k0, k1, j0, width, yj + (long)g * job.Kg * ld, ld, tile, kind);
                    continue;
                }
                width = Math.Min(Lanes, cols - j);
                if (job.Same)
                {
                    Coordinates(ref job, j0, width, coords);
                    TapMasks(ref job, coords, (float*)masks, offsets);
                }
                for (int g = 0; g < job.P.Groups; g++)
                {
                    float* yg = yj + (long)g * job.Kg * ld;
                    if (job.Kc == 0)
                    {
                        for (int k = k0; k < k1; k++) new Span<float>(yg + k * ld, width).Clear();
                        continue;
                    }
                    if (!wide && width > NarrowPanel)
                    {
                        // The first quarters fill the panel as they multiply it, as the first 512-bit tile does.
                        float* xg = GroupInput(ref job, g, j0), a = job.W + g * job.PerGroup + (long)k0 * job.Kc;
                        if (FillsWhileMultiplying)
                        {
                            PrefetchNextInput(ref job, xg);
                            Gemm.MultiplyPanelFilling256(rows, job.Cg, job.Taps, a, xg, job.XStride, offsets, (float*)masks, panel, yg + k0 * ld, (int)ld, width);
                            continue;
                        }
                        FillPanel<Lanes256, Vector256<float>>(ref job, xg, (float*)masks, offsets, panel);
                        Gemm.MultiplyPanel256(rows, job.Kc, a, panel, yg + k0 * ld, (int)ld, width);
                        continue;
                    }
                    if (RunsStrips(ref job, k0, k1, fusedEpilogue))
                    {
                        RunStrips(ref job, j0, width, masks, offsets, yg, ld, kind);
                        continue;
                    }
                    if (job.Same && width == Lanes && FillsWhileMultiplying)
                    {
                        // The first tile of output channels reads the input itself and fills the panel as it goes; the
                        // other tiles multiply that panel.
                        int kFirst = Math.Min(k1, k0 + Gemm.PanelRows);
                        MultiplyFirstTile(ref job, g, k0, kFirst, j0, masks, offsets, panel, yg, ld, tile, fusedEpilogue ? kind : -1);
                        if (kFirst == k1) continue;
                        if (fusedEpilogue) MultiplyPanel(ref job, g, kFirst, k1, panel, yg, ld, width, tile, j0, kind);
                        else Gemm.MultiplyPanel(k1 - kFirst, job.Kc, job.W + g * job.PerGroup + (long)kFirst * job.Kc, panel, yg + kFirst * ld, (int)ld, width, tile);
                        continue;
                    }
                    if (job.Same && width <= NarrowPanel)
                    {
                        // A narrow panel's lanes go straight into the A micro-panels that MultiplyTransposed multiplies.
                        FillNarrowPanel(ref job, GroupInput(ref job, g, j0), width, (float*)masks, offsets, panel + (long)job.Kc * Lanes);
                        MultiplyTransposed(ref job, g, k0, k1, panel, width, yg, ld, tile, fusedEpilogue ? j0 : -1, filled: true);
                        continue;
                    }
                    if (job.Same) FillPanel<Lanes512, Vector512<float>>(ref job, GroupInput(ref job, g, j0), (float*)masks, offsets, panel);
                    else FillRuns(ref job, job.X + (long)g * job.Cg * job.XStride, j0, width, panel);
                    if (width > NarrowPanel && fusedEpilogue)
                        MultiplyPanel(ref job, g, k0, k1, panel, yg, ld, width, tile, j0, kind);
                    else if (width > NarrowPanel)
                        Gemm.MultiplyPanel(rows, job.Kc, job.W + g * job.PerGroup + (long)k0 * job.Kc, panel, yg + k0 * ld, (int)ld, width, tile);
                    else
                        MultiplyTransposed(ref job, g, k0, k1, panel, width, yg, ld, tile, fusedEpilogue ? j0 : -1, filled: false);
                }
            }
            // With the rows split between parts (one group), each part finishes its own rows; otherwise all of them.
            int first0 = job.RowsPerPart > 0 ? k0 : 0, count = job.RowsPerPart > 0 ? rows : job.P.K;
            float* bias = job.Bias == null ? null : job.Bias + first0;
            float* residual = job.Residual == null ? null : job.Residual + first0 * job.ResidualStride;
            if (fusedEpilogue)
            {
                if (job.Pooled) PoolBlock(ref job, unpooled, n0, nb, pooledRow0, convRows, first0, first0 + count);
                continue;
            }
            if (!job.Pooled)
            {
                ConvKernels.Epilogue(job.Y + first0 * job.YStride, job.YStride, c0, count, cols, bias, residual, job.ResidualStride, c0,
                    job.HasActivation, job.Activation, job.Alpha, job.Beta);
                continue;
            }
            ConvKernels.Epilogue(unpooled + (long)first0 * cols, cols, 0, count, cols, bias, residual, job.ResidualStride, c0,
                job.HasActivation, job.Activation, job.Alpha, job.Beta);
            PoolBlock(ref job, unpooled, n0, nb, pooledRow0, convRows, first0, first0 + count);
        }
    }

    /// <summary>
    /// True when a panel runs as a strip (<see cref="RunStrips"/>) instead of 8 x 32 tiles of a filled panel: a "same"
    /// geometry of one group with more than one kept tap, or a 1x1 with a fused pool (unless it reads its input in place,
    /// <see cref="ReadsInPlace(ref Job)"/>, which <see cref="RunBlocks"/> asks first: the in-place tiles took 0.75-0.77 of
    /// the strips' time for the pruned model's 19 -> 19 + residual + pool at mel b64, in pieces of 8 samples, and 0.80 at
    /// mel b1, in row bands), at most
    /// <see cref="Gemm.MaxStripRows"/> output channels (one strip holds them all, so each input row is read once for all
    /// of them), all of them in this part, and an epilogue the strip applies from registers.
    /// </summary>
    /// <remarks>
    /// Harness, mel b64's maps, sample by sample as training runs them, two threads, caches flushed between calls, the
    /// strips' time over the tiles' (medians of 40 alternated rounds): 3x3 19 -> 19 on 31 x 24 0.83-0.93, on 15 x 24
    /// 0.83-0.89, on 7 x 24 0.76-0.83; 38 -> 19 (the backward data of 19 -> 38) 0.73-0.81. One thread, caches warm: 0.88-0.91
    /// at 16-22 channels, 0.93 at 24. Where the output channels need two strips or more, each strip reads the input
    /// again and the tiles' shared panel won as often as it lost (32, 38, 64 channels: 0.87-1.05 in the same runs). A 1x1
    /// (channel-major, the plans' layout) with residual, ReLU and 2 x 1 pool, 19 -> 19: on 31 x 24 0.78-0.93 at batch 64,
    /// 0.73 at batch 2, on 6 x 6 0.70 at batch 64; unpooled it ran 1.10-1.18x the tiles' time at batch 64, where each
    /// strip stores 16-float pieces of 19 rows a batch's plane apart (a pooled block's rows go to scratch instead).
    /// </remarks>
    private static bool RunsStrips(ref Job job, int k0, int k1, bool fusedEpilogue) =>
        Strips && job.Same && job.P.Groups == 1 && (job.Taps > 1 || job.Pooled) && job.Kg <= Gemm.MaxStripRows && k0 == 0 && k1 == job.Kg && fusedEpilogue;

    /// <summary>
    /// One panel of a "same" geometry's output columns [j0, j0 + width) as strips (<see cref="Gemm.MultiplyStrip"/>),
    /// its 16-column halves one after the other, each computing every output channel from the input rows where they lie,
    /// with the transposed weights (one B micro-panel: K is at most 24) and the epilogue applied as it is stored.
    /// </summary>
    private static void RunStrips(ref Job job, long j0, int width, Vector512<float>* masks, long* offsets, float* y, long ld, int kind)
    {
        float* x = GroupInput(ref job, 0, j0);
        bool readWhole = ReadsWhole(ref job, x, offsets);
        float* residual = job.Residual == null ? null : job.Residual + j0;
        PrefetchNextInput(ref job, x);
        PrefetchNextPanel(ref job, y, ld, residual, job.Kg);
        bool unrolled = job.Kg <= Gemm.MaxStrip3x3Rows && ReadsAsThreeByThree(ref job, offsets);
        for (int h = 0; h < width; h += 16)
        {
            var input = new Gemm.StripInput(x + h, job.XStride, job.Cg, job.Taps, offsets, masks + h / 16, job.P.W);
            var output = new Gemm.StripOutput(y + h, (int)ld, job.Bias, residual == null ? null : residual + h, job.ResidualStride, kind,
                Math.Min(16, width - h));
            if (unrolled) Gemm.MultiplyStrip3x3(job.Kg, job.Transposed, input, readWhole, output);
            else Gemm.MultiplyStrip(job.Kg, job.Transposed, input, readWhole, output);
        }
    }

    /// <summary>
    /// Whether a call's full panels multiply the input rows where they lie (<see cref="MultiplyInPlace"/>) instead of a
    /// panel filled with a copy of them: a 1x1 of stride 1 without padding over at least one panel's columns (narrower
    /// calls, MNIST's single samples, skip the count below), whose panel would be the input's rows
    /// [c, j0, j0 + 32) unchanged, where the rows one in-place tile reads stay in L1 together, at most
    /// <see cref="L1Ways"/> - <see cref="WaysLeft"/> of their lines in any of L1's 64 sets (a row stride of a 4 KiB
    /// multiple, or close to one, puts every row in the same few sets: those keep the copy).
    /// </summary>
    private static bool ReadsInPlace(ref Job job) =>
        InPlacePointwise && Gemm.Runs512 && job.Taps == 1 && job.End - job.First >= Lanes && ReadsInPlace(job.P, job.XStride, (long)(job.X + job.First));

    /// <summary>
    /// <see cref="ReadsInPlace(ref Job)"/> for a convolution <paramref name="p"/> whose input channels lie
    /// <paramref name="xStride"/> floats apart from <paramref name="x"/> (its first column; only its place in a 64-byte
    /// line counts).
    /// </summary>
    internal static bool ReadsInPlace(in Conv2dParams p, long xStride, long x)
    {
        if (p.R != 1 || p.S != 1 || p.PadH != 0 || p.PadW != 0 || !IsSame(p)) return false;
        // Tiles start on 16-column (64-byte) steps from the first column, so every tile's rows sit as the first one's do.
        var key = (Rows: p.C / p.Groups, Stride: xStride, Start: x & 63, Ways: L1Ways);
        // The training steps ask once per sample and step (ConvKernels.ForwardBySample): the answers for the last few
        // keys are kept per thread (a walk over every row's lines took 0.5 % of the pruned model's mel training step).
        var memo = t_inPlaceMemo ??= new InPlaceMemo();
        for (int i = 0; i < InPlaceMemo.Size; i++)
            if (memo.Keys[i] == key) return memo.Answers[i];
        var lines = stackalloc int[64];
        new Span<int>(lines, 64).Clear();
        bool fits = true;
        for (long c = 0; c < key.Rows && fits; c++)
        {
            long from = key.Start + c * xStride * sizeof(float), to = from + Gemm.WideColumns * sizeof(float);
            for (long line = from / 64; line * 64 < to; line++)
                if (++lines[line & 63] > L1Ways - WaysLeft)
                {
                    fits = false;
                    break;
                }
        }
        memo.Keys[memo.Next] = key;
        memo.Answers[memo.Next] = fits;
        memo.Next = (memo.Next + 1) % InPlaceMemo.Size;
        return fits;
    }

    [ThreadStatic] private static InPlaceMemo? t_inPlaceMemo;

    /// <summary>The last few answers of <see cref="ReadsInPlace(in Conv2dParams, long, long)"/>'s walk over the rows' lines, by what decides them.</summary>
    private sealed class InPlaceMemo
    {
        internal const int Size = 8;
        internal readonly (int Rows, long Stride, long Start, int Ways)[] Keys = new (int, long, long, int)[Size];
        internal readonly bool[] Answers = new bool[Size];
        internal int Next;
    }

    /// <summary>
    /// The columns the next in-place tile covers when <paramref name="remaining"/> columns of the block are left: 48
    /// (<see cref="Gemm.WideColumns"/>) where what follows is none or a whole tile, 32 where 48 would leave 16, with
    /// <paramref name="masked"/> all of 33-47 (one wide tile, its third vector masked), and 0 below 32 (the block's last
    /// columns, which go through a panel). A block of 256 columns: 4 x 48 + 2 x 32; mel's 168: 48 + 48 + 32 + 40 masked
    /// (without: 48 + 48 + 32 + 32, and 8 through a narrow panel).
    /// </summary>
    private static int InPlaceWidth(int remaining, bool masked) =>
        remaining == Gemm.WideColumns || remaining >= Gemm.WideColumns + Lanes ? Gemm.WideColumns
        : masked && remaining > Lanes && remaining < Gemm.WideColumns ? remaining
        : remaining >= Lanes ? Lanes : 0;

    // Output channels below which a block's last 33-47 columns take a masked wide tile (MaskedWideTiles): the narrow
    // panel they replace multiplies the other way round, 32 output channels a tile, so at 19 and 38 channels mostly
    // padding. Harness, Xeon, two threads, 64 samples from memory, masked against not, forward / backward data: 1x1 19 ->
    // 38 on 7 x 24 0.93 / 0.93, 38 -> 38 0.98 / 0.98, 19 -> 19 on 31 x 24 0.96 / 0.98; 64 -> 64 0.99 / 1.01, 76 -> 76 1.03 /
    // 1.01, 128 -> 128 1.03 / 1.00.
    private const int MaskedTileMaxChannels = 64;

    /// <summary>
    /// Output channels [k0, k1) of group g for output columns [j0, j0 + width) (48, 32, or 33-47 in a masked tile) of a 1x1 that
    /// <see cref="ReadsInPlace(ref Job)"/>: each tile of 8 channels multiplies the input rows where they lie, the same multiply-adds
    /// in the same order as on a filled panel, stored with the epilogue (<paramref name="kind"/> at least 0) or plain.
    /// </summary>
    private static void MultiplyInPlace(ref Job job, int g, int k0, int k1, long j0, int width, float* yg, long ld, float* tile, int kind)
    {
        float* x = GroupInput(ref job, g, j0);
        if (job.Prefetch)
        {
            for (int c = 0; c < job.Cg; c++)
                for (int j = 0; j < width; j += 16) Sse.Prefetch0(x + c * job.XStride + width + j);
        }
        float* a = job.W + g * job.PerGroup + (long)k0 * job.Kc;
        bool wide = width == Gemm.WideColumns;
        for (int k = k0; k < k1; k += Gemm.PanelRows, a += (long)Gemm.PanelRows * job.Kc)
        {
            int rows = Math.Min(Gemm.PanelRows, k1 - k);
            long channel = (long)g * job.Kg + k;
            float* bias = job.Bias == null || kind < 0 ? null : job.Bias + channel;
            float* residual = job.Residual == null || kind < 0 ? null : job.Residual + channel * job.ResidualStride + j0;
            float* y = yg + k * ld;
            if (width > Lanes && !wide)
            {
                // A block's last 33-47 columns: the wide tile with B's third vector masked, stored plain, then given the
                // epilogue.
                Gemm.MultiplyWideRowsMasked(rows, job.Kc, a, x, job.XStride, width, y, (int)ld);
                if (kind >= 0)
                    ConvKernels.Epilogue(y, ld, 0, rows, width, bias, residual, job.ResidualStride, 0, job.HasActivation, job.Activation, job.Alpha, job.Beta);
                continue;
            }
            if (wide)
            {
                // An edge tile's rows only (57 = 7 x 8 + 1 output channels), stored where they go.
                if (kind >= 0) Gemm.MultiplyWideRowsWithEpilogue(rows, job.Kc, a, x, job.XStride, y, (int)ld, bias, residual, job.ResidualStride, kind);
                else Gemm.MultiplyWideRows(rows, job.Kc, a, x, job.XStride, y, (int)ld);
                continue;
            }
            if (rows == Gemm.PanelRows && kind >= 0)
            {
                Gemm.MultiplyRowsWithEpilogue(job.Kc, a, x, job.XStride, y, (int)ld, bias, residual, job.ResidualStride, kind);
                continue;
            }
            Gemm.MultiplyRows(rows, job.Kc, a, x, job.XStride, y, (int)ld, tile);
            if (kind >= 0)
                ConvKernels.Epilogue(y, ld, 0, rows, width, bias, residual, job.ResidualStride, 0, job.HasActivation, job.Activation, job.Alpha, job.Beta);
        }
    }

    /// <summary>
    /// Output channels [k0, k1) of group g for one panel of <paramref name="width"/> columns, each 8 x 32 tile stored
    /// with the epilogue applied from registers (<see cref="Gemm.MultiplyTileWithEpilogue"/>); edge tiles are stored plain
    /// and then given the epilogue (<see cref="ConvKernels.Epilogue"/>, the same operations). <paramref name="column"/>
    /// is the panel's first global column (where its residual values are).
    /// </summary>
    private static void MultiplyPanel(ref Job job, int g, int k0, int k1, float* panel, float* yg, long ld, int width, float* tile,
        long column, int kind)
    {
        float* a = job.W + g * job.PerGroup + (long)k0 * job.Kc;
        for (int k = k0; k < k1; k += Gemm.PanelRows, a += (long)Gemm.PanelRows * job.Kc)
        {
            int rows = Math.Min(Gemm.PanelRows, k1 - k);
            long channel = (long)g * job.Kg + k;
            float* bias = job.Bias == null ? null : job.Bias + channel;
            float* residual = job.Residual == null ? null : job.Residual + channel * job.ResidualStride + column;
            float* y = yg + k * ld;
            PrefetchNextPanel(ref job, y, ld, residual, rows);
            if (rows == Gemm.PanelRows && width == Lanes)
            {
                Gemm.MultiplyTileWithEpilogue(job.Kc, a, panel, y, (int)ld, bias, residual, job.ResidualStride, kind);
                continue;
            }
            Gemm.MultiplyPanel(rows, job.Kc, a, panel, y, (int)ld, width, tile);
            ConvKernels.Epilogue(y, ld, 0, rows, width, bias, residual, job.ResidualStride, 0, job.HasActivation, job.Activation, job.Alpha, job.Beta);
        }
    }

    /// <summary>The next panel's output and residual lines of a tile's rows (rows a plane of the batch apart, like the input's).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchNextPanel(ref Job job, float* y, long ld, float* residual, int rows)
    {
        if (!job.Prefetch) return;
        for (int i = 0; i < rows; i++)
        {
            Sse.Prefetch0(y + i * ld + Lanes);
            Sse.Prefetch0(y + i * ld + Lanes + 16);
            if (residual == null) continue;
            Sse.Prefetch0(residual + i * job.ResidualStride + Lanes);
            Sse.Prefetch0(residual + i * job.ResidualStride + Lanes + 16);
        }
    }

    /// <summary>
    /// Output channels [k0, k1) (at most one 8-row tile) of group g for one full 32-column panel of a "same" geometry,
    /// computed from the input rows that <see cref="FillPanel"/> would copy, while <see cref="Gemm.MultiplyTileFilling"/>
    /// writes them to <paramref name="panel"/> for the other tiles: the panel is filled in the same pass as its first
    /// multiplication, not in one of its own (3x3 19 -> 19 on 6 x 6 maps, 64 samples, one thread: 172 -> 148 µs; 32 -> 32:
    /// 431 -> 380 µs). The same sums, stored as <see cref="MultiplyPanel"/> (<paramref name="kind"/> at least 0) or
    /// <see cref="Gemm.MultiplyPanel"/> store them.
    /// </summary>
    private static void MultiplyFirstTile(ref Job job, int g, int k0, int k1, long j0, Vector512<float>* masks, long* offsets,
        float* panel, float* yg, long ld, float* tile, int kind)
    {
        long channel = job.XStride;
        float* xg = GroupInput(ref job, g, j0);
        bool readWhole = ReadsWhole(ref job, xg, offsets);
        PrefetchNextInput(ref job, xg);
        int rows = k1 - k0;
        float* a = job.W + g * job.PerGroup + (long)k0 * job.Kc;
        long channelIndex = (long)g * job.Kg + k0;
        float* bias = job.Bias == null || kind < 0 ? null : job.Bias + channelIndex;
        float* residual = job.Residual == null || kind < 0 ? null : job.Residual + channelIndex * job.ResidualStride + j0;
        float* y = yg + k0 * ld;
        PrefetchNextPanel(ref job, y, ld, residual, rows);
        if (rows == Gemm.PanelRows)
        {
            Gemm.MultiplyTileFilling(job.Cg, job.Taps, a, xg, channel, offsets, masks, readWhole, panel, y, (int)ld, bias, residual,
                job.ResidualStride, kind);
            return;
        }
        Gemm.MultiplyTileFillingRows(rows, job.Cg, job.Taps, a, xg, channel, offsets, masks, readWhole, panel, y, (int)ld, tile);
        if (kind >= 0)
            ConvKernels.Epilogue(y, ld, 0, rows, Lanes, bias, residual, job.ResidualStride, 0, job.HasActivation, job.Activation, job.Alpha, job.Beta);
    }

    /// <summary>
    /// Whether the kept taps are the nine of a 3x3 with dilation 1 and padding 1, each reading at (r - 1) * W + s - 1
    /// (<see cref="TapMasks"/>), the offsets <see cref="Gemm.MultiplyStrip3x3"/> unrolls.
    /// </summary>
    private static bool ReadsAsThreeByThree(ref Job job, long* offsets)
    {
        if (job.Taps != 9) return false;
        for (int t = 0; t < 9; t++)
            if (offsets[t] != (t / 3 - 1) * (long)job.P.W + t % 3 - 1) return false;
        return true;
    }

    /// <summary>
    /// Whether every row a panel starting at <paramref name="xg"/> (<see cref="GroupInput"/>) reads, 32 floats at each
    /// tap's offset, lies inside x, so that it may be read whole and masked (all but the panels at x's two ends).
    /// </summary>
    private static bool ReadsWhole(ref Job job, float* xg, long* offsets)
    {
        long lowest = long.MaxValue, highest = long.MinValue;
        for (int t = 0; t < job.Taps; t++)
        {
            lowest = Math.Min(lowest, offsets[t]);
            highest = Math.Max(highest, offsets[t]);
        }
        long first = xg - job.X + lowest, last = xg - job.X + (long)(job.Cg - 1) * job.XStride + highest + Lanes;
        return first >= 0 && last <= job.XLength;
    }

    /// <summary>The next panel's lines of each input channel, as <see cref="FillPanel"/> prefetches them (rows long enough only).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchNextInput(ref Job job, float* xg)
    {
        if (!job.Prefetch) return;
        for (int c = 0; c < job.Cg; c++)
        {
            Sse.Prefetch0(xg + c * job.XStride + Lanes);
            Sse.Prefetch0(xg + c * job.XStride + Lanes + 16);
        }
    }

    /// <summary>
    /// Output columns [0, width) of a panel (width at most 16) for output channels [k0, k1) of group g, as
    /// Y^T = X^T W^T: the panel's first 8 or 16 lanes, repacked as A micro-panels (unless <paramref name="filled"/>:
    /// <see cref="FillNarrowPanel"/> wrote them there), times the transposed weights, 32 output channels at a time; each
    /// result, one tile row per column, is written back transposed. The sums are the same dot products in the same
    /// order as the other orientation.
    /// </summary>
    /// <remarks>
    /// With <paramref name="epilogueColumn"/> at least 0 (the global column of the panel's first column), each value
    /// is written as act(value + bias + residual), the same operations in the same order as
    /// <see cref="ConvKernels.Epilogue"/>, so the caller skips that pass.
    /// </remarks>
    private static void MultiplyTransposed(ref Job job, int g, int k0, int k1, float* panel, int width, float* yg, long ld, float* tile,
        long epilogueColumn, bool filled)
    {
        int kind = epilogueColumn >= 0 ? EpilogueKind(ref job) : -1;
        int groups = (width + Gemm.PanelRows - 1) / Gemm.PanelRows;
        float* a = panel + (long)job.Kc * Lanes;
        // A micro-panel r holds, for each GEMM row p, the panel's lanes 8r .. 8r + 7 (already there when filled).
        for (int r = 0; r < groups && !filled; r++)
        {
            float* dst = a + (long)r * job.Kc * Gemm.PanelRows;
            for (int p = 0; p < job.Kc; p++)
                Vector256.Store(Vector256.Load(panel + (long)p * Lanes + r * Gemm.PanelRows), dst + p * Gemm.PanelRows);
        }
        // The transposed weights come in panels of 32 output channels; a part's rows [k0, k1) may start inside one.
        float* weights = job.Transposed + g * job.PerGroupTransposed;
        for (int kb = k0 / Lanes * Lanes; kb < k1; kb += Lanes)
        {
            int first = Math.Max(k0, kb), end = Math.Min(k1, kb + Lanes);
            // Lanes of the tile that are needed: with at most 24 of the panel's 32 channels left (19, 38 = 32 + 6,
            // 76 = 64 + 12) only the first 8 or 16, or 16 + 8, are computed.
            int needed = end - kb;
            for (int r = 0; r < groups; r++)
            {
                float* ar = a + (long)r * job.Kc * Gemm.PanelRows, br = weights + (long)kb * job.Kc;
                // Only the group's columns are computed, a tile row each: the 4 columns past a 6 x 6 map's first panel
                // at batch 1 take 4 rows of 16 + 8 lanes in one loop (19 channels) or of 32 (32 channels) instead of 8
                // rows, in two passes for 16 + 8 (3x3 19->19 there, one thread: 3.0 -> 2.6 µs; 32->32: 2 % less).
                int columns = Math.Min(Gemm.PanelRows, width - r * Gemm.PanelRows);
                if (Gemm.Runs512) Gemm.MultiplyTilePart(columns, needed, job.Kc, ar, br, tile);
                else Gemm.MultiplyTilePart256(columns, needed, job.Kc, ar, br, tile);
                for (int k = first; k < end; k++)
                {
                    float* yrow = yg + k * ld + r * Gemm.PanelRows;
                    float* trow = tile + k - kb;
                    if (kind < 0)
                    {
                        for (int j = 0; j < columns; j++) yrow[j] = trow[j * Lanes];
                        continue;
                    }
                    long channel = (long)g * job.Kg + k;
                    float bias = job.Bias == null ? 0f : job.Bias[channel];
                    float* res = job.Residual == null ? null : job.Residual + channel * job.ResidualStride + epilogueColumn + r * Gemm.PanelRows;
                    switch (kind)
                    {
                        case 1: WriteBack<Relu>(yrow, trow, columns, job.Bias != null, bias, res); break;
                        case 2: WriteBack<Hardswish>(yrow, trow, columns, job.Bias != null, bias, res); break;
                        default: WriteBack<Identity>(yrow, trow, columns, job.Bias != null, bias, res); break;
                    }
                }
            }
        }
    }

    /// <summary>
    /// yrow[j] = act(trow[32 j] + bias + res[j]) for j in [0, columns): one column of a transposed tile written back
    /// with the epilogue, in <see cref="ConvKernels.Epilogue"/>'s order (bias, then residual, then activation).
    /// </summary>
    private static void WriteBack<TActivation>(float* yrow, float* trow, int columns, bool hasBias, float bias, float* res)
        where TActivation : struct, IScalarActivation
    {
        if (res == null && !hasBias)
            for (int j = 0; j < columns; j++) yrow[j] = TActivation.Apply(trow[j * Lanes]);
        else if (res == null)
            for (int j = 0; j < columns; j++) yrow[j] = TActivation.Apply(trow[j * Lanes] + bias);
        else if (!hasBias)
            for (int j = 0; j < columns; j++) yrow[j] = TActivation.Apply(trow[j * Lanes] + res[j]);
        else
            for (int j = 0; j < columns; j++) yrow[j] = TActivation.Apply(trow[j * Lanes] + bias + res[j]);
    }

    /// <summary>An activation applied one float at a time, with the expressions of <see cref="ConvKernels.Epilogue"/>'s vectors.</summary>
    private interface IScalarActivation
    {
        static abstract float Apply(float v);
    }

    private readonly struct Identity : IScalarActivation
    {
        public static float Apply(float v) => v;
    }

    private readonly struct Relu : IScalarActivation
    {
        public static float Apply(float v) => MathF.Max(v, 0f);
    }

    private readonly struct Hardswish : IScalarActivation
    {
        public static float Apply(float v) => v * MathF.Min(MathF.Max(v + 3f, 0f), 6f) * (1f / 6f);
    }

    /// <summary>The epilogue's activation as MultiplyTransposed applies it: 0 none, 1 ReLU, 2 Hardswish; -1 for one it leaves to <see cref="ConvKernels.Epilogue"/>.</summary>
    private static int EpilogueKind(ref Job job) => !job.HasActivation ? 0 : job.Activation switch
    {
        UnaryOp.Relu => 1,
        UnaryOp.Hardswish => 2,
        _ => -1,
    };

    /// <summary>
    /// Pools the block's scratch (nb planes of <paramref name="convRows"/> rows each, per output channel) into y, from
    /// pooled row <paramref name="pooledRow0"/> of samples [n0, n0 + nb), for output channels [k0, k1).
    /// </summary>
    private static void PoolBlock(ref Job job, float* unpooled, int n0, int nb, int pooledRow0, int convRows, int k0, int k1)
    {
        Pool2dParams full = job.Pool.Params;
        long pooledPlane = (long)full.P * full.Q;
        Pool2dParams part = convRows == full.H ? full : full with { H = convRows };
        long planeIn = (long)convRows * job.P.Q;
        // Channel k's nb planes go to y[k, n0 .. n0 + nb): runs of nb planes, PooledStride apart (N pooled planes).
        PoolKernels.MaxPlanes(unpooled + k0 * nb * planeIn, job.Y + k0 * job.PooledStride + n0 * pooledPlane + (long)pooledRow0 * full.Q,
            (k1 - k0) * nb, part, nb, job.PooledStride);
    }

    /// <summary>Row and column within its plane of each of the panel's output columns; lanes past the end get a row no tap reaches.</summary>
    private static void Coordinates(ref Job job, long j0, int width, int* coords)
    {
        int q = job.P.Q;
        long inPlane = j0 % job.OutPlane;
        if (Avx512F.IsSupported && job.OutPlane + Lanes <= MaxVectorPosition)
        {
            // Lane l is position inPlane + l of a plane, or of the next ones: its plane, row and column by exact float
            // divisions (positions below 2^16, and each quotient at least 0.5 / divisor from a whole number).
            var iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            var plane = Vector512.Create((float)job.OutPlane);
            var columns = Vector512.Create((float)q);
            var half = Vector512.Create(0.5f);
            for (int h = 0; h < Lanes; h += 16)
            {
                var position = iota + Vector512.Create((int)inPlane + h);
                position -= Vector512.ConvertToInt32(Vector512.Floor((Vector512.ConvertToSingle(position) + half) / plane)) * (int)job.OutPlane;
                var row = Vector512.ConvertToInt32(Vector512.Floor((Vector512.ConvertToSingle(position) + half) / columns));
                var live = Vector512.LessThan(iota + Vector512.Create(h), Vector512.Create(width));
                Vector512.ConditionalSelect(live, row, Vector512.Create(int.MinValue / 2)).Store(coords + h);
                (position - row * q).Store(coords + Lanes + h);
            }
            return;
        }
        int r = (int)(inPlane / q), col = (int)(inPlane % q);
        for (int lane = 0; lane < Lanes; lane++)
        {
            coords[lane] = lane < width ? r : int.MinValue / 2;
            coords[Lanes + lane] = col;
            if (++col == q)
            {
                col = 0;
                if (++r == job.P.P) r = 0;
            }
        }
    }

    /// <summary>
    /// Per kept tap t of a panel whose lanes are at <paramref name="coords"/> (<see cref="Coordinates"/>): the read offset,
    /// and in the 32 floats from <paramref name="masks"/> + 32 t all bits set in the lanes whose input lies inside the
    /// plane (two 512-bit masks, columns 0-15 and 16-31, or four 256-bit ones), zero in the others.
    /// </summary>
    private static void TapMasks(ref Job job, int* coords, float* masks, long* offsets)
    {
        // With halo rows, rows -1 .. H are in memory: the test is shifted by one row.
        int lift = job.Halo ? 1 : 0;
        var height = Vector256.Create((uint)(job.P.H + 2 * lift));
        var width = Vector256.Create((uint)job.P.W);
        for (int t = 0; t < job.Taps; t++)
        {
            int dh = job.OffH[t], dw = job.OffW[t];
            var dhv = Vector256.Create(dh + lift);
            var dwv = Vector256.Create(dw);
            // Lane valid when the tap's input row and column lie inside the plane (unsigned compare catches negatives).
            for (int h = 0; h < Lanes; h += 8)
            {
                var rows = Vector256.Load(coords + h);
                var columns = Vector256.Load(coords + Lanes + h);
                (Vector256.LessThan((rows + dhv).AsUInt32(), height) & Vector256.LessThan((columns + dwv).AsUInt32(), width))
                    .AsSingle().Store(masks + t * Lanes + h);
            }
            offsets[t] = (long)dh * job.P.W + dw;
        }
    }

    /// <summary>
    /// Where group <paramref name="g"/>'s input channel 0 holds output column <paramref name="j0"/>'s own position (its
    /// channels lie a plane of the batch apart).
    /// </summary>
    private static float* GroupInput(ref Job job, int g, long j0) => job.X + (long)g * job.Cg * job.XStride + j0;

    /// <summary>
    /// The B micro-panel of a group whose input starts at <paramref name="xg"/> (<see cref="GroupInput"/>) for the panel's
    /// 32 columns, with the taps' <see cref="TapMasks"/>: row c * taps + t holds tap t of input channel c. Written once
    /// for both vector widths (<see cref="IVectorLanes{TVector}"/>).
    /// </summary>
    private static void FillPanel<TLanes, TVector>(ref Job job, float* xg, float* masks, long* offsets, float* panel)
        where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged
    {
        long channel = job.XStride;
        int taps = job.Taps;
        // Channel by channel all taps: the taps of one channel read the same few cache lines of x, and the panel is
        // written front to back.
        float* dst = panel;
        for (int c = 0; c < job.Cg; c++, xg += channel)
        {
            if (job.Prefetch)
            {
                // The next panel's lines of this channel: its rows lie a plane of the batch apart, too many streams for
                // the hardware prefetcher to follow.
                Sse.Prefetch0(xg + Lanes);
                Sse.Prefetch0(xg + Lanes + 16);
            }
            for (int t = 0; t < taps; t++, dst += Lanes)
            {
                // Masked-off lanes are neither read nor faulted on, so the loads may straddle the ends of x.
                float* src = xg + offsets[t], mask = masks + t * Lanes;
                for (int h = 0; h < Lanes; h += TLanes.Count)
                    TLanes.Store(TLanes.MaskLoad(src + h, TLanes.Load(mask + h)), dst + h);
            }
        }
    }

    /// <summary>
    /// The first 8 or 16 lanes of a "same" geometry's panel of <paramref name="width"/> columns (at most 16) written as
    /// <see cref="MultiplyTransposed"/>'s A micro-panels: micro-panel r (lanes 8r .. 8r + 7) at <paramref name="a"/> +
    /// r * Kc * 8, row c * taps + t of it 8 floats. One masked load per row instead of filling 32 lanes and repacking
    /// them (the 4 columns past a 6 x 6 map's first panel at batch 1).
    /// </summary>
    private static void FillNarrowPanel(ref Job job, float* xg, int width, float* masks, long* offsets, float* a)
    {
        long channel = job.XStride;
        int taps = job.Taps;
        float* second = width > Gemm.PanelRows ? a + (long)job.Kc * Gemm.PanelRows : null;
        long row = 0;
        bool wide = Gemm.Runs512;
        for (int c = 0; c < job.Cg; c++, xg += channel)
        {
            for (int t = 0; t < taps; t++, row += Gemm.PanelRows)
            {
                // Masked-off lanes are neither read nor faulted on (the lanes past the width are off in every mask).
                float* src = xg + offsets[t], mask = masks + t * Lanes;
                if (wide)
                {
                    var v = Avx512F.MaskLoad(src, Vector512.Load(mask), Vector512<float>.Zero);
                    Vector256.Store(v.GetLower(), a + row);
                    if (second != null) Vector256.Store(v.GetUpper(), second + row);
                    continue;
                }
                Vector256.Store(Avx.MaskLoad(src, Vector256.Load(mask)), a + row);
                if (second != null) Vector256.Store(Avx.MaskLoad(src + 8, Vector256.Load(mask + 8)), second + row);
            }
        }
    }

    /// <summary>
    /// The panel for a strided geometry: the panel's columns fall into runs along output rows, and along a run a tap
    /// reads every input column (stride 1) or every other one (stride 2, compacted by one permute), so each
    /// (channel, tap) row of a run is a masked load or two and a masked store at the run's lanes.
    /// </summary>
    private static void FillRuns(ref Job job, float* xg, long j0, int width, float* panel)
    {
        int q = job.P.Q;
        long channel = job.XStride;
        long sample = j0 / job.OutPlane, inPlane = j0 % job.OutPlane;
        int row = (int)(inPlane / q), col = (int)(inPlane % q);
        for (int lane = 0; lane < width;)
        {
            int length = Math.Min(q - col, width - lane);
            FillRun(ref job, xg + sample * job.InPlane, channel, row * job.P.StrideH, col * job.P.StrideW, lane, length, panel);
            lane += length;
            col = 0;
            if (++row == job.P.P)
            {
                row = 0;
                sample++;
            }
        }
    }

    private static void FillRun(ref Job job, float* xs, long channel, int ih0, int iw0, int lane, int length, float* panel)
    {
        var iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var sixteen = Vector512.Create(16);
        var storeLo = Vector512.LessThan(iota, Vector512.Create(length)).AsSingle();
        var storeHi = Vector512.LessThan(iota + sixteen, Vector512.Create(length)).AsSingle();
        var width = Vector512.Create((uint)job.P.W);
        int stride = job.Taps * Lanes;
        bool halfWidth = job.P.StrideW == 2;
        for (int t = 0; t < job.Taps; t++)
        {
            float* dst = panel + t * Lanes + lane;
            int ih = ih0 + job.OffH[t];
            if ((uint)ih >= (uint)job.P.H)
            {
                // The tap is above or below the plane for this whole run.
                for (int c = 0; c < job.Cg; c++, dst += stride)
                {
                    Avx512F.MaskStore(dst, storeLo, Vector512<float>.Zero);
                    if (length > 16) Avx512F.MaskStore(dst + 16, storeHi, Vector512<float>.Zero);
                }
                continue;
            }
            int iw = iw0 + job.OffW[t];
            float* src = xs + (long)ih * job.P.W + iw;
            // Source lane i reads input column iw + i; lanes off the plane are masked (neither read nor faulted on).
            var column = iota + Vector512.Create(iw);
            var m0 = Vector512.LessThan(column.AsUInt32(), width).AsSingle();
            var m1 = Vector512.LessThan((column + sixteen).AsUInt32(), width).AsSingle();
            if (!halfWidth)
            {
                for (int c = 0; c < job.Cg; c++, src += channel, dst += stride)
                {
                    Avx512F.MaskStore(dst, storeLo, Avx512F.MaskLoad(src, m0 & storeLo, Vector512<float>.Zero));
                    if (length > 16) Avx512F.MaskStore(dst + 16, storeHi, Avx512F.MaskLoad(src + 16, m1 & storeHi, Vector512<float>.Zero));
                }
                continue;
            }
            var m2 = Vector512.LessThan((column + sixteen + sixteen).AsUInt32(), width).AsSingle();
            var m3 = Vector512.LessThan((column + sixteen + sixteen + sixteen).AsUInt32(), width).AsSingle();
            for (int c = 0; c < job.Cg; c++, src += channel, dst += stride)
            {
                var lo = Avx512F.PermuteVar16x32x2(Avx512F.MaskLoad(src, m0, Vector512<float>.Zero), even, Avx512F.MaskLoad(src + 16, m1, Vector512<float>.Zero));
                Avx512F.MaskStore(dst, storeLo, lo);
                if (length > 16)
                {
                    var hi = Avx512F.PermuteVar16x32x2(Avx512F.MaskLoad(src + 32, m2, Vector512<float>.Zero), even, Avx512F.MaskLoad(src + 48, m3, Vector512<float>.Zero));
                    Avx512F.MaskStore(dst + 16, storeHi, hi);
                }
            }
        }
    }
}
