using NeuralCore.Autograd;
using NeuralCore.NN;

// NOTE: namespace NeuralCore.Tests (see AutogradTests.cs).
namespace NeuralCore.Tests;

public class OpProfilerTests
{
    [Fact]
    public void ChargesEachRecordedOpInBothPassesUnderItsModule()
    {
        var conv = new Conv2d(1, 2, 3, padding: 1);
        var x = Tensor.Rand([2, 1, 5, 5], new Generator(3));
        var names = new Dictionary<Module, string>(ReferenceEqualityComparer.Instance) { [conv] = "stem" };
        IReadOnlyList<(string Op, double Milliseconds)> totals;
        using (var profiler = OpProfiler.Start())
        {
            profiler.Mark();
            conv.Call(x).Square().Sum().Backward();
            totals = profiler.Totals(names);
        }
        var ops = totals.Select(t => t.Op).ToList();
        Assert.Contains("forward Conv2d stem [2, 2, 5, 5]", ops);
        Assert.Contains("backward Conv2d stem [2, 2, 5, 5]", ops);
        // Ops outside any module are labelled by kind and shape alone; every op of both passes appears once.
        Assert.Contains(ops, o => o.StartsWith("forward Reduce", StringComparison.Ordinal));
        Assert.Contains(ops, o => o.StartsWith("backward Unary", StringComparison.Ordinal));
        Assert.Equal(ops.Count, ops.Distinct().Count());
        Assert.All(totals, t => Assert.True(t.Milliseconds >= 0, t.Op));
        Assert.True(totals.Zip(totals.Skip(1)).All(p => p.First.Milliseconds >= p.Second.Milliseconds), "largest first");
    }

    [Fact]
    public void ChargesNothingOnceDisposedAndRestoresAnOuterProfiler()
    {
        var x = Tensor.FromArray([1f, 2f]);
        x.RequiresGrad = true;
        using var outer = OpProfiler.Start();
        using (var inner = OpProfiler.Start())
        {
            x.Square();
            Assert.Single(inner.Totals());
        }
        Assert.Empty(outer.Totals());
        x.Exp();
        Assert.Single(outer.Totals());
        outer.Dispose();
        x.Neg();
        Assert.Single(outer.Totals());
    }
}
