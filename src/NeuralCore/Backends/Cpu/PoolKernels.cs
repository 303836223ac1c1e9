using System.Runtime.Intrinsics;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// 2-D max and average pooling over the planes of x [N, C, H, W] into y [N, C, P, Q], PyTorch semantics:
/// max pooling pads with -inf and records the first maximum in the window's row-major scan order
/// (a NaN wins and propagates); average pooling counts zero padding in the divisor, and with ceil mode
/// clips the window at the padded border before counting.
/// </summary>
/// <remarks>
/// Planes are split over <see cref="CpuThreading.Threads"/>; every plane is computed the same way
/// whatever the split, so results do not depend on the thread count. Within a plane the kernel walks
/// one window offset (kernel row, kernel column) at a time across a whole output row, which makes the
/// common stride-1-along-W case (CP-ResNet's (2, 1) pools) a vector operation.
/// </remarks>
internal static unsafe class PoolKernels
{
    // Below this many input elements per part, waking a worker costs more than it saves.
    private const long MinElementsPerPart = 1 << 15;

    private struct Job
    {
        public PoolKind Kind;
        public bool Backward;
        public Pool2dParams P;
        public float* X, Y;
        public int* Indices;
        public int Planes, Parts;
    }

    /// <summary>y = pool(x); for max pooling, indices (or null) receives the flat h*W+w index of each maximum.</summary>
    internal static void Forward(PoolKind kind, float* x, float* y, int* indices, in Pool2dParams p)
    {
        var job = new Job { Kind = kind, P = p, X = x, Y = y, Indices = indices };
        Execute(ref job);
    }

    /// <summary>dx = gradient of the pooling for output gradient dy (dx overwritten); max pooling needs the forward indices.</summary>
    internal static void Backward(PoolKind kind, float* dy, int* indices, float* dx, in Pool2dParams p)
    {
        var job = new Job { Kind = kind, Backward = true, P = p, X = dx, Y = dy, Indices = indices };
        Execute(ref job);
    }

    private static void Execute(ref Job job)
    {
        ref readonly Pool2dParams p = ref job.P;
        job.Planes = p.N * p.C;
        long elements = (long)job.Planes * p.H * p.W;
        job.Parts = (int)Math.Clamp(elements / MinElementsPerPart, 1, Math.Min(CpuThreading.Threads, Math.Max(job.Planes, 1)));
        // SAFETY: job lives on this stack frame and ForParts returns only after every part is done.
        fixed (Job* state = &job) CpuThreading.ForParts(job.Parts, &RunPart, state);
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        ref readonly Pool2dParams p = ref job.P;
        int first = (int)((long)part * job.Planes / job.Parts);
        int end = (int)((long)(part + 1) * job.Planes / job.Parts);
        long hw = (long)p.H * p.W, pq = (long)p.P * p.Q;
        for (int plane = first; plane < end; plane++)
        {
            float* x = job.X + plane * hw;
            float* y = job.Y + plane * pq;
            int* indices = job.Indices == null ? null : job.Indices + plane * pq;
            if (job.Kind == PoolKind.Max)
            {
                if (job.Backward) MaxBackwardPlane(y, indices, x, p);
                else MaxPlane(x, y, indices, p);
            }
            else
            {
                if (job.Backward) AverageBackwardPlane(y, x, p);
                else AveragePlane(x, y, p);
            }
        }
    }

    /// <summary>First and end output column q whose input column q*stride + offset lies inside [0, width).</summary>
    private static (int Low, int High) ValidRange(int offset, int stride, int width, int outWidth)
    {
        int low = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
        int high = offset > width - 1 ? 0 : Math.Min(outWidth, (width - 1 - offset) / stride + 1);
        low = Math.Min(low, outWidth);
        return (low, Math.Max(low, high));
    }

    private static void MaxPlane(float* x, float* y, int* indices, in Pool2dParams p)
    {
        int outW = p.Q, sw = p.StrideW;
        for (int oh = 0; oh < p.P; oh++)
        {
            int hs = oh * p.StrideH - p.PadH;
            int h0 = Math.Max(hs, 0), h1 = Math.Min(hs + p.KernelH, p.H);
            float* yr = y + oh * outW;
            int* ir = indices == null ? null : indices + oh * outW;
            for (int q = 0; q < outW; q++)
            {
                yr[q] = float.NegativeInfinity;
                // PyTorch's index for an all -inf window: the window's first position inside the input.
                if (ir != null) ir[q] = h0 * p.W + Math.Max(q * sw - p.PadW, 0);
            }
            for (int ih = h0; ih < h1; ih++)
            {
                float* xr = x + ih * p.W;
                for (int kw = 0; kw < p.KernelW; kw++)
                {
                    int offset = kw - p.PadW;
                    var (qLow, qHigh) = ValidRange(offset, sw, p.W, outW);
                    int rowBase = ih * p.W + offset;
                    if (sw == 1)
                    {
                        MaxUnitStride(yr, ir, xr + offset, rowBase, qLow, qHigh);
                        continue;
                    }
                    for (int q = qLow; q < qHigh; q++)
                    {
                        float v = xr[q * sw + offset];
                        if (v > yr[q] || float.IsNaN(v))
                        {
                            yr[q] = v;
                            if (ir != null) ir[q] = rowBase + q * sw;
                        }
                    }
                }
            }
        }
    }

    /// <summary>For q in [low, high): if src[q] &gt; y[q] or is NaN, y[q] = src[q] and indices[q] = rowBase + q.</summary>
    private static void MaxUnitStride(float* y, int* indices, float* src, int rowBase, int low, int high)
    {
        int q = low;
        if (Vector256.IsHardwareAccelerated)
        {
            var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
            for (; q <= high - Vector256<float>.Count; q += Vector256<float>.Count)
            {
                var v = Vector256.Load(src + q);
                var m = Vector256.Load(y + q);
                var take = Vector256.GreaterThan(v, m) | ~Vector256.Equals(v, v);
                Vector256.Store(Vector256.ConditionalSelect(take, v, m), y + q);
                if (indices != null)
                {
                    var at = Vector256.Create(rowBase + q) + lane;
                    Vector256.Store(Vector256.ConditionalSelect(take.AsInt32(), at, Vector256.Load(indices + q)), indices + q);
                }
            }
        }
        for (; q < high; q++)
        {
            float v = src[q];
            if (v > y[q] || float.IsNaN(v))
            {
                y[q] = v;
                if (indices != null) indices[q] = rowBase + q;
            }
        }
    }

    private static void MaxBackwardPlane(float* dy, int* indices, float* dx, in Pool2dParams p)
    {
        int hw = p.H * p.W, pq = p.P * p.Q;
        new Span<float>(dx, hw).Clear();
        for (int i = 0; i < pq; i++)
        {
            int at = indices[i];
            if ((uint)at >= (uint)hw)
            {
                throw new ArgumentException(
                    $"MaxPool2d backward found index {at} outside the {p.H}x{p.W} input plane; pass the indices written by the forward pass with the same geometry.");
            }
            dx[at] += dy[i];
        }
    }

    private static void AveragePlane(float* x, float* y, in Pool2dParams p)
    {
        int outW = p.Q, sw = p.StrideW;
        for (int oh = 0; oh < p.P; oh++)
        {
            int hs = oh * p.StrideH - p.PadH;
            int he = Math.Min(hs + p.KernelH, p.H + p.PadH);
            int h0 = Math.Max(hs, 0), h1 = Math.Min(he, p.H);
            float* yr = y + oh * outW;
            new Span<float>(yr, outW).Clear();
            for (int ih = h0; ih < h1; ih++)
            {
                float* xr = x + ih * p.W;
                for (int kw = 0; kw < p.KernelW; kw++)
                {
                    int offset = kw - p.PadW;
                    var (qLow, qHigh) = ValidRange(offset, sw, p.W, outW);
                    if (sw == 1)
                    {
                        ConvKernels.Add(yr + qLow, xr + offset + qLow, qHigh - qLow);
                        continue;
                    }
                    for (int q = qLow; q < qHigh; q++) yr[q] += xr[q * sw + offset];
                }
            }
            for (int q = 0; q < outW; q++) yr[q] /= Divisor(p, hs, he, q);
        }
    }

    /// <summary>The count_include_pad divisor: the window clipped to the padded input, padding included.</summary>
    private static int Divisor(in Pool2dParams p, int hs, int he, int q)
    {
        int ws = q * p.StrideW - p.PadW;
        int we = Math.Min(ws + p.KernelW, p.W + p.PadW);
        return (he - hs) * (we - ws);
    }

    private static void AverageBackwardPlane(float* dy, float* dx, in Pool2dParams p)
    {
        new Span<float>(dx, p.H * p.W).Clear();
        for (int oh = 0; oh < p.P; oh++)
        {
            int hs = oh * p.StrideH - p.PadH;
            int he = Math.Min(hs + p.KernelH, p.H + p.PadH);
            int h0 = Math.Max(hs, 0), h1 = Math.Min(he, p.H);
            for (int q = 0; q < p.Q; q++)
            {
                float g = dy[oh * p.Q + q] / Divisor(p, hs, he, q);
                int ws = q * p.StrideW - p.PadW;
                int w0 = Math.Max(ws, 0), w1 = Math.Min(ws + p.KernelW, p.W);
                for (int ih = h0; ih < h1; ih++)
                {
                    float* dr = dx + ih * p.W;
                    for (int iw = w0; iw < w1; iw++) dr[iw] += g;
                }
            }
        }
    }
}
