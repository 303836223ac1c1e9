// Softmax / log-softmax over the rows of x [rows, cols] and the label-smoothed, class-weighted
// negative log-likelihood. One block per row; sums are accumulated in double, as on the CPU.
#include "common.cuh"

extern "C" __global__ void softmax_forward_f32(const float* x, float* y, int cols, int log)
{
    __shared__ float sf[32];
    __shared__ double sd[32];
    const float* xr = x + (i64)blockIdx.x * cols;
    float* yr = y + (i64)blockIdx.x * cols;
    float m = -__int_as_float(0x7f800000);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, xr[c]);
    m = block_max(m, sf);
    double s = 0.0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += exp((double)xr[c] - m);
    s = block_sum_d(s, sd);
    if (log)
    {
        double logSum = ::log(s);
        for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = (float)((double)xr[c] - m - logSum);
    }
    else
    {
        double inv = 1.0 / s;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = (float)(exp((double)xr[c] - m) * inv);
    }
}

// log: dx = dy - exp(y) * sum(dy); softmax: dx = y * (dy - sum(dy * y)).
extern "C" __global__ void softmax_backward_f32(const float* y, const float* dy, float* dx, int cols, int log)
{
    __shared__ double sd[32];
    i64 base = (i64)blockIdx.x * cols;
    double acc = 0.0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        acc += log ? (double)dy[base + c] : (double)dy[base + c] * y[base + c];
    acc = block_sum_d(acc, sd);
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
    {
        float g = dy[base + c], v = y[base + c];
        dx[base + c] = log ? (float)(g - exp((double)v) * acc) : (float)(v * (g - acc));
    }
}

// losses[i] = -(1 - s) * w[t_i] * logp[i, t_i] - (s / C) * sum_c w[c] * logp[i, c].
// A target outside [0, cols) stores its row in *badRow (the smallest such row) and leaves a NaN loss.
extern "C" __global__ void nll_loss_f32(const float* logp, const i64* targets, const float* weights, float smoothing,
    float* losses, int cols, int* badRow)
{
    __shared__ double sd[32];
    int r = blockIdx.x;
    i64 t = targets[r];
    const float* row = logp + (i64)r * cols;
    double smooth = 0.0;
    if (smoothing != 0.0f)
    {
        for (int c = threadIdx.x; c < cols; c += blockDim.x) smooth += (double)(weights ? weights[c] : 1.0f) * row[c];
        smooth = block_sum_d(smooth, sd);
    }
    if (threadIdx.x != 0) return;
    if (t < 0 || t >= cols)
    {
        atomicMin(badRow, r);
        losses[r] = __int_as_float(0x7fc00000);
        return;
    }
    float wt = weights ? weights[t] : 1.0f;
    double loss = -(double)((1.0f - smoothing) * wt) * row[t];
    if (smoothing != 0.0f) loss -= (double)smoothing / cols * smooth;
    losses[r] = (float)loss;
}

extern "C" __global__ void nll_loss_backward_f32(const i64* targets, const float* weights, float smoothing,
    const float* dLosses, float* dLogp, int rows, int cols)
{
    i64 total = (i64)rows * cols;
    NC_GRID_LOOP(i, total)
    {
        int r = (int)(i / cols), c = (int)(i % cols);
        float g = dLosses[r];
        float v = smoothing == 0.0f ? 0.0f : -g * smoothing / cols * (weights ? weights[c] : 1.0f);
        if (targets[r] == c) v -= g * (1.0f - smoothing) * (weights ? weights[c] : 1.0f);
        dLogp[i] = v;
    }
}
