using NeuralCore.Autograd;
using NeuralCore.NN;
using NeuralCore.Optim;

namespace NeuralCore.Pruning;

/// <summary>Settings of a <see cref="Pruner"/> (Torch-Pruning's semantics; see docs/pruning.md).</summary>
public sealed record PrunerOptions
{
    /// <summary>How channels are scored.</summary>
    public Importance Importance { get; init; } = new();

    /// <summary>The final pruning ratio: each group keeps <c>(int)(C0 * (1.0 - ratio))</c> of its initial width C0.</summary>
    public double Ratio { get; init; } = 0.5;

    /// <summary>Number of steps to reach <see cref="Ratio"/> (ratios r/K, 2r/K, ..., r).</summary>
    public int IterativeSteps { get; init; } = 1;

    /// <summary>Rank all groups' channels together instead of applying the ratio to each group.</summary>
    public bool Global { get; init; }

    /// <summary>Ratios in [0, 1) for particular groups, by group name (the first producing layer's; local pruning): each replaces <see cref="Ratio"/> for its group and follows the same step schedule.</summary>
    public IReadOnlyDictionary<string, double> LayerRatios { get; init; } = new Dictionary<string, double>();

    /// <summary>No group loses more than this fraction of its initial width.</summary>
    public double MaxRatio { get; init; } = 1.0;

    /// <summary>When positive, kept widths are rounded down to a multiple of this.</summary>
    public int RoundTo { get; init; }

    /// <summary>Modules whose output channels are kept (the model's output layer is always kept).</summary>
    public IReadOnlyList<string> IgnoredLayers { get; init; } = [];

    /// <summary>
    /// Initial group widths by group name, when the model given to the pruner has already been pruned by earlier
    /// steps (resuming an interrupted iterative run); null takes the widths of the model as it is.
    /// </summary>
    public IReadOnlyDictionary<string, int>? InitialWidths { get; init; }

    /// <summary>Steps already taken (resuming an interrupted iterative run; 0 for a fresh one).</summary>
    public int StepsDone { get; init; }
}

/// <summary>
/// Structural pruner: traces the model, scores each group's channels, and physically removes the weakest
/// from every parameter, buffer and optimizer state in the group, step by step.
/// </summary>
/// <example>
/// <code>
/// var pruner = new Pruner(model, Tensor.Zeros([1, 1, 28, 28]), new PrunerOptions { Ratio = 0.4 });
/// var result = pruner.Step(optimizer);   // model and optimizer are now smaller
/// </code>
/// </example>
public sealed class Pruner
{
    private readonly Module _model;
    private readonly Tensor _exampleInput;
    private readonly Dictionary<string, int> _initialWidths;

    /// <summary>Creates a pruner; the initial group widths are recorded now.</summary>
    public Pruner(Module model, Tensor exampleInput, PrunerOptions options)
    {
        if (options.Ratio is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(options), options.Ratio, "The pruning ratio must lie in [0, 1).");
        if (options.IterativeSteps < 1) throw new ArgumentOutOfRangeException(nameof(options), options.IterativeSteps, "IterativeSteps must be at least 1.");
        _model = model;
        _exampleInput = exampleInput;
        Options = options;
        if (options.StepsDone < 0 || options.StepsDone > options.IterativeSteps)
            throw new ArgumentOutOfRangeException(nameof(options), options.StepsDone, $"StepsDone must lie in [0, {options.IterativeSteps}].");
        Graph = DependencyGraph.Build(model, exampleInput, options.IgnoredLayers);
        _initialWidths = Graph.Groups.ToDictionary(g => g.Name, g => options.InitialWidths?.GetValueOrDefault(g.Name, g.Width) ?? g.Width);
        foreach (var (name, layerRatio) in options.LayerRatios)
        {
            if (!_initialWidths.ContainsKey(name))
                throw new ArgumentException($"LayerRatios names '{name}', which is no group of this model; groups are named after their first producing layer: {string.Join(", ", _initialWidths.Keys.Take(40))}.", nameof(options));
            if (layerRatio is < 0 or >= 1)
                throw new ArgumentOutOfRangeException(nameof(options), layerRatio, $"The ratio of group '{name}' must lie in [0, 1).");
        }
        CurrentStep = options.StepsDone;
    }

    /// <summary>The width of every group when the pruner started (what ratios are relative to).</summary>
    public IReadOnlyDictionary<string, int> InitialWidths => _initialWidths;

    /// <summary>The settings.</summary>
    public PrunerOptions Options { get; }

    /// <summary>The dependency graph of the model as it is now (rebuilt after every step).</summary>
    public DependencyGraph Graph { get; private set; }

    /// <summary>Steps taken so far.</summary>
    public int CurrentStep { get; private set; }

    /// <summary>The ratio step <paramref name="step"/> (1-based) aims at: ratio * step / K, and the ratio itself at the last step.</summary>
    /// <remarks>ratio * K / K is not always the ratio in floating point (0.2 * 3 / 3 is 0.20000000000000004), and the kept
    /// width's floor would then differ by a channel from a one-step run's.</remarks>
    public double RatioAt(int step) => step == Options.IterativeSteps ? Options.Ratio : Options.Ratio * step / Options.IterativeSteps;

    /// <summary>
    /// Runs the next iterative step: plans at <see cref="RatioAt"/>, or at <paramref name="ratio"/> when given (a last
    /// step's ratio searched again for a budget, say), and applies it to the model and <paramref name="optimizer"/>.
    /// </summary>
    public PruningStepResult Step(Optimizer? optimizer = null, double? ratio = null)
    {
        if (CurrentStep >= Options.IterativeSteps)
            throw new InvalidOperationException($"All {Options.IterativeSteps} pruning steps are done.");
        if (ratio is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(ratio), ratio, "A step's ratio must lie in [0, 1).");
        CurrentStep++;
        ratio ??= RatioAt(CurrentStep);
        var plan = Plan(ratio.Value, (double)CurrentStep / Options.IterativeSteps);
        var before = Graph.Groups.ToDictionary(g => g.Name, g => g.Width);
        var (paramsBefore, macsBefore) = (_model.ParameterCount(), CountMacs(Graph, null));
        var (paramsAfter, macsAfter) = (CountParameters(plan), CountMacs(Graph, plan));
        Apply(plan, optimizer);
        Graph = DependencyGraph.Build(_model, _exampleInput, Options.IgnoredLayers);
        var widths = Graph.Groups.Select(g => new GroupWidth(g.Name, _initialWidths.GetValueOrDefault(g.Name, g.Width), before.GetValueOrDefault(g.Name, g.Width), g.Width)).ToList();
        return new PruningStepResult(CurrentStep, ratio.Value, paramsBefore, paramsAfter, macsBefore, macsAfter, widths);
    }

    /// <summary>Runs all remaining steps without fine-tuning in between.</summary>
    public IReadOnlyList<PruningStepResult> Run(Optimizer? optimizer = null)
    {
        var results = new List<PruningStepResult>();
        while (CurrentStep < Options.IterativeSteps) results.Add(Step(optimizer));
        return results;
    }

    /// <summary>
    /// The kept width of a group of initial width <paramref name="initial"/> at <paramref name="ratio"/> (0 = leave alone).
    /// A per-layer ratio takes the place of the ratio: <paramref name="layerFraction"/> of it, the share of the step
    /// schedule done (1 at the last step).
    /// </summary>
    private int KeptWidth(string name, int initial, double ratio, double layerFraction)
    {
        var r = ratio;
        if (Options.LayerRatios.TryGetValue(name, out var layerRatio)) r = layerRatio * layerFraction;
        r = Math.Min(r, Options.MaxRatio);
        var keep = (int)(initial * (1.0 - r));
        if (Options.RoundTo > 1) keep = keep / Options.RoundTo * Options.RoundTo;
        return keep;
    }

    /// <summary>
    /// The channels a step at <paramref name="ratio"/> would remove from the current model (nothing is changed); per-layer
    /// ratios apply in the share ratio / <see cref="PrunerOptions.Ratio"/> of them, as at the step of the schedule that
    /// reaches <paramref name="ratio"/>.
    /// </summary>
    public PruningPlan Plan(double ratio) => Plan(ratio, Options.Ratio > 0 ? Math.Min(1, ratio / Options.Ratio) : 1);

    /// <summary>The channels a step at <paramref name="ratio"/> would remove, per-layer ratios at <paramref name="layerFraction"/> of theirs.</summary>
    private PruningPlan Plan(double ratio, double layerFraction)
    {
        var removals = new Dictionary<PruningGroup, IReadOnlyList<int>>();
        var scores = Graph.Groups.ToDictionary(g => g, g => Options.Importance.Score(g));
        if (!Options.Global)
        {
            foreach (var g in Graph.Groups)
            {
                var initial = _initialWidths.GetValueOrDefault(g.Name, g.Width);
                var keep = KeptWidth(g.Name, initial, ratio, layerFraction);
                if (keep <= 0 || keep >= g.Width) continue;
                var chosenUnits = SelectRemovals(g, scores[g], g.Width - keep);
                if (chosenUnits.Length > 0) removals[g] = chosenUnits;
            }
            return new PruningPlan(ratio, removals);
        }
        // Global: the lowest-scoring channels over all groups, as many as the total kept width allows,
        // no group below its MaxRatio floor or emptied.
        var totalInitial = Graph.Groups.Sum(g => _initialWidths.GetValueOrDefault(g.Name, g.Width));
        var totalNow = Graph.Groups.Sum(g => g.Width);
        var toRemove = totalNow - (int)(totalInitial * (1.0 - ratio));
        var candidates = Graph.Groups.SelectMany((g, gi) => scores[g].Select((s, u) => (Score: s, Group: g, GroupIndex: gi, Unit: u)))
            .OrderBy(c => c.Score).ThenBy(c => c.GroupIndex).ThenBy(c => c.Unit).ToList();
        var counts = Graph.Groups.ToDictionary(g => g, _ => 0);
        foreach (var c in candidates)
        {
            if (toRemove <= 0) break;
            var initial = _initialWidths.GetValueOrDefault(c.Group.Name, c.Group.Width);
            var floor = Math.Max(1, (int)Math.Ceiling(initial * (1.0 - Options.MaxRatio)));
            if (c.Group.Width - counts[c.Group] <= floor) continue;
            counts[c.Group]++;
            toRemove--;
        }
        foreach (var (g, count) in counts)
        {
            var keep = g.Width - count;
            if (Options.RoundTo > 1) keep = keep / Options.RoundTo * Options.RoundTo;
            if (count == 0 || keep <= 0) continue;
            var chosenUnits = SelectRemovals(g, scores[g], g.Width - keep);
            if (chosenUnits.Length > 0) removals[g] = chosenUnits;
        }
        return new PruningPlan(ratio, removals);
    }

    /// <summary>
    /// The <paramref name="count"/> lowest-scoring units (ties: lower index first), skipping any whose removal would
    /// leave a member with no index at all (e.g. every channel of one branch of a concat).
    /// </summary>
    private static int[] SelectRemovals(PruningGroup group, double[] scores, int count)
    {
        var remaining = group.Members.Select(m => m.Tensor.Size(m.Dim)).ToArray();
        var chosen = new List<int>();
        foreach (var u in Enumerable.Range(0, scores.Length).OrderBy(i => scores[i]).ThenBy(i => i))
        {
            if (chosen.Count == count) break;
            var unit = group.Units[u];
            if (unit.Indices.Any(kv => remaining[kv.Key] - kv.Value.Count < 1)) continue;
            foreach (var (m, idx) in unit.Indices) remaining[m] -= idx.Count;
            chosen.Add(u);
        }
        chosen.Sort();
        return chosen.ToArray();
    }

    /// <summary>Parameter count of the model after <paramref name="plan"/>.</summary>
    public long CountParameters(PruningPlan plan)
    {
        var removed = plan.RemovedIndices();
        long total = 0;
        foreach (var p in _model.Parameters()) total += NewNumel(p, removed);
        return total;
    }

    private static long NewNumel(Tensor t, Dictionary<(Tensor, int), SortedSet<int>> removed)
    {
        long n = 1;
        for (var d = 0; d < t.Rank; d++)
            n *= t.Size(d) - (removed.TryGetValue((t, d), out var s) ? s.Count : 0);
        return n;
    }

    /// <summary>
    /// Multiply-accumulates per sample of the convolutions and linear layers (conv: weight elements x output
    /// positions; linear: weight elements x rows), after <paramref name="plan"/> when given.
    /// </summary>
    public static long CountMacs(DependencyGraph graph, PruningPlan? plan)
    {
        var removed = plan?.RemovedIndices() ?? new Dictionary<(Tensor, int), SortedSet<int>>();
        long macs = 0;
        foreach (var node in graph.Nodes)
        {
            if (node.Kind == OpKind.Conv2d)
            {
                var y = node.Output;
                macs += NewNumel(node.Inputs[1], removed) * y.Size(2) * y.Size(3);
            }
            else if (node.Kind == OpKind.MatMul)
            {
                var w = WeightBehind(node.Inputs[1]);
                if (w is not null) macs += NewNumel(w, removed) * (node.Output.NumElements / Math.Max(node.Output.Size(0), 1) / node.Output.Size(-1));
            }
        }
        return macs;
    }

    private static Tensor? WeightBehind(Tensor t)
    {
        while (true)
        {
            if (t is Parameter) return t;
            if (t.GradFn is { Kind: OpKind.Permute or OpKind.Reshape or OpKind.Copy } n) { t = n.Inputs[0]; continue; }
            return null;
        }
    }

    /// <summary>Removes the planned channels from every member tensor, its gradient, and the optimizer's state.</summary>
    public void Apply(PruningPlan plan, Optimizer? optimizer = null)
    {
        var removed = plan.RemovedIndices();
        using var _ = Autograd.Autograd.NoGrad();
        foreach (var ((tensor, dim), indices) in removed)
        {
            var keep = Enumerable.Range(0, tensor.Size(dim)).Where(i => !indices.Contains(i)).Select(i => (long)i).ToArray();
            var keepIdx = Tensor.FromArray(keep, keep.Length).To(tensor.Device);
            var oldShape = tensor.ShapeArray();
            if (optimizer is not null && tensor is Parameter p && optimizer.State.TryGetValue(p, out var state))
                foreach (var key in state.Keys.ToList())
                    if (state[key].Shape.SequenceEqual(oldShape))
                        state[key] = state[key].Detach().IndexSelect(dim, keepIdx).Clone();
            tensor.SetData(tensor.Detach().IndexSelect(dim, keepIdx).Clone());
        }
    }

    /// <summary>
    /// The smallest ratio (to 1e-4) whose pruned model has at most <paramref name="budget"/> of what
    /// <paramref name="measure"/> counts, or null when even the largest ratio does not get there. Per-layer ratios stay
    /// the groups' own (as at the last step) whatever the ratio tried.
    /// </summary>
    public double? FindRatio(long budget, Func<PruningPlan, long> measure)
    {
        PruningPlan Plan(double ratio) => this.Plan(ratio, 1);
        if (measure(Plan(0)) <= budget) return 0;
        // Above 1 - 1/C0 a group would keep nothing and is left alone, so the count stops falling: search below it.
        var smallest = _initialWidths.Count == 0 ? 1 : _initialWidths.Values.Min();
        double lo = 0, hi = Math.Max(0, 1.0 - 1.0 / smallest - 1e-9);
        if (measure(Plan(hi)) > budget) return null;
        while (hi - lo > 1e-4)
        {
            var mid = (lo + hi) / 2;
            if (measure(Plan(mid)) <= budget) hi = mid; else lo = mid;
        }
        return Math.Round(hi, 4, MidpointRounding.ToPositiveInfinity);
    }

    /// <summary>The smallest ratio whose pruned model has at most <paramref name="maxParameters"/> parameters.</summary>
    public double? FindRatioForParameters(long maxParameters) => FindRatio(maxParameters, CountParameters);

    /// <summary>The smallest ratio whose pruned model has at most <paramref name="maxMacs"/> conv/linear MACs per sample.</summary>
    public double? FindRatioForMacs(long maxMacs) => FindRatio(maxMacs, p => CountMacs(Graph, p));
}
