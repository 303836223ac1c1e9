using System.Globalization;
using System.Text;
using NeuralCore.Audio;

namespace NeuralCore.Data;

/// <summary>What <see cref="SyntheticAsc.Generate"/> wrote.</summary>
/// <param name="Root">The dataset folder (holding meta.csv).</param>
/// <param name="TrainClips">Clips in evaluation_setup/fold1_train.csv.</param>
/// <param name="TestClips">Clips in evaluation_setup/fold1_test.csv (and fold1_evaluate.csv).</param>
/// <param name="Locations">Distinct recording locations (city-location).</param>
public sealed record SyntheticAscSummary(string Root, int TrainClips, int TestClips, int Locations);

/// <summary>
/// Generates a synthetic stand-in for TAU Urban Acoustic Scenes 2022 Mobile in its exact layout (meta.csv,
/// audio/*.wav as 1 s 44.1 kHz 24-bit mono, evaluation_setup/fold1_{train,test,evaluate}.csv, tab-separated), with
/// the 10 scene labels, 6 cities, 6 locations per scene and the devices a, b, c, s1 .. s6.
/// </summary>
/// <remarks>
/// <para>
/// Each scene is a recipe of spectral and temporal statistics: a coloured background noise (spectral slope and
/// band limits), amplitude modulation (engines, passing traffic), tonal components (hum, engine harmonics,
/// squeal, music) and short events at a scene-specific rate (chirps, steps, voices, horns). Scenes come in
/// overlapping families (bus / metro / tram; airport / shopping_mall / metro_station; park / public_square /
/// street_pedestrian) and every parameter is drawn per recording segment and per clip with wide spreads, so the
/// classes overlap. Each location adds its own resonance and spectral tilt; locations are disjoint between the
/// train and test folds (4 train, 2 test per scene), as in the official fold.
/// </para>
/// <para>
/// A device is a fixed frequency response (high-pass, low-pass, one or two resonant peaks or dips), a gain and a
/// noise floor. a records most training clips; b, c, s1 .. s3 the rest; the test fold uses all nine equally, so
/// s4 .. s6 (the most coloured responses) are unseen in training. Generation is deterministic for a seed
/// regardless of the number of threads.
/// </para>
/// </remarks>
public static class SyntheticAsc
{
    /// <summary>The sample rate of the generated files (TAU22's).</summary>
    public const int SampleRate = 44100;

    private const int FftSize = 65536;
    private static readonly string[] Cities = ["barcelona", "helsinki", "lisbon", "london", "lyon", "vienna"];
    private const int LocationsPerScene = 6;
    private const int TrainLocationsPerScene = 4;

    private sealed record Scene(double Slope, double LowCut, double HighCut, double ToneLo, double ToneHi, int Harmonics,
        double ToneDb, double ToneChance, double EventRate, double EventLo, double EventHi, double EventMs, double EventDb,
        double AmRate, double AmDepth);

    // Index order = Tau22.SceneLabels. Slope: power spectrum ~ f^-Slope. Tone/event levels in dB relative to the background RMS.
    private static readonly Scene[] Scenes =
    [
        new(1.0, 60, 9000, 400, 1400, 2, -14, 0.5, 2.0, 300, 3000, 120, -2, 0.3, 0.15),     // airport: PA chimes, voices
        new(1.7, 40, 5000, 70, 140, 5, -8, 0.8, 0.8, 200, 2000, 150, -6, 12, 0.25),         // bus: engine harmonics, vibration
        new(1.9, 30, 4000, 50, 120, 4, -10, 0.7, 0.6, 1500, 5000, 250, -4, 3, 0.35),        // metro: rumble, brake squeal
        new(1.3, 50, 7000, 50, 100, 2, -16, 0.6, 1.2, 1500, 5000, 200, -4, 0.5, 0.25),      // metro_station: hum, arriving trains
        new(0.6, 150, 12000, 2500, 6000, 1, -12, 0.4, 3.0, 2000, 7000, 80, -3, 0.2, 0.1),   // park: birds
        new(0.9, 80, 11000, 2000, 5000, 1, -18, 0.3, 3.0, 300, 3500, 150, -4, 0.3, 0.15),   // public_square: voices, some birds
        new(1.0, 70, 9000, 200, 2000, 3, -12, 0.7, 2.0, 400, 4000, 120, -5, 0.2, 0.1),      // shopping_mall: music, voices
        new(1.1, 80, 10000, 300, 900, 1, -22, 0.2, 4.0, 100, 6000, 40, -3, 0.5, 0.2),       // street_pedestrian: steps, voices
        new(1.4, 40, 8000, 350, 500, 2, -18, 0.25, 0.7, 300, 600, 300, -3, 0.25, 0.6),      // street_traffic: passing cars, horns
        new(1.5, 40, 6000, 800, 2500, 2, -12, 0.6, 0.8, 1000, 3500, 300, -5, 1.5, 0.3),     // tram: rumble, wheel squeal
    ];

    private sealed record Device(string Name, double HighPass, double LowPass, (double Hz, double Db, double Octaves)[] Peaks, double GainDb, double NoiseDb);

    private static readonly Device[] Devices =
    [
        new("a", 20, 20000, [], 0, -90),
        new("b", 120, 12000, [(3000, 4, 1.0)], -3, -75),
        new("c", 200, 10000, [(1500, -5, 1.2)], 2, -72),
        new("s1", 80, 14000, [(800, 5, 0.8)], -1, -80),
        new("s2", 300, 9000, [(5000, 6, 0.7)], 1, -70),
        new("s3", 150, 11000, [(400, -6, 1.0)], -4, -78),
        new("s4", 400, 6000, [(2500, 9, 0.6)], 4, -64),
        new("s5", 60, 7000, [(1000, -9, 1.5), (4500, 6, 0.5)], -6, -66),
        new("s6", 500, 15000, [(7000, 9, 0.5), (1200, -5, 0.8)], 3, -60),
    ];

    private sealed record Location(string City, string Id, double ResonanceHz, double ResonanceDb, double Octaves, double Tilt);

    private static readonly Lazy<float[][]> DeviceResponses = new(() => Devices.Select(d => Response(f =>
    {
        double h = Butterworth(f, d.HighPass, 2, true) * Butterworth(f, d.LowPass, 4, false);
        foreach (var (hz, db, octaves) in d.Peaks)
            h *= Peak(f, hz, db, octaves);
        return h * Math.Pow(10, d.GainDb / 20);
    })).ToArray());

    // The magnitude response sampled at the FFT bins k * SampleRate / FftSize, k = 0 .. FftSize / 2.
    private static float[] Response(Func<double, double> response)
    {
        var h = new float[FftSize / 2 + 1];
        for (int k = 0; k < h.Length; k++)
            h[k] = (float)response((double)k * SampleRate / FftSize);
        return h;
    }

    private sealed record ClipPlan(int Scene, Location Location, string Segment, int Subsegment, Device Device, bool Test,
        double Slope, double ToneHz, double AmRate, double LevelDb, ulong Seed)
    {
        public string FileName => $"audio/{Tau22.SceneLabels[Scene]}-{Location.City}-{Location.Id}-{Segment}-{Subsegment}-{Device.Name}.wav";
    }

    /// <summary>
    /// Writes a synthetic dataset of <paramref name="clipsPerClass"/> clips per scene (about 30 % of them in the test
    /// fold) into <paramref name="outDir"/>, which must not already hold a meta.csv.
    /// </summary>
    /// <param name="outDir">The dataset folder to create or fill.</param>
    /// <param name="clipsPerClass">Clips per scene, at least 2.</param>
    /// <param name="seed">Seed of everything random; the same seed gives byte-identical files.</param>
    /// <param name="progress">Receives the number of clips written so far.</param>
    public static SyntheticAscSummary Generate(string outDir, int clipsPerClass = 100, ulong seed = 0, IProgress<int>? progress = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(outDir);
        if (clipsPerClass < 2)
            throw new ArgumentOutOfRangeException(nameof(clipsPerClass), clipsPerClass, "Each scene needs at least 2 clips (one for training, one for testing).");
        string root = Path.GetFullPath(outDir);
        if (File.Exists(Path.Combine(root, "meta.csv")))
            throw new IOException($"'{root}' already holds a dataset (meta.csv exists); choose an empty folder or delete that one first.");
        Directory.CreateDirectory(Path.Combine(root, "audio"));
        Directory.CreateDirectory(Path.Combine(root, "evaluation_setup"));

        var plans = Plan(clipsPerClass, seed);
        var fft = new Fft(FftSize / 2);
        int written = 0;
        Parallel.ForEach(plans, plan =>
        {
            var samples = Synthesize(plan, fft);
            WavFile.Write(Path.Combine(root, plan.FileName), samples, SampleRate, 1, WavSampleFormat.Pcm24);
            progress?.Report(Interlocked.Increment(ref written));
        });

        var meta = new StringBuilder("filename\tscene_label\tidentifier\tsource_label\n");
        var train = new StringBuilder("filename\tscene_label\n");
        var test = new StringBuilder("filename\n");
        var evaluate = new StringBuilder("filename\tscene_label\n");
        foreach (var p in plans)
        {
            string scene = Tau22.SceneLabels[p.Scene];
            meta.Append(CultureInfo.InvariantCulture, $"{p.FileName}\t{scene}\t{p.Location.City}-{p.Location.Id}\t{p.Device.Name}\n");
            if (p.Test)
            {
                test.Append(CultureInfo.InvariantCulture, $"{p.FileName}\n");
                evaluate.Append(CultureInfo.InvariantCulture, $"{p.FileName}\t{scene}\n");
            }
            else
            {
                train.Append(CultureInfo.InvariantCulture, $"{p.FileName}\t{scene}\n");
            }
        }
        File.WriteAllText(Path.Combine(root, "evaluation_setup", "fold1_train.csv"), train.ToString());
        File.WriteAllText(Path.Combine(root, "evaluation_setup", "fold1_test.csv"), test.ToString());
        File.WriteAllText(Path.Combine(root, "evaluation_setup", "fold1_evaluate.csv"), evaluate.ToString());
        int trainCount = plans.Count(p => !p.Test), testCount = plans.Count - trainCount;
        int locations = plans.Select(p => p.Location).Distinct().Count();
        File.WriteAllText(Path.Combine(root, "README.md"), Readme(clipsPerClass, seed, trainCount, testCount, locations));
        // meta.csv last: its presence marks a complete dataset.
        File.WriteAllText(Path.Combine(root, "meta.csv"), meta.ToString());
        return new SyntheticAscSummary(root, trainCount, testCount, locations);
    }

    private static List<ClipPlan> Plan(int clipsPerClass, ulong seed)
    {
        var g = new Generator(seed);
        var plans = new List<ClipPlan>();
        int segmentCounter = 0;
        for (int s = 0; s < Scenes.Length; s++)
        {
            var locations = new Location[LocationsPerScene];
            for (int j = 0; j < LocationsPerScene; j++)
            {
                locations[j] = new Location(Cities[(s + j) % Cities.Length], (1000 + 100 * s + j).ToString(CultureInfo.InvariantCulture),
                    100 * Math.Pow(40, g.NextDouble()), (g.NextDouble() * 2 - 1) * 6, 0.4 + g.NextDouble(), (g.NextDouble() * 2 - 1) * 0.2);
            }
            int testClips = Math.Max(1, (int)Math.Round(0.3 * clipsPerClass));
            foreach (bool isTest in new[] { false, true })
            {
                int remaining = isTest ? testClips : clipsPerClass - testClips;
                while (remaining > 0)
                {
                    int length = Math.Min(remaining, 1 + g.NextInt(10));
                    var location = isTest ? locations[TrainLocationsPerScene + g.NextInt(LocationsPerScene - TrainLocationsPerScene)] : locations[g.NextInt(TrainLocationsPerScene)];
                    Device device = isTest ? Devices[g.NextInt(Devices.Length)] : g.NextDouble() < 0.5 ? Devices[0] : Devices[1 + g.NextInt(5)];
                    var scene = Scenes[s];
                    double slope = scene.Slope + location.Tilt + (g.NextDouble() * 2 - 1) * 0.25;
                    double toneHz = scene.ToneLo * Math.Pow(scene.ToneHi / scene.ToneLo, g.NextDouble());
                    double amRate = scene.AmRate * Math.Pow(2, g.NextDouble() * 2 - 1);
                    double level = -26 + (g.NextDouble() * 2 - 1) * 7;
                    string segment = (10000 + 10 * segmentCounter++).ToString(CultureInfo.InvariantCulture);
                    for (int k = 0; k < length; k++)
                        plans.Add(new ClipPlan(s, location, segment, k, device, isTest, slope, toneHz, amRate, level, g.NextUInt64()));
                    remaining -= length;
                }
            }
        }
        return plans;
    }

    private static double Butterworth(double f, double cutoff, int order, bool highPass)
    {
        double r = highPass ? cutoff / Math.Max(f, 1e-3) : f / cutoff;
        return 1 / Math.Sqrt(1 + Math.Pow(r, 2 * order));
    }

    private static double Peak(double f, double hz, double db, double octaves)
    {
        double d = Math.Log2(Math.Max(f, 1) / hz) / octaves;
        return Math.Pow(10, db / 20 * Math.Exp(-0.5 * d * d));
    }

    // Filters x (zero-padded to the FFT size) by the real, zero-phase magnitude response h (see Response).
    private static void Shape(float[] x, Fft fft, float[] h)
    {
        var re = new float[FftSize / 2 + 1];
        var im = new float[FftSize / 2 + 1];
        fft.ForwardReal(x, re, im);
        for (int k = 0; k <= FftSize / 2; k++)
        {
            re[k] *= h[k];
            im[k] *= h[k];
        }
        fft.InverseReal(re, im, x);
    }

    private static float[] Synthesize(ClipPlan plan, Fft fft)
    {
        var g = new Generator(plan.Seed);
        var scene = Scenes[plan.Scene];
        var loc = plan.Location;
        int n = SampleRate;

        // Background: white noise shaped by the scene's colour and band, the location's resonance.
        var buffer = new float[FftSize];
        for (int i = 0; i < FftSize; i++)
            buffer[i] = (float)g.NextNormal();
        double slope = plan.Slope;
        Shape(buffer, fft, Response(f => Math.Pow(Math.Max(f, 20) / 1000, -slope / 2) * Butterworth(f, scene.LowCut, 2, true) *
            Butterworth(f, scene.HighCut, 2, false) * Peak(f, loc.ResonanceHz, loc.ResonanceDb, loc.Octaves)));
        var mix = new double[n];
        double rms = Math.Sqrt(buffer.Take(n).Sum(v => (double)v * v) / n) + 1e-12;
        double amPhase = g.NextDouble() * 2 * Math.PI, depth = scene.AmDepth * (0.5 + g.NextDouble());
        for (int t = 0; t < n; t++)
            mix[t] = buffer[t] / rms * (1 + Math.Min(depth, 0.95) * Math.Sin(2 * Math.PI * plan.AmRate * t / n + amPhase));

        // Tonal components: a harmonic series around the segment's fundamental, with slow vibrato.
        if (g.NextDouble() < scene.ToneChance)
        {
            double amp = Math.Pow(10, (scene.ToneDb + (g.NextDouble() * 2 - 1) * 6) / 20) * Math.Sqrt(2);
            double f0 = plan.ToneHz * (1 + (g.NextDouble() * 2 - 1) * 0.03);
            double vibrato = g.NextDouble() * 0.01, vibratoRate = 0.5 + 4 * g.NextDouble();
            int harmonics = Math.Min(scene.Harmonics, (int)((SampleRate / 2.0 - 1) / f0));
            var offsets = new double[harmonics];
            for (int h = 0; h < harmonics; h++)
                offsets[h] = g.NextDouble() * 2 * Math.PI;
            double phase = 0;
            for (int t = 0; t < n; t++)
            {
                phase += 2 * Math.PI * f0 * (1 + vibrato * Math.Sin(2 * Math.PI * vibratoRate * t / SampleRate)) / SampleRate;
                double sum = 0;
                for (int h = 0; h < harmonics; h++)
                    sum += Math.Sin((h + 1) * phase + offsets[h]) / (h + 1);
                mix[t] += amp * sum;
            }
        }

        // Events: Poisson-many short chirps with a Hann envelope, frequencies inside the scene's event band.
        int events = Poisson(g, scene.EventRate);
        for (int e = 0; e < events; e++)
        {
            int length = (int)(scene.EventMs / 1000 * SampleRate * (0.5 + g.NextDouble()));
            int start = g.NextInt(n);
            double f1 = scene.EventLo * Math.Pow(scene.EventHi / scene.EventLo, g.NextDouble());
            double f2 = f1 * Math.Pow(2, (g.NextDouble() * 2 - 1) * 0.8);
            double amp = Math.Pow(10, (scene.EventDb + (g.NextDouble() * 2 - 1) * 6) / 20) * 2;
            double noisy = g.NextDouble();
            double phase = 0;
            for (int i = 0; i < length && start + i < n; i++)
            {
                double env = 0.5 - 0.5 * Math.Cos(2 * Math.PI * i / Math.Max(length - 1, 1));
                double f = f1 + (f2 - f1) * i / length;
                phase += 2 * Math.PI * f / SampleRate;
                mix[start + i] += amp * env * ((1 - noisy) * Math.Sin(phase) + noisy * g.NextNormal() * 0.7);
            }
        }

        // Level, then the device: response, gain and noise floor.
        double mixRms = Math.Sqrt(mix.Sum(v => v * v) / n) + 1e-12;
        double scale = Math.Pow(10, plan.LevelDb / 20) / mixRms;
        Array.Clear(buffer);
        for (int t = 0; t < n; t++)
            buffer[t] = (float)(mix[t] * scale);
        Shape(buffer, fft, DeviceResponses.Value[Array.IndexOf(Devices, plan.Device)]);
        var samples = new float[n];
        double noise = Math.Pow(10, plan.Device.NoiseDb / 20);
        for (int t = 0; t < n; t++)
            samples[t] = (float)Math.Clamp(buffer[t] + noise * g.NextNormal(), -1.0, 1.0 - 1.0 / 8388608);
        return samples;
    }

    private static int Poisson(Generator g, double mean)
    {
        double limit = Math.Exp(-mean), p = g.NextDouble();
        int k = 0;
        while (p > limit)
        {
            p *= g.NextDouble();
            k++;
        }
        return k;
    }

    private static string Readme(int clipsPerClass, ulong seed, int train, int test, int locations) => $"""
        # Synthetic TAU Urban Acoustic Scenes 2022 Mobile (NOT real recordings)

        This folder was generated by NeuralCore (`neuralcore make-synthetic-asc --clips-per-class {clipsPerClass} --seed {seed}`,
        `NeuralCore.Data.SyntheticAsc.Generate`). Every clip is **synthetic**: coloured noise, tones and short events mixed
        by hand-written per-scene recipes and filtered by simulated device responses. It only mimics the *layout* of the
        real dataset (DCASE 2023 Task 1) so the pipeline can be tested and demonstrated without downloading it. Results on
        this data say nothing about real acoustic scene classification; never report them as TAU22 results.

        - `meta.csv`: `filename  scene_label  identifier  source_label` (tab-separated)
        - `audio/[scene]-[city]-[location]-[segment]-[subsegment]-[device].wav`: 1 s, 44.1 kHz, 24-bit PCM, mono
        - `evaluation_setup/fold1_train.csv` ({train} clips), `fold1_test.csv` and `fold1_evaluate.csv` ({test} clips)
        - 10 scenes, 6 cities, {locations} locations (train and test locations are disjoint)
        - devices a, b, c, s1-s6; s4-s6 appear only in the test fold

        The real dataset: TAU Urban Acoustic Scenes 2022 Mobile, Tampere University (Heittola, Mesaros, Virtanen).
        """;
}
