using NeuralCore.Backends;

namespace NeuralCore.Cuda.Tests;

/// <summary>Memory, element-wise, reduction, matrix, indexing, softmax/loss and optimizer ops on CUDA against the CPU backend.</summary>
public class ElementwiseConformanceTests : GpuTest
{
    public static readonly TheoryData<UnaryOp> UnaryOps = new(Enum.GetValues<UnaryOp>());
    public static readonly TheoryData<BinaryOp> BinaryOps = new(Enum.GetValues<BinaryOp>());
    public static readonly TheoryData<ReduceOp> ReduceOps = new(Enum.GetValues<ReduceOp>());

    // Transcendentals may differ by a few ulp between the GPU's and .NET's libm: rtol 1e-5.
    [Theory]
    [MemberData(nameof(UnaryOps))]
    public void UnaryForwardAndBackward(UnaryOp op)
    {
        var gpu = Cuda();
        var positiveOnly = op is UnaryOp.Log or UnaryOp.Sqrt or UnaryOp.Pow or UnaryOp.Reciprocal;
        var (alpha, beta) = op switch { UnaryOp.Pow => (2.5f, 0f), UnaryOp.Clamp => (-0.5f, 0.7f), UnaryOp.Affine => (1.5f, -0.25f), UnaryOp.Reciprocal => (2f, 0f), _ => (0f, 0f) };
        foreach (var shape in new[] { new[] { 7 }, new[] { 3, 1025 }, new[] { 2, 3, 64 } })
        {
            var x = Rand(shape, 1, positiveOnly ? 0.1f : -8f, positiveOnly ? 4f : 8f);
            var dy = Rand(shape, 2);
            var y = Zeros(shape, false); var gy = Zeros(shape, true);
            Cpu.Unary(op, x, y, alpha, beta);
            var gx = OnGpu(x);
            gpu.Unary(op, gx, gy, alpha, beta);
            Close(y, gy, 1e-6f, 1e-5f, $"{op} forward {Tensor.FormatShape(shape)}");
            var dx = Zeros(shape, false); var gdx = Zeros(shape, true);
            Cpu.UnaryBackward(op, x, y, dy, dx, alpha, beta);
            gpu.UnaryBackward(op, gx, gy, OnGpu(dy), gdx, alpha, beta);
            Close(dx, gdx, 1e-6f, 1e-5f, $"{op} backward {Tensor.FormatShape(shape)}");
        }
    }

    [Theory]
    [MemberData(nameof(BinaryOps))]
    public void BinaryContiguousBroadcastAndStrided(BinaryOp op)
    {
        var gpu = Cuda();
        var a = Rand([4, 3, 5], 3); var b = Rand([4, 3, 5], 4);
        // Equal needs ties to be tested: copy some elements.
        var bv = b.ToArray(); var av = a.ToArray();
        for (var i = 0; i < av.Length; i += 3) bv[i] = av[i];
        b = Tensor.FromArray(bv, 4, 3, 5);
        Check(a, b, t => t, t => t, "contiguous");
        Check(Rand([4, 1, 5], 5), Rand([1, 3, 5], 6), t => t.Expand([4, 3, 5]), t => t.Expand([4, 3, 5]), "broadcast");
        Check(Rand([5, 3, 4], 7), b, t => t.Permute(2, 1, 0), t => t, "permuted");
        var ia = Tensor.FromArray(new long[] { 1, -7, 3, 10_000_000_000, 8 }, 5);
        var ib = Tensor.FromArray(new long[] { 2, 2, 3, 3, -8 }, 5);
        var iy = Zeros([5], false, DType.Int64); var giy = Zeros([5], true, DType.Int64);
        Cpu.Binary(op, ia, ib, iy);
        gpu.Binary(op, OnGpu(ia), OnGpu(ib), giy);
        Same(iy, giy);

        // The same view (broadcast with stride 0, or permuted) is built on each device from the same data.
        void Check(Tensor x, Tensor z, Func<Tensor, Tensor> viewX, Func<Tensor, Tensor> viewZ, string what)
        {
            var y = Zeros([4, 3, 5], false); var gy = Zeros([4, 3, 5], true);
            Cpu.Binary(op, viewX(x), viewZ(z), y);
            gpu.Binary(op, viewX(OnGpu(x)), viewZ(OnGpu(z)), gy);
            Close(y, gy, 0, 1e-7f, $"{op} {what}");
        }
    }

    [Fact]
    public void AddScaledFillCopyAndRandom()
    {
        var gpu = Cuda();
        var y = Rand([1000], 1); var x = Rand([1000], 2);
        var gy = OnGpu(y);
        Cpu.AddScaled(y, x, -0.75f);
        gpu.AddScaled(gy, OnGpu(x), -0.75f);
        Close(y, gy, 1e-7f, 1e-7f, "AddScaled");

        foreach (var dtype in new[] { DType.Float32, DType.Int64, DType.Int32 })
        {
            var c = Zeros([33], false, dtype); var g = Zeros([33], true, dtype);
            Cpu.Fill(c, -3); gpu.Fill(g, -3);
            Same(c, g);
        }

        // Strided source with a dtype change, and a same-dtype transpose.
        var src = Rand([6, 4], 3, -100, 100);
        var t = Zeros([4, 6], false, DType.Int32); var gt = Zeros([4, 6], true, DType.Int32);
        Cpu.Copy(src.Transpose(0, 1), t);
        gpu.Copy(OnGpu(src).Transpose(0, 1), gt);
        Same(t, gt);
        var f = Zeros([4, 6], false); var gf = Zeros([4, 6], true);
        Cpu.Copy(src.Transpose(0, 1), f);
        gpu.Copy(OnGpu(src).Transpose(0, 1), gf);
        Close(f, gf, 0, 0, "transpose copy");

        // Random numbers are drawn on the host: the same seed gives identical values on both devices.
        var r = Zeros([257], false); var gr = Zeros([257], true);
        Cpu.RandomNormal(r, 0.5f, 2f, new Generator(9));
        gpu.RandomNormal(gr, 0.5f, 2f, new Generator(9));
        Close(r, gr, 0, 0, "RandomNormal");
    }

    [Theory]
    [MemberData(nameof(ReduceOps))]
    public void ReduceRowsAndColumns(ReduceOp op)
    {
        var gpu = Cuda();
        foreach (var (outer, reduce, inner) in new[] { (3, 1000, 1), (4, 7, 5), (2, 3, 1), (1, 5000, 3) })
        {
            var x = Rand([outer, reduce, inner], 11);
            var y = Zeros([outer, inner], false); var gy = Zeros([outer, inner], true);
            var withIndex = op is ReduceOp.Max or ReduceOp.Min;
            var i = withIndex ? Zeros([outer, inner], false, DType.Int64) : null;
            var gi = withIndex ? Zeros([outer, inner], true, DType.Int64) : null;
            Cpu.Reduce(op, x, y, i, outer, reduce, inner);
            gpu.Reduce(op, OnGpu(x), gy, gi, outer, reduce, inner);
            // Sums of up to 5000 values in a different order: atol grows with the count.
            Close(y, gy, 1e-6f * reduce, 1e-5f, $"{op} [{outer}, {reduce}, {inner}]");
            if (withIndex) Same(i!, gi!);
        }
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void MatMulMatchesIncludingBatchesAndBroadcast(bool transA, bool transB)
    {
        var gpu = Cuda();
        const int batch = 3, m = 17, n = 33, k = 65;
        var a = Rand(transA ? [batch, k, m] : [batch, m, k], 1);
        var b = Rand(transB ? [n, k] : [k, n], 2);
        foreach (var beta in new[] { 0f, 1f })
        {
            var c = Rand([batch, m, n], 3); var gc = OnGpu(c);
            Cpu.MatMul(a, transA, b, transB, c, batch, m, n, k, m * k, 0, beta);
            gpu.MatMul(OnGpu(a), transA, OnGpu(b), transB, gc, batch, m, n, k, m * k, 0, beta);
            // TF32 is off by default: exact FP32 products, different summation order: 1e-4.
            Close(c, gc, 1e-4f, 1e-4f, $"MatMul transA={transA} transB={transB} beta={beta}");
        }
    }

    [Fact]
    public void IndexSelectAndIndexAdd()
    {
        var gpu = Cuda();
        var x = Rand([2, 6, 3], 1);
        var idx = Tensor.FromArray(new long[] { 5, 0, 3, 3 }, 4);
        var y = Zeros([2, 4, 3], false); var gy = Zeros([2, 4, 3], true);
        Cpu.IndexSelect(x, idx, y, 2, 6, 3);
        gpu.IndexSelect(OnGpu(x), OnGpu(idx), gy, 2, 6, 3);
        Close(y, gy, 0, 0, "IndexSelect");
        var dx = Rand([2, 6, 3], 2); var gdx = OnGpu(dx);
        Cpu.IndexAdd(y, idx, dx, 2, 6, 3);
        gpu.IndexAdd(gy, OnGpu(idx), gdx, 2, 6, 3);
        Close(dx, gdx, 1e-7f, 1e-7f, "IndexAdd (repeated index 3)");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SoftmaxAndNllLoss(bool log)
    {
        var gpu = Cuda();
        foreach (var (rows, cols) in new[] { (5, 10), (3, 1000), (64, 2) })
        {
            var x = Rand([rows, cols], 1, -20, 20); var dy = Rand([rows, cols], 2);
            var y = Zeros([rows, cols], false); var gy = Zeros([rows, cols], true);
            Cpu.Softmax(x, y, rows, cols, log);
            gpu.Softmax(OnGpu(x), gy, rows, cols, log);
            Close(y, gy, 1e-6f, 1e-5f, $"Softmax log={log} [{rows}, {cols}]");
            var dx = Zeros([rows, cols], false); var gdx = Zeros([rows, cols], true);
            Cpu.SoftmaxBackward(y, dy, dx, rows, cols, log);
            gpu.SoftmaxBackward(gy, OnGpu(dy), gdx, rows, cols, log);
            Close(dx, gdx, 1e-5f, 1e-5f, $"SoftmaxBackward log={log} [{rows}, {cols}]");
        }
        var lp = Zeros([6, 4], false); Cpu.Softmax(Rand([6, 4], 3), lp, 6, 4, log: true);
        var targets = Tensor.FromArray(new long[] { 0, 3, 1, 1, 2, 0 }, 6);
        var weights = Tensor.FromArray(new[] { 0.5f, 2f, 1f, 1.5f }, 4);
        foreach (var (w, s) in new (Tensor?, float)[] { (null, 0f), (weights, 0f), (weights, 0.1f), (null, 0.2f) })
        {
            var loss = Zeros([6], false); var gloss = Zeros([6], true);
            Cpu.NllLoss(lp, targets, w, s, loss, 6, 4);
            gpu.NllLoss(OnGpu(lp), OnGpu(targets), w is null ? null : OnGpu(w), s, gloss, 6, 4);
            Close(loss, gloss, 1e-6f, 1e-6f, $"NllLoss smoothing={s}");
            var dl = Rand([6], 4); var d = Zeros([6, 4], false); var gd = Zeros([6, 4], true);
            Cpu.NllLossBackward(targets, w, s, dl, d, 6, 4);
            gpu.NllLossBackward(OnGpu(targets), w is null ? null : OnGpu(w), s, OnGpu(dl), gd, 6, 4);
            Close(d, gd, 1e-6f, 1e-6f, $"NllLossBackward smoothing={s}");
        }
        var bad = Tensor.FromArray(new long[] { 0, 4, 1, 1, 2, 0 }, 6);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => gpu.NllLoss(OnGpu(lp), OnGpu(bad), null, 0, Zeros([6], true), 6, 4));
        Assert.Contains("Target 4 at row 1", e.Message);
    }

    [Theory]
    [InlineData(false, false, 0f)]
    [InlineData(true, false, 0.01f)]
    [InlineData(false, true, 0.01f)]
    public void AdamStepsMatch(bool decoupled, bool amsgrad, float weightDecay)
    {
        var gpu = Cuda();
        var p = Rand([300], 1); var m = Zeros([300], false); var v = Zeros([300], false); var vmax = amsgrad ? Zeros([300], false) : null;
        var gp = OnGpu(p); var gm = OnGpu(m); var gv = OnGpu(v); var gvmax = vmax is null ? null : OnGpu(vmax);
        for (var step = 1; step <= 3; step++)
        {
            var g = Rand([300], (ulong)(10 + step));
            var h = new AdamParams(1e-2f, 0.9f, 0.999f, 1e-8f, weightDecay, decoupled, step, amsgrad);
            Cpu.AdamStep(p, g, m, v, vmax, h);
            gpu.AdamStep(gp, OnGpu(g), gm, gv, gvmax, h);
        }
        Close(p, gp, 1e-6f, 1e-5f, "Adam parameters");
        Close(v, gv, 1e-7f, 1e-5f, "Adam second moment");
    }

    [Theory]
    [InlineData(0f, false)]
    [InlineData(0.9f, false)]
    [InlineData(0.9f, true)]
    public void SgdStepsMatch(float momentum, bool nesterov)
    {
        var gpu = Cuda();
        var p = Rand([300], 1); var buf = momentum == 0 ? null : Zeros([300], false);
        var gp = OnGpu(p); var gbuf = buf is null ? null : OnGpu(buf);
        for (var step = 0; step < 3; step++)
        {
            var g = Rand([300], (ulong)(20 + step));
            var h = new SgdParams(0.1f, momentum, 0.1f, 1e-3f, nesterov, step == 0);
            Cpu.SgdStep(p, g, buf, h);
            gpu.SgdStep(gp, OnGpu(g), gbuf, h);
        }
        Close(p, gp, 1e-6f, 1e-6f, "SGD parameters");
    }
}
