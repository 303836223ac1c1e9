using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;
using static NeuralCore.Tests.Ops.ConvPathRuns;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// The narrow-map kernel (<see cref="NarrowMapConv"/>: maps of at most 24 positions, position-major output) at each
/// vector width it runs at, bit for bit against its order of summation: taps outer, input channels inner, one fused
/// multiply-add each from zero, then bias, residual and ReLU. Position counts that leave groups of 1 to 8 rows (1, 6,
/// 16 = 8 + 8, 18 = 6 + 6 + 6, 7), channel counts that end inside a vector of 8 and of 16 and cross a 32-channel panel
/// (19, 38, 76, 9), dropped taps, input channel-major and position-major. Narrows the kernels, so runs alone.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed unsafe class NarrowMapConvTests
{
    [Theory]
    // N, H, W, C, K, input position-major
    [InlineData(1, 1, 6, 19, 38, false)]
    [InlineData(1, 1, 6, 38, 76, true)]
    [InlineData(1, 3, 6, 19, 19, true)]
    [InlineData(2, 2, 4, 5, 21, false)]
    [InlineData(1, 1, 1, 3, 9, false)]
    [InlineData(1, 1, 7, 8, 40, false)]
    public void SumsTapsOuterAtEveryWidth(int n, int h, int w, int c, int k, bool positionMajor)
    {
        var p = new Conv2dParams(n, c, h, w, k, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        var widths = new[] { Gemm.KernelKind.Vector512, Gemm.KernelKind.Vector256 }
            .Where(kind => kind <= Gemm.Best && WithKernels(kind, () => NarrowMapConv.Supports(p))).ToArray();
        if (widths.Length == 0) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the narrow-map kernel does not run.");
        int positions = n * h * w;
        float[] x = Reference.ToFloat(Reference.Random(c * positions, 21));
        float[] wt = Reference.ToFloat(Reference.Random(k * c * 9, 22));
        float[] bias = Reference.ToFloat(Reference.Random(k, 23));
        float[] residual = Reference.ToFloat(Reference.Random(positions * k, 24));
        // x channel-major [C, positions] or position-major [positions, C]; y and the residual position-major.
        float Input(int ci, int j) => positionMajor ? x[j * c + ci] : x[ci * positions + j];
        var plain = new float[positions * k];
        var fused = new float[positions * k];
        for (int j = 0; j < positions; j++)
        {
            int s = j / (h * w), i = j / w % h, col = j % w;
            for (int o = 0; o < k; o++)
            {
                float acc = 0;
                for (int r = 0; r < 3; r++)
                    for (int t = 0; t < 3; t++)
                        for (int ci = 0; ci < c; ci++)
                        {
                            int ii = i + r - 1, jj = col + t - 1;
                            float v = ii < 0 || ii >= h || jj < 0 || jj >= w ? 0f : Input(ci, (s * h + ii) * w + jj);
                            acc = MathF.FusedMultiplyAdd(wt[((o * c + ci) * 3 + r) * 3 + t], v, acc);
                        }
                plain[j * k + o] = acc;
                fused[j * k + o] = MathF.Max(acc + bias[o] + residual[j * k + o], 0f);
            }
        }
        foreach (var width in widths)
            WithKernels(width, () =>
            {
                var weights = new NarrowMapConv.Weights(wt, p);
                var y = new float[positions * k];
                fixed (float* px = x, pb = bias, pr = residual, py = y)
                {
                    Array.Fill(y, float.NaN);
                    NarrowMapConv.Forward(px, positionMajor, weights, null, py, p, null, 0);
                    Assert.Equal(Bits(plain), Bits(y));
                    Array.Fill(y, float.NaN);
                    NarrowMapConv.Forward(px, positionMajor, weights, pb, py, p, pr, 1);
                    Assert.Equal(Bits(fused), Bits(y));
                }
            });
    }
}
