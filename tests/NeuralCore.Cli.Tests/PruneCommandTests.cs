using System.Text.Json;
using NeuralCore.IO;
using NeuralCore.Models;

namespace NeuralCore.Cli.Tests;

public class PruneCommandTests
{
    internal static string BigCheckpoint(TinyMnist data)
    {
        var path = Path.Combine(data.Root, "big.safetensors");
        var model = new CpResNet(CpResNetConfig.FromWidths("32 64 128"), new Generator(1));
        model.Save(path, model.Config.ToMetadata());
        return path;
    }

    [Fact]
    public void Prune_AtTheSeedRatio_GivesTheKnownWidths_FineTunes_AndResumesAFinishedRun()
    {
        using var data = new TinyMnist();
        var big = BigCheckpoint(data);
        var output = Path.Combine(data.Root, "pruned");
        string[] args = ["prune", "--checkpoint", big, "--ratio", "0.4", "--iterative-steps", "2", "--finetune-epochs", "1",
            "--batch-size", "32", "--data-dir", data.DataDir, "--validation-count", "16", "--out", output, "--json"];
        var (code, stdout, stderr) = Cli.Run(args);
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        var root = json.RootElement;
        Assert.Equal(131_316, root.GetProperty("parameters_before").GetInt64());
        Assert.Equal(47_349, root.GetProperty("parameters_after").GetInt64());
        Assert.Equal(539_695, root.GetProperty("conv_macs_after").GetInt64());
        var widths = root.GetProperty("widths").EnumerateArray().ToDictionary(w => w.GetProperty("group").GetString()!, w => w.GetProperty("final").GetInt32());
        Assert.Equal(19, widths["in_c.0"]);
        Assert.Equal(38, widths["stage2.block1.conv2"]);
        Assert.Equal(76, widths["stage3.block1.conv2"]);
        Assert.Equal(2, root.GetProperty("finetune_runs").GetArrayLength());
        foreach (var file in new[] { "pruned.safetensors", "steps.json", "result.json", "test.json", "step-1/metrics.jsonl", "step-2/best.safetensors" })
            Assert.True(File.Exists(Path.Combine(output, file)), $"{file} is missing");
        Assert.Equal(47_349, CpResNet.LoadCheckpoint(Path.Combine(output, "pruned.safetensors")).ParameterCount());

        // The pruned checkpoint works with the other commands without the original configuration.
        var (testCode, _, testErr) = Cli.Run("test", "--checkpoint", Path.Combine(output, "pruned.safetensors"), "--data-dir", data.DataDir);
        Assert.True(testCode == 0, testErr);

        var (again, _, againErr) = Cli.Run(args);
        Assert.Equal(1, again);
        Assert.Contains("--resume", againErr);
        var (resumed, resumedOut, resumedErr) = Cli.Run([.. args, "--resume"]);
        Assert.True(resumed == 0, resumedErr);
        Assert.Contains("after step 2 of 2", resumedErr);
        using var resumedJson = JsonDocument.Parse(resumedOut);
        Assert.Equal(47_349, resumedJson.RootElement.GetProperty("parameters_after").GetInt64());
    }

    [Fact]
    public void Prune_ToAParameterBudget_FindsTheRatio()
    {
        using var data = new TinyMnist();
        var (code, stdout, stderr) = Cli.Run("prune", "--checkpoint", BigCheckpoint(data), "--target-params", "59804",
            "--data-dir", data.DataDir, "--validation-count", "16", "--out", Path.Combine(data.Root, "budget"), "--json");
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        var after = json.RootElement.GetProperty("parameters_after").GetInt64();
        Assert.InRange(after, 55_000, 59_804);
        Assert.InRange(json.RootElement.GetProperty("ratio").GetDouble(), 0.3, 0.35);
    }

    [Fact]
    public void Prune_ListGroups_PrintsTheGroups()
    {
        using var data = new TinyMnist();
        var (code, stdout, stderr) = Cli.Run("prune", "--checkpoint", BigCheckpoint(data), "--list-groups");
        Assert.True(code == 0, stderr);
        Assert.Contains("group 0: in_c.0  width 32", stdout);
        Assert.Contains("stage2.block1.shortcut.conv.weight[dim 1]", stdout);
    }

    /// <summary>
    /// A parameter budget met by global pruning in several steps: the first search plans one step, global ranking
    /// re-ranks between steps, so the last step searches again from where the model is; the result is within the budget.
    /// </summary>
    [Fact]
    public void Prune_GlobalInSeveralStepsToABudget_EndsWithinIt()
    {
        using var data = new TinyMnist();
        var (code, stdout, stderr) = Cli.Run("prune", "--checkpoint", BigCheckpoint(data), "--global", "--iterative-steps", "4",
            "--target-params", "59804", "--data-dir", data.DataDir, "--validation-count", "16", "--out", Path.Combine(data.Root, "global"), "--json");
        Assert.True(code == 0, stderr);
        Assert.Contains("the last step for at most 59,804 parameters:", stderr);
        using var json = JsonDocument.Parse(stdout);
        var root = json.RootElement;
        long after = root.GetProperty("parameters_after").GetInt64();
        Assert.InRange(after, 50_000, 59_804);
        var steps = root.GetProperty("steps").EnumerateArray().ToList();
        Assert.Equal(4, steps.Count);
        Assert.Equal(after, steps[^1].GetProperty("ParametersAfter").GetInt64());
    }

    /// <summary>
    /// Taylor importance scores channels from a few training-mode passes, which would move the batch norms' running
    /// statistics: they are put back, so a model pruned without fine-tuning keeps its own (a fresh model's 0 and 1).
    /// </summary>
    [Fact]
    public void Prune_WithTaylorImportance_LeavesTheRunningStatisticsAlone()
    {
        using var data = new TinyMnist();
        var output = Path.Combine(data.Root, "taylor");
        var (code, _, stderr) = Cli.Run("prune", "--checkpoint", BigCheckpoint(data), "--ratio", "0.4", "--importance", "taylor",
            "--batch-size", "32", "--data-dir", data.DataDir, "--validation-count", "16", "--out", output);
        Assert.True(code == 0, stderr);
        var state = TensorIO.LoadSafeTensors(Path.Combine(output, "pruned.safetensors")).Tensors;
        var means = state.Where(p => p.Key.EndsWith("running_mean", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(means);
        Assert.All(means, p => Assert.All(p.Value.ToArray(), v => Assert.Equal(0f, v)));
        Assert.All(state.Where(p => p.Key.EndsWith("running_var", StringComparison.Ordinal)), p => Assert.All(p.Value.ToArray(), v => Assert.Equal(1f, v)));
    }

    [Theory]
    [InlineData("{\n  \"ParametersBefore\": 131316,\n  \"MacsBefore\": 14", "LineNumber: 2")]
    [InlineData("null", "it holds no list of steps")]
    [InlineData("{\"Ratio\": 0.4, \"MacsBefore\": 1433120, \"Steps\": [{\"Checkpoint\": \"step-1.safetensors\"}]}", "a finished step's result and checkpoint are missing")]
    public void Prune_ResumeWithADamagedStepsJson_IsOneClearMessage(string text, string reason)
    {
        using var data = new TinyMnist();
        var output = Path.Combine(data.Root, "pruned");
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "steps.json"), text);

        var (code, _, stderr) = Cli.Run("prune", "--checkpoint", BigCheckpoint(data), "--ratio", "0.4", "--iterative-steps", "2",
            "--data-dir", data.DataDir, "--validation-count", "16", "--out", output, "--resume");

        Assert.Equal(1, code);
        var message = Cli.OneLine(stderr);
        Assert.StartsWith($"error: {Path.Combine(output, "steps.json")} is not a valid pruning record (", message);
        Assert.Contains(reason, message);
        Assert.EndsWith($"Delete the folder {output} (or choose another --out) and run again to start over.", message);
    }

    [Theory]
    [InlineData("--importance", "magic", "--importance magic is not one of")]
    [InlineData("--ratio", "1.5", "--ratio must lie in")]
    [InlineData("--ignore", "no.such.layer", "no.such.layer")]
    public void Prune_UserMistakes_AreOneClearMessage(string option, string value, string expected)
    {
        using var data = new TinyMnist();
        var (code, _, stderr) = Cli.Run("prune", "--checkpoint", BigCheckpoint(data), option, value, "--data-dir", data.DataDir,
            "--validation-count", "16", "--out", Path.Combine(data.Root, "x"));
        Assert.NotEqual(0, code);
        Assert.Contains(expected, stderr);
        Assert.DoesNotContain("   at ", stderr);
    }
}

/// <summary>Runs that are compared bit for bit run alone: the other command tests set the process-wide thread count (<c>--threads</c>).</summary>
[CollectionDefinition(nameof(BitIdenticalCollection), DisableParallelization = true)]
public sealed class BitIdenticalCollection;

/// <summary><c>neuralcore prune --resume</c> after a Ctrl+C between two pruning steps.</summary>
[Collection(nameof(BitIdenticalCollection))]
public sealed class PruneResumeTests
{
    [Fact]
    public void Prune_InterruptedAfterStep1_ResumesWithStep2FromTheOriginalWidths_BitIdentical()
    {
        using var data = new TinyMnist();
        var big = PruneCommandTests.BigCheckpoint(data);
        string[] Args(string output) =>
        [
            "prune", "--checkpoint", big, "--ratio", "0.4", "--iterative-steps", "2", "--finetune-epochs", "1", "--batch-size", "32",
            "--threads", "2", "--data-dir", data.DataDir, "--validation-count", "16", "--out", Path.Combine(data.Root, output), "--json",
        ];
        var (code, referenceOut, referenceErr) = Cli.Run(Args("uninterrupted"));
        Assert.True(code == 0, referenceErr);

        // A real interruption: Ctrl+C (the command's cancellation) as soon as step 2 starts, after step 1 is recorded.
        var interrupted = Path.Combine(data.Root, "interrupted");
        using var cancel = new CancellationTokenSource();
        var stderr = new CancelOnLine("pruning step 2/2", cancel);
        int stopped = Program.Run(Args("interrupted"), new CliConsole(new StringWriter(), stderr, false, false, cancel.Token));
        Assert.True(stopped == Program.Interrupted, stderr.ToString());
        using (var record = JsonDocument.Parse(File.ReadAllText(Path.Combine(interrupted, "steps.json"))))
            Assert.Equal(1, record.RootElement.GetProperty("Steps").GetArrayLength());
        Assert.True(File.Exists(Path.Combine(interrupted, "step-1.safetensors")));
        foreach (var file in new[] { "step-2.safetensors", "step-2/best.safetensors", "pruned.safetensors", "result.json" })
            Assert.False(File.Exists(Path.Combine(interrupted, file)), $"{file} exists after the interruption");

        var (resumed, resumedOut, resumedErr) = Cli.Run([.. Args("interrupted"), "--resume"]);
        Assert.True(resumed == 0, resumedErr);
        Assert.Contains("after step 1 of 2", resumedErr);
        Assert.DoesNotContain("pruning step 1/2", resumedErr);
        Assert.Contains("pruning step 2/2", resumedErr);
        Assert.Contains("starting 'step-2' from epoch 1", resumedErr);

        // Every step's ratio applies to the widths before the first step: (int)(C0 * (1 - 0.4)) for 32/64/128 is 19/38/76.
        // Pruning the step-1 widths (25/51/102) to the final ratio would give 15/30/61.
        using var reference = JsonDocument.Parse(referenceOut);
        using var result = JsonDocument.Parse(resumedOut);
        var widths = result.RootElement.GetProperty("widths").EnumerateArray()
            .ToDictionary(w => w.GetProperty("group").GetString()!, w => (Initial: w.GetProperty("initial").GetInt32(), Final: w.GetProperty("final").GetInt32()));
        Assert.Equal((32, Kept(32)), widths["in_c.0"]);
        Assert.Equal((64, Kept(64)), widths["stage2.block1.conv2"]);
        Assert.Equal((128, Kept(128)), widths["stage3.block1.conv2"]);
        Assert.All(widths.Values, w => Assert.Equal(Kept(w.Initial), w.Final));
        Assert.Equal(47_349, result.RootElement.GetProperty("parameters_after").GetInt64());

        // Step 1 comes from the record, step 2 was pruned and fine-tuned again: the same steps, weights and test as without the interruption.
        foreach (var key in new[] { "steps", "widths", "test_after" })
            Assert.Equal(reference.RootElement.GetProperty(key).GetRawText(), result.RootElement.GetProperty(key).GetRawText());
        foreach (var file in new[] { "pruned.safetensors", "step-2.safetensors", "step-2/best.safetensors", "test.json" })
            Assert.True(File.ReadAllBytes(Path.Combine(data.Root, "uninterrupted", file)).SequenceEqual(File.ReadAllBytes(Path.Combine(interrupted, file))),
                $"{file} differs from the uninterrupted run's");

        static int Kept(int initial) => (int)(initial * (1.0 - 0.4));
    }

    /// <summary>Standard error that signals <paramref name="cancel"/>, as Ctrl+C would, once a line with <paramref name="trigger"/> is written.</summary>
    private sealed class CancelOnLine(string trigger, CancellationTokenSource cancel) : StringWriter
    {
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value is not null && value.Contains(trigger, StringComparison.Ordinal)) cancel.Cancel();
        }
    }
}
