using NeuralCore.Autograd;
using NeuralCore.Backends;

namespace NeuralCore;

public partial class Tensor
{
    private int[] NormalizeDims(int[]? dims)
    {
        if (dims is null || dims.Length == 0) return Enumerable.Range(0, Rank).ToArray();
        if (Rank == 0)
        {
            // A scalar's only dimension names are 0 and -1, as in PyTorch, and there is nothing to reduce.
            foreach (var d in dims) NormalizeDim(d, 0);
            return [];
        }
        var normalized = dims.Select(d => NormalizeDim(d, Rank)).ToArray();
        if (normalized.Distinct().Count() != normalized.Length)
            throw new ArgumentException($"Dimensions [{string.Join(", ", dims)}] name one dimension more than once (shape {FormatShape(shape)}).", nameof(dims));
        return normalized.OrderBy(d => d).ToArray();
    }

    private int[] ReducedShape(int[] dims, bool keepDim)
    {
        var s = new List<int>();
        for (var i = 0; i < Rank; i++)
        {
            if (Array.IndexOf(dims, i) < 0) s.Add(shape[i]);
            else if (keepDim) s.Add(1);
        }
        return s.ToArray();
    }

    /// <summary>Reduces one dimension through the backend's [outer, reduce, inner] kernel, keeping it as size 1.</summary>
    private Tensor ReduceOne(ReduceOp op, int d, Tensor? indices)
    {
        var x = Contiguous();
        var outer = Numel(shape.AsSpan(0, d));
        var inner = Numel(shape.AsSpan(d + 1));
        var s = ShapeArray();
        s[d] = 1;
        var y = Empty(s, Device);
        Backend.Reduce(op, x, y, indices, outer, shape[d], inner);
        return y;
    }

    private Tensor SumOrMean(ReduceOp op, int[]? dims, bool keepDim)
    {
        if (DType != DType.Float32) throw new InvalidOperationException($"{op} needs a Float32 tensor; this one is {DType}.");
        var ds = NormalizeDims(dims);
        var y = Detach();
        if (Rank == 0) y = y.Clone();
        // Reduce the highest dimension first so lower indices stay valid.
        foreach (var d in ds.Reverse()) y = y.ReduceOne(op, d, null);
        var keptShape = ReducedShape(ds, true);
        var outShape = ReducedShape(ds, keepDim);
        y = new Tensor(y.storage, outShape, ContiguousStrides(outShape), y.offset);
        var inputShape = ShapeArray();
        var count = ds.Aggregate(1, (acc, d) => acc * shape[d]);
        return Autograd.Autograd.Record(y, OpKind.Reduce, [this], g =>
        {
            var gx = g.Reshape(keptShape).Expand(inputShape);
            return [op == ReduceOp.Mean ? gx.Mul(1f / count) : gx.Clone()];
        }, () => Attrs(("op", op), ("dims", ds), ("keepdim", keepDim)));
    }

    /// <summary>Sum over <paramref name="dims"/> (all dimensions when null).</summary>
    public Tensor Sum(int[]? dims = null, bool keepDim = false) => SumOrMean(ReduceOp.Sum, dims, keepDim);

    /// <summary>Sum over one dimension.</summary>
    public Tensor Sum(int dim, bool keepDim = false) => Sum([dim], keepDim);

    /// <summary>Mean over <paramref name="dims"/> (all dimensions when null).</summary>
    public Tensor Mean(int[]? dims = null, bool keepDim = false) => SumOrMean(ReduceOp.Mean, dims, keepDim);

    /// <summary>Mean over one dimension.</summary>
    public Tensor Mean(int dim, bool keepDim = false) => Mean([dim], keepDim);

    /// <summary>Variance over <paramref name="dims"/>: unbiased (divide by n - 1) by default, as PyTorch.</summary>
    public Tensor Var(int[]? dims = null, bool unbiased = true, bool keepDim = false)
    {
        var ds = NormalizeDims(dims);
        var n = ds.Aggregate(1, (acc, d) => acc * shape[d]);
        var centred = Sub(Mean(ds, keepDim: true));
        var ss = centred.Square().Sum(ds, keepDim);
        // One value (unbiased) or none: 0 / 0, NaN, as PyTorch gives.
        return ss.Mul(1f / (unbiased ? n - 1 : n));
    }

    /// <summary>Maximum over <paramref name="dim"/>; the gradient flows to the first maximum.</summary>
    public Tensor Max(int dim, bool keepDim = false) => MaxMin(ReduceOp.Max, dim, keepDim).Values;

    /// <summary>Minimum over <paramref name="dim"/>; the gradient flows to the first minimum.</summary>
    public Tensor Min(int dim, bool keepDim = false) => MaxMin(ReduceOp.Min, dim, keepDim).Values;

    /// <summary>Maximum over all elements.</summary>
    public Tensor Max() => Reshape(-1).Max(0);

    /// <summary>Index of the first maximum along <paramref name="dim"/> (Int64).</summary>
    public Tensor ArgMax(int dim, bool keepDim = false) => MaxMin(ReduceOp.Max, dim, keepDim).Indices;

    /// <summary>Maximum or minimum with the arg index, over one dimension.</summary>
    public (Tensor Values, Tensor Indices) MaxMin(ReduceOp op, int dim, bool keepDim)
    {
        if (op is not (ReduceOp.Max or ReduceOp.Min)) throw new ArgumentException("MaxMin takes ReduceOp.Max or ReduceOp.Min.", nameof(op));
        if (DType != DType.Float32) throw new InvalidOperationException($"{op} needs a Float32 tensor; this one is {DType} (convert it with AsType(DType.Float32)).");
        if (Rank == 0)
        {
            // A scalar is its own maximum, at index 0 (PyTorch takes dimension 0 or -1 of a scalar).
            NormalizeDim(dim, 0);
            var (v, i) = Reshape(1).MaxMin(op, 0, keepDim: false);
            return (v, i);
        }
        var d = NormalizeDim(dim, Rank);
        if (shape[d] == 0) throw new InvalidOperationException($"{op} over an empty dimension {d}.");
        var keptShape = ShapeArray();
        keptShape[d] = 1;
        var idx = Empty(keptShape, Device, DType.Int64);
        var y = Detach().ReduceOne(op, d, idx);
        var outShape = ReducedShape([d], keepDim);
        var values = new Tensor(y.storage, outShape, ContiguousStrides(outShape), 0);
        var indices = new Tensor(idx.storage, (int[])outShape.Clone(), ContiguousStrides(outShape), 0);
        var inputShape = ShapeArray();
        var dev = Device;
        values = Autograd.Autograd.Record(values, OpKind.Reduce, [this], g =>
        {
            // One-hot mask of the arg index along d: positions (arange along d) equal to the index.
            var posShape = Enumerable.Repeat(1, inputShape.Length).ToArray();
            posShape[d] = inputShape[d];
            var pos = Arange(0, inputShape[d], 1, dev).Reshape(posShape);
            var mask = pos.Expand(inputShape).Equal(idx.AsType(DType.Float32).Expand(inputShape));
            return [mask.Mul(g.Reshape(keptShape))];
        }, () => Attrs(("op", op), ("dims", new[] { d }), ("keepdim", keepDim)));
        return (values, indices);
    }
}
