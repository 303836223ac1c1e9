namespace NeuralCore;

/// <summary>Element type of a tensor. Float32 is the compute type; the integer types hold labels and indices.</summary>
public enum DType
{
    /// <summary>32-bit IEEE float, the type every differentiable op works in.</summary>
    Float32,
    /// <summary>64-bit signed integer (class labels, indices; PyTorch's default integer type).</summary>
    Int64,
    /// <summary>32-bit signed integer.</summary>
    Int32,
}

/// <summary>Helpers for <see cref="DType"/>.</summary>
public static class DTypeExtensions
{
    /// <summary>Size of one element in bytes.</summary>
    public static int ElementSize(this DType dtype) => dtype switch
    {
        DType.Float32 => 4,
        DType.Int64 => 8,
        DType.Int32 => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown dtype."),
    };
}
