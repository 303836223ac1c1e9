namespace NeuralCore.IO;

/// <summary>Writes a file so that a crash or an exception never leaves a half-written file under its name.</summary>
public static class AtomicFile
{
    /// <summary>
    /// Runs <paramref name="write"/> on a temporary file in the destination folder, flushes it to disk,
    /// then renames it over <paramref name="path"/>. If anything fails, the temporary file is deleted and
    /// whatever was at <paramref name="path"/> before is left untouched.
    /// </summary>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string fullPath = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(fullPath)
            ?? throw new ArgumentException($"'{path}' names a root folder, not a file.", nameof(path));
        // NOTE: the temporary file must live in the destination folder: a rename is only atomic within one file system.
        string tempPath = Path.Combine(folder, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tempPath, fullPath, overwrite: true);
        }
        catch
        {
            TryDelete(tempPath);
            throw;
        }
    }

    /// <summary>Writes <paramref name="text"/> as UTF-8 (no byte-order mark) atomically.</summary>
    public static void WriteText(string path, string text) =>
        Write(path, stream => stream.Write(System.Text.Encoding.UTF8.GetBytes(text)));

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // The original error matters more than a leftover temporary file.
        }
        catch (UnauthorizedAccessException)
        {
            // Same as above.
        }
    }
}
