using System.Text.Json.Serialization;

namespace NeuralCore.Training;

/// <summary>One line of <c>metrics.jsonl</c>: the results of one finished epoch.</summary>
/// <param name="Epoch">The epoch, 1-based.</param>
/// <param name="TrainLoss">Mean cross-entropy over the epoch's training batches (weighted by batch size, measured in training mode while the weights changed).</param>
/// <param name="TrainAccuracy">Fraction of training samples predicted correctly during the epoch.</param>
/// <param name="ValidationLoss">Mean cross-entropy on the validation set after the epoch, in eval mode.</param>
/// <param name="ValidationAccuracy">Fraction of validation samples predicted correctly after the epoch.</param>
/// <param name="LearningRate">The learning rate used during the epoch.</param>
/// <param name="Seconds">Wall-clock seconds of the epoch, validation included.</param>
public sealed record EpochMetrics(
    [property: JsonPropertyName("epoch")] int Epoch,
    [property: JsonPropertyName("train_loss")] double TrainLoss,
    [property: JsonPropertyName("train_acc")] double TrainAccuracy,
    [property: JsonPropertyName("val_loss")] double ValidationLoss,
    [property: JsonPropertyName("val_acc")] double ValidationAccuracy,
    [property: JsonPropertyName("lr")] double LearningRate,
    [property: JsonPropertyName("seconds")] double Seconds);
