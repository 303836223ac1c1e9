namespace NeuralCore.Cuda;

/// <summary>
/// Elements in GPU memory: a block from the device's caching allocator, held by a SafeHandle so the block
/// returns to the cache on <see cref="Dispose"/> (or, as a last resort, when the GC finalizes the handle).
/// </summary>
public sealed class CudaStorage : Storage
{
    private readonly DeviceBuffer? _buffer;

    internal CudaStorage(CudaDevice device, DType dtype, int length, DeviceBuffer? buffer)
    {
        CudaDevice = device;
        DType = dtype;
        Length = length;
        _buffer = buffer;
    }

    internal CudaDevice CudaDevice { get; }

    /// <inheritdoc />
    public override Device Device => Device.Cuda(CudaDevice.Ordinal);

    /// <inheritdoc />
    public override DType DType { get; }

    /// <inheritdoc />
    public override int Length { get; }

    /// <summary>The device address of element 0 (0 for empty storage).</summary>
    /// <exception cref="ObjectDisposedException">The storage was disposed (a tensor sharing it was disposed).</exception>
    public ulong DevicePointer
    {
        get
        {
            if (_buffer is null) return 0;
            if (_buffer.IsClosed)
                throw new ObjectDisposedException(nameof(CudaStorage),
                    $"This {DType} CUDA storage of {Length} elements was disposed: a tensor (or a view sharing its storage) was used after Dispose(), " +
                    "or after the TensorScope it was computed in ended (call scope.Keep(tensor) before the scope ends to use it afterwards).");
            return _buffer.Pointer;
        }
    }

    /// <summary>Bytes per element.</summary>
    internal int ElementSize => DType.ElementSize();

    /// <inheritdoc />
    public override void Dispose()
    {
        _buffer?.Dispose();
        base.Dispose();
    }
}
