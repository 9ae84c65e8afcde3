#include "weights.h"
#include <stdarg.h>

float *
oft_weights_get (OftWeightLoader *l, int ndim, const int64_t *shape, const char *fmt, ...)
{
  if (l->error)
    return NULL;
  va_list ap;
  va_start (ap, fmt);
  char *tail = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  char *name = g_strconcat (l->prefix ? l->prefix : "", tail, NULL);
  g_free (tail);
  float *dst = NULL;
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++)
    numel *= shape[i];
  const OftSafetensorsEntry *e = oft_safetensors_find (l->st, name);
  if (!e)
    g_set_error (&l->error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND, "%s: missing tensor '%s'",
                 oft_safetensors_path (l->st), name);
  else
    {
      dst = oft_arena_floats (l->arena, (size_t) numel);
      if (!oft_safetensors_read_f32 (l->st, name, dst, ndim, shape, &l->error))
        dst = NULL;
    }
  g_free (name);
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
