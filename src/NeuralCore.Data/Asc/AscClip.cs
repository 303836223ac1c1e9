namespace NeuralCore.Data;

/// <summary>
/// One clip of an acoustic-scene dataset in the TAU Urban Acoustic Scenes 2022 Mobile naming scheme
/// <c>[scene]-[city]-[location]-[segment]-[subsegment]-[device].wav</c>.
/// </summary>
/// <param name="FileName">Path relative to the dataset root as the CSVs write it, e.g. <c>audio/airport-lisbon-1000-40000-0-a.wav</c>.</param>
/// <param name="Label">Class index into <see cref="Tau22.SceneLabels"/>.</param>
/// <param name="City">Recording city, e.g. <c>lisbon</c>.</param>
/// <param name="Location">Recording location id within the city, e.g. <c>1000</c>.</param>
/// <param name="Segment">The original 10 s recording the clip was cut from, e.g. <c>40000</c>.</param>
/// <param name="Subsegment">The 1 s piece of that recording, 0 .. 9.</param>
/// <param name="Device">Recording device: a, b, c (real) or s1 .. s6 (simulated).</param>
public sealed record AscClip(string FileName, int Label, string City, string Location, string Segment, int Subsegment, string Device)
{
    /// <summary>The scene label, e.g. <c>airport</c>.</summary>
    public string Scene => Tau22.SceneLabels[Label];

    /// <summary>The recording location as meta.csv's <c>identifier</c> column writes it: <c>city-location</c>.</summary>
    public string Identifier => $"{City}-{Location}";
}
