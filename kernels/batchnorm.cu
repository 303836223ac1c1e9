// Batch norm over x [N, C, HW] (the fallback when cuDNN is absent, and the reference for it):
// per-channel statistics in double with values shifted by the channel's first element, biased
// variance for normalisation, unbiased variance for the running estimate, as the CPU backend does.
// Reductions use one block per channel; the element-wise passes use a grid-stride loop.
#include "common.cuh"

extern "C" __global__ void batch_norm_stats_f32(const float* x, float* mean, float* invStd, float* runningMean,
    float* runningVar, float momentum, float eps, int n, int c, int hw)
{
    __shared__ double sd[32];
    int ch = blockIdx.x;
    i64 count = (i64)n * hw;
    double shift = x[(i64)ch * hw];
    double s = 0.0, ss = 0.0;
    for (i64 j = threadIdx.x; j < count; j += blockDim.x)
    {
        i64 b = j / hw, i = j % hw;
        double d = (double)x[(b * c + ch) * hw + i] - shift;
        s += d;
        ss += d * d;
    }
    s = block_sum_d(s, sd);
    ss = block_sum_d(ss, sd);
    if (threadIdx.x != 0) return;
    double centred = s / count;
    double variance = fmax(ss / count - centred * centred, 0.0);
    double m = shift + centred;
    mean[ch] = (float)m;
    invStd[ch] = (float)(1.0 / sqrt(variance + eps));
    if (runningMean) runningMean[ch] = (float)((1.0 - momentum) * runningMean[ch] + (double)momentum * m);
    if (runningVar)
    {
        double unbiased = variance * count / (count - 1);
        runningVar[ch] = (float)((1.0 - momentum) * runningVar[ch] + (double)momentum * unbiased);
    }
}

// y = (x - mean) * invStd * gamma + beta with the saved batch statistics.
extern "C" __global__ void batch_norm_apply_f32(const float* x, const float* gamma, const float* beta,
    const float* mean, const float* invStd, float* y, int n, int c, int hw)
{
    i64 total = (i64)n * c * hw;
    NC_GRID_LOOP(t, total)
    {
        int ch = (int)((t / hw) % c);
        double a = (double)gamma[ch] * invStd[ch];
        y[t] = (float)(x[t] * a + (beta[ch] - mean[ch] * a));
    }
}

extern "C" __global__ void batch_norm_inference_f32(const float* x, const float* gamma, const float* beta,
    const float* runningMean, const float* runningVar, float* y, float eps, int n, int c, int hw)
{
    i64 total = (i64)n * c * hw;
    NC_GRID_LOOP(t, total)
    {
        int ch = (int)((t / hw) % c);
        double a = gamma[ch] / sqrt((double)runningVar[ch] + eps);
        y[t] = (float)(x[t] * a + (beta[ch] - runningMean[ch] * a));
    }
}

// dbeta = sum(dy); dgamma = sum(dy * (x - mean)) * invStd, per channel.
extern "C" __global__ void batch_norm_backward_reduce_f32(const float* x, const float* dy, const float* mean,
    const float* invStd, float* dgamma, float* dbeta, int n, int c, int hw)
{
    __shared__ double sd[32];
    int ch = blockIdx.x;
    i64 count = (i64)n * hw;
    double m = mean[ch];
    double s = 0.0, sc = 0.0;
    for (i64 j = threadIdx.x; j < count; j += blockDim.x)
    {
        i64 b = j / hw, i = j % hw;
        i64 at = (b * c + ch) * hw + i;
        double g = dy[at];
        s += g;
        sc += g * ((double)x[at] - m);
    }
    s = block_sum_d(s, sd);
    sc = block_sum_d(sc, sd);
    if (threadIdx.x != 0) return;
    dbeta[ch] = (float)s;
    dgamma[ch] = (float)(sc * invStd[ch]);
}

// dx = gamma * invStd / M * (M * dy - dbeta - xhat * dgamma), M = N * HW.
extern "C" __global__ void batch_norm_backward_apply_f32(const float* x, const float* dy, const float* gamma,
    const float* mean, const float* invStd, const float* dgamma, const float* dbeta, float* dx, int n, int c, int hw)
{
    i64 total = (i64)n * c * hw;
    double count = (double)n * hw;
    NC_GRID_LOOP(t, total)
    {
        int ch = (int)((t / hw) % c);
        double is = invStd[ch];
        double a = gamma[ch] * is;
        dx[t] = (float)(a * dy[t] - a * is * dgamma[ch] / count * ((double)x[t] - mean[ch]) - a * dbeta[ch] / count);
    }
}
