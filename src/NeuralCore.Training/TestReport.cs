using System.Text.Json.Serialization;

namespace NeuralCore.Training;

/// <summary>The evaluation of a classifier on a labelled set (written as <c>test.json</c>).</summary>
/// <param name="Samples">Number of samples evaluated.</param>
/// <param name="Loss">Mean cross-entropy.</param>
/// <param name="Accuracy">Fraction predicted correctly.</param>
/// <param name="MacroAccuracy">Mean of the per-class accuracies over the classes that have samples.</param>
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
    /// <summary>The report of a filled confusion matrix and the summed loss over its samples.</summary>
    public static TestReport FromConfusion(ConfusionMatrix confusion, double lossSum)
    {
        ArgumentNullException.ThrowIfNull(confusion);
        return new TestReport(confusion.Total, confusion.Total == 0 ? 0 : lossSum / confusion.Total, confusion.Accuracy,
            confusion.MacroAccuracy(), confusion.PerClassAccuracy(), confusion.ToRows());
    }
}
