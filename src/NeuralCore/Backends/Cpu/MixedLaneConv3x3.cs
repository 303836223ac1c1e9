using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// A 3x3 "same" convolution of one sample's map of two or three rows of two to six columns (MNIST's 3 x 6 map at
/// batch 1), written position-major like <see cref="NarrowMapConv"/>, whose output channels are split by how they fill
/// the lanes: each whole block of 16 channels has the channels in the lanes (one multiply-add per position, its input
/// broadcast from a padded plane at an offset fixed when the kernel is compiled), and the 1 to 5 channels left over have
/// the positions in the lanes (per tap one or two loads of the padded plane, each feeding one multiply-add per channel,
/// as in <see cref="PlaneConv3x3"/>). 19 channels on 3 x 6 then take 18 + 6 multiply-adds per input channel and tap,
/// where the narrow map takes 36 (16 + 8 lanes for each of the 18 positions, and on a core that runs a 256-bit
/// multiply-add at the cost of a 512-bit one the 8 cost as much as the 16).
/// </summary>
/// <remarks>
/// Each input plane is copied into rows 8 floats wide with a zero border. Each output is summed from zero, one fused
/// multiply-add per input channel and tap in (channel, r, s) order, taps off the map multiplying a zero, then act(sum +
/// bias + residual): the operations and order of <see cref="ImplicitGemmConv"/>'s fused path, so the same bits. The
/// input may be channel-major or position-major; the residual, when given, is position-major. It runs on the calling
/// thread (its work is about a microsecond). Inference plans only (<see cref="CpuInferencePlan"/>).
/// </remarks>
internal static unsafe class MixedLaneConv3x3
{
    private const int Block = 16;
    private const int Taps = 9;
    private const int MaxRows = 3;
    private const int MaxWidth = 6;
    // A padded row: a zero column, up to six values, a zero column (the next row's first column is the other zero).
    private const int RowFloats = 8;
    // Five padded rows (40 floats) and what the last tap's 24-lane load reads past them: rows 2-4 from column 2.
    private const int PaddedPlane = 48;

    /// <summary>Whether inference plans use it (tests turn it off to compare it with the narrow map).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>
    /// True for a 3x3, stride-1, padding-1, undilated, ungrouped convolution of one sample whose map has two or three rows
    /// of two to six columns (so that every tap reaches the map; the narrow map drops those that do not), where the
    /// 512-bit kernels run, and whose output channels leave over 1 to W - 1 channels past their whole blocks of 16 (19 on
    /// 3 x 6: 3). Those channels' padded rows (8 lanes a row, H rows a channel) then take fewer lanes than the narrow map
    /// gives them (a vector of at least 8 lanes for each of the H x W positions); with none left over, the narrow map
    /// fills its lanes already.
    /// </summary>
    internal static bool CanRun(in Conv2dParams p)
    {
        if (!Enabled || !Avx512F.IsSupported || Gemm.Kind != Gemm.KernelKind.Vector512) return false;
        if (p.N != 1 || p.R != 3 || p.S != 3 || p.StrideH != 1 || p.StrideW != 1 || p.PadH != 1 || p.PadW != 1
            || p.DilationH != 1 || p.DilationW != 1 || p.Groups != 1 || p.H is < 2 or > MaxRows || p.W is < 2 or > MaxWidth)
            return false;
        int left = p.K % Block;
        return left > 0 && left < p.W;
    }

    /// <summary>
    /// Weights packed once (an inference plan's step): the whole blocks as [block][C][9 taps][16], then the channels left
    /// over as [C][9 taps][left].
    /// </summary>
    internal sealed class Weights
    {
        private readonly float[] _blocks, _left;

        internal Weights(ReadOnlySpan<float> w, in Conv2dParams p)
        {
            if (!CanRun(p)) throw new ArgumentException("MixedLaneConv3x3.Weights: a geometry CanRun does not admit.", nameof(p));
            if (w.Length != p.K * p.C * Taps)
                throw new ArgumentException($"MixedLaneConv3x3.Weights: {w.Length} weights for a {p.K} x {p.C} x 3 x 3 kernel.", nameof(w));
            C = p.C;
            K = p.K;
            Blocks = p.K / Block;
            Left = p.K % Block;
            _blocks = GC.AllocateArray<float>(Math.Max(1, Blocks * p.C * Taps * Block), pinned: true);
            _left = GC.AllocateArray<float>(p.C * Taps * Left, pinned: true);
            for (int k = 0; k < p.K; k++)
                for (int c = 0; c < p.C; c++)
                    for (int t = 0; t < Taps; t++)
                    {
                        float value = w[(k * p.C + c) * Taps + t];
                        if (k < Blocks * Block) _blocks[((k / Block * p.C + c) * Taps + t) * Block + k % Block] = value;
                        else _left[(c * Taps + t) * Left + k - Blocks * Block] = value;
                    }
        }

        /// <summary>The input and output channels the weights were packed for.</summary>
        internal int C { get; }

        /// <inheritdoc cref="C"/>
        internal int K { get; }

        /// <summary>Whole blocks of 16 output channels, and the channels left over after them.</summary>
        internal int Blocks { get; }

        /// <inheritdoc cref="Blocks"/>
        internal int Left { get; }

        /// <summary>The blocks' packed weights (the array is pinned).</summary>
        internal float* BlockWeights => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_blocks));

        /// <summary>The left-over channels' packed weights (the array is pinned).</summary>
        internal float* LeftWeights => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_left));
    }

    private struct Job
    {
        public float* Padded, Blocks, Left, Bias, Residual, Y;
        public int C, K, Width, Rows, Kind;
    }

    /// <summary>
    /// y [positions, K] = act(conv2d(x, w) + bias + residual) for one sample, position-major; x channel-major [C, H, W] or,
    /// with <paramref name="xPositionMajor"/>, position-major [H, W, C]; residual (position-major) and bias may be null;
    /// <paramref name="kind"/>: 0 no activation, 1 ReLU, 2 Hardswish.
    /// </summary>
    internal static void Forward(float* x, bool xPositionMajor, Weights weights, float* bias, float* y, in Conv2dParams p, float* residual, int kind)
    {
        if (!CanRun(p)) throw new ArgumentException("MixedLaneConv3x3.Forward: a geometry CanRun does not admit.", nameof(p));
        if (weights.C != p.C || weights.K != p.K)
            throw new ArgumentException($"MixedLaneConv3x3.Forward: weights packed for {weights.C} -> {weights.K} channels, not {p.C} -> {p.K}.", nameof(weights));
        var job = new Job
        {
            Blocks = weights.BlockWeights, Left = weights.LeftWeights, Bias = bias, Residual = residual, Y = y,
            C = p.C, K = p.K, Width = p.W, Rows = p.H, Kind = kind,
            Padded = ConvScratch.Current.Get(ConvScratch.Slot.Padded, (long)p.C * PaddedPlane),
        };
        Pad(x, xPositionMajor, ref job);
        // The last block (or none, below 16 channels) carries the channels left over, whose multiply-adds, one chain per
        // channel, then hide their latency behind the block's.
        for (int block = 0; block < weights.Blocks - 1; block++) Rows(ref job, block, 0);
        Rows(ref job, weights.Blocks - 1, weights.Left);
        GC.KeepAlive(weights);
    }

    /// <summary>Each input plane into the padded planes: row i at padded row i + 1, column j at padded column j + 1, zero everywhere else.</summary>
    private static void Pad(float* x, bool xPositionMajor, ref Job job)
    {
        int width = job.Width, plane = job.Rows * width;
        if (!xPositionMajor)
        {
            PlaneConv3x3.Pad(x, job.Padded, job.C, PaddedPlane, width, job.Rows, plane);
            return;
        }
        for (int c = 0; c < job.C; c++)
        {
            float* padded = job.Padded + c * PaddedPlane;
            for (int i = 0; i < PaddedPlane; i += Block) Vector512.Store(Vector512<float>.Zero, padded + i);
            for (int i = 0; i < job.Rows; i++)
                for (int j = 0; j < width; j++)
                    padded[(i + 1) * RowFloats + j + 1] = x[(long)(i * width + j) * job.C + c];
        }
    }

    private static void Rows(ref Job job, int block, int left)
    {
        switch (job.Rows)
        {
            case 2: Widths<Gemm.N2>(ref job, block, left); break;
            default: Widths<Gemm.N3>(ref job, block, left); break;
        }
    }

    private static void Widths<TRows>(ref Job job, int block, int left) where TRows : struct, Gemm.IConstant
    {
        switch (job.Width)
        {
            case 2: LeftOver<TRows, Gemm.N2>(ref job, block, left); break;
            case 3: LeftOver<TRows, Gemm.N3>(ref job, block, left); break;
            case 4: LeftOver<TRows, Gemm.N4>(ref job, block, left); break;
            case 5: LeftOver<TRows, Gemm.N5>(ref job, block, left); break;
            default: LeftOver<TRows, Gemm.N6>(ref job, block, left); break;
        }
    }

    private static void LeftOver<TRows, TWidth>(ref Job job, int block, int left) where TRows : struct, Gemm.IConstant where TWidth : struct, Gemm.IConstant
    {
        switch (left)
        {
            case 0: WithBlock<TRows, TWidth, Gemm.N0>(ref job, block); break;
            case 1: WithBlock<TRows, TWidth, Gemm.N1>(ref job, block); break;
            case 2: WithBlock<TRows, TWidth, Gemm.N2>(ref job, block); break;
            case 3: WithBlock<TRows, TWidth, Gemm.N3>(ref job, block); break;
            case 4: WithBlock<TRows, TWidth, Gemm.N4>(ref job, block); break;
            default: WithBlock<TRows, TWidth, Gemm.N5>(ref job, block); break;
        }
    }

    private static void WithBlock<TRows, TWidth, TLeft>(ref Job job, int block)
        where TRows : struct, Gemm.IConstant where TWidth : struct, Gemm.IConstant where TLeft : struct, Gemm.IConstant
    {
        if (block >= 0) Kernel<TRows, TWidth, Gemm.N1, TLeft>(ref job, block);
        else Kernel<TRows, TWidth, Gemm.N0, TLeft>(ref job, block);
    }

    /// <summary>Where output position <paramref name="position"/> (row-major in a map <paramref name="width"/> wide) lies in a padded plane, less the border.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Offset(int position, int width) => position / width * RowFloats + position % width;

    /// <summary>
    /// Block <paramref name="block"/>'s 16 output channels in the lanes (when TBlock is 1), one accumulator per
    /// position, and the TLeft channels left over after the last block with the positions in the lanes. Per input
    /// channel and tap: the block's 16 weights loaded once and each position's input broadcast into its multiply-add
    /// from the padded plane at the tap's and position's fixed offset; the padded plane at the tap's offset loaded once
    /// (rows 0 and 1 in a 512-bit vector, row 2 in a 256-bit one) and multiplied into each left-over channel's
    /// accumulators, its weight broadcast. Then act(sum + bias + residual) stored per position and per left-over channel.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining), SkipLocalsInit]
    private static void Kernel<TRows, TWidth, TBlock, TLeft>(ref Job job, int block)
        where TRows : struct, Gemm.IConstant where TWidth : struct, Gemm.IConstant
        where TBlock : struct, Gemm.IConstant where TLeft : struct, Gemm.IConstant
    {
        int n = TBlock.Value * TRows.Value * TWidth.Value, width = TWidth.Value, left = TLeft.Value, c = job.C;
        bool third = TRows.Value == 3;
        float* w = job.Blocks + (long)Math.Max(block, 0) * c * Taps * Block, wl = job.Left;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default;
        Vector512<float> a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
        Vector512<float> a12 = default, a13 = default, a14 = default, a15 = default, a16 = default, a17 = default;
        Vector512<float> l0 = default, l1 = default, l2 = default, l3 = default, l4 = default;
        Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default, e4 = default;
        for (int ci = 0; ci < c; ci++)
        {
            float* plane = job.Padded + ci * PaddedPlane;
            for (int r = 0; r < 3; r++)
                for (int s = 0; s < 3; s++, w += n > 0 ? Block : 0, wl += left)
                {
                    // Position (i, j) reads padded (i + r, j + s); so does lane 8 i + j of the left-over channels' vectors.
                    float* at = plane + r * RowFloats + s;
                    if (n > 0)
                    {
                        var wv = Vector512.Load(w);
                        Multiply(at + Offset(0, width), wv, ref a0);
                        if (n > 1) Multiply(at + Offset(1, width), wv, ref a1);
                        if (n > 2) Multiply(at + Offset(2, width), wv, ref a2);
                        if (n > 3) Multiply(at + Offset(3, width), wv, ref a3);
                        if (n > 4) Multiply(at + Offset(4, width), wv, ref a4);
                        if (n > 5) Multiply(at + Offset(5, width), wv, ref a5);
                        if (n > 6) Multiply(at + Offset(6, width), wv, ref a6);
                        if (n > 7) Multiply(at + Offset(7, width), wv, ref a7);
                        if (n > 8) Multiply(at + Offset(8, width), wv, ref a8);
                        if (n > 9) Multiply(at + Offset(9, width), wv, ref a9);
                        if (n > 10) Multiply(at + Offset(10, width), wv, ref a10);
                        if (n > 11) Multiply(at + Offset(11, width), wv, ref a11);
                        if (n > 12) Multiply(at + Offset(12, width), wv, ref a12);
                        if (n > 13) Multiply(at + Offset(13, width), wv, ref a13);
                        if (n > 14) Multiply(at + Offset(14, width), wv, ref a14);
                        if (n > 15) Multiply(at + Offset(15, width), wv, ref a15);
                        if (n > 16) Multiply(at + Offset(16, width), wv, ref a16);
                        if (n > 17) Multiply(at + Offset(17, width), wv, ref a17);
                    }
                    if (left > 0)
                    {
                        var x0 = Vector512.Load(at);
                        var x1 = third ? Vector256.Load(at + Block) : default;
                        Broadcast(wl, x0, x1, ref l0, ref e0, third);
                        if (left > 1) Broadcast(wl + 1, x0, x1, ref l1, ref e1, third);
                        if (left > 2) Broadcast(wl + 2, x0, x1, ref l2, ref e2, third);
                        if (left > 3) Broadcast(wl + 3, x0, x1, ref l3, ref e3, third);
                        if (left > 4) Broadcast(wl + 4, x0, x1, ref l4, ref e4, third);
                    }
                }
        }
        int k0 = block * Block;
        if (n > 0) StorePosition(ref job, k0, 0, a0);
        if (n > 1) StorePosition(ref job, k0, 1, a1);
        if (n > 2) StorePosition(ref job, k0, 2, a2);
        if (n > 3) StorePosition(ref job, k0, 3, a3);
        if (n > 4) StorePosition(ref job, k0, 4, a4);
        if (n > 5) StorePosition(ref job, k0, 5, a5);
        if (n > 6) StorePosition(ref job, k0, 6, a6);
        if (n > 7) StorePosition(ref job, k0, 7, a7);
        if (n > 8) StorePosition(ref job, k0, 8, a8);
        if (n > 9) StorePosition(ref job, k0, 9, a9);
        if (n > 10) StorePosition(ref job, k0, 10, a10);
        if (n > 11) StorePosition(ref job, k0, 11, a11);
        if (n > 12) StorePosition(ref job, k0, 12, a12);
        if (n > 13) StorePosition(ref job, k0, 13, a13);
        if (n > 14) StorePosition(ref job, k0, 14, a14);
        if (n > 15) StorePosition(ref job, k0, 15, a15);
        if (n > 16) StorePosition(ref job, k0, 16, a16);
        if (n > 17) StorePosition(ref job, k0, 17, a17);
        if (left == 0) return;
        // Through memory to the stores, so that no accumulator lives across a call (the JIT had kept them on the stack
        // inside the loop).
        float* sums = stackalloc float[5 * 2 * Block];
        Keep(sums, l0, e0);
        if (left > 1) Keep(sums + 2 * Block, l1, e1);
        if (left > 2) Keep(sums + 4 * Block, l2, e2);
        if (left > 3) Keep(sums + 6 * Block, l3, e3);
        if (left > 4) Keep(sums + 8 * Block, l4, e4);
        for (int m = 0; m < left; m++) StoreChannel(ref job, job.K - left + m, sums + m * 2 * Block);
    }

    /// <summary>acc += broadcast(*x) * w, the broadcast inside the multiply-add (a value read through a pointer, not passed in a register).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Multiply(float* x, Vector512<float> w, ref Vector512<float> acc) =>
        acc = Vector512.FusedMultiplyAdd(Vector512.Create(*x), w, acc);

    /// <summary>Position <paramref name="position"/>'s 16 channels from <paramref name="k0"/>: act(sum + bias + residual), one whole vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePosition(ref Job job, int k0, int position, Vector512<float> sum)
    {
        long at = (long)position * job.K + k0;
        bool hasBias = job.Bias != null, hasResidual = job.Residual != null;
        var bias = hasBias ? Vector512.Load(job.Bias + k0) : default;
        var residual = hasResidual ? Vector512.Load(job.Residual + at) : default;
        Vector512.Store(ConvKernels.EpilogueVector(sum, bias, hasBias, residual, hasResidual, job.Kind), job.Y + at);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Keep(float* at, Vector512<float> a, Vector256<float> e)
    {
        Vector512.Store(a, at);
        Vector256.Store(e, at + Block);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Broadcast(float* w, Vector512<float> x0, Vector256<float> x1, ref Vector512<float> a, ref Vector256<float> e, bool third)
    {
        // One broadcast from memory for both vectors (the JIT had loaded the weight into a register and broadcast it twice).
        var weight = Vector512.Create(*w);
        a = Vector512.FusedMultiplyAdd(weight, x0, a);
        if (third) e = Vector256.FusedMultiplyAdd(weight.GetLower(), x1, e);
    }

    /// <summary>
    /// Output channel <paramref name="k"/>'s positions (row i, column j in lane 8 i + j of the two vectors): act(sum +
    /// bias + residual), the residual gathered into those lanes and the result scattered to the position-major rows.
    /// </summary>
    [SkipLocalsInit]
    private static void StoreChannel(ref Job job, int k, float* sums)
    {
        float* lanes = stackalloc float[MaxRows * RowFloats];
        int width = job.Width, rows = job.Rows;
        bool hasBias = job.Bias != null, hasResidual = job.Residual != null;
        float bias = hasBias ? job.Bias[k] : 0f;
        Vector512<float> r0 = default;
        Vector256<float> r1 = default;
        if (hasResidual)
        {
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < width; j++)
                    lanes[i * RowFloats + j] = job.Residual[(long)(i * width + j) * job.K + k];
            r0 = Vector512.Load(lanes);
            r1 = Vector256.Load(lanes + Block);
        }
        Vector512.Store(ConvKernels.EpilogueVector(Vector512.Load(sums), bias, hasBias, r0, hasResidual, job.Kind), lanes);
        Vector256.Store(ConvKernels.EpilogueVector(Vector256.Load(sums + Block), Vector256.Create(bias), hasBias, r1, hasResidual, job.Kind), lanes + Block);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < width; j++)
                job.Y[(long)(i * width + j) * job.K + k] = lanes[i * RowFloats + j];
    }
}
