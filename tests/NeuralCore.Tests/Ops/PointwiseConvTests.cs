using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// <see cref="PointwiseConv"/> (1x1 convolutions over planes of 6 positions, each sample's output row computed where it
/// lies) against the GEMM path, bit for bit: forward with and without a bias, and backward data (which runs as the
/// forward of the transposed kernel), for channel counts that leave its passes and blocks partly filled, odd batches
/// (a last sample without a partner), input channels in several slices, and non-finite values. (The GEMM path sums each
/// output the same way, one multiply-add per input channel in order, except in its small-problem path's last columns past
/// a multiple of 8, dot products with four partial sums, which the batches here do not reach.) Turns the path off
/// process-wide and changes the thread count, so runs alone.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed class PointwiseConvTests
{
    private static (float[] Y, float[] Dx) Run(Conv2dParams p, float[] x, float[] w, float[]? bias, float[] dy, bool pointwise) =>
        ConvPathRuns.ForwardAndBackwardData(p, x, w, bias, dy, on => PointwiseConv.Enabled = on, pointwise);

    [Theory]
    // N, C, K, bias
    [InlineData(256, 38, 38, false)]   // the pruned model's stage 2: passes of 24 + 14 output channels (3 + 2 blocks)
    [InlineData(256, 76, 76, false)]   // stage 3: 24 + 24 + 24 + 4, the last block 24 of 48 lanes
    [InlineData(256, 128, 128, true)]  // the big model: 128 input channels in three slices
    [InlineData(255, 19, 38, true)]    // an odd batch: the last sample has no partner
    [InlineData(1, 76, 10, true)]      // the classifier at batch 1
    [InlineData(3, 1, 1, false)]       // one channel in, one out
    [InlineData(4, 200, 7, true)]      // 200 input channels: four slices
    [InlineData(4, 7, 200, false)]     // 200 output channels: passes of 24 and a last one of 8
    public void MatchesTheGemmPathBitForBit(int n, int c, int k, bool withBias)
    {
        var p = new Conv2dParams(n, c, 1, 6, k, 1, 1, 1, 1, 0, 0, 1, 1, 1);
        if (!PointwiseConv.CanRun(p)) Assert.Skip("This CPU has no AVX-512: the pointwise kernel does not run.");
        float[] x = Reference.ToFloat(Reference.Random(n * c * 6, 41));
        float[] w = Reference.ToFloat(Reference.Random(k * c, 42));
        float[]? bias = withBias ? Reference.ToFloat(Reference.Random(k, 43)) : null;
        float[] dy = Reference.ToFloat(Reference.Random(n * k * 6, 44));
        // Non-finite values reach the same outputs either way: the last sample's last plane (read with masked loads).
        x[^1] = float.NaN;
        x[(n - 1) * c * 6] = float.PositiveInfinity;
        dy[^2] = float.NegativeInfinity;
        int saved = CpuThreading.Threads;
        try
        {
            // The GEMM path at two threads: its chunks of samples follow the thread count, and at 16 threads or more they
            // are small enough for its small-problem path's dot products (see above).
            CpuThreading.Threads = 2;
            var gemm = Run(p, x, w, bias, dy, pointwise: false);
            foreach (int threads in new[] { 1, 2, 3 })
            {
                CpuThreading.Threads = threads;
                var pointwise = Run(p, x, w, bias, dy, pointwise: true);
                Assert.Equal(gemm.Y.Select(BitConverter.SingleToInt32Bits), pointwise.Y.Select(BitConverter.SingleToInt32Bits));
                Assert.Equal(gemm.Dx.Select(BitConverter.SingleToInt32Bits), pointwise.Dx.Select(BitConverter.SingleToInt32Bits));
            }
            Assert.Contains(gemm.Y, float.IsNaN);
            Assert.Contains(gemm.Y, float.IsFinite);
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    [Fact]
    public void AgreesWithTheSumOfProducts()
    {
        var p = new Conv2dParams(9, 19, 1, 6, 38, 1, 1, 1, 1, 0, 0, 1, 1, 1);
        if (!PointwiseConv.CanRun(p)) Assert.Skip("This CPU has no AVX-512: the pointwise kernel does not run.");
        float[] x = Reference.ToFloat(Reference.Random(p.N * p.C * 6, 51));
        float[] w = Reference.ToFloat(Reference.Random(p.K * p.C, 52));
        float[] bias = Reference.ToFloat(Reference.Random(p.K, 53));
        var y = Run(p, x, w, bias, new float[p.N * p.K * 6], pointwise: true).Y;
        GradCheck.AssertClose(Reference.Conv2d(Reference.ToDouble(x), Reference.ToDouble(w), Reference.ToDouble(bias), p), y, 1e-5, 1e-5, "y");
    }

    [Theory]
    // H, W, R, stride, pad, groups: only 1x1, stride 1, unpadded, ungrouped convolutions over 6 positions take it.
    [InlineData(1, 6, 1, 1, 0, 1, true)]
    [InlineData(2, 3, 1, 1, 0, 1, true)]
    [InlineData(6, 6, 1, 1, 0, 1, false)]
    [InlineData(1, 6, 3, 1, 1, 1, false)]
    [InlineData(1, 6, 1, 1, 0, 2, false)]
    [InlineData(2, 12, 1, 2, 0, 1, false)]
    [InlineData(1, 6, 1, 1, 1, 1, false)]
    public void RunsOnlyOnPlanesOfSix(int h, int w, int r, int stride, int pad, int groups, bool expected)
    {
        var p = new Conv2dParams(4, 4, h, w, 4, r, r, stride, stride, pad, pad, 1, 1, groups);
        Assert.Equal(expected && System.Runtime.Intrinsics.X86.Avx512F.IsSupported, PointwiseConv.CanRun(p));
    }
}
