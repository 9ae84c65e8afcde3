/* The forward kernels of the CUDA backend (contract: cuda-kernels.h, reference: the CPU kernels of oft/nn.h).
 * Each launcher is a template over the storage type T (float or __nv_bfloat16) with fp32 arithmetic, fp64
 * for norm statistics (as the CPU kernels). GEMM-shaped work goes to cuBLAS through oftcu_gemm; attention
 * is in cuda-attention.cu. Sizes are int64 where a tensor can pass 2³¹ elements (VAE activations at 1024²). */
#include "cuda-common.cuh"
#include <cooperative_groups.h>
#include <math.h>

namespace cg = cooperative_groups;

#define BLOCK 256

static inline size_t
esize (OftCuDtype dt)
{
  return oftcu_dtype_size (dt);
}

/* grid-stride loop over [0, n) */
#define FOR_N(i, n) \
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < (n); i += (int64_t) gridDim.x * blockDim.x)

/* Row × column loops for [rows, cols] tensors: y strides over rows, x over columns, so the per-element work
 * needs no 64-bit division (emulated on the GPU, slower than the memory traffic of these kernels). */
#define FOR_ROWS(r, rows) for (int64_t r = blockIdx.y; r < (rows); r += gridDim.y)
#define FOR_COLS(c, cols) \
  for (int64_t c = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; c < (cols); c += (int64_t) gridDim.x * blockDim.x)

static inline dim3
grid2d (int64_t rows, int64_t cols)
{
  int64_t gx = (cols + BLOCK - 1) / BLOCK;
  if (gx > 1024)
    gx = 1024;
  return dim3 ((unsigned) (gx > 0 ? gx : 1), (unsigned) (rows < 65535 ? (rows > 0 ? rows : 1) : 65535));
}

/* ---- reductions ---- */

__device__ __forceinline__ double
warp_sum_d (double v)
{
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync (0xffffffffu, v, o);
  return v;
}

/* Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the total. Reuses `buf`
 * ([32] doubles of shared memory), so consecutive calls are separated by the barrier inside. */
__device__ double
block_sum_d (double v, double *buf)
{
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum_d (v);
  __syncthreads ();   /* buf may still be read by the previous call */
  if (lane == 0)
    buf[warp] = v;
  __syncthreads ();
  double t = lane < nw ? buf[lane] : 0.0;
  return warp_sum_d (t);
}

/* ---- bias broadcast (linear and conv write the bias first, the GEMM adds onto it with beta = 1) ---- */

/* out[rows, cols] = bias[col] (linear: rows of OC), or bias[row % C] (conv: rows (b, c) of P pixels) */
template <typename T>
__global__ void
bias_fill_kernel (T *out, const T *bias, int64_t rows, int64_t cols, int C, bool per_row)
{
  FOR_ROWS (r, rows)
    {
      T *o = out + r * cols;
      if (per_row)
        {
          const T b = bias[r % C];
          FOR_COLS (c, cols)
            o[c] = b;
        }
      else
        FOR_COLS (c, cols)
          o[c] = bias[c];
    }
}

/* ---- linear ---- */

extern "C" void
oftcu_linear_forward (OftCuDtype dt, void *out, const void *inp, const void *weight, const void *bias,
                      int64_t N, int C, int OC)
{
  if (N <= 0 || OC <= 0)
    return;
  if (N > INT32_MAX)
    {
      oftcu_set_error ("oftcu_linear_forward: N = %lld rows is over the GEMM limit", (long long) N);
      return;
    }
  if (bias)
    OFTCU_DISPATCH (dt, "oftcu_linear_forward", {
      bias_fill_kernel<T><<<grid2d (N, OC), BLOCK, 0, oftcu_stream ()>>> ((T *) out, (const T *) bias, N, OC, OC,
                                                                          false);
    });
  OFTCU_CHECK_LAUNCH ("oftcu_linear_forward bias");
  /* out[N, OC] = inp[N, C] · weight[OC, C]ᵀ (+ out) */
  oftcu_gemm (dt, false, true, (int) N, OC, C, 1.0f, inp, C, 0, weight, C, 0, bias ? 1.0f : 0.0f, out, OC, 0, 1);
}

/* ---- conv2d ---- */

OftCuConvPlan
oftcu_conv2d_plan (const OftCuConvShape *s)
{
  OftCuConvPlan p;
  p.OH = (s->H + 2 * s->pad - s->kh) / s->stride + 1;
  p.OW = (s->W + 2 * s->pad - s->kw) / s->stride + 1;
  p.P = (int64_t) p.OH * p.OW;
  p.K = (int64_t) s->C * s->kh * s->kw;
  p.pointwise = s->kh == 1 && s->kw == 1 && s->stride == 1 && s->pad == 0;
  const int64_t per_image = p.K * p.P;
  if (per_image <= OFTCU_CONV_COL_MAX)
    {
      int64_t n = per_image > 0 ? OFTCU_CONV_COL_MAX / per_image : 1;
      p.images = (int) (n < s->B ? n : s->B);
      if (p.images < 1)
        p.images = 1;
      p.pixels = p.P;
    }
  else
    {
      p.images = 1;
      int64_t n = OFTCU_CONV_COL_MAX / p.K;
      n = n >= 64 ? n / 64 * 64 : (n > 0 ? n : 1);   /* whole 64-column GEMM tiles when possible */
      p.pixels = n < p.P ? n : p.P;
    }
  return p;
}

extern "C" size_t
oftcu_conv2d_scratch_bytes (OftCuDtype dt, const OftCuConvShape *s)
{
  OftCuConvPlan p = oftcu_conv2d_plan (s);
  if (p.pointwise || s->B <= 0 || p.P <= 0)
    return 0;
  return (size_t) p.images * (size_t) p.K * (size_t) p.pixels * esize (dt);
}

/* col rows are indexed r = i·K + kk over the chunk's images i, kk = c·kh·kw + ki·kw + kj, so the kh·kw rows
 * of image i's channel c are the rows of plane q = i·C + c: r = q·kh·kw + ki·kw + kj. blockIdx.y strides
 * over planes, x over the row's pixels; each thread divides once for its pixel and walks the kernel window
 * without division (integer division is emulated, and doing it per element made this kernel compute-bound,
 * several times slower than its memory traffic). 32-bit pixel math: the plan keeps pixels under 2³¹. */
template <typename T>
__global__ void
im2col_kernel (T *col, const T *img, int H, int W, int kh, int kw, int stride, int pad, int OW, int planes, int p0,
               int np)
{
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= np)
    return;
  const int p = p0 + t, oy = p / OW, ox = p - oy * OW;
  const int y0 = oy * stride - pad, x0 = ox * stride - pad, khw = kh * kw;
  const T zero = oftcu_to<T> (0.0f);
  for (int q = blockIdx.y; q < planes; q += gridDim.y)
    {
      const T *src = img + (int64_t) q * H * W;
      T *dst = col + (int64_t) q * khw * np + t;
      for (int ki = 0; ki < kh; ki++)
        {
          const int y = y0 + ki;
          const bool row_in = y >= 0 && y < H;
          for (int kj = 0; kj < kw; kj++)
            {
              const int x = x0 + kj;
              dst[(int64_t) (ki * kw + kj) * np] = row_in && x >= 0 && x < W ? src[(int64_t) y * W + x] : zero;
            }
        }
    }
}

void
oftcu_im2col (OftCuDtype dt, void *col, const void *img, const OftCuConvShape *s, const OftCuConvPlan *pl,
              int nimg, int64_t p0, int64_t np)
{
  const int64_t rows = (int64_t) nimg * pl->K, planes = (int64_t) nimg * s->C;
  if (rows <= 0 || np <= 0)
    return;
  if (rows > INT32_MAX || p0 + np > INT32_MAX)
    {
      oftcu_set_error ("oftcu_im2col: %lld rows × pixels up to %lld is over the 32-bit index range", (long long) rows,
                       (long long) (p0 + np));
      return;
    }
  dim3 grid ((unsigned) ((np + BLOCK - 1) / BLOCK), (unsigned) (planes < 65535 ? planes : 65535));
  OFTCU_DISPATCH (dt, "oftcu_im2col", {
    im2col_kernel<T><<<grid, BLOCK, 0, oftcu_stream ()>>> ((T *) col, (const T *) img, s->H, s->W, s->kh, s->kw,
                                                          s->stride, s->pad, pl->OW, (int) planes, (int) p0,
                                                          (int) np);
  });
  OFTCU_CHECK_LAUNCH ("oftcu_im2col");
}

extern "C" void
oftcu_conv2d_forward (OftCuDtype dt, void *out, const void *inp, const void *weight, const void *bias,
                      const OftCuConvShape *s, void *scratch)
{
  const OftCuConvPlan pl = oftcu_conv2d_plan (s);
  if (s->B <= 0 || s->OC <= 0 || pl.P <= 0)
    return;
  if (pl.P > INT32_MAX || pl.K > INT32_MAX)
    {
      oftcu_set_error ("oftcu_conv2d_forward: %lld pixels × depth %lld is over the GEMM limit", (long long) pl.P,
                       (long long) pl.K);
      return;
    }
  if (!pl.pointwise && !scratch)
    {
      oftcu_set_error ("oftcu_conv2d_forward: needs %zu bytes of scratch, got NULL", oftcu_conv2d_scratch_bytes (dt, s));
      return;
    }
  const size_t es = esize (dt);
  const int64_t in_sz = (int64_t) s->C * s->H * s->W, out_sz = (int64_t) s->OC * pl.P;
  const int P = (int) pl.P, K = (int) pl.K;
  if (bias)
    OFTCU_DISPATCH (dt, "oftcu_conv2d_forward", {
      bias_fill_kernel<T><<<grid2d ((int64_t) s->B * s->OC, pl.P), BLOCK, 0, oftcu_stream ()>>> (
          (T *) out, (const T *) bias, (int64_t) s->B * s->OC, pl.P, s->OC, true);
    });
  OFTCU_CHECK_LAUNCH ("oftcu_conv2d_forward bias");
  const float beta = bias ? 1.0f : 0.0f;
  if (pl.pointwise) /* out[b][OC, P] = W[OC, C] · inp[b][C, P], all images in one batched GEMM */
    {
      oftcu_gemm (dt, false, false, s->OC, P, K, 1.0f, weight, K, 0, inp, P, in_sz, beta, out, P, out_sz, s->B);
      return;
    }
  for (int b0 = 0; b0 < s->B; b0 += pl.images)
    {
      const int nimg = s->B - b0 < pl.images ? s->B - b0 : pl.images;
      const char *img = (const char *) inp + (size_t) b0 * in_sz * es;
      char *o = (char *) out + (size_t) b0 * out_sz * es;
      for (int64_t p0 = 0; p0 < pl.P; p0 += pl.pixels)
        {
          const int np = (int) (pl.P - p0 < pl.pixels ? pl.P - p0 : pl.pixels);
          oftcu_im2col (dt, scratch, img, s, &pl, nimg, p0, np);
          /* out[b][OC, p0 .. p0+np) = W[OC, K] · col[b][K, np] */
          oftcu_gemm (dt, false, false, s->OC, np, K, 1.0f, weight, K, 0, scratch, np, (int64_t) K * np, beta,
                      o + (size_t) p0 * es, P, out_sz, nimg);
        }
    }
}

/* ---- group norm. A (batch, group) is one contiguous run of M = (C/G)·HW values, often only 64 groups in all:
 * too few blocks for the GPU. So a cluster of GN_CLUSTER blocks (sm_90 thread block clusters) shares each
 * group, one slice per block: partial sums meet in distributed shared memory, added in rank order by every
 * block (deterministic, and all blocks agree). Two passes in fp64 (mean, then squared deviations) as the CPU
 * kernel, then each block normalises its slice. ---- */

#define GN_CLUSTER 8
#define GN_THREADS 512

/* SiLU as activation_kernel computes it (x·sigmoid(x), the sigmoid as 1/(1+e^−x)) */
__device__ __forceinline__ float
silu_f (float x)
{
  return x * (1.0f / (1.0f + expf (-x)));
}

/* SILU: the output is silu(groupnorm(x)), from the fp32 value (one rounding to T instead of two) */
template <typename T, bool SILU>
__global__ void __cluster_dims__ (GN_CLUSTER, 1, 1)
groupnorm_kernel (T *out, float *mean, float *rstd, const T *inp, const float *weight, const float *bias,
                  int C, int64_t HW, int G, float eps)
{
  __shared__ double buf[32];
  __shared__ double part[2];   /* this block's sum, then its sum of squared deviations */
  cg::cluster_group cluster = cg::this_cluster ();
  const int rank = (int) cluster.block_rank ();
  const int bg = blockIdx.y, cpg = C / G, c0 = (bg % G) * cpg;
  const int64_t M = (int64_t) cpg * HW, lo = M * rank / GN_CLUSTER, hi = M * (rank + 1) / GN_CLUSTER;
  const T *x = inp + (int64_t) bg * M;
  T *y = out + (int64_t) bg * M;

  double s = 0;
#pragma unroll 4
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
    s += oftcu_f (x[i]);
  s = block_sum_d (s, buf);
  if (threadIdx.x == 0)
    part[0] = s;
  cluster.sync ();
  double tot = 0;
  for (int r = 0; r < GN_CLUSTER; r++)
    tot += cluster.map_shared_rank (part, r)[0];
  const double mu = tot / (double) M;

  double v = 0;
#pragma unroll 4
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
    {
      const double d = (double) oftcu_f (x[i]) - mu;
      v += d * d;
    }
  v = block_sum_d (v, buf);
  if (threadIdx.x == 0)
    part[1] = v;
  cluster.sync ();
  tot = 0;
  for (int r = 0; r < GN_CLUSTER; r++)
    tot += cluster.map_shared_rank (part, r)[1];
  cluster.sync ();   /* no block leaves (taking its shared memory along) while another still reads it */

  const float m = (float) mu, rs = (float) (1.0 / sqrt (tot / (double) M + (double) eps));
  if (rank == 0 && threadIdx.x == 0)
    {
      if (mean)
        mean[bg] = m;
      if (rstd)
        rstd[bg] = rs;
    }
  /* per channel of the slice: the affine parameters once, then a plain loop */
  for (int64_t c = lo / HW; c * HW < hi; c++)
    {
      const float w = weight ? weight[c0 + c] : 1.0f, b = bias ? bias[c0 + c] : 0.0f;
      const int64_t from = c * HW > lo ? c * HW : lo, to = (c + 1) * HW < hi ? (c + 1) * HW : hi;
#pragma unroll 4
      for (int64_t i = from + threadIdx.x; i < to; i += blockDim.x)
        {
          const float v = (oftcu_f (x[i]) - m) * rs * w + b;   /* the CPU's order: no cancellation */
          y[i] = oftcu_to<T> (SILU ? silu_f (v) : v);
        }
    }
}

template <bool SILU>
static void
groupnorm (OftCuDtype dt, void *out, float *mean, float *rstd, const void *inp, const float *weight,
           const float *bias, int B, int C, int64_t HW, int G, float eps)
{
  if (G <= 0 || C % G)
    {
      oftcu_set_error ("oftcu_groupnorm_forward: %d channels do not split into %d groups", C, G);
      return;
    }
  if (B <= 0 || HW <= 0 || C <= 0)
    return;
  if ((int64_t) B * G > 65535)
    {
      oftcu_set_error ("oftcu_groupnorm_forward: B·G = %lld groups is over the grid limit 65535", (long long) B * G);
      return;
    }
  OFTCU_DISPATCH (dt, "oftcu_groupnorm_forward", {
    groupnorm_kernel<T, SILU><<<dim3 (GN_CLUSTER, B * G), GN_THREADS, 0, oftcu_stream ()>>> (
        (T *) out, mean, rstd, (const T *) inp, weight, bias, C, HW, G, eps);
  });
  OFTCU_CHECK_LAUNCH (SILU ? "oftcu_groupnorm_silu_forward" : "oftcu_groupnorm_forward");
}

extern "C" void
oftcu_groupnorm_forward (OftCuDtype dt, void *out, float *mean, float *rstd, const void *inp,
                         const float *weight, const float *bias, int B, int C, int64_t HW, int G, float eps)
{
  groupnorm<false> (dt, out, mean, rstd, inp, weight, bias, B, C, HW, G, eps);
}

extern "C" void
oftcu_groupnorm_silu_forward (OftCuDtype dt, void *out, float *mean, float *rstd, const void *inp,
                              const float *weight, const float *bias, int B, int C, int64_t HW, int G, float eps)
{
  groupnorm<true> (dt, out, mean, rstd, inp, weight, bias, B, C, HW, G, eps);
}

/* ---- layer norm: one warp per row ---- */

template <typename T>
__global__ void
layernorm_kernel (T *out, float *mean, float *rstd, const T *inp, const float *weight, const float *bias,
                  int64_t N, int C, float eps)
{
  const int lane = threadIdx.x & 31;
  const int64_t row = (blockIdx.x * (int64_t) blockDim.x + threadIdx.x) >> 5;
  if (row >= N)
    return;
  const T *x = inp + row * C;
  T *y = out + row * C;
  double s = 0;
  for (int i = lane; i < C; i += 32)
    s += oftcu_f (x[i]);
  const double mu = warp_sum_d (s) / C;
  double v = 0;
  for (int i = lane; i < C; i += 32)
    {
      double d = (double) oftcu_f (x[i]) - mu;
      v += d * d;
    }
  v = warp_sum_d (v);
  const float m = (float) mu, r = (float) (1.0 / sqrt (v / C + (double) eps));
  if (lane == 0)
    {
      if (mean)
        mean[row] = m;
      if (rstd)
        rstd[row] = r;
    }
  for (int i = lane; i < C; i += 32)
    y[i] = oftcu_to<T> ((oftcu_f (x[i]) - m) * r * (weight ? weight[i] : 1.0f) + (bias ? bias[i] : 0.0f));
}

extern "C" void
oftcu_layernorm_forward (OftCuDtype dt, void *out, float *mean, float *rstd, const void *inp,
                         const float *weight, const float *bias, int64_t N, int C, float eps)
{
  if (N <= 0 || C <= 0)
    return;
  const int64_t blocks = (N * 32 + BLOCK - 1) / BLOCK;
  if (blocks > INT32_MAX)
    {
      oftcu_set_error ("oftcu_layernorm_forward: %lld rows are too many", (long long) N);
      return;
    }
  OFTCU_DISPATCH (dt, "oftcu_layernorm_forward", {
    layernorm_kernel<T><<<(unsigned) blocks, BLOCK, 0, oftcu_stream ()>>> ((T *) out, mean, rstd, (const T *) inp,
                                                                          weight, bias, N, C, eps);
  });
  OFTCU_CHECK_LAUNCH ("oftcu_layernorm_forward");
}

/* ---- pointwise activations (formulas as oftcore/nn/activations.c) ---- */

__device__ __forceinline__ float
sigmoid_f (float x)
{
  return 1.0f / (1.0f + expf (-x));
}

__device__ __forceinline__ float
gelu_f (float x)
{
  return 0.5f * x * (1.0f + erff (x * 0.70710678118654752440f));
}

enum { ACT_SILU, ACT_GELU, ACT_QUICK_GELU };

template <typename T, int ACT>
__global__ void
activation_kernel (T *out, const T *inp, int64_t n)
{
  FOR_N (i, n)
    {
      const float x = oftcu_f (inp[i]);
      float y;
      if (ACT == ACT_SILU)
        y = x * sigmoid_f (x);
      else if (ACT == ACT_GELU)
        y = gelu_f (x);
      else
        y = x * sigmoid_f (1.702f * x);
      out[i] = oftcu_to<T> (y);
    }
}

template <int ACT>
static void
activation (OftCuDtype dt, void *out, const void *inp, int64_t n, const char *what)
{
  if (n <= 0)
    return;
  OFTCU_DISPATCH (dt, what, {
    activation_kernel<T, ACT><<<oftcu_grid (n, BLOCK), BLOCK, 0, oftcu_stream ()>>> ((T *) out, (const T *) inp, n);
  });
  OFTCU_CHECK_LAUNCH (what);
}

extern "C" void
oftcu_silu_forward (OftCuDtype dt, void *out, const void *inp, int64_t n)
{
  activation<ACT_SILU> (dt, out, inp, n, "oftcu_silu_forward");
}

extern "C" void
oftcu_gelu_forward (OftCuDtype dt, void *out, const void *inp, int64_t n)
{
  activation<ACT_GELU> (dt, out, inp, n, "oftcu_gelu_forward");
}

extern "C" void
oftcu_quick_gelu_forward (OftCuDtype dt, void *out, const void *inp, int64_t n)
{
  activation<ACT_QUICK_GELU> (dt, out, inp, n, "oftcu_quick_gelu_forward");
}

/* inp[N, 2C] = [h | gate] → out[N, C] = h · gelu(gate) */
template <typename T>
__global__ void
geglu_kernel (T *out, const T *inp, int64_t N, int C)
{
  FOR_ROWS (r, N)
    {
      const T *h = inp + r * 2 * C;
      FOR_COLS (c, C)
        out[r * C + c] = oftcu_to<T> (oftcu_f (h[c]) * gelu_f (oftcu_f (h[C + c])));
    }
}

extern "C" void
oftcu_geglu_forward (OftCuDtype dt, void *out, const void *inp, int64_t N, int C)
{
  if (N <= 0 || C <= 0)
    return;
  OFTCU_DISPATCH (dt, "oftcu_geglu_forward", {
    geglu_kernel<T><<<grid2d (N, C), BLOCK, 0, oftcu_stream ()>>> ((T *) out, (const T *) inp, N, C);
  });
  OFTCU_CHECK_LAUNCH ("oftcu_geglu_forward");
}

/* ---- softmax over rows of C: one warp per row, three passes (max, sum, write) ---- */

template <typename T>
__global__ void
softmax_kernel (T *out, const T *inp, int64_t N, int C)
{
  const int lane = threadIdx.x & 31;
  const int64_t row = (blockIdx.x * (int64_t) blockDim.x + threadIdx.x) >> 5;
  if (row >= N)
    return;
  const T *x = inp + row * C;
  T *y = out + row * C;
  float mx = -INFINITY;
  for (int i = lane; i < C; i += 32)
    mx = fmaxf (mx, oftcu_f (x[i]));
  for (int o = 16; o > 0; o >>= 1)
    mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, o));
  double s = 0;
  for (int i = lane; i < C; i += 32)
    s += expf (oftcu_f (x[i]) - mx);
  const float inv = (float) (1.0 / warp_sum_d (s));
  for (int i = lane; i < C; i += 32)
    y[i] = oftcu_to<T> (expf (oftcu_f (x[i]) - mx) * inv);
}

extern "C" void
oftcu_softmax_forward (OftCuDtype dt, void *out, const void *inp, int64_t N, int C)
{
  if (N <= 0 || C <= 0)
    return;
  const int64_t blocks = (N * 32 + BLOCK - 1) / BLOCK;
  if (blocks > INT32_MAX)
    {
      oftcu_set_error ("oftcu_softmax_forward: %lld rows are too many", (long long) N);
      return;
    }
  OFTCU_DISPATCH (dt, "oftcu_softmax_forward", {
    softmax_kernel<T><<<(unsigned) blocks, BLOCK, 0, oftcu_stream ()>>> ((T *) out, (const T *) inp, N, C);
  });
  OFTCU_CHECK_LAUNCH ("oftcu_softmax_forward");
}

/* ---- nearest 2× upsample: out[bc, y, x] = inp[bc, y/2, x/2] ---- */

/* one input row (bc, y) per grid row: its pixels go to output rows 2y and 2y+1, columns 2x and 2x+1 */
template <typename T>
__global__ void
upsample2x_kernel (T *out, const T *inp, int64_t rows, int W)
{
  FOR_ROWS (r, rows)
    {
      const T *src = inp + r * W;
      T *d0 = out + r * 4 * W, *d1 = d0 + 2 * W;   /* input row r = bc·H + y → output rows 2r, 2r + 1 */
      FOR_COLS (x, 2 * W)
        d0[x] = d1[x] = src[x >> 1];
    }
}

extern "C" void
oftcu_upsample2x_forward (OftCuDtype dt, void *out, const void *inp, int64_t BC, int H, int W)
{
  if (BC <= 0 || H <= 0 || W <= 0)
    return;
  OFTCU_DISPATCH (dt, "oftcu_upsample2x_forward", {
    upsample2x_kernel<T><<<grid2d (BC * H, 2 * W), BLOCK, 0, oftcu_stream ()>>> ((T *) out, (const T *) inp, BC * H, W);
  });
  OFTCU_CHECK_LAUNCH ("oftcu_upsample2x_forward");
}

/* ---- channel concat: two strided copies, each B rows of one image's part ---- */

extern "C" void
oftcu_concat_forward (OftCuDtype dt, void *out, const void *a, const void *b, int B, int Ca, int Cb, int64_t HW)
{
  if (B <= 0 || HW <= 0)
    return;
  const size_t es = esize (dt), na = (size_t) Ca * HW * es, nb = (size_t) Cb * HW * es, row = na + nb;
  if (row > (size_t) INT32_MAX)   /* past the 2D copies' pitch limit: one copy per image and part */
    {
      for (int i = 0; i < B; i++)
        {
          oftcu_copy ((char *) out + i * row, (const char *) a + i * na, na);
          oftcu_copy ((char *) out + i * row + na, (const char *) b + i * nb, nb);
        }
      return;
    }
  if (na)
    OFTCU_CHECK (cudaMemcpy2DAsync (out, row, a, na, na, B, cudaMemcpyDeviceToDevice, oftcu_stream ()));
  if (nb)
    OFTCU_CHECK (cudaMemcpy2DAsync ((char *) out + na, row, b, nb, nb, B, cudaMemcpyDeviceToDevice, oftcu_stream ()));
}

/* ---- add, scale, add_channel ---- */

template <typename T>
__global__ void
add_kernel (T *out, const T *a, const T *b, int64_t n)
{
  FOR_N (i, n)
    out[i] = oftcu_to<T> (oftcu_f (a[i]) + oftcu_f (b[i]));
}

extern "C" void
oftcu_add_forward (OftCuDtype dt, void *out, const void *a, const void *b, int64_t n)
{
  if (n <= 0)
    return;
  OFTCU_DISPATCH (dt, "oftcu_add_forward", {
    add_kernel<T><<<oftcu_grid (n, BLOCK), BLOCK, 0, oftcu_stream ()>>> ((T *) out, (const T *) a, (const T *) b, n);
  });
  OFTCU_CHECK_LAUNCH ("oftcu_add_forward");
}

template <typename T>
__global__ void
scale_kernel (T *out, const T *inp, float s, int64_t n)
{
  FOR_N (i, n)
    out[i] = oftcu_to<T> (s * oftcu_f (inp[i]));
}

extern "C" void
oftcu_scale_forward (OftCuDtype dt, void *out, const void *inp, float s, int64_t n)
{
  if (n <= 0)
    return;
  OFTCU_DISPATCH (dt, "oftcu_scale_forward", {
    scale_kernel<T><<<oftcu_grid (n, BLOCK), BLOCK, 0, oftcu_stream ()>>> ((T *) out, (const T *) inp, s, n);
  });
  OFTCU_CHECK_LAUNCH ("oftcu_scale_forward");
}

template <typename T>
__global__ void
add_channel_kernel (T *x, const T *v, int64_t BC, int64_t HW)
{
  FOR_ROWS (r, BC)
    {
      const float a = oftcu_f (v[r]);
      T *row = x + r * HW;
      FOR_COLS (c, HW)
        row[c] = oftcu_to<T> (oftcu_f (row[c]) + a);
    }
}

extern "C" void
oftcu_add_channel_forward (OftCuDtype dt, void *x, const void *v, int B, int C, int64_t HW)
{
  const int64_t BC = (int64_t) B * C;
  if (BC <= 0 || HW <= 0)
    return;
  OFTCU_DISPATCH (dt, "oftcu_add_channel_forward", {
    add_channel_kernel<T><<<grid2d (BC, HW), BLOCK, 0, oftcu_stream ()>>> ((T *) x, (const T *) v, BC, HW);
  });
  OFTCU_CHECK_LAUNCH ("oftcu_add_channel_forward");
}

/* ---- [B, C, HW] → [B, HW, C]: 32×32 tiles through shared memory (padded against bank conflicts) so both
 * the read and the write are coalesced. x and y stride over tiles beyond the grid limits. ---- */

template <typename T>
__global__ void
transpose_kernel (T *out, const T *inp, int B, int C, int64_t HW)
{
  __shared__ T tile[32][33];
  const int64_t tiles_x = (HW + 31) / 32, tiles_y = (C + 31) / 32;
  for (int64_t bz = blockIdx.z; bz < B; bz += gridDim.z)
    for (int64_t ty = blockIdx.y; ty < tiles_y; ty += gridDim.y)
      for (int64_t tx = blockIdx.x; tx < tiles_x; tx += gridDim.x)
        {
          const T *src = inp + bz * C * HW;
          T *dst = out + bz * C * HW;
          /* read rows c of the tile, columns hw */
          for (int j = threadIdx.y; j < 32; j += blockDim.y)
            {
              const int64_t c = ty * 32 + j, hw = tx * 32 + threadIdx.x;
              if (c < C && hw < HW)
                tile[j][threadIdx.x] = src[c * HW + hw];
            }
          __syncthreads ();
          for (int j = threadIdx.y; j < 32; j += blockDim.y)
            {
              const int64_t hw = tx * 32 + j, c = ty * 32 + threadIdx.x;
              if (c < C && hw < HW)
                dst[hw * C + c] = tile[threadIdx.x][j];
            }
          __syncthreads ();
        }
}

extern "C" void
oftcu_transpose_forward (OftCuDtype dt, void *out, const void *inp, int B, int C, int64_t HW)
{
  if (B <= 0 || C <= 0 || HW <= 0)
    return;
  const int64_t tx = (HW + 31) / 32, ty = (C + 31) / 32;
  dim3 grid ((unsigned) (tx < INT32_MAX ? tx : INT32_MAX), (unsigned) (ty < 65535 ? ty : 65535),
             (unsigned) (B < 65535 ? B : 65535));
  OFTCU_DISPATCH (dt, "oftcu_transpose_forward", {
    transpose_kernel<T><<<grid, dim3 (32, 8), 0, oftcu_stream ()>>> ((T *) out, (const T *) inp, B, C, HW);
  });
  OFTCU_CHECK_LAUNCH ("oftcu_transpose_forward");
}

/* ---- sinusoidal timestep embedding (diffusers, max_period 10000). The argument t·exp(e) reaches ~1000 for
 * SD's timesteps, where one ulp of the frequency moves sin by ~1e-4: the division, exp and sin/cos are done
 * so that each float is correctly rounded as the CPU's libm (and PyTorch) give it (IEEE division; exp and
 * sin/cos in double, then rounded). ---- */

template <typename T>
__global__ void
timestep_embedding_kernel (T *out, const float *timesteps, int N, int dim, bool flip, float shift)
{
  const int half = dim / 2;
  const float neg_log = (float) -log (10000.0);
  const float denom = (float) half - shift;
  FOR_N (idx, (int64_t) N * dim)
    {
      const int n = (int) (idx / dim), j = (int) (idx % dim);
      float v = 0.0f;   /* an odd dim's last column */
      if (j < 2 * half)
        {
          const int i = j < half ? j : j - half;
          const bool first = j < half;   /* first half: sin, or cos when flipped */
          const float exponent = __fdiv_rn (__fmul_rn (neg_log, (float) i), denom);
          const float arg = __fmul_rn (timesteps[n], (float) exp ((double) exponent));
          v = (first != flip) ? (float) sin ((double) arg) : (float) cos ((double) arg);
        }
      out[idx] = oftcu_to<T> (v);
    }
}

extern "C" void
oftcu_timestep_embedding (OftCuDtype dt, void *out, const float *timesteps, int N, int dim, bool flip, float shift)
{
  if (N <= 0 || dim <= 0)
    return;
  OFTCU_DISPATCH (dt, "oftcu_timestep_embedding", {
    timestep_embedding_kernel<T><<<oftcu_grid ((int64_t) N * dim, BLOCK), BLOCK, 0, oftcu_stream ()>>> (
        (T *) out, timesteps, N, dim, flip, shift);
  });
  OFTCU_CHECK_LAUNCH ("oftcu_timestep_embedding");
}
