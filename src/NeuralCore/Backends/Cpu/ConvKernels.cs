using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// Convolution by im2col + GEMM. Shapes: x [N, C, H, W], w [K, C/G, R, S], y [N, K, P, Q] with G groups;
/// per group the GEMM operands are w_g [K/G, C/G*R*S], columns [C/G*R*S, nb*P*Q] and y_g [K/G, nb*P*Q],
/// where nb samples are unrolled side by side so that small feature maps still give the GEMM wide
/// matrices. Backward data with stride 1 runs as the forward convolution of dy with the flipped kernel;
/// with larger strides it is w_g^T * dy_g followed by col2im.
/// </summary>
/// <remarks>
/// Work is split over <see cref="CpuThreading.Threads"/> by chunks of nb samples, each part running its
/// chunks in order with single-threaded GEMMs (nested threading runs inline). When there is a single
/// part, the GEMM itself is multithreaded. Forward and backward-data results do not depend on the
/// thread count (each output element is one GEMM dot product plus, for backward data, a col2im sum
/// in a fixed order); the weight gradient sums per-part partials in part order, so it is bit-identical
/// run to run for a given thread count.
/// </remarks>
internal static unsafe class ConvKernels
{
    // Samples are unrolled side by side until the GEMM has this many columns...
    private const int TargetColumns = 512;
    /// <summary>
    /// Planes of at least this many positions give the GEMM enough columns alone: a 1x1 reads them in place, sample by
    /// sample (on the GEMM path, or on <see cref="ForwardBySample"/> when there are samples enough:
    /// <see cref="RunsBySample"/>).
    /// </summary>
    internal const int InPlacePlane = TargetColumns;
    // ...as long as one thread's columns and gathered rows stay within this many floats (1 MiB each).
    private const long MaxScratchFloats = 1 << 18;
    // Below this many multiply-adds per part, waking a worker costs more than it saves.
    private const long MinMacsPerPart = 1 << 18;
    // A 1x1 weight gradient multiplies sample by sample from planes of at least this many values.
    internal const int MinDirectWeightPlane = 32;
    // Planes below this many values are copied inline (CopySmall) between the samples and a chunk's rows.
    private const int SmallPlane = 64;
    // Spare floats after each im2col row and after the padded input plane: the unit-stride im2col
    // copies whole vectors, running up to a vector past the end of each output row.
    private const int Slack = 16;

    private enum Pass
    {
        Forward,
        BackwardData,
        BackwardWeight,
    }

    /// <summary>One call's arguments and plan, shared by the parts working on it.</summary>
    private struct Job
    {
        public Pass Pass;
        public Conv2dParams P;
        public float* X, W, Bias, Y;
        public float* Partials;
        public int Cg, Kg, HW, PQ, Crs;
        public bool Direct;
        public int Chunk, Chunks, Parts;
        // Channel-major forward epilogue (inference plans): y = act(y + residual) per chunk, while the chunk is in cache.
        public float* Residual;
        // Inference plans keep activations channel-major: x [C, N, H, W], y [K, N, P, Q].
        public bool ChannelMajor;
        public bool HasActivation;
        public UnaryOp Activation;
        public float ActivationAlpha, ActivationBeta;
    }

    /// <summary>y = conv2d(x, w) + bias.</summary>
    internal static void Forward(float* x, float* w, float* bias, float* y, in Conv2dParams p)
    {
        if (StemColumns.Enabled && StemColumns.CanRun(p))
        {
            // A one-channel stride-2 stem: over the input's column planes every tap reads at a fixed offset from the
            // output's position, so vectors run over whole output planes (no lanes idle at the end of MNIST's 13-wide or
            // mel's 49-wide rows, no im2col).
            StemColumns.Forward(x, w, bias, y, p);
            return;
        }
        if (CutDeadTaps(p, out var cut, out int r0, out int s0))
        {
            float* live = ConvScratch.Current.Get(ConvScratch.Slot.LiveTaps, (long)p.K * (p.C / p.Groups) * cut.R * cut.S);
            CopyWindow(w, p, live, cut, r0, s0, toWindow: true);
            Forward(x, live, bias, y, cut);
            return;
        }
        if (PointwiseConv.CanRun(p))
        {
            // 1x1 over planes of 6 positions (MNIST's 1 x 6 maps): each sample's output row computed where it lies.
            PointwiseConv.Forward(x, w, bias, y, p);
            return;
        }
        if (PlanePointwiseConv.CanRun(p))
        {
            // 1x1 over planes of two or three vectors (MNIST's 6 x 6 maps): each sample's planes read where they lie.
            PlanePointwiseConv.Forward(x, w, bias, y, p);
            return;
        }
        if (RunsBySample(p))
        {
            ForwardBySample(x, w, bias, y, p);
            return;
        }
        if (ImplicitGemmConv.SupportsSampleMajor(p))
        {
            ForwardImplicit(x, w, bias, y, p);
            return;
        }
        Job job = Plan(Pass.Forward, p);
        job.X = x; job.W = w; job.Bias = bias; job.Y = y;
        Execute(ref job);
    }

    /// <summary>
    /// A stride-1 "same" convolution of sample-major tensors through the inference plans' implicit GEMM, chunk by chunk
    /// of samples: each chunk's input copied channel-major ([C, nb, H, W], one pass over it instead of im2col's R*S
    /// copies and the GEMM's packing of them), multiplied, and its channel-major output copied back sample-major with
    /// the bias added, while the chunk is in cache. Each part packs the weights once per call. Planes of
    /// <see cref="MinSamplePlane"/> positions or more run <see cref="ForwardBySample"/> instead, without the copies.
    /// </summary>
    private static void ForwardImplicit(float* x, float* w, float* bias, float* y, in Conv2dParams p)
    {
        var job = new ImplicitJob
        {
            X = x, W = w, Bias = bias, Y = y, P = p,
            InPlane = (long)p.H * p.W,
            OutPlane = (long)p.P * p.Q,
        };
        int threads = CpuThreading.Threads;
        long perSample = p.C * job.InPlane + p.K * job.OutPlane;
        int chunk = (int)Math.Clamp(MaxImplicitChunkFloats / perSample, 1, Math.Max(1, (p.N + threads - 1) / threads));
        long macs = (long)p.N * p.K * (p.C / p.Groups) * p.R * p.S * job.OutPlane;
        (job.Chunk, job.Chunks, job.Parts) = ShareChunks(p.N, chunk, macs);
        // SAFETY: job outlives ForParts, which returns when every part is done.
        if (job.Parts == 1) ImplicitPart(&job, 0);
        else CpuThreading.ForParts(job.Parts, &ImplicitPart, &job);
    }

    /// <summary>Whether convolutions take <see cref="ForwardBySample"/> where it runs (tests compare it with the chunked paths).</summary>
    internal static bool BySample { get; set; } = true;

    // Planes of at least this many positions run sample by sample (below, the implicit GEMM's panels would be mostly
    // padding: MNIST's 6 x 6 maps ran 1.1-1.8 times as long, so they keep the chunks).
    internal const int MinSamplePlane = 64;

    // A 1x1 over planes of InPlacePlane positions or more runs sample by sample from this many samples per thread.
    // Harness, two threads, the GEMM path's time against this one's (medians of 15-41 alternated calls, forward /
    // backward data): 19->19 on mel's 31 x 24 at 64 samples 0.393 / 0.392 -> 0.345 / 0.331 ms, 32->32 0.791 / 0.783 ->
    // 0.691 / 0.694 ms, 76->76 on 23 x 23 3.62 / 3.56 -> 2.81 / 2.47 ms, 64->64 on 128 x 100 at 4 samples 4.25 / 4.41
    // -> 3.30 / 3.21 ms, 32->32 on 63 x 49 at 8 samples 0.391 / 0.394 -> 0.349 / 0.333 ms; with 2 samples a thread or
    // fewer it lost or tied (19->19 on 63 x 49 at 4 samples 0.090 / 0.090 -> 0.098 / 0.103 ms; 32->32 on 128 x 100 at
    // 2 samples 0.503 / 0.453 -> 0.526 / 0.478 ms), the samples too few to share out evenly.
    private const int MinWideSamplesPerThread = 4;

    /// <summary>
    /// True when a sample-major convolution runs <see cref="ForwardBySample"/>: one group, stride 1 and the output the
    /// size of the input (a 3x3 with padding 1, an unpadded 1x1), planes of at least <see cref="MinSamplePlane"/>
    /// positions, and for a 1x1 on planes of <see cref="InPlacePlane"/> or more at least 4 samples per thread (with
    /// fewer, the GEMM path, which reads each sample in place too). The same bits either way.
    /// </summary>
    internal static bool RunsBySample(in Conv2dParams p) =>
        BySample && p.Groups == 1 && ImplicitGemmConv.IsSame(p) && (ImplicitGemmConv.Supports(p) || ImplicitGemmConv.SupportsSampleMajor(p))
        && p.P * p.Q >= MinSamplePlane
        && (p.R * p.S > 1 || p.P * p.Q < InPlacePlane || p.N >= MinWideSamplesPerThread * CpuThreading.Threads);

    /// <summary>
    /// A "same" convolution of sample-major tensors through the implicit GEMM, one sample at a time where it lies: sample
    /// n's planes [C, H * W] are the input rows of <see cref="ImplicitGemmConv.ForwardRange"/> and its output planes
    /// [K, P * Q] the output rows, so nothing is copied across samples. The chunked paths copy a chunk of samples
    /// channel-major first (<see cref="ForwardImplicit"/>; for a 1x1 the GEMM path gathers them, then packs them again)
    /// and copy the output back. Each part packs the weights once per call and takes whole samples; each output is the
    /// chunked paths' dot product in the same order (the same bits; tests compare them). The backward data of a
    /// stride-1 convolution runs here too (the forward of the flipped kernel).
    /// </summary>
    /// <remarks>
    /// Harness, mel b64's maps, the chunked path's time against this one's (median of 80 alternated calls, two threads):
    /// 1x1 on 7 x 24 128->128 2.76 -> 2.23 and 3.89 -> 2.75 ms, 76->76 1.13 -> 0.95, 64->128 1.43 -> 1.23, 38->76 0.58 ->
    /// 0.53 ms (one thread: 0.79-0.82 of the time); 3x3 0.86-0.94 of the time (19->19 on 31 x 24 3.35 -> 2.93 ms, 32->64
    /// on 7 x 24 3.31 -> 3.11 ms), except 32->32 on 31 x 24 (1.00). Mel b64 training steps, the path switched on and
    /// off per round in one process: pruned 0.95-0.99 and big 0.96-0.98 of the time (docs/benchmarks.md, step 109).
    /// Each sample's planes come from memory, their rows a plane apart, so the next panel's lines are prefetched (mel b64
    /// training steps, switched per round, 60 rounds: pruned 0.97, big 0.98 of the time; step 117).
    /// </remarks>
    private static void ForwardBySample(float* x, float* w, float* bias, float* y, in Conv2dParams p, float* residual = null,
        double* planeSums = null)
    {
        var job = new ImplicitJob
        {
            X = x, W = w, Bias = bias, Y = y, P = p, Residual = residual, PlaneSums = planeSums,
            InPlane = (long)p.H * p.W,
            OutPlane = (long)p.P * p.Q,
        };
        long macs = (long)p.N * p.K * p.C * p.R * p.S * job.OutPlane;
        (job.Chunk, job.Chunks, job.Parts) = ShareChunks(p.N, 1, macs);
        long* words = stackalloc long[ClaimedRanges.Words(job.Parts)];
        job.Samples = new ClaimedRanges(words, job.Parts, job.Chunks);
        // SAFETY: job and the ranges' words outlive ForParts, which returns when every part is done.
        if (job.Parts == 1) SamplesPart(&job, 0);
        else CpuThreading.ForParts(job.Parts, &SamplesPart, &job);
    }

    private static void SamplesPart(void* state, int part)
    {
        ref ImplicitJob job = ref *(ImplicitJob*)state;
        ref readonly Conv2dParams p = ref job.P;
        // The part's own samples, then those of other parts that they have not reached yet (ClaimedRanges): each sample
        // is the same sums whichever part takes it.
        if (!job.Samples.Next(part, out int n)) return;
        var packing = ImplicitGemmConv.PackInto(job.W, p, ConvScratch.Current);
        var sample = p with { N = 1 };
        do
        {
            float* xn = job.X + (long)n * p.C * job.InPlane, yn = job.Y + (long)n * p.K * job.OutPlane;
            float* residual = job.Residual == null ? null : job.Residual + (long)n * p.K * job.OutPlane;
            ImplicitGemmConv.ForwardRange(xn, job.InPlane, p.C * job.InPlane, packing, job.Bias, yn, job.OutPlane, residual, job.OutPlane,
                sample, 0, (int)job.OutPlane, hasActivation: false, default, 0f, 0f, prefetch: true);
            if (job.PlaneSums != null) SumPlanes(ref job, n, yn);
        }
        while (job.Samples.Next(part, out n));
    }

    /// <summary>
    /// Sample n's output planes' sums for the batch norm after (<see cref="BatchNormKernels.PlaneSums"/>), taken while they
    /// are in cache. They are shifted by each channel's first value in sample 0, so the other samples' sums wait until sample 0
    /// is written: sample 0 is the first of part 0's, which the calling thread runs first, or of whichever part took it,
    /// which writes it before it waits for anything, so the wait ends.
    /// </summary>
    private static void SumPlanes(ref ImplicitJob job, int n, float* yn)
    {
        if (n == 0) Volatile.Write(ref job.FirstSampleWritten, 1);
        else if (Volatile.Read(ref job.FirstSampleWritten) == 0)
        {
            var spin = new SpinWait();
            while (Volatile.Read(ref job.FirstSampleWritten) == 0) spin.SpinOnce(sleep1Threshold: -1);
        }
        BatchNormKernels.PlaneSums(yn, job.Y, job.P.K, (int)job.OutPlane, job.PlaneSums + 2L * n * job.P.K);
    }

    /// <summary>
    /// True when <see cref="Forward"/> runs <paramref name="p"/> sample by sample (<see cref="ForwardBySample"/>), which
    /// can leave each output plane's sums for the batch norm after it (<see cref="ForwardWithPlaneSums"/>).
    /// </summary>
    internal static bool ForwardRunsBySample(in Conv2dParams p) =>
        !(StemColumns.Enabled && StemColumns.CanRun(p)) && !CutDeadTaps(p, out _, out _, out _) && !PointwiseConv.CanRun(p)
        && !PlanePointwiseConv.CanRun(p) && RunsBySample(p);

    /// <summary>
    /// <see cref="Forward"/> of a convolution that <see cref="ForwardRunsBySample"/>, with each output plane's two sums for
    /// a training batch norm (<see cref="BatchNormKernels.PlaneSums"/>) left in <paramref name="planeSums"/> ([N, K, 2]).
    /// </summary>
    internal static void ForwardWithPlaneSums(float* x, float* w, float* bias, float* y, in Conv2dParams p, double* planeSums)
    {
        if (!ForwardRunsBySample(p))
            throw new ArgumentException($"Only a convolution that runs sample by sample leaves its planes' sums, got {p}.", nameof(p));
        ForwardBySample(x, w, bias, y, p, null, planeSums);
    }

    // A chunk's channel-major input and output together stay within this many floats (512 KiB, half the L2 of a core
    // here, which also holds the weights and panels: at 1 MiB the mel 3x3 steps ran 5-15 % slower).
    private const long MaxImplicitChunkFloats = 1 << 17;

    private struct ImplicitJob
    {
        // ForwardBySample's residual: y = conv + residual, a tensor of y's shape (or null).
        public float* X, W, Bias, Y, Residual;
        public Conv2dParams P;
        public long InPlane, OutPlane;
        public int Chunk, Chunks, Parts;
        // ForwardBySample's samples, shared out among its parts.
        public ClaimedRanges Samples;
        // ForwardBySample's output planes' sums for the batch norm after it ([N, K, 2]) or null, and whether sample 0,
        // whose values shift them, is written (SumPlanes).
        public double* PlaneSums;
        public int FirstSampleWritten;
    }

    private static void ImplicitPart(void* state, int part)
    {
        ref ImplicitJob job = ref *(ImplicitJob*)state;
        ref readonly Conv2dParams p = ref job.P;
        int first = (int)((long)part * job.Chunks / job.Parts), end = (int)((long)(part + 1) * job.Chunks / job.Parts);
        ConvScratch scratch = ConvScratch.Current;
        if (first >= end) return;
        // Each part packs the weights into its own thread's scratch: a worker read them from the calling thread's
        // before, across the cores (MNIST b256 training, two threads, when the vCPUs share no cache: the forward
        // convolutions big 4.30 -> 4.21 ms and pruned 1.82 -> 1.79 ms; docs/benchmarks.md, step 106).
        var packing = ImplicitGemmConv.PackInto(job.W, p, scratch);
        for (int chunk = first; chunk < end; chunk++)
        {
            int n0 = chunk * job.Chunk, nb = Math.Min(job.Chunk, p.N - n0);
            if (nb <= 0) break;
            float* xcm = scratch.Get(ConvScratch.Slot.ChannelMajor, nb * (p.C * job.InPlane + p.K * job.OutPlane));
            float* ycm = xcm + nb * p.C * job.InPlane;
            MoveChunk(job.X + (long)n0 * p.C * job.InPlane, p.C * job.InPlane, p.C, (int)job.InPlane, nb, xcm, toSamples: false);
            // Inside a part the call runs its own parts inline; the results do not depend on how they are split.
            ImplicitGemmConv.Forward(xcm, packing, null, ycm, p with { N = nb }, null, hasActivation: false, default, 0f, 0f);
            MoveChunk(job.Y + (long)n0 * p.K * job.OutPlane, p.K * job.OutPlane, p.K, (int)job.OutPlane, nb, ycm, toSamples: true);
            AddBias(job.Y, job.Bias, n0, nb, p.K, (int)job.OutPlane);
        }
    }

    /// <summary>
    /// y = act(conv2d(x, w) + bias + residual) on channel-major tensors x [C, N, H, W], y and residual [K, N, P, Q]
    /// (inference plans): the GEMM of a chunk of samples writes straight into y, whose rows are the output channels,
    /// and the epilogue runs on the chunk while it is in cache; a 1x1 stride-1 convolution is a single GEMM over every
    /// sample with no copy at all. The activation is skipped when <paramref name="hasActivation"/> is false.
    /// </summary>
    internal static void ForwardChannelMajor(float* x, float* w, float* bias, float* y, in Conv2dParams p, float* residual,
        bool hasActivation, UnaryOp activation, float alpha, float beta)
    {
        if (residual == null && StemColumns.Enabled && StemColumns.CanRun(p))
        {
            // A one-channel stride-2 stem the plan's direct stem does not take (without AVX-512): over the input's column
            // planes, with the same sums, bias and activation.
            StemColumns.ForwardChannelMajor(x, w, bias, y, p, hasActivation, activation, alpha, beta);
            return;
        }
        Job job = Plan(Pass.Forward, p);
        job.X = x; job.W = w; job.Bias = bias; job.Y = y;
        job.Residual = residual;
        job.ChannelMajor = true;
        job.HasActivation = hasActivation;
        job.Activation = activation;
        job.ActivationAlpha = alpha;
        job.ActivationBeta = beta;
        if (!job.Direct)
        {
            Execute(ref job);
            return;
        }
        long columns = (long)p.N * job.PQ;
        for (int g = 0; g < p.Groups; g++)
        {
            Gemm.Sgemm(false, false, job.Kg, (int)columns, job.Cg, 1f, w + (long)g * job.Kg * job.Crs, job.Crs,
                x + g * job.Cg * columns, (int)columns, 0f, y + g * job.Kg * columns, (int)columns);
        }
        ChannelMajorEpilogue(ref job, 0, p.N);
    }

    /// <summary>Plane (sample n, input channel c) of x in the job's layout.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* InputPlane(ref Job job, int n, int c) => job.ChannelMajor
        ? job.X + ((long)c * job.P.N + n) * job.HW
        : job.X + ((long)n * job.P.C + c) * job.HW;

    /// <summary>Bias, residual and activation of samples [n0, n0 + nb) of a channel-major output, row by row.</summary>
    private static void ChannelMajorEpilogue(ref Job job, int n0, int nb)
    {
        long ld = (long)job.P.N * job.PQ, at = (long)n0 * job.PQ;
        Epilogue(job.Y, ld, at, job.P.K, nb * job.PQ, job.Bias, job.Residual, ld, at,
            job.HasActivation, job.Activation, job.ActivationAlpha, job.ActivationBeta);
    }

    /// <summary>
    /// y[k, at..at+length) = act(y + bias[k] + residual[k, residualAt..]) for each of the <paramref name="rows"/> rows of
    /// a row-major y with row stride <paramref name="ld"/> (residual rows: stride <paramref name="residualLd"/>); bias,
    /// residual or activation are skipped when absent. ReLU and Hardswish run in the same pass as the additions.
    /// </summary>
    internal static void Epilogue(float* y, long ld, long at, int rows, int length, float* bias, float* residual, long residualLd,
        long residualAt, bool hasActivation, UnaryOp activation, float alpha, float beta)
    {
        if (bias == null && residual == null && !hasActivation) return;
        if (Avx512F.IsSupported && (!hasActivation || activation is UnaryOp.Relu or UnaryOp.Hardswish))
        {
            var rowsAction = new EpilogueRows(y + at, ld, rows, length, bias, residual == null ? null : residual + residualAt, residualLd);
            Gemm.WithEpilogue(!hasActivation ? 0 : activation == UnaryOp.Relu ? 1 : 2, bias != null, residual != null, ref rowsAction);
            return;
        }
        if (Avx.IsSupported && (!hasActivation || activation is UnaryOp.Relu or UnaryOp.Hardswish))
        {
            // 8 floats a vector, each row's last ones masked: the per-row calls below cost 15 % of a batch-1 MNIST plan
            // on 256-bit vectors (the 1 x 6 map's rows are 6 floats).
            int kind = !hasActivation ? 0 : activation == UnaryOp.Relu ? 1 : 2;
            var tail = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(length % 8)).AsSingle();
            for (int k = 0; k < rows; k++)
            {
                float* row = y + k * ld + at, res = residual == null ? null : residual + k * residualLd + residualAt;
                var b = bias == null ? default : Vector256.Create(bias[k]);
                int i = 0;
                for (; i + 8 <= length; i += 8)
                {
                    var r = res == null ? default : Vector256.Load(res + i);
                    EpilogueVector(Vector256.Load(row + i), b, bias != null, r, res != null, kind).Store(row + i);
                }
                if (i == length) continue;
                var rest = res == null ? default : Avx.MaskLoad(res + i, tail);
                Avx.MaskStore(row + i, tail, EpilogueVector(Avx.MaskLoad(row + i, tail), b, bias != null, rest, res != null, kind));
            }
            return;
        }
        for (int k = 0; k < rows; k++)
        {
            float* row = y + k * ld + at;
            float* res = residual == null ? null : residual + k * residualLd + residualAt;
            if (bias != null) AddScalar(row, bias[k], length);
            if (res != null) Add(row, res, length);
            if (hasActivation)
            {
                var span = new Span<float>(row, length);
                CpuBackend.UnaryRange(activation, span, span, alpha, beta);
            }
        }
    }

    /// <summary>
    /// One pass of y = act(y + bias + residual) over each row, for ReLU, Hardswish or no activation (AVX-512), with the
    /// steps as types (<see cref="Gemm.WithEpilogue"/>): the compiled loop tests none of them per vector.
    /// </summary>
    private readonly struct EpilogueRows(float* y, long ld, int rows, int length, float* bias, float* residual, long residualLd) : Gemm.IEpilogueAction
    {
        public void Run<TKind, TBias, TResidual>()
            where TKind : struct, Gemm.IConstant where TBias : struct, Gemm.IConstant where TResidual : struct, Gemm.IConstant
        {
            var mask = FirstLanes(length % 16);
            for (int k = 0; k < rows; k++)
            {
                float* row = y + k * ld, res = residual + k * residualLd;
                var b = TBias.Value != 0 ? Vector512.Create(bias[k]) : default;
                int i = 0;
                for (; i + 16 <= length; i += 16)
                {
                    var r = TResidual.Value != 0 ? Vector512.Load(res + i) : default;
                    Gemm.Epilogue<TKind, TBias, TResidual>(Vector512.Load(row + i), b, r).Store(row + i);
                }
                if (i == length) continue;
                var rest = TResidual.Value != 0 ? Avx512F.MaskLoad(res + i, mask, Vector512<float>.Zero) : default;
                Avx512F.MaskStore(row + i, mask, Gemm.Epilogue<TKind, TBias, TResidual>(Avx512F.MaskLoad(row + i, mask, Vector512<float>.Zero), b, rest));
            }
        }
    }

    /// <summary>act(v + bias + r), with the same expressions as <see cref="CpuBackend.UnaryRange"/> (kind 1: ReLU, 2: Hardswish).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> EpilogueVector(Vector512<float> v, float bias, bool hasBias, Vector512<float> r, bool hasResidual, int kind) =>
        EpilogueVector(v, Vector512.Create(bias), hasBias, r, hasResidual, kind);

    /// <summary>act(v + bias + r) with a bias per lane (output channels in the lanes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> EpilogueVector(Vector512<float> v, Vector512<float> bias, bool hasBias, Vector512<float> r, bool hasResidual, int kind)
    {
        if (hasBias) v += bias;
        if (hasResidual) v += r;
        if (kind == 1) return Relu(v);
        if (kind == 2) return Hardswish(v);
        return v;
    }

    /// <summary>
    /// max(v, 0) as IEEE's maximum (<see cref="Vector512.Max{T}"/>: NaN kept, +0 for -0) in two instructions instead
    /// of three: x86's maximum with 0 first returns v where v is NaN or a zero, and adding +0 turns -0 into +0 and
    /// changes nothing else.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Relu(Vector512<float> v) =>
        Avx512F.IsSupported ? Avx512F.Max(Vector512<float>.Zero, v) + Vector512<float>.Zero : Vector512.Max(v, Vector512<float>.Zero);

    /// <inheritdoc cref="Relu(Vector512{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Relu(Vector256<float> v) =>
        Avx.IsSupported ? Avx.Max(Vector256<float>.Zero, v) + Vector256<float>.Zero : Vector256.Max(v, Vector256<float>.Zero);

    /// <summary>
    /// v * min(max(v + 3, 0), 6) / 6, the bits of <see cref="CpuBackend.UnaryRange"/>'s Hardswish. v + 3 is never -0
    /// (an exact zero sum rounds to +0), so x86's maximum with 0 first, which returns its second operand when they
    /// compare equal or either is NaN, is IEEE's maximum here without the fix-up of signed zeros and NaN that
    /// <see cref="Vector512.Max{T}"/> adds (one instruction of seven).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Hardswish(Vector512<float> v)
    {
        var u = v + Vector512.Create(3f);
        var clamped = Avx512F.IsSupported ? Avx512F.Max(Vector512<float>.Zero, u) : Vector512.Max(u, Vector512<float>.Zero);
        return v * Vector512.Min(clamped, Vector512.Create(6f)) * Vector512.Create(1f / 6f);
    }

    /// <inheritdoc cref="EpilogueVector(Vector512{float}, Vector512{float}, bool, Vector512{float}, bool, int)"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> EpilogueVector(Vector256<float> v, Vector256<float> bias, bool hasBias, Vector256<float> r, bool hasResidual, int kind)
    {
        if (hasBias) v += bias;
        if (hasResidual) v += r;
        if (kind == 1) return Relu(v);
        if (kind == 2)
        {
            // As Hardswish(Vector512): x86's maximum with 0 first is IEEE's for v + 3.
            var u = v + Vector256.Create(3f);
            var clamped = Avx.IsSupported ? Avx.Max(Vector256<float>.Zero, u) : Vector256.Max(u, Vector256<float>.Zero);
            return v * Vector256.Min(clamped, Vector256.Create(6f)) * Vector256.Create(1f / 6f);
        }
        return v;
    }

    /// <summary>
    /// True when <see cref="BackwardDataPlus"/> can add a tensor to the input gradient as it is stored: a stride-1
    /// convolution whose input gradient, the forward of the flipped kernel, runs sample by sample
    /// (<see cref="RunsBySample"/>; mel's maps).
    /// </summary>
    internal static bool BackwardDataAdds(in Conv2dParams p) =>
        !CutDeadTaps(p, out _, out _, out _) && !PointwiseConv.CanRun(p) && FlippedForward(p, out var flipped)
        && !(StemColumns.Enabled && StemColumns.CanRun(flipped)) && !CutDeadTaps(flipped, out _, out _, out _)
        && !PointwiseConv.CanRun(flipped) && !PlanePointwiseConv.CanRun(flipped) && RunsBySample(flipped);

    /// <summary>
    /// dx = <paramref name="plus"/> + the input gradient of dy, each value the gradient's dot product with
    /// <paramref name="plus"/>'s value added as it is stored (the bits of the input gradient, then the addition), for a
    /// convolution that <see cref="BackwardDataAdds"/>; <paramref name="plus"/> and dx must not overlap.
    /// </summary>
    internal static void BackwardDataPlus(float* dy, float* w, float* plus, float* dx, in Conv2dParams p)
    {
        if (!BackwardDataAdds(p) || !FlippedForward(p, out var flipped))
            throw new InvalidOperationException("The input gradient of this convolution does not run sample by sample; add the tensor after it.");
        float* kernel = ConvScratch.Current.Get(ConvScratch.Slot.Weights, (long)p.K * (p.C / p.Groups) * p.R * p.S);
        FlipKernel(w, kernel, p);
        ForwardBySample(dy, kernel, null, dx, flipped, plus);
    }

    /// <summary>
    /// With stride 1, the geometry of the forward convolution that gives the input gradient: dy padded by
    /// dilation * (kernel - 1) - pad, the kernel flipped and its channel axes swapped; false for other strides.
    /// </summary>
    private static bool FlippedForward(in Conv2dParams p, out Conv2dParams flipped)
    {
        int padH = p.DilationH * (p.R - 1) - p.PadH, padW = p.DilationW * (p.S - 1) - p.PadW;
        flipped = new Conv2dParams(p.N, p.K, p.P, p.Q, p.C, p.R, p.S, 1, 1, padH, padW, p.DilationH, p.DilationW, p.Groups);
        return p.StrideH == 1 && p.StrideW == 1 && padH >= 0 && padW >= 0;
    }

    /// <summary>dx = conv2d input gradient of dy (dx overwritten).</summary>
    internal static void BackwardData(float* dy, float* w, float* dx, in Conv2dParams p)
    {
        if (CutDeadTaps(p, out var cut, out int r0, out int s0))
        {
            float* live = ConvScratch.Current.Get(ConvScratch.Slot.LiveTaps, (long)p.K * (p.C / p.Groups) * cut.R * cut.S);
            CopyWindow(w, p, live, cut, r0, s0, toWindow: true);
            BackwardData(dy, live, dx, cut);
            return;
        }
        if (PointwiseConv.CanRun(p))
        {
            // The forward of the transposed 1x1 kernel over planes of 6 positions, reading w as it lies.
            PointwiseConv.BackwardData(dy, w, dx, p);
            return;
        }
        if (FlippedForward(p, out var geometry))
        {
            // With stride 1, dx is the forward convolution of dy, padded by dilation*(kernel-1) - pad, with
            // the kernel flipped and its channel axes swapped. The GEMMs then sum over K/G*R*S instead of
            // K/G, and each dx element is written once instead of scattered by col2im.
            float* flipped = ConvScratch.Current.Get(ConvScratch.Slot.Weights, (long)p.K * (p.C / p.Groups) * p.R * p.S);
            FlipKernel(w, flipped, p);
            Forward(dy, flipped, null, dx, geometry);
            return;
        }
        Job job = Plan(Pass.BackwardData, p);
        job.X = dx; job.W = w; job.Y = dy;
        Execute(ref job);
    }

    /// <summary>True when <see cref="BackwardWeight"/> runs <paramref name="p"/> as a stem (<see cref="DirectWeightGradient.RunStem"/>).</summary>
    internal static bool RunsStemWeightGradient(in Conv2dParams p) =>
        !CutDeadTaps(p, out _, out _, out _) && !DirectWeightGradient.Supports(p) && DirectWeightGradient.SupportsStem(p);

    /// <summary>dw = conv2d weight gradient of dy for input x (dw overwritten).</summary>
    internal static void BackwardWeight(float* dy, float* x, float* dw, in Conv2dParams p)
    {
        if (CutDeadTaps(p, out var cut, out int r0, out int s0))
        {
            // A dead tap's gradient sums products with the zero border only: it is zero.
            float* live = ConvScratch.Current.Get(ConvScratch.Slot.LiveTaps, (long)p.K * (p.C / p.Groups) * cut.R * cut.S);
            BackwardWeight(dy, x, live, cut);
            new Span<float>(dw, checked((int)((long)p.K * (p.C / p.Groups) * p.R * p.S))).Clear();
            CopyWindow(dw, p, live, cut, r0, s0, toWindow: false);
            return;
        }
        if (ChannelLaneWeightGradient.Supports(p))
        {
            ChannelLaneWeightGradient.Run(dy, x, dw, p);
            return;
        }
        if (DirectWeightGradient.Supports(p))
        {
            DirectWeightGradient.Run(dy, x, dw, p);
            return;
        }
        if (DirectWeightGradient.SupportsStem(p))
        {
            DirectWeightGradient.RunStem(dy, x, dw, p);
            return;
        }
        Job job = Plan(Pass.BackwardWeight, p);
        job.X = x; job.W = dw; job.Y = dy;
        long wLen = (long)p.K * job.Crs;
        if (job.Parts > 1) job.Partials = ConvScratch.Current.Get(ConvScratch.Slot.Partials, (job.Parts - 1) * wLen);
        Execute(ref job);
        // Fixed-order reduction: dw = part 0 + part 1 + ... so the sum is the same on every run.
        for (int part = 1; part < job.Parts; part++) Add(dw, job.Partials + (part - 1) * wLen, wLen);
    }

    /// <summary>
    /// The same convolution with its kernel cut to the taps that some output reads inside the input, when rows or
    /// columns of taps at the kernel's edges only ever meet the zero border (a 3x3 kernel with padding 1 on maps one
    /// row high: the top and bottom rows of taps). Those taps add exact zeros to every output, so cutting them changes
    /// no result and saves their share of the work (two thirds on MNIST's 1 x 6 maps). False when no tap is dead, or
    /// when the cut kernel would need a padding that the geometry cannot express (<paramref name="cut"/> has the same
    /// output size, with the padding reduced by the taps cut before the window: r0 and s0).
    /// </summary>
    private static bool CutDeadTaps(in Conv2dParams p, out Conv2dParams cut, out int r0, out int s0)
    {
        (r0, int r1) = LiveTaps(p.R, p.DilationH, p.PadH, p.StrideH, p.H, p.P);
        (s0, int s1) = LiveTaps(p.S, p.DilationW, p.PadW, p.StrideW, p.W, p.Q);
        cut = p with { R = r1 - r0, S = s1 - s0, PadH = p.PadH - r0 * p.DilationH, PadW = p.PadW - s0 * p.DilationW };
        return (cut.R < p.R || cut.S < p.S) && cut.R > 0 && cut.S > 0 && cut.PadH >= 0 && cut.PadW >= 0
            && cut.P == p.P && cut.Q == p.Q;
    }

    /// <summary>The first and end tap along one axis that some output reads inside the input (taps past them never do).</summary>
    private static (int First, int End) LiveTaps(int taps, int dilation, int pad, int stride, int size, int outputs)
    {
        int first = 0, end = taps;
        while (first < end && IsDead(first)) first++;
        while (end > first && IsDead(end - 1)) end--;
        return (first, end);

        bool IsDead(int tap)
        {
            var (low, high) = ValidRange(tap * dilation - pad, stride, size, outputs);
            return low >= high;
        }
    }

    /// <summary>
    /// Copies between a kernel w [K, C/G, R, S] of <paramref name="p"/> and its window [K, C/G, cut.R, cut.S] starting
    /// at tap (r0, s0): into the window when <paramref name="toWindow"/>, else from the window into w.
    /// </summary>
    private static void CopyWindow(float* w, in Conv2dParams p, float* window, in Conv2dParams cut, int r0, int s0, bool toWindow)
    {
        long kernels = (long)p.K * (p.C / p.Groups);
        for (long i = 0; i < kernels; i++)
        for (int r = 0; r < cut.R; r++)
        {
            float* full = w + (i * p.R + r0 + r) * p.S + s0;
            float* part = window + (i * cut.R + r) * cut.S;
            if (toWindow) Copy(part, full, cut.S);
            else Copy(full, part, cut.S);
        }
    }

    /// <summary>flipped [C, K/G, R, S] from w [K, C/G, R, S]: flipped[g*C/G + c, k, r, s] = w[g*K/G + k, c, R-1-r, S-1-s].</summary>
    private static void FlipKernel(float* w, float* flipped, in Conv2dParams p)
    {
        int cg = p.C / p.Groups, kg = p.K / p.Groups, rs = p.R * p.S;
        if (rs == 1)
        {
            // A 1x1 kernel: each group's [K/G, C/G] block transposed, in tiles that stay in L1 both ways (the loop below
            // took 30 µs on 128 x 128 weights, on one thread while the others waited).
            const int Tile = 16;
            for (int g = 0; g < p.Groups; g++)
            {
                float* src = w + (long)g * kg * cg, dst = flipped + (long)g * cg * kg;
                for (int k0 = 0; k0 < kg; k0 += Tile)
                for (int c0 = 0; c0 < cg; c0 += Tile)
                {
                    int k1 = Math.Min(k0 + Tile, kg), c1 = Math.Min(c0 + Tile, cg);
                    for (int k = k0; k < k1; k++)
                        for (int c = c0; c < c1; c++) dst[(long)c * kg + k] = src[(long)k * cg + c];
                }
            }
            return;
        }
        for (int g = 0; g < p.Groups; g++)
        for (int k = 0; k < kg; k++)
        for (int c = 0; c < cg; c++)
        {
            float* src = w + ((long)(g * kg + k) * cg + c) * rs;
            float* dst = flipped + ((long)(g * cg + c) * kg + k) * rs;
            for (int i = 0; i < rs; i++) dst[i] = src[rs - 1 - i];
        }
    }

    private static Job Plan(Pass pass, in Conv2dParams p)
    {
        var job = new Job
        {
            Pass = pass,
            P = p,
            Cg = p.C / p.Groups,
            Kg = p.K / p.Groups,
            HW = p.H * p.W,
            PQ = p.P * p.Q,
        };
        job.Crs = job.Cg * p.R * p.S;
        // A 1x1, stride-1, unpadded convolution reads (or writes) the input planes as they are.
        job.Direct = p.R == 1 && p.S == 1 && p.StrideH == 1 && p.StrideW == 1 && p.PadH == 0 && p.PadW == 0;

        int threads = CpuThreading.Threads;
        int chunk = 1;
        if (job.PQ < TargetColumns)
        {
            long widest = Math.Max(1, (long)Math.Max(job.Crs, job.Kg) * job.PQ);
            chunk = (TargetColumns + job.PQ - 1) / job.PQ;
            chunk = (int)Math.Min(chunk, Math.Max(1, MaxScratchFloats / widest));
            chunk = Math.Min(chunk, (p.N + threads - 1) / threads);
            chunk = Math.Max(chunk, 1);
        }
        // A 1x1 weight gradient reads each sample's planes where they lie (no gathered copies of dy and x) unless
        // they are too small for the GEMM (MNIST's 1 x 6 maps).
        if (pass == Pass.BackwardWeight && job.Direct && job.PQ >= MinDirectWeightPlane) chunk = 1;
        long macs = (long)p.N * p.K * job.Crs * job.PQ;
        (job.Chunk, job.Chunks, job.Parts) = ShareChunks(p.N, chunk, macs);
        return job;
    }

    /// <summary>
    /// Chunks of about <paramref name="chunk"/> of the n samples, and the parts (threads) worth waking for this many
    /// multiply-adds, with as many chunks for every part (256 samples of 1 x 6 maps: 4 chunks of 64, not 86 + 86 + 84
    /// shared 1 : 2).
    /// </summary>
    internal static (int Chunk, int Chunks, int Parts) ShareChunks(int n, int chunk, long macs)
    {
        int chunks = (n + chunk - 1) / chunk;
        int parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, Math.Min(CpuThreading.Threads, chunks));
        if (parts > 1 && chunks % parts != 0)
        {
            chunks = (chunks + parts - 1) / parts * parts;
            chunk = (n + chunks - 1) / chunks;
            chunks = (n + chunk - 1) / chunk;
        }
        return (chunk, chunks, Math.Min(parts, chunks));
    }

    private static void Execute(ref Job job)
    {
        if (job.Parts == 1)
        {
            // On the calling thread, so that each GEMM may use every thread itself.
            RunChunks(ref job, 0, job.Chunks, 0);
            return;
        }
        // SAFETY: job lives on this stack frame and ForParts returns only after every part is done.
        fixed (Job* state = &job) CpuThreading.ForParts(job.Parts, &RunPart, state);
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        int first = (int)((long)part * job.Chunks / job.Parts);
        int end = (int)((long)(part + 1) * job.Chunks / job.Parts);
        RunChunks(ref job, first, end, part);
    }

    private static void RunChunks(ref Job job, int first, int end, int part)
    {
        if (first >= end) return;
        ConvScratch scratch = ConvScratch.Current;
        long columns = (long)job.Chunk * job.PQ;
        // Each slot is fetched once at the largest size this call needs, so the pointers stay valid.
        float* cols = scratch.Get(ConvScratch.Slot.Columns, job.Crs * (columns + Slack));
        float* rows = scratch.Get(ConvScratch.Slot.Rows, job.Kg * columns);
        float* padded = scratch.Get(ConvScratch.Slot.Padded, (long)(job.P.H + 2 * job.P.PadH) * (job.P.W + 2 * job.P.PadW) + 2 * Slack);
        float* dw = part == 0 ? job.W : job.Partials + (part - 1) * (long)job.P.K * job.Crs;
        for (int chunk = first; chunk < end; chunk++)
        {
            int n0 = chunk * job.Chunk;
            int nb = Math.Min(job.Chunk, job.P.N - n0);
            switch (job.Pass)
            {
                case Pass.Forward: ForwardChunk(ref job, n0, nb, cols, rows, padded); break;
                case Pass.BackwardData: BackwardDataChunk(ref job, n0, nb, cols, rows); break;
                default: BackwardWeightChunk(ref job, n0, nb, cols, rows, padded, dw, accumulate: chunk != first); break;
            }
        }
    }

    private static void ForwardChunk(ref Job job, int n0, int nb, float* cols, float* rows, float* padded)
    {
        ref readonly Conv2dParams p = ref job.P;
        int ld = nb * job.PQ;
        if (job.ChannelMajor)
        {
            int ldc = p.N * job.PQ;
            for (int g = 0; g < p.Groups; g++)
            {
                Im2Col(ref job, n0, nb, g, cols, ld + Slack, padded);
                Gemm.Sgemm(false, false, job.Kg, ld, job.Crs, 1f, job.W + (long)g * job.Kg * job.Crs, job.Crs, cols, ld + Slack,
                    0f, job.Y + (long)g * job.Kg * ldc + (long)n0 * job.PQ, ldc);
            }
            ChannelMajorEpilogue(ref job, n0, nb);
            return;
        }
        for (int g = 0; g < p.Groups; g++)
        {
            float* wg = job.W + (long)g * job.Kg * job.Crs;
            float* b = cols;
            int ldb = ld + Slack;
            if (job.Direct && nb == 1) { b = job.X + ((long)n0 * p.C + g * job.Cg) * job.HW; ldb = job.HW; }
            else Im2Col(ref job, n0, nb, g, cols, ldb, padded);

            if (nb == 1)
            {
                float* yg = job.Y + ((long)n0 * p.K + g * job.Kg) * job.PQ;
                Gemm.Sgemm(false, false, job.Kg, job.PQ, job.Crs, 1f, wg, job.Crs, b, ldb, 0f, yg, job.PQ);
            }
            else
            {
                Gemm.Sgemm(false, false, job.Kg, ld, job.Crs, 1f, wg, job.Crs, b, ldb, 0f, rows, ld);
                MoveRows(ref job, n0, nb, g, rows, toSamples: true);
            }
        }
        AddBias(job.Y, job.Bias, n0, nb, p.K, job.PQ);
    }

    /// <summary>y[n, k, :] += bias[k] for samples [n0, n0 + nb) of a sample-major y [N, K, plane]; nothing without a bias.</summary>
    private static void AddBias(float* y, float* bias, int n0, int nb, int k, int plane)
    {
        if (bias == null) return;
        for (int i = 0; i < nb; i++)
        {
            float* yn = y + (long)(n0 + i) * k * plane;
            for (int c = 0; c < k; c++) AddScalar(yn + (long)c * plane, bias[c], plane);
        }
    }

    private static void BackwardDataChunk(ref Job job, int n0, int nb, float* cols, float* rows)
    {
        ref readonly Conv2dParams p = ref job.P;
        int ld = nb * job.PQ;
        bool direct = job.Direct && nb == 1;
        float* dx = job.X + (long)n0 * p.C * job.HW;
        // col2im accumulates, so the planes it writes start at zero.
        if (!direct) new Span<float>(dx, nb * p.C * job.HW).Clear();
        for (int g = 0; g < p.Groups; g++)
        {
            float* wg = job.W + (long)g * job.Kg * job.Crs;
            float* b = rows;
            int ldb = ld;
            if (nb == 1) { b = job.Y + ((long)n0 * p.K + g * job.Kg) * job.PQ; ldb = job.PQ; }
            else MoveRows(ref job, n0, nb, g, rows, toSamples: false);

            if (direct)
            {
                // dx_g [C/G, HW] = w_g^T [C/G, K/G] * dy_g [K/G, PQ] (PQ == HW here).
                Gemm.Sgemm(true, false, job.Crs, job.PQ, job.Kg, 1f, wg, job.Crs, b, ldb, 0f, dx + (long)g * job.Cg * job.HW, job.HW);
            }
            else
            {
                Gemm.Sgemm(true, false, job.Crs, ld, job.Kg, 1f, wg, job.Crs, b, ldb, 0f, cols, ld);
                Col2Im(ref job, n0, nb, g, cols);
            }
        }
    }

    private static void BackwardWeightChunk(ref Job job, int n0, int nb, float* cols, float* rows, float* padded, float* dw, bool accumulate)
    {
        ref readonly Conv2dParams p = ref job.P;
        int ld = nb * job.PQ;
        float beta = accumulate ? 1f : 0f;
        for (int g = 0; g < p.Groups; g++)
        {
            float* a = rows;
            int lda = ld;
            if (nb == 1) { a = job.Y + ((long)n0 * p.K + g * job.Kg) * job.PQ; lda = job.PQ; }
            else MoveRows(ref job, n0, nb, g, rows, toSamples: false);

            float* b = cols;
            int ldb = ld + Slack;
            if (job.Direct && nb == 1) { b = job.X + ((long)n0 * p.C + g * job.Cg) * job.HW; ldb = job.HW; }
            else Im2Col(ref job, n0, nb, g, cols, ldb, padded);

            // dw_g [K/G, C/G*R*S] (+)= dy_g [K/G, nb*PQ] * columns^T [nb*PQ, C/G*R*S].
            Gemm.Sgemm(false, true, job.Kg, job.Crs, ld, 1f, a, lda, b, ldb, beta, dw + (long)g * job.Kg * job.Crs, job.Crs);
        }
    }

    /// <summary>
    /// Copies the rows of group g between the unrolled layout [K/G, nb*PQ] and the samples
    /// y[n0 + i, g*K/G + k, :] (toSamples: unrolled to samples; else samples to unrolled).
    /// </summary>
    private static void MoveRows(ref Job job, int n0, int nb, int g, float* rows, bool toSamples) =>
        MoveChunk(job.Y + ((long)n0 * job.P.K + g * job.Kg) * job.PQ, (long)job.P.K * job.PQ, job.Kg, job.PQ, nb, rows, toSamples);

    /// <summary>
    /// Copies <paramref name="channels"/> planes of nb samples between a sample-major tensor (sample i's first plane at
    /// samples + i * sampleStride, its planes contiguous) and a chunk [channels, nb * plane] (channel c's planes of the
    /// nb samples side by side): into the tensor when <paramref name="toSamples"/>, else into the chunk.
    /// </summary>
    internal static void MoveChunk(float* samples, long sampleStride, int channels, int plane, int nb, float* chunk, bool toSamples) =>
        MoveChunk(samples, sampleStride, channels, plane, nb, chunk, (long)nb * plane, toSamples);

    /// <summary><see cref="MoveChunk(float*, long, int, int, int, float*, bool)"/> with the chunk's rows <paramref name="ld"/> floats apart.</summary>
    internal static void MoveChunk(float* samples, long sampleStride, int channels, int plane, int nb, float* chunk, long ld, bool toSamples)
    {
        if (plane < SmallPlane && Avx512F.IsSupported)
        {
            // Small planes (MNIST's 1 x 6, 3 x 6, 6 x 6): copied inline, planes of 6 values 8 samples at a time, the rest
            // as whole vectors and one masked tail, the mask made once; a call per plane cost about as much as the copy.
            if (plane == 6 && Avx512F.VL.IsSupported)
            {
                int whole = nb / 8 * 8;
                if (toSamples) SixesToSamples(samples, sampleStride, channels, whole, chunk, ld);
                else SixesToChunk(samples, sampleStride, channels, whole, chunk, ld);
                samples += whole * sampleStride;
                chunk += whole * plane;
                nb -= whole;
            }
            var tail = FirstLanes(plane % 16);
            for (int i = 0; i < nb; i++)
            {
                float* sample = samples + i * sampleStride, unrolled = chunk + (long)i * plane;
                if (toSamples)
                    for (int c = 0; c < channels; c++) CopySmall(sample + (long)c * plane, unrolled + c * ld, plane, tail);
                else
                    for (int c = 0; c < channels; c++) CopySmall(unrolled + c * ld, sample + (long)c * plane, plane, tail);
            }
            return;
        }
        for (int i = 0; i < nb; i++)
        {
            float* sample = samples + i * sampleStride;
            for (int c = 0; c < channels; c++)
            {
                float* unrolled = chunk + c * ld + (long)i * plane;
                float* planeStart = sample + (long)c * plane;
                if (toSamples) Copy(planeStart, unrolled, plane);
                else Copy(unrolled, planeStart, plane);
            }
        }
    }

    /// <summary>
    /// <see cref="MoveChunk(float*, long, int, int, int, float*, long, bool)"/> into the chunk for planes of 6 values and
    /// a multiple of 8 samples: each channel's 8 planes (8-float loads) become 48 contiguous floats through three
    /// two-source permutations and three whole stores, instead of 8 masked copies (2.1x faster in a harness: 0.60-0.69
    /// against 1.15-1.45 ns a plane). A load reads 2 floats past its plane, which belong to the tensor except after the
    /// last sample's last plane: that one is masked.
    /// </summary>
    private static void SixesToChunk(float* samples, long sampleStride, int channels, int nb, float* chunk, long ld)
    {
        var first = Vector512.Create(0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 16, 17, 18, 19);
        var second = Vector512.Create(4, 5, 8, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 21, 24, 25);
        var third = Vector512.Create(10, 11, 12, 13, 16, 17, 18, 19, 20, 21, 24, 25, 26, 27, 28, 29);
        var six = SixLanes();
        for (int i = 0; i < nb; i += 8)
        {
            float* group = samples + i * sampleStride, row = chunk + (long)i * 6;
            int unmasked = i + 8 == nb ? channels - 1 : channels;
            for (int c = 0; c < channels; c++)
            {
                float* p = group + c * 6;
                // Samples 2j and 2j + 1 in the halves of one vector, their planes in lanes 0-5 and 8-13.
                var a = Vector512.Create(Vector256.Load(p), Vector256.Load(p + sampleStride));
                var b = Vector512.Create(Vector256.Load(p + 2 * sampleStride), Vector256.Load(p + 3 * sampleStride));
                var e = Vector512.Create(Vector256.Load(p + 4 * sampleStride), Vector256.Load(p + 5 * sampleStride));
                var last = c < unmasked ? Vector256.Load(p + 7 * sampleStride) : Avx.MaskLoad(p + 7 * sampleStride, six);
                var d = Vector512.Create(Vector256.Load(p + 6 * sampleStride), last);
                float* o = row + c * ld;
                Vector512.Store(Avx512F.PermuteVar16x32x2(a, first, b), o);
                Vector512.Store(Avx512F.PermuteVar16x32x2(b, second, e), o + 16);
                Vector512.Store(Avx512F.PermuteVar16x32x2(e, third, d), o + 32);
            }
        }
    }

    /// <summary>
    /// <see cref="MoveChunk(float*, long, int, int, int, float*, long, bool)"/> into the tensor for planes of 6 values and
    /// a multiple of 8 samples: each channel's 48 floats (three loads) give the 8 planes through permutations, stored as
    /// 8-float vectors whose last 2 lanes land on the sample's next plane, which the next channel then overwrites; the
    /// last channel's stores are masked (1.34 -> 0.62 ns a plane in a harness).
    /// </summary>
    private static void SixesToSamples(float* samples, long sampleStride, int channels, int nb, float* chunk, long ld)
    {
        // Plane j of the 8 starts at float 6j of the three vectors: lanes 6j mod 16 on of vector 6j / 16 (and the next).
        var iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        Vector512<int> one = iota + Vector512.Create(6), two = iota + Vector512.Create(12), three = iota + Vector512.Create(2);
        Vector512<int> four = iota + Vector512.Create(8), five = iota + Vector512.Create(14), sixth = iota + Vector512.Create(4);
        Vector512<int> seven = iota + Vector512.Create(10);
        var six = SixLanes();
        for (int i = 0; i < nb; i += 8)
        {
            float* group = samples + i * sampleStride, row = chunk + (long)i * 6;
            for (int c = 0; c < channels; c++)
            {
                float* q = row + c * ld;
                var a = Vector512.Load(q);
                var b = Vector512.Load(q + 16);
                var e = Vector512.Load(q + 32);
                float* p = group + c * 6;
                bool masked = c == channels - 1;
                Put(p, a.GetLower(), masked, six);
                Put(p + sampleStride, Avx512F.PermuteVar16x32(a, one).GetLower(), masked, six);
                Put(p + 2 * sampleStride, Avx512F.PermuteVar16x32x2(a, two, b).GetLower(), masked, six);
                Put(p + 3 * sampleStride, Avx512F.PermuteVar16x32(b, three).GetLower(), masked, six);
                Put(p + 4 * sampleStride, Avx512F.PermuteVar16x32(b, four).GetLower(), masked, six);
                Put(p + 5 * sampleStride, Avx512F.PermuteVar16x32x2(b, five, e).GetLower(), masked, six);
                Put(p + 6 * sampleStride, Avx512F.PermuteVar16x32(e, sixth).GetLower(), masked, six);
                Put(p + 7 * sampleStride, Avx512F.PermuteVar16x32(e, seven).GetLower(), masked, six);
            }
        }
    }

    /// <summary>A plane of 6 values from lanes 0-5: a whole 8-float store, or only those lanes when <paramref name="masked"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* p, Vector256<float> v, bool masked, Vector256<float> six)
    {
        if (masked) Avx512F.VL.MaskStore(p, six, v);
        else Vector256.Store(v, p);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> SixLanes() => Vector256.Create(-1, -1, -1, -1, -1, -1, 0, 0).AsSingle();

    /// <summary>First and end output column q whose input column q*stride + offset lies inside [0, width).</summary>
    internal static (int Low, int High) ValidRange(int offset, int stride, int width, int outWidth)
    {
        int low = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
        int high = offset > width - 1 ? 0 : Math.Min(outWidth, (width - 1 - offset) / stride + 1);
        low = Math.Min(low, outWidth);
        return (low, Math.Max(low, high));
    }

    /// <summary>
    /// Unrolls group g of samples [n0, n0 + nb) into columns [C/G*R*S, nb*PQ] with row stride ld
    /// (at least nb*PQ + Slack): row (c, r, s), column (i, p, q) holds
    /// x[n0 + i, g*C/G + c, p*sh - ph + r*dh, q*sw - pw + s*dw], zero outside the input.
    /// </summary>
    private static void Im2Col(ref Job job, int n0, int nb, int g, float* cols, int ld, float* padded)
    {
        ref readonly Conv2dParams p = ref job.P;
        if (job.Direct)
        {
            // 1x1, stride 1, no padding: each row is the input plane itself.
            int plane = job.PQ;
            if (!job.ChannelMajor)
            {
                MoveChunk(job.X + ((long)n0 * p.C + g * job.Cg) * job.HW, (long)p.C * job.HW, job.Cg, plane, nb, cols, ld, toSamples: false);
                return;
            }
            if (plane < SmallPlane && Avx512F.IsSupported)
            {
                // As in MoveChunk: small planes copied inline.
                var tail = FirstLanes(plane % 16);
                for (int c = 0; c < job.Cg; c++)
                {
                    float* row = cols + (long)c * ld;
                    for (int i = 0; i < nb; i++) CopySmall(row + i * plane, InputPlane(ref job, n0 + i, g * job.Cg + c), plane, tail);
                }
                return;
            }
            for (int c = 0; c < job.Cg; c++)
            {
                for (int i = 0; i < nb; i++)
                    Copy(cols + (long)c * ld + i * plane, InputPlane(ref job, n0 + i, g * job.Cg + c), plane);
            }
            return;
        }
        if (p.StrideW != 1)
        {
            Im2ColStrided(ref job, n0, nb, g, cols, ld);
            return;
        }
        // Unit stride along W: copy each input plane once into a zero-bordered [H + 2ph, W + 2pw] buffer,
        // after which every output row of every (r, s) row is a plain copy with no bounds checks. The
        // copies run whole vectors past the row's end; the overrun lands on positions written later
        // (the next output row, the next sample's segment) or in the Slack at the end of the row.
        int outH = p.P, outW = p.Q;
        int wp = p.W + 2 * p.PadW, hp = p.H + 2 * p.PadH;
        new Span<float>(padded, hp * wp).Clear();
        int pq = outH * outW;
        int groups = (pq + 15) / 16;
        // Small planes (MNIST's 6 x 6, 3 x 6, 1 x 6): each 16 outputs of an (r, s) row come from one 32-float window
        // of the padded plane through a fixed permutation, instead of one vector copy per 6-wide output row.
        if (Avx512F.IsSupported && outW < 16 && groups <= MaxPermuteGroups)
        {
            int* starts = stackalloc int[groups];
            var indices = stackalloc Vector512<int>[groups];
            if (PermuteTable(outW, pq, p.StrideH * wp, starts, indices))
            {
                Im2ColPermuted(ref job, n0, nb, g, cols, ld, padded, wp, starts, indices, groups);
                return;
            }
        }
        for (int i = 0; i < nb; i++)
        {
            for (int c = 0; c < job.Cg; c++)
            {
                float* plane = InputPlane(ref job, n0 + i, g * job.Cg + c);
                for (int ih = 0; ih < p.H; ih++) Copy(padded + (ih + p.PadH) * wp + p.PadW, plane + ih * p.W, p.W);
                for (int r = 0; r < p.R; r++)
                {
                    for (int s = 0; s < p.S; s++)
                    {
                        float* dst = cols + (long)((c * p.R + r) * p.S + s) * ld + (long)i * job.PQ;
                        float* src = padded + r * p.DilationH * wp + s * p.DilationW;
                        for (int oh = 0; oh < outH; oh++) CopyWhole(dst + oh * outW, src + oh * p.StrideH * wp, outW);
                    }
                }
            }
        }
    }

    // At most this many 16-output groups per plane take the permuted im2col (planes up to 256 outputs).
    private const int MaxPermuteGroups = 16;

    /// <summary>
    /// For each group of 16 outputs j = 16 g .. 16 g + 15 of a plane with rows of outW: the first output row it touches
    /// and the offsets (relative to that row's window start, rowStride floats per output row) of its inputs. False when a
    /// group spans more than one 32-float window.
    /// </summary>
    private static bool PermuteTable(int outW, int pq, int rowStride, int* starts, Vector512<int>* indices)
    {
        int* lanes = stackalloc int[16];
        for (int g = 0, j0 = 0; j0 < pq; g++, j0 += 16)
        {
            int first = j0 / outW;
            starts[g] = first;
            for (int t = 0; t < 16; t++)
            {
                // Lanes past the plane's end repeat its last output; their values land in the slack and are overwritten.
                int j = Math.Min(j0 + t, pq - 1);
                int offset = (j / outW - first) * rowStride + j % outW;
                if (offset >= 32) return false;
                lanes[t] = offset;
            }
            indices[g] = Vector512.Load(lanes);
        }
        return true;
    }

    /// <summary>
    /// The unit-stride <see cref="Im2Col"/> for small planes: after copying a plane into the zero-bordered buffer, each
    /// (r, s) row of each sample is written 16 outputs at a time from two loads and one two-source permutation.
    /// Stores run up to 15 floats past the plane's outputs (into the next sample's segment, written later, or the
    /// row's slack), and loads up to 32 floats past a window start (into the padded buffer's slack).
    /// </summary>
    private static void Im2ColPermuted(ref Job job, int n0, int nb, int g, float* cols, int ld, float* padded, int wp,
        int* starts, Vector512<int>* indices, int groups)
    {
        ref readonly Conv2dParams p = ref job.P;
        int rowStride = p.StrideH * wp;
        for (int i = 0; i < nb; i++)
        {
            for (int c = 0; c < job.Cg; c++)
            {
                float* plane = InputPlane(ref job, n0 + i, g * job.Cg + c);
                for (int ih = 0; ih < p.H; ih++) Copy(padded + (ih + p.PadH) * wp + p.PadW, plane + ih * p.W, p.W);
                for (int r = 0; r < p.R; r++)
                {
                    for (int s = 0; s < p.S; s++)
                    {
                        float* dst = cols + (long)((c * p.R + r) * p.S + s) * ld + (long)i * job.PQ;
                        float* src = padded + r * p.DilationH * wp + s * p.DilationW;
                        for (int q = 0; q < groups; q++)
                        {
                            float* window = src + starts[q] * rowStride;
                            var lo = Vector512.Load(window);
                            var hi = Vector512.Load(window + 16);
                            Vector512.Store(Avx512F.PermuteVar16x32x2(lo, indices[q], hi), dst + q * 16);
                        }
                    }
                }
            }
        }
    }

    /// <summary><see cref="Im2Col"/> for strides above 1 along W: bounds-checked gathers.</summary>
    private static void Im2ColStrided(ref Job job, int n0, int nb, int g, float* cols, int ld)
    {
        ref readonly Conv2dParams p = ref job.P;
        int outH = p.P, outW = p.Q, sw = p.StrideW;
        for (int c = 0; c < job.Cg; c++)
        {
            for (int r = 0; r < p.R; r++)
            {
                for (int s = 0; s < p.S; s++)
                {
                    float* row = cols + (long)((c * p.R + r) * p.S + s) * ld;
                    int iw0 = s * p.DilationW - p.PadW;
                    var (qLow, qHigh) = ValidRange(iw0, sw, p.W, outW);
                    for (int i = 0; i < nb; i++)
                    {
                        float* plane = InputPlane(ref job, n0 + i, g * job.Cg + c);
                        float* dst = row + (long)i * job.PQ;
                        for (int oh = 0; oh < outH; oh++, dst += outW)
                        {
                            int ih = oh * p.StrideH - p.PadH + r * p.DilationH;
                            if ((uint)ih >= (uint)p.H)
                            {
                                new Span<float>(dst, outW).Clear();
                                continue;
                            }
                            float* src = plane + ih * p.W + iw0;
                            for (int q = 0; q < qLow; q++) dst[q] = 0f;
                            if (sw == 1)
                            {
                                Copy(dst + qLow, src + qLow, qHigh - qLow);
                            }
                            else if (sw == 2)
                            {
                                GatherStride2(dst + qLow, src + 2 * qLow, qHigh - qLow);
                            }
                            else
                            {
                                for (int q = qLow; q < qHigh; q++) dst[q] = src[q * sw];
                            }
                            for (int q = qHigh; q < outW; q++) dst[q] = 0f;
                        }
                    }
                }
            }
        }
    }

    /// <summary>The adjoint of <see cref="Im2Col"/>: adds every column entry back onto the input position it came from.</summary>
    private static void Col2Im(ref Job job, int n0, int nb, int g, float* cols)
    {
        ref readonly Conv2dParams p = ref job.P;
        int ld = nb * job.PQ;
        int outH = p.P, outW = p.Q, sw = p.StrideW;
        for (int c = 0; c < job.Cg; c++)
        {
            for (int r = 0; r < p.R; r++)
            {
                for (int s = 0; s < p.S; s++)
                {
                    float* row = cols + (long)((c * p.R + r) * p.S + s) * ld;
                    int iw0 = s * p.DilationW - p.PadW;
                    var (qLow, qHigh) = ValidRange(iw0, sw, p.W, outW);
                    for (int i = 0; i < nb; i++)
                    {
                        float* plane = job.X + ((long)(n0 + i) * p.C + g * job.Cg + c) * job.HW;
                        float* src = row + (long)i * job.PQ;
                        for (int oh = 0; oh < outH; oh++, src += outW)
                        {
                            int ih = oh * p.StrideH - p.PadH + r * p.DilationH;
                            if ((uint)ih >= (uint)p.H) continue;
                            float* dst = plane + ih * p.W + iw0;
                            if (sw == 1)
                            {
                                Add(dst + qLow, src + qLow, qHigh - qLow);
                            }
                            else
                            {
                                for (int q = qLow; q < qHigh; q++) dst[q * sw] += src[q];
                            }
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// dst[i] = src[i] for i in [0, n) (buffers not overlapping), inline: the rows copied here are often a few floats
    /// long (6-wide MNIST maps), where a call to memmove costs more than the copy. The last piece of a row is one vector
    /// that overlaps the previous one, so no length runs a scalar loop above 4.
    /// </summary>
    private static void Copy(float* dst, float* src, int n)
    {
        if (n < 16 && Avx512F.IsSupported)
        {
            // Short rows (MNIST's 1 x 6 planes gathered into GEMM columns and back): one masked load and store.
            var mask = FirstLanes(n);
            Avx512F.MaskStore(dst, mask, Avx512F.MaskLoad(src, mask, Vector512<float>.Zero));
            return;
        }
        if (n >= 16 && Vector512.IsHardwareAccelerated)
        {
            int i = 0;
            for (; i <= n - 16; i += 16) Vector512.Store(Vector512.Load(src + i), dst + i);
            if (i < n) Vector512.Store(Vector512.Load(src + n - 16), dst + n - 16);
            return;
        }
        if (n >= 8 && Vector256.IsHardwareAccelerated)
        {
            int i = 0;
            for (; i <= n - 8; i += 8) Vector256.Store(Vector256.Load(src + i), dst + i);
            if (i < n) Vector256.Store(Vector256.Load(src + n - 8), dst + n - 8);
            return;
        }
        if (n >= 4 && Vector128.IsHardwareAccelerated)
        {
            int i = 0;
            for (; i <= n - 4; i += 4) Vector128.Store(Vector128.Load(src + i), dst + i);
            if (i < n) Vector128.Store(Vector128.Load(src + n - 4), dst + n - 4);
            return;
        }
        for (int i = 0; i < n; i++) dst[i] = src[i];
    }

    /// <summary>
    /// dst[i] = src[i] for i in [0, n) (a small plane), touching nothing else: whole vectors, then the lanes of
    /// <paramref name="tail"/> (the first n mod 16).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopySmall(float* dst, float* src, int n, Vector512<float> tail)
    {
        int i = 0;
        for (; i + 16 <= n; i += 16) Vector512.Store(Vector512.Load(src + i), dst + i);
        if (i < n) Avx512F.MaskStore(dst + i, tail, Avx512F.MaskLoad(src + i, tail, Vector512<float>.Zero));
    }

    /// <summary>The first <paramref name="count"/> lanes (none for 0 or less, all 16 from 16 on).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> FirstLanes(int count) =>
        Vector512.LessThan(Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), Vector512.Create(count)).AsSingle();

    /// <summary>
    /// dst[i] = src[i] for i in [0, n), in whole vectors: may read and write up to a vector (16 floats)
    /// past n, so both buffers need that much slack.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyWhole(float* dst, float* src, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i < n; i += Vector512<float>.Count) Vector512.Store(Vector512.Load(src + i), dst + i);
            return;
        }
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i < n; i += Vector256<float>.Count) Vector256.Store(Vector256.Load(src + i), dst + i);
            return;
        }
        for (; i < n; i++) dst[i] = src[i];
    }

    /// <summary>dst[i] = src[2 i] for i in [0, n); reads nothing past src[2 (n - 1)].</summary>
    internal static void GatherStride2(float* dst, float* src, int n)
    {
        int i = 0;
        if (Avx512F.IsSupported)
        {
            var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            // i + 16 < n keeps the second load's last element, src[2 i + 31], before src[2 (n - 1)].
            for (; i + Vector512<float>.Count < n; i += Vector512<float>.Count)
            {
                var lo = Vector512.Load(src + 2 * i);
                var hi = Vector512.Load(src + 2 * i + Vector512<float>.Count);
                Vector512.Store(Avx512F.PermuteVar16x32x2(lo, even, hi), dst + i);
            }
        }
        for (; i < n; i++) dst[i] = src[2 * i];
    }

    /// <summary>dst[i] += src[i] for i in [0, n).</summary>
    internal static void Add(float* dst, float* src, long n)
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
                Vector512.Store(Vector512.Load(dst + i) + Vector512.Load(src + i), dst + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
                Vector256.Store(Vector256.Load(dst + i) + Vector256.Load(src + i), dst + i);
        }
        for (; i < n; i++) dst[i] += src[i];
    }

    /// <summary>dst[i] += value for i in [0, n).</summary>
    private static void AddScalar(float* dst, float value, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var v = Vector512.Create(value);
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
                Vector512.Store(Vector512.Load(dst + i) + v, dst + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var v = Vector256.Create(value);
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
                Vector256.Store(Vector256.Load(dst + i) + v, dst + i);
        }
        for (; i < n; i++) dst[i] += value;
    }
}
