using Google.Protobuf;
using NeuralCore.NN;
using NeuralCore.Onnx.Proto;

namespace NeuralCore.Onnx.Tests;

public sealed class OnnxCheckerTests
{
    private static ModelProto Exported()
    {
        var model = new Sequential(
            new Conv2d(2, 4, 3, padding: 1, generator: new Generator(1)), new BatchNorm2d(4), new ReLU(),
            new AdaptiveAvgPool2d(1), new Flatten(), new Linear(4, 3, generator: new Generator(2)));
        return OnnxTestSupport.Parse(OnnxExporter.ExportToBytes(model, [2, 6, 6]));
    }

    private static string Problems(ModelProto model) => string.Join("\n", OnnxChecker.FindProblems(model.ToByteArray()));

    [Fact]
    public void ExportedModel_HasNoProblems() => Assert.Equal("", Problems(Exported()));

    [Fact]
    public void NodesOutOfTopologicalOrder_AreReported()
    {
        var model = Exported();
        var first = model.Graph.Node[0];
        model.Graph.Node.RemoveAt(0);
        model.Graph.Node.Add(first);
        Assert.Contains("topological order", Problems(model));
    }

    [Fact]
    public void DuplicateNodeAndValueNames_AreReported()
    {
        var model = Exported();
        model.Graph.Node[1].Name = model.Graph.Node[0].Name;
        model.Graph.Node[2].Output[0] = model.Graph.Node[0].Output[0];
        var problems = Problems(model);
        Assert.Contains($"node name '{model.Graph.Node[0].Name}' is used twice", problems);
        Assert.Contains("already defined", problems);
    }

    [Fact]
    public void InitializerWithTheWrongDataSize_IsReported()
    {
        var model = Exported();
        var weight = model.Graph.Initializer.Single(t => t.Name == "0.weight");
        weight.Dims[0] = 5;
        var problems = Problems(model);
        Assert.Contains("initializer '0.weight' has shape [5, 2, 3, 3] (90 elements of 4 bytes) but 288 bytes", problems);
        Assert.Contains("the bias '0.bias' has shape [4]; expected [5]", problems);
    }

    [Fact]
    public void MissingOpsetUnknownOpAndMissingOutput_AreReported()
    {
        var model = Exported();
        model.OpsetImport.Clear();
        model.Graph.Node[^1].OpType = "Gemmm";
        model.Graph.Output[0].Name = "nowhere";
        var problems = Problems(model);
        Assert.Contains("no opset of the default domain", problems);
        Assert.Contains("'Gemmm' is not an operator", problems);
        Assert.Contains("graph output 'nowhere' is not produced", problems);
    }

    [Fact]
    public void WrongInputCountAndKernelShape_AreReported()
    {
        var model = Exported();
        var conv = model.Graph.Node.First(n => n.OpType == "Conv");
        conv.Attribute.Single(a => a.Name == "kernel_shape").Ints[0] = 5;
        model.Graph.Node.First(n => n.OpType == "Relu").Input.Add(conv.Output[0]);
        var problems = Problems(model);
        Assert.Contains("kernel_shape [5, 3] does not match the weight '0.weight' [4, 2, 3, 3]", problems);
        Assert.Contains("has 2 input(s); Relu takes 1", problems);
    }

    [Fact]
    public void Validate_ThrowsWithEveryProblem_AndRejectsGarbage()
    {
        var model = Exported();
        model.Graph.Name = "";
        model.IrVersion = 2;
        var e = Assert.Throws<InvalidDataException>(() => OnnxChecker.Validate(model.ToByteArray()));
        Assert.Contains("2 ONNX check(s)", e.Message);
        Assert.Contains("no name", e.Message);
        Assert.Contains("ir_version is 2", e.Message);
        Assert.NotEmpty(OnnxChecker.FindProblems([0xFF, 0xFF, 0xFF]));
    }
}
