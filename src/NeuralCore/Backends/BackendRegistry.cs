using NeuralCore.Backends.Cpu;

namespace NeuralCore.Backends;

/// <summary>
/// Maps devices to backends. The CPU backend is always present; other backends (CUDA) register
/// themselves when their assembly is loaded and initialised (for example <c>CudaBackend.Register()</c>).
/// </summary>
public static class BackendRegistry
{
    private static readonly object Gate = new();
    private static readonly Dictionary<DeviceType, Func<int, IBackend>> Factories = new();
    private static readonly Dictionary<Device, IBackend> Instances = new();

    /// <summary>Registers the factory that creates the backend for each ordinal of a device type.</summary>
    public static void Register(DeviceType type, Func<int, IBackend> factory)
    {
        lock (Gate)
        {
            Factories[type] = factory;
            foreach (var d in Instances.Keys.Where(k => k.Type == type).ToList()) Instances.Remove(d);
        }
    }

    /// <summary>The backend for <paramref name="device"/>; throws with a fix when none is registered.</summary>
    public static IBackend Get(Device device)
    {
        if (device.Type == DeviceType.Cpu) return CpuBackend.Instance;
        lock (Gate)
        {
            if (Instances.TryGetValue(device, out var b)) return b;
            if (!Factories.TryGetValue(device.Type, out var f))
                throw new InvalidOperationException(
                    $"No backend is registered for device '{device}'. Reference the NeuralCore.Cuda package and call CudaBackend.Register() before using CUDA tensors.");
            b = f(device.Index);
            Instances[device] = b;
            return b;
        }
    }
}
