using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.NN;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// The CPU pooling kernels against the plain-loop float64 reference: max pooling (values and first-maximum
/// indices, exactly), average pooling (count_include_pad, ceil mode clipped at the padded border), and both
/// backward kernels against central finite differences of the reference.
/// </summary>
public sealed class PoolingTests
{
    private static readonly Dictionary<string, Pool2dParams> Geometries = new()
    {
        // name: (N, C, H, W, kernelH, kernelW, strideH, strideW, padH, padW, ceil)
        ["2x2 stride2 odd input"] = new(2, 3, 13, 13, 2, 2, 2, 2, 0, 0),
        ["(2,1) stride (2,1)"] = new(3, 5, 31, 24, 2, 1, 2, 1, 0, 0),
        ["(2,1) stride (2,1) narrow"] = new(2, 4, 7, 6, 2, 1, 2, 1, 0, 0),
        // Windows one column wide on rows wider than a vector pool rows in place: whole vectors only, an odd height (the
        // last row dropped), and a window clipped by the vertical padding.
        ["(2,1) stride (2,1) whole vectors"] = new(1, 2, 5, 32, 2, 1, 2, 1, 0, 0),
        ["(3,1) stride (2,1) pad (1,0)"] = new(2, 3, 7, 20, 3, 1, 2, 1, 1, 0),
        ["3x3 stride2 pad1"] = new(2, 3, 9, 10, 3, 3, 2, 2, 1, 1),
        ["3x3 stride2 pad1 ceil"] = new(2, 3, 10, 9, 3, 3, 2, 2, 1, 1, true),
        ["2x2 stride2 ceil odd"] = new(1, 2, 7, 9, 2, 2, 2, 2, 0, 0, true),
        ["3x2 stride(1,2) pad(1,1)"] = new(2, 2, 6, 8, 3, 2, 1, 2, 1, 1),
        ["3x3 stride1 pad1 wide rows"] = new(1, 2, 5, 37, 3, 3, 1, 1, 1, 1),
        ["3x3 stride2 ceil no pad"] = new(1, 3, 8, 8, 3, 3, 2, 2, 0, 0, true),
        ["4x4 stride3 pad2 ceil"] = new(1, 2, 11, 10, 4, 4, 3, 3, 2, 2, true),
        ["global 6x7"] = new(2, 3, 6, 7, 6, 7, 6, 7, 0, 0),
        ["many planes"] = new(8, 19, 12, 10, 2, 2, 2, 2, 0, 0),
        // Output rows of 16 or more take the row kernels (gathered for stride 2, scalar for stride 3);
        // shorter ones a per-plane window table unless it would be too large.
        ["2x2 stride2 wide rows"] = new(1, 2, 6, 70, 2, 2, 2, 2, 0, 0),
        // CP-ResNet's stem pool on a mel input (63 x 49 -> 31 x 24): a 16-output block and a masked 8-output tail.
        ["2x2 stride2 stem"] = new(2, 3, 63, 49, 2, 2, 2, 2, 0, 0),
        ["3x3 stride2 pad1 ceil wide rows"] = new(1, 2, 7, 67, 3, 3, 2, 2, 1, 1, true),
        ["3x3 stride3 pad1 wide rows"] = new(1, 1, 4, 100, 3, 3, 3, 3, 1, 1),
        ["20x20 stride2 table too large"] = new(1, 1, 40, 40, 20, 20, 2, 2, 0, 0),
    };

    public static TheoryData<string> Cases => new(Geometries.Keys);

    /// <summary>Work of one reference forward: the larger of reading the input and visiting every window element.</summary>
    private static long ReferenceCost(Pool2dParams p) => Math.Max((long)p.N * p.C * p.H * p.W, (long)p.N * p.C * p.P * p.Q * p.KernelH * p.KernelW);

    private static int[] XShape(Pool2dParams p) => [p.N, p.C, p.H, p.W];
    private static int[] YShape(Pool2dParams p) => [p.N, p.C, p.P, p.Q];

    private static float[] Input(string name, Pool2dParams p) =>
        Reference.ToFloat(Reference.Random(p.N * p.C * p.H * p.W, name.Length * 31));

    private static (float[] Y, int[] Indices) Forward(PoolKind kind, float[] x, Pool2dParams p)
    {
        var y = Tensor.Full(YShape(p), float.NaN);
        var indices = Tensor.Full(YShape(p), -7, dtype: DType.Int32);
        CpuBackend.Instance.Pool2d(kind, Tensor.FromArray(x, XShape(p)), y, indices, p);
        return (y.ToArray(), ((CpuStorage)indices.Storage).Ints);
    }

    private static float[] Backward(PoolKind kind, float[] dy, int[]? indices, Pool2dParams p)
    {
        var dx = Tensor.Full(XShape(p), float.NaN);
        CpuBackend.Instance.Pool2dBackward(kind, Tensor.FromArray(dy, YShape(p)),
            indices is null ? null : Tensor.FromArray(indices, YShape(p)), dx, p);
        return dx.ToArray();
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MaxForwardMatchesReferenceExactly(string name)
    {
        var p = Geometries[name];
        float[] x = Input(name, p);
        var (expected, expectedIndices) = Reference.Pool2d(PoolKind.Max, Reference.ToDouble(x), p);
        var (y, indices) = Forward(PoolKind.Max, x, p);
        Assert.Equal(Reference.ToFloat(expected), y);
        Assert.Equal(expectedIndices, indices);
    }

    /// <summary>Without indices (inference) max pooling takes the separable kernel where it applies: the same values.</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void MaxForwardWithoutIndicesMatchesReferenceExactly(string name)
    {
        var p = Geometries[name];
        float[] x = Input(name, p);
        var (expected, _) = Reference.Pool2d(PoolKind.Max, Reference.ToDouble(x), p);
        var y = Tensor.Full(YShape(p), float.NaN);
        CpuBackend.Instance.Pool2d(PoolKind.Max, Tensor.FromArray(x, XShape(p)), y, null, p);
        Assert.Equal(Reference.ToFloat(expected), y.ToArray());
    }

    [Fact]
    public void MaxWithoutIndicesPropagatesNaNFromAnyWindowPosition()
    {
        // 2x2 stride 2 and (2, 1) on a 6-wide and a 40-wide plane (register, row and row-buffer paths): a NaN at each
        // position of a window must reach that window's output, whichever row and column of the window it sits in.
        foreach (var p in new Pool2dParams[] { new(1, 1, 4, 6, 2, 2, 2, 2, 0, 0), new(1, 1, 4, 40, 2, 1, 2, 1, 0, 0), new(1, 1, 4, 40, 2, 2, 2, 2, 0, 0) })
        {
            for (int at = 0; at < p.H * p.W; at++)
            {
                var x = new float[p.H * p.W];
                for (int i = 0; i < x.Length; i++) x[i] = i % 7 - 3;
                x[at] = float.NaN;
                var y = Tensor.Full(YShape(p), 0f);
                CpuBackend.Instance.Pool2d(PoolKind.Max, Tensor.FromArray(x, XShape(p)), y, null, p);
                // The indexed kernel propagates NaN as PyTorch does (MaxPicksTheFirstMaximumOfTiesAndPropagatesNaN).
                var (expected, _) = Forward(PoolKind.Max, x, p);
                Assert.Contains(expected, float.IsNaN);
                Assert.Equal(expected, y.ToArray());
            }
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AverageForwardMatchesReference(string name)
    {
        var p = Geometries[name];
        float[] x = Input(name, p);
        var (expected, _) = Reference.Pool2d(PoolKind.Average, Reference.ToDouble(x), p);
        GradCheck.AssertClose(expected, Forward(PoolKind.Average, x, p).Y, 1e-6, 1e-5, $"{name} y");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MaxBackwardMatchesFiniteDifferences(string name)
    {
        var p = Geometries[name];
        float[] x = Input(name, p);
        double[] g = Reference.Random(p.N * p.C * p.P * p.Q, 5);
        float[] gf = Reference.ToFloat(g);
        g = Reference.ToDouble(gf);
        var (_, indices) = Forward(PoolKind.Max, x, p);
        int[]? at = GradCheck.Coordinates(x.Length, ReferenceCost(p), samples: 256);
        // h is far below the gaps between the random inputs of a window, so the maximum never switches.
        var fd = GradCheck.Numerical(xs => GradCheck.Dot(Reference.Pool2d(PoolKind.Max, xs, p).Y, g), Reference.ToDouble(x), 1e-9, at);
        GradCheck.AssertClose(fd, Backward(PoolKind.Max, gf, indices, p), 1e-5, 1e-5, $"{name} dx", at);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AverageBackwardMatchesFiniteDifferences(string name)
    {
        var p = Geometries[name];
        float[] x = Input(name, p);
        double[] g = Reference.ToDouble(Reference.ToFloat(Reference.Random(p.N * p.C * p.P * p.Q, 6)));
        int[]? at = GradCheck.Coordinates(x.Length, ReferenceCost(p), samples: 256);
        var fd = GradCheck.Numerical(xs => GradCheck.Dot(Reference.Pool2d(PoolKind.Average, xs, p).Y, g), Reference.ToDouble(x), 1e-3, at);
        GradCheck.AssertClose(fd, Backward(PoolKind.Average, Reference.ToFloat(g), null, p), 1e-5, 1e-5, $"{name} dx", at);
    }

    [Fact]
    public void MaxPicksTheFirstMaximumOfTiesAndPropagatesNaN()
    {
        // One plane 4x5, kernel 3x3, stride 1, padding 1: every window holds several equal maxima.
        var p = new Pool2dParams(1, 1, 4, 5, 3, 3, 1, 1, 1, 1);
        float[] x = new float[20];
        Array.Fill(x, 2f);
        x[7] = float.NaN;
        var (expected, expectedIndices) = Reference.Pool2d(PoolKind.Max, Reference.ToDouble(Enumerable.Repeat(2f, 20).ToArray()), p);
        var (y, indices) = Forward(PoolKind.Max, x, p);
        for (int i = 0; i < y.Length; i++)
        {
            int oh = i / p.Q, ow = i % p.Q;
            bool seesNaN = Math.Abs(oh - 1) <= 1 && Math.Abs(ow - 2) <= 1;
            if (seesNaN)
            {
                Assert.True(float.IsNaN(y[i]), $"output {i} should be NaN");
                Assert.Equal(7, indices[i]);
            }
            else
            {
                Assert.Equal((float)expected[i], y[i]);
                Assert.Equal(expectedIndices[i], indices[i]);
            }
        }
    }

    [Fact]
    public void TwoByTwoKernelKeepsTheScanOrderForTiesNaNAndInfinity()
    {
        // 2x2 stride 2 on rows of 37 outputs (the vectorised kernel, 16 at a time plus a tail; row 4 and column 74 are
        // in no window): for every window position, a NaN there wins, and on ties the first position in row-major order.
        var p = new Pool2dParams(1, 1, 5, 75, 2, 2, 2, 2, 0, 0);
        for (int offset = 0; offset < 4; offset++)
        {
            float[] x = new float[p.H * p.W];
            for (int i = 0; i < x.Length; i++) x[i] = (i / p.W + i) % 3 == 0 ? float.NegativeInfinity : 1f;
            int dh = offset / 2, dw = offset % 2;
            for (int oh = 0; oh < p.P; oh++)
                for (int q = 0; q < p.Q; q += 5) x[(2 * oh + dh) * p.W + 2 * q + dw] = float.NaN;
            var (y, indices) = Forward(PoolKind.Max, x, p);
            for (int oh = 0; oh < p.P; oh++)
            {
                for (int q = 0; q < p.Q; q++)
                {
                    // PyTorch's rule, spelled out: scan the window row-major, take a value if it is greater or NaN.
                    float best = float.NegativeInfinity;
                    int at = 2 * oh * p.W + 2 * q;
                    for (int k = 0; k < 4; k++)
                    {
                        int pos = (2 * oh + k / 2) * p.W + 2 * q + k % 2;
                        if (x[pos] > best || float.IsNaN(x[pos])) { best = x[pos]; at = pos; }
                    }
                    int o = oh * p.Q + q;
                    Assert.True(best.Equals(y[o]), $"offset {offset}, output ({oh}, {q}): {y[o]}, expected {best}");
                    Assert.Equal(at, indices[o]);
                }
            }
        }
    }

    /// <summary>
    /// The 2x2 / 2 kernel that a compiled training step runs inside the stem's batch norm, on output rows of at most 8
    /// (two rows a vector): PyTorch's scan order for ties, NaN and infinity, with an odd number of output rows (the last
    /// one alone), rows of 8 (the whole vector), of 6 (the stem's 13 x 13 -> 6 x 6) and of 1, bit for bit.
    /// </summary>
    [Theory]
    [InlineData(13, 13)]
    [InlineData(7, 16)]
    [InlineData(10, 9)]
    [InlineData(5, 2)]
    public unsafe void NarrowTwoByTwoRowsKeepTheScanOrder(int h, int w)
    {
        int outH = h / 2, outW = w / 2;
        for (int offset = 0; offset < 4; offset++)
        {
            float[] x = new float[h * w];
            for (int i = 0; i < x.Length; i++) x[i] = (i / w + i) % 3 == 0 ? float.NegativeInfinity : (i % 5) - 2f;
            for (int oh = 0; oh < outH; oh++)
                for (int q = (oh + offset) % 3; q < outW; q += 3) x[(2 * oh + offset / 2) * w + 2 * q + offset % 2] = float.NaN;
            var y = new float[outH * outW];
            var indices = new int[outH * outW];
            fixed (float* px = x, py = y)
            fixed (int* pi = indices)
                PoolKernels.MaxPlane2x2(px, py, pi, w, outH, outW);
            for (int oh = 0; oh < outH; oh++)
            {
                for (int q = 0; q < outW; q++)
                {
                    float best = float.NegativeInfinity;
                    int at = 2 * oh * w + 2 * q;
                    for (int k = 0; k < 4; k++)
                    {
                        int pos = (2 * oh + k / 2) * w + 2 * q + k % 2;
                        if (x[pos] > best || float.IsNaN(x[pos])) { best = x[pos]; at = pos; }
                    }
                    int o = oh * outW + q;
                    Assert.True(best.Equals(y[o]), $"{h}x{w}, offset {offset}, output ({oh}, {q}): {y[o]}, expected {best}");
                    Assert.Equal(at, indices[o]);
                }
            }
        }
    }

    [Fact]
    public void AllNegativeInfinityWindowPointsAtItsFirstInputPosition()
    {
        var p = new Pool2dParams(1, 1, 3, 3, 2, 2, 2, 2, 1, 1);
        float[] x = Enumerable.Repeat(float.NegativeInfinity, 9).ToArray();
        var (y, indices) = Forward(PoolKind.Max, x, p);
        Assert.All(y, v => Assert.Equal(float.NegativeInfinity, v));
        // Windows start at (-1,-1), (-1,1), (1,-1), (1,1): first inside positions (0,0), (0,1), (1,0), (1,1).
        Assert.Equal([0, 1, 3, 4], indices);
    }

    [Fact]
    public void MaxBackwardWithoutIndicesIsRejected()
    {
        var p = Geometries["2x2 stride2 odd input"];
        var e = Assert.Throws<ArgumentException>(() => Backward(PoolKind.Max, new float[p.N * p.C * p.P * p.Q], null, p));
        Assert.Contains("indices", e.Message);
    }

    [Fact]
    public void AutogradMaxPoolTwoByOneMatchesFiniteDifferences()
    {
        // CP-ResNet's stage-1 pool: kernel (2, 1), stride (2, 1).
        var p = Geometries["(2,1) stride (2,1) narrow"];
        float[] xf = Input("autograd", p);
        double[] g = Reference.ToDouble(Reference.ToFloat(Reference.Random(p.N * p.C * p.P * p.Q, 9)));
        var x = Tensor.FromArray(xf, XShape(p));
        x.RequiresGrad = true;
        var y = Functional.MaxPool2d(x, (2, 1), (2, 1));
        Assert.Equal(YShape(p), y.ShapeArray());
        NeuralCore.Autograd.Autograd.Backward(y.Mul(Tensor.FromArray(Reference.ToFloat(g), YShape(p))).Sum());
        var fd = GradCheck.Numerical(xs => GradCheck.Dot(Reference.Pool2d(PoolKind.Max, xs, p).Y, g), Reference.ToDouble(xf), 1e-9);
        GradCheck.AssertClose(fd, x.Grad!.ToArray(), 1e-5, 1e-5, "x.Grad");
    }

    [Fact]
    public void AutogradAvgPoolCeilModeMatchesFiniteDifferences()
    {
        var p = Geometries["3x3 stride2 pad1 ceil"];
        float[] xf = Input("autograd avg", p);
        double[] g = Reference.ToDouble(Reference.ToFloat(Reference.Random(p.N * p.C * p.P * p.Q, 10)));
        var x = Tensor.FromArray(xf, XShape(p));
        x.RequiresGrad = true;
        var y = Functional.AvgPool2d(x, (3, 3), (2, 2), (1, 1), ceilMode: true);
        Assert.Equal(YShape(p), y.ShapeArray());
        GradCheck.AssertClose(Reference.Pool2d(PoolKind.Average, Reference.ToDouble(xf), p).Y, y.ToArray(), 1e-6, 1e-5, "y");
        NeuralCore.Autograd.Autograd.Backward(y.Mul(Tensor.FromArray(Reference.ToFloat(g), YShape(p))).Sum());
        var fd = GradCheck.Numerical(xs => GradCheck.Dot(Reference.Pool2d(PoolKind.Average, xs, p).Y, g), Reference.ToDouble(xf), 1e-3);
        GradCheck.AssertClose(fd, x.Grad!.ToArray(), 1e-5, 1e-5, "x.Grad");
    }
}
