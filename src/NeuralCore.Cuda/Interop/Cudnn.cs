using System.Runtime.InteropServices;

namespace NeuralCore.Cuda.Interop;

/// <summary>
/// cuDNN 9's legacy (descriptor) API, the subset NeuralCore uses: NCHW float tensor, filter and convolution
/// descriptors, convolution forward / backward data / backward filter with algorithm selection and workspace,
/// spatial batch norm (training, inference, backward) and pooling forward. Deprecated in cuDNN 9 but present.
/// Errors carry cuDNN's status string and its last detailed error message.
/// </summary>
internal static unsafe partial class Cudnn
{
    private const string Lib = "cudnn";

    static Cudnn() => NativeLibraries.EnsureRegistered();

    /// <summary>CUDNN_TENSOR_NCHW.</summary>
    public const int TensorNchw = 0;
    /// <summary>CUDNN_DATA_FLOAT.</summary>
    public const int DataFloat = 0;
    /// <summary>CUDNN_CROSS_CORRELATION (what deep-learning frameworks call convolution).</summary>
    public const int CrossCorrelation = 1;
    /// <summary>CUDNN_DEFAULT_MATH (may use TF32 on Ampere and newer).</summary>
    public const int DefaultMath = 0;
    /// <summary>CUDNN_FMA_MATH: exact FP32, no tensor-core down-conversion.</summary>
    public const int FmaMath = 3;
    /// <summary>CUDNN_BATCHNORM_SPATIAL: one statistic per channel over N, H, W.</summary>
    public const int BatchNormSpatial = 1;
    /// <summary>CUDNN_BN_MIN_EPSILON: cuDNN rejects a smaller epsilon.</summary>
    public const double BatchNormMinEpsilon = 1e-5;
    /// <summary>CUDNN_POOLING_MAX.</summary>
    public const int PoolingMax = 0;
    /// <summary>CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING (PyTorch's count_include_pad=True).</summary>
    public const int PoolingAverageIncludePadding = 1;
    /// <summary>CUDNN_PROPAGATE_NAN.</summary>
    public const int PropagateNan = 1;

    /// <summary>cudnnConvolutionFwdAlgoPerf_t (and the BwdData / BwdFilter twins, which share the layout).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct AlgoPerf
    {
        public int Algo;
        public int Status;
        public float Time;
        public nuint Memory;
        public int Determinism;
        public int MathType;
        public int Reserved0, Reserved1, Reserved2;
    }

    [LibraryImport(Lib)] public static partial nuint cudnnGetVersion();
    [LibraryImport(Lib)] public static partial int cudnnCreate(out nint handle);
    [LibraryImport(Lib)] public static partial int cudnnDestroy(nint handle);
    [LibraryImport(Lib)] public static partial int cudnnSetStream(nint handle, nint stream);
    [LibraryImport(Lib)] public static partial nint cudnnGetErrorString(int status);
    [LibraryImport(Lib)] public static partial void cudnnGetLastErrorString(byte* message, nuint maxSize);

    [LibraryImport(Lib)] public static partial int cudnnCreateTensorDescriptor(out nint desc);
    [LibraryImport(Lib)] public static partial int cudnnSetTensor4dDescriptor(nint desc, int format, int dataType, int n, int c, int h, int w);
    [LibraryImport(Lib)] public static partial int cudnnDestroyTensorDescriptor(nint desc);
    [LibraryImport(Lib)] public static partial int cudnnCreateFilterDescriptor(out nint desc);
    [LibraryImport(Lib)] public static partial int cudnnSetFilter4dDescriptor(nint desc, int dataType, int format, int k, int c, int h, int w);
    [LibraryImport(Lib)] public static partial int cudnnDestroyFilterDescriptor(nint desc);
    [LibraryImport(Lib)] public static partial int cudnnCreateConvolutionDescriptor(out nint desc);
    [LibraryImport(Lib)]
    public static partial int cudnnSetConvolution2dDescriptor(nint desc, int padH, int padW, int strideH, int strideW,
        int dilationH, int dilationW, int mode, int computeType);
    [LibraryImport(Lib)] public static partial int cudnnSetConvolutionGroupCount(nint desc, int groups);
    [LibraryImport(Lib)] public static partial int cudnnSetConvolutionMathType(nint desc, int mathType);
    [LibraryImport(Lib)] public static partial int cudnnDestroyConvolutionDescriptor(nint desc);

    [LibraryImport(Lib)]
    public static partial int cudnnGetConvolutionForwardAlgorithm_v7(nint handle, nint xDesc, nint wDesc, nint convDesc, nint yDesc,
        int requested, out int returned, AlgoPerf* results);
    [LibraryImport(Lib)]
    public static partial int cudnnFindConvolutionForwardAlgorithm(nint handle, nint xDesc, nint wDesc, nint convDesc, nint yDesc,
        int requested, out int returned, AlgoPerf* results);
    [LibraryImport(Lib)]
    public static partial int cudnnGetConvolutionForwardWorkspaceSize(nint handle, nint xDesc, nint wDesc, nint convDesc, nint yDesc,
        int algo, out nuint bytes);
    [LibraryImport(Lib)]
    public static partial int cudnnConvolutionForward(nint handle, float* alpha, nint xDesc, ulong x, nint wDesc, ulong w, nint convDesc,
        int algo, ulong workspace, nuint workspaceBytes, float* beta, nint yDesc, ulong y);

    [LibraryImport(Lib)]
    public static partial int cudnnGetConvolutionBackwardDataAlgorithm_v7(nint handle, nint wDesc, nint dyDesc, nint convDesc, nint dxDesc,
        int requested, out int returned, AlgoPerf* results);
    [LibraryImport(Lib)]
    public static partial int cudnnFindConvolutionBackwardDataAlgorithm(nint handle, nint wDesc, nint dyDesc, nint convDesc, nint dxDesc,
        int requested, out int returned, AlgoPerf* results);
    [LibraryImport(Lib)]
    public static partial int cudnnGetConvolutionBackwardDataWorkspaceSize(nint handle, nint wDesc, nint dyDesc, nint convDesc, nint dxDesc,
        int algo, out nuint bytes);
    [LibraryImport(Lib)]
    public static partial int cudnnConvolutionBackwardData(nint handle, float* alpha, nint wDesc, ulong w, nint dyDesc, ulong dy, nint convDesc,
        int algo, ulong workspace, nuint workspaceBytes, float* beta, nint dxDesc, ulong dx);

    [LibraryImport(Lib)]
    public static partial int cudnnGetConvolutionBackwardFilterAlgorithm_v7(nint handle, nint xDesc, nint dyDesc, nint convDesc, nint dwDesc,
        int requested, out int returned, AlgoPerf* results);
    [LibraryImport(Lib)]
    public static partial int cudnnFindConvolutionBackwardFilterAlgorithm(nint handle, nint xDesc, nint dyDesc, nint convDesc, nint dwDesc,
        int requested, out int returned, AlgoPerf* results);
    [LibraryImport(Lib)]
    public static partial int cudnnGetConvolutionBackwardFilterWorkspaceSize(nint handle, nint xDesc, nint dyDesc, nint convDesc, nint dwDesc,
        int algo, out nuint bytes);
    [LibraryImport(Lib)]
    public static partial int cudnnConvolutionBackwardFilter(nint handle, float* alpha, nint xDesc, ulong x, nint dyDesc, ulong dy, nint convDesc,
        int algo, ulong workspace, nuint workspaceBytes, float* beta, nint dwDesc, ulong dw);

    [LibraryImport(Lib)]
    public static partial int cudnnBatchNormalizationForwardTraining(nint handle, int mode, float* alpha, float* beta, nint xDesc, ulong x,
        nint yDesc, ulong y, nint bnDesc, ulong scale, ulong bias, double exponentialAverageFactor, ulong runningMean, ulong runningVariance,
        double epsilon, ulong saveMean, ulong saveInvVariance);
    [LibraryImport(Lib)]
    public static partial int cudnnBatchNormalizationForwardInference(nint handle, int mode, float* alpha, float* beta, nint xDesc, ulong x,
        nint yDesc, ulong y, nint bnDesc, ulong scale, ulong bias, ulong estimatedMean, ulong estimatedVariance, double epsilon);
    [LibraryImport(Lib)]
    public static partial int cudnnBatchNormalizationBackward(nint handle, int mode, float* alphaData, float* betaData, float* alphaParam,
        float* betaParam, nint xDesc, ulong x, nint dyDesc, ulong dy, nint dxDesc, ulong dx, nint bnDesc, ulong scale, ulong dScale,
        ulong dBias, double epsilon, ulong savedMean, ulong savedInvVariance);

    [LibraryImport(Lib)] public static partial int cudnnCreatePoolingDescriptor(out nint desc);
    [LibraryImport(Lib)]
    public static partial int cudnnSetPooling2dDescriptor(nint desc, int mode, int nanPropagation, int windowH, int windowW,
        int padH, int padW, int strideH, int strideW);
    [LibraryImport(Lib)] public static partial int cudnnDestroyPoolingDescriptor(nint desc);
    [LibraryImport(Lib)]
    public static partial int cudnnPoolingForward(nint handle, nint poolDesc, float* alpha, nint xDesc, ulong x, float* beta, nint yDesc, ulong y);

    /// <summary>The cuDNN version as major.minor.patch (cudnnGetVersion returns major*10000 + minor*100 + patch from 9.0 on).</summary>
    public static string Version()
    {
        var v = (long)cudnnGetVersion();
        return $"{v / 10000}.{v / 100 % 100}.{v % 100}";
    }

    /// <summary>Throws <see cref="CudaException"/> with cuDNN's status string and last error message unless <paramref name="status"/> is success.</summary>
    public static void Check(int status, string call)
    {
        if (status == 0) return;
        var name = Marshal.PtrToStringUTF8(cudnnGetErrorString(status)) ?? $"cudnnStatus {status}";
        var detail = new byte[1024];
        fixed (byte* p = detail) cudnnGetLastErrorString(p, (nuint)detail.Length);
        var text = System.Text.Encoding.UTF8.GetString(detail).TrimEnd('\0').Trim();
        throw new CudaException("cuDNN", call, status, name, text.Length > 0 ? text : name);
    }
}
