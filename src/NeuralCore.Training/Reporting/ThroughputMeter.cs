using System.Diagnostics;
using NeuralCore.Backends.Cpu;
using NeuralCore.NN;

namespace NeuralCore.Training.Reporting;

/// <summary>Measures inference speed: the median time of a forward pass at batch size 1 and at batch size N.</summary>
/// <remarks>
/// Each measurement is a forward pass in eval mode without gradients on a random input already on the model's
/// device, followed by copying the logits back to the host (which also waits for an asynchronous device). On the CPU
/// the pass is the model compiled into a <see cref="CpuInferencePlan"/> (what a deployment would run), or the eager
/// forward for a model the plan cannot compile; <see cref="ThroughputResult.Engine"/> says which. Untimed warm-up
/// passes come first, for at least <see cref="MinWarmup"/>, so that one-time costs (buffer pools, kernel
/// compilation, the JIT's optimised recompilation of hot methods) are not counted. Several
/// models are measured in turns (run 1 of every model, then run 2, ...), so that a busy spell of the machine slows
/// them all alike instead of whichever model happened to be measured then; the median of the runs resists the odd
/// slow run.
/// </remarks>
public static class ThroughputMeter
{
    /// <summary>Measures one model on inputs of shape [batch, ...<paramref name="inputShape"/>].</summary>
    /// <param name="model">The model; its training flag is restored afterwards.</param>
    /// <param name="inputShape">One sample's shape without the batch dimension, e.g. [1, 28, 28].</param>
    /// <param name="batchSize">The large batch size N.</param>
    /// <param name="runs1">Timed runs at batch size 1.</param>
    /// <param name="runsN">Timed runs at batch size N.</param>
    /// <param name="warmup">Untimed runs before each series.</param>
    public static ThroughputResult Measure(Module model, int[] inputShape, int batchSize = 256, int runs1 = 30, int runsN = 5, int warmup = 3) =>
        MeasureAll([(model, inputShape)], batchSize, runs1, runsN, warmup)[0];

    /// <summary>Measures several models in turns (see the remarks); the results are in the order of <paramref name="models"/>.</summary>
    /// <param name="models">Each model with the shape of one of its samples without the batch dimension.</param>
    /// <param name="batchSize">The large batch size N.</param>
    /// <param name="runs1">Timed runs per model at batch size 1.</param>
    /// <param name="runsN">Timed runs per model at batch size N.</param>
    /// <param name="warmup">Untimed runs per model before each series.</param>
    public static IReadOnlyList<ThroughputResult> MeasureAll(IReadOnlyList<(Module Model, int[] InputShape)> models, int batchSize = 256, int runs1 = 30, int runsN = 5, int warmup = 3)
    {
        ArgumentNullException.ThrowIfNull(models);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(runs1, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(runsN, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(warmup);
        var devices = models.Select(m => m.Model.Parameters().Select(p => (Device?)p.Device).FirstOrDefault() ?? Device.Cpu).ToArray();
        var wasTraining = models.Select(m => m.Model.Training).ToArray();
        foreach (var (model, _) in models) model.Eval();
        try
        {
            using var noGrad = Autograd.Autograd.NoGrad();
            var engines = new string[models.Count];
            var one = MedianMilliseconds(models, devices, 1, runs1, warmup, engines);
            var many = MedianMilliseconds(models, devices, batchSize, runsN, warmup, engines);
            return models.Select((_, i) => new ThroughputResult(one[i], 1000 / one[i], batchSize, many[i], batchSize * 1000 / many[i],
                runs1, runsN, CpuThreading.Threads, devices[i].ToString(), engines[i])).ToArray();
        }
        finally
        {
            for (int i = 0; i < models.Count; i++) models[i].Model.Train(wasTraining[i]);
        }
    }

    /// <summary>Untimed passes go on for at least this long per model and batch size.</summary>
    public static readonly TimeSpan MinWarmup = TimeSpan.FromSeconds(1);

    private static double[] MedianMilliseconds(IReadOnlyList<(Module Model, int[] InputShape)> models, Device[] devices, int batch, int runs, int warmup,
        string[] engines)
    {
        var inputs = models.Select((m, i) => Tensor.Randn([batch, .. m.InputShape], new Generator(1), devices[i])).ToArray();
        var passes = models.Select((m, i) => Pass(m.Model, inputs[i], devices[i], out engines[i])).ToArray();
        for (int i = 0; i < models.Count; i++)
        {
            long start = Stopwatch.GetTimestamp();
            for (int w = 0; w < warmup || (warmup > 0 && Stopwatch.GetElapsedTime(start) < MinWarmup); w++) passes[i]();
        }
        var times = new double[models.Count][];
        for (int i = 0; i < models.Count; i++) times[i] = new double[runs];
        for (int r = 0; r < runs; r++)
            for (int i = 0; i < models.Count; i++)
            {
                long start = Stopwatch.GetTimestamp();
                passes[i]();
                times[i][r] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }
        return times.Select(t =>
        {
            Array.Sort(t);
            return runs % 2 == 1 ? t[runs / 2] : (t[runs / 2 - 1] + t[runs / 2]) / 2;
        }).ToArray();
    }

    /// <summary>One timed pass: the compiled plan on the CPU where the model compiles, else the eager forward.</summary>
    private static Action Pass(Module model, Tensor input, Device device, out string engine)
    {
        if (device == Device.Cpu)
        {
            try
            {
                var plan = CpuInferencePlan.Compile(model, input.ShapeArray());
                var logits = new float[Tensor.Numel(plan.OutputShape)];
                engine = "plan";
                return () => plan.Run(input.AsSpan(), logits);
            }
            catch (NotSupportedException)
            {
                // An op the plan cannot run: time the eager forward instead (the result says so).
            }
        }
        engine = "eager";
        return () => _ = model.Call(input).ToArray();
    }
}
