using NeuralCore.Cuda.SelfTest;

namespace NeuralCore.Cuda.Tests;

/// <summary>
/// The GPU self-test's conformance suite, run with the CPU in the GPU's place: it checks the suite itself
/// (every comparison runs, tolerances hold when both sides are the reference) on machines without a GPU.
/// </summary>
public class SelfTestSuiteTests
{
    [Fact]
    public void ConformanceSuite_AgainstItself_PassesEveryCheck()
    {
        var recorder = new CheckRecorder(null);
        var suite = new ConformanceSuite(recorder, Device.Cpu);
        suite.RunCommon();
        suite.RunCudnnFamilies("cpu");
        Assert.True(recorder.Checks.Count >= 40, $"only {recorder.Checks.Count} checks ran");
        var failed = recorder.Checks.Where(c => !c.Passed).Select(c => $"{c.Group}/{c.Name}: {c.Detail}").ToList();
        Assert.True(failed.Count == 0, string.Join("\n", failed));
        Assert.All(recorder.Checks, c => Assert.Equal(0, c.MaxError));
    }
}
