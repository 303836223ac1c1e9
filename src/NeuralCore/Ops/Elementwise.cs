using NeuralCore.Autograd;
using NeuralCore.Backends;

namespace NeuralCore;

public partial class Tensor
{
    /// <summary>The shape two shapes broadcast to (NumPy rules), or an exception naming both.</summary>
    public static int[] BroadcastShapes(ReadOnlySpan<int> a, ReadOnlySpan<int> b)
    {
        var rank = Math.Max(a.Length, b.Length);
        var r = new int[rank];
        for (var i = 0; i < rank; i++)
        {
            var x = i - (rank - a.Length) >= 0 ? a[i - (rank - a.Length)] : 1;
            var y = i - (rank - b.Length) >= 0 ? b[i - (rank - b.Length)] : 1;
            if (x != y && x != 1 && y != 1) throw new ArgumentException($"Shapes {FormatShape(a)} and {FormatShape(b)} cannot be broadcast together (dimension {i}: {x} vs {y}).");
            r[i] = x == 1 ? y : x;
        }
        return r;
    }

    private Tensor BinaryOp(BinaryOp op, Tensor other)
    {
        if (other.Device != Device) throw new ArgumentException($"Operands are on different devices ({Device} and {other.Device}); move one with To().");
        if (other.DType != DType) throw new ArgumentException($"Operands have different dtypes ({DType} and {other.DType}); convert one with AsType().");
        var outShape = BroadcastShapes(shape, other.shape);
        var y = Empty(outShape, Device, DType);
        Tensor a, b;
        using (Autograd.Autograd.NoGrad()) { a = Detach().Expand(outShape); b = other.Detach().Expand(outShape); }
        Backend.Binary(op, a, b, y);
        var aShape = ShapeArray();
        var bShape = other.ShapeArray();
        var self = this;
        BackwardFunction? backward = op switch
        {
            Backends.BinaryOp.Add => g => [g.SumTo(aShape), g.SumTo(bShape)],
            Backends.BinaryOp.Sub => g => [g.SumTo(aShape), g.Neg().SumTo(bShape)],
            Backends.BinaryOp.Mul => g => [g.Mul(other.Detach()).SumTo(aShape), g.Mul(self.Detach()).SumTo(bShape)],
            Backends.BinaryOp.Div => g => [g.Div(other.Detach()).SumTo(aShape), g.Mul(y.Detach()).Div(other.Detach()).Neg().SumTo(bShape)],
            Backends.BinaryOp.Maximum or Backends.BinaryOp.Minimum => g =>
            {
                // Ties split the gradient evenly, as PyTorch does.
                var aD = self.Detach(); var bD = other.Detach();
                var win = op == Backends.BinaryOp.Maximum ? aD.Greater(bD) : bD.Greater(aD);
                var tie = aD.Equal(bD).Mul(0.5f);
                var wa = win.Add(tie);
                return [g.Mul(wa).SumTo(aShape), g.Mul(wa.Neg().Add(1f)).SumTo(bShape)];
            },
            _ => null,
        };
        return Autograd.Autograd.Record(y, OpKind.Binary, [this, other], backward, () => Attrs(("op", op)));
    }

    /// <summary>Element-wise sum with broadcasting.</summary>
    public Tensor Add(Tensor other) => BinaryOp(Backends.BinaryOp.Add, other);
    /// <summary>Element-wise difference with broadcasting.</summary>
    public Tensor Sub(Tensor other) => BinaryOp(Backends.BinaryOp.Sub, other);
    /// <summary>Element-wise product with broadcasting.</summary>
    public Tensor Mul(Tensor other) => BinaryOp(Backends.BinaryOp.Mul, other);
    /// <summary>
    /// Element-wise quotient with broadcasting. Integer operands are divided as floats, PyTorch's true division: the
    /// quotient is Float32 (7 / 2 is 3.5, 1 / 0 infinity), not a truncated integer.
    /// </summary>
    public Tensor Div(Tensor other) => DType == DType.Float32 && other.DType == DType.Float32
        ? BinaryOp(Backends.BinaryOp.Div, other)
        : AsType(DType.Float32).Div(other.AsType(DType.Float32));
    /// <summary>Element-wise maximum with broadcasting (ties share the gradient).</summary>
    public Tensor Maximum(Tensor other) => BinaryOp(Backends.BinaryOp.Maximum, other);
    /// <summary>Element-wise minimum with broadcasting (ties share the gradient).</summary>
    public Tensor Minimum(Tensor other) => BinaryOp(Backends.BinaryOp.Minimum, other);
    /// <summary>1 where equal, else 0 (not differentiable).</summary>
    public Tensor Equal(Tensor other) => BinaryOp(Backends.BinaryOp.Equal, other);
    /// <summary>1 where this &gt; other, else 0 (not differentiable).</summary>
    public Tensor Greater(Tensor other) => BinaryOp(Backends.BinaryOp.Greater, other);

    private Tensor UnaryOp(UnaryOp op, float alpha = 0, float beta = 0)
    {
        if (DType != DType.Float32) throw new InvalidOperationException($"{op} needs a Float32 tensor; this one is {DType}.");
        var x = Contiguous();
        var y = Empty(ShapeArray(), Device);
        Backend.Unary(op, x, y, alpha, beta);
        return Autograd.Autograd.Record(y, OpKind.Unary, [this], g =>
        {
            var dx = Empty(x.ShapeArray(), x.Device);
            x.Backend.UnaryBackward(op, x, y, g.Contiguous(), dx, alpha, beta);
            return [dx];
        }, () => Attrs(("op", op), ("alpha", alpha), ("beta", beta)));
    }

    /// <summary>x + value.</summary>
    public Tensor Add(float value) => UnaryOp(Backends.UnaryOp.Affine, 1, value);
    /// <summary>x - value.</summary>
    public Tensor Sub(float value) => UnaryOp(Backends.UnaryOp.Affine, 1, -value);
    /// <summary>x * value.</summary>
    public Tensor Mul(float value) => UnaryOp(Backends.UnaryOp.Affine, value, 0);
    /// <summary>x / value.</summary>
    public Tensor Div(float value) => UnaryOp(Backends.UnaryOp.Affine, 1 / value, 0);
    /// <summary>scale * x + shift in one op.</summary>
    public Tensor Affine(float scale, float shift) => UnaryOp(Backends.UnaryOp.Affine, scale, shift);
    /// <summary>-x.</summary>
    public Tensor Neg() => UnaryOp(Backends.UnaryOp.Neg);
    /// <summary>e^x.</summary>
    public Tensor Exp() => UnaryOp(Backends.UnaryOp.Exp);
    /// <summary>Natural logarithm.</summary>
    public Tensor Log() => UnaryOp(Backends.UnaryOp.Log);
    /// <summary>Square root.</summary>
    public Tensor Sqrt() => UnaryOp(Backends.UnaryOp.Sqrt);
    /// <summary>Absolute value (gradient sign(x), 0 at 0).</summary>
    public Tensor Abs() => UnaryOp(Backends.UnaryOp.Abs);
    /// <summary>x^exponent.</summary>
    public Tensor Pow(float exponent) => UnaryOp(Backends.UnaryOp.Pow, exponent);
    /// <summary>x^2.</summary>
    public Tensor Square() => UnaryOp(Backends.UnaryOp.Square);
    /// <summary>1 / x.</summary>
    public Tensor Reciprocal() => UnaryOp(Backends.UnaryOp.Reciprocal, 1);
    /// <summary>sign(x): -1, 0 or 1 (zero gradient).</summary>
    public Tensor Sign() => UnaryOp(Backends.UnaryOp.Sign);
    /// <summary>Clamps into [min, max] (gradient 1 inside, 0 outside).</summary>
    public Tensor Clamp(float min = float.NegativeInfinity, float max = float.PositiveInfinity) => UnaryOp(Backends.UnaryOp.Clamp, min, max);
    /// <summary>max(x, 0).</summary>
    public Tensor Relu() => UnaryOp(Backends.UnaryOp.Relu);
    /// <summary>min(max(x, 0), 6).</summary>
    public Tensor Relu6() => UnaryOp(Backends.UnaryOp.Relu6);
    /// <summary>x * relu6(x + 3) / 6 (PyTorch's Hardswish; gradient x/3 + 1/2 on (-3, 3)).</summary>
    public Tensor Hardswish() => UnaryOp(Backends.UnaryOp.Hardswish);
    /// <summary>Logistic sigmoid.</summary>
    public Tensor Sigmoid() => UnaryOp(Backends.UnaryOp.Sigmoid);
    /// <summary>Hyperbolic tangent.</summary>
    public Tensor Tanh() => UnaryOp(Backends.UnaryOp.Tanh);

    /// <summary>Element-wise sum.</summary>
    public static Tensor operator +(Tensor a, Tensor b) => a.Add(b);
    /// <summary>Element-wise difference.</summary>
    public static Tensor operator -(Tensor a, Tensor b) => a.Sub(b);
    /// <summary>Element-wise product.</summary>
    public static Tensor operator *(Tensor a, Tensor b) => a.Mul(b);
    /// <summary>Element-wise quotient.</summary>
    public static Tensor operator /(Tensor a, Tensor b) => a.Div(b);
    /// <summary>Adds a scalar.</summary>
    public static Tensor operator +(Tensor a, float b) => a.Add(b);
    /// <summary>Adds a scalar.</summary>
    public static Tensor operator +(float a, Tensor b) => b.Add(a);
    /// <summary>Subtracts a scalar.</summary>
    public static Tensor operator -(Tensor a, float b) => a.Sub(b);
    /// <summary>Scalar minus tensor.</summary>
    public static Tensor operator -(float a, Tensor b) => b.Affine(-1, a);
    /// <summary>Multiplies by a scalar.</summary>
    public static Tensor operator *(Tensor a, float b) => a.Mul(b);
    /// <summary>Multiplies by a scalar.</summary>
    public static Tensor operator *(float a, Tensor b) => b.Mul(a);
    /// <summary>Divides by a scalar.</summary>
    public static Tensor operator /(Tensor a, float b) => a.Div(b);
    /// <summary>Scalar divided by tensor.</summary>
    public static Tensor operator /(float a, Tensor b) => b.UnaryOp(Backends.UnaryOp.Reciprocal, a);
    /// <summary>Negation.</summary>
    public static Tensor operator -(Tensor a) => a.Neg();
}
