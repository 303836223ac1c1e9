using System.Globalization;

namespace NeuralCore.Benchmarks;

/// <summary>
/// Whether pruning pays "for any channel counts": CP-ResNet pruned at several amounts (the widths the pruner keeps,
/// <c>(int)(C0 * (1 - amount))</c> of the base widths, docs/domain.md) against the unpruned model, in each of the six
/// cells of issue 9 (MNIST b256 training and inference, MNIST b1, mel b64 training and inference, mel b1), each cell
/// one <c>neuralcore bench --baseline</c> run (the two models in turns within it). Prints a table of the speed-ups and
/// what share of the speed-up their multiply-adds allow (the target: 80 %), marking the cells under it. Run as
/// <c>dotnet run -c Release --project benchmarks/NeuralCore.Benchmarks -- pays-sweep DIR [--amounts "0.2 0.4"]
/// [--base "32 64 128"]</c>, where DIR holds a build of the command (<c>dotnet build src/NeuralCore.Cli -c Release -o
/// DIR</c>). With <c>--checkpoints "A B" --baseline FILE</c> the rows are pruned checkpoints instead, each against the
/// model it came from: global pruning, which ranks every group's channels together, keeps a different share of each
/// group (widths such as 25/23/24 in stage 1 and 87/68/59 in stage 3), which uniform amounts never produce.
/// </summary>
public static class PaysSweep
{
    /// <summary>The first argument that selects this mode instead of BenchmarkDotNet's switcher.</summary>
    public const string Command = "pays-sweep";

    // The share of the multiply-adds' speed-up issue 9 asks for.
    private const double Target = 0.8;

    // Input shape, batch, mode and iterations of each cell: about a second or two of each model per cell.
    private static readonly (string Name, string Shape, int Batch, string Mode, int Iterations)[] Cells =
    [
        ("MNIST b256 train", "1,28,28", 256, "train", 40),
        ("MNIST b256 infer", "1,28,28", 256, "infer", 200),
        ("MNIST b1 infer", "1,28,28", 1, "infer", 4000),
        ("mel b64 train", "1,128,100", 64, "train", 12),
        ("mel b64 infer", "1,128,100", 64, "infer", 30),
        ("mel b1 infer", "1,128,100", 1, "infer", 600),
    ];

    private const string Usage =
        "usage: pays-sweep DIR [--amounts \"0.1 0.2 0.3 0.4 0.5 0.6\"] [--base \"32 64 128\"] | [--checkpoints \"A B ...\" --baseline FILE]";

    /// <summary>Runs the sweep; returns the exit code.</summary>
    public static int Run(string[] args)
    {
        if (args.Length < 2 || args[1].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException(Usage);
        double[] amounts = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        int[] widths = [32, 64, 128];
        string[] checkpoints = [];
        string? baselineFile = null;
        bool amountsGiven = false;
        for (int i = 2; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i++])
            {
                case "--amounts": amounts = Numbers(value, double.Parse).Select(Amount).ToArray(); amountsGiven = true; break;
                case "--base": widths = Numbers(value, int.Parse).Select(w => w >= 1 ? w : throw new ArgumentException($"a width must be positive, not {w}")).ToArray(); amountsGiven = true; break;
                case "--checkpoints": checkpoints = value.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(Existing).ToArray(); break;
                case "--baseline": baselineFile = Existing(value); break;
                default: throw new ArgumentException($"unknown option {args[i - 1]} (options: --amounts, --base, --checkpoints, --baseline)");
            }
        }
        if ((checkpoints.Length > 0) != (baselineFile is not null))
            throw new ArgumentException("--checkpoints and --baseline go together: the pruned models' files and the file of the model they came from");
        if (checkpoints.Length > 0 && amountsGiven)
            throw new ArgumentException("--checkpoints replaces --amounts and --base: give one or the other");
        var entry = BuildRounds.Entry(args[1]);
        // Each row: its label and the arguments that name the model and its baseline to `bench`.
        var rows = checkpoints.Length > 0
            ? checkpoints.Select(file => (Label: file, Model: new[] { "--checkpoint", Path.GetFullPath(file), "--baseline", Path.GetFullPath(baselineFile!) })).ToArray()
            : amounts.Select(amount =>
            {
                // A group that would keep no channel is left alone (docs/domain.md).
                string pruned = string.Join(' ', widths.Select(w => (int)(w * (1.0 - amount)) is var kept && kept > 0 ? kept : w));
                string label = string.Create(CultureInfo.InvariantCulture, $"{amount:0.##} ({pruned.Replace(' ', '/')})");
                return (Label: label, Model: new[] { "--channel-width", pruned, "--baseline", string.Join(' ', widths) });
            }).ToArray();
        string against = baselineFile ?? string.Join(' ', widths);
        Console.WriteLine($"pruning pays by {(checkpoints.Length > 0 ? "checkpoint" : "amount")}: speed-up over {against} (share of the multiply-adds' ratio; * under {Target:P0}), build {args[1]}");
        Console.WriteLine($"| {(checkpoints.Length > 0 ? "checkpoint" : "amount (widths)")} | MAC ratio (MNIST / mel) | {string.Join(" | ", Cells.Select(c => c.Name))} |");
        Console.WriteLine($"|---|---|{string.Concat(Cells.Select(_ => "---:|"))}");
        foreach (var (label, model) in rows)
        {
            var ratios = new Dictionary<string, double>();
            var row = new List<string>();
            foreach (var cell in Cells)
            {
                string[] bench = ["bench", .. model, "--input-shape", cell.Shape,
                    "--batch-size", cell.Batch.ToString(CultureInfo.InvariantCulture), "--mode", cell.Mode,
                    "--iterations", cell.Iterations.ToString(CultureInfo.InvariantCulture), "--json"];
                var speedup = BuildRounds.Bench(entry, bench, $"bench {string.Join(' ', bench)}", quiet: true).GetProperty("speedup");
                double median = speedup.GetProperty("median").GetDouble(), macRatio = speedup.GetProperty("mac_ratio").GetDouble();
                ratios[cell.Shape] = macRatio;
                double share = median / macRatio;
                row.Add(string.Create(CultureInfo.InvariantCulture, $"{median:F2}x ({share:P0}){(share < Target ? " *" : "")}"));
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {label} | {ratios["1,28,28"]:F3} / {ratios["1,128,100"]:F3} | {string.Join(" | ", row)} |"));
        }
        return 0;
    }

    private static string Existing(string file) =>
        File.Exists(file) ? file : throw new ArgumentException($"{file}: no such file (a checkpoint, e.g. neuralcore prune's pruned.safetensors)");

    private static IEnumerable<T> Numbers<T>(string list, Func<string, IFormatProvider, T> parse) =>
        list.Split([' ', ','], StringSplitOptions.RemoveEmptyEntries).Select(s =>
        {
            try
            {
                return parse(s, CultureInfo.InvariantCulture);
            }
            catch (FormatException)
            {
                throw new ArgumentException($"'{s}' is not a number");
            }
        });

    private static double Amount(double amount) =>
        amount is > 0 and < 1 ? amount : throw new ArgumentException($"an amount must lie between 0 and 1, not {amount}");
}
