using NeuralCore.Autograd;
using NeuralCore.NN;

namespace NeuralCore.Pruning;

/// <summary>
/// The channel dependencies of a model, found by tracing one forward pass: which slices of which
/// parameters and buffers must be removed together. Nothing here knows any architecture; every
/// coupling comes from the recorded ops (see <see cref="Couple"/> for the rule of each op kind).
/// </summary>
/// <remarks>
/// Every dimension of every traced tensor is a <em>space</em> of indices. Ops couple individual indices
/// (a conv couples its weight's row k with channel k of its output; an add couples channel c of both
/// operands and of the result; a flatten couples channel c with its H*W features). Two union-finds
/// follow the ops: one over indices (which indices fall together: a <see cref="PruningUnit"/>) and one
/// over spaces (which dimensions share channels: a <see cref="PruningGroup"/>). A group can be pruned
/// when it holds at least one parameter dimension and touches nothing that cannot be sliced: the model's
/// input or output, a constant created inside Forward, or an op the tracer does not understand.
/// </remarks>
public sealed class DependencyGraph
{
    private readonly List<Space> _spaces = [];
    private readonly Dictionary<(Tensor, int), Space> _spaceOf = new();
    private readonly UnionFind _elements = new();
    private readonly UnionFind _spaceSets = new();
    private readonly HashSet<int> _blockedSpaces = [];
    private readonly Dictionary<Tensor, string> _sliceable = new(ReferenceEqualityComparer.Instance);
    private readonly HashSet<Tensor> _bnGammas = new(ReferenceEqualityComparer.Instance);
    private readonly List<Node> _nodes;

    /// <summary>The traced model.</summary>
    public Module Model { get; }

    /// <summary>The groups of coupled channels that can be pruned, in the order their first producer ran.</summary>
    public IReadOnlyList<PruningGroup> Groups { get; }

    /// <summary>The recorded ops of the traced forward pass in execution order.</summary>
    public IReadOnlyList<Node> Nodes => _nodes;

    /// <summary>
    /// Names of the modules whose output channels are never pruned, with everything inside them (a block's name keeps
    /// every layer of the block; a batch norm's keeps the channels it normalises), as Torch-Pruning's ignored layers.
    /// </summary>
    public IReadOnlySet<string> IgnoredModules { get; }

    /// <summary>
    /// Traces <paramref name="model"/> on <paramref name="exampleInput"/> (copied to the device of the model's weights
    /// where it lies elsewhere; eval mode, no gradients; the model's mode is restored) and builds the groups. Output channels of modules named in <paramref name="ignoredModules"/>
    /// are kept (their input channels still follow their producers). The model's own output is never pruned.
    /// </summary>
    public static DependencyGraph Build(Module model, Tensor exampleInput, IEnumerable<string>? ignoredModules = null)
    {
        // The example goes where the weights are: a model fine-tuned on a GPU between two pruning steps is traced there.
        if (model.Parameters().FirstOrDefault()?.Device is { } device && exampleInput.Device != device) exampleInput = exampleInput.To(device);
        var wasTraining = model.Training;
        model.Eval();
        Tensor output;
        try
        {
            using (Autograd.Autograd.NoGrad())
            using (Autograd.Autograd.Trace())
                output = model.Call(exampleInput);
        }
        finally { model.Train(wasTraining); }
        return new DependencyGraph(model, exampleInput, output, new HashSet<string>(ignoredModules ?? []));
    }

    private DependencyGraph(Module model, Tensor input, Tensor output, HashSet<string> ignored)
    {
        Model = model;
        IgnoredModules = ignored;
        var knownModules = model.NamedModules().Select(m => m.Name).ToHashSet();
        var parameterModules = model.NamedParameters().Select(p => ModuleName(p.Name)).ToList();
        foreach (var name in ignored)
        {
            if (!knownModules.Contains(name))
                throw new ArgumentException($"Ignored layer '{name}' is not a module of this model. Known modules: {string.Join(", ", knownModules.Where(n => n.Length > 0).Take(40))}.");
            if (!parameterModules.Any(module => Within(module, name)))
                throw new ArgumentException($"Ignored layer '{name}' holds no weights (an activation or a pool: its channels are its input's); " +
                                            "name the convolution, linear layer or batch norm whose output channels to keep, or a block that holds them.");
        }
        foreach (var (name, p) in model.NamedParameters()) _sliceable[p] = name;
        foreach (var (name, b) in model.NamedBuffers()) _sliceable[b] = name;

        _nodes = CollectNodes(output);
        foreach (var node in _nodes) Couple(node);

        // The model's input and output, and leaves that are neither parameters nor buffers, cannot be sliced.
        BlockAll(input);
        BlockAll(output);
        foreach (var node in _nodes)
            foreach (var t in node.Inputs)
                if (t.GradFn is null && !_sliceable.ContainsKey(t)) BlockAll(t);

        Groups = BuildGroups();
    }

    private static List<Node> CollectNodes(Tensor output)
    {
        var seen = new HashSet<Node>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<Node>();
        if (output.GradFn is null)
            throw new InvalidOperationException("Tracing recorded no ops: the model's Forward produced its output without any recorded op.");
        stack.Push(output.GradFn);
        seen.Add(output.GradFn);
        while (stack.Count > 0)
        {
            var n = stack.Pop();
            foreach (var t in n.Inputs)
                if (t.GradFn is { } f && seen.Add(f)) stack.Push(f);
        }
        return seen.OrderBy(n => n.Sequence).ToList();
    }

    // ---- spaces and coupling ----------------------------------------------------------------------

    private Space SpaceOf(Tensor t, int dim)
    {
        if (_spaceOf.TryGetValue((t, dim), out var s)) return s;
        s = new Space(_spaces.Count, t, dim, t.Size(dim), _elements.Add(t.Size(dim)));
        _spaceSets.Add(1);
        _spaces.Add(s);
        _spaceOf[(t, dim)] = s;
        return s;
    }

    private void Link(Tensor a, int dimA, int indexA, Tensor b, int dimB, int indexB)
    {
        var sa = SpaceOf(a, dimA);
        var sb = SpaceOf(b, dimB);
        _elements.Union(sa.First + indexA, sb.First + indexB);
        _spaceSets.Union(sa.Id, sb.Id);
    }

    private void LinkDim(Tensor a, int dimA, Tensor b, int dimB)
    {
        var n = a.Size(dimA);
        if (b.Size(dimB) != n) { Block(a, dimA); Block(b, dimB); return; }
        for (var i = 0; i < n; i++) Link(a, dimA, i, b, dimB, i);
    }

    private void PassThrough(Tensor x, Tensor y)
    {
        if (x.Rank != y.Rank) { BlockAll(x); BlockAll(y); return; }
        for (var d = 0; d < y.Rank; d++) LinkDim(x, d, y, d);
    }

    private void Block(Tensor t, int dim) => _blockedSpaces.Add(SpaceOf(t, dim).Id);

    private void BlockAll(Tensor t)
    {
        for (var d = 0; d < t.Rank; d++) Block(t, d);
    }

    /// <summary>Adds the index couplings one recorded op implies.</summary>
    private void Couple(Node node)
    {
        var y = node.Output;
        var inputs = node.Inputs;
        switch (node.Kind)
        {
            case OpKind.Copy or OpKind.ToDevice or OpKind.Unary or OpKind.Dropout
                or OpKind.Softmax or OpKind.LogSoftmax:
                PassThrough(inputs[0], y);
                break;
            case OpKind.MaxPool2d or OpKind.AvgPool2d or OpKind.AdaptiveAvgPool2d:
                LinkDim(inputs[0], 0, y, 0);
                LinkDim(inputs[0], 1, y, 1);
                break;
            case OpKind.Binary:
                foreach (var t in inputs) Broadcast(t, y);
                break;
            case OpKind.Expand:
                Broadcast(inputs[0], y);
                break;
            case OpKind.Permute:
                var dims = (int[])node.Attributes["dims"];
                for (var i = 0; i < dims.Length; i++) LinkDim(inputs[0], dims[i], y, i);
                break;
            case OpKind.Reduce:
                {
                    var reduced = (int[])node.Attributes["dims"];
                    var keep = (bool)node.Attributes["keepdim"];
                    var o = 0;
                    for (var d = 0; d < inputs[0].Rank; d++)
                    {
                        if (Array.IndexOf(reduced, d) >= 0) { if (keep) o++; continue; }
                        LinkDim(inputs[0], d, y, o++);
                    }
                    break;
                }
            case OpKind.Reshape:
                Reshape(inputs[0], y);
                break;
            case OpKind.Narrow:
                {
                    int nd = (int)node.Attributes["dim"], start = (int)node.Attributes["start"];
                    for (var d = 0; d < y.Rank; d++)
                    {
                        if (d != nd) { LinkDim(inputs[0], d, y, d); continue; }
                        for (var j = 0; j < y.Size(d); j++) Link(inputs[0], d, start + j, y, d, j);
                    }
                    break;
                }
            case OpKind.Concat:
                {
                    var cd = (int)node.Attributes["dim"];
                    var offset = 0;
                    foreach (var t in inputs)
                    {
                        for (var d = 0; d < y.Rank; d++)
                        {
                            if (d != cd) { LinkDim(t, d, y, d); continue; }
                            for (var j = 0; j < t.Size(d); j++) Link(t, d, j, y, d, offset + j);
                        }
                        offset += t.Size(cd);
                    }
                    break;
                }
            case OpKind.MatMul:
                MatMul(inputs[0], inputs[1], y);
                break;
            case OpKind.Conv2d:
                Conv(node);
                break;
            case OpKind.BatchNorm2d:
                PassThrough(inputs[0], y);
                _bnGammas.Add(inputs[1]);
                LinkDim(inputs[1], 0, y, 1);
                LinkDim(inputs[2], 0, y, 1);
                foreach (var key in new[] { "running_mean", "running_var" })
                    if (node.Attributes.TryGetValue(key, out var stat) && stat is Tensor s) LinkDim(s, 0, y, 1);
                break;
            default:
                // IndexSelect, NllLoss and anything new: indices cannot be followed, so nothing they touch is pruned.
                foreach (var t in inputs) BlockAll(t);
                BlockAll(y);
                break;
        }
    }

    private void Broadcast(Tensor x, Tensor y)
    {
        var lead = y.Rank - x.Rank;
        for (var d = 0; d < x.Rank; d++)
        {
            if (x.Size(d) == y.Size(d + lead)) LinkDim(x, d, y, d + lead);
            else Block(x, d);   // a size-1 dimension broadcast over channels cannot follow them
        }
    }

    private void Reshape(Tensor x, Tensor y)
    {
        // Dimensions shared at the front pass through; after them, index i of x's next dimension and index j
        // of y's next dimension are coupled when one element lies in both (flatten: channel c <-> its H*W features).
        var p = 0;
        while (p < x.Rank && p < y.Rank && x.Size(p) == y.Size(p)) { LinkDim(x, p, y, p); p++; }
        if (p >= x.Rank || p >= y.Rank) return;
        long innerX = 1, innerY = 1;
        for (var d = p + 1; d < x.Rank; d++) innerX *= x.Size(d);
        for (var d = p + 1; d < y.Rank; d++) innerY *= y.Size(d);
        for (var j = 0; j < y.Size(p); j++)
        {
            var first = j * innerY / innerX;
            var last = ((j + 1) * innerY - 1) / innerX;
            for (var i = first; i <= last; i++) Link(x, p, (int)i, y, p, j);
        }
        for (var d = p + 1; d < x.Rank; d++) Block(x, d);
        for (var d = p + 1; d < y.Rank; d++) Block(y, d);
    }

    private void MatMul(Tensor a, Tensor b, Tensor y)
    {
        if (a.Rank < 2 || b.Rank < 2) { BlockAll(a); BlockAll(b); BlockAll(y); return; }
        LinkDim(a, a.Rank - 1, b, b.Rank - 2);
        LinkDim(a, a.Rank - 2, y, y.Rank - 2);
        LinkDim(b, b.Rank - 1, y, y.Rank - 1);
        for (var d = 0; d < a.Rank - 2; d++) if (a.Size(d) == y.Size(d + y.Rank - a.Rank)) LinkDim(a, d, y, d + y.Rank - a.Rank);
        for (var d = 0; d < b.Rank - 2; d++) if (b.Size(d) == y.Size(d + y.Rank - b.Rank)) LinkDim(b, d, y, d + y.Rank - b.Rank);
    }

    private void Conv(Node node)
    {
        var x = node.Inputs[0];
        var w = node.Inputs[1];
        var y = node.Output;
        var groups = (int)node.Attributes["groups"];
        LinkDim(x, 0, y, 0);
        LinkDim(w, 0, y, 1);
        if (node.Inputs.Count > 2) LinkDim(node.Inputs[2], 0, y, 1);
        int c = x.Size(1), k = y.Size(1), cPerGroup = c / groups, kPerGroup = k / groups;
        if (groups == 1) { LinkDim(x, 1, w, 1); return; }
        if (cPerGroup == 1)
        {
            // Depthwise (with multiplier K/C): input channel g feeds exactly output channels of group g.
            for (var g = 0; g < groups; g++)
                for (var j = 0; j < kPerGroup; j++) Link(x, 1, g, y, 1, g * kPerGroup + j);
            Block(w, 1);
            return;
        }
        // General groups: the weight's input index is the position within a group, shared by all groups, so
        // input channels at the same position fall together; output channels likewise, keeping groups equal.
        for (var ch = 0; ch < c; ch++) Link(x, 1, ch, w, 1, ch % cPerGroup);
        for (var ch = kPerGroup; ch < k; ch++) Link(y, 1, ch, y, 1, ch % kPerGroup);
    }

    // ---- groups -----------------------------------------------------------------------------------

    private List<PruningGroup> BuildGroups()
    {
        // Registration order of the parameters names each group after its first producer and orders the groups.
        var order = Model.NamedParameters().Select((p, i) => (p.Name, i)).ToDictionary(p => p.Name, p => p.i);
        var bySet = new Dictionary<int, List<Space>>();
        foreach (var s in _spaces)
        {
            var root = _spaceSets.Find(s.Id);
            if (!bySet.TryGetValue(root, out var list)) bySet[root] = list = [];
            list.Add(s);
        }
        var found = new List<(string Producer, List<GroupMember> Members, List<PruningUnit> Units)>();
        foreach (var spaces in bySet.Values)
        {
            if (spaces.Any(s => _blockedSpaces.Contains(s.Id))) continue;
            var members = spaces.Where(s => _sliceable.ContainsKey(s.Tensor)).ToList();
            if (!members.Any(s => s.Tensor is Parameter)) continue;
            // The producer: the first-registered parameter whose dimension 0 is in the group (a conv/linear weight row).
            var producers = members.Where(s => s.Dim == 0 && s.Tensor is Parameter && s.Tensor.Rank >= 2).ToList();
            if (producers.Count == 0) continue;
            // An ignored module keeps its output channels: a group whose output side (dimension 0: a producer's rows, a
            // batch norm's parameters and statistics, a bias) lies in one is left whole. Its input channels follow their
            // producers (a consumer's dimension 1).
            if (IgnoredModules.Any(name => members.Any(m => m.Dim == 0 && Within(ModuleName(_sliceable[m.Tensor]), name)))) continue;

            var unitIds = new Dictionary<int, int>();
            var unitIndices = new List<Dictionary<int, List<int>>>();
            foreach (var m in members)
                for (var i = 0; i < m.Size; i++)
                {
                    var root = _elements.Find(m.First + i);
                    if (!unitIds.TryGetValue(root, out var u)) { unitIds[root] = u = unitIndices.Count; unitIndices.Add([]); }
                    if (!unitIndices[u].TryGetValue(m.Id, out var l)) unitIndices[u][m.Id] = l = [];
                    l.Add(i);
                }
            var memberList = members.Select(m => new GroupMember(_sliceable[m.Tensor], m.Tensor, m.Dim, m.Tensor is Parameter,
                IsScored(m))).ToList();
            var memberIndex = members.Select((m, i) => (m.Id, i)).ToDictionary(p => p.Id, p => p.i);
            var units = unitIndices.Select((u, id) => new PruningUnit(id,
                u.ToDictionary(kv => memberIndex[kv.Key], kv => (IReadOnlyList<int>)kv.Value))).ToList();
            var producerName = producers.Select(p => _sliceable[p.Tensor]).OrderBy(n => order.GetValueOrDefault(n, int.MaxValue)).First();
            found.Add((producerName, memberList, units));
        }
        // A group is named after its producing module; where one module produces several groups (two weights of its
        // own), each is named after its producing weight instead, so names stay unique.
        var shared = found.GroupBy(f => ModuleName(f.Producer)).Where(g => g.Count() > 1).Select(g => g.Key).ToHashSet();
        var groups = found.Select(f => new PruningGroup(shared.Contains(ModuleName(f.Producer)) ? f.Producer : ModuleName(f.Producer), f.Members, f.Units));
        return groups.OrderBy(g => g.Members.Where(m => m.IsParameter).Min(m => order.GetValueOrDefault(m.Name, int.MaxValue))).ToList();
    }

    /// <summary>Whether module <paramref name="module"/> is <paramref name="container"/> or lies inside it.</summary>
    private static bool Within(string module, string container) =>
        module == container || module.StartsWith(container + ".", StringComparison.Ordinal);

    /// <summary>Weights (rank ≥ 2) and batch-norm scales count towards magnitude importance; biases and shifts do not (Torch-Pruning's default).</summary>
    private bool IsScored(Space s) => s.Tensor is Parameter && (s.Tensor.Rank >= 2 || _bnGammas.Contains(s.Tensor));

    private static string ModuleName(string parameterName)
    {
        var dot = parameterName.LastIndexOf('.');
        return dot < 0 ? "" : parameterName[..dot];
    }

    /// <summary>A readable listing of the groups: producer, width, and each member with its dimension.</summary>
    public string Describe()
    {
        var sb = new System.Text.StringBuilder();
        for (var i = 0; i < Groups.Count; i++)
        {
            var g = Groups[i];
            sb.AppendLine($"group {i}: {g.Name}  width {g.Width}");
            foreach (var m in g.Members)
                sb.AppendLine($"  {m.Name}[dim {m.Dim}] {Tensor.FormatShape(m.Tensor.Shape)}{(m.IsParameter ? "" : " (buffer)")}");
        }
        return sb.ToString();
    }

    private sealed record Space(int Id, Tensor Tensor, int Dim, int Size, int First);

    private sealed class UnionFind
    {
        private readonly List<int> _parent = [];

        public int Add(int count)
        {
            var first = _parent.Count;
            for (var i = 0; i < count; i++) _parent.Add(first + i);
            return first;
        }

        public int Find(int x)
        {
            while (_parent[x] != x) { _parent[x] = _parent[_parent[x]]; x = _parent[x]; }
            return x;
        }

        public void Union(int a, int b)
        {
            var ra = Find(a); var rb = Find(b);
            if (ra != rb) _parent[Math.Max(ra, rb)] = Math.Min(ra, rb);
        }
    }
}
