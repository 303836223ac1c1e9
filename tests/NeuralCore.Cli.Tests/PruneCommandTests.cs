using System.Text.Json;
using NeuralCore.IO;
using NeuralCore.Models;

namespace NeuralCore.Cli.Tests;

public class PruneCommandTests
{
    private static string BigCheckpoint(TinyMnist data)
    {
        var path = Path.Combine(data.Root, "big.safetensors");
        var model = new CpResNet(CpResNetConfig.FromWidths("32 64 128"), new Generator(1));
        model.Save(path, model.Config.ToMetadata());
        return path;
    }

    [Fact]
    public void Prune_AtTheSeedRatio_GivesTheKnownWidths_FineTunes_AndResumes()
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
