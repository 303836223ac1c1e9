namespace NeuralCore.Data.Tests;

public class AscMetricsTests
{
    [Fact]
    public void MacroAccuracyIsTheMeanOfClassRecalls()
    {
        // Class 0: 3 clips, 2 right; class 1: 1 clip, right. Accuracy 3/4, macro (2/3 + 1) / 2.
        float[] logits = [5, 0, 5, 0, 0, 5, 0, 5];
        int[] labels = [0, 0, 0, 1];
        string[] devices = ["a", "s1", "s4", "a"];
        var r = AscMetrics.Compute(logits, 2, labels, devices, classNames: ["x", "y"]);
        Assert.Equal(0.75, r.Accuracy, 12);
        Assert.Equal((2.0 / 3 + 1) / 2, r.MacroAccuracy, 12);
        Assert.Equal([3, 1], r.ClassCount);
        Assert.Equal([2, 1], r.Confusion[0]);
        Assert.Equal([0, 1], r.Confusion[1]);
        double right = Math.Log(1 + Math.Exp(-5)), wrong = 5 + Math.Log(1 + Math.Exp(-5));
        Assert.Equal((3 * right + wrong) / 4, r.LogLoss, 9);
        Assert.Equal(["a", "s1", "s4"], r.PerDevice.Keys);
        Assert.Equal(1.0, r.PerDevice["a"].Accuracy);
        Assert.Equal(0.0, r.PerDevice["s4"].Accuracy);
        Assert.Equal(2, r.PerDeviceGroup["real"].Count);
        Assert.Equal(1.0, r.PerDeviceGroup["seen"].MacroAccuracy);
        Assert.Equal(0.0, r.PerDeviceGroup["unseen"].Accuracy);
        Assert.Contains("macro accuracy", r.Format());
    }

    [Fact]
    public void ProbabilitiesAreClippedAndRenormalisedLikeScikitLearn()
    {
        float[] probs = [0.5f, 0.5f, 0f, 2f];
        var r = AscMetrics.Compute(probs, 2, [1, 0], null, scoresAreProbabilities: true);
        Assert.Equal((Math.Log(2) - Math.Log(1e-15)) / 2, r.LogLoss, 6);
        Assert.Empty(r.PerDevice);
    }

    [Fact]
    public void MismatchedShapesAreRejected()
    {
        Assert.Throws<ArgumentException>(() => AscMetrics.Compute(new float[5], 2, [0, 1], null));
        Assert.Throws<ArgumentOutOfRangeException>(() => AscMetrics.Compute(new float[4], 2, [0, 2], null));
    }
}
