using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NeuralCore.Backends.Cpu;

// The dot-product path for C = A * B^T with few columns and a long k: a convolution's weight gradient
// dw [K, C*R*S] = dy [K, PQ] * columns^T when C*R*S is small (the stem: one input channel, 25 taps).
public static unsafe partial class Gemm
{
    // C with at most this many columns, and k at least this long: otherwise the packed path's tiles are fuller. Few
    // rows alone are no reason: the packed path's 8- and 4-row tiles waste little on them, and its 32-column tiles
    // reuse each load more (19 x 171 x 9216, a pruned 3x3 weight gradient: 0.89 ms by dot products, 0.72 ms packed).
    private const int DotMaxN = 30;
    private const int DotMinK = 256;
    // A tile is DotRows rows of A against up to DotCols rows of B: 24 vector accumulators, one register per A row.
    private const int DotRows = 4;
    private const int DotCols = 6;

    // Only where the 512-bit kernels run (tests narrow the kernel width to check the other paths).
    private static bool IsDot(bool transA, bool transB, int m, int n, int k) =>
        transB && !transA && n <= DotMaxN && k >= DotMinK && Kind == KernelKind.Vector512;

    /// <summary>
    /// C = alpha * A * B^T + beta * C with A [m, k] and B [n, k] both read along their rows: each tile of up to 4 x 6
    /// entries of C keeps one 16-lane accumulator per entry over k, then sums its lanes (and the last k % 16 products
    /// in order). No packing, so a narrow C with a long k (where a packed tile would be mostly padding and the packing
    /// passes cost more than the multiplications) runs at the FMA rate.
    /// </summary>
    private static void ByDotProducts(int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        // Columns split into equal tiles of at most DotCols (25 = 5 x 5, not 4 x 6 + 1).
        int colTiles = (n + DotCols - 1) / DotCols;
        float* sums = stackalloc float[DotRows * DotCols];
        for (int i = 0; i < m; i += DotRows)
        {
            int rows = Math.Min(DotRows, m - i);
            for (int t = 0; t < colTiles; t++)
            {
                int j = (int)((long)t * n / colTiles), cols = (int)((long)(t + 1) * n / colTiles) - j;
                DotTile(rows, cols, k, a + (long)i * lda, lda, b + (long)j * ldb, ldb, sums);
                for (int r = 0; r < rows; r++)
                {
                    for (int q = 0; q < cols; q++)
                    {
                        float* cq = c + (long)(i + r) * ldc + j + q;
                        *cq = beta == 0f ? alpha * sums[r * DotCols + q] : alpha * sums[r * DotCols + q] + beta * *cq;
                    }
                }
            }
        }
    }

    private static void DotTile(int rows, int cols, int k, float* a, int lda, float* b, int ldb, float* sums)
    {
        // One specialisation per tile shape, so that the accumulators of absent rows and columns do not exist.
        switch (rows)
        {
            case 4: DotTile<N4>(cols, k, a, lda, b, ldb, sums); break;
            case 3: DotTile<N3>(cols, k, a, lda, b, ldb, sums); break;
            case 2: DotTile<N2>(cols, k, a, lda, b, ldb, sums); break;
            default: DotTile<N1>(cols, k, a, lda, b, ldb, sums); break;
        }
    }

    private static void DotTile<TRows>(int cols, int k, float* a, int lda, float* b, int ldb, float* sums) where TRows : struct, IConstant
    {
        switch (cols)
        {
            case 6: DotTile<TRows, N6>(k, a, lda, b, ldb, sums); break;
            case 5: DotTile<TRows, N5>(k, a, lda, b, ldb, sums); break;
            case 4: DotTile<TRows, N4>(k, a, lda, b, ldb, sums); break;
            case 3: DotTile<TRows, N3>(k, a, lda, b, ldb, sums); break;
            case 2: DotTile<TRows, N2>(k, a, lda, b, ldb, sums); break;
            default: DotTile<TRows, N1>(k, a, lda, b, ldb, sums); break;
        }
    }

    /// <summary>A count known to the JIT: kernels specialised per tile shape take these as type arguments.</summary>
    internal interface IConstant { static abstract int Value { get; } }
    /// <summary>Zero: a part of a kernel left out.</summary>
    internal struct N0 : IConstant { public static int Value => 0; }
    internal struct N1 : IConstant { public static int Value => 1; }
    internal struct N2 : IConstant { public static int Value => 2; }
    internal struct N3 : IConstant { public static int Value => 3; }
    internal struct N4 : IConstant { public static int Value => 4; }
    internal struct N5 : IConstant { public static int Value => 5; }
    internal struct N6 : IConstant { public static int Value => 6; }
    internal struct N7 : IConstant { public static int Value => 7; }
    internal struct N8 : IConstant { public static int Value => 8; }
    internal struct N9 : IConstant { public static int Value => 9; }
    internal struct N10 : IConstant { public static int Value => 10; }
    internal struct N11 : IConstant { public static int Value => 11; }
    internal struct N12 : IConstant { public static int Value => 12; }
    internal struct N13 : IConstant { public static int Value => 13; }
    internal struct N14 : IConstant { public static int Value => 14; }
    internal struct N15 : IConstant { public static int Value => 15; }
    internal struct N16 : IConstant { public static int Value => 16; }
    internal struct N17 : IConstant { public static int Value => 17; }
    internal struct N18 : IConstant { public static int Value => 18; }
    internal struct N19 : IConstant { public static int Value => 19; }
    internal struct N20 : IConstant { public static int Value => 20; }
    internal struct N21 : IConstant { public static int Value => 21; }
    internal struct N22 : IConstant { public static int Value => 22; }
    internal struct N23 : IConstant { public static int Value => 23; }
    internal struct N24 : IConstant { public static int Value => 24; }

    /// <summary>sums[r * 6 + q] = dot(A row r, B row q) for r &lt; TRows, q &lt; TCols.</summary>
    [SkipLocalsInit]
    private static void DotTile<TRows, TCols>(int k, float* a, int lda, float* b, int ldb, float* sums)
        where TRows : struct, IConstant where TCols : struct, IConstant
    {
        int rows = TRows.Value, cols = TCols.Value;
        // Rows and columns past the tile's alias the first, so that no pointer leaves the operands.
        float* a0 = a, a1 = rows > 1 ? a + lda : a, a2 = rows > 2 ? a + 2L * lda : a, a3 = rows > 3 ? a + 3L * lda : a;
        float* b0 = b, b1 = cols > 1 ? b + ldb : b, b2 = cols > 2 ? b + 2L * ldb : b, b3 = cols > 3 ? b + 3L * ldb : b,
            b4 = cols > 4 ? b + 4L * ldb : b, b5 = cols > 5 ? b + 5L * ldb : b;
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default, c04 = default, c05 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default, c14 = default, c15 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default, c24 = default, c25 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default, c34 = default, c35 = default;
        int i = 0;
        for (; i + 16 <= k; i += 16)
        {
            var x0 = Vector512.Load(a0 + i);
            var x1 = rows > 1 ? Vector512.Load(a1 + i) : default;
            var x2 = rows > 2 ? Vector512.Load(a2 + i) : default;
            var x3 = rows > 3 ? Vector512.Load(a3 + i) : default;
            var y = Vector512.Load(b0 + i);
            c00 = Vector512.FusedMultiplyAdd(x0, y, c00); if (rows > 1) c10 = Vector512.FusedMultiplyAdd(x1, y, c10);
            if (rows > 2) c20 = Vector512.FusedMultiplyAdd(x2, y, c20); if (rows > 3) c30 = Vector512.FusedMultiplyAdd(x3, y, c30);
            if (cols > 1)
            {
                y = Vector512.Load(b1 + i);
                c01 = Vector512.FusedMultiplyAdd(x0, y, c01); if (rows > 1) c11 = Vector512.FusedMultiplyAdd(x1, y, c11);
                if (rows > 2) c21 = Vector512.FusedMultiplyAdd(x2, y, c21); if (rows > 3) c31 = Vector512.FusedMultiplyAdd(x3, y, c31);
            }
            if (cols > 2)
            {
                y = Vector512.Load(b2 + i);
                c02 = Vector512.FusedMultiplyAdd(x0, y, c02); if (rows > 1) c12 = Vector512.FusedMultiplyAdd(x1, y, c12);
                if (rows > 2) c22 = Vector512.FusedMultiplyAdd(x2, y, c22); if (rows > 3) c32 = Vector512.FusedMultiplyAdd(x3, y, c32);
            }
            if (cols > 3)
            {
                y = Vector512.Load(b3 + i);
                c03 = Vector512.FusedMultiplyAdd(x0, y, c03); if (rows > 1) c13 = Vector512.FusedMultiplyAdd(x1, y, c13);
                if (rows > 2) c23 = Vector512.FusedMultiplyAdd(x2, y, c23); if (rows > 3) c33 = Vector512.FusedMultiplyAdd(x3, y, c33);
            }
            if (cols > 4)
            {
                y = Vector512.Load(b4 + i);
                c04 = Vector512.FusedMultiplyAdd(x0, y, c04); if (rows > 1) c14 = Vector512.FusedMultiplyAdd(x1, y, c14);
                if (rows > 2) c24 = Vector512.FusedMultiplyAdd(x2, y, c24); if (rows > 3) c34 = Vector512.FusedMultiplyAdd(x3, y, c34);
            }
            if (cols > 5)
            {
                y = Vector512.Load(b5 + i);
                c05 = Vector512.FusedMultiplyAdd(x0, y, c05); if (rows > 1) c15 = Vector512.FusedMultiplyAdd(x1, y, c15);
                if (rows > 2) c25 = Vector512.FusedMultiplyAdd(x2, y, c25); if (rows > 3) c35 = Vector512.FusedMultiplyAdd(x3, y, c35);
            }
        }
        Store(sums, 0, c00, c01, c02, c03, c04, c05, cols);
        if (rows > 1) Store(sums, 1, c10, c11, c12, c13, c14, c15, cols);
        if (rows > 2) Store(sums, 2, c20, c21, c22, c23, c24, c25, cols);
        if (rows > 3) Store(sums, 3, c30, c31, c32, c33, c34, c35, cols);
        // The last k % 16 products, in order.
        for (; i < k; i++)
        {
            for (int r = 0; r < rows; r++)
            {
                float ar = a[r * (long)lda + i];
                for (int q = 0; q < cols; q++) sums[r * DotCols + q] += ar * b[q * (long)ldb + i];
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static void Store(float* sums, int r, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2, Vector512<float> v3,
            Vector512<float> v4, Vector512<float> v5, int cols)
        {
            float* s = sums + r * DotCols;
            s[0] = Vector512.Sum(v0);
            if (cols > 1) s[1] = Vector512.Sum(v1);
            if (cols > 2) s[2] = Vector512.Sum(v2);
            if (cols > 3) s[3] = Vector512.Sum(v3);
            if (cols > 4) s[4] = Vector512.Sum(v4);
            if (cols > 5) s[5] = Vector512.Sum(v5);
        }
    }
}
