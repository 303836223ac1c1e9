namespace NeuralCore.Tests.Ops;

public class ShapeTests
{
    [Fact]
    public void Reshape_infers_minus_one_and_shares_storage_when_contiguous()
    {
        var (x, xv) = Reference.RandomTensor([2, 3, 4], 1);
        var y = x.Reshape(4, -1);
        Assert.Equal([4, 6], y.ShapeArray());
        Assert.Same(x.Storage, y.Storage);
        GradCheck.AssertClose(xv, y.ToArray(), 0, 0, "reshape");
        Assert.Equal([2, 12], x.View(2, -1).ShapeArray());
        Assert.Equal([24], x.Reshape(-1).ShapeArray());
        GradCheck.Check(t => t[0].Reshape(3, -1, 2), [x], what: "reshape");
    }

    [Fact]
    public void Reshape_of_a_view_copies_and_View_refuses()
    {
        var (x, xv) = Reference.RandomTensor([3, 4], 2);
        var t = x.T;
        var y = t.Reshape(-1);
        Assert.NotSame(x.Storage, y.Storage);
        GradCheck.AssertClose(Reference.Permute(xv, [3, 4], [1, 0]), y.ToArray(), 0, 0, "reshape of x.T");
        var e = Assert.Throws<InvalidOperationException>(() => t.View(12));
        Assert.Contains("Reshape", e.Message);
        GradCheck.Check(a => a[0].T.Reshape(2, 6), [x], what: "reshape of x.T");
    }

    [Fact]
    public void Bad_reshapes_say_what_was_asked()
    {
        var x = Tensor.Zeros([2, 3]);
        Assert.Contains("[4, 2]", Assert.Throws<ArgumentException>(() => x.Reshape(4, 2)).Message);
        Assert.Contains("[4, -1]", Assert.Throws<ArgumentException>(() => x.Reshape(4, -1)).Message);
        Assert.Contains("-1", Assert.Throws<ArgumentException>(() => x.Reshape(-1, -1)).Message);
    }

    /// <summary>Negative sizes other than -1 are refused (they had made a tensor of shape [-2, -3]); Expand reads -1 as "keep", as PyTorch.</summary>
    [Fact]
    public void Negative_sizes_are_refused_and_minus_one_keeps_an_expanded_size()
    {
        Assert.Contains("at least 0", Assert.Throws<ArgumentException>(() => Tensor.Zeros([6]).Reshape(-2, -3)).Message);
        Assert.Equal([4, 3], Tensor.Zeros([1, 3]).Expand(4, -1).ShapeArray());
        Assert.Equal([1, 3], Tensor.Zeros([1, 3]).Expand(-1, 3).ShapeArray());
        Assert.Contains("at least 0", Assert.Throws<ArgumentException>(() => Tensor.Zeros([1, 3]).Expand(-2, 3)).Message);
    }

    [Fact]
    public void Permute_and_transpose_match_the_reference_and_ops_on_the_view_work()
    {
        var (x, xv) = Reference.RandomTensor([2, 3, 4], 3);
        var p = x.Permute(2, 0, 1);
        Assert.Equal([4, 2, 3], p.ShapeArray());
        Assert.Same(x.Storage, p.Storage);
        Assert.False(p.IsContiguous);
        var pv = Reference.Permute(xv, [2, 3, 4], [2, 0, 1]);
        GradCheck.AssertClose(pv, p.ToArray(), 0, 0, "permute");
        GradCheck.AssertClose(Reference.Permute(xv, [2, 3, 4], [0, 2, 1]), x.Transpose(1, 2).ToArray(), 0, 0, "transpose");
        GradCheck.AssertClose(Reference.Permute(xv, [2, 3, 4], [0, 2, 1]), x.Transpose(-1, -2).ToArray(), 0, 0, "transpose(-1, -2)");
        // Ops on the strided view: reductions, unary, binary with broadcasting.
        GradCheck.AssertClose(Reference.Reduce(pv, [4, 2, 3], [2], v => v.Sum()), p.Sum(2).ToArray(), 1e-6, 1e-6, "sum of permuted");
        GradCheck.AssertClose(pv.Select(Math.Exp).ToArray(), p.Exp().ToArray(), 1e-6, 1e-6, "exp of permuted");
        GradCheck.Check(t => t[0].Permute(2, 0, 1).Exp().Sum(1), [x], what: "permute -> exp -> sum");
        GradCheck.Check(t => t[0].Transpose(0, 2).Mul(t[0].Permute(2, 1, 0)), [x], what: "transpose used twice");
        Assert.Throws<ArgumentException>(() => x.Permute(0, 0, 1));
        Assert.Throws<ArgumentException>(() => x.Permute(0, 1));
    }

    [Fact]
    public void Narrow_and_slice_are_views_with_gradients_in_place()
    {
        var (x, xv) = Reference.RandomTensor([3, 5], 4);
        var n = x.Narrow(1, 1, 3);
        Assert.Same(x.Storage, n.Storage);
        GradCheck.AssertClose(Reference.Narrow(xv, [3, 5], 1, 1, 3), n.ToArray(), 0, 0, "narrow");
        GradCheck.AssertClose(Reference.Narrow(xv, [3, 5], 1, 2, 3), x.Slice(1, 2, 5).ToArray(), 0, 0, "slice 2:5");
        GradCheck.AssertClose(Reference.Narrow(xv, [3, 5], 1, 3, 2), x.Slice(-1, -2, 100).ToArray(), 0, 0, "slice -2:");
        GradCheck.AssertClose(Reference.Narrow(xv, [3, 5], 0, 0, 2), x.Slice(0, 0, -1).ToArray(), 0, 0, "slice :-1");
        Assert.Equal(0, x.Slice(1, 4, 2).Size(1));
        GradCheck.Check(t => t[0].Narrow(1, 1, 3).Square(), [x], what: "narrow");
        GradCheck.Check(t => t[0].Narrow(0, 1, 2).Narrow(1, 0, 2).Mul(t[0].Narrow(0, 0, 2).Narrow(1, 3, 2)), [x], what: "overlapping narrows");
        Assert.Throws<ArgumentOutOfRangeException>(() => x.Narrow(1, 3, 3));
    }

    [Fact]
    public void IndexSelect_forward_and_backward_with_repeated_indices()
    {
        var (x, xv) = Reference.RandomTensor([3, 4, 2], 5);
        var idx = Tensor.FromArray(new long[] { 2, 0, 2, 2 });
        var y = x.IndexSelect(1, idx);
        Assert.Equal([3, 4, 2], y.ShapeArray());
        var expected = new double[y.NumElements];
        for (var a = 0; a < 3; a++)
            for (var j = 0; j < 4; j++)
                for (var c = 0; c < 2; c++)
                    expected[(a * 4 + j) * 2 + c] = xv[(a * 4 + (int)idx.ToInt64Array()[j]) * 2 + c];
        GradCheck.AssertClose(expected, y.ToArray(), 0, 0, "index_select");
        GradCheck.Check(t => t[0].IndexSelect(1, t[1]), [x, idx], what: "index_select");

        // Each row's gradient is the number of times it was picked.
        var leaf = Tensor.Zeros([4, 2]);
        leaf.RequiresGrad = true;
        leaf.IndexSelect(0, Tensor.FromArray(new long[] { 3, 1, 3, 3 })).Sum().Backward();
        Assert.Equal([0f, 0f, 1f, 1f, 0f, 0f, 3f, 3f], leaf.Grad!.ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => x.IndexSelect(0, Tensor.FromArray(new long[] { 3 }, 1)));
        // A rank-0 index selects one entry and keeps the dimension, as torch.index_select does.
        var one = x.IndexSelect(2, Tensor.FromArray(new long[] { 1 }));
        Assert.Equal([3, 4, 1], one.ShapeArray());
        GradCheck.AssertClose(Reference.Narrow(xv, [3, 4, 2], 2, 1, 1), one.ToArray(), 0, 0, "rank-0 index");
        Assert.Throws<ArgumentException>(() => x.IndexSelect(0, Tensor.Zeros([1, 1], dtype: DType.Int64)));
        Assert.Throws<ArgumentException>(() => x.IndexSelect(0, Tensor.FromArray(new[] { 0f })));
    }

    [Fact]
    public void Concat_and_split_are_inverse()
    {
        var (a, av) = Reference.RandomTensor([2, 1, 3], 6);
        var (b, bv) = Reference.RandomTensor([2, 4, 3], 7);
        var (c, cv) = Reference.RandomTensor([2, 2, 3], 8);
        var y = Tensor.Concat([a, b, c], 1);
        Assert.Equal([2, 7, 3], y.ShapeArray());
        GradCheck.AssertClose(av, y.Narrow(1, 0, 1).ToArray(), 0, 0, "concat part a");
        GradCheck.AssertClose(bv, y.Narrow(1, 1, 4).ToArray(), 0, 0, "concat part b");
        GradCheck.AssertClose(cv, y.Narrow(1, 5, 2).ToArray(), 0, 0, "concat part c");
        GradCheck.Check(t => Tensor.Concat([t[0], t[1].Exp(), t[2]], -2), [a, b, c], what: "concat");
        GradCheck.Check(t => Tensor.Concat([t[0], t[0]], 0), [a], what: "concat of one tensor twice");

        var parts = y.Split([1, 4, 2], 1);
        GradCheck.AssertClose(bv, parts[1].ToArray(), 0, 0, "split");
        var chunks = y.Split(3, 1);
        Assert.Equal([3, 3, 1], chunks.Select(t => t.Size(1)).ToArray());
        GradCheck.Check(t => t[0].Split(3, 1)[1].Mul(t[0].Split([1, 3, 3], 1)[2]), [Reference.RandomTensor([2, 7, 3], 12).Tensor], what: "split");
        Assert.Contains("[2, 4, 3]", Assert.Throws<ArgumentException>(() => Tensor.Concat([a, b], 2)).Message);
        Assert.Throws<ArgumentException>(() => y.Split([1, 2], 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => y.Split(0, 1));
    }

    [Fact]
    public void Expand_is_a_broadcast_view_whose_gradient_sums()
    {
        var (x, xv) = Reference.RandomTensor([3, 1], 9);
        var e = x.Expand(2, 3, 4);
        Assert.Same(x.Storage, e.Storage);
        Assert.Equal([0, 1, 0], e.Strides.ToArray());
        GradCheck.AssertClose(Reference.Broadcast(xv, [3, 1], [2, 3, 4]), e.ToArray(), 0, 0, "expand");
        GradCheck.Check(t => t[0].Expand(2, 3, 4), [x], what: "expand");
        Assert.Contains("[3, 1]", Assert.Throws<ArgumentException>(() => x.Expand(2, 4)).Message);
        Assert.Same(x, x.Expand(3, 1));
    }

    [Fact]
    public void Flatten_squeeze_unsqueeze_shapes_and_gradients()
    {
        var (x, xv) = Reference.RandomTensor([2, 1, 3, 1], 10);
        Assert.Equal([6], x.Flatten().ShapeArray());
        Assert.Equal([2, 3, 1], x.Flatten(1, 2).ShapeArray());
        Assert.Equal([2, 3], x.Flatten(1).ShapeArray());
        Assert.Equal([2, 3], x.Squeeze().ShapeArray());
        Assert.Equal([2, 3, 1], x.Squeeze(1).ShapeArray());
        Assert.Equal([2, 1, 3], x.Squeeze(-1).ShapeArray());
        Assert.Same(x, x.Squeeze(0));
        Assert.Equal([1, 2, 1, 3, 1], x.Unsqueeze(0).ShapeArray());
        Assert.Equal([2, 1, 3, 1, 1], x.Unsqueeze(-1).ShapeArray());
        Assert.Equal([2, 1, 1, 3, 1], x.Unsqueeze(2).ShapeArray());
        Assert.Equal([1], Tensor.Scalar(2f).Flatten().ShapeArray());
        GradCheck.AssertClose(xv, x.Squeeze().Unsqueeze(0).Flatten().ToArray(), 0, 0, "values unchanged");
        GradCheck.Check(t => t[0].Squeeze().Unsqueeze(1).Flatten(0, 1).Square(), [x], what: "squeeze/unsqueeze/flatten");
        Assert.Throws<ArgumentOutOfRangeException>(() => x.Unsqueeze(5));
        Assert.Throws<ArgumentOutOfRangeException>(() => x.Unsqueeze(-6));
        Assert.Throws<ArgumentException>(() => x.Flatten(2, 1));
    }

    [Fact]
    public void Integer_tensors_keep_every_digit_through_views_and_concat()
    {
        long big = (1L << 40) + 3;
        var a = Tensor.FromArray(new[] { big, -big, 1, 2, 3, 4 }, 2, 3);
        Assert.Equal(new[] { big, 2, -big, 3, 1, 4 }, a.T.Contiguous().ToInt64Array());
        Assert.Equal(new[] { big, -big, 1, big, -big, 1, 2, 3, 4, 2, 3, 4 }, Tensor.Concat([a, a], 1).ToInt64Array());
        Assert.Equal(new[] { 2L, 3, 4, 2, 3, 4 }, a.Narrow(0, 1, 1).Expand(2, 3).Contiguous().ToInt64Array());
        Assert.Equal(new[] { -big, big }, a.IndexSelect(1, Tensor.FromArray(new long[] { 1, 0 })).Narrow(0, 0, 1).ToInt64Array());
    }

    [Fact]
    public void Contiguous_copy_of_a_view_keeps_the_gradient_path()
    {
        var (x, xv) = Reference.RandomTensor([2, 3], 11);
        var c = x.T.Contiguous();
        Assert.True(c.IsContiguous);
        GradCheck.AssertClose(Reference.Permute(xv, [2, 3], [1, 0]), c.ToArray(), 0, 0, "contiguous");
        GradCheck.Check(t => t[0].T.Contiguous().Mul(t[0].T.Clone()), [x], what: "contiguous/clone");
    }
}
