using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using NeuralCore.Cuda.Interop;

namespace NeuralCore.Cuda;

/// <summary>
/// The per-GPU runtime shared by every <see cref="CudaBackend"/> of one ordinal: the primary context, one
/// non-blocking compute stream (bound to cuBLAS and cuDNN), the caching allocator, the pinned staging
/// buffer for transfers, the loaded kernel modules and the library handles. Created once per ordinal and
/// kept for the life of the process.
/// </summary>
internal sealed unsafe class CudaDevice
{
    private static readonly ConcurrentDictionary<int, Lazy<CudaDevice>> Devices = new();

    [ThreadStatic] private static nint _currentContext;

    private readonly nint _context;
    private readonly Dictionary<string, nint> _modules = new();
    private readonly Dictionary<(string File, string Kernel), nint> _functions = new();
    private readonly object _moduleGate = new();
    private readonly Lazy<nint> _cublas;
    private readonly Lazy<nint> _cudnn;
    private readonly object _stagingGate = new();
    private nint _staging;
    private long _stagingBytes;
    private readonly nint _stagingFree;

    private CudaDevice(int ordinal)
    {
        Ordinal = ordinal;
        var driver = NativeLibraries.Load(NativeLibraries.Driver);
        if (!driver.Found) throw new CudaUnavailableException(CudaDiagnostics.MissingSentence(NativeLibraries.Driver));
        var init = CudaDriver.cuInit(0);
        if (init != 0)
            throw new CudaUnavailableException(
                $"CUDA is not available: the NVIDIA driver ({driver.Path}) failed to initialise with {CudaDriver.ErrorName(init)} ({CudaDriver.ErrorString(init)}); check that `nvidia-smi` lists a GPU and that this process can open /dev/nvidia*.");
        CudaDriver.Check(CudaDriver.cuDeviceGetCount(out var count), "cuDeviceGetCount");
        if (ordinal < 0 || ordinal >= count)
            throw new CudaUnavailableException(count == 0
                ? $"CUDA device cuda:{ordinal} does not exist: the NVIDIA driver sees no GPU; check `nvidia-smi`."
                : $"CUDA device cuda:{ordinal} does not exist: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1} (see `nvidia-smi`).");
        foreach (var lib in new[] { NativeLibraries.Nvrtc, NativeLibraries.Cublas })
            if (!NativeLibraries.Load(lib).Found) throw new CudaUnavailableException(CudaDiagnostics.MissingSentence(lib));

        CudaDriver.Check(CudaDriver.cuDeviceGet(out var device, ordinal), "cuDeviceGet");
        Handle = device;
        var name = stackalloc byte[256];
        CudaDriver.Check(CudaDriver.cuDeviceGetName(name, 256, device), "cuDeviceGetName");
        Name = Marshal.PtrToStringUTF8((nint)name) ?? $"cuda:{ordinal}";
        CudaDriver.Check(CudaDriver.cuDeviceGetAttribute(out var ccMajor, CudaDriver.AttributeComputeCapabilityMajor, device), "cuDeviceGetAttribute");
        CudaDriver.Check(CudaDriver.cuDeviceGetAttribute(out var ccMinor, CudaDriver.AttributeComputeCapabilityMinor, device), "cuDeviceGetAttribute");
        CudaDriver.Check(CudaDriver.cuDeviceGetAttribute(out var sms, CudaDriver.AttributeMultiprocessorCount, device), "cuDeviceGetAttribute");
        ComputeCapability = ccMajor * 10 + ccMinor;
        MultiprocessorCount = sms;
        CudaDriver.Check(CudaDriver.cuDevicePrimaryCtxRetain(out _context, device), "cuDevicePrimaryCtxRetain");
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuStreamCreate(out var stream, CudaDriver.StreamNonBlocking), "cuStreamCreate");
        Stream = stream;
        CudaDriver.Check(CudaDriver.cuEventCreate(out _stagingFree, CudaDriver.EventDisableTiming), "cuEventCreate");
        Allocator = new CudaAllocator(this);
        _cublas = new Lazy<nint>(CreateCublas);
        _cudnn = new Lazy<nint>(CreateCudnn);
    }

    /// <summary>The runtime for CUDA device <paramref name="ordinal"/>, created on first use.</summary>
    /// <exception cref="CudaUnavailableException">No driver, no such GPU, or NVRTC / cuBLAS missing.</exception>
    public static CudaDevice Get(int ordinal)
    {
        var lazy = Devices.GetOrAdd(ordinal, o => new Lazy<CudaDevice>(() => new CudaDevice(o)));
        try
        {
            return lazy.Value;
        }
        catch (CudaUnavailableException)
        {
            // Do not cache the failure: the user may fix the environment (NEURALCORE_CUDA_PATH) and retry.
            Devices.TryRemove(new KeyValuePair<int, Lazy<CudaDevice>>(ordinal, lazy));
            throw;
        }
    }

    /// <summary>The CUDA ordinal.</summary>
    public int Ordinal { get; }

    /// <summary>The driver's CUdevice handle.</summary>
    public int Handle { get; }

    /// <summary>The GPU's name.</summary>
    public string Name { get; }

    /// <summary>Compute capability as major * 10 + minor (80 for an A100).</summary>
    public int ComputeCapability { get; }

    /// <summary>Number of streaming multiprocessors.</summary>
    public int MultiprocessorCount { get; }

    /// <summary>The compute stream every operation is ordered on.</summary>
    public nint Stream { get; }

    /// <summary>The caching allocator.</summary>
    public CudaAllocator Allocator { get; }

    /// <summary>The cuBLAS handle bound to <see cref="Stream"/>.</summary>
    public nint CublasHandle => _cublas.Value;

    /// <summary>True when cuDNN 9 was found and its handle could be created.</summary>
    public bool HasCudnn => _cudnn.Value != 0;

    /// <summary>The cuDNN handle bound to <see cref="Stream"/> (0 when cuDNN is absent).</summary>
    public nint CudnnHandle => _cudnn.Value;

    /// <summary>Makes the primary context current on the calling thread (a thread-local check when it already is).</summary>
    public void MakeCurrent()
    {
        if (_currentContext == _context) return;
        CudaDriver.Check(CudaDriver.cuCtxSetCurrent(_context), "cuCtxSetCurrent");
        _currentContext = _context;
    }

    /// <summary>Waits until every operation enqueued on the stream has finished.</summary>
    public void Synchronize()
    {
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuStreamSynchronize(Stream), "cuStreamSynchronize");
    }

    private nint CreateCublas()
    {
        MakeCurrent();
        Cublas.Check(Cublas.cublasCreate(out var handle), "cublasCreate");
        Cublas.Check(Cublas.cublasSetStream(handle, Stream), "cublasSetStream");
        Cublas.Check(Cublas.cublasSetMathMode(handle, Cublas.DefaultMath), "cublasSetMathMode");
        return handle;
    }

    private nint CreateCudnn()
    {
        if (!NativeLibraries.Load(NativeLibraries.Cudnn).Found) return 0;
        MakeCurrent();
        Cudnn.Check(Cudnn.cudnnCreate(out var handle), "cudnnCreate");
        Cudnn.Check(Cudnn.cudnnSetStream(handle, Stream), "cudnnSetStream");
        return handle;
    }

    /// <summary>Sets the cuBLAS math mode: TF32 tensor-core math when <paramref name="allowTf32"/>, exact FP32 otherwise.</summary>
    public void SetCublasTf32(bool allowTf32) =>
        Cublas.Check(Cublas.cublasSetMathMode(CublasHandle, allowTf32 ? Cublas.Tf32TensorOpMath : Cublas.DefaultMath), "cublasSetMathMode");

    /// <summary>The kernel <paramref name="kernel"/> of <paramref name="file"/>, compiling and loading the module on first use.</summary>
    public nint Function(string file, string kernel)
    {
        lock (_moduleGate)
        {
            if (_functions.TryGetValue((file, kernel), out var fn)) return fn;
            if (!_modules.TryGetValue(file, out var module))
            {
                var image = CudaKernels.Image(file, ComputeCapability);
                MakeCurrent();
                // SAFETY: the image is pinned for the call; PTX images end with the NUL NVRTC wrote.
                fixed (byte* p = image) CudaDriver.Check(CudaDriver.cuModuleLoadData(out module, p), $"cuModuleLoadData ({file})");
                _modules[file] = module;
            }
            var result = CudaDriver.cuModuleGetFunction(out fn, module, kernel);
            if (result != 0)
                throw new CudaException("CUDA driver", $"cuModuleGetFunction ({file}: {kernel})", result, CudaDriver.ErrorName(result),
                    $"kernel '{kernel}' is not in {file}; the kernel name and the .cu file disagree");
            _functions[(file, kernel)] = fn;
            return fn;
        }
    }

    /// <summary>Blocks for a grid-stride loop over <paramref name="n"/> elements with 256-thread blocks.</summary>
    public uint GridFor(long n) => (uint)Math.Clamp((n + 255) / 256, 1, (long)MultiprocessorCount * 32);

    /// <summary>Launches <paramref name="function"/> on the stream.</summary>
    public void Launch(nint function, uint grid, uint block, ref KernelArgs args, string name)
    {
        MakeCurrent();
        var pointers = stackalloc void*[args.Count];
        // SAFETY: args is pinned for the launch; the driver copies the argument values before cuLaunchKernel returns.
        fixed (KernelArgs* a = &args)
        {
            a->Addresses(pointers);
            var result = CudaDriver.cuLaunchKernel(function, grid, 1, 1, block, 1, 1, 0, Stream, pointers, null);
            if (result != 0) CudaDriver.Check(result, $"cuLaunchKernel ({name})");
        }
    }

    /// <summary>Copies <paramref name="bytes"/> bytes from host memory to the device through the pinned staging buffer.</summary>
    public void CopyToDevice(ulong dst, void* src, long bytes)
    {
        if (bytes == 0) return;
        MakeCurrent();
        lock (_stagingGate)
        {
            long done = 0;
            while (done < bytes)
            {
                // The previous upload out of the staging buffer must have finished before it is overwritten.
                CudaDriver.Check(CudaDriver.cuEventSynchronize(_stagingFree), "cuEventSynchronize");
                var chunk = EnsureStaging(bytes - done);
                Buffer.MemoryCopy((byte*)src + done, (void*)_staging, chunk, chunk);
                CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync(dst + (ulong)done, (void*)_staging, (nuint)chunk, Stream), "cuMemcpyHtoDAsync");
                CudaDriver.Check(CudaDriver.cuEventRecord(_stagingFree, Stream), "cuEventRecord");
                done += chunk;
            }
        }
    }

    /// <summary>Copies <paramref name="bytes"/> bytes from the device to host memory, waiting for every earlier operation.</summary>
    public void CopyToHost(void* dst, ulong src, long bytes)
    {
        if (bytes == 0) return;
        MakeCurrent();
        lock (_stagingGate)
        {
            long done = 0;
            while (done < bytes)
            {
                CudaDriver.Check(CudaDriver.cuEventSynchronize(_stagingFree), "cuEventSynchronize");
                var chunk = EnsureStaging(bytes - done);
                CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync((void*)_staging, src + (ulong)done, (nuint)chunk, Stream), "cuMemcpyDtoHAsync");
                CudaDriver.Check(CudaDriver.cuStreamSynchronize(Stream), "cuStreamSynchronize");
                Buffer.MemoryCopy((void*)_staging, (byte*)dst + done, chunk, chunk);
                done += chunk;
            }
        }
    }

    /// <summary>Grows the pinned staging buffer towards <paramref name="wanted"/> bytes (capped at 64 MiB) and returns the usable chunk size.</summary>
    private long EnsureStaging(long wanted)
    {
        const long cap = 64L << 20;
        var target = Math.Min(wanted, cap);
        if (_stagingBytes < target)
        {
            if (_staging != 0) CudaDriver.Check(CudaDriver.cuMemFreeHost(_staging), "cuMemFreeHost");
            _staging = 0;
            var size = Math.Max(target, 1L << 20);
            CudaDriver.Check(CudaDriver.cuMemAllocHost(out _staging, (nuint)size), "cuMemAllocHost");
            _stagingBytes = size;
        }
        return Math.Min(wanted, _stagingBytes);
    }

    /// <summary>Enqueues a byte fill of device memory.</summary>
    public void Memset(ulong dst, long bytes)
    {
        if (bytes == 0) return;
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuMemsetD8Async(dst, 0, (nuint)bytes, Stream), "cuMemsetD8Async");
    }

    /// <summary>Enqueues a device-to-device copy.</summary>
    public void CopyDeviceToDevice(ulong dst, ulong src, long bytes)
    {
        if (bytes == 0) return;
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuMemcpyDtoDAsync(dst, src, (nuint)bytes, Stream), "cuMemcpyDtoDAsync");
    }

    /// <summary>A one-line description: name, compute capability, SMs.</summary>
    public override string ToString() =>
        $"cuda:{Ordinal} {Name} (compute capability {ComputeCapability / 10}.{ComputeCapability % 10}, {MultiprocessorCount} SMs)";
}

/// <summary>
/// Kernel arguments for <c>cuLaunchKernel</c>, packed without allocating: each value is copied into an inline
/// buffer at an 8-byte aligned offset; <see cref="CudaDevice.Launch"/> builds the pointer array the driver reads.
/// </summary>
internal unsafe struct KernelArgs
{
    private const int Capacity = 512, MaxArgs = 32;
    private fixed byte _values[Capacity];
    private fixed int _offsets[MaxArgs];
    private int _used, _count;

    /// <summary>Number of arguments added.</summary>
    public readonly int Count => _count;

    /// <summary>Appends one argument by value (a device pointer is a ulong, a struct is copied whole).</summary>
    public void Add<T>(T value) where T : unmanaged
    {
        var at = (_used + 7) & ~7;
        if (at + sizeof(T) > Capacity || _count >= MaxArgs)
            throw new InvalidOperationException($"Kernel arguments exceed {Capacity} bytes or {MaxArgs} values.");
        // SAFETY: bounds checked above against the inline buffer.
        fixed (byte* v = _values) *(T*)(v + at) = value;
        _offsets[_count++] = at;
        _used = at + sizeof(T);
    }

    /// <summary>Fills <paramref name="pointers"/> (Count entries) with the addresses of the values; valid while this struct is pinned.</summary>
    public void Addresses(void** pointers)
    {
        fixed (byte* v = _values)
            for (var i = 0; i < _count; i++) pointers[i] = v + _offsets[i];
    }
}
