using System.Runtime.Intrinsics;
using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// Winograd's point-wise products in strips (<see cref="Gemm.MultiplyPointStrips"/>,
/// <see cref="Gemm.MultiplyPointStripPairs"/>): every output channel of a point, at most 24 of them, for 16 or 32 tiles.
/// The kernels against a scalar chain of fused multiply-adds in the tiles' order (the same bits), and Winograd
/// convolutions whose weights were transformed for strips against the same convolutions through the 8 x 32 tiles
/// (<see cref="WinogradConv.Strips"/> off).
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed unsafe class WinogradStripTests
{
    public static IEnumerable<TheoryDataRow<int, int>> RowCounts() =>
        from columns in new[] { 16, 32 } from rows in Enumerable.Range(1, Gemm.MaxStripRows) select new TheoryDataRow<int, int>(rows, columns);

    /// <summary>
    /// Every row count, for 16 columns (<see cref="Gemm.MultiplyPointStrips"/>) and for 32
    /// (<see cref="Gemm.MultiplyPointStripPairs"/>, its rows in strips of at most 12): each point's sums over the depth in
    /// order, one fused multiply-add a term from zero, stored whole at its rows; nothing written past the last row or
    /// beside the columns.
    /// </summary>
    [Theory]
    [MemberData(nameof(RowCounts))]
    public void PointStripsSumInTheTilesOrder(int rows, int columns)
    {
        if (!Vector512.IsHardwareAccelerated || Gemm.Kind != Gemm.KernelKind.Vector512)
            Assert.Skip("This CPU has no AVX-512: the strips do not run.");
        const int points = 3, depth = 21, ldv = 48, ldm = 40;
        long uPoint = depth * Gemm.MaxStripRows + 8, vPoint = depth * ldv + 16, mPoint = (Gemm.MaxStripRows + 1) * ldm;
        var random = new Random(rows);
        float[] u = Enumerable.Range(0, (int)(points * uPoint)).Select(_ => Next(random)).ToArray();
        float[] v = Enumerable.Range(0, (int)(points * vPoint)).Select(_ => Next(random)).ToArray();
        float[] m = Enumerable.Repeat(float.NaN, (int)(points * mPoint)).ToArray();
        fixed (float* pu = u, pv = v, pm = m)
            if (columns == 32) Gemm.MultiplyPointStripPairs(rows, points, depth, pu, uPoint, pv, vPoint, ldv, pm, mPoint, ldm);
            else Gemm.MultiplyPointStrips(rows, points, depth, pu, uPoint, pv, vPoint, ldv, pm, mPoint, ldm);
        for (int p = 0; p < points; p++)
            for (int i = 0; i <= Gemm.MaxStripRows; i++)
                for (int l = 0; l < ldm; l++)
                {
                    float actual = m[p * mPoint + i * ldm + l];
                    if (i >= rows || l >= columns)
                    {
                        Assert.True(float.IsNaN(actual), $"point {p} row {i} column {l} was written");
                        continue;
                    }
                    float expected = 0f;
                    for (int d = 0; d < depth; d++)
                        expected = MathF.FusedMultiplyAdd(u[p * uPoint + d * Gemm.MaxStripRows + i], v[p * vPoint + d * ldv + l], expected);
                    Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(actual));
                }
    }

    /// <summary>
    /// Convolutions whose weights were transformed for strips give the tiles' bits: F(3x3, 3x3) with the tiles in the
    /// lanes (mel's 31 x 24), F(2x2, 3x3) with a fused pool, the samples in the lanes (MNIST's 6 x 6 and 3 x 6, a last
    /// block of fewer than 32 samples), maps of odd height and width, one to 24 output channels with bias, residual and
    /// each activation, two threads, and a NaN in the input; panels of 32 tiles (strip pairs) and last panels of at most
    /// 16 (mel's 176 tiles in blocks of 96 and 80). With 25 output channels the weights keep the tiles' packing.
    /// </summary>
    [Theory]
    [InlineData(2, 31, 24, 19, 19, false, true, 1, 1, false)]
    [InlineData(2, 31, 24, 19, 19, true, true, 1, 1, false)]
    [InlineData(2, 31, 24, 19, 19, false, false, 0, 2, true)]
    [InlineData(40, 6, 6, 19, 19, true, true, 1, 1, false)]
    [InlineData(40, 6, 6, 19, 19, false, false, 2, 2, true)]
    [InlineData(33, 3, 6, 38, 24, false, true, 1, 1, false)]
    [InlineData(1, 32, 30, 5, 1, false, false, 0, 1, false)]
    [InlineData(3, 17, 33, 8, 13, false, true, 2, 1, false)]
    [InlineData(2, 31, 24, 19, 25, false, true, 1, 1, false)]
    public void ConvolutionsInStripsGiveTheTilesBits(int n, int h, int w, int c, int k, bool pooled, bool withResidual, int kind,
        int threads, bool withNaN)
    {
        var p = new Conv2dParams(n, c, h, w, k, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        Pool2dParams? pool = pooled ? new Pool2dParams(n, k, h, w, 2, 1, 2, 1, 0, 0) : null;
        if (!WinogradConv.Supports(p, pool)) Assert.Skip("This CPU has no AVX-512: the Winograd path does not run.");
        var random = new Random(n * 1000 + h * 100 + k);
        float[] x = Enumerable.Range(0, n * c * h * w).Select(_ => Next(random)).ToArray();
        if (withNaN) x[x.Length / 3] = float.NaN;
        float[] weights = Enumerable.Range(0, k * c * 9).Select(_ => Next(random)).ToArray();
        float[] bias = Enumerable.Range(0, k).Select(_ => Next(random)).ToArray();
        float[] residual = Enumerable.Range(0, n * k * h * w).Select(_ => Next(random)).ToArray();
        int outputs = n * k * (pooled ? h / 2 : h) * w;
        bool savedStrips = WinogradConv.Strips;
        int savedThreads = CpuThreading.Threads;
        var results = new float[2][];
        try
        {
            CpuThreading.Threads = threads;
            for (int strips = 0; strips < 2; strips++)
            {
                WinogradConv.Strips = strips == 1;
                var transformed = new WinogradConv.Weights(weights, p, pooled);
                Assert.Equal(strips == 1 && k <= Gemm.MaxStripRows, transformed.UsesStrips);
                results[strips] = new float[outputs];
                fixed (float* px = x, pb = bias, pr = residual, py = results[strips])
                    WinogradConv.Forward(px, transformed, pb, py, p, withResidual ? pr : null, kind, pooled);
            }
        }
        finally
        {
            WinogradConv.Strips = savedStrips;
            CpuThreading.Threads = savedThreads;
        }
        if (withNaN) Assert.Contains(results[0], float.IsNaN);
        for (int i = 0; i < outputs; i++)
            Assert.True(BitConverter.SingleToInt32Bits(results[0][i]) == BitConverter.SingleToInt32Bits(results[1][i]),
                $"output {i}: tiles {results[0][i]}, strips {results[1][i]}");
    }

    private static float Next(Random random) => (float)(random.NextDouble() * 2 - 1);
}
