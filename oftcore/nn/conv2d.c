/* 2-D convolution as im2col + sgemm: col[C·kh·kw, OH·OW] is laid out so that the weight
 * [OC, C, kh, kw] read as [OC, C·kh·kw] multiplies it directly, giving NCHW output with no transpose.
 * 1×1 stride-1 unpadded convs (half of SD's convs) skip im2col: the image itself is the col matrix.
 * Small images (the UNet's deepest levels: 8×8 at 512 px, 2×2 at 128 px) put the whole batch into one
 * GEMM instead, col[K, B·P] and out[OC, B·P]: a GEMM only 64 (or 4) columns wide runs far below the
 * BLAS rate, and the extra copy of a small output back to NCHW is cheap. */
#include "oft/nn.h"
#include "nn-internal.h"
#include <cblas.h>
#include <string.h>

/* below this many output pixels per image, images are batched into one GEMM */
#define BATCH_P_MAX 256

int
oft_conv2d_out_h (const OftConv2dShape *s)
{
  return (s->H + 2 * s->pad - s->kh) / s->stride + 1;
}

int
oft_conv2d_out_w (const OftConv2dShape *s)
{
  return (s->W + 2 * s->pad - s->kw) / s->stride + 1;
}

static bool
is_pointwise (const OftConv2dShape *s)
{
  return s->kh == 1 && s->kw == 1 && s->stride == 1 && s->pad == 0;
}

static bool
is_batched (const OftConv2dShape *s)
{
  return !is_pointwise (s) && s->B > 1
         && (int64_t) oft_conv2d_out_h (s) * oft_conv2d_out_w (s) < BATCH_P_MAX;
}

/* Per image: one col matrix, which backward reuses first as col (for dweight), then as dcol (for
 * dinp). Batched: col[K, B·P] plus the output in GEMM layout [OC, B·P]. */
size_t
oft_conv2d_scratch_floats (const OftConv2dShape *s)
{
  if (is_pointwise (s))
    return 0;
  size_t P = (size_t) oft_conv2d_out_h (s) * (size_t) oft_conv2d_out_w (s);
  size_t K = (size_t) s->C * s->kh * s->kw;
  if (is_batched (s))
    return (K + (size_t) s->OC) * (size_t) s->B * P;
  return K * P;
}

/* Output columns [*lo, *hi) of kernel column kj read inside the image (x = ox·stride − pad + kj in
 * [0, W)); the rest read zero padding. Hoisting the bounds out of the inner loops turns them into
 * plain copies (memcpy for stride 1) that the compiler vectorises. */
static inline void
valid_range (int *lo, int *hi, int kj, int W, int OW, int st, int pad)
{
  int l = pad - kj > 0 ? (pad - kj + st - 1) / st : 0;
  int h = W + pad - kj > 0 ? (W + pad - kj + st - 1) / st : 0;
  *lo = l < OW ? l : OW;
  *hi = h < OW ? h : OW;
  if (*hi < *lo)
    *hi = *lo;
}

/* col rows are ldc apart (P for one image, B·P when the whole batch shares one GEMM). */
static void
im2col (float *col, int64_t ldc, const float *img, const OftConv2dShape *s, int OH, int OW)
{
  const int H = s->H, W = s->W, kh = s->kh, kw = s->kw, st = s->stride, pad = s->pad;
  const int64_t P = (int64_t) OH * OW;
#pragma omp parallel for if ((int64_t) s->C * kh * kw * P > OFT_NN_OMP_MIN)
  for (int c = 0; c < s->C; c++)
    {
      const float *ic = img + (int64_t) c * H * W;
      for (int ki = 0; ki < kh; ki++)
        for (int kj = 0; kj < kw; kj++)
          {
            float *row = col + (((int64_t) c * kh + ki) * kw + kj) * ldc;
            int lo, hi;
            valid_range (&lo, &hi, kj, W, OW, st, pad);
            for (int oy = 0; oy < OH; oy++)
              {
                int y = oy * st - pad + ki;
                float *r = row + (int64_t) oy * OW;
                if (y < 0 || y >= H)
                  {
                    memset (r, 0, sizeof (float) * OW);
                    continue;
                  }
                const float *iy = ic + (int64_t) y * W;
                const int x0 = kj - pad;   /* pixel x = ox·st + x0 */
                memset (r, 0, sizeof (float) * lo);
                if (st == 1)
                  memcpy (r + lo, iy + lo + x0, sizeof (float) * (hi - lo));
                else
                  for (int ox = lo; ox < hi; ox++)
                    r[ox] = iy[ox * st + x0];
                memset (r + hi, 0, sizeof (float) * (OW - hi));
              }
          }
    }
}

/* Adjoint of im2col: each col entry is added back to the pixel it was read from. Threads own whole
 * input channels, so no two write the same pixel. */
static void
col2im_add (float *img, const float *col, int64_t ldc, const OftConv2dShape *s, int OH, int OW)
{
  const int H = s->H, W = s->W, kh = s->kh, kw = s->kw, st = s->stride, pad = s->pad;
  const int64_t P = (int64_t) OH * OW;
#pragma omp parallel for if ((int64_t) s->C * kh * kw * P > OFT_NN_OMP_MIN)
  for (int c = 0; c < s->C; c++)
    {
      float *ic = img + (int64_t) c * H * W;
      for (int ki = 0; ki < kh; ki++)
        for (int kj = 0; kj < kw; kj++)
          {
            const float *row = col + (((int64_t) c * kh + ki) * kw + kj) * ldc;
            int lo, hi;
            valid_range (&lo, &hi, kj, W, OW, st, pad);
            for (int oy = 0; oy < OH; oy++)
              {
                int y = oy * st - pad + ki;
                if (y < 0 || y >= H)
                  continue;
                const float *r = row + (int64_t) oy * OW;
                float *iy = ic + (int64_t) y * W;
                const int x0 = kj - pad;
                if (st == 1)
                  {
                    float *dst = iy + lo + x0;
                    const float *src = r + lo;
                    for (int i = 0; i < hi - lo; i++)
                      dst[i] += src[i];
                  }
                else
                  for (int ox = lo; ox < hi; ox++)
                    iy[ox * st + x0] += r[ox];
              }
          }
    }
}

/* [B, OC, P] ↔ [OC, B·P] */
static void
nchw_to_gemm (float *g, const float *x, int B, int OC, int P)
{
  for (int b = 0; b < B; b++)
    for (int oc = 0; oc < OC; oc++)
      memcpy (g + ((int64_t) oc * B + b) * P, x + ((int64_t) b * OC + oc) * P, sizeof (float) * P);
}

void
oft_conv2d_forward (float *out, const float *inp, const float *weight, const float *bias,
                    const OftConv2dShape *s, float *scratch)
{
  const int OH = oft_conv2d_out_h (s), OW = oft_conv2d_out_w (s);
  const int P = OH * OW, K = s->C * s->kh * s->kw;
  const int64_t in_sz = (int64_t) s->C * s->H * s->W, out_sz = (int64_t) s->OC * P;

  if (is_batched (s))
    {
      const int BP = s->B * P;
      float *col = scratch, *g = scratch + (int64_t) K * BP;
      for (int b = 0; b < s->B; b++)
        im2col (col + (int64_t) b * P, BP, inp + b * in_sz, s, OH, OW);
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, s->OC, BP, K,
                   1.0f, weight, K, col, BP, 0.0f, g, BP);
      for (int b = 0; b < s->B; b++)
        for (int oc = 0; oc < s->OC; oc++)
          {
            float *o = out + b * out_sz + (int64_t) oc * P;
            const float *src = g + ((int64_t) oc * s->B + b) * P;
            const float bb = bias ? bias[oc] : 0.0f;
            for (int p = 0; p < P; p++)
              o[p] = src[p] + bb;
          }
      return;
    }

  for (int b = 0; b < s->B; b++)
    {
      const float *img = inp + b * in_sz;
      float *o = out + b * out_sz;
      const float *col = img;
      if (!is_pointwise (s))
        {
          im2col (scratch, P, img, s, OH, OW);
          col = scratch;
        }
      /* bias first, then the sgemm accumulates onto it (beta = 1), as in linear.c */
      if (bias)
        for (int oc = 0; oc < s->OC; oc++)
          for (int p = 0; p < P; p++)
            o[(int64_t) oc * P + p] = bias[oc];
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, s->OC, P, K,
                   1.0f, weight, K, col, P, bias ? 1.0f : 0.0f, o, P);
    }
}

void
oft_conv2d_backward (float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     const OftConv2dShape *s, float *scratch)
{
  const int OH = oft_conv2d_out_h (s), OW = oft_conv2d_out_w (s);
  const int P = OH * OW, K = s->C * s->kh * s->kw;
  const int64_t in_sz = (int64_t) s->C * s->H * s->W, out_sz = (int64_t) s->OC * P;

  if (is_batched (s))
    {
      const int BP = s->B * P;
      float *col = scratch, *g = scratch + (int64_t) K * BP;
      nchw_to_gemm (g, dout, s->B, s->OC, P);
      if (dbias)
        oft_nn_row_sums_add (dbias, g, s->OC, BP, BP);
      if (dweight)
        {
          for (int b = 0; b < s->B; b++)
            im2col (col + (int64_t) b * P, BP, inp + b * in_sz, s, OH, OW);
          cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, s->OC, K, BP,
                       1.0f, g, BP, col, BP, 1.0f, dweight, K);
        }
      if (dinp)
        {
          cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, K, BP, s->OC,
                       1.0f, weight, K, g, BP, 0.0f, col, BP);
          for (int b = 0; b < s->B; b++)
            col2im_add (dinp + b * in_sz, col + (int64_t) b * P, BP, s, OH, OW);
        }
      return;
    }

  const bool pw = is_pointwise (s);
  for (int b = 0; b < s->B; b++)
    {
      const float *d = dout + b * out_sz;
      if (dbias)
        oft_nn_row_sums_add (dbias, d, s->OC, P, P);
      if (dweight) /* dW[OC,K] += dout[OC,P] · colᵀ (inp may be NULL when no dweight is asked for) */
        {
          const float *img = inp + b * in_sz;
          const float *col = img;
          if (!pw)
            {
              im2col (scratch, P, img, s, OH, OW);
              col = scratch;
            }
          cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, s->OC, K, P,
                       1.0f, d, P, col, P, 1.0f, dweight, K);
        }
      if (dinp) /* dcol[K,P] = Wᵀ · dout, then scattered back onto the image */
        {
          float *di = dinp + b * in_sz;
          if (pw)
            cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, K, P, s->OC,
                         1.0f, weight, K, d, P, 1.0f, di, P);
          else
            {
              cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, K, P, s->OC,
                           1.0f, weight, K, d, P, 0.0f, scratch, P);
              col2im_add (di, scratch, P, s, OH, OW);
            }
        }
    }
}
