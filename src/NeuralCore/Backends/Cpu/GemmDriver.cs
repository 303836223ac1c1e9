using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

// The blocked driver: loop order, threading, scratch buffers.
public static unsafe partial class Gemm
{
    /// <summary>The micro-kernel families, widest last.</summary>
    internal enum KernelKind
    {
        Scalar,
        Vector256,
        Vector512,
    }

    /// <summary>The widest kernel this machine runs.</summary>
    internal static readonly KernelKind Best =
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? KernelKind.Vector512
        : Fma.IsSupported && Avx2.IsSupported ? KernelKind.Vector256
        : KernelKind.Scalar;

    /// <summary>The kernel used by new calls; tests narrow it to check the fallbacks on wide machines.</summary>
    internal static KernelKind Kind { get; set; } = Best;

    /// <summary>Whether kernels written for both vector widths run their 512-bit form (AVX-512, <see cref="Kind"/> not narrowed).</summary>
    internal static bool Runs512 => Avx512F.IsSupported && Kind == KernelKind.Vector512;

    /// <summary>Whether they run their 256-bit form (AVX2 and FMA, without AVX-512 or with <see cref="Kind"/> narrowed).</summary>
    internal static bool Runs256 => Kind == KernelKind.Vector256 && Avx2.IsSupported && Fma.IsSupported;

    // Cache blocking. A KC x NC block of packed op(B) (512 KiB) stays in L2 while the MR x KC
    // micro-panel of packed op(A) in use stays in L1; MC and NC are multiples of every MR and NR.
    private const int KC = 256;
    private const int MC = 240;
    private const int NC = 512;
    // Up to this many rows of C, full panels of an untransposed B are not packed (see Blocked).
    private const int InPlaceBMaxRows = 128;
    // ... and only while B's rows lie at most this many floats apart, or K is at most InPlaceBMaxFarDepth. Further
    // apart, a micro-panel's up to 256 rows sit on as many pages and the hardware follows none of them: on the Xeon host,
    // two threads, 32 x n x 288 ran at 62 GFLOP/s in place against 112 packed at n = 9216 (102 against 117 at 4096),
    // and within 10 % either way up to n = 2048 (the training's per-sample products, n 168-744, are all under it).
    internal const int InPlaceBMaxStride = 2048;
    // A stem's 25 rows are few enough pages: 32 x 43,264 x K in place against packed, 138 / 114 GFLOP/s at K = 25, 135 /
    // 129 at 48, 132 / 140 at 64, 124 / 137 at 96.
    internal const int InPlaceBMaxFarDepth = 48;

    // Below this many multiply-adds per thread, waking a worker costs more than it saves.
    private const long MinMacsPerThread = 1L << 17;

    /// <summary>One call's arguments, shared by the threads that work on it.</summary>
    private struct Job
    {
        public bool TransA, TransB;
        public int M, N, K;
        public float Alpha, Beta;
        public float* A, B, C;
        public int Lda, Ldb, Ldc;
        public KernelKind Kind;
        public int Mr, Nr;
        public int Parts;
        public bool SplitN;
        // Batched: items per part and the strides between items (0 when not batched).
        public int Batch;
        public long StrideA, StrideB, StrideC;
    }

    private static int MrOf(KernelKind kind) => kind switch
    {
        KernelKind.Vector512 => Mr512,
        KernelKind.Vector256 => Mr256,
        _ => MrScalar,
    };

    private static int NrOf(KernelKind kind) => kind switch
    {
        KernelKind.Vector512 => Nr512,
        KernelKind.Vector256 => Nr256,
        _ => NrScalar,
    };

    private static Job MakeJob(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda,
        float* b, int ldb, float beta, float* c, int ldc)
    {
        KernelKind kind = Kind;
        return new Job
        {
            TransA = transA, TransB = transB, M = m, N = n, K = k, Alpha = alpha, Beta = beta,
            A = a, B = b, C = c, Lda = lda, Ldb = ldb, Ldc = ldc,
            Kind = kind, Mr = MrOf(kind), Nr = NrOf(kind), Parts = 1,
        };
    }

    private static void Run(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda,
        float* b, int ldb, float beta, float* c, int ldc, bool allowThreads)
    {
        if (m == 0 || n == 0) return;
        if (k == 0 || alpha == 0f)
        {
            ScaleC(m, n, beta, c, ldc);
            return;
        }
        if (IsDot(transA, transB, m, n, k))
        {
            ByDotProducts(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        if (IsSmall(transB, m, n, k))
        {
            Small(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        Job job = MakeJob(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        if (allowThreads) Plan(ref job, CpuThreading.Threads);
        if (job.Parts <= 1)
        {
            Blocked(ref job, 0, m, 0, n);
            return;
        }
        CpuThreading.ForParts(job.Parts, &RunPart, &job);
    }

    /// <summary>Chooses how many threads share the call and whether they split columns or rows.</summary>
    private static void Plan(ref Job job, int threads)
    {
        long macs = (long)job.M * job.N * job.K;
        int byWork = (int)Math.Clamp(macs / MinMacsPerThread, 1, threads);
        int tilesN = (job.N + job.Nr - 1) / job.Nr;
        int tilesM = (job.M + job.Mr - 1) / job.Mr;
        // Columns are the natural split (each thread packs its own part of B, A is small in the
        // common im2col shapes); rows only when C is too narrow to give every thread columns.
        job.SplitN = tilesN >= tilesM || tilesN >= 4 * byWork;
        job.Parts = Math.Min(byWork, job.SplitN ? tilesN : tilesM);
    }

    private static void RunPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        if (job.SplitN)
        {
            int tiles = (job.N + job.Nr - 1) / job.Nr;
            int j0 = (int)((long)part * tiles / job.Parts) * job.Nr;
            int j1 = Math.Min(job.N, (int)((long)(part + 1) * tiles / job.Parts) * job.Nr);
            Blocked(ref job, 0, job.M, j0, j1);
        }
        else
        {
            int tiles = (job.M + job.Mr - 1) / job.Mr;
            int i0 = (int)((long)part * tiles / job.Parts) * job.Mr;
            int i1 = Math.Min(job.M, (int)((long)(part + 1) * tiles / job.Parts) * job.Mr);
            Blocked(ref job, i0, i1, 0, job.N);
        }
    }

    private static void RunBatched(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, long strideA, float* b, int ldb, long strideB, float beta, float* c, int ldc, long strideC, int batch)
    {
        if (batch == 0 || m == 0 || n == 0) return;
        Job job = MakeJob(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        int threads = CpuThreading.Threads;
        Plan(ref job, threads);
        if (job.Parts > 1 || batch == 1)
        {
            // Items big enough to split: one after another, each over all threads.
            for (int i = 0; i < batch; i++)
            {
                Run(transA, transB, m, n, k, alpha, a + i * strideA, lda, b + i * strideB, ldb, beta, c + i * strideC, ldc, allowThreads: true);
            }
            return;
        }
        // Small items: whole items per thread.
        long macs = (long)m * n * Math.Max(k, 1) * batch;
        job.Parts = (int)Math.Clamp(macs / MinMacsPerThread, 1, Math.Min(threads, batch));
        job.Batch = batch;
        job.StrideA = strideA;
        job.StrideB = strideB;
        job.StrideC = strideC;
        if (job.Parts <= 1) RunItems(ref job, 0, batch);
        else CpuThreading.ForParts(job.Parts, &RunBatchPart, &job);
    }

    private static void RunBatchPart(void* state, int part)
    {
        ref Job job = ref *(Job*)state;
        RunItems(ref job, (int)((long)part * job.Batch / job.Parts), (int)((long)(part + 1) * job.Batch / job.Parts));
    }

    private static void RunItems(ref Job job, int first, int end)
    {
        for (int i = first; i < end; i++)
        {
            Run(job.TransA, job.TransB, job.M, job.N, job.K, job.Alpha, job.A + i * job.StrideA, job.Lda,
                job.B + i * job.StrideB, job.Ldb, job.Beta, job.C + i * job.StrideC, job.Ldc, allowThreads: false);
        }
    }

    /// <summary>C = beta * C over m x n (beta 0 writes zeros without reading).</summary>
    private static void ScaleC(int m, int n, float beta, float* c, int ldc)
    {
        if (beta == 1f) return;
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + (long)i * ldc, n);
            if (beta == 0f)
            {
                row.Clear();
            }
            else
            {
                for (int j = 0; j < n; j++) row[j] *= beta;
            }
        }
    }

    /// <summary>Computes rows [i0, i1) x columns [j0, j1) of C on the calling thread.</summary>
    private static void Blocked(ref Job job, int i0, int i1, int j0, int j1)
    {
        Scratch scratch = Scratch.Current;
        float* packA = scratch.A;
        float* packB = scratch.B;
        float* tile = scratch.Tile;
        int mr = job.Mr, nr = job.Nr;
        // With few rows of C, packing B costs about as much as multiplying it by 8 rows of A (each packed element is
        // used by only m / 8 tiles), so whole 32-column panels of an untransposed B are read where they lie, rows ldb
        // apart, where those rows are near or few (InPlaceBMaxStride, InPlaceBMaxFarDepth); the same kernel runs either
        // way, so results do not change. Only a last, partial panel is packed.
        bool inPlace = !job.TransB && job.Kind == KernelKind.Vector512 && i1 - i0 <= InPlaceBMaxRows
            && (job.Ldb <= InPlaceBMaxStride || job.K <= InPlaceBMaxFarDepth);
        for (int jc = j0; jc < j1; jc += NC)
        {
            int nc = Math.Min(NC, j1 - jc);
            int inPlaceCols = inPlace ? nc / nr * nr : 0;
            for (int pc = 0; pc < job.K; pc += KC)
            {
                int kc = Math.Min(KC, job.K - pc);
                // Later K blocks add to what the first one wrote.
                float beta = pc == 0 ? job.Beta : 1f;
                if (inPlaceCols < nc) PackB(job.TransB, job.B, job.Ldb, pc, kc, jc + inPlaceCols, nc - inPlaceCols, packB, nr);
                float* bInPlace = job.B + (long)pc * job.Ldb + jc;
                for (int ic = i0; ic < i1; ic += MC)
                {
                    int mc = Math.Min(MC, i1 - ic);
                    PackA(job.TransA, job.A, job.Lda, ic, mc, pc, kc, packA, mr);
                    for (int ir = 0; ir < mc; ir += mr)
                    {
                        int rows = Math.Min(mr, mc - ir);
                        float* ap = packA + (long)ir * kc;
                        float* cRow = job.C + (long)(ic + ir) * job.Ldc + jc;
                        for (int jr = 0; jr < nc; jr += nr)
                        {
                            int cols = Math.Min(nr, nc - jr);
                            if (jr < inPlaceCols)
                                MicroTile(job.Kind, kc, ap, bInPlace + jr, cRow + jr, job.Ldc, job.Alpha, beta, rows, cols, tile, job.Ldb);
                            else
                                MicroTile(job.Kind, kc, ap, packB + (long)(jr - inPlaceCols) * kc, cRow + jr, job.Ldc, job.Alpha, beta, rows, cols, tile, nr);
                        }
                    }
                }
            }
        }
    }

    /// <summary>Per-thread packing buffers, 64-byte aligned, freed when the thread ends.</summary>
    private sealed class Scratch
    {
        [ThreadStatic] private static Scratch? current;

        public readonly float* A;
        public readonly float* B;
        public readonly float* Tile;

        private Scratch()
        {
            A = (float*)NativeMemory.AlignedAlloc((nuint)(MC * KC * sizeof(float)), 64);
            B = (float*)NativeMemory.AlignedAlloc((nuint)(KC * NC * sizeof(float)), 64);
            Tile = (float*)NativeMemory.AlignedAlloc((nuint)(MaxTile * sizeof(float)), 64);
        }

        ~Scratch()
        {
            NativeMemory.AlignedFree(A);
            NativeMemory.AlignedFree(B);
            NativeMemory.AlignedFree(Tile);
        }

        public static Scratch Current => current ??= new Scratch();
    }
}
