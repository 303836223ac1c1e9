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

    /// <summary>
    /// The comparison the suite runs on a GPU, fed real mismatches: outside the tolerance it fails with the first element
    /// that differs, inside it passes with the largest difference recorded; NaN matches only NaN; shapes must agree; and
    /// an exception in a check fails that check, not the run.
    /// </summary>
    [Fact]
    public void Comparison_FailsOutsideItsTolerance_AndRecordsTheLargestDifference()
    {
        var recorder = new CheckRecorder(null);
        var cpu = Tensor.FromArray([1f, 2f, float.NaN, 100f], 4);
        recorder.Run("g", "within", "1e-3", c => c.Close("y", cpu, Tensor.FromArray([1f, 2.0005f, float.NaN, 100.01f], 4), 1e-3f, 1e-4f));
        recorder.Run("g", "outside", "1e-3", c => c.Close("y", cpu, Tensor.FromArray([1f, 2.01f, float.NaN, 100.5f], 4), 1e-3f, 1e-4f));
        recorder.Run("g", "nan", "1e-3", c => c.Close("y", cpu, Tensor.FromArray([1f, 2f, 3f, 100f], 4), 1e-3f, 1e-4f));
        recorder.Run("g", "shape", "exact", c => c.Exact("y", cpu, Tensor.FromArray([1f, 2f, float.NaN, 100f], 2, 2)));
        recorder.Run("g", "exact", "exact", c => c.Exact("i", Tensor.FromArray([1L, 2L, 3L], 3), Tensor.FromArray([1L, 2L, 4L], 3)));
        recorder.Run("g", "throws", "exact", _ => throw new InvalidOperationException("kernel launch failed"));
        var checks = recorder.Checks.ToDictionary(c => c.Name);

        Assert.True(checks["within"].Passed, checks["within"].Detail);
        Assert.InRange(checks["within"].MaxError, 0.0099, 0.0101);
        Assert.False(checks["outside"].Passed);
        Assert.StartsWith("y element 1: CPU 2, CUDA 2.00999999", checks["outside"].Detail);
        Assert.InRange(checks["outside"].MaxError, 0.4999, 0.5001);
        Assert.False(checks["nan"].Passed);
        Assert.Contains("element 2", checks["nan"].Detail);
        Assert.Equal(double.PositiveInfinity, checks["nan"].MaxError);
        Assert.False(checks["shape"].Passed);
        Assert.Contains("CPU shape [4], CUDA shape [2, 2]", checks["shape"].Detail);
        Assert.False(checks["exact"].Passed);
        Assert.Equal("i element 2: CPU 3, CUDA 4", checks["exact"].Detail);
        Assert.Equal(1, checks["exact"].MaxError);
        Assert.False(checks["throws"].Passed);
        Assert.Equal("InvalidOperationException: kernel launch failed", checks["throws"].Detail);
    }
}
