using NeuralCore.Autograd;

namespace NeuralCore.NN;

/// <summary>
/// Base class of layers and models (PyTorch's <c>nn.Module</c>): owns parameters, buffers and child modules under
/// names that form the state-dict keys (<c>stage1.block1.conv1.weight</c>), and switches between training and eval.
/// </summary>
/// <remarks>
/// Subclasses register what they own in their constructor with <see cref="RegisterParameter"/>, <see cref="RegisterBuffer"/>
/// and <see cref="RegisterModule{T}"/>, implement <see cref="Forward"/>, and call children through <see cref="Call"/> so
/// recorded ops know which module produced them.
/// </remarks>
public abstract class Module
{
    private readonly List<KeyValuePair<string, Parameter?>> _parameters = [];
    private readonly List<(string Name, Tensor? Tensor, bool Persistent)> _buffers = [];
    private readonly List<KeyValuePair<string, Module>> _children = [];

    /// <summary>True in training mode (the default), false in eval mode.</summary>
    public bool Training { get; private set; } = true;

    /// <summary>The computation of this module.</summary>
    public abstract Tensor Forward(Tensor input);

    /// <summary>Runs <see cref="Forward"/> with this module on the recording stack (use this to call child modules).</summary>
    public Tensor Call(Tensor input)
    {
        using var _ = Autograd.Autograd.EnterModule(this);
        return Forward(input);
    }

    /// <summary>Registers (or replaces) a parameter under <paramref name="name"/>; null reserves the name (e.g. a bias that is off).</summary>
    protected Parameter? RegisterParameter(string name, Parameter? parameter)
    {
        ValidateName(name);
        Upsert(_parameters, name, parameter);
        if (parameter is not null) parameter.Name ??= name;
        return parameter;
    }

    /// <summary>Registers (or replaces) a buffer: state that is not learned (running statistics). Persistent buffers are in the state dict.</summary>
    protected Tensor? RegisterBuffer(string name, Tensor? buffer, bool persistent = true)
    {
        ValidateName(name);
        var i = _buffers.FindIndex(b => b.Name == name);
        if (i >= 0) _buffers[i] = (name, buffer, persistent);
        else _buffers.Add((name, buffer, persistent));
        return buffer;
    }

    /// <summary>Registers (or replaces) a child module under <paramref name="name"/> and returns it.</summary>
    protected T RegisterModule<T>(string name, T module) where T : Module
    {
        ValidateName(name);
        Upsert(_children, name, (Module)module);
        return module;
    }

    private static void ValidateName(string name)
    {
        if (string.IsNullOrEmpty(name) || name.Contains('.'))
            throw new ArgumentException($"Invalid member name '{name}': names must be non-empty and contain no '.'.", nameof(name));
    }

    private static void Upsert<T>(List<KeyValuePair<string, T>> list, string name, T value)
    {
        var i = list.FindIndex(p => p.Key == name);
        if (i >= 0) list[i] = new(name, value);
        else list.Add(new(name, value));
    }

    /// <summary>The direct children with their names, in registration order.</summary>
    public IEnumerable<(string Name, Module Module)> NamedChildren() => _children.Select(c => (c.Key, c.Value));

    /// <summary>This module and all descendants with dotted names (this module has the name <paramref name="prefix"/>).</summary>
    public IEnumerable<(string Name, Module Module)> NamedModules(string prefix = "")
    {
        yield return (prefix, this);
        foreach (var (name, child) in NamedChildren())
            foreach (var item in child.NamedModules(Join(prefix, name)))
                yield return item;
    }

    /// <summary>
    /// All parameters with dotted names (this module's first, then each child's). A parameter shared by several
    /// modules is listed once, under its first name, as PyTorch's <c>named_parameters()</c> does, so optimizers and
    /// parameter counts see it once.
    /// </summary>
    public IEnumerable<(string Name, Parameter Parameter)> NamedParameters(string prefix = "", bool recurse = true)
    {
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        foreach (var item in AllNamedParameters(prefix, recurse))
            if (seen.Add(item.Parameter)) yield return item;
    }

    private IEnumerable<(string Name, Parameter Parameter)> AllNamedParameters(string prefix, bool recurse)
    {
        foreach (var (name, p) in _parameters)
            if (p is not null) yield return (Join(prefix, name), p);
        if (!recurse) yield break;
        foreach (var (name, child) in NamedChildren())
            foreach (var item in child.AllNamedParameters(Join(prefix, name), true))
                yield return item;
    }

    /// <summary>All parameters.</summary>
    public IEnumerable<Parameter> Parameters(bool recurse = true) => NamedParameters("", recurse).Select(p => p.Parameter);

    /// <summary>All buffers with dotted names.</summary>
    public IEnumerable<(string Name, Tensor Buffer)> NamedBuffers(string prefix = "", bool recurse = true, bool persistentOnly = false)
    {
        foreach (var (name, b, persistent) in _buffers)
            if (b is not null && (persistent || !persistentOnly)) yield return (Join(prefix, name), b);
        if (!recurse) yield break;
        foreach (var (name, child) in NamedChildren())
            foreach (var item in child.NamedBuffers(Join(prefix, name), true, persistentOnly))
                yield return item;
    }

    /// <summary>All buffers.</summary>
    public IEnumerable<Tensor> Buffers(bool recurse = true) => NamedBuffers("", recurse).Select(b => b.Buffer);

    /// <summary>Number of learnable parameter elements (PyTorch's <c>sum(p.numel() for p in parameters())</c>).</summary>
    public long ParameterCount() => Parameters().Sum(p => (long)p.NumElements);

    private static string Join(string prefix, string name) => prefix.Length == 0 ? name : prefix + "." + name;

    /// <summary>Sets training (true) or eval (false) mode on this module and every descendant.</summary>
    public Module Train(bool mode = true)
    {
        foreach (var (_, m) in NamedModules()) m.Training = mode;
        return this;
    }

    /// <summary>Switches to eval mode (batch norm uses running statistics, dropout is off).</summary>
    public Module Eval() => Train(false);

    /// <summary>Clears the gradients of all parameters (sets them to null, PyTorch's default).</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters()) p.Grad = null;
    }

    /// <summary>Moves every parameter and buffer to <paramref name="device"/> in place (identities are kept, so optimizers stay valid).</summary>
    public Module To(Device device)
    {
        using var _ = Autograd.Autograd.NoGrad();
        foreach (var p in Parameters()) if (p.Device != device) p.SetData(p.Detach().To(device));
        foreach (var b in Buffers()) if (b.Device != device) b.SetData(b.Detach().To(device));
        return this;
    }

    /// <summary>Parameters and persistent buffers by state-dict key, in PyTorch's order (per module: parameters, then buffers, then children).</summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var result = new Dictionary<string, Tensor>();
        AddState(result, "");
        return result;
    }

    private void AddState(Dictionary<string, Tensor> result, string prefix)
    {
        foreach (var (name, p) in NamedParameters(prefix, recurse: false)) result[name] = p;
        foreach (var (name, b) in NamedBuffers(prefix, recurse: false, persistentOnly: true)) result[name] = b;
        foreach (var (name, child) in NamedChildren()) child.AddState(result, Join(prefix, name));
    }

    /// <summary>
    /// Copies values from <paramref name="state"/> into this module's parameters and buffers. Strict (the default):
    /// every key must match and nothing may be missing; a shape mismatch names the key, the expected and the found shape.
    /// Values are converted to each tensor's dtype (so PyTorch's int64 <c>num_batches_tracked</c> loads as is).
    /// With <paramref name="adoptShapes"/>, a tensor whose shape differs takes the source's shape and values instead
    /// (layers derive their channel counts from their weights, so a pruned state dict loads into a model built
    /// with the original widths).
    /// </summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, bool strict = true, bool adoptShapes = false)
    {
        var own = StateDict();
        var missing = own.Keys.Where(k => !state.ContainsKey(k)).ToList();
        var unexpected = state.Keys.Where(k => !own.ContainsKey(k)).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
            throw new KeyNotFoundException(
                "LoadStateDict (strict): " +
                (missing.Count > 0 ? $"missing keys: {string.Join(", ", missing)}. " : "") +
                (unexpected.Count > 0 ? $"unexpected keys: {string.Join(", ", unexpected)}. " : "") +
                "Pass strict: false to load the keys that match.");
        using var _ = Autograd.Autograd.NoGrad();
        foreach (var (key, target) in own)
        {
            if (!state.TryGetValue(key, out var source)) continue;
            if (!source.Shape.SequenceEqual(target.Shape))
            {
                if (adoptShapes)
                {
                    target.SetData(source.AsType(target.DType).Detach().To(target.Device).Clone());
                    continue;
                }
                throw new ArgumentException($"LoadStateDict: '{key}' has shape {Tensor.FormatShape(source.Shape)} in the state dict but {Tensor.FormatShape(target.Shape)} in the model.");
            }
            target.Detach().CopyFrom(source.AsType(target.DType));
        }
    }

    /// <summary>A one-line description of this module's configuration (shown by <see cref="ToString"/>).</summary>
    public virtual string ExtraRepr() => "";

    /// <summary>A PyTorch-style tree of the module and its children.</summary>
    public override string ToString()
    {
        var children = NamedChildren().ToList();
        var head = GetType().Name + "(" + ExtraRepr();
        if (children.Count == 0) return head + ")";
        var lines = children.Select(c => "  (" + c.Name + "): " + c.Module.ToString().Replace("\n", "\n  "));
        return head + "\n" + string.Join("\n", lines) + "\n)";
    }
}
