using System.CommandLine;
using NeuralCore.Data;

namespace NeuralCore.Cli.Commands;

/// <summary><c>neuralcore make-synthetic-asc</c>: writes a synthetic dataset in the TAU22 layout.</summary>
internal static class MakeSyntheticAscCommand
{
    public static Command Create(CliConsole console)
    {
        var output = new Option<string>("--out", "-o") { Description = "The folder to create (must not already hold a meta.csv).", Required = true };
        var clips = new Option<int>("--clips-per-class") { Description = "Clips per scene (about 30 % go to the test fold).", DefaultValueFactory = _ => 100 };
        var seed = new Option<ulong>("--seed") { Description = "Seed; the same seed gives identical files.", DefaultValueFactory = _ => 0UL };
        var command = new Command("make-synthetic-asc",
            "Write a synthetic acoustic-scene dataset in the exact TAU Urban Acoustic Scenes 2022 Mobile layout (meta.csv, " +
            "audio/*.wav 1 s 44.1 kHz 24-bit mono, evaluation_setup/fold1_*.csv): 10 scenes, 6 cities, devices a, b, c, s1-s6 " +
            "(s4-s6 only in the test fold). For tests and demonstrations; not real recordings.")
        {
            output, clips, seed,
        };
        command.SetAction(parse =>
        {
            int perClass = parse.GetValue(clips);
            if (perClass < 2)
                throw new CliException($"--clips-per-class must be at least 2 (one training and one test clip per scene); found {perClass}.", Program.UsageError);
            string dir = parse.GetValue(output)!;
            int total = perClass * Tau22.SceneLabels.Count, last = 0;
            var progress = new Progress<int>(done =>
            {
                if (done * 10 / total > last * 10 / total)
                    console.Error.WriteLine($"  {done} / {total} clips");
                last = Math.Max(last, done);
            });
            var summary = SyntheticAsc.Generate(dir, perClass, parse.GetValue(seed), progress);
            console.Out.WriteLine($"Synthetic TAU22 in {summary.Root}: {summary.TrainClips} training and {summary.TestClips} test clips, " +
                $"{summary.Locations} locations. Train on it with: neuralcore train --dataset asc --data-dir {summary.Root}");
            return Program.Success;
        });
        return command;
    }
}
