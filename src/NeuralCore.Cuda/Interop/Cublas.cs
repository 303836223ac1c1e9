using System.Runtime.InteropServices;

namespace NeuralCore.Cuda.Interop;

/// <summary>
/// cuBLAS (<c>libcublas.so.13/.12/.11</c>, with cuBLASLt preloaded): handle, stream, math mode and FP32 GEMM.
/// cuBLAS is column-major; <see cref="NeuralCore.Cuda.CudaBackend"/> maps row-major products onto it by
/// computing the transposed product.
/// </summary>
internal static unsafe partial class Cublas
{
    private const string Lib = "cublas";

    static Cublas() => NativeLibraries.EnsureRegistered();

    /// <summary>CUBLAS_OP_N.</summary>
    public const int OpN = 0;
    /// <summary>CUBLAS_OP_T.</summary>
    public const int OpT = 1;
    /// <summary>CUBLAS_DEFAULT_MATH: exact FP32 (no TF32) for single-precision GEMM.</summary>
    public const int DefaultMath = 0;
    /// <summary>CUBLAS_TF32_TENSOR_OP_MATH: FP32 GEMM may round inputs to TF32 on Ampere and newer.</summary>
    public const int Tf32TensorOpMath = 3;
    /// <summary>libraryPropertyType MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL.</summary>
    public const int MajorVersion = 0, MinorVersion = 1, PatchLevel = 2;

    [LibraryImport(Lib, EntryPoint = "cublasCreate_v2")] public static partial int cublasCreate(out nint handle);
    [LibraryImport(Lib, EntryPoint = "cublasDestroy_v2")] public static partial int cublasDestroy(nint handle);
    [LibraryImport(Lib, EntryPoint = "cublasSetStream_v2")] public static partial int cublasSetStream(nint handle, nint stream);
    [LibraryImport(Lib)] public static partial int cublasSetMathMode(nint handle, int mode);
    [LibraryImport(Lib)] public static partial int cublasGetProperty(int type, out int value);

    [LibraryImport(Lib, EntryPoint = "cublasSgemm_v2")]
    public static partial int cublasSgemm(nint handle, int transA, int transB, int m, int n, int k,
        float* alpha, ulong a, int lda, ulong b, int ldb, float* beta, ulong c, int ldc);

    [LibraryImport(Lib)]
    public static partial int cublasSgemmStridedBatched(nint handle, int transA, int transB, int m, int n, int k,
        float* alpha, ulong a, int lda, long strideA, ulong b, int ldb, long strideB, float* beta, ulong c, int ldc, long strideC, int batchCount);

    [LibraryImport(Lib)] public static partial nint cublasGetStatusName(int status);
    [LibraryImport(Lib)] public static partial nint cublasGetStatusString(int status);

    /// <summary>The cuBLAS version as major.minor.patch.</summary>
    public static string Version()
    {
        Check(cublasGetProperty(MajorVersion, out var major), "cublasGetProperty");
        Check(cublasGetProperty(MinorVersion, out var minor), "cublasGetProperty");
        Check(cublasGetProperty(PatchLevel, out var patch), "cublasGetProperty");
        return $"{major}.{minor}.{patch}";
    }

    /// <summary>Throws <see cref="CudaException"/> with cuBLAS's status name and description unless <paramref name="status"/> is success.</summary>
    public static void Check(int status, string call)
    {
        if (status == 0) return;
        var name = Marshal.PtrToStringUTF8(cublasGetStatusName(status)) ?? $"cublasStatus {status}";
        var text = Marshal.PtrToStringUTF8(cublasGetStatusString(status)) ?? name;
        throw new CudaException("cuBLAS", call, status, name, text);
    }
}
