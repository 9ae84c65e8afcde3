/* Nearest 2× upsampling (diffusers' Upsample2D with interpolate(scale_factor=2, mode="nearest")) and
 * channel concatenation (the UNet's skip connections). */
#include "oft/nn.h"
#include "nn-internal.h"
#include <string.h>

void
oft_upsample2x_forward (float *out, const float *inp, int64_t BC, int H, int W)
{
  const int W2 = 2 * W;
#pragma omp parallel for if (BC * H * W > OFT_NN_OMP_MIN / 4)
  for (int64_t c = 0; c < BC; c++)
    for (int y = 0; y < H; y++)
      {
        const float *src = inp + (c * H + y) * W;
        float *d0 = out + (c * 2 * H + 2 * y) * W2;
        for (int x = 0; x < W; x++)
          d0[2 * x] = d0[2 * x + 1] = src[x];
        memcpy (d0 + W2, d0, sizeof (float) * W2);
      }
}

void
oft_upsample2x_backward (float *dinp, const float *dout, int64_t BC, int H, int W)
{
  const int W2 = 2 * W;
#pragma omp parallel for if (BC * H * W > OFT_NN_OMP_MIN / 4)
  for (int64_t c = 0; c < BC; c++)
    for (int y = 0; y < H; y++)
      {
        float *dst = dinp + (c * H + y) * W;
        const float *d0 = dout + (c * 2 * H + 2 * y) * W2, *d1 = d0 + W2;
        for (int x = 0; x < W; x++)
          dst[x] += (d0[2 * x] + d0[2 * x + 1]) + (d1[2 * x] + d1[2 * x + 1]);
      }
}

void
oft_concat_forward (float *out, const float *a, const float *b, int B, int Ca, int Cb, int64_t HW)
{
  const int64_t na = (int64_t) Ca * HW, nb = (int64_t) Cb * HW;
  for (int i = 0; i < B; i++)
    {
      memcpy (out + i * (na + nb), a + i * na, sizeof (float) * na);
      memcpy (out + i * (na + nb) + na, b + i * nb, sizeof (float) * nb);
    }
}

static void
add_into (float *dst, const float *src, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    dst[i] += src[i];
}

void
oft_concat_backward (float *da, float *db, const float *dout, int B, int Ca, int Cb, int64_t HW)
{
  const int64_t na = (int64_t) Ca * HW, nb = (int64_t) Cb * HW;
  for (int i = 0; i < B; i++)
    {
      if (da)
        add_into (da + i * na, dout + i * (na + nb), na);
      if (db)
        add_into (db + i * nb, dout + i * (na + nb) + na, nb);
    }
}
