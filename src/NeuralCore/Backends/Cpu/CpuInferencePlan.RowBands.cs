using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NeuralCore.Backends.Cpu;

public sealed unsafe partial class CpuInferencePlan
{
    /// <summary>Whether compiled plans run a batch-1 stem block in row bands (<see cref="RowBandStep"/>; tests turn it off to compare).</summary>
    internal static bool RowBandsEnabled { get; set; } = true;

    // At most this many bands (threads) per map: 31 rows in bands of at least four.
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
        /// <paramref name="bands"/> bands of <paramref name="rows"/> rows, each starting on an even row (so that 2 x 2
        /// Winograd tiles and 2 x 1 pooling windows never straddle two bands) and at least two rows high; null if the map
        /// is too short for that.
        /// </summary>
        public static RowBandLayout? Split(int rows, int width, int bands)
        {
            var row0 = new int[bands + 1];
            for (int b = 0; b <= bands; b++) row0[b] = b == bands ? rows : (int)((2L * b * rows / bands + 2) / 4 * 2);
            for (int b = 0; b < bands; b++)
                if (row0[b + 1] - row0[b] < 2) return null;
            var layout = new RowBandLayout { Bands = bands, Rows = rows, Width = width, Row0 = row0, Start = new long[bands] };
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
    /// A single sample's stem block: the direct stem (with its pool), the 3x3 convolution after it (Winograd F(2x2, 3x3))
    /// and the block's 1x1 convolution with the stem's output as its residual and a 2 x 1 max pool, run with each thread on
    /// its own band of rows from the first to the last, with no wait in between: the stem computes its band's rows and
    /// the row either side of them (from the input, which no step writes), so the 3x3 finds its halo rows in its own
    /// band. The stem's and the 3x3's outputs live in a <see cref="RowBandLayout"/>; the pooled output in the plan's
    /// layout.
    /// </summary>
    /// <remarks>
    /// In the plan's layout a thread's rows of every channel lie between the other thread's, and the hardware
    /// prefetchers fetch lines the other thread writes: at mel batch 1, with the host running the two vCPUs on cores that
    /// share no cache, the three steps took ... Each value is the sum the three separate steps compute (the bands start on
    /// even rows, so every Winograd tile and pooling window is the same), so the bits do not change.
    /// </remarks>
    private sealed class RowBandStep : MemberRunStep
    {
        public RowBandLayout Layout = null!;
        // What the parts read, in pinned memory (the weights' and biases' arrays are on the pinned heap).
        private Arguments[] _arguments = [];

        private struct Arguments
        {
            public float** Values;
            // Part 0's milliseconds per member (profiling), or null.
            public double* Times;
            public int Bands, Rows, Width, Channels;
            public long ChannelStride;
            public fixed int Row0[MaxBands + 1];
            public fixed long Start[MaxBands];
            public int StemIn, StemOut, ConvOut, PointOut;
            public Conv2dParams StemP, ConvP, PointP;
            public Pool2dParams StemPool, PointPool;
            public float* StemPacked, ConvBias, PointBias;
            public bool StemHasBias, StemActivation, PointActivation;
            public UnaryOp StemOp, PointOp;
            public float PointAlpha, PointBeta;
            public int ConvKind;
            public WinogradConv.Packing ConvWeights;
            public ImplicitGemmConv.Packing PointWeights;
        }

        /// <summary>Fixes the members' arguments once their kernels are chosen.</summary>
        public void Prepare()
        {
            var (stem, conv, point) = (Members[0], Members[1], Members[2]);
            foreach (var member in Members) member.Banded = true;
            _arguments = GC.AllocateArray<Arguments>(1, pinned: true);
            ref Arguments a = ref _arguments[0];
            a.Bands = Layout.Bands;
            a.Rows = Layout.Rows;
            a.Width = Layout.Width;
            a.Channels = conv.P.K;
            a.ChannelStride = Layout.ChannelStride;
            for (int b = 0; b <= Layout.Bands; b++) a.Row0[b] = Layout.Row0[b];
            for (int b = 0; b < Layout.Bands; b++) a.Start[b] = Layout.Start[b];
            a.StemIn = stem.In;
            a.StemOut = stem.Out;
            a.ConvOut = conv.Out;
            a.PointOut = point.Out;
            a.StemP = stem.P;
            a.ConvP = conv.P;
            a.PointP = point.P;
            a.StemPool = stem.Pool!.Value.Params;
            a.PointPool = point.Pool!.Value.Params;
            a.StemPacked = stem.Direct!.Pointer;
            a.StemHasBias = stem.Bias is not null;
            a.StemActivation = stem.Act.Present;
            a.StemOp = stem.Act.Op;
            a.ConvBias = Pointer(conv.Bias);
            a.ConvKind = !conv.Act.Present ? 0 : conv.Act.Op == UnaryOp.Relu ? 1 : 2;
            a.ConvWeights = conv.Winograd!.View();
            a.PointBias = Pointer(point.Bias);
            a.PointActivation = point.Act.Present;
            a.PointOp = point.Act.Op;
            a.PointAlpha = point.Act.Alpha;
            a.PointBeta = point.Act.Beta;
            a.PointWeights = point.Implicit!.View();
        }

        // SAFETY: the plan's weight and bias arrays are allocated on the pinned heap.
        private static float* Pointer(float[]? array) =>
            array is null ? null : (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));

        public override void Run(float** values, Span<double> memberTimes)
        {
            var times = stackalloc double[memberTimes.Length];
            fixed (Arguments* a = _arguments)
            {
                a->Values = values;
                a->Times = memberTimes.IsEmpty ? null : times;
                long start = Stopwatch.GetTimestamp();
                // SAFETY: the arguments are pinned and ForParts returns after every part ran.
                CpuThreading.ForParts(a->Bands, &RunPart, a);
                a->Values = null;
                a->Times = null;
                if (memberTimes.IsEmpty) return;
                // Each member gets part 0's time; the wait for the other parts goes to the last.
                double total = Milliseconds(Stopwatch.GetTimestamp() - start), sum = 0;
                for (int i = 0; i < memberTimes.Length; i++)
                {
                    memberTimes[i] += times[i];
                    sum += times[i];
                }
                memberTimes[^1] += Math.Max(0, total - sum);
            }
        }

        private static void RunPart(void* state, int part)
        {
            ref Arguments a = ref *(Arguments*)state;
            int r0 = a.Row0[part], r1 = a.Row0[part + 1], rows = r1 - r0;
            long stride = a.ChannelStride, start = a.Start[part];
            float* stemOut = a.Values[a.StemOut] + start, convOut = a.Values[a.ConvOut] + start;
            long t0 = a.Times == null ? 0 : Stopwatch.GetTimestamp();
            // The band's rows and the row either side of them; the map's own edges leave the halo rows zero.
            int first = Math.Max(0, r0 - 1), end = Math.Min(a.Rows, r1 + 1);
            DirectStemConv.ForwardRows(a.Values[a.StemIn], stemOut + (long)(first - r0) * a.Width, stride, a.StemP, a.StemHasBias,
                a.StemActivation, a.StemOp, a.StemPool, a.StemPacked, first, end);
            long t1 = Lap(ref a, part, 0, t0);
            WinogradConv.ForwardBand(stemOut, stride, a.ConvWeights, a.ConvBias, convOut, stride, a.ConvP with { N = 1, H = rows },
                null, a.ConvKind);
            long t2 = Lap(ref a, part, 1, t1);
            var pool = a.PointPool with { N = 1, H = rows };
            ImplicitGemmConv.ForwardBand(convOut, stride, a.Channels * stride - start, a.PointWeights, a.PointBias,
                a.Values[a.PointOut] + (long)(r0 / 2) * pool.Q, (long)a.PointPool.P * a.PointPool.Q, stemOut, stride,
                a.PointP with { N = 1, H = rows }, a.PointActivation, a.PointOp, a.PointAlpha, a.PointBeta, new ImplicitGemmConv.FusedPool(pool));
            Lap(ref a, part, 2, t2);
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
        /// Replaces each batch-1 stem block that <see cref="RowBandStep"/> runs: a direct stem with its pool, then a 3x3
        /// convolution on Winograd F(2x2, 3x3) with the tiles in the lanes, no pool and no residual, reading the stem's
        /// output, then a 1x1 convolution on the implicit GEMM reading that with the stem's output as its residual and a
        /// fused 2 x 1 max pool; the stem's and the 3x3's outputs read by these steps only. One band per thread, if the
        /// map has rows enough.
        /// </summary>
        private void FormRowBands(int outValue)
        {
            int bands = Math.Min(CpuThreading.Threads, MaxBands);
            if (!RowBandsEnabled || bands < 2) return;
            var readers = Readers();
            var steps = new List<Step>();
            for (int i = 0; i < _steps.Count; i++)
            {
                if (i + 2 < _steps.Count && Bandable(_steps[i], _steps[i + 1], _steps[i + 2], readers, outValue) is { } layout)
                {
                    var members = _steps.GetRange(i, 3).Cast<ConvStep>().ToArray();
                    var step = new RowBandStep { Members = members, Layout = layout, In = members[0].In, Out = members[2].Out };
                    step.Prepare();
                    _bandedLength[members[0].Out] = members[0].P.K * layout.ChannelStride;
                    _bandedLength[members[1].Out] = members[1].P.K * layout.ChannelStride;
                    steps.Add(step);
                    i += 2;
                    continue;
                }
                steps.Add(_steps[i]);
            }
            _steps = steps;

            RowBandLayout? Bandable(Step s0, Step s1, Step s2, Dictionary<int, List<Step>> readers, int outValue)
            {
                if (s0 is not ConvStep { Direct: not null, Pool: { } stemPool } stem || stem.P.N != 1
                    || s1 is not ConvStep { Winograd.Tile: 2, Pool: null, Residual: < 0 } conv || conv.In != stem.Out || conv.P.W < 15
                    || s2 is not ConvStep { Implicit: not null, Pool: { } pool, P: { R: 1, S: 1, StrideH: 1, StrideW: 1, Groups: 1 } } point
                    || point.In != conv.Out || point.Residual != stem.Out
                    || pool.Params is not { KernelH: 2, StrideH: 2, KernelW: 1, StrideW: 1, PadH: 0, PadW: 0, CeilMode: false })
                    return null;
                foreach (int v in new[] { stem.Out, conv.Out })
                    if (_root[v] != v || HasViews(v) || _root[v] == _root[outValue] || readers.GetValueOrDefault(v, []).Any(r => r != conv && r != point))
                        return null;
                return RowBandLayout.Split(stemPool.Params.P, stemPool.Params.Q, bands);
            }
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
