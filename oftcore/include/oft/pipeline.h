/* Text-to-image with a Stable Diffusion pipeline folder (diffusers layout): tokenizer, CLIP text
 * encoder, UNet, VAE and the scheduler config; classifier-free guidance with the unconditional and
 * conditional branches in one batch-2 UNet call. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include "oft/scheduler.h"
#include "oft/tokenizer.h"
#include "oft/clip.h"
#include "oft/unet.h"
#include "oft/vae.h"
#include "oft/condition-encoder.h"

G_BEGIN_DECLS

typedef struct {
  OftTokenizer *tokenizer;
  OftClipText *text;
  OftUnet *unet;
  OftVae *vae;
  OftNoiseSchedule schedule;
  char *dir;                /* the folder, or the single file it was loaded from */
} OftPipeline;

/* Reads model_index.json's folder: tokenizer/, text_encoder/, unet/, vae/, scheduler/. */
OftPipeline *oft_pipeline_load (const char *dir, GError **error);
/* One original Stable Diffusion (CompVis LDM) checkpoint, .safetensors or .ckpt (chosen by extension
 * and content, see oft_weights_open), SD 1.x layout (see oft/ldm.h). The configs and tokenizer come from
 * `config_dir`, a diffusers folder (unet/, vae/, text_encoder/ config.json, scheduler/, tokenizer/), or,
 * when NULL, from the bundled SD 1.5 configs (oft_sd15_config_dir); those carry no tokenizer
 * vocabulary unless one was installed beside them, so config_dir is needed for the tokenizer. */
OftPipeline *oft_pipeline_load_single (const char *file, const char *config_dir, GError **error);
/* Where the bundled SD 1.5 configs are: $OFT_DATA_DIR/sd15-config, else the installed data dir. g_free. */
char        *oft_sd15_config_dir (void);
void         oft_pipeline_free (OftPipeline *p);
/* Runs the UNet and the VAE decoder on `device` (see oft_unet_set_device; the tokenizer, the text encoder
 * and the sampler loop stay on the host: the latents are small). OFT_DEVICE_AUTO falls back to the CPU
 * with one g_message when CUDA is not available. On failure both stay on the CPU. */
gboolean     oft_pipeline_set_device (OftPipeline *p, OftDevice device, OftDType dtype, GError **error);

typedef struct {
  const char *prompt;
  const char *negative;     /* NULL = "" */
  int steps;                /* default 30 */
  float guidance;           /* ≤ 1 disables classifier-free guidance */
  OftSamplerKind sampler;
  float eta;                /* DDIM only */
  uint64_t seed;
  int width, height;        /* pixels, multiples of the VAE factor × UNet multiple */
  int clip_skip;
  const float *init_noise;  /* [1, latent, h, w] replaces the seeded noise (NULL: from the seed) */
  /* controllable generation: the condition encoder of a control adapter and its condition image
   * [3, height, width] in [0, 1]; the features, × control_scale, join both CFG branches after conv_in */
  const OftCondEncoder *control;
  const float *condition;
  float control_scale;      /* default 1 */
} OftGenerateParams;

void oft_generate_params_init (OftGenerateParams *p);

/* Called after each sampling step; return FALSE to cancel (the job then fails with
 * OFT_ERROR_CANCELLED). `done` counts finished steps of `total`. */
typedef gboolean (*OftProgressFunc) (int done, int total, gpointer user_data);

/* rgb[3, height, width] in [0, 1] (diffusers' output_type "pt"); latents_out (may be NULL) receives
 * the final latents [1, latent, h, w]. */
gboolean oft_pipeline_generate (OftPipeline *p, const OftGenerateParams *params, float *rgb, float *latents_out,
                                OftProgressFunc progress, gpointer progress_data, GError **error);

/* 8-bit interleaved RGB from planar [3, H, W] in [0, 1], rounding half to even like diffusers' numpy_to_pil. */
void oft_image_to_rgb8 (uint8_t *rgb8, const float *rgb, int width, int height);
/* Writes 8-bit RGB as a PNG (libpng), atomically. */
gboolean oft_png_write_rgb8 (const char *path, const uint8_t *rgb8, int width, int height, GError **error);

G_END_DECLS
