/* Trainer checkpoints: one safetensors file written atomically, so a crash at any point leaves the
 * previous checkpoint whole. Tensors param.<module>, adam_m.<module>, adam_v.<module> (f32, bit-exact),
 * order / class_order (I32); metadata: step, RNG state, data positions, module order, fingerprint. */
#include "oft/train.h"
#include "oft/error.h"
#include "oft/safetensors.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_FORMAT "oft-train-state-1"

gboolean
oft_train_state_save (const OftTrainState *s, const char *path, GError **error)
{
  size_t n = 3 * s->n_params + 2, nt = 0;
  char **names = g_new0 (char *, n + 1);
  OftTensor *t = g_new0 (OftTensor, n);
  static const char *const kind[3] = { "param.", "adam_m.", "adam_v." };
  for (size_t i = 0; i < s->n_params; i++)
    for (int k = 0; k < 3; k++)
      {
        float *data = k == 0 ? s->param[i] : k == 1 ? s->m[i] : s->v[i];
        names[nt] = g_strconcat (kind[k], s->names[i], NULL);
        t[nt++] = (OftTensor) { .dtype = OFT_DTYPE_F32, .ndim = 1, .shape = { s->numel[i] }, .data = data };
      }
  if (s->n_order > 0)
    {
      names[nt] = g_strdup ("order");
      t[nt++] = (OftTensor) { .dtype = OFT_DTYPE_I32, .ndim = 1, .shape = { s->n_order }, .data = s->order };
    }
  if (s->n_class_order > 0)
    {
      names[nt] = g_strdup ("class_order");
      t[nt++] = (OftTensor) { .dtype = OFT_DTYPE_I32, .ndim = 1, .shape = { s->n_class_order },
                              .data = s->class_order };
    }
  GHashTable *md = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  g_hash_table_insert (md, "format", g_strdup (STATE_FORMAT));
  g_hash_table_insert (md, "step", g_strdup_printf ("%" G_GINT64_FORMAT, s->step));
  g_hash_table_insert (md, "rng", g_strdup_printf ("%016" PRIx64 " %016" PRIx64 " %016" PRIx64 " %016" PRIx64,
                                                   s->rng.s[0], s->rng.s[1], s->rng.s[2], s->rng.s[3]));
  g_hash_table_insert (md, "order_pos", g_strdup_printf ("%d", s->order_pos));
  g_hash_table_insert (md, "class_order_pos", g_strdup_printf ("%d", s->class_order_pos));
  g_hash_table_insert (md, "fingerprint", g_strdup (s->fingerprint ? s->fingerprint : ""));
  char *mods = g_strjoinv ("\n", s->names ? s->names : (char *[]) { NULL });
  g_hash_table_insert (md, "modules", mods);
  gboolean ok = oft_safetensors_write (path, nt, (const char *const *) names, t, md, error);
  g_hash_table_destroy (md);
  g_strfreev (names);
  g_free (t);
  return ok;
}

static gboolean
bad (GError **error, const char *path, const char *key, const char *what)
{
  g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: checkpoint field '%s': %s", path, key, what);
  return FALSE;
}

static gboolean
parse_i64 (GHashTable *md, const char *key, int64_t lo, int64_t *out, const char *path, GError **error)
{
  const char *v = md ? g_hash_table_lookup (md, key) : NULL;
  char *end = NULL;
  if (!v)
    return bad (error, path, key, "missing");
  gint64 x = g_ascii_strtoll (v, &end, 10);
  if (!*v || *end || x < lo)
    return bad (error, path, key, "expected an integer");
  *out = x;
  return TRUE;
}

static int32_t *
read_i32 (OftSafetensors *st, const char *name, int *n, const char *path, GError **error)
{
  const OftSafetensorsEntry *e = oft_safetensors_find (st, name);
  *n = 0;
  if (!e)
    return NULL;
  if (e->dtype != OFT_DTYPE_I32 || e->ndim != 1 || e->shape[0] > G_MAXINT)
    {
      bad (error, path, name, "expected a 1-D I32 tensor");
      return NULL;
    }
  *n = (int) e->shape[0];
  return g_memdup2 (e->data, (size_t) *n * sizeof (int32_t) + 1);
}

gboolean
oft_train_state_load (OftTrainState *s, const char *path, GError **error)
{
  memset (s, 0, sizeof *s);
  OftSafetensors *st = oft_safetensors_open (path, error);
  if (!st)
    return FALSE;
  GHashTable *md = oft_safetensors_metadata (st);
  gboolean ok = FALSE;
  int64_t v;
  const char *fmt = md ? g_hash_table_lookup (md, "format") : NULL, *rng = md ? g_hash_table_lookup (md, "rng") : NULL;
  const char *mods = md ? g_hash_table_lookup (md, "modules") : NULL;
  if (g_strcmp0 (fmt, STATE_FORMAT) != 0)
    {
      bad (error, path, "format", "not an oft training checkpoint (expected \"" STATE_FORMAT "\")");
      goto out;
    }
  if (!parse_i64 (md, "step", 0, &s->step, path, error))
    goto out;
  if (!parse_i64 (md, "order_pos", 0, &v, path, error))
    goto out;
  s->order_pos = (int) v;
  if (!parse_i64 (md, "class_order_pos", 0, &v, path, error))
    goto out;
  s->class_order_pos = (int) v;
  if (!rng || sscanf (rng, "%16" SCNx64 " %16" SCNx64 " %16" SCNx64 " %16" SCNx64, &s->rng.s[0], &s->rng.s[1], &s->rng.s[2], &s->rng.s[3]) != 4)
    {
      bad (error, path, "rng", "expected four hexadecimal words");
      goto out;
    }
  s->fingerprint = g_strdup (md ? g_hash_table_lookup (md, "fingerprint") : NULL);
  s->names = mods && *mods ? g_strsplit (mods, "\n", -1) : g_new0 (char *, 1);
  s->n_params = g_strv_length (s->names);
  s->numel = g_new0 (int64_t, s->n_params + 1);
  s->param = g_new0 (float *, s->n_params + 1);
  s->m = g_new0 (float *, s->n_params + 1);
  s->v = g_new0 (float *, s->n_params + 1);
  for (size_t i = 0; i < s->n_params; i++)
    {
      char *kp = g_strconcat ("param.", s->names[i], NULL), *km = g_strconcat ("adam_m.", s->names[i], NULL);
      char *kv = g_strconcat ("adam_v.", s->names[i], NULL);
      int64_t n1 = 0, n2 = 0, n3 = 0;
      gboolean got = (s->param[i] = oft_safetensors_dup_f32 (st, kp, &n1, error)) &&
                     (s->m[i] = oft_safetensors_dup_f32 (st, km, &n2, error)) &&
                     (s->v[i] = oft_safetensors_dup_f32 (st, kv, &n3, error));
      if (got && (n1 != n2 || n1 != n3))
        got = bad (error, path, km, "the parameter and its AdamW moments differ in size");
      s->numel[i] = n1;
      g_free (kp);
      g_free (km);
      g_free (kv);
      if (!got)
        goto out;
    }
  GError *e = NULL;
  s->order = read_i32 (st, "order", &s->n_order, path, &e);
  if (!e)
    s->class_order = read_i32 (st, "class_order", &s->n_class_order, path, &e);
  if (e)
    {
      g_propagate_error (error, e);
      goto out;
    }
  if (s->order_pos > s->n_order || s->class_order_pos > s->n_class_order)
    {
      bad (error, path, "order_pos", "past the end of the data order");
      goto out;
    }
  ok = TRUE;
out:
  oft_safetensors_close (st);
  if (!ok)
    oft_train_state_clear (s);
  return ok;
}

void
oft_train_state_clear (OftTrainState *s)
{
  for (size_t i = 0; i < s->n_params; i++)
    {
      if (s->param)
        g_free (s->param[i]);
      if (s->m)
        g_free (s->m[i]);
      if (s->v)
        g_free (s->v[i]);
    }
  g_strfreev (s->names);
  g_free (s->numel);
  g_free (s->param);
  g_free (s->m);
  g_free (s->v);
  g_free (s->order);
  g_free (s->class_order);
  g_free (s->fingerprint);
  memset (s, 0, sizeof *s);
}
