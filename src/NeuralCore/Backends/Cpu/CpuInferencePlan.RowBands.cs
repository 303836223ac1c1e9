using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NeuralCore.Backends.Cpu;

public sealed unsafe partial class CpuInferencePlan
{
    /// <summary>Whether compiled plans run a batch-1 stem block in row bands (<see cref="RowBandStep"/>; tests turn it off to compare).</summary>
    internal static bool RowBandsEnabled { get; set; } = true;

    // At most this many bands (threads) per map: the size of the parts' fixed arrays of band starts.
    private const int MaxBands = 8;

    // Floats between one band's rows and the next band's: the hardware prefetchers run up to about 1 KiB past the end of
    // a thread's rows (ThreadLayoutBenchmarks: 512 B did not suffice).
    private const int BandGap = 256;

    /// <summary>
    /// Where a map of one sample split into bands of rows keeps each band: per channel, band after band, each band as
    /// [halo row, its rows, halo row] followed by <see cref="BandGap"/> floats, so no thread's rows lie within 1 KiB of
    /// another's. Band b holds rows [Row0[b], Row0[b + 1]); its halo rows hold the rows just outside it (zeros at the
    /// map's edges), which a 3x3 convolution on the band reads.
    /// </summary>
    private sealed class RowBandLayout
    {
        public int Bands, Rows, Width;
        public int[] Row0 = [];
        // Floats from a channel's start to band b's first row.
        public long[] Start = [];
        public long ChannelStride;

        /// <summary>
        /// <paramref name="bands"/> bands of <paramref name="rows"/> rows of <paramref name="width"/> columns, each
        /// starting on a row that is a multiple of 4 (so that 2 x 2 Winograd tiles and 2 x 1 pooling windows never straddle
        /// two bands, on this map or on its 2 x 1 pooled one: <see cref="Halved"/>) and at least two rows high; null if the
        /// map is too short for that.
        /// </summary>
        public static RowBandLayout? Split(int rows, int width, int bands)
        {
            var row0 = new int[bands + 1];
            for (int b = 0; b <= bands; b++) row0[b] = b == bands ? rows : (int)((2L * b * rows / bands + 4) / 8 * 4);
            return Of(row0, width);
        }

        /// <summary>The same bands on the map a 2 x 1 max pool of stride 2 x 1 (floor mode) makes of this one, or null.</summary>
        public RowBandLayout? Halved() => Of([.. Row0.Select((r, b) => b == Bands ? Rows / 2 : r / 2)], Width);

        private static RowBandLayout? Of(int[] row0, int width)
        {
            int bands = row0.Length - 1;
            for (int b = 0; b < bands; b++)
                if (row0[b + 1] - row0[b] < 2 || row0[b] % 2 != 0) return null;
            var layout = new RowBandLayout { Bands = bands, Rows = row0[bands], Width = width, Row0 = row0, Start = new long[bands] };
            long at = 0;
            for (int b = 0; b < bands; b++)
            {
                layout.Start[b] = at + width;
                at += (long)(row0[b + 1] - row0[b] + 2) * width + BandGap;
            }
            layout.ChannelStride = at;
            return layout;
        }
    }

    /// <summary>A step that runs several convolutions in one call (one wake-up, one wait) and profiles each as its own line.</summary>
    private abstract class MemberRunStep : Step
    {
        public ConvStep[] Members = [];

        public override void Run(float** values) => Run(values, []);

        /// <summary>Runs the members; with <paramref name="memberTimes"/>, adds each member's milliseconds to its entry.</summary>
        public abstract void Run(float** values, Span<double> memberTimes);
    }

    /// <summary>
    /// A single sample's stem block, and the block after it when it has one, run with each thread on its own band of rows
    /// (<see cref="RowBandLayout"/>) from the first step to the last. The stem block: the direct stem (with its pool),
    /// the 3x3 convolution after it (Winograd F(2x2, 3x3)) and a 1x1 convolution with the stem's output as its residual
    /// and a 2 x 1 max pool, with no wait in between: the stem computes its band's rows and the row either side of them
    /// (from the input, which no step writes), so the 3x3 finds its halo rows in its own band. The next block, on the
    /// pooled map: a 3x3 convolution on the implicit GEMM, then a 3x3 convolution on Winograd F(2x2, 3x3) with the block's
    /// input as its residual and a 2 x 1 max pool; each waits for the other threads' bands, then copies the rows next to
    /// its band from them into its halo rows. The last output is in the plan's layout.
    /// </summary>
    /// <remarks>
    /// In the plan's layout a thread's rows of every channel lie between the other thread's, and the hardware
    /// prefetchers fetch lines the other thread writes: with the host running the two vCPUs on cores that share no cache,
    /// these five steps of the big model's mel batch-1 pass took 0.22 ms against 0.15 ms on cores that share one. In row
    /// bands the big pass went 0.40-0.41 -> 0.36-0.38 ms there and the pruned one 0.20 -> 0.17 ms, and both stayed as
    /// they were on cores that share a cache (0.32 and 0.14 ms). Each value is the sum the separate steps compute (band
    /// boundaries fall on rows that are multiples of 4, so every Winograd tile and pooling window of both maps is the
    /// same), so the bits do not change.
    /// </remarks>
    private sealed class RowBandStep : MemberRunStep
    {
        // The bands of the stem block's maps, and of the pooled map (the next block's, with five members).
        public RowBandLayout Layout = null!;
        public RowBandLayout? Pooled;
        // What the parts read, in pinned memory (the weights' and biases' arrays are on the pinned heap).
        private Arguments[] _arguments = [];

        /// <summary>A band layout as the parts read it.</summary>
        private struct Bands
        {
            public int Count, Rows;
            public long ChannelStride;
            public fixed int Row0[MaxBands + 1];
            public fixed long Start[MaxBands];

            public Bands(RowBandLayout layout)
            {
                Count = layout.Bands;
                Rows = layout.Rows;
                ChannelStride = layout.ChannelStride;
                for (int b = 0; b <= Count; b++) Row0[b] = layout.Row0[b];
                for (int b = 0; b < Count; b++) Start[b] = layout.Start[b];
            }
        }

        /// <summary>One convolution's arguments.</summary>
        private struct Conv
        {
            public int In, Out, Residual;
            public Conv2dParams P;
            public Pool2dParams Pool;
            public float* Bias;
            public bool Activation;
            public UnaryOp Op;
            public float Alpha, Beta;
            // 0 none, 1 ReLU, 2 Hardswish (the Winograd path's encoding).
            public int Kind;
            public float* Direct;
            public WinogradConv.Packing Winograd;
            public ImplicitGemmConv.Packing Implicit;

            public Conv(ConvStep step)
            {
                In = step.In;
                Out = step.Out;
                Residual = step.Residual;
                P = step.P;
                Pool = step.Pool?.Params ?? default;
                Bias = Pointer(step.Bias);
                Activation = step.Act.Present;
                Op = step.Act.Op;
                Alpha = step.Act.Alpha;
                Beta = step.Act.Beta;
                Kind = !step.Act.Present ? 0 : step.Act.Op == UnaryOp.Relu ? 1 : 2;
                Direct = step.Direct is null ? null : step.Direct.Pointer;
                if (step.Winograd is not null) Winograd = step.Winograd.View();
                if (step.Implicit is not null) Implicit = step.Implicit.View();
            }
        }

        private struct Arguments
        {
            public float** Values;
            // Part 0's milliseconds per member (profiling), or null.
            public double* Times;
            public int Width, Members;
            public Bands Map, PooledMap;
            public Conv Stem, First, Pointwise, Second, Last;
        }

        /// <summary>Fixes the members' arguments once their kernels are chosen.</summary>
        public void Prepare()
        {
            foreach (var member in Members) member.Banded = true;
            _arguments = GC.AllocateArray<Arguments>(1, pinned: true);
            ref Arguments a = ref _arguments[0];
            a.Width = Layout.Width;
            a.Members = Members.Length;
            a.Map = new Bands(Layout);
            a.Stem = new Conv(Members[0]);
            a.First = new Conv(Members[1]);
            a.Pointwise = new Conv(Members[2]);
            if (Members.Length == 5)
            {
                a.PooledMap = new Bands(Pooled!);
                a.Second = new Conv(Members[3]);
                a.Last = new Conv(Members[4]);
            }
        }

        // SAFETY: the plan's weight and bias arrays are allocated on the pinned heap.
        private static float* Pointer(float[]? array) =>
            array is null ? null : (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));

        public override void Run(float** values, Span<double> memberTimes)
        {
            var times = stackalloc double[memberTimes.Length];
            new Span<double>(times, memberTimes.Length).Clear();
            fixed (Arguments* a = _arguments)
            {
                a->Values = values;
                a->Times = memberTimes.IsEmpty ? null : times;
                // SAFETY: the arguments are pinned and ForParts returns after every part ran.
                Phase(a, &StemBlock, memberTimes, times, 0, 3);
                if (a->Members == 5)
                {
                    Phase(a, &SecondConv, memberTimes, times, 3, 1);
                    Phase(a, &LastConv, memberTimes, times, 4, 1);
                }
                a->Values = null;
                a->Times = null;
            }
        }

        /// <summary>
        /// One call on every band; with profiling, members [<paramref name="first"/>, first + <paramref name="count"/>) get
        /// part 0's times and the last of them the wait for the other parts.
        /// </summary>
        private static void Phase(Arguments* a, delegate*<void*, int, void> body, Span<double> memberTimes, double* times, int first, int count)
        {
            long start = Stopwatch.GetTimestamp();
            CpuThreading.ForParts(a->Map.Count, body, a);
            if (memberTimes.IsEmpty) return;
            double total = Milliseconds(Stopwatch.GetTimestamp() - start), sum = 0;
            for (int i = first; i < first + count; i++)
            {
                memberTimes[i] += times[i];
                sum += times[i];
            }
            memberTimes[first + count - 1] += Math.Max(0, total - sum);
        }

        /// <summary>Band <paramref name="part"/> of the stem, the 3x3 after it and the pooled 1x1.</summary>
        private static void StemBlock(void* state, int part)
        {
            ref Arguments a = ref *(Arguments*)state;
            ref Bands map = ref a.Map;
            int r0 = map.Row0[part], r1 = map.Row0[part + 1], rows = r1 - r0;
            long stride = map.ChannelStride;
            float* stemOut = a.Values[a.Stem.Out] + map.Start[part], firstOut = a.Values[a.First.Out] + map.Start[part];
            long t0 = a.Times == null ? 0 : Stopwatch.GetTimestamp();
            // The band's rows and the row either side of them; the map's own edges leave the halo rows zero.
            int first = Math.Max(0, r0 - 1), end = Math.Min(map.Rows, r1 + 1);
            DirectStemConv.ForwardRows(a.Values[a.Stem.In], stemOut + (long)(first - r0) * a.Width, stride, a.Stem.P, a.Stem.Bias != null,
                a.Stem.Activation, a.Stem.Op, a.Stem.Pool, a.Stem.Direct, first, end);
            long t1 = Lap(ref a, part, 0, t0);
            WinogradConv.ForwardBand(stemOut, stride, a.First.Winograd, a.First.Bias, firstOut, stride, a.First.P with { N = 1, H = rows },
                null, stride, a.First.Kind, pooled: false);
            long t2 = Lap(ref a, part, 1, t1);
            ref Conv c = ref a.Pointwise;
            var pool = c.Pool with { N = 1, H = rows };
            // The pooled map in the pooled bands when the next block runs in bands too; else in the plan's layout.
            float* y = a.Members == 5 ? a.Values[c.Out] + a.PooledMap.Start[part] : a.Values[c.Out] + (long)(r0 / 2) * pool.Q;
            long yStride = a.Members == 5 ? a.PooledMap.ChannelStride : (long)c.Pool.P * c.Pool.Q;
            ImplicitGemmConv.ForwardBand(firstOut, stride, a.First.P.K * stride - map.Start[part], c.Implicit, c.Bias, y, yStride, stemOut, stride,
                c.P with { N = 1, H = rows }, c.Activation, c.Op, c.Alpha, c.Beta, new ImplicitGemmConv.FusedPool(pool));
            Lap(ref a, part, 2, t2);
        }

        /// <summary>Band <paramref name="part"/> of the next block's first 3x3 (implicit GEMM), after its halo rows.</summary>
        private static void SecondConv(void* state, int part) => NextBlock(ref *(Arguments*)state, part, last: false);

        /// <summary>Band <paramref name="part"/> of the next block's pooled 3x3 (Winograd), after its halo rows.</summary>
        private static void LastConv(void* state, int part) => NextBlock(ref *(Arguments*)state, part, last: true);

        private static void NextBlock(ref Arguments a, int part, bool last)
        {
            ref Conv c = ref last ? ref a.Last : ref a.Second;
            ref Bands map = ref a.PooledMap;
            long t0 = a.Times == null ? 0 : Stopwatch.GetTimestamp();
            float* x = a.Values[c.In];
            CopyHalo(x, ref map, part, c.P.C, a.Width);
            int r0 = map.Row0[part], rows = map.Row0[part + 1] - r0;
            long start = map.Start[part], stride = map.ChannelStride;
            var p = c.P with { N = 1, H = rows };
            if (last)
            {
                // The pooled output in the plan's layout: [K, Rows / 2, W].
                WinogradConv.ForwardBand(x + start, stride, c.Winograd, c.Bias, a.Values[c.Out] + (long)(r0 / 2) * a.Width,
                    (long)(map.Rows / 2) * a.Width, p, a.Values[c.Residual] + start, stride, c.Kind, pooled: true);
            }
            else
            {
                ImplicitGemmConv.ForwardBand(x + start, stride, c.P.C * stride - start, c.Implicit, c.Bias, a.Values[c.Out] + start, stride,
                    null, 0, p, c.Activation, c.Op, c.Alpha, c.Beta, null);
            }
            Lap(ref a, part, last ? 4 : 3, t0);
        }

        /// <summary>
        /// Band <paramref name="band"/>'s halo rows of a value in <paramref name="map"/>: the last row of the band before it
        /// and the first of the band after it, copied from the bands that own them (the map's edges stay zero).
        /// </summary>
        private static void CopyHalo(float* value, ref Bands map, int band, int channels, int width)
        {
            long bytes = (long)width * sizeof(float);
            for (int c = 0; c < channels; c++)
            {
                float* channel = value + c * map.ChannelStride;
                float* own = channel + map.Start[band];
                int rows = map.Row0[band + 1] - map.Row0[band];
                if (band > 0)
                {
                    int above = map.Row0[band] - map.Row0[band - 1];
                    Buffer.MemoryCopy(channel + map.Start[band - 1] + (long)(above - 1) * width, own - width, bytes, bytes);
                }
                if (band + 1 < map.Count) Buffer.MemoryCopy(channel + map.Start[band + 1], own + (long)rows * width, bytes, bytes);
            }
        }

        /// <summary>Adds part 0's time since <paramref name="since"/> to member <paramref name="member"/>; returns the time now.</summary>
        private static long Lap(ref Arguments a, int part, int member, long since)
        {
            if (a.Times == null) return 0;
            long now = Stopwatch.GetTimestamp();
            if (part == 0) a.Times[member] += Milliseconds(now - since);
            return now;
        }
    }

    private sealed partial class Compiler
    {
        // Values held in a RowBandLayout, with their buffers' lengths.
        private readonly Dictionary<int, long> _bandedLength = [];

        /// <summary>
        /// Replaces each batch-1 stem block that <see cref="RowBandStep"/> runs, with the block after it if it can: a direct
        /// stem with its pool, then a 3x3 convolution on Winograd F(2x2, 3x3) with the tiles in the lanes, no pool and no
        /// residual, reading the stem's output, then a 1x1 convolution on the implicit GEMM reading that with the stem's
        /// output as its residual and a fused 2 x 1 max pool; then, on the pooled map, a 3x3 convolution on the implicit
        /// GEMM with no pool or residual, and a 3x3 convolution on Winograd F(2x2, 3x3) reading it, with the pooled map as
        /// its residual and a 2 x 1 max pool. Every value but the last is read by these steps only. One band per thread,
        /// if the map has rows enough.
        /// </summary>
        private void FormRowBands(int outValue)
        {
            int bands = Math.Min(CpuThreading.Threads, MaxBands);
            if (!RowBandsEnabled || bands < 2) return;
            var readers = Readers();
            var steps = new List<Step>();
            for (int i = 0; i < _steps.Count; i++)
            {
                if (i + 2 < _steps.Count && Bandable(_steps[i], _steps[i + 1], _steps[i + 2]) is { } layout)
                {
                    var pooled = i + 4 < _steps.Count && NextBlockBandable(_steps[i + 2], _steps[i + 3], _steps[i + 4])
                        ? layout.Halved() : null;
                    var members = _steps.GetRange(i, pooled is null ? 3 : 5).Cast<ConvStep>().ToArray();
                    var step = new RowBandStep { Members = members, Layout = layout, Pooled = pooled, In = members[0].In, Out = members[^1].Out };
                    step.Prepare();
                    _bandedLength[members[0].Out] = members[0].P.K * layout.ChannelStride;
                    _bandedLength[members[1].Out] = members[1].P.K * layout.ChannelStride;
                    if (pooled is not null)
                    {
                        _bandedLength[members[2].Out] = members[2].P.K * pooled.ChannelStride;
                        _bandedLength[members[3].Out] = members[3].P.K * pooled.ChannelStride;
                    }
                    steps.Add(step);
                    i += members.Length - 1;
                    continue;
                }
                steps.Add(_steps[i]);
            }
            _steps = steps;

            RowBandLayout? Bandable(Step s0, Step s1, Step s2)
            {
                if (s0 is not ConvStep { Direct: not null, Pool: { } stemPool } stem || stem.P.N != 1
                    || s1 is not ConvStep { Winograd.Tile: 2, Pool: null, Residual: < 0 } conv || conv.In != stem.Out || conv.P.W < 15
                    || s2 is not ConvStep { Implicit: not null, Pool: { } pool, P: { R: 1, S: 1, StrideH: 1, StrideW: 1, Groups: 1 } } point
                    || point.In != conv.Out || point.Residual != stem.Out
                    || pool.Params is not { KernelH: 2, StrideH: 2, KernelW: 1, StrideW: 1, PadH: 0, PadW: 0, CeilMode: false })
                    return null;
                if (!ReadOnlyBy(stem.Out, conv, point) || !ReadOnlyBy(conv.Out, point)) return null;
                return RowBandLayout.Split(stemPool.Params.P, stemPool.Params.Q, bands);
            }

            bool NextBlockBandable(Step s2, Step s3, Step s4) =>
                s2 is ConvStep point
                && s3 is ConvStep { Implicit: not null, Pool: null, Residual: < 0, P: { R: 3, S: 3, PadH: 1, PadW: 1, Groups: 1 } } second
                && ImplicitGemmConv.IsSame(second.P) && second.In == point.Out
                && s4 is ConvStep { Winograd.Tile: 2, Pool: { } pool } last && last.In == second.Out && last.Residual == point.Out
                && last.P.W >= 15 && pool.Params is { KernelH: 2, StrideH: 2, KernelW: 1, StrideW: 1, PadH: 0, PadW: 0, CeilMode: false }
                && ReadOnlyBy(point.Out, second, last) && ReadOnlyBy(second.Out, last);

            // A value of its own (no view of it, not the plan's output) that only these steps read.
            bool ReadOnlyBy(int value, params Step[] steps) =>
                _root[value] == value && !HasViews(value) && _root[value] != _root[outValue]
                && readers.GetValueOrDefault(value, []).All(steps.Contains);
        }

        /// <summary>Per root value, the steps that read it (as input, residual or addend).</summary>
        private Dictionary<int, List<Step>> Readers()
        {
            var readers = new Dictionary<int, List<Step>>();
            void Read(int value, Step step)
            {
                if (!readers.TryGetValue(_root[value], out var list)) readers[_root[value]] = list = [];
                list.Add(step);
            }
            foreach (var step in _steps)
            {
                Read(step.In, step);
                if (step is ConvStep { Residual: >= 0 } withResidual) Read(withResidual.Residual, step);
                if (step is AddStep add) Read(add.Other, step);
            }
            return readers;
        }
    }
}
