using System.Buffers.Binary;
using System.IO.Compression;

namespace NeuralCore.Data.Tests;

public sealed class MnistIdxTests
{
    private static readonly byte[] Pixels = Enumerable.Range(0, 3 * 4 * 5).Select(i => (byte)(i * 37 % 256)).ToArray();
    private static readonly byte[] Labels = [3, 0, 9];

    [Theory]
    [InlineData("images-idx3-ubyte", "labels-idx1-ubyte")]
    [InlineData("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz")]
    public void WriteThenRead_RoundTrips(string imagesName, string labelsName)
    {
        using var dir = new TempFolder();
        Idx.WriteImages(dir.File(imagesName), Pixels, 3, 4, 5);
        Idx.WriteLabels(dir.File(labelsName), Labels);

        var (pixels, count, rows, cols) = Idx.ReadImages(dir.File(imagesName));
        Assert.Equal((3, 4, 5), (count, rows, cols));
        Assert.Equal(Pixels, pixels);
        Assert.Equal(Labels, Idx.ReadLabels(dir.File(labelsName)));
        Assert.Equal(new[] { imagesName, labelsName }.Order(), Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void WriteImages_RawFile_HasBigEndianHeaderThenPixels()
    {
        using var dir = new TempFolder();
        Idx.WriteImages(dir.File("x"), Pixels, 3, 4, 5);
        byte[] bytes = File.ReadAllBytes(dir.File("x"));
        Assert.Equal(16 + Pixels.Length, bytes.Length);
        Assert.Equal(new byte[] { 0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5 }, bytes[..16]);
        Assert.Equal(Pixels, bytes[16..]);
    }

    [Fact]
    public void WriteLabels_GzName_WritesGzipThatIsDetectedByMagicWhateverTheName()
    {
        using var dir = new TempFolder();
        Idx.WriteLabels(dir.File("labels.gz"), Labels);
        byte[] bytes = File.ReadAllBytes(dir.File("labels.gz"));
        Assert.Equal(new byte[] { 0x1f, 0x8b }, bytes[..2]);
        File.Move(dir.File("labels.gz"), dir.File("labels-idx1-ubyte"));
        Assert.Equal(Labels, Idx.ReadLabels(dir.File("labels-idx1-ubyte")));
    }

    [Fact]
    public void WriteImages_PixelCountNotMatchingDimensions_Throws()
    {
        using var dir = new TempFolder();
        var e = Assert.Throws<ArgumentException>(() => Idx.WriteImages(dir.File("x"), Pixels, 3, 4, 4));
        Assert.Contains("48", e.Message);
        Assert.False(File.Exists(dir.File("x")));
    }

    [Fact]
    public void WriteImages_OverExistingFile_ReplacesItAndLeavesNoTemporaryFiles()
    {
        using var dir = new TempFolder();
        Idx.WriteImages(dir.File("x"), Pixels, 3, 4, 5);
        Idx.WriteImages(dir.File("x"), Pixels.AsSpan(0, 20), 1, 4, 5);
        Assert.Equal(1, Idx.ReadImages(dir.File("x")).Count);
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void ReadImages_LabelFile_SaysSwappedWithBothMagics()
    {
        using var dir = new TempFolder();
        string path = dir.File("train-labels-idx1-ubyte");
        Idx.WriteLabels(path, Labels);
        var e = Assert.Throws<InvalidDataException>(() => Idx.ReadImages(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("expected an IDX image file (magic 0x00000803)", e.Message);
        Assert.Contains("found an IDX label file (magic 0x00000801)", e.Message);
        Assert.Contains("swapped", e.Message);
    }

    [Fact]
    public void ReadLabels_ImageFile_SaysSwapped()
    {
        using var dir = new TempFolder();
        string path = dir.File("images");
        Idx.WriteImages(path, Pixels, 3, 4, 5);
        var e = Assert.Throws<InvalidDataException>(() => Idx.ReadLabels(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("expected an IDX label file (magic 0x00000801), found an IDX image file (magic 0x00000803)", e.Message);
    }

    [Fact]
    public void ReadImages_UnknownMagic_ShowsIt()
    {
        using var dir = new TempFolder();
        string path = dir.File("x");
        File.WriteAllBytes(path, [0x89, (byte)'P', (byte)'N', (byte)'G', 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0]);
        var e = Assert.Throws<InvalidDataException>(() => Idx.ReadImages(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("found magic 0x89504E47", e.Message);
    }

    [Fact]
    public void ReadImages_TruncatedFile_GivesExpectedAndFoundByteCounts()
    {
        using var dir = new TempFolder();
        string path = dir.File("x");
        Idx.WriteImages(path, Pixels, 3, 4, 5);
        using (var file = new FileStream(path, FileMode.Open))
            file.SetLength(file.Length - 10);
        var e = Assert.Throws<InvalidDataException>(() => Idx.ReadImages(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("expected 60 bytes of pixel data (3 images x 4 x 5) after the header, found 50", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void ReadImages_TruncatedGzip_GivesExpectedAndFoundByteCountsAfterDecompression()
    {
        using var dir = new TempFolder();
        string path = dir.File("x.gz");
        using (var gzip = new GZipStream(File.Create(path), CompressionLevel.Fastest))
        {
            gzip.Write(Header(Idx.ImageMagic, 3, 4, 5));
            gzip.Write(Pixels.AsSpan(0, 45));
        }
        var e = Assert.Throws<InvalidDataException>(() => Idx.ReadImages(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("expected 60 bytes of pixel data (3 images x 4 x 5) after the header, found 45 after decompression", e.Message);
    }

    [Fact]
    public void ReadImages_TrailingBytes_Rejected()
    {
        using var dir = new TempFolder();
        string path = dir.File("x");
        File.WriteAllBytes(path, [.. Header(Idx.ImageMagic, 3, 4, 5), .. Pixels, 1, 2]);
        var e = Assert.Throws<InvalidDataException>(() => Idx.ReadImages(path));
        Assert.Contains("expected 60 bytes of pixel data (3 images x 4 x 5) after the header, found 62", e.Message);
        Assert.Contains("does not match the file size", e.Message);
    }

    [Fact]
    public void ReadImages_ShorterThanHeader_Rejected()
    {
        using var dir = new TempFolder();
        string path = dir.File("x");
        File.WriteAllBytes(path, [0, 0, 8, 3, 0]);
        var e = Assert.Throws<InvalidDataException>(() => Idx.ReadImages(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("expected a 16-byte header, found 5 bytes", e.Message);
    }

    [Fact]
    public void ReadImages_NegativeDimension_Rejected()
    {
        using var dir = new TempFolder();
        string path = dir.File("x");
        File.WriteAllBytes(path, Header(Idx.ImageMagic, 3, -4, 5));
        var e = Assert.Throws<InvalidDataException>(() => Idx.ReadImages(path));
        Assert.Contains("header rows is -4", e.Message);
    }

    [Fact]
    public void ReadLabels_Truncated_GivesExpectedAndFound()
    {
        using var dir = new TempFolder();
        string path = dir.File("labels");
        File.WriteAllBytes(path, [.. Header(Idx.LabelMagic, 5), 1, 2]);
        var e = Assert.Throws<InvalidDataException>(() => Idx.ReadLabels(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("expected 5 bytes of label data (5 labels) after the header, found 2", e.Message);
    }

    [Fact]
    public void ReadLabels_CorruptGzip_NamesFile()
    {
        using var dir = new TempFolder();
        string path = dir.File("labels.gz");
        File.WriteAllBytes(path, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        var e = Assert.Throws<InvalidDataException>(() => Idx.ReadLabels(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void ReadImages_MissingFile_NamesPath()
    {
        using var dir = new TempFolder();
        var e = Assert.Throws<FileNotFoundException>(() => Idx.ReadImages(dir.File("nope")));
        Assert.Contains(dir.File("nope"), e.Message);
    }

    private static byte[] Header(int magic, params int[] dims)
    {
        var header = new byte[4 + 4 * dims.Length];
        BinaryPrimitives.WriteInt32BigEndian(header, magic);
        for (int i = 0; i < dims.Length; i++)
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4 + 4 * i), dims[i]);
        return header;
    }
}
