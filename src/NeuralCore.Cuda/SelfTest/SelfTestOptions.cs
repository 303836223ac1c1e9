using NeuralCore.NN;

namespace NeuralCore.Cuda.SelfTest;

/// <summary>
/// What <see cref="CudaSelfTest.Run"/> checks beyond the op conformance suite. The models come from the caller
/// (the <c>neuralcore selftest</c> command passes CP-ResNets and the structural pruner), so this library stays
/// independent of any model or pruning package.
/// </summary>
public sealed record SelfTestOptions
{
    /// <summary>The CUDA ordinal to test (default 0).</summary>
    public int Ordinal { get; init; }

    /// <summary>
    /// Backend settings for the training run and the benchmarks (default: <see cref="CudaOptions.FromEnvironment()"/>).
    /// The op conformance suite always runs with TF32 off, once with cuDNN and once without (when cuDNN is installed).
    /// </summary>
    public CudaOptions? Backend { get; init; }

    /// <summary>The model of the short training run on both devices (created with the same seed twice), or null to skip it.</summary>
    public SelfTestModel? Training { get; init; }

    /// <summary>Training steps of the short run (default 5), all on one fixed random batch so the loss must go down.</summary>
    public int TrainingSteps { get; init; } = 5;

    /// <summary>Samples per batch of the short training run (default 32).</summary>
    public int TrainingBatchSize { get; init; } = 32;

    /// <summary>The model pruned on the GPU and on the CPU, or null to skip the pruning check.</summary>
    public SelfTestModel? Pruning { get; init; }

    /// <summary>
    /// Prunes a model in place, given an example input [1, C, H, W] on the model's device (the caller's pruner
    /// and ratio). Required when <see cref="Pruning"/> is set.
    /// </summary>
    public Action<Module, Tensor>? Prune { get; init; }

    /// <summary>The parameter count the pruned model must have (an oracle), or null to compare only with the CPU.</summary>
    public long? ExpectedPrunedParameters { get; init; }

    /// <summary>The timed workloads (train step and inference each), empty to skip timing.</summary>
    public IReadOnlyList<SelfTestBenchmark> Benchmarks { get; init; } = [];

    /// <summary>Timed iterations per benchmark (default 30); the median is reported.</summary>
    public int BenchmarkIterations { get; init; } = 30;

    /// <summary>Untimed iterations before each benchmark (default 5): kernel compilation, cuDNN algorithm choice, allocator warm-up.</summary>
    public int BenchmarkWarmup { get; init; } = 5;

    /// <summary>Where a line per finished check goes while the self-test runs (null: silent).</summary>
    public TextWriter? Progress { get; init; }
}

/// <summary>A model the self-test can create on demand.</summary>
/// <param name="Name">How the report names it, e.g. <c>CP-ResNet 24/48/72</c>.</param>
/// <param name="Create">Creates the model on the CPU with initial weights drawn from the given generator.</param>
/// <param name="SampleShape">One input's shape, e.g. [1, 28, 28].</param>
/// <param name="Classes">The number of output logits.</param>
public sealed record SelfTestModel(string Name, Func<Generator, Module> Create, int[] SampleShape, int Classes);

/// <summary>One timed workload: a model at one input shape and batch size.</summary>
/// <param name="Model">The model (created once per benchmark).</param>
/// <param name="Input">How the report names the input, e.g. <c>MNIST 1x28x28</c>.</param>
/// <param name="SampleShape">One input's shape, e.g. [1, 128, 100].</param>
/// <param name="BatchSize">Samples per step.</param>
public sealed record SelfTestBenchmark(SelfTestModel Model, string Input, int[] SampleShape, int BatchSize);
