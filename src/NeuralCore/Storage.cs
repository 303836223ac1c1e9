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

    /// <summary>Counts the writes through the tensor API's in-place methods (<c>FillInPlace</c>, <c>CopyFrom</c>, ...), for caches of a storage's contents.</summary>
    internal int Version { get; set; }

    /// <summary>The <see cref="TensorScope"/> whose end releases this storage; null for storage the GC (or its user) owns.</summary>
    internal TensorScope? Owner { get; set; }

    /// <summary>
    /// Gives the memory back when the owning scope ends: device memory returns to its backend's cache at once (the
    /// default, <see cref="Dispose"/>); every later access throws.
    /// </summary>
    internal virtual void Release()
    {
        Owner = null;
        Dispose();
    }
}

/// <summary>Host storage backed by a managed array (float[], long[] or int[]).</summary>
/// <remarks>
/// Storage that an op allocates for its output inside a <see cref="TensorScope"/> is rented from a pool of arrays of
/// the same length and goes back to the pool when the scope ends (unless the scope was told to keep it); after that
/// its elements can no longer be read, and touching them throws instead of returning another step's values.
/// </remarks>
public sealed class CpuStorage : Storage
{
    private Array? _data;
    private readonly DType _dtype;

    /// <summary>Wraps <paramref name="data"/> without copying.</summary>
    public CpuStorage(Array data)
    {
        _data = data;
        _dtype = TypeOf(data);
    }

    private static DType TypeOf(Array data) => data switch
    {
        float[] => DType.Float32,
        long[] => DType.Int64,
        int[] => DType.Int32,
        _ => throw new ArgumentException($"CpuStorage holds float[], long[] or int[], not {data.GetType().Name}.", nameof(data)),
    };

    /// <summary>Allocates zeroed storage.</summary>
    public static CpuStorage Allocate(DType dtype, int length) => new(dtype switch
    {
        DType.Float32 => new float[length],
        DType.Int64 => new long[length],
        DType.Int32 => new int[length],
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    });

    /// <summary>Storage of <paramref name="length"/> elements with undefined contents, rented from the pool (for a <see cref="TensorScope"/> to own).</summary>
    internal static CpuStorage Rent(DType dtype, int length) => new(Backends.Cpu.CpuBufferPool.Rent(dtype, length));

    /// <summary>
    /// Storage whose array is given later by <see cref="Bind"/> (a compiled plan's buffers, which share memory once the
    /// plan knows when each is in use); until then it holds no elements.
    /// </summary>
    internal static CpuStorage Deferred(DType dtype) => Allocate(dtype, 0);

    /// <summary>Gives <see cref="Deferred"/> storage its array, which other storage may share.</summary>
    internal void Bind(Array data)
    {
        if (_data is not { Length: 0 }) throw new InvalidOperationException("Only deferred storage, not yet bound, takes an array.");
        if (TypeOf(data) != _dtype) throw new ArgumentException($"Expected a {_dtype} array.", nameof(data));
        _data = data;
    }

    /// <summary>Trades the arrays of two storages of one type and length (a compiled plan's buffers, between its steps).</summary>
    internal static void SwapArrays(CpuStorage a, CpuStorage b)
    {
        if (a._dtype != b._dtype || a.Length != b.Length) throw new ArgumentException("Only storages of one type and length trade arrays.");
        (a._data, b._data) = (b._data, a._data);
    }

    /// <summary>True after <see cref="Release"/>: the array went back to the pool.</summary>
    public bool IsReleased => _data is null;

    /// <summary>Hands the array back to the pool; every later access throws.</summary>
    internal override void Release()
    {
        if (_data is null) return;
        Backends.Cpu.CpuBufferPool.Return(_data);
        _data = null;
        Owner = null;
    }

    /// <inheritdoc />
    public override Device Device => Device.Cpu;

    /// <inheritdoc />
    public override DType DType => _dtype;

    /// <inheritdoc />
    public override int Length => Data.Length;

    /// <summary>The underlying array.</summary>
    public Array Array => Data;

    /// <summary>The float elements; throws if this is not Float32 storage.</summary>
    public float[] Floats => Data as float[] ?? throw new InvalidOperationException($"Expected Float32 storage, found {DType}.");

    /// <summary>The int64 elements; throws if this is not Int64 storage.</summary>
    public long[] Longs => Data as long[] ?? throw new InvalidOperationException($"Expected Int64 storage, found {DType}.");

    /// <summary>The int32 elements; throws if this is not Int32 storage.</summary>
    public int[] Ints => Data as int[] ?? throw new InvalidOperationException($"Expected Int32 storage, found {DType}.");

    private Array Data => _data ?? throw new ObjectDisposedException(nameof(CpuStorage),
        "This tensor was computed inside a TensorScope that has ended, so its memory went back to the pool. " +
        "Call scope.Keep(tensor) before the scope ends, or Clone() it outside the scope, to use it afterwards.");
}
