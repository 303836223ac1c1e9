using System.Globalization;

namespace NeuralCore.Training;

/// <summary>
/// One line per epoch on a <see cref="TextWriter"/>, for logs, pipes and CI:
/// <c>epoch 3/50  train_loss 0.1234  train_acc 96.12%  val_loss 0.0987  val_acc 97.00%  lr 1.00e-03  12.3 s  *best</c>.
/// </summary>
public sealed class PlainProgressReporter : IProgressReporter
{
    private readonly TextWriter _writer;
    private int _epochs;

    /// <summary>Writes to <paramref name="writer"/>.</summary>
    public PlainProgressReporter(TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        _writer = writer;
    }

    /// <inheritdoc />
    public void RunStarted(RunStartInfo info)
    {
        _epochs = info.Epochs;
        _writer.WriteLine(ProgressText.RunHeader(info));
        _writer.Flush();
    }

    /// <inheritdoc />
    public void EpochStarted(int epoch, int epochs, int batches) => _epochs = epochs;

    /// <inheritdoc />
    public void BatchCompleted(BatchProgress progress) { }

    /// <inheritdoc />
    public void EpochEnded(EpochMetrics? metrics, bool isBest)
    {
        if (metrics is null) return;
        _writer.WriteLine(ProgressText.EpochLine(metrics, _epochs, isBest));
        _writer.Flush();
    }

    /// <inheritdoc />
    public void Message(string text)
    {
        _writer.WriteLine(text);
        _writer.Flush();
    }
}

/// <summary>The wording shared by the progress reporters.</summary>
internal static class ProgressText
{
    public static string RunHeader(RunStartInfo info) => string.Create(CultureInfo.InvariantCulture,
        $"{(info.FirstEpoch > 1 ? "resuming" : "training")} {info.ExperimentName}: epochs {info.FirstEpoch}-{info.Epochs}, " +
        $"{info.TrainSamples:N0} training / {info.ValidationSamples:N0} validation samples, {info.BatchesPerEpoch} batches per epoch, " +
        $"{info.Parameters:N0} parameters; run folder {info.RunDirectory}");

    public static string EpochLine(EpochMetrics m, int epochs, bool isBest) => string.Create(CultureInfo.InvariantCulture,
        $"epoch {m.Epoch}/{epochs}  train_loss {m.TrainLoss:F4}  train_acc {m.TrainAccuracy:P2}  val_loss {m.ValidationLoss:F4}  " +
        $"val_acc {m.ValidationAccuracy:P2}  lr {m.LearningRate:0.00e+00}  {m.Seconds:F1} s{(isBest ? "  *best" : "")}");

    public static string BatchLine(BatchProgress p) => string.Create(CultureInfo.InvariantCulture,
        $"epoch {p.Epoch}/{p.Epochs}  loss {p.Loss:F4}  acc {p.Accuracy:P1}  {p.SamplesPerSecond:N0} samples/s");
}
