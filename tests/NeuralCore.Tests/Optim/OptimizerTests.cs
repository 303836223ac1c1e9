using NeuralCore.NN;
using NeuralCore.Optim;
using static NeuralCore.Autograd.Autograd;

namespace NeuralCore.Tests.Optim;

public class OptimizerTests
{
    private static readonly double[] Start = [1.0, -2.0, 0.5];

    // Five steps of gradients; large first steps then small ones so that v shrinks (AMSGrad differs).
    private static readonly double[][] Grads =
    [
        [10.0, -3.0, 0.5],
        [8.0, 2.0, -0.25],
        [0.1, -0.2, 0.05],
        [-0.05, 0.3, 0.01],
        [0.02, -0.01, -0.4],
    ];

    private static Parameter NewParam(double[] values) => new(Tensor.FromArray(values.Select(v => (float)v).ToArray(), values.Length));

    private static void SetGrad(Parameter p, double[] g) => p.Grad = Tensor.FromArray(g.Select(v => (float)v).ToArray(), g.Length);

    private static void AssertClose(double[] expected, float[] actual, double relTol = 2e-5)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= relTol * (1e-3 + Math.Abs(expected[i])), $"element {i}: expected {expected[i]:R}, got {actual[i]:R}");
    }

    /// <summary>torch.optim.Adam / AdamW's documented algorithm, in double precision.</summary>
    private static double[] ReferenceAdam(double lr, double b1, double b2, double eps, double wd, bool decoupled, bool amsgrad)
    {
        var p = (double[])Start.Clone();
        var m = new double[p.Length]; var v = new double[p.Length]; var vMax = new double[p.Length];
        for (var t = 1; t <= Grads.Length; t++)
            for (var i = 0; i < p.Length; i++)
            {
                var g = Grads[t - 1][i];
                if (decoupled) p[i] *= 1 - lr * wd;
                else g += wd * p[i];
                m[i] = b1 * m[i] + (1 - b1) * g;
                v[i] = b2 * v[i] + (1 - b2) * g * g;
                vMax[i] = Math.Max(vMax[i], v[i]);
                var second = amsgrad ? vMax[i] : v[i];
                var denom = Math.Sqrt(second) / Math.Sqrt(1 - Math.Pow(b2, t)) + eps;
                p[i] -= lr / (1 - Math.Pow(b1, t)) * m[i] / denom;
            }
        return p;
    }

    /// <summary>torch.optim.SGD's documented algorithm, in double precision.</summary>
    private static double[] ReferenceSgd(double lr, double momentum, double dampening, double wd, bool nesterov)
    {
        var p = (double[])Start.Clone();
        var buf = new double[p.Length];
        for (var t = 1; t <= Grads.Length; t++)
            for (var i = 0; i < p.Length; i++)
            {
                var d = Grads[t - 1][i] + wd * p[i];
                if (momentum != 0)
                {
                    buf[i] = t == 1 ? d : momentum * buf[i] + (1 - dampening) * d;
                    d = nesterov ? d + momentum * buf[i] : buf[i];
                }
                p[i] -= lr * d;
            }
        return p;
    }

    private static float[] Run(Func<Parameter, Optimizer> make)
    {
        var p = NewParam(Start);
        var opt = make(p);
        foreach (var g in Grads)
        {
            SetGrad(p, g);
            opt.Step();
        }
        return p.ToArray();
    }

    [Theory]
    [InlineData(0.0, false)]
    [InlineData(0.1, false)]
    [InlineData(0.0, true)]
    [InlineData(0.1, true)]
    public void Adam_MatchesPyTorchsAlgorithm(double weightDecay, bool amsgrad)
    {
        var expected = ReferenceAdam(0.01, 0.9, 0.999, 1e-8, weightDecay, decoupled: false, amsgrad);
        var actual = Run(p => new Adam([p], lr: 0.01, weightDecay: weightDecay, amsgrad: amsgrad));
        AssertClose(expected, actual);
    }

    /// <summary>
    /// A parameter of 37 values (four 8-lane vectors and a tail of 5 on x64, nine 4-lane vectors and a tail of 1 with
    /// NEON): every value takes the float operations of the documented loop in its order, bit for bit, with and without
    /// (decoupled) weight decay.
    /// </summary>
    [Theory]
    [InlineData(0.0, false)]
    [InlineData(0.1, false)]
    [InlineData(0.5, true)]
    public void Adam_VectorLanesGiveTheLoopsBits(double weightDecay, bool decoupled)
    {
        const int n = 37;
        var rng = new Random(5);
        float[] start = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        float[][] grads = Enumerable.Range(0, 4).Select(_ => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray()).ToArray();
        var p = new Parameter(Tensor.FromArray((float[])start.Clone(), n));
        Optimizer opt = decoupled ? new AdamW([p], lr: 0.01, weightDecay: weightDecay) : new Adam([p], lr: 0.01, weightDecay: weightDecay);
        foreach (var g in grads)
        {
            p.Grad = Tensor.FromArray((float[])g.Clone(), n);
            opt.Step();
        }
        // The loop, in float.
        float lr = 0.01f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = (float)weightDecay;
        float[] x = (float[])start.Clone(), m = new float[n], v = new float[n];
        for (int t = 1; t <= grads.Length; t++)
        {
            float stepSize = (float)(lr / (1 - Math.Pow(b1, t)));
            float bc2Sqrt = (float)Math.Sqrt(1 - Math.Pow(b2, t));
            for (int i = 0; i < n; i++)
            {
                float g = grads[t - 1][i];
                if (wd != 0)
                {
                    if (decoupled) x[i] *= 1 - lr * wd;
                    else g += wd * x[i];
                }
                m[i] = b1 * m[i] + (1 - b1) * g;
                v[i] = b2 * v[i] + (1 - b2) * g * g;
                float denom = MathF.Sqrt(v[i]) / bc2Sqrt + eps;
                x[i] -= stepSize * m[i] / denom;
            }
        }
        Assert.Equal(x.Select(BitConverter.SingleToInt32Bits), p.ToArray().Select(BitConverter.SingleToInt32Bits));
    }

    [Fact]
    public void Adam_WeightDecayAndAmsgradChangeTheResult()
    {
        // Guards the theory above against a reference that ignores its arguments.
        var plain = ReferenceAdam(0.01, 0.9, 0.999, 1e-8, 0, false, false);
        Assert.NotEqual(plain[0], ReferenceAdam(0.01, 0.9, 0.999, 1e-8, 0.1, false, false)[0], 6);
        Assert.NotEqual(plain[0], ReferenceAdam(0.01, 0.9, 0.999, 1e-8, 0, false, true)[0], 6);
        Assert.NotEqual(plain[0], ReferenceAdam(0.01, 0.9, 0.999, 1e-8, 0.1, true, false)[0], 6);
    }

    [Fact]
    public void Adam_CustomBetasAndEps()
    {
        var expected = ReferenceAdam(0.05, 0.5, 0.9, 1e-3, 0.01, decoupled: false, amsgrad: false);
        AssertClose(expected, Run(p => new Adam([p], lr: 0.05, betas: (0.5, 0.9), eps: 1e-3, weightDecay: 0.01)));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AdamW_DecaysTheWeightsDecoupled(bool amsgrad)
    {
        var expected = ReferenceAdam(0.01, 0.9, 0.999, 1e-8, 0.5, decoupled: true, amsgrad);
        AssertClose(expected, Run(p => new AdamW([p], lr: 0.01, weightDecay: 0.5, amsgrad: amsgrad)));
        Assert.Equal(0.01, new AdamW([NewParam(Start)]).ParamGroups[0].WeightDecay);
    }

    [Theory]
    [InlineData(0.0, 0.0, 0.0, false)]
    [InlineData(0.9, 0.0, 0.0, false)]
    [InlineData(0.9, 0.3, 0.0, false)]
    [InlineData(0.9, 0.0, 0.05, false)]
    [InlineData(0.9, 0.0, 0.05, true)]
    [InlineData(0.0, 0.0, 0.05, false)]
    public void Sgd_MatchesPyTorchsAlgorithm(double momentum, double dampening, double weightDecay, bool nesterov)
    {
        var expected = ReferenceSgd(0.1, momentum, dampening, weightDecay, nesterov);
        var actual = Run(p => new SGD([p], lr: 0.1, momentum: momentum, dampening: dampening, weightDecay: weightDecay, nesterov: nesterov));
        AssertClose(expected, actual);
    }

    [Fact]
    public void Sgd_RejectsNesterovWithoutMomentum()
    {
        var e = Assert.Throws<ArgumentException>(() => new SGD([NewParam(Start)], nesterov: true));
        Assert.Contains("Nesterov", e.Message);
    }

    [Fact]
    public void Step_UsesAutogradGradientsAndSkipsParametersWithoutGradient()
    {
        var a = NewParam([3.0, -1.0]);
        var b = NewParam([5.0]);
        var opt = new SGD([a, b], lr: 0.25);
        a.Square().Sum().Backward();
        opt.Step();
        // d/da sum(a^2) = 2a: a - 0.25 * 2a = a / 2; b has no gradient and stays.
        Assert.Equal([1.5f, -0.5f], a.ToArray());
        Assert.Equal([5f], b.ToArray());
        Assert.Equal(1, opt.StepCount(a));
        Assert.Equal(0, opt.StepCount(b));
        Assert.False(opt.State.ContainsKey(b));
        opt.ZeroGrad();
        Assert.Null(a.Grad);
    }

    [Fact]
    public void State_UsesPyTorchNamesAndTheParameterShape()
    {
        var w = new Parameter(Tensor.Ones([2, 3]));
        var adam = new Adam([w], amsgrad: true);
        w.Grad = Tensor.Ones([2, 3]);
        adam.Step();
        Assert.Equal(["exp_avg", "exp_avg_sq", "max_exp_avg_sq"], adam.State[w].Keys.Order());
        Assert.All(adam.State[w].Values, t => Assert.Equal([2, 3], t.ShapeArray()));

        var sgd = new SGD([w], momentum: 0.9);
        sgd.Step();
        Assert.Equal(["momentum_buffer"], sgd.State[w].Keys);
        Assert.Empty(new SGD([w]).State);
    }

    [Fact]
    public void State_SlicedAlongWithItsParameterKeepsWorking()
    {
        // What the pruner does: keep rows 0 and 2 of a [3, 2] weight and of every state tensor.
        var w = new Parameter(Tensor.FromArray([1f, 2, 3, 4, 5, 6], 3, 2));
        var adam = new Adam([w], lr: 0.1);
        w.Grad = Tensor.FromArray([1f, 1, 1, 1, 1, 1], 3, 2);
        adam.Step();
        var keep = Tensor.FromArray([0L, 2L], 2);
        using (NoGrad())
        {
            w.SetData(w.Detach().IndexSelect(0, keep));
            foreach (var name in adam.State[w].Keys.ToList())
                adam.State[w][name] = adam.State[w][name].IndexSelect(0, keep);
        }
        w.Grad = Tensor.Ones([2, 2]);
        adam.Step();
        Assert.Equal([2, 2], w.ShapeArray());

        // Forgetting to slice the state is reported by name.
        var stale = new Parameter(Tensor.Ones([3]));
        var opt = new Adam([stale]);
        stale.Grad = Tensor.Ones([3]);
        opt.Step();
        stale.SetData(Tensor.Ones([2]));
        stale.Grad = Tensor.Ones([2]);
        var e = Assert.Throws<InvalidOperationException>(opt.Step);
        Assert.Contains("exp_avg", e.Message);
    }

    [Fact]
    public void ParamGroups_HaveTheirOwnHyperParameters()
    {
        var a = NewParam([1.0]);
        var b = NewParam([1.0]);
        var opt = new SGD([new ParamGroup([a]), new ParamGroup([b], new Dictionary<string, double> { ["lr"] = 0.5, ["weight_decay"] = 1 })], lr: 0.1);
        SetGrad(a, [1.0]);
        SetGrad(b, [1.0]);
        opt.Step();
        Assert.Equal(0.9f, a.ToArray()[0], 6);
        Assert.Equal(0f, b.ToArray()[0], 6); // 1 - 0.5 * (1 + 1 * 1)
        Assert.Equal(0.1, opt.ParamGroups[0].Lr);
        Assert.Equal(0.0, opt.ParamGroups[0].WeightDecay);

        Assert.Throws<ArgumentException>(() => new SGD([new ParamGroup([a]), new ParamGroup([a])]));
        var e = Assert.Throws<ArgumentException>(() => new SGD([new ParamGroup([a], new Dictionary<string, double> { ["betas"] = 1 })]));
        Assert.Contains("'betas'", e.Message);
    }

    [Fact]
    public void StateDict_RoundTripContinuesBitIdentically()
    {
        Parameter[] Build() => [NewParam(Start), new Parameter(Tensor.FromArray([0.5f, -0.25f, 2f, 1f], 2, 2))];
        Optimizer Make(Parameter[] ps) => new Adam([new ParamGroup([ps[0]]), new ParamGroup([ps[1]], new Dictionary<string, double> { ["amsgrad"] = 1, ["lr"] = 0.02 })], lr: 0.01, weightDecay: 0.003);

        var original = Build();
        var opt = Make(original);
        void StepWith(Optimizer o, Parameter[] ps, int t)
        {
            SetGrad(ps[0], Grads[t]);
            ps[1].Grad = Tensor.FromArray(Grads[t].Append(1.0 / (t + 1)).Select(v => (float)v).ToArray(), 2, 2);
            o.Step();
        }
        for (var t = 0; t < 2; t++) StepWith(opt, original, t);
        var saved = opt.StateDict();
        Assert.Equal(2.0, saved.Scalars["state.1.step"]);
        Assert.Equal(0.02, saved.Scalars["param_groups.1.lr"]);
        Assert.Equal(1.0, saved.Scalars["param_groups.0.param_count"]);
        Assert.Contains("state.1.max_exp_avg_sq", saved.Tensors.Keys);
        Assert.DoesNotContain("state.0.max_exp_avg_sq", saved.Tensors.Keys);

        var resumed = Build();
        using (NoGrad())
            for (var i = 0; i < 2; i++) resumed[i].CopyFrom(original[i]);
        var opt2 = Make(resumed);
        opt2.ParamGroups[1].Lr = 123; // overwritten by the load
        opt2.LoadStateDict(saved);
        Assert.Equal(0.02, opt2.ParamGroups[1].Lr);
        for (var t = 2; t < 5; t++)
        {
            StepWith(opt, original, t);
            StepWith(opt2, resumed, t);
        }
        for (var i = 0; i < 2; i++) Assert.Equal(original[i].ToArray(), resumed[i].ToArray());
        Assert.Equal(5, opt2.StepCount(resumed[1]));
    }

    [Fact]
    public void LoadStateDict_RejectsStateOfAnotherModel()
    {
        var p = NewParam(Start);
        var opt = new Adam([p]);
        SetGrad(p, Grads[0]);
        opt.Step();
        var saved = opt.StateDict();

        var other = new Adam([NewParam([1.0, 2.0])]);
        var e = Assert.Throws<ArgumentException>(() => other.LoadStateDict(saved));
        Assert.Contains("state.0.exp_avg", e.Message);
        var twoParams = new Adam([NewParam(Start), NewParam(Start)]);
        e = Assert.Throws<ArgumentException>(() => twoParams.LoadStateDict(saved));
        Assert.Contains("groups", e.Message);
    }

    [Fact]
    public void ClipGradNorm_ScalesAllGradientsByTheTotalNorm()
    {
        var a = NewParam([0.0, 0.0]);
        var b = NewParam([0.0]);
        var none = NewParam([0.0]);
        SetGrad(a, [3.0, 4.0]);
        SetGrad(b, [12.0]);
        var total = GradientClipping.ClipGradNorm([a, b, none], 6.5);
        Assert.Equal(13.0, total, 5);
        var c = 6.5 / (13 + 1e-6);
        AssertClose([3 * c, 4 * c], a.Grad!.ToArray(), 1e-6);
        AssertClose([12 * c], b.Grad!.ToArray(), 1e-6);
        Assert.Null(none.Grad);

        // Below the limit nothing changes; the returned norm is still the total.
        Assert.Equal(6.5, GradientClipping.ClipGradNorm([a, b], 100), 4);
        AssertClose([3 * c, 4 * c], a.Grad!.ToArray(), 1e-6);
        Assert.Equal(0.0, GradientClipping.ClipGradNorm([none], 1));
    }

    [Fact]
    public void ClipGradNorm_OtherNorms()
    {
        var a = NewParam([0.0, 0.0]);
        SetGrad(a, [-3.0, 4.0]);
        Assert.Equal(4.0, GradientClipping.ClipGradNorm([a], 2, double.PositiveInfinity), 5);
        AssertClose([-1.5, 2.0], a.Grad!.ToArray(), 1e-5);
        SetGrad(a, [-3.0, 4.0]);
        Assert.Equal(7.0, GradientClipping.ClipGradNorm([a], 100, 1), 5);
        SetGrad(a, [-3.0, 4.0]);
        Assert.Equal(Math.Pow(27 + 64, 1.0 / 3), GradientClipping.ClipGradNorm([a], 100, 3), 4);
    }

    [Fact]
    public void ClipGradValue_ClampsEachElement()
    {
        var a = NewParam([0.0, 0.0, 0.0]);
        SetGrad(a, [-3.0, 0.5, 4.0]);
        GradientClipping.ClipGradValue([a], 1);
        Assert.Equal([-1f, 0.5f, 1f], a.Grad!.ToArray());
    }
}
