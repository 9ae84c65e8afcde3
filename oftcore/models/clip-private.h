/* CLIPTextModel internals shared by clip-text.c (loading, inference) and clip-train.c. */
#pragma once
#include "oft/clip.h"
#include "weights.h"

typedef struct {
  float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
  float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
  float *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} ClipLayer;

struct _OftClipText {
  OftClipConfig cfg;
  OftArena params, acts, train_acts;
  OftParams *params_list;   /* every weight by name; gradients once full training is attached */
  struct ClipTape *tape;    /* the last training forward, for its backward */
  float *tok_emb, *pos_emb, *final_w, *final_b;
  ClipLayer *layers;
};

