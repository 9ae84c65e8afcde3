/* Euler and Euler ancestral (Karras et al. σ-parametrisation), as diffusers' Euler(Ancestral)DiscreteScheduler
 * with s_churn = 0: x ← x + (x − x0)/σ · (σ_next − σ); the ancestral form steps to σ_down and adds σ_up noise. */
#include "sampler-private.h"
#include <math.h>

void
oft_sampler_euler_step (OftSampler *s, int i, float *x, const float *out, const float *noise,
                        float *pred_x0, int64_t n)
{
  float sigma = s->sigmas[i], next = s->sigmas[i + 1];
  float target = next, up = 0;
  if (s->kind == OFT_SAMPLER_EULER_ANCESTRAL)
    {
      up = sqrtf (next * next * (sigma * sigma - next * next) / (sigma * sigma));
      target = sqrtf (next * next - up * up);
    }
  float dt = target - sigma;
  OftPrediction p = s->schedule.prediction;

#pragma omp parallel for if (n > 65536)
  for (int64_t j = 0; j < n; j++)
    {
      float x0 = sigma_pred_x0 (p, x[j], out[j], sigma);
      if (pred_x0)
        pred_x0[j] = x0;
      float v = x[j] + (x[j] - x0) / sigma * dt;
      if (up > 0)
        v += noise[j] * up;
      x[j] = v;
    }
}
