using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// <see cref="PlaneConv3x3"/> (the inference plans' 3x3 over one sample's planes at most six columns wide, with bias,
/// residual, activation and a 2 x 1 max pool in registers), bit for bit against the implicit GEMM's fused epilogue and
/// pool on the same channel-major tensors, and to rounding against the reference convolution, activation and pool:
/// computed rows in one, two and three vectors, groups of 1 to 16 channels (one vector's second set of accumulators
/// included), ReLU, Hardswish and none, with and without bias and residual, NaN and infinity in the input, on 1 and 2
/// threads. Changes the thread count, so runs alone.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed unsafe class PlaneConv3x3Tests
{
    [Theory]
    // C, K, H, W, pooled, activation kind (0 none, 1 ReLU, 2 Hardswish), bias, residual
    [InlineData(19, 19, 6, 6, false, 1, true, false)]   // MNIST batch 1's pruned stage-1 3x3: three vectors, groups 6 + 6 + 7
    [InlineData(32, 32, 6, 6, false, 1, true, false)]   // the big model's: four groups of 8
    [InlineData(19, 19, 3, 6, true, 1, true, true)]     // the pruned block's last 3x3: + residual + pool; the third row dropped, one vector, 9 + 10
    [InlineData(32, 32, 3, 6, true, 1, true, true)]     // the big model's: one vector, two groups of 16
    [InlineData(38, 38, 3, 6, true, 2, false, true)]    // 13 + 13 + 12 channels, Hardswish, no bias
    [InlineData(5, 3, 6, 6, true, 0, true, true)]       // three vectors pooled into three rows, no activation
    [InlineData(7, 21, 4, 6, false, 1, false, false)]   // two vectors
    [InlineData(6, 9, 5, 6, true, 1, true, true)]       // two vectors pooled: the fifth row dropped
    [InlineData(4, 2, 2, 6, false, 2, true, true)]      // one vector, two rows
    [InlineData(48, 40, 6, 6, false, 1, true, true)]    // enough multiply-adds for two parts
    public void MatchesTheImplicitGemmBitForBit(int c, int k, int h, int w, bool pooled, int kind, bool withBias, bool withResidual)
    {
        var p = new Conv2dParams(1, c, h, w, k, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        Pool2dParams? pool = pooled ? new Pool2dParams(1, k, h, w, 2, 1, 2, 1, 0, 0) : null;
        if (!PlaneConv3x3.CanRun(p, pool)) Assert.Skip("This CPU has no AVX-512: the plane-wise 3x3 kernel does not run.");
        int plane = h * w, outPlane = pool is { } q ? q.P * q.Q : plane;
        float[] x = Reference.ToFloat(Reference.Random(c * plane, 91));
        float[] wt = Reference.ToFloat(Reference.Random(k * c * 9, 92));
        float[]? bias = withBias ? Reference.ToFloat(Reference.Random(k, 93)) : null;
        float[]? residual = withResidual ? Reference.ToFloat(Reference.Random(k * plane, 94)) : null;
        // A NaN in the first channel's last row and an infinity in the last channel's first: the outputs they reach
        // are NaN or infinite, the others finite.
        x[(h - 1) * w + 2] = float.NaN;
        x[(c - 1) * plane + 1] = float.PositiveInfinity;
        var activation = kind == 2 ? UnaryOp.Hardswish : UnaryOp.Relu;

        float[] expected = new float[k * outPlane];
        var gemmWeights = new ImplicitGemmConv.Weights(wt, p);
        fixed (float* xp = x, bp = bias, rp = residual, yp = expected)
            ImplicitGemmConv.Forward(xp, gemmWeights.View(), bp, yp, p, rp, kind != 0, activation, 0f, 0f,
                pool is { } fused ? new ImplicitGemmConv.FusedPool(fused) : null);
        GC.KeepAlive(gemmWeights);
        var weights = new PlaneConv3x3.Weights(wt, p, pool);
        int saved = CpuThreading.Threads;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                CpuThreading.Threads = threads;
                float[] actual = Enumerable.Repeat(float.NaN, k * outPlane + 16).ToArray();
                fixed (float* xp = x, bp = bias, rp = residual, yp = actual)
                    PlaneConv3x3.Forward(xp, weights, bp, yp, p, rp, kind, pool);
                Assert.Equal(ConvPathRuns.Bits(expected), ConvPathRuns.Bits(actual[..expected.Length]));
                // Nothing is written past the output.
                Assert.All(actual[expected.Length..], v => Assert.True(float.IsNaN(v)));
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
        Assert.Contains(expected, float.IsNaN);
        Assert.Contains(expected, float.IsFinite);
        PlanePointwisePooledTests.AssertAgreesWithTheReference(x, wt, bias, residual, p, pool, kind, expected);
    }

    [Theory]
    // N, H, W, stride, padding, pool: kernel (h, w), stride (h, w), ceil mode (kernel 0: no pool)
    [InlineData(1, 6, 6, 1, 1, 0, 0, 0, 0, false, true)]    // 36 positions in 48 lanes
    [InlineData(1, 3, 6, 1, 1, 2, 1, 2, 1, false, true)]    // pooled: two rows computed, 12 positions in 16 lanes
    [InlineData(1, 3, 6, 1, 1, 0, 0, 0, 0, false, false)]   // unpooled 3 x 6: 18 positions in 32 lanes
    [InlineData(1, 6, 7, 1, 1, 0, 0, 0, 0, false, false)]   // rows wider than six columns
    [InlineData(1, 6, 5, 1, 1, 0, 0, 0, 0, false, false)]   // 30 positions in 48 lanes
    [InlineData(1, 8, 6, 1, 1, 0, 0, 0, 0, false, false)]   // more than three vectors
    [InlineData(2, 6, 6, 1, 1, 0, 0, 0, 0, false, false)]   // two samples
    [InlineData(1, 6, 6, 2, 1, 0, 0, 0, 0, false, false)]   // stride 2
    [InlineData(1, 6, 6, 1, 0, 0, 0, 0, 0, false, false)]   // unpadded
    [InlineData(1, 6, 6, 1, 1, 3, 1, 3, 1, false, false)]   // windows of three rows
    [InlineData(1, 6, 6, 1, 1, 2, 2, 2, 2, false, false)]   // windows two columns wide
    [InlineData(1, 6, 6, 1, 1, 2, 1, 2, 1, true, false)]    // ceil mode
    public void RunsOnlyWhereItsLanesAreThreeQuartersUsed(int n, int h, int w, int stride, int pad, int kh, int kw, int sh, int sw, bool ceil, bool expected)
    {
        var p = new Conv2dParams(n, 8, h, w, 8, 3, 3, stride, stride, pad, pad, 1, 1, 1);
        Pool2dParams? pool = kh == 0 ? null : new Pool2dParams(n, 8, p.P, p.Q, kh, kw, sh, sw, 0, 0, ceil);
        bool vector512 = PlaneConv3x3.CanRun(new Conv2dParams(1, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1), null);
        if (!vector512) Assert.Skip("This CPU has no AVX-512: the plane-wise 3x3 kernel does not run.");
        Assert.Equal(expected, PlaneConv3x3.CanRun(p, pool));
        if (!expected) Assert.Throws<ArgumentException>(() => new PlaneConv3x3.Weights(new float[8 * 8 * 9], p, pool));
    }

    /// <summary>Weights packed for another geometry are refused: their groups were made for another number of vectors.</summary>
    [Fact]
    public void RefusesWeightsPackedForAnotherGeometry()
    {
        var sixBySix = new Conv2dParams(1, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        var threeBySix = sixBySix with { H = 3 };
        var pool = new Pool2dParams(1, 8, 3, 6, 2, 1, 2, 1, 0, 0);
        if (!PlaneConv3x3.CanRun(sixBySix, null)) Assert.Skip("This CPU has no AVX-512: the plane-wise 3x3 kernel does not run.");
        var weights = new PlaneConv3x3.Weights(new float[8 * 8 * 9], sixBySix, null);
        var buffer = new float[8 * 48];
        var error = Assert.Throws<ArgumentException>(() =>
        {
            fixed (float* b = buffer)
                PlaneConv3x3.Forward(b, weights, null, b, threeBySix, null, 0, pool);
        });
        Assert.Contains("3 vectors", error.Message);
    }
}
