/* Packed storage of the OFT parameter: row i is the strict upper triangle of U_i in
 * torch.triu_indices(b, b, 1) order, Q_i = U_i − U_iᵀ (PEFT ≥ 0.18, no factor ½). */
#include "adapters-internal.h"
#include <math.h>

int
oft_block_size_from_packed (int64_t n_e)
{
  if (n_e <= 0)
    return 0;
  /* b = (1 + √(1 + 8·n_e))/2, then confirm exactly in integers */
  int64_t b = (int64_t) llround ((1.0 + sqrt (1.0 + 8.0 * (double) n_e)) / 2.0);
  for (int64_t c = b - 1; c <= b + 1; c++)
    if (c >= 2 && c * (c - 1) / 2 == n_e && c <= G_MAXINT)
      return (int) c;
  return 0;
}

int
oft_spec_rows (const OftSpec *s)
{
  return s->block_share ? 1 : s->n_blocks;
}

void
oft_packed_to_skew (double *Q, const float *row, int b)
{
  int k = 0;
  for (int i = 0; i < b; i++)
    {
      Q[i * b + i] = 0;
      for (int j = i + 1; j < b; j++, k++)
        {
          Q[i * b + j] = row[k];
          Q[j * b + i] = -(double) row[k];
        }
    }
}

void
oft_skew_grad_to_packed (float *drow, const double *dQ, int b)
{
  int k = 0;
  for (int i = 0; i < b; i++)
    for (int j = i + 1; j < b; j++, k++)
      drow[k] += (float) (dQ[i * b + j] - dQ[j * b + i]);
}
