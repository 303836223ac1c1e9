using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;

namespace NeuralCore.Benchmarks;

/// <summary>
/// The CPU backend's convolution kernels (forward, backward data, backward weight) on 2 threads, on the
/// convolutions of CP-ResNet 32/64/128 (domain.md section 1): MNIST 28 x 28 at batch 256 (stem 5x5 stride 2
/// to 13 x 13, stage 1 on 6 x 6, stage 2 on 1 x 6) and the 128 x 100 mel input at batch 64 (stem to 63 x 49,
/// stage 1 on 31 x 24, stage 2/3 on 7 x 24).
/// </summary>
[Config(typeof(ConvConfig))]
public class ConvBenchmarks
{
    /// <summary>Threads the kernels use.</summary>
    public const int Threads = 2;

    private Tensor x = null!, w = null!, y = null!, dx = null!, dw = null!;
    private Conv2dParams p;

    /// <summary>The convolution, by name; see <see cref="ConvShape.All"/>.</summary>
    [ParamsSource(nameof(Shapes))]
    public string Shape { get; set; } = "";

    /// <summary>Names of all shapes.</summary>
    public static IEnumerable<string> Shapes => ConvShape.All.Select(s => s.Name);

    [GlobalSetup]
    public void Setup()
    {
        p = ConvShape.Get(Shape).P;
        CpuThreading.Threads = Threads;
        var generator = new Generator(42);
        x = Tensor.Randn([p.N, p.C, p.H, p.W], generator);
        w = Tensor.Randn([p.K, p.C / p.Groups, p.R, p.S], generator);
        y = Tensor.Randn([p.N, p.K, p.P, p.Q], generator);
        dx = Tensor.Zeros([p.N, p.C, p.H, p.W]);
        dw = Tensor.Zeros([p.K, p.C / p.Groups, p.R, p.S]);
    }

    [Benchmark(Description = "forward")]
    public void Forward() => CpuBackend.Instance.Conv2d(x, w, null, y, p);

    [Benchmark(Description = "backward data")]
    public void BackwardData() => CpuBackend.Instance.Conv2dBackwardData(y, w, dx, p);

    [Benchmark(Description = "backward weight")]
    public void BackwardWeight() => CpuBackend.Instance.Conv2dBackwardWeight(y, x, dw, p);

    /// <summary>Few iterations (each call runs for milliseconds) and a GFLOP/s column.</summary>
    private sealed class ConvConfig : ManualConfig
    {
        public ConvConfig()
        {
            AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(10).WithLaunchCount(1));
            AddColumn(new ConvGflopsColumn());
            AddColumn(StatisticColumn.Min);
        }
    }

    /// <summary>2 * MACs / mean time; each of the three passes does the forward's multiply-adds.</summary>
    private sealed class ConvGflopsColumn : IColumn
    {
        public string Id => "ConvGFLOPS";
        public string ColumnName => "GFLOP/s";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 0;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "Billions of floating-point operations per second, 2 N K P Q C/groups R S / mean";
        public bool IsAvailable(Summary summary) => true;
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            var report = summary[benchmarkCase];
            if (report?.ResultStatistics is not { } stats) return "-";
            return (2.0 * ConvShape.Get((string)benchmarkCase.Parameters["Shape"]).Macs / stats.Mean).ToString("F1");
        }
    }
}

/// <summary>A benchmark convolution.</summary>
public sealed record ConvShape(string Name, Conv2dParams P)
{
    /// <summary>Multiply-adds of one pass: N K P Q C/groups R S.</summary>
    public long Macs => (long)P.N * P.K * P.P * P.Q * (P.C / P.Groups) * P.R * P.S;

    /// <summary>CP-ResNet 32/64/128 convolutions (all bias-free, padding k / 3).</summary>
    public static readonly ConvShape[] All =
    [
        new("mnist b256 stem 1-32 5x5/2 28x28", new(256, 1, 28, 28, 32, 5, 5, 2, 2, 1, 1, 1, 1, 1)),
        new("mnist b256 s1 32-32 3x3 6x6", new(256, 32, 6, 6, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1)),
        new("mnist b256 s2 32-64 3x3 1x6", new(256, 32, 1, 6, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1)),
        new("mnist b256 s3 64-128 1x1 1x6", new(256, 64, 1, 6, 128, 1, 1, 1, 1, 0, 0, 1, 1, 1)),
        new("mel b64 stem 1-32 5x5/2 128x100", new(64, 1, 128, 100, 32, 5, 5, 2, 2, 1, 1, 1, 1, 1)),
        new("mel b64 s1 32-32 3x3 31x24", new(64, 32, 31, 24, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1)),
        new("mel b64 s2 32-64 3x3 7x24", new(64, 32, 7, 24, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1)),
        new("mel b64 s3 128-128 1x1 7x24", new(64, 128, 7, 24, 128, 1, 1, 1, 1, 0, 0, 1, 1, 1)),
    ];

    /// <summary>The shape called <paramref name="name"/>.</summary>
    public static ConvShape Get(string name) => All.First(s => s.Name == name);
}
