/* Helpers shared by the kernel files of oftcore/nn (not installed). */
#pragma once
#include <math.h>
#include <stdint.h>
#include <cblas.h>

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

/* Bias gradients as sgemv against a vector of ones, so they run on OpenBLAS's threads like the GEMMs
 * around them instead of waking an OpenMP team between BLAS calls (on few cores the two thread pools
 * spin against each other). Chunks of OFT_NN_ONES keep the ones vector small and static. */
#define OFT_NN_ONES 1024
static const float oft_nn_ones[OFT_NN_ONES] = { [0 ... OFT_NN_ONES - 1] = 1.0f };

/* y[i] += Σ_j a[i·lda + j], i < rows, j < cols */
static inline void
oft_nn_row_sums_add (float *y, const float *a, int rows, int64_t cols, int64_t lda)
{
  for (int64_t j = 0; j < cols; j += OFT_NN_ONES)
    {
      int n = cols - j < OFT_NN_ONES ? (int) (cols - j) : OFT_NN_ONES;
      cblas_sgemv (CblasRowMajor, CblasNoTrans, rows, n, 1.0f, a + j, (int) lda, oft_nn_ones, 1, 1.0f, y, 1);
    }
}

/* y[j] += Σ_i a[i·lda + j], i < rows, j < cols */
static inline void
oft_nn_col_sums_add (float *y, const float *a, int64_t rows, int cols, int64_t lda)
{
  for (int64_t i = 0; i < rows; i += OFT_NN_ONES)
    {
      int m = rows - i < OFT_NN_ONES ? (int) (rows - i) : OFT_NN_ONES;
      cblas_sgemv (CblasRowMajor, CblasTrans, m, cols, 1.0f, a + i * lda, (int) lda, oft_nn_ones, 1, 1.0f, y, 1);
    }
}
