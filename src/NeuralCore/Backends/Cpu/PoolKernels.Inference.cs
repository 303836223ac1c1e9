using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

// Inference-only pooling: max pooling without indices (separable, vectorised along the rows whatever the plane's width),
// and the global average of a map held position-major.
internal static unsafe partial class PoolKernels
{
    /// <summary>True for an average pool over each whole plane (no padding): one mean per plane, as CP-ResNet's head takes it.</summary>
    internal static bool IsGlobalAverage(PoolKind kind, in Pool2dParams p) =>
        kind == PoolKind.Average && p.KernelH == p.H && p.KernelW == p.W && p.PadH == 0 && p.PadW == 0 && p.P == 1 && p.Q == 1;

    /// <summary>
    /// y [C, N] = the global average pool (<see cref="IsGlobalAverage"/>) of x held position-major, [N * hw, C] (a narrow
    /// convolution's output), without moving x to channel-major first: per sample and channel, the plane's values summed
    /// from zero in row-major order, then divided by hw, as <see cref="Forward"/> computes each plane's mean, so the same bits.
    /// </summary>
    internal static void GlobalAveragePositionMajor(float* x, float* y, int n, int hw, int c)
    {
        for (int s = 0; s < n; s++)
        {
            float* sample = x + (long)s * hw * c;
            for (int k = 0; k < c; k++)
            {
                float sum = 0;
                for (int position = 0; position < hw; position++) sum += sample[(long)position * c + k];
                y[(long)k * n + s] = sum / hw;
            }
        }
    }

    /// <summary>
    /// True where the inference plans average planes of <paramref name="hw"/> values with <see cref="GlobalAverageRows"/>:
    /// AVX-512 and at least 16 values. One thread, alternated with the window kernels' loop: planes of 168 (mel's head)
    /// 0.13-0.15 of the loop's time, of 18 0.57, of 6 (MNIST's head) 0.78 for 2560 planes and 1.33 for 4864, where one
    /// masked load and the sum of 16 lanes cost about what six additions do; smaller planes keep the loop.
    /// </summary>
    internal static bool AveragesInVectors(int hw) => Avx512F.IsSupported && hw >= 16;

    /// <summary>
    /// y[i] = the mean of plane i of x, [planes, hw] (a channel-major map's global average, <see cref="IsGlobalAverage"/>),
    /// summed in vectors: 16 lane sums over the plane's whole vectors (two accumulators, even and odd vectors, then
    /// added), the last partial vector masked in, the lanes summed, divided by hw. Inference plans only: the window
    /// kernels sum in row-major order, so this differs from them by rounding. Needs AVX-512 (<see cref="AveragesInVectors"/>).
    /// </summary>
    internal static void GlobalAverageRows(float* x, float* y, long planes, int hw)
    {
        int whole = hw / 16;
        var tail = ConvKernels.FirstLanes(hw % 16);
        for (long i = 0; i < planes; i++)
        {
            float* plane = x + i * hw;
            Vector512<float> even = Vector512<float>.Zero, odd = Vector512<float>.Zero;
            int v = 0;
            for (; v + 1 < whole; v += 2)
            {
                even += Vector512.Load(plane + v * 16);
                odd += Vector512.Load(plane + (v + 1) * 16);
            }
            if (v < whole) even += Vector512.Load(plane + v * 16);
            var sum = even + odd + Avx512F.MaskLoad(plane + whole * 16, tail, Vector512<float>.Zero);
            y[i] = Vector512.Sum(sum) / hw;
        }
    }

    // Input rows up to this wide (and strides along W of 1 or 2) take the separable kernel.
    private const int MaxSeparableRow = 4096;
    // The row buffer's margins hold -inf, so window columns in the padding read -inf without bounds checks.
    private const int Margin = 32;

    /// <summary>True when <see cref="MaxPlanes(float*, float*, int, in Pool2dParams)"/> runs this geometry (AVX-512, stride 1 or 2 along W).</summary>
    internal static bool SeparableMax(in Pool2dParams p) =>
        Avx512F.IsSupported && p.StrideW <= 2 && p.W <= MaxSeparableRow && p.PadW < Margin && p.KernelW <= Margin;

    /// <summary>
    /// y = max pool of <paramref name="planes"/> consecutive planes of x, on the calling thread, without indices: per
    /// output row, the kernel's input rows are reduced element-wise into a row buffer, then the kernel's columns are
    /// reduced along it, 16 outputs at a time (stride 2 compacted by a permute). Same values as the indexed kernels,
    /// NaN included (IEEE maximum).
    /// </summary>
    internal static void MaxPlanes(float* x, float* y, int planes, in Pool2dParams p) => MaxPlanes(x, y, planes, p, planes, 0);

    /// <summary>
    /// As <see cref="MaxPlanes(float*, float*, int, in Pool2dParams)"/>, with the output planes in runs of
    /// <paramref name="run"/> consecutive planes, each run <paramref name="runStride"/> floats after the previous one
    /// (a channel-major block's planes go to their channels' places in one call).
    /// </summary>
    internal static void MaxPlanes(float* x, float* y, int planes, in Pool2dParams p, int run, long runStride)
    {
        if (p.W <= 16 && p.Q <= 16)
        {
            MaxPlanesNarrow(x, y, planes, p, run, runStride);
            return;
        }
        if (p.KernelW == 1 && p.StrideW == 1 && p.PadW == 0)
        {
            MaxPlanesRows(x, y, planes, p, run, runStride);
            return;
        }
        int h = p.H, w = p.W, outH = p.P, outW = p.Q;
        int sw = p.StrideW;
        int vectors = (w + 15) / 16;
        // Row buffer: Margin of -inf, the reduced row (rounded up to whole vectors), and enough -inf after it for the
        // last output vector's reads (16 outputs * stride 2 + kernel width).
        float* row = stackalloc float[Margin + vectors * 16 + 2 * Margin + 32];
        var negative = Vector512.Create(float.NegativeInfinity);
        int rowLength = Margin + vectors * 16 + 2 * Margin + 32;
        for (int i = 0; i < rowLength; i += 16) Vector512.Store(negative, row + i);
        var tail = Vector512.LessThan(Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), Vector512.Create(w - (vectors - 1) * 16)).AsSingle();
        var outTail = Vector512.LessThan(Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), Vector512.Create(outW - (outW - 1) / 16 * 16)).AsSingle();
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        long plane = (long)h * w, outPlane = (long)outH * outW;
        for (int n = 0; n < planes; n++)
        {
            float* xp = x + n * plane, yp = y + n / run * runStride + n % run * outPlane;
            for (int oh = 0; oh < outH; oh++)
            {
                var (h0, h1) = WindowRows(oh, p);
                // Vertical: element-wise maximum of the window's rows (at least one lies inside the input).
                for (int v = 0; v < vectors; v++)
                {
                    bool last = v == vectors - 1;
                    var m = negative;
                    for (int ih = h0; ih < h1; ih++)
                    {
                        float* src = xp + (long)ih * w + v * 16;
                        m = Vector512.Max(m, last ? Avx512F.MaskLoad(src, tail, negative) : Vector512.Load(src));
                    }
                    Vector512.Store(m, row + Margin + v * 16);
                }
                // Horizontal: output q takes columns q * sw - padW + j for j in [0, kernelW).
                float* yr = yp + (long)oh * outW;
                for (int q = 0; q < outW; q += 16)
                {
                    var m = negative;
                    float* start = row + Margin + q * sw - p.PadW;
                    for (int j = 0; j < p.KernelW; j++)
                    {
                        var values = sw == 1
                            ? Vector512.Load(start + j)
                            : Avx512F.PermuteVar16x32x2(Vector512.Load(start + j), even, Vector512.Load(start + j + 16));
                        // IEEE maximum: a NaN in either operand propagates.
                        m = Vector512.Max(m, values);
                    }
                    if (q + 16 <= outW) Vector512.Store(m, yr + q);
                    else Avx512F.MaskStore(yr + q, outTail, m);
                }
            }
        }
    }

    /// <summary>The input rows [h0, h1) that output row <paramref name="oh"/>'s windows cover, clipped to the input.</summary>
    private static (int H0, int H1) WindowRows(int oh, in Pool2dParams p)
    {
        int hs = oh * p.StrideH - p.PadH;
        return (Math.Max(hs, 0), Math.Min(hs + p.KernelH, p.H));
    }

    /// <summary>
    /// Windows one column wide (CP-ResNet's 2 x 1 pools on rows wider than a vector): each output row is the element-wise
    /// maximum of the window's input rows, read and stored in place; the general kernel's pass along a row buffer would
    /// only copy it (2.6x slower on 32 planes of 30 x 24: 5.9 against 2.3 µs).
    /// </summary>
    private static void MaxPlanesRows(float* x, float* y, int planes, in Pool2dParams p, int run, long runStride)
    {
        int h = p.H, w = p.W, outH = p.P, full = w / 16 * 16;
        var negative = Vector512.Create(float.NegativeInfinity);
        var tail = ConvKernels.FirstLanes(w - full);
        long plane = (long)h * w, outPlane = (long)outH * w;
        for (int n = 0; n < planes; n++)
        {
            float* xp = x + n * plane, yp = y + n / run * runStride + n % run * outPlane;
            for (int oh = 0; oh < outH; oh++)
            {
                var (h0, h1) = WindowRows(oh, p);
                float* yr = yp + (long)oh * w;
                for (int c = 0; c < full; c += 16)
                {
                    var m = negative;
                    // IEEE maximum, from -inf as in the general kernel: a NaN in any row propagates.
                    for (int ih = h0; ih < h1; ih++) m = Vector512.Max(m, Vector512.Load(xp + (long)ih * w + c));
                    Vector512.Store(m, yr + c);
                }
                if (full == w) continue;
                var t = negative;
                for (int ih = h0; ih < h1; ih++) t = Vector512.Max(t, Avx512F.MaskLoad(xp + (long)ih * w + full, tail, negative));
                Avx512F.MaskStore(yr + full, tail, t);
            }
        }
    }

    /// <summary>
    /// Planes whose input and output rows fit one vector (MNIST's 13- and 6-wide maps): each output row is the
    /// element-wise maximum of the window's rows, then one permute per window column moves the columns into place.
    /// </summary>
    private static void MaxPlanesNarrow(float* x, float* y, int planes, in Pool2dParams p, int run, long runStride)
    {
        int h = p.H, w = p.W, outH = p.P, outW = p.Q, kw = p.KernelW;
        var negative = Vector512.Create(float.NegativeInfinity);
        var lanes = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var tail = Vector512.LessThan(lanes, Vector512.Create(w)).AsSingle();
        var outTail = Vector512.LessThan(lanes, Vector512.Create(outW)).AsSingle();
        // Per window column j: the input column each output lane reads, and whether it lies inside the row.
        var index = stackalloc Vector512<int>[kw];
        var inside = stackalloc Vector512<float>[kw];
        for (int j = 0; j < kw; j++)
        {
            index[j] = lanes * p.StrideW + Vector512.Create(j - p.PadW);
            inside[j] = Vector512.LessThan(index[j].AsUInt32(), Vector512.Create((uint)w)).AsSingle();
        }
        bool identity = kw == 1 && p.StrideW == 1 && p.PadW == 0;
        long plane = (long)h * w, outPlane = (long)outH * outW;
        for (int n = 0; n < planes; n++)
        {
            float* xp = x + n * plane, yp = y + n / run * runStride + n % run * outPlane;
            for (int oh = 0; oh < outH; oh++)
            {
                var (h0, h1) = WindowRows(oh, p);
                var m = negative;
                for (int ih = h0; ih < h1; ih++) m = Vector512.Max(m, Avx512F.MaskLoad(xp + (long)ih * w, tail, negative));
                if (!identity)
                {
                    var r = negative;
                    for (int j = 0; j < kw; j++) r = Vector512.Max(r, Vector512.ConditionalSelect(inside[j], Avx512F.PermuteVar16x32(m, index[j]), negative));
                    m = r;
                }
                Avx512F.MaskStore(yp + (long)oh * outW, outTail, m);
            }
        }
    }
}
