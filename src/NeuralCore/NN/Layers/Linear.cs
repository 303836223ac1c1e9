namespace NeuralCore.NN;

// Shapes: input [*, in_features], weight [out_features, in_features], bias [out_features], output [*, out_features].

/// <summary>
/// Fully connected layer y = x W^T + b (PyTorch's <c>nn.Linear</c>) with parameters <c>weight</c> [out, in] and
/// <c>bias</c> [out] (registered as null when <c>bias: false</c>).
/// </summary>
/// <remarks>
/// The feature counts are read from the weight's shape, so a pruner can resize the weight in place
/// (<see cref="Tensor.SetData"/>) and the layer follows. Initialisation matches PyTorch's <c>reset_parameters</c>:
/// weight Kaiming-uniform with a = sqrt(5) (U(-1/sqrt(in), 1/sqrt(in))), then bias U(-1/sqrt(in), 1/sqrt(in)).
/// </remarks>
public sealed class Linear : Module
{
    /// <summary>Creates the layer and initialises it as PyTorch does.</summary>
    /// <param name="inFeatures">Size of each input sample.</param>
    /// <param name="outFeatures">Size of each output sample.</param>
    /// <param name="bias">Whether the layer has a learnable bias.</param>
    /// <param name="generator">Random source for the initialisation (default <see cref="Generator.Default"/>).</param>
    public Linear(int inFeatures, int outFeatures, bool bias = true, Generator? generator = null)
    {
        if (inFeatures < 0 || outFeatures < 0)
            throw new ArgumentException($"Linear needs non-negative feature counts, got in_features={inFeatures}, out_features={outFeatures}.");
        Weight = RegisterParameter("weight", new Parameter(Tensor.Zeros([outFeatures, inFeatures])))!;
        Bias = RegisterParameter("bias", bias ? new Parameter(Tensor.Zeros([outFeatures])) : null);
        ResetParameters(generator);
    }

    /// <summary>The weight [out_features, in_features].</summary>
    public Parameter Weight { get; }

    /// <summary>The bias [out_features], or null.</summary>
    public Parameter? Bias { get; }

    /// <summary>Input features, from the weight's shape.</summary>
    public int InFeatures => Weight.Size(1);

    /// <summary>Output features, from the weight's shape.</summary>
    public int OutFeatures => Weight.Size(0);

    /// <summary>Re-draws the weight and bias as PyTorch's <c>reset_parameters</c> does.</summary>
    public void ResetParameters(Generator? generator = null)
    {
        if (Weight.NumElements == 0) return;
        Init.KaimingUniform(Weight, a: Math.Sqrt(5), generator: generator);
        if (Bias is null) return;
        var bound = InFeatures > 0 ? 1 / Math.Sqrt(InFeatures) : 0;
        Init.Uniform(Bias, -bound, bound, generator);
    }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        if (input.Rank == 0 || input.Size(-1) != InFeatures)
            throw new ArgumentException($"Linear({InFeatures} -> {OutFeatures}) expects inputs [*, {InFeatures}], got {Tensor.FormatShape(input.Shape)}. Flatten the input or fix in_features.", nameof(input));
        var y = input.MatMul(Weight.T);
        return Bias is null ? y : y.Add(Bias);
    }

    /// <summary>PyTorch's form, e.g. <c>in_features=128, out_features=10, bias=True</c>.</summary>
    public override string ExtraRepr() => $"in_features={InFeatures}, out_features={OutFeatures}, bias={Repr.Bool(Bias is not null)}";
}
