namespace NeuralCore.Audio;

/// <summary>A WAV file that cannot be decoded: malformed, truncated, or in an unsupported sample format.</summary>
public sealed class WavFormatException : IOException
{
    /// <summary>Creates the exception for the file <paramref name="path"/> with the human-readable <paramref name="reason"/>.</summary>
    public WavFormatException(string path, string reason)
        : base($"Cannot read the WAV file '{path}': {reason}")
    {
        Path = path;
        Reason = reason;
    }

    /// <summary>The file (or stream name) that failed to decode.</summary>
    public string Path { get; }

    /// <summary>What is wrong with it, without the path.</summary>
    public string Reason { get; }
}
