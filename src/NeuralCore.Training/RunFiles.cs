using NeuralCore.IO;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace NeuralCore.Training;

/// <summary>
/// The files of a run folder (<c>runs/&lt;experiment&gt;/</c>): <c>config.json</c>, <c>metrics.jsonl</c>,
/// <c>best.safetensors</c>, <c>last.ckpt</c> and <c>test.json</c>.
/// </summary>
/// <param name="Directory">The run folder.</param>
public sealed record RunFiles(string Directory)
{
    /// <summary>All options, the model's architecture and the data source.</summary>
    public string Config => Path.Combine(Directory, "config.json");

    /// <summary>One JSON object per finished epoch (<see cref="EpochMetrics"/>).</summary>
    public string Metrics => Path.Combine(Directory, "metrics.jsonl");

    /// <summary>The model state dict of the epoch with the lowest validation loss, with the architecture in its metadata.</summary>
    public string Best => Path.Combine(Directory, "best.safetensors");

    /// <summary>The resumable checkpoint of the last finished epoch (<see cref="TrainingCheckpoint"/>).</summary>
    public string Last => Path.Combine(Directory, "last.ckpt");

    /// <summary>The test report of the best checkpoint (<see cref="TestReport"/>).</summary>
    public string Test => Path.Combine(Directory, "test.json");

    internal static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Rewrites <c>metrics.jsonl</c> with exactly <paramref name="history"/>, atomically.</summary>
    internal void WriteMetrics(IEnumerable<EpochMetrics> history)
    {
        var text = new StringBuilder();
        foreach (var m in history) text.Append(JsonSerializer.Serialize(m)).Append('\n');
        AtomicFile.WriteText(Metrics, text.ToString());
    }

    /// <summary>Writes <c>config.json</c> atomically.</summary>
    internal void WriteConfig(JsonObject config) => AtomicFile.WriteText(Config, config.ToJsonString(Indented) + "\n");

    /// <summary>Writes <c>test.json</c> atomically.</summary>
    internal void WriteTest(JsonObject report) => AtomicFile.WriteText(Test, report.ToJsonString(Indented) + "\n");
}
