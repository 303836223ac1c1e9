using System.Runtime.Intrinsics;
using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// 1x1 convolutions that read their input rows where they lie (<see cref="ImplicitGemmConv.InPlacePointwise"/>): the
/// tiles of 8 x 48 and 8 x 32 on rows a stride apart (<see cref="Gemm.MultiplyWideRowsWithEpilogue"/>,
/// <see cref="Gemm.MultiplyRowsWithEpilogue"/>, their plain forms and the masked wide tile,
/// <see cref="Gemm.MultiplyWideRowsMasked"/>) against a scalar chain of fused multiply-adds
/// in the tiles' order, and whole convolutions against the same convolutions on copied panels (the same bits).
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed unsafe class ImplicitGemmInPlaceTests
{
    public static IEnumerable<TheoryDataRow<bool, int, int, bool, bool>> Tiles()
    {
        foreach (bool wide in new[] { true, false })
            foreach (int rows in new[] { 8, 7, 5, 1 })
                for (int kind = -1; kind <= 2; kind++)
                    foreach (bool withBias in new[] { true, false })
                        foreach (bool withResidual in new[] { true, false })
                            if (kind >= 0 || (!withBias && !withResidual))
                                if (wide || rows == 8 || kind < 0) yield return new(wide, rows, kind, withBias, withResidual);
    }

    /// <summary>
    /// Each output is the chain fma(a[p], b[p], acc) from zero over the depth in order, then bias, residual and the
    /// activation in <see cref="ConvKernels.EpilogueVector(Vector512{float}, float, bool, Vector512{float}, bool, int)"/>'s
    /// order (kind -1: stored plain); B's rows are read at a stride that is no multiple of a vector, and nothing past the
    /// tile's rows and columns is written. The 48-column tiles take edge rows with every epilogue, the 32-column ones
    /// plain (their edge tiles get the epilogue in a pass after).
    /// </summary>
    [Theory]
    [MemberData(nameof(Tiles))]
    public void TilesOnRowsWhereTheyLieSumInTheTilesOrder(bool wide, int rows, int kind, bool withBias, bool withResidual)
    {
        if (!Vector512.IsHardwareAccelerated || Gemm.Kind != Gemm.KernelKind.Vector512)
            Assert.Skip("This CPU has no AVX-512: the tiles do not run.");
        const int depth = 37, ldb = 53, ldc = 61, ldr = 59, sentinel = 12345;
        int width = wide ? Gemm.WideColumns : Gemm.PanelColumns;
        var random = new Random(rows * 100 + kind * 10 + (withBias ? 2 : 0) + (withResidual ? 1 : 0) + (wide ? 1000 : 0));
        float Next() => (float)(random.NextDouble() * 2 - 1);
        // A as one packed micro-panel: per depth step, 8 rows' values (past the tile's rows, zeros).
        float[] a = new float[depth * Gemm.PanelRows];
        for (int p = 0; p < depth; p++)
            for (int i = 0; i < rows; i++) a[p * Gemm.PanelRows + i] = Next();
        float[] b = Enumerable.Range(0, depth * ldb).Select(_ => Next()).ToArray();
        float[]? bias = withBias ? Enumerable.Range(0, 8).Select(_ => Next()).ToArray() : null;
        float[]? residual = withResidual ? Enumerable.Range(0, 8 * ldr).Select(_ => Next()).ToArray() : null;
        float[] c = Enumerable.Repeat((float)sentinel, 9 * ldc).ToArray();
        float[] tile = new float[Gemm.PanelRows * Gemm.WideColumns];
        fixed (float* pa = a, pb = b, pbias = bias, pr = residual, pc = c, pt = tile)
        {
            if (kind >= 0 && wide) Gemm.MultiplyWideRowsWithEpilogue(rows, depth, pa, pb, ldb, pc, ldc, pbias, pr, ldr, kind);
            else if (kind >= 0) Gemm.MultiplyRowsWithEpilogue(depth, pa, pb, ldb, pc, ldc, pbias, pr, ldr, kind);
            else if (wide) Gemm.MultiplyWideRows(rows, depth, pa, pb, ldb, pc, ldc);
            else Gemm.MultiplyRows(rows, depth, pa, pb, ldb, pc, ldc, pt);
        }
        AssertChains(a, b, ldb, c, ldc, rows, width, depth, sentinel, (sum, i, j) =>
        {
            if (bias is not null) sum += bias[i];
            if (residual is not null) sum += residual[i * ldr + j];
            if (kind == 1) sum = MathF.Max(sum, 0f) + 0f;
            if (kind == 2) sum = sum * MathF.Min(MathF.Max(sum + 3f, 0f), 6f) * (1f / 6f);
            return sum;
        });
    }

    /// <summary>
    /// c's rows [0, rows) and columns [0, width) hold finish(the chain fma(a[p], b[p], acc) from zero over the depth,
    /// row, column), the rest of its 9 rows of ldc the sentinel (A one packed micro-panel, B's rows ldb apart).
    /// </summary>
    private static void AssertChains(float[] a, float[] b, int ldb, float[] c, int ldc, int rows, int width, int depth, float sentinel,
        Func<float, int, int, float> finish)
    {
        for (int i = 0; i < 9; i++)
            for (int j = 0; j < ldc; j++)
            {
                float actual = c[i * ldc + j];
                if (i >= rows || j >= width)
                {
                    Assert.Equal(sentinel, actual);
                    continue;
                }
                float sum = 0f;
                for (int p = 0; p < depth; p++) sum = MathF.FusedMultiplyAdd(a[p * Gemm.PanelRows + i], b[p * ldb + j], sum);
                Assert.Equal(BitConverter.SingleToInt32Bits(finish(sum, i, j)), BitConverter.SingleToInt32Bits(actual));
            }
    }

    /// <summary>
    /// A block's last 33-47 columns in one wide tile with B's third vector masked (<see cref="Gemm.MultiplyWideRowsMasked"/>):
    /// each output the chain of fused multiply-adds in the tiles' order, stored plain for the tile's rows and columns
    /// only, B's values past the width (NaN here) never reaching an output; widths outside 33-47 are refused.
    /// </summary>
    [Theory]
    [InlineData(8, 40)]
    [InlineData(8, 33)]
    [InlineData(8, 47)]
    [InlineData(6, 40)]
    [InlineData(1, 35)]
    public void MaskedWideTilesSumInTheTilesOrder(int rows, int width)
    {
        if (!Vector512.IsHardwareAccelerated || Gemm.Kind != Gemm.KernelKind.Vector512)
            Assert.Skip("This CPU has no AVX-512: the tiles do not run.");
        const int depth = 38, ldb = 53, ldc = 61, sentinel = 12345;
        var random = new Random(rows * 100 + width);
        float Next() => (float)(random.NextDouble() * 2 - 1);
        float[] a = new float[depth * Gemm.PanelRows];
        for (int p = 0; p < depth; p++)
            for (int i = 0; i < rows; i++) a[p * Gemm.PanelRows + i] = Next();
        float[] b = Enumerable.Range(0, depth * ldb).Select(j => j % ldb < width ? Next() : float.NaN).ToArray();
        float[] c = Enumerable.Repeat((float)sentinel, 9 * ldc).ToArray();
        fixed (float* pa = a, pb = b, pc = c)
            Gemm.MultiplyWideRowsMasked(rows, depth, pa, pb, ldb, width, pc, ldc);
        AssertChains(a, b, ldb, c, ldc, rows, width, depth, sentinel, (sum, _, _) => sum);
        Assert.Throws<ArgumentOutOfRangeException>(() => { fixed (float* pa = a, pb = b, pc = c) Gemm.MultiplyWideRowsMasked(rows, depth, pa, pb, ldb, 32, pc, ldc); });
        Assert.Throws<ArgumentOutOfRangeException>(() => { fixed (float* pa = a, pb = b, pc = c) Gemm.MultiplyWideRowsMasked(rows, depth, pa, pb, ldb, 48, pc, ldc); });
    }

    /// <summary>
    /// The training passes' 1x1s sample by sample over mel's 7 x 24 maps (168 columns: 48 + 48 + 32 + a masked 40) and
    /// 31 x 24 (a block of 232: 3 x 48 + 48 + a masked 40), forward with a bias and backward data, at one and two threads:
    /// the bits of a 32-column tile and a panel for the last columns (<see cref="ImplicitGemmConv.MaskedWideTiles"/> off).
    /// </summary>
    [Theory]
    [InlineData(8, 38, 38, 7, 24)]
    [InlineData(8, 76, 19, 7, 24)]
    [InlineData(8, 19, 19, 31, 24)]
    public void MaskedWideTilesGiveTheBitsOfATileAndAPanel(int n, int c, int k, int h, int w)
    {
        var p = new Conv2dParams(n, c, h, w, k, 1, 1, 1, 1, 0, 0, 1, 1, 1);
        if (!ConvPathRuns.AtThreads(2, () => ConvKernels.RunsBySample(p)))
            Assert.Skip("This CPU has no AVX-512: 1x1s do not run sample by sample.");
        float[] x = Reference.ToFloat(Reference.Random(n * c * h * w, 61));
        float[] wt = Reference.ToFloat(Reference.Random(k * c, 62));
        float[] bias = Reference.ToFloat(Reference.Random(k, 63));
        float[] dy = Reference.ToFloat(Reference.Random(n * k * h * w, 64));
        x[^1] = float.NaN;
        int saved = CpuThreading.Threads;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                CpuThreading.Threads = threads;
                var panel = ConvPathRuns.ForwardAndBackwardData(p, x, wt, bias, dy, on => ImplicitGemmConv.MaskedWideTiles = on, false);
                var masked = ConvPathRuns.ForwardAndBackwardData(p, x, wt, bias, dy, on => ImplicitGemmConv.MaskedWideTiles = on, true);
                Assert.Equal(ConvPathRuns.Bits(panel.Y), ConvPathRuns.Bits(masked.Y));
                Assert.Equal(ConvPathRuns.Bits(panel.Dx), ConvPathRuns.Bits(masked.Dx));
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    /// <summary>
    /// The epilogue pass after stored tiles (<see cref="ConvKernels.Epilogue"/>: edge tiles, blocks without a fused
    /// epilogue): each value of each row becomes act(v + bias[k] + residual[k, j]) with the steps in that order, for
    /// every combination of the steps, over rows of whole vectors and a masked rest (37 = 2 x 16 + 5), the values past
    /// the rows' length untouched; -0 stays -0 where nothing is added and no ReLU applies, and a NaN stays NaN.
    /// </summary>
    [Theory]
    [InlineData(0, true, true)]
    [InlineData(0, false, false)]
    [InlineData(0, false, true)]
    [InlineData(1, true, false)]
    [InlineData(1, false, false)]
    [InlineData(2, true, true)]
    [InlineData(2, false, true)]
    public void TheEpiloguePassAppliesBiasResidualAndActivationInOrder(int kind, bool withBias, bool withResidual)
    {
        const int rows = 3, length = 37, ld = 41, at = 2, residualLd = 43, residualAt = 1;
        var random = new Random(kind * 4 + (withBias ? 2 : 0) + (withResidual ? 1 : 0));
        float Next() => (float)(random.NextDouble() * 8 - 4);
        float[] y = Enumerable.Range(0, rows * ld).Select(_ => Next()).ToArray();
        y[at] = -0f;
        y[at + 20] = float.NaN;
        float[] before = (float[])y.Clone();
        float[]? bias = withBias ? Enumerable.Range(0, rows).Select(_ => Next()).ToArray() : null;
        float[]? residual = withResidual ? Enumerable.Range(0, rows * residualLd).Select(_ => Next()).ToArray() : null;
        if (residual is not null) residual[residualAt] = -0f;
        fixed (float* py = y, pb = bias, pr = residual)
            ConvKernels.Epilogue(py, ld, at, rows, length, pb, pr, residualLd, residualAt, kind > 0,
                kind == 2 ? UnaryOp.Hardswish : UnaryOp.Relu, 0f, 0f);
        for (int k = 0; k < rows; k++)
            for (int j = 0; j < ld; j++)
            {
                float expected = before[k * ld + j];
                if (j >= at && j < at + length)
                {
                    if (bias is not null) expected += bias[k];
                    if (residual is not null) expected += residual[k * residualLd + residualAt + j - at];
                    if (kind == 1) expected = float.IsNaN(expected) ? expected : MathF.Max(expected, 0f) + 0f;
                    if (kind == 2) expected = expected * MathF.Min(MathF.Max(expected + 3f, 0f), 6f) * (1f / 6f);
                }
                Assert.Equal(ConvPathRuns.Bits([expected]), ConvPathRuns.Bits([y[k * ld + j]]));
            }
        if (kind == 0 && !withBias) Assert.Equal(BitConverter.SingleToInt32Bits(-0f), BitConverter.SingleToInt32Bits(y[at]));
    }

    /// <summary>
    /// Whole 1x1 convolutions, channel-major as the inference plans hold them, read in place and on copied panels: the
    /// same bits, with every epilogue (bias or none, a residual, ReLU or Hardswish), output channels in edge tiles (40,
    /// 38, 76, 57 = 7 x 8 + 1, 25), the 48- and 32-column tiles and a block's last columns (840 = 2 x 288 + 264, 264 =
    /// 5 x 48 + 24 through a panel), a fused 2 x 1 pool, two groups, and one or two threads; each geometry's input rows pass the L1 rule, so
    /// the in-place tiles do run (pooled ones of at most 24 output channels too, which without them run in strips).
    /// </summary>
    [Theory]
    // N, C, K, H, W, groups, residual, activation (0 none, 1 ReLU, 2 Hardswish), bias, pool, threads
    [InlineData(5, 128, 128, 7, 24, 1, true, 1, true, false, 1)]
    [InlineData(5, 64, 128, 7, 24, 1, false, 1, true, false, 2)]
    [InlineData(8, 38, 76, 7, 24, 1, true, 1, true, false, 1)]
    [InlineData(8, 76, 76, 7, 24, 1, false, 0, true, false, 2)]
    [InlineData(3, 19, 38, 7, 24, 1, false, 2, false, false, 1)]
    [InlineData(2, 32, 32, 15, 24, 1, true, 1, true, true, 1)]
    [InlineData(1, 40, 40, 31, 24, 1, true, 1, true, true, 2)]
    [InlineData(8, 19, 19, 31, 24, 1, true, 1, true, true, 1)]
    [InlineData(4, 16, 24, 7, 24, 2, false, 0, false, false, 1)]
    [InlineData(1, 64, 64, 7, 24, 1, true, 1, true, false, 2)]
    [InlineData(6, 57, 57, 7, 24, 1, true, 1, true, false, 1)]
    [InlineData(6, 28, 57, 7, 24, 1, false, 2, true, false, 2)]
    [InlineData(6, 51, 25, 7, 24, 1, true, 0, false, false, 1)]
    public void PointwiseConvolutionsReadInPlaceGiveTheCopiedPanelsBits(int n, int c, int k, int h, int w, int groups, bool withResidual,
        int activation, bool withBias, bool pooled, int threads)
    {
        var p = new Conv2dParams(n, c, h, w, k, 1, 1, 1, 1, 0, 0, 1, 1, groups);
        if (!ImplicitGemmConv.Supports(p)) Assert.Skip("This CPU has no AVX-512: the implicit GEMM does not run.");
        var random = new Random(n * 1000 + c * 10 + k);
        float Next() => (float)(random.NextDouble() * 2 - 1);
        int plane = h * w, columns = n * plane;
        float[] x = GC.AllocateArray<float>(c * columns, pinned: true);
        for (int i = 0; i < x.Length; i++) x[i] = Next();
        float[] weight = Enumerable.Range(0, k * (c / groups)).Select(_ => Next()).ToArray();
        float[]? bias = withBias ? GC.AllocateArray<float>(k, pinned: true) : null;
        for (int i = 0; i < (bias?.Length ?? 0); i++) bias![i] = Next();
        float[]? residual = withResidual ? GC.AllocateArray<float>(k * columns, pinned: true) : null;
        for (int i = 0; i < (residual?.Length ?? 0); i++) residual![i] = Next();
        var pool = pooled ? new ImplicitGemmConv.FusedPool(new Pool2dParams(n, k, h, w, 2, 1, 2, 1, 0, 0)) : (ImplicitGemmConv.FusedPool?)null;
        int outputs = pooled ? k * n * (h / 2) * w : k * columns;
        var weights = new ImplicitGemmConv.Weights(weight, p);
        var unary = activation == 2 ? UnaryOp.Hardswish : UnaryOp.Relu;
        int before = CpuThreading.Threads, ways = ImplicitGemmConv.L1Ways;
        CpuThreading.Threads = threads;
        // The Xeon hosts' L1 (12 ways), where every geometry here reads in place.
        ImplicitGemmConv.L1Ways = 12;
        try
        {
            fixed (float* px = x)
                Assert.True(ImplicitGemmConv.ReadsInPlace(p, columns, (long)px));
            float[] inPlace = Run(), copied;
            ImplicitGemmConv.InPlacePointwise = false;
            try
            {
                copied = Run();
            }
            finally
            {
                ImplicitGemmConv.InPlacePointwise = true;
            }
            Assert.DoesNotContain(inPlace, float.IsNaN);
            Assert.Equal(ConvPathRuns.Bits(copied), ConvPathRuns.Bits(inPlace));
        }
        finally
        {
            CpuThreading.Threads = before;
            ImplicitGemmConv.L1Ways = ways;
        }

        float[] Run()
        {
            float[] y = GC.AllocateArray<float>(outputs, pinned: true);
            Array.Fill(y, float.NaN);
            fixed (float* px = x, pbias = bias, pr = residual, py = y)
                ImplicitGemmConv.Forward(px, weights.View(), pbias, py, p, pr, activation > 0, unary, 0f, 0f, pool);
            return y;
        }
    }

    /// <summary>
    /// The L1 rule on a cache of 12 ways (the Xeon hosts; 8 of them for the rows): input rows that spread over L1's sets
    /// read in place (mel maps in a shard's pieces of 5 and 8 samples, a single sample), rows a multiple of 4 KiB or 2 KiB
    /// apart (mel b64 and MNIST b256's whole batches, whose 128 rows of a tile would share a few sets) keep the copied
    /// panels, as do 1x1s with padding or stride and 3x3s. With 8 ways (Zen 4; 4 for the rows) the 128-channel pieces
    /// keep the copy too, though the same rows were answered on 12 just before (the ways are part of what the answers are
    /// kept by).
    /// </summary>
    [Fact]
    public void RowsThatWouldShareL1sSetsKeepTheCopiedPanels()
    {
        static Conv2dParams Pointwise(int n, int c, int h, int w) => new(n, c, h, w, c, 1, 1, 1, 1, 0, 0, 1, 1, 1);
        int ways = ImplicitGemmConv.L1Ways;
        try
        {
            ImplicitGemmConv.L1Ways = 12;
            // Twice over: the second time more than the thread's memo holds is answered from it, the rest walked again.
            for (int pass = 0; pass < 2; pass++)
            {
                Assert.True(ImplicitGemmConv.ReadsInPlace(Pointwise(5, 128, 7, 24), 5 * 168, 0));
                Assert.True(ImplicitGemmConv.ReadsInPlace(Pointwise(8, 76, 7, 24), 8 * 168, 0));
                Assert.True(ImplicitGemmConv.ReadsInPlace(Pointwise(8, 128, 7, 24), 8 * 168, 32));
                Assert.True(ImplicitGemmConv.ReadsInPlace(Pointwise(1, 128, 7, 24), 168, 4));
                Assert.False(ImplicitGemmConv.ReadsInPlace(Pointwise(64, 128, 7, 24), 64 * 168, 0));
                Assert.False(ImplicitGemmConv.ReadsInPlace(Pointwise(64, 38, 7, 24), 64 * 168, 0));
                Assert.False(ImplicitGemmConv.ReadsInPlace(Pointwise(128, 64, 6, 6), 128 * 36, 0));
                Assert.False(ImplicitGemmConv.ReadsInPlace(Pointwise(128, 64, 3, 6), 128 * 18, 0));
                Assert.False(ImplicitGemmConv.ReadsInPlace(new Conv2dParams(5, 64, 7, 24, 64, 1, 1, 1, 1, 1, 1, 1, 1, 1), 840, 0));
                Assert.False(ImplicitGemmConv.ReadsInPlace(new Conv2dParams(5, 64, 7, 24, 64, 1, 1, 2, 2, 0, 0, 1, 1, 1), 840, 0));
                Assert.False(ImplicitGemmConv.ReadsInPlace(new Conv2dParams(5, 64, 7, 24, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1), 840, 0));
            }
            ImplicitGemmConv.L1Ways = 8;
            Assert.False(ImplicitGemmConv.ReadsInPlace(Pointwise(5, 128, 7, 24), 5 * 168, 0));
            Assert.True(ImplicitGemmConv.ReadsInPlace(Pointwise(5, 38, 7, 24), 5 * 168, 0));
        }
        finally
        {
            ImplicitGemmConv.L1Ways = ways;
        }
    }
}
