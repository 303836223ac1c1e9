using System.Globalization;
using System.Reflection;
using System.Runtime.Loader;
using System.Text.Json;

namespace NeuralCore.Benchmarks;

/// <summary>
/// Two builds of the <c>neuralcore</c> command compared in one process: each build's assemblies load into a context of
/// their own, and the two run the same <c>neuralcore bench ... --json</c> in turns (who goes first alternates by
/// round), so that a host whose speed drifts over seconds slows both builds of a round alike, which separate processes
/// run minutes apart do not. Prints each build's medians, the per-round ratio B / A for the model (and the baseline,
/// with <c>--baseline</c>), each build's pays, and with <c>--profile</c> each step's ratio. Run as <c>dotnet run -c
/// Release --project benchmarks/NeuralCore.Benchmarks -- build-rounds DIR_A DIR_B [--rounds N] -- BENCH_ARGS</c>, where
/// a DIR holds a build's <c>NeuralCore.Cli.dll</c> (<c>dotnet build src/NeuralCore.Cli -c Release -o DIR</c>) and
/// BENCH_ARGS are the bench command's options (<c>--json</c> is added).
/// </summary>
public static class BuildRounds
{
    /// <summary>The first argument that selects this mode instead of BenchmarkDotNet's switcher.</summary>
    public const string Command = "build-rounds";

    /// <summary>Runs the comparison; returns the exit code.</summary>
    public static int Run(string[] args)
    {
        int split = Array.IndexOf(args, "--");
        if (split < 0 || split < 3)
            throw new ArgumentException("usage: build-rounds DIR_A DIR_B [--rounds N] -- bench options (e.g. --channel-width \"19 38 76\" --baseline \"32 64 128\")");
        string[] dirs = [args[1], args[2]];
        int rounds = 6;
        for (int i = 3; i < split; i++)
        {
            if (args[i] != "--rounds" || i + 1 >= split) throw new ArgumentException($"unknown option {args[i]} (options: --rounds N)");
            rounds = Rounds.Positive(args[++i]);
        }
        string[] bench = ["bench", .. args.Skip(split + 1).Where(a => a != "--json"), "--json"];
        var entries = dirs.Select(Entry).ToArray();
        var runs = new List<JsonElement>[] { [], [] };
        for (int r = 0; r < rounds; r++)
            for (int turn = 0; turn < 2; turn++)
            {
                int build = (turn + r) % 2;
                runs[build].Add(Bench(entries[build], bench, $"build {(build == 0 ? "A" : "B")}'s bench", quiet: false));
            }
        Report(dirs, runs, rounds);
        return 0;
    }

    /// <summary>
    /// Runs <paramref name="bench"/> (<c>neuralcore bench ... --json</c>) through a build's entry point
    /// (<see cref="Entry"/>) and returns the JSON it prints; <paramref name="quiet"/> keeps its progress and summary
    /// (stderr) off the console but for an error, which names the run as <paramref name="what"/>.
    /// </summary>
    internal static JsonElement Bench(MethodInfo entry, string[] bench, string what, bool quiet)
    {
        TextWriter console = Console.Out, consoleError = Console.Error;
        var output = new StringWriter();
        var errors = new StringWriter();
        Console.SetOut(output);
        if (quiet) Console.SetError(errors);
        int code;
        try
        {
            code = (int)entry.Invoke(null, [bench])!;
        }
        finally
        {
            Console.SetOut(console);
            Console.SetError(consoleError);
        }
        string text = output.ToString();
        int start = text.IndexOf('{');
        if (code != 0 || start < 0) throw new ArgumentException($"{what} exited with {code}: {errors.ToString().Trim()} {text.Trim()}".TrimEnd());
        return JsonDocument.Parse(text[start..]).RootElement.Clone();
    }

    // The command's entry point (Program.Main(string[]) -> int) in a load context of the build's own.
    internal static MethodInfo Entry(string dir)
    {
        string path = Path.GetFullPath(Path.Combine(dir, "NeuralCore.Cli.dll"));
        if (!File.Exists(path)) throw new ArgumentException($"{path} does not exist (build with: dotnet build src/NeuralCore.Cli -c Release -o {dir})");
        return new BuildContext(path).LoadFromAssemblyPath(path).EntryPoint ?? throw new ArgumentException($"{path} has no entry point");
    }

    private static void Report(string[] dirs, List<JsonElement>[] runs, int rounds)
    {
        bool baseline = runs[0][0].TryGetProperty("baseline", out var b) && b.ValueKind == JsonValueKind.Object;
        double[] Model(int build) => runs[build].Select(j => j.GetProperty("median_ms").GetDouble()).ToArray();
        double[] Baseline(int build) => runs[build].Select(j => j.GetProperty("baseline").GetProperty("median_ms").GetDouble()).ToArray();
        static string Ms(double[] v) => string.Join(" ", v.Select(x => x.ToString("F3", CultureInfo.InvariantCulture)));
        Console.WriteLine($"two builds in {rounds} alternating rounds, per-round medians in ms; A = {dirs[0]}, B = {dirs[1]}");
        for (int build = 0; build < 2; build++)
        {
            Console.WriteLine($"{(build == 0 ? "A" : "B")} model    {Ms(Model(build))}");
            if (baseline) Console.WriteLine($"{(build == 0 ? "A" : "B")} baseline {Ms(Baseline(build))}");
        }
        Console.WriteLine($"B / A, model:    {Rounds.Summary(Ratios(Model(1), Model(0)))}");
        if (!baseline) return;
        Console.WriteLine($"B / A, baseline: {Rounds.Summary(Ratios(Baseline(1), Baseline(0)))}");
        for (int build = 0; build < 2; build++)
            Console.WriteLine($"pays (baseline / model), {(build == 0 ? "A" : "B")}: {Rounds.Summary(Ratios(Baseline(build), Model(build)))}");
        if (!runs[0][0].TryGetProperty("profile", out var profile) || profile.ValueKind != JsonValueKind.Array) return;
        Console.WriteLine("per step, the model's mean ms in A and B and B / A (median over the rounds):");
        int steps = profile.GetArrayLength();
        for (int i = 0; i < steps; i++)
        {
            double[] a = runs[0].Select(j => j.GetProperty("profile")[i].GetProperty("mean_ms").GetDouble()).ToArray();
            double[] bb = runs[1].Select(j => j.GetProperty("profile")[i].GetProperty("mean_ms").GetDouble()).ToArray();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{Rounds.Median(a),9:F4} {Rounds.Median(bb),9:F4} {Rounds.Median(Ratios(bb, a)),6:F3}  {profile[i].GetProperty("step").GetString()}"));
        }
    }

    private static double[] Ratios(double[] numerator, double[] denominator) => numerator.Zip(denominator, (n, d) => n / d).ToArray();

    // Resolves a build's dependencies from its own folder (its deps.json), so that each build runs its own NeuralCore.
    private sealed class BuildContext(string main) : AssemblyLoadContext(isCollectible: false)
    {
        private readonly AssemblyDependencyResolver _resolver = new(main);

        protected override Assembly? Load(AssemblyName name) =>
            _resolver.ResolveAssemblyToPath(name) is { } path ? LoadFromAssemblyPath(path) : null;

        protected override IntPtr LoadUnmanagedDll(string name) =>
            _resolver.ResolveUnmanagedDllToPath(name) is { } path ? LoadUnmanagedDllFromPath(path) : IntPtr.Zero;
    }
}
