using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NeuralCore.Backends.Cpu;

// The direct path for problems too small to repay packing: no scratch buffers, no threads.
public static unsafe partial class Gemm
{
    // Up to this many multiply-adds, packing and waking threads cost more than they save.
    private const long SmallMacs = 1L << 15;
    // C narrower or shorter than a micro-tile wastes most of a tile; up to this size the direct path wins.
    private const long SkinnyMacs = 1L << 22;
    private const int SmallMaxK = 4096;

    private static bool IsSmall(bool transB, int m, int n, int k)
    {
        if (k > SmallMaxK) return false;
        long macs = (long)m * n * k;
        // With B transposed the direct path is dot products, which only win when C is skinny.
        return (macs <= SmallMacs && !transB) || ((n < 16 || m < 4) && macs <= SkinnyMacs);
    }

    /// <summary>
    /// Straight from the operands, in registers. B not transposed: blocks of 4 rows x 16 columns of
    /// C, each the sum over k of broadcast op(A) values times 16-wide pieces of rows of B (8
    /// accumulators), then 8-wide pieces row by row. B transposed, and the last few columns: dot
    /// products of contiguous rows.
    /// </summary>
    [SkipLocalsInit]
    private static void Small(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda,
        float* b, int ldb, float beta, float* c, int ldc)
    {
        // Rows of op(A) when A is transposed, gathered contiguous at stride k.
        float* rows = stackalloc float[transA ? 4 * k : 1];
        if (!transB && n < 16 && k <= NarrowMaxK && Vector256.IsHardwareAccelerated)
        {
            Narrow(transA, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, rows);
            return;
        }
        bool vector = !transB && Vector256.IsHardwareAccelerated;
        int n16 = vector ? n / 16 * 16 : 0;
        int i = 0;
        if (n16 > 0)
        {
            for (; i + 4 <= m; i += 4)
            {
                float* a0 = RowsOfA(transA, a, lda, i, 4, k, rows, out int stride);
                for (int j = 0; j < n16; j += 16) Small4x16(k, a0, stride, b + j, ldb, alpha, beta, c + (long)i * ldc + j, ldc);
                for (int r = 0; r < 4; r++) SmallRow(a0 + (long)r * stride, b, ldb, transB, n16, n, k, alpha, beta, c + (long)(i + r) * ldc);
            }
        }
        for (; i < m; i++)
        {
            float* ai = RowsOfA(transA, a, lda, i, 1, k, rows, out _);
            SmallRow(ai, b, ldb, transB, 0, n, k, alpha, beta, c + (long)i * ldc);
        }
    }

    // B is copied into a zero-padded [k, 16] block on the stack (64 KiB at most).
    private const int NarrowMaxK = 1024;

    /// <summary>
    /// C with fewer than 16 columns (1 x 6 feature maps of one sample): B [k, n] is copied into a zero-padded [k, w]
    /// block (w = 8 or 16) so that every row of B is whole vectors, then blocks of rows of C accumulate w-wide.
    /// </summary>
    [SkipLocalsInit]
    private static void Narrow(bool transA, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb,
        float beta, float* c, int ldc, float* rows)
    {
        int width = n <= 8 ? 8 : 16;
        float* packed = stackalloc float[k * width];
        PackNarrow(b, ldb, n, k, width, packed);
        float* result = stackalloc float[8 * 16];
        int i = 0;
        if (width == 8)
        {
            float* aRows = stackalloc float[transA ? 8 * k : 1];
            for (; i + 8 <= m; i += 8)
            {
                float* a0 = RowsOfA(transA, a, lda, i, 8, k, aRows, out int stride);
                Small8x8(k, a0, stride, packed, result);
                for (int r = 0; r < 8; r++) StoreNarrow(c + (long)(i + r) * ldc, result + r * 8, n, alpha, beta);
            }
        }
        else
        {
            for (; i + 4 <= m; i += 4)
            {
                float* a0 = RowsOfA(transA, a, lda, i, 4, k, rows, out int stride);
                Small4x16(k, a0, stride, packed, 16, 1f, 0f, result, 16);
                for (int r = 0; r < 4; r++) StoreNarrow(c + (long)(i + r) * ldc, result + r * 16, n, alpha, beta);
            }
        }
        for (; i < m; i++)
        {
            float* ai = RowsOfA(transA, a, lda, i, 1, k, rows, out _);
            Vector256<float> lo = default, hi = default;
            for (int p = 0; p < k; p++)
            {
                var av = Vector256.Create(ai[p]);
                lo = Vector256.FusedMultiplyAdd(av, Vector256.Load(packed + p * width), lo);
                if (width == 16) hi = Vector256.FusedMultiplyAdd(av, Vector256.Load(packed + p * width + 8), hi);
            }
            lo.Store(result);
            hi.Store(result + 8);
            StoreNarrow(c + (long)i * ldc, result, n, alpha, beta);
        }
    }

    /// <summary>packed [k, width] = B [k, n] (row stride ldb) with zero columns n..width-1.</summary>
    private static void PackNarrow(float* b, int ldb, int n, int k, int width, float* packed)
    {
        // Whole-vector loads read past a row's n values into the next row; the last rows, where that would run past
        // the end of B, are copied value by value.
        long extent = (long)(k - 1) * ldb + n;
        var lane = Vector256.Create(0f, 1, 2, 3, 4, 5, 6, 7);
        var keepLo = Vector256.LessThan(lane, Vector256.Create((float)n));
        var keepHi = Vector256.LessThan(lane + Vector256.Create(8f), Vector256.Create((float)n));
        int p = 0;
        for (; p < k && (long)p * ldb + width <= extent; p++)
        {
            float* src = b + (long)p * ldb;
            float* dst = packed + p * width;
            Vector256.ConditionalSelect(keepLo, Vector256.Load(src), Vector256<float>.Zero).Store(dst);
            if (width == 16) Vector256.ConditionalSelect(keepHi, Vector256.Load(src + 8), Vector256<float>.Zero).Store(dst + 8);
        }
        for (; p < k; p++)
        {
            float* src = b + (long)p * ldb;
            float* dst = packed + p * width;
            int j = 0;
            for (; j < n; j++) dst[j] = src[j];
            for (; j < width; j++) dst[j] = 0f;
        }
    }

    /// <summary>sums [8, 8] = 8 contiguous rows of op(A) (row stride lda) times packed B [k, 8].</summary>
    private static void Small8x8(int k, float* a, int lda, float* b, float* sums)
    {
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        float* a1 = a + lda, a2 = a + 2L * lda, a3 = a + 3L * lda, a4 = a + 4L * lda, a5 = a + 5L * lda, a6 = a + 6L * lda, a7 = a + 7L * lda;
        for (int p = 0; p < k; p++)
        {
            var bp = Vector256.Load(b + p * 8);
            c0 = Vector256.FusedMultiplyAdd(Vector256.Create(a[p]), bp, c0);
            c1 = Vector256.FusedMultiplyAdd(Vector256.Create(a1[p]), bp, c1);
            c2 = Vector256.FusedMultiplyAdd(Vector256.Create(a2[p]), bp, c2);
            c3 = Vector256.FusedMultiplyAdd(Vector256.Create(a3[p]), bp, c3);
            c4 = Vector256.FusedMultiplyAdd(Vector256.Create(a4[p]), bp, c4);
            c5 = Vector256.FusedMultiplyAdd(Vector256.Create(a5[p]), bp, c5);
            c6 = Vector256.FusedMultiplyAdd(Vector256.Create(a6[p]), bp, c6);
            c7 = Vector256.FusedMultiplyAdd(Vector256.Create(a7[p]), bp, c7);
        }
        c0.Store(sums); c1.Store(sums + 8); c2.Store(sums + 16); c3.Store(sums + 24);
        c4.Store(sums + 32); c5.Store(sums + 40); c6.Store(sums + 48); c7.Store(sums + 56);
    }

    private static void StoreNarrow(float* c, float* sums, int n, float alpha, float beta)
    {
        for (int j = 0; j < n; j++) c[j] = beta == 0f ? sums[j] * alpha : MathF.FusedMultiplyAdd(sums[j], alpha, beta * c[j]);
    }

    /// <summary>Rows [i, i + count) of op(A), each k contiguous values, <paramref name="stride"/> apart.</summary>
    private static float* RowsOfA(bool transA, float* a, int lda, int i, int count, int k, float* buffer, out int stride)
    {
        if (!transA)
        {
            stride = lda;
            return a + (long)i * lda;
        }
        stride = k;
        for (int r = 0; r < count; r++)
        {
            for (int p = 0; p < k; p++) buffer[r * k + p] = a[(long)p * lda + i + r];
        }
        return buffer;
    }

    /// <summary>Columns [j0, n) of one row of C from a contiguous row of op(A).</summary>
    private static void SmallRow(float* ai, float* b, int ldb, bool transB, int j0, int n, int k, float alpha, float beta, float* ci)
    {
        int j = j0;
        if (!transB && Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(alpha);
            var vb = Vector256.Create(beta);
            for (; j + 8 <= n; j += 8)
            {
                var acc = Vector256<float>.Zero;
                float* bj = b + j;
                for (int p = 0; p < k; p++) acc = Vector256.FusedMultiplyAdd(Vector256.Create(ai[p]), Vector256.Load(bj + (long)p * ldb), acc);
                var result = beta == 0f ? acc * va : Vector256.FusedMultiplyAdd(acc, va, vb * Vector256.Load(ci + j));
                result.Store(ci + j);
            }
        }
        for (; j < n; j++)
        {
            float sum = transB ? Dot(ai, 1, b + (long)j * ldb, 1, k) : Dot(ai, 1, b + j, ldb, k);
            ci[j] = beta == 0f ? sum * alpha : MathF.FusedMultiplyAdd(sum, alpha, beta * ci[j]);
        }
    }

    /// <summary>C[4, 16] (row stride ldc) from 4 contiguous rows of op(A) (row stride lda) and B[k, 16] (row stride ldb).</summary>
    private static void Small4x16(int k, float* a, int lda, float* b, int ldb, float alpha, float beta, float* c, int ldc)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
        float* a1p = a + lda, a2p = a + 2L * lda, a3p = a + 3L * lda;
        for (int p = 0; p < k; p++)
        {
            float* bp = b + (long)p * ldb;
            Vector256<float> b0 = Vector256.Load(bp), b1 = Vector256.Load(bp + 8);
            var a0 = Vector256.Create(a[p]);
            c00 = Vector256.FusedMultiplyAdd(a0, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(a0, b1, c01);
            var a1 = Vector256.Create(a1p[p]);
            c10 = Vector256.FusedMultiplyAdd(a1, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(a1, b1, c11);
            var a2 = Vector256.Create(a2p[p]);
            c20 = Vector256.FusedMultiplyAdd(a2, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(a2, b1, c21);
            var a3 = Vector256.Create(a3p[p]);
            c30 = Vector256.FusedMultiplyAdd(a3, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(a3, b1, c31);
        }
        StoreSmall(c, c00, c01, alpha, beta);
        StoreSmall(c + ldc, c10, c11, alpha, beta);
        StoreSmall(c + 2 * ldc, c20, c21, alpha, beta);
        StoreSmall(c + 3 * ldc, c30, c31, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreSmall(float* c, Vector256<float> lo, Vector256<float> hi, float alpha, float beta)
    {
        var va = Vector256.Create(alpha);
        if (beta == 0f)
        {
            (lo * va).Store(c);
            (hi * va).Store(c + 8);
        }
        else
        {
            var vb = Vector256.Create(beta);
            Vector256.FusedMultiplyAdd(lo, va, vb * Vector256.Load(c)).Store(c);
            Vector256.FusedMultiplyAdd(hi, va, vb * Vector256.Load(c + 8)).Store(c + 8);
        }
    }

    /// <summary>Dot product of two strided vectors, four independent sums to hide FMA latency.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* x, long incX, float* y, long incY, int count)
    {
        int p = 0;
        if (incX == 1 && incY == 1 && Vector256.IsHardwareAccelerated && count >= 8)
        {
            var acc = Vector256<float>.Zero;
            for (; p + 8 <= count; p += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(x + p), Vector256.Load(y + p), acc);
            float sum = Vector256.Sum(acc);
            for (; p < count; p++) sum = MathF.FusedMultiplyAdd(x[p], y[p], sum);
            return sum;
        }
        float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
        for (; p + 4 <= count; p += 4)
        {
            s0 = MathF.FusedMultiplyAdd(x[p * incX], y[p * incY], s0);
            s1 = MathF.FusedMultiplyAdd(x[(p + 1) * incX], y[(p + 1) * incY], s1);
            s2 = MathF.FusedMultiplyAdd(x[(p + 2) * incX], y[(p + 2) * incY], s2);
            s3 = MathF.FusedMultiplyAdd(x[(p + 3) * incX], y[(p + 3) * incY], s3);
        }
        for (; p < count; p++) s0 = MathF.FusedMultiplyAdd(x[p * incX], y[p * incY], s0);
        return (s0 + s1) + (s2 + s3);
    }
}
