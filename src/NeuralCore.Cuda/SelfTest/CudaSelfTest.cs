using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using NeuralCore.Cuda.Interop;

namespace NeuralCore.Cuda.SelfTest;

/// <summary>
/// The GPU self-test behind <c>neuralcore selftest --device cuda</c>: compiles every kernel for the GPU's
/// architecture, runs the op conformance suite against the CPU backend (with cuDNN and with NeuralCore's own
/// kernels), a short training run and structural pruning on the GPU, and times training and inference.
/// </summary>
/// <example>
/// <code>
/// var report = CudaSelfTest.Run(new SelfTestOptions { Progress = Console.Out });
/// Console.WriteLine(report.Passed ? "all checks passed" : $"{report.FailedCount} checks failed");
/// </code>
/// </example>
public static partial class CudaSelfTest
{
    /// <summary>
    /// Runs the self-test. A failing check is recorded (with the worst element or the error) and the run goes on;
    /// only a missing GPU stops it, before any work. Leaves <c>Device.Cuda(i)</c> registered with
    /// <see cref="SelfTestOptions.Backend"/>'s settings.
    /// </summary>
    /// <exception cref="CudaUnavailableException">No usable GPU, driver, NVRTC or cuBLAS: one sentence saying what is missing and how to check.</exception>
    public static SelfTestReport Run(SelfTestOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Pruning is not null && options.Prune is null)
            throw new ArgumentException("SelfTestOptions.Pruning is set but Prune is null; pass the function that prunes a model.", nameof(options));
        if (!CudaBackend.IsAvailable(out var reason, options.Ordinal)) throw new CudaUnavailableException(reason);
        var clock = Stopwatch.StartNew();
        var baseOptions = options.Backend ?? CudaOptions.FromEnvironment();
        var device = CudaDevice.Get(options.Ordinal);
        var gpu = Device.Cuda(options.Ordinal);
        var recorder = new CheckRecorder(options.Progress);
        var cudnnInstalled = NativeLibraries.Load(NativeLibraries.Cudnn).Found;
        var environment = Describe(device, new CudaBackend(options.Ordinal, baseOptions));

        CompileKernels(recorder, device.ComputeCapability);

        // NOTE: re-registering swaps the backend behind Device.Cuda(i); tensors already on the GPU stay valid because
        // their memory belongs to the per-GPU runtime, not to a backend instance.
        bool[] modes = cudnnInstalled ? [false, true] : [false];
        // The checks run with op outputs poisoned (NaN) inside their scopes; the timings without that extra fill.
        CudaBackend.PoisonUninitialized = true;
        try
        {
            var suite = new ConformanceSuite(recorder, gpu);
            foreach (var cudnn in modes)
            {
                CudaBackend.Register(baseOptions with { UseCudnn = cudnn, AllowTf32 = false });
                if (!cudnn) suite.RunCommon();
                suite.RunCudnnFamilies(Mode(cudnn));
            }

            var models = new ModelChecks(recorder, gpu);
            foreach (var cudnn in modes)
            {
                CudaBackend.Register(baseOptions with { UseCudnn = cudnn, AllowTf32 = false });
                if (options.Training is { } training) models.Training(training, options.TrainingSteps, options.TrainingBatchSize, Mode(cudnn));
            }
            if (options.Pruning is { } pruning)
            {
                CudaBackend.Register(baseOptions with { AllowTf32 = false });
                models.Pruning(pruning, options.Prune!, options.ExpectedPrunedParameters, Mode(baseOptions.UseCudnn && cudnnInstalled));
            }
        }
        finally
        {
            CudaBackend.PoisonUninitialized = false;
        }

        var timings = new List<SelfTestTiming>();
        // Both paths are timed when cuDNN is installed, whichever the options choose, to show which is faster here.
        foreach (var cudnn in modes)
        {
            var backend = new CudaBackend(options.Ordinal, baseOptions with { UseCudnn = cudnn });
            CudaBackend.Register(backend.Options);
            foreach (var bench in options.Benchmarks)
            {
                // A failed benchmark is a failed check; the timings of the others still count.
                SelfTestTiming? timing = null;
                recorder.Run("benchmark", $"{bench.Model.Name} {bench.Input} batch {bench.BatchSize} {Mode(cudnn)}", "runs", _ =>
                    timing = ModelChecks.Benchmark(bench, backend, options.BenchmarkIterations, options.BenchmarkWarmup));
                if (timing is not null) timings.Add(timing);
            }
        }
        CudaBackend.Register(baseOptions);
        return new SelfTestReport(environment, recorder.Checks, timings, clock.Elapsed.TotalSeconds);
    }

    private static string Mode(bool cudnn) => cudnn ? "(cuDNN)" : "(own kernels)";

    /// <summary>Compiles every kernel file for the device exactly as the backend would (CUBIN, or PTX for a GPU newer than NVRTC).</summary>
    private static void CompileKernels(CheckRecorder recorder, int cc)
    {
        var supported = CudaKernels.SupportedArchitectures();
        var arch = supported.Contains(cc) ? $"sm_{cc}" : $"compute_{supported.Where(a => a < cc).DefaultIfEmpty(supported.Max()).Max()}";
        foreach (var file in CudaKernels.Files)
            recorder.Run("kernels", $"{file} for {arch}", "compiles", cmp =>
            {
                var output = CudaKernels.Compile(file, arch);
                if (output.Image.Length == 0) cmp.Fail("NVRTC produced an empty image");
                var warnings = output.Log.Trim();
                if (warnings.Length > 0) cmp.Note = $"compiler log: {warnings}";
            });
    }

    private static SelfTestEnvironment Describe(CudaDevice device, CudaBackend backend)
    {
        CudaDriver.Check(CudaDriver.cuDeviceTotalMem(out var total, device.Handle), "cuDeviceTotalMem");
        CudaDriver.Check(CudaDriver.cuDriverGetVersion(out var cudaVersion), "cuDriverGetVersion");
        var (nvrtcMajor, nvrtcMinor) = CudaKernels.NvrtcVersion();
        var cudnn = NativeLibraries.Load(NativeLibraries.Cudnn);
        return new SelfTestEnvironment(
            backend.DeviceDescription,
            device.ComputeCapability,
            (long)total >> 20,
            DriverVersion(),
            $"{cudaVersion / 1000}.{cudaVersion % 1000 / 10}",
            $"{nvrtcMajor}.{nvrtcMinor} ({NativeLibraries.Load(NativeLibraries.Nvrtc).Path})",
            $"{Cublas.Version()} ({NativeLibraries.Load(NativeLibraries.Cublas).Path})",
            cudnn.Found ? $"{Cudnn.Version()} ({cudnn.Path})" : "absent",
            $"{RuntimeInformation.FrameworkDescription}, {RuntimeInformation.OSDescription.Trim()}");
    }

    /// <summary>The kernel driver's version, e.g. 550.54.15, from /proc/driver/nvidia/version (Linux), else <c>unknown</c>.</summary>
    private static string DriverVersion()
    {
        try
        {
            var text = File.ReadAllText("/proc/driver/nvidia/version");
            var match = DriverVersionPattern().Match(text);
            return match.Success ? match.Groups[1].Value : "unknown";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "unknown";
        }
    }

    [GeneratedRegex(@"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)")]
    private static partial Regex DriverVersionPattern();
}
