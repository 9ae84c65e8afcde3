#include "cuda-kernels.h"
template <typename T> __global__ void k_scale (T *o, const T *x, float s, int64_t n)
{ int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; if (i < n) o[i] = x[i] * s; }
extern "C" void oftcu_scale_forward (OftCuDtype dt, void *out, const void *inp, float s, int64_t n)
{ k_scale<float><<<(n + 255) / 256, 256>>> ((float *) out, (const float *) inp, s, n); }
