using System.CommandLine;
using System.CommandLine.Help;
using NeuralCore.Cli.Commands;
using NeuralCore.Cuda;
using NeuralCore.IO;
using NeuralCore.Training;

namespace NeuralCore.Cli;

/// <summary>The <c>neuralcore</c> command: train, test, predict and inspect CP-ResNet models.</summary>
internal static class Program
{
    /// <summary>Exit code of a successful command.</summary>
    public const int Success = 0;

    /// <summary>Exit code of a command that failed at run time (a missing or bad file, a diverged run).</summary>
    public const int Failure = 1;

    /// <summary>Exit code of a command line that is wrong (unknown option, bad value, conflicting options).</summary>
    public const int UsageError = 2;

    /// <summary>Exit code after Ctrl+C (128 + SIGINT, as shells report it).</summary>
    public const int Interrupted = 130;

    public static int Main(string[] args)
    {
        using var cancel = new CancellationTokenSource();
        // The first Ctrl+C stops training at the next batch (the last finished epoch stays resumable); a second one ends the process.
        Console.CancelKeyPress += (_, e) =>
        {
            if (cancel.IsCancellationRequested) return;
            e.Cancel = true;
            cancel.Cancel();
        };
        var console = new CliConsole(Console.Out, Console.Error, !Console.IsOutputRedirected, !Console.IsErrorRedirected, cancel.Token);
        return Run(args, console);
    }

    /// <summary>Runs the command line in-process with the given streams (neither is treated as a terminal).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr) =>
        Run(args, new CliConsole(stdout, stderr, OutIsTerminal: false, ErrorIsTerminal: false, CancellationToken.None));

    /// <summary>Parses <paramref name="args"/>, runs the command, and turns every failure a user can cause into one message and an exit code.</summary>
    public static int Run(string[] args, CliConsole console)
    {
        var root = BuildRoot(console);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0 && parsed.Action is not HelpAction)
        {
            foreach (var error in parsed.Errors) console.Error.WriteLine($"error: {error.Message}");
            var command = parsed.CommandResult.Command;
            console.Error.WriteLine($"Run 'neuralcore{(command == root ? "" : " " + command.Name)} --help' for the options.");
            return UsageError;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration
            {
                Output = console.Out,
                Error = console.Error,
                EnableDefaultExceptionHandler = false,
                ProcessTerminationTimeout = null,
            });
        }
        catch (Exception e)
        {
            return Report(e, console.Error);
        }
    }

    /// <summary>
    /// The root command, named <c>neuralcore</c> whatever file runs it (a <see cref="RootCommand"/> takes the running
    /// executable's name, which is NeuralCore.Cli for the apphost copied to neuralcore and for <c>dotnet NeuralCore.Cli.dll</c>),
    /// with RootCommand's --help (on every command) and --version.
    /// </summary>
    private static Command BuildRoot(CliConsole console)
    {
        var root = new Command("neuralcore",
            "NeuralCore: train, test, prune, export and time CP-ResNet models on MNIST and acoustic scenes (DCASE 2023 Task 1), " +
            "and reproduce the seed experiment. " +
            "Run 'neuralcore <command> --help' for a command's options.")
        {
            new HelpOption(),
            new VersionOption(),
        };
        root.Add(InfoCommand.Create(console));
        root.Add(TrainCommand.Create(console));
        root.Add(TestCommand.Create(console));
        root.Add(PredictCommand.Create(console));
        root.Add(ReproduceCommand.Create(console));
        root.Add(ReportCommand.Create(console));
        root.Add(BenchCommand.Create(console));
        root.Add(PruneCommand.Create(console));
        root.Add(ExportOnnxCommand.Create(console));
        root.Add(MelCommand.Create(console));
        root.Add(MakeSyntheticAscCommand.Create(console));
        root.Add(DoctorCommand.Create(console));
        root.Add(SelfTestCommand.Create(console));
        return root;
    }

    /// <summary>One line (or a few) for people, no stack trace, for every error a user can cause; a stack trace only for bugs.</summary>
    private static int Report(Exception e, TextWriter error)
    {
        switch (e)
        {
            case CliException cli:
                error.WriteLine($"error: {cli.Message}");
                return cli.ExitCode;
            case OperationCanceledException:
                error.WriteLine("Interrupted. A training, pruning or reproduce run keeps what it finished; run the same command with --resume to continue it.");
                return Interrupted;
            case CudaUnavailableException:
                error.WriteLine($"error: {e.Message}");
                return Failure;
            case TrainingException or TensorFileException or FileNotFoundException or DirectoryNotFoundException
                or InvalidDataException or KeyNotFoundException or UnauthorizedAccessException:
                error.WriteLine($"error: {e.Message}");
                return Failure;
            case IOException:
                error.WriteLine($"error: {e.Message}");
                return Failure;
            default:
                error.WriteLine($"internal error (a bug in neuralcore; please report it with the command line): {e}");
                return Failure;
        }
    }
}

/// <summary>The streams and the cancellation of one command-line invocation.</summary>
/// <param name="Out">Standard output: results (the JSON object with --json).</param>
/// <param name="Error">Standard error: errors, and human-readable output with --json.</param>
/// <param name="OutIsTerminal">Whether <paramref name="Out"/> is an interactive terminal (live progress bars).</param>
/// <param name="ErrorIsTerminal">Whether <paramref name="Error"/> is an interactive terminal.</param>
/// <param name="Cancellation">Signalled by Ctrl+C.</param>
internal sealed record CliConsole(TextWriter Out, TextWriter Error, bool OutIsTerminal, bool ErrorIsTerminal, CancellationToken Cancellation)
{
    /// <summary>Where human-readable output goes: stdout, or stderr when stdout carries the --json object.</summary>
    public TextWriter Human(bool json) => json ? Error : Out;

    /// <summary>Whether <see cref="Human"/> is a terminal.</summary>
    public bool HumanIsTerminal(bool json) => json ? ErrorIsTerminal : OutIsTerminal;
}

/// <summary>A failure the user can fix, with the message that says how, and the exit code.</summary>
internal sealed class CliException(string message, int exitCode = Program.Failure) : Exception(message)
{
    /// <summary><see cref="Program.Failure"/> or <see cref="Program.UsageError"/>.</summary>
    public int ExitCode { get; } = exitCode;
}
