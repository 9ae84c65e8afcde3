/* AutoencoderKL (diffusers): encoder to the latent distribution, decoder back to pixels.
 * Built from vae/config.json; images are NCHW in [−1, 1], latents NCHW unscaled (multiply by
 * scaling_factor before the UNet, divide after, as the pipelines do). */
#pragma once
#include <glib.h>
#include <stdint.h>
#include "oft/safetensors.h"
#include "oft/params.h"
#include "oft/backend.h"

G_BEGIN_DECLS

typedef struct _OftVae OftVae;

/* A diffusers vae/ folder: config.json + diffusion_pytorch_model.safetensors. */
OftVae *oft_vae_load (const char *dir, GError **error);
/* A diffusers VAE config.json and tensors with diffusers' names through `src`. */
OftVae *oft_vae_load_from (const char *config_path, const OftWeightSource *src, GError **error);
void    oft_vae_free (OftVae *v);
/* The architecture of config_path with random weights (see OftWeightSource.random_init): for benchmarks. */
OftVae *oft_vae_new_random (const char *config_path, guint64 seed, GError **error);
float   oft_vae_scaling_factor (const OftVae *v);
int     oft_vae_latent_channels (const OftVae *v);
/* Spatial downsampling factor (8 for SD). */
int     oft_vae_factor (const OftVae *v);

/* img[B, 3, H, W] → mean, logvar [B, latent, H/f, W/f] (logvar clamped to [−30, 20]; may be NULL). */
gboolean oft_vae_encode (OftVae *v, const float *img, int B, int H, int W, float *mean, float *logvar,
                         GError **error);
/* z[B, latent, h, w] → img[B, 3, h·f, w·f] */
gboolean oft_vae_decode (OftVae *v, const float *z, int B, int h, int w, float *img, GError **error);

/* ---- full-parameter training (the first stage of latent diffusion, without the GAN and LPIPS
 * losses of LDM's autoencoder: reconstruction MSE plus a small KL term) ---- */
/* Allocates gradients for every weight (oft_vae_params). */
gboolean   oft_vae_attach_full_training (OftVae *v, GError **error);
/* Every weight under its diffusers name, in load order (the model owns it). */
OftParams *oft_vae_params (OftVae *v);
/* img[B, 3, H, W] in [−1, 1]; eps[B, latent, H/f, W/f] standard normal (the sample z = μ + σ·ε);
 * loss = mean((decode(z) − img)²) + kl_weight · mean(½(μ² + σ² − 1 − log σ²)) over all latent
 * values; every weight's gradient accumulates. rec_loss and kl_loss (may be NULL) get the two terms. */
gboolean   oft_vae_train_loss (OftVae *v, const float *img, const float *eps, int B, int H, int W, float kl_weight,
                               float *loss, float *rec_loss, float *kl_loss, GError **error);

/* ---- device ----
 * Moves the decoder to `device` (oft/backend.h): OFT_DEVICE_CUDA uploads the weights in storage type
 * `dtype` (OFT_DTYPE_F32 or OFT_DTYPE_BF16) through the CUDA module and fails with the reason when it
 * cannot; OFT_DEVICE_AUTO does the same but falls back to the CPU with a g_message naming why;
 * OFT_DEVICE_CPU frees the GPU copy. From then on oft_vae_decode runs there (encode stays on the CPU).
 * Full training is refused while on the GPU, and the GPU is refused while training is attached. */
gboolean  oft_vae_set_device (OftVae *v, OftDevice device, OftDType dtype, GError **error);
OftDevice oft_vae_device (const OftVae *v);

G_END_DECLS
