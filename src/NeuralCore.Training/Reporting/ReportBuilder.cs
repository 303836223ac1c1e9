using System.Globalization;
using System.Net;
using System.Text;
using NeuralCore.IO;

namespace NeuralCore.Training.Reporting;

/// <summary>The files a report consists of.</summary>
/// <param name="Results">results.json.</param>
/// <param name="Markdown">report.md (charts linked from charts/).</param>
/// <param name="Html">report.html: self-contained (charts embedded as PNG data, no scripts, no fonts or styles from elsewhere).</param>
/// <param name="Charts">The chart PNG files.</param>
public sealed record ReportFiles(string Results, string Markdown, string Html, IReadOnlyList<string> Charts);

/// <summary>
/// Turns <see cref="ExperimentResults"/> into the report: <c>results.json</c>, <c>report.md</c>, a self-contained
/// <c>report.html</c> and the charts as PNG files in <c>charts/</c>.
/// </summary>
public static class ReportBuilder
{
    private static readonly CultureInfo Ci = CultureInfo.InvariantCulture;

    /// <summary>
    /// Gives the seed's roles to <paramref name="models"/> where they are not set (the pruned one keeps its role; of
    /// the others, the one with the fewest parameters is <c>small</c>, the one with the most <c>big</c>), and
    /// judges the seed's claim when there is a small and a pruned model, both tested.
    /// </summary>
    public static (IReadOnlyList<ModelResult> Models, ClaimResult? Claim) AssignRolesAndJudge(IReadOnlyList<ModelResult> models)
    {
        ArgumentNullException.ThrowIfNull(models);
        var list = models.ToList();
        if (list.All(m => m.Role is null or "pruned"))
        {
            var trained = list.Where(m => m.Role is null).ToList();
            if (trained.Count >= 2)
            {
                var smallest = trained.MinBy(m => m.Parameters)!;
                var largest = trained.MaxBy(m => m.Parameters)!;
                if (smallest.Parameters < largest.Parameters)
                    list = list.Select(m => ReferenceEquals(m, smallest) ? m with { Role = "small" } : ReferenceEquals(m, largest) ? m with { Role = "big" } : m).ToList();
            }
        }
        var small = list.FirstOrDefault(m => m.Role == "small");
        var pruned = list.FirstOrDefault(m => m.Role == "pruned");
        var claim = small?.Test is not null && pruned?.Test is not null ? ClaimResult.Evaluate(small, pruned) : null;
        return (list, claim);
    }

    /// <summary>Writes the report of <paramref name="results"/> into <paramref name="outputDirectory"/> (created when missing).</summary>
    public static ReportFiles Write(ExperimentResults results, string outputDirectory)
    {
        ArgumentNullException.ThrowIfNull(results);
        ArgumentException.ThrowIfNullOrEmpty(outputDirectory);
        Directory.CreateDirectory(outputDirectory);
        var chartDir = Path.Combine(outputDirectory, "charts");
        Directory.CreateDirectory(chartDir);
        var charts = Charts.All(results);
        var chartPaths = new List<string>();
        foreach (var chart in charts)
        {
            var path = Path.Combine(chartDir, chart.FileName);
            AtomicFile.Write(path, s => s.Write(chart.Png));
            chartPaths.Add(path);
        }
        var sections = Sections(results, charts);
        var resultsPath = Path.Combine(outputDirectory, "results.json");
        var markdownPath = Path.Combine(outputDirectory, "report.md");
        var htmlPath = Path.Combine(outputDirectory, "report.html");
        AtomicFile.WriteText(resultsPath, results.ToJson());
        AtomicFile.WriteText(markdownPath, Markdown(results, sections));
        AtomicFile.WriteText(htmlPath, Html(results, sections));
        return new ReportFiles(resultsPath, markdownPath, htmlPath, chartPaths);
    }

    /// <summary>The comparison table as plain text (for a terminal).</summary>
    public static string TextTable(ExperimentResults results)
    {
        ArgumentNullException.ThrowIfNull(results);
        var table = ComparisonTable(results);
        var widths = table.Header.Select((h, c) => Math.Max(h.Length, table.Rows.Max(r => r[c].Length))).ToArray();
        var sb = new StringBuilder();
        sb.AppendLine(string.Join("  ", table.Header.Select((h, c) => c == 0 ? h.PadRight(widths[c]) : h.PadLeft(widths[c]))));
        foreach (var row in table.Rows)
            sb.AppendLine(string.Join("  ", row.Select((v, c) => c == 0 ? v.PadRight(widths[c]) : v.PadLeft(widths[c]))));
        return sb.ToString();
    }

    private sealed record Table(string[] Header, List<string[]> Rows);

    private sealed record Section(string Heading, List<string> Paragraphs, Table? Table, List<Chart> Charts);

    private static Table ComparisonTable(ExperimentResults results)
    {
        bool timed = results.Models.Any(m => m.Throughput is not null);
        var header = new List<string> { "model", "widths", "parameters", "MACs", "accuracy", "macro accuracy", "log loss" };
        if (timed)
        {
            int n = results.Models.First(m => m.Throughput is not null).Throughput!.BatchSize;
            header.AddRange(["latency b1 (ms)", "samples/s b1", $"samples/s b{n}"]);
        }
        header.AddRange(["epochs", "training time"]);
        var rows = results.Models.Select(m =>
        {
            var row = new List<string>
            {
                m.Name,
                m.ChannelWidths is null ? "" : string.Join("/", m.ChannelWidths),
                m.Parameters.ToString("N0", Ci),
                m.Macs.ToString("N0", Ci),
                m.Test is null ? "-" : m.Test.Accuracy.ToString("P2", Ci),
                m.Test is null ? "-" : m.Test.MacroAccuracy.ToString("P2", Ci),
                m.Test is null ? "-" : m.Test.LogLoss.ToString("F4", Ci),
            };
            if (timed)
                row.AddRange(m.Throughput is { } t
                    ? [t.Batch1Milliseconds.ToString("F2", Ci), t.Batch1SamplesPerSecond.ToString("N0", Ci), t.BatchNSamplesPerSecond.ToString("N0", Ci)]
                    : ["-", "-", "-"]);
            row.AddRange([m.Epochs.ToString(Ci), Duration(m.TrainingSeconds)]);
            return row.ToArray();
        }).ToList();
        return new Table(header.ToArray(), rows);
    }

    private static List<Section> Sections(ExperimentResults results, IReadOnlyList<Chart> charts)
    {
        Chart? Find(string file) => charts.FirstOrDefault(c => c.FileName == file);
        List<Chart> Found(params string[] files) => files.Select(Find).OfType<Chart>().ToList();
        var sections = new List<Section>();

        var verdict = new List<string>();
        if (results.Claim is { } claim) verdict.Add(claim.Sentence);
        else verdict.Add("No verdict on the seed's claim: it needs a small and a pruned model, both tested.");
        verdict.Add("The seed's claim: structured pruning of the big CP-ResNet (32/64/128) down to at most the small one's (24/48/72) parameters, with fine-tuning, gives a model that is more accurate than the small one. Accuracy here is the test macro accuracy (mean of the per-class accuracies), the seed's headline metric.");
        sections.Add(new Section("Verdict", verdict, null, []));

        var comparison = new List<string> { "Parameters count learnable weights (batch-norm running statistics do not count); MACs are multiply-accumulates per sample, all layers counted as torchinfo does. Training time is the sum of the epochs' wall-clock time, validation included (for the pruned model: its fine-tuning only)." };
        if (results.Models.FirstOrDefault(m => m.Throughput is not null)?.Throughput is { } tp)
            comparison.Add(string.Create(Ci,
                $"Latency and throughput: median of {tp.Runs1} forward passes at batch size 1 and {tp.RunsN} at batch size {tp.BatchSize}, eval mode, no gradients, on {tp.Device} with {tp.Threads} CPU threads, after warm-up, {(tp.Engine == "plan" ? "through the compiled CPU inference plan (batch norm folded, activations and pools fused)" : "op by op (eager)")}."));
        sections.Add(new Section("Comparison", comparison, ComparisonTable(results), Found("macro-accuracy.png")));

        if (results.Pruning is { } p)
        {
            var stepRatios = string.Join(", ", Enumerable.Range(1, Math.Max(p.IterativeSteps, 1)).Select(k => (p.Ratio * k / Math.Max(p.IterativeSteps, 1)).ToString("0.###", Ci)));
            var text = new List<string>
            {
                string.Create(Ci, $"Criterion {p.Criterion} magnitude (sum of |w| over each channel's slices), group reduction {p.GroupReduction ?? "not recorded"}, normalizer {p.Normalizer ?? "not recorded"}, {p.Scope} pruning, final classifier left whole. Channel ratio {p.Ratio:0.####} reached in {p.IterativeSteps} step(s) (ratios {stepRatios}, always relative to the widths before pruning), each followed by {p.FinetuneEpochsPerStep} fine-tuning epoch(s)."),
                string.Create(Ci, $"Parameters {p.ParametersBefore:N0} -> {p.ParametersAfter:N0} ({(double)p.ParametersAfter / Math.Max(p.ParametersBefore, 1):P1} kept); conv and linear MACs per sample {p.MacsBefore:N0} -> {p.MacsAfter:N0}."),
            };
            if (p.SourceCheckpoint is not null) text.Add($"The checkpoint that was pruned: `{p.SourceCheckpoint}`.");
            sections.Add(new Section("Pruning", text, null, []));
        }

        sections.Add(new Section("Learning curves",
            ["Training and validation loss and accuracy per epoch of every model. The pruned model's curve is its fine-tuning, one stage per pruning step, marked by dotted lines."],
            null, Found("learning-curves-loss.png", "learning-curves-accuracy.png")));

        var tested = results.Models.Where(m => m.Test is not null).ToList();
        if (tested.Count > 0)
        {
            var names = tested[0].Test!.ClassNames;
            var rows = names.Select((name, c) => new[] { name }.Concat(tested.Select(m =>
                c < m.Test!.PerClassAccuracy.Length && m.Test.PerClassAccuracy[c] is { } a ? a.ToString("P2", Ci) : "-")).ToArray()).ToList();
            sections.Add(new Section("Accuracy per class", [], new Table(["class", .. tested.Select(m => m.Name)], rows), Found("per-class-accuracy.png")));

            var withDevices = tested.Where(m => m.Test!.PerDevice is { Count: > 0 }).ToList();
            if (withDevices.Count > 0)
            {
                var keys = withDevices.SelectMany(m => m.Test!.PerDevice!.Keys.Concat(m.Test.PerDeviceGroup?.Keys ?? [])).Distinct().ToList();
                var deviceRows = keys.Select(k => new[] { k }.Concat(withDevices.Select(m =>
                {
                    var r = m.Test!.PerDevice!.GetValueOrDefault(k) ?? m.Test.PerDeviceGroup?.GetValueOrDefault(k);
                    return r is null ? "-" : string.Create(Ci, $"{r.Accuracy:P1} ({r.Count:N0})");
                })).ToArray()).ToList();
                sections.Add(new Section("Accuracy per device",
                    ["Accuracy per recording device (clips in brackets) and per group: real (a, b, c), seen (s1-s3), unseen (s4-s6, absent from training)."],
                    new Table(["device", .. withDevices.Select(m => m.Name)], deviceRows), Found("per-device-accuracy.png")));
            }

            sections.Add(new Section("Accuracy against cost", ["Up and to the left is better: more accurate for fewer parameters, or for less time per sample."],
                null, Found("accuracy-vs-parameters.png", "accuracy-vs-latency.png")));
            sections.Add(new Section("Confusion matrices", ["Rows: true class; columns: predicted class."], null,
                tested.Select(m => Find($"confusion-{Charts.Slug(m.Name)}.png")).OfType<Chart>().ToList()));
        }

        var notes = new List<string>(results.Notes);
        if (results.Machine is { } machine)
            notes.Add(string.Create(Ci, $"Measured on {machine.Os}, {machine.ProcessorCount} logical processors, {machine.Threads} CPU threads, device {machine.Device}."));
        if (results.TotalSeconds is { } total) notes.Add($"The whole command took {Duration(total)}.");
        foreach (var m in results.Models.Where(m => m.RunDirectory is not null)) notes.Add($"{m.Name}: run folder `{m.RunDirectory}`.");
        notes.Add($"Written {results.CreatedUtc} by NeuralCore.");
        sections.Add(new Section("Notes", notes, null, []));
        return sections;
    }

    private static string Markdown(ExperimentResults results, List<Section> sections)
    {
        var sb = new StringBuilder();
        sb.Append("# ").AppendLine(results.Title).AppendLine();
        sb.AppendLine(DataLine(results, markdown: true)).AppendLine();
        foreach (var section in sections)
        {
            sb.Append("## ").AppendLine(section.Heading).AppendLine();
            foreach (var p in section.Paragraphs) sb.AppendLine(p).AppendLine();
            if (section.Table is { } table)
            {
                sb.AppendLine("| " + string.Join(" | ", table.Header.Select(Cell)) + " |");
                sb.AppendLine("|" + string.Join("|", table.Header.Select((_, c) => c == 0 ? " --- " : " ---: ")) + "|");
                foreach (var row in table.Rows) sb.AppendLine("| " + string.Join(" | ", row.Select(Cell)) + " |");
                sb.AppendLine();
            }
            foreach (var chart in section.Charts)
                sb.AppendLine(CultureInfo.InvariantCulture, $"![{chart.Title}](charts/{chart.FileName})").AppendLine().AppendLine($"*{chart.Caption}*").AppendLine();
        }
        return sb.ToString();

        static string Cell(string s) => s.Replace("|", "\\|", StringComparison.Ordinal);
    }

    private static string DataLine(ExperimentResults results, bool markdown)
    {
        string data = results.Data.Length == 0 ? "not recorded" : results.Data;
        string preset = results.Preset is null ? "" : $" Preset: {results.Preset}.";
        string synthetic = results.SyntheticData
            ? " This run used SYNTHETIC data (a generated stand-in with the real dataset's layout), not the real dataset: its numbers say whether the pipeline works, not how the models do on the real task."
            : "";
        return markdown ? $"Data: {data}.{preset}{(synthetic.Length > 0 ? " **" + synthetic.Trim() + "**" : "")}" : $"Data: {data}.{preset}{synthetic}";
    }

    private static string Html(ExperimentResults results, List<Section> sections)
    {
        static string E(string s) => WebUtility.HtmlEncode(s);
        static string Inline(string s)
        {
            // Paragraphs may hold `code` spans (paths); everything else is plain text.
            var parts = E(s).Split('`');
            var sb = new StringBuilder();
            for (int i = 0; i < parts.Length; i++) sb.Append(i % 2 == 1 ? $"<code>{parts[i]}</code>" : parts[i]);
            return sb.ToString();
        }
        var html = new StringBuilder();
        html.AppendLine("<!DOCTYPE html>");
        html.AppendLine("<html lang=\"en\"><head><meta charset=\"utf-8\">");
        html.AppendLine($"<title>{E(results.Title)}</title>");
        html.AppendLine("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
        html.AppendLine("""
            <style>
            body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; max-width: 1150px; margin: 2em auto; padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
            h1 { font-size: 1.7em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
            h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #eee; }
            table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
            th, td { border: 1px solid #d0d0d0; padding: .35em .6em; text-align: right; }
            th:first-child, td:first-child { text-align: left; }
            th { background: #f3f5f7; }
            tr:nth-child(even) td { background: #fafafa; }
            figure { margin: 1.2em 0; }
            figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
            figcaption { color: #555; font-size: .9em; }
            .synthetic { background: #fff4d6; border: 1px solid #e0b84c; padding: .6em .9em; }
            .verdict { font-size: 1.1em; font-weight: 600; }
            code { background: #f3f3f3; padding: 0 .25em; }
            </style>
            """);
        html.AppendLine("</head><body>");
        html.AppendLine($"<h1>{E(results.Title)}</h1>");
        html.AppendLine($"<p class=\"{(results.SyntheticData ? "synthetic" : "data")}\">{E(DataLine(results, markdown: false))}</p>");
        foreach (var section in sections)
        {
            html.AppendLine($"<section><h2>{E(section.Heading)}</h2>");
            for (int i = 0; i < section.Paragraphs.Count; i++)
                html.AppendLine(section.Heading == "Verdict" && i == 0
                    ? $"<p class=\"verdict\" id=\"verdict\">{Inline(section.Paragraphs[i])}</p>"
                    : $"<p>{Inline(section.Paragraphs[i])}</p>");
            if (section.Table is { } table)
            {
                html.AppendLine("<table><thead><tr>" + string.Concat(table.Header.Select(h => $"<th>{E(h)}</th>")) + "</tr></thead><tbody>");
                foreach (var row in table.Rows) html.AppendLine("<tr>" + string.Concat(row.Select(v => $"<td>{E(v)}</td>")) + "</tr>");
                html.AppendLine("</tbody></table>");
            }
            foreach (var chart in section.Charts)
                html.AppendLine($"<figure class=\"chart\" id=\"chart-{E(Path.GetFileNameWithoutExtension(chart.FileName))}\"><img alt=\"{E(chart.Title)}\" src=\"data:image/png;base64,{Convert.ToBase64String(chart.Png)}\"><figcaption>{E(chart.Caption)}</figcaption></figure>");
            html.AppendLine("</section>");
        }
        html.AppendLine("</body></html>");
        return html.ToString();
    }

    /// <summary>Seconds as <c>4 min 05 s</c> or <c>12.3 s</c>.</summary>
    public static string Duration(double seconds) => seconds >= 60
        ? string.Create(Ci, $"{(int)(seconds / 60)} min {(int)seconds % 60:00} s")
        : string.Create(Ci, $"{seconds:0.0} s");
}
