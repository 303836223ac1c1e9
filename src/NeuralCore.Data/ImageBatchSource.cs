namespace NeuralCore.Data;

/// <summary>Batches an <see cref="ImageDataset"/> as single-channel images: inputs [B, 1, Rows, Cols], targets [B].</summary>
public sealed class ImageBatchSource : IBatchSource
{
    private readonly ImageDataset _data;

    /// <summary>A batch source over <paramref name="data"/> (the arrays are read, never copied up front).</summary>
    public ImageBatchSource(ImageDataset data)
    {
        ArgumentNullException.ThrowIfNull(data);
        _data = data;
    }

    /// <inheritdoc />
    public int Count => _data.Count;

    /// <inheritdoc />
    public int NumClasses => _data.NumClasses;

    /// <inheritdoc />
    public int[] SampleShape => [1, _data.Rows, _data.Cols];

    /// <inheritdoc />
    public Batch GetBatch(ReadOnlySpan<int> indices)
    {
        int size = _data.Rows * _data.Cols;
        var pixels = new float[(long)indices.Length * size];
        var targets = new long[indices.Length];
        for (int i = 0; i < indices.Length; i++)
        {
            int index = indices[i];
            if ((uint)index >= (uint)_data.Count)
                throw new ArgumentOutOfRangeException(nameof(indices), $"Index {index} at position {i} is outside the dataset [0, {_data.Count}).");
            _data.Pixels.AsSpan(index * size, size).CopyTo(pixels.AsSpan(i * size, size));
            targets[i] = _data.Labels[index];
        }
        return new Batch(Tensor.Wrap(pixels, indices.Length, 1, _data.Rows, _data.Cols), Tensor.FromArray(targets, indices.Length), indices.ToArray());
    }
}
