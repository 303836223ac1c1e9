namespace NeuralCore.Backends;

/// <summary>Element-wise functions of one tensor. <c>alpha</c>/<c>beta</c> are the op's scalar arguments where it has any.</summary>
public enum UnaryOp
{
    /// <summary>-x</summary>
    Neg,
    /// <summary>e^x</summary>
    Exp,
    /// <summary>ln x</summary>
    Log,
    /// <summary>sqrt x</summary>
    Sqrt,
    /// <summary>|x|</summary>
    Abs,
    /// <summary>x^alpha</summary>
    Pow,
    /// <summary>min(max(x, alpha), beta)</summary>
    Clamp,
    /// <summary>max(x, 0)</summary>
    Relu,
    /// <summary>min(max(x, 0), 6)</summary>
    Relu6,
    /// <summary>x * relu6(x + 3) / 6</summary>
    Hardswish,
    /// <summary>1 / (1 + e^-x)</summary>
    Sigmoid,
    /// <summary>tanh x</summary>
    Tanh,
    /// <summary>alpha * x + beta</summary>
    Affine,
    /// <summary>alpha / x</summary>
    Reciprocal,
    /// <summary>x^2</summary>
    Square,
    /// <summary>sign(x) (0 at 0)</summary>
    Sign,
}

/// <summary>Element-wise functions of two tensors (with broadcasting).</summary>
public enum BinaryOp
{
    /// <summary>a + b</summary>
    Add,
    /// <summary>a - b</summary>
    Sub,
    /// <summary>a * b</summary>
    Mul,
    /// <summary>a / b</summary>
    Div,
    /// <summary>max(a, b)</summary>
    Maximum,
    /// <summary>min(a, b)</summary>
    Minimum,
    /// <summary>1 where a == b else 0</summary>
    Equal,
    /// <summary>1 where a &gt; b else 0</summary>
    Greater,
}

/// <summary>Reductions over the middle axis of an [outer, reduce, inner] view.</summary>
public enum ReduceOp
{
    /// <summary>Sum.</summary>
    Sum,
    /// <summary>Arithmetic mean.</summary>
    Mean,
    /// <summary>Maximum (the index of the first maximum goes to the index output when given).</summary>
    Max,
    /// <summary>Minimum (the index of the first minimum goes to the index output when given).</summary>
    Min,
}

/// <summary>The pooling function of a 2-D pooling layer.</summary>
public enum PoolKind
{
    /// <summary>Maximum over the window.</summary>
    Max,
    /// <summary>Average over the window (padding counted, as PyTorch's default count_include_pad=True).</summary>
    Average,
}
