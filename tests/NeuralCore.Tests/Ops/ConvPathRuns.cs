using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;

namespace NeuralCore.Tests.Ops;

/// <summary>Runs a convolution's forward and backward-data passes with one of the CPU backend's kernel paths switched on or off.</summary>
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
}
