using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using NeuralCore.Audio;
using NeuralCore.Data;
using NeuralCore.IO;
using NeuralCore.Training;

namespace NeuralCore.Cli.Commands;

/// <summary><c>neuralcore predict</c>: logits of a checkpoint for images (or spectrograms) in a .npy file, or scene probabilities for a WAV clip.</summary>
internal static class PredictCommand
{
    public static Command Create(CliConsole console)
    {
        var checkpoint = CommonOptions.Checkpoint(required: true);
        var model = CommonOptions.Model();
        var width = CommonOptions.ChannelWidth(forCheckpoint: true);
        var input = new Option<string>("--input")
        {
            Description = "A .npy file of float images N x 1 x H x W (or N x H x W), scaled like the training data (pixel / 255, in [0, 1]); " +
                "or, for an acoustic-scene model, a .wav clip (any format, rate and channel count), which goes through the checkpoint's own front end.",
            Required = true,
            HelpName = "X.npy|CLIP.wav",
        };
        var output = new Option<string>("--output")
        {
            Description = "Where to write the logits: a float32 .npy file N x classes (required for .npy input; optional for a .wav clip).",
            HelpName = "LOGITS.npy",
        };
        var batchSize = CommonOptions.BatchSize("Images per forward pass (does not change the result).");
        var device = new Option<string>("--device") { Description = TrainingOptionSet.DeviceHelp, DefaultValueFactory = _ => "cpu" };
        var json = CommonOptions.Json();
        var command = new Command("predict",
            "Run a checkpoint on images from a NumPy .npy file and write the logits (N x classes) to another .npy file; or, for an acoustic-scene model, " +
            "print the scene probabilities of a .wav clip.")
        {
            checkpoint, model, width, input, output, batchSize, device, json,
        };
        command.SetAction(parse =>
        {
            var (_, widths) = CommonOptions.ReadModel(parse, model, width);
            int batch = parse.GetValue(batchSize);
            if (batch < 1) throw new CliException($"--batch-size must be at least 1; found {batch}.", Program.UsageError);
            string inputPath = parse.GetValue(input)!;
            string? outputPath = parse.GetValue(output);
            bool asJson = parse.GetValue(json);
            var dev = TrainingOptionSet.ParseDevice(parse.GetValue(device)!);

            var source = ModelSource.Load(parse.GetValue(checkpoint)!, widths);
            if (inputPath.EndsWith(".wav", StringComparison.OrdinalIgnoreCase))
                return PredictClip(console, source, inputPath, outputPath, dev, asJson);
            if (outputPath is null)
                throw new CliException("--output is required for a .npy input: pass --output LOGITS.npy (the logits N x classes are written there).", Program.UsageError);
            var images = ReadImages(inputPath, source.Config.InputChannels);
            var logits = Predict(source, images, batch, dev);
            SaveLogits(outputPath, logits);

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

    /// <summary>Scene probabilities of one WAV clip through the checkpoint's front end; prints them (and writes the logits when asked).</summary>
    private static int PredictClip(CliConsole console, ModelSource source, string path, string? outputPath, Device device, bool asJson)
    {
        var human = console.Human(asJson);
        var mel = TestCommand.FrontEndOf(source, human);
        if (!File.Exists(path))
            throw new CliException($"--input {path} does not exist. Pass a .wav clip (e.g. a 1 s TAU22 recording) or a .npy file.");
        var waveform = WavFile.ReadMono(path, out int rate);
        double seconds = (double)waveform.Length / rate;
        waveform = Resampler.Resample(waveform, rate, mel.SampleRate);
        if (waveform.Length <= mel.NFft / 2 + 1)
            throw new CliException(string.Create(CultureInfo.InvariantCulture,
                $"--input {path} is too short: {seconds:0.###} s gives {waveform.Length} samples at {mel.SampleRate} Hz, and the front end needs more than {mel.NFft / 2 + 1}."));
        var inputs = new MelFrontEnd(mel, AugmentConfig.None).Forward([waveform], training: false);
        var logits = Predict(source, inputs, 1, device);
        if (outputPath is not null) SaveLogits(outputPath, logits);

        var scores = logits.ToArray();
        int classes = scores.Length;
        double max = scores.Max();
        var exp = scores.Select(v => Math.Exp(v - max)).ToArray();
        double sum = exp.Sum();
        var probabilities = exp.Select(e => e / sum).ToArray();
        IReadOnlyList<string> names = classes == Tau22.SceneLabels.Count ? Tau22.SceneLabels
            : Enumerable.Range(0, classes).Select(c => c.ToString(CultureInfo.InvariantCulture)).ToArray();
        int predicted = Metrics.ArgMax(scores);

        human.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{path}: {seconds:0.###} s at {rate} Hz -> {string.Join(" x ", inputs.ShapeArray()[2..])} log-mel; predicted scene: {names[predicted]} ({probabilities[predicted]:P1})"));
        int width = names.Max(n => n.Length);
        foreach (int c in Enumerable.Range(0, classes).OrderByDescending(c => probabilities[c]))
            human.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {names[c].PadRight(width)}  {probabilities[c],7:P1}  {new string('#', (int)Math.Round(probabilities[c] * 40))}"));
        if (outputPath is not null) human.WriteLine($"wrote logits [1, {classes}] to {outputPath}");
        if (asJson)
        {
            var byName = new JsonObject();
            for (int c = 0; c < classes; c++) byName[names[c]] = probabilities[c];
            console.Out.WriteLine(new JsonObject
            {
                ["checkpoint"] = Path.GetFullPath(source.Checkpoint!),
                ["input"] = Path.GetFullPath(path),
                ["output"] = outputPath is null ? null : Path.GetFullPath(outputPath),
                ["seconds"] = seconds,
                ["sample_rate"] = rate,
                ["classes"] = classes,
                ["predicted"] = predicted,
                ["predicted_scene"] = names[predicted],
                ["probabilities"] = byName,
                ["logits"] = new JsonArray(scores.Select(v => (JsonNode)v).ToArray()),
            }.ToJsonString(Json.Indented));
        }
        return Program.Success;
    }

    private static void SaveLogits(string outputPath, Tensor logits)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(outputPath));
        if (folder is not null && !Directory.Exists(folder))
            throw new CliException($"--output {outputPath}: the folder {folder} does not exist; create it first or choose another path.");
        TensorIO.SaveNpy(outputPath, logits);
    }

    /// <summary>Reads the images as Float32 [N, C, H, W], accepting [N, H, W] for one channel.</summary>
    private static Tensor ReadImages(string path, int channels)
    {
        if (!File.Exists(path))
            throw new CliException($"--input {path} does not exist. Pass a .npy file of images N x {channels} x H x W (float32).");
        var images = TensorIO.LoadNpy(path);
        if (images.DType != DType.Float32)
            throw new CliException(
                $"--input {path} holds integers, not float32; expected float images N x {channels} x H x W scaled to [0, 1] as in training. " +
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

    private static Tensor Predict(ModelSource source, Tensor images, int batchSize, Device device)
    {
        var model = source.Model;
        model.To(device);
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
                logits = model.Call(images.Narrow(0, start, count).To(device));
            }
            catch (ArgumentException e)
            {
                throw new CliException(
                    $"The model cannot run on images of shape {Tensor.FormatShape(images.Shape[1..])}: {e.Message} The seed's models take 1 x 28 x 28 MNIST digits or 1 x 128 x 100 log-mel spectrograms of 1 s clips.");
            }
            classes = logits.Size(1);
            parts.Add(logits.ToArray());
        }
        return Tensor.FromArray(parts.SelectMany(p => p).ToArray(), n, classes);
    }
}
