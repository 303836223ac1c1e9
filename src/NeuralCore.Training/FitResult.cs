namespace NeuralCore.Training;

/// <summary>What <see cref="Trainer.Fit"/> did.</summary>
/// <param name="RunDirectory">The run folder.</param>
/// <param name="History">Every finished epoch of the run, resumed ones included.</param>
/// <param name="BestEpoch">The epoch with the lowest validation loss (its weights are in <c>best.safetensors</c>).</param>
/// <param name="BestValidationLoss">That epoch's validation loss.</param>
/// <param name="ResumedFromEpoch">The epoch the run continued after (0 for a fresh run).</param>
public sealed record FitResult(string RunDirectory, IReadOnlyList<EpochMetrics> History, int BestEpoch, double BestValidationLoss, int ResumedFromEpoch);
