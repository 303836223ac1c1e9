using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace NeuralCore.Audio;

/// <summary>
/// The parameters of the log-mel front end (<see cref="MelSpectrogram"/>). The defaults are the seed's
/// <c>AugmentMelSTFT</c>: 32 kHz, pre-emphasis 0.97, n_fft 1024, symmetric Hann window of 800 zero-padded to
/// 1024, hop 320, centred frames with reflect padding, 128 Kaldi mel bins from 0 to 15,500 Hz, log(x + 1e-5),
/// then (x + 4.5) / 5; one second gives 128 x 100.
/// </summary>
/// <remarks>
/// Stored with a model (<see cref="ToJson"/> / <see cref="ToMetadata"/>) so prediction uses the front end the model
/// was trained with. CPJKU's later setting is <c>new MelConfig { NFft = 4096, WinLength = 3072, HopLength = 500, NMels = 256 }</c>.
/// </remarks>
public sealed record MelConfig
{
    /// <summary>Metadata key prefix used by <see cref="ToMetadata"/>.</summary>
    public const string MetadataPrefix = "mel.";

    /// <summary>Sample rate the front end expects (the data is resampled to it first).</summary>
    public int SampleRate { get; init; } = 32000;

    /// <summary>FFT size; a power of two. Gives NFft / 2 + 1 frequency bins.</summary>
    public int NFft { get; init; } = 1024;

    /// <summary>Window length; the window is zero-padded, centred, to <see cref="NFft"/>.</summary>
    public int WinLength { get; init; } = 800;

    /// <summary>Hop between frames in samples.</summary>
    public int HopLength { get; init; } = 320;

    /// <summary>Number of mel bins (at least 4, as Kaldi requires).</summary>
    public int NMels { get; init; } = 128;

    /// <summary>Lowest mel edge in Hz.</summary>
    public double FMin { get; init; }

    /// <summary>Highest mel edge in Hz; the seed uses sr / 2 - fmax_aug_range / 2 = 15,500.</summary>
    public double FMax { get; init; } = 15500;

    /// <summary>Pre-emphasis coefficient a of y[n] = x[n + 1] - a x[n] (0 keeps the samples, one shorter all the same).</summary>
    public double PreEmphasis { get; init; } = 0.97;

    /// <summary>Whether frames are centred (the signal padded by NFft / 2 on both sides by reflection).</summary>
    public bool Center { get; init; } = true;

    /// <summary>Whether the Hann window is periodic (torch's default) rather than symmetric (the seed's choice).</summary>
    public bool PeriodicWindow { get; init; }

    /// <summary>Added before the logarithm: log(mel + LogOffset).</summary>
    public double LogOffset { get; init; } = 1e-5;

    /// <summary>The "fast normalization" shift: (log mel + NormShift) / NormScale.</summary>
    public double NormShift { get; init; } = 4.5;

    /// <summary>The "fast normalization" divisor: (log mel + NormShift) / NormScale.</summary>
    public double NormScale { get; init; } = 5;

    /// <summary>CPJKU's 2023/2024 front end: n_fft 4096, window 3072, hop 500, 256 mels.</summary>
    public static MelConfig Cpjku2024 { get; } = new() { NFft = 4096, WinLength = 3072, HopLength = 500, NMels = 256 };

    /// <summary>Frames produced for <paramref name="samples"/> input samples (before pre-emphasis).</summary>
    public int FrameCount(int samples)
    {
        int n = samples - 1;
        return Center ? 1 + n / HopLength : n < NFft ? 0 : 1 + (n - NFft) / HopLength;
    }

    /// <summary>Checks every value and throws naming the first bad one and what it must be.</summary>
    public void Validate()
    {
        static void Fail(string name, object value, string rule) =>
            throw new ArgumentOutOfRangeException(name, value, $"Mel front end: {name} = {value} is invalid; {rule}.");
        if (SampleRate <= 0) Fail(nameof(SampleRate), SampleRate, "it must be positive");
        if (NFft < 2 || (NFft & (NFft - 1)) != 0) Fail(nameof(NFft), NFft, "it must be a power of two of at least 2, e.g. 1024");
        if (WinLength < 1 || WinLength > NFft) Fail(nameof(WinLength), WinLength, $"it must lie in [1, NFft = {NFft}]");
        if (HopLength < 1) Fail(nameof(HopLength), HopLength, "it must be positive");
        if (NMels < 4) Fail(nameof(NMels), NMels, "Kaldi mel banks need at least 4 bins");
        double nyquist = SampleRate / 2.0;
        if (!(FMin >= 0 && FMin < nyquist)) Fail(nameof(FMin), FMin, $"it must lie in [0, Nyquist = {nyquist})");
        if (!(FMax > FMin && FMax <= nyquist)) Fail(nameof(FMax), FMax, $"it must lie in (FMin = {FMin}, Nyquist = {nyquist}]");
        if (!double.IsFinite(PreEmphasis)) Fail(nameof(PreEmphasis), PreEmphasis, "it must be finite");
        if (!(LogOffset > 0)) Fail(nameof(LogOffset), LogOffset, "it must be positive");
        if (!double.IsFinite(NormShift)) Fail(nameof(NormShift), NormShift, "it must be finite");
        if (!(NormScale != 0 && double.IsFinite(NormScale))) Fail(nameof(NormScale), NormScale, "it must be finite and non-zero");
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = false,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.Strict,
    };

    /// <summary>The config as compact JSON with snake_case keys (e.g. <c>{"sample_rate":32000,"n_fft":1024,...}</c>).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Parses <see cref="ToJson"/> output; missing keys keep their defaults. The result is validated.</summary>
    public static MelConfig FromJson(string json)
    {
        MelConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<MelConfig>(json, JsonOptions);
        }
        catch (JsonException e)
        {
            throw new FormatException($"The mel front-end configuration is not valid JSON: {e.Message}", e);
        }
        if (config is null)
            throw new FormatException("The mel front-end configuration is JSON null; expected an object such as {\"n_fft\":1024}.");
        config.Validate();
        return config;
    }

    /// <summary>
    /// The config as string metadata (e.g. for a safetensors header): one entry <c>mel.config</c> holding
    /// <see cref="ToJson"/>.
    /// </summary>
    public Dictionary<string, string> ToMetadata() => new() { [MetadataPrefix + "config"] = ToJson() };

    /// <summary>Reads a config written by <see cref="ToMetadata"/>, or null when the metadata holds none.</summary>
    public static MelConfig? FromMetadata(IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        return metadata.TryGetValue(MetadataPrefix + "config", out var json) ? FromJson(json) : null;
    }

    /// <summary>A one-line summary, e.g. "32000 Hz, n_fft 1024, win 800, hop 320, 128 mels 0-15500 Hz".</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{SampleRate} Hz, n_fft {NFft}, win {WinLength}, hop {HopLength}, {NMels} mels {FMin:0.##}-{FMax:0.##} Hz, pre-emphasis {PreEmphasis:0.###}");
}
