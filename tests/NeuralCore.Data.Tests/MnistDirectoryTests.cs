namespace NeuralCore.Data.Tests;

public sealed class MnistDirectoryTests
{
    [Fact]
    public void LoadFromDirectory_SplitsTrainFileAndKeepsT10kAsTest()
    {
        using var dir = new TempFolder();
        MnistTestFiles.WriteStandardSet(dir.Path, trainCount: 60, testCount: 20);

        var splits = Mnist.LoadFromDirectory(dir.Path, seed: 5, validationCount: 12);

        Assert.Equal((48, 12, 20), (splits.Train.Count, splits.Validation.Count, splits.Test.Count));
        Assert.Equal(dir.Path, splits.Source);
        Assert.All(new[] { splits.Train, splits.Validation, splits.Test }, d => Assert.Equal((4, 3, 10), (d.Rows, d.Cols, d.NumClasses)));
        // Every training image lands in exactly one part; identify images by their pixels.
        int[] trainIds = Identify(splits.Train, 0, 60);
        int[] validationIds = Identify(splits.Validation, 0, 60);
        Assert.Equal(Enumerable.Range(0, 60), trainIds.Concat(validationIds).Order());
        Assert.Equal(trainIds.Order(), trainIds);
        Assert.Equal(Enumerable.Range(1000, 20), Identify(splits.Test, 1000, 20));
        Assert.Equal(trainIds.Select(i => i % 10), splits.Train.Labels);
        Assert.Equal(MnistTestFiles.PixelOf(trainIds[1], 5) / 255f, splits.Train.GetImage(1)[5]);
        Assert.Contains("seed 5", splits.Validation.Description);
    }

    [Fact]
    public void LoadFromDirectory_SameSeedSameSplit_OtherSeedOtherSplit()
    {
        using var dir = new TempFolder();
        MnistTestFiles.WriteStandardSet(dir.Path, trainCount: 60, testCount: 10);
        var a = Mnist.LoadFromDirectory(dir.Path, seed: 1, validationCount: 10);
        var b = Mnist.LoadFromDirectory(dir.Path, seed: 1, validationCount: 10);
        var c = Mnist.LoadFromDirectory(dir.Path, seed: 2, validationCount: 10);
        Assert.Equal(a.Validation.Pixels, b.Validation.Pixels);
        Assert.Equal(a.Train.Labels, b.Train.Labels);
        Assert.NotEqual(Identify(a.Validation, 0, 60), Identify(c.Validation, 0, 60));
    }

    [Fact]
    public void LoadFromDirectory_DefaultValidationCount_Is10000()
    {
        using var dir = new TempFolder();
        MnistTestFiles.WriteStandardSet(dir.Path, trainCount: 10_010, testCount: 10);
        var splits = Mnist.LoadFromDirectory(dir.Path);
        Assert.Equal((10, 10_000), (splits.Train.Count, splits.Validation.Count));
    }

    [Fact]
    public void LoadFromDirectory_DottedAndGzipNames_AreFound()
    {
        using var dir = new TempFolder();
        MnistTestFiles.WritePair(dir.File("train-images.idx3-ubyte.gz"), dir.File("train-labels.idx1-ubyte"), 30);
        MnistTestFiles.WritePair(dir.File("t10k-images-idx3-ubyte"), dir.File("t10k-labels.idx1-ubyte.gz"), 5);
        var splits = Mnist.LoadFromDirectory(dir.Path, validationCount: 3);
        Assert.Equal((27, 3, 5), (splits.Train.Count, splits.Validation.Count, splits.Test.Count));
    }

    [Fact]
    public void LoadFromDirectory_MissingFiles_ListsEachWithTheNamesLookedFor()
    {
        using var dir = new TempFolder();
        MnistTestFiles.WritePair(dir.File("train-images-idx3-ubyte"), dir.File("train-labels-idx1-ubyte"), 10);
        var e = Assert.Throws<FileNotFoundException>(() => Mnist.LoadFromDirectory(dir.Path, validationCount: 2));
        Assert.Contains(dir.Path, e.Message);
        Assert.Contains("lacks 2 of the 4", e.Message);
        Assert.Contains("t10k-images-idx3-ubyte (looked for t10k-images-idx3-ubyte, t10k-images-idx3-ubyte.gz, t10k-images.idx3-ubyte, t10k-images.idx3-ubyte.gz)", e.Message);
        Assert.Contains("t10k-labels-idx1-ubyte.gz", e.Message);
        Assert.DoesNotContain("train-images-idx3-ubyte (looked", e.Message);
    }

    [Fact]
    public void LoadFromDirectory_MissingFolder_NamesIt()
    {
        using var dir = new TempFolder();
        string missing = dir.File("nope");
        var e = Assert.Throws<DirectoryNotFoundException>(() => Mnist.LoadFromDirectory(missing));
        Assert.Contains(missing, e.Message);
    }

    [Fact]
    public void LoadFromDirectory_ImageAndLabelCountsDiffer_NamesBothFiles()
    {
        using var dir = new TempFolder();
        MnistTestFiles.WriteStandardSet(dir.Path, trainCount: 20, testCount: 5);
        Idx.WriteLabels(dir.File("train-labels-idx1-ubyte"), new byte[19]);
        var e = Assert.Throws<InvalidDataException>(() => Mnist.LoadFromDirectory(dir.Path, validationCount: 2));
        Assert.Contains(dir.File("train-images-idx3-ubyte") + " holds 20 images", e.Message);
        Assert.Contains(dir.File("train-labels-idx1-ubyte") + " holds 19 labels", e.Message);
    }

    [Fact]
    public void LoadFromDirectory_LabelAbove9_NamesFileValueAndIndex()
    {
        using var dir = new TempFolder();
        MnistTestFiles.WriteStandardSet(dir.Path, trainCount: 20, testCount: 5);
        Idx.WriteLabels(dir.File("t10k-labels-idx1-ubyte.gz"), [1, 2, 3, 12, 4]);
        var e = Assert.Throws<InvalidDataException>(() => Mnist.LoadFromDirectory(dir.Path, validationCount: 2));
        Assert.Contains(dir.File("t10k-labels-idx1-ubyte.gz"), e.Message);
        Assert.Contains("expected labels 0-9, found 12 at index 3", e.Message);
    }

    [Fact]
    public void LoadFromDirectory_TestImagesOfOtherSize_Rejected()
    {
        using var dir = new TempFolder();
        MnistTestFiles.WriteStandardSet(dir.Path, trainCount: 20, testCount: 5);
        MnistTestFiles.WritePair(dir.File("t10k-images-idx3-ubyte.gz"), dir.File("t10k-labels-idx1-ubyte.gz"), 5, rows: 2, cols: 6);
        var e = Assert.Throws<InvalidDataException>(() => Mnist.LoadFromDirectory(dir.Path, validationCount: 2));
        Assert.Contains("expected images of 4 x 3", e.Message);
        Assert.Contains("found 2 x 6", e.Message);
    }

    [Fact]
    public void LoadFromDirectory_SwappedFiles_ReportsMagic()
    {
        using var dir = new TempFolder();
        MnistTestFiles.WritePair(dir.File("train-labels-idx1-ubyte"), dir.File("train-images-idx3-ubyte"), 10);
        MnistTestFiles.WritePair(dir.File("t10k-images-idx3-ubyte"), dir.File("t10k-labels-idx1-ubyte"), 5);
        var e = Assert.Throws<InvalidDataException>(() => Mnist.LoadFromDirectory(dir.Path, validationCount: 2));
        Assert.Contains(dir.File("train-images-idx3-ubyte"), e.Message);
        Assert.Contains("swapped", e.Message);
    }

    [Fact]
    public void LoadFromDirectory_ValidationCountTooLarge_Throws()
    {
        using var dir = new TempFolder();
        MnistTestFiles.WriteStandardSet(dir.Path, trainCount: 20, testCount: 5);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Mnist.LoadFromDirectory(dir.Path, validationCount: 20));
        Assert.Contains("from 0 to 19", e.Message);
    }

    [Fact]
    public void ImageDataset_Subset_CopiesChosenImagesInOrder()
    {
        var pixels = Enumerable.Range(0, 3 * 4).Select(i => i / 12f).ToArray();
        var data = new ImageDataset(pixels, [2, 5, 7], rows: 2, cols: 2, description: "d");
        var subset = data.Subset([2, 0, 2]);
        Assert.Equal([7, 2, 7], subset.Labels);
        Assert.Equal(data.GetImage(2).ToArray(), subset.GetImage(0).ToArray());
        Assert.Equal(data.GetImage(0).ToArray(), subset.GetImage(1).ToArray());
        Assert.Equal([0, 0, 1, 0, 0, 0, 0, 2, 0, 0], subset.ClassCounts());
        Assert.Throws<ArgumentOutOfRangeException>(() => data.Subset([3]));
        Assert.Throws<ArgumentException>(() => new ImageDataset(pixels, [2, 5, 10], 2, 2));
        Assert.Throws<ArgumentException>(() => new ImageDataset(pixels, [2, 5], 2, 2));
    }

    // Recovers each image's synthetic id from its first two pixels (PixelOf is injective on them
    // for ids in the given range).
    private static int[] Identify(ImageDataset data, int first, int count)
    {
        var ids = new int[data.Count];
        for (int i = 0; i < data.Count; i++)
        {
            float[] image = data.GetImage(i).ToArray();
            ids[i] = Enumerable.Range(first, count).Single(id =>
                Enumerable.Range(0, image.Length).All(j => image[j] == MnistTestFiles.PixelOf(id, j) / 255f));
        }
        return ids;
    }
}
