using NeuralCore.NN;

namespace NeuralCore.Audio;

/// <summary>
/// A mixup batch: inputs <c>lambda x + (1 - lambda) x[perm]</c> with the two target sets and the per-example
/// weights, so the loss can be mixed the same way.
/// </summary>
/// <param name="Inputs">The mixed inputs, same shape as the originals [B, ...].</param>
/// <param name="TargetsA">The original Int64 targets [B].</param>
/// <param name="TargetsB">The targets of the partner examples, TargetsA[perm], Int64 [B].</param>
/// <param name="Lambda">The weight of each example's own input and target, Float32 [B], each in [0.5, 1].</param>
public sealed record MixupBatch(Tensor Inputs, Tensor TargetsA, Tensor TargetsB, Tensor Lambda)
{
    /// <summary>
    /// The mixed cross-entropy <c>mean_i(lambda_i CE(logits_i, a_i) + (1 - lambda_i) CE(logits_i, b_i))</c> of
    /// <paramref name="logits"/> [B, C] (differentiable).
    /// </summary>
    public Tensor Loss(Tensor logits)
    {
        var lossA = Functional.CrossEntropy(logits, TargetsA, reduction: Reduction.None);
        var lossB = Functional.CrossEntropy(logits, TargetsB, reduction: Reduction.None);
        return (lossA * Lambda + lossB * (1f - Lambda)).Mean();
    }
}

/// <summary>Mixup as the seed (CPJKU) implements it: one partner permutation per batch, one lambda per example.</summary>
public static class Mixup
{
    /// <summary>
    /// Mixes <paramref name="inputs"/> [B, ...] with a random permutation of themselves: lambda_i ~ Beta(alpha, alpha),
    /// lambda_i = max(lambda_i, 1 - lambda_i), so each example keeps the larger share of itself.
    /// </summary>
    public static MixupBatch Apply(Tensor inputs, Tensor targets, double alpha, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(generator);
        if (!(alpha > 0))
            throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "Mixup alpha must be positive.");
        int b = inputs.Size(0);
        if (targets.Rank != 1 || targets.Size(0) != b)
            throw new ArgumentException($"Mixup expects targets [{b}], found {Tensor.FormatShape(targets.Shape)}.", nameof(targets));
        var perm = new int[b];
        for (int i = 0; i < b; i++)
            perm[i] = i;
        generator.Shuffle<int>(perm);
        var lambda = new float[b];
        for (int i = 0; i < b; i++)
        {
            double l = generator.NextBeta(alpha, alpha);
            lambda[i] = (float)Math.Max(l, 1 - l);
        }
        var x = inputs.Contiguous().ToArray();
        int size = x.Length / Math.Max(b, 1);
        var mixed = new float[x.Length];
        for (int i = 0; i < b; i++)
        {
            float l = lambda[i];
            ReadOnlySpan<float> own = x.AsSpan(i * size, size), other = x.AsSpan(perm[i] * size, size);
            Span<float> dst = mixed.AsSpan(i * size, size);
            for (int j = 0; j < size; j++)
                dst[j] = l * own[j] + (1 - l) * other[j];
        }
        var t = targets.ToInt64Array();
        var targetsB = new long[b];
        for (int i = 0; i < b; i++)
            targetsB[i] = t[perm[i]];
        // The mixed batch, the partners' targets and lambda live where the batch does (a GPU's, when training runs there).
        var device = inputs.Device;
        return new MixupBatch(Tensor.Wrap(mixed, inputs.ShapeArray()).To(device), targets, Tensor.FromArray(targetsB, b).To(targets.Device),
            Tensor.FromArray(lambda, b).To(device));
    }
}
