using NeuralCore.NN;

namespace NeuralCore.Onnx.Tests;

/// <summary>
/// Randomly generated networks over every op the exporter writes: convolutions with random groups, dilation, stride,
/// padding and bias, batch norm, all activations, max and average pools (with ceil mode), residual add/sub/mul/div,
/// concat, channel softmax (permutes), a linear layer on the last axis (MatMul), and a head of global pooling or
/// flatten, linear layers (Gemm) and an optional softmax.
/// </summary>
internal sealed class RandomNet : Module
{
    private readonly List<Module> _blocks = [];

    public RandomNet(int seed, int[] inputShape)
    {
        var g = new Generator((ulong)seed);
        var rng = new Random(seed);
        var shape = inputShape;
        int blockIndex = 0;
        Module Add(Module block)
        {
            _blocks.Add(RegisterModule($"block{blockIndex++}", block));
            using var _ = Autograd.Autograd.NoGrad();
            block.Eval();
            shape = block.Call(Tensor.Zeros([1, .. shape])).ShapeArray()[1..];
            return block;
        }

        Add(ConvBlock.Random(rng, g, shape[0], shape[1], shape[2]));
        var kinds = Enumerable.Range(0, 8).OrderBy(_ => rng.Next()).ToList();
        foreach (var kind in kinds)
        {
            int c = shape[0], h = shape[1], w = shape[2];
            Add(kind switch
            {
                0 => ConvBlock.Random(rng, g, c, h, w),
                1 => PoolBlock.Random(rng, h, w, max: true),
                2 => PoolBlock.Random(rng, h, w, max: false),
                3 => new BinaryBlock(c, rng.Next(4), g),
                4 => new ConcatBlock(c, 1 + rng.Next(4), g),
                5 => new MiscUnaryBlock(),
                6 => new LastAxisLinear(w, 2 + rng.Next(5), g),
                _ => new ChannelSoftmaxBlock(),
            });
        }
        Add(new Head(shape, rng.Next(3), rng.Next(2) == 0, g));
        OnnxTestSupport.Randomize(this, (ulong)seed + 1000);
        OnnxTestSupport.Calibrate(this, inputShape, (ulong)seed + 2000, passes: 4);
    }

    public override Tensor Forward(Tensor input)
    {
        var x = input;
        foreach (var b in _blocks) x = b.Call(x);
        return x;
    }
}

internal sealed class ConvBlock : Module
{
    private readonly Conv2d _conv;
    private readonly BatchNorm2d _bn;
    private readonly int _activation;

    private ConvBlock(Conv2d conv, int activation)
    {
        _conv = RegisterModule("conv", conv);
        // A cumulative average (momentum null): a few calibration passes give the data's statistics.
        _bn = RegisterModule("bn", new BatchNorm2d(conv.OutChannels, momentum: null));
        _activation = activation;
    }

    public static ConvBlock Random(Random rng, Generator g, int c, int h, int w)
    {
        int[] divisors = [.. new[] { 1, 2, 3, c }.Where(d => c % d == 0).Distinct()];
        var groups = divisors[rng.Next(divisors.Length)];
        var cout = groups * (1 + rng.Next(Math.Max(1, 12 / groups)));
        var k = new[] { 1, 3, 3, 5 }[rng.Next(4)];
        var dilation = rng.Next(2) + 1;
        var padding = rng.Next(3);
        var stride = Math.Min(h, w) >= 10 ? rng.Next(2) + 1 : 1;
        if (dilation * (k - 1) + 1 > Math.Min(h, w) + 2 * padding) { dilation = 1; padding = k / 2; }
        var conv = new Conv2d(c, cout, k, stride, (padding, rng.Next(2) == 0 ? padding : k / 2), dilation, groups, bias: rng.Next(2) == 0, generator: g);
        return new ConvBlock(conv, rng.Next(6));
    }

    public override Tensor Forward(Tensor input)
    {
        var y = _bn.Call(_conv.Call(input));
        return _activation switch
        {
            0 => y.Relu(),
            1 => y.Relu6(),
            2 => y.Hardswish(),
            3 => y.Sigmoid(),
            4 => y.Tanh(),
            _ => y.Clamp(-0.5f, 0.75f),
        };
    }
}

internal sealed class PoolBlock : Module
{
    private readonly Module _pool;

    private PoolBlock(Module pool) => _pool = RegisterModule("pool", pool);

    public static PoolBlock Random(Random rng, int h, int w, bool max)
    {
        var k = Math.Min(h, w) >= 3 ? 2 + rng.Next(2) : 1;
        Size2 kernel = (k, rng.Next(2) == 0 ? k : Math.Max(1, k - 1));
        Size2 stride = Math.Min(h, w) >= 8 ? (rng.Next(2) + 1, rng.Next(2) + 1) : 1;
        Size2 padding = (rng.Next(kernel.H / 2 + 1), rng.Next(kernel.W / 2 + 1));
        var ceil = rng.Next(2) == 0;
        return new PoolBlock(max ? new MaxPool2d(kernel, stride, padding, ceil) : new AvgPool2d(kernel, stride, padding, ceil));
    }

    public override Tensor Forward(Tensor input) => _pool.Call(input);
}

/// <summary>op(a(x), b(x)) with a residual-style second branch; the divisor is kept away from zero.</summary>
internal sealed class BinaryBlock : Module
{
    private readonly Conv2d _a, _b;
    private readonly int _op;

    public BinaryBlock(int c, int op, Generator g)
    {
        _a = RegisterModule("a", new Conv2d(c, c, 3, padding: 1, generator: g));
        _b = RegisterModule("b", new Conv2d(c, c, 1, generator: g));
        _op = op;
    }

    public override Tensor Forward(Tensor input)
    {
        var a = _a.Call(input);
        var b = _b.Call(input);
        return _op switch
        {
            0 => a.Add(input),
            1 => a.Sub(b),
            2 => a.Mul(b),
            _ => a.Div(b.Sigmoid().Add(0.5f)),
        };
    }
}

/// <summary>concat(conv1x1(x), relu6(x)) along the channels.</summary>
internal sealed class ConcatBlock : Module
{
    private readonly Conv2d _conv;

    public ConcatBlock(int c, int extra, Generator g) => _conv = RegisterModule("conv", new Conv2d(c, extra, 1, generator: g));

    public override Tensor Forward(Tensor input) => Tensor.Concat([_conv.Call(input), input.Relu6()], 1);
}

/// <summary>
/// x + f(x)/4 with f built from scalar and element-wise ops: affine maps, abs, sqrt, log, clamp, neg, maximum, minimum,
/// exp, pow, square, reciprocal (residual, so their near-constant offsets do not drown the signal).
/// </summary>
internal sealed class MiscUnaryBlock : Module
{
    public override Tensor Forward(Tensor x)
    {
        var smooth = x.Abs().Add(1f).Sqrt().Log();
        var bounded = x.Clamp(-1f, 1f).Mul(1.5f).Sub(0.25f);
        var mixed = smooth.Add(bounded).Maximum(x.Neg()).Minimum(x.Affine(2f, 0.5f));
        var f = mixed.Add(x.Tanh().Exp().Pow(1.5f)).Sub(x.Sigmoid().Square()).Add(x.Abs().Add(1f).Reciprocal());
        return x.Add(f.Mul(0.25f));
    }
}

/// <summary>A linear layer on the last axis of a 4-D tensor: MatMul with a transposed weight, then a broadcast bias.</summary>
internal sealed class LastAxisLinear : Module
{
    private readonly Linear _linear;

    public LastAxisLinear(int inFeatures, int outFeatures, Generator g) => _linear = RegisterModule("linear", new Linear(inFeatures, outFeatures, generator: g));

    public override Tensor Forward(Tensor input) => _linear.Call(input);
}

/// <summary>x + x * softmax(x, dim 1): the softmax over channels is recorded as permute, softmax, permute.</summary>
internal sealed class ChannelSoftmaxBlock : Module
{
    public override Tensor Forward(Tensor input) => input.Add(input.Mul(Functional.Softmax(input, 1)));
}

internal sealed class Head : Module
{
    private readonly int _pooling;
    private readonly bool _softmax;
    private readonly Linear _fc1, _fc2;
    private readonly AdaptiveAvgPool2d _pool = new(1);

    public Head(int[] shape, int pooling, bool softmax, Generator g)
    {
        _pooling = pooling;
        _softmax = softmax;
        var features = pooling == 2 ? shape[0] * shape[1] * shape[2] : shape[0];
        _fc1 = RegisterModule("fc1", new Linear(features, 16, generator: g));
        _fc2 = RegisterModule("fc2", new Linear(16, 5, generator: g));
        RegisterModule("pool", _pool);
    }

    public override Tensor Forward(Tensor input)
    {
        var x = _pooling switch
        {
            0 => input.Mean([2, 3]),
            1 => _pool.Call(input).Flatten(1),
            _ => input.Flatten(1),
        };
        x = _fc2.Call(_fc1.Call(x).Hardswish());
        return _softmax ? Functional.Softmax(x) : x;
    }
}
