namespace NeuralCore.NN;

/// <summary>
/// A (height, width) pair for kernel sizes, strides, paddings and dilations. Converts implicitly from an
/// <c>int</c> (the same value for both) and from an <c>(int, int)</c> tuple, as PyTorch accepts either.
/// </summary>
/// <param name="H">The size along the height (rows).</param>
/// <param name="W">The size along the width (columns).</param>
public readonly record struct Size2(int H, int W)
{
    /// <summary>The same value for height and width.</summary>
    public static implicit operator Size2(int value) => new(value, value);

    /// <summary>A (height, width) tuple.</summary>
    public static implicit operator Size2((int H, int W) value) => new(value.H, value.W);

    /// <summary>The pair as a tuple, the form <see cref="Functional"/> takes.</summary>
    public (int H, int W) ToTuple() => (H, W);

    /// <summary>PyTorch's tuple notation, e.g. <c>(2, 1)</c>.</summary>
    public override string ToString() => $"({H}, {W})";
}
