using System.Text.Json;
using System.Text.Json.Nodes;

namespace NeuralCore.Cli;

/// <summary>JSON helpers of the --json output.</summary>
internal static class Json
{
    /// <summary>Indented output, so the object reads well in a terminal and parses anywhere.</summary>
    public static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static JsonArray Array(IEnumerable<int> values) => new(values.Select(v => (JsonNode)v).ToArray());
}
