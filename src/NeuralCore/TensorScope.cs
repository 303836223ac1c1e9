namespace NeuralCore;

/// <summary>
/// Releases the temporaries of a step: while a scope is active on a thread, the memory that ops allocate for their
/// outputs (activations, gradients of intermediates, saved values of the backward pass) belongs to the scope and is
/// given back when the scope is disposed: CPU arrays to a pool, GPU memory to the device's caching allocator. A training
/// or inference step with fixed shapes run inside a scope then allocates no arrays (and no device memory) after its
/// first run, and the GC has nothing large to collect. Without a scope, GPU temporaries go back only when the GC
/// finalizes them, which it does not know to hurry: device memory then grows with every step.
/// </summary>
/// <remarks>
/// <para>
/// Only op outputs are owned by the scope. Tensors made by <see cref="Tensor.Zeros"/>, <see cref="Tensor.FromArray(float[], int[])"/>
/// and the other creation functions, parameters, buffers and optimizer state belong to the GC as always; so does a
/// gradient once it is stored in a leaf's <see cref="Tensor.Grad"/>. Anything else computed inside the scope that must
/// outlive it needs <see cref="Keep"/>; reading it after the scope ended throws <see cref="ObjectDisposedException"/>
/// (it never shows another step's values). Views share their base's storage and live as long as it does.
/// </para>
/// <para>
/// Scopes nest and belong to the thread that entered them; dispose them in reverse order, with <c>using</c>.
/// </para>
/// <code>
/// for (...)
/// {
///     using var scope = TensorScope.Enter();
///     optimizer.ZeroGrad();
///     var loss = Functional.CrossEntropy(model.Call(x), y);
///     loss.Backward();
///     optimizer.Step();
///     total += loss.Item();
/// }
/// </code>
/// </remarks>
public sealed class TensorScope : IDisposable
{
    [ThreadStatic] private static TensorScope? current;

    private readonly TensorScope? _outer;
    private readonly Thread _thread;
    private List<Storage>? _owned = [];

    private TensorScope(TensorScope? outer)
    {
        _outer = outer;
        _thread = Thread.CurrentThread;
    }

    /// <summary>Starts a scope on the calling thread (nested inside the current one, if any).</summary>
    public static TensorScope Enter() => current = new TensorScope(current);

    /// <summary>The innermost active scope of the calling thread, or null.</summary>
    public static TensorScope? Current => current;

    /// <summary>Bytes of released memory the pool holds for reuse (the part of a process's peak that scopes keep warm).</summary>
    public static long PooledBytes => Backends.Cpu.CpuBufferPool.PooledBytes;

    /// <summary>Drops the pooled memory (for the GC to collect) and returns how many bytes that was.</summary>
    public static long TrimPool() => Backends.Cpu.CpuBufferPool.Clear();

    /// <summary>
    /// Keeps <paramref name="tensor"/>'s memory alive after this scope ends: it moves to the enclosing scope, or, at
    /// the outermost scope, to the GC. Returns <paramref name="tensor"/>.
    /// </summary>
    public Tensor Keep(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.Storage is { } s && ReferenceEquals(s.Owner, this))
        {
            s.Owner = _outer;
            _outer?.Track(s);
        }
        return tensor;
    }

    /// <summary>Makes this scope the owner of <paramref name="storage"/>: its end releases it.</summary>
    internal void Track(Storage storage)
    {
        (_owned ?? throw new ObjectDisposedException(nameof(TensorScope), "This TensorScope was already disposed.")).Add(storage);
        storage.Owner = this;
    }

    /// <summary>Moves a storage out of every scope, for memory that something long-lived now holds (a leaf's gradient).</summary>
    internal static void Escape(Storage storage)
    {
        storage.Owner = null;
    }

    /// <summary>Returns the memory of every op output made in this scope (and not kept) to the pool.</summary>
    /// <exception cref="InvalidOperationException">Another scope entered after this one is still active, or another thread disposes it.</exception>
    public void Dispose()
    {
        if (_owned is null) return;
        if (Thread.CurrentThread != _thread)
            throw new InvalidOperationException("A TensorScope must be disposed on the thread that entered it.");
        if (!ReferenceEquals(current, this))
            throw new InvalidOperationException("TensorScopes must be disposed in reverse order of entering; an inner scope is still active (use 'using').");
        foreach (var s in _owned)
            if (ReferenceEquals(s.Owner, this)) s.Release();
        _owned = null;
        current = _outer;
    }
}
