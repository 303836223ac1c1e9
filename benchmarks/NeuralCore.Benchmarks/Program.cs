using BenchmarkDotNet.Running;

namespace NeuralCore.Benchmarks;

/// <summary>
/// Entry point: pick benchmarks with BenchmarkDotNet's switches, e.g. <c>--filter '*Gemm*'</c>, or compare with ONNX
/// Runtime in alternating rounds with <c>rounds</c> (<see cref="OnnxRuntimeRounds"/>).
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == OnnxRuntimeRounds.Command)
        {
            try
            {
                return OnnxRuntimeRounds.Run(args);
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
