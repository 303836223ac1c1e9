using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// Stride-1 "same" convolution (output the size of the input, e.g. 3x3 with padding 1) as an implicit GEMM on
/// channel-major tensors x [C, N, H, W] and y [K, N, H, W] (inference plans). The output columns (sample, row, column)
/// of the whole batch are one run, and with stride 1 and same padding the input value a tap reads for output column j
/// is the one at j plus a fixed offset, or zero where the tap falls off the plane. So each 32-column B micro-panel of
/// the GEMM is filled with two masked loads per (input channel, tap) straight from x, with no im2col buffer and no
/// second packing pass, and is multiplied by the pre-packed weights while it is in L1. The bias, residual and
/// activation run on each block of 256 columns while it is still in cache.
/// </summary>
/// <remarks>
/// Taps that no output position can reach (the outer rows of a 3x3 kernel on a plane one row high) are dropped from the
/// weights and the panels when the weights are prepared, so they cost nothing. Each output value is one dot product
/// in a fixed order, so results do not depend on the thread count. Needs AVX-512 (the 8 x 32 GEMM micro-kernel);
/// <see cref="Supports"/> says when this path applies.
/// </remarks>
internal static unsafe class ImplicitGemmConv
{
    private const int Lanes = Gemm.PanelColumns;
    // Columns per block: the epilogue runs on a block's output rows while they are in cache.
    private const int MaxBlockColumns = 8 * Lanes;
    // Below this many multiply-adds per part, waking a worker costs more than it saves.
    private const long MinMacsPerPart = 1 << 18;

    /// <summary>Weights packed for the kernel, with the taps that never read the input dropped.</summary>
    internal sealed class Weights
    {
        internal Weights(float[] packed, int[] tapOffsetH, int[] tapOffsetW, int rowsPerGroup, int taps)
        {
            Packed = packed;
            TapOffsetH = tapOffsetH;
            TapOffsetW = tapOffsetW;
            RowsPerGroup = rowsPerGroup;
            Taps = taps;
        }

        /// <summary>Per group, the [K/G, C/G * taps] weights in the GEMM's micro-panel order (pinned).</summary>
        internal float[] Packed { get; }

        /// <summary>Per kept tap (r, s): r * dilationH - padH and s * dilationW - padW, the offset it reads at (pinned).</summary>
        internal int[] TapOffsetH { get; }

        /// <inheritdoc cref="TapOffsetH"/>
        internal int[] TapOffsetW { get; }

        /// <summary>The GEMM's inner dimension: C/G input channels times the kept taps.</summary>
        internal int RowsPerGroup { get; }

        /// <summary>Kept taps out of R * S.</summary>
        internal int Taps { get; }
    }

    /// <summary>True when this path runs the convolution: AVX-512, stride 1, output the size of the input, not a plain 1x1.</summary>
    internal static bool Supports(in Conv2dParams p) =>
        Gemm.Kind == Gemm.KernelKind.Vector512 && Avx512F.IsSupported
        && p.StrideH == 1 && p.StrideW == 1 && p.P == p.H && p.Q == p.W
        ;

    /// <summary>Packs <paramref name="w"/> [K, C/G, R, S] for <see cref="Forward"/>; call again when the weights change.</summary>
    internal static Weights Prepare(ReadOnlySpan<float> w, in Conv2dParams p)
    {
        int cg = p.C / p.Groups, kg = p.K / p.Groups, rs = p.R * p.S;
        var offH = new List<int>();
        var offW = new List<int>();
        var kept = new List<int>();
        for (int r = 0; r < p.R; r++)
            for (int s = 0; s < p.S; s++)
            {
                int dh = r * p.DilationH - p.PadH, dw = s * p.DilationW - p.PadW;
                // With stride 1 the tap reads rows dh .. dh + P - 1: it matters if that range meets [0, H).
                if (dh + p.P - 1 < 0 || dh >= p.H || dw + p.Q - 1 < 0 || dw >= p.W) continue;
                offH.Add(dh);
                offW.Add(dw);
                kept.Add(r * p.S + s);
            }
        int taps = kept.Count, kc = cg * taps;
        long perGroup = Gemm.PackedRowsLength(kg, kc);
        var packed = GC.AllocateArray<float>((int)Math.Max(1, perGroup * p.Groups), pinned: true);
        var rows = new float[Math.Max(1, kg * kc)];
        for (int g = 0; g < p.Groups; g++)
        {
            for (int k = 0; k < kg; k++)
                for (int c = 0; c < cg; c++)
                    for (int t = 0; t < taps; t++)
                        rows[(k * cg + c) * taps + t] = w[((g * kg + k) * cg + c) * rs + kept[t]];
            fixed (float* src = rows, dst = packed)
                Gemm.PackRows(src, kc, kg, kc, dst + g * perGroup);
        }
        return new Weights(packed, Pinned(offH), Pinned(offW), kc, taps);
    }

    private static int[] Pinned(List<int> values)
    {
        var array = GC.AllocateArray<int>(values.Count, pinned: true);
        values.CopyTo(array);
        return array;
    }

    /// <summary>One call's arguments, shared by the parts working on it.</summary>
    private struct Job
    {
        public Conv2dParams P;
        public float* X, W, Bias, Y, Residual;
        public int* OffH, OffW;
        public int Cg, Kg, Kc, Taps, BlockColumns, Blocks, Parts;
        public long PerGroup, Columns, Plane;
        public bool HasActivation;
        public UnaryOp Activation;
        public float Alpha, Beta;
    }

    /// <summary>
    /// y = act(conv2d(x, w) + bias + residual) for channel-major x [C, N, H, W] and y, residual [K, N, H, W], with the
    /// weights from <see cref="Prepare"/>. Bias and residual may be null; the activation is skipped when
    /// <paramref name="hasActivation"/> is false.
    /// </summary>
    internal static void Forward(float* x, Weights weights, float* bias, float* y, in Conv2dParams p, float* residual,
        bool hasActivation, UnaryOp activation, float alpha, float beta)
    {
        var job = new Job
        {
            P = p,
            X = x, Bias = bias, Y = y, Residual = residual,
            Cg = p.C / p.Groups, Kg = p.K / p.Groups, Kc = weights.RowsPerGroup, Taps = weights.Taps,
            Plane = (long)p.H * p.W,
            HasActivation = hasActivation, Activation = activation, Alpha = alpha, Beta = beta,
        };
        job.Columns = p.N * job.Plane;
        job.PerGroup = Gemm.PackedRowsLength(job.Kg, job.Kc);
        int threads = CpuThreading.Threads;
        // Blocks small enough that every thread gets a few, whole panels, at most 256 columns.
        long perThread = (job.Columns + 2L * threads - 1) / (2L * threads);
        job.BlockColumns = (int)Math.Clamp((perThread + Lanes - 1) / Lanes * Lanes, Lanes, MaxBlockColumns);
        job.Blocks = (int)((job.Columns + job.BlockColumns - 1) / job.BlockColumns);
        long macs = (long)p.K * job.Kc * job.Columns;
        job.Parts = (int)Math.Clamp(macs / MinMacsPerPart, 1, Math.Min(threads, job.Blocks));
        // SAFETY: the weight arrays are pinned (allocated on the POH in Prepare) and outlive the call; job lives on this
        // frame and ForParts returns only after every part is done.
        job.W = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(weights.Packed));
        job.OffH = (int*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(weights.TapOffsetH));
        job.OffW = (int*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(weights.TapOffsetW));
        if (job.Parts == 1) RunBlocks(ref job, 0, job.Blocks);
        else CpuThreading.ForParts(job.Parts, &RunPart, &job);
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        RunBlocks(ref job, (int)((long)part * job.Blocks / job.Parts), (int)((long)(part + 1) * job.Blocks / job.Parts));
    }

    private static void RunBlocks(ref Job job, int first, int end)
    {
        if (first >= end) return;
        ConvScratch scratch = ConvScratch.Current;
        float* panel = scratch.Get(ConvScratch.Slot.Columns, (long)Math.Max(1, job.Kc) * Lanes);
        float* tile = scratch.Get(ConvScratch.Slot.Rows, 8 * Lanes);
        int* coords = stackalloc int[2 * Lanes];
        for (int block = first; block < end; block++)
        {
            long c0 = (long)block * job.BlockColumns;
            int cols = (int)Math.Min(job.BlockColumns, job.Columns - c0);
            for (int j = 0; j < cols; j += Lanes)
            {
                long j0 = c0 + j;
                int width = Math.Min(Lanes, cols - j);
                Coordinates(ref job, j0, width, coords);
                for (int g = 0; g < job.P.Groups; g++)
                {
                    float* yg = job.Y + (long)g * job.Kg * job.Columns + j0;
                    if (job.Kc == 0)
                    {
                        for (int k = 0; k < job.Kg; k++) new Span<float>(yg + k * job.Columns, width).Clear();
                        continue;
                    }
                    FillPanel(ref job, g, j0, coords, panel);
                    Gemm.MultiplyPanel(job.Kg, job.Kc, job.W + g * job.PerGroup, panel, yg, (int)job.Columns, width, tile);
                }
            }
            ConvKernels.Epilogue(job.Y, job.Columns, job.P.K, c0, cols, job.Bias, job.Residual, job.HasActivation,
                job.Activation, job.Alpha, job.Beta);
        }
    }

    /// <summary>Row and column within its plane of each of the panel's output columns; lanes past the end get a row no tap reaches.</summary>
    private static void Coordinates(ref Job job, long j0, int width, int* coords)
    {
        int q = job.P.W;
        long inPlane = j0 % job.Plane;
        int row = (int)(inPlane / q), col = (int)(inPlane % q);
        for (int lane = 0; lane < Lanes; lane++)
        {
            coords[lane] = lane < width ? row : int.MinValue / 2;
            coords[Lanes + lane] = col;
            if (++col == q)
            {
                col = 0;
                if (++row == job.P.H) row = 0;
            }
        }
    }

    /// <summary>The B micro-panel of group <paramref name="g"/> for columns j0 .. j0 + 31: row c * taps + t holds tap t of input channel c.</summary>
    private static void FillPanel(ref Job job, int g, long j0, int* coords, float* panel)
    {
        var rowsLo = Vector512.Load(coords);
        var rowsHi = Vector512.Load(coords + 16);
        var colsLo = Vector512.Load(coords + Lanes);
        var colsHi = Vector512.Load(coords + Lanes + 16);
        var height = Vector512.Create((uint)job.P.H);
        var width = Vector512.Create((uint)job.P.W);
        long channel = job.P.N * job.Plane;
        float* xg = job.X + (long)g * job.Cg * channel + j0;
        int stride = job.Taps * Lanes;
        for (int t = 0; t < job.Taps; t++)
        {
            int dh = job.OffH[t], dw = job.OffW[t];
            var dhv = Vector512.Create(dh);
            var dwv = Vector512.Create(dw);
            // Lane valid when the tap's input row and column lie inside the plane (unsigned compare catches negatives).
            var maskLo = (Vector512.LessThan((rowsLo + dhv).AsUInt32(), height) & Vector512.LessThan((colsLo + dwv).AsUInt32(), width)).AsSingle();
            var maskHi = (Vector512.LessThan((rowsHi + dhv).AsUInt32(), height) & Vector512.LessThan((colsHi + dwv).AsUInt32(), width)).AsSingle();
            float* src = xg + (long)dh * job.P.W + dw;
            float* dst = panel + t * Lanes;
            for (int c = 0; c < job.Cg; c++)
            {
                // Masked-off lanes are neither read nor faulted on, so the loads may straddle the ends of x.
                Vector512.Store(Avx512F.MaskLoad(src, maskLo, Vector512<float>.Zero), dst);
                Vector512.Store(Avx512F.MaskLoad(src + 16, maskHi, Vector512<float>.Zero), dst + 16);
                src += channel;
                dst += stride;
            }
        }
    }
}
