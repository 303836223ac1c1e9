using System.Runtime.InteropServices;
using System.Text;
using NeuralCore.Cuda.Interop;

namespace NeuralCore.Cuda;

/// <summary>
/// What the CUDA backend can find on this machine: which library was loaded from where, the driver and its
/// GPUs, and, for anything missing, how to fix it. <see cref="Report"/> is what <c>neuralcore doctor</c> prints.
/// </summary>
public static class CudaDiagnostics
{
    /// <summary>
    /// A multi-line report: the search settings, then one block per library (driver, NVRTC, cuBLAS, cuDNN)
    /// saying where it was found (and the dependencies preloaded) or that it is missing with the fix, then the
    /// GPUs the driver sees and the kernel cache folder. Loads the libraries but never throws.
    /// </summary>
    public static string Report()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"NeuralCore CUDA diagnostics ({RuntimeInformation.OSDescription.Trim()}, {RuntimeInformation.ProcessArchitecture})");
        sb.AppendLine($"  {NativeLibraries.PathVariable} = {Environment.GetEnvironmentVariable(NativeLibraries.PathVariable) ?? "(not set)"}");
        sb.AppendLine($"  CUDA_HOME = {Environment.GetEnvironmentVariable("CUDA_HOME") ?? "(not set)"}");
        var sites = NativeLibraries.SitePackages(Environment.GetEnvironmentVariable);
        sb.AppendLine($"  Python site-packages searched: {(sites.Count == 0 ? "(none found)" : string.Join(", ", sites))}");
        foreach (var spec in NativeLibraries.All)
        {
            LibraryLoad load;
            try { load = NativeLibraries.Load(spec); }
            catch (Exception e) { sb.AppendLine($"{spec.Display}: search failed: {e.Message}"); continue; }
            if (load.Found)
            {
                sb.AppendLine($"{spec.Display}: {load.Path} (from {load.Source}){VersionSuffix(spec)}");
                foreach (var dep in load.LoadedDependencies) sb.AppendLine($"  preloaded {dep}");
                foreach (var dep in load.MissingDependencies) sb.AppendLine($"  not found beside it: {dep}");
            }
            else
            {
                sb.AppendLine($"{spec.Display}: MISSING. {Fix(spec)}");
                foreach (var t in load.Tried) sb.AppendLine($"  tried {t}");
            }
        }
        AppendDevices(sb);
        sb.AppendLine($"Kernel cache: {CudaKernels.CacheDirectory}");
        return sb.ToString();
    }

    private static string VersionSuffix(LibrarySpec spec)
    {
        try
        {
            if (spec == NativeLibraries.Driver)
                return CudaDriver.cuDriverGetVersion(out var v) == 0 ? $", driver API for CUDA {v / 1000}.{v % 1000 / 10}" : "";
            if (spec == NativeLibraries.Nvrtc)
            {
                var (major, minor) = Nvrtc.Version();
                return $", version {major}.{minor}, targets {string.Join(" ", Nvrtc.SupportedArchs().Select(a => $"sm_{a}"))}";
            }
            if (spec == NativeLibraries.Cublas) return $", version {Cublas.Version()}";
            return $", version {Cudnn.Version()}";
        }
        catch (Exception e) when (e is CudaException or EntryPointNotFoundException or DllNotFoundException)
        {
            return $" (version query failed: {e.Message})";
        }
    }

    private static void AppendDevices(StringBuilder sb)
    {
        if (!NativeLibraries.Load(NativeLibraries.Driver).Found) return;
        var init = CudaDriver.cuInit(0);
        if (init != 0)
        {
            sb.AppendLine($"GPUs: none usable: cuInit failed with {CudaDriver.ErrorName(init)} ({CudaDriver.ErrorString(init)}); check `nvidia-smi`.");
            return;
        }
        if (CudaDriver.cuDeviceGetCount(out var count) != 0 || count == 0)
        {
            sb.AppendLine("GPUs: the driver sees none; check `nvidia-smi`.");
            return;
        }
        for (var i = 0; i < count; i++)
        {
            try
            {
                var device = CudaDevice.Get(i);
                CudaDriver.Check(CudaDriver.cuDeviceTotalMem(out var total, device.Handle), "cuDeviceTotalMem");
                sb.AppendLine($"GPU {device}, {(long)total >> 20} MiB, cuDNN {(device.HasCudnn ? "installed (used with NEURALCORE_CUDNN=1)" : "absent")}");
            }
            catch (Exception e) when (e is CudaException or CudaUnavailableException)
            {
                sb.AppendLine($"GPU cuda:{i}: unusable: {e.Message}");
            }
        }
    }

    /// <summary>How to provide a missing library.</summary>
    internal static string Fix(LibrarySpec spec)
    {
        var names = string.Join(", ", spec.Majors.Select(m => m.File));
        var where = $"or set {NativeLibraries.PathVariable} to the folder that holds it";
        if (spec == NativeLibraries.Driver)
            return $"Install the NVIDIA driver (it provides {names}) and check it with `nvidia-smi`, {where}.";
        if (spec == NativeLibraries.Nvrtc)
            return $"Install NVRTC ({names}): `pip install nvidia-cuda-nvrtc-cu12`, the CUDA toolkit, or on Debian `apt-get install libnvrtc11.2` from non-free, {where}.";
        if (spec == NativeLibraries.Cublas)
            return $"Install cuBLAS ({names}): `pip install nvidia-cublas-cu12` or the CUDA toolkit, {where}.";
        return $"Optional: install cuDNN 9 ({names}) with `pip install nvidia-cudnn-cu12` for faster convolutions, {where}; without it NeuralCore's own kernels are used.";
    }

    /// <summary>The one-sentence reason CUDA cannot be used because <paramref name="spec"/> is missing.</summary>
    internal static string MissingSentence(LibrarySpec spec)
    {
        var names = string.Join(", ", spec.Majors.Select(m => m.File));
        var load = NativeLibraries.Load(spec);
        var skipped = load.Tried.FirstOrDefault(t => t.StartsWith("skipped", StringComparison.Ordinal));
        var why = skipped is null ? "" : $" ({skipped})";
        if (spec == NativeLibraries.Driver)
            return $"CUDA is not available: the NVIDIA driver library {names} was not found on this machine; install the NVIDIA driver and check it with `nvidia-smi`, or set {NativeLibraries.PathVariable} to the folder that holds {names} (`neuralcore doctor` lists where NeuralCore looked).";
        return $"CUDA is not available: {spec.Display} ({names}) was not found{why}; {char.ToLowerInvariant(Fix(spec)[0])}{Fix(spec)[1..^1]} (`neuralcore doctor` lists where NeuralCore looked).";
    }
}
