using NeuralCore.Autograd;

namespace NeuralCore;

public partial class Tensor
{
    private static Dictionary<string, object> Attrs(params (string Key, object Value)[] items) => items.ToDictionary(i => i.Key, i => i.Value);

    /// <summary>
    /// The same elements with a new shape (one size may be -1 and is inferred). A view sharing storage
    /// when the tensor is contiguous, otherwise a reshaped copy.
    /// </summary>
    public Tensor Reshape(params int[] newShape)
    {
        var s = InferShape(newShape, NumElements);
        var src = Contiguous();
        var view = new Tensor(src.storage, s, ContiguousStrides(s), src.offset);
        var inputShape = ShapeArray();
        return Autograd.Autograd.Record(view, OpKind.Reshape, [src], g => [g.Reshape(inputShape)], () => Attrs(("shape", s)));
    }

    /// <summary>Like <see cref="Reshape"/> but never copies: throws when the tensor is not contiguous.</summary>
    public Tensor View(params int[] newShape)
    {
        if (!IsContiguous) throw new InvalidOperationException($"View needs a contiguous tensor (shape {FormatShape(shape)} with strides {FormatShape(strides)}); use Reshape, which copies when it must.");
        return Reshape(newShape);
    }

    private int[] InferShape(int[] newShape, int count)
    {
        var s = (int[])newShape.Clone();
        if (s.Any(d => d < -1)) throw new ArgumentException($"Cannot reshape to {FormatShape(newShape)}: a size must be at least 0 (or -1, inferred).");
        var infer = Array.IndexOf(s, -1);
        if (infer >= 0 && Array.IndexOf(s, -1, infer + 1) >= 0) throw new ArgumentException("Only one dimension can be -1 in a reshape.");
        if (infer >= 0)
        {
            var known = 1;
            for (var i = 0; i < s.Length; i++) if (i != infer) known *= s[i];
            if (known == 0 || count % known != 0)
                throw new ArgumentException($"Cannot reshape a tensor of shape {FormatShape(shape)} ({count} elements) to {FormatShape(newShape)}.");
            s[infer] = count / known;
        }
        if (Numel(s) != count) throw new ArgumentException($"Cannot reshape a tensor of shape {FormatShape(shape)} ({count} elements) to {FormatShape(newShape)} ({Numel(s)} elements).");
        return s;
    }

    /// <summary>Flattens dimensions <paramref name="startDim"/>..<paramref name="endDim"/> into one.</summary>
    public Tensor Flatten(int startDim = 0, int endDim = -1)
    {
        if (Rank == 0) return Reshape(1);
        var a = NormalizeDim(startDim, Rank);
        var b = NormalizeDim(endDim, Rank);
        if (a > b) throw new ArgumentException($"Flatten({startDim}, {endDim}) on a tensor of rank {Rank}: the start dimension {a} comes after the end dimension {b}.");
        var s = new List<int>();
        for (var i = 0; i < a; i++) s.Add(shape[i]);
        var m = 1;
        for (var i = a; i <= b; i++) m *= shape[i];
        s.Add(m);
        for (var i = b + 1; i < Rank; i++) s.Add(shape[i]);
        return Reshape(s.ToArray());
    }

    /// <summary>Inserts a dimension of size 1 at <paramref name="dim"/>.</summary>
    public Tensor Unsqueeze(int dim)
    {
        var d = dim < 0 ? dim + Rank + 1 : dim;
        if (d < 0 || d > Rank)
            throw new ArgumentOutOfRangeException(nameof(dim), dim, $"Unsqueeze of a tensor of rank {Rank} takes a dimension in {-Rank - 1}..{Rank}.");
        var s = shape.ToList();
        s.Insert(d, 1);
        return Reshape(s.ToArray());
    }

    /// <summary>Removes dimension <paramref name="dim"/> if it has size 1 (all size-1 dimensions when null).</summary>
    public Tensor Squeeze(int? dim = null)
    {
        if (dim is { } d0)
        {
            var d = NormalizeDim(d0, Rank);
            if (shape[d] != 1) return this;
            var s = shape.ToList();
            s.RemoveAt(d);
            return Reshape(s.ToArray());
        }
        return Reshape(shape.Where(x => x != 1).ToArray());
    }

    /// <summary>A view with the dimensions reordered: output dimension i is input dimension dims[i].</summary>
    public Tensor Permute(params int[] dims)
    {
        if (dims.Length != Rank) throw new ArgumentException($"Permute needs {Rank} dimensions, got {dims.Length}.");
        var d = dims.Select(x => NormalizeDim(x, Rank)).ToArray();
        if (d.Distinct().Count() != Rank) throw new ArgumentException($"Permute dimensions {FormatShape(dims)} are not a permutation.");
        var view = new Tensor(storage, d.Select(i => shape[i]).ToArray(), d.Select(i => strides[i]).ToArray(), offset);
        var inverse = new int[Rank];
        for (var i = 0; i < Rank; i++) inverse[d[i]] = i;
        return Autograd.Autograd.Record(view, OpKind.Permute, [this], g => [g.Permute(inverse)], () => Attrs(("dims", d)));
    }

    /// <summary>A view with dimensions <paramref name="dim0"/> and <paramref name="dim1"/> swapped.</summary>
    public Tensor Transpose(int dim0, int dim1)
    {
        var p = Enumerable.Range(0, Rank).ToArray();
        var a = NormalizeDim(dim0, Rank);
        var b = NormalizeDim(dim1, Rank);
        (p[a], p[b]) = (p[b], p[a]);
        return Permute(p);
    }

    /// <summary>Transpose of a 2-D tensor (the last two dimensions of a batch).</summary>
    public Tensor T => Transpose(-2, -1);

    /// <summary>A view of <paramref name="length"/> elements along <paramref name="dim"/> starting at <paramref name="start"/>.</summary>
    public Tensor Narrow(int dim, int start, int length)
    {
        var d = NormalizeDim(dim, Rank);
        if (start < 0 || length < 0 || start + length > shape[d])
            throw new ArgumentOutOfRangeException(nameof(start), $"Narrow({dim}, {start}, {length}) is outside dimension {d} of size {shape[d]}.");
        var s = ShapeArray();
        s[d] = length;
        var view = new Tensor(storage, s, (int[])strides.Clone(), offset + start * strides[d]);
        var inputShape = ShapeArray();
        var dev = Device;
        return Autograd.Autograd.Record(view, OpKind.Narrow, [this], g =>
        {
            var dx = ZerosOutput(inputShape, dev);
            dx.Narrow(d, start, length).CopyFrom(g);
            return [dx];
        }, () => Attrs(("dim", d), ("start", start), ("length", length)));
    }

    /// <summary>Python-style slice along a dimension: elements start..end (exclusive; negatives count from the end).</summary>
    public Tensor Slice(int dim, int start, int end)
    {
        var d = NormalizeDim(dim, Rank);
        var size = shape[d];
        var a = Math.Clamp(start < 0 ? start + size : start, 0, size);
        var b = Math.Clamp(end < 0 ? end + size : end, 0, size);
        return Narrow(d, a, Math.Max(0, b - a));
    }

    /// <summary>Splits along <paramref name="dim"/> into pieces of the given sizes (views).</summary>
    public Tensor[] Split(int[] sizes, int dim = 0)
    {
        var d = NormalizeDim(dim, Rank);
        if (sizes.Sum() != shape[d]) throw new ArgumentException($"Split sizes {FormatShape(sizes)} do not add up to dimension {d}'s size {shape[d]}.");
        var result = new Tensor[sizes.Length];
        var start = 0;
        for (var i = 0; i < sizes.Length; i++) { result[i] = Narrow(d, start, sizes[i]); start += sizes[i]; }
        return result;
    }

    /// <summary>Splits along <paramref name="dim"/> into pieces of <paramref name="chunkSize"/> (the last may be smaller).</summary>
    public Tensor[] Split(int chunkSize, int dim = 0)
    {
        if (chunkSize <= 0) throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize, "Split chunk size must be positive.");
        var size = Size(dim);
        var sizes = new List<int>();
        for (var s = 0; s < size; s += chunkSize) sizes.Add(Math.Min(chunkSize, size - s));
        // An empty dimension splits into one empty piece, as in PyTorch.
        if (size == 0) sizes.Add(0);
        return Split(sizes.ToArray(), dim);
    }

    /// <summary>
    /// A broadcast view with size-1 dimensions repeated (stride 0) to <paramref name="newShape"/>; leading dimensions may be
    /// added; -1 keeps a dimension's size, as in PyTorch.
    /// </summary>
    public Tensor Expand(params int[] newShape)
    {
        if (newShape.Length < Rank) throw new ArgumentException($"Cannot expand shape {FormatShape(shape)} to fewer dimensions {FormatShape(newShape)}.");
        var lead = newShape.Length - Rank;
        newShape = newShape.Select((d, i) => d == -1 && i >= lead ? shape[i - lead] : d).ToArray();
        if (newShape.Any(d => d < 0))
            throw new ArgumentException($"Cannot expand shape {FormatShape(shape)} to {FormatShape(newShape)}: sizes must be at least 0, or -1 for an existing dimension.");
        var st = new int[newShape.Length];
        for (var i = 0; i < newShape.Length; i++)
        {
            if (i < lead) { st[i] = 0; continue; }
            var s = shape[i - lead];
            if (s == newShape[i]) st[i] = strides[i - lead];
            else if (s == 1) st[i] = 0;
            else throw new ArgumentException($"Cannot broadcast shape {FormatShape(shape)} to {FormatShape(newShape)}: dimension {i - lead} has size {s}.");
        }
        if (newShape.SequenceEqual(shape)) return this;
        var view = new Tensor(storage, (int[])newShape.Clone(), st, offset);
        var inputShape = ShapeArray();
        return Autograd.Autograd.Record(view, OpKind.Expand, [this], g => [g.SumTo(inputShape)], () => Attrs(("shape", newShape)));
    }

    /// <summary>Sums a broadcast gradient back down to <paramref name="target"/> (the inverse of <see cref="Expand"/>).</summary>
    public Tensor SumTo(int[] target)
    {
        if (Shape.SequenceEqual(target)) return this;
        var lead = Rank - target.Length;
        var dims = new List<int>();
        for (var i = 0; i < Rank; i++)
            if (i < lead || (target[i - lead] == 1 && shape[i] != 1)) dims.Add(i);
        var r = dims.Count > 0 ? Sum(dims.ToArray(), keepDim: true) : this;
        return r.Reshape(target);
    }

    /// <summary>A contiguous copy (recorded: gradients pass through).</summary>
    public Tensor Clone()
    {
        var y = Empty(ShapeArray(), Device, DType);
        Backend.Copy(this, y);
        return Autograd.Autograd.Record(y, OpKind.Copy, [this], g => [g]);
    }

    /// <summary>A copy converted to <paramref name="dtype"/> (this tensor when it already has it). Integer results are outside autograd.</summary>
    public Tensor AsType(DType dtype)
    {
        if (dtype == DType) return this;
        var y = Empty(ShapeArray(), Device, dtype);
        Backend.Copy(this, y);
        return y;
    }

    /// <summary>
    /// Selects the entries with the given Int64 indices (1-D, or rank 0 for one index, as PyTorch) along
    /// <paramref name="dim"/>; that dimension's size becomes the number of indices.
    /// </summary>
    public Tensor IndexSelect(int dim, Tensor indices)
    {
        var d = NormalizeDim(dim, Rank);
        if (indices.DType != DType.Int64 || indices.Rank > 1)
            throw new ArgumentException($"IndexSelect needs a 1-D Int64 index tensor; got {indices.DType} of shape {FormatShape(indices.Shape)}.");
        // NOTE: FromArray of a single value gives a rank-0 tensor, so a lone index often arrives here as rank 0.
        var idx = indices.To(Device).Contiguous();
        var n = idx.NumElements;
        var size = shape[d];
        foreach (var i in idx.ToInt64Array())
            if (i < 0 || i >= size) throw new ArgumentOutOfRangeException(nameof(indices), $"Index {i} is out of range for dimension {d} of size {size}.");
        var outer = Numel(shape.AsSpan(0, d));
        var inner = Numel(shape.AsSpan(d + 1));
        var s = ShapeArray();
        s[d] = n;
        var x = Contiguous();
        var y = Empty(s, Device, DType);
        Backend.IndexSelect(x, idx, y, outer, size, inner);
        var inputShape = ShapeArray();
        var dev = Device;
        return Autograd.Autograd.Record(y, OpKind.IndexSelect, [this, indices], g =>
        {
            var dx = ZerosOutput(inputShape, dev);
            dx.Backend.IndexAdd(g.Contiguous(), idx, dx, outer, size, inner);
            return [dx, null];
        }, () => Attrs(("dim", d)));
    }

    /// <summary>Concatenates tensors along <paramref name="dim"/> (all other sizes must agree).</summary>
    public static Tensor Concat(IReadOnlyList<Tensor> tensors, int dim = 0)
    {
        if (tensors.Count == 0) throw new ArgumentException("Concat needs at least one tensor.");
        var first = tensors[0];
        var d = NormalizeDim(dim, first.Rank);
        var s = first.ShapeArray();
        s[d] = 0;
        foreach (var t in tensors)
        {
            if (t.Rank != first.Rank || Enumerable.Range(0, t.Rank).Any(i => i != d && t.shape[i] != first.shape[i]))
                throw new ArgumentException($"Concat along dimension {d}: shape {FormatShape(t.Shape)} does not match {FormatShape(first.Shape)} outside that dimension.");
            if (t.Device != first.Device || t.DType != first.DType) throw new ArgumentException("Concat needs tensors of one device and dtype.");
            s[d] += t.shape[d];
        }
        var y = Empty(s, first.Device, first.DType);
        var sizes = tensors.Select(t => t.shape[d]).ToArray();
        var start = 0;
        foreach (var t in tensors)
        {
            using (Autograd.Autograd.NoGrad()) y.Detach().Narrow(d, start, t.shape[d]).CopyFrom(t);
            start += t.shape[d];
        }
        return Autograd.Autograd.Record(y, OpKind.Concat, tensors.ToArray(), g => g.Split(sizes, d), () => Attrs(("dim", d), ("sizes", sizes)));
    }
}
