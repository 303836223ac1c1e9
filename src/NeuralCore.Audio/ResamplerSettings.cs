using System.Globalization;

namespace NeuralCore.Audio;

/// <summary>
/// The design of the <see cref="Resampler"/>'s Kaiser-windowed sinc low-pass filter.
/// </summary>
/// <remarks>
/// The ideal low-pass has its cutoff at <see cref="Rolloff"/> x the lower of the two Nyquist frequencies; the sinc
/// is truncated to <see cref="ZeroCrossings"/> zero crossings on each side and tapered by a Kaiser window of shape
/// <see cref="KaiserBeta"/>. The defaults (<see cref="Default"/>: 0.95, 72, 11.2) give a passband flat to within
/// 0.0002 dB up to 0.9 x Nyquist and at least 100 dB of attenuation from Nyquist up (measured in the tests and listed
/// in docs/asc.md), comparable to soxr's "HQ" and resampy's "kaiser_best" settings that librosa uses.
/// </remarks>
/// <param name="Rolloff">The filter cutoff as a fraction of the lower Nyquist frequency, in (0, 1].</param>
/// <param name="ZeroCrossings">Sinc zero crossings kept on each side of the centre; more gives a sharper transition.</param>
/// <param name="KaiserBeta">Kaiser window shape: higher gives more stopband attenuation and a wider transition.</param>
public sealed record ResamplerSettings(double Rolloff = 0.95, int ZeroCrossings = 72, double KaiserBeta = 11.2)
{
    /// <summary>The default high-quality design.</summary>
    public static ResamplerSettings Default { get; } = new();

    /// <summary>Checks the values and throws with the name of the bad one.</summary>
    public void Validate()
    {
        if (!(Rolloff > 0 && Rolloff <= 1))
            throw new ArgumentOutOfRangeException(nameof(Rolloff), Rolloff, "The resampler rolloff must lie in (0, 1] (a fraction of the lower Nyquist frequency).");
        if (ZeroCrossings < 1)
            throw new ArgumentOutOfRangeException(nameof(ZeroCrossings), ZeroCrossings, "The resampler needs at least 1 zero crossing per side.");
        if (!(KaiserBeta >= 0) || double.IsInfinity(KaiserBeta))
            throw new ArgumentOutOfRangeException(nameof(KaiserBeta), KaiserBeta, "The Kaiser beta must be a finite number >= 0.");
    }

    /// <summary>A stable text form of the settings, used in cache keys (e.g. "sinc-kaiser rolloff=0.95 zc=72 beta=11.2").</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture, $"sinc-kaiser rolloff={Rolloff:R} zc={ZeroCrossings} beta={KaiserBeta:R}");
}
