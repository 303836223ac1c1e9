using NeuralCore.NN;
using static NeuralCore.Autograd.Autograd;

namespace NeuralCore.Tests.NN;

public class InitTests
{
    private static (double Mean, double Std) Moments(Tensor t)
    {
        var v = t.ToArray();
        var mean = v.Average(x => (double)x);
        return (mean, Math.Sqrt(v.Average(x => (x - mean) * (x - mean))));
    }

    [Fact]
    public void FanInAndFanOut_FollowPyTorch()
    {
        Assert.Equal((72, 144), Init.CalculateFanInAndFanOut(Tensor.Zeros([16, 8, 3, 3])));
        Assert.Equal((20, 10), Init.CalculateFanInAndFanOut(Tensor.Zeros([10, 20])));
        Assert.Equal((5, 15), Init.CalculateFanInAndFanOut(Tensor.Zeros([3, 1, 5, 1])));
        var e = Assert.Throws<ArgumentException>(() => Init.CalculateFanInAndFanOut(Tensor.Zeros([7])));
        Assert.Contains("at least 2 dimensions", e.Message);
    }

    [Fact]
    public void Gain_TableMatchesPyTorch()
    {
        Assert.Equal(1.0, Init.CalculateGain(Nonlinearity.Linear));
        Assert.Equal(1.0, Init.CalculateGain(Nonlinearity.Conv2d));
        Assert.Equal(1.0, Init.CalculateGain(Nonlinearity.Sigmoid));
        Assert.Equal(5.0 / 3, Init.CalculateGain(Nonlinearity.Tanh), 12);
        Assert.Equal(Math.Sqrt(2), Init.CalculateGain(Nonlinearity.Relu), 12);
        Assert.Equal(Math.Sqrt(2 / (1 + 0.01 * 0.01)), Init.CalculateGain(Nonlinearity.LeakyRelu), 12);
        Assert.Equal(Math.Sqrt(2 / 1.04), Init.CalculateGain(Nonlinearity.LeakyRelu, 0.2), 12);
        Assert.Equal(Math.Sqrt(1.0 / 3), Init.CalculateGain(Nonlinearity.LeakyRelu, Math.Sqrt(5)), 12);
        Assert.Equal(0.75, Init.CalculateGain(Nonlinearity.Selu));
    }

    [Fact]
    public void KaimingNormal_HasStdGainOverSqrtFan()
    {
        var t = Tensor.Zeros([128, 64, 3, 3]);
        Init.KaimingNormal(t, mode: FanMode.FanIn, nonlinearity: Nonlinearity.Relu, generator: new Generator(1));
        var (mean, std) = Moments(t);
        var expected = Math.Sqrt(2.0 / (64 * 9));
        Assert.InRange(mean, -0.01 * expected, 0.01 * expected);
        Assert.InRange(std, 0.99 * expected, 1.01 * expected);

        Init.KaimingNormal(t, mode: FanMode.FanOut, nonlinearity: Nonlinearity.Relu, generator: new Generator(2));
        Assert.InRange(Moments(t).Std, 0.99 * Math.Sqrt(2.0 / (128 * 9)), 1.01 * Math.Sqrt(2.0 / (128 * 9)));
    }

    [Fact]
    public void KaimingUniform_DefaultBoundIsSqrt6OverFanIn()
    {
        var t = Tensor.Zeros([256, 300]);
        Init.KaimingUniform(t, generator: new Generator(3));
        var bound = Math.Sqrt(6.0 / 300);
        var v = t.ToArray();
        Assert.All(v, x => Assert.InRange(x, -bound, bound));
        Assert.True(v.Max() > 0.99 * bound && v.Min() < -0.99 * bound);
        Assert.InRange(Moments(t).Std, 0.99 * bound / Math.Sqrt(3), 1.01 * bound / Math.Sqrt(3));
    }

    [Fact]
    public void Xavier_UsesFanInPlusFanOut()
    {
        var t = Tensor.Zeros([200, 100, 3, 3]);
        Init.XavierUniform(t, gain: 2, generator: new Generator(4));
        var bound = 2 * Math.Sqrt(6.0 / (900 + 1800));
        Assert.All(t.ToArray(), x => Assert.InRange(x, -bound, bound));
        Assert.InRange(Moments(t).Std, 0.99 * bound / Math.Sqrt(3), 1.01 * bound / Math.Sqrt(3));

        Init.XavierNormal(t, generator: new Generator(5));
        var std = Math.Sqrt(2.0 / 2700);
        Assert.InRange(Moments(t).Std, 0.99 * std, 1.01 * std);
    }

    [Fact]
    public void NormalUniformAndConstants()
    {
        var t = Tensor.Zeros([100000]);
        Init.Normal(t, 3, 0.5, new Generator(6));
        var (mean, std) = Moments(t);
        Assert.InRange(mean, 2.99, 3.01);
        Assert.InRange(std, 0.495, 0.505);
        Init.Uniform(t, -2, 6, new Generator(7));
        Assert.All(t.ToArray(), x => Assert.InRange(x, -2f, 6f));
        Assert.InRange(Moments(t).Mean, 1.95, 2.05);
        Assert.All(Init.Constant(t, 0.25).ToArray(), x => Assert.Equal(0.25f, x));
        Assert.All(Init.Zeros(t).ToArray(), x => Assert.Equal(0f, x));
        Assert.All(Init.Ones(t).ToArray(), x => Assert.Equal(1f, x));
    }

    [Fact]
    public void Initialisers_WorkOnParametersAndViewsWithoutRecording()
    {
        var p = new Parameter(Tensor.Zeros([4, 6]));
        Init.KaimingUniform(p, generator: new Generator(8));
        Assert.True(p.IsLeaf);
        Assert.True(p.RequiresGrad);
        Assert.Contains(p.ToArray(), x => x != 0);

        // A transposed view is filled through a contiguous scratch; values land in the parent.
        var parent = Tensor.Zeros([3, 5]);
        Init.Constant(parent.T, 2);
        Assert.All(parent.ToArray(), x => Assert.Equal(2f, x));
        Init.Normal(parent.T, 0, 1, new Generator(9));
        Assert.DoesNotContain(parent.ToArray(), x => x == 2f);
    }

    [Fact]
    public void SameGeneratorSeed_GivesSameValues()
    {
        var a = Init.XavierNormal(Tensor.Zeros([8, 8]), generator: new Generator(10)).ToArray();
        var b = Init.XavierNormal(Tensor.Zeros([8, 8]), generator: new Generator(10)).ToArray();
        Assert.Equal(a, b);
    }
}
