using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;
using static NeuralCore.Tests.Ops.ConvPathRuns;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// The training passes' stride-1 "same" convolutions through the implicit GEMM at each vector width this CPU runs it
/// at (<see cref="ImplicitGemmConv.Supports"/> with AVX-512, <see cref="ImplicitGemmConv.Supports256"/> with AVX2 and
/// FMA; the inference plans' are checked against the eager forward in CpuInferencePlanTests): forward with and without a bias and backward data (the forward of the flipped kernel), bit for bit against
/// the sum in (channel, tap) order, one fused multiply-add per tap from zero, so the widths give the same bits. Both
/// routes (channel-major chunks of samples, and one sample at a time for planes of 64 positions or more), 1 to 3
/// threads, channel counts that end inside a micro-panel and inside a quarter tile, planes that end inside a panel,
/// dead taps (a 1 x 6 map), dilation, a 5x5, and non-finite inputs at the ends of rows, which the next row's outputs
/// must not meet. Narrows the kernels and changes the thread count process-wide, so runs alone.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed class ImplicitGemmWidthsTests
{
    [Theory]
    // N, C, K, H, W, kernel, dilation, bias
    [InlineData(16, 19, 19, 6, 6, 3, 1, true)]    // the pruned model's MNIST stage-1 3x3: chunks of samples
    [InlineData(16, 19, 19, 3, 6, 3, 1, false)]   // after the 2 x 1 pool
    [InlineData(16, 19, 38, 1, 6, 3, 1, true)]    // one row: the kernel's outer rows are cut
    [InlineData(6, 32, 32, 6, 6, 3, 1, false)]    // the big model's: 288 rows of the GEMM, four whole tiles
    [InlineData(4, 3, 2, 5, 7, 3, 1, true)]       // two output channels: a quarter of two rows
    [InlineData(3, 5, 13, 9, 11, 3, 1, true)]     // 99 positions one sample at a time: 8 + 5 channels, a panel of 3
    [InlineData(2, 19, 19, 31, 24, 3, 1, false)]  // the pruned model's mel stage-1 3x3
    [InlineData(3, 6, 10, 9, 12, 3, 2, true)]     // dilation 2, padding 2
    [InlineData(2, 4, 9, 11, 8, 5, 1, false)]     // a 5x5 with padding 2
    public void SumsInChannelAndTapOrderAtEveryWidth(int n, int c, int k, int h, int w, int kernel, int dilation, bool withBias)
    {
        int pad = kernel / 2 * dilation;
        var p = new Conv2dParams(n, c, h, w, k, kernel, kernel, 1, 1, pad, pad, dilation, dilation, 1);
        var widths = new[] { Gemm.KernelKind.Vector512, Gemm.KernelKind.Vector256 }
            .Where(kind => kind <= Gemm.Best && WithKernels(kind, () => ImplicitGemmConv.SupportsSampleMajor(p))).ToArray();
        if (widths.Length == 0) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the implicit GEMM does not run.");
        int plane = h * w, taps = kernel * kernel;
        float[] x = Reference.ToFloat(Reference.Random(n * c * plane, 71));
        float[] wt = Reference.ToFloat(Reference.Random(k * c * taps, 72));
        float[]? bias = withBias ? Reference.ToFloat(Reference.Random(k, 73)) : null;
        float[] dy = Reference.ToFloat(Reference.Random(n * k * plane, 74));
        // The last column of a row (sample 0, channel 0, row 0) and the first of another (the last sample's last channel).
        x[w - 1] = float.PositiveInfinity;
        x[(n * c - 1) * plane + (h - 1) * w] = float.NaN;
        dy[plane - 1] = float.NegativeInfinity;
        // dx is the forward of the kernel flipped, its channel axes swapped: flipped[c, k, r, s] = w[k, c, R-1-r, S-1-s].
        var flipped = new float[wt.Length];
        for (int o = 0; o < k; o++)
            for (int i = 0; i < c; i++)
                for (int t = 0; t < taps; t++)
                    flipped[(i * k + o) * taps + taps - 1 - t] = wt[(o * c + i) * taps + t];
        var y = SameInOrder(x, wt, bias, n, c, k, h, w, kernel, dilation, pad);
        var dx = SameInOrder(dy, flipped, null, n, k, c, h, w, kernel, dilation, pad);
        Assert.Contains(y, float.IsInfinity);
        Assert.Contains(y, float.IsNaN);
        Assert.Contains(y, float.IsFinite);
        int saved = CpuThreading.Threads;
        try
        {
            foreach (var width in widths)
                foreach (int threads in new[] { 1, 2, 3 })
                    foreach (bool bySample in new[] { true, false })
                    {
                        CpuThreading.Threads = threads;
                        var run = WithKernels(width, () => ForwardAndBackwardData(p, x, wt, bias, dy, on => ConvKernels.BySample = on, bySample));
                        Assert.Equal(Bits(y), Bits(run.Y));
                        Assert.Equal(Bits(dx), Bits(run.Dx));
                    }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    /// <summary>
    /// The inference plans' implicit GEMM with bias, residual and activation (channel-major tensors; the epilogue applied
    /// from the 8 x 32 tiles' registers with AVX-512, in a pass over each block of quarter tiles without):
    /// at each width the CPU has, bit for bit against the sums in (channel, tap) order given <see cref="ConvKernels.Epilogue"/>'s
    /// pass; panels of 32 columns and narrow ones, channel counts that end inside a quarter, two samples, 1 to 3 threads,
    /// and NaN and infinity in the input; with strips and without (at 512 bits they take up to 24 output channels, and
    /// the tiles and panels the cases name run only without them).
    /// </summary>
    [Theory]
    // N, C, K, H, W, kernel, activation (0 none, 1 ReLU, 2 Hardswish), bias, residual
    [InlineData(1, 19, 19, 6, 6, 3, 1, true, true)]    // MNIST b1's pruned 3x3: a panel of 32 columns and one of 4
    [InlineData(1, 32, 32, 9, 11, 3, 2, true, true)]   // 99 columns: three panels and 3
    [InlineData(2, 13, 10, 7, 24, 1, 1, false, true)]  // a 1x1 over two samples' planes, 8 + 2 channels
    [InlineData(1, 5, 3, 31, 24, 3, 0, true, false)]   // mel's map, three channels: a quarter of three rows
    [InlineData(3, 19, 38, 6, 6, 3, 2, false, false)]  // Hardswish alone
    public unsafe void TheInferenceEpilogueFollowsTheSumsAtEveryWidth(int n, int c, int k, int h, int w, int kernel, int kind, bool withBias, bool withResidual)
    {
        int pad = kernel / 2;
        var p = new Conv2dParams(n, c, h, w, k, kernel, kernel, 1, 1, pad, pad, 1, 1, 1);
        var widths = new[] { Gemm.KernelKind.Vector512, Gemm.KernelKind.Vector256 }
            .Where(width => width <= Gemm.Best && WithKernels(width, () => ImplicitGemmConv.Supports(p) || ImplicitGemmConv.Supports256(p))).ToArray();
        if (widths.Length == 0) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the implicit GEMM does not run.");
        int plane = h * w;
        float[] xs = Reference.ToFloat(Reference.Random(n * c * plane, 75));
        float[] wt = Reference.ToFloat(Reference.Random(k * c * kernel * kernel, 76));
        float[]? bias = withBias ? Reference.ToFloat(Reference.Random(k, 77)) : null;
        float[]? residual = withResidual ? Reference.ToFloat(Reference.Random(k * n * plane, 78)) : null;
        xs[w - 1] = float.PositiveInfinity;
        xs[(n * c - 1) * plane + (h - 1) * w] = float.NaN;
        var activation = kind == 2 ? UnaryOp.Hardswish : UnaryOp.Relu;
        // Channel-major [C, N, plane] input; the in-order sums per sample, then channel-major and the epilogue's pass.
        float[] x = new float[xs.Length];
        for (int s = 0; s < n; s++)
            for (int i = 0; i < c; i++) Array.Copy(xs, (s * c + i) * plane, x, (i * n + s) * plane, plane);
        float[] sums = SameInOrder(xs, wt, null, n, c, k, h, w, kernel, 1, pad);
        float[] expected = new float[sums.Length];
        for (int s = 0; s < n; s++)
            for (int o = 0; o < k; o++) Array.Copy(sums, (s * k + o) * plane, expected, (o * n + s) * plane, plane);
        fixed (float* e = expected, b = bias, r = residual)
            ConvKernels.Epilogue(e, (long)n * plane, 0, k, n * plane, b, r, (long)n * plane, 0, kind != 0, activation, 0f, 0f);
        Assert.Contains(expected, float.IsNaN);
        Assert.Contains(expected, float.IsFinite);
        int saved = CpuThreading.Threads;
        try
        {
            foreach (var width in widths)
                foreach (int threads in new[] { 1, 2, 3 })
                foreach (bool strips in new[] { true, false })
                    WithKernels(width, () =>
                    {
                        CpuThreading.Threads = threads;
                        ImplicitGemmConv.Strips = strips;
                        var weights = new ImplicitGemmConv.Weights(wt, p);
                        var actual = Enumerable.Repeat(float.NaN, expected.Length).ToArray();
                        fixed (float* xp = x, bp = bias, rp = residual, yp = actual)
                            ImplicitGemmConv.Forward(xp, weights.View(), bp, yp, p, rp, kind != 0, activation, 0f, 0f, null);
                        GC.KeepAlive(weights);
                        Assert.Equal(Bits(expected), Bits(actual));
                    });
        }
        finally
        {
            CpuThreading.Threads = saved;
            ImplicitGemmConv.Strips = true;
        }
    }

    /// <summary>
    /// Where the implicit GEMM runs without AVX-512: the training passes' "same" convolutions of more than one tap (not
    /// 1x1s, which keep the GEMM path, nor strided ones or ones whose output is not the input's size), and the inference
    /// plans' "same" convolutions, 1x1s included.
    /// </summary>
    [Theory]
    // H, W, kernel, stride, pad, training, plans
    [InlineData(6, 6, 3, 1, 1, true, true)]
    [InlineData(1, 6, 3, 1, 1, true, true)]
    [InlineData(31, 24, 5, 1, 2, true, true)]
    [InlineData(7, 24, 1, 1, 0, false, true)]
    [InlineData(28, 28, 5, 2, 1, false, false)]
    [InlineData(7, 24, 3, 1, 0, false, false)]
    public void RunsWithoutAvx512OnSameConvolutions(int h, int w, int kernel, int stride, int pad, bool training, bool plans)
    {
        if (!(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported))
            Assert.Skip("This CPU has no AVX2 and FMA: the 256-bit implicit GEMM does not run.");
        var p = new Conv2dParams(4, 4, h, w, 4, kernel, kernel, stride, stride, pad, pad, 1, 1, 1);
        Assert.Equal(training, WithKernels(Gemm.KernelKind.Vector256, () => ImplicitGemmConv.SupportsSampleMajor(p)));
        Assert.Equal(plans, WithKernels(Gemm.KernelKind.Vector256, () => ImplicitGemmConv.Supports256(p)));
        Assert.False(WithKernels(Gemm.KernelKind.Vector256, () => ImplicitGemmConv.Supports(p)));
    }
}
