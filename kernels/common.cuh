// Shared helpers for every kernels/*.cu file. NVRTC compiles these sources at run time without the
// CUDA toolkit headers, so nothing here includes a system header: fixed-width types are spelled out.
#pragma once

typedef long long i64;
typedef unsigned int u32;

// A strided view of up to 8 dimensions, passed by value. Must match CudaLayout in NeuralCore.Cuda
// (int rank, int shape[8], int strides[8]: 68 bytes, 4-byte aligned).
#define NC_MAX_RANK 8
struct Layout
{
    int rank;
    int shape[NC_MAX_RANK];
    int strides[NC_MAX_RANK];
};

// Element offset of the row-major linear index i in a strided view.
__device__ __forceinline__ i64 layout_offset(const Layout& l, i64 i)
{
    i64 off = 0;
    for (int d = l.rank - 1; d >= 0; d--)
    {
        int size = l.shape[d];
        off += (i % size) * (i64)l.strides[d];
        i /= size;
    }
    return off;
}

// Grid-stride loop over [0, n).
#define NC_GRID_LOOP(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n); i += (i64)blockDim.x * gridDim.x)

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// scratch holds 32 values; the function ends with a barrier so scratch can be reused at once.
__device__ __forceinline__ float block_sum(float v, float* scratch)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    int warps = blockDim.x >> 5;
    v = threadIdx.x < warps ? scratch[threadIdx.x] : 0.0f;
    if (warp == 0) v = warp_sum(v);
    if (threadIdx.x == 0) scratch[0] = v;
    __syncthreads();
    v = scratch[0];
    __syncthreads();
    return v;
}

__device__ __forceinline__ double block_sum_d(double v, double* scratch)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum_d(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    int warps = blockDim.x >> 5;
    v = threadIdx.x < warps ? scratch[threadIdx.x] : 0.0;
    if (warp == 0) v = warp_sum_d(v);
    if (threadIdx.x == 0) scratch[0] = v;
    __syncthreads();
    v = scratch[0];
    __syncthreads();
    return v;
}

__device__ __forceinline__ float block_max(float v, float* scratch)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    int warps = blockDim.x >> 5;
    v = threadIdx.x < warps ? scratch[threadIdx.x] : -__int_as_float(0x7f800000);
    if (warp == 0) v = warp_max(v);
    if (threadIdx.x == 0) scratch[0] = v;
    __syncthreads();
    v = scratch[0];
    __syncthreads();
    return v;
}
