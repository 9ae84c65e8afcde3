/* Named parameter lists with an optional gradient arena (see oft/params.h). */
#include "oft/params.h"
#include "oft/safetensors.h"
#include <string.h>

struct _OftParams {
  GPtrArray *list;       /* OftParam* */
  GHashTable *by_data;   /* data pointer → OftParam* */
  GHashTable *by_name;
  OftArena grads;
  gboolean have_grads;
};

static void
param_free (gpointer p)
{
  OftParam *x = p;
  g_free (x->name);
  g_free (x);
}

OftParams *
oft_params_new (void)
{
  OftParams *p = g_new0 (OftParams, 1);
  p->list = g_ptr_array_new_with_free_func (param_free);
  p->by_data = g_hash_table_new (g_direct_hash, g_direct_equal);
  p->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  oft_arena_init (&p->grads, "gradients", 0);
  return p;
}

void
oft_params_free (OftParams *p)
{
  if (!p)
    return;
  g_hash_table_destroy (p->by_data);
  g_hash_table_destroy (p->by_name);
  g_ptr_array_unref (p->list);
  oft_arena_release (&p->grads);
  g_free (p);
}

void
oft_params_add (OftParams *p, const char *name, float *data, int ndim, const int64_t *shape)
{
  g_return_if_fail (ndim <= OFT_MAX_DIMS && !p->have_grads);
  OftParam *x = g_new0 (OftParam, 1);
  x->name = g_strdup (name);
  x->data = data;
  x->ndim = ndim;
  x->numel = 1;
  for (int i = 0; i < ndim; i++)
    x->shape[i] = shape[i], x->numel *= shape[i];
  g_ptr_array_add (p->list, x);
  g_hash_table_insert (p->by_data, data, x);
  g_hash_table_insert (p->by_name, x->name, x);
}

size_t oft_params_count (const OftParams *p) { return p->list->len; }
OftParam *oft_params_get (const OftParams *p, size_t i) { return g_ptr_array_index (p->list, i); }
OftParam *oft_params_find (const OftParams *p, const char *name) { return g_hash_table_lookup (p->by_name, name); }
gboolean oft_params_have_grads (const OftParams *p) { return p && p->have_grads; }

int64_t
oft_params_numel (const OftParams *p)
{
  int64_t n = 0;
  for (guint i = 0; i < p->list->len; i++)
    n += oft_params_get (p, i)->numel;
  return n;
}

void
oft_params_alloc_grads (OftParams *p)
{
  if (p->have_grads)
    return;
  for (guint i = 0; i < p->list->len; i++)
    {
      OftParam *x = oft_params_get (p, i);
      x->grad = oft_arena_floats (&p->grads, (size_t) x->numel);
    }
  p->have_grads = TRUE;
}

void
oft_params_zero_grads (OftParams *p)
{
  for (guint i = 0; p->have_grads && i < p->list->len; i++)
    {
      OftParam *x = oft_params_get (p, i);
      memset (x->grad, 0, sizeof (float) * (size_t) x->numel);
    }
}

float *
oft_params_grad (const OftParams *p, const float *data)
{
  if (!p || !p->have_grads || !data)
    return NULL;
  OftParam *x = g_hash_table_lookup (p->by_data, data);
  return x ? x->grad : NULL;
}

gboolean
oft_params_save (const OftParams *p, const char *path, OftDType dtype, GError **error)
{
  size_t n = p->list->len;
  const char **names = g_new (const char *, n);
  OftTensor *t = g_new0 (OftTensor, n);
  void **bufs = g_new0 (void *, n);
  for (size_t i = 0; i < n; i++)
    {
      OftParam *x = oft_params_get (p, i);
      names[i] = x->name;
      t[i].dtype = dtype;
      t[i].ndim = x->ndim;
      memcpy (t[i].shape, x->shape, sizeof x->shape);
      bufs[i] = g_malloc (oft_dtype_size (dtype) * (size_t) MAX (x->numel, 1));
      oft_convert_from_f32 (bufs[i], dtype, x->data, (size_t) x->numel);
      t[i].data = bufs[i];
    }
  gboolean ok = oft_safetensors_write (path, n, names, t, NULL, error);
  for (size_t i = 0; i < n; i++)
    g_free (bufs[i]);
  g_free (bufs);
  g_free (t);
  g_free (names);
  return ok;
}
