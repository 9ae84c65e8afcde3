/* Device helpers of the backward and training kernels (cuda-kernels-bwd.cu, cuda-kernels-train.cu), on top
 * of cuda-common.cuh (stream, sticky errors, launch checks, fp32/bf16 loads and stores, dtype dispatch):
 * accumulation into gradients and deterministic block reductions. Not installed. */
#pragma once
#include "cuda-common.cuh"

/* the dynamic shared memory of a kernel (a macro so that a CPU emulation of the kernels can supply it) */
#ifndef OFTCU_DYNAMIC_SMEM
#define OFTCU_DYNAMIC_SMEM(type, name) extern __shared__ type name[]
#endif

/* p[i] += g: the sum formed in fp32 and rounded once to the storage type */
template <typename T>
__device__ __forceinline__ void
oftcu_add_to (T *p, int64_t i, float g)
{
  p[i] = oftcu_to<T> (oftcu_f (p[i]) + g);
}

/* ---- reductions in a fixed order (deterministic: no atomics, same tree every run) ---- */
template <typename T>
__device__ __forceinline__ T
oftcu_warp_sum (T v)
{
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync (0xffffffffu, v, o);
  return v;
}

/* Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread must call it and gets the result.
 * `sh` holds 32 values; consecutive calls may reuse it (the leading barrier protects the previous reads). */
template <typename T>
__device__ __forceinline__ T
oftcu_block_sum (T v, T *sh)
{
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = oftcu_warp_sum (v);
  __syncthreads ();
  if (lane == 0)
    sh[warp] = v;
  __syncthreads ();
  T r = lane < nw ? sh[lane] : (T) 0;
  return oftcu_warp_sum (r);   /* every warp reduces the same partials in the same order */
}

/* grid for n items, 256 threads per block (kernels loop grid-stride past the cap) */
static inline unsigned int
oftcu_grid256 (int64_t n)
{
  return oftcu_grid (n, 256);
}
