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
        // The architecture's keys and one of the checkpoint's own (as an audio run stores its front end's settings).
        var metadata = new Dictionary<string, string>(model.Config.ToMetadata()) { ["front_end"] = "mel 128 bins" };
        model.Save(checkpoint, metadata);
        var output = Path.Combine(data.Root, "small.onnx");
        var (code, stdout, stderr) = Cli.Run("export-onnx", "--checkpoint", checkpoint, "--out", output, "--fold-bn", "--json");
        Assert.True(code == 0, stderr);
        Assert.True(File.Exists(output));
        Assert.Empty(OnnxChecker.FindProblems(output));
        using var json = JsonDocument.Parse(stdout);
        var root = json.RootElement;
        Assert.Equal(Path.GetFullPath(output), root.GetProperty("output").GetString());
        Assert.Equal(new FileInfo(output).Length, root.GetProperty("bytes").GetInt64());
        Assert.True(root.GetProperty("fold_bn").GetBoolean());
        Assert.Equal([1, 28, 28], root.GetProperty("input_shape").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(10, root.GetProperty("classes").GetInt32());
        // Each metadata entry is a key and a value string, stored as UTF-8 one after the other (ONNX's
        // StringStringEntryProto: tag, length, bytes), so the pair appears in the file as key, two bytes, value.
        byte[] file = File.ReadAllBytes(output);
        foreach (var (key, value) in metadata)
        {
            byte[] entry = [.. System.Text.Encoding.UTF8.GetBytes(key), 0x12, (byte)value.Length, .. System.Text.Encoding.UTF8.GetBytes(value)];
            Assert.True(file.AsSpan().IndexOf(entry) >= 0, $"the ONNX file lacks the metadata entry {key} = {value}");
        }
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
