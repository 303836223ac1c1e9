using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;
using static NeuralCore.Tests.Ops.ConvPathRuns;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// <see cref="PlaneConv3x3"/> (the inference plans' 3x3 over one sample's planes at most six columns wide, with bias,
/// residual, activation and a 2 x 1 max pool in registers) at each vector width the CPU has, bit for bit against the
/// implicit GEMM's epilogue and a max pool from -inf in row order on the same channel-major tensors (with AVX-512 also
/// against the implicit GEMM's fused pool), and to rounding against the reference convolution, activation and pool:
/// computed rows in one, two and three 512-bit vectors (at 256 bits, where only pooled steps run, one to three windows
/// of two rows), groups of 1 to 16 channels (one vector's second set of accumulators included; 1 to 6 at 256 bits),
/// ReLU, Hardswish and none, with and without bias and residual, NaN and infinity in the input, on 1 and 2 threads.
/// Changes the thread count, so runs alone.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed unsafe class PlaneConv3x3Tests
{
    /// <summary>The vector widths at which the kernel runs on this CPU, widest first.</summary>
    private static Gemm.KernelKind[] Widths(Conv2dParams p, Pool2dParams? pool) =>
        new[] { Gemm.KernelKind.Vector512, Gemm.KernelKind.Vector256 }
            .Where(kind => kind <= Gemm.Best && WithKernels(kind, () => PlaneConv3x3.CanRun(p, pool))).ToArray();

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
    [InlineData(48, 40, 6, 6, true, 1, true, true)]     // pooled: two parts of (group, window) units at 256 bits
    [InlineData(3, 1, 4, 6, true, 2, true, false)]      // one channel, two windows
    [InlineData(2, 12, 3, 6, true, 1, false, true)]     // two groups of 6 at 256 bits
    public void MatchesTheImplicitGemmBitForBit(int c, int k, int h, int w, bool pooled, int kind, bool withBias, bool withResidual)
    {
        var p = new Conv2dParams(1, c, h, w, k, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        Pool2dParams? pool = pooled ? new Pool2dParams(1, k, h, w, 2, 1, 2, 1, 0, 0) : null;
        var widths = Widths(p, pool);
        if (widths.Length == 0) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plane-wise 3x3 kernel does not run.");
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

        // The implicit GEMM's unpooled output, then each window's maximum from -inf in row order.
        float[] unpooled = new float[k * plane];
        var gemmWeights = new ImplicitGemmConv.Weights(wt, p);
        fixed (float* xp = x, bp = bias, rp = residual, yp = unpooled)
            ImplicitGemmConv.Forward(xp, gemmWeights.View(), bp, yp, p, rp, kind != 0, activation, 0f, 0f, null);
        float[] expected = unpooled;
        if (pool is { } windows)
        {
            expected = new float[k * outPlane];
            for (int o = 0; o < k; o++)
                for (int i = 0; i < windows.P; i++)
                    for (int j = 0; j < w; j++)
                        expected[(o * windows.P + i) * w + j] = MathF.Max(MathF.Max(float.NegativeInfinity,
                            unpooled[(o * h + 2 * i) * w + j]), unpooled[(o * h + 2 * i + 1) * w + j]);
        }
        if (Gemm.Runs512 && pool is { } fused)
        {
            float[] fusedPool = new float[k * outPlane];
            fixed (float* xp = x, bp = bias, rp = residual, yp = fusedPool)
                ImplicitGemmConv.Forward(xp, gemmWeights.View(), bp, yp, p, rp, kind != 0, activation, 0f, 0f, new ImplicitGemmConv.FusedPool(fused));
            Assert.Equal(Bits(expected), Bits(fusedPool));
        }
        GC.KeepAlive(gemmWeights);
        int saved = CpuThreading.Threads;
        try
        {
            foreach (var width in widths)
            {
                var weights = WithKernels(width, () => new PlaneConv3x3.Weights(wt, p, pool));
                foreach (int threads in new[] { 1, 2 })
                {
                    CpuThreading.Threads = threads;
                    float[] actual = Enumerable.Repeat(float.NaN, k * outPlane + 16).ToArray();
                    WithKernels(width, () =>
                    {
                        fixed (float* xp = x, bp = bias, rp = residual, yp = actual)
                            PlaneConv3x3.Forward(xp, weights, bp, yp, p, rp, kind, pool);
                    });
                    Assert.Equal(Bits(expected), Bits(actual[..expected.Length]));
                    // Nothing is written past the output.
                    Assert.All(actual[expected.Length..], v => Assert.True(float.IsNaN(v)));
                }
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
        var widths = Widths(new Conv2dParams(1, 8, 3, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1), new Pool2dParams(1, 8, 3, 6, 2, 1, 2, 1, 0, 0));
        if (widths.Length == 0) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plane-wise 3x3 kernel does not run.");
        foreach (var width in widths)
            WithKernels(width, () =>
            {
                // At 256 bits only pooled steps run here.
                bool runs = expected && (width == Gemm.KernelKind.Vector512 || pool is not null);
                Assert.Equal(runs, PlaneConv3x3.CanRun(p, pool));
                if (!runs) Assert.Throws<ArgumentException>(() => new PlaneConv3x3.Weights(new float[8 * 8 * 9], p, pool));
            });
    }

    /// <summary>
    /// Weights packed for another geometry are refused: their groups were made for another number of vectors (for the
    /// 6 x 6 map pooled, three 512-bit ones or six rows at 256 bits; for the 3 x 6 map pooled, one or two).
    /// </summary>
    [Fact]
    public void RefusesWeightsPackedForAnotherGeometry()
    {
        var sixBySix = new Conv2dParams(1, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        var threeBySix = sixBySix with { H = 3 };
        var sixPool = new Pool2dParams(1, 8, 6, 6, 2, 1, 2, 1, 0, 0);
        var threePool = new Pool2dParams(1, 8, 3, 6, 2, 1, 2, 1, 0, 0);
        var widths = Widths(sixBySix, sixPool);
        if (widths.Length == 0) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plane-wise 3x3 kernel does not run.");
        foreach (var width in widths)
            WithKernels(width, () =>
            {
                var weights = new PlaneConv3x3.Weights(new float[8 * 8 * 9], sixBySix, sixPool);
                var buffer = new float[8 * 48];
                var error = Assert.Throws<ArgumentException>(() =>
                {
                    fixed (float* b = buffer)
                        PlaneConv3x3.Forward(b, weights, null, b, threeBySix, null, 0, threePool);
                });
                Assert.Contains(width == Gemm.KernelKind.Vector512 ? "on 3 vectors, not 8 -> 8 on 1" : "on 6 vectors, not 8 -> 8 on 2", error.Message);
            });
    }

    /// <summary>Weights packed for the 512-bit kernels are refused by the 256-bit ones: their groups differ.</summary>
    [Fact]
    public void RefusesWeightsPackedForTheOtherWidth()
    {
        var p = new Conv2dParams(1, 8, 3, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        var pool = new Pool2dParams(1, 8, 3, 6, 2, 1, 2, 1, 0, 0);
        if (Widths(p, pool).Length < 2) Assert.Skip("This CPU has no AVX-512: the plane-wise 3x3 kernel runs at one width only.");
        var weights = new PlaneConv3x3.Weights(new float[8 * 8 * 9], p, pool);
        var buffer = new float[8 * 48];
        var error = Assert.Throws<ArgumentException>(() => WithKernels(Gemm.KernelKind.Vector256, () =>
        {
            fixed (float* b = buffer)
                PlaneConv3x3.Forward(b, weights, null, b, p, null, 0, pool);
        }));
        Assert.Contains("packed for 512-bit kernels", error.Message);
    }
}
