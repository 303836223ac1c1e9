using NeuralCore.NN;

namespace NeuralCore.Tests.Ops;

public class DropoutTests
{
    [Theory]
    [InlineData(0.1f)]
    [InlineData(0.5f)]
    [InlineData(0.8f)]
    public void Drops_the_right_fraction_and_scales_the_rest(float p)
    {
        const int n = 100_000;
        var x = Tensor.Full([n], 2.0);
        var y = Functional.Dropout(x, p, training: true, new Generator(1)).ToArray();
        var zeros = y.Count(v => v == 0);
        // Binomial(n, p): 5 standard deviations is at most 800 here.
        Assert.InRange(zeros, n * p - 5 * Math.Sqrt(n * p * (1 - p)), n * p + 5 * Math.Sqrt(n * p * (1 - p)));
        Assert.All(y, v => Assert.True(v == 0 || Math.Abs(v - 2 / (1 - p)) < 1e-5, $"kept value {v}, expected {2 / (1 - p)}"));
        Assert.Equal(2.0, y.Average(), 0.1);
    }

    [Fact]
    public void Eval_mode_and_p_zero_are_the_identity()
    {
        var x = Tensor.Ones([3, 4]);
        Assert.Same(x, Functional.Dropout(x, 0.5f, training: false));
        Assert.Same(x, Functional.Dropout(x, 0f, training: true));
        Assert.Throws<ArgumentOutOfRangeException>(() => Functional.Dropout(x, 1f, training: true));
        Assert.Throws<ArgumentOutOfRangeException>(() => Functional.Dropout(x, -0.1f, training: true));
    }

    [Fact]
    public void Gradient_is_the_scaled_mask_and_the_generator_fixes_the_mask()
    {
        var (x, _) = Reference.RandomTensor([8, 16], 1, 1, 3); // [2, 4): never zero
        x.RequiresGrad = true;
        var y = Functional.Dropout(x, 0.3f, training: true, new Generator(7));
        Assert.True(y.RequiresGrad);
        y.Sum().Backward();
        var mask = y.ToArray().Zip(x.ToArray(), (a, b) => a / b).ToArray();
        GradCheck.AssertClose(Array.ConvertAll(mask, v => (double)v), x.Grad!.ToArray(), 1e-6, 1e-6, "dropout gradient");
        Assert.All(mask, m => Assert.True(m == 0 || Math.Abs(m - 1 / 0.7f) < 1e-5));
        var again = Functional.Dropout(x.Detach(), 0.3f, training: true, new Generator(7)).ToArray();
        Assert.Equal(y.ToArray(), again);
    }
}
