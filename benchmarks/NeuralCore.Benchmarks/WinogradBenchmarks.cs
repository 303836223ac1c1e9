using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;

namespace NeuralCore.Benchmarks;

/// <summary>
/// The inference plan's 3x3 convolutions (bias + ReLU applied as the outputs are stored) by Winograd
/// (<see cref="WinogradConv"/>) against the implicit GEMM (<see cref="ImplicitGemmConv"/>), on channel-major tensors, 2
/// threads: CP-ResNet's stage-1 maps for the big (32 channels) and the pruned (19) model, MNIST at batch 256 (the samples
/// in the lanes) and mel at batch 64 and 1 (the tiles in the lanes). Winograd runs twice: with F(2x2, 3x3), and with the
/// tiles the plan picks (<see cref="WinogradConv.TileSize"/>: F(3x3, 3x3) but on the mel map at batch 1, where the two
/// methods time the same kernel). Needs AVX-512 (both kernels do).
/// </summary>
[Config(typeof(WinogradConfig))]
public unsafe class WinogradBenchmarks
{
    private float[] x = [], y = [], bias = [];
    private Conv2dParams p;
    private ImplicitGemmConv.Weights implicitWeights = null!;
    private WinogradConv.Weights winogradWeights = null!, smallTileWeights = null!;

    /// <summary>The convolution, by name; see <see cref="AllShapes"/>.</summary>
    [ParamsSource(nameof(Shapes))]
    public string Shape { get; set; } = "";

    /// <summary>Names of all shapes.</summary>
    public static IEnumerable<string> Shapes => AllShapes.Select(s => s.Name);

    private static readonly (string Name, Conv2dParams P)[] AllShapes =
    [
        ("mnist b256 32-32 6x6", Same3x3(256, 32, 32, 6, 6)),
        ("mnist b256 32-32 3x6", Same3x3(256, 32, 32, 3, 6)),
        ("mnist b256 19-19 6x6", Same3x3(256, 19, 19, 6, 6)),
        ("mel b64 32-32 31x24", Same3x3(64, 32, 32, 31, 24)),
        ("mel b64 32-64 7x24", Same3x3(64, 32, 64, 7, 24)),
        ("mel b64 19-19 31x24", Same3x3(64, 19, 19, 31, 24)),
        ("mel b1 32-32 31x24", Same3x3(1, 32, 32, 31, 24)),
    ];

    private static Conv2dParams Same3x3(int n, int c, int k, int h, int w) => new(n, c, h, w, k, 3, 3, 1, 1, 1, 1, 1, 1, 1);

    [GlobalSetup]
    public void Setup()
    {
        p = AllShapes.First(s => s.Name == Shape).P;
        CpuThreading.Threads = ConvBenchmarks.Threads;
        var generator = new Generator(42);
        x = GC.AllocateArray<float>(p.C * p.N * p.H * p.W, pinned: true);
        Tensor.Randn([x.Length], generator).AsSpan().CopyTo(x);
        y = GC.AllocateArray<float>(p.K * p.N * p.H * p.W, pinned: true);
        bias = GC.AllocateArray<float>(p.K, pinned: true);
        Tensor.Randn([p.K], generator).AsSpan().CopyTo(bias);
        var w = Tensor.Randn([p.K, p.C, 3, 3], generator).ToArray();
        implicitWeights = new ImplicitGemmConv.Weights(w, p);
        winogradWeights = new WinogradConv.Weights(w, p, pooled: false);
        try
        {
            WinogradConv.LargeTiles = false;
            smallTileWeights = new WinogradConv.Weights(w, p, pooled: false);
        }
        finally
        {
            WinogradConv.LargeTiles = true;
        }
        if (!ImplicitGemmConv.Supports(p) || !WinogradConv.Supports(p, null))
            throw new InvalidOperationException($"{Shape}: this machine or shape does not run both kernels (they need AVX-512).");
    }

    [Benchmark(Baseline = true, Description = "implicit GEMM")]
    public void Implicit() =>
        ImplicitGemmConv.Forward(Pointer(x), implicitWeights.View(), Pointer(bias), Pointer(y), p, null, true, UnaryOp.Relu, 0f, 0f);

    [Benchmark(Description = "Winograd F(2x2, 3x3)")]
    public void WinogradSmallTiles() => WinogradConv.Forward(Pointer(x), smallTileWeights, Pointer(bias), Pointer(y), p, null, kind: 1);

    [Benchmark(Description = "Winograd, the plan's tiles")]
    public void Winograd() => WinogradConv.Forward(Pointer(x), winogradWeights, Pointer(bias), Pointer(y), p, null, kind: 1);

    // SAFETY: the arrays are pinned (allocated on the pinned object heap in Setup).
    private static float* Pointer(float[] a) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(a));

    /// <summary>Few iterations: each call runs for microseconds to milliseconds.</summary>
    private sealed class WinogradConfig : ManualConfig
    {
        public WinogradConfig() => AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(10).WithLaunchCount(1));
    }
}
