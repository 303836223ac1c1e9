using System.Runtime.InteropServices;

namespace NeuralCore.Cuda.Interop;

/// <summary>
/// The CUDA driver API (<c>libcuda.so.1</c>), the subset NeuralCore uses: initialisation, devices, the primary
/// context, memory (device and pinned host), streams, events, modules and kernel launch. Every function
/// returns a <c>CUresult</c> (0 = success); <see cref="Check"/> turns failures into <see cref="CudaException"/>.
/// </summary>
internal static unsafe partial class CudaDriver
{
    private const string Lib = "cuda";

    static CudaDriver() => NativeLibraries.EnsureRegistered();

    /// <summary>CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT.</summary>
    public const int AttributeMultiprocessorCount = 16;
    /// <summary>CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR.</summary>
    public const int AttributeComputeCapabilityMajor = 75;
    /// <summary>CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR.</summary>
    public const int AttributeComputeCapabilityMinor = 76;
    /// <summary>CU_STREAM_NON_BLOCKING: no implicit synchronisation with the legacy default stream.</summary>
    public const uint StreamNonBlocking = 1;
    /// <summary>CU_EVENT_DISABLE_TIMING: a cheaper event for ordering only.</summary>
    public const uint EventDisableTiming = 2;
    /// <summary>CUDA_ERROR_OUT_OF_MEMORY.</summary>
    public const int ErrorOutOfMemory = 2;

    [LibraryImport(Lib)] public static partial int cuInit(uint flags);
    [LibraryImport(Lib)] public static partial int cuDriverGetVersion(out int version);
    [LibraryImport(Lib)] public static partial int cuDeviceGetCount(out int count);
    [LibraryImport(Lib)] public static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(Lib)] public static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(Lib)] public static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(Lib, EntryPoint = "cuDeviceTotalMem_v2")] public static partial int cuDeviceTotalMem(out nuint bytes, int device);
    [LibraryImport(Lib)] public static partial int cuDevicePrimaryCtxRetain(out nint context, int device);
    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] public static partial int cuDevicePrimaryCtxRelease(int device);
    [LibraryImport(Lib)] public static partial int cuCtxSetCurrent(nint context);

    [LibraryImport(Lib, EntryPoint = "cuMemAlloc_v2")] public static partial int cuMemAlloc(out ulong devicePtr, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemFree_v2")] public static partial int cuMemFree(ulong devicePtr);
    [LibraryImport(Lib, EntryPoint = "cuMemAllocHost_v2")] public static partial int cuMemAllocHost(out nint hostPtr, nuint bytes);
    [LibraryImport(Lib)] public static partial int cuMemFreeHost(nint hostPtr);
    [LibraryImport(Lib, EntryPoint = "cuMemGetInfo_v2")] public static partial int cuMemGetInfo(out nuint free, out nuint total);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")] public static partial int cuMemcpyHtoDAsync(ulong dst, void* src, nuint bytes, nint stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoHAsync_v2")] public static partial int cuMemcpyDtoHAsync(void* dst, ulong src, nuint bytes, nint stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoDAsync_v2")] public static partial int cuMemcpyDtoDAsync(ulong dst, ulong src, nuint bytes, nint stream);
    [LibraryImport(Lib)] public static partial int cuMemsetD8Async(ulong dst, byte value, nuint count, nint stream);
    [LibraryImport(Lib)] public static partial int cuMemsetD32Async(ulong dst, uint value, nuint count, nint stream);

    [LibraryImport(Lib)] public static partial int cuStreamCreate(out nint stream, uint flags);
    [LibraryImport(Lib)] public static partial int cuStreamSynchronize(nint stream);
    [LibraryImport(Lib, EntryPoint = "cuStreamDestroy_v2")] public static partial int cuStreamDestroy(nint stream);
    [LibraryImport(Lib)] public static partial int cuEventCreate(out nint evt, uint flags);
    [LibraryImport(Lib)] public static partial int cuEventRecord(nint evt, nint stream);
    [LibraryImport(Lib)] public static partial int cuEventSynchronize(nint evt);
    [LibraryImport(Lib)] public static partial int cuEventElapsedTime(out float milliseconds, nint start, nint end);
    [LibraryImport(Lib, EntryPoint = "cuEventDestroy_v2")] public static partial int cuEventDestroy(nint evt);

    [LibraryImport(Lib)] public static partial int cuModuleLoadData(out nint module, void* image);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int cuModuleGetFunction(out nint function, nint module, string name);
    [LibraryImport(Lib)] public static partial int cuModuleUnload(nint module);
    [LibraryImport(Lib)]
    public static partial int cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemBytes, nint stream, void** kernelParams, void** extra);

    [LibraryImport(Lib)] public static partial int cuGetErrorName(int error, out nint name);
    [LibraryImport(Lib)] public static partial int cuGetErrorString(int error, out nint description);

    /// <summary>The driver's name for a CUresult, e.g. CUDA_ERROR_OUT_OF_MEMORY.</summary>
    public static string ErrorName(int result) =>
        cuGetErrorName(result, out var p) == 0 && p != 0 ? Marshal.PtrToStringUTF8(p) ?? $"CUresult {result}" : $"CUresult {result}";

    /// <summary>The driver's description of a CUresult.</summary>
    public static string ErrorString(int result) =>
        cuGetErrorString(result, out var p) == 0 && p != 0 ? Marshal.PtrToStringUTF8(p) ?? "unknown error" : "unknown error";

    /// <summary>Throws <see cref="CudaException"/> with the driver's error name and description unless <paramref name="result"/> is 0.</summary>
    public static void Check(int result, string call)
    {
        if (result != 0) throw new CudaException("CUDA driver", call, result, ErrorName(result), ErrorString(result));
    }
}
