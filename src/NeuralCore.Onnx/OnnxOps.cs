namespace NeuralCore.Onnx;

/// <summary>What the checker knows about the operators of the default ONNX domain.</summary>
internal static class OnnxOps
{
    /// <summary>The operators the exporter writes, with how many inputs each takes (optional inputs counted in the maximum).</summary>
    public static readonly IReadOnlyDictionary<string, (int MinInputs, int MaxInputs)> Arity = new Dictionary<string, (int, int)>
    {
        ["Conv"] = (2, 3),
        ["BatchNormalization"] = (5, 5),
        ["Relu"] = (1, 1),
        ["HardSwish"] = (1, 1),
        ["Clip"] = (1, 3),
        ["Sigmoid"] = (1, 1),
        ["Tanh"] = (1, 1),
        ["Neg"] = (1, 1),
        ["Exp"] = (1, 1),
        ["Log"] = (1, 1),
        ["Sqrt"] = (1, 1),
        ["Abs"] = (1, 1),
        ["Sign"] = (1, 1),
        ["Reciprocal"] = (1, 1),
        ["Pow"] = (2, 2),
        ["MaxPool"] = (1, 1),
        ["AveragePool"] = (1, 1),
        ["GlobalAveragePool"] = (1, 1),
        ["Gemm"] = (2, 3),
        ["MatMul"] = (2, 2),
        ["Add"] = (2, 2),
        ["Sub"] = (2, 2),
        ["Mul"] = (2, 2),
        ["Div"] = (2, 2),
        ["Max"] = (1, int.MaxValue),
        ["Min"] = (1, int.MaxValue),
        ["Concat"] = (1, int.MaxValue),
        ["Flatten"] = (1, 1),
        ["Reshape"] = (2, 2),
        ["Transpose"] = (1, 1),
        ["Slice"] = (3, 5),
        ["Expand"] = (2, 2),
        ["Softmax"] = (1, 1),
        ["LogSoftmax"] = (1, 1),
        ["Identity"] = (1, 1),
        ["ReduceSum"] = (1, 2),
        ["ReduceMean"] = (1, 2),
        ["ReduceMax"] = (1, 2),
        ["ReduceMin"] = (1, 2),
    };

    /// <summary>The other standard operators (accepted by name only).</summary>
    public static readonly IReadOnlySet<string> OtherStandardOps = new HashSet<string>
    {
        "Acos", "Acosh", "AffineGrid", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "Attention", "BitShift",
        "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "BlackmanWindow", "Bernoulli", "Cast", "CastLike", "Ceil",
        "Celu", "CenterCropPad", "Col2Im", "Compress", "ConcatFromSequence", "Constant", "ConstantOfShape", "ConvInteger",
        "ConvTranspose", "Cos", "Cosh", "CumSum", "DFT", "DeformConv", "DepthToSpace", "DequantizeLinear", "Det", "Dropout",
        "DynamicQuantizeLinear", "Einsum", "Elu", "Equal", "Erf", "EyeLike", "Floor", "GRU", "Gather", "GatherElements",
        "GatherND", "Gelu", "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample", "GroupNormalization",
        "HammingWindow", "HannWindow", "HardSigmoid", "Hardmax", "If", "ImageDecoder", "InstanceNormalization", "IsInf",
        "IsNaN", "LRN", "LSTM", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Loop", "LpNormalization", "LpPool",
        "MatMulInteger", "MaxRoiPool", "MaxUnpool", "Mean", "MeanVarianceNormalization", "MelWeightMatrix", "Mish", "Mod",
        "Multinomial", "NegativeLogLikelihoodLoss", "NonMaxSuppression", "NonZero", "Not", "OneHot", "Optional",
        "OptionalGetElement", "OptionalHasElement", "Or", "PRelu", "Pad", "QLinearConv", "QLinearMatMul", "QuantizeLinear",
        "RMSNormalization", "RNN", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range",
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceProd", "ReduceSumSquare", "RegexFullMatch", "Resize",
        "ReverseSequence", "RoiAlign", "RotaryEmbedding", "Round", "STFT", "Scan", "Scatter", "ScatterElements", "ScatterND",
        "Selu", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
        "SequenceMap", "Shape", "Shrink", "Sin", "Sinh", "Size", "SoftmaxCrossEntropyLoss", "Softplus", "Softsign",
        "SpaceToDepth", "Split", "SplitToSequence", "Squeeze", "StringConcat", "StringNormalizer", "StringSplit", "Sum", "Swish",
        "Tan", "TensorScatter", "TfIdfVectorizer", "ThresholdedRelu", "Tile", "TopK", "Trilu", "Unique", "Unsqueeze", "Upsample",
        "Where", "Xor",
    };
}
