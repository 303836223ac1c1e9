namespace NeuralCore.Data;

/// <summary>
/// SplitMix64 (Steele, Lea and Flood 2014): a tiny 64-bit generator whose output depends only on
/// its seed, never on the .NET version, so dataset splits are reproducible everywhere. The state
/// starts at the seed (sign-extended to 64 bits), advances by 0x9E3779B97F4A7C15 per draw, and each
/// output is the state passed through the SplitMix64 finaliser.
/// </summary>
internal struct SplitMix64(long seed)
{
    private ulong _state = unchecked((ulong)seed);

    /// <summary>The next 64 uniformly distributed bits.</summary>
    public ulong NextUInt64()
    {
        unchecked
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }

    /// <summary>
    /// A uniform integer in [0, <paramref name="bound"/>), without modulo bias: the high 64 bits of
    /// a 64 x 64-bit product, rejecting the few low-half values that would favour some results
    /// (Lemire 2019).
    /// </summary>
    public int NextInt(int bound)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bound);
        ulong n = (ulong)bound;
        UInt128 product = (UInt128)NextUInt64() * n;
        if ((ulong)product < n)
        {
            ulong threshold = unchecked(0UL - n) % n;
            while ((ulong)product < threshold)
                product = (UInt128)NextUInt64() * n;
        }
        return (int)(ulong)(product >> 64);
    }

    /// <summary>
    /// Shuffles <paramref name="items"/> in place with Fisher-Yates running from the last position
    /// down: for i = n-1 .. 1, swap items[i] with items[NextInt(i + 1)].
    /// </summary>
    public void Shuffle(Span<int> items)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }
}
