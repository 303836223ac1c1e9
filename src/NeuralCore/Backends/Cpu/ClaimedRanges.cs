namespace NeuralCore.Backends.Cpu;

/// <summary>
/// Items [0, count) shared out among a call's parts as contiguous ranges (part p's the p-th of even ones), each part
/// taking its own range's items from the front and, once that is done, the last items of the range with the most left
/// from its back: so a part whose core runs slower (a vCPU that another guest shares, or one slow to wake) ends with
/// fewer items instead of holding up the call, and each part still takes mostly the items its core took in the
/// previous call (whose data is in that core's caches). Which part computes an item never changes what it computes,
/// so only kernels whose items are independent of each other use it (no per-part sums).
/// </summary>
/// <remarks>
/// Each range is one 64-bit word, its front in the high half and its back in the low half, taken from with a
/// compare-exchange: an item is handed out exactly once. Each word has a cache line of its own: with the words side by
/// side, each part's take moved the line the other part's next take needed between the cores, and at small items (one
/// sample of a 1x1 with 8 channels) the takes were 7 % of the call's time (`perf`). The words live in memory the
/// caller holds until every part is done: a stack buffer of <see cref="Words"/> longs on the frame that waits for the
/// parts, or a pinned array.
/// </remarks>
internal unsafe readonly struct ClaimedRanges
{
    // Longs from one range's word to the next: a cache line, so that no two words share one, however the buffer is
    // aligned.
    private const int Stride = 8;
    private readonly long* _ranges;
    private readonly int _parts;

    /// <summary>The longs a call of <paramref name="parts"/> parts needs (a cache line per part).</summary>
    internal static int Words(int parts) => parts * Stride;

    /// <summary>
    /// Whether calls share their items this way (false: each part takes exactly its own range, as before; tests and
    /// benchmarks compare the two).
    /// </summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>Ranges of <paramref name="count"/> items for <paramref name="parts"/> parts in <paramref name="words"/> (<see cref="Words"/> longs).</summary>
    internal ClaimedRanges(long* words, int parts, int count)
    {
        _ranges = words;
        _parts = parts;
        for (int p = 0; p < parts; p++)
        {
            long front = (long)p * count / parts, back = (long)(p + 1) * count / parts;
            _ranges[p * Stride] = front << 32 | back;
        }
    }

    /// <summary>The next item for <paramref name="part"/>: its own range's front, else another range's back; false when none is left.</summary>
    internal bool Next(int part, out int item)
    {
        if (Take(part, front: true, out item)) return true;
        if (!Enabled) return false;
        while (true)
        {
            // The range with the most items left; its back item (another part, taking from the front, meets it there).
            int best = -1;
            long most = 0;
            for (int p = 0; p < _parts; p++)
            {
                long word = Volatile.Read(ref _ranges[p * Stride]);
                long left = (word & 0xFFFFFFFF) - (word >> 32);
                if (p != part && left > most)
                {
                    most = left;
                    best = p;
                }
            }
            if (best < 0) return false;
            if (Take(best, front: false, out item)) return true;
        }
    }

    /// <summary>Range <paramref name="p"/>'s first (or last) item, taken with one compare-exchange of its word; false when it is empty.</summary>
    private bool Take(int p, bool front, out int item)
    {
        while (true)
        {
            long word = Volatile.Read(ref _ranges[p * Stride]);
            long first = word >> 32, end = word & 0xFFFFFFFF;
            if (first >= end)
            {
                item = -1;
                return false;
            }
            long taken = front ? (first + 1) << 32 | end : first << 32 | (end - 1);
            if (Interlocked.CompareExchange(ref _ranges[p * Stride], taken, word) == word)
            {
                item = (int)(front ? first : end - 1);
                return true;
            }
        }
    }
}
