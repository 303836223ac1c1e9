namespace NeuralCore.Onnx;

/// <summary>Settings of <see cref="OnnxExporter.Export(NN.Module, int[], string, OnnxExportOptions?)"/>.</summary>
public sealed record OnnxExportOptions
{
    /// <summary>The lowest opset the exporter writes.</summary>
    public const int MinOpset = 17;

    /// <summary>The highest opset the exporter writes (every op it emits has the same semantics from 17 to here).</summary>
    public const int MaxOpset = 21;

    /// <summary>The ONNX operator set version of the default domain (17 to 21; default 17).</summary>
    public int Opset { get; init; } = MinOpset;

    /// <summary>
    /// Fold each eval-mode batch norm into the convolution that feeds it (when that convolution's output goes nowhere
    /// else): the conv gets the scaled weight and a bias, and the BatchNormalization node disappears. The outputs are
    /// the same up to float rounding.
    /// </summary>
    public bool FoldBatchNorm { get; init; }

    /// <summary>Name of the graph input (default <c>input</c>).</summary>
    public string InputName { get; init; } = "input";

    /// <summary>Name of the graph output (default <c>logits</c>).</summary>
    public string OutputName { get; init; } = "logits";

    /// <summary>
    /// Write the batch axis as the symbolic dimension <see cref="BatchDimName"/> so the model runs on any batch size
    /// (default true). When false, the batch size is fixed to <see cref="TraceBatchSize"/>.
    /// </summary>
    public bool DynamicBatch { get; init; } = true;

    /// <summary>Name of the symbolic batch dimension (default <c>batch</c>).</summary>
    public string BatchDimName { get; init; } = "batch";

    /// <summary>
    /// Batch size of the example input the model is traced with (default 2: with 1, a reshape that drops the batch
    /// axis by accident cannot be told from one that keeps it).
    /// </summary>
    public int TraceBatchSize { get; init; } = 2;

    /// <summary>
    /// Extra key/value pairs for the model's <c>metadata_props</c> (for example <c>CpResNetConfig.ToMetadata()</c> and the
    /// audio front-end settings). The exporter adds <c>neuralcore_version</c>, <c>input_shape</c> and <c>fold_bn</c>.
    /// </summary>
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    /// <summary>Name of the ONNX graph (default <c>neuralcore</c>).</summary>
    public string GraphName { get; init; } = "neuralcore";

    internal void Validate()
    {
        if (Opset is < MinOpset or > MaxOpset)
            throw new ArgumentOutOfRangeException(nameof(Opset), Opset, $"ONNX export writes opsets {MinOpset} to {MaxOpset}; pick one in that range.");
        if (string.IsNullOrWhiteSpace(InputName) || string.IsNullOrWhiteSpace(OutputName) || InputName == OutputName)
            throw new ArgumentException($"The input and output names must be non-empty and differ; got input '{InputName}' and output '{OutputName}'.");
        if (DynamicBatch && string.IsNullOrWhiteSpace(BatchDimName))
            throw new ArgumentException("A dynamic batch needs a non-empty BatchDimName.");
        if (TraceBatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(TraceBatchSize), TraceBatchSize, "The traced batch must hold at least one example.");
        if (string.IsNullOrWhiteSpace(GraphName))
            throw new ArgumentException("The graph name must be non-empty (the ONNX checker requires one).");
    }
}
