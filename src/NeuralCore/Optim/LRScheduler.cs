using System.Globalization;

namespace NeuralCore.Optim;

/// <summary>
/// Base class of epoch-based learning-rate schedulers (PyTorch's <c>torch.optim.lr_scheduler.LRScheduler</c>).
/// Construction records each group's <c>initial_lr</c> (the base learning rate) and applies epoch 0's rate;
/// each <see cref="Step"/> moves to the next epoch and sets every group's <c>lr</c>.
/// </summary>
/// <remarks>
/// Call <see cref="Step"/> once per epoch, after that epoch's optimizer steps, as in PyTorch. Subclasses compute
/// the rates in closed form from <see cref="LastEpoch"/> and <see cref="BaseLrs"/>, and call
/// <see cref="InitialStep"/> at the end of their constructor.
/// </remarks>
public abstract class LRScheduler
{
    private double[] _baseLrs;
    private double[] _lastLr = [];

    /// <summary>Records the base learning rates (a group's existing <c>initial_lr</c>, else its <c>lr</c>).</summary>
    protected LRScheduler(Optimizer optimizer)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        Optimizer = optimizer;
        foreach (var g in optimizer.ParamGroups) g.Options.TryAdd("initial_lr", g.Lr);
        _baseLrs = optimizer.ParamGroups.Select(g => g["initial_lr"]).ToArray();
        LastEpoch = -1;
    }

    /// <summary>The optimizer whose learning rates this scheduler sets.</summary>
    public Optimizer Optimizer { get; }

    /// <summary>The base learning rate of each group (its <c>initial_lr</c>).</summary>
    public IReadOnlyList<double> BaseLrs => _baseLrs;

    /// <summary>The epoch of the current rates (0 after construction).</summary>
    public int LastEpoch { get; private set; }

    /// <summary>The learning rate of each group as last set by this scheduler.</summary>
    public IReadOnlyList<double> GetLastLr() => _lastLr;

    /// <summary>Applies epoch 0's rates; subclasses call this at the end of their constructor.</summary>
    protected void InitialStep() => Step();

    /// <summary>Moves to the next epoch and sets every group's learning rate.</summary>
    public void Step()
    {
        LastEpoch++;
        var lrs = ComputeLr();
        if (lrs.Length != Optimizer.ParamGroups.Count)
            throw new InvalidOperationException($"{GetType().Name} computed {lrs.Length} learning rates for {Optimizer.ParamGroups.Count} parameter groups.");
        Apply(lrs);
    }

    /// <summary>The learning rate of each group at <see cref="LastEpoch"/>.</summary>
    protected abstract double[] ComputeLr();

    private void Apply(double[] lrs)
    {
        for (var i = 0; i < lrs.Length; i++) Optimizer.ParamGroups[i].Lr = lrs[i];
        _lastLr = lrs;
    }

    /// <summary>The scheduler's progress: <c>last_epoch</c>, <c>base_lrs.{i}</c> and <c>last_lr.{i}</c>.</summary>
    public virtual Dictionary<string, double> StateDict()
    {
        var d = new Dictionary<string, double> { ["last_epoch"] = LastEpoch };
        for (var i = 0; i < _baseLrs.Length; i++) d[Key("base_lrs", i)] = _baseLrs[i];
        for (var i = 0; i < _lastLr.Length; i++) d[Key("last_lr", i)] = _lastLr[i];
        return d;
    }

    /// <summary>
    /// Restores the progress saved by <see cref="StateDict"/> and sets the optimizer's learning rates to the restored
    /// last rates, so the scheduler and the optimizer agree even when only the scheduler is restored.
    /// </summary>
    /// <exception cref="ArgumentException">The state has a different number of groups or no <c>last_epoch</c>.</exception>
    public virtual void LoadStateDict(IReadOnlyDictionary<string, double> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var groups = Optimizer.ParamGroups.Count;
        if (!state.TryGetValue("last_epoch", out var epoch))
            throw new ArgumentException("The scheduler state has no 'last_epoch'.", nameof(state));
        var baseLrs = ReadList(state, "base_lrs", groups);
        var lastLr = ReadList(state, "last_lr", groups);
        LastEpoch = (int)epoch;
        _baseLrs = baseLrs;
        Apply(lastLr);
    }

    private static string Key(string name, int i) => name + "." + i.ToString(CultureInfo.InvariantCulture);

    private static double[] ReadList(IReadOnlyDictionary<string, double> state, string name, int count)
    {
        var values = new double[count];
        for (var i = 0; i < count; i++)
            if (!state.TryGetValue(Key(name, i), out values[i]))
                throw new ArgumentException($"The scheduler state has no '{Key(name, i)}'; it was saved for a different number of parameter groups (expected {count}).", nameof(state));
        if (state.ContainsKey(Key(name, count)))
            throw new ArgumentException($"The scheduler state has more than {count} '{name}' entries; it was saved for a different number of parameter groups.", nameof(state));
        return values;
    }
}
