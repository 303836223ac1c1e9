using NeuralCore.NN;

namespace NeuralCore.Optim;

/// <summary>
/// AdamW (PyTorch's <c>torch.optim.AdamW</c>): Adam with decoupled weight decay, p *= 1 - lr * weight_decay before
/// the Adam update (the gradient is not changed). Default weight decay 0.01.
/// </summary>
public sealed class AdamW : Adam
{
    /// <summary>AdamW over <paramref name="parameters"/> (one group).</summary>
    public AdamW(IEnumerable<Parameter> parameters, double lr = 1e-3, (double Beta1, double Beta2)? betas = null,
        double eps = 1e-8, double weightDecay = 0.01, bool amsgrad = false)
        : this([new ParamGroup(parameters)], lr, betas, eps, weightDecay, amsgrad) { }

    /// <summary>AdamW over parameter groups; the arguments are the defaults for options a group leaves out.</summary>
    /// <param name="groups">The parameter groups.</param>
    /// <param name="lr">Learning rate (<c>lr</c>).</param>
    /// <param name="betas">Decay of the first and second moment (<c>beta1</c>, <c>beta2</c>; default (0.9, 0.999)).</param>
    /// <param name="eps">Added to the denominator after the square root (<c>eps</c>).</param>
    /// <param name="weightDecay">Decoupled decay rate (<c>weight_decay</c>).</param>
    /// <param name="amsgrad">Use the running maximum of the second moment (<c>amsgrad</c>).</param>
    public AdamW(IEnumerable<ParamGroup> groups, double lr = 1e-3, (double Beta1, double Beta2)? betas = null,
        double eps = 1e-8, double weightDecay = 0.01, bool amsgrad = false)
        : base(groups, lr, betas, eps, weightDecay, amsgrad, decoupled: true) { }
}
