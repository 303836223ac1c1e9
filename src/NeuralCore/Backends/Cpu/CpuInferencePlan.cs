using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NeuralCore.Autograd;
using NeuralCore.NN;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// A model's eval-mode forward pass compiled for the CPU at one input shape: the pass is traced once, batch norms that
/// follow a convolution are folded into its weights and bias, activations, residual additions and a following max
/// pool run in the convolution's epilogue while its output is still in cache (on AVX-512 the convolutions are implicit
/// GEMMs, see <see cref="ImplicitGemmConv"/>, and a one-channel strided stem a direct kernel, see
/// <see cref="DirectStemConv"/>), views cost nothing, and every intermediate lives in a buffer allocated
/// at compile time. Intermediates are kept channel-major ([C, N, H, W]): a convolution's GEMM over a
/// chunk of samples then writes its output rows in place, and a 1x1 convolution is one GEMM over the whole batch. <see cref="Run(ReadOnlySpan{float}, Span{float})"/> then allocates nothing and
/// skips the per-op bookkeeping of eager execution, which dominates at batch size 1.
/// </summary>
/// <remarks>
/// <para>
/// Supported ops: Conv2d, BatchNorm2d in eval mode, the element-wise unary ops, addition of two tensors of one shape,
/// max and average pooling, adaptive average pooling that tiles the input evenly, and reshapes (Flatten). Anything
/// else makes <see cref="Compile"/> throw <see cref="NotSupportedException"/> naming the op; run such models eagerly.
/// </para>
/// <para>
/// The plan copies the weights when it is compiled: recompile after training or pruning the model. Results match the
/// eager eval-mode forward up to float rounding (folding a batch norm reorders a multiply). A plan runs one call at a
/// time; use one plan per thread to run several.
/// </para>
/// </remarks>
public sealed unsafe partial class CpuInferencePlan
{
    private readonly Step[] _steps;
    private readonly float[][] _buffers;
    // The input's and output's [N, C, inner] sizes, for the moves between the caller's NCHW and the plan's CNHW.
    private readonly (int N, int C, int Inner) _inputLayout, _outputLayout;
    // The input's buffer when it must be transposed (more than one channel and sample); else the caller's memory is used.
    private readonly float[]? _inputBuffer;
    // Per value: the buffer holding it (-1: the caller's input; Unused: no step reads or writes it).
    private readonly int[] _bufferOf;
    private readonly int _outputValue;
    private const int Unused = -2;
    private readonly object _gate = new();
    private readonly long _macs;
    // Each call: on the workers or on the calling thread alone, from the pass's measured times.
    private readonly PassThreading _threading = new();

    // Below this many convolution multiply-adds per pass, the plan runs on the calling thread only.
    private const long InlineMacs = 1L << 22;

    // Maps whose steps form column chains (ColumnChainStep): from a single mel sample's 7 x 24 maps (168 columns) to
    // MNIST's 1 x 6 maps at batch 64 (384). On MNIST's at batch 128 and 256 (768 and 1536 columns) the chained pass was
    // as fast as the unchained one when the two vCPUs shared a cache and 5-10 % slower when they did not (big model:
    // 1.76-1.84 against 1.69-1.73 ms and 3.26-3.45 against 3.03-3.16 ms), so wider maps keep their steps apart. Each
    // thread takes at least MinColumnsPerPart columns.
    private const long MinChainColumns = 160, MaxChainColumns = 512, MinColumnsPerPart = 64;

    private CpuInferencePlan(Step[] steps, float[][] buffers, int[] bufferOf, int outputValue, int[] inputShape, int[] outputShape, string[] description)
    {
        _steps = steps;
        _buffers = buffers;
        _bufferOf = bufferOf;
        _outputValue = outputValue;
        _inputLayout = Layout(inputShape);
        _outputLayout = Layout(outputShape);
        if (_inputLayout.N > 1 && _inputLayout.C > 1) _inputBuffer = GC.AllocateArray<float>(Tensor.Numel(inputShape), pinned: true);
        InputShape = inputShape;
        OutputShape = outputShape;
        Description = description;
        _macs = steps.SelectMany(s => s is MemberRunStep run ? run.Members : new[] { s }).OfType<ConvStep>().Sum(s => (long)s.P.N * s.P.K * s.P.P * s.P.Q * (s.P.C / s.P.Groups) * s.P.R * s.P.S);
    }

    private static (int N, int C, int Inner) Layout(int[] shape) => shape.Length switch
    {
        0 => (1, 1, 1),
        1 => (shape[0], 1, 1),
        _ => (shape[0], shape[1], Tensor.Numel(shape.AsSpan(2))),
    };

    /// <summary>dst [C, N, inner] = src [N, C, inner] (or back with <paramref name="toSampleMajor"/>).</summary>
    private static void Transpose(float* src, float* dst, (int N, int C, int Inner) l, bool toSampleMajor)
    {
        long bytes = (long)l.Inner * sizeof(float);
        for (int n = 0; n < l.N; n++)
            for (int c = 0; c < l.C; c++)
            {
                long sampleMajor = ((long)n * l.C + c) * l.Inner, channelMajor = ((long)c * l.N + n) * l.Inner;
                if (toSampleMajor) Buffer.MemoryCopy(src + channelMajor, dst + sampleMajor, bytes, bytes);
                else Buffer.MemoryCopy(src + sampleMajor, dst + channelMajor, bytes, bytes);
            }
    }

    /// <summary>The input shape the plan was compiled for, batch included.</summary>
    public int[] InputShape { get; }

    /// <summary>The output shape.</summary>
    public int[] OutputShape { get; }

    /// <summary>One line per executed step, e.g. <c>conv 1-&gt;32 5x5/2 + bn + hardswish</c>.</summary>
    public IReadOnlyList<string> Description { get; }

    /// <summary>
    /// Whether each call chooses, from the pass's measured times, between the worker threads and the calling thread
    /// alone (default true). The first calls try both; then the pass runs in the faster mode and now and then tries the
    /// other, so a pass too small to repay the traffic between cores (on a busy host, a pruned model at batch 1) stops
    /// paying it, and uses the workers again when they pay. The kernels give the same bits either way. When false, the
    /// pass uses the worker threads (passes under 4 M multiply-adds always run on the calling thread). A pass in sample
    /// shards (<see cref="SampleShards"/>) always hands them to the worker threads.
    /// </summary>
    public bool AdaptiveThreading { get; set; } = true;

    /// <summary>Whether the pass is large enough to run on the worker threads at all.</summary>
    internal bool UsesWorkers => _macs >= InlineMacs;

    /// <summary>Bytes of the intermediate buffers (the plan's working memory besides the folded weights).</summary>
    public long BufferBytes => _buffers.Sum(b => (long)b.Length * sizeof(float)) + (_shards?.Sum(s => s.BufferBytes) ?? 0)
        + _shardRests.Sum(s => s?.BufferBytes ?? 0);

    /// <summary>
    /// Traces <paramref name="model"/> in eval mode on a zero input of <paramref name="inputShape"/> (batch included) and
    /// compiles the pass. The model's training mode is restored afterwards. A batch of at least 8 samples per thread
    /// (<see cref="CpuThreading.Threads"/> when compiled) runs as one plan per thread over its share of the samples, each
    /// shard's steps on its own thread, where those plans choose the same kernels as the whole batch's (the same bits); a
    /// shard whose maps would not fit the L2 cache runs its samples in pieces that do (<see cref="SamplesPerPiece"/>).
    /// </summary>
    /// <exception cref="NotSupportedException">The model uses an op the plan cannot run, or lives off the CPU.</exception>
    public static CpuInferencePlan Compile(Module model, int[] inputShape)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        foreach (var p in model.Parameters())
            if (p.Device != Device.Cpu)
                throw new NotSupportedException($"CpuInferencePlan runs CPU models; parameter '{p.Name}' is on {p.Device}. Move the model with model.To(Device.Cpu) first.");
        var whole = Trace(model, inputShape);
        return Shard(model, inputShape, whole) ?? whole;
    }

    /// <summary>
    /// Traces <paramref name="model"/> in eval mode on zeros of <paramref name="inputShape"/> and compiles one plan for the
    /// whole batch, for every thread, or with <paramref name="threaded"/> false for one (no row bands or column chains;
    /// with <paramref name="oneThreadTiles"/>, Winograd's tiles chosen for one thread, see <see cref="WinogradConv.TileSize"/>).
    /// </summary>
    private static CpuInferencePlan Trace(Module model, int[] inputShape, bool threaded = true, bool oneThreadTiles = false)
    {
        bool training = model.Training;
        var input = Tensor.Zeros(inputShape);
        Tensor output;
        model.Eval();
        try
        {
            using (Autograd.Autograd.NoGrad())
            using (Autograd.Autograd.Trace())
                output = model.Call(input);
        }
        finally
        {
            model.Train(training);
        }
        return new Compiler(input, output, threaded, oneThreadTiles && !threaded).Build();
    }

    /// <summary>Runs the pass on <paramref name="input"/> (row-major, <see cref="InputShape"/>) into <paramref name="output"/> (<see cref="OutputShape"/>).</summary>
    /// <exception cref="ArgumentException">A span's length does not match the shapes.</exception>
    public void Run(ReadOnlySpan<float> input, Span<float> output) => Run(input, output, []);

    /// <summary>
    /// Runs the pass <paramref name="iterations"/> times on <paramref name="input"/> and returns each step's mean time in
    /// milliseconds, in the order of <see cref="Description"/>: where a pass spends its time, layer by layer.
    /// </summary>
    /// <exception cref="ArgumentException">The input's length does not match <see cref="InputShape"/>, or <paramref name="iterations"/> is below 1.</exception>
    public IReadOnlyList<(string Step, double Milliseconds)> Profile(ReadOnlySpan<float> input, int iterations)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(iterations, 1);
        var output = new float[Tensor.Numel(OutputShape)];
        var totals = new double[Description.Count];
        for (int i = 0; i < iterations; i++) Run(input, output, totals);
        return totals.Select((t, i) => (Description[i], t / iterations)).ToArray();
    }

    private void Run(ReadOnlySpan<float> input, Span<float> output, Span<double> stepTimes)
    {
        if (input.Length != Tensor.Numel(InputShape))
            throw new ArgumentException($"The plan was compiled for input {Tensor.FormatShape(InputShape)} ({Tensor.Numel(InputShape)} values), got {input.Length}; compile another plan for this shape.", nameof(input));
        if (output.Length != Tensor.Numel(OutputShape))
            throw new ArgumentException($"The plan writes {Tensor.FormatShape(OutputShape)} ({Tensor.Numel(OutputShape)} values), but the output span holds {output.Length}.", nameof(output));
        lock (_gate)
        {
            if (_shards is not null)
            {
                // SAFETY: pinned for the call, which returns after every shard has run.
                fixed (float* pin = input)
                fixed (float* outPin = output)
                    RunShards(pin, outPin, stepTimes);
                return;
            }
            // SAFETY: the input is pinned for the call; every buffer is on the pinned object heap and sized at compile time
            // for the value it holds; the steps stay inside the lengths their shapes give.
            fixed (float* pin = input)
            fixed (float* transposed = _inputBuffer)
            fixed (float* outPin = output)
            {
                float* first = pin;
                if (_inputBuffer is not null)
                {
                    Transpose(pin, transposed, _inputLayout, toSampleMajor: false);
                    first = transposed;
                }
                var values = stackalloc float*[_bufferOf.Length];
                for (int v = 0; v < _bufferOf.Length; v++)
                    values[v] = _bufferOf[v] switch
                    {
                        Unused => null,
                        < 0 => first,
                        var b => AlignedArrays.Start(_buffers[b]),
                    };
                // A pass of a few million multiply-adds is over before a worker would wake up.
                bool inline = CpuThreading.Inline;
                bool allInline = inline || !UsesWorkers || CpuThreading.Threads == 1;
                CpuThreading.Inline = allInline;
                try
                {
                    if (!allInline && AdaptiveThreading)
                    {
                        bool passInline = _threading.Inline();
                        CpuThreading.Inline = passInline;
                        long start = Stopwatch.GetTimestamp();
                        RunSteps(values, stepTimes);
                        _threading.Record(passInline, Stopwatch.GetTimestamp() - start);
                    }
                    else
                    {
                        RunSteps(values, stepTimes);
                    }
                }
                finally
                {
                    CpuThreading.Inline = inline;
                }
                Transpose(values[_outputValue], outPin, _outputLayout, toSampleMajor: true);
            }
        }
    }

    /// <summary>Every step in order; with <paramref name="stepTimes"/>, each step's milliseconds added to its entry.</summary>
    private void RunSteps(float** values, Span<double> stepTimes)
    {
        if (stepTimes.IsEmpty)
        {
            foreach (var step in _steps) step.Run(values);
            return;
        }
        int line = 0;
        foreach (var step in _steps)
        {
            if (step is MemberRunStep run)
            {
                run.Run(values, stepTimes.Slice(line, run.Members.Length));
                line += run.Members.Length;
                continue;
            }
            long start = Stopwatch.GetTimestamp();
            step.Run(values);
            // Raw timestamps, not a TimeSpan, whose 100 ns ticks truncated each step (sums read low).
            stepTimes[line++] += Milliseconds(Stopwatch.GetTimestamp() - start);
        }
    }

    private static double Milliseconds(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    /// <summary>Runs the pass on a contiguous Float32 CPU tensor of <see cref="InputShape"/>; returns a new tensor.</summary>
    public Tensor Run(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (!input.Shape.SequenceEqual(InputShape))
            throw new ArgumentException($"The plan was compiled for input {Tensor.FormatShape(InputShape)}, got {Tensor.FormatShape(input.Shape)}; compile another plan for this shape.", nameof(input));
        var x = input.Contiguous();
        var y = Tensor.Empty(OutputShape, Device.Cpu);
        Run(x.AsSpan(), y.AsSpan());
        return y;
    }

    // ---- steps ------------------------------------------------------------------------------------

    private abstract class Step
    {
        public int In, Out;
        public abstract void Run(float** values);
    }

    /// <summary>An activation applied in place after a step's main work.</summary>
    private struct Activation
    {
        public bool Present;
        public UnaryOp Op;
        public float Alpha, Beta;

        public readonly void Apply(float* y, long n)
        {
            if (!Present) return;
            var span = new Span<float>(y, checked((int)n));
            CpuThreadingHelpers.Unary(Op, span, Alpha, Beta);
        }

        public override readonly string ToString() => Present ? " + " + Op.ToString().ToLowerInvariant() : "";
    }

    private sealed class ConvStep : Step
    {
        public Conv2dParams P;
        public float[] Weight = [];
        public float[]? Bias;
        public int Residual = -1;
        public Activation Act;
        public string Label = "";
        // The weights packed for the implicit-GEMM path, when it runs this convolution (set once the weights are final).
        public ImplicitGemmConv.Weights? Implicit;
        // A stem (one input channel, stride 2) run by DirectStemConv, its pool and activation in registers, with its
        // weights packed once.
        public DirectStemConv.Weights? Direct;
        // A map of at most 24 positions run by NarrowMapConv: Out (and Residual) are then position-major ([positions, K]),
        // and In is position-major when InputPositionMajor.
        public NarrowMapConv.Weights? Narrow;
        public bool InputPositionMajor;
        // A 3x3 on one sample's map of at most 3 x 6 whose output channels leave a few over past their blocks of 16, run by
        // MixedLaneConv3x3 where the narrow map would run it (position-major like it), with its weights packed once.
        public MixedLaneConv3x3.Weights? Mixed;
        // A 3x3 "same" convolution run by WinogradConv (channel-major like the implicit GEMM), its weights transformed once.
        public WinogradConv.Weights? Winograd;
        // A 1x1 over planes of two or three vectors run by PlanePointwiseConv, its epilogue and pool in
        // registers (the pool's gather made once, when there is a pool).
        public bool PlaneWise;
        public PlanePointwiseConv.PoolGather? PlaneWisePool;
        // A 3x3 over one sample's planes at most six columns wide run by PlaneConv3x3, its epilogue and pool in registers,
        // with its weights packed once.
        public PlaneConv3x3.Weights? Plane3x3;
        // A stem run over column planes (StemColumns, its fused 2 x 2 pool if any), its weights packed once: where the
        // direct stem does not run (no AVX-512).
        public StemColumns.Weights? Stem;
        // A pooling fused into the convolution's epilogue: Out is then the pooled value.
        public ImplicitGemmConv.FusedPool? Pool;
        public string PoolLabel = "";

        /// <summary>True when <see cref="DirectStemConv"/> can run this convolution, followed by <paramref name="pool"/> if given.</summary>
        public bool CanRunDirectly(Pool2dParams? pool) =>
            Residual < 0 && (!Act.Present || Act.Op is UnaryOp.Relu or UnaryOp.Hardswish) && DirectStemConv.Supports(P, pool);

        /// <summary>
        /// True when <see cref="StemColumns"/> can run this stem followed by <paramref name="pool"/>, the pool fused (where
        /// <see cref="CanRunDirectly"/> holds, the direct stem runs it instead).
        /// </summary>
        public bool CanRunStemPooled(in Pool2dParams pool) =>
            Residual < 0 && (!Act.Present || Act.Op is UnaryOp.Relu or UnaryOp.Hardswish) && StemColumns.Enabled && StemColumns.CanRunPooled(P, pool);

        /// <summary>True when <see cref="NarrowMapConv"/> or <see cref="MixedLaneConv3x3"/> runs this convolution: its output (and residual) position-major.</summary>
        public bool WritesPositionMajor => Narrow is not null || Mixed is not null;

        /// <summary>
        /// A 1x1, stride-1 convolution without padding, residual, activation or fused pool: an average pool of its output
        /// equals the convolution of the averaged input (<see cref="Compiler.AverageBeforeConv"/>).
        /// </summary>
        public bool CommutesWithAverage =>
            P is { R: 1, S: 1, StrideH: 1, StrideW: 1, PadH: 0, PadW: 0 } && Residual < 0 && !Act.Present && Pool is null;

        // Moved behind the average pool that read its output (Compiler.AverageBeforeConv): it runs on the pooled map,
        // channel-major, so that its output is the plan's layout without a move (one sample's map is a single position).
        public bool AfterAverage;

        /// <summary>True when <see cref="NarrowMapConv"/> can run this convolution (its output then position-major).</summary>
        public bool CanRunNarrow() => !AfterAverage && Pool is null && (!Act.Present || Act.Op is UnaryOp.Relu or UnaryOp.Hardswish) && NarrowMapConv.Supports(P);

        /// <summary>
        /// True when <see cref="PlanePointwiseConv.ForwardChannelMajor"/> can run this convolution followed by
        /// <paramref name="pool"/> if given: a 1x1 on planes of 24-48 positions (MNIST's 6 x 6 maps), where the implicit
        /// GEMM's panels, tail and unpooled block cost more than the multiply-adds: at batch 1 for any width, above it for
        /// at most <see cref="MaxPlaneWiseChannelsAtBatch"/> output channels. Without AVX-512 only at batch 1 and with a
        /// 2 x 1 pool: at MNIST b256 the 256-bit kernel took the pruned model's 19 -> 19 step with its pool from 0.113 ms
        /// (the implicit GEMM and a pooling step) to 0.123 ms.
        /// </summary>
        public bool CanRunPlaneWise(Pool2dParams? pool) =>
            (P.N == 1 || (P.K <= MaxPlaneWiseChannelsAtBatch && Gemm.Runs512)) && (!Act.Present || Act.Op is UnaryOp.Relu or UnaryOp.Hardswish)
            && PlanePointwiseConv.CanRunPooled(P, pool);

        /// <summary>
        /// Above batch 1, the most output channels for which the plane-wise 1x1 beats the implicit GEMM: on the Xeon host
        /// (one thread, 6 x 6 maps with residual, ReLU and 2 x 1 pool, 128 samples) it took 0.75-0.77 of the time for 19
        /// channels, 0.78-0.87 for 24, 0.95-0.99 for 28, 0.95-0.97 for 32 and 1.0-1.1 for 38 (at 8 samples 0.62-0.64,
        /// 0.69, 0.73 and 0.91); an earlier harness there (two threads, 256 samples) 0.82 for 19 and 1.05 for 32. Below
        /// 32 the implicit GEMM has fewer than four whole 8-row weight panels, whose packing and tails the plane-wise
        /// kernel does without.
        /// </summary>
        private const int MaxPlaneWiseChannelsAtBatch = 31;

        /// <summary>
        /// True when <see cref="PlaneConv3x3"/> can run this convolution followed by <paramref name="pool"/> if given: a 3x3
        /// on one sample's map six columns wide (MNIST's 6 x 6 and 3 x 6 maps at batch 1).
        /// </summary>
        public bool CanRunPlane3x3(Pool2dParams? pool) => (!Act.Present || Act.Op is UnaryOp.Relu or UnaryOp.Hardswish) && PlaneConv3x3.CanRun(P, pool);

        /// <summary>True when <see cref="WinogradConv"/> can run this convolution, and its fused pool if any.</summary>
        public bool CanRunWinograd() =>
            (!Act.Present || Act.Op is UnaryOp.Relu or UnaryOp.Hardswish) && WinogradConv.Enabled && WinogradConv.Supports(P, Pool?.Params);

        /// <summary>
        /// Chooses the kernel once batch norms have been folded into the weights (<paramref name="narrow"/>:
        /// <see cref="NarrowMapConv"/> or <see cref="MixedLaneConv3x3"/>, if one can; <paramref name="oneThread"/>: Winograd's
        /// tiles chosen for a plan that runs on one thread, a sample shard's piece).
        /// </summary>
        public void Prepare(bool narrow, bool oneThread)
        {
            if (CanRunDirectly(Pool?.Params))
            {
                Direct = new DirectStemConv.Weights(Weight, Bias, P);
                return;
            }
            if (narrow && CanRunNarrow())
            {
                if (MixedLaneConv3x3.CanRun(P)) Mixed = new MixedLaneConv3x3.Weights(Weight, P);
                else Narrow = new NarrowMapConv.Weights(Weight, P);
                return;
            }
            if (CanRunPlaneWise(Pool?.Params))
            {
                PlaneWise = true;
                if (Pool is { } pool) PlaneWisePool = new PlanePointwiseConv.PoolGather(P, pool.Params);
                return;
            }
            if (CanRunPlane3x3(Pool?.Params))
            {
                Plane3x3 = new PlaneConv3x3.Weights(Weight, P, Pool?.Params);
                return;
            }
            // The column-plane stem (its weights packed once), where the direct one does not run.
            if (Residual < 0 && StemColumns.Enabled && StemColumns.CanRun(P) && (Pool is not { } stemPool || CanRunStemPooled(stemPool.Params)))
            {
                Stem = new StemColumns.Weights(Weight, Bias, P);
                return;
            }
            if (CanRunWinograd())
            {
                Winograd = new WinogradConv.Weights(Weight, P, pooled: Pool is not null, oneThread);
                return;
            }
            // Without AVX-512 the implicit GEMM takes the "same" convolutions, unpooled (a pool fuses into it only where
            // Supports holds).
            bool runs256 = Pool is null && ImplicitGemmConv.Supports256(P);
            if (!ImplicitGemmConv.Supports(P) && !runs256)
            {
                if (Pool is not null) throw new InvalidOperationException("CpuInferencePlan: the GEMM kernels changed while the plan was compiled; compile it again.");
                return;
            }
            Implicit = new ImplicitGemmConv.Weights(Weight, P);
        }

        public override void Run(float** values)
        {
            // SAFETY: the weight and bias arrays are pinned on the POH (allocated in the compiler).
            float* b = Bias is null ? null : (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Bias));
            float* residual = Residual < 0 ? null : values[Residual];
            int kind = !Act.Present ? 0 : Act.Op == UnaryOp.Relu ? 1 : 2;
            if (Narrow is not null)
            {
                NarrowMapConv.Forward(values[In], InputPositionMajor, Narrow, b, values[Out], P, residual, kind);
                return;
            }
            if (Mixed is not null)
            {
                MixedLaneConv3x3.Forward(values[In], InputPositionMajor, Mixed, b, values[Out], P, residual, kind);
                return;
            }
            if (Plane3x3 is not null)
            {
                PlaneConv3x3.Forward(values[In], Plane3x3, b, values[Out], P, residual, kind, Pool?.Params);
                return;
            }
            if (Winograd is not null)
            {
                WinogradConv.Forward(values[In], Winograd, b, values[Out], P, residual, kind, pooled: Pool is not null);
                return;
            }
            if (Implicit is not null)
            {
                ImplicitGemmConv.Forward(values[In], Implicit.View(), b, values[Out], P, residual, Act.Present, Act.Op, Act.Alpha, Act.Beta, Pool);
                return;
            }
            float* w = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Weight));
            if (PlaneWise)
            {
                PlanePointwiseConv.ForwardChannelMajor(values[In], w, b, values[Out], P, residual, kind, PlaneWisePool);
                return;
            }
            if (Direct is not null)
            {
                DirectStemConv.Forward(values[In], values[Out], P, b != null, Act.Present, Act.Op, Pool?.Params, Direct.Pointer);
                return;
            }
            if (Stem is not null)
            {
                StemColumns.ForwardChannelMajor(values[In], Stem, values[Out], P, Act.Present, Act.Op, Act.Alpha, Act.Beta, Pool?.Params);
                return;
            }
            ConvKernels.ForwardChannelMajor(values[In], w, b, values[Out], P, residual, Act.Present, Act.Op, Act.Alpha, Act.Beta);
        }

        // Run by a ColumnChainStep, with each thread on its own columns; by a RowBandStep, on its own rows.
        public bool Chained, Banded;

        public override string ToString() => Describe(layout: true);

        /// <summary>The step's line, with or without how its work is laid out between threads (which keeps the bits).</summary>
        public string Describe(bool layout) => Label + (Residual >= 0 ? " + residual" : "") + Act + PoolLabel + Kernel switch
        {
            "" => "",
            var kernel => $" ({kernel}{(!layout ? "" : Chained ? ", column chain" : Banded ? ", row bands" : "")})",
        };

        /// <summary>The kernel that runs the convolution ("" for the im2col GEMM), without how its work is laid out between threads.</summary>
        private string Kernel => Implicit switch
        {
            null when Narrow is not null => Narrow.Taps < P.R * P.S ? $"narrow map, {Narrow.Taps} of {P.R * P.S} taps" : "narrow map",
            null when Mixed is not null => "mixed lanes",
            null when Direct is not null => "direct",
            null when Stem is not null => "column planes",
            null when PlaneWise || Plane3x3 is not null => "plane-wise",
            null when Winograd is not null => $"Winograd F({Winograd.Tile}x{Winograd.Tile}, 3x3)",
            null => "",
            { Taps: var taps } when taps < P.R * P.S => $"implicit GEMM, {taps} of {P.R * P.S} taps",
            _ => "implicit GEMM",
        };
    }

    /// <summary>
    /// A run of convolutions on one small map (a single mel sample's 7 x 24 stage) with each thread on its own range of
    /// the columns from the run's first step to its last: one wake-up and one wait for the whole run instead of one per
    /// step, and the values that only the run reads (its internal values) kept by each thread as a block of its own,
    /// [channels, its columns], instead of rows that alternate between the threads' columns in [channels, columns].
    /// </summary>
    /// <remarks>
    /// Alternating rows cost most when the host runs the two threads on cores that share no cache (a ping-pong between
    /// them then takes about 340 ns instead of 60-80): lines next to a thread's own pass between the cores, and at mel
    /// batch 1 a 1x1 step split by columns took about as long as on one thread. Values read outside the run (its inputs,
    /// its last output) keep the plan's layout, and a thread reads and writes its own columns of them (the first member,
    /// which may have a 3x3 kernel, also the rows around them). Each value is the same sum as in the unchained step, so
    /// results do not change with the thread count. At mel batch 1 the big model's pass went 0.334 -> 0.322 ms and
    /// 0.48 -> 0.41 ms (the two states of the host), the pruned model's 0.151 -> 0.141 ms and 0.248 -> 0.203 ms.
    /// </remarks>
    private sealed class ColumnChainStep : MemberRunStep
    {
        // Per member, what RunPart needs, in pinned memory (the weights' and biases' arrays are on the pinned heap).
        private Member[] _members = [];
        public long Columns;

        private struct Member
        {
            public ImplicitGemmConv.Packing Weights;
            public Conv2dParams P;
            public float* Bias;
            public int In, Out, Residual;
            public bool InInternal, OutInternal, ResidualInternal, HasActivation;
            public UnaryOp Activation;
            public float Alpha, Beta;
        }

        private struct Job
        {
            public Member* Members;
            public int Count, Parts;
            public float** Values;
            public long Columns;
            // Part 0's milliseconds per member (profiling), or null.
            public double* Times;
        }

        /// <summary>Fixes the members once their values are known; <paramref name="internalValues"/> are read by members only.</summary>
        public void Prepare(HashSet<int> internalValues)
        {
            _members = GC.AllocateArray<Member>(Members.Length, pinned: true);
            for (int i = 0; i < Members.Length; i++)
            {
                var conv = Members[i];
                conv.Chained = true;
                _members[i] = new Member
                {
                    Weights = conv.Implicit!.View(),
                    Bias = conv.Bias is null ? null : (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(conv.Bias)),
                    P = conv.P,
                    In = conv.In, Out = conv.Out, Residual = conv.Residual,
                    InInternal = internalValues.Contains(conv.In),
                    OutInternal = internalValues.Contains(conv.Out),
                    ResidualInternal = conv.Residual >= 0 && internalValues.Contains(conv.Residual),
                    HasActivation = conv.Act.Present, Activation = conv.Act.Op, Alpha = conv.Act.Alpha, Beta = conv.Act.Beta,
                };
            }
        }

        public override void Run(float** values, Span<double> memberTimes)
        {
            var times = stackalloc double[memberTimes.Length];
            fixed (Member* members = _members)
            {
                var job = new Job
                {
                    Members = members, Count = _members.Length, Values = values, Columns = Columns,
                    Parts = (int)Math.Min(CpuThreading.Threads, Columns / MinColumnsPerPart),
                    Times = memberTimes.IsEmpty ? null : times,
                };
                job.Parts = Math.Max(1, job.Parts);
                long start = Stopwatch.GetTimestamp();
                // SAFETY: members are pinned, job lives on this frame, and ForParts returns after every part ran.
                CpuThreading.ForParts(job.Parts, &RunPart, &job);
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

        /// <summary>
        /// Where part <paramref name="part"/>'s columns start: even shares, rounded to whole 32-column panels, as the
        /// implicit GEMM shares a step's panels between threads, so a part reads the columns of the run's inputs that the
        /// same thread wrote. At mel batch 1 (168 columns: 96 + 72) the big model's pass took 0.328 ms against 0.338 ms
        /// with 80 + 88 columns on 16-column boundaries: the calling thread starts first and takes the larger share.
        /// </summary>
        private static long Boundary(long columns, int parts, int part) =>
            part == parts ? columns : (part * columns / parts + Gemm.PanelColumns / 2) / Gemm.PanelColumns * Gemm.PanelColumns;

        private static void RunPart(void* state, int part)
        {
            ref Job job = ref *(Job*)state;
            long c0 = Boundary(job.Columns, job.Parts, part), c1 = Boundary(job.Columns, job.Parts, part + 1);
            long cols = c1 - c0, all = job.Columns;
            for (int i = 0; i < job.Count; i++)
            {
                long start = job.Times == null ? 0 : Stopwatch.GetTimestamp();
                ref Member m = ref job.Members[i];
                int c = m.P.C, k = m.P.K;
                // An internal value's part p is a block [channels, its columns] at channels * c0, addressed as if it
                // held every column (its start minus c0); the others keep [channels, all columns].
                float* x = job.Values[m.In] + (m.InInternal ? c * c0 - c0 : 0);
                float* y = job.Values[m.Out] + (m.OutInternal ? k * c0 - c0 : 0);
                float* residual = m.Residual < 0 ? null : job.Values[m.Residual] + (m.ResidualInternal ? k * c0 - c0 : 0);
                ImplicitGemmConv.ForwardRange(x, m.InInternal ? cols : all, m.InInternal ? c0 + c * cols : c * all, m.Weights, m.Bias,
                    y, m.OutInternal ? cols : all, residual, m.ResidualInternal ? cols : all, m.P, c0, (int)cols,
                    m.HasActivation, m.Activation, m.Alpha, m.Beta);
                if (job.Times != null && part == 0) job.Times[i] += Milliseconds(Stopwatch.GetTimestamp() - start);
            }
        }
    }

    /// <summary>
    /// Moves a value between the channel-major layout ([C, positions]) and the position-major one ([positions, C]) that
    /// <see cref="NarrowMapConv"/> reads and writes: before a step that reads channel-major, or for a residual.
    /// </summary>
    private sealed class LayoutStep : Step
    {
        public int Positions, Channels;
        public bool ToPositionMajor;

        public override void Run(float** values)
        {
            if (ToPositionMajor) Gemm.Transpose(values[In], Positions, values[Out], Channels, Channels, Positions);
            else Gemm.Transpose(values[In], Channels, values[Out], Positions, Positions, Channels);
        }

        public override string ToString() => $"{(ToPositionMajor ? "to position-major" : "to channel-major")} ({Channels} channels x {Positions} positions)";
    }

    private sealed class ChannelAffineStep : Step
    {
        public float[] Scale = [], Shift = [];
        public int N, C, HW;
        public Activation Act;

        public override void Run(float** values)
        {
            // Channel-major: channel c is one block of N * HW values.
            float* x = values[In], y = values[Out];
            long block = (long)N * HW;
            for (int c = 0; c < C; c++)
            {
                float s = Scale[c], t = Shift[c];
                for (long i = c * block; i < (c + 1) * block; i++) y[i] = MathF.FusedMultiplyAdd(x[i], s, t);
            }
            Act.Apply(y, (long)N * C * HW);
        }

        public override string ToString() => $"batch norm ({C} channels)" + Act;
    }

    private sealed class UnaryStep : Step
    {
        public long Length;
        public Activation Act;

        public override void Run(float** values)
        {
            if (In != Out) Buffer.MemoryCopy(values[In], values[Out], Length * sizeof(float), Length * sizeof(float));
            Act.Apply(values[Out], Length);
        }

        public override string ToString() => "element-wise" + Act;
    }

    private sealed class AddStep : Step
    {
        public int Other;
        public long Length;
        public Activation Act;

        public override void Run(float** values)
        {
            float* a = values[In], b = values[Other], y = values[Out];
            if (y != a) Buffer.MemoryCopy(a, y, Length * sizeof(float), Length * sizeof(float));
            ConvKernels.Add(y, b, Length);
            Act.Apply(y, Length);
        }

        public override string ToString() => "add" + Act;
    }

    private sealed class PoolStep : Step
    {
        public PoolKind Kind;
        public Pool2dParams P;
        // A global average that reads a narrow convolution's position-major output where it lies.
        public bool InputPositionMajor;

        public override void Run(float** values)
        {
            if (InputPositionMajor) PoolKernels.GlobalAveragePositionMajor(values[In], values[Out], P.N, P.H * P.W, P.C);
            else if (PoolKernels.IsGlobalAverage(Kind, P) && PoolKernels.AveragesInVectors(P.H * P.W))
                PoolKernels.GlobalAverageRows(values[In], values[Out], (long)P.N * P.C, P.H * P.W);
            else PoolKernels.Forward(Kind, values[In], values[Out], null, P);
        }

        public override string ToString() => Label(Kind, P) + (InputPositionMajor ? " (position-major)" : "");

        public static string Label(PoolKind kind, in Pool2dParams p) => $"{(kind == PoolKind.Max ? "max" : "average")} pool {p.KernelH}x{p.KernelW}/{p.StrideH}x{p.StrideW}";
    }

    /// <summary>Unary ops over a range, split over the CPU threads when large.</summary>
    private static class CpuThreadingHelpers
    {
        private struct Job
        {
            public float* Y;
            public int N, Parts;
            public UnaryOp Op;
            public float Alpha, Beta;
        }

        public static void Unary(UnaryOp op, Span<float> y, float alpha, float beta)
        {
            fixed (float* p = y)
            {
                var job = new Job { Y = p, N = y.Length, Op = op, Alpha = alpha, Beta = beta };
                job.Parts = (int)Math.Clamp(y.Length / (1 << 15), 1, CpuThreading.Threads);
                // SAFETY: job lives on this frame; ForParts returns after every part ran.
                CpuThreading.ForParts(job.Parts, &Part, &job);
            }
        }

        private static void Part(void* state, int part)
        {
            ref Job job = ref *(Job*)state;
            int start = (int)((long)part * job.N / job.Parts), end = (int)((long)(part + 1) * job.N / job.Parts);
            var span = new Span<float>(job.Y + start, end - start);
            CpuBackend.UnaryRange(job.Op, span, span, job.Alpha, job.Beta);
        }
    }

    // ---- compiler ---------------------------------------------------------------------------------

    private sealed partial class Compiler(Tensor input, Tensor output, bool threaded, bool oneThreadTiles)
    {
        // Value numbers of tensors; views and fused results share their source's number.
        private readonly Dictionary<Tensor, int> _valueOf = new(ReferenceEqualityComparer.Instance);
        // How many recorded ops (and the model's output) read each tensor.
        private readonly Dictionary<Tensor, int> _uses = new(ReferenceEqualityComparer.Instance);
        private readonly List<int[]> _shapes = [];
        // Values that share memory (views) point to the same root value.
        private readonly List<int> _root = [];
        private readonly Dictionary<int, Step> _producer = [];
        private List<Step> _steps = [];

        public CpuInferencePlan Build()
        {
            var nodes = Nodes();
            foreach (var node in nodes)
                foreach (var t in node.Inputs)
                    _uses[t] = _uses.GetValueOrDefault(t) + 1;
            _uses[output] = _uses.GetValueOrDefault(output) + 1;

            NewValue(input, root: -1);
            foreach (var node in nodes) Compile(node);
            if (!_valueOf.TryGetValue(output, out int outValue))
                throw new NotSupportedException("CpuInferencePlan: the model's output does not depend on its input.");
            foreach (var conv in _steps.OfType<ConvStep>()) conv.Prepare(narrow: NarrowMapConv.Enabled && !HasViews(conv.Out), oneThreadTiles);
            outValue = AssignLayouts(outValue);
            // Row bands and column chains lay a step's work out for several threads: a plan that runs on one (a sample
            // shard's) forms neither.
            if (threaded)
            {
                FormRowBands(outValue);
                FormChains(outValue);
            }

            // One buffer per root value that a step reads or writes, except the input, which the caller's memory holds;
            // values that fusion left behind (a pooled convolution's unpooled output) get none.
            var used = new HashSet<int> { 0, _root[outValue] };
            foreach (var step in _steps.SelectMany(s => s is MemberRunStep run ? run.Members : new Step[] { s }))
            {
                used.Add(_root[step.In]);
                used.Add(_root[step.Out]);
                if (step is ConvStep { Residual: >= 0 } withResidual) used.Add(_root[withResidual.Residual]);
                if (step is AddStep add) used.Add(_root[add.Other]);
            }
            var bufferOf = new int[_root.Count];
            var buffers = new List<float[]>();
            for (int v = 0; v < _root.Count; v++)
            {
                if (_root[v] != v) continue;
                if (v == 0) { bufferOf[v] = -1; continue; }
                if (!used.Contains(v)) { bufferOf[v] = Unused; continue; }
                bufferOf[v] = buffers.Count;
                long length = _bandedLength.TryGetValue(v, out long banded) ? banded : Tensor.Numel(_shapes[v]);
                buffers.Add(AlignedArrays.Allocate(Math.Max(1, length)));
            }
            for (int v = 0; v < _root.Count; v++) bufferOf[v] = bufferOf[_root[v]];
            var description = _steps.SelectMany(s => s is MemberRunStep run ? run.Members.Select(m => m.ToString()) : [s.ToString()!]).ToArray();
            return new CpuInferencePlan(_steps.ToArray(), buffers.ToArray(), bufferOf, outValue, input.ShapeArray(), output.ShapeArray(), description);
        }

        /// <summary>True when another value is a view of <paramref name="value"/>'s memory.</summary>
        private bool HasViews(int value) => Enumerable.Range(0, _root.Count).Any(v => v != value && _root[v] == _root[value]);

        /// <summary>
        /// Narrow and mixed-lane convolutions write position-major values (which have no views); every other step, and the
        /// plan's output, reads channel-major, and their residuals must be position-major: a <see cref="LayoutStep"/> is
        /// inserted wherever a reader needs the other layout (once per value). Returns the output's value.
        /// </summary>
        private int AssignLayouts(int outValue)
        {
            var positionMajor = new HashSet<int>();
            var converted = new Dictionary<(int, bool), int>();
            var steps = new List<Step>();
            int Convert(int value, bool toPositionMajor)
            {
                if (converted.TryGetValue((value, toPositionMajor), out int done)) return done;
                var (n, c, inner) = Layout(_shapes[value]);
                var step = new LayoutStep { In = value, Positions = n * inner, Channels = c, ToPositionMajor = toPositionMajor };
                step.Out = NewValue(_shapes[value]);
                steps.Add(step);
                if (toPositionMajor) positionMajor.Add(step.Out);
                return converted[(value, toPositionMajor)] = step.Out;
            }
            int ChannelMajor(int value) => positionMajor.Contains(value) ? Convert(value, toPositionMajor: false) : value;
            foreach (var step in _steps)
            {
                if (step is ConvStep { WritesPositionMajor: true } narrow)
                {
                    narrow.InputPositionMajor = positionMajor.Contains(narrow.In);
                    if (narrow.Residual >= 0 && !positionMajor.Contains(narrow.Residual)) narrow.Residual = Convert(narrow.Residual, toPositionMajor: true);
                    positionMajor.Add(narrow.Out);
                }
                else if (step is PoolStep pool && positionMajor.Contains(pool.In) && PoolKernels.IsGlobalAverage(pool.Kind, pool.P))
                {
                    // A global average reads the narrow map where it lies (one step fewer at batch 1: CP-ResNet's head).
                    pool.InputPositionMajor = true;
                }
                else
                {
                    step.In = ChannelMajor(step.In);
                    if (step is ConvStep { Residual: >= 0 } conv) conv.Residual = ChannelMajor(conv.Residual);
                    if (step is AddStep add) add.Other = ChannelMajor(add.Other);
                }
                steps.Add(step);
            }
            _steps = steps;
            return ChannelMajor(outValue);
        }

        /// <summary>
        /// Replaces each run of two or more consecutive convolutions that <see cref="Chainable"/> admits, on one map of
        /// <see cref="MinChainColumns"/> to <see cref="MaxChainColumns"/> columns, by a <see cref="ColumnChainStep"/>. A
        /// value the run produces is internal (kept per thread) when only the run's members read it, through no view,
        /// and it is not the output.
        /// </summary>
        private void FormChains(int outValue)
        {
            var readers = Readers();
            var steps = new List<Step>();
            for (int i = 0; i < _steps.Count;)
            {
                int end = i;
                while (end < _steps.Count && Chainable(_steps[end]) && Columns(_steps[end]) == Columns(_steps[i])
                       && (Pointwise(_steps[end]) || !_steps.Skip(i).Take(end - i).Any(s => _root[s.Out] == _root[_steps[end].In])))
                    end++;
                if (end - i < 2)
                {
                    steps.Add(_steps[i]);
                    i = Math.Max(i + 1, end);
                    continue;
                }
                var members = _steps.GetRange(i, end - i).Cast<ConvStep>().ToArray();
                var internalValues = new HashSet<int>();
                foreach (var m in members)
                    if (_root[m.Out] == m.Out && _root[m.Out] != _root[outValue] && !HasViews(m.Out)
                        && readers.GetValueOrDefault(m.Out, []).All(r => members.Contains(r)))
                        internalValues.Add(m.Out);
                var chain = new ColumnChainStep { Members = members, Columns = Columns(members[0]), In = members[0].In, Out = members[^1].Out };
                chain.Prepare(internalValues);
                steps.Add(chain);
                i = end;
            }
            _steps = steps;
        }

        /// <summary>
        /// A "same" convolution (stride 1, the output the size of the input) on the implicit GEMM, with no fused pool and
        /// one group, on a map of the chains' size. A member that is not 1x1 must read a value from before the run: its
        /// taps read its input around each column, and a thread holds only its own columns of the run's values.
        /// </summary>
        private static bool Chainable(Step step) =>
            step is ConvStep { Implicit: not null, Pool: null } conv && conv.P.Groups == 1 && ImplicitGemmConv.IsSame(conv.P)
            && Columns(conv) is >= MinChainColumns and <= MaxChainColumns;

        private static bool Pointwise(Step step) => step is ConvStep { P: { R: 1, S: 1 } };

        private static long Columns(Step step) => step is ConvStep conv ? (long)conv.P.N * conv.P.H * conv.P.W : -1;

        private List<Node> Nodes() => output.GradFn is null
            ? throw new NotSupportedException("CpuInferencePlan: tracing the model recorded no ops.")
            : Autograd.Autograd.NodesBehind(output);

        private int NewValue(Tensor t, int root)
        {
            int v = NewValue(t.ShapeArray(), root);
            _valueOf[t] = v;
            return v;
        }

        /// <summary>A value of <paramref name="shape"/> that no traced tensor names (a layout step's output), or a view of <paramref name="root"/>.</summary>
        private int NewValue(int[] shape, int root = -1)
        {
            int v = _shapes.Count;
            _shapes.Add(shape);
            _root.Add(root < 0 ? v : _root[root]);
            return v;
        }

        private int ValueOf(Node node, Tensor t) => _valueOf.TryGetValue(t, out int v)
            ? v
            : throw new NotSupportedException($"CpuInferencePlan: {node} reads a tensor that is neither the input nor computed from it (only weights may be constants).");

        /// <summary>True when the producer of <paramref name="t"/> may be changed in place: nothing else reads it and it is not a view.</summary>
        private bool Fusable(Tensor t, int value) => _uses.GetValueOrDefault(t) == 1 && _root[value] == value && !ReferenceEquals(t, output);

        private void Compile(Node node)
        {
            switch (node.Kind)
            {
                case OpKind.Conv2d: CompileConv(node); break;
                case OpKind.BatchNorm2d: CompileBatchNorm(node); break;
                case OpKind.Unary: CompileUnary(node); break;
                case OpKind.Binary: CompileAdd(node); break;
                case OpKind.MaxPool2d or OpKind.AvgPool2d: CompilePool(node); break;
                case OpKind.AdaptiveAvgPool2d: CompileAdaptive(node); break;
                case OpKind.Reshape or OpKind.Copy: CompileView(node); break;
                default:
                    throw new NotSupportedException($"CpuInferencePlan cannot run {node.Kind} ({node}); run this model eagerly (model.Call under NoGrad).");
            }
        }

        private static float[] Constant(Node node, int index)
        {
            var t = node.Inputs[index];
            if (t.GradFn is not null)
                throw new NotSupportedException($"CpuInferencePlan: input {index} of {node} is computed, but only constant weights are supported there.");
            var values = t.Contiguous().AsSpan();
            var copy = GC.AllocateArray<float>(values.Length, pinned: true);
            values.CopyTo(copy);
            return copy;
        }

        private void Add(Step step, int inValue, Tensor result)
        {
            step.In = inValue;
            step.Out = NewValue(result, root: -1);
            _steps.Add(step);
            _producer[step.Out] = step;
        }

        private void CompileConv(Node node)
        {
            int x = ValueOf(node, node.Inputs[0]);
            var xs = _shapes[x];
            var w = node.Inputs[1];
            var stride = (int[])node.Attributes["stride"];
            var padding = (int[])node.Attributes["padding"];
            var dilation = (int[])node.Attributes["dilation"];
            int groups = (int)node.Attributes["groups"];
            var p = new Conv2dParams(xs[0], xs[1], xs[2], xs[3], w.Size(0), w.Size(2), w.Size(3),
                stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups);
            var step = new ConvStep
            {
                P = p,
                Weight = Constant(node, 1),
                Bias = node.Inputs.Count > 2 ? Constant(node, 2) : null,
                Label = $"conv {p.C}->{p.K} {p.R}x{p.S}" + (p.StrideH * p.StrideW > 1 ? $"/{p.StrideH}" : ""),
            };
            Add(step, x, node.Output);
        }

        private void CompileView(Node node)
        {
            int x = ValueOf(node, node.Inputs[0]);
            // A view keeps the channel-major memory valid when the batch stays and a sample is one value per channel
            // ([N, C, 1, 1] <-> [N, C]), or the batch is one sample.
            var from = Layout(_shapes[x]);
            var to = Layout(node.Output.ShapeArray());
            if (node.Kind == OpKind.Copy || (from.N == to.N && (to.N == 1 || (from.Inner == 1 && to.Inner == 1))))
            {
                NewValue(node.Output, x);
                return;
            }
            throw new NotSupportedException($"CpuInferencePlan keeps activations channel-major and cannot reshape {Tensor.FormatShape(_shapes[x])} to {Tensor.FormatShape(node.Output.Shape)} ({node}); run this model eagerly.");
        }

        private void CompileBatchNorm(Node node)
        {
            if ((bool)node.Attributes["training"])
                throw new NotSupportedException($"CpuInferencePlan: {node} ran in training mode.");
            int x = ValueOf(node, node.Inputs[0]);
            var xs = _shapes[x];
            int c = xs[1];
            var gamma = Constant(node, 1);
            var beta = Constant(node, 2);
            var mean = ((Tensor)node.Attributes["running_mean"]).ToArray();
            var variance = ((Tensor)node.Attributes["running_var"]).ToArray();
            float eps = (float)node.Attributes["eps"];
            var scale = new float[c];
            var shift = new float[c];
            for (int i = 0; i < c; i++)
            {
                double s = gamma[i] / Math.Sqrt((double)variance[i] + eps);
                scale[i] = (float)s;
                shift[i] = (float)(beta[i] - mean[i] * s);
            }
            // Not after a fused pool: the pool runs last in the convolution's epilogue, and a negative scale does not
            // commute with a maximum.
            if (_producer.TryGetValue(x, out var producer) && producer is ConvStep { Pool: null } conv && conv.Residual < 0 && !conv.Act.Present
                && Fusable(node.Inputs[0], x))
            {
                // Fold: w'[k] = w[k] * scale[k], b'[k] = b[k] * scale[k] + shift[k].
                int row = conv.Weight.Length / conv.P.K;
                for (int k = 0; k < conv.P.K; k++)
                    for (int i = 0; i < row; i++) conv.Weight[k * row + i] *= scale[k];
                var bias = GC.AllocateArray<float>(conv.P.K, pinned: true);
                for (int k = 0; k < conv.P.K; k++) bias[k] = (conv.Bias?[k] ?? 0) * scale[k] + shift[k];
                conv.Bias = bias;
                conv.Label += " + bn";
                Alias(node.Output, x);
                return;
            }
            int hw = xs.Length == 4 ? xs[2] * xs[3] : 1;
            Add(new ChannelAffineStep { Scale = scale, Shift = shift, N = xs[0], C = c, HW = hw }, x, node.Output);
        }

        private void CompileUnary(Node node)
        {
            int x = ValueOf(node, node.Inputs[0]);
            var act = new Activation
            {
                Present = true,
                Op = (UnaryOp)node.Attributes["op"],
                Alpha = (float)node.Attributes["alpha"],
                Beta = (float)node.Attributes["beta"],
            };
            if (_producer.TryGetValue(x, out var producer) && Fusable(node.Inputs[0], x))
            {
                switch (producer)
                {
                    // A convolution with a fused pool applies its activation before pooling: not the same for every activation.
                    case ConvStep { Act.Present: false, Pool: null } conv: conv.Act = act; Alias(node.Output, x); return;
                    case ChannelAffineStep { Act.Present: false } affine: affine.Act = act; Alias(node.Output, x); return;
                    case AddStep { Act.Present: false } add: add.Act = act; Alias(node.Output, x); return;
                }
            }
            Add(new UnaryStep { Length = Tensor.Numel(_shapes[x]), Act = act }, x, node.Output);
        }

        private void CompileAdd(Node node)
        {
            if ((BinaryOp)node.Attributes["op"] != BinaryOp.Add)
                throw new NotSupportedException($"CpuInferencePlan runs only additions among the binary ops, not {node.Attributes["op"]} ({node}).");
            int a = ValueOf(node, node.Inputs[0]), b = ValueOf(node, node.Inputs[1]);
            if (!_shapes[a].SequenceEqual(_shapes[b]))
                throw new NotSupportedException($"CpuInferencePlan adds tensors of one shape, not {Tensor.FormatShape(_shapes[a])} and {Tensor.FormatShape(_shapes[b])} ({node}).");
            // Fuse into the producer of the operand computed last: the other one is ready when it runs.
            int last = StepIndex(a) >= StepIndex(b) ? a : b, other = last == a ? b : a;
            var lastTensor = last == a ? node.Inputs[0] : node.Inputs[1];
            if (_producer.TryGetValue(last, out var producer) && producer is ConvStep { Residual: < 0, Act.Present: false, Pool: null } conv
                && other != last && Fusable(lastTensor, last))
            {
                conv.Residual = other;
                Alias(node.Output, last);
                return;
            }
            Add(new AddStep { Other = b, Length = Tensor.Numel(_shapes[a]) }, a, node.Output);
        }

        private int StepIndex(int value) => _producer.TryGetValue(value, out var s) ? _steps.IndexOf(s) : -1;

        private void CompilePool(Node node)
        {
            int x = ValueOf(node, node.Inputs[0]);
            var xs = _shapes[x];
            var k = (int[])node.Attributes["kernel"];
            var s = (int[])node.Attributes["stride"];
            var pad = (int[])node.Attributes["padding"];
            var p = new Pool2dParams(xs[0], xs[1], xs[2], xs[3], k[0], k[1], s[0], s[1], pad[0], pad[1], (bool)node.Attributes["ceil_mode"]);
            var kind = node.Kind == OpKind.MaxPool2d ? PoolKind.Max : PoolKind.Average;
            // The plane-wise kernels pool in their own registers and the column-plane stem its staged rows (at 256 bits
            // too); the others pool their blocks with MaxPlanes.
            if (kind == PoolKind.Max && _producer.TryGetValue(x, out var producer) && producer is ConvStep { Pool: null } conv
                && ((PoolKernels.SeparableMax(p) && (ImplicitGemmConv.Supports(conv.P) || conv.CanRunDirectly(p)))
                    || conv.CanRunPlane3x3(p) || conv.CanRunPlaneWise(p) || conv.CanRunStemPooled(p))
                && Fusable(node.Inputs[0], x))
            {
                // Pool each block of the convolution's output while it is in cache; the unpooled output gets no buffer.
                conv.Pool = new ImplicitGemmConv.FusedPool(p);
                conv.PoolLabel = " + " + PoolStep.Label(kind, p);
                _producer.Remove(x);
                conv.Out = NewValue(node.Output, root: -1);
                _producer[conv.Out] = conv;
                return;
            }
            Add(new PoolStep { Kind = kind, P = p }, x, node.Output);
        }

        private void CompileAdaptive(Node node)
        {
            int x = ValueOf(node, node.Inputs[0]);
            var xs = _shapes[x];
            var o = (int[])node.Attributes["output_size"];
            int kh = xs[2] / o[0], kw = xs[3] / o[1];
            if (kh * kw >= MinAveragedPositions && _producer.TryGetValue(x, out var producer) && producer is ConvStep conv && conv.CommutesWithAverage
                && Fusable(node.Inputs[0], x))
            {
                AverageBeforeConv(conv, kh, kw, node.Output);
                return;
            }
            var p = new Pool2dParams(xs[0], xs[1], xs[2], xs[3], kh, kw, kh, kw, 0, 0);
            Add(new PoolStep { Kind = PoolKind.Average, P = p }, x, node.Output);
        }

        // Windows of fewer positions keep the convolution before the average: on MNIST's 1 x 6 maps the average of the
        // 76 input channels' planes of 6 took longer than the 10-channel convolution it saved (pruned model, the two
        // steps, two profiles each: batch 256 0.034-0.037 -> 0.053 ms; batch 1 0.3 -> 1.7 us, where the narrow map ran
        // the convolution).
        private const int MinAveragedPositions = 16;

        /// <summary>
        /// The average over kh x kw windows of a 1x1 convolution's output, which nothing else reads, computed as the
        /// convolution of the averaged input: the average is linear and the convolution acts on each position alone, so
        /// mean(W x + b) = W mean(x) + b (up to rounding: the sums run in another order). CP-ResNet's head (a 1x1
        /// convolution to the classes, then the global average) then multiplies one column per sample instead of every
        /// position of the last map. The pool step goes in before the convolution, which now reads the pooled map.
        /// </summary>
        private void AverageBeforeConv(ConvStep conv, int kh, int kw, Tensor result)
        {
            var xs = _shapes[conv.In];
            var p = new Pool2dParams(xs[0], xs[1], xs[2], xs[3], kh, kw, kh, kw, 0, 0);
            var pool = new PoolStep { Kind = PoolKind.Average, P = p, In = conv.In };
            pool.Out = NewValue([p.N, p.C, p.P, p.Q]);
            _steps.Insert(_steps.IndexOf(conv), pool);
            _producer[pool.Out] = pool;
            _producer.Remove(conv.Out);
            conv.In = pool.Out;
            conv.P = conv.P with { H = p.P, W = p.Q };
            conv.AfterAverage = true;
            conv.Out = NewValue(result, root: -1);
            _producer[conv.Out] = conv;
        }

        private void Alias(Tensor result, int value)
        {
            // The fused op writes into its producer's buffer: the result is the same value under a new tensor.
            _valueOf[result] = value;
        }
    }
}
