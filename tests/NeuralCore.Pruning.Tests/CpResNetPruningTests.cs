using NeuralCore.Models;
using NeuralCore.NN;

namespace NeuralCore.Pruning.Tests;

/// <summary>The oracles of domain.md section 2: CP-ResNet 32/64/128, local L1 magnitude, classifier kept.</summary>
public class CpResNetPruningTests
{
    private static CpResNet Big(ulong seed = 1) => new(CpResNetConfig.FromWidths("32 64 128"), new Generator(seed));
    private static readonly Tensor Mnist = Tensor.Zeros([1, 1, 28, 28]);

    [Theory]
    [InlineData(0.40, 19, 38, 76, 47_349)]
    [InlineData(0.35, 20, 41, 83, 54_706)]
    [InlineData(0.41, 18, 37, 75, 44_784)]
    public void SeedRatiosGiveTheKnownWidthsAndCounts(double ratio, int c0, int c1, int c2, long parameters)
    {
        foreach (var steps in new[] { 1, 2, 3, 5 })
        {
            var model = Big();
            var pruner = new Pruner(model, Mnist, new PrunerOptions { Ratio = ratio, IterativeSteps = steps });
            Assert.Equal(9, pruner.Graph.Groups.Count);
            pruner.Run();
            Assert.Equal(parameters, model.ParameterCount());
            var widths = pruner.Graph.Groups.ToDictionary(g => g.Name, g => g.Width);
            Assert.Equal(c0, widths["in_c.0"]);
            Assert.Equal(c0, widths["stage1.block1.conv1"]);
            Assert.Equal(c1, widths["stage2.block1.conv1"]);
            Assert.Equal(c2, widths["stage3.block2.conv1"]);
            Assert.Equal([10, c2, 1, 1], model.StateDict()["feed_forward.0.weight"].ShapeArray());
        }
    }

    [Fact]
    public void GroupsAreTheStageTrunksAndTheInnerConvs()
    {
        var graph = DependencyGraph.Build(Big(), Mnist);
        var names = graph.Groups.Select(g => g.Name).ToList();
        Assert.Equal(new HashSet<string> { "in_c.0", "stage1.block1.conv1", "stage1.block2.conv1", "stage2.block1.conv1", "stage2.block2.conv1",
            "stage2.block1.conv2", "stage3.block1.conv1", "stage3.block2.conv1", "stage3.block1.conv2" }, names.ToHashSet());
        var trunk1 = graph.Groups.Single(g => g.Name == "in_c.0");
        var producers = trunk1.Members.Where(m => m.Dim == 0 && m.Tensor.Rank == 4).Select(m => m.Name).ToHashSet();
        Assert.Equal(new HashSet<string> { "in_c.0.weight", "stage1.block1.conv2.weight", "stage1.block2.conv2.weight" }, producers);
        Assert.Contains(trunk1.Members, m => m.Name == "stage2.block1.shortcut.conv.weight" && m.Dim == 1);
        Assert.DoesNotContain(graph.Groups, g => g.Members.Any(m => m.Name == "feed_forward.0.weight" && m.Dim == 0));
    }

    [Fact]
    public void PrunedCheckpointReloadsWithoutTheOriginalConfigurationBitIdentically()
    {
        var model = Big();
        new Pruner(model, Mnist, new PrunerOptions { Ratio = 0.4 }).Run();
        var path = Path.Combine(Path.GetTempPath(), $"pruned-{Guid.NewGuid():N}.safetensors");
        try
        {
            IO.TensorIO.Save(model, path, model.Config.ToMetadata());
            var reloaded = CpResNet.LoadCheckpoint(path);
            var x = Tensor.Randn([3, 1, 28, 28], new Generator(5));
            model.Eval(); reloaded.Eval();
            using var _ = Autograd.Autograd.NoGrad();
            Assert.Equal(model.Call(x).ToArray(), reloaded.Call(x).ToArray());
            Assert.Equal(47_349, reloaded.ParameterCount());
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void TargetParameterBudgetFindsTheSmallestSufficientRatio()
    {
        var pruner = new Pruner(Big(), Mnist, new PrunerOptions { Ratio = 0.5 });
        var ratio = pruner.FindRatioForParameters(59_804)!.Value;
        var plan = pruner.Plan(ratio);
        Assert.True(pruner.CountParameters(plan) <= 59_804);
        Assert.True(pruner.CountParameters(pruner.Plan(ratio - 1e-4)) > 59_804);
    }
}
