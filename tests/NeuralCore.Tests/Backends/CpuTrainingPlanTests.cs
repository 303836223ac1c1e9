using NeuralCore.Backends.Cpu;
using NeuralCore.NN;
using NeuralCore.Optim;

namespace NeuralCore.Tests.Backends;

/// <summary>
/// <see cref="CpuTrainingPlan"/> against eager training: the same loss, logits, parameter gradients, batch-norm
/// statistics and counters, bit for bit, over several optimizer steps, for values used once, twice by one op and
/// three times; no allocation per step; unsupported models, wrong inputs and resized parameters fail with a message.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed class CpuTrainingPlanTests
{
    /// <summary>One value read three times: twice by one addition and once by a convolution, in either order.</summary>
    private sealed class ThreeUses(int channels, bool convFirst, Generator g) : Module
    {
        private readonly Conv2d _conv = new(channels, channels, 3, padding: 1, bias: false, generator: g);

        public override Tensor Forward(Tensor x)
        {
            var a = x.Hardswish();
            Tensor doubled, convolved;
            if (convFirst) { convolved = _conv.Call(a); doubled = a.Add(a); }
            else { doubled = a.Add(a); convolved = _conv.Call(a); }
            return doubled.Add(convolved);
        }
    }

    /// <summary>A batch norm read by a ReLU and by an addition: the plan must not fuse the ReLU into it.</summary>
    private sealed class ReluAndSkip(int channels) : Module
    {
        private readonly BatchNorm2d _bn = new(channels);

        public override Tensor Forward(Tensor x)
        {
            var y = _bn.Call(x);
            return y.Relu().Add(y);
        }
    }

    /// <summary>A batch norm read only by an addition that no ReLU follows, its other operand the block's input.</summary>
    private sealed class NormThenAdd(int channels, Generator g) : Module
    {
        private readonly Conv2d _conv = new(channels, channels, 1, bias: false, generator: g);
        private readonly BatchNorm2d _bn = new(channels);

        public override Tensor Forward(Tensor x) => _bn.Call(_conv.Call(x)).Add(x);
    }

    private static Module Net(Generator g, bool convFirst) => new Sequential(
        new Conv2d(2, 6, 5, stride: 2, padding: 1, bias: true, generator: g),
        new BatchNorm2d(6),
        new Hardswish(),
        new MaxPool2d(2, 2),
        new ResidualBlock(6, 6, g, bn2Momentum: null),
        new ThreeUses(6, convFirst, g),
        new ReluAndSkip(6),
        new ResidualBlock(6, 7, g, bn2Momentum: null),
        new MaxPool2d((2, 1), (2, 1)),
        new BatchNorm2d(7),
        new ReLU(),
        new Conv2d(7, 4, 1, bias: false, generator: g),
        new AvgPool2d(2, 1),
        new AdaptiveAvgPool2d(1),
        new Flatten());

    private static void AssertSameBits(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}[{i}]: eager {expected[i]:R}, plan {actual[i]:R}");
    }

    /// <summary>Trains two copies of one model for three Adam steps, eagerly and with the plan, comparing everything after each.</summary>
    internal static void AssertPlanTrainsLikeEager(Func<Module> build, int[] inputShape, int classes, int seed)
    {
        var eager = build();
        var planned = build();
        var eagerOpt = new Adam(eager.Parameters(), lr: 1e-2, weightDecay: 3e-3);
        var planOpt = new Adam(planned.Parameters(), lr: 1e-2, weightDecay: 3e-3);
        eager.Train();
        planned.Eval();
        var plan = CpuTrainingPlan.Compile(planned, inputShape);
        Assert.False(planned.Training, "Compile must restore the training mode.");
        planned.Train();
        var g = new Generator((ulong)seed);
        for (int step = 0; step < 3; step++)
        {
            var x = Tensor.Randn(inputShape, g);
            var labels = new long[inputShape[0]];
            for (int i = 0; i < labels.Length; i++) labels[i] = (i * 7 + step) % classes;
            var y = Tensor.FromArray(labels, labels.Length);

            float expectedLoss;
            float[] expectedLogits;
            using (TensorScope.Enter())
            {
                eagerOpt.ZeroGrad(setToNone: false);
                var logits = eager.Call(x);
                var loss = Functional.CrossEntropy(logits, y);
                loss.Backward();
                expectedLoss = loss.Item();
                expectedLogits = logits.Detach().ToArray();
            }
            planOpt.ZeroGrad(setToNone: false);
            float actualLoss = plan.Step(x, y);

            AssertSameBits([expectedLoss], [actualLoss], $"step {step} loss");
            AssertSameBits(expectedLogits, plan.Logits.ToArray(), $"step {step} logits");
            var eagerParams = eager.NamedParameters().ToArray();
            var planParams = planned.NamedParameters().ToArray();
            for (int i = 0; i < eagerParams.Length; i++)
            {
                Assert.NotNull(planParams[i].Parameter.Grad);
                AssertSameBits(eagerParams[i].Parameter.Grad!.ToArray(), planParams[i].Parameter.Grad!.ToArray(), $"step {step} grad of {eagerParams[i].Name}");
            }
            var eagerBuffers = eager.NamedBuffers().ToArray();
            var planBuffers = planned.NamedBuffers().ToArray();
            for (int i = 0; i < eagerBuffers.Length; i++)
                if (eagerBuffers[i].Buffer.DType == DType.Int64)
                    Assert.Equal(eagerBuffers[i].Buffer.ToInt64Array(), planBuffers[i].Buffer.ToInt64Array());
                else
                    AssertSameBits(eagerBuffers[i].Buffer.ToArray(), planBuffers[i].Buffer.ToArray(), $"step {step} {eagerBuffers[i].Name}");
            eagerOpt.Step();
            planOpt.Step();
        }
    }

    [Theory]
    [InlineData(4, 25, 21, false)]
    [InlineData(4, 25, 21, true)]
    [InlineData(33, 18, 14, false)]
    [InlineData(3, 40, 38, false)]
    [InlineData(3, 40, 70, false)]
    public void TrainsBitForBitLikeEagerAutograd(int batch, int h, int w, bool convFirst) =>
        AssertPlanTrainsLikeEager(() => Net(new Generator(3), convFirst), [batch, 2, h, w], classes: 4, seed: 8);

    [Fact]
    public void AReluThatAloneReadsABatchNormOrAnAdditionRunsInItsPasses()
    {
        // 40 x 38 -> 9 x 9 maps after the stem's pool: the per-channel kernels (planes of 64 values or more); the last
        // batch norm's 4 x 9 maps take the sample-major ones. Both are compared bit for bit with eager above.
        var plan = CpuTrainingPlan.Compile(Net(new Generator(3), convFirst: false), [3, 2, 40, 38]);
        var steps = plan.Description.ToList();
        Assert.Contains("batch norm 6 on 9x9 + relu", steps);
        Assert.Contains("batch norm 7 on 9x9 + relu", steps);
        Assert.Contains("batch norm 7 on 4x9 + relu", steps);
        // ReluAndSkip's batch norm is also read by its addition, so its ReLU stays a step of its own.
        Assert.Contains(("batch norm 6 on 9x9", "relu"), steps.Zip(steps.Skip(1)));
        Assert.Equal(1, steps.Count(s => s == "relu"));
        // The ReLU after each residual addition runs in the addition's pass, and both additions in their blocks' last
        // batch norms' output passes; the second's with the 2 x 1 max pool after it (never stored), where that pool's
        // kernel runs.
        Assert.Contains("batch norm 6 on 9x9 + add + relu", steps);
        Assert.DoesNotContain("add + relu", steps);
        if (!PoolKernels.FusesAddRelu(new NeuralCore.Backends.Pool2dParams(3, 7, 9, 9, 2, 1, 2, 1, 0, 0)))
            Assert.Skip("This CPU has neither AVX-512 nor AVX2: the max pool after the addition + ReLU is a step of its own.");
        Assert.Equal(1, steps.Count(s => s == "add (in the batch norm) + relu"));
        Assert.Equal(1, steps.Count(s => s == "add (in the batch norm) + relu + max pool 2x1/2x1"));
        Assert.Contains("batch norm 7 on 9x9 + add + relu + max pool 2x1/2x1", steps);
        Assert.DoesNotContain(steps, s => s.StartsWith("max pool 2x1/2x1"));
    }

    /// <summary>
    /// Residual blocks with an identity shortcut and with a projection, and an addition without a ReLU; with
    /// <paramref name="pooledBlock"/> one more block, whose addition + ReLU only a 2 x 1 max pool reads.
    /// </summary>
    private static Module AdditionsNet(ulong seed, bool pooledBlock)
    {
        var g = new Generator(seed);
        List<Module> modules =
        [
            new Conv2d(2, 6, 3, stride: 2, padding: 1, bias: true, generator: g),
            new BatchNorm2d(6),
            new ReLU(),
            new ResidualBlock(6, 6, g),
            new ResidualBlock(6, 7, g),
            new NormThenAdd(7, g),
        ];
        if (pooledBlock) modules.AddRange([new ResidualBlock(7, 7, g), new MaxPool2d((2, 1), (2, 1))]);
        modules.AddRange([new Conv2d(7, 4, 1, bias: false, generator: g), new AdaptiveAvgPool2d(1), new Flatten()]);
        return new Sequential([.. modules]);
    }

    /// <summary>
    /// An addition that alone reads a batch norm over small planes runs in the batch norm's output pass, with the ReLU
    /// after it: the block's last batch norm (identity shortcut), the shortcut's batch norm when it runs after the
    /// block's, and an addition without a ReLU; bit for bit against eager, over three Adam steps.
    /// </summary>
    [Fact]
    public void AnAdditionThatAloneReadsABatchNormOverSmallPlanesRunsInItsPass()
    {
        Module Build() => AdditionsNet(5, pooledBlock: false);
        // 11 x 9 -> 6 x 5 maps: 30 values a plane, the sample-major kernels.
        var steps = CpuTrainingPlan.Compile(Build(), [5, 2, 11, 9]).Description.ToList();
        Assert.Contains("batch norm 6 on 6x5 + add + relu", steps);
        Assert.Contains("batch norm 7 on 6x5 + add + relu", steps);
        Assert.Contains("batch norm 7 on 6x5 + add", steps);
        Assert.Equal(2, steps.Count(s => s == "add (in the batch norm) + relu"));
        Assert.Equal(1, steps.Count(s => s == "add (in the batch norm)"));
        // The second block's own batch norm runs before its shortcut's, which adds it: the only plain one.
        Assert.Equal(1, steps.Count(s => s == "batch norm 7 on 6x5"));
        AssertPlanTrainsLikeEager(Build, [5, 2, 11, 9], classes: 4, seed: 12);
    }

    /// <summary>
    /// Over large planes (9 x 9 maps) likewise, once the whole graph is compiled: the additions of a block with an
    /// identity shortcut and of one with a projection, and one without a ReLU, run in their batch norms' output passes,
    /// and so does a block's addition + ReLU that a 2 x 1 max pool alone reads, with the pool; bit for bit against
    /// eager, over three Adam steps. With the fusion switched off every addition is a step of its own (the last with
    /// its pool).
    /// </summary>
    [Fact]
    public void AnAdditionThatAloneReadsABatchNormOverLargePlanesRunsInItsPassWithThePoolAfterIt()
    {
        Module Build() => AdditionsNet(6, pooledBlock: true);
        // 17 x 17 -> 9 x 9 maps: 81 values a plane, the per-channel kernels.
        var steps = CpuTrainingPlan.Compile(Build(), [5, 2, 17, 17]).Description.ToList();
        bool pooled = PoolKernels.FusesAddRelu(new NeuralCore.Backends.Pool2dParams(5, 7, 9, 9, 2, 1, 2, 1, 0, 0));
        Assert.Contains("batch norm 6 on 9x9 + add + relu", steps);
        Assert.Contains("batch norm 7 on 9x9 + add + relu", steps);
        Assert.Contains("batch norm 7 on 9x9 + add", steps);
        Assert.Equal(pooled ? 2 : 3, steps.Count(s => s == "add (in the batch norm) + relu"));
        Assert.Equal(1, steps.Count(s => s == "add (in the batch norm)"));
        Assert.Equal(pooled ? 1 : 0, steps.Count(s => s == "batch norm 7 on 9x9 + add + relu + max pool 2x1/2x1"));
        Assert.Equal(pooled ? 1 : 0, steps.Count(s => s == "add (in the batch norm) + relu + max pool 2x1/2x1"));
        Assert.DoesNotContain(steps, s => s.StartsWith("add + relu"));
        AssertPlanTrainsLikeEager(Build, [5, 2, 17, 17], classes: 4, seed: 13);
        try
        {
            CpuTrainingPlan.LargePlaneAdditionEnabled = false;
            var apart = CpuTrainingPlan.Compile(Build(), [5, 2, 17, 17]).Description;
            Assert.DoesNotContain(apart, s => s.Contains("+ add") || s.Contains("in the batch norm"));
            Assert.Equal(pooled ? 2 : 3, apart.Count(s => s == "add + relu"));
            Assert.Equal(pooled ? 1 : 0, apart.Count(s => s == "add + relu + max pool 2x1/2x1"));
        }
        finally
        {
            CpuTrainingPlan.LargePlaneAdditionEnabled = true;
        }
    }

    /// <summary>
    /// A residual block input's two gradients: where the second comes from a convolution whose input gradient runs
    /// sample by sample (the 3x3s and 1x1s on 9 x 9 maps, 8 samples), it is added to the first as it is stored, not in a
    /// pass after; bit for bit against eager over three Adam steps, with the addition in the convolution and after it.
    /// </summary>
    [Fact]
    public void ABlockInputsSecondGradientIsAddedAsTheConvolutionStoresIt()
    {
        Module Build() => AdditionsNet(7, pooledBlock: true);
        int[] shape = [8, 2, 17, 17];
        if (!CpuBackend.Conv2dBackwardDataAdds(new NeuralCore.Backends.Conv2dParams(8, 6, 9, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1)))
            Assert.Skip("The input gradients do not run sample by sample here (a 3x3 needs AVX2 and FMA).");
        // The identity blocks' first 3x3s, and NormThenAdd's 1x1 where a 1x1 runs sample by sample (AVX-512); not the
        // projection block's first 3x3, whose input's first gradient, the shortcut's, lies in the sum's array.
        bool pointwise = CpuBackend.Conv2dBackwardDataAdds(new NeuralCore.Backends.Conv2dParams(8, 7, 9, 9, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1));
        AssertFusionTrainsLikeEager(Build, shape, seed: 14, plan => plan.AddedInputGradients, pointwise ? 3 : 2,
            on => CpuTrainingPlan.SumInBackwardDataEnabled = on);
    }

    /// <summary>
    /// A batch norm over large planes whose input a convolution run sample by sample writes gets its statistics sums from
    /// that convolution (9 x 9 maps, 8 samples); bit for bit against eager over three Adam steps, with the sums taken
    /// in the convolution and in the batch norm.
    /// </summary>
    [Fact]
    public void ABatchNormsStatisticsAreSummedByTheConvolutionBeforeIt()
    {
        Module Build() => AdditionsNet(9, pooledBlock: true);
        int[] shape = [8, 2, 17, 17];
        if (!CpuBackend.Conv2dLeavesPlaneSums(new NeuralCore.Backends.Conv2dParams(8, 6, 9, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1)))
            Assert.Skip("The convolutions do not run sample by sample here (a 3x3 needs AVX2 and FMA).");
        // The blocks' 3x3s (two each) and, where a 1x1 runs sample by sample (AVX-512), the projection shortcut's and
        // NormThenAdd's; not the first convolution (stride 2) nor the last (no batch norm after it).
        bool pointwise = CpuBackend.Conv2dLeavesPlaneSums(new NeuralCore.Backends.Conv2dParams(8, 6, 9, 9, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1));
        AssertFusionTrainsLikeEager(Build, shape, seed: 15, plan => plan.PlaneSumsInConvolutions, pointwise ? 8 : 6,
            on => CpuTrainingPlan.PlaneSumsInConvolutionsEnabled = on);
    }

    /// <summary>
    /// A plan compiled with a fusion on has <paramref name="expected"/> of the steps <paramref name="count"/> counts, and
    /// trains bit for bit like eager over three Adam steps; compiled with it off (<paramref name="setEnabled"/>), none, and
    /// the same. The fusion is switched back on after.
    /// </summary>
    private static void AssertFusionTrainsLikeEager(Func<Module> build, int[] shape, int seed, Func<CpuTrainingPlan, int> count, int expected,
        Action<bool> setEnabled)
    {
        Assert.Equal(expected, count(CpuTrainingPlan.Compile(build(), shape)));
        AssertPlanTrainsLikeEager(build, shape, classes: 4, seed: seed);
        try
        {
            setEnabled(false);
            Assert.Equal(0, count(CpuTrainingPlan.Compile(build(), shape)));
            AssertPlanTrainsLikeEager(build, shape, classes: 4, seed: seed);
        }
        finally
        {
            setEnabled(true);
        }
    }

    [Fact]
    public void AHardswishThatAloneReadsABatchNormOverLargePlanesRunsInItsPassesWithTheMaxPoolAfterIt()
    {
        // The stem's 19 x 18 maps (planes of 64 values or more): the batch norm's passes apply the Hardswish and its
        // backward recomputes the Hardswish's input; the 2x2 max pool that alone reads the Hardswish runs there too (each
        // plane pooled in L1; its last, odd row in no window). The 8 x 6 maps of an 18 x 14 input keep a step of their
        // own for each. All are compared bit for bit with eager in TrainsBitForBitLikeEagerAutograd (25 x 21 inputs give
        // 12 x 10 planes, fused; 40 x 38 the odd 19 x 18).
        // (ThreeUses' Hardswish reads an addition: a step of its own in both.)
        var large = CpuTrainingPlan.Compile(Net(new Generator(3), convFirst: false), [3, 2, 40, 38]).Description;
        Assert.Equal(1, large.Count(s => s == "hardswish"));
        var small = CpuTrainingPlan.Compile(Net(new Generator(3), convFirst: false), [3, 2, 18, 14]).Description.ToList();
        Assert.Contains(("batch norm 6 on 8x6", "hardswish"), small.Zip(small.Skip(1)));
        Assert.Contains(("hardswish", "max pool 2x2/2x2 on 8x6"), small.Zip(small.Skip(1)));
        Assert.Equal(2, small.Count(s => s == "hardswish"));
        if (!PoolKernels.IsWhole2x2(new NeuralCore.Backends.Pool2dParams(3, 6, 19, 18, 2, 2, 2, 2, 0, 0)))
            Assert.Skip("This CPU has neither AVX-512 nor AVX2: the max pool does not run in the batch norm.");
        Assert.Contains("batch norm 6 on 19x18 + hardswish + max pool 2x2/2x2", large);
        Assert.DoesNotContain(large, s => s.StartsWith("max pool 2x2/2x2"));
    }

    [Fact]
    public void AFusedMaxPoolNeedsAFusedHardswishAndWholeWindows()
    {
        int n = 2, c = 3, h = 6, w = 6;
        var x = Tensor.Randn([n, c, h, w], new Generator(5));
        Tensor Vec(float v) => Tensor.Full([c], v);
        var pooled = Tensor.Zeros([n, c, 3, 3]);
        var indices = new Tensor(CpuStorage.Allocate(DType.Int32, n * c * 9), [n, c, 3, 3]);
        var pool = new NeuralCore.Backends.Pool2dParams(n, c, h, w, 2, 2, 2, 2, 0, 0);
        var e = Assert.Throws<ArgumentException>(() => CpuBackend.Instance.BatchNormTraining(x, Vec(1), Vec(0), pooled, Vec(0), Vec(0),
            null, null, 0.1f, 1e-5f, n, c, h * w, relu: false, hardswishScaleOffset: null, pool, indices));
        Assert.Contains("fused Hardswish", e.Message);
        var padded = pool with { PadH = 1, PadW = 1 };
        e = Assert.Throws<ArgumentException>(() => CpuBackend.Instance.BatchNormTraining(x, Vec(1), Vec(0), pooled, Vec(0), Vec(0),
            null, null, 0.1f, 1e-5f, n, c, h * w, relu: false, hardswishScaleOffset: Tensor.Zeros([2 * c]), padded, indices));
        Assert.Contains("2x2 windows of stride 2", e.Message);
    }

    [Fact]
    public void CompilingLeavesTheBatchNormStatisticsAlone()
    {
        var net = Net(new Generator(1), false);
        var before = net.NamedBuffers().Select(b => b.Buffer.DType == DType.Int64 ? b.Buffer.ToInt64Array().Select(v => (float)v).ToArray() : b.Buffer.ToArray()).ToArray();
        CpuTrainingPlan.Compile(net, [2, 2, 25, 21]);
        var after = net.NamedBuffers().Select(b => b.Buffer.DType == DType.Int64 ? b.Buffer.ToInt64Array().Select(v => (float)v).ToArray() : b.Buffer.ToArray()).ToArray();
        Assert.Equal(before, after);
        Assert.All(net.NamedModules().Select(m => m.Module).OfType<BatchNorm2d>(), bn => Assert.Equal(0, bn.NumBatchesTracked));
    }

    /// <summary><paramref name="depth"/> blocks of convolution, batch norm and ReLU on one map size, then the pooled logits.</summary>
    private static Module Chain(int depth, Generator g)
    {
        var layers = new List<Module>();
        for (int i = 0; i < depth; i++)
        {
            layers.Add(new Conv2d(4, 4, 3, padding: 1, bias: false, generator: g));
            layers.Add(new BatchNorm2d(4));
            layers.Add(new ReLU());
        }
        layers.Add(new AdaptiveAvgPool2d(1));
        layers.Add(new Flatten());
        return new Sequential([.. layers]);
    }

    [Fact]
    public void GradientsInUseAtDifferentTimesShareMemory()
    {
        int[] shape = [8, 4, 10, 10];
        long Bytes(int depth) => CpuTrainingPlan.Compile(Chain(depth, new Generator(1)), shape).BufferBytes;
        long map = 8 * 4 * 10 * 10 * sizeof(float);
        // A block keeps its convolution's output and its batch norm + ReLU's output (and 2 x 4 statistics, and with
        // AVX-512 the ReLU's 4 scales and offsets) for the backward pass; with a gradient buffer of its own per value it
        // would hold two maps more.
        int statistics = BatchNormKernels.TakesReluScaleOffset(100) ? 4 : 2;
        Assert.Equal(2 * map + statistics * 4 * sizeof(float), (Bytes(8) - Bytes(4)) / 4);
        AssertPlanTrainsLikeEager(() => Chain(6, new Generator(2)), shape, classes: 4, seed: 5);
    }

    [Fact]
    public void ABatchNormsReluIsTestedOnItsInputInTheBackward()
    {
        // Every block's batch norm + ReLU over 10 x 10 planes saves the ReLU's scale and offset, and its backward tests
        // x * scale + offset instead of reading the ReLU's output: bits against eager both ways.
        int[] shape = [8, 4, 10, 10];
        var plan = CpuTrainingPlan.Compile(Chain(3, new Generator(1)), shape);
        Assert.Equal(BatchNormKernels.TakesReluScaleOffset(100) ? 3 : 0, plan.ReluScaleOffsets);
        AssertPlanTrainsLikeEager(() => Chain(3, new Generator(2)), shape, classes: 4, seed: 6);
        CpuTrainingPlan.ReluFromInputEnabled = false;
        try
        {
            AssertPlanTrainsLikeEager(() => Chain(3, new Generator(2)), shape, classes: 4, seed: 6);
        }
        finally
        {
            CpuTrainingPlan.ReluFromInputEnabled = true;
        }
    }

    [Fact]
    public void TheStemsBatchNormInputAndItsGradientTradeMemoryAfterEachStep()
    {
        // The stem's batch norm input (the convolution's output) is the one value of its length, and so is its gradient
        // (as are those of the batch norm after the 2x1 pool): such pairs trade arrays between steps, which the three
        // steps of the bit-for-bit comparison run through.
        var plan = CpuTrainingPlan.Compile(Net(new Generator(3), false), [4, 2, 25, 21]);
        Assert.Equal(2, plan.AlternatingPairs);
        AssertPlanTrainsLikeEager(() => Net(new Generator(3), false), [4, 2, 25, 21], classes: 4, seed: 11);
    }

    /// <summary>A one-channel stem without bias (CP-ResNet's), its batch norm and what follows it, then a small head.</summary>
    private static Module Stem(string after, Generator g)
    {
        var layers = new List<Module> { new Conv2d(1, 5, 5, stride: 2, padding: 1, bias: false, generator: g), new BatchNorm2d(5) };
        layers.AddRange(after switch
        {
            "hardswish + pool" => [new Hardswish(), new MaxPool2d(2, 2)],
            "relu" => [new ReLU()],
            _ => [],
        });
        layers.Add(new Conv2d(5, 4, 3, padding: 1, bias: false, generator: g));
        layers.Add(new AdaptiveAvgPool2d(1));
        layers.Add(new Flatten());
        return new Sequential([.. layers]);
    }

    /// <summary>The stem's output read by its batch norm and by a second convolution: its gradient must be stored.</summary>
    private sealed class StemReadTwice(Generator g) : Module
    {
        private readonly Conv2d _stem = new(1, 4, 5, stride: 2, padding: 1, bias: false, generator: g);
        private readonly BatchNorm2d _bn = new(4);
        private readonly Conv2d _side = new(4, 4, 1, bias: false, generator: g);
        private readonly AdaptiveAvgPool2d _pool = new(1);
        private readonly Flatten _flatten = new();

        public override Tensor Forward(Tensor x)
        {
            var y = _stem.Call(x);
            return _flatten.Call(_pool.Call(_bn.Call(y).Relu().Add(_side.Call(y))));
        }
    }

    [Theory]
    [InlineData("hardswish + pool", 1, 21, 23)]
    [InlineData("hardswish + pool", 2, 21, 23)]
    [InlineData("hardswish + pool", 3, 21, 23)]
    [InlineData("hardswish + pool", 2, 39, 43)]
    [InlineData("relu", 2, 21, 23)]
    [InlineData("none", 2, 21, 23)]
    public void AStemMakesItsBatchNormsInputGradientInsideItsWeightGradient(string after, int threads, int h, int w)
    {
        // A 1-channel 5x5/2 stem without bias on 21 x 23 inputs (10 x 11 planes, 110 values: the large-plane batch
        // norm) whose output only the batch norm reads: the batch norm's backward leaves dx's coefficients and the
        // stem's weight gradient makes dx chunk by chunk, never stored. Bits against eager over three steps, and the
        // buffer the plan no longer holds. On 39 x 43 inputs (19 x 21 planes) the pool's rows of 10 outputs take the
        // vector path of its backward (PoolKernels.MaxBackwardPlane2x2), with a column and a row past the windows.
        int saved = CpuThreading.Threads;
        try
        {
            CpuThreading.Threads = threads;
            int[] shape = [7, 1, h, w];
            var stem = new NeuralCore.Backends.Conv2dParams(7, 1, h, w, 5, 5, 5, 2, 2, 1, 1, 1, 1, 1);
            var plan = CpuTrainingPlan.Compile(Stem(after, new Generator(4)), shape);
            bool stemKernel = ConvKernels.RunsStemWeightGradient(stem);
            Assert.Equal(stemKernel ? 1 : 0, plan.StemGradientsInPlace);
            CpuTrainingPlan.StemGradientInPlaceEnabled = false;
            var unfused = CpuTrainingPlan.Compile(Stem(after, new Generator(4)), shape);
            CpuTrainingPlan.StemGradientInPlaceEnabled = true;
            Assert.Equal(0, unfused.StemGradientsInPlace);
            long map = 7L * 5 * stem.P * stem.Q * sizeof(float), coefficients = 3 * 5 * sizeof(float);
            // Unfused, a batch norm + ReLU saves the ReLU's scales and offsets too; fused, its backward reads the output.
            long relu = after == "relu" && BatchNormKernels.TakesReluScaleOffset(stem.P * stem.Q) ? 2 * 5 * sizeof(float) : 0;
            Assert.Equal(stemKernel ? map - coefficients + relu : 0, unfused.BufferBytes - plan.BufferBytes);
            AssertPlanTrainsLikeEager(() => Stem(after, new Generator(4)), shape, classes: 4, seed: 21);
        }
        finally
        {
            CpuTrainingPlan.StemGradientInPlaceEnabled = true;
            CpuThreading.Threads = saved;
        }
    }

    [Fact]
    public void AStemWhoseOutputHasAnotherReaderStoresItsGradient()
    {
        int[] shape = [6, 1, 21, 23];
        Assert.Equal(0, CpuTrainingPlan.Compile(new StemReadTwice(new Generator(2)), shape).StemGradientsInPlace);
        AssertPlanTrainsLikeEager(() => new StemReadTwice(new Generator(2)), shape, classes: 4, seed: 3);
    }

    [Fact]
    public void DeferredStorageTakesOneArrayOfItsTypeAndTradesOnlyWithItsLike()
    {
        var deferred = CpuStorage.Deferred(DType.Float32);
        Assert.Throws<ArgumentException>(() => deferred.Bind(new int[3]));
        var shared = new float[3];
        deferred.Bind(shared);
        Assert.Same(shared, deferred.Floats);
        Assert.Throws<InvalidOperationException>(() => deferred.Bind(new float[3]));
        Assert.Throws<InvalidOperationException>(() => new CpuStorage(new float[3]).Bind(new float[3]));

        var other = new CpuStorage(new float[3]);
        var before = other.Floats;
        CpuStorage.SwapArrays(deferred, other);
        Assert.Same(shared, other.Floats);
        Assert.Same(before, deferred.Floats);
        Assert.Throws<ArgumentException>(() => CpuStorage.SwapArrays(deferred, new CpuStorage(new float[4])));
        Assert.Throws<ArgumentException>(() => CpuStorage.SwapArrays(deferred, new CpuStorage(new int[3])));
    }

    [Theory]
    [InlineData(25, 21)]
    [InlineData(40, 38)] // the fused stem pool, and an addition + ReLU + 2 x 1 pool in one step
    public void AStepWithAdamAllocatesNothingAfterTheFirst(int h, int w)
    {
        var net = Net(new Generator(2), false);
        var optimizer = new Adam(net.Parameters(), lr: 1e-3, weightDecay: 3e-3);
        var plan = CpuTrainingPlan.Compile(net, [8, 2, h, w]);
        var x = Tensor.Randn([8, 2, h, w], new Generator(4));
        var y = Tensor.FromArray(new long[] { 0, 1, 2, 3, 0, 1, 2, 3 }, 8);
        for (int i = 0; i < 3; i++)
        {
            optimizer.ZeroGrad(setToNone: false);
            plan.Step(x, y);
            optimizer.Step();
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        optimizer.ZeroGrad(setToNone: false);
        plan.Step(x, y);
        optimizer.Step();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"A training step allocated {allocated} bytes after warm-up.");
    }

    [Fact]
    public void UnsupportedOpsWrongInputsAndResizedParametersFailWithAMessage()
    {
        var mlp = new Sequential(new Flatten(), new Linear(12, 3, generator: new Generator(1)));
        var e = Assert.Throws<NotSupportedException>(() => CpuTrainingPlan.Compile(mlp, [2, 1, 3, 4]));
        Assert.Contains("train this model eagerly", e.Message);
        var dropout = new Sequential(new Conv2d(1, 3, 1, generator: new Generator(1)), new Dropout(0.5), new AdaptiveAvgPool2d(1), new Flatten());
        var random = Generator.Default.GetState();
        Assert.Contains("Dropout", Assert.Throws<NotSupportedException>(() => CpuTrainingPlan.Compile(dropout, [2, 1, 4, 4])).Message);
        Assert.Equal(random, Generator.Default.GetState());
        var noFlatten = new Sequential(new Conv2d(1, 3, 1, generator: new Generator(1)));
        Assert.Contains("logits [N, classes]", Assert.Throws<NotSupportedException>(() => CpuTrainingPlan.Compile(noFlatten, [2, 1, 4, 4])).Message);

        var conv = new Conv2d(1, 3, 1, generator: new Generator(1));
        var net = new Sequential(conv, new AdaptiveAvgPool2d(1), new Flatten());
        var plan = CpuTrainingPlan.Compile(net, [2, 1, 4, 4]);
        var y = Tensor.FromArray(new long[] { 0, 2 }, 2);
        Assert.Contains("[2, 1, 4, 4]", Assert.Throws<ArgumentException>(() => plan.Step(Tensor.Zeros([3, 1, 4, 4]), y)).Message);
        Assert.Contains("Int64", Assert.Throws<ArgumentException>(() => plan.Step(Tensor.Zeros([2, 1, 4, 4]), Tensor.Zeros([2]))).Message);
        Assert.Contains("non-contiguous", Assert.Throws<ArgumentException>(() => plan.Step(Tensor.Zeros([2, 1, 4, 4]).Transpose(2, 3), y)).Message);
        Assert.True(float.IsFinite(plan.Step(Tensor.Zeros([2, 1, 4, 4]), y)));
        conv.Weight.SetData(Tensor.Zeros([2, 1, 1, 1]));
        Assert.Contains("compile a new plan", Assert.Throws<InvalidOperationException>(() => plan.Step(Tensor.Zeros([2, 1, 4, 4]), y)).Message);
    }
}
