/* PEFT's Cayley–Neumann series (use_cayley_neumann, ≥ 0.18): a truncation of (I + Q)(I − Q)⁻¹, i.e. of the
 * TRANSPOSE of the exact branch. n ≤ 1: I; n = 2: I + 2Q; n ≥ 3: I + 2Q + 2Q² + 2·Σ_{k=3}^{n−2} Q^k + Q^{max(3, n−1)}. */
#include "adapters-internal.h"
#include <string.h>

int
oft_neumann_coeffs (double *c, int n)
{
  c[0] = 1;
  if (n <= 1)
    return 0;
  c[1] = 2;
  if (n == 2)
    return 1;
  int K = n - 1 > 3 ? n - 1 : 3;
  for (int k = 2; k < K; k++)
    c[k] = 2;
  c[K] = 1;
  return K;
}

size_t
oft_neumann_scratch (int n_terms, int b)
{
  int K = n_terms - 1 > 3 ? n_terms - 1 : 3;
  return (size_t) (K + 2) * b * b;
}

static void
matmul_d (double *C, const double *A, const double *B, int b)
{
  memset (C, 0, sizeof (double) * b * b);
  for (int i = 0; i < b; i++)
    for (int k = 0; k < b; k++)
      {
        double a = A[i * b + k];
        if (a != 0)
          for (int j = 0; j < b; j++)
            C[i * b + j] += a * B[k * b + j];
      }
}

void
oft_neumann_d (double *R, const double *Q, int n, int b, double *scratch)
{
  double c[64];
  int K = oft_neumann_coeffs (c, n < 60 ? n : 60);
  double *P = scratch, *tmp = scratch + (size_t) b * b;
  memset (R, 0, sizeof (double) * b * b);
  for (int i = 0; i < b; i++)
    R[i * b + i] = 1;
  memcpy (P, Q, sizeof (double) * b * b);
  for (int k = 1; k <= K; k++)
    {
      for (int i = 0; i < b * b; i++)
        R[i] += c[k] * P[i];
      if (k < K)
        {
          matmul_d (tmp, P, Q, b);
          memcpy (P, tmp, sizeof (double) * b * b);
        }
    }
}

void
oft_neumann_backward_d (double *dQ, const double *G, const double *Q, int n, int b, double *scratch)
{
  /* d tr(Gᵀ Q^k) = Σ_{a=0}^{k−1} tr(Gᵀ Q^a dQ Q^{k−1−a})  ⇒  ∂/∂Q = Σ_a (Q^a)ᵀ G (Q^{k−1−a})ᵀ */
  double c[64];
  int K = oft_neumann_coeffs (c, n < 60 ? n : 60);
  size_t bb = (size_t) b * b;
  memset (dQ, 0, sizeof (double) * bb);
  if (K == 0)
    return;
  double *pw = scratch;                 /* pw[p] = Q^p, p = 0..K−1 */
  double *t1 = scratch + (size_t) K * bb;
  memset (pw, 0, sizeof (double) * bb);
  for (int i = 0; i < b; i++)
    pw[i * b + i] = 1;
  for (int p = 1; p < K; p++)
    matmul_d (pw + p * bb, pw + (p - 1) * bb, Q, b);
  for (int k = 1; k <= K; k++)
    for (int a = 0; a < k; a++)
      {
        const double *A = pw + a * bb, *B = pw + (size_t) (k - 1 - a) * bb;
        /* t1 = Aᵀ·G, then dQ += c_k·t1·Bᵀ */
        memset (t1, 0, sizeof (double) * bb);
        for (int i = 0; i < b; i++)
          for (int m = 0; m < b; m++)
            {
              double v = A[m * b + i];
              if (v != 0)
                for (int j = 0; j < b; j++)
                  t1[i * b + j] += v * G[m * b + j];
            }
        for (int i = 0; i < b; i++)
          for (int j = 0; j < b; j++)
            {
              double acc = 0;
              for (int m = 0; m < b; m++)
                acc += t1[i * b + m] * B[j * b + m];
              dQ[i * b + j] += c[k] * acc;
            }
      }
}
