using NeuralCore.Models;
using NeuralCore.NN;
using NeuralCore.Pruning;
using static NeuralCore.Onnx.Tests.OnnxTestSupport;

namespace NeuralCore.Onnx.Tests;

public sealed class OnnxExportTests
{
    private static readonly int[] Mnist = [1, 28, 28];

    private static CpResNet CpResNet(string widths, ulong seed)
    {
        var model = new CpResNet(CpResNetConfig.FromWidths(widths), new Generator(seed));
        Randomize(model, seed + 100);
        Calibrate(model, Mnist, seed + 200);
        return model;
    }

    [Theory]
    [InlineData("24 48 72", 1)]
    [InlineData("24 48 72", 7)]
    [InlineData("32 64 128", 1)]
    [InlineData("32 64 128", 7)]
    public void CpResNet_MatchesOnnxRuntime(string widths, int batch)
    {
        var model = CpResNet(widths, 3);
        AssertClose(ExportAndCompare(model, Mnist, batch));
        Assert.True(model.Training, "Export must restore the model's training mode.");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    public void PrunedCpResNet_ExportsWithThePrunedWidths(int batch)
    {
        var model = CpResNet("32 64 128", 5);
        new Pruner(model, Tensor.Randn([1, .. Mnist], new Generator(1)), new PrunerOptions { Ratio = 0.4 }).Step();
        Assert.Equal(47_349, model.ParameterCount());

        var proto = Parse(OnnxExporter.ExportToBytes(model, Mnist));
        var dims = proto.Graph.Initializer.ToDictionary(t => t.Name, t => t.Dims.ToArray());
        Assert.Equal([19L, 1, 5, 5], dims["in_c.0.weight"]);
        Assert.Equal([38L, 19, 3, 3], dims["stage2.block1.conv1.weight"]);
        Assert.Equal([76L, 38, 1, 1], dims["stage3.block1.shortcut.conv.weight"]);
        Assert.Equal([10L, 76, 1, 1], dims["feed_forward.0.weight"]);
        AssertClose(ExportAndCompare(model, Mnist, batch));
    }

    [Fact]
    public void CpResNet_GraphUsesStateDictNamesAndTheExpectedOps()
    {
        var model = CpResNet("24 48 72", 1);
        var proto = Parse(OnnxExporter.ExportToBytes(model, Mnist));
        var ops = proto.Graph.Node.Select(n => n.OpType).ToList();
        Assert.Equal(16, ops.Count(o => o == "Conv"));
        Assert.Equal(16, ops.Count(o => o == "BatchNormalization"));
        Assert.Contains("HardSwish", ops);
        Assert.Equal(3, ops.Count(o => o == "MaxPool"));
        Assert.Single(ops, "GlobalAveragePool");
        Assert.Equal("Flatten", ops[^1]);
        var names = proto.Graph.Initializer.Select(t => t.Name).ToHashSet();
        var expected = model.StateDict().Keys.Where(k => !k.EndsWith("num_batches_tracked", StringComparison.Ordinal));
        Assert.Subset(names, expected.ToHashSet());
        Assert.Equal(proto.Graph.Node.Count, proto.Graph.Node.Select(n => n.Name).Distinct().Count());
        Assert.Equal(17, proto.OpsetImport.Single().Version);
        Assert.Equal("input", proto.Graph.Input.Single().Name);
        Assert.Equal("logits", proto.Graph.Output.Single().Name);
        Assert.Equal("batch", proto.Graph.Input[0].Type.TensorType.Shape.Dim[0].DimParam);
        Assert.Equal("batch", proto.Graph.Output[0].Type.TensorType.Shape.Dim[0].DimParam);
        Assert.Equal(10, proto.Graph.Output[0].Type.TensorType.Shape.Dim[1].DimValue);
        // Every intermediate value has a shape.
        var described = proto.Graph.ValueInfo.Select(v => v.Name).ToHashSet();
        Assert.All(proto.Graph.Node.SelectMany(n => n.Output).Where(o => o != "logits"), o => Assert.Contains(o, described));
    }

    [Fact]
    public void Metadata_HoldsTheVersionTheArchitectureAndTheUsersKeys()
    {
        var model = CpResNet("24 48 72", 1);
        var metadata = new Dictionary<string, string>(model.Config.ToMetadata()) { ["front_end"] = "mel 128 bins, 32 kHz" };
        var proto = Parse(OnnxExporter.ExportToBytes(model, Mnist, new OnnxExportOptions { Metadata = metadata }));
        var props = proto.MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal(OnnxExporter.NeuralCoreVersion, props["neuralcore_version"]);
        Assert.Equal("1,28,28", props["input_shape"]);
        Assert.Equal("mel 128 bins, 32 kHz", props["front_end"]);
        foreach (var (key, value) in model.Config.ToMetadata()) Assert.Equal(value, props[key]);
        Assert.Equal("NeuralCore", proto.ProducerName);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    public void FoldBatchNorm_RemovesTheBatchNormsAndKeepsTheOutputs(int batch)
    {
        var model = CpResNet("24 48 72", 9);
        var options = new OnnxExportOptions { FoldBatchNorm = true };
        var folded = OnnxExporter.ExportToBytes(model, Mnist, options);
        var unfolded = OnnxExporter.ExportToBytes(model, Mnist);
        var proto = Parse(folded);
        Assert.DoesNotContain(proto.Graph.Node, n => n.OpType == "BatchNormalization");
        Assert.Contains(proto.Graph.Initializer, t => t.Name == "in_c.0.weight_folded");
        Assert.Contains(proto.Graph.Initializer, t => t.Name == "in_c.0.bias_folded");
        Assert.Empty(OnnxChecker.FindProblems(folded));

        var x = Tensor.Randn([batch, .. Mnist], new Generator(4));
        var (a, _) = RunOrt(folded, x.ToArray(), x.ShapeArray());
        var (b, _) = RunOrt(unfolded, x.ToArray(), x.ShapeArray());
        AssertClose(RelativeDifference(a, b));
        AssertClose(ExportAndCompare(model, Mnist, batch, options));
    }

    [Fact]
    public void FixedBatch_WritesConcreteShapes()
    {
        var model = CpResNet("24 48 72", 2);
        var options = new OnnxExportOptions { DynamicBatch = false, TraceBatchSize = 3, InputName = "mel", OutputName = "scores", Opset = 21 };
        var bytes = OnnxExporter.ExportToBytes(model, Mnist, options);
        var proto = Parse(bytes);
        Assert.Equal(3, proto.Graph.Input[0].Type.TensorType.Shape.Dim[0].DimValue);
        Assert.Equal(21, proto.OpsetImport[0].Version);
        AssertClose(ExportAndCompare(model, Mnist, 3, options));
    }

    public static TheoryData<int, int> RandomNetCases()
    {
        var data = new TheoryData<int, int>();
        for (var seed = 1; seed <= 8; seed++)
        {
            data.Add(seed, 1);
            data.Add(seed, 7);
        }
        return data;
    }

    private static readonly int[] RandomInput = [3, 21, 26];

    [Theory]
    [MemberData(nameof(RandomNetCases))]
    public void RandomNetworks_MatchOnnxRuntime(int seed, int batch)
    {
        var model = new RandomNet(seed, RandomInput);
        AssertClose(ExportAndCompare(model, RandomInput, batch));
        AssertClose(ExportAndCompare(model, RandomInput, batch, new OnnxExportOptions { FoldBatchNorm = true, Opset = 18 }));
    }

    [Fact]
    public void RandomNetworks_CoverEveryExportedOp()
    {
        var ops = new HashSet<string>();
        var convs = new List<(long Group, long[] Dilations, long[] Strides, long[] Pads)>();
        var ceilModes = new HashSet<(string, long)>();
        for (var seed = 1; seed <= 8; seed++)
        {
            var proto = Parse(OnnxExporter.ExportToBytes(new RandomNet(seed, RandomInput), RandomInput));
            foreach (var node in proto.Graph.Node)
            {
                ops.Add(node.OpType);
                var attrs = node.Attribute.ToDictionary(a => a.Name);
                if (node.OpType == "Conv")
                    convs.Add((attrs["group"].I, attrs["dilations"].Ints.ToArray(), attrs["strides"].Ints.ToArray(), attrs["pads"].Ints.ToArray()));
                if (node.OpType is "MaxPool" or "AveragePool") ceilModes.Add((node.OpType, attrs["ceil_mode"].I));
            }
        }
        string[] expected =
        [
            "Conv", "BatchNormalization", "Relu", "Clip", "HardSwish", "Sigmoid", "Tanh", "MaxPool", "AveragePool",
            "GlobalAveragePool", "Gemm", "MatMul", "Transpose", "Add", "Sub", "Mul", "Div", "Max", "Min", "Concat", "Flatten",
            "Softmax", "Abs", "Sqrt", "Log", "Neg", "Exp", "Pow", "Reciprocal",
        ];
        Assert.Subset(ops, expected.ToHashSet());
        Assert.Contains(convs, c => c.Group > 1);
        Assert.Contains(convs, c => c.Dilations.Any(d => d > 1));
        Assert.Contains(convs, c => c.Strides.Any(s => s > 1));
        Assert.Contains(convs, c => c.Pads.Any(p => p > 0));
        Assert.Contains(("MaxPool", 1L), ceilModes);
        Assert.Contains(("AveragePool", 1L), ceilModes);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    public void CeilModePools_WhoseLastWindowWouldStartInThePadding_MatchOnnxRuntime(int batch)
    {
        // H = 19, kernel 2, stride 2, padding 1: ceil((19 + 2 - 2) / 2) + 1 = 11 windows, but the 11th would start in
        // the end padding, so PyTorch and NeuralCore keep 10; likewise W = 9 -> 5 (not 6) for the average pool.
        var model = new Sequential(
            new MaxPool2d((2, 1), (2, 1), (1, 0), ceilMode: true),
            new AvgPool2d((3, 2), 2, 1, ceilMode: true),
            new Conv2d(2, 3, 1, generator: new Generator(1)));
        var proto = Parse(OnnxExporter.ExportToBytes(model, [2, 19, 9]));
        Assert.Equal(2, proto.Graph.Node.Count(n => n.OpType == "Slice"));
        AssertClose(ExportAndCompare(model, [2, 19, 9], batch));
    }

    /// <summary>
    /// The ops the random networks do not draw: a narrow (Slice), a permute of activations (Transpose), reductions over
    /// one axis kept (ReduceSum, ReduceMean, ReduceMax, ReduceMin), an expand of a kept axis (Expand), Sign and a
    /// log-softmax over the channels.
    /// </summary>
    private sealed class TheOtherOps : Module
    {
        private readonly Conv2d _conv;
        private readonly Conv2d _head;

        public TheOtherOps()
        {
            _conv = RegisterModule("conv", new Conv2d(2, 6, 3, padding: 1, generator: new Generator(3)));
            _head = RegisterModule("head", new Conv2d(4, 5, 1, generator: new Generator(4)));
        }

        public override Tensor Forward(Tensor input)
        {
            var y = _conv.Call(input);                                        // [N, 6, 5, 4]
            var a = y.Narrow(1, 1, 4);                                        // [N, 4, 5, 4]
            var b = y.Permute(0, 1, 3, 2).Narrow(3, 0, 4).Narrow(1, 2, 4);    // [N, 6, 4, 5] -> [N, 4, 4, 4]
            var spread = a.Max(1, keepDim: true).Sub(a.Min(1, keepDim: true)); // [N, 1, 5, 4]
            var level = a.Mean([1], keepDim: true).Add(a.Sum([1], keepDim: true).Mul(Tensor.Full([1], 0.1f)));
            var mixed = a.Add(spread.Expand(-1, 4, -1, -1)).Mul(level.Sign().Add(Tensor.Full([1], 2f)));
            var z = mixed.Narrow(2, 0, 4).Add(b.Permute(0, 1, 3, 2));        // [N, 4, 4, 4]
            return Functional.LogSoftmax(_head.Call(z), 1).Mean([2, 3]);      // [N, 5]
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    public void TheOpsTheRandomNetworksDoNotDraw_MatchOnnxRuntime(int batch)
    {
        var model = new TheOtherOps();
        var proto = Parse(OnnxExporter.ExportToBytes(model, [2, 5, 4]));
        var ops = proto.Graph.Node.Select(n => n.OpType).ToHashSet();
        Assert.Subset(ops, new HashSet<string> { "Slice", "Transpose", "ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", "Expand", "Sign", "LogSoftmax" });
        AssertClose(ExportAndCompare(model, [2, 5, 4], batch));
    }

    private sealed class ThresholdModel : Module
    {
        private readonly Conv2d _conv;
        private readonly Threshold _threshold;

        public ThresholdModel()
        {
            _conv = RegisterModule("conv", new Conv2d(1, 4, 3, generator: new Generator(1)));
            _threshold = RegisterModule("gate", new Threshold());
        }

        public override Tensor Forward(Tensor input) => _threshold.Call(_conv.Call(input));
    }

    private sealed class Threshold : Module
    {
        public override Tensor Forward(Tensor input) => input.Mul(input.Greater(Tensor.Zeros([1])));
    }

    [Fact]
    public void UnsupportedOp_FailsNamingTheOpAndTheModule()
    {
        var e = Assert.Throws<OnnxExportException>(() => OnnxExporter.ExportToBytes(new ThresholdModel(), [1, 8, 8]));
        Assert.Equal(Autograd.OpKind.Binary, e.OpKind);
        Assert.Equal("gate", e.ModuleName);
        Assert.Contains("Binary (Greater)", e.Message);
        Assert.Contains("module 'gate' (Threshold)", e.Message);
    }

    private sealed class BatchMerging : Module
    {
        private readonly Linear _linear = new(4, 2, generator: new Generator(3));

        public BatchMerging() => RegisterModule("linear", _linear);

        // [N, 4] -> [N * 4] -> [N * 2, 2]: the batch axis is merged into the others.
        public override Tensor Forward(Tensor input) => _linear.Call(input).Reshape(-1).Reshape(-1, 2);
    }

    [Fact]
    public void DynamicBatch_RefusesAReshapeThatMergesTheBatch_AndFixedBatchExportsIt()
    {
        var e = Assert.Throws<OnnxExportException>(() => OnnxExporter.ExportToBytes(new BatchMerging(), [4]));
        Assert.Equal(Autograd.OpKind.Reshape, e.OpKind);
        Assert.Contains("DynamicBatch = false", e.Message);
        var options = new OnnxExportOptions { DynamicBatch = false, TraceBatchSize = 5 };
        AssertClose(ExportAndCompare(new BatchMerging(), [4], 5, options));
    }

    private sealed class CopyAtTheEnd : Module
    {
        private readonly Linear _linear = new(4, 3, generator: new Generator(5));

        public CopyAtTheEnd() => RegisterModule("linear", _linear);

        // The copy is no op in ONNX, so the output name must come from an Identity node.
        public override Tensor Forward(Tensor input) => _linear.Call(input).Clone();
    }

    [Fact]
    public void OutputThatIsACopy_IsProducedByAnIdentity()
    {
        var proto = Parse(OnnxExporter.ExportToBytes(new CopyAtTheEnd(), [4]));
        Assert.Equal(["Gemm", "Identity"], proto.Graph.Node.Select(n => n.OpType));
        AssertClose(ExportAndCompare(new CopyAtTheEnd(), [4], 7));
    }

    [Fact]
    public void Export_WritesAFileThatPassesTheChecker()
    {
        var dir = Directory.CreateTempSubdirectory("neuralcore-onnx-");
        try
        {
            var path = Path.Combine(dir.FullName, "sub", "model.onnx");
            OnnxExporter.Export(CpResNet("24 48 72", 1), Mnist, path);
            OnnxChecker.Validate(path);
            Assert.Empty(OnnxChecker.FindProblems(path));
            Assert.Equal(["model.onnx"], Directory.GetFiles(Path.GetDirectoryName(path)!).Select(Path.GetFileName));
        }
        finally { dir.Delete(recursive: true); }
    }

    /// <summary>Exports to one path at the same time each write a temporary file of their own: none fails, and a whole model is left.</summary>
    [Fact]
    public void ConcurrentExportsToOnePath_EachSucceed()
    {
        var dir = Directory.CreateTempSubdirectory("neuralcore-onnx-");
        try
        {
            var path = Path.Combine(dir.FullName, "model.onnx");
            var models = new[] { CpResNet("24 48 72", 1), CpResNet("24 48 72", 2) };
            for (int round = 0; round < 10; round++)
                Parallel.For(0, 2, i => OnnxExporter.Export(models[i], Mnist, path));
            Assert.Empty(OnnxChecker.FindProblems(path));
            Assert.Equal(["model.onnx"], Directory.GetFiles(dir.FullName).Select(Path.GetFileName));
        }
        finally { dir.Delete(recursive: true); }
    }
}
