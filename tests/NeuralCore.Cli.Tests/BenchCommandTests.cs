using System.Text.Json.Nodes;

namespace NeuralCore.Cli.Tests;

/// <summary><c>neuralcore bench</c>: the JSON it reports for both modes and engines, and its usage errors.</summary>
public sealed class BenchCommandTests
{
    [Theory]
    [InlineData("train", false)]
    [InlineData("infer", false)]
    [InlineData("infer", true)]
    public void ReportsMedianAndSpreadAsJson(string mode, bool eager)
    {
        string[] args = ["bench", "--channel-width", "4 8 8", "--batch-size", "3", "--mode", mode, "--iterations", "3", "--warmup", "1", "--json"];
        var (code, stdout, stderr) = Cli.Run(eager ? [.. args, "--eager"] : args);
        Assert.True(code == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        Assert.Equal(mode, (string?)json["mode"]);
        Assert.Equal(mode == "infer" && !eager ? "plan" : "eager", (string?)json["engine"]);
        double median = (double)json["median_ms"]!, min = (double)json["min_ms"]!, max = (double)json["max_ms"]!;
        Assert.True(min > 0 && min <= median && median <= max, $"min {min}, median {median}, max {max}");
        Assert.Equal(3, json["times_ms"]!.AsArray().Count);
        Assert.True((double)json["samples_per_second"]! > 0);
        Assert.Contains("samples/s", stderr);
    }

    [Theory]
    [InlineData("--mode", "fit")]
    [InlineData("--iterations", "0")]
    [InlineData("--input-shape", "3,28,28")]
    public void BadOptionsAreUsageErrors(string option, string value)
    {
        var (code, _, stderr) = Cli.Run("bench", "--channel-width", "4 8 8", "--batch-size", "2", option, value);
        Assert.Equal(2, code);
        Assert.StartsWith("error:", stderr);
    }
}
