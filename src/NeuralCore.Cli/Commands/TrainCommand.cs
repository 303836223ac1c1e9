using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NeuralCore.Audio;
using NeuralCore.Backends.Cpu;
using NeuralCore.Data;
using NeuralCore.Models;
using NeuralCore.NN;
using NeuralCore.Training;

namespace NeuralCore.Cli.Commands;

/// <summary><c>neuralcore train</c>: the seed's training run (steps 1, 2, 4 and 5 of the seed README: MNIST and ASC), with a resumable run folder.</summary>
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
        var ascData = new AscDataOptionSet();
        var mel = new MelOptionSet("--mel-config", "--mel_config");
        var augment = new AugmentOptionSet();
        var command = new Command("train",
            "Train a CP-ResNet on MNIST or acoustic scenes (--dataset asc) with the seed's recipe (Adam, lr 1e-3, weight decay 3e-3, batch 256, 50 epochs, " +
            "exponential warm-up and linear ramp-down of the learning rate), keep the best checkpoint by validation loss, and test it.")
        {
            dataset, mnist, dataDir, model, width, baseChannels, epochs, experiment, runsDir, resume, json,
        };
        foreach (var option in training.All.Concat(ascData.ForTraining).Concat(mel.All).Concat(augment.All)) command.Add(option);
        command.SetAction(parse =>
        {
            string data = CommonOptions.ReadDataset(parse, dataset, mnist);
            if (data == "mnist")
            {
                var ascOnly = ascData.ForTraining.Concat(mel.All).Concat(augment.All).Where(o => parse.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToList();
                if (ascOnly.Count > 0)
                    throw CommonOptions.AcousticScenesOnly(ascOnly, "--dataset asc (or --mnist 0)");
            }
            else if (parse.GetResult(training.ValidationCount) is { Implicit: false })
            {
                throw new CliException("--validation-count applies to MNIST; for acoustic scenes use --validation-fraction (or --seed-validation).", Program.UsageError);
            }
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

            DataLoader train, validation, test;
            Func<Module, Batch, (Tensor Loss, Tensor Logits)>? loss = null;
            if (data == "asc")
            {
                var melConfig = mel.Read(parse);
                var augmentConfig = augment.Read(parse);
                var (mode, fraction) = ascData.ReadValidation(parse);
                var asc = AscData.Load(parse.GetValue(dataDir), parse.GetValue(ascData.SkipMissing), mode, fraction,
                    parse.GetValue(ascData.CacheDir), melConfig.SampleRate, human);
                var trainClips = asc.TrainClips(limit);
                options = options with
                {
                    ModelMetadata = AscData.ModelMetadata(config.ToMetadata(), melConfig, augmentConfig),
                    DataDescription = asc.Describe(trainClips.Count, mode, fraction),
                };
                var frontEnd = new MelFrontEnd(melConfig, augmentConfig);
                var sources = new[]
                {
                    asc.Source(trainClips, frontEnd, training: true, options.Seed),
                    asc.Source(asc.Split.Validation, frontEnd, training: false, 0),
                    asc.Source(asc.Split.Test, frontEnd, training: false, 0),
                };
                if (options.Threads is { } t) CpuThreading.Threads = t;
                asc.Preload(sources, human, console.Cancellation);
                human.WriteLine($"front end: {melConfig.Describe()}; input {string.Join(" x ", sources[0].SampleShape)}; augmentation {augmentConfig.ToJson()}");
                train = new DataLoader(sources[0], options.BatchSize, shuffle: true, options.Seed);
                validation = new DataLoader(sources[1], options.BatchSize, shuffle: false, 0);
                test = new DataLoader(sources[2], options.BatchSize, shuffle: false, 0);
                if (augmentConfig.MixupAlpha > 0) loss = AscData.MixupLoss(augmentConfig.MixupAlpha);
            }
            else
            {
                var splits = DataSource.LoadMnist(parse.GetValue(dataDir), parse.GetValue(training.ValidationCount), human);
                var trainSet = TrainingOptionSet.LimitImages(splits.Train, limit, options.Seed);
                options = options with
                {
                    DataDescription = string.Create(CultureInfo.InvariantCulture,
                        $"mnist: {splits.Source}; {trainSet.Count} train / {splits.Validation.Count} validation / {splits.Test.Count} test images (split seed {DataSource.SplitSeed})"),
                };
                train = new DataLoader(new ImageBatchSource(trainSet), options.BatchSize, shuffle: true, options.Seed);
                validation = new DataLoader(new ImageBatchSource(splits.Validation), options.BatchSize, shuffle: false, 0);
                test = new DataLoader(new ImageBatchSource(splits.Test), options.BatchSize, shuffle: false, 0);
            }
            var network = new CpResNet(config, new Generator(options.Seed));

            var reporter = ProgressReporters.ForConsole(human, console.HumanIsTerminal(asJson));
            FitResult result;
            TestReport report;
            try
            {
                var trainer = new Trainer(options, reporter) { LossFunction = loss };
                result = trainer.Fit(network, train, validation, console.Cancellation);
                report = trainer.TestBest(new CpResNet(config), test);
            }
            finally
            {
                (reporter as IDisposable)?.Dispose();
            }

            var files = new RunFiles(options.RunDirectory);
            human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"best epoch {result.BestEpoch} (val_loss {result.BestValidationLoss:F4}); test on {report.Samples:N0} {(data == "asc" ? "clips" : "images")}: " +
                $"accuracy {report.Accuracy:P2}, macro accuracy {report.MacroAccuracy:P2}, loss {report.Loss:F4}"));
            if (report.PerDevice is not null) human.Write(TestReportText.DeviceTable(report));
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
                nameof(TrainerOptions.WarmupEpochs) => "--warmup-epochs",
                nameof(TrainerOptions.RampdownStart) => "--rampdown-start",
                nameof(TrainerOptions.RampdownLength) => "--rampdown-length",
                nameof(TrainerOptions.LastLrFactor) => "--last-lr-factor",
                nameof(TrainerOptions.RunsDirectory) => "--runs-dir",
                nameof(TrainerOptions.ExperimentName) => "--experiment-name",
                _ => $"Trainer option {e.ParamName}",
            };
            string message = e.Message.Split(" (Parameter")[0];
            throw new CliException(option + message[message.IndexOf(" must be", StringComparison.Ordinal)..], Program.UsageError);
        }
    }
}
