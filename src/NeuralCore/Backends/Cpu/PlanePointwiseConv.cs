using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// A 1x1, stride-1 convolution of sample-major tensors whose planes fill two or three vectors at least three quarters
/// (24-32 or 36-48 positions: MNIST's 6 x 6 maps), computed where the planes lie: per sample and group of 8 output
/// channels, each input channel's plane is two or three vector loads (the last one masked to the plane), and each
/// load feeds a multiply-add per output channel of the group, its weight broadcast inside the instruction (up to 24
/// accumulators). The training path's implicit GEMM copied each chunk of samples channel-major, packed it and copied
/// the output back: at 19 channels those moves were about 2.5 times its multiply-adds (harness, one thread, 256
/// samples on 6 x 6: 19 -> 19 114 -> 85 µs, 32 -> 32 254 -> 234 µs).
/// </summary>
/// <remarks>
/// Each output is summed from zero, one fused multiply-add per input channel in order, then the bias added: the GEMM
/// path's order, except for a chunk's last columns past a multiple of 8, which its small-problem path sums as dot
/// products with four partial sums (those outputs round differently). The stride-1 backward-data pass, the forward of
/// the transposed kernel, runs here too. Work is split over samples, so results do not depend on the thread count.
/// The inference plans run a 1x1 on small maps here too (<see cref="ForwardChannelMajor"/>: one sample's, or a batch's
/// for at most 31 output channels), on channel-major tensors, with bias, residual, activation and a pool of whole rows
/// applied before the planes leave the registers. Without AVX-512 only such a 1x1 with a 2 x 1 pool runs here, on
/// 256-bit vectors of one row each (rows of 6 to 8 positions): per pooling window and group of up to 6 output
/// channels, each input channel's two rows feed 12 accumulators (<see cref="Window256{TChannels}"/>).
/// </remarks>
internal static unsafe class PlanePointwiseConv
{
    private const int Lanes = 16;
    private const int Group = 8;
    // 256 bits: a row of the plane a vector, a group of at most 6 output channels (two rows: 12 accumulators).
    private const int RowLanes = 8;
    private const int Group256 = 6;
    // Below this many multiply-adds per part, waking a worker costs more than it saves.
    private const long MinMacsPerPart = 1 << 18;

    /// <summary>Whether the convolutions use it (tests turn it off to compare it with the GEMM path).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>
    /// A 1x1, stride-1, unpadded, ungrouped convolution over planes of 24-32 or 36-48 positions (two or three vectors,
    /// at least three quarters of their lanes used), where the 512-bit kernels run.
    /// </summary>
    internal static bool CanRun(in Conv2dParams p) => Enabled && Gemm.Runs512 && IsSmallPointwise(p);

    /// <summary>A 1x1, stride-1, unpadded, ungrouped convolution over planes of 24-32 or 36-48 positions.</summary>
    private static bool IsSmallPointwise(in Conv2dParams p)
    {
        int plane = p.H * p.W, vectors = (plane + Lanes - 1) / Lanes;
        return p.R == 1 && p.S == 1 && p.StrideH == 1 && p.StrideW == 1 && p.PadH == 0 && p.PadW == 0 && p.Groups == 1
            && vectors is 2 or 3 && 4 * plane >= 3 * Lanes * vectors;
    }

    private struct Job
    {
        public float* X, W, Bias, Y;
        public int C, K, Plane, Vectors, Parts, N;
        // Floats between one channel's plane and the next of the same sample: the plane (sample-major), or N planes
        // (channel-major); and between a sample's first plane and the next sample's.
        public long XChannel, YChannel, XSample, YSample;
        // The fused epilogue (ForwardChannelMajor): the residual, channel-major [K, N, plane], the activation kind
        // (0 none, 1 ReLU, 2 Hardswish; at 512 bits a type, FusedOutput's TKind), and with a pool its window rows and,
        // per output vector and window row, where each lane's value lies among the plane's vectors (PoolIndices).
        public float* Residual;
        public int Kind, PoolRows, OutPlane, OutVectors;
        public Vector512<int>* PoolIndices;
        // 256 bits (Pooled256): the rows' width, the pooling windows per plane, the groups of output channels, and the
        // lanes of a row.
        public int Width, Windows, Groups;
        public Vector256<float> Columns;
    }

    /// <summary>y [N, K, plane] = w [K, C] * x [N, C, plane] (+ bias [K]) per sample.</summary>
    internal static void Forward(float* x, float* w, float* bias, float* y, in Conv2dParams p)
    {
        var job = NewJob(x, w, bias, y, p);
        job.XChannel = job.YChannel = job.Plane;
        job.XSample = (long)p.C * job.Plane;
        job.YSample = (long)p.K * job.Plane;
        long macs = (long)p.N * p.K * p.C * job.Plane;
        job.Parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, Math.Min(CpuThreading.Threads, p.N));
        // SAFETY: job outlives ForParts, which returns when every part is done.
        if (job.Parts == 1) RunPart<PlainOutput>(&job, 0);
        else CpuThreading.ForParts(job.Parts, &RunPart<PlainOutput>, &job);
    }

    /// <summary>
    /// True when <see cref="ForwardChannelMajor"/> runs this convolution followed by <paramref name="pool"/> (or none):
    /// <see cref="CanRun"/>, and a max pool whose windows are whole rows of the plane, one column wide, neither
    /// overlapping nor padded (CP-ResNet's 2 x 1), so that its outputs are gathered from the plane's vectors in registers.
    /// </summary>
    /// <remarks>
    /// Where only the 256-bit kernels run: the same geometries with a 2 x 1 pool on rows of 6 to 8 positions (one row a
    /// vector, at least three quarters of its lanes used).
    /// </remarks>
    internal static bool CanRunPooled(in Conv2dParams p, Pool2dParams? pool) =>
        CanRun(p) ? pool is not { } q || PoolsWholeRows(p, q)
        : Enabled && Gemm.Runs256 && IsSmallPointwise(p) && pool is { KernelH: 2 } r && PoolsWholeRows(p, r) && p.W is >= 6 and <= RowLanes;

    private static bool PoolsWholeRows(in Conv2dParams p, in Pool2dParams q) =>
        q.KernelW == 1 && q.StrideW == 1 && q.PadW == 0 && q.PadH == 0 && q.KernelH == q.StrideH && !q.CeilMode && q.H == p.H && q.W == p.W
        && q.P >= 1;

    /// <summary>
    /// A fused pool's gather, made once (an inference plan's step): per output vector (at most three: 48 positions) and
    /// window row u, where each lane's value lies among the plane's vectors. Output position o (row o / Q, column o % Q)
    /// takes plane position (row * KernelH + u) * W + column in window row u; lanes past the output read position 0.
    /// </summary>
    internal sealed class PoolGather
    {
        private readonly int[] _indices;

        internal PoolGather(in Conv2dParams p, in Pool2dParams pool)
        {
            if (!CanRunPooled(p, pool)) throw new ArgumentException("PlanePointwiseConv.PoolGather: a pool CanRunPooled does not admit.", nameof(pool));
            Rows = pool.KernelH;
            Height = p.H;
            Width = p.W;
            OutPlane = pool.P * pool.Q;
            OutVectors = (OutPlane + Lanes - 1) / Lanes;
            // The 256-bit kernel takes each window's rows where they lie: no gather.
            Wide = Gemm.Runs512;
            _indices = GC.AllocateArray<int>(Wide ? OutVectors * Rows * Lanes : 0, pinned: true);
            if (!Wide) return;
            for (int v = 0; v < OutVectors; v++)
                for (int u = 0; u < Rows; u++)
                    for (int l = 0; l < Lanes; l++)
                    {
                        int o = v * Lanes + l;
                        _indices[(v * Rows + u) * Lanes + l] = o < OutPlane ? (o / pool.Q * Rows + u) * p.W + o % pool.Q : 0;
                    }
        }

        /// <summary>The window's rows (the pool's kernel height).</summary>
        internal int Rows { get; }

        /// <summary>Whether it was made for the 512-bit kernels (with the gather's indices), else for the 256-bit ones.</summary>
        internal bool Wide { get; }

        /// <summary>The unpooled plane's height and width, which the indices were made for.</summary>
        internal int Height { get; }

        /// <inheritdoc cref="Height"/>
        internal int Width { get; }

        /// <summary>Positions of a pooled plane.</summary>
        internal int OutPlane { get; }

        /// <summary>Vectors of a pooled plane.</summary>
        internal int OutVectors { get; }

        /// <summary>The gather's index vectors, [output vector][window row] (the array is pinned).</summary>
        internal Vector512<int>* Indices => (Vector512<int>*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_indices));
    }

    /// <summary>
    /// y = pool(act(conv2d(x, w) + bias + residual)) on channel-major tensors x [C, N, plane], residual [K, N, plane] and y
    /// [K, N, plane] (or the pooled planes), as the inference plans hold them; bias, residual and pool may be absent,
    /// <paramref name="kind"/> is 0 (no activation), 1 (ReLU) or 2 (Hardswish). Each plane is summed as
    /// <see cref="Forward"/> sums it, then act(sum + bias + residual) is taken in whole vectors and, with a pool, each
    /// window's maximum row by row, in the order and with the operations of <see cref="ImplicitGemmConv"/>'s fused
    /// epilogue and pool: the same bits, without the implicit GEMM's panels and unpooled block.
    /// </summary>
    internal static void ForwardChannelMajor(float* x, float* w, float* bias, float* y, in Conv2dParams p, float* residual, int kind,
        PoolGather? pool)
    {
        // The gather's indices and pooled size were made for one plane: another would read and write past its planes.
        if (pool is not null && (pool.Height != p.H || pool.Width != p.W))
            throw new ArgumentException($"PlanePointwiseConv.ForwardChannelMajor: the pool's gather was made for {pool.Height} x {pool.Width} planes, not {p.H} x {p.W}.", nameof(pool));
        if (pool is not null && pool.Wide != Gemm.Runs512)
            throw new ArgumentException($"PlanePointwiseConv.ForwardChannelMajor: the pool's gather was made for {(pool.Wide ? 512 : 256)}-bit kernels; make it again.", nameof(pool));
        if (!CanRun(p) && pool is not null && Gemm.Runs256 && IsSmallPointwise(p))
        {
            Pooled256(x, w, bias, y, p, residual, kind, pool);
            return;
        }
        if (!CanRun(p)) throw new ArgumentException("PlanePointwiseConv.ForwardChannelMajor: a geometry CanRun does not admit.", nameof(p));
        var job = NewJob(x, w, bias, y, p);
        job.Residual = residual;
        job.XChannel = (long)p.N * job.Plane;
        job.XSample = job.Plane;
        job.OutPlane = pool?.OutPlane ?? job.Plane;
        if (pool is not null)
        {
            job.PoolRows = pool.Rows;
            job.OutVectors = pool.OutVectors;
            job.PoolIndices = pool.Indices;
        }
        job.YChannel = (long)p.N * job.OutPlane;
        job.YSample = job.OutPlane;
        long macs = (long)p.N * p.K * p.C * job.Plane;
        job.Parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, Math.Min(CpuThreading.Threads, p.N));
        var run = FusedPart(kind, (bias != null ? HasBias : 0) | (residual != null ? HasResidual : 0) | (pool != null ? Pooled : 0));
        // SAFETY: job outlives ForParts, which returns when every part is done; the gather's array is pinned.
        if (job.Parts == 1) run(&job, 0);
        else CpuThreading.ForParts(job.Parts, run, &job);
        GC.KeepAlive(pool);
    }

    // The fused epilogue's parts, as the bits of FusedOutput's TParts.
    private const int HasBias = 1, HasResidual = 2, Pooled = 4;

    /// <summary>
    /// <see cref="RunPart{TOutput}"/> with the activation <paramref name="kind"/> and the epilogue's <paramref name="parts"/>
    /// as types, so that a block's epilogue tests nothing per channel.
    /// </summary>
    private static delegate*<void*, int, void> FusedPart(int kind, int parts) => kind switch
    {
        0 => FusedPart<Gemm.N0>(parts),
        1 => FusedPart<Gemm.N1>(parts),
        _ => FusedPart<Gemm.N2>(parts),
    };

    private static delegate*<void*, int, void> FusedPart<TKind>(int parts) where TKind : struct, Gemm.IConstant => parts switch
    {
        0 => &RunPart<FusedOutput<TKind, Gemm.N0>>,
        1 => &RunPart<FusedOutput<TKind, Gemm.N1>>,
        2 => &RunPart<FusedOutput<TKind, Gemm.N2>>,
        3 => &RunPart<FusedOutput<TKind, Gemm.N3>>,
        4 => &RunPart<FusedOutput<TKind, Gemm.N4>>,
        5 => &RunPart<FusedOutput<TKind, Gemm.N5>>,
        6 => &RunPart<FusedOutput<TKind, Gemm.N6>>,
        _ => &RunPart<FusedOutput<TKind, Gemm.N7>>,
    };

    private static Job NewJob(float* x, float* w, float* bias, float* y, in Conv2dParams p)
    {
        var job = new Job { X = x, W = w, Bias = bias, Y = y, N = p.N, C = p.C, K = p.K, Plane = p.H * p.W };
        job.Vectors = (job.Plane + Lanes - 1) / Lanes;
        return job;
    }

    private static void RunPart<TOutput>(void* state, int part) where TOutput : struct, IOutput
    {
        ref Job job = ref *(Job*)state;
        int first = (int)((long)part * job.N / job.Parts), end = (int)((long)(part + 1) * job.N / job.Parts);
        var last = ConvKernels.FirstLanes(job.Plane - (job.Vectors - 1) * Lanes);
        for (int n = first; n < end; n++)
        {
            float* x = job.X + n * job.XSample;
            float* y = job.Y + n * job.YSample;
            // The residual is channel-major, laid out as the unpooled output: sample n's planes start n planes in.
            float* residual = job.Residual == null ? null : job.Residual + (long)n * job.Plane;
            for (int k0 = 0; k0 < job.K; k0 += Group)
            {
                int count = Math.Min(Group, job.K - k0);
                if (job.Vectors == 3) Channels<TOutput, Gemm.N3>(ref job, x, y, residual, k0, count, last);
                else Channels<TOutput, Gemm.N2>(ref job, x, y, residual, k0, count, last);
            }
        }
    }

    /// <summary>One specialisation per channel count, so that a last group of fewer than 8 (19 = 8 + 8 + 3) does no multiply-adds for the channels it lacks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Channels<TOutput, TVectors>(ref Job job, float* x, float* y, float* residual, int k0, int count, Vector512<float> last)
        where TOutput : struct, IOutput where TVectors : struct, Gemm.IConstant
    {
        switch (count)
        {
            case 1: Block<TOutput, Gemm.N1, TVectors>(ref job, x, y, residual, k0, last); break;
            case 2: Block<TOutput, Gemm.N2, TVectors>(ref job, x, y, residual, k0, last); break;
            case 3: Block<TOutput, Gemm.N3, TVectors>(ref job, x, y, residual, k0, last); break;
            case 4: Block<TOutput, Gemm.N4, TVectors>(ref job, x, y, residual, k0, last); break;
            case 5: Block<TOutput, Gemm.N5, TVectors>(ref job, x, y, residual, k0, last); break;
            case 6: Block<TOutput, Gemm.N6, TVectors>(ref job, x, y, residual, k0, last); break;
            case 7: Block<TOutput, Gemm.N7, TVectors>(ref job, x, y, residual, k0, last); break;
            default: Block<TOutput, Gemm.N8, TVectors>(ref job, x, y, residual, k0, last); break;
        }
    }

    /// <summary>
    /// Output channels [k0, k0 + TChannels) of one sample: per input channel, its plane's TVectors loads (the last masked
    /// to the plane, so a sample's last plane reads nothing past it), each multiplied into every channel's accumulator.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Block<TOutput, TChannels, TVectors>(ref Job job, float* x, float* y, float* residual, int k0, Vector512<float> last)
        where TOutput : struct, IOutput where TChannels : struct, Gemm.IConstant where TVectors : struct, Gemm.IConstant
    {
        int channels = TChannels.Value, vectors = TVectors.Value, c = job.C;
        long xChannel = job.XChannel;
        float* w = job.W + (long)k0 * c;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
        Vector512<float> d0 = default, d1 = default, d2 = default, d3 = default, d4 = default, d5 = default, d6 = default, d7 = default;
        for (int ci = 0; ci < c; ci++)
        {
            float* row = x + ci * xChannel;
            // Two vectors: the first whole, the second masked; three: two whole, the third masked.
            var x0 = Vector512.Load(row);
            var x1 = vectors == 3 ? Vector512.Load(row + Lanes) : Avx512F.MaskLoad(row + Lanes, last, Vector512<float>.Zero);
            var x2 = vectors == 3 ? Avx512F.MaskLoad(row + 2 * Lanes, last, Vector512<float>.Zero) : default;
            Step(ref a0, ref b0, ref d0, x0, x1, x2, w[ci], vectors);
            if (channels > 1) Step(ref a1, ref b1, ref d1, x0, x1, x2, w[c + ci], vectors);
            if (channels > 2) Step(ref a2, ref b2, ref d2, x0, x1, x2, w[2 * c + ci], vectors);
            if (channels > 3) Step(ref a3, ref b3, ref d3, x0, x1, x2, w[3 * c + ci], vectors);
            if (channels > 4) Step(ref a4, ref b4, ref d4, x0, x1, x2, w[4 * c + ci], vectors);
            if (channels > 5) Step(ref a5, ref b5, ref d5, x0, x1, x2, w[5 * c + ci], vectors);
            if (channels > 6) Step(ref a6, ref b6, ref d6, x0, x1, x2, w[6 * c + ci], vectors);
            if (channels > 7) Step(ref a7, ref b7, ref d7, x0, x1, x2, w[7 * c + ci], vectors);
        }
        float* bias = job.Bias == null ? null : job.Bias + k0;
        long yChannel = job.YChannel, rChannel = (long)job.N * job.Plane;
        float* o = y + k0 * yChannel, r = residual == null ? null : residual + k0 * rChannel;
        TOutput.Store(ref job, o, bias, r, 0, a0, b0, d0, vectors, last);
        if (channels > 1) TOutput.Store(ref job, o + yChannel, bias, r + rChannel, 1, a1, b1, d1, vectors, last);
        if (channels > 2) TOutput.Store(ref job, o + 2 * yChannel, bias, r + 2 * rChannel, 2, a2, b2, d2, vectors, last);
        if (channels > 3) TOutput.Store(ref job, o + 3 * yChannel, bias, r + 3 * rChannel, 3, a3, b3, d3, vectors, last);
        if (channels > 4) TOutput.Store(ref job, o + 4 * yChannel, bias, r + 4 * rChannel, 4, a4, b4, d4, vectors, last);
        if (channels > 5) TOutput.Store(ref job, o + 5 * yChannel, bias, r + 5 * rChannel, 5, a5, b5, d5, vectors, last);
        if (channels > 6) TOutput.Store(ref job, o + 6 * yChannel, bias, r + 6 * rChannel, 6, a6, b6, d6, vectors, last);
        if (channels > 7) TOutput.Store(ref job, o + 7 * yChannel, bias, r + 7 * rChannel, 7, a7, b7, d7, vectors, last);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step(ref Vector512<float> a, ref Vector512<float> b, ref Vector512<float> d, Vector512<float> x0,
        Vector512<float> x1, Vector512<float> x2, float weight, int vectors)
    {
        var wv = Vector512.Create(weight);
        a = Vector512.FusedMultiplyAdd(wv, x0, a);
        b = Vector512.FusedMultiplyAdd(wv, x1, b);
        if (vectors == 3) d = Vector512.FusedMultiplyAdd(wv, x2, d);
    }

    /// <summary>
    /// How a block stores an output channel's plane, held in two or three vectors (the last one partial), at <c>o</c>:
    /// the channel's bias is <c>bias[k]</c> (<c>bias</c> null when there is none) and its residual plane at
    /// <c>residual</c>, which is read only when the job has a residual.
    /// </summary>
    private interface IOutput
    {
        static abstract void Store(ref Job job, float* o, float* bias, float* residual, int k, Vector512<float> a, Vector512<float> b,
            Vector512<float> d, int vectors, Vector512<float> last);
    }

    /// <summary>The plane plus the channel's bias (<see cref="Forward"/>).</summary>
    private struct PlainOutput : IOutput
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Store(ref Job job, float* o, float* bias, float* residual, int k, Vector512<float> a, Vector512<float> b,
            Vector512<float> d, int vectors, Vector512<float> last)
        {
            if (bias != null)
            {
                var bv = Vector512.Create(bias[k]);
                a += bv;
                b += bv;
                d += bv;
            }
            PlaneStore(o, a, b, d, vectors, last);
        }
    }

    /// <summary>
    /// act(plane + bias + residual), then the pool's maximum over each window's rows if there is one
    /// (<see cref="ForwardChannelMajor"/>): TKind the activation, TParts which of <see cref="HasBias"/>,
    /// <see cref="HasResidual"/> and <see cref="Pooled"/> the job has.
    /// </summary>
    private struct FusedOutput<TKind, TParts> : IOutput where TKind : struct, Gemm.IConstant where TParts : struct, Gemm.IConstant
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Store(ref Job job, float* o, float* bias, float* residual, int k, Vector512<float> a, Vector512<float> b,
            Vector512<float> d, int vectors, Vector512<float> last)
        {
            bool hasBias = (TParts.Value & HasBias) != 0, hasResidual = (TParts.Value & HasResidual) != 0;
            var bv = hasBias ? Vector512.Create(bias[k]) : default;
            Vector512<float> ra = default, rb = default, rd = default;
            if (hasResidual)
            {
                ra = Vector512.Load(residual);
                rb = vectors == 3 ? Vector512.Load(residual + Lanes) : Avx512F.MaskLoad(residual + Lanes, last, Vector512<float>.Zero);
                rd = vectors == 3 ? Avx512F.MaskLoad(residual + 2 * Lanes, last, Vector512<float>.Zero) : default;
            }
            a = ConvKernels.EpilogueVector(a, bv, hasBias, ra, hasResidual, TKind.Value);
            b = ConvKernels.EpilogueVector(b, bv, hasBias, rb, hasResidual, TKind.Value);
            if (vectors == 3) d = ConvKernels.EpilogueVector(d, bv, hasBias, rd, hasResidual, TKind.Value);
            if ((TParts.Value & Pooled) == 0)
            {
                PlaneStore(o, a, b, d, vectors, last);
                return;
            }
            // Each output vector: the maximum over the window's rows, from -inf in row order (PoolKernels.MaxPlanes's
            // order), each row's values gathered from the plane's 32 or 48 lanes by permutes. The output vectors are
            // written out (at most three), so that their chains of maxima overlap.
            Vector512<int>* indices = job.PoolIndices;
            int rows = job.PoolRows, outVectors = job.OutVectors, outPlane = job.OutPlane;
            PoolVector(o, a, b, d, vectors, indices, rows, outPlane);
            if (outVectors > 1) PoolVector(o + Lanes, a, b, d, vectors, indices + rows, rows, outPlane - Lanes);
            if (outVectors > 2) PoolVector(o + 2 * Lanes, a, b, d, vectors, indices + 2 * rows, rows, outPlane - 2 * Lanes);
        }
    }

    /// <summary>
    /// One pooled output vector at <paramref name="o"/> (its first <paramref name="count"/> lanes): the maximum, from -inf
    /// in row order, of the window's <paramref name="rows"/> rows, row u's values gathered from the plane's vectors by
    /// <paramref name="indices"/>[u].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PoolVector(float* o, Vector512<float> a, Vector512<float> b, Vector512<float> d, int vectors,
        Vector512<int>* indices, int rows, int count)
    {
        // Vector512.Max(-inf, x) is x, bit for bit (NaNs included): the chain starts at the first row.
        var m = Gathered(a, b, d, vectors, indices[0]);
        // The second row written out: CP-ResNet's windows have two.
        if (rows > 1) m = Vector512.Max(m, Gathered(a, b, d, vectors, indices[1]));
        for (int u = 2; u < rows; u++) m = Vector512.Max(m, Gathered(a, b, d, vectors, indices[u]));
        if (count >= Lanes) Vector512.Store(m, o);
        else Avx512F.MaskStore(o, ConvKernels.FirstLanes(count), m);
    }

    /// <summary>The plane's values at <paramref name="index"/>'s lanes (0-31 from a and b, 32-47 from d).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Gathered(Vector512<float> a, Vector512<float> b, Vector512<float> d, int vectors, Vector512<int> index)
    {
        var row = Avx512F.PermuteVar16x32x2(a, index, b);
        return vectors == 3
            ? Vector512.ConditionalSelect(Vector512.GreaterThan(index, Vector512.Create(2 * Lanes - 1)).AsSingle(), Avx512F.PermuteVar16x32(d, index), row)
            : row;
    }

    /// <summary>One output plane's vectors, the last one stored masked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PlaneStore(float* o, Vector512<float> a, Vector512<float> b, Vector512<float> d, int vectors, Vector512<float> last)
    {
        a.Store(o);
        if (vectors == 3)
        {
            b.Store(o + Lanes);
            Avx512F.MaskStore(o + 2 * Lanes, last, d);
        }
        else
        {
            Avx512F.MaskStore(o + Lanes, last, b);
        }
    }

    /// <summary>
    /// <see cref="ForwardChannelMajor"/> with its 2 x 1 pool on 256-bit vectors: units of (sample, pooling window, group of
    /// up to 6 output channels), shared out over the parts; each output is the same chain of multiply-adds, epilogue and
    /// maximum as at 512 bits.
    /// </summary>
    private static void Pooled256(float* x, float* w, float* bias, float* y, in Conv2dParams p, float* residual, int kind, PoolGather pool)
    {
        var job = NewJob(x, w, bias, y, p);
        job.Residual = residual;
        job.Kind = kind;
        job.XChannel = (long)p.N * job.Plane;
        job.OutPlane = pool.OutPlane;
        job.YChannel = (long)p.N * job.OutPlane;
        job.Width = p.W;
        job.Windows = pool.OutPlane / p.W;
        job.Groups = (p.K + Group256 - 1) / Group256;
        job.Columns = Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(p.W)).AsSingle();
        long macs = (long)p.N * p.K * p.C * job.Windows * 2 * p.W, units = (long)p.N * job.Windows * job.Groups;
        job.Parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, Math.Min(CpuThreading.Threads, units));
        // SAFETY: job outlives ForParts, which returns when every part is done.
        if (job.Parts == 1) RunPart256(&job, 0);
        else CpuThreading.ForParts(job.Parts, &RunPart256, &job);
    }

    private static void RunPart256(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        long units = (long)job.N * job.Windows * job.Groups;
        long first = part * units / job.Parts, end = (part + 1) * units / job.Parts;
        for (long unit = first; unit < end; unit++)
        {
            int group = (int)(unit % job.Groups), window = (int)(unit / job.Groups % job.Windows), n = (int)(unit / job.Groups / job.Windows);
            // The channels shared out evenly (19 = 4 + 5 + 5 + 5).
            int k0 = (int)((long)group * job.K / job.Groups), count = (int)((long)(group + 1) * job.K / job.Groups) - k0;
            switch (count)
            {
                case 1: Window256<Gemm.N1>(ref job, n, window, k0); break;
                case 2: Window256<Gemm.N2>(ref job, n, window, k0); break;
                case 3: Window256<Gemm.N3>(ref job, n, window, k0); break;
                case 4: Window256<Gemm.N4>(ref job, n, window, k0); break;
                case 5: Window256<Gemm.N5>(ref job, n, window, k0); break;
                default: Window256<Gemm.N6>(ref job, n, window, k0); break;
            }
        }
    }

    /// <summary>
    /// Output channels [k0, k0 + TChannels) of sample n's pooling window <paramref name="window"/> (rows 2 window and
    /// 2 window + 1): per input channel, its two rows' loads (masked to the row), each multiplied into every channel's
    /// accumulator for that row; then act(sum + bias + residual) of each row and their maximum from -inf in row order,
    /// stored as the pooled row.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    [SkipLocalsInit]
    private static void Window256<TChannels>(ref Job job, int n, int window, int k0) where TChannels : struct, Gemm.IConstant
    {
        int channels = TChannels.Value, c = job.C, width = job.Width;
        long xChannel = job.XChannel, at = (long)n * job.Plane + 2L * window * width;
        var columns = job.Columns;
        float* x = job.X + at, w = job.W + (long)k0 * c;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default;
        for (int ci = 0; ci < c; ci++, x += xChannel)
        {
            var x0 = Avx.MaskLoad(x, columns);
            var x1 = Avx.MaskLoad(x + width, columns);
            PlaneConv3x3.Step256(ref a0, ref b0, x0, x1, w[ci]);
            if (channels > 1) PlaneConv3x3.Step256(ref a1, ref b1, x0, x1, w[c + ci]);
            if (channels > 2) PlaneConv3x3.Step256(ref a2, ref b2, x0, x1, w[2 * c + ci]);
            if (channels > 3) PlaneConv3x3.Step256(ref a3, ref b3, x0, x1, w[3 * c + ci]);
            if (channels > 4) PlaneConv3x3.Step256(ref a4, ref b4, x0, x1, w[4 * c + ci]);
            if (channels > 5) PlaneConv3x3.Step256(ref a5, ref b5, x0, x1, w[5 * c + ci]);
        }
        // To the stack before the first store, as in PlaneConv3x3.Block.
        Vector256<float>* sums = stackalloc Vector256<float>[2 * Group256];
        sums[0] = a0; sums[1] = a1; sums[2] = a2; sums[3] = a3; sums[4] = a4; sums[5] = a5;
        sums[6] = b0; sums[7] = b1; sums[8] = b2; sums[9] = b3; sums[10] = b4; sums[11] = b5;
        long residualChannel = (long)job.N * job.Plane;
        for (int i = 0; i < channels; i++)
        {
            int k = k0 + i;
            bool hasBias = job.Bias != null, hasResidual = job.Residual != null;
            var bv = hasBias ? Vector256.Create(job.Bias[k]) : default;
            float* r = hasResidual ? job.Residual + k * residualChannel + at : null;
            var upper = ConvKernels.EpilogueVector(sums[i], bv, hasBias, hasResidual ? Avx.MaskLoad(r, columns) : default, hasResidual, job.Kind);
            var lower = ConvKernels.EpilogueVector(sums[Group256 + i], bv, hasBias, hasResidual ? Avx.MaskLoad(r + width, columns) : default, hasResidual, job.Kind);
            var max = Vector256.Max(Vector256.Max(Vector256.Create(float.NegativeInfinity), upper), lower);
            Avx.MaskStore(job.Y + k * job.YChannel + (long)n * job.OutPlane + (long)window * width, columns, max);
        }
    }
}
