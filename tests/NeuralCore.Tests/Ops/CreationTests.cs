namespace NeuralCore.Tests.Ops;

public class CreationTests
{
    [Fact]
    public void Zeros_ones_full_have_the_shape_and_value()
    {
        var z = Tensor.Zeros([2, 3]);
        Assert.Equal([2, 3], z.ShapeArray());
        Assert.All(z.ToArray(), v => Assert.Equal(0f, v));
        Assert.All(Tensor.Ones([4]).ToArray(), v => Assert.Equal(1f, v));
        Assert.All(Tensor.Full([2, 2], -1.5).ToArray(), v => Assert.Equal(-1.5f, v));
        var ints = Tensor.Full([3], 7, dtype: DType.Int64);
        Assert.Equal(DType.Int64, ints.DType);
        Assert.Equal([7L, 7L, 7L], ints.ToInt64Array());
        Assert.Equal(0, Tensor.Zeros([0, 3]).NumElements);
        Assert.Equal(1, Tensor.Zeros([]).NumElements);
        Assert.Equal([2, 3], Tensor.ZerosLike(z).ShapeArray());
        Assert.Contains("[2, -1]", Assert.Throws<ArgumentException>(() => Tensor.Zeros([2, -1])).Message);
    }

    [Fact]
    public void Arange_counts_like_PyTorch()
    {
        Assert.Equal([0f, 1f, 2f, 3f, 4f], Tensor.Arange(0, 5).ToArray());
        Assert.Equal([1f, 1.5f, 2f, 2.5f], Tensor.Arange(1, 3, 0.5).ToArray());
        Assert.Equal(3, Tensor.Arange(0, 0.3, 0.1).NumElements);
        Assert.Equal(10, Tensor.Arange(0, 1, 0.1).NumElements);
        Assert.Equal([5f, 3f, 1f], Tensor.Arange(5, 0, -2).ToArray());
        Assert.Equal(0, Tensor.Arange(5, 0).NumElements);
        Assert.Equal([0L, 1L, 2L], Tensor.Arange(0, 3, dtype: DType.Int64).ToInt64Array());
        Assert.Throws<ArgumentException>(() => Tensor.Arange(0, 1, 0));
    }

    [Fact]
    public void FromArray_checks_the_element_count()
    {
        var t = Tensor.FromArray([1f, 2f, 3f, 4f, 5f, 6f], 2, 3);
        Assert.Equal([2, 3], t.ShapeArray());
        Assert.Equal([1f, 2f, 3f, 4f, 5f, 6f], t.ToArray());
        Assert.Equal([3], Tensor.FromArray([1f, 2f, 3f]).ShapeArray());
        // A single value without a shape is a scalar (so a rank-0 tensor read from a file stays rank 0).
        Assert.Equal([], Tensor.FromArray([4f]).ShapeArray());
        Assert.Equal([], Tensor.FromArray(new long[] { 4 }, []).ShapeArray());
        Assert.Equal([1], Tensor.FromArray([4f], 1).ShapeArray());
        Assert.Equal([0], Tensor.FromArray(Array.Empty<float>()).ShapeArray());
        var e = Assert.Throws<ArgumentException>(() => Tensor.FromArray([1f, 2f, 3f], 2, 2));
        Assert.Contains("3 values", e.Message);
        Assert.Contains("[2, 2]", e.Message);
        Assert.Throws<ArgumentException>(() => Tensor.FromArray(new long[] { 1, 2 }, 3));
        Assert.Equal(DType.Int32, Tensor.FromArray(new[] { 1, 2 }).DType);
        var data = new[] { 1f, 2f };
        var copy = Tensor.FromArray(data);
        data[0] = 9;
        Assert.Equal(1f, copy.ToArray()[0]);
        var wrapped = Tensor.Wrap(data);
        data[1] = 8;
        Assert.Equal([9f, 8f], wrapped.ToArray());
    }

    [Fact]
    public void Scalar_and_Item()
    {
        var s = Tensor.Scalar(2.5f);
        Assert.Equal(0, s.Rank);
        Assert.Equal(2.5f, s.Item());
        Assert.Equal(4f, Tensor.FromArray([4f]).Item());
        Assert.Equal(3f, Tensor.FromArray(new long[] { 3 }).Item());
        var e = Assert.Throws<InvalidOperationException>(() => Tensor.Zeros([2, 2]).Item());
        Assert.Contains("[2, 2]", e.Message);
    }

    [Fact]
    public void ToString_shows_shape_dtype_device_values_and_grad_fn()
    {
        Assert.Equal("Tensor[2, 2] Float32 cpu [1, 2, 3, 4.5]", Tensor.FromArray([1f, 2f, 3f, 4.5f], 2, 2).ToString());
        Assert.Equal("Tensor[2] Int64 cpu [3, -1]", Tensor.FromArray(new long[] { 3, -1 }).ToString());
        Assert.Equal("Tensor[100] Float32 cpu", Tensor.Zeros([100]).ToString());
        var x = Tensor.Ones([2]);
        x.RequiresGrad = true;
        Assert.EndsWith("grad_fn=Unary", x.Exp().ToString());
    }

    [Fact]
    public void Random_tensors_follow_the_generator()
    {
        var a = Tensor.Rand([1000], new Generator(3)).ToArray();
        Assert.Equal(a, Tensor.Rand([1000], new Generator(3)).ToArray());
        Assert.All(a, v => Assert.InRange(v, 0f, 1f - 1e-9f));
        var u = Tensor.Uniform([1000], -2, 5, new Generator(4)).ToArray();
        Assert.All(u, v => Assert.InRange(v, -2f, 5f));
        var n = Tensor.Normal([20_000], 3, 2, new Generator(5)).ToArray();
        Assert.Equal(3, n.Average(), 0.1);
        Assert.Equal(2, Math.Sqrt(n.Select(v => (v - 3.0) * (v - 3.0)).Average()), 0.1);
        Assert.Equal(Tensor.Randn([5], new Generator(6)).ToArray(), Tensor.Normal([5], 0, 1, new Generator(6)).ToArray());
    }

    [Fact]
    public void In_place_helpers_write_through_views()
    {
        var x = Tensor.Zeros([2, 3]);
        x.T.FillInPlace(2);
        Assert.All(x.ToArray(), v => Assert.Equal(2f, v));
        x.Narrow(1, 1, 1).CopyFrom(Tensor.FromArray([5f, 6f], 2, 1));
        Assert.Equal([2f, 5f, 2f, 2f, 6f, 2f], x.ToArray());
        x.AddInPlace(Tensor.Ones([3]), 2);
        Assert.Equal([4f, 7f, 4f, 4f, 8f, 4f], x.ToArray());
        x.MulInPlace(0.5f);
        Assert.Equal([2f, 3.5f, 2f, 2f, 4f, 2f], x.ToArray());
        x.T.MulInPlace(2);
        Assert.Equal([4f, 7f, 4f, 4f, 8f, 4f], x.ToArray());
        x.ZeroInPlace();
        Assert.All(x.ToArray(), v => Assert.Equal(0f, v));
    }
}
