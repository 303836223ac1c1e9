namespace NeuralCore.Backends.Cpu;

// A training batch norm's backward in two halves, for a compiled training step whose stem convolution computes the
// batch norm's input gradient itself, chunk by chunk inside its weight gradient (CpuTrainingPlan: a stem that reads the
// step's input, which wants no gradient): BackwardSums takes the sums and the parameter gradients and leaves each
// channel's coefficients of dx; FillInputGradient then writes dx for a chunk of samples from them, into memory the
// weight gradient reads while it is in cache. Together they give the bits of Backward, and dx is never stored whole:
// a big MNIST b256 stem wrote and read back 5.5 MB of it (its Hardswish gradient, then dx), and read it again for the
// weight gradient.
internal static unsafe partial class BatchNormKernels
{
    /// <summary>
    /// <see cref="Backward"/> without dx: dgamma and dbeta, and per channel c the coefficients with which dx = a * dy' +
    /// b * (x - mean) + o (dy' being dy as the fused ops hand it on) in <paramref name="coefficients"/> [3C]: a at c, b at
    /// C + c, o at 2C + c. Large planes only (at least <see cref="SmallPlane"/> values).
    /// </summary>
    internal static void BackwardSums(float* x, float* dy, float* gamma, float* mean, float* invStd, float* coefficients,
        float* dgamma, float* dbeta, int n, int c, int hw, float* reluOutput = null, float* hardswishScaleOffset = null,
        FusedPool pool = default)
    {
        if (hw < SmallPlane) throw new ArgumentException($"BackwardSums needs planes of {SmallPlane} values or more, got {hw}.", nameof(hw));
        var job = new Job
        {
            Pass = Pass.Backward, N = n, C = c, HW = hw,
            X = x, Dy = dy, Gamma = gamma, Mean = mean, InvStd = invStd, DGamma = dgamma, DBeta = dbeta,
            ReluOutput = reluOutput, HardswishScaleOffset = hardswishScaleOffset, Coefficients = coefficients,
        };
        SetPool(ref job, pool);
        Execute(ref job, c);
    }

    /// <summary>What <see cref="FillInputGradient"/> reads: <see cref="BackwardSums"/>' arguments and its coefficients.</summary>
    internal struct InputGradientSource
    {
        public float* X, Dy, Mean, Coefficients, ReluOutput, HardswishScaleOffset;
        public int* PoolIndices;
        // A fused pool: the planes' width and the pooled height and width.
        public int C, HW, W, PooledH, PooledW;
    }

    /// <summary>
    /// dx of samples [n0, n0 + nb) into <paramref name="dx"/> [nb, C, HW], for <paramref name="state"/> an
    /// <see cref="InputGradientSource"/>: per plane, the pool's gradient rebuilt and the Hardswish's slope applied as
    /// <see cref="ChannelGradientSums"/> does, then <see cref="BackwardOutput"/>'s expression: the same bits as
    /// <see cref="Backward"/>'s dx. The slope is taken in the output pass, one pass over the plane instead of two
    /// (harness, the stem's weight gradient with this fill, alternated, AVX-512: mel b64 19 channels 0.77-0.97 of the
    /// time, MNIST b256 0.78-0.92; at 256 bits too since the forty-ninth session).
    /// </summary>
    internal static void FillInputGradient(void* state, int n0, int nb, float* dx)
    {
        ref InputGradientSource s = ref *(InputGradientSource*)state;
        int c = s.C, hw = s.HW;
        float* plane = s.PoolIndices == null ? null : SmallScratch.Current.Floats(hw);
        for (int i = 0; i < nb; i++)
        {
            for (int ch = 0; ch < c; ch++)
            {
                long at = ((long)(n0 + i) * c + ch) * hw;
                float* target = dx + ((long)i * c + ch) * hw;
                float* dy = s.Dy + at;
                if (plane != null)
                {
                    long from = ((long)(n0 + i) * c + ch) * s.PooledH * s.PooledW;
                    PoolKernels.MaxBackwardPlane2x2(s.Dy + from, s.PoolIndices + from, plane, hw / s.W, s.W, s.PooledH, s.PooledW);
                    dy = plane;
                }
                float mean = s.Mean[ch];
                float* relu = s.ReluOutput == null ? null : s.ReluOutput + at;
                var hardswish = s.HardswishScaleOffset == null ? default : new HardswishInput(s.HardswishScaleOffset[ch], s.HardswishScaleOffset[c + ch]);
                InputGradient(dy, s.X + at, target, hw, mean, s.Coefficients[ch], s.Coefficients[c + ch], s.Coefficients[2 * c + ch], relu, hardswish);
            }
        }
    }
}
