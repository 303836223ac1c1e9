namespace NeuralCore.Backends;

/// <summary>
/// The contract every compute backend implements: one method per op family. The CPU backend is the
/// specification; other backends are tested against it.
/// </summary>
/// <remarks>
/// Callers (the ops in <c>NeuralCore/Ops</c>) allocate outputs and guarantee that every tensor argument
/// lives on this backend's device and is contiguous, unless a parameter says otherwise. Shapes are
/// described by the parameter structs or by the [outer, reduce, inner] convention of the method.
/// Outputs are overwritten unless the method says it accumulates.
/// </remarks>
public interface IBackend
{
    /// <summary>The device this backend computes on.</summary>
    Device Device { get; }

    // ---- memory -------------------------------------------------------------------------------

    /// <summary>Allocates zeroed storage of <paramref name="length"/> elements.</summary>
    Storage Allocate(DType dtype, int length);

    /// <summary>
    /// Storage of <paramref name="length"/> elements whose contents are undefined, for an op output that writes every
    /// element (a <see cref="TensorScope"/> owns it); by default zeroed like <see cref="Allocate"/>.
    /// </summary>
    Storage AllocateUninitialized(DType dtype, int length) => Allocate(dtype, length);

    /// <summary>Copies a host array (float[], long[] or int[]) into new storage.</summary>
    Storage FromHost(Array data);

    /// <summary>Copies the elements of contiguous <paramref name="src"/> into <paramref name="dst"/> (same dtype and length).</summary>
    void CopyToHost(Tensor src, Array dst);

    /// <summary>Sets every element of <paramref name="dst"/> to <paramref name="value"/>.</summary>
    void Fill(Tensor dst, double value);

    /// <summary>Copies <paramref name="src"/> into <paramref name="dst"/> (same shape; both may have any strides, e.g. a Narrow view as destination), converting the dtype if they differ.</summary>
    void Copy(Tensor src, Tensor dst);

    /// <summary>Fills <paramref name="dst"/> with uniform samples in [low, high).</summary>
    void RandomUniform(Tensor dst, float low, float high, Generator generator);

    /// <summary>Fills <paramref name="dst"/> with normal samples.</summary>
    void RandomNormal(Tensor dst, float mean, float std, Generator generator);

    // ---- element-wise -------------------------------------------------------------------------

    /// <summary>y = op(x), element-wise.</summary>
    void Unary(UnaryOp op, Tensor x, Tensor y, float alpha, float beta);

    /// <summary>dx = dy * op'(x) (the forward output <paramref name="y"/> is given for ops whose derivative uses it).</summary>
    void UnaryBackward(UnaryOp op, Tensor x, Tensor y, Tensor dy, Tensor dx, float alpha, float beta);

    /// <summary>y = a op b. <paramref name="a"/> and <paramref name="b"/> are views already broadcast to y's shape (stride 0 on broadcast dimensions; any strides); y is contiguous.</summary>
    void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y);

    /// <summary>y += alpha * x (same length; used for gradient accumulation).</summary>
    void AddScaled(Tensor y, Tensor x, float alpha);

    // ---- reductions ---------------------------------------------------------------------------

    /// <summary>
    /// Reduces x viewed as [outer, reduce, inner] over the middle axis into y viewed as [outer, inner].
    /// For Max/Min, <paramref name="indices"/> (Int64, [outer, inner]) receives the arg index when not null.
    /// </summary>
    void Reduce(ReduceOp op, Tensor x, Tensor y, Tensor? indices, int outer, int reduce, int inner);

    // ---- linear algebra -----------------------------------------------------------------------

    /// <summary>
    /// Batched row-major C[b] = op(A[b]) op(B[b]) + beta * C[b] for b in [0, batch), with op(A) m x k and op(B) k x n.
    /// strideA/strideB are the element distance between consecutive matrices (0 broadcasts one matrix).
    /// </summary>
    void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, int batch, int m, int n, int k, int strideA, int strideB, float beta);

    // ---- indexing -----------------------------------------------------------------------------

    /// <summary>y[o, j, i] = x[o, indices[j], i] for x [outer, dimSize, inner] and Int64 indices.</summary>
    void IndexSelect(Tensor x, Tensor indices, Tensor y, int outer, int dimSize, int inner);

    /// <summary>dx[o, indices[j], i] += dy[o, j, i] (accumulates into dx; repeated indices add up).</summary>
    void IndexAdd(Tensor dy, Tensor indices, Tensor dx, int outer, int dimSize, int inner);

    // ---- convolution --------------------------------------------------------------------------

    /// <summary>y = conv2d(x, w) (+ bias per output channel).</summary>
    void Conv2d(Tensor x, Tensor w, Tensor? bias, Tensor y, in Conv2dParams p);

    /// <summary>dx = gradient of conv2d with respect to its input.</summary>
    void Conv2dBackwardData(Tensor dy, Tensor w, Tensor dx, in Conv2dParams p);

    /// <summary>dw = gradient of conv2d with respect to its weight.</summary>
    void Conv2dBackwardWeight(Tensor dy, Tensor x, Tensor dw, in Conv2dParams p);

    // ---- pooling ------------------------------------------------------------------------------

    /// <summary>2-D pooling. For max pooling, <paramref name="indices"/> (Int32, shape of y) receives the flat h*W+w index of each maximum when not null.</summary>
    void Pool2d(PoolKind kind, Tensor x, Tensor y, Tensor? indices, in Pool2dParams p);

    /// <summary>Gradient of 2-D pooling (overwrites dx). Max pooling needs the indices of the forward pass.</summary>
    void Pool2dBackward(PoolKind kind, Tensor dy, Tensor? indices, Tensor dx, in Pool2dParams p);

    // ---- batch norm ---------------------------------------------------------------------------

    /// <summary>
    /// Training-mode batch norm over x [N, C, HW]: batch statistics (biased variance for normalisation),
    /// saves mean and 1/sqrt(var + eps) per channel, and, when given, updates the running statistics
    /// with <paramref name="momentum"/> using the unbiased variance.
    /// </summary>
    void BatchNormTraining(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd,
        Tensor? runningMean, Tensor? runningVar, float momentum, float eps, int n, int c, int hw);

    /// <summary>Eval-mode batch norm with the running statistics.</summary>
    void BatchNormInference(Tensor x, Tensor gamma, Tensor beta, Tensor runningMean, Tensor runningVar, Tensor y, float eps, int n, int c, int hw);

    /// <summary>Gradients of training-mode batch norm (dx overwritten, dgamma and dbeta overwritten).</summary>
    void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx, Tensor dgamma, Tensor dbeta, int n, int c, int hw);

    // ---- softmax and losses -------------------------------------------------------------------

    /// <summary>Softmax (or log-softmax) of each row of x [rows, cols].</summary>
    void Softmax(Tensor x, Tensor y, int rows, int cols, bool log);

    /// <summary>Gradient of (log-)softmax from its output y.</summary>
    void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, int rows, int cols, bool log);

    /// <summary>
    /// Per-sample negative log-likelihood with label smoothing (PyTorch's formula):
    /// loss[i] = -(1 - s) * w[t_i] * logp[i, t_i] - (s / C) * sum_c w[c] * logp[i, c], w = 1 when classWeights is null.
    /// targets are Int64 class indices in [0, cols).
    /// </summary>
    void NllLoss(Tensor logProbs, Tensor targets, Tensor? classWeights, float labelSmoothing, Tensor losses, int rows, int cols);

    /// <summary>dlogp[i, c] = dloss[i] * d loss[i] / d logp[i, c] (overwrites dLogProbs).</summary>
    void NllLossBackward(Tensor targets, Tensor? classWeights, float labelSmoothing, Tensor dLosses, Tensor dLogProbs, int rows, int cols);

    // ---- optimizers ---------------------------------------------------------------------------

    /// <summary>One Adam/AdamW step in place on parameter p with gradient g and moments m, v (and vMax for AMSGrad).</summary>
    void AdamStep(Tensor p, Tensor g, Tensor m, Tensor v, Tensor? vMax, in AdamParams h);

    /// <summary>One SGD step in place on parameter p with gradient g and momentum buffer (null when momentum is 0).</summary>
    void SgdStep(Tensor p, Tensor g, Tensor? momentumBuffer, in SgdParams h);
}
