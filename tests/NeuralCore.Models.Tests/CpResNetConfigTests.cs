namespace NeuralCore.Models.Tests;

public sealed class CpResNetConfigTests
{
    [Fact]
    public void KernelSizes_ForRho4_MatchTheTable()
    {
        var c = new CpResNetConfig();
        Assert.Equal((3, 1), c.KernelSizes(0, 0));
        Assert.Equal((3, 3), c.KernelSizes(0, 1));
        Assert.Equal((3, 1), c.KernelSizes(1, 0));
        Assert.Equal((1, 1), c.KernelSizes(1, 1));
        Assert.Equal((1, 1), c.KernelSizes(2, 0));
        Assert.Equal((1, 1), c.KernelSizes(2, 1));
    }

    [Theory]
    // rho, then (k1, k2) of stage1 block1/2, stage2 block1/2, stage3 block1/2, from the formulas with e = rho - 4.
    [InlineData(5, new[] { 3, 1, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1 })]
    [InlineData(6, new[] { 3, 1, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1 })]
    [InlineData(7, new[] { 3, 1, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1 })]
    [InlineData(8, new[] { 3, 1, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1 })]
    [InlineData(9, new[] { 3, 1, 3, 3, 3, 3, 3, 3, 3, 3, 1, 1 })]
    [InlineData(11, new[] { 3, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3 })]
    [InlineData(3, new[] { 3, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1 })]
    [InlineData(2, new[] { 3, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1 })]
    [InlineData(1, new[] { 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 })]
    public void KernelSizes_FollowTheRhoFormulas(int rho, int[] expected)
    {
        var actual = new List<int>();
        for (var s = 0; s < 3; s++)
            for (var b = 0; b < 2; b++)
            {
                var (k1, k2) = CpResNetConfig.KernelSizes(rho, s, b);
                actual.Add(k1);
                actual.Add(k2);
            }
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void KernelSizes_ChangeTheModel()
    {
        var model = new CpResNet(new CpResNetConfig { Rho = 8 });
        Assert.Equal(new NN.Size2(3, 3), model.Blocks().ElementAt(3).Conv1.KernelSize);
        Assert.Equal(new NN.Size2(3, 3), model.Blocks().ElementAt(4).Conv1.KernelSize);
    }

    [Fact]
    public void Widths_ParseFromTheSeedsForms()
    {
        Assert.Equal([24, 48, 72], CpResNetConfig.FromWidths("24 48 72").ChannelWidths);
        Assert.Equal([32, 64, 128], CpResNetConfig.FromWidths(" 32,64, 128 ").ChannelWidths);
        Assert.Equal([32, 64, 128], CpResNetConfig.FromBaseChannels(32, 2).ChannelWidths);
        Assert.Equal([32, 32, 32], CpResNetConfig.FromBaseChannels(32, 1).ChannelWidths);
        Assert.Equal([32, 60, 120], CpResNetConfig.FromBaseChannels(32, 2, cutChannelsS2: 4, cutChannelsS3: 8).ChannelWidths);
        Assert.Throws<FormatException>(() => CpResNetConfig.FromWidths("24 48"));
        Assert.Throws<FormatException>(() => CpResNetConfig.FromWidths("24 x 72"));
        Assert.Throws<FormatException>(() => CpResNetConfig.FromWidths("24 0 72"));
    }

    [Fact]
    public void Metadata_RoundTrips()
    {
        var config = new CpResNetConfig { Rho = 6, ChannelWidths = [20, 41, 83], NumClasses = 7, StemActivation = "relu", GroupsPerStage = [1, 1, 1] };
        var metadata = config.ToMetadata();
        Assert.Equal("cpresnet", metadata["model"]);
        Assert.Equal("20 41 83", metadata["cpresnet.channel_widths"]);
        var back = CpResNetConfig.FromMetadata(metadata);
        Assert.Equal(config, back);
        Assert.Equal(config.GetHashCode(), back.GetHashCode());
        Assert.NotEqual(config, back with { Rho = 4 });
    }

    [Fact]
    public void Metadata_ErrorsNameTheProblem()
    {
        var none = Assert.Throws<InvalidDataException>(() => CpResNetConfig.FromMetadata(new Dictionary<string, string> { ["format"] = "pt" }));
        Assert.Contains("--model cpresnet --channel-width", none.Message);
        var bad = Assert.Throws<InvalidDataException>(() => CpResNetConfig.FromMetadata(new Dictionary<string, string> { ["cpresnet.channel_widths"] = "24 forty 72" }));
        Assert.Contains("forty", bad.Message);
    }

    [Fact]
    public void Validate_RejectsImpossibleSettings()
    {
        Assert.Throws<ArgumentException>(() => new CpResNetConfig { BlocksPerStage = [2, 3, 2] }.Validate());
        Assert.Throws<ArgumentException>(() => new CpResNetConfig { GroupsPerStage = [5, 1, 1] }.Validate());
        Assert.Throws<ArgumentException>(() => new CpResNetConfig { StemActivation = "gelu" }.Validate());
        Assert.Throws<ArgumentException>(() => new CpResNetConfig { ChannelWidths = [24, 48] }.Validate());
    }
}
