using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using NeuralCore.Backends.Cpu;
using NeuralCore.Models;
using NeuralCore.NN;
using NeuralCore.Optim;
using NeuralCore.Training.Reporting;

namespace NeuralCore.Cli.Commands;

/// <summary>
/// <c>neuralcore bench</c>: times one training step (forward, cross-entropy, backward, Adam) or one inference pass of a
/// CP-ResNet on random inputs of a fixed shape, and prints the median and spread per iteration and samples per second;
/// with <c>--baseline</c>, also a second model's, the two taking turns block by block, and the speed-up.
/// </summary>
internal static class BenchCommand
{
    public static Command Create(CliConsole console)
    {
        var model = CommonOptions.Model();
        var width = CommonOptions.ChannelWidth(forCheckpoint: true);
        var checkpoint = CommonOptions.Checkpoint(required: false);
        var inputShape = new Option<string>("--input-shape", "--input_shape")
        {
            Description = "Shape of one input sample without the batch dimension: channels,height,width (MNIST 1,28,28; mel 1,128,100).",
            DefaultValueFactory = _ => "1,28,28",
            HelpName = "C,H,W",
        };
        var batchSize = CommonOptions.BatchSize("Samples per iteration (default 256).");
        var mode = new Option<string>("--mode")
        {
            Description = "What one iteration does: train (forward, cross-entropy loss, backward, Adam step) or infer (eval-mode forward without gradients).",
            DefaultValueFactory = _ => "train",
            HelpName = "train|infer",
        };
        var iterations = new Option<int>("--iterations")
        {
            Description = "Timed iterations (default 20).",
            DefaultValueFactory = _ => 20,
        };
        var warmup = new Option<int>("--warmup")
        {
            Description = "Untimed iterations first (default 5; with N > 0 warming goes on until 3 s have passed, so the JIT has recompiled every hot method in its optimised tier): JIT, pooled buffers and caches warm up.",
            DefaultValueFactory = _ => 5,
        };
        var threads = new Option<int?>("--threads")
        {
            Description = "CPU threads of the kernels (default: NEURALCORE_THREADS, else all cores).",
        };
        var eager = new Option<bool>("--eager")
        {
            Description = "Time the eager pass (op by op, as model.Call and Backward() run it) instead of the compiled one: CpuInferencePlan for --mode infer (batch norm folded, activations and residual additions fused), CpuTrainingPlan for --mode train on the CPU (the same kernels and bits, no per-op bookkeeping).",
        };
        var profile = new Option<bool>("--profile")
        {
            Description = "Also print where an iteration spends its time, layer by layer, from runs after the timed ones: each step of the compiled plan (with --mode train, each op's forward and then its backward), or with --eager --mode train each op's forward and backward as autograd records and runs them (time since the op before it). The optimizer step is not counted.",
        };
        var baseline = new Option<string?>("--baseline")
        {
            Description = "Also time a baseline model in the same process, the two taking turns in up to 20 rounds of a block of iterations each, " +
                "and report the speed-up over it (the baseline's median time / this model's, per round: median and quartiles over the rounds) next " +
                "to the ratio of their multiply-adds; e.g. the unpruned model a pruned checkpoint came from. Channel widths (\"32 64 128\") or a checkpoint file.",
            HelpName = "WIDTHS|FILE",
        };
        var device = new Option<string>("--device") { Description = TrainingOptionSet.DeviceHelp, DefaultValueFactory = _ => "cpu" };
        var json = CommonOptions.Json();
        var command = new Command("bench",
            "Time a CP-ResNet training step or inference pass on random inputs: median and spread per iteration, samples per second. " +
            "Give the architecture (--model, --channel-width) or a --checkpoint (e.g. a pruned model).")
        {
            model, width, checkpoint, inputShape, batchSize, mode, iterations, warmup, threads, eager, profile, baseline, device, json,
        };
        command.SetAction(parse =>
        {
            var (_, widths) = CommonOptions.ReadModel(parse, model, width);
            var shape = CommonOptions.ParseShape(parse.GetValue(inputShape)!, "--input-shape");
            var what = parse.GetValue(mode)!.Trim().ToLowerInvariant();
            if (what is not ("train" or "infer"))
                throw new CliException($"--mode {what} is not known; use train or infer.", Program.UsageError);
            int batch = parse.GetValue(batchSize), count = parse.GetValue(iterations), warm = parse.GetValue(warmup);
            if (batch < 1) throw new CliException($"--batch-size must be at least 1; found {batch}.", Program.UsageError);
            if (what == "train" && batch < 2) throw new CliException("--mode train needs --batch-size of at least 2 (batch norm needs two samples).", Program.UsageError);
            if (count < 1) throw new CliException($"--iterations must be at least 1; found {count}.", Program.UsageError);
            if (warm < 0) throw new CliException($"--warmup must be at least 0; found {warm}.", Program.UsageError);
            if (parse.GetValue(threads) is { } t)
            {
                if (t < 1) throw new CliException($"--threads must be at least 1; found {t}.", Program.UsageError);
                CpuThreading.Threads = t;
            }
            var dev = TrainingOptionSet.ParseDevice(parse.GetValue(device)!);
            var path = parse.GetValue(checkpoint);
            var source = path is null ? ModelSource.Build(widths, seed: 0) : ModelSource.Load(path, widths);
            CheckInputChannels(source, shape, "the model");
            var baselineSpec = parse.GetValue(baseline);
            ModelSource? reference = null;
            if (baselineSpec is not null)
            {
                reference = LooksLikeWidths(baselineSpec) ? ModelSource.Build(baselineSpec, seed: 0) : ModelSource.Load(baselineSpec, null);
                CheckInputChannels(reference, shape, "the baseline");
            }

            bool useEager = parse.GetValue(eager);
            if (what == "infer" && !useEager && dev != Device.Cpu)
                throw new CliException($"The compiled inference plan runs on the CPU; add --eager to time inference on {dev}.", Program.UsageError);
            // The compiled training step runs on the CPU; on another device training is timed eagerly.
            var engine = useEager || (what == "train" && dev != Device.Cpu) ? "eager" : "plan";
            bool withProfile = parse.GetValue(profile);
            if (withProfile && what == "infer" && engine != "plan")
                throw new CliException("--profile with --mode infer times the steps of the compiled inference plan; leave out --eager (or profile --mode train).", Program.UsageError);
            bool train = what == "train", compiled = engine == "plan";
            var timed = new Timed(source, dev, shape, batch, train, compiled, console.Cancellation);
            var other = reference is null ? null : new Timed(reference, dev, shape, batch, train, compiled, console.Cancellation);
            var (result, baselineResult, roundRatios, stepRatios) = Measure(timed, other, count, warm, withProfile);
            bool asJson = parse.GetValue(json);
            var human = console.Human(asJson);
            // The widths and multiply-adds the models really have (a pruned checkpoint's config keeps the widths it was pruned from).
            var described = RunReader.Describe(source.Model, shape);
            var referenceDescribed = reference is null ? null : RunReader.Describe(reference.Model, shape);
            human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{Describe(source, described)}, {what} ({engine}), batch {batch} x {string.Join("x", shape)}, {dev}{(dev == Device.Cpu ? $" ({CpuBackend.VectorKernels})" : "")}, {CpuThreading.Threads} thread(s), {count} iterations after {warm} warm-up"));
            WriteTimes(human, result);
            human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"managed allocation {result.AllocatedBytesPerIteration / 1024.0:F1} KiB per iteration; peak working set {result.PeakWorkingSet / 1048576.0:F0} MiB; pooled buffers {result.PooledBytes / 1048576.0:F1} MiB; plan buffers {result.PlanBytes / 1048576.0:F1} MiB{Shards(result)}"));
            Speedup? speedup = null;
            if (reference is not null && baselineResult is not null)
            {
                speedup = new Speedup(roundRatios!, described.Macs, referenceDescribed!.Macs);
                human.WriteLine($"baseline {Describe(reference, referenceDescribed)}, taking turns with the model in {speedup.Rounds} rounds:");
                WriteTimes(human, baselineResult);
                human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"speed-up over the baseline {speedup.Median:F3}x (over the rounds: p25 {speedup.P25:F3}, p75 {speedup.P75:F3}); " +
                    $"multiply-adds {speedup.MacRatio:F3}x fewer, so {100 * speedup.Median / speedup.MacRatio:F0} % of the speed-up they allow"));
            }
            if (result.Profile is { } steps)
            {
                double total = steps.Sum(s => s.Milliseconds);
                string unit = what == "train" ? "per op (mean ms per step, share of the profiled ops"
                    : result.Shards > 1 ? "per step (mean ms of each sample shard's thread, share of the pass" : "per step (mean ms, share of the pass";
                if (stepRatios is not null)
                {
                    // Steps taken in turns with the baseline's: each figure the median over the rounds.
                    human.WriteLine($"{unit}; the baseline's mean ms and its time over the model's, medians over {speedup!.Rounds} rounds taken in turns):");
                    for (int i = 0; i < steps.Count; i++)
                        human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"  {steps[i].Milliseconds,9:F4} {100 * steps[i].Milliseconds / total,5:F1} %  {baselineResult!.Profile![i].Milliseconds,9:F4} {FormatRatio(stepRatios[i]),7}  {steps[i].Step}"));
                }
                else
                {
                    human.WriteLine($"{unit}):");
                    foreach (var (step, ms) in steps)
                        human.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {ms,9:F4} {100 * ms / total,5:F1} %  {step}"));
                    if (baselineResult?.Profile is { } baselineSteps)
                    {
                        double baselineTotal = baselineSteps.Sum(s => s.Milliseconds);
                        human.WriteLine($"the baseline {unit}):");
                        foreach (var (step, ms) in baselineSteps)
                            human.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {ms,9:F4} {100 * ms / baselineTotal,5:F1} %  {step}"));
                    }
                }
            }
            if (asJson)
            {
                var o = new JsonObject
                {
                    ["model"] = "cpresnet",
                    ["channel_widths"] = Json.Array(described.ChannelWidths!),
                    ["checkpoint"] = source.Checkpoint is null ? null : Path.GetFullPath(source.Checkpoint),
                    ["mode"] = what,
                    ["engine"] = engine,
                    ["device"] = dev.ToString(),
                    ["threads"] = CpuThreading.Threads,
                    ["cpu_vector_kernels"] = CpuBackend.VectorKernels,
                    ["batch_size"] = batch,
                    ["input_shape"] = Json.Array(shape),
                    ["iterations"] = count,
                    ["warmup"] = warm,
                };
                AddTimes(o, result);
                o["peak_working_set_bytes"] = result.PeakWorkingSet;
                o["pooled_bytes"] = result.PooledBytes;
                if (result.Profile is { } profiled)
                    o["profile"] = ProfileJson(profiled, stepRatios, baselineResult?.Profile);
                if (speedup is not null)
                {
                    o["macs"] = speedup.Macs;
                    var baselineJson = new JsonObject
                    {
                        ["channel_widths"] = Json.Array(referenceDescribed!.ChannelWidths!),
                        ["checkpoint"] = reference!.Checkpoint is null ? null : Path.GetFullPath(reference.Checkpoint),
                        ["macs"] = speedup.BaselineMacs,
                    };
                    AddTimes(baselineJson, baselineResult!);
                    if (baselineResult!.Profile is { } baselineProfiled) baselineJson["profile"] = ProfileJson(baselineProfiled, null, null);
                    o["baseline"] = baselineJson;
                    o["speedup"] = new JsonObject
                    {
                        ["median"] = speedup.Median,
                        ["rounds"] = speedup.Rounds,
                        ["p25"] = speedup.P25,
                        ["p75"] = speedup.P75,
                        ["mac_ratio"] = speedup.MacRatio,
                    };
                }
                console.Out.WriteLine(o.ToJsonString(Json.Indented));
            }
            return Program.Success;
        });
        return command;
    }

    /// <summary>
    /// The profile's steps as JSON: <c>step</c> and <c>mean_ms</c>, and where the baseline's steps were matched one to one,
    /// its <c>baseline_mean_ms</c> and <c>speedup</c> (the baseline's time over the model's, null where the model's
    /// step took no measurable time).
    /// </summary>
    private static JsonArray ProfileJson(IReadOnlyList<(string Step, double Milliseconds)> steps, double[]? ratios,
        IReadOnlyList<(string Step, double Milliseconds)>? baseline)
    {
        var array = new JsonArray();
        for (int i = 0; i < steps.Count; i++)
        {
            var step = new JsonObject { ["step"] = steps[i].Step, ["mean_ms"] = steps[i].Milliseconds };
            if (ratios is not null)
            {
                step["baseline_mean_ms"] = baseline![i].Milliseconds;
                step["speedup"] = double.IsFinite(ratios[i]) ? ratios[i] : null;
            }
            array.Add((JsonNode)step);
        }
        return array;
    }

    private static string FormatRatio(double ratio) =>
        double.IsFinite(ratio) ? string.Create(CultureInfo.InvariantCulture, $"{ratio:F2}x") : "-";

    private static void CheckInputChannels(ModelSource source, int[] shape, string which)
    {
        if (shape[0] != source.Config.InputChannels)
            throw new CliException(
                $"--input-shape {string.Join(",", shape)} has {shape[0]} channels but {which} takes {source.Config.InputChannels}; pass --input-shape {source.Config.InputChannels},{shape[1]},{shape[2]}.",
                Program.UsageError);
    }

    /// <summary>True when a --baseline value is channel widths (numbers separated by spaces or commas) rather than a file.</summary>
    private static bool LooksLikeWidths(string spec) =>
        spec.Split([' ', ','], StringSplitOptions.RemoveEmptyEntries) is { Length: > 0 } parts && parts.All(p => p.All(char.IsAsciiDigit));

    private static string Describe(ModelSource source, ModelResult described) =>
        $"CP-ResNet {string.Join(" ", described.ChannelWidths!)}{(source.Checkpoint is null ? "" : $" ({source.Checkpoint})")}";

    /// <summary>The median and spread per iteration, samples per second, allocation and every iteration's time of one model, into its JSON object.</summary>
    private static void AddTimes(JsonObject o, BenchResult result)
    {
        o["median_ms"] = result.Median;
        o["min_ms"] = result.Min;
        o["p25_ms"] = result.P25;
        o["p75_ms"] = result.P75;
        o["max_ms"] = result.Max;
        o["samples_per_second"] = result.SamplesPerSecond;
        o["allocated_bytes_per_iteration"] = result.AllocatedBytesPerIteration;
        o["plan_buffer_bytes"] = result.PlanBytes;
        o["sample_shards"] = result.Shards;
        o["samples_per_piece"] = result.Piece;
        o["times_ms"] = new JsonArray(result.Times.Select(v => (JsonNode)v).ToArray());
    }

    /// <summary>Where the pass runs in sample shards: how many, and the pieces they run their samples in if smaller.</summary>
    private static string Shards(BenchResult result) =>
        result.Shards <= 1 ? "" : result.Piece * result.Shards < result.Batch
            ? $" in {result.Shards} sample shards, pieces of {result.Piece} samples" : $" in {result.Shards} sample shards";

    private static void WriteTimes(TextWriter human, BenchResult result) =>
        human.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"median {result.Median:F3} ms  (min {result.Min:F3}, p25 {result.P25:F3}, p75 {result.P75:F3}, max {result.Max:F3})  " +
            $"{result.SamplesPerSecond:F0} samples/s"));

    /// <summary>The q-quantile of sorted values, interpolated between neighbours.</summary>
    private static double Quantile(double[] sorted, double q)
    {
        double at = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(at), hi = (int)Math.Ceiling(at);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
    }

    /// <summary>Times per iteration in milliseconds (in run order) and their summary.</summary>
    private sealed record BenchResult(double[] Times, int Batch, long AllocatedBytesPerIteration, long PeakWorkingSet, long PooledBytes,
        long PlanBytes, int Shards, int Piece, IReadOnlyList<(string Step, double Milliseconds)>? Profile)
    {
        private double[] Sorted { get; } = Times.Order().ToArray();

        public double Median => Quantile(Sorted, 0.5);

        public double Min => Sorted[0];

        public double Max => Sorted[^1];

        public double P25 => Quantile(Sorted, 0.25);

        public double P75 => Quantile(Sorted, 0.75);

        public double SamplesPerSecond => Batch / (Median / 1000);
    }

    /// <summary>
    /// The baseline's median time over the model's in each round of <see cref="Measure"/> (blocks timed next to each other,
    /// so that a slow spell of the machine slows both), and the ratio of their multiply-adds: the speed-up the work alone
    /// would give.
    /// </summary>
    private sealed class Speedup(double[] roundRatios, long macs, long baselineMacs)
    {
        private readonly double[] _sorted = roundRatios.Order().ToArray();

        public int Rounds => _sorted.Length;

        public long Macs => macs;

        public long BaselineMacs => baselineMacs;

        public double MacRatio => (double)baselineMacs / macs;

        public double Median => Quantile(_sorted, 0.5);

        public double P25 => Quantile(_sorted, 0.25);

        public double P75 => Quantile(_sorted, 0.75);
    }

    /// <summary>Rounds of a comparison with a baseline: at most this many, each timing a block of each model's iterations.</summary>
    private const int MaxRounds = 20;

    /// <summary>Round r's block of the <paramref name="count"/> timed iterations of each model: [start, end).</summary>
    private static (int Start, int End) Block(int r, int rounds, int count) => ((int)((long)r * count / rounds), (int)((long)(r + 1) * count / rounds));

    /// <summary>
    /// Times <paramref name="model"/>, and <paramref name="baseline"/> when given, the two taking turns: in each of up to
    /// <see cref="MaxRounds"/> rounds, a block of one model's iterations, then a block of the other's (which goes first
    /// alternates by round), each block after one untimed iteration that brings its model's weights and buffers back into
    /// the caches the other model used (alternating single iterations had timed each model on cold caches: the pruned
    /// MNIST model's batch-256 pass 1.53 ms against 1.37 ms alone). A slow spell of the machine then slows both models'
    /// blocks of that round alike.
    /// </summary>
    private static (BenchResult Model, BenchResult? Baseline, double[]? RoundRatios, double[]? StepRatios) Measure(Timed model, Timed? baseline,
        int count, int warm, bool profile)
    {
        // The JIT recompiles a hot method in its optimised tier only after 30 calls and a 0.1 s pause in which no new
        // method was compiled; a training step keeps compiling new methods for its first second or so, and until then
        // iterations run up to 2x slower. Warming for 3 s lets every hot method reach its final code before timing.
        if (warm > 0)
        {
            var warming = Stopwatch.StartNew();
            for (int done = 0; done < warm || warming.Elapsed.TotalSeconds < 3; done++)
            {
                model.Iterate();
                baseline?.Iterate();
            }
        }
        var times = new double[count];
        var baselineTimes = new double[baseline is null ? 0 : count];
        long allocated = 0, baselineAllocated = 0;
        if (baseline is null)
        {
            for (int it = 0; it < count; it++) allocated += model.TimeOne(out times[it]);
        }
        int rounds = baseline is null ? 0 : Math.Min(count, MaxRounds);
        var ratios = baseline is null ? null : new double[rounds];
        for (int r = 0; r < rounds; r++)
        {
            var (start, end) = Block(r, rounds, count);
            for (int turn = 0; turn < 2; turn++)
            {
                // The model goes first in even rounds, the baseline in odd ones.
                bool modelsTurn = (turn == 0) == (r % 2 == 0);
                var (timed, into) = modelsTurn ? (model, times) : (baseline!, baselineTimes);
                timed.Iterate();
                long bytes = 0;
                for (int it = start; it < end; it++) bytes += timed.TimeOne(out into[it]);
                if (modelsTurn) allocated += bytes;
                else baselineAllocated += bytes;
            }
            ratios![r] = Median(baselineTimes[start..end]) / Median(times[start..end]);
        }
        using var process = Process.GetCurrentProcess();
        // Timing each step adds a clock read per step, so the profile is taken in its own runs after the timed ones.
        IReadOnlyList<(string, double)>? steps = null, baselineSteps = null;
        double[]? stepRatios = null;
        if (profile && baseline is null) steps = model.Profile(count);
        else if (profile) (steps, baselineSteps, stepRatios) = ProfileInTurns(model, baseline!, count);
        var result = new BenchResult(times, model.Batch, allocated / count, process.PeakWorkingSet64, TensorScope.PooledBytes, model.PlanBytes, model.Shards, model.Piece, steps);
        var other = baseline is null ? null
            : new BenchResult(baselineTimes, baseline.Batch, baselineAllocated / count, process.PeakWorkingSet64, TensorScope.PooledBytes, baseline.PlanBytes, baseline.Shards, baseline.Piece, baselineSteps);
        return (result, other, ratios, stepRatios);
    }

    /// <summary>
    /// Both models' profiles in the timed runs' rounds, taking turns as they did: each step's figure is the median over
    /// the rounds of its mean. Where the two compiled plans have the same steps one to one (a pruned model and the one
    /// it came from), each step's speed-up is the median over the rounds of the baseline's mean over the model's, so a
    /// slow spell of the machine, which slows both profiles of a round, does not move it; profiles of two models taken
    /// one after the other disagreed by a third on a busy host. Eager profiles list their ops largest first, so they are
    /// not matched.
    /// </summary>
    private static (IReadOnlyList<(string, double)> Model, IReadOnlyList<(string, double)> Baseline, double[]? Ratios) ProfileInTurns(
        Timed model, Timed baseline, int count)
    {
        int rounds = Math.Min(count, MaxRounds);
        var mine = new List<IReadOnlyList<(string Step, double Milliseconds)>>();
        var theirs = new List<IReadOnlyList<(string Step, double Milliseconds)>>();
        for (int r = 0; r < rounds; r++)
        {
            var (start, end) = Block(r, rounds, count);
            for (int turn = 0; turn < 2; turn++)
            {
                // As in the timed rounds: who goes first alternates, and an untimed iteration brings each model back into the caches.
                bool modelsTurn = (turn == 0) == (r % 2 == 0);
                var timed = modelsTurn ? model : baseline;
                timed.Iterate();
                (modelsTurn ? mine : theirs).Add(timed.Profile(end - start)!);
            }
        }
        bool matched = model.Compiled && baseline.Compiled && mine.Concat(theirs).All(p => p.Count == mine[0].Count);
        var modelSteps = MedianSteps(mine);
        var baselineSteps = MedianSteps(theirs);
        if (!matched) return (modelSteps, baselineSteps, null);
        var stepRatios = new double[mine[0].Count];
        for (int i = 0; i < stepRatios.Length; i++)
        {
            var perRound = Enumerable.Range(0, rounds).Where(r => mine[r][i].Milliseconds > 0)
                .Select(r => theirs[r][i].Milliseconds / mine[r][i].Milliseconds).ToArray();
            stepRatios[i] = perRound.Length == 0 ? double.NaN : Median(perRound);
        }
        return (modelSteps, baselineSteps, stepRatios);
    }

    /// <summary>
    /// Each step of the first profile with the median over the profiles of its time: by position where every profile
    /// lists as many steps (a plan's steps may share a name, two blocks' 3x3s), else by name (an eager run's ops).
    /// </summary>
    private static List<(string, double)> MedianSteps(List<IReadOnlyList<(string Step, double Milliseconds)>> profiles)
    {
        var first = profiles[0];
        if (profiles.All(p => p.Count == first.Count))
            return Enumerable.Range(0, first.Count).Select(i => (first[i].Step, Median(profiles.Select(p => p[i].Milliseconds).ToArray()))).ToList();
        return first.Select(s => (s.Step, Median(profiles.Select(p => p.FirstOrDefault(q => q.Step == s.Step).Milliseconds).ToArray()))).ToList();
    }

    private static double Median(double[] values) => Quantile(values.Order().ToArray(), 0.5);

    /// <summary>One model made ready to time: its inputs, optimizer and compiled plan, and one iteration of it.</summary>
    private sealed class Timed
    {
        private readonly CpResNet _net;
        private readonly Tensor _x, _y;
        private readonly Optimizer? _optimizer;
        private readonly CpuInferencePlan? _compiled;
        private readonly CpuTrainingPlan? _trainingPlan;
        private readonly float[] _logits;
        private readonly CancellationToken _cancel;

        public Timed(ModelSource source, Device device, int[] shape, int batch, bool train, bool plan, CancellationToken cancel)
        {
            _net = source.Model;
            _net.To(device);
            _cancel = cancel;
            Batch = batch;
            var generator = new Generator(1);
            _x = Tensor.Rand([batch, .. shape], generator, device);
            var labels = new long[batch];
            for (int i = 0; i < batch; i++) labels[i] = i % source.Config.NumClasses;
            _y = Tensor.FromArray(labels, batch).To(device);
            if (train)
            {
                _net.Train();
                _optimizer = new Adam(_net.Parameters(), lr: 1e-3, weightDecay: 3e-3);
            }
            else
            {
                _net.Eval();
            }
            _compiled = !train && plan ? CpuInferencePlan.Compile(_net, [batch, .. shape]) : null;
            _trainingPlan = train && plan ? CpuTrainingPlan.Compile(_net, [batch, .. shape]) : null;
            _logits = new float[batch * source.Config.NumClasses];
        }

        public int Batch { get; }

        /// <summary>The memory the compiled plan holds for its activations, gradients and scratch (0 for the eager pass).</summary>
        public long PlanBytes => _compiled?.BufferBytes ?? _trainingPlan?.BufferBytes ?? 0;

        /// <summary>The sample shards the compiled inference pass runs in (1 otherwise).</summary>
        public int Shards => _compiled?.SampleShards ?? 1;

        /// <summary>The most samples a step of the pass runs at once: a shard's pieces, or the batch.</summary>
        public int Piece => _compiled?.SamplesPerPiece ?? Batch;

        /// <summary>Whether a compiled plan runs the iterations (its profile lists the plan's steps in running order).</summary>
        public bool Compiled => _compiled is not null || _trainingPlan is not null;

        /// <summary>Runs one iteration and gives its time in milliseconds; returns the bytes it allocated on this thread.</summary>
        public long TimeOne(out double milliseconds)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            // Raw timestamps: a TimeSpan counts 100 ns ticks, which quantised a 16 µs batch-1 pass to 0.6 %.
            long start = Stopwatch.GetTimestamp();
            Iterate();
            milliseconds = (Stopwatch.GetTimestamp() - start) * 1000.0 / Stopwatch.Frequency;
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }

        /// <summary>Where <paramref name="count"/> iterations spend their time: the compiled plan's steps, or the eager ops.</summary>
        public IReadOnlyList<(string Step, double Milliseconds)>? Profile(int count)
        {
            var steps = _compiled?.Profile(_x.AsSpan(), count) ?? _trainingPlan?.Profile(_x, _y, count);
            if (steps is not null || _optimizer is null) return steps;
            var names = new Dictionary<NN.Module, string>(ReferenceEqualityComparer.Instance);
            foreach (var (name, module) in _net.NamedModules()) names.TryAdd(module, name == "" ? "model" : name);
            using var profiler = Autograd.OpProfiler.Start();
            for (int it = 0; it < count; it++) Iterate(profiler);
            return profiler.Totals(names).Select(t => (t.Op, t.Milliseconds / count)).ToList();
        }

        public void Iterate(Autograd.OpProfiler? profiler = null)
        {
            _cancel.ThrowIfCancellationRequested();
            if (_compiled is not null)
            {
                // The plan's buffers are its own: a pass creates no tensors, so it runs outside a scope.
                _compiled.Run(_x.AsSpan(), _logits);
                return;
            }
            using (TensorScope.Enter())
            {
                if (_trainingPlan is not null)
                {
                    _optimizer!.ZeroGrad(setToNone: false);
                    _trainingPlan.Step(_x, _y);
                    _optimizer.Step();
                }
                else if (_optimizer is not null)
                {
                    _optimizer.ZeroGrad(setToNone: false);
                    profiler?.Mark();
                    var loss = Functional.CrossEntropy(_net.Call(_x), _y);
                    loss.Backward();
                    _optimizer.Step();
                    // Reading the loss waits for a device that runs asynchronously.
                    _ = loss.Item();
                }
                else
                {
                    using var noGrad = Autograd.Autograd.NoGrad();
                    _ = _net.Call(_x).ToArray();
                }
            }
        }
    }
}
