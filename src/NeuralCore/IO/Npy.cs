using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace NeuralCore.IO;

/// <summary>
/// Reads and writes single arrays in NumPy's <c>.npy</c> format: the magic <c>\x93NUMPY</c>, a version,
/// a header length, a Python-literal header dict <c>{'descr': '&lt;f4', 'fortran_order': False, 'shape': (2, 3), }</c>
/// padded with spaces and a newline so the data starts at a multiple of 64 bytes, then the raw data.
/// </summary>
/// <remarks>
/// Reading accepts versions 1.0 and 2.0 (Latin-1 header) and 3.0 (UTF-8 header); element types
/// f2, f4, f8, i1, i2, i4, i8, u1 and b1 in either byte order (big-endian data is converted to
/// little-endian); C order. Fortran order is refused for arrays with two or more non-trivial dimensions
/// (its layout differs from C order there) and accepted otherwise (the layouts coincide). Bytes after
/// the array data are ignored, as <c>numpy.load</c> ignores them. Writing produces exactly the bytes
/// <c>numpy.save</c> produces for the same array (version 1.0 unless the header needs 2.0).
/// </remarks>
public static class Npy
{
    /// <summary>Largest header this reader accepts, in bytes; real headers are under a kilobyte.</summary>
    public const int MaxHeaderBytes = 1 << 20;

    /// <summary>The data starts at a multiple of this many bytes, as NumPy writes it.</summary>
    private const int ArrayAlign = 64;

    /// <summary>Spare spaces NumPy leaves after the header dict so the first dimension can grow in place (its GROWTH_AXIS_MAX_DIGITS).</summary>
    private const int GrowthAxisMaxDigits = 21;

    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Reads one array from a <c>.npy</c> file.</summary>
    /// <param name="path">The file to read.</param>
    /// <returns>The array with its NumPy element type mapped to <see cref="TensorElementType"/>, in C order, little-endian.</returns>
    /// <exception cref="TensorFileException">The file is not a valid <c>.npy</c> file, is truncated, or uses a type or layout NeuralCore does not read.</exception>
    public static RawTensor Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16, FileOptions.SequentialScan);
        return Read(stream, path);
    }

    /// <summary>Reads one array in <c>.npy</c> format from <paramref name="stream"/>, starting at its current position.</summary>
    /// <param name="stream">The stream to read. A stream that cannot seek is first copied to memory.</param>
    /// <param name="nameForMessages">What to call the stream in error messages (a path, an archive entry name).</param>
    /// <returns>The array with its NumPy element type mapped to <see cref="TensorElementType"/>, in C order, little-endian.</returns>
    /// <exception cref="TensorFileException">The stream does not hold a valid <c>.npy</c> array, is truncated, or uses a type or layout NeuralCore does not read.</exception>
    public static RawTensor Read(Stream stream, string nameForMessages)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(nameForMessages);
        if (stream.CanSeek)
        {
            return ReadSeekable(stream, nameForMessages);
        }
        // NOTE: the length must be known before the header is trusted, or a corrupt shape could make the
        // reader allocate gigabytes for data that is not there; copying bounds memory by the real size.
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        copy.Position = 0;
        return ReadSeekable(copy, nameForMessages);
    }

    /// <summary>
    /// Writes <paramref name="tensor"/> as a <c>.npy</c> file atomically: the data goes to a temporary file in the
    /// same folder, is flushed to disk, and only then replaces <paramref name="path"/>.
    /// </summary>
    /// <param name="path">The file to create or replace. Its folder must exist.</param>
    /// <param name="tensor">The array; any element type except <see cref="TensorElementType.BFloat16"/>, which NumPy lacks.</param>
    /// <exception cref="ArgumentException"><paramref name="tensor"/> is BFloat16.</exception>
    public static void Write(string path, RawTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        string descr = Descr(tensor.ElementType);
        AtomicFile.Write(path, stream => WriteArray(stream, tensor, descr));
    }

    /// <summary>Writes <paramref name="tensor"/> in <c>.npy</c> format to <paramref name="stream"/> at its current position.</summary>
    /// <param name="stream">A writable stream; it is not closed.</param>
    /// <param name="tensor">The array; any element type except <see cref="TensorElementType.BFloat16"/>, which NumPy lacks.</param>
    /// <exception cref="ArgumentException"><paramref name="tensor"/> is BFloat16.</exception>
    public static void Write(Stream stream, RawTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(tensor);
        WriteArray(stream, tensor, Descr(tensor.ElementType));
    }

    private static void WriteArray(Stream stream, RawTensor tensor, string descr)
    {
        stream.Write(BuildHeader(descr, tensor.Shape));
        stream.Write(tensor.Data);
    }

    /// <summary>Builds magic, version, header length and padded header exactly as <c>numpy.save</c> does.</summary>
    internal static byte[] BuildHeader(string descr, IReadOnlyList<int> shape)
    {
        string shapeText = shape.Count switch
        {
            0 => "()",
            1 => $"({shape[0].ToString(CultureInfo.InvariantCulture)},)",
            _ => "(" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + ")",
        };
        var dict = new StringBuilder($"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shapeText}, }}");
        if (shape.Count > 0)
        {
            dict.Append(' ', GrowthAxisMaxDigits - shape[0].ToString(CultureInfo.InvariantCulture).Length);
        }
        byte[] text = Encoding.ASCII.GetBytes(dict.ToString());

        // Version 1.0 stores the header length in 2 bytes, 2.0 in 4; the padded header ends with '\n'.
        int lengthBytes = 2;
        int padded = PaddedHeaderLength(text.Length, lengthBytes);
        if (padded > ushort.MaxValue)
        {
            lengthBytes = 4;
            padded = PaddedHeaderLength(text.Length, lengthBytes);
        }
        var result = new byte[Magic.Length + 2 + lengthBytes + padded];
        Magic.CopyTo(result);
        result[6] = (byte)(lengthBytes == 2 ? 1 : 2);
        result[7] = 0;
        if (lengthBytes == 2)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(result.AsSpan(8), (ushort)padded);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(8), (uint)padded);
        }
        int start = 8 + lengthBytes;
        text.CopyTo(result, start);
        result.AsSpan(start + text.Length, padded - text.Length - 1).Fill((byte)' ');
        result[^1] = (byte)'\n';
        return result;
    }

    /// <summary>Header length after NumPy's padding: at least one space, then '\n', ending on a 64-byte boundary.</summary>
    private static int PaddedHeaderLength(int textLength, int lengthBytes)
    {
        int withNewline = textLength + 1;
        int padding = ArrayAlign - (Magic.Length + 2 + lengthBytes + withNewline) % ArrayAlign;
        return withNewline + padding;
    }

    private static string Descr(TensorElementType type) => type switch
    {
        TensorElementType.Float32 => "<f4",
        TensorElementType.Float64 => "<f8",
        TensorElementType.Float16 => "<f2",
        TensorElementType.Int64 => "<i8",
        TensorElementType.Int32 => "<i4",
        TensorElementType.Int16 => "<i2",
        TensorElementType.Int8 => "|i1",
        TensorElementType.UInt8 => "|u1",
        TensorElementType.Bool => "|b1",
        TensorElementType.BFloat16 => throw new ArgumentException(
            "NumPy has no bfloat16 type, so a BFloat16 array cannot be saved as .npy; convert it to Float32 first " +
            "(RawTensor.FromFloats(tensor.ToFloats(), tensor.ShapeToArray())).", "tensor"),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown tensor element type."),
    };

    private static RawTensor ReadSeekable(Stream stream, string name)
    {
        long available = stream.Length - stream.Position;
        Span<byte> preamble = stackalloc byte[8];
        int got = stream.ReadAtLeast(preamble, preamble.Length, throwOnEndOfStream: false);
        int magicBytes = Math.Min(got, Magic.Length);
        if (!preamble[..magicBytes].SequenceEqual(Magic[..magicBytes]))
        {
            throw Fail(name,
                $"it does not start with the NumPy magic bytes \\x93NUMPY (found {Printable(preamble[..magicBytes])}). " +
                "Save arrays with numpy.save; .npz archives and text files are different formats.");
        }
        if (got < preamble.Length)
        {
            throw Fail(name, $"it is only {got} bytes long, shorter than the 8-byte magic and version of the format (the file is truncated).");
        }
        byte major = preamble[6], minor = preamble[7];
        int lengthBytes = (major, minor) switch
        {
            (1, 0) => 2,
            (2, 0) or (3, 0) => 4,
            _ => throw Fail(name, $"it uses .npy format version {major}.{minor}; NeuralCore reads versions 1.0, 2.0 and 3.0."),
        };

        Span<byte> lengthField = stackalloc byte[lengthBytes];
        if (stream.ReadAtLeast(lengthField, lengthBytes, throwOnEndOfStream: false) < lengthBytes)
        {
            throw Fail(name, "it ends inside the header length field (the file is truncated).");
        }
        uint headerLength = lengthBytes == 2
            ? BinaryPrimitives.ReadUInt16LittleEndian(lengthField)
            : BinaryPrimitives.ReadUInt32LittleEndian(lengthField);
        long afterPrefix = available - 8 - lengthBytes;
        if (headerLength > MaxHeaderBytes)
        {
            throw Fail(name, $"its header length field says {headerLength} bytes, more than the {MaxHeaderBytes} this reader accepts (the file is corrupt or not .npy).");
        }
        if (headerLength > afterPrefix)
        {
            throw Fail(name, $"its header length field says {headerLength} bytes, but only {afterPrefix} bytes follow (the file is truncated).");
        }
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        string header;
        if (major == 3)
        {
            try
            {
                header = StrictUtf8.GetString(headerBytes);
            }
            catch (DecoderFallbackException e)
            {
                throw Fail(name, "its version 3.0 header is not valid UTF-8 text.", e);
            }
        }
        else
        {
            header = Encoding.Latin1.GetString(headerBytes);
        }

        var (descr, fortranOrder, shape) = ParseHeader(header, name);
        if (!TryParseDescr(descr, out var type, out bool bigEndian))
        {
            throw Fail(name,
                $"its element type '{descr}' is not one NeuralCore reads (supported: f2, f4, f8, i1, i2, i4, i8, u1 and b1, " +
                "little- or big-endian). Convert the array first, e.g. a.astype(np.float32).");
        }

        var dims = new int[shape.Length];
        long count = 1;
        int nonTrivial = 0;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] < 0 || shape[i] > int.MaxValue)
            {
                throw Fail(name, $"its shape {ShapeText(shape)} has a dimension outside 0..{int.MaxValue}.");
            }
            dims[i] = (int)shape[i];
            count = count == 0 || dims[i] == 0 ? 0 : (count > long.MaxValue / dims[i] ? long.MaxValue : count * dims[i]);
            nonTrivial += dims[i] > 1 ? 1 : 0;
        }
        if (fortranOrder && nonTrivial > 1 && count > 0)
        {
            throw Fail(name,
                $"it stores its {ShapeText(shape)} array in Fortran (column-major) order; NeuralCore reads C order only. " +
                "Re-save it with numpy.save(path, numpy.ascontiguousarray(a)).");
        }
        int elementSize = type.ElementSize();
        if (count > Array.MaxLength / elementSize)
        {
            throw Fail(name, $"its {ShapeText(shape)} '{descr}' array is larger than the {Array.MaxLength} bytes NeuralCore holds in one array.");
        }
        long byteCount = count * elementSize;
        long remaining = afterPrefix - headerLength;
        if (remaining < byteCount)
        {
            throw Fail(name,
                $"its {ShapeText(shape)} '{descr}' array needs {byteCount} bytes of data, but only {remaining} bytes follow the header (the file is truncated).");
        }
        var data = new byte[byteCount];
        stream.ReadExactly(data);
        if (bigEndian)
        {
            SwapBytes(data, elementSize);
        }
        return new RawTensor(type, dims, data);
    }

    /// <summary>Reads the three keys NumPy requires (and only those) from the header dict literal.</summary>
    private static (string Descr, bool FortranOrder, long[] Shape) ParseHeader(string header, string name)
    {
        Dictionary<string, object?> dict;
        try
        {
            dict = PythonLiteral.ParseDict(header);
        }
        catch (FormatException e)
        {
            throw Fail(name, $"its header is not a Python dict literal ({e.Message}): {Quote(header)}", e);
        }
        string[] expected = ["descr", "fortran_order", "shape"];
        if (dict.Count != expected.Length || !expected.All(dict.ContainsKey))
        {
            throw Fail(name,
                $"its header has keys [{string.Join(", ", dict.Keys.Order(StringComparer.Ordinal))}]; a .npy header has exactly descr, fortran_order and shape.");
        }
        if (dict["descr"] is not string descr)
        {
            throw Fail(name,
                $"its 'descr' is {PythonLiteral.Repr(dict["descr"])}; NeuralCore reads plain element types such as '<f4', not structured (record) arrays.");
        }
        if (dict["fortran_order"] is not bool fortranOrder)
        {
            throw Fail(name, $"its 'fortran_order' is {PythonLiteral.Repr(dict["fortran_order"])}; expected True or False.");
        }
        if (dict["shape"] is not PythonLiteral.Tuple { Items: var items } || !items.All(i => i is long))
        {
            throw Fail(name, $"its 'shape' is {PythonLiteral.Repr(dict["shape"])}; expected a tuple of integers such as (2, 3).");
        }
        return (descr, fortranOrder, items.Cast<long>().ToArray());
    }

    /// <summary>Maps a NumPy type string such as '&lt;f4' or '|u1' to an element type and its byte order.</summary>
    private static bool TryParseDescr(string descr, out TensorElementType type, out bool bigEndian)
    {
        char order = '=';
        string code = descr;
        if (descr.Length > 0 && "<>|=".Contains(descr[0]))
        {
            order = descr[0];
            code = descr[1..];
        }
        TensorElementType? parsed = code switch
        {
            "f2" => TensorElementType.Float16,
            "f4" => TensorElementType.Float32,
            "f8" => TensorElementType.Float64,
            "i1" => TensorElementType.Int8,
            "i2" => TensorElementType.Int16,
            "i4" => TensorElementType.Int32,
            "i8" => TensorElementType.Int64,
            "u1" => TensorElementType.UInt8,
            "b1" or "?" => TensorElementType.Bool,
            _ => null,
        };
        type = parsed.GetValueOrDefault();
        // NOTE: '=' and '|' mean the writer's native order; every machine NeuralCore runs on is little-endian.
        bigEndian = order == '>' && parsed.HasValue && type.ElementSize() > 1;
        return parsed.HasValue;
    }

    private static void SwapBytes(byte[] data, int elementSize)
    {
        for (int i = 0; i < data.Length; i += elementSize)
        {
            data.AsSpan(i, elementSize).Reverse();
        }
    }

    private static string ShapeText(long[] shape) => shape.Length == 1 ? $"({shape[0]},)" : $"({string.Join(", ", shape)})";

    private static string Printable(ReadOnlySpan<byte> bytes)
    {
        var text = new StringBuilder();
        foreach (byte b in bytes)
        {
            text.Append(b is >= 0x20 and < 0x7f ? ((char)b).ToString() : $"\\x{b:x2}");
        }
        return bytes.IsEmpty ? "an empty file" : $"'{text}'";
    }

    private static string Quote(string header) => header.Length <= 200 ? header.TrimEnd() : header[..200] + "...";

    private static TensorFileException Fail(string name, string problem, Exception? inner = null) =>
        new(name, $"'{name}' is not a valid .npy file: {problem}", inner);
}
