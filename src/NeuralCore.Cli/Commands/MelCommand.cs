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
        var defaults = new MelConfig();
        var sampleRate = new Option<int>("--sample-rate") { Description = "Rate the audio is resampled to first.", DefaultValueFactory = _ => defaults.SampleRate };
        var nFft = new Option<int>("--n-fft") { Description = "FFT size (a power of two).", DefaultValueFactory = _ => defaults.NFft };
        var winLength = new Option<int>("--win-length") { Description = "Hann window length, zero-padded to --n-fft.", DefaultValueFactory = _ => defaults.WinLength };
        var hop = new Option<int>("--hop-length") { Description = "Hop between frames in samples.", DefaultValueFactory = _ => defaults.HopLength };
        var mels = new Option<int>("--n-mels") { Description = "Number of Kaldi mel bins.", DefaultValueFactory = _ => defaults.NMels };
        var fMin = new Option<double>("--fmin") { Description = "Lowest mel edge in Hz.", DefaultValueFactory = _ => defaults.FMin };
        var fMax = new Option<double>("--fmax") { Description = "Highest mel edge in Hz.", DefaultValueFactory = _ => defaults.FMax };
        var config = new Option<string?>("--config") { Description = "A front-end configuration as JSON (as stored in checkpoints); replaces the other front-end options." };
        var command = new Command("mel",
            "Write the log-mel spectrogram of a WAV file (the seed's front end: pre-emphasis, STFT, power, Kaldi mel bank, " +
            "log(x + 1e-5), (x + 4.5) / 5) as a float32 .npy of shape [mels, frames]. A 1 s clip gives 128 x 100.")
        {
            input, output, sampleRate, nFft, winLength, hop, mels, fMin, fMax, config,
        };
        command.SetAction(parse =>
        {
            string? json = parse.GetValue(config);
            MelConfig mel;
            try
            {
                mel = json is not null ? MelConfig.FromJson(json) : new MelConfig
                {
                    SampleRate = parse.GetValue(sampleRate),
                    NFft = parse.GetValue(nFft),
                    WinLength = parse.GetValue(winLength),
                    HopLength = parse.GetValue(hop),
                    NMels = parse.GetValue(mels),
                    FMin = parse.GetValue(fMin),
                    FMax = parse.GetValue(fMax),
                };
                mel.Validate();
            }
            catch (Exception e) when (e is ArgumentException or FormatException)
            {
                throw new CliException(e.Message, Program.UsageError);
            }
            string path = parse.GetValue(input)!;
            var waveform = WavFile.ReadMono(path, out int rate);
            waveform = Resampler.Resample(waveform, rate, mel.SampleRate);
            var spectrogram = new MelSpectrogram(mel);
            if (waveform.Length - 1 <= mel.NFft / 2)
                throw new CliException($"'{path}' holds {waveform.Length} samples at {mel.SampleRate} Hz; the front end needs more than {mel.NFft / 2 + 1}.");
            var values = spectrogram.Compute(waveform);
            int frames = values.Length / mel.NMels;
            string outPath = parse.GetValue(output)!;
            Npy.Write(outPath, TensorIO.ToRaw(Tensor.Wrap(values, mel.NMels, frames)));
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{path}: {rate} Hz -> {mel.SampleRate} Hz, {mel.NMels} x {frames} log-mel ({mel.Describe()}) written to {outPath}"));
            return Program.Success;
        });
        return command;
    }
}
