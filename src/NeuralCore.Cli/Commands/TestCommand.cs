using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using NeuralCore.Data;
using NeuralCore.Training;

namespace NeuralCore.Cli.Commands;

/// <summary><c>neuralcore test</c>: evaluates a checkpoint on the test split.</summary>
internal static class TestCommand
{
    public static Command Create(CliConsole console)
    {
        var checkpoint = CommonOptions.Checkpoint(required: true);
        var model = CommonOptions.Model();
        var width = CommonOptions.ChannelWidth(forCheckpoint: true);
        var dataset = CommonOptions.Dataset();
        var mnist = CommonOptions.Mnist();
        var dataDir = CommonOptions.DataDir();
        var batchSize = CommonOptions.BatchSize("Samples per evaluation batch (does not change the result).");
        var json = CommonOptions.Json();
        var command = new Command("test",
            "Evaluate a checkpoint on the test split (the t10k file with --data-dir, else the npm subset's 1,000 test digits): " +
            "loss, accuracy, macro accuracy, per-class accuracy and the confusion matrix.")
        {
            checkpoint, model, width, dataset, mnist, dataDir, batchSize, json,
        };
        command.SetAction(parse =>
        {
            CommonOptions.ReadDataset(parse, dataset, mnist);
            var (_, widths) = CommonOptions.ReadModel(parse, model, width);
            int batch = parse.GetValue(batchSize);
            if (batch < 1) throw new CliException($"--batch-size must be at least 1; found {batch}.", Program.UsageError);
            bool asJson = parse.GetValue(json);
            var human = console.Human(asJson);

            var source = ModelSource.Load(parse.GetValue(checkpoint)!, widths);
            var splits = DataSource.LoadMnist(parse.GetValue(dataDir), validationCount: 0, human);
            if (splits.Test.NumClasses != source.Config.NumClasses)
                throw new CliException($"{source.Checkpoint} classifies {source.Config.NumClasses} classes but MNIST has {splits.Test.NumClasses}.");
            var loader = new DataLoader(new ImageBatchSource(splits.Test), batch, shuffle: false, 0);
            var report = Evaluator.Test(source.Model, loader);

            human.WriteLine($"{source.Kind} {source.Checkpoint} (channel widths {string.Join(" ", source.Config.ChannelWidths)}) on {splits.Test.Description}");
            human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"accuracy {report.Accuracy:P2}   macro accuracy {report.MacroAccuracy:P2}   loss {report.Loss:F4}   ({report.Samples:N0} images)"));
            human.WriteLine("per class: " + string.Join("  ", report.PerClassAccuracy.Select((a, c) =>
                string.Create(CultureInfo.InvariantCulture, $"{c}: {(a is { } v ? v.ToString("P1", CultureInfo.InvariantCulture) : "-")}"))));
            if (asJson)
            {
                var output = JsonSerializer.SerializeToNode(report)!.AsObject();
                output["checkpoint"] = Path.GetFullPath(source.Checkpoint!);
                output["data"] = splits.Test.Description;
                console.Out.WriteLine(output.ToJsonString(Json.Indented));
            }
            return Program.Success;
        });
        return command;
    }
}
