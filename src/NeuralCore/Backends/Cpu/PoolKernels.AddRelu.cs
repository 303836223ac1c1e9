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
    /// [N, C, H, W], y and indices [N, C, P, Q] (<see cref="MaxPlaneColumn"/> with an addend, plane by plane).
    /// </summary>
    internal static void AddReluMaxForward(float* a, float* b, float* y, int* indices, in Pool2dParams p)
    {
        var job = new AddReluJob { P = new Geometry(p), A = a, B = b, Y = y, Indices = indices };
        Run(ref job, &AddReluForwardPart);
    }

    /// <summary>
    /// dx [N, C, H, W] = the gradient <see cref="AddReluMaxForward"/>'s operands get for the pool's output gradient dy:
    /// 0 + dy where a window's index points and its pooled value y is positive, +0 elsewhere (the pool's backward, then
    /// the ReLU's mask read from its output: <see cref="MaxBackwardPlaneColumn"/> with the pooled values). An index outside
    /// its window is an error: the forward writes them.
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

    private static void AddReluForwardPart(void* state, int part)
    {
        ref AddReluJob job = ref *(AddReluJob*)state;
        ref readonly Geometry p = ref job.P;
        var (first, end) = Planes(ref job, part);
        long hw = (long)p.H * p.W, pq = (long)p.P * p.Q;
        for (long plane = first; plane < end; plane++)
            MaxPlaneColumn(job.A + plane * hw, job.Y + plane * pq, job.Indices + plane * pq, p, (int)(end - plane), job.B + plane * hw);
    }

    private static void ReluBackwardPart(void* state, int part)
    {
        ref AddReluJob job = ref *(AddReluJob*)state;
        ref readonly Geometry p = ref job.P;
        var (first, end) = Planes(ref job, part);
        long hw = (long)p.H * p.W, pq = (long)p.P * p.Q;
        for (long plane = first; plane < end; plane++)
        {
            if (!MaxBackwardPlaneColumn(job.Dy + plane * pq, job.Indices + plane * pq, job.Dx + plane * hw, p, (int)(end - plane), job.Y + plane * pq))
                throw new InvalidOperationException("ReluMaxBackward found a pool index outside its window; the indices must be those its forward wrote.");
        }
    }

    /// <summary>The planes [first, end) of <paramref name="part"/>.</summary>
    private static (int First, int End) Planes(ref AddReluJob job, int part) =>
        ((int)((long)part * job.Planes / job.Parts), (int)((long)(part + 1) * job.Planes / job.Parts));
}
