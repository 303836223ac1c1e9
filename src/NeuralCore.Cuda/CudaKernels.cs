using System.Security.Cryptography;
using System.Text;
using NeuralCore.Cuda.Interop;

namespace NeuralCore.Cuda;

/// <summary>The outcome of compiling one kernel source file for one architecture.</summary>
/// <param name="File">The source file, e.g. <c>elementwise.cu</c>.</param>
/// <param name="Architecture">The NVRTC target, e.g. <c>compute_80</c> or <c>sm_80</c>.</param>
/// <param name="Succeeded">True when NVRTC compiled the file.</param>
/// <param name="Skipped">True when this NVRTC does not know the architecture (nothing was compiled).</param>
/// <param name="Message">The compiler log, the error, or why it was skipped.</param>
/// <param name="Entries">The kernel entry points in the output (from the PTX), empty for CUBIN or on failure.</param>
public sealed record KernelCompileResult(string File, string Architecture, bool Succeeded, bool Skipped, string Message, IReadOnlyList<string> Entries);

/// <summary>
/// The CUDA kernel sources (<c>kernels/*.cu</c> at the repository root, embedded in this assembly) and their
/// compilation by NVRTC. Compiled images are cached on disk, keyed by the source hash, the architecture and
/// the NVRTC version, in <see cref="CacheDirectory"/>.
/// </summary>
public static class CudaKernels
{
    private const string ResourcePrefix = "NeuralCore.Cuda.Kernels.";

    private static readonly Lazy<Dictionary<string, string>> Sources = new(LoadSources);

    /// <summary>The kernel source files, one per op family (elementwise.cu, reductions.cu, ...).</summary>
    public static IReadOnlyList<string> Files => Sources.Value.Keys.Where(k => k.EndsWith(".cu", StringComparison.Ordinal)).Order().ToList();

    /// <summary>Where compiled kernels are cached: the <c>kernels</c> folder of NeuralCore's cache (<see cref="NeuralCore.IO.CacheFolder.Root"/>).</summary>
    public static string CacheDirectory => Path.Combine(NeuralCore.IO.CacheFolder.Root, "kernels");

    /// <summary>The source text of one kernel file (or of the shared header common.cuh).</summary>
    /// <exception cref="ArgumentException">No such file is embedded.</exception>
    public static string Source(string file) =>
        Sources.Value.TryGetValue(file, out var s) ? s
            : throw new ArgumentException($"No kernel source '{file}' is embedded; the files are {string.Join(", ", Sources.Value.Keys.Order())}.", nameof(file));

    /// <summary>The NVRTC version as (major, minor).</summary>
    /// <exception cref="CudaUnavailableException">NVRTC cannot be found.</exception>
    public static (int Major, int Minor) NvrtcVersion()
    {
        RequireNvrtc();
        return Nvrtc.Version();
    }

    /// <summary>The SM architectures the loaded NVRTC can target (75 = sm_75, ...).</summary>
    /// <exception cref="CudaUnavailableException">NVRTC cannot be found.</exception>
    public static IReadOnlyList<int> SupportedArchitectures()
    {
        RequireNvrtc();
        return Nvrtc.SupportedArchs();
    }

    /// <summary>
    /// Compiles every kernel file for each virtual architecture in <paramref name="computeCapabilities"/>
    /// (75 -> compute_75), without a GPU. Architectures this NVRTC does not know are reported as skipped with the reason.
    /// </summary>
    /// <exception cref="CudaUnavailableException">NVRTC cannot be found.</exception>
    public static IReadOnlyList<KernelCompileResult> CompileAll(params int[] computeCapabilities)
    {
        var results = new List<KernelCompileResult>();
        foreach (var cc in computeCapabilities)
            foreach (var file in Files)
                results.Add(CompileOne(file, cc));
        return results;
    }

    /// <summary>Compiles one kernel file for compute_<paramref name="cc"/>; skipped (with the reason) when this NVRTC does not know it.</summary>
    /// <exception cref="CudaUnavailableException">NVRTC cannot be found.</exception>
    public static KernelCompileResult CompileOne(string file, int cc)
    {
        var supported = SupportedArchitectures();
        var (major, minor) = Nvrtc.Version();
        var arch = $"compute_{cc}";
        if (!supported.Contains(cc))
            return new(file, arch, false, true,
                $"NVRTC {major}.{minor} does not support {arch} (it supports {string.Join(", ", supported.Select(a => $"compute_{a}"))})", []);
        try
        {
            var output = Compile(file, arch);
            return new(file, arch, true, false, output.Log, PtxEntries(output.Image));
        }
        catch (CudaException e)
        {
            return new(file, arch, false, false, e.Message, []);
        }
    }

    /// <summary>The NVRTC options every compilation uses (besides the architecture).</summary>
    internal static readonly string[] BaseOptions = ["--std=c++14", "-DNEURALCORE_KERNELS=1"];

    /// <summary>Compiles one file for <paramref name="arch"/> (compute_XY gives PTX, sm_XY gives CUBIN), bypassing the disk cache.</summary>
    internal static Nvrtc.Output Compile(string file, string arch)
    {
        RequireNvrtc();
        var headers = Sources.Value.Where(kv => kv.Key.EndsWith(".cuh", StringComparison.Ordinal)).ToDictionary(kv => kv.Key, kv => kv.Value);
        return Nvrtc.Compile(Source(file), file, headers, [$"--gpu-architecture={arch}", .. BaseOptions], cubin: arch.StartsWith("sm_", StringComparison.Ordinal));
    }

    /// <summary>
    /// The loadable image of <paramref name="file"/> for a device of compute capability <paramref name="cc"/> (80 for 8.0):
    /// CUBIN for sm_cc when NVRTC supports it, else PTX for the newest older virtual architecture it supports (the
    /// driver JIT-compiles that for the device). Read from the disk cache (<paramref name="cacheDirectory"/>, default
    /// <see cref="CacheDirectory"/>) when present, written there after compiling.
    /// </summary>
    internal static byte[] Image(string file, int cc, string? cacheDirectory = null)
    {
        var supported = SupportedArchitectures();
        string arch;
        if (supported.Contains(cc)) arch = $"sm_{cc}";
        else
        {
            var older = supported.Where(a => a < cc).DefaultIfEmpty(0).Max();
            if (older == 0)
                throw new CudaUnavailableException(
                    $"NVRTC {string.Join('.', NvrtcVersion())} cannot compile for this GPU (compute capability {cc / 10}.{cc % 10}); install a newer NVRTC (CUDA 12 or 13) and point NEURALCORE_CUDA_PATH at it.");
            arch = $"compute_{older}";
        }
        var path = Path.Combine(cacheDirectory ?? CacheDirectory, CacheFileName(file, arch));
        if (File.Exists(path))
        {
            try { return File.ReadAllBytes(path); }
            catch (IOException) { }
        }
        var image = Compile(file, arch).Image;
        WriteAtomically(path, image);
        return image;
    }

    /// <summary>The cache file name: source stem, architecture, NVRTC version and a hash of sources and options.</summary>
    internal static string CacheFileName(string file, string arch)
    {
        var (major, minor) = Nvrtc.Version();
        var key = new StringBuilder(Source(file));
        foreach (var header in Sources.Value.Where(kv => kv.Key.EndsWith(".cuh", StringComparison.Ordinal)).OrderBy(kv => kv.Key, StringComparer.Ordinal))
            key.Append('\0').Append(header.Key).Append('\0').Append(header.Value);
        key.Append('\0').Append(string.Join(' ', BaseOptions));
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key.ToString())))[..16];
        var ext = arch.StartsWith("sm_", StringComparison.Ordinal) ? "cubin" : "ptx";
        return $"{Path.GetFileNameWithoutExtension(file)}-{arch}-nvrtc{major}.{minor}-{hash}.{ext}";
    }

    private static void WriteAtomically(string path, byte[] bytes)
    {
        // NOTE: a cache that cannot be written (read-only home, full disk) only costs a recompile next time.
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var temp = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
            File.WriteAllBytes(temp, bytes);
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>The <c>.entry</c> names in PTX text.</summary>
    internal static IReadOnlyList<string> PtxEntries(byte[] ptx)
    {
        var text = Encoding.UTF8.GetString(ptx);
        var entries = new List<string>();
        const string marker = ".entry ";
        for (var at = text.IndexOf(marker, StringComparison.Ordinal); at >= 0; at = text.IndexOf(marker, at + 1, StringComparison.Ordinal))
        {
            var start = at + marker.Length;
            var end = start;
            while (end < text.Length && (char.IsLetterOrDigit(text[end]) || text[end] == '_')) end++;
            entries.Add(text[start..end]);
        }
        return entries;
    }

    private static void RequireNvrtc()
    {
        if (!NativeLibraries.Load(NativeLibraries.Nvrtc).Found)
            throw new CudaUnavailableException(CudaDiagnostics.MissingSentence(NativeLibraries.Nvrtc));
    }

    private static Dictionary<string, string> LoadSources()
    {
        var assembly = typeof(CudaKernels).Assembly;
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal)))
        {
            using var stream = assembly.GetManifestResourceStream(name)!;
            using var reader = new StreamReader(stream, Encoding.UTF8);
            result[name[ResourcePrefix.Length..]] = reader.ReadToEnd();
        }
        return result;
    }
}
