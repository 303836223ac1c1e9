using NeuralCore.Training.Reporting;

namespace NeuralCore.Training.Tests;

public sealed class ReportingTests
{
    private static ModelResult Model(string name, string? role, long parameters, double macro, long samples = 1000, bool devices = false) => new()
    {
        Name = name,
        Role = role,
        Parameters = parameters,
        Macs = parameters * 10,
        ConvMacs = parameters * 9,
        InputShape = [1, 28, 28],
        ChannelWidths = [24, 48, 72],
        Epochs = 2,
        TrainingSeconds = 3.5,
        Stages = [new CurveStage("train", [new EpochMetrics(1, 1.2, 0.6, 1.1, 0.65, 1e-3, 1.5), new EpochMetrics(2, 0.8, 0.8, 0.7, 0.82, 1e-3, 2.0)])],
        Test = new ModelTestResult
        {
            Samples = samples,
            Accuracy = macro,
            MacroAccuracy = macro,
            LogLoss = 0.5,
            ClassNames = ["a", "b"],
            PerClassAccuracy = [macro, macro],
            ConfusionMatrix = [[400, 100], [100, 400]],
            PerDevice = devices ? new Dictionary<string, TestSubsetReport> { ["a"] = new(600, macro, macro, 0.4), ["s4"] = new(400, macro - 0.1, macro - 0.1, 0.9) } : null,
            PerDeviceGroup = devices ? new Dictionary<string, TestSubsetReport> { ["real"] = new(600, macro, macro, 0.4), ["unseen"] = new(400, macro - 0.1, macro - 0.1, 0.9) } : null,
        },
        Throughput = new ThroughputResult(0.5, 2000, 256, 40, 6400, 30, 5, 2, "cpu"),
    };

    [Theory]
    [InlineData(47_349, 0.985, true, "Yes")]
    [InlineData(47_349, 0.975, false, "No: the pruned model is small enough")]
    [InlineData(60_000, 0.985, false, "No: the pruned model is more accurate")]
    [InlineData(60_000, 0.975, false, "No: the pruned model is neither")]
    public void Claim_NeedsFewerOrEqualParameters_AndAHigherMacroAccuracy(long prunedParameters, double prunedMacro, bool met, string start)
    {
        var claim = ClaimResult.Evaluate(Model("small", "small", 59_804, 0.980), Model("pruned", "pruned", prunedParameters, prunedMacro));
        Assert.Equal(met, claim.Met);
        Assert.StartsWith(start, claim.Sentence);
        Assert.Equal(prunedMacro - 0.980, claim.Difference, 12);
        Assert.Contains(prunedMacro > 0.98 ? "+0.50 percentage points" : "-0.50 percentage points", claim.Sentence);
    }

    [Fact]
    public void Claim_SaysWhenTheDifferenceIsWithinItsStandardError()
    {
        // 100 test samples: a standard error of several points, far above a 0.5-point difference.
        var noisy = ClaimResult.Evaluate(Model("small", "small", 59_804, 0.90, samples: 100), Model("pruned", "pruned", 47_349, 0.905, samples: 100));
        Assert.True(noisy.StandardError > 0.04);
        Assert.Contains("smaller than its standard error", noisy.Sentence);
        var clear = ClaimResult.Evaluate(Model("small", "small", 59_804, 0.90, samples: 100_000), Model("pruned", "pruned", 47_349, 0.95, samples: 100_000));
        Assert.DoesNotContain("standard error", clear.Sentence);
    }

    [Fact]
    public void Roles_GoToTheSmallestAndLargestTrainedModel_AndTheClaimIsJudged()
    {
        var (models, claim) = ReportBuilder.AssignRolesAndJudge([Model("wide", null, 131_316, 0.97), Model("narrow", null, 59_804, 0.96), Model("p", "pruned", 47_349, 0.965)]);
        Assert.Equal(["big", "small", "pruned"], models.Select(m => m.Role));
        Assert.NotNull(claim);
        Assert.True(claim.Met);

        var (alone, none) = ReportBuilder.AssignRolesAndJudge([Model("only", null, 59_804, 0.96)]);
        Assert.Null(alone[0].Role);
        Assert.Null(none);
    }

    [Fact]
    public void ResultsJson_RoundTrips_AndRejectsUnknownVersions()
    {
        var results = new ExperimentResults { Title = "t", Dataset = "mnist", Models = [Model("small", "small", 59_804, 0.98)] };
        var back = ExperimentResults.FromJson(results.ToJson());
        Assert.Equal(59_804, back.Models[0].Parameters);
        Assert.Equal(0.98, back.Models[0].Test!.MacroAccuracy);
        Assert.Equal(2, back.Models[0].Stages[0].Epochs.Count);
        Assert.Contains("\"macro_accuracy\": 0.98", results.ToJson());
        var future = Assert.Throws<InvalidDataException>(() => ExperimentResults.FromJson(results.ToJson().Replace("\"schema_version\": 1", "\"schema_version\": 7")));
        Assert.Contains("schema_version 7", future.Message);
        Assert.Throws<InvalidDataException>(() => ExperimentResults.FromJson("{ not json"));
    }

    [Fact]
    public void Write_AscResults_AddsThePerDeviceChartAndTable_AndFlagsSyntheticData()
    {
        var dir = Path.Combine(Path.GetTempPath(), "nc-report-" + Guid.NewGuid().ToString("N"));
        try
        {
            var models = new[] { Model("small", "small", 59_804, 0.50, devices: true), Model("big", "big", 131_316, 0.52, devices: true), Model("pruned", "pruned", 54_706, 0.51, devices: true) };
            var (_, claim) = ReportBuilder.AssignRolesAndJudge(models);
            var results = new ExperimentResults { Title = "asc", Dataset = "asc", Data = "SYNTHETIC asc", SyntheticData = true, Models = models, Claim = claim };
            var files = ReportBuilder.Write(results, dir);

            Assert.Contains(files.Charts, c => c.EndsWith("per-device-accuracy.png", StringComparison.Ordinal));
            foreach (var chart in files.Charts)
                Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(chart).Take(4));
            var markdown = File.ReadAllText(files.Markdown);
            Assert.Contains("## Accuracy per device", markdown);
            Assert.Contains("| unseen | 40.0 % (400) |", markdown);
            Assert.Contains("**This run used SYNTHETIC data", markdown);
            Assert.Contains(claim!.Sentence, markdown);
            var html = File.ReadAllText(files.Html);
            Assert.Contains("class=\"synthetic\"", html);
            Assert.DoesNotContain("<script", html);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
