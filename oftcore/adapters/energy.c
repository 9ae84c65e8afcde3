/* Hyperspherical energy of the neurons (rows) of W: what OFT preserves. */
#include "adapters-internal.h"
#include <math.h>

static double *
row_norms (const float *W, int64_t out, int64_t d, double extra)
{
  double *n = g_new (double, out);
  for (int64_t o = 0; o < out; o++)
    {
      double acc = extra;
      for (int64_t i = 0; i < d; i++)
        acc += (double) W[o * d + i] * W[o * d + i];
      n[o] = sqrt (acc);
    }
  return n;
}

static double
dot_row (const float *W, int64_t d, int64_t i, int64_t j)
{
  double acc = 0;
  for (int64_t k = 0; k < d; k++)
    acc += (double) W[i * d + k] * W[j * d + k];
  return acc;
}

double
oft_hyperspherical_energy (const float *W, int64_t out, int64_t d)
{
  /* the paper's HE: Σ_{i≠j} ‖ŵ_i − ŵ_j‖⁻¹ with ‖ŵ_i − ŵ_j‖² = 2 − 2cos θ_ij (ordered pairs) */
  double *n = row_norms (W, out, d, 0);
  double e = 0;
  for (int64_t i = 0; i < out; i++)
    for (int64_t j = i + 1; j < out; j++)
      {
        double c = dot_row (W, d, i, j) / (n[i] * n[j]);
        e += 2.0 / sqrt (fmax (2.0 - 2.0 * c, 0.0));
      }
  g_free (n);
  return e;
}

double
oft_hyperspherical_energy_ref (const float *W, int64_t out, int64_t d)
{
  /* the OFT reference code's mhe_loss: the 2·out points ±w_i, norms √(‖w‖² + 1e-4), mean of
   * (2 − 2cos θ)^(−1/2) over the 2·out·(2·out − 1)/2 unordered pairs. The pair (w_i, −w_i) and the
   * pairs (±w_i, ∓w_j) are derived from cos θ_ij directly. */
  double *n = row_norms (W, out, d, 1e-4);
  double sum = 0;
  for (int64_t i = 0; i < out; i++)
    {
      double cii = -dot_row (W, d, i, i) / (n[i] * n[i]);      /* w_i vs −w_i */
      sum += 1.0 / sqrt (2.0 - 2.0 * cii);
      for (int64_t j = i + 1; j < out; j++)
        {
          double c = dot_row (W, d, i, j) / (n[i] * n[j]);
          /* (w_i, w_j) and (−w_i, −w_j) have cos c; (w_i, −w_j) and (−w_i, w_j) have −c */
          sum += 2.0 / sqrt (fmax (2.0 - 2.0 * c, 0.0)) + 2.0 / sqrt (fmax (2.0 + 2.0 * c, 0.0));
        }
    }
  g_free (n);
  double m = 2.0 * (double) out;
  return sum / (m * (m - 1) / 2.0);
}
