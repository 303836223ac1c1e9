using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using NeuralCore.Backends.Cpu;
using NeuralCore.Models;
using NeuralCore.NN;
using NeuralCore.Optim;

namespace NeuralCore.Benchmarks;

/// <summary>
/// A whole CP-ResNet training step (forward, cross-entropy, backward, Adam with the seed's lr 1e-3 and weight decay
/// 3e-3) on 2 threads, for the small (24/48/72), big (32/64/128) and pruned (19/38/76, the big model pruned at 0.40)
/// widths side by side, on MNIST 28 x 28 at batch 256 and on the 128 x 100 mel input at batch 64. Each step runs in
/// a <see cref="TensorScope"/>, as a training loop should: the memory diagnoser then shows what a step allocates
/// after warm-up (graph bookkeeping only, no tensor memory). Beside it, the same step compiled as a
/// <see cref="CpuTrainingPlan"/> (what the trainer runs: the same kernels and bits, no per-op bookkeeping).
/// </summary>
[Config(typeof(ModelConfig))]
[MemoryDiagnoser]
public class ModelTrainBenchmarks
{
    private CpResNet model = null!;
    private Optimizer optimizer = null!;
    private Tensor x = null!, y = null!;
    private CpuTrainingPlan plan = null!;

    /// <summary>small, big or pruned.</summary>
    [ParamsSource(nameof(Models))]
    public string Model { get; set; } = "";

    /// <summary>The input and batch, see <see cref="ModelInput.Train"/>.</summary>
    [ParamsSource(nameof(Inputs))]
    public string Input { get; set; } = "";

    /// <summary>Model names.</summary>
    public static IEnumerable<string> Models => ModelInput.Widths.Keys;

    /// <summary>Input names.</summary>
    public static IEnumerable<string> Inputs => ModelInput.Train.Select(i => i.Name);

    [GlobalSetup]
    public void Setup()
    {
        CpuThreading.Threads = ModelInput.Threads;
        var input = ModelInput.Get(Input);
        model = ModelInput.Build(Model);
        model.Train();
        optimizer = new Adam(model.Parameters(), lr: 1e-3, weightDecay: 3e-3);
        (x, y) = input.Batch();
        plan = CpuTrainingPlan.Compile(model, x.ShapeArray());
    }

    [Benchmark(Description = "train step, plan")]
    public float TrainStepPlan()
    {
        optimizer.ZeroGrad(setToNone: false);
        float loss = plan.Step(x, y);
        optimizer.Step();
        return loss;
    }

    [Benchmark(Description = "train step")]
    public float TrainStep()
    {
        using var scope = TensorScope.Enter();
        optimizer.ZeroGrad(setToNone: false);
        var loss = Functional.CrossEntropy(model.Call(x), y);
        loss.Backward();
        optimizer.Step();
        return loss.Item();
    }
}

/// <summary>
/// CP-ResNet inference (eval mode, no gradients) on 2 threads for the small, big and pruned widths side by side, on
/// MNIST at batch 256 and 1 and on the mel input at batch 64 and 1: the eager forward inside a
/// <see cref="TensorScope"/>, and the compiled <see cref="CpuInferencePlan"/> (batch norm folded, activations and
/// residual additions fused, no allocation).
/// </summary>
[Config(typeof(ModelConfig))]
[MemoryDiagnoser]
public class ModelInferenceBenchmarks
{
    private CpResNet model = null!;
    private Tensor x = null!;
    private CpuInferencePlan plan = null!;
    private float[] logits = [];

    /// <summary>small, big or pruned.</summary>
    [ParamsSource(nameof(Models))]
    public string Model { get; set; } = "";

    /// <summary>The input and batch, see <see cref="ModelInput.Infer"/>.</summary>
    [ParamsSource(nameof(Inputs))]
    public string Input { get; set; } = "";

    /// <summary>Model names.</summary>
    public static IEnumerable<string> Models => ModelInput.Widths.Keys;

    /// <summary>Input names.</summary>
    public static IEnumerable<string> Inputs => ModelInput.Infer.Select(i => i.Name);

    [GlobalSetup]
    public void Setup()
    {
        CpuThreading.Threads = ModelInput.Threads;
        model = ModelInput.Build(Model);
        model.Eval();
        x = ModelInput.Get(Input).Batch().X;
        plan = CpuInferencePlan.Compile(model, x.ShapeArray());
        logits = new float[Tensor.Numel(plan.OutputShape)];
    }

    [Benchmark(Description = "inference, plan")]
    public float InferPlan()
    {
        plan.Run(x.AsSpan(), logits);
        return logits[0];
    }

    [Benchmark(Description = "inference, eager")]
    public float Infer()
    {
        using var scope = TensorScope.Enter();
        using var noGrad = Autograd.Autograd.NoGrad();
        return model.Call(x).AsSpan()[0];
    }
}

/// <summary>A benchmark input: name, shape of one sample [C, H, W] and batch size.</summary>
public sealed record ModelInput(string Name, int[] Shape, int BatchSize)
{
    /// <summary>Threads of every model benchmark (the reference machine has 2 cores).</summary>
    public const int Threads = 2;

    /// <summary>The compared widths: the seed's small model, the big one, and the big one pruned at ratio 0.40.</summary>
    public static readonly IReadOnlyDictionary<string, int[]> Widths = new Dictionary<string, int[]>
    {
        ["small 24/48/72"] = [24, 48, 72],
        ["big 32/64/128"] = [32, 64, 128],
        ["pruned 19/38/76"] = [19, 38, 76],
    };

    /// <summary>Training inputs: MNIST batch 256, mel batch 64.</summary>
    public static readonly ModelInput[] Train =
    [
        new("mnist 1x28x28 b256", [1, 28, 28], 256),
        new("mel 1x128x100 b64", [1, 128, 100], 64),
    ];

    /// <summary>Inference inputs: MNIST batch 256 and 1, mel batch 64 and 1.</summary>
    public static readonly ModelInput[] Infer =
    [
        new("mnist 1x28x28 b256", [1, 28, 28], 256),
        new("mnist 1x28x28 b1", [1, 28, 28], 1),
        new("mel 1x128x100 b64", [1, 128, 100], 64),
        new("mel 1x128x100 b1", [1, 128, 100], 1),
    ];

    /// <summary>The input called <paramref name="name"/>.</summary>
    public static ModelInput Get(string name) => Train.Concat(Infer).First(i => i.Name == name);

    /// <summary>A CP-ResNet with the named widths (seed 0).</summary>
    public static CpResNet Build(string name) =>
        new(new CpResNetConfig { ChannelWidths = Widths[name] }, new Generator(0));

    /// <summary>Uniform random inputs in [0, 1) and labels cycling through the 10 classes.</summary>
    public (Tensor X, Tensor Y) Batch()
    {
        var x = Tensor.Rand([BatchSize, .. Shape], new Generator(1));
        var labels = new long[BatchSize];
        for (int i = 0; i < BatchSize; i++) labels[i] = i % 10;
        return (x, Tensor.FromArray(labels, BatchSize));
    }
}

/// <summary>A short job: model steps take milliseconds to a second.</summary>
internal sealed class ModelConfig : ManualConfig
{
    public ModelConfig() => AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(10).WithLaunchCount(1));
}

/// <summary>
/// Batch-1 inference called now and then, as a service answering single requests does: each timed pass follows 10 ms
/// with nothing to do, so the CPU worker threads have stopped spinning and sleep, and the caches have cooled. Compare
/// with <see cref="ModelInferenceBenchmarks"/>, which runs passes back to back.
/// </summary>
[Config(typeof(SporadicConfig))]
public class SporadicInferenceBenchmarks
{
    private CpuInferencePlan plan = null!;
    private Tensor x = null!;
    private float[] logits = [];

    /// <summary>big or pruned.</summary>
    [Params("big 32/64/128", "pruned 19/38/76")]
    public string Model { get; set; } = "";

    /// <summary>Batch-1 inputs.</summary>
    [Params("mnist 1x28x28 b1", "mel 1x128x100 b1")]
    public string Input { get; set; } = "";

    /// <summary>CPU threads.</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        CpuThreading.Threads = Threads;
        var model = ModelInput.Build(Model);
        model.Eval();
        x = ModelInput.Get(Input).Batch().X;
        plan = CpuInferencePlan.Compile(model, x.ShapeArray());
        logits = new float[Tensor.Numel(plan.OutputShape)];
        // With one pass per iteration the job's few passes would run the kernels' first, unoptimised code: enough passes
        // here, and a pause, for the runtime to replace it with its optimised code first.
        for (int round = 0; round < 3; round++)
        {
            for (int i = 0; i < 500; i++) plan.Run(x.AsSpan(), logits);
            Thread.Sleep(200);
        }
    }

    /// <summary>The idle spell before each pass (not timed).</summary>
    [IterationSetup]
    public void Idle() => Thread.Sleep(10);

    [Benchmark(Description = "inference after 10 ms idle, plan")]
    public float InferAfterIdle()
    {
        plan.Run(x.AsSpan(), logits);
        return logits[0];
    }
}

/// <summary>One pass per iteration (an iteration setup runs before each), 40 of them.</summary>
internal sealed class SporadicConfig : ManualConfig
{
    public SporadicConfig() => AddJob(Job.Default.WithInvocationCount(1).WithUnrollFactor(1).WithWarmupCount(5).WithIterationCount(40).WithLaunchCount(1).WithGcForce(false));
}
