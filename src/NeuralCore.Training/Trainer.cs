using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NeuralCore.Backends.Cpu;
using NeuralCore.Data;
using NeuralCore.IO;
using NeuralCore.NN;
using NeuralCore.Optim;

namespace NeuralCore.Training;

/// <summary>
/// Trains a classifier the way the seed experiment did: cross-entropy on logits, Adam with weight decay, a per-epoch
/// learning-rate schedule, validation after every epoch, the best checkpoint by validation loss, and a final test;
/// with a run folder that a killed run resumes from to the same weights.
/// </summary>
/// <remarks>
/// <para>
/// Each finished epoch writes, in this order: <c>metrics.jsonl</c> (rewritten whole), <c>best.safetensors</c> when
/// the validation loss improved, then <c>last.ckpt</c>. Every write is atomic, and <c>last.ckpt</c> is the only
/// file a resume reads: a kill at any moment leaves the previous good <c>last.ckpt</c>, the resumed run redoes the
/// unfinished epoch, and since everything that decides the weights is in that file (weights, buffers, optimizer
/// and scheduler state, the default generator) or derived from (seed, epoch) (the data order), the resumed run ends
/// with the same weights as an uninterrupted one on the same thread count.
/// </para>
/// <para>
/// A fresh run seeds <see cref="Generator.Default"/> with <see cref="TrainerOptions.Seed"/> (as Lightning's
/// <c>seed_everything</c> does), so ops that are given no generator repeat too. Epochs are numbered from 1 in files
/// and messages; the scheduler and the data loader see epoch - 1.
/// </para>
/// </remarks>
public sealed class Trainer
{
    private readonly IProgressReporter _reporter;

    /// <summary>Creates a trainer; progress goes to <paramref name="reporter"/> (nowhere when null).</summary>
    public Trainer(TrainerOptions options, IProgressReporter? reporter = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        Files = new RunFiles(options.RunDirectory);
        _reporter = reporter ?? NullProgressReporter.Instance;
    }

    /// <summary>The options of this trainer.</summary>
    public TrainerOptions Options { get; }

    /// <summary>The files of the run folder.</summary>
    public RunFiles Files { get; }

    /// <summary>Called after each file a finished epoch writes, with the file's path (tests use it to stop a run between two writes).</summary>
    internal Action<string>? AfterWrite { get; set; }

    /// <summary>
    /// Runs after every backward pass and before the optimizer step (sparse-training penalties add their
    /// gradients here, e.g. <c>NeuralCore.Pruning.BnScaleRegularizer.Apply</c>).
    /// </summary>
    public Action? AfterBackward { get; set; }

    /// <summary>
    /// The training loss of one batch, replacing the default cross-entropy on the logits: called in training mode with
    /// the model and the batch (inputs and targets already on the device), it runs the forward pass and returns the
    /// scalar loss to back-propagate and the logits [B, classes] the running training accuracy is counted from
    /// (against the batch's targets). Used for losses that change the inputs too, such as mixup's mixed
    /// cross-entropy. Random draws should come from <see cref="Generator.Default"/>, whose state the checkpoint
    /// carries, so a resumed run repeats them. Null: <c>CrossEntropy(model(inputs), targets)</c>.
    /// </summary>
    public Func<Module, Batch, (Tensor Loss, Tensor Logits)>? LossFunction { get; set; }

    /// <summary>
    /// Trains <paramref name="model"/> for <see cref="TrainerOptions.Epochs"/> epochs, or, with
    /// <see cref="TrainerOptions.Resume"/> and a <c>last.ckpt</c> in the run folder, continues after its epoch.
    /// </summary>
    /// <param name="model">The model; it is moved to the options' device and trained in place.</param>
    /// <param name="train">The training batches (shuffled; its batch size must equal <see cref="TrainerOptions.BatchSize"/>).</param>
    /// <param name="validation">The validation batches.</param>
    /// <param name="cancellationToken">Stops the run between two batches; the last finished epoch's checkpoint stays.</param>
    /// <exception cref="TrainingException">The run folder holds a run and Resume is off, the resumed run's options differ, or the loss became NaN or infinite.</exception>
    /// <exception cref="OperationCanceledException">The run was cancelled.</exception>
    public FitResult Fit(Module model, DataLoader train, DataLoader validation, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(validation);
        if (train.BatchSize != Options.BatchSize)
            throw new ArgumentException($"The training loader's batch size is {train.BatchSize} but the trainer's options say {Options.BatchSize}; build the loader with TrainerOptions.BatchSize.", nameof(train));
        if (train.Source.NumClasses != validation.Source.NumClasses)
            throw new ArgumentException($"The training data has {train.Source.NumClasses} classes but the validation data has {validation.Source.NumClasses}.", nameof(validation));
        if (train.BatchCount == 0)
            throw new ArgumentException($"The training loader yields no batches ({train.Source.Count} samples, batch size {train.BatchSize}, drop last {train.DropLast}).", nameof(train));

        if (Options.Threads is { } threads) CpuThreading.Threads = threads;
        Directory.CreateDirectory(Files.Directory);
        model.To(Options.Device);

        var optimizer = new Adam(model.Parameters(), Options.LearningRate, (Options.Beta1, Options.Beta2), Options.Eps, Options.WeightDecay);
        var scheduler = new LambdaLR(optimizer,
            Schedules.ExpWarmupLinearDown(Options.WarmupEpochs, Options.RampdownLength, Options.RampdownStart, Options.LastLrFactor));

        var history = new List<EpochMetrics>();
        var steps = new StepPlan();
        int startEpoch = 0, bestEpoch = 0;
        double bestLoss = double.PositiveInfinity;
        if (File.Exists(Files.Last))
        {
            var checkpoint = OpenForResume();
            // The options check above proved the architecture is the same; adopting the file's shapes lets a pruned
            // model's fine-tuning resume into a model built with the original widths.
            model.LoadStateDict(checkpoint.Model, adoptShapes: true);
            optimizer.LoadStateDict(checkpoint.Optimizer);
            scheduler.LoadStateDict(checkpoint.Scheduler);
            Generator.Default.SetState(checkpoint.DefaultGenerator);
            history.AddRange(checkpoint.History);
            (startEpoch, bestEpoch, bestLoss) = (checkpoint.Epoch, checkpoint.BestEpoch, checkpoint.BestValidationLoss);
            if (checkpoint.Threads != CpuThreading.Threads)
                _reporter.Message($"note: the run used {checkpoint.Threads} CPU threads and this process uses {CpuThreading.Threads}; the result will be close to, but not bit-identical with, an uninterrupted run.");
            _reporter.Message($"Resuming '{Options.ExperimentName}' after epoch {startEpoch} of {Options.Epochs} (best so far: epoch {bestEpoch}, val_loss {bestLoss.ToString("F4", CultureInfo.InvariantCulture)}).");
        }
        else
        {
            // Ops given no generator (dropout, augmentations) draw from the default one: seeding it makes a fresh
            // run repeatable, and the checkpoint carries its state across a resume.
            Generator.Default.ManualSeed(Options.Seed);
            if (Options.Resume)
                _reporter.Message($"No checkpoint in {Files.Directory} yet; starting '{Options.ExperimentName}' from epoch 1.");
        }
        // NOTE: metrics.jsonl may hold lines of an epoch that finished after the checkpoint was written; the
        // checkpoint's history is the truth, so the file is cut back to it.
        Files.WriteMetrics(history);
        Files.WriteConfig(ConfigJson(train, validation));

        if (startEpoch >= Options.Epochs)
            _reporter.Message($"'{Options.ExperimentName}' has already finished all {Options.Epochs} epochs; nothing to train.");
        else
            _reporter.RunStarted(new RunStartInfo(Options.ExperimentName, Files.Directory, Options.Epochs, startEpoch + 1,
                train.Source.Count, validation.Source.Count, train.BatchCount, model.ParameterCount()));

        for (int epoch = startEpoch + 1; epoch <= Options.Epochs; epoch++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            EpochMetrics? metrics = null;
            bool isBest = false;
            _reporter.EpochStarted(epoch, Options.Epochs, train.BatchCount);
            try
            {
                var clock = Stopwatch.StartNew();
                double lr = optimizer.ParamGroups[0].Lr;
                var (trainLoss, trainAccuracy) = TrainEpoch(model, optimizer, train, epoch, steps, cancellationToken);
                scheduler.Step();
                var (validationLossSum, validationConfusion) = Evaluator.Run(model, validation, Options.Device, (batch, batches, value) =>
                    new NonFiniteLossException("validation", epoch, batch, batches, value, File.Exists(Files.Last) ? Files.Last : null, epoch - 1));
                double validationLoss = validationLossSum / Math.Max(validationConfusion.Total, 1);
                var finished = new EpochMetrics(epoch, trainLoss, trainAccuracy, validationLoss, validationConfusion.Accuracy, lr, clock.Elapsed.TotalSeconds);
                history.Add(finished);
                Files.WriteMetrics(history);
                AfterWrite?.Invoke(Files.Metrics);
                if (validationLoss < bestLoss)
                {
                    (bestLoss, bestEpoch, isBest) = (validationLoss, epoch, true);
                    var bestMetadata = new Dictionary<string, string>(Options.ModelMetadata)
                    {
                        ["epoch"] = epoch.ToString(CultureInfo.InvariantCulture),
                        ["val_loss"] = validationLoss.ToString("R", CultureInfo.InvariantCulture),
                    };
                    model.Save(Files.Best, bestMetadata);
                    AfterWrite?.Invoke(Files.Best);
                }
                new TrainingCheckpoint
                {
                    Epoch = epoch,
                    BestValidationLoss = bestLoss,
                    BestEpoch = bestEpoch,
                    Model = model.StateDict(),
                    Optimizer = optimizer.StateDict(),
                    Scheduler = scheduler.StateDict(),
                    DefaultGenerator = Generator.Default.GetState(),
                    History = history,
                    Options = Options.ReproducibilityJson().ToJsonString(),
                    ModelMetadata = Options.ModelMetadata,
                    Threads = CpuThreading.Threads,
                }.Save(Files.Last);
                AfterWrite?.Invoke(Files.Last);
                metrics = finished;
            }
            finally
            {
                _reporter.EpochEnded(metrics, isBest);
            }
        }
        return new FitResult(Files.Directory, history, bestEpoch, bestLoss, startEpoch);
    }

    /// <summary>Reads <c>last.ckpt</c> for a resume, refusing when Resume is off or the options that decide the weights differ.</summary>
    private TrainingCheckpoint OpenForResume()
    {
        if (!Options.Resume)
        {
            string state = TryReadEpoch(Files.Last) is { } done ? $"its last checkpoint is at epoch {done}" : "it has a last checkpoint";
            throw new TrainingException(
                $"The run folder {Files.Directory} already holds a run ({state}). Pass --resume to continue it, " +
                "or choose another --experiment-name, or delete the folder to start over.");
        }
        var checkpoint = TrainingCheckpoint.Load(Files.Last);
        var saved = checkpoint.OptionsJson();
        var current = Options.ReproducibilityJson();
        var differences = current.Select(p => p.Key)
            .Where(key => !JsonNode.DeepEquals(saved[key], current[key]))
            .Select(key => $"{key}: run {Describe(saved[key])}, now {Describe(current[key])}")
            .ToList();
        if (differences.Count > 0)
            throw new TrainingException(
                $"Cannot resume {Files.Directory}: these options differ from the run's ({string.Join("; ", differences)}). " +
                "Resume with the run's options (see its config.json), or start a new experiment with another --experiment-name.");
        if (checkpoint.Epoch > Options.Epochs)
            throw new TrainingException(
                $"Cannot resume {Files.Directory} to {Options.Epochs} epochs: it has already finished epoch {checkpoint.Epoch}. Pass --epochs {checkpoint.Epoch} or more.");
        return checkpoint;

        static string Describe(JsonNode? node) => node is null ? "(none)" : node.ToJsonString();
    }

    private static int? TryReadEpoch(string path)
    {
        try
        {
            return TrainingCheckpoint.Load(path).Epoch;
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            return null;
        }
    }

    private JsonObject ConfigJson(DataLoader train, DataLoader validation)
    {
        var config = Options.ToJson();
        config["train_samples"] = train.Source.Count;
        config["validation_samples"] = validation.Source.Count;
        config["num_classes"] = train.Source.NumClasses;
        config["sample_shape"] = new JsonArray(train.Source.SampleShape.Select(s => (JsonNode)s).ToArray());
        config["threads_used"] = CpuThreading.Threads;
        return config;
    }

    /// <summary>A compiled step for the first batch's shape, when <see cref="TrainerOptions.CompileTrainingStep"/> allows one.</summary>
    private sealed class StepPlan
    {
        public bool Tried;
        public CpuTrainingPlan? Plan;
    }

    private CpuTrainingPlan? PlanFor(Module model, Tensor inputs, StepPlan state)
    {
        if (!state.Tried)
        {
            state.Tried = true;
            if (Options.CompileTrainingStep && LossFunction is null && Options.Device == Device.Cpu)
            {
                try
                {
                    state.Plan = CpuTrainingPlan.Compile(model, inputs.ShapeArray());
                }
                catch (NotSupportedException e)
                {
                    _reporter.Message($"note: training eagerly, the compiled training step does not support this model ({e.Message})");
                }
            }
        }
        return state.Plan is { } plan && inputs.Shape.SequenceEqual(plan.InputShape) && inputs.IsContiguous ? plan : null;
    }

    private (double Loss, double Accuracy) TrainEpoch(Module model, Optimizer optimizer, DataLoader train, int epoch, StepPlan steps, CancellationToken cancellationToken)
    {
        model.Train();
        train.Epoch = epoch - 1;
        int numClasses = train.Source.NumClasses;
        double lossSum = 0;
        long seen = 0, correct = 0;
        int batchIndex = 0;
        var clock = Stopwatch.StartNew();
        foreach (var batch in train)
        {
            cancellationToken.ThrowIfCancellationRequested();
            batchIndex++;
            int n = batch.Targets.Size(0);
            var inputs = batch.Inputs.To(Options.Device);
            var targets = batch.Targets.To(Options.Device);
            // The step's temporaries (activations, intermediate gradients) come from a pool and go back to it when
            // the scope ends, so steady-state training allocates no tensor memory.
            using (TensorScope.Enter())
            {
                optimizer.ZeroGrad(setToNone: false);
                Tensor? loss = null, logits;
                double value = 0;
                if (PlanFor(model, inputs, steps) is { } plan)
                {
                    // Forward, loss and backward in one call: a non-finite loss stops the run below, before the optimizer step.
                    value = plan.Step(inputs, targets);
                    logits = plan.Logits;
                }
                else if (LossFunction is null)
                {
                    logits = model.Call(inputs);
                    loss = Functional.CrossEntropy(logits, targets);
                }
                else
                {
                    (loss, logits) = LossFunction(model, batch with { Inputs = inputs, Targets = targets });
                }
                if (loss is not null) value = loss.Item();
                if (!double.IsFinite(value))
                    throw new NonFiniteLossException("training", epoch, batchIndex, train.BatchCount, value,
                        File.Exists(Files.Last) ? Files.Last : null, epoch - 1);
                loss?.Backward();
                AfterBackward?.Invoke();
                optimizer.Step();

                lossSum += value * n;
                seen += n;
                correct += CountCorrect(logits, batch.Targets, numClasses);
            }
            double seconds = Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            _reporter.BatchCompleted(new BatchProgress(epoch, Options.Epochs, batchIndex, train.BatchCount, seen,
                lossSum / seen, (double)correct / seen, seen / seconds));
        }
        return (lossSum / seen, (double)correct / seen);
    }

    private static long CountCorrect(Tensor logits, Tensor targets, int numClasses)
    {
        var scores = logits.Detach().ToArray();
        var truth = targets.ToInt64Array();
        long correct = 0;
        for (int i = 0; i < truth.Length; i++)
            if (Metrics.ArgMax(scores.AsSpan(i * numClasses, numClasses)) == truth[i]) correct++;
        return correct;
    }

    /// <summary>
    /// Evaluates <paramref name="model"/> on <paramref name="loader"/> in eval mode without gradients: loss, accuracy,
    /// macro accuracy, per-class accuracy and the confusion matrix.
    /// </summary>
    public TestReport Test(Module model, DataLoader loader)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(loader);
        model.To(Options.Device);
        return Evaluator.Test(model, loader, Options.Device);
    }

    /// <summary>
    /// Loads <c>best.safetensors</c> of the run into <paramref name="model"/>, tests it on <paramref name="loader"/> and
    /// writes <c>test.json</c> (the report plus the checkpoint's epoch and validation loss).
    /// </summary>
    /// <exception cref="TrainingException">The run has no <c>best.safetensors</c> yet.</exception>
    public TestReport TestBest(Module model, DataLoader loader)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!File.Exists(Files.Best))
            throw new TrainingException($"{Files.Best} does not exist: the run has not finished an epoch yet. Train first (neuralcore train ...).");
        var metadata = model.Load(Files.Best, adoptShapes: true);
        var report = Test(model, loader);
        var json = JsonSerializer.SerializeToNode(report)!.AsObject();
        json["checkpoint"] = Path.GetFullPath(Files.Best);
        json["epoch"] = metadata.TryGetValue("epoch", out var e) && int.TryParse(e, CultureInfo.InvariantCulture, out var epoch) ? epoch : null;
        json["val_loss"] = metadata.TryGetValue("val_loss", out var v) && double.TryParse(v, CultureInfo.InvariantCulture, out var valLoss) ? valLoss : null;
        Files.WriteTest(json);
        return report;
    }
}
