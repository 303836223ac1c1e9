namespace NeuralCore.NN;

/// <summary>
/// Dropout (PyTorch's <c>nn.Dropout</c>): in training mode zeroes each element with probability p and scales the
/// rest by 1 / (1 - p); the identity in eval mode.
/// </summary>
public sealed class Dropout : Module
{
    private readonly Generator? _generator;

    /// <summary>Creates the layer.</summary>
    /// <param name="p">Probability of zeroing an element, in [0, 1).</param>
    /// <param name="generator">Random source for the masks (default <see cref="Generator.Default"/>).</param>
    public Dropout(double p = 0.5, Generator? generator = null)
    {
        if (p is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(p), p, "Dropout probability must lie in [0, 1).");
        P = p;
        _generator = generator;
    }

    /// <summary>Probability of zeroing an element.</summary>
    public double P { get; }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input) => Functional.Dropout(input, (float)P, Training, _generator);

    /// <summary>PyTorch's form, e.g. <c>p=0.5, inplace=False</c>.</summary>
    public override string ExtraRepr() => $"p={Repr.Float(P)}, inplace=False";
}
