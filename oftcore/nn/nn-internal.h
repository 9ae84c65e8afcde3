/* Helpers shared by the kernel files of oftcore/nn (not installed). */
#pragma once
#include <math.h>
#include <stdint.h>

/* Below this many floats of work a loop stays on one thread: waking the OpenMP team costs a few
 * microseconds, more than a short loop takes. */
#define OFT_NN_OMP_MIN 32768

/* Numerically stable softmax of row[0..n) in place; entries at index ≥ valid are set to 0
 * (a causal mask: exp(−inf) = 0), so valid ≥ 1 keeps the row a distribution. */
static inline void
oft_nn_softmax_row (float *row, const float *in, int n, int valid)
{
  float mx = -INFINITY;
  for (int j = 0; j < valid; j++)
    mx = fmaxf (mx, in[j]);
  double sum = 0;
  for (int j = 0; j < valid; j++)
    {
      float e = expf (in[j] - mx);
      row[j] = e;
      sum += e;
    }
  float inv = (float) (1.0 / sum);
  for (int j = 0; j < valid; j++)
    row[j] *= inv;
  for (int j = valid; j < n; j++)
    row[j] = 0;
}

/* d = p ⊙ (dp − Σ dp·p): the softmax Jacobian applied to dp, written to (or added into) d. */
static inline void
oft_nn_softmax_row_backward (float *d, const float *dp, const float *p, int n, int accumulate)
{
  double dot = 0;
  for (int j = 0; j < n; j++)
    dot += (double) dp[j] * p[j];
  float fdot = (float) dot;
  if (accumulate)
    for (int j = 0; j < n; j++)
      d[j] += p[j] * (dp[j] - fdot);
  else
    for (int j = 0; j < n; j++)
      d[j] = p[j] * (dp[j] - fdot);
}
