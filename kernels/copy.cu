// Fill and copy kernels. copy_<src>_to_<dst> converts dtypes through double, as the CPU backend does;
// the _strided variants address src and dst through their layouts (any strides; src may broadcast with
// stride 0). A same-dtype copy between contiguous tensors is a device memcpy and needs no kernel.
#include "common.cuh"

extern "C" __global__ void fill_f32(float* y, int n, float v) { NC_GRID_LOOP(i, n) y[i] = v; }
extern "C" __global__ void fill_i64(i64* y, int n, i64 v) { NC_GRID_LOOP(i, n) y[i] = v; }
extern "C" __global__ void fill_i32(int* y, int n, int v) { NC_GRID_LOOP(i, n) y[i] = v; }

#define COPY_KERNELS(S, SN, D, DN) \
    extern "C" __global__ void copy_##SN##_to_##DN(const S* src, D* dst, int n) \
    { NC_GRID_LOOP(i, n) dst[i] = (D)(double)src[i]; } \
    extern "C" __global__ void copy_##SN##_to_##DN##_strided(const S* src, Layout ls, D* dst, Layout ld, int n) \
    { NC_GRID_LOOP(i, n) dst[layout_offset(ld, i)] = (D)(double)src[layout_offset(ls, i)]; }

COPY_KERNELS(float, f32, float, f32)
COPY_KERNELS(float, f32, i64, i64)
COPY_KERNELS(float, f32, int, i32)
COPY_KERNELS(i64, i64, float, f32)
COPY_KERNELS(i64, i64, i64, i64)
COPY_KERNELS(i64, i64, int, i32)
COPY_KERNELS(int, i32, float, f32)
COPY_KERNELS(int, i32, i64, i64)
COPY_KERNELS(int, i32, int, i32)
