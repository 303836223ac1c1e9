using System.Buffers.Binary;

namespace NeuralCore.Audio.Tests;

public sealed class WavFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("nc-wav-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // Values exactly representable in every integer format: multiples of 1/128 in [-1, 1).
    private static float[] Representable(int count, ulong seed)
    {
        var g = new Generator(seed);
        return Enumerable.Range(0, count).Select(_ => (g.NextInt(256) - 128) / 128f).ToArray();
    }

    public static TheoryData<WavSampleFormat, int, bool> Formats()
    {
        var data = new TheoryData<WavSampleFormat, int, bool>();
        foreach (var f in Enum.GetValues<WavSampleFormat>())
            foreach (int channels in new[] { 1, 2, 6 })
                foreach (bool ext in new[] { false, true })
                    data.Add(f, channels, ext);
        return data;
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void EveryFormatRoundTripsExactly(WavSampleFormat format, int channels, bool extensible)
    {
        var samples = Representable(channels * 301, (ulong)(channels * 10 + (int)format));
        string path = Path.Combine(_dir, $"{format}-{channels}-{extensible}.wav");
        WavFile.Write(path, samples, 22050, channels, format, extensible);
        var audio = WavFile.Read(path);
        Assert.Equal(22050, audio.SampleRate);
        Assert.Equal(channels, audio.Channels);
        Assert.Equal(format, audio.Format);
        Assert.Equal(301, audio.Frames);
        Assert.Equal(samples, audio.Samples);
    }

    [Theory]
    [InlineData(WavSampleFormat.Pcm16, 1.0 / 32768)]
    [InlineData(WavSampleFormat.Pcm24, 1.0 / 8388608)]
    [InlineData(WavSampleFormat.Pcm32, 1e-7)]
    [InlineData(WavSampleFormat.Float32, 0)]
    [InlineData(WavSampleFormat.Float64, 0)]
    public void ArbitraryValuesRoundTripWithinHalfAQuantisationStep(WavSampleFormat format, double step)
    {
        var g = new Generator(5);
        var samples = Enumerable.Range(0, 1000).Select(_ => (float)(g.NextDouble() * 1.8 - 0.9)).ToArray();
        var audio = WavFile.Decode(WavFile.Encode(samples, 44100, 1, format), "memory");
        for (int i = 0; i < samples.Length; i++)
            Assert.True(Math.Abs(samples[i] - audio.Samples[i]) <= step / 2 + 1e-9, $"sample {i}: {samples[i]} vs {audio.Samples[i]}");
    }

    [Fact]
    public void OutOfRangeValuesClipInsteadOfWrapping()
    {
        var audio = WavFile.Decode(WavFile.Encode([1.5f, -2f, 1f], 8000, 1, WavSampleFormat.Pcm16), "memory");
        Assert.Equal([32767 / 32768f, -1f, 32767 / 32768f], audio.Samples);
    }

    [Fact]
    public void Pcm24StoresThreeLittleEndianBytes()
    {
        var bytes = WavFile.Encode([-1f / 8388608, 0.5f], 44100, 1, WavSampleFormat.Pcm24);
        var data = bytes.AsSpan(bytes.Length - 6);
        Assert.Equal(new byte[] { 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x40 }, data.ToArray());
    }

    [Fact]
    public void MultiChannelDownMixesToTheChannelMean()
    {
        float[] interleaved = [0.5f, -0.5f, 0.25f, 1f, 0f, 0.5f];
        var audio = WavFile.Decode(WavFile.Encode(interleaved, 48000, 3, WavSampleFormat.Float32), "memory");
        Assert.Equal([0.25f / 3, 1.5f / 3], audio.ToMono());
    }

    [Fact]
    public void UnknownChunksAndOddPaddingAreSkipped()
    {
        var wav = WavFile.Encode([0.25f, -0.25f], 16000, 1, WavSampleFormat.Pcm16);
        // Insert an odd-sized LIST chunk (5 bytes + 1 pad byte) between 'fmt ' and 'data'.
        int dataAt = IndexOf(wav, "data"u8);
        var list = new byte[] { (byte)'L', (byte)'I', (byte)'S', (byte)'T', 5, 0, 0, 0, 1, 2, 3, 4, 5, 0 };
        var patched = wav[..dataAt].Concat(list).Concat(wav[dataAt..]).ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(patched.AsSpan(4), (uint)(patched.Length - 8));
        var audio = WavFile.Decode(patched, "memory");
        Assert.Equal([0.25f, -0.25f], audio.Samples);
    }

    private static int IndexOf(byte[] bytes, ReadOnlySpan<byte> tag) => bytes.AsSpan().IndexOf(tag);

    public static TheoryData<string, string> Malformed() => new()
    {
        { "not-riff", "not a WAV file" },
        { "not-wave", "expected 'WAVE'" },
        { "too-short", "too short" },
        { "truncated-data", "truncated" },
        { "partial-frame", "whole number" },
        { "no-fmt", "no 'fmt ' chunk" },
        { "data-before-fmt", "before any 'fmt '" },
        { "no-data", "no 'data' chunk" },
        { "bad-tag", "format tag 0x0002" },
        { "bad-bits", "12-bit integer PCM" },
        { "bad-align", "block alignment" },
        { "zero-channels", "0 channels" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void MalformedFilesAreRejectedWithPathAndReason(string kind, string reason)
    {
        byte[] good = WavFile.Encode(Representable(200, 1), 44100, 2, WavSampleFormat.Pcm16);
        int fmt = IndexOf(good, "fmt "u8) + 8;
        int data = IndexOf(good, "data"u8);
        byte[] bad = (byte[])good.Clone();
        switch (kind)
        {
            case "not-riff": "RIFX"u8.CopyTo(bad); break;
            case "not-wave": "AVI "u8.CopyTo(bad.AsSpan(8)); break;
            case "too-short": bad = good[..10]; break;
            case "truncated-data":
                bad = good[..(good.Length - 100)];
                BinaryPrimitives.WriteUInt32LittleEndian(bad.AsSpan(4), (uint)(bad.Length - 8));
                break;
            case "partial-frame":
                BinaryPrimitives.WriteUInt32LittleEndian(bad.AsSpan(data + 4), 398);
                break;
            case "no-fmt":
                bad = good[..data];
                "junk"u8.CopyTo(bad.AsSpan(fmt - 8));
                BinaryPrimitives.WriteUInt32LittleEndian(bad.AsSpan(4), (uint)(bad.Length - 8));
                break;
            case "data-before-fmt":
            {
                // Rebuild as RIFF/WAVE + data + fmt.
                var fmtChunk = good[(fmt - 8)..data];
                var dataChunk = good[data..];
                bad = good[..12].Concat(dataChunk).Concat(fmtChunk).ToArray();
                break;
            }
            case "no-data":
                bad = good[..data];
                BinaryPrimitives.WriteUInt32LittleEndian(bad.AsSpan(4), (uint)(bad.Length - 8));
                break;
            case "bad-tag": BinaryPrimitives.WriteUInt16LittleEndian(bad.AsSpan(fmt), 2); break;
            case "bad-bits": BinaryPrimitives.WriteUInt16LittleEndian(bad.AsSpan(fmt + 14), 12); break;
            case "bad-align": BinaryPrimitives.WriteUInt16LittleEndian(bad.AsSpan(fmt + 12), 3); break;
            case "zero-channels": BinaryPrimitives.WriteUInt16LittleEndian(bad.AsSpan(fmt + 2), 0); break;
        }
        string path = Path.Combine(_dir, kind + ".wav");
        File.WriteAllBytes(path, bad);
        var e = Assert.Throws<WavFormatException>(() => WavFile.Read(path));
        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
        Assert.Contains(reason, e.Reason);
    }

    [Fact]
    public void AMissingFileNamesThePath()
    {
        string path = Path.Combine(_dir, "missing.wav");
        var e = Assert.Throws<FileNotFoundException>(() => WavFile.Read(path));
        Assert.Contains(path, e.Message);
    }
}
