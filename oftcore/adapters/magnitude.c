/* Per-output magnitude: BOFT's boft_s and the paper's train_with_norm scale the rows of the merged weight. */
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
