using BenchmarkDotNet.Attributes;
using NeuralCore.Audio;
using NeuralCore.Backends.Cpu;
using NeuralCore.Data;

namespace NeuralCore.Benchmarks;

/// <summary>
/// How fast the input pipelines produce batches, to set beside the training steps that consume them
/// (<see cref="ModelTrainBenchmarks"/>): MNIST batches of 256 x 1 x 28 x 28 from a shuffled <see cref="DataLoader"/>
/// with its background prefetch, and the seed's log-mel front end on 64 one-second clips at 32 kHz (an ASC batch once
/// the resample cache holds the clips), in eval mode and with the training augmentation (fmax jitter, Freq-MixStyle).
/// Times are per batch.
/// </summary>
[Config(typeof(ModelConfig))]
[MemoryDiagnoser]
public class DataPipelineBenchmarks
{
    private const int MnistBatches = 40;
    private const int MelBatch = 64;
    private DataLoader mnist = null!;
    private MelFrontEnd frontEnd = null!;
    private float[][] clips = null!;
    private Generator generator = null!;

    [GlobalSetup]
    public void Setup()
    {
        CpuThreading.Threads = ModelInput.Threads;
        var random = new Random(1);
        int count = MnistBatches * 256;
        var pixels = new float[count * 28 * 28];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = random.NextSingle();
        var labels = Enumerable.Range(0, count).Select(i => i % 10).ToArray();
        mnist = new DataLoader(new ImageBatchSource(new ImageDataset(pixels, labels, 28, 28)), 256, shuffle: true, seed: 1);
        frontEnd = new MelFrontEnd(new MelConfig(), new AugmentConfig());
        clips = Enumerable.Range(0, MelBatch).Select(_ => Enumerable.Range(0, 32000).Select(_ => random.NextSingle() * 2 - 1).ToArray()).ToArray();
        generator = new Generator(2);
    }

    [Benchmark(OperationsPerInvoke = MnistBatches, Description = "MNIST batch 256 (shuffled DataLoader, prefetch 2)")]
    public int MnistBatch()
    {
        int seen = 0;
        foreach (var batch in mnist) seen += batch.Indices.Length;
        return seen;
    }

    [Benchmark(Description = "mel batch 64 x 1 s, eval")]
    public float MelEval() => frontEnd.Forward(clips, training: false).AsSpan()[0];

    [Benchmark(Description = "mel batch 64 x 1 s, training augmentation")]
    public float MelTraining() => frontEnd.Forward(clips, training: true, generator).AsSpan()[0];
}
