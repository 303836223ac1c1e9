using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// The weight gradient of a stride-1 "same" convolution (output planes the size of the input's: CP-ResNet's 3x3 with
/// padding 1, its 1x1, and the 1x3 left of a 3x3 on maps one row high), and of a one-channel stride-2 stem
/// (<see cref="RunStem"/>), as direct dot products, with no im2col and no GEMM packing. A chunk of samples' dy and x
/// are copied channel-major ([K, nb*HW] and [C, nb*HW]); then in the flat position j of those rows, tap (r, s) pairs
/// dy[k, j] with x[c, j + (r - padH) * W + (s - padW)], zero where that input lies outside the sample's plane. Vectors
/// of 16 positions feed 4 output channels x 5 input channels of one tap, 20 accumulators, each x load (masked at the
/// borders) shared by 4 multiply-adds and each dy load by 5. The kernel is written once for both vector widths
/// (<see cref="IVectorLanes{TVector}"/>): without AVX-512 it runs on 256-bit vectors (AVX2 and FMA), 8 positions a
/// vector, in blocks of 2 output channels x 5 input channels or taps, which with the dy and x vectors and the mask fit
/// AVX2's 16 vector registers.
/// </summary>
/// <remarks>
/// Why: the GEMM path writes R*S shifted copies of x (im2col), then transposes them into its B panels, and does both
/// once per input value whatever the number of output channels; at 19 channels that copying took as long as the
/// multiplying (a 3x3 19->19 weight gradient ran at 40-54 GMAC/s against 73-76 for 32->32). Here a value is copied
/// once and read from L2 by each tap.
/// <para>
/// The border masks repeat with the plane: the mask of the vector at j depends only on j mod lcm(16, HW), so one table
/// of 16-bit masks per tap covers every chunk (chunks start at a sample); each call expands it once into mask vectors,
/// which the kernel loads (making each vector from its bits at every step took 6-9 % of a 3x3 weight gradient's time,
/// harness, one thread, MNIST b256: 19->19 on 6 x 6 694 -> 631-641 µs, 32->32 1940 -> 1782-1839 µs, 19->19 on 3 x 6
/// 355 -> 323 µs). Masked lanes read x as zero, exactly the zero
/// border im2col supplies, so a non-finite dy meets the same zeros in both paths. Results depend on the chunking
/// (threads share chunks; each part's sums are added in part order) as with the GEMM path, not on timing.
/// </para>
/// <para>
/// A block takes a long run in segments (<see cref="SegmentLength"/>), all its taps over one segment before the next,
/// each tap's accumulators kept in memory between segments: the same sums in the same order, but the block's rows come
/// from L2 once per segment instead of once per tap (harness, one thread, alternated: 3x3 32->32 on 31 x 24, mel b64,
/// 0.72-0.86 of the time; 19->19 on 15 x 24 0.73-0.88; MNIST b256 32->32 on 6 x 6 0.75-0.77; two threads, whose parts
/// take shorter chunks, 0.83-0.90 on mel's maps and 0.92-1.00 on MNIST's). A stem's chunk goes the same way, in pieces
/// of a sample's run or in groups of samples (mel b64 1->19 and 1->32 0.84-0.91, MNIST b256 0.84-0.87, one thread;
/// 0.90-1.01 at two). Those were the Xeon's numbers (48 KiB of L1 data cache per core). On Zen 4 (32 KiB) a segment's
/// rows, the carried accumulators and the masks do not fit L1 together, and one pass per tap over the whole run was the
/// faster at every segment length tried (two threads, alternated: 3x3 32->32 on 31 x 24 0.80-0.93 of the time of
/// segments of 768, 19->19 on 15 x 24 0.79-0.90, MNIST b256 32->32 on 6 x 6 0.83-0.91, mel's stem 0.80-0.97; segments
/// of 256-512 were slower still), so segments run only where the L1 data cache holds 48 KiB or more
/// (<see cref="SegmentLengthFor"/>).
/// </para>
/// <para>
/// Where no tap reads off the plane (a 1x1 without padding), a chunk's rows are padded with zeros to whole vectors and
/// a lean kernel runs them with plain loads and no masks (zeros add nothing, so the sums are those of the masked
/// kernel). Each block's 20 lane sums are taken four at a time (<see cref="IVectorLanes{TVector}.Sums4"/>) in Vector512.Sum's order. Harness,
/// one thread, 256 samples on 1 x 6: 1x1 76->76 292 -> 207-237 µs, 38->38 83 -> 61-73 µs.
/// </para>
/// </remarks>
internal static unsafe class DirectWeightGradient
{
    private const int Lanes = 16;
    // Output channels and input channels (a stem's: taps) per block of accumulators (4 x 5 = 20 of the 32 vector
    // registers, with 4 dy vectors, the x vector, the mask and its lane bits).
    private const int KBlock = 4;
    private const int XBlock = 5;
    // With 256-bit vectors (16 registers), blocks take 2 output channels: 2 x 5 accumulators, the 2 dy vectors, the x
    // vector and the mask.
    private const int KBlockNarrow = 2;
    private const int Accumulators = KBlock * XBlock;
    // Runs longer than this many positions (a block's 9 rows over 45 KiB) are taken in segments of at most
    // SegmentLength (27 KiB), so the block's rows stay in L1 from tap to tap.
    private const int MinSegmentedRun = 1280;

    // The L1 data cache from which segments pay: the Xeon's 48 KiB (measured faster), not Zen 4's 32 KiB (slower).
    private const long MinSegmentedLevelOne = 48L << 10;

    /// <summary>
    /// The most positions of a chunk's run that a block of a kernel with a border takes at once before going on to its next
    /// tap, or int.MaxValue for one pass over the run per tap: <see cref="SegmentLengthFor"/> this machine's L1 data
    /// cache (tests set it to compare segment lengths; the sums do not depend on it).
    /// </summary>
    internal static int SegmentLength { get; set; } = SegmentLengthFor(CpuCaches.LevelOneBytes());

    /// <summary>Segments of 768 positions (27 KiB of a block's nine rows) where a core's L1 data cache holds at least 48 KiB; else none.</summary>
    internal static int SegmentLengthFor(long levelOneBytes) => levelOneBytes >= MinSegmentedLevelOne ? 768 : int.MaxValue;

    // A chunk's channel-major dy and x together stay within this many floats (512 KiB, half a core's L2).
    private const long MaxChunkFloats = 1 << 17;
    // Kernels of at most this many taps, with mask tables of at most MaxMaskEntries (taps x phases) on the stack.
    private const int MaxTaps = 64;
    private const int MaxMaskEntries = 1 << 14;
    // From this many output channels the GEMM path wins (see Supports).
    private const int MaxOutputChannels = 64;

    /// <summary>
    /// True where <see cref="CanRun"/> and this path was measured faster than the GEMM path (MNIST b256 and mel b64, two
    /// threads). Kernels with more than one tap: for fewer than 64 output channels (3x3 19->19 on 6 x 6: 0.36 against
    /// 0.70 ms; 32->32: 1.02 against 1.36 ms), and at any width on planes the GEMM path gathers, under 32 values (1x3
    /// 32->64 on 1 x 6: 0.15 against 0.19 ms). 1x1 kernels: at any width when the input channels leave the GEMM's
    /// 32-column panels part empty (in the training step, whole backward: 76->76 on 1 x 6 0.245-0.246 against
    /// 0.258-0.277 ms, on 7 x 24 1.63-1.87 against 1.78-2.02 ms; 38->38 on 7 x 24: 0.24 against 0.26 ms) on planes under
    /// <see cref="ConvKernels.InPlacePlane"/> positions (from there one sample's planes make a wide enough GEMM, and this
    /// path's channel-major copies of a chunk cost more than they save: 19->19 on 31 x 24 0.54-0.58 against 0.75-0.77 ms,
    /// harness, two threads, alternated), and for fewer
    /// than 64 output channels on gathered planes. Wider layers keep the GEMM (1x1 128->128 on 7 x 24: 2.8 against
    /// 2.1 ms, on 1 x 6: 0.42 against 0.28 ms; 3x3 32->64 on 7 x 24: 2.4 against 2.2 ms). The same rule holds at 256
    /// bits, where every shape it sends here from CP-ResNet ran faster than the 256-bit GEMM path (harness, two threads,
    /// GEMM over direct: 3x3 1.10-2.19, 1x1 1.25-2.52; 3x3 32->64 on 7 x 24, which it leaves to the GEMM, 1.00).
    /// </summary>
    internal static bool Supports(in Conv2dParams p)
    {
        if (!Enabled || !CanRun(p)) return false;
        int taps = p.R * p.S, plane = p.H * p.W;
        bool partEmpty = p.C % Gemm.PanelColumns != 0, gathered = plane < ConvKernels.MinDirectWeightPlane;
        if (taps > 1) return gathered || p.K < MaxOutputChannels;
        return (partEmpty && plane < ConvKernels.InPlacePlane) || (gathered && p.K < MaxOutputChannels);
    }

    /// <summary>
    /// True for one group, stride 1, no dilation and output planes the size of the input's, on a CPU with the 512-bit or
    /// 256-bit kernels (<see cref="Gemm.Kind"/>; tests narrow it to check the other widths and the GEMM path).
    /// </summary>
    internal static bool CanRun(in Conv2dParams p) =>
        (Gemm.Runs512 || Gemm.Runs256) && p.Groups == 1
        && p.StrideH == 1 && p.StrideW == 1 && p.DilationH == 1 && p.DilationW == 1 && p.P == p.H && p.Q == p.W
        && p.R * p.S <= MaxTaps && (long)p.R * p.S * Phases(p.H * p.W, VectorLanes) <= MaxMaskEntries;

    /// <summary>Floats per vector of the kernels that run: 16 with AVX-512 (<see cref="Gemm.Runs512"/>), else 8.</summary>
    private static int VectorLanes => Gemm.Runs512 ? Lanes : Lanes / 2;

    /// <summary>False sends every weight gradient through the GEMM path (tests compare the two).</summary>
    internal static bool Enabled { get; set; } = true;

    private struct Job
    {
        public Conv2dParams P;
        public float* Dy, X, Dw, Partials;
        public int Taps, Phases, Chunk, Chunks, Parts;
        // Positions per sample in the channel-major rows: the plane, or for a stem its Px rows of Q.
        public int Grid;
        // Per tap: the flat offset it reads x at (a stem's: inside its phase plane, which TapPlane names).
        public int* Offsets, TapPlane;
        // Per tap of a stride-1 kernel, the masks [phase] of the positions j inside the plane, vectors of the kernels'
        // width: all bits of lane l set where position phase * lanes + l is (none when Inside).
        public float* MaskVectors;
        // A stem's input planes: rows per sample, and the smallest row offset of the taps (u0 below).
        public int Px, U0;
        // Floats around a chunk's x rows that a shifted vector may read (masked lanes only).
        public int Slack;
        // Whether every tap reads inside the plane at every position (a 1x1 kernel without padding): no masks needed.
        public bool Inside;
        // A stem's dy made per chunk instead of read from Dy: Fill(FillState, n0, nb, chunk dy [nb, K, P, Q]).
        public delegate*<void*, int, int, float*, void> Fill;
        public void* FillState;
    }

    /// <summary>
    /// One block of accumulators: TK rows of dy against TC x rows, each x row already offset to its tap, over Samples runs
    /// of Length positions (the rows of the next run DySample and XSample floats on).
    /// </summary>
    private struct Pairing
    {
        public float* Dy, X0, X1, X2, X3, X4, Dw;
        // Floats between dy's rows; between dw's entries for consecutive dy rows and for consecutive x rows.
        public long DyStride, DwK, DwX;
        // The border masks (Job.MaskVectors) and the carried accumulators, vectors of the block's width.
        public void* Masks;
        public int Phases, Length;
        public int Samples;
        public long DySample, XSample;
        // The positions [From, To) of each sample's run this call takes, From a whole number of vectors in; its
        // accumulators start from Carry's (Resume) or zero, and go on to Carry unless the block's sums end here (Finish),
        // where they are added to dw.
        public int From, To;
        public bool Resume, Finish;
        public void* Carry;
        // Room for a run's last vector of each of a block's rows (PlainBlock), KBlock + XBlock vectors.
        public float* Tail;
    }

    /// <summary>dw [K, C, R, S] = the weight gradient of dy [N, K, H, W] for x [N, C, H, W] (sample-major; dw overwritten).</summary>
    internal static void Run(float* dy, float* x, float* dw, in Conv2dParams p)
    {
        int lanes = VectorLanes, taps = p.R * p.S, plane = p.H * p.W, phases = Phases(plane, lanes);
        int* offsets = stackalloc int[taps];
        ushort* masks = stackalloc ushort[taps * phases];
        int reach = 0;
        for (int t = 0; t < taps; t++)
        {
            int dr = t / p.S - p.PadH, ds = t % p.S - p.PadW;
            offsets[t] = dr * p.W + ds;
            reach = Math.Max(reach, Math.Abs(offsets[t]));
            FillMasks(masks + t * phases, phases, lanes, p.W, p.H, dr, ds, p.H, p.W);
        }
        var job = new Job
        {
            P = p, Dy = dy, X = x, Dw = dw, Grid = plane, Taps = taps, Phases = phases,
            Offsets = offsets, Slack = (reach + 2 * Lanes - 1) / Lanes * Lanes, Inside = true,
        };
        for (int i = 0; i < taps * phases; i++) job.Inside &= masks[i] == (1 << lanes) - 1;
        if (!job.Inside)
        {
            // Each mask as a vector, loaded by the kernel instead of made from its bits at every step.
            job.MaskVectors = ConvScratch.Current.Get(ConvScratch.Slot.Weights, (long)taps * phases * lanes + Lanes);
            var bits = (int*)job.MaskVectors;
            for (int i = 0; i < taps * phases; i++)
                for (int l = 0; l < lanes; l++) bits[i * lanes + l] = (masks[i] >> l & 1) != 0 ? -1 : 0;
        }
        Execute(ref job, p.K + p.C, &RunPart);
    }

    /// <summary>True for a stem that <see cref="RunStem"/> can run (measured faster than the GEMM path: see there).</summary>
    internal static bool SupportsStem(in Conv2dParams p) => Enabled && CanRunStem(p);

    /// <summary>True where <see cref="RunStem"/> can run: one input channel, one group, stride 2, no dilation, AVX-512 or AVX2 and FMA.</summary>
    internal static bool CanRunStem(in Conv2dParams p) => StemColumns.CanRun(p);

    /// <summary>
    /// dw [K, 1, R, S] = the weight gradient of a stem (<see cref="CanRunStem"/>) for dy [N, K, P, Q] and x [N, 1, H, W]
    /// (dw overwritten). Per chunk of samples, x split into <see cref="StemColumns"/>' 2 * S planes with rows of Q, in
    /// which each tap reads at a fixed offset from dy's position, so the dot products run over dy's own rows, read where
    /// they lie: one run of P * Q positions per sample, the accumulators going on from sample to sample, and only each
    /// run's last vector masked.
    /// </summary>
    /// <remarks>
    /// Measured against the GEMM path (im2col of x, dy read in place; two threads): MNIST b256 1->32 0.65 against 0.91 ms,
    /// 1->19 0.44 against 0.68 ms; mel b64 1->32 2.62 against 2.76 ms, 1->19 1.42 against 1.63 ms. A chunk of several
    /// samples had been copied onto the planes' grid (rows padded to Px, so one run covered the chunk) with the border
    /// masks applied to every vector: one thread, MNIST b256 1->19 829 -> 545 µs and 1->32 1300 -> 853 µs without that
    /// copy and those masks, mel's chunks of one sample 663 -> 561 and 1040 -> 880 µs without the masks.
    /// </remarks>
    internal static void RunStem(float* dy, float* x, float* dw, in Conv2dParams p) => StemJob(dy, x, dw, p, null, null);

    /// <summary>
    /// <see cref="RunStem"/> of a dy that no array holds: each part has
    /// <paramref name="fill"/>(<paramref name="state"/>, n0, nb, chunk) write the dy of its chunk's samples [n0, n0 + nb)
    /// ([nb, K, P, Q], in this thread's scratch) just before it multiplies them, so dy is made and read while in cache.
    /// The chunks and the sums are <see cref="RunStem"/>'s: the same bits for the same dy.
    /// </summary>
    internal static void RunStemWithFill(float* x, float* dw, in Conv2dParams p, delegate*<void*, int, int, float*, void> fill, void* state) =>
        StemJob(null, x, dw, p, fill, state);

    private static void StemJob(float* dy, float* x, float* dw, in Conv2dParams p, delegate*<void*, int, int, float*, void> fill, void* state)
    {
        int taps = p.R * p.S;
        var (px, u0) = StemColumns.Rows(p);
        int* offsets = stackalloc int[2 * taps];
        StemColumns.Taps(p, u0, offsets);
        var job = new Job
        {
            P = p, Dy = dy, X = x, Dw = dw, Grid = px * p.Q, Taps = taps,
            Offsets = offsets, TapPlane = offsets + taps, Px = px, U0 = u0, Slack = StemColumns.Slack(p, px),
            Fill = fill, FillState = state,
        };
        Execute(ref job, p.K + 2 * p.S, &RunStemPart);
    }

    /// <summary>Vectors of <paramref name="lanes"/> (16 or 8) after which the border masks repeat: lcm(lanes, grid) / lanes.</summary>
    private static int Phases(int grid, int lanes) =>
        grid / (1 << Math.Min(System.Numerics.BitOperations.TrailingZeroCount(grid), System.Numerics.BitOperations.Log2((uint)lanes)));

    /// <summary>
    /// masks[phase] bit l: whether position phase * lanes + l of the samples' grids (<paramref name="gridRows"/> rows of
    /// <paramref name="width"/> positions each, repeating), shifted by (<paramref name="dr"/>, <paramref name="ds"/>),
    /// lies in [0, <paramref name="rows"/>) x [0, <paramref name="columns"/>).
    /// </summary>
    private static void FillMasks(ushort* masks, int phases, int lanes, int width, int gridRows, int dr, int ds, int rows, int columns)
    {
        int row = 0, column = 0;
        for (int phase = 0; phase < phases; phase++)
        {
            int bits = 0;
            for (int lane = 0; lane < lanes; lane++)
            {
                if ((uint)(row + dr) < (uint)rows && (uint)(column + ds) < (uint)columns) bits |= 1 << lane;
                if (++column == width)
                {
                    column = 0;
                    if (++row == gridRows) row = 0;
                }
            }
            masks[phase] = (ushort)bits;
        }
    }

    /// <summary>Chunks of samples whose channel-major rows (<paramref name="rows"/> of Grid floats per sample) fit the L2 budget, shared by the parts.</summary>
    private static void Execute(ref Job job, int rows, delegate*<void*, int, void> part)
    {
        ref readonly Conv2dParams p = ref job.P;
        int threads = CpuThreading.Threads;
        job.Chunk = (int)Math.Clamp(MaxChunkFloats / ((long)rows * job.Grid), 1, Math.Max(1, (p.N + threads - 1) / threads));
        long macs = (long)p.N * p.K * p.C * job.Taps * p.P * p.Q;
        (job.Chunk, job.Chunks, job.Parts) = ConvKernels.ShareChunks(p.N, job.Chunk, macs);
        long length = (long)p.K * p.C * job.Taps;
        if (job.Parts > 1) job.Partials = ConvScratch.Current.Get(ConvScratch.Slot.Partials, (job.Parts - 1) * length);
        // SAFETY: job and the tables on the caller's stack frame outlive ForParts, which returns when every part is done.
        fixed (Job* state = &job)
        {
            if (job.Parts == 1) part(state, 0);
            else CpuThreading.ForParts(job.Parts, part, state);
        }
        // Fixed-order reduction: dw = part 0 + part 1 + ... so the sum is the same on every run.
        for (int i = 1; i < job.Parts; i++) ConvKernels.Add(job.Dw, job.Partials + (i - 1) * length, length);
    }

    /// <summary>This part's chunks [first, end) and its dw (cleared): dw itself for part 0, else its partial sums.</summary>
    private static float* PartChunks(ref Job job, int part, out int first, out int end)
    {
        first = (int)((long)part * job.Chunks / job.Parts);
        end = (int)((long)(part + 1) * job.Chunks / job.Parts);
        long length = (long)job.P.K * job.P.C * job.Taps;
        float* dw = part == 0 ? job.Dw : job.Partials + (part - 1) * length;
        new Span<float>(dw, checked((int)length)).Clear();
        return dw;
    }

    private static void RunPart(void* state, int part)
    {
        if (Gemm.Runs512) RunChunks<Lanes512, Vector512<float>>(ref *(Job*)state, part);
        else RunChunks<Lanes256, Vector256<float>>(ref *(Job*)state, part);
    }

    private static void RunChunks<TLanes, TVector>(ref Job job, int part) where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged
    {
        ref readonly Conv2dParams p = ref job.P;
        float* dw = PartChunks(ref job, part, out int first, out int end);
        int lanes = TLanes.Count, kBlock = lanes == Lanes ? KBlock : KBlockNarrow;
        int kBlocks = (p.K + kBlock - 1) / kBlock, cBlocks = (p.C + XBlock - 1) / XBlock;
        for (int chunk = first; chunk < end; chunk++)
        {
            int n0 = chunk * job.Chunk, nb = Math.Min(job.Chunk, p.N - n0);
            if (nb <= 0) break;
            // Rows a whole number of vectors long when no tap reads off the plane (the padding zero in dy and x), so the
            // lean kernel needs no masks; else the chunk's positions, the last vector masked.
            int ld = job.Inside ? (nb * job.Grid + lanes - 1) / lanes * lanes : nb * job.Grid;
            // [slack][C rows of x][slack][K rows of dy][a vector]: a masked tail vector may read past its row's end.
            float* buffer = ConvScratch.Current.Get(ConvScratch.Slot.ChannelMajor, 2L * job.Slack + (long)(p.C + p.K) * ld + Lanes);
            float* xcm = buffer + job.Slack, dycm = xcm + (long)p.C * ld + job.Slack;
            ConvKernels.MoveChunk(job.X + (long)n0 * p.C * job.Grid, (long)p.C * job.Grid, p.C, job.Grid, nb, xcm, ld, toSamples: false);
            ConvKernels.MoveChunk(job.Dy + (long)n0 * p.K * job.Grid, (long)p.K * job.Grid, p.K, job.Grid, nb, dycm, ld, toSamples: false);
            if (job.Inside) ClearPadding(xcm, dycm, p.C, p.K, ld, nb * job.Grid);
            var b = new Pairing { DyStride = ld, DwK = (long)p.C * job.Taps, DwX = job.Taps, Phases = job.Phases, Length = ld, Samples = 1 };
            var carry = (TVector*)ConvScratch.Current.Get(ConvScratch.Slot.Carry, ((long)job.Taps * Accumulators + KBlock + XBlock + 1) * Lanes);
            carry = (TVector*)(((nint)carry + 63) & ~(nint)63);
            b.Tail = (float*)(carry + job.Taps * Accumulators);
            // Blocks as even as the channel counts allow (19 = 5 + 5 + 5 + 4 input channels, 4 + 4 + 4 + 4 + 3 output;
            // 2 + 2 + ... + 1 output at 256 bits).
            for (int cb = 0; cb < cBlocks; cb++)
            {
                int c0 = (int)((long)cb * p.C / cBlocks), c1 = (int)((long)(cb + 1) * p.C / cBlocks);
                for (int kb = 0; kb < kBlocks; kb++)
                {
                    int k0 = (int)((long)kb * p.K / kBlocks), k1 = (int)((long)(kb + 1) * p.K / kBlocks);
                    b.Dy = dycm + (long)k0 * ld;
                    // With a border, the positions in segments whose block rows stay in L1 from tap to tap, each tap's
                    // accumulators carried in memory from one segment to the next (the same sums in the same order).
                    int segments = job.Inside || ld <= MinSegmentedRun ? 1 : (int)((ld + (long)SegmentLength - 1) / SegmentLength);
                    int segment = (ld / segments + lanes - 1) / lanes * lanes;
                    while (segment * (long)segments < ld) segment += lanes;
                    for (int from = 0; from < ld; from += segment)
                    {
                        b.From = from;
                        b.To = Math.Min(ld, from + segment);
                        b.Resume = from > 0;
                        b.Finish = b.To == ld;
                        for (int t = 0; t < job.Taps; t++)
                        {
                            float* x0 = xcm + (long)c0 * ld + job.Offsets[t];
                            b.X0 = x0; b.X1 = x0 + ld; b.X2 = x0 + 2L * ld; b.X3 = x0 + 3L * ld; b.X4 = x0 + 4L * ld;
                            b.Masks = job.MaskVectors + (long)t * job.Phases * lanes;
                            b.Dw = dw + ((long)k0 * p.C + c0) * job.Taps + t;
                            b.Carry = carry + t * Accumulators;
                            if (job.Inside) Block<TLanes, TVector, WholeRows>(b, k1 - k0, c1 - c0);
                            else Block<TLanes, TVector, WithBorder>(b, k1 - k0, c1 - c0);
                        }
                    }
                }
            }
        }
    }

    private static void RunStemPart(void* state, int part)
    {
        if (Gemm.Runs512) RunStemChunks<Lanes512, Vector512<float>>(ref *(Job*)state, part);
        else RunStemChunks<Lanes256, Vector256<float>>(ref *(Job*)state, part);
    }

    private static void RunStemChunks<TLanes, TVector>(ref Job job, int part) where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged
    {
        ref readonly Conv2dParams p = ref job.P;
        float* dw = PartChunks(ref job, part, out int first, out int end);
        int lanes = TLanes.Count, kBlock = lanes == Lanes ? KBlock : KBlockNarrow;
        int kBlocks = (p.K + kBlock - 1) / kBlock, tBlocks = (job.Taps + XBlock - 1) / XBlock;
        int plane = p.P * p.Q;
        for (int chunk = first; chunk < end; chunk++)
        {
            int n0 = chunk * job.Chunk, nb = Math.Min(job.Chunk, p.N - n0);
            if (nb <= 0) break;
            // [2 S x (plane of x, slack)]: a plane's slack takes its last row's whole vectors.
            long planeStride = (long)nb * job.Grid + job.Slack;
            float* planes = ConvScratch.Current.Get(ConvScratch.Slot.ChannelMajor, 2L * p.S * planeStride);
            StemColumns.Split(job.X, n0, nb, p, job.Px, job.U0, planes, planeStride);
            // dy read where it lies, a run of P * Q positions per sample, each sample's x its Px * Q floats on.
            var b = new Pairing { DwK = job.Taps, DwX = 1, DyStride = plane, Length = plane, Samples = nb, DySample = (long)p.K * plane, XSample = job.Grid };
            float* dy;
            if (job.Fill == null) dy = job.Dy + (long)n0 * p.K * plane;
            else
            {
                dy = ConvScratch.Current.Get(ConvScratch.Slot.Gradient, (long)nb * p.K * plane);
                job.Fill(job.FillState, n0, nb, dy);
            }
            // Long chunks in segments, as in RunPart: a few samples' runs, or pieces of one sample's run, all the tap blocks
            // over one segment before the next, each block's accumulators carried in memory. A tap block's x rows are
            // the column planes' (2 S of them for all the taps), so a segment's planes and dy rows stay in L1 from block
            // to block. The same sums in the same order.
            var carry = (TVector*)ConvScratch.Current.Get(ConvScratch.Slot.Carry, ((long)tBlocks * Accumulators + KBlock + XBlock + 1) * Lanes);
            carry = (TVector*)(((nint)carry + 63) & ~(nint)63);
            b.Tail = (float*)(carry + tBlocks * Accumulators);
            bool segmented = (long)nb * plane > MinSegmentedRun;
            int samplesPerSegment = !segmented ? nb : Math.Clamp(SegmentLength / plane, 1, nb);
            int pieces = !segmented || samplesPerSegment > 1 ? 1 : (int)((plane + (long)SegmentLength - 1) / SegmentLength);
            int piece = (plane / pieces + lanes - 1) / lanes * lanes;
            while (piece * (long)pieces < plane) piece += lanes;
            for (int kb = 0; kb < kBlocks; kb++)
            {
                int k0 = (int)((long)kb * p.K / kBlocks), k1 = (int)((long)(kb + 1) * p.K / kBlocks);
                for (int s0 = 0; s0 < nb; s0 += samplesPerSegment)
                {
                    b.Samples = Math.Min(samplesPerSegment, nb - s0);
                    for (int from = 0; from < plane; from += piece)
                    {
                        b.From = from;
                        b.To = Math.Min(plane, from + piece);
                        b.Resume = s0 > 0 || from > 0;
                        b.Finish = s0 + b.Samples == nb && b.To == plane;
                        b.Dy = dy + s0 * b.DySample + (long)k0 * plane;
                        for (int tb = 0; tb < tBlocks; tb++)
                        {
                            int t0 = (int)((long)tb * job.Taps / tBlocks), t1 = (int)((long)(tb + 1) * job.Taps / tBlocks);
                            float* x = planes + s0 * b.XSample;
                            b.X0 = TapRow(ref job, x, planeStride, t0);
                            b.X1 = TapRow(ref job, x, planeStride, Math.Min(t0 + 1, t1 - 1));
                            b.X2 = TapRow(ref job, x, planeStride, Math.Min(t0 + 2, t1 - 1));
                            b.X3 = TapRow(ref job, x, planeStride, Math.Min(t0 + 3, t1 - 1));
                            b.X4 = TapRow(ref job, x, planeStride, Math.Min(t0 + 4, t1 - 1));
                            b.Dw = dw + (long)k0 * job.Taps + t0;
                            b.Carry = carry + tb * Accumulators;
                            Block<TLanes, TVector, WithoutBorder>(b, k1 - k0, t1 - t0);
                        }
                    }
                }
            }
        }
    }

    /// <summary>Where tap t's inputs for the chunk's positions start: its plane, at its row offset.</summary>
    private static float* TapRow(ref Job job, float* planes, long planeStride, int t) => planes + job.TapPlane[t] * planeStride + job.Offsets[t];

    /// <summary>
    /// Whether a block's positions need the border masks (a stride-1 kernel's chunk), all lie inside (a stem's runs), or
    /// all lie inside rows of whole vectors one stride apart (<see cref="WholeRowsBlock"/>), known to the JIT.
    /// </summary>
    private interface IBorder { static abstract bool Masked { get; } }
    private struct WithBorder : IBorder { public static bool Masked => true; }
    private struct WithoutBorder : IBorder { public static bool Masked => false; }
    private struct WholeRows : IBorder { public static bool Masked => false; }

    /// <summary>Zeroes the ends of a chunk's rows past <paramref name="used"/> positions, up to their padded length.</summary>
    private static void ClearPadding(float* xcm, float* dycm, int c, int k, long ld, long used)
    {
        if (used == ld) return;
        int tail = (int)(ld - used);
        for (int i = 0; i < c; i++) new Span<float>(xcm + i * ld + used, tail).Clear();
        for (int i = 0; i < k; i++) new Span<float>(dycm + i * ld + used, tail).Clear();
    }

    private static void Block<TLanes, TVector, TBorder>(in Pairing b, int kCount, int xCount)
        where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged where TBorder : struct, IBorder
    {
        switch (kCount * 8 + xCount)
        {
            case 1 * 8 + 1: Block<TLanes, TVector, Gemm.N1, Gemm.N1, TBorder>(b); break;
            case 1 * 8 + 2: Block<TLanes, TVector, Gemm.N1, Gemm.N2, TBorder>(b); break;
            case 1 * 8 + 3: Block<TLanes, TVector, Gemm.N1, Gemm.N3, TBorder>(b); break;
            case 1 * 8 + 4: Block<TLanes, TVector, Gemm.N1, Gemm.N4, TBorder>(b); break;
            case 1 * 8 + 5: Block<TLanes, TVector, Gemm.N1, Gemm.N5, TBorder>(b); break;
            case 2 * 8 + 1: Block<TLanes, TVector, Gemm.N2, Gemm.N1, TBorder>(b); break;
            case 2 * 8 + 2: Block<TLanes, TVector, Gemm.N2, Gemm.N2, TBorder>(b); break;
            case 2 * 8 + 3: Block<TLanes, TVector, Gemm.N2, Gemm.N3, TBorder>(b); break;
            case 2 * 8 + 4: Block<TLanes, TVector, Gemm.N2, Gemm.N4, TBorder>(b); break;
            case 2 * 8 + 5: Block<TLanes, TVector, Gemm.N2, Gemm.N5, TBorder>(b); break;
            case 3 * 8 + 1: Block<TLanes, TVector, Gemm.N3, Gemm.N1, TBorder>(b); break;
            case 3 * 8 + 2: Block<TLanes, TVector, Gemm.N3, Gemm.N2, TBorder>(b); break;
            case 3 * 8 + 3: Block<TLanes, TVector, Gemm.N3, Gemm.N3, TBorder>(b); break;
            case 3 * 8 + 4: Block<TLanes, TVector, Gemm.N3, Gemm.N4, TBorder>(b); break;
            case 3 * 8 + 5: Block<TLanes, TVector, Gemm.N3, Gemm.N5, TBorder>(b); break;
            case 4 * 8 + 1: Block<TLanes, TVector, Gemm.N4, Gemm.N1, TBorder>(b); break;
            case 4 * 8 + 2: Block<TLanes, TVector, Gemm.N4, Gemm.N2, TBorder>(b); break;
            case 4 * 8 + 3: Block<TLanes, TVector, Gemm.N4, Gemm.N3, TBorder>(b); break;
            case 4 * 8 + 4: Block<TLanes, TVector, Gemm.N4, Gemm.N4, TBorder>(b); break;
            default: Block<TLanes, TVector, Gemm.N4, Gemm.N5, TBorder>(b); break;
        }
    }

    /// <summary>
    /// Dw[k * DwK + i * DwX] += sum over the Samples runs of Length positions j of dy[k, j] * x_i[j] (with a border, x_i
    /// zero where the masks say the tap reads off the plane; in either case zero past Length), for the TK dy rows and the
    /// TC x rows of <paramref name="b"/>, over the positions [From, To) of each run. The accumulators run on from one
    /// sample's run to the next, and from Carry and back to it between calls (<see cref="Pairing"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Block<TLanes, TVector, TK, TX, TBorder>(in Pairing b)
        where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged
        where TK : struct, Gemm.IConstant where TX : struct, Gemm.IConstant where TBorder : struct, IBorder
    {
        if (!TBorder.Masked && typeof(TLanes) == typeof(Lanes256))
        {
            // The stem's runs and a 1x1's whole rows at 256 bits.
            PlainBlock<TLanes, TVector, TK, TX>(b);
            return;
        }
        if (typeof(TBorder) == typeof(WholeRows))
        {
            WholeRowsBlock<TLanes, TVector, TK, TX>(b);
            return;
        }
        int kCount = TK.Value, xCount = TX.Value, phases = b.Phases, length = b.Length, lanes = TLanes.Count;
        float* dy = b.Dy, x0 = b.X0, x1 = b.X1, x2 = b.X2, x3 = b.X3, x4 = b.X4;
        long ld = b.DyStride;
        TVector* masks = (TVector*)b.Masks;
        TVector a00 = default, a01 = default, a02 = default, a03 = default, a04 = default;
        TVector a10 = default, a11 = default, a12 = default, a13 = default, a14 = default;
        TVector a20 = default, a21 = default, a22 = default, a23 = default, a24 = default;
        TVector a30 = default, a31 = default, a32 = default, a33 = default, a34 = default;
        TVector* carry = (TVector*)b.Carry;
        if (b.Resume)
        {
            a00 = carry[0]; if (xCount > 1) a01 = carry[1]; if (xCount > 2) a02 = carry[2]; if (xCount > 3) a03 = carry[3]; if (xCount > 4) a04 = carry[4];
            if (kCount > 1) { a10 = carry[5]; if (xCount > 1) a11 = carry[6]; if (xCount > 2) a12 = carry[7]; if (xCount > 3) a13 = carry[8]; if (xCount > 4) a14 = carry[9]; }
            if (kCount > 2) { a20 = carry[10]; if (xCount > 1) a21 = carry[11]; if (xCount > 2) a22 = carry[12]; if (xCount > 3) a23 = carry[13]; if (xCount > 4) a24 = carry[14]; }
            if (kCount > 3) { a30 = carry[15]; if (xCount > 1) a31 = carry[16]; if (xCount > 2) a32 = carry[17]; if (xCount > 3) a33 = carry[18]; if (xCount > 4) a34 = carry[19]; }
        }
        int firstVector = b.From / lanes, vectors = (b.To + lanes - 1) / lanes;
        for (int n = 0; n < b.Samples; n++, dy += b.DySample, x0 += b.XSample, x1 += b.XSample, x2 += b.XSample, x3 += b.XSample, x4 += b.XSample)
        {
            int phase = TBorder.Masked ? firstVector % phases : 0;
            for (int v = firstVector; v < vectors; v++)
            {
                int j = v * lanes;
                var bits = TBorder.Masked ? masks[phase] : default;
                if (TBorder.Masked && ++phase == phases) phase = 0;
                TVector d0, d1 = default, d2 = default, d3 = default, inside;
                if (j + lanes <= length)
                {
                    d0 = TLanes.Load(dy + j);
                    if (kCount > 1) d1 = TLanes.Load(dy + ld + j);
                    if (kCount > 2) d2 = TLanes.Load(dy + 2 * ld + j);
                    if (kCount > 3) d3 = TLanes.Load(dy + 3 * ld + j);
                    inside = TBorder.Masked ? bits : TLanes.AllBitsSet;
                }
                else
                {
                    // The last vector ends past the run (which may be the end of dy's memory): masked loads, which touch
                    // nothing past it.
                    var live = TLanes.FirstLanes(length - j);
                    d0 = TLanes.MaskLoad(dy + j, live);
                    if (kCount > 1) d1 = TLanes.MaskLoad(dy + ld + j, live);
                    if (kCount > 2) d2 = TLanes.MaskLoad(dy + 2 * ld + j, live);
                    if (kCount > 3) d3 = TLanes.MaskLoad(dy + 3 * ld + j, live);
                    inside = TBorder.Masked ? TLanes.And(bits, live) : live;
                }
                var xv = LoadX<TLanes, TVector, TBorder>(x0 + j, inside);
                a00 = TLanes.MultiplyAdd(d0, xv, a00);
                if (kCount > 1) a10 = TLanes.MultiplyAdd(d1, xv, a10);
                if (kCount > 2) a20 = TLanes.MultiplyAdd(d2, xv, a20);
                if (kCount > 3) a30 = TLanes.MultiplyAdd(d3, xv, a30);
                if (xCount > 1)
                {
                    xv = LoadX<TLanes, TVector, TBorder>(x1 + j, inside);
                    a01 = TLanes.MultiplyAdd(d0, xv, a01);
                    if (kCount > 1) a11 = TLanes.MultiplyAdd(d1, xv, a11);
                    if (kCount > 2) a21 = TLanes.MultiplyAdd(d2, xv, a21);
                    if (kCount > 3) a31 = TLanes.MultiplyAdd(d3, xv, a31);
                }
                if (xCount > 2)
                {
                    xv = LoadX<TLanes, TVector, TBorder>(x2 + j, inside);
                    a02 = TLanes.MultiplyAdd(d0, xv, a02);
                    if (kCount > 1) a12 = TLanes.MultiplyAdd(d1, xv, a12);
                    if (kCount > 2) a22 = TLanes.MultiplyAdd(d2, xv, a22);
                    if (kCount > 3) a32 = TLanes.MultiplyAdd(d3, xv, a32);
                }
                if (xCount > 3)
                {
                    xv = LoadX<TLanes, TVector, TBorder>(x3 + j, inside);
                    a03 = TLanes.MultiplyAdd(d0, xv, a03);
                    if (kCount > 1) a13 = TLanes.MultiplyAdd(d1, xv, a13);
                    if (kCount > 2) a23 = TLanes.MultiplyAdd(d2, xv, a23);
                    if (kCount > 3) a33 = TLanes.MultiplyAdd(d3, xv, a33);
                }
                if (xCount > 4)
                {
                    xv = LoadX<TLanes, TVector, TBorder>(x4 + j, inside);
                    a04 = TLanes.MultiplyAdd(d0, xv, a04);
                    if (kCount > 1) a14 = TLanes.MultiplyAdd(d1, xv, a14);
                    if (kCount > 2) a24 = TLanes.MultiplyAdd(d2, xv, a24);
                    if (kCount > 3) a34 = TLanes.MultiplyAdd(d3, xv, a34);
                }
            }
        }
        if (!b.Finish)
        {
            carry[0] = a00; if (xCount > 1) carry[1] = a01; if (xCount > 2) carry[2] = a02; if (xCount > 3) carry[3] = a03; if (xCount > 4) carry[4] = a04;
            if (kCount > 1) { carry[5] = a10; if (xCount > 1) carry[6] = a11; if (xCount > 2) carry[7] = a12; if (xCount > 3) carry[8] = a13; if (xCount > 4) carry[9] = a14; }
            if (kCount > 2) { carry[10] = a20; if (xCount > 1) carry[11] = a21; if (xCount > 2) carry[12] = a22; if (xCount > 3) carry[13] = a23; if (xCount > 4) carry[14] = a24; }
            if (kCount > 3) { carry[15] = a30; if (xCount > 1) carry[16] = a31; if (xCount > 2) carry[17] = a32; if (xCount > 3) carry[18] = a33; if (xCount > 4) carry[19] = a34; }
            return;
        }
        AddBlock<TLanes, TVector>(b, kCount, xCount, a00, a01, a02, a03, a04, a10, a11, a12, a13, a14, a20, a21, a22, a23, a24, a30, a31, a32, a33, a34);
    }

    /// <summary>
    /// <see cref="Block{TLanes, TVector, TK, TX, TBorder}"/> without a border on 256-bit vectors (a stem's runs and a
    /// 1x1's rows padded to whole vectors, without AVX-512): the whole vectors of each run are plain loads from dy and the x rows at fixed offsets from dy's position,
    /// and a run's last vector, where it ends inside one (P * Q outputs), goes through the same loop once more from a copy
    /// of its rows' live lanes with zeros after them (masked loads, which touch nothing past the run). The loop has no
    /// branch, and only the block's own accumulators go through Carry, so its 10 accumulators, 2 dy vectors and x vector
    /// stay in AVX2's 16 registers: the masked kernel, whose last-vector branch and unused accumulators made the JIT save
    /// and reload four vectors a step, took 1.2-1.4x as long (harness, two threads: mel b64 1->19 2.35-2.64 against
    /// 1.72-1.73 ms, MNIST b256 1->32 0.80-0.88 against 0.67-0.69 ms). The same sums in the same order as the masked
    /// kernel (lane l adds positions l, l + 8, ..., and the copy's zero lanes add 0 x 0). With AVX-512 the masked
    /// kernel and <see cref="WholeRowsBlock"/> stay: this one took 1.05-1.1x the masked kernel's time on MNIST's stems (a
    /// copy per sample's 169 outputs) and 1.02x <see cref="WholeRowsBlock"/>'s on 1x1s (in-process alternation).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PlainBlock<TLanes, TVector, TK, TX>(in Pairing b)
        where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged where TK : struct, Gemm.IConstant where TX : struct, Gemm.IConstant
    {
        int kCount = TK.Value, xCount = TX.Value, lanes = TLanes.Count, length = b.Length;
        // The run's whole vectors end here; a last vector from there to Length is the tail.
        int whole = length / lanes * lanes, wholeEnd = Math.Min(b.To, whole);
        bool tail = b.To > whole;
        // The tail's rows: 4 dy rows, then 5 x rows, a vector each.
        float* copy = b.Tail;
        TVector a00 = default, a01 = default, a02 = default, a03 = default, a04 = default;
        TVector a10 = default, a11 = default, a12 = default, a13 = default, a14 = default;
        TVector a20 = default, a21 = default, a22 = default, a23 = default, a24 = default;
        TVector a30 = default, a31 = default, a32 = default, a33 = default, a34 = default;
        TVector* carry = (TVector*)b.Carry;
        // Only the block's own accumulators go through Carry: the others stay dead, which at 256 bits (16 registers)
        // keeps the loop's vectors in registers.
        if (b.Resume)
        {
            a00 = carry[0]; if (xCount > 1) a01 = carry[1]; if (xCount > 2) a02 = carry[2]; if (xCount > 3) a03 = carry[3]; if (xCount > 4) a04 = carry[4];
            if (kCount > 1) { a10 = carry[5]; if (xCount > 1) a11 = carry[6]; if (xCount > 2) a12 = carry[7]; if (xCount > 3) a13 = carry[8]; if (xCount > 4) a14 = carry[9]; }
            if (kCount > 2) { a20 = carry[10]; if (xCount > 1) a21 = carry[11]; if (xCount > 2) a22 = carry[12]; if (xCount > 3) a23 = carry[13]; if (xCount > 4) a24 = carry[14]; }
            if (kCount > 3) { a30 = carry[15]; if (xCount > 1) a31 = carry[16]; if (xCount > 2) a32 = carry[17]; if (xCount > 3) a33 = carry[18]; if (xCount > 4) a34 = carry[19]; }
        }
        for (int n = 0; n < b.Samples; n++)
        {
            float* sampleDy = b.Dy + n * b.DySample;
            long sampleX = n * b.XSample;
            for (int pass = 0; pass < 2; pass++)
            {
                // Pass 0: the whole vectors of [From, To) where they lie; pass 1: the tail's copy.
                float* dy, end;
                long ld, toX0, toX1, toX2, toX3, toX4;
                if (pass == 0)
                {
                    dy = sampleDy + b.From;
                    end = sampleDy + wholeEnd;
                    ld = b.DyStride;
                    toX0 = b.X0 + sampleX - sampleDy; toX1 = b.X1 + sampleX - sampleDy; toX2 = b.X2 + sampleX - sampleDy;
                    toX3 = b.X3 + sampleX - sampleDy; toX4 = b.X4 + sampleX - sampleDy;
                }
                else
                {
                    if (!tail) break;
                    var live = TLanes.FirstLanes(length - whole);
                    for (int k = 0; k < kCount; k++) TLanes.Store(TLanes.MaskLoad(sampleDy + k * b.DyStride + whole, live), copy + k * lanes);
                    float* x = copy + KBlock * lanes;
                    TLanes.Store(TLanes.MaskLoad(b.X0 + sampleX + whole, live), x);
                    if (xCount > 1) TLanes.Store(TLanes.MaskLoad(b.X1 + sampleX + whole, live), x + lanes);
                    if (xCount > 2) TLanes.Store(TLanes.MaskLoad(b.X2 + sampleX + whole, live), x + 2 * lanes);
                    if (xCount > 3) TLanes.Store(TLanes.MaskLoad(b.X3 + sampleX + whole, live), x + 3 * lanes);
                    if (xCount > 4) TLanes.Store(TLanes.MaskLoad(b.X4 + sampleX + whole, live), x + 4 * lanes);
                    dy = copy;
                    end = copy + lanes;
                    ld = lanes;
                    toX0 = KBlock * lanes; toX1 = toX0 + lanes; toX2 = toX1 + lanes; toX3 = toX2 + lanes; toX4 = toX3 + lanes;
                }
                for (; dy < end; dy += lanes)
                {
                    TVector d0 = TLanes.Load(dy), d1 = default, d2 = default, d3 = default;
                    if (kCount > 1) d1 = TLanes.Load(dy + ld);
                    if (kCount > 2) d2 = TLanes.Load(dy + 2 * ld);
                    if (kCount > 3) d3 = TLanes.Load(dy + 3 * ld);
                    var xv = TLanes.Load(dy + toX0);
                    a00 = TLanes.MultiplyAdd(d0, xv, a00);
                    if (kCount > 1) a10 = TLanes.MultiplyAdd(d1, xv, a10);
                    if (kCount > 2) a20 = TLanes.MultiplyAdd(d2, xv, a20);
                    if (kCount > 3) a30 = TLanes.MultiplyAdd(d3, xv, a30);
                    if (xCount > 1)
                    {
                        xv = TLanes.Load(dy + toX1);
                        a01 = TLanes.MultiplyAdd(d0, xv, a01);
                        if (kCount > 1) a11 = TLanes.MultiplyAdd(d1, xv, a11);
                        if (kCount > 2) a21 = TLanes.MultiplyAdd(d2, xv, a21);
                        if (kCount > 3) a31 = TLanes.MultiplyAdd(d3, xv, a31);
                    }
                    if (xCount > 2)
                    {
                        xv = TLanes.Load(dy + toX2);
                        a02 = TLanes.MultiplyAdd(d0, xv, a02);
                        if (kCount > 1) a12 = TLanes.MultiplyAdd(d1, xv, a12);
                        if (kCount > 2) a22 = TLanes.MultiplyAdd(d2, xv, a22);
                        if (kCount > 3) a32 = TLanes.MultiplyAdd(d3, xv, a32);
                    }
                    if (xCount > 3)
                    {
                        xv = TLanes.Load(dy + toX3);
                        a03 = TLanes.MultiplyAdd(d0, xv, a03);
                        if (kCount > 1) a13 = TLanes.MultiplyAdd(d1, xv, a13);
                        if (kCount > 2) a23 = TLanes.MultiplyAdd(d2, xv, a23);
                        if (kCount > 3) a33 = TLanes.MultiplyAdd(d3, xv, a33);
                    }
                    if (xCount > 4)
                    {
                        xv = TLanes.Load(dy + toX4);
                        a04 = TLanes.MultiplyAdd(d0, xv, a04);
                        if (kCount > 1) a14 = TLanes.MultiplyAdd(d1, xv, a14);
                        if (kCount > 2) a24 = TLanes.MultiplyAdd(d2, xv, a24);
                        if (kCount > 3) a34 = TLanes.MultiplyAdd(d3, xv, a34);
                    }
                }
            }
        }
        if (!b.Finish)
        {
            carry[0] = a00; if (xCount > 1) carry[1] = a01; if (xCount > 2) carry[2] = a02; if (xCount > 3) carry[3] = a03; if (xCount > 4) carry[4] = a04;
            if (kCount > 1) { carry[5] = a10; if (xCount > 1) carry[6] = a11; if (xCount > 2) carry[7] = a12; if (xCount > 3) carry[8] = a13; if (xCount > 4) carry[9] = a14; }
            if (kCount > 2) { carry[10] = a20; if (xCount > 1) carry[11] = a21; if (xCount > 2) carry[12] = a22; if (xCount > 3) carry[13] = a23; if (xCount > 4) carry[14] = a24; }
            if (kCount > 3) { carry[15] = a30; if (xCount > 1) carry[16] = a31; if (xCount > 2) carry[17] = a32; if (xCount > 3) carry[18] = a33; if (xCount > 4) carry[19] = a34; }
            return;
        }
        AddBlock<TLanes, TVector>(b, kCount, xCount, a00, a01, a02, a03, a04, a10, a11, a12, a13, a14, a20, a21, a22, a23, a24, a30, a31, a32, a33, a34);
    }

    /// <summary>
    /// <see cref="Block{TK, TX, TBorder}"/> for one run whose Length is a whole number of vectors, with no border and the x
    /// rows DyStride apart (X0, X0 + DyStride, ...): plain loads, one pointer stepping through dy and the rest at fixed
    /// offsets from it. The same sums in the same order as the masked kernel (lane l adds positions l, l + 16, ...).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WholeRowsBlock<TLanes, TVector, TK, TX>(in Pairing b)
        where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged where TK : struct, Gemm.IConstant where TX : struct, Gemm.IConstant
    {
        int kCount = TK.Value, xCount = TX.Value;
        long ld = b.DyStride, toX = b.X0 - b.Dy;
        TVector a00 = default, a01 = default, a02 = default, a03 = default, a04 = default;
        TVector a10 = default, a11 = default, a12 = default, a13 = default, a14 = default;
        TVector a20 = default, a21 = default, a22 = default, a23 = default, a24 = default;
        TVector a30 = default, a31 = default, a32 = default, a33 = default, a34 = default;
        for (float* dy = b.Dy, end = b.Dy + b.Length; dy < end; dy += TLanes.Count)
        {
            TVector d0 = TLanes.Load(dy), d1 = default, d2 = default, d3 = default;
            if (kCount > 1) d1 = TLanes.Load(dy + ld);
            if (kCount > 2) d2 = TLanes.Load(dy + 2 * ld);
            if (kCount > 3) d3 = TLanes.Load(dy + 3 * ld);
            float* x = dy + toX;
            var xv = TLanes.Load(x);
            a00 = TLanes.MultiplyAdd(d0, xv, a00);
            if (kCount > 1) a10 = TLanes.MultiplyAdd(d1, xv, a10);
            if (kCount > 2) a20 = TLanes.MultiplyAdd(d2, xv, a20);
            if (kCount > 3) a30 = TLanes.MultiplyAdd(d3, xv, a30);
            if (xCount > 1)
            {
                xv = TLanes.Load(x + ld);
                a01 = TLanes.MultiplyAdd(d0, xv, a01);
                if (kCount > 1) a11 = TLanes.MultiplyAdd(d1, xv, a11);
                if (kCount > 2) a21 = TLanes.MultiplyAdd(d2, xv, a21);
                if (kCount > 3) a31 = TLanes.MultiplyAdd(d3, xv, a31);
            }
            if (xCount > 2)
            {
                xv = TLanes.Load(x + 2 * ld);
                a02 = TLanes.MultiplyAdd(d0, xv, a02);
                if (kCount > 1) a12 = TLanes.MultiplyAdd(d1, xv, a12);
                if (kCount > 2) a22 = TLanes.MultiplyAdd(d2, xv, a22);
                if (kCount > 3) a32 = TLanes.MultiplyAdd(d3, xv, a32);
            }
            if (xCount > 3)
            {
                xv = TLanes.Load(x + 3 * ld);
                a03 = TLanes.MultiplyAdd(d0, xv, a03);
                if (kCount > 1) a13 = TLanes.MultiplyAdd(d1, xv, a13);
                if (kCount > 2) a23 = TLanes.MultiplyAdd(d2, xv, a23);
                if (kCount > 3) a33 = TLanes.MultiplyAdd(d3, xv, a33);
            }
            if (xCount > 4)
            {
                xv = TLanes.Load(x + 4 * ld);
                a04 = TLanes.MultiplyAdd(d0, xv, a04);
                if (kCount > 1) a14 = TLanes.MultiplyAdd(d1, xv, a14);
                if (kCount > 2) a24 = TLanes.MultiplyAdd(d2, xv, a24);
                if (kCount > 3) a34 = TLanes.MultiplyAdd(d3, xv, a34);
            }
        }
        AddBlock<TLanes, TVector>(b, kCount, xCount, a00, a01, a02, a03, a04, a10, a11, a12, a13, a14, a20, a21, a22, a23, a24, a30, a31, a32, a33, a34);
    }

    /// <summary>
    /// A vector of an x row: with a border, loaded whole (a chunk's rows have slack) and zeroed where the tap reads off
    /// the plane; without, loaded only in the lanes of <paramref name="inside"/>, which past the run's end are off.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector LoadX<TLanes, TVector, TBorder>(float* x, TVector inside)
        where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged where TBorder : struct, IBorder =>
        TBorder.Masked ? TLanes.KeepLanes(inside, TLanes.Load(x)) : TLanes.MaskLoad(x, inside);

    /// <summary>
    /// Adds a block's lane sums to dw (row k of accumulators at Dw + k * DwK, its i-th at + i * DwX): the first four
    /// accumulators of each row a row at a time, the fifth of every row together, each four lane sums at once
    /// (<see cref="IVectorLanes{TVector}.Sums4"/>: at 16 lanes 15 instructions for four sums instead of about 14 for
    /// each; a block's 20 sums had cost as much as 16 of its steps).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddBlock<TLanes, TVector>(in Pairing b, int kCount, int xCount,
        TVector a00, TVector a01, TVector a02, TVector a03, TVector a04,
        TVector a10, TVector a11, TVector a12, TVector a13, TVector a14,
        TVector a20, TVector a21, TVector a22, TVector a23, TVector a24,
        TVector a30, TVector a31, TVector a32, TVector a33, TVector a34)
        where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged
    {
        float* dw = b.Dw;
        int first = Math.Min(xCount, 4);
        AddLanes(dw, b.DwX, first, TLanes.Sums4(a00, a01, a02, a03));
        if (kCount > 1) AddLanes(dw + b.DwK, b.DwX, first, TLanes.Sums4(a10, a11, a12, a13));
        if (kCount > 2) AddLanes(dw + 2 * b.DwK, b.DwX, first, TLanes.Sums4(a20, a21, a22, a23));
        if (kCount > 3) AddLanes(dw + 3 * b.DwK, b.DwX, first, TLanes.Sums4(a30, a31, a32, a33));
        if (xCount > 4) AddLanes(dw + 4 * b.DwX, b.DwK, kCount, TLanes.Sums4(a04, a14, a24, a34));
    }

    /// <summary>dw[i * stride] += sums[i] for the first <paramref name="count"/> lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddLanes(float* dw, long stride, int count, Vector128<float> sums)
    {
        if (count == 4 && stride == 1)
        {
            (Vector128.Load(dw) + sums).Store(dw);
            return;
        }
        for (int i = 0; i < count; i++) dw[i * stride] += sums.GetElement(i);
    }
}
