namespace NeuralCore.Backends.Cpu;

/// <summary>
/// Arrays of op outputs that a <see cref="TensorScope"/> handed back, kept by element type and exact length for the
/// next op that needs the same size. A training or inference step with fixed shapes asks for the same sizes every
/// time, so after the first step every output comes from here and the step allocates no arrays.
/// </summary>
/// <remarks>
/// Exact lengths rather than size classes: a storage's array length is its element count, which code reading
/// <see cref="CpuStorage.Array"/> may rely on, and fixed-shape steps hit the same lengths anyway. The pool holds at
/// most <see cref="MaxPooledBytes"/>; arrays returned beyond that are left to the GC.
/// </remarks>
internal static class CpuBufferPool
{
    /// <summary>Upper bound of the bytes the pool keeps.</summary>
    internal const long MaxPooledBytes = 4L << 30;

    private static readonly Dictionary<long, Stack<Array>> Free = new();
    private static readonly object Gate = new();
    private static long pooledBytes;

    /// <summary>An array of <paramref name="length"/> elements of <paramref name="dtype"/>, contents undefined.</summary>
    internal static Array Rent(DType dtype, int length)
    {
        lock (Gate)
        {
            if (Free.TryGetValue(Key(dtype, length), out var stack) && stack.Count > 0)
            {
                var array = stack.Pop();
                pooledBytes -= Bytes(array);
                return array;
            }
        }
        return dtype switch
        {
            DType.Float32 => GC.AllocateUninitializedArray<float>(length),
            DType.Int64 => GC.AllocateUninitializedArray<long>(length),
            DType.Int32 => GC.AllocateUninitializedArray<int>(length),
            _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "CpuBufferPool holds Float32, Int64 and Int32 arrays."),
        };
    }

    /// <summary>Takes <paramref name="array"/> back for a later <see cref="Rent"/> of the same type and length.</summary>
    internal static void Return(Array array)
    {
        var dtype = array switch { float[] => DType.Float32, long[] => DType.Int64, _ => DType.Int32 };
        lock (Gate)
        {
            long bytes = Bytes(array);
            if (pooledBytes + bytes > MaxPooledBytes) return;
            var key = Key(dtype, array.Length);
            if (!Free.TryGetValue(key, out var stack)) Free[key] = stack = new Stack<Array>();
            stack.Push(array);
            pooledBytes += bytes;
        }
    }

    /// <summary>Drops every pooled array (they become garbage) and returns the bytes released.</summary>
    internal static long Clear()
    {
        lock (Gate)
        {
            long bytes = pooledBytes;
            Free.Clear();
            pooledBytes = 0;
            return bytes;
        }
    }

    /// <summary>Bytes currently held for reuse.</summary>
    internal static long PooledBytes
    {
        get { lock (Gate) return pooledBytes; }
    }

    private static long Key(DType dtype, int length) => (long)length * 4 + (int)dtype;

    private static long Bytes(Array array) => (long)array.Length * (array is float[] or int[] ? 4 : 8);
}
