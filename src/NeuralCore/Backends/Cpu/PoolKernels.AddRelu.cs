using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

// A residual addition + ReLU whose output only a max pool of column windows reads (CP-ResNet's blocks that end in a 2 x 1
// pool), run as one step by a compiled training step: forward, relu(a + b) is pooled as it is made and never stored;
// backward, the gradient both operands get is rebuilt from the pool's, masked where the pooled value is not positive.
// The bits of AddRelu, the pool, the pool's backward and the ReLU's backward run one after the other.
internal static unsafe partial class PoolKernels
{
    /// <summary>
    /// True for a max pool this fusion takes: windows one column wide (stride 1 along W, no padding there) that tile the
    /// rows (stride = kernel height, no padding, floor mode), with AVX-512.
    /// </summary>
    internal static bool FusesAddRelu(in Pool2dParams p) =>
        IsColumn(new Geometry(p)) && IsDisjointColumn(new Geometry(p)) && !p.CeilMode;

    private struct AddReluJob
    {
        public Geometry P;
        public float* A, B, Y, Dy, Dx;
        public int* Indices;
        public int Planes, Parts;
    }

    /// <summary>
    /// y = maxpool(relu(a + b)) with its indices, for a <see cref="FusesAddRelu"/> pool <paramref name="p"/>; a and b
    /// [N, C, H, W], y and indices [N, C, P, Q]. Each value is <see cref="ConvKernels.Relu(Vector512{float})"/> of the
    /// sum (IEEE's maximum with 0, as AddRelu), compared as <see cref="MaxPlaneColumn"/> compares.
    /// </summary>
    internal static void AddReluMaxForward(float* a, float* b, float* y, int* indices, in Pool2dParams p)
    {
        var job = new AddReluJob { P = new Geometry(p), A = a, B = b, Y = y, Indices = indices };
        Run(ref job, &AddReluForwardPart);
    }

    /// <summary>
    /// dx [N, C, H, W] = the gradient <see cref="AddReluMaxForward"/>'s operands get for the pool's output gradient dy:
    /// 0 + dy where a window's index points and its pooled value y is positive, +0 elsewhere (the pool's backward, then
    /// the ReLU's mask read from its output). An index outside its window is an error: the forward writes them.
    /// </summary>
    internal static void ReluMaxBackward(float* dy, int* indices, float* y, float* dx, in Pool2dParams p)
    {
        var job = new AddReluJob { P = new Geometry(p), Dy = dy, Indices = indices, Y = y, Dx = dx };
        Run(ref job, &ReluBackwardPart);
    }

    private static void Run(ref AddReluJob job, delegate*<void*, int, void> part)
    {
        ref readonly Geometry p = ref job.P;
        job.Planes = p.N * p.C;
        long elements = (long)job.Planes * p.H * p.W;
        job.Parts = (int)Math.Clamp(elements / MinElementsPerPart, 1, Math.Min(CpuThreading.Threads, Math.Max(job.Planes, 1)));
        // SAFETY: job lives on the caller's stack frame and ForParts returns only after every part is done.
        fixed (AddReluJob* state = &job) CpuThreading.ForParts(job.Parts, part, state);
    }

    /// <summary>The planes [first, end) of <paramref name="part"/>.</summary>
    private static (int First, int End) Planes(ref AddReluJob job, int part) =>
        ((int)((long)part * job.Planes / job.Parts), (int)((long)(part + 1) * job.Planes / job.Parts));

    private static void AddReluForwardPart(void* state, int part)
    {
        ref AddReluJob job = ref *(AddReluJob*)state;
        ref readonly Geometry p = ref job.P;
        var (first, end) = Planes(ref job, part);
        int w = p.W, kh = p.KernelH, hw = p.H * w, pq = p.P * w;
        var lane = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var negative = Vector512.Create(float.NegativeInfinity);
        for (long plane = first; plane < end; plane++)
        {
            float* a = job.A + plane * hw, b = job.B + plane * hw, y = job.Y + plane * pq;
            int* indices = job.Indices + plane * pq;
            for (int oh = 0; oh < p.P; oh++)
            {
                for (int c0 = 0; c0 < w; c0 += Vector512<float>.Count)
                {
                    var row = Vector512.LessThan(lane, Vector512.Create(w - c0));
                    var best = negative;
                    var index = Vector512.Create(oh * kh * w + c0) + lane;
                    for (int ih = oh * kh; ih < oh * kh + kh; ih++)
                    {
                        int at = ih * w + c0;
                        var v = ConvKernels.Relu(Avx512F.MaskLoad(a + at, row.AsSingle(), Vector512<float>.Zero)
                            + Avx512F.MaskLoad(b + at, row.AsSingle(), Vector512<float>.Zero));
                        var take = Vector512.GreaterThan(v, best) | ~Vector512.Equals(v, v);
                        best = Vector512.ConditionalSelect(take, v, best);
                        index = Vector512.ConditionalSelect(take.AsInt32(), Vector512.Create(at) + lane, index);
                    }
                    Avx512F.MaskStore(y + oh * w + c0, row.AsSingle(), best);
                    Avx512F.MaskStore(indices + oh * w + c0, row, index);
                }
            }
        }
    }

    private static void ReluBackwardPart(void* state, int part)
    {
        ref AddReluJob job = ref *(AddReluJob*)state;
        ref readonly Geometry p = ref job.P;
        var (first, end) = Planes(ref job, part);
        int w = p.W, kh = p.KernelH, hw = p.H * w, pq = p.P * w;
        var lane = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (long plane = first; plane < end; plane++)
        {
            float* dy = job.Dy + plane * pq, y = job.Y + plane * pq, dx = job.Dx + plane * hw;
            int* indices = job.Indices + plane * pq;
            bool found = true;
            for (int c0 = 0; c0 < w; c0 += Vector512<float>.Count)
            {
                var row = Vector512.LessThan(lane, Vector512.Create(w - c0));
                for (int oh = 0; oh < p.P; oh++)
                {
                    int o = oh * w + c0;
                    // The pool's 0 + dy, kept where the ReLU's output (the pooled value) is positive.
                    var g = Avx512F.MaskLoad(dy + o, row.AsSingle(), Vector512<float>.Zero) + Vector512<float>.Zero;
                    g = Vector512.ConditionalSelect(Vector512.GreaterThan(Avx512F.MaskLoad(y + o, row.AsSingle(), Vector512<float>.Zero), Vector512<float>.Zero),
                        g, Vector512<float>.Zero);
                    var at = Avx512F.MaskLoad(indices + o, row, Vector512<int>.Zero);
                    var seen = ~row;
                    for (int ih = oh * kh; ih < oh * kh + kh; ih++)
                    {
                        var here = Vector512.Equals(at, Vector512.Create(ih * w + c0) + lane);
                        seen |= here;
                        Avx512F.MaskStore(dx + ih * w + c0, row.AsSingle(), g & here.AsSingle());
                    }
                    found &= Vector512.EqualsAll(seen, Vector512<int>.AllBitsSet);
                }
                for (int ih = p.P * kh; ih < p.H; ih++) Avx512F.MaskStore(dx + ih * w + c0, row.AsSingle(), Vector512<float>.Zero);
            }
            if (!found)
                throw new InvalidOperationException("ReluMaxBackward found a pool index outside its window; the indices must be those its forward wrote.");
        }
    }
}
