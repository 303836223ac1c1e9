namespace NeuralCore.Data.Tests;

public sealed class DataLoaderTests
{
    /// <summary>A source whose sample i is the value i (shape [1]) with label i % classes; it records every call.</summary>
    private sealed class CountingSource(int count, Func<int, Exception?>? failAt = null) : IBatchSource
    {
        public int Count => count;
        public int NumClasses => 3;
        public int[] SampleShape => [1];
        public int Calls;
        public readonly List<int> ThreadIds = [];

        public Batch GetBatch(ReadOnlySpan<int> indices)
        {
            int call = Interlocked.Increment(ref Calls) - 1;
            lock (ThreadIds) ThreadIds.Add(Environment.CurrentManagedThreadId);
            if (failAt?.Invoke(call) is { } error) throw error;
            var values = new float[indices.Length];
            var targets = new long[indices.Length];
            for (int i = 0; i < indices.Length; i++) { values[i] = indices[i]; targets[i] = indices[i] % 3; }
            return new Batch(Tensor.FromArray(values, indices.Length, 1), Tensor.FromArray(targets, indices.Length), indices.ToArray());
        }
    }

    [Theory]
    [InlineData(10, 4, false, new[] { 4, 4, 2 })]
    [InlineData(10, 4, true, new[] { 4, 4 })]
    [InlineData(12, 4, true, new[] { 4, 4, 4 })]
    [InlineData(3, 8, false, new[] { 3 })]
    [InlineData(3, 8, true, new int[0])]
    public void BatchSizes_FollowBatchSizeAndDropLast(int count, int batchSize, bool dropLast, int[] expected)
    {
        var loader = new DataLoader(new CountingSource(count), batchSize, shuffle: true, seed: 1, dropLast);
        Assert.Equal(expected.Length, loader.BatchCount);
        Assert.Equal(expected, loader.Select(b => b.Inputs.Size(0)).ToArray());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    public void EveryIndexOnce_WithMatchingInputsAndTargets(int prefetch)
    {
        var loader = new DataLoader(new CountingSource(103), 10, shuffle: true, seed: 9, prefetch: prefetch);
        var seen = new List<int>();
        foreach (var batch in loader)
        {
            Assert.Equal(DType.Float32, batch.Inputs.DType);
            Assert.Equal(DType.Int64, batch.Targets.DType);
            Assert.Equal([batch.Indices.Length, 1], batch.Inputs.ShapeArray());
            Assert.Equal(batch.Indices.Select(i => (float)i), batch.Inputs.ToArray());
            Assert.Equal(batch.Indices.Select(i => (long)(i % 3)), batch.Targets.ToInt64Array());
            seen.AddRange(batch.Indices);
        }
        Assert.Equal(Enumerable.Range(0, 103), seen.Order());
        Assert.NotEqual(Enumerable.Range(0, 103), seen);
    }

    [Fact]
    public void WithoutShuffle_OrderIsSequential()
    {
        var loader = new DataLoader(new CountingSource(7), 3, shuffle: false, seed: 5) { Epoch = 4 };
        Assert.Equal(Enumerable.Range(0, 7), loader.SelectMany(b => b.Indices));
    }

    [Fact]
    public void Order_IsAFunctionOfSeedAndEpoch()
    {
        int[] Order(ulong seed, int epoch) =>
            new DataLoader(new CountingSource(50), 8, shuffle: true, seed) { Epoch = epoch }.SelectMany(b => b.Indices).ToArray();

        Assert.Equal(Order(3, 0), Order(3, 0));
        Assert.Equal(Order(3, 7), Order(3, 7));
        Assert.NotEqual(Order(3, 0), Order(3, 1));
        Assert.NotEqual(Order(3, 0), Order(4, 0));

        // Enumerating twice without changing Epoch repeats the order (the caller advances epochs).
        var loader = new DataLoader(new CountingSource(50), 8, shuffle: true, seed: 3) { Epoch = 2 };
        Assert.Equal(loader.SelectMany(b => b.Indices), loader.SelectMany(b => b.Indices));
        Assert.Equal(Order(3, 2), loader.EpochOrder(2));
    }

    [Fact]
    public void Prefetch_BuildsOnABackgroundThreadAndStaysBounded()
    {
        var source = new CountingSource(100);
        var loader = new DataLoader(source, 10, shuffle: false, seed: 0, prefetch: 2);
        using var e = loader.GetEnumerator();
        Assert.True(e.MoveNext());
        // The producer runs ahead but stops at the channel's capacity: one batch taken, two queued, and at most
        // one more built and waiting to be written.
        SpinWait.SpinUntil(() => Volatile.Read(ref source.Calls) >= 3, TimeSpan.FromSeconds(10));
        Thread.Sleep(50);
        Assert.InRange(Volatile.Read(ref source.Calls), 3, 4);
        lock (source.ThreadIds) Assert.DoesNotContain(Environment.CurrentManagedThreadId, source.ThreadIds);
        int rest = 0;
        while (e.MoveNext()) rest++;
        Assert.Equal(9, rest);
    }

    [Fact]
    public void ProducerException_SurfacesInTheConsumerAfterEarlierBatches()
    {
        var source = new CountingSource(50, call => call == 2 ? new InvalidDataException("bad sample file") : null);
        var loader = new DataLoader(source, 10, shuffle: false, seed: 0);
        var received = new List<int>();
        var error = Assert.Throws<InvalidDataException>(() =>
        {
            foreach (var batch in loader) received.Add(batch.Indices[0]);
        });
        Assert.Equal("bad sample file", error.Message);
        Assert.Equal([0, 10], received);
    }

    [Fact]
    public void SynchronousException_SurfacesToo()
    {
        var source = new CountingSource(50, call => call == 0 ? new InvalidOperationException("broken") : null);
        var loader = new DataLoader(source, 10, shuffle: false, seed: 0, prefetch: 0);
        Assert.Throws<InvalidOperationException>(() => loader.First());
    }

    [Fact]
    public void EarlyBreak_StopsTheProducer()
    {
        var source = new CountingSource(10_000);
        var loader = new DataLoader(source, 1, shuffle: true, seed: 0, prefetch: 3);
        for (int round = 0; round < 20; round++)
        {
            foreach (var batch in loader)
                if (batch.Indices.Length == 1) break;
        }
        int calls = Volatile.Read(ref source.Calls);
        // Each round built at most 1 consumed + 3 queued + 1 pending batch, and nothing runs after the break.
        Assert.InRange(calls, 20, 20 * 5);
        Thread.Sleep(50);
        Assert.Equal(calls, Volatile.Read(ref source.Calls));
    }

    [Fact]
    public void ImageBatchSource_ShapesImagesAsOneChannel()
    {
        var pixels = Enumerable.Range(0, 4 * 2 * 3).Select(i => i / 100f).ToArray();
        var data = new ImageDataset(pixels, [3, 1, 4, 1], rows: 2, cols: 3, numClasses: 5);
        var source = new ImageBatchSource(data);
        Assert.Equal([1, 2, 3], source.SampleShape);
        Assert.Equal(5, source.NumClasses);
        var batch = source.GetBatch([2, 0]);
        Assert.Equal([2, 1, 2, 3], batch.Inputs.ShapeArray());
        Assert.Equal(pixels.AsSpan(12, 6).ToArray().Concat(pixels.AsSpan(0, 6).ToArray()), batch.Inputs.ToArray());
        Assert.Equal([4L, 3L], batch.Targets.ToInt64Array());
        Assert.Equal([2, 0], batch.Indices);
        Assert.Throws<ArgumentOutOfRangeException>(() => source.GetBatch([4]));
    }

    [Fact]
    public void InvalidArguments_AreRejected()
    {
        var source = new CountingSource(5);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataLoader(source, 0, false, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataLoader(source, 2, false, 0, prefetch: -1));
    }
}
