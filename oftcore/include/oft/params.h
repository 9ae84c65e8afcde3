/* The parameters of a model as a list of named tensors (diffusers/transformers names, load order),
 * with gradient buffers once full-parameter training is switched on: what an optimizer walks and
 * what a diffusers folder is saved from. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include "oft/tensor.h"

G_BEGIN_DECLS

typedef struct {
  char *name;
  float *data;
  float *grad;          /* NULL until oft_params_alloc_grads */
  int ndim;
  int64_t shape[OFT_MAX_DIMS];
  int64_t numel;
} OftParam;

typedef struct _OftParams OftParams;

OftParams *oft_params_new (void);
void       oft_params_free (OftParams *p);
/* Records a tensor the model owns (data stays the model's). */
void       oft_params_add (OftParams *p, const char *name, float *data, int ndim, const int64_t *shape);
size_t     oft_params_count (const OftParams *p);
OftParam  *oft_params_get (const OftParams *p, size_t i);
OftParam  *oft_params_find (const OftParams *p, const char *name);
int64_t    oft_params_numel (const OftParams *p);
/* One zeroed gradient arena mirroring the parameters (idempotent). */
void       oft_params_alloc_grads (OftParams *p);
gboolean   oft_params_have_grads (const OftParams *p);
void       oft_params_zero_grads (OftParams *p);
/* The gradient of the tensor whose data is `data`, NULL when gradients are off (p may be NULL). */
float     *oft_params_grad (const OftParams *p, const float *data);
/* All tensors to one safetensors file as `dtype` (F32, F16 or BF16), atomically. */
gboolean   oft_params_save (const OftParams *p, const char *path, OftDType dtype, GError **error);

G_END_DECLS
