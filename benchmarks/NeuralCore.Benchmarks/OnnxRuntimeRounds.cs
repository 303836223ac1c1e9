using System.Diagnostics;
using System.Globalization;

namespace NeuralCore.Benchmarks;

/// <summary>
/// ONNX Runtime against the compiled plan in alternating rounds, for hosts whose speed drifts while a BenchmarkDotNet
/// run goes through its cases one after another (a shared core's other tenant can slow a whole pass by half for
/// seconds at a time): each round times a block of ONNX Runtime calls, then a block of plan calls, and the ratio is
/// taken per round, as <c>neuralcore bench --baseline</c> does for two models. The same sessions and plans as
/// <see cref="OnnxRuntimeBenchmarks"/>. Run as <c>dotnet run -c Release --project benchmarks/NeuralCore.Benchmarks --
/// rounds [--model NAME] [--input NAME] [--rounds N]</c>; without a model or input, every one of them.
/// </summary>
public static class OnnxRuntimeRounds
{
    /// <summary>The first argument that selects this mode instead of BenchmarkDotNet's switcher.</summary>
    public const string Command = "rounds";

    // Each block runs about this long, after two untimed calls; between blocks a pause lets ONNX Runtime's spinning
    // workers go idle, so that they do not share the cores with the plan's block.
    private const double BlockMilliseconds = 150;
    private static readonly TimeSpan Pause = TimeSpan.FromMilliseconds(30);

    /// <summary>Runs the comparison for the selected cases and prints one line per case; returns the exit code.</summary>
    public static int Run(string[] args)
    {
        var (models, inputs, rounds) = Rounds.InferenceCells(args, rounds: 20);
        if (models.Count == 0) models.AddRange(ModelInput.Widths.Keys);
        if (inputs.Count == 0) inputs.AddRange(ModelInput.Infer.Select(x => x.Name));
        Console.WriteLine($"ONNX Runtime and the NeuralCore plan in {rounds} alternating rounds, {ModelInput.Threads} threads each; per-round medians, ms");
        Console.WriteLine($"{"model",-16} {"input",-19} {"ORT min",9} {"ORT med",9} {"plan min",9} {"plan med",9}  plan/ORT p25 / median / p75");
        foreach (string model in models)
            foreach (string input in inputs)
                Compare(model, input, rounds);
        return 0;
    }

    private static void Compare(string model, string input, int rounds)
    {
        var cases = new OnnxRuntimeBenchmarks { Model = model, Input = input };
        cases.SetupOnnxRuntime();
        cases.SetupNeuralCore();
        try
        {
            // Warm both (the JIT's optimised code, the sessions' first-call work), then size the blocks.
            double ort = Rounds.Warm(() => cases.OnnxRuntime(), out _), plan = Rounds.Warm(() => cases.NeuralCorePlan(), out _);
            int ortCalls = Rounds.Calls(ort, BlockMilliseconds), planCalls = Rounds.Calls(plan, BlockMilliseconds);
            var ortMedians = new double[rounds];
            var planMedians = new double[rounds];
            var ratios = new double[rounds];
            for (int r = 0; r < rounds; r++)
            {
                ortMedians[r] = BlockMedian(() => cases.OnnxRuntime(), ortCalls);
                planMedians[r] = BlockMedian(() => cases.NeuralCorePlan(), planCalls);
                ratios[r] = planMedians[r] / ortMedians[r];
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{model,-16} {input,-19} {ortMedians.Min(),9:F3} {Rounds.Median(ortMedians),9:F3} {planMedians.Min(),9:F3} {Rounds.Median(planMedians),9:F3}  {Rounds.Summary(ratios)}"));
        }
        finally
        {
            cases.CleanupOnnxRuntime();
        }
    }

    // The median time of one block of calls (after two untimed ones), followed by the pause.
    private static double BlockMedian(Func<float> pass, int calls)
    {
        pass();
        pass();
        var times = new double[calls];
        for (int i = 0; i < calls; i++)
        {
            long start = Stopwatch.GetTimestamp();
            pass();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        Thread.Sleep(Pause);
        return Rounds.Median(times);
    }
}
