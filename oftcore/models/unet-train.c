/* Training a UNet: the forward keeps what the backward needs (every unit's input, and with
 * checkpointing off its internal activations too), the backward runs from the MSE loss to the
 * trained adapter (OFT rotations, BOFT butterfly factors, per-output scales) and, with full training
 * attached, to every weight. Without full
 * training frozen weights have no gradient buffers and gradients flow only through activations. */
#include "unet-private.h"
#include "oft/nn.h"
#include <math.h>
#include <string.h>

/* ---- attaching the trained adapter ---- */

static size_t
trainable_R_floats (const Trainable *t)
{
  return t->kind == OFT_ADAPTER_BOFT ? (size_t) t->bspec.d * t->bspec.d
                                     : (size_t) oft_spec_rows (&t->spec) * t->spec.b * t->spec.b;
}

static void
trainable_free (gpointer p)
{
  Trainable *t = p;
  g_free (t->R);
  g_free (t->cache);
  g_free (t->dR);
  g_free (t);
}

void
oft_unet_detach_trainable (OftUnet *u)
{
  if (!u->trainables)
    return;
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init (&it, u->modules);
  while (g_hash_table_iter_next (&it, &key, &value))
    if (((Module *) value)->lin)
      ((Module *) value)->lin->train = NULL;
  g_clear_pointer (&u->trainables, g_ptr_array_unref);
}

/* A module's per-output scale as [out] floats of the adapter's tensor, or NULL when it has none. */
static gboolean
module_scale (float **s, const OftAdapterModule *m, const Module *mod, GError **error)
{
  *s = NULL;
  if (m->scale.ndim == 0)
    return TRUE;
  if (m->scale.dtype != OFT_DTYPE_F32 || oft_tensor_numel (&m->scale) != mod->out)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "the adapter's module '%s' has a scale of %" G_GINT64_FORMAT
                   " values (need %" G_GINT64_FORMAT " F32, one per output)", m->module, oft_tensor_numel (&m->scale),
                   mod->out);
      return FALSE;
    }
  *s = m->scale.data;
  return TRUE;
}

gboolean
oft_unet_attach_trainable (OftUnet *u, OftPeftAdapter *a, GError **error)
{
  const OftAdapterConfig *cfg = oft_peft_adapter_config (a);
  /* on the GPU (model-device.c) the training step runs there: OFT/COFT rotations without scales only */
  if (u->dev && (cfg->kind != OFT_ADAPTER_OFT || cfg->magnitude))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "the UNet runs on the GPU, which trains OFT/COFT "
                   "adapters without a magnitude only (this one is %s): move it back with oft_unet_set_device "
                   "(…, OFT_DEVICE_CPU, …) first", cfg->kind != OFT_ADAPTER_OFT ? "BOFT" : "OFT with a magnitude");
      return FALSE;
    }
  size_t n = oft_peft_adapter_n_modules (a);
  GPtrArray *list = g_ptr_array_new_with_free_func (trainable_free);
  for (size_t i = 0; i < n; i++)
    {
      const OftAdapterModule *m = oft_peft_adapter_module (a, i);
      Module *mod = g_hash_table_lookup (u->modules, m->module);
      const char *why = !mod ? "is not a module of this UNet"
                        : !mod->lin ? "is not a transformer-block Linear (only those can be trained)"
                        : mod->lin->rots && mod->lin->rots->len ? "already runs an adapter on the fly (merge it first)"
                        : m->param.dtype != OFT_DTYPE_F32 ? "has a parameter that is not F32"
                        : NULL;
      if (why)
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "the adapter's module '%s' %s", m->module, why);
          g_ptr_array_unref (list);
          return FALSE;
        }
      Trainable *t = g_new0 (Trainable, 1);
      g_ptr_array_add (list, t);
      t->kind = cfg->kind;
      size_t nR;
      /* validates the shapes against the Linear and fills the spec */
      if (cfg->kind == OFT_ADAPTER_BOFT)
        {
          if (!oft_adapter_boft_spec (&t->bspec, mod->out, mod->d, cfg, &m->param, m->scale.ndim ? &m->scale : NULL,
                                      m->module, error))
            {
              g_ptr_array_unref (list);
              return FALSE;
            }
          nR = (size_t) mod->d * mod->d;
          t->R = g_new (float, nR);
          t->cache = g_new0 (float, oft_boft_cache_floats (&t->bspec));
        }
      else
        {
          t->R = oft_adapter_rotation (&t->spec, mod->d, cfg, &m->param, m->module, error);
          if (!t->R)
            {
              g_ptr_array_unref (list);
              return FALSE;
            }
          nR = (size_t) oft_spec_rows (&t->spec) * t->spec.b * t->spec.b;
          t->cache = g_new0 (float, nR);
        }
      if (!module_scale (&t->s, m, mod, error))
        {
          g_ptr_array_unref (list);
          return FALSE;
        }
      t->dR = g_new0 (float, nR);
      t->param = m->param.data;
      t->index = (int) i;
    }
  oft_unet_detach_trainable (u);
  u->trainables = list;
  for (size_t i = 0; i < n; i++)
    {
      Module *mod = g_hash_table_lookup (u->modules, oft_peft_adapter_module (a, i)->module);
      mod->lin->train = g_ptr_array_index (list, i);
    }
  oft_unet_refresh_trainable (u);
  return TRUE;
}

/* Modules in parallel (each module's rows are independent; an inner parallel loop then runs on its own
 * thread): the many small modules of an SD adapter (10 to 40 blocks each) keep every core busy. */
static void
refresh_trainables (OftUnet *u, gboolean device_cayley)
{
  int n = u->trainables ? (int) u->trainables->len : 0;
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
  for (int i = 0; i < n; i++)
    {
      Trainable *t = g_ptr_array_index (u->trainables, i);
      if (t->kind == OFT_ADAPTER_BOFT)
        {
          oft_boft_transform_forward (t->R, t->cache, t->param, &t->bspec);
          continue;
        }
      if (device_cayley && trainable_cayley_on_device (t))
        continue;   /* the GPU module projects (COFT) and builds R itself (cu_unet_sync_train) */
      if (t->spec.coft)
        oft_coft_project (t->param, &t->spec); /* PEFT: in place, before every forward, not differentiated */
      oft_rotation_forward (t->R, t->cache, t->param, &t->spec);
    }
}

void
oft_unet_refresh_trainable (OftUnet *u)
{
  refresh_trainables (u, FALSE);
}

/* ---- full-parameter training ---- */

gboolean
oft_unet_attach_full_training (OftUnet *u, GError **error)
{
  if (u->dev)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "the UNet runs on the GPU, where training is not "
                   "supported: move it back with oft_unet_set_device (…, OFT_DEVICE_CPU, …) first");
      return FALSE;
    }
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init (&it, u->modules);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      Lin *lin = ((Module *) value)->lin;
      if (lin && ((lin->rots && lin->rots->len) || lin->train))
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                       "full training: the module '%s' runs an adapter on the fly (merge it first)", (char *) key);
          return FALSE;
        }
    }
  oft_params_alloc_grads (u->params_list);
  return TRUE;
}

OftParams *
oft_unet_params (OftUnet *u)
{
  return u->params_list;
}

void
oft_unet_set_context_grad (OftUnet *u, float *dcontext)
{
  u->dcontext = dcontext;
}

/* ---- the training forward and backward ---- */

typedef struct {
  float *res_in;         /* the resnet's input (a concat for up blocks) */
  float *res_out;        /* its output = the transformer's input */
  float *out;            /* the unit's output */
  OftResnetSave rs;
  TransformerSave ts;
  int cin, cout, H, W, skip;  /* skip: index of the skip this unit consumed (up) or pushed (down) */
  bool saved;
} Unit;

typedef struct {
  OftUnet *u;
  OftArena *a;
  const float *temb_act, *context;
  float *dtemb;         /* ∂/∂temb_act, full training only */
  const OftParams *g;   /* NULL unless full training */
  int B, T;
  bool checkpoint;
} Run;

static float *
take (OftArena *a, int B, int C, int H, int W)
{
  return oft_arena_scratch (a, (size_t) B * C * H * W);
}

/* FALSE when the arena refused memory (the training step then stops) */
static bool
unit_forward (Run *r, Unit *x, const OftResnet *res, const Transformer *tr)
{
  int B = r->B, n = B * x->cout * x->H * x->W;
  x->res_out = take (r->a, B, x->cout, x->H, x->W);
  x->saved = !r->checkpoint;
  if (!x->res_out)
    return false;
  oft_resnet_forward_save (r->a, x->res_out, x->res_in, r->temb_act, res, B, x->H, x->W, x->saved ? &x->rs : NULL);
  x->out = x->res_out;
  if (tr)
    {
      x->out = take (r->a, B, x->cout, x->H, x->W);
      if (!x->out)
        return false;
      memcpy (x->out, x->res_out, (size_t) n * sizeof (float));
      oft_unet_transformer_forward (r->a, x->out, r->context, tr, B, x->H, x->W, r->T, x->saved ? &x->ts : NULL);
    }
  return !oft_arena_failed (r->a);
}

/* dx: ∂/∂(unit output) in, returns a new buffer with ∂/∂(resnet input); NULL when the arena refused
 * memory. */
static float *
unit_backward (Run *r, Unit *x, float *dx, const OftResnet *res, const Transformer *tr)
{
  int B = r->B;
  OftArenaMark m = oft_arena_mark (r->a);
  Unit y = *x;
  if (!y.saved)
    {
      /* checkpointing: recompute this unit's activations from its kept input */
      float *tmp = take (r->a, B, y.cout, y.H, y.W);
      if (tmp)
        oft_resnet_forward_save (r->a, tmp, y.res_in, r->temb_act, res, B, y.H, y.W, &y.rs);
      if (tr && !oft_arena_failed (r->a))
        {
          memcpy (tmp, y.res_out, (size_t) B * y.cout * y.H * y.W * sizeof (float));
          oft_unet_transformer_forward (r->a, tmp, r->context, tr, B, y.H, y.W, r->T, &y.ts);
        }
    }
  if (tr && !oft_arena_failed (r->a))
    oft_unet_transformer_backward (r->a, dx, r->u->dcontext, r->context, tr, B, y.H, y.W, r->T, &y.ts, r->g);
  float *din = oft_arena_floats (r->a, (size_t) B * y.cin * y.H * y.W);
  if (oft_arena_failed (r->a))
    {
      oft_arena_reset (r->a, m);
      return NULL;
    }
  oft_resnet_backward (r->a, din, r->dtemb, dx, y.res_in, r->temb_act, res, B, y.H, y.W, &y.rs, r->g);
  if (!y.saved)
    {
      /* keep din, drop the recomputed activations: move din down to the mark */
      float *keep_din = din;
      oft_arena_reset (r->a, m);
      din = oft_arena_scratch (r->a, (size_t) B * y.cin * y.H * y.W);  /* below keep_din: cannot fail */
      memmove (din, keep_din, (size_t) B * y.cin * y.H * y.W * sizeof (float));
    }
  return oft_arena_failed (r->a) ? NULL : din;
}

gboolean
oft_unet_train_loss (OftUnet *u, const float *sample, const float *timesteps, const float *context,
                     int B, int h, int w, int T, const float *target, gboolean checkpoint,
                     float *loss, float **grads, GError **error)
{
  int L = u->n_levels, mult = oft_unet_size_multiple (u);
  const OftParams *g = oft_params_have_grads (u->params_list) ? u->params_list : NULL;
  if (!u->trainables && !u->dcontrol && !g)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                   "nothing to train: no adapter attached, no control gradient, no full training");
      return FALSE;
    }
  if (B < 1 || T < 1 || h < 1 || w < 1 || h % mult || w % mult)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE,
                   "UNet input %d×%d×%d: the latent size must be a positive multiple of %d", B, h, w, mult);
      return FALSE;
    }
  /* on the GPU, exact Cayley rotations are built there (their host R stays stale until the next refresh) */
  gboolean on_gpu = u->dev && !g && !u->dcontrol;
  refresh_trainables (u, on_gpu);
  guint n_train = u->trainables ? u->trainables->len : 0;
  gboolean any_scale = FALSE;
  for (guint i = 0; i < n_train; i++)
    any_scale |= ((Trainable *) g_ptr_array_index (u->trainables, i))->s != NULL;
  if (n_train && !grads)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "an adapter is attached for training: grads are needed");
      return FALSE;
    }
  for (guint i = 0; i < n_train; i++)
    {
      Trainable *t = g_ptr_array_index (u->trainables, i);
      t->gR = grads[t->index];
      t->gs = t->s && any_scale ? grads[n_train + t->index] : NULL;
      if (t->gR)
        memset (t->dR, 0, sizeof (float) * trainable_R_floats (t));
    }
  if (on_gpu)
    {
      /* the GPU: it adds the packed gradients of exact Cayley rotations to gR itself, and writes the others'
       * dR, whose packed gradients follow here as on the CPU */
      gboolean ok = u->dev_ops->unet_train_loss (u->dev, sample, timesteps, context, B, h, w, T, target, checkpoint,
                                                 loss, error);
#pragma omp parallel for schedule(dynamic, 1) if (n_train > 1)
      for (guint i = 0; i < n_train; i++)
        {
          Trainable *t = g_ptr_array_index (u->trainables, i);
          if (ok && t->gR && !trainable_cayley_on_device (t))
            oft_rotation_backward (t->gR, t->dR, t->cache, t->param, &t->spec);
          t->gR = t->gs = NULL;
        }
      if (!ok)
        g_prefix_error (error, "UNet training step on %d×%d×%d×%d latents: ", B, u->in_ch, h, w);
      return ok;
    }
  if (u->dev)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "the UNet runs on the GPU, where full training and "
                   "control gradients are not supported: move it back with oft_unet_set_device (…, OFT_DEVICE_CPU, …)");
      for (guint i = 0; i < n_train; i++)
        ((Trainable *) g_ptr_array_index (u->trainables, i))->gR = NULL;
      return FALSE;
    }
  OftArena *a = &u->train_acts;
  OftArenaMark mark = oft_arena_mark (a);
  /* activations that do not fit become an error naming the size, not an abort */
  oft_arena_begin_checked (a);
  gboolean ok = FALSE;
#define CHECK(cond) do { if (!(cond) || oft_arena_failed (a)) goto out; } while (0)

  /* time embedding (a gradient only with full training: nothing else is trained before it) */
  float *tp = oft_arena_scratch (a, (size_t) B * u->tproj), *t1 = oft_arena_scratch (a, (size_t) B * u->temb);
  float *temb = oft_arena_scratch (a, (size_t) B * u->temb), *t1a = oft_arena_scratch (a, (size_t) B * u->temb);
  float *temb_act = oft_arena_scratch (a, (size_t) B * u->temb);
  float *dtemb = g ? oft_arena_floats (a, (size_t) B * u->temb) : NULL;
  CHECK (TRUE);
  oft_timestep_embedding (tp, timesteps, B, u->tproj, u->flip, u->freq_shift, 10000.0f);
  oft_linear_forward (t1, tp, u->t1w, u->t1b, B, u->tproj, u->temb);
  oft_silu_forward (t1a, t1, (int64_t) B * u->temb);
  oft_linear_forward (temb, t1a, u->t2w, u->t2b, B, u->temb, u->temb);
  oft_silu_forward (temb_act, temb, (int64_t) B * u->temb);
  Run r = { .u = u, .a = a, .temb_act = temb_act, .context = context, .B = B, .T = T, .checkpoint = checkpoint,
            .g = g, .dtemb = dtemb };

  /* forward, every unit's input and output kept */
  float *skips[1 + MAX_LEVELS * (MAX_LAYERS + 1)];
  int skip_ch[G_N_ELEMENTS (skips)], skip_h[G_N_ELEMENTS (skips)], skip_w[G_N_ELEMENTS (skips)], n_skips = 0;
  Unit down[MAX_LEVELS][MAX_LAYERS], up[MAX_LEVELS][MAX_LAYERS], mid;
  int H = h, W = w, C = u->ch[0];
  float *x = take (a, B, C, H, W);
  CHECK (x);
  oft_conv_apply (a, x, sample, u->cin_w, u->cin_b, B, u->in_ch, h, w, C, 3, 1, 1);
  if (u->control)
    oft_add_forward (x, x, u->control, (int64_t) B * C * h * w);
  skips[n_skips] = x, skip_ch[n_skips] = C, skip_h[n_skips] = H, skip_w[n_skips++] = W;
  for (int i = 0; i < L; i++)
    {
      Level *d = &u->down[i];
      for (int j = 0; j < d->n; j++)
        {
          Unit *un = &down[i][j];
          *un = (Unit) { .res_in = x, .cin = C, .cout = d->out_ch, .H = H, .W = W, .skip = n_skips };
          CHECK (unit_forward (&r, un, &d->res[j], d->has_attn ? &d->attn[j] : NULL));
          x = un->out, C = un->cout;
          skips[n_skips] = x, skip_ch[n_skips] = C, skip_h[n_skips] = H, skip_w[n_skips++] = W;
        }
      if (d->has_sample)
        {
          float *y = take (a, B, C, H / 2, W / 2);
          CHECK (y);
          oft_downsample_forward (a, y, x, &d->down, B, H, W);
          H /= 2, W /= 2, x = y;
          skips[n_skips] = x, skip_ch[n_skips] = C, skip_h[n_skips] = H, skip_w[n_skips++] = W;
        }
    }
  int n_pushed = n_skips;
  /* mid block: resnet, transformer, resnet, as two units (the second without a transformer) */
  Unit mid1;
  mid = (Unit) { .res_in = x, .cin = C, .cout = C, .H = H, .W = W };
  CHECK (unit_forward (&r, &mid, &u->mid_r0, &u->mid_attn));
  mid1 = (Unit) { .res_in = mid.out, .cin = C, .cout = C, .H = H, .W = W };
  CHECK (unit_forward (&r, &mid1, &u->mid_r1, NULL));
  x = mid1.out;
  for (int i = 0; i < L; i++)
    {
      Level *lv = &u->up[i];
      for (int j = 0; j < lv->n; j++)
        {
          int k = --n_skips, sc = skip_ch[k];
          float *cat = take (a, B, C + sc, H, W);
          CHECK (cat);
          oft_concat_forward (cat, x, skips[k], B, C, sc, (int64_t) H * W);
          Unit *un = &up[i][j];
          *un = (Unit) { .res_in = cat, .cin = C + sc, .cout = lv->out_ch, .H = H, .W = W, .skip = k };
          CHECK (unit_forward (&r, un, &lv->res[j], lv->has_attn ? &lv->attn[j] : NULL));
          x = un->out, C = un->cout;
        }
      if (lv->has_sample)
        {
          float *y = take (a, B, C, 2 * H, 2 * W);
          CHECK (y);
          oft_upsample_forward (a, y, x, &lv->up, B, H, W);
          H *= 2, W *= 2, x = y;
        }
    }
  int64_t HW = (int64_t) H * W, n_out = (int64_t) B * u->out_ch * HW;
  float *gmean = oft_arena_scratch (a, (size_t) B * u->groups), *grstd = oft_arena_scratch (a, (size_t) B * u->groups);
  float *hn = take (a, B, C, H, W), *act = take (a, B, C, H, W), *out = oft_arena_scratch (a, n_out);
  CHECK (TRUE);
  oft_groupnorm_forward (hn, gmean, grstd, x, u->nout_w, u->nout_b, B, C, HW, u->groups, u->norm_eps);
  oft_silu_forward (act, hn, (int64_t) B * C * HW);
  oft_conv_apply (a, out, act, u->cout_w, u->cout_b, B, C, H, W, u->out_ch, 3, 1, 1);
  CHECK (TRUE);
  *loss = oft_mse_forward (out, target, n_out);
  if (!isfinite (*loss))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC, "the loss is %g (NaN or infinite)", *loss);
      goto out;
    }

  /* backward */
  float *dskips[G_N_ELEMENTS (skips)];
  for (int k = 0; k < n_pushed; k++)
    dskips[k] = oft_arena_floats (a, (size_t) B * skip_ch[k] * skip_h[k] * skip_w[k]);
  float *dout = oft_arena_floats (a, n_out);
  float *dact = oft_arena_floats (a, (size_t) B * C * HW), *dhn = oft_arena_floats (a, (size_t) B * C * HW);
  float *dx = oft_arena_floats (a, (size_t) B * C * HW);
  CHECK (TRUE);
  oft_mse_backward (dout, out, target, n_out, 1.0f);
#define GR(p) oft_params_grad (g, p)
  oft_conv_apply_backward_full (a, dact, GR (u->cout_w), GR (u->cout_b), dout, act, u->cout_w, B, C, H, W, u->out_ch,
                                3, 1, 1);
  oft_silu_backward (dhn, dact, hn, (int64_t) B * C * HW);
  oft_groupnorm_backward (dx, GR (u->nout_w), GR (u->nout_b), dhn, x, u->nout_w, gmean, grstd, B, C, HW, u->groups);
  for (int i = L - 1; i >= 0; i--)
    {
      Level *lv = &u->up[i];
      if (lv->has_sample)
        {
          H /= 2, W /= 2;
          float *d = oft_arena_floats (a, (size_t) B * lv->out_ch * H * W);
          CHECK (d);
          oft_upsample_backward (a, d, dx, up[i][lv->n - 1].out, &lv->up, B, H, W, g);
          CHECK (TRUE);
          dx = d;
        }
      for (int j = lv->n - 1; j >= 0; j--)
        {
          Unit *un = &up[i][j];
          float *dcat = unit_backward (&r, un, dx, &lv->res[j], lv->has_attn ? &lv->attn[j] : NULL);
          CHECK (dcat);
          int sc = skip_ch[un->skip], cprev = un->cin - sc;
          float *d = oft_arena_floats (a, (size_t) B * cprev * H * W);
          CHECK (d);
          oft_concat_backward (d, dskips[un->skip], dcat, B, cprev, sc, (int64_t) H * W);
          dx = d;
        }
    }
  dx = unit_backward (&r, &mid1, dx, &u->mid_r1, NULL);
  CHECK (dx);
  dx = unit_backward (&r, &mid, dx, &u->mid_r0, &u->mid_attn);
  CHECK (dx);
  for (int i = L - 1; i >= 0; i--)
    {
      Level *d = &u->down[i];
      if (d->has_sample)
        {
          int k = down[i][d->n - 1].skip + 1;  /* the downsampler's output was pushed after the level's units */
          oft_add_forward (dx, dx, dskips[k], (int64_t) B * d->out_ch * H * W);
          float *dd = oft_arena_floats (a, (size_t) B * d->out_ch * 4 * H * W);
          CHECK (dd);
          oft_downsample_backward (a, dd, dx, down[i][d->n - 1].out, &d->down, B, 2 * H, 2 * W, g);
          CHECK (TRUE);
          H *= 2, W *= 2, dx = dd;
        }
      for (int j = d->n - 1; j >= 0; j--)
        {
          Unit *un = &down[i][j];
          oft_add_forward (dx, dx, dskips[un->skip], (int64_t) B * un->cout * H * W);
          dx = unit_backward (&r, un, dx, &d->res[j], d->has_attn ? &d->attn[j] : NULL);
          CHECK (dx);
        }
    }
  if (u->dcontrol || g)
    {
      /* conv_in's output (plus the control) fed the first unit and the first skip */
      oft_add_forward (dx, dx, dskips[0], (int64_t) B * u->ch[0] * h * w);
      if (u->dcontrol)
        oft_add_forward (u->dcontrol, u->dcontrol, dx, (int64_t) B * u->ch[0] * h * w);
    }
  if (g)
    {
      oft_conv_apply_backward_full (a, NULL, GR (u->cin_w), GR (u->cin_b), dx, sample, u->cin_w, B, u->in_ch, h, w,
                                    u->ch[0], 3, 1, 1);
      /* temb_act = silu(linear_2(silu(linear_1(proj(t))))) */
      float *d2 = oft_arena_floats (a, (size_t) B * u->temb), *d1 = oft_arena_floats (a, (size_t) B * u->temb);
      CHECK (TRUE);
      oft_silu_backward (d2, r.dtemb, temb, (int64_t) B * u->temb);
      oft_linear_backward (d1, GR (u->t2w), GR (u->t2b), d2, t1a, u->t2w, B, u->temb, u->temb);
      memset (d2, 0, sizeof (float) * (size_t) B * u->temb);
      oft_silu_backward (d2, d1, t1, (int64_t) B * u->temb);
      oft_linear_backward (NULL, GR (u->t1w), GR (u->t1b), d2, tp, u->t1w, B, u->tproj, u->temb);
    }
#undef GR
  CHECK (TRUE);  /* the gradients reach the caller only from a complete backward */

#pragma omp parallel for schedule(dynamic, 1) if (n_train > 1)
  for (guint i = 0; i < n_train; i++)
    {
      Trainable *t = g_ptr_array_index (u->trainables, i);
      if (!t->gR)
        continue;
      if (t->kind == OFT_ADAPTER_BOFT)
        oft_boft_transform_backward (t->gR, t->dR, t->cache, t->param, &t->bspec);
      else
        oft_rotation_backward (t->gR, t->dR, t->cache, t->param, &t->spec);
    }
  ok = TRUE;
#undef CHECK
out:
  for (guint i = 0; i < n_train; i++)
    {
      Trainable *t = g_ptr_array_index (u->trainables, i);
      t->gR = t->gs = NULL;
    }
  oft_arena_reset (a, mark);
  if (!oft_arena_end_checked (a, error))
    g_prefix_error (error, "UNet training step on %d×%d×%d×%d latents: ", B, u->in_ch, h, w);
  return ok;
}
