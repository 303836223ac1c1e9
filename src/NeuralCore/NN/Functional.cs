using NeuralCore.Autograd;
using NeuralCore.Backends;

namespace NeuralCore.NN;

/// <summary>How a loss over a batch is reduced to its result.</summary>
public enum Reduction
{
    /// <summary>One loss per sample.</summary>
    None,
    /// <summary>The (weighted) mean.</summary>
    Mean,
    /// <summary>The sum.</summary>
    Sum,
}

/// <summary>
/// Differentiable neural-network ops on NCHW tensors (PyTorch's <c>torch.nn.functional</c>). Each op records its
/// node with the attributes the pruner and exporters read.
/// </summary>
public static class Functional
{
    private static Dictionary<string, object> Attrs(params (string Key, object Value)[] items) => items.ToDictionary(i => i.Key, i => i.Value);

    private static void Expect(Tensor t, int rank, string op, string what)
    {
        if (t.Rank != rank) throw new ArgumentException($"{op} expects {what} of rank {rank}, got shape {Tensor.FormatShape(t.Shape)}.");
        if (t.DType != DType.Float32) throw new ArgumentException($"{op} expects a Float32 {what}, got {t.DType}.");
    }

    /// <summary>
    /// 2-D convolution. x [N, C, H, W], weight [K, C/groups, R, S], bias [K] or null → [N, K, P, Q].
    /// </summary>
    public static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias = null, (int H, int W)? stride = null,
        (int H, int W)? padding = null, (int H, int W)? dilation = null, int groups = 1)
    {
        Expect(x, 4, "Conv2d", "an input [N, C, H, W]");
        Expect(weight, 4, "Conv2d", "a weight [K, C/groups, R, S]");
        var (sh, sw) = stride ?? (1, 1);
        var (ph, pw) = padding ?? (0, 0);
        var (dh, dw) = dilation ?? (1, 1);
        int n = x.Size(0), c = x.Size(1), h = x.Size(2), w = x.Size(3);
        int k = weight.Size(0), r = weight.Size(2), s = weight.Size(3);
        if (groups < 1 || c % groups != 0 || k % groups != 0)
            throw new ArgumentException($"Conv2d groups={groups} must divide the input channels ({c}) and output channels ({k}).");
        if (weight.Size(1) != c / groups)
            throw new ArgumentException($"Conv2d weight {Tensor.FormatShape(weight.Shape)} expects {weight.Size(1) * groups} input channels, but the input {Tensor.FormatShape(x.Shape)} has {c}.");
        if (bias is not null && (bias.Rank != 1 || bias.Size(0) != k))
            throw new ArgumentException($"Conv2d bias must have shape [{k}], got {Tensor.FormatShape(bias.Shape)}.");
        var p = new Conv2dParams(n, c, h, w, k, r, s, sh, sw, ph, pw, dh, dw, groups);
        // Strides, dilations and padding first, then whether the kernel fits the padded input (PyTorch refuses both).
        p.Validate();
        var xc = x.Contiguous(); var wc = weight.Contiguous(); var bc = bias?.Contiguous();
        var y = Tensor.Empty([n, k, p.P, p.Q], x.Device);
        x.Backend.Conv2d(xc, wc, bc, y, p);
        Tensor[] inputs = bias is null ? [x, weight] : [x, weight, bias];
        return Autograd.Autograd.Record(y, OpKind.Conv2d, inputs, g =>
        {
            var gc = g.Contiguous();
            Tensor? dx = null, dwt = null, db = null;
            if (x.RequiresGrad) { dx = Tensor.Empty(xc.ShapeArray(), xc.Device); xc.Backend.Conv2dBackwardData(gc, wc, dx, p); }
            if (weight.RequiresGrad) { dwt = Tensor.Empty(wc.ShapeArray(), wc.Device); xc.Backend.Conv2dBackwardWeight(gc, xc, dwt, p); }
            if (bias is not null && bias.RequiresGrad) db = gc.Sum([0, 2, 3]);
            return bias is null ? [dx, dwt] : [dx, dwt, db];
        }, () => Attrs(("stride", new[] { sh, sw }), ("padding", new[] { ph, pw }), ("dilation", new[] { dh, dw }), ("groups", groups)));
    }

    private static Tensor Pool(PoolKind kind, Tensor x, (int H, int W) kernel, (int H, int W)? stride, (int H, int W)? padding, bool ceilMode)
    {
        var op = kind == PoolKind.Max ? "MaxPool2d" : "AvgPool2d";
        Expect(x, 4, op, "an input [N, C, H, W]");
        var (sh, sw) = stride ?? kernel;
        var (ph, pw) = padding ?? (0, 0);
        if (ph * 2 > kernel.H || pw * 2 > kernel.W)
            throw new ArgumentException($"{op} padding ({ph}, {pw}) must be at most half the kernel ({kernel.H}, {kernel.W}).");
        var p = new Pool2dParams(x.Size(0), x.Size(1), x.Size(2), x.Size(3), kernel.H, kernel.W, sh, sw, ph, pw, ceilMode);
        if (kernel.H < 1 || kernel.W < 1 || sh < 1 || sw < 1)
            throw new ArgumentException($"{op} needs a kernel and stride of at least 1, got kernel ({kernel.H}, {kernel.W}) and stride ({sh}, {sw}).");
        if (p.P <= 0 || p.Q <= 0) throw new ArgumentException($"{op} input {p.H}x{p.W} is too small for kernel ({kernel.H}, {kernel.W}) with padding ({ph}, {pw}) and stride ({sh}, {sw}).");
        var xc = x.Contiguous();
        var y = Tensor.Empty([p.N, p.C, p.P, p.Q], x.Device);
        var idx = kind == PoolKind.Max ? Tensor.Empty([p.N, p.C, p.P, p.Q], x.Device, DType.Int32) : null;
        x.Backend.Pool2d(kind, xc, y, idx, p);
        return Autograd.Autograd.Record(y, kind == PoolKind.Max ? OpKind.MaxPool2d : OpKind.AvgPool2d, [x], g =>
        {
            var dx = Tensor.Empty(xc.ShapeArray(), xc.Device);
            xc.Backend.Pool2dBackward(kind, g.Contiguous(), idx, dx, p);
            return [dx];
        }, () => Attrs(("kernel", new[] { kernel.H, kernel.W }), ("stride", new[] { sh, sw }), ("padding", new[] { ph, pw }), ("ceil_mode", ceilMode)));
    }

    /// <summary>2-D max pooling (stride defaults to the kernel; padding counts as -inf).</summary>
    public static Tensor MaxPool2d(Tensor x, (int H, int W) kernel, (int H, int W)? stride = null, (int H, int W)? padding = null, bool ceilMode = false)
        => Pool(PoolKind.Max, x, kernel, stride, padding, ceilMode);

    /// <summary>2-D average pooling (stride defaults to the kernel; zero padding counts in the average, PyTorch's default).</summary>
    public static Tensor AvgPool2d(Tensor x, (int H, int W) kernel, (int H, int W)? stride = null, (int H, int W)? padding = null, bool ceilMode = false)
        => Pool(PoolKind.Average, x, kernel, stride, padding, ceilMode);

    /// <summary>
    /// Adaptive average pooling to [N, C, outH, outW]: output cell (i, j) averages rows floor(i*H/outH)..ceil((i+1)*H/outH)
    /// and the same for columns, as PyTorch. Recorded as one AdaptiveAvgPool2d node when the cells tile the input evenly
    /// (always for output 1x1), as a composite of slices and means otherwise.
    /// </summary>
    public static Tensor AdaptiveAvgPool2d(Tensor x, (int H, int W) outputSize)
    {
        Expect(x, 4, "AdaptiveAvgPool2d", "an input [N, C, H, W]");
        int n = x.Size(0), c = x.Size(1), h = x.Size(2), w = x.Size(3);
        if (outputSize.H <= 0 || outputSize.W <= 0) throw new ArgumentException($"AdaptiveAvgPool2d output size ({outputSize.H}, {outputSize.W}) must be positive.");
        if (h % outputSize.H != 0 || w % outputSize.W != 0) return AdaptiveAvgPool2dComposite(x, outputSize);
        var p = new Pool2dParams(n, c, h, w, h / outputSize.H, w / outputSize.W, h / outputSize.H, w / outputSize.W, 0, 0);
        var xc = x.Contiguous();
        var y = Tensor.Empty([n, c, outputSize.H, outputSize.W], x.Device);
        x.Backend.Pool2d(PoolKind.Average, xc, y, null, p);
        return Autograd.Autograd.Record(y, OpKind.AdaptiveAvgPool2d, [x], g =>
        {
            var dx = Tensor.Empty(xc.ShapeArray(), xc.Device);
            xc.Backend.Pool2dBackward(PoolKind.Average, g.Contiguous(), null, dx, p);
            return [dx];
        }, () => Attrs(("output_size", new[] { outputSize.H, outputSize.W })));
    }

    private static Tensor AdaptiveAvgPool2dComposite(Tensor x, (int H, int W) outputSize)
    {
        int h = x.Size(2), w = x.Size(3);
        var rows = new List<Tensor>();
        for (var i = 0; i < outputSize.H; i++)
        {
            int r0 = i * h / outputSize.H, r1 = ((i + 1) * h + outputSize.H - 1) / outputSize.H;
            var cols = new List<Tensor>();
            for (var j = 0; j < outputSize.W; j++)
            {
                int c0 = j * w / outputSize.W, c1 = ((j + 1) * w + outputSize.W - 1) / outputSize.W;
                cols.Add(x.Narrow(2, r0, r1 - r0).Narrow(3, c0, c1 - c0).Mean([2, 3], keepDim: true));
            }
            rows.Add(Tensor.Concat(cols, 3));
        }
        return Tensor.Concat(rows, 2);
    }

    /// <summary>
    /// Batch norm over the channels of x [N, C, H, W] (or [N, C]). Training mode normalises with the batch
    /// statistics and updates the running statistics in place (momentum, unbiased variance); eval mode uses them.
    /// </summary>
    public static Tensor BatchNorm2d(Tensor x, Tensor? runningMean, Tensor? runningVar, Tensor weight, Tensor bias,
        bool training, float momentum = 0.1f, float eps = 1e-5f)
    {
        if (x.Rank is not (2 or 4)) throw new ArgumentException($"BatchNorm expects an input [N, C, H, W] or [N, C], got {Tensor.FormatShape(x.Shape)}.");
        int n = x.Size(0), c = x.Size(1), hw = x.NumElements / Math.Max(n * c, 1);
        if (weight.NumElements != c || bias.NumElements != c)
            throw new ArgumentException($"BatchNorm over {c} channels needs weight and bias of shape [{c}], got {Tensor.FormatShape(weight.Shape)} and {Tensor.FormatShape(bias.Shape)}.");
        if (!training && (runningMean is null || runningVar is null))
            throw new ArgumentException("BatchNorm in eval mode needs running statistics.");
        if (training && n * hw <= 1)
            throw new ArgumentException($"BatchNorm in training mode needs more than one value per channel, got input {Tensor.FormatShape(x.Shape)}.");
        var xc = x.Contiguous(); var wc = weight.Contiguous(); var bc = bias.Contiguous();
        var y = Tensor.Empty(x.ShapeArray(), x.Device);
        var be = x.Backend;
        Dictionary<string, object> attrs()
        {
            var a = Attrs(("training", training), ("eps", eps), ("momentum", momentum));
            if (runningMean is not null) a["running_mean"] = runningMean;
            if (runningVar is not null) a["running_var"] = runningVar;
            return a;
        }
        if (training)
        {
            var mean = Tensor.Empty([c], x.Device);
            var invStd = Tensor.Empty([c], x.Device);
            be.BatchNormTraining(xc, wc, bc, y, mean, invStd, runningMean, runningVar, momentum, eps, n, c, hw);
            return Autograd.Autograd.Record(y, OpKind.BatchNorm2d, [x, weight, bias], g =>
            {
                var dx = Tensor.Empty(xc.ShapeArray(), xc.Device); var dg = Tensor.Empty([c], x.Device); var db = Tensor.Empty([c], x.Device);
                be.BatchNormBackward(xc, g.Contiguous(), wc, mean, invStd, dx, dg, db, n, c, hw);
                return [dx, dg.Reshape(weight.ShapeArray()), db.Reshape(bias.ShapeArray())];
            }, attrs);
        }
        var rm = runningMean!.Detach().Contiguous();
        var rv = runningVar!.Detach().Contiguous();
        be.BatchNormInference(xc, wc, bc, rm, rv, y, eps, n, c, hw);
        return Autograd.Autograd.Record(y, OpKind.BatchNorm2d, [x, weight, bias], g =>
        {
            // Eval mode is an affine map per channel: y = (x - rm) * gamma / sqrt(rv + eps) + beta.
            int[] cs = x.Rank == 4 ? [1, c, 1, 1] : [1, c];
            var invStd = rv.Add(eps).Sqrt().Reciprocal().Reshape(cs);
            var xhat = xc.Sub(rm.Reshape(cs)).Mul(invStd);
            int[] dims = x.Rank == 4 ? [0, 2, 3] : [0];
            return [g.Mul(wc.Reshape(cs).Mul(invStd)), g.Mul(xhat).Sum(dims).Reshape(weight.ShapeArray()), g.Sum(dims).Reshape(bias.ShapeArray())];
        }, attrs);
    }

    private static Tensor SoftmaxImpl(Tensor x, int dim, bool log)
    {
        if (x.DType != DType.Float32) throw new ArgumentException($"Softmax needs Float32, got {x.DType}.");
        if (x.Rank == 0)
        {
            // A scalar is a distribution over one value (PyTorch takes dimension 0 or -1 of a scalar).
            Tensor.NormalizeDim(dim, 0);
            return SoftmaxImpl(x.Reshape(1), 0, log).Reshape();
        }
        var d = Tensor.NormalizeDim(dim, x.Rank);
        if (d != x.Rank - 1)
        {
            var perm = Enumerable.Range(0, x.Rank).ToArray();
            (perm[d], perm[^1]) = (perm[^1], perm[d]);
            return SoftmaxImpl(x.Permute(perm), -1, log).Permute(perm);
        }
        var cols = x.Rank == 0 ? 1 : x.Size(-1);
        var rows = x.NumElements / Math.Max(cols, 1);
        var xc = x.Contiguous();
        var y = Tensor.Empty(x.ShapeArray(), x.Device);
        x.Backend.Softmax(xc, y, rows, cols, log);
        return Autograd.Autograd.Record(y, log ? OpKind.LogSoftmax : OpKind.Softmax, [x], g =>
        {
            var dx = Tensor.Empty(y.ShapeArray(), y.Device);
            y.Backend.SoftmaxBackward(y, g.Contiguous(), dx, rows, cols, log);
            return [dx];
        }, () => Attrs(("dim", -1)));
    }

    /// <summary>Softmax along <paramref name="dim"/>.</summary>
    public static Tensor Softmax(Tensor x, int dim = -1) => SoftmaxImpl(x, dim, false);

    /// <summary>Log-softmax along <paramref name="dim"/> (computed stably, not as log(softmax)).</summary>
    public static Tensor LogSoftmax(Tensor x, int dim = -1) => SoftmaxImpl(x, dim, true);

    /// <summary>
    /// Negative log-likelihood of Int64 <paramref name="targets"/> [N] under log-probabilities [N, C], with PyTorch's
    /// class weights and label smoothing. Optional <paramref name="sampleWeights"/> [N] scale each sample's loss.
    /// Mean reduction divides by the sum of the weights in effect (class weight of each target times its sample
    /// weight; N when there are none), as PyTorch does for class weights.
    /// </summary>
    public static Tensor NllLoss(Tensor logProbs, Tensor targets, Tensor? classWeights = null, Reduction reduction = Reduction.Mean,
        float labelSmoothing = 0, Tensor? sampleWeights = null)
    {
        if (logProbs.Rank != 2) throw new ArgumentException($"NllLoss expects log-probabilities [N, C], got {Tensor.FormatShape(logProbs.Shape)}.");
        int rows = logProbs.Size(0), cols = logProbs.Size(1);
        if (targets.DType != DType.Int64 || targets.Rank != 1 || targets.Size(0) != rows)
            throw new ArgumentException($"NllLoss expects Int64 targets [{rows}], got {targets.DType} {Tensor.FormatShape(targets.Shape)}.");
        if (classWeights is not null && (classWeights.Rank != 1 || classWeights.Size(0) != cols))
            throw new ArgumentException($"NllLoss class weights must have shape [{cols}], got {Tensor.FormatShape(classWeights.Shape)}.");
        if (sampleWeights is not null && (sampleWeights.Rank != 1 || sampleWeights.Size(0) != rows))
            throw new ArgumentException($"NllLoss sample weights must have shape [{rows}], got {Tensor.FormatShape(sampleWeights.Shape)}.");
        if (labelSmoothing is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, "Label smoothing must lie in [0, 1].");
        var lp = logProbs.Contiguous();
        var t = targets.Contiguous();
        var cw = classWeights?.Detach().Contiguous();
        var losses = Tensor.Empty([rows], logProbs.Device);
        lp.Backend.NllLoss(lp, t, cw, labelSmoothing, losses, rows, cols);
        losses = Autograd.Autograd.Record(losses, OpKind.NllLoss, [logProbs, targets], g =>
        {
            var d = Tensor.Empty(lp.ShapeArray(), lp.Device);
            lp.Backend.NllLossBackward(t, cw, labelSmoothing, g.Contiguous(), d, rows, cols);
            return [d, null];
        }, () => Attrs(("label_smoothing", labelSmoothing)));
        if (sampleWeights is not null) losses = losses.Mul(sampleWeights.Detach());
        switch (reduction)
        {
            case Reduction.None: return losses;
            case Reduction.Sum: return losses.Sum();
            default:
                if (cw is null && sampleWeights is null) return losses.Mean();
                var wt = cw is null ? Tensor.FullOutput([rows], 1, logProbs.Device) : cw.IndexSelect(0, t);
                if (sampleWeights is not null) wt = wt.Mul(sampleWeights.Detach());
                return losses.Sum().Div(wt.Sum());
        }
    }

    /// <summary>Cross-entropy of logits [N, C] and Int64 class targets [N]: NllLoss(LogSoftmax(logits)).</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets, Tensor? classWeights = null, Reduction reduction = Reduction.Mean,
        float labelSmoothing = 0, Tensor? sampleWeights = null)
        => NllLoss(LogSoftmax(logits, 1), targets, classWeights, reduction, labelSmoothing, sampleWeights);

    /// <summary>Cross-entropy of logits [N, C] against soft targets [N, C] (class probabilities, e.g. from mixup).</summary>
    public static Tensor CrossEntropySoft(Tensor logits, Tensor targetProbs, Reduction reduction = Reduction.Mean)
    {
        if (!logits.Shape.SequenceEqual(targetProbs.Shape))
            throw new ArgumentException($"Soft targets {Tensor.FormatShape(targetProbs.Shape)} must match the logits {Tensor.FormatShape(logits.Shape)}.");
        var losses = LogSoftmax(logits, 1).Mul(targetProbs.Detach()).Sum(1).Neg();
        return reduction switch { Reduction.None => losses, Reduction.Sum => losses.Sum(), _ => losses.Mean() };
    }

    /// <summary>Mean squared error.</summary>
    public static Tensor MseLoss(Tensor input, Tensor target, Reduction reduction = Reduction.Mean)
    {
        var sq = input.Sub(target).Square();
        return reduction switch { Reduction.None => sq, Reduction.Sum => sq.Sum(), _ => sq.Mean() };
    }

    /// <summary>
    /// Dropout: in training, zeroes each element with probability <paramref name="p"/> and scales the rest by 1/(1-p);
    /// the identity in eval mode.
    /// </summary>
    public static Tensor Dropout(Tensor x, float p, bool training, Generator? generator = null)
    {
        if (p is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(p), p, "Dropout probability must lie in [0, 1).");
        if (!training || p == 0) return x;
        var mask = Tensor.Rand(x.ShapeArray(), generator, x.Device);
        Tensor scaled;
        using (Autograd.Autograd.NoGrad())
            scaled = mask.Sub(p).Sign().Relu().Mul(1f / (1 - p));
        var y = x.Detach().Mul(scaled);
        return Autograd.Autograd.Record(y, OpKind.Dropout, [x], g => [g.Mul(scaled)], () => Attrs(("p", p)));
    }
}
