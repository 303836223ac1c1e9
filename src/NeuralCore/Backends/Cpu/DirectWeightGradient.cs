using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// The weight gradient of a stride-1 "same" convolution (output planes the size of the input's: CP-ResNet's 3x3 with
/// padding 1, its 1x1, and the 1x3 left of a 3x3 on maps one row high) as direct dot products, with no im2col and no
/// GEMM packing. A chunk of samples' dy and x are copied channel-major ([K, nb*HW] and [C, nb*HW]); then in the flat
/// position j of those rows, tap (r, s) pairs dy[k, j] with x[c, j + (r - padH) * W + (s - padW)], zero where that
/// input lies outside the sample's plane. Vectors of 16 positions feed 4 output channels x 5 input channels of one tap,
/// 20 accumulators, each x load (masked at the borders) shared by 4 multiply-adds and each dy load by 5.
/// </summary>
/// <remarks>
/// Why: the GEMM path writes R*S shifted copies of x (im2col), then transposes them into its B panels, and does both
/// once per input value whatever the number of output channels; at 19 channels that copying took as long as the
/// multiplying (a 3x3 19->19 weight gradient ran at 40-54 GMAC/s against 73-76 for 32->32). Here a value is copied
/// once and read from L2 by each tap.
/// <para>
/// The border masks repeat with the plane: the mask of the vector at j depends only on j mod lcm(16, HW), so one table
/// of 16-bit masks per tap covers every chunk (chunks start at a sample). Masked lanes read x as zero, exactly the zero
/// border im2col supplies, so a non-finite dy meets the same zeros in both paths. Results depend on the chunking
/// (threads share chunks; each part's sums are added in part order) as with the GEMM path, not on timing.
/// </para>
/// </remarks>
internal static unsafe class DirectWeightGradient
{
    private const int Lanes = 16;
    // Output and input channels per block of accumulators (4 x 5 = 20 of the 32 vector registers, with 4 dy vectors,
    // the x vector, the mask and its lane bits).
    private const int KBlock = 4;
    private const int CBlock = 5;
    // A chunk's channel-major dy and x together stay within this many floats (512 KiB, half a core's L2).
    private const long MaxChunkFloats = 1 << 17;
    // Kernels of at most this many taps, with mask tables of at most MaxMaskEntries (taps x phases) on the stack.
    private const int MaxTaps = 64;
    private const int MaxMaskEntries = 1 << 14;
    // From this many output channels the GEMM path wins (see Supports).
    private const int MaxOutputChannels = 64;

    /// <summary>
    /// True where <see cref="CanRun"/> and this path was measured faster than the GEMM path (MNIST b256 and mel b64, two
    /// threads): for fewer than 64 output channels, kernels with more than one tap, and 1x1 kernels whose input channels
    /// leave the GEMM's 32-column panels part empty or whose planes the GEMM path must gather (3x3 19->19 on 6 x 6: 0.36
    /// against 0.70 ms; 32->32: 1.02 against 1.36 ms; 1x1 38->38 on 7 x 24: 0.24 against 0.26 ms). Kernels with more taps
    /// on planes the GEMM path gathers (under 32 values) at any width (1x3 32->64 on 1 x 6: 0.15 against 0.19 ms). Wider
    /// layers keep the GEMM (1x1 128->128 on 7 x 24: 2.8 against 2.1 ms; 3x3 32->64 on 7 x 24: 2.4 against 2.2 ms).
    /// </summary>
    internal static bool Supports(in Conv2dParams p)
    {
        if (!Enabled || !CanRun(p)) return false;
        int taps = p.R * p.S, plane = p.H * p.W;
        if (taps > 1 && plane < ConvKernels.MinDirectWeightPlane) return true;
        return p.K < MaxOutputChannels && (taps > 1 || p.C % Gemm.PanelColumns != 0 || plane < ConvKernels.MinDirectWeightPlane);
    }

    /// <summary>
    /// True for one group, stride 1, no dilation and output planes the size of the input's, where the 512-bit kernels
    /// run (tests narrow the kernel width to check the GEMM path).
    /// </summary>
    internal static bool CanRun(in Conv2dParams p) =>
        Avx512F.IsSupported && Gemm.Kind == Gemm.KernelKind.Vector512 && p.Groups == 1
        && p.StrideH == 1 && p.StrideW == 1 && p.DilationH == 1 && p.DilationW == 1 && p.P == p.H && p.Q == p.W
        && p.R * p.S <= MaxTaps && (long)p.R * p.S * Phases(p.H * p.W) <= MaxMaskEntries;

    /// <summary>False sends every weight gradient through the GEMM path (tests compare the two).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>Vectors after which the border masks repeat: lcm(16, plane) / 16.</summary>
    private static int Phases(int plane) => plane / (1 << Math.Min(System.Numerics.BitOperations.TrailingZeroCount(plane), 4));

    private struct Job
    {
        public Conv2dParams P;
        public float* Dy, X, Dw, Partials;
        public int Plane, Taps, Phases, Chunk, Chunks, Parts;
        // Per tap: the flat offset it reads x at, and its masks [phase] (bit l: lane l reads inside the plane).
        public int* Offsets;
        public ushort* Masks;
        // Floats before and after a chunk's x rows that a shifted vector may read (masked lanes only).
        public int Slack;
    }

    /// <summary>dw [K, C, R, S] = the weight gradient of dy [N, K, H, W] for x [N, C, H, W] (sample-major; dw overwritten).</summary>
    internal static void Run(float* dy, float* x, float* dw, in Conv2dParams p)
    {
        int taps = p.R * p.S, plane = p.H * p.W, phases = Phases(plane);
        int* offsets = stackalloc int[taps];
        ushort* masks = stackalloc ushort[taps * phases];
        int reach = 0;
        for (int t = 0; t < taps; t++)
        {
            int dr = t / p.S - p.PadH, ds = t % p.S - p.PadW;
            offsets[t] = dr * p.W + ds;
            reach = Math.Max(reach, Math.Abs(offsets[t]));
            for (int phase = 0; phase < phases; phase++)
            {
                int bits = 0;
                for (int lane = 0; lane < Lanes; lane++)
                {
                    int at = (phase * Lanes + lane) % plane, row = at / p.W + dr, column = at % p.W + ds;
                    if ((uint)row < (uint)p.H && (uint)column < (uint)p.W) bits |= 1 << lane;
                }
                masks[t * phases + phase] = (ushort)bits;
            }
        }
        var job = new Job
        {
            P = p, Dy = dy, X = x, Dw = dw, Plane = plane, Taps = taps, Phases = phases,
            Offsets = offsets, Masks = masks, Slack = (reach + 2 * Lanes - 1) / Lanes * Lanes,
        };
        int threads = CpuThreading.Threads;
        long perSample = (long)(p.K + p.C) * plane;
        job.Chunk = (int)Math.Clamp(MaxChunkFloats / perSample, 1, Math.Max(1, (p.N + threads - 1) / threads));
        long macs = (long)p.N * p.K * p.C * taps * plane;
        (job.Chunk, job.Chunks, job.Parts) = ConvKernels.ShareChunks(p.N, job.Chunk, macs);
        long length = (long)p.K * p.C * taps;
        if (job.Parts > 1) job.Partials = ConvScratch.Current.Get(ConvScratch.Slot.Partials, (job.Parts - 1) * length);
        // SAFETY: job and the tables on this stack frame outlive ForParts, which returns when every part is done.
        if (job.Parts == 1) RunPart(&job, 0);
        else CpuThreading.ForParts(job.Parts, &RunPart, &job);
        // Fixed-order reduction: dw = part 0 + part 1 + ... so the sum is the same on every run.
        for (int part = 1; part < job.Parts; part++) ConvKernels.Add(dw, job.Partials + (part - 1) * length, length);
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        ref readonly Conv2dParams p = ref job.P;
        int first = (int)((long)part * job.Chunks / job.Parts), end = (int)((long)(part + 1) * job.Chunks / job.Parts);
        long length = (long)p.K * p.C * job.Taps;
        float* dw = part == 0 ? job.Dw : job.Partials + (part - 1) * length;
        new Span<float>(dw, checked((int)length)).Clear();
        int kBlocks = (p.K + KBlock - 1) / KBlock, cBlocks = (p.C + CBlock - 1) / CBlock;
        for (int chunk = first; chunk < end; chunk++)
        {
            int n0 = chunk * job.Chunk, nb = Math.Min(job.Chunk, p.N - n0);
            if (nb <= 0) break;
            int ld = nb * job.Plane;
            // [slack][C rows of x][slack][K rows of dy][a vector]: a masked tail vector may read past its row's end.
            float* buffer = ConvScratch.Current.Get(ConvScratch.Slot.ChannelMajor, 2L * job.Slack + (long)(p.C + p.K) * ld + Lanes);
            float* xcm = buffer + job.Slack, dycm = xcm + (long)p.C * ld + job.Slack;
            ConvKernels.MoveChunk(job.X + (long)n0 * p.C * job.Plane, (long)p.C * job.Plane, p.C, job.Plane, nb, xcm, toSamples: false);
            ConvKernels.MoveChunk(job.Dy + (long)n0 * p.K * job.Plane, (long)p.K * job.Plane, p.K, job.Plane, nb, dycm, toSamples: false);
            // Blocks as even as the channel counts allow (19 = 5 + 5 + 5 + 4 input channels, 4 + 4 + 4 + 4 + 3 output).
            for (int cb = 0; cb < cBlocks; cb++)
            {
                int c0 = (int)((long)cb * p.C / cBlocks), c1 = (int)((long)(cb + 1) * p.C / cBlocks);
                for (int kb = 0; kb < kBlocks; kb++)
                {
                    int k0 = (int)((long)kb * p.K / kBlocks), k1 = (int)((long)(kb + 1) * p.K / kBlocks);
                    for (int t = 0; t < job.Taps; t++)
                        Block(ref job, dycm + (long)k0 * ld, xcm + (long)c0 * ld + job.Offsets[t], ld, job.Masks + t * job.Phases,
                            dw + ((long)k0 * p.C + c0) * job.Taps + t, k1 - k0, c1 - c0);
                }
            }
        }
    }

    private static void Block(ref Job job, float* dy, float* x, int ld, ushort* masks, float* dw, int kCount, int cCount)
    {
        switch (kCount * 8 + cCount)
        {
            case 1 * 8 + 1: Block<Gemm.N1, Gemm.N1>(ref job, dy, x, ld, masks, dw); break;
            case 1 * 8 + 2: Block<Gemm.N1, Gemm.N2>(ref job, dy, x, ld, masks, dw); break;
            case 1 * 8 + 3: Block<Gemm.N1, Gemm.N3>(ref job, dy, x, ld, masks, dw); break;
            case 1 * 8 + 4: Block<Gemm.N1, Gemm.N4>(ref job, dy, x, ld, masks, dw); break;
            case 1 * 8 + 5: Block<Gemm.N1, Gemm.N5>(ref job, dy, x, ld, masks, dw); break;
            case 2 * 8 + 1: Block<Gemm.N2, Gemm.N1>(ref job, dy, x, ld, masks, dw); break;
            case 2 * 8 + 2: Block<Gemm.N2, Gemm.N2>(ref job, dy, x, ld, masks, dw); break;
            case 2 * 8 + 3: Block<Gemm.N2, Gemm.N3>(ref job, dy, x, ld, masks, dw); break;
            case 2 * 8 + 4: Block<Gemm.N2, Gemm.N4>(ref job, dy, x, ld, masks, dw); break;
            case 2 * 8 + 5: Block<Gemm.N2, Gemm.N5>(ref job, dy, x, ld, masks, dw); break;
            case 3 * 8 + 1: Block<Gemm.N3, Gemm.N1>(ref job, dy, x, ld, masks, dw); break;
            case 3 * 8 + 2: Block<Gemm.N3, Gemm.N2>(ref job, dy, x, ld, masks, dw); break;
            case 3 * 8 + 3: Block<Gemm.N3, Gemm.N3>(ref job, dy, x, ld, masks, dw); break;
            case 3 * 8 + 4: Block<Gemm.N3, Gemm.N4>(ref job, dy, x, ld, masks, dw); break;
            case 3 * 8 + 5: Block<Gemm.N3, Gemm.N5>(ref job, dy, x, ld, masks, dw); break;
            case 4 * 8 + 1: Block<Gemm.N4, Gemm.N1>(ref job, dy, x, ld, masks, dw); break;
            case 4 * 8 + 2: Block<Gemm.N4, Gemm.N2>(ref job, dy, x, ld, masks, dw); break;
            case 4 * 8 + 3: Block<Gemm.N4, Gemm.N3>(ref job, dy, x, ld, masks, dw); break;
            case 4 * 8 + 4: Block<Gemm.N4, Gemm.N4>(ref job, dy, x, ld, masks, dw); break;
            default: Block<Gemm.N4, Gemm.N5>(ref job, dy, x, ld, masks, dw); break;
        }
    }

    /// <summary>
    /// dw[k, c, tap] += sum over the chunk's positions j of dy[k, j] * x[c, j] (x already offset by the tap, zero where
    /// <paramref name="masks"/> says the tap reads off the plane), for the TK output channels of dy's rows and the TC
    /// input channels of x's rows (rows <paramref name="ld"/> apart).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Block<TK, TC>(ref Job job, float* dy, float* x, int ld, ushort* masks, float* dw)
        where TK : struct, Gemm.IConstant where TC : struct, Gemm.IConstant
    {
        int kCount = TK.Value, cCount = TC.Value, phases = job.Phases;
        long dwK = (long)job.P.C * job.Taps, dwC = job.Taps;
        var laneBits = Vector512.Create(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768);
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a04 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default, a14 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a24 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default, a34 = default;
        int vectors = (ld + Lanes - 1) / Lanes, phase = 0;
        for (int v = 0; v < vectors; v++)
        {
            int j = v * Lanes;
            int bits = masks[phase];
            if (++phase == phases) phase = 0;
            if (j + Lanes > ld) bits &= (1 << (ld - j)) - 1;
            var inside = Vector512.Equals(Vector512.Create(bits) & laneBits, laneBits).AsSingle();
            // dy's lanes past the chunk are cleared too: they hold the next row's values (or slack).
            var d0 = Vector512.Load(dy + j);
            var d1 = kCount > 1 ? Vector512.Load(dy + ld + j) : default;
            var d2 = kCount > 2 ? Vector512.Load(dy + 2 * ld + j) : default;
            var d3 = kCount > 3 ? Vector512.Load(dy + 3 * ld + j) : default;
            if (j + Lanes > ld)
            {
                var live = Vector512.LessThan(Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), Vector512.Create(ld - j)).AsSingle();
                d0 = Vector512.ConditionalSelect(live, d0, Vector512<float>.Zero);
                d1 = Vector512.ConditionalSelect(live, d1, Vector512<float>.Zero);
                d2 = Vector512.ConditionalSelect(live, d2, Vector512<float>.Zero);
                d3 = Vector512.ConditionalSelect(live, d3, Vector512<float>.Zero);
            }
            var xv = Vector512.ConditionalSelect(inside, Vector512.Load(x + j), Vector512<float>.Zero);
            a00 = Vector512.FusedMultiplyAdd(d0, xv, a00);
            if (kCount > 1) a10 = Vector512.FusedMultiplyAdd(d1, xv, a10);
            if (kCount > 2) a20 = Vector512.FusedMultiplyAdd(d2, xv, a20);
            if (kCount > 3) a30 = Vector512.FusedMultiplyAdd(d3, xv, a30);
            if (cCount > 1)
            {
                xv = Vector512.ConditionalSelect(inside, Vector512.Load(x + ld + j), Vector512<float>.Zero);
                a01 = Vector512.FusedMultiplyAdd(d0, xv, a01);
                if (kCount > 1) a11 = Vector512.FusedMultiplyAdd(d1, xv, a11);
                if (kCount > 2) a21 = Vector512.FusedMultiplyAdd(d2, xv, a21);
                if (kCount > 3) a31 = Vector512.FusedMultiplyAdd(d3, xv, a31);
            }
            if (cCount > 2)
            {
                xv = Vector512.ConditionalSelect(inside, Vector512.Load(x + 2 * ld + j), Vector512<float>.Zero);
                a02 = Vector512.FusedMultiplyAdd(d0, xv, a02);
                if (kCount > 1) a12 = Vector512.FusedMultiplyAdd(d1, xv, a12);
                if (kCount > 2) a22 = Vector512.FusedMultiplyAdd(d2, xv, a22);
                if (kCount > 3) a32 = Vector512.FusedMultiplyAdd(d3, xv, a32);
            }
            if (cCount > 3)
            {
                xv = Vector512.ConditionalSelect(inside, Vector512.Load(x + 3 * ld + j), Vector512<float>.Zero);
                a03 = Vector512.FusedMultiplyAdd(d0, xv, a03);
                if (kCount > 1) a13 = Vector512.FusedMultiplyAdd(d1, xv, a13);
                if (kCount > 2) a23 = Vector512.FusedMultiplyAdd(d2, xv, a23);
                if (kCount > 3) a33 = Vector512.FusedMultiplyAdd(d3, xv, a33);
            }
            if (cCount > 4)
            {
                xv = Vector512.ConditionalSelect(inside, Vector512.Load(x + 4 * ld + j), Vector512<float>.Zero);
                a04 = Vector512.FusedMultiplyAdd(d0, xv, a04);
                if (kCount > 1) a14 = Vector512.FusedMultiplyAdd(d1, xv, a14);
                if (kCount > 2) a24 = Vector512.FusedMultiplyAdd(d2, xv, a24);
                if (kCount > 3) a34 = Vector512.FusedMultiplyAdd(d3, xv, a34);
            }
        }
        Row(dw, dwC, cCount, a00, a01, a02, a03, a04);
        if (kCount > 1) Row(dw + dwK, dwC, cCount, a10, a11, a12, a13, a14);
        if (kCount > 2) Row(dw + 2 * dwK, dwC, cCount, a20, a21, a22, a23, a24);
        if (kCount > 3) Row(dw + 3 * dwK, dwC, cCount, a30, a31, a32, a33, a34);
    }

    /// <summary>dw[c * stride] += the lane sum of the c-th accumulator, for the first <paramref name="count"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row(float* dw, long stride, int count, Vector512<float> a0, Vector512<float> a1, Vector512<float> a2,
        Vector512<float> a3, Vector512<float> a4)
    {
        dw[0] += Vector512.Sum(a0);
        if (count > 1) dw[stride] += Vector512.Sum(a1);
        if (count > 2) dw[2 * stride] += Vector512.Sum(a2);
        if (count > 3) dw[3 * stride] += Vector512.Sum(a3);
        if (count > 4) dw[4 * stride] += Vector512.Sum(a4);
    }
}
