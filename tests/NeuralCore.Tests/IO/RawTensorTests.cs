using NeuralCore.IO;

namespace NeuralCore.Tests.IO;

public class RawTensorTests
{
    [Fact]
    public void Constructor_RejectsByteCountThatDoesNotMatchShape()
    {
        var e = Assert.Throws<ArgumentException>(() => new RawTensor(TensorElementType.Float32, [2, 3], new byte[20]));
        Assert.Contains("needs 24 bytes", e.Message);
    }

    [Fact]
    public void Constructor_RejectsNegativeDimension()
    {
        var e = Assert.Throws<ArgumentException>(() => new RawTensor(TensorElementType.UInt8, [2, -1], new byte[0]));
        Assert.Contains("negative", e.Message);
    }

    [Fact]
    public void Scalar_HasOneElement_AndZeroSizedDimensionHasNone()
    {
        var scalar = RawTensor.FromFloats([7f]);
        Assert.Equal(0, scalar.Rank);
        Assert.Equal(1, scalar.ElementCount);
        var empty = RawTensor.FromInt64([], 3, 0, 2);
        Assert.Equal(0, empty.ElementCount);
        Assert.Equal([3, 0, 2], empty.ShapeToArray());
    }

    [Fact]
    public void ToFloats_WidensHalfAndBFloat16Exactly()
    {
        var half = new RawTensor(TensorElementType.Float16, [3], [0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00]);
        Assert.Equal([1f, -2f, (float)BitConverter.UInt16BitsToHalf(1)], half.ToFloats());
        // bfloat16 0x3FC0 is the top half of 1.5f (0x3FC00000).
        var bf16 = new RawTensor(TensorElementType.BFloat16, [2], [0xC0, 0x3F, 0x80, 0xBF]);
        Assert.Equal([1.5f, -1f], bf16.ToFloats());
    }

    [Fact]
    public void ToFloats_ConvertsDoublesIntegersAndBools()
    {
        Assert.Equal([0.1f, -2.5f], RawTensor.FromDoubles([0.1, -2.5], 2).ToFloats());
        Assert.Equal([-3f, 4f], RawTensor.FromInt64([-3, 4], 2).ToFloats());
        Assert.Equal([0f, 1f, 1f], new RawTensor(TensorElementType.Bool, [3], [0, 1, 2]).ToFloats());
        Assert.Equal([255f, 0f], new RawTensor(TensorElementType.UInt8, [2], [255, 0]).ToFloats());
        Assert.Equal([-1f, 5f], new RawTensor(TensorElementType.Int8, [2], [0xFF, 5]).ToFloats());
    }

    [Fact]
    public void ToInt64_WidensIntegers_AndRefusesFloats()
    {
        Assert.Equal([-2L, 300L], new RawTensor(TensorElementType.Int16, [2], [0xFE, 0xFF, 0x2C, 0x01]).ToInt64());
        Assert.Equal([7L, -8L], RawTensor.FromInt32([7, -8], 2).ToInt64());
        var e = Assert.Throws<InvalidOperationException>(() => RawTensor.FromFloats([1.5f], 1).ToInt64());
        Assert.Contains("ToFloats", e.Message);
    }

    [Fact]
    public void ToInt32_NarrowsInt64InRange_AndRefusesOutOfRange()
    {
        Assert.Equal([-5, 6], RawTensor.FromInt64([-5, 6], 2).ToInt32());
        var e = Assert.Throws<InvalidOperationException>(() => RawTensor.FromInt64([1, 1L << 40], 2).ToInt32());
        Assert.Contains("Element 1", e.Message);
    }

    [Fact]
    public void FromFloats_KeepsEveryBit()
    {
        uint[] bits = [0x7FC00001, 0xFFA00000, 0x7F800001, 0x80000000, 0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0xFF800000];
        var floats = bits.Select(BitConverter.UInt32BitsToSingle).ToArray();
        var back = RawTensor.FromFloats(floats, bits.Length).ToFloats();
        Assert.Equal(bits, back.Select(BitConverter.SingleToUInt32Bits).ToArray());
    }
}
