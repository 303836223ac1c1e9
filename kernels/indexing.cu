// Index select along a middle axis and its gradient, used by the pruner to keep a subset of channels:
// x [outer, dimSize, inner], Int64 indices [count], y [outer, count, inner].
// Indices outside [0, dimSize) are skipped (the Tensor op validates them before calling the backend).
#include "common.cuh"

#define INDEX_SELECT(T, SUFFIX) \
    extern "C" __global__ void index_select_##SUFFIX(const T* x, const i64* indices, T* y, int outer, int dimSize, \
        int count, int inner) \
    { \
        i64 total = (i64)outer * count * inner; \
        NC_GRID_LOOP(t, total) \
        { \
            i64 i = t % inner, j = (t / inner) % count, o = t / ((i64)inner * count); \
            i64 k = indices[j]; \
            if (k >= 0 && k < dimSize) y[t] = x[(o * dimSize + k) * inner + i]; \
        } \
    }

INDEX_SELECT(float, f32)
INDEX_SELECT(i64, i64)
INDEX_SELECT(int, i32)

// dx[o, indices[j], i] += dy[o, j, i]. One thread per (o, i) walks j in order, so repeated indices
// add up in the same order as on the CPU, without atomics.
extern "C" __global__ void index_add_f32(const float* dy, const i64* indices, float* dx, int outer, int dimSize,
    int count, int inner)
{
    i64 total = (i64)outer * inner;
    NC_GRID_LOOP(t, total)
    {
        i64 i = t % inner, o = t / inner;
        for (int j = 0; j < count; j++)
        {
            i64 k = indices[j];
            if (k >= 0 && k < dimSize) dx[(o * dimSize + k) * inner + i] += dy[(o * count + j) * inner + i];
        }
    }
}
