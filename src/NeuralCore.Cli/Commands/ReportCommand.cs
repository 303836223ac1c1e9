using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using NeuralCore.Backends.Cpu;
using NeuralCore.Training.Reporting;

namespace NeuralCore.Cli.Commands;

/// <summary>
/// <c>neuralcore report RUN...</c>: the comparison report (results.json, report.md, report.html, charts) of any set
/// of run folders (training runs and pruning runs), or a report folder's results.json drawn again.
/// </summary>
internal static class ReportCommand
{
    public static Command Create(CliConsole console)
    {
        var runs = new Argument<string[]>("runs")
        {
            Description = "Run folders (runs/<experiment>, or a pruning output folder), or one folder holding a results.json to draw again.",
            Arity = ArgumentArity.OneOrMore,
        };
        var output = new Option<string>("--out") { Description = "Folder of the report.", DefaultValueFactory = _ => "report", HelpName = "DIR" };
        var title = new Option<string?>("--title") { Description = "Title of the report.", HelpName = "TEXT" };
        var noThroughput = new Option<bool>("--no-throughput") { Description = "Do not measure inference speed (it takes a few seconds per model)." };
        var throughputBatch = new Option<int>("--throughput-batch") { Description = "The large batch size N of the speed measurement.", DefaultValueFactory = _ => 256, HelpName = "N" };
        var inputShape = new Option<string?>("--input-shape")
        {
            Description = "One input's shape, e.g. 1,28,28, for a pruning folder without fine-tuning runs (which do not record it).",
            HelpName = "C,H,W",
        };
        var device = new Option<string>("--device") { Description = "Device for the speed measurement: cpu, cuda or cuda:N.", DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int?>("--threads") { Description = "CPU threads for the speed measurement.", HelpName = "N" };
        var json = CommonOptions.Json();
        var command = new Command("report",
            "Build the comparison report (results.json, report.md, self-contained report.html, PNG charts) of run folders: size, MACs, test " +
            "metrics, speed, learning curves, confusion matrices, and, for a small, a big and a pruned model, the verdict on the seed's claim.")
        {
            runs, output, title, noThroughput, throughputBatch, inputShape, device, threads, json,
        };
        command.SetAction(parse =>
        {
            var folders = parse.GetValue(runs)!;
            bool asJson = parse.GetValue(json);
            var human = console.Human(asJson);
            var outDir = Path.GetFullPath(parse.GetValue(output)!);
            int batch = parse.GetValue(throughputBatch);
            if (batch < 1) throw new CliException($"--throughput-batch must be at least 1; found {batch}.", Program.UsageError);
            if (parse.GetValue(threads) is { } t)
                CpuThreading.Threads = t >= 1 ? t : throw new CliException($"--threads must be at least 1; found {t}.", Program.UsageError);
            var target = TrainingOptionSet.ParseDevice(parse.GetValue(device)!);
            int[]? shape = parse.GetValue(inputShape) is { } s ? CommonOptions.ParseShape(s, "--input-shape") : null;

            ExperimentResults results;
            var saved = folders.Length == 1 ? Path.Combine(folders[0], "results.json") : null;
            if (saved is not null && File.Exists(saved) && !File.Exists(Path.Combine(folders[0], "metrics.jsonl")))
            {
                human.WriteLine($"drawing the report of {Path.GetFullPath(saved)} again");
                results = ExperimentResults.FromJson(File.ReadAllText(saved));
                if (parse.GetValue(title) is { } newTitle) results = results with { Title = newTitle };
            }
            else
            {
                results = FromRuns(folders, shape, parse.GetValue(title), parse.GetValue(noThroughput) ? null : batch, target, human);
            }
            var files = ReportBuilder.Write(results, outDir);
            human.Write(ReportBuilder.TextTable(results));
            if (results.Claim is { } claim) human.WriteLine(claim.Sentence);
            human.WriteLine($"report: {files.Html} (also report.md, results.json, charts/)");
            if (asJson) WriteJson(console, results, files);
            return Program.Success;
        });
        return command;
    }

    private static ExperimentResults FromRuns(string[] folders, int[]? shape, string? title, int? throughputBatch, Device device, TextWriter human)
    {
        var infos = new List<RunInfo>();
        foreach (var folder in folders)
        {
            // A pruning folder without fine-tuning records no input shape: take it from the runs read so far.
            var known = shape ?? infos.Select(i => i.Model.InputShape).FirstOrDefault();
            try
            {
                infos.Add(RunReader.Read(folder, null, known));
            }
            catch (InvalidDataException e)
            {
                throw new CliException(e.Message);
            }
        }
        var names = infos.Select(i => i.Model.Name).ToList();
        if (names.Distinct(StringComparer.Ordinal).Count() != names.Count)
            infos = infos.Select((info, k) => info with { Model = info.Model with { Name = $"{info.Model.Name}-{k + 1}" } }).ToList();
        var models = infos.Select(info => info.Model).ToList();
        if (throughputBatch is { } n)
        {
            human.WriteLine($"measuring inference speed (batch 1 and batch {n}) ...");
            foreach (var info in infos) info.Network.To(device);
            var speeds = ThroughputMeter.MeasureAll(infos.Select(i => ((NN.Module)i.Network, i.Model.InputShape)).ToList(), n);
            models = models.Select((m, i) => m with { Throughput = speeds[i] }).ToList();
        }
        var (withRoles, claim) = ReportBuilder.AssignRolesAndJudge(models);
        var data = infos.Select(i => i.Data).Where(d => d is not null).Distinct().ToList();
        var notes = new List<string>();
        if (data.Count > 1) notes.Add("The runs used different data: " + string.Join(" | ", data) + ". Their test numbers are not directly comparable.");
        string? dataset = data.Count == 1 && data[0]!.Contains(':', StringComparison.Ordinal) ? data[0]![..data[0]!.IndexOf(':', StringComparison.Ordinal)] : null;
        return new ExperimentResults
        {
            Title = title ?? "NeuralCore report: " + string.Join(" vs ", withRoles.Select(m => m.Name)),
            Dataset = dataset,
            Data = data.Count == 1 ? data[0]! : string.Join(" | ", data),
            SyntheticData = data.Any(d => d!.Contains("SYNTHETIC", StringComparison.Ordinal)),
            Machine = new MachineInfo(RuntimeInformation.OSDescription, Environment.ProcessorCount, CpuThreading.Threads, device.ToString()),
            Models = withRoles,
            Pruning = infos.Select(i => i.Pruning).FirstOrDefault(p => p is not null),
            Claim = claim,
            Notes = notes,
        };
    }

    /// <summary>The results as one JSON object on stdout, with the paths of the report files.</summary>
    internal static void WriteJson(CliConsole console, ExperimentResults results, ReportFiles files)
    {
        var node = JsonNode.Parse(results.ToJson())!.AsObject();
        node["report_html"] = files.Html;
        node["report_md"] = files.Markdown;
        node["results_json"] = files.Results;
        console.Out.WriteLine(node.ToJsonString(Json.Indented));
    }
}
