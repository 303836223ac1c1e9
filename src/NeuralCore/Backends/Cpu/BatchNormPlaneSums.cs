using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// Each plane's two statistics sums ([N, C, 2], double) that a convolution run sample by sample leaves for the training
/// batch norm that reads its output (<see cref="CpuBackend.Conv2dWithPlaneSums"/>, then
/// <see cref="CpuBackend.BatchNormTraining(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor?, Tensor?, float, float, int, int, int, bool, Tensor?, Pool2dParams?, Tensor?, Tensor?, bool, Tensor?, BatchNormPlaneSums?)"/>):
/// the sums the batch norm would take over the planes itself, taken while each sample's output is in cache. Pinned.
/// </summary>
internal sealed class BatchNormPlaneSums
{
    private readonly double[] _sums;

    internal BatchNormPlaneSums(int n, int c)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(c);
        N = n;
        C = c;
        _sums = GC.AllocateArray<double>(checked(2 * n * c), pinned: true);
    }

    /// <summary>Samples.</summary>
    internal int N { get; }

    /// <summary>Channels.</summary>
    internal int C { get; }

    /// <summary>The sums, [N, C, 2] (the array is pinned).</summary>
    internal unsafe double* Pointer => (double*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_sums));
}
