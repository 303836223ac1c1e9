using NeuralCore.NN;

namespace NeuralCore.Optim;

/// <summary>
/// Base class of optimizers (PyTorch's <c>torch.optim.Optimizer</c>): parameter groups with their own
/// hyper-parameters, per-parameter state, <see cref="Step"/> and <see cref="ZeroGrad"/>, and a state dict for
/// resuming.
/// </summary>
/// <remarks>
/// <see cref="State"/> holds, per parameter, tensors of exactly the parameter's shape under PyTorch's names
/// (<c>exp_avg</c>, <c>exp_avg_sq</c>, <c>max_exp_avg_sq</c>, <c>momentum_buffer</c>); the step count is kept
/// apart (<see cref="StepCount"/>). A pruner that slices a parameter in place (<see cref="Tensor.SetData"/>) slices
/// each of these tensors along the same dimension and stores the results back into the parameter's dictionary. A
/// parameter whose <see cref="Tensor.Grad"/> is null is skipped by <see cref="Step"/> (no state, no step counted).
/// </remarks>
public abstract class Optimizer
{
    private readonly List<ParamGroup> _groups = [];
    private readonly Dictionary<Parameter, IDictionary<string, Tensor>> _state = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<Parameter, int> _steps = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<string, double> _defaults;

    /// <summary>Creates the optimizer over <paramref name="groups"/>, filling options they leave out from <paramref name="defaults"/>.</summary>
    protected Optimizer(IEnumerable<ParamGroup> groups, IReadOnlyDictionary<string, double> defaults)
    {
        ArgumentNullException.ThrowIfNull(groups);
        _defaults = new Dictionary<string, double>(defaults);
        foreach (var g in groups) AddParamGroup(g);
        if (_groups.Count == 0) throw new ArgumentException("An optimizer needs at least one parameter group; got an empty list.", nameof(groups));
    }

    /// <summary>The parameter groups.</summary>
    public IReadOnlyList<ParamGroup> ParamGroups => _groups;

    /// <summary>The default hyper-parameters given to the constructor, by PyTorch name.</summary>
    public IReadOnlyDictionary<string, double> Defaults => _defaults;

    /// <summary>Per-parameter state tensors (each of the parameter's shape), by PyTorch name. Empty for a parameter that has not been stepped.</summary>
    public IReadOnlyDictionary<Parameter, IDictionary<string, Tensor>> State => _state;

    /// <summary>How many updates <paramref name="parameter"/> has received (PyTorch's <c>state["step"]</c>; 0 before the first).</summary>
    public int StepCount(Parameter parameter) => _steps.GetValueOrDefault(parameter);

    /// <summary>All parameters of all groups, in state-dict order.</summary>
    public IEnumerable<Parameter> Parameters() => _groups.SelectMany(g => g.Parameters);

    /// <summary>Adds a group; options it leaves out take the defaults. A parameter may belong to one group only.</summary>
    /// <exception cref="ArgumentException">An option name is unknown to this optimizer, or a parameter is already in a group.</exception>
    public void AddParamGroup(ParamGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        foreach (var key in group.Options.Keys)
            if (!_defaults.ContainsKey(key) && key != "initial_lr")
                throw new ArgumentException($"{GetType().Name} has no option '{key}'; its options are {string.Join(", ", _defaults.Keys)}.", nameof(group));
        var seen = new HashSet<Parameter>(Parameters(), ReferenceEqualityComparer.Instance);
        foreach (var p in group.Parameters)
            if (!seen.Add(p))
                throw new ArgumentException($"Parameter '{p.Name ?? "(unnamed)"}' {Tensor.FormatShape(p.Shape)} appears in more than one parameter group (or twice in one).", nameof(group));
        foreach (var (key, value) in _defaults) group.Options.TryAdd(key, value);
        _groups.Add(group);
    }

    /// <summary>Clears the gradients of every parameter: sets them to null (PyTorch's default) or, with <paramref name="setToNone"/> false, to zero.</summary>
    public void ZeroGrad(bool setToNone = true)
    {
        using var _ = Autograd.Autograd.NoGrad();
        // NOTE: indexed loops, not foreach over the interfaces: a training step should allocate nothing here.
        foreach (var group in _groups)
            for (int i = 0; i < group.Parameters.Count; i++)
            {
                var p = group.Parameters[i];
                if (setToNone) p.Grad = null;
                else p.Grad?.ZeroInPlace();
            }
    }

    /// <summary>Updates every parameter that has a gradient, once.</summary>
    public void Step()
    {
        using var _ = Autograd.Autograd.NoGrad();
        foreach (var group in _groups)
            for (int i = 0; i < group.Parameters.Count; i++)
            {
                var p = group.Parameters[i];
                if (p.Grad is null) continue;
                if (!p.Grad.Shape.SequenceEqual(p.Shape))
                    throw new InvalidOperationException($"Parameter '{p.Name ?? "(unnamed)"}' has shape {Tensor.FormatShape(p.Shape)} but its gradient has {Tensor.FormatShape(p.Grad.Shape)}; after resizing a parameter, clear its gradient.");
                if (!_state.TryGetValue(p, out var state)) _state[p] = state = new Dictionary<string, Tensor>();
                var step = _steps.GetValueOrDefault(p) + 1;
                _steps[p] = step;
                // Recording is off, so the parameter and its gradient are passed as they are (no detached views to allocate).
                var grad = p.Grad.Contiguous();
                if (p.IsContiguous) Update(p, grad, group, state, step);
                else
                {
                    var data = p.Detach().Contiguous();
                    Update(data, grad, group, state, step);
                    p.Detach().CopyFrom(data);
                }
            }
    }

    /// <summary>Applies one update to contiguous parameter data with its contiguous gradient. <paramref name="step"/> is 1 on the first update.</summary>
    /// <param name="data">The parameter's elements (contiguous; updated in place).</param>
    /// <param name="grad">The gradient, same shape.</param>
    /// <param name="group">The parameter's group (hyper-parameters).</param>
    /// <param name="state">The parameter's state tensors, to read and fill.</param>
    /// <param name="step">The 1-based number of this update.</param>
    protected abstract void Update(Tensor data, Tensor grad, ParamGroup group, IDictionary<string, Tensor> state, int step);

    /// <summary>The state tensor <paramref name="name"/>, created as zeros of the parameter's shape when missing (second value true then).</summary>
    /// <exception cref="InvalidOperationException">The stored tensor's shape differs from the parameter's.</exception>
    protected static (Tensor Tensor, bool Created) GetOrCreateState(IDictionary<string, Tensor> state, string name, Tensor data)
    {
        if (!state.TryGetValue(name, out var t))
        {
            state[name] = t = Tensor.ZerosLike(data);
            return (t, true);
        }
        if (!t.Shape.SequenceEqual(data.Shape))
            throw new InvalidOperationException($"Optimizer state '{name}' has shape {Tensor.FormatShape(t.Shape)} but its parameter has {Tensor.FormatShape(data.Shape)}; slice the optimizer state along with the parameter.");
        if (!t.IsContiguous || t.Device != data.Device) state[name] = t = t.Detach().To(data.Device).Contiguous();
        return (t, false);
    }

    /// <summary>A copy of the state (tensors and step counts by parameter index) and of every group's hyper-parameters.</summary>
    public OptimizerStateDict StateDict()
    {
        var result = new OptimizerStateDict();
        var index = 0;
        for (var g = 0; g < _groups.Count; g++)
        {
            var group = _groups[g];
            foreach (var (key, value) in group.Options) result.Scalars[$"param_groups.{g}.{key}"] = value;
            result.Scalars[$"param_groups.{g}.param_count"] = group.Parameters.Count;
            foreach (var p in group.Parameters)
            {
                if (_steps.TryGetValue(p, out var step)) result.Scalars[$"state.{index}.step"] = step;
                if (_state.TryGetValue(p, out var state))
                    foreach (var (name, t) in state) result.Tensors[$"state.{index}.{name}"] = t.Detach().Clone();
                index++;
            }
        }
        return result;
    }

    /// <summary>
    /// Restores a state saved by <see cref="StateDict"/> on an optimizer built over the same parameters in the same
    /// groups: replaces all state (copied to each parameter's device) and every group's hyper-parameters.
    /// </summary>
    /// <exception cref="ArgumentException">The groups, parameter counts or state shapes do not match this optimizer.</exception>
    public void LoadStateDict(OptimizerStateDict stateDict)
    {
        ArgumentNullException.ThrowIfNull(stateDict);
        var counts = new List<int>();
        while (stateDict.Scalars.TryGetValue($"param_groups.{counts.Count}.param_count", out var c)) counts.Add((int)c);
        if (!counts.SequenceEqual(_groups.Select(g => g.Parameters.Count)))
            throw new ArgumentException($"The optimizer state has groups of [{string.Join(", ", counts)}] parameters but this optimizer has [{string.Join(", ", _groups.Select(g => g.Parameters.Count))}]; build the optimizer over the same parameter groups.", nameof(stateDict));
        var parameters = Parameters().ToList();
        var loaded = new Dictionary<Parameter, IDictionary<string, Tensor>>(ReferenceEqualityComparer.Instance);
        foreach (var (key, t) in stateDict.Tensors)
        {
            var (index, name) = ParseStateKey(key, parameters.Count);
            var p = parameters[index];
            if (!t.Shape.SequenceEqual(p.Shape))
                throw new ArgumentException($"Optimizer state '{key}' has shape {Tensor.FormatShape(t.Shape)} but parameter {index} ('{p.Name ?? "(unnamed)"}') has {Tensor.FormatShape(p.Shape)}; the state belongs to a different model.", nameof(stateDict));
            if (!loaded.TryGetValue(p, out var dict)) loaded[p] = dict = new Dictionary<string, Tensor>();
            dict[name] = t.Detach().To(p.Device).AsType(DType.Float32).Clone();
        }
        var steps = new Dictionary<Parameter, int>(ReferenceEqualityComparer.Instance);
        foreach (var (key, value) in stateDict.Scalars)
        {
            if (!key.StartsWith("state.", StringComparison.Ordinal)) continue;
            var (index, name) = ParseStateKey(key, parameters.Count);
            if (name != "step") throw new ArgumentException($"Unknown optimizer scalar state '{key}'.", nameof(stateDict));
            steps[parameters[index]] = (int)value;
        }
        _state.Clear();
        _steps.Clear();
        foreach (var (p, dict) in loaded) _state[p] = dict;
        foreach (var (p, step) in steps) _steps[p] = step;
        for (var g = 0; g < _groups.Count; g++)
        {
            var prefix = $"param_groups.{g}.";
            foreach (var (key, value) in stateDict.Scalars)
                if (key.StartsWith(prefix, StringComparison.Ordinal) && key.Length > prefix.Length && key[prefix.Length..] != "param_count")
                    _groups[g].Options[key[prefix.Length..]] = value;
        }
    }

    private static (int Index, string Name) ParseStateKey(string key, int count)
    {
        var parts = key.Split('.', 3);
        if (parts.Length != 3 || parts[0] != "state" || !int.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var index))
            throw new ArgumentException($"Optimizer state key '{key}' is not of the form state.{{index}}.{{name}}.");
        if (index >= count)
            throw new ArgumentException($"Optimizer state key '{key}' refers to parameter {index}, but this optimizer has {count} parameters.");
        return (index, parts[2]);
    }
}
