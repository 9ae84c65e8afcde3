/* Residual adds and scalings. No `restrict`: out may alias an input (in-place residuals). */
#include "oft/nn.h"
#include "nn-internal.h"

void
oft_add_forward (float *out, const float *a, const float *b, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    out[i] = a[i] + b[i];
}

void
oft_add_backward (float *da, float *db, const float *dout, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    {
      float d = dout[i];
      if (da)
        da[i] += d;
      if (db)
        db[i] += d;
    }
}

void
oft_scale_forward (float *out, const float *inp, float s, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    out[i] = s * inp[i];
}

void
oft_scale_backward (float *dinp, const float *dout, float s, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    dinp[i] += s * dout[i];
}
