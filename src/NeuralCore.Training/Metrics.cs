namespace NeuralCore.Training;

/// <summary>
/// Counts of (true class, predicted class) pairs for a classifier, and the accuracies derived from them.
/// Row = true class, column = predicted class (scikit-learn's convention).
/// </summary>
public sealed class ConfusionMatrix
{
    private readonly long[,] _counts;

    /// <summary>An empty matrix for <paramref name="numClasses"/> classes.</summary>
    public ConfusionMatrix(int numClasses)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numClasses);
        NumClasses = numClasses;
        _counts = new long[numClasses, numClasses];
    }

    /// <summary>Number of classes (rows and columns).</summary>
    public int NumClasses { get; }

    /// <summary>Number of samples counted.</summary>
    public long Total { get; private set; }

    /// <summary>Number of samples counted whose prediction was their true class.</summary>
    public long Correct { get; private set; }

    /// <summary>How many samples of class <paramref name="actual"/> were predicted as <paramref name="predicted"/>.</summary>
    public long this[int actual, int predicted] => _counts[actual, predicted];

    /// <summary>Counts one sample.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A class index is outside [0, NumClasses).</exception>
    public void Add(int actual, int predicted)
    {
        if ((uint)actual >= (uint)NumClasses)
            throw new ArgumentOutOfRangeException(nameof(actual), actual, $"The true class must be in [0, {NumClasses}).");
        if ((uint)predicted >= (uint)NumClasses)
            throw new ArgumentOutOfRangeException(nameof(predicted), predicted, $"The predicted class must be in [0, {NumClasses}).");
        _counts[actual, predicted]++;
        Total++;
        if (actual == predicted) Correct++;
    }

    /// <summary>
    /// Counts a batch: <paramref name="logits"/> holds B rows of <see cref="NumClasses"/> scores (row-major [B, C]),
    /// <paramref name="targets"/> the B true classes; each prediction is the row's arg-max (the first on ties).
    /// </summary>
    /// <returns>How many of the batch were predicted correctly.</returns>
    /// <exception cref="ArgumentException">The logits do not hold <see cref="NumClasses"/> scores per target.</exception>
    public int AddBatch(ReadOnlySpan<float> logits, ReadOnlySpan<long> targets)
    {
        if (logits.Length != targets.Length * NumClasses)
            throw new ArgumentException(
                $"Expected logits [{targets.Length}, {NumClasses}] ({targets.Length * NumClasses} values) for {targets.Length} targets; found {logits.Length} values.",
                nameof(logits));
        int correct = 0;
        for (int i = 0; i < targets.Length; i++)
        {
            int predicted = Metrics.ArgMax(logits.Slice(i * NumClasses, NumClasses));
            Add((int)targets[i], predicted);
            if (predicted == targets[i]) correct++;
        }
        return correct;
    }

    /// <summary>Fraction of samples predicted correctly (0 when nothing was counted).</summary>
    public double Accuracy => Total == 0 ? 0 : (double)Correct / Total;

    /// <summary>Samples of each true class (row sums).</summary>
    public long[] Support()
    {
        var support = new long[NumClasses];
        for (int a = 0; a < NumClasses; a++)
            for (int p = 0; p < NumClasses; p++)
                support[a] += _counts[a, p];
        return support;
    }

    /// <summary>
    /// Per-class accuracy (recall): correct predictions of class c over the samples of class c; null for a class
    /// with no samples (its recall is undefined, not zero).
    /// </summary>
    public double?[] PerClassAccuracy()
    {
        var support = Support();
        var result = new double?[NumClasses];
        for (int c = 0; c < NumClasses; c++)
            result[c] = support[c] == 0 ? null : (double)_counts[c, c] / support[c];
        return result;
    }

    /// <summary>
    /// Macro (class-averaged) accuracy: the mean of <see cref="PerClassAccuracy"/> over the classes that have samples
    /// (scikit-learn's <c>balanced_accuracy_score</c>); 0 when nothing was counted.
    /// </summary>
    public double MacroAccuracy()
    {
        var present = PerClassAccuracy().Where(a => a.HasValue).Select(a => a!.Value).ToList();
        return present.Count == 0 ? 0 : present.Average();
    }

    /// <summary>The counts as rows (true class) of columns (predicted class).</summary>
    public long[][] ToRows()
    {
        var rows = new long[NumClasses][];
        for (int a = 0; a < NumClasses; a++)
        {
            rows[a] = new long[NumClasses];
            for (int p = 0; p < NumClasses; p++) rows[a][p] = _counts[a, p];
        }
        return rows;
    }
}

/// <summary>Small classification helpers shared by the trainer and the command line.</summary>
public static class Metrics
{
    /// <summary>Index of the largest value (the first one on ties; a NaN is never the largest unless all are NaN).</summary>
    /// <exception cref="ArgumentException">The span is empty.</exception>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        if (values.IsEmpty) throw new ArgumentException("ArgMax needs at least one value.", nameof(values));
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best] || (float.IsNaN(values[best]) && !float.IsNaN(values[i]))) best = i;
        return best;
    }

    /// <summary>Per-row arg-max of row-major [rows, columns] scores.</summary>
    public static int[] ArgMaxRows(ReadOnlySpan<float> scores, int columns)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(columns);
        if (scores.Length % columns != 0)
            throw new ArgumentException($"{scores.Length} values do not form rows of {columns}.", nameof(scores));
        var result = new int[scores.Length / columns];
        for (int r = 0; r < result.Length; r++) result[r] = ArgMax(scores.Slice(r * columns, columns));
        return result;
    }
}
