using NeuralCore.Audio;

namespace NeuralCore.Data.Tests;

public sealed class AscSyntheticTests(AscTestData data) : IClassFixture<AscTestData>, IDisposable
{
    private readonly string _cacheDir = Directory.CreateTempSubdirectory("nc-asc-cache-").FullName;

    public void Dispose() => Directory.Delete(_cacheDir, recursive: true);

    [Fact]
    public void GeneratesTheExactTau22Layout()
    {
        var root = data.Root;
        Assert.True(File.Exists(Path.Combine(root, "meta.csv")));
        Assert.Contains("synthetic", File.ReadAllText(Path.Combine(root, "README.md")), StringComparison.OrdinalIgnoreCase);
        Assert.StartsWith("filename\tscene_label\tidentifier\tsource_label\n", File.ReadAllText(Path.Combine(root, "meta.csv")));
        Assert.StartsWith("filename\n", File.ReadAllText(Path.Combine(root, "evaluation_setup", "fold1_test.csv")));
        var ds = Tau22.Load(root);
        Assert.Equal(Tau22Layout.Official, ds.Layout);
        Assert.Equal(400, ds.Meta.Count);
        Assert.Equal(data.Summary.TrainClips, ds.Train.Count);
        Assert.Equal(data.Summary.TestClips, ds.Test.Count);
        Assert.Equal(ds.Test.Select(c => c.FileName), ds.Evaluate.Select(c => c.FileName));
        Assert.All(Enumerable.Range(0, 10), s => Assert.Equal(40, ds.Meta.Count(c => c.Label == s)));
        // Train and test locations are disjoint; unseen devices only in the test fold.
        var trainLocations = ds.Train.Select(c => c.Identifier).ToHashSet();
        Assert.DoesNotContain(ds.Test, c => trainLocations.Contains(c.Identifier));
        Assert.DoesNotContain(ds.Train, c => c.Device is "s4" or "s5" or "s6");
        Assert.Contains(ds.Test, c => c.Device is "s4" or "s5" or "s6");
        Assert.True(ds.Meta.Select(c => c.City).Distinct().Count() >= 4);
        var wav = WavFile.Read(ds.AudioPath(ds.Meta[0]));
        Assert.Equal((44100, 1, 44100, WavSampleFormat.Pcm24), (wav.SampleRate, wav.Channels, wav.Frames, wav.Format));
        Assert.Throws<IOException>(() => SyntheticAsc.Generate(root, 2, 0));
    }

    [Fact]
    public void GenerationIsDeterministic()
    {
        string a = Path.Combine(_cacheDir, "a"), b = Path.Combine(_cacheDir, "b");
        SyntheticAsc.Generate(a, 2, 5);
        SyntheticAsc.Generate(b, 2, 5);
        Assert.Equal(File.ReadAllText(Path.Combine(a, "meta.csv")), File.ReadAllText(Path.Combine(b, "meta.csv")));
        foreach (var f in Directory.GetFiles(Path.Combine(a, "audio")))
            Assert.Equal(File.ReadAllBytes(f), File.ReadAllBytes(Path.Combine(b, "audio", Path.GetFileName(f))));
    }

    [Fact]
    public void TheCacheDecodesEachClipOnceAndMatchesADirectResample()
    {
        var ds = Tau22.Load(data.Root);
        var cache = new ResampleCache(_cacheDir, 32000);
        string path = ds.AudioPath(ds.Train[0]);
        var first = cache.Load(path);
        var second = cache.Load(path);
        Assert.Equal((1L, 1L), (cache.Misses, cache.Hits));
        Assert.Equal(first, second);
        Assert.Equal(Resampler.Resample(WavFile.ReadMono(path, out _), 44100, 32000), first);
        Assert.Equal(32000, first.Length);
        // A new instance (a later run) hits the disk cache; other settings miss it.
        var again = new ResampleCache(_cacheDir, 32000);
        again.Load(path);
        Assert.Equal(1L, again.Hits);
        var other = new ResampleCache(_cacheDir, 32000, new ResamplerSettings(ZeroCrossings: 32));
        other.Load(path);
        Assert.Equal(1L, other.Misses);
        // A damaged entry is recomputed.
        string entry = again.EntryPath(new FileInfo(path));
        File.WriteAllBytes(entry, [1, 2, 3]);
        Assert.Equal(first, again.Load(path));
        Assert.Equal(1L, again.Misses);
    }

    [Fact]
    public void BatchesAreLogMelsOfTheCachedWaveformsAndLaterEpochsNeverDecode()
    {
        var ds = Tau22.Load(data.Root);
        var split = AscSplit.Create(ds);
        var cache = new ResampleCache(_cacheDir, 32000);
        var clips = split.Train.Take(40).ToArray();
        var source = new AscBatchSource(clips, ds.Root, cache, new MelFrontEnd(new MelConfig()), training: true, seed: 3, memoryBudgetBytes: 0);
        Assert.Equal([1, 128, 100], source.SampleShape);
        Assert.Equal(10, source.NumClasses);
        var loader = new DataLoader(source, 16, shuffle: true, seed: 1);
        int seen = 0;
        foreach (var batch in loader)
        {
            Assert.Equal(128, batch.Inputs.Size(2));
            Assert.Equal(100, batch.Inputs.Size(3));
            seen += batch.Indices.Length;
        }
        Assert.Equal(clips.Length, seen);
        Assert.Equal(clips.Length, cache.Misses);
        loader.Epoch = 1;
        foreach (var _ in loader) { }
        Assert.Equal(clips.Length, cache.Misses);
        Assert.Equal(clips.Length, cache.Hits);

        // Evaluation batches are the plain front end; training batches are augmented deterministically.
        var eval = new AscBatchSource(clips, ds.Root, cache, new MelFrontEnd(new MelConfig()), training: false);
        var b = eval.GetBatch([0, 1]);
        Assert.Equal(new MelSpectrogram(new MelConfig()).Compute(eval.LoadWaveform(1)), b.Inputs.ToArray().AsSpan(128 * 100).ToArray());
        Assert.Equal(source.GetBatch([4, 2, 9]).Inputs.ToArray(), source.GetBatch([4, 2, 9]).Inputs.ToArray());
        Assert.NotEqual(eval.GetBatch([4, 2, 9]).Inputs.ToArray(), source.GetBatch([4, 2, 9]).Inputs.ToArray());
    }

    [Fact]
    public void ScenesAreLearnableFromMelStatisticsButNotTrivially()
    {
        // Softmax regression on the mean and standard deviation over time of 32 mel bins, standardised. The clips are
        // analysed at their own 44.1 kHz with a coarse hop: this checks the data, not the pipeline, and stays fast.
        var ds = Tau22.Load(data.Root);
        const int mels = 32;
        var mel = new MelSpectrogram(new MelConfig { SampleRate = 44100, FMax = 20000, NMels = mels, HopLength = 1024 });
        float[][] Features(IReadOnlyList<AscClip> clips)
        {
            var spectra = new float[clips.Count][];
            Parallel.For(0, clips.Count, i => spectra[i] = mel.Compute(WavFile.ReadMono(ds.AudioPath(clips[i]), out _)));
            int frames = spectra[0].Length / mels;
            return clips.Select((_, i) =>
            {
                var f = new float[2 * mels];
                for (int m = 0; m < mels; m++)
                {
                    var row = spectra[i].AsSpan(m * frames, frames).ToArray();
                    double mu = row.Average();
                    f[m] = (float)mu;
                    f[mels + m] = (float)Math.Sqrt(row.Average(v => (v - mu) * (v - mu)));
                }
                return f;
            }).ToArray();
        }
        var trainX = Features(ds.Train);
        var testX = Features(ds.Test);
        for (int j = 0; j < 2 * mels; j++)
        {
            double mean = trainX.Average(r => r[j]);
            double sd = Math.Sqrt(trainX.Average(r => (r[j] - mean) * (r[j] - mean))) + 1e-6;
            foreach (var r in trainX.Concat(testX))
                r[j] = (float)((r[j] - mean) / sd);
        }
        var w = TrainSoftmaxRegression(trainX, ds.Train.Select(c => c.Label).ToArray(), 10);
        double Accuracy(float[][] xs, IReadOnlyList<AscClip> clips, string? device = null) =>
            Enumerable.Range(0, xs.Length).Where(i => device is null || clips[i].Device == device).Average(i => Predict(w, xs[i]) == clips[i].Label ? 1.0 : 0.0);
        double trainAccuracy = Accuracy(trainX, ds.Train), testAccuracy = Accuracy(testX, ds.Test), deviceA = Accuracy(testX, ds.Test, "a");
        string summary = $"train {trainAccuracy:P0}, test {testAccuracy:P0}, test on device a {deviceA:P0} (chance 10 %)";
        Assert.True(testAccuracy > 0.25, summary);
        Assert.True(deviceA > 0.4, summary);
        Assert.True(testAccuracy < 0.95, summary + ": the synthetic task is too easy");
    }

    private static double[,] TrainSoftmaxRegression(float[][] x, int[] y, int classes)
    {
        int d = x[0].Length + 1;
        var w = new double[classes, d];
        var p = new double[classes];
        for (int step = 0; step < 500; step++)
        {
            var grad = new double[classes, d];
            for (int i = 0; i < x.Length; i++)
            {
                Scores(w, x[i], p);
                for (int c = 0; c < classes; c++)
                {
                    double err = p[c] - (y[i] == c ? 1 : 0);
                    for (int j = 0; j < d - 1; j++)
                        grad[c, j] += err * x[i][j];
                    grad[c, d - 1] += err;
                }
            }
            for (int c = 0; c < classes; c++)
                for (int j = 0; j < d; j++)
                    w[c, j] -= 0.3 * (grad[c, j] / x.Length + 1e-3 * w[c, j]);
        }
        return w;
    }

    private static void Scores(double[,] w, float[] x, double[] p)
    {
        int classes = w.GetLength(0), d = w.GetLength(1);
        double max = double.NegativeInfinity;
        for (int c = 0; c < classes; c++)
        {
            double s = w[c, d - 1];
            for (int j = 0; j < d - 1; j++)
                s += w[c, j] * x[j];
            p[c] = s;
            max = Math.Max(max, s);
        }
        double sum = 0;
        for (int c = 0; c < classes; c++)
            sum += p[c] = Math.Exp(p[c] - max);
        for (int c = 0; c < classes; c++)
            p[c] /= sum;
    }

    private static int Predict(double[,] w, float[] x)
    {
        var p = new double[w.GetLength(0)];
        Scores(w, x, p);
        return Array.IndexOf(p, p.Max());
    }
}
