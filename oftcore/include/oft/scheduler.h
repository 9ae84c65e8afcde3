/* Noise schedules and samplers as diffusers configures them from scheduler_config.json:
 * DDIM (η = 0 and > 0), Euler, Euler ancestral, DPM++ 2M and DPM++ 2M Karras; epsilon and v prediction. */
#pragma once
#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef enum { OFT_BETA_LINEAR, OFT_BETA_SCALED_LINEAR, OFT_BETA_SQUAREDCOS_CAP_V2 } OftBetaSchedule;
typedef enum { OFT_SPACING_LEADING, OFT_SPACING_TRAILING, OFT_SPACING_LINSPACE } OftTimestepSpacing;
typedef enum { OFT_PREDICT_EPSILON, OFT_PREDICT_V } OftPrediction;

/* The training-time noise schedule (what every sampler of a model shares). */
typedef struct {
  int num_train_timesteps;
  float beta_start, beta_end;
  OftBetaSchedule beta_schedule;
  int steps_offset;
  OftTimestepSpacing spacing;
  OftPrediction prediction;
  bool set_alpha_to_one;
  bool clip_sample;
  float clip_sample_range;
} OftNoiseSchedule;

/* SD1.5's schedule (scaled_linear 0.00085 → 0.012, 1000 steps, leading, offset 1, epsilon). */
void     oft_noise_schedule_sd15 (OftNoiseSchedule *s);
/* Fields present in a diffusers scheduler_config.json override the SD1.5 defaults. */
gboolean oft_noise_schedule_load (OftNoiseSchedule *s, const char *path, GError **error);
/* ᾱ_t for t = 0..num_train_timesteps−1, computed in float32 like diffusers. */
void     oft_noise_schedule_alphas_cumprod (const OftNoiseSchedule *s, float *alphas_cumprod);

typedef enum {
  OFT_SAMPLER_DDIM,
  OFT_SAMPLER_EULER,
  OFT_SAMPLER_EULER_ANCESTRAL,
  OFT_SAMPLER_DPMPP_2M,
  OFT_SAMPLER_DPMPP_2M_KARRAS,
} OftSamplerKind;

/* "ddim", "euler", "euler-a", "dpmpp-2m", "dpmpp-2m-karras". */
gboolean    oft_sampler_kind_from_name (const char *name, OftSamplerKind *kind);
const char *oft_sampler_kind_name (OftSamplerKind kind);

typedef struct _OftSampler OftSampler;

/* eta only matters for DDIM. */
OftSampler *oft_sampler_new (OftSamplerKind kind, const OftNoiseSchedule *s, int steps, float eta, GError **error);
void        oft_sampler_free (OftSampler *sampler);
int         oft_sampler_steps (const OftSampler *sampler);
/* The timestep the model sees at step i (may be fractional for Karras sigmas). */
float       oft_sampler_timestep (const OftSampler *sampler, int i);
/* σ_i = √((1 − ᾱ)/ᾱ) of the noise level at step i (i = steps: after the last step). */
float       oft_sampler_sigma (const OftSampler *sampler, int i);
/* Initial latents = this × N(0, I). */
float       oft_sampler_init_noise_sigma (const OftSampler *sampler);
/* The model input at step i is this × the current sample (diffusers' scale_model_input). */
float       oft_sampler_input_scale (const OftSampler *sampler, int i);
/* Whether step() consumes fresh N(0, I) noise (DDIM with η > 0, Euler ancestral). */
bool        oft_sampler_needs_noise (const OftSampler *sampler);
/* One step: sample[n] ← the sample at step i+1 from the model output at step i. `noise` (n values of
 * N(0, I)) is read only when needs_noise; pred_x0 (may be NULL) receives the predicted clean sample.
 * Steps must run in order 0, 1, ... (multistep solvers keep history). */
void        oft_sampler_step (OftSampler *sampler, int i, float *sample, const float *model_out,
                              const float *noise, float *pred_x0, int64_t n);

G_END_DECLS
