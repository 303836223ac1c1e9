using NeuralCore.NN;

namespace NeuralCore.Optim;

/// <summary>Gradient clipping (PyTorch's <c>torch.nn.utils.clip_grad_norm_</c> and <c>clip_grad_value_</c>).</summary>
public static class GradientClipping
{
    /// <summary>
    /// Scales all gradients together so their total norm is at most <paramref name="maxNorm"/>, and returns the total
    /// norm before clipping. The total norm is the p-norm of the vector of per-parameter p-norms (the p-norm of all
    /// gradient elements together; the largest absolute element for p = infinity). Gradients are multiplied by
    /// min(1, maxNorm / (total + 1e-6)). Parameters without a gradient are ignored; none gives 0.
    /// </summary>
    /// <param name="parameters">The parameters whose gradients to clip.</param>
    /// <param name="maxNorm">The largest allowed total norm.</param>
    /// <param name="normType">p of the p-norm (2 by default; <see cref="double.PositiveInfinity"/> for the max norm).</param>
    public static double ClipGradNorm(IEnumerable<Parameter> parameters, double maxNorm, double normType = 2)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (normType <= 0 || double.IsNaN(normType)) throw new ArgumentOutOfRangeException(nameof(normType), normType, "The norm type must be positive (or infinity).");
        var grads = parameters.Select(p => p.Grad).OfType<Tensor>().ToList();
        if (grads.Count == 0) return 0;
        using var _ = Autograd.Autograd.NoGrad();
        var isInf = double.IsPositiveInfinity(normType);
        var p = (float)normType;
        // One scalar per gradient on its device; one host read for the total.
        var norms = grads.Select(g =>
        {
            var a = g.Detach().Abs();
            var n = isInf ? a.Max() : normType == 2 ? a.Square().Sum().Sqrt() : normType == 1 ? a.Sum() : a.Pow(p).Sum().Pow(1 / p);
            return n.Reshape(1).To(grads[0].Device);
        }).ToList();
        var all = Tensor.Concat(norms);
        var total = isInf ? all.Max().Item() : normType == 2 ? all.Square().Sum().Sqrt().Item() : all.Pow(p).Sum().Pow(1 / p).Item();
        var coefficient = maxNorm / (total + 1e-6);
        if (coefficient < 1)
            foreach (var g in grads) g.MulInPlace((float)coefficient);
        return total;
    }

    /// <summary>Clamps every gradient element into [-<paramref name="clipValue"/>, <paramref name="clipValue"/>] in place.</summary>
    public static void ClipGradValue(IEnumerable<Parameter> parameters, double clipValue)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (clipValue < 0) throw new ArgumentOutOfRangeException(nameof(clipValue), clipValue, "The clip value must be at least 0.");
        using var _ = Autograd.Autograd.NoGrad();
        foreach (var param in parameters)
            param.Grad?.CopyFrom(param.Grad.Detach().Clamp((float)-clipValue, (float)clipValue));
    }
}
