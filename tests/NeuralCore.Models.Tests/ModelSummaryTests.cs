using NeuralCore.NN;

namespace NeuralCore.Models.Tests;

public sealed class ModelSummaryTests
{
    [Fact]
    public void CountsEachLayerTypeTheWayTorchinfoDoes()
    {
        // conv 3x3 with bias on 1x8x8 -> 4x6x6, BN, ReLU, max pool -> 4x3x3, flatten, linear 36 -> 5.
        var model = new Sequential(
            new Conv2d(1, 4, 3, bias: true),
            new BatchNorm2d(4),
            new ReLU(),
            new MaxPool2d(2),
            new Flatten(),
            new Linear(36, 5));
        model.Train();
        var summary = ModelSummary.Summarize(model, [1, 8, 8]);

        long conv = 1 * 4 * 3 * 3 * 6 * 6, convBias = 4 * 6 * 6, bn = 2 * 4, linear = 36 * 5 + 5;
        Assert.Equal(conv, summary.ConvMacs);
        Assert.Equal(conv + convBias + bn + linear, summary.TotalMacs);
        Assert.Equal(4 * 9 + 4 + 8 + 185, summary.TotalParameters);
        Assert.Equal([1, 5], summary.OutputShape!);
        Assert.Equal([1, 1, 8, 8], summary.InputShape);

        Assert.Equal(["0", "1", "2", "3", "4", "5"], summary.Layers.Select(l => l.Name));
        Assert.Equal(["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten", "Linear"], summary.Layers.Select(l => l.Type));
        Assert.Equal([1, 4, 3, 3], summary.Layers[3].OutputShape!);
        Assert.Equal(0, summary.Layers[2].Macs);
        Assert.Equal(linear, summary.Layers[5].Macs);
        Assert.Equal(summary.TotalMacs, summary.Layers.Sum(l => l.Macs));
        Assert.Equal(summary.TotalParameters, summary.Layers.Sum(l => l.Parameters));

        // Tracing runs in eval mode and gives the training flags back.
        Assert.True(model.Training);
        Assert.True(model[1].Training);
        Assert.Equal(0, ((BatchNorm2d)model[1]).NumBatchesTracked);
    }

    [Fact]
    public void GroupedConvolution_DividesByGroups()
    {
        var model = new Sequential(new Conv2d(4, 8, 3, padding: 1, groups: 2, bias: false));
        var summary = ModelSummary.Summarize(model, [4, 5, 5]);
        Assert.Equal(4 / 2 * 8 * 3 * 3 * 5 * 5, summary.ConvMacs);
    }

    [Fact]
    public void Table_ListsEveryLayerAndTheTotals()
    {
        var model = new CpResNet(new CpResNetConfig());
        var table = ModelSummary.Summarize(model, [1, 28, 28]).ToTable();
        Assert.Contains("stage2.block1.shortcut.conv (Conv2d)", table);
        Assert.Contains("[1, 10]", table);
        Assert.Contains("Total parameters: 59,804", table);
        Assert.Contains("Convolution MACs: 745,080", table);
    }

    [Fact]
    public void RejectsAnInputShapeWithTheBatch()
    {
        var error = Assert.Throws<ArgumentException>(() => ModelSummary.Summarize(new Sequential(new ReLU()), []));
        Assert.Contains("without the batch dimension", error.Message);
    }
}
