using NeuralCore.Backends;
using NeuralCore.Backends.Cpu;
using NeuralCore.Tests.Backends;

namespace NeuralCore.Tests.Ops;

/// <summary>
/// <see cref="MixedLaneConv3x3"/> (the inference plans' 3x3 over one sample's map of at most 3 x 6 whose output channels
/// leave a few over past their blocks of 16: the blocks with the channels in the lanes, the rest with the positions in
/// the lanes), bit for bit against the implicit GEMM's fused epilogue on the same tensors moved to position-major, and
/// to rounding against the reference convolution and activation: no block, one and two blocks, 1 to 5 channels left
/// over, two and three rows, widths 4 to 6, ReLU, Hardswish and none, with and without bias and residual, channel-major
/// and position-major input, NaN and infinity in the input.
/// </summary>
public sealed unsafe class MixedLaneConv3x3Tests
{
    [Theory]
    // C, K, H, W, activation kind (0 none, 1 ReLU, 2 Hardswish), bias, residual, input position-major
    [InlineData(19, 19, 3, 6, 1, true, false, false)]   // MNIST batch 1's pruned unpooled 3 x 6 step: a block and 3 left
    [InlineData(19, 19, 3, 6, 1, true, true, true)]     // with a residual, reading the previous step's position-major output
    [InlineData(7, 3, 3, 6, 2, true, true, false)]      // no block: only the channels left over
    [InlineData(8, 37, 3, 6, 0, false, true, true)]     // two blocks and 5 left, no activation, no bias
    [InlineData(5, 18, 2, 6, 1, true, false, false)]    // two rows: 12 positions, 2 left in one vector
    [InlineData(6, 20, 3, 5, 2, false, true, false)]    // five columns, 4 left
    [InlineData(4, 17, 2, 4, 1, true, true, true)]      // 2 x 4, 1 left
    [InlineData(40, 19, 3, 4, 1, true, false, false)]   // four columns
    public void MatchesTheImplicitGemmBitForBit(int c, int k, int h, int w, int kind, bool withBias, bool withResidual, bool positionMajor)
    {
        var p = new Conv2dParams(1, c, h, w, k, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        if (!MixedLaneConv3x3.CanRun(p)) Assert.Skip("This CPU has no AVX-512: the mixed-lane 3x3 kernel does not run.");
        int plane = h * w;
        float[] x = Reference.ToFloat(Reference.Random(c * plane, 71));
        float[] wt = Reference.ToFloat(Reference.Random(k * c * 9, 72));
        float[]? bias = withBias ? Reference.ToFloat(Reference.Random(k, 73)) : null;
        float[]? residual = withResidual ? Reference.ToFloat(Reference.Random(k * plane, 74)) : null;
        // A NaN in the first channel's last row and an infinity in the last channel's first: the outputs they reach
        // are NaN or infinite, the others finite.
        x[(h - 1) * w + 1] = float.NaN;
        x[(c - 1) * plane] = float.PositiveInfinity;
        var activation = kind == 2 ? UnaryOp.Hardswish : UnaryOp.Relu;

        float[] expected = new float[k * plane];
        var gemmWeights = new ImplicitGemmConv.Weights(wt, p);
        fixed (float* xp = x, bp = bias, rp = residual, yp = expected)
            ImplicitGemmConv.Forward(xp, gemmWeights.View(), bp, yp, p, rp, kind != 0, activation, 0f, 0f, null);
        GC.KeepAlive(gemmWeights);

        var weights = new MixedLaneConv3x3.Weights(wt, p);
        float[] input = positionMajor ? Transpose(x, c, plane) : x;
        float[]? residualPositionMajor = residual is null ? null : Transpose(residual, k, plane);
        float[] actual = Enumerable.Repeat(float.NaN, k * plane + 16).ToArray();
        fixed (float* xp = input, bp = bias, rp = residualPositionMajor, yp = actual)
            MixedLaneConv3x3.Forward(xp, positionMajor, weights, bp, yp, p, rp, kind);
        // Nothing is written past the output.
        Assert.All(actual[(k * plane)..], v => Assert.True(float.IsNaN(v)));
        float[] channelMajor = Transpose(actual[..(k * plane)], plane, k);
        Assert.Equal(ConvPathRuns.Bits(expected), ConvPathRuns.Bits(channelMajor));
        Assert.Contains(expected, float.IsNaN);
        Assert.Contains(expected, float.IsFinite);
        PlanePointwisePooledTests.AssertAgreesWithTheReference(x, wt, bias, residual, p, null, kind, channelMajor);
    }

    /// <summary>[rows, columns] to [columns, rows].</summary>
    private static float[] Transpose(float[] a, int rows, int columns)
    {
        var t = new float[a.Length];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < columns; j++)
                t[j * rows + i] = a[i * columns + j];
        return t;
    }

    [Theory]
    // N, H, W, K, stride, padding, kernel
    [InlineData(1, 3, 6, 19, 1, 1, 3, true)]     // 3 left over
    [InlineData(1, 3, 6, 21, 1, 1, 3, true)]     // 5 left over
    [InlineData(1, 3, 6, 3, 1, 1, 3, true)]      // no block, 3 left over
    [InlineData(1, 2, 2, 17, 1, 1, 3, true)]     // 2 x 2, 1 left over
    [InlineData(1, 3, 6, 32, 1, 1, 3, false)]    // none left over: the narrow map fills its lanes
    [InlineData(1, 3, 6, 22, 1, 1, 3, false)]    // 6 left over: as many lanes as the narrow map's 8 per position
    [InlineData(1, 3, 4, 20, 1, 1, 3, false)]    // 4 left over on four columns
    [InlineData(1, 1, 6, 19, 1, 1, 3, false)]    // one row: the narrow map drops the taps off the map
    [InlineData(1, 3, 1, 17, 1, 1, 3, false)]    // one column
    [InlineData(1, 4, 6, 19, 1, 1, 3, false)]    // four rows
    [InlineData(1, 3, 7, 19, 1, 1, 3, false)]    // seven columns
    [InlineData(2, 3, 6, 19, 1, 1, 3, false)]    // two samples
    [InlineData(1, 3, 6, 19, 2, 1, 3, false)]    // stride 2
    [InlineData(1, 3, 6, 19, 1, 0, 3, false)]    // unpadded
    [InlineData(1, 3, 6, 19, 1, 0, 1, false)]    // 1x1
    public void RunsOnlyWhereTheChannelsLeftOverTakeFewerLanes(int n, int h, int w, int k, int stride, int pad, int kernel, bool expected)
    {
        var p = new Conv2dParams(n, 8, h, w, k, kernel, kernel, stride, stride, pad, pad, 1, 1, 1);
        if (!MixedLaneConv3x3.CanRun(new Conv2dParams(1, 8, 3, 6, 19, 3, 3, 1, 1, 1, 1, 1, 1, 1)))
            Assert.Skip("This CPU has no AVX-512: the mixed-lane 3x3 kernel does not run.");
        Assert.Equal(expected, MixedLaneConv3x3.CanRun(p));
        if (!expected) Assert.Throws<ArgumentException>(() => new MixedLaneConv3x3.Weights(new float[k * 8 * kernel * kernel], p));
    }

    /// <summary>Weights packed for other channel counts are refused: their blocks and left-over channels would not match.</summary>
    [Fact]
    public void RefusesWeightsPackedForOtherChannels()
    {
        var p = new Conv2dParams(1, 8, 3, 6, 19, 3, 3, 1, 1, 1, 1, 1, 1, 1);
        if (!MixedLaneConv3x3.CanRun(p)) Assert.Skip("This CPU has no AVX-512: the mixed-lane 3x3 kernel does not run.");
        var weights = new MixedLaneConv3x3.Weights(new float[19 * 8 * 9], p);
        var buffer = new float[21 * 18];
        var error = Assert.Throws<ArgumentException>(() =>
        {
            fixed (float* b = buffer)
                MixedLaneConv3x3.Forward(b, false, weights, null, b, p with { K = 21 }, null, 0);
        });
        Assert.Contains("8 -> 19", error.Message);
    }
}
