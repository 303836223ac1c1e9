namespace NeuralCore.Audio.Tests;

/// <summary>Measures the resampler's quality on sines whose exact band-limited resampled form is known.</summary>
public class ResamplerTests
{
    private static float[] Sine(double freq, int rate, int length, double amplitude = 0.5, double phase = 0.3)
    {
        var x = new float[length];
        for (int n = 0; n < length; n++)
            x[n] = (float)(amplitude * Math.Sin(2 * Math.PI * freq * n / rate + phase));
        return x;
    }

    // Least-squares amplitude of a sine of known frequency over the interior of y (edges excluded).
    private static double Amplitude(float[] y, double freq, int rate, int margin)
    {
        double ss = 0, sc = 0, cc = 0, ys = 0, yc = 0;
        for (int n = margin; n < y.Length - margin; n++)
        {
            double s = Math.Sin(2 * Math.PI * freq * n / rate), c = Math.Cos(2 * Math.PI * freq * n / rate);
            ss += s * s; sc += s * c; cc += c * c; ys += y[n] * s; yc += y[n] * c;
        }
        double det = ss * cc - sc * sc;
        double a = (ys * cc - yc * sc) / det, b = (yc * ss - ys * sc) / det;
        return Math.Sqrt(a * a + b * b);
    }

    private static double Rms(float[] y, int margin)
    {
        double sum = 0;
        for (int n = margin; n < y.Length - margin; n++)
            sum += (double)y[n] * y[n];
        return Math.Sqrt(sum / (y.Length - 2 * margin));
    }

    [Theory]
    [InlineData(44100, 32000, 32000)]
    [InlineData(48000, 32000, 32000)]
    [InlineData(16000, 32000, 32000)]
    [InlineData(44100, 32000, 31999)]
    public void OutputLengthIsCeilOfTheRatio(int from, int to, int expectedFor1s)
    {
        int inLength = to == expectedFor1s ? from : (int)Math.Floor((double)expectedFor1s * from / to);
        var r = new Resampler(from, to);
        Assert.Equal(expectedFor1s, r.OutputLength(inLength));
        Assert.Equal(expectedFor1s, r.Process(new float[inLength]).Length);
    }

    [Theory]
    [InlineData(44100, 32000)]
    [InlineData(48000, 32000)]
    [InlineData(22050, 32000)]
    [InlineData(44101, 32000)] // 32,000 phases: the interpolated-table path
    public void PassbandIsFlatToWithinAHundredthOfADecibelUpTo90PercentOfNyquist(int from, int to)
    {
        var r = new Resampler(from, to);
        double nyquist = Math.Min(from, to) / 2.0;
        double worst = 0;
        foreach (double fraction in new[] { 0.001, 0.05, 0.2, 0.45, 0.7, 0.85, 0.9 })
        {
            double f = fraction * nyquist;
            var y = r.Process(Sine(f, from, from / 4));
            double gainDb = 20 * Math.Log10(Amplitude(y, f, to, 400) / 0.5);
            worst = Math.Max(worst, Math.Abs(gainDb));
        }
        Assert.True(worst < 0.01, $"passband deviation {worst:E2} dB");
    }

    [Theory]
    [InlineData(44100, 32000)]
    [InlineData(48000, 32000)]
    [InlineData(44101, 32000)]
    public void StopbandAttenuatesAliasesByAtLeast100Decibels(int from, int to)
    {
        var r = new Resampler(from, to);
        double nyquist = to / 2.0;
        double worstDb = double.MaxValue;
        // Everything from the output Nyquist up to the input Nyquist would fold back into the output band.
        foreach (double f in new[] { nyquist * 1.0005, nyquist * 1.02, nyquist * 1.1, nyquist * 1.25, from / 2.0 * 0.99 })
        {
            var y = r.Process(Sine(f, from, from / 4));
            double attenuation = -20 * Math.Log10(Rms(y, 400) / (0.5 / Math.Sqrt(2)));
            worstDb = Math.Min(worstDb, attenuation);
        }
        Assert.True(worstDb > 100, $"worst stopband attenuation {worstDb:F1} dB");
    }

    [Theory]
    [InlineData(44100, 32000, 1000.0)]
    [InlineData(44100, 32000, 12345.6)]
    [InlineData(16000, 32000, 3000.0)]
    public void ResampledSineMatchesTheExactBandLimitedReference(int from, int to, double freq)
    {
        int length = from / 2;
        var y = Resampler.Resample(Sine(freq, from, length), from, to);
        var reference = Sine(freq, to, y.Length);
        double maxError = 0;
        for (int n = 400; n < y.Length - 400; n++)
            maxError = Math.Max(maxError, Math.Abs(y[n] - reference[n]));
        // 0.5 amplitude: an error of 5e-6 is -100 dB relative to full scale.
        Assert.True(maxError < 5e-6, $"max error {maxError:E2}");
    }

    [Fact]
    public void EqualRatesCopyTheSignal()
    {
        var x = Sine(440, 32000, 1000);
        Assert.Equal(x, Resampler.Resample(x, 32000, 32000));
    }

    [Fact]
    public void BadSettingsAreRejectedByName()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new Resampler(44100, 32000, new ResamplerSettings(Rolloff: 1.5)));
        Assert.Contains("rolloff", e.Message);
    }

    [Fact]
    public void SettingsDescribeThemselvesStably()
    {
        Assert.Equal("sinc-kaiser rolloff=0.95 zc=72 beta=11.2", ResamplerSettings.Default.Describe());
    }
}
