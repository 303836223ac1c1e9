using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// The float operations of one vector width, for kernels written once for 512-bit vectors (AVX-512) and 256-bit ones
/// (AVX2 and FMA): a kernel generic over <c>TLanes : struct, IVectorLanes&lt;TVector&gt;</c> is compiled once per width
/// and every call here is inlined into it, so each instance is the code its width's intrinsics would give (weights
/// broadcast inside the multiply-adds included). Lane l of a vector holds the float at offset l, so an operation on
/// each lane does the same floating-point work at either width; only sums across lanes (<see cref="Sums4"/>) depend
/// on the width.
/// </summary>
internal unsafe interface IVectorLanes<TVector> where TVector : unmanaged
{
    /// <summary>Floats per vector.</summary>
    static abstract int Count { get; }

    static abstract TVector Load(float* source);

    static abstract void Store(TVector value, float* destination);

    /// <summary>Every lane <paramref name="value"/>.</summary>
    static abstract TVector Create(float value);

    /// <summary>a * b + addend, rounded once.</summary>
    static abstract TVector MultiplyAdd(TVector a, TVector b, TVector addend);

    static abstract TVector Add(TVector a, TVector b);

    /// <summary>The bits set in both.</summary>
    static abstract TVector And(TVector a, TVector b);

    /// <summary>Every bit set.</summary>
    static abstract TVector AllBitsSet { get; }

    /// <summary>All bits set in lanes [0, <paramref name="count"/>), zero in the rest (none for 0 or less, all from Count on).</summary>
    static abstract TVector FirstLanes(int count);

    /// <summary>The lanes of <paramref name="mask"/> read from <paramref name="source"/>, zero elsewhere; masked lanes touch no memory.</summary>
    static abstract TVector MaskLoad(float* source, TVector mask);

    /// <summary>The lanes of <paramref name="mask"/> written to <paramref name="destination"/>; no other memory is touched.</summary>
    static abstract void MaskStore(float* destination, TVector mask, TVector value);

    /// <summary>The lanes of <paramref name="mask"/> from <paramref name="value"/>, zero elsewhere.</summary>
    static abstract TVector KeepLanes(TVector mask, TVector value);

    /// <summary>
    /// ReLU (<paramref name="kind"/> 1) or Hardswish (2) of each lane, as <see cref="ConvKernels.EpilogueVector(Vector512{float}, float, bool, Vector512{float}, bool, int)"/>
    /// applies them; 0 leaves the value as it is.
    /// </summary>
    static abstract TVector Activate(TVector value, int kind);

    /// <summary>The floats at even offsets of the 2 * Count floats <paramref name="first"/> then <paramref name="second"/>, in order.</summary>
    static abstract TVector Evens(TVector first, TVector second);

    /// <summary>
    /// The sums of the lanes of a, b, c and d, in that order: each adds neighbouring lanes, then neighbouring pair sums, and
    /// so on up, as <see cref="Vector512.Sum{T}"/> does.
    /// </summary>
    static abstract Vector128<float> Sums4(TVector a, TVector b, TVector c, TVector d);
}

/// <summary>16 floats a vector, AVX-512.</summary>
internal readonly unsafe struct Lanes512 : IVectorLanes<Vector512<float>>
{
    public static int Count => 16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(float* source) => Vector512.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector512<float> value, float* destination) => Vector512.Store(value, destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Create(float value) => Vector512.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> addend) =>
        Vector512.FusedMultiplyAdd(a, b, addend);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> And(Vector512<float> a, Vector512<float> b) => a & b;

    public static Vector512<float> AllBitsSet => Vector512<float>.AllBitsSet;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> FirstLanes(int count) => ConvKernels.FirstLanes(count);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MaskLoad(float* source, Vector512<float> mask) => Avx512F.MaskLoad(source, mask, Vector512<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MaskStore(float* destination, Vector512<float> mask, Vector512<float> value) => Avx512F.MaskStore(destination, mask, value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Activate(Vector512<float> value, int kind) =>
        ConvKernels.EpilogueVector(value, 0f, false, default, false, kind);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> KeepLanes(Vector512<float> mask, Vector512<float> value) =>
        Vector512.ConditionalSelect(mask, value, Vector512<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Evens(Vector512<float> first, Vector512<float> second) =>
        Avx512F.PermuteVar16x32x2(first, Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), second);

    /// <summary>15 instructions for the four sums, where one <see cref="Vector512.Sum{T}"/> takes about 14.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Sums4(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var odd = even + Vector512<int>.One;
        // Pairs: lanes 0-7 a's, 8-15 b's (and c's, d's); then quads: a's, b's, c's, d's, 4 lanes each.
        var ab = Avx512F.PermuteVar16x32x2(a, even, b) + Avx512F.PermuteVar16x32x2(a, odd, b);
        var cd = Avx512F.PermuteVar16x32x2(c, even, d) + Avx512F.PermuteVar16x32x2(c, odd, d);
        var quads = Avx512F.PermuteVar16x32x2(ab, even, cd) + Avx512F.PermuteVar16x32x2(ab, odd, cd);
        // Eights (lanes 0-7: a's two, b's two, ...), then the sums (lanes 0-3).
        var eights = Avx512F.PermuteVar16x32(quads, even) + Avx512F.PermuteVar16x32(quads, odd);
        return (Avx512F.PermuteVar16x32(eights, even) + Avx512F.PermuteVar16x32(eights, odd)).GetLower().GetLower();
    }
}

/// <summary>8 floats a vector, AVX2 and FMA.</summary>
internal readonly unsafe struct Lanes256 : IVectorLanes<Vector256<float>>
{
    public static int Count => 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(float* source) => Vector256.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector256<float> value, float* destination) => Vector256.Store(value, destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Create(float value) => Vector256.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> addend) =>
        Vector256.FusedMultiplyAdd(a, b, addend);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> And(Vector256<float> a, Vector256<float> b) => a & b;

    public static Vector256<float> AllBitsSet => Vector256<float>.AllBitsSet;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> FirstLanes(int count) =>
        Vector256.LessThan(Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7), Vector256.Create(count)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MaskLoad(float* source, Vector256<float> mask) => Avx.MaskLoad(source, mask);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MaskStore(float* destination, Vector256<float> mask, Vector256<float> value) => Avx.MaskStore(destination, mask, value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> KeepLanes(Vector256<float> mask, Vector256<float> value) => mask & value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Activate(Vector256<float> value, int kind) =>
        ConvKernels.EpilogueVector(value, default, false, default, false, kind);

    /// <summary>A shuffle within each 128-bit half, then the 64-bit pairs put in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Evens(Vector256<float> first, Vector256<float> second) =>
        Avx2.Permute4x64(Avx.Shuffle(first, second, 0b10_00_10_00).AsDouble(), 0b11_01_10_00).AsSingle();

    /// <summary>Three horizontal additions and one of the two halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Sums4(Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d)
    {
        // Per 128-bit half: a's pair sums, b's; then c's, d's; then a's, b's, c's and d's sums of four.
        var quads = Avx.HorizontalAdd(Avx.HorizontalAdd(a, b), Avx.HorizontalAdd(c, d));
        return quads.GetLower() + quads.GetUpper();
    }
}
