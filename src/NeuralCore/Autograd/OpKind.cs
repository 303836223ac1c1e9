namespace NeuralCore.Autograd;

/// <summary>The kind of a recorded op. The pruner and the exporters dispatch on it.</summary>
public enum OpKind
{
    /// <summary>Copy to another device.</summary>
    ToDevice,
    /// <summary>Contiguous copy (or dtype cast).</summary>
    Copy,
    /// <summary>Reshape/View. Attribute <c>shape</c>: int[].</summary>
    Reshape,
    /// <summary>Permute. Attribute <c>dims</c>: int[].</summary>
    Permute,
    /// <summary>Narrow/Slice. Attributes <c>dim</c>, <c>start</c>, <c>length</c>.</summary>
    Narrow,
    /// <summary>Expand (broadcast view). Attribute <c>shape</c>.</summary>
    Expand,
    /// <summary>IndexSelect. Attribute <c>dim</c>; input 1 is the index tensor.</summary>
    IndexSelect,
    /// <summary>Concatenation. Attribute <c>dim</c>.</summary>
    Concat,
    /// <summary>Element-wise binary op. Attribute <c>op</c>: BinaryOp.</summary>
    Binary,
    /// <summary>Element-wise unary op. Attributes <c>op</c>: UnaryOp, <c>alpha</c>, <c>beta</c>.</summary>
    Unary,
    /// <summary>Reduction. Attributes <c>op</c>: ReduceOp, <c>dims</c>: int[], <c>keepdim</c>.</summary>
    Reduce,
    /// <summary>(Batched) matrix product.</summary>
    MatMul,
    /// <summary>2-D convolution; inputs x, weight[, bias]. Attributes <c>stride</c>, <c>padding</c>, <c>dilation</c> (int[2]), <c>groups</c>.</summary>
    Conv2d,
    /// <summary>2-D max pooling. Attributes <c>kernel</c>, <c>stride</c>, <c>padding</c> (int[2]), <c>ceil_mode</c>.</summary>
    MaxPool2d,
    /// <summary>2-D average pooling. Attributes as MaxPool2d.</summary>
    AvgPool2d,
    /// <summary>Adaptive average pooling. Attribute <c>output_size</c> (int[2]).</summary>
    AdaptiveAvgPool2d,
    /// <summary>Batch norm; inputs x, gamma, beta. Attributes <c>training</c>, <c>eps</c>, <c>momentum</c>; the running statistics are attributes <c>running_mean</c>, <c>running_var</c>.</summary>
    BatchNorm2d,
    /// <summary>Softmax over the last dimension.</summary>
    Softmax,
    /// <summary>Log-softmax over the last dimension.</summary>
    LogSoftmax,
    /// <summary>Negative log-likelihood per sample; inputs log-probabilities and targets.</summary>
    NllLoss,
    /// <summary>Dropout with a fixed mask. Attribute <c>p</c>.</summary>
    Dropout,
}
