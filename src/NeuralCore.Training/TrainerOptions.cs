using System.Globalization;
using System.Text.Json.Nodes;

namespace NeuralCore.Training;

/// <summary>
/// Everything a <see cref="Trainer"/> run depends on. The defaults are the seed experiment's: Adam (weight decay
/// added to the gradient) with learning rate 1e-3 and weight decay 3e-3, batch 256, 50 epochs, and the per-epoch
/// learning-rate factor <c>exp_warmup_linear_down(6, 10, 20, 0.001)</c>.
/// </summary>
/// <remarks>
/// The run folder is <c><see cref="RunsDirectory"/>/<see cref="ExperimentName"/></c>. A resumed run must use the
/// same options as the run it continues (only <see cref="Epochs"/>, <see cref="Threads"/> and <see cref="Resume"/>
/// may differ); bit-identical weights additionally need the same thread count.
/// </remarks>
public sealed record TrainerOptions
{
    /// <summary>Number of epochs to train (an epoch is one pass over the training set).</summary>
    public int Epochs { get; init; } = 50;

    /// <summary>Samples per training batch; the training <see cref="Data.DataLoader"/> must use the same size.</summary>
    public int BatchSize { get; init; } = 256;

    /// <summary>Base learning rate of Adam (multiplied each epoch by the schedule's factor).</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>L2 weight decay of Adam, added to the gradient (PyTorch's <c>Adam(weight_decay=...)</c>).</summary>
    public double WeightDecay { get; init; } = 3e-3;

    /// <summary>Adam's decay of the first moment.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>Adam's decay of the second moment.</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>Adam's epsilon, added to the denominator.</summary>
    public double Eps { get; init; } = 1e-8;

    /// <summary>Epochs of exponential learning-rate warm-up.</summary>
    public int WarmupEpochs { get; init; } = 6;

    /// <summary>Epochs over which the learning rate falls linearly to <see cref="LastLrFactor"/>.</summary>
    public int RampdownLength { get; init; } = 10;

    /// <summary>The epoch (0-based) at which the linear ramp-down starts.</summary>
    public int RampdownStart { get; init; } = 20;

    /// <summary>The learning-rate factor at the end of the ramp-down and after it.</summary>
    public double LastLrFactor { get; init; } = 0.001;

    /// <summary>
    /// Seed of the training data order (with the epoch) and of <see cref="Generator.Default"/> at the start of a fresh
    /// run; the command line also initialises the model from it.
    /// </summary>
    public ulong Seed { get; init; } = 42;

    /// <summary>Threads for the CPU kernels (sets <c>CpuThreading.Threads</c> when the run starts); null keeps the current setting.</summary>
    public int? Threads { get; init; }

    /// <summary>The device the model and the batches live on.</summary>
    public Device Device { get; init; } = Device.Cpu;

    /// <summary>
    /// Run each training step as a <c>CpuTrainingPlan</c> (compiled once per run for the loader's batch shape) when the
    /// device is the CPU, the loss is the default cross-entropy and the model's ops are supported: the same kernels and
    /// result bits as eager autograd, with no per-op bookkeeping and no allocation per step. Batches of another shape
    /// (a smaller last batch), custom losses and other devices train eagerly. Off: every step runs eagerly.
    /// </summary>
    public bool CompileTrainingStep { get; init; } = true;

    /// <summary>The folder that holds one run folder per experiment.</summary>
    public string RunsDirectory { get; init; } = "runs";

    /// <summary>The experiment's name: the name of its run folder.</summary>
    public string ExperimentName { get; init; } = "experiment";

    /// <summary>Continue the run in the run folder from its last checkpoint instead of refusing to overwrite it.</summary>
    public bool Resume { get; init; }

    /// <summary>
    /// The model's architecture as string metadata (for CP-ResNet, <c>CpResNetConfig.ToMetadata()</c>): stored in
    /// <c>best.safetensors</c>, the last checkpoint and <c>config.json</c>, so a checkpoint rebuilds its model alone.
    /// </summary>
    public IReadOnlyDictionary<string, string> ModelMetadata { get; init; } = new Dictionary<string, string>();

    /// <summary>Where the data came from (source and split), recorded in <c>config.json</c>.</summary>
    public string DataDescription { get; init; } = "";

    /// <summary>The run folder: <c>RunsDirectory/ExperimentName</c>.</summary>
    public string RunDirectory => Path.Combine(RunsDirectory, ExperimentName);

    /// <summary>Checks every option and throws an <see cref="ArgumentException"/> naming the first bad one and its valid range.</summary>
    public void Validate()
    {
        static void Require(bool ok, string name, string expected, object found)
        {
            if (!ok) throw new ArgumentException($"Trainer option {name} must be {expected}; found {Convert.ToString(found, CultureInfo.InvariantCulture)}.", name);
        }
        Require(Epochs >= 1, nameof(Epochs), "at least 1", Epochs);
        Require(BatchSize >= 1, nameof(BatchSize), "at least 1", BatchSize);
        Require(double.IsFinite(LearningRate) && LearningRate > 0, nameof(LearningRate), "a positive number", LearningRate);
        Require(double.IsFinite(WeightDecay) && WeightDecay >= 0, nameof(WeightDecay), "0 or more", WeightDecay);
        Require(Beta1 is >= 0 and < 1, nameof(Beta1), "in [0, 1)", Beta1);
        Require(Beta2 is >= 0 and < 1, nameof(Beta2), "in [0, 1)", Beta2);
        Require(Eps > 0, nameof(Eps), "positive", Eps);
        Require(WarmupEpochs >= 0, nameof(WarmupEpochs), "0 or more", WarmupEpochs);
        Require(RampdownLength >= 1, nameof(RampdownLength), "at least 1", RampdownLength);
        Require(RampdownStart >= WarmupEpochs, nameof(RampdownStart), $"at least WarmupEpochs ({WarmupEpochs})", RampdownStart);
        Require(LastLrFactor is >= 0 and <= 1, nameof(LastLrFactor), "in [0, 1]", LastLrFactor);
        Require(Threads is null or >= 1, nameof(Threads), "at least 1 (or unset)", Threads ?? 0);
        Require(!string.IsNullOrWhiteSpace(RunsDirectory), nameof(RunsDirectory), "a folder path", RunsDirectory);
        Require(!string.IsNullOrWhiteSpace(ExperimentName) && ExperimentName.Trim() == ExperimentName
                && ExperimentName.IndexOfAny(Path.GetInvalidFileNameChars()) < 0 && ExperimentName.IndexOfAny(['/', '\\']) < 0
                && ExperimentName is not ("." or ".."),
            nameof(ExperimentName), "a plain folder name (no slashes, no leading or trailing spaces)", ExperimentName);
    }

    /// <summary>The options that decide the trained weights, as JSON (snake_case names); a resumed run must match these.</summary>
    internal JsonObject ReproducibilityJson()
    {
        var model = new JsonObject();
        foreach (var (key, value) in ModelMetadata.OrderBy(p => p.Key, StringComparer.Ordinal)) model[key] = value;
        return new JsonObject
        {
            ["batch_size"] = BatchSize,
            ["lr"] = LearningRate,
            ["weight_decay"] = WeightDecay,
            ["optimizer"] = "adam",
            ["beta1"] = Beta1,
            ["beta2"] = Beta2,
            ["eps"] = Eps,
            ["schedule"] = $"exp_warmup_linear_down(warmup={WarmupEpochs}, rampdown_length={RampdownLength}, rampdown_start={RampdownStart}, last_value={LastLrFactor.ToString("R", CultureInfo.InvariantCulture)})",
            ["seed"] = Seed,
            ["device"] = Device.ToString(),
            ["data"] = DataDescription,
            ["model"] = model,
        };
    }

    /// <summary>All options as JSON (snake_case names), for <c>config.json</c>.</summary>
    internal JsonObject ToJson()
    {
        var json = ReproducibilityJson();
        json["epochs"] = Epochs;
        json["warmup_epochs"] = WarmupEpochs;
        json["rampdown_length"] = RampdownLength;
        json["rampdown_start"] = RampdownStart;
        json["last_lr_factor"] = LastLrFactor;
        json["threads"] = Threads;
        json["compile_training_step"] = CompileTrainingStep;
        json["runs_dir"] = RunsDirectory;
        json["experiment_name"] = ExperimentName;
        json["resume"] = Resume;
        return json;
    }
}
