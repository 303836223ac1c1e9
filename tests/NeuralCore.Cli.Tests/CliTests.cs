using System.Text.Json;
using NeuralCore.IO;
using NeuralCore.Models;

namespace NeuralCore.Cli.Tests;

public class InfoTests
{
    [Theory]
    [InlineData("24 48 72", 59_804)]
    [InlineData("32 64 128", 131_316)]
    public void Info_Json_ReportsTheExactParameterCount(string widths, long parameters)
    {
        var (code, stdout, stderr) = Cli.Run("info", "--model", "cpresnet", "--channel-width", widths, "--input-shape", "1,28,28", "--json");

        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(parameters, json.RootElement.GetProperty("parameters").GetInt64());
        Assert.True(json.RootElement.GetProperty("macs").GetInt64() > 0);
        Assert.Equal([1, 10], json.RootElement.GetProperty("output_shape").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Contains("stage1.block1.conv1", stderr);
    }

    /// <summary>A pruned checkpoint keeps the widths it was pruned from in its config (8 16 16 here, over tensors of 5 10 10): info and test give the widths it has.</summary>
    [Fact]
    public void Info_OfAPrunedCheckpoint_GivesTheWidthsItHas()
    {
        using var data = new TinyMnist();
        var folder = Directory.CreateTempSubdirectory("nc-info-pruned-").FullName;
        try
        {
            var pruned = Path.Combine(folder, "pruned.safetensors");
            new CpResNet(CpResNetConfig.FromWidths("5 10 10"), new Generator(1)).Save(pruned, CpResNetConfig.FromWidths("8 16 16").ToMetadata());
            var (code, stdout, stderr) = Cli.Run("info", "--checkpoint", pruned, "--json");
            Assert.True(code == 0, stderr);
            var json = JsonDocument.Parse(stdout).RootElement;
            Assert.Equal([5, 10, 10], json.GetProperty("channel_widths").EnumerateArray().Select(w => w.GetInt32()));
            Assert.Contains("CP-ResNet, channel widths 5 10 10 (", stderr);
            var (testCode, testOut, testErr) = Cli.Run("test", "--checkpoint", pruned, "--data-dir", data.DataDir);
            Assert.True(testCode == 0, testErr);
            Assert.Contains("(channel widths 5 10 10) on", testOut);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Info_WithoutJson_PrintsTheTableOnStdout()
    {
        var (code, stdout, stderr) = Cli.Run("info");
        Assert.Equal(0, code);
        Assert.Contains("59,804", stdout);
        Assert.Contains("Layer (type)", stdout);
        Assert.Equal("", stderr);
    }

    [Theory]
    [InlineData("info", "")]
    [InlineData("train", "")]
    [InlineData("test", "")]
    [InlineData("predict", "")]
    [InlineData("prune", "")]
    [InlineData("reproduce", " <dataset>")]
    [InlineData("report", " <runs>...")]
    [InlineData("bench", "")]
    [InlineData("export-onnx", "")]
    [InlineData("mel", " <input>")]
    [InlineData("make-synthetic-asc", "")]
    [InlineData("doctor", "")]
    [InlineData("selftest", "")]
    public void EveryCommand_HasHelp(string command, string arguments)
    {
        var (code, stdout, _) = Cli.Run(command, "--help");
        Assert.Equal(0, code);
        Assert.Contains("Usage:", stdout);
        // The usage line names the command neuralcore, whatever file runs it (here the test host).
        Assert.Contains($"  neuralcore {command}{arguments} [options]", stdout);
    }

    [Fact]
    public void TheRootHelpNamesNeuralcoreAndVersionPrintsTheVersion()
    {
        var (code, stdout, _) = Cli.Run("--help");
        Assert.Equal(0, code);
        Assert.Contains("  neuralcore [command] [options]", stdout);
        Assert.DoesNotContain("NeuralCore.Cli", stdout);
        // The version comes from the entry assembly (here the test host's), so this checks that --version answers.
        var (versionCode, version, _) = Cli.Run("--version");
        Assert.Equal(0, versionCode);
        Assert.Matches(@"^\d+\.\d+\.\d+", version);
        var (none, _, error) = Cli.Run();
        Assert.Equal(2, none);
        Assert.Contains("Run 'neuralcore --help'", error);
    }

    [Fact]
    public void Info_BadInputShape_IsAUsageErrorWithoutStackTrace()
    {
        var (code, _, stderr) = Cli.Run("info", "--input-shape", "28,28");
        Assert.Equal(2, code);
        Assert.Contains("reads as 2 dimensions (28 x 28) (commas, spaces and x or X separate them); expected 3", stderr);
        Assert.DoesNotContain("   at ", stderr);
        // An x is a separator too (1x28x28), so a stray one leaves a dimension out rather than failing to parse.
        var (_, _, stray) = Cli.Run("info", "--input-shape", "1,x,3");
        Assert.Contains("reads as 2 dimensions (1 x 3)", stray);
    }
}

public class TrainTestPredictTests
{
    [Fact]
    public void Train_ThenTest_ThenPredict_OnATinyIdxFolder()
    {
        using var data = new TinyMnist();
        // The seed's spellings, as in its README (--base_channels is accepted and ignored).
        var (code, stdout, stderr) = Cli.Run("train", "--batch_size=32", "--base_channels=32", "--weight_decay=0.003", "--lr=0.001",
            "--n_epochs=1", "--experiment_name=smoke", "--mnist=1", "--channel_width", "24 48 72",
            "--data-dir", data.DataDir, "--validation-count", "16", "--runs-dir", data.RunsDir, "--seed", "3", "--json");

        Assert.True(code == 0, stderr);
        Assert.Contains("--base-channels 32 has no effect", stderr);
        Assert.Contains("epoch 1/1", stderr);
        using var trained = JsonDocument.Parse(stdout);
        Assert.Equal(1, trained.RootElement.GetProperty("best_epoch").GetInt32());
        Assert.Equal(TinyMnist.TestCount, trained.RootElement.GetProperty("test").GetProperty("samples").GetInt64());
        var run = Path.Combine(data.RunsDir, "smoke");
        foreach (var file in new[] { "config.json", "metrics.jsonl", "best.safetensors", "last.ckpt", "test.json" })
            Assert.True(File.Exists(Path.Combine(run, file)), $"{file} is missing");
        using (var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "config.json"))))
            Assert.Equal(TinyMnist.TrainCount - 16, config.RootElement.GetProperty("train_samples").GetInt32());

        var best = Path.Combine(run, "best.safetensors");
        var (testCode, testOut, testErr) = Cli.Run("test", "--checkpoint", best, "--dataset", "mnist", "--data-dir", data.DataDir, "--json");
        Assert.True(testCode == 0, testErr);
        using var tested = JsonDocument.Parse(testOut);
        Assert.Equal(trained.RootElement.GetProperty("test").GetProperty("accuracy").GetDouble(), tested.RootElement.GetProperty("accuracy").GetDouble());
        Assert.Equal(10, tested.RootElement.GetProperty("confusion_matrix").GetArrayLength());

        // The resumable checkpoint loads as a model too.
        var (lastCode, _, lastErr) = Cli.Run("test", "--checkpoint", Path.Combine(run, "last.ckpt"), "--data-dir", data.DataDir);
        Assert.True(lastCode == 0, lastErr);

        var input = Path.Combine(data.Root, "x.npy");
        var output = Path.Combine(data.Root, "logits.npy");
        var images = Tensor.Rand([3, 1, 28, 28], new Generator(5));
        TensorIO.SaveNpy(input, images);
        var (predictCode, predictOut, predictErr) = Cli.Run("predict", "--checkpoint", best, "--input", input, "--output", output, "--json");
        Assert.True(predictCode == 0, predictErr);
        var logits = TensorIO.LoadNpy(output);
        Assert.Equal([3, 10], logits.ShapeArray());
        var model = CpResNet.LoadCheckpoint(best);
        model.Eval();
        using (Autograd.Autograd.NoGrad())
            Assert.Equal(model.Call(images).ToArray(), logits.ToArray());
        using var predicted = JsonDocument.Parse(predictOut);
        Assert.Equal(3, predicted.RootElement.GetProperty("predictions").GetArrayLength());

        // Integer pixels (0-255, as MNIST's files hold them) are refused with how to convert them.
        var integers = Path.Combine(data.Root, "digits.npy");
        TensorIO.SaveNpy(integers, Tensor.FromArray(new int[3 * 28 * 28], [3, 1, 28, 28]));
        var (integerCode, _, integerErr) = Cli.Run("predict", "--checkpoint", best, "--input", integers, "--output", output);
        Assert.Equal(1, integerCode);
        Assert.Contains($"--input {integers} holds integers, not float32; expected float images N x 1 x H x W scaled to [0, 1]", integerErr);
    }

    [Fact]
    public void Train_IntoAnExistingRun_WithoutResume_SaysHowToContinue()
    {
        using var data = new TinyMnist();
        string[] args = ["train", "--epochs", "1", "--batch-size", "48", "--experiment-name", "twice", "--data-dir", data.DataDir,
            "--validation-count", "16", "--runs-dir", data.RunsDir, "--limit-train", "48"];
        Assert.Equal(0, Cli.Run(args).Code);

        var (code, _, stderr) = Cli.Run(args);

        Assert.Equal(1, code);
        Assert.Contains("already holds a run", stderr);
        Assert.Contains("--resume", stderr);
        Assert.DoesNotContain("   at ", stderr);
        var (resumed, resumedOut, resumedErr) = Cli.Run([.. args, "--resume"]);
        Assert.True(resumed == 0, resumedErr);
        Assert.Contains("Resuming 'twice' after epoch 1 of 1", resumedOut);
    }

    [Fact]
    public void PlainStateDict_NeedsTheWidths_AndLoadsWithThem()
    {
        using var data = new TinyMnist();
        var plain = Path.Combine(data.Root, "plain.safetensors");
        var model = new CpResNet(CpResNetConfig.FromWidths("24 48 72"), new Generator(1));
        // No metadata, as torch's save_file(model.state_dict()) writes it; num_batches_tracked stays Int64.
        TensorIO.SaveSafeTensors(plain, model.StateDict());

        var (code, _, stderr) = Cli.Run("test", "--checkpoint", plain, "--data-dir", data.DataDir);
        Assert.Equal(2, code);
        Assert.Contains("plain state dict", stderr);
        Assert.Contains("--channel-width", stderr);

        var (okCode, okOut, okErr) = Cli.Run("test", "--checkpoint", plain, "--model", "cpresnet", "--channel-width", "24 48 72", "--data-dir", data.DataDir, "--json");
        Assert.True(okCode == 0, okErr);
        using var json = JsonDocument.Parse(okOut);
        Assert.Equal(TinyMnist.TestCount, json.RootElement.GetProperty("samples").GetInt64());

        var unrelated = Path.Combine(data.Root, "unrelated.safetensors");
        TensorIO.SaveSafeTensors(unrelated, new Dictionary<string, Tensor> { ["encoder.weight"] = Tensor.Zeros([4, 4]) });
        var (wrongCode, _, wrongErr) = Cli.Run("info", "--checkpoint", unrelated, "--channel-width", "24 48 72");
        Assert.Equal(1, wrongCode);
        Assert.Contains("does not fit a CP-ResNet with channel widths 24 48 72", wrongErr);
        Assert.Contains("encoder.weight", wrongErr);
    }
}

public class ErrorTests
{
    [Theory]
    [InlineData(new[] { "test", "--checkpoint", "no/such/file.safetensors" }, 1, "Checkpoint not found")]
    [InlineData(new[] { "train", "--experiment-name", "x", "--batch-size", "many" }, 2, "many")]
    [InlineData(new[] { "train", "--experiment-name", "x", "--no-such-option" }, 2, "--no-such-option")]
    [InlineData(new[] { "train" }, 2, "--experiment-name")]
    [InlineData(new[] { "train", "--experiment-name", "x", "--mnist", "2" }, 2, "must be 1 (MNIST) or 0 (ASC)")]
    [InlineData(new[] { "train", "--experiment-name", "x", "--dataset", "mnist", "--mnist", "0" }, 2, "contradict")]
    [InlineData(new[] { "train", "--experiment-name", "x", "--channel-width", "24 48" }, 2, "has 2")]
    [InlineData(new[] { "train", "--experiment-name", "x", "--lr", "-1" }, 2, "--lr must be a positive number")]
    [InlineData(new[] { "train", "--experiment-name", "x", "--device", "tpu" }, 2, "Unknown device 'tpu'")]
    [InlineData(new[] { "train", "--experiment-name", "x", "--data-dir", "no/such/folder" }, 1, "MNIST data folder not found")]
    [InlineData(new[] { "info", "--model", "resnet50" }, 2, "only model so far is cpresnet")]
    public void UserMistakes_GiveOneClearMessage_AndAnExitCode(string[] args, int expectedCode, string expectedText)
    {
        var (code, stdout, stderr) = Cli.Run(args);
        Assert.Equal(expectedCode, code);
        Assert.Contains(expectedText, stderr);
        Assert.DoesNotContain("   at ", stderr);
        Assert.Equal("", stdout);
    }

    [Theory]
    [InlineData("{\n  \"Ratio\": 0.4,\n  \"ParametersBefore\": 131316,\n  \"Para", "LineNumber: 3")]
    [InlineData("{}", "it holds no steps or fine-tuning runs")]
    public void Report_OnAPruningFolderWithADamagedResultJson_GivesOneClearMessage(string text, string reason)
    {
        using var data = new TinyMnist();
        var folder = Path.Combine(data.Root, "pruned");
        Directory.CreateDirectory(folder);
        var config = CpResNetConfig.FromWidths("24 48 72");
        new CpResNet(config, new Generator(1)).Save(Path.Combine(folder, "pruned.safetensors"), config.ToMetadata());
        File.WriteAllText(Path.Combine(folder, "result.json"), text);

        var (code, _, stderr) = Cli.Run("report", folder, "--out", Path.Combine(data.Root, "report"), "--no-throughput");

        Assert.Equal(1, code);
        var message = Cli.OneLine(stderr);
        Assert.StartsWith($"error: {Path.Combine(folder, "result.json")} is not a pruning result (", message);
        Assert.Contains(reason, message);
        Assert.Contains("Delete it and run the command that made", message);
        Assert.Contains("again with --resume", message);
    }

    [Fact]
    public void Predict_RejectsImagesOfTheWrongShape()
    {
        using var data = new TinyMnist();
        var checkpoint = Path.Combine(data.Root, "model.safetensors");
        var config = CpResNetConfig.FromWidths("24 48 72");
        new CpResNet(config, new Generator(1)).Save(checkpoint, config.ToMetadata());
        var input = Path.Combine(data.Root, "channels-last.npy");
        TensorIO.SaveNpy(input, Tensor.Zeros([2, 28, 28, 1]));

        var (code, _, stderr) = Cli.Run("predict", "--checkpoint", checkpoint, "--input", input, "--output", Path.Combine(data.Root, "out.npy"));

        Assert.Equal(1, code);
        Assert.Contains("has shape [2, 28, 28, 1]; expected [N, 1, H, W]", stderr);
        Assert.Contains("channels-last", stderr);
        Assert.False(File.Exists(Path.Combine(data.Root, "out.npy")));
    }
}
