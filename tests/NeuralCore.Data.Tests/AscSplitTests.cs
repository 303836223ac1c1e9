namespace NeuralCore.Data.Tests;

public class AscSplitTests
{
    private static List<AscClip> Clips(ulong seed)
    {
        var g = new Generator(seed);
        var clips = new List<AscClip>();
        for (int scene = 0; scene < 10; scene++)
            for (int loc = 0; loc < 8; loc++)
            {
                int count = 5 + g.NextInt(40);
                for (int i = 0; i < count; i++)
                    clips.Add(new AscClip($"audio/x{scene}-{loc}-{i}.wav", scene, loc % 2 == 0 ? "lyon" : "paris", $"{scene * 100 + loc}", $"{i / 10}", i % 10, "a"));
            }
        return clips;
    }

    [Fact]
    public void ValidationIsLocationDisjointPerSceneAndNearTheFraction()
    {
        var clips = Clips(1);
        var (train, validation) = AscSplit.LocationDisjoint(clips, 0.1, 42);
        Assert.Equal(clips.Count, train.Count + validation.Count);
        var trainLocations = train.Select(c => c.Identifier).ToHashSet();
        Assert.DoesNotContain(validation, c => trainLocations.Contains(c.Identifier));
        for (int scene = 0; scene < 10; scene++)
        {
            Assert.Contains(validation, c => c.Label == scene);
            Assert.Contains(train, c => c.Label == scene);
        }
        Assert.InRange((double)validation.Count / clips.Count, 0.05, 0.2);
    }

    [Fact]
    public void SplitIsAFunctionOfTheSeed()
    {
        var clips = Clips(2);
        var a = AscSplit.LocationDisjoint(clips, 0.1, 1).Validation.Select(c => c.FileName).ToArray();
        var b = AscSplit.LocationDisjoint(clips, 0.1, 1).Validation.Select(c => c.FileName).ToArray();
        var c = AscSplit.LocationDisjoint(clips, 0.1, 2).Validation.Select(c => c.FileName).ToArray();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void ASceneWithOneLocationStaysInTraining()
    {
        var clips = Enumerable.Range(0, 5).Select(i => new AscClip($"audio/{i}.wav", 0, "lyon", "1", "1", i, "a")).ToList();
        var (train, validation) = AscSplit.LocationDisjoint(clips, 0.1, 0);
        Assert.Equal(5, train.Count);
        Assert.Empty(validation);
    }
}
