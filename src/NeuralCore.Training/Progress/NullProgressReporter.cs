namespace NeuralCore.Training;

/// <summary>Reports nothing (tests, library use without output).</summary>
public sealed class NullProgressReporter : IProgressReporter
{
    /// <summary>The shared instance.</summary>
    public static NullProgressReporter Instance { get; } = new();

    /// <inheritdoc />
    public void RunStarted(RunStartInfo info) { }

    /// <inheritdoc />
    public void EpochStarted(int epoch, int epochs, int batches) { }

    /// <inheritdoc />
    public void BatchCompleted(BatchProgress progress) { }

    /// <inheritdoc />
    public void EpochEnded(EpochMetrics? metrics, bool isBest) { }

    /// <inheritdoc />
    public void Message(string text) { }
}
