/* DDPM forward noising and the v-prediction target, in float32 like diffusers' DDPMScheduler
 * (√ᾱ and √(1−ᾱ) are taken of the float32 ᾱ); the training timesteps' distribution. */
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

static const char *const timestep_names[] = { "uniform", "cubic" };

gboolean
oft_timestep_sampling_from_name (const char *name, OftTimestepSampling *s)
{
  for (int i = 0; i < (int) G_N_ELEMENTS (timestep_names); i++)
    if (g_strcmp0 (name, timestep_names[i]) == 0)
      {
        *s = (OftTimestepSampling) i;
        return TRUE;
      }
  return FALSE;
}

const char *
oft_timestep_sampling_name (OftTimestepSampling s)
{
  return (unsigned) s < G_N_ELEMENTS (timestep_names) ? timestep_names[s] : "?";
}

int
oft_timestep_sample (OftTimestepSampling s, double u, int n)
{
  double x = s == OFT_TIMESTEPS_CUBIC ? 1.0 - u * u * u : u;
  return CLAMP ((int) (x * n), 0, n - 1);
}
