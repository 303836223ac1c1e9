using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using NeuralCore.Cuda;
using NeuralCore.Cuda.SelfTest;
using NeuralCore.Models;
using NeuralCore.Pruning;

namespace NeuralCore.Cli.Commands;

/// <summary>
/// <c>neuralcore selftest --device cuda</c>: the GPU self-test (kernel compilation, op conformance against the CPU
/// with and without cuDNN, a CP-ResNet training run, pruning on the GPU, timings), for a GPU machine.
/// </summary>
internal static class SelfTestCommand
{
    /// <summary>The seed's pruning oracle: CP-ResNet 32/64/128 pruned locally at ratio 0.40 keeps 47,349 parameters.</summary>
    private const long BigPrunedAt040 = 47_349;

    public static Command Create(CliConsole console)
    {
        var device = new Option<string>("--device") { Description = "The GPU to test: cuda or cuda:N.", DefaultValueFactory = _ => "cuda" };
        var noBench = new Option<bool>("--no-bench") { Description = "Skip the timings (only the correctness checks)." };
        var iterations = new Option<int>("--iterations")
        {
            Description = "Timed iterations per benchmark; the median is reported.",
            DefaultValueFactory = _ => 30,
            HelpName = "N",
        };
        var json = CommonOptions.Json();
        var command = new Command("selftest",
            "Check the CUDA backend on this GPU: compile every kernel for it, run each op family forward and backward against the CPU " +
            "(with cuDNN and with NeuralCore's own kernels), train CP-ResNet 24/48/72 a few steps on both devices, prune CP-ResNet 32/64/128 " +
            "on the GPU, and time training and inference of the CP-ResNets (MNIST batch 256, mel 1x128x100 batch 64). " +
            "Exits 0 when every check passes, 1 otherwise or when no GPU is usable.")
        {
            device, noBench, iterations, json,
        };
        command.SetAction(parse =>
        {
            bool asJson = parse.GetValue(json);
            int count = parse.GetValue(iterations);
            if (count < 1) throw new CliException($"--iterations must be at least 1; found {count}.", Program.UsageError);
            var text = parse.GetValue(device)!;
            var target = TrainingOptionSet.ParseDevice(text);
            if (target.Type != DeviceType.Cuda)
                throw new CliException($"--device {text}: the self-test compares a GPU with the CPU; pass --device cuda (or cuda:N).", Program.UsageError);
            var human = console.Human(asJson);
            human.WriteLine($"NeuralCore self-test on {target}; one line per check:");
            var report = CudaSelfTest.Run(Options(target.Index, parse.GetValue(noBench), count, human));
            PrintTable(report, human);
            if (asJson) console.Out.WriteLine(ToJson(report).ToJsonString(Json.Indented));
            return report.Passed ? Program.Success : Program.Failure;
        });
        return command;
    }

    private static SelfTestModel Model(string widths, string name, int[] sampleShape) =>
        new($"CP-ResNet {widths.Replace(' ', '/')} ({name})", g => new CpResNet(CpResNetConfig.FromWidths(widths), g), sampleShape, 10);

    private static SelfTestOptions Options(int ordinal, bool noBench, int iterations, TextWriter progress)
    {
        int[] mnist = [1, 28, 28], mel = [1, 128, 100];
        var big = Model("32 64 128", "big", mnist);
        var small = Model("24 48 72", "small", mnist);
        var pruned = Model("19 38 76", "big pruned at 0.40", mnist);
        return new SelfTestOptions
        {
            Ordinal = ordinal,
            Backend = CudaOptions.FromEnvironment(),
            Training = small,
            Pruning = big,
            Prune = (model, example) => new Pruner(model, example, new PrunerOptions { Ratio = 0.4 }).Run(),
            ExpectedPrunedParameters = BigPrunedAt040,
            Benchmarks = noBench ? [] :
            [
                new(big, "MNIST 1x28x28", mnist, 256), new(big, "mel 1x128x100", mel, 64),
                new(small, "MNIST 1x28x28", mnist, 256), new(small, "mel 1x128x100", mel, 64),
                new(pruned, "MNIST 1x28x28", mnist, 256), new(pruned, "mel 1x128x100", mel, 64),
            ],
            BenchmarkIterations = iterations,
            Progress = progress,
        };
    }

    private static void PrintTable(SelfTestReport report, TextWriter human)
    {
        var env = report.Environment;
        human.WriteLine();
        human.WriteLine($"GPU      {env.Gpu}, {env.MemoryMiB:N0} MiB");
        human.WriteLine($"driver   {env.DriverVersion} (CUDA {env.DriverCudaVersion})");
        human.WriteLine($"NVRTC    {env.Nvrtc}");
        human.WriteLine($"cuBLAS   {env.Cublas}");
        human.WriteLine($"cuDNN    {env.Cudnn}");
        human.WriteLine($"runtime  {env.Runtime}");
        human.WriteLine();
        human.WriteLine($"{"group",-12} {"checks",7} {"failed",7} {"max error",10}");
        foreach (var group in report.Checks.GroupBy(c => c.Group))
            human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{group.Key,-12} {group.Count(),7} {group.Count(c => !c.Passed),7} {group.Max(c => c.MaxError),10:G3}"));
        foreach (var failed in report.Checks.Where(c => !c.Passed))
            human.WriteLine($"FAILED {failed.Group}: {failed.Name}: {failed.Detail} (tolerance {failed.Tolerance})");
        if (report.Timings.Count > 0)
        {
            human.WriteLine();
            human.WriteLine($"{"model",-36} {"input",-14} {"batch",5} {"cuDNN",5} {"train ms",9} {"infer ms",9} {"train/s",9} {"infer/s",9} {"MiB",6}");
            foreach (var t in report.Timings)
                human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{t.Model,-36} {t.Input,-14} {t.BatchSize,5} {(t.Cudnn ? "yes" : "no"),5} {t.TrainStepMs,9:F2} {t.InferenceMs,9:F2} {t.TrainSamplesPerSecond,9:F0} {t.InferenceSamplesPerSecond,9:F0} {t.PeakMemoryBytes >> 20,6}"));
        }
        human.WriteLine();
        var seconds = report.Seconds.ToString("F1", CultureInfo.InvariantCulture);
        human.WriteLine(report.Passed
            ? $"PASSED: all {report.Checks.Count} checks ({seconds} s)."
            : $"FAILED: {report.FailedCount} of {report.Checks.Count} checks ({seconds} s).");
    }

    /// <summary>A JSON number, or null for NaN and infinities (which JSON cannot hold).</summary>
    private static JsonNode? Number(double value) => double.IsFinite(value) ? JsonValue.Create(value) : null;

    private static JsonObject ToJson(SelfTestReport report)
    {
        var env = report.Environment;
        return new JsonObject
        {
            ["passed"] = report.Passed,
            ["failed"] = report.FailedCount,
            ["seconds"] = Number(report.Seconds),
            ["environment"] = new JsonObject
            {
                ["gpu"] = env.Gpu,
                ["compute_capability"] = env.ComputeCapability,
                ["memory_mib"] = env.MemoryMiB,
                ["driver"] = env.DriverVersion,
                ["driver_cuda"] = env.DriverCudaVersion,
                ["nvrtc"] = env.Nvrtc,
                ["cublas"] = env.Cublas,
                ["cudnn"] = env.Cudnn,
                ["runtime"] = env.Runtime,
            },
            ["checks"] = new JsonArray(report.Checks.Select(c => (JsonNode)new JsonObject
            {
                ["group"] = c.Group,
                ["name"] = c.Name,
                ["passed"] = c.Passed,
                ["max_error"] = Number(c.MaxError),
                ["tolerance"] = c.Tolerance,
                ["detail"] = c.Detail,
                ["seconds"] = Number(c.Seconds),
            }).ToArray()),
            ["timings"] = new JsonArray(report.Timings.Select(t => (JsonNode)new JsonObject
            {
                ["model"] = t.Model,
                ["input"] = t.Input,
                ["batch_size"] = t.BatchSize,
                ["cudnn"] = t.Cudnn,
                ["train_step_ms"] = Number(t.TrainStepMs),
                ["inference_ms"] = Number(t.InferenceMs),
                ["train_samples_per_s"] = Number(t.TrainSamplesPerSecond),
                ["inference_samples_per_s"] = Number(t.InferenceSamplesPerSecond),
                ["peak_memory_bytes"] = t.PeakMemoryBytes,
            }).ToArray()),
        };
    }
}
