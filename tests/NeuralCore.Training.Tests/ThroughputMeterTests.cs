using NeuralCore.Models;
using NeuralCore.NN;
using NeuralCore.Training.Reporting;

namespace NeuralCore.Training.Tests;

/// <summary>
/// <see cref="ThroughputMeter"/>: CPU models run through the compiled inference plan, models the plan cannot compile
/// run eagerly, each result says which, and the models' training flags come back.
/// </summary>
public sealed class ThroughputMeterTests
{
    private sealed class WithSoftmax : Module
    {
        private readonly Conv2d _conv;

        public WithSoftmax(Generator g) => _conv = RegisterModule("conv", new Conv2d(1, 3, 3, generator: g));

        public override Tensor Forward(Tensor x) => Functional.Softmax(_conv.Call(x).Flatten(1));
    }

    [Fact]
    public void CompiledPlanWhereItCompilesEagerElsewhere()
    {
        var g = new Generator(4);
        var net = new CpResNet(CpResNetConfig.FromWidths("4 8 8"), g);
        var other = new WithSoftmax(g);
        other.Eval();
        var results = ThroughputMeter.MeasureAll([(net, [1, 28, 28]), (other, [1, 8, 8])], batchSize: 3, runs1: 3, runsN: 3, warmup: 0);

        Assert.Equal("plan", results[0].Engine);
        Assert.Equal("eager", results[1].Engine);
        Assert.All(results, r =>
        {
            Assert.True(r.Batch1Milliseconds > 0 && r.BatchNMilliseconds > 0, $"{r.Batch1Milliseconds} / {r.BatchNMilliseconds} ms");
            Assert.Equal(3, r.BatchSize);
            Assert.Equal("cpu", r.Device, StringComparer.OrdinalIgnoreCase);
        });
        Assert.True(net.Training, "the model's training flag must be restored");
        Assert.False(other.Training);
    }
}
