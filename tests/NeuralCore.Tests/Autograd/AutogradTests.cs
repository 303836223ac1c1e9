using NeuralCore.Autograd;
using NeuralCore.Backends;
using NeuralCore.NN;
using NeuralCore.Tests.Ops;
using AG = NeuralCore.Autograd.Autograd;

// NOTE: namespace NeuralCore.Tests, not NeuralCore.Tests.Autograd: a namespace of that name would hide the
// NeuralCore.Autograd namespace from every other test file that writes Autograd.Autograd.
namespace NeuralCore.Tests;

public class AutogradTests
{
    private static Tensor Leaf(params float[] values)
    {
        var t = Tensor.FromArray(values);
        t.RequiresGrad = true;
        return t;
    }

    [Fact]
    public void Gradients_accumulate_across_backward_calls()
    {
        var x = Leaf(1f, 2f, 3f);
        x.Square().Sum().Backward();
        Assert.Equal([2f, 4f, 6f], x.Grad!.ToArray());
        x.Mul(3f).Sum().Backward();
        Assert.Equal([5f, 7f, 9f], x.Grad!.ToArray());
        x.Grad = null;
        x.Sum().Backward();
        Assert.Equal([1f, 1f, 1f], x.Grad!.ToArray());
    }

    [Fact]
    public void A_tensor_used_twice_gets_both_contributions()
    {
        // Diamond: y = exp(x); z = y * sin-free mix of y with itself; every path into x adds up.
        var x = Leaf(0.5f, -1f);
        var y = x.Exp();
        var z = y.Mul(y).Add(y.Mul(2f)).Add(x);
        z.Sum().Backward();
        var expected = x.ToArray().Select(v => 2 * MathF.Exp(2 * v) + 2 * MathF.Exp(v) + 1).ToArray();
        GradCheck.AssertClose(Array.ConvertAll(expected, v => (double)v), x.Grad!.ToArray(), 1e-5, 1e-5, "diamond");

        var w = Leaf(3f);
        w.Add(w).Sum().Backward();
        Assert.Equal([2f], w.Grad!.ToArray());
    }

    [Fact]
    public void RequiresGrad_propagates_and_Detach_cuts()
    {
        var x = Leaf(1f, 2f);
        var c = Tensor.FromArray([3f, 4f]);
        Assert.False(c.RequiresGrad);
        var y = x.Mul(c);
        Assert.True(y.RequiresGrad);
        Assert.False(y.IsLeaf);
        Assert.False(c.Mul(c).RequiresGrad);
        Assert.Null(c.Mul(c).GradFn);

        var d = y.Detach();
        Assert.False(d.RequiresGrad);
        Assert.True(d.IsLeaf);
        Assert.Same(y.Storage, d.Storage);
        y.Add(d).Sum().Backward();
        Assert.Equal([3f, 4f], x.Grad!.ToArray());

        Assert.Throws<InvalidOperationException>(() => y.RequiresGrad = false);
        Assert.Throws<InvalidOperationException>(() => Tensor.FromArray(new long[] { 1 }).RequiresGrad = true);
    }

    [Fact]
    public void NoGrad_records_nothing()
    {
        var x = Leaf(1f, 2f);
        Tensor y;
        using (AG.NoGrad())
        {
            Assert.False(AG.IsGradEnabled);
            using (AG.NoGrad()) y = x.Exp();
            Assert.False(AG.IsGradEnabled);
            y = y.Mul(x);
        }
        Assert.True(AG.IsGradEnabled);
        Assert.False(y.RequiresGrad);
        Assert.Null(y.GradFn);
        var e = Assert.Throws<InvalidOperationException>(() => y.Sum().Backward());
        Assert.Contains("NoGrad", e.Message);
    }

    private sealed class Scale : Module
    {
        public override Tensor Forward(Tensor input) => input.Mul(2f).Relu();
    }

    [Fact]
    public void Trace_records_ops_without_gradients_with_kind_inputs_attributes_and_module()
    {
        var x = Tensor.FromArray([1f, -2f, 3f, 4f, 5f, 6f], 2, 3);
        var w = Tensor.Ones([3, 2]);
        var module = new Scale();
        Tensor y, z, s;
        using (AG.Trace())
        {
            Assert.True(AG.IsTracing);
            y = module.Call(x);
            z = y.MatMul(w);
            s = z.Sum([1], keepDim: true);
        }
        Assert.False(AG.IsTracing);
        Assert.False(s.RequiresGrad);

        var sum = s.GradFn!;
        Assert.Equal(OpKind.Reduce, sum.Kind);
        Assert.Same(z, sum.Inputs[0]);
        Assert.Same(s, sum.Output);
        Assert.Equal(ReduceOp.Sum, sum.Attributes["op"]);
        Assert.Equal([1], (int[])sum.Attributes["dims"]);
        Assert.Equal(true, sum.Attributes["keepdim"]);
        Assert.Null(sum.Module);

        var mm = z.GradFn!;
        Assert.Equal(OpKind.MatMul, mm.Kind);
        Assert.Same(y, mm.Inputs[0]);
        Assert.Same(w, mm.Inputs[1]);

        var relu = y.GradFn!;
        Assert.Equal(OpKind.Unary, relu.Kind);
        Assert.Equal(UnaryOp.Relu, relu.Attributes["op"]);
        Assert.Same(module, relu.Module);
        var affine = relu.Inputs[0].GradFn!;
        Assert.Equal(UnaryOp.Affine, affine.Attributes["op"]);
        Assert.Equal(2f, affine.Attributes["alpha"]);
        Assert.Same(x, affine.Inputs[0]);
        Assert.Same(module, affine.Module);
        Assert.True(affine.Sequence < relu.Sequence && relu.Sequence < mm.Sequence && mm.Sequence < sum.Sequence);

        // Outside the scope, nothing is recorded for tensors without gradients.
        Assert.Null(module.Call(x).GradFn);
    }

    [Fact]
    public void Trace_records_the_attributes_of_shape_and_loss_ops()
    {
        var x = Tensor.Ones([2, 6]);
        var targets = Tensor.FromArray(new long[] { 0, 1 });
        var idx = Tensor.FromArray(new long[] { 2, 0 });
        Tensor reshaped, permuted, narrowed, selected, concat, expanded, binary, logp, loss, dropped;
        using (AG.Trace())
        {
            reshaped = x.Reshape(2, 3, 2);
            permuted = reshaped.Permute(0, 2, 1);
            narrowed = permuted.Narrow(2, 1, 2);
            selected = reshaped.IndexSelect(1, idx);
            concat = Tensor.Concat([narrowed, selected.Permute(0, 2, 1)], 1);
            expanded = Tensor.Ones([2, 1]).Expand(2, 3);
            binary = expanded.Sub(x.Narrow(1, 0, 3));
            logp = Functional.LogSoftmax(binary, 1);
            loss = Functional.NllLoss(logp, targets, reduction: Reduction.None);
            dropped = Functional.Dropout(loss, 0.5f, training: true, new Generator(1));
        }
        Assert.Equal(OpKind.Reshape, reshaped.GradFn!.Kind);
        Assert.Equal([2, 3, 2], (int[])reshaped.GradFn.Attributes["shape"]);
        Assert.Equal(OpKind.Permute, permuted.GradFn!.Kind);
        Assert.Equal([0, 2, 1], (int[])permuted.GradFn.Attributes["dims"]);
        Assert.Equal(OpKind.Narrow, narrowed.GradFn!.Kind);
        Assert.Equal((2, 1, 2), ((int)narrowed.GradFn.Attributes["dim"], (int)narrowed.GradFn.Attributes["start"], (int)narrowed.GradFn.Attributes["length"]));
        Assert.Equal(OpKind.IndexSelect, selected.GradFn!.Kind);
        Assert.Same(idx, selected.GradFn.Inputs[1]);
        Assert.Equal(1, selected.GradFn.Attributes["dim"]);
        Assert.Equal(OpKind.Concat, concat.GradFn!.Kind);
        Assert.Equal(2, concat.GradFn.Inputs.Count);
        Assert.Equal([2, 2], (int[])concat.GradFn.Attributes["sizes"]);
        Assert.Equal(OpKind.Expand, expanded.GradFn!.Kind);
        Assert.Equal(OpKind.Binary, binary.GradFn!.Kind);
        Assert.Equal(BinaryOp.Sub, binary.GradFn.Attributes["op"]);
        Assert.Same(expanded, binary.GradFn.Inputs[0]);
        Assert.Equal(OpKind.LogSoftmax, logp.GradFn!.Kind);
        Assert.Equal(OpKind.NllLoss, loss.GradFn!.Kind);
        Assert.Same(targets, loss.GradFn.Inputs[1]);
        Assert.Equal(OpKind.Dropout, dropped.GradFn!.Kind);
        Assert.Equal(0.5f, dropped.GradFn.Attributes["p"]);
    }

    [Fact]
    public void Backward_twice_needs_retainGraph()
    {
        var x = Leaf(1f, 2f);
        var loss = x.Exp().Sum();
        loss.Backward();
        var e = Assert.Throws<InvalidOperationException>(() => loss.Backward());
        Assert.Contains("retainGraph", e.Message);

        var x2 = Leaf(1f, 2f);
        var loss2 = x2.Square().Sum();
        loss2.Backward(retainGraph: true);
        loss2.Backward();
        Assert.Equal([4f, 8f], x2.Grad!.ToArray());
    }

    [Fact]
    public void Backward_arguments_are_checked()
    {
        var x = Leaf(1f, 2f);
        var y = x.Mul(3f);
        Assert.Contains("[2]", Assert.Throws<InvalidOperationException>(() => y.Backward()).Message);
        Assert.Throws<ArgumentException>(() => y.Backward(Tensor.Ones([3])));
        y.Backward(Tensor.FromArray([1f, -1f]));
        Assert.Equal([3f, -3f], x.Grad!.ToArray());
        Assert.Throws<InvalidOperationException>(() => Tensor.Ones([1]).Backward());

        // A leaf as its own root.
        var leaf = Leaf(5f);
        leaf.Backward();
        Assert.Equal([1f], leaf.Grad!.ToArray());
    }

    [Fact]
    public void In_place_ops_on_graph_tensors_throw()
    {
        var x = Leaf(1f, 2f);
        var y = x.Exp();
        Assert.Contains("NoGrad", Assert.Throws<InvalidOperationException>(() => x.AddInPlace(Tensor.Ones([2]))).Message);
        Assert.Throws<InvalidOperationException>(() => y.MulInPlace(2));
        Assert.Throws<InvalidOperationException>(() => y.FillInPlace(0));
        Assert.Throws<InvalidOperationException>(() => x.CopyFrom(Tensor.Ones([2])));
        using (AG.NoGrad()) x.AddInPlace(Tensor.Ones([2]));
        Assert.Equal([2f, 3f], x.ToArray());
        x.Detach().ZeroInPlace();
        Assert.Equal([0f, 0f], x.ToArray());
    }

    [Fact]
    public void Gradients_through_a_small_network_match_finite_differences()
    {
        var (x, _) = Reference.RandomTensor([4, 3], 1);
        var (w1, _) = Reference.RandomTensor([3, 5], 2);
        var (b1, _) = Reference.RandomTensor([5], 3);
        var (w2, _) = Reference.RandomTensor([5, 2], 4);
        var targets = Tensor.FromArray(new long[] { 0, 1, 1, 0 });
        GradCheck.Check(t => Functional.CrossEntropy(t[0].MatMul(t[1]).Add(t[2]).Tanh().MatMul(t[3]), targets),
            [x, w1, b1, w2], what: "mlp");
    }

    /// <summary>
    /// Built-in ops build a node's attributes only when someone reads them (a training step allocates no dictionary
    /// per op); read later, outside any trace, they hold the values the op was called with.
    /// </summary>
    [Fact]
    public void AttributesOfAGradientGraphAreBuiltWhenRead()
    {
        var x = Tensor.Randn([2, 3, 4, 4], new Generator(5));
        x.RequiresGrad = true;
        var bn = new BatchNorm2d(3, eps: 1e-3);
        var y = bn.Call(x).Mul(3f);
        var affine = y.GradFn!;
        var norm = affine.Inputs[0].GradFn!;
        Assert.Equal(OpKind.BatchNorm2d, norm.Kind);
        Assert.Equal(true, norm.Attributes["training"]);
        Assert.Equal(1e-3f, norm.Attributes["eps"]);
        Assert.Same(bn.RunningMean, norm.Attributes["running_mean"]);
        Assert.Same(norm.Attributes, norm.Attributes);
        Assert.Equal(UnaryOp.Affine, affine.Attributes["op"]);
        Assert.Equal(3f, affine.Attributes["alpha"]);
        y.Sum().Backward();
        Assert.Equal(0f, affine.Attributes["beta"]);
    }
}
