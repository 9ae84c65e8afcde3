/* DDPM forward noising and the v-prediction target, in float32 like diffusers' DDPMScheduler
 * (√ᾱ and √(1−ᾱ) are taken of the float32 ᾱ). */
#include "oft/train.h"
#include <math.h>

void
oft_train_add_noise (float *noisy, const float *x0, const float *noise, const float *ac, int B, int64_t n)
{
  for (int b = 0; b < B; b++)
    {
      float sa = sqrtf (ac[b]), sb = sqrtf (1.0f - ac[b]);
      for (int64_t i = 0; i < n; i++)
        noisy[b * n + i] = sa * x0[b * n + i] + sb * noise[b * n + i];
    }
}

void
oft_train_velocity (float *v, const float *x0, const float *noise, const float *ac, int B, int64_t n)
{
  for (int b = 0; b < B; b++)
    {
      float sa = sqrtf (ac[b]), sb = sqrtf (1.0f - ac[b]);
      for (int64_t i = 0; i < n; i++)
        v[b * n + i] = sa * noise[b * n + i] - sb * x0[b * n + i];
    }
}
