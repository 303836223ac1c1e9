namespace NeuralCore.Autograd;

/// <summary>
/// Graph recording state (grad mode, tracing, the module stack) and the backward pass.
/// </summary>
public static class Autograd
{
    [ThreadStatic] private static int _noGradDepth;
    [ThreadStatic] private static int _traceDepth;
    [ThreadStatic] private static List<NN.Module>? _moduleStack;
    private static long _sequence;

    /// <summary>True unless inside a <see cref="NoGrad"/> scope.</summary>
    public static bool IsGradEnabled => _noGradDepth == 0;

    /// <summary>True inside a <see cref="Trace"/> scope: every op is recorded, even without gradients.</summary>
    public static bool IsTracing => _traceDepth > 0;

    /// <summary>Disables graph recording until disposed (inference, optimizer steps). Nested scopes are fine.</summary>
    /// <remarks>A struct, so that entering it allocates nothing (optimizers and batch-norm counters enter one per step).</remarks>
    public static NoGradScope NoGrad() { _noGradDepth++; return new NoGradScope(_noGradDepth); }

    /// <summary>The scope <see cref="NoGrad"/> returns: disposing it turns recording back on (once; a second dispose does nothing).</summary>
    public readonly struct NoGradScope : IDisposable
    {
        private readonly int _depth;

        internal NoGradScope(int depth) => _depth = depth;

        /// <summary>Leaves the scope.</summary>
        public void Dispose()
        {
            if (_depth > 0 && _noGradDepth == _depth) _noGradDepth--;
        }
    }

    /// <summary>Records every op (also those on tensors without gradients) until disposed, so a forward pass can be traced by the pruner or an exporter.</summary>
    public static IDisposable Trace() { _traceDepth++; return new Scope(() => _traceDepth--); }

    internal static IDisposable EnterModule(NN.Module module)
    {
        (_moduleStack ??= []).Add(module);
        return new Scope(() => _moduleStack!.RemoveAt(_moduleStack.Count - 1));
    }

    /// <summary>The innermost module currently running, if any.</summary>
    public static NN.Module? CurrentModule => _moduleStack is { Count: > 0 } s ? s[^1] : null;

    /// <summary>
    /// Attaches a graph node to <paramref name="output"/> when grad mode is on and an input requires grad
    /// (or when tracing). Returns <paramref name="output"/>.
    /// </summary>
    public static Tensor Record(Tensor output, OpKind kind, Tensor[] inputs, BackwardFunction? backward,
        IReadOnlyDictionary<string, object>? attributes) =>
        Record(output, kind, inputs, backward, attributes, null);

    /// <summary>
    /// <see cref="Record(Tensor, OpKind, Tensor[], BackwardFunction?, IReadOnlyDictionary{string, object}?)"/> with the
    /// attributes built by <paramref name="attributes"/> when a reader (a tracer) first asks for them.
    /// </summary>
    internal static Tensor Record(Tensor output, OpKind kind, Tensor[] inputs, BackwardFunction? backward,
        Func<IReadOnlyDictionary<string, object>>? attributes = null) =>
        Record(output, kind, inputs, backward, null, attributes);

    private static Tensor Record(Tensor output, OpKind kind, Tensor[] inputs, BackwardFunction? backward,
        IReadOnlyDictionary<string, object>? attributes, Func<IReadOnlyDictionary<string, object>>? attributeFactory)
    {
        // NOTE: ops without a backward rule (comparisons) are constants to autograd, as in PyTorch: their
        // output must not claim RequiresGrad, or a later Backward() would reach a node it cannot run.
        var needsGrad = false;
        if (_noGradDepth == 0 && backward is not null)
            foreach (var t in inputs)
                if (t.RequiresGrad) { needsGrad = true; break; }
        if (!needsGrad && _traceDepth == 0) return output;
        output.GradFn = new Node(kind, inputs, output, needsGrad ? backward : null, attributes, attributeFactory, CurrentModule,
            Interlocked.Increment(ref _sequence));
        OpProfiler.Current?.Charge(false, output.GradFn);
        output.SetRequiresGradInternal(needsGrad);
        return output;
    }

    /// <summary>Every recorded node that <paramref name="output"/> depends on, its own included, in recording order (empty for a leaf).</summary>
    internal static List<Node> NodesBehind(Tensor output)
    {
        if (output.GradFn is null) return [];
        var seen = new HashSet<Node>(ReferenceEqualityComparer.Instance) { output.GradFn };
        var stack = new Stack<Node>();
        stack.Push(output.GradFn);
        while (stack.Count > 0)
            foreach (var t in stack.Pop().Inputs)
                if (t.GradFn is { } f && seen.Add(f)) stack.Push(f);
        var list = seen.ToList();
        list.Sort((a, b) => a.Sequence.CompareTo(b.Sequence));
        return list;
    }

    /// <summary>
    /// Back-propagates <paramref name="gradient"/> (ones for a scalar root when null) from <paramref name="root"/>,
    /// accumulating into the <see cref="Tensor.Grad"/> of every leaf that requires grad.
    /// </summary>
    public static void Backward(Tensor root, Tensor? gradient = null, bool retainGraph = false)
    {
        if (!root.RequiresGrad)
            throw new InvalidOperationException("Backward() was called on a tensor that does not require grad: no parameter or input with RequiresGrad = true reached it (or it was computed inside NoGrad()).");
        if (gradient is null)
        {
            if (root.NumElements != 1)
                throw new InvalidOperationException($"Backward() without a gradient needs a scalar; this tensor has shape {Tensor.FormatShape(root.Shape)}. Pass a gradient of the same shape.");
            gradient = Tensor.FullOutput(root.ShapeArray(), 1, root.Device);
        }
        else if (!gradient.Shape.SequenceEqual(root.Shape))
            throw new ArgumentException($"The gradient's shape {Tensor.FormatShape(gradient.Shape)} differs from the tensor's {Tensor.FormatShape(root.Shape)}.", nameof(gradient));

        _noGradDepth++;
        // The traversal's collections are kept per thread and reused (cleared after each pass), so a training step's
        // backward does not allocate them anew; a backward started inside another (a hook) gets its own.
        var state = _backwardState ?? new BackwardState();
        _backwardState = null;
        try
        {
            if (root.GradFn is null) { Accumulate(root, gradient); return; }
            Run(root, gradient, retainGraph, state);
        }
        finally
        {
            state.Clear();
            _backwardState = state;
            _noGradDepth--;
        }
    }

    private static void Run(Tensor root, Tensor gradient, bool retainGraph, BackwardState state)
    {
        // Nodes in reverse recording order: each node's output gradient is complete before it runs.
        var (order, seen, stack, grads) = (state.Order, state.Seen, state.Stack, state.Grads);
        stack.Push(root.GradFn!);
        seen.Add(root.GradFn!);
        while (stack.Count > 0)
        {
            var node = stack.Pop();
            order.Add(node);
            foreach (var input in node.Inputs)
                if (input.GradFn is { } f && input.RequiresGrad && seen.Add(f)) stack.Push(f);
        }
        order.Sort(static (a, b) => b.Sequence.CompareTo(a.Sequence));

        grads[root.GradFn!] = gradient;
        var profiler = OpProfiler.Current;
        foreach (var node in order)
        {
            if (!grads.Remove(node, out var gOut)) continue;
            profiler?.Mark();
            var gIn = node.RunBackward(gOut);
            for (var i = 0; i < node.Inputs.Count; i++)
            {
                var input = node.Inputs[i];
                var g = i < gIn.Length ? gIn[i] : null;
                if (g is null || !input.RequiresGrad) continue;
                if (!g.Shape.SequenceEqual(input.Shape))
                    throw new InvalidOperationException($"Internal error: the backward of {node.Kind} produced a gradient of shape {Tensor.FormatShape(g.Shape)} for an input of shape {Tensor.FormatShape(input.Shape)}.");
                if (input.GradFn is null) Accumulate(input, g);
                else if (grads.TryGetValue(input.GradFn, out var acc)) grads[input.GradFn] = acc.Add(g);
                else grads[input.GradFn] = g;
            }
            profiler?.Charge(true, node);
            if (!retainGraph) node.Release();
        }
    }

    [ThreadStatic] private static BackwardState? _backwardState;

    /// <summary>The collections of one backward pass, reused by the next on the same thread.</summary>
    private sealed class BackwardState
    {
        public readonly List<Node> Order = [];
        public readonly HashSet<Node> Seen = new(ReferenceEqualityComparer.Instance);
        public readonly Stack<Node> Stack = new();
        public readonly Dictionary<Node, Tensor> Grads = new(ReferenceEqualityComparer.Instance);

        /// <summary>Drops every reference (nodes and gradients must not outlive the pass), keeping the capacity.</summary>
        public void Clear()
        {
            Order.Clear();
            Seen.Clear();
            Stack.Clear();
            Grads.Clear();
        }
    }

    private static void Accumulate(Tensor leaf, Tensor g)
    {
        // NOTE: a backward rule may hand the same tensor to several inputs (Add does), so a leaf's
        // gradient is always its own copy before anything accumulates into it in place.
        if (leaf.Grad is null) leaf.Grad = g.Clone();
        else leaf.Grad.AddInPlace(g);
    }

    private sealed class Scope(Action onDispose) : IDisposable
    {
        private Action? _onDispose = onDispose;
        public void Dispose() { _onDispose?.Invoke(); _onDispose = null; }
    }
}
