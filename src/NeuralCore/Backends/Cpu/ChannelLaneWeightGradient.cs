using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// The weight gradient of a stride-1 convolution with one group (CP-ResNet's 3x3s; see <see cref="Supports"/>), with
/// the input channels in the vector lanes. Each sample's x is copied once into a zero-bordered, channel-last plane
/// [H + 2 padH, W + 2 padW, C]; there the S taps of kernel row r at output position (p, q) read one contiguous row
/// patch of S * C floats, at (p + r, q). So for each output channel k and kernel row r, dw's S * C entries are the
/// sum over (p, q) of dy[k][p, q] times that patch: a rank-one update per position, run in blocks of up to 4 output
/// channels by 5 or 6 vectors of the patch (24 accumulators), which per position broadcast 4 dy values and load 6
/// x vectors, or of up to 5 output channels by at most 4 vectors (20 accumulators). No border masks (the border is
/// zeros) and no lane sums; the patch's vectors run on across tap and channel boundaries, so 19 channels x 3 taps take 4 vectors, not 6. On larger planes the channels past the last
/// multiple of 16 get a plane of their own (<see cref="Split"/>), so that the others' patch vectors start on cache
/// lines. AVX-512 only.
/// </summary>
/// <remarks>
/// Why: <see cref="DirectWeightGradient"/> puts positions in the lanes, so every x load sits at a tap's offset (most
/// of them split across two cache lines), carries a border mask, and each block ends in lane sums; the GEMM path
/// copies x R*S times (im2col) and packs it again. On the Xeon host (two 512-bit FMA pipes per core) those ran the
/// big model's 3x3 weight gradients at 31-72 G multiply-adds a second on two threads, about half this path's rate
/// (docs/benchmarks-sessions.md, "The Xeon host a sixteenth time").
/// <para>
/// The samples are shared in contiguous parts, one per thread, each summing its samples in order into its own
/// accumulators [K, R, patch]; dw is then part 0 + part 1 + ... (a fixed order), so the results depend on the
/// number of threads, not on timing. The lanes past a patch's floats are computed on the next position's values and
/// dropped.
/// </para>
/// <para>
/// The output channels go in blocks as even as they divide (19 in 4 + 5 + 5 + 5, 38 in 6 x 5 + 2 x 4), not in
/// blocks of 4 padded with zero rows: where a block takes at most 4 vectors of the patch, 5 channels share each x load
/// and 5 multiply-adds each loop step (Xeon, two threads, alternated against blocks of 4 with the same bits: 3x3
/// 19->19 on 31 x 24 0.91-0.93 of the time, on 15 x 24 0.91-0.96; 32->32, whose 6-vector runs keep blocks of 4, 1.00).
/// Running a block's rows in segments that stay in L1 did not pay (1.01-1.04).
/// </para>
/// </remarks>
internal static unsafe class ChannelLaneWeightGradient
{
    private const int Lanes = 16;
    // Output channels per block: at most 4 where a block takes 5 or 6 vectors of the patch (24 accumulators, 4 broadcasts
    // and the x vector of the 32 registers), at most 5 where it takes 4 or fewer (20 accumulators).
    private const int KBlock = 4;
    private const int KBlockShort = 5;
    private const int ShortRun = 4;
    // Vectors of the row patch per block.
    private const int MaxVectors = 6;
    // Output planes of at least this many positions split the input channels into two planes (Split). Xeon, two threads,
    // 19 channels, the split against one plane alternated: mel's 31 x 24 0.90, 15 x 24 0.93, 7 x 24 0.96, 8 x 24 0.96,
    // 12 x 12 0.99, MNIST's 6 x 6 1.03-1.04 (its rows of 6 positions run the two planes' pointers for few loads each).
    private const int MinSplitPlane = 128;
    // Below this many multiply-adds one part runs them all on the calling thread.
    private const long MinMacsPerPart = 1 << 18;

    /// <summary>False leaves every weight gradient to the other paths (tests compare them).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>False keeps the input channels in one plane on every map (<see cref="Split"/>; tests and benchmarks compare the two).</summary>
    internal static bool SplitsPlanes { get; set; } = true;

    /// <summary>False keeps blocks to 4 output channels on every run (see KBlockShort; benchmarks compare the two).</summary>
    internal static bool WideBlocks { get; set; } = true;

    /// <summary>True for one group, stride 1 and no dilation on a CPU with the 512-bit kernels (<see cref="Gemm.Runs512"/>).</summary>
    internal static bool CanRun(in Conv2dParams p) =>
        Gemm.Runs512 && p.Groups == 1 && p.StrideH == 1 && p.StrideW == 1 && p.DilationH == 1 && p.DilationW == 1
        && p.P == p.H + 2 * p.PadH - p.R + 1 && p.Q == p.W + 2 * p.PadW - p.S + 1 && p.P > 0 && p.Q > 0;

    /// <summary>
    /// True where <see cref="CanRun"/>, the kernel has more than one tap and the output planes at least
    /// <see cref="ConvKernels.MinDirectWeightPlane"/> positions: there every shape of CP-ResNet measured ran faster than
    /// on the other paths (Xeon, two threads: 3x3 32->32 on 31 x 24 0.53-0.57 of the time, 19->19 0.70-0.90, MNIST's
    /// 6 x 6 0.60-0.96). On smaller planes the others gather samples into wider runs (3x3 19->38 cut to 1x3 on 1 x 6:
    /// 1.6-1.8 of their time; 3 x 6: 0.89-1.03). A 1x1's patch is its C channels alone, so a block broadcasts dy for
    /// fewer multiply-adds: 1x1s ran at 0.83-0.92 of the time at 32-128 channels and at 1.05-1.23 at 19, 38 and 76,
    /// and stay on the other paths.
    /// </summary>
    internal static bool Supports(in Conv2dParams p) =>
        Enabled && CanRun(p) && p.R * p.S > 1 && p.P * p.Q >= ConvKernels.MinDirectWeightPlane;

    private struct Job
    {
        public Conv2dParams P;
        public float* Dy, X, Partials;
        public int Parts, Vectors;
        public long Length;
        // The input channels split into a whole-vector part and the rest (see Split): channels [0, CA) in one plane,
        // [CA, C) in another; the first VectorsA of a patch's vectors come from the first.
        public int CA, CB, VectorsA;
    }

    /// <summary>
    /// The input channels as two planes: the first 16 m (m = C / 16, none below 16) channel-last with positions 16 m
    /// floats apart, so that every patch vector there starts on a 64-byte line, and the C mod 16 others in a plane of
    /// their own. With one plane of C floats a position, 19 channels put a position every 76 bytes and most patch loads
    /// split across two lines; split, 19 = 16 + 3 takes 3 aligned vectors and 1 (9 floats), as many as 57 floats in one
    /// plane. Output planes under <see cref="MinSplitPlane"/> positions keep one plane (C in the first when it is a
    /// multiple of 16, else in the second).
    /// </summary>
    private static (int CA, int CB, int VectorsA, int VectorsB) Split(in Conv2dParams p)
    {
        int ca = p.C % Lanes == 0 || (SplitsPlanes && p.P * p.Q >= MinSplitPlane) ? p.C / Lanes * Lanes : 0, cb = p.C - ca;
        return (ca, cb, p.S * ca / Lanes, (p.S * cb + Lanes - 1) / Lanes);
    }

    /// <summary>dw [K, C, R, S] = the weight gradient of dy [N, K, P, Q] for x [N, C, H, W] (sample-major; dw overwritten).</summary>
    internal static void Run(float* dy, float* x, float* dw, in Conv2dParams p)
    {
        var (ca, cb, vectorsA, vectorsB) = Split(p);
        int vectors = vectorsA + vectorsB;
        long length = (long)p.K * p.R * vectors * Lanes;
        long macs = (long)p.N * p.K * p.C * p.R * p.S * p.P * p.Q;
        int parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, Math.Min(CpuThreading.Threads, p.N));
        var job = new Job
        {
            P = p, Dy = dy, X = x, Parts = parts, Vectors = vectors, Length = length,
            CA = ca, CB = cb, VectorsA = vectorsA,
            Partials = ConvScratch.Current.Get(ConvScratch.Slot.Partials, parts * length),
        };
        // SAFETY: job lives on this stack frame and ForParts returns only after every part is done.
        if (parts == 1) RunPart(&job, 0);
        else CpuThreading.ForParts(parts, &RunPart, &job);

        // dw [k, c, r, s] = part 0 + part 1 + ... of the accumulators [k, r, patch]: (s, c) at s * CA + c for the first
        // plane's channels, at VectorsA * 16 + s * CB + c - CA for the others'; in part order.
        long rowPatch = (long)vectors * Lanes;
        for (int k = 0; k < p.K; k++)
        for (int r = 0; r < p.R; r++)
        {
            float* source = job.Partials + ((long)k * p.R + r) * rowPatch;
            float* target = dw + (long)k * p.C * p.R * p.S + r * p.S;
            for (int s = 0; s < p.S; s++)
            for (int c = 0; c < p.C; c++)
            {
                long at = c < ca ? s * ca + c : vectorsA * Lanes + s * cb + c - ca;
                float sum = source[at];
                for (int part = 1; part < parts; part++) sum += source[part * length + at];
                target[(long)c * p.R * p.S + s] = sum;
            }
        }
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        ref readonly Conv2dParams p = ref job.P;
        int first = (int)((long)part * p.N / job.Parts), end = (int)((long)(part + 1) * p.N / job.Parts);
        float* acc = job.Partials + part * job.Length;
        new Span<float>(acc, checked((int)job.Length)).Clear();

        // Two zero-bordered channel-last planes (Split), each with a vector's slack past it for the last patch's last
        // vector; the borders stay zero from sample to sample.
        int planeIn = p.H * p.W, planeOut = p.P * p.Q, hp = p.H + 2 * p.PadH, wp = p.W + 2 * p.PadW, ca = job.CA, cb = job.CB;
        long rowStrideA = (long)wp * ca, rowStrideB = (long)wp * cb;
        long paddedA = hp * rowStrideA + Lanes, padded = paddedA + hp * rowStrideB + Lanes;
        // From a cache line, so that the first plane's patch vectors start on lines.
        float* planeA = ConvScratch.Current.Get(ConvScratch.Slot.Padded, padded + Lanes);
        planeA = (float*)(((nint)planeA + 63) & ~(nint)63);
        float* planeB = planeA + paddedA;
        new Span<float>(planeA, checked((int)padded)).Clear();
        long rowPatch = (long)job.Vectors * Lanes, accK = p.R * rowPatch;
        // The patch's vectors in runs of at most 6, as even as they go (8: 4 + 4, 15: 5 + 5 + 5); the output channels in
        // blocks of at most 4 or 5 (by the runs' length), as even as they go (19: 4 + 5 + 5 + 5; 32, in runs of 6 vectors: 8 x 4).
        int runs = (job.Vectors + MaxVectors - 1) / MaxVectors;
        int kBlock = (job.Vectors + runs - 1) / runs <= ShortRun && WideBlocks ? KBlockShort : KBlock;
        int kBlocks = (p.K + kBlock - 1) / kBlock;

        for (int n = first; n < end; n++)
        {
            float* xn = job.X + (long)n * p.C * planeIn;
            for (int h = 0; h < p.H; h++)
            {
                if (ca > 0) Gemm.Transpose(xn + h * p.W, planeIn, planeA + (h + p.PadH) * rowStrideA + p.PadW * ca, ca, ca, p.W);
                if (cb > 0) Gemm.Transpose(xn + (long)ca * planeIn + h * p.W, planeIn, planeB + (h + p.PadH) * rowStrideB + p.PadW * cb, cb, cb, p.W);
            }
            float* dyn = job.Dy + (long)n * p.K * planeOut;
            for (int kb = 0; kb < kBlocks; kb++)
            {
                int k0 = (int)((long)kb * p.K / kBlocks), k1 = (int)((long)(kb + 1) * p.K / kBlocks);
                float* dyRows = dyn + (long)k0 * planeOut;
                for (int r = 0; r < p.R; r++)
                {
                    float* a = acc + k0 * accK + r * rowPatch, xa = planeA + r * rowStrideA, xb = planeB + r * rowStrideB;
                    for (int run = 0, v = 0; run < runs; run++)
                    {
                        // Vectors [v, next) of the patch: those below VectorsA from the first plane, the rest from the second.
                        int next = (int)((long)(run + 1) * job.Vectors / runs);
                        int fromA = Math.Clamp(job.VectorsA - v, 0, next - v), fromB = next - v - fromA;
                        var planes = new Planes
                        {
                            A = xa + (long)v * Lanes, RowStrideA = rowStrideA, StepA = ca,
                            B = xb + (long)Math.Max(v - job.VectorsA, 0) * Lanes, RowStrideB = rowStrideB, StepB = cb,
                        };
                        Block(k1 - k0, fromA, fromB, dyRows, planeOut, p.P, p.Q, planes, a + v * Lanes, accK);
                        v = next;
                    }
                }
            }
        }
    }

    /// <summary>Where a block's patch vectors lie: the first plane's from A, the second's from B, each plane's rows and positions its own strides apart.</summary>
    private struct Planes
    {
        public float* A, B;
        public long RowStrideA, RowStrideB;
        public int StepA, StepB;
    }

    /// <summary>
    /// acc [k, v] += the sum over positions (p, q) of dy[k][p, q] times vector v of the row patch at (p, q), for
    /// <paramref name="outputs"/> (1 to 5) dy rows <paramref name="dyStride"/> floats apart from <paramref name="dy"/>
    /// and <paramref name="fromA"/> + <paramref name="fromB"/> (1 to 6) vectors: the first <paramref name="fromA"/> from
    /// the first plane, the others from the second (<see cref="Planes"/>), over <paramref name="rows"/> rows of
    /// <paramref name="columns"/> positions; the accumulator rows of the output channels <paramref name="accK"/> floats
    /// apart.
    /// </summary>
    private static void Block(int outputs, int fromA, int fromB, float* dy, long dyStride, int rows, int columns, in Planes x, float* acc, long accK)
    {
        switch (outputs)
        {
            case 1: BlockA<Gemm.N1>(fromA, fromB, dy, dyStride, rows, columns, x, acc, accK); break;
            case 2: BlockA<Gemm.N2>(fromA, fromB, dy, dyStride, rows, columns, x, acc, accK); break;
            case 3: BlockA<Gemm.N3>(fromA, fromB, dy, dyStride, rows, columns, x, acc, accK); break;
            case 4: BlockA<Gemm.N4>(fromA, fromB, dy, dyStride, rows, columns, x, acc, accK); break;
            default: BlockA<Gemm.N5>(fromA, fromB, dy, dyStride, rows, columns, x, acc, accK); break;
        }
    }

    /// <summary><see cref="Block(int, int, int, float*, long, int, int, in Planes, float*, long)"/> with TK known: the first plane's count as a type.</summary>
    private static void BlockA<TK>(int fromA, int fromB, float* dy, long dyStride, int rows, int columns, in Planes x, float* acc, long accK)
        where TK : struct, Gemm.IConstant
    {
        switch (fromA)
        {
            case 0: BlockB<TK, Gemm.N0>(fromB, dy, dyStride, rows, columns, x, acc, accK); break;
            case 1: BlockB<TK, Gemm.N1>(fromB, dy, dyStride, rows, columns, x, acc, accK); break;
            case 2: BlockB<TK, Gemm.N2>(fromB, dy, dyStride, rows, columns, x, acc, accK); break;
            case 3: BlockB<TK, Gemm.N3>(fromB, dy, dyStride, rows, columns, x, acc, accK); break;
            case 4: BlockB<TK, Gemm.N4>(fromB, dy, dyStride, rows, columns, x, acc, accK); break;
            case 5: BlockB<TK, Gemm.N5>(fromB, dy, dyStride, rows, columns, x, acc, accK); break;
            default: BlockB<TK, Gemm.N6>(fromB, dy, dyStride, rows, columns, x, acc, accK); break;
        }
    }

    /// <summary><see cref="Block(int, int, int, float*, long, int, int, in Planes, float*, long)"/> with TK and TA known: the second plane's count as a type.</summary>
    private static void BlockB<TK, TA>(int fromB, float* dy, long dyStride, int rows, int columns, in Planes x, float* acc, long accK)
        where TK : struct, Gemm.IConstant where TA : struct, Gemm.IConstant
    {
        switch (fromB)
        {
            case 0: Block<TK, TA, Gemm.N0>(dy, dyStride, rows, columns, x, acc, accK); break;
            case 1: Block<TK, TA, Gemm.N1>(dy, dyStride, rows, columns, x, acc, accK); break;
            case 2: Block<TK, TA, Gemm.N2>(dy, dyStride, rows, columns, x, acc, accK); break;
            case 3: Block<TK, TA, Gemm.N3>(dy, dyStride, rows, columns, x, acc, accK); break;
            case 4: Block<TK, TA, Gemm.N4>(dy, dyStride, rows, columns, x, acc, accK); break;
            case 5: Block<TK, TA, Gemm.N5>(dy, dyStride, rows, columns, x, acc, accK); break;
            default: Block<TK, TA, Gemm.N6>(dy, dyStride, rows, columns, x, acc, accK); break;
        }
    }

    /// <summary>
    /// <see cref="Block(int, int, int, float*, long, int, int, in Planes, float*, long)"/> for TK output channels, TA
    /// vectors of the first plane and TB of the second: one specialisation per triple, whose accumulators past TK x (TA +
    /// TB) the JIT drops, so each keeps its accumulators in registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block<TK, TA, TB>(float* dy, long dyStride, int rows, int columns, in Planes x, float* acc, long accK)
        where TK : struct, Gemm.IConstant where TA : struct, Gemm.IConstant where TB : struct, Gemm.IConstant
    {
        int outputs = TK.Value, fromA = TA.Value, vectors = TA.Value + TB.Value;
        // s{k}{v}: output channel k of the block, vector v of the patch.
        Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default, s04 = default, s05 = default;
        Vector512<float> s10 = default, s11 = default, s12 = default, s13 = default, s14 = default, s15 = default;
        Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default, s24 = default, s25 = default;
        Vector512<float> s30 = default, s31 = default, s32 = default, s33 = default, s34 = default, s35 = default;
        Vector512<float> s40 = default, s41 = default, s42 = default, s43 = default;
        Load(ref s00, ref s10, ref s20, ref s30, ref s40, outputs, acc, accK, 0);
        if (vectors > 1) Load(ref s01, ref s11, ref s21, ref s31, ref s41, outputs, acc, accK, 1);
        if (vectors > 2) Load(ref s02, ref s12, ref s22, ref s32, ref s42, outputs, acc, accK, 2);
        if (vectors > 3) Load(ref s03, ref s13, ref s23, ref s33, ref s43, outputs, acc, accK, 3);
        // Runs of 5 or 6 vectors come with at most KBlock channels (RunPart), so vectors 4 and 5 have no fifth
        // accumulator: s40 stands in for it, untouched.
        if (vectors > 4) Load(ref s04, ref s14, ref s24, ref s34, ref s40, Math.Min(outputs, KBlock), acc, accK, 4);
        if (vectors > 5) Load(ref s05, ref s15, ref s25, ref s35, ref s40, Math.Min(outputs, KBlock), acc, accK, 5);
        float* d0 = dy, d1 = dy + (outputs > 1 ? dyStride : 0), d2 = dy + (outputs > 2 ? 2 * dyStride : 0);
        float* d3 = dy + (outputs > 3 ? 3 * dyStride : 0), d4 = dy + (outputs > 4 ? 4 * dyStride : 0);
        long rowStrideA = x.RowStrideA, rowStrideB = x.RowStrideB;
        int stepA = x.StepA, stepB = x.StepB;
        for (int row = 0; row < rows; row++)
        {
            float* xa = x.A + row * rowStrideA, xb = x.B + row * rowStrideB;
            for (int q = 0; q < columns; q++, xa += stepA, xb += stepB)
            {
                var b0 = Vector512.Create(d0[q]);
                var b1 = outputs > 1 ? Vector512.Create(d1[q]) : default;
                var b2 = outputs > 2 ? Vector512.Create(d2[q]) : default;
                var b3 = outputs > 3 ? Vector512.Create(d3[q]) : default;
                var b4 = outputs > 4 ? Vector512.Create(d4[q]) : default;
                // Vector v of the patch: the first plane's vector v while v < TA, else the second's vector v - TA.
                Update(ref s00, ref s10, ref s20, ref s30, ref s40, outputs, b0, b1, b2, b3, b4, fromA > 0 ? xa : xb);
                if (vectors > 1) Update(ref s01, ref s11, ref s21, ref s31, ref s41, outputs, b0, b1, b2, b3, b4, fromA > 1 ? xa + Lanes : xb + (1 - fromA) * Lanes);
                if (vectors > 2) Update(ref s02, ref s12, ref s22, ref s32, ref s42, outputs, b0, b1, b2, b3, b4, fromA > 2 ? xa + 2 * Lanes : xb + (2 - fromA) * Lanes);
                if (vectors > 3) Update(ref s03, ref s13, ref s23, ref s33, ref s43, outputs, b0, b1, b2, b3, b4, fromA > 3 ? xa + 3 * Lanes : xb + (3 - fromA) * Lanes);
                if (vectors > 4) Update(ref s04, ref s14, ref s24, ref s34, ref s40, Math.Min(outputs, KBlock), b0, b1, b2, b3, b4, fromA > 4 ? xa + 4 * Lanes : xb + (4 - fromA) * Lanes);
                if (vectors > 5) Update(ref s05, ref s15, ref s25, ref s35, ref s40, Math.Min(outputs, KBlock), b0, b1, b2, b3, b4, fromA > 5 ? xa + 5 * Lanes : xb + (5 - fromA) * Lanes);
            }
            d0 += columns; d1 += columns; d2 += columns; d3 += columns; d4 += columns;
        }
        Store(s00, s10, s20, s30, s40, outputs, acc, accK, 0);
        if (vectors > 1) Store(s01, s11, s21, s31, s41, outputs, acc, accK, 1);
        if (vectors > 2) Store(s02, s12, s22, s32, s42, outputs, acc, accK, 2);
        if (vectors > 3) Store(s03, s13, s23, s33, s43, outputs, acc, accK, 3);
        if (vectors > 4) Store(s04, s14, s24, s34, s40, Math.Min(outputs, KBlock), acc, accK, 4);
        if (vectors > 5) Store(s05, s15, s25, s35, s40, Math.Min(outputs, KBlock), acc, accK, 5);
    }

    /// <summary>The block's output channels' accumulators of patch vector <paramref name="v"/>, from their rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Load(ref Vector512<float> s0, ref Vector512<float> s1, ref Vector512<float> s2, ref Vector512<float> s3,
        ref Vector512<float> s4, int outputs, float* acc, long accK, int v)
    {
        s0 = Vector512.Load(acc + v * Lanes);
        if (outputs > 1) s1 = Vector512.Load(acc + accK + v * Lanes);
        if (outputs > 2) s2 = Vector512.Load(acc + 2 * accK + v * Lanes);
        if (outputs > 3) s3 = Vector512.Load(acc + 3 * accK + v * Lanes);
        if (outputs > 4) s4 = Vector512.Load(acc + 4 * accK + v * Lanes);
    }

    /// <summary>The block's output channels' accumulators of one patch vector, each plus its dy value times the vector at <paramref name="x"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Update(ref Vector512<float> s0, ref Vector512<float> s1, ref Vector512<float> s2, ref Vector512<float> s3,
        ref Vector512<float> s4, int outputs, Vector512<float> b0, Vector512<float> b1, Vector512<float> b2, Vector512<float> b3,
        Vector512<float> b4, float* x)
    {
        var xv = Vector512.Load(x);
        s0 = Vector512.FusedMultiplyAdd(b0, xv, s0);
        if (outputs > 1) s1 = Vector512.FusedMultiplyAdd(b1, xv, s1);
        if (outputs > 2) s2 = Vector512.FusedMultiplyAdd(b2, xv, s2);
        if (outputs > 3) s3 = Vector512.FusedMultiplyAdd(b3, xv, s3);
        if (outputs > 4) s4 = Vector512.FusedMultiplyAdd(b4, xv, s4);
    }

    /// <summary>The block's output channels' accumulators of patch vector <paramref name="v"/>, back to their rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector512<float> s0, Vector512<float> s1, Vector512<float> s2, Vector512<float> s3, Vector512<float> s4,
        int outputs, float* acc, long accK, int v)
    {
        s0.Store(acc + v * Lanes);
        if (outputs > 1) s1.Store(acc + accK + v * Lanes);
        if (outputs > 2) s2.Store(acc + 2 * accK + v * Lanes);
        if (outputs > 3) s3.Store(acc + 3 * accK + v * Lanes);
        if (outputs > 4) s4.Store(acc + 4 * accK + v * Lanes);
    }
}
