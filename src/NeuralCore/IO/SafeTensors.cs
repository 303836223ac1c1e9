using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Unicode;

namespace NeuralCore.IO;

/// <summary>
/// Reads and writes the safetensors format (Hugging Face): an 8-byte little-endian header length N,
/// N bytes of UTF-8 JSON mapping each tensor name to <c>{"dtype", "shape", "data_offsets": [begin, end]}</c>
/// plus an optional <c>"__metadata__"</c> string-to-string map, then the data buffer the offsets point into.
/// </summary>
/// <remarks>
/// The reader enforces the rules of the reference implementation: a header of at most 100,000,000 bytes,
/// tensors whose data exactly tile the buffer (no overlaps, no gaps, nothing after the last tensor), and
/// a byte length equal to product(shape) x element size for every tensor. It also rejects duplicate names.
/// Fields of a tensor entry other than dtype, shape and data_offsets are ignored, as the reference does.
/// The writer lays tensors out as the reference writer does (by dtype, largest alignment first, then by
/// name in UTF-8 byte order) and pads the header with spaces so the data starts 8-byte aligned, so a file
/// written here matches the one <c>safetensors.torch.save_file</c> writes for the same tensors
/// (metadata keys are written in ordinal order; the reference's order for them is unspecified).
/// </remarks>
public static class SafeTensors
{
    /// <summary>Largest header the reference implementation accepts, in bytes.</summary>
    public const int MaxHeaderBytes = 100_000_000;

    private const string MetadataKey = "__metadata__";

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Reads a whole safetensors file.</summary>
    /// <param name="path">The file to read.</param>
    /// <returns>The tensors in file order and the <c>__metadata__</c> map (empty if absent).</returns>
    /// <exception cref="TensorFileException">The file is not a valid safetensors file, or uses a dtype NeuralCore does not read.</exception>
    public static SafeTensorsFile Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16, FileOptions.SequentialScan);
        return Read(stream, path);
    }

    /// <summary>Reads a whole safetensors file from <paramref name="stream"/>, from its current position to its end.</summary>
    /// <param name="stream">The stream to read. A stream that cannot seek is first copied to memory.</param>
    /// <param name="nameForMessages">What to call the stream in error messages (a path, a URL, an entry name).</param>
    /// <returns>The tensors in file order and the <c>__metadata__</c> map (empty if absent).</returns>
    /// <exception cref="TensorFileException">The stream does not hold a valid safetensors file, or uses a dtype NeuralCore does not read.</exception>
    public static SafeTensorsFile Read(Stream stream, string nameForMessages)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(nameForMessages);
        if (stream.CanSeek)
        {
            return ReadSeekable(stream, nameForMessages);
        }
        // NOTE: the length must be known before the header is trusted, or a corrupt header could make the
        // reader allocate gigabytes for data that is not there; copying bounds memory by the real size.
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        copy.Position = 0;
        return ReadSeekable(copy, nameForMessages);
    }

    /// <summary>
    /// Writes a safetensors file atomically: the data goes to a temporary file in the same folder, is flushed
    /// to disk, and only then replaces <paramref name="path"/>, so a crash or an exception (including one thrown
    /// by <paramref name="tensors"/> while it is enumerated) never leaves a half-written file in place of a good one.
    /// </summary>
    /// <param name="path">The file to create or replace. Its folder must exist.</param>
    /// <param name="tensors">Name/array pairs; names must be unique and must not be <c>__metadata__</c>. Enumerated once.</param>
    /// <param name="metadata">Optional string map stored as <c>__metadata__</c>; omitted from the file when null or empty.</param>
    /// <exception cref="ArgumentException">A name is repeated or reserved, or the header would exceed <see cref="MaxHeaderBytes"/>.</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, RawTensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        AtomicFile.Write(path, stream => Write(stream, tensors, metadata));
    }

    /// <summary>Writes a safetensors file to <paramref name="stream"/> at its current position.</summary>
    /// <param name="stream">A writable stream; it is not closed.</param>
    /// <param name="tensors">Name/array pairs; names must be unique and must not be <c>__metadata__</c>. Enumerated once.</param>
    /// <param name="metadata">Optional string map stored as <c>__metadata__</c>; omitted from the file when null or empty.</param>
    /// <exception cref="ArgumentException">A name is repeated or reserved, or the header would exceed <see cref="MaxHeaderBytes"/>.</exception>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, RawTensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(tensors);
        var ordered = OrderForWriting(tensors);
        byte[] header = BuildHeader(ordered, metadata);

        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        stream.Write(prefix);
        stream.Write(header);
        foreach (var (_, _, tensor) in ordered)
        {
            stream.Write(tensor.Data);
        }
    }

    /// <summary>Materializes, validates and sorts the tensors into the reference writer's layout order.</summary>
    private static List<(string Name, byte[] Utf8Name, RawTensor Tensor)> OrderForWriting(IEnumerable<KeyValuePair<string, RawTensor>> tensors)
    {
        var list = new List<(string Name, byte[] Utf8Name, RawTensor Tensor)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in tensors)
        {
            if (name is null)
            {
                throw new ArgumentException("A tensor name is null; every tensor needs a name.", nameof(tensors));
            }
            if (tensor is null)
            {
                throw new ArgumentException($"Tensor '{name}' is null.", nameof(tensors));
            }
            if (name == MetadataKey)
            {
                throw new ArgumentException(
                    $"'{MetadataKey}' is reserved by the safetensors format for the metadata map; rename the tensor.", nameof(tensors));
            }
            if (!seen.Add(name))
            {
                throw new ArgumentException($"Tensor name '{name}' appears twice; names in a safetensors file must be unique.", nameof(tensors));
            }
            list.Add((name, EncodeName(name, "Tensor name"), tensor));
        }
        list.Sort(static (a, b) =>
        {
            int byType = b.Tensor.ElementType.SafeTensorsWriteRank().CompareTo(a.Tensor.ElementType.SafeTensorsWriteRank());
            return byType != 0 ? byType : a.Utf8Name.AsSpan().SequenceCompareTo(b.Utf8Name);
        });
        return list;
    }

    /// <summary>Serializes the header JSON compactly, as the reference does, padded with spaces to a multiple of 8 bytes.</summary>
    private static byte[] BuildHeader(List<(string Name, byte[] Utf8Name, RawTensor Tensor)> ordered, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        // NOTE: the relaxed encoder leaves non-ASCII text and characters such as '<' and '+' unescaped, like the reference.
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(MetadataKey);
                foreach (var (key, value) in metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    if (value is null)
                    {
                        throw new ArgumentException($"Metadata value for key '{key}' is null; safetensors metadata values must be strings.", nameof(metadata));
                    }
                    EncodeName(key, "Metadata key");
                    EncodeName(value, $"Metadata value for key '{key}'");
                    json.WriteString(key, value);
                }
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, _, tensor) in ordered)
            {
                json.WriteStartObject(name);
                json.WriteString("dtype", tensor.ElementType.SafeTensorsName());
                json.WriteStartArray("shape");
                foreach (int d in tensor.Shape)
                {
                    json.WriteNumberValue(d);
                }
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset += tensor.Data.LongLength;
                json.WriteNumberValue(offset);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        int length = buffer.WrittenCount;
        int padded = (length + 7) / 8 * 8;
        if (padded > MaxHeaderBytes)
        {
            throw new ArgumentException(
                $"The safetensors header would be {padded} bytes, more than the format's limit of {MaxHeaderBytes}; " +
                "use fewer tensors, shorter names or less metadata, or split the tensors over several files.", nameof(metadata));
        }
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(length).Fill((byte)' ');
        return header;
    }

    private static byte[] EncodeName(string text, string what)
    {
        try
        {
            return StrictUtf8.GetBytes(text);
        }
        catch (EncoderFallbackException e)
        {
            throw new ArgumentException($"{what} '{text}' is not valid Unicode text (it holds an unpaired surrogate) and cannot be stored as UTF-8.", e);
        }
    }

    /// <summary>One tensor entry of the header, before its data is read.</summary>
    private sealed record Entry(string Name, int HeaderIndex, TensorElementType Type, int[] Shape, long Begin, long End);

    private static SafeTensorsFile ReadSeekable(Stream stream, string name)
    {
        long available = stream.Length - stream.Position;
        if (available < 8)
        {
            throw Fail(name, $"it is {available} bytes long, shorter than the 8-byte header length that starts every safetensors file.");
        }
        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > MaxHeaderBytes)
        {
            throw Fail(name,
                $"its first 8 bytes give a header length of {headerLength} bytes, more than the format's limit of {MaxHeaderBytes} " +
                "(the file is probably not safetensors, or is corrupt).");
        }
        if ((long)headerLength > available - 8)
        {
            throw Fail(name,
                $"its first 8 bytes give a header length of {headerLength} bytes, but only {available - 8} bytes follow " +
                "(the file is truncated or not safetensors).");
        }
        var header = new byte[headerLength];
        stream.ReadExactly(header);
        long bufferLength = available - 8 - (long)headerLength;

        var (entries, metadata) = ParseHeader(header, name);
        CheckLayout(entries, bufferLength, name);

        var tensors = new List<KeyValuePair<string, RawTensor>>(entries.Count);
        foreach (var entry in entries)
        {
            var data = new byte[entry.End - entry.Begin];
            stream.ReadExactly(data);
            tensors.Add(new(entry.Name, new RawTensor(entry.Type, entry.Shape, data)));
        }
        return new SafeTensorsFile(name, tensors, metadata);
    }

    /// <summary>Parses the header JSON into entries sorted by data offset (stable) and the metadata map.</summary>
    private static (List<Entry> Entries, Dictionary<string, string> Metadata) ParseHeader(byte[] header, string name)
    {
        if (!Utf8.IsValid(header))
        {
            throw Fail(name, "its header is not valid UTF-8 text.");
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw Fail(name, $"its header is not valid JSON ({e.Message}).", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw Fail(name, $"its header must be a JSON object mapping tensor names to entries, but it is a JSON {Describe(root.ValueKind)}.");
            }
            var entries = new List<Entry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in root.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                {
                    throw Fail(name, $"its header lists '{property.Name}' more than once; names must be unique.");
                }
                if (property.Name == MetadataKey)
                {
                    ParseMetadata(property.Value, metadata, name);
                }
                else
                {
                    entries.Add(ParseEntry(property.Name, entries.Count, property.Value, name));
                }
            }
            entries.Sort(static (a, b) =>
            {
                int c = a.Begin.CompareTo(b.Begin);
                if (c == 0)
                {
                    c = a.End.CompareTo(b.End);
                }
                return c != 0 ? c : a.HeaderIndex.CompareTo(b.HeaderIndex);
            });
            return (entries, metadata);
        }
    }

    private static void ParseMetadata(JsonElement value, Dictionary<string, string> metadata, string name)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return;
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Fail(name, $"its '{MetadataKey}' must be a JSON object of string values, but it is a JSON {Describe(value.ValueKind)}.");
        }
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw Fail(name,
                    $"its '{MetadataKey}' value for key '{item.Name}' is a JSON {Describe(item.Value.ValueKind)} ({item.Value.GetRawText()}); " +
                    "safetensors metadata values must be strings (store numbers and lists as text, e.g. \"42\").");
            }
            if (!metadata.TryAdd(item.Name, item.Value.GetString()!))
            {
                throw Fail(name, $"its '{MetadataKey}' lists key '{item.Name}' more than once; keys must be unique.");
            }
        }
    }

    private static Entry ParseEntry(string tensorName, int headerIndex, JsonElement value, string name)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Fail(name,
                $"the header entry for tensor '{tensorName}' must be an object with \"dtype\", \"shape\" and \"data_offsets\", " +
                $"but it is a JSON {Describe(value.ValueKind)}.");
        }
        if (!value.TryGetProperty("dtype", out var dtypeElement))
        {
            throw Fail(name, $"the header entry for tensor '{tensorName}' has no \"dtype\".");
        }
        if (!value.TryGetProperty("shape", out var shapeElement))
        {
            throw Fail(name, $"the header entry for tensor '{tensorName}' has no \"shape\".");
        }
        if (!value.TryGetProperty("data_offsets", out var offsetsElement))
        {
            throw Fail(name, $"the header entry for tensor '{tensorName}' has no \"data_offsets\".");
        }

        if (dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw Fail(name, $"tensor '{tensorName}' has a \"dtype\" that is a JSON {Describe(dtypeElement.ValueKind)}, not a string such as \"F32\".");
        }
        string dtypeName = dtypeElement.GetString()!;
        if (!TensorElementTypeExtensions.TryParseSafeTensorsName(dtypeName, out var type))
        {
            string supported = string.Join(", ", Enum.GetValues<TensorElementType>().Select(t => t.SafeTensorsName()));
            throw Fail(name,
                $"tensor '{tensorName}' has dtype \"{dtypeName}\", which NeuralCore does not read (supported: {supported}). " +
                "Convert the tensor before saving, e.g. tensor.to(torch.float32) in PyTorch.");
        }

        var shape = ReadIntegers(shapeElement, tensorName, "shape", name);
        var dims = new int[shape.Length];
        long count = 1;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] < 0)
            {
                throw Fail(name, $"tensor '{tensorName}' has shape [{string.Join(", ", shape)}] with a negative dimension.");
            }
            if (shape[i] > int.MaxValue)
            {
                throw Fail(name, $"tensor '{tensorName}' has shape [{string.Join(", ", shape)}]; NeuralCore dimensions must be at most {int.MaxValue}.");
            }
            dims[i] = (int)shape[i];
            count = count == 0 || dims[i] == 0 ? 0 : MultiplyOrMax(count, dims[i]);
        }
        long byteCount = MultiplyOrMax(count, type.ElementSize());
        if (byteCount > Array.MaxLength)
        {
            throw Fail(name,
                $"tensor '{tensorName}' ({dtypeName}, shape [{string.Join(", ", shape)}]) has {(byteCount == long.MaxValue ? "more than 2^63" : byteCount.ToString())} bytes; " +
                $"NeuralCore holds each tensor in one .NET array of at most {Array.MaxLength} bytes.");
        }

        var offsets = ReadIntegers(offsetsElement, tensorName, "data_offsets", name);
        if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < 0)
        {
            throw Fail(name, $"tensor '{tensorName}' has data_offsets [{string.Join(", ", offsets)}]; expected two non-negative byte offsets [begin, end].");
        }
        if (offsets[1] < offsets[0])
        {
            throw Fail(name, $"tensor '{tensorName}' has data_offsets [{offsets[0]}, {offsets[1]}], which end before they begin.");
        }
        if (offsets[1] - offsets[0] != byteCount)
        {
            throw Fail(name,
                $"tensor '{tensorName}' is {dtypeName} with shape [{string.Join(", ", shape)}], which needs {byteCount} bytes, " +
                $"but its data_offsets [{offsets[0]}, {offsets[1]}] span {offsets[1] - offsets[0]} bytes.");
        }
        return new Entry(tensorName, headerIndex, type, dims, offsets[0], offsets[1]);
    }

    /// <summary>Checks that the sorted entries tile the data buffer exactly, as the reference reader requires.</summary>
    private static void CheckLayout(List<Entry> entries, long bufferLength, string name)
    {
        long expectedBegin = 0;
        Entry? previous = null;
        foreach (var entry in entries)
        {
            if (entry.Begin < expectedBegin)
            {
                throw Fail(name,
                    $"the data of tensor '{entry.Name}' (data_offsets [{entry.Begin}, {entry.End}]) overlaps the data of tensor " +
                    $"'{previous!.Name}' (data_offsets [{previous.Begin}, {previous.End}]).");
            }
            if (entry.Begin > expectedBegin)
            {
                throw Fail(name,
                    $"bytes {expectedBegin} to {entry.Begin} of the data buffer, before tensor '{entry.Name}', belong to no tensor; " +
                    "safetensors requires the tensors' data_offsets to cover the buffer with no gaps.");
            }
            if (entry.End > bufferLength)
            {
                throw Fail(name,
                    $"tensor '{entry.Name}' has data_offsets [{entry.Begin}, {entry.End}], but the data buffer after the header is only " +
                    $"{bufferLength} bytes long (the file is truncated).");
            }
            expectedBegin = entry.End;
            previous = entry;
        }
        if (expectedBegin < bufferLength)
        {
            throw Fail(name,
                $"its last {bufferLength - expectedBegin} bytes, after the data of every tensor, belong to no tensor; " +
                "safetensors requires the tensors' data_offsets to cover the buffer up to the end of the file.");
        }
    }

    private static long[] ReadIntegers(JsonElement element, string tensorName, string field, string name)
    {
        if (element.ValueKind == JsonValueKind.Array)
        {
            var values = new long[element.GetArrayLength()];
            int i = 0;
            bool ok = true;
            foreach (var item in element.EnumerateArray())
            {
                ok &= item.ValueKind == JsonValueKind.Number && item.TryGetInt64(out values[i++]);
            }
            if (ok)
            {
                return values;
            }
        }
        throw Fail(name, $"tensor '{tensorName}' has \"{field}\": {element.GetRawText()}; expected a list of whole numbers.");
    }

    /// <summary>Multiplies two non-negative numbers, giving <see cref="long.MaxValue"/> on overflow (every caller rejects that as too large).</summary>
    private static long MultiplyOrMax(long a, long b) => a > long.MaxValue / b ? long.MaxValue : a * b;

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };

    private static TensorFileException Fail(string name, string problem, Exception? inner = null) =>
        new(name, $"'{name}' is not a valid safetensors file: {problem}", inner);
}
