using System.CommandLine;
using System.Globalization;
using NeuralCore.Audio;
using NeuralCore.IO;

namespace NeuralCore.Cli.Commands;

/// <summary><c>neuralcore mel</c>: writes the log-mel spectrogram of a WAV file as a float32 .npy [mels, frames].</summary>
internal static class MelCommand
{
    public static Command Create(CliConsole console)
    {
        var input = new Argument<string>("input") { Description = "The WAV file (PCM 8/16/24/32-bit or float 32/64, any rate and channel count)." };
        var output = new Option<string>("--out", "-o") { Description = "Where to write the spectrogram (.npy, float32, mels x frames).", Required = true };
        var mel = new MelOptionSet("--config", "--mel-config");
        var command = new Command("mel",
            "Write the log-mel spectrogram of a WAV file (the seed's front end: pre-emphasis, STFT, power, Kaldi mel bank, " +
            "log(x + 1e-5), (x + 4.5) / 5) as a float32 .npy of shape [mels, frames]. A 1 s clip gives 128 x 100.")
        {
            input, output,
        };
        foreach (var option in mel.All) command.Add(option);
        command.SetAction(parse =>
        {
            var config = mel.Read(parse);
            string path = parse.GetValue(input)!;
            if (!File.Exists(path))
                throw new CliException($"{path} does not exist. Pass a WAV file (PCM 8/16/24/32-bit or float 32/64, any rate and channel count).");
            var waveform = WavFile.ReadMono(path, out int rate);
            waveform = Resampler.Resample(waveform, rate, config.SampleRate);
            var spectrogram = new MelSpectrogram(config);
            if (waveform.Length - 1 <= config.NFft / 2)
                throw new CliException($"'{path}' holds {waveform.Length} samples at {config.SampleRate} Hz; the front end needs more than {config.NFft / 2 + 1}.");
            var values = spectrogram.Compute(waveform);
            int frames = values.Length / config.NMels;
            string outPath = parse.GetValue(output)!;
            string? folder = Path.GetDirectoryName(Path.GetFullPath(outPath));
            if (folder is not null && !Directory.Exists(folder))
                throw new CliException($"--out {outPath}: the folder {folder} does not exist; create it first or choose another path.");
            Npy.Write(outPath, TensorIO.ToRaw(Tensor.Wrap(values, config.NMels, frames)));
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{path}: {rate} Hz -> {config.SampleRate} Hz, {config.NMels} x {frames} log-mel ({config.Describe()}) written to {outPath}"));
            return Program.Success;
        });
        return command;
    }
}
