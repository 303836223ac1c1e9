using NeuralCore.NN;

namespace NeuralCore.Tests.Ops;

public class LossTests
{
    private const int N = 5, C = 4;
    private static readonly long[] Targets = [2, 0, 3, 2, 1];
    private static readonly double[] ClassWeights = [0.5, 2.0, 1.0, 0.25];
    private static readonly double[] SampleWeights = [1.0, 0.5, 2.0, 0.0, 1.5];

    public static TheoryData<Reduction, bool, bool, float> Cases()
    {
        var data = new TheoryData<Reduction, bool, bool, float>();
        foreach (var r in new[] { Reduction.None, Reduction.Mean, Reduction.Sum })
            foreach (var cw in new[] { false, true })
                foreach (var sw in new[] { false, true })
                    foreach (var s in new[] { 0f, 0.1f })
                        data.Add(r, cw, sw, s);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Cross_entropy_matches_PyTorch(Reduction reduction, bool classWeights, bool sampleWeights, float smoothing)
    {
        var (logits, lv) = Reference.RandomTensor([N, C], 1, 2);
        var targets = Tensor.FromArray(Targets);
        var cw = classWeights ? Tensor.FromArray(Reference.ToFloat(ClassWeights)) : null;
        var sw = sampleWeights ? Tensor.FromArray(Reference.ToFloat(SampleWeights)) : null;
        var loss = Functional.CrossEntropy(logits, targets, cw, reduction, smoothing, sw);
        var expected = Reference.CrossEntropy(lv, N, C, Targets, classWeights ? ClassWeights : null, sampleWeights ? SampleWeights : null,
            smoothing, reduction);
        Assert.Equal(reduction == Reduction.None ? [N] : [], loss.ShapeArray());
        GradCheck.AssertClose(expected, loss.ToArray(), 1e-6, 1e-5, "cross_entropy");
        GradCheck.Check(t => Functional.CrossEntropy(t[0], targets, cw, reduction, smoothing, sw), [logits], what: "cross_entropy");
    }

    [Fact]
    public void Mean_with_class_weights_divides_by_the_target_weights()
    {
        // Two samples, uniform logits: each nll is log(2) times its target's weight; the mean is their weighted average.
        var logits = Tensor.Zeros([2, 2]);
        var loss = Functional.CrossEntropy(logits, Tensor.FromArray(new long[] { 0, 1 }), Tensor.FromArray([1f, 3f]));
        Assert.Equal(Math.Log(2), loss.Item(), 1e-6);
    }

    [Fact]
    public void Nll_loss_of_log_probabilities_equals_cross_entropy_of_logits()
    {
        var (logits, _) = Reference.RandomTensor([N, C], 2, 2);
        var targets = Tensor.FromArray(Targets);
        var a = Functional.NllLoss(Functional.LogSoftmax(logits, 1), targets, reduction: Reduction.None).ToArray();
        var b = Functional.CrossEntropy(logits, targets, reduction: Reduction.None).ToArray();
        Assert.Equal(a, b);
        GradCheck.Check(t => Functional.NllLoss(t[0], targets, labelSmoothing: 0.2f), [logits], what: "nll_loss");
    }

    [Fact]
    public void Bad_arguments_are_explained()
    {
        var logits = Tensor.Zeros([2, 3]);
        Assert.Contains("[2]", Assert.Throws<ArgumentException>(() => Functional.CrossEntropy(logits, Tensor.FromArray(new long[] { 0, 1, 2 }))).Message);
        Assert.Contains("Int64", Assert.Throws<ArgumentException>(() => Functional.CrossEntropy(logits, Tensor.FromArray([0f, 1f]))).Message);
        Assert.Contains("[3]", Assert.Throws<ArgumentException>(() => Functional.CrossEntropy(logits, Tensor.FromArray(new long[] { 0, 1 }), Tensor.Ones([2]))).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Functional.CrossEntropy(logits, Tensor.FromArray(new long[] { 0, 3 })));
        Assert.Throws<ArgumentOutOfRangeException>(() => Functional.CrossEntropy(logits, Tensor.FromArray(new long[] { 0, 1 }), labelSmoothing: 1.5f));
    }

    [Theory]
    [InlineData(Reduction.None)]
    [InlineData(Reduction.Mean)]
    [InlineData(Reduction.Sum)]
    public void Soft_target_cross_entropy(Reduction reduction)
    {
        var (logits, lv) = Reference.RandomTensor([N, C], 3, 2);
        var (raw, rv) = Reference.RandomTensor([N, C], 4, 0.5, 1);
        var pv = Reference.Reduce(rv, [N, C], [1], v => v.Sum());
        var probs = Enumerable.Range(0, N * C).Select(i => rv[i] / pv[i / C]).ToArray();
        var p = Tensor.FromArray(Reference.ToFloat(probs), N, C);
        var logp = Reference.Softmax(lv, [N, C], 1, log: true);
        var losses = Enumerable.Range(0, N).Select(i => -Enumerable.Range(0, C).Sum(c => probs[i * C + c] * logp[i * C + c])).ToArray();
        double[] expected = reduction switch { Reduction.None => losses, Reduction.Sum => [losses.Sum()], _ => [losses.Average()] };
        GradCheck.AssertClose(expected, Functional.CrossEntropySoft(logits, p, reduction).ToArray(), 1e-5, 1e-5, "soft cross_entropy");
        GradCheck.Check(t => Functional.CrossEntropySoft(t[0], p, reduction), [logits], what: "soft cross_entropy");
        Assert.Throws<ArgumentException>(() => Functional.CrossEntropySoft(logits, Tensor.Zeros([N, C + 1])));
    }

    [Theory]
    [InlineData(Reduction.None)]
    [InlineData(Reduction.Mean)]
    [InlineData(Reduction.Sum)]
    public void Mse_loss(Reduction reduction)
    {
        var (x, xv) = Reference.RandomTensor([3, 4], 5);
        var (y, yv) = Reference.RandomTensor([3, 4], 6);
        var sq = xv.Zip(yv, (a, b) => (a - b) * (a - b)).ToArray();
        double[] expected = reduction switch { Reduction.None => sq, Reduction.Sum => [sq.Sum()], _ => [sq.Average()] };
        GradCheck.AssertClose(expected, Functional.MseLoss(x, y, reduction).ToArray(), 1e-6, 1e-5, "mse");
        GradCheck.Check(t => Functional.MseLoss(t[0], t[1], reduction), [x, y], what: "mse");
    }
}
