using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// Pinned float arrays used from their first 64-byte boundary (a cache line): the pinned object heap places an array's
/// data 8 bytes apart only, so at 7 of its 8 places every 512-bit load or store of the kernels spans two lines.
/// </summary>
internal static unsafe class AlignedArrays
{
    /// <summary>The floats an array holds beyond its length, so that its length follows its aligned start.</summary>
    internal const int Slack = 64 / sizeof(float);

    /// <summary>A pinned array of <paramref name="length"/> floats from <see cref="Start"/> (zeros, or undefined when <paramref name="uninitialized"/>).</summary>
    internal static float[] Allocate(long length, bool uninitialized = false)
    {
        if (length + Slack > Array.MaxLength)
            throw new InvalidOperationException(
                $"A convolution or inference plan needs a buffer of {length} floats, more than one array can hold; reduce the batch size or the image size.");
        int total = (int)(length + Slack);
        return uninitialized ? GC.AllocateUninitializedArray<float>(total, pinned: true) : GC.AllocateArray<float>(total, pinned: true);
    }

    /// <summary>The floats an array of <see cref="Allocate"/> holds from <see cref="Start"/>.</summary>
    internal static long Length(float[] array) => array.Length - Slack;

    /// <summary>The first 64-byte boundary in <paramref name="array"/>'s data (pinned: it never moves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float* Start(float[] array)
    {
        nint data = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        return (float*)((data + 63) & ~(nint)63);
    }
}
