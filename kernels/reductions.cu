// Reductions of x viewed as [outer, reduce, inner] over the middle axis into y [outer, inner]:
// reduce_<op>_f32 (any inner: one thread per output, reading coalesced across inner) and
// reduce_<op>_f32_rows (inner == 1, the contiguous fast path: one block per output row).
// Max and Min write the index of the first extreme to an optional Int64 output; a NaN wins and the
// first NaN is reported, as on the CPU.
#include "common.cuh"

enum ReduceKind { R_SUM, R_MEAN, R_MAX, R_MIN };

// True when candidate (v at index i) replaces the current best (b at index bi) in a max/min scan.
template <int OP>
__device__ __forceinline__ bool better(float v, i64 i, float b, i64 bi)
{
    bool bNan = b != b, vNan = v != v;
    if (bNan || vNan) return vNan && (!bNan || i < bi);
    if (v == b) return i < bi;
    return OP == R_MAX ? v > b : v < b;
}

template <int OP>
__device__ void reduce_cols(const float* x, float* y, i64* indices, int outer, int reduce, int inner)
{
    i64 total = (i64)outer * inner;
    NC_GRID_LOOP(t, total)
    {
        i64 o = t / inner, in = t % inner;
        const float* p = x + o * reduce * inner + in;
        if (OP == R_SUM || OP == R_MEAN)
        {
            float s = 0.0f;
            for (int r = 0; r < reduce; r++) s += p[(i64)r * inner];
            y[t] = OP == R_MEAN ? s / reduce : s;
        }
        else
        {
            float best = p[0];
            i64 at = 0;
            for (int r = 1; r < reduce; r++)
            {
                if (best != best) break;
                float v = p[(i64)r * inner];
                if (v != v || (OP == R_MAX ? v > best : v < best)) { best = v; at = r; }
            }
            y[t] = best;
            if (indices) indices[t] = at;
        }
    }
}

template <int OP>
__device__ void reduce_rows(const float* x, float* y, i64* indices, int reduce)
{
    __shared__ float sv[32];
    __shared__ i64 si[32];
    const float* row = x + (i64)blockIdx.x * reduce;
    if (OP == R_SUM || OP == R_MEAN)
    {
        float s = 0.0f;
        for (int r = threadIdx.x; r < reduce; r += blockDim.x) s += row[r];
        s = block_sum(s, sv);
        if (threadIdx.x == 0) y[blockIdx.x] = OP == R_MEAN ? s / reduce : s;
        return;
    }
    float best = row[0];
    i64 at = 0;
    for (int r = threadIdx.x; r < reduce; r += blockDim.x)
        if (better<OP>(row[r], r, best, at)) { best = row[r]; at = r; }
    for (int o = 16; o > 0; o >>= 1)
    {
        float v = __shfl_down_sync(0xffffffffu, best, o);
        i64 i = __shfl_down_sync(0xffffffffu, at, o);
        if (better<OP>(v, i, best, at)) { best = v; at = i; }
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { sv[warp] = best; si[warp] = at; }
    __syncthreads();
    if (threadIdx.x == 0)
    {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++)
            if (better<OP>(sv[w], si[w], best, at)) { best = sv[w]; at = si[w]; }
        y[blockIdx.x] = best;
        if (indices) indices[blockIdx.x] = at;
    }
}

#define REDUCE_KERNELS(NAME, OP) \
    extern "C" __global__ void reduce_##NAME##_f32(const float* x, float* y, i64* indices, int outer, int reduce, int inner) \
    { reduce_cols<OP>(x, y, indices, outer, reduce, inner); } \
    extern "C" __global__ void reduce_##NAME##_f32_rows(const float* x, float* y, i64* indices, int reduce) \
    { reduce_rows<OP>(x, y, indices, reduce); }

REDUCE_KERNELS(sum, R_SUM)
REDUCE_KERNELS(mean, R_MEAN)
REDUCE_KERNELS(max, R_MAX)
REDUCE_KERNELS(min, R_MIN)
