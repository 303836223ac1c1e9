using NeuralCore.Cuda.Interop;

namespace NeuralCore.Cuda.Tests;

/// <summary>How the CUDA libraries are searched for and what is reported when they are missing.</summary>
public class LibraryResolverTests
{
    private static Func<string, string?> Env(Dictionary<string, string> values) => name => values.GetValueOrDefault(name);

    /// <summary>
    /// NeuralCore's own kernels are the default (cuDNN ran CP-ResNet slower on an H200, see docs/cuda.md);
    /// NEURALCORE_CUDNN=1 turns cuDNN on; the flags accept 1/0, true/false, yes/no, on/off, and ignore anything else.
    /// </summary>
    [Fact]
    public void CudnnIsOptInThroughTheEnvironment()
    {
        var defaults = CudaOptions.FromEnvironment(Env([]));
        Assert.False(defaults.UseCudnn);
        Assert.False(defaults.AllowTf32);
        Assert.False(defaults.CudnnBenchmark);
        Assert.Equal(new CudaOptions(), defaults);
        foreach (var on in new[] { "1", "true", " Yes ", "ON" })
            Assert.True(CudaOptions.FromEnvironment(Env(new() { ["NEURALCORE_CUDNN"] = on })).UseCudnn, on);
        foreach (var off in new[] { "0", "false", "no", "off", "maybe", "" })
            Assert.False(CudaOptions.FromEnvironment(Env(new() { ["NEURALCORE_CUDNN"] = off })).UseCudnn, off);
        var all = CudaOptions.FromEnvironment(Env(new()
        {
            ["NEURALCORE_CUDNN"] = "1", ["NEURALCORE_CUDA_TF32"] = "1", ["NEURALCORE_CUDNN_BENCHMARK"] = "true",
        }));
        Assert.True(all.UseCudnn && all.AllowTf32 && all.CudnnBenchmark);
    }

    [Fact]
    public void TheEnvironmentVariableComesFirstThenTheAppFolderThenWheelsThenCudaHome()
    {
        var sep = Path.PathSeparator;
        var folders = NativeLibraries.SearchFolders(NativeLibraries.Cublas,
            Env(new() { ["NEURALCORE_CUDA_PATH"] = $"/opt/a{sep}/opt/b", ["CUDA_HOME"] = "/opt/cuda", ["HOME"] = "/nonexistent-home" }));
        Assert.Equal(("NEURALCORE_CUDA_PATH", "/opt/a"), folders[0]);
        Assert.Equal(("NEURALCORE_CUDA_PATH", "/opt/b"), folders[1]);
        Assert.Equal("application folder", folders[2].Source);
        var cudaHome = folders.FindIndex(f => f.Folder == "/opt/cuda/lib64");
        Assert.True(cudaHome > 2);
        Assert.All(folders.Take(cudaHome).Skip(3), f => Assert.StartsWith("Python wheel", f.Source));
    }

    [Fact]
    public void WheelFoldersListCuda13BeforeThePerPackageFolder()
    {
        var site = Path.Combine(Path.GetTempPath(), $"nc-site-{Guid.NewGuid():N}");
        var venv = Path.Combine(site, "venv");
        var sitePackages = Path.Combine(venv, "lib", "python3.12", "site-packages");
        Directory.CreateDirectory(sitePackages);
        try
        {
            var folders = NativeLibraries.SearchFolders(NativeLibraries.Nvrtc, Env(new() { ["VIRTUAL_ENV"] = venv, ["HOME"] = "/nonexistent-home" }));
            var cu13 = folders.FindIndex(f => f.Folder == Path.Combine(sitePackages, "nvidia", "cu13", "lib"));
            var cu12 = folders.FindIndex(f => f.Folder == Path.Combine(sitePackages, "nvidia", "cuda_nvrtc", "lib"));
            Assert.True(cu13 >= 0 && cu12 == cu13 + 1, string.Join("\n", folders));
        }
        finally
        {
            Directory.Delete(site, recursive: true);
        }
    }

    [Fact]
    public void MajorsNewerThanTheDriverAreNotTried()
    {
        Assert.Equal([13, 12, 11], NativeLibraries.AllowedMajors(NativeLibraries.Nvrtc, 0).Select(m => m.Major));
        Assert.Equal([12, 11], NativeLibraries.AllowedMajors(NativeLibraries.Nvrtc, 12).Select(m => m.Major));
        Assert.Equal([12, 11], NativeLibraries.AllowedMajors(NativeLibraries.Cublas, 12).Select(m => m.Major));
        Assert.Equal([9], NativeLibraries.AllowedMajors(NativeLibraries.Cudnn, 12).Select(m => m.Major));
    }

    [Fact]
    public void ALibraryWithoutItsRequiredDependencyBesideItIsRejectedWithTheReason()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"nc-lib-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            File.WriteAllText(Path.Combine(dir, "libcublas.so.12"), "not a library");
            var load = NativeLibraries.Search(NativeLibraries.Cublas, [("test folder", dir)], driverMajor: 0, trySystem: false);
            Assert.False(load.Found);
            Assert.Contains(load.Tried, t => t.Contains("libcublas.so.12") && t.Contains("libcublasLt.so.12"));
            // A dependency that is present but not a loadable library is reported as such.
            File.WriteAllText(Path.Combine(dir, "libcublasLt.so.12"), "not a library either");
            load = NativeLibraries.Search(NativeLibraries.Cublas, [("test folder", dir)], driverMajor: 0, trySystem: false);
            Assert.False(load.Found);
            Assert.Contains(load.Tried, t => t.Contains("libcublasLt.so.12 (present but could not be loaded)"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void TheNewestVersionedDependencyIsPicked()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"nc-dep-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            foreach (var v in new[] { "12.4", "12.10", "12.9" }) File.WriteAllText(Path.Combine(dir, $"libnvrtc-builtins.so.{v}"), "");
            Assert.Equal(Path.Combine(dir, "libnvrtc-builtins.so.12.10"), NativeLibraries.FindInFolder(dir, "libnvrtc-builtins.so.12.*"));
            Assert.Null(NativeLibraries.FindInFolder(dir, "libnvrtc-builtins.so.13.*"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void NvrtcIsFoundWithItsBuiltins()
    {
        Requirements.Nvrtc();
        var load = NativeLibraries.Load(NativeLibraries.Nvrtc);
        Assert.True(load.Found);
        Assert.True(File.Exists(load.Path), load.Path);
        Assert.Contains(load.Major, new[] { 11, 12, 13 });
        var (major, _) = CudaKernels.NvrtcVersion();
        Assert.Equal(load.Major, major);
        // Found in a folder: builtins preloaded from beside it; found by the system loader: resolved by NVRTC itself.
        if (load.Source != "system") Assert.Contains(load.LoadedDependencies, d => Path.GetFileName(d).StartsWith("libnvrtc-builtins.so.", StringComparison.Ordinal));
        Assert.Contains(CudaKernels.SupportedArchitectures(), a => a == 75);
    }

    [Fact]
    public void WithoutADriverUsingCudaFailsAtOnceWithOneSentence()
    {
        Assert.SkipWhen(NativeLibraries.Load(NativeLibraries.Driver).Found,
            "An NVIDIA driver (libcuda.so.1) is installed here, so the no-driver message cannot be observed.");
        var e = Assert.Throws<CudaUnavailableException>(() => new CudaBackend(0));
        Assert.Contains("libcuda.so.1", e.Message);
        Assert.Contains("nvidia-smi", e.Message);
        Assert.Contains("NEURALCORE_CUDA_PATH", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        // One sentence: it ends with a full stop and no second sentence starts inside it.
        Assert.EndsWith(".", e.Message);
        Assert.DoesNotMatch(@"\.\s+[A-Z]", e.Message);

        Assert.False(CudaBackend.IsAvailable(out var reason));
        Assert.Equal(e.Message, reason);

        // Through the registry, as `--device cuda` and Device.Cuda(0) do.
        CudaBackend.Register();
        var viaDevice = Assert.Throws<CudaUnavailableException>(() => Tensor.Zeros([2], Device.Cuda(0)));
        Assert.Equal(e.Message, viaDevice.Message);
    }

    [Fact]
    public void DiagnosticsSayWhatIsMissingAndHowToFixIt()
    {
        var report = CudaDiagnostics.Report();
        Assert.Contains("NEURALCORE_CUDA_PATH", report);
        Assert.Contains("Kernel cache:", report);
        foreach (var name in new[] { "CUDA driver:", "NVRTC:", "cuBLAS:", "cuDNN:" }) Assert.Contains(name, report);
        if (!NativeLibraries.Load(NativeLibraries.Driver).Found) Assert.Contains("CUDA driver: MISSING. Install the NVIDIA driver", report);
        if (NativeLibraries.Load(NativeLibraries.Nvrtc).Found)
            Assert.Contains($"NVRTC: {NativeLibraries.Load(NativeLibraries.Nvrtc).Path}", report);
        if (!NativeLibraries.Load(NativeLibraries.Cudnn).Found) Assert.Contains("pip install nvidia-cudnn-cu12", report);
    }
}
