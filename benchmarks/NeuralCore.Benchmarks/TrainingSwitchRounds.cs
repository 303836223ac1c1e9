using System.Diagnostics;
using System.Globalization;
using NeuralCore.Backends.Cpu;
using NeuralCore.Optim;

namespace NeuralCore.Benchmarks;

/// <summary>
/// A kernel path of the training passes switched off and on in alternating rounds of one process, for the pruned and
/// the big model on one training input: each round times a block of compiled training steps of each model with the
/// path off, then with it on, and the ratio on / off is taken per round and model (and pays, big / pruned, per round
/// and setting), so that a host whose speed drifts slows both settings of a round alike. A path that plans choose when
/// they compile is compared through two plans per model, one compiled with it off and one with it on. Run as <c>dotnet run -c
/// Release --project benchmarks/NeuralCore.Benchmarks -- switch-rounds --switch NAME [--input NAME] [--rounds N]</c>.
/// </summary>
public static class TrainingSwitchRounds
{
    /// <summary>The first argument that selects this mode instead of BenchmarkDotNet's switcher.</summary>
    public const string Command = "switch-rounds";

    // Paths that the training step checks at every call (not when the plan compiles), so switching them between rounds
    // changes what the compiled steps run.
    private static readonly IReadOnlyDictionary<string, Action<bool>> Switches = new Dictionary<string, Action<bool>>
    {
        // Docs: docs/benchmarks.md, step 109.
        ["by-sample"] = on => ConvKernels.BySample = on,
        // Docs: docs/benchmarks.md, step 134.
        ["relu-from-input"] = on => CpuTrainingPlan.ReluFromInputEnabled = on,
        // Docs: docs/benchmarks.md, steps 124-125 and 140 (segments of 768 positions against none).
        ["weight-gradient-segments"] = on => DirectWeightGradient.SegmentLength = on ? 768 : int.MaxValue,
        // Docs: docs/benchmarks.md, step 175 (the channel-lane weight gradient's channels in two planes against one).
        ["channel-lane-split"] = on => ChannelLaneWeightGradient.SplitsPlanes = on,
        // Docs: docs/benchmarks.md, step 176 (the channel-lane weight gradient's blocks of up to 5 output channels against 4).
        ["channel-lane-wide-blocks"] = on => ChannelLaneWeightGradient.WideBlocks = on,
        // Docs: docs/benchmarks.md, step 179 (samples claimed from the other parts' ranges against each part its own).
        ["claimed-ranges"] = on => ClaimedRanges.Enabled = on,
        // Docs: docs/benchmarks.md, step 189 (a 1x1 block's last 33-47 columns in a masked wide tile against a tile and a panel).
        ["masked-wide-tiles"] = on => ImplicitGemmConv.MaskedWideTiles = on,
    };

    // Paths that a plan chooses when it compiles: each model is compiled once with the path off and once with it on, and
    // the rounds alternate the two plans.
    private static readonly IReadOnlyDictionary<string, Action<bool>> PlanSwitches = new Dictionary<string, Action<bool>>
    {
        // Docs: docs/benchmarks.md, step 184 (residual additions in the output pass of batch norms over large planes).
        ["large-plane-addition"] = on => CpuTrainingPlan.LargePlaneAdditionEnabled = on,
        // Docs: docs/benchmarks.md, step 188 (a residual block input's second gradient added as the convolution stores it).
        ["sum-in-backward-data"] = on => CpuTrainingPlan.SumInBackwardDataEnabled = on,
        // Docs: docs/benchmarks.md, step 190 (a batch norm's statistics sums taken by the convolution before it, sample by sample).
        ["plane-sums"] = on => CpuTrainingPlan.PlaneSumsInConvolutionsEnabled = on,
    };

    private static readonly string[] Models = ["pruned 19/38/76", "big 32/64/128"];

    // Each block runs about this long, after one untimed step.
    private const double BlockMilliseconds = 300;

    /// <summary>Runs the comparison and prints one line per model and one for pays; returns the exit code.</summary>
    public static int Run(string[] args)
    {
        string? name = null;
        string input = ModelInput.Train[^1].Name;
        int rounds = 12;
        for (int i = 1; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i++])
            {
                case "--switch": name = Rounds.Known(value, Switches.Keys.Concat(PlanSwitches.Keys), "switch"); break;
                case "--input": input = Rounds.Known(value, ModelInput.Train.Select(x => x.Name), "input"); break;
                case "--rounds": rounds = Rounds.Positive(value); break;
                default: throw new ArgumentException($"unknown option {args[i - 1]} (options: --switch, --input, --rounds)");
            }
        }
        if (name is null)
            throw new ArgumentException($"--switch is required (one of: {string.Join(", ", Switches.Keys.Concat(PlanSwitches.Keys).Select(n => $"'{n}'"))})");
        CpuThreading.Threads = ModelInput.Threads;
        bool atCompile = PlanSwitches.TryGetValue(name, out var compileSetting);
        var setting = atCompile ? _ => { } : Switches[name];
        // The steps that run with the path off [0] and on [1]: one plan per model and setting where plans choose it.
        var plans = new Action[2][];
        try
        {
            for (int s = 0; s < 2; s++)
            {
                compileSetting?.Invoke(s == 1);
                plans[s] = s == 1 && !atCompile ? plans[0] : Models.Select(model => Step(model, input)).ToArray();
            }
        }
        finally
        {
            compileSetting?.Invoke(true);
        }
        try
        {
            // Warm every model in both settings past the JIT's tiering, then size each model's blocks.
            var clock = Stopwatch.StartNew();
            double[] last = new double[Models.Length];
            while (clock.ElapsedMilliseconds < 4000)
                foreach (bool on in new[] { false, true })
                {
                    setting(on);
                    for (int m = 0; m < Models.Length; m++) last[m] = Time(plans[on ? 1 : 0][m]);
                }
            int[] calls = last.Select(ms => (int)Math.Clamp(BlockMilliseconds / Math.Max(ms, 1e-3), 3, 1000)).ToArray();
            var medians = new double[2, Models.Length, rounds];
            for (int r = 0; r < rounds; r++)
                for (int s = 0; s < 2; s++)
                {
                    setting(s == 1);
                    for (int m = 0; m < Models.Length; m++) medians[s, m, r] = BlockMedian(plans[s][m], calls[m]);
                }
            Console.WriteLine($"training steps, {input}, '{name}' off and on in {rounds} alternating rounds, {ModelInput.Threads} threads; per-round medians, ms");
            Console.WriteLine($"{"model",-16} {"off min",9} {"off med",9} {"on min",9} {"on med",9}  on/off p25 / median / p75");
            for (int m = 0; m < Models.Length; m++)
            {
                double[] off = Row(medians, 0, m, rounds), on = Row(medians, 1, m, rounds);
                var ratios = on.Zip(off, (a, b) => a / b).ToArray();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{Models[m],-16} {off.Min(),9:F2} {Rounds.Median(off),9:F2} {on.Min(),9:F2} {Rounds.Median(on),9:F2}  {Rounds.Summary(ratios)}"));
            }
            for (int s = 0; s < 2; s++)
            {
                var pays = Row(medians, s, 1, rounds).Zip(Row(medians, s, 0, rounds), (big, pruned) => big / pruned).ToArray();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pays (big / pruned), {(s == 0 ? "off" : "on "),-3}       {Rounds.Summary(pays)}"));
            }
        }
        finally
        {
            setting(true);
        }
        return 0;
    }

    // The compiled training step of the named model (forward, cross-entropy, backward, Adam), as ModelTrainBenchmarks runs it.
    private static Action Step(string model, string input)
    {
        var net = ModelInput.Build(model);
        net.Train();
        var optimizer = new Adam(net.Parameters(), lr: 1e-3, weightDecay: 3e-3);
        var (x, y) = ModelInput.Get(input).Batch();
        var plan = CpuTrainingPlan.Compile(net, x.ShapeArray());
        return () =>
        {
            optimizer.ZeroGrad(setToNone: false);
            plan.Step(x, y);
            optimizer.Step();
        };
    }

    private static double Time(Action step)
    {
        long start = Stopwatch.GetTimestamp();
        step();
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    // The median time of one block of steps, after one untimed step.
    private static double BlockMedian(Action step, int calls)
    {
        step();
        var times = new double[calls];
        for (int i = 0; i < calls; i++) times[i] = Time(step);
        return Rounds.Median(times);
    }

    private static double[] Row(double[,,] medians, int setting, int model, int rounds) =>
        Enumerable.Range(0, rounds).Select(r => medians[setting, model, r]).ToArray();
}
