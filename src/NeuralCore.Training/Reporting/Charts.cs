using System.Globalization;
using ScottPlot;

namespace NeuralCore.Training.Reporting;

/// <summary>A chart of the report: a file name, a caption and the PNG image.</summary>
/// <param name="FileName">The PNG's file name inside the report's <c>charts/</c> folder, e.g. <c>macro-accuracy.png</c>.</param>
/// <param name="Title">What the chart shows, one line.</param>
/// <param name="Caption">How to read it (axes, markers, a zoomed axis).</param>
/// <param name="Png">The image.</param>
public sealed record Chart(string FileName, string Title, string Caption, byte[] Png);

/// <summary>
/// Draws the report's charts with ScottPlot (headless, through SkiaSharp): learning curves, the macro-accuracy bars
/// (the seed's headline figure), per-class and per-device accuracy, confusion matrices, and accuracy against
/// parameters and against latency.
/// </summary>
public static class Charts
{
    private const int Width = 900;
    private const int Height = 480;

    private static readonly CultureInfo Ci = CultureInfo.InvariantCulture;

    /// <summary>Every chart the results support, in report order.</summary>
    public static IReadOnlyList<Chart> All(ExperimentResults results)
    {
        ArgumentNullException.ThrowIfNull(results);
        var models = results.Models;
        var tested = models.Where(m => m.Test is not null).ToList();
        var charts = new List<Chart>();
        if (tested.Count > 0) charts.Add(MacroAccuracy(tested));
        if (models.Any(m => m.Stages.Any(s => s.Epochs.Count > 0)))
        {
            charts.Add(LearningCurve(models, loss: true));
            charts.Add(LearningCurve(models, loss: false));
        }
        if (tested.Count > 0) charts.Add(PerClass(tested));
        if (tested.Any(m => m.Test!.PerDevice is { Count: > 0 })) charts.Add(PerDevice(tested.Where(m => m.Test!.PerDevice is { Count: > 0 }).ToList()));
        if (tested.Count > 0) charts.Add(AccuracyVs(tested, latency: false));
        var timed = tested.Where(m => m.Throughput is not null).ToList();
        if (timed.Count > 0) charts.Add(AccuracyVs(timed, latency: true));
        charts.AddRange(tested.Select(Confusion));
        return charts;
    }

    /// <summary>The colour of a model: fixed for the seed's roles (small, big, pruned), else by position.</summary>
    public static Color ColorOf(ModelResult model, int index) => model.Role switch
    {
        "small" => new Color(31, 119, 180),
        "big" => new Color(255, 127, 14),
        "pruned" => new Color(44, 160, 44),
        _ => new ScottPlot.Palettes.Category10().GetColor(3 + index),
    };

    /// <summary>The seed's headline figure: test macro accuracy of each model, the value written on each bar.</summary>
    public static Chart MacroAccuracy(IReadOnlyList<ModelResult> models)
    {
        using var plot = NewPlot("Test macro accuracy", "", "macro accuracy");
        var values = models.Select(m => m.Test!.MacroAccuracy).ToArray();
        var bars = models.Select((m, i) => new Bar
        {
            Position = i,
            Value = values[i],
            FillColor = ColorOf(m, i),
            Label = values[i].ToString("P2", Ci),
        }).ToList();
        var bar = plot.Add.Bars(bars);
        bar.ValueLabelStyle.FontSize = 16;
        bar.ValueLabelStyle.Bold = true;
        NameTicks(plot, models.Select(m => $"{m.Name}\n{m.Parameters.ToString("N0", Ci)} params").ToArray());
        var (low, high) = ZoomedRange(values);
        plot.Axes.SetLimitsY(low, high);
        plot.Axes.SetLimitsX(-0.6, models.Count - 0.4);
        return Save(plot, "macro-accuracy.png", "Test macro accuracy of each model (the seed's headline figure)",
            $"Mean of the per-class accuracies on the test set. The vertical axis starts at {low:P0}, not 0, so that differences show; read the values on the bars.");
    }

    /// <summary>Training and validation loss (or accuracy) per epoch; each pruning step's fine-tuning is marked.</summary>
    public static Chart LearningCurve(IReadOnlyList<ModelResult> models, bool loss)
    {
        string what = loss ? "loss" : "accuracy";
        // The pruned model starts from the big model's training: its fine-tuning epochs continue the big model's axis.
        int bigEpochs = models.FirstOrDefault(m => m.Role == "big")?.Stages.Sum(s => s.Epochs.Count) ?? 0;
        using var plot = NewPlot($"Learning curves: {what}", bigEpochs > 0 ? "epoch (the pruned model's fine-tuning continues after the big model's training)" : "epoch",
            loss ? "cross-entropy" : "accuracy");
        for (int i = 0; i < models.Count; i++)
        {
            var model = models[i];
            var epochs = model.Stages.SelectMany(s => s.Epochs).ToList();
            if (epochs.Count == 0) continue;
            var color = ColorOf(model, i);
            int offset = model.Role == "pruned" ? bigEpochs : 0;
            var xs = Enumerable.Range(offset + 1, epochs.Count).Select(e => (double)e).ToArray();
            var train = plot.Add.ScatterLine(xs, epochs.Select(e => loss ? e.TrainLoss : e.TrainAccuracy).ToArray(), color);
            train.LinePattern = LinePattern.Dashed;
            train.LineWidth = 1.5f;
            train.LegendText = $"{model.Name} train";
            var validation = plot.Add.ScatterLine(xs, epochs.Select(e => loss ? e.ValidationLoss : e.ValidationAccuracy).ToArray(), color);
            validation.LineWidth = 2.5f;
            validation.LegendText = $"{model.Name} validation";
            if (model.Stages.Count > 1 || model.Role == "pruned")
            {
                int start = offset;
                foreach (var stage in model.Stages)
                {
                    var line = plot.Add.VerticalLine(start + 0.5, 1.5f, color, LinePattern.Dotted);
                    line.LabelText = stage.Name;
                    line.LabelFontSize = 11;
                    line.LabelOppositeAxis = true;
                    line.ExcludeFromLegend = true;
                    start += stage.Epochs.Count;
                }
            }
        }
        if (loss)
        {
            // Early validation losses of the seed's schedule can be far above the rest; keep the interesting part visible.
            var finite = models.SelectMany(m => m.Stages.SelectMany(s => s.Epochs)).SelectMany(e => new[] { e.TrainLoss, e.ValidationLoss }).Where(double.IsFinite).ToArray();
            if (finite.Length > 0) plot.Axes.SetLimitsY(0, Math.Min(finite.Max(), 3 * Percentile(finite, 0.5) + 0.1) * 1.05);
        }
        else
        {
            plot.Axes.SetLimitsY(0, 1.02);
        }
        plot.ShowLegend(Edge.Right);
        return Save(plot, loss ? "learning-curves-loss.png" : "learning-curves-accuracy.png",
            $"Training and validation {what} per epoch",
            "Dashed: training (measured while the weights changed); solid: validation after the epoch. Dotted vertical lines mark where a training stage starts: for the pruned model, the fine-tuning after each pruning step, drawn after the big model's epochs because it starts from the big model's best checkpoint." +
            (loss ? " The vertical axis is cut at three times the median loss so that the later epochs are readable." : ""), 1100, 520);
    }

    /// <summary>Test accuracy of every class, one bar per model.</summary>
    public static Chart PerClass(IReadOnlyList<ModelResult> models)
    {
        var names = models[0].Test!.ClassNames;
        using var plot = NewPlot("Test accuracy per class", "class", "accuracy (recall)");
        var all = new List<double>();
        double width = 0.8 / models.Count;
        for (int i = 0; i < models.Count; i++)
        {
            var test = models[i].Test!;
            var bars = new List<Bar>();
            for (int c = 0; c < test.PerClassAccuracy.Length; c++)
            {
                if (test.PerClassAccuracy[c] is not { } a) continue;
                all.Add(a);
                bars.Add(new Bar { Position = c - 0.4 + width * (i + 0.5), Value = a, Size = width * 0.95, FillColor = ColorOf(models[i], i) });
            }
            plot.Add.Bars(bars).LegendText = models[i].Name;
        }
        NameTicks(plot, names.ToArray());
        var (low, high) = ZoomedRange(all.Count == 0 ? [0.0] : all.ToArray());
        plot.Axes.SetLimitsY(low, high);
        plot.Axes.SetLimitsX(-0.6, names.Count - 0.4);
        plot.ShowLegend(Edge.Right);
        return Save(plot, "per-class-accuracy.png", "Test accuracy per class",
            $"Share of each class's test samples classified correctly. The vertical axis starts at {low:P0}.", 1100, 480);
    }

    /// <summary>Test accuracy per recording device and device group (acoustic scenes), one bar per model.</summary>
    public static Chart PerDevice(IReadOnlyList<ModelResult> models)
    {
        var keys = models.SelectMany(m => m.Test!.PerDevice!.Keys.Concat(m.Test.PerDeviceGroup?.Keys ?? [])).Distinct().ToList();
        using var plot = NewPlot("Test accuracy per device", "device (real a-c, seen s1-s3, unseen s4-s6) and group", "accuracy");
        double width = 0.8 / models.Count;
        for (int i = 0; i < models.Count; i++)
        {
            var test = models[i].Test!;
            var bars = new List<Bar>();
            for (int k = 0; k < keys.Count; k++)
            {
                TestSubsetReport? r = test.PerDevice!.TryGetValue(keys[k], out var d) ? d : test.PerDeviceGroup?.GetValueOrDefault(keys[k]);
                if (r is null) continue;
                bars.Add(new Bar { Position = k - 0.4 + width * (i + 0.5), Value = r.Accuracy, Size = width * 0.95, FillColor = ColorOf(models[i], i) });
            }
            plot.Add.Bars(bars).LegendText = models[i].Name;
        }
        NameTicks(plot, keys.ToArray());
        plot.Axes.SetLimitsY(0, 1);
        plot.Axes.SetLimitsX(-0.6, keys.Count - 0.4);
        plot.ShowLegend(Edge.Right);
        return Save(plot, "per-device-accuracy.png", "Test accuracy per device",
            "Share of each device's test clips classified correctly; the last bars are the groups real (a, b, c), seen (s1-s3) and unseen (s4-s6, not in training).", 1100, 480);
    }

    /// <summary>Macro accuracy against parameters, or against the measured batch-1 latency.</summary>
    public static Chart AccuracyVs(IReadOnlyList<ModelResult> models, bool latency)
    {
        using var plot = NewPlot(latency ? "Macro accuracy vs latency" : "Macro accuracy vs parameters",
            latency ? "latency at batch size 1 (ms, median)" : "parameters", "macro accuracy");
        var xs = models.Select(m => latency ? m.Throughput!.Batch1Milliseconds : m.Parameters).ToArray();
        var ys = models.Select(m => m.Test!.MacroAccuracy).ToArray();
        for (int i = 0; i < models.Count; i++)
        {
            var marker = plot.Add.Marker(xs[i], ys[i], MarkerShape.FilledCircle, 14, ColorOf(models[i], i));
            marker.LegendText = models[i].Name;
            var label = plot.Add.Text($"{models[i].Name} ({ys[i].ToString("P2", Ci)})", xs[i], ys[i]);
            label.LabelFontSize = 13;
            label.OffsetX = 10;
            label.OffsetY = -10;
            label.LabelFontColor = ColorOf(models[i], i);
        }
        var (low, high) = ZoomedRange(ys);
        plot.Axes.SetLimitsY(low, high);
        double xMax = xs.Max();
        plot.Axes.SetLimitsX(0, xMax * 1.35);
        return Save(plot, latency ? "accuracy-vs-latency.png" : "accuracy-vs-parameters.png",
            latency ? "Macro accuracy against measured latency" : "Macro accuracy against parameters",
            latency
                ? "Median time of one forward pass of a single sample on this machine (up and to the left is better)."
                : "Learnable parameters of each model (up and to the left is better).");
    }

    /// <summary>The confusion matrix of one model: counts by true class (row) and predicted class (column).</summary>
    public static Chart Confusion(ModelResult model)
    {
        var test = model.Test!;
        int n = test.ConfusionMatrix.Length;
        using var plot = NewPlot($"Confusion matrix: {model.Name}", "predicted class", "true class");
        // Row-normalised shares colour the cells (so rare classes are as readable as common ones); counts are written.
        var shares = new double[n, n];
        for (int r = 0; r < n; r++)
        {
            long total = test.ConfusionMatrix[r].Sum();
            for (int c = 0; c < n; c++) shares[r, c] = total == 0 ? 0 : (double)test.ConfusionMatrix[r][c] / total;
        }
        var colormap = new ScottPlot.Colormaps.Blues().Reversed();
        for (int r = 0; r < n; r++)
            for (int c = 0; c < n; c++)
            {
                // One rectangle per cell (row r drawn at y = r on an inverted axis, so row 0 is at the top).
                var cell = plot.Add.Rectangle(c - 0.5, c + 0.5, r - 0.5, r + 0.5);
                cell.FillColor = colormap.GetColor(shares[r, c]);
                cell.LineWidth = 0;
                long count = test.ConfusionMatrix[r][c];
                if (count == 0) continue;
                var text = plot.Add.Text(count.ToString(Ci), c, r);
                text.Alignment = Alignment.MiddleCenter;
                text.LabelFontSize = n > 12 ? 9 : 12;
                text.LabelFontColor = shares[r, c] > 0.5 ? Colors.White : Colors.Black;
            }
        var ticks = Enumerable.Range(0, n).Select(i => (double)i).ToArray();
        var names = test.ClassNames.Select(s => s.Length > 10 ? s[..10] : s).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks, names);
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks, names);
        plot.Axes.SetLimits(-0.5, n - 0.5, n - 0.5, -0.5);
        plot.Grid.IsVisible = false;
        return Save(plot, $"confusion-{Slug(model.Name)}.png", $"Confusion matrix of {model.Name}",
            "Rows: true class, columns: predicted class; the numbers are test samples, the shade is the share of the row.", 620, 560);
    }

    /// <summary>A file-name-safe form of <paramref name="name"/>.</summary>
    public static string Slug(string name)
    {
        var chars = name.ToLowerInvariant().Select(ch => char.IsAsciiLetterOrDigit(ch) ? ch : '-').ToArray();
        var slug = new string(chars).Trim('-');
        return slug.Length == 0 ? "model" : slug;
    }

    private static Plot NewPlot(string title, string xLabel, string yLabel)
    {
        var plot = new Plot();
        plot.Title(title);
        if (xLabel.Length > 0) plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.Axes.Title.Label.FontSize = 18;
        return plot;
    }

    private static void NameTicks(Plot plot, string[] names) =>
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, names.Length).Select(i => (double)i).ToArray(), names);

    /// <summary>A vertical range in [0, 1] that shows differences between close accuracies, starting at a round number.</summary>
    private static (double Low, double High) ZoomedRange(double[] values)
    {
        double min = values.Min(), max = values.Max();
        double spread = Math.Max(max - min, 0.01);
        double low = Math.Max(0, Math.Floor((min - 1.5 * spread) * 20) / 20);
        double high = Math.Min(1.0, max + 0.6 * spread) + 0.01;
        return (low, Math.Max(high, low + 0.05));
    }

    private static double Percentile(double[] values, double q)
    {
        var sorted = values.Order().ToArray();
        return sorted[(int)Math.Clamp(Math.Round(q * (sorted.Length - 1)), 0, sorted.Length - 1)];
    }

    private static Chart Save(Plot plot, string fileName, string title, string caption, int width = Width, int height = Height) =>
        new(fileName, title, caption, plot.GetImageBytes(width, height, ImageFormat.Png));
}
