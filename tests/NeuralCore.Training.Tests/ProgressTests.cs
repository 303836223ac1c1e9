namespace NeuralCore.Training.Tests;

public class ProgressTests
{
    [Fact]
    public void PlainReporter_WritesOneLinePerFinishedEpoch()
    {
        var writer = new StringWriter();
        var reporter = new PlainProgressReporter(writer);

        reporter.RunStarted(new RunStartInfo("small", "runs/small", 50, 1, 8000, 1000, 32, 59_804));
        reporter.EpochStarted(3, 50, 32);
        reporter.BatchCompleted(new BatchProgress(3, 50, 1, 32, 256, 0.5, 0.9, 1000));
        reporter.EpochEnded(new EpochMetrics(3, 0.12345, 0.9612, 0.0987, 0.97, 1e-3, 12.34), isBest: true);
        reporter.EpochStarted(4, 50, 32);
        reporter.EpochEnded(null, isBest: false);

        var lines = writer.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Contains("59,804 parameters", lines[0]);
        Assert.Equal("epoch 3/50  train_loss 0.1235  train_acc 96.12 %  val_loss 0.0987  val_acc 97.00 %  lr 1.00e-03  12.3 s  *best", lines[1]);
    }

    [Fact]
    public void ForConsole_UsesPlainLinesWhenNotATerminal()
    {
        Assert.IsType<PlainProgressReporter>(ProgressReporters.ForConsole(new StringWriter(), isTerminal: false));
    }
}
