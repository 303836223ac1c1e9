using System.Globalization;

namespace NeuralCore.Models;

/// <summary>
/// The architecture of a <see cref="CpResNet"/>: receptive-field parameter rho, channel widths, blocks and groups
/// per stage, input channels, classes and the stem activation. The defaults are the seed's "small" model
/// (rho 4, widths 24/48/72, 2 blocks per stage, 10 classes, Hardswish stem).
/// </summary>
/// <remarks>
/// Equality compares the values of the arrays, so two configs built from the same numbers are equal.
/// <see cref="ToMetadata"/> / <see cref="FromMetadata"/> store the config in a safetensors header under
/// <c>cpresnet.*</c> keys; a pruned checkpoint keeps the config it was built from, and its tensors carry the
/// pruned shapes.
/// </remarks>
public sealed record CpResNetConfig
{
    /// <summary>The metadata key that marks a CP-ResNet checkpoint (value <c>cpresnet</c>).</summary>
    public const string ModelKey = "model";

    private const string Prefix = "cpresnet.";

    /// <summary>Receptive-field parameter rho (the seed uses 4); it sets the kernel sizes of every block (see <see cref="KernelSizes(int, int)"/>).</summary>
    public int Rho { get; init; } = 4;

    /// <summary>Output channels of stage 1, 2 and 3 (C0, C1, C2); the stem has C0 channels.</summary>
    public int[] ChannelWidths { get; init; } = [24, 48, 72];

    /// <summary>Basic blocks per stage (the seed's <c>n_blocks</c>); the kernel schedule defines 1 or 2 per stage.</summary>
    public int[] BlocksPerStage { get; init; } = [2, 2, 2];

    /// <summary>Groups of the two 3x3/1x1 convolutions inside the blocks of each stage (1 = ordinary convolutions).</summary>
    public int[] GroupsPerStage { get; init; } = [1, 1, 1];

    /// <summary>Input channels (1 for MNIST images and mel spectrograms).</summary>
    public int InputChannels { get; init; } = 1;

    /// <summary>Number of classes (the width of the head).</summary>
    public int NumClasses { get; init; } = 10;

    /// <summary>The stem activation: <c>hardswish</c> (the seed) or <c>relu</c>.</summary>
    public string StemActivation { get; init; } = "hardswish";

    /// <summary>Total number of basic blocks (L in the Fixup-style initialisation).</summary>
    public int TotalBlocks => BlocksPerStage.Sum();

    /// <summary>
    /// The seed's <c>--channel_width</c> form: three widths separated by spaces or commas, e.g. <c>"24 48 72"</c>;
    /// the other settings keep their defaults unless <paramref name="template"/> gives them.
    /// </summary>
    /// <exception cref="FormatException">The text is not three positive integers.</exception>
    public static CpResNetConfig FromWidths(string widths, CpResNetConfig? template = null)
    {
        ArgumentNullException.ThrowIfNull(widths);
        var parts = widths.Split([' ', ',', '\t'], StringSplitOptions.RemoveEmptyEntries);
        var values = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out values[i]) || values[i] <= 0)
                throw new FormatException($"Channel widths must be three positive integers like \"24 48 72\"; '{parts[i]}' in \"{widths}\" is not.");
        if (values.Length != 3)
            throw new FormatException($"Channel widths must be three positive integers like \"24 48 72\" (stage 1, 2, 3); \"{widths}\" has {values.Length}.");
        return (template ?? new CpResNetConfig()) with { ChannelWidths = values };
    }

    /// <summary>
    /// The seed's <c>base_channels</c> x <c>channels_multiplier</c> form: widths [b, b*m, b*m*m], then stage 2 and 3
    /// narrowed by <paramref name="cutChannelsS2"/> and <paramref name="cutChannelsS3"/> (32 x 2 gives 32/64/128).
    /// </summary>
    public static CpResNetConfig FromBaseChannels(int baseChannels, int channelsMultiplier = 2, int cutChannelsS2 = 0, int cutChannelsS3 = 0)
    {
        var config = new CpResNetConfig
        {
            ChannelWidths = [baseChannels, baseChannels * channelsMultiplier - cutChannelsS2, baseChannels * channelsMultiplier * channelsMultiplier - cutChannelsS3],
        };
        config.Validate();
        return config;
    }

    /// <summary>
    /// Kernel sizes (k1, k2) of block <paramref name="block"/> (0-based) of stage <paramref name="stage"/> (0-based)
    /// for this config's <see cref="Rho"/>. With e = rho - 4 and [c] = 1 if c else 0: stage 1 k1 = [3, 3-2[-e&gt;2]],
    /// k2 = [1, 3-2[-e&gt;1]]; stage 2 k1 = [3-2[-e&gt;0], 1+2[e&gt;1]], k2 = [1+2[e&gt;0], 1+2[e&gt;2]]; stage 3
    /// k1 = [1+2[e&gt;3], 1+2[e&gt;5]], k2 = [1+2[e&gt;4], 1+2[e&gt;6]]. For rho 4: (3,1), (3,3); (3,1), (1,1); (1,1), (1,1).
    /// </summary>
    public (int K1, int K2) KernelSizes(int stage, int block) => KernelSizes(Rho, stage, block);

    /// <inheritdoc cref="KernelSizes(int, int)" />
    public static (int K1, int K2) KernelSizes(int rho, int stage, int block)
    {
        if (block is < 0 or > 1)
            throw new ArgumentOutOfRangeException(nameof(block), block, "The CP-ResNet kernel schedule defines blocks 0 and 1 of each stage.");
        var e = rho - 4;
        static int B(bool c) => c ? 1 : 0;
        return (stage, block) switch
        {
            (0, 0) => (3, 1),
            (0, 1) => (3 - 2 * B(-e > 2), 3 - 2 * B(-e > 1)),
            (1, 0) => (3 - 2 * B(-e > 0), 1 + 2 * B(e > 0)),
            (1, 1) => (1 + 2 * B(e > 1), 1 + 2 * B(e > 2)),
            (2, 0) => (1 + 2 * B(e > 3), 1 + 2 * B(e > 4)),
            (2, 1) => (1 + 2 * B(e > 5), 1 + 2 * B(e > 6)),
            _ => throw new ArgumentOutOfRangeException(nameof(stage), stage, "CP-ResNet has stages 0, 1 and 2."),
        };
    }

    /// <summary>Checks every setting and names the first bad one.</summary>
    /// <exception cref="ArgumentException">A setting is out of range.</exception>
    public void Validate()
    {
        static void Three(int[] values, string name, int min, int max)
        {
            if (values is null || values.Length != 3)
                throw new ArgumentException($"CpResNetConfig.{name} needs one value per stage (3), got {(values is null ? "null" : values.Length.ToString(CultureInfo.InvariantCulture))}.");
            foreach (var v in values)
                if (v < min || v > max)
                    throw new ArgumentException($"CpResNetConfig.{name} values must lie in [{min}, {max}], got [{string.Join(", ", values)}].");
        }
        Three(ChannelWidths, nameof(ChannelWidths), 1, int.MaxValue);
        Three(BlocksPerStage, nameof(BlocksPerStage), 1, 2);
        Three(GroupsPerStage, nameof(GroupsPerStage), 1, int.MaxValue);
        for (var s = 0; s < 3; s++)
            if (ChannelWidths[s] % GroupsPerStage[s] != 0 || (s > 0 && ChannelWidths[s - 1] % GroupsPerStage[s] != 0))
                throw new ArgumentException($"CpResNetConfig: stage {s + 1} uses {GroupsPerStage[s]} groups, which must divide its input and output widths (widths [{string.Join(", ", ChannelWidths)}]).");
        if (InputChannels <= 0) throw new ArgumentException($"CpResNetConfig.InputChannels must be positive, got {InputChannels}.");
        if (NumClasses <= 0) throw new ArgumentException($"CpResNetConfig.NumClasses must be positive, got {NumClasses}.");
        if (StemActivation is not ("hardswish" or "relu"))
            throw new ArgumentException($"CpResNetConfig.StemActivation must be \"hardswish\" or \"relu\", got \"{StemActivation}\".");
    }

    /// <summary>The config as safetensors metadata: <c>model = cpresnet</c> and one <c>cpresnet.*</c> key per setting.</summary>
    public Dictionary<string, string> ToMetadata() => new()
    {
        [ModelKey] = "cpresnet",
        [Prefix + "rho"] = Rho.ToString(CultureInfo.InvariantCulture),
        [Prefix + "channel_widths"] = Join(ChannelWidths),
        [Prefix + "blocks_per_stage"] = Join(BlocksPerStage),
        [Prefix + "groups_per_stage"] = Join(GroupsPerStage),
        [Prefix + "input_channels"] = InputChannels.ToString(CultureInfo.InvariantCulture),
        [Prefix + "num_classes"] = NumClasses.ToString(CultureInfo.InvariantCulture),
        [Prefix + "stem_activation"] = StemActivation,
    };

    /// <summary>True when <paramref name="metadata"/> holds a CP-ResNet config (written by <see cref="ToMetadata"/>).</summary>
    public static bool HasConfig(IReadOnlyDictionary<string, string> metadata) =>
        metadata.ContainsKey(Prefix + "channel_widths");

    /// <summary>
    /// Reads a config written by <see cref="ToMetadata"/>. <c>cpresnet.channel_widths</c> is required; other keys
    /// default to the seed's values when absent.
    /// </summary>
    /// <exception cref="InvalidDataException">The metadata holds no CP-ResNet config, or a value does not parse.</exception>
    public static CpResNetConfig FromMetadata(IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        if (!HasConfig(metadata))
            throw new InvalidDataException(
                $"The metadata holds no CP-ResNet configuration (no '{Prefix}channel_widths' key; found keys: {(metadata.Count == 0 ? "none" : string.Join(", ", metadata.Keys))}). " +
                "If these are CP-ResNet weights exported from PyTorch, give the architecture yourself: --model cpresnet --channel-width \"C0 C1 C2\".");
        var d = new CpResNetConfig();
        try
        {
            var config = new CpResNetConfig
            {
                Rho = Int(metadata, "rho", d.Rho),
                ChannelWidths = Ints(metadata, "channel_widths", d.ChannelWidths),
                BlocksPerStage = Ints(metadata, "blocks_per_stage", d.BlocksPerStage),
                GroupsPerStage = Ints(metadata, "groups_per_stage", d.GroupsPerStage),
                InputChannels = Int(metadata, "input_channels", d.InputChannels),
                NumClasses = Int(metadata, "num_classes", d.NumClasses),
                StemActivation = metadata.GetValueOrDefault(Prefix + "stem_activation", d.StemActivation),
            };
            config.Validate();
            return config;
        }
        catch (Exception e) when (e is FormatException or ArgumentException)
        {
            throw new InvalidDataException($"The CP-ResNet configuration in the metadata is invalid: {e.Message}", e);
        }
    }

    private static int Int(IReadOnlyDictionary<string, string> m, string key, int fallback) =>
        m.TryGetValue(Prefix + key, out var s) ? ParseInt(s, key) : fallback;

    private static int[] Ints(IReadOnlyDictionary<string, string> m, string key, int[] fallback) =>
        m.TryGetValue(Prefix + key, out var s)
            ? s.Split([' ', ','], StringSplitOptions.RemoveEmptyEntries).Select(p => ParseInt(p, key)).ToArray()
            : fallback;

    private static int ParseInt(string s, string key) =>
        int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v)
            ? v
            : throw new FormatException($"'{Prefix}{key}' = \"{s}\" is not an integer.");

    private static string Join(int[] values) => string.Join(" ", values.Select(v => v.ToString(CultureInfo.InvariantCulture)));

    /// <summary>Value equality, comparing the arrays element by element.</summary>
    public bool Equals(CpResNetConfig? other) =>
        other is not null && Rho == other.Rho && InputChannels == other.InputChannels && NumClasses == other.NumClasses &&
        StemActivation == other.StemActivation && ChannelWidths.SequenceEqual(other.ChannelWidths) &&
        BlocksPerStage.SequenceEqual(other.BlocksPerStage) && GroupsPerStage.SequenceEqual(other.GroupsPerStage);

    /// <summary>A hash over the same values as <see cref="Equals(CpResNetConfig?)"/>.</summary>
    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(Rho); h.Add(InputChannels); h.Add(NumClasses); h.Add(StemActivation);
        foreach (var v in ChannelWidths) h.Add(v);
        foreach (var v in BlocksPerStage) h.Add(v);
        foreach (var v in GroupsPerStage) h.Add(v);
        return h.ToHashCode();
    }

    /// <summary>A short description, e.g. <c>CP-ResNet rho=4 widths=24/48/72 blocks=2/2/2 classes=10</c>.</summary>
    public override string ToString() =>
        $"CP-ResNet rho={Rho} widths={string.Join("/", ChannelWidths)} blocks={string.Join("/", BlocksPerStage)}" +
        (GroupsPerStage.Any(g => g != 1) ? $" groups={string.Join("/", GroupsPerStage)}" : "") +
        $" in={InputChannels} classes={NumClasses} stem={StemActivation}";
}
