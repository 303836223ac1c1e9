namespace NeuralCore.Backends.Cpu;

/// <summary>
/// What the kernels size their work for, read once from Linux's description of core 0's caches
/// (/sys/devices/system/cpu/cpu0/cache/index*), with a fallback where it cannot be read.
/// </summary>
internal static class CpuCaches
{
    private const string Root = "/sys/devices/system/cpu/cpu0/cache";

    /// <summary>One core's L2 in bytes (the unified level-2 entry), or 1 MiB.</summary>
    internal static long LevelTwoBytes() => Bytes(2, 1L << 20);

    /// <summary>One core's L1 data cache in bytes (48 KiB on the Xeon hosts, 32 KiB on Zen 4), or 48 KiB.</summary>
    internal static long LevelOneBytes() => Bytes(1, 48L << 10);

    /// <summary>The size of the data (or unified) cache at <paramref name="level"/> in bytes, or <paramref name="fallback"/>.</summary>
    private static long Bytes(int level, long fallback)
    {
        string? size = Read(level, "size");
        if (size is null) return fallback;
        long scale = size.EndsWith('K') ? 1L << 10 : size.EndsWith('M') ? 1L << 20 : 1;
        return long.TryParse(size.TrimEnd('K', 'M'), out long value) && value > 0 ? value * scale : fallback;
    }

    /// <summary>The ways of one core's L1 data cache (12 on the Xeon hosts, 8 on Zen 4), or 8.</summary>
    internal static int LevelOneWays()
    {
        const int fallback = 8;
        return int.TryParse(Read(1, "ways_of_associativity"), out int ways) && ways > 0 ? ways : fallback;
    }

    /// <summary>The file <paramref name="name"/> of the data (or unified) cache at <paramref name="level"/>, trimmed; null where there is none.</summary>
    private static string? Read(int level, string name)
    {
        try
        {
            var root = new DirectoryInfo(Root);
            if (!root.Exists) return null;
            foreach (var index in root.EnumerateDirectories("index*"))
            {
                string Entry(string file) => File.ReadAllText(Path.Combine(index.FullName, file)).Trim();
                if (Entry("level") != level.ToString(System.Globalization.CultureInfo.InvariantCulture) || Entry("type") is not ("Unified" or "Data")) continue;
                string path = Path.Combine(index.FullName, name);
                return File.Exists(path) ? File.ReadAllText(path).Trim() : null;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }
}
