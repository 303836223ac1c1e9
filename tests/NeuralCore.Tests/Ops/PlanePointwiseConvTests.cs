using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// <see cref="PlanePointwiseConv"/> (1x1 convolutions over sample-major planes of two or three vectors, computed where
/// the planes lie), bit for bit against its order (each output from zero, one fused multiply-add per input channel in
/// order, then the bias) at 1, 2 and 3 threads, and against the GEMM path to rounding (whose small-problem path sums a
/// chunk's last columns past a multiple of 8 as dot products with four partial sums): forward with and without a bias,
/// and backward data (the forward of the transposed kernel), for channel counts that leave the last group of 8 partly
/// filled, planes of two and three vectors, and non-finite values in the last sample's last plane (read with a masked
/// load). Turns the path off process-wide and changes the thread count, so runs alone.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed class PlanePointwiseConvTests
{
    private static (float[] Y, float[] Dx) Run(Conv2dParams p, float[] x, float[] w, float[]? bias, float[] dy, bool direct) =>
        ConvPathRuns.ForwardAndBackwardData(p, x, w, bias, dy, on => PlanePointwiseConv.Enabled = on, direct);

    [Theory]
    // N, C, K, H, W, bias
    [InlineData(256, 19, 19, 6, 6, false)]  // the pruned model's 1x1 on 6 x 6: groups of 8 + 8 + 3
    [InlineData(256, 32, 32, 6, 6, true)]   // the big model's
    [InlineData(255, 38, 19, 6, 6, true)]   // an odd batch, more input channels than output
    [InlineData(3, 1, 1, 6, 6, false)]      // one channel in, one out
    [InlineData(4, 200, 7, 5, 5, true)]     // two vectors, the second 9 of 16 lanes
    [InlineData(4, 7, 40, 4, 8, false)]     // two whole vectors
    [InlineData(2, 10, 13, 6, 7, true)]     // three vectors, the third 10 of 16 lanes
    public void SumsInOrderAndMatchesTheGemmPath(int n, int c, int k, int h, int w, bool withBias)
    {
        var p = new Conv2dParams(n, c, h, w, k, 1, 1, 1, 1, 0, 0, 1, 1, 1);
        if (!PlanePointwiseConv.CanRun(p)) Assert.Skip("This CPU has no AVX-512: the plane-wise 1x1 kernel does not run.");
        int plane = h * w;
        float[] x = Reference.ToFloat(Reference.Random(n * c * plane, 61));
        float[] wt = Reference.ToFloat(Reference.Random(k * c, 62));
        float[]? bias = withBias ? Reference.ToFloat(Reference.Random(k, 63)) : null;
        float[] dy = Reference.ToFloat(Reference.Random(n * k * plane, 64));
        x[^1] = float.NaN;
        x[(n - 1) * c * plane] = float.PositiveInfinity;
        dy[^2] = float.NegativeInfinity;
        var expectedY = ConvPathRuns.InOrder(x, n, c, k, plane, (o, i) => wt[o * c + i], bias);
        var expectedDx = ConvPathRuns.InOrder(dy, n, k, c, plane, (o, i) => wt[i * c + o], null);
        int saved = CpuThreading.Threads;
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
            {
                CpuThreading.Threads = threads;
                var direct = Run(p, x, wt, bias, dy, direct: true);
                Assert.Equal(ConvPathRuns.Bits(expectedY), ConvPathRuns.Bits(direct.Y));
                Assert.Equal(ConvPathRuns.Bits(expectedDx), ConvPathRuns.Bits(direct.Dx));
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
        var gemm = Run(p, x, wt, bias, dy, direct: false);
        Assert.Equal(gemm.Y.Select(float.IsNaN), expectedY.Select(float.IsNaN));
        Assert.Equal(gemm.Dx.Select(float.IsNaN), expectedDx.Select(float.IsNaN));
        static double[] Finite(float[] a) => a.Select(v => float.IsFinite(v) ? v : 0.0).ToArray();
        GradCheck.AssertClose(Finite(gemm.Y), Finite(expectedY).Select(v => (float)v).ToArray(), 1e-5, 1e-5, "y against the GEMM path");
        GradCheck.AssertClose(Finite(gemm.Dx), Finite(expectedDx).Select(v => (float)v).ToArray(), 1e-5, 1e-5, "dx against the GEMM path");
        Assert.Contains(expectedY, float.IsNaN);
        Assert.Contains(expectedY, float.IsFinite);
    }

    [Fact]
    public void AgreesWithTheSumOfProducts()
    {
        var p = new Conv2dParams(9, 19, 6, 6, 21, 1, 1, 1, 1, 0, 0, 1, 1, 1);
        if (!PlanePointwiseConv.CanRun(p)) Assert.Skip("This CPU has no AVX-512: the plane-wise 1x1 kernel does not run.");
        float[] x = Reference.ToFloat(Reference.Random(p.N * p.C * 36, 71));
        float[] w = Reference.ToFloat(Reference.Random(p.K * p.C, 72));
        float[] bias = Reference.ToFloat(Reference.Random(p.K, 73));
        var y = Run(p, x, w, bias, new float[p.N * p.K * 36], direct: true).Y;
        GradCheck.AssertClose(Reference.Conv2d(Reference.ToDouble(x), Reference.ToDouble(w), Reference.ToDouble(bias), p), y, 1e-5, 1e-5, "y");
    }

    [Theory]
    // H, W, R, stride, pad, groups: 1x1, stride 1, unpadded, ungrouped convolutions over planes that fill two or three
    // vectors at least three quarters (24-32 or 36-48 positions).
    [InlineData(6, 6, 1, 1, 0, 1, true)]
    [InlineData(4, 6, 1, 1, 0, 1, true)]
    [InlineData(4, 12, 1, 1, 0, 1, true)]
    [InlineData(1, 6, 1, 1, 0, 1, false)]   // 6 positions: PointwiseConv's
    [InlineData(3, 6, 1, 1, 0, 1, false)]   // 18: two vectors a little over half used
    [InlineData(5, 7, 1, 1, 0, 1, false)]   // 35: three vectors under three quarters used
    [InlineData(7, 7, 1, 1, 0, 1, false)]   // 49: four vectors
    [InlineData(6, 6, 3, 1, 1, 1, false)]
    [InlineData(6, 6, 1, 1, 0, 2, false)]
    [InlineData(12, 12, 1, 2, 0, 1, false)]
    [InlineData(6, 6, 1, 1, 1, 1, false)]
    public void RunsOnlyOnPlanesOfTwoOrThreeVectors(int h, int w, int r, int stride, int pad, int groups, bool expected)
    {
        var p = new Conv2dParams(4, 4, h, w, 4, r, r, stride, stride, pad, pad, 1, 1, groups);
        Assert.Equal(expected && System.Runtime.Intrinsics.X86.Avx512F.IsSupported, PlanePointwiseConv.CanRun(p));
    }
}
