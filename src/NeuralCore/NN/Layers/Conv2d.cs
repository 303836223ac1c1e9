namespace NeuralCore.NN;

// Shapes: input x [N, C, H, W], weight [K, C/groups, R, S], bias [K], output [N, K, P, Q].

/// <summary>
/// 2-D convolution layer (PyTorch's <c>nn.Conv2d</c>) with parameters <c>weight</c> [K, C/groups, R, S] and
/// <c>bias</c> [K] (registered as null when <c>bias: false</c>).
/// </summary>
/// <remarks>
/// <para>
/// The channel counts and the kernel size are read from the weight's shape, not stored: a pruner may replace the
/// weight's data with a slice (<see cref="Tensor.SetData"/>, keeping the parameter's identity) and the layer
/// follows. <see cref="OutChannels"/> = K, <see cref="KernelSize"/> = (R, S), <see cref="InChannels"/> =
/// (C/groups) * <see cref="Groups"/>.
/// </para>
/// <para>
/// <see cref="Groups"/> is fixed at construction, except for a depthwise convolution (groups == in_channels and
/// one input channel per group), where it is K / multiplier with the channel multiplier fixed at construction, so
/// removing a channel from a depthwise convolution removes its group as well.
/// </para>
/// <para>
/// Initialisation matches PyTorch's <c>reset_parameters</c>: weight Kaiming-uniform with a = sqrt(5), i.e.
/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = C/groups * R * S, then bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
/// both drawn from the given generator in that order.
/// </para>
/// </remarks>
public sealed class Conv2d : Module
{
    private readonly int _groups;
    private readonly int _depthwiseMultiplier;

    /// <summary>Creates the layer and initialises it as PyTorch does.</summary>
    /// <param name="inChannels">Input channels C.</param>
    /// <param name="outChannels">Output channels K.</param>
    /// <param name="kernelSize">Kernel size (R, S); an int means square.</param>
    /// <param name="stride">Stride (default 1).</param>
    /// <param name="padding">Zero padding on each side (default 0).</param>
    /// <param name="dilation">Dilation (default 1).</param>
    /// <param name="groups">Number of channel groups; must divide both channel counts.</param>
    /// <param name="bias">Whether the layer has a learnable bias.</param>
    /// <param name="generator">Random source for the initialisation (default <see cref="Generator.Default"/>).</param>
    public Conv2d(int inChannels, int outChannels, Size2 kernelSize, Size2? stride = null, Size2? padding = null,
        Size2? dilation = null, int groups = 1, bool bias = true, Generator? generator = null)
    {
        if (inChannels <= 0 || outChannels <= 0)
            throw new ArgumentException($"Conv2d needs positive channel counts, got in_channels={inChannels}, out_channels={outChannels}.");
        if (groups <= 0 || inChannels % groups != 0 || outChannels % groups != 0)
            throw new ArgumentException($"Conv2d groups={groups} must be positive and divide in_channels ({inChannels}) and out_channels ({outChannels}).", nameof(groups));
        if (kernelSize.H <= 0 || kernelSize.W <= 0)
            throw new ArgumentException($"Conv2d kernel size {kernelSize} must be positive.", nameof(kernelSize));
        Stride = stride ?? 1;
        Padding = padding ?? 0;
        Dilation = dilation ?? 1;
        if (Stride.H <= 0 || Stride.W <= 0) throw new ArgumentException($"Conv2d stride {Stride} must be positive.", nameof(stride));
        if (Padding.H < 0 || Padding.W < 0) throw new ArgumentException($"Conv2d padding {Padding} must not be negative.", nameof(padding));
        if (Dilation.H <= 0 || Dilation.W <= 0) throw new ArgumentException($"Conv2d dilation {Dilation} must be positive.", nameof(dilation));
        _groups = groups;
        _depthwiseMultiplier = groups > 1 && groups == inChannels ? outChannels / groups : 0;
        Weight = RegisterParameter("weight", new Parameter(Tensor.Zeros([outChannels, inChannels / groups, kernelSize.H, kernelSize.W])))!;
        Bias = RegisterParameter("bias", bias ? new Parameter(Tensor.Zeros([outChannels])) : null);
        ResetParameters(generator);
    }

    /// <summary>The kernel [K, C/groups, R, S].</summary>
    public Parameter Weight { get; }

    /// <summary>The bias [K], or null.</summary>
    public Parameter? Bias { get; }

    /// <summary>The stride (height, width).</summary>
    public Size2 Stride { get; }

    /// <summary>The zero padding on each side (height, width).</summary>
    public Size2 Padding { get; }

    /// <summary>The dilation (height, width).</summary>
    public Size2 Dilation { get; }

    /// <summary>Number of channel groups (see the remarks for depthwise convolutions).</summary>
    public int Groups => _depthwiseMultiplier > 0 ? Math.Max(Weight.Size(0) / _depthwiseMultiplier, 1) : _groups;

    /// <summary>Input channels C, from the weight's shape.</summary>
    public int InChannels => Weight.Size(1) * Groups;

    /// <summary>Output channels K, from the weight's shape.</summary>
    public int OutChannels => Weight.Size(0);

    /// <summary>The kernel size (R, S), from the weight's shape.</summary>
    public Size2 KernelSize => new(Weight.Size(2), Weight.Size(3));

    /// <summary>Re-draws the weight and bias as PyTorch's <c>reset_parameters</c> does.</summary>
    public void ResetParameters(Generator? generator = null)
    {
        Init.KaimingUniform(Weight, a: Math.Sqrt(5), generator: generator);
        if (Bias is null) return;
        var (fanIn, _) = Init.CalculateFanInAndFanOut(Weight);
        var bound = fanIn > 0 ? 1 / Math.Sqrt(fanIn) : 0;
        Init.Uniform(Bias, -bound, bound, generator);
    }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input) =>
        Functional.Conv2d(input, Weight, Bias, Stride.ToTuple(), Padding.ToTuple(), Dilation.ToTuple(), Groups);

    /// <summary>PyTorch's form, e.g. <c>1, 32, kernel_size=(5, 5), stride=(2, 2), padding=(1, 1), bias=False</c>.</summary>
    public override string ExtraRepr()
    {
        var s = $"{InChannels}, {OutChannels}, kernel_size={KernelSize}, stride={Stride}";
        if (Padding != new Size2(0, 0)) s += $", padding={Padding}";
        if (Dilation != new Size2(1, 1)) s += $", dilation={Dilation}";
        if (Groups != 1) s += $", groups={Groups}";
        if (Bias is null) s += ", bias=False";
        return s;
    }
}
