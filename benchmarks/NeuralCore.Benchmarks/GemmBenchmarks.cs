using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using NeuralCore.Backends.Cpu;

namespace NeuralCore.Benchmarks;

/// <summary>
/// NeuralCore's <see cref="Gemm.Sgemm(bool, bool, int, int, int, float, float*, int, float*, int, float, float*, int)"/>
/// against OpenBLAS <c>cblas_sgemm</c>, both on 2 threads, on a square problem and on the im2col
/// shapes of CP-ResNet 32/64/128 convolutions (forward: W[Cout, Cin*kh*kw] x cols[Cin*kh*kw, N*Hout*Wout];
/// backward data: W^T x dY; backward weight: dY x cols^T).
/// </summary>
[Config(typeof(GemmConfig))]
public unsafe class GemmBenchmarks
{
    /// <summary>Threads for both libraries.</summary>
    public const int Threads = 2;

    private float* a, b, c;
    private GemmShape shape = null!;

    /// <summary>The problem, by name; see <see cref="GemmShape.All"/>.</summary>
    [ParamsSource(nameof(Shapes))]
    public string Shape { get; set; } = "";

    /// <summary>Names of all shapes.</summary>
    public static IEnumerable<string> Shapes => GemmShape.All.Select(s => s.Name);

    [GlobalSetup]
    public void Setup()
    {
        shape = GemmShape.Get(Shape);
        CpuThreading.Threads = Threads;
        OpenBlas.SetNumThreads(Threads);
        a = Allocate((long)shape.M * shape.K);
        b = Allocate((long)shape.K * shape.N);
        c = Allocate((long)shape.M * shape.N);
        var rng = new Random(42);
        for (long i = 0; i < (long)shape.M * shape.K; i++) a[i] = (float)(rng.NextDouble() - 0.5);
        for (long i = 0; i < (long)shape.K * shape.N; i++) b[i] = (float)(rng.NextDouble() - 0.5);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(a);
        NativeMemory.AlignedFree(b);
        NativeMemory.AlignedFree(c);
    }

    [Benchmark(Baseline = true, Description = "OpenBLAS")]
    public void OpenBlasSgemm()
    {
        var s = shape;
        OpenBlas.Sgemm(OpenBlas.RowMajor, s.TransA ? OpenBlas.Trans : OpenBlas.NoTrans, s.TransB ? OpenBlas.Trans : OpenBlas.NoTrans,
            s.M, s.N, s.K, 1f, a, s.Lda, b, s.Ldb, 0f, c, s.N);
    }

    [Benchmark(Description = "NeuralCore")]
    public void NeuralCoreSgemm()
    {
        var s = shape;
        Gemm.Sgemm(s.TransA, s.TransB, s.M, s.N, s.K, 1f, a, s.Lda, b, s.Ldb, 0f, c, s.N);
    }

    private static float* Allocate(long count) => (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);

    /// <summary>Few iterations (the large shapes run for milliseconds each) and a GFLOP/s column.</summary>
    private sealed class GemmConfig : ManualConfig
    {
        public GemmConfig()
        {
            AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(10).WithLaunchCount(1));
            AddColumn(new GflopsColumn(best: false));
            AddColumn(new GflopsColumn(best: true));
            AddColumn(StatisticColumn.Min);
        }
    }

    /// <summary>2 m n k / mean time, or / min time (the best iteration, less sensitive to other load).</summary>
    private sealed class GflopsColumn(bool best) : IColumn
    {
        public string Id => best ? "GFLOPS-best" : "GFLOPS";
        public string ColumnName => best ? "Best GFLOP/s" : "GFLOP/s";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => best ? 1 : 0;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => best ? "2 m n k / Min, in 1e9 per second" : "2 m n k / Mean, in 1e9 per second";
        public bool IsAvailable(Summary summary) => true;
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            var report = summary[benchmarkCase];
            if (report?.ResultStatistics is not { } stats) return "-";
            var s = GemmShape.Get((string)benchmarkCase.Parameters["Shape"]);
            double ns = best ? stats.Min : stats.Mean;
            return (2.0 * s.M * s.N * s.K / ns).ToString("F1");
        }
    }
}

/// <summary>A benchmark problem: C[M, N] = op(A)[M, K] op(B)[K, N], tight strides.</summary>
public sealed record GemmShape(string Name, bool TransA, bool TransB, int M, int N, int K)
{
    /// <summary>Row stride of A as stored.</summary>
    public int Lda => TransA ? M : K;

    /// <summary>Row stride of B as stored.</summary>
    public int Ldb => TransB ? K : N;

    /// <summary>
    /// 512^3, then CP-ResNet 32/64/128 im2col GEMMs: MNIST at batch 256 (28 x 28 input: stem 5x5
    /// stride 2 to 13 x 13, stage-1 3x3 on 6 x 6, stage 2/3 on 1 x 6) and mel 128 x 100 at batch 64
    /// (stem to 63 x 49, stage 1 on 31 x 24, stage 2/3 on 7 x 24), with the two backward GEMMs of
    /// the mel stage-2 3x3 conv, and the stage-2 conv of the 19/38/76 pruned network.
    /// </summary>
    public static readonly GemmShape[] All =
    [
        new("square-512", false, false, 512, 512, 512),
        new("mnist-stem-5x5", false, false, 32, 256 * 13 * 13, 25),
        new("mnist-s1-3x3", false, false, 32, 256 * 6 * 6, 288),
        new("mnist-s3-1x1", false, false, 128, 256 * 6, 64),
        new("mel-stem-5x5", false, false, 32, 64 * 63 * 49, 25),
        new("mel-s1-3x3", false, false, 32, 64 * 31 * 24, 288),
        new("mel-s2-3x3", false, false, 64, 64 * 7 * 24, 288),
        new("mel-s3-1x1", false, false, 128, 64 * 7 * 24, 128),
        new("mel-s2-3x3-dX", true, false, 288, 64 * 7 * 24, 64),
        new("mel-s2-3x3-dW", false, true, 64, 288, 64 * 7 * 24),
        new("pruned-mel-s2-3x3", false, false, 38, 64 * 7 * 24, 171),
    ];

    /// <summary>The shape called <paramref name="name"/>.</summary>
    public static GemmShape Get(string name) => All.First(s => s.Name == name);
}
