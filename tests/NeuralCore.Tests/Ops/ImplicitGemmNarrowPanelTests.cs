using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// The implicit GEMM's panels of at most 16 columns (a map's last few positions at batch 1, multiplied transposed with
/// one tile row per position) against the in-order sum each output is defined as: for 1 to 16 columns, output channel
/// counts that take every lane width of the transposed tile (8, 16 + 8, 32, 32 + 6, 64 + 12), bias, residual and ReLU
/// written back with them (at 256 bits in the block's epilogue pass), and the rows split between two threads, at each
/// width the implicit GEMM runs at, with strips off (at 512 bits they would take every count of up to 24 output
/// channels; <see cref="ConvStripTests"/> compares them with the tiles). Sets the process-wide thread count, kernel width
/// and strips, so runs alone.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed class ImplicitGemmNarrowPanelTests
{
    [Theory]
    [InlineData(1, 6, 6, 19, 19)]   // MNIST's stage-1 map: 32 + 4 columns, 4 rows of 16 + 8 lanes
    [InlineData(1, 6, 6, 32, 32)]   // 4 rows of 32 lanes
    [InlineData(1, 6, 6, 19, 38)]   // 32 + 6 output channels: 4 rows of 32 lanes, then 8 lanes
    [InlineData(1, 6, 6, 38, 76)]   // 64 + 12: 4 rows of 32 lanes twice, then 16 lanes
    [InlineData(1, 1, 7, 5, 8)]     // 7 columns, 8 output channels: 8 lanes
    [InlineData(1, 3, 3, 7, 21)]    // 9 columns: a full group of 8 rows and one of 1 row
    [InlineData(1, 2, 7, 4, 24)]    // 14: 8 rows and 6 rows of 16 + 8 lanes
    [InlineData(3, 6, 6, 19, 19)]   // three samples: 108 = 3 x 32 + 12 columns
    [InlineData(1, 5, 8, 9, 19)]    // 40 = 32 + 8: the tail a full group of 8 rows
    [InlineData(1, 1, 3, 3, 19)]    // one panel of 3 columns, a single-row map (its outer taps dropped)
    public unsafe void NarrowPanelsGiveTheInOrderSums(int n, int h, int w, int c, int k)
    {
        var p = new Conv2dParams(n, c, h, w, k, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        var widths = new[] { Gemm.KernelKind.Vector512, Gemm.KernelKind.Vector256 }.Where(kind => kind <= Gemm.Best
            && ConvPathRuns.WithKernels(kind, () => ImplicitGemmConv.Supports(p) || ImplicitGemmConv.Supports256(p))).ToArray();
        if (widths.Length == 0) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the implicit GEMM does not run.");
        int columns = n * h * w;
        float[] x = Reference.ToFloat(Reference.Random(c * columns, 11));
        float[] weights = Reference.ToFloat(Reference.Random(k * c * 9, 12));
        float[] bias = Reference.ToFloat(Reference.Random(k, 13));
        float[] residual = Reference.ToFloat(Reference.Random(k * columns, 14));
        // Plain sums, and bias + residual + ReLU in the epilogue's order, channel-major ([K, N * H * W]).
        var plain = new float[k * columns];
        var fused = new float[k * columns];
        for (int o = 0; o < k; o++)
            for (int s = 0; s < n; s++)
                for (int i = 0; i < h; i++)
                    for (int j = 0; j < w; j++)
                    {
                        float acc = 0;
                        for (int ci = 0; ci < c; ci++)
                            for (int r = 0; r < 3; r++)
                                for (int t = 0; t < 3; t++)
                                {
                                    int ii = i + r - 1, jj = j + t - 1;
                                    float value = ii < 0 || ii >= h || jj < 0 || jj >= w ? 0f : x[ci * columns + (s * h + ii) * w + jj];
                                    acc = MathF.FusedMultiplyAdd(weights[((o * c + ci) * 3 + r) * 3 + t], value, acc);
                                }
                        int at = o * columns + (s * h + i) * w + j;
                        plain[at] = acc;
                        fused[at] = Math.Max(acc + bias[o] + residual[at], 0f);
                    }

        int saved = CpuThreading.Threads;
        var savedKind = Gemm.Kind;
        ImplicitGemmConv.Strips = false;
        try
        {
            foreach (var (width, threads) in widths.SelectMany(width => new[] { (width, 1), (width, 2) }))
            {
                CpuThreading.Threads = threads;
                Gemm.Kind = width;
                var packed = new ImplicitGemmConv.Weights(weights, p);
                var y = new float[k * columns];
                fixed (float* px = x, pb = bias, pr = residual, py = y)
                {
                    Array.Fill(y, float.NaN);
                    ImplicitGemmConv.Forward(px, packed.View(), null, py, p, null, hasActivation: false, default, 0f, 0f);
                    Assert.Equal(ConvPathRuns.Bits(plain), ConvPathRuns.Bits(y));
                    Array.Fill(y, float.NaN);
                    ImplicitGemmConv.Forward(px, packed.View(), pb, py, p, pr, hasActivation: true, UnaryOp.Relu, 0f, 0f);
                    Assert.Equal(ConvPathRuns.Bits(fused), ConvPathRuns.Bits(y));
                }
                GC.KeepAlive(packed);
            }
        }
        finally
        {
            CpuThreading.Threads = saved;
            Gemm.Kind = savedKind;
            ImplicitGemmConv.Strips = true;
        }
    }
}
