using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

// Micro-kernels and packing. A packed A micro-panel holds, for each k, MR consecutive values of
// a column of op(A) (rows past the edge are zero); a packed B micro-panel holds, for each k, NR
// consecutive values of a row of op(B) (columns past the edge are zero). A micro-kernel computes
// one MR x NR tile of C from one micro-panel of each.
public static unsafe partial class Gemm
{
    private const int Mr512 = 8, Nr512 = 32;
    private const int Mr256 = 6, Nr256 = 16;
    private const int MrScalar = 4, NrScalar = 8;
    private const int MaxTile = Mr512 * Nr512;
    private const int PrefetchRows = 8;

    /// <summary>
    /// Computes one tile of C from packed panels. Full tiles go straight to C; edge tiles
    /// (rows &lt; MR or cols &lt; NR) are computed into <paramref name="tile"/> and merged, with the
    /// same rounding as the full path so that the split between threads never changes a result.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MicroTile(KernelKind kind, int kc, float* a, float* b, float* c, int ldc, float alpha, float beta,
        int rows, int cols, float* tile, int ldb)
    {
        switch (kind)
        {
            case KernelKind.Vector512:
                // B is a packed micro-panel (ldb = NR), or op(B) read where it lies (ldb: its row stride).
                if (rows == Mr512 && cols == Nr512)
                {
                    Kernel512(kc, a, b, ldb, c, ldc, alpha, beta);
                }
                else
                {
                    // An edge tile computes only the rows it has (19 = 8 + 8 + 3 output channels, 38 = 32 + 6) and skips
                    // the micro-panel's zero rows; one of at most 16 columns (the last panel of 168 = 5 x 32 + 8 columns)
                    // and more than 4 rows skips its zero columns instead, at most 8 of them in 256-bit vectors (the
                    // 1x1 38->76 weight gradient on MNIST's 1 x 6 maps, dw [76, 32 + 6]: 162.5 -> 151.9 µs).
                    if (rows <= Mr512 / 2 || (rows < Mr512 && cols > Nr512 / 2)) Kernel512FirstRows(rows, kc, a, b, ldb, tile);
                    else if (cols <= Nr512 / 4) Kernel512Eighth(kc, a, b, ldb, tile);
                    else if (cols <= Nr512 / 2) Kernel512Narrow(kc, a, b, ldb, tile);
                    else Kernel512(kc, a, b, ldb, tile, Nr512, 1f, 0f);
                    Merge(tile, Nr512, c, ldc, rows, cols, alpha, beta);
                }
                break;
            case KernelKind.Vector256:
                if (rows == Mr256 && cols == Nr256)
                {
                    Kernel256(kc, a, b, c, ldc, alpha, beta);
                }
                else
                {
                    Kernel256(kc, a, b, tile, Nr256, 1f, 0f);
                    Merge(tile, Nr256, c, ldc, rows, cols, alpha, beta);
                }
                break;
            default:
                KernelScalar(kc, a, b, tile);
                Merge(tile, NrScalar, c, ldc, rows, cols, alpha, beta);
                break;
        }
    }

    /// <summary>C = alpha * tile + beta * C over rows x cols, rounding as the vector kernels do.</summary>
    private static void Merge(float* tile, int ldt, float* c, int ldc, int rows, int cols, float alpha, float beta)
    {
        if (ldt == Nr512 && Avx512F.IsSupported)
        {
            // The 512-bit kernels' partial tiles (the pruned model's 38 = 32 + 6 and 76 = 72 + 4 output channels, the
            // last columns of a chunk) in masked vectors: element by element this took 10-20 % of a 38 x 384 x 38 GEMM.
            var low = ConvKernels.FirstLanes(cols);
            var high = ConvKernels.FirstLanes(cols - 16);
            var a = Vector512.Create(alpha);
            var b = Vector512.Create(beta);
            for (int i = 0; i < rows; i++)
            {
                float* t = tile + i * ldt;
                float* r = c + (long)i * ldc;
                MergeVector(t, r, low, a, b, beta);
                if (cols > 16) MergeVector(t + 16, r + 16, high, a, b, beta);
            }
            return;
        }
        for (int i = 0; i < rows; i++)
        {
            float* t = tile + i * ldt;
            float* r = c + (long)i * ldc;
            if (beta == 0f)
            {
                for (int j = 0; j < cols; j++) r[j] = t[j] * alpha;
            }
            else
            {
                for (int j = 0; j < cols; j++) r[j] = MathF.FusedMultiplyAdd(t[j], alpha, beta * r[j]);
            }
        }
    }

    /// <summary>r = t * alpha (beta 0, C not read) or t * alpha + beta * r in one rounding, over the lanes of <paramref name="mask"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MergeVector(float* t, float* r, Vector512<float> mask, Vector512<float> alpha, Vector512<float> beta, float betaValue)
    {
        var v = Vector512.Load(t);
        var merged = betaValue == 0f ? v * alpha : Vector512.FusedMultiplyAdd(v, alpha, beta * Avx512F.MaskLoad(r, mask, Vector512<float>.Zero));
        Avx512F.MaskStore(r, mask, merged);
    }

    /// <summary>4 x 8 tile in plain arithmetic, written to <paramref name="tile"/> (row stride 8).</summary>
    private static void KernelScalar(int kc, float* a, float* b, float* tile)
    {
        for (int i = 0; i < MrScalar * NrScalar; i++) tile[i] = 0f;
        for (int p = 0; p < kc; p++)
        {
            for (int i = 0; i < MrScalar; i++)
            {
                float ai = a[i];
                float* t = tile + i * NrScalar;
                for (int j = 0; j < NrScalar; j++) t[j] = MathF.FusedMultiplyAdd(ai, b[j], t[j]);
            }
            a += MrScalar;
            b += NrScalar;
        }
    }

    /// <summary>Packs rows [ic, ic + mc) x columns [pc, pc + kc) of op(A) into MR-row micro-panels.</summary>
    private static void PackA(bool transA, float* a, int lda, int ic, int mc, int pc, int kc, float* dst, int mr)
    {
        for (int ir = 0; ir < mc; ir += mr)
        {
            int rows = Math.Min(mr, mc - ir);
            if (!transA)
            {
                // A is m x k: each row of the panel is contiguous in k; write it with stride MR,
                // 8 x 8 blocks at a time where the panel is 8 rows tall.
                int p0 = 0;
                if (Avx.IsSupported && mr == 8 && rows == 8)
                {
                    float* src = a + (long)(ic + ir) * lda + pc;
                    for (; p0 + 8 <= kc; p0 += 8) Transpose8x8(src + p0, lda, dst + p0 * 8, 8);
                }
                for (int r = 0; r < rows; r++)
                {
                    float* src = a + (long)(ic + ir + r) * lda + pc;
                    float* d = dst + r;
                    for (int p = p0; p < kc; p++) d[p * mr] = src[p];
                }
                for (int r = rows; r < mr; r++)
                {
                    float* d = dst + r;
                    for (int p = 0; p < kc; p++) d[p * mr] = 0f;
                }
            }
            else
            {
                // A is k x m: the MR values for one k are already contiguous.
                for (int p = 0; p < kc; p++)
                {
                    float* src = a + (long)(pc + p) * lda + ic + ir;
                    float* d = dst + p * mr;
                    int r = 0;
                    for (; r < rows; r++) d[r] = src[r];
                    for (; r < mr; r++) d[r] = 0f;
                }
            }
            dst += mr * kc;
        }
    }

    /// <summary>Packs rows [pc, pc + kc) x columns [jc, jc + nc) of op(B) into NR-column micro-panels.</summary>
    [SkipLocalsInit]
    private static void PackB(bool transB, float* b, int ldb, int pc, int kc, int jc, int nc, float* dst, int nr)
    {
        int full = nc / nr * nr;
        if (!transB)
        {
            // B is k x n. Walk each source row once, end to end, and scatter its NR-wide pieces to
            // the panels: one long sequential read per row keeps the hardware prefetcher on it,
            // where walking panel by panel would touch kc rows for every NR columns.
            for (int p = 0; p < kc; p++)
            {
                float* src = b + (long)(pc + p) * ldb + jc;
                float* d = dst + p * nr;
                int jr = 0;
                for (; jr < full; jr += nr)
                {
                    if (Sse.IsSupported) Sse.Prefetch0(src + jr + PrefetchRows * (long)ldb);
                    CopyRow(src + jr, d + (long)jr * kc, nr);
                }
                if (jr < nc)
                {
                    float* dt = d + (long)jr * kc;
                    int j = 0;
                    for (; j < nc - jr; j++) dt[j] = src[jr + j];
                    for (; j < nr; j++) dt[j] = 0f;
                }
            }
            return;
        }
        // A last group of fewer than 8 columns is copied into 8 zero-padded rows first (for kc up to this), so that it
        // takes the 8 x 8 transposes too instead of kc strided stores per column.
        const int MaxGroupCopy = 512;
        float* group = stackalloc float[Avx.IsSupported && nr % 8 == 0 && kc <= MaxGroupCopy ? 8 * kc : 0];
        for (int jr = 0; jr < nc; jr += nr)
        {
            // B is n x k: each column of the panel is contiguous in k; write it with stride NR,
            // 8 x 8 blocks at a time for each group of 8 columns.
            int cols = Math.Min(nr, nc - jr);
            int j0 = 0;
            if (Avx.IsSupported && nr % 8 == 0)
            {
                int kc8 = kc / 8 * 8;
                for (; j0 < cols; j0 += 8)
                {
                    int width = Math.Min(8, cols - j0);
                    float* src = b + (long)(jc + jr + j0) * ldb + pc;
                    long lds = ldb;
                    if (width < 8)
                    {
                        if (kc > MaxGroupCopy) break;
                        for (int j = 0; j < 8; j++)
                        {
                            var row = new Span<float>(group + j * kc, kc);
                            if (j < width) new ReadOnlySpan<float>(src + j * lds, kc).CopyTo(row);
                            else row.Clear();
                        }
                        src = group;
                        lds = kc;
                    }
                    for (int p = 0; p < kc8; p += 8) Transpose8x8(src + p, lds, dst + p * nr + j0, nr);
                    for (int j = 0; j < 8; j++)
                    {
                        float* sj = src + j * lds;
                        for (int p = kc8; p < kc; p++) dst[p * nr + j0 + j] = sj[p];
                    }
                }
                if (j0 >= cols)
                {
                    // The panel's columns past the last group of 8 are zero, 8 at a time.
                    for (int p = 0; p < kc && j0 < nr; p++)
                        for (int j = j0; j < nr; j += 8) Avx.Store(dst + p * nr + j, Vector256<float>.Zero);
                    dst += nr * kc;
                    continue;
                }
            }
            for (int j = j0; j < cols; j++)
            {
                float* src = b + (long)(jc + jr + j) * ldb + pc;
                float* d = dst + j;
                for (int p = 0; p < kc; p++) d[p * nr] = src[p];
            }
            for (int j = cols; j < nr; j++)
            {
                float* d = dst + j;
                for (int p = 0; p < kc; p++) d[p * nr] = 0f;
            }
            dst += nr * kc;
        }
    }

    /// <summary>
    /// dst[j * ldd + i] = src[i * lds + j] for i &lt; <paramref name="rows"/>, j &lt; <paramref name="columns"/>: 8 x 8
    /// blocks through registers, then the edges in blocks of 4 rows or 4 columns (<see cref="Transpose4x8"/>,
    /// <see cref="Transpose8x4"/>, a 4 x 4 corner), and what is left one float at a time. Reads and writes only the
    /// floats it names. Needs AVX.
    /// </summary>
    /// <remarks>
    /// The Winograd steps with the samples in the lanes transpose every channel's 32 planes of 36 or 18 positions
    /// (MNIST's 6 x 6 and 3 x 6 maps) in and out. The 4 edge positions of 36 went one float at a time before, 128 single
    /// moves per channel against 16 blocks of 8 x 8; with the blocks of 4 a 32 x 36 or 36 x 32 transpose takes about 100
    /// instead of 155 ns (one thread, fully optimized). Compiled fully optimized once, without the profile of its calls:
    /// with dynamic PGO the 32 x 18 and 18 x 32 transposes, which take no block of 4, ran 1.2-1.3x as long as before.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Transpose(float* src, long lds, float* dst, long ldd, int rows, int columns)
    {
        int rows8 = rows & ~7, columns8 = columns & ~7, rows4 = rows & ~3, columns4 = columns & ~3;
        for (int j = 0; j < columns8; j += 8)
        {
            for (int i = 0; i < rows8; i += 8) Transpose8x8(src + i * lds + j, lds, dst + j * ldd + i, ldd);
            if (rows4 > rows8) Transpose4x8(src + rows8 * lds + j, lds, dst + j * ldd + rows8, ldd);
            for (int jj = j; jj < j + 8; jj++)
                for (int i = rows4; i < rows; i++) dst[jj * ldd + i] = src[i * lds + jj];
        }
        if (columns4 > columns8)
        {
            for (int i = 0; i < rows8; i += 8) Transpose8x4(src + i * lds + columns8, lds, dst + columns8 * ldd + i, ldd);
            if (rows4 > rows8) Transpose4x4(src + rows8 * lds + columns8, lds, dst + columns8 * ldd + rows8, ldd);
            for (int jj = columns8; jj < columns4; jj++)
                for (int i = rows4; i < rows; i++) dst[jj * ldd + i] = src[i * lds + jj];
        }
        for (int j = columns4; j < columns; j++)
            for (int i = 0; i < rows; i++) dst[j * ldd + i] = src[i * lds + j];
    }

    /// <summary>The 4 x 4 block at <paramref name="src"/> transposed into <paramref name="dst"/> (row strides <paramref name="lds"/>, <paramref name="ldd"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x4(float* src, long lds, float* dst, long ldd)
    {
        Transpose4x4(Sse.LoadVector128(src), Sse.LoadVector128(src + lds), Sse.LoadVector128(src + 2 * lds), Sse.LoadVector128(src + 3 * lds),
            out var c0, out var c1, out var c2, out var c3);
        Sse.Store(dst, c0);
        Sse.Store(dst + ldd, c1);
        Sse.Store(dst + 2 * ldd, c2);
        Sse.Store(dst + 3 * ldd, c3);
    }

    /// <summary>
    /// The 4 x 8 block at <paramref name="src"/> (4 rows of 8) transposed into 8 rows of 4 at <paramref name="dst"/>: its
    /// two 4 x 4 halves, each through registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x8(float* src, long lds, float* dst, long ldd)
    {
        Transpose4x4(src, lds, dst, ldd);
        Transpose4x4(src + 4, lds, dst + 4 * ldd, ldd);
    }

    /// <summary>
    /// The 8 x 4 block at <paramref name="src"/> (8 rows of 4) transposed into 4 rows of 8 at <paramref name="dst"/>: rows
    /// 0-3 and 4-7 each as a 4 x 4 transpose, joined into one 256-bit store per output row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x4(float* src, long lds, float* dst, long ldd)
    {
        Transpose4x4(Sse.LoadVector128(src), Sse.LoadVector128(src + lds), Sse.LoadVector128(src + 2 * lds), Sse.LoadVector128(src + 3 * lds),
            out var a0, out var a1, out var a2, out var a3);
        Transpose4x4(Sse.LoadVector128(src + 4 * lds), Sse.LoadVector128(src + 5 * lds), Sse.LoadVector128(src + 6 * lds), Sse.LoadVector128(src + 7 * lds),
            out var b0, out var b1, out var b2, out var b3);
        Avx.Store(dst, Vector256.Create(a0, b0));
        Avx.Store(dst + ldd, Vector256.Create(a1, b1));
        Avx.Store(dst + 2 * ldd, Vector256.Create(a2, b2));
        Avx.Store(dst + 3 * ldd, Vector256.Create(a3, b3));
    }

    /// <summary>Columns c0-c3 of the 4 x 4 matrix whose rows are r0-r3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x4(Vector128<float> r0, Vector128<float> r1, Vector128<float> r2, Vector128<float> r3,
        out Vector128<float> c0, out Vector128<float> c1, out Vector128<float> c2, out Vector128<float> c3)
    {
        // t0 = r0[0] r1[0] r0[1] r1[1], t1 = r0[2] r1[2] r0[3] r1[3]; likewise t2, t3 of r2 and r3.
        Vector128<float> t0 = Sse.UnpackLow(r0, r1), t1 = Sse.UnpackHigh(r0, r1);
        Vector128<float> t2 = Sse.UnpackLow(r2, r3), t3 = Sse.UnpackHigh(r2, r3);
        c0 = Sse.MoveLowToHigh(t0, t2);
        c1 = Sse.MoveHighToLow(t2, t0);
        c2 = Sse.MoveLowToHigh(t1, t3);
        c3 = Sse.MoveHighToLow(t3, t1);
    }

    /// <summary>
    /// Transposes the 8 x 8 block at <paramref name="src"/> (row stride <paramref name="lds"/>) into
    /// <paramref name="dst"/> (row stride <paramref name="ldd"/>): row i of the output is column i of the input.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(float* src, long lds, float* dst, long ldd)
    {
        Vector256<float> r0 = Avx.LoadVector256(src), r1 = Avx.LoadVector256(src + lds);
        Vector256<float> r2 = Avx.LoadVector256(src + 2 * lds), r3 = Avx.LoadVector256(src + 3 * lds);
        Vector256<float> r4 = Avx.LoadVector256(src + 4 * lds), r5 = Avx.LoadVector256(src + 5 * lds);
        Vector256<float> r6 = Avx.LoadVector256(src + 6 * lds), r7 = Avx.LoadVector256(src + 7 * lds);
        // Rows a..h. Interleave pairs within each 128-bit lane: t0 = a0 b0 a1 b1 | a4 b4 a5 b5.
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1);
        Vector256<float> t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
        Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5);
        Vector256<float> t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
        // Quads: s0 = a0 b0 c0 d0 | a4 b4 c4 d4.
        Vector256<float> s0 = Avx.Shuffle(t0, t2, 0x44), s1 = Avx.Shuffle(t0, t2, 0xEE);
        Vector256<float> s2 = Avx.Shuffle(t1, t3, 0x44), s3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> s4 = Avx.Shuffle(t4, t6, 0x44), s5 = Avx.Shuffle(t4, t6, 0xEE);
        Vector256<float> s6 = Avx.Shuffle(t5, t7, 0x44), s7 = Avx.Shuffle(t5, t7, 0xEE);
        // Join the lanes of a..d with those of e..h.
        Avx.Store(dst, Avx.Permute2x128(s0, s4, 0x20));
        Avx.Store(dst + ldd, Avx.Permute2x128(s1, s5, 0x20));
        Avx.Store(dst + 2 * ldd, Avx.Permute2x128(s2, s6, 0x20));
        Avx.Store(dst + 3 * ldd, Avx.Permute2x128(s3, s7, 0x20));
        Avx.Store(dst + 4 * ldd, Avx.Permute2x128(s0, s4, 0x31));
        Avx.Store(dst + 5 * ldd, Avx.Permute2x128(s1, s5, 0x31));
        Avx.Store(dst + 6 * ldd, Avx.Permute2x128(s2, s6, 0x31));
        Avx.Store(dst + 7 * ldd, Avx.Permute2x128(s3, s7, 0x31));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRow(float* src, float* dst, int count)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; j + 16 <= count; j += 16) Vector512.Store(Vector512.Load(src + j), dst + j);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; j + 8 <= count; j += 8) Vector256.Store(Vector256.Load(src + j), dst + j);
        }
        for (; j < count; j++) dst[j] = src[j];
    }

    /// <summary>
    /// The first <paramref name="rows"/> rows (1 to 7) of <see cref="Kernel512"/>'s tile, written to
    /// <paramref name="tile"/> with row stride 32: for edge tiles, whose other rows would multiply the micro-panel's
    /// zero padding. With <paramref name="threeQuarters"/> only the rows' first 24 columns
    /// (<see cref="Kernel512ThreeQuartersRows"/>), the others untouched.
    /// </summary>
    private static void Kernel512FirstRows(int rows, int kc, float* a, float* b, int ldb, float* tile, bool threeQuarters = false)
    {
        switch (rows)
        {
            case 1: FirstRows<N1>(threeQuarters, kc, a, b, ldb, tile); break;
            case 2: FirstRows<N2>(threeQuarters, kc, a, b, ldb, tile); break;
            case 3: FirstRows<N3>(threeQuarters, kc, a, b, ldb, tile); break;
            case 4: FirstRows<N4>(threeQuarters, kc, a, b, ldb, tile); break;
            case 5: FirstRows<N5>(threeQuarters, kc, a, b, ldb, tile); break;
            case 6: FirstRows<N6>(threeQuarters, kc, a, b, ldb, tile); break;
            default: FirstRows<N7>(threeQuarters, kc, a, b, ldb, tile); break;
        }
    }

    private static void FirstRows<TRows>(bool threeQuarters, int kc, float* a, float* b, int ldb, float* tile) where TRows : struct, IConstant
    {
        if (threeQuarters) Kernel512ThreeQuartersRows<TRows>(kc, a, b, ldb, tile);
        else Kernel512Rows<TRows>(kc, a, b, ldb, tile);
    }

    /// <summary>
    /// The first TRows rows of <see cref="Kernel512"/>'s tile: the same operands and order of operations for each row,
    /// so the same rounding (each row's sums do not depend on the others), without the rows the tile lacks.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel512Rows<TRows>(int kc, float* a, float* b, int ldb, float* tile) where TRows : struct, IConstant
    {
        int rows = TRows.Value;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector512<float> b0 = Vector512.Load(b), b1 = Vector512.Load(b + 16);
            Vector512<float> ai;
            ai = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(ai, b0, c00); c01 = Vector512.FusedMultiplyAdd(ai, b1, c01);
            if (rows > 1) { ai = Vector512.Create(a[1]); c10 = Vector512.FusedMultiplyAdd(ai, b0, c10); c11 = Vector512.FusedMultiplyAdd(ai, b1, c11); }
            if (rows > 2) { ai = Vector512.Create(a[2]); c20 = Vector512.FusedMultiplyAdd(ai, b0, c20); c21 = Vector512.FusedMultiplyAdd(ai, b1, c21); }
            if (rows > 3) { ai = Vector512.Create(a[3]); c30 = Vector512.FusedMultiplyAdd(ai, b0, c30); c31 = Vector512.FusedMultiplyAdd(ai, b1, c31); }
            if (rows > 4) { ai = Vector512.Create(a[4]); c40 = Vector512.FusedMultiplyAdd(ai, b0, c40); c41 = Vector512.FusedMultiplyAdd(ai, b1, c41); }
            if (rows > 5) { ai = Vector512.Create(a[5]); c50 = Vector512.FusedMultiplyAdd(ai, b0, c50); c51 = Vector512.FusedMultiplyAdd(ai, b1, c51); }
            if (rows > 6) { ai = Vector512.Create(a[6]); c60 = Vector512.FusedMultiplyAdd(ai, b0, c60); c61 = Vector512.FusedMultiplyAdd(ai, b1, c61); }
            a += Mr512;
            b += ldb;
        }
        c00.Store(tile); c01.Store(tile + 16);
        if (rows > 1) { c10.Store(tile + 32); c11.Store(tile + 48); }
        if (rows > 2) { c20.Store(tile + 64); c21.Store(tile + 80); }
        if (rows > 3) { c30.Store(tile + 96); c31.Store(tile + 112); }
        if (rows > 4) { c40.Store(tile + 128); c41.Store(tile + 144); }
        if (rows > 5) { c50.Store(tile + 160); c51.Store(tile + 176); }
        if (rows > 6) { c60.Store(tile + 192); c61.Store(tile + 208); }
    }

    /// <summary>
    /// The first TRows rows of <see cref="Kernel512"/>'s tile's first 24 columns, a 16-lane and an 8-lane vector per row
    /// in one loop: with few rows, twice the independent sums of <see cref="Kernel512Narrow"/> followed by
    /// <see cref="Kernel512Eighth"/>, so the multiply-adds wait less on each other's results. Each row's operands and
    /// order of operations, so its bits. Each row's value of A is broadcast once (from memory) for both vectors.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel512ThreeQuartersRows<TRows>(int kc, float* a, float* b, int ldb, float* tile) where TRows : struct, IConstant
    {
        int rows = TRows.Value;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default;
        Vector256<float> d0 = default, d1 = default, d2 = default, d3 = default, d4 = default, d5 = default, d6 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector512<float> b0 = Vector512.Load(b);
            Vector256<float> b1 = Vector256.Load(b + 16);
            Vector512<float> ai = Vector512.Create(a[0]);
            c0 = Vector512.FusedMultiplyAdd(ai, b0, c0); d0 = Vector256.FusedMultiplyAdd(ai.GetLower(), b1, d0);
            if (rows > 1) { ai = Vector512.Create(a[1]); c1 = Vector512.FusedMultiplyAdd(ai, b0, c1); d1 = Vector256.FusedMultiplyAdd(ai.GetLower(), b1, d1); }
            if (rows > 2) { ai = Vector512.Create(a[2]); c2 = Vector512.FusedMultiplyAdd(ai, b0, c2); d2 = Vector256.FusedMultiplyAdd(ai.GetLower(), b1, d2); }
            if (rows > 3) { ai = Vector512.Create(a[3]); c3 = Vector512.FusedMultiplyAdd(ai, b0, c3); d3 = Vector256.FusedMultiplyAdd(ai.GetLower(), b1, d3); }
            if (rows > 4) { ai = Vector512.Create(a[4]); c4 = Vector512.FusedMultiplyAdd(ai, b0, c4); d4 = Vector256.FusedMultiplyAdd(ai.GetLower(), b1, d4); }
            if (rows > 5) { ai = Vector512.Create(a[5]); c5 = Vector512.FusedMultiplyAdd(ai, b0, c5); d5 = Vector256.FusedMultiplyAdd(ai.GetLower(), b1, d5); }
            if (rows > 6) { ai = Vector512.Create(a[6]); c6 = Vector512.FusedMultiplyAdd(ai, b0, c6); d6 = Vector256.FusedMultiplyAdd(ai.GetLower(), b1, d6); }
            a += Mr512;
            b += ldb;
        }
        c0.Store(tile); d0.Store(tile + 16);
        if (rows > 1) { c1.Store(tile + 32); d1.Store(tile + 48); }
        if (rows > 2) { c2.Store(tile + 64); d2.Store(tile + 80); }
        if (rows > 3) { c3.Store(tile + 96); d3.Store(tile + 112); }
        if (rows > 4) { c4.Store(tile + 128); d4.Store(tile + 144); }
        if (rows > 5) { c5.Store(tile + 160); d5.Store(tile + 176); }
        if (rows > 6) { c6.Store(tile + 192); d6.Store(tile + 208); }
    }

    /// <summary>
    /// The first 16 columns of <see cref="Kernel512"/>'s tile (same operands, same order of operations, so the same
    /// rounding), written to <paramref name="tile"/> with row stride 32: half the multiplications when a B panel's
    /// last 16 columns are padding.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel512Narrow(int kc, float* a, float* b, int ldb, float* tile)
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
        Vector512<float> c4 = default, c5 = default, c6 = default, c7 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector512<float> b0 = Vector512.Load(b);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b0, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), b0, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), b0, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), b0, c3);
            c4 = Vector512.FusedMultiplyAdd(Vector512.Create(a[4]), b0, c4);
            c5 = Vector512.FusedMultiplyAdd(Vector512.Create(a[5]), b0, c5);
            c6 = Vector512.FusedMultiplyAdd(Vector512.Create(a[6]), b0, c6);
            c7 = Vector512.FusedMultiplyAdd(Vector512.Create(a[7]), b0, c7);
            a += Mr512;
            b += ldb;
        }
        c0.Store(tile); c1.Store(tile + 32); c2.Store(tile + 64); c3.Store(tile + 96);
        c4.Store(tile + 128); c5.Store(tile + 160); c6.Store(tile + 192); c7.Store(tile + 224);
    }

    /// <summary>
    /// 8 columns of <see cref="Kernel512"/>'s tile (same order of operations, so the same rounding) from the 8 floats
    /// at <paramref name="b"/> in each B row, written to <paramref name="tile"/> with row stride 32: a quarter of the
    /// multiplications, at twice the rate of 16-lane ones, when a panel has at most 8 columns left (38 = 32 + 6).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel512Eighth(int kc, float* a, float* b, int ldb, float* tile)
    {
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        Vector256<float> c4 = default, c5 = default, c6 = default, c7 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector256<float> b0 = Vector256.Load(b);
            c0 = Vector256.FusedMultiplyAdd(Vector256.Create(a[0]), b0, c0);
            c1 = Vector256.FusedMultiplyAdd(Vector256.Create(a[1]), b0, c1);
            c2 = Vector256.FusedMultiplyAdd(Vector256.Create(a[2]), b0, c2);
            c3 = Vector256.FusedMultiplyAdd(Vector256.Create(a[3]), b0, c3);
            c4 = Vector256.FusedMultiplyAdd(Vector256.Create(a[4]), b0, c4);
            c5 = Vector256.FusedMultiplyAdd(Vector256.Create(a[5]), b0, c5);
            c6 = Vector256.FusedMultiplyAdd(Vector256.Create(a[6]), b0, c6);
            c7 = Vector256.FusedMultiplyAdd(Vector256.Create(a[7]), b0, c7);
            a += Mr512;
            b += ldb;
        }
        c0.Store(tile); c1.Store(tile + 32); c2.Store(tile + 64); c3.Store(tile + 96);
        c4.Store(tile + 128); c5.Store(tile + 160); c6.Store(tile + 192); c7.Store(tile + 224);
    }

    /// <summary>
    /// 8 x 32 tile, 16 zmm accumulators: per k, two loads of B and eight broadcasts of A feed 16 FMAs. B's rows are
    /// <paramref name="ldb"/> floats apart: 32 in a packed micro-panel, the matrix's row stride when read in place.
    /// C = alpha * AB + beta * C.
    /// </summary>
    private static void Kernel512(int kc, float* a, float* b, int ldb, float* c, int ldc, float alpha, float beta)
    {
        if (beta == 0f)
        {
            var store = new ScaledStore(c, ldc, alpha);
            Kernel512(kc, a, b, ldb, ref store);
        }
        else
        {
            var store = new ScaledAddStore(c, ldc, alpha, beta);
            Kernel512(kc, a, b, ldb, ref store);
        }
    }

    /// <summary>
    /// The 8 x 32 tile's sums (the same for every store), handed row by row to <paramref name="store"/>: the JIT
    /// compiles one copy per store type, with the store inlined and the accumulators in registers.
    /// </summary>
    /// <remarks>
    /// Never inlined. Inlined into <see cref="MultiplyTileWithEpilogue"/>, the kernel used up that method's inlining
    /// budget, so the epilogue store's rows became calls; the 16 accumulators then lived across calls, which on x64
    /// Linux preserve no vector register, and the JIT wrote 10 of them to the stack at every step of the loop. That loop
    /// ran at 11-37 GMAC/s, as the stack's alignment fell, instead of 55-63 (a 1x1 128 -> 128 over 32 mel samples, one
    /// thread, Xeon; docs/benchmarks.md, step 121).
    /// </remarks>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel512<TStore>(int kc, float* a, float* b, int ldb, ref TStore store) where TStore : struct, ITileStore
    {
        Vector512<float> c00 = default, c01 = default;
        Vector512<float> c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default;
        Vector512<float> c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default;
        Vector512<float> c70 = default, c71 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector512<float> b0 = Vector512.Load(b), b1 = Vector512.Load(b + 16);
            Vector512<float> ai;
            ai = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(ai, b0, c00); c01 = Vector512.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(ai, b0, c10); c11 = Vector512.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(ai, b0, c20); c21 = Vector512.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(ai, b0, c30); c31 = Vector512.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(ai, b0, c40); c41 = Vector512.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(ai, b0, c50); c51 = Vector512.FusedMultiplyAdd(ai, b1, c51);
            ai = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(ai, b0, c60); c61 = Vector512.FusedMultiplyAdd(ai, b1, c61);
            ai = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(ai, b0, c70); c71 = Vector512.FusedMultiplyAdd(ai, b1, c71);
            a += 8;
            b += ldb;
        }
        store.Row(0, c00, c01);
        store.Row(1, c10, c11);
        store.Row(2, c20, c21);
        store.Row(3, c30, c31);
        store.Row(4, c40, c41);
        store.Row(5, c50, c51);
        store.Row(6, c60, c61);
        store.Row(7, c70, c71);
    }

    /// <summary>
    /// The 8 x 48 tile's sums, with B's rows read where they lie (<paramref name="ldb"/> floats apart): 24 accumulators
    /// fed by three loads of B and eight broadcasts of A per 24 multiply-adds, against two loads per 16 in
    /// <see cref="Kernel512{TStore}"/>, and the weights read once per 48 columns instead of 32. Each value is the same
    /// chain of multiply-adds as there, so the same sums. Never inlined, for the reason given there.
    /// </summary>
    /// <remarks>
    /// With <typeparamref name="TMasked"/> N1 only the first <paramref name="thirdLanes"/> (1 to 15) of B's third vector
    /// are read (a masked load, zeros past them: the last tile of a row of 33-47 columns, <see cref="MultiplyWideRowsMasked"/>);
    /// N0 reads the whole vector, and the mask is never made.
    /// </remarks>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel512Wide<TStore, TMasked>(int kc, float* a, float* b, long ldb, int thirdLanes, ref TStore store)
        where TStore : struct, IWideTileStore where TMasked : struct, IConstant
    {
        var third = TMasked.Value != 0 ? ConvKernels.FirstLanes(thirdLanes) : default;
        Vector512<float> c00 = default, c01 = default, c02 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default;
        Vector512<float> c40 = default, c41 = default, c42 = default;
        Vector512<float> c50 = default, c51 = default, c52 = default;
        Vector512<float> c60 = default, c61 = default, c62 = default;
        Vector512<float> c70 = default, c71 = default, c72 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector512<float> b0 = Vector512.Load(b), b1 = Vector512.Load(b + 16);
            Vector512<float> b2 = TMasked.Value != 0 ? Avx512F.MaskLoad(b + 32, third, Vector512<float>.Zero) : Vector512.Load(b + 32);
            Vector512<float> ai;
            ai = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(ai, b0, c00); c01 = Vector512.FusedMultiplyAdd(ai, b1, c01); c02 = Vector512.FusedMultiplyAdd(ai, b2, c02);
            ai = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(ai, b0, c10); c11 = Vector512.FusedMultiplyAdd(ai, b1, c11); c12 = Vector512.FusedMultiplyAdd(ai, b2, c12);
            ai = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(ai, b0, c20); c21 = Vector512.FusedMultiplyAdd(ai, b1, c21); c22 = Vector512.FusedMultiplyAdd(ai, b2, c22);
            ai = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(ai, b0, c30); c31 = Vector512.FusedMultiplyAdd(ai, b1, c31); c32 = Vector512.FusedMultiplyAdd(ai, b2, c32);
            ai = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(ai, b0, c40); c41 = Vector512.FusedMultiplyAdd(ai, b1, c41); c42 = Vector512.FusedMultiplyAdd(ai, b2, c42);
            ai = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(ai, b0, c50); c51 = Vector512.FusedMultiplyAdd(ai, b1, c51); c52 = Vector512.FusedMultiplyAdd(ai, b2, c52);
            ai = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(ai, b0, c60); c61 = Vector512.FusedMultiplyAdd(ai, b1, c61); c62 = Vector512.FusedMultiplyAdd(ai, b2, c62);
            ai = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(ai, b0, c70); c71 = Vector512.FusedMultiplyAdd(ai, b1, c71); c72 = Vector512.FusedMultiplyAdd(ai, b2, c72);
            a += 8;
            b += ldb;
        }
        store.Row(0, c00, c01, c02);
        store.Row(1, c10, c11, c12);
        store.Row(2, c20, c21, c22);
        store.Row(3, c30, c31, c32);
        store.Row(4, c40, c41, c42);
        store.Row(5, c50, c51, c52);
        store.Row(6, c60, c61, c62);
        store.Row(7, c70, c71, c72);
    }

    /// <summary>
    /// The first TRows rows (1 to 7) of <see cref="Kernel512Wide{TStore, TMasked}"/>'s tile, for an edge tile whose other rows
    /// would multiply the micro-panel's zero padding (57 output channels = 7 x 8 + 1 cost 64 channels' multiply-adds):
    /// each row the same chain of multiply-adds, so the same sums. Never inlined, for the reason given at
    /// <see cref="Kernel512{TStore}"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel512WideRows<TRows, TStore, TMasked>(int kc, float* a, float* b, long ldb, int thirdLanes, ref TStore store)
        where TRows : struct, IConstant where TStore : struct, IWideTileStore where TMasked : struct, IConstant
    {
        int rows = TRows.Value;
        var third = TMasked.Value != 0 ? ConvKernels.FirstLanes(thirdLanes) : default;
        Vector512<float> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default, c20 = default, c21 = default, c22 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c40 = default, c41 = default, c42 = default;
        Vector512<float> c50 = default, c51 = default, c52 = default, c60 = default, c61 = default, c62 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector512<float> b0 = Vector512.Load(b), b1 = Vector512.Load(b + 16);
            Vector512<float> b2 = TMasked.Value != 0 ? Avx512F.MaskLoad(b + 32, third, Vector512<float>.Zero) : Vector512.Load(b + 32);
            Vector512<float> ai;
            ai = Vector512.Create(a[0]); c00 = Vector512.FusedMultiplyAdd(ai, b0, c00); c01 = Vector512.FusedMultiplyAdd(ai, b1, c01); c02 = Vector512.FusedMultiplyAdd(ai, b2, c02);
            if (rows > 1) { ai = Vector512.Create(a[1]); c10 = Vector512.FusedMultiplyAdd(ai, b0, c10); c11 = Vector512.FusedMultiplyAdd(ai, b1, c11); c12 = Vector512.FusedMultiplyAdd(ai, b2, c12); }
            if (rows > 2) { ai = Vector512.Create(a[2]); c20 = Vector512.FusedMultiplyAdd(ai, b0, c20); c21 = Vector512.FusedMultiplyAdd(ai, b1, c21); c22 = Vector512.FusedMultiplyAdd(ai, b2, c22); }
            if (rows > 3) { ai = Vector512.Create(a[3]); c30 = Vector512.FusedMultiplyAdd(ai, b0, c30); c31 = Vector512.FusedMultiplyAdd(ai, b1, c31); c32 = Vector512.FusedMultiplyAdd(ai, b2, c32); }
            if (rows > 4) { ai = Vector512.Create(a[4]); c40 = Vector512.FusedMultiplyAdd(ai, b0, c40); c41 = Vector512.FusedMultiplyAdd(ai, b1, c41); c42 = Vector512.FusedMultiplyAdd(ai, b2, c42); }
            if (rows > 5) { ai = Vector512.Create(a[5]); c50 = Vector512.FusedMultiplyAdd(ai, b0, c50); c51 = Vector512.FusedMultiplyAdd(ai, b1, c51); c52 = Vector512.FusedMultiplyAdd(ai, b2, c52); }
            if (rows > 6) { ai = Vector512.Create(a[6]); c60 = Vector512.FusedMultiplyAdd(ai, b0, c60); c61 = Vector512.FusedMultiplyAdd(ai, b1, c61); c62 = Vector512.FusedMultiplyAdd(ai, b2, c62); }
            a += 8;
            b += ldb;
        }
        store.Row(0, c00, c01, c02);
        if (rows > 1) store.Row(1, c10, c11, c12);
        if (rows > 2) store.Row(2, c20, c21, c22);
        if (rows > 3) store.Row(3, c30, c31, c32);
        if (rows > 4) store.Row(4, c40, c41, c42);
        if (rows > 5) store.Row(5, c50, c51, c52);
        if (rows > 6) store.Row(6, c60, c61, c62);
    }

    /// <summary>Where and how an 8 x 32 tile's rows go once summed (columns 0-15 in lo, 16-31 in hi).</summary>
    private interface ITileStore
    {
        void Row(int i, Vector512<float> lo, Vector512<float> hi);
    }

    /// <summary>Where and how an 8 x 48 tile's rows go once summed (<see cref="Kernel512Wide{TStore, TMasked}"/>; columns 0-15, 16-31, 32-47).</summary>
    private interface IWideTileStore
    {
        void Row(int i, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2);
    }

    /// <summary>C = alpha * AB.</summary>
    private readonly struct ScaledStore(float* c, int ldc, float alpha) : ITileStore, IWideTileStore
    {
        private readonly Vector512<float> _alpha = Vector512.Create(alpha);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Row(int i, Vector512<float> lo, Vector512<float> hi)
        {
            float* r = c + (long)i * ldc;
            (lo * _alpha).Store(r);
            (hi * _alpha).Store(r + 16);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Row(int i, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2)
        {
            float* r = c + (long)i * ldc;
            (v0 * _alpha).Store(r);
            (v1 * _alpha).Store(r + 16);
            (v2 * _alpha).Store(r + 32);
        }
    }

    /// <summary>C = alpha * AB + beta * C.</summary>
    private readonly struct ScaledAddStore(float* c, int ldc, float alpha, float beta) : ITileStore
    {
        private readonly Vector512<float> _alpha = Vector512.Create(alpha), _beta = Vector512.Create(beta);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Row(int i, Vector512<float> lo, Vector512<float> hi)
        {
            float* r = c + (long)i * ldc;
            Vector512.FusedMultiplyAdd(lo, _alpha, _beta * Vector512.Load(r)).Store(r);
            Vector512.FusedMultiplyAdd(hi, _alpha, _beta * Vector512.Load(r + 16)).Store(r + 16);
        }
    }

    /// <summary>
    /// C = act(AB + bias[i] + residual[i, j]): a convolution's epilogue applied while the tile is in registers, in
    /// <see cref="ConvKernels.EpilogueVector(Vector512{float}, float, bool, Vector512{float}, bool, int)"/>'s order.
    /// Which steps it takes are type arguments (<typeparamref name="TKind"/>: 0 no activation, 1 ReLU, 2 Hardswish;
    /// <typeparamref name="TBias"/> and <typeparamref name="TResidual"/>: 1 where present), so each store the JIT compiles
    /// holds only its own steps: with them tested per vector (about 25 instructions and 7 branches a vector), an 8 x 48
    /// tile at 64 input channels ran 10-15 % slower than one with its epilogue written out (<see cref="WithEpilogue"/>
    /// picks the store).
    /// </summary>
    private readonly struct EpilogueStore<TKind, TBias, TResidual>(float* c, int ldc, float* bias, float* residual, long ldr)
        : ITileStore, IWideTileStore
        where TKind : struct, IConstant where TBias : struct, IConstant where TResidual : struct, IConstant
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Row(int i, Vector512<float> lo, Vector512<float> hi)
        {
            var b = TBias.Value != 0 ? Vector512.Create(bias[i]) : default;
            float* r = c + (long)i * ldc, res = TResidual.Value != 0 ? residual + i * ldr : null;
            Apply(lo, b, res).Store(r);
            Apply(hi, b, res + 16).Store(r + 16);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Row(int i, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2)
        {
            var b = TBias.Value != 0 ? Vector512.Create(bias[i]) : default;
            float* r = c + (long)i * ldc, res = TResidual.Value != 0 ? residual + i * ldr : null;
            Apply(v0, b, res).Store(r);
            Apply(v1, b, res + 16).Store(r + 16);
            Apply(v2, b, res + 32).Store(r + 32);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<float> Apply(Vector512<float> v, Vector512<float> b, float* res) =>
            Epilogue<TKind, TBias, TResidual>(v, b, TResidual.Value != 0 ? Vector512.Load(res) : default);
    }

    /// <summary>
    /// act(v + bias + r) with the steps given as types (<see cref="EpilogueStore{TKind, TBias, TResidual}"/>), in
    /// <see cref="ConvKernels.EpilogueVector(Vector512{float}, float, bool, Vector512{float}, bool, int)"/>'s order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Epilogue<TKind, TBias, TResidual>(Vector512<float> v, Vector512<float> bias, Vector512<float> r)
        where TKind : struct, IConstant where TBias : struct, IConstant where TResidual : struct, IConstant
    {
        if (TBias.Value != 0) v += bias;
        if (TResidual.Value != 0) v += r;
        return TKind.Value switch
        {
            1 => ConvKernels.Relu(v),
            2 => ConvKernels.Hardswish(v),
            _ => v,
        };
    }

    /// <summary>A kernel that hands its tile's rows to a store of the caller's choosing (<see cref="RunWithEpilogue"/>).</summary>
    private interface ITileKernel
    {
        void Run<TStore>(ref TStore store) where TStore : struct, ITileStore, IWideTileStore;
    }

    /// <summary>Work specialised by an epilogue's steps, which <see cref="WithEpilogue"/> passes as types.</summary>
    internal interface IEpilogueAction
    {
        void Run<TKind, TBias, TResidual>() where TKind : struct, IConstant where TBias : struct, IConstant where TResidual : struct, IConstant;
    }

    /// <summary>
    /// <paramref name="action"/>'s Run with <paramref name="kind"/> (0 no activation, 1 ReLU, 2 Hardswish) and whether a
    /// bias and a residual are added (1) or not (0) as types: one specialisation per epilogue, whose compiled code tests
    /// none of them per vector.
    /// </summary>
    internal static void WithEpilogue<TAction>(int kind, bool hasBias, bool hasResidual, ref TAction action) where TAction : struct, IEpilogueAction
    {
        switch (kind)
        {
            case 1: WithBias<TAction, N1>(hasBias, hasResidual, ref action); break;
            case 2: WithBias<TAction, N2>(hasBias, hasResidual, ref action); break;
            default: WithBias<TAction, N0>(hasBias, hasResidual, ref action); break;
        }
    }

    private static void WithBias<TAction, TKind>(bool hasBias, bool hasResidual, ref TAction action)
        where TAction : struct, IEpilogueAction where TKind : struct, IConstant
    {
        if (hasBias) WithResidual<TAction, TKind, N1>(hasResidual, ref action);
        else WithResidual<TAction, TKind, N0>(hasResidual, ref action);
    }

    private static void WithResidual<TAction, TKind, TBias>(bool hasResidual, ref TAction action)
        where TAction : struct, IEpilogueAction where TKind : struct, IConstant where TBias : struct, IConstant
    {
        if (hasResidual) action.Run<TKind, TBias, N1>();
        else action.Run<TKind, TBias, N0>();
    }

    /// <summary>
    /// Runs <paramref name="kernel"/> with the <see cref="EpilogueStore{TKind, TBias, TResidual}"/> for
    /// <paramref name="kind"/> and the bias and residual that are present (either may be null).
    /// </summary>
    private static void RunWithEpilogue<TKernel>(ref TKernel kernel, float* c, int ldc, float* bias, float* residual, long ldr, int kind)
        where TKernel : struct, ITileKernel
    {
        var action = new TileEpilogue<TKernel>(kernel, c, ldc, bias, residual, ldr);
        WithEpilogue(kind, bias != null, residual != null, ref action);
    }

    /// <summary>A tile kernel run with the epilogue store <see cref="WithEpilogue"/> picks.</summary>
    private readonly struct TileEpilogue<TKernel>(TKernel kernel, float* c, int ldc, float* bias, float* residual, long ldr) : IEpilogueAction
        where TKernel : struct, ITileKernel
    {
        public void Run<TKind, TBias, TResidual>() where TKind : struct, IConstant where TBias : struct, IConstant where TResidual : struct, IConstant
        {
            var store = new EpilogueStore<TKind, TBias, TResidual>(c, ldc, bias, residual, ldr);
            var run = kernel;
            run.Run(ref store);
        }
    }

    /// <summary><see cref="Kernel512{TStore}"/> on B's rows <c>Ldb</c> floats apart.</summary>
    private readonly struct TileKernel(int k, float* a, float* b, int ldb) : ITileKernel
    {
        public void Run<TStore>(ref TStore store) where TStore : struct, ITileStore, IWideTileStore => Kernel512(k, a, b, ldb, ref store);
    }

    /// <summary>
    /// The first TRows rows (1 to 8) of <see cref="Kernel512Wide{TStore, TMasked}"/>'s tile on B's rows <c>Ldb</c> floats apart
    /// (<see cref="Kernel512WideRows{TRows, TStore, TMasked}"/> below 8).
    /// </summary>
    private readonly struct WideRowsKernel<TRows>(int k, float* a, float* b, long ldb) : ITileKernel where TRows : struct, IConstant
    {
        public void Run<TStore>(ref TStore store) where TStore : struct, ITileStore, IWideTileStore
        {
            if (TRows.Value == Mr512) Kernel512Wide<TStore, N0>(k, a, b, ldb, 0, ref store);
            else Kernel512WideRows<TRows, TStore, N0>(k, a, b, ldb, 0, ref store);
        }
    }

    /// <summary>
    /// A quarter of <see cref="Kernel512{TStore}"/>'s 8 x 32 tile at 256 bits: rows [0, 4) of an 8-row A micro-panel at
    /// <paramref name="a"/> (the panel + 4 for its rows 4-7) times 16 columns of a 32-column B micro-panel at
    /// <paramref name="b"/> (the panel + 16 for its columns 16-31). 8 ymm accumulators: two loads of B and four
    /// broadcasts of A feed 8 FMAs, and the 8 in flight cover an FMA's latency at two a cycle. Each value is the same
    /// chain of multiply-adds as in the 512-bit tile, so the same sums; the first <paramref name="rows"/> rows and
    /// <paramref name="cols"/> columns are stored to <paramref name="c"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel256Quarter(int kc, float* a, float* b, float* c, int ldc, int rows, int cols)
    {
        Vector256<float> c00 = default, c01 = default;
        Vector256<float> c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector256<float> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 8);
            Vector256<float> ai;
            ai = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(ai, b0, c00); c01 = Vector256.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(ai, b0, c10); c11 = Vector256.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(ai, b0, c20); c21 = Vector256.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(ai, b0, c30); c31 = Vector256.FusedMultiplyAdd(ai, b1, c31);
            a += Mr512;
            b += Nr512;
        }
        StoreQuarter(c, ldc, rows, cols, c00, c01, c10, c11, c20, c21, c30, c31);
    }

    /// <summary>
    /// <see cref="Kernel256Quarter"/> for a "same" convolution's B rows read straight from the input, written to
    /// <paramref name="panel"/> on the way (one 16-column half of the B micro-panel the other quarters multiply): row
    /// p = c * taps + t of B is the 16 floats at <paramref name="x"/> + c * <paramref name="channelStride"/> + offsets[t],
    /// zero outside the 16 mask floats at <paramref name="masks"/> + 32 t (the half's lanes of the tap's 32). The same
    /// multiply-adds in the same order, so the same sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel256QuarterFilling(int channels, int taps, float* a, float* x, long channelStride, long* offsets, float* masks,
        float* panel, float* c, int ldc, int rows, int cols)
    {
        Vector256<float> c00 = default, c01 = default;
        Vector256<float> c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default;
        for (int ch = 0; ch < channels; ch++, x += channelStride)
        {
            for (int t = 0; t < taps; t++, a += Mr512, panel += Nr512)
            {
                // Masked-off lanes are neither read nor faulted on, so the loads may straddle the ends of the input.
                float* src = x + offsets[t], mask = masks + t * Nr512;
                Vector256<float> b0 = Avx.MaskLoad(src, Vector256.Load(mask)), b1 = Avx.MaskLoad(src + 8, Vector256.Load(mask + 8));
                b0.Store(panel); b1.Store(panel + 8);
                Vector256<float> ai;
                ai = Vector256.Create(a[0]);
                c00 = Vector256.FusedMultiplyAdd(ai, b0, c00); c01 = Vector256.FusedMultiplyAdd(ai, b1, c01);
                ai = Vector256.Create(a[1]);
                c10 = Vector256.FusedMultiplyAdd(ai, b0, c10); c11 = Vector256.FusedMultiplyAdd(ai, b1, c11);
                ai = Vector256.Create(a[2]);
                c20 = Vector256.FusedMultiplyAdd(ai, b0, c20); c21 = Vector256.FusedMultiplyAdd(ai, b1, c21);
                ai = Vector256.Create(a[3]);
                c30 = Vector256.FusedMultiplyAdd(ai, b0, c30); c31 = Vector256.FusedMultiplyAdd(ai, b1, c31);
            }
        }
        StoreQuarter(c, ldc, rows, cols, c00, c01, c10, c11, c20, c21, c30, c31);
    }

    /// <summary>A quarter tile's first <paramref name="rows"/> rows and <paramref name="cols"/> columns, stored to c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreQuarter(float* c, int ldc, int rows, int cols, Vector256<float> c00, Vector256<float> c01,
        Vector256<float> c10, Vector256<float> c11, Vector256<float> c20, Vector256<float> c21, Vector256<float> c30, Vector256<float> c31)
    {
        if (rows == Mr512 / 2 && cols == Nr512 / 2)
        {
            c00.Store(c); c01.Store(c + 8);
            c10.Store(c + ldc); c11.Store(c + ldc + 8);
            c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 8);
            c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 8);
            return;
        }
        var first = Lanes256.FirstLanes(cols);
        var second = Lanes256.FirstLanes(cols - 8);
        Avx.MaskStore(c, first, c00); Avx.MaskStore(c + 8, second, c01);
        if (rows > 1) { Avx.MaskStore(c + ldc, first, c10); Avx.MaskStore(c + ldc + 8, second, c11); }
        if (rows > 2) { Avx.MaskStore(c + 2 * ldc, first, c20); Avx.MaskStore(c + 2 * ldc + 8, second, c21); }
        if (rows > 3) { Avx.MaskStore(c + 3 * ldc, first, c30); Avx.MaskStore(c + 3 * ldc + 8, second, c31); }
    }

    /// <summary>6 x 16 tile, 12 ymm accumulators (of 16 registers): two loads of B and six broadcasts of A feed 12 FMAs.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel256(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        Vector256<float> c00 = default, c01 = default;
        Vector256<float> c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default;
        Vector256<float> c40 = default, c41 = default;
        Vector256<float> c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector256<float> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 8);
            Vector256<float> ai;
            ai = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(ai, b0, c00); c01 = Vector256.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(ai, b0, c10); c11 = Vector256.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(ai, b0, c20); c21 = Vector256.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(ai, b0, c30); c31 = Vector256.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(ai, b0, c40); c41 = Vector256.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(ai, b0, c50); c51 = Vector256.FusedMultiplyAdd(ai, b1, c51);
            a += 6;
            b += 16;
        }
        var va = Vector256.Create(alpha);
        if (beta == 0f)
        {
            float* r0 = c;
            (c00 * va).Store(r0); (c01 * va).Store(r0 + 8);
            float* r1 = c + ldc;
            (c10 * va).Store(r1); (c11 * va).Store(r1 + 8);
            float* r2 = c + 2 * ldc;
            (c20 * va).Store(r2); (c21 * va).Store(r2 + 8);
            float* r3 = c + 3 * ldc;
            (c30 * va).Store(r3); (c31 * va).Store(r3 + 8);
            float* r4 = c + 4 * ldc;
            (c40 * va).Store(r4); (c41 * va).Store(r4 + 8);
            float* r5 = c + 5 * ldc;
            (c50 * va).Store(r5); (c51 * va).Store(r5 + 8);
        }
        else
        {
            var vb = Vector256.Create(beta);
            float* r0 = c;
            Vector256.FusedMultiplyAdd(c00, va, vb * Vector256.Load(r0)).Store(r0);
            Vector256.FusedMultiplyAdd(c01, va, vb * Vector256.Load(r0 + 8)).Store(r0 + 8);
            float* r1 = c + ldc;
            Vector256.FusedMultiplyAdd(c10, va, vb * Vector256.Load(r1)).Store(r1);
            Vector256.FusedMultiplyAdd(c11, va, vb * Vector256.Load(r1 + 8)).Store(r1 + 8);
            float* r2 = c + 2 * ldc;
            Vector256.FusedMultiplyAdd(c20, va, vb * Vector256.Load(r2)).Store(r2);
            Vector256.FusedMultiplyAdd(c21, va, vb * Vector256.Load(r2 + 8)).Store(r2 + 8);
            float* r3 = c + 3 * ldc;
            Vector256.FusedMultiplyAdd(c30, va, vb * Vector256.Load(r3)).Store(r3);
            Vector256.FusedMultiplyAdd(c31, va, vb * Vector256.Load(r3 + 8)).Store(r3 + 8);
            float* r4 = c + 4 * ldc;
            Vector256.FusedMultiplyAdd(c40, va, vb * Vector256.Load(r4)).Store(r4);
            Vector256.FusedMultiplyAdd(c41, va, vb * Vector256.Load(r4 + 8)).Store(r4 + 8);
            float* r5 = c + 5 * ldc;
            Vector256.FusedMultiplyAdd(c50, va, vb * Vector256.Load(r5)).Store(r5);
            Vector256.FusedMultiplyAdd(c51, va, vb * Vector256.Load(r5 + 8)).Store(r5 + 8);
        }
    }}
