/* Device helpers shared by the backward and training kernels (cuda-kernels-bwd.cu, cuda-kernels-train.cu):
 * storage-type conversions (fp32 math on fp32 or bf16 storage), deterministic block reductions, and the
 * stream / error hooks of the module's runtime. Not installed. */
#pragma once
#include "cuda-kernels.h"
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <stdint.h>

/* ---- runtime hooks (cuda-runtime.cu): the module's stream and its sticky error ---- */
extern "C" cudaStream_t oftcu_stream (void);
extern "C" void oftcu_fail (const char *fmt, ...);
#define OFTCU_STREAM oftcu_stream ()
/* after each launch: a launch failure (bad configuration, too much shared memory) becomes the sticky error */
#define OFTCU_LAUNCHED(what)                                                  \
  do {                                                                        \
    cudaError_t e_ = cudaGetLastError ();                                     \
    if (e_ != cudaSuccess)                                                    \
      oftcu_fail ("%s: %s", (what), cudaGetErrorString (e_));                 \
  } while (0)

/* ---- storage conversions ---- */
__device__ __forceinline__ float oftcu_ld (float x) { return x; }
__device__ __forceinline__ float oftcu_ld (__nv_bfloat16 x) { return __bfloat162float (x); }

template <typename T> __device__ __forceinline__ T oftcu_st (float x);
template <> __device__ __forceinline__ float oftcu_st<float> (float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 oftcu_st<__nv_bfloat16> (float x) { return __float2bfloat16_rn (x); }

/* p[i] += g, the sum formed in fp32 and rounded once to the storage type */
template <typename T>
__device__ __forceinline__ void
oftcu_add_to (T *p, int64_t i, float g)
{
  p[i] = oftcu_st<T> (oftcu_ld (p[i]) + g);
}

/* ---- block reductions in a fixed order (deterministic): warp shuffles, then warp 0 over the warps'
 * partials. Every thread of the block must call them; the result is valid in every thread. `sh` holds
 * 32 values of the type; consecutive calls may reuse it (the trailing barrier protects it). ---- */
template <typename T>
__device__ __forceinline__ T
oftcu_warp_sum (T v)
{
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync (0xffffffffu, v, o);
  return v;
}

template <typename T>
__device__ __forceinline__ T
oftcu_block_sum (T v, T *sh)
{
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = oftcu_warp_sum (v);
  __syncthreads ();               /* sh may still be read by a previous call */
  if (lane == 0)
    sh[warp] = v;
  __syncthreads ();
  T r = lane < nw ? sh[lane] : (T) 0;
  r = oftcu_warp_sum (r);         /* every warp reduces the same partials: same value everywhere */
  return r;
}

/* launches over n elements with 256 threads; the grid is capped and kernels stride */
static inline unsigned
oftcu_grid_1d (int64_t n)
{
  int64_t g = (n + 255) / 256;
  if (g < 1)
    g = 1;
  return (unsigned) (g > 65535 * 8 ? 65535 * 8 : g);
}

/* Launch one of two instantiations by storage type. */
#define OFTCU_DISPATCH(dt, T, ...)                                  \
  do {                                                              \
    if ((dt) == OFTCU_BF16) { typedef __nv_bfloat16 T; __VA_ARGS__; } \
    else { typedef float T; __VA_ARGS__; }                          \
  } while (0)
