using NeuralCore.Backends.Cpu;

namespace NeuralCore.Tests.Backends;

/// <summary>
/// What the kernels size their work for (<see cref="CpuCaches"/>): core 0's caches as Linux describes them under
/// /sys/devices/system/cpu/cpu0/cache, or the fallbacks where it does not.
/// </summary>
public sealed class CpuCachesTests
{
    /// <summary>The ways <c>ImplicitGemmConv.ReadsInPlace</c> sizes for: the L1 data cache's where Linux reports them, else 8.</summary>
    [Fact]
    public void TheWaysAreTheLevelOneDataCaches()
    {
        string? ways = Entry(1, "ways_of_associativity");
        Assert.Equal(ways is null ? 8 : int.Parse(ways, System.Globalization.CultureInfo.InvariantCulture), CpuCaches.LevelOneWays());
    }

    /// <summary>The L1 size the weight gradients' segments follow: the L1 data cache's where Linux reports it, else 48 KiB.</summary>
    [Fact]
    public void TheLevelOneSizeIsTheDataCaches()
    {
        string? size = Entry(1, "size");
        Assert.Equal(size is null ? 48L << 10 : Bytes(size), CpuCaches.LevelOneBytes());
    }

    /// <summary>The cache that the inference plan's pieces are sized for: the L2 where Linux reports it, else 1 MiB.</summary>
    [Fact]
    public void TheCacheIsTheLevelTwoCache()
    {
        string? size = Entry(2, "size");
        Assert.Equal(size is null ? 1L << 20 : Bytes(size), CpuCaches.LevelTwoBytes());
    }

    /// <summary>The file <paramref name="name"/> of core 0's data or unified cache at <paramref name="level"/>, trimmed, or null.</summary>
    private static string? Entry(int level, string name)
    {
        var root = new DirectoryInfo("/sys/devices/system/cpu/cpu0/cache");
        if (!root.Exists) return null;
        return root.EnumerateDirectories("index*")
            .Where(d => File.ReadAllText(Path.Combine(d.FullName, "level")).Trim() == level.ToString(System.Globalization.CultureInfo.InvariantCulture)
                && File.ReadAllText(Path.Combine(d.FullName, "type")).Trim() is "Data" or "Unified")
            .Select(d => Path.Combine(d.FullName, name))
            .Where(File.Exists).Select(f => File.ReadAllText(f).Trim()).FirstOrDefault();
    }

    /// <summary>Bytes of a size as Linux writes it: "32K", "1024K", "2M".</summary>
    private static long Bytes(string size) =>
        long.Parse(size.TrimEnd('K', 'M'), System.Globalization.CultureInfo.InvariantCulture)
        * (size.EndsWith('M') ? 1L << 20 : size.EndsWith('K') ? 1L << 10 : 1);
}
