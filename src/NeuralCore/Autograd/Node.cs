namespace NeuralCore.Autograd;

/// <summary>Computes the gradients of an op's inputs from the gradient of its output (null where an input gets none).</summary>
public delegate Tensor?[] BackwardFunction(Tensor gradOutput);

/// <summary>
/// One recorded op in the autograd graph: what it was, what went in and came out, which module ran it,
/// and how to send the gradient back. Public so the pruner and exporters can trace a forward pass.
/// </summary>
public sealed class Node
{
    private BackwardFunction? _backward;

    private IReadOnlyDictionary<string, object>? _attributes;
    private Func<IReadOnlyDictionary<string, object>>? _attributeFactory;

    internal Node(OpKind kind, Tensor[] inputs, Tensor output, BackwardFunction? backward,
        IReadOnlyDictionary<string, object>? attributes, Func<IReadOnlyDictionary<string, object>>? attributeFactory,
        NN.Module? module, long sequence)
    {
        Kind = kind;
        Inputs = inputs;
        Output = output;
        _backward = backward;
        _attributes = attributes;
        _attributeFactory = attributeFactory;
        Module = module;
        Sequence = sequence;
    }

    private static readonly IReadOnlyDictionary<string, object> EmptyAttributes = new Dictionary<string, object>();

    /// <summary>The op.</summary>
    public OpKind Kind { get; }

    /// <summary>The input tensors, in the op's argument order.</summary>
    public IReadOnlyList<Tensor> Inputs { get; }

    /// <summary>The output tensor.</summary>
    public Tensor Output { get; }

    /// <summary>Op arguments that are not tensors (see each <see cref="OpKind"/> member).</summary>
    /// <remarks>
    /// The built-in ops build this dictionary on first access (only tracers read it), so that a training step does not
    /// allocate one per op.
    /// </remarks>
    public IReadOnlyDictionary<string, object> Attributes
    {
        get
        {
            if (_attributes is null)
            {
                _attributes = _attributeFactory?.Invoke() ?? EmptyAttributes;
                _attributeFactory = null;
            }
            return _attributes;
        }
    }

    /// <summary>The innermost module whose <see cref="NN.Module.Call"/> was running when the op was recorded.</summary>
    public NN.Module? Module { get; }

    /// <summary>A process-wide increasing number: recording order, a valid topological order of the graph.</summary>
    public long Sequence { get; }

    internal bool HasBackward => _backward is not null;

    internal Tensor?[] RunBackward(Tensor gradOutput) =>
        (_backward ?? throw new InvalidOperationException($"The graph behind this {Kind} op was already freed by an earlier Backward(); pass retainGraph: true to run backward twice."))(gradOutput);

    internal void Release() => _backward = null;

    /// <inheritdoc />
    public override string ToString() => $"{Kind}{(Module is null ? "" : " in " + Module.GetType().Name)}";
}
