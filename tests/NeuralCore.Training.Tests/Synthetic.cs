using NeuralCore.Data;
using NeuralCore.NN;

namespace NeuralCore.Training.Tests;

/// <summary>A tiny task that trains in well under a second: 4 classes of 8 x 8 images, class c lights up quadrant c.</summary>
internal static class Synthetic
{
    public const int Classes = 4;
    public const int Size = 8;

    public static ImageDataset Images(int count, ulong seed)
    {
        var g = new Generator(seed);
        var pixels = new float[count * Size * Size];
        var labels = new int[count];
        for (int i = 0; i < count; i++)
        {
            int c = i % Classes;
            labels[i] = c;
            int r0 = c / 2 * (Size / 2), c0 = c % 2 * (Size / 2);
            for (int r = 0; r < Size; r++)
                for (int k = 0; k < Size; k++)
                {
                    bool lit = r >= r0 && r < r0 + Size / 2 && k >= c0 && k < c0 + Size / 2;
                    pixels[i * Size * Size + r * Size + k] = (lit ? 0.6f : 0f) + 0.4f * g.NextSingle();
                }
        }
        return new ImageDataset(pixels, labels, Size, Size, Classes, "synthetic quadrants");
    }

    /// <summary>Conv + batch norm (a buffer with Int64 num_batches_tracked) + linear head: [N, 1, 8, 8] -> [N, 4].</summary>
    public static Module Net(ulong seed)
    {
        var g = new Generator(seed);
        return new Sequential(
            new Conv2d(1, 4, 3, padding: 1, generator: g),
            new BatchNorm2d(4),
            new ReLU(),
            new MaxPool2d(2),
            new Flatten(),
            new Linear(4 * 4 * 4, Classes, generator: g));
    }

    /// <summary>An all-convolutional net the compiled training step supports: [N, 1, 8, 8] -> [N, 4].</summary>
    public static Module ConvNet(ulong seed)
    {
        var g = new Generator(seed);
        return new Sequential(
            new Conv2d(1, 6, 3, padding: 1, bias: false, generator: g),
            new BatchNorm2d(6),
            new ReLU(),
            new MaxPool2d(2),
            new Conv2d(6, Classes, 1, generator: g),
            new AdaptiveAvgPool2d(1),
            new Flatten());
    }

    public static (DataLoader Train, DataLoader Validation, DataLoader Test) Loaders(int batchSize = 16, ulong seed = 7)
    {
        var train = new DataLoader(new ImageBatchSource(Images(96, 1)), batchSize, shuffle: true, seed);
        var validation = new DataLoader(new ImageBatchSource(Images(32, 2)), 32, shuffle: false, 0);
        var test = new DataLoader(new ImageBatchSource(Images(40, 3)), 32, shuffle: false, 0);
        return (train, validation, test);
    }

    /// <summary>Options for a fast run: a short warm-up so a few epochs learn, in a fresh temporary runs folder.</summary>
    public static TrainerOptions Options(string runsDirectory, int epochs, bool resume = false) => new()
    {
        Epochs = epochs,
        BatchSize = 16,
        LearningRate = 0.02,
        WeightDecay = 1e-4,
        WarmupEpochs = 1,
        RampdownStart = 3,
        RampdownLength = 4,
        Seed = 7,
        RunsDirectory = runsDirectory,
        ExperimentName = "tiny",
        Resume = resume,
        ModelMetadata = new Dictionary<string, string> { ["model"] = "tiny-test-net" },
        DataDescription = "synthetic quadrants",
    };
}

/// <summary>A temporary folder deleted at the end of a test.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir() => System.IO.Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "nc-training-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temporary folder is harmless; the test result matters.
        }
    }
}
