namespace NeuralCore.Audio;

/// <summary>How the samples of a WAV file are stored.</summary>
public enum WavSampleFormat
{
    /// <summary>Unsigned 8-bit integer PCM (offset 128).</summary>
    Pcm8,
    /// <summary>Signed 16-bit integer PCM.</summary>
    Pcm16,
    /// <summary>Signed 24-bit integer PCM (three bytes, little-endian); the TAU22 format.</summary>
    Pcm24,
    /// <summary>Signed 32-bit integer PCM.</summary>
    Pcm32,
    /// <summary>IEEE 754 single-precision float.</summary>
    Float32,
    /// <summary>IEEE 754 double-precision float.</summary>
    Float64,
}

/// <summary>Sizes and names of <see cref="WavSampleFormat"/> values.</summary>
public static class WavSampleFormats
{
    /// <summary>Bits per sample of <paramref name="format"/> (8, 16, 24, 32 or 64).</summary>
    public static int BitsPerSample(this WavSampleFormat format) => format switch
    {
        WavSampleFormat.Pcm8 => 8,
        WavSampleFormat.Pcm16 => 16,
        WavSampleFormat.Pcm24 => 24,
        WavSampleFormat.Pcm32 => 32,
        WavSampleFormat.Float32 => 32,
        WavSampleFormat.Float64 => 64,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "Unknown WAV sample format."),
    };

    /// <summary>Whether <paramref name="format"/> stores IEEE floats (WAVE_FORMAT_IEEE_FLOAT) rather than integers.</summary>
    public static bool IsFloat(this WavSampleFormat format) => format is WavSampleFormat.Float32 or WavSampleFormat.Float64;
}
