/* AutoencoderKL internals shared by vae.c (loading, inference) and vae-train.c (full training). */
#pragma once
#include "oft/vae.h"
#include "blocks.h"
#include "../cuda/cuda-ops.h"

#define VAE_EPS 1e-6f
#define MAX_LEVELS 8

typedef struct {
  OftResnet *resnets;
  int n_resnets;
  OftDownsample down;
  OftUpsample up;
  bool has_sample;
} VaeLevel;

typedef struct {
  OftResnet r0, r1;
  OftSpatialAttention attn;
  bool has_attn;
} VaeMid;

struct _OftVae {
  int in_ch, out_ch, latent, n_levels, layers, groups;
  int ch[MAX_LEVELS];
  float scaling;
  bool quant, post_quant;
  OftArena params, acts, train_acts;
  OftParams *params_list;   /* every weight by name; gradients once full training is attached */
  /* encoder */
  float *e_in_w, *e_in_b, *e_nw, *e_nb, *e_out_w, *e_out_b, *q_w, *q_b;
  VaeLevel enc[MAX_LEVELS];
  VaeMid e_mid;
  /* decoder */
  float *pq_w, *pq_b, *d_in_w, *d_in_b, *d_nw, *d_nb, *d_out_w, *d_out_b;
  VaeLevel dec[MAX_LEVELS];
  VaeMid d_mid;
  /* the GPU copy made by oft_vae_set_device (the decoder runs there); NULL on the CPU */
  const OftCudaOps *dev_ops;
  gpointer dev;
};

void oft_vae_device_release (OftVae *v);

