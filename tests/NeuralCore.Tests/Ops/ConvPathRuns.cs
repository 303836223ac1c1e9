using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;

namespace NeuralCore.Tests.Ops;

/// <summary>Runs a convolution's forward and backward-data passes with one of the CPU backend's kernel paths switched on or off, and gives the order a 1x1's direct kernels sum in.</summary>
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

    /// <summary>The values' bits, every NaN read as one value whatever its payload.</summary>
    public static IEnumerable<int> Bits(float[] values) => values.Select(v => float.IsNaN(v) ? int.MinValue : BitConverter.SingleToInt32Bits(v));
}
