namespace NeuralCore.Audio;

/// <summary>
/// Decoded audio: interleaved float samples in [-1, 1] (frame-major: sample <c>c</c> of frame <c>t</c> at
/// <c>t * Channels + c</c>), the sample rate and the format the file stored them in.
/// </summary>
public sealed class WavAudio
{
    /// <summary>Wraps decoded samples (not copied).</summary>
    /// <param name="samples">Interleaved samples, length a multiple of <paramref name="channels"/>.</param>
    /// <param name="sampleRate">Frames per second.</param>
    /// <param name="channels">Samples per frame.</param>
    /// <param name="format">The stored sample format.</param>
    public WavAudio(float[] samples, int sampleRate, int channels, WavSampleFormat format)
    {
        ArgumentNullException.ThrowIfNull(samples);
        if (sampleRate <= 0)
            throw new ArgumentOutOfRangeException(nameof(sampleRate), sampleRate, "The sample rate must be positive.");
        if (channels <= 0)
            throw new ArgumentOutOfRangeException(nameof(channels), channels, "The channel count must be positive.");
        if (samples.Length % channels != 0)
            throw new ArgumentException($"{samples.Length} interleaved samples do not split into frames of {channels} channels.", nameof(samples));
        Samples = samples;
        SampleRate = sampleRate;
        Channels = channels;
        Format = format;
    }

    /// <summary>Interleaved samples, frame-major.</summary>
    public float[] Samples { get; }

    /// <summary>Frames per second.</summary>
    public int SampleRate { get; }

    /// <summary>Samples per frame.</summary>
    public int Channels { get; }

    /// <summary>The sample format of the file.</summary>
    public WavSampleFormat Format { get; }

    /// <summary>Number of frames (samples per channel).</summary>
    public int Frames => Samples.Length / Channels;

    /// <summary>Duration in seconds.</summary>
    public double Duration => (double)Frames / SampleRate;

    /// <summary>The mono down-mix: the mean of the channels of each frame (the samples themselves when mono).</summary>
    public float[] ToMono()
    {
        if (Channels == 1)
            return Samples;
        var mono = new float[Frames];
        float scale = 1f / Channels;
        for (int t = 0; t < mono.Length; t++)
        {
            float sum = 0;
            int offset = t * Channels;
            for (int c = 0; c < Channels; c++)
                sum += Samples[offset + c];
            mono[t] = sum * scale;
        }
        return mono;
    }
}
