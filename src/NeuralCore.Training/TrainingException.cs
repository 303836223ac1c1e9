namespace NeuralCore.Training;

/// <summary>
/// A training run cannot start or go on for a reason the user can fix (a run folder already in use, a resume with
/// other options, a loss that became NaN). The message says what happened and what to do; nothing written before
/// (checkpoints, metrics) is lost.
/// </summary>
public class TrainingException : Exception
{
    /// <summary>Creates the exception with a message for people.</summary>
    public TrainingException(string message) : base(message) { }

    /// <summary>Creates the exception with a message for people and the error that caused it.</summary>
    public TrainingException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>The loss became NaN or infinite; training stopped before the bad batch changed the weights.</summary>
public sealed class NonFiniteLossException : TrainingException
{
    /// <summary>Creates the exception for the batch where the loss stopped being finite.</summary>
    /// <param name="phase">"training" or "validation".</param>
    /// <param name="epoch">The 1-based epoch.</param>
    /// <param name="batch">The 1-based batch within the epoch.</param>
    /// <param name="batches">Batches in the epoch.</param>
    /// <param name="loss">The loss value (NaN or an infinity).</param>
    /// <param name="lastGoodCheckpoint">Where the last good checkpoint is, or null when no epoch had finished yet.</param>
    /// <param name="lastGoodEpoch">The epoch that checkpoint holds (0 when none).</param>
    public NonFiniteLossException(string phase, int epoch, int batch, int batches, double loss, string? lastGoodCheckpoint, int lastGoodEpoch)
        : base($"The {phase} loss became {Describe(loss)} at epoch {epoch}, batch {batch} of {batches}; training stopped " +
               (phase == "training" ? "before that batch changed the weights. " : "without saving this epoch's weights. ") +
               (lastGoodCheckpoint is null
                   ? "No epoch had finished, so there is no checkpoint. "
                   : $"The last good checkpoint (epoch {lastGoodEpoch}) is kept in {lastGoodCheckpoint}. ") +
               "Lower the learning rate (--lr) or check the input data for NaN or infinite values.")
    {
        Phase = phase;
        Epoch = epoch;
        Batch = batch;
        Loss = loss;
        LastGoodEpoch = lastGoodEpoch;
    }

    /// <summary>"training" or "validation".</summary>
    public string Phase { get; }

    /// <summary>The 1-based epoch where the loss stopped being finite.</summary>
    public int Epoch { get; }

    /// <summary>The 1-based batch where the loss stopped being finite.</summary>
    public int Batch { get; }

    /// <summary>The loss value.</summary>
    public double Loss { get; }

    /// <summary>The epoch of the last good checkpoint (0 when none).</summary>
    public int LastGoodEpoch { get; }

    private static string Describe(double loss) => double.IsNaN(loss) ? "NaN" : loss > 0 ? "+infinity" : "-infinity";
}
