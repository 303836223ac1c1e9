namespace NeuralCore.Backends.Cpu;

// Convolution: x [N, C, H, W], w [K, C/groups, R, S], bias [K], y [N, K, P, Q], all contiguous.
// The kernels (im2col + GEMM, col2im) are in ConvKernels.
public sealed partial class CpuBackend
{
    /// <inheritdoc />
    public unsafe void Conv2d(Tensor x, Tensor w, Tensor? bias, Tensor y, in Conv2dParams p)
    {
        p.Validate();
        CheckLength(x, (long)p.N * p.C * p.H * p.W, "Conv2d input x [N, C, H, W]");
        CheckLength(w, (long)p.K * (p.C / p.Groups) * p.R * p.S, "Conv2d weight [K, C/groups, R, S]");
        CheckLength(y, (long)p.N * p.K * p.P * p.Q, "Conv2d output y [N, K, P, Q]");
        if (bias is not null) CheckLength(bias, p.K, "Conv2d bias [K]");
        if (y.NumElements == 0) return;
        // SAFETY: every length was checked against the geometry above; the arrays stay pinned until
        // the kernel returns, which happens only after every thread is done.
        fixed (float* px = F(x), pw = F(w), py = F(y), pb = bias is null ? null : F(bias))
        {
            ConvKernels.Forward(px + x.StorageOffset, pw + w.StorageOffset, bias is null ? null : pb + bias.StorageOffset,
                py + y.StorageOffset, p);
        }
    }

    /// <summary>
    /// <see cref="Conv2d"/> of a convolution that <see cref="Conv2dLeavesPlaneSums"/>, which also leaves each output plane's
    /// sums for the training batch norm that reads y in <paramref name="sums"/> (taken while each sample is in cache; the
    /// batch norm then reads them instead of its input's planes, the same bits).
    /// </summary>
    internal unsafe void Conv2dWithPlaneSums(Tensor x, Tensor w, Tensor? bias, Tensor y, in Conv2dParams p, BatchNormPlaneSums sums)
    {
        p.Validate();
        CheckLength(x, (long)p.N * p.C * p.H * p.W, "Conv2d input x [N, C, H, W]");
        CheckLength(w, (long)p.K * (p.C / p.Groups) * p.R * p.S, "Conv2d weight [K, C/groups, R, S]");
        CheckLength(y, (long)p.N * p.K * p.P * p.Q, "Conv2d output y [N, K, P, Q]");
        if (bias is not null) CheckLength(bias, p.K, "Conv2d bias [K]");
        if (sums.N != p.N || sums.C != p.K)
            throw new ArgumentException($"The planes' sums are for {sums.N} samples of {sums.C} channels, the output has {p.N} of {p.K}.", nameof(sums));
        if (!Conv2dLeavesPlaneSums(p))
            throw new ArgumentException("This convolution does not run sample by sample, so it leaves no planes' sums (see Conv2dLeavesPlaneSums).", nameof(p));
        // SAFETY: lengths checked above; pinned until the kernel returns, after every thread is done (the sums are pinned).
        fixed (float* px = F(x), pw = F(w), py = F(y), pb = bias is null ? null : F(bias))
        {
            ConvKernels.ForwardWithPlaneSums(px + x.StorageOffset, pw + w.StorageOffset, bias is null ? null : pb + bias.StorageOffset,
                py + y.StorageOffset, p, sums.Pointer);
        }
    }

    /// <summary>
    /// Whether <see cref="Conv2dWithPlaneSums"/> runs for <paramref name="p"/>: a convolution whose forward runs sample by
    /// sample (a stride-1 "same" convolution on planes of 64 positions or more, as on mel's maps) onto planes a training
    /// batch norm sums itself (64 values or more).
    /// </summary>
    internal static bool Conv2dLeavesPlaneSums(in Conv2dParams p) =>
        (long)p.N * p.K > 0 && (long)p.P * p.Q >= BatchNormKernels.SmallPlane && ConvKernels.ForwardRunsBySample(p);

    /// <inheritdoc />
    public unsafe void Conv2dBackwardData(Tensor dy, Tensor w, Tensor dx, in Conv2dParams p)
    {
        p.Validate();
        CheckLength(dy, (long)p.N * p.K * p.P * p.Q, "Conv2d output gradient dy [N, K, P, Q]");
        CheckLength(w, (long)p.K * (p.C / p.Groups) * p.R * p.S, "Conv2d weight [K, C/groups, R, S]");
        CheckLength(dx, (long)p.N * p.C * p.H * p.W, "Conv2d input gradient dx [N, C, H, W]");
        if (dx.NumElements == 0) return;
        if (dy.NumElements == 0 || w.NumElements == 0)
        {
            Span(dx).Clear();
            return;
        }
        // SAFETY: lengths checked above; pinned for the duration of the call.
        fixed (float* pdy = F(dy), pw = F(w), pdx = F(dx))
        {
            ConvKernels.BackwardData(pdy + dy.StorageOffset, pw + w.StorageOffset, pdx + dx.StorageOffset, p);
        }
    }

    /// <summary>
    /// sum = first + the input gradient of dy, the addition made as each value of the gradient is stored (the bits of
    /// <see cref="Conv2dBackwardData"/> into a tensor, then <see cref="IBackend.Binary"/> Add(first, it)), for a
    /// convolution that <see cref="Conv2dBackwardDataAdds"/>. <paramref name="first"/> must lie in another array than
    /// <paramref name="sum"/>: edge tiles are stored, then given the addition. The training plans sum the gradients of an
    /// input that two ops read this way (a residual block's input).
    /// </summary>
    internal unsafe void Conv2dBackwardDataPlus(Tensor dy, Tensor w, Tensor first, Tensor sum, in Conv2dParams p)
    {
        p.Validate();
        CheckLength(dy, (long)p.N * p.K * p.P * p.Q, "Conv2d output gradient dy [N, K, P, Q]");
        CheckLength(w, (long)p.K * (p.C / p.Groups) * p.R * p.S, "Conv2d weight [K, C/groups, R, S]");
        CheckLength(first, (long)p.N * p.C * p.H * p.W, "the tensor added to the input gradient [N, C, H, W]");
        CheckLength(sum, (long)p.N * p.C * p.H * p.W, "Conv2d input gradient plus the tensor [N, C, H, W]");
        if (!Conv2dBackwardDataAdds(p))
            throw new ArgumentException("This convolution's input gradient does not take an addition as it is stored (see Conv2dBackwardDataAdds).", nameof(p));
        if (ReferenceEquals(first.storage, sum.storage))
            throw new ArgumentException("The tensor added to the input gradient must lie in another array than the sum.", nameof(first));
        // SAFETY: lengths checked above; pinned for the duration of the call.
        fixed (float* pdy = F(dy), pw = F(w), pfirst = F(first), psum = F(sum))
        {
            ConvKernels.BackwardDataPlus(pdy + dy.StorageOffset, pw + w.StorageOffset, pfirst + first.StorageOffset, psum + sum.StorageOffset, p);
        }
    }

    /// <summary>Whether <see cref="Conv2dBackwardDataPlus"/> runs for <paramref name="p"/> (a stride-1 convolution whose input gradient runs sample by sample, as on mel's maps).</summary>
    internal static bool Conv2dBackwardDataAdds(in Conv2dParams p) =>
        (long)p.N * p.K * p.P * p.Q > 0 && (long)p.C * p.H * p.W > 0 && ConvKernels.BackwardDataAdds(p);

    /// <inheritdoc />
    public unsafe void Conv2dBackwardWeight(Tensor dy, Tensor x, Tensor dw, in Conv2dParams p)
    {
        p.Validate();
        CheckLength(dy, (long)p.N * p.K * p.P * p.Q, "Conv2d output gradient dy [N, K, P, Q]");
        CheckLength(x, (long)p.N * p.C * p.H * p.W, "Conv2d input x [N, C, H, W]");
        CheckLength(dw, (long)p.K * (p.C / p.Groups) * p.R * p.S, "Conv2d weight gradient dw [K, C/groups, R, S]");
        if (dw.NumElements == 0) return;
        if (dy.NumElements == 0)
        {
            Span(dw).Clear();
            return;
        }
        // SAFETY: lengths checked above; pinned for the duration of the call.
        fixed (float* pdy = F(dy), px = F(x), pdw = F(dw))
        {
            ConvKernels.BackwardWeight(pdy + dy.StorageOffset, px + x.StorageOffset, pdw + dw.StorageOffset, p);
        }
    }

    /// <summary>Throws unless t is contiguous Float32 with exactly <paramref name="expected"/> elements.</summary>
    private static void CheckLength(Tensor t, long expected, string what)
    {
        if (t.DType != DType.Float32)
            throw new ArgumentException($"{what} must be Float32, got {t.DType}.");
        if (t.NumElements != expected)
            throw new ArgumentException($"{what} should have {expected} elements for this geometry, got shape {Tensor.FormatShape(t.Shape)}.");
        if (!t.IsContiguous)
            throw new ArgumentException($"{what} must be contiguous; call Contiguous() first.");
    }
}
