using NeuralCore.Cuda.Interop;

namespace NeuralCore.Cuda.Tests;

/// <summary>
/// What a test needs from the machine, as dynamic skips: a test that cannot run here is reported as skipped
/// with the reason, never as passed.
/// </summary>
internal static class Requirements
{
    private static readonly Lazy<(bool Ok, string Reason)> GpuState = new(() =>
    {
        var ok = CudaBackend.IsAvailable(out var reason);
        if (ok) CudaBackend.Register(new CudaOptions());
        return (ok, reason);
    });

    /// <summary>Skips the calling test unless a CUDA GPU is usable.</summary>
    public static void Gpu()
    {
        var (ok, reason) = GpuState.Value;
        Assert.SkipUnless(ok, $"No usable CUDA GPU: {reason}");
    }

    /// <summary>Skips unless cuDNN is installed (after <see cref="Gpu"/>).</summary>
    public static void Cudnn()
    {
        Gpu();
        Assert.SkipUnless(NativeLibraries.Load(NativeLibraries.Cudnn).Found, "cuDNN 9 (libcudnn.so.9) is not installed; the cuDNN path cannot be tested.");
    }

    /// <summary>
    /// Skips unless NVRTC is installed; in CI (CI=true) a missing NVRTC fails instead, because CI installs it
    /// (.ci/install-nvrtc.sh) and every kernel must be compiled there.
    /// </summary>
    public static void Nvrtc()
    {
        if (NativeLibraries.Load(NativeLibraries.Nvrtc).Found) return;
        var message = "NVRTC (libnvrtc.so.13/.12/.11.2) is not installed; run .ci/install-nvrtc.sh (Debian) or see docs/cuda.md.";
        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase)) Assert.Fail(message);
        Assert.Skip(message);
    }
}
