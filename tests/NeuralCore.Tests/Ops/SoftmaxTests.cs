using NeuralCore.NN;

namespace NeuralCore.Tests.Ops;

public class SoftmaxTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(-1)]
    [InlineData(-3)]
    public void Softmax_and_log_softmax_along_any_dim(int dim)
    {
        int[] shape = [2, 3, 4];
        var (x, xv) = Reference.RandomTensor(shape, 1, 3);
        var d = dim < 0 ? dim + 3 : dim;
        var s = Functional.Softmax(x, dim);
        var ls = Functional.LogSoftmax(x, dim);
        Assert.Equal(shape, s.ShapeArray());
        GradCheck.AssertClose(Reference.Softmax(xv, shape, d, log: false), s.ToArray(), 1e-6, 1e-5, "softmax");
        GradCheck.AssertClose(Reference.Softmax(xv, shape, d, log: true), ls.ToArray(), 1e-5, 1e-5, "log_softmax");
        GradCheck.AssertClose(Enumerable.Repeat(1.0, 24 / shape[d]).ToArray(), s.Sum(dim).ToArray(), 1e-6, 0, "rows sum to 1");
        GradCheck.Check(t => Functional.Softmax(t[0], dim), [x], what: "softmax");
        GradCheck.Check(t => Functional.LogSoftmax(t[0], dim), [x], what: "log_softmax");
    }

    [Fact]
    public void Softmax_of_a_strided_view()
    {
        var (x, xv) = Reference.RandomTensor([3, 5], 2);
        GradCheck.AssertClose(Reference.Softmax(Reference.Permute(xv, [3, 5], [1, 0]), [5, 3], 1, log: false),
            Functional.Softmax(x.T, 1).ToArray(), 1e-6, 1e-5, "softmax(x.T)");
        GradCheck.Check(t => Functional.LogSoftmax(t[0].T, -1), [x], what: "log_softmax(x.T)");
    }

    [Fact]
    public void Many_rows_take_the_chunked_path()
    {
        int[] shape = [5000, 20];
        var (x, xv) = Reference.RandomTensor(shape, 3, 5);
        var (g, gv) = Reference.RandomTensor(shape, 4);
        GradCheck.AssertClose(Reference.Softmax(xv, shape, 1, log: false), Functional.Softmax(x).ToArray(), 1e-6, 1e-5, "softmax");
        GradCheck.AssertClose(Reference.Softmax(xv, shape, 1, log: true), Functional.LogSoftmax(x).ToArray(), 1e-5, 1e-5, "log_softmax");
        x.RequiresGrad = true;
        Functional.Softmax(x).Backward(g);
        // d softmax: s * (g - sum(g * s)) per row.
        var s = Reference.Softmax(xv, shape, 1, log: false);
        var dot = Reference.Reduce(s.Select((v, i) => v * gv[i]).ToArray(), shape, [1], v => v.Sum());
        GradCheck.AssertClose(s.Select((v, i) => v * (gv[i] - dot[i / 20])).ToArray(), x.Grad!.ToArray(), 1e-6, 1e-5, "softmax'");
    }

    [Fact]
    public void Large_logits_stay_finite()
    {
        var x = Tensor.FromArray([1000f, 0f, -1000f, 1000f], 1, 4);
        var s = Functional.Softmax(x).ToArray();
        Assert.Equal([0.5f, 0f, 0f, 0.5f], s);
        var ls = Functional.LogSoftmax(x).ToArray();
        Assert.Equal(-MathF.Log(2), ls[0], 1e-5f);
        Assert.Equal(-1000 - MathF.Log(2), ls[1], 1e-2f);
        Assert.All(ls, v => Assert.True(float.IsFinite(v)));
    }
}
