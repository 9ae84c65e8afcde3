/* Building blocks shared by the UNet and the VAE (diffusers' ResnetBlock2D, Downsample2D,
 * Upsample2D, the VAE's single-head spatial attention). Inference forward passes; scratch comes
 * from an activation arena that the caller rewinds. */
#pragma once
#include <stdbool.h>
#include "oft/tensor.h"
#include "weights.h"

typedef struct {
  int cin, cout, groups;
  float eps;
  float *n1w, *n1b, *c1w, *c1b, *n2w, *n2b, *c2w, *c2b;
  float *tw, *tb;    /* time_emb_proj [cout, temb]; NULL without a time embedding */
  int temb;
  float *scw, *scb;  /* 1×1 conv_shortcut when cin != cout */
} OftResnet;

/* What a resnet's backward needs (its input is the caller's). */
typedef struct {
  float *h1, *c1, *h2;                 /* GroupNorm1 output, conv1 output (+ time), GroupNorm2 output */
  float *mean1, *rstd1, *mean2, *rstd2;
} OftResnetSave;

void oft_resnet_load (OftResnet *r, OftWeightLoader *l, const char *prefix, int cin, int cout, int temb,
                      int groups, float eps);
/* out[B, cout, H, W] (must not alias x); temb_act = SiLU(time embedding) [B, temb] or NULL.
 * save (may be NULL) receives the activations the backward needs, allocated in `scratch`. */
void oft_resnet_forward_save (OftArena *scratch, float *out, const float *x, const float *temb_act,
                              const OftResnet *r, int B, int H, int W, OftResnetSave *save);
void oft_resnet_forward (OftArena *scratch, float *out, const float *x, const float *temb_act,
                         const OftResnet *r, int B, int H, int W);
/* dx[B, cin, H, W] += ∂/∂x from dout; dtemb (may be NULL) += ∂/∂temb_act. With gradients in g
 * (may be NULL: frozen weights) every weight's gradient accumulates there too. */
void oft_resnet_backward (OftArena *scratch, float *dx, float *dtemb, const float *dout, const float *x,
                          const float *temb_act, const OftResnet *r, int B, int H, int W, const OftResnetSave *s,
                          const OftParams *g);
/* dx += ∂/∂x of a conv2d with a frozen weight. */
void oft_conv_apply_backward (OftArena *scratch, float *dx, const float *dout, const float *w,
                              int B, int C, int H, int W, int OC, int k, int stride, int pad);
/* The same with dw/db (may be NULL) += the weight and bias gradients; x is the conv's input (read only
 * when dw is not NULL). */
void oft_conv_apply_backward_full (OftArena *scratch, float *dx, float *dw, float *db, const float *dout,
                                   const float *x, const float *w, int B, int C, int H, int W, int OC, int k,
                                   int stride, int pad);

/* conv2d of x[B, C, H, W] with scratch from the arena; returns OH·OW through oh/ow. */
void oft_conv_apply (OftArena *scratch, float *out, const float *x, const float *w, const float *b,
                     int B, int C, int H, int W, int OC, int k, int stride, int pad);

typedef struct {
  int ch;
  bool asym_pad;     /* VAE encoder: pad right/bottom by 1, then conv stride 2 pad 0 */
  float *w, *b;
} OftDownsample;
void oft_downsample_load (OftDownsample *d, OftWeightLoader *l, const char *prefix, int ch, bool asym_pad);
/* out[B, ch, H/2, W/2] (rounded as the conv rounds) */
void oft_downsample_forward (OftArena *scratch, float *out, const float *x, const OftDownsample *d,
                             int B, int H, int W);
/* dx[B, ch, H, W] += ∂/∂x; x (the forward's input) is read when g holds gradients, which accumulate */
void oft_downsample_backward (OftArena *scratch, float *dx, const float *dout, const float *x, const OftDownsample *d,
                              int B, int H, int W, const OftParams *g);

typedef struct {
  int ch;
  float *w, *b;
} OftUpsample;
void oft_upsample_load (OftUpsample *u, OftWeightLoader *l, const char *prefix, int ch);
/* out[B, ch, 2H, 2W]: nearest 2× then 3×3 conv */
void oft_upsample_forward (OftArena *scratch, float *out, const float *x, const OftUpsample *u,
                           int B, int H, int W);
/* dx[B, ch, H, W] += ∂/∂x from dout[B, ch, 2H, 2W]; x and g as for the downsampler */
void oft_upsample_backward (OftArena *scratch, float *dx, const float *dout, const float *x, const OftUpsample *u,
                            int B, int H, int W, const OftParams *g);

/* The VAE mid-block attention: GroupNorm, one head over all channels, residual. */
typedef struct {
  int ch, groups;
  float eps;
  float *nw, *nb, *qw, *qb, *kw, *kb, *vw, *vb, *ow, *ob;
} OftSpatialAttention;
void oft_spatial_attention_load (OftSpatialAttention *a, OftWeightLoader *l, const char *prefix, int ch,
                                 int groups, float eps);
/* in place on x[B, ch, H, W] */
void oft_spatial_attention_forward (OftArena *scratch, float *x, const OftSpatialAttention *a, int B, int H, int W);

/* What its backward needs (the input is the caller's to keep). */
typedef struct {
  float *mean, *rstd, *t, *q, *k, *v, *att, *o;   /* t: GroupNorm output as tokens [B·HW, ch] */
} OftSpatialAttentionSave;
void oft_spatial_attention_forward_save (OftArena *scratch, float *x, const OftSpatialAttention *a, int B, int H,
                                         int W, OftSpatialAttentionSave *s);
/* dx: on entry ∂/∂output, on return ∂/∂input; x_in the forward's input; g as for the resnet. */
void oft_spatial_attention_backward (OftArena *scratch, float *dx, const float *x_in, const OftSpatialAttention *a,
                                     int B, int H, int W, const OftSpatialAttentionSave *s, const OftParams *g);

/* [B, C, HW] ↔ [B, HW, C] */
void oft_nchw_to_nhwc (float *out, const float *x, int B, int C, int64_t HW);
void oft_nhwc_to_nchw (float *out, const float *x, int B, int C, int64_t HW);
