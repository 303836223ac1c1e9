using System.CommandLine;
using System.Text.Json.Nodes;
using NeuralCore.Backends.Cpu;
using NeuralCore.Cuda;

namespace NeuralCore.Cli.Commands;

/// <summary>
/// <c>neuralcore doctor</c>: what the CUDA backend finds on this machine (each native library's path, or what is
/// missing and how to install it), the NVRTC version, and whether a GPU can be used; and which vector kernels the CPU
/// backend runs.
/// </summary>
internal static class DoctorCommand
{
    public static Command Create(CliConsole console)
    {
        var json = CommonOptions.Json();
        var command = new Command("doctor",
            "Check the GPU setup: where the NVIDIA driver, NVRTC, cuBLAS and cuDNN were found (or how to install what is missing), " +
            "the NVRTC version, the GPUs and whether --device cuda works; and which vector kernels the CPU backend runs (AVX-512, AVX2 or scalar). " +
            "Exits 0 whether or not a GPU is usable; read the last line (or \"gpu.usable\" with --json).")
        {
            json,
        };
        command.SetAction(parse =>
        {
            bool asJson = parse.GetValue(json);
            var result = Diagnose();
            var human = console.Human(asJson);
            human.Write(result.Report);
            human.WriteLine($"Kernel sources: {CudaKernels.Files.Count} embedded ({string.Join(", ", CudaKernels.Files)}).");
            human.WriteLine(result.Nvrtc is { } v
                ? $"NVRTC {v}: kernels can be compiled{(result.NvrtcArchitectures.Count > 0 ? $" for sm_{result.NvrtcArchitectures[0]} to sm_{result.NvrtcArchitectures[^1]}" : "")}."
                : $"NVRTC: not usable: {result.NvrtcProblem}");
            human.WriteLine(CpuLine());
            human.WriteLine(result.GpuUsable
                ? $"GPU: usable ({result.GpuDescription}, cuDNN {(result.Cudnn ? "in use" : "not used")}); --device cuda works."
                : $"GPU: not usable. {result.GpuProblem}");
            if (asJson)
            {
                console.Out.WriteLine(new JsonObject
                {
                    ["report"] = result.Report,
                    ["kernel_sources"] = new JsonArray(CudaKernels.Files.Select(f => (JsonNode)f).ToArray()),
                    ["cpu"] = new JsonObject
                    {
                        ["vector_kernels"] = CpuBackend.VectorKernels,
                        ["threads"] = CpuThreading.Threads,
                    },
                    ["nvrtc"] = new JsonObject
                    {
                        ["usable"] = result.Nvrtc is not null,
                        ["version"] = result.Nvrtc,
                        ["architectures"] = Json.Array(result.NvrtcArchitectures),
                        ["problem"] = result.NvrtcProblem,
                    },
                    ["gpu"] = new JsonObject
                    {
                        ["usable"] = result.GpuUsable,
                        ["device"] = result.GpuDescription,
                        ["cudnn"] = result.Cudnn,
                        ["problem"] = result.GpuProblem,
                    },
                }.ToJsonString(Json.Indented));
            }
            return Program.Success;
        });
        return command;
    }

    /// <summary>The CPU backend's vector kernels and threads, and what is slower without AVX-512.</summary>
    private static string CpuLine() => CpuBackend.VectorKernels switch
    {
        "AVX-512" => $"CPU: AVX-512 kernels, {CpuThreading.Threads} thread(s).",
        "AVX2" => $"CPU: AVX2 kernels, {CpuThreading.Threads} thread(s). Without AVX-512 the 512-bit convolution kernels " +
            "(direct stems, Winograd, strips, direct weight gradients) do not run: CP-ResNet trains about 1.4-2x slower.",
        _ => $"CPU: scalar kernels (no AVX2 with FMA), {CpuThreading.Threads} thread(s): every CPU kernel runs as plain loops.",
    };

    /// <summary>What doctor found.</summary>
    private sealed record Diagnosis(
        string Report, string? Nvrtc, IReadOnlyList<int> NvrtcArchitectures, string? NvrtcProblem,
        bool GpuUsable, string? GpuDescription, bool Cudnn, string? GpuProblem);

    private static Diagnosis Diagnose()
    {
        var report = CudaDiagnostics.Report();
        string? nvrtc = null, nvrtcProblem = null;
        IReadOnlyList<int> archs = [];
        try
        {
            var (major, minor) = CudaKernels.NvrtcVersion();
            nvrtc = $"{major}.{minor}";
            archs = CudaKernels.SupportedArchitectures();
        }
        catch (Exception e) when (e is CudaUnavailableException or CudaException)
        {
            nvrtcProblem = e.Message;
        }
        if (!CudaBackend.IsAvailable(out var reason))
            return new(report, nvrtc, archs, nvrtcProblem, false, null, false, reason);
        var backend = new CudaBackend(0, CudaOptions.FromEnvironment());
        return new(report, nvrtc, archs, nvrtcProblem, true, backend.DeviceDescription, backend.UsesCudnn, null);
    }
}
