/* UNet2DConditionModel forward on the GPU: models/unet.c, unet-blocks.c and blocks.c step for step over
 * the host model's structs, with device copies of its weights (cuda-module.h). Differences from the CPU
 * path, none of which changes the arithmetic beyond rounding:
 *  - attention is the fused kernel, so the [Tq, Tk] probabilities are never stored;
 *  - the transformer's 1×1-conv proj_in/proj_out run as Linears on the token layout (the same weights
 *    [D, C, 1, 1] = [D, C], transposed first instead of after), so both projection kinds share one path;
 *  - adapters applied on the fly rotate with oftcu_block_rotate_forward, R uploaded once per upload
 *    (a shared block is repeated to every block). */
#include "cuda-module.h"
#include "../models/unet-private.h"
#include "oft/error.h"
#include <string.h>

static void
fwd_release (CuUnetFwd *f)
{
  oftcu_graph_destroy (f->graph);
  oftcu_free (f->sample);
  oftcu_free (f->ts);
  oftcu_free (f->ctx);
  oftcu_free (f->out);
  g_free (f->ctx_host);
  CuUnet *d = f->d;
  memset (f, 0, sizeof *f);
  f->d = d;
}

static void
free_rot (gpointer p)
{
  oftcu_free (p);
}

/* One launch per run of consecutive exact Cayley trainables with one block size and a block per row: their
 * rows lie back to back in every part of the slab. (One launch per module left the GPU nearly idle: a few
 * dozen small blocks each, 8 ms for SD1.5's 128 modules.) */
void
cu_unet_cayley (CuUnet *d, gboolean backward)
{
  GPtrArray *list = d->u->trainables;
  for (guint i = 0; list && i < list->len;)
    {
      const CuTrain *first = g_hash_table_lookup (d->train, g_ptr_array_index (list, i));
      guint j = i + 1;
      int rows = first->rows;
      if (first->cayley && first->rows == first->nb)
        for (; j < list->len; j++)
          {
            const CuTrain *ct = g_hash_table_lookup (d->train, g_ptr_array_index (list, j));
            if (!ct->cayley || ct->b != first->b || ct->rows != ct->nb)
              break;
            rows += ct->rows;
          }
      if (first->cayley)
        {
          int reps = first->nb / first->rows;
          if (backward)
            PROF ("cayley bwd", oftcu_cayley_backward (first->dpacked, first->dR, first->Ainv, rows, reps, first->b));
          else
            PROF ("cayley", oftcu_cayley_forward (first->R, first->Ainv, first->packed, rows, reps, first->b));
        }
      i = j;
    }
}

G_STATIC_ASSERT (OFT_DEVICE_CAYLEY_MAX_B <= OFTCU_CAYLEY_MAX_B);

/* Every trained rotation's R and dR live in one device slab ([R of all | dR of all | the Cayley ones' Ainv,
 * packed values and packed gradients], fp32), so that a step uploads and downloads each part in one
 * transfer; the host staging buffer is kept between steps. */
gboolean
cu_unet_sync_train (CuUnet *d, GError **error)
{
  GPtrArray *list = d->u->trainables;
  size_t total = 0, ainv = 0, ne = 0;
  gboolean host_R = FALSE;
  for (guint i = 0; list && i < list->len; i++)
    {
      const Trainable *t = g_ptr_array_index (list, i);
      if (t->kind != OFT_ADAPTER_OFT || t->s)
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "UNet: the attached adapter is %s; the GPU trains "
                       "OFT/COFT rotations without a per-output scale only (use the CPU)",
                       t->kind != OFT_ADAPTER_OFT ? "BOFT" : "OFT with a per-output scale");
          return FALSE;
        }
      const OftSpec *s = &t->spec;
      total += (size_t) s->n_blocks * s->b * s->b;
      if (trainable_cayley_on_device (t))
        {
          ainv += (size_t) oft_spec_rows (s) * s->b * s->b;
          ne += (size_t) oft_spec_rows (s) * s->b * (s->b - 1) / 2;
        }
      else
        host_R = TRUE;
    }
  g_hash_table_remove_all (d->train);
  if (total != d->train_floats || ainv != d->train_ainv || ne != d->train_ne)
    {
      oftcu_free (d->train_slab);
      d->train_slab = NULL;
      d->train_floats = d->train_ainv = d->train_ne = 0;
      size_t n = 2 * total + ainv + 2 * ne;
      if (n)
        {
          d->train_slab = oftcu_alloc (n * sizeof (float));
          if (!d->train_slab)
            {
              g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "UNet: allocating %.1f MiB on the GPU for the "
                           "trained rotations: %s", (double) n * sizeof (float) / (1 << 20),
                           oftcu_error () ? oftcu_error () : "out of memory");
              oftcu_clear_error ();
              return FALSE;
            }
        }
      d->train_floats = total, d->train_ainv = ainv, d->train_ne = ne;
      d->train_host = g_renew (float, d->train_host, MAX (total + ne, 1));
    }
  d->train_host_R = host_R;
  float *dev_ainv = ne ? d->train_slab + 2 * total : NULL, *dev_packed = ne ? dev_ainv + ainv : NULL;
  size_t off = 0, off_a = 0, off_p = 0;
  for (guint i = 0; list && i < list->len; i++)
    {
      Trainable *t = g_ptr_array_index (list, i);
      const OftSpec *s = &t->spec;
      size_t bb = (size_t) s->b * s->b;
      int rows = oft_spec_rows (s);
      CuTrain *ct = g_new0 (CuTrain, 1);
      *ct = (CuTrain) { .R = d->train_slab + off, .dR = d->train_slab + total + off, .nb = s->n_blocks, .b = s->b,
                        .rows = rows };
      g_hash_table_insert (d->train, (gpointer) t, ct);
      if (trainable_cayley_on_device (t))
        {
          size_t row_ne = (size_t) rows * s->b * (s->b - 1) / 2;
          if (s->coft)
            oft_coft_project (t->param, s);   /* PEFT: in place, before every forward, not differentiated */
          ct->cayley = TRUE;
          ct->Ainv = dev_ainv + off_a;
          ct->packed = dev_packed + off_p;
          ct->dpacked = dev_packed + ne + off_p;
          memcpy (d->train_host + total + off_p, t->param, row_ne * sizeof (float));
          off_a += (size_t) rows * bb, off_p += row_ne;
        }
      else   /* a shared block is repeated to every block */
        for (int k = 0; k < s->n_blocks; k++)
          memcpy (d->train_host + off + k * bb, t->R + (s->block_share ? 0 : k * bb), bb * sizeof (float));
      off += bb * s->n_blocks;
    }
  if ((host_R && total && oftcu_upload (d->train_slab, d->train_host, total * sizeof (float)) != 0) ||
      (ne && oftcu_upload (dev_packed, d->train_host + total, ne * sizeof (float)) != 0))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "UNet: uploading the trained rotations: %s",
                   oftcu_error () ? oftcu_error () : "?");
      oftcu_clear_error ();
      return FALSE;
    }
  cu_unet_cayley (d, FALSE);
  if (oftcu_error ())
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "UNet: building the trained rotations: %s",
                   oftcu_error ());
      oftcu_clear_error ();
      return FALSE;
    }
  return TRUE;
}

static gboolean
upload_rotations (CuUnet *d, GError **error)
{
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init (&it, d->u->modules);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      const Module *m = value;
      for (guint i = 0; m->lin && m->lin->rots && i < m->lin->rots->len; i++)
        {
          const LinRot *r = g_ptr_array_index (m->lin->rots, i);
          const OftSpec *s = &r->spec;
          size_t bb = (size_t) s->b * s->b, bytes = sizeof (float) * bb * s->n_blocks;
          float *full = g_new (float, bb * s->n_blocks);
          for (int k = 0; k < s->n_blocks; k++)
            memcpy (full + k * bb, r->R + (s->block_share ? 0 : k * bb), bb * sizeof (float));
          float *dev = oftcu_alloc (bytes);
          int rc = dev ? oftcu_upload (dev, full, bytes) : -1;
          g_free (full);
          if (rc != 0)
            {
              g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "UNet: uploading the adapter rotation of %s: %s",
                           (const char *) key, oftcu_error () ? oftcu_error () : "out of memory");
              oftcu_clear_error ();
              oftcu_free (dev);
              return FALSE;
            }
          g_hash_table_insert (d->rots, (gpointer) r, dev);
        }
    }
  return TRUE;
}

void
cu_unet_release (gpointer dev)
{
  CuUnet *d = dev;
  if (!d)
    return;
  fwd_release (&d->fwd);
  cu_weights_release (&d->w);
  cu_arena_release (&d->acts);
  if (d->rots)
    g_hash_table_destroy (d->rots);
  if (d->train)
    g_hash_table_destroy (d->train);
  oftcu_free (d->train_slab);
  g_free (d->train_host);
  g_free (d);
}

/* Full-parameter training stays on the CPU */
static gboolean
check_no_full_training (const OftUnet *u, GError **error)
{
  if (oft_params_have_grads (u->params_list))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                   "UNet: full-parameter training runs on the CPU only; detach it before using the GPU");
      return FALSE;
    }
  return TRUE;
}

gpointer
cu_unet_upload (OftUnet *u, int dtype, GError **error)
{
  if (!check_no_full_training (u, error))
    return NULL;
  if (dtype != OFTCU_F32 && dtype != OFTCU_BF16)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "UNet: GPU storage type %d is not fp32 or bf16", dtype);
      return NULL;
    }
  CuUnet *d = g_new0 (CuUnet, 1);
  d->u = u;
  d->fwd.d = d;
  d->rots = g_hash_table_new_full (NULL, NULL, NULL, free_rot);
  d->train = g_hash_table_new_full (NULL, NULL, NULL, g_free);
  cu_arena_init (&d->acts, "UNet activations", 0);
  if (!cu_weights_upload (&d->w, &u->params, (OftCuDtype) dtype, "UNet weights", error) ||
      !upload_rotations (d, error) || !cu_unet_sync_train (d, error))
    {
      cu_unet_release (d);
      return NULL;
    }
  return d;
}

/* ---- forward ---- */

typedef CuUnetFwd Run;

/* out[N, lin->out] = (x·R_1⋯R_n·R_train)·Wᵀ + b (oft_unet_lin_forward; cu_unet_sync_train refused a scale) */
void
cu_unet_lin (Cx *c, CuUnet *d, void *out, const void *x, const void *lin_, int64_t N)
{
  const Lin *l = lin_;
  guint n_rot = l->rots ? l->rots->len : 0;
  const CuTrain *tr = l->train ? g_hash_table_lookup (d->train, l->train) : NULL;
  if (l->train && !tr && cx_ok (c))
    g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "a trained rotation has no GPU copy");
  if (n_rot == 0 && !tr)
    {
      k_linear (c, out, x, cx_w (c, l->w), cx_w (c, l->b), N, l->in, l->out);
      return;
    }
  CuMark m = cx_mark (c);
  void *t0 = cx_take (c, N * l->in), *t1 = cx_take (c, N * l->in);
  const void *src = x;
  for (guint i = 0; i < n_rot; i++)
    {
      const LinRot *rot = g_ptr_array_index (l->rots, i);
      const float *R = g_hash_table_lookup (d->rots, rot);
      if (!R && cx_ok (c))
        g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_FAILED,
                     "an adapter applied after the upload has no GPU copy (set the device again)");
      void *dst = src == t0 ? t1 : t0;
      k_block_rotate (c, dst, src, R, N, rot->spec.n_blocks, rot->spec.b);
      src = dst;
    }
  if (tr)
    {
      void *dst = src == t0 ? t1 : t0;
      k_block_rotate (c, dst, src, tr->R, N, tr->nb, tr->b);
      src = dst;
    }
  k_linear (c, out, src, cx_w (c, l->w), cx_w (c, l->b), N, l->in, l->out);
  cx_reset (c, m);
}

static void
lin (Run *r, void *out, const void *x, const Lin *l, int64_t N)
{
  cu_unet_lin (&r->c, r->d, out, x, l, N);
}

/* BasicTransformerBlock in place on x[B·HW, D] (oft_unet_tblock_forward without saving) */
static void
tblock (Run *r, void *x, const void *context, const TBlock *b, int B, int64_t HW, int T)
{
  Cx *c = &r->c;
  int D = b->dim, H = b->heads, F = b->ff;
  int64_t N = B * HW, NC = (int64_t) B * T;
  CuMark m = cx_mark (c);
  void *h = cx_take (c, N * D), *q = cx_take (c, N * D), *o = cx_take (c, N * D);
  void *k = cx_take (c, MAX (N, NC) * D), *v = cx_take (c, MAX (N, NC) * D);
  float *mean = cx_f32 (c, N), *rstd = cx_f32 (c, N);
  void *f = cx_take (c, N * 2 * F), *g = cx_take (c, N * F), *y = cx_take (c, N * D);

  k_layernorm (c, h, mean, rstd, x, cx_norm (c, b->n1w, D), cx_norm (c, b->n1b, D), N, D, 1e-5f);
  lin (r, q, h, &b->q1, N);
  lin (r, k, h, &b->k1, N);
  lin (r, v, h, &b->v1, N);
  k_attention (c, o, q, k, v, B, (int) HW, (int) HW, H, D / H);
  lin (r, y, o, &b->o1, N);
  k_add (c, x, x, y, N * D);

  k_layernorm (c, h, mean, rstd, x, cx_norm (c, b->n2w, D), cx_norm (c, b->n2b, D), N, D, 1e-5f);
  lin (r, q, h, &b->q2, N);
  lin (r, k, context, &b->k2, NC);
  lin (r, v, context, &b->v2, NC);
  k_attention (c, o, q, k, v, B, (int) HW, T, H, D / H);
  lin (r, y, o, &b->o2, N);
  k_add (c, x, x, y, N * D);

  k_layernorm (c, h, mean, rstd, x, cx_norm (c, b->n3w, D), cx_norm (c, b->n3b, D), N, D, 1e-5f);
  lin (r, f, h, &b->ff1, N);
  k_geglu (c, g, f, N, F);
  lin (r, y, g, &b->ff2, N);
  k_add (c, x, x, y, N * D);
  cx_reset (c, m);
}

/* Transformer2DModel in place on x[B, C, H, W] (oft_unet_transformer_forward without saving) */
static void
transformer (Run *r, void *x, const void *context, const Transformer *t, int B, int Hh, int Ww, int T)
{
  Cx *c = &r->c;
  int C = t->ch, D = t->inner;
  int64_t HW = (int64_t) Hh * Ww, N = B * HW;
  CuMark m = cx_mark (c);
  float *mean = cx_f32 (c, (int64_t) B * t->groups), *rstd = cx_f32 (c, (int64_t) B * t->groups);
  void *h = cx_take (c, N * MAX (C, D)), *p = cx_take (c, N * MAX (C, D)), *tok = cx_take (c, N * D);
  /* Transformer2DModel's GroupNorm uses eps 1e-6 whatever the UNet's norm_eps */
  k_groupnorm (c, h, mean, rstd, x, cx_norm (c, t->nw, C), cx_norm (c, t->nb, C), B, C, HW, t->groups, 1e-6f);
  k_transpose (c, p, h, B, C, HW);
  k_linear (c, tok, p, cx_w (c, t->piw), cx_w (c, t->pib), N, C, D);
  for (int i = 0; i < t->n_blocks; i++)
    tblock (r, tok, context, &t->blocks[i], B, HW, T);
  k_linear (c, p, tok, cx_w (c, t->pow_), cx_w (c, t->pob), N, D, C);
  k_transpose (c, h, p, B, HW, C);
  k_add (c, x, x, h, N * C);
  cx_reset (c, m);
}

static void
tap (Run *r, const char *name, const void *dev, int64_t n)
{
  cx_tap (&r->c, r->d->u->tap, r->d->u->tap_data, name, dev, n);
}

/* The whole forward on the device, from f's input buffers to f->out: nothing here synchronizes, allocates
 * beyond the warmed arena, or copies to or from the host, unless taps or a control residual are set (those
 * runs are never captured). Failures land in f->c.error. */
static void
unet_body (void *data)
{
  CuUnetFwd *f = data;
  Run *run = f;
  CuUnet *d = f->d;
  OftUnet *u = d->u;
  const int B = f->B, h = f->h, w = f->w, T = f->T;
  int L = u->n_levels;
  Cx *c = &f->c;
  cx_begin (c, &d->acts, &d->w);
  CuMark mark = cx_mark (c);
  char name[64];

  /* the inputs in the storage type (fp32 is used in place: the forward only reads them) */
  const void *xs = f->sample, *ctx = f->ctx;
  const float *ts = f->ts;
  if (c->dt != OFTCU_F32)
    {
      int64_t ns = (int64_t) B * u->in_ch * h * w, nc = (int64_t) B * T * u->ctx_dim;
      void *xb = cx_take (c, ns), *cb = cx_take (c, nc);
      k_convert (c, xb, c->dt, f->sample, OFTCU_F32, ns);
      k_convert (c, cb, c->dt, f->ctx, OFTCU_F32, nc);
      xs = xb, ctx = cb;
    }

  /* time embedding; every resnet consumes SiLU(temb) */
  void *tp = cx_take (c, (int64_t) B * u->tproj), *t1 = cx_take (c, (int64_t) B * u->temb);
  void *temb = cx_take (c, (int64_t) B * u->temb);
  k_timestep_embedding (c, tp, ts, B, u->tproj, u->flip, u->freq_shift);
  tap (run, "time_proj", tp, (int64_t) B * u->tproj);
  k_linear (c, t1, tp, cx_w (c, u->t1w), cx_w (c, u->t1b), B, u->tproj, u->temb);
  k_silu (c, t1, t1, (int64_t) B * u->temb);
  k_linear (c, temb, t1, cx_w (c, u->t2w), cx_w (c, u->t2b), B, u->temb, u->temb);
  tap (run, "time_embedding", temb, (int64_t) B * u->temb);
  k_silu (c, t1, temb, (int64_t) B * u->temb);
  const void *temb_act = t1;
  /* skip connections, largest first */
  void *skips[1 + MAX_LEVELS * (MAX_LAYERS + 1)];
  int skip_ch[G_N_ELEMENTS (skips)], n_skips = 0;
  int cmax = 0;
  for (int i = 0; i < L; i++)
    cmax = MAX (cmax, u->ch[i]);
  int64_t big = (int64_t) B * 2 * cmax * h * w; /* room for a concat at full resolution */
  void *x = cx_take (c, big), *y = cx_take (c, big), *cat = cx_take (c, big);

  k_conv (c, x, xs, cx_w (c, u->cin_w), cx_w (c, u->cin_b), B, u->in_ch, h, w, u->ch[0], 3, 1, 1);
  tap (run, "conv_in", x, (int64_t) B * u->ch[0] * h * w);
  if (u->control)
    {
      CuMark cm = cx_mark (c);
      void *ctl = cx_upload (c, u->control, (int64_t) B * u->ch[0] * h * w);
      k_add (c, x, x, ctl, (int64_t) B * u->ch[0] * h * w);
      cx_reset (c, cm);
    }
  int H = h, W = w, C = u->ch[0];
#define PUSH()                                                   \
  do {                                                           \
    skips[n_skips] = cx_take (c, (int64_t) B * C * H * W);       \
    k_copy (c, skips[n_skips], x, (int64_t) B * C * H * W);      \
    skip_ch[n_skips++] = C;                                      \
  } while (0)
  PUSH ();
  for (int i = 0; i < L; i++)
    {
      Level *dl = &u->down[i];
      for (int j = 0; j < dl->n; j++)
        {
          cu_resnet (c, y, x, temb_act, &dl->res[j], B, H, W);
          void *t = x; x = y; y = t;
          C = dl->out_ch;
          if (dl->has_attn)
            transformer (run, x, ctx, &dl->attn[j], B, H, W, T);
          PUSH ();
        }
      if (dl->has_sample)
        {
          k_conv (c, y, x, cx_w (c, dl->down.w), cx_w (c, dl->down.b), B, C, H, W, C, 3, 2, 1);
          H /= 2, W /= 2;
          void *t = x; x = y; y = t;
          PUSH ();
        }
      g_snprintf (name, sizeof name, "down_blocks.%d", i);
      tap (run, name, x, (int64_t) B * C * H * W);
    }

  cu_resnet (c, y, x, temb_act, &u->mid_r0, B, H, W);
  transformer (run, y, ctx, &u->mid_attn, B, H, W, T);
  cu_resnet (c, x, y, temb_act, &u->mid_r1, B, H, W);
  tap (run, "mid_block", x, (int64_t) B * C * H * W);

  for (int i = 0; i < L; i++)
    {
      Level *up = &u->up[i];
      for (int j = 0; j < up->n; j++)
        {
          int sc = skip_ch[--n_skips];
          k_concat (c, cat, x, skips[n_skips], B, C, sc, (int64_t) H * W);
          cu_resnet (c, x, cat, temb_act, &up->res[j], B, H, W);
          C = up->out_ch;
          if (up->has_attn)
            transformer (run, x, ctx, &up->attn[j], B, H, W, T);
        }
      if (up->has_sample)
        {
          cu_upsample (c, y, x, &up->up, B, H, W);
          H *= 2, W *= 2;
          void *t = x; x = y; y = t;
        }
      g_snprintf (name, sizeof name, "up_blocks.%d", i);
      tap (run, name, x, (int64_t) B * C * H * W);
    }
#undef PUSH

  if (u->tap)
    {
      /* conv_norm_out is tapped between the norm and the SiLU, so this path spells the three steps out */
      float *mean = cx_f32 (c, (int64_t) B * u->groups), *rstd = cx_f32 (c, (int64_t) B * u->groups);
      k_groupnorm (c, y, mean, rstd, x, cx_norm (c, u->nout_w, C), cx_norm (c, u->nout_b, C), B, C, (int64_t) H * W,
                   u->groups, u->norm_eps);
      tap (run, "conv_norm_out", y, (int64_t) B * C * H * W);
      k_silu (c, y, y, (int64_t) B * C * H * W);
      k_conv (c, x, y, cx_w (c, u->cout_w), cx_w (c, u->cout_b), B, C, H, W, u->out_ch, 3, 1, 1);
    }
  else
    cu_norm_silu_conv (c, y, x, u->nout_w, u->nout_b, u->groups, u->norm_eps, u->cout_w, u->cout_b, B, C, H, W,
                       u->out_ch);
  k_convert (c, f->out, OFTCU_F32, u->tap ? x : y, c->dt, (int64_t) B * u->out_ch * H * W);
  cx_reset (c, mark);
}

/* OFT_CUDA_GRAPHS=0 turns graph replay off (read at every forward, so a bench can compare both) */
static gboolean
graphs_enabled (void)
{
  const char *e = g_getenv ("OFT_CUDA_GRAPHS");
  return !e || !g_str_equal (e, "0");
}

/* The input and output buffers for these shapes; a change of shapes drops the graph. */
static gboolean
fwd_prepare (CuUnetFwd *f, int B, int h, int w, int T, GError **error)
{
  const OftUnet *u = f->d->u;
  if (f->out && f->B == B && f->h == h && f->w == w && f->T == T)
    return TRUE;
  fwd_release (f);
  f->B = B, f->h = h, f->w = w, f->T = T;
  f->sample = oftcu_alloc ((size_t) B * u->in_ch * h * w * sizeof (float));
  f->ts = f->sample ? oftcu_alloc ((size_t) B * sizeof (float)) : NULL;
  f->ctx = f->ts ? oftcu_alloc ((size_t) B * T * u->ctx_dim * sizeof (float)) : NULL;
  f->out = f->ctx ? oftcu_alloc ((size_t) B * u->out_ch * h * w * sizeof (float)) : NULL;
  if (!f->out)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "UNet forward on the GPU: cannot allocate the input "
                   "and output buffers: %s", oftcu_error () ? oftcu_error () : "out of memory");
      oftcu_clear_error ();
      fwd_release (f);
      return FALSE;
    }
  return TRUE;
}

gboolean
cu_unet_forward (gpointer dev, const float *sample, const float *timesteps, const float *context,
                 int B, int h, int w, int T, float *out, GError **error)
{
  CuUnet *d = dev;
  OftUnet *u = d->u;
  CuUnetFwd *f = &d->fwd;
  if (!check_no_full_training (u, error) || !cu_unet_sync_train (d, error))
    return FALSE;
  oftcu_clear_error ();  /* a failure left over from an earlier call belongs to it */
  if (!fwd_prepare (f, B, h, w, T, error))
    return FALSE;
  int64_t n_out = (int64_t) B * u->out_ch * h * w;
  const size_t ctx_bytes = (size_t) B * T * u->ctx_dim * sizeof (float);
  gboolean same_ctx = f->ctx_host && memcmp (f->ctx_host, context, ctx_bytes) == 0;
  if (!same_ctx)
    g_clear_pointer (&f->ctx_host, g_free);
  if (oftcu_upload (f->sample, sample, (size_t) B * u->in_ch * h * w * sizeof (float)) != 0 ||
      oftcu_upload (f->ts, timesteps, (size_t) B * sizeof (float)) != 0 ||
      (!same_ctx && oftcu_upload (f->ctx, context, ctx_bytes) != 0))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "UNet forward on the GPU: uploading the inputs: %s",
                   oftcu_error () ? oftcu_error () : "?");
      oftcu_clear_error ();
      return FALSE;
    }
  if (!same_ctx)
    f->ctx_host = g_memdup2 (context, ctx_bytes);
  /* taps and the control residual copy to and from the host mid-forward: those runs stay eager */
  /* trained rotations may be attached after a capture: forwards while training stay eager too */
  gboolean graphs = graphs_enabled () && !u->tap && !u->control && !u->trainables;
  gboolean profile = FALSE;
  /* capture once an eager run with these shapes allocated nothing (arena and fp32 norm copies warm), so
   * the capture, from the same arena state, allocates nothing either; a failed capture is retried once,
   * then these shapes stay eager */
  cu_arena_sort_spare (&d->acts);
  if (graphs && !f->graph && f->warm && f->failed_captures < 2)
    {
      f->graph = oftcu_graph_capture (unet_body, f);
      if (!f->graph || f->c.error)
        {
          g_message ("UNet forward: CUDA graph capture failed (%s); running eagerly",
                     f->c.error ? f->c.error->message : oftcu_error () ? oftcu_error () : "?");
          g_clear_error (&f->c.error);
          oftcu_graph_destroy (f->graph);
          f->graph = NULL;
          f->failed_captures++;
          oftcu_sync ();
          oftcu_clear_error ();
          cu_arena_sort_spare (&d->acts);
        }
      else
        g_debug ("UNet forward: captured a CUDA graph for batch %d, %dx%d, %d tokens", B, h, w, T);
    }
  if (graphs && f->graph)
    {
      f->c.error = NULL;
      oftcu_graph_launch (f->graph);
    }
  else
    {
      size_t before = d->acts.reserved + d->w.f32_store.reserved;
      profile = g_strcmp0 (g_getenv ("OFT_CUDA_PROFILE"), "1") == 0;
      oftcu_prof_enable (profile);
      unet_body (f);
      oftcu_prof_enable (false);
      f->warm = graphs && cx_ok (&f->c) && d->acts.reserved + d->w.f32_store.reserved == before;
    }
  Cx *c = &f->c;
  if (cx_ok (c) && !oftcu_error () && oftcu_download (out, f->out, (size_t) n_out * sizeof (float)) != 0)
    g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "downloading the result: %s",
                 oftcu_error () ? oftcu_error () : "?");
  if (profile && cx_ok (c))
    {
      /* OFT_CUDA_PROFILE=1: GPU time per kind of kernel of this (eager) forward, on stdout for the benches */
      char *what = g_strdup_printf ("UNet %dx%dx%d", B, h, w);
      cu_prof_print (what);
      g_free (what);
    }
  return cx_end (c, "UNet forward", error);
}
