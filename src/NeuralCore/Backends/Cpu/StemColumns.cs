using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// A stem (one input channel, stride 2, no dilation: CP-ResNet's 5x5) over its input split into 2 * S column planes, in
/// which every tap reads at a fixed offset from the output's own flat position, as in a stride-1 convolution. Plane
/// (a, s) holds X[i, q] = x[2 (i + u0) + a, 2 q + s - padW] (zero off the input) for i in [0, Px) and q in [0, Q), with
/// u0 = floor(-padH / 2): output (p, q) of tap (r, s) is plane ((r - padH) mod 2, s) at row p + u - u0, u =
/// floor((r - padH) / 2), so at flat offset (u - u0) * Q from p * Q + q. The training forward
/// (<see cref="Forward"/>) runs its vectors over a plane's P * Q outputs whatever their rows' width, and the weight
/// gradient (<see cref="DirectWeightGradient.RunStem"/>) its dot products. The kernels are written once for 512-bit
/// and 256-bit vectors (<see cref="IVectorLanes{TVector}"/>): the same sums in the same order at either width.
/// </summary>
internal static unsafe class StemColumns
{
    // Floats per 512-bit vector; the planes' slack, sized for them, covers the 256-bit kernels' reads too.
    private const int Lanes = 16;
    private const int Group = 8;
    // Below this many multiply-adds per part, waking a worker costs more than it saves.
    private const long MinMacsPerPart = 1 << 18;
    // Kernels of at most this many taps (their offsets live on the stack; a stem is 5x5 or 7x7).
    private const int MaxTaps = 64;

    /// <summary>Whether the training forward uses <see cref="Forward"/> (tests turn it off to compare it with the other paths).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>Whether a pool fuses into the channel-major stem (<see cref="CanRunPooled"/>; tests turn it off to compare the two).</summary>
    internal static bool FusesPool { get; set; } = true;

    /// <summary>
    /// True for a stem (<see cref="IsStem"/>) on a CPU with the 512-bit or 256-bit kernels (AVX-512, or AVX2 and FMA:
    /// <see cref="Gemm.Kind"/>, which tests narrow to check the other widths and paths).
    /// </summary>
    internal static bool CanRun(in Conv2dParams p) => (Gemm.Runs512 || Gemm.Runs256) && IsStem(p);

    /// <summary>One input channel, one group, stride 2, no dilation and at most 64 taps.</summary>
    internal static bool IsStem(in Conv2dParams p) =>
        p.C == 1 && p.Groups == 1 && p.StrideH == 2 && p.StrideW == 2 && p.DilationH == 1 && p.DilationW == 1 && p.R * p.S <= MaxTaps;

    /// <summary>The planes' rows per sample, Px, and u0 = floor(-padH / 2), the smallest row offset of the taps.</summary>
    internal static (int Px, int U0) Rows(in Conv2dParams p)
    {
        int u0 = -p.PadH >> 1, u1 = (p.R - 1 - p.PadH) >> 1;
        return (p.P + u1 - u0, u0);
    }

    /// <summary>Floats after each plane that whole-vector reads and writes past its end may touch: its spare rows and two vectors.</summary>
    internal static int Slack(in Conv2dParams p, int px) => ((px - p.P) * p.Q + 3 * Lanes - 1) / Lanes * Lanes;

    /// <summary>Per tap t: the plane it reads (a * S + s) at taps[t + R * S], and its flat offset there at taps[t].</summary>
    internal static void Taps(in Conv2dParams p, int u0, int* taps)
    {
        int count = p.R * p.S;
        for (int t = 0; t < count; t++)
        {
            int dr = t / p.S - p.PadH;
            taps[count + t] = (dr & 1) * p.S + t % p.S;
            taps[t] = ((dr >> 1) - u0) * p.Q;
        }
    }

    /// <summary>
    /// The 2 * S planes [(a, s)][sample][Px, Q] of samples [n0, n0 + nb) of x [N, 1, H, W], planes
    /// <paramref name="planeStride"/> floats apart (each sample's Px * Q floats, then at least <see cref="Slack"/>). Each
    /// vector of a plane's row is the even floats of two vectors' worth read straight from the input row by two loads,
    /// masked where they reach off the row (lanes off the row read zero, the border); whole vectors are stored, a row's
    /// last one running into the next row (written after it) or the slack. (A zero-bordered copy of each input row
    /// first, two library calls a row, took half the time of the MNIST stem's multiply-adds.) 16 outputs a vector where <see cref="Gemm.Runs512"/>, else 8:
    /// the same floats either way.
    /// </summary>
    internal static void Split(float* x, int n0, int nb, in Conv2dParams p, int px, int u0, float* planes, long planeStride) =>
        SplitRows(x, n0, nb, p, px, u0, planes, planeStride, 0, px);

    /// <summary><see cref="Split(float*, int, int, in Conv2dParams, int, int, float*, long)"/> of the planes' rows [<paramref name="rowFrom"/>, <paramref name="rowTo"/>) only (one band's).</summary>
    private static void SplitRows(float* x, int n0, int nb, in Conv2dParams p, int px, int u0, float* planes, long planeStride, int rowFrom, int rowTo)
    {
        if (Gemm.Runs512)
        {
            if (NarrowEnabled && p.W < 2 * Lanes && p.Q <= Lanes && rowFrom == 0 && rowTo == px) SplitNarrow(x, n0, nb, p, px, u0, planes, planeStride);
            else Split<Lanes512, Vector512<float>>(x, n0, nb, p, px, u0, planes, planeStride, rowFrom, rowTo);
        }
        else Split<Lanes256, Vector256<float>>(x, n0, nb, p, px, u0, planes, planeStride, rowFrom, rowTo);
    }

    private static void Split<TLanes, TVector>(float* x, int n0, int nb, in Conv2dParams p, int px, int u0, float* planes, long planeStride,
        int rowFrom, int rowTo)
        where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged
    {
        // Locals, not fields read through a reference: after each store the JIT reloads those, which made such copies
        // 4x slower.
        int h = p.H, w = p.W, q = p.Q, kernelS = p.S, padW = p.PadW, grid = px * q, lanes = TLanes.Count;
        int vectors = (q + lanes - 1) / lanes;
        // Per (s, v): which of the 2 * lanes input columns from 2 * lanes * v + s - padW lie on the row, the same for
        // every row; and whether all of them do (plain loads then, with no mask).
        var inside = stackalloc TVector[2 * kernelS * vectors];
        var whole = stackalloc bool[kernelS * vectors];
        var bits = stackalloc int[2 * lanes];
        for (int s = 0; s < kernelS; s++)
            for (int v = 0; v < vectors; v++)
            {
                int start = 2 * v * lanes + s - padW;
                for (int l = 0; l < 2 * lanes; l++) bits[l] = (uint)(start + l) < (uint)w ? -1 : 0;
                inside[2 * (s * vectors + v)] = TLanes.Load((float*)bits);
                inside[2 * (s * vectors + v) + 1] = TLanes.Load((float*)bits + lanes);
                whole[s * vectors + v] = start >= 0 && start + 2 * lanes <= w;
            }
        for (int i = 0; i < nb; i++)
        {
            float* sample = x + (long)(n0 + i) * h * w;
            for (int a = 0; a < 2; a++)
            {
                float* rowStart = planes + (long)a * kernelS * planeStride + (long)i * grid + (long)rowFrom * q;
                for (int row = rowFrom; row < rowTo; row++, rowStart += q)
                {
                    int ih = 2 * (row + u0) + a;
                    if ((uint)ih >= (uint)h)
                    {
                        // Whole vectors of zeros, as the rows inside store theirs.
                        for (int s = 0; s < kernelS; s++)
                            for (int v = 0; v < vectors; v++) TLanes.Store(default, rowStart + s * planeStride + v * lanes);
                        continue;
                    }
                    // Vector v of plane s reads input columns [2 * lanes * v + s - padW, + 2 * lanes): the outputs' even
                    // ones. Pointers stepped along, not indices (the JIT recomputed those from scratch for every vector).
                    TVector* masks = inside;
                    bool* plain = whole;
                    float* dst = rowStart;
                    for (int s = 0; s < kernelS; s++, dst += planeStride)
                    {
                        float* src = sample + (long)ih * w + s - padW;
                        for (int v = 0; v < vectors; v++, src += 2 * lanes, masks += 2, plain++)
                        {
                            var first = *plain ? TLanes.Load(src) : TLanes.MaskLoad(src, masks[0]);
                            var second = *plain ? TLanes.Load(src + lanes) : TLanes.MaskLoad(src + lanes, masks[1]);
                            TLanes.Store(TLanes.Evens(first, second), dst + v * lanes);
                        }
                    }
                }
            }
        }
    }

    /// <summary>Whether <see cref="Split"/> hands narrow rows to <see cref="SplitNarrow"/> (tests turn it off to compare the two).</summary>
    internal static bool NarrowEnabled { get; set; } = true;

    /// <summary>
    /// <see cref="Split"/> for rows of fewer than 32 inputs and at most 16 outputs (MNIST's 28 -> 13): each input row is
    /// loaded once, as two vectors zero past its end, and each of its S column phases is one two-source permute of them,
    /// whose lanes off the row take lane 31, a zero. (Two masked loads per phase instead: about 0.4 µs a 28 x 28 sample.)
    /// </summary>
    private static void SplitNarrow(float* x, int n0, int nb, in Conv2dParams p, int px, int u0, float* planes, long planeStride)
    {
        int h = p.H, w = p.W, q = p.Q, kernelS = p.S, padW = p.PadW, grid = px * q;
        // Per phase s, lane j: input column 2 j + s - padW, or 31 where that lies off the row.
        var index = stackalloc Vector512<int>[kernelS];
        var lanes = stackalloc int[Lanes];
        for (int s = 0; s < kernelS; s++)
        {
            for (int j = 0; j < Lanes; j++)
            {
                int column = 2 * j + s - padW;
                lanes[j] = (uint)column < (uint)w ? column : 2 * Lanes - 1;
            }
            index[s] = Vector512.Load(lanes);
        }
        var lowMask = ConvKernels.FirstLanes(Math.Min(w, Lanes));
        var highMask = ConvKernels.FirstLanes(Math.Max(w - Lanes, 0));
        for (int i = 0; i < nb; i++)
        {
            float* sample = x + (long)(n0 + i) * h * w;
            for (int a = 0; a < 2; a++)
            {
                float* rowStart = planes + (long)a * kernelS * planeStride + (long)i * grid;
                for (int row = 0; row < px; row++, rowStart += q)
                {
                    int ih = 2 * (row + u0) + a;
                    if ((uint)ih >= (uint)h)
                    {
                        for (int s = 0; s < kernelS; s++) Vector512.Store(Vector512<float>.Zero, rowStart + s * planeStride);
                        continue;
                    }
                    float* source = sample + (long)ih * w;
                    var low = Avx512F.MaskLoad(source, lowMask, Vector512<float>.Zero);
                    var high = Avx512F.MaskLoad(source + Lanes, highMask, Vector512<float>.Zero);
                    for (int s = 0; s < kernelS; s++)
                        Vector512.Store(Avx512F.PermuteVar16x32x2(low, index[s], high), rowStart + s * planeStride);
                }
            }
        }
    }

    private struct Job
    {
        public Conv2dParams P;
        public float* X, W, Bias, Y;
        public int Px, U0, Groups, Items, Parts;
        // Bands of output rows per plane, each an item of its own with every channel group (more than one only when there
        // are fewer samples than parts: a batch-1 plan).
        public int Bands;
        public long PlaneStride;
        // Floats from one sample's output plane to the next's, and from one channel's to the next's: sample-major
        // [N, K, P, Q] or channel-major [K, N, P, Q].
        public long SampleStride, ChannelStride;
        // Per tap: flat offset in its plane, then the plane (Taps).
        public int* Taps;
        // The activation: ReLU or Hardswish applied as each vector is stored (Kind 1 or 2), any other applied to each
        // group's planes once they are written (HasActivation; inference plans), or none.
        public int Kind;
        public bool HasActivation;
        public UnaryOp Activation;
        public float Alpha, Beta;
        // A fused 2 x 2 / 2 max pool (ForwardChannelMajor's pooled form): the rows it reads (2 * pooled rows), and the
        // pooled columns; each group's rows are written to the part's staging planes ([8][P * Q]) and pooled from there.
        public bool Pooled;
        public int Rows, PooledQ;
        // The items (sample, band, group) shared out among the parts.
        public ClaimedRanges Claimed;
    }

    /// <summary>
    /// y [N, K, P, Q] = conv2d(x [N, 1, H, W], w) + bias (sample-major; bias may be null): per sample its planes, then per
    /// group of 8 output channels one vector of outputs (16, or 8 without AVX-512) at a time, each tap one load and one
    /// multiply-add per channel (8 accumulators). Each output is the sum over the taps in (r, s) order, then the bias: for
    /// a 5x5 stem the bits of the im2col GEMM and of <see cref="DirectStemConv"/>.
    /// </summary>
    internal static void Forward(float* x, float* w, float* bias, float* y, in Conv2dParams p) =>
        Run(x, w, bias, y, p, channelMajor: false, false, default, 0f, 0f, null);

    /// <summary>
    /// y [K, N, P, Q] = act(conv2d(x, w) + bias) for x [1, N, H, W] (the same floats as [N, 1, H, W]), channel-major as in
    /// the inference plans: <see cref="Forward"/>'s sums and bias, then the activation, ReLU or Hardswish as each vector is
    /// stored (<see cref="ConvKernels.EpilogueVector(Vector512{float}, float, bool, Vector512{float}, bool, int)"/>'s
    /// expressions), any other by <see cref="ConvKernels.Epilogue"/> on each group's planes while they are in cache: the
    /// bits of the im2col path's output and epilogue.
    /// </summary>
    internal static void ForwardChannelMajor(float* x, float* w, float* bias, float* y, in Conv2dParams p,
        bool hasActivation, UnaryOp activation, float alpha, float beta) =>
        Run(x, w, bias, y, p, channelMajor: true, hasActivation, activation, alpha, beta, null);

    /// <summary>
    /// True when <see cref="ForwardChannelMajor(float*, Weights, float*, in Conv2dParams, bool, UnaryOp, float, float, Pool2dParams?)"/>
    /// runs this stem followed by <paramref name="pool"/>: <see cref="CanRun"/>, and a 2 x 2 / 2 max pool whose windows
    /// lie inside the output (<see cref="PoolKernels.IsWhole2x2(in Pool2dParams)"/>, floor mode).
    /// </summary>
    internal static bool CanRunPooled(in Conv2dParams p, in Pool2dParams pool) =>
        FusesPool && CanRun(p) && PoolKernels.IsWhole2x2(pool) && pool.H == p.P && pool.W == p.Q && pool.P >= 1 && pool.Q >= 1;

    /// <summary>
    /// <see cref="ForwardChannelMajor(float*, float*, float*, float*, in Conv2dParams, bool, UnaryOp, float, float)"/> with
    /// the weights, bias and tap table made once (<see cref="Weights"/>: an inference plan's step), and with
    /// <paramref name="pool"/> (a <see cref="CanRunPooled"/> one, or none) applied to each group's rows while they are in
    /// cache: those rows, only the ones the pool's windows read, go to the part's staging planes, get their activation
    /// there and are pooled into y [K, N, P / 2, Q / 2] (<see cref="PoolKernels.MaxPlane2x2(float*, float*, int*, int, int, int)"/>):
    /// the bits of the unpooled output and then the pooling step.
    /// </summary>
    internal static void ForwardChannelMajor(float* x, Weights weights, float* y, in Conv2dParams p,
        bool hasActivation, UnaryOp activation, float alpha, float beta, Pool2dParams? pool)
    {
        if (pool is { } q && !CanRunPooled(p, q)) throw new ArgumentException("StemColumns.ForwardChannelMajor: a pool CanRunPooled does not admit.", nameof(pool));
        if (!weights.Fits(p)) throw new ArgumentException($"StemColumns.ForwardChannelMajor: weights packed for another stem than {p.K} channels of {p.R} x {p.S} on a {p.H} x {p.W} input.", nameof(weights));
        Run(x, null, null, y, p, channelMajor: true, hasActivation, activation, alpha, beta, pool, weights);
        GC.KeepAlive(weights);
    }

    /// <summary>
    /// A stem's weights and bias packed once (an inference plan's step) as <see cref="Pack"/> packs them on each call, with
    /// its tap table (<see cref="Taps"/>), in pinned memory.
    /// </summary>
    internal sealed class Weights
    {
        private readonly float[] _packed;
        private readonly int[] _taps;
        private readonly Conv2dParams _p;

        internal Weights(ReadOnlySpan<float> w, float[]? bias, in Conv2dParams p)
        {
            if (!IsStem(p)) throw new ArgumentException("StemColumns.Weights: not a stem (one input channel, stride 2, no dilation).", nameof(p));
            if (w.Length != p.K * p.R * p.S || (bias is not null && bias.Length != p.K))
                throw new ArgumentException($"StemColumns.Weights: {w.Length} weights and {bias?.Length ?? 0} biases for {p.K} channels of {p.R} x {p.S}.", nameof(w));
            _p = p;
            int taps = p.R * p.S, groups = (p.K + Group - 1) / Group;
            _packed = GC.AllocateArray<float>(groups * (taps + 1) * Group, pinned: true);
            _taps = GC.AllocateArray<int>(2 * taps, pinned: true);
            HasBias = bias is not null;
            fixed (float* src = w, b = bias, dst = _packed)
                Pack(src, b, p, dst);
            fixed (int* t = _taps)
                Taps(p, Rows(p).U0, t);
        }

        /// <summary>Whether a bias was packed (else the sums are stored as they are).</summary>
        internal bool HasBias { get; }

        /// <summary>The packed floats: per group [taps][8], then the biases [groups][8] (the array is pinned).</summary>
        internal float* Pointer => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_packed));

        /// <summary>The tap table (the array is pinned).</summary>
        internal int* TapTable => (int*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_taps));

        /// <summary>Whether they were packed for this geometry (the batch aside).</summary>
        internal bool Fits(in Conv2dParams p) => _p with { N = p.N } == p;
    }

    private static void Run(float* x, float* w, float* bias, float* y, in Conv2dParams p, bool channelMajor,
        bool hasActivation, UnaryOp activation, float alpha, float beta, Pool2dParams? pool, Weights? packedOnce = null)
    {
        var (px, u0) = Rows(p);
        int taps = p.R * p.S;
        int* tapTable = packedOnce is null ? null : packedOnce.TapTable;
        if (tapTable == null)
        {
            int* table = stackalloc int[2 * taps];
            Taps(p, u0, table);
            tapTable = table;
        }
        // Pooled, the output planes are the pool's, and only the rows its windows read are computed.
        int rows = pool is { } q ? 2 * q.P : p.P;
        long outPlane = pool is { } r ? (long)r.P * r.Q : (long)p.P * p.Q;
        var job = new Job
        {
            P = p, X = x, Y = y, Px = px, U0 = u0, Taps = tapTable,
            Groups = (p.K + Group - 1) / Group, PlaneStride = (long)px * p.Q + Slack(p, px),
            SampleStride = (channelMajor ? 1 : p.K) * outPlane, ChannelStride = (channelMajor ? p.N : 1) * outPlane,
            Kind = !hasActivation ? 0 : activation == UnaryOp.Relu ? 1 : activation == UnaryOp.Hardswish ? 2 : 0,
            HasActivation = hasActivation && activation is not (UnaryOp.Relu or UnaryOp.Hardswish),
            Activation = activation, Alpha = alpha, Beta = beta,
            Pooled = pool is not null, Rows = rows, PooledQ = pool?.Q ?? 0,
        };
        float* packed;
        if (packedOnce is not null)
        {
            packed = packedOnce.Pointer;
            bias = packedOnce.HasBias ? packed : null;
        }
        else
        {
            packed = ConvScratch.Current.Get(ConvScratch.Slot.Weights, (long)job.Groups * (taps + 1) * Group);
            Pack(w, bias, p, packed);
        }
        job.W = packed;
        job.Bias = bias == null ? null : packed + (long)job.Groups * taps * Group;
        long macs = (long)p.N * p.K * p.P * p.Q * taps;
        int parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, CpuThreading.Threads);
        // Fewer samples than parts (a batch-1 plan) whose channel groups the parts cannot share evenly (19 = 8 + 8 + 3
        // channels gave one part 8 and the other 11, each splitting the whole sample): each part splits and computes a
        // band of output rows, all groups. Mel b1 without AVX-512: the pruned model's stem 37.7 -> 34 µs; the big model's
        // 4 groups ran 1-2 % slower in bands than 2 + 2 (docs/benchmarks.md, step 156).
        // Pooled, bands of whole windows (row pairs).
        int bandUnits = job.Pooled ? rows / 2 : rows;
        job.Bands = p.N < parts && (long)p.N * job.Groups % parts != 0 ? Math.Min((parts + p.N - 1) / p.N, bandUnits) : 1;
        job.Items = p.N * job.Bands * job.Groups;
        job.Parts = Math.Min(parts, Math.Max(job.Items, 1));
        long* words = stackalloc long[ClaimedRanges.Words(job.Parts)];
        job.Claimed = new ClaimedRanges(words, job.Parts, job.Items);
        // SAFETY: job, the tap table and the ranges' words on this stack frame outlive ForParts, which returns when every
        // part is done.
        if (job.Parts == 1) RunPart(&job, 0);
        else CpuThreading.ForParts(job.Parts, &RunPart, &job);
    }

    /// <summary>Per group of 8 output channels the weights [taps][8], then the biases [groups][8]; zero for absent channels.</summary>
    private static void Pack(float* w, float* bias, in Conv2dParams p, float* packed)
    {
        int taps = p.R * p.S, groups = (p.K + Group - 1) / Group;
        float* packedBias = packed + (long)groups * taps * Group;
        for (int k = 0; k < groups * Group; k++)
        {
            float* dst = packed + (long)(k / Group) * taps * Group + k % Group;
            for (int t = 0; t < taps; t++) dst[t * Group] = k < p.K ? w[(long)k * taps + t] : 0f;
            packedBias[k] = k < p.K && bias != null ? bias[k] : 0f;
        }
    }

    private static void RunPart(void* state, int part)
    {
        if (Gemm.Runs512) RunItems<Lanes512, Vector512<float>>(ref *(Job*)state, part);
        else RunItems<Lanes256, Vector256<float>>(ref *(Job*)state, part);
    }

    private static void RunItems<TLanes, TVector>(ref Job job, int part) where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged
    {
        ref readonly Conv2dParams p = ref job.P;
        // The part's own items, then those of other parts that they have not reached yet (ClaimedRanges), last first:
        // each output is the same sums whichever part takes it.
        if (!job.Claimed.Next(part, out int item)) return;
        float* planes = ConvScratch.Current.Get(ConvScratch.Slot.Columns, 2L * p.S * job.PlaneStride);
        long plane = (long)p.P * p.Q;
        float* stage = job.Pooled ? ConvScratch.Current.Get(ConvScratch.Slot.Rows, Group * plane) : null;
        int unit = job.Pooled ? 2 : 1, units = job.Rows / unit;
        int current = -1;
        do
        {
            int sampleBand = item / job.Groups, group = item % job.Groups;
            int n = sampleBand / job.Bands, band = sampleBand % job.Bands;
            // Output rows [r0, r1) read the planes' rows [r0, r1 + Px - P); pooled, whole windows.
            int r0 = unit * (int)((long)band * units / job.Bands), r1 = unit * (int)((long)(band + 1) * units / job.Bands);
            if (sampleBand != current)
            {
                SplitRows(job.X, n, 1, p, job.Px, job.U0, planes, job.PlaneStride, r0, r1 + job.Px - p.P);
                current = sampleBand;
            }
            // One specialisation per channel count, so that a last group of fewer than 8 (19 = 8 + 8 + 3) does no
            // multiply-adds for the channels it lacks.
            int channels = Math.Min(Group, p.K - group * Group), j0 = r0 * p.Q, j1 = r1 * p.Q;
            // Where the group's outputs go: the output, or pooled the staging planes (then pooled into the output).
            float* y = job.Pooled ? stage : OutputPlane(ref job, n, group);
            long stride = job.Pooled ? plane : job.ChannelStride;
            switch (channels)
            {
                case 1: PairedOutputs<TLanes, TVector, Gemm.N1>(ref job, planes, y, stride, group, j0, j1); break;
                case 2: PairedOutputs<TLanes, TVector, Gemm.N2>(ref job, planes, y, stride, group, j0, j1); break;
                case 3: PairedOutputs<TLanes, TVector, Gemm.N3>(ref job, planes, y, stride, group, j0, j1); break;
                case 4: Outputs<TLanes, TVector, Gemm.N4>(ref job, planes, y, stride, group, j0, j1); break;
                case 5: Outputs<TLanes, TVector, Gemm.N5>(ref job, planes, y, stride, group, j0, j1); break;
                case 6: Outputs<TLanes, TVector, Gemm.N6>(ref job, planes, y, stride, group, j0, j1); break;
                case 7: Outputs<TLanes, TVector, Gemm.N7>(ref job, planes, y, stride, group, j0, j1); break;
                default: Outputs<TLanes, TVector, Gemm.N8>(ref job, planes, y, stride, group, j0, j1); break;
            }
            if (job.HasActivation)
                ConvKernels.Epilogue(y, stride, j0, channels, j1 - j0, null, null, 0, 0, true, job.Activation, job.Alpha, job.Beta);
            if (!job.Pooled) continue;
            float* pooled = OutputPlane(ref job, n, group) + (long)r0 / 2 * job.PooledQ;
            for (int c = 0; c < channels; c++)
                PoolKernels.MaxPlane2x2(stage + c * plane + j0, pooled + c * job.ChannelStride, null, p.Q, (r1 - r0) / 2, job.PooledQ);
        }
        while (job.Claimed.Next(part, out item));
    }

    /// <summary>Sample n's output plane of the first channel of <paramref name="group"/>.</summary>
    private static float* OutputPlane(ref Job job, int n, int group) => job.Y + n * job.SampleStride + group * Group * job.ChannelStride;

    /// <summary>
    /// The current sample's outputs at positions [<paramref name="j0"/>, <paramref name="j1"/>) of the first TChannels
    /// channels of <paramref name="group"/>, into channel planes <paramref name="stride"/> floats apart from
    /// <paramref name="y"/>: with 512-bit vectors two vectors of positions at a time while whole pairs remain
    /// (<see cref="WholePairs{TChannels}"/>), then a vector at a time: per tap one load and a multiply-add per channel,
    /// its weight broadcast inside the instruction. (Pairs alone, the last one past the plane, computed MNIST's plane of
    /// 169 outputs in 192 lanes instead of 176: 1->32 at batch 256, one thread, 827 -> 891 µs; the single vectors after
    /// the whole pairs keep it at 176.)
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Outputs<TLanes, TVector, TChannels>(ref Job job, float* planes, float* y, long stride, int group, int j0, int j1)
        where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged where TChannels : struct, Gemm.IConstant
    {
        int channels = TChannels.Value, taps = job.P.R * job.P.S, lanes = TLanes.Count, kind = job.Kind;
        long planeStride = job.PlaneStride;
        int* offsets = job.Taps;
        float** sources = stackalloc float*[taps];
        for (int t = 0; t < taps; t++) sources[t] = planes + offsets[taps + t] * planeStride + offsets[t];
        float* weights = job.W + (long)group * taps * Group;
        float* bias = job.Bias == null ? null : job.Bias + group * Group;
        int j = j0;
        if (lanes == Lanes) j = WholePairs<TChannels>(ref job, sources, weights, bias, y, stride, j0, j1);
        for (; j < j1; j += lanes)
        {
            TVector a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            float* w = weights;
            for (int t = 0; t < taps; t++, w += Group)
            {
                var x0 = TLanes.Load(sources[t] + j);
                a0 = TLanes.MultiplyAdd(TLanes.Create(w[0]), x0, a0);
                if (channels > 1) a1 = TLanes.MultiplyAdd(TLanes.Create(w[1]), x0, a1);
                if (channels > 2) a2 = TLanes.MultiplyAdd(TLanes.Create(w[2]), x0, a2);
                if (channels > 3) a3 = TLanes.MultiplyAdd(TLanes.Create(w[3]), x0, a3);
                if (channels > 4) a4 = TLanes.MultiplyAdd(TLanes.Create(w[4]), x0, a4);
                if (channels > 5) a5 = TLanes.MultiplyAdd(TLanes.Create(w[5]), x0, a5);
                if (channels > 6) a6 = TLanes.MultiplyAdd(TLanes.Create(w[6]), x0, a6);
                if (channels > 7) a7 = TLanes.MultiplyAdd(TLanes.Create(w[7]), x0, a7);
            }
            int count = j1 - j;
            Store<TLanes, TVector>(y + j, a0, bias, 0, count, kind);
            if (channels > 1) Store<TLanes, TVector>(y + stride + j, a1, bias, 1, count, kind);
            if (channels > 2) Store<TLanes, TVector>(y + 2 * stride + j, a2, bias, 2, count, kind);
            if (channels > 3) Store<TLanes, TVector>(y + 3 * stride + j, a3, bias, 3, count, kind);
            if (channels > 4) Store<TLanes, TVector>(y + 4 * stride + j, a4, bias, 4, count, kind);
            if (channels > 5) Store<TLanes, TVector>(y + 5 * stride + j, a5, bias, 5, count, kind);
            if (channels > 6) Store<TLanes, TVector>(y + 6 * stride + j, a6, bias, 6, count, kind);
            if (channels > 7) Store<TLanes, TVector>(y + 7 * stride + j, a7, bias, 7, count, kind);
        }
    }

    /// <summary>
    /// <see cref="Outputs{TLanes, TVector, TChannels}"/>'s positions from <paramref name="j0"/> in whole pairs of 512-bit
    /// vectors, while two more fit before <paramref name="j1"/>; returns the first position left. Each tap's weight is
    /// broadcast once into a register for both vectors, so a tap costs 2 loads, TChannels broadcasts and 2 x TChannels
    /// multiply-adds, against one load and TChannels broadcasts inside the multiply-adds per vector (two loads per
    /// multiply-add and 8 chains in flight held the single vectors to about 40 % of the multiply-add rate). Each output
    /// is the same sum in the same order: the same bits.
    /// </summary>
    private static int WholePairs<TChannels>(ref Job job, float** sources, float* weights, float* bias, float* y, long stride, int j0, int j1)
        where TChannels : struct, Gemm.IConstant
    {
        int channels = TChannels.Value, taps = job.P.R * job.P.S, kind = job.Kind;
        int j = j0;
        for (; j + 2 * Lanes <= j1; j += 2 * Lanes)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
            float* w = weights;
            for (int t = 0; t < taps; t++, w += Group)
            {
                var x0 = Vector512.Load(sources[t] + j);
                var x1 = Vector512.Load(sources[t] + j + Lanes);
                Two(ref a0, ref b0, x0, x1, w[0]);
                if (channels > 1) Two(ref a1, ref b1, x0, x1, w[1]);
                if (channels > 2) Two(ref a2, ref b2, x0, x1, w[2]);
                if (channels > 3) Two(ref a3, ref b3, x0, x1, w[3]);
                if (channels > 4) Two(ref a4, ref b4, x0, x1, w[4]);
                if (channels > 5) Two(ref a5, ref b5, x0, x1, w[5]);
                if (channels > 6) Two(ref a6, ref b6, x0, x1, w[6]);
                if (channels > 7) Two(ref a7, ref b7, x0, x1, w[7]);
            }
            StorePair(y + j, a0, b0, bias, 0, kind);
            if (channels > 1) StorePair(y + stride + j, a1, b1, bias, 1, kind);
            if (channels > 2) StorePair(y + 2 * stride + j, a2, b2, bias, 2, kind);
            if (channels > 3) StorePair(y + 3 * stride + j, a3, b3, bias, 3, kind);
            if (channels > 4) StorePair(y + 4 * stride + j, a4, b4, bias, 4, kind);
            if (channels > 5) StorePair(y + 5 * stride + j, a5, b5, bias, 5, kind);
            if (channels > 6) StorePair(y + 6 * stride + j, a6, b6, bias, 6, kind);
            if (channels > 7) StorePair(y + 7 * stride + j, a7, b7, bias, 7, kind);
        }
        return j;
    }

    /// <summary>a += weight * x0, b += weight * x1, the weight broadcast once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Two(ref Vector512<float> a, ref Vector512<float> b, Vector512<float> x0, Vector512<float> x1, float weight)
    {
        var wv = Vector512.Create(weight);
        a = Vector512.FusedMultiplyAdd(wv, x0, a);
        b = Vector512.FusedMultiplyAdd(wv, x1, b);
    }

    /// <summary><see cref="Store{TLanes, TVector}"/> of two whole vectors of one channel, a at <paramref name="y"/> and b after it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePair(float* y, Vector512<float> a, Vector512<float> b, float* bias, int k, int kind)
    {
        Store<Lanes512, Vector512<float>>(y, a, bias, k, Lanes, kind);
        Store<Lanes512, Vector512<float>>(y + Lanes, b, bias, k, Lanes, kind);
    }

    /// <summary>
    /// <see cref="Outputs{TLanes, TVector, TChannels}"/> for a group of at most 3 channels, two vectors of positions at a
    /// time, so that each tap's multiply-adds form 2 * TChannels chains, not fewer than the 4 that keep the multiply-add
    /// unit busy (one thread, 256 MNIST samples, 19 channels: the group of 3 cost 24 µs more than 3/19 of the stem).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void PairedOutputs<TLanes, TVector, TChannels>(ref Job job, float* planes, float* y, long stride, int group, int j0, int j1)
        where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged where TChannels : struct, Gemm.IConstant
    {
        int channels = TChannels.Value, taps = job.P.R * job.P.S, lanes = TLanes.Count, kind = job.Kind;
        long planeStride = job.PlaneStride;
        int* offsets = job.Taps;
        float** sources = stackalloc float*[taps];
        for (int t = 0; t < taps; t++) sources[t] = planes + offsets[taps + t] * planeStride + offsets[t];
        float* weights = job.W + (long)group * taps * Group;
        float* bias = job.Bias == null ? null : job.Bias + group * Group;
        // Whole pairs, then a last single vector when the plane has an odd number of them: its positions past the
        // plane read the planes' slack, and only the plane's are stored.
        for (int j = j0; j < j1; j += 2 * lanes)
        {
            TVector a0 = default, a1 = default, a2 = default, b0 = default, b1 = default, b2 = default;
            float* w = weights;
            for (int t = 0; t < taps; t++, w += Group)
            {
                var x0 = TLanes.Load(sources[t] + j);
                var x1 = TLanes.Load(sources[t] + j + lanes);
                a0 = TLanes.MultiplyAdd(TLanes.Create(w[0]), x0, a0);
                b0 = TLanes.MultiplyAdd(TLanes.Create(w[0]), x1, b0);
                if (channels > 1)
                {
                    a1 = TLanes.MultiplyAdd(TLanes.Create(w[1]), x0, a1);
                    b1 = TLanes.MultiplyAdd(TLanes.Create(w[1]), x1, b1);
                }
                if (channels > 2)
                {
                    a2 = TLanes.MultiplyAdd(TLanes.Create(w[2]), x0, a2);
                    b2 = TLanes.MultiplyAdd(TLanes.Create(w[2]), x1, b2);
                }
            }
            int count = j1 - j;
            Store<TLanes, TVector>(y + j, a0, bias, 0, count, kind);
            if (channels > 1) Store<TLanes, TVector>(y + stride + j, a1, bias, 1, count, kind);
            if (channels > 2) Store<TLanes, TVector>(y + 2 * stride + j, a2, bias, 2, count, kind);
            if (count <= lanes) break;
            count -= lanes;
            Store<TLanes, TVector>(y + j + lanes, b0, bias, 0, count, kind);
            if (channels > 1) Store<TLanes, TVector>(y + stride + j + lanes, b1, bias, 1, count, kind);
            if (channels > 2) Store<TLanes, TVector>(y + 2 * stride + j + lanes, b2, bias, 2, count, kind);
        }
    }

    /// <summary>
    /// y[0, Count) = act(a + bias[k]) (<paramref name="kind"/>: <see cref="IVectorLanes{TVector}.Activate"/>'s), only the
    /// first <paramref name="count"/> of them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store<TLanes, TVector>(float* y, TVector a, float* bias, int k, int count, int kind)
        where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged
    {
        if (bias != null) a = TLanes.Add(a, TLanes.Create(bias[k]));
        if (kind != 0) a = TLanes.Activate(a, kind);
        if (count >= TLanes.Count) TLanes.Store(a, y);
        else TLanes.MaskStore(y, TLanes.FirstLanes(count), a);
    }
}
