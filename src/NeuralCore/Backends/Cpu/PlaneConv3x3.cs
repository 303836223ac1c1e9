using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// A 3x3 "same" convolution (stride 1, padding 1) of one sample's channel-major planes at most six columns wide
/// (MNIST's 6 x 6 and 3 x 6 maps at batch 1), with the positions in the lanes: each input plane is copied once into
/// rows 8 floats wide with a zero border, so that a tap's inputs for two output rows are one unmasked load at the
/// tap's fixed offset, and each load feeds a multiply-add per output channel of a group (its weight broadcast; 8
/// channels on two or three vectors, up to 16 on one: at most 24 accumulators). Bias, residual, activation and a 2 x 1 max pool run on the accumulators before the values
/// leave the registers. The implicit GEMM spent as long on its panels (tap masks, coordinates, a transposed tail),
/// 8-row weight panels of which 19 channels leave 5 rows empty, and an unpooled block as on its multiply-adds; with
/// a pool it also computed rows the pool's floor mode drops (the third row of a 3 x 6 map).
/// Without AVX-512 (AVX2 and FMA) a 256-bit vector holds one padded row, and only pooled steps run here: a pass per
/// window (its two rows), each load feeding groups of up to 6 channels, 12 accumulators. Unpooled, the implicit GEMM's
/// quarter tiles, all of whose lanes hold positions, were faster (6 x 6, one thread: 19 -> 19 3.27 against 3.57 µs,
/// 32 -> 32 7.36 against 9.04 µs).
/// </summary>
/// <remarks>
/// Each output is summed from zero, one fused multiply-add per input channel and tap in (channel, r, s) order, taps
/// off the plane multiplying a zero, then act(sum + bias + residual) and the pool's maximum from -inf in row order:
/// the operations and order of <see cref="ImplicitGemmConv"/>'s fused path, so the same bits at either width. Output
/// channels are split into groups (at 256 bits, groups and pooling windows) and those over threads, so results do not
/// depend on the thread count. Inference plans only (<see cref="CpuInferencePlan"/>).
/// </remarks>
internal static unsafe class PlaneConv3x3
{
    private const int Lanes = 16;
    private const int Group = 8;
    // 256 bits: one padded row per vector, a pool's window (two rows) a pass, up to 6 channels a group.
    private const int Lanes256 = 8;
    private const int Group256 = 6;
    private const int Taps = 9;
    // A padded row: a zero column, up to six values, a zero column (the next row's first column is the other zero).
    private const int RowFloats = 8;
    // Below this many multiply-adds per part, waking a worker costs more than it saves.
    private const long MinMacsPerPart = 1 << 18;

    /// <summary>Whether inference plans use it (tests turn it off to compare it with the implicit GEMM).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>
    /// True for a 3x3, stride-1, padding-1, undilated, ungrouped convolution of one sample whose rows have at most six
    /// columns, followed by no pool or a 2 x 1 max pool of stride 2 x 1 (floor mode, unpadded), whose computed rows
    /// (all of them, or the pool's windows') fill at most three vectors at least three quarters (6 x 6: 36 positions in
    /// 48 lanes; 3 x 6 pooled: its first two rows, 12 in 16), where the 512-bit kernels run; where only the 256-bit ones
    /// run, the same geometries with a pool.
    /// </summary>
    internal static bool CanRun(in Conv2dParams p, Pool2dParams? pool)
    {
        if (!Enabled || !(Gemm.Runs512 || (Gemm.Runs256 && pool is not null))) return false;
        if (p.N != 1 || p.R != 3 || p.S != 3 || p.StrideH != 1 || p.StrideW != 1 || p.PadH != 1 || p.PadW != 1
            || p.DilationH != 1 || p.DilationW != 1 || p.Groups != 1 || p.W > RowFloats - 2)
            return false;
        if (pool is { } q && !(q.KernelH == 2 && q.StrideH == 2 && q.KernelW == 1 && q.StrideW == 1 && q.PadH == 0 && q.PadW == 0
            && !q.CeilMode && q.H == p.P && q.W == p.Q && q.P >= 1))
            return false;
        int rows = ComputedRows(p, pool), vectors = Vectors(rows);
        return vectors <= 3 && 4 * rows * p.W >= 3 * Lanes * vectors;
    }

    // The output rows computed: all, or with a pool the rows its windows cover.
    private static int ComputedRows(in Conv2dParams p, Pool2dParams? pool) => pool is { } q ? 2 * q.P : p.P;

    private static int Vectors(int rows) => (rows * RowFloats + Lanes - 1) / Lanes;

    private static int VectorsAt(bool wide, int rows) => wide ? Vectors(rows) : rows;

    /// <summary>
    /// Output channels per group: 16 when the computed rows fill one vector (two sets of 8 accumulators on the same
    /// loads), else 8 (two or three vectors each). The channels are shared out evenly (19 = 6 + 6 + 7, or 9 + 10 on one
    /// vector), so that no group is left with too few independent sums to cover the multiply-add's latency.
    /// </summary>
    private static int GroupChannels(int vectors) => vectors == 1 ? 2 * Group : Group;

    private static int Groups(int k, int channels) => (k + channels - 1) / channels;

    /// <summary>Group <paramref name="g"/>'s first output channel (and with g + 1 its end) of <paramref name="groups"/>.</summary>
    private static int GroupStart(int g, int k, int groups) => (int)((long)g * k / groups);

    /// <summary>
    /// Weights packed once (an inference plan's step) for one geometry and vector width: per group of output channels
    /// [C][9 taps][8 or 16] (<see cref="GroupChannels"/>; at 256 bits [C][9 taps][6]), zero for lanes past the group's
    /// channels.
    /// </summary>
    internal sealed class Weights
    {
        private readonly float[] _packed;

        internal Weights(ReadOnlySpan<float> w, in Conv2dParams p, Pool2dParams? pool)
        {
            if (!CanRun(p, pool)) throw new ArgumentException("PlaneConv3x3.Weights: a geometry CanRun does not admit.", nameof(p));
            if (w.Length != p.K * p.C * Taps)
                throw new ArgumentException($"PlaneConv3x3.Weights: {w.Length} weights for a {p.K} x {p.C} x 3 x 3 kernel.", nameof(w));
            C = p.C;
            K = p.K;
            Wide = Gemm.Runs512;
            int rows = ComputedRows(p, pool);
            Vectors = VectorsAt(Wide, rows);
            int stride = Wide ? GroupChannels(Vectors) : Group256, groups = Groups(p.K, stride);
            _packed = GC.AllocateArray<float>(groups * p.C * Taps * stride, pinned: true);
            for (int g = 0; g < groups; g++)
            {
                int k0 = GroupStart(g, p.K, groups), k1 = GroupStart(g + 1, p.K, groups);
                for (int k = k0; k < k1; k++)
                    for (int c = 0; c < p.C; c++)
                        for (int t = 0; t < Taps; t++)
                            _packed[((g * p.C + c) * Taps + t) * stride + k - k0] = w[(k * p.C + c) * Taps + t];
            }
        }

        /// <summary>The input and output channels the weights were packed for.</summary>
        internal int C { get; }

        /// <inheritdoc cref="C"/>
        internal int K { get; }

        /// <summary>The vectors the computed rows fill, which the groups were made for (at 256 bits one per row).</summary>
        internal int Vectors { get; }

        /// <summary>Whether they were packed for the 512-bit kernels (else the 256-bit ones).</summary>
        internal bool Wide { get; }

        /// <summary>The packed floats (the array is pinned).</summary>
        internal float* Pointer => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_packed));
    }

    private struct Job
    {
        public float* Padded, W, Bias, Residual, Y;
        public int C, K, Width, Rows, Vectors, Groups, Parts, Kind;
        // 256 bits: the passes (windows), the channels a group has room for, and the lanes of a row's columns.
        public int Passes, Stride;
        public Vector256<float> Columns;
        public bool Pooled, Wide;
        // Floats per padded plane; per output plane (pooled or not) and per residual plane (unpooled).
        public long PaddedPlane, OutPlane, ResidualPlane;
        // Permutes between a vector's padded rows (row u, column j in lane 8 u + j) and its rows packed (lane u W + j).
        public Vector512<int> ToPadded, FromPadded;
    }

    /// <summary>
    /// y = pool(act(conv2d(x, w) + bias + residual)) for one sample: x [C, H, W], residual [K, H, W] and y [K, P, Q] (or
    /// the pooled planes) channel-major; bias, residual and pool may be absent; <paramref name="kind"/> is 0 (no
    /// activation), 1 (ReLU) or 2 (Hardswish).
    /// </summary>
    internal static void Forward(float* x, Weights weights, float* bias, float* y, in Conv2dParams p, float* residual, int kind,
        Pool2dParams? pool)
    {
        if (!CanRun(p, pool)) throw new ArgumentException("PlaneConv3x3.Forward: a geometry CanRun does not admit.", nameof(p));
        bool wide = Gemm.Runs512;
        int rows = ComputedRows(p, pool), vectors = VectorsAt(wide, rows);
        if (weights.Wide != wide)
            throw new ArgumentException($"PlaneConv3x3.Forward: weights packed for {(weights.Wide ? 512 : 256)}-bit kernels, not {(wide ? 512 : 256)}-bit ones; pack them again.", nameof(weights));
        if (weights.C != p.C || weights.K != p.K || weights.Vectors != vectors)
            throw new ArgumentException($"PlaneConv3x3.Forward: weights packed for {weights.C} -> {weights.K} channels on {weights.Vectors} vectors, not {p.C} -> {p.K} on {vectors}.", nameof(weights));
        var job = new Job
        {
            W = weights.Pointer, Bias = bias, Residual = residual, Y = y, C = p.C, K = p.K, Width = p.W, Kind = kind,
            Pooled = pool is not null, Rows = rows, Vectors = vectors, Passes = 1, Wide = wide,
            ResidualPlane = (long)p.P * p.Q,
        };
        job.OutPlane = pool is { } q ? (long)q.P * q.Q : (long)p.P * p.Q;
        // A lane reads up to two rows and two columns past its own position: 18 floats past the last vector.
        job.PaddedPlane = (Vectors(rows) * Lanes + 2 * RowFloats + 2 + Lanes - 1) / Lanes * Lanes;
        job.Padded = ConvScratch.Current.Get(ConvScratch.Slot.Padded, p.C * job.PaddedPlane);
        Pad(x, job.Padded, p.C, job.PaddedPlane, p.W, Math.Min(p.H, rows + 1), (long)p.H * p.W);
        if (wide)
        {
            job.Stride = GroupChannels(vectors);
            SetPermutes(ref job, p.W);
        }
        else
        {
            job.Stride = Group256;
            job.Passes = rows / 2;
            job.Columns = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(p.W)).AsSingle();
        }
        job.Groups = Groups(p.K, job.Stride);
        long macs = (long)p.K * p.C * Taps * rows * p.W;
        job.Parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, Math.Min(CpuThreading.Threads, job.Groups * job.Passes));
        // SAFETY: job outlives ForParts, which returns when every part is done; the parts only read the padded planes.
        if (job.Parts == 1) RunPart(&job, 0);
        else CpuThreading.ForParts(job.Parts, &RunPart, &job);
        GC.KeepAlive(weights);
    }

    private static void SetPermutes(ref Job job, int width)
    {
        var iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        job.ToPadded = iota + Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(iota, Vector512.Create(RowFloats)),
            Vector512.Create(width - RowFloats), Vector512<int>.Zero);
        job.FromPadded = iota + Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(iota, Vector512.Create(width)),
            Vector512.Create(RowFloats - width), Vector512<int>.Zero);
    }

    /// <summary>
    /// Each of the <paramref name="channels"/> input planes' first <paramref name="rows"/> rows (channel-major x, planes
    /// <paramref name="plane"/> floats apart, rows <paramref name="width"/> long) into the padded planes (<paramref
    /// name="paddedPlane"/> floats apart, a multiple of 16): row i at padded row i + 1, column j at padded column j + 1,
    /// zero everywhere else. <see cref="MixedLaneConv3x3"/> pads its input this way too.
    /// </summary>
    internal static void Pad(float* x, float* padded, int channels, long paddedPlane, int width, int rows, long plane)
    {
        var columns = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(width)).AsSingle();
        for (int c = 0; c < channels; c++)
        {
            float* to = padded + c * paddedPlane, source = x + c * plane;
            if (Gemm.Runs512)
                for (long i = 0; i < paddedPlane; i += Lanes) Vector512.Store(Vector512<float>.Zero, to + i);
            else
                for (long i = 0; i < paddedPlane; i += Lanes256) Vector256.Store(Vector256<float>.Zero, to + i);
            // Each row's 8 stored floats are its values and zeros: the rest of the padded row and the next one's first column.
            for (int i = 0; i < rows; i++)
                Vector256.Store(Avx.MaskLoad(source + i * width, columns), to + (i + 1) * RowFloats + 1);
        }
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        if (!job.Wide)
        {
            RunPart256(ref job, part);
            return;
        }
        int first = (int)((long)part * job.Groups / job.Parts), end = (int)((long)(part + 1) * job.Groups / job.Parts);
        for (int group = first; group < end; group++)
        {
            int k0 = GroupStart(group, job.K, job.Groups), count = GroupStart(group + 1, job.K, job.Groups) - k0;
            switch (job.Vectors)
            {
                case 1 when count > Group: Upper(ref job, group, k0, count - Group); break;
                case 1: Channels<Gemm.N1>(ref job, group, k0, count); break;
                case 2: Channels<Gemm.N2>(ref job, group, k0, count); break;
                default: Channels<Gemm.N3>(ref job, group, k0, count); break;
            }
        }
    }

    /// <summary>One specialisation per channel count, so that a group does no multiply-adds for channels it lacks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Channels<TVectors>(ref Job job, int group, int k0, int count) where TVectors : struct, Gemm.IConstant
    {
        switch (count)
        {
            case 1: Block<Gemm.N1, Gemm.N0, TVectors>(ref job, group, k0); break;
            case 2: Block<Gemm.N2, Gemm.N0, TVectors>(ref job, group, k0); break;
            case 3: Block<Gemm.N3, Gemm.N0, TVectors>(ref job, group, k0); break;
            case 4: Block<Gemm.N4, Gemm.N0, TVectors>(ref job, group, k0); break;
            case 5: Block<Gemm.N5, Gemm.N0, TVectors>(ref job, group, k0); break;
            case 6: Block<Gemm.N6, Gemm.N0, TVectors>(ref job, group, k0); break;
            case 7: Block<Gemm.N7, Gemm.N0, TVectors>(ref job, group, k0); break;
            default: Block<Gemm.N8, Gemm.N0, TVectors>(ref job, group, k0); break;
        }
    }

    /// <summary>A one-vector group of 9 to 16 channels: 8 in the first set of accumulators, <paramref name="upper"/> in the second.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Upper(ref Job job, int group, int k0, int upper)
    {
        switch (upper)
        {
            case 1: Block<Gemm.N8, Gemm.N1, Gemm.N1>(ref job, group, k0); break;
            case 2: Block<Gemm.N8, Gemm.N2, Gemm.N1>(ref job, group, k0); break;
            case 3: Block<Gemm.N8, Gemm.N3, Gemm.N1>(ref job, group, k0); break;
            case 4: Block<Gemm.N8, Gemm.N4, Gemm.N1>(ref job, group, k0); break;
            case 5: Block<Gemm.N8, Gemm.N5, Gemm.N1>(ref job, group, k0); break;
            case 6: Block<Gemm.N8, Gemm.N6, Gemm.N1>(ref job, group, k0); break;
            case 7: Block<Gemm.N8, Gemm.N7, Gemm.N1>(ref job, group, k0); break;
            default: Block<Gemm.N8, Gemm.N8, Gemm.N1>(ref job, group, k0); break;
        }
    }

    /// <summary>
    /// Output channels [k0, k0 + TChannels + TUpper): per input channel and tap, TVectors loads of the padded plane at
    /// the tap's offset, each multiplied into every channel's accumulator (on one vector, channels 8 onwards in the
    /// second set of accumulators, the b's); then each channel's planes stored.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit]
    private static void Block<TChannels, TUpper, TVectors>(ref Job job, int group, int k0)
        where TChannels : struct, Gemm.IConstant where TUpper : struct, Gemm.IConstant where TVectors : struct, Gemm.IConstant
    {
        int channels = TChannels.Value, upper = TUpper.Value, vectors = TVectors.Value, c = job.C, stride = job.Stride;
        long paddedPlane = job.PaddedPlane;
        float* w = job.W + (long)group * c * Taps * stride;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
        Vector512<float> d0 = default, d1 = default, d2 = default, d3 = default, d4 = default, d5 = default, d6 = default, d7 = default;
        for (int ci = 0; ci < c; ci++)
        {
            float* plane = job.Padded + ci * paddedPlane;
            for (int r = 0; r < 3; r++)
                for (int s = 0; s < 3; s++, w += stride)
                {
                    // Output lane L (row L / 8, column L % 8 - the last two are not stored) reads padded L + 8 r + s.
                    float* at = plane + r * RowFloats + s;
                    var x0 = Vector512.Load(at);
                    var x1 = vectors > 1 ? Vector512.Load(at + Lanes) : default;
                    var x2 = vectors > 2 ? Vector512.Load(at + 2 * Lanes) : default;
                    Step(ref a0, ref b0, ref d0, x0, x1, x2, w[0], vectors);
                    if (channels > 1) Step(ref a1, ref b1, ref d1, x0, x1, x2, w[1], vectors);
                    if (channels > 2) Step(ref a2, ref b2, ref d2, x0, x1, x2, w[2], vectors);
                    if (channels > 3) Step(ref a3, ref b3, ref d3, x0, x1, x2, w[3], vectors);
                    if (channels > 4) Step(ref a4, ref b4, ref d4, x0, x1, x2, w[4], vectors);
                    if (channels > 5) Step(ref a5, ref b5, ref d5, x0, x1, x2, w[5], vectors);
                    if (channels > 6) Step(ref a6, ref b6, ref d6, x0, x1, x2, w[6], vectors);
                    if (channels > 7) Step(ref a7, ref b7, ref d7, x0, x1, x2, w[7], vectors);
                    if (upper > 0) b0 = Vector512.FusedMultiplyAdd(Vector512.Create(w[8]), x0, b0);
                    if (upper > 1) b1 = Vector512.FusedMultiplyAdd(Vector512.Create(w[9]), x0, b1);
                    if (upper > 2) b2 = Vector512.FusedMultiplyAdd(Vector512.Create(w[10]), x0, b2);
                    if (upper > 3) b3 = Vector512.FusedMultiplyAdd(Vector512.Create(w[11]), x0, b3);
                    if (upper > 4) b4 = Vector512.FusedMultiplyAdd(Vector512.Create(w[12]), x0, b4);
                    if (upper > 5) b5 = Vector512.FusedMultiplyAdd(Vector512.Create(w[13]), x0, b5);
                    if (upper > 6) b6 = Vector512.FusedMultiplyAdd(Vector512.Create(w[14]), x0, b6);
                    if (upper > 7) b7 = Vector512.FusedMultiplyAdd(Vector512.Create(w[15]), x0, b7);
                }
        }
        // The sums go to a block on the stack before the first store. The stores are more code than the JIT inlines
        // here, so they are calls, and no vector register survives a call on x64 Linux: accumulators still live at the
        // first call were written to the stack at every step of the loop above (docs/benchmarks.md, step 121).
        Vector512<float>* sums = stackalloc Vector512<float>[3 * 8];
        sums[0] = a0; sums[1] = a1; sums[2] = a2; sums[3] = a3; sums[4] = a4; sums[5] = a5; sums[6] = a6; sums[7] = a7;
        sums[8] = b0; sums[9] = b1; sums[10] = b2; sums[11] = b3; sums[12] = b4; sums[13] = b5; sums[14] = b6; sums[15] = b7;
        sums[16] = d0; sums[17] = d1; sums[18] = d2; sums[19] = d3; sums[20] = d4; sums[21] = d5; sums[22] = d6; sums[23] = d7;
        for (int i = 0; i < channels; i++) Store(ref job, k0 + i, sums[i], sums[8 + i], sums[16 + i], vectors);
        for (int i = 0; i < upper; i++) StoreVector(ref job, k0 + 8 + i, 0, sums[8 + i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step(ref Vector512<float> a, ref Vector512<float> b, ref Vector512<float> d, Vector512<float> x0,
        Vector512<float> x1, Vector512<float> x2, float weight, int vectors)
    {
        var wv = Vector512.Create(weight);
        a = Vector512.FusedMultiplyAdd(wv, x0, a);
        if (vectors > 1) b = Vector512.FusedMultiplyAdd(wv, x1, b);
        if (vectors > 2) d = Vector512.FusedMultiplyAdd(wv, x2, d);
    }

    /// <summary>Output channel <paramref name="k"/>'s vectors (two padded rows each) through the epilogue and pool into y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(ref Job job, int k, Vector512<float> a, Vector512<float> b, Vector512<float> d, int vectors)
    {
        StoreVector(ref job, k, 0, a);
        if (vectors > 1) StoreVector(ref job, k, 1, b);
        if (vectors > 2) StoreVector(ref job, k, 2, d);
    }

    /// <summary>
    /// Vector <paramref name="v"/> of channel <paramref name="k"/> (output rows 2v and 2v + 1, columns in lanes 0-5 and
    /// 8-13): act(sum + bias + residual); then either its rows' values packed and stored, or the window's maximum (the
    /// two rows, from -inf in row order: <see cref="PoolKernels"/>'s order) stored as pooled row v.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreVector(ref Job job, int k, int v, Vector512<float> sum)
    {
        int width = job.Width, rows = Math.Min(2, job.Rows - 2 * v);
        bool hasBias = job.Bias != null, hasResidual = job.Residual != null;
        var residual = Vector512<float>.Zero;
        if (hasResidual)
        {
            float* r = job.Residual + k * job.ResidualPlane + 2 * v * width;
            residual = Avx512F.PermuteVar16x32(Avx512F.MaskLoad(r, ConvKernels.FirstLanes(rows * width), Vector512<float>.Zero), job.ToPadded);
        }
        var value = ConvKernels.EpilogueVector(sum, hasBias ? job.Bias[k] : 0f, hasBias, residual, hasResidual, job.Kind);
        float* y = job.Y + k * job.OutPlane;
        if (job.Pooled)
        {
            var second = Avx512F.Shuffle4x128(value, value, 0b01_00_11_10);
            var max = Vector512.Max(Vector512.Max(Vector512.Create(float.NegativeInfinity), value), second);
            Avx512F.MaskStore(y + v * width, ConvKernels.FirstLanes(width), max);
            return;
        }
        Avx512F.MaskStore(y + 2 * v * width, ConvKernels.FirstLanes(rows * width), Avx512F.PermuteVar16x32(value, job.FromPadded));
    }

    /// <summary>
    /// The 256-bit kernels' share of the work: (group, window) units, each group's windows in row order, split over the
    /// parts.
    /// </summary>
    private static void RunPart256(ref Job job, int part)
    {
        int units = job.Groups * job.Passes;
        int first = (int)((long)part * units / job.Parts), end = (int)((long)(part + 1) * units / job.Parts);
        for (int unit = first; unit < end; unit++)
        {
            int group = unit / job.Passes, window = unit % job.Passes;
            int k0 = GroupStart(group, job.K, job.Groups), count = GroupStart(group + 1, job.K, job.Groups) - k0;
            switch (count)
            {
                case 1: Window256<Gemm.N1>(ref job, group, k0, window); break;
                case 2: Window256<Gemm.N2>(ref job, group, k0, window); break;
                case 3: Window256<Gemm.N3>(ref job, group, k0, window); break;
                case 4: Window256<Gemm.N4>(ref job, group, k0, window); break;
                case 5: Window256<Gemm.N5>(ref job, group, k0, window); break;
                default: Window256<Gemm.N6>(ref job, group, k0, window); break;
            }
        }
    }

    /// <summary>
    /// Output channels [k0, k0 + TChannels) on pooling window <paramref name="window"/>'s rows 2 window and 2 window + 1:
    /// per input channel and tap, one load of the padded plane per row at the tap's offset, each multiplied into every
    /// channel's accumulator for that row (the a's and b's); then each channel's pooled row stored.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit]
    private static void Window256<TChannels>(ref Job job, int group, int k0, int window) where TChannels : struct, Gemm.IConstant
    {
        int channels = TChannels.Value, c = job.C, stride = job.Stride, row0 = 2 * window;
        long paddedPlane = job.PaddedPlane;
        float* w = job.W + (long)group * c * Taps * stride;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default;
        for (int ci = 0; ci < c; ci++)
        {
            float* plane = job.Padded + ci * paddedPlane + row0 * RowFloats;
            for (int r = 0; r < 3; r++)
                for (int s = 0; s < 3; s++, w += stride)
                {
                    // Output row row0 + i, column j (lane j; the last two are not stored) reads padded row row0 + i + r,
                    // column j + s.
                    float* at = plane + r * RowFloats + s;
                    var x0 = Vector256.Load(at);
                    var x1 = Vector256.Load(at + RowFloats);
                    Step256(ref a0, ref b0, x0, x1, w[0]);
                    if (channels > 1) Step256(ref a1, ref b1, x0, x1, w[1]);
                    if (channels > 2) Step256(ref a2, ref b2, x0, x1, w[2]);
                    if (channels > 3) Step256(ref a3, ref b3, x0, x1, w[3]);
                    if (channels > 4) Step256(ref a4, ref b4, x0, x1, w[4]);
                    if (channels > 5) Step256(ref a5, ref b5, x0, x1, w[5]);
                }
        }
        // To the stack before the first store, as in Block.
        Vector256<float>* sums = stackalloc Vector256<float>[2 * Group256];
        sums[0] = a0; sums[1] = a1; sums[2] = a2; sums[3] = a3; sums[4] = a4; sums[5] = a5;
        sums[6] = b0; sums[7] = b1; sums[8] = b2; sums[9] = b3; sums[10] = b4; sums[11] = b5;
        for (int i = 0; i < channels; i++) StoreWindow256(ref job, k0 + i, row0, sums[i], sums[Group256 + i]);
    }

    /// <summary>a += weight * x0 and b += weight * x1, one fused multiply-add each (two rows' accumulators of one channel).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Step256(ref Vector256<float> a, ref Vector256<float> b, Vector256<float> x0, Vector256<float> x1, float weight)
    {
        var wv = Vector256.Create(weight);
        a = Vector256.FusedMultiplyAdd(wv, x0, a);
        b = Vector256.FusedMultiplyAdd(wv, x1, b);
    }

    /// <summary>Output row <paramref name="row"/> of channel <paramref name="k"/>: act(sum + bias + residual).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Epilogue256(ref Job job, int k, int row, Vector256<float> sum)
    {
        bool hasBias = job.Bias != null, hasResidual = job.Residual != null;
        var residual = hasResidual ? Avx.MaskLoad(job.Residual + k * job.ResidualPlane + row * job.Width, job.Columns) : default;
        return ConvKernels.EpilogueVector(sum, hasBias ? Vector256.Create(job.Bias[k]) : default, hasBias, residual, hasResidual, job.Kind);
    }

    /// <summary>
    /// Rows <paramref name="row"/> and row + 1 of channel <paramref name="k"/> through the epilogue, then the window's
    /// maximum (from -inf in row order: <see cref="PoolKernels"/>'s order) stored as pooled row row / 2.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreWindow256(ref Job job, int k, int row, Vector256<float> first, Vector256<float> second)
    {
        var max = Vector256.Max(Vector256.Max(Vector256.Create(float.NegativeInfinity), Epilogue256(ref job, k, row, first)),
            Epilogue256(ref job, k, row + 1, second));
        Avx.MaskStore(job.Y + k * job.OutPlane + row / 2 * job.Width, job.Columns, max);
    }
}
