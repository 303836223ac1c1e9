using NeuralCore.NN;
using NeuralCore.Optim;
using static NeuralCore.Autograd.Autograd;

namespace NeuralCore.Tests.NN;

/// <summary>End-to-end: the layers, initialisers and optimizers together learn a small image task.</summary>
public class TrainingTests
{
    private const int Size = 8;

    /// <summary>
    /// 8x8 images of one bright bar on noise: class 0 a horizontal bar (a random row), class 1 a vertical bar
    /// (a random column). x [n, 1, 8, 8], labels [n] (Int64).
    /// </summary>
    private static (Tensor X, Tensor Y) Bars(int n, Generator g)
    {
        var x = new float[n * Size * Size];
        var y = new long[n];
        for (var i = 0; i < n; i++)
        {
            y[i] = g.NextInt(2);
            var line = g.NextInt(Size);
            for (var r = 0; r < Size; r++)
                for (var c = 0; c < Size; c++)
                {
                    var onBar = y[i] == 0 ? r == line : c == line;
                    x[(i * Size + r) * Size + c] = (onBar ? 1f : 0f) + (float)(0.35 * g.NextNormal());
                }
        }
        return (Tensor.FromArray(x, n, 1, Size, Size), Tensor.FromArray(y, n));
    }

    private static Sequential Cnn(Generator g) => new(
        new Conv2d(1, 8, 3, padding: 1, bias: false, generator: g),
        new BatchNorm2d(8),
        new ReLU(),
        new MaxPool2d(2),
        new Dropout(0.1, g),
        new Flatten(),
        new Linear(8 * 4 * 4, 2, generator: g));

    /// <summary>Trains from <paramref name="seed"/> for <paramref name="steps"/> mini-batches of 32; returns the model and the last loss.</summary>
    private static (Sequential Model, float LastLoss, float FirstLoss) Train(ulong seed, int steps)
    {
        var g = new Generator(seed);
        var model = Cnn(g);
        var (x, y) = Bars(512, g);
        var opt = new Adam(model.Parameters(), lr: 0.01, weightDecay: 1e-4);
        var scheduler = new LambdaLR(opt, Schedules.ExpWarmupLinearDown(2, 3, 4, 0.1));
        float first = float.NaN, last = float.NaN;
        var order = Enumerable.Range(0, 512).ToArray();
        for (var step = 0; step < steps; step++)
        {
            if (step % 16 == 0) g.Shuffle(order.AsSpan());
            var idx = Tensor.FromArray(order.Skip(step % 16 * 32).Take(32).Select(i => (long)i).ToArray(), 32);
            var loss = Functional.CrossEntropy(model.Call(x.IndexSelect(0, idx)), y.IndexSelect(0, idx));
            opt.ZeroGrad();
            loss.Backward();
            GradientClipping.ClipGradNorm(model.Parameters(), 5);
            opt.Step();
            if (step % 16 == 15) scheduler.Step();
            last = loss.Item();
            if (step == 0) first = last;
        }
        return (model, last, first);
    }

    private static double Accuracy(Module model, Tensor x, Tensor y)
    {
        model.Eval();
        using var _ = NoGrad();
        var predicted = model.Call(x).ArgMax(1).ToInt64Array();
        var labels = y.ToInt64Array();
        return predicted.Zip(labels).Count(p => p.First == p.Second) / (double)labels.Length;
    }

    [Fact]
    public void SmallCnn_LearnsHorizontalVersusVerticalBars()
    {
        var (model, last, first) = Train(seed: 2024, steps: 160);
        var (testX, testY) = Bars(400, new Generator(99));
        var accuracy = Accuracy(model, testX, testY);
        Assert.True(accuracy > 0.95, $"test accuracy {accuracy:P1} (first loss {first}, last loss {last})");
        Assert.True(last < 0.5 * first, $"loss went from {first} to {last}");
    }

    [Fact]
    public void SameSeedAndThreadCount_GiveBitIdenticalTraining()
    {
        var a = Train(seed: 7, steps: 40).Model.StateDict();
        var b = Train(seed: 7, steps: 40).Model.StateDict();
        var c = Train(seed: 8, steps: 40).Model.StateDict();
        Assert.Equal(a.Keys, b.Keys);
        foreach (var (key, t) in a)
        {
            if (t.DType == DType.Int64) Assert.Equal(t.ToInt64Array(), b[key].ToInt64Array());
            else Assert.Equal(t.ToArray().Select(BitConverter.SingleToInt32Bits), b[key].ToArray().Select(BitConverter.SingleToInt32Bits));
        }
        Assert.NotEqual(a["6.weight"].ToArray(), c["6.weight"].ToArray());
    }
}
