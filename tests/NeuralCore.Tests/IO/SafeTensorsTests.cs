using System.Buffers.Binary;
using System.Text;
using NeuralCore.IO;

namespace NeuralCore.Tests.IO;

public class SafeTensorsTests
{
    private static readonly int[][] Shapes = [[], [0], [5], [2, 3], [1, 0, 4], [2, 1, 3, 1]];

    public static TheoryData<TensorElementType> ElementTypes() => new(Enum.GetValues<TensorElementType>());

    [Theory]
    [MemberData(nameof(ElementTypes))]
    public void RoundTrip_EveryElementTypeAndShape(TensorElementType type)
    {
        using var folder = new TempFolder();
        var random = new Random(1234);
        var tensors = Shapes.Select((shape, i) =>
        {
            long count = shape.Aggregate(1L, (a, d) => a * d);
            var data = new byte[count * type.ElementSize()];
            random.NextBytes(data);
            return new KeyValuePair<string, RawTensor>($"t{i}", new RawTensor(type, shape, data));
        }).ToList();

        string path = folder.File("all.safetensors");
        SafeTensors.Write(path, tensors);
        var file = SafeTensors.Read(path);

        Assert.Equal(tensors.Count, file.Count);
        foreach (var (name, expected) in tensors)
        {
            var actual = file[name];
            Assert.Equal(type, actual.ElementType);
            Assert.Equal(expected.ShapeToArray(), actual.ShapeToArray());
            Assert.Equal(expected.Data, actual.Data);
        }
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void RoundTrip_KeepsMetadata_AndMixedTypes()
    {
        using var folder = new TempFolder();
        string path = folder.File("model.safetensors");
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["widths"] = "[19, 38, 76]", ["note"] = "ünïcode <&> \"quoted\"\n" };
        var tensors = new Dictionary<string, RawTensor>
        {
            ["conv.weight"] = RawTensor.FromFloats([1, 2, 3, 4], 2, 2),
            ["bn.num_batches_tracked"] = RawTensor.FromInt64([42]),
            ["mask"] = new RawTensor(TensorElementType.Bool, [3], [1, 0, 1]),
        };

        SafeTensors.Write(path, tensors, metadata);
        var file = SafeTensors.Read(path);

        Assert.Equal(metadata, file.Metadata.ToDictionary());
        Assert.Equal([1f, 2f, 3f, 4f], file["conv.weight"].ToFloats());
        Assert.Equal([42L], file["bn.num_batches_tracked"].ToInt64());
        Assert.Equal(new byte[] { 1, 0, 1 }, file["mask"].Data);
    }

    [Fact]
    public void RoundTrip_FloatBitsExactly_IncludingNaNPayloadsNegativeZeroAndSubnormals()
    {
        using var folder = new TempFolder();
        uint[] bits = [0x7FC00001, 0xFFA00000, 0x7F800001, 0x80000000, 0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0xFF800000, 0x3F800000];
        var floats = bits.Select(BitConverter.UInt32BitsToSingle).ToArray();
        ulong[] doubleBits = [0x7FF0000000000001, 0xFFF8000000000123, 0x8000000000000000, 0x0000000000000001];
        string path = folder.File("bits.safetensors");

        SafeTensors.Write(path, new Dictionary<string, RawTensor>
        {
            ["f"] = RawTensor.FromFloats(floats, 3, 3),
            ["d"] = RawTensor.FromDoubles(doubleBits.Select(BitConverter.UInt64BitsToDouble).ToArray(), 4),
        });
        var file = SafeTensors.Read(path);

        Assert.Equal(bits, file["f"].ToFloats().Select(BitConverter.SingleToUInt32Bits).ToArray());
        Assert.Equal(doubleBits, BytesAs<ulong>(file["d"].Data));
    }

    [Fact]
    public void Write_ProducesTheReferenceLayout_ForOneTensor()
    {
        // The layout the reference writer gives {"attn.0": float32 [[0, 1, 2], [3, 4, 5]] with shape (1, 2, 3)}:
        // compact JSON, header padded with spaces to a multiple of 8 (here 64 already), then the data.
        string json = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
        Assert.Equal(64, json.Length);
        var expected = new List<byte> { 64, 0, 0, 0, 0, 0, 0, 0 };
        expected.AddRange(Encoding.ASCII.GetBytes(json));
        foreach (float v in new float[] { 0, 1, 2, 3, 4, 5 })
        {
            expected.AddRange(BitConverter.GetBytes(v));
        }

        var written = WriteToBytes(new Dictionary<string, RawTensor> { ["attn.0"] = RawTensor.FromFloats([0, 1, 2, 3, 4, 5], 1, 2, 3) });

        Assert.Equal(expected.ToArray(), written);
    }

    [Fact]
    public void Write_PadsHeaderWithSpacesToEightBytes()
    {
        string json = "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}";
        Assert.Equal(65, json.Length);
        var written = WriteToBytes(new Dictionary<string, RawTensor> { ["attn0"] = RawTensor.FromFloats([0, 1, 2, 3, 4, 5], 1, 1, 2, 3) });

        Assert.Equal(72UL, BinaryPrimitives.ReadUInt64LittleEndian(written));
        Assert.Equal(json + new string(' ', 7), Encoding.ASCII.GetString(written, 8, 72));
        Assert.Equal(8 + 72 + 24, written.Length);
    }

    [Fact]
    public void Write_EmptyWithMetadata_MatchesReferenceBytes()
    {
        Assert.Equal(
            "\b\0\0\0\0\0\0\0{}      "u8.ToArray(),
            WriteToBytes([]));
        var withMetadata = WriteToBytes([], new Dictionary<string, string> { ["framework"] = "pt" });
        Assert.Equal(
            "(\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     "u8.ToArray(),
            withMetadata);
    }

    [Fact]
    public void Write_OrdersTensorsLikeTheReference_ByDtypeThenName()
    {
        var written = WriteToBytes(new Dictionary<string, RawTensor>
        {
            ["b"] = RawTensor.FromFloats([1f], 1),
            ["flag"] = new RawTensor(TensorElementType.Bool, [1], [1]),
            ["a"] = RawTensor.FromFloats([2f], 1),
            ["step"] = RawTensor.FromInt64([3], 1),
            ["half"] = new RawTensor(TensorElementType.Float16, [1], [0, 0x3C]),
            ["wide"] = RawTensor.FromDoubles([4.0], 1),
        });

        var file = SafeTensors.Read(new MemoryStream(written), "memory");

        Assert.Equal(["step", "wide", "a", "b", "half", "flag"], file.Names);
        string header = Encoding.UTF8.GetString(written, 8, (int)BinaryPrimitives.ReadUInt64LittleEndian(written));
        Assert.StartsWith("{\"step\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},\"wide\":", header);
    }

    [Fact]
    public void Read_HandMadeFile_WithHeaderOrderDifferentFromDataOrder()
    {
        // Older writers listed entries by name; the data order decides the file order.
        string json = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[4,12]}," +
                      "\"b\":{\"dtype\":\"U8\",\"shape\":[2,2],\"data_offsets\":[0,4]},\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[12,12]}}";
        byte[] data = [1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF, 7, 0, 0, 0];
        using var folder = new TempFolder();
        string path = folder.File("hand.safetensors");
        File.WriteAllBytes(path, BuildFile(json, data));

        var file = SafeTensors.Read(path);

        Assert.Equal(["b", "a", "e"], file.Names);
        Assert.Equal([-1, 7], file["a"].ToInt32());
        Assert.Equal([2, 2], file["b"].ShapeToArray());
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, file["b"].Data);
        Assert.Equal(0, file["e"].ElementCount);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.True(file.TryGet("a", out _));
        Assert.False(file.TryGet("A", out _));
    }

    [Fact]
    public void Read_FromNonSeekableStream()
    {
        var bytes = WriteToBytes(new Dictionary<string, RawTensor> { ["x"] = RawTensor.FromInt32([1, 2, 3], 3) });

        var file = SafeTensors.Read(new NonSeekableStream(new MemoryStream(bytes)), "pipe");

        Assert.Equal([1, 2, 3], file["x"].ToInt32());
    }

    [Fact]
    public void Indexer_NamesTheFileAndListsTheTensors_WhenNameIsMissing()
    {
        var file = SafeTensors.Read(new MemoryStream(WriteToBytes(new Dictionary<string, RawTensor> { ["present"] = RawTensor.FromFloats([1f]) })), "weights.safetensors");

        var e = Assert.Throws<KeyNotFoundException>(() => file["absent"]);
        Assert.Contains("weights.safetensors", e.Message);
        Assert.Contains("'present'", e.Message);
    }

    [Fact]
    public void Write_RejectsDuplicateAndReservedNames()
    {
        var tensor = RawTensor.FromFloats([1f]);
        var duplicate = Assert.Throws<ArgumentException>(() => WriteToBytes([new("w", tensor), new("w", tensor)]));
        Assert.Contains("twice", duplicate.Message);
        var reserved = Assert.Throws<ArgumentException>(() => WriteToBytes([new("__metadata__", tensor)]));
        Assert.Contains("reserved", reserved.Message);
    }

    [Fact]
    public void Write_LeavesTheOldFileIntact_WhenTheTensorsThrowHalfway()
    {
        using var folder = new TempFolder();
        string path = folder.File("checkpoint.safetensors");
        SafeTensors.Write(path, new Dictionary<string, RawTensor> { ["good"] = RawTensor.FromFloats([1, 2, 3], 3) });
        byte[] before = File.ReadAllBytes(path);

        static IEnumerable<KeyValuePair<string, RawTensor>> ThrowsHalfway()
        {
            yield return new("first", RawTensor.FromFloats(new float[1000], 1000));
            throw new InvalidOperationException("simulated failure while producing tensors");
        }

        var e = Assert.Throws<InvalidOperationException>(() => SafeTensors.Write(path, ThrowsHalfway()));
        Assert.Contains("simulated", e.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(folder.Path));
        Assert.Equal([1f, 2f, 3f], SafeTensors.Read(path)["good"].ToFloats());
    }

    [Fact]
    public void Write_ReplacesAnExistingFile()
    {
        using var folder = new TempFolder();
        string path = folder.File("w.safetensors");
        SafeTensors.Write(path, new Dictionary<string, RawTensor> { ["a"] = RawTensor.FromFloats([1f]) });
        SafeTensors.Write(path, new Dictionary<string, RawTensor> { ["b"] = RawTensor.FromFloats([2f]) });

        Assert.Equal(["b"], SafeTensors.Read(path).Names);
        Assert.Single(Directory.GetFiles(folder.Path));
    }

    private const string F32Two = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

    public static TheoryData<string, byte[], string> MalformedFiles() => new()
    {
        { "short", [1, 2, 3], "shorter than the 8-byte" },
        { "huge-header", [0x00, 0xE1, 0xF5, 0x05, 0x01, 0, 0, 0, (byte)'{', (byte)'}'], "limit of 100000000" },
        { "header-past-end", [100, 0, 0, 0, 0, 0, 0, 0, (byte)'{', (byte)'}'], "only 2 bytes follow" },
        { "not-utf8", BuildFile("{\"a\xff\":1}", [], latin1: true), "not valid UTF-8" },
        { "not-json", BuildFile("{\"a\":", []), "not valid JSON" },
        { "not-object", BuildFile("[1, 2]", []), "must be a JSON object" },
        { "entry-not-object", BuildFile("{\"a\":5}", []), "must be an object" },
        { "no-dtype", BuildFile("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", new byte[8]), "has no \"dtype\"" },
        { "no-shape", BuildFile("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", new byte[8]), "has no \"shape\"" },
        { "no-offsets", BuildFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", new byte[8]), "has no \"data_offsets\"" },
        { "unknown-dtype", BuildFile("{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,2]}}", new byte[2]), "dtype \"Q7\", which NeuralCore does not read" },
        { "unsupported-dtype", BuildFile("{\"a\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[0,2]}}", new byte[2]), "dtype \"U16\", which NeuralCore does not read" },
        { "negative-dim", BuildFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,8]}}", new byte[8]), "negative dimension" },
        { "fractional-dim", BuildFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", new byte[8]), "list of whole numbers" },
        { "shape-not-list", BuildFile("{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", new byte[8]), "list of whole numbers" },
        { "three-offsets", BuildFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", new byte[8]), "two non-negative byte offsets" },
        { "offsets-reversed", BuildFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", new byte[8]), "end before they begin" },
        { "wrong-byte-count", BuildFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", new byte[12]), "needs 8 bytes" },
        { "overflowing-shape", BuildFile("{\"a\":{\"dtype\":\"F64\",\"shape\":[2147483647,2147483647,2147483647],\"data_offsets\":[0,8]}}", new byte[8]), "more than 2^63" },
        { "end-past-buffer", BuildFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", new byte[8]), "truncated" },
        { "overlap", BuildFile("{\"a\":" + F32Two + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", new byte[12]), "overlaps the data of tensor 'a'" },
        { "gap-between", BuildFile("{\"a\":" + F32Two + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", new byte[20]), "bytes 8 to 12 of the data buffer, before tensor 'b', belong to no tensor" },
        { "gap-at-start", BuildFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", new byte[12]), "bytes 0 to 4 of the data buffer" },
        { "trailing-bytes", BuildFile("{\"a\":" + F32Two + "}", new byte[12]), "last 4 bytes, after the data of every tensor, belong to no tensor" },
        { "duplicate-name", BuildFile("{\"a\":" + F32Two + ",\"a\":" + F32Two + "}", new byte[8]), "lists 'a' more than once" },
        { "metadata-number", BuildFile("{\"__metadata__\":{\"epochs\":50}}", []), "metadata values must be strings" },
        { "metadata-not-object", BuildFile("{\"__metadata__\":\"pt\"}", []), "must be a JSON object of string values" },
    };

    [Theory]
    [MemberData(nameof(MalformedFiles))]
    public void Read_RejectsMalformedFile_NamingTheFileAndTheProblem(string name, byte[] bytes, string phrase)
    {
        using var folder = new TempFolder();
        string path = folder.File($"{name}.safetensors");
        File.WriteAllBytes(path, bytes);

        var e = Assert.Throws<TensorFileException>(() => SafeTensors.Read(path));

        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
        Assert.Contains(phrase, e.Message);
    }

    [Fact]
    public void Read_RejectsTruncatedCopyOfAValidFile_AtEveryLength()
    {
        var bytes = WriteToBytes(new Dictionary<string, RawTensor>
        {
            ["a"] = RawTensor.FromFloats([1, 2, 3], 3),
            ["b"] = RawTensor.FromInt64([4], 1),
        });
        for (int length = 0; length < bytes.Length; length++)
        {
            var e = Assert.Throws<TensorFileException>(() => SafeTensors.Read(new MemoryStream(bytes, 0, length), "cut"));
            Assert.Contains("'cut'", e.Message);
        }
    }

    private static byte[] WriteToBytes(IEnumerable<KeyValuePair<string, RawTensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var stream = new MemoryStream();
        SafeTensors.Write(stream, tensors, metadata);
        return stream.ToArray();
    }

    /// <summary>An 8-byte header length, the header (padded with spaces to 8 bytes) and the data, by the format's definition.</summary>
    private static byte[] BuildFile(string json, byte[] data, bool latin1 = false)
    {
        var header = new List<byte>(latin1 ? Encoding.Latin1.GetBytes(json) : Encoding.UTF8.GetBytes(json));
        while (header.Count % 8 != 0)
        {
            header.Add((byte)' ');
        }
        var file = new byte[8 + header.Count + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Count);
        header.CopyTo(file, 8);
        data.CopyTo(file, 8 + header.Count);
        return file;
    }

    private static T[] BytesAs<T>(byte[] bytes) where T : unmanaged =>
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(bytes).ToArray();
}
