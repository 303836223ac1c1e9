// A consumer's model, trained on a toy task, pruned by 50 % in two steps with fine-tuning after each,
// using only NeuralCore's public API. Run: dotnet run --project samples/PruneYourOwnModel
using NeuralCore;
using NeuralCore.Autograd;
using NeuralCore.NN;
using NeuralCore.Optim;
using NeuralCore.Pruning;

var generator = new Generator(42);

// Task: is the bright bar in an 8x8 image horizontal (class 0) or vertical (class 1)?
(Tensor Images, Tensor Labels) MakeBatch(int n)
{
    var pixels = new float[n * 64];
    var labels = new long[n];
    for (var i = 0; i < n; i++)
    {
        labels[i] = generator.NextInt(2);
        var line = generator.NextInt(8);
        for (var p = 0; p < 64; p++) pixels[i * 64 + p] = 0.3f * (float)generator.NextNormal();
        for (var j = 0; j < 8; j++) pixels[i * 64 + (labels[i] == 0 ? line * 8 + j : j * 8 + line)] += 1f;
    }
    return (Tensor.FromArray(pixels, n, 1, 8, 8), Tensor.FromArray(labels));
}

var model = new Sequential(
    new Conv2d(1, 16, 3, padding: 1, bias: false, generator: generator), new BatchNorm2d(16), new ReLU(),
    new Conv2d(16, 32, 3, padding: 1, bias: false, generator: generator), new BatchNorm2d(32), new ReLU(),
    new MaxPool2d(2), new Flatten(), new Linear(32 * 4 * 4, 2, generator: generator));
var optimizer = new Adam(model.Parameters(), lr: 1e-2);

void Train(int steps)
{
    model.Train();
    for (var s = 0; s < steps; s++)
    {
        var (x, y) = MakeBatch(32);
        optimizer.ZeroGrad();
        Functional.CrossEntropy(model.Call(x), y).Backward();
        optimizer.Step();
    }
}

double Accuracy()
{
    model.Eval();
    using var _ = Autograd.NoGrad();
    var (x, y) = MakeBatch(500);
    var predicted = model.Call(x).ArgMax(1).ToInt64Array();
    var truth = y.ToInt64Array();
    return predicted.Zip(truth).Count(p => p.First == p.Second) / (double)truth.Length;
}

Train(150);
Console.WriteLine($"trained: {model.ParameterCount():N0} parameters, accuracy {Accuracy():P1}");

var pruner = new Pruner(model, Tensor.Zeros([1, 1, 8, 8]), new PrunerOptions { Ratio = 0.5, IterativeSteps = 2 });
Console.Write(pruner.Graph.Describe());
while (pruner.CurrentStep < pruner.Options.IterativeSteps)
{
    var step = pruner.Step(optimizer);
    Console.WriteLine($"step {step.Step}: ratio {step.Ratio:0.00}, parameters {step.ParametersBefore:N0} -> {step.ParametersAfter:N0}, " +
        $"widths {string.Join("/", step.Groups.Select(g => g.WidthAfter))}, accuracy before fine-tuning {Accuracy():P1}");
    Train(50);
    Console.WriteLine($"        after fine-tuning {Accuracy():P1}");
}
