using System.Runtime.InteropServices;

namespace NeuralCore.IO;

/// <summary>
/// One array exactly as a tensor file stores it: an element type, a shape (C order, last dimension
/// fastest) and the raw little-endian bytes. This is the exchange type between the file formats and
/// <c>Tensor</c>; it does no arithmetic.
/// </summary>
/// <remarks>
/// NOTE: conversions reinterpret the bytes in host byte order; every platform .NET runs NeuralCore on
/// is little-endian, which is also the byte order of both file formats.
/// </remarks>
public sealed class RawTensor
{
    private readonly int[] _shape;

    /// <summary>Wraps <paramref name="data"/> (not copied) as an array of the given type and shape.</summary>
    /// <param name="elementType">Type of each element.</param>
    /// <param name="shape">Dimensions, outermost first; empty for a scalar. Each must be zero or more. Copied.</param>
    /// <param name="data">Raw little-endian bytes, exactly product(shape) * element size of them. Kept, not copied.</param>
    /// <exception cref="ArgumentException">A dimension is negative or the byte count does not match the shape.</exception>
    public RawTensor(TensorElementType elementType, ReadOnlySpan<int> shape, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        int elementSize = elementType.ElementSize();
        long count = 1;
        foreach (int d in shape)
        {
            if (d < 0)
            {
                throw new ArgumentException(
                    $"Shape [{string.Join(", ", shape.ToArray())}] has a negative dimension; every dimension must be zero or more.",
                    nameof(shape));
            }
            if (d != 0 && count > Array.MaxLength / d)
            {
                throw new ArgumentException(
                    $"Shape [{string.Join(", ", shape.ToArray())}] has more elements than fit in one .NET array.", nameof(shape));
            }
            count *= d;
        }
        long expectedBytes = count * elementSize;
        if (data.LongLength != expectedBytes)
        {
            throw new ArgumentException(
                $"A {elementType} array of shape [{string.Join(", ", shape.ToArray())}] needs {expectedBytes} bytes " +
                $"({count} elements x {elementSize} bytes), but {data.LongLength} bytes were given.",
                nameof(data));
        }
        ElementType = elementType;
        _shape = shape.ToArray();
        Data = data;
        ElementCount = count;
    }

    /// <summary>Type of each element.</summary>
    public TensorElementType ElementType { get; }

    /// <summary>Dimensions, outermost first; empty for a scalar.</summary>
    public IReadOnlyList<int> Shape => _shape;

    /// <summary>Number of dimensions (0 for a scalar).</summary>
    public int Rank => _shape.Length;

    /// <summary>Number of elements: the product of <see cref="Shape"/> (1 for a scalar, 0 when a dimension is 0).</summary>
    public long ElementCount { get; }

    /// <summary>
    /// The raw little-endian bytes in C order. This is the array the tensor was created with or read into,
    /// not a copy: changing it changes this tensor.
    /// </summary>
    public byte[] Data { get; }

    /// <summary>A copy of the shape as a new array.</summary>
    public int[] ShapeToArray() => (int[])_shape.Clone();

    /// <summary>Creates a <see cref="TensorElementType.Float32"/> array from a copy of <paramref name="data"/>.</summary>
    /// <param name="data">Elements in C order.</param>
    /// <param name="shape">Dimensions; their product must equal <c>data.Length</c>.</param>
    public static RawTensor FromFloats(float[] data, params int[] shape) =>
        FromValues<float>(TensorElementType.Float32, data, shape);

    /// <summary>Creates a <see cref="TensorElementType.Float64"/> array from a copy of <paramref name="data"/>.</summary>
    /// <param name="data">Elements in C order.</param>
    /// <param name="shape">Dimensions; their product must equal <c>data.Length</c>.</param>
    public static RawTensor FromDoubles(double[] data, params int[] shape) =>
        FromValues<double>(TensorElementType.Float64, data, shape);

    /// <summary>Creates an <see cref="TensorElementType.Int64"/> array from a copy of <paramref name="data"/>.</summary>
    /// <param name="data">Elements in C order.</param>
    /// <param name="shape">Dimensions; their product must equal <c>data.Length</c>.</param>
    public static RawTensor FromInt64(long[] data, params int[] shape) =>
        FromValues<long>(TensorElementType.Int64, data, shape);

    /// <summary>Creates an <see cref="TensorElementType.Int32"/> array from a copy of <paramref name="data"/>.</summary>
    /// <param name="data">Elements in C order.</param>
    /// <param name="shape">Dimensions; their product must equal <c>data.Length</c>.</param>
    public static RawTensor FromInt32(int[] data, params int[] shape) =>
        FromValues<int>(TensorElementType.Int32, data, shape);

    /// <summary>
    /// The elements as floats. Float32 is copied bit for bit (NaN payloads, -0 and subnormals kept).
    /// Float16 and BFloat16 widen exactly. Float64 rounds to the nearest float (values beyond the float
    /// range become infinities, NaN payloads are not kept). Integers convert by value (Int32 and Int64
    /// magnitudes above 2^24 round to the nearest float); Bool gives 0 or 1.
    /// </summary>
    public float[] ToFloats()
    {
        var result = new float[ElementCount];
        ReadOnlySpan<byte> bytes = Data;
        switch (ElementType)
        {
            case TensorElementType.Float32:
                MemoryMarshal.Cast<byte, float>(bytes).CopyTo(result);
                break;
            case TensorElementType.Float64:
                Map(MemoryMarshal.Cast<byte, double>(bytes), result, static v => (float)v);
                break;
            case TensorElementType.Float16:
                Map(MemoryMarshal.Cast<byte, Half>(bytes), result, static v => (float)v);
                break;
            case TensorElementType.BFloat16:
                Map(MemoryMarshal.Cast<byte, ushort>(bytes), result, static v => BitConverter.Int32BitsToSingle(v << 16));
                break;
            case TensorElementType.Int64:
                Map(MemoryMarshal.Cast<byte, long>(bytes), result, static v => v);
                break;
            case TensorElementType.Int32:
                Map(MemoryMarshal.Cast<byte, int>(bytes), result, static v => v);
                break;
            case TensorElementType.Int16:
                Map(MemoryMarshal.Cast<byte, short>(bytes), result, static v => v);
                break;
            case TensorElementType.Int8:
                Map(MemoryMarshal.Cast<byte, sbyte>(bytes), result, static v => v);
                break;
            case TensorElementType.UInt8:
                Map(bytes, result, static v => v);
                break;
            case TensorElementType.Bool:
                Map(bytes, result, static v => v != 0 ? 1f : 0f);
                break;
            default:
                throw new InvalidOperationException($"Unknown element type {ElementType}.");
        }
        return result;
    }

    /// <summary>
    /// The elements as 64-bit integers. Integer types widen exactly; Bool gives 0 or 1.
    /// Floating-point arrays are refused rather than truncated.
    /// </summary>
    /// <exception cref="InvalidOperationException">The array holds floating-point values.</exception>
    public long[] ToInt64()
    {
        var result = new long[ElementCount];
        ReadOnlySpan<byte> bytes = Data;
        switch (ElementType)
        {
            case TensorElementType.Int64:
                MemoryMarshal.Cast<byte, long>(bytes).CopyTo(result);
                break;
            case TensorElementType.Int32:
                Map(MemoryMarshal.Cast<byte, int>(bytes), result, static v => v);
                break;
            default:
                CopyNarrowIntegers(result, static v => v);
                break;
        }
        return result;
    }

    /// <summary>
    /// The elements as 32-bit integers. Int32, Int16, Int8, UInt8 and Bool convert exactly; Int64 converts
    /// when every value fits in an int. Floating-point arrays are refused rather than truncated.
    /// </summary>
    /// <exception cref="InvalidOperationException">The array holds floating-point values, or an Int64 value outside the int range.</exception>
    public int[] ToInt32()
    {
        var result = new int[ElementCount];
        ReadOnlySpan<byte> bytes = Data;
        switch (ElementType)
        {
            case TensorElementType.Int32:
                MemoryMarshal.Cast<byte, int>(bytes).CopyTo(result);
                break;
            case TensorElementType.Int64:
                var longs = MemoryMarshal.Cast<byte, long>(bytes);
                for (int i = 0; i < longs.Length; i++)
                {
                    if (longs[i] is < int.MinValue or > int.MaxValue)
                    {
                        throw new InvalidOperationException(
                            $"Element {i} of this Int64 array is {longs[i]}, outside the Int32 range; read it with ToInt64() instead.");
                    }
                    result[i] = (int)longs[i];
                }
                break;
            default:
                CopyNarrowIntegers(result, static v => v);
                break;
        }
        return result;
    }

    /// <summary>Creates a little-endian byte array from a copy of <paramref name="data"/>.</summary>
    private static RawTensor FromValues<T>(TensorElementType type, T[] data, int[] shape)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(shape);
        return new RawTensor(type, shape, MemoryMarshal.AsBytes(data.AsSpan()).ToArray());
    }

    /// <summary>Widens Int16, Int8, UInt8 and Bool into <paramref name="result"/>; refuses floating-point types.</summary>
    private void CopyNarrowIntegers<T>(T[] result, Func<int, T> fromInt)
    {
        ReadOnlySpan<byte> bytes = Data;
        switch (ElementType)
        {
            case TensorElementType.Int16:
                var shorts = MemoryMarshal.Cast<byte, short>(bytes);
                for (int i = 0; i < result.Length; i++)
                {
                    result[i] = fromInt(shorts[i]);
                }
                break;
            case TensorElementType.Int8:
                for (int i = 0; i < result.Length; i++)
                {
                    result[i] = fromInt((sbyte)bytes[i]);
                }
                break;
            case TensorElementType.UInt8:
                for (int i = 0; i < result.Length; i++)
                {
                    result[i] = fromInt(bytes[i]);
                }
                break;
            case TensorElementType.Bool:
                for (int i = 0; i < result.Length; i++)
                {
                    result[i] = fromInt(bytes[i] != 0 ? 1 : 0);
                }
                break;
            default:
                throw new InvalidOperationException(
                    $"This array holds {ElementType} values; converting them to integers would truncate. " +
                    "Read it with ToFloats() instead.");
        }
    }

    private static void Map<TIn, TOut>(ReadOnlySpan<TIn> source, TOut[] destination, Func<TIn, TOut> convert)
    {
        for (int i = 0; i < source.Length; i++)
        {
            destination[i] = convert(source[i]);
        }
    }
}
