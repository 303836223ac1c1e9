using System.Diagnostics;
using System.Text.Json.Nodes;
using SkiaSharp;

namespace NeuralCore.Cli.Tests;

/// <summary>One <c>reproduce mnist --quick</c> run on a tiny IDX folder, shared by the tests of its report.</summary>
public sealed class TinyReproduceRun : IDisposable
{
    // The smallest run that still goes through every stage: 80 training images, one epoch per stage, two pruning steps.
    internal static readonly string[] Options =
    [
        "--quick", "--validation-count", "16", "--limit-train", "80", "--epochs", "1", "--finetune-epochs", "1",
        "--batch-size", "16", "--finetune-batch-size", "16", "--throughput-batch", "8", "--threads", "2",
    ];

    private readonly TinyMnist _data = new();

    public TinyReproduceRun()
    {
        Out = Path.Combine(_data.Root, "reproduce");
        (Code, StdOut, StdErr) = Cli.Run(["reproduce", "mnist", "--data-dir", _data.DataDir, "--out", Out, "--json", .. Options]);
    }

    internal string DataDir => _data.DataDir;
    internal string Root => _data.Root;
    internal string Out { get; }
    internal int Code { get; }
    internal string StdOut { get; }
    internal string StdErr { get; }

    internal JsonObject Results => JsonNode.Parse(File.ReadAllText(Path.Combine(Out, "results.json")))!.AsObject();

    public void Dispose() => _data.Dispose();
}

public sealed class ReproduceCommandTests(TinyReproduceRun run) : IClassFixture<TinyReproduceRun>
{
    [Fact]
    public void ReproduceMnistQuick_WritesResultsForTheThreeModels_WithTheSeedsParameterCounts()
    {
        Assert.True(run.Code == 0, run.StdErr);
        var results = run.Results;
        var models = results["models"]!.AsArray().Select(m => m!.AsObject()).ToList();
        Assert.Equal(["small", "big", "pruned"], models.Select(m => m["role"]!.GetValue<string>()));
        long Params(int i) => models[i]["parameters"]!.GetValue<long>();
        Assert.Equal(59_804, Params(0));
        Assert.Equal(131_316, Params(1));
        Assert.Equal(47_349, Params(2));
        Assert.True(Params(2) <= Params(0));
        Assert.Equal([19, 38, 76], models[2]["channel_widths"]!.AsArray().Select(v => v!.GetValue<int>()));

        foreach (var model in models)
        {
            var test = model["test"]!.AsObject();
            long samples = test["samples"]!.GetValue<long>();
            Assert.Equal(TinyMnist.TestCount, samples);
            foreach (var key in new[] { "accuracy", "macro_accuracy" })
                Assert.InRange(test[key]!.GetValue<double>(), 0.0, 1.0);
            double logLoss = test["log_loss"]!.GetValue<double>();
            Assert.True(double.IsFinite(logLoss) && logLoss > 0, $"log loss {logLoss}");
            Assert.Equal(10, test["per_class_accuracy"]!.AsArray().Count);
            Assert.Equal(samples, test["confusion_matrix"]!.AsArray().SelectMany(r => r!.AsArray()).Sum(v => v!.GetValue<long>()));
            var throughput = model["throughput"]!.AsObject();
            Assert.True(throughput["batch1_ms"]!.GetValue<double>() > 0);
            Assert.True(throughput["batchN_samples_per_second"]!.GetValue<double>() > 0);
            Assert.Equal(8, throughput["batch_size"]!.GetValue<int>());
            Assert.True(model["training_seconds"]!.GetValue<double>() > 0);
            Assert.True(model["macs"]!.GetValue<long>() > model["conv_macs"]!.GetValue<long>() / 2);
        }
        // Two pruning steps, each with one fine-tuning epoch: two curve stages.
        Assert.Equal(2, models[2]["stages"]!.AsArray().Count);
        Assert.Equal(2, models[2]["epochs"]!.GetValue<int>());

        var pruning = results["pruning"]!.AsObject();
        Assert.Equal(0.4, pruning["ratio"]!.GetValue<double>());
        Assert.Equal(2, pruning["iterative_steps"]!.GetValue<int>());
        Assert.Equal("L1", pruning["criterion"]!.GetValue<string>());
        Assert.Equal(131_316, pruning["parameters_before"]!.GetValue<long>());
        Assert.Equal(47_349, pruning["parameters_after"]!.GetValue<long>());

        var claim = results["claim"]!.AsObject();
        double difference = claim["difference"]!.GetValue<double>();
        bool met = claim["met"]!.GetValue<bool>();
        Assert.Equal(difference > 0, met);
        Assert.StartsWith(met ? "Yes" : "No", claim["sentence"]!.GetValue<string>());
        Assert.Equal("quick", results["preset"]!.GetValue<string>());
        Assert.False(results["synthetic_data"]!.GetValue<bool>());

        // --json prints the same object with the report's paths.
        var printed = JsonNode.Parse(run.StdOut)!.AsObject();
        Assert.Equal(Path.Combine(run.Out, "report.html"), printed["report_html"]!.GetValue<string>());
    }

    [Fact]
    public void Report_IsSelfContained_WithEveryChartAsAnEmbeddedPng()
    {
        Assert.True(run.Code == 0, run.StdErr);
        var html = File.ReadAllText(Path.Combine(run.Out, "report.html"));
        Assert.DoesNotContain("<script", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("src=\"http", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("href=\"http", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("@import", html, StringComparison.Ordinal);
        var charts = Directory.GetFiles(Path.Combine(run.Out, "charts"), "*.png").Select(Path.GetFileName).ToHashSet();
        // Headline bars, two learning curves, per-class, accuracy vs parameters and latency, three confusion matrices.
        Assert.Equal(9, charts.Count);
        Assert.Contains("macro-accuracy.png", charts);
        Assert.Equal(charts.Count, CountOf(html, "<img alt=") );
        Assert.Equal(charts.Count, CountOf(html, "src=\"data:image/png;base64,"));
        Assert.Contains(run.Results["claim"]!["sentence"]!.GetValue<string>().Split(',')[0].Replace("'", "&#39;"), html);

        var markdown = File.ReadAllText(Path.Combine(run.Out, "report.md"));
        Assert.Contains("| small | 24/48/72 | 59,804 |", markdown);
        Assert.Contains("| pruned | 19/38/76 | 47,349 |", markdown);
        foreach (var chart in charts) Assert.Contains($"(charts/{chart})", markdown);
    }

    [Fact]
    public void Rerun_WithoutResume_Refuses_AndWithResume_ReusesEveryStage()
    {
        Assert.True(run.Code == 0, run.StdErr);
        string[] args = ["reproduce", "mnist", "--data-dir", run.DataDir, "--out", run.Out, .. TinyReproduceRun.Options];
        var (code, _, stderr) = Cli.Run(args);
        Assert.Equal(1, code);
        Assert.Contains("--resume", stderr);

        var metrics = Path.Combine(run.Out, "small", "metrics.jsonl");
        var written = File.GetLastWriteTimeUtc(metrics);
        var (resumed, stdout, resumedErr) = Cli.Run([.. args, "--resume"]);
        Assert.True(resumed == 0, resumedErr);
        Assert.Contains("'small' is finished", stdout);
        Assert.Contains("'big' is finished", stdout);
        Assert.Contains("'pruned' is finished", stdout);
        Assert.Equal(written, File.GetLastWriteTimeUtc(metrics));

        var (changed, _, changedErr) = Cli.Run([.. args, "--resume", "--ratio", "0.3"]);
        Assert.Equal(1, changed);
        Assert.Contains("Ratio", changedErr);
    }

    [Fact]
    public void ReportCommand_OnTheRunFolders_FindsTheRolesAndTheSameVerdict()
    {
        Assert.True(run.Code == 0, run.StdErr);
        var outDir = Path.Combine(run.Root, "report-of-runs");
        var (code, stdout, stderr) = Cli.Run("report", Path.Combine(run.Out, "small"), Path.Combine(run.Out, "big"), Path.Combine(run.Out, "pruned"),
            "--out", outDir, "--no-throughput", "--json");
        Assert.True(code == 0, stderr);
        var report = JsonNode.Parse(stdout)!.AsObject();
        Assert.Equal(["small", "big", "pruned"], report["models"]!.AsArray().Select(m => m!["role"]!.GetValue<string>()));
        Assert.Equal(run.Results["claim"]!["sentence"]!.GetValue<string>(), report["claim"]!["sentence"]!.GetValue<string>());
        Assert.True(File.Exists(Path.Combine(outDir, "report.html")));
        // Without speed measurements there is no latency chart.
        Assert.False(File.Exists(Path.Combine(outDir, "charts", "accuracy-vs-latency.png")));

        var (missing, _, missingErr) = Cli.Run("report", Path.Combine(run.Root, "no-such-run"), "--out", outDir);
        Assert.Equal(1, missing);
        Assert.Contains("Run folder not found", missingErr);
    }

    [Fact]
    public async Task HtmlReport_RendersInHeadlessChromium_WithTheChartsDrawn()
    {
        Assert.True(run.Code == 0, run.StdErr);
        var chromium = new[] { "chromium", "chromium-browser", "google-chrome" }
            .SelectMany(name => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(dir => Path.Combine(dir, name)))
            .FirstOrDefault(File.Exists);
        if (chromium is null) Assert.Skip("Chromium is not installed (Debian: apt-get install chromium); the HTML report cannot be rendered.");

        var profile = Path.Combine(run.Root, "chromium-profile");
        var screenshot = Path.Combine(run.Root, "report.png");
        var start = new ProcessStartInfo(chromium)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        foreach (var arg in new[]
                 {
                     "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--hide-scrollbars", "--enable-logging=stderr", "--v=0", $"--user-data-dir={profile}",
                     $"--screenshot={screenshot}", "--window-size=1200,2000", new Uri(Path.Combine(run.Out, "report.html")).AbsoluteUri,
                 })
            start.ArgumentList.Add(arg);
        // Every wait is bounded: Chromium's helper processes inherit its stderr and may outlive it, so a read to the
        // end could wait for them forever (and hold the whole test run); the tree is killed whatever happens.
        var cancel = TestContext.Current.CancellationToken;
        using var process = Process.Start(start)!;
        var stderrTask = process.StandardError.ReadToEndAsync(cancel);
        _ = process.StandardOutput.ReadToEndAsync(cancel);
        bool exited = true;
        try
        {
            await process.WaitForExitAsync(cancel).WaitAsync(TimeSpan.FromSeconds(90), cancel);
        }
        catch (TimeoutException)
        {
            exited = false;
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
        string log;
        try
        {
            log = await stderrTask.WaitAsync(TimeSpan.FromSeconds(10), cancel);
        }
        catch (TimeoutException)
        {
            log = "(its stderr was still open 10 s after it exited)";
        }
        Assert.True(exited, $"Chromium did not finish within 90 s. Its log:\n{log}");
        Assert.True(File.Exists(screenshot), $"Chromium wrote no screenshot. Its log:\n{log}");
        // The page has no scripts, so there is nothing to fail; a console error would still show up in the log.
        Assert.DoesNotContain("Uncaught", log);
        Assert.DoesNotContain(":CONSOLE(", log);

        using var bitmap = SKBitmap.Decode(screenshot);
        Assert.Equal(1200, bitmap.Width);
        int nonWhite = 0, blue = 0, orange = 0, green = 0;
        for (int y = 0; y < bitmap.Height; y += 2)
            for (int x = 0; x < bitmap.Width; x += 2)
            {
                var p = bitmap.GetPixel(x, y);
                if (p.Red < 240 || p.Green < 240 || p.Blue < 240) nonWhite++;
                if (Near(p, 31, 119, 180)) blue++;
                if (Near(p, 255, 127, 14)) orange++;
                if (Near(p, 44, 160, 44)) green++;
            }
        int sampled = (bitmap.Width / 2) * (bitmap.Height / 2);
        Assert.True(nonWhite > sampled / 50, $"The screenshot is nearly blank: {nonWhite} of {sampled} sampled pixels are not white.");
        // The colours of the small, big and pruned model's bars in the headline chart (in the first 2,000 pixels).
        Assert.True(blue > 200 && orange > 200 && green > 200, $"Chart colours not found: blue {blue}, orange {orange}, green {green} pixels.");
    }

    private static bool Near(SKColor p, int r, int g, int b) => Math.Abs(p.Red - r) < 12 && Math.Abs(p.Green - g) < 12 && Math.Abs(p.Blue - b) < 12;

    private static int CountOf(string text, string part)
    {
        int count = 0;
        for (int i = text.IndexOf(part, StringComparison.Ordinal); i >= 0; i = text.IndexOf(part, i + part.Length, StringComparison.Ordinal)) count++;
        return count;
    }
}

public sealed class ReproduceResumeErrorTests
{
    [Theory]
    [InlineData("{\n  \"dataset\": \"mnist\",\n  \"preset\": \"qu", "LineNumber: 2")]
    [InlineData("null", "it does not hold a JSON object")]
    public void Resume_WithADamagedReproduceJson_IsOneClearMessage(string text, string reason)
    {
        using var data = new TinyMnist();
        var outDir = Path.Combine(data.Root, "reproduce");
        Directory.CreateDirectory(Path.Combine(outDir, "small"));
        File.WriteAllText(Path.Combine(outDir, "small", "config.json"), "{}");
        File.WriteAllText(Path.Combine(outDir, "reproduce.json"), text);

        var (code, stdout, stderr) = Cli.Run(["reproduce", "mnist", "--data-dir", data.DataDir, "--out", outDir, "--resume", .. TinyReproduceRun.Options]);

        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        var message = Cli.OneLine(stderr);
        Assert.StartsWith($"error: {Path.Combine(outDir, "reproduce.json")} is damaged (", message);
        Assert.Contains(reason, message);
        Assert.EndsWith("or delete only reproduce.json and resume with the options the run was started with.", message);
    }
}

public sealed class ReproduceAscTests
{
    [Fact]
    public void ReproduceAsc_OnATinySyntheticFolder_ReportsPerDevice_AndPrunesToTheSeedsAscSize()
    {
        var root = Path.Combine(Path.GetTempPath(), "nc-reproduce-asc-" + Guid.NewGuid().ToString("N"));
        try
        {
            var data = Path.Combine(root, "tau22");
            NeuralCore.Data.SyntheticAsc.Generate(data, clipsPerClass: 12, seed: 1);
            var outDir = Path.Combine(root, "out");
            var (code, stdout, stderr) = Cli.Run("reproduce", "asc", "--data-dir", data, "--out", outDir, "--cache-dir", Path.Combine(root, "cache"),
                "--limit-train", "30", "--epochs", "1", "--finetune-epochs", "1", "--batch-size", "16", "--finetune-batch-size", "16",
                "--throughput-batch", "4", "--threads", "2", "--json");
            Assert.True(code == 0, stderr);
            Assert.Contains("SYNTHETIC", stderr);
            var results = JsonNode.Parse(stdout)!.AsObject();
            Assert.True(results["synthetic_data"]!.GetValue<bool>());
            Assert.Equal("asc", results["dataset"]!.GetValue<string>());
            var models = results["models"]!.AsArray().Select(m => m!.AsObject()).ToList();
            Assert.Equal([59_804L, 131_316L, 54_706L], models.Select(m => m["parameters"]!.GetValue<long>()));
            Assert.Equal([1, 128, 100], models[0]["input_shape"]!.AsArray().Select(v => v!.GetValue<int>()));
            string[] devices = ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"];
            foreach (var model in models)
            {
                var test = model["test"]!.AsObject();
                Assert.Equal("airport", test["class_names"]![0]!.GetValue<string>());
                var perDevice = test["per_device"]!.AsObject();
                Assert.NotEmpty(perDevice);
                Assert.All(perDevice, p => Assert.Contains(p.Key, devices));
                Assert.Equal(test["samples"]!.GetValue<long>(), perDevice.Sum(p => p.Value!["count"]!.GetValue<long>()));
                Assert.Contains("unseen", test["per_device_group"]!.AsObject().Select(p => p.Key));
            }
            Assert.Equal(0.35, results["pruning"]!["ratio"]!.GetValue<double>());
            Assert.True(File.Exists(Path.Combine(outDir, "charts", "per-device-accuracy.png")));
            Assert.Contains("## Accuracy per device", File.ReadAllText(Path.Combine(outDir, "report.md")));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}

public class ReproduceScheduleTests
{
    /// <summary>
    /// The learning-rate factor of a run's last epoch under <see cref="Commands.ReproduceCommand.WithSchedule"/>, as
    /// docs/reproduce.md states it: the first 30 epochs of the seed's schedule compressed to the run, whose ramp-down
    /// arrives at 0.001 only after the last epoch; 30 epochs and more keep the seed's own schedule.
    /// </summary>
    [Theory]
    [InlineData(2, 1.0)]
    [InlineData(4, 1.0)]
    [InlineData(8, 0.334)]
    [InlineData(10, 0.334)]
    [InlineData(20, 0.1437)]
    [InlineData(30, 0.1009)]
    [InlineData(50, 0.001)]
    public void AShortRunsLastEpochRunsAtTheRateTheDocsGive(int epochs, double lastFactor)
    {
        var options = Commands.ReproduceCommand.WithSchedule(new Training.TrainerOptions { Epochs = epochs });
        var schedule = Optim.Schedules.ExpWarmupLinearDown(options.WarmupEpochs, options.RampdownLength, options.RampdownStart, options.LastLrFactor);
        // Epoch k (from 1) trains at the factor of k - 1: the scheduler steps after each epoch.
        Assert.Equal(lastFactor, schedule(epochs - 1), 0.0005);
        if (epochs >= 30) Assert.Equal((6, 20, 10), (options.WarmupEpochs, options.RampdownStart, options.RampdownLength));
    }
}
