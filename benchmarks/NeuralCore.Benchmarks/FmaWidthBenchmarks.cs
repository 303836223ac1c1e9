using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;

namespace NeuralCore.Benchmarks;

/// <summary>
/// What one 256-bit multiply-add costs against one 512-bit multiply-add on this core: ten independent chains of each,
/// time per instruction. On AMD Zen 4, which runs a 512-bit instruction as two 256-bit halves, the 256-bit one takes
/// about half the time; on Intel Xeons with two 512-bit FMA units (Sapphire and Emerald Rapids) the same time, so a
/// vector with a few live lanes (19 channels as 16 + 8 lanes) costs as much there as a full one. docs/benchmarks-sessions.md
/// ("A second host") reads the pruning-pays results of the two machines by it.
/// </summary>
[Config(typeof(FmaWidthConfig))]
public class FmaWidthBenchmarks
{
    private const int Chains = 10;
    private const int Steps = 100_000;

    /// <summary>One 512-bit multiply-add (16 lanes).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Chains * Steps)]
    public float Vector512Fma() => Run<Wide, Vector512<float>>();

    /// <summary>One 256-bit multiply-add (8 lanes).</summary>
    [Benchmark(OperationsPerInvoke = Chains * Steps)]
    public float Vector256Fma() => Run<Narrow, Vector256<float>>();

    // Ten independent chains, so that the multiply-adds' throughput and not their latency sets the time; the JIT
    // compiles one copy per width (struct type arguments), with the vectors in registers.
    private static float Run<TWidth, TVector>() where TWidth : struct, IWidth<TVector>
    {
        TVector b = TWidth.Create(0.999f), c = TWidth.Create(1e-3f);
        TVector a0 = TWidth.Create(1f), a1 = TWidth.Create(2f), a2 = TWidth.Create(3f), a3 = TWidth.Create(4f), a4 = TWidth.Create(5f),
            a5 = TWidth.Create(6f), a6 = TWidth.Create(7f), a7 = TWidth.Create(8f), a8 = TWidth.Create(9f), a9 = TWidth.Create(10f);
        for (int i = 0; i < Steps; i++)
        {
            a0 = TWidth.Fma(a0, b, c); a1 = TWidth.Fma(a1, b, c); a2 = TWidth.Fma(a2, b, c); a3 = TWidth.Fma(a3, b, c);
            a4 = TWidth.Fma(a4, b, c); a5 = TWidth.Fma(a5, b, c); a6 = TWidth.Fma(a6, b, c); a7 = TWidth.Fma(a7, b, c);
            a8 = TWidth.Fma(a8, b, c); a9 = TWidth.Fma(a9, b, c);
        }
        return TWidth.Sum(a0) + TWidth.Sum(a1) + TWidth.Sum(a2) + TWidth.Sum(a3) + TWidth.Sum(a4)
            + TWidth.Sum(a5) + TWidth.Sum(a6) + TWidth.Sum(a7) + TWidth.Sum(a8) + TWidth.Sum(a9);
    }

    private interface IWidth<TVector>
    {
        static abstract TVector Create(float value);
        static abstract TVector Fma(TVector a, TVector b, TVector c);
        static abstract float Sum(TVector v);
    }

    private readonly struct Wide : IWidth<Vector512<float>>
    {
        public static Vector512<float> Create(float value) => Vector512.Create(value);
        public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
        public static float Sum(Vector512<float> v) => Vector512.Sum(v);
    }

    private readonly struct Narrow : IWidth<Vector256<float>>
    {
        public static Vector256<float> Create(float value) => Vector256.Create(value);
        public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
        public static float Sum(Vector256<float> v) => Vector256.Sum(v);
    }

    private sealed class FmaWidthConfig : ManualConfig
    {
        public FmaWidthConfig() => AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(15).WithLaunchCount(1));
    }
}
