namespace NeuralCore.Backends;

/// <summary>
/// Geometry of a 2-D convolution over NCHW input: x [N, C, H, W], weight [K, C/groups, R, S], y [N, K, P, Q].
/// </summary>
public readonly record struct Conv2dParams(
    int N, int C, int H, int W, int K, int R, int S,
    int StrideH, int StrideW, int PadH, int PadW, int DilationH, int DilationW, int Groups)
{
    /// <summary>Output height P (0 or less where the padded input is smaller than the kernel's extent, which <see cref="Validate"/> refuses).</summary>
    public int P => OutputSize(H + 2 * PadH - DilationH * (R - 1) - 1, StrideH);

    /// <summary>Output width Q.</summary>
    public int Q => OutputSize(W + 2 * PadW - DilationW * (S - 1) - 1, StrideW);

    /// <summary>
    /// floor(<paramref name="span"/> / <paramref name="stride"/>) + 1, rounding down as PyTorch does: C#'s division rounds a
    /// negative span toward zero and made an input up to stride - 1 smaller than the kernel give one output. 0 for a
    /// stride below 1 (refused by <see cref="Validate"/>, which callers may run after asking the size).
    /// </summary>
    internal static int OutputSize(int span, int stride) => stride < 1 ? 0 : FloorDiv(span, stride) + 1;

    /// <summary>a / b rounded toward negative infinity (b positive).</summary>
    internal static int FloorDiv(int a, int b) => a >= 0 ? a / b : -((-a + b - 1) / b);

    /// <summary>Throws an <see cref="ArgumentException"/> naming the problem unless the geometry is valid (every backend checks it).</summary>
    public void Validate()
    {
        if (N < 0 || C < 1 || H < 1 || W < 1 || K < 1 || R < 1 || S < 1)
            throw new ArgumentException($"Conv2d needs positive sizes (N may be 0), got {this}.");
        if (StrideH < 1 || StrideW < 1 || DilationH < 1 || DilationW < 1 || PadH < 0 || PadW < 0)
            throw new ArgumentException($"Conv2d needs strides and dilations of at least 1 and non-negative padding, got {this}.");
        if (Groups < 1 || C % Groups != 0 || K % Groups != 0)
            throw new ArgumentException($"Conv2d groups={Groups} must divide the input channels ({C}) and output channels ({K}).");
        if (P < 1 || Q < 1)
            throw new ArgumentException($"Conv2d input {H}x{W} is too small for kernel {R}x{S} with padding ({PadH}, {PadW}), dilation ({DilationH}, {DilationW}) and stride ({StrideH}, {StrideW}).");
    }
}

/// <summary>
/// Geometry of a 2-D pooling over NCHW input: x [N, C, H, W], y [N, C, P, Q].
/// </summary>
public readonly record struct Pool2dParams(
    int N, int C, int H, int W, int KernelH, int KernelW, int StrideH, int StrideW, int PadH, int PadW, bool CeilMode = false)
{
    /// <summary>Output height P (PyTorch's rule, including ceil mode's "last window must start inside the input").</summary>
    public int P => OutSize(H, KernelH, StrideH, PadH, CeilMode);

    /// <summary>Output width Q.</summary>
    public int Q => OutSize(W, KernelW, StrideW, PadW, CeilMode);

    /// <summary>Throws an <see cref="ArgumentException"/> naming the problem unless the geometry is valid (every backend checks it).</summary>
    public void Validate()
    {
        if (N < 0 || C < 0 || H < 1 || W < 1 || KernelH < 1 || KernelW < 1 || StrideH < 1 || StrideW < 1)
            throw new ArgumentException($"Pooling needs a positive input size, kernel and stride, got {this}.");
        if (PadH < 0 || PadW < 0 || 2 * PadH > KernelH || 2 * PadW > KernelW)
            throw new ArgumentException($"Pooling padding ({PadH}, {PadW}) must be between 0 and half the kernel ({KernelH}, {KernelW}).");
        if (P < 1 || Q < 1)
            throw new ArgumentException($"Pooling input {H}x{W} is too small for kernel ({KernelH}, {KernelW}) with padding ({PadH}, {PadW}).");
    }

    private static int OutSize(int size, int k, int s, int pad, bool ceil)
    {
        if (s < 1) return 0;
        var num = size + 2 * pad - k;
        // Rounded toward negative infinity, as PyTorch's div_rtn: a kernel larger than the padded input gives no output.
        var o = Conv2dParams.FloorDiv(ceil ? num + s - 1 : num, s) + 1;
        if (ceil && (o - 1) * s >= size + pad) o--;
        return o;
    }
}

/// <summary>Hyper-parameters of one Adam/AdamW update (PyTorch semantics).</summary>
/// <param name="Lr">Learning rate.</param>
/// <param name="Beta1">First-moment decay.</param>
/// <param name="Beta2">Second-moment decay.</param>
/// <param name="Eps">Denominator epsilon (added after the square root).</param>
/// <param name="WeightDecay">L2 coefficient.</param>
/// <param name="Decoupled">False: Adam adds weight_decay * p to the gradient. True: AdamW multiplies p by (1 - lr * weight_decay).</param>
/// <param name="Step">The 1-based step number used for bias correction.</param>
/// <param name="Amsgrad">Keep the running maximum of the second moment.</param>
public readonly record struct AdamParams(float Lr, float Beta1, float Beta2, float Eps, float WeightDecay, bool Decoupled, int Step, bool Amsgrad);

/// <summary>Hyper-parameters of one SGD update (PyTorch semantics).</summary>
/// <param name="Lr">Learning rate.</param>
/// <param name="Momentum">Momentum factor (0 disables the buffer).</param>
/// <param name="Dampening">Dampening of the momentum.</param>
/// <param name="WeightDecay">L2 coefficient added to the gradient.</param>
/// <param name="Nesterov">Nesterov momentum.</param>
/// <param name="FirstStep">True on the first step, when the momentum buffer is initialised with the gradient.</param>
public readonly record struct SgdParams(float Lr, float Momentum, float Dampening, float WeightDecay, bool Nesterov, bool FirstStep);
