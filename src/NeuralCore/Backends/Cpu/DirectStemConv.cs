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
/// contiguous load. The output channels come in strips of at most <see cref="Gemm.MaxStripRows"/> (19 channels: one
/// strip; 32: two of 16), one accumulator each, and every load of 16 inputs feeds every channel of the strip, each weight
/// an embedded broadcast (<see cref="Gemm.Accumulate{TRows}"/>). The implicit GEMM spends as long filling its 25-row
/// panels from stride-2 runs as multiplying them, and writes the unpooled output before pooling it; this kernel does
/// neither.
/// </summary>
/// <remarks>
/// Shapes: x [N, 1, H, W] (the same floats as channel-major [1, N, H, W]); y channel-major [K, N, P, Q] as in the
/// inference plan (pooled: P/2, Q/2).
/// Each output is the sum over the taps in (r, s) order, the order of the GEMM paths, then bias, then the activation
/// (<see cref="ConvKernels.Epilogue"/>'s expressions), then the pool's maximum. Work is split over samples and strips,
/// so results do not depend on the thread count. (Pairs of output rows times groups of 8 channels, 16 accumulators
/// whose weights were broadcast into registers and each used twice, took 1.09-1.15x as long: 19 = 8 + 8 + 3 left a
/// group of 6 accumulators, and each broadcast was an instruction of its own.)
/// </remarks>
internal static unsafe class DirectStemConv
{
    /// <summary>Output columns per vector.</summary>
    internal const int Lanes = 16;
    // Floats from one tap's weights to the next in a strip's packing.
    private const int TapStride = Gemm.MaxStripRows;
    // Below this many multiply-adds per part, waking a worker costs more than it saves.
    private const long MinMacsPerPart = 1 << 18;

    /// <summary>
    /// True for a stem (<see cref="StemColumns.IsStem"/>: one input channel, stride 2, no dilation, at most 64 taps) where
    /// the 512-bit kernels run (<see cref="Gemm.Runs512"/>; tests narrow the kernel width to check the other paths),
    /// with no pool or a 2x2 / 2 max pool without padding.
    /// </summary>
    internal static bool Supports(in Conv2dParams p, Pool2dParams? pool) =>
        Gemm.Runs512 && StemColumns.IsStem(p)
        && (pool is not { } q || (q.KernelH == 2 && q.KernelW == 2 && q.StrideH == 2 && q.StrideW == 2 && q.PadH == 0 && q.PadW == 0
            && !q.CeilMode && q.H == p.P && q.W == p.Q && q.P >= 1 && q.Q >= 1));

    /// <summary>Strips of output channels for <paramref name="k"/> channels: the fewest of at most <see cref="Gemm.MaxStripRows"/>.</summary>
    private static int StripCount(int k) => (k + Gemm.MaxStripRows - 1) / Gemm.MaxStripRows;

    /// <summary>The first output channel of strip <paramref name="strip"/> of <paramref name="strips"/> (strips differ by one channel at most).</summary>
    private static int StripStart(int k, int strips, int strip) => (int)((long)k * strip / strips);

    private struct Job
    {
        public Conv2dParams P;
        public float* X, Y;
        // Weights per strip, [strips][taps][TapStride], and the biases [K] (zero without a bias).
        public float* W, Bias;
        public bool Pooled, HasBias;
        public int Kind;
        // Output floats between channels and between samples (channel-major).
        public long ChannelStride, SampleStride;
        // Per tap (r, s): where its inputs start, in floats, relative to an output's first input (in the split rows, or
        // with the samples in the lanes in the chunk's pixels).
        public int* TapOffsets;
        // Convolution rows and columns computed (a pool's floor mode drops the last odd one), outputs per row stored.
        public int Rows, Columns, OutRows, OutColumns, Vectors, HalfRow, Strips, Parts, Items;
        // Each sample's row pairs come in this many bands of PairsPerBand (more than one when there are too few samples to
        // share: batch 1).
        public int Bands, PairsPerBand;
        // Samples in the lanes instead (pooled, batches of 16 or more whose rows would leave lanes idle): an item is a chunk
        // of 16 samples and a strip, the chunk's input held pixel-major ([PaddedRows, PaddedColumns, 16], zero border).
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
            for (int t = 0; t < p.R * p.S; t++) job.TapOffsets[t] = (t / p.S * job.PaddedColumns + t % p.S) * Lanes;
            job.Items = job.Chunks * job.Strips;
            job.Parts = Math.Min(parts, job.Items);
            if (job.Parts == 1) RunChunks(ref job, 0, job.Items);
            else CpuThreading.ForParts(job.Parts, &RunChunkPart, &job);
            return;
        }
        // Fewer samples than two per part: each sample's rows are cut into bands, so that every part gets whole bands
        // with all their strips (one strip for up to 24 channels, so strips alone would leave a thread idle).
        int pairs = (job.Rows + 1) / 2;
        job.Bands = parts == 1 || p.N >= 2 * parts ? 1 : Math.Min(pairs, (2 * parts + p.N - 1) / p.N);
        job.PairsPerBand = (pairs + job.Bands - 1) / job.Bands;
        job.Bands = (pairs + job.PairsPerBand - 1) / job.PairsPerBand;
        job.Items = p.N * job.Bands * job.Strips;
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
        for (int strip = 0; strip < job.Strips; strip++) RowPairs(ref job, split, 0, strip, pair0, pair1);
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
        job.Strips = StripCount(p.K);
        job.W = packed;
        job.Bias = packed + (long)job.Strips * p.R * p.S * TapStride;
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

    private static long PackedLength(in Conv2dParams p) => (long)StripCount(p.K) * p.R * p.S * TapStride + p.K;

    /// <summary>Per strip the weights [taps][TapStride] (channel i of the strip at i, the rest zero), then the biases [K].</summary>
    private static void Pack(float* w, float* bias, in Conv2dParams p, float* packed)
    {
        int taps = p.R * p.S, strips = StripCount(p.K);
        new Span<float>(packed, (int)PackedLength(p)).Clear();
        for (int strip = 0; strip < strips; strip++)
        {
            int k0 = StripStart(p.K, strips, strip), k1 = StripStart(p.K, strips, strip + 1);
            float* dst = packed + (long)strip * taps * TapStride;
            for (int k = k0; k < k1; k++)
                for (int t = 0; t < taps; t++) dst[t * TapStride + k - k0] = w[(long)k * taps + t];
        }
        float* packedBias = packed + (long)strips * taps * TapStride;
        for (int k = 0; k < p.K; k++) packedBias[k] = bias != null ? bias[k] : 0f;
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        RunItems(ref job, (int)((long)part * job.Items / job.Parts), (int)((long)(part + 1) * job.Items / job.Parts));
    }

    /// <summary>
    /// Items [first, end): item / strips is a band of a sample (sample band / bands, row pairs PairsPerBand * (band % bands)
    /// onwards), item % strips its strip of output channels.
    /// </summary>
    private static void RunItems(ref Job job, int first, int end)
    {
        if (first >= end) return;
        ref readonly Conv2dParams p = ref job.P;
        // Rows come in pairs: after an odd last row, the split rows hold what its partner would read.
        int pairs = (job.Rows + 1) / 2;
        int paddedRows = 2 * (pairs * 2 - 1) + p.R;
        float* split = ConvScratch.Current.Get(ConvScratch.Slot.Columns, (long)paddedRows * 2 * job.HalfRow);
        int current = -1;
        for (int item = first; item < end; item++)
        {
            int band = item / job.Strips, strip = item % job.Strips;
            int n = band / job.Bands;
            int pair0 = band % job.Bands * job.PairsPerBand, pair1 = Math.Min(pairs, pair0 + job.PairsPerBand);
            if (band != current)
            {
                // Row pair i reads padded rows 4 i .. 4 i + 2 + R - 1.
                SplitRows(ref job, job.X + (long)n * p.H * p.W, split, 4 * pair0, 4 * (pair1 - 1) + 2 + p.R);
                current = band;
            }
            RowPairs(ref job, split, n, strip, pair0, pair1);
        }
    }

    private static void RunChunkPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        RunChunks(ref job, (int)((long)part * job.Items / job.Parts), (int)((long)(part + 1) * job.Items / job.Parts));
    }

    /// <summary>
    /// Items [first, end) with samples in the lanes: item / strips is a chunk of 16 samples, item % strips its strip of
    /// output channels. Each output position of the chunk is 16 sums at once (one per sample), so no lane is idle
    /// whatever the width of the rows; the chunk's input is transposed pixel-major once, and each strip's outputs go
    /// through a staging block ([channels, positions, 16]) back to the output layout.
    /// </summary>
    private static void RunChunks(ref Job job, int first, int end)
    {
        if (first >= end) return;
        ConvScratch scratch = ConvScratch.Current;
        int plane = job.OutRows * job.OutColumns;
        float* pixels = scratch.Get(ConvScratch.Slot.Columns, (long)job.PaddedRows * job.PaddedColumns * Lanes);
        float* stage = scratch.Get(ConvScratch.Slot.Rows, (long)Gemm.MaxStripRows * plane * Lanes);
        float* held = stackalloc float[Gemm.MaxStripRows * Lanes];
        int current = -1;
        for (int item = first; item < end; item++)
        {
            int chunk = item / job.Strips, strip = item % job.Strips;
            int n0 = chunk * Lanes, samples = Math.Min(Lanes, job.P.N - n0);
            if (chunk != current)
            {
                TransposeChunk(ref job, n0, samples, pixels);
                current = chunk;
            }
            int k0 = StripStart(job.P.K, job.Strips, strip), channels = StripStart(job.P.K, job.Strips, strip + 1) - k0;
            var window = new Window { Held = held, Stage = stage, ChannelStride = (long)plane * Lanes, Bias = job.Bias + k0 };
            float* w = job.W + (long)strip * job.P.R * job.P.S * TapStride;
            var call = new ChunkCall(job, pixels, w, &window);
            Gemm.WithRows(channels, ref call);
            // stage [k, position, lane] -> y: each sample's plane of each channel is contiguous in either layout.
            float* y = job.Y + (long)k0 * job.ChannelStride + n0 * job.SampleStride;
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
    /// The chunk's pooled outputs for the strip's TRows channels (weights at <paramref name="w"/>) into the staging block
    /// [k, position, lane]: per pooled position the four convolution outputs of its window, in the order of
    /// <see cref="PooledRows"/> (the two rows of the first column, then of the second), each through
    /// <see cref="Sums{TRows, TOutput}"/>.
    /// </summary>
    private static void ChunkOutputs<TRows, TKind, TBias>(ref Job job, float* pixels, float* w, Window* window)
        where TRows : struct, Gemm.IConstant where TKind : struct, Gemm.IConstant where TBias : struct, Gemm.IConstant
    {
        int taps = job.P.R * job.P.S;
        int* offsets = job.TapOffsets;
        long columns = job.PaddedColumns;
        var first = new WindowRows<Gemm.N0, TKind, TBias>(window);
        var middle = new WindowRows<Gemm.N1, TKind, TBias>(window);
        var last = new WindowRows<Gemm.N2, TKind, TBias>(window);
        for (int row = 0; row < job.OutRows; row++)
            for (int column = 0; column < job.OutColumns; column++)
            {
                // Convolution rows 2 row and 2 row + 1 start 4 row and 4 row + 2 padded rows down, columns likewise.
                float* upper = pixels + (4L * row * columns + 4 * column) * Lanes, lower = upper + 2 * columns * Lanes;
                window->Position = (long)(row * job.OutColumns + column) * Lanes;
                Sums<TRows, WindowRows<Gemm.N0, TKind, TBias>>(upper, offsets, taps, w, ref first);
                Sums<TRows, WindowRows<Gemm.N1, TKind, TBias>>(lower, offsets, taps, w, ref middle);
                Sums<TRows, WindowRows<Gemm.N1, TKind, TBias>>(upper + 2 * Lanes, offsets, taps, w, ref middle);
                Sums<TRows, WindowRows<Gemm.N2, TKind, TBias>>(lower + 2 * Lanes, offsets, taps, w, ref last);
            }
    }

    /// <summary>
    /// One output position for the strip's TRows channels: the sum over taps t, in order, of w[t * TapStride + i] times
    /// the 16 floats at <paramref name="first"/> + offsets[t], one fused multiply-add per channel and tap; each channel's
    /// sum then goes to <paramref name="output"/>. Not inlined: four copies in one loop ran out of registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Sums<TRows, TOutput>(float* first, int* offsets, int taps, float* w, ref TOutput output)
        where TRows : struct, Gemm.IConstant where TOutput : struct, Gemm.IStripRows
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        Vector512<float> c8 = default, c9 = default, c10 = default, c11 = default, c12 = default, c13 = default, c14 = default, c15 = default;
        Vector512<float> c16 = default, c17 = default, c18 = default, c19 = default, c20 = default, c21 = default, c22 = default, c23 = default;
        for (int t = 0; t < taps; t++, w += TapStride)
            Gemm.Accumulate<TRows>(Vector512.Load(first + offsets[t]), w,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                ref c12, ref c13, ref c14, ref c15, ref c16, ref c17, ref c18, ref c19, ref c20, ref c21, ref c22, ref c23);
        Gemm.Store<TRows, TOutput>(ref output,
            c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, c20, c21, c22, c23);
    }

    /// <summary>bias[i] and the activation on channel i's sums (<see cref="ConvKernels.EpilogueVector(Vector512{float}, float, bool, Vector512{float}, bool, int)"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Activate(Vector512<float> sum, float* bias, bool hasBias, int kind, int i)
    {
        // The bias an embedded broadcast: the add reads it from memory.
        if (hasBias) sum += Vector512.Create(bias[i]);
        return ConvKernels.EpilogueVector(sum, 0f, false, default, false, kind);
    }

    /// <summary>What the four phases of a chunk's pooling windows share: the held block, the staging block, the strip's biases and the window's position.</summary>
    private struct Window
    {
        public float* Held, Stage, Bias;
        public long ChannelStride, Position;
    }

    /// <summary>
    /// A chunk's pooling window, one convolution output at a time (TPhase 0: the first, held in <see cref="Window.Held"/>;
    /// 1: a middle one, taken into its maximum; 2: the last, whose maximum is stored at channel i's staging plane,
    /// <see cref="Window.Position"/> floats in), with the activation (TKind: the kind of
    /// <see cref="ConvKernels.EpilogueVector(Vector512{float}, float, bool, Vector512{float}, bool, int)"/>) and the bias
    /// (TBias 1) as types, so that a row's store tests nothing: with them read from fields, the tests on phase, bias and
    /// kind ran for every row of every position (as types, the stem takes 0.92-0.94 of its former time: step 123).
    /// </summary>
    private readonly struct WindowRows<TPhase, TKind, TBias>(Window* window) : Gemm.IStripRows
        where TPhase : struct, Gemm.IConstant where TKind : struct, Gemm.IConstant where TBias : struct, Gemm.IConstant
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Row(int i, Vector512<float> sum)
        {
            var value = Activate(sum, window->Bias, TBias.Value != 0, TKind.Value, i);
            float* held = window->Held + i * Lanes;
            if (TPhase.Value == 0) Vector512.Store(value, held);
            else if (TPhase.Value == 1) Vector512.Store(Vector512.Max(Vector512.Load(held), value), held);
            else Vector512.Store(Vector512.Max(Vector512.Load(held), value), window->Stage + i * window->ChannelStride + window->Position);
        }
    }

    /// <summary>
    /// Pooled rows of one sample: the upper convolution row's 16 columns are held, the lower row's taken into their
    /// maximum, whose column pairs' maxima (<see cref="Count"/> pooled columns) are stored at channel i of the output.
    /// </summary>
    private struct PooledRows(float* bias, bool hasBias, int kind, long channelStride) : Gemm.IStripRows
    {
        private fixed float _held[Gemm.MaxStripRows * Lanes];
        public float* Y;
        public int Count;
        public bool Lower;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Row(int i, Vector512<float> sum)
        {
            var value = Activate(sum, bias, hasBias, kind, i);
            float* held = (float*)Unsafe.AsPointer(ref _held[i * Lanes]);
            if (!Lower)
            {
                Vector512.Store(value, held);
                return;
            }
            var rows = Vector512.Max(Vector512.Load(held), value);
            var pairs = Vector512.Max(Avx512F.PermuteVar16x32(rows, Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14)),
                Avx512F.PermuteVar16x32(rows, Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15)));
            Avx512F.MaskStore(Y + i * channelStride, ConvKernels.FirstLanes(Count), pairs);
        }
    }

    /// <summary>One unpooled row of one sample: channel i's first <see cref="Count"/> outputs stored at <see cref="Y"/> + i * channelStride.</summary>
    private struct PlainRows(float* bias, bool hasBias, int kind, long channelStride) : Gemm.IStripRows
    {
        public float* Y;
        public int Count;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Row(int i, Vector512<float> sum) =>
            Avx512F.MaskStore(Y + i * channelStride, ConvKernels.FirstLanes(Count), Activate(sum, bias, hasBias, kind, i));
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
    /// Row pairs [pair0, pair1) of one sample for the channels of strip <paramref name="strip"/>: per 16 columns, the
    /// upper row's sums and then the lower row's (<see cref="Sums{TRows, TOutput}"/>), pooled together or stored as two
    /// rows (the lower one only if the output has it).
    /// </summary>
    private static void RowPairs(ref Job job, float* split, int n, int strip, int pair0, int pair1)
    {
        int k0 = StripStart(job.P.K, job.Strips, strip);
        float* w = job.W + (long)strip * job.P.R * job.P.S * TapStride;
        var call = new RowPairsCall(job, split, n, k0, w, pair0, pair1);
        Gemm.WithRows(StripStart(job.P.K, job.Strips, strip + 1) - k0, ref call);
    }

    /// <summary><see cref="ChunkOutputs{TRows, TKind, TBias}"/> with the strip's channel count as a type (<see cref="Gemm.WithRows"/>).</summary>
    private struct ChunkCall(Job job, float* pixels, float* w, Window* window) : Gemm.IRowsAction
    {
        private Job _job = job;

        public void Run<TRows>() where TRows : struct, Gemm.IConstant
        {
            switch (_job.Kind, _job.HasBias)
            {
                case (0, false): ChunkOutputs<TRows, Gemm.N0, Gemm.N0>(ref _job, pixels, w, window); break;
                case (0, true): ChunkOutputs<TRows, Gemm.N0, Gemm.N1>(ref _job, pixels, w, window); break;
                case (1, false): ChunkOutputs<TRows, Gemm.N1, Gemm.N0>(ref _job, pixels, w, window); break;
                case (1, true): ChunkOutputs<TRows, Gemm.N1, Gemm.N1>(ref _job, pixels, w, window); break;
                case (_, false): ChunkOutputs<TRows, Gemm.N2, Gemm.N0>(ref _job, pixels, w, window); break;
                default: ChunkOutputs<TRows, Gemm.N2, Gemm.N1>(ref _job, pixels, w, window); break;
            }
        }
    }

    /// <summary><see cref="RowPairs{TRows}"/> with the strip's channel count as a type (<see cref="Gemm.WithRows"/>).</summary>
    private struct RowPairsCall(Job job, float* split, int n, int k0, float* w, int pair0, int pair1) : Gemm.IRowsAction
    {
        private Job _job = job;

        public void Run<TRows>() where TRows : struct, Gemm.IConstant => RowPairs<TRows>(ref _job, split, n, k0, w, pair0, pair1);
    }

    private static void RowPairs<TRows>(ref Job job, float* split, int n, int k0, float* w, int pair0, int pair1)
        where TRows : struct, Gemm.IConstant
    {
        ref readonly Conv2dParams p = ref job.P;
        int taps = p.R * p.S;
        long stride = job.ChannelStride, line = 2L * job.HalfRow;
        float* y = job.Y + k0 * stride + n * job.SampleStride;
        float* bias = job.Bias + k0;
        int* offsets = job.TapOffsets;
        var pooled = new PooledRows(bias, job.HasBias, job.Kind, stride);
        var plain = new PlainRows(bias, job.HasBias, job.Kind, stride);
        for (int pair = pair0; pair < pair1; pair++)
        {
            for (int v = 0; v < job.Vectors; v++)
            {
                int q0 = v * Lanes;
                // Output rows 2 pair and 2 pair + 1 read padded rows two apart (stride 2).
                float* upper = split + 4 * pair * line + q0, lower = upper + 2 * line;
                if (job.Pooled)
                {
                    pooled.Y = y + (long)pair * job.OutColumns + v * (Lanes / 2);
                    pooled.Count = Math.Min(Lanes / 2, job.OutColumns - v * (Lanes / 2));
                    pooled.Lower = false;
                    Sums<TRows, PooledRows>(upper, offsets, taps, w, ref pooled);
                    pooled.Lower = true;
                    Sums<TRows, PooledRows>(lower, offsets, taps, w, ref pooled);
                    continue;
                }
                plain.Y = y + (long)2 * pair * p.Q + q0;
                plain.Count = Math.Min(Lanes, p.Q - q0);
                Sums<TRows, PlainRows>(upper, offsets, taps, w, ref plain);
                if (2 * pair + 1 >= p.P) continue;
                plain.Y += p.Q;
                Sums<TRows, PlainRows>(lower, offsets, taps, w, ref plain);
            }
        }
    }
}
