namespace NeuralCore.Audio;

/// <summary>
/// Freq-MixStyle (Kim et al. / CPJKU DCASE 2023): normalises each example's spectrogram per frequency bin and
/// re-styles it with statistics mixed from a randomly permuted partner, simulating other recording devices.
/// </summary>
public static class FreqMixStyle
{
    /// <summary>
    /// Applies Freq-MixStyle in place to <paramref name="x"/> [B, C, F, T]: for each example, mean and standard
    /// deviation per frequency bin over channels and time (unbiased variance, + <paramref name="eps"/>), then
    /// <c>(x - mu) / sigma * (lambda sigma + (1 - lambda) sigma[perm]) + lambda mu + (1 - lambda) mu[perm]</c> with
    /// lambda ~ Beta(alpha, alpha) per example and one permutation per batch. Labels are unchanged.
    /// </summary>
    public static void Apply(Span<float> x, int batch, int channels, int freqs, int frames, double alpha, Generator generator, double eps = 1e-6)
    {
        ArgumentNullException.ThrowIfNull(generator);
        int size = channels * freqs * frames;
        if (x.Length != batch * size)
            throw new ArgumentException($"Freq-MixStyle expects {batch} x {channels} x {freqs} x {frames} values, found {x.Length}.", nameof(x));
        if (batch < 1)
            return;
        var lambda = new double[batch];
        for (int i = 0; i < batch; i++)
            lambda[i] = generator.NextBeta(alpha, alpha);
        var perm = new int[batch];
        for (int i = 0; i < batch; i++)
            perm[i] = i;
        generator.Shuffle<int>(perm);

        // Statistics first (the partner's must be the unmixed ones), [B, F].
        var mu = new double[batch * freqs];
        var sigma = new double[batch * freqs];
        int count = channels * frames;
        for (int i = 0; i < batch; i++)
        {
            for (int f = 0; f < freqs; f++)
            {
                double sum = 0;
                for (int c = 0; c < channels; c++)
                {
                    var row = x.Slice(i * size + (c * freqs + f) * frames, frames);
                    for (int t = 0; t < frames; t++)
                        sum += row[t];
                }
                double mean = sum / count, ss = 0;
                for (int c = 0; c < channels; c++)
                {
                    var row = x.Slice(i * size + (c * freqs + f) * frames, frames);
                    for (int t = 0; t < frames; t++)
                    {
                        double d = row[t] - mean;
                        ss += d * d;
                    }
                }
                mu[i * freqs + f] = mean;
                sigma[i * freqs + f] = Math.Sqrt(ss / Math.Max(count - 1, 1) + eps);
            }
        }
        for (int i = 0; i < batch; i++)
        {
            double l = lambda[i];
            int j = perm[i];
            for (int f = 0; f < freqs; f++)
            {
                double m = mu[i * freqs + f], s = sigma[i * freqs + f];
                double mixMu = l * m + (1 - l) * mu[j * freqs + f];
                double mixSigma = l * s + (1 - l) * sigma[j * freqs + f];
                float scale = (float)(mixSigma / s);
                float shift = (float)(mixMu - m * mixSigma / s);
                for (int c = 0; c < channels; c++)
                {
                    var row = x.Slice(i * size + (c * freqs + f) * frames, frames);
                    for (int t = 0; t < frames; t++)
                        row[t] = row[t] * scale + shift;
                }
            }
        }
    }
}
