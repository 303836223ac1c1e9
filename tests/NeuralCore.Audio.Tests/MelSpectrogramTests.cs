namespace NeuralCore.Audio.Tests;

/// <summary>
/// The front end against a direct computation of every stage in double precision: pre-emphasis as a loop, reflect
/// padding by index arithmetic, the window written out, a plain O(N^2) DFT, the Kaldi mel formula written out.
/// </summary>
public class MelSpectrogramTests
{
    private static float[] TestSignal(int length, ulong seed)
    {
        var g = new Generator(seed);
        var x = new float[length];
        for (int n = 0; n < length; n++)
            x[n] = (float)(0.3 * Math.Sin(2 * Math.PI * 440 * n / 32000.0) + 0.1 * Math.Sin(2 * Math.PI * 5123 * n / 32000.0) + 0.05 * g.NextNormal());
        return x;
    }

    // Kaldi's get_mel_banks written out from its definition, padded with a zero Nyquist column: [nMels, nFft/2 + 1].
    private static double[,] KaldiBank(int nMels, int nFft, int sr, double fMin, double fMax)
    {
        static double Mel(double f) => 1127.0 * Math.Log(1.0 + f / 700.0);
        var bank = new double[nMels, nFft / 2 + 1];
        double lo = Mel(fMin), delta = (Mel(fMax) - lo) / (nMels + 1);
        for (int m = 0; m < nMels; m++)
        {
            double left = lo + m * delta, centre = lo + (m + 1) * delta, right = lo + (m + 2) * delta;
            for (int k = 0; k < nFft / 2; k++)
            {
                double mel = Mel(k * (double)sr / nFft);
                double up = (mel - left) / (centre - left), down = (right - mel) / (right - centre);
                bank[m, k] = Math.Max(0, Math.Min(up, down));
            }
        }
        return bank;
    }

    private static double[,] DirectLogMel(float[] x, MelConfig c)
    {
        // 1. Pre-emphasis: valid convolution with [-a, 1].
        int n = x.Length - 1;
        var y = new double[n];
        for (int i = 0; i < n; i++)
            y[i] = (double)x[i + 1] - c.PreEmphasis * x[i];
        // 2. Reflect padding by NFft / 2: index -j maps to j, index n - 1 + j maps to n - 1 - j.
        int pad = c.NFft / 2;
        double At(int i) => i < 0 ? y[-i] : i >= n ? y[2 * (n - 1) - i] : y[i];
        // Symmetric Hann of WinLength, zero-padded centred to NFft.
        var window = new double[c.NFft];
        int offset = (c.NFft - c.WinLength) / 2;
        for (int i = 0; i < c.WinLength; i++)
            window[offset + i] = 0.5 - 0.5 * Math.Cos(2 * Math.PI * i / (c.WinLength - 1));
        int frames = 1 + n / c.HopLength;
        int bins = c.NFft / 2 + 1;
        var bank = KaldiBank(c.NMels, c.NFft, c.SampleRate, c.FMin, c.FMax);
        var result = new double[c.NMels, frames];
        var power = new double[bins];
        for (int t = 0; t < frames; t++)
        {
            // 3. Plain DFT and power.
            for (int k = 0; k < bins; k++)
            {
                double re = 0, im = 0;
                for (int j = offset; j < offset + c.WinLength; j++)
                {
                    double v = At(t * c.HopLength - pad + j) * window[j];
                    double a = -2 * Math.PI * k * j / c.NFft;
                    re += v * Math.Cos(a);
                    im += v * Math.Sin(a);
                }
                power[k] = re * re + im * im;
            }
            // 4-5. Mel, log, normalisation.
            for (int m = 0; m < c.NMels; m++)
            {
                double sum = 0;
                for (int k = 0; k < bins; k++)
                    sum += bank[m, k] * power[k];
                result[m, t] = (Math.Log(sum + c.LogOffset) + c.NormShift) / c.NormScale;
            }
        }
        return result;
    }

    [Fact]
    public void OneSecondAt32kHzGives128By100()
    {
        var mel = new MelSpectrogram(new MelConfig());
        Assert.Equal(100, mel.FrameCount(32000));
        Assert.Equal(128 * 100, mel.Compute(TestSignal(32000, 1)).Length);
        var cpjku = new MelSpectrogram(MelConfig.Cpjku2024);
        Assert.Equal(64, cpjku.FrameCount(32000));
        Assert.Equal(256 * 64, cpjku.Compute(TestSignal(32000, 1)).Length);
    }

    [Fact]
    public void DefaultsAreTheSeedsFrontEnd()
    {
        var c = new MelConfig();
        Assert.Equal((32000, 1024, 800, 320, 128), (c.SampleRate, c.NFft, c.WinLength, c.HopLength, c.NMels));
        Assert.Equal((0.0, 15500.0, 0.97, 1e-5, 4.5, 5.0), (c.FMin, c.FMax, c.PreEmphasis, c.LogOffset, c.NormShift, c.NormScale));
        Assert.True(c.Center);
        Assert.False(c.PeriodicWindow);
    }

    [Theory]
    [InlineData(0.25, false)]
    [InlineData(0.1, true)]
    public void MatchesTheDirectComputationOfEveryStage(double seconds, bool cpjku)
    {
        var config = cpjku ? MelConfig.Cpjku2024 : new MelConfig();
        var x = TestSignal((int)(seconds * 32000), 7);
        var expected = DirectLogMel(x, config);
        var actual = new MelSpectrogram(config).Compute(x);
        int frames = expected.GetLength(1);
        Assert.Equal(config.NMels * frames, actual.Length);
        double worst = 0;
        for (int m = 0; m < config.NMels; m++)
            for (int t = 0; t < frames; t++)
                worst = Math.Max(worst, Math.Abs(expected[m, t] - actual[m * frames + t]));
        Assert.True(worst < 2e-4, $"max deviation {worst:E2} from the direct computation");
    }

    [Fact]
    public void PowerSpectrogramMatchesAPlainDft()
    {
        var config = new MelConfig();
        var x = TestSignal(4000, 3);
        var mel = new MelSpectrogram(config);
        int frames = mel.FrameCount(x.Length);
        var power = new float[frames * mel.NBins];
        mel.PowerSpectrogram(x, power, frames);
        // Frame 3 is interior: the padded signal starts at 3 * 320 - 512 in pre-emphasised samples.
        var window = MelSpectrogram.HannWindow(800, periodic: false);
        for (int k = 0; k < mel.NBins; k += 37)
        {
            double re = 0, im = 0;
            for (int j = 0; j < 800; j++)
            {
                int i = 3 * 320 - 512 + 112 + j;
                double v = ((double)x[i + 1] - 0.97 * x[i]) * window[j];
                double a = -2 * Math.PI * k * (j + 112) / 1024;
                re += v * Math.Cos(a);
                im += v * Math.Sin(a);
            }
            double p = re * re + im * im;
            Assert.Equal(p, power[3 * mel.NBins + k], Math.Max(1e-4, p * 1e-4));
        }
    }

    [Theory]
    [InlineData(128, 1024, 32000, 0.0, 15500.0)]
    [InlineData(256, 4096, 32000, 0.0, 15500.0)]
    [InlineData(40, 512, 16000, 20.0, 7600.0)]
    public void MelBankMatchesTheKaldiFormula(int nMels, int nFft, int sr, double fMin, double fMax)
    {
        var expected = KaldiBank(nMels, nFft, sr, fMin, fMax);
        var dense = MelFilterBank.Kaldi(nMels, nFft, sr, fMin, fMax).ToDense();
        int bins = nFft / 2 + 1;
        for (int m = 0; m < nMels; m++)
        {
            for (int k = 0; k < bins; k++)
                Assert.Equal(expected[m, k], dense[m * bins + k], 1e-6);
            Assert.Equal(0f, dense[m * bins + bins - 1]);
        }
    }

    [Fact]
    public void HannWindowIsSymmetricWithZeroEnds()
    {
        var w = MelSpectrogram.HannWindow(800, periodic: false);
        Assert.Equal(0f, w[0]);
        Assert.Equal(0f, w[799], 1e-7);
        for (int i = 0; i < 400; i++)
            Assert.Equal(w[i], w[799 - i], 1e-6);
        var p = MelSpectrogram.HannWindow(8, periodic: true);
        Assert.Equal(1f, p[4], 1e-7);
    }

    [Fact]
    public void ConfigRoundTripsThroughJsonAndMetadata()
    {
        var c = MelConfig.Cpjku2024 with { FMax = 14000, PreEmphasis = 0.9 };
        Assert.Equal(c, MelConfig.FromJson(c.ToJson()));
        Assert.Equal(c, MelConfig.FromMetadata(c.ToMetadata()));
        Assert.Contains("\"n_fft\":4096", c.ToJson());
        Assert.Null(MelConfig.FromMetadata(new Dictionary<string, string>()));
        Assert.Equal(new MelConfig { NMels = 64 }, MelConfig.FromJson("{\"n_mels\":64}"));
    }

    [Fact]
    public void InvalidConfigNamesTheParameter()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new MelSpectrogram(new MelConfig { FMax = 20000 }));
        Assert.Contains("FMax", e.Message);
        Assert.Throws<FormatException>(() => MelConfig.FromJson("{not json"));
        Assert.Throws<ArgumentOutOfRangeException>(() => MelConfig.FromJson("{\"n_fft\":1000}"));
    }

    [Fact]
    public void TooShortClipsAreRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new MelSpectrogram(new MelConfig()).Compute(new float[300]));
        Assert.Contains("300 samples", e.Message);
    }
}
