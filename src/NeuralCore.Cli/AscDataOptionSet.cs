using System.CommandLine;
using System.Globalization;
using NeuralCore.Data;

namespace NeuralCore.Cli;

/// <summary>The options of the acoustic-scene data (TAU22 reader, validation split, resample cache).</summary>
internal sealed class AscDataOptionSet
{
    public Option<bool> SkipMissing { get; } = new("--skip-missing", "--skip_missing")
    {
        Description = "ASC: leave out clips whose audio file is missing (each one is listed) instead of stopping.",
    };
    public Option<bool> SeedValidation { get; } = new("--seed-validation", "--seed_validation")
    {
        Description = "ASC: validate on evaluate.csv as the seed did. With the official files those are the test clips, so the best epoch is chosen on the test set " +
            "(a warning says so); the default holds whole recording locations of the training fold out instead.",
    };
    public Option<double> ValidationFraction { get; } = new("--validation-fraction", "--validation_fraction")
    {
        Description = "ASC: share of the training fold held out for validation, whole recording locations at a time.",
        DefaultValueFactory = _ => AscSplit.DefaultValidationFraction,
    };
    public Option<string?> CacheDir { get; } = new("--cache-dir", "--cache_dir")
    {
        Description = "ASC: folder of the resampled-waveform cache (default $NEURALCORE_DATA/asc-resampled, else $XDG_CACHE_HOME/neuralcore/asc-resampled, else ~/.cache/neuralcore/asc-resampled).",
        HelpName = "DIR",
    };

    /// <summary>The options for commands that train (all of them).</summary>
    public IEnumerable<Option> ForTraining => [SkipMissing, SeedValidation, ValidationFraction, CacheDir];

    /// <summary>The options for commands that only test.</summary>
    public IEnumerable<Option> ForTesting => [SkipMissing, CacheDir];

    /// <summary>The validation mode and fraction from the command line (a fraction outside (0, 1) is a usage error).</summary>
    public (AscValidation Mode, double Fraction) ReadValidation(ParseResult parse)
    {
        double fraction = parse.GetValue(ValidationFraction);
        if (!(fraction > 0 && fraction < 1))
            throw new CliException(string.Create(CultureInfo.InvariantCulture, $"--validation-fraction must lie strictly between 0 and 1; found {fraction}."), Program.UsageError);
        bool seed = parse.GetValue(SeedValidation);
        if (seed && parse.GetResult(ValidationFraction) is { Implicit: false })
            throw new CliException("--seed-validation validates on evaluate.csv, so --validation-fraction has no meaning with it; drop one of them.", Program.UsageError);
        return (seed ? AscValidation.SeedCompatible : AscValidation.LocationDisjoint, fraction);
    }
}
