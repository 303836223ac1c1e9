using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// A 1x1, stride-1 convolution of sample-major tensors whose planes fill two or three vectors at least three quarters
/// (24-32 or 36-48 positions: MNIST's 6 x 6 maps), computed where the planes lie: per sample and group of 8 output
/// channels, each input channel's plane is two or three vector loads (the last one masked to the plane), and each
/// load feeds a multiply-add per output channel of the group, its weight broadcast inside the instruction (up to 24
/// accumulators). The training path's implicit GEMM copied each chunk of samples channel-major, packed it and copied
/// the output back: at 19 channels those moves were about 2.5 times its multiply-adds (harness, one thread, 256
/// samples on 6 x 6: 19 -> 19 114 -> 85 µs, 32 -> 32 254 -> 234 µs).
/// </summary>
/// <remarks>
/// Each output is summed from zero, one fused multiply-add per input channel in order, then the bias added: the GEMM
/// path's order, except for a chunk's last columns past a multiple of 8, which its small-problem path sums as dot
/// products with four partial sums (those outputs round differently). The stride-1 backward-data pass, the forward of
/// the transposed kernel, runs here too. Work is split over samples, so results do not depend on the thread count.
/// </remarks>
internal static unsafe class PlanePointwiseConv
{
    private const int Lanes = 16;
    private const int Group = 8;
    // Below this many multiply-adds per part, waking a worker costs more than it saves.
    private const long MinMacsPerPart = 1 << 18;

    /// <summary>Whether the convolutions use it (tests turn it off to compare it with the GEMM path).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>
    /// A 1x1, stride-1, unpadded, ungrouped convolution over planes of 24-32 or 36-48 positions (two or three vectors,
    /// at least three quarters of their lanes used), where the 512-bit kernels run.
    /// </summary>
    internal static bool CanRun(in Conv2dParams p)
    {
        int plane = p.H * p.W, vectors = (plane + Lanes - 1) / Lanes;
        return Enabled && Avx512F.IsSupported && Gemm.Kind == Gemm.KernelKind.Vector512 && p.R == 1 && p.S == 1
            && p.StrideH == 1 && p.StrideW == 1 && p.PadH == 0 && p.PadW == 0 && p.Groups == 1
            && vectors is 2 or 3 && 4 * plane >= 3 * Lanes * vectors;
    }

    private struct Job
    {
        public float* X, W, Bias, Y;
        public int C, K, Plane, Vectors, Parts, N;
    }

    /// <summary>y [N, K, plane] = w [K, C] * x [N, C, plane] (+ bias [K]) per sample.</summary>
    internal static void Forward(float* x, float* w, float* bias, float* y, in Conv2dParams p)
    {
        var job = new Job
        {
            X = x, W = w, Bias = bias, Y = y, N = p.N, C = p.C, K = p.K, Plane = p.H * p.W,
        };
        job.Vectors = (job.Plane + Lanes - 1) / Lanes;
        long macs = (long)p.N * p.K * p.C * job.Plane;
        job.Parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, Math.Min(CpuThreading.Threads, p.N));
        // SAFETY: job outlives ForParts, which returns when every part is done.
        if (job.Parts == 1) RunPart(&job, 0);
        else CpuThreading.ForParts(job.Parts, &RunPart, &job);
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        int first = (int)((long)part * job.N / job.Parts), end = (int)((long)(part + 1) * job.N / job.Parts);
        var last = ConvKernels.FirstLanes(job.Plane - (job.Vectors - 1) * Lanes);
        for (int n = first; n < end; n++)
        {
            float* x = job.X + (long)n * job.C * job.Plane;
            float* y = job.Y + (long)n * job.K * job.Plane;
            for (int k0 = 0; k0 < job.K; k0 += Group)
            {
                int count = Math.Min(Group, job.K - k0);
                if (job.Vectors == 3) Channels<Gemm.N3>(ref job, x, y, k0, count, last);
                else Channels<Gemm.N2>(ref job, x, y, k0, count, last);
            }
        }
    }

    /// <summary>One specialisation per channel count, so that a last group of fewer than 8 (19 = 8 + 8 + 3) does no multiply-adds for the channels it lacks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Channels<TVectors>(ref Job job, float* x, float* y, int k0, int count, Vector512<float> last)
        where TVectors : struct, Gemm.IConstant
    {
        switch (count)
        {
            case 1: Block<Gemm.N1, TVectors>(ref job, x, y, k0, last); break;
            case 2: Block<Gemm.N2, TVectors>(ref job, x, y, k0, last); break;
            case 3: Block<Gemm.N3, TVectors>(ref job, x, y, k0, last); break;
            case 4: Block<Gemm.N4, TVectors>(ref job, x, y, k0, last); break;
            case 5: Block<Gemm.N5, TVectors>(ref job, x, y, k0, last); break;
            case 6: Block<Gemm.N6, TVectors>(ref job, x, y, k0, last); break;
            case 7: Block<Gemm.N7, TVectors>(ref job, x, y, k0, last); break;
            default: Block<Gemm.N8, TVectors>(ref job, x, y, k0, last); break;
        }
    }

    /// <summary>
    /// Output channels [k0, k0 + TChannels) of one sample: per input channel, its plane's TVectors loads (the last masked
    /// to the plane, so a sample's last plane reads nothing past it), each multiplied into every channel's accumulator.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Block<TChannels, TVectors>(ref Job job, float* x, float* y, int k0, Vector512<float> last)
        where TChannels : struct, Gemm.IConstant where TVectors : struct, Gemm.IConstant
    {
        int channels = TChannels.Value, vectors = TVectors.Value, c = job.C, plane = job.Plane;
        float* w = job.W + (long)k0 * c;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
        Vector512<float> d0 = default, d1 = default, d2 = default, d3 = default, d4 = default, d5 = default, d6 = default, d7 = default;
        for (int ci = 0; ci < c; ci++)
        {
            float* row = x + (long)ci * plane;
            // Two vectors: the first whole, the second masked; three: two whole, the third masked.
            var x0 = Vector512.Load(row);
            var x1 = vectors == 3 ? Vector512.Load(row + Lanes) : Avx512F.MaskLoad(row + Lanes, last, Vector512<float>.Zero);
            var x2 = vectors == 3 ? Avx512F.MaskLoad(row + 2 * Lanes, last, Vector512<float>.Zero) : default;
            Step(ref a0, ref b0, ref d0, x0, x1, x2, w[ci], vectors);
            if (channels > 1) Step(ref a1, ref b1, ref d1, x0, x1, x2, w[c + ci], vectors);
            if (channels > 2) Step(ref a2, ref b2, ref d2, x0, x1, x2, w[2 * c + ci], vectors);
            if (channels > 3) Step(ref a3, ref b3, ref d3, x0, x1, x2, w[3 * c + ci], vectors);
            if (channels > 4) Step(ref a4, ref b4, ref d4, x0, x1, x2, w[4 * c + ci], vectors);
            if (channels > 5) Step(ref a5, ref b5, ref d5, x0, x1, x2, w[5 * c + ci], vectors);
            if (channels > 6) Step(ref a6, ref b6, ref d6, x0, x1, x2, w[6 * c + ci], vectors);
            if (channels > 7) Step(ref a7, ref b7, ref d7, x0, x1, x2, w[7 * c + ci], vectors);
        }
        float* bias = job.Bias == null ? null : job.Bias + k0;
        float* o = y + (long)k0 * plane;
        Store(o, a0, b0, d0, bias, 0, vectors, last);
        if (channels > 1) Store(o + plane, a1, b1, d1, bias, 1, vectors, last);
        if (channels > 2) Store(o + 2 * plane, a2, b2, d2, bias, 2, vectors, last);
        if (channels > 3) Store(o + 3 * plane, a3, b3, d3, bias, 3, vectors, last);
        if (channels > 4) Store(o + 4 * plane, a4, b4, d4, bias, 4, vectors, last);
        if (channels > 5) Store(o + 5 * plane, a5, b5, d5, bias, 5, vectors, last);
        if (channels > 6) Store(o + 6 * plane, a6, b6, d6, bias, 6, vectors, last);
        if (channels > 7) Store(o + 7 * plane, a7, b7, d7, bias, 7, vectors, last);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step(ref Vector512<float> a, ref Vector512<float> b, ref Vector512<float> d, Vector512<float> x0,
        Vector512<float> x1, Vector512<float> x2, float weight, int vectors)
    {
        var wv = Vector512.Create(weight);
        a = Vector512.FusedMultiplyAdd(wv, x0, a);
        b = Vector512.FusedMultiplyAdd(wv, x1, b);
        if (vectors == 3) d = Vector512.FusedMultiplyAdd(wv, x2, d);
    }

    /// <summary>One output plane: its vectors plus the channel's bias, the last one stored masked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* o, Vector512<float> a, Vector512<float> b, Vector512<float> d, float* bias, int k, int vectors,
        Vector512<float> last)
    {
        if (bias != null)
        {
            var bv = Vector512.Create(bias[k]);
            a += bv;
            b += bv;
            d += bv;
        }
        a.Store(o);
        if (vectors == 3)
        {
            b.Store(o + Lanes);
            Avx512F.MaskStore(o + 2 * Lanes, last, d);
        }
        else
        {
            Avx512F.MaskStore(o + Lanes, last, b);
        }
    }
}
