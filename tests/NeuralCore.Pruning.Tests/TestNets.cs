using NeuralCore.NN;

namespace NeuralCore.Pruning.Tests;

/// <summary>Small networks covering every coupling the pruner must follow, and a random generator over them.</summary>
internal static class TestNets
{
    public sealed class ConvBnRelu : Module
    {
        public ConvBnRelu(int cin, int cout, int k = 3, int groups = 1, Generator? g = null)
        {
            Conv = RegisterModule("conv", new Conv2d(cin, cout, k, padding: k / 2, groups: groups, bias: false, generator: g));
            Bn = RegisterModule("bn", new BatchNorm2d(cout));
        }
        public Conv2d Conv { get; }
        public BatchNorm2d Bn { get; }
        public int OutChannels => Conv.OutChannels;
        public override Tensor Forward(Tensor x) => Bn.Call(Conv.Call(x)).Relu();
    }

    /// <summary>x + conv(conv(x)), with a 1x1 conv shortcut when the widths differ.</summary>
    public sealed class Residual : Module
    {
        private readonly ConvBnRelu _a;
        private readonly Conv2d _b;
        private readonly BatchNorm2d _bn;
        private readonly Conv2d? _shortcut;
        public Residual(int cin, int cout, Generator g)
        {
            _a = RegisterModule("a", new ConvBnRelu(cin, cout, 3, 1, g));
            _b = RegisterModule("b", new Conv2d(cout, cout, 3, padding: 1, bias: false, generator: g));
            _bn = RegisterModule("bn", new BatchNorm2d(cout));
            if (cin != cout) _shortcut = RegisterModule("shortcut", new Conv2d(cin, cout, 1, bias: true, generator: g));
        }
        public override Tensor Forward(Tensor x) => _bn.Call(_b.Call(_a.Call(x))).Add(_shortcut?.Call(x) ?? x).Relu();
    }

    /// <summary>concat(convA(x), convB(x)) along channels.</summary>
    public sealed class Branches : Module
    {
        private readonly ConvBnRelu _a, _b;
        public Branches(int cin, int ca, int cb, Generator g)
        {
            _a = RegisterModule("a", new ConvBnRelu(cin, ca, 1, 1, g));
            _b = RegisterModule("b", new ConvBnRelu(cin, cb, 3, 1, g));
        }
        public override Tensor Forward(Tensor x) => Tensor.Concat([_a.Call(x), _b.Call(x)], 1);
    }

    /// <summary>Splits the channels between two convs (sizes read from the convs, so they follow pruning) and concatenates.</summary>
    public sealed class SplitJoin : Module
    {
        private readonly ConvBnRelu _a, _b;
        public SplitJoin(int ca, int cb, Generator g)
        {
            _a = RegisterModule("a", new ConvBnRelu(ca, ca, 3, 1, g));
            _b = RegisterModule("b", new ConvBnRelu(cb, cb, 1, 1, g));
        }
        public override Tensor Forward(Tensor x)
        {
            var parts = x.Split([_a.Conv.InChannels, _b.Conv.InChannels], 1);
            return Tensor.Concat([_a.Call(parts[0]), _b.Call(parts[1])], 1);
        }
    }

    /// <summary>A network from a seed: a stem, 2-4 random blocks, and a flatten -> linear or pooled 1x1-conv head.</summary>
    public sealed class RandomNet : Module
    {
        private readonly List<Module> _blocks = [];
        private readonly Module _head;
        private readonly bool _flatten;
        public string Description { get; }

        public RandomNet(int seed, int inChannels = 2, int size = 8, int classes = 5)
        {
            var g = new Generator((ulong)seed);
            var width = 4 + g.NextInt(8);
            var parts = new List<string>();
            _blocks.Add(RegisterModule("stem", new ConvBnRelu(inChannels, width, 3, 1, g)));
            var count = 2 + g.NextInt(3);
            for (var i = 0; i < count; i++)
            {
                Module block;
                switch (g.NextInt(6))
                {
                    case 0:
                        var next = 3 + g.NextInt(10);
                        block = new ConvBnRelu(width, next, 1 + 2 * g.NextInt(2), 1, g); parts.Add($"conv {width}->{next}"); width = next; break;
                    case 1:
                        var r = g.NextInt(2) == 0 ? width : 3 + g.NextInt(10);
                        block = new Residual(width, r, g); parts.Add($"residual {width}->{r}"); width = r; break;
                    case 2:
                        int ca = 2 + g.NextInt(6), cb = 2 + g.NextInt(6);
                        block = new Branches(width, ca, cb, g); parts.Add($"concat {width}->{ca}+{cb}"); width = ca + cb; break;
                    case 3:
                        block = new ConvBnRelu(width, width, 3, width, g); parts.Add($"depthwise {width}"); break;
                    case 4:
                        var even = width % 2 == 0 ? width : width + 1;
                        if (even != width) { _blocks.Add(RegisterModule($"pre{i}", new ConvBnRelu(width, even, 1, 1, g))); parts.Add($"conv {width}->{even}"); }
                        var outG = 2 * (2 + g.NextInt(4));
                        block = new ConvBnRelu(even, outG, 3, 2, g); parts.Add($"grouped(2) {even}->{outG}"); width = outG; break;
                    default:
                        var half = Math.Max(1, width / 2);
                        block = new SplitJoin(half, width - half, g); parts.Add($"split {half}+{width - half}");
                        break;
                }
                _blocks.Add(RegisterModule($"block{i}", block));
            }
            _flatten = g.NextInt(2) == 0;
            _head = _flatten
                ? RegisterModule("head", new Linear(width * size * size, classes, generator: g))
                : RegisterModule("head", new Conv2d(width, classes, 1, bias: true, generator: g));
            parts.Add(_flatten ? "flatten->linear" : "conv1x1->mean");
            Description = string.Join(", ", parts);
        }

        public override Tensor Forward(Tensor x)
        {
            foreach (var b in _blocks) x = b.Call(x);
            return _flatten ? _head.Call(x.Flatten(1)) : _head.Call(x).Mean([2, 3]);
        }
    }
}
