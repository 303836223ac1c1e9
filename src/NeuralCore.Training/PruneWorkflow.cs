using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NeuralCore.Data;
using NeuralCore.IO;
using NeuralCore.NN;
using NeuralCore.Pruning;

namespace NeuralCore.Training;

/// <summary>Settings of a prune-and-fine-tune run (the seed's step 3).</summary>
public sealed record PruneWorkflowOptions
{
    /// <summary>How to prune (ratio, criterion, steps, local/global, round-to, ignored layers).</summary>
    public PrunerOptions Pruner { get; init; } = new() { Ratio = 0.4 };

    /// <summary>When set, the ratio is the smallest (to 1e-4) whose pruned model has at most this many parameters.</summary>
    public long? TargetParameters { get; init; }

    /// <summary>When set, the ratio is the smallest whose pruned model has at most this many conv and linear MACs per sample.</summary>
    public long? TargetMacs { get; init; }

    /// <summary>Shape of one input without the batch dimension (e.g. 1, 28, 28), for tracing.</summary>
    public int[] InputShape { get; init; } = [1, 28, 28];

    /// <summary>
    /// Fine-tuning after every pruning step (0 epochs: no fine-tuning). Its RunsDirectory and ExperimentName are
    /// ignored: each step's run folder is <c>OUT/step-K</c>.
    /// </summary>
    public TrainerOptions Finetune { get; init; } = new() { Epochs = 0 };

    /// <summary>Batches whose gradients Taylor importance uses before each step.</summary>
    public int TaylorBatches { get; init; } = 4;

    /// <summary>Epochs of sparse training (BN-scale or group-lasso penalty, by criterion) before the first step.</summary>
    public int SparseEpochs { get; init; }

    /// <summary>Strength of the sparse-training penalty.</summary>
    public float SparseLambda { get; init; } = 1e-4f;

    /// <summary>Architecture metadata stored with every pruned checkpoint (e.g. <c>CpResNetConfig.ToMetadata()</c>).</summary>
    public IReadOnlyDictionary<string, string> ModelMetadata { get; init; } = new Dictionary<string, string>();

    /// <summary>The output folder.</summary>
    public string OutputDirectory { get; init; } = "pruned";

    /// <summary>Continue an interrupted run in <see cref="OutputDirectory"/>, reusing finished steps.</summary>
    public bool Resume { get; init; }

    /// <summary>The training loss of fine-tuning and sparse training (see <see cref="Trainer.LossFunction"/>); null: cross-entropy.</summary>
    public Func<Module, Batch, (Tensor Loss, Tensor Logits)>? LossFunction { get; init; }
}

/// <summary>What a prune-and-fine-tune run did.</summary>
/// <param name="Ratio">The final ratio (found from the budget when one was given).</param>
/// <param name="ParametersBefore">Parameters before pruning.</param>
/// <param name="ParametersAfter">Parameters after pruning.</param>
/// <param name="MacsBefore">Conv and linear MACs per sample before.</param>
/// <param name="MacsAfter">Conv and linear MACs per sample after.</param>
/// <param name="Steps">Every step's widths and counts.</param>
/// <param name="FinalCheckpoint">The pruned (and fine-tuned) model: <c>OUT/pruned.safetensors</c>.</param>
/// <param name="FinetuneRuns">Run folders of the fine-tuning stages, in order.</param>
/// <param name="Test">Test report of the final model, when test data was given.</param>
public sealed record PruneWorkflowResult(double Ratio, long ParametersBefore, long ParametersAfter, long MacsBefore, long MacsAfter,
    IReadOnlyList<PruningStepResult> Steps, string FinalCheckpoint, IReadOnlyList<string> FinetuneRuns, TestReport? Test);

/// <summary>
/// Prunes a trained model step by step, fine-tuning with the <see cref="Trainer"/> after each step, and tests the
/// result. Every finished step is recorded in <c>OUT/steps.json</c> with its checkpoint, so an interrupted run resumes
/// after its last finished step (and inside a step's fine-tuning, from that run's last checkpoint).
/// </summary>
public sealed class PruneWorkflow(PruneWorkflowOptions options, IProgressReporter? reporter = null)
{
    private readonly IProgressReporter _reporter = reporter ?? new NullProgressReporter();

    /// <summary>The settings.</summary>
    public PruneWorkflowOptions Options { get; } = options;

    /// <summary>Final checkpoint path.</summary>
    public string FinalCheckpoint => Path.Combine(Options.OutputDirectory, "pruned.safetensors");

    private string StepsFile => Path.Combine(Options.OutputDirectory, "steps.json");
    private string StepCheckpoint(int step) => Path.Combine(Options.OutputDirectory, $"step-{step}.safetensors");

    /// <summary>
    /// Prunes <paramref name="model"/> in place. <paramref name="train"/> and <paramref name="validation"/> are needed for
    /// fine-tuning, sparse training and Taylor importance; <paramref name="test"/> for the final test.
    /// </summary>
    public PruneWorkflowResult Run(Module model, DataLoader? train, DataLoader? validation, DataLoader? test, CancellationToken cancellationToken = default)
    {
        Directory.CreateDirectory(Options.OutputDirectory);
        var needsData = Options.Finetune.Epochs > 0 || Options.SparseEpochs > 0 || Options.Pruner.Importance.Criterion == ImportanceCriterion.Taylor;
        if (needsData && (train is null || validation is null))
            throw new ArgumentException("Fine-tuning, sparse training and Taylor importance need training and validation data.");
        var example = Tensor.Zeros([1, .. Options.InputShape], model.Parameters().First().Device);
        var record = LoadRecord();
        if (record.Steps.Count > 0 && !Options.Resume)
            throw new TrainingException($"{Options.OutputDirectory} already holds a pruning run ({record.Steps.Count} steps done). Pass --resume to continue it, or choose another --out.");

        var parametersBefore = record.ParametersBefore ?? model.ParameterCount();
        long macsBefore;
        PrunerOptions prunerOptions;
        var runs = new List<string>();
        if (record.Steps.Count == 0)
        {
            if (Options.SparseEpochs > 0) SparseTraining(model, train!, validation!, cancellationToken);
            var probe = new Pruner(model, example, Options.Pruner);
            macsBefore = Pruner.CountMacs(probe.Graph, null);
            prunerOptions = Options.Pruner with { Ratio = FindRatio(probe, "smallest ratio") ?? Options.Pruner.Ratio };
            record = record with { ParametersBefore = parametersBefore, MacsBefore = macsBefore, Ratio = prunerOptions.Ratio, InitialWidths = probe.InitialWidths.ToDictionary() };
        }
        else
        {
            // Resume: the model continues from the last finished step's checkpoint.
            var last = record.Steps[^1];
            model.LoadStateDict(TensorIO.LoadSafeTensors(last.Checkpoint).Tensors, adoptShapes: true);
            macsBefore = record.MacsBefore!.Value;
            prunerOptions = Options.Pruner with { Ratio = record.Ratio!.Value, InitialWidths = record.InitialWidths, StepsDone = record.Steps.Count };
            runs.AddRange(record.Steps.Where(s => s.FinetuneRun is not null).Select(s => s.FinetuneRun!));
            _reporter.Message($"Resuming the pruning run in {Options.OutputDirectory} after step {record.Steps.Count} of {Options.Pruner.IterativeSteps}.");
        }

        var pruner = new Pruner(model, example, prunerOptions);
        var steps = record.Steps.Select(s => s.Result).ToList();
        while (pruner.CurrentStep < prunerOptions.IterativeSteps)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (prunerOptions.Importance.Criterion == ImportanceCriterion.Taylor) AccumulateGradients(model, train!);
            // With a budget, the last of several steps prunes to the ratio that meets it from where the model is now: the
            // first search planned one step, and global ranking re-ranks (and fine-tuning re-weights) between steps, which
            // left globally pruned models up to a fifth over the budget.
            double? lastRatio = pruner.CurrentStep == prunerOptions.IterativeSteps - 1 && prunerOptions.IterativeSteps > 1
                ? FindRatio(pruner, "the last step") : null;
            var step = pruner.Step(ratio: lastRatio);
            model.ZeroGrad();
            steps.Add(step);
            _reporter.Message(string.Create(CultureInfo.InvariantCulture,
                $"pruning step {step.Step}/{prunerOptions.IterativeSteps}: ratio {step.Ratio:0.####}, parameters {step.ParametersBefore:N0} -> {step.ParametersAfter:N0}, MACs {step.MacsBefore:N0} -> {step.MacsAfter:N0}"));
            string? run = null;
            if (Options.Finetune.Epochs > 0)
            {
                var trainer = new Trainer(Options.Finetune with
                {
                    RunsDirectory = Options.OutputDirectory,
                    ExperimentName = $"step-{step.Step}",
                    Resume = Options.Resume,
                    ModelMetadata = Options.ModelMetadata,
                }, _reporter) { LossFunction = Options.LossFunction };
                trainer.Fit(model, train!, validation!, cancellationToken);
                // Continue from the best fine-tuned weights, as the seed did.
                model.LoadStateDict(TensorIO.LoadSafeTensors(trainer.Files.Best).Tensors, adoptShapes: true);
                run = trainer.Files.Directory;
                runs.Add(run);
            }
            var checkpoint = StepCheckpoint(step.Step);
            model.Save(checkpoint, Metadata(step.Ratio));
            record = record with { Steps = [.. record.Steps, new StepRecord(step, checkpoint, run)] };
            SaveRecord(record);
        }

        // The ratio the last step reached (with a budget and several steps, searched again for it).
        var finalRatio = steps.Count > 0 ? steps[^1].Ratio : prunerOptions.Ratio;
        model.Save(FinalCheckpoint, Metadata(finalRatio));
        TestReport? report = null;
        if (test is not null)
        {
            report = Evaluator.Test(model, test, Options.Finetune.Device);
            AtomicFile.WriteText(Path.Combine(Options.OutputDirectory, "test.json"), JsonSerializer.Serialize(report, RunFiles.Indented) + "\n");
        }
        var result = new PruneWorkflowResult(finalRatio, parametersBefore, model.ParameterCount(), macsBefore,
            Pruner.CountMacs(pruner.Graph, null), steps, FinalCheckpoint, runs, report);
        AtomicFile.WriteText(Path.Combine(Options.OutputDirectory, "result.json"), JsonSerializer.Serialize(result, RunFiles.Indented) + "\n");
        return result;
    }

    private Dictionary<string, string> Metadata(double ratio) => new(Options.ModelMetadata)
    {
        ["pruning_ratio"] = ratio.ToString("R", CultureInfo.InvariantCulture),
        ["pruning_importance"] = Options.Pruner.Importance.Criterion.ToString(),
    };

    /// <summary>
    /// The smallest ratio that brings the model as <paramref name="pruner"/> holds it now to the budget (reported as
    /// <paramref name="what"/>), or null without a budget.
    /// </summary>
    private double? FindRatio(Pruner pruner, string what)
    {
        if (Options.TargetParameters is null && Options.TargetMacs is null) return null;
        if (Options.TargetParameters is not null && Options.TargetMacs is not null)
            throw new ArgumentException("Give a parameter budget or a MAC budget, not both.");
        var found = Options.TargetParameters is { } p ? pruner.FindRatioForParameters(p) : pruner.FindRatioForMacs(Options.TargetMacs!.Value);
        var budget = Options.TargetParameters is { } tp ? $"{tp:N0} parameters" : $"{Options.TargetMacs:N0} MACs";
        if (found is not { } ratio)
            throw new ArgumentException($"No ratio brings this model down to {budget}: even the largest ratio that keeps a channel in every group leaves more.");
        _reporter.Message(string.Create(CultureInfo.InvariantCulture, $"{what} for at most {budget}: {ratio:0.####}"));
        return ratio;
    }

    private void SparseTraining(Module model, DataLoader train, DataLoader validation, CancellationToken cancellationToken)
    {
        var graph = DependencyGraph.Build(model, Tensor.Zeros([1, .. Options.InputShape]), Options.Pruner.IgnoredLayers);
        ISparsityRegularizer regularizer = Options.Pruner.Importance.Criterion == ImportanceCriterion.BnScale
            ? new BnScaleRegularizer(graph, Options.SparseLambda)
            : new GroupLassoRegularizer(graph, Options.SparseLambda);
        var trainer = new Trainer(Options.Finetune with
        {
            Epochs = Options.SparseEpochs,
            RunsDirectory = Options.OutputDirectory,
            ExperimentName = "sparse",
            Resume = Options.Resume,
            ModelMetadata = Options.ModelMetadata,
        }, _reporter) { AfterBackward = regularizer.Apply, LossFunction = Options.LossFunction };
        _reporter.Message($"sparse training for {Options.SparseEpochs} epochs with {regularizer.GetType().Name} (lambda {Options.SparseLambda})");
        trainer.Fit(model, train, validation, cancellationToken);
    }

    private void AccumulateGradients(Module model, DataLoader train)
    {
        var wasTraining = model.Training;
        model.Train();
        model.ZeroGrad();
        var device = model.Parameters().First().Device;
        // Training-mode batch norms update their running statistics; these passes only score the channels, so the
        // statistics are put back afterwards (a pruned model saved without fine-tuning keeps its own).
        var buffers = model.Buffers().Select(b => (Buffer: b, Saved: b.Clone())).ToList();
        try
        {
            var batches = 0;
            foreach (var batch in train)
            {
                Functional.CrossEntropy(model.Call(batch.Inputs.To(device)), batch.Targets.To(device)).Backward();
                if (++batches >= Options.TaylorBatches) break;
            }
        }
        finally
        {
            using (Autograd.Autograd.NoGrad())
                foreach (var (buffer, saved) in buffers) buffer.CopyFrom(saved);
            model.Train(wasTraining);
        }
    }

    private sealed record StepRecord(PruningStepResult Result, string Checkpoint, string? FinetuneRun);

    private sealed record RunRecord(long? ParametersBefore, long? MacsBefore, double? Ratio, Dictionary<string, int>? InitialWidths, List<StepRecord> Steps);

    private RunRecord LoadRecord()
    {
        if (!File.Exists(StepsFile)) return new RunRecord(null, null, null, null, []);
        RunRecord? record;
        try
        {
            record = JsonSerializer.Deserialize<RunRecord>(File.ReadAllText(StepsFile));
        }
        catch (JsonException e)
        {
            throw Invalid(e.Message);
        }
        // A file that parses but lacks what a resume reads is as unusable as a truncated one.
        if (record?.Steps is null) throw Invalid("it holds no list of steps");
        if (record.Steps.Count > 0 && (record.MacsBefore is null || record.Ratio is null || record.Steps.Any(s => s?.Result is null || s.Checkpoint is null)))
            throw Invalid("the run's ratio and MACs or a finished step's result and checkpoint are missing");
        return record;

        TrainingException Invalid(string reason) => new(
            $"{StepsFile} is not a valid pruning record ({reason}), so the run cannot be resumed. " +
            $"Delete the folder {Options.OutputDirectory} (or choose another --out) and run again to start over.");
    }

    private void SaveRecord(RunRecord record) => AtomicFile.WriteText(StepsFile, JsonSerializer.Serialize(record, RunFiles.Indented) + "\n");
}
