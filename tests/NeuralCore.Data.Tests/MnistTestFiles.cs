using System.Formats.Tar;
using System.Globalization;
using System.IO.Compression;
using System.Text;

namespace NeuralCore.Data.Tests;

/// <summary>A temporary folder deleted after the test.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder() => Path = Directory.CreateTempSubdirectory("neuralcore-mnist-test-").FullName;

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        if (Directory.Exists(Path))
            Directory.Delete(Path, recursive: true);
    }
}

/// <summary>Builders for synthetic IDX sets and fake npm tarballs.</summary>
internal static class MnistTestFiles
{
    /// <summary>Pixel j of image i in the synthetic sets, so every image is recognisable.</summary>
    public static byte PixelOf(int image, int j) => (byte)((image * 31 + j * 7 + 3) % 256);

    /// <summary>Writes an IDX image/label pair of <paramref name="count"/> images (labels i % 10).</summary>
    public static void WritePair(string imagesPath, string labelsPath, int count, int rows = 4, int cols = 3, int firstImage = 0)
    {
        var pixels = new byte[count * rows * cols];
        for (int i = 0; i < count; i++)
            for (int j = 0; j < rows * cols; j++)
                pixels[i * rows * cols + j] = PixelOf(firstImage + i, j);
        var labels = Enumerable.Range(0, count).Select(i => (byte)((firstImage + i) % 10)).ToArray();
        Idx.WriteImages(imagesPath, pixels, count, rows, cols);
        Idx.WriteLabels(labelsPath, labels);
    }

    /// <summary>Writes the four standard files (train raw, t10k gzipped) into <paramref name="dir"/>.</summary>
    public static void WriteStandardSet(string dir, int trainCount, int testCount)
    {
        WritePair(Path.Combine(dir, "train-images-idx3-ubyte"), Path.Combine(dir, "train-labels-idx1-ubyte"), trainCount);
        WritePair(Path.Combine(dir, "t10k-images-idx3-ubyte.gz"), Path.Combine(dir, "t10k-labels-idx1-ubyte.gz"), testCount, firstImage: 1000);
    }

    /// <summary>Grey value k of digit i of class d in the fake package, as the package writes it (3 decimals).</summary>
    public static byte FakeByte(int digitClass, int digit, int k) => (byte)((digitClass * 53 + digit * 11 + k) % 256);

    /// <summary>
    /// A .tgz laid out like the npm package: package/package.json plus package/src/digits/d.json for
    /// every class with a non-negative count, each {"data": [...], "extra": ...} with 784 values per digit.
    /// <paramref name="override"/> may replace the JSON text of a class.
    /// </summary>
    public static byte[] FakeTarball(int[] countsPerClass, Func<int, string?>? @override = null)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gzip, TarEntryFormat.Pax, leaveOpen: true))
        {
            AddEntry(tar, "package/package.json", "{\"name\": \"mnist\", \"version\": \"1.1.0\"}");
            for (int d = 0; d < countsPerClass.Length; d++)
            {
                if (countsPerClass[d] < 0)
                    continue;
                string json = @override?.Invoke(d) ?? DigitJson(d, countsPerClass[d]);
                AddEntry(tar, $"package/src/digits/{d}.json", json);
            }
        }
        return output.ToArray();
    }

    public static string DigitJson(int digitClass, int count)
    {
        var text = new StringBuilder("{ \"extra\": {\"a\": [1, 2]}, \"data\": [");
        for (int i = 0; i < count; i++)
            for (int k = 0; k < 784; k++)
            {
                if (i > 0 || k > 0)
                    text.Append(',');
                double v = Math.Round(FakeByte(digitClass, i, k) / 255.0, 3);
                text.Append(v.ToString("0.###", CultureInfo.InvariantCulture));
            }
        return text.Append("]}").ToString();
    }

    private static void AddEntry(TarWriter tar, string name, string content)
    {
        var entry = new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)) };
        tar.WriteEntry(entry);
    }
}
