using System.Text.Json;
using NeuralCore.IO;
using NeuralCore.Models;
using NeuralCore.Onnx;

namespace NeuralCore.Cli.Tests;

public class ExportOnnxCommandTests
{
    [Fact]
    public void ExportOnnx_WritesACheckedModel_WithTheCheckpointsMetadata()
    {
        using var data = new TinyMnist();
        var checkpoint = Path.Combine(data.Root, "small.safetensors");
        var model = new CpResNet(CpResNetConfig.FromWidths("24 48 72"), new Generator(1));
        model.Save(checkpoint, model.Config.ToMetadata());
        var output = Path.Combine(data.Root, "small.onnx");
        var (code, stdout, stderr) = Cli.Run("export-onnx", "--checkpoint", checkpoint, "--out", output, "--fold-bn", "--json");
        Assert.True(code == 0, stderr);
        Assert.True(File.Exists(output));
        Assert.Empty(OnnxChecker.FindProblems(output));
        using var json = JsonDocument.Parse(stdout);
        Assert.NotEqual(JsonValueKind.Undefined, json.RootElement.ValueKind);
    }

    [Fact]
    public void ExportOnnx_PlainStateDictWithoutWidths_IsAUsageError()
    {
        using var data = new TinyMnist();
        var plain = Path.Combine(data.Root, "plain.safetensors");
        TensorIO.SaveSafeTensors(plain, new CpResNet(CpResNetConfig.FromWidths("24 48 72")).StateDict());
        var (code, _, stderr) = Cli.Run("export-onnx", "--checkpoint", plain, "--out", Path.Combine(data.Root, "x.onnx"));
        Assert.Equal(2, code);
        Assert.Contains("--channel-width", stderr);
    }
}
