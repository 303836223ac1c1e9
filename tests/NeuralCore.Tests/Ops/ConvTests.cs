using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.NN;
using NeuralCore.Tests.Backends;
using static NeuralCore.Tests.Ops.ConvPathRuns;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// The CPU convolution kernels against the plain-loop float64 reference (forward) and against central
/// finite differences of that reference (backward data and weight), over strides, padding, dilation,
/// groups, bias, non-square kernels, odd channel counts and batch sizes that exercise every path:
/// im2col, direct 1x1, several samples unrolled into one GEMM, and backward data both as a flipped-kernel
/// convolution (stride 1) and through col2im (larger strides, or padding beyond the kernel's reach).
/// </summary>
public sealed class ConvTests
{
    private static readonly Dictionary<string, (Conv2dParams P, bool Bias)> Geometries = new()
    {
        // name: (N, C, H, W, K, R, S, strideH, strideW, padH, padW, dilationH, dilationW, groups)
        ["3x3 pad1 bias batch1"] = (new(1, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1), true),
        ["3x3 stride2 C19->K38"] = (new(2, 19, 7, 8, 38, 3, 3, 2, 2, 1, 1, 1, 1, 1), false),
        ["5x5 stride2 pad2 groups2"] = (new(2, 4, 11, 10, 6, 5, 5, 2, 2, 2, 2, 1, 1, 2), true),
        ["depthwise 3x3"] = (new(3, 6, 8, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 6), true),
        ["depthwise multiplier 2"] = (new(2, 3, 6, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3), false),
        ["dilation2 pad2"] = (new(2, 3, 10, 12, 5, 3, 3, 1, 1, 2, 2, 2, 2, 1), false),
        ["3x1 pad(1,0) bias"] = (new(3, 5, 9, 7, 7, 3, 1, 1, 1, 1, 0, 1, 1, 1), true),
        ["1x1 direct C19->K38"] = (new(3, 19, 6, 5, 38, 1, 1, 1, 1, 0, 0, 1, 1, 1), false),
        // Planes of 32 values or more: the 1x1 weight gradient multiplies sample by sample from the planes.
        ["1x1 direct on 6 x 7, C5->K9"] = (new(3, 5, 6, 7, 9, 1, 1, 1, 1, 0, 0, 1, 1, 1), true),
        // Backward data transposes each group's 20 x 18 weights in tiles of 16 (a partial tile on both axes).
        ["1x1 groups2 C36->K40"] = (new(2, 36, 3, 5, 40, 1, 1, 1, 1, 0, 0, 1, 1, 2), false),
        ["1x1 stride2 bias"] = (new(2, 8, 7, 7, 5, 1, 1, 2, 2, 0, 0, 1, 1, 1), true),
        ["1x1 pad1"] = (new(1, 4, 5, 5, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1), false),
        ["stem 5x5 stride2 pad1"] = (new(3, 1, 28, 28, 8, 5, 5, 2, 2, 1, 1, 1, 1, 1), false),
        // One input channel, stride 2 and output rows of at most 16 run the direct stem kernel: 19 channels (8 + 8 + 3),
        // odd sizes, other kernels and paddings; wider rows keep im2col.
        ["stem 5x5 stride2 C1->K19 bias odd sizes"] = (new(2, 1, 27, 23, 19, 5, 5, 2, 2, 1, 1, 1, 1, 1), true),
        ["stem 3x3 stride2 pad0 wide rows"] = (new(1, 1, 9, 70, 3, 3, 3, 2, 2, 0, 0, 1, 1, 1), false),
        ["stem 4x2 stride2 pad(2,1) bias"] = (new(3, 1, 10, 13, 9, 4, 2, 2, 2, 2, 1, 1, 1, 1), true),
        ["5x5 stride2 wide rows"] = (new(1, 2, 9, 60, 3, 5, 5, 2, 2, 1, 1, 1, 1, 1), true),
        ["mixed stride(2,1) pad(2,0) dilation(1,2)"] = (new(2, 3, 9, 11, 4, 3, 3, 2, 1, 2, 0, 1, 2, 1), true),
        ["unrolled samples 3x3 on 1x6"] = (new(16, 8, 1, 6, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1), false),
        ["unrolled samples 1x1 on 1x6"] = (new(16, 12, 1, 6, 10, 1, 1, 1, 1, 0, 0, 1, 1, 1), true),
        ["unrolled samples groups2 bias"] = (new(10, 4, 3, 4, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2), true),
        ["3x3 valid C5->K7"] = (new(2, 5, 6, 7, 7, 3, 3, 1, 1, 0, 0, 1, 1, 1), true),
        // Taps that only ever meet the zero border: rows and columns of the kernel are cut off before the GEMMs.
        ["dead taps on both axes 5x5 pad2 on 1x2"] = (new(3, 4, 1, 2, 5, 5, 5, 1, 1, 2, 2, 1, 1, 1), true),
        ["dead taps stride2 groups2 on 1x9"] = (new(2, 4, 1, 9, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2), true),
        ["dead taps dilation2 pad2 on 2x7"] = (new(2, 3, 2, 7, 4, 3, 3, 1, 1, 2, 2, 2, 2, 1), false),
        ["stride3 kernel larger than stride"] = (new(2, 2, 13, 11, 3, 4, 2, 3, 3, 1, 0, 1, 1, 1), false),
        // Stride-1 "same" convolutions run through channel-major copies chunk by chunk (AVX-512): planes this large
        // give chunks of 2 samples, so 11 samples make five chunks of 2 and a last one of 1, three per thread.
        ["same 3x3 in chunks of samples, last one short"] = (new(11, 4, 64, 128, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1), true),
    };

    public static TheoryData<string> Cases => new(Geometries.Keys);

    /// <summary>Inputs rounded to float32 once, so the reference sees exactly what the kernel sees.</summary>
    private sealed record Data(Conv2dParams P, float[] X, float[] W, float[]? B, float[] G)
    {
        public static Data For(string name)
        {
            var (p, bias) = Geometries[name];
            int seed = name.Length * 7919;
            return new Data(p,
                Reference.ToFloat(Reference.Random(p.N * p.C * p.H * p.W, seed)),
                Reference.ToFloat(Reference.Random(p.K * (p.C / p.Groups) * p.R * p.S, seed + 1)),
                bias ? Reference.ToFloat(Reference.Random(p.K, seed + 2)) : null,
                Reference.ToFloat(Reference.Random(p.N * p.K * p.P * p.Q, seed + 3)));
        }

        public int[] XShape => [P.N, P.C, P.H, P.W];
        public int[] WShape => [P.K, P.C / P.Groups, P.R, P.S];
        public int[] YShape => [P.N, P.K, P.P, P.Q];
        public long ForwardMacs => (long)P.N * P.K * P.P * P.Q * (P.C / P.Groups) * P.R * P.S;
    }

    private static float[] Forward(Data d)
    {
        var y = Tensor.Zeros(d.YShape);
        CpuBackend.Instance.Conv2d(Tensor.FromArray(d.X, d.XShape), Tensor.FromArray(d.W, d.WShape),
            d.B is null ? null : Tensor.FromArray(d.B, d.P.K), y, d.P);
        return y.ToArray();
    }

    private static float[] BackwardData(Data d)
    {
        var dx = Tensor.Full(d.XShape, float.NaN);
        CpuBackend.Instance.Conv2dBackwardData(Tensor.FromArray(d.G, d.YShape), Tensor.FromArray(d.W, d.WShape), dx, d.P);
        return dx.ToArray();
    }

    private static float[] BackwardWeight(Data d)
    {
        var dw = Tensor.Full(d.WShape, float.NaN);
        CpuBackend.Instance.Conv2dBackwardWeight(Tensor.FromArray(d.G, d.YShape), Tensor.FromArray(d.X, d.XShape), dw, d.P);
        return dw.ToArray();
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardMatchesReference(string name)
    {
        var d = Data.For(name);
        var expected = Reference.Conv2d(Reference.ToDouble(d.X), Reference.ToDouble(d.W), d.B is null ? null : Reference.ToDouble(d.B), d.P);
        // Float32 sums of at most C/G*R*S products of values in [-1, 1].
        GradCheck.AssertClose(expected, Forward(d), atol: 1e-5 * (d.P.C / d.P.Groups) * d.P.R * d.P.S, rtol: 1e-5, $"{name} y");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BackwardDataMatchesFiniteDifferences(string name)
    {
        var d = Data.For(name);
        double[] w = Reference.ToDouble(d.W), g = Reference.ToDouble(d.G);
        double[]? b = d.B is null ? null : Reference.ToDouble(d.B);
        double[] x = Reference.ToDouble(d.X);
        int[]? at = GradCheck.Coordinates(x.Length, d.ForwardMacs);
        // L(x) = sum(conv(x) * g), so dL/dy = g is what the kernel receives; L is linear, so h can be large.
        var fd = GradCheck.Numerical(xs => GradCheck.Dot(Reference.Conv2d(xs, w, b, d.P), g), x, 1e-3, at);
        GradCheck.AssertClose(fd, BackwardData(d), 2e-4, 1e-3, $"{name} dx", at);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BackwardWeightMatchesFiniteDifferences(string name)
    {
        var d = Data.For(name);
        double[] x = Reference.ToDouble(d.X), g = Reference.ToDouble(d.G);
        double[]? b = d.B is null ? null : Reference.ToDouble(d.B);
        double[] w = Reference.ToDouble(d.W);
        int[]? at = GradCheck.Coordinates(w.Length, d.ForwardMacs);
        var fd = GradCheck.Numerical(ws => GradCheck.Dot(Reference.Conv2d(x, ws, b, d.P), g), w, 1e-3, at);
        // The weight gradient sums N*P*Q products; allow for that many float32 roundings.
        var actual = BackwardWeight(d);
        double atol = 2e-5 * Math.Sqrt(d.P.N * d.P.P * d.P.Q) + 1e-4;
        GradCheck.AssertClose(fd, actual, atol, 1e-3, $"{name} dw", at);
    }

    [Fact]
    public void TapsThatOnlyMeetTheBorderGetZeroGradientAndChangeNothing()
    {
        // 3x3 with padding 1 on maps one row high (MNIST's stage 2): the top and bottom rows of taps read only padding.
        var d = Data.For("unrolled samples 3x3 on 1x6");
        var dw = BackwardWeight(d);
        var changed = (float[])d.W.Clone();
        for (int i = 0; i < dw.Length; i++)
        {
            int r = i / d.P.S % d.P.R;
            if (r == 1) continue;
            Assert.Equal(0f, dw[i]);
            changed[i] = 1000f + i;
        }
        Assert.Contains(dw, v => v != 0f);
        var other = d with { W = changed };
        Assert.Equal(Forward(d), Forward(other));
        Assert.Equal(BackwardData(d), BackwardData(other));
    }

    /// <summary>The backward tests start from NaN-filled gradients, so stale values would show there; this covers the forward.</summary>
    [Fact]
    public void ForwardOverwritesItsOutput()
    {
        var d = Data.For("unrolled samples groups2 bias");
        var first = Forward(d);
        var y = Tensor.Full(d.YShape, 1e6);
        CpuBackend.Instance.Conv2d(Tensor.FromArray(d.X, d.XShape), Tensor.FromArray(d.W, d.WShape), Tensor.FromArray(d.B!, d.P.K), y, d.P);
        Assert.Equal(first, y.ToArray());
    }

    [Fact]
    public void RejectsMismatchedOutputShape()
    {
        var d = Data.For("3x3 pad1 bias batch1");
        var wrong = Tensor.Zeros([d.P.N, d.P.K, d.P.P + 1, d.P.Q]);
        var e = Assert.Throws<ArgumentException>(() =>
            CpuBackend.Instance.Conv2d(Tensor.FromArray(d.X, d.XShape), Tensor.FromArray(d.W, d.WShape), null, wrong, d.P));
        Assert.Contains("output y", e.Message);
    }

    [Fact]
    public void AutogradPathMatchesReferenceGradients()
    {
        var d = Data.For("mixed stride(2,1) pad(2,0) dilation(1,2)");
        var x = Tensor.FromArray(d.X, d.XShape);
        var w = Tensor.FromArray(d.W, d.WShape);
        var b = Tensor.FromArray(d.B!, d.P.K);
        x.RequiresGrad = w.RequiresGrad = b.RequiresGrad = true;
        var y = Functional.Conv2d(x, w, b, stride: (d.P.StrideH, d.P.StrideW), padding: (d.P.PadH, d.P.PadW),
            dilation: (d.P.DilationH, d.P.DilationW), groups: d.P.Groups);
        var loss = y.Mul(Tensor.FromArray(d.G, d.YShape)).Sum();
        NeuralCore.Autograd.Autograd.Backward(loss);

        double[] xd = Reference.ToDouble(d.X), wd = Reference.ToDouble(d.W), bd = Reference.ToDouble(d.B!), g = Reference.ToDouble(d.G);
        GradCheck.AssertClose(Reference.Conv2d(xd, wd, bd, d.P), y.ToArray(), 1e-4, 1e-5, "y");
        GradCheck.AssertClose(GradCheck.Numerical(xs => GradCheck.Dot(Reference.Conv2d(xs, wd, bd, d.P), g), xd, 1e-3), x.Grad!.ToArray(), 2e-4, 1e-3, "x.Grad");
        GradCheck.AssertClose(GradCheck.Numerical(ws => GradCheck.Dot(Reference.Conv2d(xd, ws, bd, d.P), g), wd, 1e-3), w.Grad!.ToArray(), 2e-4, 1e-3, "w.Grad");
        GradCheck.AssertClose(GradCheck.Numerical(bs => GradCheck.Dot(Reference.Conv2d(xd, wd, bs, d.P), g), bd, 1e-3), b.Grad!.ToArray(), 2e-4, 1e-3, "b.Grad");
    }
}

/// <summary>Thread-count behaviour of the convolution kernels (changes the process-wide thread count, so runs alone).</summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed class ConvThreadingTests
{
    [Theory]
    [InlineData(16, 8, 1, 6, 12, 3, 1)]
    [InlineData(7, 6, 9, 8, 6, 3, 2)]
    [InlineData(9, 12, 3, 6, 10, 1, 1)]
    public void ResultsAreBitIdenticalRunToRunAndCloseAcrossThreadCounts(int n, int c, int h, int w, int k, int kernel, int groups)
    {
        var p = new Conv2dParams(n, c, h, w, k, kernel, kernel, 1, 1, kernel / 2, kernel / 2, 1, 1, groups);
        float[] x = Reference.ToFloat(Reference.Random(n * c * h * w, 1));
        float[] wt = Reference.ToFloat(Reference.Random(k * c / groups * kernel * kernel, 2));
        float[] dy = Reference.ToFloat(Reference.Random(n * k * p.P * p.Q, 3));
        int[] xs = [n, c, h, w], ws = [k, c / groups, kernel, kernel], ys = [n, k, p.P, p.Q];

        (float[] Y, float[] Dx, float[] Dw) Run(int threads)
        {
            CpuThreading.Threads = threads;
            var y = Tensor.Zeros(ys);
            var dx = Tensor.Zeros(xs);
            var dw = Tensor.Zeros(ws);
            var be = CpuBackend.Instance;
            be.Conv2d(Tensor.FromArray(x, xs), Tensor.FromArray(wt, ws), null, y, p);
            be.Conv2dBackwardData(Tensor.FromArray(dy, ys), Tensor.FromArray(wt, ws), dx, p);
            be.Conv2dBackwardWeight(Tensor.FromArray(dy, ys), Tensor.FromArray(x, xs), dw, p);
            return (y.ToArray(), dx.ToArray(), dw.ToArray());
        }

        int saved = CpuThreading.Threads;
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
            {
                var a = Run(threads);
                var b = Run(threads);
                Assert.Equal(a.Y, b.Y);
                Assert.Equal(a.Dx, b.Dx);
                Assert.Equal(a.Dw, b.Dw);
            }
            var one = Run(1);
            var three = Run(3);
            // The weight gradient sums per-thread partials, so only closeness holds across thread counts.
            GradCheck.AssertClose(Reference.ToDouble(one.Y), three.Y, 1e-5, 1e-5, "y");
            GradCheck.AssertClose(Reference.ToDouble(one.Dx), three.Dx, 1e-5, 1e-5, "dx");
            GradCheck.AssertClose(Reference.ToDouble(one.Dw), three.Dw, 1e-4, 1e-5, "dw");
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }
}

/// <summary>
/// <see cref="DirectWeightGradient"/> (stride-1 "same" and stem weight gradients as direct dot products) against a float64
/// sum of products and against the GEMM path, with channel counts that leave its 4 x 5 blocks partly filled, planes whose
/// border masks repeat only after many vectors, chunks that end inside a vector, and non-finite values. Turns the path off
/// process-wide for the GEMM comparison, so runs alone.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed class DirectWeightGradientTests
{
    /// <summary>
    /// The kernel widths the stride-1 direct weight gradient runs at on this CPU (<see cref="Gemm.Kind"/>): 512 and 256
    /// bits, or 256, or none. Tests run at each, skip without any, and still assert that their own shapes run.
    /// </summary>
    private static Gemm.KernelKind[] StrideOneWidths() =>
        [.. new[] { Gemm.KernelKind.Vector512, Gemm.KernelKind.Vector256 }.Where(kind => kind <= Gemm.Best
            && WithKernels(kind, () => DirectWeightGradient.CanRun(new Conv2dParams(1, 1, 6, 6, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1))))];

    private const string NoVectorKernels = "This CPU has neither AVX-512 nor AVX2 and FMA: the direct kernels do not run.";

    /// <summary>
    /// dw[k, c, r, s] = sum over n, p, q of dy[n, k, p, q] * x[n, c, p * stride + r - padH, q * stride + s - padW], over the
    /// inputs inside the map.
    /// </summary>
    internal static double[] Expected(float[] dy, float[] x, in Conv2dParams p)
    {
        var dw = new double[p.K * p.C * p.R * p.S];
        for (int k = 0; k < p.K; k++)
        for (int c = 0; c < p.C; c++)
        for (int r = 0; r < p.R; r++)
        for (int s = 0; s < p.S; s++)
        {
            double sum = 0;
            for (int n = 0; n < p.N; n++)
            for (int i = 0; i < p.P; i++)
            for (int j = 0; j < p.Q; j++)
            {
                int ih = i * p.StrideH + r - p.PadH, iw = j * p.StrideW + s - p.PadW;
                if ((uint)ih < (uint)p.H && (uint)iw < (uint)p.W)
                    sum += (double)dy[((n * p.K + k) * p.P + i) * p.Q + j] * x[((n * p.C + c) * p.H + ih) * p.W + iw];
            }
            dw[((k * p.C + c) * p.R + r) * p.S + s] = sum;
        }
        return dw;
    }

    private static unsafe float[] Direct(float[] dy, float[] x, in Conv2dParams p)
    {
        var dw = new float[p.K * p.C * p.R * p.S];
        Array.Fill(dw, float.NaN);
        fixed (float* pdy = dy, px = x, pdw = dw)
        {
            if (p.StrideH == 1) DirectWeightGradient.Run(pdy, px, pdw, p);
            else DirectWeightGradient.RunStem(pdy, px, pdw, p);
        }
        return dw;
    }

    internal static float[] GemmPath(float[] dy, float[] x, Conv2dParams p)
    {
        var dw = Tensor.Full([p.K, p.C, p.R, p.S], float.NaN);
        DirectWeightGradient.Enabled = false;
        ChannelLaneWeightGradient.Enabled = false;
        try
        {
            CpuBackend.Instance.Conv2dBackwardWeight(Tensor.FromArray(dy, p.N, p.K, p.P, p.Q), Tensor.FromArray(x, p.N, p.C, p.H, p.W), dw, p);
        }
        finally
        {
            DirectWeightGradient.Enabled = true;
            ChannelLaneWeightGradient.Enabled = true;
        }
        return dw.ToArray();
    }

    [Theory]
    // N, C, H, W, K, R, S, padH, padW
    [InlineData(3, 19, 6, 6, 19, 3, 3, 1, 1)]  // the pruned MNIST stage: blocks of 5 + 5 + 5 + 4 and 4 + 4 + 4 + 4 + 3 channels
    [InlineData(2, 7, 5, 7, 3, 3, 3, 1, 1)]    // a 35-value plane: its masks repeat after 35 vectors; 70 positions end inside one
    [InlineData(5, 6, 1, 6, 9, 1, 3, 0, 1)]    // a 3x3 cut to its middle row on maps one row high
    [InlineData(2, 3, 9, 10, 5, 5, 5, 2, 2)]   // a 5x5 reaching two rows and columns out
    [InlineData(4, 2, 4, 4, 1, 3, 1, 1, 0)]    // one output channel, a 3x1 kernel
    [InlineData(40, 4, 31, 24, 6, 3, 3, 1, 1)] // several chunks of samples shared by the threads
    [InlineData(4, 12, 1, 6, 38, 1, 1, 0, 0)]  // a 1x1 on 1 x 6 maps
    public void MatchesTheSumOfProductsAndTheGemmPath(int n, int c, int h, int w, int k, int r, int s, int padH, int padW)
    {
        var widths = StrideOneWidths();
        if (widths.Length == 0) Assert.Skip(NoVectorKernels);
        foreach (var width in widths) WithKernels(width, () => MatchesTheSumOfProductsAndTheGemmPathAt(n, c, h, w, k, r, s, padH, padW));
    }

    private static void MatchesTheSumOfProductsAndTheGemmPathAt(int n, int c, int h, int w, int k, int r, int s, int padH, int padW)
    {
        var p = new Conv2dParams(n, c, h, w, k, r, s, 1, 1, padH, padW, 1, 1, 1);
        Assert.True(DirectWeightGradient.CanRun(p));
        float[] x = Reference.ToFloat(Reference.Random(n * c * h * w, 11));
        float[] dy = Reference.ToFloat(Reference.Random(n * k * h * w, 12));
        var direct = Direct(dy, x, p);
        double atol = 1e-5 * Math.Sqrt(n * h * w) + 1e-5;
        GradCheck.AssertClose(Expected(dy, x, p), direct, atol, 1e-5, "direct dw");
        GradCheck.AssertClose(Reference.ToDouble(GemmPath(dy, x, p)), direct, atol, 1e-5, "direct dw against the GEMM path");
    }

    /// <summary>
    /// Segments of 768 positions where a core's L1 data cache holds 48 KiB or more (the Xeon hosts'), one pass per tap
    /// where it holds less (Zen 4's 32 KiB); the default follows this machine's cache.
    /// </summary>
    [Fact]
    public void WeightGradientSegmentsFollowTheLevelOneCache()
    {
        Assert.Equal(768, DirectWeightGradient.SegmentLengthFor(48 << 10));
        Assert.Equal(768, DirectWeightGradient.SegmentLengthFor(64 << 10));
        Assert.Equal(int.MaxValue, DirectWeightGradient.SegmentLengthFor(32 << 10));
        Assert.Equal(DirectWeightGradient.SegmentLengthFor(CpuCaches.LevelOneBytes()), DirectWeightGradient.SegmentLength);
    }

    /// <summary>
    /// Runs of over 1280 positions are taken in segments where the L1 allows (DirectWeightGradient.SegmentLength), each
    /// block's accumulators carried between them: the bits of one pass over the run, for segments of 64 positions, of a
    /// length that is not a whole number of vectors, and of the Xeon's 768, and the sum of products. 3x3 kernels: chunks of 2 x 744 positions
    /// at two threads (4 x 744 at one), and chunks of 50 x 35 positions, whose masks repeat every 35 vectors, ending
    /// inside a vector. Stems (5x5, stride 2): mel's 63 x 49 outputs, one sample a chunk, in pieces of its run; MNIST's
    /// 13 x 13, in groups of samples.
    /// </summary>
    [Theory]
    [InlineData(4, 19, 31, 24, 19, 1)]
    [InlineData(100, 7, 5, 7, 3, 1)]
    [InlineData(3, 1, 128, 100, 19, 2)]
    [InlineData(40, 1, 28, 28, 10, 2)]
    public void SegmentsOfARunGiveTheBitsOfOnePass(int n, int c, int h, int w, int k, int stride)
    {
        var widths = stride == 1 ? StrideOneWidths() : StemWidths();
        if (widths.Length == 0) Assert.Skip(NoVectorKernels);
        foreach (var width in widths) WithKernels(width, () => SegmentsGiveTheBitsOfOnePass(n, c, h, w, k, stride));
    }

    private static void SegmentsGiveTheBitsOfOnePass(int n, int c, int h, int w, int k, int stride)
    {
        var p = stride == 1 ? new Conv2dParams(n, c, h, w, k, 3, 3, 1, 1, 1, 1, 1, 1, 1) : new Conv2dParams(n, c, h, w, k, 5, 5, 2, 2, 1, 1, 1, 1, 1);
        float[] x = Reference.ToFloat(Reference.Random(n * c * h * w, 31));
        float[] dy = Reference.ToFloat(Reference.Random(n * k * p.P * p.Q, 32));
        int saved = DirectWeightGradient.SegmentLength;
        try
        {
            DirectWeightGradient.SegmentLength = int.MaxValue;
            var whole = Direct(dy, x, p);
            foreach (int length in new[] { 64, 1000, 768 })
            {
                DirectWeightGradient.SegmentLength = length;
                Assert.Equal(whole.Select(BitConverter.SingleToInt32Bits), Direct(dy, x, p).Select(BitConverter.SingleToInt32Bits));
            }
            GradCheck.AssertClose(Expected(dy, x, p), whole, 1e-5 * Math.Sqrt(n * p.P * p.Q) + 1e-5, 1e-5, "direct dw");
        }
        finally
        {
            DirectWeightGradient.SegmentLength = saved;
        }
    }

    [Theory]
    // N, H, W, K, R, S, padH, padW: a stem (one input channel, stride 2)
    [InlineData(3, 28, 28, 19, 5, 5, 1, 1)]    // MNIST's, in a chunk of three samples: 19 = 4 + 4 + 4 + 4 + 3, 25 taps = 5 x 5
    [InlineData(1, 30, 22, 8, 5, 5, 1, 1)]     // one sample: dy read where it lies
    [InlineData(2, 27, 23, 5, 5, 5, 2, 2)]     // odd sizes, padding 2
    [InlineData(2, 9, 70, 3, 3, 3, 0, 0)]      // no padding, wide rows (five vectors of 16)
    [InlineData(3, 10, 13, 9, 4, 2, 2, 1)]     // an even kernel, padding past its reach
    [InlineData(2, 20, 31, 10, 5, 5, 1, 1)]    // rows of 31 inputs, the most one split of two vectors takes
    public void StemsMatchTheSumOfProductsAndTheGemmPath(int n, int h, int w, int k, int r, int s, int padH, int padW)
    {
        var widths = StemWidths();
        if (widths.Length == 0) Assert.Skip(NoVectorKernels);
        foreach (var width in widths) WithKernels(width, () => StemMatchesTheSumOfProductsAndTheGemmPath(n, h, w, k, r, s, padH, padW));
    }

    private static void StemMatchesTheSumOfProductsAndTheGemmPath(int n, int h, int w, int k, int r, int s, int padH, int padW)
    {
        var p = new Conv2dParams(n, 1, h, w, k, r, s, 2, 2, padH, padW, 1, 1, 1);
        Assert.True(DirectWeightGradient.CanRunStem(p));
        float[] x = Reference.ToFloat(Reference.Random(n * h * w, 13));
        float[] dy = Reference.ToFloat(Reference.Random(n * k * p.P * p.Q, 14));
        var direct = Direct(dy, x, p);
        double atol = 1e-5 * Math.Sqrt(n * p.P * p.Q) + 1e-5;
        GradCheck.AssertClose(Expected(dy, x, p), direct, atol, 1e-5, "stem dw");
        GradCheck.AssertClose(Reference.ToDouble(GemmPath(dy, x, p)), direct, atol, 1e-5, "stem dw against the GEMM path");
    }

    [Theory]
    [InlineData(3, 7, 5, 6, 6, 1)]  // a 3x3, padding 1: chunks of several samples
    [InlineData(3, 1, 13, 12, 6, 2)] // a 5x5 stem (stride 2, padding 1), three samples in a chunk
    [InlineData(1, 1, 13, 12, 6, 2)] // the same stem on one sample (dy read where it lies)
    public void NonFiniteValuesReachTheSameWeightsAsInTheGemmPath(int n, int c, int h, int w, int k, int stride)
    {
        var widths = stride == 1 ? StrideOneWidths() : StemWidths();
        if (widths.Length == 0) Assert.Skip(NoVectorKernels);
        foreach (var width in widths) WithKernels(width, () => NonFiniteValuesReachTheGemmPathsWeights(n, c, h, w, k, stride));
    }

    private static void NonFiniteValuesReachTheGemmPathsWeights(int n, int c, int h, int w, int k, int stride)
    {
        // A NaN input value reaches every weight whose tap reads it; an infinite gradient at the map's edge meets the zero
        // border in the taps that read off the map, and infinity times zero is NaN there, as im2col's zeros give.
        int kernel = stride == 1 ? 3 : 5;
        var p = new Conv2dParams(n, c, h, w, k, kernel, kernel, stride, stride, 1, 1, 1, 1, 1);
        float[] x = Reference.ToFloat(Reference.Random(p.N * p.C * p.H * p.W, 21));
        float[] dy = Reference.ToFloat(Reference.Random(p.N * p.K * p.P * p.Q, 22));
        // In the second sample, in the same chunk as the first: where the first sample's positions past its last output
        // row would meet them if those were not masked (its first input rows), or where a stem's run over a sample's
        // outputs would reach if it went on past them.
        int second = Math.Min(1, n - 1);
        x[((second * p.C + c - 1) * p.H + 1) * p.W + 3] = float.NaN;
        dy[((second * p.K + 1) * p.P + p.P - 1) * p.Q + 0] = float.PositiveInfinity;
        var direct = Direct(dy, x, p);
        var gemm = GemmPath(dy, x, p);
        Assert.Equal(gemm.Select(float.IsNaN), direct.Select(float.IsNaN));
        Assert.Contains(direct, float.IsNaN);
        Assert.Contains(direct, float.IsFinite);
    }

    /// <summary>
    /// The split of rows of fewer than 32 inputs (each row loaded once, its S column phases permuted from it) writes the
    /// floats the general split writes, the planes' slack included: rows of 28 (MNIST), 31, 16 and 9 inputs, padding 0-2,
    /// odd and even kernels, one sample and a chunk of three.
    /// </summary>
    [Theory]
    [InlineData(3, 28, 28, 5, 5, 1, 1)]
    [InlineData(1, 20, 31, 5, 5, 1, 1)]
    [InlineData(2, 17, 16, 5, 5, 2, 2)]
    [InlineData(3, 10, 9, 4, 2, 2, 1)]
    [InlineData(2, 11, 30, 3, 7, 0, 3)]
    public unsafe void NarrowRowsSplitAsTheGeneralSplitDoes(int n, int h, int w, int r, int s, int padH, int padW)
    {
        if (!Gemm.Runs512) Assert.Skip("This CPU has no AVX-512: the narrow split (512-bit permutes) does not run.");
        var p = new Conv2dParams(n, 1, h, w, 4, r, s, 2, 2, padH, padW, 1, 1, 1);
        Assert.True(StemColumns.CanRun(p));
        var (px, u0) = StemColumns.Rows(p);
        Assert.True(p.Q <= 16 && w < 32);
        long planeStride = (long)n * px * p.Q + StemColumns.Slack(p, px);
        float[] x = Reference.ToFloat(Reference.Random(n * h * w, 41));
        float[] Split(bool narrow)
        {
            var planes = new float[2 * s * planeStride];
            Array.Fill(planes, float.NaN);
            StemColumns.NarrowEnabled = narrow;
            try
            {
                fixed (float* px0 = x, pp = planes) StemColumns.Split(px0, 0, n, p, px, u0, pp, planeStride);
            }
            finally
            {
                StemColumns.NarrowEnabled = true;
            }
            return planes;
        }
        var narrow = Split(true);
        Assert.Contains(narrow, v => !float.IsNaN(v) && v != 0);
        Assert.Equal(Split(false).Select(BitConverter.SingleToInt32Bits), narrow.Select(BitConverter.SingleToInt32Bits));
    }

    /// <summary>
    /// Plane (a, s) of the split holds x[2 (i + u0) + a, 2 q + s - padW] at row i, column q of each sample's Px x Q grid,
    /// zero off the input, at every kernel width this CPU runs: rows of 28 (MNIST), 100 (mel), 70 and 13 inputs, padding
    /// 0-3, odd and even kernels, samples from the middle of the batch; and rows of 64, where some vectors' inputs end on
    /// the row's last column (read with plain loads) and the next phase's one column past it (masked).
    /// </summary>
    [Theory]
    [InlineData(3, 28, 28, 5, 5, 1, 1)]
    [InlineData(2, 13, 100, 5, 5, 1, 1)]
    [InlineData(2, 9, 64, 5, 5, 1, 1)]
    [InlineData(2, 9, 70, 3, 3, 0, 0)]
    [InlineData(3, 10, 13, 4, 2, 2, 1)]
    [InlineData(2, 11, 31, 3, 7, 0, 3)]
    public unsafe void SplitPlanesHoldTheInputsEachTapReads(int n, int h, int w, int r, int s, int padH, int padW)
    {
        var widths = StemWidths();
        if (widths.Length == 0) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the stem's column planes are not made.");
        var p = new Conv2dParams(n + 2, 1, h, w, 4, r, s, 2, 2, padH, padW, 1, 1, 1);
        var (px, u0) = StemColumns.Rows(p);
        int grid = px * p.Q;
        long planeStride = (long)n * grid + StemColumns.Slack(p, px);
        float[] x = Reference.ToFloat(Reference.Random(p.N * h * w, 43));
        foreach (var width in widths)
        {
            var planes = new float[2 * s * planeStride];
            Array.Fill(planes, float.NaN);
            WithKernels(width, () =>
            {
                fixed (float* px0 = x, pp = planes) StemColumns.Split(px0, 1, n, p, px, u0, pp, planeStride);
            });
            for (int a = 0; a < 2; a++)
            for (int phase = 0; phase < s; phase++)
            for (int i = 0; i < n; i++)
            for (int row = 0; row < px; row++)
            for (int q = 0; q < p.Q; q++)
            {
                int ih = 2 * (row + u0) + a, iw = 2 * q + phase - padW;
                float expected = (uint)ih < (uint)h && (uint)iw < (uint)w ? x[((1 + i) * h + ih) * w + iw] : 0f;
                Assert.Equal(expected, planes[(a * s + phase) * planeStride + i * grid + row * p.Q + q]);
            }
        }
    }

    [Theory]
    [InlineData(3, 28, 28, 19, 5, 5, 1, 1, true)]   // MNIST's stem: 13 x 13 outputs, 19 = 8 + 8 + 3 channels
    [InlineData(2, 40, 30, 32, 5, 5, 1, 1, false)]  // rows of 14 outputs, 2 x 14 x 19 = 266 positions in vectors of 16
    [InlineData(1, 27, 23, 5, 5, 5, 2, 2, true)]    // odd sizes, padding 2
    [InlineData(2, 9, 70, 3, 3, 3, 0, 0, false)]    // no padding, wide rows
    [InlineData(3, 10, 13, 9, 4, 2, 2, 1, true)]    // an even kernel, padding past its reach
    [InlineData(2, 20, 31, 10, 5, 5, 1, 1, true)]   // rows of 31 inputs; 10 = 8 + 2 channels, 9 x 15 = 135 outputs: 4 pairs of vectors and one
    [InlineData(1, 27, 23, 11, 5, 5, 2, 2, false)]  // 11 = 8 + 3 channels, 14 x 12 = 168 outputs: five pairs of vectors and one
    public void StemForwardOverColumnPlanesMatchesIm2col(int n, int h, int w, int k, int r, int s, int padH, int padW, bool bias)
    {
        var widths = StemWidths();
        if (widths.Length == 0) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the stem's column planes are not made.");
        foreach (var width in widths) WithKernels(width, () => StemForwardMatchesIm2col(n, h, w, k, r, s, padH, padW, bias));
    }

    /// <summary>The kernel widths the stem's column planes run at on this CPU (<see cref="Gemm.Kind"/>): 512 and 256 bits, or 256.</summary>
    private static Gemm.KernelKind[] StemWidths() =>
        [.. new[] { Gemm.KernelKind.Vector512, Gemm.KernelKind.Vector256 }.Where(kind => kind <= Gemm.Best
            && WithKernels(kind, () => StemColumns.CanRun(new Conv2dParams(1, 1, 28, 28, 8, 5, 5, 2, 2, 1, 1, 1, 1, 1))))];

    private static void StemForwardMatchesIm2col(int n, int h, int w, int k, int r, int s, int padH, int padW, bool bias)
    {
        var p = new Conv2dParams(n, 1, h, w, k, r, s, 2, 2, padH, padW, 1, 1, 1);
        Assert.True(StemColumns.CanRun(p));
        var x = Tensor.FromArray(Reference.ToFloat(Reference.Random(n * h * w, 31)), n, 1, h, w);
        var wt = Tensor.FromArray(Reference.ToFloat(Reference.Random(k * r * s, 32)), k, 1, r, s);
        var b = bias ? Tensor.FromArray(Reference.ToFloat(Reference.Random(k, 33)), k) : null;
        float[] Run(bool columns)
        {
            var y = Tensor.Full([n, k, p.P, p.Q], float.NaN);
            StemColumns.Enabled = columns;
            try
            {
                CpuBackend.Instance.Conv2d(x, wt, b, y, p);
            }
            finally
            {
                StemColumns.Enabled = true;
            }
            return y.ToArray();
        }
        var viaColumns = Run(true);
        var viaIm2col = Run(false);
        Assert.All(viaColumns, v => Assert.False(float.IsNaN(v)));
        // Both sum a 5x5 kernel's 25 taps in (r, s) order, one multiply-add each, then add the bias. Other kernels may take
        // the GEMM's small-problem paths, or lose taps that only meet the border (an exact zero), which sum in another
        // order; there the results agree to rounding.
        if (r == 5 && s == 5)
            Assert.Equal(viaIm2col.Select(BitConverter.SingleToInt32Bits), viaColumns.Select(BitConverter.SingleToInt32Bits));
        else
            GradCheck.AssertClose(Reference.ToDouble(viaIm2col), viaColumns, 1e-5, 1e-5, "stem forward");
    }

    /// <summary>
    /// The inference plans' channel-major stem through the column planes (where the plan's direct stem does not run:
    /// without AVX-512) gives the im2col path's bits, sums, bias and activation alike: MNIST's and mel's stems, one
    /// sample and three (whose channel-major output interleaves the samples per channel), ReLU, Hardswish (applied as the
    /// vectors are stored), a sigmoid (in a pass over the planes) and none, at
    /// every kernel width this CPU runs, on 1 to 3 threads (a batch-1 stem large enough for several threads, whose channel
    /// groups the threads cannot share evenly, splits and computes a band of output rows per thread: 63 rows as 31 + 32
    /// for 19 channels on 2 threads, 30 rows as 10 + 10 + 10 for 27 channels on 3).
    /// </summary>
    [Theory]
    [InlineData(1, 28, 28, 19, UnaryOp.Hardswish)]
    [InlineData(3, 28, 28, 32, UnaryOp.Relu)]
    [InlineData(3, 40, 30, 11, null)]
    [InlineData(2, 128, 100, 19, UnaryOp.Hardswish)]
    [InlineData(1, 128, 100, 19, UnaryOp.Relu)]
    [InlineData(1, 61, 100, 27, null)]
    [InlineData(2, 40, 30, 11, UnaryOp.Sigmoid)]   // an activation applied in a pass over the planes, not as they are stored
    public unsafe void ChannelMajorStemMatchesIm2col(int n, int h, int w, int k, UnaryOp? activation)
    {
        var widths = StemWidths();
        if (widths.Length == 0) Assert.Skip(NoVectorKernels);
        var p = new Conv2dParams(n, 1, h, w, k, 5, 5, 2, 2, 1, 1, 1, 1, 1);
        float[] x = Reference.ToFloat(Reference.Random(n * h * w, 51));
        float[] wt = Reference.ToFloat(Reference.Random(k * 25, 52));
        float[] bias = Reference.ToFloat(Reference.Random(k, 53));
        float[] Run(bool columns)
        {
            var y = new float[k * n * p.P * p.Q];
            Array.Fill(y, float.NaN);
            StemColumns.Enabled = columns;
            try
            {
                fixed (float* px = x, pw = wt, pb = bias, py = y)
                    ConvKernels.ForwardChannelMajor(px, pw, pb, py, p, null, activation != null, activation ?? default, 0f, 0f);
            }
            finally
            {
                StemColumns.Enabled = true;
            }
            return y;
        }
        // At batch 1, where the channel groups do not share evenly, each of 2 or 3 threads computes a band of rows.
        OnOneToThreeThreadsAtEachWidth(widths, () =>
        {
            var viaColumns = Run(true);
            Assert.All(viaColumns, v => Assert.False(float.IsNaN(v)));
            if (activation == UnaryOp.Relu) Assert.Contains(viaColumns, v => v == 0f);
            Assert.Equal(Run(false).Select(BitConverter.SingleToInt32Bits), viaColumns.Select(BitConverter.SingleToInt32Bits));
        });
    }

    /// <summary><paramref name="run"/> on 1, 2 and 3 threads at each of <paramref name="widths"/>, the thread count restored after.</summary>
    private static void OnOneToThreeThreadsAtEachWidth(Gemm.KernelKind[] widths, Action run)
    {
        int saved = CpuThreading.Threads;
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
                foreach (var width in widths)
                    WithKernels(width, () =>
                    {
                        CpuThreading.Threads = threads;
                        run();
                    });
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    /// <summary>
    /// The column-plane stem with its 2 x 2 / 2 max pool fused (the inference plans' stem without AVX-512, its weights
    /// packed once) gives the bits of
    /// its unpooled channel-major output pooled plane by plane (<see cref="PoolKernels.MaxPlane2x2"/>, the pooling step's
    /// kernel), NaN included, computing only the rows the windows read: MNIST's 13 x 13 (its last row and column dropped)
    /// and mel's 63 x 49, one sample and three, ReLU, Hardswish and none, with and without a bias, at every kernel width
    /// this CPU runs, on 1 to 3 threads (batch-1 bands of whole windows: 31 windows as 15 + 16 on 2 threads); writes
    /// nothing past the pooled output.
    /// </summary>
    [Theory]
    [InlineData(1, 28, 28, 19, UnaryOp.Hardswish, true)]
    [InlineData(3, 28, 28, 32, UnaryOp.Relu, true)]
    [InlineData(1, 128, 100, 19, UnaryOp.Hardswish, true)]
    [InlineData(2, 40, 30, 11, null, false)]
    [InlineData(1, 61, 100, 27, UnaryOp.Relu, false)]
    public unsafe void PooledChannelMajorStemMatchesThePoolOfItsOutput(int n, int h, int w, int k, UnaryOp? activation, bool withBias)
    {
        var widths = StemWidths();
        if (widths.Length == 0) Assert.Skip(NoVectorKernels);
        var p = new Conv2dParams(n, 1, h, w, k, 5, 5, 2, 2, 1, 1, 1, 1, 1);
        var pool = new Pool2dParams(1, k * n, p.P, p.Q, 2, 2, 2, 2, 0, 0);
        float[] x = Reference.ToFloat(Reference.Random(n * h * w, 54));
        // A NaN in the first sample's input: the outputs whose taps read it are NaN, and so are the windows that hold them.
        x[5 * w + 7] = float.NaN;
        float[] wt = Reference.ToFloat(Reference.Random(k * 25, 55));
        float[]? bias = withBias ? Reference.ToFloat(Reference.Random(k, 56)) : null;
        var weights = new StemColumns.Weights(wt, bias, p);
        OnOneToThreeThreadsAtEachWidth(widths, () =>
        {
            Assert.True(StemColumns.CanRunPooled(p, pool));
            var unpooled = new float[k * n * p.P * p.Q];
            var expected = new float[k * n * pool.P * pool.Q];
            var actual = Enumerable.Repeat(float.NaN, expected.Length + 16).ToArray();
            fixed (float* px = x, pw = wt, pb = bias, pu = unpooled, pe = expected, pa = actual)
            {
                ConvKernels.ForwardChannelMajor(px, pw, pb, pu, p, null, activation != null, activation ?? default, 0f, 0f);
                for (int plane = 0; plane < k * n; plane++)
                    PoolKernels.MaxPlane2x2(pu + plane * p.P * p.Q, pe + plane * pool.P * pool.Q, null, p.Q, pool.P, pool.Q);
                StemColumns.ForwardChannelMajor(px, weights, pa, p, activation != null, activation ?? default, 0f, 0f, pool);
            }
            Assert.Equal(Bits(expected), Bits(actual[..expected.Length]));
            Assert.All(actual[expected.Length..], v => Assert.True(float.IsNaN(v)));
            Assert.Contains(expected, float.IsNaN);
            Assert.Contains(expected, float.IsFinite);
        });
    }

    /// <summary>A pool other than 2 x 2 / 2 inside the output is refused.</summary>
    [Theory]
    [InlineData(2, 2, 2, 2, 0, false, true)]
    [InlineData(3, 3, 2, 2, 0, false, false)]   // windows of 3 x 3
    [InlineData(2, 2, 1, 1, 0, false, false)]   // overlapping windows
    [InlineData(2, 2, 2, 2, 1, false, false)]   // padded
    [InlineData(2, 2, 2, 2, 0, true, false)]    // ceil mode: the last window partly off the output
    public unsafe void PooledStemTakesOnlyWholeTwoByTwoWindows(int kh, int kw, int sh, int sw, int pad, bool ceil, bool expected)
    {
        if (StemWidths().Length == 0) Assert.Skip(NoVectorKernels);
        var p = new Conv2dParams(1, 1, 28, 28, 8, 5, 5, 2, 2, 1, 1, 1, 1, 1);
        var pool = new Pool2dParams(1, 8, p.P, p.Q, kh, kw, sh, sw, pad, pad, ceil);
        Assert.Equal(expected, StemColumns.CanRunPooled(p, pool));
        if (expected) return;
        var weights = new StemColumns.Weights(new float[8 * 25], null, p);
        var error = Assert.Throws<ArgumentException>(() => StemColumns.ForwardChannelMajor(null, weights, null, p, false, default, 0f, 0f, pool));
        Assert.Contains("CanRunPooled", error.Message);
    }

    /// <summary>
    /// A stem's weights packed once are refused for another stem (other channels, kernel or input), and weights or biases
    /// of the wrong length, or a convolution that is no stem, are refused when packing; another batch is fine.
    /// </summary>
    [Fact]
    public unsafe void StemWeightsPackedOnceFitOnlyTheirStem()
    {
        if (StemWidths().Length == 0) Assert.Skip(NoVectorKernels);
        var p = new Conv2dParams(1, 1, 28, 28, 8, 5, 5, 2, 2, 1, 1, 1, 1, 1);
        var weights = new StemColumns.Weights(new float[8 * 25], new float[8], p);
        Assert.True(weights.Fits(p with { N = 7 }));
        Assert.False(weights.Fits(p with { K = 9 }));
        Assert.False(weights.Fits(p with { H = 30 }));
        Assert.False(weights.Fits(p with { PadH = 2, PadW = 2 }));
        var error = Assert.Throws<ArgumentException>(() => StemColumns.ForwardChannelMajor(null, weights, null, p with { W = 29 }, false, default, 0f, 0f, null));
        Assert.Contains("weights packed for another stem", error.Message);
        Assert.Throws<ArgumentException>(() => new StemColumns.Weights(new float[8 * 24], null, p));
        Assert.Throws<ArgumentException>(() => new StemColumns.Weights(new float[8 * 25], new float[7], p));
        Assert.Throws<ArgumentException>(() => new StemColumns.Weights(new float[8 * 25], null, p with { StrideH = 1, StrideW = 1 }));
    }

    /// <summary>
    /// The bits of one chunk on one thread, modelled in scalar code: lane l of an accumulator adds the products at the
    /// chunk's positions l, l + L, ... in order (L = 16 lanes with AVX-512, 8 with AVX2), each a fused multiply-add (zero
    /// where a tap reads off the plane), and the L lanes are summed as Vector512.Sum sums them (adjacent pairs, then
    /// pairs of those). Covers the kernels for rows of whole vectors (1x1 without padding, whose rows are padded with
    /// zeros), the masked kernel, and the four-at-a-time lane sums both use, on blocks partly filled (6 = 3 + 3 output
    /// rows, 7 = 3 + 4 inputs; at 256 bits 6 = 2 + 2 + 2), at every width this CPU runs.
    /// </summary>
    [Theory]
    [InlineData(5, 7, 1, 6, 6, 1, 1, 0)]   // 30 positions, padded to 32
    [InlineData(8, 9, 1, 6, 11, 1, 1, 0)]  // 48: whole vectors, no padding
    [InlineData(3, 7, 3, 6, 6, 3, 3, 1)]   // masked: a 3x3 with padding 1, 54 positions ending inside a vector
    public void SumsFollowTheirOrder(int n, int c, int h, int w, int k, int r, int s, int pad)
    {
        var widths = StrideOneWidths();
        if (widths.Length == 0) Assert.Skip(NoVectorKernels);
        foreach (var width in widths) WithKernels(width, () => SumsFollowTheirOrderAt(width == Gemm.KernelKind.Vector512 ? 16 : 8, n, c, h, w, k, r, s, pad));
    }

    private static void SumsFollowTheirOrderAt(int laneCount, int n, int c, int h, int w, int k, int r, int s, int pad)
    {
        var p = new Conv2dParams(n, c, h, w, k, r, s, 1, 1, pad, pad, 1, 1, 1);
        float[] x = Reference.ToFloat(Reference.Random(n * c * h * w, 41));
        float[] dy = Reference.ToFloat(Reference.Random(n * k * h * w, 42));
        int saved = CpuThreading.Threads;
        CpuThreading.Threads = 1;
        float[] direct;
        try
        {
            direct = Direct(dy, x, p);
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
        int plane = h * w, length = n * plane;
        var expected = new float[direct.Length];
        var lanes = new float[laneCount];
        for (int kk = 0; kk < k; kk++)
        for (int cc = 0; cc < c; cc++)
        for (int tap = 0; tap < r * s; tap++)
        {
            int dr = tap / s - pad, ds = tap % s - pad;
            Array.Clear(lanes);
            for (int j = 0; j < length; j++)
            {
                int sample = j / plane, row = j % plane / w, column = j % w;
                bool inside = (uint)(row + dr) < (uint)h && (uint)(column + ds) < (uint)w;
                float xv = inside ? x[(sample * c + cc) * plane + (row + dr) * w + column + ds] : 0f;
                lanes[j % laneCount] = MathF.FusedMultiplyAdd(dy[(sample * k + kk) * plane + j % plane], xv, lanes[j % laneCount]);
            }
            for (int width = laneCount; width > 1; width /= 2)
                for (int i = 0; i < width / 2; i++) lanes[i] = lanes[2 * i] + lanes[2 * i + 1];
            expected[(kk * c + cc) * r * s + tap] = 0f + lanes[0];
        }
        Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), direct.Select(BitConverter.SingleToInt32Bits));
    }

    [Theory]
    // The shapes CP-ResNet's layers give (pruned and unpruned, MNIST and mel), and which path each takes.
    [InlineData(256, 19, 6, 6, 19, 3, 3, 1, true)]
    [InlineData(256, 32, 3, 6, 32, 3, 3, 1, true)]
    [InlineData(256, 32, 1, 6, 64, 1, 3, 1, true)]     // a 3x3 cut to 1x3 on 1 x 6: the GEMM path would gather
    [InlineData(64, 32, 7, 24, 64, 3, 3, 1, false)]    // 64 output channels: the GEMM
    [InlineData(256, 38, 1, 6, 38, 1, 1, 0, true)]
    [InlineData(256, 128, 1, 6, 10, 1, 1, 0, true)]
    [InlineData(64, 38, 7, 24, 38, 1, 1, 0, true)]     // 38 input channels leave the GEMM's panels part empty
    [InlineData(64, 32, 31, 24, 32, 1, 1, 0, false)]   // 32 fill them, and the planes are read in place
    [InlineData(64, 19, 31, 24, 19, 1, 1, 0, false)]   // 19 do not, but planes of 744 positions are read in place
    [InlineData(64, 19, 7, 24, 19, 1, 1, 0, true)]     // under 512 positions the direct path is faster
    [InlineData(256, 64, 1, 6, 64, 1, 1, 0, false)]
    [InlineData(256, 128, 1, 6, 128, 1, 1, 0, false)]
    [InlineData(256, 76, 1, 6, 76, 1, 1, 0, true)]     // 76 input channels on 1 x 6: part-empty panels, gathered planes
    [InlineData(256, 38, 1, 6, 76, 1, 1, 0, true)]
    [InlineData(64, 76, 7, 24, 76, 1, 1, 0, true)]     // 76 input channels: part-empty panels at any width
    [InlineData(64, 64, 7, 24, 128, 1, 1, 0, false)]
    public void RunsWhereItWasMeasuredFaster(int n, int c, int h, int w, int k, int r, int s, int pad, bool expected)
    {
        // Without vector kernels the direct path runs nowhere, which the rows that expect the GEMM still check.
        if (expected && StrideOneWidths().Length == 0) Assert.Skip(NoVectorKernels);
        var p = new Conv2dParams(n, c, h, w, k, r, s, 1, 1, r == 1 ? 0 : pad, s == 1 ? 0 : pad, 1, 1, 1);
        Assert.Equal(expected, DirectWeightGradient.Supports(p));
    }
    /// <summary>
    /// The implicit GEMM fills a full panel of a "same" convolution while multiplying its first tile of output channels
    /// (<see cref="ImplicitGemmConv.FillsWhileMultiplying"/>): forward and backward data give the bits of the panel filled
    /// on its own, for a first tile that is the only one (8 channels), one of 3 rows (19 = 8 + 8 + 3), of 5 to 7 rows
    /// (13 = 8 + 5), and whole tiles (32); 1x1 and 3x3, panels at the ends of the input (whose rows are read with masked
    /// loads) and inside it (read whole, then masked), and an infinite input at the end of a row, which the next row's
    /// outputs must not meet through their left taps; at each width the implicit GEMM runs at (at 256 bits the first 4
    /// rows' quarter tiles fill the panel).
    /// </summary>
    [Theory]
    [InlineData(4, 3, 6, 6, 8, 3)]
    [InlineData(16, 19, 6, 6, 19, 3)]
    [InlineData(8, 19, 3, 6, 19, 3)]
    [InlineData(3, 5, 7, 24, 13, 3)]
    [InlineData(6, 32, 6, 6, 32, 3)]
    [InlineData(2, 12, 15, 24, 32, 1)]
    public unsafe void FillingThePanelWhileMultiplyingKeepsTheBits(int n, int c, int h, int w, int k, int kernel)
    {
        var p = new Conv2dParams(n, c, h, w, k, kernel, kernel, 1, 1, kernel / 2, kernel / 2, 1, 1, 1);
        var widths = new[] { Gemm.KernelKind.Vector512, Gemm.KernelKind.Vector256 }.Where(kind => kind <= Gemm.Best
            && WithKernels(kind, () => ImplicitGemmConv.Supports(p) || ImplicitGemmConv.Supports256(p))).ToArray();
        if (widths.Length == 0) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the implicit GEMM does not run.");
        var g = new Generator(97);
        var values = Tensor.Randn([n, c, h, w], g).ToArray();
        // Sample 1, channel 1, row 1, last column.
        values[(c + 1) * h * w + w + w - 1] = float.PositiveInfinity;
        var x = Tensor.FromArray(values, n, c, h, w);
        var weight = Tensor.Randn([k, c, kernel, kernel], g);
        var dy = Tensor.Randn([n, k, h, w], g);
        // Up to 24 output channels would run in strips (ConvStripTests), and a 1x1 would read its input rows in place
        // (ImplicitGemmInPlaceTests): neither fills a panel.
        ImplicitGemmConv.Strips = false;
        ImplicitGemmConv.InPlacePointwise = false;
        try
        {
            foreach (var width in widths)
            {
                ImplicitGemmConv.FillsWhileMultiplying = true;
                var (y, dx) = WithKernels(width, Run);
                ImplicitGemmConv.FillsWhileMultiplying = false;
                var (yPanel, dxPanel) = WithKernels(width, Run);
                Assert.Equal(yPanel, y);
                // The 1x1 runs its forward only (see Run).
                if (kernel > 1) Assert.Equal(dxPanel, dx);
                Assert.Contains(y, float.IsInfinity);
                Assert.Equal(kernel == 1 ? k : k * 3 * 2, y.Count(float.IsInfinity));
            }
        }
        finally
        {
            ImplicitGemmConv.FillsWhileMultiplying = true;
            ImplicitGemmConv.Strips = true;
            ImplicitGemmConv.InPlacePointwise = true;
        }

        (float[] Y, float[] Dx) Run()
        {
            var yOut = Tensor.Zeros([n, k, h, w]);
            var dxOut = Tensor.Zeros([n, c, h, w]);
            if (kernel == 1)
            {
                // A plain 1x1 reads its planes in place in the training passes: run it channel-major, as the plans do.
                fixed (float* px = x.AsSpan(), pw = weight.AsSpan(), py = yOut.AsSpan())
                {
                    var packing = ImplicitGemmConv.PackInto(pw, p, ConvScratch.Current);
                    ImplicitGemmConv.Forward(px, packing, null, py, p, null, hasActivation: false, default, 0f, 0f);
                }
                return (yOut.ToArray(), dxOut.ToArray());
            }
            CpuBackend.Instance.Conv2d(x, weight, null, yOut, p);
            CpuBackend.Instance.Conv2dBackwardData(dy, weight, dxOut, p);
            return (yOut.ToArray(), dxOut.ToArray());
        }
    }
}


/// <summary>
/// <see cref="ConvKernels.MoveChunk"/>, which every sample-major convolution uses to gather a chunk of samples' planes
/// channel-major and scatter results back: each value lands where it belongs and nothing around the planes moved is
/// touched, for planes of 6 values (groups of 8 samples through permutations, whole 8-float stores that spill onto the
/// next plane before it is written) and other small and large planes, samples with more planes than the channels moved.
/// </summary>
public sealed class MoveChunkTests
{
    [Theory]
    [InlineData(6, 19, 19, 16)]  // two groups of 8 samples, the last group's last plane the tensor's last
    [InlineData(6, 38, 38, 13)]  // a group of 8 and 5 samples copied plane by plane
    [InlineData(6, 10, 24, 8)]   // 10 of a sample's 24 channels (a group of a grouped convolution)
    [InlineData(6, 1, 1, 24)]    // one channel: every plane is its sample's last
    [InlineData(6, 5, 5, 7)]     // fewer than 8 samples
    [InlineData(18, 7, 9, 11)]   // 3 x 6 planes: a vector and a masked tail
    [InlineData(36, 3, 3, 9)]
    [InlineData(70, 4, 6, 5)]    // planes of 64 values or more
    public unsafe void MovesEveryValueAndTouchesNothingElse(int plane, int channels, int perSample, int nb)
    {
        const float Guard = -1e30f;
        long sampleStride = (long)perSample * plane;
        // Guard cells follow the samples: a write past the last plane would show there. (A read past it cannot be seen
        // from here; the kernel masks the load of the chunk's last plane for that.)
        var tensor = new float[nb * sampleStride + 32];
        var chunk = new float[channels * nb * plane + 32];
        var rng = new Random(plane * 100 + channels);
        for (int i = 0; i < nb * sampleStride; i++) tensor[i] = rng.Next(1, 1 << 20);
        Array.Fill(tensor, Guard, (int)(nb * sampleStride), 32);
        Array.Fill(chunk, Guard);
        fixed (float* t = tensor, c = chunk) ConvKernels.MoveChunk(t, sampleStride, channels, plane, nb, c, toSamples: false);
        for (int ch = 0; ch < channels; ch++)
            for (int n = 0; n < nb; n++)
                for (int j = 0; j < plane; j++)
                    Assert.Equal(tensor[n * sampleStride + ch * plane + j], chunk[(ch * nb + n) * plane + j]);
        Assert.All(chunk[(channels * nb * plane)..], v => Assert.Equal(Guard, v));

        // Back into a tensor of guards: the moved planes filled, every other value (the sample's other channels) left as it was.
        var back = new float[tensor.Length];
        Array.Fill(back, Guard);
        for (int i = 0; i < chunk.Length - 32; i++) chunk[i] += 0.5f;
        fixed (float* t = back, c = chunk) ConvKernels.MoveChunk(t, sampleStride, channels, plane, nb, c, toSamples: true);
        for (int n = 0; n < nb; n++)
            for (int q = 0; q < sampleStride; q++)
            {
                int ch = (int)(q / plane), j = (int)(q % plane);
                float expected = ch < channels ? chunk[(ch * nb + n) * plane + j] : Guard;
                Assert.Equal(expected, back[n * sampleStride + q]);
            }
        Assert.All(back[(int)(nb * sampleStride)..], v => Assert.Equal(Guard, v));
    }
}
