/* The condition encoder of OFT's controllable generation: ControlNet's hint block. Eight 3×3 convs
 * 3→16→16→32→32→96→96→256→C (three with stride 2, SiLU between, the last zero-initialised) turn a
 * condition image in [0, 1] into C×(H/8)×(W/8) features that are added once to the UNet's features
 * right after conv_in (C = the UNet's first block width). Saved beside the OFT adapter as
 * `condition_encoder.safetensors`, keys `input_hint_block.{0,2,4,6,8,10,12,14}.{weight,bias}` (the
 * indices of ControlNet's nn.Sequential, SiLUs at the odd positions), metadata `format: pt`,
 * `condition_type` (canny | landmarks | segmentation). */
#pragma once
#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define OFT_COND_ENCODER_LAYERS 8
#define OFT_COND_ENCODER_FILE "condition_encoder.safetensors"

typedef struct {
  int in_ch, out_ch;
  int width[OFT_COND_ENCODER_LAYERS + 1];    /* channels between the convs: in, 16, 16, 32, ..., out */
  int stride[OFT_COND_ENCODER_LAYERS];
  float *params;                             /* all weights and biases, layer by layer */
  float *w[OFT_COND_ENCODER_LAYERS], *b[OFT_COND_ENCODER_LAYERS];  /* views into params */
  int64_t n_params;
  char *condition_type;
} OftCondEncoder;

/* PyTorch's default conv init (kaiming-uniform, a = √5; bias U(±1/√fan_in)) from the seed, the last
 * conv zeroed, so a new encoder leaves the UNet unchanged. */
OftCondEncoder *oft_cond_encoder_new (int in_ch, int out_ch, const char *condition_type, guint64 seed);
OftCondEncoder *oft_cond_encoder_load (const char *path, GError **error);
gboolean        oft_cond_encoder_save (const OftCondEncoder *e, const char *path, GError **error);
void            oft_cond_encoder_free (OftCondEncoder *e);
/* Offset of layer l's weight (and bias right after it) in params/grads. */
int64_t         oft_cond_encoder_offset (const OftCondEncoder *e, int layer);

/* cond[B, in, H, W] → out[B, out, H/8, W/8] (H, W multiples of 8). acts (may be NULL) keeps the
 * pre-activation of every layer for the backward: oft_cond_encoder_acts_floats (e, B, H, W) floats.
 * FALSE (an error with the size) only when its working memory cannot be allocated. */
size_t   oft_cond_encoder_acts_floats (const OftCondEncoder *e, int B, int H, int W);
gboolean oft_cond_encoder_forward (const OftCondEncoder *e, float *out, const float *cond, int B, int H, int W,
                                   float *acts, GError **error);
/* grads[n_params] += ∂loss/∂params from dout[B, out, H/8, W/8] (the condition gets no gradient). */
gboolean oft_cond_encoder_backward (const OftCondEncoder *e, float *grads, const float *dout, const float *cond,
                                    int B, int H, int W, const float *acts, GError **error);

G_END_DECLS
