using System.Buffers.Binary;
using System.IO.Compression;

namespace NeuralCore.Data;

/// <summary>
/// Reads and writes the IDX files MNIST ships in: a big-endian header (magic 0x00000803 then count,
/// rows, cols as int32 for images; magic 0x00000801 then count for labels) followed by one unsigned
/// byte per pixel or label. Gzip-compressed files are read transparently (recognised by their first
/// two bytes 1f 8b, whatever the file name) and written when the target name ends in ".gz".
/// Malformed files raise <see cref="InvalidDataException"/> naming the file, what was expected and
/// what was found.
/// </summary>
public static class Idx
{
    /// <summary>Magic number of an IDX file of unsigned bytes with 3 dimensions (images).</summary>
    public const int ImageMagic = 0x00000803;

    /// <summary>Magic number of an IDX file of unsigned bytes with 1 dimension (labels).</summary>
    public const int LabelMagic = 0x00000801;

    private const int ImageHeaderBytes = 16;
    private const int LabelHeaderBytes = 8;

    /// <summary>Reads an IDX image file (raw or gzip).</summary>
    /// <param name="path">Path to e.g. <c>train-images-idx3-ubyte</c> or <c>train-images-idx3-ubyte.gz</c>.</param>
    /// <returns>Count x Rows x Cols pixel bytes (row-major) and the three dimensions.</returns>
    /// <exception cref="InvalidDataException">The file is not a well-formed IDX image file.</exception>
    public static (byte[] Pixels, int Count, int Rows, int Cols) ReadImages(string path)
    {
        using var source = OpenPayload(path, out bool compressed, out long rawLength);
        Span<byte> header = stackalloc byte[ImageHeaderBytes];
        ReadHeader(source, header, ImageMagic, path, compressed);
        int count = ReadDimension(header, 4, "image count", path);
        int rows = ReadDimension(header, 8, "rows", path);
        int cols = ReadDimension(header, 12, "cols", path);
        long expected = (long)count * rows * cols;
        byte[] pixels = ReadPayload(source, expected, ImageHeaderBytes, compressed, rawLength, path,
            $"pixel data ({count} images x {rows} x {cols})");
        return (pixels, count, rows, cols);
    }

    /// <summary>Reads an IDX label file (raw or gzip).</summary>
    /// <param name="path">Path to e.g. <c>train-labels-idx1-ubyte</c> or its <c>.gz</c>.</param>
    /// <returns>One byte per label.</returns>
    /// <exception cref="InvalidDataException">The file is not a well-formed IDX label file.</exception>
    public static byte[] ReadLabels(string path)
    {
        using var source = OpenPayload(path, out bool compressed, out long rawLength);
        Span<byte> header = stackalloc byte[LabelHeaderBytes];
        ReadHeader(source, header, LabelMagic, path, compressed);
        int count = ReadDimension(header, 4, "label count", path);
        return ReadPayload(source, count, LabelHeaderBytes, compressed, rawLength, path, $"label data ({count} labels)");
    }

    /// <summary>
    /// Writes an IDX image file atomically (a temporary file renamed over the target); gzip
    /// compressed when <paramref name="path"/> ends in ".gz".
    /// </summary>
    /// <param name="path">Target file.</param>
    /// <param name="pixels">count x rows x cols bytes, row-major.</param>
    /// <param name="count">Number of images.</param>
    /// <param name="rows">Image height.</param>
    /// <param name="cols">Image width.</param>
    public static void WriteImages(string path, ReadOnlySpan<byte> pixels, int count, int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        if ((long)count * rows * cols != pixels.Length)
            throw new ArgumentException(
                $"Pixel span has {pixels.Length} bytes, expected {count} x {rows} x {cols} = {(long)count * rows * cols}.", nameof(pixels));
        Span<byte> header = stackalloc byte[ImageHeaderBytes];
        BinaryPrimitives.WriteInt32BigEndian(header, ImageMagic);
        BinaryPrimitives.WriteInt32BigEndian(header[4..], count);
        BinaryPrimitives.WriteInt32BigEndian(header[8..], rows);
        BinaryPrimitives.WriteInt32BigEndian(header[12..], cols);
        Write(path, header, pixels);
    }

    /// <summary>
    /// Writes an IDX label file atomically; gzip compressed when <paramref name="path"/> ends in ".gz".
    /// </summary>
    /// <param name="path">Target file.</param>
    /// <param name="labels">One byte per label.</param>
    public static void WriteLabels(string path, ReadOnlySpan<byte> labels)
    {
        Span<byte> header = stackalloc byte[LabelHeaderBytes];
        BinaryPrimitives.WriteInt32BigEndian(header, LabelMagic);
        BinaryPrimitives.WriteInt32BigEndian(header[4..], labels.Length);
        Write(path, header, labels);
    }

    private static void Write(string path, ReadOnlySpan<byte> header, ReadOnlySpan<byte> payload)
    {
        using var file = DataCache.CreateAtomic(path);
        if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
        {
            using var gzip = new GZipStream(file.Stream, CompressionLevel.Optimal, leaveOpen: true);
            gzip.Write(header);
            gzip.Write(payload);
        }
        else
        {
            file.Stream.Write(header);
            file.Stream.Write(payload);
        }
        file.Commit();
    }

    // Opens the file and, when it starts with the gzip signature, wraps it in a decompressor.
    private static Stream OpenPayload(string path, out bool compressed, out long rawLength)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"IDX file not found: {path}", path);
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        rawLength = file.Length;
        int b0 = file.ReadByte();
        int b1 = file.ReadByte();
        file.Position = 0;
        compressed = b0 == 0x1f && b1 == 0x8b;
        return compressed ? new GZipStream(file, CompressionMode.Decompress) : file;
    }

    // The magic is checked before the header length, so a label file given as an image file is
    // reported as such even though it is shorter than an image header.
    private static void ReadHeader(Stream source, Span<byte> header, int magic, string path, bool compressed)
    {
        int read = ReadFully(source, header, path);
        if (read >= 4)
            CheckMagic(header, magic, path);
        string kind = magic == ImageMagic ? "image" : "label";
        if (read < header.Length)
            throw new InvalidDataException(
                $"{path}: too short for an IDX {kind} file: expected a {header.Length}-byte header, found {read} bytes" +
                (compressed ? " after decompression." : "."));
    }

    private static void CheckMagic(ReadOnlySpan<byte> header, int expected, string path)
    {
        int magic = BinaryPrimitives.ReadInt32BigEndian(header);
        if (magic == expected)
            return;
        string want = expected == ImageMagic ? "an IDX image file (magic 0x00000803)" : "an IDX label file (magic 0x00000801)";
        string found = magic switch
        {
            ImageMagic => "an IDX image file (magic 0x00000803); are the image and label files swapped?",
            LabelMagic => "an IDX label file (magic 0x00000801); are the image and label files swapped?",
            _ => $"magic 0x{magic:X8}, which is not an IDX file of unsigned bytes.",
        };
        throw new InvalidDataException($"{path}: expected {want}, found {found}");
    }

    private static int ReadDimension(ReadOnlySpan<byte> header, int offset, string name, string path)
    {
        int value = BinaryPrimitives.ReadInt32BigEndian(header[offset..]);
        if (value < 0)
            throw new InvalidDataException($"{path}: header {name} is {value}; expected a non-negative number.");
        return value;
    }

    private static byte[] ReadPayload(Stream source, long expected, int headerBytes, bool compressed, long rawLength, string path, string what)
    {
        if (!compressed && rawLength - headerBytes != expected)
            throw SizeMismatch(path, what, expected, rawLength - headerBytes, compressed);
        if (expected > Array.MaxLength)
            throw new InvalidDataException($"{path}: header announces {expected} bytes of {what}, more than one array can hold.");
        var payload = new byte[expected];
        int read = ReadFully(source, payload, path);
        if (read < expected)
            throw SizeMismatch(path, what, expected, read, compressed);
        long extra = CountRemaining(source, path);
        if (extra > 0)
            throw SizeMismatch(path, what, expected, expected + extra, compressed);
        return payload;
    }

    private static InvalidDataException SizeMismatch(string path, string what, long expected, long found, bool compressed) =>
        new($"{path}: expected {expected} bytes of {what} after the header, found {found}" +
            (compressed ? " after decompression" : "") +
            (found < expected ? ". The file is truncated; download it again." : ". The header does not match the file size."));

    private static int ReadFully(Stream source, Span<byte> buffer, string path)
    {
        try
        {
            return source.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: corrupt gzip data ({e.Message}). Download the file again.", e);
        }
    }

    private static long CountRemaining(Stream source, string path)
    {
        Span<byte> scratch = stackalloc byte[4096];
        long total = 0;
        int read;
        while ((read = ReadFully(source, scratch, path)) > 0)
            total += read;
        return total;
    }
}
