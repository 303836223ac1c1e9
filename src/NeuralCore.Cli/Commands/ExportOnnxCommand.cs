using System.CommandLine;
using System.Text.Json.Nodes;
using NeuralCore.IO;
using NeuralCore.Onnx;

namespace NeuralCore.Cli.Commands;

/// <summary><c>neuralcore export-onnx</c>: a checkpoint as an ONNX model with a dynamic batch axis.</summary>
internal static class ExportOnnxCommand
{
    public static Command Create(CliConsole console)
    {
        var checkpoint = CommonOptions.Checkpoint(required: true);
        var model = CommonOptions.Model();
        var width = CommonOptions.ChannelWidth(forCheckpoint: true);
        var output = new Option<string>("--out")
        {
            Description = "The .onnx file to write (replaced only once the export succeeded).",
            Required = true,
            HelpName = "MODEL.onnx",
        };
        var inputShape = new Option<string>("--input-shape", "--input_shape")
        {
            Description = "Shape of one input without the batch axis: channels,height,width (MNIST 1,28,28; a 1 s mel spectrogram 1,128,100). Default: the checkpoint's front end's spectrogram for an acoustic-scene checkpoint, else 1,28,28.",
            DefaultValueFactory = _ => "1,28,28",
            HelpName = "C,H,W",
        };
        var foldBn = new Option<bool>("--fold-bn", "--fold_bn")
        {
            Description = "Fold each batch norm into the convolution before it (same outputs, fewer nodes).",
        };
        var opset = new Option<int>("--opset")
        {
            Description = $"ONNX opset of the default domain ({OnnxExportOptions.MinOpset} to {OnnxExportOptions.MaxOpset}).",
            DefaultValueFactory = _ => OnnxExportOptions.MinOpset,
        };
        var json = CommonOptions.Json();
        var command = new Command("export-onnx",
            "Export a checkpoint to ONNX (input 'input' [batch, C, H, W], output 'logits' [batch, classes]) and check the file's structure.")
        {
            checkpoint, model, width, output, inputShape, foldBn, opset, json,
        };
        command.SetAction(parse =>
        {
            var (_, widths) = CommonOptions.ReadModel(parse, model, width);
            int opsetVersion = parse.GetValue(opset);
            if (opsetVersion is < OnnxExportOptions.MinOpset or > OnnxExportOptions.MaxOpset)
                throw new CliException($"--opset {opsetVersion} is not supported; pick {OnnxExportOptions.MinOpset} to {OnnxExportOptions.MaxOpset}.", Program.UsageError);
            string checkpointPath = parse.GetValue(checkpoint)!, outputPath = parse.GetValue(output)!;
            bool asJson = parse.GetValue(json), fold = parse.GetValue(foldBn);

            var source = ModelSource.Load(checkpointPath, widths);
            // An acoustic-scene checkpoint's input is its front end's spectrogram unless --input-shape says otherwise.
            var shape = parse.GetResult(inputShape) is { Implicit: true } && source.Mel is { } mel
                ? [1, mel.NMels, mel.FrameCount(mel.SampleRate)]
                : CommonOptions.ParseShape(parse.GetValue(inputShape)!, "--input-shape");
            if (shape[0] != source.Config.InputChannels)
                throw new CliException($"--input-shape {string.Join(",", shape)} has {shape[0]} channel(s), but the model takes {source.Config.InputChannels}.", Program.UsageError);
            string? folder = Path.GetDirectoryName(Path.GetFullPath(outputPath));
            if (folder is not null && !Directory.Exists(folder))
                throw new CliException($"--out {outputPath}: the folder {folder} does not exist; create it first or choose another path.");

            // The checkpoint's own metadata (architecture, front-end settings of audio runs) travels into the ONNX file.
            var (_, fileMetadata) = TensorIO.LoadSafeTensors(checkpointPath);
            var metadata = new Dictionary<string, string>(fileMetadata);
            foreach (var (key, value) in source.Config.ToMetadata()) metadata[key] = value;
            var options = new OnnxExportOptions { FoldBatchNorm = fold, Opset = opsetVersion, Metadata = metadata };
            byte[] onnx;
            try
            {
                onnx = OnnxExporter.ExportToBytes(source.Model, shape, options);
            }
            catch (OnnxExportException e)
            {
                throw new CliException(e.Message);
            }
            catch (ArgumentException e)
            {
                throw new CliException($"The model cannot run on inputs of shape {string.Join(",", shape)}: {e.Message}", Program.UsageError);
            }
            // Checked before it is written: a model the checker refuses never replaces what --out held.
            OnnxChecker.Validate(onnx);
            AtomicFile.Write(outputPath, stream => stream.Write(onnx));

            long bytes = onnx.Length;
            console.Human(asJson).WriteLine(
                $"wrote {outputPath} ({bytes:N0} bytes, opset {opsetVersion}{(fold ? ", batch norms folded" : "")}): input [batch, {string.Join(", ", shape)}] -> logits [batch, {source.Config.NumClasses}]");
            if (asJson)
            {
                console.Out.WriteLine(new JsonObject
                {
                    ["checkpoint"] = Path.GetFullPath(checkpointPath),
                    ["output"] = Path.GetFullPath(outputPath),
                    ["bytes"] = bytes,
                    ["opset"] = opsetVersion,
                    ["fold_bn"] = fold,
                    ["input_shape"] = Json.Array(shape),
                    ["classes"] = source.Config.NumClasses,
                }.ToJsonString(Json.Indented));
            }
            return Program.Success;
        });
        return command;
    }
}
