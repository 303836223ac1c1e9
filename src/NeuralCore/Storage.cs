namespace NeuralCore;

/// <summary>
/// A flat buffer of elements owned by a backend. Tensors are views (shape, strides, offset) onto a
/// storage; several tensors may share one.
/// </summary>
public abstract class Storage : IDisposable
{
    /// <summary>The device holding the elements.</summary>
    public abstract Device Device { get; }

    /// <summary>The element type.</summary>
    public abstract DType DType { get; }

    /// <summary>Number of elements.</summary>
    public abstract int Length { get; }

    /// <summary>Releases native memory (device buffers); a no-op for managed host memory.</summary>
    public virtual void Dispose() => GC.SuppressFinalize(this);
}

/// <summary>Host storage backed by a managed array (float[], long[] or int[]).</summary>
public sealed class CpuStorage : Storage
{
    private readonly Array _data;

    /// <summary>Wraps <paramref name="data"/> without copying.</summary>
    public CpuStorage(Array data)
    {
        _data = data;
        DType = data switch
        {
            float[] => DType.Float32,
            long[] => DType.Int64,
            int[] => DType.Int32,
            _ => throw new ArgumentException($"CpuStorage holds float[], long[] or int[], not {data.GetType().Name}.", nameof(data)),
        };
    }

    /// <summary>Allocates zeroed storage.</summary>
    public static CpuStorage Allocate(DType dtype, int length) => new(dtype switch
    {
        DType.Float32 => new float[length],
        DType.Int64 => new long[length],
        DType.Int32 => new int[length],
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    });

    /// <inheritdoc />
    public override Device Device => Device.Cpu;

    /// <inheritdoc />
    public override DType DType { get; }

    /// <inheritdoc />
    public override int Length => _data.Length;

    /// <summary>The underlying array.</summary>
    public Array Array => _data;

    /// <summary>The float elements; throws if this is not Float32 storage.</summary>
    public float[] Floats => _data as float[] ?? throw new InvalidOperationException($"Expected Float32 storage, found {DType}.");

    /// <summary>The int64 elements; throws if this is not Int64 storage.</summary>
    public long[] Longs => _data as long[] ?? throw new InvalidOperationException($"Expected Int64 storage, found {DType}.");

    /// <summary>The int32 elements; throws if this is not Int32 storage.</summary>
    public int[] Ints => _data as int[] ?? throw new InvalidOperationException($"Expected Int32 storage, found {DType}.");
}
