namespace NeuralCore.NN;

/// <summary>The non-linearity an initialiser scales for (PyTorch's <c>nonlinearity</c> argument of <c>calculate_gain</c>).</summary>
public enum Nonlinearity
{
    /// <summary>Identity: gain 1.</summary>
    Linear,
    /// <summary>A 1-D convolution without activation: gain 1.</summary>
    Conv1d,
    /// <summary>A 2-D convolution without activation: gain 1.</summary>
    Conv2d,
    /// <summary>A 3-D convolution without activation: gain 1.</summary>
    Conv3d,
    /// <summary>A 1-D transposed convolution: gain 1.</summary>
    ConvTranspose1d,
    /// <summary>A 2-D transposed convolution: gain 1.</summary>
    ConvTranspose2d,
    /// <summary>A 3-D transposed convolution: gain 1.</summary>
    ConvTranspose3d,
    /// <summary>Logistic sigmoid: gain 1.</summary>
    Sigmoid,
    /// <summary>Hyperbolic tangent: gain 5/3.</summary>
    Tanh,
    /// <summary>ReLU: gain sqrt(2).</summary>
    Relu,
    /// <summary>Leaky ReLU with negative slope a: gain sqrt(2 / (1 + a^2)) (a defaults to 0.01).</summary>
    LeakyRelu,
    /// <summary>SELU: gain 3/4.</summary>
    Selu,
}

/// <summary>Which fan the Kaiming initialisers preserve the variance of.</summary>
public enum FanMode
{
    /// <summary>Preserve the variance of the activations in the forward pass.</summary>
    FanIn,
    /// <summary>Preserve the variance of the gradients in the backward pass.</summary>
    FanOut,
}

/// <summary>
/// Weight initialisers with PyTorch's <c>torch.nn.init</c> semantics (same fan computation, gain table and
/// bounds). Each fills its tensor in place outside autograd, draws from its <c>generator</c> argument (or
/// <see cref="Generator.Default"/>) and returns the tensor.
/// </summary>
/// <remarks>
/// Fans of a tensor [out, in, k1, k2, ...]: fan_in = in * k1 * k2 * ..., fan_out = out * k1 * k2 * ...; a
/// Linear weight [out, in] has fan_in = in and fan_out = out.
/// </remarks>
public static class Init
{
    /// <summary>fan_in and fan_out of a weight of rank 2 or more, as PyTorch's <c>_calculate_fan_in_and_fan_out</c>.</summary>
    /// <exception cref="ArgumentException">The tensor has fewer than 2 dimensions.</exception>
    public static (int FanIn, int FanOut) CalculateFanInAndFanOut(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.Rank < 2)
            throw new ArgumentException($"Fan in and fan out need a tensor with at least 2 dimensions [out, in, ...], got shape {Tensor.FormatShape(tensor.Shape)}.", nameof(tensor));
        var receptive = 1;
        for (var d = 2; d < tensor.Rank; d++) receptive *= tensor.Size(d);
        return (tensor.Size(1) * receptive, tensor.Size(0) * receptive);
    }

    /// <summary>
    /// The recommended gain for a non-linearity (PyTorch's <c>calculate_gain</c>). <paramref name="param"/> is the
    /// negative slope of <see cref="Nonlinearity.LeakyRelu"/> (0.01 when null) and ignored otherwise.
    /// </summary>
    public static double CalculateGain(Nonlinearity nonlinearity, double? param = null) => nonlinearity switch
    {
        Nonlinearity.Tanh => 5.0 / 3.0,
        Nonlinearity.Relu => Math.Sqrt(2.0),
        Nonlinearity.LeakyRelu => Math.Sqrt(2.0 / (1 + (param ?? 0.01) * (param ?? 0.01))),
        Nonlinearity.Selu => 3.0 / 4.0,
        _ => 1.0,
    };

    /// <summary>
    /// Kaiming (He) uniform: U(-bound, bound) with bound = gain * sqrt(3 / fan), gain = CalculateGain(nonlinearity, a).
    /// PyTorch's defaults (a = 0, fan_in, leaky_relu) give bound = sqrt(6 / fan_in).
    /// </summary>
    public static Tensor KaimingUniform(Tensor tensor, double a = 0, FanMode mode = FanMode.FanIn,
        Nonlinearity nonlinearity = Nonlinearity.LeakyRelu, Generator? generator = null)
    {
        var std = CalculateGain(nonlinearity, a) / Math.Sqrt(Fan(tensor, mode));
        var bound = Math.Sqrt(3.0) * std;
        return Uniform(tensor, -bound, bound, generator);
    }

    /// <summary>Kaiming (He) normal: N(0, std^2) with std = gain / sqrt(fan), gain = CalculateGain(nonlinearity, a).</summary>
    public static Tensor KaimingNormal(Tensor tensor, double a = 0, FanMode mode = FanMode.FanIn,
        Nonlinearity nonlinearity = Nonlinearity.LeakyRelu, Generator? generator = null)
    {
        var std = CalculateGain(nonlinearity, a) / Math.Sqrt(Fan(tensor, mode));
        return Normal(tensor, 0, std, generator);
    }

    /// <summary>Xavier (Glorot) uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).</summary>
    public static Tensor XavierUniform(Tensor tensor, double gain = 1, Generator? generator = null)
    {
        var (fanIn, fanOut) = CalculateFanInAndFanOut(tensor);
        var bound = gain * Math.Sqrt(6.0 / (fanIn + fanOut));
        return Uniform(tensor, -bound, bound, generator);
    }

    /// <summary>Xavier (Glorot) normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).</summary>
    public static Tensor XavierNormal(Tensor tensor, double gain = 1, Generator? generator = null)
    {
        var (fanIn, fanOut) = CalculateFanInAndFanOut(tensor);
        return Normal(tensor, 0, gain * Math.Sqrt(2.0 / (fanIn + fanOut)), generator);
    }

    /// <summary>Fills with samples of N(mean, std^2).</summary>
    public static Tensor Normal(Tensor tensor, double mean = 0, double std = 1, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (std < 0) throw new ArgumentOutOfRangeException(nameof(std), std, "The standard deviation of Init.Normal must be at least 0.");
        return Fill(tensor, t => t.Backend.RandomNormal(t, (float)mean, (float)std, generator ?? Generator.Default));
    }

    /// <summary>Fills with samples of U(a, b) (values in [a, b)).</summary>
    public static Tensor Uniform(Tensor tensor, double a = 0, double b = 1, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (b < a) throw new ArgumentException($"Init.Uniform needs a <= b, got a = {a} and b = {b}.", nameof(b));
        return Fill(tensor, t => t.Backend.RandomUniform(t, (float)a, (float)b, generator ?? Generator.Default));
    }

    /// <summary>Fills with <paramref name="value"/>.</summary>
    public static Tensor Constant(Tensor tensor, double value)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        using (Autograd.Autograd.NoGrad()) tensor.FillInPlace(value);
        return tensor;
    }

    /// <summary>Fills with zeros.</summary>
    public static Tensor Zeros(Tensor tensor) => Constant(tensor, 0);

    /// <summary>Fills with ones.</summary>
    public static Tensor Ones(Tensor tensor) => Constant(tensor, 1);

    private static int Fan(Tensor tensor, FanMode mode)
    {
        var (fanIn, fanOut) = CalculateFanInAndFanOut(tensor);
        var fan = mode == FanMode.FanIn ? fanIn : fanOut;
        if (fan == 0) throw new ArgumentException($"Kaiming initialisation of a tensor of shape {Tensor.FormatShape(tensor.Shape)} has {mode} 0; there is nothing to scale by.", nameof(tensor));
        return fan;
    }

    /// <summary>Runs a random-fill kernel on the tensor, or on a contiguous scratch copied in when it is a strided view.</summary>
    private static Tensor Fill(Tensor tensor, Action<Tensor> kernel)
    {
        if (tensor.DType != DType.Float32)
            throw new ArgumentException($"Random initialisers fill Float32 tensors; this one is {tensor.DType}.", nameof(tensor));
        using var _ = Autograd.Autograd.NoGrad();
        if (tensor.IsContiguous)
        {
            kernel(tensor.Detach());
            return tensor;
        }
        var scratch = Tensor.Zeros(tensor.ShapeArray(), tensor.Device);
        kernel(scratch);
        tensor.CopyFrom(scratch);
        return tensor;
    }
}
