using System.Diagnostics;
using System.Globalization;

namespace NeuralCore.Benchmarks;

/// <summary>What the commands that alternate two sides in rounds share: argument checks and order statistics.</summary>
internal static class Rounds
{
    /// <summary><paramref name="value"/> if it is one of <paramref name="names"/>; else an error naming them.</summary>
    public static string Known(string value, IEnumerable<string> names, string what) =>
        names.Contains(value) ? value : throw new ArgumentException($"unknown {what} '{value}' (one of: {string.Join(", ", names.Select(n => $"'{n}'"))})");

    /// <summary>The number of rounds in <paramref name="value"/>, a positive integer.</summary>
    public static int Positive(string value) =>
        int.TryParse(value, CultureInfo.InvariantCulture, out int r) && r >= 1 ? r : throw new ArgumentException($"--rounds must be a positive integer, not '{value}'");

    /// <summary>
    /// The models and inputs named by --model and --input (empty where none is named) and --rounds
    /// (<paramref name="rounds"/> unless given), as the commands comparing with ONNX Runtime take them.
    /// </summary>
    public static (List<string> Models, List<string> Inputs, int Rounds) InferenceCells(string[] args, int rounds)
    {
        var models = new List<string>();
        var inputs = new List<string>();
        for (int i = 1; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i++])
            {
                case "--model": models.Add(Known(value, ModelInput.Widths.Keys, "model")); break;
                case "--input": inputs.Add(Known(value, ModelInput.Infer.Select(x => x.Name), "input")); break;
                case "--rounds": rounds = Positive(value); break;
                default: throw new ArgumentException($"unknown option {args[i - 1]} (options: --model, --input, --rounds)");
            }
        }
        return (models, inputs, rounds);
    }

    /// <summary>
    /// Calls <paramref name="pass"/> for two seconds, past the JIT's tiering of the hot methods; returns the last call's
    /// time in ms, and in <paramref name="calls"/> how many it made.
    /// </summary>
    public static double Warm(Func<float> pass, out int calls)
    {
        var clock = Stopwatch.StartNew();
        double last;
        calls = 0;
        do
        {
            long start = Stopwatch.GetTimestamp();
            pass();
            last = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            calls++;
        } while (clock.ElapsedMilliseconds < 2000);
        return last;
    }

    /// <summary>Calls of a pass that takes <paramref name="milliseconds"/> to fill a block of about <paramref name="blockMilliseconds"/> (5 to 5000).</summary>
    public static int Calls(double milliseconds, double blockMilliseconds) =>
        (int)Math.Clamp(blockMilliseconds / Math.Max(milliseconds, 1e-3), 5, 5000);

    public static double Median(double[] values)
    {
        var sorted = (double[])values.Clone();
        Array.Sort(sorted);
        return Quantile(sorted, 0.5);
    }

    /// <summary>Linear interpolation between the closest ranks of sorted values.</summary>
    public static double Quantile(double[] sorted, double q)
    {
        double position = q * (sorted.Length - 1);
        int low = (int)Math.Floor(position), high = (int)Math.Ceiling(position);
        return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
    }

    /// <summary>"p25 / median / p75" of the values, three decimals.</summary>
    public static string Summary(double[] values)
    {
        var sorted = (double[])values.Clone();
        Array.Sort(sorted);
        return string.Create(CultureInfo.InvariantCulture, $"{Quantile(sorted, 0.25):F3} / {Quantile(sorted, 0.5):F3} / {Quantile(sorted, 0.75):F3}");
    }
}
