using System.Numerics;

namespace NeuralCore.Audio;

/// <summary>
/// Band-limited sample-rate conversion by a polyphase Kaiser-windowed sinc filter (the method of soxr, resampy and
/// librosa's high-quality modes), for any pair of integer rates.
/// </summary>
/// <remarks>
/// <para>
/// Output sample n sits at input time t = n * inRate / outRate; its value is <c>sum_k x[k] h(t - k)</c> with
/// <c>h(u) = 2 fc sinc(2 fc u) w(u)</c>, fc the cutoff in cycles per input sample and w the Kaiser window over
/// <see cref="ResamplerSettings.ZeroCrossings"/> zero crossings. Samples outside the signal count as zero (as in
/// soxr and librosa), and the output has <c>ceil(n * outRate / inRate)</c> samples (32,000 for 1 s at 44.1 kHz).
/// </para>
/// <para>
/// With L / M the reduced ratio outRate / inRate, output times fall on L distinct fractional phases. Up to 4,096
/// phases the filter of each phase is tabulated exactly; beyond that (unusual rate pairs) 4,096 phases are
/// tabulated and neighbouring phases are interpolated linearly (relative kernel error below 1e-6).
/// </para>
/// <para>An instance holds only its read-only filter tables and may be shared between threads.</para>
/// </remarks>
public sealed class Resampler
{
    private const int MaxExactPhases = 4096;

    private readonly long _up;       // L
    private readonly long _down;     // M
    private readonly int _phases;    // table rows (L when exact)
    private readonly bool _exact;
    private readonly int _taps;      // 2 K taps per phase
    private readonly int _half;      // K: taps left of the output time, including the sample at floor(t)
    private readonly float[] _table; // (_phases + 1) x _taps

    /// <summary>Designs the filter converting <paramref name="inputRate"/> to <paramref name="outputRate"/>.</summary>
    public Resampler(int inputRate, int outputRate, ResamplerSettings? settings = null)
    {
        if (inputRate <= 0)
            throw new ArgumentOutOfRangeException(nameof(inputRate), inputRate, "The input sample rate must be positive.");
        if (outputRate <= 0)
            throw new ArgumentOutOfRangeException(nameof(outputRate), outputRate, "The output sample rate must be positive.");
        Settings = settings ?? ResamplerSettings.Default;
        Settings.Validate();
        InputRate = inputRate;
        OutputRate = outputRate;
        long g = (long)BigInteger.GreatestCommonDivisor(inputRate, outputRate);
        _up = outputRate / g;
        _down = inputRate / g;
        _exact = _up <= MaxExactPhases;
        _phases = _exact ? (int)_up : MaxExactPhases;

        // Cutoff in cycles per input sample, and the window half-width in input samples.
        double ratio = (double)outputRate / inputRate;
        Cutoff = 0.5 * Settings.Rolloff * Math.Min(1.0, ratio);
        double halfWidth = Settings.ZeroCrossings / (2 * Cutoff);
        _half = (int)Math.Ceiling(halfWidth);
        _taps = 2 * _half;
        _table = new float[(_phases + 1) * _taps];
        double i0Beta = BesselI0(Settings.KaiserBeta);
        for (int p = 0; p <= _phases; p++)
        {
            double frac = (double)p / _phases;
            // Tap j multiplies x[floor(t) + j - K + 1], at distance u = frac - (j - K + 1) from the output time.
            for (int j = 0; j < _taps; j++)
            {
                double u = frac - (j - _half + 1);
                _table[p * _taps + j] = (float)Kernel(u, Cutoff, halfWidth, Settings.KaiserBeta, i0Beta);
            }
        }
    }

    /// <summary>The input sample rate.</summary>
    public int InputRate { get; }

    /// <summary>The output sample rate.</summary>
    public int OutputRate { get; }

    /// <summary>The filter design.</summary>
    public ResamplerSettings Settings { get; }

    /// <summary>The low-pass cutoff in cycles per input sample (Rolloff x half the lower rate, over the input rate).</summary>
    public double Cutoff { get; }

    /// <summary>The number of output samples for <paramref name="inputLength"/> input samples: ceil(n * outRate / inRate).</summary>
    public int OutputLength(int inputLength) => (int)((inputLength * _up + _down - 1) / _down);

    /// <summary>Resamples <paramref name="input"/> from <paramref name="inputRate"/> to <paramref name="outputRate"/> (a copy when equal).</summary>
    public static float[] Resample(ReadOnlySpan<float> input, int inputRate, int outputRate, ResamplerSettings? settings = null)
    {
        if (inputRate == outputRate)
            return input.ToArray();
        return new Resampler(inputRate, outputRate, settings).Process(input);
    }

    /// <summary>Resamples a whole signal (zeros assumed before and after it).</summary>
    public float[] Process(ReadOnlySpan<float> input)
    {
        int outLength = OutputLength(input.Length);
        var output = new float[outLength];
        // Zero padding on both sides turns every output into one contiguous dot product.
        var padded = new float[input.Length + 2 * _taps];
        input.CopyTo(padded.AsSpan(_taps));
        int width = Vector<float>.Count;
        for (int n = 0; n < outLength; n++)
        {
            long numerator = n * _down;
            long whole = numerator / _up;
            long rest = numerator % _up;
            int start = (int)(whole - _half + 1 + _taps);
            ReadOnlySpan<float> x = padded.AsSpan(start, _taps);
            if (_exact)
            {
                output[n] = Dot(x, _table.AsSpan((int)rest * _taps, _taps), width);
            }
            else
            {
                double position = (double)rest / _up * _phases;
                int p = (int)position;
                float w = (float)(position - p);
                float a = Dot(x, _table.AsSpan(p * _taps, _taps), width);
                float b = Dot(x, _table.AsSpan((p + 1) * _taps, _taps), width);
                output[n] = a + w * (b - a);
            }
        }
        return output;
    }

    private static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> h, int width)
    {
        var acc = Vector<float>.Zero;
        int i = 0;
        for (; i <= x.Length - width; i += width)
            acc += new Vector<float>(x[i..]) * new Vector<float>(h[i..]);
        float sum = Vector.Sum(acc);
        for (; i < x.Length; i++)
            sum += x[i] * h[i];
        return sum;
    }

    /// <summary>The continuous filter kernel h(u) for cutoff <paramref name="cutoff"/> (cycles per sample).</summary>
    internal static double Kernel(double u, double cutoff, double halfWidth, double beta, double i0Beta)
    {
        if (Math.Abs(u) >= halfWidth)
            return 0;
        double x = 2 * cutoff * u;
        double sinc = x == 0 ? 1 : Math.Sin(Math.PI * x) / (Math.PI * x);
        double r = u / halfWidth;
        double window = BesselI0(beta * Math.Sqrt(1 - r * r)) / i0Beta;
        return 2 * cutoff * sinc * window;
    }

    /// <summary>The modified Bessel function of the first kind, order 0 (power series; converges for all real x).</summary>
    internal static double BesselI0(double x)
    {
        double sum = 1, term = 1, q = x * x / 4;
        for (int k = 1; k < 500; k++)
        {
            term *= q / ((double)k * k);
            sum += term;
            if (term < sum * 1e-17)
                break;
        }
        return sum;
    }
}
