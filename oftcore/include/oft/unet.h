/* UNet2DConditionModel (diffusers), SD 1.x/2.x family: CrossAttnDownBlock2D / DownBlock2D,
 * UNetMidBlock2DCrossAttn, UpBlock2D / CrossAttnUpBlock2D, Transformer2DModel with conv or linear
 * projections. The architecture is read from unet/config.json. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include "oft/safetensors.h"
#include "oft/peft.h"
#include "oft/params.h"
#include "oft/backend.h"

G_BEGIN_DECLS

typedef struct _OftUnet OftUnet;

/* Called with a named intermediate ("time_proj", "conv_in", "down_blocks.0", "mid_block", ...) as
 * diffusers' module names it; for tests and debugging. */
typedef void (*OftTapFunc) (const char *name, const float *data, int64_t n, gpointer user_data);

/* A diffusers unet/ folder: config.json + diffusion_pytorch_model.safetensors. */
OftUnet *oft_unet_load (const char *dir, GError **error);
/* A diffusers UNet config.json and tensors with diffusers' names through `src`. */
OftUnet *oft_unet_load_from (const char *config_path, const OftWeightSource *src, GError **error);
void     oft_unet_free (OftUnet *u);
/* The architecture of config_path with random weights (see OftWeightSource.random_init): for benchmarks. */
OftUnet *oft_unet_new_random (const char *config_path, guint64 seed, GError **error);
/* Floating-point operations of one forward (convolutions, projections, attention products), for
 * reporting rates. */
double   oft_unet_forward_flops (const OftUnet *u, int B, int h, int w, int T);
int      oft_unet_in_channels (const OftUnet *u);
int      oft_unet_out_channels (const OftUnet *u);
int      oft_unet_context_dim (const OftUnet *u);
/* Latent sizes must be multiples of this (2^number of downsamplers). */
int      oft_unet_size_multiple (const OftUnet *u);
/* config.json's sample_size: the latent size the model was trained at (64 for SD1.5). */
int      oft_unet_sample_size (const OftUnet *u);
void     oft_unet_set_tap (OftUnet *u, OftTapFunc tap, gpointer user_data);

/* Applies a PEFT OFT/BOFT adapter (after any applied before, in order). merge: baked into the weights
 * (W' = W·Mᵀ). Otherwise OFT modules on transformer-block Linears rotate their input on the fly
 * (PEFT's forward); BOFT and Conv2d modules are merged in both modes (for convs that is the only
 * correct form). All-or-nothing: a module missing from the UNet or of the wrong shape fails with the
 * UNet unchanged. */
gboolean oft_unet_apply_adapter (OftUnet *u, const OftPeftAdapter *a, gboolean merge, GError **error);

/* Controllable generation: r[B, ch0, h, w] is added to conv_in's output in every following forward,
 * inference and training alike (ch0 = oft_unet_control_channels; B, h, w those of the next forwards).
 * In training, dr (may be NULL) accumulates ∂loss/∂r. NULL removes it. The caller keeps the memory. */
void oft_unet_set_control (OftUnet *u, const float *r, float *dr);
int  oft_unet_control_channels (const OftUnet *u);

/* ---- training (OFT/BOFT adapters applied on the fly are the only trainable parameters) ----
 * Attaches `a` for training: every module must be an OFT or BOFT module on a transformer-block Linear.
 * The UNet keeps pointers to a's tensors (f32: the parameter, and the per-output scale when the module
 * has one: BOFT's boft_s or OFT's fitted magnitude oft_s) and rebuilds the rotations from them at every
 * training forward, projecting them in place first when the config has COFT (PEFT's behaviour), so an
 * optimizer that updates the tensors in place trains the adapter. BOFT is applied as PEFT does: the dense
 * butterfly product T [in, in], y = s ⊙ ((x·T)·Wᵀ) + b. Detach with oft_unet_detach_trainable before
 * freeing `a` (and re-attach after adding scales to it). */
gboolean oft_unet_attach_trainable (OftUnet *u, OftPeftAdapter *a, GError **error);
void     oft_unet_detach_trainable (OftUnet *u);
/* One forward and backward: loss = mean((unet(sample, t, context) − target)²) over all B·out·h·w
 * values; grads[i] (numel of module i's parameter, adapter order) += ∂loss/∂param_i, and when the
 * attached modules carry scales grads[n + i] (n = number of modules; out values) += ∂loss/∂scale_i.
 * A NULL entry freezes that tensor (no gradient is computed for it: the magnitude stage freezes R).
 * checkpoint: keep only block inputs and recompute each block's activations in the backward. */
gboolean oft_unet_train_loss (OftUnet *u, const float *sample, const float *timesteps, const float *context,
                              int B, int h, int w, int T, const float *target, gboolean checkpoint,
                              float *loss, float **grads, GError **error);

/* ---- full-parameter training ----
 * Allocates one gradient buffer per weight (a gradient arena mirroring the parameters); from then on
 * oft_unet_train_loss also accumulates ∂loss/∂weight for every conv, linear, norm and the time
 * embedding into oft_params_get(oft_unet_params(u), i)->grad (zero them with oft_params_zero_grads).
 * Refused while an adapter runs on the fly. Without it no weight has a gradient buffer. */
gboolean   oft_unet_attach_full_training (OftUnet *u, GError **error);
/* Every weight under its diffusers name, in load order (the model owns it). */
OftParams *oft_unet_params (OftUnet *u);
/* dcontext[B, T, context_dim] (may be NULL) accumulates ∂loss/∂context in training (for training the
 * text encoder jointly). The caller keeps the memory. */
void       oft_unet_set_context_grad (OftUnet *u, float *dcontext);

/* The transformer-block Linears (the modules an OFT adapter can train), by diffusers module path. */
typedef struct {
  char *path;
  int in_features, out_features;
} OftUnetLinear;
/* OftUnetLinear *, sorted by path; free with g_ptr_array_unref. */
GPtrArray *oft_unet_list_linear_modules (const OftUnet *u);
/* The current f32 weight of a Linear or Conv2d module as [out, d] (convs flattened to C·kh·kw), or
 * NULL when the UNet has no such module. Read-only view, valid while the UNet lives. */
const float *oft_unet_module_weight (const OftUnet *u, const char *path, int64_t *out, int64_t *d);

/* sample[B, in, h, w], timesteps[B], context[B, T, context_dim] → out[B, out, h, w]. */
gboolean oft_unet_forward (OftUnet *u, const float *sample, const float *timesteps, const float *context,
                           int B, int h, int w, int T, float *out, GError **error);

/* ---- device ----
 * Moves the forward to `device` (oft/backend.h): OFT_DEVICE_CUDA uploads the weights in storage type
 * `dtype` (OFT_DTYPE_F32 or OFT_DTYPE_BF16; norm parameters stay fp32) and the adapters applied on the
 * fly through the CUDA module, and fails with the reason when it cannot; OFT_DEVICE_AUTO does the same
 * but falls back to the CPU with a g_message naming why; OFT_DEVICE_CPU frees the GPU copy. From then on
 * oft_unet_forward runs there on host buffers; control features and taps work as on the CPU.
 * oft_unet_apply_adapter afterwards uploads again. An OFT/COFT adapter attached for training (before or
 * after) trains there: oft_unet_train_loss runs the loss and the backward on the GPU, and with exact
 * Cayley (blocks up to 64) builds R and the parameters' gradient there too; Neumann rotations are rebuilt
 * and their dR turned into the gradient on the host (BOFT, per-output scales, control and context
 * gradients give an error there). Full training is refused while on the GPU, and the GPU while it is
 * attached. */
gboolean  oft_unet_set_device (OftUnet *u, OftDevice device, OftDType dtype, GError **error);
OftDevice oft_unet_device (const OftUnet *u);

G_END_DECLS
