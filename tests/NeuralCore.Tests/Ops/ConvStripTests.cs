using System.Runtime.Intrinsics;
using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// The implicit GEMM's strips (<see cref="Gemm.MultiplyStrip"/>, <see cref="Gemm.MultiplyStrip3x3"/>): every output
/// channel of a "same" convolution with at most 24 of them, 16 columns at a time, read from the input where it lies.
/// Each kernel against a scalar chain of fused multiply-adds in the tiles' order (the same bits), and the convolutions
/// that take them against the same convolutions through the tiles (<see cref="ImplicitGemmConv.Strips"/> off).
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed unsafe class ConvStripTests
{
    private const int Width = 7, Height = 5, Channels = 3;

    public static IEnumerable<TheoryDataRow<int, bool, bool, bool>> Kernels()
    {
        for (int rows = 1; rows <= Gemm.MaxStripRows; rows++)
            foreach (bool readWhole in new[] { true, false })
            {
                yield return new(rows, false, false, readWhole);
                yield return new(rows, false, true, readWhole);
                if (rows <= Gemm.MaxStrip3x3Rows) yield return new(rows, true, false, readWhole);
            }
    }

    /// <summary>
    /// Every row count of both kernels: the sums in (channel, tap) order, one fused multiply-add each, then bias,
    /// residual and activation as <see cref="ConvKernels.EpilogueVector(Vector512{float}, float, bool, Vector512{float}, bool, int)"/>
    /// applies them; the masked-off lanes read as zero whatever the input holds there (NaN here), and only the first
    /// lanes are written when fewer than 16 are live. The generic kernel also with taps at offsets of no 3x3.
    /// </summary>
    [Theory]
    [MemberData(nameof(Kernels))]
    public void SumsInTheTilesOrderAndAppliesTheEpilogue(int rows, bool unrolled, bool irregularTaps, bool readWhole)
    {
        if (!Vector512.IsHardwareAccelerated || Gemm.Kind != Gemm.KernelKind.Vector512)
            Assert.Skip("This CPU has no AVX-512: the strips do not run.");
        int taps = irregularTaps ? 4 : 9;
        long[] offsets = irregularTaps
            ? [0, 2, -Width, 2 * Width + 1]
            : Enumerable.Range(0, 9).Select(t => (long)(t / 3 - 1) * Width + t % 3 - 1).ToArray();
        int lanes = readWhole ? 16 : 1 + rows % 15;
        int kind = rows % 3;
        bool withBias = rows % 2 == 1, withResidual = rows % 4 < 2;
        var random = new Random(rows * 8 + (unrolled ? 4 : 0) + (irregularTaps ? 2 : 0) + (readWhole ? 1 : 0));
        // The input with a margin of two rows either side, so that every tap's 16 floats lie inside the buffer.
        const int margin = 2 * Width + 2;
        long channelStride = Height * Width + 2 * margin;
        float[] x = Enumerable.Range(0, (int)(Channels * channelStride + 2 * margin + 16)).Select(_ => Next(random)).ToArray();
        var liveLanes = new bool[taps, 16];
        var masks = new Vector512<float>[2 * taps];
        for (int t = 0; t < taps; t++)
        {
            var lanesOn = new float[16];
            for (int l = 0; l < 16; l++)
            {
                liveLanes[t, l] = l < lanes && random.Next(3) > 0;
                lanesOn[l] = BitConverter.Int32BitsToSingle(liveLanes[t, l] ? -1 : 0);
            }
            masks[2 * t] = Vector512.Create(lanesOn);
            masks[2 * t + 1] = Vector512<float>.Zero;
        }
        // What the masked-off lanes would read, where no live lane reads: NaN, which must not reach the sums.
        var read = new HashSet<long>();
        for (int c = 0; c < Channels; c++)
            for (int t = 0; t < taps; t++)
                for (int l = 0; l < 16; l++)
                    if (liveLanes[t, l]) read.Add(2 * margin + c * channelStride + offsets[t] + l);
        for (int c = 0; c < Channels; c++)
            for (int t = 0; t < taps; t++)
                for (int l = 0; l < 16; l++)
                {
                    long at = 2 * margin + c * channelStride + offsets[t] + l;
                    if (liveLanes[t, l] || read.Contains(at)) continue;
                    x[at] = float.NaN;
                }
        float[] w = Enumerable.Range(0, Channels * taps * Gemm.PanelColumns).Select(_ => Next(random)).ToArray();
        float[]? bias = withBias ? Enumerable.Range(0, rows).Select(_ => Next(random)).ToArray() : null;
        const int ldr = 40, ldc = 24;
        float[]? residual = withResidual ? Enumerable.Range(0, rows * ldr).Select(_ => Next(random)).ToArray() : null;
        float[] y = Enumerable.Repeat(12345f, rows * ldc).ToArray();

        fixed (float* px = x, pw = w, pb = bias, pr = residual, py = y)
        fixed (long* po = offsets)
        fixed (Vector512<float>* pm = masks)
        {
            // Column 0 of the strip sits at the first position of the input past the margin.
            var input = new Gemm.StripInput(px + 2 * margin, channelStride, Channels, taps, po, pm, Width);
            var output = new Gemm.StripOutput(py, ldc, pb, pr, ldr, kind, lanes);
            if (unrolled) Gemm.MultiplyStrip3x3(rows, pw, input, readWhole, output);
            else Gemm.MultiplyStrip(rows, pw, input, readWhole, output);
        }

        for (int i = 0; i < rows; i++)
            for (int l = 0; l < ldc; l++)
            {
                if (l >= lanes)
                {
                    Assert.Equal(12345f, y[i * ldc + l]);
                    continue;
                }
                float sum = 0f;
                for (int c = 0; c < Channels; c++)
                    for (int t = 0; t < taps; t++)
                    {
                        float v = liveLanes[t, l] ? x[2 * margin + c * channelStride + offsets[t] + l] : 0f;
                        sum = MathF.FusedMultiplyAdd(w[(c * taps + t) * Gemm.PanelColumns + i], v, sum);
                    }
                if (bias is not null) sum += bias[i];
                if (residual is not null) sum += residual[i * ldr + l];
                if (kind == 1) sum = MathF.Max(sum, 0f);
                if (kind == 2) sum = sum * MathF.Min(MathF.Max(sum + 3f, 0f), 6f) * (1f / 6f);
                Assert.True(float.IsFinite(sum));
                Assert.Equal(BitConverter.SingleToInt32Bits(sum), BitConverter.SingleToInt32Bits(y[i * ldc + l]));
            }
    }

    [Fact]
    public void RefusesRowCountsPastItsRegisters()
    {
        var input = new Gemm.StripInput(null, 0, 0, 0, null, null, 0);
        var output = new Gemm.StripOutput(null, 0, null, null, 0, 0, 16);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Gemm.MultiplyStrip(Gemm.MaxStripRows + 1, null, input, true, output));
        Assert.Contains("1 to 24 output channels", e.Message);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => Gemm.MultiplyStrip3x3(Gemm.MaxStrip3x3Rows + 1, null, input, true, output));
        Assert.Contains("1 to 22 output channels", e.Message);
    }

    /// <summary>
    /// The training passes' convolutions (sample-major, forward and backward data) with strips and with the tiles give
    /// the same bits: mel's and MNIST's pruned 3x3 maps, one sample at a time (planes of 64 positions or more) and in
    /// chunks, the backward data of 19 -> 38 (19 outputs), the unrolled 3x3 up to 22 channels and the generic strip past
    /// it, a 5x5, a dilated 3x3 (nine taps, but not at the unrolled offsets), a one-row map (three taps kept), partial
    /// panels, and 25 channels, which stay on the tiles. An infinity at the end of a row must reach only the outputs whose
    /// taps cover it, not the next row's through their left taps.
    /// </summary>
    [Theory]
    [InlineData(3, 19, 31, 24, 19, 3, 1)]
    [InlineData(2, 38, 7, 24, 19, 3, 1)]
    [InlineData(4, 19, 6, 6, 19, 3, 1)]
    [InlineData(4, 3, 6, 6, 8, 3, 1)]
    [InlineData(2, 5, 15, 24, 23, 3, 1)]
    [InlineData(2, 7, 9, 10, 24, 3, 1)]
    [InlineData(2, 4, 9, 11, 13, 5, 1)]
    [InlineData(2, 3, 9, 12, 6, 3, 2)]
    [InlineData(3, 6, 1, 20, 9, 3, 1)]
    [InlineData(2, 6, 9, 10, 25, 3, 1)]
    public void TrainingConvolutionsGiveTheTilesBits(int n, int c, int h, int w, int k, int kernel, int dilation)
    {
        int pad = kernel / 2 * dilation;
        var p = new Conv2dParams(n, c, h, w, k, kernel, kernel, 1, 1, pad, pad, dilation, dilation, 1);
        if (!ImplicitGemmConv.Supports(p)) Assert.Skip("This CPU has no AVX-512: the implicit GEMM does not run.");
        var g = new Generator(131);
        var values = Tensor.Randn([n, c, h, w], g).ToArray();
        // Sample 1, channel 1, row 0, last column.
        values[(c + 1) * h * w + w - 1] = float.PositiveInfinity;
        var x = Tensor.FromArray(values, n, c, h, w);
        var weight = Tensor.Randn([k, c, kernel, kernel], g);
        var bias = Tensor.Randn([k], g);
        var dy = Tensor.Randn([n, k, h, w], g);
        var (y, dx) = Run();
        ImplicitGemmConv.Strips = false;
        try
        {
            var (yTiles, dxTiles) = Run();
            Assert.Equal(ConvPathRuns.Bits(yTiles), ConvPathRuns.Bits(y));
            Assert.Equal(ConvPathRuns.Bits(dxTiles), ConvPathRuns.Bits(dx));
        }
        finally
        {
            ImplicitGemmConv.Strips = true;
        }
        // The infinity reaches, per output channel, the outputs its taps cover inside the map: as many as the kernel has
        // live taps there (rows below it only, on a map of more than one row).
        int rowsReached = Enumerable.Range(0, kernel).Count(r => (uint)(pad - r * dilation) < (uint)h);
        int columnsReached = Enumerable.Range(0, kernel).Count(s => (uint)(w - 1 - (s * dilation - pad)) < (uint)w);
        Assert.Equal(k * rowsReached * columnsReached, y.Count(float.IsInfinity));

        (float[] Y, float[] Dx) Run()
        {
            var yOut = Tensor.Zeros([n, k, h, w]);
            var dxOut = Tensor.Zeros([n, c, h, w]);
            CpuBackend.Instance.Conv2d(x, weight, bias, yOut, p);
            CpuBackend.Instance.Conv2dBackwardData(dy, weight, dxOut, p);
            return (yOut.ToArray(), dxOut.ToArray());
        }
    }

    /// <summary>
    /// The inference plans' convolutions (channel-major, the whole batch's columns, one or two threads) with strips and
    /// with the tiles give the same bits with every epilogue the strips apply: bias or none, a residual, ReLU or
    /// Hardswish, and a fused 2 x 1 max pool (the strips write the block's unpooled rows, pooled as the tiles' are), for
    /// 3x3s and for 1x1s with a fused pool, the 1x1s that run in strips where they do not read their input in place
    /// (which takes them here, and is switched off: <see cref="ImplicitGemmInPlaceTests"/> compares it with the tiles).
    /// </summary>
    [Theory]
    [InlineData(4, 19, 6, 6, 19, 3, 0, false, false, false)]
    [InlineData(4, 19, 6, 6, 19, 3, 1, true, true, false)]
    [InlineData(2, 19, 15, 24, 19, 3, 2, true, false, true)]
    [InlineData(3, 7, 6, 6, 24, 3, 1, false, true, true)]
    [InlineData(1, 38, 7, 24, 19, 3, 2, true, true, false)]
    [InlineData(2, 19, 31, 24, 19, 1, 1, true, true, true)]     // mel's pruned 1x1 + residual + ReLU + pool
    [InlineData(3, 19, 6, 6, 19, 1, 2, false, false, true)]
    [InlineData(2, 5, 7, 9, 11, 1, 0, true, true, false)]      // a 1x1 without a pool stays on the tiles
    public void InferenceConvolutionsGiveTheTilesBits(int n, int c, int h, int w, int k, int kernel, int kind, bool withBias, bool withResidual,
        bool pooled)
    {
        var p = new Conv2dParams(n, c, h, w, k, kernel, kernel, 1, 1, kernel / 2, kernel / 2, 1, 1, 1);
        if (!ImplicitGemmConv.Supports(p)) Assert.Skip("This CPU has no AVX-512: the implicit GEMM does not run.");
        Pool2dParams? pool = pooled ? new Pool2dParams(n, k, h, w, 2, 1, 2, 1, 0, 0) : null;
        int plane = h * w, outPlane = pool is { } q ? q.P * q.Q : plane;
        float[] x = Reference.ToFloat(Reference.Random(c * n * plane, 141));
        float[] wt = Reference.ToFloat(Reference.Random(k * c * kernel * kernel, 142));
        float[]? bias = withBias ? Reference.ToFloat(Reference.Random(k, 143)) : null;
        float[]? residual = withResidual ? Reference.ToFloat(Reference.Random(k * n * plane, 144)) : null;
        var weights = new ImplicitGemmConv.Weights(wt, p);
        var activation = kind == 2 ? UnaryOp.Hardswish : UnaryOp.Relu;
        int saved = CpuThreading.Threads;
        ImplicitGemmConv.InPlacePointwise = false;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                CpuThreading.Threads = threads;
                float[] strips = Run(), tiles;
                ImplicitGemmConv.Strips = false;
                try
                {
                    tiles = Run();
                }
                finally
                {
                    ImplicitGemmConv.Strips = true;
                }
                Assert.Equal(ConvPathRuns.Bits(tiles), ConvPathRuns.Bits(strips));
                Assert.All(strips, v => Assert.True(float.IsFinite(v)));
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
            ImplicitGemmConv.InPlacePointwise = true;
        }
        GC.KeepAlive(weights);

        float[] Run()
        {
            float[] y = new float[k * n * outPlane];
            fixed (float* xp = x, bp = bias, rp = residual, yp = y)
                ImplicitGemmConv.Forward(xp, weights.View(), bp, yp, p, rp, kind != 0, activation, 0f, 0f,
                    pool is { } fused ? new ImplicitGemmConv.FusedPool(fused) : null);
            return y;
        }
    }

    private static float Next(Random random) => (float)(random.NextDouble() * 2 - 1);
}
