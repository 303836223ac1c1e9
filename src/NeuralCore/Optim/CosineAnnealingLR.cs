namespace NeuralCore.Optim;

/// <summary>
/// Cosine annealing from each base rate down to <see cref="EtaMin"/> over <see cref="TMax"/> epochs (PyTorch's
/// <c>CosineAnnealingLR</c>, closed form): lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2.
/// Past T_max the cosine continues (the rate rises again), as PyTorch's closed form does.
/// </summary>
public sealed class CosineAnnealingLR : LRScheduler
{
    /// <summary>Creates the schedule and applies epoch 0 (the base rates).</summary>
    /// <param name="optimizer">The optimizer.</param>
    /// <param name="tMax">Epochs from the base rate to the minimum (at least 1).</param>
    /// <param name="etaMin">The minimum learning rate.</param>
    public CosineAnnealingLR(Optimizer optimizer, int tMax, double etaMin = 0) : base(optimizer)
    {
        if (tMax < 1) throw new ArgumentOutOfRangeException(nameof(tMax), tMax, "CosineAnnealingLR needs T_max of at least 1 epoch.");
        TMax = tMax;
        EtaMin = etaMin;
        InitialStep();
    }

    /// <summary>Epochs from the base rate to the minimum.</summary>
    public int TMax { get; }

    /// <summary>The minimum learning rate.</summary>
    public double EtaMin { get; }

    /// <inheritdoc />
    protected override double[] ComputeLr() =>
        BaseLrs.Select(lr => EtaMin + (lr - EtaMin) * (1 + Math.Cos(Math.PI * LastEpoch / TMax)) / 2).ToArray();
}
