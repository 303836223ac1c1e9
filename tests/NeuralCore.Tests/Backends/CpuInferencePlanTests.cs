using System.Runtime.Intrinsics.X86;
using NeuralCore.Backends.Cpu;
using NeuralCore.NN;
using NeuralCore.Tests.Ops;

namespace NeuralCore.Tests.Backends;

/// <summary>
/// <see cref="CpuInferencePlan"/> against the eager eval-mode forward: batch norms folded into convolutions,
/// activations and residual additions fused into their epilogues, unfused element-wise ops and pools, at batch sizes
/// that run inline and threaded; unsupported ops and wrong shapes fail with a message.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed class CpuInferencePlanTests : IDisposable
{
    // The tests here reach every step's threaded kernels, which a batch split into sample shards runs on one thread
    // each: only the tests of the shards turn them on. Those set the thread count and the shards' weight budget, which
    // Dispose restores.
    private readonly int _threads = CpuThreading.Threads;
    private readonly long _weightBudget = CpuInferencePlan.MaxExtraWeightBytes;
    private readonly long _cacheBytes = CpuInferencePlan.CacheBytes;

    public CpuInferencePlanTests() => CpuInferencePlan.ShardingEnabled = false;

    public void Dispose()
    {
        CpuInferencePlan.ShardingEnabled = true;
        CpuThreading.Threads = _threads;
        CpuInferencePlan.MaxExtraWeightBytes = _weightBudget;
        CpuInferencePlan.CacheBytes = _cacheBytes;
        CpuInferencePlan.PieceSamples = 0;
    }

    /// <summary>CP-ResNet's stem and two blocks at 19 channels (MNIST's pruned widths), with sample shards turned on.</summary>
    private static StemBlockNet ShardedNet(Generator g)
    {
        var net = new StemBlockNet(19, secondBlock: true, g);
        RandomizeStatistics(net, g);
        CpuInferencePlan.ShardingEnabled = true;
        return net;
    }

    private static Module Net(Generator g)
    {
        var net = new Sequential(
            new Conv2d(2, 5, 5, stride: 2, padding: 1, bias: false, generator: g),
            new BatchNorm2d(5),
            new Hardswish(),
            new MaxPool2d(2, 2),
            new ResidualBlock(5, 5, g),
            new ResidualBlock(5, 7, g),
            // A batch norm that follows no convolution, and an activation that follows a pool: both unfused.
            new MaxPool2d((2, 1), (2, 1)),
            new BatchNorm2d(7),
            new ReLU(),
            new Conv2d(7, 3, 1, bias: false, generator: g),
            new AdaptiveAvgPool2d(1),
            new Flatten());
        // Non-trivial statistics and affine parameters, so that folding has something to fold.
        RandomizeStatistics(net, g);
        return net;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(64)]
    public void MatchesTheEagerForward(int batch)
    {
        var g = new Generator(11);
        var net = Net(g);
        var x = Tensor.Randn([batch, 2, 25, 21], g);
        var plan = CpuInferencePlan.Compile(net, [batch, 2, 25, 21]);
        Assert.True(net.Training, "Compile must restore the training mode.");
        net.Eval();
        float[] expected;
        using (Autograd.Autograd.NoGrad()) expected = net.Call(x).ToArray();
        var actual = plan.Run(x).ToArray();
        Assert.Equal([batch, 3], plan.OutputShape);
        Assert.Equal(expected.Length, actual.Length);
        AssertMatchesEager(expected, actual);

        // The stem folds its BN and activation; blocks fuse residual + ReLU; the lone BN stays a step of its own.
        Assert.Contains("conv 2->5 5x5/2 + bn + hardswish", plan.Description);
        Assert.Contains(plan.Description, d => d.Contains("+ bn + residual + relu", StringComparison.Ordinal));
        Assert.Contains("batch norm (7 channels) + relu", plan.Description);
    }

    /// <summary>
    /// Stride-1 convolutions with "same" padding run as an implicit GEMM (AVX-512): odd channel counts (partial
    /// micro-panels of rows and columns), dilation, groups, taps that never reach the input (a 3x3 kernel on a plane
    /// one row high keeps 3 of 9), 1x1 kernels, and a residual block after them; the same plans compiled for the
    /// AVX2 kernels take the implicit GEMM's 256-bit form. Both must match the eager forward. Also: panels of at most 16 columns
    /// (multiplied as Y^T = X^T W^T) and convolutions with too few panels to share, whose output channels are split
    /// between the threads. Each with strips and without: at 512 bits they take every convolution of up to 24 output
    /// channels, which without them runs on the tiles and panels the cases below describe.
    /// </summary>
    [Theory]
    [InlineData(19, 38, 3, 1, 1, 6, 6, 7, 9)]
    [InlineData(32, 64, 3, 1, 1, 1, 6, 5, 3)]
    [InlineData(8, 16, 3, 2, 2, 9, 11, 3, 9)]
    [InlineData(5, 12, 5, 1, 1, 13, 13, 2, 25)]
    [InlineData(16, 9, 1, 1, 1, 7, 24, 2, 1)]
    [InlineData(4, 8, 3, 1, 4, 31, 24, 1, 9)]
    [InlineData(3, 5, 3, 3, 1, 2, 2, 3, 1)]
    // 12 output columns: at most 16, multiplied the other way round (Y^T = X^T W^T).
    [InlineData(32, 64, 3, 1, 1, 1, 6, 2, 3)]
    // 6 columns and 38 output channels: the second panel of transposed weights holds 6, multiplied 8 lanes wide;
    // 19 and 56 = 32 + 24 channels: a panel's last 19 or 24 multiplied as 16 + 8 lanes (the narrow-map kernel takes 38 in one tile of 40).
    [InlineData(19, 38, 3, 1, 1, 1, 6, 1, 3)]
    [InlineData(19, 19, 3, 1, 1, 1, 6, 1, 3)]
    [InlineData(8, 56, 1, 1, 1, 2, 5, 1, 1)]
    // A panel and at most 16 more channels in one tile: 40 (32 + 8 lanes), 44 and 48 (three vectors of 16), 70 and 80
    // (a tile of 32, then one of 38 or 48 lanes across the second and third panels).
    [InlineData(16, 40, 1, 1, 1, 1, 6, 1, 1)]
    [InlineData(8, 44, 3, 1, 1, 3, 6, 1, 9)]
    [InlineData(8, 48, 3, 1, 1, 3, 6, 1, 9)]
    [InlineData(19, 70, 1, 1, 1, 2, 6, 2, 1)]
    [InlineData(12, 80, 3, 1, 1, 1, 6, 1, 3)]
    // 16 columns and 64 or 76 output channels, split between the threads in runs of 32 or 40 (the second starting
    // inside a panel of the transposed weights), each multiplied the other way round.
    [InlineData(64, 64, 3, 1, 1, 4, 4, 1, 9)]
    [InlineData(64, 76, 3, 1, 1, 4, 4, 1, 9)]
    // 60 columns, two panels: the threads split the 64 output channels instead of the panels.
    [InlineData(32, 64, 3, 1, 1, 6, 10, 1, 9)]
    // 168 columns (a batch-1 mel map of 7 x 24): blocks of one panel each, the last of 8 columns, shared 3 + 3, with
    // 38 output channels and with 76 (whose micro-panels would split evenly, 5 + 5, but the panels go first).
    [InlineData(19, 38, 3, 1, 1, 7, 24, 1, 9)]
    [InlineData(76, 76, 1, 1, 1, 7, 24, 1, 1)]
    public void SameConvolutionsRunAsImplicitGemm(int cin, int cout, int k, int dilation, int groups, int h, int w, int batch, int liveTaps)
    {
        var g = new Generator(17);
        var net = new Sequential(
            new Conv2d(cin, cout, k, padding: dilation * (k - 1) / 2, dilation: dilation, groups: groups, bias: true, generator: g),
            new BatchNorm2d(cout),
            new ReLU(),
            new ResidualBlock(cout, cout, g));
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([batch, cin, h, w], g);
        net.Eval();
        float[] expected;
        using (Autograd.Autograd.NoGrad()) expected = net.Call(x).ToArray();

        var saved = Gemm.Kind;
        try
        {
            foreach (var kind in new[] { Gemm.Best, Gemm.KernelKind.Vector256 }.Distinct().Where(kk => kk <= Gemm.Best))
                foreach (bool narrowMaps in new[] { true, false })
                foreach (bool strips in new[] { true, false })
                {
                    Gemm.Kind = kind;
                    NarrowMapConv.Enabled = narrowMaps;
                    ImplicitGemmConv.Strips = strips;
                    var plan = CpuInferencePlan.Compile(net, [batch, cin, h, w]);
                    var actual = plan.Run(x).ToArray();
                    AssertMatchesEager(expected, actual, $"{kind}, narrow maps {narrowMaps}, strips {strips}, ");
                    // At most 24 output positions (and one group): the narrow-map kernel, position-major, when it is on.
                    bool vectors = kind == Gemm.KernelKind.Vector512 || Gemm.Runs256;
                    bool narrow = vectors && narrowMaps && batch * h * w <= NarrowMapConv.MaxPositions && groups == 1;
                    bool implicitGemm = vectors && !narrow;
                    string first = plan.Description[0];
                    Assert.Equal(implicitGemm, first.Contains("implicit GEMM", StringComparison.Ordinal));
                    Assert.Equal(narrow, first.Contains("narrow map", StringComparison.Ordinal));
                    if ((implicitGemm || narrow) && liveTaps < k * k) Assert.Contains($"{liveTaps} of {k * k} taps", first);
                }
        }
        finally
        {
            Gemm.Kind = saved;
            NarrowMapConv.Enabled = true;
            ImplicitGemmConv.Strips = true;
        }
        if (!Avx512F.IsSupported && !(Avx2.IsSupported && Fma.IsSupported))
            Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: only the im2col path of the plan was checked, not the implicit GEMM.");
    }

    /// <summary>
    /// 3x3 "same" convolutions with enough tiles run by Winograd (<see cref="WinogradConv"/>): F(2x2, 3x3) or F(3x3, 3x3)
    /// (<see cref="WinogradConv.TileSize"/>) with the tiles in the lanes on rows of at least 8 tiles of 2 x 2: maps of odd height and width (tiles partly off the map), tile rows longer than one run (20 tiles: 16 + 4), a map
    /// two rows high, 12 output channels (8 + 4: a last micro-panel of 4 rows) and 38 (a last one of 6), blocks that end
    /// inside a tile row, several blocks per thread, residual blocks after them (a residual added as the outputs are
    /// stored), ReLU, Hardswish and no activation. Each must match eager, as must the same plan compiled with the path
    /// off (the implicit GEMM) and, where F(3x3, 3x3) runs, with <see cref="WinogradConv.LargeTiles"/> off (F(2x2, 3x3));
    /// on one thread the results must be the same bits as on two. Fewer than 128 tiles (a 15 x 24 map at batch 1: 96)
    /// stay with the implicit GEMM. <paramref name="tile"/> is the tile side expected, 0 for the implicit GEMM.
    /// </summary>
    [Theory]
    [InlineData(19, 38, 31, 24, 1, "relu", 2)]
    [InlineData(7, 12, 9, 17, 6, "hardswish", 2)]
    [InlineData(32, 64, 7, 40, 2, "none", 2)]
    [InlineData(3, 5, 2, 16, 16, "relu", 2)]
    [InlineData(16, 16, 15, 24, 1, "relu", 0)]
    // F(3x3, 3x3) with the tiles in the lanes, where it takes at least 20 % fewer products and the batch has 256 tiles or
    // more: mel's stage-1 and stage-2 maps at batch 64 and 12 (the 7 x 24 map's last tile row one row deep), runs of 8
    // tiles and of 1 (17 tiles a row on 64 x 50), maps whose last tiles lie partly off them (17 x 25), 38 output
    // channels (a last micro-panel of 6). The mel map at batch 1 (88 tiles) keeps F(2x2, 3x3) above, as does 7 x 40
    // (3 x 3 tiles would save 18 %).
    [InlineData(19, 38, 31, 24, 64, "relu", 3)]
    [InlineData(32, 64, 7, 24, 12, "none", 3)]
    [InlineData(8, 8, 64, 50, 3, "relu", 3)]
    [InlineData(7, 12, 17, 25, 5, "hardswish", 3)]
    // Narrow maps (fewer than 8 tiles a row) with 32 samples or more in the lanes, by F(3x3, 3x3) where that takes at
    // least 20 % fewer products than F(2x2, 3x3): MNIST's 6 x 6 and 3 x 6 maps (exactly 2 x 2 and 1 x 2 tiles), groups of
    // 32 + 8 and 32 + 1 samples (lanes past the batch), odd height and width (5 x 7: tiles partly off the map, 2 x 3 of
    // 25 products against 3 x 4 of 16), a single tile per plane (2 x 2 and 4 x 4 maps keep F(2x2, 3x3)); 31 samples stay
    // with the implicit GEMM.
    [InlineData(19, 38, 6, 6, 40, "relu", 3)]
    [InlineData(8, 12, 5, 7, 33, "hardswish", 3)]
    [InlineData(16, 16, 3, 6, 64, "none", 3)]
    [InlineData(5, 7, 4, 4, 32, "relu", 2)]
    [InlineData(4, 5, 2, 2, 160, "relu", 2)]
    [InlineData(16, 16, 6, 6, 31, "relu", 0)]
    // A tall narrow map: 32 samples' 67 x 2 tiles would be 3.4 MiB of transformed input, more than a block may hold.
    [InlineData(8, 8, 200, 6, 32, "relu", 0)]
    public void ThreeByThreeConvolutionsRunAsWinograd(int cin, int cout, int h, int w, int batch, string activation, int tile)
    {
        var g = new Generator(41);
        Module act = activation switch { "relu" => new ReLU(), "hardswish" => new Hardswish(), _ => new Identity() };
        var net = new Sequential(
            new Conv2d(cin, cout, 3, padding: 1, bias: true, generator: g),
            new BatchNorm2d(cout),
            act,
            new ResidualBlock(cout, cout, g));
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([batch, cin, h, w], g);
        var (plan, _) = CompileAndCompare(net, x);
        int savedThreads = CpuThreading.Threads;
        float[] oneThread;
        try
        {
            CpuThreading.Threads = 1;
            oneThread = plan.Run(x).ToArray();
            WinogradConv.LargeTiles = false;
            var (smallTiles, _) = CompileAndCompare(net, x);
            if (Avx512F.IsSupported) Assert.DoesNotContain(smallTiles.Description, d => d.Contains("F(3x3", StringComparison.Ordinal));
            WinogradConv.Enabled = false;
            var (direct, _) = CompileAndCompare(net, x);
            if (Avx512F.IsSupported) Assert.DoesNotContain(direct.Description, d => d.Contains("Winograd", StringComparison.Ordinal));
        }
        finally
        {
            CpuThreading.Threads = savedThreads;
            WinogradConv.Enabled = true;
            WinogradConv.LargeTiles = true;
        }
        Assert.Equal(plan.Run(x).ToArray(), oneThread);
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: Winograd is 512-bit only (the plan ran the implicit GEMM or im2col).");
        // The first convolution and the residual block's two 3x3 convolutions, all with the expected tiles.
        Assert.Equal(tile == 0 ? 0 : 3, plan.Description.Count(d => d.Contains("3x3", StringComparison.Ordinal) && d.Contains("(Winograd", StringComparison.Ordinal)));
        if (tile != 0) Assert.Equal(3, plan.Description.Count(d => d.EndsWith($"(Winograd F({tile}x{tile}, 3x3))", StringComparison.Ordinal)));
    }

    /// <summary>
    /// Both Winograd tilings stay within 1e-5 of the largest output from a double-precision direct sum, on MNIST's 6 x 6
    /// and 3 x 6 maps (the samples in the lanes) and a 15 x 24 mel map (the tiles in the lanes) at batch 32 with 32 input
    /// and output channels: F(3x3, 3x3), which the plan picks there, and F(2x2, 3x3) with
    /// <see cref="WinogradConv.LargeTiles"/> off. (A coefficient off by 1.7e-4 already puts outputs 8e-5 away; the
    /// tilings' own rounding is a few units in the last place, about 1e-6.)
    /// </summary>
    [Theory]
    [InlineData(6, 6)]
    [InlineData(3, 6)]
    [InlineData(15, 24)]
    public void WinogradTilingsStayCloseToTheExactSum(int h, int w)
    {
        const int n = 32, c = 32, k = 32;
        var g = new Generator(59);
        var conv = new Conv2d(c, k, 3, padding: 1, bias: false, generator: g);
        var net = new Sequential(conv);
        net.Eval();
        var x = Tensor.Randn([n, c, h, w], g);
        float[] xs = x.ToArray(), ws = conv.Weight.ToArray();
        var exact = new double[n * k * h * w];
        for (int s = 0; s < n; s++)
            for (int o = 0; o < k; o++)
                for (int r = 0; r < h; r++)
                    for (int q = 0; q < w; q++)
                    {
                        double sum = 0;
                        for (int i = 0; i < c; i++)
                            for (int dr = 0; dr < 3; dr++)
                                for (int dq = 0; dq < 3; dq++)
                                {
                                    int rr = r + dr - 1, qq = q + dq - 1;
                                    if ((uint)rr < (uint)h && (uint)qq < (uint)w)
                                        sum += (double)xs[((s * c + i) * h + rr) * w + qq] * ws[((o * c + i) * 3 + dr) * 3 + dq];
                                }
                        exact[((s * k + o) * h + r) * w + q] = sum;
                    }
        double scale = exact.Max(Math.Abs);
        var descriptions = new List<string>();
        try
        {
            foreach (bool large in new[] { true, false })
            {
                WinogradConv.LargeTiles = large;
                var plan = CpuInferencePlan.Compile(net, [n, c, h, w]);
                float[] y = plan.Run(x).ToArray();
                double worst = 0;
                for (int i = 0; i < y.Length; i++) worst = Math.Max(worst, Math.Abs(y[i] - exact[i]) / scale);
                Assert.True(worst <= 1e-5, $"{plan.Description[0]}: an output {worst:E2} of the largest from the exact sum");
                descriptions.Add(plan.Description[0]);
            }
        }
        finally
        {
            WinogradConv.LargeTiles = true;
        }
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: Winograd is 512-bit only (the plan ran the implicit GEMM or im2col).");
        Assert.EndsWith("(Winograd F(3x3, 3x3))", descriptions[0]);
        Assert.EndsWith("(Winograd F(2x2, 3x3))", descriptions[1]);
    }

    /// <summary>
    /// Weights transformed for F(3x3, 3x3) on a wide map without a pool cannot run with a fused pool (its row pairs would
    /// straddle 3-row tiles): the kernel refuses them with a message instead of pooling wrongly; the same map's weights
    /// transformed for a pool are F(2x2, 3x3).
    /// </summary>
    [Fact]
    public unsafe void WideLargeTilesRefuseAFusedPool()
    {
        var p = new NeuralCore.Backends.Conv2dParams(64, 4, 31, 24, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        var weights = new WinogradConv.Weights(new float[4 * 4 * 9], p, pooled: false);
        Assert.Equal(3, weights.Tile);
        Assert.Equal(2, new WinogradConv.Weights(new float[4 * 4 * 9], p, pooled: true).Tile);
        // Two samples' 176 tiles are too few to share between threads, not for one thread (a sample shard's plan).
        var two = p with { N = 2 };
        Assert.Equal(2, WinogradConv.TileSize(two, pooled: false));
        Assert.Equal(3, WinogradConv.TileSize(two, pooled: false, oneThread: true));
        Assert.Equal(2, WinogradConv.TileSize(two, pooled: true, oneThread: true));
        var x = new float[4 * 64 * 31 * 24];
        var y = new float[4 * 64 * 15 * 24];
        var error = Assert.Throws<ArgumentException>(() =>
        {
            fixed (float* px = x, py = y) WinogradConv.Forward(px, weights, null, py, p, null, 0, pooled: true);
        });
        Assert.Contains("without a pool", error.Message);
    }

    /// <summary>
    /// A 2 x 1 max pool of stride 2 x 1 after a Winograd convolution (and its residual and ReLU) is applied as the tiles'
    /// two output rows are stored: maps of even and odd height (the last row dropped), two tile rows per sample (120
    /// tiles: enough with a pool, not without), against eager and on one thread as on two; a 2 x 2 pool is left to the
    /// implicit GEMM.
    /// </summary>
    [Theory]
    [InlineData(31, 24, 2, 1)]
    [InlineData(8, 17, 9, 1)]
    [InlineData(4, 40, 3, 2)]
    // Samples in the lanes (narrow maps, 32 samples or more, by F(3x3, 3x3)): MNIST's 3 x 6 map, and an odd height, 32 +
    // 16 samples.
    [InlineData(3, 6, 256, 1)]
    [InlineData(5, 6, 48, 1)]
    public void ATwoByOnePoolIsAppliedAsWinogradStoresItsRows(int h, int w, int batch, int poolWidth)
    {
        var g = new Generator(47);
        var net = new Sequential(
            new Conv2d(6, 12, 1, bias: true, generator: g),
            new PooledResidual(12, g, poolWidth));
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([batch, 6, h, w], g);
        var (plan, _) = CompileAndCompare(net, x);
        int savedThreads = CpuThreading.Threads;
        try
        {
            CpuThreading.Threads = 1;
            Assert.Equal(plan.Run(x).ToArray(), CompileAndCompare(net, x).Plan.Run(x).ToArray());
        }
        finally
        {
            CpuThreading.Threads = savedThreads;
        }
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: Winograd is 512-bit only (the plan ran the implicit GEMM or im2col).");
        string pooled = Assert.Single(plan.Description, d => d.Contains("max pool", StringComparison.Ordinal));
        int tile = (w + 1) / 2 < 8 ? 3 : 2;
        Assert.Equal(poolWidth == 1, pooled.EndsWith($"(Winograd F({tile}x{tile}, 3x3))", StringComparison.Ordinal));
    }

    /// <summary>
    /// A NaN input comes out NaN wherever eager's does. Winograd also spreads it to the rest of each 2 x 2 tile whose
    /// 4 x 4 patch holds it (the transforms mix the whole patch), so those outputs may be NaN too; every other output
    /// matches eager.
    /// </summary>
    [Fact]
    public void ANaNInputSpreadsNoFurtherThanTheWinogradTilesThatReadIt()
    {
        var g = new Generator(53);
        var net = new Sequential(new Conv2d(4, 8, 3, padding: 1, bias: true, generator: g), new ReLU());
        const int h = 9, w = 20, row = 4, column = 7;
        var x = Tensor.Randn([3, 4, h, w], g);
        x.AsSpan()[(1 * 4 + 2) * h * w + row * w + column] = float.NaN;
        net.Eval();
        float[] expected;
        using (Autograd.Autograd.NoGrad()) expected = net.Call(x).ToArray();
        var plan = CpuInferencePlan.Compile(net, x.ShapeArray());
        var actual = plan.Run(x).ToArray();
        for (int i = 0; i < expected.Length; i++)
        {
            int n = i / (8 * h * w), oh = i / w % h, ow = i % w;
            // Output (oh, ow) is in the tile (oh / 2, ow / 2), whose patch spans rows and columns 2 t - 1 .. 2 t + 2.
            bool patchReads = n == 1 && Math.Abs(oh / 2 * 2 + 0.5 - row) <= 1.5 && Math.Abs(ow / 2 * 2 + 0.5 - column) <= 1.5;
            if (float.IsNaN(expected[i])) Assert.True(float.IsNaN(actual[i]), $"output {i}: eager NaN, plan {actual[i]}");
            else if (!(patchReads && float.IsNaN(actual[i]))) Assert.True(MathF.Abs(expected[i] - actual[i]) <= 1e-4f, $"output {i}: eager {expected[i]}, plan {actual[i]}");
        }
        Assert.Contains(expected, float.IsNaN);
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: Winograd is 512-bit only (the plan ran the implicit GEMM or im2col).");
        Assert.EndsWith("(Winograd F(2x2, 3x3))", plan.Description[0]);
    }

    /// <summary>
    /// The implicit GEMM's steps fill each full panel while multiplying its first tile of output channels
    /// (<see cref="ImplicitGemmConv.FillsWhileMultiplying"/>): the same bits as the panel filled on its own, with the
    /// epilogue stored from registers (bias, residual, ReLU) or after a first tile of fewer than 8 channels (5, 7), later
    /// tiles of 5 and 3 (13 = 8 + 5, 19 = 8 + 8 + 3), a fused 2 x 1 pool, and one sample's map whose output channels two
    /// threads share; Winograd off, so every 3x3 step is an implicit GEMM, and strips off, which would take every one of
    /// up to 24 channels and fill no panel.
    /// </summary>
    [Theory]
    [InlineData(3, 8, 2, 6, 6, false)]
    [InlineData(3, 5, 4, 6, 6, false)]
    [InlineData(2, 7, 1, 15, 24, true)]
    [InlineData(4, 13, 2, 7, 24, true)]
    [InlineData(5, 19, 1, 31, 24, true)]
    [InlineData(6, 40, 1, 15, 24, false)]
    public void FillingThePanelWhileMultiplyingKeepsThePlansBits(int cin, int cout, int batch, int h, int w, bool pool)
    {
        var g = new Generator(53);
        var layers = new List<Module>
        {
            new Conv2d(cin, cout, 3, padding: 1, bias: true, generator: g),
            new BatchNorm2d(cout),
            new ReLU(),
            new ResidualBlock(cout, cout, g),
        };
        if (pool) layers.Add(new MaxPool2d((2, 1), (2, 1)));
        var net = new Sequential([.. layers]);
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([batch, cin, h, w], g);
        WinogradConv.Enabled = false;
        ImplicitGemmConv.Strips = false;
        try
        {
            var (plan, _) = CompileAndCompare(net, x);
            var filling = plan.Run(x).ToArray();
            ImplicitGemmConv.FillsWhileMultiplying = false;
            Assert.Equal(CompileAndCompare(net, x).Plan.Run(x).ToArray(), filling);
            if (!Gemm.Runs512 && !Gemm.Runs256) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plan ran im2col, not the implicit GEMM.");
            Assert.Contains(plan.Description, d => d.Contains("3x3", StringComparison.Ordinal) && d.EndsWith("(implicit GEMM)", StringComparison.Ordinal));
        }
        finally
        {
            WinogradConv.Enabled = true;
            ImplicitGemmConv.FillsWhileMultiplying = true;
            ImplicitGemmConv.Strips = true;
        }
    }

    /// <summary>conv 3x3 (or <c>kernel</c>) + batch norm, plus the input, ReLU, then a max pool of 2 x <c>poolWidth</c>: CP-ResNet's pooled block end.</summary>
    private sealed class PooledResidual : Module
    {
        private readonly Conv2d _conv;
        private readonly BatchNorm2d _bn;
        private readonly MaxPool2d _pool;

        public PooledResidual(int channels, Generator g, int poolWidth, int kernel = 3)
        {
            _conv = RegisterModule("conv", new Conv2d(channels, channels, kernel, padding: kernel / 2, bias: false, generator: g));
            _bn = RegisterModule("bn", new BatchNorm2d(channels));
            _pool = RegisterModule("pool", new MaxPool2d((2, poolWidth), (2, poolWidth)));
        }

        public override Tensor Forward(Tensor x) => _pool.Call(_bn.Call(_conv.Call(x)).Add(x).Relu());
    }

    /// <summary>
    /// A 1x1 with batch norm, residual, ReLU and a 2 x 1 max pool on 6 x 6 maps (MNIST's stage-1 step) runs plane-wise (<see cref="PlanePointwiseConv.ForwardChannelMajor"/>), its epilogue and pool in registers: eager's
    /// result, and the bits of the same plan compiled with the path off (the implicit GEMM with its fused epilogue and
    /// pool, or at 256 bits its epilogue pass and a pooling step), at each vector width the CPU has. Above batch 1 only
    /// steps of at most 31 output channels run plane-wise, and only with AVX-512; 32 stay with the implicit GEMM.
    /// </summary>
    [Theory]
    [InlineData(19, 1, true)]
    [InlineData(32, 1, true)]
    [InlineData(19, 2, true)]
    [InlineData(31, 3, true)]
    [InlineData(32, 2, false)]
    public void PointwiseStepsOnOneSamplesSmallMapRunPlaneWise(int channels, int batch, bool planeWise)
    {
        var g = new Generator(53);
        var net = new Sequential(
            new Conv2d(channels, channels, 3, padding: 1, bias: false, generator: g),
            new BatchNorm2d(channels),
            new ReLU(),
            new PooledResidual(channels, g, poolWidth: 1, kernel: 1));
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([batch, channels, 6, 6], g);
        foreach (var kind in new[] { Gemm.Best, Gemm.KernelKind.Vector256 }.Distinct().Where(kk => kk <= Gemm.Best))
            ConvPathRuns.WithKernels(kind, () =>
            {
                var (plan, _) = CompileAndCompare(net, x);
                float[] actual = plan.Run(x).ToArray();
                var off = CompileWithoutPlaneWiseKernels(net, x);
                Assert.Equal(ConvPathRuns.Bits(off.Run(x).ToArray()), ConvPathRuns.Bits(actual));
                Assert.DoesNotContain(off.Description, d => d.Contains("plane-wise", StringComparison.Ordinal));
                if (!Gemm.Runs512 && !Gemm.Runs256) return;
                // At 256 bits only batch 1 runs plane-wise, and a pool fuses only into the plane-wise kernel: the implicit
                // GEMM's is a step of its own.
                bool here = planeWise && (Gemm.Runs512 || batch == 1);
                var step = plan.Description.Where(d => d.Contains("max pool", StringComparison.Ordinal)).ToArray();
                Assert.Equal(here, Assert.Single(step).Contains("(plane-wise)", StringComparison.Ordinal));
                Assert.Equal(!here && Gemm.Runs512, step[0].Contains("(implicit GEMM)", StringComparison.Ordinal));
            });
        if (!Gemm.Runs512 && !Gemm.Runs256)
            Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plan ran im2col, not the plane-wise kernel.");
    }

    /// <summary>
    /// 3x3 steps on one sample's maps six columns wide (MNIST batch 1's stage 1: 6 x 6, and 3 x 6 with the residual and
    /// a 2 x 1 pool that drops the third row) run plane-wise (<see cref="PlaneConv3x3"/>), their epilogue and pool in
    /// registers: eager's result, and the bits of the same plan compiled with the plane-wise kernels off (the implicit
    /// GEMM with its fused epilogue and pool, or at 256 bits its epilogue pass and a pooling step), at each vector width
    /// the CPU has (at 256 bits only the pooled step runs plane-wise). At batch 2 the steps stay with the implicit GEMM.
    /// </summary>
    [Theory]
    [InlineData(19, 6, 1, true)]
    [InlineData(32, 6, 1, true)]
    [InlineData(19, 3, 1, true)]
    [InlineData(38, 3, 1, true)]
    [InlineData(19, 6, 2, false)]
    public void ThreeByThreeStepsOnOneSamplesSmallMapRunPlaneWise(int channels, int rows, int batch, bool planeWise)
    {
        var g = new Generator(59);
        var net = new Sequential(
            new Conv2d(channels, channels, 3, padding: 1, bias: false, generator: g),
            new BatchNorm2d(channels),
            new ReLU(),
            new PooledResidual(channels, g, poolWidth: 1));
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([batch, channels, rows, 6], g);
        foreach (var kind in new[] { Gemm.Best, Gemm.KernelKind.Vector256 }.Distinct().Where(kk => kk <= Gemm.Best))
            ConvPathRuns.WithKernels(kind, () =>
            {
                // At 256 bits the unpooled 3 x 6 step goes to the implicit GEMM in both plans: with the plane-wise kernels
                // off, the narrow-map kernel (which sums taps outer) would take the pooled one too.
                NarrowMapConv.Enabled = Gemm.Runs512;
                CpuInferencePlan plan, off;
                try
                {
                    (plan, _) = CompileAndCompare(net, x);
                    off = CompileWithoutPlaneWiseKernels(net, x);
                }
                finally
                {
                    NarrowMapConv.Enabled = true;
                }
                Assert.Equal(ConvPathRuns.Bits(off.Run(x).ToArray()), ConvPathRuns.Bits(plan.Run(x).ToArray()));
                Assert.DoesNotContain(off.Description, d => d.Contains("plane-wise", StringComparison.Ordinal));
                if (!Gemm.Runs512 && !Gemm.Runs256) return;
                // The pooled step always; the first only on 6 x 6 with AVX-512 (on 3 x 6, 18 positions, mixed lanes take
                // it, or at 256 bits here the implicit GEMM; at 256 bits only pooled steps run plane-wise).
                var pooled = plan.Description.Where(d => d.Contains("max pool", StringComparison.Ordinal)).ToArray();
                Assert.Equal(planeWise, Assert.Single(pooled).Contains("(plane-wise)", StringComparison.Ordinal));
                Assert.Equal(planeWise && rows == 6 && Gemm.Runs512 ? 2 : planeWise ? 1 : 0, plan.Description.Count(d => d.Contains("(plane-wise)", StringComparison.Ordinal)));
            });
        if (!Gemm.Runs512 && !Gemm.Runs256)
            Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plan ran im2col, not the plane-wise kernel.");
    }

    /// <summary>The plan compiled with <see cref="PlanePointwiseConv"/> and <see cref="PlaneConv3x3"/> off.</summary>
    private static CpuInferencePlan CompileWithoutPlaneWiseKernels(Module net, Tensor x)
    {
        PlanePointwiseConv.Enabled = false;
        PlaneConv3x3.Enabled = false;
        try
        {
            return CpuInferencePlan.Compile(net, x.ShapeArray());
        }
        finally
        {
            PlanePointwiseConv.Enabled = true;
            PlaneConv3x3.Enabled = true;
        }
    }

    /// <summary>
    /// Panels of at most 16 columns write bias, residual and activation as their transposed tiles go back (no
    /// epilogue pass): Hardswish and ReLU, with and without a residual, with and without a max pool after, and with
    /// 38 output channels (the second panel of transposed weights partly used), against the eager forward.
    /// </summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void NarrowPanelsApplyTheEpilogueAsTheyWriteBack(bool hardswish, bool pool)
    {
        var g = new Generator(29);
        var layers = new List<Module>
        {
            new Conv2d(19, 38, 3, padding: 1, bias: true, generator: g),
            new BatchNorm2d(38),
            hardswish ? new Hardswish() : new ReLU(),
            new ResidualBlock(38, 38, g),
        };
        if (pool) layers.Add(new MaxPool2d((2, 1), (2, 1)));
        var net = new Sequential([.. layers]);
        RandomizeStatistics(net, g);
        // Without a pool these maps (12 positions) would go to the narrow-map kernel, and six columns wide to the
        // plane-wise 3x3.
        NarrowMapConv.Enabled = false;
        PlaneConv3x3.Enabled = false;
        CpuInferencePlan plan;
        try
        {
            (plan, _) = CompileAndCompare(net, Tensor.Randn([1, 19, 2, 6], g));
        }
        finally
        {
            NarrowMapConv.Enabled = true;
            PlaneConv3x3.Enabled = true;
        }
        if (!Gemm.Runs512 && !Gemm.Runs256) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plan ran im2col, not the implicit GEMM's narrow panels.");
        Assert.Contains("implicit GEMM", plan.Description[0]);
    }

    /// <summary>
    /// The narrow-map kernel keeps the table of where each row reads (built for the input it last saw): a plan whose first
    /// step reads the caller's memory gives each of several inputs, in arrays at different addresses, the eager result,
    /// and the same input again the same bits.
    /// </summary>
    [Fact]
    public void NarrowMapsReadEachNewInputWhereItLies()
    {
        var g = new Generator(61);
        var net = new Sequential(new Conv2d(8, 12, 3, padding: 1, bias: true, generator: g), new BatchNorm2d(12), new ReLU());
        RandomizeStatistics(net, g);
        net.Eval();
        var plan = CpuInferencePlan.Compile(net, [1, 8, 3, 6]);
        if (Avx512F.IsSupported) Assert.Contains("narrow map", plan.Description[0]);
        var first = plan.Run(Tensor.Randn([1, 8, 3, 6], g)).ToArray();
        for (int i = 0; i < 3; i++)
        {
            var x = Tensor.Randn([1, 8, 3, 6], g);
            float[] expected;
            using (Autograd.Autograd.NoGrad()) expected = net.Call(x).ToArray();
            AssertMatchesEager(expected, plan.Run(x).ToArray());
            var copy = new float[8 * 18 + 5];
            x.AsSpan().CopyTo(copy.AsSpan(5));
            var output = new float[12 * 18];
            plan.Run(copy.AsSpan(5), output);
            Assert.Equal(plan.Run(x).ToArray(), output);
        }
        Assert.NotEqual(first, plan.Run(Tensor.Randn([1, 8, 3, 6], g)).ToArray());
    }

    /// <summary>
    /// Maps of at most 24 positions run position-major (<see cref="NarrowMapConv"/>): a stack of residual blocks
    /// (identity and 1x1 shortcuts, so residuals written by the same kernel), 38 and 76 channels (lanes computed as 40
    /// and 32 + 48), two samples of 2 x 4 (taps that would cross from one sample into the other read zeros), a single
    /// position, 18 and 24 positions, an unfused batch norm after them, which needs its input back channel-major, and
    /// the global average pool, which reads the last narrow map where it lies. On one sample's 3 x 6 map the 3x3 steps
    /// of 19 channels (16 + 3) run in mixed lanes (<see cref="MixedLaneConv3x3"/>), position-major too: the first reads
    /// the input channel-major, the others the previous step's output position-major, the block's second with its
    /// residual; those of 38 channels (32 + 6) stay on the narrow map. (The last 1x1 has a ReLU, so the average cannot
    /// run before it: see <see cref="TheHeadsConvolutionRunsAfterTheAverage"/>.)
    /// </summary>
    [Theory]
    [InlineData(1, 1, 6, 19, 38, false, 0)]
    [InlineData(1, 1, 6, 32, 64, true, 0)]
    [InlineData(2, 2, 4, 5, 21, true, 0)]
    [InlineData(1, 4, 4, 7, 12, false, 0)]
    [InlineData(1, 1, 1, 3, 9, false, 0)]
    // MNIST's 3 x 6 maps at batch 1 (18 positions: three groups of 6 rows), and 24 positions (three groups of 8).
    [InlineData(1, 3, 6, 19, 19, true, 3)]
    [InlineData(1, 4, 6, 32, 32, false, 0)]
    public void NarrowMapsRunPositionMajor(int batch, int h, int w, int cin, int channels, bool hardswish, int mixedLanes)
    {
        var g = new Generator(31);
        var net = new Sequential(
            new Conv2d(cin, channels, 3, padding: 1, bias: true, generator: g),
            new BatchNorm2d(channels),
            hardswish ? new Hardswish() : new ReLU(),
            new ResidualBlock(channels, channels, g),
            new ResidualBlock(channels, 2 * channels, g),
            new BatchNorm2d(2 * channels),
            new Conv2d(2 * channels, 10, 1, bias: false, generator: g),
            new ReLU(),
            new AdaptiveAvgPool2d(1),
            new Flatten());
        RandomizeStatistics(net, g);
        var (plan, _) = CompileAndCompare(net, Tensor.Randn([batch, cin, h, w], g));
        if (!Gemm.Runs512 && !Gemm.Runs256) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plan ran im2col, not the narrow-map kernel.");
        // Mixed lanes are 512-bit only: at 256 bits the narrow-map kernel takes their steps too.
        if (!Gemm.Runs512) mixedLanes = 0;
        Assert.Equal(7 - mixedLanes, plan.Description.Count(d => d.Contains("(narrow map", StringComparison.Ordinal)));
        Assert.Equal(mixedLanes, plan.Description.Count(d => d.Contains("(mixed lanes)", StringComparison.Ordinal)));
        // The unfused batch norm reads channel-major: one move back before it; the global average pool needs none.
        Assert.Equal(1, plan.Description.Count(d => d.StartsWith("to channel-major", StringComparison.Ordinal)));
        Assert.Equal(batch * h * w == 1 ? "average pool 1x1/1x1 (position-major)" : $"average pool {h}x{w}/{h}x{w} (position-major)", plan.Description[^1]);
    }

    /// <summary>
    /// A 1x1 convolution (with its batch norm folded in) whose output only an adaptive average pool reads, CP-ResNet's
    /// head, runs after the average on the pooled map where the windows hold at least 16 positions: mean(W x + b) =
    /// W mean(x) + b. On a narrow map at batch 1 (the average reads it position-major), on mel's last map at batches 1
    /// and 3, and to a 2 x 3 output (4 x 4 windows, the general average kernel); the convolution then multiplies one
    /// column per pooled cell, channel-major, so no move follows it. Windows of fewer positions (MNIST's 1 x 6 map,
    /// 2 x 6) keep the order as traced. The results match eager either way.
    /// </summary>
    [Theory]
    [InlineData(1, 4, 6, 38, 1, 1, true, true)]
    [InlineData(1, 7, 24, 76, 1, 1, false, true)]
    [InlineData(3, 7, 24, 32, 1, 1, false, true)]
    [InlineData(1, 8, 12, 19, 2, 3, false, true)]
    [InlineData(1, 1, 6, 38, 1, 1, true, false)]
    [InlineData(3, 2, 6, 19, 1, 1, false, false)]
    public void TheHeadsConvolutionRunsAfterTheAverage(int batch, int h, int w, int channels, int outH, int outW, bool narrow, bool moved)
    {
        var g = new Generator(59);
        var net = new Sequential(
            new Conv2d(3, channels, 3, padding: 1, bias: true, generator: g),
            new BatchNorm2d(channels),
            new ReLU(),
            new ResidualBlock(channels, channels, g),
            new Conv2d(channels, 10, 1, bias: true, generator: g),
            new BatchNorm2d(10),
            new AdaptiveAvgPool2d((outH, outW)),
            new Flatten());
        RandomizeStatistics(net, g);
        var (plan, _) = CompileAndCompare(net, Tensor.Randn([batch, 3, h, w], g));
        int kh = h / outH, kw = w / outW;
        if (!Gemm.Runs512 && !Gemm.Runs256) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plan ran im2col, and the narrow-map cases' layout differs.");
        string pool = $"average pool {kh}x{kw}/{kh}x{kw}" + (narrow ? " (position-major)" : "");
        if (moved)
        {
            Assert.Equal(pool, plan.Description[^2]);
            Assert.Equal($"conv {channels}->10 1x1 + bn (implicit GEMM)", plan.Description[^1]);
        }
        else
        {
            Assert.True(plan.Description[^2].StartsWith($"conv {channels}->10 1x1 + bn", StringComparison.Ordinal), string.Join("; ", plan.Description));
            Assert.Equal(pool, plan.Description[^1]);
        }
    }

    /// <summary>
    /// The average runs after a 1x1 convolution as traced where swapping them would change the result or other readers:
    /// the convolution's output read twice (by the pool and by a ReLU), or an activation between them.
    /// </summary>
    [Fact]
    public void TheAverageStaysAfterAConvolutionItCannotPass()
    {
        var g = new Generator(61);
        var net = new TwoPooledReaders(g);
        RandomizeStatistics(net, g);
        var (plan, _) = CompileAndCompare(net, Tensor.Randn([2, 8, 5, 6], g));
        var steps = plan.Description;
        Assert.StartsWith("conv 8->8 1x1", steps[0]);
        Assert.Equal(3, steps.Count(d => d.StartsWith("average pool 5x6/5x6", StringComparison.Ordinal)));
        Assert.Equal(2, steps.Count(d => d.StartsWith("conv 8->8 1x1", StringComparison.Ordinal)));
        // A convolution moved behind its average would follow a pool step.
        for (int i = 0; i + 1 < steps.Count; i++)
            if (steps[i].StartsWith("average pool", StringComparison.Ordinal))
                Assert.False(steps[i + 1].StartsWith("conv", StringComparison.Ordinal), string.Join("; ", steps));
    }

    /// <summary>
    /// A 3x3 step in mixed lanes gives the bits of the implicit GEMM (the plan with the narrow-map kernels off), residual
    /// block included; with <see cref="MixedLaneConv3x3"/> off the narrow map takes its steps again.
    /// </summary>
    [Theory]
    [InlineData(19, 3, 6)]
    [InlineData(20, 2, 5)]
    public void MixedLanesGiveTheImplicitGemmsBits(int channels, int h, int w)
    {
        var g = new Generator(47);
        var net = new Sequential(
            new Conv2d(channels, channels, 3, padding: 1, bias: true, generator: g),
            new BatchNorm2d(channels),
            new ReLU(),
            new ResidualBlock(channels, channels, g));
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([1, channels, h, w], g);
        var (plan, _) = CompileAndCompare(net, x);
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the mixed-lane kernel is 512-bit only.");
        Assert.Equal(3, plan.Description.Count(d => d.Contains("(mixed lanes)", StringComparison.Ordinal)));
        CpuInferencePlan implicitGemm, narrow;
        try
        {
            NarrowMapConv.Enabled = false;
            implicitGemm = CpuInferencePlan.Compile(net, x.ShapeArray());
            NarrowMapConv.Enabled = true;
            MixedLaneConv3x3.Enabled = false;
            narrow = CpuInferencePlan.Compile(net, x.ShapeArray());
        }
        finally
        {
            NarrowMapConv.Enabled = true;
            MixedLaneConv3x3.Enabled = true;
        }
        Assert.Equal(3, implicitGemm.Description.Count(d => d.Contains("(implicit GEMM)", StringComparison.Ordinal)));
        Assert.Equal(ConvPathRuns.Bits(implicitGemm.Run(x).ToArray()), ConvPathRuns.Bits(plan.Run(x).ToArray()));
        Assert.Equal(3, narrow.Description.Count(d => d.Contains("(narrow map)", StringComparison.Ordinal)));
    }

    /// <summary>
    /// A narrow map's residual written channel-major (by a convolution with a fused pool, which the narrow-map kernel
    /// does not run) is moved to position-major for the block that adds it; a convolution whose output is viewed under
    /// another shape (Flatten at batch 1) keeps the channel-major implicit GEMM, so the view reads what it expects.
    /// </summary>
    [Fact]
    public void NarrowMapsMoveBetweenLayoutsWhereNeeded()
    {
        var g = new Generator(37);
        var net = new Sequential(
            new Conv2d(8, 8, 3, padding: 1, bias: true, generator: g),
            new MaxPool2d((2, 1), (2, 1)),
            new ResidualBlock(8, 8, g),
            new Conv2d(8, 4, 1, bias: true, generator: g),
            new Flatten());
        RandomizeStatistics(net, g);
        var (plan, _) = CompileAndCompare(net, Tensor.Randn([1, 8, 2, 6], g));
        // Without AVX-512 the plane-wise 3x3 fuses the pool.
        if (!Gemm.Runs512 && !Gemm.Runs256) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: no pool fuses into a convolution, so the residual is not written channel-major.");
        Assert.Contains("to position-major (8 channels x 6 positions)", plan.Description);
        Assert.Contains("conv 8->8 3x3 + bn + residual + relu (narrow map, 3 of 9 taps)", plan.Description);
        Assert.Equal("conv 8->4 1x1 (implicit GEMM)", plan.Description[^1]);
    }

    /// <summary>A narrow map read by two element-wise steps is moved back to channel-major once, and both read that copy.</summary>
    [Fact]
    public void APositionMajorValueIsMovedBackOnceForAllItsReaders()
    {
        var g = new Generator(43);
        var net = new TwoReaders(g);
        var (plan, _) = CompileAndCompare(net, Tensor.Randn([1, 8, 1, 6], g));
        if (!Gemm.Runs512 && !Gemm.Runs256) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plan ran im2col, not the narrow-map kernel.");
        Assert.Equal(
        [
            "conv 8->8 1x1 + relu (narrow map)",
            "to channel-major (8 channels x 6 positions)",
            "element-wise + hardswish",
            "element-wise + sigmoid",
            "add",
        ], plan.Description);
    }

    /// <summary>A plan whose output a narrow map writes hands it back channel-major (NCHW), as eager does.</summary>
    [Fact]
    public void APositionMajorOutputIsMovedBackBeforeItLeavesThePlan()
    {
        var g = new Generator(47);
        var net = new Sequential(new Conv2d(4, 5, 1, bias: true, generator: g));
        var (plan, _) = CompileAndCompare(net, Tensor.Randn([2, 4, 1, 6], g));
        if (!Gemm.Runs512 && !Gemm.Runs256) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plan ran im2col, not the narrow-map kernel.");
        Assert.Equal(["conv 4->5 1x1 (narrow map)", "to channel-major (5 channels x 12 positions)"], plan.Description);
    }

    /// <summary>
    /// Consecutive convolutions on a map of 160 to 512 columns (a single mel sample's last maps) run as a column chain,
    /// each thread on its own columns from the first to the last: a 3x3 first member that reads the plan's input around
    /// its columns, channel counts that fill no micro-panel (19, 38, 76), a value read by two members (one a shortcut),
    /// a residual made inside the chain, an activation other than ReLU, and a member's output read again after the chain
    /// by a 3x3 convolution, which cannot join (its taps would read the other threads' columns).
    /// Each must match eager, and give the same bits on one, two and three threads (other column shares, other
    /// per-thread blocks). <paramref name="members"/>: the steps expected in the chain (the 3x3 head joins where the
    /// implicit GEMM runs it, not where Winograd does; 529 columns form no chain; the last 1x1, which only the global
    /// average reads, runs after the average on one column per sample and joins none).
    /// </summary>
    [Theory]
    [InlineData(1, 7, 24, 19, 38, 76, 5)]
    [InlineData(1, 7, 24, 32, 64, 128, 5)]
    [InlineData(2, 9, 20, 5, 12, 7, 5)]
    [InlineData(1, 20, 25, 8, 16, 9, 4)]
    [InlineData(1, 23, 23, 8, 16, 9, 0)]
    public void ConvolutionsOnSmallMapsRunAsColumnChains(int batch, int h, int w, int c1, int c2, int c3, int members)
    {
        var g = new Generator(53);
        var net = new ChainNet(c1, c2, c3, g);
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([batch, 3, h, w], g);
        var (plan, expected) = CompileAndCompare(net, x);
        if (!Gemm.Runs512 && !Gemm.Runs256) Assert.Skip("This CPU has neither AVX-512 nor AVX2 and FMA: the plan ran im2col, which forms no column chains.");
        var inChain = plan.Description.Where(d => d.Contains("column chain", StringComparison.Ordinal)).ToArray();
        // Winograd is 512-bit only: at 256 bits the implicit GEMM runs the 20 x 25 map's 3x3 head, which joins.
        if (!Gemm.Runs512 && h == 20) members++;
        Assert.Equal(members, inChain.Length);
        Assert.DoesNotContain(plan.Description, d => d.StartsWith($"conv {c2}->{c3} 3x3", StringComparison.Ordinal) && d.Contains("chain", StringComparison.Ordinal));
        int last1x1 = plan.Description.ToList().IndexOf($"conv {c3}->{c3} 1x1 (implicit GEMM)");
        Assert.True(last1x1 > 0, string.Join("; ", plan.Description));
        Assert.StartsWith("average pool", plan.Description[last1x1 - 1]);
        int savedThreads = CpuThreading.Threads;
        try
        {
            var bits = new List<float[]>();
            foreach (int threads in new[] { 1, 2, 3 })
            {
                CpuThreading.Threads = threads;
                bits.Add(plan.Run(x).ToArray());
            }
            Assert.Equal(bits[0], bits[1]);
            Assert.Equal(bits[0], bits[2]);
            AssertMatchesEager(expected, bits[0]);
        }
        finally
        {
            CpuThreading.Threads = savedThreads;
        }
        // The profile names every member once, in order, and times each.
        var profile = plan.Profile(x.ToArray(), 3);
        Assert.Equal(plan.Description, profile.Select(p => p.Step));
        Assert.All(profile, p => Assert.True(p.Milliseconds > 0, p.Step));
    }

    /// <summary>
    /// A single sample's stem block (CP-ResNet's first: stem with its pool, 3x3, then 1x1 with the stem's output as
    /// residual and a 2 x 1 pool) runs in row bands, each thread on its own rows through the three steps, and so does the
    /// block after it (3x3, then 3x3 with the block's input as residual and a 2 x 1 pool) where it follows: on the mel
    /// map (31 x 24 after the stem, 15 x 24 pooled) of the big and the pruned model, an odd height and width (33 x 17),
    /// three threads' bands (12 + 8 + 11 rows, pooled 6 + 4 + 5), and batch 2 or a map too narrow for the Winograd path's
    /// bands, which keep their steps apart. The bits are those of the plan without bands, on any number of threads.
    /// </summary>
    [Theory]
    [InlineData(1, 128, 100, 32, 2, true, 5)]
    [InlineData(1, 128, 100, 19, 2, false, 3)]
    [InlineData(1, 128, 100, 19, 2, true, 5)]
    [InlineData(1, 134, 70, 8, 2, true, 5)]
    [InlineData(1, 128, 100, 19, 3, true, 5)]
    [InlineData(2, 128, 100, 8, 2, true, 0)]
    [InlineData(1, 128, 60, 8, 2, true, 0)]
    public void StemBlocksAtBatchOneRunInRowBands(int batch, int h, int w, int channels, int threads, bool secondBlock, int members)
    {
        var g = new Generator(59);
        var net = new StemBlockNet(channels, secondBlock, g);
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([batch, 1, h, w], g);
        int savedThreads = CpuThreading.Threads;
        try
        {
            CpuThreading.Threads = threads;
            var (plan, expected) = CompileAndCompare(net, x);
            if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: row bands run the 512-bit direct stem.");
            Assert.Equal(members, plan.Description.Count(d => d.Contains("row bands", StringComparison.Ordinal)));
            if (members > 0)
            {
                Assert.EndsWith("(direct, row bands)", plan.Description[0]);
                Assert.EndsWith("(Winograd F(2x2, 3x3), row bands)", plan.Description[1]);
                Assert.EndsWith("max pool 2x1/2x1 (implicit GEMM, row bands)", plan.Description[2]);
            }
            if (members == 5)
            {
                Assert.EndsWith("3x3 + bn + relu (implicit GEMM, row bands)", plan.Description[3]);
                Assert.EndsWith("residual + relu + max pool 2x1/2x1 (Winograd F(2x2, 3x3), row bands)", plan.Description[4]);
            }
            CpuInferencePlan.RowBandsEnabled = false;
            CpuInferencePlan apart;
            try
            {
                apart = CpuInferencePlan.Compile(net, x.ShapeArray());
            }
            finally
            {
                CpuInferencePlan.RowBandsEnabled = true;
            }
            Assert.DoesNotContain(apart.Description, d => d.Contains("row bands", StringComparison.Ordinal));
            var bits = apart.Run(x).ToArray();
            foreach (int t in new[] { 1, 2, 3 })
            {
                CpuThreading.Threads = t;
                Assert.Equal(bits, plan.Run(x).ToArray());
            }
            AssertMatchesEager(expected, bits);
            // The profile names every member once, in order, and times each.
            var profile = plan.Profile(x.ToArray(), 3);
            Assert.Equal(plan.Description, profile.Select(p => p.Step));
            Assert.All(profile, p => Assert.True(p.Milliseconds > 0, p.Step));
        }
        finally
        {
            CpuThreading.Threads = savedThreads;
        }
    }

    /// <summary>
    /// A batch of at least 8 samples per thread runs as one plan per thread over its share of the samples, where those
    /// plans choose the whole batch's kernels: the bits of one plan over the whole batch, on 1, 2 and 3 threads, in even
    /// and uneven shares (100 = 33 + 33 + 34, 17 = 8 + 9); 15 samples on two threads stay one plan. The profile names
    /// every step once and times it.
    /// </summary>
    [Theory]
    [InlineData(2, 15, 1)]
    [InlineData(2, 17, 2)]
    [InlineData(2, 64, 2)]
    [InlineData(3, 100, 3)]
    [InlineData(2, 256, 2)]
    public void BatchesRunAsSampleShardsWithTheBitsOfOnePlan(int threads, int batch, int shards)
    {
        var g = new Generator(17);
        var net = ShardedNet(g);
        var x = Tensor.Randn([batch, 1, 28, 28], g);
        CpuThreading.Threads = threads;
        CpuInferencePlan.ShardingEnabled = false;
        var whole = CpuInferencePlan.Compile(net, x.ShapeArray());
        Assert.Equal(1, whole.SampleShards);
        CpuInferencePlan.ShardingEnabled = true;
        var (plan, expected) = CompileAndCompare(net, x);
        Assert.Equal(shards, plan.SampleShards);
        Assert.Equal(whole.Description, plan.Description);
        var bits = whole.Run(x).ToArray();
        AssertMatchesEager(expected, bits);
        AssertRunsWithTheBits(plan, x, bits);
        // Without AVX-512 the plans run im2col, whose shards take smaller pieces to fit the L2 (batch 256's shards of 128
        // samples: pieces of 19), with less than half the whole plan's buffers (there 1.9 against 6.6 MB).
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the buffers' range assumes the 512-bit kernels' pieces.");
        Assert.InRange(plan.BufferBytes, whole.BufferBytes / 2, whole.BufferBytes * 2);
    }

    /// <summary>
    /// <paramref name="plan"/> gives <paramref name="bits"/> for <paramref name="x"/> on 1, 2 and 3 threads, its profile
    /// names and times every step, and a call allocates nothing on the calling thread.
    /// </summary>
    private static void AssertRunsWithTheBits(CpuInferencePlan plan, Tensor x, float[] bits)
    {
        foreach (int t in new[] { 1, 2, 3 })
        {
            CpuThreading.Threads = t;
            Assert.Equal(bits, plan.Run(x).ToArray());
        }
        var profile = plan.Profile(x.ToArray(), 2);
        Assert.Equal(plan.Description, profile.Select(p => p.Step));
        Assert.All(profile, p => Assert.True(p.Milliseconds > 0, p.Step));
        var input = x.ToArray();
        var output = new float[bits.Length];
        plan.Run(input, output);
        // A run allocates nothing once warm. After one warm-up run, one CI run saw the next allocate 5,616 bytes once, which
        // did not recur in isolation: a one-time cost, likely a thread's thread-static scratch sized on its first run of a
        // shard (the calling thread also runs any shard a slow worker has not claimed). So the check takes the least of
        // three runs: a run that allocates every time still fails it.
        long least = long.MaxValue;
        for (int i = 0; i < 3; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            plan.Run(input, output);
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.Equal(0, least);
        Assert.Equal(bits, output);
    }

    /// <summary>
    /// A shard whose maps do not fit the cache runs its samples in pieces, each a plan of its own with the whole batch's
    /// kernels: mel-shaped maps (15 x 24 after the stem, 7 x 24 after the pool; F(3x3, 3x3) on both in pieces of far fewer
    /// than the 256 tiles a threaded step needs), in pieces of 4 (32 = 8 x 4) and of 5 (32 = 4 x 5 + 3 x 4, a second plan
    /// for the last pieces; on three threads 33 = 5 x 5 + 2 x 4 and 34 = 6 x 5 + 4),
    /// give the bits of one plan over the whole batch on 1, 2 and 3 threads, name and time every step, allocate nothing,
    /// and hold less memory.
    /// </summary>
    [Theory]
    [InlineData(2, 64, 4)]
    [InlineData(2, 64, 5)]
    [InlineData(3, 100, 5)]
    public void ShardsRunTheirSamplesInPiecesWithTheBitsOfOnePlan(int threads, int batch, int pieceSamples)
    {
        var g = new Generator(29);
        var net = new StemBlockNet(19, secondBlock: false, g);
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([batch, 1, 64, 100], g);
        CpuThreading.Threads = threads;
        CpuInferencePlan.ShardingEnabled = false;
        var whole = CpuInferencePlan.Compile(net, x.ShapeArray());
        CpuInferencePlan.ShardingEnabled = true;
        CpuInferencePlan.PieceSamples = pieceSamples;
        var (plan, expected) = CompileAndCompare(net, x);
        var bits = whole.Run(x).ToArray();
        AssertMatchesEager(expected, bits);
        Assert.Equal(threads, plan.SampleShards);
        // Shards of one size share out their pieces (on one thread, the first shard's thread takes every piece, the
        // second shard's from its last, with the first shard's plans).
        Assert.Equal(batch % threads == 0, plan.SharesPieces);
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the pieces assume the 512-bit kernels' choices.");
        Assert.Equal(pieceSamples, plan.SamplesPerPiece);
        Assert.Equal(whole.Description, plan.Description);
        Assert.Equal(2, plan.Description.Count(d => d.Contains("F(3x3, 3x3)", StringComparison.Ordinal)));
        Assert.True(plan.BufferBytes < whole.BufferBytes / 2, $"{plan.BufferBytes} bytes of buffers against the whole plan's {whole.BufferBytes}");
        AssertRunsWithTheBits(plan, x, bits);
    }

    /// <summary>
    /// Pieces follow the cache: a shard whose maps fit runs whole; with a cache too small for one sample it runs in the
    /// smallest pieces whose plans keep the whole batch's kernels (the same bits); a piece too small for a kernel (the
    /// samples-in-lanes Winograd's 32 samples, on MNIST's 6 x 6 maps) takes a larger one.
    /// </summary>
    [Fact]
    public void PiecesFollowTheCacheAndTheKernels()
    {
        var g = new Generator(31);
        var net = ShardedNet(g);
        var x = Tensor.Randn([64, 1, 64, 100], g);
        CpuThreading.Threads = 2;
        CpuInferencePlan.CacheBytes = 1L << 40;
        var (roomy, _) = CompileAndCompare(net, x);
        Assert.Equal(2, roomy.SampleShards);
        Assert.Equal(32, roomy.SamplesPerPiece);
        CpuInferencePlan.CacheBytes = 1;
        var (tight, _) = CompileAndCompare(net, x);
        Assert.Equal(roomy.Run(x).ToArray(), tight.Run(x).ToArray());
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the pieces assume the 512-bit kernels' choices.");
        Assert.InRange(tight.SamplesPerPiece, 2, 8);
        CpuInferencePlan.PieceSamples = 4;
        var (mnist, _) = CompileAndCompare(net, Tensor.Randn([64, 1, 28, 28], g));
        Assert.Contains(mnist.Description, d => d.Contains("F(3x3, 3x3)", StringComparison.Ordinal));
        Assert.Equal(32, mnist.SamplesPerPiece);
    }

    /// <summary>
    /// The piece counts a shard tries: the cache's first; then, where its pieces are too small for a kernel, the smaller
    /// counts that cut every shard evenly (one plan a shard), largest first; then halving down to the whole shard, each
    /// count once. Shards of 33, 33 and 34 samples share no count but one.
    /// </summary>
    [Theory]
    [InlineData(new[] { 0, 32, 64 }, 11, new[] { 11, 8, 4, 2, 6, 3, 1 })]
    [InlineData(new[] { 0, 32, 64 }, 16, new[] { 16, 8, 4, 2, 1 })]
    [InlineData(new[] { 0, 33, 66, 100 }, 11, new[] { 11, 6, 3, 2, 1 })]
    [InlineData(new[] { 0, 50, 100 }, 7, new[] { 7, 5, 2, 4, 1 })]
    [InlineData(new[] { 0, 32, 64 }, 1, new[] { 1 })]
    public void ShardsTryEvenPiecesBeforeHalving(int[] start, int first, int[] expected) =>
        Assert.Equal(expected, CpuInferencePlan.PieceCounts(first, start));

    /// <summary>
    /// A shard runs in as many pieces as keep a step's input and output (twice a sample's part of the largest buffer)
    /// within half the cache, two included, and of 64 samples at most: MNIST b256's shards of 128 at the pruned model's
    /// 19 x 6 x 6 floats a sample fit 2 MiB of L2 whole but run in two pieces, as with 1 MiB; the big model's 32 x 6 x 6
    /// in three (then four, by WholeGroups) with 1 MiB; shards of 256, or of tiny samples, in pieces of 64.
    /// </summary>
    [Theory]
    [InlineData(19 * 36 * 4, 128, 2L << 20, 2)]
    [InlineData(19 * 36 * 4, 256, 2L << 20, 4)]
    [InlineData(4, 128, 1L << 40, 2)]
    [InlineData(4, 64, 1L << 40, 1)]
    [InlineData(19 * 36 * 4, 128, 1L << 20, 2)]
    [InlineData(32 * 36 * 4, 128, 1L << 20, 3)]
    [InlineData(32 * 36 * 4, 128, 2L << 20, 2)]
    [InlineData(32 * 744 * 4, 32, 2L << 20, 7)]  // mel b64's shards of 32: 31 x 24 maps of 32 channels
    public void ShardsRunInThePiecesThatFitTheCache(long bytesPerSample, int samples, long cacheBytes, int expected)
    {
        CpuInferencePlan.CacheBytes = cacheBytes;
        Assert.Equal(expected, CpuInferencePlan.Pieces(bytesPerSample, samples));
    }

    /// <summary>
    /// Pieces of more than 32 samples are whole groups of 32 where even pieces can be (Winograd's samples-in-lanes blocks
    /// are 32 samples; a shard of 128 in 3 pieces of 43 left 11 in a second block of 32 lanes): up to twice the pieces.
    /// </summary>
    [Theory]
    [InlineData(128, 3, 4)]   // MNIST b256's shards on a 1 MiB L2: 43 -> 32
    [InlineData(192, 3, 3)]   // 64 each already
    [InlineData(128, 5, 5)]   // 26 each: under 32, as they are
    [InlineData(100, 3, 3)]   // 34 each, and no count up to 6 gives even groups of 32
    [InlineData(96, 2, 3)]    // 48 -> 32
    [InlineData(128, 1, 1)]   // whole
    public void PiecesOfMoreThan32SamplesAreWholeGroupsOf32(int samples, int pieces, int expected) =>
        Assert.Equal(expected, CpuInferencePlan.WholeGroups(samples, pieces));

    /// <summary>
    /// Shards whose pieces would not keep the whole batch's kernels run other even pieces, with the bits of the whole
    /// batch's plan: a shard of 128 MNIST-shaped samples that would run pieces of 43 runs 4 of 32 (the samples-in-lanes
    /// Winograd's blocks); shards of 32 mel-shaped samples asked for pieces of 3, whose last piece of 2 has too few tiles
    /// for the whole batch's F(3x3, 3x3), run 8 even pieces of 4 (one plan a shard), not 6 + 6 + 5 + 5 + 5 + 5 (two).
    /// </summary>
    [Theory]
    [InlineData(256, 28, 28, 43, 32)]
    [InlineData(64, 128, 100, 3, 4)]
    public void ShardsWhosePiecesWouldChangeKernelsTakeEvenPieces(int batch, int h, int w, int pieceSamples, int expected)
    {
        var g = new Generator(41);
        var net = ShardedNet(g);
        var x = Tensor.Randn([batch, 1, h, w], g);
        CpuThreading.Threads = 2;
        CpuInferencePlan.ShardingEnabled = false;
        var whole = CpuInferencePlan.Compile(net, x.ShapeArray());
        CpuInferencePlan.ShardingEnabled = true;
        CpuInferencePlan.PieceSamples = pieceSamples;
        var (plan, expectedOutput) = CompileAndCompare(net, x);
        var bits = whole.Run(x).ToArray();
        AssertMatchesEager(expectedOutput, bits);
        Assert.Equal(2, plan.SampleShards);
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the pieces assume the 512-bit kernels' choices.");
        Assert.Equal(expected, plan.SamplesPerPiece);
        Assert.Equal(whole.Description, plan.Description);
        Assert.Contains(plan.Description, d => d.Contains("F(3x3, 3x3)", StringComparison.Ordinal));
        AssertRunsWithTheBits(plan, x, bits);
    }

    /// <summary>
    /// A batch whose maps have too few tiles of 3 x 3 to share between threads (32 samples' 3 x 20 maps: 224 of the 256)
    /// takes F(2x2, 3x3); its shards, whose one-thread plans could take F(3x3, 3x3), keep F(2x2, 3x3) and the bits.
    /// </summary>
    [Fact]
    public void ShardsKeepTheWholeBatchsWinogradTiles()
    {
        var g = new Generator(37);
        var net = new Sequential(new Conv2d(32, 32, 3, padding: 1, generator: g), new ReLU(), new Conv2d(32, 32, 3, padding: 1, generator: g));
        var x = Tensor.Randn([32, 32, 3, 20], g);
        CpuThreading.Threads = 2;
        var whole = CompileAndCompare(net, x).Plan;
        CpuInferencePlan.ShardingEnabled = true;
        var (plan, _) = CompileAndCompare(net, x);
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: Winograd is 512-bit only (the plan ran the implicit GEMM or im2col).");
        Assert.All(whole.Description, d => Assert.EndsWith("(Winograd F(2x2, 3x3))", d));
        Assert.Equal(2, plan.SampleShards);
        Assert.Equal(whole.Description, plan.Description);
        Assert.Equal(whole.Run(x).ToArray(), plan.Run(x).ToArray());
    }

    /// <summary>
    /// Shards too small for the whole batch's kernels (32 samples take Winograd F(3x3, 3x3) on the 6 x 6 maps, 16 or 24 do
    /// not) leave the batch in one plan, as does a model that cannot be traced at a shard's batch size; one sample, or too
    /// few multiply-adds, is never split.
    /// </summary>
    [Fact]
    public void BatchesWhoseShardsWouldChangeKernelsStayWhole()
    {
        var g = new Generator(19);
        var net = ShardedNet(g);
        CpuThreading.Threads = 2;
        var (plan, _) = CompileAndCompare(net, Tensor.Randn([32, 1, 28, 28], g));
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the plan ran im2col, whose kernels do not depend on the batch.");
        Assert.Contains(plan.Description, d => d.Contains("F(3x3, 3x3)", StringComparison.Ordinal));
        Assert.Equal(1, plan.SampleShards);
        Assert.Equal(1, CompileAndCompare(net, Tensor.Randn([48, 1, 28, 28], g)).Plan.SampleShards);
        Assert.Equal(1, CompileAndCompare(net, Tensor.Randn([1, 1, 28, 28], g)).Plan.SampleShards);
        Assert.Equal(1, CompileAndCompare(Net(g), Tensor.Randn([40, 2, 25, 21], g)).Plan.SampleShards);
        // A model that reshapes to its own batch size cannot be traced at a shard's: it runs as one plan.
        var fixedBatch = new FixedBatchNet(64, g);
        var (whole, _) = CompileAndCompare(fixedBatch, Tensor.Randn([64, 1, 28, 28], g));
        Assert.True(whole.UsesWorkers, "the test's pass must be large enough for sample shards");
        Assert.Equal(1, whole.SampleShards);
    }

    /// <summary>
    /// Every shard holds its own copy of the folded weights: a model whose copies beyond the first would exceed
    /// <c>MaxExtraWeightBytes</c> takes fewer shards than there are threads, or none.
    /// </summary>
    [Fact]
    public void ModelsTakeNoMoreShardsThanTheirWeightsAllow()
    {
        var g = new Generator(23);
        var net = ShardedNet(g);
        var x = Tensor.Randn([96, 1, 28, 28], g);
        long weightBytes = net.Parameters().Sum(p => (long)p.NumElements) * sizeof(float);
        CpuThreading.Threads = 3;
        var three = CompileAndCompare(net, x).Plan;
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the plan ran im2col; the shard counts assume the 512-bit kernels' choices.");
        Assert.Equal(3, three.SampleShards);
        CpuInferencePlan.MaxExtraWeightBytes = weightBytes;
        var two = CompileAndCompare(net, x).Plan;
        Assert.Equal(2, two.SampleShards);
        CpuInferencePlan.MaxExtraWeightBytes = weightBytes - 1;
        Assert.Equal(1, CompileAndCompare(net, x).Plan.SampleShards);
        Assert.Equal(three.Run(x).ToArray(), two.Run(x).ToArray());
    }

    /// <summary>A convolution whose output is flattened to a batch fixed when the model is made.</summary>
    private sealed class FixedBatchNet : Module
    {
        private readonly Conv2d _conv;
        private readonly AdaptiveAvgPool2d _pool;
        private readonly int _batch;

        public FixedBatchNet(int batch, Generator g)
        {
            _batch = batch;
            _conv = RegisterModule("conv", new Conv2d(1, 16, 3, padding: 1, bias: true, generator: g));
            _pool = RegisterModule("pool", new AdaptiveAvgPool2d(1));
        }

        public override Tensor Forward(Tensor x) => _pool.Call(_conv.Call(x)).Reshape([_batch, 16]);
    }

    /// <summary>
    /// CP-ResNet's stem and first block: conv 5x5 / 2 + batch norm + Hardswish + 2 x 2 max pool, then a 3x3 and a 1x1
    /// convolution with batch norms, the stem's output added, ReLU and a 2 x 1 max pool; with <c>secondBlock</c> its
    /// second block, two 3x3 convolutions with batch norms, the block's input added, ReLU and a 2 x 1 max pool; then a
    /// 3x3 convolution and a global average.
    /// </summary>
    private sealed class StemBlockNet : Module
    {
        private readonly Conv2d _stem, _a, _b, _c;
        private readonly BatchNorm2d _bnStem, _bnA, _bnB;
        private readonly ResidualBlock? _second;
        private readonly MaxPool2d _pool = new(2, 2), _rowPool = new((2, 1), (2, 1));
        private readonly AdaptiveAvgPool2d _average = new(1);

        public StemBlockNet(int channels, bool secondBlock, Generator g)
        {
            if (secondBlock) _second = RegisterModule("second", new ResidualBlock(channels, channels, g));
            _stem = RegisterModule("stem", new Conv2d(1, channels, 5, stride: 2, padding: 1, bias: false, generator: g));
            _bnStem = RegisterModule("bnStem", new BatchNorm2d(channels));
            _a = RegisterModule("a", new Conv2d(channels, channels, 3, padding: 1, bias: false, generator: g));
            _bnA = RegisterModule("bnA", new BatchNorm2d(channels));
            _b = RegisterModule("b", new Conv2d(channels, channels, 1, bias: false, generator: g));
            _bnB = RegisterModule("bnB", new BatchNorm2d(channels));
            _c = RegisterModule("c", new Conv2d(channels, 10, 3, padding: 1, bias: true, generator: g));
        }

        public override Tensor Forward(Tensor x)
        {
            var stem = _pool.Call(_bnStem.Call(_stem.Call(x)).Hardswish());
            var a = _bnA.Call(_a.Call(stem)).Relu();
            var b = _rowPool.Call(_bnB.Call(_b.Call(a)).Add(stem).Relu());
            if (_second is not null) b = _rowPool.Call(_second.Call(b));
            return _average.Call(_c.Call(b)).Flatten(1);
        }
    }

    /// <summary>
    /// A 3x3 head, then five 1x1 convolutions (a shortcut on the head's output, a residual, Hardswish) and a 3x3
    /// convolution that reads the fourth one's output; both branches end in a global average and are added.
    /// </summary>
    private sealed class ChainNet : Module
    {
        private readonly Conv2d _head, _a, _shortcut, _b, _c, _d, _e;
        private readonly BatchNorm2d _bnA, _bnB;
        private readonly AdaptiveAvgPool2d _pool = new(1);

        public ChainNet(int c1, int c2, int c3, Generator g)
        {
            _head = RegisterModule("head", new Conv2d(3, c1, 3, padding: 1, bias: true, generator: g));
            _a = RegisterModule("a", new Conv2d(c1, c2, 1, bias: false, generator: g));
            _bnA = RegisterModule("bnA", new BatchNorm2d(c2));
            _shortcut = RegisterModule("shortcut", new Conv2d(c1, c2, 1, bias: true, generator: g));
            _b = RegisterModule("b", new Conv2d(c2, c2, 1, bias: false, generator: g));
            _bnB = RegisterModule("bnB", new BatchNorm2d(c2));
            _c = RegisterModule("c", new Conv2d(c2, c3, 1, bias: true, generator: g));
            _d = RegisterModule("d", new Conv2d(c3, c3, 1, bias: true, generator: g));
            _e = RegisterModule("e", new Conv2d(c2, c3, 3, padding: 1, bias: true, generator: g));
        }

        public override Tensor Forward(Tensor x)
        {
            var head = _head.Call(x).Relu();
            var a = _bnA.Call(_a.Call(head)).Relu();
            var shortcut = _shortcut.Call(head);
            var b = _bnB.Call(_b.Call(a)).Add(shortcut).Relu();
            var c = _c.Call(b).Hardswish();
            var d = _d.Call(c);
            var e = _e.Call(b).Relu();
            return _pool.Call(d).Add(_pool.Call(e)).Flatten(1);
        }
    }

    /// <summary>
    /// pool(conv a (x)) + pool(relu(conv a (x))) + pool(relu(conv b (x))): conv a's output has two readers, conv b an
    /// activation before its pool; neither may run after its average.
    /// </summary>
    private sealed class TwoPooledReaders : Module
    {
        private readonly Conv2d _a, _b;
        private readonly AdaptiveAvgPool2d _pool = new(1);

        public TwoPooledReaders(Generator g)
        {
            _a = RegisterModule("a", new Conv2d(8, 8, 1, bias: true, generator: g));
            _b = RegisterModule("b", new Conv2d(8, 8, 1, bias: true, generator: g));
        }

        public override Tensor Forward(Tensor x)
        {
            var a = _a.Call(x);
            return _pool.Call(a).Add(_pool.Call(a.Relu())).Add(_pool.Call(_b.Call(x).Relu())).Flatten(1);
        }
    }

    /// <summary>A convolution's ReLU output read by two activations that are added.</summary>
    private sealed class TwoReaders(Generator g) : Module
    {
        private readonly Conv2d _conv = new(8, 8, 1, bias: true, generator: g);

        public override Tensor Forward(Tensor x)
        {
            var h = _conv.Call(x).Relu();
            return h.Hardswish().Add(h.Sigmoid());
        }
    }

    /// <summary>
    /// A strided stem (5x5 stride 2, 16 channels) whose batch norm, activation and max pool run inside its direct kernel,
    /// and residual blocks whose addition, ReLU and pool run inside their implicit GEMMs (or plane-wise kernels), on MNIST-like and mel-like planes,
    /// with a padded ceil-mode pool (windows reaching into the padding on both sides) and NaN inputs that must come out as NaN.
    /// Without AVX-512 the stem's pool runs inside its column-plane kernel, and at batch 1 on MNIST the plane-wise 3x3's;
    /// the other pools are steps of their own.
    /// </summary>
    [Theory]
    [InlineData(1, 28, 28, false)]
    [InlineData(5, 28, 28, false)]
    [InlineData(2, 64, 50, false)]
    [InlineData(3, 27, 23, true)]
    [InlineData(17, 28, 28, true)]
    public void PoolsRunInsideTheConvolutionBeforeThem(int batch, int h, int w, bool withNaN)
    {
        var g = new Generator(23);
        var net = new Sequential(
            new Conv2d(1, 16, 5, stride: 2, padding: 1, bias: false, generator: g),
            new BatchNorm2d(16),
            new Hardswish(),
            new MaxPool2d(2, 2),
            new ResidualBlock(16, 16, g),
            new MaxPool2d((2, 1), (2, 1)),
            new ResidualBlock(16, 24, g),
            new MaxPool2d(3, 2, 1, ceilMode: true),
            new AdaptiveAvgPool2d(1));
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([batch, 1, h, w], g);
        if (withNaN) x.AsSpan()[h * w + 7] = float.NaN;
        var (plan, expected) = CompileAndCompare(net, x);
        if (withNaN) Assert.Contains(expected, float.IsNaN);
        // One MNIST sample's 6 x 6 map runs the plane-wise 3x3 (PlaneConv3x3), which fuses the pool the same way.
        string kernel = batch == 1 && h == 28 ? "plane-wise" : "implicit GEMM";
        if (!Gemm.Runs512 && Gemm.Runs256)
        {
            Assert.Equal("conv 1->16 5x5/2 + bn + hardswish + max pool 2x2/2x2 (column planes)", plan.Description[0]);
            Assert.Equal(kernel == "plane-wise", plan.Description.Contains("conv 16->16 3x3 + bn + residual + relu + max pool 2x1/2x1 (plane-wise)"));
            Assert.Equal(kernel == "plane-wise" ? 1 : 2, plan.Description.Count(d => d.StartsWith("max pool", StringComparison.Ordinal)));
        }
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the other pools ran as steps of their own, not inside the convolutions.");
        Assert.Equal("conv 1->16 5x5/2 + bn + hardswish + max pool 2x2/2x2 (direct)", plan.Description[0]);
        Assert.Contains($"conv 16->16 3x3 + bn + residual + relu + max pool 2x1/2x1 ({kernel})", plan.Description);
        Assert.Contains("conv 16->24 1x1 + bn + residual + relu + max pool 3x3/2x2 (implicit GEMM)", plan.Description);
        Assert.DoesNotContain(plan.Description, d => d.StartsWith("max pool", StringComparison.Ordinal));
    }

    /// <summary>
    /// Stems with one input channel and stride 2 run <c>DirectStemConv</c>: channel counts that are not a multiple of its
    /// groups of 8, rows of one vector or several (MNIST's 12 computed columns, a pooled mel row of 48, an unpooled row of 36), odd heights and
    /// widths that the pool's floor mode cuts, other kernels and paddings, with or without bias, batch norm, activation
    /// and pool; the pool must be 2x2 / 2, any other stays a step of its own.
    /// </summary>
    [Theory]
    [InlineData(19, 5, 1, true, "hardswish", "2x2", 2, 28, 28)]
    [InlineData(32, 5, 1, false, "hardswish", "2x2", 1, 128, 100)]
    [InlineData(24, 5, 1, false, "relu", "none", 2, 28, 28)]
    [InlineData(8, 3, 0, true, "none", "2x2", 3, 31, 41)]
    [InlineData(3, 3, 2, false, "relu", "none", 2, 9, 70)]
    [InlineData(13, 5, 2, true, "none", "3x3", 2, 33, 35)]
    // Input rows of whole vectors (64 columns: the last one copied into the zero-bordered line is a full vector).
    [InlineData(11, 5, 2, true, "relu", "none", 2, 20, 64)]
    // Batch 1 with enough work for two threads: each sample's row pairs are cut into bands (31 pairs: 8 + 8 + 8 + 7;
    // 25 pairs of an odd 49 rows: 7 + 7 + 7 + 4).
    [InlineData(19, 5, 1, true, "hardswish", "2x2", 1, 128, 100)]
    [InlineData(24, 5, 1, false, "relu", "none", 1, 100, 60)]
    // 16 samples or more whose pooled rows leave lanes idle: samples in the lanes, chunks of 16 (the last one short), 12
    // and 20 columns; unpooled, the rows stay in the lanes.
    [InlineData(19, 5, 1, true, "hardswish", "2x2", 17, 28, 28)]
    [InlineData(13, 3, 0, true, "none", "2x2", 35, 31, 41)]
    [InlineData(24, 5, 1, false, "relu", "none", 16, 28, 28)]
    public void StemsWithOneInputChannelRunDirectly(int channels, int kernel, int padding, bool bias, string activation, string pool,
        int batch, int h, int w)
    {
        var g = new Generator(31);
        var layers = new List<Module> { new Conv2d(1, channels, kernel, stride: 2, padding: padding, bias: bias, generator: g) };
        if (!bias) layers.Add(new BatchNorm2d(channels));
        if (activation == "hardswish") layers.Add(new Hardswish());
        if (activation == "relu") layers.Add(new ReLU());
        if (pool == "2x2") layers.Add(new MaxPool2d(2, 2));
        if (pool == "3x3") layers.Add(new MaxPool2d(3, 2));
        var net = new Sequential([.. layers]);
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([batch, 1, h, w], g);
        var (plan, _) = CompileAndCompare(net, x);
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the direct stem is 512-bit only (the 256-bit column-plane stem is checked by StemsPoolInsideTheColumnPlanesAtTwoHundredFiftySixBits).");
        Assert.EndsWith("(direct)", plan.Description[0]);
        Assert.Equal(pool == "2x2", plan.Description[0].Contains("max pool 2x2/2x2", StringComparison.Ordinal));
        Assert.Equal(pool == "3x3" ? 2 : 1, plan.Description.Count);
    }

    /// <summary>
    /// At 256 bits (no AVX-512) a stem's 2 x 2 / 2 max pool runs inside its column-plane kernel (<see cref="StemColumns"/>):
    /// eager's result, and the bits of the plan compiled with the pool a step of its own, for channel counts off the
    /// groups of 8, odd maps that the pool's floor mode cuts, batch 1 (in bands on two threads) and batches of several
    /// samples, with or without bias, batch norm and activation; any other pool stays a step of its own.
    /// </summary>
    [Theory]
    [InlineData(19, 1, true, "hardswish", "2x2", 1, 28, 28)]
    [InlineData(32, 1, false, "hardswish", "2x2", 1, 128, 100)]
    [InlineData(19, 1, false, "relu", "2x2", 3, 128, 100)]
    [InlineData(8, 0, true, "none", "2x2", 3, 31, 41)]
    [InlineData(13, 2, true, "none", "3x3", 2, 33, 35)]
    public void StemsPoolInsideTheColumnPlanesAtTwoHundredFiftySixBits(int channels, int padding, bool bias, string activation, string pool,
        int batch, int h, int w)
    {
        if (!Avx2.IsSupported || !Fma.IsSupported) Assert.Skip("This CPU has no AVX2 and FMA: the stem runs im2col, which fuses no pool.");
        var g = new Generator(37);
        var layers = new List<Module> { new Conv2d(1, channels, 5, stride: 2, padding: padding, bias: bias, generator: g) };
        if (!bias) layers.Add(new BatchNorm2d(channels));
        if (activation == "hardswish") layers.Add(new Hardswish());
        if (activation == "relu") layers.Add(new ReLU());
        layers.Add(pool == "2x2" ? new MaxPool2d(2, 2) : new MaxPool2d(3, 2));
        var net = new Sequential([.. layers]);
        RandomizeStatistics(net, g);
        var x = Tensor.Randn([batch, 1, h, w], g);
        ConvPathRuns.WithKernels(Gemm.KernelKind.Vector256, () =>
        {
            var (plan, _) = CompileAndCompare(net, x);
            CpuInferencePlan unfused;
            StemColumns.FusesPool = false;
            try
            {
                unfused = CpuInferencePlan.Compile(net, x.ShapeArray());
            }
            finally
            {
                StemColumns.FusesPool = true;
            }
            Assert.Equal(ConvPathRuns.Bits(unfused.Run(x).ToArray()), ConvPathRuns.Bits(plan.Run(x).ToArray()));
            Assert.Equal(2, unfused.Description.Count);
            Assert.Equal(pool == "2x2" ? 1 : 2, plan.Description.Count);
            Assert.Equal(pool == "2x2", plan.Description[0].EndsWith("+ max pool 2x2/2x2 (column planes)", StringComparison.Ordinal));
        });
    }

    /// <summary>
    /// What follows a fused pool stays a step of its own: Hardswish does not commute with a maximum (it is not
    /// monotonic), nor does a batch norm with a negative scale, nor a residual addition.
    /// </summary>
    [Fact]
    public void OpsAfterAFusedPoolAreNotMovedBeforeIt()
    {
        var g = new Generator(29);
        var net = new Sequential(
            new Conv2d(1, 16, 3, padding: 1, bias: true, generator: g),
            new MaxPool2d(2, 2),
            new Hardswish(),
            new BatchNorm2d(16),
            new Conv2d(16, 16, 3, padding: 1, bias: false, generator: g),
            new MaxPool2d(2, 2),
            new BatchNorm2d(16));
        RandomizeStatistics(net, g);
        using (Autograd.Autograd.NoGrad())
        {
            // Negative scales and inputs around Hardswish's minimum (-1.5), where pooling first and activating first differ.
            foreach (var bn in net.NamedModules().Select(m => m.Module).OfType<BatchNorm2d>()) bn.Weight.CopyFrom(Tensor.Randn(bn.Weight.ShapeArray(), g).Sub(1f));
        }
        var (plan, _) = CompileAndCompare(net, Tensor.Randn([4, 1, 16, 20], g).Mul(3f));
        if (!Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: no pool was fused.");
        Assert.Equal("conv 1->16 3x3 + max pool 2x2/2x2 (implicit GEMM)", plan.Description[0]);
        Assert.Contains(plan.Description, d => d.StartsWith("element-wise + hardswish", StringComparison.Ordinal));
        Assert.Equal(2, plan.Description.Count(d => d.StartsWith("batch norm", StringComparison.Ordinal)));
    }

    /// <summary>
    /// Every output within 1e-4 of the largest finite eager output (plus 1e-5) of the eager forward's; a NaN must
    /// come out as NaN.
    /// </summary>
    private static void AssertMatchesEager(float[] expected, float[] actual, string what = "")
    {
        Assert.Equal(expected.Length, actual.Length);
        float scale = expected.Where(float.IsFinite).DefaultIfEmpty(0f).Max(MathF.Abs);
        for (int i = 0; i < expected.Length; i++)
        {
            if (float.IsNaN(expected[i])) Assert.True(float.IsNaN(actual[i]), $"{what}output {i}: eager NaN, plan {actual[i]}");
            else Assert.True(MathF.Abs(expected[i] - actual[i]) <= 1e-4f * scale + 1e-5f, $"{what}output {i}: eager {expected[i]}, plan {actual[i]}");
        }
    }

    /// <summary>The eval-mode eager forward of <paramref name="x"/>, and the plan compiled for its shape, whose output must match it.</summary>
    private static (CpuInferencePlan Plan, float[] Expected) CompileAndCompare(Module net, Tensor x)
    {
        net.Eval();
        float[] expected;
        using (Autograd.Autograd.NoGrad()) expected = net.Call(x).ToArray();
        var plan = CpuInferencePlan.Compile(net, x.ShapeArray());
        AssertMatchesEager(expected, plan.Run(x).ToArray());
        return (plan, expected);
    }

    private static void RandomizeStatistics(Module net, Generator g)
    {
        using (Autograd.Autograd.NoGrad())
        {
            foreach (var (name, t) in net.NamedBuffers())
            {
                if (name.EndsWith("running_mean", StringComparison.Ordinal)) t.CopyFrom(Tensor.Randn(t.ShapeArray(), g).Mul(0.2f));
                if (name.EndsWith("running_var", StringComparison.Ordinal)) t.CopyFrom(Tensor.Rand(t.ShapeArray(), g).Add(0.5f));
            }
            foreach (var (name, p) in net.NamedParameters())
                if (p.Rank == 1) p.CopyFrom(Tensor.Randn(p.ShapeArray(), g).Mul(0.3f).Add(name.EndsWith("weight", StringComparison.Ordinal) ? 1f : 0f));
        }
    }

    [Fact]
    public void RunTwiceGivesTheSameResult()
    {
        var g = new Generator(5);
        var net = Net(g);
        net.Eval();
        var x = Tensor.Randn([4, 2, 25, 21], g);
        var plan = CpuInferencePlan.Compile(net, [4, 2, 25, 21]);
        Assert.Equal(plan.Run(x).ToArray(), plan.Run(x).ToArray());
        Assert.True(plan.BufferBytes > 0);
    }

    /// <summary>
    /// With <see cref="CpuInferencePlan.AdaptiveThreading"/> the first calls alternate between the worker threads and
    /// the calling thread alone: every call gives the bits of the pass on the workers, and of one on a single thread.
    /// </summary>
    [Fact]
    public void PassesChoosingTheirThreadingKeepTheBits()
    {
        var g = new Generator(7);
        var net = Net(g);
        net.Eval();
        var x = Tensor.Randn([64, 2, 25, 21], g);
        int saved = CpuThreading.Threads;
        try
        {
            CpuThreading.Threads = 2;
            var plan = CpuInferencePlan.Compile(net, [64, 2, 25, 21]);
            Assert.True(plan.UsesWorkers, "the test's pass must be large enough to use the worker threads");
            plan.AdaptiveThreading = false;
            var expected = plan.Run(x).ToArray().Select(BitConverter.SingleToInt32Bits).ToArray();
            CpuThreading.Threads = 1;
            Assert.Equal(expected, plan.Run(x).ToArray().Select(BitConverter.SingleToInt32Bits));
            CpuThreading.Threads = 2;
            plan.AdaptiveThreading = true;
            for (int call = 0; call < 48; call++)
                Assert.Equal(expected, plan.Run(x).ToArray().Select(BitConverter.SingleToInt32Bits));
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    [Fact]
    public void ProfileTimesEachStepAndLeavesTheResultAlone()
    {
        var g = new Generator(6);
        var net = Net(g);
        net.Eval();
        var x = Tensor.Randn([3, 2, 25, 21], g);
        var plan = CpuInferencePlan.Compile(net, [3, 2, 25, 21]);
        var profile = plan.Profile(x.AsSpan(), iterations: 2);
        Assert.Equal(plan.Description, profile.Select(p => p.Step));
        Assert.All(profile, p => Assert.True(p.Milliseconds > 0, $"{p.Step}: {p.Milliseconds} ms"));
        Assert.True(profile.Sum(p => p.Milliseconds) > 0);
        Assert.Equal(net.Call(x).ToArray(), plan.Run(x).ToArray(), (a, b) => MathF.Abs(a - b) <= 1e-4f);
        Assert.Throws<ArgumentOutOfRangeException>(() => plan.Profile(x.AsSpan(), 0));
    }

    [Fact]
    public void UnsupportedOpsAndWrongShapesFailWithAMessage()
    {
        var g = new Generator(3);
        var softmax = new Sequential(new Conv2d(1, 2, 1, generator: g), new AdaptiveAvgPool2d(1), new Flatten(), new LambdaSoftmax());
        var e = Assert.Throws<NotSupportedException>(() => CpuInferencePlan.Compile(softmax, [2, 1, 3, 3]));
        Assert.Contains("Softmax", e.Message);

        // Flattening whole feature maps of several samples would reorder the channel-major memory.
        var flatten = new Sequential(new Conv2d(1, 2, 1, generator: g), new Flatten());
        var f = Assert.Throws<NotSupportedException>(() => CpuInferencePlan.Compile(flatten, [2, 1, 3, 3]));
        Assert.Contains("channel-major", f.Message);

        var plan = CpuInferencePlan.Compile(new Sequential(new Conv2d(1, 2, 1, generator: g)), [2, 1, 3, 3]);
        var bad = Assert.Throws<ArgumentException>(() => plan.Run(Tensor.Zeros([1, 1, 3, 3])));
        Assert.Contains("compile another plan", bad.Message);
    }

    private sealed class LambdaSoftmax : Module
    {
        public override Tensor Forward(Tensor x) => Functional.Softmax(x);
    }
}
