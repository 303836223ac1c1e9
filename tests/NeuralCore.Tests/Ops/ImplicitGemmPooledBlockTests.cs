using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// The implicit GEMM with a fused pool computes each block's unpooled rows into thread scratch sized for
/// <c>BlockColumns</c> columns: no block may compute more. A plane of odd height under a floor-mode 2 x 1 pool in a single
/// band (MNIST's 3 x 6 map at batch 1: one pooled row) is computed whole, 18 columns, and had been given scratch for the
/// 12 its pooled row reads; the other 6 rows' worth ran past the buffer into the next object on the pinned heap.
/// </summary>
public sealed class ImplicitGemmPooledBlockTests
{
    [Theory]
    // N, H, W, pool rows (2 x 1 or 3 x 1, stride = kernel), threads
    [InlineData(1, 3, 6, 2, 1)]     // MNIST's 3 x 6 map at batch 1: one band, the whole plane
    [InlineData(1, 3, 6, 2, 2)]
    [InlineData(2, 3, 6, 2, 2)]     // one band per sample
    [InlineData(1, 5, 6, 2, 2)]     // two bands, the plane's last row dropped
    [InlineData(1, 6, 6, 2, 2)]     // MNIST's 6 x 6 map
    [InlineData(1, 31, 24, 2, 2)]   // mel's 31 x 24 map at batch 1
    [InlineData(1, 15, 24, 2, 3)]
    [InlineData(4, 15, 24, 2, 2)]
    [InlineData(1, 7, 6, 3, 2)]     // windows of 3 rows, the last row dropped
    [InlineData(64, 6, 6, 2, 2)]    // several samples per block
    public void NoBlockComputesMoreColumnsThanItsScratchHolds(int n, int h, int w, int poolRows, int parts)
    {
        var p = new Conv2dParams(n, 8, h, w, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        var pool = new Pool2dParams(n, 8, h, w, poolRows, 1, poolRows, 1, 0, 0);
        var (blockColumns, largest) = ImplicitGemmConv.PooledBlockColumns(p, pool, parts);
        Assert.InRange(largest, 1, blockColumns);
    }
}
