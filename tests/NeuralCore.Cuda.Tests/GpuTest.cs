using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;

namespace NeuralCore.Cuda.Tests;

/// <summary>
/// Shared pieces of the GPU conformance tests: each runs an IBackend method on the CUDA backend and on the CPU
/// backend (the specification) with the same inputs and compares within a stated tolerance. Without a GPU every
/// such test is reported as skipped with the reason.
/// </summary>
public abstract class GpuTest
{
    protected static readonly IBackend Cpu = CpuBackend.Instance;

    /// <summary>Skips without a GPU, else the CUDA backend with or without cuDNN (skipping when cuDNN is wanted but absent).</summary>
    protected static CudaBackend Cuda(bool cudnn = false)
    {
        if (cudnn) Requirements.Cudnn();
        else Requirements.Gpu();
        return new CudaBackend(0, new CudaOptions { UseCudnn = cudnn });
    }

    protected static Tensor Rand(int[] shape, ulong seed, float low = -2, float high = 2) => Tensor.Uniform(shape, low, high, new Generator(seed));

    protected static Tensor OnGpu(Tensor cpu) => cpu.To(Device.Cuda(0));

    protected static Tensor Zeros(int[] shape, bool gpu, DType dtype = DType.Float32) => Tensor.Zeros(shape, gpu ? Device.Cuda(0) : Device.Cpu, dtype);

    /// <summary>Asserts |gpu - cpu| &lt;= atol + rtol * |cpu| element-wise (NaN matches NaN), naming the worst element.</summary>
    protected static void Close(Tensor cpu, Tensor gpu, float atol, float rtol, string what = "")
    {
        Assert.Equal(cpu.ShapeArray(), gpu.ShapeArray());
        Assert.Equal(Device.Cuda(0), gpu.Device);
        var expected = cpu.ToArray();
        var actual = gpu.ToArray();
        var worst = -1;
        var worstExcess = 0.0;
        for (var i = 0; i < expected.Length; i++)
        {
            if (float.IsNaN(expected[i]) && float.IsNaN(actual[i])) continue;
            if (expected[i] == actual[i]) continue;
            var excess = Math.Abs((double)actual[i] - expected[i]) - (atol + rtol * Math.Abs(expected[i]));
            if (double.IsNaN(excess) || excess > worstExcess) { worst = i; worstExcess = double.IsNaN(excess) ? double.PositiveInfinity : excess; }
        }
        Assert.True(worst < 0, $"{what} element {worst}: CPU {(worst < 0 ? 0 : expected[worst])}, CUDA {(worst < 0 ? 0 : actual[worst])} (atol {atol}, rtol {rtol})");
    }

    protected static void Same(Tensor cpu, Tensor gpu) => Assert.Equal(cpu.ToInt64Array(), gpu.ToInt64Array());
}
