using BenchmarkDotNet.Running;

namespace NeuralCore.Benchmarks;

/// <summary>Entry point: pick benchmarks with BenchmarkDotNet's switches, e.g. <c>--filter '*Gemm*'</c>.</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
