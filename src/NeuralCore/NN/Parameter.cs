namespace NeuralCore.NN;

/// <summary>A tensor that a <see cref="Module"/> owns as a learnable weight: a leaf that requires grad by default.</summary>
public sealed class Parameter : Tensor
{
    /// <summary>Wraps <paramref name="data"/>'s storage (no copy) as a parameter.</summary>
    public Parameter(Tensor data, bool requiresGrad = true) : base(data.storage, data.ShapeArray(), data.Strides.ToArray(), data.StorageOffset)
    {
        if (data.DType != DType.Float32) throw new ArgumentException($"Parameters are Float32; got {data.DType}.", nameof(data));
        RequiresGrad = requiresGrad;
    }
}
