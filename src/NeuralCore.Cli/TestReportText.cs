using System.Globalization;
using System.Text;
using NeuralCore.Training;

namespace NeuralCore.Cli;

/// <summary>Plain-text tables of a <see cref="TestReport"/> for people.</summary>
internal static class TestReportText
{
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    /// <summary>Per-class accuracy: one line "0: 98.0 %  1: ..." for numbered classes, a table for named ones.</summary>
    public static string PerClass(TestReport report)
    {
        if (report.ClassNames is not { } names)
            return "per class: " + string.Join("  ", report.PerClassAccuracy.Select((a, c) =>
                string.Create(Invariant, $"{c}: {(a is { } v ? v.ToString("P1", Invariant) : "-")}"))) + Environment.NewLine;
        int width = Math.Max(8, names.Max(n => n.Length));
        var support = report.ConfusionMatrix.Select(row => row.Sum()).ToArray();
        var text = new StringBuilder();
        text.AppendLine(Invariant, $"{"class".PadRight(width)}  {"clips",6}  {"accuracy",8}");
        for (int c = 0; c < names.Count; c++)
            text.AppendLine(Invariant, $"{names[c].PadRight(width)}  {support[c],6}  {Percent(report.PerClassAccuracy[c]),8}");
        return text.ToString();
    }

    /// <summary>Accuracy, macro accuracy and log loss per device and per device group (acoustic scenes); empty otherwise.</summary>
    public static string DeviceTable(TestReport report)
    {
        if (report.PerDevice is null || report.PerDeviceGroup is null) return "";
        var text = new StringBuilder();
        text.AppendLine(Invariant, $"{"device",-8}  {"clips",6}  {"accuracy",8}  {"macro",8}  {"log loss",8}");
        foreach (var (name, r) in report.PerDevice.Concat(report.PerDeviceGroup))
            text.AppendLine(Invariant, $"{name,-8}  {r.Count,6}  {r.Accuracy,8:P1}  {r.MacroAccuracy,8:P1}  {r.LogLoss,8:F4}");
        return text.ToString();
    }

    /// <summary>The confusion matrix with class names as row labels (rows: true class, columns: predicted).</summary>
    public static string Confusion(TestReport report)
    {
        var names = report.ClassNames ?? Enumerable.Range(0, report.ConfusionMatrix.Length).Select(c => c.ToString(Invariant)).ToArray();
        int width = Math.Max(5, names.Max(n => n.Length));
        var text = new StringBuilder("confusion matrix (rows: true class, columns: predicted)" + Environment.NewLine);
        for (int c = 0; c < names.Count; c++)
            text.AppendLine(names[c].PadRight(width) + "  " + string.Join(" ", report.ConfusionMatrix[c].Select(v => v.ToString(Invariant).PadLeft(5))));
        return text.ToString();
    }

    private static string Percent(double? value) => value is { } v ? v.ToString("P1", Invariant) : "-";
}
