/* Per-output magnitude: BOFT's boft_s and the paper's train_with_norm scale the rows of the merged weight,
 * or equally the layer's output before the bias. */
#include "adapters-internal.h"

void
oft_scale_rows_forward (float *Ws, const float *W, const float *s, int64_t out, int64_t d)
{
  for (int64_t o = 0; o < out; o++)
    for (int64_t i = 0; i < d; i++)
      Ws[o * d + i] = W[o * d + i] * s[o];
}

void
oft_scale_rows_backward (float *dW, float *ds, const float *dWs, const float *W, const float *s,
                         int64_t out, int64_t d)
{
  for (int64_t o = 0; o < out; o++)
    {
      double acc = 0;
      for (int64_t i = 0; i < d; i++)
        {
          if (dW)
            dW[o * d + i] += dWs[o * d + i] * s[o];
          acc += (double) dWs[o * d + i] * W[o * d + i];
        }
      if (ds)
        ds[o] += (float) acc;
    }
}

void
oft_scale_output_forward (float *y, const float *ypre, const float *s, int64_t N, int64_t out)
{
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < out; o++)
      y[n * out + o] = ypre[n * out + o] * s[o];
}

void
oft_scale_output_backward (float *dypre, float *ds, const float *dy, const float *ypre, const float *s,
                           int64_t N, int64_t out)
{
  if (dypre)
    for (int64_t n = 0; n < N; n++)
      for (int64_t o = 0; o < out; o++)
        dypre[n * out + o] += dy[n * out + o] * s[o];
  if (!ds)
    return;
  /* summed in double over the N rows (N = B·H·W tokens can be thousands) */
  double *acc = g_new0 (double, out);
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < out; o++)
      acc[o] += (double) dy[n * out + o] * ypre[n * out + o];
  for (int64_t o = 0; o < out; o++)
    ds[o] += (float) acc[o];
  g_free (acc);
}
