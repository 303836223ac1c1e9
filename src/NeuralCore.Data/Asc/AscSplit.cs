namespace NeuralCore.Data;

/// <summary>Where the validation clips (for model selection) come from.</summary>
public enum AscValidation
{
    /// <summary>
    /// Held out of the training fold, whole recording locations at a time (<see cref="AscSplit.LocationDisjoint"/>).
    /// </summary>
    LocationDisjoint,
    /// <summary>
    /// The seed's choice: validate on evaluate.csv. With the official files those are the test clips, so model
    /// selection sees the test set; kept only to reproduce the seed.
    /// </summary>
    SeedCompatible,
}

/// <summary>Training, validation and test clips of an ASC run, and a warning when the split leaks.</summary>
/// <param name="Train">Clips to train on.</param>
/// <param name="Validation">Clips for model selection (best checkpoint by validation loss).</param>
/// <param name="Test">Clips for the final report.</param>
/// <param name="Warning">A message to show the user, or null.</param>
public sealed record AscSplit(IReadOnlyList<AscClip> Train, IReadOnlyList<AscClip> Validation, IReadOnlyList<AscClip> Test, string? Warning)
{
    /// <summary>The default share of training clips held out for validation.</summary>
    public const double DefaultValidationFraction = 0.1;

    /// <summary>
    /// Splits <paramref name="dataset"/> for training: test = the test fold; validation as <paramref name="mode"/> says
    /// (<paramref name="fraction"/> and <paramref name="seed"/> apply to <see cref="AscValidation.LocationDisjoint"/>).
    /// </summary>
    public static AscSplit Create(Tau22Dataset dataset, AscValidation mode = AscValidation.LocationDisjoint,
        double fraction = DefaultValidationFraction, ulong seed = 42)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        if (mode == AscValidation.SeedCompatible)
        {
            if (dataset.Evaluate.Count == 0)
                throw new Tau22FormatException(dataset.Root, 0, "seed-compatible validation needs evaluate.csv (fold1_evaluate.csv), which is missing or empty.");
            var testNames = dataset.Test.Select(c => c.FileName).ToHashSet(StringComparer.Ordinal);
            int shared = dataset.Evaluate.Count(c => testNames.Contains(c.FileName));
            string warning = $"Seed-compatible validation: validating on evaluate.csv, {shared} of whose {dataset.Evaluate.Count} clips are also test clips, " +
                "so choosing the best epoch by validation loss looks at the test set and the reported test accuracy is optimistic. " +
                "Use the default location-disjoint validation for honest numbers.";
            return new AscSplit(dataset.Train, dataset.Evaluate, dataset.Test, shared > 0 ? warning : null);
        }
        var (train, validation) = LocationDisjoint(dataset.Train, fraction, seed);
        return new AscSplit(train, validation, dataset.Test, null);
    }

    /// <summary>
    /// Holds out about <paramref name="fraction"/> of <paramref name="clips"/> for validation so that every recording
    /// location (city-location) lies entirely on one side.
    /// </summary>
    /// <remarks>
    /// The rule: group the clips by location; give each location to the scene most of its clips belong to; for each
    /// scene, shuffle its locations with a generator seeded by (<paramref name="seed"/>, scene) and walk them in that
    /// order, moving a location to validation whenever that brings the scene's validation clip count closer to
    /// <paramref name="fraction"/> x the scene's clips. A scene with two or more locations always gives at least one
    /// to validation and keeps at least one for training; a scene with a single location stays in training. The
    /// result depends only on the clips, the fraction and the seed, and the returned lists keep the input order.
    /// </remarks>
    public static (IReadOnlyList<AscClip> Train, IReadOnlyList<AscClip> Validation) LocationDisjoint(IReadOnlyList<AscClip> clips, double fraction, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(clips);
        if (!(fraction > 0 && fraction < 1))
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "The validation fraction must lie strictly between 0 and 1.");
        var byLocation = clips.GroupBy(c => c.Identifier, StringComparer.Ordinal)
            .Select(g => (Location: g.Key, Count: g.Count(), Scene: g.GroupBy(c => c.Label).OrderByDescending(s => s.Count()).ThenBy(s => s.Key).First().Key))
            .ToList();
        var held = new HashSet<string>(StringComparer.Ordinal);
        foreach (var scene in byLocation.GroupBy(l => l.Scene).OrderBy(g => g.Key))
        {
            var locations = scene.OrderBy(l => l.Location, StringComparer.Ordinal).ToArray();
            if (locations.Length < 2)
                continue;
            new Generator(seed ^ (0x9E3779B97F4A7C15UL * (ulong)(scene.Key + 1))).Shuffle(locations.AsSpan());
            double target = fraction * locations.Sum(l => l.Count);
            int taken = 0, takenLocations = 0;
            foreach (var l in locations)
            {
                if (takenLocations == locations.Length - 1)
                    break;
                bool closer = Math.Abs(taken + l.Count - target) < Math.Abs(taken - target);
                if (closer)
                {
                    held.Add(l.Location);
                    taken += l.Count;
                    takenLocations++;
                }
            }
            if (takenLocations == 0)
            {
                var smallest = locations.OrderBy(l => l.Count).ThenBy(l => l.Location, StringComparer.Ordinal).First();
                held.Add(smallest.Location);
            }
        }
        var train = new List<AscClip>();
        var validation = new List<AscClip>();
        foreach (var c in clips)
            (held.Contains(c.Identifier) ? validation : train).Add(c);
        return (train, validation);
    }
}
