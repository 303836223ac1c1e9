using System.Text.Json.Nodes;
using NeuralCore.IO;
using NeuralCore.Models;

namespace NeuralCore.Cli.Tests;

/// <summary>
/// Tests that measure in-process (allocations per iteration, timings) run alone: the other command tests set the
/// process-wide thread count (<c>--threads</c>) and allocate while they run.
/// </summary>
[CollectionDefinition(nameof(MeasuringCollection), DisableParallelization = true)]
public sealed class MeasuringCollection;

/// <summary><c>neuralcore bench</c>: the JSON it reports for both modes and engines, the per-step and per-op profiles, the comparison with a baseline, and its usage errors.</summary>
[Collection(nameof(MeasuringCollection))]
public sealed class BenchCommandTests
{
    [Theory]
    [InlineData("train", false)]
    [InlineData("train", true)]
    [InlineData("infer", false)]
    [InlineData("infer", true)]
    public void ReportsMedianAndSpreadAsJson(string mode, bool eager)
    {
        string[] args = ["bench", "--channel-width", "4 8 8", "--batch-size", "3", "--mode", mode, "--iterations", "3", "--warmup", "1", "--json"];
        var (code, stdout, stderr) = Cli.Run(eager ? [.. args, "--eager"] : args);
        Assert.True(code == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        Assert.Equal(mode, (string?)json["mode"]);
        Assert.Equal(eager ? "eager" : "plan", (string?)json["engine"]);
        // The CPU backend's vector kernels, in the JSON and in the first line.
        Assert.Equal(NeuralCore.Backends.Cpu.CpuBackend.VectorKernels, (string?)json["cpu_vector_kernels"]);
        Assert.Contains($"cpu ({NeuralCore.Backends.Cpu.CpuBackend.VectorKernels})", stderr);
        // The compiled passes allocate nothing; what is left is the timing loop's own scope object.
        if (!eager) Assert.True((long)json["allocated_bytes_per_iteration"]! < 1024, $"{json["allocated_bytes_per_iteration"]} bytes per iteration");
        // A plan's buffers hold at least the pooled stem's output (3 x 4 x 6 x 6 floats); the eager passes hold none.
        long planBytes = (long)json["plan_buffer_bytes"]!;
        if (eager) Assert.Equal(0, planBytes);
        else Assert.True(planBytes >= 3 * 4 * 6 * 6 * sizeof(float), $"{planBytes} bytes of plan buffers");
        Assert.Contains("plan buffers", stderr);
        double median = (double)json["median_ms"]!, min = (double)json["min_ms"]!, max = (double)json["max_ms"]!;
        Assert.True(min > 0 && min <= median && median <= max, $"min {min}, median {median}, max {max}");
        Assert.Equal(3, json["times_ms"]!.AsArray().Count);
        Assert.True((double)json["samples_per_second"]! > 0);
        Assert.Contains("samples/s", stderr);
    }

    [Fact]
    public void ProfileTimesEveryStepOfThePlan()
    {
        var (code, stdout, stderr) = Cli.Run("bench", "--channel-width", "4 8 8", "--batch-size", "3", "--mode", "infer",
            "--iterations", "3", "--warmup", "0", "--profile", "--json");
        Assert.True(code == 0, stderr);
        var steps = JsonNode.Parse(stdout)!["profile"]!.AsArray();
        // Stem, pools, 6 blocks' convolutions, head, global pool: every step of the plan is listed once, in order (the
        // plan of the same architecture, compiled here, describes the same steps: weights do not choose kernels).
        var model = new CpResNet(CpResNetConfig.FromWidths("4 8 8"), new Generator(1));
        model.Eval();
        var plan = NeuralCore.Backends.Cpu.CpuInferencePlan.Compile(model, [3, 1, 28, 28]);
        Assert.Equal(plan.Description, steps.Select(s => (string?)s!["step"]));
        Assert.True(steps.Count >= 15, $"{steps.Count} steps");
        Assert.StartsWith("conv 1->4 5x5/2 + bn + hardswish", (string?)steps[0]!["step"]);
        Assert.All(steps, s => Assert.True((double)s!["mean_ms"]! > 0));
        Assert.True(steps.Sum(s => (double)s!["mean_ms"]!) > 0);
        Assert.Contains("per step (mean ms, share of the pass):", stderr);
    }

    /// <summary>
    /// With a baseline, both compiled plans are profiled in the timed runs' turns and their steps matched one to one:
    /// each of the model's steps carries the baseline's time and the speed-up, and the baseline's profile lists as many.
    /// </summary>
    [Fact]
    public void ProfilesWithABaselineMatchTheSteps()
    {
        var (code, stdout, stderr) = Cli.Run("bench", "--channel-width", "4 8 8", "--baseline", "8 16 16", "--batch-size", "3",
            "--mode", "infer", "--iterations", "4", "--warmup", "0", "--profile", "--json");
        Assert.True(code == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        var steps = json["profile"]!.AsArray();
        var baselineSteps = json["baseline"]!["profile"]!.AsArray();
        Assert.Equal(steps.Count, baselineSteps.Count);
        Assert.StartsWith("conv 1->4 5x5/2", (string?)steps[0]!["step"]);
        Assert.StartsWith("conv 1->8 5x5/2", (string?)baselineSteps[0]!["step"]);
        for (int i = 0; i < steps.Count; i++)
        {
            Assert.Equal((double)baselineSteps[i]!["mean_ms"]!, (double)steps[i]!["baseline_mean_ms"]!);
            if (steps[i]!["speedup"] is { } speedup) Assert.True((double)speedup > 0, $"step {i}: speed-up {speedup}");
        }
        // Each speed-up is the baseline's time over the model's in the same round, which no two runs give exactly alike.
        Assert.Contains(steps, s => s!["speedup"] is { } speedup && (double)speedup != 1.0);
        Assert.Contains("medians over 4 rounds taken in turns", stderr);
    }

    /// <summary>Eager profiles list their ops largest first (the two models' ops need not match), so with a baseline the two are printed one after the other, unmatched.</summary>
    [Fact]
    public void EagerProfilesWithABaselineAreListedApart()
    {
        var (code, stdout, stderr) = Cli.Run("bench", "--channel-width", "4 8 8", "--baseline", "8 16 16", "--batch-size", "2",
            "--mode", "train", "--eager", "--iterations", "2", "--warmup", "0", "--profile", "--json");
        Assert.True(code == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        Assert.All(json["profile"]!.AsArray(), s => Assert.Null(s!["speedup"]));
        Assert.NotEmpty(json["baseline"]!["profile"]!.AsArray());
        foreach (var profile in new[] { json["profile"]!.AsArray(), json["baseline"]!["profile"]!.AsArray() })
        {
            var times = profile.Select(s => (double)s!["mean_ms"]!).ToList();
            Assert.Equal(times.OrderByDescending(t => t), times);
        }
        Assert.Contains("the baseline per op (mean ms per step, share of the profiled ops):", stderr);
    }

    /// <summary>
    /// A batch of 8 samples or more per thread runs in sample shards, which the output and the JSON report, with the
    /// pieces they run their samples in (MNIST's maps fit the cache: a shard's 32 samples in one piece).
    /// </summary>
    [Fact]
    public void ReportsTheSampleShardsOfABatch()
    {
        var (code, stdout, stderr) = Cli.Run("bench", "--channel-width", "32 64 128", "--batch-size", "64", "--mode", "infer",
            "--threads", "2", "--iterations", "2", "--warmup", "0", "--profile", "--json");
        Assert.True(code == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        if (!System.Runtime.Intrinsics.X86.Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the plan ran im2col, which the shards would run alike; the test's figures assume the 512-bit kernels.");
        Assert.Equal(2, (int)json["sample_shards"]!);
        Assert.Equal(32, (int)json["samples_per_piece"]!);
        Assert.Contains("in 2 sample shards", stderr);
        Assert.DoesNotContain("pieces of", stderr);
        Assert.Contains("per step (mean ms of each sample shard's thread, share of the pass):", stderr);
        var (oneCode, oneOut, oneErr) = Cli.Run("bench", "--channel-width", "32 64 128", "--batch-size", "1", "--mode", "infer",
            "--threads", "2", "--iterations", "2", "--warmup", "0", "--json");
        Assert.True(oneCode == 0, oneErr);
        Assert.Equal(1, (int)JsonNode.Parse(oneOut)!["sample_shards"]!);
        Assert.Equal(1, (int)JsonNode.Parse(oneOut)!["samples_per_piece"]!);
    }

    [Theory]
    [InlineData("--mode", "fit")]
    [InlineData("--iterations", "0")]
    [InlineData("--input-shape", "3,28,28")]
    public void BadOptionsAreUsageErrors(string option, string value)
    {
        var (code, _, stderr) = Cli.Run("bench", "--channel-width", "4 8 8", "--batch-size", "2", option, value);
        Assert.Equal(2, code);
        Assert.StartsWith("error:", stderr);
    }

    [Fact]
    public void ProfileOfACompiledTrainingStepListsEachStepForwardAndBackward()
    {
        var (code, stdout, stderr) = Cli.Run("bench", "--channel-width", "4 8 8", "--batch-size", "3", "--mode", "train",
            "--iterations", "2", "--warmup", "0", "--profile", "--json");
        Assert.True(code == 0, stderr);
        var steps = JsonNode.Parse(stdout)!["profile"]!.AsArray().Select(s => (string)s!["step"]!).ToList();
        Assert.Equal("conv 1->4 5x5/2 on 28x28", steps[0]);
        Assert.Contains("cross-entropy over 10 classes", steps);
        Assert.Equal("cross-entropy over 10 classes, backward", steps[steps.IndexOf("cross-entropy over 10 classes") + 1]);
        Assert.Equal("conv 1->4 5x5/2 on 28x28, backward", steps[^1]);
    }

    [Fact]
    public void ProfileOfAnEagerTrainingStepListsEachLayersForwardAndBackward()
    {
        var (code, stdout, stderr) = Cli.Run("bench", "--channel-width", "4 8 8", "--batch-size", "3", "--mode", "train",
            "--iterations", "2", "--warmup", "0", "--profile", "--eager", "--json");
        Assert.True(code == 0, stderr);
        var ops = JsonNode.Parse(stdout)!["profile"]!.AsArray().Select(s => (string)s!["step"]!).ToList();
        // Every layer by its module name, in both passes: the stem's convolution, a block's second batch norm.
        Assert.Contains("forward Conv2d in_c.0 [3, 4, 13, 13]", ops);
        Assert.Contains("backward Conv2d in_c.0 [3, 4, 13, 13]", ops);
        Assert.Contains(ops, o => o.StartsWith("backward BatchNorm2d stage3.block2.bn2 ", StringComparison.Ordinal));
        Assert.Equal(ops.Count, ops.Distinct().Count());
        Assert.Contains("per op (mean ms per step, share of the profiled ops):", stderr);
    }

    [Fact]
    public void ProfileOfInferenceNeedsTheCompiledPlan()
    {
        var (code, _, stderr) = Cli.Run("bench", "--channel-width", "4 8 8", "--batch-size", "2", "--mode", "infer", "--eager", "--profile");
        Assert.Equal(2, code);
        Assert.Contains("--profile", stderr);
    }

    /// <summary>
    /// With --baseline (widths, or a checkpoint file), both models are timed in one process, taking turns by blocks: as
    /// many iterations each, in min(iterations, 20) rounds; the speed-up is the median over the rounds of the baseline's
    /// median time over the model's in that round, with its quartiles, next to the multiply-adds of both. 45 iterations
    /// make 20 rounds of 2 or 3; 5 make 5 rounds of 1.
    /// </summary>
    [Theory]
    [InlineData("infer", false, 45)]
    [InlineData("train", true, 5)]
    public void ComparesWithABaselineRoundByRound(string mode, bool baselineFromFile, int iterations)
    {
        string baseline = "8 16 16";
        var folder = Directory.CreateTempSubdirectory("nc-bench-baseline-").FullName;
        try
        {
            if (baselineFromFile)
            {
                baseline = Path.Combine(folder, "big.safetensors");
                var config = CpResNetConfig.FromWidths("8 16 16");
                new CpResNet(config, new Generator(1)).Save(baseline, config.ToMetadata());
            }
            AssertComparison(mode, baseline, baselineFromFile, iterations);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static void AssertComparison(string mode, string baseline, bool baselineFromFile, int iterations)
    {
        var (code, stdout, stderr) = Cli.Run("bench", "--channel-width", "4 8 8", "--baseline", baseline, "--batch-size", "3", "--mode", mode,
            "--iterations", iterations.ToString(), "--warmup", "0", "--json");
        Assert.True(code == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        var other = json["baseline"]!;
        Assert.Equal([8, 16, 16], other["channel_widths"]!.AsArray().Select(w => (int)w!));
        Assert.Equal(baselineFromFile ? Path.GetFullPath(baseline) : null, (string?)other["checkpoint"]);
        var times = json["times_ms"]!.AsArray().Select(t => (double)t!).ToArray();
        var baselineTimes = other["times_ms"]!.AsArray().Select(t => (double)t!).ToArray();
        Assert.Equal(iterations, times.Length);
        Assert.Equal(iterations, baselineTimes.Length);
        // Round r times iterations [r n / R, (r + 1) n / R) of each model; its ratio is the baseline's median over the model's.
        int rounds = Math.Min(iterations, 20);
        var ratios = Enumerable.Range(0, rounds).Select(r =>
        {
            int start = r * iterations / rounds, end = (r + 1) * iterations / rounds;
            return Median(baselineTimes[start..end]) / Median(times[start..end]);
        }).Order().ToArray();
        var speedup = json["speedup"]!;
        Assert.Equal(rounds, (int)speedup["rounds"]!);
        Assert.Equal(Quantile(ratios, 0.5), (double)speedup["median"]!, 12);
        Assert.Equal(Quantile(ratios, 0.25), (double)speedup["p25"]!, 12);
        Assert.Equal(Quantile(ratios, 0.75), (double)speedup["p75"]!, 12);
        long macs = (long)json["macs"]!, baselineMacs = (long)other["macs"]!;
        Assert.True(macs > 0 && baselineMacs > 2 * macs, $"{macs} against {baselineMacs} multiply-adds");
        Assert.Equal((double)baselineMacs / macs, (double)speedup["mac_ratio"]!, 12);
        Assert.Contains("speed-up over the baseline", stderr);
        Assert.Contains("baseline CP-ResNet 8 16 16", stderr);
    }

    /// <summary>
    /// A pruned checkpoint keeps the widths it was pruned from in its config (here 8 16 16 over tensors of 5 10 10): the
    /// report and the JSON give the widths the model has, for the model and for a baseline alike.
    /// </summary>
    [Fact]
    public void APrunedCheckpointIsDescribedByTheWidthsItHas()
    {
        var folder = Directory.CreateTempSubdirectory("nc-bench-pruned-").FullName;
        try
        {
            var pruned = Path.Combine(folder, "pruned.safetensors");
            var narrow = new CpResNet(CpResNetConfig.FromWidths("5 10 10"), new Generator(1));
            narrow.Save(pruned, CpResNetConfig.FromWidths("8 16 16").ToMetadata());
            var (code, stdout, stderr) = Cli.Run("bench", "--checkpoint", pruned, "--baseline", pruned, "--batch-size", "2", "--mode", "infer",
                "--iterations", "2", "--warmup", "0", "--json");
            Assert.True(code == 0, stderr);
            var json = JsonNode.Parse(stdout)!;
            Assert.Equal([5, 10, 10], json["channel_widths"]!.AsArray().Select(w => (int)w!));
            Assert.Equal([5, 10, 10], json["baseline"]!["channel_widths"]!.AsArray().Select(w => (int)w!));
            Assert.Contains("CP-ResNet 5 10 10 (", stderr);
            Assert.Contains("baseline CP-ResNet 5 10 10 (", stderr);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static double Median(double[] values) => Quantile(values.Order().ToArray(), 0.5);

    /// <summary>The q-quantile of sorted values, interpolated linearly between the two nearest.</summary>
    private static double Quantile(double[] sorted, double q)
    {
        double at = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(at), hi = (int)Math.Ceiling(at);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
    }

    [Theory]
    [InlineData(new[] { "--baseline", "no/such/model.safetensors" }, 1, "Checkpoint not found")]
    [InlineData(new[] { "--baseline", "8 16 16", "--input-shape", "2,28,28" }, 2, "channels but the model takes 1")]
    public void ABaselineThatCannotBeTimedIsAnError(string[] options, int expectedCode, string message)
    {
        var (code, _, stderr) = Cli.Run(["bench", "--channel-width", "4 8 8", "--batch-size", "2", "--iterations", "1", "--warmup", "0", .. options]);
        Assert.Equal(expectedCode, code);
        Assert.Contains(message, stderr);
    }
}
