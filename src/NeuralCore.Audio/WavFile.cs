using System.Buffers.Binary;

namespace NeuralCore.Audio;

/// <summary>
/// Reads and writes RIFF/WAVE files: integer PCM (8, 16, 24, 32 bit), IEEE float (32, 64 bit), plain or
/// WAVE_FORMAT_EXTENSIBLE headers, any channel count and sample rate.
/// </summary>
/// <remarks>
/// Integers map to floats by dividing by 2^(bits-1) (8-bit: (b - 128) / 128), so 16- and 24-bit values round-trip
/// exactly; writing rounds to the nearest integer and clips to the representable range. Unknown chunks (LIST, fact,
/// cue, ...) are skipped. A file whose data ends before its headers say it does is rejected as truncated.
/// </remarks>
public static class WavFile
{
    private const ushort FormatPcm = 1;
    private const ushort FormatFloat = 3;
    private const ushort FormatExtensible = 0xFFFE;

    // The tail of the KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT GUIDs after their first two bytes (the format tag).
    private static readonly byte[] SubFormatTail = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71];

    /// <summary>Decodes the WAV file at <paramref name="path"/>.</summary>
    /// <exception cref="WavFormatException">The file is not a WAV file, is truncated, or stores an unsupported format.</exception>
    public static WavAudio Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            throw new FileNotFoundException($"The WAV file '{path}' does not exist.", path);
        }
        return Decode(bytes, path);
    }

    /// <summary>Decodes the WAV file at <paramref name="path"/> and down-mixes it to mono.</summary>
    /// <param name="path">The file.</param>
    /// <param name="sampleRate">The file's sample rate.</param>
    /// <exception cref="WavFormatException">The file is not a WAV file, is truncated, or stores an unsupported format.</exception>
    public static float[] ReadMono(string path, out int sampleRate)
    {
        var audio = Read(path);
        sampleRate = audio.SampleRate;
        return audio.ToMono();
    }

    /// <summary>Decodes a complete WAV file held in <paramref name="bytes"/>; <paramref name="name"/> names it in errors.</summary>
    /// <exception cref="WavFormatException">The bytes are not a WAV file, are truncated, or store an unsupported format.</exception>
    public static WavAudio Decode(ReadOnlySpan<byte> bytes, string name)
    {
        if (bytes.Length < 12)
            throw new WavFormatException(name, $"the file is {bytes.Length} bytes long, too short for a RIFF header (12 bytes).");
        if (!bytes[..4].SequenceEqual("RIFF"u8))
            throw new WavFormatException(name, $"it does not start with 'RIFF' (found {Describe(bytes[..4])}); it is not a WAV file.");
        if (!bytes.Slice(8, 4).SequenceEqual("WAVE"u8))
            throw new WavFormatException(name, $"the RIFF form type is {Describe(bytes.Slice(8, 4))}, expected 'WAVE'.");
        uint riffSize = BinaryPrimitives.ReadUInt32LittleEndian(bytes[4..]);
        if (riffSize != uint.MaxValue && 8L + riffSize > bytes.Length)
            throw new WavFormatException(name, $"the file is truncated: the RIFF header declares {8L + riffSize} bytes but the file has {bytes.Length}.");

        Format? format = null;
        int position = 12;
        while (position + 8 <= bytes.Length)
        {
            var id = bytes.Slice(position, 4);
            uint size = BinaryPrimitives.ReadUInt32LittleEndian(bytes[(position + 4)..]);
            int body = position + 8;
            if (id.SequenceEqual("fmt "u8))
            {
                if (body + (long)size > bytes.Length)
                    throw new WavFormatException(name, $"the file is truncated inside the 'fmt ' chunk ({size} bytes declared, {bytes.Length - body} present).");
                format = ParseFormat(bytes.Slice(body, (int)size), name);
            }
            else if (id.SequenceEqual("data"u8))
            {
                if (format is null)
                    throw new WavFormatException(name, "the 'data' chunk comes before any 'fmt ' chunk, so the sample format is unknown.");
                if (body + (long)size > bytes.Length)
                    throw new WavFormatException(name, $"the file is truncated: the 'data' chunk declares {size} bytes but only {bytes.Length - body} remain.");
                var f = format.Value;
                if (size % f.BlockAlign != 0)
                    throw new WavFormatException(name, $"the 'data' chunk holds {size} bytes, not a whole number of {f.BlockAlign}-byte frames ({f.Channels} channels x {f.SampleFormat.BitsPerSample()} bits); the file is truncated or corrupt.");
                var samples = DecodeSamples(bytes.Slice(body, (int)size), f.SampleFormat);
                return new WavAudio(samples, f.SampleRate, f.Channels, f.SampleFormat);
            }
            // Chunks are word-aligned: an odd-sized chunk is followed by one pad byte.
            long next = body + (long)size + (size & 1);
            if (next > int.MaxValue)
                break;
            position = (int)next;
        }
        throw new WavFormatException(name, format is null ? "it has no 'fmt ' chunk." : "it has no 'data' chunk (the file may be truncated).");
    }

    private readonly record struct Format(WavSampleFormat SampleFormat, int Channels, int SampleRate, int BlockAlign);

    private static Format ParseFormat(ReadOnlySpan<byte> chunk, string name)
    {
        if (chunk.Length < 16)
            throw new WavFormatException(name, $"the 'fmt ' chunk is {chunk.Length} bytes, expected at least 16.");
        ushort tag = BinaryPrimitives.ReadUInt16LittleEndian(chunk);
        int channels = BinaryPrimitives.ReadUInt16LittleEndian(chunk[2..]);
        uint sampleRate = BinaryPrimitives.ReadUInt32LittleEndian(chunk[4..]);
        int blockAlign = BinaryPrimitives.ReadUInt16LittleEndian(chunk[12..]);
        int bits = BinaryPrimitives.ReadUInt16LittleEndian(chunk[14..]);
        if (tag == FormatExtensible)
        {
            if (chunk.Length < 40)
                throw new WavFormatException(name, $"the WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk is {chunk.Length} bytes, expected 40.");
            var subFormat = chunk.Slice(24, 16);
            if (!subFormat[2..].SequenceEqual(SubFormatTail))
                throw new WavFormatException(name, "the WAVE_FORMAT_EXTENSIBLE sub-format GUID is neither PCM nor IEEE float.");
            tag = BinaryPrimitives.ReadUInt16LittleEndian(subFormat);
        }
        if (channels == 0)
            throw new WavFormatException(name, "the 'fmt ' chunk declares 0 channels.");
        if (sampleRate == 0 || sampleRate > int.MaxValue)
            throw new WavFormatException(name, $"the 'fmt ' chunk declares an invalid sample rate of {sampleRate} Hz.");
        WavSampleFormat format = (tag, bits) switch
        {
            (FormatPcm, 8) => WavSampleFormat.Pcm8,
            (FormatPcm, 16) => WavSampleFormat.Pcm16,
            (FormatPcm, 24) => WavSampleFormat.Pcm24,
            (FormatPcm, 32) => WavSampleFormat.Pcm32,
            (FormatFloat, 32) => WavSampleFormat.Float32,
            (FormatFloat, 64) => WavSampleFormat.Float64,
            (FormatPcm, _) => throw new WavFormatException(name, $"{bits}-bit integer PCM is not supported (supported: 8, 16, 24, 32)."),
            (FormatFloat, _) => throw new WavFormatException(name, $"{bits}-bit IEEE float is not supported (supported: 32, 64)."),
            _ => throw new WavFormatException(name, $"format tag 0x{tag:X4} is not supported (supported: PCM 0x0001, IEEE float 0x0003, WAVE_FORMAT_EXTENSIBLE of either); convert the file, e.g. with 'sox in.wav -e signed -b 24 out.wav'."),
        };
        int expectedAlign = channels * bits / 8;
        if (blockAlign != expectedAlign)
            throw new WavFormatException(name, $"the 'fmt ' chunk declares a block alignment of {blockAlign} bytes, expected {expectedAlign} for {channels} channels of {bits} bits.");
        return new Format(format, channels, (int)sampleRate, blockAlign);
    }

    private static float[] DecodeSamples(ReadOnlySpan<byte> data, WavSampleFormat format)
    {
        int bytesPerSample = format.BitsPerSample() / 8;
        var samples = new float[data.Length / bytesPerSample];
        switch (format)
        {
            case WavSampleFormat.Pcm8:
                for (int i = 0; i < samples.Length; i++)
                    samples[i] = (data[i] - 128) * (1f / 128);
                break;
            case WavSampleFormat.Pcm16:
                for (int i = 0; i < samples.Length; i++)
                    samples[i] = BinaryPrimitives.ReadInt16LittleEndian(data[(2 * i)..]) * (1f / 32768);
                break;
            case WavSampleFormat.Pcm24:
                for (int i = 0, o = 0; i < samples.Length; i++, o += 3)
                {
                    // Sign-extend by placing the three bytes in the top of an int and shifting back.
                    int v = (data[o] << 8 | data[o + 1] << 16 | data[o + 2] << 24) >> 8;
                    samples[i] = v * (1f / 8388608);
                }
                break;
            case WavSampleFormat.Pcm32:
                for (int i = 0; i < samples.Length; i++)
                    samples[i] = (float)(BinaryPrimitives.ReadInt32LittleEndian(data[(4 * i)..]) * (1.0 / 2147483648.0));
                break;
            case WavSampleFormat.Float32:
                for (int i = 0; i < samples.Length; i++)
                    samples[i] = BinaryPrimitives.ReadSingleLittleEndian(data[(4 * i)..]);
                break;
            case WavSampleFormat.Float64:
                for (int i = 0; i < samples.Length; i++)
                    samples[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(data[(8 * i)..]);
                break;
        }
        return samples;
    }

    /// <summary>
    /// Writes interleaved <paramref name="samples"/> as a WAV file at <paramref name="path"/> (replacing it), in
    /// <paramref name="format"/>; <paramref name="extensible"/> writes a WAVE_FORMAT_EXTENSIBLE header (what
    /// most tools write for more than 2 channels or more than 16 bits).
    /// </summary>
    public static void Write(string path, ReadOnlySpan<float> samples, int sampleRate, int channels = 1,
        WavSampleFormat format = WavSampleFormat.Pcm16, bool extensible = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var bytes = Encode(samples, sampleRate, channels, format, extensible);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>Encodes interleaved <paramref name="samples"/> as the bytes of a WAV file (see <see cref="Write"/>).</summary>
    public static byte[] Encode(ReadOnlySpan<float> samples, int sampleRate, int channels = 1,
        WavSampleFormat format = WavSampleFormat.Pcm16, bool extensible = false)
    {
        if (sampleRate <= 0)
            throw new ArgumentOutOfRangeException(nameof(sampleRate), sampleRate, "The sample rate must be positive.");
        if (channels <= 0 || channels > ushort.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(channels), channels, "The channel count must be between 1 and 65535.");
        if (samples.Length % channels != 0)
            throw new ArgumentException($"{samples.Length} interleaved samples do not split into frames of {channels} channels.", nameof(samples));
        int bits = format.BitsPerSample();
        int bytesPerSample = bits / 8;
        long dataSize = (long)samples.Length * bytesPerSample;
        int fmtSize = extensible ? 40 : format.IsFloat() ? 18 : 16;
        long total = 12 + 8 + fmtSize + 8 + dataSize + (dataSize & 1);
        if (total > uint.MaxValue)
            throw new ArgumentException($"{samples.Length} samples of {bits} bits exceed the 4 GiB limit of a WAV file.", nameof(samples));
        var bytes = new byte[total];
        var span = bytes.AsSpan();
        "RIFF"u8.CopyTo(span);
        BinaryPrimitives.WriteUInt32LittleEndian(span[4..], (uint)(total - 8));
        "WAVE"u8.CopyTo(span[8..]);
        "fmt "u8.CopyTo(span[12..]);
        BinaryPrimitives.WriteUInt32LittleEndian(span[16..], (uint)fmtSize);
        ushort tag = format.IsFloat() ? FormatFloat : FormatPcm;
        var fmt = span.Slice(20, fmtSize);
        BinaryPrimitives.WriteUInt16LittleEndian(fmt, extensible ? FormatExtensible : tag);
        BinaryPrimitives.WriteUInt16LittleEndian(fmt[2..], (ushort)channels);
        BinaryPrimitives.WriteUInt32LittleEndian(fmt[4..], (uint)sampleRate);
        BinaryPrimitives.WriteUInt32LittleEndian(fmt[8..], (uint)(sampleRate * channels * bytesPerSample));
        BinaryPrimitives.WriteUInt16LittleEndian(fmt[12..], (ushort)(channels * bytesPerSample));
        BinaryPrimitives.WriteUInt16LittleEndian(fmt[14..], (ushort)bits);
        if (fmtSize > 16)
            BinaryPrimitives.WriteUInt16LittleEndian(fmt[16..], (ushort)(fmtSize - 18));
        if (extensible)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(fmt[18..], (ushort)bits);
            BinaryPrimitives.WriteUInt32LittleEndian(fmt[20..], 0);
            BinaryPrimitives.WriteUInt16LittleEndian(fmt[24..], tag);
            SubFormatTail.CopyTo(fmt[26..]);
        }
        int dataStart = 20 + fmtSize;
        "data"u8.CopyTo(span[dataStart..]);
        BinaryPrimitives.WriteUInt32LittleEndian(span[(dataStart + 4)..], (uint)dataSize);
        EncodeSamples(samples, format, span.Slice(dataStart + 8, (int)dataSize));
        return bytes;
    }

    private static void EncodeSamples(ReadOnlySpan<float> samples, WavSampleFormat format, Span<byte> data)
    {
        switch (format)
        {
            case WavSampleFormat.Pcm8:
                for (int i = 0; i < samples.Length; i++)
                    data[i] = (byte)(Quantize(samples[i], 128) + 128);
                break;
            case WavSampleFormat.Pcm16:
                for (int i = 0; i < samples.Length; i++)
                    BinaryPrimitives.WriteInt16LittleEndian(data[(2 * i)..], (short)Quantize(samples[i], 32768));
                break;
            case WavSampleFormat.Pcm24:
                for (int i = 0, o = 0; i < samples.Length; i++, o += 3)
                {
                    int v = (int)Quantize(samples[i], 8388608);
                    data[o] = (byte)v;
                    data[o + 1] = (byte)(v >> 8);
                    data[o + 2] = (byte)(v >> 16);
                }
                break;
            case WavSampleFormat.Pcm32:
                for (int i = 0; i < samples.Length; i++)
                    BinaryPrimitives.WriteInt32LittleEndian(data[(4 * i)..], (int)Quantize(samples[i], 2147483648.0));
                break;
            case WavSampleFormat.Float32:
                for (int i = 0; i < samples.Length; i++)
                    BinaryPrimitives.WriteSingleLittleEndian(data[(4 * i)..], samples[i]);
                break;
            case WavSampleFormat.Float64:
                for (int i = 0; i < samples.Length; i++)
                    BinaryPrimitives.WriteDoubleLittleEndian(data[(8 * i)..], samples[i]);
                break;
        }
    }

    // Rounds x * scale to the nearest integer in [-scale, scale - 1].
    private static long Quantize(float x, double scale)
    {
        double v = Math.Round(x * scale, MidpointRounding.ToEven);
        if (double.IsNaN(v))
            return 0;
        return (long)Math.Clamp(v, -scale, scale - 1);
    }

    private static string Describe(ReadOnlySpan<byte> tag)
    {
        foreach (byte b in tag)
            if (b < 0x20 || b > 0x7E)
                return "0x" + Convert.ToHexString(tag);
        return "'" + System.Text.Encoding.ASCII.GetString(tag) + "'";
    }
}
