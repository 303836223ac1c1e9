using NeuralCore.Models;
using NeuralCore.NN;
using NeuralCore.Optim;
using NeuralCore.Pruning;

namespace NeuralCore.Cuda.Tests;

/// <summary>Whole-model checks on the GPU: a CP-ResNet training step and structural pruning, against the same on the CPU.</summary>
public class ModelOnGpuTests : GpuTest
{
    private static CpResNet Model() => new(CpResNetConfig.FromWidths("8 16 32"), new Generator(3));

    /// <summary>Three CP-ResNet training steps (forward, cross-entropy, backward, SGD with momentum) give the CPU's losses and parameters.</summary>
    [Fact]
    public void CpResNetTrainingStepMatchesTheCpu()
    {
        Cuda();
        var x = Rand([8, 1, 28, 28], 7, 0, 1);
        var labels = Tensor.FromArray(new long[] { 0, 1, 2, 3, 4, 5, 6, 7 }, 8);
        var cpuModel = Model();
        var gpuModel = Model();
        gpuModel.To(Device.Cuda(0));
        var losses = new List<(float Cpu, float Gpu)>();
        // SGD, not Adam: Adam's normalised step turns rounding-level differences in tiny gradients into full-size
        // updates, so two correct backends part ways (see ModelChecks.Training); Adam has its own conformance tests.
        var cpuOpt = new SGD(cpuModel.Parameters(), lr: 0.05, momentum: 0.9);
        var gpuOpt = new SGD(gpuModel.Parameters(), lr: 0.05, momentum: 0.9);
        for (var step = 0; step < 3; step++)
        {
            var cl = Functional.CrossEntropy(cpuModel.Forward(x), labels);
            var gl = Functional.CrossEntropy(gpuModel.Forward(OnGpu(x)), OnGpu(labels));
            losses.Add((cl.Item(), gl.Item()));
            cpuOpt.ZeroGrad(); gpuOpt.ZeroGrad();
            cl.Backward(); gl.Backward();
            cpuOpt.Step(); gpuOpt.Step();
        }
        foreach (var (c, g) in losses) Assert.True(Math.Abs(c - g) <= 1e-4f + 1e-4f * Math.Abs(c), $"losses CPU {c}, CUDA {g}");
        Assert.True(losses[^1].Gpu < losses[0].Gpu, $"loss did not go down on the GPU: {string.Join(", ", losses.Select(l => l.Gpu))}");
        var cpuState = cpuModel.StateDict();
        foreach (var (name, t) in gpuModel.StateDict())
        {
            Assert.Equal(Device.Cuda(0), t.Device);
            if (t.DType == DType.Float32) Close(cpuState[name], t, 1e-4f, 1e-3f, name);
        }
    }

    /// <summary>The pruner traces, scores and slices a model living on the GPU exactly as one on the CPU.</summary>
    [Fact]
    public void PruningOnTheGpuKeepsTheSameChannels()
    {
        Cuda();
        var example = Tensor.Zeros([1, 1, 28, 28]);
        var cpuModel = Model();
        new Pruner(cpuModel, example, new PrunerOptions { Ratio = 0.4 }).Run();
        var gpuModel = Model();
        gpuModel.To(Device.Cuda(0));
        new Pruner(gpuModel, OnGpu(example), new PrunerOptions { Ratio = 0.4 }).Run();
        Assert.Equal(cpuModel.ParameterCount(), gpuModel.ParameterCount());
        var cpuState = cpuModel.StateDict();
        foreach (var (name, t) in gpuModel.StateDict())
        {
            Assert.Equal(cpuState[name].ShapeArray(), t.ShapeArray());
            if (t.DType == DType.Float32) Close(cpuState[name], t, 0, 0, name);
        }
        gpuModel.Eval(); cpuModel.Eval();
        using var _ = Autograd.Autograd.NoGrad();
        var x = Rand([2, 1, 28, 28], 9, 0, 1);
        Close(cpuModel.Forward(x), gpuModel.Forward(OnGpu(x)), 1e-4f, 1e-4f, "pruned model output");
    }

    /// <summary>
    /// The pruner made with an example on the CPU, its model then moved to the GPU between two steps (as `prune --device
    /// cuda` fine-tunes it there): the next step traces on the GPU and keeps the CPU's channels.
    /// </summary>
    [Fact]
    public void PruningAModelMovedToTheGpuBetweenStepsTracesItThere()
    {
        Cuda();
        var example = Tensor.Zeros([1, 1, 28, 28]);
        var options = new PrunerOptions { Ratio = 0.4, IterativeSteps = 2 };
        var cpuModel = Model();
        new Pruner(cpuModel, example, options).Run();
        var gpuModel = Model();
        var pruner = new Pruner(gpuModel, example, options);
        pruner.Step();
        gpuModel.To(Device.Cuda(0));
        pruner.Step();
        Assert.Equal(cpuModel.ParameterCount(), gpuModel.ParameterCount());
        var cpuState = cpuModel.StateDict();
        foreach (var (name, t) in gpuModel.StateDict())
        {
            Assert.Equal(Device.Cuda(0), t.Device);
            Assert.Equal(cpuState[name].ShapeArray(), t.ShapeArray());
        }
    }
}

/// <summary>Tests that read the device's memory counters run alone: other tests allocating at the same time would move them.</summary>
[CollectionDefinition(nameof(MemoryCounters), DisableParallelization = true)]
public sealed class MemoryCounters;

/// <summary>The caching allocator, scopes and host transfers.</summary>
[Collection(nameof(MemoryCounters))]
public class MemoryTests : GpuTest
{
    /// <summary>
    /// A training step inside a <see cref="TensorScope"/> gives every GPU temporary back to the cache when the scope
    /// ends, so the memory in use returns to its level before the step; a tensor the scope kept stays readable, one it
    /// released throws.
    /// </summary>
    [Fact]
    public void ScopeReturnsGpuTemporariesToTheCache()
    {
        var gpu = Cuda();
        var model = new CpResNet(CpResNetConfig.FromWidths("8 16 32"), new Generator(3));
        model.To(Device.Cuda(0));
        var x = OnGpu(Rand([16, 1, 28, 28], 5, 0, 1));
        var y = OnGpu(Tensor.FromArray(Enumerable.Range(0, 16).Select(i => (long)(i % 10)).ToArray(), 16));
        var optimizer = new SGD(model.Parameters(), lr: 0.01, momentum: 0.9);
        void Step()
        {
            optimizer.ZeroGrad(setToNone: false);
            Functional.CrossEntropy(model.Call(x), y).Backward();
            optimizer.Step();
        }
        using (TensorScope.Enter()) Step(); // creates the gradients and the momentum buffers, which outlive scopes
        gpu.Synchronize();
        var before = gpu.MemoryInUse;
        Tensor released, kept;
        using (var scope = TensorScope.Enter())
        {
            Step();
            Assert.True(gpu.MemoryInUse > before, "the step's temporaries were not on the GPU");
            released = model.Call(x);
            kept = scope.Keep(model.Call(x));
        }
        var e = Assert.Throws<ObjectDisposedException>(() => released.ToArray());
        Assert.Contains("TensorScope", e.Message);
        Assert.Equal(16 * 10, kept.ToArray().Length);
        var withKept = gpu.MemoryInUse;
        kept.Dispose();
        Assert.Equal(before, gpu.MemoryInUse);
        Assert.True(withKept > before);
    }

    [Fact]
    public void DisposedBlocksAreReusedWithoutNewDeviceMemory()
    {
        var gpu = Cuda();
        gpu.Synchronize();
        var t = Tensor.Zeros([1 << 20], Device.Cuda(0));
        var inUse = gpu.MemoryInUse;
        t.Dispose();
        Assert.Equal(inUse - (4L << 20), gpu.MemoryInUse);
        var cached = gpu.MemoryCached;
        Assert.True(cached >= 4L << 20);
        var again = Tensor.Zeros([1 << 20], Device.Cuda(0));
        Assert.Equal(cached - (4L << 20), gpu.MemoryCached);
        Assert.Equal(0f, again.ToArray().Max());
        again.Dispose();
        var e = Assert.Throws<ObjectDisposedException>(() => again.ToArray());
        Assert.Contains("Dispose", e.Message);
        gpu.EmptyCache();
        Assert.Equal(0, gpu.MemoryCached);
    }

    [Fact]
    public void EveryDtypeRoundTripsIncludingLargeTransfersAndViews()
    {
        Cuda();
        var big = Rand([5_000_000], 1);
        Assert.Equal(big.ToArray(), OnGpu(big).ToArray());
        var longs = Tensor.FromArray(new long[] { long.MinValue, -1, 0, 1L << 40, long.MaxValue }, 5);
        Assert.Equal(longs.ToInt64Array(), OnGpu(longs).ToInt64Array());
        var ints = Tensor.FromArray(new[] { int.MinValue, -5, 7, int.MaxValue }, 4);
        Assert.Equal(ints.ToInt64Array(), OnGpu(ints).ToInt64Array());
        var m = Rand([4, 6], 2);
        Assert.Equal(m.Narrow(0, 1, 2).ToArray(), OnGpu(m).Narrow(0, 1, 2).ToArray());
        Assert.Equal(m.Transpose(0, 1).ToArray(), OnGpu(m).Transpose(0, 1).ToArray());
    }
}
