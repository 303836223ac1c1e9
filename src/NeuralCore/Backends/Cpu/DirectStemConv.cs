using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// A stem convolution (one input channel, stride 2, CP-ResNet's 5x5 on the image or spectrogram) computed directly, with
/// bias, ReLU or Hardswish and an optional 2x2 / 2 max pool applied while the values are still in registers (inference
/// plans; the training forward, unpooled and sample-major, runs <see cref="StemColumns"/>). Each input row is split once
/// into its even and odd columns (zero border included), so the 16 inputs a tap needs for 16 neighbouring outputs are one
/// contiguous load; every such load feeds 8 output channels (weights broadcast), and a pair of output rows keeps 16
/// accumulators. The implicit GEMM spends as long filling its 25-row panels from stride-2 runs as multiplying them, and
/// writes the unpooled output before pooling it; this kernel does neither.
/// </summary>
/// <remarks>
/// Shapes: x [N, 1, H, W] (the same floats as channel-major [1, N, H, W]); y channel-major [K, N, P, Q] as in the
/// inference plan (pooled: P/2, Q/2).
/// Each output is the sum over the taps in (r, s) order, the order of the GEMM paths, then bias, then the activation
/// (<see cref="ConvKernels.Epilogue"/>'s expressions), then the pool's maximum. Work is split over samples and groups of
/// 8 output channels, so results do not depend on the thread count.
/// </remarks>
internal static unsafe class DirectStemConv
{
    /// <summary>Output columns per vector.</summary>
    internal const int Lanes = 16;
    private const int Group = 8;
    // Below this many multiply-adds per part, waking a worker costs more than it saves.
    private const long MinMacsPerPart = 1 << 18;

    /// <summary>
    /// True for a stem <see cref="StemColumns.CanRun"/> takes (one input channel, stride 2, no dilation, at most 64 taps,
    /// the 512-bit kernels; tests narrow the kernel width to check the other paths), with no pool or a 2x2 / 2 max pool
    /// without padding.
    /// </summary>
    internal static bool Supports(in Conv2dParams p, Pool2dParams? pool) =>
        StemColumns.CanRun(p)
        && (pool is not { } q || (q.KernelH == 2 && q.KernelW == 2 && q.StrideH == 2 && q.StrideW == 2 && q.PadH == 0 && q.PadW == 0
            && !q.CeilMode && q.H == p.P && q.W == p.Q && q.P >= 1 && q.Q >= 1));

    private struct Job
    {
        public Conv2dParams P;
        public float* X, Y;
        // Weights per group of 8 output channels, [groups][taps][8], and biases [groups][8], zero for absent channels.
        public float* W, Bias;
        public bool Pooled, HasBias;
        public int Kind;
        // Output floats between channels and between samples (channel-major).
        public long ChannelStride, SampleStride;
        // Per tap (r, s): where its inputs start in the split rows, relative to an output row pair's first padded row.
        public int* TapOffsets;
        // Convolution rows and columns computed (a pool's floor mode drops the last odd one), outputs per row stored.
        public int Rows, Columns, OutRows, OutColumns, Vectors, HalfRow, Groups, Parts, Items;
        // Each sample's row pairs come in this many bands of PairsPerBand (more than one when there are too few samples to
        // share: batch 1).
        public int Bands, PairsPerBand;
        // Samples in the lanes instead (pooled, batches of 16 or more whose rows would leave lanes idle): an item is a chunk
        // of 16 samples and a group, the chunk's input held pixel-major ([PaddedRows, PaddedColumns, 16], zero border).
        public int Chunks, PaddedRows, PaddedColumns;
    }

    /// <summary>
    /// y = pool(act(conv2d(x, w) + bias)) with <paramref name="pool"/> the 2x2 / 2 max pool (or none); bias may be null;
    /// <paramref name="activation"/> is ReLU, Hardswish or none (<paramref name="hasActivation"/> false); y channel-major.
    /// <paramref name="packed"/> holds the weights and bias packed by <see cref="Weights"/> (once, when the plan compiles).
    /// </summary>
    internal static void Forward(float* x, float* y, in Conv2dParams p, bool hasBias, bool hasActivation, UnaryOp activation,
        Pool2dParams? pool, float* packed)
    {
        var job = NewJob(x, y, p, hasBias, hasActivation, activation, pool, packed, stackalloc int[p.R * p.S]);
        long macs = (long)p.N * p.K * job.Rows * job.Columns * p.R * p.S;
        int parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, CpuThreading.Threads);
        if (job.Pooled && p.N >= Lanes && job.Columns % Lanes != 0)
        {
            // Pooled rows that leave lanes idle (MNIST's 12 columns in 16 lanes), and samples enough to fill them.
            job.Chunks = (p.N + Lanes - 1) / Lanes;
            job.PaddedRows = 2 * (job.Rows - 1) + p.R;
            job.PaddedColumns = 2 * (job.Columns - 1) + p.S;
            for (int t = 0; t < p.R * p.S; t++) job.TapOffsets[t] = t / p.S * job.PaddedColumns + t % p.S;
            job.Items = job.Chunks * job.Groups;
            job.Parts = Math.Min(parts, job.Items);
            if (job.Parts == 1) RunChunks(ref job, 0, job.Items);
            else CpuThreading.ForParts(job.Parts, &RunChunkPart, &job);
            return;
        }
        // Fewer samples than two per part: each sample's rows are cut into bands, so that every part gets whole bands
        // with all their channel groups (a last group of 3 channels is cheaper than one of 8, so groups alone balance badly).
        int pairs = (job.Rows + 1) / 2;
        job.Bands = parts == 1 || p.N >= 2 * parts ? 1 : Math.Min(pairs, (2 * parts + p.N - 1) / p.N);
        job.PairsPerBand = (pairs + job.Bands - 1) / job.Bands;
        job.Bands = (pairs + job.PairsPerBand - 1) / job.PairsPerBand;
        job.Items = p.N * job.Bands * job.Groups;
        job.Parts = Math.Min(parts, job.Items);
        if (job.Parts == 1) RunItems(ref job, 0, job.Items);
        else CpuThreading.ForParts(job.Parts, &RunPart, &job);
    }

    /// <summary>
    /// Rows [<paramref name="first"/>, <paramref name="end"/>) of <see cref="Forward"/>'s output for one sample
    /// (<paramref name="p"/>.N must be 1), every channel, on the calling thread: row <paramref name="first"/> at
    /// <paramref name="y"/>, each row after it the output's width further on, and the channels
    /// <paramref name="channelStride"/> floats apart. With a pool the rows are pooled rows. The inference plan's row bands
    /// write each thread's rows (and the row either side of them) into a block of its own this way.
    /// </summary>
    internal static void ForwardRows(float* x, float* y, long channelStride, in Conv2dParams p, bool hasBias, bool hasActivation,
        UnaryOp activation, Pool2dParams? pool, float* packed, int first, int end)
    {
        if (p.N != 1) throw new ArgumentException("DirectStemConv.ForwardRows takes one sample.", nameof(p));
        var job = NewJob(x, y, p, hasBias, hasActivation, activation, pool, packed, stackalloc int[p.R * p.S]);
        if (first < 0 || end > job.OutRows || first >= end)
            throw new ArgumentOutOfRangeException(nameof(first), $"DirectStemConv.ForwardRows: rows [{first}, {end}) of {job.OutRows}.");
        job.ChannelStride = channelStride;
        job.Y = y - (long)first * job.OutColumns;
        if (!job.Pooled && (first % 2 != 0 || (end % 2 != 0 && end != job.OutRows)))
            throw new ArgumentException("DirectStemConv.ForwardRows: without a pool the rows come in pairs; start and end on even rows.", nameof(first));
        // Pooled, pair i is pooled row i; unpooled, rows 2 i and 2 i + 1.
        int pair0 = job.Pooled ? first : first / 2, pair1 = job.Pooled ? end : (end + 1) / 2;
        int paddedRows = 2 * (pair1 * 2 - 1) + p.R;
        float* split = ConvScratch.Current.Get(ConvScratch.Slot.Columns, (long)paddedRows * 2 * job.HalfRow);
        SplitRows(ref job, x, split, 4 * pair0, 4 * (pair1 - 1) + 2 + p.R);
        for (int group = 0; group < job.Groups; group++)
        {
            if (job.Pooled) RowPairs<WithPool>(ref job, split, 0, group, pair0, pair1);
            else RowPairs<WithoutPool>(ref job, split, 0, group, pair0, pair1);
        }
    }

    /// <summary>A call's job: geometry, weights and tap offsets (into <paramref name="offsets"/>, R x S of them).</summary>
    private static Job NewJob(float* x, float* y, in Conv2dParams p, bool hasBias, bool hasActivation, UnaryOp activation,
        Pool2dParams? pool, float* packed, Span<int> offsets)
    {
        var job = new Job
        {
            P = p, X = x, Y = y, Pooled = pool is not null, HasBias = hasBias,
            Kind = !hasActivation ? 0 : activation switch
            {
                UnaryOp.Relu => 1,
                UnaryOp.Hardswish => 2,
                _ => throw new ArgumentException($"DirectStemConv applies ReLU or Hardswish, not {activation}.", nameof(activation)),
            },
        };
        job.OutRows = pool?.P ?? p.P;
        job.OutColumns = pool?.Q ?? p.Q;
        long plane = (long)job.OutRows * job.OutColumns;
        job.ChannelStride = p.N * plane;
        job.SampleStride = plane;
        job.Rows = job.Pooled ? 2 * job.OutRows : p.P;
        job.Columns = job.Pooled ? 2 * job.OutColumns : p.Q;
        job.Vectors = (job.Columns + Lanes - 1) / Lanes;
        // Even and odd halves of a padded row, each long enough for the last vector's reads at the largest tap offset.
        job.HalfRow = (job.Vectors * Lanes + p.S / 2 + Lanes - 1) / Lanes * Lanes;
        job.Groups = (p.K + Group - 1) / Group;
        int taps = p.R * p.S;
        job.W = packed;
        job.Bias = packed + (long)job.Groups * taps * Group;
        for (int r = 0; r < p.R; r++)
            for (int c = 0; c < p.S; c++)
                offsets[r * p.S + c] = r * 2 * job.HalfRow + ((c & 1) == 0 ? 0 : job.HalfRow) + c / 2;
        // SAFETY: offsets is the caller's stack memory, which outlives the job.
        job.TapOffsets = (int*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(offsets));
        return job;
    }

    /// <summary>Weights and bias packed once for <see cref="Forward"/> (inference plans), in pinned memory.</summary>
    internal sealed class Weights
    {
        private readonly float[] _packed;

        internal Weights(ReadOnlySpan<float> w, ReadOnlySpan<float> bias, in Conv2dParams p)
        {
            _packed = GC.AllocateArray<float>((int)PackedLength(p), pinned: true);
            fixed (float* src = w, b = bias, dst = _packed)
                Pack(src, b, p, dst);
        }

        /// <summary>The packed floats (the array is pinned).</summary>
        internal float* Pointer => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_packed));
    }

    internal static long PackedLength(in Conv2dParams p) => (long)((p.K + Group - 1) / Group) * (p.R * p.S + 1) * Group;

    /// <summary>Per group of 8 output channels the weights [taps][8], then the biases [groups][8]; zero for absent channels.</summary>
    internal static void Pack(float* w, float* bias, in Conv2dParams p, float* packed)
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
        ref Job job = ref *(Job*)state;
        RunItems(ref job, (int)((long)part * job.Items / job.Parts), (int)((long)(part + 1) * job.Items / job.Parts));
    }

    /// <summary>
    /// Items [first, end): item / groups is a band of a sample (sample band / bands, row pairs PairsPerBand * (band % bands)
    /// onwards), item % groups its group of 8 output channels.
    /// </summary>
    private static void RunItems(ref Job job, int first, int end)
    {
        if (first >= end) return;
        ref readonly Conv2dParams p = ref job.P;
        // Rows come in pairs: after an odd last row, its partner reads two more padded rows and is not stored.
        int pairs = (job.Rows + 1) / 2;
        int paddedRows = 2 * (pairs * 2 - 1) + p.R;
        float* split = ConvScratch.Current.Get(ConvScratch.Slot.Columns, (long)paddedRows * 2 * job.HalfRow);
        int current = -1;
        for (int item = first; item < end; item++)
        {
            int band = item / job.Groups, group = item % job.Groups;
            int n = band / job.Bands;
            int pair0 = band % job.Bands * job.PairsPerBand, pair1 = Math.Min(pairs, pair0 + job.PairsPerBand);
            if (band != current)
            {
                // Row pair i reads padded rows 4 i .. 4 i + 2 + R - 1.
                SplitRows(ref job, job.X + (long)n * p.H * p.W, split, 4 * pair0, 4 * (pair1 - 1) + 2 + p.R);
                current = band;
            }
            if (job.Pooled) RowPairs<WithPool>(ref job, split, n, group, pair0, pair1);
            else RowPairs<WithoutPool>(ref job, split, n, group, pair0, pair1);
        }
    }

    private static void RunChunkPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        RunChunks(ref job, (int)((long)part * job.Items / job.Parts), (int)((long)(part + 1) * job.Items / job.Parts));
    }

    /// <summary>
    /// Items [first, end) with samples in the lanes: item / groups is a chunk of 16 samples, item % groups its group of 8
    /// output channels. Each output position of the chunk is 16 sums at once (one per sample), so no lane is idle
    /// whatever the width of the rows; the chunk's input is transposed pixel-major once, and each group's outputs go
    /// through a staging block ([channels, positions, 16]) back to the output layout.
    /// </summary>
    private static void RunChunks(ref Job job, int first, int end)
    {
        if (first >= end) return;
        ConvScratch scratch = ConvScratch.Current;
        int plane = job.OutRows * job.OutColumns;
        float* pixels = scratch.Get(ConvScratch.Slot.Columns, (long)job.PaddedRows * job.PaddedColumns * Lanes);
        float* stage = scratch.Get(ConvScratch.Slot.Rows, (long)Group * plane * Lanes);
        int current = -1;
        for (int item = first; item < end; item++)
        {
            int chunk = item / job.Groups, group = item % job.Groups;
            int n0 = chunk * Lanes, samples = Math.Min(Lanes, job.P.N - n0);
            if (chunk != current)
            {
                TransposeChunk(ref job, n0, samples, pixels);
                current = chunk;
            }
            int channels = Math.Min(Group, job.P.K - group * Group);
            switch (channels)
            {
                case 1: ChunkOutputs<Gemm.N1>(ref job, pixels, group, stage); break;
                case 2: ChunkOutputs<Gemm.N2>(ref job, pixels, group, stage); break;
                case 3: ChunkOutputs<Gemm.N3>(ref job, pixels, group, stage); break;
                case 4: ChunkOutputs<Gemm.N4>(ref job, pixels, group, stage); break;
                case 5: ChunkOutputs<Gemm.N5>(ref job, pixels, group, stage); break;
                case 6: ChunkOutputs<Gemm.N6>(ref job, pixels, group, stage); break;
                case 7: ChunkOutputs<Gemm.N7>(ref job, pixels, group, stage); break;
                default: ChunkOutputs<Gemm.N8>(ref job, pixels, group, stage); break;
            }
            // stage [k, position, lane] -> y: each sample's plane of each channel is contiguous in either layout.
            float* y = job.Y + (long)group * Group * job.ChannelStride + n0 * job.SampleStride;
            for (int k = 0; k < channels; k++)
                Gemm.Transpose(stage + (long)k * plane * Lanes, Lanes, y + k * job.ChannelStride, job.SampleStride, plane, samples);
        }
    }

    /// <summary>
    /// pixels [PaddedRows, PaddedColumns, 16] = samples [n0, n0 + samples) of x, padded row i and column j holding input
    /// row i - padH and column j - padW of each sample in its lane, zero outside the input and in unused lanes.
    /// </summary>
    private static void TransposeChunk(ref Job job, int n0, int samples, float* pixels)
    {
        ref readonly Conv2dParams p = ref job.P;
        new Span<float>(pixels, job.PaddedRows * job.PaddedColumns * Lanes).Clear();
        int rows = Math.Min(p.H, job.PaddedRows - p.PadH), columns = Math.Min(p.W, job.PaddedColumns - p.PadW);
        // Per input row, the samples' rows [samples, columns] transposed into [columns, lanes].
        for (int ih = 0; ih < rows; ih++)
            Gemm.Transpose(job.X + (long)n0 * p.H * p.W + (long)ih * p.W, (long)p.H * p.W,
                pixels + ((long)(ih + p.PadH) * job.PaddedColumns + p.PadW) * Lanes, Lanes, samples, columns);
    }

    /// <summary>
    /// The chunk's pooled outputs for the first TChannels channels of <paramref name="group"/> into stage [k, position,
    /// lane]: two convolution outputs at a time (16 accumulators), each tap one load per output and one broadcast weight
    /// per channel; bias and activation on the sums, then the maximum over the 2x2 window in the order of
    /// <see cref="Store{TPool}"/> (the two rows of each column, then the two columns).
    /// </summary>
    private static void ChunkOutputs<TChannels>(ref Job job, float* pixels, int group, float* stage) where TChannels : struct, Gemm.IConstant
    {
        int channels = TChannels.Value, taps = job.P.R * job.P.S, plane = job.OutRows * job.OutColumns;
        float* w = job.W + (long)group * taps * Group;
        float* bias = job.Bias + group * Group;
        long columns = job.PaddedColumns;
        var o = stackalloc Vector512<float>[2 * Group];
        var window = stackalloc Vector512<float>[Group];
        for (int row = 0; row < job.OutRows; row++)
        {
            float* stageRow = stage + (long)row * job.OutColumns * Lanes;
            long planeFloats = (long)plane * Lanes;
            for (int column = 0; column < job.OutColumns; column++)
            {
                // Column 2c of convolution rows 2r and 2r + 1, then column 2c + 1: the window's maximum, rows first.
                float* upper = pixels + (4L * row * columns + 4 * column) * Lanes, lower = upper + 2 * columns * Lanes;
                Pair<TChannels>(ref job, upper, lower, w, bias, o);
                for (int k = 0; k < channels; k++) window[k] = Vector512.Max(o[k], o[Group + k]);
                Pair<TChannels>(ref job, upper + 2 * Lanes, lower + 2 * Lanes, w, bias, o);
                for (int k = 0; k < channels; k++)
                    Vector512.Store(Vector512.Max(window[k], Vector512.Max(o[k], o[Group + k])), stageRow + k * planeFloats + column * Lanes);
            }
        }
    }

    /// <summary>
    /// o[k] and o[8 + k] = act(bias[k] + sum over taps of w[t, k] * x) for the two outputs whose first inputs are at
    /// <paramref name="first"/> and <paramref name="second"/> (16 samples each), for the first TChannels channels.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pair<TChannels>(ref Job job, float* first, float* second, float* w, float* bias, Vector512<float>* o)
        where TChannels : struct, Gemm.IConstant
    {
        int channels = TChannels.Value, taps = job.P.R * job.P.S;
        int* offsets = job.TapOffsets;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
        for (int t = 0; t < taps; t++, w += Group)
        {
            long at = (long)offsets[t] * Lanes;
            var x0 = Vector512.Load(first + at);
            var x1 = Vector512.Load(second + at);
            var c = Vector512.Create(w[0]); a0 = Vector512.FusedMultiplyAdd(c, x0, a0); b0 = Vector512.FusedMultiplyAdd(c, x1, b0);
            if (channels > 1) { c = Vector512.Create(w[1]); a1 = Vector512.FusedMultiplyAdd(c, x0, a1); b1 = Vector512.FusedMultiplyAdd(c, x1, b1); }
            if (channels > 2) { c = Vector512.Create(w[2]); a2 = Vector512.FusedMultiplyAdd(c, x0, a2); b2 = Vector512.FusedMultiplyAdd(c, x1, b2); }
            if (channels > 3) { c = Vector512.Create(w[3]); a3 = Vector512.FusedMultiplyAdd(c, x0, a3); b3 = Vector512.FusedMultiplyAdd(c, x1, b3); }
            if (channels > 4) { c = Vector512.Create(w[4]); a4 = Vector512.FusedMultiplyAdd(c, x0, a4); b4 = Vector512.FusedMultiplyAdd(c, x1, b4); }
            if (channels > 5) { c = Vector512.Create(w[5]); a5 = Vector512.FusedMultiplyAdd(c, x0, a5); b5 = Vector512.FusedMultiplyAdd(c, x1, b5); }
            if (channels > 6) { c = Vector512.Create(w[6]); a6 = Vector512.FusedMultiplyAdd(c, x0, a6); b6 = Vector512.FusedMultiplyAdd(c, x1, b6); }
            if (channels > 7) { c = Vector512.Create(w[7]); a7 = Vector512.FusedMultiplyAdd(c, x0, a7); b7 = Vector512.FusedMultiplyAdd(c, x1, b7); }
        }
        Finish(ref job, a0, b0, bias[0], o, 0);
        if (channels > 1) Finish(ref job, a1, b1, bias[1], o, 1);
        if (channels > 2) Finish(ref job, a2, b2, bias[2], o, 2);
        if (channels > 3) Finish(ref job, a3, b3, bias[3], o, 3);
        if (channels > 4) Finish(ref job, a4, b4, bias[4], o, 4);
        if (channels > 5) Finish(ref job, a5, b5, bias[5], o, 5);
        if (channels > 6) Finish(ref job, a6, b6, bias[6], o, 6);
        if (channels > 7) Finish(ref job, a7, b7, bias[7], o, 7);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish(ref Job job, Vector512<float> a, Vector512<float> b, float bias, Vector512<float>* o, int k)
    {
        o[k] = ConvKernels.EpilogueVector(a, bias, job.HasBias, default, false, job.Kind);
        o[Group + k] = ConvKernels.EpilogueVector(b, bias, job.HasBias, default, false, job.Kind);
    }

    /// <summary>
    /// For each padded row i in [<paramref name="row0"/>, <paramref name="row1"/>) (input row i - padH, zero outside the
    /// input): its even padded columns, then its odd ones, each <see cref="Job.HalfRow"/> long. Padded column 2j + e is
    /// input column 2j + e - padW. Each 32-column window of a padded row is two masked loads straight from the input row
    /// (columns off the input neither read nor faulted on: zero), which two permutes split into 16 even and 16 odd
    /// columns; the masks are the same for every row, so they are made once. (Copying each row into a zero-bordered line
    /// first took a third of the stem's time at MNIST batch 1 for one output channel.)
    /// </summary>
    [SkipLocalsInit]
    private static void SplitRows(ref Job job, float* plane, float* split, int row0, int row1)
    {
        ref readonly Conv2dParams p = ref job.P;
        int line = 2 * job.HalfRow, windows = job.HalfRow / Lanes, padW = p.PadW, width = p.W;
        // Windows that start past the input's last column hold only zeros (the end of MNIST's half rows: 32 floats for
        // 18 read), stored without loading.
        int inside = Math.Min(windows, (width + padW + 2 * Lanes - 1) / (2 * Lanes));
        var masks = stackalloc Vector512<float>[2 * windows];
        var iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (int v = 0; v < 2 * windows; v++)
        {
            // Lane l of load v reads input column 16 v + l - padW.
            var column = iota + Vector512.Create(Lanes * v - padW);
            masks[v] = Vector512.LessThan(column.AsUInt32(), Vector512.Create((uint)width)).AsSingle();
        }
        var evens = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var odds = Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        for (int i = row0; i < row1; i++)
        {
            float* even = split + (long)i * line, odd = even + job.HalfRow;
            int ih = i - p.PadH;
            if ((uint)ih >= (uint)p.H)
            {
                new Span<float>(even, line).Clear();
                continue;
            }
            float* source = plane + (long)ih * width - padW;
            for (int v = inside; v < windows; v++)
            {
                Vector512.Store(Vector512<float>.Zero, even + v * Lanes);
                Vector512.Store(Vector512<float>.Zero, odd + v * Lanes);
            }
            for (int v = 0; v < inside; v++)
            {
                var lo = Avx512F.MaskLoad(source + 2 * v * Lanes, masks[2 * v], Vector512<float>.Zero);
                var hi = Avx512F.MaskLoad(source + (2 * v + 1) * Lanes, masks[2 * v + 1], Vector512<float>.Zero);
                Vector512.Store(Avx512F.PermuteVar16x32x2(lo, evens, hi), even + v * Lanes);
                Vector512.Store(Avx512F.PermuteVar16x32x2(lo, odds, hi), odd + v * Lanes);
            }
        }
    }

    /// <summary>
    /// Row pairs [pair0, pair1) of one sample for the first TChannels output channels of <paramref name="group"/>: per 16
    /// columns, 16 accumulators (8 channels, 2 rows), each tap one load per row and 16 multiply-adds; then the pooled
    /// row, or the two rows (the second only if it exists).
    /// </summary>
    private static void RowPairs<TPool>(ref Job job, float* split, int n, int group, int pair0, int pair1) where TPool : struct, IPooling
    {
        // One specialisation per channel count, so that a last group of fewer than 8 channels (19 = 8 + 8 + 3) does
        // no multiply-adds for the channels it lacks, and per pooling, so that each holds one kind of store.
        switch (Math.Min(Group, job.P.K - group * Group))
        {
            case 1: RowPairs<TPool, Gemm.N1>(ref job, split, n, group, pair0, pair1); break;
            case 2: RowPairs<TPool, Gemm.N2>(ref job, split, n, group, pair0, pair1); break;
            case 3: RowPairs<TPool, Gemm.N3>(ref job, split, n, group, pair0, pair1); break;
            case 4: RowPairs<TPool, Gemm.N4>(ref job, split, n, group, pair0, pair1); break;
            case 5: RowPairs<TPool, Gemm.N5>(ref job, split, n, group, pair0, pair1); break;
            case 6: RowPairs<TPool, Gemm.N6>(ref job, split, n, group, pair0, pair1); break;
            case 7: RowPairs<TPool, Gemm.N7>(ref job, split, n, group, pair0, pair1); break;
            default: RowPairs<TPool, Gemm.N8>(ref job, split, n, group, pair0, pair1); break;
        }
    }

    /// <summary>Whether the rows are pooled as they are stored, known to the JIT.</summary>
    private interface IPooling { static abstract bool Pooled { get; } }
    private struct WithPool : IPooling { public static bool Pooled => true; }
    private struct WithoutPool : IPooling { public static bool Pooled => false; }

    private static void RowPairs<TPool, TChannels>(ref Job job, float* split, int n, int group, int pair0, int pair1)
        where TPool : struct, IPooling where TChannels : struct, Gemm.IConstant
    {
        ref readonly Conv2dParams p = ref job.P;
        int taps = p.R * p.S, k0 = group * Group, channels = TChannels.Value;
        long stride = job.ChannelStride, line = 2L * job.HalfRow;
        float* y = job.Y + k0 * stride + n * job.SampleStride;
        float* bias = job.Bias + k0;
        int* offsets = job.TapOffsets;
        for (int pair = pair0; pair < pair1; pair++)
        {
            for (int v = 0; v < job.Vectors; v++)
            {
                int q0 = v * Lanes;
                // Output rows 2 pair and 2 pair + 1 read padded rows two apart (stride 2).
                float* upper = split + 4 * pair * line + q0, lower = upper + 2 * line;
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
                Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
                float* w = job.W + (long)group * taps * Group;
                for (int t = 0; t < taps; t++, w += Group)
                {
                    var x0 = Vector512.Load(upper + offsets[t]);
                    var x1 = Vector512.Load(lower + offsets[t]);
                    var c = Vector512.Create(w[0]); a0 = Vector512.FusedMultiplyAdd(c, x0, a0); b0 = Vector512.FusedMultiplyAdd(c, x1, b0);
                    if (channels > 1) { c = Vector512.Create(w[1]); a1 = Vector512.FusedMultiplyAdd(c, x0, a1); b1 = Vector512.FusedMultiplyAdd(c, x1, b1); }
                    if (channels > 2) { c = Vector512.Create(w[2]); a2 = Vector512.FusedMultiplyAdd(c, x0, a2); b2 = Vector512.FusedMultiplyAdd(c, x1, b2); }
                    if (channels > 3) { c = Vector512.Create(w[3]); a3 = Vector512.FusedMultiplyAdd(c, x0, a3); b3 = Vector512.FusedMultiplyAdd(c, x1, b3); }
                    if (channels > 4) { c = Vector512.Create(w[4]); a4 = Vector512.FusedMultiplyAdd(c, x0, a4); b4 = Vector512.FusedMultiplyAdd(c, x1, b4); }
                    if (channels > 5) { c = Vector512.Create(w[5]); a5 = Vector512.FusedMultiplyAdd(c, x0, a5); b5 = Vector512.FusedMultiplyAdd(c, x1, b5); }
                    if (channels > 6) { c = Vector512.Create(w[6]); a6 = Vector512.FusedMultiplyAdd(c, x0, a6); b6 = Vector512.FusedMultiplyAdd(c, x1, b6); }
                    if (channels > 7) { c = Vector512.Create(w[7]); a7 = Vector512.FusedMultiplyAdd(c, x0, a7); b7 = Vector512.FusedMultiplyAdd(c, x1, b7); }
                }
                float* yv;
                int count;
                if (TPool.Pooled)
                {
                    yv = y + (long)pair * job.OutColumns + v * (Lanes / 2);
                    count = Math.Min(Lanes / 2, job.OutColumns - v * (Lanes / 2));
                }
                else
                {
                    yv = y + (long)2 * pair * p.Q + q0;
                    count = Math.Min(Lanes, p.Q - q0);
                }
                Store<TPool>(ref job, a0, b0, bias[0], yv, count, 2 * pair);
                if (channels > 1) Store<TPool>(ref job, a1, b1, bias[1], yv + stride, count, 2 * pair);
                if (channels > 2) Store<TPool>(ref job, a2, b2, bias[2], yv + 2 * stride, count, 2 * pair);
                if (channels > 3) Store<TPool>(ref job, a3, b3, bias[3], yv + 3 * stride, count, 2 * pair);
                if (channels > 4) Store<TPool>(ref job, a4, b4, bias[4], yv + 4 * stride, count, 2 * pair);
                if (channels > 5) Store<TPool>(ref job, a5, b5, bias[5], yv + 5 * stride, count, 2 * pair);
                if (channels > 6) Store<TPool>(ref job, a6, b6, bias[6], yv + 6 * stride, count, 2 * pair);
                if (channels > 7) Store<TPool>(ref job, a7, b7, bias[7], yv + 7 * stride, count, 2 * pair);
            }
        }
    }

    /// <summary>
    /// One channel's 16 columns of output rows <paramref name="row"/> and row + 1: bias and activation on each, then
    /// with a pool the maximum of the rows and of each column pair (<paramref name="count"/> pooled columns), else both
    /// rows (<paramref name="count"/> columns each; the second only if the output has it).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store<TPool>(ref Job job, Vector512<float> upper, Vector512<float> lower, float bias, float* y, int count, int row)
        where TPool : struct, IPooling
    {
        upper = ConvKernels.EpilogueVector(upper, bias, job.HasBias, default, false, job.Kind);
        lower = ConvKernels.EpilogueVector(lower, bias, job.HasBias, default, false, job.Kind);
        var mask = ConvKernels.FirstLanes(count);
        if (!TPool.Pooled)
        {
            Avx512F.MaskStore(y, mask, upper);
            if (row + 1 < job.P.P) Avx512F.MaskStore(y + job.P.Q, mask, lower);
            return;
        }
        var rows = Vector512.Max(upper, lower);
        var pairs = Vector512.Max(Avx512F.PermuteVar16x32(rows, Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14)),
            Avx512F.PermuteVar16x32(rows, Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15)));
        Avx512F.MaskStore(y, mask, pairs);
    }

}
