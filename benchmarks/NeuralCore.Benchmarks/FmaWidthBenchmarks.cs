using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;

namespace NeuralCore.Benchmarks;

/// <summary>
/// What one 256-bit multiply-add costs against one 512-bit multiply-add on this core: ten independent chains of each,
/// time per instruction. On AMD Zen 4, which runs a 512-bit instruction as two 256-bit halves, the 256-bit one takes
/// about half the time; on Intel Xeons with two 512-bit FMA units (Sapphire and Emerald Rapids) the same time, so a
/// vector with a few live lanes (19 channels as 16 + 8 lanes) costs as much there as a full one. docs/benchmarks.md
/// ("A second host") reads the pruning-pays results of the two machines by it.
/// </summary>
[Config(typeof(FmaWidthConfig))]
public class FmaWidthBenchmarks
{
    private const int Chains = 10;
    private const int Steps = 100_000;

    /// <summary>One 512-bit multiply-add (16 lanes).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Chains * Steps)]
    public float Vector512Fma()
    {
        Vector512<float> b = Vector512.Create(0.999f), c = Vector512.Create(1e-3f);
        Vector512<float> a0 = Vector512.Create(1f), a1 = Vector512.Create(2f), a2 = Vector512.Create(3f), a3 = Vector512.Create(4f),
            a4 = Vector512.Create(5f), a5 = Vector512.Create(6f), a6 = Vector512.Create(7f), a7 = Vector512.Create(8f),
            a8 = Vector512.Create(9f), a9 = Vector512.Create(10f);
        for (int i = 0; i < Steps; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, b, c); a1 = Vector512.FusedMultiplyAdd(a1, b, c);
            a2 = Vector512.FusedMultiplyAdd(a2, b, c); a3 = Vector512.FusedMultiplyAdd(a3, b, c);
            a4 = Vector512.FusedMultiplyAdd(a4, b, c); a5 = Vector512.FusedMultiplyAdd(a5, b, c);
            a6 = Vector512.FusedMultiplyAdd(a6, b, c); a7 = Vector512.FusedMultiplyAdd(a7, b, c);
            a8 = Vector512.FusedMultiplyAdd(a8, b, c); a9 = Vector512.FusedMultiplyAdd(a9, b, c);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9);
    }

    /// <summary>One 256-bit multiply-add (8 lanes).</summary>
    [Benchmark(OperationsPerInvoke = Chains * Steps)]
    public float Vector256Fma()
    {
        Vector256<float> b = Vector256.Create(0.999f), c = Vector256.Create(1e-3f);
        Vector256<float> a0 = Vector256.Create(1f), a1 = Vector256.Create(2f), a2 = Vector256.Create(3f), a3 = Vector256.Create(4f),
            a4 = Vector256.Create(5f), a5 = Vector256.Create(6f), a6 = Vector256.Create(7f), a7 = Vector256.Create(8f),
            a8 = Vector256.Create(9f), a9 = Vector256.Create(10f);
        for (int i = 0; i < Steps; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, b, c); a1 = Vector256.FusedMultiplyAdd(a1, b, c);
            a2 = Vector256.FusedMultiplyAdd(a2, b, c); a3 = Vector256.FusedMultiplyAdd(a3, b, c);
            a4 = Vector256.FusedMultiplyAdd(a4, b, c); a5 = Vector256.FusedMultiplyAdd(a5, b, c);
            a6 = Vector256.FusedMultiplyAdd(a6, b, c); a7 = Vector256.FusedMultiplyAdd(a7, b, c);
            a8 = Vector256.FusedMultiplyAdd(a8, b, c); a9 = Vector256.FusedMultiplyAdd(a9, b, c);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9);
    }

    private sealed class FmaWidthConfig : ManualConfig
    {
        public FmaWidthConfig() => AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(15).WithLaunchCount(1));
    }
}
