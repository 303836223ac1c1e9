using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;

namespace NeuralCore.Benchmarks;

/// <summary>
/// Training's convolution weight gradients (<c>Conv2dBackwardWeight</c>, sample-major, 2 threads) through the GEMM path
/// (im2col or gathered rows, then <c>Gemm.Sgemm</c>; the baseline) and through <see cref="DirectWeightGradient"/>'s dot
/// products, on the layers of CP-ResNet 32/64/128 and of the model pruned to 19/38/76 where the direct path runs: the
/// stems, the 3x3 stage-1 convolutions, the 3x3 cut to 1x3 on MNIST's 1 x 6 maps, the pruned model's 1x1 layers with
/// 38 or 76 input channels, and the classifier's 1x1 (10 output channels). MNIST 28 x 28 at batch 256, mel 128 x 100 at
/// batch 64; the stems are 5x5 with stride 2 and padding 1 (names of at most 20 characters, which BenchmarkDotNet prints
/// whole). Needs AVX-512 (the direct path does).
/// </summary>
[Config(typeof(WeightGradientConfig))]
public class WeightGradientBenchmarks
{
    private Tensor x = null!, dy = null!, dw = null!;
    private Conv2dParams p;

    /// <summary>The convolution, by name; see <see cref="AllShapes"/>.</summary>
    [ParamsSource(nameof(Shapes))]
    public string Shape { get; set; } = "";

    /// <summary>Names of all shapes.</summary>
    public static IEnumerable<string> Shapes => AllShapes.Select(s => s.Name);

    private static readonly (string Name, Conv2dParams P)[] AllShapes =
    [
        ("mnist stem 1-32", Stem(256, 28, 28, 32)),
        ("mnist stem 1-19", Stem(256, 28, 28, 19)),
        ("mnist 32-32 3x3 6x6", Same(256, 32, 32, 6, 6, 3)),
        ("mnist 19-19 3x3 6x6", Same(256, 19, 19, 6, 6, 3)),
        ("mnist 19-19 3x3 3x6", Same(256, 19, 19, 3, 6, 3)),
        ("mnist 32-64 3x3 1x6", Same(256, 32, 64, 1, 6, 3)),
        ("mnist 38-38 1x1 1x6", Same(256, 38, 38, 1, 6, 1)),
        ("mnist 38-76 1x1 1x6", Same(256, 38, 76, 1, 6, 1)),
        ("mnist 76-76 1x1 1x6", Same(256, 76, 76, 1, 6, 1)),
        ("mnist 128-10 1x1 1x6", Same(256, 128, 10, 1, 6, 1)),
        ("mel stem 1-32", Stem(64, 128, 100, 32)),
        ("mel stem 1-19", Stem(64, 128, 100, 19)),
        ("mel 32-32 3x3 31x24", Same(64, 32, 32, 31, 24, 3)),
        ("mel 19-19 3x3 31x24", Same(64, 19, 19, 31, 24, 3)),
        ("mel 19-38 3x3 7x24", Same(64, 19, 38, 7, 24, 3)),
        ("mel 38-38 1x1 7x24", Same(64, 38, 38, 7, 24, 1)),
        ("mel 38-76 1x1 7x24", Same(64, 38, 76, 7, 24, 1)),
        ("mel 76-76 1x1 7x24", Same(64, 76, 76, 7, 24, 1)),
    ];

    private static Conv2dParams Stem(int n, int h, int w, int k) => new(n, 1, h, w, k, 5, 5, 2, 2, 1, 1, 1, 1, 1);

    private static Conv2dParams Same(int n, int c, int k, int h, int w, int kernel) =>
        new(n, c, h, w, k, kernel, kernel, 1, 1, kernel / 2, kernel / 2, 1, 1, 1);

    [GlobalSetup]
    public void Setup()
    {
        p = AllShapes.First(s => s.Name == Shape).P;
        CpuThreading.Threads = ConvBenchmarks.Threads;
        var generator = new Generator(42);
        x = Tensor.Randn([p.N, p.C, p.H, p.W], generator);
        dy = Tensor.Randn([p.N, p.K, p.P, p.Q], generator);
        dw = Tensor.Zeros([p.K, p.C, p.R, p.S]);
        DirectWeightGradient.Enabled = true;
        if (!DirectWeightGradient.Supports(p) && !DirectWeightGradient.SupportsStem(p))
            throw new InvalidOperationException($"{Shape}: the direct path does not run here (it needs AVX-512) or not for this shape.");
    }

    [GlobalCleanup]
    public void Cleanup() => DirectWeightGradient.Enabled = true;

    [Benchmark(Baseline = true, Description = "GEMM path")]
    public void GemmPath()
    {
        DirectWeightGradient.Enabled = false;
        CpuBackend.Instance.Conv2dBackwardWeight(dy, x, dw, p);
        DirectWeightGradient.Enabled = true;
    }

    [Benchmark(Description = "direct dot products")]
    public void Direct() => CpuBackend.Instance.Conv2dBackwardWeight(dy, x, dw, p);

    /// <summary>Few iterations: each call runs for tens of microseconds to milliseconds.</summary>
    private sealed class WeightGradientConfig : ManualConfig
    {
        public WeightGradientConfig() => AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(10).WithLaunchCount(1));
    }
}
