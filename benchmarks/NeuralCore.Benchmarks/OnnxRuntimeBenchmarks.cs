using BenchmarkDotNet.Attributes;
using Microsoft.ML.OnnxRuntime;
using NeuralCore.Backends.Cpu;
using NeuralCore.Models;
using NeuralCore.Onnx;

namespace NeuralCore.Benchmarks;

/// <summary>
/// NeuralCore inference against ONNX Runtime on the same weights: each CP-ResNet (small, big, pruned) is exported with
/// <see cref="OnnxExporter"/> and run by an ONNX Runtime session (all graph optimizations, 2 intra-op threads, no
/// inter-op parallelism) beside NeuralCore's compiled <see cref="CpuInferencePlan"/> and its eager eval-mode forward,
/// on 2 threads, on MNIST and mel inputs at batch N and 1.
/// </summary>
[Config(typeof(ModelConfig))]
[MemoryDiagnoser]
public class OnnxRuntimeBenchmarks
{
    private CpResNet model = null!;
    private Tensor x = null!;
    private InferenceSession session = null!;
    private OrtValue input = null!;
    private RunOptions runOptions = null!;
    private CpuInferencePlan plan = null!;
    private float[] logits = [];
    private string[] inputNames = null!, outputNames = null!;

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

    /// <summary>Where ONNX Runtime writes its profile (a path prefix), for <see cref="OnnxRuntimeProfile"/>; null: no profile.</summary>
    internal string? ProfilePrefix { get; init; }

    /// <summary>
    /// ONNX Runtime's session only in the process that times it (BenchmarkDotNet runs each method in a process of its
    /// own), so that its intra-op threads never share the two cores with the plan's, even waiting.
    /// </summary>
    [GlobalSetup(Target = nameof(OnnxRuntime))]
    public void SetupOnnxRuntime()
    {
        var spec = Prepare();
        var bytes = OnnxExporter.ExportToBytes(model, spec.Shape);
        model.Eval();
        var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            IntraOpNumThreads = ModelInput.Threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
        };
        if (ProfilePrefix is not null)
        {
            options.EnableProfiling = true;
            options.ProfileOutputPathPrefix = ProfilePrefix;
        }
        session = new InferenceSession(bytes, options);
        inputNames = [session.InputNames[0]];
        outputNames = [session.OutputNames[0]];
        input = OrtValue.CreateTensorValueFromMemory(x.ToArray(), [spec.BatchSize, .. spec.Shape.Select(d => (long)d)]);
        runOptions = new RunOptions();
    }

    /// <summary>The compiled plan (and the eager model) without an ONNX Runtime session in the process.</summary>
    [GlobalSetup(Targets = [nameof(NeuralCorePlan), nameof(NeuralCoreEager)])]
    public void SetupNeuralCore()
    {
        Prepare();
        plan = CpuInferencePlan.Compile(model, x.ShapeArray());
        logits = new float[Tensor.Numel(plan.OutputShape)];
    }

    private ModelInput Prepare()
    {
        CpuThreading.Threads = ModelInput.Threads;
        var spec = ModelInput.Get(Input);
        model = ModelInput.Build(Model);
        model.Eval();
        x = spec.Batch().X;
        return spec;
    }

    /// <summary>Ends ONNX Runtime's profile and returns its file (JSON, Chrome's trace format).</summary>
    internal string EndOnnxRuntimeProfile() => session.EndProfiling();

    /// <summary>The plan's time per step over <paramref name="iterations"/> passes (<see cref="CpuInferencePlan.Profile"/>).</summary>
    internal IReadOnlyList<(string Step, double Milliseconds)> ProfilePlan(int iterations) => plan.Profile(x.AsSpan(), iterations);

    [GlobalCleanup(Target = nameof(OnnxRuntime))]
    public void CleanupOnnxRuntime()
    {
        input.Dispose();
        runOptions.Dispose();
        session.Dispose();
    }

    [Benchmark(Baseline = true, Description = "ONNX Runtime")]
    public float OnnxRuntime()
    {
        using var outputs = session.Run(runOptions, inputNames, [input], outputNames);
        return outputs[0].GetTensorDataAsSpan<float>()[0];
    }

    [Benchmark(Description = "NeuralCore plan")]
    public float NeuralCorePlan()
    {
        plan.Run(x.AsSpan(), logits);
        return logits[0];
    }

    [Benchmark(Description = "NeuralCore eager")]
    public float NeuralCoreEager()
    {
        using var scope = TensorScope.Enter();
        using var noGrad = Autograd.Autograd.NoGrad();
        return model.Call(x).AsSpan()[0];
    }
}
