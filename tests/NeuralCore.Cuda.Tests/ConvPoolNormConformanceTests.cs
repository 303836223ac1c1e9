using NeuralCore.Backends;

namespace NeuralCore.Cuda.Tests;

/// <summary>Convolution, pooling and batch norm on CUDA (with cuDNN, and with NeuralCore's own kernels) against the CPU backend.</summary>
public class ConvPoolNormConformanceTests : GpuTest
{
    public static readonly TheoryData<bool, Conv2dParams> ConvCases = Cases();

    private static TheoryData<bool, Conv2dParams> Cases()
    {
        Conv2dParams[] geometries =
        [
            new(2, 1, 28, 28, 8, 5, 5, 2, 2, 1, 1, 1, 1, 1),   // CP-ResNet stem: 5x5, stride 2, padding 1
            new(3, 8, 7, 9, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1),    // 3x3 block conv
            new(2, 16, 5, 5, 12, 1, 1, 1, 1, 0, 0, 1, 1, 1),   // 1x1 shortcut
            new(2, 6, 9, 8, 4, 3, 2, 2, 1, 0, 1, 2, 1, 2),     // groups 2, dilation 2, rectangular kernel
        ];
        var data = new TheoryData<bool, Conv2dParams>();
        foreach (var cudnn in new[] { false, true })
            foreach (var g in geometries) data.Add(cudnn, g);
        return data;
    }

    // FP32 with TF32 off; different summation order: atol/rtol 1e-4.
    [Theory]
    [MemberData(nameof(ConvCases))]
    public void Conv2dForwardAndBothGradients(bool cudnn, Conv2dParams p)
    {
        var gpu = Cuda(cudnn);
        var x = Rand([p.N, p.C, p.H, p.W], 1);
        var w = Rand([p.K, p.C / p.Groups, p.R, p.S], 2, -0.5f, 0.5f);
        var bias = Rand([p.K], 3);
        var dy = Rand([p.N, p.K, p.P, p.Q], 4);
        var y = Zeros([p.N, p.K, p.P, p.Q], false); var gy = Zeros([p.N, p.K, p.P, p.Q], true);
        Cpu.Conv2d(x, w, bias, y, p);
        gpu.Conv2d(OnGpu(x), OnGpu(w), OnGpu(bias), gy, p);
        Close(y, gy, 1e-4f, 1e-4f, $"Conv2d {p}");
        var dx = Zeros([p.N, p.C, p.H, p.W], false); var gdx = Zeros([p.N, p.C, p.H, p.W], true);
        Cpu.Conv2dBackwardData(dy, w, dx, p);
        gpu.Conv2dBackwardData(OnGpu(dy), OnGpu(w), gdx, p);
        Close(dx, gdx, 1e-4f, 1e-4f, $"Conv2d dx {p}");
        var dw = Zeros(w.ShapeArray(), false); var gdw = Zeros(w.ShapeArray(), true);
        Cpu.Conv2dBackwardWeight(dy, x, dw, p);
        gpu.Conv2dBackwardWeight(OnGpu(dy), OnGpu(x), gdw, p);
        Close(dw, gdw, 1e-3f, 1e-4f, $"Conv2d dw {p}");
    }

    public static readonly TheoryData<bool, PoolKind, Pool2dParams> PoolCases = PoolCaseData();

    private static TheoryData<bool, PoolKind, Pool2dParams> PoolCaseData()
    {
        Pool2dParams[] geometries =
        [
            new(2, 3, 8, 8, 2, 2, 2, 2, 0, 0),             // stage-1 2x2 pool
            new(2, 3, 9, 6, 2, 1, 2, 1, 0, 0),             // CP-ResNet (2, 1) pool
            new(1, 2, 7, 7, 3, 3, 2, 2, 1, 1),             // overlapping windows with padding
            new(1, 2, 7, 6, 2, 2, 2, 2, 0, 0, CeilMode: true),
        ];
        var data = new TheoryData<bool, PoolKind, Pool2dParams>();
        foreach (var cudnn in new[] { false, true })
            foreach (var kind in new[] { PoolKind.Max, PoolKind.Average })
                foreach (var g in geometries) data.Add(cudnn, kind, g);
        return data;
    }

    [Theory]
    [MemberData(nameof(PoolCases))]
    public void Pool2dForwardAndBackward(bool cudnn, PoolKind kind, Pool2dParams p)
    {
        var gpu = Cuda(cudnn);
        var x = Rand([p.N, p.C, p.H, p.W], 1);
        int[] outShape = [p.N, p.C, p.P, p.Q];
        var y = Zeros(outShape, false); var gy = Zeros(outShape, true);
        var idx = kind == PoolKind.Max ? Zeros(outShape, false, DType.Int32) : null;
        var gidx = kind == PoolKind.Max ? Zeros(outShape, true, DType.Int32) : null;
        Cpu.Pool2d(kind, x, y, idx, p);
        gpu.Pool2d(kind, OnGpu(x), gy, gidx, p);
        Close(y, gy, 1e-6f, 1e-6f, $"{kind} pool {p}");
        if (idx is not null) Assert.Equal(idx.ToInt64Array(), gidx!.ToInt64Array());
        // Without indices (inference) cuDNN may serve the forward pass.
        var gy2 = Zeros(outShape, true);
        gpu.Pool2d(kind, OnGpu(x), gy2, null, p);
        Close(y, gy2, 1e-6f, 1e-6f, $"{kind} pool without indices {p}");
        var dy = Rand(outShape, 2);
        var dx = Zeros([p.N, p.C, p.H, p.W], false); var gdx = Zeros([p.N, p.C, p.H, p.W], true);
        Cpu.Pool2dBackward(kind, dy, idx, dx, p);
        gpu.Pool2dBackward(kind, OnGpu(dy), gidx, gdx, p);
        Close(dx, gdx, 1e-6f, 1e-5f, $"{kind} pool backward {p}");
    }

    [Theory]
    [InlineData(false, 4, 3, 25)]
    [InlineData(true, 4, 3, 25)]
    [InlineData(false, 64, 8, 1)]
    [InlineData(true, 64, 8, 1)]
    [InlineData(false, 2, 5, 300)]
    [InlineData(true, 2, 5, 300)]
    public void BatchNormTrainingInferenceAndBackward(bool cudnn, int n, int c, int hw)
    {
        var gpu = Cuda(cudnn);
        var x = Rand([n, c, hw], 1, 3, 5);
        var gamma = Rand([c], 2, 0.5f, 1.5f); var beta = Rand([c], 3);
        var rm = Rand([c], 4); var rv = Rand([c], 5, 0.5f, 2f);
        var grm = OnGpu(rm); var grv = OnGpu(rv);
        var y = Zeros([n, c, hw], false); var gy = Zeros([n, c, hw], true);
        var mean = Zeros([c], false); var inv = Zeros([c], false); var gmean = Zeros([c], true); var ginv = Zeros([c], true);
        Cpu.BatchNormTraining(x, gamma, beta, y, mean, inv, rm, rv, 0.1f, 1e-5f, n, c, hw);
        gpu.BatchNormTraining(OnGpu(x), OnGpu(gamma), OnGpu(beta), gy, gmean, ginv, grm, grv, 0.1f, 1e-5f, n, c, hw);
        Close(y, gy, 1e-4f, 1e-4f, "BN training output");
        Close(mean, gmean, 1e-5f, 1e-5f, "BN saved mean");
        Close(inv, ginv, 1e-4f, 1e-4f, "BN saved inverse std");
        Close(rm, grm, 1e-5f, 1e-5f, "BN running mean");
        Close(rv, grv, 1e-4f, 1e-4f, "BN running variance (unbiased)");

        var dy = Rand([n, c, hw], 6);
        var dx = Zeros([n, c, hw], false); var dg = Zeros([c], false); var db = Zeros([c], false);
        var gdx = Zeros([n, c, hw], true); var gdg = Zeros([c], true); var gdb = Zeros([c], true);
        Cpu.BatchNormBackward(x, dy, gamma, mean, inv, dx, dg, db, n, c, hw);
        gpu.BatchNormBackward(OnGpu(x), OnGpu(dy), OnGpu(gamma), gmean, ginv, gdx, gdg, gdb, n, c, hw);
        Close(dx, gdx, 1e-4f, 1e-3f, "BN dx");
        Close(dg, gdg, 1e-3f, 1e-4f, "BN dgamma");
        Close(db, gdb, 1e-4f, 1e-5f, "BN dbeta");

        var yi = Zeros([n, c, hw], false); var gyi = Zeros([n, c, hw], true);
        Cpu.BatchNormInference(x, gamma, beta, rm, rv, yi, 1e-5f, n, c, hw);
        gpu.BatchNormInference(OnGpu(x), OnGpu(gamma), OnGpu(beta), grm, grv, gyi, 1e-5f, n, c, hw);
        Close(yi, gyi, 1e-4f, 1e-4f, "BN inference");
    }
}
