using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// A stride-1 "same" convolution over a map of at most 24 output positions (one sample's 3 x 6 and 1 x 6 maps at batch 1), written
/// position-major (y [positions, K], each position's channels contiguous) as Y^T = X^T W^T: the positions are the
/// micro-kernel's rows, read in place from x, and the output channels its lanes (32 at a time, up to 48 in a last tile),
/// so the result leaves the registers
/// with bias, residual and activation applied in whole vectors. The implicit GEMM, channel-major, fills a 32-lane panel
/// for these few columns, repacks it and writes the transposed tile back one float at a time, which at batch 1 cost as
/// long as the multiplications.
/// </summary>
/// <remarks>
/// x may be channel-major ([C, positions], the implicit GEMM's layout) or position-major (this kernel's output); the
/// residual, when given, is position-major. Taps that no position reaches are dropped; a tap that falls off the map for
/// some position reads zeros there. Each output is one dot product, taps outer and input channels inner, so results do
/// not depend on the thread count (the kernel runs on the calling thread: its work is a few microseconds).
/// </remarks>
internal static unsafe class NarrowMapConv
{
    /// <summary>
    /// The most output positions (batch times map size) this path takes: three groups of 8 kernel rows. On 36 and 48
    /// positions this kernel is faster than the implicit GEMM in a harness (one thread, µs: 3x3 32->32 on 6 x 6 6.2-7.3
    /// against 8.0-8.3, 19->19 3.6 against 3.6-3.7; 1x1 76->76 on 8 x 1 x 6 5.9 against 6.6), but plans that took it
    /// there ran no faster: MNIST batch 8 switched layouts between its 1 x 6 steps (moving 128 x 48 values to
    /// channel-major took 10 µs) and its pruned 76->76 steps took 8.9 against 6.6 µs; at batch 1 only the 32-channel
    /// 6 x 6 step gained.
    /// </summary>
    internal const int MaxPositions = 24;
    private const int Rows = Gemm.PanelRows;
    private const int Lanes = Gemm.PanelColumns;

    /// <summary>Whether inference plans use this path (tests turn it off to reach the implicit GEMM's narrow panels).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>
    /// True for a stride-1 convolution whose output is the size of its input and has at most <see cref="MaxPositions"/>
    /// positions, where the 512-bit kernels run or the 256-bit ones (<see cref="Gemm.Runs256"/>: tiles of at most 16
    /// channels, <see cref="Tile256{TRows, TVectors}"/>).
    /// </summary>
    internal static bool Supports(in Conv2dParams p) =>
        (Gemm.Runs512 || Gemm.Runs256) && p.Groups == 1
        && p.StrideH == 1 && p.StrideW == 1 && p.P == p.H && p.Q == p.W && (long)p.N * p.P * p.Q <= MaxPositions;

    /// <summary>The weights packed once for <see cref="Forward"/>, with each tap's source positions and a block of zeros.</summary>
    internal sealed class Weights
    {
        private readonly float[] _packed, _zeros;
        private readonly int[] _sources;
        // Per group of rows, kept tap and row: where the row reads its channels for the input last given to RowPointers.
        private readonly nint[] _rowPointers;
        private float* _rowsInput;
        private long _rowsStride = -1;
        private readonly int _positions;

        internal Weights(ReadOnlySpan<float> w, in Conv2dParams p)
        {
            int positions = p.N * p.P * p.Q, rs = p.R * p.S;
            _positions = positions;
            // Per kept tap (r, s), the input position each output position reads, or -1 where it falls off the map.
            var sources = new List<int>();
            var kept = new List<int>();
            for (int r = 0; r < p.R; r++)
                for (int s = 0; s < p.S; s++)
                {
                    int dh = r * p.DilationH - p.PadH, dw = s * p.DilationW - p.PadW;
                    var tap = new int[positions];
                    bool live = false;
                    for (int j = 0; j < positions; j++)
                    {
                        int n = j / (p.P * p.Q), i = j / p.Q % p.P + dh, c = j % p.Q + dw;
                        bool inside = (uint)i < (uint)p.H && (uint)c < (uint)p.W;
                        tap[j] = inside ? (n * p.H + i) * p.W + c : -1;
                        live |= inside;
                    }
                    if (!live) continue;
                    kept.Add(r * p.S + s);
                    sources.AddRange(tap);
                }
            Taps = kept.Count;
            _rowPointers = GC.AllocateArray<nint>(Math.Max(1, (positions + Rows - 1) / Rows * Taps * Rows), pinned: true);
            _sources = GC.AllocateArray<int>(Math.Max(1, sources.Count), pinned: true);
            sources.CopyTo(_sources);
            _zeros = GC.AllocateArray<float>(Math.Max(1, p.C * positions), pinned: true);
            // The live weights as [K, taps * C], taps outer, then transposed into B micro-panels of 32 output channels.
            int depth = Taps * p.C;
            var rows = new float[Math.Max(1, p.K * depth)];
            for (int k = 0; k < p.K; k++)
                for (int t = 0; t < Taps; t++)
                    for (int c = 0; c < p.C; c++)
                        rows[k * depth + t * p.C + c] = w[(k * p.C + c) * rs + kept[t]];
            _packed = GC.AllocateArray<float>((int)Math.Max(1, Gemm.PackedColumnsLength(p.K, depth)), pinned: true);
            if (depth > 0)
                fixed (float* src = rows, dst = _packed)
                    Gemm.PackColumnsOfTranspose(src, depth, p.K, depth, dst);
        }

        /// <summary>Kept taps out of R * S.</summary>
        internal int Taps { get; }

        /// <summary>The live weights transposed into B micro-panels of 32 output channels, taps outer (the arrays here are pinned).</summary>
        internal float* Packed => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_packed));

        /// <summary>Per kept tap, the input position each output position reads, or -1.</summary>
        internal int* Sources => (int*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_sources));

        /// <summary>C x positions zeros, read by the rows whose tap falls off the map.</summary>
        internal float* Zeros => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_zeros));

        /// <summary>
        /// Per group of at most 8 output positions (<see cref="Group"/>), kept tap t and row r, at [(group * taps + t) * 8
        /// + r]: where that row reads its channels in <paramref name="x"/> (rows <paramref name="rowStride"/> floats apart),
        /// or the zeros where the tap falls off the map or the group has fewer rows. Built when x or its layout changes, so
        /// a plan, whose buffers stay put, builds it once (at batch 1 its 216 pointers for a 3 x 6 map took about as long as
        /// the 1x1 steps' arithmetic). A plan runs one pass at a time, so the table is not shared between threads.
        /// </summary>
        internal float** RowPointers(float* x, long rowStride)
        {
            float** rows = (float**)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_rowPointers));
            if (x == _rowsInput && rowStride == _rowsStride) return rows;
            int groups = (_positions + Rows - 1) / Rows;
            int* sources = Sources;
            float* zeros = Zeros;
            for (int g = 0; g < groups; g++)
            {
                var (r0, n) = Group(g, _positions);
                for (int t = 0; t < Taps; t++)
                    for (int r = 0; r < Rows; r++)
                    {
                        int source = r < n ? sources[t * _positions + r0 + r] : -1;
                        rows[(g * Taps + t) * Rows + r] = source >= 0 ? x + source * rowStride : zeros;
                    }
            }
            _rowsInput = x;
            _rowsStride = rowStride;
            return rows;
        }
    }

    /// <summary>
    /// Group <paramref name="g"/> of the output positions: its first position and its size, groups of at most 8 as even as
    /// they come (18 = 6 + 6 + 6 rather than 8 + 8 + 2: a 2-row tile loads as much per multiply-add as it computes).
    /// </summary>
    private static (int First, int Count) Group(int g, int positions)
    {
        int groups = (positions + Rows - 1) / Rows;
        int r0 = g * positions / groups;
        return (r0, (g + 1) * positions / groups - r0);
    }

    private struct Job
    {
        public float* Bias, Y, Residual;
        public int C, K, Taps;
        // Floats between one input channel and the next at the same position (1 position-major, positions channel-major).
        public long Depth;
        public int Kind;
    }

    /// <summary>
    /// y [positions, K] = act(conv2d(x, w) + bias + residual), position-major; x channel-major [C, positions] or, with
    /// <paramref name="xPositionMajor"/>, position-major [positions, C]; residual (position-major) and bias may be null;
    /// <paramref name="kind"/>: 0 no activation, 1 ReLU, 2 Hardswish.
    /// </summary>
    [SkipLocalsInit]
    internal static void Forward(float* x, bool xPositionMajor, Weights weights, float* bias, float* y, in Conv2dParams p, float* residual, int kind)
    {
        int positions = p.N * p.P * p.Q;
        var job = new Job
        {
            Bias = bias, Y = y, Residual = residual, C = p.C, K = p.K, Taps = weights.Taps,
            Depth = xPositionMajor ? 1 : positions, Kind = kind,
        };
        long rowStride = xPositionMajor ? p.C : 1;
        float* packed = weights.Packed;
        long panel = (long)Lanes * job.Taps * p.C;
        float** table = weights.RowPointers(x, rowStride);
        int groups = (positions + Rows - 1) / Rows;
        bool wide = Gemm.Runs512;
        for (int g = 0; g < groups; g++)
        {
            var (r0, n) = Group(g, positions);
            // Per tap, where each of the group's rows reads its channels (the zeros where the tap falls off the map).
            float** rows = table + (long)g * job.Taps * Rows;
            if (!wide)
            {
                Tiles256(ref job, rows, packed, panel, r0, n);
                continue;
            }
            for (int kb = 0; kb < p.K;)
            {
                int count = TileChannels(p.K - kb);
                switch (n)
                {
                    case 1: Width<Gemm.N1>(ref job, rows, packed, panel, r0, kb, count); break;
                    case 2: Width<Gemm.N2>(ref job, rows, packed, panel, r0, kb, count); break;
                    case 3: Width<Gemm.N3>(ref job, rows, packed, panel, r0, kb, count); break;
                    case 4: Width<Gemm.N4>(ref job, rows, packed, panel, r0, kb, count); break;
                    case 5: Width<Gemm.N5>(ref job, rows, packed, panel, r0, kb, count); break;
                    case 6: Width<Gemm.N6>(ref job, rows, packed, panel, r0, kb, count); break;
                    case 7: Width<Gemm.N7>(ref job, rows, packed, panel, r0, kb, count); break;
                    default: Width<Gemm.N8>(ref job, rows, packed, panel, r0, kb, count); break;
                }
                kb += count;
            }
        }
    }

    private struct W8 : Gemm.IConstant { public static int Value => 8; }
    private struct W16 : Gemm.IConstant { public static int Value => 16; }
    private struct W24 : Gemm.IConstant { public static int Value => 24; }
    private struct W32 : Gemm.IConstant { public static int Value => 32; }
    private struct W40 : Gemm.IConstant { public static int Value => 40; }
    private struct W48 : Gemm.IConstant { public static int Value => 48; }

    /// <summary>
    /// The output channels of the next tile when <paramref name="left"/> remain: 32 (a panel), or all that are left when
    /// they fit one panel and at most 16 more, so that a width of 32 n + r with r up to 16 ends in one tile of 32 + r
    /// (38: 40 lanes, 76: 32 + 48 lanes) instead of a tile of 32 and one of r, which loaded the rows' inputs a second
    /// time for r lanes.
    /// </summary>
    private static int TileChannels(int left) => left <= Lanes + 16 ? left : Lanes;

    /// <summary>The tile for <paramref name="count"/> channels, in 8s: 8, 24 and 40 end in a 256-bit vector, at twice the rate of a 512-bit one.</summary>
    private static void Width<TRows>(ref Job job, float** rows, float* packed, long panel, int r0, int kb, int count) where TRows : struct, Gemm.IConstant
    {
        if (count > 40) Tile<TRows, W48>(ref job, rows, packed, panel, r0, kb, count);
        else if (count > 32) Tile<TRows, W40>(ref job, rows, packed, panel, r0, kb, count);
        else if (count > 24) Tile<TRows, W32>(ref job, rows, packed, panel, r0, kb, count);
        else if (count > 16) Tile<TRows, W24>(ref job, rows, packed, panel, r0, kb, count);
        else if (count > 8) Tile<TRows, W16>(ref job, rows, packed, panel, r0, kb, count);
        else Tile<TRows, W8>(ref job, rows, packed, panel, r0, kb, count);
    }

    /// <summary>Where output channel <paramref name="lane"/>'s weights start in the B micro-panels (32 channels each, <paramref name="panel"/> floats apart).</summary>
    private static float* Lane(float* packed, long panel, int lane) => packed + lane / Lanes * panel + lane % Lanes;

    /// <summary>
    /// Rows [r0, r0 + TRows) by output channels [kb, kb + count) (computed in TWidth lanes: up to three 512-bit vectors
    /// of 16, then a 256-bit one of 8, each read from its B micro-panel): per tap, per input channel, one broadcast per row
    /// and one B row of TWidth lanes; then act(sum + bias + residual) stored in whole vectors.
    /// </summary>
    private static void Tile<TRows, TWidth>(ref Job job, float** rows, float* packed, long panel, int r0, int kb, int count)
        where TRows : struct, Gemm.IConstant where TWidth : struct, Gemm.IConstant
    {
        int n = TRows.Value, width = TWidth.Value;
        // Lanes 0-15, 16-31 and 32-47 in 512-bit vectors, the last 8 of 8, 24 or 40 in a 256-bit one.
        bool lo = width >= 16, hi = width >= 32, mid = width >= 48, half = width % 16 == 8;
        int halfAt = width / 16 * 16;
        float* b0 = Lane(packed, panel, kb), b1 = Lane(packed, panel, kb + 16), b2 = Lane(packed, panel, kb + 32);
        float* be = Lane(packed, panel, kb + halfAt);
        Vector512<float> l0 = default, l1 = default, l2 = default, l3 = default, l4 = default, l5 = default, l6 = default, l7 = default;
        Vector512<float> h0 = default, h1 = default, h2 = default, h3 = default, h4 = default, h5 = default, h6 = default, h7 = default;
        Vector512<float> m0 = default, m1 = default, m2 = default, m3 = default, m4 = default, m5 = default, m6 = default, m7 = default;
        Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default, e4 = default, e5 = default, e6 = default, e7 = default;
        long depth = job.Depth;
        int channels = job.C;
        for (int t = 0; t < job.Taps; t++)
        {
            float** tap = rows + t * Rows;
            float* a0 = tap[0], a1 = tap[1], a2 = tap[2], a3 = tap[3], a4 = tap[4], a5 = tap[5], a6 = tap[6], a7 = tap[7];
            long o = 0;
            for (int c = 0; c < channels; c++, o += depth, b0 += Lanes, b1 += Lanes, b2 += Lanes, be += Lanes)
            {
                var bl = lo ? Vector512.Load(b0) : default;
                var bh = hi ? Vector512.Load(b1) : default;
                var bm = mid ? Vector512.Load(b2) : default;
                var bq = half ? Vector256.Load(be) : default;
                Row(a0 + o, bl, bh, bm, bq, ref l0, ref h0, ref m0, ref e0, lo, hi, mid, half);
                if (n > 1) Row(a1 + o, bl, bh, bm, bq, ref l1, ref h1, ref m1, ref e1, lo, hi, mid, half);
                if (n > 2) Row(a2 + o, bl, bh, bm, bq, ref l2, ref h2, ref m2, ref e2, lo, hi, mid, half);
                if (n > 3) Row(a3 + o, bl, bh, bm, bq, ref l3, ref h3, ref m3, ref e3, lo, hi, mid, half);
                if (n > 4) Row(a4 + o, bl, bh, bm, bq, ref l4, ref h4, ref m4, ref e4, lo, hi, mid, half);
                if (n > 5) Row(a5 + o, bl, bh, bm, bq, ref l5, ref h5, ref m5, ref e5, lo, hi, mid, half);
                if (n > 6) Row(a6 + o, bl, bh, bm, bq, ref l6, ref h6, ref m6, ref e6, lo, hi, mid, half);
                if (n > 7) Row(a7 + o, bl, bh, bm, bq, ref l7, ref h7, ref m7, ref e7, lo, hi, mid, half);
            }
        }
        var store = new Store(kb, count, halfAt);
        store.Row(ref job, r0, l0, h0, m0, e0, lo, hi, mid, half);
        if (n > 1) store.Row(ref job, r0 + 1, l1, h1, m1, e1, lo, hi, mid, half);
        if (n > 2) store.Row(ref job, r0 + 2, l2, h2, m2, e2, lo, hi, mid, half);
        if (n > 3) store.Row(ref job, r0 + 3, l3, h3, m3, e3, lo, hi, mid, half);
        if (n > 4) store.Row(ref job, r0 + 4, l4, h4, m4, e4, lo, hi, mid, half);
        if (n > 5) store.Row(ref job, r0 + 5, l5, h5, m5, e5, lo, hi, mid, half);
        if (n > 6) store.Row(ref job, r0 + 6, l6, h6, m6, e6, lo, hi, mid, half);
        if (n > 7) store.Row(ref job, r0 + 7, l7, h7, m7, e7, lo, hi, mid, half);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row(float* a, Vector512<float> bl, Vector512<float> bh, Vector512<float> bm, Vector256<float> bq,
        ref Vector512<float> l, ref Vector512<float> h, ref Vector512<float> m, ref Vector256<float> e, bool lo, bool hi, bool mid, bool half)
    {
        // The row's value, broadcast straight from memory: inside the multiply-add ({1to16}, {1to8}) where one vector
        // alone takes it, since a separate broadcast takes a slot of the vector pipes here (16 lanes, 32 channels on
        // 6 x 6: 4.3 -> 3.4 µs); otherwise once, its lower half serving the 256-bit lanes (a float passed by value had
        // been broadcast from a register once per width: 3x3 19->19 on 3 x 6, 24 lanes, 2.1 -> 1.8 µs).
        if (lo && !hi && !half)
        {
            l = Vector512.FusedMultiplyAdd(Vector512.Create(*a), bl, l);
            return;
        }
        if (lo)
        {
            var v = Vector512.Create(*a);
            l = Vector512.FusedMultiplyAdd(v, bl, l);
            if (hi) h = Vector512.FusedMultiplyAdd(v, bh, h);
            if (mid) m = Vector512.FusedMultiplyAdd(v, bm, m);
            if (half) e = Vector256.FusedMultiplyAdd(v.GetLower(), bq, e);
        }
        else if (half) e = Vector256.FusedMultiplyAdd(Vector256.Create(*a), bq, e);
    }

    /// <summary>
    /// The group's tiles at 256 bits (16 vector registers): 16 output channels a tile for up to 6 rows (12 accumulators),
    /// 8 for 7 or 8 rows, the last tile's channels past K masked when stored.
    /// </summary>
    private static void Tiles256(ref Job job, float** rows, float* packed, long panel, int r0, int n)
    {
        int step = n <= 6 ? 16 : 8;
        for (int kb = 0; kb < job.K; kb += step)
        {
            int count = Math.Min(step, job.K - kb);
            bool two = count > 8;
            switch (n)
            {
                case 1: if (two) Tile256<Gemm.N1, Gemm.N2>(ref job, rows, packed, panel, r0, kb, count); else Tile256<Gemm.N1, Gemm.N1>(ref job, rows, packed, panel, r0, kb, count); break;
                case 2: if (two) Tile256<Gemm.N2, Gemm.N2>(ref job, rows, packed, panel, r0, kb, count); else Tile256<Gemm.N2, Gemm.N1>(ref job, rows, packed, panel, r0, kb, count); break;
                case 3: if (two) Tile256<Gemm.N3, Gemm.N2>(ref job, rows, packed, panel, r0, kb, count); else Tile256<Gemm.N3, Gemm.N1>(ref job, rows, packed, panel, r0, kb, count); break;
                case 4: if (two) Tile256<Gemm.N4, Gemm.N2>(ref job, rows, packed, panel, r0, kb, count); else Tile256<Gemm.N4, Gemm.N1>(ref job, rows, packed, panel, r0, kb, count); break;
                case 5: if (two) Tile256<Gemm.N5, Gemm.N2>(ref job, rows, packed, panel, r0, kb, count); else Tile256<Gemm.N5, Gemm.N1>(ref job, rows, packed, panel, r0, kb, count); break;
                case 6: if (two) Tile256<Gemm.N6, Gemm.N2>(ref job, rows, packed, panel, r0, kb, count); else Tile256<Gemm.N6, Gemm.N1>(ref job, rows, packed, panel, r0, kb, count); break;
                case 7: Tile256<Gemm.N7, Gemm.N1>(ref job, rows, packed, panel, r0, kb, count); break;
                default: Tile256<Gemm.N8, Gemm.N1>(ref job, rows, packed, panel, r0, kb, count); break;
            }
        }
    }

    /// <summary>
    /// <see cref="Tile{TRows, TWidth}"/> at 256 bits: rows [r0, r0 + TRows) by output channels [kb, kb + count) in TVectors
    /// vectors of 8 (count at most 8 TVectors, the lanes past it computed on the packed panels' zeros and not stored). The
    /// same multiply-adds in the same order, so the 512-bit tile's bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Tile256<TRows, TVectors>(ref Job job, float** rows, float* packed, long panel, int r0, int kb, int count)
        where TRows : struct, Gemm.IConstant where TVectors : struct, Gemm.IConstant
    {
        int n = TRows.Value;
        bool two = TVectors.Value == 2;
        // A tile of 16 starts at a multiple of 16, so both its vectors lie in one 32-channel panel.
        float* b = Lane(packed, panel, kb);
        Vector256<float> l0 = default, l1 = default, l2 = default, l3 = default, l4 = default, l5 = default, l6 = default, l7 = default;
        Vector256<float> h0 = default, h1 = default, h2 = default, h3 = default, h4 = default, h5 = default;
        long depth = job.Depth;
        int channels = job.C;
        for (int t = 0; t < job.Taps; t++)
        {
            float** tap = rows + t * Rows;
            float* a0 = tap[0], a1 = tap[1], a2 = tap[2], a3 = tap[3], a4 = tap[4], a5 = tap[5], a6 = tap[6], a7 = tap[7];
            long o = 0;
            for (int c = 0; c < channels; c++, o += depth, b += Lanes)
            {
                var bl = Vector256.Load(b);
                var bh = two ? Vector256.Load(b + 8) : default;
                Row256(a0 + o, bl, bh, ref l0, ref h0, two);
                if (n > 1) Row256(a1 + o, bl, bh, ref l1, ref h1, two);
                if (n > 2) Row256(a2 + o, bl, bh, ref l2, ref h2, two);
                if (n > 3) Row256(a3 + o, bl, bh, ref l3, ref h3, two);
                if (n > 4) Row256(a4 + o, bl, bh, ref l4, ref h4, two);
                if (n > 5) Row256(a5 + o, bl, bh, ref l5, ref h5, two);
                if (n > 6) l6 = Vector256.FusedMultiplyAdd(Vector256.Create(*(a6 + o)), bl, l6);
                if (n > 7) l7 = Vector256.FusedMultiplyAdd(Vector256.Create(*(a7 + o)), bl, l7);
            }
        }
        var first = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(count)).AsSingle();
        var second = Vector256.LessThan(Vector256.Create(8, 9, 10, 11, 12, 13, 14, 15), Vector256.Create(count)).AsSingle();
        var lanes = new StoreLanes(first, second, count >= 8, count >= 16);
        Store256(ref job, r0, kb, l0, h0, lanes, two);
        if (n > 1) Store256(ref job, r0 + 1, kb, l1, h1, lanes, two);
        if (n > 2) Store256(ref job, r0 + 2, kb, l2, h2, lanes, two);
        if (n > 3) Store256(ref job, r0 + 3, kb, l3, h3, lanes, two);
        if (n > 4) Store256(ref job, r0 + 4, kb, l4, h4, lanes, two);
        if (n > 5) Store256(ref job, r0 + 5, kb, l5, h5, lanes, two);
        if (n > 6) Store256(ref job, r0 + 6, kb, l6, default, lanes, false);
        if (n > 7) Store256(ref job, r0 + 7, kb, l7, default, lanes, false);
    }

    /// <summary>A 256-bit tile's two vectors' lane masks, and whether each is whole (stored and loaded without a mask).</summary>
    private readonly record struct StoreLanes(Vector256<float> First, Vector256<float> Second, bool FirstWhole, bool SecondWhole);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row256(float* a, Vector256<float> bl, Vector256<float> bh, ref Vector256<float> l, ref Vector256<float> h, bool two)
    {
        var v = Vector256.Create(*a);
        l = Vector256.FusedMultiplyAdd(v, bl, l);
        if (two) h = Vector256.FusedMultiplyAdd(v, bh, h);
    }

    /// <summary>
    /// One position's channels [kb, kb + 8 or 16) with the epilogue, only those under the masks: whole vectors without
    /// one (AVX2's masked store costs several times a store on AMD's cores).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store256(ref Job job, int position, int kb, Vector256<float> l, Vector256<float> h, in StoreLanes lanes, bool two)
    {
        long at = (long)position * job.K + kb;
        float* y = job.Y + at, res = job.Residual == null ? null : job.Residual + at, bias = job.Bias == null ? null : job.Bias + kb;
        Vector(y, res, bias, l, lanes.First, lanes.FirstWhole, job.Kind);
        if (two) Vector(y + 8, res == null ? null : res + 8, bias == null ? null : bias + 8, h, lanes.Second, lanes.SecondWhole, job.Kind);

        static void Vector(float* y, float* res, float* bias, Vector256<float> sum, Vector256<float> mask, bool whole, int kind)
        {
            if (whole)
            {
                var wb = bias == null ? default : Vector256.Load(bias);
                var wr = res == null ? default : Vector256.Load(res);
                Vector256.Store(ConvKernels.EpilogueVector(sum, wb, bias != null, wr, res != null, kind), y);
                return;
            }
            var b = bias == null ? default : Avx.MaskLoad(bias, mask);
            var r = res == null ? default : Avx.MaskLoad(res, mask);
            Avx.MaskStore(y, mask, ConvKernels.EpilogueVector(sum, b, bias != null, r, res != null, kind));
        }
    }

    /// <summary>
    /// Stores a tile's rows with the epilogue, each vector's lane mask and bias made as it is stored (held for all the
    /// rows, the masks and biases of a tile of 40 or 48 lanes kept the JIT from holding its accumulators in registers).
    /// </summary>
    private readonly struct Store(int kb, int count, int halfAt)
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Row(ref Job job, int position, Vector512<float> l, Vector512<float> h, Vector512<float> m, Vector256<float> e,
            bool lo, bool hi, bool mid, bool half)
        {
            long at = (long)position * job.K + kb;
            float* y = job.Y + at, res = job.Residual == null ? null : job.Residual + at, bias = job.Bias == null ? null : job.Bias + kb;
            if (lo) Vector(ref job, l, y, res, bias, 0);
            if (hi) Vector(ref job, h, y, res, bias, 16);
            if (mid) Vector(ref job, m, y, res, bias, 32);
            if (half)
            {
                var mask = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(count - halfAt)).AsSingle();
                var b = bias == null ? default : Avx.MaskLoad(bias + halfAt, mask);
                var r = res == null ? default : Avx.MaskLoad(res + halfAt, mask);
                Avx.MaskStore(y + halfAt, mask, ConvKernels.EpilogueVector(e, b, bias != null, r, res != null, job.Kind));
            }
        }

        /// <summary>Lanes [offset, offset + 16) of the tile, those of its channels only.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Vector(ref Job job, Vector512<float> sum, float* y, float* res, float* bias, int offset)
        {
            var mask = ConvKernels.FirstLanes(count - offset);
            var b = bias == null ? default : Avx512F.MaskLoad(bias + offset, mask, Vector512<float>.Zero);
            var r = res == null ? default : Avx512F.MaskLoad(res + offset, mask, Vector512<float>.Zero);
            Avx512F.MaskStore(y + offset, mask, ConvKernels.EpilogueVector(sum, b, bias != null, r, res != null, job.Kind));
        }
    }
}
