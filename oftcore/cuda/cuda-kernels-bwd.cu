/* Backward kernels of the CUDA backend (reference: the CPU kernels of oft/nn.h). Every launcher
 * ACCUMULATES into its gradient outputs (+=, the sum formed in fp32 and rounded once to the storage type)
 * and skips NULL ones. Reductions run in a fixed order (no atomics), so results are bitwise reproducible
 * from run to run. GEMMs go through oftcu_gemm (cuBLAS). */
#include "cuda-bwd-common.cuh"
#include "cuda-bwd-mma.cuh"

/* ------------------------------------------------------------------------------------------------ */
/* reductions shared by several launchers                                                            */

/* y[j] += Σ_i a[i·cols + j] over rows (bias gradients of [N, C] rows). Block (32, 32): a warp reads 32
 * consecutive columns of one row; the 32 row phases are summed in order through shared memory. */
template <typename T>
__global__ void
k_col_sums_add (T *y, const T *a, int64_t rows, int cols)
{
  __shared__ float sh[32][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int j = blockIdx.x * 32 + tx;
  float s = 0.0f;
  if (j < cols)
    for (int64_t i = ty; i < rows; i += 32)
      s += oftcu_f (a[i * cols + j]);
  sh[ty][tx] = s;
  __syncthreads ();
  if (ty == 0 && j < cols)
    {
      float t = 0.0f;
      for (int r = 0; r < 32; r++)
        t += sh[r][tx];
      oftcu_add_to (y, j, t);
    }
}

static void
col_sums_add (OftCuDtype dt, void *y, const void *a, int64_t rows, int cols)
{
  if (rows <= 0 || cols <= 0)
    return;
  dim3 grid ((cols + 31) / 32), block (32, 32);
  OFTCU_DISPATCH (dt, "column sums", {
    k_col_sums_add<T><<<grid, block, 0, oftcu_stream ()>>> ((T *) y, (const T *) a, rows, cols);
  });
  OFTCU_CHECK_LAUNCH ("column sums");
}

/* y[r] += Σ_{b < nb} Σ_{j < len} a[b·bstride + r·len + j]: one block per r (bias of a conv over NCHW,
 * the time-embedding gradient of add_channel). */
template <typename T>
__global__ void
k_row_sums_add (T *y, const T *a, int rows, int64_t len, int nb, int64_t bstride)
{
  __shared__ float sh[32];
  for (int r = blockIdx.x; r < rows; r += gridDim.x)
    {
      float s = 0.0f;
      for (int b = 0; b < nb; b++)
        {
          const T *p = a + b * bstride + (int64_t) r * len;
          for (int64_t j = threadIdx.x; j < len; j += blockDim.x)
            s += oftcu_f (p[j]);
        }
      s = oftcu_block_sum (s, sh);
      if (threadIdx.x == 0)
        oftcu_add_to (y, r, s);
    }
}

static void
row_sums_add (OftCuDtype dt, void *y, const void *a, int rows, int64_t len, int nb, int64_t bstride)
{
  if (rows <= 0 || len <= 0 || nb <= 0)
    return;
  unsigned grid = rows < 65535 ? (unsigned) rows : 65535u;
  OFTCU_DISPATCH (dt, "row sums", {
    k_row_sums_add<T><<<grid, 256, 0, oftcu_stream ()>>> ((T *) y, (const T *) a, rows, len, nb, bstride);
  });
  OFTCU_CHECK_LAUNCH ("row sums");
}

static inline const char *
offset (const void *p, int64_t elems, OftCuDtype dt)
{
  return (const char *) p + elems * (int64_t) oftcu_dtype_size (dt);
}

/* ------------------------------------------------------------------------------------------------ */
/* linear                                                                                            */

extern "C" void
oftcu_linear_backward (OftCuDtype dt, void *dinp, void *dweight, void *dbias, const void *dout,
                       const void *inp, const void *weight, int64_t N, int C, int OC)
{
  if (N <= 0)
    return;
  if (N > INT32_MAX)
    {
      oftcu_set_error ("linear backward: N = %lld rows is over the GEMM limit", (long long) N);
      return;
    }
  if (dinp)    /* dinp[N,C] += dout[N,OC] · W[OC,C] */
    oftcu_gemm (dt, false, false, (int) N, C, OC, 1.0f, dout, OC, 0, weight, C, 0, 1.0f, dinp, C, 0, 1);
  if (dweight) /* dW[OC,C] += doutᵀ · inp */
    oftcu_gemm (dt, true, false, OC, C, (int) N, 1.0f, dout, OC, 0, inp, C, 0, 1.0f, dweight, C, 0, 1);
  if (dbias)
    col_sums_add (dt, dbias, dout, N, OC);
}

/* ------------------------------------------------------------------------------------------------ */
/* conv2d: im2col + GEMM over chunks of the scratch (the same chunks as the forward: whole images while   */
/* their col fits, else pixel ranges of one image); 1×1 stride-1 convs read the image as the col.       */

static inline int conv_oh (const OftCuConvShape *s) { return (s->H + 2 * s->pad - s->kh) / s->stride + 1; }
static inline int conv_ow (const OftCuConvShape *s) { return (s->W + 2 * s->pad - s->kw) / s->stride + 1; }

/* col[i][(c·kh + ki)·kw + kj][pp] = img_i[c][oy·st − pad + ki][ox·st − pad + kj] (0 outside the image),
 * for the chunk's images i < nimg and output pixels p = p0 + pp, pp < np (p = oy·OW + ox). The kh·kw rows of
 * image i's channel c are those of plane q = i·C + c; x strides over pixels, y over planes, and each thread
 * divides once per pixel, then walks the kernel window (per-element 64-bit divisions made this kernel
 * compute-bound, as in the forward's im2col). */
template <typename T>
__global__ void
k_im2col_chunk (T *col, const T *img, int nimg, int C, int H, int W, int kh, int kw, int st, int pad, int OW,
                int64_t p0, int64_t np)
{
  const int khw = kh * kw;
  const int64_t planes = (int64_t) nimg * C, HWi = (int64_t) H * W;
  const T zero = oftcu_to<T> (0.0f);
  for (int64_t pp = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; pp < np; pp += (int64_t) gridDim.x * blockDim.x)
    {
      const int64_t p = p0 + pp;
      const int oy = (int) (p / OW), ox = (int) (p - (int64_t) oy * OW);
      const int y0 = oy * st - pad, x0 = ox * st - pad;
      for (int64_t q = blockIdx.y; q < planes; q += gridDim.y)
        {
          const T *src = img + q * HWi;
          T *dst = col + q * khw * np + pp;
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
}

static dim3
im2col_grid (int64_t planes, int64_t np)
{
  const int64_t gx = (np + 255) / 256;
  return dim3 ((unsigned) (gx < (1 << 20) ? (gx > 0 ? gx : 1) : (1 << 20)),
               (unsigned) (planes < 65535 ? (planes > 0 ? planes : 1) : 65535));
}

/* Adjoint of k_im2col_chunk as a gather: each input pixel sums the col entries of the chunk that read it
 * (no atomics, fixed order), then adds the sum onto img. */
template <typename T>
__global__ void
k_col2im_chunk_add (T *img, const T *col, int nimg, int C, int H, int W, int kh, int kw, int st, int pad,
                    int OH, int OW, int64_t p0, int64_t np)
{
  /* y strides over planes q = i·C + c (whose kh·kw col rows start at row q·kh·kw), x over the plane's
   * pixels: one division per pixel instead of five 64-bit ones */
  const int64_t HWi = (int64_t) H * W, planes = (int64_t) nimg * C, khw = (int64_t) kh * kw;
  for (int64_t q = blockIdx.y; q < planes; q += gridDim.y)
    {
      const T *cq = col + q * khw * np;
      T *iq = img + q * HWi;
      for (int64_t rem = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; rem < HWi;
           rem += (int64_t) gridDim.x * blockDim.x)
        {
          const int y = (int) (rem / W), x = (int) (rem - (int64_t) y * W);
          float s = 0.0f;
          for (int ki = 0; ki < kh; ki++)
            {
              const int ty = y + pad - ki;                  /* = oy·st */
              if (ty < 0 || ty % st != 0)
                continue;
              const int oy = ty / st;
              if (oy >= OH)
                continue;
              for (int kj = 0; kj < kw; kj++)
                {
                  const int tx = x + pad - kj;
                  if (tx < 0 || tx % st != 0)
                    continue;
                  const int ox = tx / st;
                  if (ox >= OW)
                    continue;
                  const int64_t pp = (int64_t) oy * OW + ox - p0;
                  if (pp < 0 || pp >= np)
                    continue;
                  s += oftcu_f (cq[(int64_t) (ki * kw + kj) * np + pp]);
                }
            }
          oftcu_add_to (iq, rem, s);
        }
    }
}

extern "C" void
oftcu_conv2d_backward (OftCuDtype dt, void *dinp, void *dweight, void *dbias, const void *dout,
                       const void *inp, const void *weight, const OftCuConvShape *s, void *scratch)
{
  const int OH = conv_oh (s), OW = conv_ow (s);
  const int64_t P = (int64_t) OH * OW, K = (int64_t) s->C * s->kh * s->kw;
  const int64_t in_sz = (int64_t) s->C * s->H * s->W, out_sz = (int64_t) s->OC * P;
  const size_t es = oftcu_dtype_size (dt);
  const bool pw = s->kh == 1 && s->kw == 1 && s->stride == 1 && s->pad == 0;
  if (s->B <= 0 || OH <= 0 || OW <= 0 || (!dinp && !dweight && !dbias))
    return;
  if (P > INT32_MAX || K > INT32_MAX || s->OC <= 0)
    {
      oftcu_set_error ("oftcu_conv2d_backward: %lld pixels × depth %lld is over the GEMM limit", (long long) P,
                       (long long) K);
      return;
    }
  if (dbias)
    row_sums_add (dt, dbias, dout, s->OC, P, s->B, out_sz);
  if (pw)
    {
      if (dweight)   /* dW[OC, C] += dout_b[OC, P] · inp_bᵀ, image by image */
        for (int b = 0; b < s->B; b++)
          oftcu_gemm (dt, false, true, s->OC, (int) K, (int) P, 1.0f, offset (dout, b * out_sz, dt), (int) P, 0,
                      offset (inp, b * in_sz, dt), (int) P, 0, 1.0f, dweight, (int) K, 0, 1);
      if (dinp)      /* dinp_b[C, P] += Wᵀ · dout_b, all images in one batched GEMM */
        oftcu_gemm (dt, true, false, (int) K, (int) P, s->OC, 1.0f, weight, (int) K, 0, dout, (int) P, out_sz, 1.0f,
                    dinp, (int) P, in_sz, s->B);
      return;
    }
  if (!dweight && !dinp)
    return;
  /* chunks from the scratch the caller has (oftcu_conv2d_scratch_bytes): whole images while they fit,
   * else pixel ranges of one image */
  const size_t have = scratch ? oftcu_conv2d_scratch_bytes (dt, s) : 0;
  const size_t col1 = (size_t) K * (size_t) P * es;
  int imgs = 1;
  int64_t pix = P;
  if (have >= col1)
    imgs = (int) (have / col1 < (size_t) s->B ? have / col1 : (size_t) s->B);
  else
    pix = (int64_t) (have / ((size_t) K * es));
  if (pix <= 0)
    {
      oftcu_set_error ("oftcu_conv2d_backward: needs scratch of at least %zu bytes (one col row), got %zu",
                       (size_t) K * es, have);
      return;
    }
  for (int b0 = 0; b0 < s->B; b0 += imgs)
    {
      const int nimg = s->B - b0 < imgs ? s->B - b0 : imgs;
      for (int64_t p0 = 0; p0 < P; p0 += pix)
        {
          const int64_t np = P - p0 < pix ? P - p0 : pix;
          const char *d0 = offset (dout, b0 * out_sz + p0, dt);   /* dout[b0][0][p0], rows P apart */
          if (dweight) /* dW[OC, K] += dout_i[OC, np] · col_iᵀ */
            {
              const dim3 ig = im2col_grid ((int64_t) nimg * s->C, np);
              OFTCU_DISPATCH (dt, "oftcu_conv2d_backward im2col", {
                k_im2col_chunk<T><<<ig, 256, 0, oftcu_stream ()>>> (
                    (T *) scratch, (const T *) offset (inp, b0 * in_sz, dt), nimg, s->C, s->H, s->W, s->kh, s->kw,
                    s->stride, s->pad, OW, p0, np);
              });
              OFTCU_CHECK_LAUNCH ("oftcu_conv2d_backward im2col");
              for (int i = 0; i < nimg; i++)
                oftcu_gemm (dt, false, true, s->OC, (int) K, (int) np, 1.0f, d0 + i * out_sz * (int64_t) es, (int) P,
                            0, offset (scratch, i * K * np, dt), (int) np, 0, 1.0f, dweight, (int) K, 0, 1);
            }
          if (dinp)    /* dcol_i[K, np] = Wᵀ · dout_i (batched over the chunk), gathered back onto the images */
            {
              oftcu_gemm (dt, true, false, (int) K, (int) np, s->OC, 1.0f, weight, (int) K, 0, d0, (int) P, out_sz,
                          0.0f, scratch, (int) np, K * np, nimg);
              const dim3 cg2 = im2col_grid ((int64_t) nimg * s->C, (int64_t) s->H * s->W);
              OFTCU_DISPATCH (dt, "oftcu_conv2d_backward col2im", {
                k_col2im_chunk_add<T><<<cg2, 256, 0, oftcu_stream ()>>> (
                    (T *) offset (dinp, b0 * in_sz, dt), (const T *) scratch, nimg, s->C, s->H, s->W, s->kh, s->kw,
                    s->stride, s->pad, OH, OW, p0, np);
              });
              OFTCU_CHECK_LAUNCH ("oftcu_conv2d_backward col2im");
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* group norm. A block takes one group of one or more images (one image per block unless dweight/dbias */
/* are asked for with B > 1: then the block loops over the batch, so each channel's dweight/dbias is   */
/* owned by one block and summed over the images in order, as the CPU does). Warps split the group's   */
/* channels (wpc warps per channel), so the whole group is read at once; their partial sums are        */
/* combined in a fixed order.                                                                          */

#define GN_THREADS 1024

template <typename T>
__global__ void __launch_bounds__ (GN_THREADS)
k_groupnorm_backward (T *dinp, float *dweight, float *dbias, const T *dout, const T *inp, const float *mean,
                      const float *rstd, const float *weight, int B, int C, int64_t HW, int G)
{
  /* part[2][cg·wpc] (Σ dout, Σ dout·x̂ per warp), then cs[cg], csx[cg] */
  OFTCU_DYNAMIC_SMEM (float, gn_sm);
  const int g = blockIdx.x, cg = C / G, c0 = g * cg;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int wpc = cg < nw ? nw / cg : 1, slots = nw / wpc;   /* warps per channel, channels at once */
  const int64_t M = (int64_t) cg * HW;
  float *part = gn_sm, *s_cs = part + 2 * cg * wpc, *s_csx = s_cs + cg;
  for (int b = blockIdx.y; b < B; b += gridDim.y)
    {
      const int64_t off = ((int64_t) b * G + g) * M;
      const float m = mean[b * G + g], r = rstd[b * G + g];
      if (warp < slots * wpc)
        for (int c = warp / wpc; c < cg; c += slots)
          {
            const int sub = warp % wpc;
            const T *xc = inp + off + c * HW, *dc = dout + off + c * HW;
            float cs = 0.0f, csx = 0.0f;
#pragma unroll 4
            for (int64_t i = (int64_t) sub * 32 + lane; i < HW; i += (int64_t) wpc * 32)
              {
                const float d = oftcu_f (dc[i]), xh = (oftcu_f (xc[i]) - m) * r;
                cs += d;
                csx += d * xh;
              }
            cs = oftcu_warp_sum (cs);
            csx = oftcu_warp_sum (csx);
            if (lane == 0)
              {
                part[c * wpc + sub] = cs;
                part[cg * wpc + c * wpc + sub] = csx;
              }
          }
      __syncthreads ();
      for (int c = threadIdx.x; c < cg; c += blockDim.x)
        {
          float cs = 0.0f, csx = 0.0f;
          for (int sub = 0; sub < wpc; sub++)
            {
              cs += part[c * wpc + sub];
              csx += part[cg * wpc + c * wpc + sub];
            }
          s_cs[c] = cs;
          s_csx[c] = csx;
          if (dbias)
            dbias[c0 + c] += cs;
          if (dweight)
            dweight[c0 + c] += csx;
        }
      __syncthreads ();
      if (dinp)
        {
          /* every thread forms the same group sums in the same order */
          float sd = 0.0f, sdx = 0.0f;
          for (int c = 0; c < cg; c++)
            {
              const float w = weight ? weight[c0 + c] : 1.0f;
              sd += s_cs[c] * w;
              sdx += s_csx[c] * w;
            }
          const float md = sd / (float) M, mdx = sdx / (float) M;
          for (int c = 0; c < cg; c++)
            {
              const float w = weight ? weight[c0 + c] : 1.0f;
              const T *xc = inp + off + c * HW, *dc = dout + off + c * HW;
              T *dxc = dinp + off + c * HW;
#pragma unroll 4
              for (int64_t i = threadIdx.x; i < HW; i += blockDim.x)
                {
                  const float xh = (oftcu_f (xc[i]) - m) * r;
                  oftcu_add_to (dxc, i, r * (oftcu_f (dc[i]) * w - md - xh * mdx));
                }
            }
        }
      __syncthreads ();  /* part, s_cs, s_csx are rewritten for the next image */
    }
}

extern "C" void
oftcu_groupnorm_backward (OftCuDtype dt, void *dinp, float *dweight, float *dbias, const void *dout,
                          const void *inp, const float *mean, const float *rstd, const float *weight,
                          int B, int C, int64_t HW, int G)
{
  if (B <= 0 || G <= 0 || HW <= 0 || (!dinp && !dweight && !dbias))
    return;
  if (C % G != 0 || B > 65535)
    {
      oftcu_set_error ("groupnorm backward: %d channels do not split into %d groups (or batch %d too large)", C,
                       G, B);
      return;
    }
  const int cg = C / G, nw = GN_THREADS / 32, wpc = cg < nw ? nw / cg : 1;
  const size_t sm = sizeof (float) * (2 * (size_t) cg * wpc + 2 * (size_t) cg);
  if (sm > 48 * 1024)
    {
      oftcu_set_error ("groupnorm backward: %d channels per group (at most %d)", cg, 48 * 1024 / 16);
      return;
    }
  /* a block per (group, image) unless per-channel sums must run over the images in one block */
  dim3 grid (G, (dweight || dbias) ? 1 : B);
  OFTCU_DISPATCH (dt, "groupnorm backward", {
    k_groupnorm_backward<T><<<grid, GN_THREADS, sm, oftcu_stream ()>>> ((T *) dinp, dweight, dbias,
        (const T *) dout, (const T *) inp, mean, rstd, weight, B, C, HW, G);
  });
  OFTCU_CHECK_LAUNCH ("groupnorm backward");
}

/* ------------------------------------------------------------------------------------------------ */
/* layer norm: a warp per row for dinp; dweight/dbias as column sums in a second kernel              */

template <typename T>
__global__ void
k_layernorm_backward_dx (T *dinp, const T *dout, const T *inp, const float *mean, const float *rstd,
                         const float *weight, int64_t N, int C)
{
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * (int64_t) (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= N)
    return;   /* whole warps only: no block barrier below */
  const T *x = inp + row * C, *d = dout + row * C;
  const float m = mean[row], r = rstd[row];
  float sd = 0.0f, sdx = 0.0f;
  for (int i = lane; i < C; i += 32)
    {
      const float xh = (oftcu_f (x[i]) - m) * r, dxh = oftcu_f (d[i]) * (weight ? weight[i] : 1.0f);
      sd += dxh;
      sdx += dxh * xh;
    }
  sd = oftcu_warp_sum (sd);
  sdx = oftcu_warp_sum (sdx);
  const float md = sd / (float) C, mdx = sdx / (float) C;
  T *dx = dinp + row * C;
  for (int i = lane; i < C; i += 32)
    {
      const float xh = (oftcu_f (x[i]) - m) * r;
      oftcu_add_to (dx, i, r * (oftcu_f (d[i]) * (weight ? weight[i] : 1.0f) - md - xh * mdx));
    }
}

/* dweight[j] += Σ_n dout[n,j]·x̂[n,j], dbias[j] += Σ_n dout[n,j]; block (32, 32) as k_col_sums_add */
template <typename T>
__global__ void
k_layernorm_backward_dwb (float *dweight, float *dbias, const T *dout, const T *inp, const float *mean,
                          const float *rstd, int64_t N, int C)
{
  __shared__ float shw[32][33], shb[32][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int j = blockIdx.x * 32 + tx;
  float sw = 0.0f, sb = 0.0f;
  if (j < C)
    for (int64_t n = ty; n < N; n += 32)
      {
        const float d = oftcu_f (dout[n * C + j]);
        sw += d * ((oftcu_f (inp[n * C + j]) - mean[n]) * rstd[n]);
        sb += d;
      }
  shw[ty][tx] = sw;
  shb[ty][tx] = sb;
  __syncthreads ();
  if (ty == 0 && j < C)
    {
      float tw = 0.0f, tb = 0.0f;
      for (int r = 0; r < 32; r++)
        {
          tw += shw[r][tx];
          tb += shb[r][tx];
        }
      if (dweight)
        dweight[j] += tw;
      if (dbias)
        dbias[j] += tb;
    }
}

extern "C" void
oftcu_layernorm_backward (OftCuDtype dt, void *dinp, float *dweight, float *dbias, const void *dout,
                          const void *inp, const float *mean, const float *rstd, const float *weight,
                          int64_t N, int C)
{
  if (N <= 0 || C <= 0)
    return;
  if (dinp)
    {
      const unsigned grid = (unsigned) ((N + 7) / 8);
      OFTCU_DISPATCH (dt, "layernorm backward (dinp)", {
        k_layernorm_backward_dx<T><<<grid, 256, 0, oftcu_stream ()>>> ((T *) dinp, (const T *) dout,
            (const T *) inp, mean, rstd, weight, N, C);
      });
      OFTCU_CHECK_LAUNCH ("layernorm backward (dinp)");
    }
  if (dweight || dbias)
    {
      dim3 grid ((C + 31) / 32), block (32, 32);
      OFTCU_DISPATCH (dt, "layernorm backward (dweight, dbias)", {
        k_layernorm_backward_dwb<T><<<grid, block, 0, oftcu_stream ()>>> (dweight, dbias, (const T *) dout,
            (const T *) inp, mean, rstd, N, C);
      });
      OFTCU_CHECK_LAUNCH ("layernorm backward (dweight, dbias)");
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* activations (formulas of oftcore/nn/activations.c)                                                */

#define OFTCU_SQRT1_2     0.70710678118654752440f
#define OFTCU_INV_SQRT2PI 0.39894228040143267794f

__device__ __forceinline__ float
gelu_f (float x)
{
  return 0.5f * x * (1.0f + erff (x * OFTCU_SQRT1_2));
}

/* d/dx of 0.5x(1+erf(x/√2)) = Φ(x) + x·φ(x) */
__device__ __forceinline__ float
gelu_grad_f (float x)
{
  return 0.5f * (1.0f + erff (x * OFTCU_SQRT1_2)) + x * OFTCU_INV_SQRT2PI * expf (-0.5f * x * x);
}

template <typename T>
__global__ void
k_silu_backward (T *dinp, const T *dout, const T *inp, int64_t n)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x)
    {
      const float x = oftcu_f (inp[i]), s = 1.0f / (1.0f + expf (-x));
      oftcu_add_to (dinp, i, oftcu_f (dout[i]) * s * (1.0f + x * (1.0f - s)));
    }
}

template <typename T>
__global__ void
k_gelu_backward (T *dinp, const T *dout, const T *inp, int64_t n)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x)
    oftcu_add_to (dinp, i, oftcu_f (dout[i]) * gelu_grad_f (oftcu_f (inp[i])));
}

/* inp[N, 2C] = [h | gate], out = h·gelu(gate) */
template <typename T>
__global__ void
k_geglu_backward (T *dinp, const T *dout, const T *inp, int64_t N, int C)
{
  const int64_t n = N * C;
  for (int64_t e = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; e < n; e += (int64_t) gridDim.x * blockDim.x)
    {
      const int64_t r = e / C;
      const int c = (int) (e - r * C);
      const int64_t ih = r * 2 * C + c, ig = ih + C;
      const float d = oftcu_f (dout[e]), h = oftcu_f (inp[ih]), gate = oftcu_f (inp[ig]);
      oftcu_add_to (dinp, ih, d * gelu_f (gate));
      oftcu_add_to (dinp, ig, d * h * gelu_grad_f (gate));
    }
}

extern "C" void
oftcu_silu_backward (OftCuDtype dt, void *dinp, const void *dout, const void *inp, int64_t n)
{
  if (n <= 0 || !dinp)
    return;
  OFTCU_DISPATCH (dt, "silu backward", {
    k_silu_backward<T><<<oftcu_grid256 (n), 256, 0, oftcu_stream ()>>> ((T *) dinp, (const T *) dout,
        (const T *) inp, n);
  });
  OFTCU_CHECK_LAUNCH ("silu backward");
}

extern "C" void
oftcu_gelu_backward (OftCuDtype dt, void *dinp, const void *dout, const void *inp, int64_t n)
{
  if (n <= 0 || !dinp)
    return;
  OFTCU_DISPATCH (dt, "gelu backward", {
    k_gelu_backward<T><<<oftcu_grid256 (n), 256, 0, oftcu_stream ()>>> ((T *) dinp, (const T *) dout,
        (const T *) inp, n);
  });
  OFTCU_CHECK_LAUNCH ("gelu backward");
}

extern "C" void
oftcu_geglu_backward (OftCuDtype dt, void *dinp, const void *dout, const void *inp, int64_t N, int C)
{
  if (N <= 0 || C <= 0 || !dinp)
    return;
  OFTCU_DISPATCH (dt, "geglu backward", {
    k_geglu_backward<T><<<oftcu_grid256 (N * C), 256, 0, oftcu_stream ()>>> ((T *) dinp, (const T *) dout,
        (const T *) inp, N, C);
  });
  OFTCU_CHECK_LAUNCH ("geglu backward");
}

/* ------------------------------------------------------------------------------------------------ */
/* softmax: a warp per row, dinp += p ⊙ (dp − Σ dp·p)                                                */

template <typename T>
__global__ void
k_softmax_backward (T *dinp, const T *dout, const T *out, int64_t N, int C)
{
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * (int64_t) (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= N)
    return;
  const T *dp = dout + row * C, *p = out + row * C;
  float dot = 0.0f;
  for (int j = lane; j < C; j += 32)
    dot += oftcu_f (dp[j]) * oftcu_f (p[j]);
  dot = oftcu_warp_sum (dot);
  T *d = dinp + row * C;
  for (int j = lane; j < C; j += 32)
    oftcu_add_to (d, j, oftcu_f (p[j]) * (oftcu_f (dp[j]) - dot));
}

extern "C" void
oftcu_softmax_backward (OftCuDtype dt, void *dinp, const void *dout, const void *out, int64_t N, int C)
{
  if (N <= 0 || C <= 0 || !dinp)
    return;
  const unsigned grid = (unsigned) ((N + 7) / 8);
  OFTCU_DISPATCH (dt, "softmax backward", {
    k_softmax_backward<T><<<grid, 256, 0, oftcu_stream ()>>> ((T *) dinp, (const T *) dout, (const T *) out, N,
        C);
  });
  OFTCU_CHECK_LAUNCH ("softmax backward");
}

/* ------------------------------------------------------------------------------------------------ */
/* attention backward, flash-style (FlashAttention-2's algorithm): P = exp(s·q·kᵀ − lse) is recomputed */
/* tile by tile from the forward's lse; D_i = rowsum(dO ∘ O); dS = P ∘ (dP − D_i), dP = dO·vᵀ.          */
/* Two kernels so that no output needs atomics: one per key tile (dk, dv: loops over the query        */
/* tiles), one per query tile (dq: loops over the key tiles, recomputing P and dP). fp32 tiles in     */
/* shared memory, 256 threads as 16×16, each owning a register micro-tile of rows ty + 16a and        */
/* columns tx + 16b (rows of a 16-thread half-warp broadcast, columns hit distinct banks: row          */
/* strides are odd).                                                                                  */

#define ATT_THREADS 256

struct AttDims {
  int Tq, Tk, H, D, LD;   /* LD: odd row stride of the [rows][D] tiles in shared memory */
  bool causal;
  float scale;
};

/* rows of a [T, H·D] tensor starting at row0, head h of batch b, into s[rows][LD] (zero past T) */
template <typename T>
__device__ __forceinline__ void
att_load_tile (float *s, const T *g, int b, int h, int row0, int T_, int rows, const AttDims &a)
{
  const int HD = a.H * a.D;
  for (int e = threadIdx.x; e < rows * a.D; e += ATT_THREADS)
    {
      const int r = e / a.D, d = e - r * a.D, i = row0 + r;
      s[r * a.LD + d] = i < T_ ? oftcu_f (g[((int64_t) b * T_ + i) * HD + (int64_t) h * a.D + d]) : 0.0f;
    }
}

/* D_i = Σ_d dO[i,d]·O[i,d] and lse_i for the rows of a query tile: warps take rows in turn. Rows past
 * Tq get D = 0, lse = 0 (their P is masked to 0). */
template <typename T, int BR, int NWARPS>
__device__ __forceinline__ void
att_row_stats (float *sDi, float *sLse, const T *dout, const T *out, const float *lse, int b, int h, int i0,
               const AttDims &a)
{
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, HD = a.H * a.D;
  for (int r = warp; r < BR; r += NWARPS)
    {
      const int i = i0 + r;
      float s = 0.0f;
      if (i < a.Tq)
        {
          const int64_t o = ((int64_t) b * a.Tq + i) * HD + (int64_t) h * a.D;
          for (int d = lane; d < a.D; d += 32)
            s += oftcu_f (dout[o + d]) * oftcu_f (out[o + d]);
        }
      s = oftcu_warp_sum (s);
      if (lane == 0)
        {
          sDi[r] = s;
          sLse[r] = i < a.Tq ? lse[((int64_t) b * a.H + h) * a.Tq + i] : 0.0f;
        }
    }
}

/* acc[a][c] = Σ_d X[ty + 16a][d]·Y[tx + 16c][d]  (X: [BR][LD], Y: [BC][LD]) */
template <int BR, int BC>
__device__ __forceinline__ void
att_mm_nt (float (&acc)[BR / 16][BC / 16], const float *X, const float *Y, const AttDims &a)
{
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
  for (int i = 0; i < BR / 16; i++)
#pragma unroll
    for (int j = 0; j < BC / 16; j++)
      acc[i][j] = 0.0f;
  for (int d = 0; d < a.D; d++)
    {
      float xv[BR / 16], yv[BC / 16];
#pragma unroll
      for (int i = 0; i < BR / 16; i++)
        xv[i] = X[(ty + 16 * i) * a.LD + d];
#pragma unroll
      for (int j = 0; j < BC / 16; j++)
        yv[j] = Y[(tx + 16 * j) * a.LD + d];
#pragma unroll
      for (int i = 0; i < BR / 16; i++)
#pragma unroll
        for (int j = 0; j < BC / 16; j++)
          acc[i][j] += xv[i] * yv[j];
    }
}

/* P (masked) from the score micro-tile of rows i0 + ty + 16a, keys j0 + tx + 16c */
template <int BR, int BC>
__device__ __forceinline__ void
att_probs (float (&p)[BR / 16][BC / 16], const float *sLse, int i0, int j0, const AttDims &a)
{
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
  for (int i = 0; i < BR / 16; i++)
#pragma unroll
    for (int j = 0; j < BC / 16; j++)
      {
        const int r = ty + 16 * i, qi = i0 + r, kj = j0 + tx + 16 * j;
        const bool valid = qi < a.Tq && kj < a.Tk && (!a.causal || kj <= qi);
        p[i][j] = valid ? expf (p[i][j] * a.scale - sLse[r]) : 0.0f;
      }
}

/* acc[a][c] += Σ_r Pt[r][ty + 16a]·Y[r][tx + 16c] over r < R  (Pt: [R][LDP], Y: [R][LD]); d = tx + 16c ≥ D
 * reads 0 (never past the row) */
template <int NA, int DMAX>
__device__ __forceinline__ void
att_mm_tn (float (&acc)[NA][DMAX / 16], const float *Pt, int ldp, const float *Y, int R, const AttDims &a)
{
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  for (int r = 0; r < R; r++)
    {
      float pv[NA], yv[DMAX / 16];
#pragma unroll
      for (int i = 0; i < NA; i++)
        pv[i] = Pt[r * ldp + ty + 16 * i];
#pragma unroll
      for (int j = 0; j < DMAX / 16; j++)
        {
          const int d = tx + 16 * j;
          yv[j] = d < a.D ? Y[r * a.LD + d] : 0.0f;
        }
#pragma unroll
      for (int i = 0; i < NA; i++)
#pragma unroll
        for (int j = 0; j < DMAX / 16; j++)
          acc[i][j] += pv[i] * yv[j];
    }
}

/* acc[a][c] += Σ_k S[ty + 16a][k]·Y[k][tx + 16c] over k < KC  (S: [..][LDP], Y: [KC][LD]) */
template <int NA, int DMAX>
__device__ __forceinline__ void
att_mm_nn (float (&acc)[NA][DMAX / 16], const float *S, int ldp, const float *Y, int KC, const AttDims &a)
{
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  for (int k = 0; k < KC; k++)
    {
      float sv[NA], yv[DMAX / 16];
#pragma unroll
      for (int i = 0; i < NA; i++)
        sv[i] = S[(ty + 16 * i) * ldp + k];
#pragma unroll
      for (int j = 0; j < DMAX / 16; j++)
        {
          const int d = tx + 16 * j;
          yv[j] = d < a.D ? Y[k * a.LD + d] : 0.0f;
        }
#pragma unroll
      for (int i = 0; i < NA; i++)
#pragma unroll
        for (int j = 0; j < DMAX / 16; j++)
          acc[i][j] += sv[i] * yv[j];
    }
}

/* g[rows of a tile][d] += scale·acc for rows row0 + ty + 16a < T, d = tx + 16c < D */
template <typename T, int NA, int DMAX>
__device__ __forceinline__ void
att_store_add (T *g, const float (&acc)[NA][DMAX / 16], float scale, int b, int h, int row0, int T_,
               const AttDims &a)
{
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4, HD = a.H * a.D;
#pragma unroll
  for (int i = 0; i < NA; i++)
    {
      const int row = row0 + ty + 16 * i;
      if (row >= T_)
        continue;
      const int64_t o = ((int64_t) b * T_ + row) * HD + (int64_t) h * a.D;
#pragma unroll
      for (int j = 0; j < DMAX / 16; j++)
        {
          const int d = tx + 16 * j;
          if (d < a.D)
            oftcu_add_to (g, o + d, scale * acc[i][j]);
        }
    }
}

static inline size_t
att_smem_floats (int BR, int BC, int LD)
{
  /* sQ, sdO [BR][LD]; sK, sV [BC][LD]; sP [BR][BC + 1]; sDi, sLse [BR] */
  return (size_t) (2 * BR + 2 * BC) * LD + (size_t) BR * (BC + 1) + 2 * (size_t) BR;
}

/* dk, dv of one key tile (grid.x) of one (batch, head) (grid.y) */
template <typename T, int DMAX, int BR, int BC>
__global__ void __launch_bounds__ (ATT_THREADS)
k_attention_backward_dkdv (T *dk, T *dv, const T *dout, const T *out, const float *lse, const T *q, const T *k,
                           const T *v, AttDims a)
{
  OFTCU_DYNAMIC_SMEM (float, att_sm);
  const int LDP = BC + 1;
  float *sQ = att_sm, *sdO = sQ + BR * a.LD, *sK = sdO + BR * a.LD, *sV = sK + BC * a.LD;
  float *sP = sV + BC * a.LD, *sDi = sP + BR * LDP, *sLse = sDi + BR;
  const int j0 = blockIdx.x * BC, b = blockIdx.y / a.H, h = blockIdx.y % a.H;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;

  att_load_tile (sK, k, b, h, j0, a.Tk, BC, a);
  att_load_tile (sV, v, b, h, j0, a.Tk, BC, a);
  float acc_k[BC / 16][DMAX / 16], acc_v[BC / 16][DMAX / 16];
#pragma unroll
  for (int i = 0; i < BC / 16; i++)
#pragma unroll
    for (int j = 0; j < DMAX / 16; j++)
      acc_k[i][j] = acc_v[i][j] = 0.0f;

  /* causal: query rows below j0 see none of these keys */
  const int i_start = a.causal ? (j0 / BR) * BR : 0;
  for (int i0 = i_start; i0 < a.Tq; i0 += BR)
    {
      att_load_tile (sQ, q, b, h, i0, a.Tq, BR, a);
      att_load_tile (sdO, dout, b, h, i0, a.Tq, BR, a);
      att_row_stats<T, BR, ATT_THREADS / 32> (sDi, sLse, dout, out, lse, b, h, i0, a);
      __syncthreads ();

      float p[BR / 16][BC / 16], dp[BR / 16][BC / 16];
      att_mm_nt<BR, BC> (p, sQ, sK, a);
      att_probs<BR, BC> (p, sLse, i0, j0, a);
#pragma unroll
      for (int i = 0; i < BR / 16; i++)
#pragma unroll
        for (int j = 0; j < BC / 16; j++)
          sP[(ty + 16 * i) * LDP + tx + 16 * j] = p[i][j];
      __syncthreads ();

      att_mm_tn<BC / 16, DMAX> (acc_v, sP, LDP, sdO, BR, a);       /* dV += Pᵀ·dO */
      att_mm_nt<BR, BC> (dp, sdO, sV, a);                          /* dP = dO·Vᵀ */
      __syncthreads ();                                            /* sP fully read */
#pragma unroll
      for (int i = 0; i < BR / 16; i++)
#pragma unroll
        for (int j = 0; j < BC / 16; j++)
          sP[(ty + 16 * i) * LDP + tx + 16 * j] = p[i][j] * (dp[i][j] - sDi[ty + 16 * i]);  /* dS */
      __syncthreads ();

      att_mm_tn<BC / 16, DMAX> (acc_k, sP, LDP, sQ, BR, a);        /* dK += dSᵀ·Q (× scale below) */
      __syncthreads ();                                            /* before the next tile's loads */
    }
  if (dk)
    att_store_add<T, BC / 16, DMAX> (dk, acc_k, a.scale, b, h, j0, a.Tk, a);
  if (dv)
    att_store_add<T, BC / 16, DMAX> (dv, acc_v, 1.0f, b, h, j0, a.Tk, a);
}

/* dq of one query tile (grid.x) of one (batch, head) (grid.y) */
template <typename T, int DMAX, int BR, int BC>
__global__ void __launch_bounds__ (ATT_THREADS)
k_attention_backward_dq (T *dq, const T *dout, const T *out, const float *lse, const T *q, const T *k,
                         const T *v, AttDims a)
{
  OFTCU_DYNAMIC_SMEM (float, att_sm);
  const int LDP = BC + 1;
  float *sQ = att_sm, *sdO = sQ + BR * a.LD, *sK = sdO + BR * a.LD, *sV = sK + BC * a.LD;
  float *sP = sV + BC * a.LD, *sDi = sP + BR * LDP, *sLse = sDi + BR;
  const int i0 = blockIdx.x * BR, b = blockIdx.y / a.H, h = blockIdx.y % a.H;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;

  att_load_tile (sQ, q, b, h, i0, a.Tq, BR, a);
  att_load_tile (sdO, dout, b, h, i0, a.Tq, BR, a);
  att_row_stats<T, BR, ATT_THREADS / 32> (sDi, sLse, dout, out, lse, b, h, i0, a);
  float acc[BR / 16][DMAX / 16];
#pragma unroll
  for (int i = 0; i < BR / 16; i++)
#pragma unroll
    for (int j = 0; j < DMAX / 16; j++)
      acc[i][j] = 0.0f;

  /* causal: keys past the tile's last row are masked for all its rows */
  const int j_end = a.causal ? min (a.Tk, i0 + BR) : a.Tk;
  for (int j0 = 0; j0 < j_end; j0 += BC)
    {
      att_load_tile (sK, k, b, h, j0, a.Tk, BC, a);
      att_load_tile (sV, v, b, h, j0, a.Tk, BC, a);
      __syncthreads ();

      float p[BR / 16][BC / 16], dp[BR / 16][BC / 16];
      att_mm_nt<BR, BC> (p, sQ, sK, a);
      att_probs<BR, BC> (p, sLse, i0, j0, a);
      att_mm_nt<BR, BC> (dp, sdO, sV, a);
#pragma unroll
      for (int i = 0; i < BR / 16; i++)
#pragma unroll
        for (int j = 0; j < BC / 16; j++)
          sP[(ty + 16 * i) * LDP + tx + 16 * j] = p[i][j] * (dp[i][j] - sDi[ty + 16 * i]);  /* dS */
      __syncthreads ();

      att_mm_nn<BR / 16, DMAX> (acc, sP, LDP, sK, BC, a);          /* dQ += dS·K (× scale below) */
      __syncthreads ();                                            /* before the next tile's loads */
    }
  att_store_add<T, BR / 16, DMAX> (dq, acc, a.scale, b, h, i0, a.Tq, a);
}

/* the device's opt-in limit of shared memory per block */
static int
att_smem_optin (void)
{
  static int optin = -1;
  if (optin < 0)
    {
      int dev = 0, val = 0;
      cudaGetDevice (&dev);
      if (cudaDeviceGetAttribute (&val, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
        val = 48 * 1024;
      optin = val;
    }
  return optin;
}

template <typename T, int DMAX, int BR, int BC>
static void
attention_backward_launch (T *dq, T *dk, T *dv, const T *dout, const T *out, const float *lse, const T *q,
                           const T *k, const T *v, int B, const AttDims &a)
{
  const size_t smem = att_smem_floats (BR, BC, a.LD) * sizeof (float);
  const int optin = att_smem_optin ();
  if (smem > (size_t) optin)
    {
      oftcu_set_error ("attention backward: head dim %d needs %zu bytes of shared memory per block, the device has %d",
                  a.D, smem, optin);
      return;
    }
  if (dk || dv)
    {
      cudaFuncSetAttribute (k_attention_backward_dkdv<T, DMAX, BR, BC>,
                            cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem);
      dim3 grid ((a.Tk + BC - 1) / BC, B * a.H);
      k_attention_backward_dkdv<T, DMAX, BR, BC><<<grid, ATT_THREADS, smem, oftcu_stream ()>>> (dk, dv, dout, out, lse,
                                                                                            q, k, v, a);
      OFTCU_CHECK_LAUNCH ("attention backward (dk, dv)");
    }
  if (dq)
    {
      cudaFuncSetAttribute (k_attention_backward_dq<T, DMAX, BR, BC>,
                            cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem);
      dim3 grid ((a.Tq + BR - 1) / BR, B * a.H);
      k_attention_backward_dq<T, DMAX, BR, BC><<<grid, ATT_THREADS, smem, oftcu_stream ()>>> (dq, dout, out, lse, q,
                                                                                          k, v, a);
      OFTCU_CHECK_LAUNCH ("attention backward (dq)");
    }
}


/* ------------------------------------------------------------------------------------------------ */
/* bf16 tensor-core attention backward (mma.sync m16n8k16, fp32 accumulation): the same two kernels and */
/* formulas as above, for bf16 with D a multiple of 8 up to 128 (SD1.5's 40 and 80, CLIP's 64). Blocks   */
/* of 4 warps own 64 rows (keys for dk/dv, queries for dq), 16 per warp, and stream 64-row tiles of the  */
/* other side through shared memory (bf16, head dim zero-padded to DP, a multiple of 16; row stride      */
/* DP + 8 elements: 16-byte rows whose ldmatrix addresses hit distinct banks). The dk/dv kernel computes */
/* the scores transposed, Sᵀ = K·Qᵀ, so that Pᵀ and dSᵀ come out of the accumulators already as the A    */
/* operands of dV += Pᵀ·dO and dK += dSᵀ·Q (an m16n8 accumulator pair is an m16k16 A fragment). P and dS */
/* are rounded to bf16 for those products, as in FlashAttention.                                         */

#define AMMA_WARPS 4
#define AMMA_ROWS  64     /* rows per block and per streamed tile */
#define AMMA_LOG2E 1.44269504088896340736f

static inline bool
att_mma_supports (int D, const void *const *ptrs, int n)
{
  if (D % 8 != 0 || D > 128)
    return false;
  for (int i = 0; i < n; i++)   /* 16-byte row loads */
    if (ptrs[i] && ((uintptr_t) ptrs[i] & 15))
      return false;
  return true;
}

/* rows [row0, row0 + 64) of a [T, H·D] head slice (base at its row 0, column h·D) into s[64][DP + 8],
 * zero past T rows and D columns */
template <int DP>
__device__ __forceinline__ void
amma_load (__nv_bfloat16 *s, const __nv_bfloat16 *base, int row0, int T_, int D, int HD)
{
  constexpr int LDS = DP + 8, CH = DP / 8;
  for (int i = threadIdx.x; i < AMMA_ROWS * CH; i += AMMA_WARPS * 32)
    {
      const int r = i / CH, c = i - r * CH;
      uint4 v = make_uint4 (0u, 0u, 0u, 0u);
      if (row0 + r < T_ && c * 8 < D)
        v = *(const uint4 *) (base + (int64_t) (row0 + r) * HD + c * 8);
      *(uint4 *) (s + r * LDS + c * 8) = v;
    }
}

/* A fragment: rows r0..r0+15, columns k0..k0+15 of a row-major tile */
template <int LDS>
__device__ __forceinline__ void
amma_frag_a (unsigned a[4], const __nv_bfloat16 *s, int r0, int k0)
{
  const int lane = threadIdx.x & 31;
  oftcu_ldsm_x4 (a, s + (r0 + (lane & 15)) * LDS + k0 + (lane >> 4) * 8);
}

/* B fragments of two n-blocks (n0, n0 + 8) at k0..k0+15 from a tile stored n-major (rows n, columns k):
 * b[0], b[1] for n-block n0, b[2], b[3] for n0 + 8 */
template <int LDS>
__device__ __forceinline__ void
amma_frag_b_nmajor (unsigned b[4], const __nv_bfloat16 *s, int n0, int k0)
{
  const int lane = threadIdx.x & 31, j = lane >> 3;
  oftcu_ldsm_x4 (b, s + (n0 + (j >> 1) * 8 + (lane & 7)) * LDS + k0 + (j & 1) * 8);
}

/* the same from a tile stored k-major (rows k, columns n), through ldmatrix.trans */
template <int LDS>
__device__ __forceinline__ void
amma_frag_b_kmajor (unsigned b[4], const __nv_bfloat16 *s, int n0, int k0)
{
  const int lane = threadIdx.x & 31, j = lane >> 3;
  oftcu_ldsm_x4_trans (b, s + (k0 + (j & 1) * 8 + (lane & 7)) * LDS + n0 + (j >> 1) * 8);
}

/* acc[8][4] = X[r0..r0+15] · Y[0..63]ᵀ over DP columns (X, Y row-major [rows][LDS]) */
template <int DP>
__device__ __forceinline__ void
amma_scores (float (&acc)[8][4], const __nv_bfloat16 *X, int r0, const __nv_bfloat16 *Y)
{
  constexpr int LDS = DP + 8;
#pragma unroll
  for (int n = 0; n < 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      acc[n][e] = 0.0f;
#pragma unroll
  for (int k0 = 0; k0 < DP; k0 += 16)
    {
      unsigned a[4];
      amma_frag_a<LDS> (a, X, r0, k0);
#pragma unroll
      for (int n2 = 0; n2 < 4; n2++)
        {
          unsigned b[4];
          amma_frag_b_nmajor<LDS> (b, Y, n2 * 16, k0);
          oftcu_mma_bf16 (acc[2 * n2], a, b[0], b[1]);
          oftcu_mma_bf16 (acc[2 * n2 + 1], a, b[2], b[3]);
        }
    }
}

/* acc[DP/8][4] += M · Y, M the warp's 16×64 matrix in accumulator layout (rounded to bf16), Y [64][LDS]
 * row-major (rows = the 64 of M's columns) */
template <int DP>
__device__ __forceinline__ void
amma_accumulate (float (&acc)[DP / 8][4], const float (&m)[8][4], const __nv_bfloat16 *Y)
{
  constexpr int LDS = DP + 8;
#pragma unroll
  for (int kk = 0; kk < 4; kk++)
    {
      const unsigned a[4] = { oftcu_pack_bf16 (m[2 * kk][0], m[2 * kk][1]),
                              oftcu_pack_bf16 (m[2 * kk][2], m[2 * kk][3]),
                              oftcu_pack_bf16 (m[2 * kk + 1][0], m[2 * kk + 1][1]),
                              oftcu_pack_bf16 (m[2 * kk + 1][2], m[2 * kk + 1][3]) };
#pragma unroll
      for (int n2 = 0; n2 < DP / 16; n2++)
        {
          unsigned b[4];
          amma_frag_b_kmajor<LDS> (b, Y, n2 * 16, kk * 16);
          oftcu_mma_bf16 (acc[2 * n2], a, b[0], b[1]);
          oftcu_mma_bf16 (acc[2 * n2 + 1], a, b[2], b[3]);
        }
    }
}

/* One element of a warp's tile: added to a bf16 gradient, or stored as an fp32 partial sum (reduced later). */
__device__ __forceinline__ void
amma_put (__nv_bfloat16 *g, int64_t i, float v)
{
  oftcu_add_to (g, i, v);
}

__device__ __forceinline__ void
amma_put (float *g, int64_t i, float v)
{
  g[i] = v;
}

/* g[row][d] (+)= scale·acc (amma_put) for the warp's rows row0 + g (+8), d = 8n + 2t (+1) < D, rows < T */
template <int DP, typename T>
__device__ __forceinline__ void
amma_store (T *gbase, const float (&acc)[DP / 8][4], float scale, int row0, int T_, int D, int HD)
{
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int n = 0; n < DP / 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      {
        const int row = row0 + g + (e >> 1) * 8, d = n * 8 + 2 * t + (e & 1);
        if (row < T_ && d < D)
          amma_put (gbase, (int64_t) row * HD + d, scale * acc[n][e]);
      }
}

/* dK, dV of one 64-key tile (blockIdx.x) of one head (blockIdx.y) over the queries of chunk blockIdx.z
 * (q_chunk rows, a multiple of 64). part NULL: added to dk, dv. Otherwise the chunk's sums go to
 * part_k/part_v[chunk][B·Tk·H·D] (fp32; part_stride = B·Tk·H·D) and k_att_dkdv_reduce adds them up. */
template <int DP>
__global__ void __launch_bounds__ (AMMA_WARPS * 32)
k_attention_backward_dkdv_mma (__nv_bfloat16 *dk, __nv_bfloat16 *dv, const __nv_bfloat16 *dout,
                               const __nv_bfloat16 *out, const float *lse, const __nv_bfloat16 *q,
                               const __nv_bfloat16 *k, const __nv_bfloat16 *v, AttDims a, int q_chunk,
                               float *part_k, float *part_v, int64_t part_stride)
{
  constexpr int LDS = DP + 8;
  OFTCU_DYNAMIC_SMEM (uint4, amma_sm_kv);
  __nv_bfloat16 *sK = (__nv_bfloat16 *) amma_sm_kv, *sV = sK + AMMA_ROWS * LDS, *sQ = sV + AMMA_ROWS * LDS,
                *sdO = sQ + AMMA_ROWS * LDS;
  float *sLse = (float *) (sdO + AMMA_ROWS * LDS), *sDi = sLse + AMMA_ROWS;
  const int j0 = blockIdx.x * AMMA_ROWS, b = blockIdx.y / a.H, h = blockIdx.y % a.H, HD = a.H * a.D;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t qoff = (int64_t) b * a.Tq * HD + (int64_t) h * a.D, koff = (int64_t) b * a.Tk * HD + (int64_t) h * a.D;
  const float scale_log2 = a.scale * AMMA_LOG2E;

  amma_load<DP> (sK, k + koff, j0, a.Tk, a.D, HD);
  amma_load<DP> (sV, v + koff, j0, a.Tk, a.D, HD);
  float acc_k[DP / 8][4], acc_v[DP / 8][4];
#pragma unroll
  for (int n = 0; n < DP / 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      acc_k[n][e] = acc_v[n][e] = 0.0f;

  const int i_lo = blockIdx.z * q_chunk, i_hi = min (a.Tq, i_lo + q_chunk);
  const int i_start = max (i_lo, a.causal ? (j0 / AMMA_ROWS) * AMMA_ROWS : 0);
  for (int i0 = i_start; i0 < i_hi; i0 += AMMA_ROWS)
    {
      __syncthreads ();   /* the previous tile is consumed */
      amma_load<DP> (sQ, q + qoff, i0, a.Tq, a.D, HD);
      amma_load<DP> (sdO, dout + qoff, i0, a.Tq, a.D, HD);
      att_row_stats<__nv_bfloat16, AMMA_ROWS, AMMA_WARPS> (sDi, sLse, dout, out, lse, b, h, i0, a);
      __syncthreads ();

      /* Pᵀ (16 keys × 64 queries) */
      float p[8][4], dp[8][4];
      amma_scores<DP> (p, sK, warp * 16, sQ);
#pragma unroll
      for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          {
            const int kj = j0 + warp * 16 + g + (e >> 1) * 8, r = n * 8 + 2 * t + (e & 1), qi = i0 + r;
            const bool valid = qi < a.Tq && kj < a.Tk && (!a.causal || kj <= qi);
            p[n][e] = valid ? exp2f (p[n][e] * scale_log2 - sLse[r] * AMMA_LOG2E) : 0.0f;
          }
      amma_accumulate<DP> (acc_v, p, sdO);                 /* dV += Pᵀ·dO */
      amma_scores<DP> (dp, sV, warp * 16, sdO);            /* dPᵀ = V·dOᵀ */
#pragma unroll
      for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          dp[n][e] = p[n][e] * (dp[n][e] - sDi[n * 8 + 2 * t + (e & 1)]);   /* dSᵀ */
      amma_accumulate<DP> (acc_k, dp, sQ);                 /* dK += dSᵀ·Q (× scale below) */
    }
  if (part_k)
    {
      const int64_t z = (int64_t) blockIdx.z * part_stride + koff;
      amma_store<DP> (part_k + z, acc_k, a.scale, j0 + warp * 16, a.Tk, a.D, HD);
      amma_store<DP> (part_v + z, acc_v, 1.0f, j0 + warp * 16, a.Tk, a.D, HD);
      return;
    }
  if (dk)
    amma_store<DP> (dk + koff, acc_k, a.scale, j0 + warp * 16, a.Tk, a.D, HD);
  if (dv)
    amma_store<DP> (dv + koff, acc_v, 1.0f, j0 + warp * 16, a.Tk, a.D, HD);
}

/* dk += Σ_z part_k[z], dv likewise, the chunks summed in order (deterministic) */
__global__ void
k_att_dkdv_reduce (__nv_bfloat16 *dk, __nv_bfloat16 *dv, const float *part_k, const float *part_v, int S, int64_t n)
{
  for (int64_t e = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; e < n; e += (int64_t) gridDim.x * blockDim.x)
    {
      float sk = 0.0f, sv = 0.0f;
      for (int z = 0; z < S; z++)
        {
          sk += part_k[z * n + e];
          sv += part_v[z * n + e];
        }
      if (dk)
        oftcu_add_to (dk, e, sk);
      if (dv)
        oftcu_add_to (dv, e, sv);
    }
}

/* How many query chunks the dK/dV kernel splits into: one unless its (key tile, head) blocks of threads would
 * leave most of the GPU idle (cross-attention over 77 keys: 2 tiles per head) and there are queries enough;
 * then about two blocks per multiprocessor, each chunk at least two query tiles. */
static int
att_dkdv_splits (int ktiles, int BH, int Tq, bool causal)
{
  static int sms = 0;
  if (!sms)
    {
      int dev = 0;
      cudaGetDevice (&dev);
      if (cudaDeviceGetAttribute (&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1)
        sms = 1;
    }
  const int ctas = ktiles * BH, qtiles = (Tq + AMMA_ROWS - 1) / AMMA_ROWS;
  if (causal || ctas >= sms || qtiles < 4)
    return 1;
  return min ((2 * sms + ctas - 1) / ctas, qtiles / 2);
}

/* The split's fp32 partial sums: grown on demand, kept (not during a graph capture: then no split) */
static float *
att_workspace (size_t floats)
{
  static float *ws = NULL;
  static size_t have = 0;
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing (oftcu_stream (), &st) != cudaSuccess || st != cudaStreamCaptureStatusNone)
    return NULL;
  if (floats <= have)
    return ws;
  oftcu_sync ();   /* the old workspace may still be read by queued kernels */
  oftcu_free (ws);
  ws = (float *) oftcu_alloc (floats * sizeof (float));
  have = ws ? floats : 0;
  if (!ws)
    oftcu_clear_error ();   /* no split then, not a failure */
  return ws;
}

template <int DP>
__global__ void __launch_bounds__ (AMMA_WARPS * 32)
k_attention_backward_dq_mma (__nv_bfloat16 *dq, const __nv_bfloat16 *dout, const __nv_bfloat16 *out,
                             const float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                             const __nv_bfloat16 *v, AttDims a)
{
  constexpr int LDS = DP + 8;
  OFTCU_DYNAMIC_SMEM (uint4, amma_sm_q);
  __nv_bfloat16 *sQ = (__nv_bfloat16 *) amma_sm_q, *sdO = sQ + AMMA_ROWS * LDS, *sK = sdO + AMMA_ROWS * LDS,
                *sV = sK + AMMA_ROWS * LDS;
  float *sLse = (float *) (sV + AMMA_ROWS * LDS), *sDi = sLse + AMMA_ROWS;
  const int i0 = blockIdx.x * AMMA_ROWS, b = blockIdx.y / a.H, h = blockIdx.y % a.H, HD = a.H * a.D;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t qoff = (int64_t) b * a.Tq * HD + (int64_t) h * a.D, koff = (int64_t) b * a.Tk * HD + (int64_t) h * a.D;
  const float scale_log2 = a.scale * AMMA_LOG2E;

  amma_load<DP> (sQ, q + qoff, i0, a.Tq, a.D, HD);
  amma_load<DP> (sdO, dout + qoff, i0, a.Tq, a.D, HD);
  att_row_stats<__nv_bfloat16, AMMA_ROWS, AMMA_WARPS> (sDi, sLse, dout, out, lse, b, h, i0, a);
  float acc[DP / 8][4];
#pragma unroll
  for (int n = 0; n < DP / 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      acc[n][e] = 0.0f;

  const int j_end = a.causal ? min (a.Tk, i0 + AMMA_ROWS) : a.Tk;
  for (int j0 = 0; j0 < j_end; j0 += AMMA_ROWS)
    {
      __syncthreads ();   /* the previous tile is consumed */
      amma_load<DP> (sK, k + koff, j0, a.Tk, a.D, HD);
      amma_load<DP> (sV, v + koff, j0, a.Tk, a.D, HD);
      __syncthreads ();

      float p[8][4], dp[8][4];
      amma_scores<DP> (p, sQ, warp * 16, sK);              /* S = Q·Kᵀ (16 queries × 64 keys) */
      amma_scores<DP> (dp, sdO, warp * 16, sV);            /* dP = dO·Vᵀ */
#pragma unroll
      for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          {
            const int r = warp * 16 + g + (e >> 1) * 8, qi = i0 + r, kj = j0 + n * 8 + 2 * t + (e & 1);
            const bool valid = qi < a.Tq && kj < a.Tk && (!a.causal || kj <= qi);
            const float pv = valid ? exp2f (p[n][e] * scale_log2 - sLse[r] * AMMA_LOG2E) : 0.0f;
            dp[n][e] = pv * (dp[n][e] - sDi[r]);                                  /* dS */
          }
      amma_accumulate<DP> (acc, dp, sK);                   /* dQ += dS·K (× scale below) */
    }
  amma_store<DP> (dq + qoff, acc, a.scale, i0 + warp * 16, a.Tq, a.D, HD);
}

template <int DP>
static void
attention_backward_mma_launch (__nv_bfloat16 *dq, __nv_bfloat16 *dk, __nv_bfloat16 *dv, const __nv_bfloat16 *dout,
                               const __nv_bfloat16 *out, const float *lse, const __nv_bfloat16 *q,
                               const __nv_bfloat16 *k, const __nv_bfloat16 *v, int B, const AttDims &a)
{
  const size_t smem = (size_t) 4 * AMMA_ROWS * (DP + 8) * sizeof (__nv_bfloat16) + 2 * AMMA_ROWS * sizeof (float);
  if (smem > (size_t) att_smem_optin ())
    {
      oftcu_set_error ("attention backward: head dim %d needs %zu bytes of shared memory per block", a.D, smem);
      return;
    }
  if (dk || dv)
    {
      cudaFuncSetAttribute (k_attention_backward_dkdv_mma<DP>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                            (int) smem);
      const int ktiles = (a.Tk + AMMA_ROWS - 1) / AMMA_ROWS, qtiles = (a.Tq + AMMA_ROWS - 1) / AMMA_ROWS;
      int S = att_dkdv_splits (ktiles, B * a.H, a.Tq, a.causal);
      const int q_chunk = (qtiles + S - 1) / S * AMMA_ROWS;
      S = (a.Tq + q_chunk - 1) / q_chunk;
      const int64_t n = (int64_t) B * a.Tk * a.H * a.D;
      float *ws = S > 1 ? att_workspace ((size_t) 2 * S * n) : NULL;
      if (!ws)
        S = 1;
      dim3 grid (ktiles, B * a.H, S);
      k_attention_backward_dkdv_mma<DP><<<grid, AMMA_WARPS * 32, smem, oftcu_stream ()>>> (
          dk, dv, dout, out, lse, q, k, v, a, S > 1 ? q_chunk : qtiles * AMMA_ROWS, ws, ws ? ws + S * n : NULL, n);
      OFTCU_CHECK_LAUNCH ("attention backward (dk, dv; tensor cores)");
      if (ws)
        {
          k_att_dkdv_reduce<<<oftcu_grid256 (n), 256, 0, oftcu_stream ()>>> (dk, dv, ws, ws + S * n, S, n);
          OFTCU_CHECK_LAUNCH ("attention backward (dk, dv partial sums)");
        }
    }
  if (dq)
    {
      cudaFuncSetAttribute (k_attention_backward_dq_mma<DP>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                            (int) smem);
      dim3 grid ((a.Tq + AMMA_ROWS - 1) / AMMA_ROWS, B * a.H);
      k_attention_backward_dq_mma<DP><<<grid, AMMA_WARPS * 32, smem, oftcu_stream ()>>> (dq, dout, out, lse, q, k,
                                                                                        v, a);
      OFTCU_CHECK_LAUNCH ("attention backward (dq; tensor cores)");
    }
}

static void
attention_backward_mma (void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                        const void *q, const void *k, const void *v, int B, const AttDims &a)
{
  typedef __nv_bfloat16 bf;
  bf *dq_ = (bf *) dq, *dk_ = (bf *) dk, *dv_ = (bf *) dv;
  const bf *do_ = (const bf *) dout, *o_ = (const bf *) out, *q_ = (const bf *) q, *k_ = (const bf *) k,
           *v_ = (const bf *) v;
  switch ((a.D + 15) / 16)
    {
    case 1: attention_backward_mma_launch<16> (dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, a); break;
    case 2: attention_backward_mma_launch<32> (dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, a); break;
    case 3: attention_backward_mma_launch<48> (dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, a); break;
    case 4: attention_backward_mma_launch<64> (dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, a); break;
    case 5: attention_backward_mma_launch<80> (dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, a); break;
    case 6: attention_backward_mma_launch<96> (dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, a); break;
    case 7: attention_backward_mma_launch<112> (dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, a); break;
    default: attention_backward_mma_launch<128> (dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, a); break;
    }
}

template <typename T>
static void
attention_backward_typed (void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                          const void *q, const void *k, const void *v, int B, const AttDims &a)
{
  T *dq_ = (T *) dq, *dk_ = (T *) dk, *dv_ = (T *) dv;
  const T *do_ = (const T *) dout, *o_ = (const T *) out, *q_ = (const T *) q, *k_ = (const T *) k,
          *v_ = (const T *) v;
  /* register micro-tiles: (BC/16)·(DMAX/16) accumulators each for dk and dv */
  if (a.D <= 64)
    attention_backward_launch<T, 64, 64, 64> (dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, a);
  else if (a.D <= 128)
    attention_backward_launch<T, 128, 64, 64> (dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, a);
  else
    attention_backward_launch<T, 256, 64, 32> (dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, a);
}

extern "C" void
oftcu_attention_backward (OftCuDtype dt, void *dq, void *dk, void *dv, const void *dout, const void *out,
                          const float *lse, const void *q, const void *k, const void *v,
                          int B, int Tq, int Tk, int H, int D, bool causal)
{
  if (B <= 0 || Tq <= 0 || Tk <= 0 || H <= 0 || D <= 0 || (!dq && !dk && !dv))
    return;
  if (D > 256)
    {
      oftcu_set_error ("attention backward: head dim %d (at most 256)", D);
      return;
    }
  if (causal && Tq != Tk)
    {
      oftcu_set_error ("attention backward: causal attention needs Tq == Tk (%d, %d)", Tq, Tk);
      return;
    }
  if ((int64_t) B * H > 65535)
    {
      oftcu_set_error ("attention backward: B·H = %lld is over the grid limit 65535", (long long) B * H);
      return;
    }
  AttDims a;
  a.Tq = Tq;
  a.Tk = Tk;
  a.H = H;
  a.D = D;
  a.LD = D % 2 == 0 ? D + 1 : D;
  a.causal = causal;
  a.scale = 1.0f / sqrtf ((float) D);
  const void *ptrs[8] = { dq, dk, dv, dout, out, q, k, v };
  if (dt == OFTCU_BF16 && att_mma_supports (D, ptrs, 8))
    attention_backward_mma (dq, dk, dv, dout, out, lse, q, k, v, B, a);
  else if (dt == OFTCU_BF16)
    attention_backward_typed<__nv_bfloat16> (dq, dk, dv, dout, out, lse, q, k, v, B, a);
  else
    attention_backward_typed<float> (dq, dk, dv, dout, out, lse, q, k, v, B, a);
}

/* ------------------------------------------------------------------------------------------------ */
/* upsample, concat, add_channel                                                                     */

template <typename T>
__global__ void
k_upsample2x_backward (T *dinp, const T *dout, int64_t BC, int H, int W)
{
  const int64_t n = BC * H * W;
  const int W2 = 2 * W;
  for (int64_t e = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; e < n; e += (int64_t) gridDim.x * blockDim.x)
    {
      const int64_t cy = e / W;           /* c·H + y */
      const int x = (int) (e - cy * W);
      const T *d0 = dout + 2 * cy * W2, *d1 = d0 + W2;   /* rows 2y and 2y+1 of channel c */
      const float s = (oftcu_f (d0[2 * x]) + oftcu_f (d0[2 * x + 1])) + (oftcu_f (d1[2 * x]) + oftcu_f (d1[2 * x + 1]));
      oftcu_add_to (dinp, e, s);
    }
}

extern "C" void
oftcu_upsample2x_backward (OftCuDtype dt, void *dinp, const void *dout, int64_t BC, int H, int W)
{
  if (!dinp || BC <= 0 || H <= 0 || W <= 0)
    return;
  OFTCU_DISPATCH (dt, "upsample2x backward", {
    k_upsample2x_backward<T><<<oftcu_grid256 (BC * H * W), 256, 0, oftcu_stream ()>>> ((T *) dinp,
        (const T *) dout, BC, H, W);
  });
  OFTCU_CHECK_LAUNCH ("upsample2x backward");
}

template <typename T>
__global__ void
k_concat_backward (T *da, T *db, const T *dout, int B, int64_t na, int64_t nb)
{
  const int64_t row = na + nb, n = (int64_t) B * row;
  for (int64_t e = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; e < n; e += (int64_t) gridDim.x * blockDim.x)
    {
      const int64_t b = e / row, r = e - b * row;
      if (r < na)
        {
          if (da)
            oftcu_add_to (da, b * na + r, oftcu_f (dout[e]));
        }
      else if (db)
        oftcu_add_to (db, b * nb + (r - na), oftcu_f (dout[e]));
    }
}

extern "C" void
oftcu_concat_backward (OftCuDtype dt, void *da, void *db, const void *dout, int B, int Ca, int Cb, int64_t HW)
{
  if ((!da && !db) || B <= 0 || HW <= 0)
    return;
  const int64_t na = (int64_t) Ca * HW, nb = (int64_t) Cb * HW;
  OFTCU_DISPATCH (dt, "concat backward", {
    k_concat_backward<T><<<oftcu_grid256 (B * (na + nb)), 256, 0, oftcu_stream ()>>> ((T *) da, (T *) db,
        (const T *) dout, B, na, nb);
  });
  OFTCU_CHECK_LAUNCH ("concat backward");
}

extern "C" void
oftcu_add_channel_backward (OftCuDtype dt, void *dv, const void *dx, int B, int C, int64_t HW)
{
  if (!dv)
    return;
  row_sums_add (dt, dv, dx, B * C, HW, 1, 0);
}
