using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// Runs a convolution's forward and backward-data passes with one of the CPU backend's kernel paths switched on or off
/// or the kernels narrowed to one vector width, and gives the orders a 1x1's direct kernels and the implicit GEMM sum in.
/// </summary>
internal static class ConvPathRuns
{
    /// <summary>
    /// y = conv2d(x, w) + bias and dx, the input gradient for dy, through <see cref="CpuBackend"/> (outputs start as NaN),
    /// with <paramref name="setEnabled"/>(<paramref name="enabled"/>) for the calls and the path switched back on after.
    /// </summary>
    public static (float[] Y, float[] Dx) ForwardAndBackwardData(Conv2dParams p, float[] x, float[] w, float[]? bias, float[] dy,
        Action<bool> setEnabled, bool enabled)
    {
        var y = Tensor.Full([p.N, p.K, p.P, p.Q], float.NaN);
        var dx = Tensor.Full([p.N, p.C, p.H, p.W], float.NaN);
        var wt = Tensor.FromArray(w, p.K, p.C / p.Groups, p.R, p.S);
        setEnabled(enabled);
        try
        {
            CpuBackend.Instance.Conv2d(Tensor.FromArray(x, p.N, p.C, p.H, p.W), wt, bias is null ? null : Tensor.FromArray(bias, p.K), y, p);
            CpuBackend.Instance.Conv2dBackwardData(Tensor.FromArray(dy, p.N, p.K, p.P, p.Q), wt, dx, p);
        }
        finally
        {
            setEnabled(true);
        }
        return (y.ToArray(), dx.ToArray());
    }

    /// <summary><paramref name="rule"/>'s answer with <see cref="CpuThreading.Threads"/> set to <paramref name="threads"/> (restored after).</summary>
    public static T AtThreads<T>(int threads, Func<T> rule)
    {
        int saved = CpuThreading.Threads;
        try
        {
            CpuThreading.Threads = threads;
            return rule();
        }
        finally
        {
            CpuThreading.Threads = saved;
        }
    }

    /// <summary>
    /// A 1x1 convolution's outputs in the order the direct kernels and the GEMM path sum them: out[n, o, j] = the sum over
    /// i in order of m[o, i] * input[n, i, j], fused multiply-adds from zero, then + bias[o].
    /// </summary>
    public static float[] InOrder(float[] input, int n, int inputs, int outputs, int plane, Func<int, int, float> m, float[]? bias)
    {
        var result = new float[n * outputs * plane];
        for (int s = 0; s < n; s++)
            for (int o = 0; o < outputs; o++)
                for (int j = 0; j < plane; j++)
                {
                    float acc = 0;
                    for (int i = 0; i < inputs; i++) acc = MathF.FusedMultiplyAdd(m(o, i), input[(s * inputs + i) * plane + j], acc);
                    result[(s * outputs + o) * plane + j] = bias is null ? acc : acc + bias[o];
                }
        return result;
    }

    /// <summary>
    /// A stride-1 convolution's outputs in the order the implicit GEMM sums them: out[n, o, i, j] = the sum over input
    /// channels c in order, then taps (r, s) in order, of w[o, c, r, s] * input[n, c, i + r * dilation - pad,
    /// j + s * dilation - pad] (zero outside the plane), fused multiply-adds from zero, then + bias[o]. The output is the
    /// size of the input.
    /// </summary>
    public static float[] SameInOrder(float[] input, float[] w, float[]? bias, int n, int inputs, int outputs, int h, int width,
        int kernel, int dilation, int pad)
    {
        var result = new float[n * outputs * h * width];
        for (int s = 0; s < n; s++)
            for (int o = 0; o < outputs; o++)
                for (int i = 0; i < h; i++)
                    for (int j = 0; j < width; j++)
                    {
                        float acc = 0;
                        for (int c = 0; c < inputs; c++)
                            for (int r = 0; r < kernel; r++)
                                for (int t = 0; t < kernel; t++)
                                {
                                    int y = i + r * dilation - pad, x = j + t * dilation - pad;
                                    float v = y < 0 || y >= h || x < 0 || x >= width ? 0f : input[((s * inputs + c) * h + y) * width + x];
                                    acc = MathF.FusedMultiplyAdd(w[((o * inputs + c) * kernel + r) * kernel + t], v, acc);
                                }
                        result[((s * outputs + o) * h + i) * width + j] = bias is null ? acc : acc + bias[o];
                    }
        return result;
    }

    /// <summary><paramref name="run"/> with <see cref="Gemm.Kind"/> narrowed to <paramref name="kind"/>.</summary>
    public static T WithKernels<T>(Gemm.KernelKind kind, Func<T> run)
    {
        var saved = Gemm.Kind;
        Gemm.Kind = kind;
        try
        {
            return run();
        }
        finally
        {
            Gemm.Kind = saved;
        }
    }

    /// <inheritdoc cref="WithKernels{T}(Gemm.KernelKind, Func{T})"/>
    public static void WithKernels(Gemm.KernelKind kind, Action run) => WithKernels(kind, () => { run(); return 0; });

    /// <summary>The values' bits, every NaN read as one value whatever its payload.</summary>
    public static IEnumerable<int> Bits(float[] values) => values.Select(v => float.IsNaN(v) ? int.MinValue : BitConverter.SingleToInt32Bits(v));
}
