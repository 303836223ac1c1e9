namespace NeuralCore.IO;

/// <summary>
/// Element type of an array as stored in a tensor file. Names follow PyTorch; the matching
/// safetensors and NumPy spellings are given on each member.
/// </summary>
public enum TensorElementType
{
    /// <summary>32-bit IEEE float (safetensors <c>F32</c>, NumPy <c>&lt;f4</c>).</summary>
    Float32,
    /// <summary>64-bit IEEE float (safetensors <c>F64</c>, NumPy <c>&lt;f8</c>).</summary>
    Float64,
    /// <summary>16-bit IEEE half float (safetensors <c>F16</c>, NumPy <c>&lt;f2</c>).</summary>
    Float16,
    /// <summary>bfloat16: the upper 16 bits of a float32 (safetensors <c>BF16</c>; NumPy has no such type).</summary>
    BFloat16,
    /// <summary>64-bit signed integer (safetensors <c>I64</c>, NumPy <c>&lt;i8</c>).</summary>
    Int64,
    /// <summary>32-bit signed integer (safetensors <c>I32</c>, NumPy <c>&lt;i4</c>).</summary>
    Int32,
    /// <summary>16-bit signed integer (safetensors <c>I16</c>, NumPy <c>&lt;i2</c>).</summary>
    Int16,
    /// <summary>8-bit signed integer (safetensors <c>I8</c>, NumPy <c>|i1</c>).</summary>
    Int8,
    /// <summary>8-bit unsigned integer (safetensors <c>U8</c>, NumPy <c>|u1</c>).</summary>
    UInt8,
    /// <summary>Boolean stored as one byte, 0 or 1 (safetensors <c>BOOL</c>, NumPy <c>|b1</c>).</summary>
    Bool,
}

/// <summary>Sizes and file-format names of <see cref="TensorElementType"/>.</summary>
public static class TensorElementTypeExtensions
{
    /// <summary>Size of one element in bytes.</summary>
    /// <param name="type">The element type.</param>
    public static int ElementSize(this TensorElementType type) => type switch
    {
        TensorElementType.Float64 or TensorElementType.Int64 => 8,
        TensorElementType.Float32 or TensorElementType.Int32 => 4,
        TensorElementType.Float16 or TensorElementType.BFloat16 or TensorElementType.Int16 => 2,
        TensorElementType.Int8 or TensorElementType.UInt8 or TensorElementType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown tensor element type."),
    };

    /// <summary>The safetensors <c>dtype</c> string: F32, F64, F16, BF16, I64, I32, I16, I8, U8 or BOOL.</summary>
    /// <param name="type">The element type.</param>
    public static string SafeTensorsName(this TensorElementType type) => type switch
    {
        TensorElementType.Float32 => "F32",
        TensorElementType.Float64 => "F64",
        TensorElementType.Float16 => "F16",
        TensorElementType.BFloat16 => "BF16",
        TensorElementType.Int64 => "I64",
        TensorElementType.Int32 => "I32",
        TensorElementType.Int16 => "I16",
        TensorElementType.Int8 => "I8",
        TensorElementType.UInt8 => "U8",
        TensorElementType.Bool => "BOOL",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown tensor element type."),
    };

    /// <summary>Parses a safetensors <c>dtype</c> string (case-sensitive, as the format defines it).</summary>
    /// <param name="name">The dtype string, e.g. <c>F32</c>.</param>
    /// <param name="type">The element type when the name is one NeuralCore reads.</param>
    /// <returns>Whether <paramref name="name"/> names a supported element type.</returns>
    public static bool TryParseSafeTensorsName(string name, out TensorElementType type)
    {
        foreach (var candidate in Enum.GetValues<TensorElementType>())
        {
            if (candidate.SafeTensorsName() == name)
            {
                type = candidate;
                return true;
            }
        }
        type = default;
        return false;
    }

    /// <summary>
    /// Rank of the type in the safetensors reference writer's dtype order (BOOL lowest, I64 highest);
    /// the writer lays tensors out by descending rank, then by name, so that the largest alignments come first.
    /// </summary>
    internal static int SafeTensorsWriteRank(this TensorElementType type) => type switch
    {
        TensorElementType.Bool => 0,
        TensorElementType.UInt8 => 1,
        TensorElementType.Int8 => 2,
        TensorElementType.Int16 => 3,
        TensorElementType.Float16 => 4,
        TensorElementType.BFloat16 => 5,
        TensorElementType.Int32 => 6,
        TensorElementType.Float32 => 7,
        TensorElementType.Float64 => 8,
        TensorElementType.Int64 => 9,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown tensor element type."),
    };
}
