using NeuralCore.Backends.Cpu;

namespace NeuralCore.Tests.Backends;

/// <summary>Tests that change process-wide settings (thread count, kernel width) run alone.</summary>
[CollectionDefinition(nameof(CpuSettingsCollection), DisableParallelization = true)]
public sealed class CpuSettingsCollection;

[Collection(nameof(CpuSettingsCollection))]
public sealed class GemmTests
{
    // m, n, k: ones, primes, CP-ResNet widths (19, 38, 76), and sizes that cross the MR/NR tile
    // edges and the KC (256), MC (240) and NC (512) cache blocks.
    public static readonly TheoryData<int, int, int> Sizes = new()
    {
        { 1, 1, 1 },
        { 1, 37, 5 },
        { 19, 1, 7 },
        { 1, 1, 300 },
        { 2, 3, 1 },
        { 19, 38, 76 },
        { 38, 169, 9 },
        { 76, 33, 38 },
        { 7, 13, 300 },
        { 33, 65, 257 },
        { 17, 31, 513 },
        { 241, 47, 13 },
        { 9, 515, 11 },
        { 64, 96, 64 },
        // Edge tiles of 5 and 7 rows with more than 16 columns: only the rows they have are computed.
        { 5, 40, 9 },
        { 15, 70, 20 },
        // Fewer than 16 columns (one sample's 1 x 6 maps): the packed narrow path, 8- and 16-wide, with row tails.
        { 67, 6, 577 },
        { 21, 12, 40 },
    };

    public static IEnumerable<TheoryDataRow<bool, bool>> TransCombos() =>
        [new(false, false), new(false, true), new(true, false), new(true, true)];

    [Theory]
    [MemberData(nameof(Sizes))]
    public void MatchesReferenceForEveryTransposeCombination(int m, int n, int k)
    {
        foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false), (true, true) })
        {
            CheckAgainstReference(ta, tb, m, n, k, alpha: 1f, beta: 0f, seed: m * 131 + n * 7 + k);
        }
    }

    [Theory]
    [InlineData(1f, 0f)]
    [InlineData(1f, 1f)]
    [InlineData(2.5f, -0.5f)]
    [InlineData(-1f, 0.25f)]
    [InlineData(0.5f, 0f)]
    public void AppliesAlphaAndBeta(float alpha, float beta)
    {
        foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false), (true, true) })
        {
            // Small enough for the direct (unpacked) path, then the blocked path across K blocks.
            CheckAgainstReference(ta, tb, 11, 40, 20, alpha, beta, seed: 4);
            CheckAgainstReference(ta, tb, 23, 71, 29, alpha, beta, seed: 5);
            CheckAgainstReference(ta, tb, 40, 300, 270, alpha, beta, seed: 6);
        }
    }

    [Fact]
    public void DotProductPathMatchesReferenceForEveryTileShape()
    {
        // A * B^T with few columns and a long k (a convolution's weight gradient, the stem's 25 taps): tiles of 1-4 rows
        // by 1-6 columns, k with and without a tail after its 16-wide steps; few rows and many columns go the packed way.
        int seed = 100;
        foreach (int m in new[] { 1, 2, 3, 4, 5, 19, 32 })
        foreach (int n in new[] { 1, 2, 3, 4, 5, 6, 7, 13, 25, 30 })
        foreach (int k in new[] { 256, 271 })
            CheckAgainstReference(false, true, m, n, k, 1f, 0f, seed++);
        CheckAgainstReference(false, true, 32, 25, 3087, 1f, 0f, seed++);
        CheckAgainstReference(false, true, 10, 128, 504, 1f, 0f, seed++);
        CheckAgainstReference(false, true, 97, 3, 300, 1f, 0f, seed++);
        CheckAgainstReference(false, true, 19, 25, 600, -0.5f, 2f, seed++, pad: 3);
        CheckAgainstReference(false, true, 10, 77, 300, 1.5f, 0.25f, seed++, pad: 2);
    }

    [Fact]
    public void BetaZeroIgnoresNaNInC()
    {
        // CheckAgainstReference fills C with NaN whenever beta is 0; a read of C would leak NaN.
        CheckAgainstReference(false, false, 19, 45, 12, 1f, 0f, seed: 11);
        CheckAgainstReference(true, true, 45, 19, 300, 1f, 0f, seed: 12);
    }

    [Theory]
    [MemberData(nameof(TransCombos))]
    public void HonoursLeadingDimensionsLargerThanRows(bool transA, bool transB)
    {
        CheckAgainstReference(transA, transB, 21, 37, 45, 1.5f, 0.5f, seed: 21, pad: 5);
        CheckAgainstReference(transA, transB, 9, 130, 260, 1f, 0f, seed: 22, pad: 3);
    }

    [Fact]
    public void FallbackKernelsMatchReference()
    {
        var saved = Gemm.Kind;
        try
        {
            foreach (var kind in Enum.GetValues<Gemm.KernelKind>().Where(k => k <= Gemm.Best))
            {
                Gemm.Kind = kind;
                foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false), (true, true) })
                {
                    CheckAgainstReference(ta, tb, 19, 38, 76, 1f, 0f, seed: 31);
                    CheckAgainstReference(ta, tb, 13, 35, 270, 2f, 0.5f, seed: 32, pad: 2);
                }
            }
        }
        finally
        {
            Gemm.Kind = saved;
        }
    }

    /// <summary>
    /// An edge tile of fewer rows than the micro-kernel's (19 = 8 + 8 + 3 with AVX-512's first-rows kernels, 6 + 6 + 6 + 1
    /// with AVX2's 6 x 16 kernel, which computes the whole tile and keeps its first rows) gives the bits those rows get
    /// in a full tile: the rows of a (16 + r)-row product against the first rows of a 24-row one, r = 1 to 7, at every
    /// kernel width this CPU runs.
    /// </summary>
    [Fact]
    public void EdgeTilesGiveTheFullTilesBits()
    {
        var saved = Gemm.Kind;
        try
        {
            var rng = new Random(41);
            int n = 200, k = 300;
            float[] a = RandomArray(rng, 24 * k), b = RandomArray(rng, k * n);
            foreach (var kind in Enum.GetValues<Gemm.KernelKind>().Where(kind => kind <= Gemm.Best))
            {
                Gemm.Kind = kind;
                var full = new float[24 * n];
                Gemm.Sgemm(false, false, 24, n, k, 1f, a, k, b, n, 0f, full, n);
                for (int m = 17; m <= 23; m++)
                {
                    var edge = new float[m * n];
                    Gemm.Sgemm(false, false, m, n, k, 1f, a, k, b, n, 0f, edge, n);
                    Assert.Equal(full.Take(m * n).Select(BitConverter.SingleToInt32Bits), edge.Select(BitConverter.SingleToInt32Bits));
                }
            }
        }
        finally
        {
            Gemm.Kind = saved;
        }
    }

    [Fact]
    public void ZeroInnerDimensionScalesC()
    {
        float[] c = [1f, 2f, 3f, 4f];
        Gemm.Sgemm(false, false, 2, 2, 0, 1f, ReadOnlySpan<float>.Empty, 1, ReadOnlySpan<float>.Empty, 2, 3f, c, 2);
        Assert.Equal([3f, 6f, 9f, 12f], c);
        c = [float.NaN, 2f, 3f, 4f];
        Gemm.Sgemm(false, false, 2, 2, 0, 1f, ReadOnlySpan<float>.Empty, 1, ReadOnlySpan<float>.Empty, 2, 0f, c, 2);
        Assert.Equal([0f, 0f, 0f, 0f], c);
    }

    [Fact]
    public void AlphaZeroDoesNotReadAOrB()
    {
        float[] a = [float.NaN, float.NaN, float.NaN, float.NaN];
        float[] c = [1f, 2f, 3f, 4f];
        Gemm.Sgemm(false, false, 2, 2, 2, 0f, a, 2, a, 2, 2f, c, 2);
        Assert.Equal([2f, 4f, 6f, 8f], c);
    }

    [Fact]
    public void ReadingBInPlaceGivesTheBitsOfPackingIt()
    {
        // Up to 128 rows of C per thread, whole 32-column panels of an untransposed B are read where they lie; above,
        // packed. The first 123 rows of a 136-row product (packed) must equal the 123-row product (in place) bit for
        // bit, across two K blocks and a last, partial (packed) panel of 4 columns. On one thread: with more, each
        // thread's share of the 136 rows is under 128 and both products would read B in place. So must the 123-row
        // product of the same B with its rows further apart than Gemm.InPlaceBMaxStride (packed again).
        if (!Gemm.Runs512) Assert.Skip("B is read in place by the 512-bit kernels only; this CPU runs others.");
        int n = 100, k = 300, ldb = n + 5, wide = Gemm.InPlaceBMaxStride + 3;
        var rng = new Random(17);
        float[] a = RandomArray(rng, 136 * k);
        float[] b = RandomArray(rng, k * ldb);
        float[] spread = new float[k * wide];
        for (int i = 0; i < k; i++) b.AsSpan(i * ldb, n).CopyTo(spread.AsSpan(i * wide));
        float[] packed = new float[136 * n], inPlace = new float[123 * n], packedAgain = new float[123 * n];
        int saved = CpuThreading.Threads;
        try
        {
            CpuThreading.Threads = 1;
            Gemm.Sgemm(false, false, 136, n, k, 1f, a, k, b, ldb, 0f, packed, n);
            Gemm.Sgemm(false, false, 123, n, k, 1f, a, k, b, ldb, 0f, inPlace, n);
            Gemm.Sgemm(false, false, 123, n, k, 1f, a, k, spread, wide, 0f, packedAgain, n);
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
        Assert.Equal(packed.AsSpan(0, 123 * n).ToArray(), inPlace);
        Assert.Equal(inPlace, packedAgain);
    }

    /// <summary>
    /// The implicit GEMM's panels at 256 bits (<see cref="Gemm.MultiplyPanel256"/>, quarters of 4 rows x 16 columns of the
    /// 8 x 32 tile): each value the chain of fused multiply-adds from zero in order, the 512-bit tiles' sums, for row counts
    /// that end inside a micro-panel and inside a quarter and column counts that end inside either vector of a quarter; no
    /// value written past m rows and cols columns of C.
    /// </summary>
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 7)]
    [InlineData(4, 8)]
    [InlineData(5, 9)]
    [InlineData(8, 16)]
    [InlineData(13, 17)]
    [InlineData(19, 31)]
    [InlineData(32, 32)]
    public unsafe void PanelsAtTwoHundredFiftySixBitsSumInOrder(int m, int cols)
    {
        if (!System.Runtime.Intrinsics.X86.Avx2.IsSupported || !System.Runtime.Intrinsics.X86.Fma.IsSupported)
            Assert.Skip("This CPU has no AVX2 and FMA: the 256-bit panels do not run here.");
        const int k = 37, ldc = 40;
        var rng = new Random(43);
        float[] a = RandomArray(rng, m * k), b = RandomArray(rng, k * Gemm.PanelColumns);
        float[] packed = new float[Gemm.PackedRowsLength(m, k)], c = new float[m * ldc + 8];
        Array.Fill(c, float.NaN);
        fixed (float* pa = a, pb = b, pp = packed, pc = c)
        {
            Gemm.PackRows(pa, k, m, k, pp);
            Gemm.MultiplyPanel256(m, k, pp, pb, pc, ldc, cols);
        }
        for (int i = 0; i < m; i++)
            for (int j = 0; j < ldc; j++)
            {
                if (j >= cols)
                {
                    Assert.True(float.IsNaN(c[i * ldc + j]), $"C[{i}, {j}] was written");
                    continue;
                }
                float expected = 0f;
                for (int p = 0; p < k; p++) expected = MathF.FusedMultiplyAdd(a[i * k + p], b[p * Gemm.PanelColumns + j], expected);
                Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(c[i * ldc + j]));
            }
        Assert.All(c.AsSpan(m * ldc).ToArray(), v => Assert.True(float.IsNaN(v)));
    }

    [Fact]
    public unsafe void PartialTilesGiveTheBitsOfTheFullTile()
    {
        // The implicit GEMM's transposed panels compute only the lanes and rows they need: the first 16 (MultiplyTileNarrow)
        // or 8 columns at 0, 8, 16 or 24 (MultiplyTileEighth), or the first rows of the first columns (MultiplyTilePart),
        // with the full 8 x 32 tile's order of operations.
        if (!System.Runtime.Intrinsics.X86.Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the 8 x 32 tile kernels do not run here.");
        const int k = 37;
        var rng = new Random(31);
        float[] a = RandomArray(rng, 8 * k), b = RandomArray(rng, 32 * k);
        float[] full = new float[256], part = new float[256];
        fixed (float* pa = a, pb = b, pf = full, pp = part)
        {
            Gemm.MultiplyTile(k, pa, pb, pf);
            Gemm.MultiplyTileNarrow(k, pa, pb, pp);
            for (int i = 0; i < 8; i++) Assert.Equal(full.AsSpan(32 * i, 16).ToArray(), part.AsSpan(32 * i, 16).ToArray());
            foreach (int column in new[] { 0, 8, 16, 24 })
            {
                Array.Fill(part, float.NaN);
                Gemm.MultiplyTileEighth(k, pa, pb, pp, column);
                for (int i = 0; i < 8; i++)
                {
                    Assert.Equal(full.AsSpan(32 * i + column, 8).ToArray(), part.AsSpan(32 * i + column, 8).ToArray());
                    // The rest of the tile is left alone.
                    Assert.All(part.AsSpan(32 * i, column).ToArray(), v => Assert.True(float.IsNaN(v)));
                }
            }
            // MultiplyTilePart: the first 1 to 8 rows of at least the first 8, 16, 24 or 32 columns.
            for (int rows = 1; rows <= 8; rows++)
                foreach (int lanes in new[] { 3, 8, 13, 16, 19, 24, 29, 32 })
                {
                    Array.Fill(part, float.NaN);
                    Gemm.MultiplyTilePart(rows, lanes, k, pa, pb, pp);
                    for (int i = 0; i < rows; i++)
                        Assert.Equal(full.AsSpan(32 * i, lanes).ToArray(), part.AsSpan(32 * i, lanes).ToArray());
                }
        }
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(2, 3)]
    public void ResultsAreBitIdenticalAcrossRunsAndThreadCounts(int threadsA, int threadsB)
    {
        int saved = CpuThreading.Threads;
        try
        {
            foreach (var (ta, tb, m, n, k) in new[] { (false, false, 64, 700, 200), (true, true, 300, 40, 300), (false, true, 19, 1100, 70) })
            {
                var rng = new Random(m + n + k);
                float[] a = RandomArray(rng, m * k);
                float[] b = RandomArray(rng, k * n);
                int lda = ta ? m : k, ldb = tb ? k : n;
                float[] Run(int threads)
                {
                    CpuThreading.Threads = threads;
                    float[] c = new float[m * n];
                    Gemm.Sgemm(ta, tb, m, n, k, 1f, a, lda, b, ldb, 0f, c, n);
                    return c;
                }
                float[] first = Run(threadsA);
                Assert.Equal(first, Run(threadsA));
                Assert.Equal(first, Run(threadsB));
                Assert.Equal(first, Run(threadsB));
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    [Theory]
    [InlineData(5, 19, 38, 76, false, true)]
    [InlineData(64, 6, 9, 4, true, false)]
    [InlineData(3, 70, 300, 120, false, false)]
    public void BatchedMatchesPerItemReference(int batch, int m, int n, int k, bool broadcastA, bool broadcastB)
    {
        var rng = new Random(batch * 1000 + m);
        long strideA = broadcastA ? 0 : m * k;
        long strideB = broadcastB ? 0 : k * n;
        long strideC = m * n + 3;
        float[] a = RandomArray(rng, broadcastA ? m * k : batch * m * k);
        float[] b = RandomArray(rng, broadcastB ? k * n : batch * k * n);
        float[] c = RandomArray(rng, (int)(batch * strideC));
        float[] expected = (float[])c.Clone();
        Gemm.SgemmBatched(false, true, m, n, k, 1.5f, a, k, strideA, b, k, strideB, 0.5f, c, n, strideC, batch);
        for (int i = 0; i < batch; i++)
        {
            // Every item reads B as n x k (transB), so the reference gets the same layout.
            Gemm.SgemmReference(false, true, m, n, k, 1.5f, a.AsSpan((int)(i * strideA)), k, b.AsSpan((int)(i * strideB)), k,
                0.5f, expected.AsSpan((int)(i * strideC)), n);
        }
        for (int i = 0; i < c.Length; i++)
        {
            Assert.True(MathF.Abs(c[i] - expected[i]) <= 1e-5f * MathF.Sqrt(k) * (1 + MathF.Abs(expected[i])) * 4,
                $"item {i / strideC}, element {i % strideC}: got {c[i]}, expected {expected[i]}");
        }
    }

    [Fact]
    public void RejectsStridesSmallerThanRows()
    {
        float[] buf = new float[64];
        var e = Assert.Throws<ArgumentException>(() => Gemm.Sgemm(false, false, 4, 4, 4, 1f, buf, 3, buf, 4, 0f, buf, 4));
        Assert.Contains("lda", e.Message);
        e = Assert.Throws<ArgumentException>(() => Gemm.Sgemm(false, true, 4, 4, 4, 1f, buf, 4, buf, 3, 0f, buf, 4));
        Assert.Contains("ldb", e.Message);
    }

    [Fact]
    public void RejectsSpansTooShortForTheShape()
    {
        float[] small = new float[15];
        float[] big = new float[16];
        var e = Assert.Throws<ArgumentException>(() => Gemm.Sgemm(false, false, 4, 4, 4, 1f, small, 4, big, 4, 0f, big, 4));
        Assert.Contains("A needs 16", e.Message);
        e = Assert.Throws<ArgumentException>(() => Gemm.Sgemm(false, false, 4, 4, 4, 1f, big, 4, big, 4, 0f, small, 4));
        Assert.Contains("C needs 16", e.Message);
    }

    /// <summary>
    /// Runs the fast and the reference multiply on the same random inputs and compares them with a
    /// tolerance of 1e-5 * sqrt(k) relative to the size of the terms (sum of |a| |b| and |beta c|),
    /// and checks that the padding between rows of C is left alone.
    /// </summary>
    private static void CheckAgainstReference(bool transA, bool transB, int m, int n, int k, float alpha, float beta, int seed, int pad = 0)
    {
        var rng = new Random(seed);
        int aRows = transA ? k : m, aCols = transA ? m : k;
        int bRows = transB ? n : k, bCols = transB ? k : n;
        int lda = aCols + pad, ldb = bCols + pad, ldc = n + pad;
        float[] a = RandomArray(rng, Math.Max(1, aRows * lda));
        float[] b = RandomArray(rng, Math.Max(1, bRows * ldb));
        float[] c = beta == 0f ? Enumerable.Repeat(float.NaN, m * ldc).ToArray() : RandomArray(rng, m * ldc);
        float[] expected = (float[])c.Clone();
        float[] sentinel = (float[])c.Clone();

        Gemm.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        Gemm.SgemmReference(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, expected, ldc);

        // The size of the terms, for a tolerance that does not blow up where the sum cancels.
        float[] scale = new float[m * ldc];
        Gemm.SgemmReference(transA, transB, m, n, k, MathF.Abs(alpha), a.Select(MathF.Abs).ToArray(), lda,
            b.Select(MathF.Abs).ToArray(), ldb, 0f, scale, ldc);
        float tolerance = 1e-5f * MathF.Sqrt(Math.Max(k, 1));
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < ldc; j++)
            {
                int at = i * ldc + j;
                if (j >= n)
                {
                    Assert.True(sentinel[at].Equals(c[at]), $"padding C[{i}, {j}] changed from {sentinel[at]} to {c[at]}");
                    continue;
                }
                float size = scale[at] + (beta == 0f ? 0f : MathF.Abs(beta * sentinel[at])) + 1e-30f;
                Assert.True(MathF.Abs(c[at] - expected[at]) <= tolerance * size,
                    $"transA={transA} transB={transB} m={m} n={n} k={k} alpha={alpha} beta={beta}: C[{i}, {j}] = {c[at]}, expected {expected[at]}");
            }
        }
    }

    private static float[] RandomArray(Random rng, int length)
    {
        var x = new float[length];
        for (int i = 0; i < length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }
}

public sealed class CpuThreadingTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(101)]
    public void ForRunsEveryIndexExactlyOnce(int count)
    {
        int[] hits = new int[count];
        CpuThreading.For(count, i => Interlocked.Increment(ref hits[i]));
        Assert.All(hits, h => Assert.Equal(1, h));
    }

    [Fact]
    public void ForRethrowsTheBodyException()
    {
        var e = Assert.Throws<InvalidOperationException>(() =>
            CpuThreading.For(8, i => { if (i == 7) throw new InvalidOperationException("index 7"); }));
        Assert.Equal("index 7", e.Message);
        // The pool still works afterwards.
        int sum = 0;
        CpuThreading.For(8, i => Interlocked.Add(ref sum, i));
        Assert.Equal(28, sum);
    }

    [Fact]
    public void NestedForRunsInline()
    {
        // Each inner call runs every index on the thread that runs its outer index, whichever that is.
        int[,] hits = new int[4, 5], threads = new int[4, 5];
        int[] outerThreads = new int[4];
        CpuThreading.For(4, i =>
        {
            outerThreads[i] = Environment.CurrentManagedThreadId;
            CpuThreading.For(5, j =>
            {
                Interlocked.Increment(ref hits[i, j]);
                threads[i, j] = Environment.CurrentManagedThreadId;
            });
        });
        Assert.All(hits.Cast<int>(), h => Assert.Equal(1, h));
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 5; j++)
                Assert.Equal(outerThreads[i], threads[i, j]);
    }

    [Fact]
    public void RejectsNegativeCount()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuThreading.For(-1, _ => { }));
    }
}

[Collection(nameof(CpuSettingsCollection))]
public sealed class CpuThreadingSettingsTests
{
    [Fact]
    public void PartitionIsContiguousAndFollowsThreads()
    {
        int saved = CpuThreading.Threads;
        try
        {
            CpuThreading.Threads = 3;
            for (int attempt = 0; attempt < 50; attempt++)
            {
                int[] owner = new int[10];
                int[] order = new int[10];
                int next = 0;
                CpuThreading.For(10, i =>
                {
                    owner[i] = Environment.CurrentManagedThreadId;
                    order[i] = Interlocked.Increment(ref next);
                });
                // Three parts of 3, 3 and 4 indices ([i*10/3, (i+1)*10/3)), each on one thread in increasing order
                // (which thread runs a part may vary: the caller takes the parts no worker has claimed yet).
                foreach (var (first, end) in new[] { (0, 3), (3, 6), (6, 10) })
                    for (int i = first + 1; i < end; i++)
                    {
                        Assert.Equal(owner[first], owner[i]);
                        Assert.True(order[i] > order[i - 1]);
                    }
            }

            CpuThreading.Threads = 1;
            int[] single = new int[10];
            CpuThreading.For(10, i => single[i] = Environment.CurrentManagedThreadId);
            Assert.All(single, o => Assert.Equal(Environment.CurrentManagedThreadId, o));
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    [Fact]
    public void TheCallerRunsThePartsOfAWorkerThatIsSlowToWake()
    {
        int saved = CpuThreading.Threads;
        try
        {
            CpuThreading.Threads = 2;
            int caller = Environment.CurrentManagedThreadId;
            bool stolen = false;
            for (int attempt = 0; attempt < 20 && !stolen; attempt++)
            {
                // Idle long enough for the worker to stop spinning and sleep: waking it takes tens of microseconds,
                // while the caller is back for the second part within one.
                Thread.Sleep(20);
                int[] owner = new int[2];
                CpuThreading.For(2, i => owner[i] = Environment.CurrentManagedThreadId);
                stolen = owner[0] == caller && owner[1] == caller;
            }
            Assert.True(stolen, "In 20 calls after an idle spell, the caller never ran the sleeping worker's part itself.");
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    [Fact]
    public void BackToBackJobsRunEachIndexOnceWhateverThreadClaimsIt()
    {
        int saved = CpuThreading.Threads;
        try
        {
            foreach (int threads in new[] { 2, 3 })
            {
                CpuThreading.Threads = threads;
                // Tiny jobs one after another: a worker that wakes late for one job finds it over (or claims a part of
                // the next with that job's own body and state), never runs a part twice or with another job's state.
                for (int job = 0; job < 20000; job++)
                {
                    int count = 2 + job % 5;
                    int[] hits = new int[count];
                    CpuThreading.For(count, i => Interlocked.Increment(ref hits[i]));
                    Assert.All(hits, h => Assert.Equal(1, h));
                }
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    private static volatile int partOneThread;

    /// <summary>
    /// A call whose caller must block until a worker finishes its part allocates nothing: the caller's wait event makes
    /// the object it blocks on when the pool starts, not at its first blocking wait, which came in whichever call first
    /// found a worker busy (BenchmarkDotNet's memory diagnoser counted it in an inference call long after warm-up).
    /// Run alone, the test fails without that: any earlier blocking wait in the process would have made the object.
    /// </summary>
    [Fact]
    public void WaitingForABusyWorkerAllocatesNothing()
    {
        int saved = CpuThreading.Threads;
        try
        {
            CpuThreading.Threads = 2;
            // Part 1 sleeps on whichever thread took it; part 0 (the caller's) waits until part 1 has been taken, so the
            // caller then has nothing left to run and must wait for the worker.
            Action<int> body = part =>
            {
                if (part == 1)
                {
                    partOneThread = Environment.CurrentManagedThreadId;
                    Thread.Sleep(30);
                    return;
                }
                long start = System.Diagnostics.Stopwatch.GetTimestamp();
                while (partOneThread == 0 && System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds < 10) Thread.SpinWait(20);
            };
            // Warm-up: the worker exists, and so does this thread's thread-static state.
            CpuThreading.For(2, _ => { });
            partOneThread = 0;
            long before = GC.GetAllocatedBytesForCurrentThread();
            CpuThreading.For(2, body);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(partOneThread != 0 && partOneThread != Environment.CurrentManagedThreadId,
                "A worker must have taken part 1, so that the caller waited for it.");
            Assert.Equal(0, allocated);
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    /// <summary>
    /// <see cref="Gemm.Transpose"/> copies every float of a rows x columns block to its transposed place, whole 8 x 8
    /// blocks and the edges alike, and writes nothing else: sizes around multiples of 8 (the staging blocks' 36
    /// positions by 32 or 16 samples among them), with strides wider than the blocks.
    /// </summary>
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 5)]
    [InlineData(8, 8)]
    [InlineData(7, 9)]
    [InlineData(9, 7)]
    [InlineData(16, 28)]
    [InlineData(32, 36)]
    [InlineData(36, 16)]
    [InlineData(17, 23)]
    [InlineData(16, 16)]
    [InlineData(33, 47)]
    [InlineData(48, 32)]
    [InlineData(36, 36)]
    [InlineData(4, 4)]
    [InlineData(12, 20)]
    [InlineData(6, 7)]
    [InlineData(20, 44)]
    [InlineData(18, 32)]
    public unsafe void TransposeCopiesEveryFloatAndNothingElse(int rows, int columns)
    {
        if (!System.Runtime.Intrinsics.X86.Avx.IsSupported) Assert.Skip("This CPU has no AVX: the transposes do not run.");
        long lds = columns + 3, ldd = rows + 5;
        float[] src = Enumerable.Range(0, (int)(rows * lds)).Select(i => (float)i).ToArray();
        float[] dst = Enumerable.Repeat(float.NaN, (int)(columns * ldd + 8)).ToArray();
        fixed (float* ps = src, pd = dst) Gemm.Transpose(ps, lds, pd, ldd, rows, columns);
        for (int j = 0; j < columns; j++)
            for (long i = 0; i < ldd; i++)
            {
                float actual = dst[j * ldd + i];
                if (i < rows) Assert.Equal(src[i * lds + j], actual);
                else Assert.True(float.IsNaN(actual), $"row {j}, float {i} past the block was written");
            }
        Assert.All(dst[(int)(columns * ldd)..], v => Assert.True(float.IsNaN(v)));
    }

    [Fact]
    public void ThreadsRejectsZero()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => CpuThreading.Threads = 0);
        Assert.Contains("at least 1", e.Message);
    }
}
