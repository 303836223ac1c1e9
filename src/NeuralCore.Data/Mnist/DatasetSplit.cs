namespace NeuralCore.Data;

/// <summary>
/// The reproducible split rules used by <see cref="Mnist"/>. Both draw from
/// <see cref="SplitMix64"/> seeded with the user's seed, so a split depends only on the seed and the
/// data, and every part lists its indices in ascending order (the order of the source file).
/// </summary>
internal static class DatasetSplit
{
    /// <summary>
    /// Random hold-out: shuffle 0..count-1 with <see cref="SplitMix64.Shuffle"/>; the first
    /// <paramref name="holdOutCount"/> shuffled indices are held out, the rest are kept.
    /// </summary>
    public static (int[] Kept, int[] HeldOut) Random(int count, int holdOutCount, long seed)
    {
        if (holdOutCount < 0 || holdOutCount > count)
            throw new ArgumentOutOfRangeException(nameof(holdOutCount), holdOutCount,
                $"Cannot hold out {holdOutCount} of {count} examples; choose a number between 0 and {count}.");
        int[] order = Enumerable.Range(0, count).ToArray();
        new SplitMix64(seed).Shuffle(order);
        int[] heldOut = order[..holdOutCount];
        int[] kept = order[holdOutCount..];
        Array.Sort(heldOut);
        Array.Sort(kept);
        return (kept, heldOut);
    }

    /// <summary>
    /// Stratified three-way split. Per-class sizes: each of the validation and test totals is
    /// apportioned to the classes by largest remainder (class c with n_c of N examples first gets
    /// floor(total * n_c / N); the remaining slots go one each to the classes with the largest
    /// remainders (total * n_c) mod N, ties to the lower class index). Members: one
    /// <see cref="SplitMix64"/> stream seeded with <paramref name="seed"/> shuffles each class's indices
    /// (ascending source order before shuffling) in class order 0, 1, ...; of each shuffled class the
    /// first test_c go to test, the next validation_c to validation, the rest to train.
    /// </summary>
    public static (int[] Train, int[] Validation, int[] Test) Stratified(
        ReadOnlySpan<byte> labels, int numClasses, int validationCount, int testCount, long seed)
    {
        int total = labels.Length;
        if (validationCount < 0 || testCount < 0 || validationCount + testCount > total)
            throw new ArgumentOutOfRangeException(nameof(validationCount),
                $"Cannot take {validationCount} validation and {testCount} test examples out of {total}.");
        var members = new List<int>[numClasses];
        for (int c = 0; c < numClasses; c++)
            members[c] = [];
        for (int i = 0; i < total; i++)
            members[labels[i]].Add(i);
        int[] classCounts = members.Select(m => m.Count).ToArray();
        int[] validationPerClass = Apportion(classCounts, validationCount);
        int[] testPerClass = Apportion(classCounts, testCount);

        var rng = new SplitMix64(seed);
        var train = new List<int>();
        var validation = new List<int>();
        var test = new List<int>();
        for (int c = 0; c < numClasses; c++)
        {
            int[] order = members[c].ToArray();
            rng.Shuffle(order);
            int t = testPerClass[c];
            int v = validationPerClass[c];
            if (t + v > order.Length)
                throw new ArgumentOutOfRangeException(nameof(validationCount),
                    $"Class {c} has {order.Length} examples, too few for {v} validation and {t} test examples.");
            test.AddRange(order[..t]);
            validation.AddRange(order[t..(t + v)]);
            train.AddRange(order[(t + v)..]);
        }
        return (Sorted(train), Sorted(validation), Sorted(test));
    }

    /// <summary>
    /// Largest-remainder apportionment of <paramref name="total"/> slots proportional to
    /// <paramref name="weights"/>, in exact integer arithmetic; ties go to the lower index.
    /// </summary>
    public static int[] Apportion(int[] weights, int total)
    {
        long sum = weights.Sum(w => (long)w);
        var shares = new int[weights.Length];
        if (sum == 0 || total == 0)
            return shares;
        var remainders = new long[weights.Length];
        int given = 0;
        for (int c = 0; c < weights.Length; c++)
        {
            long scaled = (long)total * weights[c];
            shares[c] = (int)(scaled / sum);
            remainders[c] = scaled % sum;
            given += shares[c];
        }
        int[] byRemainder = Enumerable.Range(0, weights.Length)
            .OrderByDescending(c => remainders[c])
            .ThenBy(c => c)
            .ToArray();
        for (int k = 0; k < total - given; k++)
            shares[byRemainder[k]]++;
        return shares;
    }

    private static int[] Sorted(List<int> items)
    {
        int[] array = items.ToArray();
        Array.Sort(array);
        return array;
    }
}
