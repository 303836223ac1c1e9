using System.Globalization;
using NeuralCore.NN;
using NeuralCore.Optim;

namespace NeuralCore.Cuda.SelfTest;

/// <summary>A tolerance |CUDA - CPU| &lt;= Atol + Rtol * |CPU|.</summary>
internal readonly record struct Tol(float Atol, float Rtol)
{
    public static readonly Tol Exact = new(0, 0);

    public override string ToString() => Atol == 0 && Rtol == 0 ? "exact"
        : string.Create(CultureInfo.InvariantCulture, $"atol {Atol:G2} + rtol {Rtol:G2}");
}

/// <summary>
/// Every op family forward and backward on the GPU against the CPU backend through the public tensor API (so
/// autograd, the ops' dispatch and the kernels are all exercised): each case builds the same expression on both
/// devices from the same inputs, compares the outputs, back-propagates the same upstream gradient and compares the
/// gradient of every input. Tolerances are those of docs/cuda.md (FP32 with TF32 off; only the summation order differs).
/// </summary>
internal sealed class ConformanceSuite(CheckRecorder recorder, Device gpu)
{
    private static readonly Tol Pointwise = new(1e-6f, 1e-5f);
    private static readonly Tol Product = new(1e-4f, 1e-4f);
    private static readonly Tol ConvGrad = new(1e-3f, 1e-4f);
    private static readonly Tol Norm = new(1e-4f, 1e-4f);
    private static readonly Tol NormGrad = new(1e-4f, 1e-3f);

    /// <summary>The families that do not depend on cuDNN (run once).</summary>
    public void RunCommon()
    {
        Elementwise();
        Broadcasting();
        Reductions();
        MatMul();
        Softmax();
        Losses();
        Indexing();
        CopyConcatNarrow();
        Optimizers();
    }

    /// <summary>The families cuDNN can take over (run with and without it); <paramref name="mode"/> names the pass.</summary>
    public void RunCudnnFamilies(string mode)
    {
        Conv2d(mode);
        Pooling(mode);
        BatchNorm(mode);
    }

    private static Tensor U(int[] shape, ulong seed, float low = -2, float high = 2) => Tensor.Uniform(shape, low, high, new Generator(seed));

    private static string S(int[] shape) => Tensor.FormatShape(shape).Replace(" ", "", StringComparison.Ordinal);

    /// <summary>A fresh leaf on <paramref name="device"/> holding <paramref name="t"/>'s values; Float32 leaves require grad.</summary>
    private static Tensor Leaf(Tensor t, Device device, bool grad = true)
    {
        var leaf = device == Device.Cpu ? t.Clone() : t.To(device);
        if (grad && leaf.DType == DType.Float32) leaf.RequiresGrad = true;
        return leaf;
    }

    /// <summary>
    /// One differentiable case: <paramref name="f"/> on CPU and GPU copies of <paramref name="inputs"/>, the outputs
    /// compared within <paramref name="forward"/>, then the gradients of every Float32 input within <paramref name="grad"/>.
    /// </summary>
    private void Case(string group, string name, Tol forward, Tol grad, Func<Tensor[], Tensor> f, params Tensor[] inputs) =>
        recorder.Run(group, name, $"output {forward}; gradients {grad}", cmp =>
        {
            var cpuIn = inputs.Select(t => Leaf(t, Device.Cpu)).ToArray();
            var gpuIn = inputs.Select(t => Leaf(t, gpu)).ToArray();
            var yc = f(cpuIn);
            var yg = f(gpuIn);
            if (yg.Device != gpu) cmp.Fail($"the output lives on {yg.Device}, expected {gpu}");
            if (yc.DType != DType.Float32)
            {
                cmp.Exact("output", yc, yg);
                return;
            }
            cmp.Close("output", yc, yg, forward.Atol, forward.Rtol);
            if (!yc.RequiresGrad) return;
            var dy = U(yc.ShapeArray(), 99, -1, 1);
            yc.Backward(dy);
            yg.Backward(dy.To(gpu));
            for (var i = 0; i < inputs.Length; i++)
            {
                if (!cpuIn[i].RequiresGrad || cpuIn[i].Grad is not { } gc) continue;
                if (gpuIn[i].Grad is not { } gg) { cmp.Fail($"input {i} got a gradient on the CPU but none on the GPU"); continue; }
                cmp.Close($"gradient of input {i}", gc, gg, grad.Atol, grad.Rtol);
            }
        });

    private void Elementwise()
    {
        (string Name, Func<Tensor, Tensor> F, float Low, float High)[] ops =
        [
            ("relu", x => x.Relu(), -2, 2), ("relu6", x => x.Relu6(), -8, 8), ("hardswish", x => x.Hardswish(), -5, 5),
            ("sigmoid", x => x.Sigmoid(), -6, 6), ("tanh", x => x.Tanh(), -4, 4), ("exp", x => x.Exp(), -4, 4),
            ("log", x => x.Log(), 0.1f, 4), ("sqrt", x => x.Sqrt(), 0.1f, 4), ("abs", x => x.Abs(), -2, 2),
            ("square", x => x.Square(), -2, 2), ("pow 2.5", x => x.Pow(2.5f), 0.1f, 2), ("reciprocal", x => x.Reciprocal(), 0.5f, 3),
            ("clamp", x => x.Clamp(-1, 1), -2, 2), ("affine", x => x.Affine(2, -0.5f), -2, 2), ("neg", x => x.Neg(), -2, 2),
            ("sign", x => x.Sign(), -2, 2),
        ];
        var seed = 1UL;
        foreach (var (name, f, low, high) in ops)
        {
            Case("elementwise", $"{name} [1155]", Pointwise, Pointwise, t => f(t[0]), U([1155], seed, low, high));
            Case("elementwise", $"{name} [3,77,5] permuted (strided)", Pointwise, Pointwise, t => f(t[0].Permute(2, 0, 1)), U([3, 77, 5], seed + 1000, low, high));
            seed++;
        }
    }

    private void Broadcasting()
    {
        (string Name, Func<Tensor, Tensor, Tensor> F)[] ops =
        [
            ("add", (a, b) => a.Add(b)), ("sub", (a, b) => a.Sub(b)), ("mul", (a, b) => a.Mul(b)),
            ("div", (a, b) => a.Div(b)), ("maximum", (a, b) => a.Maximum(b)), ("minimum", (a, b) => a.Minimum(b)),
        ];
        (int[] A, int[] B)[] shapes = [([4, 3, 5], [3, 1]), ([2, 1, 5], [4, 1]), ([64, 32], [32]), ([7, 9], [7, 9])];
        var seed = 10UL;
        foreach (var (name, f) in ops)
        {
            foreach (var (a, b) in shapes)
            {
                // Divisors stay away from zero so the quotient's gradient is well conditioned.
                var bt = name == "div" ? U(b, seed + 1, 0.5f, 2) : U(b, seed + 1);
                Case("broadcast", $"{name} {S(a)} {S(b)}", Pointwise, Pointwise, t => f(t[0], t[1]), U(a, seed), bt);
                seed += 2;
            }
            Case("broadcast", $"{name} [9,7] transposed with [7,9]", Pointwise, Pointwise, t => f(t[0].Transpose(0, 1), t[1]),
                U([9, 7], seed), name == "div" ? U([7, 9], seed + 1, 0.5f, 2) : U([7, 9], seed + 1));
            seed += 2;
        }
    }

    private void Reductions()
    {
        var x = U([4, 6, 33], 20);
        Case("reduction", "sum all [4,6,33]", new(1e-6f * x.NumElements, 1e-5f), Pointwise, t => t[0].Sum(), x);
        Case("reduction", "sum dim 1 [4,6,33]", new(6e-6f, 1e-5f), Pointwise, t => t[0].Sum(1), x);
        Case("reduction", "mean dims 0,2 keepdim [4,6,33]", new(1e-6f, 1e-5f), Pointwise, t => t[0].Mean([0, 2], keepDim: true), x);
        Case("reduction", "var dim 2 [4,6,33]", new(1e-5f, 1e-4f), Pointwise, t => t[0].Var([2]), x);
        Case("reduction", "max dim 2 [4,6,33]", Tol.Exact, Pointwise, t => t[0].Max(2), x);
        Case("reduction", "argmax dim 1 [4,6,33]", Tol.Exact, Tol.Exact, t => t[0].ArgMax(1), x);
        Case("reduction", "min dim 0 [4,6,33]", Tol.Exact, Pointwise, t => t[0].Min(0), x);
        var big = U([300_000], 21);
        Case("reduction", "sum [300000]", new(1e-6f * 300_000, 1e-5f), Pointwise, t => t[0].Sum(), big);
        Case("reduction", "mean dim 0 of [128,64,3] permuted (strided)", new(1e-6f, 1e-5f), Pointwise, t => t[0].Permute(2, 0, 1).Mean(1), U([128, 64, 3], 22));
    }

    private void MatMul()
    {
        Case("matmul", "[33,17] x [17,29]", Product, Product, t => t[0].MatMul(t[1]), U([33, 17], 30), U([17, 29], 31));
        Case("matmul", "[17,33]^T x [17,29]", Product, Product, t => t[0].T.MatMul(t[1]), U([17, 33], 32), U([17, 29], 33));
        Case("matmul", "[33,17] x [29,17]^T", Product, Product, t => t[0].MatMul(t[1].T), U([33, 17], 34), U([29, 17], 35));
        Case("matmul", "[17,33]^T x [29,17]^T", Product, Product, t => t[0].T.MatMul(t[1].T), U([17, 33], 36), U([29, 17], 37));
        Case("matmul", "batched [4,9,13] x [4,13,7]", Product, Product, t => t[0].MatMul(t[1]), U([4, 9, 13], 38), U([4, 13, 7], 39));
        Case("matmul", "batched [4,13,9]^T x [4,13,7]", Product, Product, t => t[0].Transpose(1, 2).MatMul(t[1]), U([4, 13, 9], 40), U([4, 13, 7], 41));
        Case("matmul", "[256,512] x [512,128]", new(1e-3f, 1e-4f), new(1e-3f, 1e-4f), t => t[0].MatMul(t[1]), U([256, 512], 42, -1, 1), U([512, 128], 43, -1, 1));
    }

    private void Conv2d(string mode)
    {
        // (x shape, weight shape, bias, stride, padding, dilation, groups)
        (string Name, int[] X, int[] W, bool Bias, (int, int) Stride, (int, int) Pad, (int, int) Dil, int Groups)[] cases =
        [
            ("stem 5x5 s2 p1", [4, 1, 28, 28], [8, 1, 5, 5], false, (2, 2), (1, 1), (1, 1), 1),
            ("3x3 s1 p1 bias", [3, 8, 7, 9], [16, 8, 3, 3], true, (1, 1), (1, 1), (1, 1), 1),
            ("1x1 shortcut", [2, 16, 5, 5], [12, 16, 1, 1], false, (1, 1), (0, 0), (1, 1), 1),
            ("3x3 s2 p0", [2, 4, 11, 10], [6, 4, 3, 3], false, (2, 2), (0, 0), (1, 1), 1),
            ("3x2 groups 2 s(2,1) p(0,1) dilation (2,1)", [2, 6, 9, 8], [4, 3, 3, 2], true, (2, 1), (0, 1), (2, 1), 2),
            ("depthwise 3x3 p1", [2, 8, 10, 10], [8, 1, 3, 3], false, (1, 1), (1, 1), (1, 1), 8),
            ("mel-sized 3x3 p1", [2, 32, 16, 12], [32, 32, 3, 3], false, (1, 1), (1, 1), (1, 1), 1),
        ];
        var seed = 50UL;
        foreach (var c in cases)
        {
            var inputs = c.Bias ? new[] { U(c.X, seed), U(c.W, seed + 1, -0.5f, 0.5f), U([c.W[0]], seed + 2) } : [U(c.X, seed), U(c.W, seed + 1, -0.5f, 0.5f)];
            Case("conv2d", $"{c.Name} x{S(c.X)} w{S(c.W)} {mode}", Product, ConvGrad,
                t => Functional.Conv2d(t[0], t[1], c.Bias ? t[2] : null, c.Stride, c.Pad, c.Dil, c.Groups), inputs);
            seed += 3;
        }
    }

    private void Pooling(string mode)
    {
        (string Name, int[] X, (int, int) K, (int, int) S, (int, int) P, bool Ceil)[] geometries =
        [
            ("2x2", [2, 3, 8, 8], (2, 2), (2, 2), (0, 0), false),
            ("(2,1)", [2, 3, 9, 6], (2, 1), (2, 1), (0, 0), false),
            ("3x3 s2 p1", [1, 2, 7, 7], (3, 3), (2, 2), (1, 1), false),
            ("2x2 ceil", [1, 2, 7, 6], (2, 2), (2, 2), (0, 0), true),
        ];
        var seed = 80UL;
        foreach (var g in geometries)
        {
            Case("pooling", $"max {g.Name} x{S(g.X)} {mode}", Tol.Exact, Pointwise,
                t => Functional.MaxPool2d(t[0], g.K, g.S, g.P, g.Ceil), U(g.X, seed));
            Case("pooling", $"avg {g.Name} x{S(g.X)} {mode}", Pointwise, Pointwise,
                t => Functional.AvgPool2d(t[0], g.K, g.S, g.P, g.Ceil), U(g.X, seed + 1));
            seed += 2;
        }
        Case("pooling", $"adaptive avg (1,1) x[2,5,7,24] {mode}", Pointwise, Pointwise,
            t => Functional.AdaptiveAvgPool2d(t[0], (1, 1)), U([2, 5, 7, 24], seed));
    }

    private void BatchNorm(string mode)
    {
        int[][] shapes = [[4, 6, 5, 7], [8, 16], [2, 32, 7, 24]];
        var seed = 100UL;
        foreach (var training in new[] { true, false })
        {
            foreach (var shape in shapes)
            {
                var x = U(shape, seed);
                var c = shape[1];
                var w = U([c], seed + 1, 0.5f, 1.5f);
                var b = U([c], seed + 2);
                var mean0 = U([c], seed + 3, -0.5f, 0.5f);
                var var0 = U([c], seed + 4, 0.5f, 2);
                var dy = U(shape, seed + 5, -1, 1);
                seed += 6;
                recorder.Run("batchnorm", $"{(training ? "train" : "eval")} x{S(shape)} {mode}", $"output {Norm}; gradients {NormGrad}; running statistics {Norm}", cmp =>
                {
                    var cpu = Run(Device.Cpu);
                    var cuda = Run(gpu);
                    cmp.Close("output", cpu.Y, cuda.Y, Norm.Atol, Norm.Rtol);
                    string[] names = ["dx", "dweight", "dbias"];
                    for (var i = 0; i < 3; i++) cmp.Close(names[i], cpu.Grads[i], cuda.Grads[i], NormGrad.Atol, NormGrad.Rtol);
                    cmp.Close("running mean", cpu.Mean, cuda.Mean, Norm.Atol, Norm.Rtol);
                    cmp.Close("running var", cpu.Var, cuda.Var, Norm.Atol, Norm.Rtol);
                });

                (Tensor Y, Tensor[] Grads, Tensor Mean, Tensor Var) Run(Device d)
                {
                    var leaves = new[] { Leaf(x, d), Leaf(w, d), Leaf(b, d) };
                    var mean = Leaf(mean0, d, grad: false);
                    var variance = Leaf(var0, d, grad: false);
                    var y = Functional.BatchNorm2d(leaves[0], mean, variance, leaves[1], leaves[2], training);
                    y.Backward(dy.To(d));
                    return (y, leaves.Select(l => l.Grad ?? throw new InvalidOperationException($"batch norm gave no gradient on {d}")).ToArray(), mean, variance);
                }
            }
        }
    }

    private void Softmax()
    {
        (string Name, int[] Shape, int Dim)[] cases = [("[7,10] dim -1", [7, 10], -1), ("[2,5,3,4] dim 1", [2, 5, 3, 4], 1), ("[3,1000] dim -1", [3, 1000], -1)];
        var seed = 140UL;
        foreach (var (name, shape, dim) in cases)
        {
            Case("softmax", $"softmax {name}", Pointwise, Pointwise, t => Functional.Softmax(t[0], dim), U(shape, seed, -6, 6));
            Case("softmax", $"log-softmax {name}", Pointwise, Pointwise, t => Functional.LogSoftmax(t[0], dim), U(shape, seed + 1, -6, 6));
            seed += 2;
        }
    }

    private void Losses()
    {
        var logits = U([16, 10], 150, -4, 4);
        var targets = Tensor.FromArray(Enumerable.Range(0, 16).Select(i => (long)(i * 7 % 10)).ToArray(), 16);
        var weights = U([10], 151, 0.5f, 2);
        var loss = new Tol(1e-5f, 1e-5f);
        Case("loss", "cross-entropy mean [16,10]", loss, loss, t => Functional.CrossEntropy(t[0], t[1]), logits, targets);
        Case("loss", "cross-entropy sum, label smoothing 0.1", loss, loss, t => Functional.CrossEntropy(t[0], t[1], reduction: Reduction.Sum, labelSmoothing: 0.1f), logits, targets);
        Case("loss", "cross-entropy class weights", loss, loss, t => Functional.CrossEntropy(t[0], t[1], t[2].Detach()), logits, targets, weights);
        Case("loss", "nll none of log-softmax", loss, loss, t => Functional.NllLoss(Functional.LogSoftmax(t[0], 1), t[1], reduction: Reduction.None), logits, targets);
    }

    private void Indexing()
    {
        var x = U([6, 5, 4], 160);
        var rows = Tensor.FromArray(new long[] { 5, 0, 0, 3, 5, 5 }, 6);
        var cols = Tensor.FromArray(new long[] { 4, 1, 1, 0 }, 4);
        // The backward pass of index_select is index_add: repeated indices sum their gradients.
        Case("indexing", "index select dim 0 (repeats) / index add", Tol.Exact, Pointwise, t => t[0].IndexSelect(0, t[1]), x, rows);
        Case("indexing", "index select dim 1 (repeats) / index add", Tol.Exact, Pointwise, t => t[0].IndexSelect(1, t[1]), x, cols);
        Case("indexing", "index select dim 2 of a permuted view", Tol.Exact, Pointwise, t => t[0].Permute(2, 1, 0).IndexSelect(2, t[1]), x, cols);
    }

    private void CopyConcatNarrow()
    {
        var a = U([2, 3, 4], 170);
        var b = U([2, 5, 4], 171);
        var c = U([2, 1, 4], 172);
        Case("copy", "concat dim 1 [2,3,4] [2,5,4] [2,1,4]", Tol.Exact, Tol.Exact, t => Tensor.Concat([t[0], t[1], t[2]], 1), a, b, c);
        Case("copy", "concat dim 2 of permuted views", Tol.Exact, Tol.Exact, t => Tensor.Concat([t[0].Permute(0, 2, 1), t[1].Permute(0, 2, 1)], 2), a, b);
        Case("copy", "narrow dim 2 [2,5,4] -> [2,5,2]", Tol.Exact, Tol.Exact, t => t[0].Narrow(2, 1, 2), b);
        Case("copy", "narrow then contiguous copy", Tol.Exact, Tol.Exact, t => t[0].Narrow(1, 2, 3).Contiguous().Mul(2), b);
        Case("copy", "permute contiguous copy [2,5,4] -> [4,2,5]", Tol.Exact, Tol.Exact, t => t[0].Permute(2, 0, 1).Contiguous(), b);
        Case("copy", "expand [2,1,4] -> [2,6,4]", Tol.Exact, Pointwise, t => t[0].Expand(2, 6, 4).Contiguous(), c);
        Case("copy", "float x10 -> int64 (truncation)", Tol.Exact, Tol.Exact, t => t[0].Mul(10).AsType(DType.Int64), b);
    }

    private void Optimizers()
    {
        (string Name, Func<IEnumerable<Parameter>, Optimizer> Make)[] optimizers =
        [
            ("Adam lr 1e-2 weight decay 3e-3", p => new Adam(p, lr: 1e-2, weightDecay: 3e-3)),
            ("Adam amsgrad", p => new Adam(p, lr: 1e-2, amsgrad: true)),
            ("AdamW weight decay 1e-2", p => new AdamW(p, lr: 1e-2, weightDecay: 1e-2)),
            ("SGD momentum 0.9 nesterov", p => new SGD(p, lr: 0.1, momentum: 0.9, nesterov: true)),
            ("SGD momentum 0.9 dampening 0.1 weight decay 1e-3", p => new SGD(p, lr: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 1e-3)),
        ];
        int[][] shapes = [[37, 5], [100], [8, 4, 3, 3]];
        foreach (var (name, make) in optimizers)
        {
            recorder.Run("optimizer", $"{name}, 3 steps", $"parameters and state {Pointwise}", cmp =>
            {
                var cpu = shapes.Select((s, i) => new Parameter(U(s, 200 + (ulong)i))).ToList();
                var cuda = shapes.Select((s, i) => new Parameter(U(s, 200 + (ulong)i).To(gpu))).ToList();
                var cpuOpt = make(cpu);
                var gpuOpt = make(cuda);
                for (var step = 0; step < 3; step++)
                {
                    for (var i = 0; i < shapes.Length; i++)
                    {
                        var g = U(shapes[i], 300 + (ulong)(step * 10 + i), -1, 1);
                        cpu[i].Grad = g;
                        cuda[i].Grad = g.To(gpu);
                    }
                    cpuOpt.Step();
                    gpuOpt.Step();
                }
                for (var i = 0; i < shapes.Length; i++)
                {
                    cmp.Close($"parameter {i}", cpu[i], cuda[i], Pointwise.Atol, Pointwise.Rtol);
                    var cpuState = cpuOpt.State[cpu[i]];
                    var gpuState = gpuOpt.State[cuda[i]];
                    foreach (var (key, value) in cpuState)
                    {
                        if (!gpuState.TryGetValue(key, out var other)) cmp.Fail($"parameter {i}: the GPU optimizer has no state '{key}'");
                        else if (value.DType == DType.Float32) cmp.Close($"parameter {i} state '{key}'", value, other, Pointwise.Atol, Pointwise.Rtol);
                        else cmp.Exact($"parameter {i} state '{key}'", value, other);
                    }
                }
            });
        }
    }
}
