/* Applying blockdiag(R): input-centric (x·R, PEFT's forward) and weight-centric (W·Rᵀ, the merge). */
#include "adapters-internal.h"
#include <math.h>
#include <string.h>

static inline const float *
block_R (const float *R, const OftSpec *s, int k)
{
  return R + (s->block_share ? 0 : (size_t) k * s->b * s->b);
}

void
oft_rotate_input_forward (float *xr, const float *x, const float *R, int64_t N, const OftSpec *s)
{
  const int b = s->b, d = s->d;
#pragma omp parallel for schedule(static) if (N * d * b > 1 << 18)
  for (int64_t n = 0; n < N; n++)
    for (int k = 0; k < s->n_blocks; k++)
      {
        const float *Rk = block_R (R, s, k), *xi = x + n * d + (size_t) k * b;
        float *yo = xr + n * d + (size_t) k * b;
        for (int j = 0; j < b; j++)
          {
            float acc = 0;
            for (int i = 0; i < b; i++)
              acc += xi[i] * Rk[i * b + j];
            yo[j] = acc;
          }
      }
}

void
oft_rotate_input_backward (float *dx, float *dR, const float *dxr, const float *x, const float *R,
                           int64_t N, const OftSpec *s)
{
  const int b = s->b, d = s->d;
  if (dx)
    {
#pragma omp parallel for schedule(static) if (N * d * b > 1 << 18)
      for (int64_t n = 0; n < N; n++)
        for (int k = 0; k < s->n_blocks; k++)
          {
            const float *Rk = block_R (R, s, k), *g = dxr + n * d + (size_t) k * b;
            float *o = dx + n * d + (size_t) k * b;
            for (int i = 0; i < b; i++)
              {
                float acc = 0;
                for (int j = 0; j < b; j++)
                  acc += g[j] * Rk[i * b + j];
                o[i] += acc;
              }
          }
    }
  if (dR)
    {
      /* dR_k[i, j] = Σ_n x[n, kb + i]·dxr[n, kb + j]; blocks of a shared R all land in row 0 */
      const int rows = oft_spec_rows (s);
#pragma omp parallel for schedule(static) if (rows > 1 && N * d * b > 1 << 18)
      for (int r = 0; r < rows; r++)
        {
          float *D = dR + (size_t) r * b * b;
          int k0 = s->block_share ? 0 : r, k1 = s->block_share ? s->n_blocks : r + 1;
          for (int k = k0; k < k1; k++)
            for (int64_t n = 0; n < N; n++)
              {
                const float *xi = x + n * d + (size_t) k * b, *g = dxr + n * d + (size_t) k * b;
                for (int i = 0; i < b; i++)
                  {
                    float xv = xi[i];
                    if (xv != 0)
                      for (int j = 0; j < b; j++)
                        D[i * b + j] += xv * g[j];
                  }
              }
        }
    }
}

void
oft_rotate_weight_forward (float *Wr, const float *W, const float *R, int64_t out, const OftSpec *s)
{
  const int b = s->b, d = s->d;
#pragma omp parallel for schedule(static) if (out * d * b > 1 << 18)
  for (int64_t o = 0; o < out; o++)
    for (int k = 0; k < s->n_blocks; k++)
      {
        const float *Rk = block_R (R, s, k), *w = W + o * d + (size_t) k * b;
        float *y = Wr + o * d + (size_t) k * b;
        for (int i = 0; i < b; i++)
          {
            float acc = 0;
            for (int j = 0; j < b; j++)
              acc += w[j] * Rk[i * b + j];
            y[i] = acc;
          }
      }
}

void
oft_rotate_weight_backward (float *dR, const float *dWr, const float *W, int64_t out, const OftSpec *s)
{
  if (!dR)
    return;
  /* Wr[o, kb + i] = Σ_j W[o, kb + j]·R_k[i, j]  ⇒  dR_k[i, j] += Σ_o dWr[o, kb + i]·W[o, kb + j] */
  const int b = s->b, d = s->d, rows = oft_spec_rows (s);
#pragma omp parallel for schedule(static) if (rows > 1 && out * d * b > 1 << 18)
  for (int r = 0; r < rows; r++)
    {
      float *D = dR + (size_t) r * b * b;
      int k0 = s->block_share ? 0 : r, k1 = s->block_share ? s->n_blocks : r + 1;
      for (int k = k0; k < k1; k++)
        for (int64_t o = 0; o < out; o++)
          {
            const float *g = dWr + o * d + (size_t) k * b, *w = W + o * d + (size_t) k * b;
            for (int i = 0; i < b; i++)
              {
                float gv = g[i];
                if (gv != 0)
                  for (int j = 0; j < b; j++)
                    D[i * b + j] += gv * w[j];
              }
          }
    }
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
