// 2-D max and average pooling over x [N, C, H, W] into y [N, C, P, Q], PyTorch semantics (the CPU
// backend's PoolKernels): max pads with -inf and records the flat h*W+w index of the window's first
// maximum in row-major scan order (a NaN is taken whenever seen); average counts zero padding and
// clips ceil-mode windows at the padded border. Backward kernels gather (one thread per input
// element), so no atomics are needed and results are deterministic.
#include "common.cuh"

struct PoolGeom
{
    int n, c, h, w, kh, kw, sh, sw, ph, pw, p, q;
};

extern "C" __global__ void max_pool2d_forward_f32(const float* x, float* y, int* indices, PoolGeom g)
{
    i64 total = (i64)g.n * g.c * g.p * g.q;
    NC_GRID_LOOP(t, total)
    {
        int oq = (int)(t % g.q), op = (int)((t / g.q) % g.p);
        i64 plane = t / ((i64)g.p * g.q);
        const float* xp = x + plane * g.h * g.w;
        int hs = op * g.sh - g.ph, ws = oq * g.sw - g.pw;
        int h0 = max(hs, 0), h1 = min(hs + g.kh, g.h);
        int w0 = max(ws, 0), w1 = min(ws + g.kw, g.w);
        float best = -__int_as_float(0x7f800000);
        int at = h0 * g.w + w0;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++)
            {
                float v = xp[ih * g.w + iw];
                if (v > best || v != v) { best = v; at = ih * g.w + iw; }
            }
        y[t] = best;
        if (indices) indices[t] = at;
    }
}

// First and last+1 output index o (clipped to [0, outSize)) whose window [o*s - pad, o*s - pad + k) holds i.
__device__ __forceinline__ void windows_holding(int i, int k, int s, int pad, int outSize, int& lo, int& hi)
{
    int num = i + pad - k + 1;
    lo = num <= 0 ? 0 : (num + s - 1) / s;
    hi = min((i + pad) / s + 1, outSize);
}

extern "C" __global__ void max_pool2d_backward_f32(const float* dy, const int* indices, float* dx, PoolGeom g)
{
    i64 total = (i64)g.n * g.c * g.h * g.w;
    NC_GRID_LOOP(t, total)
    {
        int iw = (int)(t % g.w), ih = (int)((t / g.w) % g.h);
        i64 plane = t / ((i64)g.h * g.w);
        int self = ih * g.w + iw;
        int p0, p1, q0, q1;
        windows_holding(ih, g.kh, g.sh, g.ph, g.p, p0, p1);
        windows_holding(iw, g.kw, g.sw, g.pw, g.q, q0, q1);
        const float* dyp = dy + plane * g.p * g.q;
        const int* ip = indices + plane * g.p * g.q;
        float s = 0.0f;
        for (int op = p0; op < p1; op++)
            for (int oq = q0; oq < q1; oq++)
                if (ip[op * g.q + oq] == self) s += dyp[op * g.q + oq];
        dx[t] = s;
    }
}

// The count_include_pad divisor of output (op, oq): the window clipped to the padded input.
__device__ __forceinline__ int avg_divisor(const PoolGeom& g, int op, int oq)
{
    int hs = op * g.sh - g.ph, ws = oq * g.sw - g.pw;
    int he = min(hs + g.kh, g.h + g.ph), we = min(ws + g.kw, g.w + g.pw);
    return (he - hs) * (we - ws);
}

extern "C" __global__ void avg_pool2d_forward_f32(const float* x, float* y, PoolGeom g)
{
    i64 total = (i64)g.n * g.c * g.p * g.q;
    NC_GRID_LOOP(t, total)
    {
        int oq = (int)(t % g.q), op = (int)((t / g.q) % g.p);
        i64 plane = t / ((i64)g.p * g.q);
        const float* xp = x + plane * g.h * g.w;
        int hs = op * g.sh - g.ph, ws = oq * g.sw - g.pw;
        int h0 = max(hs, 0), h1 = min(hs + g.kh, g.h);
        int w0 = max(ws, 0), w1 = min(ws + g.kw, g.w);
        float s = 0.0f;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) s += xp[ih * g.w + iw];
        y[t] = s / avg_divisor(g, op, oq);
    }
}

extern "C" __global__ void avg_pool2d_backward_f32(const float* dy, float* dx, PoolGeom g)
{
    i64 total = (i64)g.n * g.c * g.h * g.w;
    NC_GRID_LOOP(t, total)
    {
        int iw = (int)(t % g.w), ih = (int)((t / g.w) % g.h);
        i64 plane = t / ((i64)g.h * g.w);
        int p0, p1, q0, q1;
        windows_holding(ih, g.kh, g.sh, g.ph, g.p, p0, p1);
        windows_holding(iw, g.kw, g.sw, g.pw, g.q, q0, q1);
        const float* dyp = dy + plane * g.p * g.q;
        float s = 0.0f;
        for (int op = p0; op < p1; op++)
            for (int oq = q0; oq < q1; oq++) s += dyp[op * g.q + oq] / avg_divisor(g, op, oq);
        dx[t] = s;
    }
}
