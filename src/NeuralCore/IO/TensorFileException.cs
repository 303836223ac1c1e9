namespace NeuralCore.IO;

/// <summary>
/// A tensor file (safetensors or NumPy <c>.npy</c>) is malformed, truncated or uses a feature NeuralCore
/// does not read. The message names the file, what was expected and what was found.
/// </summary>
public sealed class TensorFileException : IOException
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    /// <param name="path">The file (or the name given for a stream) the problem was found in.</param>
    /// <param name="message">The full message, which should already name <paramref name="path"/>.</param>
    /// <param name="innerException">The lower-level error that revealed the problem, if any.</param>
    public TensorFileException(string path, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Path = path;
    }

    /// <summary>The file (or the name given for a stream) the problem was found in.</summary>
    public string Path { get; }
}
