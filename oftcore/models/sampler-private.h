/* Shared state of the samplers (sampler.c sets it up, sampler-*.c step). */
#pragma once
#include "oft/scheduler.h"
#include <math.h>

struct _OftSampler {
  OftSamplerKind kind;
  OftNoiseSchedule schedule;
  int steps;
  float eta;
  float *alphas_cumprod;   /* [num_train_timesteps] */
  float *timesteps;        /* [steps] what the model sees */
  float *sigmas;           /* [steps + 1] (σ-based samplers; the last is 0) */
  float *prev_x0;          /* DPM++ 2M: the previous step's x0 prediction */
  double prev_lambda;      /* and its log-SNR λ = log(α/σ) */
  int64_t prev_n;
};

void oft_sampler_ddim_step (OftSampler *s, int i, float *x, const float *eps, const float *noise,
                            float *pred_x0, int64_t n);
void oft_sampler_euler_step (OftSampler *s, int i, float *x, const float *out, const float *noise,
                             float *pred_x0, int64_t n);
void oft_sampler_dpmpp_step (OftSampler *s, int i, float *x, const float *out, float *pred_x0, int64_t n);

/* x0 prediction from a model output at noise level σ in the "x = x0 + σ·ε" (Karras) scaling:
 * epsilon: x0 = x − σ·out; v: x0 = out·(−σ/√(σ²+1)) + x/(σ²+1). */
static inline float
sigma_pred_x0 (OftPrediction p, float x, float out, float sigma)
{
  if (p == OFT_PREDICT_EPSILON)
    return x - sigma * out;
  return out * (-sigma / sqrtf (sigma * sigma + 1)) + x / (sigma * sigma + 1);
}
