using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NeuralCore.Backends.Cpu;

namespace NeuralCore.Tests.Backends;

/// <summary>
/// The two vector widths kernels are written once for (<see cref="IVectorLanes{TVector}"/>): each operation against its
/// scalar meaning, at every width this CPU runs (512 bits with AVX-512, 256 with AVX2 and FMA).
/// </summary>
public sealed class VectorLanesTests
{
    public static TheoryData<int> Widths() => [512, 256];

    [Theory]
    [MemberData(nameof(Widths))]
    public void EachOperationDoesWhatItsScalarFormDoes(int bits)
    {
        if (bits == 512 && !Avx512F.IsSupported) Assert.Skip("This CPU has no AVX-512: the 512-bit lanes do not run.");
        if (bits == 256 && !(Avx2.IsSupported && Fma.IsSupported)) Assert.Skip("This CPU has no AVX2 and FMA: the 256-bit lanes do not run.");
        if (bits == 512) Check<Lanes512, Vector512<float>>();
        else Check<Lanes256, Vector256<float>>();
    }

    private static unsafe void Check<TLanes, TVector>() where TLanes : struct, IVectorLanes<TVector> where TVector : unmanaged
    {
        int n = TLanes.Count;
        Assert.Equal(sizeof(TVector) / sizeof(float), n);
        var random = new Random(5);
        float[] Values(int count) => [.. Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * (1 << random.Next(12)))];
        float[] a = Values(2 * n), b = Values(n), c = Values(n), d = Values(n), result = new float[2 * n];
        fixed (float* pa = a, pb = b, pc = c, pd = d, pr = result)
        {
            // One rounding in the multiply-add: (1 + 2^-23)(1 - 2^-23) - 1 is -2^-46 fused, 0 with the product rounded first.
            TLanes.Store(TLanes.MultiplyAdd(TLanes.Create(1 + MathF.Pow(2, -23)), TLanes.Create(1 - MathF.Pow(2, -23)), TLanes.Create(-1)), pr);
            Assert.All(result.Take(n), v => Assert.Equal(-MathF.Pow(2, -46), v));
            TLanes.Store(TLanes.Add(TLanes.Load(pa), TLanes.Load(pb)), pr);
            for (int l = 0; l < n; l++) Assert.Equal(a[l] + b[l], result[l]);

            // The even floats of 2n, in order.
            TLanes.Store(TLanes.Evens(TLanes.Load(pa), TLanes.Load(pa + n)), pr);
            for (int l = 0; l < n; l++) Assert.Equal(a[2 * l], result[l]);

            // Masks: the first lanes only, masked lanes neither read nor written.
            for (int count = -1; count <= n + 1; count++)
            {
                var mask = TLanes.FirstLanes(count);
                int live = Math.Clamp(count, 0, n);
                Array.Fill(result, float.NaN);
                TLanes.MaskStore(pr, mask, TLanes.Load(pa));
                for (int l = 0; l < 2 * n; l++) Assert.Equal(l < live ? a[l] : float.NaN, result[l]);
                // Lanes past the live ones read as zero whatever lies there (NaN here).
                TLanes.Store(TLanes.MaskLoad(pr, mask), pr + n);
                for (int l = 0; l < n; l++) Assert.Equal(l < live ? a[l] : 0f, result[n + l]);
                TLanes.Store(TLanes.KeepLanes(mask, TLanes.Load(pa)), pr);
                for (int l = 0; l < n; l++) Assert.Equal(l < live ? a[l] : 0f, result[l]);
                TLanes.Store(TLanes.And(mask, TLanes.Load(pa)), pr);
                for (int l = 0; l < n; l++) Assert.Equal(l < live ? a[l] : 0f, result[l]);
            }
            TLanes.Store(TLanes.And(TLanes.AllBitsSet, TLanes.Load(pa)), pr);
            Assert.Equal(a.Take(n), result.Take(n));

            // The four sums, each a pairwise tree over the lanes (bit for bit).
            var sums = TLanes.Sums4(TLanes.Load(pa), TLanes.Load(pb), TLanes.Load(pc), TLanes.Load(pd));
            float[][] rows = [a[..n], b, c, d];
            for (int i = 0; i < 4; i++) Assert.Equal(BitConverter.SingleToInt32Bits(PairwiseSum(rows[i])), BitConverter.SingleToInt32Bits(sums.GetElement(i)));
        }
    }

    /// <summary>Neighbouring lanes added, then neighbouring pair sums, and so on up.</summary>
    private static float PairwiseSum(float[] lanes)
    {
        var level = lanes;
        while (level.Length > 1) level = [.. Enumerable.Range(0, level.Length / 2).Select(i => level[2 * i] + level[2 * i + 1])];
        return level[0];
    }
}
