using System.Globalization;
using System.Text.Json;

namespace NeuralCore.Benchmarks;

/// <summary>
/// Where ONNX Runtime and the compiled plan each spend a pass, node by node and step by step, measured in alternating
/// rounds so that both sample the same periods of a host whose speed drifts: each round runs a block of ONNX Runtime
/// calls with its profiler on, then a block of the plan's profiled passes (<see cref="CpuInferencePlan.Profile"/>).
/// ONNX Runtime's nodes are its fused, NCHWc-converted graph (a convolution with its batch norm, activation and
/// residual addition is one node; its pools are nodes of their own); the plan's steps are its own. Run as
/// <c>dotnet run -c Release --project benchmarks/NeuralCore.Benchmarks -- ort-profile [--model NAME] [--input NAME]
/// [--rounds N]</c>; by default the big model on mel b64, 12 rounds.
/// </summary>
public static class OnnxRuntimeProfile
{
    /// <summary>The first argument that selects this mode instead of BenchmarkDotNet's switcher.</summary>
    public const string Command = "ort-profile";

    // Each block runs about this long; between blocks, as in OnnxRuntimeRounds, a pause lets ONNX Runtime's spinning
    // workers go idle.
    private const double BlockMilliseconds = 200;
    private static readonly TimeSpan Pause = TimeSpan.FromMilliseconds(30);

    /// <summary>Profiles the selected case and prints both breakdowns; returns the exit code.</summary>
    public static int Run(string[] args)
    {
        var (models, inputs, rounds) = Rounds.InferenceCells(args, rounds: 12);
        if (models.Count > 1 || inputs.Count > 1) throw new ArgumentException("ort-profile takes one --model and one --input");
        string model = models.FirstOrDefault("big 32/64/128"), input = inputs.FirstOrDefault("mel 1x128x100 b64");
        string prefix = Path.Combine(Path.GetTempPath(), $"neuralcore-ort-profile-{Environment.ProcessId}");
        var cases = new OnnxRuntimeBenchmarks { Model = model, Input = input, ProfilePrefix = prefix };
        cases.SetupOnnxRuntime();
        cases.SetupNeuralCore();
        string? file = null;
        var steps = new List<(string Step, List<double> Times)>();
        var planPasses = new double[rounds];
        int ortWarm, ortCalls, planCalls;
        try
        {
            double ort = Rounds.Warm(() => cases.OnnxRuntime(), out ortWarm);
            double plan = Rounds.Warm(() => cases.NeuralCorePlan(), out _);
            ortCalls = Rounds.Calls(ort, BlockMilliseconds);
            planCalls = Rounds.Calls(plan, BlockMilliseconds);
            for (int r = 0; r < rounds; r++)
            {
                for (int i = 0; i < ortCalls; i++) cases.OnnxRuntime();
                Thread.Sleep(Pause);
                var profile = cases.ProfilePlan(planCalls);
                for (int s = 0; s < profile.Count; s++)
                {
                    if (r == 0) steps.Add((profile[s].Step, []));
                    steps[s].Times.Add(profile[s].Milliseconds);
                }
                planPasses[r] = profile.Sum(p => p.Milliseconds);
                Thread.Sleep(Pause);
            }
            file = cases.EndOnnxRuntimeProfile();
        }
        finally
        {
            cases.CleanupOnnxRuntime();
        }
        var nodes = ReadNodes(file, ortWarm);
        File.Delete(file);
        Console.WriteLine($"ONNX Runtime per node and the NeuralCore plan per step: {model} on {input}, {ModelInput.Threads} threads, " +
            $"{rounds} alternating rounds of {ortCalls} and {planCalls} passes; medians, ms");
        Console.WriteLine("ONNX Runtime (each node's kernel time, over every timed pass):");
        foreach (var (name, times) in nodes) Console.WriteLine(Line(Rounds.Median([.. times]), name));
        Console.WriteLine(Line(nodes.Sum(n => Rounds.Median([.. n.Times])), "sum of the nodes"));
        Console.WriteLine("NeuralCore plan (each step's mean over a round's passes, per sample shard's thread where the pass runs in shards):");
        foreach (var (step, times) in steps) Console.WriteLine(Line(Rounds.Median([.. times]), step));
        Console.WriteLine(Line(steps.Sum(s => Rounds.Median([.. s.Times])), $"sum of the steps (a round's whole pass: median {Rounds.Median(planPasses).ToString("F3", CultureInfo.InvariantCulture)})"));
        return 0;
    }

    private static string Line(double milliseconds, string what) => string.Create(CultureInfo.InvariantCulture, $"{milliseconds,9:F3}  {what}");

    /// <summary>
    /// Each node's kernel times from ONNX Runtime's profile, in the order the nodes first ran, without the first
    /// <paramref name="skip"/> passes' (the warm-up): each pass adds one event per node, named after the node's output
    /// with "_kernel_time" appended.
    /// </summary>
    private static List<(string Name, List<double> Times)> ReadNodes(string file, int skip)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(file));
        var nodes = new List<(string Name, List<double> Times)>();
        var index = new Dictionary<string, int>();
        const string suffix = "_kernel_time";
        foreach (var e in document.RootElement.EnumerateArray())
        {
            if (e.GetProperty("cat").GetString() != "Node") continue;
            string name = e.GetProperty("name").GetString() ?? "";
            if (!name.EndsWith(suffix, StringComparison.Ordinal)) continue;
            string op = e.TryGetProperty("args", out var a) && a.TryGetProperty("op_name", out var o) ? o.GetString() ?? "" : "";
            string key = $"{name[..^suffix.Length]} ({op})";
            if (!index.TryGetValue(key, out int at))
            {
                index[key] = at = nodes.Count;
                nodes.Add((key, []));
            }
            nodes[at].Times.Add(e.GetProperty("dur").GetDouble() / 1000.0);
        }
        return nodes.Select(n => (n.Name, n.Times.Skip(skip).ToList())).Where(n => n.Item2.Count > 0).ToList();
    }
}
