using System.Runtime.Intrinsics;
using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// The inference plans' stem (<see cref="DirectStemConv"/>: one input channel, stride 2, output channels in strips of at
/// most 24) against a scalar reference that sums the taps in (r, s) order with one fused multiply-add each, adds the bias,
/// applies the activation with <see cref="CpuBackend.UnaryRange"/>'s expressions and takes the 2x2 pool's maximum:
/// the same bits, on every path (samples in the lanes, rows in the lanes, batch 1 cut into bands, a band of rows alone).
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed unsafe class DirectStemConvTests
{
    /// <summary>
    /// Samples in the lanes (16 or more samples whose pooled rows leave lanes idle: MNIST's 12 columns, a last chunk of
    /// one sample), rows in the lanes (pooled and unpooled, odd heights and widths), one strip (19, 24), two (25, 32: 12
    /// + 13, 16 + 16) and three (50), each activation, with and without bias, batch 1 on two threads (bands), and a NaN
    /// in the input.
    /// </summary>
    [Theory]
    [InlineData(17, 28, 28, 19, 5, 1, true, true, 2, 2, false)]
    [InlineData(16, 28, 28, 32, 5, 1, true, true, 1, 1, false)]
    [InlineData(20, 28, 28, 24, 5, 1, true, false, 0, 2, true)]
    [InlineData(4, 40, 37, 25, 5, 1, true, false, 2, 1, false)]
    [InlineData(2, 33, 35, 50, 5, 2, false, true, 1, 2, false)]
    [InlineData(1, 128, 100, 19, 5, 1, true, true, 2, 2, false)]
    [InlineData(1, 27, 31, 7, 3, 0, false, false, 0, 2, true)]
    [InlineData(3, 9, 70, 3, 3, 2, false, true, 1, 1, false)]
    public void GivesTheBitsOfTheScalarSums(int n, int h, int w, int k, int kernel, int padding, bool pooled, bool withBias, int kind,
        int threads, bool withNaN)
    {
        var p = new Conv2dParams(n, 1, h, w, k, kernel, kernel, 2, 2, padding, padding, 1, 1, 1);
        Pool2dParams? pool = pooled ? new Pool2dParams(n, k, p.P, p.Q, 2, 2, 2, 2, 0, 0) : null;
        if (!DirectStemConv.Supports(p, pool)) Assert.Skip("This CPU has no AVX-512: the direct stem does not run.");
        var (x, weights, bias) = Inputs(p, withNaN);
        float[] expected = Reference(x, weights, withBias ? bias : null, p, pooled, kind);
        float[] actual = Enumerable.Repeat(float.NaN, expected.Length).ToArray();
        var packed = new DirectStemConv.Weights(weights, withBias ? bias : [], p);
        int saved = CpuThreading.Threads;
        try
        {
            CpuThreading.Threads = threads;
            fixed (float* px = x, py = actual)
                DirectStemConv.Forward(px, py, p, withBias, kind != 0, Activation(kind), pool, packed.Pointer);
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
        if (withNaN) Assert.Contains(expected, float.IsNaN);
        AssertSameBits(expected, actual);
    }

    /// <summary>
    /// One sample's band of rows (the plans' row bands at batch 1): rows [first, end) of the output, pooled or not, with the
    /// channels a stride of the caller's apart, are the whole output's rows; nothing else is written.
    /// </summary>
    [Theory]
    [InlineData(true, 5, 11)]
    [InlineData(true, 0, 31)]
    [InlineData(false, 4, 10)]
    [InlineData(false, 60, 63)]
    public void ABandOfRowsIsTheWholeOutputsRows(bool pooled, int first, int end)
    {
        var p = new Conv2dParams(1, 1, 128, 100, 19, 5, 5, 2, 2, 1, 1, 1, 1, 1);
        Pool2dParams? pool = pooled ? new Pool2dParams(1, 19, p.P, p.Q, 2, 2, 2, 2, 0, 0) : null;
        if (!DirectStemConv.Supports(p, pool)) Assert.Skip("This CPU has no AVX-512: the direct stem does not run.");
        var (x, weights, bias) = Inputs(p, withNaN: false);
        float[] whole = Reference(x, weights, bias, p, pooled, kind: 2);
        int rows = pooled ? pool!.Value.P : p.P, columns = pooled ? pool!.Value.Q : p.Q;
        long channelStride = (end - first) * columns + 5;
        float[] band = Enumerable.Repeat(float.NaN, (int)(19 * channelStride)).ToArray();
        var packed = new DirectStemConv.Weights(weights, bias, p);
        fixed (float* px = x, py = band)
            DirectStemConv.ForwardRows(px, py, channelStride, p, true, true, UnaryOp.Hardswish, pool, packed.Pointer, first, end);
        for (int c = 0; c < 19; c++)
            for (long i = 0; i < channelStride; i++)
            {
                float actual = band[c * channelStride + i];
                if (i >= (end - first) * columns)
                {
                    Assert.True(float.IsNaN(actual), $"channel {c}: float {i} past the band was written");
                    continue;
                }
                float expected = whole[(long)c * rows * columns + first * columns + i];
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
                    $"channel {c}, float {i} of the band: expected {expected}, got {actual}");
            }
    }

    /// <summary>
    /// The vector Hardswish (x86's maximum with zero first, without the fix-up of signed zeros) gives the scalar
    /// expression's bits on its special values: NaN, infinities, signed zeros, -3 and its neighbours, -1.5, 3.
    /// </summary>
    [Fact]
    public void VectorHardswishGivesTheScalarBits()
    {
        float[] values =
        [
            float.NaN, -float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0f, -0f, -3f, MathF.BitDecrement(-3f),
            MathF.BitIncrement(-3f), -1.5f, 3f, MathF.BitIncrement(3f), -1e-30f, 1e-30f, -float.Epsilon, 2.75f, -2.999f, 17f,
        ];
        for (int i = 0; i < values.Length; i += 16)
        {
            var lanes = new float[16];
            for (int l = 0; l < 16; l++) lanes[l] = values[Math.Min(i + l, values.Length - 1)];
            var result = ConvKernels.Hardswish(Vector512.Create(lanes));
            for (int l = 0; l < 16; l++)
            {
                float expected = Hardswish(lanes[l]);
                Assert.True(float.IsNaN(expected) ? float.IsNaN(result[l])
                    : BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(result[l]),
                    $"hardswish({lanes[l]}): expected {expected}, got {result[l]}");
            }
        }
    }

    /// <summary>
    /// The epilogues' vector ReLU (x86's maximum with zero first, then + 0) gives the bits of IEEE's maximum with zero
    /// (<see cref="Vector512.Max{T}"/>, which it replaced): NaN kept (quieted, as there), +0 for both zeros, denormals
    /// and infinities as they are; in 512 and 256 bits.
    /// </summary>
    [Fact]
    public void VectorReluGivesIeeeMaximumBits()
    {
        var random = new Random(5);
        float[] values =
        [
            float.NaN, -float.NaN, BitConverter.Int32BitsToSingle(0x7FA00001), float.PositiveInfinity, float.NegativeInfinity,
            0f, -0f, float.Epsilon, -float.Epsilon, 1e-40f, -1e-40f, float.MaxValue, float.MinValue, 1f, -1f, 0.5f,
            .. Enumerable.Range(0, 32).Select(_ => (float)(random.NextDouble() * 4 - 2)),
        ];
        for (int i = 0; i < values.Length; i += 16)
        {
            var lanes = new float[16];
            for (int l = 0; l < 16; l++) lanes[l] = values[Math.Min(i + l, values.Length - 1)];
            var wide = ConvKernels.EpilogueVector(Vector512.Create(lanes), Vector512<float>.Zero, false, default, false, kind: 1);
            var low = ConvKernels.EpilogueVector(Vector256.Create(lanes.AsSpan(0, 8)), Vector256<float>.Zero, false, default, false, kind: 1);
            var ieee = Vector512.Max(Vector512.Create(lanes), Vector512<float>.Zero);
            for (int l = 0; l < 16; l++)
            {
                float expected = ieee[l];
                Assert.Equal(float.IsNaN(lanes[l]) || lanes[l] > 0 ? lanes[l] : 0f, expected);
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(wide[l]),
                    $"relu({lanes[l]}) in 512 bits: expected {expected}, got {wide[l]}");
                if (l < 8)
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(low[l]),
                        $"relu({lanes[l]}) in 256 bits: expected {expected}, got {low[l]}");
            }
        }
    }

    private static (float[] X, float[] Weights, float[] Bias) Inputs(in Conv2dParams p, bool withNaN)
    {
        var random = new Random(p.N * 997 + p.H * 31 + p.K);
        // Inputs spread over [-3, 3], so that the sums reach each piece of Hardswish.
        float[] x = Enumerable.Range(0, p.N * p.H * p.W).Select(_ => (float)(random.NextDouble() * 6 - 3)).ToArray();
        if (withNaN) x[x.Length / 2 + p.W / 2] = float.NaN;
        float[] weights = Enumerable.Range(0, p.K * p.R * p.S).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        float[] bias = Enumerable.Range(0, p.K).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        return (x, weights, bias);
    }

    /// <summary>Channel-major y [K, N, P, Q] (pooled: the floor of half of each), summed and activated lane by lane.</summary>
    private static float[] Reference(float[] x, float[] w, float[]? bias, in Conv2dParams p, bool pooled, int kind)
    {
        var conv = new float[p.K, p.N, p.P, p.Q];
        for (int k = 0; k < p.K; k++)
            for (int n = 0; n < p.N; n++)
                for (int oh = 0; oh < p.P; oh++)
                    for (int ow = 0; ow < p.Q; ow++)
                    {
                        float sum = 0f;
                        for (int r = 0; r < p.R; r++)
                            for (int s = 0; s < p.S; s++)
                            {
                                int ih = 2 * oh + r - p.PadH, iw = 2 * ow + s - p.PadW;
                                float value = (uint)ih < (uint)p.H && (uint)iw < (uint)p.W ? x[((long)n * p.H + ih) * p.W + iw] : 0f;
                                sum = MathF.FusedMultiplyAdd(w[(k * p.R + r) * p.S + s], value, sum);
                            }
                        if (bias != null) sum += bias[k];
                        conv[k, n, oh, ow] = kind switch { 1 => MathF.Max(sum, 0f), 2 => Hardswish(sum), _ => sum };
                    }
        if (!pooled) return conv.Cast<float>().ToArray();
        int rows = p.P / 2, columns = p.Q / 2;
        var y = new float[p.K * p.N * rows * columns];
        for (int k = 0; k < p.K; k++)
            for (int n = 0; n < p.N; n++)
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < columns; j++)
                        y[((k * p.N + n) * rows + i) * columns + j] = MathF.Max(
                            MathF.Max(conv[k, n, 2 * i, 2 * j], conv[k, n, 2 * i + 1, 2 * j]),
                            MathF.Max(conv[k, n, 2 * i, 2 * j + 1], conv[k, n, 2 * i + 1, 2 * j + 1]));
        return y;
    }

    private static float Hardswish(float v) => v * MathF.Min(MathF.Max(v + 3f, 0f), 6f) * (1f / 6f);

    private static UnaryOp Activation(int kind) => kind == 2 ? UnaryOp.Hardswish : UnaryOp.Relu;

    private static void AssertSameBits(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(float.IsNaN(expected[i]) ? float.IsNaN(actual[i])
                : BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                $"output {i}: expected {expected[i]}, got {actual[i]}");
    }
}
