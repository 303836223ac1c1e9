using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

// Entry points for kernels that build the packed B micro-panels themselves (the implicit-GEMM convolution gathers its
// input straight into them instead of writing im2col columns for the driver to pack again).
public static unsafe partial class Gemm
{
    /// <summary>Columns of one packed B micro-panel of the AVX-512 kernel: panel row p holds 32 consecutive floats.</summary>
    internal const int PanelColumns = Nr512;

    /// <summary>Floats <see cref="PackRows"/> writes for an m x k matrix (m rounded up to whole micro-panels).</summary>
    internal static long PackedRowsLength(int m, int k) => (long)((m + Mr512 - 1) / Mr512) * Mr512 * k;

    /// <summary>Packs the row-major m x k matrix <paramref name="a"/> into the AVX-512 kernel's A micro-panels.</summary>
    internal static void PackRows(float* a, int lda, int m, int k, float* dst) => PackA(false, a, lda, 0, m, 0, k, dst, Mr512);

    /// <summary>Rows of one packed A micro-panel of the AVX-512 kernel.</summary>
    internal const int PanelRows = Mr512;

    /// <summary>Floats <see cref="PackColumnsOfTranspose"/> writes for the n x k matrix b (n rounded up to whole panels).</summary>
    internal static long PackedColumnsLength(int n, int k) => (long)((n + Nr512 - 1) / Nr512) * Nr512 * k;

    /// <summary>Packs op(B) = b^T, for the row-major n x k matrix b, into the AVX-512 kernel's 32-column B micro-panels.</summary>
    internal static void PackColumnsOfTranspose(float* b, int ldb, int n, int k, float* dst) => PackB(true, b, ldb, 0, k, 0, n, dst, Nr512);

    /// <summary>tile[8, 32] = A B for one packed A micro-panel (k x 8) and one packed B micro-panel (k x 32). Needs AVX-512.</summary>
    internal static void MultiplyTile(int k, float* a, float* b, float* tile) => Kernel512(k, a, b, Nr512, tile, Nr512, 1f, 0f);

    /// <summary>c[8, 32] = A B for one packed A micro-panel (k x 8) and a B micro-panel of k rows <paramref name="ldb"/> floats apart, stored <paramref name="ldc"/> floats per row. Needs AVX-512.</summary>
    internal static void MultiplyTileStrided(int k, float* a, float* b, int ldb, float* c, int ldc) => Kernel512(k, a, b, ldb, c, ldc, 1f, 0f);

    /// <summary>The first <paramref name="rows"/> rows (1 to 7) of <see cref="MultiplyTileStrided"/>'s tile, written to <paramref name="tile"/> with row stride 32, when the others would be padding. Needs AVX-512.</summary>
    internal static void MultiplyTileRows(int rows, int k, float* a, float* b, int ldb, float* tile) => Kernel512FirstRows(rows, k, a, b, ldb, tile);

    /// <summary>The first 16 columns of <see cref="MultiplyTile"/>'s tile (row stride still 32), when the rest would be padding. Needs AVX-512.</summary>
    internal static void MultiplyTileNarrow(int k, float* a, float* b, float* tile) => Kernel512Narrow(k, a, b, Nr512, tile);

    /// <summary>
    /// Columns <paramref name="column"/> .. + 7 of <see cref="MultiplyTile"/>'s tile (column 0, 8, 16 or 24), the rest
    /// of the tile untouched, when the others would be padding or are not needed. Needs AVX-512.
    /// </summary>
    internal static void MultiplyTileEighth(int k, float* a, float* b, float* tile, int column) =>
        Kernel512Eighth(k, a, b + column, Nr512, tile + column);

    /// <summary>
    /// Rows [0, <paramref name="rows"/>) (1 to 8) of <see cref="MultiplyTile"/>'s tile, at least its first
    /// <paramref name="lanes"/> columns: all 32, the first 24, 16 or 8, the rest of the tile untouched. The bits of the
    /// full tile without the rows and columns a caller does not need (a transposed panel of 4 positions against 19 output
    /// channels: 4 rows of 16 + 8 lanes). Needs AVX-512.
    /// </summary>
    internal static void MultiplyTilePart(int rows, int lanes, int k, float* a, float* b, float* tile)
    {
        if (lanes > 3 * Nr512 / 4)
        {
            if (rows < Mr512) Kernel512FirstRows(rows, k, a, b, Nr512, tile);
            else MultiplyTile(k, a, b, tile);
        }
        else if (lanes <= Nr512 / 4)
        {
            MultiplyTileEighth(k, a, b, tile, 0);
        }
        else if (lanes > Nr512 / 2 && rows < Mr512)
        {
            Kernel512FirstRows(rows, k, a, b, Nr512, tile, threeQuarters: true);
        }
        else
        {
            MultiplyTileNarrow(k, a, b, tile);
            if (lanes > Nr512 / 2) MultiplyTileEighth(k, a, b, tile, Nr512 / 2);
        }
    }

    /// <summary>
    /// One full 8 x 32 tile of C = A B (one packed A micro-panel, one B micro-panel of k rows), each value stored as
    /// act(value + bias[i] + residual[i * ldr + j]) in <see cref="ConvKernels.EpilogueVector(System.Runtime.Intrinsics.Vector512{float}, float, bool, System.Runtime.Intrinsics.Vector512{float}, bool, int)"/>'s order (kind 0: no
    /// activation, 1: ReLU, 2: Hardswish); bias and residual may be null. Needs AVX-512.
    /// </summary>
    internal static void MultiplyTileWithEpilogue(int k, float* a, float* b, float* c, int ldc, float* bias, float* residual, long ldr, int kind) =>
        MultiplyRowsWithEpilogue(k, a, b, Nr512, c, ldc, bias, residual, ldr, kind);

    /// <summary>
    /// <see cref="MultiplyTileWithEpilogue"/> with B's k rows of 32 floats read where they lie, <paramref name="ldb"/>
    /// floats apart, instead of from a micro-panel.
    /// </summary>
    internal static void MultiplyRowsWithEpilogue(int k, float* a, float* b, long ldb, float* c, int ldc, float* bias, float* residual, long ldr, int kind)
    {
        var kernel = new TileKernel(k, a, b, checked((int)ldb));
        RunWithEpilogue(ref kernel, c, ldc, bias, residual, ldr, kind);
    }

    /// <summary>
    /// C[0..m, 0..32) = A B for A packed by <see cref="PackRows"/> (m at most 8) and B's k rows of 32 floats read where
    /// they lie, <paramref name="ldb"/> floats apart: the sums <see cref="MultiplyPanel"/> computes on a micro-panel of
    /// the same rows. Needs AVX-512; <paramref name="tile"/> holds 8 x 32 floats for an edge tile.
    /// </summary>
    internal static void MultiplyRows(int m, int k, float* packedA, float* b, long ldb, float* c, int ldc, float* tile) =>
        MicroTile(KernelKind.Vector512, k, packedA, b, c, ldc, 1f, 0f, m, Nr512, tile, checked((int)ldb));

    /// <summary>Columns of the wide tiles (<see cref="MultiplyWideRows"/>, <see cref="MultiplyWideRowsWithEpilogue"/>).</summary>
    internal const int WideColumns = 48;

    /// <summary>
    /// Rows [0, <paramref name="rows"/>) (1 to 8) of an 8 x 48 tile of C = A B for one packed A micro-panel and B's k
    /// rows of 48 floats read where they lie, <paramref name="ldb"/> floats apart, stored with the epilogue as
    /// <see cref="MultiplyTileWithEpilogue"/> stores it: the sums of the 8 x 32 tiles, 48 columns at a time, without the
    /// rows an edge tile lacks. Needs AVX-512.
    /// </summary>
    internal static void MultiplyWideRowsWithEpilogue(int rows, int k, float* a, float* b, long ldb, float* c, int ldc, float* bias, float* residual,
        long ldr, int kind)
    {
        if (rows == Mr512)
        {
            // A full tile straight to its kernel: WithRows' dispatch took a 19 -> 38 1x1 over mel's 7 x 24 maps, sample by
            // sample as training runs it, from 118-133 to 161-217 µs (harness, two threads).
            var kernel = new WideRowsKernel<N8>(k, a, b, ldb);
            RunWithEpilogue(ref kernel, c, ldc, bias, residual, ldr, kind);
            return;
        }
        var action = new WideRows(k, a, b, ldb, c, ldc, bias, residual, ldr, kind);
        WithRows(CheckedTileRows(rows), ref action);
    }

    /// <summary>
    /// C[0..rows, 0..48) = A B (<paramref name="rows"/> 1 to 8) for one packed A micro-panel and B's k rows of 48 floats
    /// read where they lie, <paramref name="ldb"/> floats apart, stored plain: <see cref="MultiplyWideRowsWithEpilogue"/>'s
    /// sums. Needs AVX-512.
    /// </summary>
    internal static void MultiplyWideRows(int rows, int k, float* a, float* b, long ldb, float* c, int ldc)
    {
        if (rows == Mr512)
        {
            var store = new ScaledStore(c, ldc, 1f);
            Kernel512Wide<ScaledStore, N0>(k, a, b, ldb, 0, ref store);
            return;
        }
        var action = new WideRows(k, a, b, ldb, c, ldc, null, null, 0, -1);
        WithRows(CheckedTileRows(rows), ref action);
    }

    /// <summary>
    /// C[0..rows, 0..width) = A B for one packed A micro-panel (<paramref name="rows"/> 1 to 8) and B's k rows of
    /// <paramref name="width"/> (33 to 47) floats read where they lie, <paramref name="ldb"/> floats apart: the 8 x 48
    /// tile with its third vector of B loaded masked and stored masked (nothing past the rows' width read or written).
    /// Each value the same chain of multiply-adds as <see cref="MultiplyWideRows"/> makes (so the sums of the 8 x 32
    /// tiles). Needs AVX-512.
    /// </summary>
    internal static void MultiplyWideRowsMasked(int rows, int k, float* a, float* b, long ldb, int width, float* c, int ldc)
    {
        if (width is <= Nr512 or >= WideColumns)
            throw new ArgumentOutOfRangeException(nameof(width), width, $"A masked wide tile holds {Nr512 + 1} to {WideColumns - 1} columns.");
        var action = new WideRowsMasked(k, a, b, ldb, width - Nr512, c, ldc);
        WithRows(CheckedTileRows(rows), ref action);
    }

    /// <summary>One call of <see cref="MultiplyWideRowsMasked"/>.</summary>
    private readonly struct WideRowsMasked(int k, float* a, float* b, long ldb, int thirdLanes, float* c, int ldc) : IRowsAction
    {
        public void Run<TRows>() where TRows : struct, IConstant
        {
            var store = new MaskedThirdStore(c, ldc, thirdLanes);
            if (TRows.Value == Mr512) Kernel512Wide<MaskedThirdStore, N1>(k, a, b, ldb, thirdLanes, ref store);
            else Kernel512WideRows<TRows, MaskedThirdStore, N1>(k, a, b, ldb, thirdLanes, ref store);
        }
    }

    /// <summary>An 8 x 48 tile's rows stored plain, the third vector's first lanes only.</summary>
    private readonly struct MaskedThirdStore(float* c, int ldc, int thirdLanes) : IWideTileStore
    {
        private readonly Vector512<float> _third = ConvKernels.FirstLanes(thirdLanes);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Row(int i, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2)
        {
            float* r = c + (long)i * ldc;
            v0.Store(r);
            v1.Store(r + 16);
            Avx512F.MaskStore(r + 32, _third, v2);
        }
    }

    private static int CheckedTileRows(int rows) =>
        rows is >= 1 and <= Mr512 ? rows : throw new ArgumentOutOfRangeException(nameof(rows), rows, $"A tile holds 1 to {Mr512} rows.");

    /// <summary>One call of <see cref="MultiplyWideRowsWithEpilogue"/> (kind at least 0) or <see cref="MultiplyWideRows"/> (kind -1).</summary>
    private readonly struct WideRows(int k, float* a, float* b, long ldb, float* c, int ldc, float* bias, float* residual, long ldr, int kind)
        : IRowsAction
    {
        public void Run<TRows>() where TRows : struct, IConstant
        {
            var kernel = new WideRowsKernel<TRows>(k, a, b, ldb);
            if (kind >= 0)
            {
                RunWithEpilogue(ref kernel, c, ldc, bias, residual, ldr, kind);
                return;
            }
            var store = new ScaledStore(c, ldc, 1f);
            kernel.Run(ref store);
        }
    }

    /// <summary>
    /// C[0..m, 0..cols) = A B for A packed by <see cref="PackRows"/> and one B micro-panel (k rows of
    /// <see cref="PanelColumns"/> floats; columns past <paramref name="cols"/> are ignored). Needs AVX-512
    /// (<see cref="KernelKind.Vector512"/>); <paramref name="tile"/> holds 8 x 32 floats for the edge tiles.
    /// </summary>
    internal static void MultiplyPanel(int m, int k, float* packedA, float* panel, float* c, int ldc, int cols, float* tile)
    {
        for (int i = 0; i < m; i += Mr512)
        {
            MicroTile(KernelKind.Vector512, k, packedA + (long)i * k, panel, c + (long)i * ldc, ldc, 1f, 0f,
                Math.Min(Mr512, m - i), cols, tile, Nr512);
        }
    }

    /// <summary>
    /// <see cref="MultiplyPanel"/> at 256 bits (AVX2 and FMA, <see cref="Runs256"/>): C[0..m, 0..cols) = A B for A packed
    /// by <see cref="PackRows"/> and one 32-column B micro-panel, each 8 x 32 tile in quarters of 4 rows x 16 columns
    /// (<see cref="Kernel256Quarter"/>), quarters wholly past m or cols skipped. The same sums as
    /// <see cref="MultiplyPanel"/>.
    /// </summary>
    internal static void MultiplyPanel256(int m, int k, float* packedA, float* panel, float* c, int ldc, int cols) =>
        Quarters(m, k, packedA, panel, c, ldc, cols, firstDone: false);

    /// <summary>
    /// <see cref="MultiplyPanel256"/> for a "same" convolution's panel read straight from the input, as
    /// <see cref="MultiplyTileFilling"/> reads it: the first 4 rows' quarters (<see cref="Kernel256QuarterFilling"/>)
    /// write the panel's 16-column halves as they multiply them, and the other quarters multiply the panel. Row
    /// p = c * taps + t of B is the 32 floats at <paramref name="x"/> + c * <paramref name="channelStride"/> + offsets[t],
    /// zero outside the tap's 32 mask floats at <paramref name="masks"/> + 32 t. The same sums.
    /// </summary>
    internal static void MultiplyPanelFilling256(int m, int channels, int taps, float* packedA, float* x, long channelStride, long* offsets,
        float* masks, float* panel, float* c, int ldc, int cols)
    {
        for (int h = 0; h < cols; h += Nr512 / 2)
            Kernel256QuarterFilling(channels, taps, packedA, x + h, channelStride, offsets, masks + h, panel + h, c + h, ldc,
                Math.Min(Mr512 / 2, m), Math.Min(Nr512 / 2, cols - h));
        Quarters(m, channels * taps, packedA, panel, c, ldc, cols, firstDone: true);
    }

    /// <summary>
    /// <see cref="MultiplyTilePart"/> at 256 bits: rows [0, <paramref name="rows"/>) (1 to 8) and columns [0,
    /// <paramref name="lanes"/>) of the 8 x 32 tile of one A micro-panel and one B micro-panel, in quarters
    /// (<see cref="Kernel256Quarter"/>), the rest of the tile untouched. The full tile's bits.
    /// </summary>
    internal static void MultiplyTilePart256(int rows, int lanes, int k, float* a, float* b, float* tile) =>
        Quarters(rows, k, a, b, tile, Nr512, lanes, firstDone: false);

    /// <summary>The quarters of <see cref="MultiplyPanel256"/>, without the first 4 rows' when <paramref name="firstDone"/>.</summary>
    private static void Quarters(int m, int k, float* packedA, float* panel, float* c, int ldc, int cols, bool firstDone)
    {
        for (int i = 0; i < m; i += Mr512)
        {
            float* a = packedA + (long)i * k;
            int rows = Math.Min(Mr512, m - i);
            for (int r = i == 0 && firstDone ? Mr512 / 2 : 0; r < rows; r += Mr512 / 2)
                for (int h = 0; h < cols; h += Nr512 / 2)
                    Kernel256Quarter(k, a + r, panel + h, c + (long)(i + r) * ldc + h, ldc, Math.Min(Mr512 / 2, rows - r), Math.Min(Nr512 / 2, cols - h));
        }
    }

    /// <summary>
    /// An 8 x 32 tile of C = A B for a "same" convolution's B rows read straight from the input, written to
    /// <paramref name="panel"/> on the way (the B micro-panel the next tiles of the column block multiply): row
    /// p = c * taps + t of B is the 32 floats at <paramref name="x"/> + c * <paramref name="channelStride"/> + offsets[t],
    /// zero outside masks[2 t] (columns 0-15) and masks[2 t + 1] (16-31). The same multiply-adds in the same order as
    /// <see cref="Kernel512"/> on the filled panel, so the same sums; stored as <see cref="MultiplyTileStrided"/> does
    /// (<paramref name="kind"/> below 0), or with the epilogue as <see cref="MultiplyTileWithEpilogue"/> does. With
    /// <paramref name="readWhole"/> every row's 32 floats lie inside the input and are loaded whole, then masked with a
    /// bitwise and; otherwise masked-off lanes are not read at all. Needs AVX-512.
    /// </summary>
    internal static void MultiplyTileFilling(int channels, int taps, float* a, float* x, long channelStride, long* offsets,
        Vector512<float>* masks, bool readWhole, float* panel, float* c, int ldc, float* bias, float* residual, long ldr, int kind)
    {
        var source = new MaskedRows(x, channelStride, offsets, masks, panel);
        if (kind < 0)
        {
            var plain = new ScaledStore(c, ldc, 1f);
            if (readWhole) Kernel512Filling<ScaledStore, N8, WholeLoads>(channels, taps, a, source, ref plain);
            else Kernel512Filling<ScaledStore, N8, MaskedLoads>(channels, taps, a, source, ref plain);
            return;
        }
        var kernel = new FillingKernel(channels, taps, a, source, readWhole);
        RunWithEpilogue(ref kernel, c, ldc, bias, residual, ldr, kind);
    }

    /// <summary><see cref="Kernel512Filling{TStore, TRows, TLoad}"/>'s full 8-row tile, its loads whole or masked.</summary>
    private readonly struct FillingKernel(int channels, int taps, float* a, MaskedRows source, bool readWhole) : ITileKernel
    {
        public void Run<TStore>(ref TStore store) where TStore : struct, ITileStore, IWideTileStore
        {
            if (readWhole) Kernel512Filling<TStore, N8, WholeLoads>(channels, taps, a, source, ref store);
            else Kernel512Filling<TStore, N8, MaskedLoads>(channels, taps, a, source, ref store);
        }
    }

    /// <summary>
    /// The first <paramref name="rows"/> rows (fewer than 8) of <see cref="MultiplyTileFilling"/>'s tile, stored plain as
    /// <see cref="MultiplyPanel"/> stores an edge tile (without the micro-panel's zero rows);
    /// <paramref name="tile"/> holds 8 x 32 floats.
    /// </summary>
    internal static void MultiplyTileFillingRows(int rows, int channels, int taps, float* a, float* x, long channelStride, long* offsets,
        Vector512<float>* masks, bool readWhole, float* panel, float* c, int ldc, float* tile)
    {
        var source = new MaskedRows(x, channelStride, offsets, masks, panel);
        var store = new ScaledStore(tile, Nr512, 1f);
        switch (rows)
        {
            case 1: FillingRows<N1>(channels, taps, a, source, readWhole, ref store); break;
            case 2: FillingRows<N2>(channels, taps, a, source, readWhole, ref store); break;
            case 3: FillingRows<N3>(channels, taps, a, source, readWhole, ref store); break;
            case 4: FillingRows<N4>(channels, taps, a, source, readWhole, ref store); break;
            case 5: FillingRows<N5>(channels, taps, a, source, readWhole, ref store); break;
            case 6: FillingRows<N6>(channels, taps, a, source, readWhole, ref store); break;
            default: FillingRows<N7>(channels, taps, a, source, readWhole, ref store); break;
        }
        Merge(tile, Nr512, c, ldc, rows, Nr512, 1f, 0f);
    }

    private static void FillingRows<TRows>(int channels, int taps, float* a, MaskedRows source, bool readWhole, ref ScaledStore store)
        where TRows : struct, IConstant
    {
        if (readWhole) Kernel512Filling<ScaledStore, TRows, WholeLoads>(channels, taps, a, source, ref store);
        else Kernel512Filling<ScaledStore, TRows, MaskedLoads>(channels, taps, a, source, ref store);
    }

    /// <summary>Where <see cref="Kernel512Filling"/> reads its B rows and writes the panel.</summary>
    private readonly struct MaskedRows(float* x, long channelStride, long* offsets, Vector512<float>* masks, float* panel)
    {
        public readonly float* X = x, Panel = panel;
        public readonly long ChannelStride = channelStride;
        public readonly long* Offsets = offsets;
        public readonly Vector512<float>* Masks = masks;
    }

    /// <summary>How a B row's 16 lanes are read under their mask: both ways give +0 in the masked-off lanes.</summary>
    private interface IMaskedLoad { static abstract Vector512<float> Load(float* source, Vector512<float> mask); }

    /// <summary>The masked-off lanes are neither read nor faulted on (rows at the ends of the input).</summary>
    private struct MaskedLoads : IMaskedLoad
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(float* source, Vector512<float> mask) => Avx512F.MaskLoad(source, mask, Vector512<float>.Zero);
    }

    /// <summary>
    /// The 16 floats are read whole and the masked-off lanes cleared with a bitwise and (every read inside the input): a
    /// vector operation where the masked load needs the mask moved into a mask register first (C = K = 19 on 6 x 6 maps,
    /// 64 samples: 154 against 148 µs).
    /// </summary>
    private struct WholeLoads : IMaskedLoad
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(float* source, Vector512<float> mask) => Vector512.Load(source) & mask;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Kernel512Filling<TStore, TRows, TLoad>(int channels, int taps, float* a, MaskedRows source, ref TStore store)
        where TStore : struct, ITileStore where TRows : struct, IConstant where TLoad : struct, IMaskedLoad
    {
        int rows = TRows.Value;
        Vector512<float> c00 = default, c01 = default;
        Vector512<float> c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default;
        Vector512<float> c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default;
        Vector512<float> c70 = default, c71 = default;
        float* x = source.X, panel = source.Panel;
        long* offsets = source.Offsets;
        Vector512<float>* masks = source.Masks;
        for (int ch = 0; ch < channels; ch++, x += source.ChannelStride)
        {
            for (int t = 0; t < taps; t++, a += Mr512, panel += Nr512)
            {
                float* src = x + offsets[t];
                Vector512<float> b0 = TLoad.Load(src, masks[2 * t]);
                Vector512<float> b1 = TLoad.Load(src + 16, masks[2 * t + 1]);
                b0.Store(panel);
                b1.Store(panel + 16);
                Vector512<float> ai;
                ai = Vector512.Create(a[0]);
                c00 = Vector512.FusedMultiplyAdd(ai, b0, c00); c01 = Vector512.FusedMultiplyAdd(ai, b1, c01);
                if (rows > 1) { ai = Vector512.Create(a[1]); c10 = Vector512.FusedMultiplyAdd(ai, b0, c10); c11 = Vector512.FusedMultiplyAdd(ai, b1, c11); }
                if (rows > 2) { ai = Vector512.Create(a[2]); c20 = Vector512.FusedMultiplyAdd(ai, b0, c20); c21 = Vector512.FusedMultiplyAdd(ai, b1, c21); }
                if (rows > 3) { ai = Vector512.Create(a[3]); c30 = Vector512.FusedMultiplyAdd(ai, b0, c30); c31 = Vector512.FusedMultiplyAdd(ai, b1, c31); }
                if (rows > 4) { ai = Vector512.Create(a[4]); c40 = Vector512.FusedMultiplyAdd(ai, b0, c40); c41 = Vector512.FusedMultiplyAdd(ai, b1, c41); }
                if (rows > 5) { ai = Vector512.Create(a[5]); c50 = Vector512.FusedMultiplyAdd(ai, b0, c50); c51 = Vector512.FusedMultiplyAdd(ai, b1, c51); }
                if (rows > 6) { ai = Vector512.Create(a[6]); c60 = Vector512.FusedMultiplyAdd(ai, b0, c60); c61 = Vector512.FusedMultiplyAdd(ai, b1, c61); }
                if (rows > 7) { ai = Vector512.Create(a[7]); c70 = Vector512.FusedMultiplyAdd(ai, b0, c70); c71 = Vector512.FusedMultiplyAdd(ai, b1, c71); }
            }
        }
        store.Row(0, c00, c01);
        if (rows > 1) store.Row(1, c10, c11);
        if (rows > 2) store.Row(2, c20, c21);
        if (rows > 3) store.Row(3, c30, c31);
        if (rows > 4) store.Row(4, c40, c41);
        if (rows > 5) store.Row(5, c50, c51);
        if (rows > 6) store.Row(6, c60, c61);
        if (rows > 7) store.Row(7, c70, c71);
    }
}
