namespace NeuralCore.Data;

/// <summary>Which file names a TAU22 folder uses for its fold.</summary>
public enum Tau22Layout
{
    /// <summary>The official layout: <c>evaluation_setup/fold1_{train,test,evaluate}.csv</c> beside <c>meta.csv</c>.</summary>
    Official,
    /// <summary>The seed's renamed layout: <c>train.csv</c>, <c>test.csv</c>, <c>evaluate.csv</c> beside <c>meta.csv</c>.</summary>
    Renamed,
}

/// <summary>Options of <see cref="Tau22.Load"/>.</summary>
public sealed record Tau22Options
{
    /// <summary>Leave out clips whose audio file is missing (each reported in <see cref="Tau22Dataset.Warnings"/>) instead of failing.</summary>
    public bool SkipMissing { get; init; }

    /// <summary>Check that every listed audio file exists (one stat per file); off only for metadata-only use.</summary>
    public bool CheckFiles { get; init; } = true;
}

/// <summary>A loaded TAU22 folder: the clips of meta.csv and the three fold lists.</summary>
public sealed class Tau22Dataset
{
    internal Tau22Dataset(string root, Tau22Layout layout, IReadOnlyList<AscClip> meta, IReadOnlyList<AscClip> train,
        IReadOnlyList<AscClip> test, IReadOnlyList<AscClip> evaluate, IReadOnlyList<string> warnings)
    {
        Root = root;
        Layout = layout;
        Meta = meta;
        Train = train;
        Test = test;
        Evaluate = evaluate;
        Warnings = warnings;
    }

    /// <summary>The dataset folder (holding meta.csv); clip file names are relative to it.</summary>
    public string Root { get; }

    /// <summary>Which fold file names were found.</summary>
    public Tau22Layout Layout { get; }

    /// <summary>Every clip of meta.csv, in file order.</summary>
    public IReadOnlyList<AscClip> Meta { get; }

    /// <summary>The clips of the training fold (fold1_train.csv / train.csv).</summary>
    public IReadOnlyList<AscClip> Train { get; }

    /// <summary>The clips of the test fold (fold1_test.csv / test.csv), labelled from meta.csv.</summary>
    public IReadOnlyList<AscClip> Test { get; }

    /// <summary>The clips of fold1_evaluate.csv / evaluate.csv (officially the test clips with their labels).</summary>
    public IReadOnlyList<AscClip> Evaluate { get; }

    /// <summary>Clips left out by <see cref="Tau22Options.SkipMissing"/>, one message each.</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>The absolute path of <paramref name="clip"/>'s audio file.</summary>
    public string AudioPath(AscClip clip) => Path.Combine(Root, clip.FileName);
}

/// <summary>
/// The TAU Urban Acoustic Scenes 2022 Mobile dataset (DCASE 2023 Task 1): labels, devices, file-name parsing and
/// the reader of its tab-separated metadata.
/// </summary>
public static class Tau22
{
    /// <summary>The 10 scene labels in class-index (alphabetical) order.</summary>
    public static IReadOnlyList<string> SceneLabels { get; } =
        ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall", "street_pedestrian", "street_traffic", "tram"];

    /// <summary>The 9 devices in report order: real a, b, c; simulated s1 .. s6 (s4 .. s6 only in the test split).</summary>
    public static IReadOnlyList<string> Devices { get; } = ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"];

    /// <summary>The device groups of the DCASE report: real (a, b, c), seen (s1 .. s3), unseen (s4 .. s6).</summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<string>> DeviceGroups { get; } = new Dictionary<string, IReadOnlyList<string>>
    {
        ["real"] = ["a", "b", "c"],
        ["seen"] = ["s1", "s2", "s3"],
        ["unseen"] = ["s4", "s5", "s6"],
    };

    /// <summary>The class index of <paramref name="scene"/>, or -1 when it is not one of <see cref="SceneLabels"/>.</summary>
    public static int LabelOf(string scene)
    {
        for (int i = 0; i < SceneLabels.Count; i++)
            if (SceneLabels[i] == scene)
                return i;
        return -1;
    }

    /// <summary>
    /// Parses a clip file name (with or without folders), e.g. <c>audio/airport-lisbon-1000-40000-0-a.wav</c>.
    /// </summary>
    /// <exception cref="FormatException">The name does not have the six dash-separated parts with a known scene.</exception>
    public static AscClip ParseFileName(string fileName)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        string name = fileName.Replace('\\', '/');
        string stem = name[(name.LastIndexOf('/') + 1)..];
        if (!stem.EndsWith(".wav", StringComparison.OrdinalIgnoreCase))
            throw new FormatException($"'{fileName}' is not a .wav file name.");
        var parts = stem[..^4].Split('-');
        if (parts.Length != 6 || parts.Any(string.IsNullOrEmpty))
            throw new FormatException($"'{fileName}' does not follow scene-city-location-segment-subsegment-device.wav (found {parts.Length} dash-separated parts, expected 6).");
        int label = LabelOf(parts[0]);
        if (label < 0)
            throw new FormatException($"'{fileName}' names the unknown scene '{parts[0]}'; expected one of {string.Join(", ", SceneLabels)}.");
        if (!int.TryParse(parts[4], out int sub) || sub < 0)
            throw new FormatException($"'{fileName}' has the subsegment '{parts[4]}', expected a non-negative integer.");
        return new AscClip(name, label, parts[1], parts[2], parts[3], sub, parts[5]);
    }

    /// <summary>
    /// Reads the TAU22 folder <paramref name="dataDir"/> in either layout (<see cref="Tau22Layout"/>). meta.csv gives
    /// every clip's label, location and device; the fold files list the clips of each split.
    /// </summary>
    /// <exception cref="Tau22FormatException">A file is missing or malformed; the message names the file and line.</exception>
    public static Tau22Dataset Load(string dataDir, Tau22Options? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(dataDir);
        options ??= new Tau22Options();
        string root = Path.GetFullPath(dataDir);
        string metaPath = Path.Combine(root, "meta.csv");
        if (!File.Exists(metaPath))
            throw new Tau22FormatException(root, 0, "no meta.csv in this folder. Expected the TAU Urban Acoustic Scenes 2022 Mobile layout (meta.csv, audio/, evaluation_setup/fold1_*.csv); pass the folder that holds meta.csv, or create a synthetic one with 'neuralcore make-synthetic-asc'.");
        string official = Path.Combine(root, "evaluation_setup", "fold1_train.csv");
        string renamed = Path.Combine(root, "train.csv");
        Tau22Layout layout;
        string trainPath, testPath, evaluatePath;
        if (File.Exists(official))
        {
            layout = Tau22Layout.Official;
            trainPath = official;
            testPath = Path.Combine(root, "evaluation_setup", "fold1_test.csv");
            evaluatePath = Path.Combine(root, "evaluation_setup", "fold1_evaluate.csv");
        }
        else if (File.Exists(renamed))
        {
            layout = Tau22Layout.Renamed;
            trainPath = renamed;
            testPath = Path.Combine(root, "test.csv");
            evaluatePath = Path.Combine(root, "evaluate.csv");
        }
        else
        {
            throw new Tau22FormatException(root, 0, "neither evaluation_setup/fold1_train.csv (official layout) nor train.csv (the seed's renamed layout) exists.");
        }

        var warnings = new List<string>();
        var meta = ReadMeta(metaPath, root, options, warnings, out var byName, out var missing);
        var train = ReadFold(trainPath, byName, missing, warnings, labelled: true);
        var test = ReadFold(testPath, byName, missing, warnings, labelled: false);
        var evaluate = File.Exists(evaluatePath) ? ReadFold(evaluatePath, byName, missing, warnings, labelled: true) : [];
        return new Tau22Dataset(root, layout, meta, train, test, evaluate, warnings);
    }

    private static string[][] ReadTable(string path, string[] required, out Dictionary<string, int> columns)
    {
        if (!File.Exists(path))
            throw new Tau22FormatException(path, 0, "the file does not exist.");
        var lines = File.ReadAllLines(path);
        if (lines.Length == 0)
            throw new Tau22FormatException(path, 0, "the file is empty; expected a tab-separated header line.");
        var header = lines[0].TrimEnd('\r').Split('\t');
        columns = new Dictionary<string, int>();
        for (int i = 0; i < header.Length; i++)
            columns[header[i].Trim()] = i;
        foreach (var name in required)
            if (!columns.ContainsKey(name))
                throw new Tau22FormatException(path, 1, $"the header has no '{name}' column (found: {string.Join(", ", header.Select(h => $"'{h}'"))}). TAU22 CSVs are tab-separated with the columns {string.Join(", ", required)}.");
        var rows = new string[lines.Length - 1][];
        for (int i = 1; i < lines.Length; i++)
            rows[i - 1] = lines[i].TrimEnd('\r').Split('\t');
        return rows;
    }

    private static List<AscClip> ReadMeta(string path, string root, Tau22Options options, List<string> warnings,
        out Dictionary<string, AscClip> byName, out HashSet<string> missing)
    {
        var rows = ReadTable(path, ["filename", "scene_label"], out var columns);
        int file = columns["filename"], scene = columns["scene_label"];
        int identifier = columns.GetValueOrDefault("identifier", -1), source = columns.GetValueOrDefault("source_label", -1);
        var clips = new List<AscClip>(rows.Length);
        byName = new Dictionary<string, AscClip>(rows.Length, StringComparer.Ordinal);
        missing = new HashSet<string>(StringComparer.Ordinal);
        for (int r = 0; r < rows.Length; r++)
        {
            int line = r + 2;
            var row = rows[r];
            if (row.Length == 1 && row[0].Length == 0)
                continue;
            var clip = ParseRow(path, line, row, file, scene);
            if (identifier >= 0 && identifier < row.Length && row[identifier] != clip.Identifier)
                throw new Tau22FormatException(path, line, $"identifier '{row[identifier]}' contradicts the file name, which gives '{clip.Identifier}'.");
            if (source >= 0 && source < row.Length && row[source] != clip.Device)
                throw new Tau22FormatException(path, line, $"source_label '{row[source]}' contradicts the file name, which gives device '{clip.Device}'.");
            if (!byName.TryAdd(clip.FileName, clip))
                throw new Tau22FormatException(path, line, $"'{clip.FileName}' is listed twice.");
            if (options.CheckFiles && !File.Exists(Path.Combine(root, clip.FileName)))
            {
                string message = $"{path}, line {line}: the audio file '{clip.FileName}' does not exist under {root}.";
                if (!options.SkipMissing)
                    throw new Tau22FormatException(path, line, $"the audio file '{clip.FileName}' does not exist under {root}. Restore it, or pass --skip-missing (Tau22Options.SkipMissing) to leave such clips out.");
                warnings.Add(message);
                missing.Add(clip.FileName);
                continue;
            }
            clips.Add(clip);
        }
        return clips;
    }

    private static AscClip ParseRow(string path, int line, string[] row, int fileColumn, int sceneColumn)
    {
        if (fileColumn >= row.Length || (sceneColumn >= 0 && sceneColumn >= row.Length))
            throw new Tau22FormatException(path, line, $"the row has {row.Length} tab-separated fields, fewer than the header; is the file comma-separated? TAU22 CSVs use tabs.");
        AscClip clip;
        try
        {
            clip = ParseFileName(row[fileColumn]);
        }
        catch (FormatException e)
        {
            throw new Tau22FormatException(path, line, e.Message);
        }
        if (sceneColumn >= 0)
        {
            string scene = row[sceneColumn].Trim();
            int label = LabelOf(scene);
            if (label < 0)
                throw new Tau22FormatException(path, line, $"unknown scene label '{scene}'; expected one of {string.Join(", ", SceneLabels)}.");
            if (label != clip.Label)
                throw new Tau22FormatException(path, line, $"scene label '{scene}' contradicts the file name '{clip.FileName}'.");
        }
        return clip;
    }

    private static List<AscClip> ReadFold(string path, Dictionary<string, AscClip> byName, HashSet<string> missing, List<string> warnings, bool labelled)
    {
        var rows = ReadTable(path, labelled ? ["filename", "scene_label"] : ["filename"], out var columns);
        int file = columns["filename"];
        int scene = labelled ? columns["scene_label"] : columns.GetValueOrDefault("scene_label", -1);
        var clips = new List<AscClip>(rows.Length);
        for (int r = 0; r < rows.Length; r++)
        {
            int line = r + 2;
            var row = rows[r];
            if (row.Length == 1 && row[0].Length == 0)
                continue;
            var parsed = ParseRow(path, line, row, file, scene);
            if (!byName.TryGetValue(parsed.FileName, out var clip))
                throw new Tau22FormatException(path, line, $"'{parsed.FileName}' is not listed in meta.csv.");
            if (missing.Contains(clip.FileName))
            {
                warnings.Add($"{path}, line {line}: skipped '{clip.FileName}' (audio file missing).");
                continue;
            }
            clips.Add(clip);
        }
        if (clips.Count == 0 && rows.Length > 0 && warnings.Count == 0)
            throw new Tau22FormatException(path, 0, "the file lists no clips.");
        return clips;
    }
}
