using NeuralCore.NN;
namespace NeuralCore.Onnx.Tests;
public sealed class TmpMeasure2
{
    [Fact]
    public void Inspect()
    {
        var lines = new List<string>();
        foreach (var s in new[] { 1, 5 })
        {
            var net = new RandomNet(s, [3, 21, 26]);
            net.Eval();
            using var _ = Autograd.Autograd.NoGrad();
            var x = OnnxTestSupport.SampleInput(7, [3, 21, 26], new Generator(7));
            foreach (var (name, m) in net.NamedChildren())
            {
                x = m.Call(x);
                var v = x.ToArray(); var row = v.Length / 7;
                double spread = 0, scale = v.Max(Math.Abs);
                for (var i = row; i < v.Length; i++) spread = Math.Max(spread, Math.Abs(v[i] - v[i % row]));
                lines.Add($"seed {s} {name} {m.GetType().Name} {string.Join(",", x.ShapeArray())}: scale {scale:G3} spread {spread:G3}");
            }
        }
        File.WriteAllLines("/tmp/onnx-inspect.txt", lines);
    }
}
