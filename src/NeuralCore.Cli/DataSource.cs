using NeuralCore.Data;

namespace NeuralCore.Cli;

/// <summary>Loads the MNIST splits the commands use.</summary>
internal static class DataSource
{
    /// <summary>The seed of the train / validation / test split (fixed, so every run and every command sees the same split).</summary>
    public const int SplitSeed = 42;

    /// <summary>
    /// MNIST from <paramref name="dataDir"/> (the four IDX files; <paramref name="validationCount"/> training images
    /// are held out for validation) or, without it, the npm subset (8,000 / 1,000 / 1,000).
    /// </summary>
    public static MnistSplits LoadMnist(string? dataDir, int validationCount, TextWriter log)
    {
        if (dataDir is null)
        {
            try
            {
                return Mnist.LoadNpmSubset(null, SplitSeed, message => log.WriteLine(message));
            }
            catch (IOException e) when (e is not FileNotFoundException)
            {
                throw new CliException($"{e.Message} Or pass --data-dir with a folder that holds the four MNIST IDX files.");
            }
        }
        try
        {
            return Mnist.LoadFromDirectory(dataDir, SplitSeed, validationCount);
        }
        catch (ArgumentOutOfRangeException e) when (e.ParamName == "validationCount")
        {
            throw new CliException($"--validation-count {validationCount}: {e.Message.Split(" (Parameter")[0]}", Program.UsageError);
        }
    }
}
