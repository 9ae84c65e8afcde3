/* ControlNet's hint block, forward and backward over the nn kernels. */
#include "oft/condition-encoder.h"
#include "oft/nn.h"
#include "oft/rng.h"
#include "oft/safetensors.h"
#include "oft/error.h"
#include <math.h>
#include <string.h>

static const int hidden[OFT_COND_ENCODER_LAYERS - 1] = { 16, 16, 32, 32, 96, 96, 256 };
static const int strides[OFT_COND_ENCODER_LAYERS] = { 1, 1, 2, 1, 2, 1, 2, 1 };

static OftCondEncoder *
alloc_encoder (int in_ch, int out_ch, const char *type)
{
  OftCondEncoder *e = g_new0 (OftCondEncoder, 1);
  e->in_ch = in_ch;
  e->out_ch = out_ch;
  e->width[0] = in_ch;
  for (int l = 0; l < OFT_COND_ENCODER_LAYERS - 1; l++)
    e->width[l + 1] = hidden[l];
  e->width[OFT_COND_ENCODER_LAYERS] = out_ch;
  memcpy (e->stride, strides, sizeof strides);
  for (int l = 0; l < OFT_COND_ENCODER_LAYERS; l++)
    e->n_params += (int64_t) e->width[l + 1] * e->width[l] * 9 + e->width[l + 1];
  e->params = g_new0 (float, e->n_params);
  for (int l = 0; l < OFT_COND_ENCODER_LAYERS; l++)
    {
      e->w[l] = e->params + oft_cond_encoder_offset (e, l);
      e->b[l] = e->w[l] + (int64_t) e->width[l + 1] * e->width[l] * 9;
    }
  e->condition_type = g_strdup (type ? type : "canny");
  return e;
}

int64_t
oft_cond_encoder_offset (const OftCondEncoder *e, int layer)
{
  int64_t off = 0;
  for (int l = 0; l < layer; l++)
    off += (int64_t) e->width[l + 1] * e->width[l] * 9 + e->width[l + 1];
  return off;
}

OftCondEncoder *
oft_cond_encoder_new (int in_ch, int out_ch, const char *condition_type, guint64 seed)
{
  OftCondEncoder *e = alloc_encoder (in_ch, out_ch, condition_type);
  OftRng rng;
  oft_rng_seed (&rng, seed);
  /* He-uniform weights (bound √(6/fan_in)) and zero biases, not PyTorch's default conv init (bound
   * 1/√fan_in, random biases): with that one the input's part of the features after seven conv + SiLU
   * layers is 2e-4 of the input's scale, the rest is the biases', and the encoder has nothing of the
   * condition to learn from; He keeps 0.11 (tests/test-condition-encoder.c, init-keeps-signal). */
  for (int l = 0; l < OFT_COND_ENCODER_LAYERS - 1; l++)
    {
      int64_t nw = (int64_t) e->width[l + 1] * e->width[l] * 9;
      float bound = sqrtf (6.0f / ((float) e->width[l] * 9));
      for (int64_t i = 0; i < nw; i++)
        e->w[l][i] = (float) ((2 * oft_rng_uniform (&rng) - 1) * bound);
    }
  return e; /* the last layer stays zero */
}

void
oft_cond_encoder_free (OftCondEncoder *e)
{
  if (!e)
    return;
  g_free (e->params);
  g_free (e->condition_type);
  g_free (e);
}

static char *
key (int layer, const char *what)
{
  return g_strdup_printf ("input_hint_block.%d.%s", 2 * layer, what);
}

gboolean
oft_cond_encoder_save (const OftCondEncoder *e, const char *path, GError **error)
{
  const char *names[2 * OFT_COND_ENCODER_LAYERS];
  char *owned[2 * OFT_COND_ENCODER_LAYERS];
  OftTensor t[2 * OFT_COND_ENCODER_LAYERS];
  for (int l = 0; l < OFT_COND_ENCODER_LAYERS; l++)
    {
      names[2 * l] = owned[2 * l] = key (l, "weight");
      names[2 * l + 1] = owned[2 * l + 1] = key (l, "bias");
      t[2 * l] = (OftTensor) { .dtype = OFT_DTYPE_F32, .ndim = 4, .shape = { e->width[l + 1], e->width[l], 3, 3 }, .data = e->w[l] };
      t[2 * l + 1] = (OftTensor) { .dtype = OFT_DTYPE_F32, .ndim = 1, .shape = { e->width[l + 1] }, .data = e->b[l] };
    }
  GHashTable *md = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (md, "format", "pt");
  g_hash_table_insert (md, "condition_type", e->condition_type);
  gboolean ok = oft_safetensors_write (path, 2 * OFT_COND_ENCODER_LAYERS, names, t, md, error);
  g_hash_table_destroy (md);
  for (int i = 0; i < 2 * OFT_COND_ENCODER_LAYERS; i++)
    g_free (owned[i]);
  return ok;
}

OftCondEncoder *
oft_cond_encoder_load (const char *path, GError **error)
{
  OftSafetensors *st = oft_safetensors_open (path, error);
  if (!st)
    return NULL;
  /* widths come from the file: the first weight's input channels and the last one's outputs */
  char *k0 = key (0, "weight"), *k7 = key (OFT_COND_ENCODER_LAYERS - 1, "weight");
  const OftSafetensorsEntry *first = oft_safetensors_find (st, k0), *last = oft_safetensors_find (st, k7);
  OftCondEncoder *e = NULL;
  if (!first || !last || first->ndim != 4 || last->ndim != 4)
    g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND, "%s: no 4-D tensors %s and %s: not a condition encoder",
                 path, k0, k7);
  else
    {
      GHashTable *md = oft_safetensors_metadata (st);
      e = alloc_encoder ((int) first->shape[1], (int) last->shape[0], md ? g_hash_table_lookup (md, "condition_type") : NULL);
      for (int l = 0; e && l < OFT_COND_ENCODER_LAYERS; l++)
        {
          char *kw = key (l, "weight"), *kb = key (l, "bias");
          int64_t ws[4] = { e->width[l + 1], e->width[l], 3, 3 }, bs[1] = { e->width[l + 1] };
          if (!oft_safetensors_read_f32 (st, kw, e->w[l], 4, ws, error) || !oft_safetensors_read_f32 (st, kb, e->b[l], 1, bs, error))
            g_clear_pointer (&e, oft_cond_encoder_free);
          g_free (kw);
          g_free (kb);
        }
      for (int64_t i = 0; e && i < e->n_params; i++)
        if (!isfinite (e->params[i]))
          {
            g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC, "%s: a parameter is NaN or infinite", path);
            g_clear_pointer (&e, oft_cond_encoder_free);
          }
    }
  g_free (k0);
  g_free (k7);
  oft_safetensors_close (st);
  return e;
}

static OftConv2dShape
layer_shape (const OftCondEncoder *e, int l, int B, int H, int W)
{
  for (int i = 0; i < l; i++)
    if (e->stride[i] == 2)
      H /= 2, W /= 2;
  return (OftConv2dShape) { .B = B, .C = e->width[l], .H = H, .W = W, .OC = e->width[l + 1], .kh = 3, .kw = 3,
                            .stride = e->stride[l], .pad = 1 };
}

size_t
oft_cond_encoder_acts_floats (const OftCondEncoder *e, int B, int H, int W)
{
  size_t n = 0;
  for (int l = 0; l < OFT_COND_ENCODER_LAYERS; l++)
    {
      OftConv2dShape s = layer_shape (e, l, B, H, W);
      n += (size_t) B * s.OC * oft_conv2d_out_h (&s) * oft_conv2d_out_w (&s);
    }
  return n;
}

static size_t
max_scratch (const OftCondEncoder *e, int B, int H, int W, size_t *max_act)
{
  size_t m = 0;
  *max_act = 0;
  for (int l = 0; l < OFT_COND_ENCODER_LAYERS; l++)
    {
      OftConv2dShape s = layer_shape (e, l, B, H, W);
      m = MAX (m, oft_conv2d_scratch_floats (&s));
      *max_act = MAX (*max_act, (size_t) B * MAX (s.OC, s.C) * s.H * s.W);
    }
  return m;
}

/* n floats (zeroed), or NULL and the error naming the size: a condition image too large for the memory */
static float *
try_floats (size_t n, GError **error)
{
  float *p = n <= G_MAXSIZE / sizeof (float) ? g_try_malloc0 (MAX (n, 1) * sizeof (float)) : NULL;
  if (!p)
    g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "condition encoder: cannot allocate %.1f MiB for its "
                 "activations: out of memory", (double) n * sizeof (float) / (1 << 20));
  return p;
}

gboolean
oft_cond_encoder_forward (const OftCondEncoder *e, float *out, const float *cond, int B, int H, int W, float *acts,
                          GError **error)
{
  size_t max_act, ns = max_scratch (e, B, H, W, &max_act);
  float *scratch = try_floats (ns, error), *a = scratch ? try_floats (max_act, error) : NULL;
  float *z = a ? try_floats (max_act, error) : NULL;
  if (!z)
    {
      g_free (scratch);
      g_free (a);
      return FALSE;
    }
  const float *x = cond;
  for (int l = 0; l < OFT_COND_ENCODER_LAYERS; l++)
    {
      OftConv2dShape s = layer_shape (e, l, B, H, W);
      size_t n = (size_t) B * s.OC * oft_conv2d_out_h (&s) * oft_conv2d_out_w (&s);
      float *pre = l == OFT_COND_ENCODER_LAYERS - 1 ? out : z;
      oft_conv2d_forward (pre, x, e->w[l], e->b[l], &s, scratch);
      if (acts)
        {
          memcpy (acts, pre, n * sizeof (float));
          acts += n;
        }
      if (l < OFT_COND_ENCODER_LAYERS - 1)
        {
          oft_silu_forward (a, pre, (int64_t) n);
          x = a;
          float *t = a; a = z; z = t;  /* the next conv reads x while writing the other buffer */
        }
    }
  g_free (scratch);
  g_free (a);
  g_free (z);
  return TRUE;
}

gboolean
oft_cond_encoder_backward (const OftCondEncoder *e, float *grads, const float *dout, const float *cond,
                           int B, int H, int W, const float *acts, GError **error)
{
  size_t max_act, ns = max_scratch (e, B, H, W, &max_act);
  float *scratch = try_floats (ns, error), *d = scratch ? try_floats (max_act, error) : NULL;
  float *dn = d ? try_floats (max_act, error) : NULL, *x = dn ? try_floats (max_act, error) : NULL;
  if (!x)
    {
      g_free (scratch);
      g_free (d);
      g_free (dn);
      return FALSE;
    }
  const float *pre[OFT_COND_ENCODER_LAYERS];
  for (int l = 0; l < OFT_COND_ENCODER_LAYERS; l++)
    {
      pre[l] = acts;
      OftConv2dShape s = layer_shape (e, l, B, H, W);
      acts += (size_t) B * s.OC * oft_conv2d_out_h (&s) * oft_conv2d_out_w (&s);
    }
  /* two gradient buffers: the conv's input gradient goes to the one g is not in; the SiLU backward
   * then writes over g's, which the conv has finished reading */
  const float *g = dout;
  for (int l = OFT_COND_ENCODER_LAYERS - 1; l >= 0; l--)
    {
      OftConv2dShape s = layer_shape (e, l, B, H, W);
      size_t nin = (size_t) B * s.C * s.H * s.W;
      /* the layer's input: the condition, or SiLU of the previous pre-activation */
      const float *in = cond;
      if (l > 0)
        {
          oft_silu_forward (x, pre[l - 1], (int64_t) nin);
          in = x;
        }
      float *gw = grads + oft_cond_encoder_offset (e, l), *gb = gw + (int64_t) s.OC * s.C * 9;
      float *dx = g == d ? dn : d;
      if (l > 0)
        memset (dx, 0, nin * sizeof (float));
      oft_conv2d_backward (l > 0 ? dx : NULL, gw, gb, g, in, e->w[l], &s, scratch);
      if (l > 0)
        {
          float *dpre = dx == d ? dn : d;
          memset (dpre, 0, nin * sizeof (float));
          oft_silu_backward (dpre, dx, pre[l - 1], (int64_t) nin);
          g = dpre;
        }
    }
  g_free (scratch);
  g_free (d);
  g_free (dn);
  g_free (x);
  return TRUE;
}
