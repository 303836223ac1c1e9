using NeuralCore.NN;

namespace NeuralCore.Optim;

/// <summary>
/// A set of parameters that share hyper-parameters (PyTorch's param group). Options are keyed by PyTorch's names:
/// <c>lr</c>, <c>weight_decay</c>, and per optimizer <c>beta1</c>, <c>beta2</c>, <c>eps</c>, <c>amsgrad</c> (Adam;
/// PyTorch's <c>betas</c> pair is split in two), <c>momentum</c>, <c>dampening</c>, <c>nesterov</c> (SGD). Flags
/// are stored as 0 or 1. Options left out take the optimizer's defaults when the group is added.
/// </summary>
public sealed class ParamGroup
{
    /// <summary>A group of <paramref name="parameters"/> with optional per-group <paramref name="options"/>.</summary>
    public ParamGroup(IEnumerable<Parameter> parameters, IReadOnlyDictionary<string, double>? options = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Parameters = parameters.ToList();
        Options = options is null ? new Dictionary<string, double>() : new Dictionary<string, double>(options);
    }

    /// <summary>The parameters, in order (their global index in the optimizer's state dict follows this order).</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>The hyper-parameters by PyTorch name (schedulers also store <c>initial_lr</c> here).</summary>
    public IDictionary<string, double> Options { get; }

    /// <summary>An option by name.</summary>
    /// <exception cref="KeyNotFoundException">The group has no such option.</exception>
    public double this[string name]
    {
        get => Options.TryGetValue(name, out var v) ? v
            : throw new KeyNotFoundException($"The param group has no option '{name}'; it has {string.Join(", ", Options.Keys)}.");
        set => Options[name] = value;
    }

    /// <summary>The learning rate (<c>lr</c>).</summary>
    public double Lr { get => this["lr"]; set => this["lr"] = value; }

    /// <summary>The weight decay (<c>weight_decay</c>).</summary>
    public double WeightDecay { get => this["weight_decay"]; set => this["weight_decay"] = value; }
}
