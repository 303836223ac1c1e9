using Spectre.Console;

namespace NeuralCore.Training;

/// <summary>
/// A live progress bar per epoch on a terminal (Spectre.Console), showing the epoch's running loss, accuracy and
/// samples per second; each finished epoch leaves one summary line above the bar.
/// </summary>
/// <remarks>
/// The bar is drawn by Spectre's own render loop on a background task while training runs on the caller's thread;
/// <see cref="EpochEnded"/> stops it before anything else is written, so lines never interleave with the bar.
/// </remarks>
public sealed class LiveProgressReporter : IProgressReporter, IDisposable
{
    private readonly IAnsiConsole _console;
    private Task? _display;
    private TaskCompletionSource? _finish;
    private ProgressTask? _task;
    private int _epochs;

    /// <summary>Draws on <paramref name="writer"/>, which must be a terminal (see <see cref="ProgressReporters.ForConsole"/>).</summary>
    public LiveProgressReporter(TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        _console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = AnsiSupport.Detect,
            ColorSystem = ColorSystemSupport.Detect,
            Interactive = InteractionSupport.Yes,
        });
    }

    /// <inheritdoc />
    public void RunStarted(RunStartInfo info)
    {
        _epochs = info.Epochs;
        _console.WriteLine(ProgressText.RunHeader(info));
    }

    /// <inheritdoc />
    public void EpochStarted(int epoch, int epochs, int batches)
    {
        StopDisplay();
        _epochs = epochs;
        var started = new TaskCompletionSource<ProgressTask>(TaskCreationOptions.RunContinuationsAsynchronously);
        var finish = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _finish = finish;
        _display = _console.Progress()
            .AutoClear(true)
            .HideCompleted(true)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async context =>
            {
                started.SetResult(context.AddTask(Markup.Escape($"epoch {epoch}/{epochs}"), maxValue: Math.Max(batches, 1)));
                await finish.Task.ConfigureAwait(false);
            });
        _task = started.Task.GetAwaiter().GetResult();
    }

    /// <inheritdoc />
    public void BatchCompleted(BatchProgress progress)
    {
        if (_task is null) return;
        _task.Description = Markup.Escape(ProgressText.BatchLine(progress));
        _task.Value = progress.Batch;
    }

    /// <inheritdoc />
    public void EpochEnded(EpochMetrics? metrics, bool isBest)
    {
        StopDisplay();
        if (metrics is not null) _console.WriteLine(ProgressText.EpochLine(metrics, _epochs, isBest));
    }

    /// <inheritdoc />
    public void Message(string text)
    {
        StopDisplay();
        _console.WriteLine(text);
    }

    /// <summary>Stops a bar that is still drawn (after an error outside the trainer's control).</summary>
    public void Dispose() => StopDisplay();

    private void StopDisplay()
    {
        if (_display is null) return;
        _task?.StopTask();
        _finish?.TrySetResult();
        _display.GetAwaiter().GetResult();
        _display = null;
        _finish = null;
        _task = null;
    }
}

/// <summary>Chooses a progress reporter for a console stream.</summary>
public static class ProgressReporters
{
    /// <summary>
    /// A <see cref="LiveProgressReporter"/> when <paramref name="isTerminal"/> (and the <c>CI</c> environment variable
    /// is not set), otherwise a <see cref="PlainProgressReporter"/> writing one line per epoch.
    /// </summary>
    /// <param name="writer">Where progress goes (stdout, or stderr when stdout carries machine-readable output).</param>
    /// <param name="isTerminal">Whether <paramref name="writer"/> is an interactive terminal, e.g. <c>!Console.IsErrorRedirected</c>.</param>
    public static IProgressReporter ForConsole(TextWriter writer, bool isTerminal) =>
        isTerminal && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CI"))
            ? new LiveProgressReporter(writer)
            : new PlainProgressReporter(writer);
}
