/* Exact Cayley transform R = (I − S)(I + S)⁻¹ of a skew S and its gradient, in double. */
#include "adapters-internal.h"
#include <math.h>
#include <string.h>

bool
oft_lu_factor (double *A, int *piv, int n)
{
  for (int k = 0; k < n; k++)
    {
      int p = k;
      double best = fabs (A[k * n + k]);
      for (int i = k + 1; i < n; i++)
        if (fabs (A[i * n + k]) > best)
          best = fabs (A[i * n + k]), p = i;
      piv[k] = p;
      if (!(best > 0) || !isfinite (best))
        return false;
      if (p != k)
        for (int j = 0; j < n; j++)
          {
            double t = A[k * n + j];
            A[k * n + j] = A[p * n + j];
            A[p * n + j] = t;
          }
      double inv = 1.0 / A[k * n + k];
      for (int i = k + 1; i < n; i++)
        {
          double l = A[i * n + k] *= inv;
          if (l != 0)
            for (int j = k + 1; j < n; j++)
              A[i * n + j] -= l * A[k * n + j];
        }
    }
  return true;
}

void
oft_lu_solve (const double *LU, const int *piv, double *x, int n)
{
  for (int k = 0; k < n; k++)
    if (piv[k] != k)
      {
        double t = x[k];
        x[k] = x[piv[k]];
        x[piv[k]] = t;
      }
  for (int i = 1; i < n; i++)
    {
      double acc = x[i];
      for (int j = 0; j < i; j++)
        acc -= LU[i * n + j] * x[j];
      x[i] = acc;
    }
  for (int i = n - 1; i >= 0; i--)
    {
      double acc = x[i];
      for (int j = i + 1; j < n; j++)
        acc -= LU[i * n + j] * x[j];
      x[i] = acc / LU[i * n + i];
    }
}

bool
oft_cayley_d (double *R, double *Ainv, const double *S, int b)
{
  double *M = g_new (double, (size_t) b * b + b);
  double *col = M + (size_t) b * b;
  int *piv = g_new (int, b);
  for (int i = 0; i < b * b; i++)
    M[i] = S[i];
  for (int i = 0; i < b; i++)
    M[i * b + i] += 1.0;
  bool ok = oft_lu_factor (M, piv, b);
  if (ok)
    for (int j = 0; j < b; j++)
      {
        memset (col, 0, sizeof (double) * b);
        col[j] = 1.0;
        oft_lu_solve (M, piv, col, b);
        for (int i = 0; i < b; i++)
          Ainv[i * b + j] = col[i];
      }
  g_free (piv);
  g_free (M);
  if (!ok)
    return false;
  /* (I − S)(I + S)⁻¹ = (2I − (I + S))(I + S)⁻¹ = 2A − I */
  for (int i = 0; i < b * b; i++)
    R[i] = 2.0 * Ainv[i];
  for (int i = 0; i < b; i++)
    R[i * b + i] -= 1.0;
  return true;
}

void
oft_cayley_backward_d (double *dS, const double *G, const double *Ainv, int b)
{
  /* R = 2A − I, dA = −A·dS·A  ⇒  dL = −2 tr(Gᵀ A dS A)  ⇒  ∂L/∂S = −2·Aᵀ·G·Aᵀ */
  double *T = g_new0 (double, (size_t) b * b);
  for (int i = 0; i < b; i++)        /* T = Aᵀ·G */
    for (int k = 0; k < b; k++)
      {
        double a = Ainv[k * b + i];
        for (int j = 0; j < b; j++)
          T[i * b + j] += a * G[k * b + j];
      }
  for (int i = 0; i < b; i++)        /* dS = −2·T·Aᵀ */
    for (int j = 0; j < b; j++)
      {
        double acc = 0;
        for (int k = 0; k < b; k++)
          acc += T[i * b + k] * Ainv[j * b + k];
        dS[i * b + j] = -2.0 * acc;
      }
  g_free (T);
}
