using NeuralCore.Data;

namespace NeuralCore.Cli.Tests;

/// <summary>Runs the command in-process and captures what it prints.</summary>
internal static class Cli
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>The one non-empty line of <paramref name="stderr"/> (a user error is reported as a single line); fails otherwise.</summary>
    public static string OneLine(string stderr) =>
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}

/// <summary>A temporary folder with four tiny MNIST-format IDX files (random 28 x 28 digits), deleted at the end.</summary>
internal sealed class TinyMnist : IDisposable
{
    public const int TrainCount = 96;
    public const int TestCount = 40;

    public TinyMnist()
    {
        Directory.CreateDirectory(DataDir);
        Write("train", TrainCount, seed: 1);
        Write("t10k", TestCount, seed: 2);
    }

    public string Root { get; } = Path.Combine(Path.GetTempPath(), "nc-cli-" + Guid.NewGuid().ToString("N"));

    public string DataDir => Path.Combine(Root, "mnist");

    public string RunsDir => Path.Combine(Root, "runs");

    private void Write(string prefix, int count, ulong seed)
    {
        var g = new Generator(seed);
        var pixels = new byte[count * 28 * 28];
        var labels = new byte[count];
        for (int i = 0; i < count; i++)
        {
            labels[i] = (byte)(i % 10);
            // A bright bar whose row depends on the class, over faint noise: learnable, but nothing here needs it learnt.
            for (int p = 0; p < 28 * 28; p++)
                pixels[i * 784 + p] = (byte)(p / 28 == 2 + 2 * labels[i] ? 255 : g.NextInt(40));
        }
        Idx.WriteImages(Path.Combine(DataDir, $"{prefix}-images-idx3-ubyte"), pixels, count, 28, 28);
        Idx.WriteLabels(Path.Combine(DataDir, $"{prefix}-labels-idx1-ubyte"), labels);
    }

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
