using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;

namespace NeuralCore.Tests.Ops;

public class ElementwiseTests
{
    public static TheoryData<int[], int[]> BroadcastPairs => new()
    {
        { new[] { 2, 3 }, new[] { 2, 3 } },
        { new[] { 2, 3 }, new[] { 3 } },
        { new[] { 3 }, new[] { 2, 3 } },
        { new[] { 2, 3 }, new[] { 1 } },
        { new[] { 2, 3 }, Array.Empty<int>() },
        { Array.Empty<int>(), new[] { 2, 3 } },
        { new[] { 2, 3 }, new[] { 2, 1 } },
        { new[] { 1, 3 }, new[] { 2, 1 } },
        { new[] { 4, 1 }, new[] { 1, 5 } },
        { new[] { 2, 1, 4 }, new[] { 3, 1 } },
        { new[] { 2, 3, 4 }, new[] { 2, 1, 4 } },
        { new[] { 3, 1, 1 }, new[] { 1, 4, 5 } },
        { new[] { 2, 1, 3, 1 }, new[] { 4, 1, 2 } },
    };

    private static readonly Dictionary<BinaryOp, (Func<Tensor, Tensor, Tensor> Op, Func<double, double, double> Ref)> Binaries = new()
    {
        [BinaryOp.Add] = ((a, b) => a + b, (a, b) => a + b),
        [BinaryOp.Sub] = ((a, b) => a - b, (a, b) => a - b),
        [BinaryOp.Mul] = ((a, b) => a * b, (a, b) => a * b),
        [BinaryOp.Div] = ((a, b) => a / b, (a, b) => a / b),
    };

    [Theory]
    [MemberData(nameof(BroadcastPairs))]
    public void Binary_ops_broadcast_forward_and_backward(int[] aShape, int[] bShape)
    {
        var (a, av) = Reference.RandomTensor(aShape, 1);
        // The divisor stays in [0.5, 1.5] so the quotient's derivatives are tame.
        var (b, bv) = Reference.RandomTensor(bShape, 2, 0.5, 1);
        foreach (var (op, (f, r)) in Binaries)
        {
            var y = f(a, b);
            Assert.Equal(Reference.BroadcastShape(aShape, bShape), y.ShapeArray());
            GradCheck.AssertClose(Reference.Binary(r, av, aShape, bv, bShape), y.ToArray(), 1e-6, 1e-6, $"{op} forward");
            GradCheck.Check(t => f(t[0], t[1]), [a, b], what: $"{op} {Tensor.FormatShape(aShape)} {Tensor.FormatShape(bShape)}");
        }
    }

    /// <summary>
    /// Integer quotients are true division, as PyTorch's div: Float32, 3.5 for 7 / 2, infinity for 1 / 0 (they had been
    /// truncated, and 7 / 0 had given long.MaxValue); an Int32 product out of range wraps as in PyTorch.
    /// </summary>
    [Fact]
    public void Integer_division_is_true_division_and_int32_products_wrap()
    {
        var q = Tensor.FromArray([-7L, 7L, -1L, 5L], 4).Div(Tensor.FromArray([2L, -2L, 3L, 3L], 4));
        Assert.Equal(DType.Float32, q.DType);
        Assert.Equal([-3.5f, -3.5f, -1f / 3, 5f / 3], q.ToArray());
        var byZero = Tensor.FromArray([7L, -7L, 0L], 3).Div(Tensor.FromArray([0L, 0L, 0L], 3)).ToArray();
        Assert.Equal(float.PositiveInfinity, byZero[0]);
        Assert.Equal(float.NegativeInfinity, byZero[1]);
        Assert.True(float.IsNaN(byZero[2]));
        var big = Tensor.FromArray([1 << 20], 1);
        Assert.Equal(0, big.Mul(big).ToInt64Array()[0]);
    }

    [Fact]
    public void Incompatible_shapes_name_both_shapes()
    {
        var e = Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, 3]).Add(Tensor.Zeros([4])));
        Assert.Contains("[2, 3]", e.Message);
        Assert.Contains("[4]", e.Message);
    }

    [Fact]
    public void Binary_ops_on_non_contiguous_views_match_the_reference()
    {
        var (a, av) = Reference.RandomTensor([3, 4], 3);
        var (b, bv) = Reference.RandomTensor([4, 3], 4);
        var at = a.T; // [4, 3], strided
        Assert.False(at.IsContiguous);
        var expected = Reference.Binary((x, y) => x * y, Reference.Permute(av, [3, 4], [1, 0]), [4, 3], bv, [4, 3]);
        GradCheck.AssertClose(expected, (at * b).ToArray(), 1e-6, 1e-6, "a.T * b");
        GradCheck.AssertClose(expected, (b * at).ToArray(), 1e-6, 1e-6, "b * a.T");
        GradCheck.Check(t => t[0].T * t[1].Narrow(1, 1, 1), [a, b], what: "a.T * b[:, 1:2]");
    }

    [Fact]
    public void Scalar_operands_and_operators()
    {
        var (x, xv) = Reference.RandomTensor([2, 5], 5, 1, 2); // [1, 3): safe for division
        var cases = new (string Name, Func<Tensor, Tensor> Op, Func<double, double> Ref)[]
        {
            ("x + 2", t => t + 2f, v => v + 2),
            ("2 + x", t => 2f + t, v => 2 + v),
            ("x - 2", t => t - 2f, v => v - 2),
            ("2 - x", t => 2f - t, v => 2 - v),
            ("x * 3", t => t * 3f, v => v * 3),
            ("3 * x", t => 3f * t, v => 3 * v),
            ("x / 4", t => t / 4f, v => v / 4),
            ("4 / x", t => 4f / t, v => 4 / v),
            ("-x", t => -t, v => -v),
            ("Add(0.5)", t => t.Add(0.5f), v => v + 0.5),
            ("Sub(0.5)", t => t.Sub(0.5f), v => v - 0.5),
            ("Mul(-2)", t => t.Mul(-2f), v => v * -2),
            ("Div(8)", t => t.Div(8f), v => v / 8),
            ("Affine(2, 1)", t => t.Affine(2, 1), v => 2 * v + 1),
            ("Reciprocal", t => t.Reciprocal(), v => 1 / v),
        };
        foreach (var (name, op, r) in cases)
        {
            GradCheck.AssertClose(xv.Select(r).ToArray(), op(x).ToArray(), 1e-6, 1e-6, name);
            GradCheck.Check(t => op(t[0]), [x], what: name);
        }
    }

    public static TheoryData<string> UnaryNames => new(["Neg", "Exp", "Log", "Sqrt", "Pow2.5", "Pow3", "Square", "Clamp", "Abs",
        "Relu", "Relu6", "Hardswish", "Sigmoid", "Tanh"]);

    private static (Func<Tensor, Tensor> Op, Func<double, double> Ref, Tensor Input) Unary(string name)
    {
        var (any, _) = Reference.RandomTensor([3, 7], 11, 2); // [-2, 2)
        var (positive, _) = Reference.RandomTensor([3, 7], 12, 1, 1.5); // [0.5, 2.5)
        var (wide, _) = Reference.RandomTensor([3, 7], 13, 6, 2); // [-4, 8): both sides of every kink of relu6 and hardswish
        return name switch
        {
            "Neg" => (t => t.Neg(), v => -v, any),
            "Exp" => (t => t.Exp(), Math.Exp, any),
            "Log" => (t => t.Log(), Math.Log, positive),
            "Sqrt" => (t => t.Sqrt(), Math.Sqrt, positive),
            "Pow2.5" => (t => t.Pow(2.5f), v => Math.Pow(v, 2.5), positive),
            "Pow3" => (t => t.Pow(3f), v => v * v * v, any),
            "Square" => (t => t.Square(), v => v * v, any),
            "Clamp" => (t => t.Clamp(-0.5f, 0.7f), v => Math.Clamp(v, -0.5, 0.7), Reference.AwayFrom(any, 0.03, -0.5, 0.7)),
            "Abs" => (t => t.Abs(), Math.Abs, Reference.AwayFrom(any, 0.03, 0)),
            "Relu" => (t => t.Relu(), v => Math.Max(v, 0), Reference.AwayFrom(any, 0.03, 0)),
            "Relu6" => (t => t.Relu6(), v => Math.Clamp(v, 0, 6), Reference.AwayFrom(wide, 0.03, 0, 6)),
            "Hardswish" => (t => t.Hardswish(), v => v * Math.Clamp(v + 3, 0, 6) / 6, Reference.AwayFrom(wide, 0.03, -3, 3)),
            "Sigmoid" => (t => t.Sigmoid(), v => 1 / (1 + Math.Exp(-v)), any),
            "Tanh" => (t => t.Tanh(), Math.Tanh, any),
            _ => throw new ArgumentException(name),
        };
    }

    [Theory]
    [MemberData(nameof(UnaryNames))]
    public void Unary_ops_forward_and_backward(string name)
    {
        var (op, r, x) = Unary(name);
        var xv = Reference.ToDouble(x.ToArray());
        GradCheck.AssertClose(xv.Select(r).ToArray(), op(x).ToArray(), 1e-6, 2e-6, name);
        GradCheck.Check(t => op(t[0]), [x], what: name);
        // The same op on a transposed (non-contiguous) view.
        GradCheck.AssertClose(Reference.Permute(xv, [3, 7], [1, 0]).Select(r).ToArray(), op(x.T).ToArray(), 1e-6, 2e-6, name + " on x.T");
        GradCheck.Check(t => op(t[0].T), [x], what: name + " on x.T");
    }

    [Fact]
    public void Gradients_at_the_kinks_follow_PyTorch()
    {
        var x = Tensor.FromArray([-3f, 0f, 3f, 6f]);
        x.RequiresGrad = true;
        float[] Grad(Func<Tensor, Tensor> op)
        {
            x.Grad = null;
            op(x).Sum().Backward();
            return x.Grad!.ToArray();
        }
        Assert.Equal([0f, 0f, 1f, 1f], Grad(t => t.Relu()));       // relu'(0) = 0
        Assert.Equal([0f, 0f, 1f, 0f], Grad(t => t.Relu6()));      // open interval (0, 6)
        Assert.Equal([-0.5f, 0.5f, 1.5f, 1f], Grad(t => t.Hardswish())); // x/3 + 1/2 on [-3, 3]
        Assert.Equal([-1f, 0f, 1f, 1f], Grad(t => t.Abs()));
        Assert.Equal([1f, 1f, 1f, 0f], Grad(t => t.Clamp(-3, 3)));  // closed interval [min, max]
    }

    [Fact]
    public void Maximum_and_minimum_split_ties()
    {
        var a = Tensor.FromArray([1f, 2f, 3f]);
        var b = Tensor.FromArray([2f, 2f, 1f]);
        a.RequiresGrad = true; b.RequiresGrad = true;
        var y = a.Maximum(b);
        Assert.Equal([2f, 2f, 3f], y.ToArray());
        y.Sum().Backward();
        Assert.Equal([0f, 0.5f, 1f], a.Grad!.ToArray());
        Assert.Equal([1f, 0.5f, 0f], b.Grad!.ToArray());
        Assert.Equal([1f, 2f, 1f], a.Detach().Minimum(b.Detach()).ToArray());
        var (p, _) = Reference.RandomTensor([2, 3], 21);
        var (q, _) = Reference.RandomTensor([3], 22);
        GradCheck.Check(t => t[0].Maximum(t[1]), [p, q], what: "Maximum");
        GradCheck.Check(t => t[0].Minimum(t[1]), [p, q], what: "Minimum");
    }

    [Fact]
    public void Comparisons_are_constants_to_autograd()
    {
        var x = Tensor.FromArray([-1f, 2f, 0.5f, 3f]);
        x.RequiresGrad = true;
        var mask = x.Greater(Tensor.Scalar(1f));
        Assert.Equal([0f, 1f, 0f, 1f], mask.ToArray());
        Assert.False(mask.RequiresGrad);
        Assert.Equal([0f, 0f, 1f, 0f], x.Equal(Tensor.Scalar(0.5f)).ToArray());
        x.Mul(mask).Sum().Backward();
        Assert.Equal([0f, 1f, 0f, 1f], x.Grad!.ToArray());
    }

    [Fact]
    public void Integer_tensors_compare_and_add()
    {
        var predicted = Tensor.FromArray(new[] { 0.1f, 0.9f, 0.8f, 0.2f, 0.3f, 0.7f }, 3, 2).ArgMax(1);
        var labels = Tensor.FromArray(new long[] { 1, 1, 1 });
        Assert.Equal([1L, 0L, 1L], predicted.Equal(labels).ToInt64Array());
        Assert.Equal(DType.Int64, predicted.Equal(labels).DType);
        Assert.Equal([2L, 1L, 2L], predicted.Add(labels).ToInt64Array());
        var big = Tensor.FromArray(new long[] { (1L << 40) + 1 });
        Assert.Equal([(1L << 41) + 2], big.Add(big).ToInt64Array());
    }

    /// <summary>
    /// ReLU is IEEE's maximum with 0 in every lane: NaN stays NaN (as PyTorch's relu) and -0 becomes +0, in the vector
    /// body and in the scalar tail alike; the same for the training plan's fused addition + ReLU.
    /// </summary>
    [Fact]
    public void Relu_keeps_NaN_and_gives_plus_zero_in_every_lane()
    {
        // 37 values: whole vectors, then a scalar tail, with NaN and -0 in both.
        var values = Enumerable.Range(0, 37).Select(i => (float)(i % 5) - 2f).ToArray();
        values[1] = float.NaN;
        values[3] = -0f;
        values[35] = float.NaN;
        values[36] = -0f;
        var zeros = new float[values.Length];
        var relu = Tensor.FromArray(values).Relu().ToArray();
        var added = Tensor.Zeros([values.Length]);
        CpuBackend.Instance.AddRelu(Tensor.FromArray(values), Tensor.FromArray(zeros), added);
        foreach (var (name, result) in new[] { ("relu", relu), ("add + relu", added.ToArray()) })
            for (int i = 0; i < values.Length; i++)
            {
                float expected = MathF.Max(values[i], 0f);
                Assert.True(float.IsNaN(expected) ? float.IsNaN(result[i]) : BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(result[i]),
                    $"{name} of {values[i]} at {i}: expected {expected}, got {result[i]}");
            }
    }

    [Fact]
    public void Large_tensors_take_the_chunked_and_vectorised_paths()
    {
        // 301 x 307 = 92,407 elements: above the backend's parallel threshold (65,536), rows not a multiple of the vector width.
        int[] shape = [301, 307];
        var (x, xv) = Reference.RandomTensor(shape, 31, 4);
        var (row, rv) = Reference.RandomTensor([307], 32, 0.5, 1);
        var (col, cv) = Reference.RandomTensor([301, 1], 33);
        GradCheck.AssertClose(xv.Select(v => Math.Max(v, 0)).ToArray(), x.Relu().ToArray(), 0, 0, "relu");
        GradCheck.AssertClose(xv.Select(v => v * Math.Clamp(v + 3, 0, 6) / 6).ToArray(), x.Hardswish().ToArray(), 1e-6, 1e-6, "hardswish");
        GradCheck.AssertClose(xv.Select(v => 0.5 * v - 1).ToArray(), x.Affine(0.5f, -1).ToArray(), 1e-6, 1e-6, "affine");
        GradCheck.AssertClose(xv.Select(Math.Tanh).ToArray(), x.Tanh().ToArray(), 1e-6, 1e-6, "tanh");
        GradCheck.AssertClose(Reference.Binary((a, b) => a / b, xv, shape, rv, [307]), x.Div(row).ToArray(), 1e-6, 1e-6, "x / row");
        GradCheck.AssertClose(Reference.Binary((a, b) => a - b, xv, shape, cv, [301, 1]), x.Sub(col).ToArray(), 1e-6, 1e-6, "x - col");
        GradCheck.AssertClose(Reference.Binary((a, b) => a * b, Reference.Permute(xv, shape, [1, 0]), [307, 301], cv, [301]),
            x.T.Mul(col.Reshape(301)).ToArray(), 1e-6, 1e-6, "x.T * col");
        GradCheck.AssertClose(Reference.Binary((a, b) => a + b, xv, shape, xv, shape), x.Add(x).ToArray(), 1e-6, 1e-6, "x + x");

        x.RequiresGrad = true;
        x.Sigmoid().Backward(Tensor.Ones(shape));
        GradCheck.AssertClose(xv.Select(v => Math.Exp(-v) / ((1 + Math.Exp(-v)) * (1 + Math.Exp(-v)))).ToArray(), x.Grad!.ToArray(), 1e-6, 1e-5, "sigmoid'");
    }

    [Fact]
    public void Mixed_dtypes_and_integer_unary_ops_are_refused_with_a_fix()
    {
        var e = Assert.Throws<ArgumentException>(() => Tensor.Zeros([2]).Add(Tensor.Zeros([2], dtype: DType.Int64)));
        Assert.Contains("AsType", e.Message);
        Assert.Throws<InvalidOperationException>(() => Tensor.Zeros([2], dtype: DType.Int64).Exp());
    }
}
