using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// <see cref="ChannelLaneWeightGradient"/> (stride-1 weight gradients with the input channels in the lanes) against a
/// float64 sum of products and against the GEMM path: row patches of 1 to 15 vectors (runs of 6, 4 + 4, 5 + 5 + 5),
/// the channels in one plane and, on planes of 128 positions or more, in two (a run reading both), 1 to 76 output
/// channels in blocks of 1 to 5, kernels of 1 to 5 taps a side, no padding and padding past the kernel's reach,
/// on one to three threads, and non-finite values. Turns paths off process-wide, so runs alone.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed class ChannelLaneWeightGradientTests
{
    private const string NoAvx512 = "This CPU has no AVX-512: the channel-lane weight gradient does not run.";

    private static unsafe float[] Run(float[] dy, float[] x, in Conv2dParams p)
    {
        var dw = new float[p.K * p.C * p.R * p.S];
        Array.Fill(dw, float.NaN);
        fixed (float* pdy = dy, px = x, pdw = dw) ChannelLaneWeightGradient.Run(pdy, px, pdw, p);
        return dw;
    }

    [Theory]
    // N, C, H, W, K, R, S, padH, padW
    [InlineData(2, 32, 31, 24, 32, 3, 3, 1, 1)] // the big model's stage 1 on mel: patches of 6 vectors
    [InlineData(3, 19, 6, 6, 19, 3, 3, 1, 1)]   // the pruned model's on MNIST: 57 floats in 4 vectors; 19 = 4 + 3 x 5
    [InlineData(2, 19, 6, 7, 1, 3, 3, 1, 1)]    // one output channel
    [InlineData(2, 19, 5, 6, 11, 3, 3, 1, 1)]   // 11 = 3 + 4 + 4
    [InlineData(2, 38, 7, 24, 76, 3, 3, 1, 1)]  // 114 floats: 8 vectors in two runs of 4
    [InlineData(2, 76, 5, 7, 5, 3, 3, 1, 1)]    // 228 floats: 15 vectors in three runs of 5; 5 output channels
    [InlineData(2, 3, 9, 10, 5, 5, 5, 2, 2)]    // a 5x5 kernel: 15 floats, one vector
    [InlineData(2, 7, 6, 9, 3, 3, 3, 0, 0)]     // no padding: 4 x 7 outputs
    [InlineData(3, 16, 5, 6, 4, 3, 3, 2, 2)]    // padding past the kernel's reach: 7 x 8 outputs
    [InlineData(2, 33, 4, 5, 2, 2, 2, 1, 0)]    // an even kernel: 5 x 4 outputs, 66 floats in 5 vectors
    [InlineData(4, 40, 3, 4, 6, 1, 1, 0, 0)]    // a 1x1: 3 vectors
    [InlineData(5, 6, 1, 6, 9, 1, 3, 0, 1)]     // a 3x3 cut to its middle row on maps one row high
    // Planes of 128 positions or more split the channels into two planes (16 m aligned, the rest):
    [InlineData(2, 19, 15, 24, 19, 3, 3, 1, 1)] // the pruned model's on mel: 3 vectors aligned + 1 (9 floats)
    [InlineData(1, 76, 8, 16, 5, 3, 3, 1, 1)]   // 12 + 3 vectors in runs of 5 + 5 + (2 + 3): a run across both planes
    [InlineData(1, 17, 12, 14, 6, 5, 5, 2, 2)]  // a 5x5 kernel: 5 vectors aligned + 1 (5 floats), one run of 6
    [InlineData(1, 7, 16, 16, 3, 3, 3, 1, 1)]   // fewer than 16 channels: the second plane alone
    [InlineData(1, 35, 10, 13, 4, 2, 3, 0, 1)]  // 32 + 3 channels, a 2 x 3 kernel: 6 vectors aligned + 1 (9 floats)
    public void MatchesTheSumOfProductsAndTheGemmPath(int n, int c, int h, int w, int k, int r, int s, int padH, int padW)
    {
        if (!Gemm.Runs512) Assert.Skip(NoAvx512);
        var p = new Conv2dParams(n, c, h, w, k, r, s, 1, 1, padH, padW, 1, 1, 1);
        Assert.True(ChannelLaneWeightGradient.CanRun(p));
        float[] x = Reference.ToFloat(Reference.Random(n * c * h * w, 51));
        float[] dy = Reference.ToFloat(Reference.Random(n * k * p.P * p.Q, 52));
        var expected = DirectWeightGradientTests.Expected(dy, x, p);
        var gemm = Reference.ToDouble(DirectWeightGradientTests.GemmPath(dy, x, p));
        double atol = 1e-5 * Math.Sqrt(n * p.P * p.Q) + 1e-5;
        int saved = CpuThreading.Threads;
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
            {
                CpuThreading.Threads = threads;
                var dw = Run(dy, x, p);
                GradCheck.AssertClose(expected, dw, atol, 1e-5, $"dw on {threads} thread(s)");
                GradCheck.AssertClose(gemm, dw, atol, 1e-5, $"dw against the GEMM path on {threads} thread(s)");
                // Each part sums its samples in order and the parts are added in order: the same bits every run.
                Assert.Equal(dw.Select(BitConverter.SingleToInt32Bits), Run(dy, x, p).Select(BitConverter.SingleToInt32Bits));
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    /// <summary>
    /// Channels split into two planes (16 m aligned and the rest) give one plane's bits: every lane of a patch vector sums
    /// the same products in the same order, only the vectors' places differ. Runs that read only the first plane, only the
    /// second, and both; 1 and 2 threads.
    /// </summary>
    [Theory]
    [InlineData(2, 19, 15, 24, 19, 3, 3)]  // 3 + 1 vectors in one run
    [InlineData(1, 76, 8, 16, 5, 3, 3)]    // runs of 5 + 5 + (2 + 3)
    [InlineData(2, 38, 7, 24, 9, 3, 3)]    // runs of 4 + (2 + 2)
    public void TwoPlanesGiveOnePlanesBits(int n, int c, int h, int w, int k, int r, int s) =>
        AssertSwitchKeepsBits(new Conv2dParams(n, c, h, w, k, r, s, 1, 1, r / 2, s / 2, 1, 1, 1), 61, on => ChannelLaneWeightGradient.SplitsPlanes = on);

    /// <summary>dw with a path switched off and on, on 1 and 2 threads: the same bits; the switch is left on.</summary>
    private static void AssertSwitchKeepsBits(Conv2dParams p, int seed, Action<bool> set)
    {
        if (!Gemm.Runs512) Assert.Skip(NoAvx512);
        float[] x = Reference.ToFloat(Reference.Random(p.N * p.C * p.H * p.W, seed));
        float[] dy = Reference.ToFloat(Reference.Random(p.N * p.K * p.P * p.Q, seed + 1));
        int saved = CpuThreading.Threads;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                CpuThreading.Threads = threads;
                set(false);
                var off = Run(dy, x, p);
                set(true);
                var on = Run(dy, x, p);
                Assert.Equal(off.Select(BitConverter.SingleToInt32Bits), on.Select(BitConverter.SingleToInt32Bits));
            }
        }
        finally
        {
            set(true);
            CpuThreading.Threads = saved;
        }
    }

    /// <summary>
    /// Blocks of up to 5 output channels (where a run takes at most 4 vectors) give the bits of blocks of up to 4: each
    /// accumulator sums the same products in the same order, only the blocks' bounds differ. Output channel counts that
    /// divide into blocks of 5, of 5 and 4, and one block of fewer; runs of 4 and of 6 vectors; 1 and 2 threads.
    /// </summary>
    [Theory]
    [InlineData(2, 19, 15, 24, 19, 3, 3)]  // 4 + 5 + 5 + 5 against 3 + 4 x 4
    [InlineData(1, 19, 7, 24, 38, 3, 3)]   // 38 in 8 blocks of 4 and 5, against 10 of 3 and 4
    [InlineData(2, 7, 6, 9, 3, 3, 3)]      // one block of 3 either way
    [InlineData(1, 32, 6, 8, 10, 3, 3)]    // runs of 6 vectors: 3 + 3 + 4 either way
    public void WideBlocksGiveNarrowBlocksBits(int n, int c, int h, int w, int k, int r, int s) =>
        AssertSwitchKeepsBits(new Conv2dParams(n, c, h, w, k, r, s, 1, 1, r / 2, s / 2, 1, 1, 1), 63, on => ChannelLaneWeightGradient.WideBlocks = on);

    /// <summary>
    /// A NaN input value reaches every weight whose tap reads it, and an infinite gradient at the map's edge meets the
    /// zero border in the taps that read off the map (infinity times zero is NaN there), as the GEMM path's im2col zeros
    /// give; the lanes past a patch, which read other positions' values, reach no weight.
    /// </summary>
    [Fact]
    public void NonFiniteValuesReachTheSameWeightsAsInTheGemmPath()
    {
        if (!Gemm.Runs512) Assert.Skip(NoAvx512);
        var p = new Conv2dParams(3, 7, 5, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        float[] x = Reference.ToFloat(Reference.Random(p.N * p.C * p.H * p.W, 53));
        float[] dy = Reference.ToFloat(Reference.Random(p.N * p.K * p.P * p.Q, 54));
        x[((1 * p.C + p.C - 1) * p.H + 1) * p.W + 3] = float.NaN;
        dy[((1 * p.K + 1) * p.P + p.P - 1) * p.Q + 0] = float.PositiveInfinity;
        var dw = Run(dy, x, p);
        var gemm = DirectWeightGradientTests.GemmPath(dy, x, p);
        Assert.Equal(gemm.Select(float.IsNaN), dw.Select(float.IsNaN));
        Assert.Contains(dw, float.IsNaN);
        Assert.Contains(dw, float.IsFinite);
    }

    /// <summary>
    /// The backend takes this path for the kernels of more than one tap on planes of 32 positions or more (CP-ResNet's
    /// 3x3s on mel's maps and MNIST's 6 x 6), and leaves it 1x1s, smaller planes, strided kernels and every shape when it is
    /// switched off; where it takes it, the backend's weight gradient has this path's bits.
    /// </summary>
    [Fact]
    public void TheBackendTakesTheShapesItRunsFasterOn()
    {
        if (!Gemm.Runs512) Assert.Skip(NoAvx512);
        Assert.True(ChannelLaneWeightGradient.Supports(new Conv2dParams(64, 32, 31, 24, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1)));
        Assert.True(ChannelLaneWeightGradient.Supports(new Conv2dParams(64, 19, 15, 24, 19, 3, 3, 1, 1, 1, 1, 1, 1, 1)));
        Assert.True(ChannelLaneWeightGradient.Supports(new Conv2dParams(256, 19, 6, 6, 19, 3, 3, 1, 1, 1, 1, 1, 1, 1)));
        Assert.False(ChannelLaneWeightGradient.Supports(new Conv2dParams(64, 128, 7, 24, 128, 1, 1, 1, 1, 0, 0, 1, 1, 1)));
        Assert.False(ChannelLaneWeightGradient.Supports(new Conv2dParams(256, 19, 3, 6, 19, 3, 3, 1, 1, 1, 1, 1, 1, 1)));
        Assert.False(ChannelLaneWeightGradient.Supports(new Conv2dParams(256, 19, 1, 6, 38, 1, 3, 1, 1, 0, 1, 1, 1, 1)));
        Assert.False(ChannelLaneWeightGradient.Supports(new Conv2dParams(64, 1, 128, 100, 32, 5, 5, 2, 2, 1, 1, 1, 1, 1)));

        var p = new Conv2dParams(2, 19, 15, 24, 19, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        float[] x = Reference.ToFloat(Reference.Random(p.N * p.C * p.H * p.W, 55));
        float[] dy = Reference.ToFloat(Reference.Random(p.N * p.K * p.P * p.Q, 56));
        var backend = Tensor.Full([p.K, p.C, p.R, p.S], float.NaN);
        CpuBackend.Instance.Conv2dBackwardWeight(Tensor.FromArray(dy, p.N, p.K, p.P, p.Q), Tensor.FromArray(x, p.N, p.C, p.H, p.W), backend, p);
        Assert.Equal(Run(dy, x, p).Select(BitConverter.SingleToInt32Bits), backend.ToArray().Select(BitConverter.SingleToInt32Bits));

        ChannelLaneWeightGradient.Enabled = false;
        try
        {
            Assert.False(ChannelLaneWeightGradient.Supports(p));
        }
        finally
        {
            ChannelLaneWeightGradient.Enabled = true;
        }
    }
}
