using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NeuralCore.IO;
using NeuralCore.Models;
using NeuralCore.NN;

namespace NeuralCore.Training.Reporting;

/// <summary>A model read back from its run folder, with the network itself (for measuring its speed).</summary>
/// <param name="Model">What the folder says about the model (size, cost, curves, test).</param>
/// <param name="Pruning">How it was pruned, for a pruning output folder.</param>
/// <param name="Data">The data description of its training run, when recorded.</param>
/// <param name="Network">The tested checkpoint, loaded.</param>
public sealed record RunInfo(ModelResult Model, PruningSettings? Pruning, string? Data, CpResNet Network);

/// <summary>
/// Reads what a report needs from run folders: a <see cref="Trainer"/> run (<c>config.json</c>, <c>metrics.jsonl</c>,
/// <c>best.safetensors</c>, <c>test.json</c>) or a <see cref="PruneWorkflow"/> output (<c>result.json</c>,
/// <c>steps.json</c>, <c>pruned.safetensors</c>, <c>test.json</c>, one run folder per fine-tuning step).
/// </summary>
/// <remarks>
/// A <c>test-detail.json</c> beside <c>test.json</c> (a <see cref="ModelTestResult"/>, written for acoustic scenes
/// with the per-device results and class names) takes precedence over <c>test.json</c>. A <c>pruning.json</c> in a
/// pruning folder (a <see cref="PruningSettings"/>) supplies the settings the workflow's own files do not record.
/// </remarks>
public static class RunReader
{
    /// <summary>The file with the full test result of a run, when the command that made it wrote one.</summary>
    public const string TestDetailFile = "test-detail.json";

    /// <summary>The file with the pruning settings of a pruning folder.</summary>
    public const string PruningFile = "pruning.json";

    /// <summary>Whether <paramref name="directory"/> is the output folder of a prune-and-fine-tune run.</summary>
    public static bool IsPruningFolder(string directory) =>
        File.Exists(Path.Combine(directory, "result.json")) && File.Exists(Path.Combine(directory, "pruned.safetensors"));

    /// <summary>Reads the run folder or pruning folder <paramref name="directory"/>.</summary>
    /// <param name="directory">The folder.</param>
    /// <param name="name">The model's name in the report; default the folder's name.</param>
    /// <param name="inputShape">One input's shape, for folders that do not record it (a pruning run without fine-tuning).</param>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="InvalidDataException">The folder is neither kind of run, or a file in it is damaged; the message says which.</exception>
    public static RunInfo Read(string directory, string? name = null, int[]? inputShape = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"Run folder not found: {Path.GetFullPath(directory)}. Pass a run folder (runs/<experiment>) or a pruning output folder.");
        name ??= Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory)));
        return IsPruningFolder(directory) ? ReadPruning(directory, name, inputShape) : ReadTraining(directory, name, inputShape);
    }

    private static RunInfo ReadTraining(string directory, string name, int[]? inputShape)
    {
        var files = new RunFiles(directory);
        if (!File.Exists(files.Config) || !File.Exists(files.Metrics))
            throw new InvalidDataException(
                $"{Path.GetFullPath(directory)} is not a run folder: expected config.json and metrics.jsonl (a training run) or result.json and pruned.safetensors (a pruning run).");
        var config = ReadObject(files.Config);
        var history = ReadMetrics(files.Metrics);
        if (!File.Exists(files.Best))
            throw new InvalidDataException($"{Path.GetFullPath(directory)} has no best.safetensors: the run has not finished an epoch. Train it first (neuralcore train ... --resume).");
        var shape = SampleShape(config) ?? inputShape
            ?? throw new InvalidDataException($"{files.Config} does not record the input shape (sample_shape).");
        var network = CpResNet.LoadCheckpoint(files.Best, strict: true);
        int? bestEpoch = null;
        if (File.Exists(files.Test) && ReadObject(files.Test)["epoch"] is JsonValue e && e.TryGetValue(out int epoch)) bestEpoch = epoch;
        bestEpoch ??= history.Count == 0 ? null : history.MinBy(m => m.ValidationLoss)!.Epoch;
        var model = Describe(network, shape) with
        {
            Name = name,
            Test = ReadTest(directory, network.Config.NumClasses),
            TrainingSeconds = history.Sum(m => m.Seconds),
            Epochs = history.Count,
            BestEpoch = bestEpoch,
            Stages = [new CurveStage("train", history)],
            Checkpoint = Path.GetFullPath(files.Best),
            RunDirectory = Path.GetFullPath(directory),
        };
        return new RunInfo(model, null, config["data"]?.GetValue<string>(), network);
    }

    private static RunInfo ReadPruning(string directory, string name, int[]? inputShape)
    {
        var resultPath = Path.Combine(directory, "result.json");
        PruneWorkflowResult? result;
        try
        {
            result = JsonSerializer.Deserialize<PruneWorkflowResult>(File.ReadAllText(resultPath));
        }
        catch (JsonException ex)
        {
            throw NotAResult(ex.Message, ex);
        }
        if (result?.Steps is null || result.FinetuneRuns is null) throw NotAResult("it holds no steps or fine-tuning runs", null);
        var stages = new List<CurveStage>();
        int[]? shape = null;
        int finetuneEpochs = 0;
        string? data = null;
        for (int k = 0; k < result.FinetuneRuns.Count; k++)
        {
            // The recorded paths may be relative to where the command ran; the step folders sit in the pruning folder.
            var run = Path.Combine(directory, Path.GetFileName(Path.TrimEndingDirectorySeparator(result.FinetuneRuns[k])));
            var files = new RunFiles(run);
            var history = ReadMetrics(files.Metrics);
            stages.Add(new CurveStage($"prune step {k + 1}", history));
            var config = ReadObject(files.Config);
            shape ??= SampleShape(config);
            data ??= config["data"]?.GetValue<string>();
            if (config["epochs"] is JsonValue ev && ev.TryGetValue(out int epochs)) finetuneEpochs = epochs;
        }
        shape ??= inputShape ?? throw new InvalidDataException(
            $"{Path.GetFullPath(directory)} records no input shape (it has no fine-tuning run); pass the input shape (e.g. --input-shape 1,28,28).");
        var checkpoint = Path.Combine(directory, "pruned.safetensors");
        var network = CpResNet.LoadCheckpoint(checkpoint, strict: true);
        var metadata = TensorIO.LoadSafeTensors(checkpoint).Metadata;
        var pruningPath = Path.Combine(directory, PruningFile);
        var pruning = File.Exists(pruningPath)
            ? Deserialize<PruningSettings>(pruningPath)
            : new PruningSettings { Criterion = metadata.GetValueOrDefault("pruning_importance", "L1") };
        pruning = pruning with
        {
            Ratio = result.Ratio,
            IterativeSteps = result.Steps.Count,
            FinetuneEpochsPerStep = finetuneEpochs,
            ParametersBefore = result.ParametersBefore,
            ParametersAfter = result.ParametersAfter,
            MacsBefore = result.MacsBefore,
            MacsAfter = result.MacsAfter,
        };
        var all = stages.SelectMany(s => s.Epochs).ToList();
        var lastStage = stages.Count == 0 ? null : stages[^1].Epochs;
        var model = Describe(network, shape) with
        {
            Name = name,
            Role = "pruned",
            Test = ReadTest(directory, network.Config.NumClasses),
            TrainingSeconds = all.Sum(m => m.Seconds),
            Epochs = all.Count,
            BestEpoch = lastStage is { Count: > 0 } ? lastStage.MinBy(m => m.ValidationLoss)!.Epoch : null,
            Stages = stages,
            Checkpoint = Path.GetFullPath(checkpoint),
            RunDirectory = Path.GetFullPath(directory),
        };
        return new RunInfo(model, pruning, data, network);

        InvalidDataException NotAResult(string reason, Exception? inner) => new(
            $"{resultPath} is not a pruning result ({reason}). Delete it and run the command that made {Path.GetFullPath(directory)} " +
            "(prune, or reproduce) again with --resume: the finished steps are reused and result.json is written again.", inner);
    }

    /// <summary>Size and cost of <paramref name="network"/>: parameters, MACs, and the stage widths it really has.</summary>
    public static ModelResult Describe(CpResNet network, int[] inputShape)
    {
        ArgumentNullException.ThrowIfNull(network);
        var summary = ModelSummary.Summarize(network, inputShape);
        var state = network.StateDict();
        // The residual stream of each stage: the stem's output, then the last block's output of stages 2 and 3
        // (after pruning these are the widths the network really has, whatever its config says).
        int[] widths =
        [
            Width(state, "in_c.0.weight") ?? network.Config.ChannelWidths[0],
            Width(state, "stage2.block2.conv2.weight") ?? network.Config.ChannelWidths[1],
            Width(state, "stage3.block2.conv2.weight") ?? network.Config.ChannelWidths[2],
        ];
        return new ModelResult
        {
            ChannelWidths = widths,
            Parameters = summary.TotalParameters,
            Macs = summary.TotalMacs,
            ConvMacs = summary.ConvMacs,
            InputShape = inputShape,
        };

        static int? Width(IReadOnlyDictionary<string, Tensor> state, string key) => state.TryGetValue(key, out var t) ? t.Size(0) : null;
    }

    private static ModelTestResult? ReadTest(string directory, int classes)
    {
        var detail = Path.Combine(directory, TestDetailFile);
        if (File.Exists(detail)) return Deserialize<ModelTestResult>(detail);
        var path = Path.Combine(directory, "test.json");
        if (!File.Exists(path)) return null;
        var report = Deserialize<TestReport>(path);
        return ModelTestResult.FromTestReport(report, classes == 10 ? Digits : null);
    }

    private static readonly string[] Digits = Enumerable.Range(0, 10).Select(d => d.ToString(CultureInfo.InvariantCulture)).ToArray();

    private static int[]? SampleShape(JsonObject config) =>
        config["sample_shape"] is JsonArray a ? a.Select(v => v!.GetValue<int>()).ToArray() : null;

    /// <summary>The epochs of a <c>metrics.jsonl</c>.</summary>
    /// <exception cref="InvalidDataException">A line is not an epoch record; the message names the file and line.</exception>
    public static List<EpochMetrics> ReadMetrics(string path)
    {
        var list = new List<EpochMetrics>();
        int line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            try
            {
                list.Add(JsonSerializer.Deserialize<EpochMetrics>(text) ?? throw new JsonException("null"));
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path} line {line} is not an epoch record ({e.Message}).", e);
            }
        }
        return list;
    }

    private static JsonObject ReadObject(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path} does not hold a JSON object.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not valid JSON ({e.Message}).", e);
        }
    }

    private static T Deserialize<T>(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path), ExperimentResults.JsonOptions)
                ?? throw new InvalidDataException($"{path} holds null.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} cannot be read as {typeof(T).Name} ({e.Message}).", e);
        }
    }
}
