using NeuralCore.NN;
using NeuralCore.Optim;
using static NeuralCore.Pruning.Tests.TestNets;

namespace NeuralCore.Pruning.Tests;

public class DependencyGraphTests
{
    private static Tensor Input(int c = 2, int size = 8) => Tensor.Randn([2, c, size, size], new Generator(7));

    [Fact]
    public void ChainCouplesConvBatchNormAndConsumer()
    {
        var g = new Generator(1);
        var model = new Sequential(new ConvBnRelu(2, 6, 3, 1, g), new ConvBnRelu(6, 4, 3, 1, g), new Flatten(), new Linear(4 * 8 * 8, 3, generator: g));
        var graph = DependencyGraph.Build(model, Input());
        Assert.Equal(2, graph.Groups.Count);
        var first = graph.Groups[0];
        Assert.Equal("0.conv", first.Name);
        Assert.Equal(6, first.Width);
        var names = first.Members.Select(m => $"{m.Name}:{m.Dim}").ToHashSet();
        Assert.Equal(new HashSet<string> { "0.conv.weight:0", "0.bn.weight:0", "0.bn.bias:0", "0.bn.running_mean:0", "0.bn.running_var:0", "1.conv.weight:1" }, names);
        // Flatten: each of the 4 channels owns its 64 features of the linear layer's input.
        var second = graph.Groups[1];
        Assert.Equal(4, second.Width);
        var linIn = second.Members.Select((m, i) => (m, i)).Single(p => p.m.Name == "3.weight").i;
        Assert.All(second.Units, u => Assert.Equal(64, u.Indices[linIn].Count));
        Assert.Equal(Enumerable.Range(64, 64), second.Units[1].Indices[linIn]);
    }

    [Fact]
    public void ResidualAddCouplesEveryProducer()
    {
        var model = new Sequential(new ConvBnRelu(2, 5, 3, 1, new Generator(2)), new Residual(5, 5, new Generator(3)), new Residual(5, 5, new Generator(4)),
            new Conv2d(5, 3, 1));
        var graph = DependencyGraph.Build(model, Input());
        var trunk = graph.Groups.Single(g => g.Members.Any(m => m.Name == "0.conv.weight"));
        var producers = trunk.Members.Where(m => m.Dim == 0 && m.Tensor.Rank == 4).Select(m => m.Name).ToHashSet();
        Assert.Equal(new HashSet<string> { "0.conv.weight", "1.b.weight", "2.b.weight" }, producers);
        // The inner convs of each residual are groups of their own.
        Assert.Contains(graph.Groups, g => g.Name == "1.a.conv");
        Assert.Contains(graph.Groups, g => g.Name == "2.a.conv");
        Assert.Equal(3, graph.Groups.Count);
    }

    [Fact]
    public void ConcatMakesOneGroupOfBothBranches()
    {
        var g = new Generator(5);
        var model = new Sequential(new Branches(2, 3, 4, g), new Conv2d(7, 2, 1));
        var graph = DependencyGraph.Build(model, Input());
        var joined = graph.Groups.Single(gr => gr.Members.Any(m => m.Name == "1.weight"));
        Assert.Equal(7, joined.Width);
        Assert.Contains(joined.Members, m => m.Name == "0.a.conv.weight");
        Assert.Contains(joined.Members, m => m.Name == "0.b.conv.weight");
    }

    [Fact]
    public void OutputLayerAndIgnoredLayersAreNotPruned()
    {
        var g = new Generator(6);
        var model = new Sequential(new ConvBnRelu(2, 6, 3, 1, g), new ConvBnRelu(6, 4, 3, 1, g), new Conv2d(4, 3, 1));
        var graph = DependencyGraph.Build(model, Input());
        Assert.DoesNotContain(graph.Groups, gr => gr.Name == "2");
        // The convolution, its batch norm or the block holding both keeps that group whole (Torch-Pruning's rule: a group
        // with an ignored module among those whose output channels it cuts is not pruned).
        foreach (var name in new[] { "1.conv", "1.bn", "1" })
        {
            var ignored = DependencyGraph.Build(model, Input(), [name]);
            Assert.Equal("0.conv", Assert.Single(ignored.Groups).Name);
        }
        // The classifier, whose outputs are never pruned, may be named too.
        Assert.Equal(2, DependencyGraph.Build(model, Input(), ["2"]).Groups.Count);
        var ex = Assert.Throws<ArgumentException>(() => DependencyGraph.Build(model, Input(), ["nope"]));
        Assert.Contains("nope", ex.Message);
        var withActivation = new Sequential(new Conv2d(2, 6, 3, padding: 1), new ReLU(), new Conv2d(6, 3, 1));
        var noWeights = Assert.Throws<ArgumentException>(() => DependencyGraph.Build(withActivation, Input(), ["1"]));
        Assert.Contains("'1' holds no weights", noWeights.Message);
    }

    /// <summary>A module with two producing weights of its own: its groups are named after the weights, and prune as any.</summary>
    [Fact]
    public void GroupsOfOneModuleAreNamedAfterTheirWeights()
    {
        var model = new Sequential(new ThreeWeights(new Generator(4)), new Conv2d(5, 3, 1));
        var pruner = new Pruner(model, Input(), new PrunerOptions { Ratio = 0.5 });
        Assert.Equal(["0.w1", "0.w2", "0.w3"], pruner.Graph.Groups.Select(g => g.Name));
        pruner.Run();
        Assert.Equal([3, 2, 2], pruner.Graph.Groups.Select(g => g.Width));
        Assert.Equal([2, 3, 8, 8], model.Call(Input()).ShapeArray());
    }

    private sealed class ThreeWeights : Module
    {
        private readonly Parameter _w1, _w2, _w3;

        public ThreeWeights(Generator g)
        {
            _w1 = RegisterParameter("w1", new Parameter(Tensor.Randn([6, 2, 1, 1], g)))!;
            _w2 = RegisterParameter("w2", new Parameter(Tensor.Randn([4, 6, 1, 1], g)))!;
            _w3 = RegisterParameter("w3", new Parameter(Tensor.Randn([5, 4, 1, 1], g)))!;
        }

        public override Tensor Forward(Tensor x) => Functional.Conv2d(Functional.Conv2d(Functional.Conv2d(x, _w1), _w2), _w3);
    }

    [Fact]
    public void DescribeListsGroupsWithWidths()
    {
        var model = new Sequential(new ConvBnRelu(2, 6, 3, 1, new Generator(1)), new Conv2d(6, 3, 1));
        var text = DependencyGraph.Build(model, Input()).Describe();
        Assert.Contains("group 0: 0.conv  width 6", text);
        Assert.Contains("1.weight[dim 1]", text);
    }
}

public class PrunerTests
{
    private static Tensor Input(int seed = 11) => Tensor.Randn([3, 2, 8, 8], new Generator((ulong)seed));

    private static Tensor Logits(Module m, Tensor x)
    {
        m.Eval();
        using var _ = Autograd.Autograd.NoGrad();
        return m.Call(x);
    }

    /// <summary>Zeroes every parameter slice of the channels <paramref name="plan"/> removes, so they contribute nothing.</summary>
    private static void ZeroPlannedChannels(PruningPlan plan)
    {
        using var _ = Autograd.Autograd.NoGrad();
        foreach (var ((tensor, dim), indices) in plan.RemovedIndices())
        {
            if (tensor is not Parameter) continue;
            foreach (var i in indices) tensor.Detach().Narrow(dim, i, 1).ZeroInPlace();
        }
    }

    private static void RandomiseBatchNorms(Module model, int seed)
    {
        var g = new Generator((ulong)seed);
        using var _ = Autograd.Autograd.NoGrad();
        foreach (var (_, m) in model.NamedModules())
            if (m is BatchNorm2d bn)
            {
                bn.Weight.Detach().CopyFrom(Tensor.Uniform(bn.Weight.ShapeArray(), 0.5f, 1.5f, g));
                bn.Bias.Detach().CopyFrom(Tensor.Uniform(bn.Bias.ShapeArray(), -0.5f, 0.5f, g));
                bn.RunningMean.Detach().CopyFrom(Tensor.Uniform(bn.RunningMean.ShapeArray(), -0.2f, 0.2f, g));
                bn.RunningVar.Detach().CopyFrom(Tensor.Uniform(bn.RunningVar.ShapeArray(), 0.5f, 1.5f, g));
            }
    }

    public static TheoryData<int> Seeds() => new(Enumerable.Range(1, 24));

    [Theory]
    [MemberData(nameof(Seeds))]
    public void RemovingChannelsThatContributeNothingKeepsTheLogits(int seed)
    {
        var model = new RandomNet(seed);
        RandomiseBatchNorms(model, seed);
        var x = Input(seed);
        var pruner = new Pruner(model, x, new PrunerOptions { Ratio = 0.3 + 0.05 * (seed % 5) });
        ZeroPlannedChannels(pruner.Plan(pruner.RatioAt(1)));
        var before = Logits(model, x).ToArray();
        var paramsBefore = model.ParameterCount();
        var result = pruner.Step();
        var after = Logits(model, x).ToArray();
        Assert.True(result.ParametersAfter < paramsBefore, $"nothing was pruned in {model.Description}");
        Assert.Equal(result.ParametersAfter, model.ParameterCount());
        for (var i = 0; i < before.Length; i++)
            Assert.True(Math.Abs(before[i] - after[i]) <= 1e-4f * (1 + Math.Abs(before[i])), $"{model.Description}: logit {i} {before[i]} vs {after[i]}");
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void PrunedRandomNetworksTrainAndCountTheirParameters(int seed)
    {
        var model = new RandomNet(seed);
        var x = Input(seed);
        var opt = new Adam(model.Parameters(), lr: 1e-2);
        var targets = Tensor.FromArray(new long[] { 0, 1, 2 });
        Functional.CrossEntropy(model.Call(x), targets).Backward();
        opt.Step();
        var pruner = new Pruner(model, x, new PrunerOptions { Ratio = 0.5, IterativeSteps = 2, Global = seed % 3 == 0 });
        while (pruner.CurrentStep < 2)
            Assert.Equal(pruner.Step(opt).ParametersAfter, model.ParameterCount());
        // Forward, backward and an optimizer step (with sliced Adam moments) all run on the smaller model.
        opt.ZeroGrad();
        var y = model.Call(x);
        Assert.Equal([3, 5], y.ShapeArray());
        Functional.CrossEntropy(y, targets).Backward();
        foreach (var p in model.Parameters()) Assert.Equal(p.ShapeArray(), p.Grad!.ShapeArray());
        foreach (var (p, state) in opt.State)
            foreach (var t in state.Values.Where(t => t.Rank > 0)) Assert.Equal(p.ShapeArray(), t.ShapeArray());
        opt.Step();
    }

    [Fact]
    public void SameFinalWidthsForAnyNumberOfIterativeSteps()
    {
        int[]? expected = null;
        foreach (var steps in new[] { 1, 2, 3, 5 })
        {
            var model = new RandomNet(3);
            var pruner = new Pruner(model, Input(), new PrunerOptions { Ratio = 0.45, IterativeSteps = steps });
            pruner.Run();
            var widths = pruner.Graph.Groups.Select(g => g.Width).ToArray();
            expected ??= widths;
            Assert.Equal(expected, widths);
        }
    }

    [Fact]
    public void KeptWidthIsFloorOfInitialTimesOneMinusRatio()
    {
        var g = new Generator(1);
        var model = new Sequential(new ConvBnRelu(2, 32, 3, 1, g), new ConvBnRelu(32, 64, 3, 1, g), new ConvBnRelu(64, 128, 1, 1, g), new Conv2d(128, 10, 1));
        var pruner = new Pruner(model, Input(), new PrunerOptions { Ratio = 0.4 });
        pruner.Step();
        Assert.Equal(new[] { 19, 38, 76 }, pruner.Graph.Groups.Select(gr => gr.Width));
    }

    [Fact]
    public void RoundToMaxRatioAndLayerRatios()
    {
        var g = new Generator(1);
        Sequential Build() => new(new ConvBnRelu(2, 32, 3, 1, new Generator(1)), new ConvBnRelu(32, 64, 3, 1, new Generator(2)), new Conv2d(64, 10, 1));
        var rounded = new Pruner(Build(), Input(), new PrunerOptions { Ratio = 0.4, RoundTo = 8 });
        rounded.Step();
        Assert.Equal(new[] { 16, 32 }, rounded.Graph.Groups.Select(gr => gr.Width));
        var capped = new Pruner(Build(), Input(), new PrunerOptions { Ratio = 0.6, MaxRatio = 0.25 });
        capped.Step();
        Assert.Equal(new[] { 24, 48 }, capped.Graph.Groups.Select(gr => gr.Width));
        var perLayer = new Pruner(Build(), Input(), new PrunerOptions { Ratio = 0.5, LayerRatios = new Dictionary<string, double> { ["1.conv"] = 0.25 } });
        perLayer.Step();
        Assert.Equal(new[] { 16, 48 }, perLayer.Graph.Groups.Select(gr => gr.Width));
    }

    [Fact]
    public void MagnitudeRemovesTheSmallestChannels()
    {
        var model = new Sequential(new Conv2d(2, 4, 1, bias: false), new Conv2d(4, 3, 1, bias: false));
        using (Autograd.Autograd.NoGrad())
        {
            var w0 = (Conv2d)model[0];
            w0.Weight.Detach().CopyFrom(Tensor.FromArray([1f, 1, 0.1f, 0.1f, 3, 3, 0.5f, 0.5f], 4, 2, 1, 1));
            ((Conv2d)model[1]).Weight.Detach().FillInPlace(0.01);
        }
        var pruner = new Pruner(model, Input(), new PrunerOptions { Ratio = 0.5 });
        var plan = pruner.Plan(0.5);
        Assert.Equal(new[] { 1, 3 }, plan.Removals.Single().Value);
        pruner.Step();
        Assert.Equal(new[] { 1f, 1, 3, 3 }, ((Conv2d)model[0]).Weight.ToArray());
    }

    /// <summary>The last of K steps prunes to the ratio itself, so K steps keep what one step keeps (0.2 * 3 / 3 is not 0.2 in floating point).</summary>
    [Theory]
    [InlineData(0.2, 3)]
    [InlineData(0.7, 3)]
    [InlineData(0.4, 2)]
    public void IterativeStepsEndAtTheRatioItself(double ratio, int steps)
    {
        Sequential Model() => new(new Conv2d(2, 40, 1, bias: false), new BatchNorm2d(40), new Conv2d(40, 3, 1, bias: false));
        var oneStep = new Pruner(Model(), Input(), new PrunerOptions { Ratio = ratio });
        oneStep.Run();
        var iterative = new Pruner(Model(), Input(), new PrunerOptions { Ratio = ratio, IterativeSteps = steps });
        var results = iterative.Run();
        Assert.Equal(ratio, results[^1].Ratio);
        Assert.Equal((int)(40 * (1 - ratio)), oneStep.Graph.Groups.Single().Width);
        Assert.Equal(oneStep.Graph.Groups.Single().Width, iterative.Graph.Groups.Single().Width);
    }

    [Fact]
    public void GlobalPruningRanksAcrossGroups()
    {
        // The first group's channels (conv 0's outputs, conv 1's inputs) weigh 2 x 1 + 4 x 0.01 each, the second's
        // (conv 1's outputs, conv 2's inputs) 4 x 0.01 + 3 x 0.01: ranked together, the second group's go first, down
        // to the one channel a group keeps, then the first's; each group pruned alone would lose half its width.
        Sequential Model()
        {
            var model = new Sequential(new Conv2d(2, 4, 1, bias: false), new Conv2d(4, 4, 1, bias: false), new Conv2d(4, 3, 1, bias: false));
            using (Autograd.Autograd.NoGrad())
            {
                ((Conv2d)model[0]).Weight.Detach().FillInPlace(1.0);
                ((Conv2d)model[1]).Weight.Detach().FillInPlace(0.01);
                ((Conv2d)model[2]).Weight.Detach().FillInPlace(0.01);
            }
            return model;
        }
        var importance = new Importance { Normalizer = ImportanceNormalizer.None };
        var global = new Pruner(Model(), Input(), new PrunerOptions { Ratio = 0.5, Global = true, Importance = importance });
        var plan = global.Plan(0.5);
        var groups = global.Graph.Groups.ToArray();
        Assert.Equal(2, groups.Length);
        Assert.Equal(new[] { 0 }, plan.Removals[groups[0]]);
        Assert.Equal(new[] { 0, 1, 2 }, plan.Removals[groups[1]]);
        var local = new Pruner(Model(), Input(), new PrunerOptions { Ratio = 0.5, Importance = importance }).Plan(0.5);
        Assert.All(local.Removals.Values, removed => Assert.Equal(2, removed.Count));
    }

    [Fact]
    public void FindsTheSmallestRatioForAParameterBudget()
    {
        var g = new Generator(1);
        var model = new Sequential(new ConvBnRelu(2, 32, 3, 1, g), new ConvBnRelu(32, 64, 3, 1, g), new Conv2d(64, 10, 1));
        var pruner = new Pruner(model, Input(), new PrunerOptions { Ratio = 0.5 });
        var budget = model.ParameterCount() / 2;
        var ratio = pruner.FindRatioForParameters(budget)!.Value;
        Assert.True(pruner.CountParameters(pruner.Plan(ratio)) <= budget);
        Assert.True(pruner.CountParameters(pruner.Plan(ratio - 2e-4)) > budget);
        Assert.Null(pruner.FindRatioForParameters(10));
    }

    /// <summary>
    /// With a per-layer ratio the search keeps that group's own ratio whatever ratio it tries, so a run at the ratio it
    /// finds (in one step or several) lands on the count it predicted; a name that is no group is refused.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void ABudgetSearchKeepsPerLayerRatiosFixed(int steps)
    {
        var layerRatios = new Dictionary<string, double> { ["1.conv"] = 0.5 };
        Sequential Model() => new(new ConvBnRelu(2, 32, 3, 1, new Generator(2)), new ConvBnRelu(32, 64, 3, 1, new Generator(3)), new Conv2d(64, 10, 1));
        var model = Model();
        var budget = model.ParameterCount() * 2 / 5;
        var probe = new Pruner(model, Input(), new PrunerOptions { Ratio = 0.2, LayerRatios = layerRatios });
        var ratio = probe.FindRatioForParameters(budget)!.Value;
        var run = new Pruner(model, Input(), new PrunerOptions { Ratio = ratio, IterativeSteps = steps, LayerRatios = layerRatios });
        run.Run();
        Assert.InRange(model.ParameterCount(), budget * 9 / 10, budget);
        Assert.Equal((int)(64 * (1 - 0.5)), run.Graph.Groups.Single(gr => gr.Name == "1.conv").Width);
        var error = Assert.Throws<ArgumentException>(() => new Pruner(Model(), Input(),
            new PrunerOptions { Ratio = 0.2, LayerRatios = new Dictionary<string, double> { ["1.bn"] = 0.5 } }));
        Assert.Contains("'1.bn', which is no group", error.Message);
    }

    [Fact]
    public void CriteriaScoreAsDocumented()
    {
        var model = new Sequential(new ConvBnRelu(2, 4, 1, 1, new Generator(1)), new Conv2d(4, 3, 1));
        var graph = DependencyGraph.Build(model, Input());
        var group = graph.Groups.Single();
        using (Autograd.Autograd.NoGrad())
            ((ConvBnRelu)model[0]).Bn.Weight.Detach().CopyFrom(Tensor.FromArray([0.5f, -2f, 1f, 0.25f], 4));
        var bn = new Importance { Criterion = ImportanceCriterion.BnScale, Normalizer = ImportanceNormalizer.None }.Score(group);
        Assert.Equal(new[] { 0.5, 2, 1, 0.25 }, bn);
        var l1 = new Importance { Normalizer = ImportanceNormalizer.None, Reduction = GroupReduction.Sum }.Score(group);
        var w0 = ((ConvBnRelu)model[0]).Conv.Weight.ToArray();
        var w1 = ((Conv2d)model[1]).Weight.ToArray();
        var expected0 = Math.Abs(w0[0]) + Math.Abs(w0[1]) + 0.5 + Math.Abs(w1[0]) + Math.Abs(w1[4]) + Math.Abs(w1[8]);
        Assert.Equal(expected0, l1[0], 5);
        var lamp = new Importance { Criterion = ImportanceCriterion.Lamp, Normalizer = ImportanceNormalizer.None }.Score(group);
        Assert.Equal(1.0, lamp.Max(), 6);
        // LAMP is its own normaliser: the default (mean) does not rescale it.
        Assert.Equal(lamp, new Importance { Criterion = ImportanceCriterion.Lamp }.Score(group));
        var normalized = Importance.Normalize([1, 2, 3], ImportanceNormalizer.Standardization);
        Assert.Equal(new[] { 0, 0.5, 1 }, normalized.Select(v => Math.Round(v, 6)));
        Assert.Throws<InvalidOperationException>(() => new Importance { Criterion = ImportanceCriterion.Taylor }.Score(group));
    }

    [Fact]
    public void SparseTrainingPenaltiesPushChannelsDown()
    {
        var model = new Sequential(new ConvBnRelu(2, 4, 1, 1, new Generator(1)), new Conv2d(4, 3, 1));
        var graph = DependencyGraph.Build(model, Input());
        foreach (var p in model.Parameters()) p.Grad = Tensor.ZerosLike(p);
        new BnScaleRegularizer(graph, 0.1f).Apply();
        Assert.Equal(new[] { 0.1f, 0.1f, 0.1f, 0.1f }, ((ConvBnRelu)model[0]).Bn.Weight.Grad!.ToArray());
        foreach (var p in model.Parameters()) p.Grad = Tensor.ZerosLike(p);
        new GroupLassoRegularizer(graph, 1f).Apply();
        var w = ((ConvBnRelu)model[0]).Conv.Weight;
        var g = w.Grad!.ToArray();
        var d = w.ToArray();
        for (var i = 0; i < g.Length; i++) Assert.True(Math.Sign(g[i]) == Math.Sign(d[i]) || d[i] == 0);
    }
}
