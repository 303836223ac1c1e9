using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NeuralCore.Backends.Cpu;
using NeuralCore.NN;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// The CPU batch-norm kernels against the plain-loop float64 reference: training forward (output, saved
/// mean and inverse std, running statistics blended with the unbiased variance), inference, and the
/// backward kernel against central finite differences of the training forward.
/// </summary>
public sealed class BatchNormTests
{
    private const float Eps = 1e-5f;
    private const float Momentum = 0.1f;

    public static readonly TheoryData<int, int, int> Shapes = new()
    {
        { 4, 3, 25 },
        { 1, 5, 7 },
        { 3, 19, 1 },
        { 2, 2, 37 },
        { 64, 2, 36 },
        { 5, 38, 6 },
    };

    private sealed record Data(int N, int C, int HW, float[] X, float[] Gamma, float[] Beta, float[] RunningMean, float[] RunningVar)
    {
        public static Data For(int n, int c, int hw, double offset = 0, double scale = 1)
        {
            int seed = n * 1000 + c * 10 + hw;
            return new Data(n, c, hw,
                Reference.ToFloat(Reference.Random(n * c * hw, seed, scale).Select(v => v + offset).ToArray()),
                Reference.ToFloat(Reference.Random(c, seed + 1).Select(v => 1 + 0.5 * v).ToArray()),
                Reference.ToFloat(Reference.Random(c, seed + 2)),
                Reference.ToFloat(Reference.Random(c, seed + 3)),
                Reference.ToFloat(Reference.Random(c, seed + 4).Select(v => 1.5 + v).ToArray()));
        }

        public int[] Shape => [N, C, HW];
    }

    private static (float[] Y, float[] Mean, float[] InvStd, float[] RunningMean, float[] RunningVar) Training(Data d)
    {
        var y = Tensor.Full(d.Shape, float.NaN);
        var mean = Tensor.Full([d.C], float.NaN);
        var invStd = Tensor.Full([d.C], float.NaN);
        var rm = Tensor.FromArray((float[])d.RunningMean.Clone(), d.C);
        var rv = Tensor.FromArray((float[])d.RunningVar.Clone(), d.C);
        CpuBackend.Instance.BatchNormTraining(Tensor.FromArray(d.X, d.Shape), Tensor.FromArray(d.Gamma, d.C), Tensor.FromArray(d.Beta, d.C),
            y, mean, invStd, rm, rv, Momentum, Eps, d.N, d.C, d.HW);
        return (y.ToArray(), mean.ToArray(), invStd.ToArray(), rm.ToArray(), rv.ToArray());
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void TrainingMatchesReference(int n, int c, int hw)
    {
        var d = Data.For(n, c, hw);
        var (y, mean, variance) = Reference.BatchNormTraining(Reference.ToDouble(d.X), Reference.ToDouble(d.Gamma), Reference.ToDouble(d.Beta), n, c, hw, Eps);
        var got = Training(d);
        GradCheck.AssertClose(y, got.Y, 1e-5, 1e-4, "y");
        GradCheck.AssertClose(mean, got.Mean, 1e-6, 1e-6, "saved mean");
        GradCheck.AssertClose(variance.Select(v => 1 / Math.Sqrt(v + Eps)).ToArray(), got.InvStd, 1e-6, 1e-6, "saved invstd");
        int m = n * hw;
        var runningMean = Enumerable.Range(0, c).Select(i => (1 - Momentum) * (double)d.RunningMean[i] + Momentum * mean[i]).ToArray();
        var runningVar = Enumerable.Range(0, c).Select(i => (1 - Momentum) * (double)d.RunningVar[i] + Momentum * variance[i] * m / (m - 1)).ToArray();
        GradCheck.AssertClose(runningMean, got.RunningMean, 1e-6, 1e-6, "running mean");
        GradCheck.AssertClose(runningVar, got.RunningVar, 1e-6, 1e-6, "running var (unbiased)");
    }

    [Fact]
    public void TrainingWithoutRunningStatisticsOnlyNormalises()
    {
        var d = Data.For(3, 4, 10);
        var y = Tensor.Zeros(d.Shape);
        var mean = Tensor.Zeros([d.C]);
        var invStd = Tensor.Zeros([d.C]);
        CpuBackend.Instance.BatchNormTraining(Tensor.FromArray(d.X, d.Shape), Tensor.FromArray(d.Gamma, d.C), Tensor.FromArray(d.Beta, d.C),
            y, mean, invStd, null, null, Momentum, Eps, d.N, d.C, d.HW);
        Assert.Equal(Training(d).Y, y.ToArray());
    }

    [Fact]
    public void LargeBatchWithLargeMeanKeepsStatisticsAccurate()
    {
        // 2^20 values per channel around 1000 with standard deviation ~0.58: a float32 one-pass
        // sum of squares would lose the variance entirely.
        var d = Data.For(64, 2, 1 << 14, offset: 1000);
        var (_, mean, variance) = Reference.BatchNormTraining(Reference.ToDouble(d.X), Reference.ToDouble(d.Gamma), Reference.ToDouble(d.Beta), d.N, d.C, d.HW, Eps);
        var got = Training(d);
        GradCheck.AssertClose(mean, got.Mean, 0, 1e-7, "saved mean");
        GradCheck.AssertClose(variance.Select(v => 1 / Math.Sqrt(v + Eps)).ToArray(), got.InvStd, 0, 1e-6, "saved invstd");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void InferenceMatchesReference(int n, int c, int hw)
    {
        var d = Data.For(n, c, hw);
        var expected = Reference.BatchNormInference(Reference.ToDouble(d.X), Reference.ToDouble(d.Gamma), Reference.ToDouble(d.Beta),
            Reference.ToDouble(d.RunningMean), Reference.ToDouble(d.RunningVar), n, c, hw, Eps);
        var y = Tensor.Full(d.Shape, float.NaN);
        CpuBackend.Instance.BatchNormInference(Tensor.FromArray(d.X, d.Shape), Tensor.FromArray(d.Gamma, d.C), Tensor.FromArray(d.Beta, d.C),
            Tensor.FromArray(d.RunningMean, d.C), Tensor.FromArray(d.RunningVar, d.C), y, Eps, n, c, hw);
        GradCheck.AssertClose(expected, y.ToArray(), 1e-6, 1e-5, "y");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void BackwardMatchesFiniteDifferences(int n, int c, int hw)
    {
        var d = Data.For(n, c, hw);
        double[] x = Reference.ToDouble(d.X), gamma = Reference.ToDouble(d.Gamma), beta = Reference.ToDouble(d.Beta);
        float[] gf = Reference.ToFloat(Reference.Random(n * c * hw, 77));
        double[] g = Reference.ToDouble(gf);
        var got = Training(d);

        var dx = Tensor.Full(d.Shape, float.NaN);
        var dgamma = Tensor.Full([c], float.NaN);
        var dbeta = Tensor.Full([c], float.NaN);
        CpuBackend.Instance.BatchNormBackward(Tensor.FromArray(d.X, d.Shape), Tensor.FromArray(gf, d.Shape), Tensor.FromArray(d.Gamma, c),
            Tensor.FromArray(got.Mean, c), Tensor.FromArray(got.InvStd, c), dx, dgamma, dbeta, n, c, hw);

        // L = sum(bn(x) * g) in float64; h small against the unit-scale inputs, large against round-off.
        double Loss(double[] xs, double[] gs, double[] bs) => GradCheck.Dot(Reference.BatchNormTraining(xs, gs, bs, n, c, hw, Eps).Y, g);
        int[]? at = GradCheck.Coordinates(x.Length, x.Length, samples: 256);
        GradCheck.AssertClose(GradCheck.Numerical(xs => Loss(xs, gamma, beta), x, at: at), dx.ToArray(), 1e-4, 1e-3, "dx", at);
        GradCheck.AssertClose(GradCheck.Numerical(gs => Loss(x, gs, beta), gamma), dgamma.ToArray(), 1e-4, 1e-4, "dgamma");
        GradCheck.AssertClose(GradCheck.Numerical(bs => Loss(x, gamma, bs), beta), dbeta.ToArray(), 1e-4, 1e-4, "dbeta");
    }

    /// <summary>
    /// A fused ReLU gives ReLU of the plain output, and its backward the plain backward of dy zeroed where that output
    /// is not positive, bit for bit: planes under 64 values (the sample-major kernels) whose C * HW is not a multiple of
    /// 16, so the last positions of each sample run masked (38 x 6 = 228, 19 x 6, 7 x 6), and one that is (32 x 6).
    /// </summary>
    [Theory]
    [InlineData(5, 38, 6)]
    [InlineData(3, 19, 6)]
    [InlineData(40, 7, 6)]
    [InlineData(4, 32, 6)]
    public void FusedReluMatchesReluOfThePlainKernels(int n, int c, int hw)
    {
        var d = Data.For(n, c, hw);
        var be = CpuBackend.Instance;
        float[] dy = Reference.ToFloat(Reference.Random(n * c * hw, 78));
        (float[] Y, float[] Dx, float[] Dgamma, float[] Dbeta) Run(bool relu, float[] gradient, Tensor? reluOutput)
        {
            var x = Tensor.FromArray(d.X, d.Shape);
            var gamma = Tensor.FromArray(d.Gamma, c);
            var y = Tensor.Full(d.Shape, float.NaN);
            var mean = Tensor.Full([c], float.NaN);
            var invStd = Tensor.Full([c], float.NaN);
            be.BatchNormTraining(x, gamma, Tensor.FromArray(d.Beta, c), y, mean, invStd, null, null, Momentum, Eps, n, c, hw, relu);
            var dx = Tensor.Full(d.Shape, float.NaN);
            var dgamma = Tensor.Full([c], float.NaN);
            var dbeta = Tensor.Full([c], float.NaN);
            be.BatchNormBackward(x, Tensor.FromArray(gradient, d.Shape), gamma, mean, invStd, dx, dgamma, dbeta, n, c, hw,
                relu ? y : reluOutput);
            return (y.ToArray(), dx.ToArray(), dgamma.ToArray(), dbeta.ToArray());
        }

        var plain = Run(false, dy, null);
        var fused = Run(true, dy, null);
        Assert.Contains(plain.Y, v => v < 0);
        Assert.Equal(plain.Y.Select(v => v > 0 ? v : 0f).ToArray(), fused.Y);
        var masked = Run(false, dy.Select((g, i) => fused.Y[i] > 0 ? g : 0f).ToArray(), null);
        Assert.Equal(masked.Dx, fused.Dx);
        Assert.Equal(masked.Dgamma, fused.Dgamma);
        Assert.Equal(masked.Dbeta, fused.Dbeta);
    }

    /// <summary>A fused addition runs alone: not with the batch norm's own ReLU, over small planes or large.</summary>
    [Fact]
    public void AFusedAdditionTakesNoOtherFusion()
    {
        var be = CpuBackend.Instance;
        void Run(int hw, bool relu)
        {
            var d = Data.For(2, 3, hw);
            be.BatchNormTraining(Tensor.FromArray(d.X, d.Shape), Tensor.FromArray(d.Gamma, 3), Tensor.FromArray(d.Beta, 3), Tensor.Zeros(d.Shape),
                Tensor.Zeros([3]), Tensor.Zeros([3]), null, null, Momentum, Eps, 2, 3, hw, relu, residual: Tensor.Zeros(d.Shape), residualRelu: true);
        }
        Run(6, relu: false);
        Run(64, relu: false);
        Assert.Contains("no other fused op", Assert.Throws<ArgumentException>(() => Run(6, relu: true)).Message);
        Assert.Contains("no other fused op", Assert.Throws<ArgumentException>(() => Run(64, relu: true)).Message);
    }

    [Fact]
    public void TrainingWithOneValuePerChannelIsRejected()
    {
        var d = Data.For(1, 3, 1);
        var e = Assert.Throws<ArgumentException>(() => Training(d));
        Assert.Contains("more than one value per channel", e.Message);
    }

    [Fact]
    public void AutogradTrainingPathMatchesFiniteDifferences()
    {
        const int n = 3, c = 4, h = 2, w = 5;
        var d = Data.For(n, c, h * w);
        double[] g = Reference.ToDouble(Reference.ToFloat(Reference.Random(n * c * h * w, 99)));
        var x = Tensor.FromArray(d.X, n, c, h, w);
        var gamma = Tensor.FromArray(d.Gamma, c);
        var beta = Tensor.FromArray(d.Beta, c);
        x.RequiresGrad = gamma.RequiresGrad = beta.RequiresGrad = true;
        var rm = Tensor.FromArray((float[])d.RunningMean.Clone(), c);
        var rv = Tensor.FromArray((float[])d.RunningVar.Clone(), c);
        var y = Functional.BatchNorm2d(x, rm, rv, gamma, beta, training: true, Momentum, Eps);
        NeuralCore.Autograd.Autograd.Backward(y.Mul(Tensor.FromArray(Reference.ToFloat(g), n, c, h, w)).Sum());

        double[] xd = Reference.ToDouble(d.X), gd = Reference.ToDouble(d.Gamma), bd = Reference.ToDouble(d.Beta);
        double Loss(double[] xs, double[] gs, double[] bs) => GradCheck.Dot(Reference.BatchNormTraining(xs, gs, bs, n, c, h * w, Eps).Y, g);
        GradCheck.AssertClose(Reference.BatchNormTraining(xd, gd, bd, n, c, h * w, Eps).Y, y.ToArray(), 1e-5, 1e-4, "y");
        GradCheck.AssertClose(GradCheck.Numerical(xs => Loss(xs, gd, bd), xd), x.Grad!.ToArray(), 1e-4, 1e-3, "x.Grad");
        GradCheck.AssertClose(GradCheck.Numerical(gs => Loss(xd, gs, bd), gd), gamma.Grad!.ToArray(), 1e-4, 1e-4, "gamma.Grad");
        GradCheck.AssertClose(GradCheck.Numerical(bs => Loss(xd, gd, bs), bd), beta.Grad!.ToArray(), 1e-4, 1e-4, "beta.Grad");
    }

    /// <summary>
    /// The fused Hardswish's slope (BatchNormKernels.HardswishInput) takes v / 3 by a multiplication and one correction
    /// instead of a division: bit for bit the slope by division for every one of the 2^32 floats (scale 1 and offset 0,
    /// so v is the input itself; -0 becomes +0), in 512- and 256-bit vectors and by the masked last vector's rule.
    /// </summary>
    [Fact]
    public void HardswishSlopeMatchesTheDivisionForEveryFloat()
    {
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the vector slopes do not run.");
        var hardswish = new BatchNormKernels.HardswishInput(1f, 0f);
        var lane = Vector512.Create(0u, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var three = Vector512.Create(3f);
        var half = Vector512.Create(0.5f);
        long mismatches = 0;
        uint first = 0;
        Parallel.For(0, 256, block =>
        {
            long found = 0;
            uint at = 0;
            for (uint i = 0; i < (1u << 24) / 16; i++)
            {
                var bits = Vector512.Create(((uint)block << 24) | (i << 4)) | lane;
                var v = Vector512.FusedMultiplyAdd(bits.AsSingle(), Vector512<float>.One, Vector512<float>.Zero);
                var byDivision = Vector512.ConditionalSelect(Vector512.GreaterThan(v, three), Vector512<float>.One, v / three + half);
                byDivision = Vector512.ConditionalSelect(Vector512.LessThan(v, -three), Vector512<float>.Zero, byDivision);
                var scalarRule = Vector512.ConditionalSelect(Vector512.LessThanOrEqual(v, three), v / three + half, Vector512<float>.One);
                scalarRule = Vector512.ConditionalSelect(Vector512.LessThan(v, -three), Vector512<float>.Zero, scalarRule);
                var narrow = Vector512.Create(hardswish.Slope(bits.AsSingle().GetLower()), hardswish.Slope(bits.AsSingle().GetUpper()));
                var same = Vector512.Equals(hardswish.Slope(bits.AsSingle()).AsUInt32(), byDivision.AsUInt32())
                    & Vector512.Equals(narrow.AsUInt32(), byDivision.AsUInt32())
                    & Vector512.Equals(hardswish.ScalarSlope(bits.AsSingle()).AsUInt32(), scalarRule.AsUInt32());
                uint wrong = ~(uint)same.ExtractMostSignificantBits() & 0xFFFF;
                if (wrong != 0)
                {
                    if (found == 0) at = bits.ToScalar() + (uint)System.Numerics.BitOperations.TrailingZeroCount(wrong);
                    found += System.Numerics.BitOperations.PopCount(wrong);
                }
            }
            if (found > 0)
            {
                Interlocked.Add(ref mismatches, found);
                Interlocked.CompareExchange(ref first, at, 0);
            }
        });
        Assert.True(mismatches == 0, $"{mismatches} inputs differ from the division, the first 0x{first:X8} ({BitConverter.UInt32BitsToSingle(first)}).");
    }
}

/// <summary>
/// Thread-count behaviour of the batch-norm kernels over planes of 64 values or more (changes the process-wide thread
/// count, so runs alone): on several threads every channel runs in segments of samples, block of channels by block, and
/// every output keeps the bits of one thread.
/// </summary>
[Collection(nameof(NeuralCore.Tests.Backends.CpuSettingsCollection))]
public sealed class BatchNormThreadingTests
{
    // (n, c, h, w): 19 channels of 13 x 13 (the pruned stem's) and 7 of 16 x 16, enough values for two and three parts,
    // each in one block of channels; 5 of 64 x 64 for 64 samples, whose segments' planes (352-512 KiB a channel) make
    // a block of each channel; 70 of 8 x 8, a block whose output pass takes its channels' coefficients 64 at a time.
    // One thread walks each channel's planes in turn, more walk each segment's samples in turn.
    [Theory]
    [InlineData(12, 70, 8, 8, false)]
    [InlineData(12, 70, 8, 8, true)]
    [InlineData(16, 19, 13, 13, false)]
    [InlineData(16, 19, 13, 13, true)]
    [InlineData(40, 7, 16, 16, false)]
    [InlineData(40, 7, 16, 16, true)]
    [InlineData(64, 5, 64, 64, false)]
    [InlineData(64, 5, 64, 64, true)]
    public void OddChannelCountsGiveTheBitsOfOneThread(int n, int c, int h, int w, bool fused)
    {
        if (fused && !PoolKernels.IsWhole2x2(new NeuralCore.Backends.Pool2dParams(n, c, h, w, 2, 2, 2, 2, 0, 0)))
            Assert.Skip("This CPU has neither AVX-512 nor AVX2: the max pool does not run in the batch norm.");
        int hw = h * w, pooledH = h / 2, pooledW = w / 2;
        float[] x = Reference.ToFloat(Reference.Random(n * c * hw, 11, 2.0).Select(v => v + 0.5).ToArray());
        float[] gamma = Reference.ToFloat(Reference.Random(c, 12).Select(v => 1 + 0.5 * v).ToArray());
        float[] beta = Reference.ToFloat(Reference.Random(c, 13));
        int outLength = fused ? n * c * pooledH * pooledW : n * c * hw;
        float[] dy = Reference.ToFloat(Reference.Random(outLength, 14));

        float[][] Run(int threads)
        {
            CpuThreading.Threads = threads;
            var be = CpuBackend.Instance;
            int[] outShape = fused ? [n, c, pooledH, pooledW] : [n, c, h, w];
            var y = Tensor.Full(outShape, float.NaN);
            var mean = Tensor.Zeros([c]);
            var invStd = Tensor.Zeros([c]);
            var rm = Tensor.Zeros([c]);
            var rv = Tensor.Ones([c]);
            var scaleOffset = fused ? Tensor.Zeros([2 * c]) : null;
            var indices = fused ? Tensor.Full(outShape, -1, dtype: DType.Int32) : null;
            NeuralCore.Backends.Pool2dParams? pool = fused ? new NeuralCore.Backends.Pool2dParams(n, c, h, w, 2, 2, 2, 2, 0, 0) : null;
            var xt = Tensor.FromArray(x, n, c, h, w);
            var g = Tensor.FromArray(gamma, c);
            be.BatchNormTraining(xt, g, Tensor.FromArray(beta, c), y, mean, invStd, rm, rv, 0.1f, 1e-5f, n, c, hw,
                relu: !fused, scaleOffset, pool, indices);
            var dx = Tensor.Full([n, c, h, w], float.NaN);
            var dgamma = Tensor.Zeros([c]);
            var dbeta = Tensor.Zeros([c]);
            be.BatchNormBackward(xt, Tensor.FromArray(dy, outShape), g, mean, invStd, dx, dgamma, dbeta, n, c, hw,
                fused ? null : y, scaleOffset, pool, indices);
            float[][] results = [y.ToArray(), mean.ToArray(), invStd.ToArray(), rm.ToArray(), rv.ToArray(), dx.ToArray(), dgamma.ToArray(), dbeta.ToArray()];
            if (fused) results = [.. results, scaleOffset!.ToArray(), ((CpuStorage)indices!.Storage).Ints.Select(i => (float)i).ToArray()];
            return results;
        }

        int saved = CpuThreading.Threads;
        try
        {
            var one = Run(1);
            Assert.All(one[5], v => Assert.True(float.IsFinite(v)));
            foreach (int threads in new[] { 2, 3 })
            {
                var many = Run(threads);
                for (int i = 0; i < one.Length; i++) Assert.Equal(one[i], many[i]);
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    /// <summary>
    /// A batch norm that adds a residual in its output pass (and the ReLU after the addition) gives the bits of the batch
    /// norm, then the addition (+ ReLU) as ops of their own, with its statistics unchanged, at 1, 2 and 3 threads: small
    /// planes (the sample-major kernels) and large ones (the per-channel kernels: mel's 7 x 24, and planes with a
    /// part-vector tail), a NaN, an infinity and a -0 among the residuals. Adding the residual after the ReLU, or
    /// another plane's residual, fails it.
    /// </summary>
    [Theory]
    [InlineData(40, 7, 6, true)]
    [InlineData(9, 19, 168, true)]
    [InlineData(9, 19, 168, false)]
    [InlineData(7, 3, 169, true)]
    [InlineData(64, 2, 64, true)]
    [InlineData(6, 5, 79, false)]
    public void AFusedAdditionGivesTheBitsOfTheBatchNormThenTheAddition(int n, int c, int hw, bool relu)
    {
        float[] xs = Reference.ToFloat(Reference.Random(n * c * hw, 81, 3.0).Select(v => v + 20).ToArray());
        float[] gammas = Reference.ToFloat(Reference.Random(c, 82).Select(v => 1 + 0.5 * v).ToArray());
        float[] betas = Reference.ToFloat(Reference.Random(c, 83));
        float[] residuals = Reference.ToFloat(Reference.Random(n * c * hw, 84));
        residuals[1] = float.NaN;
        residuals[2] = float.PositiveInfinity;
        residuals[3] = -0f;
        var be = CpuBackend.Instance;
        (float[] Y, float[] Mean, float[] InvStd) Run(bool fused, int threads)
        {
            CpuThreading.Threads = threads;
            var x = Tensor.FromArray(xs, n, c, hw);
            var residual = Tensor.FromArray(residuals, n, c, hw);
            var y = Tensor.Full([n, c, hw], float.NaN);
            var mean = Tensor.Zeros([c]);
            var invStd = Tensor.Zeros([c]);
            if (fused)
                be.BatchNormTraining(x, Tensor.FromArray(gammas, c), Tensor.FromArray(betas, c), y, mean, invStd, null, null, 0.1f, 1e-5f,
                    n, c, hw, relu: false, residual: residual, residualRelu: relu);
            else
            {
                var normed = Tensor.Full([n, c, hw], float.NaN);
                be.BatchNormTraining(x, Tensor.FromArray(gammas, c), Tensor.FromArray(betas, c), normed, mean, invStd, null, null, 0.1f, 1e-5f,
                    n, c, hw, relu: false);
                if (relu) be.AddRelu(normed, residual, y);
                else be.Binary(NeuralCore.Backends.BinaryOp.Add, normed, residual, y);
            }
            return (y.ToArray(), mean.ToArray(), invStd.ToArray());
        }

        int saved = CpuThreading.Threads;
        try
        {
            var apart = Run(fused: false, 1);
            Assert.Contains(apart.Y, v => relu ? v == 0 : v < 0);
            foreach (int threads in new[] { 1, 2, 3 })
            {
                var together = Run(fused: true, threads);
                Assert.Equal(apart.Y.Select(BitConverter.SingleToInt32Bits), together.Y.Select(BitConverter.SingleToInt32Bits));
                Assert.Equal(apart.Mean, together.Mean);
                Assert.Equal(apart.InvStd, together.InvStd);
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    /// <summary>
    /// Over large planes the fused addition + ReLU can take the 2 x 1 max pool after it too: the pooled values and
    /// indices of the batch norm, then <see cref="CpuBackend.AddReluMaxPool"/>, bit for bit, and the same statistics,
    /// at 1, 2 and 3 threads: mel's 31 x 24 (a last row no window takes), 15 x 24 and 7 x 24 maps, and 9 x 9 (rows
    /// narrower than a vector: nothing written past a plane's output); a NaN, an infinity and a -0 among the residuals.
    /// The pool needs the ReLU, large planes and column windows.
    /// </summary>
    [Theory]
    [InlineData(9, 19, 31, 24)]
    [InlineData(8, 3, 15, 24)]
    [InlineData(6, 5, 7, 24)]
    [InlineData(7, 3, 9, 9)]
    public void AFusedAdditionsPoolGivesTheBitsOfTheBatchNormThenThePooledAddition(int n, int c, int h, int w)
    {
        var pool = new NeuralCore.Backends.Pool2dParams(n, c, h, w, 2, 1, 2, 1, 0, 0);
        if (!PoolKernels.FusesAddRelu(pool)) Assert.Skip("This CPU has neither AVX-512 nor AVX2: the max pool does not run in the batch norm.");
        int hw = h * w;
        float[] xs = Reference.ToFloat(Reference.Random(n * c * hw, 91, 3.0).Select(v => v - 5).ToArray());
        float[] gammas = Reference.ToFloat(Reference.Random(c, 92).Select(v => 1 + 0.5 * v).ToArray());
        float[] betas = Reference.ToFloat(Reference.Random(c, 93));
        float[] residuals = Reference.ToFloat(Reference.Random(n * c * hw, 94));
        residuals[1] = float.NaN;
        residuals[w + 2] = float.PositiveInfinity;
        residuals[3] = -0f;
        var be = CpuBackend.Instance;
        (float[] Y, int[] Indices, float[] Mean, float[] InvStd) Run(bool fused, int threads)
        {
            CpuThreading.Threads = threads;
            var x = Tensor.FromArray(xs, n, c, h, w);
            var residual = Tensor.FromArray(residuals, n, c, h, w);
            var y = Tensor.Full([n, c, pool.P, pool.Q], float.NaN);
            var indices = Tensor.Full([n, c, pool.P, pool.Q], -1, dtype: DType.Int32);
            var mean = Tensor.Zeros([c]);
            var invStd = Tensor.Zeros([c]);
            if (fused)
                be.BatchNormTraining(x, Tensor.FromArray(gammas, c), Tensor.FromArray(betas, c), y, mean, invStd, null, null, 0.1f, 1e-5f,
                    n, c, hw, relu: false, pool: pool, poolIndices: indices, residual: residual, residualRelu: true);
            else
            {
                var normed = Tensor.Full([n, c, h, w], float.NaN);
                be.BatchNormTraining(x, Tensor.FromArray(gammas, c), Tensor.FromArray(betas, c), normed, mean, invStd, null, null, 0.1f, 1e-5f,
                    n, c, hw, relu: false);
                be.AddReluMaxPool(normed, residual, y, indices, pool);
            }
            return (y.ToArray(), ((CpuStorage)indices.Storage).Ints.ToArray(), mean.ToArray(), invStd.ToArray());
        }

        int saved = CpuThreading.Threads;
        try
        {
            var apart = Run(fused: false, 1);
            Assert.Contains(apart.Y, v => v == 0);
            Assert.Contains(apart.Indices, i => i % (2 * w) >= w);
            foreach (int threads in new[] { 1, 2, 3 })
            {
                var together = Run(fused: true, threads);
                Assert.Equal(apart.Y.Select(BitConverter.SingleToInt32Bits), together.Y.Select(BitConverter.SingleToInt32Bits));
                Assert.Equal(apart.Indices, together.Indices);
                Assert.Equal(apart.Mean, together.Mean);
                Assert.Equal(apart.InvStd, together.InvStd);
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
        void Reject(bool residualRelu, int planeH, int planeW, NeuralCore.Backends.Pool2dParams p) => Assert.Throws<ArgumentException>(() =>
            be.BatchNormTraining(Tensor.Zeros([n, c, planeH * planeW]), Tensor.Ones([c]), Tensor.Zeros([c]), Tensor.Zeros([n, c, p.P, p.Q]),
                Tensor.Zeros([c]), Tensor.Zeros([c]), null, null, 0.1f, 1e-5f, n, c, planeH * planeW, relu: false, pool: p,
                poolIndices: Tensor.Zeros([n, c, p.P, p.Q], dtype: DType.Int32), residual: Tensor.Zeros([n, c, planeH * planeW]),
                residualRelu: residualRelu));
        Reject(residualRelu: false, h, w, pool);
        Reject(residualRelu: true, 2, 6, new NeuralCore.Backends.Pool2dParams(n, c, 2, 6, 2, 1, 2, 1, 0, 0));
        Reject(residualRelu: true, h, w, new NeuralCore.Backends.Pool2dParams(n, c, h, w, 2, 2, 2, 2, 0, 0));
    }

    /// <summary>
    /// A batch norm + ReLU over large planes that saves the ReLU's scale and offset lets its backward tell where the
    /// ReLU's output is positive from x (x * scale + offset &gt; 0) instead of reading the output: the same bits as the
    /// backward that reads it (dx, dgamma, dbeta), and the same forward, at 1, 2 and 3 threads; planes with and without a
    /// part-vector tail, a mean far from zero, and about half the outputs zero.
    /// </summary>
    [Theory]
    [InlineData(7, 3, 169)]
    [InlineData(9, 19, 168)]
    [InlineData(6, 5, 79)]
    [InlineData(64, 2, 64)]
    [InlineData(5, 4, 744)]
    public void AReluTestedOnTheInputGivesTheBitsOfItsOutput(int n, int c, int hw)
    {
        if (!BatchNormKernels.TakesReluScaleOffset(hw)) Assert.Skip("This CPU has no AVX-512: batch norms keep reading their ReLU's output.");
        float[] xs = Reference.ToFloat(Reference.Random(n * c * hw, 71, 3.0).Select(v => v + 40).ToArray());
        float[] gammas = Reference.ToFloat(Reference.Random(c, 72).Select(v => 1 + 0.5 * v).ToArray());
        float[] betas = Reference.ToFloat(Reference.Random(c, 73));
        float[] dy = Reference.ToFloat(Reference.Random(n * c * hw, 77));
        var be = CpuBackend.Instance;
        float[][] Run(bool fromInput, int threads)
        {
            CpuThreading.Threads = threads;
            var x = Tensor.FromArray(xs, n, c, hw);
            var gamma = Tensor.FromArray(gammas, c);
            var y = Tensor.Full([n, c, hw], float.NaN);
            var mean = Tensor.Zeros([c]);
            var invStd = Tensor.Zeros([c]);
            var scaleOffset = fromInput ? Tensor.Full([2 * c], float.NaN) : null;
            be.BatchNormTraining(x, gamma, Tensor.FromArray(betas, c), y, mean, invStd, null, null, 0.1f, 1e-5f, n, c, hw, relu: true,
                reluScaleOffset: scaleOffset);
            var dx = Tensor.Full([n, c, hw], float.NaN);
            var dgamma = Tensor.Zeros([c]);
            var dbeta = Tensor.Zeros([c]);
            be.BatchNormBackward(x, Tensor.FromArray(dy, n, c, hw), gamma, mean, invStd, dx, dgamma, dbeta, n, c, hw,
                fromInput ? null : y, reluScaleOffset: scaleOffset);
            return [y.ToArray(), mean.ToArray(), invStd.ToArray(), dx.ToArray(), dgamma.ToArray(), dbeta.ToArray()];
        }

        int saved = CpuThreading.Threads;
        try
        {
            var output = Run(fromInput: false, 1);
            float zeros = output[0].Count(v => v == 0) / (float)output[0].Length;
            Assert.InRange(zeros, 0.3f, 0.7f);
            foreach (int threads in new[] { 1, 2, 3 })
            {
                var input = Run(fromInput: true, threads);
                for (int i = 0; i < output.Length; i++) Assert.Equal(output[i], input[i]);
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    [Fact]
    public void AReluScaleAndOffsetNeedAReluOverLargePlanesAndReplaceItsOutput()
    {
        var be = CpuBackend.Instance;
        Tensor T(params int[] shape) => Tensor.Zeros(shape);
        // Planes of 36 values: the small-plane kernels, which read the output.
        var small = Assert.Throws<ArgumentException>(() => be.BatchNormTraining(T(4, 2, 36), T(2), T(2), T(4, 2, 36), T(2), T(2), null, null,
            0.1f, 1e-5f, 4, 2, 36, relu: true, reluScaleOffset: T(4)));
        Assert.Contains("ReLU", small.Message);
        // No ReLU to save them for.
        Assert.Throws<ArgumentException>(() => be.BatchNormTraining(T(4, 2, 64), T(2), T(2), T(4, 2, 64), T(2), T(2), null, null,
            0.1f, 1e-5f, 4, 2, 64, relu: false, reluScaleOffset: T(4)));
        if (!BatchNormKernels.TakesReluScaleOffset(64))
            Assert.Skip("This CPU's batch-norm kernels take no ReLU scale and offset (512-bit only): the checks of their length and of the backward's inputs do not apply.");
        // [2C] exactly.
        Assert.Throws<ArgumentException>(() => be.BatchNormTraining(T(4, 2, 64), T(2), T(2), T(4, 2, 64), T(2), T(2), null, null,
            0.1f, 1e-5f, 4, 2, 64, relu: true, reluScaleOffset: T(3)));
        // Both the output and the scale and offset.
        Assert.Throws<ArgumentException>(() => be.BatchNormBackward(T(4, 2, 64), T(4, 2, 64), T(2), T(2), T(2), T(4, 2, 64), T(2), T(2),
            4, 2, 64, T(4, 2, 64), reluScaleOffset: T(4)));
    }

    /// <summary>
    /// The small-plane kernels' order for channel <paramref name="ch"/> of [n, c, hw] values: per position, s1 += a and
    /// s2 = fma(a, b, s2) in float over blocks of 16 samples (a, b = <paramref name="term"/> of the value's index), each
    /// block's sums added in double, then the channel's positions added in double.
    /// </summary>
    private static (double S1, double S2) ChannelSums(int n, int c, int hw, int ch, Func<int, (float A, float B)> term)
    {
        double sum1 = 0, sum2 = 0;
        for (int i = 0; i < hw; i++)
        {
            double s1d = 0, s2d = 0;
            for (int n0 = 0; n0 < n; n0 += 16)
            {
                float s1 = 0, s2 = 0;
                for (int s = n0; s < Math.Min(n, n0 + 16); s++)
                {
                    var (a, b) = term((s * c + ch) * hw + i);
                    s1 += a;
                    s2 = MathF.FusedMultiplyAdd(a, b, s2);
                }
                s1d += s1;
                s2d += s2;
            }
            sum1 += s1d;
            sum2 += s2d;
        }
        return (sum1, sum2);
    }

    /// <summary>
    /// The forward's statistics over planes under 64 values (each part's chunks of 16 positions, a walk down the samples
    /// per chunk, a chunk that ends past the width masked), bit for bit against their specification at 1, 2 and 3
    /// threads: per position, x minus the channel's first value (sample 0's) and its square added in float
    /// over blocks of 16 samples, each block's sum added in double, then a channel's positions added in double; the mean
    /// is the shift plus the mean of the shifted values, the variance the mean square less the square of that. The same
    /// widths and batches as the backward's test below.
    /// </summary>
    [Theory]
    [InlineData(120, 76, 6)]
    [InlineData(300, 19, 6)]
    [InlineData(18, 32, 6)]
    [InlineData(201, 7, 36)]
    public void SmallPlaneForwardStatisticsFollowTheirOrder(int n, int c, int hw)
    {
        const float eps = 1e-5f;
        float[] x = Reference.ToFloat(Reference.Random(n * c * hw, 31, 2.0).Select(v => v + 0.5).ToArray());
        float[] expectedMean = new float[c], expectedInvStd = new float[c];
        long count = (long)n * hw;
        for (int ch = 0; ch < c; ch++)
        {
            float shift = x[ch * hw];
            var (sum, sumSquares) = ChannelSums(n, c, hw, ch, at => (x[at] - shift, x[at] - shift));
            double centredMean = sum / count;
            double variance = Math.Max(sumSquares / count - centredMean * centredMean, 0);
            expectedMean[ch] = (float)(shift + centredMean);
            expectedInvStd[ch] = (float)(1 / Math.Sqrt(variance + eps));
        }
        int saved = CpuThreading.Threads;
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
            {
                CpuThreading.Threads = threads;
                var mean = Tensor.Zeros([c]);
                var invStd = Tensor.Zeros([c]);
                CpuBackend.Instance.BatchNormTraining(Tensor.FromArray(x, n, c, hw), Tensor.Ones([c]), Tensor.Zeros([c]),
                    Tensor.Zeros([n, c, hw]), mean, invStd, Tensor.Zeros([c]), Tensor.Ones([c]), 0.1f, eps, n, c, hw);
                Assert.Equal(expectedMean.Select(BitConverter.SingleToInt32Bits), mean.ToArray().Select(BitConverter.SingleToInt32Bits));
                Assert.Equal(expectedInvStd.Select(BitConverter.SingleToInt32Bits), invStd.ToArray().Select(BitConverter.SingleToInt32Bits));
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    /// <summary>
    /// The backward's sums over planes under 64 values (walked sample by sample, each part's blocks of 16 samples, the
    /// blocks' sums then added in order), bit for bit against their specification at 1, 2 and 3 threads: per position, dy (zero where the fused ReLU's
    /// output is not positive) and dy * (x - mean) added in float over blocks of 16 samples, each block's sum added in
    /// double, then a channel's positions added in double; dbeta is the first, dgamma the second times invstd. Widths that
    /// end in a masked chunk (76 x 6 = 456, 19 x 6, 7 x 36), one that does not (32 x 6), batches that end in a partial
    /// block, and enough blocks for one, two and three parts.
    /// </summary>
    [Theory]
    [InlineData(120, 76, 6)]
    [InlineData(300, 19, 6)]
    [InlineData(18, 32, 6)]
    [InlineData(201, 7, 36)]
    public void SmallPlaneBackwardSumsFollowTheirOrder(int n, int c, int hw)
    {
        float[] x = Reference.ToFloat(Reference.Random(n * c * hw, 21, 2.0).Select(v => v + 0.5).ToArray());
        float[] gamma = Reference.ToFloat(Reference.Random(c, 22).Select(v => 1 + 0.5 * v).ToArray());
        float[] dy = Reference.ToFloat(Reference.Random(n * c * hw, 23));
        float[] output = Reference.ToFloat(Reference.Random(n * c * hw, 24));
        float[] mean = Reference.ToFloat(Reference.Random(c, 25));
        float[] invStd = Reference.ToFloat(Reference.Random(c, 26).Select(v => 1.5 + v).ToArray());
        float[] expectedDbeta = new float[c], expectedDgamma = new float[c];
        for (int ch = 0; ch < c; ch++)
        {
            var (sumDy, sumDyCentred) = ChannelSums(n, c, hw, ch, at => (output[at] > 0 ? dy[at] : 0, x[at] - mean[ch]));
            expectedDbeta[ch] = (float)sumDy;
            expectedDgamma[ch] = (float)(sumDyCentred * invStd[ch]);
        }
        int saved = CpuThreading.Threads;
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
            {
                CpuThreading.Threads = threads;
                var dgamma = Tensor.Zeros([c]);
                var dbeta = Tensor.Zeros([c]);
                CpuBackend.Instance.BatchNormBackward(Tensor.FromArray(x, n, c, hw), Tensor.FromArray(dy, n, c, hw), Tensor.FromArray(gamma, c),
                    Tensor.FromArray(mean, c), Tensor.FromArray(invStd, c), Tensor.Zeros([n, c, hw]), dgamma, dbeta, n, c, hw,
                    Tensor.FromArray(output, n, c, hw));
                Assert.Equal(expectedDbeta.Select(BitConverter.SingleToInt32Bits), dbeta.ToArray().Select(BitConverter.SingleToInt32Bits));
                Assert.Equal(expectedDgamma.Select(BitConverter.SingleToInt32Bits), dgamma.ToArray().Select(BitConverter.SingleToInt32Bits));
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    [Theory]
    [InlineData(256, 76, 6)]
    [InlineData(96, 8, 169)]
    public void ChainedSumsWaitForThePartBefore(int n, int c, int hw)
    {
        // Each part of the sums (small planes: blocks of samples; large planes: segments of samples per block of
        // channels) adds its own to the running sums the part before left: on two or three threads, back to back, a
        // part that did not wait would start from another job's or a partial sum. Every call must give the one-thread
        // bits.
        float[] x = Reference.ToFloat(Reference.Random(n * c * hw, 31, 2.0).Select(v => v + 0.5).ToArray());
        float[] dy = Reference.ToFloat(Reference.Random(n * c * hw, 32));
        var xt = Tensor.FromArray(x, n, c, hw);
        var dyt = Tensor.FromArray(dy, n, c, hw);
        var gamma = Tensor.Ones([c]);
        (int[] Mean, int[] DGamma) Run()
        {
            var mean = Tensor.Zeros([c]);
            var invStd = Tensor.Zeros([c]);
            CpuBackend.Instance.BatchNormTraining(xt, gamma, Tensor.Zeros([c]), Tensor.Zeros([n, c, hw]), mean, invStd, null, null, 0.1f, 1e-5f, n, c, hw);
            var dgamma = Tensor.Zeros([c]);
            CpuBackend.Instance.BatchNormBackward(xt, dyt, gamma, mean, invStd, Tensor.Zeros([n, c, hw]), dgamma, Tensor.Zeros([c]), n, c, hw);
            return (mean.ToArray().Select(BitConverter.SingleToInt32Bits).ToArray(), dgamma.ToArray().Select(BitConverter.SingleToInt32Bits).ToArray());
        }
        int saved = CpuThreading.Threads;
        try
        {
            CpuThreading.Threads = 1;
            var expected = Run();
            foreach (int threads in new[] { 2, 3 })
            {
                CpuThreading.Threads = threads;
                for (int i = 0; i < 200; i++)
                {
                    var got = Run();
                    Assert.Equal(expected.Mean, got.Mean);
                    Assert.Equal(expected.DGamma, got.DGamma);
                }
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }
}
