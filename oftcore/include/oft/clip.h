/* CLIP text encoder (transformers' CLIPTextModel): token + position embeddings, pre-LN transformer
 * layers with causal self-attention, final LayerNorm. Built from its config.json. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include "oft/safetensors.h"
#include "oft/params.h"

G_BEGIN_DECLS

typedef enum { OFT_ACT_QUICK_GELU, OFT_ACT_GELU, OFT_ACT_GELU_TANH } OftActivation;

typedef struct {
  int vocab_size, hidden, intermediate, n_layers, n_heads, max_positions;
  float ln_eps;
  OftActivation act;
} OftClipConfig;

typedef struct _OftClipText OftClipText;

/* A transformers text_encoder/ folder: config.json + model.safetensors. */
OftClipText *oft_clip_text_load (const char *dir, GError **error);
/* A transformers config.json and tensors named as transformers does ("text_model....") through `src`. */
OftClipText *oft_clip_text_load_from (const char *config_path, const OftWeightSource *src, GError **error);
void         oft_clip_text_free (OftClipText *m);
const OftClipConfig *oft_clip_text_config (const OftClipText *m);

/* ids[B, T] with T = max_positions → out[B, T, hidden]: the final LayerNorm applied to the output of
 * layer n_layers − clip_skip (clip_skip 0 = last layer, as diffusers' clip_skip counts).
 * hidden_states (may be NULL) receives [n_layers + 1, B, T, hidden]: the embeddings, then each layer. */
gboolean oft_clip_text_forward (OftClipText *m, const int32_t *ids, int B, int clip_skip, float *out,
                                float *hidden_states, GError **error);

/* ---- full-parameter training (a small text encoder trained jointly with a UNet) ---- */
gboolean   oft_clip_text_attach_full_training (OftClipText *m, GError **error);
/* Every weight under its transformers name, in load order (the model owns it). */
OftParams *oft_clip_text_params (OftClipText *m);
/* As oft_clip_text_forward with clip_skip 0, keeping the activations until the backward. */
gboolean   oft_clip_text_train_forward (OftClipText *m, const int32_t *ids, int B, float *out, GError **error);
/* dout[B, T, hidden] = ∂loss/∂out of the last training forward: every weight's gradient (embeddings
 * included) accumulates; the kept activations are released. */
void       oft_clip_text_train_backward (OftClipText *m, const float *dout);
/* Releases a training forward's activations without a backward. */
void       oft_clip_text_discard_tape (OftClipText *m);

G_END_DECLS
