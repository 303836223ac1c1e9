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
    /// The same model (same seed) trained for <paramref name="steps"/> SGD steps (momentum 0.9, weight decay) on one
    /// fixed random batch on the CPU and on the GPU: the losses, the parameters and the running statistics must agree,
    /// and the GPU's loss must go down.
    /// </summary>
    /// <remarks>
    /// SGD rather than Adam: Adam divides each gradient by its own magnitude, so a parameter whose gradient is at the
    /// level of rounding noise takes a full-size step in a direction the noise picks, and two correct backends part
    /// ways. On the CPU alone, perturbing every gradient by a relative 1e-7 moves the fifth Adam loss of this check by
    /// 2e-3, while the SGD losses stay equal to six digits. Adam's update itself is checked op by op (group optimizer).
    /// </remarks>
    public void Training(SelfTestModel model, int steps, int batch, string mode)
    {
        var lossTol = new Tol(1e-4f, 1e-4f);
        // A relative 1e-6 perturbation of every gradient moves the most sensitive weights of this run (stage2.block1.conv1)
        // by 7e-5 on the CPU alone; an H200 differed from the CPU by at most 2.4e-4 there, with and without cuDNN.
        var paramTol = new Tol(1e-3f, 1e-3f);
        recorder.Run("training", $"{model.Name} {steps} SGD steps, batch {batch} x {string.Join('x', model.SampleShape)} {mode}",
            $"losses {lossTol}; parameters {paramTol}", cmp =>
            {
                var x = Batch(model.SampleShape, batch, 7, Device.Cpu);
                var y = Labels(batch, model.Classes, Device.Cpu);
                var (cpuModel, cpuLosses) = Train(model, x, y, steps, Device.Cpu);
                var (gpuModel, gpuLosses) = Train(model, x.To(gpu), y.To(gpu), steps, gpu);
                cmp.Close("losses", Tensor.FromArray(cpuLosses, steps), Tensor.FromArray(gpuLosses, steps), lossTol.Atol, lossTol.Rtol);
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
        var optimizer = new SGD(model.Parameters(), lr: 0.05, momentum: 0.9, weightDecay: 3e-3);
        var losses = new float[steps];
        for (var step = 0; step < steps; step++)
        {
            using var scope = TensorScope.Enter();
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
        // The earlier workloads' models go first, so the peak below counts this workload alone.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        backend.Synchronize();
        var baseline = backend.MemoryInUse;
        backend.ResetPeakMemoryInUse();
        var model = bench.Model.Create(new Generator(1));
        model.To(device);
        var x = Batch(bench.SampleShape, bench.BatchSize, 2, device);
        var y = Labels(bench.BatchSize, bench.Model.Classes, device);
        var optimizer = new Adam(model.Parameters(), lr: 1e-3, weightDecay: 3e-3);
        model.Train();
        var train = Time(iterations, warmup, backend, () =>
        {
            optimizer.ZeroGrad(setToNone: false);
            var loss = Functional.CrossEntropy(model.Call(x), y);
            loss.Backward();
            optimizer.Step();
        });
        // The most GPU memory live at once in a training step: parameters, gradients, optimizer state, the batch,
        // and the activations the backward pass keeps (as PyTorch's max_memory_allocated counts it).
        var peak = backend.PeakMemoryInUse - baseline;
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
