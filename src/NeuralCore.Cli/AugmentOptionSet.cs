using System.CommandLine;
using NeuralCore.Audio;

namespace NeuralCore.Cli;

/// <summary>The training-time augmentations of <c>train --dataset asc</c>, each switched off by 0; the defaults are the seed's.</summary>
internal sealed class AugmentOptionSet
{
    private static readonly AugmentConfig Defaults = new();

    public Option<double> MixStyleP { get; } = new("--mixstyle-p", "--mixstyle_p")
    {
        Description = "Probability that a batch gets Freq-MixStyle (0: off).", DefaultValueFactory = _ => Defaults.MixStyleP,
    };
    public Option<double> MixStyleAlpha { get; } = new("--mixstyle-alpha", "--mixstyle_alpha")
    {
        Description = "Beta(alpha, alpha) of Freq-MixStyle's mixing weight.", DefaultValueFactory = _ => Defaults.MixStyleAlpha,
    };
    public Option<double> MixupAlpha { get; } = new("--mixup-alpha", "--mixup_alpha")
    {
        Description = "Mixup with the mixed loss: Beta(alpha, alpha), lambda = max(l, 1 - l) per clip (0: off, the seed's setting).",
        DefaultValueFactory = _ => Defaults.MixupAlpha,
    };
    public Option<int> FreqMask { get; } = new("--freq-mask", "--freqm")
    {
        Description = "Maximum width in mel bins of a frequency mask per clip (0: off).", DefaultValueFactory = _ => Defaults.FreqMaskWidth,
    };
    public Option<int> TimeMask { get; } = new("--time-mask", "--timem")
    {
        Description = "Maximum width in frames of a time mask per clip (0: off).", DefaultValueFactory = _ => Defaults.TimeMaskWidth,
    };
    public Option<int> FMinJitter { get; } = new("--fmin-jitter", "--fmin_aug_range")
    {
        Description = "fmin + U{0 .. N-1} Hz per batch (1 or 0: off).", DefaultValueFactory = _ => Defaults.FMinJitter,
    };
    public Option<int> FMaxJitter { get; } = new("--fmax-jitter", "--fmax_aug_range")
    {
        Description = "fmax + N/2 - U{0 .. N-1} Hz per batch (1 or 0: off).", DefaultValueFactory = _ => Defaults.FMaxJitter,
    };
    public Option<int> Roll { get; } = new("--roll")
    {
        Description = "Circular waveform shift by U{-N .. N} samples per clip (0: off).", HelpName = "N", DefaultValueFactory = _ => Defaults.RollMaxShift,
    };
    public Option<bool> NoAugment { get; } = new("--no-augment")
    {
        Description = "Switch every augmentation off (the options above must then be left at their defaults).",
    };

    public IEnumerable<Option> All => [MixStyleP, MixStyleAlpha, MixupAlpha, FreqMask, TimeMask, FMinJitter, FMaxJitter, Roll, NoAugment];

    /// <summary>The augmentations from the command line, validated (a bad value is a usage error).</summary>
    public AugmentConfig Read(ParseResult parse)
    {
        if (parse.GetValue(NoAugment))
        {
            var explicitOptions = All.Where(o => o != NoAugment && parse.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToList();
            if (explicitOptions.Count > 0)
                throw new CliException($"--no-augment switches every augmentation off; drop {string.Join(", ", explicitOptions)} or drop --no-augment.", Program.UsageError);
            return AugmentConfig.None;
        }
        var augment = new AugmentConfig
        {
            MixStyleP = parse.GetValue(MixStyleP),
            MixStyleAlpha = parse.GetValue(MixStyleAlpha),
            MixupAlpha = parse.GetValue(MixupAlpha),
            FreqMaskWidth = parse.GetValue(FreqMask),
            TimeMaskWidth = parse.GetValue(TimeMask),
            FMinJitter = parse.GetValue(FMinJitter),
            FMaxJitter = parse.GetValue(FMaxJitter),
            RollMaxShift = parse.GetValue(Roll),
        };
        try
        {
            augment.Validate();
        }
        catch (ArgumentException e)
        {
            string option = e.ParamName switch
            {
                nameof(AugmentConfig.MixStyleP) => "--mixstyle-p",
                nameof(AugmentConfig.MixStyleAlpha) => "--mixstyle-alpha",
                nameof(AugmentConfig.MixupAlpha) => "--mixup-alpha",
                nameof(AugmentConfig.FreqMaskWidth) => "--freq-mask",
                nameof(AugmentConfig.TimeMaskWidth) => "--time-mask",
                nameof(AugmentConfig.FMinJitter) => "--fmin-jitter",
                nameof(AugmentConfig.FMaxJitter) => "--fmax-jitter",
                _ => "--roll",
            };
            throw new CliException($"{option}: {e.Message.Split(Environment.NewLine)[0].Split(" (Parameter")[0]}", Program.UsageError);
        }
        return augment;
    }
}
