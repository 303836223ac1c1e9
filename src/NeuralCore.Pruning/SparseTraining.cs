using NeuralCore.NN;

namespace NeuralCore.Pruning;

/// <summary>
/// Sparsity penalties added to the gradients between Backward() and the optimizer step, so that a sparse-training
/// phase pushes whole channels towards zero before pruning.
/// </summary>
public interface ISparsityRegularizer
{
    /// <summary>Adds the penalty's gradient to the parameters' gradients.</summary>
    void Apply();
}

/// <summary>
/// BN-scale pruner's penalty (network slimming): lambda * |gamma| on every batch-norm scale in a prunable group,
/// i.e. gamma.grad += lambda * sign(gamma).
/// </summary>
public sealed class BnScaleRegularizer : ISparsityRegularizer
{
    private readonly List<Parameter> _gammas;
    private readonly float _lambda;

    /// <summary>Penalises the batch-norm scales of <paramref name="graph"/>'s groups with strength <paramref name="lambda"/>.</summary>
    public BnScaleRegularizer(DependencyGraph graph, float lambda = 1e-5f)
    {
        _lambda = lambda;
        _gammas = graph.Groups.SelectMany(g => g.Members).Where(m => m.IsScored && m.Tensor.Rank == 1)
            .Select(m => (Parameter)m.Tensor).Distinct().ToList();
    }

    /// <inheritdoc />
    public void Apply()
    {
        using var _ = Autograd.Autograd.NoGrad();
        foreach (var g in _gammas)
        {
            if (g.Grad is null) continue;
            g.Grad.AddInPlace(g.Detach().Sign(), _lambda);
        }
    }
}

/// <summary>
/// Group-norm pruner's penalty (group lasso): lambda * sum over channels of the L2 norm of all the channel's slices
/// in its group, whose gradient lambda * w / ||channel|| shrinks weak channels as a whole.
/// </summary>
public sealed class GroupLassoRegularizer : ISparsityRegularizer
{
    private readonly DependencyGraph _graph;
    private readonly float _lambda;

    /// <summary>Penalises every channel of <paramref name="graph"/>'s groups with strength <paramref name="lambda"/>.</summary>
    public GroupLassoRegularizer(DependencyGraph graph, float lambda = 1e-4f)
    {
        _graph = graph;
        _lambda = lambda;
    }

    /// <inheritdoc />
    public void Apply()
    {
        using var _ = Autograd.Autograd.NoGrad();
        foreach (var group in _graph.Groups)
        {
            var members = group.Members.Select((m, i) => (m, i)).Where(p => p.m.IsScored && p.m.Tensor.Grad is not null).ToList();
            if (members.Count == 0) continue;
            var data = members.ToDictionary(p => p.i, p => p.m.Tensor.ToArray());
            var grads = members.ToDictionary(p => p.i, p => p.m.Tensor.Grad!.ToArray());
            foreach (var unit in group.Units)
            {
                double sq = 0;
                foreach (var (m, i) in members)
                    if (unit.Indices.TryGetValue(i, out var idx)) ForSlice(m, idx, e => sq += (double)data[i][e] * data[i][e]);
                var norm = Math.Sqrt(sq) + 1e-8;
                foreach (var (m, i) in members)
                    if (unit.Indices.TryGetValue(i, out var idx)) ForSlice(m, idx, e => grads[i][e] += (float)(_lambda * data[i][e] / norm));
            }
            foreach (var (m, i) in members) m.Tensor.Grad!.CopyFrom(Tensor.FromArray(grads[i], m.Tensor.ShapeArray()));
        }
    }

    private static void ForSlice(GroupMember m, IReadOnlyList<int> indices, Action<int> body)
    {
        var shape = m.Tensor.ShapeArray();
        var inner = 1;
        for (var d = m.Dim + 1; d < shape.Length; d++) inner *= shape[d];
        var size = shape[m.Dim];
        var outer = m.Tensor.NumElements / (size * inner);
        foreach (var idx in indices)
            for (var o = 0; o < outer; o++)
                for (var i = 0; i < inner; i++) body((o * size + idx) * inner + i);
    }
}
