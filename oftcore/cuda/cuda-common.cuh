/* Shared by the .cu files of the CUDA backend (not part of the C contract): the module's stream, the sticky
 * error, launch checks, and fp32/bf16 load/store helpers. Every launcher enqueues on oftcu_stream() and
 * calls OFTCU_CHECK_LAUNCH after its kernels, so the first failure names the launcher, file and line. */
#pragma once
#include "cuda-kernels.h"
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <stdint.h>

cudaStream_t oftcu_stream (void);
/* Keeps the first failure only (printf-style); later ones are dropped until oftcu_clear_error(). */
void oftcu_set_error (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
/* false (and the sticky error set, naming `what` at file:line) when e is not cudaSuccess */
bool oftcu_check (cudaError_t e, const char *what, const char *file, int line);
/* a kernel failed to launch (bad configuration, no kernel image for this GPU, ...) or an earlier
 * asynchronous error surfaced */
#define OFTCU_CHECK_LAUNCH(what) oftcu_check (cudaGetLastError (), what, __FILE__, __LINE__)
#define OFTCU_CHECK(call) oftcu_check ((call), #call, __FILE__, __LINE__)

/* fp32 values of storage types, and back (round to nearest even) */
__device__ __forceinline__ float oftcu_f (float x) { return x; }
__device__ __forceinline__ float oftcu_f (__nv_bfloat16 x) { return __bfloat162float (x); }
template <typename T> __device__ __forceinline__ T oftcu_to (float x);
template <> __device__ __forceinline__ float oftcu_to<float> (float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 oftcu_to<__nv_bfloat16> (float x) { return __float2bfloat16_rn (x); }

/* Calls body with T the storage type of dt: OFTCU_DISPATCH (dt, "silu", { k<T><<<..>>> (...); }) */
#define OFTCU_DISPATCH(dt, what, ...)                                                    \
  do {                                                                                   \
    if ((dt) == OFTCU_F32) { typedef float T; __VA_ARGS__ }                              \
    else if ((dt) == OFTCU_BF16) { typedef __nv_bfloat16 T; __VA_ARGS__ }                \
    else oftcu_set_error ("%s: unknown dtype %d", what, (int) (dt));                     \
  } while (0)

/* grid size for n items of `block` threads each, capped (kernels loop grid-stride beyond the cap) */
static inline unsigned int
oftcu_grid (int64_t n, int block)
{
  int64_t g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > 65535LL * 32) g = 65535LL * 32;
  return (unsigned int) g;
}

/* conv2d as im2col + GEMM, shared by the forward and the backward (same scratch size). The col matrix of a
 * chunk is [images][K][pixels] with K = C·kh·kw (the weight [OC, C, kh, kw] read as [OC, K] multiplies it),
 * rows of `pixels` output pixels starting at pixel p0 of each image. Whole images are batched while the col
 * of a chunk stays under OFTCU_CONV_COL_MAX elements; a larger single image is cut into pixel ranges.
 * Pointwise (1×1, stride 1, no padding) convs need no col: the image [C, HW] is the col matrix. */
#define OFTCU_CONV_COL_MAX (1ll << 25)
typedef struct {
  int OH, OW;
  int64_t P, K;        /* output pixels per image, GEMM depth */
  bool pointwise;
  int images;          /* images per chunk (1 when pixel ranges are used) */
  int64_t pixels;      /* pixels per chunk (P unless one image's col is over the cap) */
} OftCuConvPlan;
OftCuConvPlan oftcu_conv2d_plan (const OftCuConvShape *s);
/* col[nimg][K][np] from images img[0..nimg) (each [C, H, W], type dt), output pixels p0 .. p0+np */
void oftcu_im2col (OftCuDtype dt, void *col, const void *img, const OftCuConvShape *s, const OftCuConvPlan *pl,
                   int nimg, int64_t p0, int64_t np);
