namespace NeuralCore.Data;

/// <summary>
/// One mini-batch: <paramref name="Inputs"/> Float32 [B, ...sample shape], <paramref name="Targets"/> Int64 [B]
/// class indices, and <paramref name="Indices"/>, the dataset index of each row (for per-sample metrics and
/// error analysis).
/// </summary>
/// <param name="Inputs">The samples, Float32 [B, ...], e.g. [B, 1, 28, 28] for MNIST.</param>
/// <param name="Targets">The class index of each sample, Int64 [B].</param>
/// <param name="Indices">The dataset index of each row of <paramref name="Inputs"/>, length B.</param>
public sealed record Batch(Tensor Inputs, Tensor Targets, int[] Indices);
