namespace NeuralCore.Data.Tests;

public sealed class AscTau22Tests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("nc-tau-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string[] Files =
    [
        "audio/airport-lisbon-1000-40000-0-a.wav",
        "audio/airport-lisbon-1000-40000-1-a.wav",
        "audio/bus-lyon-1001-40010-0-s2.wav",
        "audio/tram-vienna-1002-40020-3-s5.wav",
    ];

    private string Make(bool official, Action<Dictionary<string, string>>? tamper = null, bool writeAudio = true)
    {
        var files = new Dictionary<string, string>
        {
            ["meta.csv"] = "filename\tscene_label\tidentifier\tsource_label\n" +
                string.Concat(Files.Select(f => { var c = Tau22.ParseFileName(f); return $"{f}\t{c.Scene}\t{c.Identifier}\t{c.Device}\n"; })),
            ["train"] = $"filename\tscene_label\n{Files[0]}\tairport\n{Files[1]}\tairport\n{Files[2]}\tbus\n",
            ["test"] = $"filename\n{Files[3]}\n",
            ["evaluate"] = $"filename\tscene_label\n{Files[3]}\ttram\n",
        };
        tamper?.Invoke(files);
        Directory.CreateDirectory(Path.Combine(_dir, "audio"));
        File.WriteAllText(Path.Combine(_dir, "meta.csv"), files["meta.csv"]);
        string fold(string name) => official ? Path.Combine(_dir, "evaluation_setup", $"fold1_{name}.csv") : Path.Combine(_dir, $"{name}.csv");
        Directory.CreateDirectory(Path.Combine(_dir, "evaluation_setup"));
        foreach (var name in new[] { "train", "test", "evaluate" })
            File.WriteAllText(fold(name), files[name]);
        if (writeAudio)
            foreach (var f in Files)
                File.WriteAllBytes(Path.Combine(_dir, f), NeuralCore.Audio.WavFile.Encode(new float[100], 44100, 1, NeuralCore.Audio.WavSampleFormat.Pcm24));
        return _dir;
    }

    [Fact]
    public void FileNamesParseIntoTheirParts()
    {
        var c = Tau22.ParseFileName("audio/street_pedestrian-london-1234-56789-9-s4.wav");
        Assert.Equal(("street_pedestrian", 7, "london", "1234", "56789", 9, "s4"), (c.Scene, c.Label, c.City, c.Location, c.Segment, c.Subsegment, c.Device));
        Assert.Equal("london-1234", c.Identifier);
        Assert.Throws<FormatException>(() => Tau22.ParseFileName("audio/airport-lisbon-1000-a.wav"));
        Assert.Contains("unknown scene 'beach'", Assert.Throws<FormatException>(() => Tau22.ParseFileName("beach-a-1-2-3-a.wav")).Message);
    }

    [Fact]
    public void LabelsAreAlphabetical()
    {
        Assert.Equal(Tau22.SceneLabels.OrderBy(s => s, StringComparer.Ordinal), Tau22.SceneLabels);
        Assert.Equal(10, Tau22.SceneLabels.Count);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BothLayoutsLoad(bool official)
    {
        var ds = Tau22.Load(Make(official));
        Assert.Equal(official ? Tau22Layout.Official : Tau22Layout.Renamed, ds.Layout);
        Assert.Equal(4, ds.Meta.Count);
        Assert.Equal(3, ds.Train.Count);
        var test = Assert.Single(ds.Test);
        Assert.Equal(("tram", "s5", "vienna-1002"), (test.Scene, test.Device, test.Identifier));
        Assert.Single(ds.Evaluate);
        Assert.True(File.Exists(ds.AudioPath(test)));
    }

    [Fact]
    public void MissingFolderFilesAreExplained()
    {
        var e = Assert.Throws<Tau22FormatException>(() => Tau22.Load(_dir));
        Assert.Contains("meta.csv", e.Message);
        File.WriteAllText(Path.Combine(_dir, "meta.csv"), "filename\tscene_label\n");
        e = Assert.Throws<Tau22FormatException>(() => Tau22.Load(_dir));
        Assert.Contains("fold1_train.csv", e.Message);
    }

    public static TheoryData<string, string, int, string> BadRows() => new()
    {
        { "meta.csv", "filename,scene_label\n", 1, "no 'filename' column" },
        { "meta.csv", "filename\tscene_label\naudio/airport-lisbon-1000-40000-0-a.wav\tairprt\n", 2, "unknown scene label 'airprt'" },
        { "meta.csv", "filename\tscene_label\naudio/airport-lisbon-1000-40000-0-a.wav\tbus\n", 2, "contradicts the file name" },
        { "meta.csv", "filename\tscene_label\naudio/airport-lisbon-1000.wav\tairport\n", 2, "expected 6" },
        { "meta.csv", "filename\tscene_label\tidentifier\tsource_label\naudio/airport-lisbon-1000-40000-0-a.wav\tairport\tlisbon-1000\tb\n", 2, "source_label 'b'" },
        { "train", "filename\tscene_label\naudio/bus-lyon-9999-1-0-a.wav\tbus\n", 2, "not listed in meta.csv" },
        { "train", "filename\tscene_label\naudio/bus-lyon-1001-40010-0-s2.wav\n", 2, "fewer than the header" },
    };

    [Theory]
    [MemberData(nameof(BadRows))]
    public void MalformedRowsNameFileAndLine(string file, string content, int line, string reason)
    {
        var root = Make(true, f =>
        {
            f[file] = content;
        });
        var e = Assert.Throws<Tau22FormatException>(() => Tau22.Load(root));
        Assert.Equal(line, e.Line);
        Assert.EndsWith(file == "meta.csv" ? "meta.csv" : "fold1_train.csv", e.Path);
        Assert.Contains(reason, e.Reason);
        Assert.Contains($"line {line}", e.Message);
    }

    [Fact]
    public void MissingAudioFailsOrIsSkippedOnRequest()
    {
        string root = Make(true);
        File.Delete(Path.Combine(root, Files[1]));
        var e = Assert.Throws<Tau22FormatException>(() => Tau22.Load(root));
        Assert.Equal(3, e.Line);
        Assert.Contains("--skip-missing", e.Message);
        var ds = Tau22.Load(root, new Tau22Options { SkipMissing = true });
        Assert.Equal(2, ds.Train.Count);
        Assert.Equal(3, ds.Meta.Count);
        Assert.Equal(2, ds.Warnings.Count);
        Assert.All(ds.Warnings, w => Assert.Contains(Files[1], w));
    }
}
