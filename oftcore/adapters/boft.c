/* BOFT (PEFT peft_type "BOFT"): butterfly factors M_i = P_i·blockdiag(R_i)·P_iᵀ, T = M_{N−1}⋯M_1·M_0.
 * Each block: S = ½(A − Aᵀ), R = (I − S)(I + S)⁻¹ (always the exact Cayley transform). */
#include "adapters-internal.h"
#include <string.h>
#include <cblas.h>

void
oft_boft_perm (int *idx, const OftBoftSpec *s, int factor)
{
  /* PEFT's block_butterfly_perm(n = d, blocks = n_blocks/2^i, r = b/2): cut [0, d) into groups of b·2^i;
   * inside a group, chunks of b/2 are reordered evens first (0, 2, 4, …) then odds. Factor 0 is I. */
  const int d = s->d;
  const int half = s->b / 2;
  for (int j = 0; j < d; j++)
    idx[j] = j;
  if (factor == 0 || half == 0)
    return;
  const int group = s->b << factor;
  const int chunks = group / half;
  for (int g0 = 0; g0 + group <= d; g0 += group)
    {
      int p = 0;
      for (int parity = 0; parity < 2; parity++)
        for (int c = parity; c < chunks; c += 2, p++)
          for (int t = 0; t < half; t++)
            idx[g0 + p * half + t] = g0 + c * half + t;
    }
}

size_t
oft_boft_cache_floats (const OftBoftSpec *s)
{
  /* per factor and block: the rotation R and (I + S)⁻¹ */
  return (size_t) 2 * s->n_factors * s->n_blocks * s->b * s->b;
}

void
oft_boft_apply_factor (float *X, int64_t rows, const float *R_i, const int *idx, bool transpose,
                       const OftBoftSpec *s, float *tmp)
{
  /* (x·M)[j] = Σ_m x[m]·Bd[idx[m], idx[j]]: scatter x through idx, multiply by the block diagonal,
   * gather back through idx. x·Mᵀ uses the transposed blocks. */
  const int b = s->b, d = s->d;
  for (int64_t r = 0; r < rows; r++)
    {
      float *x = X + r * d;
      for (int j = 0; j < d; j++)
        tmp[idx[j]] = x[j];
      for (int k = 0; k < s->n_blocks; k++)
        {
          const float *Rk = R_i + (size_t) k * b * b, *u = tmp + (size_t) k * b;
          float v[b];
          for (int j = 0; j < b; j++)
            {
              float acc = 0;
              if (transpose)
                for (int i = 0; i < b; i++)
                  acc += u[i] * Rk[j * b + i];
              else
                for (int i = 0; i < b; i++)
                  acc += u[i] * Rk[i * b + j];
              v[j] = acc;
            }
          memcpy (tmp + (size_t) k * b, v, sizeof (float) * b);
        }
      for (int j = 0; j < d; j++)
        x[j] = tmp[idx[j]];
    }
}

void
oft_boft_rotations (float *R, float *Ainv, const float *boft_R, const OftBoftSpec *s)
{
  const int b = s->b;
  const size_t bb = (size_t) b * b;
  const int64_t nb = (int64_t) s->n_factors * s->n_blocks;
#pragma omp parallel for schedule(static) if (nb > 1 && b >= 32)
  for (int64_t k = 0; k < nb; k++)
    {
      double *S = g_new (double, 3 * bb), *Rd = S + bb, *A = Rd + bb;
      const float *P = boft_R + k * bb;
      for (int i = 0; i < b; i++)
        for (int j = 0; j < b; j++)
          S[i * b + j] = 0.5 * ((double) P[i * b + j] - (double) P[j * b + i]);
      oft_cayley_d (Rd, A, S, b);
      for (size_t i = 0; i < bb; i++)
        {
          R[k * bb + i] = (float) Rd[i];
          if (Ainv)
            Ainv[k * bb + i] = (float) A[i];
        }
      g_free (S);
    }
}

void
oft_boft_transform_forward (float *T, float *cache, const float *boft_R, const OftBoftSpec *s)
{
  const int d = s->d;
  const size_t per = (size_t) s->n_factors * s->n_blocks * s->b * s->b;
  float *R = cache ? cache : g_new (float, per);
  oft_boft_rotations (R, cache ? cache + per : NULL, boft_R, s);
  int *idx = g_new (int, d);
  float *tmp = g_new (float, d);
  memset (T, 0, sizeof (float) * d * d);
  for (int j = 0; j < d; j++)
    T[(size_t) j * d + j] = 1;
  /* T = I·M_{N−1}⋯M_0: right-multiply by the factors from the last to the first */
  for (int f = s->n_factors - 1; f >= 0; f--)
    {
      oft_boft_perm (idx, s, f);
      oft_boft_apply_factor (T, d, R + f * (per / s->n_factors), idx, false, s, tmp);
    }
  g_free (tmp);
  g_free (idx);
  if (!cache)
    g_free (R);
}

static void
transpose_sq (float *A, int d)
{
  for (int i = 0; i < d; i++)
    for (int j = i + 1; j < d; j++)
      {
        float t = A[(size_t) i * d + j];
        A[(size_t) i * d + j] = A[(size_t) j * d + i];
        A[(size_t) j * d + i] = t;
      }
}

void
oft_boft_transform_backward (float *dboft_R, const float *dT, const float *cache, const float *boft_R,
                             const OftBoftSpec *s)
{
  if (!dboft_R)
    return;
  const int d = s->d, b = s->b, N = s->n_factors;
  const size_t bb = (size_t) b * b, per_f = (size_t) s->n_blocks * bb, per = N * per_f;
  float *own = NULL;
  const float *R, *Ainv;
  if (cache)
    R = cache, Ainv = cache + per;
  else
    {
      own = g_new (float, 2 * per);
      oft_boft_rotations (own, own + per, boft_R, s);
      R = own, Ainv = own + per;
    }
  int *idx = g_new (int, (size_t) N * d);
  for (int f = 0; f < N; f++)
    oft_boft_perm (idx + (size_t) f * d, s, f);
  float *G = g_new (float, (size_t) d * d), *tmp = g_new (float, d);
  double *Gd = g_new (double, 3 * bb), *dS = Gd + bb, *Ad = dS + bb;
  for (int f = 0; f < N; f++)
    {
      /* T = L·M_f·Rt with L = M_{N−1}⋯M_{f+1}, Rt = M_{f−1}⋯M_0  ⇒  dM_f = Lᵀ·dT·Rtᵀ */
      memcpy (G, dT, sizeof (float) * d * d);
      for (int g = 0; g < f; g++)                 /* G·Rtᵀ = G·M_0ᵀ·M_1ᵀ⋯M_{f−1}ᵀ */
        oft_boft_apply_factor (G, d, R + g * per_f, idx + (size_t) g * d, true, s, tmp);
      transpose_sq (G, d);                        /* Lᵀ·G = (Gᵀ·L)ᵀ, L applied from M_{N−1} down */
      for (int g = N - 1; g > f; g--)
        oft_boft_apply_factor (G, d, R + g * per_f, idx + (size_t) g * d, false, s, tmp);
      transpose_sq (G, d);
      /* M_f[m, j] = Bd[idx[m], idx[j]]: dBd[idx[m], idx[j]] = dM_f[m, j], diagonal blocks only */
      const int *ix = idx + (size_t) f * d;
      for (int k = 0; k < s->n_blocks; k++)
        {
          memset (Gd, 0, sizeof (double) * bb);
          for (int m = 0; m < d; m++)
            {
              int pm = ix[m];
              if (pm / b != k)
                continue;
              for (int j = 0; j < d; j++)
                {
                  int pj = ix[j];
                  if (pj / b == k)
                    Gd[(pm - k * b) * b + (pj - k * b)] += G[(size_t) m * d + j];
                }
            }
          const size_t off = f * per_f + k * bb;
          for (size_t i = 0; i < bb; i++)
            Ad[i] = Ainv[off + i];
          oft_cayley_backward_d (dS, Gd, Ad, b);
          /* S = ½(A − Aᵀ)  ⇒  ∂L/∂A = ½(dS − dSᵀ) */
          for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++)
              dboft_R[off + (size_t) i * b + j] += (float) (0.5 * (dS[i * b + j] - dS[j * b + i]));
        }
    }
  g_free (Gd);
  g_free (tmp);
  g_free (G);
  g_free (idx);
  g_free (own);
}

void
oft_boft_rotate_input_forward (float *xr, const float *x, const float *T, int64_t N, int d)
{
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) N, d, d, 1.0f, x, d, T, d, 0.0f, xr, d);
}

void
oft_boft_rotate_input_backward (float *dx, float *dT, const float *dxr, const float *x, const float *T,
                                int64_t N, int d)
{
  if (dx)
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) N, d, d, 1.0f, dxr, d, T, d, 1.0f, dx, d);
  if (dT)
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, d, d, (int) N, 1.0f, x, d, dxr, d, 1.0f, dT, d);
}
