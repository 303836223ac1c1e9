using System.Diagnostics;
using System.Globalization;
using NeuralCore.NN;
using NeuralCore.Optim;

namespace NeuralCore.Cuda.SelfTest;

/// <summary>Whole-model checks on the GPU: a short training run against the CPU, pruning on the GPU, and timings.</summary>
internal sealed class ModelChecks(CheckRecorder recorder, Device gpu)
{
    private static Tensor Batch(int[] sampleShape, int batch, ulong seed, Device device) =>
        Tensor.Rand([batch, .. sampleShape], new Generator(seed), device);

    private static Tensor Labels(int batch, int classes, Device device) =>
        Tensor.FromArray(Enumerable.Range(0, batch).Select(i => (long)(i * 7 % classes)).ToArray(), batch).To(device);

    /// <summary>
    /// The same model (same seed) trained for <paramref name="steps"/> Adam steps on one fixed random batch on the
    /// CPU and on the GPU: the losses must agree within rtol 1e-3, the GPU's loss must go down, and the parameters and
    /// running statistics must agree within 1e-3 per step (Adam's normalised update can flip the sign of a step
    /// whose gradient is tiny, so the bound grows with the steps).
    /// </summary>
    public void Training(SelfTestModel model, int steps, int batch, string mode)
    {
        var paramTol = new Tol(1e-3f * steps, 1e-3f);
        recorder.Run("training", $"{model.Name} {steps} Adam steps, batch {batch} x {string.Join('x', model.SampleShape)} {mode}",
            $"losses atol 1e-4 + rtol 1e-3; parameters {paramTol}", cmp =>
            {
                var x = Batch(model.SampleShape, batch, 7, Device.Cpu);
                var y = Labels(batch, model.Classes, Device.Cpu);
                var (cpuModel, cpuLosses) = Train(model, x, y, steps, Device.Cpu);
                var (gpuModel, gpuLosses) = Train(model, x.To(gpu), y.To(gpu), steps, gpu);
                cmp.Close("losses", Tensor.FromArray(cpuLosses, steps), Tensor.FromArray(gpuLosses, steps), 1e-4f, 1e-3f);
                if (!(gpuLosses[^1] < gpuLosses[0]))
                    cmp.Fail($"the GPU loss did not go down: {Format(gpuLosses)}");
                var cpuState = cpuModel.StateDict();
                foreach (var (name, t) in gpuModel.StateDict())
                {
                    if (t.DType == DType.Float32) cmp.Close(name, cpuState[name], t, paramTol.Atol, paramTol.Rtol);
                    else cmp.Exact(name, cpuState[name], t);
                }
                cmp.Note = $"losses CPU {Format(cpuLosses)}; CUDA {Format(gpuLosses)}";
            });
    }

    private static (Module Model, float[] Losses) Train(SelfTestModel spec, Tensor x, Tensor y, int steps, Device device)
    {
        var model = spec.Create(new Generator(3));
        model.To(device);
        model.Train();
        var optimizer = new Adam(model.Parameters(), lr: 1e-3, weightDecay: 3e-3);
        var losses = new float[steps];
        for (var step = 0; step < steps; step++)
        {
            optimizer.ZeroGrad();
            var loss = Functional.CrossEntropy(model.Call(x), y);
            loss.Backward();
            optimizer.Step();
            losses[step] = loss.Item();
        }
        return (model, losses);
    }

    /// <summary>
    /// Prunes the same model on the CPU and on the GPU with the caller's pruner: the widths and the kept weights
    /// must be identical, and a forward pass of the pruned GPU model must match the pruned CPU model's.
    /// </summary>
    public void Pruning(SelfTestModel model, Action<Module, Tensor> prune, long? expectedParameters, string mode)
    {
        recorder.Run("pruning", $"{model.Name} pruned on the GPU, then a forward pass {mode}", $"weights exact; output {new Tol(1e-4f, 1e-4f)}", cmp =>
        {
            var example = Tensor.Zeros([1, .. model.SampleShape]);
            var cpuModel = model.Create(new Generator(3));
            var before = cpuModel.ParameterCount();
            prune(cpuModel, example);
            var gpuModel = model.Create(new Generator(3));
            gpuModel.To(gpu);
            prune(gpuModel, example.To(gpu));
            long cpuCount = cpuModel.ParameterCount(), gpuCount = gpuModel.ParameterCount();
            if (cpuCount != gpuCount) cmp.Fail($"the GPU-pruned model has {gpuCount:N0} parameters, the CPU-pruned one {cpuCount:N0}");
            if (expectedParameters is { } expected && gpuCount != expected)
                cmp.Fail($"the GPU-pruned model has {gpuCount:N0} parameters; expected {expected:N0}");
            var cpuState = cpuModel.StateDict();
            foreach (var (name, t) in gpuModel.StateDict())
            {
                if (t.Device != gpu) cmp.Fail($"{name} lives on {t.Device} after pruning, expected {gpu}");
                if (!cpuState.TryGetValue(name, out var c)) cmp.Fail($"{name} exists only in the GPU-pruned model");
                else cmp.Exact(name, c, t);
            }
            cpuModel.Eval();
            gpuModel.Eval();
            using var noGrad = Autograd.Autograd.NoGrad();
            var x = Batch(model.SampleShape, 4, 9, Device.Cpu);
            cmp.Close("pruned model output", cpuModel.Call(x), gpuModel.Call(x.To(gpu)), 1e-4f, 1e-4f);
            cmp.Note = string.Create(CultureInfo.InvariantCulture, $"{before:N0} -> {gpuCount:N0} parameters");
        });
    }

    /// <summary>
    /// Median training step (zero grad, forward, cross-entropy, backward, Adam) and inference pass (eval, no
    /// autograd) of one workload; the GPU is synchronised before each clock reading, so a time covers the GPU work.
    /// </summary>
    public static SelfTestTiming Benchmark(SelfTestBenchmark bench, CudaBackend backend, int iterations, int warmup)
    {
        var device = backend.Device;
        var model = bench.Model.Create(new Generator(1));
        model.To(device);
        var x = Batch(bench.SampleShape, bench.BatchSize, 2, device);
        var y = Labels(bench.BatchSize, bench.Model.Classes, device);
        var optimizer = new Adam(model.Parameters(), lr: 1e-3, weightDecay: 3e-3);
        long peak = 0;
        model.Train();
        var train = Time(iterations, warmup, backend, () =>
        {
            optimizer.ZeroGrad(setToNone: false);
            var loss = Functional.CrossEntropy(model.Call(x), y);
            loss.Backward();
            // Live memory right after the backward pass: activations, gradients, parameters and optimizer state.
            peak = Math.Max(peak, backend.MemoryInUse);
            optimizer.Step();
        });
        model.Eval();
        var inference = Time(iterations, warmup, backend, () =>
        {
            using var noGrad = Autograd.Autograd.NoGrad();
            _ = model.Call(x);
        });
        return new SelfTestTiming(bench.Model.Name, bench.Input, bench.BatchSize, backend.UsesCudnn, train, inference,
            bench.BatchSize / (train / 1000), bench.BatchSize / (inference / 1000), peak);
    }

    /// <summary>The median milliseconds of <paramref name="step"/> over <paramref name="iterations"/> runs after <paramref name="warmup"/> untimed ones.</summary>
    private static double Time(int iterations, int warmup, CudaBackend backend, Action step)
    {
        var times = new double[iterations];
        for (var it = -warmup; it < iterations; it++)
        {
            using var scope = TensorScope.Enter();
            backend.Synchronize();
            var clock = Stopwatch.StartNew();
            step();
            backend.Synchronize();
            clock.Stop();
            if (it >= 0) times[it] = clock.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return iterations % 2 == 1 ? times[iterations / 2] : (times[iterations / 2 - 1] + times[iterations / 2]) / 2;
    }

    private static string Format(float[] values) => string.Join(" ", values.Select(v => v.ToString("F5", CultureInfo.InvariantCulture)));
}
