using System.Diagnostics;
using System.Globalization;

namespace NeuralCore.Autograd;

/// <summary>
/// Wall time per recorded op on the calling thread, forward and backward: where a training step spends its time
/// (<c>neuralcore bench --mode train --eager --profile</c>). While a profiler is active, each op recorded on this thread is
/// charged the time since the previous recorded op or <see cref="Mark"/> (its kernel plus the glue before it, and any
/// unrecorded op in between), and each node of a backward pass the time its backward function and the accumulation of
/// its gradients take. Ops are told apart by pass, kind, module and output shape, so the layers of a model each get a
/// line. On a device that runs asynchronously (CUDA) the times are those of launching the work, not of the work. A clock
/// read per op; meant for measuring, not for production runs.
/// </summary>
public sealed class OpProfiler : IDisposable
{
    [ThreadStatic] private static OpProfiler? current;

    private readonly OpProfiler? outer;
    private readonly Dictionary<(bool Backward, OpKind Kind, NN.Module? Module, string Shape), long> ticks = [];
    private long last = Stopwatch.GetTimestamp();
    private bool disposed;

    private OpProfiler() => outer = current;

    /// <summary>Starts profiling the ops recorded on this thread until the profiler is disposed.</summary>
    public static OpProfiler Start()
    {
        var profiler = new OpProfiler();
        current = profiler;
        return profiler;
    }

    /// <summary>The profiler active on this thread, if any.</summary>
    internal static OpProfiler? Current => current;

    /// <summary>Restarts the clock: what ran since the last op (data loading, an optimizer step) is charged to no op.</summary>
    public void Mark() => last = Stopwatch.GetTimestamp();

    /// <summary>Charges the time since the last op or mark to <paramref name="node"/>, in the forward or the backward pass.</summary>
    internal void Charge(bool backward, Node node)
    {
        long now = Stopwatch.GetTimestamp();
        var key = (backward, node.Kind, node.Module, Tensor.FormatShape(node.Output.Shape));
        ticks[key] = ticks.GetValueOrDefault(key) + (now - last);
        last = now;
    }

    /// <summary>
    /// The total time of each op so far in milliseconds, largest first, labelled "forward"/"backward", kind, module
    /// (its name in <paramref name="moduleNames"/>, e.g. from <c>model.NamedModules()</c>, else its type) and output shape.
    /// </summary>
    public IReadOnlyList<(string Op, double Milliseconds)> Totals(IReadOnlyDictionary<NN.Module, string>? moduleNames = null) =>
        ticks.Select(t =>
            {
                var (backward, kind, module, shape) = t.Key;
                string where = module is null ? "" : moduleNames is not null && moduleNames.TryGetValue(module, out var name) ? name : module.GetType().Name;
                string op = string.Create(CultureInfo.InvariantCulture, $"{(backward ? "backward" : "forward")} {kind} {where} {shape}");
                return (op, t.Value * 1000.0 / Stopwatch.Frequency);
            })
            .OrderByDescending(t => t.Item2)
            .ToList();

    /// <summary>Stops profiling (the profiler active before this one, if any, is active again).</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        if (current == this) current = outer;
    }
}
