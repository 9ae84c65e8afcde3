/* CPU emulation (tools/cuda-emu/run.sh) of oftcore/cuda/cuda-common.cuh and of the CUDA device environment
 * the kernel sources use: thread and block indices, __syncthreads, shuffles, shared memory (static, since
 * blocks run one at a time), bf16, the _rn intrinsics, and the few runtime calls the launchers make. */
#pragma once
#include "cuda-kernels.h"
#include <stdint.h>
#include <stddef.h>
#include <math.h>
#include <string.h>
#include <functional>

struct dim3 { unsigned x, y, z; dim3 (unsigned a = 1, unsigned b = 1, unsigned c = 1) : x (a), y (b), z (c) {} };
typedef void *cudaStream_t;
typedef int cudaError_t;
#define cudaSuccess 0
extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
void __syncthreads ();
double emu_shfl (double v, int o);
template <typename T> inline T __shfl_xor_sync (unsigned, T v, int o) { return (T) emu_shfl ((double) v, o); }
void *emu_dyn_smem ();
#define OFTCU_DYNAMIC_SMEM(type, name) type *name = (type *) emu_dyn_smem ()
void emu_launch (dim3 g, dim3 b, size_t smem, const char *name, std::function<void ()> f);
void emu_set_max_dyn (int v);
inline float __fmul_rn (float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn (float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn (float a, float b) { volatile float r = a - b; return r; }
inline float __fdiv_rn (float a, float b) { volatile float r = a / b; return r; }
inline float __fsqrt_rn (float a) { return sqrtf (a); }
inline float __fmaf_rn (float a, float b, float c) { return fmaf (a, b, c); }  /* one rounding, as on the GPU */
inline float __frcp_rn (float a) { volatile float r = 1.0f / a; return r; }
inline int min (int a, int b) { return a < b ? a : b; }
inline int max (int a, int b) { return a > b ? a : b; }
struct __nv_bfloat16 { uint16_t x; };
struct uint4 { unsigned x, y, z, w; };
inline uint4 make_uint4 (unsigned a, unsigned b, unsigned c, unsigned d) { uint4 r = { a, b, c, d }; return r; }
inline float __bfloat162float (__nv_bfloat16 h) { uint32_t u = (uint32_t) h.x << 16; float f; memcpy (&f, &u, 4); return f; }
inline __nv_bfloat16 __float2bfloat16_rn (float f)
{
  uint32_t u; memcpy (&u, &f, 4);
  __nv_bfloat16 h;
  if ((u & 0x7fffffffu) > 0x7f800000u) { h.x = 0x7fc0; return h; }
  u += 0x7fffu + ((u >> 16) & 1u);
  h.x = (uint16_t) (u >> 16);
  return h;
}
enum { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
       cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
inline int cudaGetDevice (int *d) { *d = 0; return 0; }
/* an H100's 132 multiprocessors and 227 KiB of opt-in shared memory: the launchers then split and tile as there */
inline int cudaDeviceGetAttribute (int *v, int attr, int)
{
  *v = attr == cudaDevAttrMultiProcessorCount ? 132 : 232448;
  return 0;
}
typedef int cudaStreamCaptureStatus;
enum { cudaStreamCaptureStatusNone = 0 };
inline int cudaStreamIsCapturing (cudaStream_t, cudaStreamCaptureStatus *s) { *s = cudaStreamCaptureStatusNone; return 0; }
template <typename F> inline int cudaFuncSetAttribute (F, int, int v) { emu_set_max_dyn (v); return 0; }

cudaStream_t oftcu_stream (void);
void oftcu_set_error (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
bool emu_check_launch (const char *what);
#define OFTCU_CHECK_LAUNCH(what) emu_check_launch (what)

__device__ __forceinline__ float oftcu_f (float x) { return x; }
__device__ __forceinline__ float oftcu_f (__nv_bfloat16 x) { return __bfloat162float (x); }
template <typename T> __device__ __forceinline__ T oftcu_to (float x);
template <> __device__ __forceinline__ float oftcu_to<float> (float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 oftcu_to<__nv_bfloat16> (float x) { return __float2bfloat16_rn (x); }
#define OFTCU_DISPATCH(dt, what, ...)                                                    \
  do {                                                                                   \
    if ((dt) == OFTCU_F32) { typedef float T; __VA_ARGS__ }                              \
    else if ((dt) == OFTCU_BF16) { typedef __nv_bfloat16 T; __VA_ARGS__ }                \
    else oftcu_set_error ("%s: unknown dtype %d", what, (int) (dt));                     \
  } while (0)
static inline unsigned int
oftcu_grid (int64_t n, int block)
{
  int64_t g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > 65535LL * 32) g = 65535LL * 32;
  return (unsigned int) g;
}
