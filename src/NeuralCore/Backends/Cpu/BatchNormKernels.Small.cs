using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

// Batch norm over small planes (HW below SmallPlane: CP-ResNet's 6 x 6, 3 x 6 and 1 x 6 maps), sample-major.
// A channel's plane is then a few values, so walking channel by channel spends its time on loop overhead; instead
// every sample's [C * HW] block is one contiguous row, the per-position sums run over the samples 16 lanes at a time
// (float over blocks of 16 samples, then double: down the samples for the forward's statistics, row by row for the
// backward's, whose inputs come from memory), and the per-channel results come from adding up each channel's HW
// positions in double. Each position is summed in the same order whatever the thread count and the walk.
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
        // Per position j in [0, C * HW): the channel's shift or mean, and the coefficients of the output pass.
        public float* M, A, B, O;
        public double* S1, S2;
        // The backward's float sums per block of 16 samples: [block][chunk of 16 positions][s1, s2][16 lanes].
        public float* BlockSums;
        public int Parts;
    }

    /// <summary>Grow-only per-thread scratch: expanded per-position coefficients (floats) and sums (doubles).</summary>
    private sealed class SmallScratch
    {
        [ThreadStatic] private static SmallScratch? current;

        private float[] _floats = [], _blocks = [];
        private double[] _doubles = [];

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
        int width = c * hw;
        var scratch = SmallScratch.Current;
        float* f = scratch.Floats(3 * width);
        double* d = scratch.Doubles(2 * width);
        var job = new SmallJob
        {
            N = n, Width = width, X = x, Y = y, M = f, A = f + width, O = f + 2 * width, S1 = d, S2 = d + width, Relu = relu,
            Residual = residual, ResidualRelu = residualRelu,
        };
        // Shift each channel by its first value (of sample 0), which keeps the one-pass variance accurate.
        for (int ch = 0; ch < c; ch++) new Span<float>(f + ch * hw, hw).Fill(x[ch * hw]);
        Sums(ref job);
        long count = (long)n * hw;
        for (int ch = 0; ch < c; ch++)
        {
            double shift = x[ch * hw], sum = 0, sumSquares = 0;
            for (int i = 0; i < hw; i++)
            {
                sum += job.S1[ch * hw + i];
                sumSquares += job.S2[ch * hw + i];
            }
            double centred = sum / count;
            double variance = Math.Max(sumSquares / count - centred * centred, 0);
            double m = shift + centred;
            double inv = 1 / Math.Sqrt(variance + eps);
            mean[ch] = (float)m;
            invStd[ch] = (float)inv;
            if (runningMean != null) runningMean[ch] = (float)((1 - (double)momentum) * runningMean[ch] + momentum * m);
            if (runningVar != null)
                runningVar[ch] = (float)((1 - (double)momentum) * runningVar[ch] + momentum * (variance * count / (count - 1)));
            float scale = (float)(gamma[ch] * inv);
            float offset = (float)(beta[ch] - m * gamma[ch] * inv);
            new Span<float>(job.A + ch * hw, hw).Fill(scale);
            new Span<float>(job.O + ch * hw, hw).Fill(offset);
        }
        Apply(ref job);
    }

    private static void BackwardSmall(float* x, float* dy, float* gamma, float* mean, float* invStd, float* dx,
        float* dgamma, float* dbeta, int n, int c, int hw, float* reluOutput)
    {
        int width = c * hw;
        var scratch = SmallScratch.Current;
        float* f = scratch.Floats(4 * width);
        double* d = scratch.Doubles(2 * width);
        var job = new SmallJob
        {
            N = n, Width = width, Gradient = true, X = x, Dy = dy, Y = dx, ReluOutput = reluOutput,
            M = f, A = f + width, B = f + 2 * width, O = f + 3 * width, S1 = d, S2 = d + width,
        };
        for (int ch = 0; ch < c; ch++) new Span<float>(job.M + ch * hw, hw).Fill(mean[ch]);
        Sums(ref job);
        long count = (long)n * hw;
        for (int ch = 0; ch < c; ch++)
        {
            double sumDy = 0, sumDyCentred = 0;
            for (int i = 0; i < hw; i++)
            {
                sumDy += job.S1[ch * hw + i];
                sumDyCentred += job.S2[ch * hw + i];
            }
            // As BackwardChannel: dx = gamma * invstd / M * (M * dy - sum(dy) - xhat * sum(dy * xhat)).
            double inv = invStd[ch];
            double dg = sumDyCentred * inv;
            dbeta[ch] = (float)sumDy;
            dgamma[ch] = (float)dg;
            double a = gamma[ch] * inv;
            new Span<float>(job.A + ch * hw, hw).Fill((float)a);
            new Span<float>(job.B + ch * hw, hw).Fill((float)(-a * inv * dg / count));
            new Span<float>(job.O + ch * hw, hw).Fill((float)(-a * sumDy / count));
        }
        Apply(ref job);
    }

    /// <summary>S1[j], S2[j] over the samples: sum of (x - M) and (x - M)^2, or with Gradient sum of dy and dy * (x - M).</summary>
    private static void Sums(ref SmallJob job)
    {
        int chunks = (job.Width + 15) / 16;
        long elements = (long)job.N * job.Width;
        if (job.Gradient && Avx512F.IsSupported)
        {
            // The backward's parts take blocks of 16 samples, the samples the output pass then gives each part (its
            // inputs are still in that core's cache), and keep each block's float sums; they are added up here in
            // block order, as one walk would.
            int blocks = (job.N + FloatBlock - 1) / FloatBlock;
            job.Parts = (int)Math.Clamp(elements / MinElementsPerPart, 1, Math.Min(CpuThreading.Threads, blocks));
            job.BlockSums = SmallScratch.Current.Blocks((long)blocks * chunks * 32);
            // SAFETY: job lives on this stack frame and ForParts returns only after every part is done.
            fixed (SmallJob* state = &job) CpuThreading.ForParts(job.Parts, &SumsRowsPart, state);
            AddBlocks(ref job, blocks, chunks);
            return;
        }
        job.Parts = (int)Math.Clamp(elements / MinElementsPerPart, 1, Math.Min(CpuThreading.Threads, chunks));
        // SAFETY: job lives on this stack frame and ForParts returns only after every part is done.
        fixed (SmallJob* state = &job) CpuThreading.ForParts(job.Parts, &SumsPart, state);
    }

    private static void SumsPart(void* state, int part)
    {
        ref SmallJob job = ref *(SmallJob*)state;
        int chunks = (job.Width + 15) / 16;
        int first = (int)((long)part * chunks / job.Parts), end = (int)((long)(part + 1) * chunks / job.Parts);
        if (first >= end) return;
        if (!Avx512F.IsSupported)
        {
            for (int j = first * 16; j < Math.Min(end * 16, job.Width); j++) SumsScalar(ref job, j);
            return;
        }
        for (int chunk = first; chunk < end; chunk++)
        {
            int j0 = chunk * 16;
            SumsVector(ref job, j0, Math.Min(16, job.Width - j0));
        }
    }

    /// <summary>
    /// The backward's float sums of blocks of 16 samples [part's share), the samples walked row by row: each sample's row
    /// is read front to back (a stream the prefetcher follows; the backward's x and ReLU output were saved in the forward
    /// pass and come from memory, where a walk down the samples per chunk of 16 positions ran at a third of the speed),
    /// and added to its block's sums [chunk][s1, s2][16 lanes] in <see cref="SmallJob.BlockSums"/>, which stay in L1
    /// while the block is summed. The forward's x was just written by the convolution, in cache, where the walk down the
    /// samples (<see cref="SumsVector"/>, its sums in registers) is faster (76 x 6 at batch 256 in a training step, one
    /// thread: backward sums 118-157 -> 88-98 µs a batch norm, forward 51-55 -> 66-69 µs).
    /// </summary>
    private static void SumsRowsPart(void* state, int part)
    {
        ref SmallJob job = ref *(SmallJob*)state;
        int blocks = (job.N + FloatBlock - 1) / FloatBlock;
        int first = (int)((long)part * blocks / job.Parts), end = (int)((long)(part + 1) * blocks / job.Parts);
        int width = job.Width, chunks = (width + 15) / 16, whole = width / 16;
        var mask = ConvKernels.FirstLanes(width - whole * 16);
        for (int block = first; block < end; block++)
        {
            float* sums = job.BlockSums + (long)block * chunks * 32;
            new Span<float>(sums, chunks * 32).Clear();
            int n1 = Math.Min((block + 1) * FloatBlock, job.N);
            for (int s = block * FloatBlock; s < n1; s++)
            {
                long at = (long)s * width;
                float* x = job.X + at;
                float* dy = job.Dy + at;
                float* relu = job.ReluOutput == null ? null : job.ReluOutput + at;
                int i = 0;
                for (; i < whole; i++) SumsStep(x, dy, relu, job.M, sums, i, Vector512<float>.AllBitsSet, masked: false);
                if (i < chunks) SumsStep(x, dy, relu, job.M, sums, i, mask, masked: true);
            }
        }
    }

    /// <summary>S1, S2 = the blocks' float sums added in double, block after block from zero: <see cref="SumsScalar"/>'s order.</summary>
    private static void AddBlocks(ref SmallJob job, int blocks, int chunks)
    {
        int width = job.Width;
        var mask = ConvKernels.FirstLanes(width - (chunks - 1) * 16);
        var (maskLo, maskHi) = Vector512.Widen(mask.AsInt32());
        for (int i = 0; i < chunks; i++)
        {
            Vector512<double> s1Lo = default, s1Hi = default, s2Lo = default, s2Hi = default;
            for (int block = 0; block < blocks; block++)
            {
                float* sums = job.BlockSums + ((long)block * chunks + i) * 32;
                var (lo1, hi1) = Vector512.Widen(Vector512.Load(sums));
                var (lo2, hi2) = Vector512.Widen(Vector512.Load(sums + 16));
                s1Lo += lo1; s1Hi += hi1; s2Lo += lo2; s2Hi += hi2;
            }
            int j = i * 16;
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
    /// The forward's statistics of positions [j0, j0 + count) at once, count at most 16, walking down the samples: a width
    /// that is not a multiple of 16 (the pruned model's 76 x 6 = 456) ends in a masked chunk, each lane summed in
    /// <see cref="SumsScalar"/>'s order, instead of a scalar walk down the samples per position, which made 76 channels
    /// slower than 128.
    /// </summary>
    private static void SumsVector(ref SmallJob job, int j0, int count)
    {
        var mask = ConvKernels.FirstLanes(count);
        var m = Avx512F.MaskLoad(job.M + j0, mask, Vector512<float>.Zero);
        Vector512<double> s1Lo = default, s1Hi = default, s2Lo = default, s2Hi = default;
        for (int n0 = 0; n0 < job.N; n0 += FloatBlock)
        {
            int n1 = Math.Min(n0 + FloatBlock, job.N);
            Vector512<float> s1 = default, s2 = default;
            for (int s = n0; s < n1; s++)
            {
                long at = (long)s * job.Width + j0;
                var centred = Avx512F.MaskLoad(job.X + at, mask, Vector512<float>.Zero) - m;
                s1 += centred;
                s2 = Vector512.FusedMultiplyAdd(centred, centred, s2);
            }
            var (lo1, hi1) = Vector512.Widen(s1);
            var (lo2, hi2) = Vector512.Widen(s2);
            s1Lo += lo1; s1Hi += hi1; s2Lo += lo2; s2Hi += hi2;
        }
        var (maskLo, maskHi) = Vector512.Widen(mask.AsInt32());
        Avx512F.MaskStore(job.S1 + j0, maskLo.AsDouble(), s1Lo);
        Avx512F.MaskStore(job.S1 + j0 + 8, maskHi.AsDouble(), s1Hi);
        Avx512F.MaskStore(job.S2 + j0, maskLo.AsDouble(), s2Lo);
        Avx512F.MaskStore(job.S2 + j0 + 8, maskHi.AsDouble(), s2Hi);
    }

    /// <summary>One position of <see cref="SumsVector"/>, in the same order (float blocks of samples, then double).</summary>
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
        ref SmallJob job = ref *(SmallJob*)state;
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
        for (; j < width; j++)
        {
            float v = MathF.FusedMultiplyAdd(x[j], job.A[j], job.O[j]) + r[j];
            y[j] = job.ResidualRelu ? Relu(v) : v;
        }
    }
}
