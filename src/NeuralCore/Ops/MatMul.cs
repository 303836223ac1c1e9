using NeuralCore.Autograd;

namespace NeuralCore;

public partial class Tensor
{
    /// <summary>
    /// Matrix product with PyTorch's rules for 2-D and batched (3-D and higher) operands: the last two
    /// dimensions multiply, leading batch dimensions broadcast. 1-D operands are treated as a row
    /// (left) or column (right) vector and that dimension is removed from the result (two 1-D operands give a scalar).
    /// </summary>
    public Tensor MatMul(Tensor other)
    {
        if (DType != DType.Float32 || other.DType != DType.Float32) throw new InvalidOperationException("MatMul needs Float32 tensors.");
        if (Rank == 0 || other.Rank == 0) throw new ArgumentException("MatMul needs operands of rank 1 or more.");
        if (Rank == 1 && other.Rank == 1) return Unsqueeze(0).MatMul(other.Unsqueeze(1)).Reshape();
        if (Rank == 1) return Unsqueeze(0).MatMul(other).Squeeze(-2);
        if (other.Rank == 1) return MatMul(other.Unsqueeze(1)).Squeeze(-1);

        var m = shape[^2]; var k = shape[^1]; var k2 = other.shape[^2]; var n = other.shape[^1];
        if (k != k2) throw new ArgumentException($"MatMul shapes {FormatShape(shape)} and {FormatShape(other.shape)} do not fit: {k} columns vs {k2} rows.");
        var batchShape = BroadcastShapes(shape.AsSpan(0, Rank - 2), other.shape.AsSpan(0, other.Rank - 2));
        var batch = Numel(batchShape);
        var (a, transA, strideA) = MatrixOperand(this, batchShape, m, k);
        var (b, transB, strideB) = MatrixOperand(other, batchShape, k, n);
        var outShape = batchShape.Append(m).Append(n).ToArray();
        var y = Empty(outShape, Device);
        Backend.MatMul(a, transA, b, transB, y, batch, m, n, k, strideA, strideB, 0);
        var self = this;
        return Autograd.Autograd.Record(y, OpKind.MatMul, [this, other], g =>
        [
            g.MatMul(other.Detach().Transpose(-1, -2)).SumTo(self.ShapeArray()),
            self.Detach().Transpose(-1, -2).MatMul(g).SumTo(other.ShapeArray()),
        ]);
    }

    /// <summary>
    /// Presents an operand as a batch of matrices the GEMM can read without copying where possible:
    /// row-major, or transposed row-major (a transposed view), with one matrix stride (0 when broadcast).
    /// </summary>
    private static (Tensor Data, bool Transposed, int Stride) MatrixOperand(Tensor t, int[] batchShape, int rows, int cols)
    {
        var r = t.Rank;
        var batchDims = r - 2;
        var isBroadcastSingle = t.Numel(0, batchDims) == 1;
        var rowMajor = t.strides[r - 1] == 1 && t.strides[r - 2] == cols;
        var colMajor = t.strides[r - 2] == 1 && t.strides[r - 1] == rows;
        if (isBroadcastSingle && (rowMajor || colMajor) && rows * cols > 0)
            return (new Tensor(t.storage, [rows, cols], [t.strides[r - 2], t.strides[r - 1]], t.offset), colMajor && !rowMajor, 0);
        Tensor full;
        using (Autograd.Autograd.NoGrad())
            full = t.Detach().Expand([.. batchShape, rows, cols]).Contiguous();
        return (full, false, rows * cols);
    }

    private int Numel(int from, int to)
    {
        var n = 1;
        for (var i = from; i < to; i++) n *= shape[i];
        return n;
    }
}
