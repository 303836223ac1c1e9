using NeuralCore.Backends;
using NeuralCore.NN;

namespace NeuralCore.Optim;

/// <summary>
/// Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and L2 weight decay
/// (PyTorch's <c>torch.optim.SGD</c>).
/// </summary>
/// <remarks>
/// Per step, with g the gradient: d = g + weight_decay * p; with momentum, buf = d on the first step and
/// buf = momentum * buf + (1 - dampening) * d afterwards, then d = d + momentum * buf (Nesterov) or d = buf;
/// finally p -= lr * d. State: <c>momentum_buffer</c> (only when momentum is not 0).
/// </remarks>
public sealed class SGD : Optimizer
{
    /// <summary>SGD over <paramref name="parameters"/> (one group).</summary>
    public SGD(IEnumerable<Parameter> parameters, double lr = 1e-3, double momentum = 0, double dampening = 0,
        double weightDecay = 0, bool nesterov = false)
        : this([new ParamGroup(parameters)], lr, momentum, dampening, weightDecay, nesterov) { }

    /// <summary>SGD over parameter groups; the arguments are the defaults for options a group leaves out.</summary>
    /// <param name="groups">The parameter groups.</param>
    /// <param name="lr">Learning rate (<c>lr</c>).</param>
    /// <param name="momentum">Momentum factor (<c>momentum</c>).</param>
    /// <param name="dampening">Dampening of the momentum (<c>dampening</c>).</param>
    /// <param name="weightDecay">L2 penalty added to the gradient (<c>weight_decay</c>).</param>
    /// <param name="nesterov">Nesterov momentum (<c>nesterov</c>; needs momentum &gt; 0 and no dampening).</param>
    public SGD(IEnumerable<ParamGroup> groups, double lr = 1e-3, double momentum = 0, double dampening = 0,
        double weightDecay = 0, bool nesterov = false)
        : base(groups, new Dictionary<string, double>
        {
            ["lr"] = lr, ["momentum"] = momentum, ["dampening"] = dampening,
            ["weight_decay"] = weightDecay, ["nesterov"] = nesterov ? 1 : 0,
        })
    {
        foreach (var g in ParamGroups) Validate(g);
    }

    private static void Validate(ParamGroup g)
    {
        if (g.Lr < 0) throw new ArgumentOutOfRangeException("lr", g.Lr, "SGD learning rate must be at least 0.");
        if (g["momentum"] < 0) throw new ArgumentOutOfRangeException("momentum", g["momentum"], "SGD momentum must be at least 0.");
        if (g.WeightDecay < 0) throw new ArgumentOutOfRangeException("weightDecay", g.WeightDecay, "SGD weight decay must be at least 0.");
        if (g["nesterov"] != 0 && (g["momentum"] <= 0 || g["dampening"] != 0))
            throw new ArgumentException($"Nesterov momentum needs momentum > 0 and dampening 0; got momentum {g["momentum"]} and dampening {g["dampening"]}.");
    }

    /// <inheritdoc />
    protected override void Update(Tensor data, Tensor grad, ParamGroup group, IDictionary<string, Tensor> state, int step)
    {
        var momentum = group["momentum"];
        Tensor? buffer = null;
        var first = false;
        if (momentum != 0) (buffer, first) = GetOrCreateState(state, "momentum_buffer", data);
        var h = new SgdParams((float)group.Lr, (float)momentum, (float)group["dampening"], (float)group.WeightDecay,
            group["nesterov"] != 0, first);
        data.Backend.SgdStep(data, grad, buffer, h);
    }
}
