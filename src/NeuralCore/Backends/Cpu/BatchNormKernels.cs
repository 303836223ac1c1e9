using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// Batch norm over x viewed as [N, C, HW]: per-channel statistics over the N*HW values of a channel.
/// </summary>
/// <remarks>
/// Training and backward work one channel per step, on several threads each thread one segment of the samples of every
/// channel (<see cref="ExecuteInBlocks"/>); a channel's sums are accumulated in double across planes (float lanes within
/// a plane; the values shifted by the channel's first element, which keeps the one-pass variance accurate when the mean
/// is large) in plane order, so results do not depend on the thread count. Inference splits the N*C planes.
/// <para>
/// Training and backward can carry a ReLU after the batch norm (compiled training steps fuse the pair): training then
/// writes relu(y) in the same pass, and backward reads dy where that output is positive and zero elsewhere, as the
/// ReLU's own backward would hand it on; the batch norm's output itself is never stored. Likewise a Hardswish (planes of
/// <see cref="SmallPlane"/> values or more): training writes hardswish(y) and saves each channel's scale and offset,
/// and backward recomputes y = x * scale + offset (the same bits) to take dy times the Hardswish's slope there, with
/// the Hardswish op's expressions, in its first pass, which leaves that gradient in dx for the second. A 2x2 / 2 max
/// pool after the Hardswish can run in the same passes too (<see cref="FusedPool"/>).
/// </para>
/// </remarks>
internal static unsafe partial class BatchNormKernels
{
    // Below this many elements per part, waking a worker costs more than it saves. At 32 K the pruned model's batch
    // norms over 38 channels of 1 x 6 maps at batch 256 (58 K values) ran on one thread, and took longer than the big
    // model's over 64 channels on two (`--profile`: backward 69-88 against 66-77 µs); at 16 K they take 36-48 µs.
    private const long MinElementsPerPart = 1 << 14;

    private enum Pass
    {
        Training,
        Inference,
        Backward,
    }

    private struct Job
    {
        public Pass Pass;
        public int N, C, HW;
        public float Momentum, Eps;
        public float* X, Y, Dy, Gamma, Beta, Mean, InvStd, RunningMean, RunningVar, DGamma, DBeta;
        // Training: y = relu(batch norm); backward: dy counts only where this (the fused ReLU's output) is positive.
        public bool Relu;
        public float* ReluOutput;
        // A fused ReLU over large planes (AVX-512): per channel the affine's scale, then its offset ([2C]; written by
        // training, read by backward instead of ReluOutput, which it then does not need; see ReluInput).
        public float* ReluScaleOffset;
        // A fused Hardswish: per channel the affine's scale, then its offset ([2C]; written by training, read by backward).
        public float* HardswishScaleOffset;
        // A fused 2x2 / 2 max pool after the Hardswish, or (training) a column pool after a fused addition + ReLU; Y
        // (training) and Dy (backward) are then the pool's output and output gradient, PoolIndices the flat index of
        // each maximum.
        public bool Pooled;
        public int H, W, PoolH, PoolW;
        public int* PoolIndices;
        // The column pool's geometry, with a fused addition.
        public PoolKernels.Geometry SumPool;
        // Training with a fused addition (no other fused op): y = batch norm + Residual, then a ReLU when ResidualRelu.
        public float* Residual;
        public bool ResidualRelu;
        // Backward without dx (BackwardSums): each channel's three coefficients of dx are stored here ([3C]) instead.
        public float* Coefficients;
        // Training over planes the convolution before it summed (PlaneSums): each plane's two sums, [N, C, 2], read
        // instead of the planes.
        public double* PlaneSums;
        public int Parts;
        // Above 1: the samples cut into this many segments, one per part, and the channels [BlockStart, BlockEnd) of the
        // block run in two phases (ExecuteInBlocks): each part's planes' sums, added in plane order to the channels' running
        // sums in Totals ([block, 2]) part after part (Published: how many parts have), then the output passes.
        public int Segments, Phase, BlockStart, BlockEnd;
        public double* Totals;
        public int Published;
    }

    /// <summary>
    /// y = (x - mean) * invstd * gamma + beta with batch statistics; writes mean and invstd = 1/sqrt(var + eps)
    /// (biased variance) and, when runningMean/runningVar are not null, blends the batch mean and unbiased variance into them.
    /// With <paramref name="relu"/>, y = relu(...) in the same pass; with <paramref name="hardswishScaleOffset"/> ([2C],
    /// planes of at least <see cref="SmallPlane"/> values), y = hardswish(...), the channels' scales and offsets saved there.
    /// With <paramref name="residual"/> ([N, C, HW], no other fusion), y = batch norm + residual, then a ReLU with
    /// <paramref name="residualRelu"/>. With <paramref name="reluScaleOffset"/>
    /// ([2C]; a ReLU, <see cref="TakesReluScaleOffset"/>), the channels' scales and offsets saved there for the backward
    /// (<see cref="ReluInput"/>). With <paramref name="planeSums"/> ([N, C, 2]; planes of at least <see cref="SmallPlane"/>
    /// values), each plane's sums as <see cref="PlaneSums"/> left them, read instead of summing x's planes: the same bits.
    /// </summary>
    internal static void Training(float* x, float* gamma, float* beta, float* y, float* mean, float* invStd,
        float* runningMean, float* runningVar, float momentum, float eps, int n, int c, int hw, bool relu = false,
        float* hardswishScaleOffset = null, FusedPool pool = default, float* residual = null, bool residualRelu = false,
        float* reluScaleOffset = null, double* planeSums = null)
    {
        if (planeSums != null && hw < SmallPlane)
            throw new ArgumentException($"Planes' sums made before the batch norm need planes of {SmallPlane} values or more, got {hw}.", nameof(hw));
        if (reluScaleOffset != null && (!relu || !TakesReluScaleOffset(hw)))
            throw new ArgumentException($"A ReLU's saved scale and offset need a fused ReLU, AVX-512 and planes of {SmallPlane} values or more, got {hw}.", nameof(reluScaleOffset));
        if (residual != null && (relu || hardswishScaleOffset != null || (pool.Present && (!residualRelu || hw < SmallPlane))))
            throw new ArgumentException("A fused addition takes no other fused op, but for the ReLU and, over large planes, a column max pool after it.", nameof(residual));
        if (hw < SmallPlane)
        {
            if (hardswishScaleOffset != null) throw new ArgumentException($"A fused Hardswish needs planes of {SmallPlane} values or more, got {hw}.", nameof(hw));
            TrainingSmall(x, gamma, beta, y, mean, invStd, runningMean, runningVar, momentum, eps, n, c, hw, relu, residual, residualRelu);
            return;
        }
        var job = new Job
        {
            Pass = Pass.Training, N = n, C = c, HW = hw, Momentum = momentum, Eps = eps,
            X = x, Gamma = gamma, Beta = beta, Y = y, Mean = mean, InvStd = invStd,
            RunningMean = runningMean, RunningVar = runningVar, Relu = relu, HardswishScaleOffset = hardswishScaleOffset,
            ReluScaleOffset = reluScaleOffset, Residual = residual, ResidualRelu = residualRelu, PlaneSums = planeSums,
        };
        SetPool(ref job, pool);
        Execute(ref job, c);
    }

    /// <summary>
    /// A 2x2 / 2 max pool (every window inside the plane; <see cref="PoolKernels.IsWhole2x2(in Pool2dParams)"/>) that a
    /// compiled training step runs inside a batch norm + Hardswish: training pools each plane while it is in L1, so the
    /// Hardswish's output is never stored, and backward rebuilds each plane's input gradient from the pool's output
    /// gradient and indices, as the pool's backward would write it.
    /// </summary>
    /// <remarks>
    /// A fused addition + ReLU (training only) takes a max pool of column windows instead
    /// (<see cref="PoolKernels.FusesAddRelu"/>: CP-ResNet's 2 x 1), the addition + ReLU's own pooled in the same pass.
    /// </remarks>
    internal readonly struct FusedPool(in Pool2dParams p, int* indices)
    {
        public readonly Pool2dParams Params = p;
        public readonly int* Indices = indices;
        public bool Present => Indices != null;
    }

    private static void SetPool(ref Job job, in FusedPool pool)
    {
        if (!pool.Present) return;
        var p = pool.Params;
        bool sumPool = job.Residual != null && job.ResidualRelu && PoolKernels.FusesAddRelu(p);
        if (!(job.HardswishScaleOffset != null ? PoolKernels.IsWhole2x2(p) : sumPool) || (long)p.H * p.W != job.HW)
            throw new ArgumentException("A fused max pool needs a fused Hardswish and 2x2 windows inside the plane, or a fused addition + ReLU and column windows.", nameof(pool));
        job.Pooled = true;
        (job.H, job.W, job.PoolH, job.PoolW) = (p.H, p.W, p.P, p.Q);
        job.PoolIndices = pool.Indices;
        if (sumPool) job.SumPool = new PoolKernels.Geometry(p);
    }

    /// <summary>y = (x - runningMean) / sqrt(runningVar + eps) * gamma + beta.</summary>
    internal static void Inference(float* x, float* gamma, float* beta, float* runningMean, float* runningVar, float* y,
        float eps, int n, int c, int hw)
    {
        var job = new Job
        {
            Pass = Pass.Inference, N = n, C = c, HW = hw, Eps = eps,
            X = x, Gamma = gamma, Beta = beta, Y = y, RunningMean = runningMean, RunningVar = runningVar,
        };
        Execute(ref job, n * c);
    }

    /// <summary>
    /// dx, dgamma and dbeta of training-mode batch norm from the saved mean and invstd. With a
    /// <paramref name="reluOutput"/> (the output of a fused ReLU), dy counts only where that output is positive; with
    /// <paramref name="hardswishScaleOffset"/> (what training saved for a fused Hardswish), dy is the Hardswish's output
    /// gradient and counts times its slope; with <paramref name="reluScaleOffset"/> instead of a ReLU output (what
    /// training saved for a fused ReLU), dy counts only where x * scale + offset is positive (<see cref="ReluInput"/>).
    /// </summary>
    internal static void Backward(float* x, float* dy, float* gamma, float* mean, float* invStd, float* dx,
        float* dgamma, float* dbeta, int n, int c, int hw, float* reluOutput = null, float* hardswishScaleOffset = null,
        FusedPool pool = default, float* reluScaleOffset = null)
    {
        if (reluScaleOffset != null && (reluOutput != null || hardswishScaleOffset != null || !TakesReluScaleOffset(hw)))
            throw new ArgumentException($"A ReLU's saved scale and offset replace its output, need AVX-512 and planes of {SmallPlane} values or more, got {hw}.", nameof(reluScaleOffset));
        if (hw < SmallPlane)
        {
            if (hardswishScaleOffset != null) throw new ArgumentException($"A fused Hardswish needs planes of {SmallPlane} values or more, got {hw}.", nameof(hw));
            BackwardSmall(x, dy, gamma, mean, invStd, dx, dgamma, dbeta, n, c, hw, reluOutput);
            return;
        }
        var job = new Job
        {
            Pass = Pass.Backward, N = n, C = c, HW = hw,
            X = x, Dy = dy, Gamma = gamma, Mean = mean, InvStd = invStd, Y = dx, DGamma = dgamma, DBeta = dbeta,
            ReluOutput = reluOutput, HardswishScaleOffset = hardswishScaleOffset, ReluScaleOffset = reluScaleOffset,
        };
        SetPool(ref job, pool);
        Execute(ref job, c);
    }

    /// <summary>Whether a batch norm + ReLU over planes of <paramref name="hw"/> values can save the ReLU's input affine for its backward (AVX-512, large planes).</summary>
    internal static bool TakesReluScaleOffset(int hw) => Avx512F.IsSupported && Vector512.IsHardwareAccelerated && hw >= SmallPlane;

    private static void Execute(ref Job job, int items)
    {
        long elements = (long)job.N * job.C * job.HW;
        int parts = (int)Math.Clamp(elements / MinElementsPerPart, 1, CpuThreading.Threads);
        if (job.Pass != Pass.Inference && parts > 1 && job.N >= parts)
        {
            ExecuteInBlocks(ref job, parts);
            return;
        }
        job.Parts = Math.Min(parts, Math.Max(items, 1));
        // SAFETY: job lives on this stack frame and ForParts returns only after every part is done.
        fixed (Job* state = &job) CpuThreading.ForParts(job.Parts, &RunPart, state);
    }

    // A part's planes of one block of channels stay within this many bytes (half the L2 of a core here), so that the
    // output pass finds in cache what the sums pass read.
    private const long BlockBytes = 512 << 10;

    /// <summary>
    /// Training and backward on several threads: each part takes one segment of the samples, for every channel, and the
    /// channels are walked in blocks whose planes of a segment fit in L2, in two phases per block: every part's sums of
    /// its planes, one per plane, added to the channels' running sums part after part (<see cref="SegmentSums"/>) in
    /// plane order as <see cref="TrainingChannel"/> and <see cref="BackwardChannel"/> add them in one go (the same bits),
    /// then, once every part is done, each part's output pass over its planes. So each thread reads and writes the samples its own
    /// thread's convolutions wrote and will read: the stem's batch norm, split by channels before, read half of its
    /// input from the other core, and its backward wrote half of the gradient the stem's weight gradient and, the step
    /// after, the stem's output (which takes that gradient's array, <see cref="CpuTrainingPlan"/>) write or read on
    /// the other core. (MNIST b256 training, two threads, six ABBA-ordered rounds of `bench --baseline`: pruned 7.15
    /// -> 6.73 ms and big 15.61 -> 15.19 ms medians; the stem's convolution forward and batch norm forward, which
    /// took 1.5-2.4x their quiet time in the machine's busy spells, kept it in every profiled run.)
    /// </summary>
    private static void ExecuteInBlocks(ref Job job, int parts)
    {
        long segmentPlanes = (job.N + parts - 1) / parts;
        // Without an output pass (BackwardSums), or without a sums pass over x (PlaneSums), nothing is read twice: every
        // channel in one block.
        int block = job.Coefficients != null || job.PlaneSums != null ? job.C : (int)Math.Clamp(BlockBytes / (segmentPlanes * job.HW * sizeof(float)), 1, job.C);
        job.Parts = parts;
        job.Segments = parts;
        job.Totals = SmallScratch.Current.Totals(2 * block);
        // SAFETY: as in Execute; the running sums live in this thread's scratch until both phases of the last block are done.
        fixed (Job* state = &job)
        {
            for (int c = 0; c < job.C; c += block)
            {
                job.BlockStart = c;
                job.BlockEnd = Math.Min(job.C, c + block);
                job.Phase = 0;
                job.Published = 0;
                CpuThreading.ForParts(parts, &RunPart, state);
                job.Phase = 1;
                CpuThreading.ForParts(parts, &RunPart, state);
            }
        }
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        if (job.Segments > 1)
        {
            if (job.Phase == 0) SegmentSums(ref job, part);
            else SegmentOutputs(ref job, part);
            return;
        }
        int items = job.Pass == Pass.Inference ? job.N * job.C : job.C;
        int first = (int)((long)part * items / job.Parts);
        int end = (int)((long)(part + 1) * items / job.Parts);
        for (int i = first; i < end; i++)
        {
            switch (job.Pass)
            {
                case Pass.Training: TrainingChannel(ref job, i); break;
                case Pass.Inference: InferencePlane(ref job, i); break;
                default: BackwardChannel(ref job, i); break;
            }
        }
    }

    // Channels whose coefficients a part's output pass holds at once (SegmentOutputs).
    private const int OutputChannels = 64;

    /// <summary>
    /// Phase 1 of part <paramref name="segment"/>: the output pass over its planes of the block's channels, from each
    /// channel's sums over every plane (Totals). Every segment works out the channels' coefficients (the same bits; the
    /// first one stores what is saved), then walks its samples in order, each sample's planes of the block in order: one
    /// run of contiguous memory a sample (the planes of a channel lie C planes apart, too far for the prefetchers when
    /// they are short), and each plane's output the same as a walk channel by channel gives.
    /// </summary>
    private static void SegmentOutputs(ref Job job, int segment)
    {
        int n0 = (int)((long)segment * job.N / job.Segments), n1 = (int)((long)(segment + 1) * job.N / job.Segments);
        var coefficients = stackalloc ChannelCoefficients[OutputChannels];
        float* plane = job.Pass == Pass.Training && job.Pooled ? SmallScratch.Current.Floats(job.HW) : null;
        for (int c0 = job.BlockStart; c0 < job.BlockEnd; c0 += OutputChannels)
        {
            int c1 = Math.Min(job.BlockEnd, c0 + OutputChannels);
            for (int c = c0; c < c1; c++)
            {
                double sum = job.Totals[2 * (c - job.BlockStart)], second = job.Totals[2 * (c - job.BlockStart) + 1];
                coefficients[c - c0] = job.Pass == Pass.Training
                    ? TrainingCoefficients(ref job, c, sum, second, save: segment == 0)
                    : BackwardCoefficients(ref job, c, sum, second, save: segment == 0);
            }
            // Without dx (BackwardSums) the coefficients are the output.
            if (job.Coefficients != null) continue;
            for (int n = n0; n < n1; n++)
                for (int c = c0; c < c1; c++)
                {
                    if (job.Pass == Pass.Training) TrainingPlane(ref job, c, n, coefficients[c - c0], plane);
                    else BackwardPlane(ref job, c, n, coefficients[c - c0]);
                }
        }
    }

    /// <summary>
    /// What a channel's output pass applies: training's scale and offset (A, B); backward's mean and dx's coefficients
    /// of dy, of x - mean and the constant (A, B, O).
    /// </summary>
    private struct ChannelCoefficients
    {
        public float A, B, O, Mean;
    }

    /// <summary>
    /// Phase 0 of part <paramref name="segment"/>: its planes' sums for every channel of the block, kept in its own
    /// thread's scratch; then, once the part before it has (Published), added in plane order to the channels' running
    /// sums in Totals (the first part's from zero): the order of one walk over the planes whatever the parts, and only
    /// the running sums cross between the cores, not every plane's.
    /// </summary>
    private static void SegmentSums(ref Job job, int segment)
    {
        int n0 = (int)((long)segment * job.N / job.Segments), n1 = (int)((long)(segment + 1) * job.N / job.Segments);
        int count = n1 - n0, channels = job.BlockEnd - job.BlockStart;
        double* local = SmallScratch.Current.Doubles(2 * channels * count);
        for (int c = job.BlockStart; c < job.BlockEnd; c++)
        {
            // Indexed by the plane's number: [2 n, 2 n + 1] for n in [n0, n1).
            double* perPlane = local + 2L * (c - job.BlockStart) * count - 2L * n0;
            if (job.Pass == Pass.Training) ChannelStatisticsSums(ref job, c, n0, n1, perPlane);
            else ChannelGradientSums(ref job, c, n0, n1, perPlane);
        }
        if (segment > 0)
        {
            // Parts only wait for lower parts, and the calling thread takes part 0 first and any part still untaken
            // after it in order, so the chain always moves.
            var spin = new SpinWait();
            while (Volatile.Read(ref job.Published) < segment) spin.SpinOnce(sleep1Threshold: -1);
        }
        for (int i = 0; i < channels; i++)
        {
            double sum = segment == 0 ? 0 : job.Totals[2 * i], second = segment == 0 ? 0 : job.Totals[2 * i + 1];
            double* planes = local + 2L * i * count;
            for (int n = 0; n < count; n++)
            {
                sum += planes[2 * n];
                second += planes[2 * n + 1];
            }
            job.Totals[2 * i] = sum;
            job.Totals[2 * i + 1] = second;
        }
        Volatile.Write(ref job.Published, segment + 1);
    }

    private static void TrainingChannel(ref Job job, int c)
    {
        var (sum, sumSquares) = ChannelStatisticsSums(ref job, c, 0, job.N, null);
        TrainingOutput(ref job, c, sum, sumSquares, 0, job.N, save: true);
    }

    /// <summary>
    /// Planes [n0, n1) of channel c: the sums of their values shifted by the channel's first value and of their squares,
    /// added up in plane order in double; each plane's two sums also go to <paramref name="perPlane"/>[2n, 2n + 1] when given.
    /// With PlaneSums, each plane's two sums are read from there.
    /// </summary>
    private static (double Sum, double SumSquares) ChannelStatisticsSums(ref Job job, int c, int n0, int n1, double* perPlane)
    {
        float* first = job.X + (long)c * job.HW;
        long planeStride = (long)job.C * job.HW;
        (double, double) sums = default;
        if (job.PlaneSums != null)
        {
            for (int n = n0; n < n1; n++)
            {
                double* plane = job.PlaneSums + 2 * ((long)n * job.C + c);
                Add(ref sums, (plane[0], plane[1]), perPlane, n);
            }
            return sums;
        }
        for (int n = n0; n < n1; n++)
        {
            if (n + PlanesAhead < n1) PrefetchPlane(first + (n + PlanesAhead) * planeStride, job.HW);
            Add(ref sums, ShiftedSums(first + n * planeStride, job.HW, first[0]), perPlane, n);
        }
        return sums;
    }

    // How many planes ahead the sums passes ask for a channel's planes: they lie C planes apart, too far for the
    // hardware's prefetcher to follow runs of a few hundred bytes (MNIST's 13 x 13).
    private const int PlanesAhead = 4;
    // Planes longer than this (mel's 63 x 49: 12 KB) are runs the hardware follows; asking 4 of them ahead would fill L1.
    private const int MaxPrefetchPlane = 1024;

    /// <summary>Asks for the cache lines of one plane of <paramref name="hw"/> values, if it is short (<see cref="MaxPrefetchPlane"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchPlane(float* plane, int hw)
    {
        if (!Sse.IsSupported || hw > MaxPrefetchPlane) return;
        for (int i = 0; i < hw; i += 16) Sse.Prefetch0(plane + i);
        Sse.Prefetch0(plane + hw - 1);
    }

    /// <summary>Adds plane n's two sums to a channel's (planes in order, in double), and keeps them in <paramref name="perPlane"/>[2n, 2n + 1] when given.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Add(ref (double First, double Second) sums, (double First, double Second) plane, double* perPlane, int n)
    {
        sums.First += plane.First;
        sums.Second += plane.Second;
        if (perPlane == null) return;
        perPlane[2 * n] = plane.First;
        perPlane[2 * n + 1] = plane.Second;
    }

    /// <summary>Channel c's statistics from its shifted sums (stored, with the running statistics, when <paramref name="save"/>), then the output of planes [n0, n1).</summary>
    private static void TrainingOutput(ref Job job, int c, double sum, double sumSquares, int n0, int n1, bool save)
    {
        var coefficients = TrainingCoefficients(ref job, c, sum, sumSquares, save);
        float* plane = job.Pooled ? SmallScratch.Current.Floats(job.HW) : null;
        for (int n = n0; n < n1; n++) TrainingPlane(ref job, c, n, coefficients, plane);
    }

    /// <summary>
    /// Channel c's statistics from its shifted sums, stored with the running statistics (and a fused activation's
    /// scale and offset) when <paramref name="save"/>; returns its output's scale and offset.
    /// </summary>
    private static ChannelCoefficients TrainingCoefficients(ref Job job, int c, double sum, double sumSquares, bool save)
    {
        double shift = job.X[(long)c * job.HW];
        long count = (long)job.N * job.HW;
        double centred = sum / count;
        double variance = Math.Max(sumSquares / count - centred * centred, 0);
        double mean = shift + centred;
        double invStd = 1 / Math.Sqrt(variance + job.Eps);
        float scale = (float)(job.Gamma[c] * invStd);
        float offset = (float)(job.Beta[c] - mean * job.Gamma[c] * invStd);
        if (save)
        {
            job.Mean[c] = (float)mean;
            job.InvStd[c] = (float)invStd;
            if (job.RunningMean != null)
            {
                double m = job.Momentum;
                job.RunningMean[c] = (float)((1 - m) * job.RunningMean[c] + m * mean);
            }
            if (job.RunningVar != null)
            {
                double m = job.Momentum;
                double unbiased = variance * count / (count - 1);
                job.RunningVar[c] = (float)((1 - m) * job.RunningVar[c] + m * unbiased);
            }
            if (job.HardswishScaleOffset != null)
            {
                job.HardswishScaleOffset[c] = scale;
                job.HardswishScaleOffset[job.C + c] = offset;
            }
            if (job.ReluScaleOffset != null)
            {
                job.ReluScaleOffset[c] = scale;
                job.ReluScaleOffset[job.C + c] = offset;
            }
        }
        return new ChannelCoefficients { A = scale, B = offset };
    }

    /// <summary>
    /// The output of plane (<paramref name="n"/>, <paramref name="c"/>): the affine and the fused ops after it. With a
    /// fused pool, the plane's Hardswish output (or batch norm output) is made in <paramref name="plane"/> (L1) and
    /// pooled from there (or, with the addition + ReLU, pooled with its residual): the same values and indices as the
    /// ops apart.
    /// </summary>
    private static void TrainingPlane(ref Job job, int c, int n, in ChannelCoefficients coefficients, float* plane)
    {
        float scale = coefficients.A, offset = coefficients.B;
        long at = ((long)n * job.C + c) * job.HW;
        var activation = job.Relu ? Activation.Relu : job.HardswishScaleOffset != null ? Activation.Hardswish : Activation.None;
        if (job.Pooled)
        {
            Affine(job.X + at, plane, job.HW, scale, offset, activation);
            long to = ((long)n * job.C + c) * job.PoolH * job.PoolW;
            if (job.Residual != null) PoolKernels.AddReluMaxPlane(plane, job.Residual + at, job.Y + to, job.PoolIndices + to, job.SumPool);
            else PoolKernels.MaxPlane2x2(plane, job.Y + to, job.PoolIndices + to, job.W, job.PoolH, job.PoolW);
        }
        else if (job.Residual != null) AffinePlusResidual(job.X + at, job.Residual + at, job.Y + at, job.HW, scale, offset, job.ResidualRelu);
        else Affine(job.X + at, job.Y + at, job.HW, scale, offset, activation);
    }

    private static void InferencePlane(ref Job job, int plane)
    {
        int c = plane % job.C;
        double invStd = 1 / Math.Sqrt((double)job.RunningVar[c] + job.Eps);
        float scale = (float)(job.Gamma[c] * invStd);
        float offset = (float)(job.Beta[c] - job.RunningMean[c] * (job.Gamma[c] * invStd));
        long at = (long)plane * job.HW;
        Affine(job.X + at, job.Y + at, job.HW, scale, offset, Activation.None);
    }

    private static void BackwardChannel(ref Job job, int c)
    {
        var (sumDy, sumDyCentred) = ChannelGradientSums(ref job, c, 0, job.N, null);
        BackwardOutput(ref job, c, sumDy, sumDyCentred, 0, job.N, save: true);
    }

    /// <summary>
    /// Planes [n0, n1) of channel c: the sums of dy (as the fused ops hand it on) and of dy * (x - mean), added up in plane
    /// order in double; each plane's two sums also go to <paramref name="perPlane"/>[2n, 2n + 1] when given.
    /// </summary>
    private static (double SumDy, double SumDyCentred) ChannelGradientSums(ref Job job, int c, int n0, int n1, double* perPlane)
    {
        long planeStride = (long)job.C * job.HW;
        float mean = job.Mean[c];
        // A fused Hardswish: its input, x * scale + offset, as training computed it.
        var hardswish = job.HardswishScaleOffset == null ? default : new HardswishInput(job.HardswishScaleOffset[c], job.HardswishScaleOffset[job.C + c]);
        var relu = job.ReluScaleOffset == null ? default : new ReluInput(job.ReluScaleOffset[c], job.ReluScaleOffset[job.C + c]);
        // A fused pool: each plane's output gradient rebuilt in L1 from the pool's, as the pool's backward writes it.
        // Without dx (BackwardSums), the Hardswish's input gradient goes there too, and no further.
        bool keep = job.Coefficients == null;
        float* plane = job.Pooled || !keep ? SmallScratch.Current.Floats(job.HW) : null;
        long pooled = (long)job.PoolH * job.PoolW;
        (double, double) sums = default;
        for (int n = n0; n < n1; n++)
        {
            long at = n * planeStride + (long)c * job.HW;
            if (n + PlanesAhead < n1)
            {
                long ahead = at + PlanesAhead * planeStride;
                PrefetchPlane(job.X + ahead, job.HW);
                if (job.ReluOutput != null) PrefetchPlane(job.ReluOutput + ahead, job.HW);
                if (!job.Pooled) PrefetchPlane(job.Dy + ahead, job.HW);
                else
                {
                    long from = ((long)(n + PlanesAhead) * job.C + c) * pooled;
                    PrefetchPlane(job.Dy + from, (int)pooled);
                    PrefetchPlane((float*)(job.PoolIndices + from), (int)pooled);
                }
            }
            float* dy = job.Dy + at;
            if (job.Pooled)
            {
                long from = ((long)n * job.C + c) * pooled;
                PoolKernels.MaxBackwardPlane2x2(job.Dy + from, job.PoolIndices + from, plane, job.H, job.W, job.PoolH, job.PoolW);
                dy = plane;
            }
            // With a Hardswish, its input gradient goes to dx, which the output pass reads and overwrites.
            Add(ref sums, GradientSums(dy, job.X + at, job.HW, mean, job.ReluOutput == null ? null : job.ReluOutput + at, hardswish,
                keep ? job.Y + at : plane, relu), perPlane, n);
        }
        return sums;
    }

    /// <summary>
    /// Channel c's parameter gradients from its sums (stored when <paramref name="save"/>), then dx of planes [n0, n1); or,
    /// for <see cref="BackwardSums"/>, dx's three coefficients (stored when <paramref name="save"/>) instead of dx.
    /// </summary>
    private static void BackwardOutput(ref Job job, int c, double sumDy, double sumDyCentred, int n0, int n1, bool save)
    {
        var coefficients = BackwardCoefficients(ref job, c, sumDy, sumDyCentred, save);
        if (job.Coefficients != null) return;
        for (int n = n0; n < n1; n++) BackwardPlane(ref job, c, n, coefficients);
    }

    /// <summary>
    /// Channel c's dgamma and dbeta from its sums (stored when <paramref name="save"/>), and dx's coefficients, which
    /// BackwardSums stores instead of an output pass.
    /// </summary>
    private static ChannelCoefficients BackwardCoefficients(ref Job job, int c, double sumDy, double sumDyCentred, bool save)
    {
        float mean = job.Mean[c];
        double invStd = job.InvStd[c];
        long count = (long)job.N * job.HW;
        // dbeta = sum(dy); dgamma = sum(dy * xhat) with xhat = (x - mean) * invstd;
        // dx = gamma * invstd / M * (M * dy - sum(dy) - xhat * sum(dy * xhat)).
        double dgamma = sumDyCentred * invStd;
        if (save)
        {
            job.DBeta[c] = (float)sumDy;
            job.DGamma[c] = (float)dgamma;
        }
        double a = job.Gamma[c] * invStd;
        float scaleDy = (float)a;
        float scaleCentred = (float)(-a * invStd * dgamma / count);
        float offset = (float)(-a * sumDy / count);
        if (job.Coefficients != null && save)
        {
            job.Coefficients[c] = scaleDy;
            job.Coefficients[job.C + c] = scaleCentred;
            job.Coefficients[2 * job.C + c] = offset;
        }
        return new ChannelCoefficients { A = scaleDy, B = scaleCentred, O = offset, Mean = mean };
    }

    /// <summary>dx of plane (<paramref name="n"/>, <paramref name="c"/>) from the channel's coefficients.</summary>
    private static void BackwardPlane(ref Job job, int c, int n, in ChannelCoefficients coefficients)
    {
        long at = ((long)n * job.C + c) * job.HW;
        var relu = job.ReluScaleOffset == null ? default : new ReluInput(job.ReluScaleOffset[c], job.ReluScaleOffset[job.C + c]);
        InputGradient(job.HardswishScaleOffset != null ? job.Y + at : job.Dy + at, job.X + at, job.Y + at, job.HW, coefficients.Mean,
            coefficients.A, coefficients.B, coefficients.O, job.ReluOutput == null ? null : job.ReluOutput + at, reluInput: relu);
    }

    /// <summary>
    /// The two sums <see cref="Training"/> takes of each of one sample's <paramref name="channels"/> planes of
    /// <paramref name="hw"/> values at <paramref name="planes"/>, into <paramref name="sums"/>[2c, 2c + 1]: shifted by each
    /// channel's first value in sample 0 (<paramref name="first"/>[c * hw], that sample's planes), the bits of its own pass
    /// over the plane. A convolution run sample by sample takes them while each sample's output is in cache.
    /// </summary>
    internal static void PlaneSums(float* planes, float* first, int channels, int hw, double* sums)
    {
        for (int c = 0; c < channels; c++)
        {
            var (sum, sumSquares) = ShiftedSums(planes + (long)c * hw, hw, first[(long)c * hw]);
            sums[2 * c] = sum;
            sums[2 * c + 1] = sumSquares;
        }
    }

    /// <summary>
    /// Sum of (x - shift) and of (x - shift)^2 over the n values of one plane: float lanes within the plane (a plane
    /// is at most a few thousand values, and shifted by the channel's first value), returned as double so that the
    /// caller sums the planes of a channel in double.
    /// </summary>
    private static (double Sum, double SumSquares) ShiftedSums(float* x, int n, double shift)
    {
        int i = 0;
        float k = (float)shift;
        float sum = 0, sumSquares = 0;
        if (Vector512.IsHardwareAccelerated && n >= Vector512<float>.Count)
        {
            var kv = Vector512.Create(k);
            Vector512<float> s0 = default, q0 = default;
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var d = Vector512.Load(x + i) - kv;
                s0 += d;
                q0 = Vector512.FusedMultiplyAdd(d, d, q0);
            }
            sum = Vector512.Sum(s0);
            sumSquares = Vector512.Sum(q0);
        }
        else if (Vector256.IsHardwareAccelerated && n >= Vector256<float>.Count)
        {
            var kv = Vector256.Create(k);
            Vector256<float> s0 = default, q0 = default;
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var d = Vector256.Load(x + i) - kv;
                s0 += d;
                q0 = Vector256.FusedMultiplyAdd(d, d, q0);
            }
            sum = Vector256.Sum(s0);
            sumSquares = Vector256.Sum(q0);
        }
        for (; i < n; i++)
        {
            float d = x[i] - k;
            sum += d;
            sumSquares += d * d;
        }
        // The shift was rounded to float; report the sums relative to the double shift the caller uses.
        double delta = k - shift;
        return (sum + n * delta, sumSquares + 2 * delta * sum + n * delta * delta);
    }

    /// <summary>
    /// Sum of dy and of dy * (x - mean) over the n values of one plane (float lanes, returned as double); with
    /// <paramref name="relu"/>, dy where relu is positive and 0 elsewhere; with <paramref name="hardswish"/>, dy times
    /// the Hardswish's slope at x * scale + offset, which is also stored to <paramref name="hardswishGradient"/>.
    /// </summary>
    // Out of line: inlined into ChannelGradientSums, the big mel b64 step's backward batch norms took 35.2 ms against
    // 27.8 ms on one thread (`--profile`).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (double SumDy, double SumDyCentred) GradientSums(float* dy, float* x, int n, float mean, float* relu, HardswishInput hardswish,
        float* hardswishGradient, ReluInput reluInput = default)
    {
        int i = 0;
        float sum = 0, sumCentred = 0;
        if (Vector512.IsHardwareAccelerated && n >= Vector512<float>.Count)
        {
            var m = Vector512.Create(mean);
            Vector512<float> s0 = default, c0 = default;
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var g = Vector512.Load(dy + i);
                var xv = Vector512.Load(x + i);
                if (relu != null) g = Vector512.ConditionalSelect(Vector512.GreaterThan(Vector512.Load(relu + i), Vector512<float>.Zero), g, Vector512<float>.Zero);
                else if (reluInput.Present) g = Vector512.ConditionalSelect(reluInput.Positive(xv), g, Vector512<float>.Zero);
                if (hardswish.Present)
                {
                    g *= hardswish.Slope(xv);
                    Vector512.Store(g, hardswishGradient + i);
                }
                s0 += g;
                c0 = Vector512.FusedMultiplyAdd(g, xv - m, c0);
            }
            sum = Vector512.Sum(s0);
            sumCentred = Vector512.Sum(c0);
        }
        else if (Vector256.IsHardwareAccelerated && n >= Vector256<float>.Count)
        {
            var m = Vector256.Create(mean);
            Vector256<float> s0 = default, c0 = default;
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var g = Vector256.Load(dy + i);
                var xv = Vector256.Load(x + i);
                if (relu != null) g = Vector256.ConditionalSelect(Vector256.GreaterThan(Vector256.Load(relu + i), Vector256<float>.Zero), g, Vector256<float>.Zero);
                if (hardswish.Present)
                {
                    g *= hardswish.Slope(xv);
                    Vector256.Store(g, hardswishGradient + i);
                }
                s0 += g;
                c0 = Vector256.FusedMultiplyAdd(g, xv - m, c0);
            }
            sum = Vector256.Sum(s0);
            sumCentred = Vector256.Sum(c0);
        }
        if (Avx512F.IsSupported && n - i is > 0 and < 16)
        {
            // The last values (9 of the stem's 13 x 13 planes): each g and product in a masked vector with the loop
            // below's operations (its slope's rule for NaN included), then added in order as the loop adds them.
            var mask = ConvKernels.FirstLanes(n - i);
            var xv = Avx512F.MaskLoad(x + i, mask, Vector512<float>.Zero);
            var g = Avx512F.MaskLoad(dy + i, mask, Vector512<float>.Zero);
            if (relu != null) g = Vector512.ConditionalSelect(Vector512.GreaterThan(Avx512F.MaskLoad(relu + i, mask, Vector512<float>.Zero), Vector512<float>.Zero), g, Vector512<float>.Zero);
            else if (reluInput.Present) g = Vector512.ConditionalSelect(reluInput.Positive(xv), g, Vector512<float>.Zero);
            if (hardswish.Present)
            {
                g *= hardswish.ScalarSlope(xv);
                Avx512F.MaskStore(hardswishGradient + i, mask, g);
            }
            float* gs = stackalloc float[2 * 16];
            Vector512.Store(g, gs);
            Vector512.Store(g * (xv - Vector512.Create(mean)), gs + 16);
            for (int l = 0; l < n - i; l++)
            {
                sum += gs[l];
                sumCentred += gs[16 + l];
            }
            return (sum, sumCentred);
        }
        for (; i < n; i++)
        {
            float g = relu == null || relu[i] > 0 ? dy[i] : 0;
            if (hardswish.Present) hardswishGradient[i] = g *= hardswish.Slope(x[i]);
            sum += g;
            sumCentred += g * (x[i] - mean);
        }
        return (sum, sumCentred);
    }

    /// <summary>What the batch norm's output pass applies after the affine.</summary>
    private enum Activation
    {
        None,
        Relu,
        Hardswish,
    }

    /// <summary>
    /// y = x * scale + offset over n values, then ReLU's max(y, 0) or Hardswish's y * min(max(y + 3, 0), 6) / 6 as the
    /// element-wise ops compute them.
    /// </summary>
    private static void Affine(float* x, float* y, int n, float scale, float offset, Activation activation)
    {
        if (Avx512F.IsSupported)
        {
            // 16 lanes, the last vector masked (the stem's 13 x 13 planes: 10 vectors and 9 lanes, not 21 of 8 and a
            // scalar); each value the same operations as below.
            var s = Vector512.Create(scale);
            var o = Vector512.Create(offset);
            int i = 0;
            switch (activation)
            {
                case Activation.Relu:
                    for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
                        Vector512.Store(Vector512.Max(Vector512.FusedMultiplyAdd(Vector512.Load(x + i), s, o), Vector512<float>.Zero), y + i);
                    break;
                case Activation.Hardswish:
                    for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
                        Vector512.Store(Hardswish(Vector512.FusedMultiplyAdd(Vector512.Load(x + i), s, o)), y + i);
                    break;
                default:
                    for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
                        Vector512.Store(Vector512.FusedMultiplyAdd(Vector512.Load(x + i), s, o), y + i);
                    break;
            }
            if (i < n)
            {
                var mask = ConvKernels.FirstLanes(n - i);
                var v = Vector512.FusedMultiplyAdd(Avx512F.MaskLoad(x + i, mask, Vector512<float>.Zero), s, o);
                v = activation switch
                {
                    Activation.Relu => Vector512.Max(v, Vector512<float>.Zero),
                    Activation.Hardswish => Hardswish(v),
                    _ => v,
                };
                Avx512F.MaskStore(y + i, mask, v);
            }
            return;

            static Vector512<float> Hardswish(Vector512<float> v) =>
                v * Vector512.Min(Vector512.Max(v + Vector512.Create(3f), Vector512<float>.Zero), Vector512.Create(6f)) * Vector512.Create(1f / 6f);
        }
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var s = Vector256.Create(scale);
            var o = Vector256.Create(offset);
            switch (activation)
            {
                case Activation.Relu:
                    for (; j <= n - Vector256<float>.Count; j += Vector256<float>.Count)
                        Vector256.Store(Vector256.Max(Vector256.FusedMultiplyAdd(Vector256.Load(x + j), s, o), Vector256<float>.Zero), y + j);
                    break;
                case Activation.Hardswish:
                    var three = Vector256.Create(3f);
                    var six = Vector256.Create(6f);
                    var sixth = Vector256.Create(1f / 6f);
                    for (; j <= n - Vector256<float>.Count; j += Vector256<float>.Count)
                    {
                        var v = Vector256.FusedMultiplyAdd(Vector256.Load(x + j), s, o);
                        Vector256.Store(v * Vector256.Min(Vector256.Max(v + three, Vector256<float>.Zero), six) * sixth, y + j);
                    }
                    break;
                default:
                    for (; j <= n - Vector256<float>.Count; j += Vector256<float>.Count)
                        Vector256.Store(Vector256.FusedMultiplyAdd(Vector256.Load(x + j), s, o), y + j);
                    break;
            }
        }
        for (; j < n; j++)
        {
            float v = MathF.FusedMultiplyAdd(x[j], scale, offset);
            y[j] = activation switch
            {
                Activation.Relu => Relu(v),
                Activation.Hardswish => v * Math.Clamp(v + 3f, 0f, 6f) * (1f / 6f),
                _ => v,
            };
        }
    }

    /// <summary>
    /// y = (x * scale + offset) + r over n values, then max(y, 0) with <paramref name="relu"/>: the batch norm's value,
    /// the addition and the ReLU of the add (+ ReLU) step, in their order, so the same bits; the batch norm's own output
    /// is never stored.
    /// </summary>
    private static void AffinePlusResidual(float* x, float* r, float* y, int n, float scale, float offset, bool relu)
    {
        if (Gemm.Runs512) AffinePlusResidual<Lanes512, Vector512<float>>(x, r, y, n, scale, offset, relu);
        else if (Gemm.Runs256) AffinePlusResidual<Lanes256, Vector256<float>>(x, r, y, n, scale, offset, relu);
        else
        {
            for (int i = 0; i < n; i++)
            {
                float v = MathF.FusedMultiplyAdd(x[i], scale, offset) + r[i];
                y[i] = relu ? Relu(v) : v;
            }
        }
    }

    /// <summary><see cref="AffinePlusResidual(float*, float*, float*, int, float, float, bool)"/> at one vector width, the last values masked.</summary>
    private static void AffinePlusResidual<TLanes, TVector>(float* x, float* r, float* y, int n, float scale, float offset, bool relu)
        where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged
    {
        var s = TLanes.Create(scale);
        var o = TLanes.Create(offset);
        int kind = relu ? 1 : 0, i = 0;
        for (; i <= n - TLanes.Count; i += TLanes.Count)
            TLanes.Store(TLanes.Activate(TLanes.Add(TLanes.MultiplyAdd(TLanes.Load(x + i), s, o), TLanes.Load(r + i)), kind), y + i);
        if (i == n) return;
        var mask = TLanes.FirstLanes(n - i);
        var v = TLanes.Add(TLanes.MultiplyAdd(TLanes.MaskLoad(x + i, mask), s, o), TLanes.MaskLoad(r + i, mask));
        TLanes.MaskStore(y + i, mask, TLanes.Activate(v, kind));
    }

    /// <summary>The ReLU op's scalar rule: IEEE's maximum with 0, as the vector lanes take it (NaN kept, +0 for -0).</summary>
    private static float Relu(float v) => MathF.Max(v, 0f);

    /// <summary>
    /// A fused Hardswish's input, x * scale + offset (the bits training wrote), and its slope there with the Hardswish
    /// op's backward expressions: 0 below -3, 1 above 3, v / 3 + 1/2 between.
    /// </summary>
    internal readonly struct HardswishInput(float scale, float offset)
    {
        public bool Present { get; } = true;

        public Vector512<float> Slope(Vector512<float> x)
        {
            var v = Vector512.FusedMultiplyAdd(x, Vector512.Create(scale), Vector512.Create(offset));
            var three = Vector512.Create(3f);
            var slope = Vector512.ConditionalSelect(Vector512.GreaterThan(v, three), Vector512<float>.One, ThirdPlusHalf(v));
            return Vector512.ConditionalSelect(Vector512.LessThan(v, Vector512.Create(-3f)), Vector512<float>.Zero, slope);
        }

        public Vector256<float> Slope(Vector256<float> x)
        {
            var v = Vector256.FusedMultiplyAdd(x, Vector256.Create(scale), Vector256.Create(offset));
            var three = Vector256.Create(3f);
            var slope = Vector256.ConditionalSelect(Vector256.GreaterThan(v, three), Vector256<float>.One, ThirdPlusHalf(v));
            return Vector256.ConditionalSelect(Vector256.LessThan(v, Vector256.Create(-3f)), Vector256<float>.Zero, slope);
        }

        /// <summary><see cref="Slope(float)"/> lane by lane, the same rule (NaN included: slope 1).</summary>
        public Vector512<float> ScalarSlope(Vector512<float> x)
        {
            var v = Vector512.FusedMultiplyAdd(x, Vector512.Create(scale), Vector512.Create(offset));
            var slope = Vector512.ConditionalSelect(Vector512.LessThanOrEqual(v, Vector512.Create(3f)), ThirdPlusHalf(v), Vector512<float>.One);
            return Vector512.ConditionalSelect(Vector512.LessThan(v, Vector512.Create(-3f)), Vector512<float>.Zero, slope);
        }

        /// <summary>
        /// v / 3 + 1/2 without a division (AVX-512's divide takes several times an FMA's issue slots): q = v * t, t =
        /// 1/3 rounded, then q + (v - 3q) t, whose remainder v - 3q one FMA gives exactly (Markstein's correction). That is
        /// the IEEE quotient v / 3 for every float but ±0 (+0 for -0, the same after adding 1/2) and ±infinity (NaN),
        /// which the slope's rule replaces by 1 or 0; a test checks every one of the 2^32 inputs against the division.
        /// Harness, a fused batch norm's backward sums over the stem's planes, alternated: 0.96-0.99 of the time on mel's,
        /// 0.90 on MNIST's (one thread).
        /// </summary>
        private static Vector512<float> ThirdPlusHalf(Vector512<float> v)
        {
            var third = Vector512.Create(1f / 3f);
            var q = v * third;
            return Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(Vector512.Create(-3f), q, v), third, q) + Vector512.Create(0.5f);
        }

        /// <inheritdoc cref="ThirdPlusHalf(Vector512{float})"/>
        private static Vector256<float> ThirdPlusHalf(Vector256<float> v)
        {
            var third = Vector256.Create(1f / 3f);
            var q = v * third;
            return Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(Vector256.Create(-3f), q, v), third, q) + Vector256.Create(0.5f);
        }

        public float Slope(float x)
        {
            float v = MathF.FusedMultiplyAdd(x, scale, offset);
            return v < -3 ? 0 : v <= 3 ? v / 3 + 0.5f : 1;
        }
    }

    /// <summary>
    /// dx = scaleDy * dy + scaleCentred * (x - mean) + offset over n values (dy masked by <paramref name="relu"/> as in
    /// <see cref="GradientSums"/>, or times a fused Hardswish's slope at x, as GradientSums takes it at this vector width:
    /// the bits of its stored gradient fed to this pass; dy may be dx itself).
    /// </summary>
    private static void InputGradient(float* dy, float* x, float* dx, int n, float mean, float scaleDy, float scaleCentred, float offset,
        float* relu, HardswishInput hardswish = default, ReluInput reluInput = default)
    {
        int i = 0;
        if (Avx512F.IsSupported)
        {
            // 16 lanes, the last vector masked (as in Affine); each value the same operations as below.
            var m = Vector512.Create(mean);
            var a = Vector512.Create(scaleDy);
            var b = Vector512.Create(scaleCentred);
            var o = Vector512.Create(offset);
            if (hardswish.Present)
            {
                // GradientSums' slope: the vector rule on whole vectors, the scalar rule on the masked last one. A loop
                // of its own: with the slope in the vector helper below, the JIT called that helper for every vector.
                for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
                {
                    var xv = Vector512.Load(x + i);
                    var g = Vector512.Load(dy + i) * hardswish.Slope(xv);
                    Vector512.Store(Vector512.FusedMultiplyAdd(g, a, Vector512.FusedMultiplyAdd(xv - m, b, o)), dx + i);
                }
                if (i < n)
                {
                    var mask = ConvKernels.FirstLanes(n - i);
                    var xv = Avx512F.MaskLoad(x + i, mask, Vector512<float>.Zero);
                    var g = Avx512F.MaskLoad(dy + i, mask, Vector512<float>.Zero) * hardswish.ScalarSlope(xv);
                    Avx512F.MaskStore(dx + i, mask, Vector512.FusedMultiplyAdd(g, a, Vector512.FusedMultiplyAdd(xv - m, b, o)));
                }
                return;
            }
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
                InputGradient(dy + i, x + i, dx + i, relu == null ? null : relu + i, reluInput, m, a, b, o, Vector512<float>.AllBitsSet, whole: true);
            if (i < n)
                InputGradient(dy + i, x + i, dx + i, relu == null ? null : relu + i, reluInput, m, a, b, o, ConvKernels.FirstLanes(n - i), whole: false);
            return;
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var m = Vector256.Create(mean);
            var a = Vector256.Create(scaleDy);
            var b = Vector256.Create(scaleCentred);
            var o = Vector256.Create(offset);
            if (hardswish.Present)
            {
                // GradientSums' slope at 256 bits: the vector rule on whole vectors, the scalar rule on the rest (below).
                for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
                {
                    var xv = Vector256.Load(x + i);
                    var g = Vector256.Load(dy + i) * hardswish.Slope(xv);
                    Vector256.Store(Vector256.FusedMultiplyAdd(g, a, Vector256.FusedMultiplyAdd(xv - m, b, o)), dx + i);
                }
            }
            else
            {
                for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
                {
                    var centred = Vector256.Load(x + i) - m;
                    var g = Vector256.Load(dy + i);
                    if (relu != null) g = Vector256.ConditionalSelect(Vector256.GreaterThan(Vector256.Load(relu + i), Vector256<float>.Zero), g, Vector256<float>.Zero);
                    Vector256.Store(Vector256.FusedMultiplyAdd(g, a, Vector256.FusedMultiplyAdd(centred, b, o)), dx + i);
                }
            }
        }
        for (; i < n; i++)
        {
            float g = relu == null || relu[i] > 0 ? dy[i] : 0;
            if (hardswish.Present) g *= hardswish.Slope(x[i]);
            dx[i] = MathF.FusedMultiplyAdd(g, scaleDy, MathF.FusedMultiplyAdd(x[i] - mean, scaleCentred, offset));
        }
    }

    /// <summary>
    /// One vector of <see cref="InputGradient(float*, float*, float*, int, float, float, float, float, float*, HardswishInput, ReluInput)"/>:
    /// whole, or the lanes of <paramref name="mask"/> (loads and store masked); dy kept where the ReLU's output
    /// <paramref name="relu"/> is positive, or else where <paramref name="reluInput"/> is, when either is given.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void InputGradient(float* dy, float* x, float* dx, float* relu, ReluInput reluInput, Vector512<float> mean,
        Vector512<float> scaleDy, Vector512<float> scaleCentred, Vector512<float> offset, Vector512<float> mask, bool whole)
    {
        // Loads written out rather than through a local function: one that captured mask and whole kept them (and with
        // them the loop's constants) on the stack, loaded again at every vector.
        var zero = Vector512<float>.Zero;
        var xv = whole ? Vector512.Load(x) : Avx512F.MaskLoad(x, mask, zero);
        var g = whole ? Vector512.Load(dy) : Avx512F.MaskLoad(dy, mask, zero);
        if (relu != null)
        {
            var r = whole ? Vector512.Load(relu) : Avx512F.MaskLoad(relu, mask, zero);
            g = Vector512.ConditionalSelect(Vector512.GreaterThan(r, zero), g, zero);
        }
        else if (reluInput.Present) g = Vector512.ConditionalSelect(reluInput.Positive(xv), g, zero);
        var v = Vector512.FusedMultiplyAdd(g, scaleDy, Vector512.FusedMultiplyAdd(xv - mean, scaleCentred, offset));
        if (whole) Vector512.Store(v, dx);
        else Avx512F.MaskStore(dx, mask, v);
    }

    /// <summary>
    /// A fused ReLU's input, x * scale + offset (the bits training computed before taking the maximum with 0), for the
    /// backward: the ReLU's output is positive exactly where this is, so the backward, which reads x anyway, need not
    /// read the output (planes of <see cref="SmallPlane"/> values or more, AVX-512). That output is as many floats as
    /// x: reading it took a quarter to two fifths of a batch norm + ReLU's backward with the maps out of cache (harness:
    /// 64 x 128 x 168 1.01 -> 1.28 ms, 64 x 32 x 744 0.70 -> 0.98 ms).
    /// </summary>
    internal readonly struct ReluInput(float scale, float offset)
    {
        public bool Present { get; } = true;

        /// <summary>All bits set in the lanes where x * scale + offset is greater than zero.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<float> Positive(Vector512<float> x) =>
            Vector512.GreaterThan(Vector512.FusedMultiplyAdd(x, Vector512.Create(scale), Vector512.Create(offset)), Vector512<float>.Zero);
    }
}
