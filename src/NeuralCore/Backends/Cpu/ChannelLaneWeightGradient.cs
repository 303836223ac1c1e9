using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// The weight gradient of a stride-1 convolution with one group (CP-ResNet's 3x3s; see <see cref="Supports"/>), with
/// the input channels in the vector lanes. Each sample's x is copied once into a zero-bordered, channel-last plane
/// [H + 2 padH, W + 2 padW, C]; there the S taps of kernel row r at output position (p, q) read one contiguous row
/// patch of S * C floats, at (p + r, q). So for each output channel k and kernel row r, dw's S * C entries are the
/// sum over (p, q) of dy[k][p, q] times that patch: a rank-one update per position, run in blocks of 4 output
/// channels by up to 6 vectors of the patch (24 accumulators), which per position broadcast 4 dy values and load 6
/// x vectors. No border masks (the border is zeros) and no lane sums; the patch's vectors run on across tap and
/// channel boundaries, so 19 channels x 3 taps take 4 vectors, not 6. AVX-512 only.
/// </summary>
/// <remarks>
/// Why: <see cref="DirectWeightGradient"/> puts positions in the lanes, so every x load sits at a tap's offset (most
/// of them split across two cache lines), carries a border mask, and each block ends in lane sums; the GEMM path
/// copies x R*S times (im2col) and packs it again. On the Xeon host (two 512-bit FMA pipes per core) those ran the
/// big model's 3x3 weight gradients at 31-72 G multiply-adds a second on two threads, about half this path's rate
/// (docs/benchmarks.md, "The Xeon host a sixteenth time").
/// <para>
/// The samples are shared in contiguous parts, one per thread, each summing its samples in order into its own
/// accumulators [K, R, patch]; dw is then part 0 + part 1 + ... (a fixed order), so the results depend on the
/// number of threads, not on timing. Output channels past K (to a multiple of 4) are computed on zero rows, and the
/// lanes past a patch's S * C floats on the next position's values; both are dropped.
/// </para>
/// </remarks>
internal static unsafe class ChannelLaneWeightGradient
{
    private const int Lanes = 16;
    // Output channels per block (with 6 vectors: 24 accumulators, 4 broadcasts and the x vectors of the 32 registers).
    private const int KBlock = 4;
    // Vectors of the row patch per block.
    private const int MaxVectors = 6;
    // Below this many multiply-adds one part runs them all on the calling thread.
    private const long MinMacsPerPart = 1 << 18;

    /// <summary>False leaves every weight gradient to the other paths (tests compare them).</summary>
    internal static bool Enabled { get; set; } = true;

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
        public int Parts, KPad, Vectors;
        public long Length;
    }

    /// <summary>dw [K, C, R, S] = the weight gradient of dy [N, K, P, Q] for x [N, C, H, W] (sample-major; dw overwritten).</summary>
    internal static void Run(float* dy, float* x, float* dw, in Conv2dParams p)
    {
        int vectors = (p.S * p.C + Lanes - 1) / Lanes, kPad = (p.K + KBlock - 1) / KBlock * KBlock;
        long length = (long)kPad * p.R * vectors * Lanes;
        long macs = (long)p.N * p.K * p.C * p.R * p.S * p.P * p.Q;
        int parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, Math.Min(CpuThreading.Threads, p.N));
        var job = new Job
        {
            P = p, Dy = dy, X = x, Parts = parts, KPad = kPad, Vectors = vectors, Length = length,
            Partials = ConvScratch.Current.Get(ConvScratch.Slot.Partials, parts * length),
        };
        // SAFETY: job lives on this stack frame and ForParts returns only after every part is done.
        if (parts == 1) RunPart(&job, 0);
        else CpuThreading.ForParts(parts, &RunPart, &job);

        // dw [k, c, r, s] = part 0 + part 1 + ... of the accumulators [k, r, s * C + c], in part order.
        long rowPatch = (long)vectors * Lanes;
        for (int k = 0; k < p.K; k++)
        for (int r = 0; r < p.R; r++)
        {
            float* source = job.Partials + ((long)k * p.R + r) * rowPatch;
            float* target = dw + (long)k * p.C * p.R * p.S + r * p.S;
            for (int s = 0; s < p.S; s++)
            for (int c = 0; c < p.C; c++)
            {
                float sum = source[s * p.C + c];
                for (int part = 1; part < parts; part++) sum += source[part * length + s * p.C + c];
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

        // One zero-bordered channel-last plane, and a vector's slack past it for the last patch's last vector; the
        // border stays zero from sample to sample.
        int planeIn = p.H * p.W, planeOut = p.P * p.Q, hp = p.H + 2 * p.PadH, wp = p.W + 2 * p.PadW;
        long rowStride = (long)wp * p.C, padded = hp * rowStride + Lanes;
        float* plane = ConvScratch.Current.Get(ConvScratch.Slot.Padded, padded);
        new Span<float>(plane, checked((int)padded)).Clear();
        // dy rows past K read zeros.
        float* zeros = null;
        if (job.KPad > p.K)
        {
            zeros = ConvScratch.Current.Get(ConvScratch.Slot.Rows, planeOut);
            new Span<float>(zeros, planeOut).Clear();
        }
        float** dyRows = stackalloc float*[KBlock];
        long rowPatch = (long)job.Vectors * Lanes, accK = p.R * rowPatch;
        // The patch's vectors in runs of at most 6, as even as they go (8: 4 + 4, 15: 5 + 5 + 5).
        int runs = (job.Vectors + MaxVectors - 1) / MaxVectors;

        for (int n = first; n < end; n++)
        {
            float* xn = job.X + (long)n * p.C * planeIn;
            for (int h = 0; h < p.H; h++)
                Gemm.Transpose(xn + h * p.W, planeIn, plane + (h + p.PadH) * rowStride + p.PadW * p.C, p.C, p.C, p.W);
            float* dyn = job.Dy + (long)n * p.K * planeOut;
            for (int k0 = 0; k0 < job.KPad; k0 += KBlock)
            {
                for (int i = 0; i < KBlock; i++) dyRows[i] = k0 + i < p.K ? dyn + (long)(k0 + i) * planeOut : zeros;
                for (int r = 0; r < p.R; r++)
                {
                    float* a = acc + k0 * accK + r * rowPatch, xr = plane + r * rowStride;
                    for (int run = 0, v = 0; run < runs; run++)
                    {
                        int next = (int)((long)(run + 1) * job.Vectors / runs);
                        Block(next - v, dyRows, p.P, p.Q, xr + v * Lanes, rowStride, p.C, a + v * Lanes, accK);
                        v = next;
                    }
                }
            }
        }
    }

    /// <summary>
    /// acc [k, v] += the sum over positions (p, q) of dy[k][p, q] times vector v of the row patch at (p, q), for the 4 dy
    /// rows and <paramref name="vectors"/> (1 to 6) vectors: the patches <paramref name="step"/> floats apart along a row
    /// of <paramref name="columns"/>, <paramref name="rows"/> rows <paramref name="rowStride"/> floats apart; the
    /// accumulator rows of the 4 output channels <paramref name="accK"/> floats apart.
    /// </summary>
    private static void Block(int vectors, float** dy, int rows, int columns, float* x, long rowStride, int step, float* acc, long accK)
    {
        switch (vectors)
        {
            case 6: Block<Gemm.N6>(dy, rows, columns, x, rowStride, step, acc, accK); break;
            case 5: Block<Gemm.N5>(dy, rows, columns, x, rowStride, step, acc, accK); break;
            case 4: Block<Gemm.N4>(dy, rows, columns, x, rowStride, step, acc, accK); break;
            case 3: Block<Gemm.N3>(dy, rows, columns, x, rowStride, step, acc, accK); break;
            case 2: Block<Gemm.N2>(dy, rows, columns, x, rowStride, step, acc, accK); break;
            default: Block<Gemm.N1>(dy, rows, columns, x, rowStride, step, acc, accK); break;
        }
    }

    /// <summary>
    /// <see cref="Block(int, float**, int, int, float*, long, int, float*, long)"/> for TVectors vectors: one
    /// specialisation per count, whose accumulators past it the JIT drops, so each keeps its 4 x TVectors in registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block<TVectors>(float** dy, int rows, int columns, float* x, long rowStride, int step, float* acc, long accK)
        where TVectors : struct, Gemm.IConstant
    {
        int vectors = TVectors.Value;
        float* a0 = acc, a1 = acc + accK, a2 = acc + 2 * accK, a3 = acc + 3 * accK;
        // s{k}{v}: output channel k of the block, vector v of the patch.
        Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default, s04 = default, s05 = default;
        Vector512<float> s10 = default, s11 = default, s12 = default, s13 = default, s14 = default, s15 = default;
        Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default, s24 = default, s25 = default;
        Vector512<float> s30 = default, s31 = default, s32 = default, s33 = default, s34 = default, s35 = default;
        Load(ref s00, ref s10, ref s20, ref s30, a0, a1, a2, a3, 0);
        if (vectors > 1) Load(ref s01, ref s11, ref s21, ref s31, a0, a1, a2, a3, 1);
        if (vectors > 2) Load(ref s02, ref s12, ref s22, ref s32, a0, a1, a2, a3, 2);
        if (vectors > 3) Load(ref s03, ref s13, ref s23, ref s33, a0, a1, a2, a3, 3);
        if (vectors > 4) Load(ref s04, ref s14, ref s24, ref s34, a0, a1, a2, a3, 4);
        if (vectors > 5) Load(ref s05, ref s15, ref s25, ref s35, a0, a1, a2, a3, 5);
        float* d0 = dy[0], d1 = dy[1], d2 = dy[2], d3 = dy[3];
        for (int row = 0; row < rows; row++)
        {
            float* xq = x + row * rowStride;
            for (int q = 0; q < columns; q++, xq += step)
            {
                var b0 = Vector512.Create(d0[q]);
                var b1 = Vector512.Create(d1[q]);
                var b2 = Vector512.Create(d2[q]);
                var b3 = Vector512.Create(d3[q]);
                Update(ref s00, ref s10, ref s20, ref s30, b0, b1, b2, b3, xq);
                if (vectors > 1) Update(ref s01, ref s11, ref s21, ref s31, b0, b1, b2, b3, xq + Lanes);
                if (vectors > 2) Update(ref s02, ref s12, ref s22, ref s32, b0, b1, b2, b3, xq + 2 * Lanes);
                if (vectors > 3) Update(ref s03, ref s13, ref s23, ref s33, b0, b1, b2, b3, xq + 3 * Lanes);
                if (vectors > 4) Update(ref s04, ref s14, ref s24, ref s34, b0, b1, b2, b3, xq + 4 * Lanes);
                if (vectors > 5) Update(ref s05, ref s15, ref s25, ref s35, b0, b1, b2, b3, xq + 5 * Lanes);
            }
            d0 += columns; d1 += columns; d2 += columns; d3 += columns;
        }
        Store(s00, s10, s20, s30, a0, a1, a2, a3, 0);
        if (vectors > 1) Store(s01, s11, s21, s31, a0, a1, a2, a3, 1);
        if (vectors > 2) Store(s02, s12, s22, s32, a0, a1, a2, a3, 2);
        if (vectors > 3) Store(s03, s13, s23, s33, a0, a1, a2, a3, 3);
        if (vectors > 4) Store(s04, s14, s24, s34, a0, a1, a2, a3, 4);
        if (vectors > 5) Store(s05, s15, s25, s35, a0, a1, a2, a3, 5);
    }

    /// <summary>The 4 output channels' accumulators of patch vector <paramref name="v"/>, from their rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Load(ref Vector512<float> s0, ref Vector512<float> s1, ref Vector512<float> s2, ref Vector512<float> s3,
        float* a0, float* a1, float* a2, float* a3, int v)
    {
        s0 = Vector512.Load(a0 + v * Lanes);
        s1 = Vector512.Load(a1 + v * Lanes);
        s2 = Vector512.Load(a2 + v * Lanes);
        s3 = Vector512.Load(a3 + v * Lanes);
    }

    /// <summary>The 4 output channels' accumulators of one patch vector, each plus its dy value times the vector at <paramref name="x"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Update(ref Vector512<float> s0, ref Vector512<float> s1, ref Vector512<float> s2, ref Vector512<float> s3,
        Vector512<float> b0, Vector512<float> b1, Vector512<float> b2, Vector512<float> b3, float* x)
    {
        var xv = Vector512.Load(x);
        s0 = Vector512.FusedMultiplyAdd(b0, xv, s0);
        s1 = Vector512.FusedMultiplyAdd(b1, xv, s1);
        s2 = Vector512.FusedMultiplyAdd(b2, xv, s2);
        s3 = Vector512.FusedMultiplyAdd(b3, xv, s3);
    }

    /// <summary>The 4 output channels' accumulators of patch vector <paramref name="v"/>, back to their rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector512<float> s0, Vector512<float> s1, Vector512<float> s2, Vector512<float> s3,
        float* a0, float* a1, float* a2, float* a3, int v)
    {
        s0.Store(a0 + v * Lanes);
        s1.Store(a1 + v * Lanes);
        s2.Store(a2 + v * Lanes);
        s3.Store(a3 + v * Lanes);
    }
}
