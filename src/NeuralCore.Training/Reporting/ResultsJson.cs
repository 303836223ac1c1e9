using System.Text.Json;
using System.Text.Json.Serialization;

namespace NeuralCore.Training.Reporting;

/// <summary>
/// The content of <c>results.json</c>: every model of a comparison (the seed's small, big and pruned CP-ResNet, or any
/// set of run folders) with its size, cost, test metrics, speed and learning curves, plus the pruning settings and
/// the verdict on the seed's claim.
/// </summary>
public sealed record ExperimentResults
{
    /// <summary>The version of this file's layout; readers refuse versions they do not know.</summary>
    [JsonPropertyName("schema_version")] public int SchemaVersion { get; init; } = 1;

    /// <summary>A one-line title for the report, e.g. <c>CP-ResNet on MNIST: small vs big vs pruned</c>.</summary>
    [JsonPropertyName("title")] public string Title { get; init; } = "NeuralCore report";

    /// <summary>The dataset: <c>mnist</c>, <c>asc</c>, or null when the models come from unrelated runs.</summary>
    [JsonPropertyName("dataset")] public string? Dataset { get; init; }

    /// <summary>Where the data came from and how it was split (said plainly, e.g. that it is synthetic).</summary>
    [JsonPropertyName("data")] public string Data { get; init; } = "";

    /// <summary>Whether the data is a synthetic stand-in rather than the real dataset.</summary>
    [JsonPropertyName("synthetic_data")] public bool SyntheticData { get; init; }

    /// <summary>The preset the command ran (<c>quick</c>, <c>full</c>), or null for a report of existing runs.</summary>
    [JsonPropertyName("preset")] public string? Preset { get; init; }

    /// <summary>When the report was written (UTC, ISO 8601).</summary>
    [JsonPropertyName("created_utc")] public string CreatedUtc { get; init; } = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The machine the numbers were measured on (processor count, OS, device).</summary>
    [JsonPropertyName("machine")] public MachineInfo? Machine { get; init; }

    /// <summary>The models, in comparison order (small, big, pruned for the seed experiment).</summary>
    [JsonPropertyName("models")] public IReadOnlyList<ModelResult> Models { get; init; } = [];

    /// <summary>How the pruned model was made, when one of the models is pruned.</summary>
    [JsonPropertyName("pruning")] public PruningSettings? Pruning { get; init; }

    /// <summary>Whether the pruned model met the seed's claim, when the comparison has a small and a pruned model.</summary>
    [JsonPropertyName("claim")] public ClaimResult? Claim { get; init; }

    /// <summary>Wall-clock seconds of the whole command that produced the results (training, pruning, tests, benchmarks), when known.</summary>
    [JsonPropertyName("total_seconds")] public double? TotalSeconds { get; init; }

    /// <summary>Remarks a reader needs (synthetic data, shortened schedules, a leaking split).</summary>
    [JsonPropertyName("notes")] public IReadOnlyList<string> Notes { get; init; } = [];

    /// <summary>Options of <c>results.json</c>: indented, snake_case names as declared, NaN written as null where it may occur.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Serializes to the text of <c>results.json</c>.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions) + "\n";

    /// <summary>Reads the text of a <c>results.json</c>.</summary>
    /// <exception cref="InvalidDataException">The text is not a results file of a known schema version.</exception>
    public static ExperimentResults FromJson(string json)
    {
        ExperimentResults? results;
        try
        {
            results = JsonSerializer.Deserialize<ExperimentResults>(json, JsonOptions);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Not a results.json file: {e.Message}", e);
        }
        if (results is null) throw new InvalidDataException("Not a results.json file: it holds null.");
        if (results.SchemaVersion != 1)
            throw new InvalidDataException($"results.json has schema_version {results.SchemaVersion}; this version of NeuralCore reads version 1.");
        return results;
    }
}

/// <summary>The machine the numbers were measured on.</summary>
/// <param name="Os">Operating system description.</param>
/// <param name="ProcessorCount">Logical processors the process may use.</param>
/// <param name="Threads">CPU threads the kernels used.</param>
/// <param name="Device">The device the models ran on (<c>cpu</c>, <c>cuda:0</c>).</param>
public sealed record MachineInfo(
    [property: JsonPropertyName("os")] string Os,
    [property: JsonPropertyName("processor_count")] int ProcessorCount,
    [property: JsonPropertyName("threads")] int Threads,
    [property: JsonPropertyName("device")] string Device);

/// <summary>One model of the comparison.</summary>
public sealed record ModelResult
{
    /// <summary>Short name shown in tables and charts (e.g. <c>small</c>, <c>big</c>, <c>pruned</c>, or a run folder's name).</summary>
    [JsonPropertyName("name")] public string Name { get; init; } = "";

    /// <summary>The model's part in the seed experiment: <c>small</c>, <c>big</c>, <c>pruned</c>, or null.</summary>
    [JsonPropertyName("role")] public string? Role { get; init; }

    /// <summary>CP-ResNet channel widths of stages 1-3 (after pruning: the widths of the stage convolutions), when known.</summary>
    [JsonPropertyName("channel_widths")] public int[]? ChannelWidths { get; init; }

    /// <summary>Learnable parameters (batch-norm running statistics do not count).</summary>
    [JsonPropertyName("parameters")] public long Parameters { get; init; }

    /// <summary>Multiply-accumulates per sample, all layers counted as torchinfo does (<see cref="NN.ModelSummary.TotalMacs"/>).</summary>
    [JsonPropertyName("macs")] public long Macs { get; init; }

    /// <summary>Convolution multiply-accumulates per sample only (the figure the domain tables quote).</summary>
    [JsonPropertyName("conv_macs")] public long ConvMacs { get; init; }

    /// <summary>Shape of one input without the batch dimension, e.g. [1, 28, 28].</summary>
    [JsonPropertyName("input_shape")] public int[] InputShape { get; init; } = [];

    /// <summary>The test metrics of the model's best (or final pruned) checkpoint; null when it was not tested.</summary>
    [JsonPropertyName("test")] public ModelTestResult? Test { get; init; }

    /// <summary>Measured inference speed; null when not measured.</summary>
    [JsonPropertyName("throughput")] public ThroughputResult? Throughput { get; init; }

    /// <summary>Wall-clock seconds of training (the sum of the epochs' seconds, validation included; for a pruned model, its fine-tuning).</summary>
    [JsonPropertyName("training_seconds")] public double TrainingSeconds { get; init; }

    /// <summary>Epochs trained (for a pruned model: fine-tuning epochs over all steps).</summary>
    [JsonPropertyName("epochs")] public int Epochs { get; init; }

    /// <summary>The epoch of the best checkpoint (lowest validation loss) of the last training stage, when known.</summary>
    [JsonPropertyName("best_epoch")] public int? BestEpoch { get; init; }

    /// <summary>Learning curves: one stage per training run (a pruned model has one per fine-tuning step).</summary>
    [JsonPropertyName("stages")] public IReadOnlyList<CurveStage> Stages { get; init; } = [];

    /// <summary>The checkpoint that was tested.</summary>
    [JsonPropertyName("checkpoint")] public string? Checkpoint { get; init; }

    /// <summary>The run folder (or pruning output folder) the model comes from.</summary>
    [JsonPropertyName("run_directory")] public string? RunDirectory { get; init; }
}

/// <summary>The epochs of one training run of a model (its training, or one fine-tuning step after pruning).</summary>
/// <param name="Name">What the stage was, e.g. <c>train</c> or <c>fine-tune after prune step 2</c>.</param>
/// <param name="Epochs">The epochs of <c>metrics.jsonl</c>.</param>
public sealed record CurveStage(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("epochs")] IReadOnlyList<EpochMetrics> Epochs);

/// <summary>Test metrics of one model; for acoustic scenes also per device and per device group.</summary>
public sealed record ModelTestResult
{
    /// <summary>Samples tested.</summary>
    [JsonPropertyName("samples")] public long Samples { get; init; }

    /// <summary>Share of samples classified correctly.</summary>
    [JsonPropertyName("accuracy")] public double Accuracy { get; init; }

    /// <summary>Mean of the per-class accuracies (recalls) over the classes that have samples: the seed's and DCASE's headline metric.</summary>
    [JsonPropertyName("macro_accuracy")] public double MacroAccuracy { get; init; }

    /// <summary>Mean multi-class cross-entropy (log loss) of the predictions.</summary>
    [JsonPropertyName("log_loss")] public double LogLoss { get; init; }

    /// <summary>Name of each class.</summary>
    [JsonPropertyName("class_names")] public IReadOnlyList<string> ClassNames { get; init; } = [];

    /// <summary>Accuracy (recall) of each class; null for a class without samples.</summary>
    [JsonPropertyName("per_class_accuracy")] public double?[] PerClassAccuracy { get; init; } = [];

    /// <summary>Counts by true class (row) and predicted class (column).</summary>
    [JsonPropertyName("confusion_matrix")] public long[][] ConfusionMatrix { get; init; } = [];

    /// <summary>Results per recording device (acoustic scenes only).</summary>
    [JsonPropertyName("per_device")] public IReadOnlyDictionary<string, TestSubsetReport>? PerDevice { get; init; }

    /// <summary>Results per device group: real, seen, unseen (acoustic scenes only).</summary>
    [JsonPropertyName("per_device_group")] public IReadOnlyDictionary<string, TestSubsetReport>? PerDeviceGroup { get; init; }

    /// <summary>The test metrics of a <see cref="TestReport"/>, with class names 0 .. C-1 unless given.</summary>
    public static ModelTestResult FromTestReport(TestReport report, IReadOnlyList<string>? classNames = null)
    {
        ArgumentNullException.ThrowIfNull(report);
        int classes = report.PerClassAccuracy.Length;
        return new ModelTestResult
        {
            Samples = report.Samples,
            Accuracy = report.Accuracy,
            MacroAccuracy = report.MacroAccuracy,
            LogLoss = report.Loss,
            ClassNames = classNames ?? Enumerable.Range(0, classes).Select(c => c.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
            PerClassAccuracy = report.PerClassAccuracy,
            ConfusionMatrix = report.ConfusionMatrix,
        };
    }

    /// <summary>The test metrics of a DCASE report, per device and device group included.</summary>
    public static ModelTestResult FromAscReport(Data.AscReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        return new ModelTestResult
        {
            Samples = report.Count,
            Accuracy = report.Accuracy,
            MacroAccuracy = report.MacroAccuracy,
            LogLoss = report.LogLoss,
            ClassNames = report.ClassNames.ToArray(),
            PerClassAccuracy = report.ClassAccuracy.Select(a => double.IsNaN(a) ? (double?)null : a).ToArray(),
            ConfusionMatrix = report.Confusion.Select(row => row.Select(v => (long)v).ToArray()).ToArray(),
            PerDevice = report.PerDevice.ToDictionary(p => p.Key, p => TestSubsetReport.From(p.Value)),
            PerDeviceGroup = report.PerDeviceGroup.ToDictionary(p => p.Key, p => TestSubsetReport.From(p.Value)),
        };
    }
}
/// <summary>Measured inference speed of a model (forward pass in eval mode without gradients).</summary>
/// <param name="Batch1Milliseconds">Median milliseconds of one forward pass of a single sample (the latency).</param>
/// <param name="Batch1SamplesPerSecond">Samples per second at batch size 1.</param>
/// <param name="BatchSize">The large batch size N.</param>
/// <param name="BatchNMilliseconds">Median milliseconds of one forward pass of N samples.</param>
/// <param name="BatchNSamplesPerSecond">Samples per second at batch size N.</param>
/// <param name="Runs1">Timed runs at batch size 1 (after warm-up).</param>
/// <param name="RunsN">Timed runs at batch size N (after warm-up).</param>
/// <param name="Threads">CPU threads used.</param>
/// <param name="Device">The device.</param>
/// <param name="Engine">What ran the pass: <c>plan</c> (the compiled <c>CpuInferencePlan</c>) or <c>eager</c> (op by op; GPUs, and models the plan cannot compile).</param>
public sealed record ThroughputResult(
    [property: JsonPropertyName("batch1_ms")] double Batch1Milliseconds,
    [property: JsonPropertyName("batch1_samples_per_second")] double Batch1SamplesPerSecond,
    [property: JsonPropertyName("batch_size")] int BatchSize,
    [property: JsonPropertyName("batchN_ms")] double BatchNMilliseconds,
    [property: JsonPropertyName("batchN_samples_per_second")] double BatchNSamplesPerSecond,
    [property: JsonPropertyName("runs_batch1")] int Runs1,
    [property: JsonPropertyName("runs_batchN")] int RunsN,
    [property: JsonPropertyName("threads")] int Threads,
    [property: JsonPropertyName("device")] string Device,
    [property: JsonPropertyName("engine")] string Engine = "eager");

/// <summary>How the pruned model was made.</summary>
public sealed record PruningSettings
{
    /// <summary>The importance criterion, e.g. <c>L1</c> (magnitude, p = 1).</summary>
    [JsonPropertyName("criterion")] public string Criterion { get; init; } = "L1";

    /// <summary>How member scores of a group are combined (e.g. <c>Mean</c>); null when not recorded.</summary>
    [JsonPropertyName("group_reduction")] public string? GroupReduction { get; init; }

    /// <summary>How group scores are normalized (e.g. <c>Mean</c>); null when not recorded.</summary>
    [JsonPropertyName("normalizer")] public string? Normalizer { get; init; }

    /// <summary><c>local</c> (the ratio per group, as the seed) or <c>global</c>.</summary>
    [JsonPropertyName("scope")] public string Scope { get; init; } = "local";

    /// <summary>The final channel ratio removed from every group (relative to the widths before pruning).</summary>
    [JsonPropertyName("ratio")] public double Ratio { get; init; }

    /// <summary>Pruning steps; step k prunes to ratio x k / steps.</summary>
    [JsonPropertyName("iterative_steps")] public int IterativeSteps { get; init; }

    /// <summary>Fine-tuning epochs after each step.</summary>
    [JsonPropertyName("finetune_epochs_per_step")] public int FinetuneEpochsPerStep { get; init; }

    /// <summary>Parameters before pruning.</summary>
    [JsonPropertyName("parameters_before")] public long ParametersBefore { get; init; }

    /// <summary>Parameters after pruning.</summary>
    [JsonPropertyName("parameters_after")] public long ParametersAfter { get; init; }

    /// <summary>Conv and linear MACs per sample before pruning.</summary>
    [JsonPropertyName("macs_before")] public long MacsBefore { get; init; }

    /// <summary>Conv and linear MACs per sample after pruning.</summary>
    [JsonPropertyName("macs_after")] public long MacsAfter { get; init; }

    /// <summary>The checkpoint that was pruned.</summary>
    [JsonPropertyName("source_checkpoint")] public string? SourceCheckpoint { get; init; }
}

/// <summary>The verdict on the seed's claim: the pruned model has no more parameters than the small one and a higher macro accuracy.</summary>
/// <param name="Met">Both conditions hold.</param>
/// <param name="SmallParameters">Parameters of the small model.</param>
/// <param name="PrunedParameters">Parameters of the pruned model.</param>
/// <param name="SmallMacroAccuracy">Test macro accuracy of the small model.</param>
/// <param name="PrunedMacroAccuracy">Test macro accuracy of the pruned model.</param>
/// <param name="Difference">Pruned minus small macro accuracy (a fraction; 0.01 is one percentage point).</param>
/// <param name="StandardError">Approximate standard error of that difference from the test-set size (binomial, independent errors).</param>
/// <param name="Sentence">The verdict in one sentence.</param>
public sealed record ClaimResult(
    [property: JsonPropertyName("met")] bool Met,
    [property: JsonPropertyName("small_parameters")] long SmallParameters,
    [property: JsonPropertyName("pruned_parameters")] long PrunedParameters,
    [property: JsonPropertyName("small_macro_accuracy")] double SmallMacroAccuracy,
    [property: JsonPropertyName("pruned_macro_accuracy")] double PrunedMacroAccuracy,
    [property: JsonPropertyName("difference")] double Difference,
    [property: JsonPropertyName("standard_error")] double StandardError,
    [property: JsonPropertyName("sentence")] string Sentence)
{
    /// <summary>
    /// Judges the seed's claim for <paramref name="small"/> and <paramref name="pruned"/> (both tested), in one
    /// sentence that says by how much and, when the difference is smaller than its standard error on this test set,
    /// that it is not a clear one.
    /// </summary>
    /// <exception cref="ArgumentException">A model has no test result.</exception>
    public static ClaimResult Evaluate(ModelResult small, ModelResult pruned)
    {
        ArgumentNullException.ThrowIfNull(small);
        ArgumentNullException.ThrowIfNull(pruned);
        var a = small.Test ?? throw new ArgumentException($"The small model '{small.Name}' has no test result.", nameof(small));
        var b = pruned.Test ?? throw new ArgumentException($"The pruned model '{pruned.Name}' has no test result.", nameof(pruned));
        bool fewer = pruned.Parameters <= small.Parameters;
        double difference = b.MacroAccuracy - a.MacroAccuracy;
        bool better = difference > 0;
        // Binomial standard error of each accuracy, errors taken as independent: a yardstick, not a test.
        double se = Math.Sqrt(Variance(a) + Variance(b));
        var ci = System.Globalization.CultureInfo.InvariantCulture;
        string sizes = string.Create(ci, $"{pruned.Parameters:N0} parameters against the small model's {small.Parameters:N0}");
        string accuracies = string.Create(ci, $"{b.MacroAccuracy:P2} macro accuracy against {a.MacroAccuracy:P2} ({100 * difference:+0.00;-0.00;0.00} percentage points)");
        string noise = Math.Abs(difference) < se
            ? string.Create(ci, $", a difference smaller than its standard error on this test set ({100 * se:0.00} points), so not a clear one")
            : "";
        string sentence = (fewer, better) switch
        {
            (true, true) => $"Yes: the pruned model met the seed's claim, with {sizes} and {accuracies}{noise}.",
            (true, false) => $"No: the pruned model is small enough ({sizes}) but not more accurate, with {accuracies}{noise}.",
            (false, true) => $"No: the pruned model is more accurate ({accuracies}{noise}) but larger, with {sizes}.",
            (false, false) => $"No: the pruned model is neither small enough ({sizes}) nor more accurate ({accuracies}{noise}).",
        };
        return new ClaimResult(fewer && better, small.Parameters, pruned.Parameters, a.MacroAccuracy, b.MacroAccuracy, difference, se, sentence);

        static double Variance(ModelTestResult t) => t.Samples <= 0 ? 0 : t.MacroAccuracy * (1 - t.MacroAccuracy) / t.Samples;
    }
}
