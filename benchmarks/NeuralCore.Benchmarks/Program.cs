using BenchmarkDotNet.Running;

namespace NeuralCore.Benchmarks;

/// <summary>
/// Entry point: pick benchmarks with BenchmarkDotNet's switches, e.g. <c>--filter '*Gemm*'</c>, or compare in
/// alternating rounds: with ONNX Runtime (<c>rounds</c>, <see cref="OnnxRuntimeRounds"/>; node by node against the
/// plan's steps, <c>ort-profile</c>, <see cref="OnnxRuntimeProfile"/>), a training path off and
/// on (<c>switch-rounds</c>, <see cref="TrainingSwitchRounds"/>), or two builds of the command
/// (<c>build-rounds</c>, <see cref="BuildRounds"/>); or sweep the pruning amounts or pruned checkpoints (<c>pays-sweep</c>,
/// <see cref="PaysSweep"/>).
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        Func<string[], int>? command = args.Length == 0 ? null : args[0] switch
        {
            OnnxRuntimeRounds.Command => OnnxRuntimeRounds.Run,
            OnnxRuntimeProfile.Command => OnnxRuntimeProfile.Run,
            TrainingSwitchRounds.Command => TrainingSwitchRounds.Run,
            BuildRounds.Command => BuildRounds.Run,
            PaysSweep.Command => PaysSweep.Run,
            _ => null,
        };
        if (command is not null)
        {
            try
            {
                return command(args);
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
