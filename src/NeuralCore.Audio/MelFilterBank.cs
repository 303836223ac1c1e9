namespace NeuralCore.Audio;

/// <summary>
/// A Kaldi-style triangular mel filter bank (torchaudio's <c>compliance.kaldi.get_mel_banks</c>, padded with a
/// zero column for the Nyquist bin as the seed does): [NMels, NFft / 2 + 1], stored sparsely as one contiguous
/// run of non-zero weights per mel bin.
/// </summary>
/// <remarks>
/// mel(f) = 1127 ln(1 + f / 700). The NMels + 2 edges are spaced evenly in mel from mel(fMin) to mel(fMax); bin m
/// rises from edge m to edge m + 1 and falls to edge m + 2, evaluated (in mel) at the frequencies k * sr / NFft of
/// FFT bins k = 0 .. NFft / 2 - 1: <c>w = max(0, min((mel - left) / (centre - left), (right - mel) / (right - centre)))</c>.
/// Weights are not area-normalised (Kaldi's convention).
/// </remarks>
public sealed class MelFilterBank
{
    private MelFilterBank(int nMels, int nBins, float[] weights, int[] start, int[] length)
    {
        NMels = nMels;
        NBins = nBins;
        Weights = weights;
        Start = start;
        Length = length;
    }

    /// <summary>Number of mel bins (rows).</summary>
    public int NMels { get; }

    /// <summary>Number of FFT bins (columns): NFft / 2 + 1.</summary>
    public int NBins { get; }

    /// <summary>The non-zero weights, row after row; row m's run begins at the sum of the lengths before it.</summary>
    internal float[] Weights { get; }

    /// <summary>First FFT bin of each row's non-zero run.</summary>
    internal int[] Start { get; }

    /// <summary>Length of each row's non-zero run (possibly 0 when a mel bin falls between FFT bins).</summary>
    internal int[] Length { get; }

    /// <summary>The mel value of <paramref name="hz"/>: 1127 ln(1 + hz / 700).</summary>
    public static double MelScale(double hz) => 1127.0 * Math.Log(1.0 + hz / 700.0);

    /// <summary>The frequency in Hz of the mel value <paramref name="mel"/>: 700 (e^(mel / 1127) - 1).</summary>
    public static double InverseMelScale(double mel) => 700.0 * (Math.Exp(mel / 1127.0) - 1.0);

    /// <summary>Builds the bank for <paramref name="nMels"/> bins between <paramref name="fMin"/> and <paramref name="fMax"/> Hz.</summary>
    public static MelFilterBank Kaldi(int nMels, int nFft, int sampleRate, double fMin, double fMax)
    {
        if (nMels < 4)
            throw new ArgumentOutOfRangeException(nameof(nMels), nMels, "Kaldi mel banks need at least 4 bins.");
        if (nFft < 2 || nFft % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(nFft), nFft, "The FFT size must be even.");
        double nyquist = 0.5 * sampleRate;
        if (!(fMin >= 0 && fMin < nyquist && fMax > fMin && fMax <= nyquist))
            throw new ArgumentOutOfRangeException(nameof(fMax), $"Mel bank edges must satisfy 0 <= fMin < fMax <= Nyquist ({nyquist} Hz); found fMin = {fMin}, fMax = {fMax}.");
        int nBins = nFft / 2 + 1;
        double binWidth = (double)sampleRate / nFft;
        double melLow = MelScale(fMin), melHigh = MelScale(fMax);
        double delta = (melHigh - melLow) / (nMels + 1);
        var binMel = new double[nFft / 2];
        for (int k = 0; k < binMel.Length; k++)
            binMel[k] = MelScale(binWidth * k);

        var weights = new List<float>(2 * nBins);
        var start = new int[nMels];
        var length = new int[nMels];
        for (int m = 0; m < nMels; m++)
        {
            double left = melLow + m * delta, centre = melLow + (m + 1) * delta, right = melLow + (m + 2) * delta;
            int first = -1, count = 0;
            for (int k = 0; k < binMel.Length; k++)
            {
                double w = Math.Max(0.0, Math.Min((binMel[k] - left) / (centre - left), (right - binMel[k]) / (right - centre)));
                if (w > 0)
                {
                    if (first < 0)
                        first = k;
                    // A triangle is convex in mel and the bins increase monotonically, so its support is one run.
                    count = k - first + 1;
                }
            }
            start[m] = Math.Max(first, 0);
            length[m] = count;
            for (int k = start[m]; k < start[m] + count; k++)
                weights.Add((float)Math.Max(0.0, Math.Min((binMel[k] - left) / (centre - left), (right - binMel[k]) / (right - centre))));
        }
        return new MelFilterBank(nMels, nBins, weights.ToArray(), start, length);
    }

    /// <summary>The dense bank, [NMels, NBins] row-major (the last column, the Nyquist bin, is zero).</summary>
    public float[] ToDense()
    {
        var dense = new float[NMels * NBins];
        int offset = 0;
        for (int m = 0; m < NMels; m++)
        {
            Weights.AsSpan(offset, Length[m]).CopyTo(dense.AsSpan(m * NBins + Start[m]));
            offset += Length[m];
        }
        return dense;
    }

    /// <summary>
    /// Applies the bank to a power spectrogram: <paramref name="power"/> is [frames, NBins] frame-major,
    /// <paramref name="mel"/> receives [NMels, frames] mel-major (the layout of the model input).
    /// </summary>
    public void Apply(ReadOnlySpan<float> power, int frames, Span<float> mel)
    {
        if (power.Length < frames * NBins)
            throw new ArgumentException($"The power spectrogram needs {frames} x {NBins} values, found {power.Length}.", nameof(power));
        if (mel.Length < frames * NMels)
            throw new ArgumentException($"The mel output needs {NMels} x {frames} values, found room for {mel.Length}.", nameof(mel));
        int offset = 0;
        for (int m = 0; m < NMels; m++)
        {
            ReadOnlySpan<float> w = Weights.AsSpan(offset, Length[m]);
            int s = Start[m];
            Span<float> row = mel.Slice(m * frames, frames);
            for (int t = 0; t < frames; t++)
            {
                ReadOnlySpan<float> p = power.Slice(t * NBins + s, w.Length);
                float sum = 0;
                for (int k = 0; k < w.Length; k++)
                    sum += w[k] * p[k];
                row[t] = sum;
            }
            offset += Length[m];
        }
    }
}
