using System.Diagnostics;
using NeuralCore.Autograd;
using NeuralCore.NN;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// A model's training step compiled for the CPU at one batch shape: the forward pass in training mode, the mean
/// cross-entropy against class targets, and the backward pass, which accumulates into every parameter's
/// <see cref="Tensor.Grad"/>. It gives the bits of <c>Functional.CrossEntropy(model.Call(x), y).Backward()</c>: the graph
/// is traced once, and <see cref="Step"/> calls the same backend kernels in the same order, with every activation,
/// saved value and gradient in a buffer allocated at compile time (gradients in use at different times share one, see
/// <see cref="BufferBytes"/>). What it leaves out is eager execution's
/// bookkeeping (a tensor, node, closure and shape arrays per op), so a step allocates no managed memory after the
/// first, and the garbage collector has nothing to do during training.
/// </summary>
/// <remarks>
/// <para>
/// Supported ops: Conv2d, BatchNorm2d in training mode (running statistics and <c>num_batches_tracked</c> are updated
/// as eagerly), the element-wise unary ops, addition of two tensors of one shape, max and average pooling, adaptive
/// average pooling that tiles the input evenly, reshapes (Flatten) and contiguous copies. Anything else makes
/// <see cref="Compile"/> throw <see cref="NotSupportedException"/> naming the op; train such models eagerly. A ReLU that
/// alone reads a batch norm or an addition, or a Hardswish that alone reads a batch norm over planes of 64 values or more,
/// runs inside that op's passes, with the same bits, and so does a 2x2 / 2 max pool that alone reads such a Hardswish,
/// and an addition that alone reads a batch norm over smaller planes (with its ReLU), in the batch norm's output pass.
/// A stem convolution (one input channel, stride 2) that reads the input and whose output only a batch norm over such
/// planes reads makes that batch norm's input gradient itself, chunk by chunk inside its weight gradient, from
/// coefficients the batch norm's backward leaves (the same bits; the gradient is never stored whole).
/// </para>
/// <para>
/// The plan reads the parameters where they lie, so optimizer steps need no recompiling; changing a parameter's shape
/// (pruning) does, and <see cref="Step"/> throws if it sees one. The input gets no gradient. Tracing runs one forward
/// pass on a zero batch, whose effect on the batch-norm statistics <see cref="Compile"/> undoes. A plan runs one step
/// at a time.
/// </para>
/// <code>
/// var plan = CpuTrainingPlan.Compile(model, [256, 1, 28, 28]);
/// optimizer.ZeroGrad(setToNone: false);
/// float loss = plan.Step(x, y);   // forward, loss, backward: x [256, 1, 28, 28], y Int64 [256]
/// optimizer.Step();
/// </code>
/// </remarks>
public sealed class CpuTrainingPlan
{
    private readonly Stage[] _steps;
    // The input and targets: tensors whose storage each Step points at the caller's memory, and the views of the input.
    private readonly Tensor _input, _targets;
    private readonly Tensor[] _inputViews;
    private readonly (Tensor Tensor, int[] Shape)[] _leaves;
    private readonly Tensor _loss;
    // Buffers that trade arrays after every step (see Compiler.Alternating).
    private readonly (CpuStorage, CpuStorage)[] _alternating;

    private CpuTrainingPlan(Stage[] steps, Tensor input, Tensor[] inputViews, Tensor targets, Tensor logits, Tensor loss,
        (Tensor, int[])[] leaves, long bufferBytes, (CpuStorage, CpuStorage)[] alternating)
    {
        _steps = steps;
        _alternating = alternating;
        _input = input;
        _inputViews = inputViews;
        _targets = targets;
        _loss = loss;
        _leaves = leaves;
        Logits = logits;
        BufferBytes = bufferBytes;
        InputShape = input.ShapeArray();
        Description = steps.Select(s => s.Label).ToArray();
    }

    /// <summary>The input shape the plan was compiled for, batch included.</summary>
    public int[] InputShape { get; }

    /// <summary>The logits [N, classes] of the last <see cref="Step"/> (the plan's memory: the next step overwrites them).</summary>
    public Tensor Logits { get; }

    /// <summary>One line per step, e.g. <c>conv 1-&gt;32 5x5/2</c>.</summary>
    public IReadOnlyList<string> Description { get; }

    /// <summary>How many pairs of buffers trade arrays after each step (a batch norm's input and input gradient).</summary>
    internal int AlternatingPairs => _alternating.Length;

    /// <summary>How many stem convolutions compute the input gradient of the batch norm after them (Compiler.ComputeStemGradientsInPlace).</summary>
    internal int StemGradientsInPlace => _steps.OfType<ConvStep>().Count(c => c.Norm is not null);

    /// <summary>How many convolutions add their input gradient to another op's gradient of the same input as they store it.</summary>
    internal int AddedInputGradients => _steps.OfType<ConvStep>().Count(c => c.AddsInputGradient);

    /// <summary>How many batch norms save their fused ReLU's scale and offset for the backward (Compiler.SaveReluScaleOffsets).</summary>
    internal int ReluScaleOffsets => _steps.OfType<BatchNormStep>().Count(b => b.ReluScaleOffset is not null);

    /// <summary>
    /// Whether the batch norms of <see cref="ReluScaleOffsets"/> use them when they run (off: their backward reads the
    /// ReLU's output; tests and the switch-rounds harness compare the two).
    /// </summary>
    internal static bool ReluFromInputEnabled { get; set; } = true;

    /// <summary>Whether plans compile stems that compute their batch norm's input gradient (tests compare plans without).</summary>
    internal static bool StemGradientInPlaceEnabled { get; set; } = true;

    /// <summary>Whether plans compiled from now on pool an addition + ReLU in its pass (off: a pool step of its own; harnesses compare the two).</summary>
    internal static bool AddReluPoolEnabled { get; set; } = true;

    /// <summary>
    /// Whether plans compiled from now on add a residual in the output pass of a batch norm over large planes
    /// (Compiler.FuseLargePlaneAdditions; off: the addition is a step of its own; tests and harnesses compare the two).
    /// </summary>
    internal static bool LargePlaneAdditionEnabled { get; set; } = true;

    /// <summary>
    /// Whether plans compiled from now on have a convolution whose input feeds another op too add its input gradient to
    /// that op's as it stores it, where its input gradient runs sample by sample (Compiler.AddInputGradientsAsStored; off:
    /// written to a buffer of its own and added in a pass after; the same bits; tests and the switch-rounds harness
    /// compare the two).
    /// </summary>
    internal static bool SumInBackwardDataEnabled { get; set; } = true;

    /// <summary>How many convolutions leave their output planes' sums for the batch norm after them (Compiler.SumPlanesInConvolutions).</summary>
    internal int PlaneSumsInConvolutions => _steps.OfType<ConvStep>().Count(c => c.PlaneSums is not null);

    /// <summary>
    /// Whether plans compiled from now on have a convolution that runs sample by sample take the statistics sums of the
    /// batch norm reading its output while each sample is in cache (Compiler.SumPlanesInConvolutions; off: the batch
    /// norm sums its input's planes in a pass of its own; the same bits; tests and the switch-rounds harness compare the
    /// two).
    /// </summary>
    internal static bool PlaneSumsInConvolutionsEnabled { get; set; } = true;

    /// <summary>
    /// Bytes of the plan's buffers: activations, saved values and gradients. Backward buffers of one length whose uses
    /// (the backward steps that read or write them) do not overlap share memory, so the gradients count as many as are
    /// live at once.
    /// </summary>
    public long BufferBytes { get; }

    /// <summary>
    /// Traces <paramref name="model"/> in training mode on a zero batch of <paramref name="inputShape"/> (batch included)
    /// and compiles the training step. The model's mode, its buffers (batch-norm statistics) and the state of
    /// <see cref="Generator.Default"/> are restored afterwards, so compiling leaves no trace in a training run.
    /// </summary>
    /// <exception cref="NotSupportedException">The model uses an op the plan cannot run, does not output logits [N, classes], or lives off the CPU.</exception>
    public static CpuTrainingPlan Compile(Module model, int[] inputShape)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        foreach (var p in model.Parameters())
            if (p.Device != Device.Cpu)
                throw new NotSupportedException($"CpuTrainingPlan runs CPU models; parameter '{p.Name}' is on {p.Device}. Move the model with model.To(Device.Cpu) first.");
        bool training = model.Training;
        var buffers = model.Buffers().ToArray();
        var saved = buffers.Select(b => b.Detach().Clone()).ToArray();
        // A layer that draws random numbers in training (dropout) must not shift the default stream by being traced.
        var random = Generator.Default.GetState();
        model.Train();
        try
        {
            var input = Tensor.Zeros(inputShape);
            Tensor output;
            using (Autograd.Autograd.Trace())
                output = model.Call(input);
            return new Compiler(input, output).Build();
        }
        finally
        {
            Generator.Default.SetState(random);
            model.Train(training);
            using (Autograd.Autograd.NoGrad())
                for (int i = 0; i < buffers.Length; i++) buffers[i].CopyFrom(saved[i]);
        }
    }

    /// <summary>
    /// Runs one training step on <paramref name="inputs"/> (<see cref="InputShape"/>, contiguous) and Int64 class
    /// <paramref name="targets"/> [N]: forward, mean cross-entropy, backward. Gradients are added to the parameters'
    /// <see cref="Tensor.Grad"/> (call the optimizer's ZeroGrad first, as eagerly). Returns the loss.
    /// </summary>
    /// <exception cref="ArgumentException">The input or targets do not match the compiled shapes, or are not contiguous CPU tensors.</exception>
    /// <exception cref="InvalidOperationException">A parameter changed shape since the plan was compiled (recompile it).</exception>
    public float Step(Tensor inputs, Tensor targets) => Run(inputs, targets, null);

    private float Run(Tensor inputs, Tensor targets, Action? afterEach)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(targets);
        Bind(_input, inputs, DType.Float32, "inputs");
        Bind(_targets, targets, DType.Int64, "targets");
        foreach (var view in _inputViews)
        {
            view.storage = inputs.storage;
            view.offset = inputs.offset;
        }
        foreach (var (tensor, shape) in _leaves)
            if (!tensor.Shape.SequenceEqual(shape))
                throw new InvalidOperationException($"Parameter '{tensor.Name}' changed shape from {Tensor.FormatShape(shape)} to {Tensor.FormatShape(tensor.Shape)} since the training plan was compiled; compile a new plan.");
        try
        {
            foreach (var step in _steps)
            {
                step.Forward();
                afterEach?.Invoke();
            }
            for (int i = _steps.Length - 1; i >= 0; i--)
                if (_steps[i].HasBackward)
                {
                    _steps[i].Backward();
                    afterEach?.Invoke();
                }
            foreach (var (a, b) in _alternating) CpuStorage.SwapArrays(a, b);
        }
        finally
        {
            // NOTE: the windows must not keep the caller's memory alive (a batch is often large).
            _input.storage = _targets.storage = Placeholder;
            foreach (var view in _inputViews) view.storage = Placeholder;
        }
        return ((CpuStorage)_loss.storage).Floats[0];
    }

    /// <summary>
    /// Runs <paramref name="iterations"/> steps and returns the mean time of each op's forward (in running order) and
    /// then of each backward (in its running order), in milliseconds: where a training step spends its time.
    /// Gradients accumulate as with <see cref="Step"/>.
    /// </summary>
    public IReadOnlyList<(string Step, double Milliseconds)> Profile(Tensor inputs, Tensor targets, int iterations)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(iterations, 1);
        var backward = _steps.Reverse().Where(s => s.HasBackward).ToArray();
        var ticks = new long[_steps.Length + backward.Length];
        for (int it = 0; it < iterations; it++)
        {
            long last = Stopwatch.GetTimestamp(), now;
            int at = 0;
            Run(inputs, targets, () => { now = Stopwatch.GetTimestamp(); ticks[at++] += now - last; last = now; });
        }
        double scale = 1000.0 / Stopwatch.Frequency / iterations;
        return _steps.Select(s => s.Label).Concat(backward.Select(s => s.Label + ", backward"))
            .Select((label, i) => (label, ticks[i] * scale)).ToArray();
    }

    private static readonly CpuStorage Placeholder = new(Array.Empty<float>());

    private static void Bind(Tensor window, Tensor caller, DType dtype, string name)
    {
        if (caller.Device != Device.Cpu || caller.DType != dtype || !caller.IsContiguous || !caller.Shape.SequenceEqual(window.Shape))
            throw new ArgumentException($"The training plan expects {name} as a contiguous {dtype} CPU tensor of shape {Tensor.FormatShape(window.Shape)}; got {caller.DType} {Tensor.FormatShape(caller.Shape)} on {caller.Device}{(caller.IsContiguous ? "" : ", non-contiguous")}.", name);
        window.storage = caller.storage;
        window.offset = caller.offset;
    }

    private static IBackend Cpu => Device.Cpu.Backend;

    /// <summary>
    /// Where a backward kernel writes the gradient of one input, and what follows: nothing when that is the input's
    /// gradient (its only use), a sum with the earlier uses' gradient, or an addition to a parameter's
    /// <see cref="Tensor.Grad"/>. The order of the sums is eager autograd's.
    /// </summary>
    private sealed class GradSink
    {
        /// <summary>Where the kernel writes (for an op that passes the gradient through: the output's gradient).</summary>
        public required Tensor Target;
        /// <summary>Sum = First + Target, when set.</summary>
        public Tensor? First, Sum;
        /// <summary>Leaf.Grad += Target, when set.</summary>
        public Tensor? Leaf;

        public void Finish()
        {
            if (Sum is not null) Cpu.Binary(BinaryOp.Add, First!, Target, Sum);
            else if (Leaf is not null)
            {
                if (Leaf.Grad is null) Leaf.Grad = Target.Detach().Clone();
                else Leaf.Grad.AddInPlace(Target);
            }
        }
    }

    /// <summary>An op's operand: a value the plan computes, or a leaf (a parameter, or a constant tensor).</summary>
    private readonly record struct Operand(int Value, Tensor? Leaf);

    private abstract class Stage
    {
        public required string Label;
        public Operand[] Operands = [];
        public int Out;
        /// <summary>The gradient of the output; the kernels' targets per operand (null: no gradient wanted).</summary>
        public Tensor Dy = null!;
        public GradSink?[] Sinks = [];
        public bool HasBackward;

        /// <summary>True when the inputs' gradients are the output's gradient (addition, views, copies).</summary>
        public virtual bool PassesThrough => false;

        /// <summary>What a step that passes its gradient through hands on: the output's gradient, unless the step changes it first.</summary>
        public virtual Tensor PassedGradient => Dy;

        public abstract void Forward();

        public virtual void Backward()
        {
            foreach (var sink in Sinks) sink?.Finish();
        }
    }

    private sealed class ConvStep : Stage
    {
        public required Tensor X, W, Y;
        public Tensor? B;
        public Conv2dParams P;
        // Bias gradient: sums over Q, then P, then N (eager's order of Sum([0, 2, 3])).
        public Tensor? SumQ, SumPQ;
        // A stem whose output only this batch norm reads: the weight gradient makes its dy (the batch norm's input
        // gradient, never stored) chunk by chunk from the coefficients the batch norm's backward left.
        public BatchNormStep? Norm;

        // Set when a training batch norm over large planes alone reads Y and this convolution runs sample by sample: it
        // leaves each output plane's sums there for the batch norm (Compiler.SumPlanesInConvolutions).
        public BatchNormPlaneSums? PlaneSums;

        public override void Forward()
        {
            if (PlaneSums is not null) CpuBackend.Instance.Conv2dWithPlaneSums(X, W, B, Y, P, PlaneSums);
            else Cpu.Conv2d(X, W, B, Y, P);
        }

        /// <summary>
        /// Whether the input's gradient is the sum of another op's and this one's, made as this one's is stored
        /// (Compiler.AddInputGradientsAsStored); the sink's Target is then not written.
        /// </summary>
        public bool AddsInputGradient;

        public override void Backward()
        {
            if (Norm is { } bn)
            {
                var weight = Sinks[1]!;
                CpuBackend.Instance.Conv2dBackwardWeightThroughBatchNorm(X, weight.Target, P, bn.X, bn.Dy, bn.Mean, bn.Coefficients!,
                    bn.Relu ? bn.Y : null, bn.HardswishScaleOffset, bn.Pool, bn.PoolIndices);
                weight.Finish();
                return;
            }
            if (AddsInputGradient)
            {
                // The second gradient of an input that two ops read: added to the first as it is stored.
                CpuBackend.Instance.Conv2dBackwardDataPlus(Dy, W, Sinks[0]!.First!, Sinks[0]!.Sum!, P);
            }
            else if (Sinks[0] is { } dx) { Cpu.Conv2dBackwardData(Dy, W, dx.Target, P); dx.Finish(); }
            if (Sinks[1] is { } dw) { Cpu.Conv2dBackwardWeight(Dy, X, dw.Target, P); dw.Finish(); }
            if (Sinks.Length > 2 && Sinks[2] is { } db)
            {
                Cpu.Reduce(ReduceOp.Sum, Dy, SumQ!, null, P.N * P.K * P.P, P.Q, 1);
                Cpu.Reduce(ReduceOp.Sum, SumQ!, SumPQ!, null, P.N * P.K, P.P, 1);
                Cpu.Reduce(ReduceOp.Sum, SumPQ!, db.Target, null, 1, P.N, P.K);
                db.Finish();
            }
        }
    }

    /// <summary>
    /// A training-mode batch norm, with the ReLU that alone reads it when <see cref="Relu"/>, or the Hardswish when
    /// <see cref="HardswishScaleOffset"/> is set (Y is then the activation's output).
    /// </summary>
    private sealed class BatchNormStep : Stage
    {
        public required Tensor X, Gamma, Beta, Y, Mean, InvStd, Dx, Dgamma, Dbeta;
        public Tensor? RunningMean, RunningVar;
        public BatchNorm2d? Module;
        public float Momentum, Eps;
        public int N, C, HW;
        public bool Relu;
        // A fused Hardswish: each channel's scale and offset ([2C]), saved forward and read backward.
        public Tensor? HardswishScaleOffset;
        // A 2x2 / 2 max pool that alone reads the Hardswish, fused too: Y is then its output, PoolIndices its argmax.
        public Pool2dParams? Pool;
        public Tensor? PoolIndices;
        // An addition that alone reads the batch norm (small planes), with its other operand: Y is then the addition's
        // output (with the ReLU the addition may carry).
        public AddStep? Sum;
        public Tensor? Residual;
        // Set when the stem before it makes dx itself (ConvStep.Norm): backward then leaves dx's coefficients here ([3C]).
        public Tensor? Coefficients;
        // A fused ReLU over large planes: each channel's scale and offset ([2C]; Compiler.SaveReluScaleOffsets), so that
        // the backward tells where the ReLU's output is positive from X instead of reading Y; set by this step's forward
        // when ReluFromInputEnabled.
        public Tensor? ReluScaleOffset;
        // Set when the convolution before it leaves X's planes' sums (ConvStep.PlaneSums): read instead of X's planes.
        public BatchNormPlaneSums? PlaneSums;
        private bool _reluFromInput;

        public override void Forward()
        {
            float momentum = Module?.CountTrainingBatch() ?? Momentum;
            _reluFromInput = ReluScaleOffset is not null && ReluFromInputEnabled;
            // A fused addition's pool (Sum.Pool) runs forward only: backward, the addition rebuilds its gradient from the pool's.
            CpuBackend.Instance.BatchNormTraining(X, Gamma, Beta, Y, Mean, InvStd, RunningMean, RunningVar, momentum, Eps, N, C, HW, Relu,
                HardswishScaleOffset, Pool ?? Sum?.Pool, PoolIndices ?? Sum?.PoolIndices, Residual, Sum?.Relu ?? false,
                _reluFromInput ? ReluScaleOffset : null, PlaneSums);
        }

        public override void Backward()
        {
            var reluOutput = Relu && !_reluFromInput ? Y : null;
            if (Coefficients is not null)
                CpuBackend.Instance.BatchNormBackwardSums(X, Dy, Gamma, Mean, InvStd, Coefficients, Dgamma, Dbeta, N, C, HW, reluOutput,
                    HardswishScaleOffset, Pool, PoolIndices);
            else
                CpuBackend.Instance.BatchNormBackward(X, Dy, Gamma, Mean, InvStd, Dx, Dgamma, Dbeta, N, C, HW, reluOutput, HardswishScaleOffset,
                    Pool, PoolIndices, _reluFromInput ? ReluScaleOffset : null);
            base.Backward();
        }
    }

    private sealed class UnaryStep : Stage
    {
        public required Tensor X, Y;
        public UnaryOp Op;
        public float Alpha, Beta;

        public override void Forward() => Cpu.Unary(Op, X, Y, Alpha, Beta);

        public override void Backward()
        {
            if (Sinks[0] is not { } dx) return;
            Cpu.UnaryBackward(Op, X, Y, Dy, dx.Target, Alpha, Beta);
            dx.Finish();
        }
    }

    /// <summary>
    /// An addition of two tensors of one shape, with the ReLU that alone reads it when <see cref="Relu"/> (Y is then the
    /// ReLU's output, and both operands get the ReLU's input gradient, <see cref="Masked"/>).
    /// </summary>
    private sealed class AddStep : Stage
    {
        public required Tensor A, B, Y;
        public bool Relu;
        public Tensor? Masked;
        // The batch norm that computes this addition (and its ReLU) in its output pass, or null.
        public BatchNormStep? Into;
        // A max pool of column windows that alone reads the ReLU, fused too: Y is then its output, PoolIndices its argmax.
        public Pool2dParams? Pool;
        public Tensor? PoolIndices;
        public override bool PassesThrough => true;
        public override Tensor PassedGradient => Relu ? Masked! : Dy;

        public override void Forward()
        {
            if (Into is not null) return;
            if (Pool is { } p) CpuBackend.Instance.AddReluMaxPool(A, B, Y, PoolIndices!, p);
            else if (Relu) CpuBackend.Instance.AddRelu(A, B, Y);
            else Cpu.Binary(BinaryOp.Add, A, B, Y);
        }

        public override void Backward()
        {
            // The ReLU's backward, its mask read from its output (positive exactly where its input is); with a pool, the
            // pool's gradient rebuilt and masked by the pooled values.
            if (Pool is { } p) CpuBackend.Instance.ReluMaxPoolBackward(Dy, PoolIndices!, Y, Masked!, p);
            else if (Relu) Cpu.UnaryBackward(UnaryOp.Relu, Y, Y, Dy, Masked!, 0f, 0f);
            base.Backward();
        }
    }

    private sealed class ViewStep : Stage
    {
        // A copy's source and destination; null for a view, which costs nothing.
        public Tensor? X, Y;
        public override bool PassesThrough => true;
        public override void Forward()
        {
            if (X is not null) Cpu.Copy(X, Y!);
        }
    }

    private sealed class PoolStep : Stage
    {
        public required Tensor X, Y;
        public Tensor? Indices;
        public PoolKind Kind;
        public Pool2dParams P;

        public override void Forward() => Cpu.Pool2d(Kind, X, Y, Indices, P);

        public override void Backward()
        {
            if (Sinks[0] is not { } dx) return;
            Cpu.Pool2dBackward(Kind, Dy, Indices, dx.Target, P);
            dx.Finish();
        }
    }

    /// <summary>Log-softmax over the classes, negative log-likelihood, mean over the batch: eager's CrossEntropy.</summary>
    private sealed class CrossEntropyStep : Stage
    {
        public required Tensor Logits, LogProbs, Targets, Losses, Loss, DLosses, DLogProbs;
        public int Rows, Cols;

        public override void Forward()
        {
            Cpu.Softmax(Logits, LogProbs, Rows, Cols, log: true);
            Cpu.NllLoss(LogProbs, Targets, null, 0, Losses, Rows, Cols);
            Cpu.Reduce(ReduceOp.Mean, Losses, Loss, null, 1, Rows, 1);
        }

        public override void Backward()
        {
            // The mean's gradient: 1 (the root) times 1/N, which eager computes as an affine map of ones.
            Cpu.Fill(DLosses, 1f / Rows);
            Cpu.NllLossBackward(Targets, null, 0, DLosses, DLogProbs, Rows, Cols);
            if (Sinks[0] is not { } dx) return;
            Cpu.SoftmaxBackward(LogProbs, DLogProbs, dx.Target, Rows, Cols, log: true);
            dx.Finish();
        }
    }

    private sealed class Compiler(Tensor input, Tensor output)
    {
        private sealed class Value
        {
            public required Tensor Data;
            public bool NeedsGrad, OnInput, Reached;
            public int Uses, UsesWired;
            public Tensor? Grad, FirstRef, Temp;
        }

        private readonly Dictionary<Tensor, int> _valueOf = new(ReferenceEqualityComparer.Instance);
        private readonly List<Value> _values = [];
        private readonly List<Stage> _steps = [];
        private readonly Dictionary<Tensor, int[]> _leaves = new(ReferenceEqualityComparer.Instance);
        // How many traced ops read each tensor, and the batch-norm or addition step that computes a value.
        private readonly Dictionary<Tensor, int> _readers = new(ReferenceEqualityComparer.Instance);
        private readonly Dictionary<int, BatchNormStep> _batchNormOf = [];
        private readonly Dictionary<int, AddStep> _addOf = [];
        // Additions that alone read a batch norm over large planes, with their other operand (FuseLargePlaneAdditions).
        private readonly List<(AddStep Sum, BatchNormStep Norm, Operand Other)> _largePlaneAdditions = [];
        private long _bytes;
        private readonly List<(CpuStorage Storage, int Length)> _gradients = [];
        // Arrays that ShareGradientMemory gave to more than one buffer.
        private HashSet<float[]> _sharedArrays = [];
        // Gradient buffers that a fusion left unused (ComputeStemGradientsInPlace): they get no memory.
        private readonly HashSet<Storage> _unused = new(ReferenceEqualityComparer.Instance);

        public CpuTrainingPlan Build()
        {
            if (output.Rank != 2 || output.Size(0) != input.Size(0))
                throw new NotSupportedException($"CpuTrainingPlan trains classifiers: the model must output logits [N, classes] for an input of batch N; it gave {Tensor.FormatShape(output.Shape)} for {Tensor.FormatShape(input.Shape)}.");
            var window = new Tensor(Placeholder, input.ShapeArray());
            _values.Add(new Value { Data = window, OnInput = true });
            _valueOf[input] = 0;
            var nodes = Nodes();
            foreach (var node in nodes)
                foreach (var t in node.Inputs)
                    _readers[t] = _readers.GetValueOrDefault(t) + 1;
            foreach (var node in nodes) Compile(node);
            FuseLargePlaneAdditions();
            if (!_valueOf.TryGetValue(output, out int logits))
                throw new NotSupportedException("CpuTrainingPlan: the model's output does not depend on its input.");

            int rows = output.Size(0), cols = output.Size(1);
            var targets = new Tensor(Placeholder, [rows]);
            var loss = Buffer([1]);
            _steps.Add(new CrossEntropyStep
            {
                Label = $"cross-entropy over {cols} classes",
                Operands = [new Operand(logits, null)],
                Out = NewValue(loss, needsGrad: true),
                Logits = _values[logits].Data, LogProbs = Buffer([rows, cols]), Targets = targets, Losses = Buffer([rows]),
                Loss = loss, DLosses = Buffer([rows]), DLogProbs = Buffer([rows, cols]), Rows = rows, Cols = cols,
            });
            WireBackward();
            AddInputGradientsAsStored();
            ComputeStemGradientsInPlace();
            SumPlanesInConvolutions();
            SaveReluScaleOffsets();
            ShareGradientMemory();
            var inputViews = _values.Skip(1).Where(v => v.OnInput).Select(v => v.Data).ToArray();
            return new CpuTrainingPlan(_steps.ToArray(), window, inputViews, targets, _values[logits].Data, loss,
                _leaves.Select(l => (l.Key, l.Value)).ToArray(), _bytes, Alternating());
        }

        private List<Node> Nodes() => output.GradFn is null
            ? throw new NotSupportedException("CpuTrainingPlan: tracing the model recorded no ops.")
            : Autograd.Autograd.NodesBehind(output);

        private Tensor Buffer(int[] shape, DType dtype = DType.Float32)
        {
            var n = Math.Max(1, Tensor.Numel(shape));
            _bytes += (long)n * (dtype == DType.Float32 ? sizeof(float) : sizeof(int));
            return new Tensor(CpuStorage.Allocate(dtype, n), shape);
        }

        /// <summary>
        /// A buffer of the backward pass (a gradient, or a step's scratch there), whose memory <see cref="ShareGradientMemory"/>
        /// gives once the steps that touch it are known.
        /// </summary>
        private Tensor GradientBuffer(int[] shape)
        {
            var storage = CpuStorage.Deferred(DType.Float32);
            _gradients.Add((storage, Math.Max(1, Tensor.Numel(shape))));
            return new Tensor(storage, shape);
        }

        /// <summary>
        /// Gives each backward buffer its memory: buffers of one length whose uses do not overlap (by the backward steps
        /// that read or write them) share an array, the one freed last, as a caching allocator hands out the block freed
        /// last. A kernel then mostly writes its gradient into memory that a step just before it read, still in cache,
        /// instead of into memory no step has touched since the previous training step; and the plan holds as many
        /// gradients as are live at once, not one per value.
        /// </summary>
        private void ShareGradientMemory()
        {
            var first = new Dictionary<Storage, int>(ReferenceEqualityComparer.Instance);
            var last = new Dictionary<Storage, int>(ReferenceEqualityComparer.Instance);
            int at = 0;
            for (int i = _steps.Count - 1; i >= 0; i--)
            {
                var step = _steps[i];
                if (!step.HasBackward) continue;
                foreach (var t in TouchedBackward(step))
                {
                    first.TryAdd(t.storage, at);
                    last[t.storage] = at;
                }
                at++;
            }
            // In order of first use, each buffer takes the array freed last among those of its length whose buffers are
            // done (their last step strictly before its first: a step that reads one buffer and writes another needs
            // both). A buffer no step lists keeps an array of its own.
            var free = new Dictionary<int, Stack<float[]>>();
            var bound = new List<(int Last, int Length, float[] Array)>();
            var owners = new Dictionary<float[], int>();
            foreach (var (storage, length) in _gradients.OrderBy(g => first.GetValueOrDefault(g.Storage, int.MaxValue)))
            {
                if (_unused.Contains(storage)) continue;
                if (!first.TryGetValue(storage, out int start))
                {
                    storage.Bind(NewArray(length));
                    continue;
                }
                for (int b = bound.Count - 1; b >= 0; b--)
                {
                    if (bound[b].Last >= start) continue;
                    if (!free.TryGetValue(bound[b].Length, out var stack)) free[bound[b].Length] = stack = new Stack<float[]>();
                    stack.Push(bound[b].Array);
                    bound.RemoveAt(b);
                }
                var array = free.TryGetValue(length, out var same) && same.Count > 0 ? same.Pop() : NewArray(length);
                storage.Bind(array);
                owners[array] = owners.GetValueOrDefault(array) + 1;
                bound.Add((last[storage], length, array));
            }
            _sharedArrays = owners.Where(o => o.Value > 1).Select(o => o.Key).ToHashSet();
        }

        /// <summary>
        /// Pairs of buffers that trade arrays after every step: a batch norm's input and its input gradient, of one length,
        /// neither array shared with another buffer. The input is written early in the forward pass and the gradient read
        /// late in the backward pass (for the stem: the first write of a step and the last read, the largest buffers), so
        /// after the trade the next step writes the batch norm's input where this step's last reads were, still in cache,
        /// rather than into memory last touched before them. (The stem's convolution forward, MNIST b256, two threads,
        /// big model: 0.47-0.49 -> 0.42-0.43 ms in a quiet spell of the machine, 1.25-1.30 -> 0.71 ms in a busy one.)
        /// </summary>
        private (CpuStorage, CpuStorage)[] Alternating() => _steps.OfType<BatchNormStep>()
            .Where(bn => bn.X.storage is CpuStorage x && bn.Dx.storage is CpuStorage dx && !ReferenceEquals(x, dx)
                && x.DType == dx.DType && x.Length == dx.Length && x.Array is float[] xa && dx.Array is float[] dxa
                && !_sharedArrays.Contains(xa) && !_sharedArrays.Contains(dxa))
            .Select(bn => ((CpuStorage)bn.X.storage, (CpuStorage)bn.Dx.storage))
            .ToArray();

        private float[] NewArray(int length)
        {
            _bytes += (long)length * sizeof(float);
            return new float[length];
        }

        /// <summary>
        /// Every tensor the backward of <paramref name="step"/> reads or writes that may be a backward buffer (a stage
        /// whose backward uses a <see cref="GradientBuffer"/> held elsewhere must list it here).
        /// </summary>
        private static IEnumerable<Tensor> TouchedBackward(Stage step)
        {
            if (step.Dy is not null) yield return step.Dy;
            if (step.PassesThrough) yield return step.PassedGradient;
            foreach (var (sink, i) in step.Sinks.Select((sink, i) => (sink, i)))
            {
                if (sink is null) continue;
                // A convolution that adds its input gradient as it stores it writes the sum, not the target.
                if (i > 0 || step is not ConvStep { AddsInputGradient: true }) yield return sink.Target;
                if (sink.First is not null) yield return sink.First;
                if (sink.Sum is not null) yield return sink.Sum;
            }
            if (step is BatchNormStep bn)
            {
                yield return bn.Dx;
                yield return bn.Dgamma;
                yield return bn.Dbeta;
            }
        }

        /// <summary>Stops counting a buffer that a fusion made unnecessary (it is left to the garbage collector).</summary>
        private void Release(Tensor buffer) => _bytes -= (long)Math.Max(1, buffer.NumElements) * sizeof(float);

        private int NewValue(Tensor data, bool needsGrad, bool onInput = false)
        {
            _values.Add(new Value { Data = data, NeedsGrad = needsGrad, OnInput = onInput });
            return _values.Count - 1;
        }

        /// <summary>The operand for input <paramref name="index"/> of <paramref name="node"/>, and whether it wants a gradient.</summary>
        private Operand OperandOf(Node node, int index)
        {
            var t = node.Inputs[index];
            if (_valueOf.TryGetValue(t, out int v)) return new Operand(v, null);
            if (t.GradFn is not null)
                throw new NotSupportedException($"CpuTrainingPlan: {node} reads a tensor computed by an op outside the traced graph.");
            if (t.Device != Device.Cpu || !t.IsContiguous)
                throw new NotSupportedException($"CpuTrainingPlan: {node} reads a weight that is not a contiguous CPU tensor.");
            _leaves[t] = t.ShapeArray();
            return new Operand(-1, t);
        }

        private Tensor DataOf(Operand o) => o.Leaf ?? _values[o.Value].Data;

        private bool Wants(Operand o) => o.Leaf?.RequiresGrad ?? _values[o.Value].NeedsGrad;

        /// <summary>Adds <paramref name="step"/>, whose output (the traced op's <paramref name="node"/>) lives in <paramref name="data"/>.</summary>
        private void Add(Stage step, Node node, Tensor data, bool onInput = false)
        {
            step.Out = NewValue(data, step.Operands.Any(Wants), onInput);
            _valueOf[node.Output] = step.Out;
            _steps.Add(step);
        }

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
                    throw new NotSupportedException($"CpuTrainingPlan cannot run {node.Kind} ({node}); train this model eagerly.");
            }
        }

        private void CompileConv(Node node)
        {
            var ops = Enumerable.Range(0, node.Inputs.Count).Select(i => OperandOf(node, i)).ToArray();
            var x = DataOf(ops[0]);
            var w = DataOf(ops[1]);
            var a = node.Attributes;
            int[] stride = (int[])a["stride"], pad = (int[])a["padding"], dil = (int[])a["dilation"];
            var p = new Conv2dParams(x.Size(0), x.Size(1), x.Size(2), x.Size(3), w.Size(0), w.Size(2), w.Size(3),
                stride[0], stride[1], pad[0], pad[1], dil[0], dil[1], (int)a["groups"]);
            var y = Buffer(node.Output.ShapeArray());
            var step = new ConvStep
            {
                Label = $"conv {p.C}->{p.K} {p.R}x{p.S}/{p.StrideH} on {p.H}x{p.W}",
                Operands = ops, X = x, W = w, B = ops.Length > 2 ? DataOf(ops[2]) : null, Y = y, P = p,
            };
            if (ops.Length > 2)
            {
                step.SumQ = Buffer([p.N, p.K, p.P, 1]);
                step.SumPQ = Buffer([p.N, p.K, 1, 1]);
            }
            Add(step, node, y);
        }

        private void CompileBatchNorm(Node node)
        {
            var a = node.Attributes;
            if (!(bool)a["training"])
                throw new NotSupportedException($"CpuTrainingPlan runs batch norm in training mode only ({node} ran in eval mode).");
            var ops = Enumerable.Range(0, 3).Select(i => OperandOf(node, i)).ToArray();
            var x = DataOf(ops[0]);
            int n = x.Size(0), c = x.Size(1), hw = x.NumElements / Math.Max(n * c, 1);
            var runningMean = a.TryGetValue("running_mean", out var rm) ? (Tensor)rm : null;
            var runningVar = a.TryGetValue("running_var", out var rv) ? (Tensor)rv : null;
            // The layer counts its batches (and, without a momentum, averages with 1 / count): the step asks it each time.
            var module = node.Module is BatchNorm2d bn && ReferenceEquals(bn.RunningMean, runningMean) ? bn : null;
            var y = Buffer(x.ShapeArray());
            var step = new BatchNormStep
            {
                Label = $"batch norm {c} on {(x.Rank == 4 ? $"{x.Size(2)}x{x.Size(3)}" : "vectors")}",
                Operands = ops, X = x, Gamma = DataOf(ops[1]), Beta = DataOf(ops[2]), Y = y,
                Mean = Buffer([c]), InvStd = Buffer([c]), Dx = null!, Dgamma = null!, Dbeta = null!,
                RunningMean = runningMean, RunningVar = runningVar, Module = module,
                Momentum = (float)a["momentum"], Eps = (float)a["eps"], N = n, C = c, HW = hw,
            };
            Add(step, node, y);
            _batchNormOf[step.Out] = step;
        }

        private void CompileUnary(Node node)
        {
            var ops = new[] { OperandOf(node, 0) };
            var x = DataOf(ops[0]);
            var a = node.Attributes;
            var op = (UnaryOp)a["op"];
            // A ReLU or Hardswish that alone reads a batch norm's output runs in the batch norm's passes (one pass over the
            // activation forward and one backward instead of two each, and the batch norm's output is never stored); same
            // results. The Hardswish's backward recomputes its input, which the batch-norm kernel for planes of 64 values
            // or more can do.
            bool alone = op is UnaryOp.Relu or UnaryOp.Hardswish && ops[0].Leaf is null && _readers[node.Inputs[0]] == 1
                && !ReferenceEquals(node.Inputs[0], output);
            if (alone && _batchNormOf.TryGetValue(ops[0].Value, out var bn) && !bn.Relu && bn.HardswishScaleOffset is null
                && (op == UnaryOp.Relu || bn.HW >= BatchNormKernels.SmallPlane))
            {
                if (op == UnaryOp.Relu) bn.Relu = true;
                else bn.HardswishScaleOffset = Buffer([2 * bn.C]);
                bn.Label += op == UnaryOp.Relu ? " + relu" : " + hardswish";
                _valueOf[node.Output] = bn.Out;
                return;
            }
            // Likewise a ReLU that alone reads a residual addition: one pass forward; backward, its mask is read from its
            // output and both operands get the masked gradient.
            if (alone && op == UnaryOp.Relu && _addOf.TryGetValue(ops[0].Value, out var sum) && !sum.Relu)
            {
                sum.Relu = true;
                sum.Label += " + relu";
                if (sum.Into is not null) sum.Into.Label += " + relu";
                sum.Masked = GradientBuffer(sum.Y.ShapeArray());
                _valueOf[node.Output] = sum.Out;
                return;
            }
            var y = Buffer(x.ShapeArray());
            Add(new UnaryStep { Label = op.ToString().ToLowerInvariant(), Operands = ops, X = x, Y = y, Op = op, Alpha = (float)a["alpha"], Beta = (float)a["beta"] }, node, y);
        }

        private void CompileAdd(Node node)
        {
            var op = (BinaryOp)node.Attributes["op"];
            if (op != BinaryOp.Add)
                throw new NotSupportedException($"CpuTrainingPlan runs only additions among the binary ops, not {op} ({node}); train this model eagerly.");
            var ops = new[] { OperandOf(node, 0), OperandOf(node, 1) };
            var (a, b) = (DataOf(ops[0]), DataOf(ops[1]));
            if (!a.Shape.SequenceEqual(b.Shape))
                throw new NotSupportedException($"CpuTrainingPlan adds tensors of one shape, not {Tensor.FormatShape(a.Shape)} and {Tensor.FormatShape(b.Shape)} ({node}).");
            var y = Buffer(a.ShapeArray());
            var step = new AddStep { Label = "add", Operands = ops, A = a, B = b, Y = y };
            Add(step, node, y);
            _addOf[step.Out] = step;
            // A batch norm whose output only this addition reads, and which runs after the addition's other operand is
            // computed (a residual block's last batch norm, or its shortcut's), adds that operand in its output pass, and
            // the ReLU after the addition too when it fuses there: one pass over the block's output instead of two, and the
            // batch norm's output is never stored. The addition keeps its step for the backward (the ReLU's mask). Same
            // bits. Over large planes once the whole graph is compiled (FuseLargePlaneAdditions), with the max pool that
            // may take the addition + ReLU meanwhile.
            for (int i = 1; i >= 0; i--)
            {
                var other = ops[1 - i];
                if (ops[i].Leaf is not null || other.Leaf is not null || _readers[node.Inputs[i]] != 1 || ReferenceEquals(node.Inputs[i], output)
                    || other.Value >= ops[i].Value || !_batchNormOf.TryGetValue(ops[i].Value, out var bn)
                    || bn.Relu || bn.HardswishScaleOffset is not null || bn.Pool is not null)
                    continue;
                if (bn.HW < BatchNormKernels.SmallPlane) FuseAddition(step, bn, other);
                else if (LargePlaneAdditionEnabled) _largePlaneAdditions.Add((step, bn, other));
                break;
            }
        }

        /// <summary>
        /// The addition <paramref name="sum"/> (with the ReLU and the pool it runs) runs in <paramref name="bn"/>'s output
        /// pass, <paramref name="other"/> its residual; <paramref name="bn"/> writes the addition's output. The batch
        /// norm's value keeps its own buffer, unused, for its shape: its gradient's, which a pool does not change.
        /// </summary>
        private void FuseAddition(AddStep sum, BatchNormStep bn, Operand other)
        {
            Release(bn.Y);
            bn.Y = sum.Y;
            bn.Residual = DataOf(other);
            bn.Sum = sum;
            // What the addition's label says after "add": " + relu", " + relu + max pool ...", or nothing.
            string fused = sum.Label["add".Length..];
            bn.Label += " + add" + fused;
            sum.Into = bn;
            sum.Label = "add (in the batch norm)" + fused;
        }

        /// <summary>
        /// The additions that alone read a batch norm over large planes run in its output pass, as over small planes
        /// (<see cref="CompileAdd"/>), and where a max pool of column windows took the addition + ReLU (mel's stage-1
        /// blocks, <see cref="AddStep.Pool"/>) the pool too: each plane of the batch norm's output is made in L1 and
        /// pooled with its residual there, so neither the batch norm's output nor the sum is stored.
        /// </summary>
        private void FuseLargePlaneAdditions()
        {
            foreach (var (sum, bn, other) in _largePlaneAdditions) FuseAddition(sum, bn, other);
        }

        private void CompileView(Node node)
        {
            var ops = new[] { OperandOf(node, 0) };
            if (ops[0].Leaf is not null)
                throw new NotSupportedException($"CpuTrainingPlan: {node} reshapes a weight; only computed values may be reshaped.");
            var source = _values[ops[0].Value];
            var shape = node.Output.ShapeArray();
            if (node.Kind == OpKind.Copy)
            {
                var copy = Buffer(shape);
                Add(new ViewStep { Label = "copy", Operands = ops, X = source.Data, Y = copy }, node, copy);
                return;
            }
            var view = new Tensor(source.Data.storage, shape, Tensor.ContiguousStrides(shape), source.Data.offset);
            Add(new ViewStep { Label = $"reshape to {Tensor.FormatShape(shape)}", Operands = ops }, node, view, source.OnInput);
        }

        private void CompilePool(Node node)
        {
            var ops = new[] { OperandOf(node, 0) };
            var x = DataOf(ops[0]);
            var a = node.Attributes;
            int[] k = (int[])a["kernel"], s = (int[])a["stride"], pad = (int[])a["padding"];
            var p = new Pool2dParams(x.Size(0), x.Size(1), x.Size(2), x.Size(3), k[0], k[1], s[0], s[1], pad[0], pad[1], (bool)a["ceil_mode"]);
            var kind = node.Kind == OpKind.MaxPool2d ? PoolKind.Max : PoolKind.Average;
            bool alone = kind == PoolKind.Max && ops[0].Leaf is null && _readers[node.Inputs[0]] == 1 && !ReferenceEquals(node.Inputs[0], output);
            string fused = $" + max pool {k[0]}x{k[1]}/{s[0]}x{s[1]}";
            // A 2x2 / 2 max pool that alone reads a batch norm + Hardswish (the stem's) runs in the batch norm's passes:
            // each plane pooled in L1 as the Hardswish writes it, and backward its gradient rebuilt there from the
            // pool's; the Hardswish's output is never stored. Same results.
            if (alone && _batchNormOf.TryGetValue(ops[0].Value, out var bn) && bn.HardswishScaleOffset is not null && bn.Pool is null
                && PoolKernels.IsWhole2x2(p))
            {
                (bn.Y, bn.PoolIndices) = PoolInto(bn, bn.Y, node, fused);
                bn.Pool = p;
                return;
            }
            // Likewise a max pool of column windows (CP-ResNet's 2 x 1) that alone reads a residual addition + ReLU over
            // large planes: the sum is pooled as it is made, never stored, and backward the operands' gradient is rebuilt
            // from the pool's. Same results.
            if (alone && AddReluPoolEnabled && _addOf.TryGetValue(ops[0].Value, out var sum) && sum.Relu && sum.Into is null && sum.Pool is null
                && PoolKernels.FusesAddRelu(p))
            {
                (sum.Y, sum.PoolIndices) = PoolInto(sum, sum.Y, node, fused);
                sum.Pool = p;
                return;
            }
            var y = Buffer(node.Output.ShapeArray());
            Add(new PoolStep
            {
                Label = $"{(kind == PoolKind.Max ? "max" : "average")} pool {k[0]}x{k[1]}/{s[0]}x{s[1]} on {p.H}x{p.W}",
                Operands = ops, X = x, Y = y, Kind = kind, P = p,
                Indices = kind == PoolKind.Max ? Buffer(node.Output.ShapeArray(), DType.Int32) : null,
            }, node, y);
        }

        /// <summary>
        /// A pool <paramref name="node"/> that <paramref name="step"/> runs in its own pass: the step's output becomes the
        /// pool's (its unpooled buffer released); returns the pooled output and the indices buffer.
        /// </summary>
        private (Tensor Pooled, Tensor Indices) PoolInto(Stage step, Tensor unpooled, Node node, string label)
        {
            var pooled = Buffer(node.Output.ShapeArray());
            Release(unpooled);
            _values[step.Out].Data = pooled;
            step.Label += label;
            _valueOf[node.Output] = step.Out;
            return (pooled, Buffer(node.Output.ShapeArray(), DType.Int32));
        }

        private void CompileAdaptive(Node node)
        {
            var ops = new[] { OperandOf(node, 0) };
            var x = DataOf(ops[0]);
            var o = (int[])node.Attributes["output_size"];
            int kh = x.Size(2) / o[0], kw = x.Size(3) / o[1];
            var p = new Pool2dParams(x.Size(0), x.Size(1), x.Size(2), x.Size(3), kh, kw, kh, kw, 0, 0);
            var y = Buffer(node.Output.ShapeArray());
            Add(new PoolStep { Label = $"adaptive average pool to {o[0]}x{o[1]}", Operands = ops, X = x, Y = y, Kind = PoolKind.Average, P = p }, node, y);
        }

        /// <summary>
        /// Decides, from the loss back, which steps run backward and where each gradient goes. A value used once takes
        /// its gradient where its user's backward writes it (for an addition or a view, the user's own output
        /// gradient, with no copy); a value used several times gets its own buffer, and each later use's gradient is
        /// added to the earlier ones in eager autograd's order (the reverse of recording, operands in order).
        /// </summary>
        private void WireBackward()
        {
            // Pass 1: which steps the loss's gradient reaches, and how many of those use each value.
            _values[_steps[^1].Out].Reached = true;
            for (int i = _steps.Count - 1; i >= 0; i--)
            {
                var step = _steps[i];
                step.HasBackward = _values[step.Out].Reached;
                if (!step.HasBackward) continue;
                foreach (var o in step.Operands)
                    if (o.Leaf is null && _values[o.Value].NeedsGrad)
                    {
                        _values[o.Value].Reached = true;
                        _values[o.Value].Uses++;
                    }
            }
            // Pass 2: the gradient targets, in backward order.
            for (int i = _steps.Count - 1; i >= 0; i--)
            {
                var step = _steps[i];
                if (!step.HasBackward) continue;
                if (step is not CrossEntropyStep) step.Dy = _values[step.Out].Grad!;
                step.Sinks = step.Operands.Select(o => Sink(step, o)).ToArray();
                if (step is BatchNormStep bn)
                {
                    // The kernel computes all three gradients; unwanted ones go to scratch buffers.
                    bn.Dx = step.Sinks[0]?.Target ?? GradientBuffer(bn.X.ShapeArray());
                    bn.Dgamma = step.Sinks[1]?.Target ?? GradientBuffer([bn.C]);
                    bn.Dbeta = step.Sinks[2]?.Target ?? GradientBuffer([bn.C]);
                }
            }
        }

        /// <summary>
        /// A stem convolution whose input wants no gradient (the step's input) and whose output only a batch norm over
        /// large planes reads (CP-ResNet's first layer) computes that batch norm's input gradient itself: the batch norm's
        /// backward only sums, and the stem's weight gradient makes each chunk's dy from the sums while it is in cache
        /// (<see cref="CpuBackend.Conv2dBackwardWeightThroughBatchNorm"/>, the same bits). The gradient buffer between
        /// them gets no memory.
        /// </summary>
        private void ComputeStemGradientsInPlace()
        {
            if (!StemGradientInPlaceEnabled) return;
            foreach (var bn in _steps.OfType<BatchNormStep>())
            {
                if (!bn.HasBackward || bn.HW < BatchNormKernels.SmallPlane || bn.Sum is not null || bn.Operands[0].Leaf is not null
                    || bn.Sinks[0] is not { First: null, Sum: null, Leaf: null } sink)
                    continue;
                int value = bn.Operands[0].Value;
                if (_values[value].Uses != 1
                    || _steps.OfType<ConvStep>().FirstOrDefault(c => c.Out == value) is not { } conv
                    || !conv.HasBackward || conv.Sinks[0] is not null || conv.Sinks[1] is null || conv.Sinks is [_, _, not null]
                    || !ReferenceEquals(conv.Dy, sink.Target) || !ConvKernels.RunsStemWeightGradient(conv.P))
                    continue;
                bn.Coefficients = Buffer([3 * bn.C]);
                conv.Norm = bn;
                _unused.Add(conv.Dy.storage);
            }
        }

        /// <summary>
        /// A training batch norm over large planes whose input is a convolution's output, where that convolution runs
        /// sample by sample (<see cref="CpuBackend.Conv2dLeavesPlaneSums"/>: mel's maps), gets its statistics sums from the
        /// convolution, which takes them from each sample's output planes while they are in cache
        /// (<see cref="CpuBackend.Conv2dWithPlaneSums"/>), instead of reading its whole input once more for them before its
        /// output pass: the same sums, so the same bits.
        /// </summary>
        private void SumPlanesInConvolutions()
        {
            if (!PlaneSumsInConvolutionsEnabled) return;
            foreach (var bn in _steps.OfType<BatchNormStep>())
            {
                if (bn.HW < BatchNormKernels.SmallPlane || bn.Operands[0].Leaf is not null) continue;
                int value = bn.Operands[0].Value;
                if (_steps.OfType<ConvStep>().FirstOrDefault(c => c.Out == value) is not { } conv || !ReferenceEquals(conv.Y, bn.X)
                    || !CpuBackend.Conv2dLeavesPlaneSums(conv.P))
                    continue;
                conv.PlaneSums = bn.PlaneSums = new BatchNormPlaneSums(bn.N, bn.C);
            }
        }

        /// <summary>
        /// A convolution whose input another op reads too, and whose gradient there comes second (a residual block's
        /// first convolution, after the shortcut's), adds its input gradient to the first as it stores it
        /// (<see cref="CpuBackend.Conv2dBackwardDataPlus"/>) where its input gradient runs sample by sample, instead of
        /// writing it to a buffer and adding the two in a pass after (Sum = First + Target: the same bits). Not where the
        /// first gradient lies in the sum's array (a projection shortcut's, written there first: the kernels' edge tiles
        /// are stored before their addition). The buffer it no longer writes gets no memory unless another sink writes it.
        /// </summary>
        private void AddInputGradientsAsStored()
        {
            if (!SumInBackwardDataEnabled) return;
            foreach (var conv in _steps.OfType<ConvStep>())
                conv.AddsInputGradient = conv.HasBackward && conv.Norm is null && conv.Sinks is [{ Sum: { } sum, First: { } first }, ..]
                    && !ReferenceEquals(first.storage, sum.storage) && CpuBackend.Conv2dBackwardDataAdds(conv.P);
            var written = _steps.SelectMany(s => s.Sinks.Where((sink, i) => sink is not null && !(i == 0 && s is ConvStep { AddsInputGradient: true })))
                .Select(sink => sink!.Target.storage).ToHashSet(ReferenceEqualityComparer.Instance);
            foreach (var conv in _steps.OfType<ConvStep>())
                if (conv.AddsInputGradient && !written.Contains(conv.Sinks[0]!.Target.storage))
                    _unused.Add(conv.Sinks[0]!.Target.storage);
        }

        /// <summary>
        /// A batch norm whose fused ReLU runs over large planes saves the ReLU's input affine for its backward
        /// (<see cref="BatchNormKernels.ReluInput"/>), which then reads X alone instead of X and the ReLU's output. Not
        /// where the stem makes the batch norm's input gradient (its backward passes take the output still).
        /// </summary>
        private void SaveReluScaleOffsets()
        {
            foreach (var bn in _steps.OfType<BatchNormStep>())
                if (bn.Relu && bn.HasBackward && bn.Sum is null && bn.Coefficients is null && BatchNormKernels.TakesReluScaleOffset(bn.HW))
                    bn.ReluScaleOffset = Buffer([2 * bn.C]);
        }

        private GradSink? Sink(Stage step, Operand o)
        {
            var data = DataOf(o);
            var shape = data.ShapeArray();
            // An op that passes the gradient through hands on its output's gradient, viewed in the operand's shape.
            Tensor? passed = step.PassesThrough
                ? new Tensor(step.PassedGradient.storage, shape, Tensor.ContiguousStrides(shape), step.PassedGradient.offset)
                : null;
            if (o.Leaf is { } leaf)
                return leaf.RequiresGrad ? new GradSink { Target = passed ?? GradientBuffer(shape), Leaf = leaf } : null;
            var v = _values[o.Value];
            if (!v.NeedsGrad) return null;
            int use = v.UsesWired++;
            if (v.Uses == 1)
            {
                v.Grad = passed ?? GradientBuffer(shape);
                return new GradSink { Target = v.Grad };
            }
            if (use == 0)
            {
                v.Grad = GradientBuffer(shape);
                if (passed is null) return new GradSink { Target = v.Grad };
                // The first gradient is read where it lies when the second is added to it.
                v.FirstRef = passed;
                return null;
            }
            var first = use == 1 && v.FirstRef is not null ? v.FirstRef : v.Grad!;
            return new GradSink { Target = passed ?? (v.Temp ??= GradientBuffer(shape)), First = first, Sum = v.Grad };
        }
    }
}
