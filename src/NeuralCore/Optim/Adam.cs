using NeuralCore.Backends;
using NeuralCore.NN;

namespace NeuralCore.Optim;

/// <summary>
/// Adam (PyTorch's <c>torch.optim.Adam</c>), with L2 weight decay ADDED TO THE GRADIENT (the seed's setting) and
/// optional AMSGrad. For decoupled weight decay use <see cref="AdamW"/>.
/// </summary>
/// <remarks>
/// Per step t, with g the gradient: g += weight_decay * p; m = beta1 m + (1 - beta1) g;
/// v = beta2 v + (1 - beta2) g^2; with AMSGrad vmax = max(vmax, v) replaces v below;
/// p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
/// State: <c>exp_avg</c> (m), <c>exp_avg_sq</c> (v), <c>max_exp_avg_sq</c> (vmax, AMSGrad only).
/// </remarks>
public class Adam : Optimizer
{
    private readonly bool _decoupled;

    /// <summary>Adam over <paramref name="parameters"/> (one group).</summary>
    public Adam(IEnumerable<Parameter> parameters, double lr = 1e-3, (double Beta1, double Beta2)? betas = null,
        double eps = 1e-8, double weightDecay = 0, bool amsgrad = false)
        : this([new ParamGroup(parameters)], lr, betas, eps, weightDecay, amsgrad) { }

    /// <summary>Adam over parameter groups; the arguments are the defaults for options a group leaves out.</summary>
    /// <param name="groups">The parameter groups.</param>
    /// <param name="lr">Learning rate (<c>lr</c>).</param>
    /// <param name="betas">Decay of the first and second moment (<c>beta1</c>, <c>beta2</c>; default (0.9, 0.999)).</param>
    /// <param name="eps">Added to the denominator after the square root (<c>eps</c>).</param>
    /// <param name="weightDecay">L2 penalty added to the gradient (<c>weight_decay</c>).</param>
    /// <param name="amsgrad">Use the running maximum of the second moment (<c>amsgrad</c>).</param>
    public Adam(IEnumerable<ParamGroup> groups, double lr = 1e-3, (double Beta1, double Beta2)? betas = null,
        double eps = 1e-8, double weightDecay = 0, bool amsgrad = false)
        : this(groups, lr, betas, eps, weightDecay, amsgrad, decoupled: false) { }

    /// <summary>Shared constructor of Adam and AdamW.</summary>
    private protected Adam(IEnumerable<ParamGroup> groups, double lr, (double Beta1, double Beta2)? betas, double eps,
        double weightDecay, bool amsgrad, bool decoupled)
        : base(groups, AdamDefaults(lr, betas ?? (0.9, 0.999), eps, weightDecay, amsgrad))
    {
        _decoupled = decoupled;
        foreach (var g in ParamGroups) Validate(g);
    }

    private static Dictionary<string, double> AdamDefaults(double lr, (double Beta1, double Beta2) betas, double eps, double weightDecay, bool amsgrad) => new()
    {
        ["lr"] = lr, ["beta1"] = betas.Beta1, ["beta2"] = betas.Beta2, ["eps"] = eps,
        ["weight_decay"] = weightDecay, ["amsgrad"] = amsgrad ? 1 : 0,
    };

    private static void Validate(ParamGroup g)
    {
        if (g.Lr < 0) throw new ArgumentOutOfRangeException("lr", g.Lr, "Adam learning rate must be at least 0.");
        if (g["eps"] < 0) throw new ArgumentOutOfRangeException("eps", g["eps"], "Adam eps must be at least 0.");
        if (g["beta1"] is < 0 or >= 1 || g["beta2"] is < 0 or >= 1)
            throw new ArgumentOutOfRangeException("betas", $"Adam betas must lie in [0, 1); got ({g["beta1"]}, {g["beta2"]}).");
        if (g.WeightDecay < 0) throw new ArgumentOutOfRangeException("weightDecay", g.WeightDecay, "Adam weight decay must be at least 0.");
    }

    /// <inheritdoc />
    protected override void Update(Tensor data, Tensor grad, ParamGroup group, IDictionary<string, Tensor> state, int step)
    {
        var amsgrad = group["amsgrad"] != 0;
        var m = GetOrCreateState(state, "exp_avg", data).Tensor;
        var v = GetOrCreateState(state, "exp_avg_sq", data).Tensor;
        var vMax = amsgrad ? GetOrCreateState(state, "max_exp_avg_sq", data).Tensor : null;
        var h = new AdamParams((float)group.Lr, (float)group["beta1"], (float)group["beta2"], (float)group["eps"],
            (float)group.WeightDecay, _decoupled, step, amsgrad);
        data.Backend.AdamStep(data, grad, m, v, vMax, h);
    }
}
