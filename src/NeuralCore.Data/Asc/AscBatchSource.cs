using NeuralCore.Audio;

namespace NeuralCore.Data;

/// <summary>
/// Batches ASC clips as log-mel spectrograms [B, 1, NMels, frames] (targets: scene indices): waveforms come from
/// the <see cref="ResampleCache"/> (or memory), the <see cref="MelFrontEnd"/> turns them into model inputs, with
/// augmentation only when <see cref="Training"/>.
/// </summary>
/// <remarks>
/// <para>
/// Clips are cropped or zero-padded to <see cref="ClipSamples"/> (1 s at the front end's rate by default; TAU22 clips
/// are exactly 1 s). When all waveforms fit in <c>memoryBudgetBytes</c> they are also kept in memory after their
/// first load.
/// </para>
/// <para>
/// The augmentation generator of a batch is seeded from (seed, the batch's indices), so a batch's augmentation
/// does not depend on which batches came before: a run resumed at epoch e sees the same augmented batches as an
/// uninterrupted one, and concurrent <see cref="GetBatch"/> calls are safe.
/// </para>
/// </remarks>
public sealed class AscBatchSource : IBatchSource
{
    private readonly IReadOnlyList<AscClip> _clips;
    private readonly string _root;
    private readonly ResampleCache _cache;
    private readonly float[]?[]? _memory;
    private readonly ulong _seed;

    /// <summary>Creates a batch source.</summary>
    /// <param name="clips">The clips, e.g. <see cref="AscSplit.Train"/>.</param>
    /// <param name="root">The dataset folder the clip file names are relative to (<see cref="Tau22Dataset.Root"/>).</param>
    /// <param name="cache">Where resampled waveforms live; its target rate must equal the front end's sample rate.</param>
    /// <param name="frontEnd">The mel front end and its augmentations.</param>
    /// <param name="training">Apply the front end's augmentations (training set) or not (validation, test).</param>
    /// <param name="seed">Seed of the augmentation draws.</param>
    /// <param name="clipSamples">Samples per clip after resampling; default one second at the front end's rate.</param>
    /// <param name="memoryBudgetBytes">Keep waveforms in memory after their first load when all of them fit in this many bytes.</param>
    public AscBatchSource(IReadOnlyList<AscClip> clips, string root, ResampleCache cache, MelFrontEnd frontEnd, bool training,
        ulong seed = 0, int? clipSamples = null, long memoryBudgetBytes = 2L << 30)
    {
        ArgumentNullException.ThrowIfNull(clips);
        ArgumentException.ThrowIfNullOrEmpty(root);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(frontEnd);
        if (cache.TargetRate != frontEnd.Mel.SampleRate)
            throw new ArgumentException($"The resample cache produces {cache.TargetRate} Hz but the mel front end expects {frontEnd.Mel.SampleRate} Hz; create the cache with the front end's sample rate.", nameof(cache));
        _clips = clips;
        _root = Path.GetFullPath(root);
        _cache = cache;
        FrontEnd = frontEnd;
        Training = training;
        _seed = seed;
        ClipSamples = clipSamples ?? frontEnd.Mel.SampleRate;
        if (ClipSamples <= frontEnd.Mel.NFft / 2 + 1)
            throw new ArgumentOutOfRangeException(nameof(clipSamples), ClipSamples, $"Clips need more than {frontEnd.Mel.NFft / 2 + 1} samples for the front end's padding.");
        if ((long)clips.Count * ClipSamples * sizeof(float) <= memoryBudgetBytes)
            _memory = new float[clips.Count][];
        Labels = clips.Select(c => c.Label).ToArray();
        Devices = clips.Select(c => c.Device).ToArray();
    }

    /// <summary>The front end producing the inputs.</summary>
    public MelFrontEnd FrontEnd { get; }

    /// <summary>Whether batches are augmented.</summary>
    public bool Training { get; }

    /// <summary>Samples per clip fed to the front end.</summary>
    public int ClipSamples { get; }

    /// <summary>The clips, in index order.</summary>
    public IReadOnlyList<AscClip> Clips => _clips;

    /// <summary>The class index of each clip (for <see cref="AscMetrics"/>).</summary>
    public int[] Labels { get; }

    /// <summary>The device of each clip (for <see cref="AscMetrics"/>).</summary>
    public string[] Devices { get; }

    /// <summary>Whether waveforms are kept in memory after their first load.</summary>
    public bool InMemory => _memory is not null;

    /// <inheritdoc />
    public int Count => _clips.Count;

    /// <inheritdoc />
    public int NumClasses => Tau22.SceneLabels.Count;

    /// <inheritdoc />
    public int[] SampleShape => FrontEnd.SampleShape(ClipSamples);

    /// <summary>The waveform of clip <paramref name="index"/> at the front end's rate, cropped or padded to <see cref="ClipSamples"/>.</summary>
    public float[] LoadWaveform(int index)
    {
        if ((uint)index >= (uint)_clips.Count)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"Clip index outside [0, {_clips.Count}).");
        var memo = _memory is null ? null : Volatile.Read(ref _memory[index]);
        if (memo is not null)
            return memo;
        var waveform = _cache.Load(Path.Combine(_root, _clips[index].FileName));
        if (waveform.Length != ClipSamples)
        {
            var fitted = new float[ClipSamples];
            waveform.AsSpan(0, Math.Min(waveform.Length, ClipSamples)).CopyTo(fitted);
            waveform = fitted;
        }
        if (_memory is not null)
            Volatile.Write(ref _memory[index], waveform);
        return waveform;
    }

    /// <summary>
    /// Loads every clip once (in parallel), filling the disk cache (and memory); reports the number done after each
    /// clip to <paramref name="progress"/>. Calling it before training moves the first epoch's decoding up front.
    /// </summary>
    public void Preload(IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        int done = 0;
        Parallel.For(0, Count, new ParallelOptions { CancellationToken = cancellationToken }, i =>
        {
            LoadWaveform(i);
            progress?.Report(Interlocked.Increment(ref done));
        });
    }

    /// <inheritdoc />
    public Batch GetBatch(ReadOnlySpan<int> indices)
    {
        var ids = indices.ToArray();
        var waveforms = new float[ids.Length][];
        var targets = new long[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)_clips.Count)
                throw new ArgumentOutOfRangeException(nameof(indices), $"Index {ids[i]} at position {i} is outside the dataset [0, {_clips.Count}).");
            targets[i] = _clips[ids[i]].Label;
        }
        Parallel.For(0, ids.Length, i => waveforms[i] = LoadWaveform(ids[i]));
        var generator = Training ? new Generator(BatchSeed(ids)) : null;
        var inputs = FrontEnd.Forward(waveforms, Training, generator);
        return new Batch(inputs, Tensor.FromArray(targets, ids.Length), ids);
    }

    // FNV-1a over the indices, mixed with the seed.
    private ulong BatchSeed(int[] ids)
    {
        ulong h = 0xCBF29CE484222325UL ^ _seed;
        foreach (int id in ids)
        {
            h ^= (uint)id;
            h *= 0x100000001B3UL;
        }
        return h;
    }
}
