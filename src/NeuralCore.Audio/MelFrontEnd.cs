namespace NeuralCore.Audio;

/// <summary>
/// Turns a batch of equal-length waveforms into model inputs [B, 1, NMels, frames], with the training-time
/// augmentations of <see cref="AugmentConfig"/> (the seed's <c>AugmentMelSTFT</c> plus Freq-MixStyle).
/// </summary>
/// <remarks>
/// <para>
/// Training order: waveform roll (per clip) -> pre-emphasis, STFT, power -> mel bank with fmin / fmax jittered once
/// per batch (as the seed rebuilds its bank per forward call) -> log -> frequency and time masks (log-mel set to 0,
/// torchaudio's mask value, before normalisation, as in the seed) -> (x + 4.5) / 5 -> Freq-MixStyle (one coin flip
/// per batch). Evaluation (<c>training: false</c>) skips every augmentation.
/// </para>
/// <para>
/// NOTE: the seed's masks come from torchaudio's FrequencyMasking / TimeMasking on a 3-D tensor, which draws one
/// mask for the whole batch; here each clip draws its own (torchaudio's <c>iid_masks</c>), the usual intent.
/// </para>
/// <para>
/// All random numbers are drawn from the caller's <see cref="Generator"/> on the calling thread before the clips are
/// processed in parallel, so the result depends only on the generator's state, never on thread timing.
/// </para>
/// </remarks>
public sealed class MelFrontEnd
{
    /// <summary>Builds the front end for <paramref name="mel"/> with <paramref name="augment"/> (default: the seed's augmentations).</summary>
    public MelFrontEnd(MelConfig mel, AugmentConfig? augment = null)
    {
        ArgumentNullException.ThrowIfNull(mel);
        Augment = augment ?? new AugmentConfig();
        Augment.Validate();
        Spectrogram = new MelSpectrogram(mel);
    }

    /// <summary>The front-end parameters.</summary>
    public MelConfig Mel => Spectrogram.Config;

    /// <summary>The training-time augmentations.</summary>
    public AugmentConfig Augment { get; }

    /// <summary>The per-clip log-mel computation.</summary>
    public MelSpectrogram Spectrogram { get; }

    /// <summary>The shape of one model input for clips of <paramref name="samples"/> samples: [1, NMels, frames].</summary>
    public int[] SampleShape(int samples) => [1, Mel.NMels, Mel.FrameCount(samples)];

    /// <summary>
    /// The model inputs for <paramref name="waveforms"/> (all of the same length, at <see cref="MelConfig.SampleRate"/>),
    /// Float32 [B, 1, NMels, frames]. With <paramref name="training"/> the augmentations are drawn from
    /// <paramref name="generator"/> (required then).
    /// </summary>
    public Tensor Forward(IReadOnlyList<float[]> waveforms, bool training, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(waveforms);
        if (waveforms.Count == 0)
            throw new ArgumentException("The batch holds no waveforms.", nameof(waveforms));
        int samples = waveforms[0].Length;
        for (int i = 1; i < waveforms.Count; i++)
            if (waveforms[i].Length != samples)
                throw new ArgumentException($"All clips of a batch must have the same length: clip 0 has {samples} samples, clip {i} has {waveforms[i].Length}. Pad or crop them first.", nameof(waveforms));
        if (training && generator is null)
            throw new ArgumentNullException(nameof(generator), "Training-mode augmentation needs a seeded Generator.");
        int b = waveforms.Count, mels = Mel.NMels, frames = Mel.FrameCount(samples);
        int size = mels * frames;
        var output = new float[b * size];

        var bank = Spectrogram.FilterBank;
        var shifts = new int[b];
        var freqMasks = new (int Start, int End)[b];
        var timeMasks = new (int Start, int End)[b];
        if (training)
        {
            bank = JitteredBank(generator!) ?? bank;
            for (int i = 0; i < b; i++)
            {
                shifts[i] = Augment.RollMaxShift > 0 ? generator!.NextInt(2 * Augment.RollMaxShift + 1) - Augment.RollMaxShift : 0;
                freqMasks[i] = Augment.FreqMaskWidth > 0 ? DrawMask(generator!, Augment.FreqMaskWidth, mels) : (0, 0);
                timeMasks[i] = Augment.TimeMaskWidth > 0 ? DrawMask(generator!, Augment.TimeMaskWidth, frames) : (0, 0);
            }
        }

        Parallel.For(0, b, i =>
        {
            Span<float> dst = output.AsSpan(i * size, size);
            if (shifts[i] != 0)
                Spectrogram.ComputeLogMel(Roll(waveforms[i], shifts[i]), dst, bank);
            else
                Spectrogram.ComputeLogMel(waveforms[i], dst, bank);
            var (fs, fe) = freqMasks[i];
            if (fe > fs)
                dst.Slice(fs * frames, (fe - fs) * frames).Clear();
            var (ts, te) = timeMasks[i];
            for (int m = te > ts ? 0 : mels; m < mels; m++)
                dst.Slice(m * frames + ts, te - ts).Clear();
            Spectrogram.Normalize(dst);
        });

        if (training && Augment.MixStyleP > 0 && generator!.NextDouble() < Augment.MixStyleP)
            FreqMixStyle.Apply(output, b, 1, mels, frames, Augment.MixStyleAlpha, generator);
        return Tensor.Wrap(output, b, 1, mels, frames);
    }

    /// <summary>The mel bank with the seed's fmin / fmax jitter, or null when neither jitter is on.</summary>
    private MelFilterBank? JitteredBank(Generator generator)
    {
        double fMin = Mel.FMin, fMax = Mel.FMax;
        if (Augment.FMinJitter > 1)
            fMin += generator.NextInt(Augment.FMinJitter);
        if (Augment.FMaxJitter > 1)
            fMax += Augment.FMaxJitter / 2 - generator.NextInt(Augment.FMaxJitter);
        if (fMin == Mel.FMin && fMax == Mel.FMax)
            return null;
        fMax = Math.Min(fMax, Mel.SampleRate / 2.0);
        fMin = Math.Min(fMin, fMax - 1);
        return MelFilterBank.Kaldi(Mel.NMels, Mel.NFft, Mel.SampleRate, fMin, fMax);
    }

    /// <summary>
    /// torchaudio's mask_along_axis: width = U[0, 1) * maxWidth, start = U[0, 1) * (size - width), and the mask covers
    /// [floor(start), floor(start) + floor(width)): 0 to maxWidth - 1 bins or frames, each as likely.
    /// </summary>
    internal static (int Start, int End) DrawMask(Generator generator, int maxWidth, int size)
    {
        double width = generator.NextDouble() * maxWidth;
        double start = generator.NextDouble() * Math.Max(0, size - width);
        int s = (int)Math.Floor(start), e = s + (int)Math.Floor(width);
        return (Math.Clamp(s, 0, size), Math.Clamp(e, 0, size));
    }

    /// <summary>The waveform circularly shifted right by <paramref name="shift"/> samples (NumPy's <c>roll</c>).</summary>
    internal static float[] Roll(ReadOnlySpan<float> waveform, int shift)
    {
        int n = waveform.Length;
        var rolled = new float[n];
        int s = ((shift % n) + n) % n;
        waveform[..(n - s)].CopyTo(rolled.AsSpan(s));
        waveform[(n - s)..].CopyTo(rolled);
        return rolled;
    }
}
