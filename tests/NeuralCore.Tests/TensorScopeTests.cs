using NeuralCore.NN;
using NeuralCore.Optim;

namespace NeuralCore.Tests;

/// <summary>
/// <see cref="TensorScope"/>: op outputs made inside a scope go back to the pool when it ends and cannot be read
/// afterwards; kept tensors, leaf gradients and creation functions survive; pooled (dirty) memory never changes a
/// result: training steps inside scopes match steps outside bit for bit.
/// </summary>
public sealed class TensorScopeTests
{
    [Fact]
    public void OpOutputIsReleasedWhenTheScopeEnds()
    {
        var x = Tensor.FromArray([1f, -2f, 3f], 3);
        Tensor y;
        using (TensorScope.Enter())
        {
            y = x.Relu();
            Assert.Equal([1f, 0f, 3f], y.ToArray());
        }
        Assert.True(((CpuStorage)y.Storage).IsReleased);
        var e = Assert.Throws<ObjectDisposedException>(() => y.ToArray());
        Assert.Contains("Keep", e.Message);
        // The input, made by a creation function, belongs to the GC and is untouched.
        Assert.Equal([1f, -2f, 3f], x.ToArray());
    }

    [Fact]
    public void KeptTensorSurvivesAndCreationFunctionsAreNeverPooled()
    {
        var x = Tensor.FromArray([1f, 2f], 2);
        Tensor kept, zeros;
        using (var scope = TensorScope.Enter())
        {
            kept = scope.Keep(x.Mul(2f));
            zeros = Tensor.Zeros([4]);
        }
        Assert.Equal([2f, 4f], kept.ToArray());
        Assert.Equal(new float[4], zeros.ToArray());
    }

    [Fact]
    public void KeepInAnInnerScopeMovesTheTensorToTheOuterOne()
    {
        var x = Tensor.FromArray([1f, 2f], 2);
        Tensor t;
        using (TensorScope.Enter())
        {
            using (var inner = TensorScope.Enter()) t = inner.Keep(x.Add(1f));
            Assert.Equal([2f, 3f], t.ToArray());
        }
        Assert.Throws<ObjectDisposedException>(() => t.ToArray());
    }

    [Fact]
    public void DisposingAnOuterScopeBeforeAnInnerOneThrows()
    {
        var outer = TensorScope.Enter();
        var inner = TensorScope.Enter();
        Assert.Throws<InvalidOperationException>(() => outer.Dispose());
        inner.Dispose();
        outer.Dispose();
        Assert.Null(TensorScope.Current);
    }

    [Fact]
    public void ReleasedMemoryIsReusedBySameShapedOutputs()
    {
        var x = Tensor.FromArray(Enumerable.Range(0, 1000).Select(i => (float)i).ToArray(), 1000);
        Array first;
        using (TensorScope.Enter()) first = ((CpuStorage)x.Neg().Storage).Array;
        Assert.True(TensorScope.PooledBytes >= 4000);
        using (TensorScope.Enter())
        {
            var again = x.Sqrt();
            Assert.Same(first, ((CpuStorage)again.Storage).Array);
            Assert.Equal(MathF.Sqrt(999f), again.ToArray()[999]);
        }
    }

    [Fact]
    public void TrainingStepsInsideScopesMatchStepsOutsideBitForBit()
    {
        var (withScope, gradWithScope) = Train(useScope: true);
        var (without, gradWithout) = Train(useScope: false);
        Assert.Equal(without, withScope);
        // Leaf gradients outlive the scope they were computed in.
        Assert.Equal(gradWithout, gradWithScope);
    }

    private static (float[] Weights, float[] Grad) Train(bool useScope)
    {
        var model = new Sequential(
            new Conv2d(2, 5, 3, padding: 1, bias: false, generator: new Generator(3)),
            new BatchNorm2d(5),
            new ReLU(),
            new MaxPool2d(2, 2),
            new Conv2d(5, 3, 1, bias: true, generator: new Generator(4)),
            new AdaptiveAvgPool2d(1),
            new Flatten());
        var optimizer = new Adam(model.Parameters(), lr: 1e-2, weightDecay: 1e-3);
        var x = Tensor.Rand([4, 2, 6, 6], new Generator(5));
        var y = Tensor.FromArray([0L, 1, 2, 1], 4);
        for (int step = 0; step < 4; step++)
        {
            using var scope = useScope ? TensorScope.Enter() : null;
            optimizer.ZeroGrad();
            var loss = Functional.CrossEntropy(model.Call(x), y);
            loss.Backward();
            optimizer.Step();
        }
        var weights = model.Parameters().SelectMany(p => p.ToArray()).ToArray();
        var grad = model.Parameters().First().Grad!.ToArray();
        return (weights, grad);
    }
}
