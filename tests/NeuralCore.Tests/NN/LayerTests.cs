using NeuralCore.NN;
using static NeuralCore.Autograd.Autograd;

namespace NeuralCore.Tests.NN;

public class LayerTests
{
    private static void AssertClose(float[] expected, float[] actual, float tol = 1e-5f)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol * (1 + Math.Abs(expected[i])), $"element {i}: expected {expected[i]}, got {actual[i]}");
    }

    [Fact]
    public void Conv2d_HasPyTorchParameterNamesAndShapes()
    {
        var conv = new Conv2d(3, 8, 5, stride: 2, padding: 1, generator: new Generator(1));
        var names = conv.NamedParameters().Select(p => (p.Name, Tensor.FormatShape(p.Parameter.Shape))).ToList();
        Assert.Equal([("weight", "[8, 3, 5, 5]"), ("bias", "[8]")], names);
        var noBias = new Conv2d(3, 8, (3, 1), bias: false, generator: new Generator(1));
        Assert.Null(noBias.Bias);
        Assert.Equal(["weight"], noBias.StateDict().Keys);
        Assert.Equal(new Size2(3, 1), noBias.KernelSize);
    }

    [Fact]
    public void Conv2d_ForwardMatchesHandComputedConvolution()
    {
        // x [1, 1, 3, 3] = 1..9, w [1, 1, 2, 2] = [[1, 0], [0, -1]], bias 0.5, stride 1, no padding:
        // y[i, j] = x[i, j] - x[i+1, j+1] + 0.5 = -4 + 0.5 everywhere.
        var conv = new Conv2d(1, 1, 2, generator: new Generator(1));
        using (NoGrad())
        {
            conv.Weight.CopyFrom(Tensor.FromArray([1f, 0, 0, -1], 1, 1, 2, 2));
            conv.Bias!.CopyFrom(Tensor.FromArray([0.5f], 1));
        }
        var y = conv.Call(Tensor.FromArray([1f, 2, 3, 4, 5, 6, 7, 8, 9], 1, 1, 3, 3));
        Assert.Equal([1, 1, 2, 2], y.ShapeArray());
        AssertClose([-3.5f, -3.5f, -3.5f, -3.5f], y.ToArray());
    }

    [Fact]
    public void Conv2d_ForwardMatchesFunctionalWithStridePaddingDilationGroups()
    {
        var g = new Generator(7);
        var conv = new Conv2d(4, 6, (3, 2), stride: (2, 1), padding: (1, 0), dilation: (1, 2), groups: 2, generator: g);
        var x = Tensor.Randn([2, 4, 7, 6], g);
        var expected = Functional.Conv2d(x, conv.Weight, conv.Bias, (2, 1), (1, 0), (1, 2), 2);
        Assert.Equal(expected.ToArray(), conv.Call(x).ToArray());
    }

    [Fact]
    public void Conv2d_DefaultInitIsKaimingUniformWithASqrt5()
    {
        var conv = new Conv2d(16, 64, 3, generator: new Generator(3));
        var bound = 1 / Math.Sqrt(16 * 9);
        var w = conv.Weight.ToArray();
        Assert.All(w, v => Assert.InRange(v, -bound, bound));
        // U(-b, b) has standard deviation b / sqrt(3); 9216 samples give it to about 1 %.
        var std = Math.Sqrt(w.Select(v => (double)v * v).Average());
        Assert.InRange(std, 0.97 * bound / Math.Sqrt(3), 1.03 * bound / Math.Sqrt(3));
        Assert.All(conv.Bias!.ToArray(), v => Assert.InRange(v, -bound, bound));
        Assert.True(w.Max() > 0.9 * bound && w.Min() < -0.9 * bound);
    }

    [Fact]
    public void Conv2d_SameGeneratorSeedGivesSameWeights()
    {
        var a = new Conv2d(2, 3, 3, generator: new Generator(11));
        var b = new Conv2d(2, 3, 3, generator: new Generator(11));
        var c = new Conv2d(2, 3, 3, generator: new Generator(12));
        Assert.Equal(a.Weight.ToArray(), b.Weight.ToArray());
        Assert.Equal(a.Bias!.ToArray(), b.Bias!.ToArray());
        Assert.NotEqual(a.Weight.ToArray(), c.Weight.ToArray());
    }

    [Fact]
    public void Conv2d_ExtraReprMatchesPyTorch()
    {
        Assert.Equal("1, 32, kernel_size=(5, 5), stride=(2, 2), padding=(1, 1), bias=False",
            new Conv2d(1, 32, 5, stride: 2, padding: 1, bias: false).ExtraRepr());
        Assert.Equal("8, 8, kernel_size=(3, 1), stride=(1, 1), dilation=(2, 2), groups=8",
            new Conv2d(8, 8, (3, 1), dilation: 2, groups: 8).ExtraRepr());
        Assert.Equal("Conv2d(3, 4, kernel_size=(1, 1), stride=(1, 1))", new Conv2d(3, 4, 1).ToString());
    }

    [Fact]
    public void Conv2d_ChannelCountsFollowAWeightResizedInPlace()
    {
        var conv = new Conv2d(6, 8, 3, generator: new Generator(2));
        using (NoGrad())
            conv.Weight.SetData(conv.Weight.Detach().Narrow(0, 0, 5).Narrow(1, 0, 4).Contiguous());
        Assert.Equal(4, conv.InChannels);
        Assert.Equal(5, conv.OutChannels);
        Assert.StartsWith("4, 5, kernel_size=(3, 3)", conv.ExtraRepr());

        // A depthwise convolution (groups == in_channels, multiplier 2) keeps one group per input channel.
        var depthwise = new Conv2d(4, 8, 3, groups: 4, bias: false, generator: new Generator(2));
        using (NoGrad())
            depthwise.Weight.SetData(depthwise.Weight.Detach().Narrow(0, 0, 6).Contiguous());
        Assert.Equal(3, depthwise.Groups);
        Assert.Equal(3, depthwise.InChannels);
        Assert.Equal(6, depthwise.OutChannels);
        Assert.Equal([1, 6, 4, 4], depthwise.Call(Tensor.Randn([1, 3, 6, 6], new Generator(1))).ShapeArray());
    }

    [Fact]
    public void Conv2d_RejectsGroupsThatDoNotDivideTheChannels()
    {
        var e = Assert.Throws<ArgumentException>(() => new Conv2d(6, 4, 3, groups: 4));
        Assert.Contains("groups=4", e.Message);
    }

    [Fact]
    public void Linear_ForwardIsXWTransposedPlusBias()
    {
        var linear = new Linear(3, 2, generator: new Generator(1));
        using (NoGrad())
        {
            linear.Weight.CopyFrom(Tensor.FromArray([1f, 2, 3, -1, 0, 1], 2, 3));
            linear.Bias!.CopyFrom(Tensor.FromArray([0.5f, -0.5f], 2));
        }
        var y = linear.Call(Tensor.FromArray([1f, 1, 1, 2, 0, -1], 2, 3));
        // Row 1: [1+2+3, -1+0+1] + b; row 2: [2-3, -2-1] + b.
        AssertClose([6.5f, -0.5f, -0.5f, -3.5f], y.ToArray());
        Assert.Equal("in_features=3, out_features=2, bias=True", linear.ExtraRepr());
        Assert.Equal([("weight", 2 * 3), ("bias", 2)], linear.NamedParameters().Select(p => (p.Name, p.Parameter.NumElements)));
    }

    [Fact]
    public void Linear_InitBoundsAndGradients()
    {
        var linear = new Linear(100, 50, generator: new Generator(5));
        var bound = 1 / Math.Sqrt(100);
        Assert.All(linear.Weight.ToArray(), v => Assert.InRange(v, -bound, bound));
        Assert.All(linear.Bias!.ToArray(), v => Assert.InRange(v, -bound, bound));

        var x = Tensor.Randn([4, 100], new Generator(6));
        linear.Call(x).Sum().Backward();
        // d sum(x W^T + b) / dW[o, i] = sum_n x[n, i]; / db[o] = N.
        var colSums = x.Sum(0).ToArray();
        var gw = linear.Weight.Grad!.ToArray();
        for (var o = 0; o < 50; o++)
            for (var i = 0; i < 100; i++) Assert.Equal(colSums[i], gw[o * 100 + i], 4);
        Assert.All(linear.Bias.Grad!.ToArray(), v => Assert.Equal(4f, v));
    }

    [Fact]
    public void Linear_RejectsWrongInputWidth()
    {
        var e = Assert.Throws<ArgumentException>(() => new Linear(4, 2).Call(Tensor.Zeros([3, 5])));
        Assert.Contains("[*, 4]", e.Message);
    }

    [Fact]
    public void BatchNorm2d_HasPyTorchParametersAndBuffers()
    {
        var bn = new BatchNorm2d(3);
        Assert.Equal(["weight", "bias", "running_mean", "running_var", "num_batches_tracked"], bn.StateDict().Keys);
        Assert.Equal([1f, 1, 1], bn.Weight.ToArray());
        Assert.Equal([0f, 0, 0], bn.Bias.ToArray());
        Assert.Equal([0f, 0, 0], bn.RunningMean.ToArray());
        Assert.Equal([1f, 1, 1], bn.RunningVar.ToArray());
        var tracked = bn.StateDict()["num_batches_tracked"];
        Assert.Equal(DType.Int64, tracked.DType);
        Assert.Equal(0, tracked.Rank);
        Assert.Equal(2, bn.Parameters().Count());
        Assert.Equal("3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True", bn.ExtraRepr());
    }

    [Fact]
    public void BatchNorm2d_TrainingUsesBatchStatisticsAndUpdatesRunningStatistics()
    {
        var bn = new BatchNorm2d(2);
        var x = Tensor.Randn([4, 2, 3, 3], new Generator(9)).Mul(3f).Add(1f);
        var y = bn.Call(x);
        var data = x.ToArray();
        var outData = y.ToArray();
        var rm = bn.RunningMean.ToArray();
        var rv = bn.RunningVar.ToArray();
        for (var c = 0; c < 2; c++)
        {
            var values = new List<double>();
            var outs = new List<double>();
            for (var n = 0; n < 4; n++)
                for (var i = 0; i < 9; i++)
                {
                    values.Add(data[(n * 2 + c) * 9 + i]);
                    outs.Add(outData[(n * 2 + c) * 9 + i]);
                }
            var mean = values.Average();
            var biased = values.Select(v => (v - mean) * (v - mean)).Sum() / values.Count;
            var unbiased = biased * values.Count / (values.Count - 1);
            for (var i = 0; i < values.Count; i++)
                Assert.Equal((values[i] - mean) / Math.Sqrt(biased + 1e-5), outs[i], 4);
            Assert.Equal(0.1 * mean, rm[c], 5);
            Assert.Equal(0.9 + 0.1 * unbiased, rv[c], 4);
        }
        Assert.Equal(1, bn.NumBatchesTracked);
        bn.Call(x);
        Assert.Equal(2, bn.NumBatchesTracked);
    }

    [Fact]
    public void BatchNorm2d_EvalUsesRunningStatisticsAndDoesNotCount()
    {
        var bn = new BatchNorm2d(2);
        using (NoGrad())
        {
            bn.RunningMean.CopyFrom(Tensor.FromArray([1f, -2f], 2));
            bn.RunningVar.CopyFrom(Tensor.FromArray([4f, 0.25f], 2));
            bn.Weight.CopyFrom(Tensor.FromArray([2f, 1f], 2));
            bn.Bias.CopyFrom(Tensor.FromArray([0f, 3f], 2));
        }
        bn.Eval();
        var y = bn.Call(Tensor.FromArray([3f, 5f, -2f, -1f], 1, 2, 2, 1)).ToArray();
        // Channel 0: (x - 1) / 2 * 2; channel 1: (x + 2) / 0.5 + 3 (eps 1e-5 ignored to 1e-4).
        Assert.Equal(2f, y[0], 3);
        Assert.Equal(4f, y[1], 3);
        Assert.Equal(3f, y[2], 3);
        Assert.Equal(5f, y[3], 3);
        Assert.Equal(0, bn.NumBatchesTracked);
        Assert.Equal([1f, -2f], bn.RunningMean.ToArray());
    }

    [Fact]
    public void BatchNorm2d_CumulativeAverageWhenMomentumIsNull()
    {
        var bn = new BatchNorm2d(1, momentum: null);
        bn.Call(Tensor.FromArray([1f, 3f], 2, 1, 1, 1));
        bn.Call(Tensor.FromArray([5f, 7f], 2, 1, 1, 1));
        // Means 2 and 6: the cumulative average is 4 (momentum 1 then 1/2).
        Assert.Equal(4f, bn.RunningMean.ToArray()[0], 5);
        Assert.Equal("1, eps=1e-05, momentum=None, affine=True, track_running_stats=True", bn.ExtraRepr());
    }

    /// <summary>
    /// The layer keeps its own copy of the counter (a GPU read would wait for the device each step); a counter loaded
    /// from a state dict or written in place by other code is what the next step counts from.
    /// </summary>
    [Fact]
    public void BatchNorm2d_CountsOnFromALoadedOrOverwrittenCounter()
    {
        var bn = new BatchNorm2d(1, momentum: null);
        var x = Tensor.FromArray([1f, 3f], 2, 1, 1, 1);
        bn.Call(x);
        Assert.Equal(1, bn.NumBatchesTracked);
        var state = bn.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.Clone());
        state["num_batches_tracked"] = Tensor.FromArray([7L]).Reshape();
        bn.LoadStateDict(state);
        Assert.Equal(7, bn.NumBatchesTracked);
        bn.Call(x);
        Assert.Equal(8, bn.NumBatchesTracked);
        Assert.Equal([8L], bn.StateDict()["num_batches_tracked"].ToInt64Array());
        using (NoGrad()) bn.StateDict()["num_batches_tracked"].FillInPlace(3);
        Assert.Equal(3, bn.NumBatchesTracked);
        // Momentum 1/4 now: the running mean moves a quarter of the way to the batch mean 2.
        var before = bn.RunningMean.ToArray()[0];
        bn.Call(x);
        Assert.Equal(4, bn.NumBatchesTracked);
        Assert.Equal(before + (2 - before) / 4, bn.RunningMean.ToArray()[0], 5);
        bn.ResetRunningStats();
        Assert.Equal(0, bn.NumBatchesTracked);
    }

    [Fact]
    public void Activations_MatchTheirFormulas()
    {
        float[] v = [-4f, -1f, 0f, 0.5f, 2f, 7f];
        var x = Tensor.FromArray(v, 6);
        AssertClose(v.Select(a => Math.Max(a, 0f)).ToArray(), new ReLU().Call(x).ToArray());
        AssertClose(v.Select(a => Math.Clamp(a, 0f, 6f)).ToArray(), new ReLU6().Call(x).ToArray());
        AssertClose(v.Select(a => a * Math.Clamp(a + 3f, 0f, 6f) / 6f).ToArray(), new Hardswish().Call(x).ToArray());
        AssertClose(v.Select(a => (float)(1 / (1 + Math.Exp(-a)))).ToArray(), new Sigmoid().Call(x).ToArray());
        AssertClose(v.Select(a => (float)Math.Tanh(a)).ToArray(), new Tanh().Call(x).ToArray());
        Assert.Equal("ReLU()", new ReLU().ToString());
    }

    [Fact]
    public void MaxPool2d_TakesTheLargestValueOfEachWindow()
    {
        var x = Tensor.FromArray(Enumerable.Range(0, 16).Select(i => (float)((i * 7) % 16)).ToArray(), 1, 1, 4, 4);
        var pool = new MaxPool2d(2);
        // Values (i*7)%16 row by row: [0 7 14 5 / 12 3 10 1 / 8 15 6 13 / 4 11 2 9].
        Assert.Equal([12f, 14, 15, 13], pool.Call(x).ToArray());
        Assert.Equal("kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False", pool.ExtraRepr());
        var tall = new MaxPool2d((2, 1));
        Assert.Equal([1, 1, 2, 4], tall.Call(x).ShapeArray());
        Assert.Equal([12f, 7, 14, 5, 8, 15, 6, 13], tall.Call(x).ToArray());
        Assert.Equal("kernel_size=(2, 1), stride=(2, 1), padding=0, dilation=1, ceil_mode=False", tall.ExtraRepr());
    }

    [Fact]
    public void AvgPool2d_AndAdaptiveAvgPool2d_Average()
    {
        var x = Tensor.FromArray(Enumerable.Range(0, 16).Select(i => (float)i).ToArray(), 1, 1, 4, 4);
        AssertClose([2.5f, 4.5f, 10.5f, 12.5f], new AvgPool2d(2).Call(x).ToArray());
        AssertClose([7.5f], new AdaptiveAvgPool2d(1).Call(x).ToArray());
        Assert.Equal([1, 1, 1, 1], new AdaptiveAvgPool2d((1, 1)).Call(x).ShapeArray());
        Assert.Equal("output_size=(1, 1)", new AdaptiveAvgPool2d((1, 1)).ExtraRepr());
        Assert.Equal("kernel_size=2, stride=2, padding=0", new AvgPool2d(2).ExtraRepr());
    }

    [Fact]
    public void Dropout_IsIdentityInEvalAndScalesSurvivorsInTraining()
    {
        var dropout = new Dropout(0.25, new Generator(4));
        var x = Tensor.Ones([10000]);
        var y = dropout.Call(x).ToArray();
        Assert.All(y, v => Assert.True(v == 0f || Math.Abs(v - 1 / 0.75f) < 1e-6f, $"unexpected value {v}"));
        var dropped = y.Count(v => v == 0f) / 10000.0;
        Assert.InRange(dropped, 0.22, 0.28);
        dropout.Eval();
        Assert.Same(x, dropout.Call(x));
        Assert.Equal("p=0.25, inplace=False", dropout.ExtraRepr());
    }

    [Fact]
    public void Flatten_AndIdentity()
    {
        var x = Tensor.Zeros([2, 3, 4, 5]);
        Assert.Equal([2, 60], new Flatten().Call(x).ShapeArray());
        Assert.Equal([2, 12, 5], new Flatten(1, 2).Call(x).ShapeArray());
        Assert.Equal("start_dim=1, end_dim=-1", new Flatten().ExtraRepr());
        Assert.Same(x, new Identity().Call(x));
    }

    [Fact]
    public void Sequential_NamesChildrenByIndexAndChainsThem()
    {
        var seq = new Sequential(new Linear(4, 3, generator: new Generator(1)), new ReLU());
        seq.Add(new Linear(3, 2, generator: new Generator(2)));
        Assert.Equal(3, seq.Count);
        Assert.Equal(["0", "1", "2"], seq.NamedChildren().Select(c => c.Name));
        Assert.IsType<ReLU>(seq[1]);
        Assert.IsType<Linear>(seq[-1]);
        Assert.Throws<ArgumentOutOfRangeException>(() => seq[3]);

        var x = Tensor.Randn([5, 4], new Generator(3));
        var expected = seq[2].Call(seq[0].Call(x).Relu());
        Assert.Equal(expected.ToArray(), seq.Call(x).ToArray());
    }

    [Fact]
    public void Sequential_NestedStateDictKeysFollowPyTorch()
    {
        var model = new Sequential
        {
            new Sequential(new Conv2d(1, 4, 3, bias: false), new BatchNorm2d(4), new Hardswish()),
            new AdaptiveAvgPool2d((1, 1)),
            new Flatten(),
            new Linear(4, 2),
        };
        Assert.Equal(
            ["0.0.weight", "0.1.weight", "0.1.bias", "0.1.running_mean", "0.1.running_var", "0.1.num_batches_tracked", "3.weight", "3.bias"],
            model.StateDict().Keys);
        Assert.Equal(["0.0.weight", "0.1.weight", "0.1.bias", "3.weight", "3.bias"], model.NamedParameters().Select(p => p.Name));
        Assert.Equal(4 * 9 + 4 + 4 + 4 * 2 + 2, model.ParameterCount());
        Assert.Equal(
            "Sequential(\n  (0): Sequential(\n    (0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), bias=False)\n" +
            "    (1): BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n    (2): Hardswish()\n  )\n" +
            "  (1): AdaptiveAvgPool2d(output_size=(1, 1))\n  (2): Flatten(start_dim=1, end_dim=-1)\n" +
            "  (3): Linear(in_features=4, out_features=2, bias=True)\n)",
            model.ToString());
    }

    [Fact]
    public void TrainAndEval_SwitchEveryDescendant()
    {
        var inner = new Sequential(new Dropout(0.5), new BatchNorm2d(2));
        var model = new Sequential(inner, new ReLU());
        model.Eval();
        Assert.All(model.NamedModules(), m => Assert.False(m.Module.Training));
        model.Train();
        Assert.All(model.NamedModules(), m => Assert.True(m.Module.Training));
    }

    [Fact]
    public void StateDict_RoundTripsIntoAFreshModel()
    {
        Sequential Build(ulong seed) => new(new Conv2d(2, 3, 3, generator: new Generator(seed)), new BatchNorm2d(3), new Flatten(), new Linear(12, 2, generator: new Generator(seed + 1)));
        var a = Build(1);
        a.Call(Tensor.Randn([2, 2, 4, 4], new Generator(5)));
        var b = Build(2);
        b.LoadStateDict(a.StateDict());
        foreach (var (key, t) in a.StateDict())
            Assert.Equal(t.ToArray(), b.StateDict()[key].ToArray());
        Assert.Equal(1, ((BatchNorm2d)b[1]).NumBatchesTracked);
    }

    [Fact]
    public void SharedModule_ParametersAreListedOnce()
    {
        // The same Linear used twice: PyTorch lists its parameters once, so optimizers accept the model.
        var shared = new Linear(3, 3, generator: new Generator(1));
        var model = new Sequential(shared, new ReLU(), shared);
        Assert.Equal(["0.weight", "0.bias"], model.NamedParameters().Select(p => p.Name));
        Assert.Equal(12, model.ParameterCount());
        Assert.Equal(["0.weight", "0.bias", "2.weight", "2.bias"], model.StateDict().Keys);
        _ = new NeuralCore.Optim.Adam(model.Parameters());
    }
}
