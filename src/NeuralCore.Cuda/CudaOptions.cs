namespace NeuralCore.Cuda;

/// <summary>Settings of a <see cref="CudaBackend"/>.</summary>
public sealed record CudaOptions
{
    /// <summary>
    /// Use cuDNN for convolution, batch norm and pooling when it is installed. Default false: NeuralCore's own kernels
    /// (im2col + cuBLAS), which ran CP-ResNet 1.2-4x faster than cuDNN 9.19 on an H200, training and inference,
    /// because each call of cuDNN's convolution API costs about 70 microseconds of host time (docs/benchmarks.md).
    /// Large convolutions, whose GPU time outweighs that, can be faster with cuDNN.
    /// </summary>
    public bool UseCudnn { get; init; }

    /// <summary>
    /// Let cuBLAS and cuDNN round FP32 inputs to TF32 on tensor cores (Ampere and newer): faster, about 3 decimal
    /// digits per product. Default false: exact FP32, results comparable with the CPU backend.
    /// </summary>
    public bool AllowTf32 { get; init; }

    /// <summary>Pick cuDNN convolution algorithms by timing them (cudnnFind*) instead of by heuristic (cudnnGet*_v7). Default false.</summary>
    public bool CudnnBenchmark { get; init; }

    /// <summary>The most scratch memory one convolution may use (cuDNN workspace or im2col buffer), in bytes. Default 512 MiB.</summary>
    public long MaxWorkspaceBytes { get; init; } = 512L << 20;

    /// <summary>
    /// The defaults, overridden by environment variables: <c>NEURALCORE_CUDA_TF32=1</c> enables TF32,
    /// <c>NEURALCORE_CUDNN=1</c> uses cuDNN, <c>NEURALCORE_CUDNN_BENCHMARK=1</c> times convolution algorithms.
    /// </summary>
    public static CudaOptions FromEnvironment() => FromEnvironment(Environment.GetEnvironmentVariable);

    /// <summary><see cref="FromEnvironment()"/> reading the variables through <paramref name="env"/>.</summary>
    internal static CudaOptions FromEnvironment(Func<string, string?> env) => new()
    {
        AllowTf32 = Flag(env("NEURALCORE_CUDA_TF32"), false),
        UseCudnn = Flag(env("NEURALCORE_CUDNN"), false),
        CudnnBenchmark = Flag(env("NEURALCORE_CUDNN_BENCHMARK"), false),
    };

    private static bool Flag(string? value, bool fallback) => value?.Trim().ToLowerInvariant() switch
    {
        "1" or "true" or "yes" or "on" => true,
        "0" or "false" or "no" or "off" => false,
        _ => fallback,
    };
}
