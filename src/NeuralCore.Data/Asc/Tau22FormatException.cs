namespace NeuralCore.Data;

/// <summary>A TAU22 metadata file that cannot be used: a missing column, a malformed row, an unknown label, a missing clip.</summary>
public sealed class Tau22FormatException : IOException
{
    /// <summary>Creates the exception for <paramref name="path"/> at 1-based <paramref name="line"/> (0: the whole file).</summary>
    public Tau22FormatException(string path, int line, string reason)
        : base(line > 0 ? $"{path}, line {line}: {reason}" : $"{path}: {reason}")
    {
        Path = path;
        Line = line;
        Reason = reason;
    }

    /// <summary>The CSV (or folder) at fault.</summary>
    public string Path { get; }

    /// <summary>The 1-based line number, or 0 when the problem concerns the whole file.</summary>
    public int Line { get; }

    /// <summary>What is wrong, without the location.</summary>
    public string Reason { get; }
}
