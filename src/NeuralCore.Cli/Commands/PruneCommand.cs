using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NeuralCore.Audio;
using NeuralCore.Data;
using NeuralCore.NN;
using NeuralCore.Pruning;
using NeuralCore.Training;

namespace NeuralCore.Cli.Commands;

/// <summary><c>neuralcore prune</c>: structural pruning with iterative fine-tuning (step 3 of the seed README).</summary>
internal static class PruneCommand
{
    public static Command Create(CliConsole console)
    {
        var checkpoint = CommonOptions.Checkpoint(required: true);
        var model = CommonOptions.Model();
        var width = CommonOptions.ChannelWidth(forCheckpoint: true);
        var ratio = new Option<double>("--ratio") { Description = "Pruning ratio: each group keeps (int)(C0 * (1 - ratio)) of its C0 channels.", DefaultValueFactory = _ => 0.4 };
        var importance = new Option<string>("--importance")
        {
            Description = "Channel importance: l1 (the seed's), l2, bn-scale, taylor, random or lamp.",
            DefaultValueFactory = _ => "l1",
        };
        var reduction = new Option<string>("--reduction") { Description = "How members' scores combine: mean, sum, max, prod or first.", DefaultValueFactory = _ => "mean" };
        var normalizer = new Option<string>("--normalizer")
        {
            Description = "How a group's scores are rescaled: mean, sum, max, standardization, gaussian or none.",
            DefaultValueFactory = _ => "mean",
        };
        var global = new Option<bool>("--global") { Description = "Rank all groups' channels together instead of pruning each group by the ratio." };
        var steps = new Option<int>("--iterative-steps") { Description = "Steps to reach the ratio, with fine-tuning after each.", DefaultValueFactory = _ => 1 };
        var roundTo = new Option<int>("--round-to") { Description = "Round every kept width down to a multiple of N.", HelpName = "N" };
        var maxRatio = new Option<double>("--max-ratio") { Description = "No group loses more than this fraction of its channels.", DefaultValueFactory = _ => 1.0 };
        var ignore = new Option<string[]>("--ignore")
        {
            Description = "Modules whose output channels are kept, and the channels coupled to them (the classifier's always are); a block's name keeps every layer in it, e.g. --ignore stage3.block2.conv1 or --ignore stage3.block2.",
            AllowMultipleArgumentsPerToken = true,
            HelpName = "NAME",
        };
        var targetParams = new Option<long?>("--target-params") { Description = "Prune to at most N parameters: finds the smallest ratio (to 1e-4) that fits.", HelpName = "N" };
        var targetMacs = new Option<long?>("--target-macs") { Description = "Prune to at most N conv and linear MACs per input: finds the smallest ratio that fits.", HelpName = "N" };
        var inputShape = new Option<string>("--input-shape", "--input_shape")
        {
            Description = "One input without the batch dimension, for tracing and counting (default 1,28,28, or 1 s of an acoustic-scene checkpoint's front end, e.g. 1,128,100).",
            DefaultValueFactory = _ => "1,28,28",
        };
        var finetuneEpochs = new Option<int>("--finetune-epochs") { Description = "Fine-tuning epochs after every step (0: none).", DefaultValueFactory = _ => 0 };
        var sparseEpochs = new Option<int>("--sparse-epochs") { Description = "Sparse-training epochs before pruning (BN-scale: L1 on BN scales; otherwise group lasso)." };
        var sparseLambda = new Option<float>("--sparse-lambda") { Description = "Strength of the sparse-training penalty.", DefaultValueFactory = _ => 1e-4f };
        var listGroups = new Option<bool>("--list-groups") { Description = "Print the channel groups of the model and exit." };
        var dataset = CommonOptions.Dataset();
        var mnist = CommonOptions.Mnist();
        var dataDir = CommonOptions.DataDir();
        var training = new TrainingOptionSet();
        var output = new Option<string>("--out") { Description = "Output folder.", DefaultValueFactory = _ => "pruned", HelpName = "DIR" };
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted run in --out, reusing finished steps." };
        var json = CommonOptions.Json();
        var command = new Command("prune",
            "Prune a trained CP-ResNet structurally (whole channels are removed from weights, batch norms and their consumers), " +
            "fine-tune after every step, test, and report parameters, MACs and widths before and after.")
        {
            checkpoint, model, width, ratio, importance, reduction, normalizer, global, steps, roundTo, maxRatio, ignore,
            targetParams, targetMacs, inputShape, finetuneEpochs, sparseEpochs, sparseLambda, listGroups, dataset, mnist, dataDir, output, resume, json,
        };
        var ascData = new AscDataOptionSet();
        foreach (var option in training.All.Concat(ascData.ForTraining)) command.Add(option);
        command.SetAction(parse =>
        {
            var (_, widths) = CommonOptions.ReadModel(parse, model, width);
            bool asJson = parse.GetValue(json);
            var human = console.Human(asJson);
            // An unusable --device fails here, before the checkpoint is loaded and pruned.
            TrainingOptionSet.ParseDevice(parse.GetValue(training.Device)!);
            var source = ModelSource.Load(parse.GetValue(checkpoint)!, widths);
            string data = CommonOptions.ReadDataset(parse, dataset, mnist, source.Dataset);
            if (data == "mnist" && source.Dataset == "asc")
                throw new CliException($"{source.Checkpoint} was trained on acoustic scenes (its metadata holds a mel front end); prune it with --dataset asc.", Program.UsageError);
            var mel = data == "asc" ? TestCommand.FrontEndOf(source, human) : null;
            var shape = parse.GetResult(inputShape) is { Implicit: true } && mel is not null
                ? [1, mel.NMels, mel.FrameCount(mel.SampleRate)]
                : CommonOptions.ParseShape(parse.GetValue(inputShape)!, "--input-shape");
            var prunerOptions = new PrunerOptions
            {
                Ratio = InRange(parse.GetValue(ratio), 0, 1, "--ratio"),
                IterativeSteps = AtLeast(parse.GetValue(steps), 1, "--iterative-steps"),
                Global = parse.GetValue(global),
                RoundTo = AtLeast(parse.GetValue(roundTo), 0, "--round-to"),
                MaxRatio = InRange(parse.GetValue(maxRatio), 0, 1.0000001, "--max-ratio"),
                IgnoredLayers = parse.GetValue(ignore) ?? [],
                Importance = new Importance
                {
                    Criterion = Choice(parse.GetValue(importance)!, "--importance", new Dictionary<string, ImportanceCriterion>
                    {
                        ["l1"] = ImportanceCriterion.L1, ["l2"] = ImportanceCriterion.L2, ["bn-scale"] = ImportanceCriterion.BnScale,
                        ["taylor"] = ImportanceCriterion.Taylor, ["random"] = ImportanceCriterion.Random, ["lamp"] = ImportanceCriterion.Lamp,
                    }),
                    Reduction = Choice(parse.GetValue(reduction)!, "--reduction", Enum.GetValues<GroupReduction>().ToDictionary(v => v.ToString().ToLowerInvariant())),
                    Normalizer = Choice(parse.GetValue(normalizer)!, "--normalizer", Enum.GetValues<ImportanceNormalizer>().ToDictionary(v => v.ToString().ToLowerInvariant())),
                },
            };
            if (parse.GetValue(listGroups))
            {
                var graph = UserInput(() => DependencyGraph.Build(source.Model, Tensor.Zeros([1, .. shape]), prunerOptions.IgnoredLayers));
                if (asJson)
                    console.Out.WriteLine(new JsonObject
                    {
                        ["groups"] = new JsonArray(graph.Groups.Select(g => (JsonNode)new JsonObject
                        {
                            ["name"] = g.Name,
                            ["width"] = g.Width,
                            ["members"] = new JsonArray(g.Members.Select(m => (JsonNode)$"{m.Name}[{m.Dim}]").ToArray()),
                        }).ToArray()),
                    }.ToJsonString(Json.Indented));
                else human.Write(graph.Describe());
                return Program.Success;
            }

            var finetune = training.Read(parse) with { Epochs = parse.GetValue(finetuneEpochs) };
            var options = new PruneWorkflowOptions
            {
                Pruner = prunerOptions,
                TargetParameters = parse.GetValue(targetParams),
                TargetMacs = parse.GetValue(targetMacs),
                InputShape = shape,
                Finetune = finetune,
                SparseEpochs = AtLeast(parse.GetValue(sparseEpochs), 0, "--sparse-epochs"),
                SparseLambda = parse.GetValue(sparseLambda),
                ModelMetadata = mel is null ? source.Config.ToMetadata() : AscData.ModelMetadata(source.Config.ToMetadata(), mel, source.Augment ?? new AugmentConfig()),
                OutputDirectory = parse.GetValue(output)!,
                Resume = parse.GetValue(resume),
            };
            if (options.TargetParameters is not null && options.TargetMacs is not null)
                throw new CliException("Give --target-params or --target-macs, not both.", Program.UsageError);

            var needsTraining = finetune.Epochs > 0 || options.SparseEpochs > 0 || prunerOptions.Importance.Criterion == ImportanceCriterion.Taylor;
            DataLoader? train = null, validation = null;
            DataLoader test;
            if (finetune.Threads is { } threads) NeuralCore.Backends.Cpu.CpuThreading.Threads = threads;
            if (mel is not null)
            {
                if (parse.GetResult(training.ValidationCount) is { Implicit: false })
                    throw new CliException("--validation-count applies to MNIST; for acoustic scenes use --validation-fraction (or --seed-validation).", Program.UsageError);
                // Fine-tuning uses the augmentations the model was trained with (the seed's when the checkpoint does not say).
                var augment = source.Augment ?? new AugmentConfig();
                if (augment.MixupAlpha > 0) options = options with { LossFunction = AscData.MixupLoss(augment.MixupAlpha) };
                var (mode, fraction) = ascData.ReadValidation(parse);
                var asc = AscData.Load(parse.GetValue(dataDir), parse.GetValue(ascData.SkipMissing), mode, fraction, parse.GetValue(ascData.CacheDir), mel.SampleRate, human);
                var frontEnd = new MelFrontEnd(mel, augment);
                var testSource = asc.Source(asc.Split.Test, frontEnd, training: false, 0);
                var sources = new List<AscBatchSource> { testSource };
                if (needsTraining)
                {
                    var trainSource = asc.Source(asc.TrainClips(training.ReadLimit(parse)), frontEnd, training: true, finetune.Seed);
                    var validationSource = asc.Source(asc.Split.Validation, frontEnd, training: false, 0);
                    sources.AddRange([trainSource, validationSource]);
                    train = new DataLoader(trainSource, finetune.BatchSize, shuffle: true, finetune.Seed);
                    validation = new DataLoader(validationSource, finetune.BatchSize, shuffle: false, 0);
                    options = options with { Finetune = finetune with { DataDescription = asc.Describe(trainSource.Count, mode, fraction) } };
                }
                asc.Preload(sources, human, console.Cancellation);
                test = new DataLoader(testSource, finetune.BatchSize, shuffle: false, 0);
            }
            else
            {
                var ascOnly = ascData.ForTraining.Where(o => parse.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToList();
                if (ascOnly.Count > 0)
                    throw CommonOptions.AcousticScenesOnly(ascOnly, "--dataset asc");
                var splits = DataSource.LoadMnist(parse.GetValue(dataDir), parse.GetValue(training.ValidationCount), human);
                var trainSet = TrainingOptionSet.LimitImages(splits.Train, training.ReadLimit(parse), finetune.Seed);
                train = needsTraining ? new DataLoader(new ImageBatchSource(trainSet), finetune.BatchSize, shuffle: true, finetune.Seed) : null;
                validation = needsTraining ? new DataLoader(new ImageBatchSource(splits.Validation), finetune.BatchSize, shuffle: false, 0) : null;
                test = new DataLoader(new ImageBatchSource(splits.Test), finetune.BatchSize, shuffle: false, 0);
            }

            var before = ModelSummary.Summarize(source.Model, shape);
            var baseline = Evaluator.Test(source.Model, test);
            var reporter = ProgressReporters.ForConsole(human, console.HumanIsTerminal(asJson));
            PruneWorkflowResult result;
            try
            {
                result = UserInput(() => new PruneWorkflow(options, reporter).Run(source.Model, train, validation, test, console.Cancellation));
            }
            finally
            {
                (reporter as IDisposable)?.Dispose();
            }
            var after = ModelSummary.Summarize(source.Model, shape);
            var widthsAfter = result.Steps.Count > 0 ? result.Steps[^1].Groups : [];

            human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ratio {result.Ratio:0.####}: parameters {before.TotalParameters:N0} -> {after.TotalParameters:N0}, MACs {before.TotalMacs:N0} -> {after.TotalMacs:N0} (conv {before.ConvMacs:N0} -> {after.ConvMacs:N0})"));
            foreach (var g in widthsAfter) human.WriteLine($"  {g.Name,-28} {g.InitialWidth,4} -> {g.WidthAfter,4}");
            human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"test accuracy {baseline.Accuracy:P2} -> {result.Test!.Accuracy:P2}, macro accuracy {baseline.MacroAccuracy:P2} -> {result.Test.MacroAccuracy:P2}"));
            if (result.Test.PerDevice is not null) human.Write(TestReportText.DeviceTable(result.Test));
            human.WriteLine($"pruned model: {Path.GetFullPath(result.FinalCheckpoint)}");
            if (asJson)
            {
                console.Out.WriteLine(new JsonObject
                {
                    ["ratio"] = result.Ratio,
                    ["checkpoint"] = Path.GetFullPath(result.FinalCheckpoint),
                    ["parameters_before"] = before.TotalParameters,
                    ["parameters_after"] = after.TotalParameters,
                    ["macs_before"] = before.TotalMacs,
                    ["macs_after"] = after.TotalMacs,
                    ["conv_macs_before"] = before.ConvMacs,
                    ["conv_macs_after"] = after.ConvMacs,
                    ["widths"] = new JsonArray(widthsAfter.Select(g => (JsonNode)new JsonObject
                    {
                        ["group"] = g.Name, ["initial"] = g.InitialWidth, ["final"] = g.WidthAfter,
                    }).ToArray()),
                    ["steps"] = JsonSerializer.SerializeToNode(result.Steps),
                    ["finetune_runs"] = new JsonArray(result.FinetuneRuns.Select(r => (JsonNode)Path.GetFullPath(r)).ToArray()),
                    ["test_before"] = JsonSerializer.SerializeToNode(baseline),
                    ["test_after"] = JsonSerializer.SerializeToNode(result.Test),
                }.ToJsonString(Json.Indented));
            }
            return Program.Success;
        });
        return command;
    }

    /// <summary>Runs pruning code whose ArgumentExceptions come from the command line's values (unknown layer, unreachable budget).</summary>
    private static T UserInput<T>(Func<T> action)
    {
        try
        {
            return action();
        }
        catch (ArgumentException e)
        {
            throw new CliException(e.Message.Split(" (Parameter")[0], Program.UsageError);
        }
    }

    private static T Choice<T>(string text, string option, IReadOnlyDictionary<string, T> choices) =>
        choices.TryGetValue(text.Trim().ToLowerInvariant(), out var v) ? v
            : throw new CliException($"{option} {text} is not one of: {string.Join(", ", choices.Keys)}.", Program.UsageError);

    private static double InRange(double value, double low, double high, string option) =>
        value >= low && value < high ? value : throw new CliException(string.Create(CultureInfo.InvariantCulture, $"{option} must lie in [{low}, {high:0.##}); found {value}."), Program.UsageError);

    private static int AtLeast(int value, int min, string option) =>
        value >= min ? value : throw new CliException($"{option} must be at least {min}; found {value}.", Program.UsageError);
}
