namespace NeuralCore.Data.Tests;

/// <summary>One small synthetic dataset shared by the ASC tests (generated once per test run).</summary>
public sealed class AscTestData : IDisposable
{
    public AscTestData()
    {
        Root = Path.Combine(Path.GetTempPath(), "nc-asc-" + Guid.NewGuid().ToString("N"));
        Summary = SyntheticAsc.Generate(Root, clipsPerClass: 40, seed: 7);
    }

    public string Root { get; }

    public SyntheticAscSummary Summary { get; }

    public void Dispose() => Directory.Delete(Root, recursive: true);
}
