/* DDIM (Song et al.), as diffusers' DDIMScheduler.step: ᾱ-parametrised, η scales the added noise. */
#include "sampler-private.h"
#include <math.h>

void
oft_sampler_ddim_step (OftSampler *s, int i, float *x, const float *out, const float *noise,
                       float *pred_x0, int64_t n)
{
  const OftNoiseSchedule *sc = &s->schedule;
  int t = (int) s->timesteps[i];
  int prev = t - sc->num_train_timesteps / s->steps;
  float a = s->alphas_cumprod[t];
  float a_prev = prev >= 0 ? s->alphas_cumprod[prev] : (sc->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0]);
  float b = 1 - a, b_prev = 1 - a_prev;
  float sqrt_a = sqrtf (a), sqrt_b = sqrtf (b), sqrt_a_prev = sqrtf (a_prev);
  float variance = (b_prev / b) * (1 - a / a_prev);
  float std = s->eta * sqrtf (variance);
  float dir = sqrtf (1 - a_prev - std * std);
  float range = sc->clip_sample_range;

#pragma omp parallel for if (n > 65536)
  for (int64_t j = 0; j < n; j++)
    {
      float x0, eps;
      if (sc->prediction == OFT_PREDICT_EPSILON)
        {
          x0 = (x[j] - sqrt_b * out[j]) / sqrt_a;
          eps = out[j];
        }
      else
        {
          x0 = sqrt_a * x[j] - sqrt_b * out[j];
          eps = sqrt_a * out[j] + sqrt_b * x[j];
        }
      if (sc->clip_sample)
        {
          x0 = fminf (fmaxf (x0, -range), range);
          /* diffusers re-derives ε from the clipped x0 */
          eps = (x[j] - sqrt_a * x0) / sqrt_b;
        }
      if (pred_x0)
        pred_x0[j] = x0;
      float next = sqrt_a_prev * x0 + dir * eps;
      if (std > 0)
        next += std * noise[j];
      x[j] = next;
    }
}
