/* Per-row rotation from the packed parameter: exact Cayley or PEFT's Neumann series, and its gradient. */
#include "adapters-internal.h"
#include <math.h>
#include <string.h>

void
oft_rotation_forward (float *R, float *cache, const float *packed, const OftSpec *s)
{
  const int b = s->b, rows = oft_spec_rows (s);
  const int64_t ne = (int64_t) b * (b - 1) / 2;
  const size_t bb = (size_t) b * b;
#pragma omp parallel for schedule(static) if (rows > 1 && b >= 32)
  for (int r = 0; r < rows; r++)
    {
      double *Q = g_new (double, bb * 2 + (s->neumann ? 2 * bb : bb));
      double *Rd = Q + bb, *aux = Rd + bb;
      oft_packed_to_skew (Q, packed + r * ne, b);
      if (s->neumann)
        oft_neumann_d (Rd, Q, s->n_terms, b, aux);
      else if (!oft_cayley_d (Rd, aux, Q, b))
        {
          /* unreachable for a finite skew Q (eigenvalues of I + Q are 1 ± iλ); NaN keeps it visible */
          for (size_t i = 0; i < bb; i++)
            Rd[i] = aux[i] = NAN;
        }
      for (size_t i = 0; i < bb; i++)
        R[r * bb + i] = (float) Rd[i];
      if (cache && !s->neumann)
        for (size_t i = 0; i < bb; i++)
          cache[r * bb + i] = (float) aux[i];
      g_free (Q);
    }
}

void
oft_rotation_backward (float *dpacked, const float *dR, const float *cache, const float *packed,
                       const OftSpec *s)
{
  if (!dpacked)
    return;
  const int b = s->b, rows = oft_spec_rows (s);
  const int64_t ne = (int64_t) b * (b - 1) / 2;
  const size_t bb = (size_t) b * b;
  const size_t extra = s->neumann ? oft_neumann_scratch (s->n_terms, b) : 2 * bb;
#pragma omp parallel for schedule(static) if (rows > 1 && b >= 32)
  for (int r = 0; r < rows; r++)
    {
      double *G = g_new (double, 3 * bb + extra);
      double *dQ = G + bb, *Q = dQ + bb, *aux = Q + bb;
      for (size_t i = 0; i < bb; i++)
        G[i] = dR[r * bb + i];
      oft_packed_to_skew (Q, packed + r * ne, b);
      if (s->neumann)
        oft_neumann_backward_d (dQ, G, Q, s->n_terms, b, aux);
      else
        {
          double *A = aux;
          if (cache)
            for (size_t i = 0; i < bb; i++)
              A[i] = cache[r * bb + i];
          else
            oft_cayley_d (aux + bb, A, Q, b);
          oft_cayley_backward_d (dQ, G, A, b);
        }
      oft_skew_grad_to_packed (dpacked + r * ne, dQ, b);
      g_free (G);
    }
}
