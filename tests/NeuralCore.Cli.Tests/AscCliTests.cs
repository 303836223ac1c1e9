using System.Text.Json;
using NeuralCore.Audio;
using NeuralCore.IO;
using NeuralCore.Models;

namespace NeuralCore.Cli.Tests;

/// <summary>
/// A tiny synthetic TAU22 (3 clips per scene, made by <c>make-synthetic-asc</c>) and one small CP-ResNet trained on it
/// for one epoch with <c>train --mnist=0</c>, shared by the tests of <see cref="AscCliTests"/>.
/// </summary>
public sealed class TinyAscRun : IDisposable
{
    public TinyAscRun()
    {
        var (code, stdout, stderr) = Cli.Run("make-synthetic-asc", "--out", DataDir, "--clips-per-class", "3", "--seed", "5");
        if (code != 0) throw new InvalidOperationException($"make-synthetic-asc failed ({code}): {stderr}");
        MakeOutput = stdout;
        // The seed's spellings: --mnist=0 is ASC; --mixup-alpha exercises the trainer's loss hook.
        (code, stdout, stderr) = Cli.Run("train", "--mnist=0", "--data-dir", DataDir, "--cache-dir", CacheDir, "--epochs", "1",
            "--batch_size=8", "--experiment_name=asc", "--runs-dir", RunsDir, "--seed", "3", "--threads", "1", "--mixup-alpha", "0.3", "--json");
        if (code != 0) throw new InvalidOperationException($"train failed ({code}): {stderr}");
        TrainOutput = stdout;
        TrainLog = stderr;
    }

    public string Root { get; } = Path.Combine(Path.GetTempPath(), "nc-asc-cli-" + Guid.NewGuid().ToString("N"));

    public string DataDir => Path.Combine(Root, "tau22");

    public string CacheDir => Path.Combine(Root, "cache");

    public string RunsDir => Path.Combine(Root, "runs");

    public string RunDir => Path.Combine(RunsDir, "asc");

    public string Best => Path.Combine(RunDir, "best.safetensors");

    public string MakeOutput { get; }

    public string TrainOutput { get; }

    public string TrainLog { get; }

    /// <summary>A clip of the dataset's test fold.</summary>
    public string TestClip => Path.Combine(DataDir, File.ReadLines(Path.Combine(DataDir, "evaluation_setup", "fold1_test.csv")).Skip(1).First().Trim());

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temporary folder is harmless; the test result matters.
        }
    }
}

public class AscCliTests(TinyAscRun run) : IClassFixture<TinyAscRun>
{
    private static readonly string[] Scenes =
        ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall", "street_pedestrian", "street_traffic", "tram"];

    [Fact]
    public void MakeSyntheticAsc_WritesTheTau22Layout()
    {
        Assert.Contains("training and", run.MakeOutput);
        foreach (var file in new[] { "meta.csv", "README.md", "evaluation_setup/fold1_train.csv", "evaluation_setup/fold1_test.csv", "evaluation_setup/fold1_evaluate.csv" })
            Assert.True(File.Exists(Path.Combine(run.DataDir, file)), $"{file} is missing");
        Assert.Equal(30, Directory.GetFiles(Path.Combine(run.DataDir, "audio"), "*.wav").Length);
        Assert.Equal("filename\tscene_label\tidentifier\tsource_label", File.ReadLines(Path.Combine(run.DataDir, "meta.csv")).First());
    }

    [Fact]
    public void Train_Asc_WritesTheRunFolderWithTheFrontEndInTheCheckpoint()
    {
        Assert.Contains("epoch 1/1", run.TrainLog);
        Assert.Contains("synthetic TAU22", File.ReadAllText(Path.Combine(run.RunDir, "config.json")));
        using var trained = JsonDocument.Parse(run.TrainOutput);
        var test = trained.RootElement.GetProperty("test");
        Assert.Equal(10, test.GetProperty("samples").GetInt64());
        Assert.Equal(Scenes, test.GetProperty("class_names").EnumerateArray().Select(e => e.GetString()));

        var (_, metadata) = TensorIO.LoadSafeTensors(run.Best);
        var mel = MelConfig.FromMetadata(metadata);
        Assert.Equal(new MelConfig(), mel);
        Assert.Equal(0.3, AugmentConfig.FromJson(metadata["augment.config"]).MixupAlpha);
        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(run.RunDir, "test.json")));
        Assert.True(report.RootElement.TryGetProperty("per_device_group", out _));
        Assert.Equal(1, report.RootElement.GetProperty("epoch").GetInt32());
    }

    [Fact]
    public void Test_Json_CarriesTheDcaseFigures()
    {
        // No --dataset: the checkpoint's front end marks it as an acoustic-scene model.
        var (code, stdout, stderr) = Cli.Run("test", "--checkpoint", run.Best, "--data-dir", run.DataDir, "--cache-dir", run.CacheDir, "--json");

        Assert.True(code == 0, stderr);
        Assert.Contains("unseen", stderr);
        Assert.Contains("confusion matrix", stderr);
        using var json = JsonDocument.Parse(stdout);
        var root = json.RootElement;
        Assert.Equal(10, root.GetProperty("samples").GetInt64());
        double macro = root.GetProperty("macro_accuracy").GetDouble();
        Assert.InRange(macro, 0, 1);
        // The loss is summed in float32 by the evaluator, the log loss in double by AscMetrics: equal to float32's
        // precision. (Not rounded to 5 places: 2.30256500 and 2.30256499 round apart; AVX2's sums gave the second.)
        Assert.Equal(root.GetProperty("loss").GetDouble(), root.GetProperty("log_loss").GetDouble(), 1e-5);
        var perDevice = root.GetProperty("per_device");
        int clips = 0;
        var devices = new List<string>();
        foreach (var device in perDevice.EnumerateObject())
        {
            Assert.Contains(device.Name, new[] { "a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6" });
            devices.Add(device.Name);
            clips += device.Value.GetProperty("count").GetInt32();
            Assert.InRange(device.Value.GetProperty("accuracy").GetDouble(), 0, 1);
        }
        Assert.Equal(10, clips);
        // Exactly the groups of the devices present: real (a, b, c), seen (s1-s3), unseen (s4-s6), each counting its
        // devices' clips.
        var expectedGroups = new Dictionary<string, string[]> { ["real"] = ["a", "b", "c"], ["seen"] = ["s1", "s2", "s3"], ["unseen"] = ["s4", "s5", "s6"] }
            .Where(g => g.Value.Any(devices.Contains)).ToDictionary(g => g.Key, g => g.Value);
        Assert.NotEmpty(expectedGroups);
        var groups = root.GetProperty("per_device_group");
        Assert.Equal(expectedGroups.Keys.Order(), groups.EnumerateObject().Select(g => g.Name).Order());
        foreach (var (name, members) in expectedGroups)
            Assert.Equal(members.Where(devices.Contains).Sum(d => perDevice.GetProperty(d).GetProperty("count").GetInt32()),
                groups.GetProperty(name).GetProperty("count").GetInt32());
        Assert.Equal(10, root.GetProperty("confusion_matrix").EnumerateArray().Sum(row => row.EnumerateArray().Sum(v => v.GetInt64())));
        // The macro accuracy is the mean of the per-class accuracies of the classes present.
        var perClass = root.GetProperty("per_class_accuracy").EnumerateArray().Where(v => v.ValueKind == JsonValueKind.Number).Select(v => v.GetDouble()).ToList();
        Assert.Equal(perClass.Average(), macro, 9);
    }

    [Fact]
    public void Test_AnAscCheckpointAsMnist_IsAUsageError()
    {
        var (code, _, stderr) = Cli.Run("test", "--checkpoint", run.Best, "--dataset", "mnist");
        Assert.Equal(2, code);
        Assert.Contains("trained on acoustic scenes", stderr);
    }

    [Fact]
    public void Predict_Wav_PrintsSceneProbabilities()
    {
        var logits = Path.Combine(run.Root, "clip-logits.npy");
        var (code, stdout, stderr) = Cli.Run("predict", "--checkpoint", run.Best, "--input", run.TestClip, "--output", logits, "--json");

        Assert.True(code == 0, stderr);
        Assert.Contains("predicted scene:", stderr);
        Assert.Contains("street_traffic", stderr);
        using var json = JsonDocument.Parse(stdout);
        var probabilities = json.RootElement.GetProperty("probabilities").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
        Assert.Equal(Scenes.ToHashSet(), probabilities.Keys.ToHashSet());
        Assert.Equal(1.0, probabilities.Values.Sum(), 6);
        string predicted = json.RootElement.GetProperty("predicted_scene").GetString()!;
        Assert.Equal(probabilities.MaxBy(p => p.Value).Key, predicted);
        Assert.Equal([1, 10], TensorIO.LoadNpy(logits).ShapeArray());
    }

    [Fact]
    public void Predict_Wav_WithoutOutput_PrintsOnStdout()
    {
        var (code, stdout, stderr) = Cli.Run("predict", "--checkpoint", run.Best, "--input", run.TestClip);
        Assert.True(code == 0, stderr);
        Assert.Contains("predicted scene:", stdout);
        foreach (var scene in Scenes) Assert.Contains(scene, stdout);
    }

    [Fact]
    public void Predict_Npy_WithoutOutput_IsAUsageError()
    {
        var (code, _, stderr) = Cli.Run("predict", "--checkpoint", run.Best, "--input", Path.Combine(run.Root, "x.npy"));
        Assert.Equal(2, code);
        Assert.Contains("--output is required", stderr);
    }

    [Fact]
    public void Mel_WritesA128By100Spectrogram()
    {
        var output = Path.Combine(run.Root, "mel.npy");
        var (code, stdout, stderr) = Cli.Run("mel", run.TestClip, "--out", output);

        Assert.True(code == 0, stderr);
        Assert.Contains("128 x 100", stdout);
        var mel = TensorIO.LoadNpy(output);
        Assert.Equal(DType.Float32, mel.DType);
        Assert.Equal([128, 100], mel.ShapeArray());
        Assert.All(mel.ToArray(), v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void Mel_ConfigWithOtherFrontEndOptions_IsAUsageError()
    {
        var (code, _, stderr) = Cli.Run("mel", run.TestClip, "--out", Path.Combine(run.Root, "m.npy"), "--config", "{\"n_mels\":64}", "--n-fft", "2048");
        Assert.Equal(2, code);
        Assert.Contains("replaces the other front-end options", stderr);
    }

    [Fact]
    public void Info_OfAnAscCheckpoint_DefaultsToOneSecondOfItsFrontEnd()
    {
        var (code, stdout, stderr) = Cli.Run("info", "--checkpoint", run.Best, "--json");
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal([1, 1, 128, 100], json.RootElement.GetProperty("input_shape").EnumerateArray().Select(e => e.GetInt32()));
        Assert.True(json.RootElement.GetProperty("dcase").GetProperty("passes").GetBoolean());
    }

    [Fact]
    public void ExportOnnx_OfAnAscCheckpoint_DefaultsToOneSecondOfItsFrontEnd()
    {
        var (code, stdout, stderr) = Cli.Run("export-onnx", "--checkpoint", run.Best, "--out", Path.Combine(run.Root, "asc.onnx"), "--json");
        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal([1, 128, 100], json.RootElement.GetProperty("input_shape").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Contains("input [batch, 1, 128, 100]", stderr);
    }

    [Fact]
    public void Prune_Asc_FindsTheFrontEndAndKeepsItInThePrunedModel()
    {
        var output = Path.Combine(run.Root, "pruned");
        var (code, stdout, stderr) = Cli.Run("prune", "--checkpoint", run.Best, "--dataset", "asc", "--input-shape", "1,128,100", "--ratio", "0.35",
            "--data-dir", run.DataDir, "--cache-dir", run.CacheDir, "--out", output, "--json");

        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        Assert.True(json.RootElement.GetProperty("parameters_after").GetInt64() < json.RootElement.GetProperty("parameters_before").GetInt64());
        Assert.True(json.RootElement.GetProperty("test_after").TryGetProperty("per_device", out _));
        var (_, metadata) = TensorIO.LoadSafeTensors(Path.Combine(output, "pruned.safetensors"));
        Assert.Equal(new MelConfig(), MelConfig.FromMetadata(metadata));
        Assert.True(metadata.ContainsKey("augment.config"));
    }
}

public class AscCliStandaloneTests
{
    [Theory]
    [InlineData("24 48 72", 59_804, true)]
    [InlineData("32 64 128", 131_316, false)]
    public void Info_SpectrogramInput_ChecksTheDcaseLimits(string widths, long parameters, bool passes)
    {
        var (code, stdout, stderr) = Cli.Run("info", "--channel-width", widths, "--input-shape", "1,128,100", "--json");

        Assert.True(code == 0, stderr);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(parameters, json.RootElement.GetProperty("parameters").GetInt64());
        var dcase = json.RootElement.GetProperty("dcase");
        Assert.Equal(128_000, dcase.GetProperty("parameter_limit").GetInt64());
        Assert.Equal(30_000_000, dcase.GetProperty("mac_limit").GetInt64());
        Assert.Equal(passes, dcase.GetProperty("passes").GetBoolean());
        Assert.Contains(passes ? "within the limits" : "OVER THE LIMITS", stderr);
    }

    [Fact]
    public void Info_MnistInput_HasNoDcaseCheck()
    {
        var (code, stdout, _) = Cli.Run("info", "--json");
        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(stdout);
        Assert.False(json.RootElement.TryGetProperty("dcase", out _));
    }

    [Fact]
    public void Train_Asc_MissingDataDir_SaysSo()
    {
        var missing = Path.Combine(Path.GetTempPath(), "nc-no-such-" + Guid.NewGuid().ToString("N"));
        var (code, _, stderr) = Cli.Run("train", "--dataset", "asc", "--data-dir", missing, "--experiment-name", "x", "--runs-dir", missing);

        Assert.Equal(1, code);
        Assert.Contains("does not exist", stderr);
        Assert.Contains("make-synthetic-asc", stderr);
        Assert.DoesNotContain("   at ", stderr);
        Assert.False(Directory.Exists(missing));
    }

    [Fact]
    public void Train_Asc_MalformedLayout_NamesTheFileAndLine()
    {
        var root = Path.Combine(Path.GetTempPath(), "nc-bad-asc-" + Guid.NewGuid().ToString("N"));
        try
        {
            Directory.CreateDirectory(Path.Combine(root, "evaluation_setup"));
            // Comma-separated instead of tab-separated: the reader must say which file and line.
            File.WriteAllText(Path.Combine(root, "meta.csv"), "filename,scene_label,identifier,source_label\naudio/bus-lyon-1-2-0-a.wav,bus,lyon-1,a\n");
            File.WriteAllText(Path.Combine(root, "evaluation_setup", "fold1_train.csv"), "filename\tscene_label\n");
            var (code, _, stderr) = Cli.Run("train", "--dataset", "asc", "--data-dir", root, "--experiment-name", "x", "--runs-dir", Path.Combine(root, "runs"));

            Assert.Equal(1, code);
            Assert.Contains("meta.csv", stderr);
            Assert.Contains("line 1", stderr);
            Assert.DoesNotContain("   at ", stderr);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Train_Asc_FolderWithoutMeta_SaysWhatIsExpected()
    {
        var root = Path.Combine(Path.GetTempPath(), "nc-empty-asc-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        try
        {
            var (code, _, stderr) = Cli.Run("train", "--mnist", "0", "--data-dir", root, "--experiment-name", "x", "--runs-dir", Path.Combine(root, "runs"));
            Assert.Equal(1, code);
            Assert.Contains("no meta.csv", stderr);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Theory]
    [InlineData("--mixstyle-p", "0.5")]
    [InlineData("--skip-missing")]
    [InlineData("--n-mels", "64")]
    public void Train_Mnist_WithAscOptions_IsAUsageError(params string[] option)
    {
        var (code, _, stderr) = Cli.Run(["train", "--dataset", "mnist", "--experiment-name", "x", .. option]);
        Assert.Equal(2, code);
        Assert.Contains($"{option[0]} applies to acoustic scenes only; add --dataset asc (or --mnist 0), or drop it.", stderr);
    }

    [Theory]
    [InlineData("test", "--skip-missing")]
    [InlineData("prune", "--cache-dir")]
    public void TestAndPrune_OnMnist_WithAnAscOption_AreUsageErrors(string command, string option)
    {
        string folder = Path.Combine(Path.GetTempPath(), "nc-asc-only-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        try
        {
            var model = new CpResNet(CpResNetConfig.FromWidths("24 48 72"), new Generator(1));
            string checkpoint = Path.Combine(folder, "small.safetensors");
            model.Save(checkpoint, model.Config.ToMetadata());
            string[] value = option == "--cache-dir" ? [option, folder] : [option];
            var (code, _, stderr) = Cli.Run([command, "--checkpoint", checkpoint, "--dataset", "mnist", .. value]);
            Assert.Equal(2, code);
            Assert.Contains($"{option} applies to acoustic scenes only; add --dataset asc, or drop it.", stderr);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Train_Mnist_WithSeveralAscOptions_NamesThemAll()
    {
        var (code, _, stderr) = Cli.Run("train", "--dataset", "mnist", "--experiment-name", "x", "--skip-missing", "--n-mels", "64");
        Assert.Equal(2, code);
        Assert.Contains("--skip-missing, --n-mels apply to acoustic scenes only; add --dataset asc (or --mnist 0), or drop them.", stderr);
    }

    [Theory]
    [InlineData("--mixstyle-p", "1.5", "--mixstyle-p")]
    [InlineData("--mixup-alpha", "-1", "--mixup-alpha")]
    [InlineData("--validation-fraction", "1", "--validation-fraction")]
    [InlineData("--n-fft", "1000", "NFft")]
    public void Train_Asc_BadFrontEndOrAugmentation_IsAUsageError(string option, string value, string named)
    {
        var (code, _, stderr) = Cli.Run("train", "--dataset", "asc", "--data-dir", Path.GetTempPath(), "--experiment-name", "x", option, value);
        Assert.Equal(2, code);
        Assert.Contains(named, stderr);
    }

    [Fact]
    public void Train_Asc_NoAugmentWithAnAugmentation_IsAUsageError()
    {
        var (code, _, stderr) = Cli.Run("train", "--dataset", "asc", "--experiment-name", "x", "--no-augment", "--roll", "100");
        Assert.Equal(2, code);
        Assert.Contains("--roll", stderr);
    }

    [Theory]
    [InlineData("mel")]
    [InlineData("make-synthetic-asc")]
    public void AscCommands_HaveHelp(string command)
    {
        var (code, stdout, _) = Cli.Run(command, "--help");
        Assert.Equal(0, code);
        Assert.Contains("Usage:", stdout);
    }
}
