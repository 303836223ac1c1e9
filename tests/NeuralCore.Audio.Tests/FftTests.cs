namespace NeuralCore.Audio.Tests;

public class FftTests
{
    private static (double[] Re, double[] Im) NaiveDft(double[] re, double[] im)
    {
        int n = re.Length;
        var outRe = new double[n];
        var outIm = new double[n];
        for (int k = 0; k < n; k++)
        {
            for (int t = 0; t < n; t++)
            {
                double a = -2 * Math.PI * ((long)k * t % n) / n;
                outRe[k] += re[t] * Math.Cos(a) - im[t] * Math.Sin(a);
                outIm[k] += re[t] * Math.Sin(a) + im[t] * Math.Cos(a);
            }
        }
        return (outRe, outIm);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    [InlineData(32)]
    [InlineData(512)]
    public void ComplexForwardMatchesTheDefinitionAndInverseUndoesIt(int n)
    {
        var g = new Generator(1);
        var re = Enumerable.Range(0, n).Select(_ => (float)g.NextNormal()).ToArray();
        var im = Enumerable.Range(0, n).Select(_ => (float)g.NextNormal()).ToArray();
        var (er, ei) = NaiveDft(re.Select(v => (double)v).ToArray(), im.Select(v => (double)v).ToArray());
        var fft = new Fft(n);
        var r = (float[])re.Clone();
        var i = (float[])im.Clone();
        fft.Forward(r, i);
        double tol = 1e-5 * Math.Sqrt(n) * Math.Log2(2 * n);
        for (int k = 0; k < n; k++)
        {
            Assert.Equal(er[k], r[k], tol);
            Assert.Equal(ei[k], i[k], tol);
        }
        fft.Inverse(r, i);
        for (int k = 0; k < n; k++)
        {
            Assert.Equal(re[k], r[k], 1e-5);
            Assert.Equal(im[k], i[k], 1e-5);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(16)]
    [InlineData(512)]
    public void RealForwardMatchesTheDefinitionAndInverseRealUndoesIt(int half)
    {
        int n = 2 * half;
        var g = new Generator(2);
        var x = Enumerable.Range(0, n).Select(_ => (float)g.NextNormal()).ToArray();
        var (er, ei) = NaiveDft(x.Select(v => (double)v).ToArray(), new double[n]);
        var fft = new Fft(half);
        var re = new float[half + 1];
        var im = new float[half + 1];
        fft.ForwardReal(x, re, im);
        double tol = 1e-5 * Math.Sqrt(n) * Math.Log2(2 * n);
        for (int k = 0; k <= half; k++)
        {
            Assert.Equal(er[k], re[k], tol);
            Assert.Equal(ei[k], im[k], tol);
        }
        var back = new float[n];
        fft.InverseReal(re, im, back);
        for (int t = 0; t < n; t++)
            Assert.Equal(x[t], back[t], 1e-5);
    }

    [Fact]
    public void NonPowerOfTwoSizeIsRejectedWithASuggestion()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new Fft(1000));
        Assert.Contains("1024", e.Message);
    }
}
