using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

// Batch norm over small planes (HW below SmallPlane: CP-ResNet's 6 x 6, 3 x 6 and 1 x 6 maps), sample-major.
// A channel's plane is then a few values, so walking channel by channel spends its time on loop overhead; instead
// every sample's [C * HW] block is one contiguous row, the per-position sums run over the samples 16 lanes at a time
// (float over blocks of 16 samples, then double; each part walks the rows of the samples its thread's convolution
// wrote, SumsRowsPart), and the per-channel results come from adding up each channel's HW positions in double. Each
// position is summed in the same order whatever the thread count and the walk. The parts expand the per-channel
// coefficients per position in their own thread's scratch (PartView). Without AVX-512 the same walks run on 256-bit
// vectors (AVX2 and FMA), each chunk of 16 positions as two halves: the same operations per position, so the same bits.
internal static unsafe partial class BatchNormKernels
{
    // Planes with fewer values than this take the sample-major path.
    internal const int SmallPlane = 64;

    // Samples summed in float before a partial sum moves to double.
    private const int FloatBlock = 16;

    private struct SmallJob
    {
        public int N, Width;
        public bool Gradient, Relu;
        // Backward of a fused ReLU: dy counts where this output is positive.
        public float* X, Dy, Y, ReluOutput;
        // Training with a fused addition: y = batch norm + Residual, then a ReLU when ResidualRelu.
        public float* Residual;
        public bool ResidualRelu;
        public int C, HW;
        // Per channel [4][C]: the shift or mean, then the output pass's coefficients A, B and O.
        public float* Channel;
        // The same per position j in [0, C * HW), each part's own copy (PartView).
        public float* M, A, B, O;
        // Floats of each thread's scratch a job uses: Channel, then a part's M, A, B and O.
        public int ScratchFloats;
        public double* S1, S2;
        // Per channel [2][C]: S1 and S2 added up over the channel's positions.
        public double* ChannelSums;
        public int Parts;
        // The sums' parts, chained: how many have added their blocks to S1 and S2.
        public int Published;
    }

    /// <summary>A job over [n, c, hw] with its per-channel values and sums in this thread's scratch.</summary>
    private static SmallJob NewSmallJob(int n, int c, int hw)
    {
        int width = c * hw;
        var scratch = SmallScratch.Current;
        int floats = 4 * c + 4 * width;
        float* f = scratch.Floats(floats);
        double* d = scratch.Doubles(2 * width + 2 * c);
        return new SmallJob
        {
            N = n, Width = width, C = c, HW = hw, Channel = f, ScratchFloats = floats,
            S1 = d, S2 = d + width, ChannelSums = d + 2 * width,
        };
    }

    /// <summary>
    /// The job as one part sees it: M (with <paramref name="shift"/>) and the output pass's coefficients (with
    /// <paramref name="output"/>) expanded per position from the channels' values into this part's thread's scratch, so
    /// that no part reads per position what another core wrote.
    /// </summary>
    private static SmallJob PartView(ref SmallJob job, bool shift, bool output)
    {
        var view = job;
        float* at = SmallScratch.Current.Floats(job.ScratchFloats) + 4 * job.C;
        view.M = at; view.A = at + job.Width; view.B = at + 2 * job.Width; view.O = at + 3 * job.Width;
        if (shift) Expand(job.Channel, job.C, job.HW, view.M);
        if (output)
        {
            Expand(job.Channel + job.C, job.C, job.HW, view.A);
            if (job.Gradient) Expand(job.Channel + 2 * job.C, job.C, job.HW, view.B);
            Expand(job.Channel + 3 * job.C, job.C, job.HW, view.O);
        }
        return view;
    }

    /// <summary>target[ch * hw + i] = values[ch] for every position i of every channel.</summary>
    private static void Expand(float* values, int c, int hw, float* target)
    {
        for (int ch = 0; ch < c; ch++)
        {
            float v = values[ch];
            float* row = target + (long)ch * hw;
            for (int i = 0; i < hw; i++) row[i] = v;
        }
    }

    /// <summary>ChannelSums from S1 and S2: each channel's positions added in order, in double.</summary>
    private static void ChannelTotals(ref SmallJob job)
    {
        for (int ch = 0; ch < job.C; ch++)
        {
            double sum = 0, second = 0;
            for (int i = 0; i < job.HW; i++)
            {
                sum += job.S1[ch * job.HW + i];
                second += job.S2[ch * job.HW + i];
            }
            job.ChannelSums[ch] = sum;
            job.ChannelSums[job.C + ch] = second;
        }
    }

    /// <summary>Grow-only per-thread scratch: expanded per-position coefficients (floats) and sums (doubles).</summary>
    private sealed class SmallScratch
    {
        [ThreadStatic] private static SmallScratch? current;

        private float[] _floats = [], _blocks = [];
        private double[] _doubles = [], _totals = [];

        public static SmallScratch Current => current ??= new SmallScratch();

        /// <summary>The backward's per-block float sums (apart from <see cref="Floats"/>, which the same job holds).</summary>
        public float* Blocks(long length)
        {
            if (_blocks.Length < length) _blocks = GC.AllocateUninitializedArray<float>(checked((int)length), pinned: true);
            // SAFETY: as below.
            return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_blocks));
        }

        public float* Floats(int length)
        {
            if (_floats.Length < length) _floats = GC.AllocateUninitializedArray<float>(length, pinned: true);
            // SAFETY: pinned-heap array kept alive by this thread-static scratch.
            return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_floats));
        }

        /// <summary>A large-plane job's running sums per channel of a block (apart from <see cref="Doubles"/>, which its parts use).</summary>
        public double* Totals(int length)
        {
            if (_totals.Length < length) _totals = GC.AllocateUninitializedArray<double>(length, pinned: true);
            // SAFETY: as below.
            return (double*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_totals));
        }

        public double* Doubles(int length)
        {
            if (_doubles.Length < length) _doubles = GC.AllocateUninitializedArray<double>(length, pinned: true);
            // SAFETY: as above.
            return (double*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_doubles));
        }
    }

    private static void TrainingSmall(float* x, float* gamma, float* beta, float* y, float* mean, float* invStd,
        float* runningMean, float* runningVar, float momentum, float eps, int n, int c, int hw, bool relu, float* residual, bool residualRelu)
    {
        var job = NewSmallJob(n, c, hw);
        job.X = x; job.Y = y; job.Relu = relu; job.Residual = residual; job.ResidualRelu = residualRelu;
        // Shift each channel by its first value (of sample 0), which keeps the one-pass variance accurate.
        for (int ch = 0; ch < c; ch++) job.Channel[ch] = x[ch * hw];
        Sums(ref job);
        long count = (long)n * hw;
        for (int ch = 0; ch < c; ch++)
        {
            double shift = x[ch * hw], sum = job.ChannelSums[ch], sumSquares = job.ChannelSums[c + ch];
            double centred = sum / count;
            double variance = Math.Max(sumSquares / count - centred * centred, 0);
            double m = shift + centred;
            double inv = 1 / Math.Sqrt(variance + eps);
            mean[ch] = (float)m;
            invStd[ch] = (float)inv;
            if (runningMean != null) runningMean[ch] = (float)((1 - (double)momentum) * runningMean[ch] + momentum * m);
            if (runningVar != null)
                runningVar[ch] = (float)((1 - (double)momentum) * runningVar[ch] + momentum * (variance * count / (count - 1)));
            job.Channel[c + ch] = (float)(gamma[ch] * inv);
            job.Channel[3 * c + ch] = (float)(beta[ch] - m * gamma[ch] * inv);
        }
        Apply(ref job);
    }

    private static void BackwardSmall(float* x, float* dy, float* gamma, float* mean, float* invStd, float* dx,
        float* dgamma, float* dbeta, int n, int c, int hw, float* reluOutput)
    {
        var job = NewSmallJob(n, c, hw);
        job.Gradient = true; job.X = x; job.Dy = dy; job.Y = dx; job.ReluOutput = reluOutput;
        for (int ch = 0; ch < c; ch++) job.Channel[ch] = mean[ch];
        Sums(ref job);
        long count = (long)n * hw;
        for (int ch = 0; ch < c; ch++)
        {
            double sumDy = job.ChannelSums[ch], sumDyCentred = job.ChannelSums[c + ch];
            // As BackwardChannel: dx = gamma * invstd / M * (M * dy - sum(dy) - xhat * sum(dy * xhat)).
            double inv = invStd[ch];
            double dg = sumDyCentred * inv;
            dbeta[ch] = (float)sumDy;
            dgamma[ch] = (float)dg;
            double a = gamma[ch] * inv;
            job.Channel[c + ch] = (float)a;
            job.Channel[2 * c + ch] = (float)(-a * inv * dg / count);
            job.Channel[3 * c + ch] = (float)(-a * sumDy / count);
        }
        Apply(ref job);
    }

    /// <summary>S1[j], S2[j] over the samples: sum of (x - M) and (x - M)^2, or with Gradient sum of dy and dy * (x - M).</summary>
    private static void Sums(ref SmallJob job)
    {
        int chunks = (job.Width + 15) / 16;
        long elements = (long)job.N * job.Width;
        if (Avx512F.IsSupported || RowsAvx2)
        {
            int blocks = (job.N + FloatBlock - 1) / FloatBlock;
            job.Parts = (int)Math.Clamp(elements / MinElementsPerPart, 1, Math.Min(CpuThreading.Threads, blocks));
            job.Published = 0;
            // SAFETY: job lives on this stack frame and ForParts returns only after every part is done.
            fixed (SmallJob* state = &job) CpuThreading.ForParts(job.Parts, &SumsRowsPart, state);
            return;
        }
        job.Parts = (int)Math.Clamp(elements / MinElementsPerPart, 1, Math.Min(CpuThreading.Threads, chunks));
        // SAFETY: job lives on this stack frame and ForParts returns only after every part is done.
        fixed (SmallJob* state = &job) CpuThreading.ForParts(job.Parts, &SumsPart, state);
        ChannelTotals(ref job);
    }

    /// <summary>Whether the walks over sample rows run on 256-bit vectors: AVX2 and FMA without AVX-512.</summary>
    private static bool RowsAvx2 => !Avx512F.IsSupported && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>The first <paramref name="count"/> of 8 lanes (none for 0 or less, all from 8 on).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> FirstLanesAvx2(int count) =>
        Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(count)).AsSingle();

    /// <summary>8 floats from <paramref name="p"/>, of which the first <paramref name="live"/> are read and the rest are zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> LoadAvx2(float* p, int live) => live >= 8 ? Vector256.Load(p) : Avx.MaskLoad(p, FirstLanesAvx2(live));

    private static void SumsPart(void* state, int part)
    {
        ref SmallJob shared = ref *(SmallJob*)state;
        var job = PartView(ref shared, shift: true, output: false);
        int chunks = (job.Width + 15) / 16;
        int first = (int)((long)part * chunks / job.Parts), end = (int)((long)(part + 1) * chunks / job.Parts);
        for (int j = first * 16; j < Math.Min(end * 16, job.Width); j++) SumsScalar(ref job, j);
    }

    /// <summary>
    /// The sums of blocks of 16 samples [part's share): each part takes the samples its thread's convolution wrote and the
    /// output pass will give it, walks their rows front to back (a stream the prefetcher follows) and keeps each block's
    /// float sums [chunk][s1, s2][16 lanes] in its own thread's scratch; then, once the part before it has (Published),
    /// adds them to S1 and S2 in double, block after block, which the part before left with its blocks' sums (the first
    /// from zero): one walk's order whatever the parts. The last part adds up the channels (ChannelTotals). Nothing
    /// crosses between the cores but the running sums, once per part, and the channels' totals. (The forward's parts
    /// used to take chunks of positions down every sample, half of them written on the other core, and the backward's
    /// to leave their blocks' sums for the calling thread to add: on this VM, when its two vCPUs share no cache, MNIST
    /// b256 training's batch norms over small planes took 0.93 against 0.60 ms forward and 1.12 against 0.83 backward
    /// (pruned), 1.56 against 1.10 and 1.85 against 1.44 ms (big); see docs/benchmarks.md, step 105.)
    /// </summary>
    private static void SumsRowsPart(void* state, int part)
    {
        ref SmallJob shared = ref *(SmallJob*)state;
        var job = PartView(ref shared, shift: true, output: false);
        int blocks = (job.N + FloatBlock - 1) / FloatBlock;
        int first = (int)((long)part * blocks / job.Parts), end = (int)((long)(part + 1) * blocks / job.Parts);
        int width = job.Width, chunks = (width + 15) / 16, whole = width / 16;
        bool wide = Avx512F.IsSupported;
        var mask = wide ? ConvKernels.FirstLanes(width - whole * 16) : default;
        float* local = SmallScratch.Current.Blocks((long)(end - first) * chunks * 32);
        for (int block = first; block < end; block++)
        {
            float* sums = local + (long)(block - first) * chunks * 32;
            int n1 = Math.Min((block + 1) * FloatBlock, job.N);
            if (!job.Gradient)
            {
                if (wide) StatisticsBlock(job.X, job.M, width, block * FloatBlock, n1, sums);
                else StatisticsBlockAvx2(job.X, job.M, width, block * FloatBlock, n1, sums);
                continue;
            }
            new Span<float>(sums, chunks * 32).Clear();
            for (int s = block * FloatBlock; s < n1; s++)
            {
                long at = (long)s * width;
                float* x = job.X + at;
                float* dy = job.Dy + at;
                float* relu = job.ReluOutput == null ? null : job.ReluOutput + at;
                int i = 0;
                if (wide)
                {
                    for (; i < whole; i++) SumsStep(x, dy, relu, job.M, sums, i, Vector512<float>.AllBitsSet, masked: false);
                    if (i < chunks) SumsStep(x, dy, relu, job.M, sums, i, mask, masked: true);
                }
                else
                {
                    for (; i < chunks; i++)
                    {
                        SumsStepAvx2(x, dy, relu, job.M, sums, i, 0, width);
                        SumsStepAvx2(x, dy, relu, job.M, sums, i, 8, width);
                    }
                }
            }
        }
        if (part > 0)
        {
            // Parts only wait for lower parts, and the calling thread takes part 0 first and any part still untaken
            // after it in order, so the chain always moves.
            var spin = new SpinWait();
            while (Volatile.Read(ref shared.Published) < part) spin.SpinOnce(sleep1Threshold: -1);
        }
        if (wide) AddBlocks(ref job, local, end - first, chunks, fromZero: part == 0);
        else AddBlocksAvx2(ref job, local, end - first, chunks, fromZero: part == 0);
        if (part == job.Parts - 1) ChannelTotals(ref job);
        Volatile.Write(ref shared.Published, part + 1);
    }

    /// <summary>
    /// S1, S2 (from zero, or what they hold) plus the blocks' float sums, added in double block after block:
    /// <see cref="SumsScalar"/>'s order.
    /// </summary>
    private static void AddBlocks(ref SmallJob job, float* blockSums, int blocks, int chunks, bool fromZero)
    {
        int width = job.Width;
        var mask = ConvKernels.FirstLanes(width - (chunks - 1) * 16);
        var (maskLo, maskHi) = Vector512.Widen(mask.AsInt32());
        for (int i = 0; i < chunks; i++)
        {
            Vector512<double> s1Lo = default, s1Hi = default, s2Lo = default, s2Hi = default;
            int j = i * 16;
            if (!fromZero)
            {
                if (j + 16 <= width)
                {
                    s1Lo = Vector512.Load(job.S1 + j); s1Hi = Vector512.Load(job.S1 + j + 8);
                    s2Lo = Vector512.Load(job.S2 + j); s2Hi = Vector512.Load(job.S2 + j + 8);
                }
                else
                {
                    s1Lo = Avx512F.MaskLoad(job.S1 + j, maskLo.AsDouble(), Vector512<double>.Zero);
                    s1Hi = Avx512F.MaskLoad(job.S1 + j + 8, maskHi.AsDouble(), Vector512<double>.Zero);
                    s2Lo = Avx512F.MaskLoad(job.S2 + j, maskLo.AsDouble(), Vector512<double>.Zero);
                    s2Hi = Avx512F.MaskLoad(job.S2 + j + 8, maskHi.AsDouble(), Vector512<double>.Zero);
                }
            }
            for (int block = 0; block < blocks; block++)
            {
                float* sums = blockSums + ((long)block * chunks + i) * 32;
                var (lo1, hi1) = Vector512.Widen(Vector512.Load(sums));
                var (lo2, hi2) = Vector512.Widen(Vector512.Load(sums + 16));
                s1Lo += lo1; s1Hi += hi1; s2Lo += lo2; s2Hi += hi2;
            }
            if (j + 16 <= width)
            {
                s1Lo.Store(job.S1 + j); s1Hi.Store(job.S1 + j + 8);
                s2Lo.Store(job.S2 + j); s2Hi.Store(job.S2 + j + 8);
            }
            else
            {
                Avx512F.MaskStore(job.S1 + j, maskLo.AsDouble(), s1Lo);
                Avx512F.MaskStore(job.S1 + j + 8, maskHi.AsDouble(), s1Hi);
                Avx512F.MaskStore(job.S2 + j, maskLo.AsDouble(), s2Lo);
                Avx512F.MaskStore(job.S2 + j + 8, maskHi.AsDouble(), s2Hi);
            }
        }
    }

    /// <summary>
    /// The forward's float sums of samples [n0, n1) (one block) into sums [chunk][s1, s2][16 lanes]: the rows walked in
    /// strips of 4 chunks (64 positions), each strip's 8 sums in registers over the block's samples, then stored.
    /// </summary>
    private static void StatisticsBlock(float* x, float* m, int width, int n0, int n1, float* sums)
    {
        int chunks = (width + 15) / 16;
        for (int c0 = 0; c0 < chunks; c0 += 4)
        {
            int o = c0 * 16;
            var k0 = ConvKernels.FirstLanes(Math.Clamp(width - o, 0, 16));
            var k1 = ConvKernels.FirstLanes(Math.Clamp(width - o - 16, 0, 16));
            var k2 = ConvKernels.FirstLanes(Math.Clamp(width - o - 32, 0, 16));
            var k3 = ConvKernels.FirstLanes(Math.Clamp(width - o - 48, 0, 16));
            var m0 = Avx512F.MaskLoad(m + o, k0, Vector512<float>.Zero);
            var m1 = Avx512F.MaskLoad(m + o + 16, k1, Vector512<float>.Zero);
            var m2 = Avx512F.MaskLoad(m + o + 32, k2, Vector512<float>.Zero);
            var m3 = Avx512F.MaskLoad(m + o + 48, k3, Vector512<float>.Zero);
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, q0 = default, q1 = default, q2 = default, q3 = default;
            for (int s = n0; s < n1; s++)
            {
                float* row = x + (long)s * width + o;
                var d0 = Avx512F.MaskLoad(row, k0, Vector512<float>.Zero) - m0;
                var d1 = Avx512F.MaskLoad(row + 16, k1, Vector512<float>.Zero) - m1;
                var d2 = Avx512F.MaskLoad(row + 32, k2, Vector512<float>.Zero) - m2;
                var d3 = Avx512F.MaskLoad(row + 48, k3, Vector512<float>.Zero) - m3;
                a0 += d0; a1 += d1; a2 += d2; a3 += d3;
                q0 = Vector512.FusedMultiplyAdd(d0, d0, q0);
                q1 = Vector512.FusedMultiplyAdd(d1, d1, q1);
                q2 = Vector512.FusedMultiplyAdd(d2, d2, q2);
                q3 = Vector512.FusedMultiplyAdd(d3, d3, q3);
            }
            float* at = sums + (long)c0 * 32;
            a0.Store(at); q0.Store(at + 16);
            if (c0 + 1 < chunks) { a1.Store(at + 32); q1.Store(at + 48); }
            if (c0 + 2 < chunks) { a2.Store(at + 64); q2.Store(at + 80); }
            if (c0 + 3 < chunks) { a3.Store(at + 96); q3.Store(at + 112); }
        }
    }

    /// <summary>One sample's chunk i of <see cref="SumsRowsPart"/>: its 16 (or masked) positions added to the block's float sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SumsStep(float* x, float* dy, float* relu, float* m, float* sums, int i, Vector512<float> mask, bool masked)
    {
        int o = i * 16;
        float* acc = sums + i * 32;
        var centred = (masked ? Avx512F.MaskLoad(x + o, mask, Vector512<float>.Zero) : Vector512.Load(x + o))
            - (masked ? Avx512F.MaskLoad(m + o, mask, Vector512<float>.Zero) : Vector512.Load(m + o));
        var g = masked ? Avx512F.MaskLoad(dy + o, mask, Vector512<float>.Zero) : Vector512.Load(dy + o);
        if (relu != null)
        {
            var output = masked ? Avx512F.MaskLoad(relu + o, mask, Vector512<float>.Zero) : Vector512.Load(relu + o);
            g = Vector512.ConditionalSelect(Vector512.GreaterThan(output, Vector512<float>.Zero), g, Vector512<float>.Zero);
        }
        (Vector512.Load(acc) + g).Store(acc);
        Vector512.FusedMultiplyAdd(g, centred, Vector512.Load(acc + 16)).Store(acc + 16);
    }

    /// <summary>
    /// <see cref="AddBlocks"/> on 256-bit vectors: each chunk's 16 positions in four groups of 4 doubles, those past the
    /// width neither read nor written.
    /// </summary>
    private static void AddBlocksAvx2(ref SmallJob job, float* blockSums, int blocks, int chunks, bool fromZero)
    {
        int width = job.Width;
        for (int i = 0; i < chunks; i++)
            for (int group = 0; group < 4; group++)
            {
                int j = i * 16 + 4 * group, live = Math.Min(width - j, 4);
                if (live <= 0) break;
                var keep = Vector256.LessThan(Vector256.Create(0L, 1, 2, 3), Vector256.Create((long)live)).AsDouble();
                Vector256<double> s1 = default, s2 = default;
                if (!fromZero)
                {
                    s1 = live == 4 ? Vector256.Load(job.S1 + j) : Avx.MaskLoad(job.S1 + j, keep);
                    s2 = live == 4 ? Vector256.Load(job.S2 + j) : Avx.MaskLoad(job.S2 + j, keep);
                }
                for (int block = 0; block < blocks; block++)
                {
                    float* sums = blockSums + ((long)block * chunks + i) * 32 + 4 * group;
                    s1 += Avx.ConvertToVector256Double(Vector128.Load(sums));
                    s2 += Avx.ConvertToVector256Double(Vector128.Load(sums + 16));
                }
                if (live == 4)
                {
                    s1.Store(job.S1 + j);
                    s2.Store(job.S2 + j);
                }
                else
                {
                    Avx.MaskStore(job.S1 + j, keep, s1);
                    Avx.MaskStore(job.S2 + j, keep, s2);
                }
            }
    }

    /// <summary>
    /// <see cref="StatisticsBlock"/> on 256-bit vectors: strips of 2 chunks (32 positions, 4 vectors and their squares in
    /// registers), lanes past the width read as zero.
    /// </summary>
    private static void StatisticsBlockAvx2(float* x, float* m, int width, int n0, int n1, float* sums)
    {
        int chunks = (width + 15) / 16;
        for (int c0 = 0; c0 < chunks; c0 += 2)
        {
            int o = c0 * 16;
            int l0 = width - o, l1 = l0 - 8, l2 = l0 - 16, l3 = l0 - 24;
            var m0 = LoadAvx2(m + o, l0);
            var m1 = LoadAvx2(m + o + 8, l1);
            var m2 = LoadAvx2(m + o + 16, l2);
            var m3 = LoadAvx2(m + o + 24, l3);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, q0 = default, q1 = default, q2 = default, q3 = default;
            for (int s = n0; s < n1; s++)
            {
                float* row = x + (long)s * width + o;
                var d0 = LoadAvx2(row, l0) - m0;
                var d1 = LoadAvx2(row + 8, l1) - m1;
                var d2 = LoadAvx2(row + 16, l2) - m2;
                var d3 = LoadAvx2(row + 24, l3) - m3;
                a0 += d0; a1 += d1; a2 += d2; a3 += d3;
                q0 = Vector256.FusedMultiplyAdd(d0, d0, q0);
                q1 = Vector256.FusedMultiplyAdd(d1, d1, q1);
                q2 = Vector256.FusedMultiplyAdd(d2, d2, q2);
                q3 = Vector256.FusedMultiplyAdd(d3, d3, q3);
            }
            float* at = sums + (long)c0 * 32;
            a0.Store(at); a1.Store(at + 8); q0.Store(at + 16); q1.Store(at + 24);
            if (c0 + 1 < chunks) { a2.Store(at + 32); a3.Store(at + 40); q2.Store(at + 48); q3.Store(at + 56); }
        }
    }

    /// <summary>
    /// <see cref="SumsStep"/> on 256-bit vectors for the 8 positions of chunk i from lane <paramref name="half"/> (0 or 8),
    /// those past <paramref name="width"/> read as zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SumsStepAvx2(float* x, float* dy, float* relu, float* m, float* sums, int i, int half, int width)
    {
        int o = i * 16 + half, live = width - o;
        if (live <= 0) return;
        float* acc = sums + i * 32 + half;
        var centred = LoadAvx2(x + o, live) - LoadAvx2(m + o, live);
        var g = LoadAvx2(dy + o, live);
        if (relu != null) g = Vector256.ConditionalSelect(Vector256.GreaterThan(LoadAvx2(relu + o, live), Vector256<float>.Zero), g, Vector256<float>.Zero);
        (Vector256.Load(acc) + g).Store(acc);
        Vector256.FusedMultiplyAdd(g, centred, Vector256.Load(acc + 16)).Store(acc + 16);
    }

    /// <summary>One position's sums, in <see cref="SumsRowsPart"/>'s order (float blocks of samples, then double), without AVX-512 or AVX2.</summary>
    private static void SumsScalar(ref SmallJob job, int j)
    {
        float m = job.M[j];
        double s1d = 0, s2d = 0;
        for (int n0 = 0; n0 < job.N; n0 += FloatBlock)
        {
            int n1 = Math.Min(n0 + FloatBlock, job.N);
            float s1 = 0, s2 = 0;
            for (int s = n0; s < n1; s++)
            {
                long at = (long)s * job.Width + j;
                float centred = job.X[at] - m;
                if (job.Gradient)
                {
                    float g = job.ReluOutput == null || job.ReluOutput[at] > 0 ? job.Dy[at] : 0;
                    s1 += g;
                    s2 = MathF.FusedMultiplyAdd(g, centred, s2);
                }
                else
                {
                    s1 += centred;
                    s2 = MathF.FusedMultiplyAdd(centred, centred, s2);
                }
            }
            s1d += s1;
            s2d += s2;
        }
        job.S1[j] = s1d;
        job.S2[j] = s2d;
    }

    /// <summary>Y = X * A + O per position, or with Gradient dx = dy * A + ((x - M) * B + O).</summary>
    private static void Apply(ref SmallJob job)
    {
        long elements = (long)job.N * job.Width;
        job.Parts = (int)Math.Clamp(elements / MinElementsPerPart, 1, Math.Min(CpuThreading.Threads, job.N));
        // SAFETY: job lives on this stack frame and ForParts returns only after every part is done.
        fixed (SmallJob* state = &job) CpuThreading.ForParts(job.Parts, &ApplyPart, state);
    }

    private static void ApplyPart(void* state, int part)
    {
        ref SmallJob shared = ref *(SmallJob*)state;
        var job = PartView(ref shared, shift: shared.Gradient, output: true);
        int first = (int)((long)part * job.N / job.Parts), end = (int)((long)(part + 1) * job.N / job.Parts);
        int width = job.Width;
        for (int s = first; s < end; s++)
        {
            long row = (long)s * width;
            float* x = job.X + row, y = job.Y + row;
            int j = 0;
            if (job.Gradient)
            {
                float* g = job.Dy + row;
                float* relu = job.ReluOutput == null ? null : job.ReluOutput + row;
                if (Avx512F.IsSupported)
                {
                    for (; j + 16 <= width; j += 16)
                    {
                        var inner = Vector512.FusedMultiplyAdd(Vector512.Load(x + j) - Vector512.Load(job.M + j), Vector512.Load(job.B + j), Vector512.Load(job.O + j));
                        var gj = Vector512.Load(g + j);
                        if (relu != null) gj = Vector512.ConditionalSelect(Vector512.GreaterThan(Vector512.Load(relu + j), Vector512<float>.Zero), gj, Vector512<float>.Zero);
                        Vector512.FusedMultiplyAdd(gj, Vector512.Load(job.A + j), inner).Store(y + j);
                    }
                    if (j < width)
                    {
                        // The last positions of a width that is not a multiple of 16, masked: the same operations.
                        var mask = ConvKernels.FirstLanes(width - j);
                        var inner = Vector512.FusedMultiplyAdd(Avx512F.MaskLoad(x + j, mask, default) - Avx512F.MaskLoad(job.M + j, mask, default),
                            Avx512F.MaskLoad(job.B + j, mask, default), Avx512F.MaskLoad(job.O + j, mask, default));
                        var gj = Avx512F.MaskLoad(g + j, mask, default);
                        if (relu != null)
                            gj = Vector512.ConditionalSelect(Vector512.GreaterThan(Avx512F.MaskLoad(relu + j, mask, default), Vector512<float>.Zero), gj, Vector512<float>.Zero);
                        Avx512F.MaskStore(y + j, mask, Vector512.FusedMultiplyAdd(gj, Avx512F.MaskLoad(job.A + j, mask, default), inner));
                        j = width;
                    }
                }
                else if (RowsAvx2)
                {
                    // Whole vectors of 8, the last positions by the scalar loop below: the same operations.
                    for (; j + 8 <= width; j += 8)
                    {
                        var inner = Vector256.FusedMultiplyAdd(Vector256.Load(x + j) - Vector256.Load(job.M + j), Vector256.Load(job.B + j), Vector256.Load(job.O + j));
                        var gj = Vector256.Load(g + j);
                        if (relu != null) gj = Vector256.ConditionalSelect(Vector256.GreaterThan(Vector256.Load(relu + j), Vector256<float>.Zero), gj, Vector256<float>.Zero);
                        Vector256.FusedMultiplyAdd(gj, Vector256.Load(job.A + j), inner).Store(y + j);
                    }
                }
                for (; j < width; j++)
                {
                    float gj = relu == null || relu[j] > 0 ? g[j] : 0;
                    y[j] = MathF.FusedMultiplyAdd(gj, job.A[j], MathF.FusedMultiplyAdd(x[j] - job.M[j], job.B[j], job.O[j]));
                }
            }
            else if (job.Residual != null)
            {
                ApplyResidual(ref job, x, job.Residual + row, y, width);
            }
            else
            {
                if (Avx512F.IsSupported)
                {
                    if (job.Relu)
                    {
                        for (; j + 16 <= width; j += 16)
                            Vector512.Max(Vector512.FusedMultiplyAdd(Vector512.Load(x + j), Vector512.Load(job.A + j), Vector512.Load(job.O + j)), Vector512<float>.Zero).Store(y + j);
                    }
                    else
                    {
                        for (; j + 16 <= width; j += 16)
                            Vector512.FusedMultiplyAdd(Vector512.Load(x + j), Vector512.Load(job.A + j), Vector512.Load(job.O + j)).Store(y + j);
                    }
                    if (j < width)
                    {
                        // The last positions, masked: the same operations (ReLU as the vector maximum above).
                        var mask = ConvKernels.FirstLanes(width - j);
                        var v = Vector512.FusedMultiplyAdd(Avx512F.MaskLoad(x + j, mask, default), Avx512F.MaskLoad(job.A + j, mask, default),
                            Avx512F.MaskLoad(job.O + j, mask, default));
                        Avx512F.MaskStore(y + j, mask, job.Relu ? Vector512.Max(v, Vector512<float>.Zero) : v);
                        j = width;
                    }
                }
                else if (RowsAvx2)
                {
                    // Whole vectors of 8, the last positions by the scalar loop below: the same operations.
                    for (; j + 8 <= width; j += 8)
                    {
                        var v = Vector256.FusedMultiplyAdd(Vector256.Load(x + j), Vector256.Load(job.A + j), Vector256.Load(job.O + j));
                        (job.Relu ? Vector256.Max(v, Vector256<float>.Zero) : v).Store(y + j);
                    }
                }
                for (; j < width; j++)
                {
                    float v = MathF.FusedMultiplyAdd(x[j], job.A[j], job.O[j]);
                    y[j] = job.Relu ? Relu(v) : v;
                }
            }
        }
    }

    /// <summary>
    /// One sample's row of a batch norm with a fused addition: y = (x * A + O) + r, then max(y, 0) with
    /// <see cref="SmallJob.ResidualRelu"/>: the batch norm's value, the addition and the ReLU of the add + ReLU step, in
    /// their order, so the same bits; the batch norm's own output is never stored.
    /// </summary>
    private static void ApplyResidual(ref SmallJob job, float* x, float* r, float* y, int width)
    {
        int j = 0;
        if (Avx512F.IsSupported)
        {
            bool relu = job.ResidualRelu;
            for (; j + 16 <= width; j += 16)
            {
                var v = Vector512.FusedMultiplyAdd(Vector512.Load(x + j), Vector512.Load(job.A + j), Vector512.Load(job.O + j)) + Vector512.Load(r + j);
                (relu ? Vector512.Max(v, Vector512<float>.Zero) : v).Store(y + j);
            }
            if (j < width)
            {
                // The last positions, masked: the same operations.
                var mask = ConvKernels.FirstLanes(width - j);
                var v = Vector512.FusedMultiplyAdd(Avx512F.MaskLoad(x + j, mask, default), Avx512F.MaskLoad(job.A + j, mask, default),
                    Avx512F.MaskLoad(job.O + j, mask, default)) + Avx512F.MaskLoad(r + j, mask, default);
                Avx512F.MaskStore(y + j, mask, relu ? Vector512.Max(v, Vector512<float>.Zero) : v);
            }
            return;
        }
        if (RowsAvx2)
        {
            // Whole vectors of 8, the last positions by the scalar loop below: the same operations.
            bool relu = job.ResidualRelu;
            for (; j + 8 <= width; j += 8)
            {
                var v = Vector256.FusedMultiplyAdd(Vector256.Load(x + j), Vector256.Load(job.A + j), Vector256.Load(job.O + j)) + Vector256.Load(r + j);
                (relu ? Vector256.Max(v, Vector256<float>.Zero) : v).Store(y + j);
            }
        }
        for (; j < width; j++)
        {
            float v = MathF.FusedMultiplyAdd(x[j], job.A[j], job.O[j]) + r[j];
            y[j] = job.ResidualRelu ? Relu(v) : v;
        }
    }
}
