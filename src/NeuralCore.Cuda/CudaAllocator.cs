using System.Runtime.InteropServices;
using NeuralCore.Cuda.Interop;

namespace NeuralCore.Cuda;

/// <summary>
/// A caching device allocator: freed blocks go to per-size-class free lists and are handed out again, so
/// training steps after the first never call <c>cuMemAlloc</c> or <c>cuMemFree</c>. Sizes round up to
/// 512 bytes below 1 MiB and to 2 MiB above. All work is ordered on the device's single compute stream,
/// so a block freed after kernels that use it were enqueued can be reused by later kernels at once.
/// </summary>
internal sealed class CudaAllocator
{
    private const long SmallLimit = 1 << 20;
    private const long SmallGranule = 512;
    private const long LargeGranule = 2 << 20;

    private readonly CudaDevice _device;
    private readonly object _gate = new();
    private readonly Dictionary<long, Stack<ulong>> _free = new();
    private long _cachedBytes, _inUseBytes, _peakBytes;

    public CudaAllocator(CudaDevice device) => _device = device;

    /// <summary>Bytes held by live buffers.</summary>
    public long InUseBytes { get { lock (_gate) return _inUseBytes; } }

    /// <summary>Bytes held in the free lists, ready for reuse.</summary>
    public long CachedBytes { get { lock (_gate) return _cachedBytes; } }

    /// <summary>The largest <see cref="InUseBytes"/> seen.</summary>
    public long PeakBytes { get { lock (_gate) return _peakBytes; } }

    /// <summary>Starts a new peak from the bytes in use now.</summary>
    public void ResetPeak() { lock (_gate) _peakBytes = _inUseBytes; }

    /// <summary>The size class a request of <paramref name="bytes"/> is served from.</summary>
    public static long RoundSize(long bytes)
    {
        if (bytes <= SmallLimit) return Math.Max(SmallGranule, (bytes + SmallGranule - 1) / SmallGranule * SmallGranule);
        return (bytes + LargeGranule - 1) / LargeGranule * LargeGranule;
    }

    /// <summary>A block of at least <paramref name="bytes"/> bytes, owned by the returned handle.</summary>
    public DeviceBuffer Allocate(long bytes)
    {
        var size = RoundSize(bytes);
        lock (_gate)
        {
            if (_free.TryGetValue(size, out var stack) && stack.Count > 0)
            {
                _cachedBytes -= size;
                return Track(stack.Pop(), size);
            }
        }
        _device.MakeCurrent();
        var result = CudaDriver.cuMemAlloc(out var ptr, (nuint)size);
        if (result == CudaDriver.ErrorOutOfMemory)
        {
            // Cached blocks of other size classes may be enough once returned to the driver.
            EmptyCache();
            result = CudaDriver.cuMemAlloc(out ptr, (nuint)size);
        }
        if (result == CudaDriver.ErrorOutOfMemory)
        {
            CudaDriver.cuMemGetInfo(out var free, out var total);
            throw new CudaException("CUDA driver", "cuMemAlloc", result, CudaDriver.ErrorName(result),
                $"out of GPU memory on {_device.Name} (cuda:{_device.Ordinal}) allocating {Mib(size)} MiB: tensors hold {Mib(InUseBytes)} MiB, " +
                $"the driver reports {Mib((long)free)} of {Mib((long)total)} MiB free; reduce the batch size or free tensors with Dispose().");
        }
        CudaDriver.Check(result, "cuMemAlloc");
        lock (_gate) return Track(ptr, size);
    }

    private DeviceBuffer Track(ulong ptr, long size)
    {
        _inUseBytes += size;
        _peakBytes = Math.Max(_peakBytes, _inUseBytes);
        return new DeviceBuffer(this, ptr, size);
    }

    /// <summary>Returns a block to its free list. Makes no CUDA call, so it is safe from a finalizer.</summary>
    public void Release(ulong ptr, long size)
    {
        lock (_gate)
        {
            if (!_free.TryGetValue(size, out var stack)) _free[size] = stack = new Stack<ulong>();
            stack.Push(ptr);
            _inUseBytes -= size;
            _cachedBytes += size;
        }
    }

    /// <summary>Waits for the device, then returns every cached block to the driver.</summary>
    public void EmptyCache()
    {
        _device.Synchronize();
        List<ulong> blocks;
        lock (_gate)
        {
            blocks = _free.Values.SelectMany(s => s).ToList();
            _free.Clear();
            _cachedBytes = 0;
        }
        foreach (var b in blocks) CudaDriver.Check(CudaDriver.cuMemFree(b), "cuMemFree");
    }

    private static long Mib(long bytes) => bytes >> 20;
}

/// <summary>A device memory block from <see cref="CudaAllocator"/>; releasing it returns the block to the cache.</summary>
internal sealed class DeviceBuffer : SafeHandle
{
    private readonly CudaAllocator _allocator;

    public DeviceBuffer(CudaAllocator allocator, ulong ptr, long size) : base(0, ownsHandle: true)
    {
        _allocator = allocator;
        Size = size;
        SetHandle((nint)ptr);
    }

    /// <summary>The block's size in bytes (its size class).</summary>
    public long Size { get; }

    /// <inheritdoc />
    public override bool IsInvalid => handle == 0;

    /// <summary>The device address.</summary>
    public ulong Pointer => (ulong)handle;

    protected override bool ReleaseHandle()
    {
        _allocator.Release((ulong)handle, Size);
        return true;
    }
}
