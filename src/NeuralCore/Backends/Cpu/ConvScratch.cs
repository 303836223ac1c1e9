using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NeuralCore.Backends.Cpu;

/// <summary>
/// Grow-only scratch buffers of one thread for the convolution kernels (im2col columns, gathered
/// output rows, per-thread weight-gradient partial sums, flipped kernels, kernels cut to their live
/// taps). After the first call at a given size no further managed memory is allocated.
/// </summary>
/// <remarks>
/// Buffers live on the pinned object heap, so raw pointers into them stay valid while the owning
/// thread works and may be handed to the other parts of the same job. One instance per thread:
/// the persistent CPU workers and every caller thread each keep their own, so concurrent callers
/// never share a buffer.
/// </remarks>
internal sealed unsafe class ConvScratch
{
    /// <summary>The slots a convolution uses at the same time.</summary>
    internal enum Slot
    {
        /// <summary>im2col columns [C/groups*R*S, columns]; in the implicit GEMM, one B micro-panel and its repacked lanes; in the Winograd path, a block's transformed input (16 points x C rows); a training stem's column planes (<see cref="StemColumns"/>).</summary>
        Columns,
        /// <summary>Gathered output or output-gradient rows [K/groups, columns]; in the implicit GEMM, the 8 x 32 edge tile; in the Winograd path with samples in the lanes, the outputs of 8 channels [channel, position, sample]; a stem's zero-bordered input row while it is split into column planes; the zero dy row that a block of <see cref="ChannelLaneWeightGradient"/> reads past the last output channel.</summary>
        Rows,
        /// <summary>Per-part partial weight gradients (caller thread only).</summary>
        Partials,
        /// <summary>The flipped kernel of a stride-1 backward-data pass, a training stem's packed weights, or the direct weight gradient's border masks as vectors (caller thread only; parts read them).</summary>
        Weights,
        /// <summary>One zero-bordered input plane for the unit-stride im2col; in the Winograd path with samples in the lanes, one channel's planes [position, sample]; the zero-bordered input planes of <see cref="PlaneConv3x3"/> and <see cref="MixedLaneConv3x3"/>; a sample's zero-bordered channel-last plane (<see cref="ChannelLaneWeightGradient"/>).</summary>
        Padded,
        /// <summary>A block of convolution output rows that is pooled before it leaves the cache (implicit GEMM with a fused pool); in the Winograd path, the 16 points' 8 x 32 products.</summary>
        Block,
        /// <summary>A kernel cut to its live taps, or its weight gradient (caller thread only).</summary>
        LiveTaps,
        /// <summary>Weights packed for one implicit-GEMM call of a training pass (caller thread only).</summary>
        PackedWeights,
        /// <summary>Channel-major copies of a chunk of a sample-major input and of its output (the training passes' implicit GEMM); in the Winograd path with samples in the lanes and a fused pool, one channel's unpooled planes; a chunk's channel-major dy and x, or a stem's column planes and dy, for the direct weight gradients.</summary>
        ChannelMajor,
        /// <summary>A chunk's output gradient that a fused step writes just before the stem's weight gradient reads it (a stem's weight gradient whose dy is made chunk by chunk, <see cref="DirectWeightGradient"/>).</summary>
        Gradient,
        /// <summary>A direct weight gradient's accumulators, each tap's carried from one segment of a chunk's positions to the next (<see cref="DirectWeightGradient"/>).</summary>
        Carry,
    }

    [ThreadStatic] private static ConvScratch? current;

    private readonly float[][] buffers = Enumerable.Range(0, Enum.GetValues<Slot>().Length).Select(_ => Array.Empty<float>()).ToArray();

    /// <summary>This thread's scratch.</summary>
    internal static ConvScratch Current => current ??= new ConvScratch();

    /// <summary>A buffer of at least <paramref name="length"/> floats from a 64-byte boundary (contents undefined).</summary>
    internal float* Get(Slot slot, long length)
    {
        ref float[] buffer = ref buffers[(int)slot];
        long held = buffer.Length == 0 ? 0 : AlignedArrays.Length(buffer);
        if (held < length)
        {
            // Grow by half again so a slowly growing shape does not reallocate on every call.
            // (AlignedArrays.Allocate refuses a length past what one array holds.)
            long grown = Math.Max(length, Math.Min(Array.MaxLength - AlignedArrays.Slack, held + held / 2));
            buffer = AlignedArrays.Allocate(grown, uninitialized: true);
        }
        // SAFETY: the array was allocated on the pinned object heap and is never moved; this
        // scratch object (and so the array) stays reachable from the thread-static field.
        return AlignedArrays.Start(buffer);
    }
}
