// Element-wise kernels: UnaryOp forward and backward, BinaryOp (contiguous and broadcast/strided),
// y += alpha * x, and the per-channel bias of a convolution output.
// Kernel names come from the C# enums: unary_<op>, unary_backward_<op>, binary_<op>_<dtype>[_strided]
// with <op> the enum member in snake_case (Relu6 -> relu6, Hardswish -> hardswish).
#include "common.cuh"

enum UnaryKind { U_NEG, U_EXP, U_LOG, U_SQRT, U_ABS, U_POW, U_CLAMP, U_RELU, U_RELU6, U_HARDSWISH,
                 U_SIGMOID, U_TANH, U_AFFINE, U_RECIPROCAL, U_SQUARE, U_SIGN };

template <int OP>
__device__ __forceinline__ float unary_f(float v, float a, float b)
{
    switch (OP)
    {
        case U_NEG: return -v;
        case U_EXP: return expf(v);
        case U_LOG: return logf(v);
        case U_SQRT: return sqrtf(v);
        case U_ABS: return fabsf(v);
        case U_POW: return powf(v, a);
        case U_CLAMP: return v < a ? a : (v > b ? b : v);
        case U_RELU: return (v > 0.0f || v != v) ? v : 0.0f;  // NaN kept (v != v), as the CPU's IEEE maximum and PyTorch
        case U_RELU6: return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
        case U_HARDSWISH: return v * fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) * (1.0f / 6.0f);
        case U_SIGMOID: return 1.0f / (1.0f + expf(-v));
        case U_TANH: return tanhf(v);
        case U_AFFINE: return v * a + b;
        case U_RECIPROCAL: return a / v;
        case U_SQUARE: return v * v;
        default: return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
    }
}

// d op(x) / dx given x and the forward output y (the CPU backend's UnaryDerivative, rule for rule).
template <int OP>
__device__ __forceinline__ float unary_df(float x, float y, float a, float b)
{
    switch (OP)
    {
        case U_NEG: return -1.0f;
        case U_EXP: return y;
        case U_LOG: return 1.0f / x;
        case U_SQRT: return 0.5f / y;
        case U_ABS: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
        case U_POW: return a == 0.0f ? 0.0f : a * powf(x, a - 1.0f);
        case U_CLAMP: return x >= a && x <= b ? 1.0f : 0.0f;
        case U_RELU: return x > 0.0f ? 1.0f : 0.0f;
        case U_RELU6: return x > 0.0f && x < 6.0f ? 1.0f : 0.0f;
        case U_HARDSWISH: return x < -3.0f ? 0.0f : (x <= 3.0f ? x / 3.0f + 0.5f : 1.0f);
        case U_SIGMOID: return y * (1.0f - y);
        case U_TANH: return 1.0f - y * y;
        case U_AFFINE: return a;
        case U_RECIPROCAL: return -y / x;
        case U_SQUARE: return 2.0f * x;
        default: return 0.0f;
    }
}

template <int OP>
__device__ void unary_impl(const float* x, float* y, int n, float a, float b)
{
    // Contiguous fast path: 16-byte loads and stores when both pointers are aligned.
    if ((((unsigned long long)x | (unsigned long long)y) & 15) == 0)
    {
        int n4 = n >> 2;
        const float4* x4 = (const float4*)x;
        float4* y4 = (float4*)y;
        NC_GRID_LOOP(i, n4)
        {
            float4 v = x4[i];
            v.x = unary_f<OP>(v.x, a, b); v.y = unary_f<OP>(v.y, a, b);
            v.z = unary_f<OP>(v.z, a, b); v.w = unary_f<OP>(v.w, a, b);
            y4[i] = v;
        }
        NC_GRID_LOOP(j, n - (n4 << 2)) y[(n4 << 2) + j] = unary_f<OP>(x[(n4 << 2) + j], a, b);
        return;
    }
    NC_GRID_LOOP(i, n) y[i] = unary_f<OP>(x[i], a, b);
}

template <int OP>
__device__ void unary_backward_impl(const float* x, const float* y, const float* dy, float* dx, int n, float a, float b)
{
    NC_GRID_LOOP(i, n) dx[i] = dy[i] * unary_df<OP>(x[i], y[i], a, b);
}

#define UNARY_KERNELS(NAME, OP) \
    extern "C" __global__ void unary_##NAME(const float* x, float* y, int n, float a, float b) \
    { unary_impl<OP>(x, y, n, a, b); } \
    extern "C" __global__ void unary_backward_##NAME(const float* x, const float* y, const float* dy, float* dx, int n, float a, float b) \
    { unary_backward_impl<OP>(x, y, dy, dx, n, a, b); }

UNARY_KERNELS(neg, U_NEG)
UNARY_KERNELS(exp, U_EXP)
UNARY_KERNELS(log, U_LOG)
UNARY_KERNELS(sqrt, U_SQRT)
UNARY_KERNELS(abs, U_ABS)
UNARY_KERNELS(pow, U_POW)
UNARY_KERNELS(clamp, U_CLAMP)
UNARY_KERNELS(relu, U_RELU)
UNARY_KERNELS(relu6, U_RELU6)
UNARY_KERNELS(hardswish, U_HARDSWISH)
UNARY_KERNELS(sigmoid, U_SIGMOID)
UNARY_KERNELS(tanh, U_TANH)
UNARY_KERNELS(affine, U_AFFINE)
UNARY_KERNELS(reciprocal, U_RECIPROCAL)
UNARY_KERNELS(square, U_SQUARE)
UNARY_KERNELS(sign, U_SIGN)

enum BinaryKind { B_ADD, B_SUB, B_MUL, B_DIV, B_MAXIMUM, B_MINIMUM, B_EQUAL, B_GREATER };

// Float32: NaN in a wins Maximum/Minimum, as on the CPU.
template <int OP>
__device__ __forceinline__ float binary_f(float x, float z)
{
    switch (OP)
    {
        case B_ADD: return x + z;
        case B_SUB: return x - z;
        case B_MUL: return x * z;
        case B_DIV: return x / z;
        case B_MAXIMUM: return (x >= z || x != x) ? x : z;
        case B_MINIMUM: return (x <= z || x != x) ? x : z;
        case B_EQUAL: return x == z ? 1.0f : 0.0f;
        default: return x > z ? 1.0f : 0.0f;
    }
}

// Integer operands (labels, arg indices): computed in double and converted back, as on the CPU.
template <int OP, typename T>
__device__ __forceinline__ T binary_int(T a, T b)
{
    double x = (double)a, z = (double)b;
    double r;
    switch (OP)
    {
        case B_ADD: r = x + z; break;
        case B_SUB: r = x - z; break;
        case B_MUL: r = x * z; break;
        case B_DIV: r = x / z; break;
        case B_MAXIMUM: r = x > z ? x : z; break;
        case B_MINIMUM: r = x < z ? x : z; break;
        case B_EQUAL: r = x == z ? 1.0 : 0.0; break;
        default: r = x > z ? 1.0 : 0.0; break;
    }
    return (T)r;
}

// Overloads by operand type: Float32 uses the float rules, integer dtypes the double round trip.
template <int OP>
__device__ __forceinline__ float binary_apply(float a, float b) { return binary_f<OP>(a, b); }
template <int OP>
__device__ __forceinline__ i64 binary_apply(i64 a, i64 b) { return binary_int<OP, i64>(a, b); }
template <int OP>
__device__ __forceinline__ int binary_apply(int a, int b) { return binary_int<OP, int>(a, b); }

#define BINARY_KERNELS_T(NAME, OP, T, SUFFIX) \
    extern "C" __global__ void binary_##NAME##_##SUFFIX(const T* a, const T* b, T* y, int n) \
    { NC_GRID_LOOP(i, n) y[i] = binary_apply<OP>(a[i], b[i]); } \
    extern "C" __global__ void binary_##NAME##_##SUFFIX##_strided(const T* a, Layout la, const T* b, Layout lb, T* y, int n) \
    { NC_GRID_LOOP(i, n) y[i] = binary_apply<OP>(a[layout_offset(la, i)], b[layout_offset(lb, i)]); }

#define BINARY_KERNELS(NAME, OP) \
    BINARY_KERNELS_T(NAME, OP, float, f32) \
    BINARY_KERNELS_T(NAME, OP, i64, i64) \
    BINARY_KERNELS_T(NAME, OP, int, i32)

BINARY_KERNELS(add, B_ADD)
BINARY_KERNELS(sub, B_SUB)
BINARY_KERNELS(mul, B_MUL)
BINARY_KERNELS(div, B_DIV)
BINARY_KERNELS(maximum, B_MAXIMUM)
BINARY_KERNELS(minimum, B_MINIMUM)
BINARY_KERNELS(equal, B_EQUAL)
BINARY_KERNELS(greater, B_GREATER)

// y += alpha * x over n contiguous elements (gradient accumulation).
extern "C" __global__ void add_scaled_f32(float* y, const float* x, int n, float alpha)
{
    NC_GRID_LOOP(i, n) y[i] += alpha * x[i];
}

// y [N, K, PQ] += bias [K] (convolution bias).
extern "C" __global__ void add_channel_bias_f32(float* y, const float* bias, int n, int k, int pq)
{
    i64 total = (i64)n * k * pq;
    NC_GRID_LOOP(i, total) y[i] += bias[(i / pq) % k];
}
