using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// <see cref="PlanePointwiseConv.ForwardChannelMajor"/> (the inference plans' 1x1 over one sample's planes of two or three
/// vectors, with bias, residual, activation and a pool of whole rows in registers) at each vector width the CPU has, bit
/// for bit against the implicit GEMM's epilogue and a maximum from -inf in row order on the same channel-major tensors
/// (with AVX-512 also against the implicit GEMM's fused pool), and to rounding against the reference convolution,
/// activation and pool: planes of two and three vectors, pools of 2 and 3 rows (with a last row the floor mode drops; at
/// 256 bits pools of 2 rows only), ReLU, Hardswish and none, with and without bias and residual, NaN and infinity in the
/// input, groups of 1 to 8 channels, 1 to 8 samples on 1 and 2 threads; nothing written past the output. Changes the
/// thread count, so runs alone.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed unsafe class PlanePointwisePooledTests
{
    [Theory]
    // N, C, K, H, W, pool rows (0: none), activation kind (0 none, 1 ReLU, 2 Hardswish), bias, residual
    [InlineData(1, 19, 19, 6, 6, 2, 1, true, true)]    // MNIST batch 1's pruned step: 1x1 + bn + residual + ReLU + 2 x 1 pool
    [InlineData(1, 32, 32, 6, 6, 2, 1, true, true)]    // the big model's
    [InlineData(1, 24, 24, 6, 6, 2, 2, false, true)]   // Hardswish, no bias
    [InlineData(1, 19, 13, 6, 6, 0, 1, true, false)]   // no pool: the plane stored as it is (512 bits only)
    [InlineData(1, 7, 21, 4, 7, 2, 0, true, true)]     // two vectors (28 positions), no activation
    [InlineData(1, 9, 5, 5, 8, 2, 1, false, false)]    // 40 positions: the floor mode drops the fifth row
    [InlineData(1, 11, 10, 6, 8, 3, 2, true, true)]    // 48 positions, windows of 3 rows (512 bits only)
    [InlineData(3, 19, 19, 6, 6, 2, 1, true, true)]    // three samples: channel planes N apart, shared between threads
    [InlineData(8, 48, 40, 6, 6, 2, 1, true, true)]    // multiply-adds enough for two parts
    [InlineData(1, 5, 1, 6, 6, 2, 2, true, false)]     // one output channel
    [InlineData(2, 3, 2, 4, 6, 2, 0, false, true)]     // two output channels, two samples
    public void MatchesTheImplicitGemmBitForBit(int n, int c, int k, int h, int w, int poolRows, int kind, bool withBias, bool withResidual)
    {
        var p = new Conv2dParams(n, c, h, w, k, 1, 1, 1, 1, 0, 0, 1, 1, 1);
        Pool2dParams? pool = poolRows == 0 ? null : new Pool2dParams(n, k, h, w, poolRows, 1, poolRows, 1, 0, 0);
        var widths = new[] { Gemm.KernelKind.Vector512, Gemm.KernelKind.Vector256 }
            .Where(width => width <= Gemm.Best && ConvPathRuns.WithKernels(width, () => PlanePointwiseConv.CanRunPooled(p, pool))).ToArray();
        if (widths.Length == 0) Assert.Skip("This CPU runs no plane-wise 1x1 for this step (AVX-512, or AVX2 and FMA with a 2 x 1 pool).");
        int plane = h * w, outPlane = pool is { } q ? q.P * q.Q : plane;
        float[] x = Reference.ToFloat(Reference.Random(c * n * plane, 81));
        float[] wt = Reference.ToFloat(Reference.Random(k * c, 82));
        float[]? bias = withBias ? Reference.ToFloat(Reference.Random(k, 83)) : null;
        float[]? residual = withResidual ? Reference.ToFloat(Reference.Random(k * n * plane, 84)) : null;
        // Channel-major [C, N, plane]: a NaN in the last sample's first channel, an infinity in the first sample's last.
        x[(n - 1) * plane + 5] = float.NaN;
        x[((c - 1) * n) * plane + 1] = float.PositiveInfinity;
        var activation = kind == 2 ? UnaryOp.Hardswish : UnaryOp.Relu;

        // The implicit GEMM's unpooled output, then each window's maximum from -inf in row order.
        float[] unpooled = new float[k * n * plane];
        var weights = new ImplicitGemmConv.Weights(wt, p);
        fixed (float* xp = x, bp = bias, rp = residual, yp = unpooled)
            ImplicitGemmConv.Forward(xp, weights.View(), bp, yp, p, rp, kind != 0, activation, 0f, 0f, null);
        float[] expected = unpooled;
        if (pool is { } windows)
        {
            expected = new float[k * n * outPlane];
            for (int planeIndex = 0; planeIndex < k * n; planeIndex++)
                for (int i = 0; i < windows.P; i++)
                    for (int j = 0; j < w; j++)
                    {
                        float m = float.NegativeInfinity;
                        for (int u = 0; u < poolRows; u++) m = MathF.Max(m, unpooled[(planeIndex * h + i * poolRows + u) * w + j]);
                        expected[(planeIndex * windows.P + i) * w + j] = m;
                    }
        }
        if (Gemm.Runs512 && pool is { } fused)
        {
            float[] fusedPool = new float[k * n * outPlane];
            fixed (float* xp = x, bp = bias, rp = residual, yp = fusedPool)
                ImplicitGemmConv.Forward(xp, weights.View(), bp, yp, p, rp, kind != 0, activation, 0f, 0f, new ImplicitGemmConv.FusedPool(fused));
            Assert.Equal(ConvPathRuns.Bits(expected), ConvPathRuns.Bits(fusedPool));
        }
        GC.KeepAlive(weights);
        int saved = CpuThreading.Threads;
        try
        {
            foreach (var width in widths)
                ConvPathRuns.WithKernels(width, () =>
                {
                    var gather = pool is { } g ? new PlanePointwiseConv.PoolGather(p, g) : null;
                    foreach (int threads in new[] { 1, 2 })
                    {
                        CpuThreading.Threads = threads;
                        float[] actual = Enumerable.Repeat(float.NaN, k * n * outPlane + 16).ToArray();
                        fixed (float* xp = x, wp = wt, bp = bias, rp = residual, yp = actual)
                            PlanePointwiseConv.ForwardChannelMajor(xp, wp, bp, yp, p, rp, kind, gather);
                        Assert.Equal(ConvPathRuns.Bits(expected), ConvPathRuns.Bits(actual[..expected.Length]));
                        Assert.All(actual[expected.Length..], v => Assert.True(float.IsNaN(v)));
                    }
                });
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
        Assert.Contains(expected, float.IsNaN);
        Assert.Contains(expected, float.IsFinite);
        AssertAgreesWithTheReference(x, wt, bias, residual, p, pool, kind, expected);
    }

    /// <summary>
    /// The reference convolution (sample-major, so the channel-major tensors are reordered), activation and max pool of
    /// whole rows, to rounding, where finite; for any "same" convolution (<see cref="PlaneConv3x3Tests"/> too).
    /// </summary>
    internal static void AssertAgreesWithTheReference(float[] x, float[] w, float[]? bias, float[]? residual, Conv2dParams p, Pool2dParams? pool,
        int kind, float[] actual)
    {
        int plane = p.H * p.W;
        double[] ToSampleMajor(float[] a, int channels) =>
            Enumerable.Range(0, p.N * channels * plane).Select(i => (double)a[((i / plane % channels) * p.N + i / (channels * plane)) * plane + i % plane]).ToArray();
        double[] y = Reference.Conv2d(ToSampleMajor(x, p.C), Reference.ToDouble(w), bias is null ? null : Reference.ToDouble(bias), p);
        for (int i = 0; i < y.Length; i++)
        {
            double v = y[i] + (residual is null ? 0 : ToSampleMajor(residual, p.K)[i]);
            y[i] = kind == 1 ? Math.Max(v, 0) : kind == 2 ? v * Math.Clamp(v + 3, 0, 6) / 6 : v;
        }
        int rows = pool?.KernelH ?? 1, outH = pool?.P ?? p.H;
        for (int s = 0; s < p.N; s++)
            for (int k = 0; k < p.K; k++)
                for (int r = 0; r < outH; r++)
                    for (int col = 0; col < p.W; col++)
                    {
                        double m = double.NegativeInfinity;
                        for (int u = 0; u < rows; u++) m = Math.Max(m, y[((s * p.K + k) * p.H + r * rows + u) * p.W + col]);
                        float got = actual[((k * p.N + s) * outH + r) * p.W + col];
                        if (!double.IsFinite(m)) continue;
                        Assert.True(Math.Abs(got - m) <= 1e-5 + 1e-5 * Math.Abs(m), $"sample {s} channel {k} row {r} column {col}: {got} against {m}");
                    }
    }

    [Theory]
    // pool: kernel (h, w), stride (h, w), padding (h, w), ceil mode
    [InlineData(2, 1, 2, 1, 0, 0, false, true)]
    [InlineData(3, 1, 3, 1, 0, 0, false, true)]
    [InlineData(2, 2, 2, 2, 0, 0, false, false)]   // two columns a window
    [InlineData(2, 1, 1, 1, 0, 0, false, false)]   // overlapping windows
    [InlineData(2, 1, 2, 1, 1, 0, false, false)]   // padded
    [InlineData(4, 1, 4, 1, 0, 0, true, false)]    // ceil mode
    public void PoolsOnlyWholeRowsThatDoNotOverlap(int kh, int kw, int sh, int sw, int ph, int pw, bool ceil, bool expected)
    {
        var p = new Conv2dParams(1, 8, 6, 6, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1);
        var pool = new Pool2dParams(1, 8, 6, 6, kh, kw, sh, sw, ph, pw, ceil);
        var widths = Widths();
        if (widths.Length == 0) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plane-wise 1x1 kernel does not run.");
        foreach (var width in widths)
            ConvPathRuns.WithKernels(width, () =>
            {
                // At 256 bits only windows of two rows, and never without a pool.
                bool runs = expected && (width == Gemm.KernelKind.Vector512 || kh == 2);
                Assert.Equal(runs, PlanePointwiseConv.CanRunPooled(p, pool));
                Assert.Equal(width == Gemm.KernelKind.Vector512, PlanePointwiseConv.CanRunPooled(p, null));
                if (!runs) Assert.Throws<ArgumentException>(() => new PlanePointwiseConv.PoolGather(p, pool));
            });
    }

    /// <summary>The widths at which this CPU runs the plane-wise 1x1's kernels, widest first.</summary>
    private static Gemm.KernelKind[] Widths() =>
        new[] { Gemm.KernelKind.Vector512, Gemm.KernelKind.Vector256 }
            .Where(width => width <= Gemm.Best && (width == Gemm.KernelKind.Vector512 || (System.Runtime.Intrinsics.X86.Avx2.IsSupported
                && System.Runtime.Intrinsics.X86.Fma.IsSupported))).ToArray();

    /// <summary>
    /// A gather made for one plane is refused for another (its indices and pooled size would reach past the planes), and
    /// one made for the 512-bit kernels by the 256-bit ones.
    /// </summary>
    [Fact]
    public unsafe void RefusesAGatherMadeForAnotherPlaneOrWidth()
    {
        var p = new Conv2dParams(1, 8, 6, 6, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1);
        var other = p with { H = 6, W = 8 };
        var widths = Widths();
        if (widths.Length == 0) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plane-wise 1x1 kernel does not run.");
        var buffer = new float[8 * 48];
        foreach (var width in widths)
            ConvPathRuns.WithKernels(width, () =>
            {
                var gather = new PlanePointwiseConv.PoolGather(p, new Pool2dParams(1, 8, 6, 6, 2, 1, 2, 1, 0, 0));
                var error = Assert.Throws<ArgumentException>(() =>
                {
                    fixed (float* b = buffer)
                        PlanePointwiseConv.ForwardChannelMajor(b, b, null, b, other, null, 0, gather);
                });
                Assert.Contains("6 x 6", error.Message);
            });
        if (widths.Length < 2)
            Assert.Skip("This CPU runs the 256-bit kernels only: a gather made for the 512-bit ones cannot be made here, so its refusal at 256 bits is not checked.");
        var wide = new PlanePointwiseConv.PoolGather(p, new Pool2dParams(1, 8, 6, 6, 2, 1, 2, 1, 0, 0));
        var widthError = Assert.Throws<ArgumentException>(() => ConvPathRuns.WithKernels(Gemm.KernelKind.Vector256, () =>
        {
            fixed (float* b = buffer)
                PlanePointwiseConv.ForwardChannelMajor(b, b, null, b, p, null, 0, wide);
        }));
        Assert.Contains("made for 512-bit kernels", widthError.Message);
    }
}
