using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NeuralCore.NN;

namespace NeuralCore.Backends.Cpu;

// Sample shards: a batch split into one plan per thread, each running its whole pass on its own thread.
public sealed unsafe partial class CpuInferencePlan
{
    // Each shard takes at least this many samples. At 16 (until the fiftieth session) batches of 16-31 ran as one plan
    // on two threads; in shards of 8-15 the pruned and big CP-ResNets' passes took 0.74 and 0.84 of their time at mel
    // b16, 0.67 and 0.78 at MNIST b16, 0.75 and 0.89 at MNIST b24 (EPYC host, AVX-512), while mel b8 in shards of 4 took
    // 1.34 and 1.15 (docs/benchmarks.md, step 168).
    private const int MinShardSamples = 8;
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

    /// <summary>
    /// The cache a shard's pieces are sized for: the bytes of one core's L2 (read from Linux's sysfs; 1 MiB where it
    /// cannot be read). Tests lower it.
    /// </summary>
    internal static long CacheBytes { get; set; } = CpuCaches.LevelTwoBytes();

    /// <summary>The most samples in a shard's piece regardless of <see cref="CacheBytes"/> (0: by the cache; tests set it).</summary>
    internal static int PieceSamples { get; set; }

    // The shards' plans (null: the pass runs its own steps), the samples before each shard, each shard's step times
    // (Profile), and per call the caller's input and output and whether the shards time their steps. A shard runs its
    // samples in pieces: _shards[i] takes the first pieces, as many samples each as it was compiled for, and
    // _shardRests[i] (when not null) the last ones, one sample fewer each.
    private readonly CpuInferencePlan[]? _shards;
    private readonly CpuInferencePlan?[] _shardRests = [];
    private readonly int[] _shardStart = [];
    private readonly double[][] _shardTimes = [];
    private readonly Action<int>? _runShard;
    private float* _callInput, _callOutput;
    private bool _profiling;
    // Shards of one size run their pieces through ClaimedRanges: each shard's thread takes its own pieces, then the other
    // shards' last ones, with its own plans (the same kernels on pieces of the same sizes; pinned words for the ranges).
    private readonly long[] _pieceWords = [];
    private ClaimedRanges _pieces;

    /// <summary>
    /// The number of sample shards the pass runs in: plans over a share of the batch each, each run on one thread from its
    /// first step to its last (1: one plan runs every step over the whole batch, each step on every thread).
    /// </summary>
    public int SampleShards => _shards?.Length ?? 1;

    /// <summary>
    /// The most samples a shard runs through its steps at once (its pieces; the batch where the pass is not in shards):
    /// a shard whose maps do not fit the cache runs its share of the batch in even pieces that do (see
    /// <see cref="Pieces(long, int)"/>), each sample the same sums in the same order.
    /// </summary>
    public int SamplesPerPiece => _shards?.Max(s => s.InputShape[0]) ?? (InputShape.Length > 0 ? InputShape[0] : 1);

    /// <summary>A pass over sample shards: <paramref name="shards"/> [i] takes samples [start[i], start[i + 1]).</summary>
    private CpuInferencePlan(CpuInferencePlan[] shards, CpuInferencePlan?[] rests, int[] start, CpuInferencePlan whole)
    {
        _steps = [];
        _buffers = [];
        _bufferOf = [];
        _inputLayout = whole._inputLayout;
        _outputLayout = whole._outputLayout;
        InputShape = whole.InputShape;
        OutputShape = whole.OutputShape;
        Description = shards[0].Description;
        _shards = shards;
        _shardRests = rests;
        _shardStart = start;
        _shardTimes = shards.Select(_ => new double[Description.Count]).ToArray();
        _macs = whole._macs;
        _runShard = RunShard;
        bool even = Enumerable.Range(0, shards.Length).All(i => start[i + 1] - start[i] == start[1] - start[0]);
        if (even && shards.Length > 1) _pieceWords = GC.AllocateArray<long>(ClaimedRanges.Words(shards.Length), pinned: true);
    }

    /// <summary>Whether the shards share out their pieces (<see cref="ClaimedRanges"/>): shards of one size.</summary>
    internal bool SharesPieces => _pieceWords.Length > 0;

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
        int largest = Enumerable.Range(0, count).Max(i => start[i + 1] - start[i]);
        // A shard whose pieces are not all of one size holds a second plan, and a second copy of the weights.
        bool twoPlans = (2L * count - 1) * weightBytes <= MaxExtraWeightBytes + weightBytes;
        // Pieces whose plans keep the whole batch's kernels (a few traces at most).
        foreach (int pieces in PieceCounts(WholeGroups(largest, Pieces(whole, n, largest)), start))
            if (ShardPieces(model, inputShape, whole, start, pieces, twoPlans) is { } plan) return plan;
        return null;
    }

    /// <summary>
    /// The piece counts <see cref="Shard"/> tries, in order, for shards [start[i], start[i + 1]): the cache's count
    /// <paramref name="first"/>; where a piece of it is too small for some kernel (Winograd's minimum of tiles, the
    /// samples-in-lanes Winograd's 32 samples), the smaller counts that cut every shard into even pieces, largest first;
    /// then half as many pieces as the count before, down to the whole shard.
    /// </summary>
    /// <remarks>
    /// On the EPYC host (1 MiB of L2) the 25/51/102 and 28/57/115 CP-ResNets' mel b64 shards of 32 want pieces of 3,
    /// whose last piece of 2 samples had too few tiles for Winograd: halving gave 6 pieces (6 + 6 + 5 + 5 + 5 + 5, two
    /// plans and two copies of the weights), where 8 even pieces of 4 took the pass 0.85-0.88 of its time
    /// (docs/benchmarks.md, step 166).
    /// </remarks>
    internal static IEnumerable<int> PieceCounts(int first, int[] start)
    {
        var even = Enumerable.Range(2, Math.Max(0, first - 2)).Reverse()
            .Where(pieces => Enumerable.Range(0, start.Length - 1).All(i => (start[i + 1] - start[i]) % pieces == 0));
        var halved = new List<int>();
        for (int pieces = first; pieces > 1;) halved.Add(pieces = (pieces + 1) / 2);
        return new[] { first }.Concat(even).Concat(halved).Distinct();
    }

    /// <summary>
    /// The shards of <paramref name="start"/>, each running its samples in <paramref name="pieces"/> even pieces (a shard
    /// of 32 samples in 3 pieces runs 11 + 11 + 10, with a second plan for the pieces of 10 if
    /// <paramref name="twoPlans"/>), or null where a piece's plan would not run the kernels <paramref name="whole"/> runs.
    /// Every shard has plans of its own (two of one size would share buffers).
    /// </summary>
    private static CpuInferencePlan? ShardPieces(Module model, int[] inputShape, CpuInferencePlan whole, int[] start, int pieces, bool twoPlans)
    {
        int count = start.Length - 1;
        var shards = new CpuInferencePlan[count];
        var rests = new CpuInferencePlan?[count];
        for (int i = 0; i < count; i++)
        {
            int samples = start[i + 1] - start[i];
            int piece = (samples + pieces - 1) / pieces;
            if (samples % pieces != 0 && !twoPlans) return null;
            if (ShardPlan(model, inputShape, whole, piece) is not { } plan) return null;
            shards[i] = plan;
            if (samples % pieces == 0) continue;
            if (ShardPlan(model, inputShape, whole, piece - 1) is not { } rest) return null;
            rests[i] = rest;
        }
        return new CpuInferencePlan(shards, rests, start, whole);
    }

    /// <summary>
    /// A one-thread plan for <paramref name="samples"/> samples that runs the kernels <paramref name="whole"/> runs, with
    /// its output shape, or null. Winograd's tiles are first chosen for one thread (F(3x3, 3x3) on a piece's few tiles, as
    /// the whole batch's many take it), then as for the whole batch (a small batch's F(2x2, 3x3)).
    /// </summary>
    private static CpuInferencePlan? ShardPlan(Module model, int[] inputShape, CpuInferencePlan whole, int samples)
    {
        foreach (bool oneThreadTiles in new[] { true, false })
        {
            CpuInferencePlan plan;
            try
            {
                plan = Trace(model, [samples, .. inputShape.AsSpan(1)], threaded: false, oneThreadTiles);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException)
            {
                // A model whose shapes hold for its batch only (a reshape to a fixed batch size) runs as one plan.
                return null;
            }
            if (plan.OutputShape.Length == 0 || plan.OutputShape[0] != samples || !plan.OutputShape.AsSpan(1).SequenceEqual(whole.OutputShape.AsSpan(1)))
                return null;
            if (!plan.Kernels.SequenceEqual(whole.Kernels)) continue;
            plan.AdaptiveThreading = false;
            return plan;
        }
        return null;
    }

    /// <summary>
    /// How many pieces a shard of <paramref name="samples"/> samples runs in (<see cref="Pieces(long, int)"/>), for the
    /// bytes a sample takes in <paramref name="whole"/>'s largest buffer (of <paramref name="n"/> samples).
    /// </summary>
    private static int Pieces(CpuInferencePlan whole, int n, int samples) =>
        Pieces(Math.Max(1, whole._buffers.Select(AlignedArrays.Length).DefaultIfEmpty(0).Max() * sizeof(float) / n), samples);

    /// <summary>
    /// How many pieces a shard of <paramref name="samples"/> samples runs in: with <see cref="PieceSamples"/> set, pieces
    /// of at most that many samples; otherwise as many as keep a step's input and output (twice
    /// <paramref name="bytesPerSample"/>, a sample's part of the plan's largest buffer) within half of
    /// <see cref="CacheBytes"/> (the other half holds the weights and a residual), of <see cref="MaxPieceSamples"/> at
    /// most.
    /// </summary>
    /// <remarks>
    /// Measured on the Xeon host (2 MiB of L2; docs/benchmarks-sessions.md, "The Xeon host a thirteenth time"): mel b64's shards of
    /// 32 samples in pieces of 5 (the big model, 32/64/128) and 8 (the pruned one, 19/38/76) took 0.91-0.93 of the time,
    /// while pieces of 11 or 16, whose input and output fill about all of the L2, gained nothing; MNIST b256's shards of
    /// 128 in two pieces of 64 took the big model's pass 0.95 of its time. Until the forty-fourth session a shard that
    /// needed only two pieces ran whole, which kept the pruned model's speed-up over the big one on the Xeon (2.12, where
    /// two pieces took it to 2.05); on the EPYC (1 MiB) the pruned model's shards of 128 need two, and in two pieces of
    /// 64 took 0.90-0.98 of their time ("The EPYC host again"), so every shard now runs in the pieces it needs.
    /// </remarks>
    internal static int Pieces(long bytesPerSample, int samples)
    {
        if (PieceSamples > 0) return (samples + PieceSamples - 1) / PieceSamples;
        long fitting = Math.Clamp(CacheBytes / (4 * bytesPerSample), 1, MaxPieceSamples);
        return (int)((samples + fitting - 1) / fitting);
    }

    /// <summary>
    /// The most samples in a piece whatever the cache holds. On the Xeon host (2 MiB of L2) MNIST b256's shards of 128 fit
    /// the cache's rule whole at 19/38/76 and 24/48/72 channels, and in two pieces of 64 took 0.95-0.99 of the time
    /// (median 0.965 pruned, 0.973 small; in-process alternation, docs/benchmarks.md, step 172), as the big model's
    /// pieces of 64 had (0.95, "The Xeon host a thirteenth time"); pieces of 32 gained nothing more (big 0.998). On
    /// the EPYC (1 MiB) the rule already gives 64.
    /// </summary>
    private const int MaxPieceSamples = 64;

    /// <summary>
    /// <paramref name="pieces"/>, or where a shard of <paramref name="samples"/> would run pieces of more than 32 samples
    /// that are not a multiple of 32, the first count up to twice as many that cuts it into even pieces of a multiple of
    /// 32 (smaller pieces fit the cache too): 32 samples fill the 32 lanes of Winograd's samples-in-lanes blocks (MNIST's
    /// 6 x 6 and 3 x 6 maps), and make whole 32-column panels of any map.
    /// </summary>
    /// <remarks>
    /// On the EPYC host (1 MiB of L2) the big model's MNIST b256 shards of 128 samples fit the cache in 3 pieces of 43,
    /// whose second group of Winograd's lanes held 11 samples: its three 3x3 steps took 1.5x their time in pieces of 32,
    /// and the whole pass 1.23-1.29x (docs/benchmarks-sessions.md, "The EPYC host again").
    /// </remarks>
    internal static int WholeGroups(int samples, int pieces)
    {
        const int group = Gemm.PanelColumns;
        int piece = (samples + pieces - 1) / pieces;
        if (pieces <= 1 || piece <= group || piece % group == 0) return pieces;
        for (int more = pieces + 1; more <= 2 * pieces; more++)
            if (samples % more == 0 && samples / more % group == 0) return more;
        return pieces;
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
        if (SharesPieces)
        {
            int samples = _shardStart[1] - _shardStart[0], piece = _shards![0].InputShape[0];
            // The array is pinned, so its address holds for the call.
            var words = (long*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_pieceWords));
            _pieces = new ClaimedRanges(words, _shards.Length, _shards.Length * ((samples + piece - 1) / piece));
        }
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
        int first = _shardStart[shard], end = _shardStart[shard + 1];
        CpuInferencePlan full = _shards![shard], rest = _shardRests[shard] ?? full;
        int piece = full.InputShape[0];
        // k = ceil(samples / piece) pieces: the first samples - k (piece - 1) of `piece` samples, the others one fewer.
        int pieces = (end - first + piece - 1) / piece, fullPieces = end - first - pieces * (piece - 1);
        var times = _profiling ? _shardTimes[shard] : [];
        if (!SharesPieces)
        {
            for (int i = 0; i < pieces; i++) RunPiece(full, rest, first, i, fullPieces, piece, times);
            return;
        }
        // Piece j of the pass is piece j mod k of shard j / k, every shard laid out as this one.
        while (_pieces.Next(shard, out int j))
            RunPiece(full, rest, _shardStart[j / pieces], j % pieces, fullPieces, piece, times);
    }

    /// <summary>Piece <paramref name="i"/> of the shard from sample <paramref name="first"/>, with this thread's plans.</summary>
    private void RunPiece(CpuInferencePlan full, CpuInferencePlan rest, int first, int i, int fullPieces, int piece, Span<double> times)
    {
        long inner = Tensor.Numel(InputShape.AsSpan(1)), outInner = Tensor.Numel(OutputShape.AsSpan(1));
        int sample = first + Math.Min(i, fullPieces) * piece + Math.Max(i - fullPieces, 0) * (piece - 1);
        var plan = i < fullPieces ? full : rest;
        int samples = plan.InputShape[0];
        var input = new ReadOnlySpan<float>(_callInput + sample * inner, checked((int)(samples * inner)));
        var output = new Span<float>(_callOutput + sample * outInner, checked((int)(samples * outInner)));
        plan.Run(input, output, times);
    }
}
