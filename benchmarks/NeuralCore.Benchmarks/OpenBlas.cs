using System.Runtime.InteropServices;

namespace NeuralCore.Benchmarks;

/// <summary>
/// The few OpenBLAS entry points the comparison needs. Benchmarks only: the library itself has no
/// native dependency. Debian ships the library as <c>libopenblas0-pthread</c> (or <c>libopenblas0</c>).
/// </summary>
internal static unsafe partial class OpenBlas
{
    private const string Library = "libopenblas.so.0";

    public const int RowMajor = 101;
    public const int NoTrans = 111;
    public const int Trans = 112;

    [LibraryImport(Library, EntryPoint = "cblas_sgemm")]
    public static partial void Sgemm(int order, int transA, int transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    [LibraryImport(Library, EntryPoint = "openblas_set_num_threads")]
    public static partial void SetNumThreads(int threads);

    [LibraryImport(Library, EntryPoint = "openblas_get_config")]
    private static partial byte* GetConfigPointer();

    /// <summary>Version and build configuration, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64".</summary>
    public static string Config => Marshal.PtrToStringAnsi((nint)GetConfigPointer()) ?? "unknown";
}
