namespace NeuralCore.Pruning;

/// <summary>How a channel's importance is measured.</summary>
public enum ImportanceCriterion
{
    /// <summary>Sum of |w| over the channel's slices (the seed's choice).</summary>
    L1,
    /// <summary>Sum of w^2 over the channel's slices.</summary>
    L2,
    /// <summary>|gamma| of the batch norms in the group.</summary>
    BnScale,
    /// <summary>Sum of |w * dL/dw| (first-order Taylor); needs gradients from a few batches.</summary>
    Taylor,
    /// <summary>Uniform random scores (a baseline).</summary>
    Random,
    /// <summary>LAMP: squared magnitude divided by the sum of squared magnitudes of all channels at least as large.</summary>
    Lamp,
}

/// <summary>How the per-member scores of a channel combine into one.</summary>
public enum GroupReduction
{
    /// <summary>Mean over the members that hold the channel (default).</summary>
    Mean,
    /// <summary>Sum.</summary>
    Sum,
    /// <summary>Maximum.</summary>
    Max,
    /// <summary>Product.</summary>
    Prod,
    /// <summary>The first member's score (the producer's).</summary>
    First,
}

/// <summary>How a group's channel scores are rescaled (matters for global ranking).</summary>
public enum ImportanceNormalizer
{
    /// <summary>Divide by the mean (default).</summary>
    Mean,
    /// <summary>Divide by the sum.</summary>
    Sum,
    /// <summary>Divide by the maximum.</summary>
    Max,
    /// <summary>(s - min) / (max - min).</summary>
    Standardization,
    /// <summary>(s - mean) / std.</summary>
    Gaussian,
    /// <summary>Unchanged.</summary>
    None,
}

/// <summary>Scores the channels of a group (Torch-Pruning's group importance semantics).</summary>
public sealed class Importance
{
    /// <summary>The criterion.</summary>
    public ImportanceCriterion Criterion { get; init; } = ImportanceCriterion.L1;

    /// <summary>The reduction across members.</summary>
    public GroupReduction Reduction { get; init; } = GroupReduction.Mean;

    /// <summary>The normalizer (not applied to <see cref="ImportanceCriterion.Lamp"/>, which is one itself).</summary>
    public ImportanceNormalizer Normalizer { get; init; } = ImportanceNormalizer.Mean;

    /// <summary>Generator for <see cref="ImportanceCriterion.Random"/>.</summary>
    public Generator Generator { get; init; } = new(0);

    /// <summary>One score per unit of <paramref name="group"/> (higher = more important).</summary>
    public double[] Score(PruningGroup group)
    {
        var scores = new double[group.Width];
        if (Criterion == ImportanceCriterion.Random)
        {
            for (var i = 0; i < scores.Length; i++) scores[i] = Generator.NextDouble();
            return scores;
        }
        var perMember = new List<double[]>();
        var reached = new List<bool[]>();
        for (var mi = 0; mi < group.Members.Count; mi++)
        {
            var m = group.Members[mi];
            if (!m.IsScored) continue;
            if (Criterion == ImportanceCriterion.BnScale && m.Tensor.Rank != 1) continue;
            var data = m.Tensor.ToArray();
            float[]? grad = null;
            if (Criterion == ImportanceCriterion.Taylor)
                grad = (m.Tensor.Grad ?? throw new InvalidOperationException(
                    $"Taylor importance needs gradients, but '{m.Name}' has none. Run forward and Backward() on a few batches before pruning.")).ToArray();
            var sliceSums = SliceSums(m.Tensor, m.Dim, data, grad);
            var s = new double[group.Width];
            var r = new bool[group.Width];
            foreach (var u in group.Units)
            {
                if (!u.Indices.TryGetValue(mi, out var idx)) continue;
                r[u.Id] = true;
                foreach (var i in idx) s[u.Id] += sliceSums[i];
            }
            perMember.Add(s);
            reached.Add(r);
        }
        if (perMember.Count == 0)
            throw new InvalidOperationException($"Group '{group.Name}' has no member the {Criterion} criterion can score (BN-scale needs a batch norm in the group).");
        for (var u = 0; u < scores.Length; u++)
        {
            var vals = perMember.Select((s, i) => (s[u], reached[i][u])).Where(p => p.Item2).Select(p => p.Item1).ToList();
            scores[u] = vals.Count == 0 ? 0 : Reduction switch
            {
                GroupReduction.Sum => vals.Sum(),
                GroupReduction.Max => vals.Max(),
                GroupReduction.Prod => vals.Aggregate(1.0, (a, b) => a * b),
                GroupReduction.First => vals[0],
                _ => vals.Average(),
            };
        }
        // LAMP is a normalisation of its own (Torch-Pruning's LAMPImportance takes no other): its scores are compared
        // across groups as they are.
        if (Criterion == ImportanceCriterion.Lamp) return Lamp(scores);
        return Normalize(scores, Normalizer);
    }

    /// <summary>Per index of dimension <paramref name="dim"/>: sum over the slice of |w|, w^2 or |w * g|.</summary>
    private double[] SliceSums(Tensor t, int dim, float[] data, float[]? grad)
    {
        var shape = t.ShapeArray();
        var size = shape[dim];
        var inner = 1;
        for (var d = dim + 1; d < shape.Length; d++) inner *= shape[d];
        var sums = new double[size];
        for (var e = 0; e < data.Length; e++)
        {
            var idx = e / inner % size;
            double w = data[e];
            sums[idx] += Criterion switch
            {
                ImportanceCriterion.L2 or ImportanceCriterion.Lamp => w * w,
                ImportanceCriterion.Taylor => Math.Abs(w * grad![e]),
                _ => Math.Abs(w),
            };
        }
        return sums;
    }

    private static double[] Lamp(double[] scores)
    {
        // score / sum of the scores at least as large (sorted ascending; ties ordered by index).
        var order = Enumerable.Range(0, scores.Length).OrderBy(i => scores[i]).ThenBy(i => i).ToArray();
        var result = new double[scores.Length];
        double tail = 0;
        for (var k = order.Length - 1; k >= 0; k--)
        {
            tail += scores[order[k]];
            result[order[k]] = tail > 0 ? scores[order[k]] / tail : 0;
        }
        return result;
    }

    /// <summary>Applies a normalizer to a group's scores.</summary>
    public static double[] Normalize(double[] s, ImportanceNormalizer normalizer)
    {
        if (s.Length == 0) return s;
        const double eps = 1e-8;
        return normalizer switch
        {
            ImportanceNormalizer.Mean => s.Select(v => v / (s.Average() + eps)).ToArray(),
            ImportanceNormalizer.Sum => s.Select(v => v / (s.Sum() + eps)).ToArray(),
            ImportanceNormalizer.Max => s.Select(v => v / (s.Max() + eps)).ToArray(),
            ImportanceNormalizer.Standardization => s.Select(v => (v - s.Min()) / (s.Max() - s.Min() + eps)).ToArray(),
            ImportanceNormalizer.Gaussian => Gaussian(s),
            _ => (double[])s.Clone(),
        };
    }

    private static double[] Gaussian(double[] s)
    {
        var mean = s.Average();
        var std = s.Length > 1 ? Math.Sqrt(s.Sum(v => (v - mean) * (v - mean)) / (s.Length - 1)) : 0;
        return s.Select(v => (v - mean) / (std + 1e-8)).ToArray();
    }
}
