using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.InteropServices;

namespace NeuralCore.Cuda.Interop;

/// <summary>One native library NeuralCore.Cuda binds: how it is named and what it needs loaded first.</summary>
/// <param name="ImportName">The name the <c>[LibraryImport]</c> declarations use (cuda, nvrtc, cublas, cudnn).</param>
/// <param name="Display">A human name for diagnostics.</param>
/// <param name="Majors">Major versions to try, newest first, with the file name of each.</param>
/// <param name="Dependencies">For a major version, the dependency files (glob patterns allowed) preloaded from the same folder, in load order.</param>
/// <param name="RequiredDependencies">Dependency patterns whose absence makes the library unusable.</param>
/// <param name="WheelPackages">The folder names under site-packages/nvidia that hold it in CUDA 12 Python wheels.</param>
/// <param name="CappedByDriver">True when a version newer than the driver's CUDA major cannot work.</param>
internal sealed record LibrarySpec(
    string ImportName,
    string Display,
    (int Major, string File)[] Majors,
    Func<int, string[]> Dependencies,
    string[] RequiredDependencies,
    string[] WheelPackages,
    bool CappedByDriver);

/// <summary>Where a library was looked for and what was loaded.</summary>
internal sealed class LibraryLoad
{
    /// <summary>The library's spec.</summary>
    public required LibrarySpec Spec { get; init; }

    /// <summary>The dlopen handle, or zero when not found.</summary>
    public nint Handle { get; init; }

    /// <summary>The file that was loaded, when found.</summary>
    public string? Path { get; init; }

    /// <summary>Which search step found it (environment variable, app folder, Python wheel, CUDA_HOME, system).</summary>
    public string? Source { get; init; }

    /// <summary>The major version that was loaded.</summary>
    public int Major { get; init; }

    /// <summary>Dependencies loaded by absolute path, in order.</summary>
    public List<string> LoadedDependencies { get; } = [];

    /// <summary>Dependency patterns that were not found beside the library.</summary>
    public List<string> MissingDependencies { get; } = [];

    /// <summary>Every candidate tried, with why it was rejected.</summary>
    public List<string> Tried { get; } = [];

    /// <summary>True when the library and its required dependencies are loaded.</summary>
    public bool Found => Handle != 0;
}

/// <summary>
/// Finds and loads the CUDA libraries for the <c>[LibraryImport]</c> bindings. Search order, per library:
/// the folders in <c>NEURALCORE_CUDA_PATH</c>; the application folder; Python wheel folders
/// (<c>site-packages/nvidia/cu13/lib</c>, <c>site-packages/nvidia/&lt;package&gt;/lib</c>); <c>CUDA_HOME</c>
/// (or <c>CUDA_PATH</c>, else <c>/usr/local/cuda</c>) <c>/lib64</c>; then the system loader. Within each
/// step the newest major version wins, skipping majors newer than the driver's CUDA version where that
/// matters. Dependencies (nvrtc-builtins, cublasLt, the cuDNN sub-libraries) are preloaded by absolute
/// path from the folder the library was found in, so the library's own lookups find them.
/// </summary>
internal static class NativeLibraries
{
    /// <summary>The environment variable naming extra folders to search first (separated by the OS path separator).</summary>
    public const string PathVariable = "NEURALCORE_CUDA_PATH";

    /// <summary>The driver API, part of the NVIDIA driver (never shipped with an application).</summary>
    public static readonly LibrarySpec Driver = new("cuda", "CUDA driver", [(0, "libcuda.so.1")], _ => [], [], [], CappedByDriver: false);

    /// <summary>The runtime compiler.</summary>
    public static readonly LibrarySpec Nvrtc = new("nvrtc", "NVRTC",
        [(13, "libnvrtc.so.13"), (12, "libnvrtc.so.12"), (11, "libnvrtc.so.11.2")],
        major => [$"libnvrtc-builtins.so.{major}.*"], [$"libnvrtc-builtins.so.*"], ["cuda_nvrtc"], CappedByDriver: true);

    /// <summary>cuBLAS (and cuBLASLt, which it links against).</summary>
    public static readonly LibrarySpec Cublas = new("cublas", "cuBLAS",
        [(13, "libcublas.so.13"), (12, "libcublas.so.12"), (11, "libcublas.so.11")],
        major => [$"libcublasLt.so.{major}"], ["libcublasLt.so.*"], ["cublas"], CappedByDriver: true);

    /// <summary>cuDNN 9; its front library loads the sub-libraries on demand, so they are preloaded in dependency order.</summary>
    public static readonly LibrarySpec Cudnn = new("cudnn", "cuDNN",
        [(9, "libcudnn.so.9")],
        _ =>
        [
            "libcudnn_graph.so.9", "libcudnn_engines_precompiled.so.9", "libcudnn_engines_runtime_compiled.so.9",
            "libcudnn_heuristic.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9", "libcudnn_adv.so.9",
        ],
        ["libcudnn_graph.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9"], ["cudnn"], CappedByDriver: false);

    /// <summary>Every library, in the order dependencies between them require (cuDNN uses cuBLAS and NVRTC).</summary>
    public static readonly LibrarySpec[] All = [Driver, Nvrtc, Cublas, Cudnn];

    private static readonly ConcurrentDictionary<string, Lazy<LibraryLoad>> Loads = new();
    private static int _registered;
    private static readonly Lazy<int> DriverMajorLazy = new(ReadDriverMajor);

    /// <summary>Installs the resolver for this assembly's <c>[LibraryImport]</c> declarations (idempotent).</summary>
    public static void EnsureRegistered()
    {
        if (Interlocked.Exchange(ref _registered, 1) == 1) return;
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        var spec = All.FirstOrDefault(s => s.ImportName == name);
        return spec is null ? 0 : Load(spec).Handle;
    }

    /// <summary>Loads <paramref name="spec"/> once (later calls return the same result).</summary>
    public static LibraryLoad Load(LibrarySpec spec) =>
        Loads.GetOrAdd(spec.ImportName, _ => new Lazy<LibraryLoad>(() => Search(spec))).Value;

    /// <summary>The driver's CUDA major version (12 for a 12.x driver), or 0 when no driver can be loaded.</summary>
    public static int DriverMajor => DriverMajorLazy.Value;

    private static int ReadDriverMajor()
    {
        if (!Load(Driver).Found) return 0;
        return CudaDriver.cuDriverGetVersion(out var version) == 0 ? version / 1000 : 0;
    }

    /// <summary>The search steps in order: (label, folder). The system loader comes after these.</summary>
    public static List<(string Source, string Folder)> SearchFolders(LibrarySpec spec, Func<string, string?> env)
    {
        var result = new List<(string, string)>();
        var custom = env(PathVariable);
        if (!string.IsNullOrWhiteSpace(custom))
            foreach (var f in custom.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                result.Add(($"{PathVariable}", f));
        result.Add(("application folder", AppContext.BaseDirectory));
        if (spec.WheelPackages.Length > 0)
        {
            foreach (var site in SitePackages(env))
            {
                result.Add(("Python wheel (nvidia/cu13)", Path.Combine(site, "nvidia", "cu13", "lib")));
                foreach (var pkg in spec.WheelPackages) result.Add(($"Python wheel (nvidia/{pkg})", Path.Combine(site, "nvidia", pkg, "lib")));
            }
            var conda = env("CONDA_PREFIX");
            if (!string.IsNullOrWhiteSpace(conda)) result.Add(("conda environment", Path.Combine(conda, "lib")));
        }
        var cudaHome = env("CUDA_HOME");
        if (string.IsNullOrWhiteSpace(cudaHome)) cudaHome = env("CUDA_PATH");
        if (string.IsNullOrWhiteSpace(cudaHome)) cudaHome = "/usr/local/cuda";
        if (spec != Driver)
        {
            result.Add(("CUDA_HOME", Path.Combine(cudaHome, "lib64")));
            result.Add(("CUDA_HOME", Path.Combine(cudaHome, "targets", "x86_64-linux", "lib")));
        }
        // WSL puts the driver library here, outside the loader's default path.
        if (spec == Driver) result.Add(("WSL driver folder", "/usr/lib/wsl/lib"));
        return result.Distinct().ToList();
    }

    /// <summary>The Python site-packages folders that exist: the active virtual or conda environment, the user's and the system's.</summary>
    public static List<string> SitePackages(Func<string, string?> env)
    {
        var roots = new List<string>();
        foreach (var variable in new[] { "VIRTUAL_ENV", "CONDA_PREFIX" })
        {
            var v = env(variable);
            if (!string.IsNullOrWhiteSpace(v)) roots.Add(Path.Combine(v, "lib"));
        }
        var home = env("HOME");
        if (!string.IsNullOrWhiteSpace(home)) roots.Add(Path.Combine(home, ".local", "lib"));
        roots.AddRange(["/usr/local/lib", "/usr/lib", "/opt/conda/lib"]);
        var result = new List<string>();
        var pythonPath = env("PYTHONPATH");
        if (!string.IsNullOrWhiteSpace(pythonPath))
            result.AddRange(pythonPath.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).Where(Directory.Exists));
        foreach (var root in roots)
        {
            if (!Directory.Exists(root)) continue;
            // Newest Python first: python3.12 before python3.10 (ordinal order breaks at 3.9 vs 3.10).
            var pythons = SafeDirectories(root, "python3*")
                .OrderByDescending(p => Version.TryParse(Path.GetFileName(p)["python".Length..], out var v) ? v : new Version(0, 0));
            foreach (var py in pythons)
                foreach (var sub in new[] { "site-packages", "dist-packages" })
                {
                    var dir = Path.Combine(py, sub);
                    if (Directory.Exists(dir)) result.Add(dir);
                }
        }
        if (Directory.Exists("/usr/lib/python3/dist-packages")) result.Add("/usr/lib/python3/dist-packages");
        return result.Distinct().ToList();
    }

    private static string[] SafeDirectories(string root, string pattern)
    {
        try { return Directory.GetDirectories(root, pattern); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
    }

    /// <summary>The major versions to try, newest first, leaving out majors newer than the driver where that matters.</summary>
    public static (int Major, string File)[] AllowedMajors(LibrarySpec spec, int driverMajor) =>
        spec.CappedByDriver && driverMajor > 0 ? spec.Majors.Where(m => m.Major <= driverMajor).ToArray() : spec.Majors;

    private static LibraryLoad Search(LibrarySpec spec)
    {
        // cuDNN's sub-libraries link against cuBLAS(Lt) and load NVRTC by name: have ours loaded first.
        if (spec == Cudnn) { Load(Cublas); Load(Nvrtc); }
        // The driver cap needs the driver loaded first; the driver itself is never capped.
        var driverMajor = spec.CappedByDriver ? DriverMajor : 0;
        return Search(spec, SearchFolders(spec, Environment.GetEnvironmentVariable), driverMajor, trySystem: true);
    }

    /// <summary>Searches <paramref name="folders"/> in order (newest allowed major first within each), then the system loader when <paramref name="trySystem"/>.</summary>
    internal static LibraryLoad Search(LibrarySpec spec, IEnumerable<(string Source, string Folder)> folders, int driverMajor, bool trySystem)
    {
        var majors = AllowedMajors(spec, driverMajor);
        var tried = new List<string>();
        if (majors.Length < spec.Majors.Length)
            tried.Add($"skipped {string.Join(", ", spec.Majors.Except(majors).Select(m => m.File))}: newer than the driver's CUDA {driverMajor}");
        foreach (var (source, folder) in folders)
        {
            if (!Directory.Exists(folder)) continue;
            foreach (var (major, file) in majors)
            {
                var path = Path.Combine(folder, file);
                if (!File.Exists(path)) continue;
                var load = TryLoadFrom(spec, major, path, source, folder, tried);
                if (load is not null) return load;
            }
        }
        if (trySystem)
        {
            foreach (var (major, file) in majors)
            {
                if (!NativeLibrary.TryLoad(file, out var handle))
                {
                    tried.Add($"{file}: not found by the system loader");
                    continue;
                }
                var path = LoadedFilePath(file) ?? file;
                var load = new LibraryLoad { Spec = spec, Handle = handle, Path = path, Source = "system", Major = major };
                load.Tried.AddRange(tried);
                // The system loader resolves the dependencies itself; preload only those beside the loaded file.
                var folder = System.IO.Path.GetDirectoryName(path);
                if (folder is not null && Directory.Exists(folder)) PreloadDependencies(load, folder, required: false);
                return load;
            }
        }
        var missing = new LibraryLoad { Spec = spec };
        missing.Tried.AddRange(tried);
        return missing;
    }

    private static LibraryLoad? TryLoadFrom(LibrarySpec spec, int major, string path, string source, string folder, List<string> tried)
    {
        var load = new LibraryLoad { Spec = spec, Handle = 0, Path = path, Source = source, Major = major };
        if (!PreloadDependencies(load, folder, required: true))
        {
            tried.Add($"{path}: missing {string.Join(", ", load.MissingDependencies)} beside it");
            return null;
        }
        if (!NativeLibrary.TryLoad(path, out var handle))
        {
            tried.Add($"{path}: present but could not be loaded (wrong architecture or missing system dependency)");
            return null;
        }
        var result = new LibraryLoad { Spec = spec, Handle = handle, Path = path, Source = source, Major = major };
        result.LoadedDependencies.AddRange(load.LoadedDependencies);
        result.MissingDependencies.AddRange(load.MissingDependencies);
        result.Tried.AddRange(tried);
        return result;
    }

    /// <summary>Loads the spec's dependencies from <paramref name="folder"/>; false when a required one is absent and <paramref name="required"/>.</summary>
    private static bool PreloadDependencies(LibraryLoad load, string folder, bool required)
    {
        foreach (var pattern in load.Spec.Dependencies(load.Major))
        {
            var file = FindInFolder(folder, pattern);
            var isRequired = load.Spec.RequiredDependencies.Any(r => Matches(r, pattern));
            if (file is null || !NativeLibrary.TryLoad(file, out _))
            {
                load.MissingDependencies.Add(file is null ? pattern : $"{pattern} (present but could not be loaded)");
                if (required && isRequired) return false;
                continue;
            }
            load.LoadedDependencies.Add(file);
        }
        return true;
    }

    /// <summary>The newest file in <paramref name="folder"/> matching <paramref name="pattern"/> (a file name, or one with a * wildcard).</summary>
    internal static string? FindInFolder(string folder, string pattern)
    {
        if (!pattern.Contains('*'))
        {
            var exact = Path.Combine(folder, pattern);
            return File.Exists(exact) ? exact : null;
        }
        try
        {
            return Directory.GetFiles(folder, pattern)
                .OrderByDescending(f => VersionSuffix(Path.GetFileName(f)))
                .FirstOrDefault();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    private static bool Matches(string required, string pattern) =>
        required == pattern || (required.EndsWith('*') && pattern.StartsWith(required[..^1], StringComparison.Ordinal));

    /// <summary>The numeric suffix after ".so." as a Version (libnvrtc-builtins.so.12.4 -> 12.4), for picking the newest.</summary>
    private static Version VersionSuffix(string file)
    {
        var at = file.IndexOf(".so.", StringComparison.Ordinal);
        if (at < 0) return new Version(0, 0);
        var parts = file[(at + 4)..].Split('.').Select(p => int.TryParse(p, out var v) ? v : 0).Take(4).ToList();
        while (parts.Count < 2) parts.Add(0);
        return parts.Count switch
        {
            2 => new Version(parts[0], parts[1]),
            3 => new Version(parts[0], parts[1], parts[2]),
            _ => new Version(parts[0], parts[1], parts[2], parts[3]),
        };
    }

    /// <summary>The absolute path of a library the system loader found, read from /proc/self/maps (null elsewhere).</summary>
    private static string? LoadedFilePath(string soname)
    {
        const string maps = "/proc/self/maps";
        if (!File.Exists(maps)) return null;
        var stem = soname[..(soname.IndexOf(".so", StringComparison.Ordinal) + 3)];
        try
        {
            foreach (var line in File.ReadLines(maps))
            {
                var slash = line.IndexOf('/');
                if (slash < 0) continue;
                var path = line[slash..].Trim();
                if (Path.GetFileName(path).StartsWith(stem + ".", StringComparison.Ordinal)) return path;
            }
        }
        catch (IOException) { return null; }
        return null;
    }
}
