using NeuralCore.IO;
using NeuralCore.NN;

namespace NeuralCore.Models.Tests;

public sealed class CpResNetTests
{
    private static CpResNet Build(string widths, ulong seed = 1) => new(CpResNetConfig.FromWidths(widths), new Generator(seed));

    [Theory]
    [InlineData("24 48 72", 59_804)]
    [InlineData("32 64 128", 131_316)]
    [InlineData("32 32 32", 47_028)]
    [InlineData("19 38 76", 47_349)]
    [InlineData("20 41 83", 54_706)]
    [InlineData("18 37 75", 44_784)]
    public void ParameterCount_MatchesTheSeed(string widths, long expected) =>
        Assert.Equal(expected, Build(widths).ParameterCount());

    [Theory]
    [InlineData("24 48 72", 745_080, 16_861_608)]
    [InlineData("32 64 128", 1_433_120, 33_453_792)]
    [InlineData("32 32 32", 935_840, 19_529_952)]
    [InlineData("19 38 76", 539_695, 12_441_333)]
    [InlineData("20 41 83", 607_376, 14_091_228)]
    [InlineData("18 37 75", 501_318, 11_601_486)]
    public void ConvMacs_MatchTheTable(string widths, long mnist, long mel)
    {
        var model = Build(widths);
        Assert.Equal(mnist, ModelSummary.Summarize(model, [1, 28, 28]).ConvMacs);
        Assert.Equal(mel, ModelSummary.Summarize(model, [1, 128, 100]).ConvMacs);
    }

    [Fact]
    public void Summary_TotalMacsAddBatchNormToTheConvolutions()
    {
        var model = Build("24 48 72");
        var summary = ModelSummary.Summarize(model, [1, 28, 28]);
        // torchinfo: each BN(C) costs 2C per sample; CP-ResNet has no conv biases and no linear layer.
        long bnParameters = model.NamedModules().Select(m => m.Module).OfType<BatchNorm2d>().Sum(b => 2L * b.NumFeatures);
        Assert.Equal(summary.ConvMacs + bnParameters, summary.TotalMacs);
        Assert.Equal(59_804, summary.TotalParameters);
        Assert.Equal([1, 10], summary.OutputShape!);
        Assert.Equal([1, 72, 1, 6], summary.Layers.Single(l => l.Name == "stage3.block2").OutputShape!);
        Assert.Equal([1, 24, 13, 13], summary.Layers.Single(l => l.Name == "in_c.0").OutputShape!);
        Assert.Equal(600L * 13 * 13, summary.Layers.Single(l => l.Name == "in_c.0").ConvMacs);
    }

    [Fact]
    public void StateDict_HasTheSeedsKeysInOrder()
    {
        var keys = Build("24 48 72").StateDict().Keys.ToList();
        string[] bn(string p) => [p + ".weight", p + ".bias", p + ".running_mean", p + ".running_var", p + ".num_batches_tracked"];
        string[] block(string p, bool shortcut) =>
            [p + ".conv1.weight", .. bn(p + ".bn1"), p + ".conv2.weight", .. bn(p + ".bn2"),
             .. shortcut ? [p + ".shortcut.conv.weight", .. bn(p + ".shortcut.bn")] : Array.Empty<string>()];
        string[] expected =
        [
            "in_c.0.weight", .. bn("in_c.1"),
            .. block("stage1.block1", false), .. block("stage1.block2", false),
            .. block("stage2.block1", true), .. block("stage2.block2", false),
            .. block("stage3.block1", true), .. block("stage3.block2", false),
            "feed_forward.0.weight", .. bn("feed_forward.1"),
        ];
        Assert.Equal(expected, keys);
        Assert.Contains("in_c.1.num_batches_tracked", keys);
        Assert.Contains("stage2.block1.shortcut.conv.weight", keys);
        Assert.Contains("feed_forward.1.running_var", keys);
    }

    [Fact]
    public void Shapes_FollowTheDomainTable()
    {
        var model = Build("24 48 72");
        var sd = model.StateDict();
        Assert.Equal([24, 1, 5, 5], sd["in_c.0.weight"].ShapeArray());
        Assert.Equal([24, 24, 3, 3], sd["stage1.block1.conv1.weight"].ShapeArray());
        Assert.Equal([24, 24, 1, 1], sd["stage1.block1.conv2.weight"].ShapeArray());
        Assert.Equal([24, 24, 3, 3], sd["stage1.block2.conv2.weight"].ShapeArray());
        Assert.Equal([48, 24, 3, 3], sd["stage2.block1.conv1.weight"].ShapeArray());
        Assert.Equal([48, 24, 1, 1], sd["stage2.block1.shortcut.conv.weight"].ShapeArray());
        Assert.Equal([72, 48, 1, 1], sd["stage3.block1.conv1.weight"].ShapeArray());
        Assert.Equal([10, 72, 1, 1], sd["feed_forward.0.weight"].ShapeArray());
        Assert.Equal(DType.Int64, sd["in_c.1.num_batches_tracked"].DType);
        Assert.Equal("Hardswish", model.InC[2].GetType().Name);
        Assert.Equal("ReLU", new CpResNet(new CpResNetConfig { StemActivation = "relu" }).InC[2].GetType().Name);
    }

    [Theory]
    [InlineData(28, 28)]
    [InlineData(128, 100)]
    public void ForwardBackward_GiveLogitsAndAGradientForEveryParameter(int f, int t)
    {
        var model = Build("24 48 72");
        var x = Tensor.Rand([2, 1, f, t], new Generator(3));
        var logits = model.Call(x);
        Assert.Equal([2, 10], logits.ShapeArray());
        var loss = logits.Mul(Tensor.Rand([2, 10], new Generator(4))).Sum();
        loss.Backward();
        foreach (var (name, p) in model.NamedParameters())
        {
            Assert.True(p.Grad is not null, $"{name} got no gradient");
            Assert.Equal(p.ShapeArray(), p.Grad!.ShapeArray());
            Assert.All(p.Grad.ToArray(), v => Assert.True(float.IsFinite(v), $"{name} has a non-finite gradient"));
        }
        // The zero-initialised head passes no gradient back, but its own weight gets one.
        Assert.Contains(model.StateDict()["feed_forward.0.weight"].Grad!.ToArray(), v => v != 0);
    }

    /// <summary>
    /// The compiled training step gives eager autograd's loss, gradients and batch-norm statistics bit for bit on the
    /// seed's widths and a pruned model's odd ones, over two Adam steps (the head starts at zero, so the second step
    /// is the first whose gradients reach the stem).
    /// </summary>
    [Theory]
    [InlineData("24 48 72", 8, 28, 28)]
    [InlineData("19 38 76", 5, 28, 28)]
    [InlineData("32 64 128", 3, 64, 50)]
    public void TrainingPlan_MatchesEagerTrainingBitForBit(string widths, int batch, int f, int t)
    {
        var eager = Build(widths);
        var planned = Build(widths);
        var eagerOpt = new NeuralCore.Optim.Adam(eager.Parameters(), lr: 1e-3, weightDecay: 3e-3);
        var planOpt = new NeuralCore.Optim.Adam(planned.Parameters(), lr: 1e-3, weightDecay: 3e-3);
        var plan = NeuralCore.Backends.Cpu.CpuTrainingPlan.Compile(planned, [batch, 1, f, t]);
        var g = new Generator(5);
        for (int step = 0; step < 2; step++)
        {
            var x = Tensor.Rand([batch, 1, f, t], g);
            var y = Tensor.FromArray(Enumerable.Range(0, batch).Select(i => (long)((i * 3 + step) % 10)).ToArray(), batch);
            float expected;
            using (TensorScope.Enter())
            {
                eagerOpt.ZeroGrad(setToNone: false);
                var loss = Functional.CrossEntropy(eager.Call(x), y);
                loss.Backward();
                expected = loss.Item();
            }
            planOpt.ZeroGrad(setToNone: false);
            Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(plan.Step(x, y)));
            foreach (var ((name, e), (_, p)) in eager.NamedParameters().Zip(planned.NamedParameters()))
                Assert.True(e.Grad!.ToArray().SequenceEqual(p.Grad!.ToArray()), $"step {step}: the gradients of {name} differ");
            foreach (var ((name, e), (_, p)) in eager.NamedBuffers().Zip(planned.NamedBuffers()))
                Assert.True(e.DType == DType.Int64 ? e.ToInt64Array().SequenceEqual(p.ToInt64Array()) : e.ToArray().SequenceEqual(p.ToArray()),
                    $"step {step}: {name} differs");
            eagerOpt.Step();
            planOpt.Step();
        }
    }

    [Fact]
    public void Initialisation_FollowsTheSeed()
    {
        var model = Build("32 64 128", seed: 11);
        var sd = model.StateDict();
        Assert.All(sd["feed_forward.0.weight"].ToArray(), v => Assert.Equal(0f, v));
        foreach (var block in model.Blocks())
        {
            Assert.All(block.Conv2.Weight.ToArray(), v => Assert.Equal(0f, v));
            Assert.All(block.Bn1.Weight.ToArray(), v => Assert.Equal(1f, v));
            Assert.All(block.Bn2.Bias.ToArray(), v => Assert.Equal(0f, v));
        }
        // conv1 ~ N(0, L^-1/2 sqrt(2 / (k k out))), L = 6.
        AssertStd(sd["stage2.block1.conv1.weight"], Math.Sqrt(1.0 / 6) * Math.Sqrt(2.0 / (3 * 3 * 64)));
        AssertStd(sd["stage3.block2.conv1.weight"], Math.Sqrt(1.0 / 6) * Math.Sqrt(2.0 / (1 * 1 * 128)));
        // shortcut ~ N(0, sqrt(2 / out)); stem Kaiming normal fan_in relu: sqrt(2 / 25).
        AssertStd(sd["stage3.block1.shortcut.conv.weight"], Math.Sqrt(2.0 / 128));
        AssertStd(sd["in_c.0.weight"], Math.Sqrt(2.0 / 25), tolerance: 0.2);

        // The same seed gives the same weights; another seed different ones.
        Assert.Equal(sd["stage1.block1.conv1.weight"].ToArray(), Build("32 64 128", seed: 11).StateDict()["stage1.block1.conv1.weight"].ToArray());
        Assert.NotEqual(sd["stage1.block1.conv1.weight"].ToArray(), Build("32 64 128", seed: 12).StateDict()["stage1.block1.conv1.weight"].ToArray());
    }

    private static void AssertStd(Tensor t, double expected, double tolerance = 0.1)
    {
        var v = t.ToArray();
        var mean = v.Average(x => (double)x);
        var std = Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / v.Length);
        Assert.InRange(std, expected * (1 - tolerance), expected * (1 + tolerance));
        Assert.InRange(mean, -3 * expected / Math.Sqrt(v.Length) * 2, 3 * expected / Math.Sqrt(v.Length) * 2);
    }

    [Fact]
    public void SaveLoad_RoundTripsBitExact()
    {
        var model = Build("24 48 72");
        // A few training-mode steps give the BN statistics and num_batches_tracked non-default values.
        for (var i = 0; i < 2; i++) model.Call(Tensor.Rand([4, 1, 28, 28], new Generator((ulong)i)));
        model.Eval();
        var x = Tensor.Rand([3, 1, 28, 28], new Generator(9));
        var expected = model.Call(x).ToArray();

        var path = Path.Combine(Path.GetTempPath(), $"cpresnet-{Guid.NewGuid():N}.safetensors");
        try
        {
            model.Save(path, model.Config.ToMetadata());
            var loaded = CpResNet.LoadCheckpoint(path);
            Assert.Equal(model.Config, loaded.Config);
            Assert.Equal(2, ((BatchNorm2d)loaded.InC[1]).NumBatchesTracked);
            loaded.Eval();
            Assert.Equal(expected, loaded.Call(x).ToArray());
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void PrunedShapes_LoadIntoTheOriginalConfig()
    {
        // A "pruned" big model: the tensors of 19/38/76 under the config of 32/64/128.
        var big = CpResNetConfig.FromWidths("32 64 128");
        var pruned = Build("19 38 76", seed: 5);
        pruned.Eval();
        var x = Tensor.Rand([2, 1, 28, 28], new Generator(2));
        var expected = pruned.Call(x).ToArray();

        var path = Path.Combine(Path.GetTempPath(), $"cpresnet-pruned-{Guid.NewGuid():N}.safetensors");
        try
        {
            pruned.Save(path, big.ToMetadata());
            var loaded = CpResNet.LoadCheckpoint(path);
            Assert.Equal(big, loaded.Config);
            Assert.Equal(47_349, loaded.ParameterCount());
            loaded.Eval();
            Assert.Equal(expected, loaded.Call(x).ToArray());
            Assert.Equal(539_695, ModelSummary.Summarize(loaded, [1, 28, 28]).ConvMacs);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void LoadCheckpoint_WithoutConfig_SaysHowToGiveOne()
    {
        var model = Build("24 48 72");
        var path = Path.Combine(Path.GetTempPath(), $"cpresnet-plain-{Guid.NewGuid():N}.safetensors");
        try
        {
            model.Save(path);
            var error = Assert.Throws<InvalidDataException>(() => CpResNet.LoadCheckpoint(path));
            Assert.Contains("--model cpresnet --channel-width", error.Message);
            Assert.Contains(path, error.Message);
            var loaded = CpResNet.LoadCheckpoint(path, CpResNetConfig.FromWidths("24 48 72"));
            Assert.Equal(model.StateDict()["stage1.block1.conv1.weight"].ToArray(), loaded.StateDict()["stage1.block1.conv1.weight"].ToArray());
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void FromStateDict_TakesPyTorchStyleDictionaries()
    {
        var source = Build("24 48 72", seed: 8);
        // As a Lightning checkpoint holds them: prefixed keys, plus state of other modules.
        var state = source.StateDict().ToDictionary(kv => "model." + kv.Key, kv => kv.Value.Detach().Clone());
        state["model.stage1.block1.bn1.num_batches_tracked"] = Tensor.FromArray(new long[] { 7 }, []);
        state["mel.window"] = Tensor.Ones([800]);
        var loaded = CpResNet.FromStateDict(state, CpResNetConfig.FromWidths("24 48 72"));
        Assert.Equal(source.StateDict()["stage3.block1.conv1.weight"].ToArray(), loaded.StateDict()["stage3.block1.conv1.weight"].ToArray());
        Assert.Equal(7, loaded.Blocks().First().Bn1.NumBatchesTracked);

        var missing = source.StateDict().Where(kv => kv.Key != "in_c.0.weight").ToDictionary();
        Assert.Throws<KeyNotFoundException>(() => CpResNet.FromStateDict(missing, CpResNetConfig.FromWidths("24 48 72")));
    }

    [Fact]
    public void Training_ReducesTheLossOnAFixedBatch()
    {
        var model = Build("8 16 16", seed: 3);
        var gen = new Generator(21);
        var x = Tensor.Rand([16, 1, 28, 28], gen);
        var targets = Tensor.FromArray(Enumerable.Range(0, 16).Select(i => (long)(i % 4)).ToArray(), 16);
        var optimizer = new NeuralCore.Optim.Adam(model.Parameters(), lr: 0.01);
        float first = 0, last = 0;
        for (var step = 0; step < 15; step++)
        {
            model.ZeroGrad();
            var loss = Functional.CrossEntropy(model.Call(x), targets);
            if (step == 0) first = loss.Item();
            last = loss.Item();
            loss.Backward();
            optimizer.Step();
        }
        Assert.True(last < first * 0.7, $"loss went from {first} to {last}");
    }
}
