using System.Diagnostics;
using System.Globalization;
using NeuralCore.Audio;
using NeuralCore.Data;
using NeuralCore.NN;

namespace NeuralCore.Cli;

/// <summary>A loaded TAU22 folder with its train / validation / test split and the resample cache the batches read from.</summary>
/// <param name="Dataset">The folder's clips and folds.</param>
/// <param name="Split">Training, validation and test clips.</param>
/// <param name="Cache">The resampled-waveform cache.</param>
/// <param name="Synthetic">Whether the folder is a synthetic TAU22 (made by make-synthetic-asc).</param>
internal sealed record AscData(Tau22Dataset Dataset, AscSplit Split, ResampleCache Cache, bool Synthetic)
{
    /// <summary>Clips per scene of the default synthetic dataset.</summary>
    public const int DefaultSyntheticClipsPerClass = 100;

    /// <summary>The folder of the default synthetic dataset, used when --data-dir is not given.</summary>
    public static string DefaultSyntheticDirectory => Path.Combine(DataCache.DefaultDirectory, "tau22-synthetic");

    /// <summary>
    /// Reads <paramref name="dataDir"/> (default: the synthetic TAU22 in <see cref="DefaultSyntheticDirectory"/>,
    /// generated on first use) and splits it; the seed-compatible validation's warning and skipped files go to
    /// <paramref name="log"/>.
    /// </summary>
    public static AscData Load(string? dataDir, bool skipMissing, AscValidation validation, double fraction, string? cacheDir, int sampleRate, TextWriter log)
    {
        if (dataDir is null)
        {
            dataDir = DefaultSyntheticDirectory;
            EnsureDefaultSynthetic(dataDir, log);
            log.WriteLine($"note: no --data-dir, so this uses the SYNTHETIC TAU22 in {dataDir} (made by neuralcore, not recordings; " +
                "its numbers say nothing about real acoustic scenes). Pass --data-dir with the real TAU Urban Acoustic Scenes 2022 Mobile folder for real results.");
        }
        else if (!Directory.Exists(dataDir))
        {
            throw new CliException(
                $"--data-dir {dataDir}: the folder does not exist. Pass the TAU Urban Acoustic Scenes 2022 Mobile folder (the one holding meta.csv, audio/ and evaluation_setup/), " +
                "or create a synthetic one with 'neuralcore make-synthetic-asc --out DIR'.");
        }
        var dataset = Tau22.Load(dataDir, new Tau22Options { SkipMissing = skipMissing });
        foreach (var warning in dataset.Warnings.Take(10)) log.WriteLine($"warning: {warning}");
        if (dataset.Warnings.Count > 10) log.WriteLine($"warning: ... and {dataset.Warnings.Count - 10} more clips left out.");
        if (dataset.Train.Count == 0)
            throw new CliException($"{dataset.Root} lists no training clips (train fold empty{(dataset.Warnings.Count > 0 ? " after leaving out missing files" : "")}).");
        if (dataset.Test.Count == 0)
            throw new CliException($"{dataset.Root} lists no test clips (test fold empty{(dataset.Warnings.Count > 0 ? " after leaving out missing files" : "")}).");
        var split = AscSplit.Create(dataset, validation, fraction, seed: DataSource.SplitSeed);
        if (split.Warning is not null) log.WriteLine($"warning: {split.Warning}");
        if (split.Validation.Count == 0)
            throw new CliException($"{dataset.Root}: no validation clips could be held out (every scene of the training fold has a single recording location). Pass --seed-validation to validate on evaluate.csv instead.");
        var cache = new ResampleCache(cacheDir ?? ResampleCache.DefaultDirectory, sampleRate);
        return new AscData(dataset, split, cache, IsSynthetic(dataset.Root));
    }

    /// <summary>A one-line description of the data and split (recorded in config.json; part of what a resumed run must match).</summary>
    public string Describe(int trainCount, AscValidation validation, double fraction)
    {
        string kind = Synthetic ? "synthetic TAU22, " : "";
        string held = validation == AscValidation.SeedCompatible
            ? "= evaluate.csv (seed-compatible)"
            : string.Create(CultureInfo.InvariantCulture, $"location-disjoint {fraction:0.###} of the training fold (split seed {DataSource.SplitSeed})");
        string skipped = Dataset.Warnings.Count > 0 ? $"; {Dataset.Warnings.Count} missing clips skipped" : "";
        return $"asc: {Dataset.Root} ({kind}{Dataset.Layout.ToString().ToLowerInvariant()} layout); {trainCount} train / {Split.Validation.Count} validation / " +
            $"{Split.Test.Count} test clips; validation {held}{skipped}";
    }

    /// <summary>A batch source of <paramref name="clips"/> through <paramref name="frontEnd"/>.</summary>
    public AscBatchSource Source(IReadOnlyList<AscClip> clips, MelFrontEnd frontEnd, bool training, ulong seed) =>
        new(clips, Dataset.Root, Cache, frontEnd, training, seed);

    /// <summary>The training clips, or <paramref name="limit"/> of them spread evenly over the list (which is ordered by scene).</summary>
    public IReadOnlyList<AscClip> TrainClips(int? limit)
    {
        var all = Split.Train;
        if (limit is not { } n || n >= all.Count) return all;
        return Enumerable.Range(0, n).Select(i => all[(int)((long)i * all.Count / n)]).ToArray();
    }

    /// <summary>
    /// Decodes and resamples every clip of <paramref name="sources"/> into the cache (and memory) before training, so
    /// the first epoch is not slowed down by it; reports clips per second to <paramref name="log"/>.
    /// </summary>
    public void Preload(IEnumerable<AscBatchSource> sources, TextWriter log, CancellationToken cancellation)
    {
        var list = sources.ToList();
        int total = list.Sum(s => s.Count);
        long missesBefore = Cache.Misses;
        var clock = Stopwatch.StartNew();
        foreach (var source in list) source.Preload(null, cancellation);
        long decoded = Cache.Misses - missesBefore;
        double seconds = clock.Elapsed.TotalSeconds;
        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"audio: {total:N0} clips ready in {seconds:F1} s ({total / Math.Max(seconds, 1e-9):N0} clips/s; {decoded:N0} decoded and resampled, {total - decoded:N0} from the cache {Cache.Directory})"));
    }

    /// <summary>The trainer's loss for mixup: mixed inputs, the mixed cross-entropy, lambda and partners drawn from <see cref="Generator.Default"/>.</summary>
    public static Func<Module, Batch, (Tensor Loss, Tensor Logits)> MixupLoss(double alpha) => (model, batch) =>
    {
        var mixed = Mixup.Apply(batch.Inputs, batch.Targets, alpha, Generator.Default);
        var logits = model.Call(mixed.Inputs);
        return (mixed.Loss(logits), logits);
    };

    /// <summary>The model metadata of an ASC model: architecture, front end and augmentations.</summary>
    public static Dictionary<string, string> ModelMetadata(IReadOnlyDictionary<string, string> architecture, MelConfig mel, AugmentConfig augment)
    {
        var metadata = new Dictionary<string, string>(architecture);
        foreach (var (key, value) in mel.ToMetadata()) metadata[key] = value;
        metadata[ModelSource.AugmentKey] = augment.ToJson();
        return metadata;
    }

    private static bool IsSynthetic(string root)
    {
        var readme = Path.Combine(root, "README.md");
        return File.Exists(readme) && File.ReadLines(readme).Take(5).Any(l => l.Contains("synthetic", StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>Generates the default synthetic dataset once; a folder being written by another process is never read half-done.</summary>
    private static void EnsureDefaultSynthetic(string dir, TextWriter log)
    {
        if (File.Exists(Path.Combine(dir, "meta.csv"))) return;
        log.WriteLine($"Generating the synthetic TAU22 ({DefaultSyntheticClipsPerClass} clips per scene, seed 0) in {dir} (once) ...");
        var temporary = dir + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            SyntheticAsc.Generate(temporary, DefaultSyntheticClipsPerClass, seed: 0);
            Directory.CreateDirectory(Path.GetDirectoryName(dir)!);
            try
            {
                Directory.Move(temporary, dir);
            }
            catch (IOException) when (File.Exists(Path.Combine(dir, "meta.csv")))
            {
                // Another process finished first; its copy is identical (same seed).
            }
        }
        finally
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
        }
    }
}
