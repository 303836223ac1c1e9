using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// A 3x3 stride-1 "same" convolution (padding 1) on channel-major tensors x [C, N, H, W] and y [K, N, H, W] by Winograd's
/// minimal filtering F(2x2, 3x3) or F(3x3, 3x3) (Lavin and Gray, 2015): each 2 x 2 block of outputs (a tile) comes from a
/// 4 x 4 patch of the input, and the 9 x 4 = 36 multiply-adds per tile, input channel and output channel become 16 (for
/// 3 x 3 tiles from 5 x 5 patches, 81 become 25). The weights are transformed once (U = G g G^T, 16 or 25 matrices
/// [K, C], packed as the GEMM's A micro-panels); per block of tiles the input patches are transformed (V = B^T d B, one
/// matrix [C, tiles] per point, whose columns are the tiles), multiplied point by point as GEMMs M = U V by the 8 x 32
/// micro-kernel (or, for at most 24 output channels, in strips of every output channel for a panel's 32 tiles), and transformed
/// back (Y = A^T M A) with bias, residual and activation applied as the outputs are stored.
/// </summary>
/// <remarks>
/// On maps 15 columns wide or more the transforms run with the tiles in the vector lanes, along runs of up to 16 tiles
/// of one tile row: an input row's odd and even columns are split by two-source permutes, so each transformed value of
/// a run is one vector operation, and each output row is two interleaving permutes. On narrower maps (MNIST's 6 x 6 and
/// 3 x 6) at batch 32 or more the samples are the lanes: 32 samples' planes are transposed into a staging block, so a
/// patch entry of one tile position is one load for all of them. Where it takes at least 20 % fewer products
/// (<see cref="TileSize"/>), the tiles are 3 x 3: F(3x3, 3x3), 25 products per tile from a 5 x 5 patch, 2.8 per output
/// instead of 4 (and none spent on the half-empty second tile row F(2x2, 3x3) puts on a 3-row map). With the tiles in
/// the lanes its runs are up to 8 tiles of a tile row in 256-bit vectors (mel's 24 columns: 8 tiles), each patch column
/// one permute of a row's 32 loaded columns (two runs of 8 tiles share 512-bit vectors in the input transform) and each
/// output row two three-way interleaving permutes; there it needs
/// 256 tiles in the batch and no fused pool (a pool's row pairs would straddle 3-row tiles). F(2x2, 3x3)'s
/// transforms add and subtract, besides the weights' halves; F(3x3, 3x3)'s (interpolation points 0, 1, -1, -2) multiply
/// by 2, 3 and 4 and its weights' transform by sixths, so its results lie about twice as far from the direct sum
/// (in a simulation over 32 input channels, at most 2.5e-6 of the largest output against 1.1e-6), a few units in the last place of the larger
/// terms; the plan's conformance tests compare both against eager with a tolerance. Threads share the blocks; each
/// output is computed by one thread in a fixed order, so results do not depend on the thread count. Needs AVX-512.
/// </remarks>
internal static unsafe class WinogradConv
{
    private const int Lanes = Gemm.PanelColumns;
    private const int Rows = Gemm.PanelRows;
    // Transformed values per tile of F(2x2, 3x3) (4 x 4), each a GEMM of its own; F(3x3, 3x3) has 5 x 5.
    private const int Points = 16;
    private const int LargePoints = 25;
    // Tiles per run: one vector's lanes.
    private const int RunTiles = 16;
    // Blocks of at most BlockBytes / (points x 4 x (C + K)) tiles: the transformed input (16 or 25 points x C floats a tile) stays
    // in L2 (1 MiB per core here) with room for the weights and the output rows being written.
    private const int BlockBytes = 384 * 1024;
    // At least this many tiles (four panels): below, the implicit GEMM was as fast or faster (one 15 x 24 mel map, 96
    // tiles: pruned 0.027 against 0.021 ms, big 0.046 against 0.045 ms), the blocks shared by two threads being half
    // padding. With a fused pool, whose implicit GEMM writes a block to scratch and pools it, two panels are enough (the
    // same map: 0.023 against 0.028 ms, 0.044 against 0.059 ms).
    private const long MinTiles = 4 * Lanes;
    private const long MinTilesPooled = 2 * Lanes;
    // Tile rows at least this long (maps 15 columns wide or more) put the tiles of a run in the lanes: a run fills half a
    // vector or more. MNIST's 6-column maps (3 tiles a row) ran 1.7x slower than the implicit GEMM that way, most of it
    // transforms on mostly idle lanes; narrower maps put SampleGroup samples in the lanes instead, each sample's planes
    // transposed into a staging block first.
    private const int MinTilesWide = 8;
    private const int SampleGroup = Lanes;
    // With the samples in the lanes a block holds every tile of 32 samples' planes: at most this much transformed input
    // (MNIST's 6 x 6 maps of 32 channels: 576 KiB), or it would not stay in L2 (taller narrow maps keep the implicit GEMM).
    private const long MaxSampleBlockBytes = 1 << 20;
    private const long MinMacsPerPart = 1 << 18;
    // F(3x3, 3x3) on wide maps: runs of up to 8 tiles of a tile row in 256-bit vectors (mel's 24 columns are 8 tiles),
    // and at least this many tiles in the batch (eight panels), or the panels share the threads unevenly: mel's 31 x 24
    // map at batch 1 has 88 tiles, 64 + 24 for two threads (F(2x2, 3x3): 96 + 96), and with it the mel b1 passes ran
    // 1-3 % slower (big 0.336-0.345 against 0.333-0.335 ms, pruned 0.153-0.155 against 0.150-0.151, four rounds).
    private const int LargeRunTiles = 8;
    private const long MinLargeTilesWide = 8 * Lanes;
    // 32 zeros, read for patch rows off the map (pinned: ZeroRow points into it).
    private static readonly float[] Zeros = GC.AllocateArray<float>(32, pinned: true);
    private static float* ZeroRow => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Zeros));
    // Floats of one point's 8 x 32 product tile.

    /// <summary>Whether inference plans use this path (tests turn it off to compare it with the implicit GEMM).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>
    /// Whether weights transformed from now on multiply in strips where the output channels fit one
    /// (<see cref="Gemm.MultiplyPointStripPairs"/>, <see cref="Gemm.MultiplyPointStrips"/>; tests turn it off to compare
    /// it with the 8 x 32 tiles).
    /// </summary>
    internal static bool Strips { get; set; } = true;

    /// <summary>Whether this path may use F(3x3, 3x3) (see <see cref="TileSize"/>; tests turn it off to compare it with F(2x2, 3x3)).</summary>
    internal static bool LargeTiles { get; set; } = true;

    /// <summary>
    /// The side of the output tiles this path uses for <paramref name="p"/> (followed by a fused pool when
    /// <paramref name="pooled"/>): 3, Winograd's F(3x3, 3x3) (25 products per 3 x 3 outputs instead of 16 per 2 x 2), where
    /// that takes at least 20 % fewer products for the plane (MNIST's 6 x 6 maps: 4 tiles of 25 instead of 9 of 16; 3 x 6:
    /// 2 of 25 instead of 6 of 16, whose second tile row of F(2x2) is half off the map; mel's 31 x 24: 88 of 25 instead of
    /// 192 of 16) and either the samples are in the lanes or, with the tiles in the lanes, no pool follows (the pool's row
    /// pairs would straddle tiles of three rows) and the batch has at least <see cref="MinLargeTilesWide"/> tiles of 3 x 3
    /// or runs on one thread (<paramref name="oneThread"/>: a sample shard's plan, which shares no panels); otherwise 2.
    /// </summary>
    internal static int TileSize(in Conv2dParams p, bool pooled, bool oneThread = false) =>
        LargeTiles && 5 * LargePoints * TilesPerPlane(p, 3) <= 4 * Points * TilesPerPlane(p, 2)
        && ((p.W + 1) / 2 < MinTilesWide || (!pooled && (oneThread || p.N * TilesPerPlane(p, 3) >= MinLargeTilesWide))) ? 3 : 2;

    private static long TilesPerPlane(in Conv2dParams p, int tile) => (long)((p.H + tile - 1) / tile) * ((p.W + tile - 1) / tile);

    /// <summary>
    /// True when this path runs the convolution, followed by <paramref name="pool"/> if given, on this machine
    /// (AVX-512): a 3x3 convolution of stride 1, dilation 1 and padding 1 (output the size of the input), one group, on
    /// maps at least 2 x 2 and either <see cref="MinTilesWide"/> tiles (15 columns) wide or in batches of at least
    /// <see cref="SampleGroup"/> samples (then with the samples in the lanes, for planes small enough that a block's
    /// transformed input stays within <see cref="MaxSampleBlockBytes"/>), with at least
    /// <see cref="MinTiles"/> tiles in the batch (<see cref="MinTilesPooled"/> with a pool); the pool must be a 2 x 1 max
    /// pool of stride 2 x 1 without padding (CP-ResNet's), which takes the maximum of each tile's two output rows.
    /// </summary>
    internal static bool Supports(in Conv2dParams p, Pool2dParams? pool) =>
        Avx512F.IsSupported && Gemm.Kind == Gemm.KernelKind.Vector512 && p.Groups == 1
        && p.R == 3 && p.S == 3 && p.StrideH == 1 && p.StrideW == 1 && p.DilationH == 1 && p.DilationW == 1
        && p.PadH == 1 && p.PadW == 1 && p.P == p.H && p.Q == p.W && p.H >= 2 && p.W >= 2
        && ((p.W + 1) / 2 >= MinTilesWide || (p.N >= SampleGroup && SampleBlockBytes(p, pool is not null) <= MaxSampleBlockBytes))
        && (long)p.N * ((p.H + 1) / 2) * ((p.W + 1) / 2) >= (pool is null ? MinTiles : MinTilesPooled)
        && (pool is not { } q || (q.KernelH == 2 && q.StrideH == 2 && q.KernelW == 1 && q.StrideW == 1 && q.PadH == 0 && q.PadW == 0 && !q.CeilMode));

    /// <summary>Bytes of transformed input in a block of <see cref="SampleGroup"/> samples (every tile of their planes).</summary>
    private static long SampleBlockBytes(in Conv2dParams p, bool pooled)
    {
        int tile = TileSize(p, pooled);
        return (long)(tile + 2) * (tile + 2) * p.C * TilesPerPlane(p, tile) * SampleGroup * sizeof(float);
    }

    // G of F(2x2, 3x3) (interpolation points 0, 1, -1 and infinity) and of F(3x3, 3x3) (0, 1, -1, -2 and infinity, its
    // first row negated with B^T's so that both are positive there): U = G g G^T, the weights' transform.
    private static readonly double[,] SmallG = { { 1, 0, 0 }, { 0.5, 0.5, 0.5 }, { 0.5, -0.5, 0.5 }, { 0, 0, 1 } };
    private static readonly double[,] LargeG =
        { { 0.5, 0, 0 }, { 1.0 / 6, 1.0 / 6, 1.0 / 6 }, { 0.5, -0.5, 0.5 }, { -1.0 / 6, 1.0 / 3, -2.0 / 3 }, { 0, 0, 1 } };

    /// <summary>
    /// The transformed weights, packed once: per point (a, b) of the tile's (m + 2) x (m + 2) transform, U[a, b] as a
    /// [K, C] GEMM operand, for the tile side m that <see cref="TileSize"/> picks for the convolution.
    /// </summary>
    internal sealed class Weights
    {
        private readonly float[] _packed;

        internal Weights(ReadOnlySpan<float> w, in Conv2dParams p, bool pooled, bool oneThread = false)
        {
            int k = p.K, c = p.C;
            Tile = TileSize(p, pooled, oneThread);
            int alpha = Tile + 2;
            double[,] gm = Tile == 3 ? LargeG : SmallG;
            UsesStrips = Strips && k <= Gemm.MaxStripRows;
            PerPoint = UsesStrips ? (long)c * Gemm.MaxStripRows : Gemm.PackedRowsLength(k, c);
            _packed = GC.AllocateArray<float>((int)(alpha * alpha * PerPoint), pinned: true);
            var u = new float[(long)alpha * alpha * k * c];
            Span<double> gg = stackalloc double[3 * alpha];
            for (int o = 0; o < k; o++)
                for (int i = 0; i < c; i++)
                {
                    ReadOnlySpan<float> g = w.Slice((o * c + i) * 9, 9);
                    // G g (alpha x 3), then (G g) G^T, in double.
                    for (int a = 0; a < alpha; a++)
                        for (int s = 0; s < 3; s++)
                            gg[3 * a + s] = gm[a, 0] * g[s] + gm[a, 1] * g[3 + s] + gm[a, 2] * g[6 + s];
                    for (int a = 0; a < alpha; a++)
                        for (int b = 0; b < alpha; b++)
                            u[((long)(alpha * a + b) * k + o) * c + i] =
                                (float)(gg[3 * a] * gm[b, 0] + gg[3 * a + 1] * gm[b, 1] + gg[3 * a + 2] * gm[b, 2]);
                }
            fixed (float* src = u, dst = _packed)
                for (int point = 0; point < alpha * alpha; point++)
                {
                    float* matrix = src + (long)point * k * c, packed = dst + point * PerPoint;
                    if (!UsesStrips)
                    {
                        Gemm.PackRows(matrix, c, k, c, packed);
                        continue;
                    }
                    // Transposed, [C][MaxStripRows]: input channel i's weights for every output channel, zero past K.
                    for (int i = 0; i < c; i++)
                        for (int o = 0; o < k; o++) packed[(long)i * Gemm.MaxStripRows + o] = matrix[(long)o * c + i];
                }
        }

        /// <summary>Whether the products run in strips (<see cref="Strips"/>, at most <see cref="Gemm.MaxStripRows"/> output channels).</summary>
        internal bool UsesStrips { get; }

        /// <summary>The output tile's side: 2 for F(2x2, 3x3), 3 for F(3x3, 3x3).</summary>
        internal int Tile { get; }

        /// <summary>Floats per point in <see cref="Packed"/>.</summary>
        internal long PerPoint { get; }

        /// <summary>The packed matrices, point after point (the array is pinned).</summary>
        internal float* Packed => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_packed));

        /// <summary>What the kernel reads, as pointers and sizes (the array is pinned).</summary>
        internal Packing View() => new(Packed, PerPoint, Tile, UsesStrips);
    }

    /// <summary>Transformed weights as the kernel reads them: <see cref="Weights"/> without the managed object.</summary>
    internal readonly struct Packing(float* packed, long perPoint, int tile, bool strips)
    {
        /// <summary>Whether the matrices are packed for strips (transposed) rather than for 8 x 32 tiles.</summary>
        internal readonly bool Strips = strips;

        /// <summary>The packed matrices, point after point.</summary>
        internal readonly float* Packed = packed;

        /// <summary>Floats per point in <see cref="Packed"/>.</summary>
        internal readonly long PerPoint = perPoint;

        /// <summary>The output tile's side.</summary>
        internal readonly int Tile = tile;
    }

    /// <summary>One call's arguments; each part works on its own copy (the caller's frame is written while parts read).</summary>
    private struct Job
    {
        public float* X, U, Bias, Y, Residual;
        public int C, K, KPadded, H, W, TilesH, TilesW, Kind;
        // Output channels multiplied at a time (8, a micro-tile's rows, or all K in strips), and the floats from one point's
        // products to the next in M ([point, ChunkRows, 32]).
        public int ChunkRows;
        public long MPoint;
        public bool Strips;
        // The output tile's side (2 or 3, see TileSize) and the transformed values per tile, (Tile + 2)^2.
        public int Tile, Points;
        // A fused 2 x 1 max pool (see Supports): y is [K, N, H / 2, W], one row per tile row.
        public bool Pooled;
        // Narrow maps: a block is SampleGroup samples, a panel one tile position of theirs (the samples in the lanes).
        public bool SampleLanes;
        public int N, TilesPerPlane;
        public UnaryOp Activation;
        // Floats between channels: of x, of y and the residual, of a pooled y.
        public long PerPoint, Plane, XChannel, Channel, Tiles, PooledChannel;
        // Rows -1 and H of x are in memory (a row band's halo rows, ForwardBand) instead of padding.
        public bool Halo;
        public int BlockTiles, Blocks, Parts;
        // Floats per row of V: a block's tiles and one run more, so a run's 16 lanes stay inside the row and are
        // stored whole (lanes past the run hold values the next run overwrites, or padding).
        public int Ld;
        // Floats from one point's matrix to the next in V: a whole number of rows plus one or two cache lines, an odd
        // number of lines in all, so the points' rows a transform touches together do not fall in a few L1 sets.
        public long VStride;
    }

    /// <summary>
    /// y = act(conv2d(x, w) + bias + residual) for channel-major x [C, N, H, W] and y, residual [K, N, H, W]; bias and
    /// residual may be null; <paramref name="kind"/>: 0 no activation, 1 ReLU, 2 Hardswish. With
    /// <paramref name="pooled"/>, a 2 x 1 max pool of stride 2 x 1 follows (see <see cref="Supports"/>) and y is the
    /// pooled [K, N, H / 2, W] (a last odd row is dropped, as the pool's floor mode does).
    /// </summary>
    internal static void Forward(float* x, Weights weights, float* bias, float* y, in Conv2dParams p, float* residual, int kind, bool pooled = false)
    {
        var job = NewJob(x, weights.View(), bias, y, p, residual, kind, pooled);
        long macs = job.Tiles * job.Points * p.K * p.C;
        int parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, CpuThreading.Threads);
        PlanBlocks(ref job, parts);
        if (job.Parts == 1) RunBlocks(in job, 0, job.Blocks);
        else CpuThreading.ForParts(job.Parts, &RunPart, &job);
    }

    /// <summary>
    /// <see cref="Forward"/> for one band of rows of one sample (<paramref name="p"/>.N 1, H the band's rows), on the
    /// calling thread, with the tiles in the lanes and 2 x 2 tiles: the channels of x, of the residual and of y (the
    /// pooled y with <paramref name="pooled"/>) <paramref name="xChannel"/>, <paramref name="residualChannel"/> and
    /// <paramref name="yChannel"/> floats apart (without a pool, the residual's must be y's), and x's rows -1 and H read
    /// from memory (the band's halo rows: the neighbouring bands' edge rows, or zeros at the map's edges) instead of as
    /// padding. With the band starting on an even row of the map, every tile, pooling window and sum is the one
    /// <see cref="Forward"/> computes on the whole map.
    /// </summary>
    internal static void ForwardBand(float* x, long xChannel, in Packing weights, float* bias, float* y, long yChannel, in Conv2dParams p,
        float* residual, long residualChannel, int kind, bool pooled)
    {
        if (p.N != 1 || weights.Tile != 2 || (p.W + 1) / 2 < MinTilesWide)
            throw new ArgumentException("WinogradConv.ForwardBand takes one sample with 2 x 2 tiles in the lanes (maps 15 columns wide or more).", nameof(p));
        if (!pooled && residual != null && residualChannel != yChannel)
            throw new ArgumentException("WinogradConv.ForwardBand: without a pool the residual is read where y is written; give both one channel stride.", nameof(residualChannel));
        var job = NewJob(x, weights, bias, y, p, residual, kind, pooled);
        job.XChannel = xChannel;
        // The output transform finds an unpooled position's y and residual at one offset (Channel); pooled, y's at PooledChannel.
        job.Channel = pooled ? residualChannel : yChannel;
        if (pooled) job.PooledChannel = yChannel;
        job.Halo = true;
        PlanBlocks(ref job, parts: 1);
        RunBlocks(in job, 0, job.Blocks);
    }

    /// <summary>A call's job before its blocks are planned (x, y and the residual channel-major, as <see cref="Forward"/> takes them).</summary>
    private static Job NewJob(float* x, in Packing weights, float* bias, float* y, in Conv2dParams p, float* residual, int kind, bool pooled)
    {
        int tile = weights.Tile;
        var job = new Job
        {
            X = x, U = weights.Packed, Bias = bias, Y = y, Residual = residual,
            C = p.C, K = p.K, H = p.H, W = p.W, Strips = weights.Strips, ChunkRows = weights.Strips ? p.K : Rows,
            TilesH = (p.H + tile - 1) / tile, TilesW = (p.W + tile - 1) / tile, Kind = kind,
            Tile = tile, Points = (tile + 2) * (tile + 2),
            PerPoint = weights.PerPoint, Plane = (long)p.H * p.W, Pooled = pooled,
        };
        job.KPadded = (p.K + job.ChunkRows - 1) / job.ChunkRows * job.ChunkRows;
        job.MPoint = (long)job.ChunkRows * Lanes;
        job.N = p.N;
        job.TilesPerPlane = job.TilesH * job.TilesW;
        job.SampleLanes = (p.W + 1) / 2 < MinTilesWide;
        if (pooled && tile == 3 && !job.SampleLanes)
            throw new ArgumentException("WinogradConv: these weights were transformed for F(3x3, 3x3) without a pool; with the tiles in the lanes a fused pool needs F(2x2, 3x3) (Weights with pooled: true).", nameof(weights));
        // The samples path runs its epilogue through ConvKernels.Epilogue, which takes the op (unused when Kind is 0).
        job.Activation = kind == 2 ? UnaryOp.Hardswish : UnaryOp.Relu;
        job.Channel = job.XChannel = p.N * job.Plane;
        job.PooledChannel = (long)p.N * (p.H / 2) * p.W;
        job.Tiles = (long)p.N * job.TilesH * job.TilesW;
        return job;
    }

    /// <summary>Blocks and parts for <paramref name="parts"/> threads, and V's point stride.</summary>
    private static void PlanBlocks(ref Job job, int parts)
    {
        // Blocks of whole panels that fit BlockBytes, as many per part as the tiles need and evenly sized.
        int maxBlock = Math.Max(Lanes, BlockBytes / (sizeof(float) * job.Points * (job.C + job.KPadded)) / Lanes * Lanes);
        long blocks = parts * Math.Max(1, (job.Tiles + (long)parts * maxBlock - 1) / ((long)parts * maxBlock));
        job.BlockTiles = (int)((job.Tiles + blocks - 1) / blocks + Lanes - 1) / Lanes * Lanes;
        job.Blocks = (int)((job.Tiles + job.BlockTiles - 1) / job.BlockTiles);
        job.Ld = job.BlockTiles + RunTiles;
        if (job.SampleLanes)
        {
            job.BlockTiles = job.TilesPerPlane * SampleGroup;
            job.Blocks = (job.N + SampleGroup - 1) / SampleGroup;
            job.Ld = job.BlockTiles;
        }
        job.Parts = Math.Min(parts, job.Blocks);
        // An odd number of cache lines from one point's V to the next, so that the points' rows a transform writes together
        // (and the micro-kernel reads) spread over the L1's sets: the pruned model's 19 channels at 80 floats a row made
        // 95 + 1 lines, a multiple of 32, and put all 25 points of F(3x3, 3x3) in two sets.
        long lines = (long)job.C * job.Ld / 16 + 1;
        job.VStride = (lines | 1) * 16;
    }

    private static void RunPart(void* state, int part)
    {
        Job job = *(Job*)state;
        RunBlocks(in job, (int)((long)part * job.Blocks / job.Parts), (int)((long)(part + 1) * job.Blocks / job.Parts));
    }

    /// <summary>Blocks [first, end): transform the block's input, multiply point by point, transform back.</summary>
    private static void RunBlocks(in Job job, int first, int end)
    {
        ConvScratch scratch = ConvScratch.Current;
        int ld = job.Ld;
        // V [point, C, ld]; M [point, ChunkRows, 32] (one micro-tile per point, or every output channel's strips), with a
        // vector of slack for unaligned loads.
        float* v = scratch.Get(ConvScratch.Slot.Columns, job.Points * job.VStride);
        float* m = scratch.Get(ConvScratch.Slot.Block, job.Points * job.MPoint + RunTiles);
        if (job.SampleLanes)
        {
            RunSampleBlocks(in job, first, end, v, m, scratch);
            return;
        }
        for (int block = first; block < end; block++)
        {
            long t0 = (long)block * job.BlockTiles;
            int count = (int)Math.Min(job.BlockTiles, job.Tiles - t0);
            int width = (count + Lanes - 1) / Lanes * Lanes;
            // The last panel's unused lanes are never stored, but scratch may hold anything, denormals included: they are
            // cleared, and the last run's whole-vector stores leave only transforms of the map's own values in them.
            if (count < width)
                for (int point = 0; point < job.Points; point++)
                    for (int c = 0; c < job.C; c++) new Span<float>(v + point * job.VStride + (long)c * ld + count, width - count).Clear();
            if (job.Tile == 3) TransformLargeInput(in job, t0, count, v);
            else TransformInput(in job, t0, count, v, ld);
            // Per panel of 32 tiles and 8 output channels, the points' products (16 or 25 KiB, in L1) and at once their
            // output transform: from a whole block's products in L2 the output transform ran at about half the rate. In
            // strips, every output channel's products (25 points of 19 rows: 61 KiB); 16 tiles at a time instead (30 KiB)
            // made mel's F(3x3, 3x3) steps 0-6 % slower.
            for (int j = 0; j < width; j += Lanes)
                for (int k = 0; k < job.KPadded; k += job.ChunkRows)
                {
                    int lanes = Math.Min(Lanes, count - j);
                    MultiplyPoints(in job, v + j, k, m, lanes);
                    if (job.Tile == 3) TransformLargeOutput(in job, t0 + j, lanes, k, Math.Min(k + job.ChunkRows, job.K), m);
                    else TransformOutput(in job, t0 + j, lanes, k, Math.Min(k + job.ChunkRows, job.K), m);
                }
        }
    }

    /// <summary>
    /// Blocks [first, end) of narrow maps, SampleGroup samples each: per input channel the samples' planes are transposed
    /// into a staging block [position, sample] and every tile position's patch is transformed for all of them at once
    /// (panel t of V is tile t of the plane); per 8 output channels (all of them, in strips) the products of each panel
    /// are transformed back into a staging block [channel, position, sample], which is transposed into y's planes and
    /// given bias, residual and activation there (and pooled, with a fused pool).
    /// </summary>
    [SkipLocalsInit]
    private static void RunSampleBlocks(in Job job, int first, int end, float* v, float* m, ConvScratch scratch)
    {
        int plane = (int)job.Plane, tiles = job.TilesPerPlane, tile = job.Tile, alpha = tile + 2, points = job.Points;
        // Input staging [plane, 32] and a 32-float block of zeros after it (the patches' positions off the map); output
        // staging [8, plane, 32]; with a pool, one channel's unpooled planes [32, plane].
        float* staging = scratch.Get(ConvScratch.Slot.Padded, (long)(plane + 1) * Lanes);
        float* outputs = scratch.Get(ConvScratch.Slot.Rows, (long)job.ChunkRows * plane * Lanes);
        float* unpooled = job.Pooled ? scratch.Get(ConvScratch.Slot.ChannelMajor, (long)SampleGroup * plane) : null;
        float* zeros = staging + (long)plane * Lanes;
        new Span<float>(zeros, Lanes).Clear();
        // Per tile and patch entry (i, j), where it reads in the staging block: its position's row, or the zeros.
        int* sources = stackalloc int[tiles * points];
        for (int t = 0; t < tiles; t++)
            for (int i = 0; i < alpha; i++)
                for (int j = 0; j < alpha; j++)
                {
                    int r = tile * (t / job.TilesW) - 1 + i, c = tile * (t % job.TilesW) - 1 + j;
                    sources[t * points + i * alpha + j] = ((uint)r < (uint)job.H && (uint)c < (uint)job.W ? r * job.W + c : plane) * Lanes;
                }
        bool hasActivation = job.Kind != 0;
        var pool = new Pool2dParams(1, 1, job.H, job.W, 2, 1, 2, 1, 0, 0);
        long pooledPlane = (long)(job.H / 2) * job.W;
        for (int block = first; block < end; block++)
        {
            int n0 = block * SampleGroup, samples = Math.Min(SampleGroup, job.N - n0);
            // Lanes past the batch's last sample transform zeros, not what the block last held (never stored, but stale
            // values may be denormals, which are slow).
            if (samples < SampleGroup) new Span<float>(staging, plane * Lanes).Clear();
            for (int c = 0; c < job.C; c++)
            {
                Gemm.Transpose(job.X + c * job.XChannel + (long)n0 * plane, plane, staging, Lanes, samples, plane);
                float* dst = v + (long)c * job.Ld;
                for (int t = 0; t < tiles; t++, dst += Lanes)
                {
                    if (tile == 3)
                    {
                        TransformLargePatch(staging, sources + t * points, dst, job.VStride);
                        TransformLargePatch(staging + 16, sources + t * points, dst + 16, job.VStride);
                        continue;
                    }
                    TransformPatch(staging, sources + t * points, dst, job.VStride);
                    TransformPatch(staging + 16, sources + t * points, dst + 16, job.VStride);
                }
            }
            for (int k = 0; k < job.KPadded; k += job.ChunkRows)
            {
                int k1 = Math.Min(k + job.ChunkRows, job.K);
                for (int t = 0; t < tiles; t++)
                {
                    MultiplyPoints(in job, v + t * Lanes, k, m, Lanes);
                    int th = t / job.TilesW, tw = t % job.TilesW;
                    if (tile == 3)
                    {
                        // The tile's outputs that lie on the map.
                        int at = (3 * th * job.W + 3 * tw) * Lanes, rows = Math.Min(3, job.H - 3 * th), columns = Math.Min(3, job.W - 3 * tw);
                        for (int kk = k; kk < k1; kk++)
                            for (int half = 0; half < Lanes; half += 16)
                                StoreLargeTile(m + (kk - k) * Lanes + half, job.MPoint,
                                    outputs + (long)(kk - k) * plane * Lanes + half + at, job.W * Lanes, rows, columns);
                        continue;
                    }
                    for (int kk = k; kk < k1; kk++)
                        for (int half = 0; half < Lanes; half += 16)
                        {
                            OutputTile(m + (kk - k) * Lanes + half, job.MPoint, out var y00, out var y01, out var y10, out var y11);
                            // The tile's outputs that lie on the map, at their positions in the staging block.
                            float* o = outputs + (long)(kk - k) * plane * Lanes + half;
                            int at = (2 * th * job.W + 2 * tw) * Lanes;
                            bool right = 2 * tw + 1 < job.W, below = 2 * th + 1 < job.H;
                            Vector512.Store(y00, o + at);
                            if (right) Vector512.Store(y01, o + at + Lanes);
                            if (below) Vector512.Store(y10, o + at + job.W * Lanes);
                            if (right && below) Vector512.Store(y11, o + at + (job.W + 1) * Lanes);
                        }
                }
                for (int kk = k; kk < k1; kk++)
                {
                    float* bias = job.Bias == null ? null : job.Bias + kk;
                    float* residual = job.Residual == null ? null : job.Residual + kk * job.Channel;
                    float* o = outputs + (long)(kk - k) * plane * Lanes;
                    if (!job.Pooled)
                    {
                        float* y = job.Y + kk * job.Channel;
                        Gemm.Transpose(o, Lanes, y + (long)n0 * plane, plane, plane, samples);
                        ConvKernels.Epilogue(y, 0, (long)n0 * plane, 1, samples * plane, bias, residual, 0, (long)n0 * plane,
                            hasActivation, job.Activation, 0f, 0f);
                        continue;
                    }
                    Gemm.Transpose(o, Lanes, unpooled, plane, plane, samples);
                    ConvKernels.Epilogue(unpooled, 0, 0, 1, samples * plane, bias, residual, 0, (long)n0 * plane,
                        hasActivation, job.Activation, 0f, 0f);
                    PoolKernels.MaxPlanes(unpooled, job.Y + kk * job.PooledChannel + n0 * pooledPlane, samples, pool);
                }
            }
        }
    }

    /// <summary>
    /// V for 16 lanes of a staging block [position, 32]: patch entry (i, j) read at <paramref name="staging"/> +
    /// sources[i * 4 + j], point (a, b) stored at <paramref name="dst"/> + (a * 4 + b) * <paramref name="pointStride"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransformPatch(float* staging, int* sources, float* dst, long pointStride)
    {
        RowOfB(Vector512.Load(staging + sources[0]), Vector512.Load(staging + sources[1]), Vector512.Load(staging + sources[2]),
            Vector512.Load(staging + sources[3]), out var r00, out var r01, out var r02, out var r03);
        RowOfB(Vector512.Load(staging + sources[4]), Vector512.Load(staging + sources[5]), Vector512.Load(staging + sources[6]),
            Vector512.Load(staging + sources[7]), out var r10, out var r11, out var r12, out var r13);
        RowOfB(Vector512.Load(staging + sources[8]), Vector512.Load(staging + sources[9]), Vector512.Load(staging + sources[10]),
            Vector512.Load(staging + sources[11]), out var r20, out var r21, out var r22, out var r23);
        RowOfB(Vector512.Load(staging + sources[12]), Vector512.Load(staging + sources[13]), Vector512.Load(staging + sources[14]),
            Vector512.Load(staging + sources[15]), out var r30, out var r31, out var r32, out var r33);
        StoreColumns(dst, pointStride, r00, r01, r02, r03, r10, r11, r12, r13, r20, r21, r22, r23, r30, r31, r32, r33);
    }

    /// <summary>
    /// V of F(3x3, 3x3) for 16 lanes of a staging block [position, 32]: patch entry (i, j) read at
    /// <paramref name="staging"/> + sources[i * 5 + j], point (a, b) stored at <paramref name="dst"/> + (a * 5 + b) *
    /// <paramref name="pointStride"/>; V = B^T d B, each row of the patch transformed first (see LargeRowOfB).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransformLargePatch(float* staging, int* sources, float* dst, long pointStride)
    {
        LargeRowOfB(Vector512.Load(staging + sources[0]), Vector512.Load(staging + sources[1]), Vector512.Load(staging + sources[2]),
            Vector512.Load(staging + sources[3]), Vector512.Load(staging + sources[4]), out var r00, out var r01, out var r02, out var r03, out var r04);
        LargeRowOfB(Vector512.Load(staging + sources[5]), Vector512.Load(staging + sources[6]), Vector512.Load(staging + sources[7]),
            Vector512.Load(staging + sources[8]), Vector512.Load(staging + sources[9]), out var r10, out var r11, out var r12, out var r13, out var r14);
        LargeRowOfB(Vector512.Load(staging + sources[10]), Vector512.Load(staging + sources[11]), Vector512.Load(staging + sources[12]),
            Vector512.Load(staging + sources[13]), Vector512.Load(staging + sources[14]), out var r20, out var r21, out var r22, out var r23, out var r24);
        LargeRowOfB(Vector512.Load(staging + sources[15]), Vector512.Load(staging + sources[16]), Vector512.Load(staging + sources[17]),
            Vector512.Load(staging + sources[18]), Vector512.Load(staging + sources[19]), out var r30, out var r31, out var r32, out var r33, out var r34);
        LargeRowOfB(Vector512.Load(staging + sources[20]), Vector512.Load(staging + sources[21]), Vector512.Load(staging + sources[22]),
            Vector512.Load(staging + sources[23]), Vector512.Load(staging + sources[24]), out var r40, out var r41, out var r42, out var r43, out var r44);
        // Then each column: point (a, b) is row a of B^T times column b of d B.
        StoreLargeColumn(dst, pointStride, r00, r10, r20, r30, r40);
        StoreLargeColumn(dst + pointStride, pointStride, r01, r11, r21, r31, r41);
        StoreLargeColumn(dst + 2 * pointStride, pointStride, r02, r12, r22, r32, r42);
        StoreLargeColumn(dst + 3 * pointStride, pointStride, r03, r13, r23, r33, r43);
        StoreLargeColumn(dst + 4 * pointStride, pointStride, r04, r14, r24, r34, r44);
    }

    /// <summary>
    /// Five values times F(3x3, 3x3)'s B (rows of B^T: (2, 1, -2, -1, 0), (0, 2, 3, 1, 0), (0, -2, 1, 1, 0), (0, -1, 0, 1, 0),
    /// (0, -2, -1, 2, 1)), lane by lane, in 9 operations.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LargeRowOfB(Vector512<float> d0, Vector512<float> d1, Vector512<float> d2, Vector512<float> d3, Vector512<float> d4,
        out Vector512<float> r0, out Vector512<float> r1, out Vector512<float> r2, out Vector512<float> r3, out Vector512<float> r4)
    {
        var two = Vector512.Create(2f);
        var t = d3 - d1;
        var a = d2 + d3;
        r0 = Vector512.FusedMultiplyAdd(two, d0 - d2, -t);
        r1 = Vector512.FusedMultiplyAdd(two, d1 + d2, a);
        r2 = Vector512.FusedMultiplyAdd(-two, d1, a);
        r3 = t;
        r4 = Vector512.FusedMultiplyAdd(two, t, d4 - d2);
    }

    /// <summary>B^T times one column (c0 .. c4) of d B: points (0, b) .. (4, b), stored 5 * <paramref name="pointStride"/> apart from <paramref name="o"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreLargeColumn(float* o, long pointStride, Vector512<float> c0, Vector512<float> c1, Vector512<float> c2,
        Vector512<float> c3, Vector512<float> c4)
    {
        LargeRowOfB(c0, c1, c2, c3, c4, out var v0, out var v1, out var v2, out var v3, out var v4);
        long step = 5 * pointStride;
        Vector512.Store(v0, o);
        Vector512.Store(v1, o + step);
        Vector512.Store(v2, o + 2 * step);
        Vector512.Store(v3, o + 3 * step);
        Vector512.Store(v4, o + 4 * step);
    }

    /// <summary>
    /// Y = A^T M A of F(3x3, 3x3) for the 16 lanes at <paramref name="s"/> (point (a, b) at s + (a * 5 + b) *
    /// <paramref name="pointStride"/>); output (i, j) stored at <paramref name="o"/> + i * <paramref name="rowStride"/> +
    /// j * 32 for i below <paramref name="rows"/> and j below <paramref name="columns"/> (the tile's outputs on the map).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreLargeTile(float* s, long pointStride, float* o, long rowStride, int rows, int columns)
    {
        // A^T M, column by column: rows 0 .. 2 of the 3 x 5 intermediate.
        LargeColumnOfA(s, pointStride, out var t00, out var t10, out var t20);
        LargeColumnOfA(s + pointStride, pointStride, out var t01, out var t11, out var t21);
        LargeColumnOfA(s + 2 * pointStride, pointStride, out var t02, out var t12, out var t22);
        LargeColumnOfA(s + 3 * pointStride, pointStride, out var t03, out var t13, out var t23);
        LargeColumnOfA(s + 4 * pointStride, pointStride, out var t04, out var t14, out var t24);
        // (A^T M) A, row by row.
        StoreLargeRow(o, t00, t01, t02, t03, t04, columns);
        if (rows > 1) StoreLargeRow(o + rowStride, t10, t11, t12, t13, t14, columns);
        if (rows > 2) StoreLargeRow(o + 2 * rowStride, t20, t21, t22, t23, t24, columns);
    }

    /// <summary>A^T times column b of M (points (0, b) .. (4, b), 5 * <paramref name="pointStride"/> apart from <paramref name="s"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LargeColumnOfA(float* s, long pointStride, out Vector512<float> y0, out Vector512<float> y1, out Vector512<float> y2)
    {
        long step = 5 * pointStride;
        LargeRowOfA(Vector512.Load(s), Vector512.Load(s + step), Vector512.Load(s + 2 * step), Vector512.Load(s + 3 * step),
            Vector512.Load(s + 4 * step), out y0, out y1, out y2);
    }

    /// <summary>One output row of a tile: the row (m0 .. m4) times A, its first <paramref name="columns"/> outputs stored 32 floats apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreLargeRow(float* o, Vector512<float> m0, Vector512<float> m1, Vector512<float> m2, Vector512<float> m3,
        Vector512<float> m4, int columns)
    {
        LargeRowOfA(m0, m1, m2, m3, m4, out var y0, out var y1, out var y2);
        Vector512.Store(y0, o);
        if (columns > 1) Vector512.Store(y1, o + Lanes);
        if (columns > 2) Vector512.Store(y2, o + 2 * Lanes);
    }

    /// <summary>
    /// Five values times F(3x3, 3x3)'s A (rows of A^T: (1, 1, 1, 1, 0), (0, 1, -1, -2, 0), (0, 1, 1, 4, 1)), lane by lane.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LargeRowOfA(Vector512<float> m0, Vector512<float> m1, Vector512<float> m2, Vector512<float> m3, Vector512<float> m4,
        out Vector512<float> y0, out Vector512<float> y1, out Vector512<float> y2)
    {
        var p = m1 + m2;
        y0 = m0 + p + m3;
        y1 = Vector512.FusedMultiplyAdd(Vector512.Create(-2f), m3, m1 - m2);
        y2 = Vector512.FusedMultiplyAdd(Vector512.Create(4f), m3, p) + m4;
    }

    /// <summary>
    /// m[point] = U[point] rows [k, k + 8) (in strips: every row) times the V panel at <paramref name="v"/>, its first
    /// <paramref name="lanes"/> columns at least, for each point (16 or 25). Not inlined: with dynamic PGO the JIT inlined
    /// the micro-kernel into the block loop and the Winograd steps ran 3x slower.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void MultiplyPoints(in Job job, float* v, int k, float* m, int lanes)
    {
        if (job.Strips)
        {
            // Every output channel for the panel's 32 tiles, in strips of at most 12 rows whose weights each feed two
            // multiply-adds; a last panel of at most 16 tiles, for 16 (lanes past the tiles' need not be multiplied).
            if (lanes > 16) Gemm.MultiplyPointStripPairs(job.K, job.Points, job.C, job.U, job.PerPoint, v, job.VStride, job.Ld, m, job.MPoint, Lanes);
            else Gemm.MultiplyPointStrips(job.K, job.Points, job.C, job.U, job.PerPoint, v, job.VStride, job.Ld, m, job.MPoint, Lanes);
            return;
        }
        float* a = job.U + (long)k * job.C;
        // A last micro-panel of fewer than 8 output channels (19 = 8 + 8 + 3, 38 = 32 + 6) skips its zero rows.
        if (job.K - k < Rows)
        {
            for (int point = 0; point < job.Points; point++, a += job.PerPoint, v += job.VStride, m += job.MPoint)
                Gemm.MultiplyTileRows(job.K - k, job.C, a, v, job.Ld, m);
            return;
        }
        for (int point = 0; point < job.Points; point++, a += job.PerPoint, v += job.VStride, m += job.MPoint)
            Gemm.MultiplyTileStrided(job.C, a, v, job.Ld, m, Lanes);
    }

    /// <summary>Where tile t lies: its sample, tile row and tile column.</summary>
    private static void Locate(in Job job, long t, out long n, out int th, out int tw)
    {
        long perSample = (long)job.TilesH * job.TilesW;
        n = t / perSample;
        int rest = (int)(t % perSample);
        th = rest / job.TilesW;
        tw = rest % job.TilesW;
    }

    /// <summary>V[a, b][c, lane] = (B^T d B)[a, b] for each of the block's tiles (lane = tile - t0) and input channel c.</summary>
    // Not inlined: see TransformLargeInput.
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit]
    private static void TransformInput(in Job job, long t0, int count, float* v, int ld)
    {
        var iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var odd = even + Vector512<int>.One;
        var sixteen = Vector512.Create(16);
        var width = Vector512.Create((uint)job.W);
        long pointStride = job.VStride;
        for (int lane = 0; lane < count;)
        {
            Locate(in job, t0 + lane, out long n, out int th, out int tw);
            int length = Math.Min(Math.Min(job.TilesW - tw, RunTiles), count - lane);
            // The run's patches span input columns 2 tw - 1 .. 2 (tw + length): two windows of 32, the second two columns
            // on; columns off the map read as zeros (masked loads neither read nor fault there).
            var column = iota + Vector512.Create(2 * tw - 1);
            var a0 = Vector512.LessThan(column.AsUInt32(), width).AsSingle();
            var a1 = Vector512.LessThan((column + sixteen).AsUInt32(), width).AsSingle();
            var b0 = Vector512.LessThan((column + Vector512.Create(2)).AsUInt32(), width).AsSingle();
            var b1 = Vector512.LessThan((column + Vector512.Create(18)).AsUInt32(), width).AsSingle();
            int row0 = 2 * th - 1;
            // Rows 2 th - 1 and, at the bottom of a map of odd height, 2 th + 1 and 2 th + 2 may be off the map (zeros);
            // a band's rows -1 and H are its halo rows, in memory.
            int top = job.Halo ? -1 : 0, bottom = job.Halo ? job.H + 1 : job.H;
            bool has0 = row0 >= top, has2 = row0 + 2 < bottom, has3 = row0 + 3 < bottom;
            float* src = job.X + n * job.Plane + (long)row0 * job.W + 2 * tw - 1;
            float* dst = v + lane;
            for (int c = 0; c < job.C; c++, src += job.XChannel, dst += ld)
            {
                // Row i of the patch, transformed along the row: d B.
                Vector512<float> r00 = default, r01 = default, r02 = default, r03 = default;
                Vector512<float> r20 = default, r21 = default, r22 = default, r23 = default;
                Vector512<float> r30 = default, r31 = default, r32 = default, r33 = default;
                if (has0) RowTransform(src, a0, a1, b0, b1, even, odd, out r00, out r01, out r02, out r03);
                RowTransform(src + job.W, a0, a1, b0, b1, even, odd, out var r10, out var r11, out var r12, out var r13);
                if (has2) RowTransform(src + 2 * job.W, a0, a1, b0, b1, even, odd, out r20, out r21, out r22, out r23);
                if (has3) RowTransform(src + 3 * job.W, a0, a1, b0, b1, even, odd, out r30, out r31, out r32, out r33);
                // Then along the columns: B^T (d B).
                StoreColumns(dst, pointStride, r00, r01, r02, r03, r10, r11, r12, r13, r20, r21, r22, r23, r30, r31, r32, r33);
            }
            lane += length;
        }
    }

    /// <summary>
    /// F(3x3, 3x3)'s V[a, b][c, lane] = (B^T d B)[a, b] for each of the block's tiles (lane = tile - t0) and input
    /// channel c, with the tiles in 256-bit vectors along runs of up to <see cref="LargeRunTiles"/> tiles of one tile row.
    /// Each input row of a run's patches is read as two masked 16-float loads from column 3 tw - 1 (columns off the map
    /// read zero). B^T d comes first, on those whole 32-column rows in 512-bit vectors; then each of its five rows is
    /// split into the tiles' patch columns, patch column j one permute of the two vectors (column 3 lane + j), and
    /// multiplied by B. (Splitting the input rows first put both halves of the transform on 256-bit vectors: mel's
    /// 31 x 24 steps took 1.03-1.04x as long.) Runs go two at a time, channel by channel (<see cref="LargeRun"/>), and a
    /// run of 8 tiles shares its 512-bit vectors with the run after it; each channel's row of V is still written run
    /// after run, so a short run's stores past its tiles are overwritten by the next run as before.
    /// </summary>
    /// <remarks>
    /// Not inlined, nor are the other transforms: with dynamic PGO the JIT inlined this one into <see cref="RunPart"/>
    /// but not its own helpers, which it then called with the vectors spilled to the stack around each call
    /// (<c>benchmarks/tools/jit_spills.py</c>; mel b64's F(3x3, 3x3) steps took 1.04-1.06x as long, when it did).
    /// </remarks>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit]
    private static void TransformLargeInput(in Job job, long t0, int count, float* v)
    {
        // Lane t of patch column j reads column 3 t + j of the 32 loaded (lanes 8 .. 15 are not used).
        var column0 = Vector512.Create(0, 3, 6, 9, 12, 15, 18, 21, 0, 0, 0, 0, 0, 0, 0, 0);
        long pointStride = job.VStride;
        for (int lane = 0; lane < count;)
        {
            var first = new LargeRun(in job, t0, lane, count, v);
            lane += first.Length;
            if (lane == count)
            {
                for (int c = 0; c < job.C; c++) first.Channel(in job, pointStride, column0);
                continue;
            }
            // Two runs channel by channel, so that they fill the two halves of each of their V lines one after the
            // other, while the line is in L1. (Run after run, each channel's 25 half lines of the second run had often
            // left L1 since the first wrote their other halves: mel's 31 x 24 and 15 x 24 steps took 1.04-1.08x as long,
            // 19 and 32 channels.)
            var second = new LargeRun(in job, t0, lane, count, v);
            lane += second.Length;
            if (first.Length == LargeRunTiles)
            {
                // The second run's tiles follow in lanes 8-15: each of the pair's V values is one 512-bit store, a whole
                // line where the lane is a multiple of 16 (mel's 8-tile rows; 0.92-0.99 of the time of the stores run by
                // run above, 19 and 32 channels).
                for (int c = 0; c < job.C; c++) LargeRun.ChannelOfPair(ref first, ref second, in job, pointStride, column0);
                continue;
            }
            for (int c = 0; c < job.C; c++)
            {
                first.Channel(in job, pointStride, column0);
                second.Channel(in job, pointStride, column0);
            }
        }
    }

    /// <summary>
    /// One run of <see cref="TransformLargeInput"/>: up to <see cref="LargeRunTiles"/> tiles of one tile row from lane
    /// <c>lane</c>, its five input rows (a row of zeros off the map, the same for every channel), their masks, and where
    /// its V values go; <see cref="Channel"/> transforms one input channel and moves on to the next.
    /// </summary>
    private struct LargeRun
    {
        public readonly int Length;
        private float* _s0, _s1, _s2, _s3, _s4, _dst;
        private readonly long _c0, _c2, _c3, _c4;
        private readonly Vector512<float> _lo, _hi;

        public LargeRun(in Job job, long t0, int lane, int count, float* v)
        {
            Locate(in job, t0 + lane, out long n, out int th, out int tw);
            Length = Math.Min(Math.Min(job.TilesW - tw, LargeRunTiles), count - lane);
            var column = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) + Vector512.Create(3 * tw - 1);
            var width = Vector512.Create((uint)job.W);
            _lo = Vector512.LessThan(column.AsUInt32(), width).AsSingle();
            _hi = Vector512.LessThan((column + Vector512.Create(16)).AsUInt32(), width).AsSingle();
            // Row i of the patches is input row 3 th - 1 + i, or a row of zeros (the same for every channel) off the map:
            // no branch or cleared registers in the channel loop.
            int row0 = 3 * th - 1;
            float* src = job.X + n * job.Plane + (long)row0 * job.W + 3 * tw - 1;
            bool has0 = row0 >= 0, has2 = row0 + 2 < job.H, has3 = row0 + 3 < job.H, has4 = row0 + 4 < job.H;
            _s0 = has0 ? src : ZeroRow;
            _s1 = src + job.W;
            _s2 = has2 ? src + 2 * job.W : ZeroRow;
            _s3 = has3 ? src + 3 * job.W : ZeroRow;
            _s4 = has4 ? src + 4 * job.W : ZeroRow;
            _c0 = has0 ? job.XChannel : 0;
            _c2 = has2 ? job.XChannel : 0;
            _c3 = has3 ? job.XChannel : 0;
            _c4 = has4 ? job.XChannel : 0;
            _dst = v + lane;
        }

        /// <summary>
        /// One channel of two runs of 8 tiles side by side (lanes 0-7 this run's, 8-15 the next's), each value of V one
        /// 512-bit store.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void ChannelOfPair(ref LargeRun a, ref LargeRun b, in Job job, long pointStride, Vector512<int> column0)
        {
            a.Rows(in job, out var la0, out var la1, out var la2, out var la3, out var la4, out var ha0, out var ha1, out var ha2, out var ha3, out var ha4);
            b.Rows(in job, out var lb0, out var lb1, out var lb2, out var lb3, out var lb4, out var hb0, out var hb1, out var hb2, out var hb3, out var hb4);
            // Lanes 8-15 of patch column j take the second run's column 3 (lane - 8) + j.
            var columnB = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 6, 9, 12, 15, 18, 21);
            float* dst = a._dst;
            StoreInputRowPair(dst, pointStride, la0, ha0, lb0, hb0, column0, columnB);
            StoreInputRowPair(dst + 5 * pointStride, pointStride, la1, ha1, lb1, hb1, column0, columnB);
            StoreInputRowPair(dst + 10 * pointStride, pointStride, la2, ha2, lb2, hb2, column0, columnB);
            StoreInputRowPair(dst + 15 * pointStride, pointStride, la3, ha3, lb3, hb3, column0, columnB);
            StoreInputRowPair(dst + 20 * pointStride, pointStride, la4, ha4, lb4, hb4, column0, columnB);
            a.Advance(in job);
            b.Advance(in job);
        }

        /// <summary>
        /// B^T d of this channel's patches, on whole loaded rows (32 columns, 512-bit): intermediate rows 0-4 of every
        /// tile's patch, columns 0-15 in l0-l4 and 16-31 in h0-h4. It also prefetches the next tile row's three new input
        /// rows of this channel (channels' rows lie a plane of the batch apart: too many streams for the hardware prefetcher).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private readonly void Rows(in Job job, out Vector512<float> l0, out Vector512<float> l1, out Vector512<float> l2, out Vector512<float> l3,
            out Vector512<float> l4, out Vector512<float> h0, out Vector512<float> h1, out Vector512<float> h2, out Vector512<float> h3, out Vector512<float> h4)
        {
            Sse.Prefetch0(_s4 + job.W);
            Sse.Prefetch0(_s4 + 2 * job.W);
            Sse.Prefetch0(_s4 + 3 * job.W);
            var a0 = Avx512F.MaskLoad(_s0, _lo, Vector512<float>.Zero);
            var a1 = Avx512F.MaskLoad(_s1, _lo, Vector512<float>.Zero);
            var a2 = Avx512F.MaskLoad(_s2, _lo, Vector512<float>.Zero);
            var a3 = Avx512F.MaskLoad(_s3, _lo, Vector512<float>.Zero);
            var a4 = Avx512F.MaskLoad(_s4, _lo, Vector512<float>.Zero);
            LargeRowOfB(a0, a1, a2, a3, a4, out l0, out l1, out l2, out l3, out l4);
            a0 = Avx512F.MaskLoad(_s0 + 16, _hi, Vector512<float>.Zero);
            a1 = Avx512F.MaskLoad(_s1 + 16, _hi, Vector512<float>.Zero);
            a2 = Avx512F.MaskLoad(_s2 + 16, _hi, Vector512<float>.Zero);
            a3 = Avx512F.MaskLoad(_s3 + 16, _hi, Vector512<float>.Zero);
            a4 = Avx512F.MaskLoad(_s4 + 16, _hi, Vector512<float>.Zero);
            LargeRowOfB(a0, a1, a2, a3, a4, out h0, out h1, out h2, out h3, out h4);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Advance(in Job job)
        {
            _s0 += _c0;
            _s1 += job.XChannel;
            _s2 += _c2;
            _s3 += _c3;
            _s4 += _c4;
            _dst += job.Ld;
        }

        /// <summary>One channel of this run alone, each value of V one 256-bit store.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Channel(in Job job, long pointStride, Vector512<int> column0)
        {
            Rows(in job, out var l0, out var l1, out var l2, out var l3, out var l4, out var h0, out var h1, out var h2, out var h3, out var h4);
            // Then (B^T d) B along each intermediate row: points (a, 0) .. (a, 4).
            StoreInputRow(_dst, pointStride, l0, h0, column0);
            StoreInputRow(_dst + 5 * pointStride, pointStride, l1, h1, column0);
            StoreInputRow(_dst + 10 * pointStride, pointStride, l2, h2, column0);
            StoreInputRow(_dst + 15 * pointStride, pointStride, l3, h3, column0);
            StoreInputRow(_dst + 20 * pointStride, pointStride, l4, h4, column0);
            Advance(in job);
        }
    }

    /// <summary>
    /// Row a of a run's B^T d, its 32 columns in <paramref name="lo"/> and <paramref name="hi"/>, split into its five
    /// patch columns and times B: points (a, 0) .. (a, 4) stored <paramref name="pointStride"/> apart from <paramref name="o"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreInputRow(float* o, long pointStride, Vector512<float> lo, Vector512<float> hi, Vector512<int> column0)
    {
        var one = Vector512<int>.One;
        var d0 = Avx512F.PermuteVar16x32x2(lo, column0, hi).GetLower();
        var d1 = Avx512F.PermuteVar16x32x2(lo, column0 + one, hi).GetLower();
        var d2 = Avx512F.PermuteVar16x32x2(lo, column0 + Vector512.Create(2), hi).GetLower();
        var d3 = Avx512F.PermuteVar16x32x2(lo, column0 + Vector512.Create(3), hi).GetLower();
        var d4 = Avx512F.PermuteVar16x32x2(lo, column0 + Vector512.Create(4), hi).GetLower();
        LargeRowOfB(d0, d1, d2, d3, d4, out var v0, out var v1, out var v2, out var v3, out var v4);
        Vector256.Store(v0, o);
        Vector256.Store(v1, o + pointStride);
        Vector256.Store(v2, o + 2 * pointStride);
        Vector256.Store(v3, o + 3 * pointStride);
        Vector256.Store(v4, o + 4 * pointStride);
    }

    /// <summary>
    /// <see cref="StoreInputRow"/> for two runs of 8 tiles at once: lanes 0-7 from the first run's row (<paramref name="loA"/>,
    /// <paramref name="hiA"/>), lanes 8-15 from the second's, each point one 512-bit store.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreInputRowPair(float* o, long pointStride, Vector512<float> loA, Vector512<float> hiA, Vector512<float> loB,
        Vector512<float> hiB, Vector512<int> columnA, Vector512<int> columnB)
    {
        var upper = Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1).AsSingle();
        var d0 = Vector512.ConditionalSelect(upper, Avx512F.PermuteVar16x32x2(loB, columnB, hiB), Avx512F.PermuteVar16x32x2(loA, columnA, hiA));
        var one = Vector512<int>.One;
        var d1 = Vector512.ConditionalSelect(upper, Avx512F.PermuteVar16x32x2(loB, columnB + one, hiB), Avx512F.PermuteVar16x32x2(loA, columnA + one, hiA));
        var two = Vector512.Create(2);
        var d2 = Vector512.ConditionalSelect(upper, Avx512F.PermuteVar16x32x2(loB, columnB + two, hiB), Avx512F.PermuteVar16x32x2(loA, columnA + two, hiA));
        var three = Vector512.Create(3);
        var d3 = Vector512.ConditionalSelect(upper, Avx512F.PermuteVar16x32x2(loB, columnB + three, hiB), Avx512F.PermuteVar16x32x2(loA, columnA + three, hiA));
        var four = Vector512.Create(4);
        var d4 = Vector512.ConditionalSelect(upper, Avx512F.PermuteVar16x32x2(loB, columnB + four, hiB), Avx512F.PermuteVar16x32x2(loA, columnA + four, hiA));
        LargeRowOfB(d0, d1, d2, d3, d4, out var v0, out var v1, out var v2, out var v3, out var v4);
        Vector512.Store(v0, o);
        Vector512.Store(v1, o + pointStride);
        Vector512.Store(v2, o + 2 * pointStride);
        Vector512.Store(v3, o + 3 * pointStride);
        Vector512.Store(v4, o + 4 * pointStride);
    }

    /// <summary><see cref="LargeRowOfB(Vector512{float}, Vector512{float}, Vector512{float}, Vector512{float}, Vector512{float}, out Vector512{float}, out Vector512{float}, out Vector512{float}, out Vector512{float}, out Vector512{float})"/> on 256-bit vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LargeRowOfB(Vector256<float> d0, Vector256<float> d1, Vector256<float> d2, Vector256<float> d3, Vector256<float> d4,
        out Vector256<float> r0, out Vector256<float> r1, out Vector256<float> r2, out Vector256<float> r3, out Vector256<float> r4)
    {
        var two = Vector256.Create(2f);
        var t = d3 - d1;
        var a = d2 + d3;
        r0 = Vector256.FusedMultiplyAdd(two, d0 - d2, -t);
        r1 = Vector256.FusedMultiplyAdd(two, d1 + d2, a);
        r2 = Vector256.FusedMultiplyAdd(-two, d1, a);
        r3 = t;
        r4 = Vector256.FusedMultiplyAdd(two, t, d4 - d2);
    }

    /// <summary><see cref="LargeRowOfA(Vector512{float}, Vector512{float}, Vector512{float}, Vector512{float}, Vector512{float}, out Vector512{float}, out Vector512{float}, out Vector512{float})"/> on 256-bit vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LargeRowOfA(Vector256<float> m0, Vector256<float> m1, Vector256<float> m2, Vector256<float> m3, Vector256<float> m4,
        out Vector256<float> y0, out Vector256<float> y1, out Vector256<float> y2)
    {
        var p = m1 + m2;
        y0 = m0 + p + m3;
        y1 = Vector256.FusedMultiplyAdd(Vector256.Create(-2f), m3, m1 - m2);
        y2 = Vector256.FusedMultiplyAdd(Vector256.Create(4f), m3, p) + m4;
    }

    /// <summary>
    /// F(3x3, 3x3)'s y = act(A^T M A + bias + residual) for output channels [k0, k1) of tiles [t0, t0 + count) (one
    /// panel), from the products m [point, k - k0, tile - t0], the tiles of a run in 256-bit vectors, or of two runs in
    /// 512-bit vectors where the first has 8 tiles; each output row of a run (3 x length columns) is put together by two
    /// three-way interleaving permutes of its three output columns.
    /// </summary>
    // Not inlined: see TransformLargeInput.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void TransformLargeOutput(in Job job, long t0, int count, int k0, int k1, float* m)
    {
        for (int lane = 0; lane < count;)
        {
            int start = lane;
            var first = new OutputRun(in job, t0, lane, count);
            lane += first.Length;
            if (first.Length == LargeRunTiles && lane < count)
            {
                // The next run's tiles are lanes 8-15 of the same products: both runs' A^T M A on 512-bit vectors, half
                // the loads and transforms of run after run (mel's 31 x 24 and 15 x 24 steps: 0.91-0.95 of the time at
                // 19 channels, 0.96-0.99 at 32).
                var second = new OutputRun(in job, t0, lane, count);
                lane += second.Length;
                TransformLargeOutputPair(in job, first, second, start, k0, k1, m);
                continue;
            }
            TransformLargeOutputRun(in job, first, start, k0, k1, m);
        }
    }

    /// <summary>Where one run of <see cref="TransformLargeOutput"/> writes: its rows and columns on the map, their masks, and its first output.</summary>
    private readonly struct OutputRun
    {
        public readonly int Length, Rows;
        public readonly long At;
        public readonly Vector512<float> Lo, Hi;

        public OutputRun(in Job job, long t0, int lane, int count)
        {
            Locate(in job, t0 + lane, out long n, out int th, out int tw);
            Length = Math.Min(Math.Min(job.TilesW - tw, LargeRunTiles), count - lane);
            int columns = Math.Min(3 * Length, job.W - 3 * tw);
            Rows = Math.Min(3, job.H - 3 * th);
            var iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            Lo = Vector512.LessThan(iota, Vector512.Create(columns)).AsSingle();
            Hi = Vector512.LessThan(iota + Vector512.Create(16), Vector512.Create(columns)).AsSingle();
            At = n * job.Plane + (long)3 * th * job.W + 3 * tw;
        }
    }

    /// <summary>One run of <see cref="TransformLargeOutput"/> (from lane <paramref name="lane"/>), its tiles in 256-bit vectors.</summary>
    private static void TransformLargeOutputRun(in Job job, in OutputRun run, int lane, int k0, int k1, float* m)
    {
        // Output column 3 t + j is lane t of output column j of the tiles: lane t of (j0 | j1) for j = 0 and 1, lane 16 + t
        // (the second source, j2) for j = 2.
        var interleaveLo = Vector512.Create(0, 8, 16, 1, 9, 17, 2, 10, 18, 3, 11, 19, 4, 12, 20, 5);
        var interleaveHi = Vector512.Create(13, 21, 6, 14, 22, 7, 15, 23, 0, 0, 0, 0, 0, 0, 0, 0);
        long pointStride = job.MPoint;
        bool hasBias = job.Bias != null, hasResidual = job.Residual != null;
        var lo = run.Lo;
        var hi = run.Hi;
        int rows = run.Rows;
        for (int k = k0; k < k1; k++)
        {
            float* s = m + (k - k0) * Lanes + lane;
            // A^T M, column by column of the 5 x 5 products: rows 0 .. 2 of the 3 x 5 intermediate.
            RunColumnOfA(s, pointStride, out var t00, out var t10, out var t20);
            RunColumnOfA(s + pointStride, pointStride, out var t01, out var t11, out var t21);
            RunColumnOfA(s + 2 * pointStride, pointStride, out var t02, out var t12, out var t22);
            RunColumnOfA(s + 3 * pointStride, pointStride, out var t03, out var t13, out var t23);
            RunColumnOfA(s + 4 * pointStride, pointStride, out var t04, out var t14, out var t24);
            float bias = hasBias ? job.Bias[k] : 0f;
            long offset = k * job.Channel + run.At;
            float* y = job.Y + offset, residual = hasResidual ? job.Residual + offset : null;
            PrefetchNextTileRow(in job, y, residual);
            StoreLargeRow(y, residual, t00, t01, t02, t03, t04, interleaveLo, interleaveHi, lo, hi, bias, hasBias, job.Kind);
            if (rows > 1)
                StoreLargeRow(y + job.W, hasResidual ? residual + job.W : null, t10, t11, t12, t13, t14, interleaveLo, interleaveHi, lo, hi, bias, hasBias, job.Kind);
            if (rows > 2)
                StoreLargeRow(y + 2 * job.W, hasResidual ? residual + 2 * job.W : null, t20, t21, t22, t23, t24, interleaveLo, interleaveHi, lo, hi, bias, hasBias, job.Kind);
        }
    }

    /// <summary>
    /// Two runs of <see cref="TransformLargeOutput"/> from lane <paramref name="lane"/>, the first of 8 tiles: the products
    /// of both are one 512-bit vector per point (the first run's tiles in lanes 0-7, the second's in 8-15), A^T M A is
    /// taken once on them, and each run's output rows are interleaved from its half.
    /// </summary>
    private static void TransformLargeOutputPair(in Job job, in OutputRun first, in OutputRun second, int lane, int k0, int k1, float* m)
    {
        var interleaveLo = Vector512.Create(0, 8, 16, 1, 9, 17, 2, 10, 18, 3, 11, 19, 4, 12, 20, 5);
        var interleaveHi = Vector512.Create(13, 21, 6, 14, 22, 7, 15, 23, 0, 0, 0, 0, 0, 0, 0, 0);
        // The second run's j2 is lanes 8-15 of the second source.
        var interleaveLoB = Vector512.Create(0, 8, 24, 1, 9, 25, 2, 10, 26, 3, 11, 27, 4, 12, 28, 5);
        var interleaveHiB = Vector512.Create(13, 29, 6, 14, 30, 7, 15, 31, 0, 0, 0, 0, 0, 0, 0, 0);
        long pointStride = job.MPoint;
        bool hasBias = job.Bias != null, hasResidual = job.Residual != null;
        for (int k = k0; k < k1; k++)
        {
            float* s = m + (k - k0) * Lanes + lane;
            ColumnOfA(s, pointStride, out var t00, out var t10, out var t20);
            ColumnOfA(s + pointStride, pointStride, out var t01, out var t11, out var t21);
            ColumnOfA(s + 2 * pointStride, pointStride, out var t02, out var t12, out var t22);
            ColumnOfA(s + 3 * pointStride, pointStride, out var t03, out var t13, out var t23);
            ColumnOfA(s + 4 * pointStride, pointStride, out var t04, out var t14, out var t24);
            float bias = hasBias ? job.Bias[k] : 0f;
            long offsetA = k * job.Channel + first.At, offsetB = k * job.Channel + second.At;
            float* yA = job.Y + offsetA, residualA = hasResidual ? job.Residual + offsetA : null;
            float* yB = job.Y + offsetB, residualB = hasResidual ? job.Residual + offsetB : null;
            // The next two runs' lines (with 8-tile runs, the next two tile rows).
            PrefetchNextTileRow(in job, yB, residualB);
            PrefetchNextTileRow(in job, yB + 3 * job.W, hasResidual ? residualB + 3 * job.W : null);
            for (int row = 0; row < 3; row++)
            {
                if (row >= first.Rows && row >= second.Rows) break;
                var (a0, a1, a2, a3, a4) = row switch
                {
                    0 => (t00, t01, t02, t03, t04),
                    1 => (t10, t11, t12, t13, t14),
                    _ => (t20, t21, t22, t23, t24),
                };
                LargeRowOfA(a0, a1, a2, a3, a4, out var y0, out var y1, out var y2);
                long rowOffset = (long)row * job.W;
                if (row < first.Rows)
                {
                    var left = Vector512.Create(y0.GetLower(), y1.GetLower());
                    float* r = hasResidual ? residualA + rowOffset : null;
                    Avx512F.MaskStore(yA + rowOffset, first.Lo, Row(r, left, y2, interleaveLo, first.Lo, bias, hasBias, job.Kind, 0));
                    Avx512F.MaskStore(yA + rowOffset + 16, first.Hi, Row(r, left, y2, interleaveHi, first.Hi, bias, hasBias, job.Kind, 16));
                }
                if (row < second.Rows)
                {
                    var left = Vector512.Create(y0.GetUpper(), y1.GetUpper());
                    float* r = hasResidual ? residualB + rowOffset : null;
                    Avx512F.MaskStore(yB + rowOffset, second.Lo, Row(r, left, y2, interleaveLoB, second.Lo, bias, hasBias, job.Kind, 0));
                    Avx512F.MaskStore(yB + rowOffset + 16, second.Hi, Row(r, left, y2, interleaveHiB, second.Hi, bias, hasBias, job.Kind, 16));
                }
            }
        }
    }

    /// <summary>The next tile row's output (and residual) lines of a channel, three rows on: rows a plane of the batch apart are too many streams for the hardware prefetcher.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchNextTileRow(in Job job, float* y, float* residual)
    {
        Sse.Prefetch0(y + 3 * job.W);
        Sse.Prefetch0(y + 4 * job.W);
        Sse.Prefetch0(y + 5 * job.W);
        if (residual == null) return;
        Sse.Prefetch0(residual + 3 * job.W);
        Sse.Prefetch0(residual + 4 * job.W);
        Sse.Prefetch0(residual + 5 * job.W);
    }

    /// <summary>A^T times column b of two runs' products on 512-bit vectors (points (0, b) .. (4, b), 5 * <paramref name="pointStride"/> apart).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ColumnOfA(float* s, long pointStride, out Vector512<float> y0, out Vector512<float> y1, out Vector512<float> y2)
    {
        long step = 5 * pointStride;
        LargeRowOfA(Vector512.Load(s), Vector512.Load(s + step), Vector512.Load(s + 2 * step), Vector512.Load(s + 3 * step),
            Vector512.Load(s + 4 * step), out y0, out y1, out y2);
    }

    /// <summary>A^T times column b of a run's products (points (0, b) .. (4, b), 5 * <paramref name="pointStride"/> apart from <paramref name="s"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RunColumnOfA(float* s, long pointStride, out Vector256<float> y0, out Vector256<float> y1, out Vector256<float> y2)
    {
        long step = 5 * pointStride;
        LargeRowOfA(Vector256.Load(s), Vector256.Load(s + step), Vector256.Load(s + 2 * step), Vector256.Load(s + 3 * step),
            Vector256.Load(s + 4 * step), out y0, out y1, out y2);
    }

    /// <summary>One output row of a run: the row (m0 .. m4) of A^T M times A, its three columns interleaved, with the epilogue, stored in the masked columns.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreLargeRow(float* y, float* residual, Vector256<float> m0, Vector256<float> m1, Vector256<float> m2,
        Vector256<float> m3, Vector256<float> m4, Vector512<int> interleaveLo, Vector512<int> interleaveHi, Vector512<float> lo,
        Vector512<float> hi, float bias, bool hasBias, int kind)
    {
        LargeRowOfA(m0, m1, m2, m3, m4, out var y0, out var y1, out var y2);
        var left = Vector512.Create(y0, y1);
        var right = Vector512.Create(y2, y2);
        Avx512F.MaskStore(y, lo, Row(residual, left, right, interleaveLo, lo, bias, hasBias, kind, 0));
        Avx512F.MaskStore(y + 16, hi, Row(residual, left, right, interleaveHi, hi, bias, hasBias, kind, 16));
    }

    /// <summary>
    /// One input row of a run's patches times B: with d_j the value at column 2 tw - 1 + j of lane tw's patch,
    /// (d0 - d2, d1 + d2, d2 - d1, d1 - d3) for every lane. <paramref name="src"/> points at column 2 tw - 1 of the run's first tile.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowTransform(float* src, Vector512<float> a0, Vector512<float> a1, Vector512<float> b0, Vector512<float> b1,
        Vector512<int> even, Vector512<int> odd, out Vector512<float> r0, out Vector512<float> r1, out Vector512<float> r2, out Vector512<float> r3)
    {
        var lo = Avx512F.MaskLoad(src, a0, Vector512<float>.Zero);
        var hi = Avx512F.MaskLoad(src + 16, a1, Vector512<float>.Zero);
        var d0 = Avx512F.PermuteVar16x32x2(lo, even, hi);
        var d1 = Avx512F.PermuteVar16x32x2(lo, odd, hi);
        lo = Avx512F.MaskLoad(src + 2, b0, Vector512<float>.Zero);
        hi = Avx512F.MaskLoad(src + 18, b1, Vector512<float>.Zero);
        var d2 = Avx512F.PermuteVar16x32x2(lo, even, hi);
        var d3 = Avx512F.PermuteVar16x32x2(lo, odd, hi);
        RowOfB(d0, d1, d2, d3, out r0, out r1, out r2, out r3);
    }

    /// <summary>One row of a patch times B: (d0 - d2, d1 + d2, d2 - d1, d1 - d3), lane by lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowOfB(Vector512<float> d0, Vector512<float> d1, Vector512<float> d2, Vector512<float> d3,
        out Vector512<float> r0, out Vector512<float> r1, out Vector512<float> r2, out Vector512<float> r3)
    {
        r0 = d0 - d2;
        r1 = d1 + d2;
        r2 = d2 - d1;
        r3 = d1 - d3;
    }

    /// <summary>
    /// B^T (d B) from the rows r_i = (d B)_i of a patch: point (a, b) is stored at <paramref name="o"/> + (a * 4 + b) *
    /// <paramref name="pointStride"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreColumns(float* o, long pointStride,
        Vector512<float> r00, Vector512<float> r01, Vector512<float> r02, Vector512<float> r03,
        Vector512<float> r10, Vector512<float> r11, Vector512<float> r12, Vector512<float> r13,
        Vector512<float> r20, Vector512<float> r21, Vector512<float> r22, Vector512<float> r23,
        Vector512<float> r30, Vector512<float> r31, Vector512<float> r32, Vector512<float> r33)
    {
        Vector512.Store(r00 - r20, o); o += pointStride;
        Vector512.Store(r01 - r21, o); o += pointStride;
        Vector512.Store(r02 - r22, o); o += pointStride;
        Vector512.Store(r03 - r23, o); o += pointStride;
        Vector512.Store(r10 + r20, o); o += pointStride;
        Vector512.Store(r11 + r21, o); o += pointStride;
        Vector512.Store(r12 + r22, o); o += pointStride;
        Vector512.Store(r13 + r23, o); o += pointStride;
        Vector512.Store(r20 - r10, o); o += pointStride;
        Vector512.Store(r21 - r11, o); o += pointStride;
        Vector512.Store(r22 - r12, o); o += pointStride;
        Vector512.Store(r23 - r13, o); o += pointStride;
        Vector512.Store(r10 - r30, o); o += pointStride;
        Vector512.Store(r11 - r31, o); o += pointStride;
        Vector512.Store(r12 - r32, o); o += pointStride;
        Vector512.Store(r13 - r33, o);
    }

    /// <summary>
    /// y = act(A^T M A + bias + residual) for output channels [k0, k1) of tiles [t0, t0 + count) (one panel), from the
    /// products m [point, k - k0, tile - t0]; each run written as two output rows of 2 x length columns.
    /// </summary>
    // Not inlined: see TransformLargeInput.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void TransformOutput(in Job job, long t0, int count, int k0, int k1, float* m)
    {
        var iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var interleaveLo = Vector512.Create(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        var interleaveHi = Vector512.Create(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        long pointStride = job.MPoint;
        bool hasBias = job.Bias != null, hasResidual = job.Residual != null;
        for (int lane = 0; lane < count;)
        {
            Locate(in job, t0 + lane, out long n, out int th, out int tw);
            int length = Math.Min(Math.Min(job.TilesW - tw, RunTiles), count - lane);
            int columns = Math.Min(2 * length, job.W - 2 * tw);
            var lo = Vector512.LessThan(iota, Vector512.Create(columns)).AsSingle();
            var hi = Vector512.LessThan(iota + Vector512.Create(16), Vector512.Create(columns)).AsSingle();
            bool second = 2 * th + 1 < job.H;
            if (job.Pooled && !second)
            {
                // The pool's floor mode drops a last odd row: nothing of this run is kept.
                lane += length;
                continue;
            }
            long at = n * job.Plane + (long)2 * th * job.W + 2 * tw;
            // Pooled, tile row th is output row th of a plane H / 2 rows high.
            long pooledAt = (n * (job.H / 2) + th) * job.W + 2 * tw;
            for (int k = k0; k < k1; k++)
            {
                // OutputTile's arithmetic, written out: called here, the JIT made this loop about 10 % slower (mel b64).
                float* s = m + (k - k0) * Lanes + lane;
                // A^T M: rows 0 and 1 of the 2 x 4 intermediate, point by point along the tile's columns.
                Vector512<float> m0, m1, m2, m3;
                m0 = Vector512.Load(s); m1 = Vector512.Load(s + 4 * pointStride); m2 = Vector512.Load(s + 8 * pointStride); m3 = Vector512.Load(s + 12 * pointStride);
                Vector512<float> t00 = m0 + m1 + m2, t10 = m1 - m2 - m3;
                s += pointStride;
                m0 = Vector512.Load(s); m1 = Vector512.Load(s + 4 * pointStride); m2 = Vector512.Load(s + 8 * pointStride); m3 = Vector512.Load(s + 12 * pointStride);
                Vector512<float> t01 = m0 + m1 + m2, t11 = m1 - m2 - m3;
                s += pointStride;
                m0 = Vector512.Load(s); m1 = Vector512.Load(s + 4 * pointStride); m2 = Vector512.Load(s + 8 * pointStride); m3 = Vector512.Load(s + 12 * pointStride);
                Vector512<float> t02 = m0 + m1 + m2, t12 = m1 - m2 - m3;
                s += pointStride;
                m0 = Vector512.Load(s); m1 = Vector512.Load(s + 4 * pointStride); m2 = Vector512.Load(s + 8 * pointStride); m3 = Vector512.Load(s + 12 * pointStride);
                Vector512<float> t03 = m0 + m1 + m2, t13 = m1 - m2 - m3;
                // (A^T M) A: the tile's outputs (0, 0), (0, 1), (1, 0), (1, 1), one lane per tile.
                var y00 = t00 + t01 + t02;
                var y01 = t01 - t02 - t03;
                var y10 = t10 + t11 + t12;
                var y11 = t11 - t12 - t13;
                float bias = hasBias ? job.Bias[k] : 0f;
                long offset = k * job.Channel + at;
                // The next tile row's output and residual lines of this channel (rows of channels a plane of the batch
                // apart: too many streams for the hardware prefetcher); about 1 % of a mel b64 pass.
                if (!job.Pooled)
                {
                    Sse.Prefetch0(job.Y + offset + 2 * job.W);
                    Sse.Prefetch0(job.Y + offset + 3 * job.W);
                }
                if (hasResidual)
                {
                    Sse.Prefetch0(job.Residual + offset + 2 * job.W);
                    Sse.Prefetch0(job.Residual + offset + 3 * job.W);
                }
                if (job.Pooled)
                {
                    float* res = hasResidual ? job.Residual + offset : null;
                    var top = Row(res, y00, y01, interleaveLo, lo, bias, hasBias, job.Kind, 0);
                    var bottom = Row(res == null ? null : res + job.W, y10, y11, interleaveLo, lo, bias, hasBias, job.Kind, 0);
                    float* o = job.Y + k * job.PooledChannel + pooledAt;
                    Avx512F.MaskStore(o, lo, Vector512.Max(top, bottom));
                    top = Row(res, y00, y01, interleaveHi, hi, bias, hasBias, job.Kind, 16);
                    bottom = Row(res == null ? null : res + job.W, y10, y11, interleaveHi, hi, bias, hasBias, job.Kind, 16);
                    Avx512F.MaskStore(o + 16, hi, Vector512.Max(top, bottom));
                    continue;
                }
                StoreRow(job.Y + offset, hasResidual ? job.Residual + offset : null, y00, y01, interleaveLo, interleaveHi, lo, hi, bias, hasBias, job.Kind);
                if (second)
                    StoreRow(job.Y + offset + job.W, hasResidual ? job.Residual + offset + job.W : null, y10, y11, interleaveLo, interleaveHi, lo, hi, bias, hasBias, job.Kind);
            }
            lane += length;
        }
    }

    /// <summary>A^T M A for the 16 lanes at <paramref name="s"/> (point (a, b) at s + (a * 4 + b) * <paramref name="pointStride"/>): a tile's four outputs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OutputTile(float* s, long pointStride, out Vector512<float> y00, out Vector512<float> y01, out Vector512<float> y10,
        out Vector512<float> y11)
    {
        // A^T M: rows 0 and 1 of the 2 x 4 intermediate, point by point along the tile's columns.
        Vector512<float> m0, m1, m2, m3;
        m0 = Vector512.Load(s); m1 = Vector512.Load(s + 4 * pointStride); m2 = Vector512.Load(s + 8 * pointStride); m3 = Vector512.Load(s + 12 * pointStride);
        Vector512<float> t00 = m0 + m1 + m2, t10 = m1 - m2 - m3;
        s += pointStride;
        m0 = Vector512.Load(s); m1 = Vector512.Load(s + 4 * pointStride); m2 = Vector512.Load(s + 8 * pointStride); m3 = Vector512.Load(s + 12 * pointStride);
        Vector512<float> t01 = m0 + m1 + m2, t11 = m1 - m2 - m3;
        s += pointStride;
        m0 = Vector512.Load(s); m1 = Vector512.Load(s + 4 * pointStride); m2 = Vector512.Load(s + 8 * pointStride); m3 = Vector512.Load(s + 12 * pointStride);
        Vector512<float> t02 = m0 + m1 + m2, t12 = m1 - m2 - m3;
        s += pointStride;
        m0 = Vector512.Load(s); m1 = Vector512.Load(s + 4 * pointStride); m2 = Vector512.Load(s + 8 * pointStride); m3 = Vector512.Load(s + 12 * pointStride);
        Vector512<float> t03 = m0 + m1 + m2, t13 = m1 - m2 - m3;
        // (A^T M) A: the tile's outputs (0, 0), (0, 1), (1, 0), (1, 1), one lane per tile.
        y00 = t00 + t01 + t02;
        y01 = t01 - t02 - t03;
        y10 = t10 + t11 + t12;
        y11 = t11 - t12 - t13;
    }

    /// <summary>One output row of a run: the tiles' left and right outputs interleaved, with the epilogue, stored in the masked columns.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* y, float* residual, Vector512<float> left, Vector512<float> right, Vector512<int> interleaveLo,
        Vector512<int> interleaveHi, Vector512<float> lo, Vector512<float> hi, float bias, bool hasBias, int kind)
    {
        Avx512F.MaskStore(y, lo, Row(residual, left, right, interleaveLo, lo, bias, hasBias, kind, 0));
        Avx512F.MaskStore(y + 16, hi, Row(residual, left, right, interleaveHi, hi, bias, hasBias, kind, 16));
    }

    /// <summary>
    /// Columns <paramref name="first"/> .. + 15 of a run's output row (interleaving the tiles' left and right outputs
    /// by <paramref name="interleave"/>) with bias, residual (read in the columns of <paramref name="mask"/>) and activation.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Row(float* residual, Vector512<float> left, Vector512<float> right, Vector512<int> interleave,
        Vector512<float> mask, float bias, bool hasBias, int kind, int first)
    {
        bool hasResidual = residual != null;
        var values = Avx512F.PermuteVar16x32x2(left, interleave, right);
        var r = hasResidual ? Avx512F.MaskLoad(residual + first, mask, Vector512<float>.Zero) : default;
        return ConvKernels.EpilogueVector(values, bias, hasBias, r, hasResidual, kind);
    }
}
