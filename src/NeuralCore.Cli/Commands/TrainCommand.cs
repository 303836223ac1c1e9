using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NeuralCore.Data;
using NeuralCore.Models;
using NeuralCore.Training;

namespace NeuralCore.Cli.Commands;

/// <summary><c>neuralcore train</c>: the seed's training run (steps 1 and 2 of the seed README), with a resumable run folder.</summary>
internal static class TrainCommand
{
    public static Command Create(CliConsole console)
    {
        var training = new TrainingOptionSet();
        var dataset = CommonOptions.Dataset();
        var mnist = CommonOptions.Mnist();
        var dataDir = CommonOptions.DataDir();
        var model = CommonOptions.Model();
        var width = CommonOptions.ChannelWidth(forCheckpoint: false);
        var baseChannels = new Option<int?>("--base-channels", "--base_channels")
        {
            Description = "Accepted for the seed's commands and ignored: the seed passed --base_channels=32 but --channel_width decides the widths.",
        };
        var epochs = new Option<int>("--epochs", "--n-epochs", "--n_epochs") { Description = "Number of epochs.", DefaultValueFactory = _ => 50 };
        var experiment = new Option<string>("--experiment-name", "--experiment_name")
        {
            Description = "Name of the run: its files go to <runs-dir>/<name>/.",
            Required = true,
            HelpName = "NAME",
        };
        var runsDir = new Option<string>("--runs-dir", "--runs_dir") { Description = "Folder of the run folders.", DefaultValueFactory = _ => "runs", HelpName = "DIR" };
        var resume = new Option<bool>("--resume")
        {
            Description = "Continue the run in <runs-dir>/<name>/ from its last finished epoch (after a crash, a kill or Ctrl+C). Use the same options.",
        };
        var json = CommonOptions.Json();
        var command = new Command("train",
            "Train a CP-ResNet on MNIST with the seed's recipe (Adam, lr 1e-3, weight decay 3e-3, batch 256, 50 epochs, exponential warm-up " +
            "and linear ramp-down of the learning rate), keep the best checkpoint by validation loss, and test it.")
        {
            dataset, mnist, dataDir, model, width, baseChannels, epochs, experiment, runsDir, resume, json,
        };
        foreach (var option in training.All) command.Add(option);
        command.SetAction(parse =>
        {
            CommonOptions.ReadDataset(parse, dataset, mnist);
            var (_, widthText) = CommonOptions.ReadModel(parse, model, width);
            bool asJson = parse.GetValue(json);
            var human = console.Human(asJson);
            var config = ModelSource.ParseWidths(widthText ?? CommonOptions.DefaultChannelWidth);
            if (parse.GetValue(baseChannels) is { } b)
                human.WriteLine($"note: --base-channels {b} has no effect; the channel widths are {string.Join(" ", config.ChannelWidths)} (--channel-width).");

            var options = training.Read(parse) with
            {
                Epochs = parse.GetValue(epochs),
                RunsDirectory = parse.GetValue(runsDir)!,
                ExperimentName = parse.GetValue(experiment)!,
                Resume = parse.GetValue(resume),
                ModelMetadata = config.ToMetadata(),
            };
            Validate(options);
            int? limit = training.ReadLimit(parse);

            var splits = DataSource.LoadMnist(parse.GetValue(dataDir), parse.GetValue(training.ValidationCount), human);
            var trainSet = limit is { } n && n < splits.Train.Count ? splits.Train.Subset(Enumerable.Range(0, n).ToArray()) : splits.Train;
            options = options with
            {
                DataDescription = string.Create(CultureInfo.InvariantCulture,
                    $"mnist: {splits.Source}; {trainSet.Count} train / {splits.Validation.Count} validation / {splits.Test.Count} test images (split seed {DataSource.SplitSeed})"),
            };
            var train = new DataLoader(new ImageBatchSource(trainSet), options.BatchSize, shuffle: true, options.Seed);
            var validation = new DataLoader(new ImageBatchSource(splits.Validation), options.BatchSize, shuffle: false, 0);
            var test = new DataLoader(new ImageBatchSource(splits.Test), options.BatchSize, shuffle: false, 0);
            var network = new CpResNet(config, new Generator(options.Seed));

            var reporter = ProgressReporters.ForConsole(human, console.HumanIsTerminal(asJson));
            FitResult result;
            TestReport report;
            try
            {
                var trainer = new Trainer(options, reporter);
                result = trainer.Fit(network, train, validation, console.Cancellation);
                report = trainer.TestBest(new CpResNet(config), test);
            }
            finally
            {
                (reporter as IDisposable)?.Dispose();
            }

            var files = new RunFiles(options.RunDirectory);
            human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"best epoch {result.BestEpoch} (val_loss {result.BestValidationLoss:F4}); test on {report.Samples:N0} images: " +
                $"accuracy {report.Accuracy:P2}, macro accuracy {report.MacroAccuracy:P2}, loss {report.Loss:F4}"));
            human.WriteLine($"run folder {Path.GetFullPath(files.Directory)} (best.safetensors, last.ckpt, metrics.jsonl, config.json, test.json)");
            if (asJson)
            {
                var output = new JsonObject
                {
                    ["experiment"] = options.ExperimentName,
                    ["run_dir"] = Path.GetFullPath(files.Directory),
                    ["epochs"] = result.History.Count,
                    ["resumed_from_epoch"] = result.ResumedFromEpoch,
                    ["best_epoch"] = result.BestEpoch,
                    ["best_val_loss"] = result.BestValidationLoss,
                    ["last_epoch"] = result.History.Count == 0 ? null : JsonSerializer.SerializeToNode(result.History[^1]),
                    ["test"] = JsonSerializer.SerializeToNode(report),
                };
                console.Out.WriteLine(output.ToJsonString(Json.Indented));
            }
            return Program.Success;
        });
        return command;
    }

    /// <summary>The trainer's checks, reported with the command line's option names.</summary>
    private static void Validate(TrainerOptions options)
    {
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            string option = e.ParamName switch
            {
                nameof(TrainerOptions.Epochs) => "--epochs",
                nameof(TrainerOptions.BatchSize) => "--batch-size",
                nameof(TrainerOptions.LearningRate) => "--lr",
                nameof(TrainerOptions.WeightDecay) => "--weight-decay",
                nameof(TrainerOptions.Threads) => "--threads",
                nameof(TrainerOptions.RunsDirectory) => "--runs-dir",
                nameof(TrainerOptions.ExperimentName) => "--experiment-name",
                _ => $"Trainer option {e.ParamName}",
            };
            string message = e.Message.Split(" (Parameter")[0];
            throw new CliException(option + message[message.IndexOf(" must be", StringComparison.Ordinal)..], Program.UsageError);
        }
    }
}
