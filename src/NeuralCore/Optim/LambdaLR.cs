namespace NeuralCore.Optim;

/// <summary>
/// Sets each group's learning rate to its base rate times a factor of the epoch (PyTorch's <c>LambdaLR</c>):
/// lr = initial_lr * factor(epoch). Use with <see cref="Schedules.ExpWarmupLinearDown"/> for the seed's schedule.
/// </summary>
public sealed class LambdaLR : LRScheduler
{
    private readonly Func<int, double>[] _factors;

    /// <summary>One factor function for every group.</summary>
    public LambdaLR(Optimizer optimizer, Func<int, double> lrLambda)
        : this(optimizer, Enumerable.Repeat(lrLambda ?? throw new ArgumentNullException(nameof(lrLambda)), optimizer.ParamGroups.Count).ToList()) { }

    /// <summary>One factor function per group, in group order.</summary>
    /// <exception cref="ArgumentException">The number of functions differs from the number of groups.</exception>
    public LambdaLR(Optimizer optimizer, IReadOnlyList<Func<int, double>> lrLambdas) : base(optimizer)
    {
        ArgumentNullException.ThrowIfNull(lrLambdas);
        if (lrLambdas.Count != optimizer.ParamGroups.Count)
            throw new ArgumentException($"LambdaLR got {lrLambdas.Count} factor functions for {optimizer.ParamGroups.Count} parameter groups; pass one per group or a single one.", nameof(lrLambdas));
        _factors = lrLambdas.ToArray();
        InitialStep();
    }

    /// <inheritdoc />
    protected override double[] ComputeLr() => BaseLrs.Select((lr, i) => lr * _factors[i](LastEpoch)).ToArray();
}
