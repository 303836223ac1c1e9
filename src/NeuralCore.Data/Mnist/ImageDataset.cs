namespace NeuralCore.Data;

/// <summary>
/// A labelled set of single-channel images held as plain arrays: <see cref="Pixels"/> is
/// N x Rows x Cols floats in [0, 1], row-major and contiguous (image i starts at
/// i * Rows * Cols), and <see cref="Labels"/> holds one class index in [0, NumClasses) per image.
/// </summary>
public sealed class ImageDataset
{
    // Exact b / 255 for every byte value, shared so conversions agree bit for bit.
    private static readonly float[] ByteToUnit = BuildByteToUnit();

    /// <summary>
    /// Creates a dataset over existing arrays (they are used as they are, not copied).
    /// </summary>
    /// <param name="pixels">N x rows x cols values, row-major.</param>
    /// <param name="labels">N class indices in [0, numClasses).</param>
    /// <param name="rows">Image height.</param>
    /// <param name="cols">Image width.</param>
    /// <param name="numClasses">Number of classes (10 for MNIST).</param>
    /// <param name="description">Where the data came from, for logs and reports.</param>
    public ImageDataset(float[] pixels, int[] labels, int rows, int cols, int numClasses = 10, string description = "images")
    {
        ArgumentNullException.ThrowIfNull(pixels);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numClasses);
        if ((long)labels.Length * rows * cols != pixels.Length)
            throw new ArgumentException(
                $"Pixel array has {pixels.Length} values, expected {labels.Length} labels x {rows} x {cols} = {(long)labels.Length * rows * cols}.",
                nameof(pixels));
        for (int i = 0; i < labels.Length; i++)
        {
            if ((uint)labels[i] >= (uint)numClasses)
                throw new ArgumentException($"Label {labels[i]} at index {i} is outside [0, {numClasses}).", nameof(labels));
        }
        Pixels = pixels;
        Labels = labels;
        Rows = rows;
        Cols = cols;
        NumClasses = numClasses;
        Description = description;
    }

    /// <summary>Number of images (N).</summary>
    public int Count => Labels.Length;

    /// <summary>Image height.</summary>
    public int Rows { get; }

    /// <summary>Image width.</summary>
    public int Cols { get; }

    /// <summary>Number of classes; labels lie in [0, NumClasses).</summary>
    public int NumClasses { get; }

    /// <summary>All pixels, N x Rows x Cols, row-major, values in [0, 1].</summary>
    public float[] Pixels { get; }

    /// <summary>One class index per image.</summary>
    public int[] Labels { get; }

    /// <summary>Where the data came from (file, split, seed), for logs and reports.</summary>
    public string Description { get; }

    /// <summary>The Rows x Cols pixels of image <paramref name="index"/>.</summary>
    public ReadOnlySpan<float> GetImage(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        int size = Rows * Cols;
        return Pixels.AsSpan(index * size, size);
    }

    /// <summary>Number of images of each class (length <see cref="NumClasses"/>).</summary>
    public int[] ClassCounts()
    {
        var counts = new int[NumClasses];
        foreach (int label in Labels)
            counts[label]++;
        return counts;
    }

    /// <summary>
    /// A new dataset holding copies of the images at <paramref name="indices"/>, in that order
    /// (repeats allowed).
    /// </summary>
    /// <param name="indices">Image indices in [0, Count).</param>
    /// <param name="description">Description of the subset; defaults to this one's with the subset size.</param>
    public ImageDataset Subset(int[] indices, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(indices);
        int size = Rows * Cols;
        var pixels = new float[(long)indices.Length * size];
        var labels = new int[indices.Length];
        for (int i = 0; i < indices.Length; i++)
        {
            int source = indices[i];
            if ((uint)source >= (uint)Count)
                throw new ArgumentOutOfRangeException(nameof(indices), $"Index {source} at position {i} is outside [0, {Count}).");
            Pixels.AsSpan(source * size, size).CopyTo(pixels.AsSpan(i * size, size));
            labels[i] = Labels[source];
        }
        return new ImageDataset(pixels, labels, Rows, Cols, NumClasses,
            description ?? $"{Description} (subset of {indices.Length:N0})");
    }

    /// <summary>
    /// Builds a dataset from IDX-style bytes (pixels scaled by 1/255), taking only the images at
    /// <paramref name="indices"/> so a split never holds the whole file as floats twice.
    /// Labels must already be validated against <paramref name="numClasses"/>.
    /// </summary>
    internal static ImageDataset FromBytes(byte[] pixels, byte[] labels, int rows, int cols, int[] indices, int numClasses, string description)
    {
        int size = rows * cols;
        var floats = new float[(long)indices.Length * size];
        var ints = new int[indices.Length];
        float[] table = ByteToUnit;
        for (int i = 0; i < indices.Length; i++)
        {
            int source = indices[i];
            ReadOnlySpan<byte> from = pixels.AsSpan(source * size, size);
            Span<float> to = floats.AsSpan(i * size, size);
            for (int j = 0; j < size; j++)
                to[j] = table[from[j]];
            ints[i] = labels[source];
        }
        return new ImageDataset(floats, ints, rows, cols, numClasses, description);
    }

    private static float[] BuildByteToUnit()
    {
        var table = new float[256];
        for (int b = 0; b < 256; b++)
            table[b] = b / 255f;
        return table;
    }
}
