using System.Text.Json;
using System.Text.Json.Serialization;

namespace NeuralCore.Audio;

/// <summary>
/// Training-time augmentations of the ASC front end (<see cref="MelFrontEnd"/>), each switched off by its zero
/// value. The defaults are the seed's (<c>ex_dcase.py</c>): fmax jitter 1,000 Hz, Freq-MixStyle p 0.3 / alpha 0.3,
/// everything else off.
/// </summary>
public sealed record AugmentConfig
{
    /// <summary>
    /// fmin jitter range in Hz: each training batch uses fmin + U{0 .. FMinJitter - 1} (the seed's
    /// <c>fmin_aug_range</c>; 1 or less: no jitter).
    /// </summary>
    public int FMinJitter { get; init; } = 1;

    /// <summary>
    /// fmax jitter range in Hz: each training batch uses fmax + FMaxJitter / 2 - U{0 .. FMaxJitter - 1} (the seed's
    /// <c>fmax_aug_range</c>, 1,000: fmax in (15,000, 16,000]; 1 or less: no jitter). Capped at Nyquist.
    /// </summary>
    public int FMaxJitter { get; init; } = 1000;

    /// <summary>Maximum width in mel bins of the frequency mask (torchaudio's FrequencyMasking <c>freq_mask_param</c>); 0 = off.</summary>
    public int FreqMaskWidth { get; init; }

    /// <summary>Maximum width in frames of the time mask (torchaudio's TimeMasking <c>time_mask_param</c>); 0 = off.</summary>
    public int TimeMaskWidth { get; init; }

    /// <summary>Probability that a batch gets Freq-MixStyle; 0 = off.</summary>
    public double MixStyleP { get; init; } = 0.3;

    /// <summary>Beta(alpha, alpha) parameter of the Freq-MixStyle mixing weight.</summary>
    public double MixStyleAlpha { get; init; } = 0.3;

    /// <summary>Maximum circular shift of the waveform in samples, drawn uniformly from [-RollMaxShift, RollMaxShift] per clip; 0 = off.</summary>
    public int RollMaxShift { get; init; }

    /// <summary>
    /// Beta(alpha, alpha) parameter of mixup; 0 = off. Mixup changes the loss, so the trainer applies it
    /// (<see cref="Mixup.Apply"/> and <see cref="MixupBatch.Loss"/>), not the front end.
    /// </summary>
    public double MixupAlpha { get; init; }

    /// <summary>No augmentation at all.</summary>
    public static AugmentConfig None { get; } = new() { FMinJitter = 0, FMaxJitter = 0, MixStyleP = 0 };

    /// <summary>Checks every value and throws naming the first bad one.</summary>
    public void Validate()
    {
        static void Fail(string name, object value, string rule) =>
            throw new ArgumentOutOfRangeException(name, value, $"Augmentation: {name} = {value} is invalid; {rule}.");
        if (FMinJitter < 0) Fail(nameof(FMinJitter), FMinJitter, "it must be 0 or more");
        if (FMaxJitter < 0) Fail(nameof(FMaxJitter), FMaxJitter, "it must be 0 or more");
        if (FreqMaskWidth < 0) Fail(nameof(FreqMaskWidth), FreqMaskWidth, "it must be 0 or more");
        if (TimeMaskWidth < 0) Fail(nameof(TimeMaskWidth), TimeMaskWidth, "it must be 0 or more");
        if (!(MixStyleP >= 0 && MixStyleP <= 1)) Fail(nameof(MixStyleP), MixStyleP, "it must lie in [0, 1]");
        if (MixStyleP > 0 && !(MixStyleAlpha > 0)) Fail(nameof(MixStyleAlpha), MixStyleAlpha, "it must be positive when MixStyleP > 0");
        if (RollMaxShift < 0) Fail(nameof(RollMaxShift), RollMaxShift, "it must be 0 or more");
        if (!(MixupAlpha >= 0)) Fail(nameof(MixupAlpha), MixupAlpha, "it must be 0 (off) or positive");
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, NumberHandling = JsonNumberHandling.Strict };

    /// <summary>The config as compact snake_case JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Parses <see cref="ToJson"/> output (missing keys keep their defaults) and validates it.</summary>
    public static AugmentConfig FromJson(string json)
    {
        AugmentConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<AugmentConfig>(json, JsonOptions);
        }
        catch (JsonException e)
        {
            throw new FormatException($"The augmentation configuration is not valid JSON: {e.Message}", e);
        }
        if (config is null)
            throw new FormatException("The augmentation configuration is JSON null; expected an object such as {\"mix_style_p\":0.3}.");
        config.Validate();
        return config;
    }
}
