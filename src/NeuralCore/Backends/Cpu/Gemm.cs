namespace NeuralCore.Backends.Cpu;

/// <summary>
/// Single-precision matrix multiply for the CPU backend, row-major, in the BLAS <c>sgemm</c> sense:
/// <c>C = alpha * op(A) * op(B) + beta * C</c> where op(X) is X or its transpose.
/// </summary>
/// <remarks>
/// The fast path is blocked and packed in the GotoBLAS/BLIS manner: a KC x NC block of op(B) and
/// an MC x KC block of op(A) are copied into aligned scratch buffers laid out as the micro-kernel
/// reads them, and a register-blocked micro-kernel (Vector512 FMA, Vector256 FMA or scalar) computes
/// MR x NR tiles of C. Work is split over <see cref="CpuThreading.Threads"/> by columns (or rows when
/// C is narrow). Every element of C is computed the same way whatever the split, so results are
/// bit-identical for every thread count. Scratch buffers are kept per thread and reused.
/// </remarks>
public static unsafe partial class Gemm
{
    /// <summary>
    /// Computes <c>C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C</c> on row-major matrices.
    /// </summary>
    /// <param name="transA">Use A transposed: A is stored k x m instead of m x k.</param>
    /// <param name="transB">Use B transposed: B is stored n x k instead of k x n.</param>
    /// <param name="m">Rows of op(A) and C.</param>
    /// <param name="n">Columns of op(B) and C.</param>
    /// <param name="k">Columns of op(A), rows of op(B).</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="a">First element of A.</param>
    /// <param name="lda">Row stride of A as stored, in elements (at least its column count).</param>
    /// <param name="b">First element of B.</param>
    /// <param name="ldb">Row stride of B as stored, in elements (at least its column count).</param>
    /// <param name="beta">Scale of the old C; 0 means C is overwritten and never read (NaN in C is ignored).</param>
    /// <param name="c">First element of C.</param>
    /// <param name="ldc">Row stride of C in elements (at least n).</param>
    /// <exception cref="ArgumentException">A size is negative or a stride is smaller than its row.</exception>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda,
        float* b, int ldb, float beta, float* c, int ldc)
    {
        CheckShape(transA, transB, m, n, k, lda, ldb, ldc);
        Run(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, allowThreads: true);
    }

    /// <summary>
    /// Bounds-checked form of <see cref="Sgemm(bool, bool, int, int, int, float, float*, int, float*, int, float, float*, int)"/>:
    /// computes <c>C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C</c> on row-major matrices held in spans.
    /// </summary>
    /// <param name="transA">Use A transposed: A is stored k x m instead of m x k.</param>
    /// <param name="transB">Use B transposed: B is stored n x k instead of k x n.</param>
    /// <param name="m">Rows of op(A) and C.</param>
    /// <param name="n">Columns of op(B) and C.</param>
    /// <param name="k">Columns of op(A), rows of op(B).</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="a">A, starting at its first element.</param>
    /// <param name="lda">Row stride of A as stored, in elements.</param>
    /// <param name="b">B, starting at its first element.</param>
    /// <param name="ldb">Row stride of B as stored, in elements.</param>
    /// <param name="beta">Scale of the old C; 0 means C is overwritten and never read.</param>
    /// <param name="c">C, starting at its first element.</param>
    /// <param name="ldc">Row stride of C in elements.</param>
    /// <exception cref="ArgumentException">A size is negative, a stride is too small, or a span is too short.</exception>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        CheckShape(transA, transB, m, n, k, lda, ldb, ldc);
        CheckSpans(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc, 1, 0, 0, 0);
        // SAFETY: the spans were checked to cover every element the strides reach; fixed pins them
        // for the duration of the call, which returns only when every thread is done.
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* pc = c)
        {
            Run(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, allowThreads: true);
        }
    }

    /// <summary>
    /// Strided batched multiply: for i in [0, batch), <c>C_i = alpha * op(A_i) * op(B_i) + beta * C_i</c>
    /// with <c>A_i = a + i * strideA</c> (likewise B and C). A stride of 0 for A or B uses the same
    /// matrix for every item (broadcast).
    /// </summary>
    /// <param name="transA">Use A transposed: each A is stored k x m instead of m x k.</param>
    /// <param name="transB">Use B transposed: each B is stored n x k instead of k x n.</param>
    /// <param name="m">Rows of op(A) and C.</param>
    /// <param name="n">Columns of op(B) and C.</param>
    /// <param name="k">Columns of op(A), rows of op(B).</param>
    /// <param name="alpha">Scale of the products.</param>
    /// <param name="a">First element of the first A.</param>
    /// <param name="lda">Row stride of each A as stored, in elements.</param>
    /// <param name="strideA">Elements between consecutive A matrices (0 = broadcast).</param>
    /// <param name="b">First element of the first B.</param>
    /// <param name="ldb">Row stride of each B as stored, in elements.</param>
    /// <param name="strideB">Elements between consecutive B matrices (0 = broadcast).</param>
    /// <param name="beta">Scale of the old C; 0 means C is overwritten and never read.</param>
    /// <param name="c">First element of the first C.</param>
    /// <param name="ldc">Row stride of each C in elements.</param>
    /// <param name="strideC">Elements between consecutive C matrices.</param>
    /// <param name="batch">Number of products.</param>
    /// <exception cref="ArgumentException">A size or stride is invalid.</exception>
    public static void SgemmBatched(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, long strideA, float* b, int ldb, long strideB, float beta, float* c, int ldc, long strideC, int batch)
    {
        CheckShape(transA, transB, m, n, k, lda, ldb, ldc);
        CheckBatch(batch, strideA, strideB, strideC);
        RunBatched(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch);
    }

    /// <summary>
    /// Bounds-checked form of the strided batched multiply: for i in [0, batch),
    /// <c>C_i = alpha * op(A_i) * op(B_i) + beta * C_i</c> where A_i starts at <c>i * strideA</c> in
    /// <paramref name="a"/> (likewise B and C); a stride of 0 for A or B broadcasts one matrix.
    /// </summary>
    /// <param name="transA">Use A transposed: each A is stored k x m instead of m x k.</param>
    /// <param name="transB">Use B transposed: each B is stored n x k instead of k x n.</param>
    /// <param name="m">Rows of op(A) and C.</param>
    /// <param name="n">Columns of op(B) and C.</param>
    /// <param name="k">Columns of op(A), rows of op(B).</param>
    /// <param name="alpha">Scale of the products.</param>
    /// <param name="a">All A matrices.</param>
    /// <param name="lda">Row stride of each A as stored, in elements.</param>
    /// <param name="strideA">Elements between consecutive A matrices (0 = broadcast).</param>
    /// <param name="b">All B matrices.</param>
    /// <param name="ldb">Row stride of each B as stored, in elements.</param>
    /// <param name="strideB">Elements between consecutive B matrices (0 = broadcast).</param>
    /// <param name="beta">Scale of the old C; 0 means C is overwritten and never read.</param>
    /// <param name="c">All C matrices.</param>
    /// <param name="ldc">Row stride of each C in elements.</param>
    /// <param name="strideC">Elements between consecutive C matrices.</param>
    /// <param name="batch">Number of products.</param>
    /// <exception cref="ArgumentException">A size or stride is invalid, or a span is too short.</exception>
    public static void SgemmBatched(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, long strideA, ReadOnlySpan<float> b, int ldb, long strideB,
        float beta, Span<float> c, int ldc, long strideC, int batch)
    {
        CheckShape(transA, transB, m, n, k, lda, ldb, ldc);
        CheckBatch(batch, strideA, strideB, strideC);
        CheckSpans(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc, batch, strideA, strideB, strideC);
        // SAFETY: the spans were checked to cover every element of every item; fixed pins them
        // until all threads are done.
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* pc = c)
        {
            RunBatched(transA, transB, m, n, k, alpha, pa, lda, strideA, pb, ldb, strideB, beta, pc, ldc, strideC, batch);
        }
    }

    /// <summary>
    /// Plain triple-loop multiply with double accumulation, the specification the fast
    /// <see cref="Sgemm(bool, bool, int, int, int, float, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, float, Span{float}, int)"/>
    /// is tested against. Same arguments and meaning; slow, single-threaded.
    /// </summary>
    /// <param name="transA">Use A transposed: A is stored k x m instead of m x k.</param>
    /// <param name="transB">Use B transposed: B is stored n x k instead of k x n.</param>
    /// <param name="m">Rows of op(A) and C.</param>
    /// <param name="n">Columns of op(B) and C.</param>
    /// <param name="k">Columns of op(A), rows of op(B).</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="a">A, starting at its first element.</param>
    /// <param name="lda">Row stride of A as stored, in elements.</param>
    /// <param name="b">B, starting at its first element.</param>
    /// <param name="ldb">Row stride of B as stored, in elements.</param>
    /// <param name="beta">Scale of the old C; 0 means C is overwritten and never read.</param>
    /// <param name="c">C, starting at its first element.</param>
    /// <param name="ldc">Row stride of C in elements.</param>
    /// <exception cref="ArgumentException">A size is negative, a stride is too small, or a span is too short.</exception>
    public static void SgemmReference(bool transA, bool transB, int m, int n, int k, float alpha, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        CheckShape(transA, transB, m, n, k, lda, ldb, ldc);
        CheckSpans(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc, 1, 0, 0, 0);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                {
                    float av = transA ? a[p * lda + i] : a[i * lda + p];
                    float bv = transB ? b[j * ldb + p] : b[p * ldb + j];
                    sum += (double)av * bv;
                }
                float product = (float)(alpha * sum);
                c[i * ldc + j] = beta == 0f ? product : product + beta * c[i * ldc + j];
            }
        }
    }

    private static void CheckShape(bool transA, bool transB, int m, int n, int k, int lda, int ldb, int ldc)
    {
        if (m < 0 || n < 0 || k < 0)
        {
            throw new ArgumentException(
                $"Gemm sizes must be at least 0, but m = {m}, n = {n}, k = {k} were given; pass the rows of C (m), its columns (n) and the inner dimension (k).");
        }
        int aCols = transA ? m : k;
        int bCols = transB ? k : n;
        if (lda < Math.Max(1, aCols))
        {
            throw new ArgumentException(
                $"Gemm lda must be at least the column count of A as stored ({aCols}, since transA = {transA}), but it is {lda}; pass the row stride of A in elements.", nameof(lda));
        }
        if (ldb < Math.Max(1, bCols))
        {
            throw new ArgumentException(
                $"Gemm ldb must be at least the column count of B as stored ({bCols}, since transB = {transB}), but it is {ldb}; pass the row stride of B in elements.", nameof(ldb));
        }
        if (ldc < Math.Max(1, n))
        {
            throw new ArgumentException(
                $"Gemm ldc must be at least n = {n}, but it is {ldc}; pass the row stride of C in elements.", nameof(ldc));
        }
    }

    private static void CheckBatch(int batch, long strideA, long strideB, long strideC)
    {
        if (batch < 0)
        {
            throw new ArgumentException($"SgemmBatched needs a batch count of at least 0, but {batch} was given.", nameof(batch));
        }
        if (strideA < 0 || strideB < 0 || strideC < 0)
        {
            throw new ArgumentException(
                $"SgemmBatched strides must be at least 0, but strideA = {strideA}, strideB = {strideB}, strideC = {strideC} were given.");
        }
    }

    // Elements a rows x cols matrix with row stride ld spans: the last row needs only cols elements.
    private static long Extent(int rows, int cols, int ld) => rows == 0 || cols == 0 ? 0 : (long)(rows - 1) * ld + cols;

    private static void CheckSpans(bool transA, bool transB, int m, int n, int k, int aLength, int lda, int bLength, int ldb,
        int cLength, int ldc, int batch, long strideA, long strideB, long strideC)
    {
        if (batch == 0) return;
        long last = batch - 1;
        long needA = Extent(transA ? k : m, transA ? m : k, lda);
        long needB = Extent(transB ? n : k, transB ? k : n, ldb);
        long needC = Extent(m, n, ldc);
        if (needA > 0 && last * strideA + needA > aLength)
        {
            throw new ArgumentException(
                $"Gemm A needs {last * strideA + needA} elements for m = {m}, k = {k}, lda = {lda}, batch = {batch}, strideA = {strideA}, but the span holds {aLength}; check the sizes and strides.", "a");
        }
        if (needB > 0 && last * strideB + needB > bLength)
        {
            throw new ArgumentException(
                $"Gemm B needs {last * strideB + needB} elements for k = {k}, n = {n}, ldb = {ldb}, batch = {batch}, strideB = {strideB}, but the span holds {bLength}; check the sizes and strides.", "b");
        }
        if (needC > 0 && last * strideC + needC > cLength)
        {
            throw new ArgumentException(
                $"Gemm C needs {last * strideC + needC} elements for m = {m}, n = {n}, ldc = {ldc}, batch = {batch}, strideC = {strideC}, but the span holds {cLength}; check the sizes and strides.", "c");
        }
    }
}
