using NeuralCore.NN;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// Plain-loop float64 references for the core tensor ops (shape ops, broadcasting, reductions, matrix products,
/// softmax and losses), written from PyTorch's definitions. Arrays are row-major with an explicit shape.
/// </summary>
public static partial class Reference
{
    /// <summary>Row-major strides of <paramref name="shape"/>.</summary>
    public static int[] Strides(int[] shape)
    {
        var s = new int[shape.Length];
        var acc = 1;
        for (var d = shape.Length - 1; d >= 0; d--) { s[d] = acc; acc *= shape[d]; }
        return s;
    }

    /// <summary>Product of the sizes.</summary>
    public static int Count(int[] shape) => shape.Aggregate(1, (a, b) => a * b);

    /// <summary>The multi-index of flat position <paramref name="flat"/> in <paramref name="shape"/>.</summary>
    public static int[] Unravel(int flat, int[] shape)
    {
        var idx = new int[shape.Length];
        for (var d = shape.Length - 1; d >= 0; d--) { idx[d] = flat % shape[d]; flat /= shape[d]; }
        return idx;
    }

    /// <summary>x [shape] broadcast (NumPy rules, leading dimensions added) to <paramref name="outShape"/>.</summary>
    public static double[] Broadcast(double[] x, int[] shape, int[] outShape)
    {
        var lead = outShape.Length - shape.Length;
        var st = Strides(shape);
        var y = new double[Count(outShape)];
        for (var i = 0; i < y.Length; i++)
        {
            var idx = Unravel(i, outShape);
            var at = 0;
            for (var d = 0; d < shape.Length; d++) at += (shape[d] == 1 ? 0 : idx[d + lead]) * st[d];
            y[i] = x[at];
        }
        return y;
    }

    /// <summary>The NumPy broadcast of two shapes.</summary>
    public static int[] BroadcastShape(int[] a, int[] b)
    {
        var rank = Math.Max(a.Length, b.Length);
        var r = new int[rank];
        for (var i = 0; i < rank; i++)
        {
            var x = i - (rank - a.Length) >= 0 ? a[i - (rank - a.Length)] : 1;
            var y = i - (rank - b.Length) >= 0 ? b[i - (rank - b.Length)] : 1;
            r[i] = x == 1 ? y : x;
        }
        return r;
    }

    /// <summary>f(a, b) element-wise with broadcasting; the result has shape <c>BroadcastShape(aShape, bShape)</c>.</summary>
    public static double[] Binary(Func<double, double, double> f, double[] a, int[] aShape, double[] b, int[] bShape)
    {
        var s = BroadcastShape(aShape, bShape);
        var ab = Broadcast(a, aShape, s);
        var bb = Broadcast(b, bShape, s);
        return ab.Select((v, i) => f(v, bb[i])).ToArray();
    }

    /// <summary>x [shape] with its dimensions reordered (output dimension i is input dimension dims[i]).</summary>
    public static double[] Permute(double[] x, int[] shape, int[] dims)
    {
        var outShape = dims.Select(d => shape[d]).ToArray();
        var st = Strides(shape);
        var y = new double[x.Length];
        for (var i = 0; i < y.Length; i++)
        {
            var idx = Unravel(i, outShape);
            var at = 0;
            for (var d = 0; d < dims.Length; d++) at += idx[d] * st[dims[d]];
            y[i] = x[at];
        }
        return y;
    }

    /// <summary>The elements with index start..start+length-1 along <paramref name="dim"/>.</summary>
    public static double[] Narrow(double[] x, int[] shape, int dim, int start, int length)
    {
        var outShape = (int[])shape.Clone();
        outShape[dim] = length;
        var st = Strides(shape);
        var y = new double[Count(outShape)];
        for (var i = 0; i < y.Length; i++)
        {
            var idx = Unravel(i, outShape);
            idx[dim] += start;
            y[i] = x[idx.Select((v, d) => v * st[d]).Sum()];
        }
        return y;
    }

    /// <summary>
    /// Reduces x [shape] over <paramref name="dims"/> with <paramref name="f"/> (which sees the reduced values in
    /// row-major order); the result is in row-major order of the kept dimensions (the same with or without keepdim).
    /// </summary>
    public static double[] Reduce(double[] x, int[] shape, int[] dims, Func<List<double>, double> f)
    {
        var keptShape = shape.Select((s, d) => dims.Contains(d) ? 1 : s).ToArray();
        var groups = Enumerable.Range(0, Count(keptShape)).Select(_ => new List<double>()).ToArray();
        var kst = Strides(keptShape);
        for (var i = 0; i < x.Length; i++)
        {
            var idx = Unravel(i, shape);
            var at = 0;
            for (var d = 0; d < shape.Length; d++) at += (dims.Contains(d) ? 0 : idx[d]) * kst[d];
            groups[at].Add(x[i]);
        }
        return groups.Select(f).ToArray();
    }

    /// <summary>Sample variance of the values, dividing by n - 1 (unbiased) or n.</summary>
    public static double Variance(List<double> v, bool unbiased)
    {
        var mean = v.Average();
        return v.Sum(e => (e - mean) * (e - mean)) / (unbiased ? v.Count - 1 : v.Count);
    }

    /// <summary>
    /// Matrix product of a [..., m, k] and b [..., k, n] (rank 2 or more), batch dimensions broadcast;
    /// <paramref name="outShape"/> receives the result's shape.
    /// </summary>
    public static double[] MatMul(double[] a, int[] aShape, double[] b, int[] bShape, out int[] outShape)
    {
        int m = aShape[^2], k = aShape[^1], n = bShape[^1];
        var batchShape = BroadcastShape(aShape[..^2], bShape[..^2]);
        var ab = Broadcast(a, aShape, [.. batchShape, m, k]);
        var bb = Broadcast(b, bShape, [.. batchShape, k, n]);
        var batch = Count(batchShape);
        outShape = [.. batchShape, m, n];
        var y = new double[batch * m * n];
        for (var p = 0; p < batch; p++)
            for (var i = 0; i < m; i++)
                for (var j = 0; j < n; j++)
                {
                    double sum = 0;
                    for (var l = 0; l < k; l++) sum += ab[(p * m + i) * k + l] * bb[(p * k + l) * n + j];
                    y[(p * m + i) * n + j] = sum;
                }
        return y;
    }

    /// <summary>Softmax (or log-softmax) of x [shape] along <paramref name="dim"/>.</summary>
    public static double[] Softmax(double[] x, int[] shape, int dim, bool log)
    {
        var st = Strides(shape);
        var y = new double[x.Length];
        for (var i = 0; i < x.Length; i++)
        {
            var idx = Unravel(i, shape);
            if (idx[dim] != 0) continue;
            var at = Enumerable.Range(0, shape[dim]).Select(c => i + c * st[dim]).ToArray();
            var max = at.Max(j => x[j]);
            var lse = max + Math.Log(at.Sum(j => Math.Exp(x[j] - max)));
            foreach (var j in at) y[j] = log ? x[j] - lse : Math.Exp(x[j] - lse);
        }
        return y;
    }

    /// <summary>
    /// PyTorch's <c>cross_entropy(logits [n, c], targets, weight, reduction, label_smoothing)</c>, written out:
    /// loss_i = (1 - s) * (-w[t_i] * logp[i, t_i]) + s * (-(1/C) * sum_c w[c] * logp[i, c]), each scaled by the
    /// sample weight when given; mean divides the sum by sum_i w[t_i] * sampleWeight_i (n when neither is given).
    /// Returns n values for <see cref="Reduction.None"/>, else one.
    /// </summary>
    public static double[] CrossEntropy(double[] logits, int n, int c, long[] targets, double[]? classWeights,
        double[]? sampleWeights, double smoothing, Reduction reduction)
    {
        var logp = Softmax(logits, [n, c], 1, log: true);
        var losses = new double[n];
        double weightSum = 0;
        for (var i = 0; i < n; i++)
        {
            var t = (int)targets[i];
            var wt = classWeights?[t] ?? 1;
            var nll = -wt * logp[i * c + t];
            double smooth = 0;
            for (var j = 0; j < c; j++) smooth -= (classWeights?[j] ?? 1) * logp[i * c + j] / c;
            var sw = sampleWeights?[i] ?? 1;
            losses[i] = ((1 - smoothing) * nll + smoothing * smooth) * sw;
            weightSum += wt * sw;
        }
        return reduction switch
        {
            Reduction.None => losses,
            Reduction.Sum => [losses.Sum()],
            _ => [losses.Sum() / weightSum],
        };
    }

    /// <summary>
    /// A tensor of uniform values in [shift - scale, shift + scale) from a fixed seed, and the same values
    /// (rounded to float32) as doubles for the reference.
    /// </summary>
    public static (Tensor Tensor, double[] Values) RandomTensor(int[] shape, int seed, double scale = 1, double shift = 0)
    {
        var f = ToFloat(Random(Count(shape), seed, scale).Select(v => v + shift).ToArray());
        return (Tensor.FromArray(f, shape), ToDouble(f));
    }

    /// <summary>Moves every value closer than <paramref name="margin"/> to one of <paramref name="kinks"/> by 2 * margin, so finite differences never straddle a kink.</summary>
    public static Tensor AwayFrom(Tensor x, double margin, params double[] kinks)
    {
        var v = x.ToArray();
        for (var i = 0; i < v.Length; i++)
            foreach (var k in kinks)
                if (Math.Abs(v[i] - k) < margin) v[i] = (float)(k + (v[i] >= k ? 2 : -2) * margin);
        return Tensor.FromArray(v, x.ShapeArray());
    }
}
