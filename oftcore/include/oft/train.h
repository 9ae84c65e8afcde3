/* Training OFT adapters on a Stable Diffusion UNet, DreamBooth style (diffusers' train_dreambooth
 * recipe): instance images + prompt, optional prior preservation with class images, DDPM noising,
 * epsilon or v-prediction targets, MSE loss, AdamW (torch.optim.AdamW), learning-rate schedules with
 * warmup, gradient accumulation and clipping, atomic resumable checkpoints. */
#pragma once
#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "oft/adapters.h"
#include "oft/image.h"
#include "oft/peft.h"
#include "oft/pipeline.h"
#include "oft/rng.h"
#include "oft/scheduler.h"
#include "oft/condition-encoder.h"

G_BEGIN_DECLS

/* ---- optimizer: torch.optim.AdamW (amsgrad off), in float32 like torch ---- */
typedef struct {
  double beta1, beta2, eps, weight_decay;
} OftAdamW;

void oft_adamw_init (OftAdamW *o);  /* torch's defaults: betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2 */
/* One step k (1-based) over n values: p ← p(1 − lr·wd); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
 * p ← p − (lr/(1−β1^k)) · m / (√v/√(1−β2^k) + eps). */
void oft_adamw_step (const OftAdamW *o, float *p, float *m, float *v, const float *g, int64_t n, int64_t k,
                     double lr);

/* ---- learning rate: diffusers' get_scheduler (LambdaLR factors) ---- */
typedef enum { OFT_LR_CONSTANT, OFT_LR_COSINE, OFT_LR_LINEAR } OftLrSchedule;

gboolean    oft_lr_schedule_from_name (const char *name, OftLrSchedule *s);
const char *oft_lr_schedule_name (OftLrSchedule s);
/* The learning rate of optimizer step `step` (0-based) of `total`: warmup ramps step/warmup from 0,
 * then constant 1, cosine ½(1 + cos(π·progress)) or linear (total − step)/(total − warmup), × base. */
double oft_lr_at (OftLrSchedule s, double base, int64_t step, int64_t warmup, int64_t total);

/* torch.nn.utils.clip_grad_norm_ (L2): total = ‖all gradients‖₂ (summed in double); when max_norm > 0
 * every gradient is multiplied by min(1, max_norm/(total + 1e-6)). Returns the total norm before
 * clipping (NaN/inf when a gradient is not finite; then nothing is scaled). */
double oft_clip_grad_norm (float *const *grads, const int64_t *n, size_t count, double max_norm);

/* ---- DDPM noising (diffusers' DDPMScheduler.add_noise / get_velocity), float32 ----
 * x0, noise, out: [B, n]; alphas_cumprod_t[b] = ᾱ at the timestep of sample b. */
void oft_train_add_noise (float *noisy, const float *x0, const float *noise, const float *alphas_cumprod_t,
                          int B, int64_t n);
/* v = √ᾱ ε − √(1−ᾱ) x0 */
void oft_train_velocity (float *v, const float *x0, const float *noise, const float *alphas_cumprod_t,
                         int B, int64_t n);

/* ---- training timesteps ----
 * uniform: ⌊u·N⌋ as diffusers' training scripts draw them; cubic: ⌊(1 − u³)·N⌋, T2I-Adapter's
 * non-uniform sampling, which draws the noisy half of the schedule (where a picture's layout is decided
 * and a condition matters most) four times in five. u uniform in [0, 1); the result is in [0, N − 1]. */
typedef enum { OFT_TIMESTEPS_UNIFORM, OFT_TIMESTEPS_CUBIC } OftTimestepSampling;

gboolean    oft_timestep_sampling_from_name (const char *name, OftTimestepSampling *s);
const char *oft_timestep_sampling_name (OftTimestepSampling s);
int         oft_timestep_sample (OftTimestepSampling s, double u, int n);

/* ---- data ---- */
/* The PNG/JPEG files of a folder (by extension, sorted by name); an empty array when there are none. */
GPtrArray *oft_train_list_images (const char *dir, GError **error);
/* out[3, size, size] in [−1, 1] (planar): the shorter side resized to `size` with an antialiased
 * bilinear (triangle) filter widened by the scale factor when shrinking (PIL's BILINEAR resize, in
 * float), then a centred crop (torchvision's CenterCrop offsets), optionally mirrored left–right.
 * Gray and alpha images are converted to RGB first. */
void oft_train_preprocess (float *out, const OftImage *img, int size, bool flip);
/* out[3, height, width] in [0, 1]: the same filter, scaled to cover width×height, centre-cropped
 * (condition images for generation). */
void oft_image_to_planar (float *out, const OftImage *img, int width, int height);

/* ---- the DreamBooth trainer ---- */
typedef struct {
  int step, total;     /* optimizer steps done, of total */
  double loss;         /* loss of the last step (mean over its micro-batches) */
  double lr;           /* learning rate used by the last step */
  double eta_s;        /* estimated seconds left */
} OftTrainProgress;
/* Called after each optimizer step; return FALSE to stop (as the cancel flag does). */
typedef gboolean (*OftTrainProgressFunc) (const OftTrainProgress *p, gpointer user_data);

typedef struct {
  /* data */
  const char *const *images;     /* instance image files (NULL-terminated) */
  const char *prompt;            /* instance prompt, e.g. "a photo of sks dog" */
  /* controllable generation (the paper's control task): per-image captions and condition images,
   * the condition encoder trained with the adapter and saved beside it (OFT_COND_ENCODER_FILE) */
  const char *const *captions;   /* one per instance image, or NULL: `prompt` for all */
  const char *const *conditions; /* one condition image per instance image, or NULL: no encoder */
  const char *condition_type;    /* canny | landmarks | segmentation (stored with the encoder) */
  const char *class_prompt;      /* NULL: no prior preservation */
  const char *class_dir;         /* class images; generated there when fewer than num_class_images */
  int num_class_images;          /* default 100 */
  double prior_weight;           /* default 1.0 */
  int class_steps;               /* sampling steps for generated class images (default 30) */
  int resolution;                /* pixels (0: the UNet's native size) */
  bool flip;                     /* random horizontal flips */
  /* adapter: a new one from `adapter` (kind OFT: oft_block_size, or blocks > 0 for r blocks per module;
   * kind BOFT: boft_block_size or blocks > 0 for boft_block_num, boft_n_factors; boft_R starts at 0 and
   * boft_s at 1, both trained) on the modules whose path ends with one of `targets`, or `init_adapter`
   * (its own config) */
  OftAdapterConfig adapter;
  int blocks;
  const char *const *targets;    /* NULL: to_q, to_k, to_v, to_out.0 */
  const char *init_adapter;
  /* optimisation */
  int steps, batch, grad_accum;
  double lr;
  OftLrSchedule schedule;
  int warmup;
  OftAdamW adamw;
  double max_grad_norm;          /* ≤ 0: no clipping */
  OftTimestepSampling timesteps; /* default uniform */
  /* magnitude fitting (the paper's train_with_norm): after `steps`, fit_magnitude more steps with R (and
   * the condition encoder) frozen, training only a per-output scale s of every module (init 1; BOFT: its
   * boft_s) with a fresh AdamW (same betas, eps, weight decay) at a constant magnitude_lr (≤ 0: lr). An
   * OFT adapter then carries "gimp_oft_magnitude" and <module>.oft_s (see OftAdapterConfig.magnitude). */
  int fit_magnitude;
  double magnitude_lr;
  uint64_t seed;
  bool gradient_checkpointing;
  /* output and safety */
  const char *out_dir;           /* the PEFT adapter folder written at the end; checkpoints in OUT/checkpoint/ */
  int checkpoint_every;          /* 0: only at the end */
  bool resume;                   /* continue from OUT/checkpoint */
  volatile gint *cancel;         /* non-zero: stop after the current step, writing a checkpoint */
  OftTrainProgressFunc progress;
  gpointer progress_data;
  GFunc log;                     /* messages (class image generation, resume), may be NULL */
  gpointer log_data;
} OftTrainParams;

/* Defaults (paper's DreamBooth setting, see README): r = 4 blocks, Cayley–Neumann 5 terms, eps 6e-5,
 * lr 6e-5 constant, 1000 steps, batch 1, AdamW wd 1e-2, max_grad_norm 1, prior weight 1, 100 class images. */
void oft_train_params_init (OftTrainParams *t);

/* Trains on p's UNet (the adapter is attached and detached again). Steps are counted over both stages
 * (steps + fit_magnitude) for progress, checkpoints and resume. On success out_dir holds the PEFT
 * adapter (adapter_config.json + adapter_model.safetensors) and out_dir/checkpoint/state.safetensors the
 * final state; on a NaN/inf loss or an error the last checkpoint is kept as it was; a cancel writes one
 * first (error OFT_ERROR_CANCELLED). */
gboolean oft_train_run (OftPipeline *p, const OftTrainParams *t, GError **error);

/* Replay: `steps` AdamW steps (lr, wd; no schedule, no clipping) on the fixed batch of `batch_file`
 * (tensors latents, noise, timesteps, encoder_hidden_states; target = noise, or v with
 * v-prediction) from `init_adapter`; the adapter after the last step is saved in out_dir.
 * losses (may be NULL) receives steps + 1 values: before each step, then after the last. */
gboolean oft_train_replay (OftUnet *u, const OftNoiseSchedule *s, const char *batch_file, const char *init_adapter,
                           int steps, double lr, double weight_decay, const char *out_dir, double *losses,
                           GError **error);

/* Checkpoint state (OUT/checkpoint/state.safetensors): parameters and AdamW moments of every module
 * (adapter order), step, RNG state, data order. */
typedef struct {
  int64_t step;
  OftRng rng;
  size_t n_params;
  char **names;            /* module paths */
  int64_t *numel;
  float **param, **m, **v;
  int n_order;             /* instance data order: a permutation and the next position */
  int32_t *order;
  int order_pos;
  int n_class_order;
  int32_t *class_order;
  int class_order_pos;
  char *fingerprint;       /* the settings that must not change on resume */
} OftTrainState;

gboolean oft_train_state_save (const OftTrainState *s, const char *path, GError **error);
/* Fills s (allocating; oft_train_state_clear frees). */
gboolean oft_train_state_load (OftTrainState *s, const char *path, GError **error);
void     oft_train_state_clear (OftTrainState *s);

G_END_DECLS
