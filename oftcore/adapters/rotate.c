/* Applying blockdiag(R): input-centric (x·R, PEFT's forward) and weight-centric (W·Rᵀ, the merge). */
#include "adapters-internal.h"
#include <math.h>
#include <string.h>
#include <cblas.h>

static inline const float *
block_R (const float *R, const OftSpec *s, int k)
{
  return R + (s->block_share ? 0 : (size_t) k * s->b * s->b);
}

/* Every product below is one GEMM per block over a column slice of the row-major operands (leading
 * dimension d), so OpenBLAS does the work at full rate and no OpenMP region sits between BLAS calls. */

void
oft_rotate_input_forward (float *xr, const float *x, const float *R, int64_t N, const OftSpec *s)
{
  const int b = s->b, d = s->d;
  for (int k = 0; k < s->n_blocks; k++)
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) N, b, b, 1.0f, x + (size_t) k * b, d,
                 block_R (R, s, k), b, 0.0f, xr + (size_t) k * b, d);
}

void
oft_rotate_input_backward (float *dx, float *dR, const float *dxr, const float *x, const float *R,
                           int64_t N, const OftSpec *s)
{
  const int b = s->b, d = s->d;
  for (int k = 0; k < s->n_blocks; k++)
    {
      /* dx_k += dxr_k·R_kᵀ; dR_k += x_kᵀ·dxr_k (blocks of a shared R all land in row 0) */
      if (dx)
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) N, b, b, 1.0f, dxr + (size_t) k * b, d,
                     block_R (R, s, k), b, 1.0f, dx + (size_t) k * b, d);
      if (dR)
        cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, b, b, (int) N, 1.0f, x + (size_t) k * b, d,
                     dxr + (size_t) k * b, d, 1.0f, (float *) block_R (dR, s, k), b);
    }
}

void
oft_rotate_weight_forward (float *Wr, const float *W, const float *R, int64_t out, const OftSpec *s)
{
  const int b = s->b, d = s->d;
  for (int k = 0; k < s->n_blocks; k++)
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) out, b, b, 1.0f, W + (size_t) k * b, d,
                 block_R (R, s, k), b, 0.0f, Wr + (size_t) k * b, d);
}

void
oft_rotate_weight_backward (float *dR, const float *dWr, const float *W, int64_t out, const OftSpec *s)
{
  if (!dR)
    return;
  /* Wr_k = W_k·R_kᵀ  ⇒  dR_k += dWr_kᵀ·W_k */
  const int b = s->b, d = s->d;
  for (int k = 0; k < s->n_blocks; k++)
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, b, b, (int) out, 1.0f, dWr + (size_t) k * b, d,
                 W + (size_t) k * b, d, 1.0f, (float *) block_R (dR, s, k), b);
}

gboolean
oft_rotate_weight_inverse (float *W, const float *Wr, const float *R, int64_t out, const OftSpec *s,
                           GError **error)
{
  /* W_k·R_kᵀ = Wr_k  ⇔  R_k·w = wr for every row: one LU of R_k per block, b² per row to solve */
  const int b = s->b, d = s->d, rows = oft_spec_rows (s);
  const size_t bb = (size_t) b * b;
  double *LU = g_new (double, bb * rows);
  int *piv = g_new (int, (size_t) b * rows);
  for (int r = 0; r < rows; r++)
    {
      for (size_t i = 0; i < bb; i++)
        LU[r * bb + i] = R[r * bb + i];
      if (!oft_lu_factor (LU + r * bb, piv + (size_t) r * b, b))
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC,
                       "rotation block %d (of %d, size %d) is singular: the merge cannot be undone", r, rows, b);
          g_free (LU);
          g_free (piv);
          return FALSE;
        }
    }
#pragma omp parallel for schedule(static) if (out * d * b > 1 << 18)
  for (int64_t o = 0; o < out; o++)
    {
      double x[b];
      for (int k = 0; k < s->n_blocks; k++)
        {
          int r = s->block_share ? 0 : k;
          for (int i = 0; i < b; i++)
            x[i] = Wr[o * d + (size_t) k * b + i];
          oft_lu_solve (LU + r * bb, piv + (size_t) r * b, x, b);
          for (int i = 0; i < b; i++)
            W[o * d + (size_t) k * b + i] = (float) x[i];
        }
    }
  g_free (LU);
  g_free (piv);
  return TRUE;
}
