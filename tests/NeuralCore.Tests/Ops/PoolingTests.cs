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
    /// <summary>
    /// A kernel larger than the padded input gives no output, as PyTorch rounds the output size down (C#'s division had
    /// rounded -1 / 2 to 0 and made a 2 x 2 input give one window of 3 x 3); ceil mode's rounding still gives one, as in
    /// PyTorch; a stride or kernel of 0 is refused with a message, not a division by zero.
    /// </summary>
    [Fact]
    public void KernelsLargerThanThePaddedInputAreRefused()
    {
        var x = Tensor.FromArray([0.3146f, 0.5682f, 0.8811f, 1.2234f], 1, 1, 2, 2);
        foreach (var pool in new Func<Tensor, (int, int), (int, int)?, Tensor>[] { (t, k, st) => Functional.MaxPool2d(t, k, st), (t, k, st) => Functional.AvgPool2d(t, k, st) })
        {
            Assert.Contains("too small", Assert.Throws<ArgumentException>(() => pool(x, (3, 3), (2, 2))).Message);
            Assert.Contains("at least 1", Assert.Throws<ArgumentException>(() => pool(x, (2, 2), (0, 0))).Message);
            Assert.Contains("at least 1", Assert.Throws<ArgumentException>(() => pool(x, (0, 2), null)).Message);
        }
        // Ceil mode: ceil((2 - 3) / 2) + 1 = 1 window, which starts inside the input (PyTorch: the maximum, 1.2234).
        Assert.Equal([1.2234f], Functional.MaxPool2d(x, (3, 3), (2, 2), ceilMode: true).ToArray());
        var w = Tensor.FromArray(new float[9], 1, 1, 3, 3);
        Assert.Contains("too small", Assert.Throws<ArgumentException>(() => Functional.Conv2d(x, w, null, (2, 2))).Message);
        Assert.Contains("stride", Assert.Throws<ArgumentException>(() => Functional.Conv2d(x, w, null, (0, 1))).Message);
        var big = Tensor.FromArray(new float[16], 1, 1, 4, 4);
        Assert.Throws<ArgumentException>(() => Functional.Conv2d(big, Tensor.FromArray(new float[36], 1, 1, 6, 6), null, (3, 3)));
        Assert.Equal([1, 1, 1, 1], Functional.Conv2d(big, Tensor.FromArray(new float[16], 1, 1, 4, 4), null, (3, 3)).ShapeArray());
    }

    private static readonly Dictionary<string, Pool2dParams> Geometries = new()
    {
        // name: (N, C, H, W, kernelH, kernelW, strideH, strideW, padH, padW, ceil)
        ["2x2 stride2 odd input"] = new(2, 3, 13, 13, 2, 2, 2, 2, 0, 0),
        ["(2,1) stride (2,1)"] = new(3, 5, 31, 24, 2, 1, 2, 1, 0, 0),
        ["(2,1) stride (2,1) narrow"] = new(2, 4, 7, 6, 2, 1, 2, 1, 0, 0),
        // Windows one column wide on rows of at most 16 take a vector per output row (MNIST's 6 x 6 -> 3 x 6), stored
        // whole where the next row or plane is written later: rows of 16, and overlapping padded windows (see also
        // SplitGeometries).
        ["(2,1) stride (2,1) rows of 16"] = new(2, 3, 8, 16, 2, 1, 2, 1, 0, 0),
        ["(3,1) stride (2,1) pad (1,0) narrow"] = new(2, 3, 7, 5, 3, 1, 2, 1, 1, 0),
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

    /// <summary>
    /// Geometries with enough planes for two parts on a two-core machine, checked exactly only (finite differences over
    /// so many outputs lose the precision they need): the narrow column kernels store each part's last plane masked,
    /// with one output row per plane (MNIST's 3 x 6 -> 1 x 6) or three (6 x 6 -> 3 x 6).
    /// </summary>
    private static readonly Dictionary<string, Pool2dParams> SplitGeometries = new()
    {
        ["(2,1) stride (2,1) 6x6 two parts"] = new(128, 19, 6, 6, 2, 1, 2, 1, 0, 0),
        ["(2,1) stride (2,1) 3x6 two parts"] = new(192, 19, 3, 6, 2, 1, 2, 1, 0, 0),
    };

    public static TheoryData<string> Cases => new(Geometries.Keys);

    public static TheoryData<string> ExactCases => new(Geometries.Keys.Concat(SplitGeometries.Keys));

    private static Pool2dParams Geometry(string name) => Geometries.TryGetValue(name, out var p) ? p : SplitGeometries[name];

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
    [MemberData(nameof(ExactCases))]
    public void MaxForwardMatchesReferenceExactly(string name)
    {
        var p = Geometry(name);
        float[] x = Input(name, p);
        var (expected, expectedIndices) = Reference.Pool2d(PoolKind.Max, Reference.ToDouble(x), p);
        var (y, indices) = Forward(PoolKind.Max, x, p);
        Assert.Equal(Reference.ToFloat(expected), y);
        Assert.Equal(expectedIndices, indices);
    }

    /// <summary>Without indices (inference) max pooling takes the separable kernel where it applies: the same values.</summary>
    [Theory]
    [MemberData(nameof(ExactCases))]
    public void MaxForwardWithoutIndicesMatchesReferenceExactly(string name)
    {
        var p = Geometry(name);
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

    /// <summary>Max pool backward puts each output's gradient at its index, added in output order from zero, bit for bit.</summary>
    [Theory]
    [MemberData(nameof(ExactCases))]
    public void MaxBackwardAddsEachGradientAtItsIndex(string name)
    {
        var p = Geometry(name);
        float[] x = Input(name, p);
        float[] dy = Reference.ToFloat(Reference.Random(p.N * p.C * p.P * p.Q, 8));
        var (_, indices) = Forward(PoolKind.Max, x, p);
        int hw = p.H * p.W, pq = p.P * p.Q;
        float[] expected = new float[x.Length];
        for (int plane = 0; plane < p.N * p.C; plane++)
            for (int o = 0; o < pq; o++) expected[plane * hw + indices[plane * pq + o]] += dy[plane * pq + o];
        Assert.Equal(expected, Backward(PoolKind.Max, dy, indices, p));
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
    /// one alone), rows of 8 (the whole vector), of 6 (the stem's 13 x 13 -> 6 x 6) and of 1, bit for bit; and wider
    /// rows (the mel stem's 63 x 49 -> 31 x 24, rows of 17 and of 16), where the 512-bit kernel takes 16 outputs a vector
    /// and the AVX2 one 8. Nothing is written past the output (the AVX2 kernel's short rows store whole vectors into the
    /// rows after them, all but the last), and without indices the values' bits are the same.
    /// </summary>
    [Theory]
    [InlineData(13, 13)]
    [InlineData(7, 16)]
    [InlineData(10, 9)]
    [InlineData(5, 2)]
    [InlineData(63, 49)]
    [InlineData(6, 35)]
    [InlineData(4, 32)]
    public unsafe void TwoByTwoRowsKeepTheScanOrder(int h, int w)
    {
        if (!PoolKernels.IsWhole2x2(new Pool2dParams(1, 1, h, w, 2, 2, 2, 2, 0, 0))) Assert.Skip("This CPU has neither AVX-512 nor AVX2: the 2x2 kernel does not run.");
        int outH = h / 2, outW = w / 2;
        for (int offset = 0; offset < 4; offset++)
        {
            float[] x = new float[h * w];
            for (int i = 0; i < x.Length; i++) x[i] = (i / w + i) % 3 == 0 ? float.NegativeInfinity : (i % 5) - 2f;
            for (int oh = 0; oh < outH; oh++)
                for (int q = (oh + offset) % 3; q < outW; q += 3) x[(2 * oh + offset / 2) * w + 2 * q + offset % 2] = float.NaN;
            // Sentinels past the output: nothing is written there.
            var y = Enumerable.Repeat(12345f, outH * outW + 16).ToArray();
            var indices = Enumerable.Repeat(-7, outH * outW + 16).ToArray();
            fixed (float* px = x, py = y)
            fixed (int* pi = indices)
                PoolKernels.MaxPlane2x2(px, py, pi, w, outH, outW);
            Assert.All(y[(outH * outW)..], v => Assert.Equal(12345f, v));
            Assert.All(indices[(outH * outW)..], v => Assert.Equal(-7, v));
            // Without indices (the inference plans' pools) the same values, the same bits.
            var values = Enumerable.Repeat(12345f, outH * outW + 16).ToArray();
            fixed (float* px = x, pv = values)
                PoolKernels.MaxPlane2x2(px, pv, null, w, outH, outW);
            Assert.Equal(y.Select(BitConverter.SingleToInt32Bits), values.Select(BitConverter.SingleToInt32Bits));
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

    /// <summary>
    /// Windows one column wide (a vector per output row, or per 16 values of it, 8 with AVX2): PyTorch's scan order for ties, NaN and
    /// infinity at every window position, and an all -inf window pointing at its first input, with and without vertical
    /// padding.
    /// </summary>
    [Theory]
    [InlineData(7, 6, 2, 2, 0)]
    [InlineData(5, 16, 2, 2, 0)]
    [InlineData(7, 5, 3, 2, 1)]
    [InlineData(4, 1, 3, 1, 1)]
    [InlineData(7, 24, 2, 2, 0)]
    [InlineData(6, 37, 3, 2, 1)]
    public void ColumnWindowsKeepTheScanOrder(int h, int w, int kernel, int stride, int pad)
    {
        var p = new Pool2dParams(1, 1, h, w, kernel, 1, stride, 1, pad, 0);
        for (int offset = 0; offset < kernel; offset++)
        {
            float[] x = new float[h * w];
            for (int i = 0; i < x.Length; i++) x[i] = (i / w + i) % 3 == 0 ? float.NegativeInfinity : (i % 3) - 1f;
            for (int q = offset; q < w; q += 3) x[Math.Min(h - 1, offset + q % 2) * w + q] = float.NaN;
            // A whole column of -inf: its windows hold nothing greater.
            for (int r = 0; r < h; r++) x[r * w + w - 1] = float.NegativeInfinity;
            var (y, indices) = Forward(PoolKind.Max, x, p);
            for (int oh = 0; oh < p.P; oh++)
            {
                int h0 = Math.Max(oh * stride - pad, 0), h1 = Math.Min(oh * stride - pad + kernel, h);
                for (int q = 0; q < w; q++)
                {
                    float best = float.NegativeInfinity;
                    int at = h0 * w + q;
                    for (int r = h0; r < h1; r++)
                        if (x[r * w + q] > best || float.IsNaN(x[r * w + q])) { best = x[r * w + q]; at = r * w + q; }
                    int o = oh * w + q;
                    Assert.True(best.Equals(y[o]), $"{h}x{w} k{kernel} s{stride} p{pad}, offset {offset}, output ({oh}, {q}): {y[o]}, expected {best}");
                    Assert.Equal(at, indices[o]);
                }
            }
        }
    }

    /// <summary>
    /// The column kernels' stores stay inside the tensor: on narrow rows with one output row per plane, the last plane's
    /// rows are stored masked, and on rows over a vector (16 values, 8 with AVX2) each row's last vector is, so the floats
    /// after y, the indices and dx keep their values.
    /// </summary>
    [Theory]
    [InlineData(6)]
    [InlineData(12)]
    [InlineData(20)]
    [InlineData(24)]
    public unsafe void ColumnStoresStopAtTheTensorsEnd(int w)
    {
        var p = new Pool2dParams(3, 5, 3, w, 2, 1, 2, 1, 0, 0);
        int xs = p.N * p.C * p.H * p.W, ys = p.N * p.C * p.P * p.Q, guard = 32;
        float[] x = Input("guard", p);
        var y = new float[ys + guard];
        var indices = new int[ys + guard];
        var dx = new float[xs + guard];
        Array.Fill(y, 5f);
        Array.Fill(indices, 5);
        Array.Fill(dx, 5f);
        float[] dy = Reference.ToFloat(Reference.Random(ys, 3));
        fixed (float* px = x, py = y, pdy = dy, pdx = dx)
        fixed (int* pi = indices)
        {
            PoolKernels.Forward(PoolKind.Max, px, py, pi, p);
            PoolKernels.Backward(PoolKind.Max, pdy, pi, pdx, p);
        }
        var (expected, expectedIndices) = Reference.Pool2d(PoolKind.Max, Reference.ToDouble(x), p);
        Assert.Equal(Reference.ToFloat(expected), y[..ys]);
        Assert.Equal(expectedIndices, indices[..ys]);
        Assert.All(y[ys..], v => Assert.Equal(5f, v));
        Assert.All(indices[ys..], v => Assert.Equal(5, v));
        Assert.All(dx[xs..], v => Assert.Equal(5f, v));
        float[] expectedDx = new float[xs];
        for (int o = 0; o < ys; o++) expectedDx[o / (p.P * p.Q) * p.H * p.W + expectedIndices[o]] += dy[o];
        Assert.Equal(expectedDx, dx[..xs]);
    }

    /// <summary>
    /// Max pool backward with indices the forward pass did not write, on disjoint column windows (rows of one vector,
    /// of one and a half, of two and a half): an index inside
    /// the plane but outside its own window gets its gradient where it points, added to what is there (the rule of every
    /// other geometry), and one outside the plane is rejected.
    /// </summary>
    [Theory]
    [InlineData(6)]
    [InlineData(24)]
    [InlineData(40)]
    public void ColumnBackwardFollowsIndicesOutsideTheirWindow(int w)
    {
        var p = new Pool2dParams(1, 2, 4, w, 2, 1, 2, 1, 0, 0);
        int pq = p.P * p.Q, hw = p.H * p.W;
        float[] dy = Enumerable.Range(1, p.C * pq).Select(i => (float)i).ToArray();
        int[] indices = new int[p.C * pq];
        for (int c = 0; c < p.C; c++)
            for (int o = 0; o < pq; o++) indices[c * pq + o] = o / p.Q * 2 * p.W + o % p.Q;
        // Plane 1, output (0, 2) points at input (3, 4), which output (1, 4) also points at.
        indices[pq + 2] = 3 * p.W + 4;
        indices[pq + p.Q + 4] = 3 * p.W + 4;
        float[] expected = new float[p.C * hw];
        for (int c = 0; c < p.C; c++)
            for (int o = 0; o < pq; o++) expected[c * hw + indices[c * pq + o]] += dy[c * pq + o];
        Assert.Equal(expected, Backward(PoolKind.Max, dy, indices, p));
        indices[3] = hw;
        var e = Assert.Throws<ArgumentException>(() => Backward(PoolKind.Max, dy, indices, p));
        Assert.Contains("outside the input plane", e.Message);
    }

    /// <summary>
    /// A global average's backward writes 0 + dy / (H W) to every value of the plane, the bits of the window loop's clear,
    /// division and add (-0 becomes +0, NaN and infinity spread), on planes of a partial vector, whole vectors and both.
    /// </summary>
    [Theory]
    [InlineData(1, 6)]
    [InlineData(4, 4)]
    [InlineData(6, 7)]
    public void GlobalAverageBackwardSpreadsEachGradientExactly(int h, int w)
    {
        var p = new Pool2dParams(3, 4, h, w, h, w, h, w, 0, 0);
        float[] dy = Reference.ToFloat(Reference.Random(p.N * p.C, h * w));
        dy[1] = -0f;
        dy[5] = float.NaN;
        dy[7] = float.NegativeInfinity;
        dy[10] = 1e-45f;
        float[] dx = Backward(PoolKind.Average, dy, null, p);
        for (int i = 0; i < dx.Length; i++)
        {
            float expected = 0f + dy[i / (h * w)] / (h * w);
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(dx[i]), $"{h}x{w}, dx[{i}] = {dx[i]}, expected {expected}");
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

    /// <summary>
    /// The 2x2 / 2 backward a fused batch norm runs (PoolKernels.MaxBackwardPlane2x2: rows of at least 8 windows in
    /// vectors, narrower ones by the scatter) against the scatter, bit for bit: planes with a row and a column past the
    /// windows, rows of whole and partial vectors of windows, gradients of -0 (written as +0), NaN and infinity, and every
    /// window's maximum at each of its four positions. An index outside its own window but on the plane goes where it
    /// points; one off the plane is reported.
    /// </summary>
    [Theory]
    [InlineData(63, 49)]  // mel's stem: 31 x 24 windows, three vectors a row
    [InlineData(17, 16)]  // whole vectors of windows, no column left over
    [InlineData(18, 41)]  // 20 windows a row, the last vector partial
    [InlineData(13, 13)]  // MNIST's stem: rows of 6 windows, the scatter
    public unsafe void TwoByTwoBackwardRebuildsThePlaneAsTheScatterDoes(int h, int w)
    {
        int outH = h / 2, outW = w / 2, hw = h * w, pq = outH * outW;
        var random = new Random(h * 100 + w);
        float[] dy = Enumerable.Range(0, pq).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        dy[0] = -0f;
        dy[pq / 2] = float.NaN;
        dy[pq - 1] = float.NegativeInfinity;
        int[] indices = new int[pq];
        for (int o = 0; o < pq; o++)
        {
            int corner = o % 4;
            indices[o] = (2 * (o / outW) + corner / 2) * w + 2 * (o % outW) + corner % 2;
        }
        float[] Scatter(int[] at)
        {
            var dx = new float[hw];
            fixed (float* pdy = dy, pdx = dx)
            fixed (int* pi = at)
                PoolKernels.MaxBackwardPlane(pdy, pi, pdx, hw, pq, disjoint: true);
            return dx;
        }
        float[] TwoByTwo(int[] at)
        {
            var dx = Enumerable.Repeat(float.NaN, hw).ToArray();
            fixed (float* pdy = dy, pdx = dx)
            fixed (int* pi = at)
                PoolKernels.MaxBackwardPlane2x2(pdy, pi, pdx, h, w, outH, outW);
            return dx;
        }
        Assert.Equal(Scatter(indices).Select(BitConverter.SingleToInt32Bits), TwoByTwo(indices).Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(0, BitConverter.SingleToInt32Bits(TwoByTwo(indices)[indices[0]]));
        // Output 1 points at output 0's window's first input.
        indices[1] = 0;
        Assert.Equal(Scatter(indices).Select(BitConverter.SingleToInt32Bits), TwoByTwo(indices).Select(BitConverter.SingleToInt32Bits));
        indices[pq - 1] = hw;
        var e = Assert.Throws<ArgumentException>(() => TwoByTwo(indices));
        Assert.Contains("outside the input plane", e.Message);
    }

    /// <summary>
    /// A residual addition + ReLU pooled by column windows in one pass (CpuBackend.AddReluMaxPool, which compiled training
    /// steps run) against AddRelu then the pool, and its backward against the pool's backward then the ReLU's, bit for
    /// bit: sums of -0, NaN, infinities and ties at 0 (both inputs of a window negative), rows of one vector, one and a
    /// half and two and a half, an odd height (the last row in no window), and windows of 3 rows.
    /// </summary>
    [Theory]
    [InlineData(9, 9, 2)]
    [InlineData(7, 24, 2)]
    [InlineData(9, 40, 3)]
    public void AddReluMaxPoolGivesTheBitsOfItsParts(int h, int w, int kernel)
    {
        var p = new Pool2dParams(2, 3, h, w, kernel, 1, kernel, 1, 0, 0);
        if (!PoolKernels.FusesAddRelu(p)) Assert.Skip("This CPU has neither AVX-512 nor AVX2: the fused addition + ReLU + max pool does not run.");
        int size = p.N * p.C * h * w, pooled = p.N * p.C * p.P * p.Q;
        var random = new Random(h * w + kernel);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        float[] a = Values(size), b = Values(size), dyValues = Values(pooled);
        a[0] = -0f; b[0] = -0f;
        a[5] = float.NaN;
        a[w + 2] = float.PositiveInfinity;
        b[2 * w + 3] = float.NegativeInfinity;
        dyValues[1] = -0f;
        var (ta, tb, dy) = (Tensor.FromArray(a, p.N, p.C, h, w), Tensor.FromArray(b, p.N, p.C, h, w), Tensor.FromArray(dyValues, p.N, p.C, p.P, p.Q));
        var cpu = CpuBackend.Instance;
        var sum = Tensor.Zeros([p.N, p.C, h, w]);
        var y = Tensor.Zeros([p.N, p.C, p.P, p.Q]);
        var indices = Tensor.Zeros([p.N, p.C, p.P, p.Q], dtype: DType.Int32);
        cpu.AddRelu(ta, tb, sum);
        cpu.Pool2d(PoolKind.Max, sum, y, indices, p);
        var unpooled = Tensor.Zeros([p.N, p.C, h, w]);
        var expectedDx = Tensor.Zeros([p.N, p.C, h, w]);
        cpu.Pool2dBackward(PoolKind.Max, dy, indices, unpooled, p);
        cpu.UnaryBackward(UnaryOp.Relu, sum, sum, unpooled, expectedDx, 0f, 0f);

        var fusedY = Tensor.Full([p.N, p.C, p.P, p.Q], 7f);
        var fusedIndices = Tensor.Full([p.N, p.C, p.P, p.Q], -1, dtype: DType.Int32);
        var dx = Tensor.Full([p.N, p.C, h, w], 7f);
        cpu.AddReluMaxPool(ta, tb, fusedY, fusedIndices, p);
        cpu.ReluMaxPoolBackward(dy, fusedIndices, fusedY, dx, p);
        Assert.Equal(y.ToArray().Select(BitConverter.SingleToInt32Bits), fusedY.ToArray().Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(((CpuStorage)indices.Storage).Ints, ((CpuStorage)fusedIndices.Storage).Ints);
        Assert.Equal(expectedDx.ToArray().Select(BitConverter.SingleToInt32Bits), dx.ToArray().Select(BitConverter.SingleToInt32Bits));
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

    /// <summary>
    /// The global average over a position-major map ([N * HW, C], a narrow convolution's output, as inference plans keep it)
    /// gives the bits of the channel-major pool over the same values: batches of 1 and 3, 6 and 18 positions, 10 and 19
    /// channels, values of mixed sign and size so that the order of the additions shows.
    /// </summary>
    [Theory]
    [InlineData(1, 1, 6, 10)]
    [InlineData(3, 3, 6, 19)]
    public unsafe void GlobalAverageOfAPositionMajorMapGivesTheChannelMajorBits(int n, int h, int w, int c)
    {
        int hw = h * w;
        var values = Reference.ToFloat(Reference.Random(n * c * hw, 41, 100.0));
        // Channel-major [C, N, H, W], and the same values position-major [N * H * W, C].
        var positionMajor = new float[values.Length];
        for (int k = 0; k < c; k++)
            for (int s = 0; s < n; s++)
                for (int i = 0; i < hw; i++)
                    positionMajor[((long)s * hw + i) * c + k] = values[((long)k * n + s) * hw + i];
        var p = new Pool2dParams(n, c, h, w, h, w, h, w, 0, 0);
        Assert.True(PoolKernels.IsGlobalAverage(PoolKind.Average, p));
        var expected = new float[c * n];
        var actual = new float[c * n];
        // The channel-major kernel takes planes in a row; C x N planes of HW values is its [C, N] layout.
        var planes = new Pool2dParams(1, c * n, h, w, h, w, h, w, 0, 0);
        fixed (float* x = values, xp = positionMajor, y = expected, ya = actual)
        {
            PoolKernels.Forward(PoolKind.Average, x, y, null, planes);
            PoolKernels.GlobalAveragePositionMajor(xp, ya, n, hw, c);
        }
        Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), actual.Select(BitConverter.SingleToInt32Bits));
    }

    /// <summary>
    /// The inference plans' vector global average (<see cref="PoolKernels.GlobalAverageRows"/>) is each plane's mean
    /// within the rounding of a float sum of the plane's values (the double-precision sum as reference): planes of 1 to 200
    /// values, so a masked vector alone, whole vectors in odd and even numbers, and both; planes start at every offset
    /// from a vector's boundary. A NaN or an infinity reaches its own plane's mean only.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(6)]
    [InlineData(16)]
    [InlineData(17)]
    [InlineData(48)]
    [InlineData(168)]
    [InlineData(200)]
    public unsafe void GlobalAverageRowsIsEachPlanesMean(int hw)
    {
        if (!System.Runtime.Intrinsics.X86.Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the plans average with the window kernels' loop.");
        const int planes = 7;
        var values = Reference.ToFloat(Reference.Random(planes * hw, 43, 100.0));
        values[2 * hw + hw / 2] = float.NaN;
        values[4 * hw] = float.PositiveInfinity;
        var means = new float[planes];
        fixed (float* x = values, y = means) PoolKernels.GlobalAverageRows(x, y, planes, hw);
        for (int i = 0; i < planes; i++)
        {
            var plane = values.AsSpan(i * hw, hw).ToArray();
            if (i == 2) { Assert.True(float.IsNaN(means[i]), $"plane {i}: {means[i]}"); continue; }
            if (i == 4) { Assert.Equal(float.PositiveInfinity, means[i]); continue; }
            double sum = plane.Sum(v => (double)v), magnitude = plane.Sum(v => Math.Abs((double)v));
            double bound = (hw / 16 + 6) * 1.2e-7 * magnitude / hw;
            Assert.True(Math.Abs(means[i] - sum / hw) <= bound, $"plane {i}: {means[i]} against {sum / hw}");
        }
    }
}
