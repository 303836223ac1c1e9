using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// The training passes' "same" convolutions run one sample at a time through the implicit GEMM (ConvKernels'
/// ForwardBySample: 1x1s over planes of 64 to 511 positions, and over wider ones from 4 samples per thread, kernels of
/// several taps (3x3, dilated 3x3, 5x5) over planes of 64 or more): bit for bit against the chunked paths they replace
/// (the GEMM path for a 1x1, channel-major chunks for the others) and, for a 1x1, against the sum in order (each output
/// from zero, one fused multiply-add per input channel in order, then the bias), at 1, 2 and 3 threads, forward with
/// and without a bias and backward data (the forward of the flipped kernel), with channel counts that leave
/// micro-panels part empty, planes that end inside a vector, and non-finite values; against the sum of products to
/// rounding; and backward data with a tensor added as it is stored, against the input gradient then the addition.
/// Turns the path off process-wide and changes the thread count, so runs alone.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed class ConvBySampleTests
{
    private static (float[] Y, float[] Dx) Run(Conv2dParams p, float[] x, float[] w, float[]? bias, float[] dy, bool bySample) =>
        ConvPathRuns.ForwardAndBackwardData(p, x, w, bias, dy, on => ConvKernels.BySample = on, bySample);

    [Theory]
    // N, C, K, H, W, kernel, dilation, bias
    [InlineData(8, 76, 76, 7, 24, 1, 1, false)]   // the pruned model's stage-3 1x1 on mel's 7 x 24 maps
    [InlineData(5, 128, 128, 7, 24, 1, 1, true)]  // the big model's, an odd batch
    [InlineData(3, 38, 19, 8, 8, 1, 1, true)]     // 64 positions, more input channels than output
    [InlineData(4, 7, 45, 10, 10, 1, 1, false)]   // 100 positions: the plane ends inside a vector
    [InlineData(2, 1, 1, 1, 511, 1, 1, true)]     // one channel in and out, the widest plane a 1x1 takes at any batch
    [InlineData(12, 19, 19, 31, 24, 1, 1, false)] // the pruned model's stage-1 1x1, 4 samples a thread at 3 threads
    [InlineData(12, 32, 32, 23, 23, 1, 1, true)]  // 529 positions: wide, and the plane ends inside a vector
    [InlineData(4, 19, 19, 31, 24, 3, 1, false)]  // the pruned model's stage-1 3x3
    [InlineData(3, 32, 64, 7, 24, 3, 1, true)]    // the big model's stage-2 3x3
    [InlineData(2, 5, 13, 9, 11, 3, 1, true)]     // 99 positions, part-empty panels both ways
    [InlineData(3, 6, 10, 9, 12, 3, 2, true)]     // dilation 2, padding 2: taps two rows and columns apart
    [InlineData(2, 4, 9, 11, 8, 5, 1, false)]     // a 5x5 with padding 2
    public void MatchesTheChunkedPathsBitForBit(int n, int c, int k, int h, int w, int kernel, int dilation, bool withBias)
    {
        int pad = kernel / 2 * dilation;
        var p = new Conv2dParams(n, c, h, w, k, kernel, kernel, 1, 1, pad, pad, dilation, dilation, 1);
        // At the most threads the path runs on below (a wide plane's 1x1 needs 4 samples a thread).
        if (!ConvPathRuns.AtThreads(3, () => ConvKernels.RunsBySample(p)))
            Assert.Skip("The sample-by-sample path does not run here: a 1x1 needs AVX-512, a 3x3 AVX2 and FMA.");
        int plane = h * w, taps = kernel * kernel;
        float[] x = Reference.ToFloat(Reference.Random(n * c * plane, 81));
        float[] wt = Reference.ToFloat(Reference.Random(k * c * taps, 82));
        float[]? bias = withBias ? Reference.ToFloat(Reference.Random(k, 83)) : null;
        float[] dy = Reference.ToFloat(Reference.Random(n * k * plane, 84));
        x[^1] = float.NaN;
        x[(n - 1) * c * plane] = float.PositiveInfinity;
        dy[^2] = float.NegativeInfinity;
        int saved = CpuThreading.Threads;
        try
        {
            // The chunked paths at two threads: their chunks of samples follow the thread count, and at 8 threads or more
            // a chunk of one sample is small enough for the GEMM's small-problem path, whose columns past a multiple of 8
            // are summed in another order.
            CpuThreading.Threads = 2;
            var chunked = Run(p, x, wt, bias, dy, bySample: false);
            Assert.Contains(chunked.Y, float.IsNaN);
            Assert.Contains(chunked.Y, float.IsFinite);
            if (kernel == 1)
            {
                Assert.Equal(ConvPathRuns.Bits(ConvPathRuns.InOrder(x, n, c, k, plane, (o, i) => wt[o * c + i], bias)), ConvPathRuns.Bits(chunked.Y));
                Assert.Equal(ConvPathRuns.Bits(ConvPathRuns.InOrder(dy, n, k, c, plane, (o, i) => wt[i * c + o], null)), ConvPathRuns.Bits(chunked.Dx));
            }
            foreach (int threads in new[] { 1, 2, 3 })
            {
                CpuThreading.Threads = threads;
                var bySample = Run(p, x, wt, bias, dy, bySample: true);
                Assert.Equal(ConvPathRuns.Bits(chunked.Y), ConvPathRuns.Bits(bySample.Y));
                Assert.Equal(ConvPathRuns.Bits(chunked.Dx), ConvPathRuns.Bits(bySample.Dx));
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void AgreesWithTheSumOfProducts(int kernel)
    {
        var p = new Conv2dParams(3, 21, 7, 24, 19, kernel, kernel, 1, 1, kernel / 2, kernel / 2, 1, 1, 1);
        Assert.True(!(Gemm.Runs512 || Gemm.Runs256 && kernel > 1) || ConvKernels.RunsBySample(p));
        float[] x = Reference.ToFloat(Reference.Random(p.N * p.C * 168, 91));
        float[] w = Reference.ToFloat(Reference.Random(p.K * p.C * kernel * kernel, 92));
        float[] bias = Reference.ToFloat(Reference.Random(p.K, 93));
        var y = Run(p, x, w, bias, new float[p.N * p.K * 168], bySample: true).Y;
        GradCheck.AssertClose(Reference.Conv2d(Reference.ToDouble(x), Reference.ToDouble(w), Reference.ToDouble(bias), p), y, 1e-5, 1e-5, "y");
    }

    [Theory]
    // H, W, kernel, stride, pad, groups
    [InlineData(7, 24, 1, 1, 0, 1, true)]
    [InlineData(8, 8, 1, 1, 0, 1, true)]
    [InlineData(1, 511, 1, 1, 0, 1, true)]
    [InlineData(7, 24, 3, 1, 1, 1, true)]
    [InlineData(31, 24, 3, 1, 1, 1, true)]    // 3x3s take planes of any size from 64 positions
    [InlineData(7, 9, 1, 1, 0, 1, false)]     // 63 positions
    [InlineData(6, 6, 3, 1, 1, 1, false)]     // MNIST's 36: chunks of samples
    [InlineData(16, 32, 1, 1, 0, 1, false)]   // 512, 2 samples a thread: the GEMM path reads a 1x1's planes in place
    [InlineData(31, 24, 1, 1, 0, 1, false)]
    [InlineData(7, 24, 1, 1, 0, 2, false)]
    [InlineData(7, 24, 3, 1, 1, 2, false)]
    [InlineData(14, 48, 1, 2, 0, 1, false)]
    [InlineData(7, 24, 1, 1, 1, 1, false)]
    [InlineData(7, 24, 3, 1, 0, 1, false)]
    public void RunsOnSameConvolutionsOverPlanesOfSixtyFourOrMore(int h, int w, int kernel, int stride, int pad, int groups, bool expected)
    {
        var p = new Conv2dParams(4, 4, h, w, 4, kernel, kernel, stride, stride, pad, pad, 1, 1, groups);
        // With AVX-512 every row's rule; without it, the 3x3s only (the implicit GEMM's 256-bit form takes no 1x1).
        bool runs = Gemm.Runs512 || Gemm.Runs256 && kernel > 1;
        Assert.Equal(expected && runs, ConvPathRuns.AtThreads(2, () => ConvKernels.RunsBySample(p)));
    }

    [Theory]
    // samples, threads, H, W
    [InlineData(8, 2, 16, 32, true)]    // 512 positions, 4 samples a thread
    [InlineData(7, 2, 16, 32, false)]
    [InlineData(64, 2, 31, 24, true)]   // mel b64's stage-1 1x1
    [InlineData(64, 16, 31, 24, true)]
    [InlineData(64, 17, 31, 24, false)]
    [InlineData(4, 1, 128, 100, true)]
    [InlineData(2, 1, 128, 100, false)]
    [InlineData(1, 2, 7, 24, true)]     // under 512 positions, any batch
    public void RunsOneByOnesOnWidePlanesFromFourSamplesAThread(int n, int threads, int h, int w, bool expected)
    {
        var p = new Conv2dParams(n, 19, h, w, 19, 1, 1, 1, 1, 0, 0, 1, 1, 1);
        Assert.Equal(expected && Gemm.Runs512, ConvPathRuns.AtThreads(threads, () => ConvKernels.RunsBySample(p)));
    }

    /// <summary>
    /// The input gradient with a tensor added as it is stored (the training plans' sum of a residual block input's two
    /// gradients): the bits of the input gradient, then Add(first, it), with a non-finite value in first; a first in the
    /// sum's array, and convolutions whose input gradient does not run sample by sample, are refused.
    /// </summary>
    [Theory]
    // N, C, K, H, W, kernel
    [InlineData(8, 19, 19, 31, 24, 3)]  // the pruned model's stage-1 3x3
    [InlineData(8, 19, 38, 7, 24, 1)]   // its stage-2 projection shortcut: the input gradient sums over 38 channels
    [InlineData(3, 5, 13, 9, 11, 3)]    // 99 positions: the plane ends inside a vector
    public void AddsATensorToTheInputGradientAsItStoresIt(int n, int c, int k, int h, int w, int kernel)
    {
        var p = new Conv2dParams(n, c, h, w, k, kernel, kernel, 1, 1, kernel / 2, kernel / 2, 1, 1, 1);
        if (!CpuBackend.Conv2dBackwardDataAdds(p))
            Assert.Skip("The input gradient does not run sample by sample here: a 1x1 needs AVX-512, a 3x3 AVX2 and FMA.");
        var g = new Generator(17);
        var dy = Tensor.Randn([n, k, h, w], g);
        var wt = Tensor.Randn([k, c, kernel, kernel], g);
        var first = Tensor.Randn([n, c, h, w], g);
        var firstValues = first.ToArray();
        firstValues[5] = float.PositiveInfinity;
        first = Tensor.FromArray(firstValues, n, c, h, w);
        var dx = Tensor.Zeros([n, c, h, w]);
        CpuBackend.Instance.Conv2dBackwardData(dy, wt, dx, p);
        var expected = Tensor.Zeros([n, c, h, w]);
        CpuBackend.Instance.Binary(BinaryOp.Add, first, dx, expected);

        var sum = Tensor.Zeros([n, c, h, w]);
        CpuBackend.Instance.Conv2dBackwardDataPlus(dy, wt, first, sum, p);
        Assert.Equal(ConvPathRuns.Bits(expected.ToArray()), ConvPathRuns.Bits(sum.ToArray()));
        Assert.Equal(ConvPathRuns.Bits(firstValues), ConvPathRuns.Bits(first.ToArray()));
        var e = Assert.Throws<ArgumentException>(() => CpuBackend.Instance.Conv2dBackwardDataPlus(dy, wt, first, first, p));
        Assert.Contains("another array", e.Message);
    }

    /// <summary>
    /// A convolution run sample by sample leaves the statistics sums of the training batch norm that reads its output,
    /// taken per sample while it is in cache: its output is the plain forward's, and the batch norm reading those sums
    /// gives the bits of the batch norm summing its input itself (output, saved and running statistics). The values sit
    /// far from zero (a bias of 40), where the sums' shift, each channel's first value in sample 0, matters.
    /// </summary>
    [Theory]
    // N, C, K, H, W, kernel, threads
    [InlineData(8, 19, 19, 31, 24, 3, 2)]  // the pruned model's stage-1 3x3
    [InlineData(8, 38, 76, 7, 24, 1, 2)]   // a stage-3 1x1 on mel's 7 x 24 maps
    [InlineData(7, 5, 13, 9, 11, 3, 3)]    // 99 positions: the plane ends inside a vector; 3 threads
    [InlineData(3, 4, 6, 8, 8, 3, 1)]      // 64 positions, one thread
    public void LeavesTheSumsOfTheBatchNormAfterIt(int n, int c, int k, int h, int w, int kernel, int threads)
    {
        var p = new Conv2dParams(n, c, h, w, k, kernel, kernel, 1, 1, kernel / 2, kernel / 2, 1, 1, 1);
        if (!CpuBackend.Conv2dLeavesPlaneSums(p))
            Assert.Skip("The forward does not run sample by sample here: a 1x1 needs AVX-512, a 3x3 AVX2 and FMA.");
        var g = new Generator(23);
        var x = Tensor.Randn([n, c, h, w], g);
        var wt = Tensor.Randn([k, c, kernel, kernel], g);
        var bias = Tensor.Full([k], 40f);
        var gamma = Tensor.Randn([k], g);
        var beta = Tensor.Randn([k], g);
        int hw = h * w;
        (float[] Y, float[] Out, float[] Mean, float[] InvStd, float[] RunningMean, float[] RunningVar) Run(bool withSums)
        {
            var y = Tensor.Full([n, k, h, w], float.NaN);
            var output = Tensor.Zeros([n, k, h, w]);
            var mean = Tensor.Zeros([k]);
            var invStd = Tensor.Zeros([k]);
            var runningMean = Tensor.Full([k], 0.5f);
            var runningVar = Tensor.Full([k], 2f);
            var sums = withSums ? new BatchNormPlaneSums(n, k) : null;
            return ConvPathRuns.AtThreads(threads, () =>
            {
                if (sums is null) CpuBackend.Instance.Conv2d(x, wt, bias, y, p);
                else CpuBackend.Instance.Conv2dWithPlaneSums(x, wt, bias, y, p, sums);
                CpuBackend.Instance.BatchNormTraining(y, gamma, beta, output, mean, invStd, runningMean, runningVar, 0.1f, 1e-5f, n, k, hw,
                    relu: true, planeSums: sums);
                return (y.ToArray(), output.ToArray(), mean.ToArray(), invStd.ToArray(), runningMean.ToArray(), runningVar.ToArray());
            });
        }
        var plain = Run(withSums: false);
        var fused = Run(withSums: true);
        Assert.Equal(ConvPathRuns.Bits(plain.Y), ConvPathRuns.Bits(fused.Y));
        Assert.Equal(ConvPathRuns.Bits(plain.Out), ConvPathRuns.Bits(fused.Out));
        Assert.Equal(ConvPathRuns.Bits(plain.Mean), ConvPathRuns.Bits(fused.Mean));
        Assert.Equal(ConvPathRuns.Bits(plain.InvStd), ConvPathRuns.Bits(fused.InvStd));
        Assert.Equal(ConvPathRuns.Bits(plain.RunningMean), ConvPathRuns.Bits(fused.RunningMean));
        Assert.Equal(ConvPathRuns.Bits(plain.RunningVar), ConvPathRuns.Bits(fused.RunningVar));
        // The batch mean is the plain mean of the outputs, to rounding.
        for (int o = 0; o < k; o++)
        {
            double sum = 0;
            for (int s = 0; s < n; s++)
                for (int j = 0; j < hw; j++) sum += plain.Y[(s * k + o) * hw + j];
            Assert.Equal(sum / (n * hw), fused.Mean[o], 1e-3);
        }
    }

    [Fact]
    public void RefusesPlaneSumsWhereTheConvolutionOrTheBatchNormDoesNotTakeThem()
    {
        // MNIST's 6 x 6 maps: the forward runs in chunks of samples, and the batch norm over 36 values sums otherwise.
        var small = new Conv2dParams(4, 3, 6, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        Assert.False(CpuBackend.Conv2dLeavesPlaneSums(small));
        var e = Assert.Throws<ArgumentException>(() => CpuBackend.Instance.Conv2dWithPlaneSums(Tensor.Zeros([4, 3, 6, 6]),
            Tensor.Zeros([5, 3, 3, 3]), null, Tensor.Zeros([4, 5, 6, 6]), small, new BatchNormPlaneSums(4, 5)));
        Assert.Contains("does not run sample by sample", e.Message);
        e = Assert.Throws<ArgumentException>(() => CpuBackend.Instance.BatchNormTraining(Tensor.Zeros([4, 5, 6, 6]), Tensor.Ones([5]),
            Tensor.Zeros([5]), Tensor.Zeros([4, 5, 6, 6]), Tensor.Zeros([5]), Tensor.Zeros([5]), null, null, 0.1f, 1e-5f, 4, 5, 36,
            relu: false, planeSums: new BatchNormPlaneSums(4, 5)));
        Assert.Contains("64 values or more", e.Message);
        // Sums of another shape.
        var large = new Conv2dParams(4, 3, 9, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        e = Assert.Throws<ArgumentException>(() => CpuBackend.Instance.Conv2dWithPlaneSums(Tensor.Zeros([4, 3, 9, 9]),
            Tensor.Zeros([5, 3, 3, 3]), null, Tensor.Zeros([4, 5, 9, 9]), large, new BatchNormPlaneSums(4, 6)));
        Assert.Contains("planes' sums are for 4 samples of 6 channels", e.Message);
    }

    [Fact]
    public void RefusesToAddToAnInputGradientThatDoesNotRunSampleBySample()
    {
        // MNIST's 6 x 6 maps: chunks of samples.
        var p = new Conv2dParams(4, 3, 6, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        Assert.False(CpuBackend.Conv2dBackwardDataAdds(p));
        var e = Assert.Throws<ArgumentException>(() => CpuBackend.Instance.Conv2dBackwardDataPlus(Tensor.Zeros([4, 5, 6, 6]),
            Tensor.Zeros([5, 3, 3, 3]), Tensor.Zeros([4, 3, 6, 6]), Tensor.Zeros([4, 3, 6, 6]), p));
        Assert.Contains("does not take an addition", e.Message);
    }
}
