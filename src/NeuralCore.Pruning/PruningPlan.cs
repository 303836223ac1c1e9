namespace NeuralCore.Pruning;

/// <summary>The channels one pruning step removes from each group (unit ids of the group as traced).</summary>
/// <param name="Ratio">The ratio the plan was made for.</param>
/// <param name="Removals">Unit ids to remove per group (groups that lose nothing are absent).</param>
public sealed record PruningPlan(double Ratio, IReadOnlyDictionary<PruningGroup, IReadOnlyList<int>> Removals)
{
    /// <summary>For each sliced (tensor, dim), the indices the plan removes.</summary>
    public Dictionary<(Tensor Tensor, int Dim), SortedSet<int>> RemovedIndices()
    {
        var result = new Dictionary<(Tensor, int), SortedSet<int>>();
        foreach (var (group, units) in Removals)
            foreach (var u in units)
                foreach (var (mi, idx) in group.Units[u].Indices)
                {
                    var m = group.Members[mi];
                    if (!result.TryGetValue((m.Tensor, m.Dim), out var set)) result[(m.Tensor, m.Dim)] = set = [];
                    foreach (var i in idx) set.Add(i);
                }
        return result;
    }
}

/// <summary>Width of one group before and after a pruning step.</summary>
/// <param name="Name">The group's producing module.</param>
/// <param name="InitialWidth">Width when the pruner was created.</param>
/// <param name="WidthBefore">Width before this step.</param>
/// <param name="WidthAfter">Width after this step.</param>
public sealed record GroupWidth(string Name, int InitialWidth, int WidthBefore, int WidthAfter);

/// <summary>What a pruning step did.</summary>
/// <param name="Step">1-based step number.</param>
/// <param name="Ratio">The ratio of this step.</param>
/// <param name="ParametersBefore">Parameter count before.</param>
/// <param name="ParametersAfter">Parameter count after.</param>
/// <param name="MacsBefore">Conv and linear MACs per sample before.</param>
/// <param name="MacsAfter">Conv and linear MACs per sample after.</param>
/// <param name="Groups">Per-group widths.</param>
public sealed record PruningStepResult(int Step, double Ratio, long ParametersBefore, long ParametersAfter, long MacsBefore, long MacsAfter, IReadOnlyList<GroupWidth> Groups);
