#include "weights.h"
#include "oft/rng.h"
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* Shapes equal up to trailing 1-dimensions: the same elements in the same order. LDM single files
 * store some Linear weights as 1×1 convolutions ([C, C, 1, 1] for diffusers' [C, C]), and the reverse
 * (Transformer2DModel proj_in/proj_out) is just as harmless. */
static gboolean
same_up_to_trailing_ones (int na, const int64_t *a, int nb, const int64_t *b)
{
  while (na > 0 && a[na - 1] == 1)
    na--;
  while (nb > 0 && b[nb - 1] == 1)
    nb--;
  return na == nb && (na == 0 || memcmp (a, b, sizeof *a * na) == 0);
}

float *
oft_weights_get (OftWeightLoader *l, int ndim, const int64_t *shape, const char *fmt, ...)
{
  if (l->error)
    return NULL;
  va_list ap;
  va_start (ap, fmt);
  char *tail = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const OftSafetensors *st = l->src->st;
  if (!st && l->src->random_init)
    {
      int64_t numel = 1;
      for (int i = 0; i < ndim; i++)
        numel *= shape[i];
      float *dst = oft_arena_try_scratch (l->arena, (size_t) numel, &l->error);
      if (!dst)
        {
          g_prefix_error (&l->error, "tensor '%s': ", tail);
          g_free (tail);
          return NULL;
        }
      if (ndim == 1)
        for (int64_t i = 0; i < numel; i++)
          dst[i] = g_str_has_suffix (tail, ".weight") ? 1.0f : 0.0f;
      else
        {
          /* a per-tensor stream: the seed mixed with the name, so the order of loads does not matter */
          OftRng rng;
          oft_rng_seed (&rng, l->src->seed ^ g_str_hash (tail));
          oft_rng_normal (&rng, dst, numel);
          float s = 1.0f / sqrtf ((float) (numel / shape[0]));
          for (int64_t i = 0; i < numel; i++)
            dst[i] *= s;
        }
      if (l->record)
        oft_params_add (l->record, tail, dst, ndim, shape);
      g_free (tail);
      return dst;
    }
  if (!st)
    {
      /* the config was fine; now the weights file's own error */
      l->error = l->src->open_error ? g_error_copy (l->src->open_error)
                                    : g_error_new (OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "no weights file");
      g_free (tail);
      return NULL;
    }
  char *name = l->src->map ? l->src->map (tail, l->src->map_data) : g_strdup (tail);
  float *dst = NULL;
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++)
    numel *= shape[i];
  const OftSafetensorsEntry *e = name ? oft_safetensors_find (st, name) : NULL;
  if (!e && name && strcmp (name, tail) != 0)
    g_set_error (&l->error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND, "%s: missing tensor '%s' (the model's '%s')",
                 oft_safetensors_path (st), name, tail);
  else if (!e)
    g_set_error (&l->error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND, "%s: missing tensor '%s'",
                 oft_safetensors_path (st), tail);
  else
    {
      dst = oft_arena_try_scratch (l->arena, (size_t) numel, &l->error);
      if (!dst)
        {
          g_prefix_error (&l->error, "%s: tensor '%s': ", oft_safetensors_path (st), name);
          g_free (name);
          g_free (tail);
          return NULL;
        }
      gboolean relaxed = e->ndim != ndim && same_up_to_trailing_ones (e->ndim, e->shape, ndim, shape);
      if (!oft_safetensors_read_f32 (st, name, dst, relaxed ? -1 : ndim, shape, &l->error))
        dst = NULL;
      else if (l->record)
        oft_params_add (l->record, tail, dst, ndim, shape);
    }
  g_free (name);
  g_free (tail);
  return dst;
}

gboolean
oft_weights_finish (OftWeightLoader *l, GError **error)
{
  if (!l->error)
    return TRUE;
  g_propagate_error (error, l->error);
  l->error = NULL;
  return FALSE;
}
