using NeuralCore.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// Plain-loop float64 implementations of the CPU backend's convolution, pooling and batch-norm kernels,
/// written straight from PyTorch's definitions: the specification the fast kernels are tested against.
/// All arrays are contiguous NCHW.
/// </summary>
public static partial class Reference
{
    /// <summary>y [N, K, P, Q] = conv2d(x [N, C, H, W], w [K, C/G, R, S]) + bias [K] (zero padding).</summary>
    public static double[] Conv2d(double[] x, double[] w, double[]? bias, Conv2dParams p)
    {
        int cg = p.C / p.Groups, kg = p.K / p.Groups;
        var y = new double[p.N * p.K * p.P * p.Q];
        for (int n = 0; n < p.N; n++)
        for (int k = 0; k < p.K; k++)
        {
            int g = k / kg;
            for (int oh = 0; oh < p.P; oh++)
            for (int ow = 0; ow < p.Q; ow++)
            {
                double sum = bias?[k] ?? 0;
                for (int c = 0; c < cg; c++)
                for (int r = 0; r < p.R; r++)
                for (int s = 0; s < p.S; s++)
                {
                    int ih = oh * p.StrideH - p.PadH + r * p.DilationH;
                    int iw = ow * p.StrideW - p.PadW + s * p.DilationW;
                    if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;
                    sum += x[((n * p.C + g * cg + c) * p.H + ih) * p.W + iw] * w[((k * cg + c) * p.R + r) * p.S + s];
                }
                y[((n * p.K + k) * p.P + oh) * p.Q + ow] = sum;
            }
        }
        return y;
    }

    /// <summary>
    /// y [N, C, P, Q] = pool2d(x [N, C, H, W]). Max: -inf padding, the flat h*W+w index of the first maximum
    /// in row-major window order. Average: divisor counts padding, window clipped at the padded border.
    /// </summary>
    public static (double[] Y, int[] Indices) Pool2d(PoolKind kind, double[] x, Pool2dParams p)
    {
        var y = new double[p.N * p.C * p.P * p.Q];
        var indices = new int[y.Length];
        for (int plane = 0; plane < p.N * p.C; plane++)
        for (int oh = 0; oh < p.P; oh++)
        for (int ow = 0; ow < p.Q; ow++)
        {
            int hs = oh * p.StrideH - p.PadH, ws = ow * p.StrideW - p.PadW;
            int o = (plane * p.P + oh) * p.Q + ow;
            if (kind == PoolKind.Max)
            {
                double best = double.NegativeInfinity;
                int at = -1;
                for (int ih = hs; ih < hs + p.KernelH; ih++)
                for (int iw = ws; iw < ws + p.KernelW; iw++)
                {
                    if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;
                    double v = x[(plane * p.H + ih) * p.W + iw];
                    if (at < 0 || v > best) { best = v; at = ih * p.W + iw; }
                }
                y[o] = best;
                indices[o] = at;
            }
            else
            {
                int he = Math.Min(hs + p.KernelH, p.H + p.PadH), we = Math.Min(ws + p.KernelW, p.W + p.PadW);
                double sum = 0;
                for (int ih = Math.Max(hs, 0); ih < Math.Min(he, p.H); ih++)
                for (int iw = Math.Max(ws, 0); iw < Math.Min(we, p.W); iw++)
                    sum += x[(plane * p.H + ih) * p.W + iw];
                y[o] = sum / ((he - hs) * (we - ws));
            }
        }
        return (y, indices);
    }

    /// <summary>Training-mode batch norm over x [N, C, HW]: y, the batch mean and the biased batch variance per channel.</summary>
    public static (double[] Y, double[] Mean, double[] Variance) BatchNormTraining(double[] x, double[] gamma, double[] beta,
        int n, int c, int hw, double eps)
    {
        var mean = new double[c];
        var variance = new double[c];
        var y = new double[x.Length];
        int m = n * hw;
        for (int ch = 0; ch < c; ch++)
        {
            double sum = 0;
            for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++) sum += x[(i * c + ch) * hw + j];
            mean[ch] = sum / m;
            double squares = 0;
            for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++)
            {
                double d = x[(i * c + ch) * hw + j] - mean[ch];
                squares += d * d;
            }
            variance[ch] = squares / m;
            for (int i = 0; i < n; i++)
            for (int j = 0; j < hw; j++)
            {
                int at = (i * c + ch) * hw + j;
                y[at] = (x[at] - mean[ch]) / Math.Sqrt(variance[ch] + eps) * gamma[ch] + beta[ch];
            }
        }
        return (y, mean, variance);
    }

    /// <summary>Eval-mode batch norm over x [N, C, HW] with the given running statistics.</summary>
    public static double[] BatchNormInference(double[] x, double[] gamma, double[] beta, double[] runningMean, double[] runningVar,
        int n, int c, int hw, double eps)
    {
        var y = new double[x.Length];
        for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
        for (int j = 0; j < hw; j++)
        {
            int at = (i * c + ch) * hw + j;
            y[at] = (x[at] - runningMean[ch]) / Math.Sqrt(runningVar[ch] + eps) * gamma[ch] + beta[ch];
        }
        return y;
    }

    /// <summary>Uniform values in [-1, 1) from a fixed seed.</summary>
    public static double[] Random(int length, int seed, double scale = 1)
    {
        var rng = new Random(seed);
        var a = new double[length];
        for (int i = 0; i < length; i++) a[i] = (rng.NextDouble() * 2 - 1) * scale;
        return a;
    }

    /// <summary>The values rounded to float32.</summary>
    public static float[] ToFloat(double[] a) => Array.ConvertAll(a, v => (float)v);

    /// <summary>The values widened to float64.</summary>
    public static double[] ToDouble(float[] a) => Array.ConvertAll(a, v => (double)v);
}
