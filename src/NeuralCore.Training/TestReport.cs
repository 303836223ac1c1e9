using System.Text.Json.Serialization;

namespace NeuralCore.Training;

/// <summary>The evaluation of a classifier on a labelled set (written as <c>test.json</c>).</summary>
/// <remarks>
/// For acoustic scenes (an <c>AscBatchSource</c>) the report also carries the DCASE figures: <see cref="ClassNames"/>,
/// <see cref="LogLoss"/>, <see cref="PerDevice"/> and <see cref="PerDeviceGroup"/>; for other data they are null and
/// left out of the JSON. The JSON names match the reporting tools' <c>ModelTestResult</c>.
/// </remarks>
/// <param name="Samples">Number of samples evaluated.</param>
/// <param name="Loss">Mean cross-entropy.</param>
/// <param name="Accuracy">Fraction predicted correctly.</param>
/// <param name="MacroAccuracy">Mean of the per-class accuracies over the classes that have samples (for acoustic scenes the primary DCASE metric, macro-average class-wise accuracy).</param>
/// <param name="PerClassAccuracy">Accuracy (recall) of each class; null for a class without samples.</param>
/// <param name="ConfusionMatrix">Counts by true class (row) and predicted class (column).</param>
public sealed record TestReport(
    [property: JsonPropertyName("samples")] long Samples,
    [property: JsonPropertyName("loss")] double Loss,
    [property: JsonPropertyName("accuracy")] double Accuracy,
    [property: JsonPropertyName("macro_accuracy")] double MacroAccuracy,
    [property: JsonPropertyName("per_class_accuracy")] double?[] PerClassAccuracy,
    [property: JsonPropertyName("confusion_matrix")] long[][] ConfusionMatrix)
{
    /// <summary>Name of each class (acoustic scenes: the scene labels); null when the classes are only numbered.</summary>
    [JsonPropertyName("class_names")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? ClassNames { get; init; }

    /// <summary>The DCASE log loss (multi-class cross-entropy of the softmax of the logits; equals <see cref="Loss"/>); null outside acoustic scenes.</summary>
    [JsonPropertyName("log_loss")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? LogLoss { get; init; }

    /// <summary>Results per recording device (a, b, c, s1-s6, in that order, for the devices present); null outside acoustic scenes.</summary>
    [JsonPropertyName("per_device")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, TestSubsetReport>? PerDevice { get; init; }

    /// <summary>Results per device group: real (a, b, c), seen (s1-s3), unseen (s4-s6), for the groups present; null outside acoustic scenes.</summary>
    [JsonPropertyName("per_device_group")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, TestSubsetReport>? PerDeviceGroup { get; init; }

    /// <summary>The report of a filled confusion matrix and the summed loss over its samples.</summary>
    public static TestReport FromConfusion(ConfusionMatrix confusion, double lossSum)
    {
        ArgumentNullException.ThrowIfNull(confusion);
        return new TestReport(confusion.Total, confusion.Total == 0 ? 0 : lossSum / confusion.Total, confusion.Accuracy,
            confusion.MacroAccuracy(), confusion.PerClassAccuracy(), confusion.ToRows());
    }
}

/// <summary>Test figures of a subset of the samples (one recording device, or a device group).</summary>
/// <param name="Count">Samples in the subset.</param>
/// <param name="Accuracy">Share of the subset classified correctly.</param>
/// <param name="MacroAccuracy">Mean of the per-class accuracies over the classes present in the subset.</param>
/// <param name="LogLoss">Mean cross-entropy over the subset.</param>
public sealed record TestSubsetReport(
    [property: JsonPropertyName("count")] int Count,
    [property: JsonPropertyName("accuracy")] double Accuracy,
    [property: JsonPropertyName("macro_accuracy")] double MacroAccuracy,
    [property: JsonPropertyName("log_loss")] double LogLoss)
{
    /// <summary>The figures of one DCASE subset (a device or a device group).</summary>
    public static TestSubsetReport From(Data.AscSubsetResult r) => new(r.Count, r.Accuracy, r.MacroAccuracy, r.LogLoss);
}
