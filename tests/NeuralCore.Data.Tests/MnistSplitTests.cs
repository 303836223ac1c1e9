namespace NeuralCore.Data.Tests;

public sealed class MnistSplitTests
{
    [Fact]
    public void SplitMix64_MatchesReferenceSequence()
    {
        // Published SplitMix64 outputs (Vigna's splitmix64.c) for seeds 0 and 1234567.
        Assert.Equal(0xE220A8397B1DCDAFUL, new SplitMix64(0).NextUInt64());
        var rng = new SplitMix64(1234567);
        ulong[] expected = [6457827717110365317UL, 3203168211198807973UL, 9817491932198370423UL, 4593380528125082431UL, 16408922859458223821UL];
        Assert.Equal(expected, Enumerable.Range(0, 5).Select(_ => rng.NextUInt64()).ToArray());
    }

    [Fact]
    public void SplitMix64_NextInt_StaysInRangeAndHitsEveryValue()
    {
        var rng = new SplitMix64(7);
        var seen = new int[7];
        for (int i = 0; i < 7000; i++)
            seen[rng.NextInt(7)]++;
        Assert.All(seen, n => Assert.InRange(n, 850, 1150));
    }

    [Fact]
    public void Random_IsDisjointCompleteSortedAndPinnedBySeed()
    {
        var (kept, heldOut) = DatasetSplit.Random(20, 5, seed: 42);
        Assert.Equal(15, kept.Length);
        Assert.Equal(Enumerable.Range(0, 20), kept.Concat(heldOut).Order());
        Assert.Equal(kept.Order(), kept);
        Assert.Equal(heldOut.Order(), heldOut);
        // Pinned so a change to the generator or the rule (which would silently change every
        // published split) fails here.
        Assert.Equal(PinnedHeldOut, heldOut);
        Assert.NotEqual(heldOut, DatasetSplit.Random(20, 5, seed: 43).HeldOut);
    }

    private static readonly int[] PinnedHeldOut = [1, 7, 9, 15, 16];

    [Fact]
    public void Apportion_RealNpmClassCounts_GivesLargestRemainderShares()
    {
        int[] counts = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];
        // 1000 * n_c / 10000 = 100.1, 112.7, 99.1, 103.2, 98.0, 86.3, 101.4, 107.0, 94.4, 97.8: floors sum
        // to 997; the 3 leftover slots go to remainders .8 (class 9), .7 (class 1), and .4 (classes 6
        // and 8 tie; the lower index wins).
        Assert.Equal([100, 113, 99, 103, 98, 86, 102, 107, 94, 98], DatasetSplit.Apportion(counts, 1000));
    }

    [Fact]
    public void Stratified_SyntheticSet_HasExactPerClassCounts()
    {
        // 3 classes with 10, 6 and 4 members (20 in all); 5 validation and 4 test examples.
        byte[] labels = [.. Enumerable.Repeat((byte)0, 10), .. Enumerable.Repeat((byte)1, 6), .. Enumerable.Repeat((byte)2, 4)];
        var (train, validation, test) = DatasetSplit.Stratified(labels, 3, validationCount: 5, testCount: 4, seed: 1);

        // Validation: 5 * (10, 6, 4) / 20 = 2.5, 1.5, 1.0 -> floors 2, 1, 1 (4), the leftover slot to
        // class 0 (remainder tie .5 with class 1, lower index). Test: 4 * (10, 6, 4) / 20 = 2, 1.2, 0.8
        // -> 2, 1, 0 plus one slot to class 2 (.8).
        Assert.Equal([3, 1, 1], CountPerClass(labels, validation));
        Assert.Equal([2, 1, 1], CountPerClass(labels, test));
        Assert.Equal([5, 4, 2], CountPerClass(labels, train));
        Assert.Equal(Enumerable.Range(0, 20), train.Concat(validation).Concat(test).Order());
        Assert.Equal(test.Order(), test);

        var again = DatasetSplit.Stratified(labels, 3, 5, 4, seed: 1);
        Assert.Equal(validation, again.Validation);
        Assert.Equal(test, again.Test);
    }

    [Fact]
    public void Stratified_ClassTooSmallForItsShare_Throws()
    {
        byte[] labels = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        // Validation 6 -> class shares 5.4, 0.6 -> (5, 1); test 5 -> 4.5, 0.5 -> (5, 0) (tie, lower
        // index): class 0 would need 10 of its 9 members.
        Assert.Throws<ArgumentOutOfRangeException>(() => DatasetSplit.Stratified(labels, 2, 6, 5, seed: 0));
    }

    private static int[] CountPerClass(byte[] labels, int[] indices)
    {
        var counts = new int[3];
        foreach (int i in indices)
            counts[labels[i]]++;
        return counts;
    }
}
