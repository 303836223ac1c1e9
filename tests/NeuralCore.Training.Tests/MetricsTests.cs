namespace NeuralCore.Training.Tests;

public class MetricsTests
{
    [Fact]
    public void ConfusionMatrix_CountsRowsByTruthAndColumnsByPrediction()
    {
        var m = new ConfusionMatrix(3);
        m.Add(0, 0);
        m.Add(0, 2);
        m.Add(1, 1);
        m.Add(2, 1);

        Assert.Equal(4, m.Total);
        Assert.Equal(2, m.Correct);
        Assert.Equal(0.5, m.Accuracy);
        Assert.Equal(1, m[0, 2]);
        Assert.Equal(0, m[2, 0]);
        Assert.Equal([[1L, 0, 1], [0, 1, 0], [0, 1, 0]], m.ToRows());
        Assert.Equal([2L, 1, 1], m.Support());
    }

    [Fact]
    public void MacroAccuracy_IsTheMeanOfPerClassRecalls_SkippingAbsentClasses()
    {
        var m = new ConfusionMatrix(4);
        // Class 0: 3 of 4 right; class 1: 1 of 1; class 2: none present; class 3: 0 of 2.
        foreach (var (t, p) in new[] { (0, 0), (0, 0), (0, 0), (0, 1), (1, 1), (3, 0), (3, 2) }) m.Add(t, p);

        Assert.Equal([0.75, 1.0, null, 0.0], m.PerClassAccuracy());
        Assert.Equal((0.75 + 1.0 + 0.0) / 3, m.MacroAccuracy(), 15);
        Assert.Equal(4.0 / 7, m.Accuracy, 15);
    }

    [Fact]
    public void AddBatch_PredictsTheArgMaxOfEachRow()
    {
        var m = new ConfusionMatrix(3);
        float[] logits = [0.1f, 2f, -1f, 5f, 5f, 1f, -3f, -2f, -1f];

        int correct = m.AddBatch(logits, [1L, 1, 2]);

        Assert.Equal(2, correct);
        Assert.Equal(1, m[1, 0]);
        Assert.Equal(1, m[2, 2]);
    }

    [Fact]
    public void AddBatch_RejectsLogitsOfTheWrongWidth()
    {
        var m = new ConfusionMatrix(3);
        var error = Assert.Throws<ArgumentException>(() => m.AddBatch(new float[8], [0L, 1]));
        Assert.Contains("[2, 3]", error.Message);
    }

    [Fact]
    public void ArgMax_TakesTheFirstOnTies_AndSkipsNaN()
    {
        Assert.Equal(1, Metrics.ArgMax([0f, 3f, 3f]));
        Assert.Equal(2, Metrics.ArgMax([float.NaN, -1f, 2f]));
        Assert.Equal([1, 0], Metrics.ArgMaxRows([0f, 1f, 7f, 2f], 2));
    }

    [Fact]
    public void TestReport_FromAnEmptyMatrix_IsZeroNotNaN()
    {
        var report = TestReport.FromConfusion(new ConfusionMatrix(2), 0);
        Assert.Equal((0L, 0.0, 0.0, 0.0), (report.Samples, report.Loss, report.Accuracy, report.MacroAccuracy));
        Assert.Equal([null, null], report.PerClassAccuracy);
    }
}
