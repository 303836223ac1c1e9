using NeuralCore.Backends.Cpu;

namespace NeuralCore.Tests.Backends;

/// <summary>
/// The kernels' scratch and the inference plan's buffers start on a 64-byte boundary (the pinned object heap aligns an
/// array's data to 8 bytes only), and hold the floats asked for from there.
/// </summary>
public sealed unsafe class AlignedArraysTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(1000)]
    [InlineData(123_457)]
    public void ArraysStartOnALineAndHoldTheirLengthFromThere(int length)
    {
        // Several arrays, so that the heap's places for them differ.
        for (int i = 0; i < 8; i++)
        {
            var array = AlignedArrays.Allocate(length);
            float* start = AlignedArrays.Start(array);
            Assert.Equal(0, (long)start % 64);
            Assert.Equal(length, AlignedArrays.Length(array));
            fixed (float* data = array)
                Assert.True(start + length <= data + array.Length, "the aligned start leaves fewer floats than asked for");
        }
    }

    [Fact]
    public void ABufferPastOneArrayIsRefusedWithTheFix()
    {
        var e = Assert.Throws<InvalidOperationException>(() => AlignedArrays.Allocate(Array.MaxLength));
        Assert.Contains("reduce the batch size", e.Message);
        Assert.Throws<InvalidOperationException>(() => new ConvScratch().Get(ConvScratch.Slot.Columns, Array.MaxLength));
    }

    [Fact]
    public void ScratchStartsOnALineAsItGrows()
    {
        var scratch = new ConvScratch();
        foreach (long length in new long[] { 5, 100, 101, 4096, 70_001 })
        {
            float* p = scratch.Get(ConvScratch.Slot.Columns, length);
            Assert.Equal(0, (long)p % 64);
            // Every float asked for is there: writing them all must not reach past the array.
            new Span<float>(p, (int)length).Fill(1f);
        }
    }

    [Fact]
    public void AnInferencePlansBuffersStartOnALine()
    {
        var g = new Generator(3);
        var net = new NeuralCore.NN.Sequential(new NeuralCore.NN.Conv2d(1, 5, 3, padding: 1, generator: g), new NeuralCore.NN.ReLU(), new NeuralCore.NN.Conv2d(5, 7, 1, generator: g));
        net.Eval();
        var plan = CpuInferencePlan.Compile(net, [2, 1, 9, 10]);
        var buffers = (float[][])typeof(CpuInferencePlan).GetField("_buffers", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(plan)!;
        Assert.NotEmpty(buffers);
        Assert.All(buffers, b => Assert.Equal(0, (long)AlignedArrays.Start(b) % 64));
        var x = Tensor.Randn([2, 1, 9, 10], g);
        GradCheck.AssertClose(Array.ConvertAll(net.Call(x).ToArray(), v => (double)v), plan.Run(x).ToArray(), 1e-5, 1e-5, "plan");
    }
}
