using System.Text.Json;
using NeuralCore.IO;
using NeuralCore.NN;

namespace NeuralCore.Training.Tests;

public class TrainerTests
{
    [Fact]
    public void Fit_LearnsTheSyntheticTask_AndWritesTheRunFolder()
    {
        using var dir = new TempDir();
        var (train, validation, test) = Synthetic.Loaders();
        var model = Synthetic.Net(1);
        var trainer = new Trainer(Synthetic.Options(dir.Path, epochs: 5));

        var result = trainer.Fit(model, train, validation, TestContext.Current.CancellationToken);
        var report = trainer.TestBest(Synthetic.Net(99), test);

        Assert.Equal(5, result.History.Count);
        Assert.True(result.History[^1].TrainLoss < result.History[0].TrainLoss / 2,
            $"train loss went from {result.History[0].TrainLoss} to {result.History[^1].TrainLoss}");
        Assert.True(report.Accuracy > 0.9, $"test accuracy {report.Accuracy} (chance is 0.25)");
        Assert.Equal(40, report.Samples);
        Assert.Equal(40, report.ConfusionMatrix.Sum(row => row.Sum()));

        var files = trainer.Files;
        var lines = File.ReadAllLines(files.Metrics);
        Assert.Equal(5, lines.Length);
        using (var first = JsonDocument.Parse(lines[0]))
        {
            foreach (var key in new[] { "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds" })
                Assert.True(first.RootElement.TryGetProperty(key, out _), $"metrics line lacks '{key}': {lines[0]}");
            Assert.Equal(1, first.RootElement.GetProperty("epoch").GetInt32());
        }
        // The seed's warm-up: epoch 1 runs at base lr x exp(-5 (1 - 0.5/W)^2) with W = 1.
        Assert.Equal(0.02 * Math.Exp(-5 * 0.25), result.History[0].LearningRate, 12);

        var (_, metadata) = TensorIO.LoadSafeTensors(files.Best);
        Assert.Equal("tiny-test-net", metadata["model"]);
        Assert.Equal(result.BestEpoch.ToString(), metadata["epoch"]);
        using (var config = JsonDocument.Parse(File.ReadAllText(files.Config)))
        {
            Assert.Equal(16, config.RootElement.GetProperty("batch_size").GetInt32());
            Assert.Equal("synthetic quadrants", config.RootElement.GetProperty("data").GetString());
        }
        using (var testJson = JsonDocument.Parse(File.ReadAllText(files.Test)))
        {
            Assert.Equal(report.Accuracy, testJson.RootElement.GetProperty("accuracy").GetDouble());
            Assert.Equal(result.BestEpoch, testJson.RootElement.GetProperty("epoch").GetInt32());
        }
        Assert.Empty(Directory.GetFiles(files.Directory, "*.tmp"));
    }

    /// <summary>
    /// The compiled training step (the default for a supported model on the CPU) trains bit for bit like eager autograd,
    /// including a smaller last batch, which runs eagerly; an unsupported model says so and trains eagerly.
    /// </summary>
    [Fact]
    public void CompiledTrainingStep_GivesTheWeightsOfEagerTraining()
    {
        (Module Model, string Metrics, List<string> Messages) Run(string runs, bool compile, Func<ulong, Module> net)
        {
            var (train, validation, _) = Synthetic.Loaders(batchSize: 20);
            var model = net(1);
            var messages = new Messages();
            var options = Synthetic.Options(runs, epochs: 3) with { BatchSize = 20, CompileTrainingStep = compile };
            new Trainer(options, messages).Fit(model, train, validation, TestContext.Current.CancellationToken);
            return (model, Path.Combine(runs, "tiny", "metrics.jsonl"), messages.Lines);
        }

        using (var eagerDir = new TempDir())
        using (var compiledDir = new TempDir())
        {
            var eager = Run(eagerDir.Path, compile: false, Synthetic.ConvNet);
            var compiled = Run(compiledDir.Path, compile: true, Synthetic.ConvNet);
            AssertBitIdentical(eager.Model, compiled.Model);
            AssertSameMetrics(eager.Metrics, compiled.Metrics);
            Assert.DoesNotContain(compiled.Messages, m => m.Contains("training eagerly"));
        }
        using (var linearDir = new TempDir())
        {
            var linear = Run(linearDir.Path, compile: true, Synthetic.Net);
            Assert.Contains(linear.Messages, m => m.Contains("training eagerly") && m.Contains("train this model eagerly"));
        }
    }

    private sealed class Messages : IProgressReporter
    {
        public List<string> Lines { get; } = [];
        public void RunStarted(RunStartInfo info) { }
        public void EpochStarted(int e, int epochs, int batches) { }
        public void BatchCompleted(BatchProgress progress) { }
        public void EpochEnded(EpochMetrics? metrics, bool isBest) { }
        public void Message(string text) => Lines.Add(text);
    }

    [Fact]
    public void Resume_AfterCancellationMidEpoch_EndsWithBitIdenticalWeights()
    {
        using var reference = new TempDir();
        var expected = TrainUninterrupted(reference.Path, epochs: 4);

        using var dir = new TempDir();
        var (train, validation, _) = Synthetic.Loaders();
        using var cancel = new CancellationTokenSource();
        var stopper = new CancelAt(epoch: 3, batch: 2, cancel);
        Assert.Throws<OperationCanceledException>(() =>
            new Trainer(Synthetic.Options(dir.Path, epochs: 4), stopper).Fit(Synthetic.Net(1), train, validation, cancel.Token));
        Assert.Equal(2, TrainingCheckpoint.Load(Path.Combine(dir.Path, "tiny", "last.ckpt")).Epoch);

        // A differently initialised model: everything must come from the checkpoint.
        var resumed = Synthetic.Net(12345);
        var (train2, validation2, _) = Synthetic.Loaders();
        var result = new Trainer(Synthetic.Options(dir.Path, epochs: 4, resume: true)).Fit(resumed, train2, validation2, TestContext.Current.CancellationToken);

        Assert.Equal(2, result.ResumedFromEpoch);
        AssertBitIdentical(expected.Model, resumed);
        AssertSameMetrics(expected.MetricsFile, Path.Combine(dir.Path, "tiny", "metrics.jsonl"));
    }

    [Theory]
    [InlineData("metrics.jsonl")]
    [InlineData("best.safetensors")]
    [InlineData("last.ckpt")]
    public void Resume_AfterAKillBetweenTheFilesOfAnEpoch_EndsWithBitIdenticalWeights(string killedAfter)
    {
        using var reference = new TempDir();
        var expected = TrainUninterrupted(reference.Path, epochs: 3);

        using var dir = new TempDir();
        var (train, validation, _) = Synthetic.Loaders();
        var killed = new Trainer(Synthetic.Options(dir.Path, epochs: 3));
        int epochsWritten = 0;
        killed.AfterWrite = path =>
        {
            // Kill in epoch 2 (after epoch 1's checkpoint) right after the chosen file; on this task epoch 2 improves the
            // validation loss, so it writes best.safetensors. last.ckpt is killed after epoch 2's write.
            if (Path.GetFileName(path) == "last.ckpt") epochsWritten++;
            if (Path.GetFileName(path) == killedAfter && epochsWritten == (killedAfter == "last.ckpt" ? 2 : 1))
                throw new SimulatedKill();
        };
        Assert.Throws<SimulatedKill>(() => killed.Fit(Synthetic.Net(1), train, validation, TestContext.Current.CancellationToken));

        var resumed = Synthetic.Net(777);
        var (train2, validation2, _) = Synthetic.Loaders();
        new Trainer(Synthetic.Options(dir.Path, epochs: 3, resume: true)).Fit(resumed, train2, validation2, TestContext.Current.CancellationToken);

        AssertBitIdentical(expected.Model, resumed);
        AssertSameMetrics(expected.MetricsFile, Path.Combine(dir.Path, "tiny", "metrics.jsonl"));
        var (expectedBest, expectedMetadata) = TensorIO.LoadSafeTensors(Path.Combine(reference.Path, "tiny", "best.safetensors"));
        var (actualBest, actualMetadata) = TensorIO.LoadSafeTensors(Path.Combine(dir.Path, "tiny", "best.safetensors"));
        Assert.Equal(expectedMetadata, actualMetadata);
        Assert.Equal(expectedBest.Keys.Order(), actualBest.Keys.Order());
        foreach (var (key, tensor) in expectedBest)
            Assert.Equal(tensor.AsType(DType.Float32).ToArray(), actualBest[key].AsType(DType.Float32).ToArray());
    }

    [Fact]
    public void Fit_RefusesToOverwriteAnExistingRunWithoutResume()
    {
        using var dir = new TempDir();
        TrainUninterrupted(dir.Path, epochs: 1);
        var (train, validation, _) = Synthetic.Loaders();
        var error = Assert.Throws<TrainingException>(() =>
            new Trainer(Synthetic.Options(dir.Path, epochs: 2)).Fit(Synthetic.Net(1), train, validation, TestContext.Current.CancellationToken));
        Assert.Contains("--resume", error.Message);
        Assert.Contains("epoch 1", error.Message);
    }

    [Fact]
    public void Resume_WithDifferentOptions_NamesTheDifference()
    {
        using var dir = new TempDir();
        TrainUninterrupted(dir.Path, epochs: 1);
        var (train, validation, _) = Synthetic.Loaders();
        var options = Synthetic.Options(dir.Path, epochs: 2, resume: true) with { LearningRate = 0.5 };
        var error = Assert.Throws<TrainingException>(() => new Trainer(options).Fit(Synthetic.Net(1), train, validation, TestContext.Current.CancellationToken));
        Assert.Contains("lr: run 0.02, now 0.5", error.Message);
    }

    [Fact]
    public void NonFiniteLoss_StopsWithEpochAndBatch_AndKeepsTheLastGoodCheckpoint()
    {
        using var dir = new TempDir();
        var (train, validation, _) = Synthetic.Loaders();
        // 96 samples / 16 = 6 batches per epoch: the 9th training forward is epoch 2, batch 3.
        var model = new PoisonAfter(Synthetic.Net(1), trainingCalls: 8);
        // A model whose ops change from call to call must train eagerly: a compiled step replays the traced ones.
        var trainer = new Trainer(Synthetic.Options(dir.Path, epochs: 3) with { CompileTrainingStep = false });

        var error = Assert.Throws<NonFiniteLossException>(() => trainer.Fit(model, train, validation, TestContext.Current.CancellationToken));

        Assert.Equal((2, 3, 1), (error.Epoch, error.Batch, error.LastGoodEpoch));
        Assert.Contains("epoch 2, batch 3 of 6", error.Message);
        Assert.Contains("NaN", error.Message);
        var checkpoint = TrainingCheckpoint.Load(trainer.Files.Last);
        Assert.Equal(1, checkpoint.Epoch);
        Assert.All(checkpoint.Model.Values.Where(t => t.DType == DType.Float32), t => Assert.All(t.ToArray(), v => Assert.True(float.IsFinite(v))));
        Assert.Single(File.ReadAllLines(trainer.Files.Metrics));
    }

    [Fact]
    public void Checkpoint_AFailedWriteLeavesThePreviousFileIntact()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "last.ckpt");
        var model = Synthetic.Net(1);
        var good = Checkpoint(model.StateDict(), epoch: 1);
        good.Save(path);
        var before = File.ReadAllBytes(path);

        var failing = new FailingStateDict(model.StateDict(), failAfter: 3);
        Assert.Throws<IOException>(() => Checkpoint(failing, epoch: 2).Save(path));

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(1, TrainingCheckpoint.Load(path).Epoch);
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void Checkpoint_RoundTripsEveryField()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "last.ckpt");
        var model = Synthetic.Net(1);
        var original = Checkpoint(model.StateDict(), epoch: 4);
        original.Optimizer.Tensors["state.0.exp_avg"] = Tensor.FromArray([1.5f, -2f], 2);
        original.Optimizer.Scalars["state.0.step"] = 24;
        original.Save(path);

        var loaded = TrainingCheckpoint.Load(path);

        Assert.Equal(4, loaded.Epoch);
        Assert.Equal(0.125, loaded.BestValidationLoss);
        Assert.Equal(original.DefaultGenerator, loaded.DefaultGenerator);
        Assert.Equal(original.History, loaded.History);
        Assert.Equal(24, loaded.Optimizer.Scalars["state.0.step"]);
        Assert.Equal([1.5f, -2f], loaded.Optimizer.Tensors["state.0.exp_avg"].ToArray());
        Assert.Equal(0.25, loaded.Scheduler["last_epoch"]);
        Assert.Equal(model.StateDict().Keys.Order(), loaded.Model.Keys.Order());
        Assert.Equal(DType.Int64, loaded.Model["1.num_batches_tracked"].DType);
        Assert.Equal("tiny-test-net", loaded.ModelMetadata["model"]);
    }

    [Fact]
    public void Checkpoint_LoadingAPlainModelFile_SaysItIsNoTrainingCheckpoint_AndWhatToDo()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "last.ckpt");
        var model = Synthetic.Net(1);
        model.Save(path, new Dictionary<string, string> { ["model"] = "tiny-test-net" });

        var error = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Load(path));

        Assert.Contains($"'{path}' is not a training checkpoint", error.Message);
        Assert.Contains("training.format", error.Message);
        Assert.Contains("start the run again without --resume", error.Message);
    }

    [Theory]
    [InlineData("training.epoch", null, "metadata key 'training.epoch' is missing")]
    [InlineData("training.history", "[{\"Epoch\": 1, \"TrainLo", "metadata key 'training.history' cannot be read")]
    [InlineData("training.scheduler", "null", "metadata key 'training.scheduler' holds null")]
    [InlineData("training.threads", "two", "metadata key 'training.threads' holds 'two'")]
    [InlineData("training.options", "{\"lr\": 0.0", "metadata key 'training.options' cannot be read")]
    [InlineData("training.options", "[1, 2]", "metadata key 'training.options' does not hold a JSON object")]
    public void Checkpoint_WithDamagedTrainingMetadata_NamesTheFileTheKeyAndWhatToDo(string key, string? value, string expected)
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "last.ckpt");
        Checkpoint(Synthetic.Net(1).StateDict(), epoch: 2).Save(path);
        var (tensors, saved) = TensorIO.LoadSafeTensors(path);
        var metadata = new Dictionary<string, string>(saved);
        if (value is null) metadata.Remove(key);
        else metadata[key] = value;
        TensorIO.SaveSafeTensors(path, tensors, metadata);

        var error = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Load(path));

        Assert.StartsWith($"'{path}' is a damaged training checkpoint: ", error.Message);
        Assert.Contains(expected, error.Message);
        Assert.Contains("start the run again without --resume", error.Message);
    }

    [Fact]
    public void Resume_FromADamagedLastCheckpoint_IsTheCheckpointsError()
    {
        using var dir = new TempDir();
        TrainUninterrupted(dir.Path, epochs: 1);
        var last = Path.Combine(dir.Path, "tiny", "last.ckpt");
        var (tensors, saved) = TensorIO.LoadSafeTensors(last);
        TensorIO.SaveSafeTensors(last, tensors, new Dictionary<string, string>(saved) { ["training.options"] = "{\"lr\": " });
        var (train, validation, _) = Synthetic.Loaders();

        var error = Assert.Throws<InvalidDataException>(() =>
            new Trainer(Synthetic.Options(dir.Path, epochs: 2, resume: true)).Fit(Synthetic.Net(1), train, validation, TestContext.Current.CancellationToken));

        Assert.StartsWith($"'{last}' is a damaged training checkpoint: metadata key 'training.options'", error.Message);
    }

    private static TrainingCheckpoint Checkpoint(IReadOnlyDictionary<string, Tensor> model, int epoch) => new()
    {
        Epoch = epoch,
        BestValidationLoss = 0.125,
        BestEpoch = epoch,
        Model = model,
        Optimizer = new Optim.OptimizerStateDict(),
        Scheduler = new Dictionary<string, double> { ["last_epoch"] = 0.25 },
        DefaultGenerator = new Generator(5).GetState(),
        History = [new EpochMetrics(1, 1.5, 0.25, 1.25, 0.5, 1e-3, 0.1)],
        Options = "{}",
        ModelMetadata = new Dictionary<string, string> { ["model"] = "tiny-test-net" },
        Threads = 1,
    };

    private static (Module Model, string MetricsFile) TrainUninterrupted(string runs, int epochs)
    {
        var (train, validation, _) = Synthetic.Loaders();
        var model = Synthetic.Net(1);
        new Trainer(Synthetic.Options(runs, epochs)).Fit(model, train, validation, TestContext.Current.CancellationToken);
        return (model, Path.Combine(runs, "tiny", "metrics.jsonl"));
    }

    private static void AssertBitIdentical(Module expected, Module actual)
    {
        var a = expected.StateDict();
        var b = actual.StateDict();
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (key, tensor) in a)
        {
            if (tensor.DType == DType.Int64)
            {
                Assert.Equal(tensor.ToInt64Array(), b[key].ToInt64Array());
                continue;
            }
            var x = tensor.ToArray();
            var y = b[key].ToArray();
            for (int i = 0; i < x.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(x[i]) == BitConverter.SingleToInt32Bits(y[i]), $"{key}[{i}]: {x[i]:R} vs {y[i]:R}");
        }
    }

    /// <summary>Same epochs with the same losses, accuracies and learning rates (the seconds differ).</summary>
    private static void AssertSameMetrics(string expectedFile, string actualFile)
    {
        static string[] Strip(string file) => File.ReadAllLines(file)
            .Select(line => JsonSerializer.Deserialize<EpochMetrics>(line)! with { Seconds = 0 })
            .Select(m => JsonSerializer.Serialize(m)).ToArray();
        Assert.Equal(Strip(expectedFile), Strip(actualFile));
    }

    private sealed class SimulatedKill : Exception;

    private sealed class CancelAt(int epoch, int batch, CancellationTokenSource cancel) : IProgressReporter
    {
        public void RunStarted(RunStartInfo info) { }
        public void EpochStarted(int e, int epochs, int batches) { }
        public void BatchCompleted(BatchProgress progress)
        {
            if (progress.Epoch == epoch && progress.Batch == batch) cancel.Cancel();
        }
        public void EpochEnded(EpochMetrics? metrics, bool isBest) { }
        public void Message(string text) { }
    }

    /// <summary>Wraps a model and returns NaN logits from the n+1-th training-mode forward on.</summary>
    private sealed class PoisonAfter : Module
    {
        private readonly int _trainingCalls;
        private int _calls;

        public PoisonAfter(Module inner, int trainingCalls)
        {
            _trainingCalls = trainingCalls;
            RegisterModule("inner", inner);
        }

        public override Tensor Forward(Tensor input)
        {
            var output = NamedChildren().Single().Module.Call(input);
            if (!Training) return output;
            return ++_calls > _trainingCalls ? output.Mul(Tensor.FromArray([float.NaN], 1)) : output;
        }
    }

    /// <summary>A state dict whose enumeration fails part-way, like a disk that fills up during a write.</summary>
    private sealed class FailingStateDict(Dictionary<string, Tensor> inner, int failAfter) : IReadOnlyDictionary<string, Tensor>
    {
        public Tensor this[string key] => inner[key];
        public IEnumerable<string> Keys => inner.Keys;
        public IEnumerable<Tensor> Values => inner.Values;
        public int Count => inner.Count;
        public bool ContainsKey(string key) => inner.ContainsKey(key);
        public bool TryGetValue(string key, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out Tensor value) => inner.TryGetValue(key, out value);
        public IEnumerator<KeyValuePair<string, Tensor>> GetEnumerator()
        {
            int n = 0;
            foreach (var pair in inner)
            {
                if (n++ == failAfter) throw new IOException("No space left on device (simulated).");
                yield return pair;
            }
        }
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
