namespace NeuralCore.Backends.Cpu;

// Entry points for kernels that build the packed B micro-panels themselves (the implicit-GEMM convolution gathers its
// input straight into them instead of writing im2col columns for the driver to pack again).
public static unsafe partial class Gemm
{
    /// <summary>Columns of one packed B micro-panel of the AVX-512 kernel: panel row p holds 32 consecutive floats.</summary>
    internal const int PanelColumns = Nr512;

    /// <summary>Floats <see cref="PackRows"/> writes for an m x k matrix (m rounded up to whole micro-panels).</summary>
    internal static long PackedRowsLength(int m, int k) => (long)((m + Mr512 - 1) / Mr512) * Mr512 * k;

    /// <summary>Packs the row-major m x k matrix <paramref name="a"/> into the AVX-512 kernel's A micro-panels.</summary>
    internal static void PackRows(float* a, int lda, int m, int k, float* dst) => PackA(false, a, lda, 0, m, 0, k, dst, Mr512);

    /// <summary>Rows of one packed A micro-panel of the AVX-512 kernel.</summary>
    internal const int PanelRows = Mr512;

    /// <summary>Floats <see cref="PackColumnsOfTranspose"/> writes for the n x k matrix b (n rounded up to whole panels).</summary>
    internal static long PackedColumnsLength(int n, int k) => (long)((n + Nr512 - 1) / Nr512) * Nr512 * k;

    /// <summary>Packs op(B) = b^T, for the row-major n x k matrix b, into the AVX-512 kernel's 32-column B micro-panels.</summary>
    internal static void PackColumnsOfTranspose(float* b, int ldb, int n, int k, float* dst) => PackB(true, b, ldb, 0, k, 0, n, dst, Nr512);

    /// <summary>tile[8, 32] = A B for one packed A micro-panel (k x 8) and one packed B micro-panel (k x 32). Needs AVX-512.</summary>
    internal static void MultiplyTile(int k, float* a, float* b, float* tile) => Kernel512(k, a, b, Nr512, tile, Nr512, 1f, 0f);

    /// <summary>c[8, 32] = A B for one packed A micro-panel (k x 8) and a B micro-panel of k rows <paramref name="ldb"/> floats apart, stored <paramref name="ldc"/> floats per row. Needs AVX-512.</summary>
    internal static void MultiplyTileStrided(int k, float* a, float* b, int ldb, float* c, int ldc) => Kernel512(k, a, b, ldb, c, ldc, 1f, 0f);

    /// <summary>The first 4 rows of <see cref="MultiplyTileStrided"/>'s tile, written to <paramref name="tile"/> with row stride 32, when the others would be padding. Needs AVX-512.</summary>
    internal static void MultiplyTileHalf(int k, float* a, float* b, int ldb, float* tile) => Kernel512Half(k, a, b, ldb, tile);

    /// <summary>The first 16 columns of <see cref="MultiplyTile"/>'s tile (row stride still 32), when the rest would be padding. Needs AVX-512.</summary>
    internal static void MultiplyTileNarrow(int k, float* a, float* b, float* tile) => Kernel512Narrow(k, a, b, Nr512, tile);

    /// <summary>
    /// Columns <paramref name="column"/> .. + 7 of <see cref="MultiplyTile"/>'s tile (column 0, 8, 16 or 24), the rest
    /// of the tile untouched, when the others would be padding or are not needed. Needs AVX-512.
    /// </summary>
    internal static void MultiplyTileEighth(int k, float* a, float* b, float* tile, int column) =>
        Kernel512Eighth(k, a, b + column, Nr512, tile + column);

    /// <summary>
    /// One full 8 x 32 tile of C = A B (one packed A micro-panel, one B micro-panel of k rows), each value stored as
    /// act(value + bias[i] + residual[i * ldr + j]) in <see cref="ConvKernels.EpilogueVector(System.Runtime.Intrinsics.Vector512{float}, float, bool, System.Runtime.Intrinsics.Vector512{float}, bool, int)"/>'s order (kind 0: no
    /// activation, 1: ReLU, 2: Hardswish); bias and residual may be null. Needs AVX-512.
    /// </summary>
    internal static void MultiplyTileWithEpilogue(int k, float* a, float* b, float* c, int ldc, float* bias, float* residual, long ldr, int kind)
    {
        var store = new EpilogueStore(c, ldc, bias, residual, ldr, kind);
        Kernel512(k, a, b, Nr512, ref store);
    }

    /// <summary>
    /// C[0..m, 0..cols) = A B for A packed by <see cref="PackRows"/> and one B micro-panel (k rows of
    /// <see cref="PanelColumns"/> floats; columns past <paramref name="cols"/> are ignored). Needs AVX-512
    /// (<see cref="KernelKind.Vector512"/>); <paramref name="tile"/> holds 8 x 32 floats for the edge tiles.
    /// </summary>
    internal static void MultiplyPanel(int m, int k, float* packedA, float* panel, float* c, int ldc, int cols, float* tile)
    {
        for (int i = 0; i < m; i += Mr512)
        {
            MicroTile(KernelKind.Vector512, k, packedA + (long)i * k, panel, c + (long)i * ldc, ldc, 1f, 0f,
                Math.Min(Mr512, m - i), cols, tile, Nr512);
        }
    }
}
