using NeuralCore.NN;

namespace NeuralCore.Tests.Backends;

/// <summary>
/// relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), with a 1x1 conv + BN shortcut when widths differ: the residual
/// block the compiled-plan tests build their nets from (conv2 has a bias; bn2 takes <paramref name="bn2Momentum"/>,
/// null for a cumulative average).
/// </summary>
internal sealed class ResidualBlock : Module
{
    private readonly Conv2d _conv1, _conv2;
    private readonly BatchNorm2d _bn1, _bn2;
    private readonly Conv2d? _shortcut;
    private readonly BatchNorm2d? _shortcutBn;

    public ResidualBlock(int cin, int cout, Generator g, double? bn2Momentum = 0.1)
    {
        _conv1 = RegisterModule("conv1", new Conv2d(cin, cout, 3, padding: 1, bias: false, generator: g));
        _bn1 = RegisterModule("bn1", new BatchNorm2d(cout));
        _conv2 = RegisterModule("conv2", new Conv2d(cout, cout, 3, padding: 1, bias: true, generator: g));
        _bn2 = RegisterModule("bn2", new BatchNorm2d(cout, momentum: bn2Momentum));
        if (cin != cout)
        {
            _shortcut = RegisterModule("sc", new Conv2d(cin, cout, 1, bias: false, generator: g));
            _shortcutBn = RegisterModule("scbn", new BatchNorm2d(cout));
        }
    }

    public override Tensor Forward(Tensor x)
    {
        var y = _bn1.Call(_conv1.Call(x)).Relu();
        y = _bn2.Call(_conv2.Call(y));
        var s = _shortcut is null ? x : _shortcutBn!.Call(_shortcut.Call(x));
        return y.Add(s).Relu();
    }
}
