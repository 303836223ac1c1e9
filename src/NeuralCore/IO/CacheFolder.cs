namespace NeuralCore.IO;

/// <summary>
/// The root folder where NeuralCore keeps what it fetched, converted or compiled once (datasets, resampled audio,
/// compiled CUDA kernels), each in a subfolder of its own.
/// </summary>
public static class CacheFolder
{
    /// <summary>Environment variable that overrides <see cref="Root"/>.</summary>
    public const string EnvironmentVariable = "NEURALCORE_DATA";

    /// <summary>
    /// <c>$NEURALCORE_DATA</c> when set; otherwise <c>$XDG_CACHE_HOME/neuralcore</c> when <c>XDG_CACHE_HOME</c> is set;
    /// otherwise <c>%LOCALAPPDATA%\neuralcore</c> on Windows and <c>~/.cache/neuralcore</c> elsewhere.
    /// The folder is not created until something is written into it.
    /// </summary>
    public static string Root
    {
        get
        {
            string? overridden = Environment.GetEnvironmentVariable(EnvironmentVariable);
            if (!string.IsNullOrWhiteSpace(overridden))
                return Path.GetFullPath(overridden);
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            if (!string.IsNullOrWhiteSpace(xdg))
                return Path.Combine(Path.GetFullPath(xdg), "neuralcore");
            if (OperatingSystem.IsWindows())
                return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "neuralcore");
            return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "neuralcore");
        }
    }
}
