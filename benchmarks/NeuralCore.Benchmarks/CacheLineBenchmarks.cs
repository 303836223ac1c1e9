using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;

namespace NeuralCore.Benchmarks;

/// <summary>
/// The round trip of one cache line between two threads: this thread makes a count odd and waits, a partner thread
/// spinning on the other core makes it even. On the two-vCPU machine of docs/benchmarks.md it tells the host's two
/// states apart (vCPUs on cores that share a cache: about 50-90 ns; on cores that do not: about 330-380 ns), which
/// decide what two-thread passes cost (see <see cref="ThreadLayoutBenchmarks"/>). Both threads spin, so run it alone.
/// </summary>
[Config(typeof(CacheLineConfig))]
public unsafe class CacheLineBenchmarks
{
    private const int RoundTrips = 10_000;

    private long* line;
    private Thread? partner;
    private volatile bool stop;

    [GlobalSetup]
    public void Setup()
    {
        line = (long*)NativeMemory.AlignedAlloc(64, 64);
        *line = 0;
        stop = false;
        partner = new Thread(Bounce) { IsBackground = true };
        partner.Start();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        stop = true;
        partner?.Join();
        NativeMemory.AlignedFree(line);
    }

    /// <summary>One round trip.</summary>
    [Benchmark(OperationsPerInvoke = RoundTrips)]
    public void PingPong()
    {
        for (int i = 0; i < RoundTrips; i++)
        {
            long next = Volatile.Read(ref *line) + 1;
            Volatile.Write(ref *line, next);
            while (Volatile.Read(ref *line) == next) { }
        }
    }

    private void Bounce()
    {
        while (!stop)
        {
            long seen = Volatile.Read(ref *line);
            if ((seen & 1) == 1) Volatile.Write(ref *line, seen + 1);
        }
    }

    private sealed class CacheLineConfig : ManualConfig
    {
        public CacheLineConfig() => AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(15).WithLaunchCount(1));
    }
}
