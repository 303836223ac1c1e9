using System.Collections;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;

namespace NeuralCore.Data;

/// <summary>
/// Splits an <see cref="IBatchSource"/> into mini-batches (PyTorch's <c>DataLoader</c>): optionally shuffled,
/// optionally dropping the last partial batch, and built on a background task up to <c>prefetch</c> batches
/// ahead so the model does not wait for data.
/// </summary>
/// <remarks>
/// <para>
/// The shuffle order is a pure function of (seed, <see cref="Epoch"/>): set <see cref="Epoch"/> before each epoch
/// (the loader never changes it itself), and a run resumed at epoch e sees exactly the order it would have seen.
/// Each enumeration reads <see cref="Epoch"/> once, when it starts.
/// </para>
/// <para>
/// An exception thrown by the source while building a batch is rethrown (with its original stack trace) by the
/// consumer's <c>MoveNext</c> at the position of that batch. Leaving a <c>foreach</c> early disposes the enumerator,
/// which stops the producer and waits for it, so nothing keeps running in the background.
/// </para>
/// </remarks>
public sealed class DataLoader : IEnumerable<Batch>
{
    private readonly ulong _seed;

    /// <summary>Creates a loader.</summary>
    /// <param name="source">The samples to batch.</param>
    /// <param name="batchSize">Samples per batch (the last batch may be smaller unless <paramref name="dropLast"/>).</param>
    /// <param name="shuffle">Visit the samples in a new random order each epoch; otherwise in index order.</param>
    /// <param name="seed">Seed of the shuffle order (with <see cref="Epoch"/>).</param>
    /// <param name="dropLast">Skip the last batch when it is smaller than <paramref name="batchSize"/>.</param>
    /// <param name="prefetch">
    /// How many finished batches the background producer may hold ahead of the consumer; 0 builds each batch on
    /// the consumer's thread when it is asked for (no background task).
    /// </param>
    public DataLoader(IBatchSource source, int batchSize, bool shuffle, ulong seed, bool dropLast = false, int prefetch = 2)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (batchSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "The batch size must be at least 1.");
        if (prefetch < 0)
            throw new ArgumentOutOfRangeException(nameof(prefetch), prefetch, "Prefetch must be 0 (no background producer) or more.");
        Source = source;
        BatchSize = batchSize;
        Shuffle = shuffle;
        DropLast = dropLast;
        Prefetch = prefetch;
        _seed = seed;
    }

    /// <summary>The samples being batched.</summary>
    public IBatchSource Source { get; }

    /// <summary>Samples per batch.</summary>
    public int BatchSize { get; }

    /// <summary>Whether each epoch visits the samples in a shuffled order.</summary>
    public bool Shuffle { get; }

    /// <summary>Whether the last, smaller batch is skipped.</summary>
    public bool DropLast { get; }

    /// <summary>How many batches the background producer may build ahead (0: no background producer).</summary>
    public int Prefetch { get; }

    /// <summary>The epoch whose shuffle order the next enumeration uses; the caller sets it (the loader never advances it).</summary>
    public int Epoch { get; set; }

    /// <summary>Batches per epoch: Count / BatchSize, rounded up unless <see cref="DropLast"/>.</summary>
    public int BatchCount => DropLast ? Source.Count / BatchSize : (Source.Count + BatchSize - 1) / BatchSize;

    /// <summary>
    /// The order in which epoch <paramref name="epoch"/> visits the samples: 0 .. Count - 1, or a permutation of it
    /// drawn from a generator seeded by (seed, epoch) when shuffling.
    /// </summary>
    public int[] EpochOrder(int epoch)
    {
        var order = new int[Source.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        if (Shuffle)
        {
            // The (seed, epoch) pair goes through one SplitMix64 round before seeding the shuffle, so nearby
            // seeds and epochs give unrelated orders.
            ulong epochSeed = new SplitMix64(unchecked((long)_seed)).NextUInt64() ^ (uint)epoch;
            new SplitMix64(unchecked((long)epochSeed)).Shuffle(order);
        }
        return order;
    }

    /// <summary>Enumerates the batches of the current <see cref="Epoch"/>.</summary>
    public IEnumerator<Batch> GetEnumerator()
    {
        var order = EpochOrder(Epoch);
        int count = BatchCount;
        return Prefetch == 0
            ? new SynchronousEnumerator(Source, order, BatchSize, count)
            : new PrefetchEnumerator(Source, order, BatchSize, count, Prefetch);
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private static Batch BuildBatch(IBatchSource source, int[] order, int batchSize, int batch)
    {
        int start = batch * batchSize;
        return source.GetBatch(order.AsSpan(start, Math.Min(batchSize, order.Length - start)));
    }

    private sealed class SynchronousEnumerator(IBatchSource source, int[] order, int batchSize, int count) : IEnumerator<Batch>
    {
        private int _next;
        private Batch? _current;

        public Batch Current => _current ?? throw new InvalidOperationException("MoveNext has not returned true.");

        object IEnumerator.Current => Current;

        public bool MoveNext()
        {
            if (_next >= count) { _current = null; return false; }
            _current = BuildBatch(source, order, batchSize, _next++);
            return true;
        }

        public void Reset() => throw new NotSupportedException("A DataLoader enumerator cannot be reset; enumerate the loader again.");

        public void Dispose() { }
    }

    /// <summary>
    /// Builds batches on a background task into a bounded channel. The producer stops when the channel is full
    /// (so at most <c>capacity</c> finished batches wait), when the epoch is done, or when the enumerator is disposed.
    /// </summary>
    private sealed class PrefetchEnumerator : IEnumerator<Batch>
    {
        private readonly Channel<Batch> _channel;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _producer;
        private Exception? _failure;
        private Batch? _current;
        private bool _disposed;

        public PrefetchEnumerator(IBatchSource source, int[] order, int batchSize, int count, int capacity)
        {
            _channel = Channel.CreateBounded<Batch>(new BoundedChannelOptions(capacity)
            {
                SingleReader = true,
                SingleWriter = true,
                FullMode = BoundedChannelFullMode.Wait,
            });
            var token = _stop.Token;
            _producer = Task.Run(async () =>
            {
                try
                {
                    for (int b = 0; b < count; b++)
                    {
                        token.ThrowIfCancellationRequested();
                        await _channel.Writer.WriteAsync(BuildBatch(source, order, batchSize, b), token).ConfigureAwait(false);
                    }
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                    // Disposed early: the consumer no longer wants batches.
                }
                catch (Exception e)
                {
                    // Published before completing the channel, so the consumer sees it once the queue is drained.
                    Volatile.Write(ref _failure, e);
                }
                finally
                {
                    _channel.Writer.TryComplete();
                }
            });
        }

        public Batch Current => _current ?? throw new InvalidOperationException("MoveNext has not returned true.");

        object IEnumerator.Current => Current;

        public bool MoveNext()
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var reader = _channel.Reader;
            while (true)
            {
                if (reader.TryRead(out var batch)) { _current = batch; return true; }
                // WaitToReadAsync completes with false once the producer has completed the channel and it is empty.
                var wait = reader.WaitToReadAsync();
                var more = wait.IsCompletedSuccessfully ? wait.Result : wait.AsTask().GetAwaiter().GetResult();
                if (more) continue;
                _current = null;
                if (Volatile.Read(ref _failure) is { } failure) ExceptionDispatchInfo.Capture(failure).Throw();
                return false;
            }
        }

        public void Reset() => throw new NotSupportedException("A DataLoader enumerator cannot be reset; enumerate the loader again.");

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            _stop.Cancel();
            // NOTE: waits for a GetBatch already in progress to return, so no producer outlives the loop
            // that owned it (the next epoch may reuse state the source keeps).
            _producer.GetAwaiter().GetResult();
            while (_channel.Reader.TryRead(out var unread))
            {
                unread.Inputs.Dispose();
                unread.Targets.Dispose();
            }
            _stop.Dispose();
        }
    }
}
