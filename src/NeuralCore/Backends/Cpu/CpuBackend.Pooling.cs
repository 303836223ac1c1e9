namespace NeuralCore.Backends.Cpu;

// Pooling: x [N, C, H, W] -> y [N, C, P, Q], Int32 indices [N, C, P, Q] for max pooling, all contiguous.
// The per-plane kernels are in PoolKernels.
public sealed partial class CpuBackend
{
    /// <inheritdoc />
    public unsafe void Pool2d(PoolKind kind, Tensor x, Tensor y, Tensor? indices, in Pool2dParams p)
    {
        p.Validate();
        CheckLength(x, (long)p.N * p.C * p.H * p.W, kind == PoolKind.Max ? "Max pool input x [N, C, H, W]" : "Average pool input x [N, C, H, W]");
        CheckLength(y, (long)p.N * p.C * p.P * p.Q, kind == PoolKind.Max ? "Max pool output y [N, C, P, Q]" : "Average pool output y [N, C, P, Q]");
        if (indices is not null) CheckIndices(indices, p);
        if (y.NumElements == 0) return;
        // SAFETY: lengths checked above; pinned until the kernel returns, after every thread is done.
        fixed (float* px = F(x), py = F(y))
        fixed (int* pi = kind == PoolKind.Max && indices is not null ? I(indices) : null)
        {
            int* at = pi == null ? null : pi + indices!.StorageOffset;
            PoolKernels.Forward(kind, px + x.StorageOffset, py + y.StorageOffset, at, p);
        }
    }

    /// <summary>
    /// y = maxpool(relu(a + b)) with its Int32 indices, relu(a + b) never stored: a compiled training step's residual
    /// addition + ReLU whose output only a max pool of column windows reads (<see cref="PoolKernels.FusesAddRelu"/>, which
    /// <paramref name="p"/> must satisfy). The bits of <see cref="AddRelu"/> followed by <see cref="Pool2d"/>.
    /// </summary>
    internal unsafe void AddReluMaxPool(Tensor a, Tensor b, Tensor y, Tensor indices, in Pool2dParams p)
    {
        CheckAddReluMaxPool(a, b, y, indices, p);
        if (y.NumElements == 0) return;
        // SAFETY: lengths checked above; pinned until the kernel returns, after every thread is done.
        fixed (float* pa = F(a), pb = F(b), py = F(y))
        fixed (int* pi = I(indices))
            PoolKernels.AddReluMaxForward(pa + a.StorageOffset, pb + b.StorageOffset, py + y.StorageOffset, pi + indices.StorageOffset, p);
    }

    /// <summary>
    /// dx = the gradient of <see cref="AddReluMaxPool"/>'s operands for the pool's output gradient dy, from its output y
    /// and indices: the bits of <see cref="Pool2dBackward"/> followed by the ReLU's backward with its output as the mask.
    /// </summary>
    internal unsafe void ReluMaxPoolBackward(Tensor dy, Tensor indices, Tensor y, Tensor dx, in Pool2dParams p)
    {
        CheckAddReluMaxPool(dx, dx, y, indices, p);
        CheckLength(dy, (long)p.N * p.C * p.P * p.Q, "Fused addition + ReLU + max pool output gradient dy [N, C, P, Q]");
        if (dx.NumElements == 0) return;
        // SAFETY: lengths checked above; pinned until the kernel returns, after every thread is done.
        fixed (float* pdy = F(dy), py = F(y), pdx = F(dx))
        fixed (int* pi = I(indices))
            PoolKernels.ReluMaxBackward(pdy + dy.StorageOffset, pi + indices.StorageOffset, py + y.StorageOffset, pdx + dx.StorageOffset, p);
    }

    /// <summary>Checks a fused addition + ReLU + max pool's operands (constant messages: a training step allocates nothing).</summary>
    private static void CheckAddReluMaxPool(Tensor a, Tensor b, Tensor y, Tensor indices, in Pool2dParams p)
    {
        p.Validate();
        if (!PoolKernels.FusesAddRelu(p))
            throw new ArgumentException($"A fused addition + ReLU + max pool takes column windows that tile the rows, with AVX-512; got {p}.", nameof(p));
        CheckLength(a, (long)p.N * p.C * p.H * p.W, "Fused addition + ReLU + max pool input [N, C, H, W]");
        CheckLength(b, (long)p.N * p.C * p.H * p.W, "Fused addition + ReLU + max pool input [N, C, H, W]");
        CheckLength(y, (long)p.N * p.C * p.P * p.Q, "Fused addition + ReLU + max pool output y [N, C, P, Q]");
        CheckIndices(indices, p);
    }

    /// <inheritdoc />
    public unsafe void Pool2dBackward(PoolKind kind, Tensor dy, Tensor? indices, Tensor dx, in Pool2dParams p)
    {
        p.Validate();
        CheckLength(dy, (long)p.N * p.C * p.P * p.Q, kind == PoolKind.Max ? "Max pool output gradient dy [N, C, P, Q]" : "Average pool output gradient dy [N, C, P, Q]");
        CheckLength(dx, (long)p.N * p.C * p.H * p.W, kind == PoolKind.Max ? "Max pool input gradient dx [N, C, H, W]" : "Average pool input gradient dx [N, C, H, W]");
        if (kind == PoolKind.Max)
        {
            if (indices is null)
                throw new ArgumentException("Max pool backward needs the indices of the forward pass; pass the Int32 indices tensor that Pool2d filled.");
            CheckIndices(indices, p);
        }
        if (dx.NumElements == 0) return;
        // SAFETY: lengths checked above; pinned until the kernel returns, after every thread is done.
        fixed (float* pdy = F(dy), pdx = F(dx))
        fixed (int* pi = kind == PoolKind.Max ? I(indices!) : null)
        {
            int* at = pi == null ? null : pi + indices!.StorageOffset;
            PoolKernels.Backward(kind, pdy + dy.StorageOffset, at, pdx + dx.StorageOffset, p);
        }
    }

    private static void CheckIndices(Tensor indices, in Pool2dParams p)
    {
        if (indices.DType != DType.Int32)
            throw new ArgumentException($"Max pool indices must be Int32, got {indices.DType}.");
        if (indices.NumElements != (long)p.N * p.C * p.P * p.Q || !indices.IsContiguous)
            throw new ArgumentException($"Max pool indices must be contiguous with the output's {p.N * p.C * p.P * p.Q} elements [N, C, P, Q], got shape {Tensor.FormatShape(indices.Shape)}.");
    }
}
