using System.Text;
using NeuralCore.Autograd;
using NeuralCore.Backends;

namespace NeuralCore;

/// <summary>
/// An n-dimensional array on a device, a strided view (shape, strides, offset) onto a <see cref="Storage"/>,
/// with reverse-mode autograd. Float32 tensors take part in autograd; Int64/Int32 tensors carry labels and indices.
/// </summary>
/// <remarks>
/// Ops live in the partial files under <c>Ops/</c>, each forward next to its backward rule.
/// View ops (Reshape of a contiguous tensor, Permute, Transpose, Narrow, Expand) share storage; every
/// other op returns a new contiguous tensor.
/// </remarks>
public partial class Tensor : IDisposable
{
    internal Storage storage;
    internal int offset;
    internal int[] shape;
    internal int[] strides;
    private bool _requiresGrad;

    internal Tensor(Storage storage, int[] shape, int[] strides, int offset)
    {
        this.storage = storage;
        this.shape = shape;
        this.strides = strides;
        this.offset = offset;
    }

    internal Tensor(Storage storage, int[] shape) : this(storage, shape, ContiguousStrides(shape), 0) { }

    /// <summary>The sizes of the dimensions.</summary>
    public ReadOnlySpan<int> Shape => shape;

    /// <summary>The element distance between neighbours along each dimension.</summary>
    public ReadOnlySpan<int> Strides => strides;

    /// <summary>The index of the first element in the storage.</summary>
    public int StorageOffset => offset;

    /// <summary>The underlying storage (shared with views).</summary>
    public Storage Storage => storage;

    /// <summary>Number of dimensions.</summary>
    public int Rank => shape.Length;

    /// <summary>Number of elements.</summary>
    public int NumElements => Numel(shape);

    /// <summary>Element type.</summary>
    public DType DType => storage.DType;

    /// <summary>Device holding the elements.</summary>
    public Device Device => storage.Device;

    /// <summary>The backend computing on this tensor's device.</summary>
    public IBackend Backend => storage.Device.Backend;

    /// <summary>Size of dimension <paramref name="dim"/> (negative counts from the end).</summary>
    public int Size(int dim) => shape[NormalizeDim(dim, Rank)];

    /// <summary>A copy of the shape as an array.</summary>
    public int[] ShapeArray() => (int[])shape.Clone();

    /// <summary>Whether gradients flow to this tensor. Only leaves (tensors not produced by a recorded op) can be set.</summary>
    public bool RequiresGrad
    {
        get => _requiresGrad;
        set
        {
            if (!IsLeaf && !value)
                throw new InvalidOperationException("RequiresGrad can only be switched off on a leaf tensor; use Detach() to get a tensor outside the graph.");
            if (value && DType != DType.Float32)
                throw new InvalidOperationException($"Only Float32 tensors can require gradients; this tensor is {DType}.");
            _requiresGrad = value;
        }
    }

    internal void SetRequiresGradInternal(bool value) => _requiresGrad = value;

    /// <summary>The accumulated gradient (for leaves that require grad), or null before the first backward pass.</summary>
    /// <remarks>A gradient stored here outlives any <see cref="TensorScope"/> it was computed in.</remarks>
    public Tensor? Grad
    {
        get => _grad;
        set
        {
            if (value is not null) TensorScope.Escape(value.storage);
            _grad = value;
        }
    }

    private Tensor? _grad;

    /// <summary>The recorded op that produced this tensor, or null for a leaf.</summary>
    public Node? GradFn { get; internal set; }

    /// <summary>True when this tensor was not produced by a recorded op.</summary>
    public bool IsLeaf => GradFn is null;

    /// <summary>An optional name (parameters carry their state-dict name).</summary>
    public string? Name { get; set; }

    /// <summary>True when the elements are laid out densely in row-major order.</summary>
    public bool IsContiguous
    {
        get
        {
            var expected = 1;
            for (var d = Rank - 1; d >= 0; d--)
            {
                if (shape[d] != 1 && strides[d] != expected) return false;
                expected *= shape[d];
            }
            return true;
        }
    }

    /// <summary>This tensor if contiguous, else a contiguous copy (recorded for autograd).</summary>
    public Tensor Contiguous() => IsContiguous ? this : Clone();

    /// <summary>The host elements of this tensor (CPU, contiguous, Float32) without copying.</summary>
    /// <exception cref="InvalidOperationException">The tensor is not a contiguous Float32 CPU tensor.</exception>
    public Span<float> AsSpan()
    {
        if (storage is not CpuStorage cpu || DType != DType.Float32 || !IsContiguous)
            throw new InvalidOperationException($"AsSpan needs a contiguous Float32 CPU tensor; this one is {DType} on {Device}{(IsContiguous ? "" : ", non-contiguous")}. Call .Contiguous() or .To(Device.Cpu) first.");
        return cpu.Floats.AsSpan(offset, NumElements);
    }

    /// <summary>The host elements of this Int64 tensor (CPU, contiguous) without copying.</summary>
    public Span<long> AsInt64Span()
    {
        if (storage is not CpuStorage cpu || DType != DType.Int64 || !IsContiguous)
            throw new InvalidOperationException($"AsInt64Span needs a contiguous Int64 CPU tensor; this one is {DType} on {Device}.");
        return cpu.Longs.AsSpan(offset, NumElements);
    }

    /// <summary>Copies the elements to a new float array in row-major order.</summary>
    public float[] ToArray()
    {
        var src = AsType(DType.Float32).Contiguous();
        var result = new float[src.NumElements];
        src.Backend.CopyToHost(src, result);
        return result;
    }

    /// <summary>Copies the elements to a new long array in row-major order.</summary>
    public long[] ToInt64Array()
    {
        var src = AsType(DType.Int64).Contiguous();
        var result = new long[src.NumElements];
        src.Backend.CopyToHost(src, result);
        return result;
    }

    /// <summary>The value of a one-element tensor.</summary>
    public float Item()
    {
        if (NumElements != 1) throw new InvalidOperationException($"Item() needs a tensor with one element; this one has shape {FormatShape(shape)}.");
        return ToArray()[0];
    }

    /// <summary>A copy on <paramref name="device"/> (this tensor if already there). Recorded for autograd.</summary>
    public Tensor To(Device device)
    {
        if (device == Device) return this;
        var src = Contiguous();
        var host = src.storage is CpuStorage ? ((CpuStorage)src.storage).Array : HostCopy(src);
        var data = Array.CreateInstance(host.GetType().GetElementType()!, src.NumElements);
        Array.Copy(host, src.storage is CpuStorage ? src.offset : 0, data, 0, src.NumElements);
        var result = new Tensor(device.Backend.FromHost(data), ShapeArray());
        return Autograd.Autograd.Record(result, OpKind.ToDevice, [this], g => [g.To(Device)]);
    }

    private static Array HostCopy(Tensor t)
    {
        Array a = t.DType switch { DType.Float32 => new float[t.NumElements], DType.Int64 => new long[t.NumElements], _ => new int[t.NumElements] };
        t.Backend.CopyToHost(t, a);
        return a;
    }

    /// <summary>
    /// Back-propagates from this tensor (a scalar loss, or pass <paramref name="gradient"/> of its shape), accumulating
    /// into the <see cref="Grad"/> of every leaf that requires grad. See <see cref="Autograd.Autograd.Backward"/>.
    /// </summary>
    public void Backward(Tensor? gradient = null, bool retainGraph = false) => Autograd.Autograd.Backward(this, gradient, retainGraph);

    /// <summary>A tensor sharing this tensor's data but outside the autograd graph.</summary>
    public Tensor Detach() => new(storage, shape, strides, offset);

    /// <summary>Releases device memory held by the storage when this tensor owns it. Host tensors are left to the GC.</summary>
    public void Dispose()
    {
        if (storage is not CpuStorage) storage.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Replaces this tensor's data, shape and strides with those of <paramref name="source"/>, keeping its identity (used by the pruner to resize parameters in place).</summary>
    public void SetData(Tensor source)
    {
        TensorScope.Escape(source.storage);
        storage = source.storage;
        shape = (int[])source.shape.Clone();
        strides = (int[])source.strides.Clone();
        offset = source.offset;
        Grad = null;
    }

    /// <summary>Shape and dtype, and the values when small, e.g. <c>Tensor[2, 3] Float32 cpu</c>.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder($"Tensor{FormatShape(shape)} {DType} {Device}");
        if (NumElements <= 16)
        {
            sb.Append(" [");
            sb.Append(DType == DType.Float32
                ? string.Join(", ", ToArray().Select(v => v.ToString("G6", System.Globalization.CultureInfo.InvariantCulture)))
                : string.Join(", ", ToInt64Array()));
            sb.Append(']');
        }
        if (GradFn is not null) sb.Append($" grad_fn={GradFn.Kind}");
        return sb.ToString();
    }

    // ---- shape helpers ----------------------------------------------------------------------------

    /// <summary>Product of the sizes.</summary>
    public static int Numel(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (var s in shape) n *= s;
        if (n > int.MaxValue) throw new ArgumentException($"A tensor of shape {FormatShape(shape)} has more than 2^31-1 elements.");
        return (int)n;
    }

    /// <summary>Row-major strides for <paramref name="shape"/>.</summary>
    public static int[] ContiguousStrides(ReadOnlySpan<int> shape)
    {
        var s = new int[shape.Length];
        var acc = 1;
        for (var d = shape.Length - 1; d >= 0; d--) { s[d] = acc; acc *= Math.Max(shape[d], 1); }
        return s;
    }

    /// <summary>Formats a shape as <c>[2, 3]</c>.</summary>
    public static string FormatShape(ReadOnlySpan<int> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";

    /// <summary>Maps a possibly negative dimension index into [0, rank) (a scalar's 0 and -1 to 0, as PyTorch).</summary>
    public static int NormalizeDim(int dim, int rank)
    {
        // A scalar answers to 0 and -1, as in PyTorch.
        var r = Math.Max(rank, 1);
        var d = dim < 0 ? dim + r : dim;
        if (d < 0 || d >= r) throw new ArgumentOutOfRangeException(nameof(dim), dim, $"Dimension out of range for a tensor of rank {rank} (expected {-r}..{r - 1}).");
        return d;
    }
}
