namespace NeuralCore.Tests.Ops;

public class MatMulTests
{
    public static TheoryData<int[], int[]> Shapes => new()
    {
        { new[] { 3, 4 }, new[] { 4, 5 } },
        { new[] { 1, 4 }, new[] { 4, 1 } },
        { new[] { 2, 3, 4 }, new[] { 2, 4, 5 } },
        { new[] { 2, 3, 4 }, new[] { 4, 5 } },
        { new[] { 3, 4 }, new[] { 2, 4, 5 } },
        { new[] { 2, 1, 3, 4 }, new[] { 3, 4, 2 } },
        { new[] { 1, 3, 4 }, new[] { 2, 4, 5 } },
        { new[] { 37, 53 }, new[] { 53, 29 } },
        { new[] { 3, 17, 65 }, new[] { 3, 65, 33 } },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatMul_forward_and_backward(int[] aShape, int[] bShape)
    {
        var (a, av) = Reference.RandomTensor(aShape, 1);
        var (b, bv) = Reference.RandomTensor(bShape, 2);
        var y = a.MatMul(b);
        var expected = Reference.MatMul(av, aShape, bv, bShape, out var outShape);
        Assert.Equal(outShape, y.ShapeArray());
        GradCheck.AssertClose(expected, y.ToArray(), 1e-5, 1e-5, "matmul");
        if (Reference.Count(aShape) + Reference.Count(bShape) <= 200)
            GradCheck.Check(t => t[0].MatMul(t[1]), [a, b], what: "matmul");
    }

    [Fact]
    public void Large_product_gradient_matches_the_reference_product()
    {
        // Too large for finite differences: check dA = G B^T and dB = A^T G against the reference directly.
        int[] aShape = [2, 33, 70], bShape = [70, 41];
        var (a, av) = Reference.RandomTensor(aShape, 3);
        var (b, bv) = Reference.RandomTensor(bShape, 4);
        var (g, gv) = Reference.RandomTensor([2, 33, 41], 5);
        a.RequiresGrad = true; b.RequiresGrad = true;
        a.MatMul(b).Backward(g);
        var bt = Reference.Permute(bv, bShape, [1, 0]);
        GradCheck.AssertClose(Reference.MatMul(gv, [2, 33, 41], bt, [41, 70], out _), a.Grad!.ToArray(), 1e-4, 1e-4, "dA");
        var at = Reference.Permute(av, aShape, [0, 2, 1]);
        var dbBatched = Reference.MatMul(at, [2, 70, 33], gv, [2, 33, 41], out _);
        GradCheck.AssertClose(Reference.Reduce(dbBatched, [2, 70, 41], [0], v => v.Sum()), b.Grad!.ToArray(), 1e-4, 1e-4, "dB");
    }

    /// <summary>
    /// An empty inner dimension gives zeros and an empty outer one an empty product, as PyTorch (both had failed the
    /// GEMM's leading-dimension check); so does a linear layer with no input features.
    /// </summary>
    [Fact]
    public void Empty_inner_or_outer_dimensions()
    {
        var zeros = Tensor.Zeros([2, 0]).MatMul(Tensor.Zeros([0, 3]));
        Assert.Equal([2, 3], zeros.ShapeArray());
        Assert.All(zeros.ToArray(), v => Assert.Equal(0f, v));
        Assert.Equal([2, 0], Tensor.Randn([2, 4], new Generator(1)).MatMul(Tensor.Zeros([4, 0])).ShapeArray());
        Assert.Equal([3, 0, 5], Tensor.Zeros([3, 0, 4]).MatMul(Tensor.Zeros([3, 4, 5])).ShapeArray());
        var linear = new NeuralCore.NN.Linear(0, 4, generator: new Generator(2));
        Assert.Equal(linear.Bias!.ToArray(), linear.Forward(Tensor.Zeros([1, 0])).ToArray());
    }

    [Fact]
    public void Transposed_and_strided_views()
    {
        var (a, av) = Reference.RandomTensor([4, 3], 6);
        var (b, bv) = Reference.RandomTensor([5, 4], 7);
        var (c, cv) = Reference.RandomTensor([2, 4, 6], 8);
        var aT = Reference.Permute(av, [4, 3], [1, 0]);
        var bT = Reference.Permute(bv, [5, 4], [1, 0]);
        GradCheck.AssertClose(Reference.MatMul(aT, [3, 4], bT, [4, 5], out _), a.T.MatMul(b.T).ToArray(), 1e-5, 1e-5, "a.T @ b.T");
        GradCheck.AssertClose(Reference.MatMul(bv, [5, 4], av, [4, 3], out _), b.MatMul(a).ToArray(), 1e-5, 1e-5, "b @ a");
        GradCheck.AssertClose(Reference.MatMul(aT, [3, 4], Reference.Narrow(cv, [2, 4, 6], 2, 1, 3), [2, 4, 3], out _),
            a.T.MatMul(c.Narrow(2, 1, 3)).ToArray(), 1e-5, 1e-5, "a.T @ c[..., 1:4]");
        var cT = Reference.Permute(cv, [2, 4, 6], [0, 2, 1]);
        GradCheck.AssertClose(Reference.MatMul(cT, [2, 6, 4], av, [4, 3], out _), c.Transpose(1, 2).MatMul(a).ToArray(), 1e-5, 1e-5, "c^T @ a");
        GradCheck.Check(t => t[0].T.MatMul(t[1].T), [a, b], what: "a.T @ b.T");
        GradCheck.Check(t => t[1].Transpose(1, 2).MatMul(t[0]), [a, c], what: "c^T @ a");
        GradCheck.Check(t => t[0].Narrow(0, 1, 2).MatMul(t[1].Narrow(1, 1, 2)), [b, a], what: "narrowed");
    }

    [Fact]
    public void Large_transposed_and_batch_permuted_operands()
    {
        var (a, av) = Reference.RandomTensor([70, 45], 13);
        var (b, bv) = Reference.RandomTensor([33, 70], 14);
        var y = a.T.MatMul(b.T);
        var expected = Reference.MatMul(Reference.Permute(av, [70, 45], [1, 0]), [45, 70], Reference.Permute(bv, [33, 70], [1, 0]), [70, 33], out _);
        GradCheck.AssertClose(expected, y.ToArray(), 1e-4, 1e-5, "a.T @ b.T");
        Assert.Equal(y.ToArray(), a.T.MatMul(b.T).ToArray()); // bit-identical run to run

        // Batch dimension not outermost in memory: [3, 2, 4] viewed as [2, 3, 4].
        var (c, cv) = Reference.RandomTensor([3, 2, 4], 15);
        var (d, dv) = Reference.RandomTensor([2, 4, 5], 16);
        GradCheck.AssertClose(Reference.MatMul(Reference.Permute(cv, [3, 2, 4], [1, 0, 2]), [2, 3, 4], dv, [2, 4, 5], out _),
            c.Permute(1, 0, 2).MatMul(d).ToArray(), 1e-5, 1e-5, "batch-permuted");
        GradCheck.Check(t => t[0].Permute(1, 0, 2).MatMul(t[1]), [c, d], what: "batch-permuted");
    }

    [Fact]
    public void One_dimensional_operands_follow_PyTorch()
    {
        var (v, vv) = Reference.RandomTensor([4], 9);
        var (w, wv) = Reference.RandomTensor([4], 10);
        var (m, mv) = Reference.RandomTensor([4, 3], 11);
        var (n, nv) = Reference.RandomTensor([2, 3, 4], 12);

        var dot = v.MatMul(w);
        Assert.Equal(0, dot.Rank);
        Assert.Equal(vv.Zip(wv, (x, y) => x * y).Sum(), dot.Item(), 1e-5);

        var vm = v.MatMul(m);
        Assert.Equal([3], vm.ShapeArray());
        GradCheck.AssertClose(Reference.MatMul(vv, [1, 4], mv, [4, 3], out _), vm.ToArray(), 1e-5, 1e-5, "v @ m");

        var mv2 = m.T.MatMul(v);
        Assert.Equal([3], mv2.ShapeArray());
        GradCheck.AssertClose(Reference.MatMul(Reference.Permute(mv, [4, 3], [1, 0]), [3, 4], vv, [4, 1], out _), mv2.ToArray(), 1e-5, 1e-5, "m.T @ v");

        var nv2 = n.MatMul(v);
        Assert.Equal([2, 3], nv2.ShapeArray());
        GradCheck.AssertClose(Reference.MatMul(nv, [2, 3, 4], vv, [4, 1], out _), nv2.ToArray(), 1e-5, 1e-5, "n @ v");
        Assert.Equal([2, 3], v.MatMul(n.Transpose(1, 2)).ShapeArray());

        GradCheck.Check(t => t[0].MatMul(t[1]), [v, w], what: "dot");
        GradCheck.Check(t => t[0].MatMul(t[1]), [v, m], what: "v @ m");
        GradCheck.Check(t => t[1].MatMul(t[0]), [v, n], what: "n @ v");
    }

    [Fact]
    public void Mismatched_inner_sizes_are_named()
    {
        var e = Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, 3]).MatMul(Tensor.Zeros([4, 5])));
        Assert.Contains("[2, 3]", e.Message);
        Assert.Contains("[4, 5]", e.Message);
        Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, 3, 4]).MatMul(Tensor.Zeros([3, 4, 5])));
    }
}
