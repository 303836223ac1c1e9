using NeuralCore.Backends;

namespace NeuralCore;

/// <summary>The kind of processor a tensor lives on.</summary>
public enum DeviceType
{
    /// <summary>Host memory, computed by the CPU backend.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU, computed by the CUDA backend (package NeuralCore.Cuda).</summary>
    Cuda,
}

/// <summary>A device a tensor lives on: <c>cpu</c> or <c>cuda:N</c>.</summary>
/// <param name="Type">The kind of device.</param>
/// <param name="Index">Device ordinal (0 for the CPU).</param>
public readonly record struct Device(DeviceType Type, int Index = 0)
{
    /// <summary>The host CPU.</summary>
    public static Device Cpu => new(DeviceType.Cpu);

    /// <summary>The CUDA device with the given ordinal.</summary>
    public static Device Cuda(int index = 0) => new(DeviceType.Cuda, index);

    /// <summary>The backend that computes on this device.</summary>
    public IBackend Backend => BackendRegistry.Get(this);

    /// <summary>Parses <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c> (case-insensitive).</summary>
    public static Device Parse(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        if (t == "cpu") return Cpu;
        if (t == "cuda" || t == "gpu") return Cuda(0);
        if (t.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(t.AsSpan(5), out var i) && i >= 0) return Cuda(i);
        throw new FormatException($"Unknown device '{text}': expected 'cpu', 'cuda' or 'cuda:N'.");
    }

    /// <inheritdoc />
    public override string ToString() => Type == DeviceType.Cpu ? "cpu" : $"cuda:{Index}";
}
