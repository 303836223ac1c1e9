using System.Text.Json;
using NeuralCore.Cuda;
using NeuralCore.Cuda.SelfTest;

namespace NeuralCore.Cli.Tests;

/// <summary>
/// The GPU-facing commands on any machine: <c>doctor</c> always reports; without a usable GPU, <c>--device cuda</c>
/// and <c>selftest</c> fail at once with one sentence and exit code 1 (those tests are skipped, with the reason,
/// on a machine that has a GPU).
/// </summary>
public class CudaCliTests
{
    private static readonly bool GpuUsable = CudaBackend.IsAvailable(out _);

    private static void RequireNoGpu() =>
        Assert.SkipWhen(GpuUsable, "A CUDA GPU is usable here, so the no-GPU error path cannot be exercised.");

    /// <summary>Asserts exit code 1 and stderr of exactly one line "error: CUDA ...", naming what to run next, without a stack trace.</summary>
    private static void AssertOneSentenceCudaError((int Code, string Out, string Err) result)
    {
        Assert.Equal(1, result.Code);
        var lines = result.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(lines.Length == 1, $"expected one line on stderr, got:\n{result.Err}");
        Assert.StartsWith("error: CUDA", lines[0]);
        Assert.Contains("neuralcore doctor", lines[0]);
        Assert.DoesNotContain(" at NeuralCore.", result.Err);
        Assert.DoesNotContain("internal error", result.Err);
    }

    [Fact]
    public void Doctor_PrintsEveryLibrary_TheNvrtcLine_AndWhetherTheGpuIsUsable()
    {
        var (code, stdout, stderr) = Cli.Run("doctor");
        Assert.True(code == 0, stderr);
        Assert.Contains("NeuralCore CUDA diagnostics", stdout);
        foreach (var library in new[] { "CUDA driver:", "NVRTC", "cuBLAS:", "cuDNN:", "Kernel cache:" })
            Assert.Contains(library, stdout);
        // The kernels are embedded resources: a build (or a trimmed single file) that lost them would list none.
        Assert.Contains("elementwise.cu", stdout);
        var gpuLine = stdout.Split('\n').Single(l => l.StartsWith("GPU: ", StringComparison.Ordinal));
        Assert.StartsWith(GpuUsable ? "GPU: usable" : "GPU: not usable. CUDA", gpuLine);
        // The CPU backend's kernels as this machine runs them (AVX2 in CI's pass with AVX-512 switched off).
        var cpuLine = stdout.Split('\n').Single(l => l.StartsWith("CPU: ", StringComparison.Ordinal));
        Assert.StartsWith($"CPU: {ExpectedVectorKernels} kernels", cpuLine);
    }

    /// <summary>What <c>CpuBackend.VectorKernels</c> should say here: the widest of AVX-512, AVX2 with FMA, or neither.</summary>
    private static string ExpectedVectorKernels =>
        System.Runtime.Intrinsics.X86.Avx512F.IsSupported && System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "AVX-512"
        : System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported ? "AVX2"
        : "scalar";

    [Fact]
    public void Doctor_Json_IsOneObjectWithTheReportAndTheVerdict()
    {
        var (code, stdout, stderr) = Cli.Run("doctor", "--json");
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        var root = json.RootElement;
        Assert.Contains("CUDA driver:", root.GetProperty("report").GetString());
        Assert.Contains("im2col.cu", root.GetProperty("kernel_sources").EnumerateArray().Select(f => f.GetString()));
        Assert.Equal(ExpectedVectorKernels, root.GetProperty("cpu").GetProperty("vector_kernels").GetString());
        Assert.True(root.GetProperty("cpu").GetProperty("threads").GetInt32() >= 1);
        var gpu = root.GetProperty("gpu");
        Assert.Equal(GpuUsable, gpu.GetProperty("usable").GetBoolean());
        if (!GpuUsable) Assert.StartsWith("CUDA", gpu.GetProperty("problem").GetString());
        var nvrtc = root.GetProperty("nvrtc");
        if (nvrtc.GetProperty("usable").GetBoolean())
        {
            Assert.Matches(@"^\d+\.\d+$", nvrtc.GetProperty("version").GetString());
            Assert.True(nvrtc.GetProperty("architectures").GetArrayLength() > 0);
        }
        else
        {
            Assert.Contains("NVRTC", nvrtc.GetProperty("problem").GetString());
        }
        // The human-readable report goes to stderr with --json, so stdout stays one parseable object.
        Assert.Contains("NeuralCore CUDA diagnostics", stderr);
    }

    public static readonly TheoryData<string[]> DeviceCommands = new(
        ["train", "--experiment-name", "nogpu", "--device", "cuda"],
        ["test", "--checkpoint", "missing.safetensors", "--device", "cuda"],
        ["predict", "--checkpoint", "missing.safetensors", "--input", "x.npy", "--output", "y.npy", "--device", "cuda"],
        ["prune", "--checkpoint", "missing.safetensors", "--ratio", "0.4", "--device", "cuda:0"],
        ["bench", "--device", "cuda", "--iterations", "1"],
        ["selftest"],
        ["selftest", "--device", "cuda", "--json"]);

    [Theory]
    [MemberData(nameof(DeviceCommands))]
    public void DeviceCuda_WithoutAGpu_FailsAtOnceWithOneSentence(string[] args)
    {
        RequireNoGpu();
        var result = Cli.Run(args);
        AssertOneSentenceCudaError(result);
        Assert.Equal("", result.Out);
    }

    [Fact]
    public void Reproduce_DeviceCuda_WithoutAGpu_FailsBeforeWritingAnything()
    {
        RequireNoGpu();
        var output = Path.Combine(Path.GetTempPath(), "nc-cuda-" + Guid.NewGuid().ToString("N"));
        var result = Cli.Run("reproduce", "mnist", "--device", "cuda", "--quick", "--out", output);
        AssertOneSentenceCudaError(result);
        Assert.False(Directory.Exists(output), "reproduce created its output folder before checking the device");
    }

    [Fact]
    public void SelfTest_OnTheCpu_IsAUsageError()
    {
        var (code, _, stderr) = Cli.Run("selftest", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("--device cuda", stderr);
    }

    [Fact]
    public void SelfTest_RejectsZeroIterations()
    {
        var (code, _, stderr) = Cli.Run("selftest", "--iterations", "0");
        Assert.Equal(2, code);
        Assert.Contains("--iterations must be at least 1", stderr);
    }

    [Fact]
    public void SelfTestLibrary_WithoutAGpu_ThrowsTheSameSentenceBeforeAnyWork()
    {
        RequireNoGpu();
        var e = Assert.Throws<CudaUnavailableException>(() => CudaSelfTest.Run(new SelfTestOptions()));
        Assert.StartsWith("CUDA", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void SelfTestLibrary_PruningWithoutAPruneFunction_IsRejected()
    {
        var options = new SelfTestOptions { Pruning = new SelfTestModel("m", _ => throw new InvalidOperationException("not called"), [1, 4, 4], 2) };
        var e = Assert.Throws<ArgumentException>(() => CudaSelfTest.Run(options));
        Assert.Contains("Prune", e.Message);
    }
}
