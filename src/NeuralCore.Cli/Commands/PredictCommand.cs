using System.CommandLine;
using System.Text.Json.Nodes;
using NeuralCore.IO;
using NeuralCore.Training;

namespace NeuralCore.Cli.Commands;

/// <summary><c>neuralcore predict</c>: logits of a checkpoint for images in a .npy file.</summary>
internal static class PredictCommand
{
    public static Command Create(CliConsole console)
    {
        var checkpoint = CommonOptions.Checkpoint(required: true);
        var model = CommonOptions.Model();
        var width = CommonOptions.ChannelWidth(forCheckpoint: true);
        var input = new Option<string>("--input")
        {
            Description = "A .npy file of float images N x 1 x H x W (or N x H x W), scaled like the training data (pixel / 255, in [0, 1]).",
            Required = true,
            HelpName = "X.npy",
        };
        var output = new Option<string>("--output")
        {
            Description = "Where to write the logits: a float32 .npy file N x classes.",
            Required = true,
            HelpName = "LOGITS.npy",
        };
        var batchSize = CommonOptions.BatchSize("Images per forward pass (does not change the result).");
        var json = CommonOptions.Json();
        var command = new Command("predict", "Run a checkpoint on images from a NumPy .npy file and write the logits (N x classes) to another .npy file.")
        {
            checkpoint, model, width, input, output, batchSize, json,
        };
        command.SetAction(parse =>
        {
            var (_, widths) = CommonOptions.ReadModel(parse, model, width);
            int batch = parse.GetValue(batchSize);
            if (batch < 1) throw new CliException($"--batch-size must be at least 1; found {batch}.", Program.UsageError);
            string inputPath = parse.GetValue(input)!, outputPath = parse.GetValue(output)!;
            bool asJson = parse.GetValue(json);

            var source = ModelSource.Load(parse.GetValue(checkpoint)!, widths);
            var images = ReadImages(inputPath, source.Config.InputChannels);
            var logits = Predict(source, images, batch);
            string? folder = Path.GetDirectoryName(Path.GetFullPath(outputPath));
            if (folder is not null && !Directory.Exists(folder))
                throw new CliException($"--output {outputPath}: the folder {folder} does not exist; create it first or choose another path.");
            TensorIO.SaveNpy(outputPath, logits);

            int n = logits.Size(0), classes = logits.Size(1);
            var predictions = Metrics.ArgMaxRows(logits.ToArray(), classes);
            console.Human(asJson).WriteLine($"wrote logits [{n}, {classes}] for {n} images of {inputPath} to {outputPath}");
            if (asJson)
            {
                console.Out.WriteLine(new JsonObject
                {
                    ["checkpoint"] = Path.GetFullPath(source.Checkpoint!),
                    ["input"] = Path.GetFullPath(inputPath),
                    ["output"] = Path.GetFullPath(outputPath),
                    ["samples"] = n,
                    ["classes"] = classes,
                    ["predictions"] = Json.Array(predictions),
                }.ToJsonString(Json.Indented));
            }
            return Program.Success;
        });
        return command;
    }

    /// <summary>Reads the images as Float32 [N, C, H, W], accepting [N, H, W] for one channel.</summary>
    private static Tensor ReadImages(string path, int channels)
    {
        if (!File.Exists(path))
            throw new CliException($"--input {path} does not exist. Pass a .npy file of images N x {channels} x H x W (float32).");
        var images = TensorIO.LoadNpy(path);
        if (images.DType != DType.Float32)
            throw new CliException(
                $"--input {path} holds integers ({images.DType}); expected float images N x {channels} x H x W scaled to [0, 1] as in training. " +
                "Convert it first, e.g. in NumPy: (x / 255).astype(np.float32).");
        var shape = images.ShapeArray();
        if (shape.Length == 3 && channels == 1) images = images.Reshape(shape[0], 1, shape[1], shape[2]);
        else if (shape.Length != 4 || shape[1] != channels)
            throw new CliException(
                $"--input {path} has shape {Tensor.FormatShape(shape)}; expected [N, {channels}, H, W] (N images of {channels} channel{(channels == 1 ? "" : "s")}, e.g. [10, {channels}, 28, 28])" +
                (shape.Length == 4 && shape[3] == channels ? ". It looks channels-last: transpose it to N x C x H x W first." : "."));
        if (images.Size(0) == 0)
            throw new CliException($"--input {path} holds no images (shape {Tensor.FormatShape(shape)}).");
        return images;
    }

    private static Tensor Predict(ModelSource source, Tensor images, int batchSize)
    {
        var model = source.Model;
        model.Eval();
        using var noGrad = Autograd.Autograd.NoGrad();
        int n = images.Size(0);
        var parts = new List<float[]>();
        int classes = 0;
        for (int start = 0; start < n; start += batchSize)
        {
            int count = Math.Min(batchSize, n - start);
            Tensor logits;
            try
            {
                logits = model.Call(images.Narrow(0, start, count));
            }
            catch (ArgumentException e)
            {
                throw new CliException(
                    $"The model cannot run on images of shape {Tensor.FormatShape(images.Shape[1..])}: {e.Message} The seed's models take 1 x 28 x 28 MNIST digits.");
            }
            classes = logits.Size(1);
            parts.Add(logits.ToArray());
        }
        return Tensor.FromArray(parts.SelectMany(p => p).ToArray(), n, classes);
    }
}
