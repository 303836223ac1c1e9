namespace NeuralCore.Optim;

/// <summary>Whether a lower or a higher metric is better.</summary>
public enum PlateauMode
{
    /// <summary>Lower is better (a loss).</summary>
    Min,
    /// <summary>Higher is better (an accuracy).</summary>
    Max,
}

/// <summary>How the improvement threshold is measured.</summary>
public enum ThresholdMode
{
    /// <summary>Relative: better than best * (1 - threshold) (min) or best * (1 + threshold) (max).</summary>
    Rel,
    /// <summary>Absolute: better than best - threshold (min) or best + threshold (max).</summary>
    Abs,
}

/// <summary>
/// Multiplies the learning rates by <see cref="Factor"/> when a metric has not improved for more than
/// <see cref="Patience"/> epochs (PyTorch's <c>ReduceLROnPlateau</c>). Call <see cref="Step"/> once per epoch with
/// the validation metric.
/// </summary>
/// <remarks>
/// Per step: an improvement beyond the threshold resets the count of bad epochs, anything else adds one; during a
/// cooldown the count stays 0; when the count exceeds the patience, each group's rate becomes
/// max(lr * factor, min_lr) (unless that changes it by no more than eps) and a cooldown of
/// <see cref="Cooldown"/> epochs starts.
/// </remarks>
public sealed class ReduceLROnPlateau
{
    private readonly double[] _minLrs;

    /// <summary>Creates the scheduler.</summary>
    /// <param name="optimizer">The optimizer whose rates to reduce.</param>
    /// <param name="mode">Whether lower (loss) or higher (accuracy) is better.</param>
    /// <param name="factor">Multiplier of the rate on a reduction (below 1).</param>
    /// <param name="patience">Epochs without improvement tolerated before reducing.</param>
    /// <param name="threshold">Smallest improvement that counts.</param>
    /// <param name="thresholdMode">Whether the threshold is relative or absolute.</param>
    /// <param name="cooldown">Epochs after a reduction during which bad epochs are not counted.</param>
    /// <param name="minLr">Lower bound of every group's rate.</param>
    /// <param name="eps">Reductions smaller than this are skipped.</param>
    public ReduceLROnPlateau(Optimizer optimizer, PlateauMode mode = PlateauMode.Min, double factor = 0.1, int patience = 10,
        double threshold = 1e-4, ThresholdMode thresholdMode = ThresholdMode.Rel, int cooldown = 0, double minLr = 0, double eps = 1e-8)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        if (factor is >= 1 or < 0) throw new ArgumentOutOfRangeException(nameof(factor), factor, "ReduceLROnPlateau factor must lie in [0, 1).");
        if (patience < 0) throw new ArgumentOutOfRangeException(nameof(patience), patience, "Patience must be at least 0.");
        if (cooldown < 0) throw new ArgumentOutOfRangeException(nameof(cooldown), cooldown, "Cooldown must be at least 0.");
        Optimizer = optimizer;
        Mode = mode;
        Factor = factor;
        Patience = patience;
        Threshold = threshold;
        ThresholdMode = thresholdMode;
        Cooldown = cooldown;
        Eps = eps;
        _minLrs = Enumerable.Repeat(minLr, optimizer.ParamGroups.Count).ToArray();
        Best = mode == PlateauMode.Min ? double.PositiveInfinity : double.NegativeInfinity;
    }

    /// <summary>The optimizer whose rates this scheduler reduces.</summary>
    public Optimizer Optimizer { get; }

    /// <summary>Whether lower or higher is better.</summary>
    public PlateauMode Mode { get; }

    /// <summary>Multiplier of the rate on a reduction.</summary>
    public double Factor { get; }

    /// <summary>Epochs without improvement tolerated before reducing.</summary>
    public int Patience { get; }

    /// <summary>Smallest improvement that counts.</summary>
    public double Threshold { get; }

    /// <summary>Whether the threshold is relative or absolute.</summary>
    public ThresholdMode ThresholdMode { get; }

    /// <summary>Epochs after a reduction during which bad epochs are not counted.</summary>
    public int Cooldown { get; }

    /// <summary>Reductions smaller than this are skipped.</summary>
    public double Eps { get; }

    /// <summary>The best metric seen so far.</summary>
    public double Best { get; private set; }

    /// <summary>Consecutive epochs without improvement.</summary>
    public int NumBadEpochs { get; private set; }

    /// <summary>Epochs of cooldown left.</summary>
    public int CooldownCounter { get; private set; }

    /// <summary>Number of <see cref="Step"/> calls so far.</summary>
    public int LastEpoch { get; private set; }

    /// <summary>Each group's learning rate after the last step.</summary>
    public IReadOnlyList<double> GetLastLr() => Optimizer.ParamGroups.Select(g => g.Lr).ToArray();

    /// <summary>Records one epoch's <paramref name="metric"/> and reduces the rates if it has plateaued.</summary>
    public void Step(double metric)
    {
        LastEpoch++;
        if (IsBetter(metric))
        {
            Best = metric;
            NumBadEpochs = 0;
        }
        else NumBadEpochs++;
        if (CooldownCounter > 0)
        {
            CooldownCounter--;
            NumBadEpochs = 0;
        }
        if (NumBadEpochs > Patience)
        {
            for (var i = 0; i < Optimizer.ParamGroups.Count; i++)
            {
                var group = Optimizer.ParamGroups[i];
                var reduced = Math.Max(group.Lr * Factor, _minLrs[i]);
                if (group.Lr - reduced > Eps) group.Lr = reduced;
            }
            CooldownCounter = Cooldown;
            NumBadEpochs = 0;
        }
    }

    private bool IsBetter(double metric) => (Mode, ThresholdMode) switch
    {
        (PlateauMode.Min, ThresholdMode.Rel) => metric < Best * (1 - Threshold),
        (PlateauMode.Min, ThresholdMode.Abs) => metric < Best - Threshold,
        (PlateauMode.Max, ThresholdMode.Rel) => metric > Best * (1 + Threshold),
        _ => metric > Best + Threshold,
    };

    /// <summary>The progress: <c>best</c>, <c>num_bad_epochs</c>, <c>cooldown_counter</c>, <c>last_epoch</c>.</summary>
    public Dictionary<string, double> StateDict() => new()
    {
        ["best"] = Best,
        ["num_bad_epochs"] = NumBadEpochs,
        ["cooldown_counter"] = CooldownCounter,
        ["last_epoch"] = LastEpoch,
    };

    /// <summary>Restores the progress saved by <see cref="StateDict"/> (the rates themselves are in the optimizer's state).</summary>
    /// <exception cref="ArgumentException">A key is missing.</exception>
    public void LoadStateDict(IReadOnlyDictionary<string, double> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        double Read(string key) => state.TryGetValue(key, out var v) ? v
            : throw new ArgumentException($"The ReduceLROnPlateau state has no '{key}'.", nameof(state));
        Best = Read("best");
        NumBadEpochs = (int)Read("num_bad_epochs");
        CooldownCounter = (int)Read("cooldown_counter");
        LastEpoch = (int)Read("last_epoch");
    }
}
