using System.Buffers.Binary;
using System.Text;
using NeuralCore.IO;

namespace NeuralCore.Tests.IO;

public class NpyTests
{
    /// <summary>
    /// A version 1.0 file exactly as numpy.save lays it out: magic, version, 2-byte header length, the dict,
    /// NumPy's 21-digit growth allowance minus the digits of the first dimension, spaces up to a 64-byte
    /// boundary less one, and '\n'.
    /// </summary>
    private static byte[] NumpyStyleFile(string dict, string firstDim, byte[] data, byte major = 1)
    {
        int lengthBytes = major == 1 ? 2 : 4;
        string header = dict + (firstDim.Length > 0 ? new string(' ', 21 - firstDim.Length) : "");
        int prefix = 8 + lengthBytes;
        int total = (prefix + header.Length + 1 + 63) / 64 * 64;
        if (total - prefix - header.Length - 1 == 0)
        {
            total += 64;
        }
        string padded = header.PadRight(total - prefix - 1) + "\n";
        var file = new List<byte> { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', major, 0 };
        var length = new byte[lengthBytes];
        if (lengthBytes == 2)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(length, (ushort)padded.Length);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(length, (uint)padded.Length);
        }
        file.AddRange(length);
        file.AddRange(major == 3 ? Encoding.UTF8.GetBytes(padded) : Encoding.Latin1.GetBytes(padded));
        file.AddRange(data);
        return file.ToArray();
    }

    private static byte[] FloatBytes(params float[] values) => values.SelectMany(BitConverter.GetBytes).ToArray();

    [Fact]
    public void Read_FileLaidOutLikeNumpy()
    {
        byte[] file = NumpyStyleFile("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", "2", FloatBytes(0, 1, 2, 3, 4, 5));
        Assert.Equal(128, file.Length - 24);

        var tensor = Npy.Read(new MemoryStream(file), "numpy.npy");

        Assert.Equal(TensorElementType.Float32, tensor.ElementType);
        Assert.Equal([2, 3], tensor.ShapeToArray());
        Assert.Equal([0f, 1f, 2f, 3f, 4f, 5f], tensor.ToFloats());
    }

    [Fact]
    public void Write_ProducesExactlyNumpysBytes()
    {
        // numpy.save(np.arange(6, dtype='<f4').reshape(2, 3)): a 118-byte header after the 10-byte prefix.
        byte[] expected = NumpyStyleFile("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", "2", FloatBytes(0, 1, 2, 3, 4, 5));
        Assert.Equal(118, BinaryPrimitives.ReadUInt16LittleEndian(expected.AsSpan(8)));

        var stream = new MemoryStream();
        Npy.Write(stream, RawTensor.FromFloats([0, 1, 2, 3, 4, 5], 2, 3));

        Assert.Equal(expected, stream.ToArray());
    }

    [Theory]
    [InlineData(TensorElementType.Float64, "<f8", new int[0], "")]
    [InlineData(TensorElementType.UInt8, "|u1", new[] { 0 }, "0")]
    [InlineData(TensorElementType.Bool, "|b1", new[] { 2 }, "2")]
    [InlineData(TensorElementType.Int64, "<i8", new[] { 12345, 1 }, "12345")]
    [InlineData(TensorElementType.Int8, "|i1", new[] { 1, 2, 3 }, "1")]
    [InlineData(TensorElementType.Float16, "<f2", new[] { 4 }, "4")]
    [InlineData(TensorElementType.Int16, "<i2", new[] { 3 }, "3")]
    [InlineData(TensorElementType.Int32, "<i4", new[] { 2, 0, 5 }, "2")]
    public void Write_HeaderMatchesNumpy_ForEachTypeAndShape(TensorElementType type, string descr, int[] shape, string firstDim)
    {
        string shapeText = shape.Length switch
        {
            0 => "()",
            1 => $"({shape[0]},)",
            _ => $"({string.Join(", ", shape)})",
        };
        long count = shape.Aggregate(1L, (a, d) => a * d);
        var data = Enumerable.Range(0, (int)count * type.ElementSize()).Select(i => (byte)(i % 2)).ToArray();
        byte[] expected = NumpyStyleFile($"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shapeText}, }}", firstDim, data);

        var stream = new MemoryStream();
        Npy.Write(stream, new RawTensor(type, shape, data));

        Assert.Equal(expected, stream.ToArray());
        Assert.Equal(0, (stream.Length - data.Length) % 64);
    }

    public static TheoryData<TensorElementType> NpyTypes() =>
        new(Enum.GetValues<TensorElementType>().Where(t => t != TensorElementType.BFloat16));

    [Theory]
    [MemberData(nameof(NpyTypes))]
    public void RoundTrip_EveryElementTypeAndShape(TensorElementType type)
    {
        using var folder = new TempFolder();
        var random = new Random(99);
        int[][] shapes = [[], [0], [7], [2, 3], [2, 0, 3], [1, 2, 1, 2]];
        foreach (var shape in shapes)
        {
            long count = shape.Aggregate(1L, (a, d) => a * d);
            var data = new byte[count * type.ElementSize()];
            random.NextBytes(data);
            if (type == TensorElementType.Bool)
            {
                data = data.Select(b => (byte)(b & 1)).ToArray();
            }
            string path = folder.File($"{type}-{shape.Length}.npy");

            Npy.Write(path, new RawTensor(type, shape, data));
            var back = Npy.Read(path);

            Assert.Equal(type, back.ElementType);
            Assert.Equal(shape, back.ShapeToArray());
            Assert.Equal(data, back.Data);
        }
    }

    [Fact]
    public void RoundTrip_FloatBitsExactly()
    {
        uint[] bits = [0x7FC00001, 0xFFA00000, 0x7F800001, 0x80000000, 0x00000001, 0x807FFFFF];
        var stream = new MemoryStream();
        Npy.Write(stream, RawTensor.FromFloats(bits.Select(BitConverter.UInt32BitsToSingle).ToArray(), 6));
        stream.Position = 0;

        var back = Npy.Read(stream, "bits");

        Assert.Equal(bits, back.ToFloats().Select(BitConverter.SingleToUInt32Bits).ToArray());
    }

    [Fact]
    public void Write_RefusesBFloat16_AndLeavesTheOldFileIntact()
    {
        using var folder = new TempFolder();
        string path = folder.File("a.npy");
        Npy.Write(path, RawTensor.FromFloats([1f], 1));
        byte[] before = File.ReadAllBytes(path);

        var e = Assert.Throws<ArgumentException>(() => Npy.Write(path, new RawTensor(TensorElementType.BFloat16, [1], [0, 0x3F])));

        Assert.Contains("bfloat16", e.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(folder.Path));
    }

    [Fact]
    public void Write_UsesVersion2_WhenTheHeaderDoesNotFitVersion1()
    {
        // 30,000 dimensions of 1 make a header of about 90 kB, more than version 1.0's 65,535.
        var shape = Enumerable.Repeat(1, 30_000).ToArray();
        var stream = new MemoryStream();
        Npy.Write(stream, RawTensor.FromFloats([3f], shape));
        byte[] bytes = stream.ToArray();

        Assert.Equal(2, bytes[6]);
        uint headerLength = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
        Assert.Equal(0u, (12 + headerLength) % 64);
        Assert.Equal((byte)'\n', bytes[12 + (int)headerLength - 1]);
        var back = Npy.Read(new MemoryStream(bytes), "v2");
        Assert.Equal(30_000, back.Rank);
        Assert.Equal([3f], back.ToFloats());
    }

    [Fact]
    public void Read_Version2And3Headers()
    {
        byte[] data = FloatBytes(1.5f, -2f);
        var v2 = Npy.Read(new MemoryStream(NumpyStyleFile("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", "2", data, major: 2)), "v2");
        var v3 = Npy.Read(new MemoryStream(NumpyStyleFile("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", "2", data, major: 3)), "v3");

        Assert.Equal([1.5f, -2f], v2.ToFloats());
        Assert.Equal([1.5f, -2f], v3.ToFloats());
    }

    [Fact]
    public void Read_ConvertsBigEndianData()
    {
        byte[] floats = [0x3F, 0xC0, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00];
        var f = Npy.Read(new MemoryStream(NumpyStyleFile("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", "2", floats)), "be");
        byte[] longs = [0, 0, 0, 0, 0, 0, 1, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE];
        var l = Npy.Read(new MemoryStream(NumpyStyleFile("{'descr': '>i8', 'fortran_order': False, 'shape': (2,), }", "2", longs)), "be");

        Assert.Equal([1.5f, -2f], f.ToFloats());
        Assert.Equal(TensorElementType.Int64, l.ElementType);
        Assert.Equal([0x0102L, -2L], l.ToInt64());
    }

    [Theory]
    [InlineData("{\"descr\": \"<i4\", \"fortran_order\": False, \"shape\": (2,)}")]
    [InlineData("{'shape': (2L,), 'fortran_order': False, 'descr': '<i4'}")]
    [InlineData("{ 'descr' : '<i4' ,\n 'fortran_order' : False , 'shape' : ( 2 , ) , }")]
    [InlineData("{'descr': 'i4', 'fortran_order': False, 'shape': (2,), }")]
    [InlineData("{'descr': '<i4', 'fortran_order': True, 'shape': (2,), }")]
    public void Read_AcceptsHeaderVariantsPythonWouldEvaluateTheSame(string dict)
    {
        var tensor = Npy.Read(new MemoryStream(NumpyStyleFile(dict, "", [5, 0, 0, 0, 250, 255, 255, 255])), "variant");

        Assert.Equal([5, -6], tensor.ToInt32());
    }

    [Fact]
    public void Read_IgnoresBytesAfterTheData_AsNumpyDoes()
    {
        byte[] file = [.. NumpyStyleFile("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", "3", [1, 2, 3]), .. "garbage"u8];

        Assert.Equal(new byte[] { 1, 2, 3 }, Npy.Read(new MemoryStream(file), "extra").Data);
    }

    [Fact]
    public void Read_FromNonSeekableStream()
    {
        byte[] file = NumpyStyleFile("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", "", BitConverter.GetBytes(2.25));

        var scalar = Npy.Read(new NonSeekableStream(new MemoryStream(file)), "pipe");

        Assert.Equal(0, scalar.Rank);
        Assert.Equal([2.25f], scalar.ToFloats());
    }

    private static byte[] Header(string dict, int dataBytes = 0) => NumpyStyleFile(dict, "", new byte[dataBytes]);

    public static TheoryData<string, byte[], string> MalformedFiles() => new()
    {
        { "empty", [], "only 0 bytes long" },
        { "bad-magic", "PK\x03\x04 not npy"u8.ToArray(), "does not start with the NumPy magic" },
        { "short", [0x93, (byte)'N', (byte)'U', (byte)'M'], "only 4 bytes long" },
        { "version-4", [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 4, 0, 0, 0, 0, 0], "version 4.0" },
        { "version-1-1", [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 1, 0, 0], "version 1.1" },
        { "no-length", [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0, 5], "inside the header length" },
        { "header-past-end", [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0, 200, 0, (byte)'{'], "only 1 bytes follow" },
        { "huge-header", [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 2, 0, 0, 0, 0, 0x10], "more than the 1048576" },
        { "unclosed-dict", Header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), "), "not a Python dict literal" },
        { "not-a-dict", Header("['descr', '<f4']"), "not a Python dict literal" },
        { "code-in-header", Header("{'descr': __import__('os'), 'fortran_order': False, 'shape': ()}"), "not a Python dict literal" },
        { "deep-nesting", Header("{'descr': " + new string('(', 5000) + "}"), "nested more than 32 levels" },
        { "missing-key", Header("{'descr': '<f4', 'shape': (2,), }"), "has keys [descr, shape]" },
        { "extra-key", Header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}"), "exactly descr, fortran_order and shape" },
        { "unsupported-type", Header("{'descr': '<u4', 'fortran_order': False, 'shape': (2,), }"), "element type '<u4' is not one NeuralCore reads" },
        { "complex-type", Header("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }"), "element type '<c8'" },
        { "structured", Header("{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (2,), }"), "structured (record) arrays" },
        { "fortran-bool", Header("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }"), "expected True or False" },
        { "shape-list", Header("{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }"), "expected a tuple of integers" },
        { "shape-int", Header("{'descr': '<f4', 'fortran_order': False, 'shape': (2), }"), "expected a tuple of integers" },
        { "shape-float", Header("{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,), }"), "expected an integer" },
        { "negative-dim", Header("{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }"), "dimension outside" },
        { "fortran-2d", Header("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24), "Fortran (column-major) order" },
        { "too-large", Header("{'descr': '<f8', 'fortran_order': False, 'shape': (2147483647, 2147483647), }"), "larger than the" },
        { "truncated-data", Header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20), "needs 24 bytes of data, but only 20 bytes follow" },
        { "bad-utf8-v3", [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 3, 0, 4, 0, 0, 0, (byte)'{', 0xFF, (byte)'}', (byte)'\n'], "not valid UTF-8" },
    };

    [Theory]
    [MemberData(nameof(MalformedFiles))]
    public void Read_RejectsMalformedFile_NamingTheFileAndTheProblem(string name, byte[] bytes, string phrase)
    {
        using var folder = new TempFolder();
        string path = folder.File($"{name}.npy");
        File.WriteAllBytes(path, bytes);

        var e = Assert.Throws<TensorFileException>(() => Npy.Read(path));

        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
        Assert.Contains(phrase, e.Message);
    }
}
