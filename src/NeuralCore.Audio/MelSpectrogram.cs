using System.Buffers;

namespace NeuralCore.Audio;

/// <summary>
/// The log-mel spectrogram of one clip as the seed computes it (see <see cref="MelConfig"/>): pre-emphasis, centred
/// STFT with a zero-padded Hann window, power, Kaldi mel bank, log(x + offset), (x + shift) / scale. Output is
/// [NMels, frames], mel-major.
/// </summary>
/// <remarks>
/// The STFT runs in float32 like torch.stft: each frame is windowed and transformed by a real FFT of NFft points
/// (<see cref="Fft.ForwardReal"/>). An instance holds only read-only tables and may be shared between threads; each
/// call rents its scratch buffers from the shared array pool.
/// </remarks>
public sealed class MelSpectrogram
{
    private readonly Fft _fft;
    // The window zero-padded, centred, to NFft: nonzero on [_winOffset, _winOffset + WinLength).
    private readonly float[] _window;
    private readonly int _winOffset;

    /// <summary>Prepares the front end described by <paramref name="config"/> (validated).</summary>
    public MelSpectrogram(MelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        _fft = new Fft(config.NFft / 2);
        _window = HannWindow(config.WinLength, config.PeriodicWindow);
        _winOffset = (config.NFft - config.WinLength) / 2;
        FilterBank = MelFilterBank.Kaldi(config.NMels, config.NFft, config.SampleRate, config.FMin, config.FMax);
    }

    /// <summary>The front-end parameters.</summary>
    public MelConfig Config { get; }

    /// <summary>The mel bank for <see cref="MelConfig.FMin"/> .. <see cref="MelConfig.FMax"/> (augmentation may pass another).</summary>
    public MelFilterBank FilterBank { get; }

    /// <summary>Number of FFT bins, NFft / 2 + 1.</summary>
    public int NBins => Config.NFft / 2 + 1;

    /// <summary>Frames produced for <paramref name="samples"/> input samples (100 for 32,000 with the defaults).</summary>
    public int FrameCount(int samples) => Config.FrameCount(samples);

    /// <summary>
    /// The Hann window of <paramref name="length"/> samples: 0.5 - 0.5 cos(2 pi n / D) with D = length - 1
    /// (symmetric, torch's <c>periodic=False</c>) or D = length (periodic).
    /// </summary>
    public static float[] HannWindow(int length, bool periodic)
    {
        var w = new float[length];
        if (length == 1)
        {
            w[0] = 1;
            return w;
        }
        double d = periodic ? length : length - 1;
        for (int n = 0; n < length; n++)
            w[n] = (float)(0.5 - 0.5 * Math.Cos(2 * Math.PI * n / d));
        return w;
    }

    /// <summary>The normalised log-mel spectrogram of <paramref name="waveform"/>, [NMels, frames] mel-major.</summary>
    public float[] Compute(ReadOnlySpan<float> waveform)
    {
        var output = new float[Config.NMels * FrameCountChecked(waveform.Length)];
        Compute(waveform, output);
        return output;
    }

    /// <summary>
    /// Writes the normalised log-mel spectrogram of <paramref name="waveform"/> into <paramref name="output"/>
    /// ([NMels, frames]); <paramref name="bank"/> replaces <see cref="FilterBank"/> (e.g. with jittered edges).
    /// </summary>
    public void Compute(ReadOnlySpan<float> waveform, Span<float> output, MelFilterBank? bank = null)
    {
        ComputeLogMel(waveform, output, bank);
        Normalize(output);
    }

    /// <summary>The log-mel spectrogram log(mel + offset) before the (x + shift) / scale normalisation.</summary>
    internal void ComputeLogMel(ReadOnlySpan<float> waveform, Span<float> output, MelFilterBank? bank = null)
    {
        bank ??= FilterBank;
        if (bank.NBins != NBins || bank.NMels != Config.NMels)
            throw new ArgumentException($"The mel bank is {bank.NMels} x {bank.NBins}, expected {Config.NMels} x {NBins} for this front end.", nameof(bank));
        int frames = FrameCountChecked(waveform.Length);
        if (output.Length < Config.NMels * frames)
            throw new ArgumentException($"The output needs {Config.NMels} x {frames} values, found room for {output.Length}.", nameof(output));
        float[] power = ArrayPool<float>.Shared.Rent(frames * NBins);
        try
        {
            PowerSpectrogram(waveform, power, frames);
            bank.Apply(power, frames, output);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(power);
        }
        float offset = (float)Config.LogOffset;
        Span<float> values = output[..(Config.NMels * frames)];
        for (int i = 0; i < values.Length; i++)
            values[i] = MathF.Log(values[i] + offset);
    }

    /// <summary>Applies (x + NormShift) / NormScale to every value in place.</summary>
    internal void Normalize(Span<float> logMel)
    {
        int count = Config.NMels * (logMel.Length / Config.NMels);
        float shift = (float)Config.NormShift, scale = 1f / (float)Config.NormScale;
        for (int i = 0; i < count; i++)
            logMel[i] = (logMel[i] + shift) * scale;
    }

    private int FrameCountChecked(int samples)
    {
        int frames = FrameCount(samples);
        if (Config.Center && samples - 1 <= Config.NFft / 2)
            throw new ArgumentException($"The waveform has {samples} samples; reflect padding by NFft / 2 = {Config.NFft / 2} needs more than {Config.NFft / 2 + 1}.");
        if (frames < 1)
            throw new ArgumentException($"The waveform has {samples} samples, too short for one frame of {Config.NFft}.");
        return frames;
    }

    /// <summary>
    /// The pre-emphasised signal <c>y[n] = x[n + 1] - a x[n]</c> (a valid convolution with [-a, 1]: one sample
    /// shorter than <paramref name="waveform"/>).
    /// </summary>
    internal static void PreEmphasize(ReadOnlySpan<float> waveform, float a, Span<float> output)
    {
        for (int n = 0; n < waveform.Length - 1; n++)
            output[n] = waveform[n + 1] - a * waveform[n];
    }

    /// <summary>The power spectrogram |STFT|^2 of the pre-emphasised waveform, [frames, NBins] frame-major.</summary>
    internal void PowerSpectrogram(ReadOnlySpan<float> waveform, Span<float> power, int frames)
    {
        int nFft = Config.NFft, hop = Config.HopLength, half = nFft / 2;
        int n = waveform.Length - 1;
        int pad = Config.Center ? half : 0;
        int paddedLength = n + 2 * pad;
        float[] signal = ArrayPool<float>.Shared.Rent(paddedLength);
        float[] frame = ArrayPool<float>.Shared.Rent(nFft);
        float[] re = ArrayPool<float>.Shared.Rent(half + 1);
        float[] im = ArrayPool<float>.Shared.Rent(half + 1);
        try
        {
            Span<float> s = signal.AsSpan(0, paddedLength);
            PreEmphasize(waveform, (float)Config.PreEmphasis, s.Slice(pad, n));
            // Reflect padding without repeating the edge sample (torch / NumPy "reflect").
            for (int i = 0; i < pad; i++)
            {
                s[pad - 1 - i] = s[pad + 1 + i];
                s[pad + n + i] = s[pad + n - 2 - i];
            }
            Span<float> f = frame.AsSpan(0, nFft);
            f.Clear();
            int winLength = Config.WinLength;
            for (int t = 0; t < frames; t++)
            {
                ReadOnlySpan<float> x = s.Slice(t * hop + _winOffset, winLength);
                Span<float> fw = f.Slice(_winOffset, winLength);
                for (int i = 0; i < winLength; i++)
                    fw[i] = x[i] * _window[i];
                _fft.ForwardReal(f, re, im);
                Span<float> p = power.Slice(t * NBins, NBins);
                for (int k = 0; k < NBins; k++)
                    p[k] = re[k] * re[k] + im[k] * im[k];
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(signal);
            ArrayPool<float>.Shared.Return(frame);
            ArrayPool<float>.Shared.Return(re);
            ArrayPool<float>.Shared.Return(im);
        }
    }
}
