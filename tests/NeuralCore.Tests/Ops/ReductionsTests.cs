using NeuralCore.NN;
using NeuralCore.Backends;

namespace NeuralCore.Tests.Ops;

public class ReductionsTests
{
    private static readonly int[] Shape = [2, 3, 4];

    public static TheoryData<int[], bool> DimSets => new()
    {
        { new[] { 0 }, false }, { new[] { 1 }, true }, { new[] { 2 }, false }, { new[] { -1 }, true },
        { new[] { 0, 2 }, false }, { new[] { 2, 0 }, true }, { new[] { 1, 2 }, false }, { new[] { 0, 1, 2 }, true },
    };

    private static int[] ReducedShape(int[] dims, bool keepDim) =>
        Shape.Select((s, d) => dims.Contains(d) ? (keepDim ? 1 : -1) : s).Where(s => s >= 0).ToArray();

    private static int[] Normalized(int[] dims) => dims.Select(d => d < 0 ? d + Shape.Length : d).ToArray();

    [Theory]
    [MemberData(nameof(DimSets))]
    public void Sum_and_mean_over_dims(int[] dims, bool keepDim)
    {
        var (x, xv) = Reference.RandomTensor(Shape, 1);
        var nd = Normalized(dims);
        var sum = x.Sum(dims, keepDim);
        Assert.Equal(ReducedShape(nd, keepDim), sum.ShapeArray());
        GradCheck.AssertClose(Reference.Reduce(xv, Shape, nd, v => v.Sum()), sum.ToArray(), 1e-5, 1e-5, "sum");
        GradCheck.AssertClose(Reference.Reduce(xv, Shape, nd, v => v.Average()), x.Mean(dims, keepDim).ToArray(), 1e-6, 1e-5, "mean");
        GradCheck.Check(t => t[0].Sum(dims, keepDim), [x], what: "sum");
        GradCheck.Check(t => t[0].Mean(dims, keepDim), [x], what: "mean");
    }

    [Theory]
    [MemberData(nameof(DimSets))]
    public void Variance_unbiased_and_biased(int[] dims, bool keepDim)
    {
        var (x, xv) = Reference.RandomTensor(Shape, 2);
        var nd = Normalized(dims);
        foreach (var unbiased in new[] { true, false })
        {
            var v = x.Var(dims, unbiased, keepDim);
            Assert.Equal(ReducedShape(nd, keepDim), v.ShapeArray());
            GradCheck.AssertClose(Reference.Reduce(xv, Shape, nd, g => Reference.Variance(g, unbiased)), v.ToArray(), 1e-6, 1e-5, $"var unbiased={unbiased}");
            GradCheck.Check(t => t[0].Var(dims, unbiased, keepDim), [x], what: $"var unbiased={unbiased}");
        }
    }

    [Fact]
    public void Reductions_over_everything_give_a_scalar()
    {
        var (x, xv) = Reference.RandomTensor(Shape, 3);
        Assert.Equal(0, x.Sum().Rank);
        Assert.Equal(xv.Sum(), x.Sum().Item(), 1e-5);
        Assert.Equal(xv.Average(), x.Mean().Item(), 1e-6);
        Assert.Equal(Reference.Variance([.. xv], true), x.Var().Item(), 1e-6);
        Assert.Equal(xv.Max(), x.Max().Item());
        GradCheck.Check(t => t[0].Mean(), [x], what: "mean()");
    }

    /// <summary>
    /// The unbiased variance of one value is 0 / 0, NaN, as PyTorch gives (it had been 0); a dimension named twice is
    /// refused, as PyTorch does (it had been summed once).
    /// </summary>
    [Fact]
    public void Variance_of_one_value_is_nan_and_repeated_dims_are_refused()
    {
        var x = Tensor.FromArray([1f, 2f, 3f], 3, 1);
        Assert.All(x.Var([1]).ToArray(), v => Assert.True(float.IsNaN(v)));
        Assert.Equal([0f, 0f, 0f], x.Var([1], unbiased: false).ToArray());
        Assert.Contains("more than once", Assert.Throws<ArgumentException>(() => x.Sum([1, 1])).Message);
        Assert.Contains("more than once", Assert.Throws<ArgumentException>(() => x.Sum([1, -1])).Message);
    }

    /// <summary>A scalar reduced over dimension 0 or -1 is itself, as in PyTorch (index exceptions before); integer maxima are refused with a message.</summary>
    [Fact]
    public void Scalars_reduce_over_their_own_dimension()
    {
        var s = Tensor.Scalar(3f);
        Assert.Equal(3f, s.Sum([0]).Item());
        Assert.Equal(3f, s.Max(0).Item());
        Assert.Equal(0, s.ArgMax(-1).ToInt64Array()[0]);
        Assert.Equal(0, s.Max(0).Rank);
        Assert.Equal(1f, Functional.Softmax(s, 0).Item());
        Assert.Equal(0f, Functional.LogSoftmax(s, -1).Item());
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Sum([1]));
        Assert.Contains("AsType", Assert.Throws<InvalidOperationException>(() => Tensor.FromArray([1L, 5L], 2).Max(0)).Message);
        var pieces = Tensor.Zeros([0, 3]).Split(2, 0);
        Assert.Equal([0, 3], Assert.Single(pieces).ShapeArray());
    }

    [Fact]
    public void Reductions_of_a_permuted_view()
    {
        var (x, xv) = Reference.RandomTensor(Shape, 4);
        var pv = Reference.Permute(xv, Shape, [2, 0, 1]);
        var p = x.Permute(2, 0, 1);
        GradCheck.AssertClose(Reference.Reduce(pv, [4, 2, 3], [0, 2], v => v.Sum()), p.Sum([0, 2]).ToArray(), 1e-5, 1e-5, "sum of view");
        GradCheck.AssertClose(Reference.Reduce(pv, [4, 2, 3], [1], v => v.Max()), p.Max(1).ToArray(), 0, 0, "max of view");
        GradCheck.Check(t => t[0].Permute(2, 0, 1).Mean([0, 2], keepDim: true), [x], what: "mean of view");
    }

    [Theory]
    [InlineData(0, false)]
    [InlineData(1, true)]
    [InlineData(-1, false)]
    public void Max_min_argmax_forward_and_backward(int dim, bool keepDim)
    {
        // Distinct values 0.1 apart (a shuffled range), so no finite-difference step of 1e-2 changes the arg index.
        var xv = Enumerable.Range(0, 24).Select(i => (i * 7 % 24) * 0.1 - 1.2).ToArray();
        var x = Tensor.FromArray(Reference.ToFloat(xv), Shape);
        xv = Reference.ToDouble(x.ToArray());
        var d = dim < 0 ? dim + 3 : dim;
        var expectedShape = ReducedShape([d], keepDim);
        var max = x.Max(dim, keepDim);
        Assert.Equal(expectedShape, max.ShapeArray());
        GradCheck.AssertClose(Reference.Reduce(xv, Shape, [d], v => v.Max()), max.ToArray(), 0, 0, "max");
        GradCheck.AssertClose(Reference.Reduce(xv, Shape, [d], v => v.Min()), x.Min(dim, keepDim).ToArray(), 0, 0, "min");
        var arg = x.ArgMax(dim, keepDim);
        Assert.Equal(DType.Int64, arg.DType);
        Assert.Equal(expectedShape, arg.ShapeArray());
        Assert.Equal(Reference.Reduce(xv, Shape, [d], v => v.IndexOf(v.Max())).Select(v => (long)v), arg.ToInt64Array());
        var (values, indices) = x.MaxMin(ReduceOp.Min, dim, keepDim);
        GradCheck.AssertClose(Reference.Reduce(xv, Shape, [d], v => v.Min()), values.ToArray(), 0, 0, "MaxMin values");
        Assert.Equal(Reference.Reduce(xv, Shape, [d], v => v.IndexOf(v.Min())).Select(v => (long)v), indices.ToInt64Array());
        GradCheck.Check(t => t[0].Max(dim, keepDim), [x], what: "max");
        GradCheck.Check(t => t[0].Min(dim, keepDim), [x], what: "min");
    }

    [Fact]
    public void Ties_pick_the_first_index_and_only_it_gets_the_gradient()
    {
        var x = Tensor.FromArray([1f, 3f, 3f, 0f, 2f, 2f, 2f, 1f], 2, 4);
        x.RequiresGrad = true;
        Assert.Equal([1L, 0L], x.ArgMax(1).ToInt64Array());
        Assert.Equal([3L, 3L], x.MaxMin(ReduceOp.Min, 1, false).Indices.ToInt64Array());
        x.Max(1).Sum().Backward();
        Assert.Equal([0f, 1f, 0f, 0f, 1f, 0f, 0f, 0f], x.Grad!.ToArray());
        Assert.Throws<InvalidOperationException>(() => Tensor.Zeros([2, 0]).Max(1));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void Large_reductions_take_the_chunked_and_vectorised_paths(int dim)
    {
        int[] shape = [37, 1031, 5];
        var (x, xv) = Reference.RandomTensor(shape, 6);
        GradCheck.AssertClose(Reference.Reduce(xv, shape, [dim], v => v.Sum()), x.Sum(dim).ToArray(), 1e-4, 1e-5, "sum");
        GradCheck.AssertClose(Reference.Reduce(xv, shape, [dim], v => v.Average()), x.Mean(dim).ToArray(), 1e-6, 1e-5, "mean");
        GradCheck.AssertClose(Reference.Reduce(xv, shape, [dim], v => v.Max()), x.Max(dim).ToArray(), 0, 0, "max");
        Assert.Equal(Reference.Reduce(xv, shape, [dim], v => v.IndexOf(v.Min())).Select(v => (long)v),
            x.MaxMin(ReduceOp.Min, dim, false).Indices.ToInt64Array());
        // Rows long enough for the vectorised row sum (inner size 1).
        var flat = x.Reshape(37, -1);
        GradCheck.AssertClose(Reference.Reduce(xv, [37, 5155], [1], v => v.Sum()), flat.Sum(1).ToArray(), 1e-3, 1e-5, "row sum");
    }

    [Fact]
    public void Integer_tensors_cannot_be_summed_silently()
    {
        Assert.Throws<InvalidOperationException>(() => Tensor.FromArray(new long[] { 1, 2 }).Sum());
    }
}
