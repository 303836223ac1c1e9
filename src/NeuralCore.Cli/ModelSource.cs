using NeuralCore.Audio;
using NeuralCore.IO;
using NeuralCore.Models;
using NeuralCore.Training;

namespace NeuralCore.Cli;

/// <summary>A CP-ResNet built from options or loaded from a checkpoint, and where it came from.</summary>
/// <param name="Model">The network.</param>
/// <param name="Config">Its architecture.</param>
/// <param name="Checkpoint">The file it was loaded from, or null for a freshly initialised one.</param>
/// <param name="Kind">What the checkpoint was: "best checkpoint", "training checkpoint" or "plain state dict".</param>
/// <param name="Metadata">The checkpoint's metadata (empty for a fresh model).</param>
internal sealed record ModelSource(CpResNet Model, CpResNetConfig Config, string? Checkpoint, string Kind, IReadOnlyDictionary<string, string> Metadata)
{
    /// <summary>Metadata key of the augmentation settings an ASC model was trained with (<see cref="AugmentConfig.ToJson"/>).</summary>
    public const string AugmentKey = "augment.config";

    /// <summary>A freshly initialised CP-ResNet with the given widths (default: the seed's small model).</summary>
    public static ModelSource Build(string? channelWidth, ulong seed)
    {
        var config = ParseWidths(channelWidth ?? CommonOptions.DefaultChannelWidth);
        return new ModelSource(new CpResNet(config, new Generator(seed)), config, null, "initialised", new Dictionary<string, string>());
    }

    /// <summary>The mel front end the model was trained with (<c>mel.config</c> in its metadata), or null for an image model or a plain state dict.</summary>
    public MelConfig? Mel
    {
        get
        {
            try
            {
                return MelConfig.FromMetadata(Metadata);
            }
            catch (Exception e) when (e is FormatException or ArgumentException)
            {
                throw new CliException($"{Checkpoint}: its front-end metadata (mel.config) is damaged: {e.Message}");
            }
        }
    }

    /// <summary>The augmentations the model was trained with (<c>augment.config</c>), or null when the metadata holds none.</summary>
    public AugmentConfig? Augment
    {
        get
        {
            if (!Metadata.TryGetValue(AugmentKey, out var json)) return null;
            try
            {
                return AugmentConfig.FromJson(json);
            }
            catch (Exception e) when (e is FormatException or ArgumentException)
            {
                throw new CliException($"{Checkpoint}: its augmentation metadata ({AugmentKey}) is damaged: {e.Message}");
            }
        }
    }

    /// <summary>The dataset the checkpoint's metadata points to: "asc" when it holds a mel front end, "mnist" for other neuralcore checkpoints, null for a plain state dict.</summary>
    public string? Dataset => Metadata.ContainsKey(MelConfig.MetadataPrefix + "config") ? "asc" : CpResNetConfig.HasConfig(Metadata) ? "mnist" : null;

    /// <summary>
    /// Loads <paramref name="path"/>: the architecture comes from <paramref name="channelWidth"/> when given, else from
    /// the file's metadata; a file without either gets a message that says which options to add.
    /// </summary>
    public static ModelSource Load(string path, string? channelWidth)
    {
        if (!File.Exists(path))
            throw new CliException(
                $"Checkpoint not found: {Path.GetFullPath(path)}. Pass an existing .safetensors file, e.g. runs/<experiment>/best.safetensors.");
        var (tensors, metadata) = TensorIO.LoadSafeTensors(path);
        string kind = TrainingCheckpoint.IsTrainingCheckpoint(metadata) ? "training checkpoint"
            : CpResNetConfig.HasConfig(metadata) ? "checkpoint" : "plain state dict";
        CpResNetConfig config;
        if (channelWidth is not null) config = ParseWidths(channelWidth);
        else if (CpResNetConfig.HasConfig(metadata)) config = CpResNetConfig.FromMetadata(metadata);
        else
            throw new CliException(
                $"{path} is a plain state dict: its metadata does not say which architecture it holds. " +
                "Add --model cpresnet --channel-width \"C1 C2 C3\" with the widths it was trained with (\"24 48 72\" for the seed's small model).",
                Program.UsageError);
        try
        {
            return new ModelSource(CpResNet.FromStateDict(tensors, config), config, path, kind, metadata);
        }
        catch (Exception e) when (e is KeyNotFoundException or ArgumentException)
        {
            throw new CliException(
                $"{path} does not fit a CP-ResNet with channel widths {string.Join(" ", config.ChannelWidths)}: {e.Message} " +
                "Check --channel-width (the widths the weights were trained with), or that the file holds CP-ResNet weights.");
        }
    }

    /// <summary>Parses --channel-width, turning a bad value into a usage error.</summary>
    public static CpResNetConfig ParseWidths(string text)
    {
        try
        {
            return CpResNetConfig.FromWidths(text);
        }
        catch (FormatException e)
        {
            throw new CliException($"--channel-width: {e.Message}", Program.UsageError);
        }
    }
}
