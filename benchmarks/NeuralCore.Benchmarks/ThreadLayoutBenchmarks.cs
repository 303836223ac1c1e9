using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using NeuralCore.Backends.Cpu;

namespace NeuralCore.Benchmarks;

/// <summary>
/// What the memory layout of a map split between two threads costs, apart from any arithmetic: the pattern of the
/// inference plan's batch-1 mel steps on the 31 x 24 map (32 channels; the first thread takes rows 0-15 of every
/// channel, the second rows 16-30). Each operation is two <see cref="CpuThreading.For(int, Action{int})"/> calls in which
/// each thread reads its own rows of one map and writes them, scaled, into another, then back; no thread ever reads a
/// row the other wrote. Only where the rows live changes:
/// <list type="bullet">
/// <item><see cref="ThreadLayout.Interleaved"/>: channel planes [31, 24] one after the other (the plan's layout), so
/// each thread's rows of a channel sit between the other's rows of the channel before and of the same channel.</item>
/// <item><see cref="ThreadLayout.GapAfterPlanes"/>: a gap of <see cref="Gap"/> floats after every plane.</item>
/// <item><see cref="ThreadLayout.GapInPlanes"/>: the gap between the two threads' rows of each plane instead.</item>
/// <item><see cref="ThreadLayout.Gapped"/>: both gaps, so that no row of one thread is within 1 KiB of the other's.</item>
/// <item><see cref="ThreadLayout.Blocked"/>: each thread's rows of all channels as one block of its own.</item>
/// </list>
/// On the machine of docs/benchmarks.md ("The host's two states") the gapped and blocked layouts cost the same in
/// either of the host's states, and the interleaved one 1.7-3x as much when the two vCPUs share a cache and 4-5x
/// when they do not: the hardware prefetchers run up to about 1 KiB past a thread's rows into the other's.
/// <see cref="CacheLineBenchmarks"/> tells the two states apart.
/// </summary>
[Config(typeof(ThreadLayoutConfig))]
public unsafe class ThreadLayoutBenchmarks
{
    /// <summary>Where each thread's rows live (see the class summary).</summary>
    public enum ThreadLayout
    {
        /// <summary>Channel planes one after the other.</summary>
        Interleaved,

        /// <summary>A gap after every plane.</summary>
        GapAfterPlanes,

        /// <summary>A gap between the threads' rows inside every plane.</summary>
        GapInPlanes,

        /// <summary>Both gaps.</summary>
        Gapped,

        /// <summary>One block per thread.</summary>
        Blocked,
    }

    private const int Channels = 32, Rows = 31, Columns = 24, FirstRows = 16;

    /// <summary>Floats between the threads' rows in the gapped layouts (1 KiB: 512 B did not suffice).</summary>
    public const int Gap = 256;

    private float* a, b;
    private Action<int> forward = null!, back = null!;

    /// <summary>The layout measured by <see cref="ReadAndWriteOwnRows"/>.</summary>
    [Params(ThreadLayout.Interleaved, ThreadLayout.GapAfterPlanes, ThreadLayout.GapInPlanes, ThreadLayout.Gapped, ThreadLayout.Blocked)]
    public ThreadLayout Layout { get; set; }

    /// <summary>Where row <paramref name="row"/> of channel <paramref name="channel"/> starts, in floats.</summary>
    private static long RowOffset(ThreadLayout layout, int channel, int row)
    {
        int inPlane = layout is ThreadLayout.GapInPlanes or ThreadLayout.Gapped ? Gap : 0;
        int afterPlane = layout is ThreadLayout.GapAfterPlanes or ThreadLayout.Gapped ? Gap : 0;
        long plane = (long)Rows * Columns + inPlane + afterPlane;
        if (layout == ThreadLayout.Blocked)
            return row < FirstRows
                ? ((long)channel * FirstRows + row) * Columns
                : (long)Channels * FirstRows * Columns + ((long)channel * (Rows - FirstRows) + row - FirstRows) * Columns;
        return channel * plane + (long)row * Columns + (row < FirstRows ? 0 : inPlane);
    }

    /// <summary>Floats a map takes in <paramref name="layout"/>.</summary>
    private static long Length(ThreadLayout layout) => RowOffset(layout, Channels - 1, Rows - 1) + Columns + Gap;

    [GlobalSetup]
    public void Setup()
    {
        CpuThreading.Threads = 2;
        long length = Length(Layout);
        a = (float*)NativeMemory.AlignedAlloc((nuint)(length * sizeof(float)), 64);
        b = (float*)NativeMemory.AlignedAlloc((nuint)(length * sizeof(float)), 64);
        new Span<float>(a, (int)length).Fill(1f);
        new Span<float>(b, (int)length).Fill(1f);
        forward = part => Scale(a, b, part);
        back = part => Scale(b, a, part);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(a);
        NativeMemory.AlignedFree(b);
    }

    private void Scale(float* source, float* destination, int part)
    {
        ThreadLayout layout = Layout;
        int first = part == 0 ? 0 : FirstRows, end = part == 0 ? FirstRows : Rows;
        for (int channel = 0; channel < Channels; channel++)
            for (int row = first; row < end; row++)
            {
                long at = RowOffset(layout, channel, row);
                for (int column = 0; column < Columns; column += Vector256<float>.Count)
                    (Vector256.Load(source + at + column) * 0.5f + Vector256.Create(0.5f)).Store(destination + at + column);
            }
    }

    /// <summary>Two calls on two threads, each thread reading and writing only its own rows.</summary>
    [Benchmark]
    public void ReadAndWriteOwnRows()
    {
        CpuThreading.For(2, forward);
        CpuThreading.For(2, back);
    }

    private sealed class ThreadLayoutConfig : ManualConfig
    {
        public ThreadLayoutConfig() => AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(15).WithLaunchCount(1));
    }
}
