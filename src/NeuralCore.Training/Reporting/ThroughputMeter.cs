using System.Diagnostics;
using NeuralCore.Backends.Cpu;
using NeuralCore.NN;

namespace NeuralCore.Training.Reporting;

/// <summary>Measures inference speed: the median time of a forward pass at batch size 1 and at batch size N.</summary>
/// <remarks>
/// Each measurement is a forward pass in eval mode without gradients on a random input already on the model's
/// device, followed by copying the logits back to the host (which also waits for an asynchronous device). A few
/// untimed warm-up passes come first, so one-time costs (buffer pools, kernel compilation) are not counted. The
/// median of several runs resists the odd slow run a busy machine produces.
/// </remarks>
public static class ThroughputMeter
{
    /// <summary>Measures <paramref name="model"/> on inputs of shape [batch, ...<paramref name="inputShape"/>].</summary>
    /// <param name="model">The model; its training flag is restored afterwards.</param>
    /// <param name="inputShape">One sample's shape without the batch dimension, e.g. [1, 28, 28].</param>
    /// <param name="batchSize">The large batch size N.</param>
    /// <param name="runs1">Timed runs at batch size 1.</param>
    /// <param name="runsN">Timed runs at batch size N.</param>
    /// <param name="warmup">Untimed runs before each series.</param>
    public static ThroughputResult Measure(Module model, int[] inputShape, int batchSize = 256, int runs1 = 30, int runsN = 5, int warmup = 3)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(runs1, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(runsN, 1);
        var device = model.Parameters().Select(p => (Device?)p.Device).FirstOrDefault() ?? Device.Cpu;
        bool wasTraining = model.Training;
        model.Eval();
        try
        {
            using var noGrad = Autograd.Autograd.NoGrad();
            double one = MedianMilliseconds(model, inputShape, 1, runs1, warmup, device);
            double many = MedianMilliseconds(model, inputShape, batchSize, runsN, warmup, device);
            return new ThroughputResult(one, 1000 / one, batchSize, many, batchSize * 1000 / many, runs1, runsN, CpuThreading.Threads, device.ToString());
        }
        finally
        {
            model.Train(wasTraining);
        }
    }

    private static double MedianMilliseconds(Module model, int[] inputShape, int batch, int runs, int warmup, Device device)
    {
        var input = Tensor.Randn([batch, .. inputShape], new Generator(1), device);
        for (int i = 0; i < warmup; i++) _ = model.Call(input).ToArray();
        var times = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            long start = Stopwatch.GetTimestamp();
            _ = model.Call(input).ToArray();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        Array.Sort(times);
        return runs % 2 == 1 ? times[runs / 2] : (times[runs / 2 - 1] + times[runs / 2]) / 2;
    }
}
