namespace NeuralCore.Data;

/// <summary>
/// A dataset the <see cref="DataLoader"/> can batch: it knows its size and sample shape and builds the tensors of
/// a batch from a list of indices.
/// </summary>
/// <remarks>
/// A <see cref="DataLoader"/> calls <see cref="GetBatch"/> from one background thread at a time, so an
/// implementation needs no locking as long as nothing else uses it during an epoch.
/// </remarks>
public interface IBatchSource
{
    /// <summary>Number of samples; valid indices are 0 .. Count - 1.</summary>
    int Count { get; }

    /// <summary>Number of classes; targets lie in [0, NumClasses).</summary>
    int NumClasses { get; }

    /// <summary>The shape of one sample without the batch dimension, e.g. [1, 28, 28].</summary>
    int[] SampleShape { get; }

    /// <summary>
    /// Builds the batch of the samples at <paramref name="indices"/>, in that order: inputs Float32
    /// [B, ...<see cref="SampleShape"/>], targets Int64 [B], and the indices themselves.
    /// </summary>
    Batch GetBatch(ReadOnlySpan<int> indices);
}
