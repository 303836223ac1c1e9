namespace NeuralCore.NN;

// Shapes: input and output [N, C, H, W]; weight, bias, running_mean, running_var [C]; num_batches_tracked [] (Int64).

/// <summary>
/// Batch normalisation over the channels of NCHW input (PyTorch's <c>nn.BatchNorm2d</c> with affine and tracked
/// running statistics): parameters <c>weight</c> (gamma, init 1) and <c>bias</c> (beta, init 0), buffers
/// <c>running_mean</c> (init 0), <c>running_var</c> (init 1) and <c>num_batches_tracked</c> (Int64 scalar, init 0).
/// </summary>
/// <remarks>
/// In training mode the layer normalises with the batch statistics, updates the running statistics
/// (running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance) and adds one to
/// <c>num_batches_tracked</c>; with momentum null the update is the cumulative average (momentum =
/// 1 / num_batches_tracked), as PyTorch. In eval mode it uses the running statistics. The channel count is read
/// from the weight's shape, so a pruner can slice the weight, bias and running statistics in place.
/// </remarks>
public sealed class BatchNorm2d : Module
{
    private readonly Tensor _runningMean;
    private readonly Tensor _runningVar;
    private readonly Tensor _numBatchesTracked;

    // NOTE: the counter's value as this layer last wrote it, with the storage and write version it wrote. Reading the
    // buffer from a GPU waits for the device, once per layer and step; it is read only after someone else wrote or
    // replaced the buffer (a loaded state dict, a move to another device, CopyFrom).
    private long _trackedValue;
    private Storage? _trackedStorage;
    private int _trackedVersion;

    /// <summary>Creates the layer with weight 1, bias 0, running mean 0 and running variance 1.</summary>
    /// <param name="numFeatures">Channels C.</param>
    /// <param name="eps">Added to the variance before the square root.</param>
    /// <param name="momentum">Weight of the newest batch in the running statistics; null for a cumulative average.</param>
    public BatchNorm2d(int numFeatures, double eps = 1e-5, double? momentum = 0.1)
    {
        if (numFeatures <= 0) throw new ArgumentOutOfRangeException(nameof(numFeatures), numFeatures, "BatchNorm2d needs at least one feature (channel).");
        if (eps < 0) throw new ArgumentOutOfRangeException(nameof(eps), eps, "BatchNorm2d eps must not be negative.");
        if (momentum is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "BatchNorm2d momentum must lie in [0, 1] (or be null for a cumulative average).");
        Eps = eps;
        Momentum = momentum;
        Weight = RegisterParameter("weight", new Parameter(Tensor.Ones([numFeatures])))!;
        Bias = RegisterParameter("bias", new Parameter(Tensor.Zeros([numFeatures])))!;
        _runningMean = RegisterBuffer("running_mean", Tensor.Zeros([numFeatures]))!;
        _runningVar = RegisterBuffer("running_var", Tensor.Ones([numFeatures]))!;
        _numBatchesTracked = RegisterBuffer("num_batches_tracked", Tensor.Zeros([], dtype: DType.Int64))!;
    }

    /// <summary>The scale gamma [C].</summary>
    public Parameter Weight { get; }

    /// <summary>The shift beta [C].</summary>
    public Parameter Bias { get; }

    /// <summary>The running mean [C] (buffer <c>running_mean</c>).</summary>
    public Tensor RunningMean => _runningMean;

    /// <summary>The running (unbiased) variance [C] (buffer <c>running_var</c>).</summary>
    public Tensor RunningVar => _runningVar;

    /// <summary>Number of training batches seen (buffer <c>num_batches_tracked</c>, an Int64 scalar).</summary>
    public long NumBatchesTracked =>
        ReferenceEquals(_trackedStorage, _numBatchesTracked.Storage) && _trackedVersion == _trackedStorage.Version
            ? _trackedValue
            : _numBatchesTracked.ToInt64Array()[0];

    private void SetTracked(long value)
    {
        using (Autograd.Autograd.NoGrad()) _numBatchesTracked.FillInPlace(value);
        _trackedValue = value;
        _trackedStorage = _numBatchesTracked.Storage;
        _trackedVersion = _trackedStorage.Version;
    }

    /// <summary>Added to the variance before the square root.</summary>
    public double Eps { get; }

    /// <summary>Weight of the newest batch in the running statistics; null for a cumulative average.</summary>
    public double? Momentum { get; }

    /// <summary>Channels C, from the weight's shape.</summary>
    public int NumFeatures => Weight.Size(0);

    /// <summary>Resets the running statistics: mean 0, variance 1, no batches tracked.</summary>
    public void ResetRunningStats()
    {
        using var _ = Autograd.Autograd.NoGrad();
        _runningMean.FillInPlace(0);
        _runningVar.FillInPlace(1);
        SetTracked(0);
    }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        if (input.Rank != 4)
            throw new ArgumentException($"BatchNorm2d expects an input [N, C, H, W], got shape {Tensor.FormatShape(input.Shape)}.", nameof(input));
        if (input.Size(1) != NumFeatures)
            throw new ArgumentException($"BatchNorm2d({NumFeatures}) got an input with {input.Size(1)} channels (shape {Tensor.FormatShape(input.Shape)}).", nameof(input));
        var momentum = Training ? CountTrainingBatch() : (float)(Momentum ?? 0);
        return Functional.BatchNorm2d(input, _runningMean, _runningVar, Weight, Bias, Training, momentum, (float)Eps);
    }

    /// <summary>
    /// Counts one training batch in <c>num_batches_tracked</c> and returns the momentum for its running statistics
    /// (<see cref="Momentum"/>, or 1 / count for a cumulative average). Called by the forward pass in training mode and
    /// by a compiled training step.
    /// </summary>
    internal float CountTrainingBatch()
    {
        // NOTE: Int64 element-wise ops are not part of the backends, so the counter is counted on the host.
        var tracked = NumBatchesTracked + 1;
        SetTracked(tracked);
        return (float)(Momentum ?? 1.0 / tracked);
    }

    /// <summary>PyTorch's form, e.g. <c>32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True</c>.</summary>
    public override string ExtraRepr() =>
        $"{NumFeatures}, eps={Repr.Float(Eps)}, momentum={(Momentum is { } m ? Repr.Float(m) : "None")}, affine=True, track_running_stats=True";
}
