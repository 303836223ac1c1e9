using NeuralCore.NN;

namespace NeuralCore.Backends.Cpu;

// Sample shards: a batch split into one plan per thread, each running its whole pass on its own thread.
public sealed unsafe partial class CpuInferencePlan
{
    // Each shard takes at least this many samples.
    private const int MinShardSamples = 16;
    /// <summary>
    /// Each shard holds its own copy of the folded weights: the copies beyond the first stay within this many bytes
    /// (64 MiB; tests lower it).
    /// </summary>
    internal static long MaxExtraWeightBytes { get; set; } = 64L << 20;

    /// <summary>
    /// Whether <see cref="Compile"/> may split a batch into sample shards (tests turn it off to reach the threaded steps
    /// of one plan).
    /// </summary>
    internal static bool ShardingEnabled { get; set; } = true;

    // The shards' plans (null: the pass runs its own steps), the samples before each shard, each shard's step times
    // (Profile), and per call the caller's input and output and whether the shards time their steps.
    private readonly CpuInferencePlan[]? _shards;
    private readonly int[] _shardStart = [];
    private readonly double[][] _shardTimes = [];
    private readonly Action<int>? _runShard;
    private float* _callInput, _callOutput;
    private bool _profiling;

    /// <summary>
    /// The number of sample shards the pass runs in: plans over a share of the batch each, each run on one thread from its
    /// first step to its last (1: one plan runs every step over the whole batch, each step on every thread).
    /// </summary>
    public int SampleShards => _shards?.Length ?? 1;

    /// <summary>A pass over sample shards: <paramref name="shards"/> [i] takes samples [start[i], start[i + 1]).</summary>
    private CpuInferencePlan(CpuInferencePlan[] shards, int[] start, int[] inputShape, int[] outputShape, IReadOnlyList<string> description)
    {
        _steps = [];
        _buffers = [];
        _bufferOf = [];
        _inputLayout = Layout(inputShape);
        _outputLayout = Layout(outputShape);
        InputShape = inputShape;
        OutputShape = outputShape;
        Description = description;
        _shards = shards;
        _shardStart = start;
        _shardTimes = shards.Select(_ => new double[description.Count]).ToArray();
        _macs = shards.Sum(s => s._macs);
        _runShard = RunShard;
    }

    /// <summary>
    /// The pass at a batch of N samples on T threads as T plans of about N / T samples, or null: each thread then runs a
    /// whole shard's pass on its own (its steps inline), with one wake-up per call instead of one or two per step, and
    /// no step reads a line another core wrote; on this VM, when its two vCPUs share no cache, every step of the MNIST
    /// batch-256 pass had lost 7-130 µs to that traffic (see docs/benchmarks.md, step 108). Only where each shard's plan
    /// runs the steps <paramref name="whole"/> runs, with the same kernels (the same <see cref="Description"/> but for
    /// the row bands and column chains that lay a step out for several threads): each sample's outputs are then the same
    /// sums in the same order as in the whole batch's pass, so the bits are the same on any number of threads. Each
    /// shard holds its own folded weights, so a large model takes fewer shards (the copies beyond the first within 64 MiB).
    /// </summary>
    private static CpuInferencePlan? Shard(Module model, int[] inputShape, CpuInferencePlan whole)
    {
        int n = inputShape.Length > 0 ? inputShape[0] : 1;
        long weightBytes = Math.Max(1, model.Parameters().Sum(p => (long)p.NumElements) * sizeof(float));
        int count = (int)Math.Min(Math.Min(CpuThreading.Threads, n / MinShardSamples), 1 + MaxExtraWeightBytes / weightBytes);
        if (!ShardingEnabled || count < 2 || !whole.UsesWorkers || whole.OutputShape.Length == 0 || whole.OutputShape[0] != n) return null;
        var start = Enumerable.Range(0, count + 1).Select(i => (int)((long)i * n / count)).ToArray();
        var shards = new CpuInferencePlan[count];
        for (int i = 0; i < count; i++)
        {
            // A plan of its own for each shard (two of one size would share buffers), the kernels of the whole batch's.
            int samples = start[i + 1] - start[i];
            CpuInferencePlan plan;
            try
            {
                plan = Trace(model, [samples, .. inputShape.AsSpan(1)], threaded: false);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException)
            {
                // A model whose shapes hold for its batch only (a reshape to a fixed batch size) runs as one plan.
                return null;
            }
            if (plan.OutputShape.Length == 0 || plan.OutputShape[0] != samples || !plan.OutputShape.AsSpan(1).SequenceEqual(whole.OutputShape.AsSpan(1))
                || !plan.Kernels.SequenceEqual(whole.Kernels))
                return null;
            plan.AdaptiveThreading = false;
            shards[i] = plan;
        }
        return new CpuInferencePlan(shards, start, inputShape, whole.OutputShape, shards[0].Description);
    }

    /// <summary><see cref="Description"/> without the row bands and column chains that lay steps out between threads (which keep the bits).</summary>
    private IEnumerable<string> Kernels => _steps.SelectMany(s => s is MemberRunStep run ? run.Members : new[] { s })
        .Select(s => s is ConvStep conv ? conv.Describe(layout: false) : s.ToString()!);

    /// <summary>Runs the shards, as many at once as there are threads; each shard's steps run on its own thread.</summary>
    private void RunShards(float* input, float* output, Span<double> stepTimes)
    {
        _callInput = input;
        _callOutput = output;
        _profiling = !stepTimes.IsEmpty;
        if (_profiling)
            foreach (var times in _shardTimes) Array.Clear(times);
        try
        {
            CpuThreading.For(_shards!.Length, _runShard!);
        }
        finally
        {
            _callInput = _callOutput = null;
        }
        if (!_profiling) return;
        // Each step's time is the shards' mean: a thread's time for its share of the step.
        for (int i = 0; i < stepTimes.Length; i++)
            stepTimes[i] += _shardTimes.Sum(t => t[i]) / _shardTimes.Length;
    }

    private void RunShard(int shard)
    {
        long inner = Tensor.Numel(InputShape.AsSpan(1)), outInner = Tensor.Numel(OutputShape.AsSpan(1));
        int first = _shardStart[shard], samples = _shardStart[shard + 1] - first;
        var input = new ReadOnlySpan<float>(_callInput + first * inner, checked((int)(samples * inner)));
        var output = new Span<float>(_callOutput + first * outInner, checked((int)(samples * outInner)));
        _shards![shard].Run(input, output, _profiling ? _shardTimes[shard] : []);
    }
}
