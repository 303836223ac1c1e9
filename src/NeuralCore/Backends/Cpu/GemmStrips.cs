using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NeuralCore.Backends.Cpu;

// Strips: up to 24 output channels of a "same" convolution for 16 output columns in one pass, each input row read where
// it lies and used by every channel of the strip, with no B panel in between (ImplicitGemmConv.RunStrips).
public static unsafe partial class Gemm
{
    /// <summary>Most output channels one strip holds: one accumulator register each, of 32.</summary>
    internal const int MaxStripRows = 24;

    /// <summary>Most output channels a strip of 32 columns holds: two accumulators each, 24 of the 32 registers.</summary>
    internal const int MaxPairRows = 12;

    /// <summary>Most output channels a 3x3 strip holds: its nine taps' masks stay in registers beside the accumulators.</summary>
    internal const int MaxStrip3x3Rows = 22;

    /// <summary>
    /// Where a strip reads its input: B row c * taps + t (input channel c, tap t) is the 16 floats at
    /// <see cref="X"/> + c * <see cref="ChannelStride"/> + <see cref="Offsets"/>[t], zero outside
    /// <see cref="Masks"/>[2 t] (the caller passes the masks of the panel's lanes 0-15 or 16-31); for a 3x3
    /// <see cref="Width"/> is the input's row length, which the offsets of its taps follow.
    /// </summary>
    internal readonly struct StripInput(float* x, long channelStride, int channels, int taps, long* offsets, Vector512<float>* masks, int width)
    {
        public readonly float* X = x;
        public readonly long ChannelStride = channelStride;
        public readonly int Channels = channels, Taps = taps, Width = width;
        public readonly long* Offsets = offsets;
        public readonly Vector512<float>* Masks = masks;
    }

    /// <summary>What becomes of a strip's sums: row i (the strip's output channel i) is handed over as it is finished.</summary>
    internal interface IStripRows
    {
        void Row(int i, Vector512<float> sum);
    }

    /// <summary>
    /// Where a strip's rows go: row i (output channel i of the strip) is stored at <paramref name="y"/> + i *
    /// <paramref name="ldc"/> as act(sum + bias[i] + residual[i * ldr + j])
    /// (<see cref="ConvKernels.EpilogueVector(Vector512{float}, float, bool, Vector512{float}, bool, int)"/>: kind 0 no
    /// activation, 1 ReLU, 2 Hardswish; bias and residual may be null), its first <paramref name="lanes"/> lanes only.
    /// The strip's store is <see cref="StripStore{TKind, TBias, TResidual}"/> for these steps.
    /// </summary>
    internal readonly struct StripOutput(float* y, int ldc, float* bias, float* residual, long ldr, int kind, int lanes)
    {
        public readonly float* Y = y, Bias = bias, Residual = residual;
        public readonly int Ldc = ldc, Kind = kind, Lanes = lanes;
        public readonly long Ldr = ldr;
    }

    /// <summary>
    /// <see cref="StripOutput"/>'s rows with the epilogue's steps as types (<see cref="WithEpilogue"/>), so that the
    /// compiled store tests none of them per row: the same operations in the same order.
    /// </summary>
    private readonly struct StripStore<TKind, TBias, TResidual>(in StripOutput output) : IStripRows
        where TKind : struct, IConstant where TBias : struct, IConstant where TResidual : struct, IConstant
    {
        private readonly StripOutput _output = output;
        private readonly Vector512<float> _keep = ConvKernels.FirstLanes(output.Lanes);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Row(int i, Vector512<float> sum)
        {
            bool whole = _output.Lanes == 16;
            var bias = TBias.Value != 0 ? Vector512.Create(_output.Bias[i]) : default;
            float* res = TResidual.Value != 0 ? _output.Residual + i * _output.Ldr : null;
            var r = TResidual.Value == 0 ? default : whole ? Vector512.Load(res) : Avx512F.MaskLoad(res, _keep, Vector512<float>.Zero);
            var value = Epilogue<TKind, TBias, TResidual>(sum, bias, r);
            float* y = _output.Y + (long)i * _output.Ldc;
            if (whole) value.Store(y);
            else Avx512F.MaskStore(y, _keep, value);
        }
    }

    /// <summary>Work specialised by a strip's row count, which <see cref="WithRows"/> passes as a type.</summary>
    internal interface IRowsAction
    {
        void Run<TRows>() where TRows : struct, IConstant;
    }

    /// <summary>
    /// <paramref name="action"/>'s Run with <paramref name="rows"/> (1 to <see cref="MaxStripRows"/>) as a type: one
    /// specialisation per row count, so that a strip does no multiply-adds for the rows it lacks.
    /// </summary>
    internal static void WithRows<TAction>(int rows, ref TAction action) where TAction : struct, IRowsAction
    {
        switch (rows)
        {
            case 1: action.Run<N1>(); break;
            case 2: action.Run<N2>(); break;
            case 3: action.Run<N3>(); break;
            case 4: action.Run<N4>(); break;
            case 5: action.Run<N5>(); break;
            case 6: action.Run<N6>(); break;
            case 7: action.Run<N7>(); break;
            case 8: action.Run<N8>(); break;
            case 9: action.Run<N9>(); break;
            case 10: action.Run<N10>(); break;
            case 11: action.Run<N11>(); break;
            case 12: action.Run<N12>(); break;
            case 13: action.Run<N13>(); break;
            case 14: action.Run<N14>(); break;
            case 15: action.Run<N15>(); break;
            case 16: action.Run<N16>(); break;
            case 17: action.Run<N17>(); break;
            case 18: action.Run<N18>(); break;
            case 19: action.Run<N19>(); break;
            case 20: action.Run<N20>(); break;
            case 21: action.Run<N21>(); break;
            case 22: action.Run<N22>(); break;
            case 23: action.Run<N23>(); break;
            case 24: action.Run<N24>(); break;
            default: throw new ArgumentOutOfRangeException(nameof(rows), rows, $"A strip holds 1 to {MaxStripRows} output channels.");
        }
    }

    /// <summary>One strip of <see cref="MultiplyStrip"/> or <see cref="MultiplyStrip3x3"/> (<paramref name="unrolled"/>).</summary>
    private readonly struct StripCall(float* w, StripInput input, bool readWhole, StripOutput output, bool unrolled) : IRowsAction
    {
        public void Run<TRows>() where TRows : struct, IConstant
        {
            var call = new StripEpilogueCall<TRows>(w, input, readWhole, output, unrolled);
            WithEpilogue(output.Kind, output.Bias != null, output.Residual != null, ref call);
        }
    }

    /// <summary><see cref="StripCall"/> for a row count, run with the store of its epilogue's steps.</summary>
    private readonly struct StripEpilogueCall<TRows>(float* w, StripInput input, bool readWhole, StripOutput output, bool unrolled) : IEpilogueAction
        where TRows : struct, IConstant
    {
        public void Run<TKind, TBias, TResidual>() where TKind : struct, IConstant where TBias : struct, IConstant where TResidual : struct, IConstant
        {
            var store = new StripStore<TKind, TBias, TResidual>(output);
            if (unrolled && readWhole) Strip3x3Kernel<TRows, WholeLoads, StripStore<TKind, TBias, TResidual>>(w, input, store);
            else if (unrolled) Strip3x3Kernel<TRows, MaskedLoads, StripStore<TKind, TBias, TResidual>>(w, input, store);
            else if (readWhole) StripKernel<TRows, WholeLoads, StripStore<TKind, TBias, TResidual>>(w, input, store);
            else StripKernel<TRows, MaskedLoads, StripStore<TKind, TBias, TResidual>>(w, input, store);
        }
    }

    /// <summary>
    /// <paramref name="rows"/> (1 to <see cref="MaxStripRows"/>) output channels for 16 columns: the sum over input
    /// channels c and taps t, in that order, of w[(c * taps + t) * 32 + i] (one B micro-panel of the transposed weights)
    /// times B row c * taps + t (<see cref="StripInput"/>), one fused multiply-add per row and channel, as
    /// <see cref="Kernel512"/> sums a tile of the packed panel: the same bits. With <paramref name="readWhole"/> every
    /// row's 16 floats lie inside the input and are loaded whole, then masked with a bitwise and. Needs AVX-512.
    /// </summary>
    internal static void MultiplyStrip(int rows, float* w, in StripInput input, bool readWhole, in StripOutput output)
    {
        var call = new StripCall(w, input, readWhole, output, unrolled: false);
        WithRows(rows, ref call);
    }

    /// <summary>
    /// <see cref="MultiplyStrip"/> for a 3x3 kernel whose nine taps are all kept, at offsets (r - 1) * width + s - 1:
    /// the taps unrolled, their masks and row pointers in registers. At most <see cref="MaxStrip3x3Rows"/> rows.
    /// </summary>
    internal static void MultiplyStrip3x3(int rows, float* w, in StripInput input, bool readWhole, in StripOutput output)
    {
        if ((uint)(rows - 1) >= MaxStrip3x3Rows)
            throw new ArgumentOutOfRangeException(nameof(rows), rows, $"A 3x3 strip holds 1 to {MaxStrip3x3Rows} output channels.");
        var call = new StripCall(w, input, readWhole, output, unrolled: true);
        WithRows(rows, ref call);
    }

    /// <summary>
    /// For each of <paramref name="points"/> matrix products, point p: m_p = u_p v_p for <paramref name="rows"/> (1 to
    /// <see cref="MaxStripRows"/>) rows and 16 columns, u_p [rows, depth] stored transposed as [depth][<see cref="MaxStripRows"/>]
    /// at <paramref name="u"/> + p * <paramref name="uPoint"/>, v_p [depth, 16] with rows <paramref name="ldv"/> apart at
    /// <paramref name="v"/> + p * <paramref name="vPoint"/>, m_p's rows <paramref name="ldm"/> apart at
    /// <paramref name="m"/> + p * <paramref name="mPoint"/>. Each sum runs over depth in order, one fused multiply-add a
    /// term, as <see cref="Kernel512"/> sums a tile: the same bits. (Winograd's point-wise products: every output channel
    /// of a point for 16 tiles in one pass.) Needs AVX-512.
    /// </summary>
    internal static void MultiplyPointStrips(int rows, int points, int depth, float* u, long uPoint, float* v, long vPoint, long ldv,
        float* m, long mPoint, long ldm)
    {
        var product = new PointProduct(points, depth, u, uPoint, v, vPoint, ldv, m, mPoint, ldm);
        WithRows(rows, ref product);
    }

    private readonly struct PointProduct(int points, int depth, float* u, long uPoint, float* v, long vPoint, long ldv, float* m, long mPoint, long ldm)
        : IRowsAction
    {
        public void Run<TRows>() where TRows : struct, IConstant => PointStrips<TRows>(this);

        public readonly int Points = points, Depth = depth;
        public readonly float* U = u, V = v, M = m;
        public readonly long UPoint = uPoint, VPoint = vPoint, Ldv = ldv, MPoint = mPoint, Ldm = ldm;
    }

    /// <summary>
    /// <see cref="MultiplyPointStrips"/> for 32 columns: m_p = u_p v_p for <paramref name="rows"/> (1 to
    /// <see cref="MaxStripRows"/>) rows, v_p's two vectors of columns at <paramref name="v"/> + p * <paramref name="vPoint"/>
    /// and 16 floats on, m_p's rows likewise. Point by point, the rows come in near-equal strips of at most
    /// <see cref="MaxPairRows"/> (19 = 10 + 9), each holding two accumulators per row, so that one broadcast of a weight
    /// feeds two multiply-adds and a strip's depth step loads two V vectors and a weight per row (16 columns at a time
    /// load one V vector and a weight per row for half the products). Each sum runs over depth in order, one fused
    /// multiply-add a term: the same bits as <see cref="MultiplyPointStrips"/> and <see cref="Kernel512"/>. Needs AVX-512.
    /// </summary>
    internal static void MultiplyPointStripPairs(int rows, int points, int depth, float* u, long uPoint, float* v, long vPoint, long ldv,
        float* m, long mPoint, long ldm)
    {
        if ((uint)(rows - 1) >= MaxStripRows)
            throw new ArgumentOutOfRangeException(nameof(rows), rows, $"Point strips hold 1 to {MaxStripRows} output channels.");
        int strips = (rows + MaxPairRows - 1) / MaxPairRows;
        // Point-major: the second strip reads the point's V rows from L1 (the panel's 25 points of 19 rows, 60 KiB, do not
        // stay there; strip-major took 1.00-1.05x as long).
        for (int point = 0; point < points; point++)
            for (int strip = 0; strip < strips; strip++)
            {
                int first = rows * strip / strips, end = rows * (strip + 1) / strips;
                var pair = new PointPair(depth, u + point * uPoint + first, v + point * vPoint, ldv, m + point * mPoint + first * ldm, ldm);
                WithRows(end - first, ref pair);
            }
    }

    /// <summary>One strip of <see cref="MultiplyPointStripPairs"/>: rows [0, TRows) of u, v's 32 columns, into m.</summary>
    private readonly struct PointPair(int depth, float* u, float* v, long ldv, float* m, long ldm) : IRowsAction
    {
        public void Run<TRows>() where TRows : struct, IConstant => PointStripPair<TRows>(depth, u, v, ldv, m, ldm);
    }

    /// <summary>One point's strip of at most <see cref="MaxPairRows"/> rows for 32 columns; not inlined, so that its 24 accumulators get the registers to themselves.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void PointStripPair<TRows>(int depth, float* u, float* v, long ldv, float* m, long ldm) where TRows : struct, IConstant
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        Vector512<float> c6 = default, c7 = default, c8 = default, c9 = default, c10 = default, c11 = default;
        Vector512<float> d0 = default, d1 = default, d2 = default, d3 = default, d4 = default, d5 = default;
        Vector512<float> d6 = default, d7 = default, d8 = default, d9 = default, d10 = default, d11 = default;
        for (int d = 0; d < depth; d++, v += ldv, u += MaxStripRows)
            AccumulatePair<TRows>(Vector512.Load(v), Vector512.Load(v + 16), u,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                ref d0, ref d1, ref d2, ref d3, ref d4, ref d5, ref d6, ref d7, ref d8, ref d9, ref d10, ref d11);
        var low = new ProductRows(m, ldm);
        var high = new ProductRows(m + 16, ldm);
        Store<TRows, ProductRows>(ref low, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11,
            default, default, default, default, default, default, default, default, default, default, default, default);
        Store<TRows, ProductRows>(ref high, d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11,
            default, default, default, default, default, default, default, default, default, default, default, default);
    }

    /// <summary>c_i += w[i] * b0 and d_i += w[i] * b1 for the strip's rows i (at most <see cref="MaxPairRows"/>), each weight broadcast once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AccumulatePair<TRows>(Vector512<float> b0, Vector512<float> b1, float* w,
        ref Vector512<float> c0, ref Vector512<float> c1, ref Vector512<float> c2, ref Vector512<float> c3, ref Vector512<float> c4, ref Vector512<float> c5,
        ref Vector512<float> c6, ref Vector512<float> c7, ref Vector512<float> c8, ref Vector512<float> c9, ref Vector512<float> c10, ref Vector512<float> c11,
        ref Vector512<float> d0, ref Vector512<float> d1, ref Vector512<float> d2, ref Vector512<float> d3, ref Vector512<float> d4, ref Vector512<float> d5,
        ref Vector512<float> d6, ref Vector512<float> d7, ref Vector512<float> d8, ref Vector512<float> d9, ref Vector512<float> d10, ref Vector512<float> d11)
        where TRows : struct, IConstant
    {
        int rows = TRows.Value;
        Debug.Assert(rows <= MaxPairRows);
        if (rows > 0) { var w0 = Vector512.Create(w[0]); c0 = Vector512.FusedMultiplyAdd(w0, b0, c0); d0 = Vector512.FusedMultiplyAdd(w0, b1, d0); }
        if (rows > 1) { var w1 = Vector512.Create(w[1]); c1 = Vector512.FusedMultiplyAdd(w1, b0, c1); d1 = Vector512.FusedMultiplyAdd(w1, b1, d1); }
        if (rows > 2) { var w2 = Vector512.Create(w[2]); c2 = Vector512.FusedMultiplyAdd(w2, b0, c2); d2 = Vector512.FusedMultiplyAdd(w2, b1, d2); }
        if (rows > 3) { var w3 = Vector512.Create(w[3]); c3 = Vector512.FusedMultiplyAdd(w3, b0, c3); d3 = Vector512.FusedMultiplyAdd(w3, b1, d3); }
        if (rows > 4) { var w4 = Vector512.Create(w[4]); c4 = Vector512.FusedMultiplyAdd(w4, b0, c4); d4 = Vector512.FusedMultiplyAdd(w4, b1, d4); }
        if (rows > 5) { var w5 = Vector512.Create(w[5]); c5 = Vector512.FusedMultiplyAdd(w5, b0, c5); d5 = Vector512.FusedMultiplyAdd(w5, b1, d5); }
        if (rows > 6) { var w6 = Vector512.Create(w[6]); c6 = Vector512.FusedMultiplyAdd(w6, b0, c6); d6 = Vector512.FusedMultiplyAdd(w6, b1, d6); }
        if (rows > 7) { var w7 = Vector512.Create(w[7]); c7 = Vector512.FusedMultiplyAdd(w7, b0, c7); d7 = Vector512.FusedMultiplyAdd(w7, b1, d7); }
        if (rows > 8) { var w8 = Vector512.Create(w[8]); c8 = Vector512.FusedMultiplyAdd(w8, b0, c8); d8 = Vector512.FusedMultiplyAdd(w8, b1, d8); }
        if (rows > 9) { var w9 = Vector512.Create(w[9]); c9 = Vector512.FusedMultiplyAdd(w9, b0, c9); d9 = Vector512.FusedMultiplyAdd(w9, b1, d9); }
        if (rows > 10) { var w10 = Vector512.Create(w[10]); c10 = Vector512.FusedMultiplyAdd(w10, b0, c10); d10 = Vector512.FusedMultiplyAdd(w10, b1, d10); }
        if (rows > 11) { var w11 = Vector512.Create(w[11]); c11 = Vector512.FusedMultiplyAdd(w11, b0, c11); d11 = Vector512.FusedMultiplyAdd(w11, b1, d11); }
    }

    /// <summary>A product's rows stored whole, <paramref name="ldm"/> floats apart.</summary>
    private readonly struct ProductRows(float* m, long ldm) : IStripRows
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Row(int i, Vector512<float> sum) => sum.Store(m + i * ldm);
    }

    private static void PointStrips<TRows>(PointProduct product) where TRows : struct, IConstant
    {
        for (int point = 0; point < product.Points; point++)
        {
            var rows = new ProductRows(product.M + point * product.MPoint, product.Ldm);
            PointStrip<TRows>(product.Depth, product.U + point * product.UPoint, product.V + point * product.VPoint, product.Ldv, ref rows);
        }
    }

    /// <summary>One point's strip; not inlined, so that its 24 accumulators get the registers to themselves.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void PointStrip<TRows>(int depth, float* u, float* v, long ldv, ref ProductRows output) where TRows : struct, IConstant
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        Vector512<float> c8 = default, c9 = default, c10 = default, c11 = default, c12 = default, c13 = default, c14 = default, c15 = default;
        Vector512<float> c16 = default, c17 = default, c18 = default, c19 = default, c20 = default, c21 = default, c22 = default, c23 = default;
        for (int d = 0; d < depth; d++, v += ldv, u += MaxStripRows)
            Accumulate<TRows>(Vector512.Load(v), u,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                ref c12, ref c13, ref c14, ref c15, ref c16, ref c17, ref c18, ref c19, ref c20, ref c21, ref c22, ref c23);
        Store<TRows, ProductRows>(ref output,
            c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, c20, c21, c22, c23);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void StripKernel<TRows, TLoad, TOutput>(float* w, StripInput input, TOutput output)
        where TRows : struct, IConstant where TLoad : struct, IMaskedLoad where TOutput : struct, IStripRows
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        Vector512<float> c8 = default, c9 = default, c10 = default, c11 = default, c12 = default, c13 = default, c14 = default, c15 = default;
        Vector512<float> c16 = default, c17 = default, c18 = default, c19 = default, c20 = default, c21 = default, c22 = default, c23 = default;
        float* x = input.X;
        long* offsets = input.Offsets;
        Vector512<float>* masks = input.Masks;
        int taps = input.Taps;
        for (int ch = 0; ch < input.Channels; ch++, x += input.ChannelStride)
        {
            for (int t = 0; t < taps; t++, w += Nr512)
            {
                Accumulate<TRows>(TLoad.Load(x + offsets[t], masks[2 * t]), w,
                    ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                    ref c12, ref c13, ref c14, ref c15, ref c16, ref c17, ref c18, ref c19, ref c20, ref c21, ref c22, ref c23);
            }
        }
        Store<TRows, TOutput>(ref output,
            c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, c20, c21, c22, c23);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Strip3x3Kernel<TRows, TLoad, TOutput>(float* w, StripInput input, TOutput output)
        where TRows : struct, IConstant where TLoad : struct, IMaskedLoad where TOutput : struct, IStripRows
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        Vector512<float> c8 = default, c9 = default, c10 = default, c11 = default, c12 = default, c13 = default, c14 = default, c15 = default;
        Vector512<float> c16 = default, c17 = default, c18 = default, c19 = default, c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float>* masks = input.Masks;
        Vector512<float> m0 = masks[0], m1 = masks[2], m2 = masks[4], m3 = masks[6], m4 = masks[8];
        Vector512<float> m5 = masks[10], m6 = masks[12], m7 = masks[14], m8 = masks[16];
        float* x = input.X;
        int width = input.Width;
        for (int ch = 0; ch < input.Channels; ch++, x += input.ChannelStride, w += 9 * Nr512)
        {
            float* xm = x - width, xp = x + width;
            Accumulate<TRows>(TLoad.Load(xm - 1, m0), w,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                ref c12, ref c13, ref c14, ref c15, ref c16, ref c17, ref c18, ref c19, ref c20, ref c21, ref c22, ref c23);
            Accumulate<TRows>(TLoad.Load(xm, m1), w + 32,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                ref c12, ref c13, ref c14, ref c15, ref c16, ref c17, ref c18, ref c19, ref c20, ref c21, ref c22, ref c23);
            Accumulate<TRows>(TLoad.Load(xm + 1, m2), w + 64,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                ref c12, ref c13, ref c14, ref c15, ref c16, ref c17, ref c18, ref c19, ref c20, ref c21, ref c22, ref c23);
            Accumulate<TRows>(TLoad.Load(x - 1, m3), w + 96,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                ref c12, ref c13, ref c14, ref c15, ref c16, ref c17, ref c18, ref c19, ref c20, ref c21, ref c22, ref c23);
            Accumulate<TRows>(TLoad.Load(x, m4), w + 128,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                ref c12, ref c13, ref c14, ref c15, ref c16, ref c17, ref c18, ref c19, ref c20, ref c21, ref c22, ref c23);
            Accumulate<TRows>(TLoad.Load(x + 1, m5), w + 160,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                ref c12, ref c13, ref c14, ref c15, ref c16, ref c17, ref c18, ref c19, ref c20, ref c21, ref c22, ref c23);
            Accumulate<TRows>(TLoad.Load(xp - 1, m6), w + 192,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                ref c12, ref c13, ref c14, ref c15, ref c16, ref c17, ref c18, ref c19, ref c20, ref c21, ref c22, ref c23);
            Accumulate<TRows>(TLoad.Load(xp, m7), w + 224,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                ref c12, ref c13, ref c14, ref c15, ref c16, ref c17, ref c18, ref c19, ref c20, ref c21, ref c22, ref c23);
            Accumulate<TRows>(TLoad.Load(xp + 1, m8), w + 256,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref c10, ref c11,
                ref c12, ref c13, ref c14, ref c15, ref c16, ref c17, ref c18, ref c19, ref c20, ref c21, ref c22, ref c23);
        }
        Store<TRows, TOutput>(ref output,
            c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, c20, c21, c22, c23);
    }

    /// <summary>c_i += w[i] * b for the strip's rows i.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Accumulate<TRows>(Vector512<float> b, float* w,
        ref Vector512<float> c0, ref Vector512<float> c1, ref Vector512<float> c2, ref Vector512<float> c3,
        ref Vector512<float> c4, ref Vector512<float> c5, ref Vector512<float> c6, ref Vector512<float> c7,
        ref Vector512<float> c8, ref Vector512<float> c9, ref Vector512<float> c10, ref Vector512<float> c11,
        ref Vector512<float> c12, ref Vector512<float> c13, ref Vector512<float> c14, ref Vector512<float> c15,
        ref Vector512<float> c16, ref Vector512<float> c17, ref Vector512<float> c18, ref Vector512<float> c19,
        ref Vector512<float> c20, ref Vector512<float> c21, ref Vector512<float> c22, ref Vector512<float> c23)
        where TRows : struct, IConstant
    {
        int rows = TRows.Value;
        c0 = Vector512.FusedMultiplyAdd(Vector512.Create(w[0]), b, c0);
        if (rows > 1) c1 = Vector512.FusedMultiplyAdd(Vector512.Create(w[1]), b, c1);
        if (rows > 2) c2 = Vector512.FusedMultiplyAdd(Vector512.Create(w[2]), b, c2);
        if (rows > 3) c3 = Vector512.FusedMultiplyAdd(Vector512.Create(w[3]), b, c3);
        if (rows > 4) c4 = Vector512.FusedMultiplyAdd(Vector512.Create(w[4]), b, c4);
        if (rows > 5) c5 = Vector512.FusedMultiplyAdd(Vector512.Create(w[5]), b, c5);
        if (rows > 6) c6 = Vector512.FusedMultiplyAdd(Vector512.Create(w[6]), b, c6);
        if (rows > 7) c7 = Vector512.FusedMultiplyAdd(Vector512.Create(w[7]), b, c7);
        if (rows > 8) c8 = Vector512.FusedMultiplyAdd(Vector512.Create(w[8]), b, c8);
        if (rows > 9) c9 = Vector512.FusedMultiplyAdd(Vector512.Create(w[9]), b, c9);
        if (rows > 10) c10 = Vector512.FusedMultiplyAdd(Vector512.Create(w[10]), b, c10);
        if (rows > 11) c11 = Vector512.FusedMultiplyAdd(Vector512.Create(w[11]), b, c11);
        if (rows > 12) c12 = Vector512.FusedMultiplyAdd(Vector512.Create(w[12]), b, c12);
        if (rows > 13) c13 = Vector512.FusedMultiplyAdd(Vector512.Create(w[13]), b, c13);
        if (rows > 14) c14 = Vector512.FusedMultiplyAdd(Vector512.Create(w[14]), b, c14);
        if (rows > 15) c15 = Vector512.FusedMultiplyAdd(Vector512.Create(w[15]), b, c15);
        if (rows > 16) c16 = Vector512.FusedMultiplyAdd(Vector512.Create(w[16]), b, c16);
        if (rows > 17) c17 = Vector512.FusedMultiplyAdd(Vector512.Create(w[17]), b, c17);
        if (rows > 18) c18 = Vector512.FusedMultiplyAdd(Vector512.Create(w[18]), b, c18);
        if (rows > 19) c19 = Vector512.FusedMultiplyAdd(Vector512.Create(w[19]), b, c19);
        if (rows > 20) c20 = Vector512.FusedMultiplyAdd(Vector512.Create(w[20]), b, c20);
        if (rows > 21) c21 = Vector512.FusedMultiplyAdd(Vector512.Create(w[21]), b, c21);
        if (rows > 22) c22 = Vector512.FusedMultiplyAdd(Vector512.Create(w[22]), b, c22);
        if (rows > 23) c23 = Vector512.FusedMultiplyAdd(Vector512.Create(w[23]), b, c23);
    }

    /// <summary>The strip's rows, each through <paramref name="output"/>'s <see cref="IStripRows.Row"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Store<TRows, TOutput>(ref TOutput output,
        Vector512<float> c0, Vector512<float> c1, Vector512<float> c2, Vector512<float> c3, Vector512<float> c4, Vector512<float> c5,
        Vector512<float> c6, Vector512<float> c7, Vector512<float> c8, Vector512<float> c9, Vector512<float> c10, Vector512<float> c11,
        Vector512<float> c12, Vector512<float> c13, Vector512<float> c14, Vector512<float> c15, Vector512<float> c16, Vector512<float> c17,
        Vector512<float> c18, Vector512<float> c19, Vector512<float> c20, Vector512<float> c21, Vector512<float> c22, Vector512<float> c23)
        where TRows : struct, IConstant where TOutput : struct, IStripRows
    {
        int rows = TRows.Value;
        output.Row(0, c0);
        if (rows > 1) output.Row(1, c1);
        if (rows > 2) output.Row(2, c2);
        if (rows > 3) output.Row(3, c3);
        if (rows > 4) output.Row(4, c4);
        if (rows > 5) output.Row(5, c5);
        if (rows > 6) output.Row(6, c6);
        if (rows > 7) output.Row(7, c7);
        if (rows > 8) output.Row(8, c8);
        if (rows > 9) output.Row(9, c9);
        if (rows > 10) output.Row(10, c10);
        if (rows > 11) output.Row(11, c11);
        if (rows > 12) output.Row(12, c12);
        if (rows > 13) output.Row(13, c13);
        if (rows > 14) output.Row(14, c14);
        if (rows > 15) output.Row(15, c15);
        if (rows > 16) output.Row(16, c16);
        if (rows > 17) output.Row(17, c17);
        if (rows > 18) output.Row(18, c18);
        if (rows > 19) output.Row(19, c19);
        if (rows > 20) output.Row(20, c20);
        if (rows > 21) output.Row(21, c21);
        if (rows > 22) output.Row(22, c22);
        if (rows > 23) output.Row(23, c23);
    }
}
