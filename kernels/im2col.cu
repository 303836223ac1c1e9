// im2col / col2im for the convolution fallback (im2col + cuBLAS GEMM when cuDNN is absent).
// For one group of `batch` images starting at x: col [batch, Cg*R*S, P*Q] with
// col[b, (c*R + r)*S + s, p*Q + q] = x[b, c, p*sh - ph + r*dh, q*sw - pw + s*dw] (0 outside).
// col2im gathers (one thread per input element), so it needs no atomics and is deterministic.
#include "common.cuh"

struct ConvGeom
{
    int c, h, w, cg, r, s, sh, sw, ph, pw, dh, dw, p, q;
};

// x points at image 0, channel group start; images are c*h*w apart.
extern "C" __global__ void im2col_f32(const float* x, float* col, int batch, ConvGeom g)
{
    i64 pq = (i64)g.p * g.q;
    i64 rows = (i64)g.cg * g.r * g.s;
    i64 total = batch * rows * pq;
    NC_GRID_LOOP(t, total)
    {
        i64 at = t % pq;
        i64 row = (t / pq) % rows;
        i64 b = t / (pq * rows);
        int oq = (int)(at % g.q), op = (int)(at / g.q);
        int s = (int)(row % g.s), r = (int)((row / g.s) % g.r), ch = (int)(row / ((i64)g.s * g.r));
        int ih = op * g.sh - g.ph + r * g.dh, iw = oq * g.sw - g.pw + s * g.dw;
        col[t] = (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
            ? x[b * g.c * g.h * g.w + ((i64)ch * g.h + ih) * g.w + iw] : 0.0f;
    }
}

// dx[b, c, ih, iw] = sum of the col entries that im2col read from it (dx points at image 0, group start).
extern "C" __global__ void col2im_f32(const float* col, float* dx, int batch, ConvGeom g)
{
    i64 pq = (i64)g.p * g.q;
    i64 rows = (i64)g.cg * g.r * g.s;
    i64 plane = (i64)g.h * g.w;
    i64 total = batch * g.cg * plane;
    NC_GRID_LOOP(t, total)
    {
        int iw = (int)(t % g.w), ih = (int)((t / g.w) % g.h);
        int ch = (int)((t / plane) % g.cg);
        i64 b = t / (plane * g.cg);
        const float* cb = col + b * rows * pq;
        float acc = 0.0f;
        for (int r = 0; r < g.r; r++)
        {
            int hh = ih + g.ph - r * g.dh;
            if (hh < 0 || hh % g.sh != 0) continue;
            int op = hh / g.sh;
            if (op >= g.p) continue;
            for (int s = 0; s < g.s; s++)
            {
                int ww = iw + g.pw - s * g.dw;
                if (ww < 0 || ww % g.sw != 0) continue;
                int oq = ww / g.sw;
                if (oq >= g.q) continue;
                acc += cb[(((i64)ch * g.r + r) * g.s + s) * pq + (i64)op * g.q + oq];
            }
        }
        dx[b * g.c * plane + (i64)ch * plane + (i64)ih * g.w + iw] = acc;
    }
}
