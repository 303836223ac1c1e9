namespace NeuralCore.Backends.Cpu;

// Batch norm: x, y, dy, dx [N, C, HW]; gamma, beta, saved and running statistics [C]; all contiguous.
// The kernels are in BatchNormKernels.
public sealed partial class CpuBackend
{
    /// <inheritdoc />
    public void BatchNormTraining(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd,
        Tensor? runningMean, Tensor? runningVar, float momentum, float eps, int n, int c, int hw) =>
        BatchNormTraining(x, gamma, beta, y, saveMean, saveInvStd, runningMean, runningVar, momentum, eps, n, c, hw, relu: false);

    /// <summary>
    /// <see cref="BatchNormTraining(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor?, Tensor?, float, float, int, int, int)"/>,
    /// followed with <paramref name="relu"/> by a ReLU in the same pass (y = relu(batch norm), the batch norm's output
    /// itself not stored): what a compiled training step runs for a batch norm read only by a ReLU. With
    /// <paramref name="hardswishScaleOffset"/> ([2C]; planes of 64 values or more), by a Hardswish instead, each channel's
    /// scale and offset saved there for the backward. With a <paramref name="pool"/> as well (a 2x2 / 2 max pool whose
    /// windows lie inside the planes), y [N, C, P, Q] is that pool's output of the Hardswish's, and
    /// <paramref name="poolIndices"/> (Int32, the shape of y) the flat index of each maximum. With a
    /// <paramref name="residual"/> (the shape of x; no other fused op), y = batch norm + residual, then a ReLU with
    /// <paramref name="residualRelu"/>: a batch norm read only by an addition (and the ReLU after it); over planes of 64
    /// values or more the <paramref name="pool"/> may then be a max pool of column windows after that ReLU
    /// (<see cref="PoolKernels.FusesAddRelu"/>), y [N, C, P, Q] its output, as <see cref="AddReluMaxPool"/> writes it. With
    /// <paramref name="reluScaleOffset"/> ([2C]; a ReLU over planes of 64 values or more, AVX-512), each channel's scale
    /// and offset saved there too, so that the backward can tell where the ReLU's output is positive from x alone. With
    /// <paramref name="planeSums"/> (planes of 64 values or more), the sums of x's planes that the convolution writing x
    /// left there (<see cref="Conv2dWithPlaneSums"/>), read instead of summing the planes: the same bits.
    /// </summary>
    internal unsafe void BatchNormTraining(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd,
        Tensor? runningMean, Tensor? runningVar, float momentum, float eps, int n, int c, int hw, bool relu,
        Tensor? hardswishScaleOffset = null, Pool2dParams? pool = null, Tensor? poolIndices = null, Tensor? residual = null,
        bool residualRelu = false, Tensor? reluScaleOffset = null, BatchNormPlaneSums? planeSums = null)
    {
        CheckBatchNorm(n, c, hw);
        if ((long)n * hw <= 1)
            throw new ArgumentException($"BatchNorm in training mode needs more than one value per channel, got N={n} and HW={hw}.");
        long size = (long)n * c * hw;
        CheckLength(x, size, "BatchNorm input x [N, C, HW]");
        CheckFusedPool(pool, poolIndices, hardswishScaleOffset, n, c, hw, afterSum: residual is not null && residualRelu && hw >= BatchNormKernels.SmallPlane);
        CheckLength(y, pool is { } q ? (long)n * c * q.P * q.Q : size, pool is null ? "BatchNorm output y [N, C, HW]" : "BatchNorm + max pool output y [N, C, P, Q]");
        CheckLength(gamma, c, "BatchNorm weight (gamma) [C]");
        CheckLength(beta, c, "BatchNorm bias (beta) [C]");
        CheckLength(saveMean, c, "BatchNorm saved mean [C]");
        CheckLength(saveInvStd, c, "BatchNorm saved inverse std [C]");
        if (runningMean is not null) CheckLength(runningMean, c, "BatchNorm running mean [C]");
        if (runningVar is not null) CheckLength(runningVar, c, "BatchNorm running variance [C]");
        if (hardswishScaleOffset is not null) CheckLength(hardswishScaleOffset, 2L * c, "BatchNorm fused Hardswish scales and offsets [2C]");
        if (residual is not null) CheckLength(residual, size, "BatchNorm fused addition's other operand [N, C, HW]");
        if (reluScaleOffset is not null) CheckReluScaleOffset(reluScaleOffset, relu, c, hw);
        if (planeSums is not null && (planeSums.N != n || planeSums.C != c))
            throw new ArgumentException($"The planes' sums are for {planeSums.N} samples of {planeSums.C} channels, the batch norm has {n} of {c}.", nameof(planeSums));
        // SAFETY: lengths checked above; pinned until the kernel returns, after every thread is done (the sums are pinned).
        fixed (float* px = F(x), pg = F(gamma), pb = F(beta), py = F(y), pm = F(saveMean), ps = F(saveInvStd))
        fixed (float* prm = runningMean is null ? null : F(runningMean), prv = runningVar is null ? null : F(runningVar))
        fixed (float* ph = hardswishScaleOffset is null ? null : F(hardswishScaleOffset))
        fixed (float* pr = residual is null ? null : F(residual), prs = reluScaleOffset is null ? null : F(reluScaleOffset))
        fixed (int* pi = poolIndices is null ? null : I(poolIndices))
        {
            BatchNormKernels.Training(px + x.StorageOffset, pg + gamma.StorageOffset, pb + beta.StorageOffset, py + y.StorageOffset,
                pm + saveMean.StorageOffset, ps + saveInvStd.StorageOffset,
                prm == null ? null : prm + runningMean!.StorageOffset, prv == null ? null : prv + runningVar!.StorageOffset,
                momentum, eps, n, c, hw, relu, ph == null ? null : ph + hardswishScaleOffset!.StorageOffset,
                FusedPool(pool, pi == null ? null : pi + poolIndices!.StorageOffset), pr == null ? null : pr + residual!.StorageOffset,
                residualRelu, prs == null ? null : prs + reluScaleOffset!.StorageOffset, planeSums is null ? null : planeSums.Pointer);
        }
    }

    /// <summary>A fused ReLU's saved scale and offset [2C], where a batch norm can keep them (<see cref="BatchNormKernels.TakesReluScaleOffset"/>).</summary>
    private static void CheckReluScaleOffset(Tensor reluScaleOffset, bool relu, int c, int hw)
    {
        if (!relu || !BatchNormKernels.TakesReluScaleOffset(hw))
            throw new ArgumentException($"A ReLU's scale and offset are saved for a fused ReLU over planes of {BatchNormKernels.SmallPlane} values or more with AVX-512 (and read instead of its output), got planes of {hw}.", nameof(reluScaleOffset));
        CheckLength(reluScaleOffset, 2L * c, "BatchNorm fused ReLU's scales and offsets [2C]");
    }

    /// <summary>
    /// Checks a pool fused into a batch norm, and indices the size of its output: 2x2 windows of stride 2 after a fused
    /// Hardswish, or (<paramref name="afterSum"/>: training with a fused addition + ReLU over large planes) column
    /// windows after the addition + ReLU.
    /// </summary>
    private static void CheckFusedPool(Pool2dParams? pool, Tensor? indices, Tensor? hardswishScaleOffset, int n, int c, int hw, bool afterSum = false)
    {
        if (pool is not { } p)
        {
            if (indices is not null) throw new ArgumentException("BatchNorm was given max-pool indices without a pool.", nameof(indices));
            return;
        }
        bool windows = hardswishScaleOffset is not null ? PoolKernels.IsWhole2x2(p) : afterSum && PoolKernels.FusesAddRelu(p);
        if (!windows || indices is null || p.N != n || p.C != c || (long)p.H * p.W != hw)
        {
            throw new ArgumentException(
                $"A max pool fused into a batch norm needs its indices and either a fused Hardswish and 2x2 windows of stride 2, or a fused addition + ReLU and column windows, inside the batch norm's [N={n}, C={c}, HW={hw}] planes; got {p}.", nameof(pool));
        }
        if (indices.DType != DType.Int32 || indices.Device != Device.Cpu || !indices.IsContiguous || indices.NumElements != (long)n * c * p.P * p.Q)
            throw new ArgumentException($"The fused max pool's indices must be a contiguous Int32 CPU tensor of {(long)n * c * p.P * p.Q} elements.", nameof(indices));
    }

    private static unsafe BatchNormKernels.FusedPool FusedPool(Pool2dParams? pool, int* indices) =>
        pool is { } p ? new BatchNormKernels.FusedPool(p, indices) : default;

    /// <inheritdoc />
    public unsafe void BatchNormInference(Tensor x, Tensor gamma, Tensor beta, Tensor runningMean, Tensor runningVar, Tensor y,
        float eps, int n, int c, int hw)
    {
        CheckBatchNorm(n, c, hw);
        long size = (long)n * c * hw;
        CheckLength(x, size, "BatchNorm input x [N, C, HW]");
        CheckLength(y, size, "BatchNorm output y [N, C, HW]");
        CheckLength(gamma, c, "BatchNorm weight (gamma) [C]");
        CheckLength(beta, c, "BatchNorm bias (beta) [C]");
        CheckLength(runningMean, c, "BatchNorm running mean [C]");
        CheckLength(runningVar, c, "BatchNorm running variance [C]");
        if (size == 0) return;
        // SAFETY: lengths checked above; pinned until the kernel returns, after every thread is done.
        fixed (float* px = F(x), pg = F(gamma), pb = F(beta), prm = F(runningMean), prv = F(runningVar), py = F(y))
        {
            BatchNormKernels.Inference(px + x.StorageOffset, pg + gamma.StorageOffset, pb + beta.StorageOffset,
                prm + runningMean.StorageOffset, prv + runningVar.StorageOffset, py + y.StorageOffset, eps, n, c, hw);
        }
    }

    /// <inheritdoc />
    public void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx,
        Tensor dgamma, Tensor dbeta, int n, int c, int hw) =>
        BatchNormBackward(x, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta, n, c, hw, reluOutput: null);

    /// <summary>
    /// <see cref="BatchNormBackward(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, int, int, int)"/> of a
    /// batch norm fused with a ReLU when <paramref name="reluOutput"/> (the pair's output) is given: dy is the gradient
    /// of the ReLU's output and counts only where that output is positive, as the ReLU's backward would hand it on; of a
    /// batch norm fused with a Hardswish when <paramref name="hardswishScaleOffset"/> (what training saved) is given: dy is
    /// the gradient of the Hardswish's output and counts times its slope, as the Hardswish's backward would hand it on;
    /// with a fused <paramref name="pool"/> as well, dy [N, C, P, Q] is the gradient of the pool's output, routed to each
    /// window's maximum through <paramref name="poolIndices"/> as the pool's backward would. With
    /// <paramref name="reluScaleOffset"/> instead of <paramref name="reluOutput"/> (what training saved there), the
    /// ReLU's output counts as positive where x * scale + offset is, the same test without reading the output.
    /// </summary>
    internal unsafe void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx,
        Tensor dgamma, Tensor dbeta, int n, int c, int hw, Tensor? reluOutput, Tensor? hardswishScaleOffset = null,
        Pool2dParams? pool = null, Tensor? poolIndices = null, Tensor? reluScaleOffset = null)
    {
        CheckBatchNormBackward(x, dy, gamma, saveMean, saveInvStd, dgamma, dbeta, n, c, hw, reluOutput, hardswishScaleOffset, pool, poolIndices);
        if (reluScaleOffset is not null) CheckReluScaleOffset(reluScaleOffset, reluOutput is null && hardswishScaleOffset is null, c, hw);
        CheckLength(dx, (long)n * c * hw, "BatchNorm input gradient dx [N, C, HW]");
        if ((long)n * hw == 0)
        {
            Span(dgamma).Clear();
            Span(dbeta).Clear();
            return;
        }
        RunBackward(x, dy, gamma, saveMean, saveInvStd, dx, null, dgamma, dbeta, n, c, hw, reluOutput, hardswishScaleOffset, pool, poolIndices,
            reluScaleOffset);
    }

    /// <summary>
    /// <see cref="BatchNormBackward(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, int, int, int, Tensor?, Tensor?, Pool2dParams?, Tensor?, Tensor?)"/>
    /// without dx, for a compiled training step whose stem convolution makes dx itself, chunk by chunk
    /// (<see cref="Conv2dBackwardWeightThroughBatchNorm"/>): dgamma, dbeta, and per channel the coefficients of dx in
    /// <paramref name="coefficients"/> [3C]. Planes of 64 values or more, N * HW above 0.
    /// </summary>
    internal void BatchNormBackwardSums(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor coefficients,
        Tensor dgamma, Tensor dbeta, int n, int c, int hw, Tensor? reluOutput, Tensor? hardswishScaleOffset, Pool2dParams? pool, Tensor? poolIndices)
    {
        CheckBatchNormBackward(x, dy, gamma, saveMean, saveInvStd, dgamma, dbeta, n, c, hw, reluOutput, hardswishScaleOffset, pool, poolIndices);
        CheckLength(coefficients, 3L * c, "BatchNorm input gradient's coefficients [3C]");
        if (hw < BatchNormKernels.SmallPlane || n == 0)
            throw new ArgumentException($"BatchNormBackwardSums needs planes of {BatchNormKernels.SmallPlane} values or more and N > 0, got N={n} and HW={hw}.");
        RunBackward(x, dy, gamma, saveMean, saveInvStd, null, coefficients, dgamma, dbeta, n, c, hw, reluOutput, hardswishScaleOffset, pool, poolIndices);
    }

    /// <summary>The backward kernel with dx, or without it, leaving dx's coefficients (arguments checked by the caller).</summary>
    private static unsafe void RunBackward(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor? dx, Tensor? coefficients,
        Tensor dgamma, Tensor dbeta, int n, int c, int hw, Tensor? reluOutput, Tensor? hardswishScaleOffset, Pool2dParams? pool, Tensor? poolIndices,
        Tensor? reluScaleOffset = null)
    {
        // SAFETY: lengths checked by the caller; pinned until the kernel returns, after every thread is done.
        fixed (float* px = F(x), pdy = F(dy), pg = F(gamma), pm = F(saveMean), ps = F(saveInvStd))
        fixed (float* pdx = dx is null ? null : F(dx), pc = coefficients is null ? null : F(coefficients))
        fixed (float* pdg = F(dgamma), pdb = F(dbeta), pr = reluOutput is null ? null : F(reluOutput))
        fixed (float* ph = hardswishScaleOffset is null ? null : F(hardswishScaleOffset), prs = reluScaleOffset is null ? null : F(reluScaleOffset))
        fixed (int* pi = poolIndices is null ? null : I(poolIndices))
        {
            float* xp = px + x.StorageOffset, dyp = pdy + dy.StorageOffset, gp = pg + gamma.StorageOffset;
            float* mp = pm + saveMean.StorageOffset, sp = ps + saveInvStd.StorageOffset;
            float* dgp = pdg + dgamma.StorageOffset, dbp = pdb + dbeta.StorageOffset;
            float* rp = pr == null ? null : pr + reluOutput!.StorageOffset, hp = ph == null ? null : ph + hardswishScaleOffset!.StorageOffset;
            var fused = FusedPool(pool, pi == null ? null : pi + poolIndices!.StorageOffset);
            if (pc == null)
                BatchNormKernels.Backward(xp, dyp, gp, mp, sp, pdx + dx!.StorageOffset, dgp, dbp, n, c, hw, rp, hp, fused,
                    prs == null ? null : prs + reluScaleOffset!.StorageOffset);
            else BatchNormKernels.BackwardSums(xp, dyp, gp, mp, sp, pc + coefficients!.StorageOffset, dgp, dbp, n, c, hw, rp, hp, fused);
        }
    }

    /// <summary>
    /// dw of a stem convolution (<paramref name="p"/>: one input channel, stride 2, run by the stem's direct weight
    /// gradient) whose output is the input of a training batch norm that alone reads it, after
    /// <see cref="BatchNormBackwardSums"/> left that batch norm's <paramref name="coefficients"/>: each thread makes the
    /// batch norm's input gradient (the convolution's dy) for a chunk of samples in cache, then multiplies it. The bits
    /// of <see cref="BatchNormBackward(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, int, int, int, Tensor?, Tensor?, Pool2dParams?, Tensor?, Tensor?)"/>
    /// followed by <see cref="Conv2dBackwardWeight"/>, without dx in memory. The batch norm's arguments are those given
    /// to <see cref="BatchNormBackwardSums"/>.
    /// </summary>
    internal unsafe void Conv2dBackwardWeightThroughBatchNorm(Tensor x, Tensor dw, in Conv2dParams p, Tensor normInput, Tensor normDy,
        Tensor saveMean, Tensor coefficients, Tensor? reluOutput, Tensor? hardswishScaleOffset, Pool2dParams? pool, Tensor? poolIndices)
    {
        p.Validate();
        if (!ConvKernels.RunsStemWeightGradient(p))
            throw new ArgumentException($"Conv2dBackwardWeightThroughBatchNorm needs a convolution the stem's weight gradient runs (one input channel, stride 2, AVX-512), got {p}.", nameof(p));
        int n = p.N, c = p.K, hw = p.P * p.Q;
        CheckLength(x, (long)n * p.C * p.H * p.W, "Conv2d input x [N, C, H, W]");
        CheckLength(dw, (long)p.K * p.C * p.R * p.S, "Conv2d weight gradient dw [K, C, R, S]");
        CheckBackwardOperands(normInput, normDy, n, c, hw, reluOutput, hardswishScaleOffset, pool, poolIndices);
        CheckLength(saveMean, c, "BatchNorm saved mean [C]");
        CheckLength(coefficients, 3L * c, "BatchNorm input gradient's coefficients [3C]");
        if (n == 0)
        {
            Span(dw).Clear();
            return;
        }
        // SAFETY: lengths checked above; pinned until the kernel returns, after every thread is done. The source lives
        // on this stack frame, which RunStemWithFill's parts read before it returns.
        fixed (float* px = F(x), pdw = F(dw), pin = F(normInput), pdy = F(normDy), pm = F(saveMean), pc = F(coefficients))
        fixed (float* pr = reluOutput is null ? null : F(reluOutput), ph = hardswishScaleOffset is null ? null : F(hardswishScaleOffset))
        fixed (int* pi = poolIndices is null ? null : I(poolIndices))
        {
            var source = new BatchNormKernels.InputGradientSource
            {
                X = pin + normInput.StorageOffset, Dy = pdy + normDy.StorageOffset, Mean = pm + saveMean.StorageOffset,
                Coefficients = pc + coefficients.StorageOffset,
                ReluOutput = pr == null ? null : pr + reluOutput!.StorageOffset,
                HardswishScaleOffset = ph == null ? null : ph + hardswishScaleOffset!.StorageOffset,
                PoolIndices = pi == null ? null : pi + poolIndices!.StorageOffset,
                C = c, HW = hw, W = pool is { } r ? r.W : 0, PooledH = pool?.P ?? 0, PooledW = pool?.Q ?? 0,
            };
            DirectWeightGradient.RunStemWithFill(px + x.StorageOffset, pdw + dw.StorageOffset, p, &BatchNormKernels.FillInputGradient, &source);
        }
    }

    private static void CheckBatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dgamma, Tensor dbeta,
        int n, int c, int hw, Tensor? reluOutput, Tensor? hardswishScaleOffset, Pool2dParams? pool, Tensor? poolIndices)
    {
        CheckBatchNorm(n, c, hw);
        CheckBackwardOperands(x, dy, n, c, hw, reluOutput, hardswishScaleOffset, pool, poolIndices);
        CheckLength(gamma, c, "BatchNorm weight (gamma) [C]");
        CheckLength(saveMean, c, "BatchNorm saved mean [C]");
        CheckLength(saveInvStd, c, "BatchNorm saved inverse std [C]");
        CheckLength(dgamma, c, "BatchNorm weight gradient [C]");
        CheckLength(dbeta, c, "BatchNorm bias gradient [C]");
    }

    /// <summary>A batch norm's input x, output gradient dy (the fused pool's when given) and what its fused ops saved.</summary>
    private static void CheckBackwardOperands(Tensor x, Tensor dy, int n, int c, int hw, Tensor? reluOutput, Tensor? hardswishScaleOffset,
        Pool2dParams? pool, Tensor? poolIndices)
    {
        long size = (long)n * c * hw;
        CheckLength(x, size, "BatchNorm input x [N, C, HW]");
        CheckFusedPool(pool, poolIndices, hardswishScaleOffset, n, c, hw);
        CheckLength(dy, pool is { } q ? (long)n * c * q.P * q.Q : size, pool is null ? "BatchNorm output gradient dy [N, C, HW]" : "BatchNorm + max pool output gradient dy [N, C, P, Q]");
        if (reluOutput is not null) CheckLength(reluOutput, size, "BatchNorm fused ReLU output [N, C, HW]");
        if (hardswishScaleOffset is not null) CheckLength(hardswishScaleOffset, 2L * c, "BatchNorm fused Hardswish scales and offsets [2C]");
    }

    private static void CheckBatchNorm(int n, int c, int hw)
    {
        if (n < 0 || c < 1 || hw < 0)
            throw new ArgumentException($"BatchNorm needs N >= 0, C >= 1 and HW >= 0, got N={n}, C={c}, HW={hw}.");
    }
}
