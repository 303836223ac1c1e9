using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Ops;

namespace NeuralCore.Tests.Backends;

/// <summary>
/// <see cref="ClaimedRanges"/>: every item handed out exactly once, a part's own range from its front, then the range
/// with the most left from its back; switched off, each part its own range only. And the kernels that share their
/// samples this way give the same bits however the samples fall to the parts. Switches a path process-wide, so runs
/// alone.
/// </summary>
[Collection(nameof(CpuSettingsCollection))]
public sealed unsafe class ClaimedRangesTests
{
    private static List<int> Drain(ClaimedRanges ranges, int part)
    {
        var items = new List<int>();
        while (ranges.Next(part, out int item)) items.Add(item);
        return items;
    }

    [Fact]
    public void APartTakesItsOwnRangeFromTheFrontThenTheFullestFromTheBack()
    {
        long* words = stackalloc long[ClaimedRanges.Words(3)];
        // 10 items in 3 parts: [0, 3), [3, 6), [6, 10).
        var ranges = new ClaimedRanges(words, 3, 10);
        Assert.True(ranges.Next(1, out int first));
        Assert.Equal(3, first);
        Assert.True(ranges.Next(2, out int other));
        Assert.Equal(6, other);
        // Part 1 takes the rest of its own range, then steals: part 2's range has 3 left (7, 8, 9), part 0's 3 (0, 1, 2);
        // the first fullest (part 0) gives its last item, then part 2's, and so on.
        Assert.Equal(new[] { 4, 5, 2, 9, 1, 8, 0, 7 }, Drain(ranges, 1));
        Assert.False(ranges.Next(0, out int none));
        Assert.Equal(-1, none);
        Assert.False(ranges.Next(2, out _));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(8)]
    public void EachRangesWordHasACacheLineOfItsOwn(int parts)
    {
        // A buffer on no particular alignment (one long past a line): the ranges must write one word each, 64 bytes or
        // more apart, and nothing outside the Words longs.
        int length = ClaimedRanges.Words(parts);
        var buffer = new long[length + 16];
        fixed (long* start = buffer)
        {
            long* words = (long*)(((nint)start + 63) & ~(nint)63) + 1;
            int offset = (int)(words - start);
            Array.Fill(buffer, long.MinValue);
            _ = new ClaimedRanges(words, parts, 100);
            var written = Enumerable.Range(0, buffer.Length).Where(i => buffer[i] != long.MinValue).ToArray();
            Assert.Equal(parts, written.Length);
            Assert.All(written, i => Assert.InRange(i, offset, offset + length - 1));
            for (int p = 1; p < parts; p++)
            {
                long linesApart = ((nint)(start + written[p]) >> 6) - ((nint)(start + written[p - 1]) >> 6);
                Assert.True(linesApart >= 1, $"ranges {p - 1} and {p} share a cache line");
            }
        }
    }

    [Fact]
    public void SwitchedOffEachPartTakesItsOwnRangeOnly()
    {
        long* words = stackalloc long[ClaimedRanges.Words(2)];
        var ranges = new ClaimedRanges(words, 2, 5);
        ClaimedRanges.Enabled = false;
        try
        {
            Assert.Equal(new[] { 2, 3, 4 }, Drain(ranges, 1));
            Assert.Equal(new[] { 0, 1 }, Drain(ranges, 0));
        }
        finally
        {
            ClaimedRanges.Enabled = true;
        }
    }

    [Theory]
    [InlineData(2, 64)]
    [InlineData(3, 7)]
    [InlineData(4, 1000)]
    [InlineData(4, 2)]
    public void ThreadsTakingAtOnceGetEveryItemExactlyOnce(int parts, int count)
    {
        var words = new long[ClaimedRanges.Words(parts)];
        var hits = new int[count];
        fixed (long* w = words)
        {
            var ranges = new ClaimedRanges(w, parts, count);
            var threads = Enumerable.Range(0, parts).Select(part => new Thread(() =>
            {
                // Part 0 dawdles, so that the others reach its range.
                while (ranges.Next(part, out int item))
                {
                    Interlocked.Increment(ref hits[item]);
                    if (part == 0) Thread.SpinWait(2000);
                }
            })).ToArray();
            foreach (var t in threads) t.Start();
            foreach (var t in threads) t.Join();
        }
        Assert.All(hits, h => Assert.Equal(1, h));
    }

    /// <summary>
    /// The convolutions run sample by sample (3x3 on mel's 15 x 24 maps) and the stem's forward give the same bits with
    /// samples claimed across parts as with each part its own, on 2 and 3 threads.
    /// </summary>
    [Theory]
    [InlineData(6, 19, 15, 24, 19, 3, 1, 1)]
    [InlineData(5, 1, 40, 30, 19, 5, 2, 1)]
    public void KernelsGiveTheSameBitsWhicheverPartTakesASample(int n, int c, int h, int w, int k, int r, int stride, int pad)
    {
        var p = new Conv2dParams(n, c, h, w, k, r, r, stride, stride, pad, pad, 1, 1, 1);
        var x = Tensor.FromArray(Reference.ToFloat(Reference.Random(n * c * h * w, 71)), n, c, h, w);
        var weight = Tensor.FromArray(Reference.ToFloat(Reference.Random(k * c * r * r, 72)), k, c, r, r);
        int saved = CpuThreading.Threads;
        try
        {
            foreach (int threads in new[] { 2, 3 })
            {
                CpuThreading.Threads = threads;
                var results = new List<float[]>();
                foreach (bool claimed in new[] { false, true })
                {
                    ClaimedRanges.Enabled = claimed;
                    var y = Tensor.Zeros([n, k, p.P, p.Q]);
                    CpuBackend.Instance.Conv2d(x, weight, null, y, p);
                    results.Add(y.ToArray());
                }
                Assert.Equal(results[0].Select(BitConverter.SingleToInt32Bits), results[1].Select(BitConverter.SingleToInt32Bits));
            }
        }
        finally
        {
            ClaimedRanges.Enabled = true;
            CpuThreading.Threads = saved;
        }
    }
}
