namespace NeuralCore.Training;

/// <summary>Facts about a run, given to <see cref="IProgressReporter.RunStarted"/>.</summary>
/// <param name="ExperimentName">The experiment (run folder name).</param>
/// <param name="RunDirectory">The run folder.</param>
/// <param name="Epochs">The last epoch of the run.</param>
/// <param name="FirstEpoch">The epoch this process starts with (greater than 1 when resuming).</param>
/// <param name="TrainSamples">Samples per training epoch.</param>
/// <param name="ValidationSamples">Samples in the validation set.</param>
/// <param name="BatchesPerEpoch">Training batches per epoch.</param>
/// <param name="Parameters">Learnable parameters of the model.</param>
public sealed record RunStartInfo(string ExperimentName, string RunDirectory, int Epochs, int FirstEpoch, int TrainSamples,
    int ValidationSamples, int BatchesPerEpoch, long Parameters);

/// <summary>Running figures of the epoch in progress, after a training batch.</summary>
/// <param name="Epoch">The 1-based epoch.</param>
/// <param name="Epochs">The last epoch of the run.</param>
/// <param name="Batch">Batches done in this epoch (1-based index of the batch just finished).</param>
/// <param name="Batches">Batches in the epoch.</param>
/// <param name="Samples">Samples done in this epoch.</param>
/// <param name="Loss">Mean training loss of the epoch so far.</param>
/// <param name="Accuracy">Training accuracy of the epoch so far.</param>
/// <param name="SamplesPerSecond">Training throughput of the epoch so far.</param>
public sealed record BatchProgress(int Epoch, int Epochs, int Batch, int Batches, long Samples, double Loss, double Accuracy, double SamplesPerSecond);

/// <summary>
/// Receives the progress of a <see cref="Trainer"/> run (a live bar on a terminal, plain lines in a log, nothing in
/// tests). Calls come from the training thread, in order: <see cref="RunStarted"/>, then per epoch
/// <see cref="EpochStarted"/>, <see cref="BatchCompleted"/> per batch and <see cref="EpochEnded"/> (also when the
/// epoch fails), with <see cref="Message"/> at any point outside an epoch.
/// </summary>
public interface IProgressReporter
{
    /// <summary>The run starts (fresh or resumed).</summary>
    void RunStarted(RunStartInfo info);

    /// <summary>Epoch <paramref name="epoch"/> of <paramref name="epochs"/> starts with <paramref name="batches"/> training batches.</summary>
    void EpochStarted(int epoch, int epochs, int batches);

    /// <summary>A training batch finished.</summary>
    void BatchCompleted(BatchProgress progress);

    /// <summary>
    /// The epoch ended: <paramref name="metrics"/> holds its results and <paramref name="isBest"/> says whether it has
    /// the lowest validation loss so far; <paramref name="metrics"/> is null when the epoch was interrupted by an
    /// error or a cancellation.
    /// </summary>
    void EpochEnded(EpochMetrics? metrics, bool isBest);

    /// <summary>A line of information for the user (resuming, where files went).</summary>
    void Message(string text);
}
