namespace NeuralCore.Audio.Tests;

public class FrontEndTests
{
    private static float[][] Batch(int b, int samples, ulong seed)
    {
        var g = new Generator(seed);
        return Enumerable.Range(0, b).Select(_ => Enumerable.Range(0, samples).Select(_ => (float)(0.1 * g.NextNormal())).ToArray()).ToArray();
    }

    [Fact]
    public void EvaluationModeIsThePlainSpectrogramOfEachClip()
    {
        var clips = Batch(3, 8000, 1);
        var fe = new MelFrontEnd(new MelConfig());
        var x = fe.Forward(clips, training: false);
        Assert.Equal([3, 1, 128, 25], x.ShapeArray());
        Assert.Equal([1, 128, 25], fe.SampleShape(8000));
        var data = x.ToArray();
        for (int i = 0; i < 3; i++)
            Assert.Equal(fe.Spectrogram.Compute(clips[i]), data.AsSpan(i * 128 * 25, 128 * 25).ToArray());
    }

    [Fact]
    public void TrainingModeIsDeterministicGivenTheGeneratorAndDiffersFromEvaluation()
    {
        var clips = Batch(4, 8000, 2);
        var fe = new MelFrontEnd(new MelConfig(), new AugmentConfig { MixStyleP = 1, FreqMaskWidth = 20, TimeMaskWidth = 5, RollMaxShift = 1000 });
        var a = fe.Forward(clips, true, new Generator(9)).ToArray();
        var b = fe.Forward(clips, true, new Generator(9)).ToArray();
        var c = fe.Forward(clips, false).ToArray();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void FMaxJitterChangesOnlyTheBankAndFollowsTheSeedsRange()
    {
        var clips = Batch(2, 8000, 3);
        var noJitter = new MelFrontEnd(new MelConfig(), AugmentConfig.None);
        Assert.Equal(noJitter.Forward(clips, false).ToArray(), noJitter.Forward(clips, true, new Generator(1)).ToArray());
        var jitter = new MelFrontEnd(new MelConfig(), AugmentConfig.None with { FMaxJitter = 1000 });
        var eval = jitter.Forward(clips, false).ToArray();
        int differing = 0;
        for (ulong s = 0; s < 5; s++)
            if (!jitter.Forward(clips, true, new Generator(s)).ToArray().SequenceEqual(eval))
                differing++;
        Assert.True(differing >= 4);
    }

    [Fact]
    public void MasksSetTheLogMelToZeroBeforeNormalisation()
    {
        var clips = Batch(8, 8000, 4);
        var fe = new MelFrontEnd(new MelConfig(), AugmentConfig.None with { FreqMaskWidth = 30 });
        var x = fe.Forward(clips, true, new Generator(5)).ToArray();
        float masked = (float)((0 + 4.5) / 5);
        int rowsMasked = 0;
        for (int i = 0; i < 8; i++)
            for (int m = 0; m < 128; m++)
                if (x.AsSpan((i * 128 + m) * 25, 25).ToArray().All(v => Math.Abs(v - masked) < 1e-6))
                    rowsMasked++;
        Assert.InRange(rowsMasked, 1, 8 * 30);
    }

    [Fact]
    public void RollShiftsCircularly()
    {
        Assert.Equal([4f, 5f, 1f, 2f, 3f], MelFrontEnd.Roll([1f, 2f, 3f, 4f, 5f], 2));
        Assert.Equal([2f, 3f, 4f, 5f, 1f], MelFrontEnd.Roll([1f, 2f, 3f, 4f, 5f], -1));
    }

    [Fact]
    public void FreqMixStyleMatchesItsFormula()
    {
        int b = 3, f = 4, t = 5;
        var g = new Generator(11);
        var x = Enumerable.Range(0, b * f * t).Select(_ => (float)g.NextNormal()).ToArray();
        var y = (float[])x.Clone();
        FreqMixStyle.Apply(y, b, 1, f, t, 0.3, new Generator(12));
        // Replay the draws: lambdas first, then the permutation.
        var rg = new Generator(12);
        var lambda = Enumerable.Range(0, b).Select(_ => rg.NextBeta(0.3, 0.3)).ToArray();
        var perm = Enumerable.Range(0, b).ToArray();
        rg.Shuffle<int>(perm);
        (double Mu, double Sigma) Stats(int i, int fi)
        {
            var row = x.AsSpan((i * f + fi) * t, t).ToArray().Select(v => (double)v).ToArray();
            double mu = row.Average();
            return (mu, Math.Sqrt(row.Sum(v => (v - mu) * (v - mu)) / (t - 1) + 1e-6));
        }
        for (int i = 0; i < b; i++)
        {
            for (int fi = 0; fi < f; fi++)
            {
                var (mu, sigma) = Stats(i, fi);
                var (muP, sigmaP) = Stats(perm[i], fi);
                double mixMu = lambda[i] * mu + (1 - lambda[i]) * muP;
                double mixSigma = lambda[i] * sigma + (1 - lambda[i]) * sigmaP;
                for (int ti = 0; ti < t; ti++)
                {
                    int idx = (i * f + fi) * t + ti;
                    Assert.Equal((x[idx] - mu) / sigma * mixSigma + mixMu, y[idx], 1e-5);
                }
            }
        }
    }

    [Fact]
    public void MixupKeepsTheLargerShareAndMixesInputsAndLoss()
    {
        var g = new Generator(3);
        var inputs = Tensor.Randn([6, 1, 2, 3], g);
        var targets = Tensor.FromArray(new long[] { 0, 1, 2, 3, 4, 5 }, 6);
        var batch = Mixup.Apply(inputs, targets, 0.3, new Generator(4));
        var lambda = batch.Lambda.ToArray();
        Assert.All(lambda, l => Assert.InRange(l, 0.5f, 1f));
        var x = inputs.ToArray();
        var mixed = batch.Inputs.ToArray();
        var b = batch.TargetsB.AsInt64Span().ToArray();
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++)
                Assert.Equal(lambda[i] * x[i * 6 + j] + (1 - lambda[i]) * x[b[i] * 6 + j], mixed[i * 6 + j], 1e-6);
        var logits = Tensor.Randn([6, 6], g);
        var l = logits.ToArray();
        double expected = 0;
        for (int i = 0; i < 6; i++)
        {
            double max = l.Skip(i * 6).Take(6).Max();
            double lse = max + Math.Log(l.Skip(i * 6).Take(6).Sum(v => Math.Exp(v - max)));
            expected += lambda[i] * (lse - l[i * 6 + i]) + (1 - lambda[i]) * (lse - l[i * 6 + (int)b[i]]);
        }
        Assert.Equal(expected / 6, batch.Loss(logits).ToArray()[0], 1e-5);
    }

    /// <summary>
    /// A mask covers floor(width) bins from floor(start), as torchaudio's mask_along_axis draws it: 0 to maxWidth - 1 of
    /// them, each about as often, never maxWidth (floor(start + width) would reach it and widen the mean by half a bin).
    /// </summary>
    [Fact]
    public void MasksAreDrawnAsTorchaudioDrawsThem()
    {
        var generator = new Generator(5);
        var counts = new int[11];
        for (int i = 0; i < 20_000; i++)
        {
            var (start, end) = MelFrontEnd.DrawMask(generator, 10, 100);
            Assert.InRange(start, 0, 100);
            counts[end - start]++;
        }
        Assert.Equal(0, counts[10]);
        Assert.All(counts[..10], c => Assert.InRange(c, 1_700, 2_300));
        // A maximum width of 1 masks nothing, as in torchaudio.
        var (first, last) = MelFrontEnd.DrawMask(new Generator(1), 1, 100);
        Assert.Equal(first, last);
    }

    [Fact]
    public void AugmentConfigRoundTripsAndValidates()
    {
        var c = new AugmentConfig { MixupAlpha = 0.2, TimeMaskWidth = 10 };
        Assert.Equal(c, AugmentConfig.FromJson(c.ToJson()));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MelFrontEnd(new MelConfig(), new AugmentConfig { MixStyleP = 2 }));
    }
}
