namespace NeuralCore.Cuda.SelfTest;

/// <summary>The outcome of one self-test check.</summary>
/// <param name="Group">The family: <c>kernels</c>, <c>elementwise</c>, <c>matmul</c>, <c>conv2d</c>, <c>training</c>, ...</param>
/// <param name="Name">What was checked, with its shape and mode (e.g. <c>conv2d 3x3 s1 p1 [3,8,7,9] cudnn</c>).</param>
/// <param name="Passed">True when every compared value lay within the tolerance.</param>
/// <param name="MaxError">The largest |CUDA - CPU| over all compared values (outputs and gradients); 0 for checks that compare nothing numeric.</param>
/// <param name="Tolerance">The stated tolerance, e.g. <c>atol 1e-4 + rtol 1e-4</c>, or <c>exact</c>.</param>
/// <param name="Detail">Why it failed (the worst element, or the error), or a short note; empty when there is nothing to add.</param>
/// <param name="Seconds">Wall-clock seconds the check took.</param>
public sealed record SelfTestCheck(string Group, string Name, bool Passed, double MaxError, string Tolerance, string Detail, double Seconds);

/// <summary>Median times of one benchmark workload, measured with the GPU synchronised before each clock reading.</summary>
/// <param name="Model">The model, e.g. <c>CP-ResNet 32/64/128</c>.</param>
/// <param name="Input">The input, e.g. <c>mel 1x128x100</c>.</param>
/// <param name="BatchSize">Samples per step.</param>
/// <param name="Cudnn">Whether cuDNN ran convolution, batch norm and pooling.</param>
/// <param name="TrainStepMs">Median milliseconds of a training step: zero grad, forward, cross-entropy, backward, Adam.</param>
/// <param name="InferenceMs">Median milliseconds of a forward pass in eval mode without autograd.</param>
/// <param name="TrainSamplesPerSecond">Batch size / median training step.</param>
/// <param name="InferenceSamplesPerSecond">Batch size / median inference pass.</param>
/// <param name="PeakMemoryBytes">The most GPU memory live at once during the workload's training steps (parameters, gradients, optimizer state, batch, activations).</param>
public sealed record SelfTestTiming(string Model, string Input, int BatchSize, bool Cudnn, double TrainStepMs, double InferenceMs,
    double TrainSamplesPerSecond, double InferenceSamplesPerSecond, long PeakMemoryBytes);

/// <summary>The GPU and software the self-test ran on.</summary>
/// <param name="Gpu">The backend's device description (name, compute capability, SMs).</param>
/// <param name="ComputeCapability">major * 10 + minor, e.g. 90.</param>
/// <param name="MemoryMiB">Total GPU memory.</param>
/// <param name="DriverVersion">The NVIDIA kernel driver version (from /proc/driver/nvidia/version), or <c>unknown</c>.</param>
/// <param name="DriverCudaVersion">The CUDA version the driver supports, e.g. <c>12.4</c>.</param>
/// <param name="Nvrtc">The NVRTC version and where it was loaded from.</param>
/// <param name="Cublas">The cuBLAS version and where it was loaded from.</param>
/// <param name="Cudnn">The cuDNN version and where it was loaded from, or <c>absent</c>.</param>
/// <param name="Runtime">The .NET runtime and operating system.</param>
public sealed record SelfTestEnvironment(string Gpu, int ComputeCapability, long MemoryMiB, string DriverVersion, string DriverCudaVersion,
    string Nvrtc, string Cublas, string Cudnn, string Runtime);

/// <summary>Everything <see cref="CudaSelfTest.Run"/> found: the environment, each check, and the timings.</summary>
/// <param name="Environment">The GPU and library versions.</param>
/// <param name="Checks">Every check in the order it ran.</param>
/// <param name="Timings">The benchmark results (empty when none were asked for).</param>
/// <param name="Seconds">Wall-clock seconds of the whole self-test.</param>
public sealed record SelfTestReport(SelfTestEnvironment Environment, IReadOnlyList<SelfTestCheck> Checks, IReadOnlyList<SelfTestTiming> Timings, double Seconds)
{
    /// <summary>True when every check passed.</summary>
    public bool Passed => Checks.All(c => c.Passed);

    /// <summary>The number of failed checks.</summary>
    public int FailedCount => Checks.Count(c => !c.Passed);
}
