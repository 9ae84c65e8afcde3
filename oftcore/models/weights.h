/* Loading model parameters by name from a safetensors file into an arena as f32, with a sticky
 * error: after the first failure every further load returns NULL and the caller checks once. */
#pragma once
#include "oft/safetensors.h"
#include "oft/error.h"
#include "oft/params.h"

typedef struct {
  const OftWeightSource *src;
  OftArena *arena;         /* receives the f32 copies */
  GError *error;           /* the first failure, owned */
  OftParams *record;       /* may be NULL: receives every loaded tensor under its diffusers name */
} OftWeightLoader;

/* Tensor printf(fmt, ...) (a diffusers name, mapped through the source) checked against shape[ndim];
 * NULL after any failure. */
float *oft_weights_get (OftWeightLoader *l, int ndim, const int64_t *shape, const char *fmt, ...) G_GNUC_PRINTF (4, 5);
/* TRUE if every load succeeded; otherwise moves the first error to `error`. */
gboolean oft_weights_finish (OftWeightLoader *l, GError **error);

#define OFT_SHAPE(...) G_N_ELEMENTS (((int64_t[]) { __VA_ARGS__ })), ((int64_t[]) { __VA_ARGS__ })
