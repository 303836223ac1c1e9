namespace NeuralCore.Tests;

/// <summary>Central finite differences and tolerant comparisons for gradient checks (null coordinates mean all of them).</summary>
public static class GradCheck
{
    /// <summary>
    /// d f / d x[i] ≈ (f(x + h e_i) - f(x - h e_i)) / 2h for every i, or only for the coordinates in
    /// <paramref name="at"/> (the others stay 0); x is restored afterwards. Use a float64
    /// <paramref name="f"/> so that h can be small without round-off swamping the difference.
    /// </summary>
    public static double[] Numerical(Func<double[], double> f, double[] x, double h = 1e-4, int[]? at = null)
    {
        var grad = new double[x.Length];
        foreach (int i in at ?? Enumerable.Range(0, x.Length))
        {
            double saved = x[i];
            x[i] = saved + h;
            double plus = f(x);
            x[i] = saved - h;
            double minus = f(x);
            x[i] = saved;
            grad[i] = (plus - minus) / (2 * h);
        }
        return grad;
    }

    /// <summary>
    /// Asserts |actual[i] - expected[i]| &lt;= atol + rtol * |expected[i]| for every i, naming the first
    /// element that fails.
    /// </summary>
    public static void AssertClose(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double atol, double rtol, string what, int[]? at = null)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: expected {expected.Length} values, got {actual.Length}.");
        foreach (int i in at ?? Enumerable.Range(0, expected.Length))
        {
            double diff = Math.Abs(actual[i] - expected[i]);
            if (!(diff <= atol + rtol * Math.Abs(expected[i])))
                Assert.Fail($"{what}[{i}]: expected {expected[i]:R}, got {actual[i]:R} (difference {diff:G3}, allowed {atol + rtol * Math.Abs(expected[i]):G3}).");
        }
    }

    /// <summary>
    /// Coordinates for a finite-difference check: all of [0, length) when that costs at most
    /// <paramref name="budget"/> evaluations of a function costing <paramref name="costPerEvaluation"/>,
    /// else <paramref name="samples"/> spread evenly over the array, first and last included.
    /// </summary>
    public static int[]? Coordinates(int length, long costPerEvaluation, long budget = 5_000_000, int samples = 64)
    {
        if ((long)length * costPerEvaluation <= budget) return null;
        return Enumerable.Range(0, samples).Select(i => (int)((long)i * (length - 1) / (samples - 1))).Distinct().ToArray();
    }

    /// <summary>Sum of a[i] * b[i] in double (a scalar loss L = sum(y * g) whose gradient with respect to y is g).</summary>
    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>
    /// Checks the autograd gradients of <paramref name="f"/> against central finite differences. The scalar loss is the
    /// random projection L = sum(f(x) * r) (r uniform in [-1, 1) from <paramref name="seed"/>), so every output element
    /// weighs in with a different factor and a wrong rule cannot hide behind a symmetric sum. The forward runs in float32;
    /// the differences are taken in float64 from the float32 outputs, which is why h is large (1e-2 by default): round-off
    /// in the loss, about 1e-7 relative, is divided by 2h. Float32 inputs are checked; other inputs (indices) pass through.
    /// </summary>
    public static void Check(Func<Tensor[], Tensor> f, Tensor[] inputs, double h = 1e-2, double atol = 2e-3, double rtol = 2e-2,
        int seed = 1, string what = "grad")
    {
        // Analytic: leaves that require grad, one backward pass of the projected loss.
        var leaves = inputs.Select(t => t.DType == DType.Float32 ? LeafCopy(t.ToArray(), t.ShapeArray(), requiresGrad: true) : t).ToArray();
        var y = f(leaves);
        var rng = new Random(seed);
        var r = Array.ConvertAll(new double[y.NumElements], _ => (double)(float)(rng.NextDouble() * 2 - 1));
        var rt = Tensor.FromArray(Array.ConvertAll(r, v => (float)v), y.ShapeArray());
        Autograd.Autograd.Backward(y.Mul(rt).Sum());

        for (var i = 0; i < inputs.Length; i++)
        {
            if (inputs[i].DType != DType.Float32) continue;
            var shape = inputs[i].ShapeArray();
            var x0 = Array.ConvertAll(inputs[i].ToArray(), v => (double)v);
            var k = i;
            double Loss(double[] x)
            {
                using var _ = Autograd.Autograd.NoGrad();
                var args = inputs.ToArray();
                args[k] = LeafCopy(Array.ConvertAll(x, v => (float)v), shape, requiresGrad: false);
                var yv = f(args).ToArray();
                return Dot(Array.ConvertAll(yv, v => (double)v), r);
            }
            var numerical = Numerical(Loss, x0, h);
            var analytic = leaves[i].Grad?.ToArray() ?? new float[x0.Length];
            AssertClose(numerical, analytic, atol, rtol, $"{what} d/dinput{i}");
        }
    }

    private static Tensor LeafCopy(float[] data, int[] shape, bool requiresGrad)
    {
        var t = Tensor.Zeros(shape);
        data.CopyTo(t.AsSpan());
        t.RequiresGrad = requiresGrad;
        return t;
    }
}
