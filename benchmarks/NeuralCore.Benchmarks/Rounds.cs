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
