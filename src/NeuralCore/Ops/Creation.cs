using NeuralCore.Backends;

namespace NeuralCore;

public partial class Tensor
{
    private static Device Dev(Device? device) => device ?? Device.Cpu;

    /// <summary>A new tensor of zeros.</summary>
    public static Tensor Zeros(int[] shape, Device? device = null, DType dtype = DType.Float32)
    {
        ValidateShape(shape);
        return new Tensor(Dev(device).Backend.Allocate(dtype, Numel(shape)), (int[])shape.Clone());
    }

    /// <summary>
    /// An op's output whose every element the op writes: inside a <see cref="TensorScope"/>, memory with undefined
    /// contents that the scope releases (pooled arrays on the CPU, the backend's cache on a GPU); elsewhere zeros.
    /// </summary>
    internal static Tensor Empty(int[] shape, Device device, DType dtype = DType.Float32)
    {
        if (TensorScope.Current is not { } scope) return Zeros(shape, device, dtype);
        var length = Numel(shape);
        var storage = device.Type == DeviceType.Cpu
            ? CpuStorage.Rent(dtype, length)
            : device.Backend.AllocateUninitialized(dtype, length);
        scope.Track(storage);
        return new Tensor(storage, (int[])shape.Clone());
    }

    /// <summary>An op's output that must start at zero (the op accumulates into it): pooled inside a <see cref="TensorScope"/>.</summary>
    internal static Tensor ZerosOutput(int[] shape, Device device, DType dtype = DType.Float32)
    {
        var t = Empty(shape, device, dtype);
        if (t.storage.Owner is not null) t.Backend.Fill(t, 0);
        return t;
    }

    /// <summary>An op's temporary filled with <paramref name="value"/>: owned by the current <see cref="TensorScope"/>, if any.</summary>
    internal static Tensor FullOutput(int[] shape, double value, Device device)
    {
        var t = Empty(shape, device);
        t.Backend.Fill(t, value);
        return t;
    }

    /// <summary>A new tensor of zeros with the shape, device and dtype of <paramref name="like"/>.</summary>
    public static Tensor ZerosLike(Tensor like) => Zeros(like.ShapeArray(), like.Device, like.DType);

    /// <summary>A new tensor of ones.</summary>
    public static Tensor Ones(int[] shape, Device? device = null, DType dtype = DType.Float32) => Full(shape, 1, device, dtype);

    /// <summary>A new tensor with every element equal to <paramref name="value"/>.</summary>
    public static Tensor Full(int[] shape, double value, Device? device = null, DType dtype = DType.Float32)
    {
        var t = Zeros(shape, device, dtype);
        if (value != 0) t.Backend.Fill(t, value);
        return t;
    }

    /// <summary>The values start, start + step, ... below end (Float32 unless <paramref name="dtype"/> says otherwise).</summary>
    public static Tensor Arange(double start, double end, double step = 1, Device? device = null, DType dtype = DType.Float32)
    {
        if (step == 0) throw new ArgumentException("Arange step must not be 0.", nameof(step));
        var n = (int)Math.Max(0, Math.Ceiling((end - start) / step));
        Array data = dtype switch
        {
            DType.Float32 => Enumerable.Range(0, n).Select(i => (float)(start + i * step)).ToArray(),
            DType.Int64 => Enumerable.Range(0, n).Select(i => (long)(start + i * step)).ToArray(),
            _ => Enumerable.Range(0, n).Select(i => (int)(start + i * step)).ToArray(),
        };
        return new Tensor(Dev(device).Backend.FromHost(data), [n]);
    }

    /// <summary>
    /// A tensor holding a copy of <paramref name="data"/> with the given shape. With no (or an empty) shape, the result is
    /// 1-D, except that a single value gives a rank-0 tensor, so a scalar read from a file keeps its empty shape.
    /// </summary>
    public static Tensor FromArray(float[] data, params int[] shape) => FromHostArray(data, data.Length, shape, null);

    /// <summary>An Int64 tensor holding a copy of <paramref name="data"/>.</summary>
    public static Tensor FromArray(long[] data, params int[] shape) => FromHostArray(data, data.Length, shape, null);

    /// <summary>An Int32 tensor holding a copy of <paramref name="data"/>.</summary>
    public static Tensor FromArray(int[] data, params int[] shape) => FromHostArray(data, data.Length, shape, null);

    /// <summary>A tensor on <paramref name="device"/> holding a copy of <paramref name="data"/>.</summary>
    public static Tensor FromArray(float[] data, int[] shape, Device device) => FromHostArray(data, data.Length, shape, device);

    /// <summary>A CPU tensor that uses <paramref name="data"/> as its storage without copying (writes show through both ways).</summary>
    public static Tensor Wrap(float[] data, params int[] shape)
    {
        var s = shape.Length == 0 ? [data.Length] : shape;
        CheckCount(data.Length, s);
        return new Tensor(new CpuStorage(data), (int[])s.Clone());
    }

    /// <summary>A scalar (rank-0) Float32 tensor.</summary>
    public static Tensor Scalar(float value, Device? device = null) => FromHostArray(new[] { value }, 1, [], device);

    private static Tensor FromHostArray(Array data, int length, int[] shape, Device? device)
    {
        var s = shape.Length == 0 && length != 1 ? [length] : shape;
        CheckCount(length, s);
        return new Tensor(Dev(device).Backend.FromHost(data), (int[])s.Clone());
    }

    private static void CheckCount(int length, int[] shape)
    {
        ValidateShape(shape);
        if (Numel(shape) != length)
            throw new ArgumentException($"{length} values do not fill a tensor of shape {FormatShape(shape)} ({Numel(shape)} elements).");
    }

    private static void ValidateShape(int[] shape)
    {
        foreach (var s in shape)
            if (s < 0) throw new ArgumentException($"Negative size in shape {FormatShape(shape)}.");
    }

    /// <summary>Uniform samples in [0, 1).</summary>
    public static Tensor Rand(int[] shape, Generator? generator = null, Device? device = null) => Uniform(shape, 0, 1, generator, device);

    /// <summary>Standard normal samples.</summary>
    public static Tensor Randn(int[] shape, Generator? generator = null, Device? device = null) => Normal(shape, 0, 1, generator, device);

    /// <summary>Uniform samples in [low, high).</summary>
    public static Tensor Uniform(int[] shape, float low, float high, Generator? generator = null, Device? device = null)
    {
        var t = Zeros(shape, device);
        t.Backend.RandomUniform(t, low, high, generator ?? Generator.Default);
        return t;
    }

    /// <summary>Normal samples with the given mean and standard deviation.</summary>
    public static Tensor Normal(int[] shape, float mean, float std, Generator? generator = null, Device? device = null)
    {
        var t = Zeros(shape, device);
        t.Backend.RandomNormal(t, mean, std, generator ?? Generator.Default);
        return t;
    }

    // ---- in-place (not recorded; for optimizers, initialisers and buffers) ----------------------

    private void CheckInPlace(string op)
    {
        if (Autograd.Autograd.IsGradEnabled && (RequiresGrad || GradFn is not null))
            throw new InvalidOperationException($"{op} would modify a tensor that is part of the autograd graph. Run it inside Autograd.NoGrad() or on a detached tensor.");
        storage.Version++;
    }

    /// <summary>Sets every element to <paramref name="value"/> in place.</summary>
    public Tensor FillInPlace(double value)
    {
        CheckInPlace(nameof(FillInPlace));
        if (IsContiguous) Backend.Fill(this, value);
        else CopyFrom(Full(ShapeArray(), value, Device, DType));
        return this;
    }

    /// <summary>Sets every element to zero in place.</summary>
    public Tensor ZeroInPlace() => FillInPlace(0);

    /// <summary>Copies the elements of <paramref name="source"/> (same shape, or broadcastable to it) into this tensor in place.</summary>
    public Tensor CopyFrom(Tensor source)
    {
        CheckInPlace(nameof(CopyFrom));
        var src = source.Device == Device ? source : source.Detach().To(Device);
        if (!src.Shape.SequenceEqual(Shape)) src = src.Expand(ShapeArray());
        Backend.Copy(src, this);
        return this;
    }

    /// <summary>this += alpha * other, in place (other of the same shape, or broadcastable to it).</summary>
    public Tensor AddInPlace(Tensor other, float alpha = 1)
    {
        CheckInPlace(nameof(AddInPlace));
        if (IsContiguous && other.IsContiguous && other.Shape.SequenceEqual(Shape)) Backend.AddScaled(this, other, alpha);
        else CopyFrom(Detach().Add(other.Detach().Mul(alpha)));
        return this;
    }

    /// <summary>this *= factor, in place.</summary>
    public Tensor MulInPlace(float factor)
    {
        CheckInPlace(nameof(MulInPlace));
        var c = Contiguous();
        Backend.Unary(Backends.UnaryOp.Affine, c, c, factor, 0);
        if (!ReferenceEquals(c, this)) CopyFrom(c);
        return this;
    }
}
