// In-place optimizer updates with PyTorch semantics, formula for formula the CPU backend's.
// stepSize = lr / (1 - beta1^t) and bc2Sqrt = sqrt(1 - beta2^t) are computed once on the host.
#include "common.cuh"

extern "C" __global__ void adam_step_f32(float* p, const float* g, float* m, float* v, float* vMax, int n,
    float lr, float beta1, float beta2, float eps, float weightDecay, int decoupled, float stepSize, float bc2Sqrt)
{
    NC_GRID_LOOP(i, n)
    {
        float grad = g[i];
        float w = p[i];
        if (weightDecay != 0.0f)
        {
            if (decoupled) w *= 1.0f - lr * weightDecay;
            else grad += weightDecay * w;
        }
        float mi = beta1 * m[i] + (1.0f - beta1) * grad;
        float vi = beta2 * v[i] + (1.0f - beta2) * grad * grad;
        m[i] = mi;
        v[i] = vi;
        float second = vi;
        if (vMax) { second = fmaxf(vMax[i], vi); vMax[i] = second; }
        float denom = sqrtf(second) / bc2Sqrt + eps;
        p[i] = w - stepSize * mi / denom;
    }
}

// buf is null when momentum is 0.
extern "C" __global__ void sgd_step_f32(float* p, const float* g, float* buf, int n, float lr, float momentum,
    float dampening, float weightDecay, int nesterov, int firstStep)
{
    NC_GRID_LOOP(i, n)
    {
        float d = g[i] + weightDecay * p[i];
        if (momentum != 0.0f)
        {
            float b = firstStep ? d : momentum * buf[i] + (1.0f - dampening) * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] -= lr * d;
    }
}
