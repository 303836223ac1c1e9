using System.CommandLine;
using NeuralCore.Audio;

namespace NeuralCore.Cli;

/// <summary>The log-mel front-end options (the seed's <c>AugmentMelSTFT</c> defaults), shared by <c>mel</c> and <c>train --dataset asc</c>.</summary>
internal sealed class MelOptionSet
{
    private static readonly MelConfig Defaults = new();

    /// <summary>Creates the options; <paramref name="configAliases"/> name the option that takes a whole configuration as JSON.</summary>
    public MelOptionSet(params string[] configAliases)
    {
        Config = new Option<string?>(configAliases[0], configAliases[1..])
        {
            Description = "The whole front-end configuration as JSON, as checkpoints store it (e.g. {\"n_fft\":4096,\"win_length\":3072,\"hop_length\":500,\"n_mels\":256}); " +
                "missing keys keep their defaults, and the other front-end options must not be given with it.",
            HelpName = "JSON",
        };
    }

    public Option<int> SampleRate { get; } = new("--sample-rate", "--sample_rate", "--sr") { Description = "Rate the audio is resampled to first (Hz).", DefaultValueFactory = _ => Defaults.SampleRate };
    public Option<int> NFft { get; } = new("--n-fft", "--n_fft") { Description = "FFT size (a power of two).", DefaultValueFactory = _ => Defaults.NFft };
    public Option<int> WinLength { get; } = new("--win-length", "--window_size") { Description = "Hann window length, zero-padded to --n-fft.", DefaultValueFactory = _ => Defaults.WinLength };
    public Option<int> HopLength { get; } = new("--hop-length", "--hop_size") { Description = "Hop between frames in samples.", DefaultValueFactory = _ => Defaults.HopLength };
    public Option<int> NMels { get; } = new("--n-mels", "--n_mels") { Description = "Number of Kaldi mel bins.", DefaultValueFactory = _ => Defaults.NMels };
    public Option<double> FMin { get; } = new("--fmin") { Description = "Lowest mel edge in Hz.", DefaultValueFactory = _ => Defaults.FMin };
    public Option<double> FMax { get; } = new("--fmax") { Description = "Highest mel edge in Hz (the seed's sr / 2 - fmax jitter / 2).", DefaultValueFactory = _ => Defaults.FMax };
    public Option<string?> Config { get; }

    public IEnumerable<Option> All => [SampleRate, NFft, WinLength, HopLength, NMels, FMin, FMax, Config];

    /// <summary>The front end from the command line, validated (a bad value is a usage error).</summary>
    public MelConfig Read(ParseResult parse)
    {
        string? json = parse.GetValue(Config);
        try
        {
            if (json is not null)
            {
                var explicitOptions = new Option[] { SampleRate, NFft, WinLength, HopLength, NMels, FMin, FMax }
                    .Where(o => parse.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToList();
                if (explicitOptions.Count > 0)
                    throw new CliException($"{Config.Name} replaces the other front-end options; drop {string.Join(", ", explicitOptions)} or put the values into the JSON.", Program.UsageError);
                return MelConfig.FromJson(json);
            }
            var mel = new MelConfig
            {
                SampleRate = parse.GetValue(SampleRate),
                NFft = parse.GetValue(NFft),
                WinLength = parse.GetValue(WinLength),
                HopLength = parse.GetValue(HopLength),
                NMels = parse.GetValue(NMels),
                FMin = parse.GetValue(FMin),
                FMax = parse.GetValue(FMax),
            };
            mel.Validate();
            return mel;
        }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            throw new CliException(e.Message.Split(" (Parameter")[0].Split(Environment.NewLine)[0], Program.UsageError);
        }
    }
}
