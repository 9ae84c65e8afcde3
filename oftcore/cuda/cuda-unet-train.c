/* The OFT training step on the GPU: models/unet-train.c and unet-blocks.c step for step, from the MSE
 * loss back to every trained rotation's dR, over the host model's structs and the device copies of its
 * weights (cuda-unet.c). Frozen weights get no gradient: only activations' gradients flow, and each
 * trained Linear's dR. Exact Cayley rotations are built here from their packed parameters and their dR
 * turned into the packed gradient here (cu_unet_sync_train, oftcu_cayley_*), so a step moves only packed
 * values; for the others (Neumann, blocks over 64) the host rebuilds R and turns the downloaded dR into the
 * packed gradient as on the CPU.
 * As on the CPU, checkpointing keeps only each unit's input and output and recomputes the rest during
 * the backward. Attention keeps its output and log-sum-exp instead of the probabilities. */
#include "cuda-module.h"
#include "../models/unet-private.h"
#include "oft/error.h"
#include <math.h>
#include <string.h>

/* launch only while nothing has failed (a NULL buffer after a refused allocation must not reach a kernel);
 * LP also times it under a label when profiling (OFT_CUDA_PROFILE=1) */
#define L(call) do { if (cx_ok (c)) { call; } } while (0)
#define LP(label, call) L (PROF (label, call))

typedef struct {
  Cx c;
  CuUnet *d;
  const void *temb_act, *ctx;
  int B, T;
  bool checkpoint, profile;
  GPtrArray *host;   /* host memory of the saves, freed at the end */
} Run;

static void *
zeros (Cx *c, int64_t n)
{
  void *p = cx_take (c, n);
  L (oftcu_memset0 (p, (size_t) MAX (n, 1) * c->es));
  return p;
}

static void
zero (Cx *c, void *p, int64_t n)
{
  L (oftcu_memset0 (p, (size_t) n * c->es));
}

/* conv backward to the input only (frozen weights) */
static void
conv_bwd (Cx *c, void *dx, const void *dout, const float *w, int B, int C, int H, int W, int OC, int k, int stride,
          int pad)
{
  OftCuConvShape s = { .B = B, .C = C, .H = H, .W = W, .OC = OC, .kh = k, .kw = k, .stride = stride, .pad = pad };
  const void *wd = cx_w (c, w);
  size_t n = cx_ok (c) ? oftcu_conv2d_scratch_bytes (c->dt, &s) : 0;
  CuMark m = cx_mark (c);
  void *scratch = n && cx_ok (c) ? cu_arena_take (c->a, n, &c->error) : NULL;
  LP ("conv bwd", oftcu_conv2d_backward (c->dt, dx, NULL, NULL, dout, NULL, wd, &s, scratch));
  cx_reset (c, m);
}

/* ---- Linear with its trained rotation ---- */

static void
lin_fwd (Run *r, void *out, const void *x, const Lin *l, int64_t N)
{
  cu_unet_lin (&r->c, r->d, out, x, l, N);
}

/* dx (may be NULL) += ∂/∂x; the trained rotation's dR += ...; x the Linear's (rotation's) input */
static void
lin_bwd (Run *r, void *dx, const void *dy, const void *x, const Lin *l, int64_t N)
{
  Cx *c = &r->c;
  const void *w = cx_w (c, l->w);
  if (!l->train)
    {
      if (dx)
        LP ("linear bwd", oftcu_linear_backward (c->dt, dx, NULL, NULL, dy, x, w, N, l->in, l->out));
      return;
    }
  const CuTrain *t = g_hash_table_lookup (r->d->train, l->train);
  if (!t)
    {
      if (cx_ok (c))
        g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "a trained rotation has no GPU copy");
      return;
    }
  CuMark m = cx_mark (c);
  void *dxr = zeros (c, N * l->in);
  LP ("linear bwd", oftcu_linear_backward (c->dt, dxr, NULL, NULL, dy, x, w, N, l->in, l->out));
  LP ("block_rotate bwd", oftcu_block_rotate_backward (c->dt, dx, l->train->gR ? t->dR : NULL, dxr, x, t->R, N,
                                                      t->nb, t->b));
  cx_reset (c, m);
}

/* ---- BasicTransformerBlock ---- */

/* a profile label naming the attention's head size and lengths (interned: the profile keeps the pointer);
 * only formatted when profiling, the launches being on the step's hot path */
static const char *
att_label (const Run *r, const char *what, int Dh, int64_t Tq, int64_t Tk)
{
  if (!r->profile)
    return what;
  char buf[96];
  g_snprintf (buf, sizeof buf, "%s D%d %lldx%lld", what, Dh, (long long) Tq, (long long) Tk);
  return g_intern_string (buf);
}

/* What a block keeps for its backward. The layer norms' and GEGLU's outputs are never kept: the backward
 * recomputes them from the residual stream (t0, t1, t2) and f, an elementwise kernel each. Without
 * checkpointing every block's saves live through the whole backward, so the projections q1, k1, v1, q2
 * and ff1's output f are not kept either (NULL) but recomputed from the recomputed norms, five more GEMMs
 * per block: that keeps 5·N·D per block instead of 12·N·D + 3·N·F (the SD1.5 step's activations on an H200:
 * 687 MiB with only the norms and GEGLU recomputed, 433 MiB with these too; the step took 69.9 ms before and
 * 67.8 ms after, so the extra GEMMs did not show above the run-to-run spread). With
 * checkpointing a unit's saves live only during its own backward, so they are all kept. */
typedef struct {
  void *t0, *t1, *t2;
  float *m1, *r1, *m2, *r2, *m3, *r3;
  void *q1, *k1, *v1, *o1, *q2, *k2, *v2, *o2;
  float *lse1, *lse2;
  void *f;
} TSave;

static void
tblock_fwd (Run *r, void *x, const TBlock *b, int64_t HW, TSave *s)
{
  Cx *c = &r->c;
  int B = r->B, T = r->T, D = b->dim, H = b->heads, F = b->ff;
  int64_t N = B * HW, NC = (int64_t) B * T;
  bool keep = r->checkpoint;
  *s = (TSave) {
    .t0 = cx_take (c, N * D), .t1 = cx_take (c, N * D), .t2 = cx_take (c, N * D),
    .m1 = cx_f32 (c, N), .r1 = cx_f32 (c, N), .m2 = cx_f32 (c, N), .r2 = cx_f32 (c, N),
    .m3 = cx_f32 (c, N), .r3 = cx_f32 (c, N),
    .o1 = cx_take (c, N * D), .k2 = cx_take (c, NC * D), .v2 = cx_take (c, NC * D), .o2 = cx_take (c, N * D),
    .lse1 = cx_f32 (c, (int64_t) B * H * HW), .lse2 = cx_f32 (c, (int64_t) B * H * HW),
  };
  if (keep)
    {
      s->q1 = cx_take (c, N * D), s->k1 = cx_take (c, N * D), s->v1 = cx_take (c, N * D);
      s->q2 = cx_take (c, N * D), s->f = cx_take (c, N * 2 * F);
    }
  CuMark m = cx_mark (c);
  void *y = cx_take (c, N * D), *h = cx_take (c, N * D), *g = cx_take (c, N * F);
  void *q1 = keep ? s->q1 : cx_take (c, N * D), *k1 = keep ? s->k1 : cx_take (c, N * D);
  void *v1 = keep ? s->v1 : cx_take (c, N * D), *q2 = keep ? s->q2 : q1, *f = keep ? s->f : cx_take (c, N * 2 * F);

  k_copy (c, s->t0, x, N * D);
  k_layernorm (c, h, s->m1, s->r1, x, cx_norm (c, b->n1w, D), cx_norm (c, b->n1b, D), N, D, 1e-5f);
  lin_fwd (r, q1, h, &b->q1, N);
  lin_fwd (r, k1, h, &b->k1, N);
  lin_fwd (r, v1, h, &b->v1, N);
  LP (att_label (r, "attention", D / H, HW, HW),
      oftcu_attention_forward (c->dt, s->o1, s->lse1, q1, k1, v1, B, (int) HW, (int) HW, H, D / H, false));
  lin_fwd (r, y, s->o1, &b->o1, N);
  k_add (c, x, x, y, N * D);

  k_copy (c, s->t1, x, N * D);
  k_layernorm (c, h, s->m2, s->r2, x, cx_norm (c, b->n2w, D), cx_norm (c, b->n2b, D), N, D, 1e-5f);
  lin_fwd (r, q2, h, &b->q2, N);
  lin_fwd (r, s->k2, r->ctx, &b->k2, NC);
  lin_fwd (r, s->v2, r->ctx, &b->v2, NC);
  LP (att_label (r, "attention", D / H, HW, T),
      oftcu_attention_forward (c->dt, s->o2, s->lse2, q2, s->k2, s->v2, B, (int) HW, T, H, D / H, false));
  lin_fwd (r, y, s->o2, &b->o2, N);
  k_add (c, x, x, y, N * D);

  k_copy (c, s->t2, x, N * D);
  k_layernorm (c, h, s->m3, s->r3, x, cx_norm (c, b->n3w, D), cx_norm (c, b->n3b, D), N, D, 1e-5f);
  lin_fwd (r, f, h, &b->ff1, N);
  k_geglu (c, g, f, N, F);
  lin_fwd (r, y, g, &b->ff2, N);
  k_add (c, x, x, y, N * D);
  cx_reset (c, m);
}

/* dx[N, D]: ∂/∂(block output) in, ∂/∂(block input) out (oft_unet_tblock_backward without dcontext).
 * Each part's temporaries are given back before the next part takes its own. */
static void
tblock_bwd (Run *r, void *dx, const TBlock *b, int64_t HW, const TSave *s)
{
  Cx *c = &r->c;
  int B = r->B, T = r->T, D = b->dim, H = b->heads, F = b->ff;
  int64_t N = B * HW, NC = (int64_t) B * T;
  CuMark m = cx_mark (c);
  /* h: a layer norm's output again (mean and rstd into scratch: the saved ones are what the norms' backward
   * reads) */
  void *dh = zeros (c, N * D), *dy = zeros (c, N * D), *h = cx_take (c, N * D);
  float *mean = cx_f32 (c, N), *rstd = cx_f32 (c, N);
#define LN_AGAIN(t, w_, b_) k_layernorm (c, h, mean, rstd, t, cx_norm (c, w_, D), cx_norm (c, b_, D), N, D, 1e-5f)

  /* feed-forward */
  CuMark part = cx_mark (c);
  void *dg = zeros (c, N * F), *df = zeros (c, N * 2 * F), *g = cx_take (c, N * F);
  LN_AGAIN (s->t2, b->n3w, b->n3b);
  void *f = s->f;
  if (!f)
    {
      f = cx_take (c, N * 2 * F);
      lin_fwd (r, f, h, &b->ff1, N);
    }
  k_geglu (c, g, f, N, F);
  lin_bwd (r, dg, dx, g, &b->ff2, N);
  LP ("geglu bwd", oftcu_geglu_backward (c->dt, df, dg, f, N, F));
  lin_bwd (r, dh, df, h, &b->ff1, N);
  LP ("layernorm bwd", oftcu_layernorm_backward (c->dt, dx, NULL, NULL, dh, s->t2, s->m3, s->r3,
                                                cx_norm (c, b->n3w, D), N, D));
  cx_reset (c, part);

  /* cross-attention */
  zero (c, dh, N * D);
  void *dq = zeros (c, N * D), *dk = zeros (c, NC * D), *dv = zeros (c, NC * D);
  LN_AGAIN (s->t1, b->n2w, b->n2b);
  void *q2 = s->q2;
  if (!q2)
    {
      q2 = cx_take (c, N * D);
      lin_fwd (r, q2, h, &b->q2, N);
    }
  lin_bwd (r, dy, dx, s->o2, &b->o2, N);
  LP (att_label (r, "attention bwd", D / H, HW, T),
      oftcu_attention_backward (c->dt, dq, dk, dv, dy, s->o2, s->lse2, q2, s->k2, s->v2, B, (int) HW, T, H, D / H,
                                false));
  lin_bwd (r, dh, dq, h, &b->q2, N);
  lin_bwd (r, NULL, dk, r->ctx, &b->k2, NC);
  lin_bwd (r, NULL, dv, r->ctx, &b->v2, NC);
  LP ("layernorm bwd", oftcu_layernorm_backward (c->dt, dx, NULL, NULL, dh, s->t1, s->m2, s->r2,
                                                cx_norm (c, b->n2w, D), N, D));
  cx_reset (c, part);

  /* self-attention */
  zero (c, dy, N * D);
  zero (c, dh, N * D);
  dq = zeros (c, N * D), dk = zeros (c, N * D), dv = zeros (c, N * D);
  LN_AGAIN (s->t0, b->n1w, b->n1b);
#undef LN_AGAIN
  const void *q1 = s->q1, *k1 = s->k1, *v1 = s->v1;
  if (!q1)
    {
      void *q = cx_take (c, N * D), *k = cx_take (c, N * D), *v = cx_take (c, N * D);
      lin_fwd (r, q, h, &b->q1, N);
      lin_fwd (r, k, h, &b->k1, N);
      lin_fwd (r, v, h, &b->v1, N);
      q1 = q, k1 = k, v1 = v;
    }
  lin_bwd (r, dy, dx, s->o1, &b->o1, N);
  LP (att_label (r, "attention bwd", D / H, HW, HW),
      oftcu_attention_backward (c->dt, dq, dk, dv, dy, s->o1, s->lse1, q1, k1, v1, B, (int) HW, (int) HW, H, D / H,
                                false));
  lin_bwd (r, dh, dq, h, &b->q1, N);
  lin_bwd (r, dh, dk, h, &b->k1, N);
  lin_bwd (r, dh, dv, h, &b->v1, N);
  LP ("layernorm bwd", oftcu_layernorm_backward (c->dt, dx, NULL, NULL, dh, s->t0, s->m1, s->r1,
                                                cx_norm (c, b->n1w, D), N, D));
  cx_reset (c, m);
}

/* ---- Transformer2DModel ---- */

typedef struct {
  void *x_in, *tok;
  float *mean, *rstd;
  TSave *blocks;
} TrSave;

static void
transformer_fwd (Run *r, void *x, const Transformer *t, int Hh, int Ww, TrSave *s)
{
  Cx *c = &r->c;
  int B = r->B, C = t->ch, D = t->inner;
  int64_t HW = (int64_t) Hh * Ww, N = B * HW;
  s->blocks = g_new0 (TSave, t->n_blocks);
  g_ptr_array_add (r->host, s->blocks);
  s->x_in = cx_take (c, N * C);
  s->mean = cx_f32 (c, (int64_t) B * t->groups);
  s->rstd = cx_f32 (c, (int64_t) B * t->groups);
  s->tok = cx_take (c, N * D);
  k_copy (c, s->x_in, x, N * C);
  CuMark m = cx_mark (c);
  void *h = cx_take (c, N * MAX (C, D)), *p = cx_take (c, N * MAX (C, D));
  k_groupnorm (c, h, s->mean, s->rstd, x, cx_norm (c, t->nw, C), cx_norm (c, t->nb, C), B, C, HW, t->groups, 1e-6f);
  k_transpose (c, p, h, B, C, HW);
  k_linear (c, s->tok, p, cx_w (c, t->piw), cx_w (c, t->pib), N, C, D);
  cx_reset (c, m);  /* the blocks' saves follow ours */
  for (int i = 0; i < t->n_blocks; i++)
    tblock_fwd (r, s->tok, &t->blocks[i], HW, &s->blocks[i]);
  m = cx_mark (c);
  h = cx_take (c, N * MAX (C, D)), p = cx_take (c, N * MAX (C, D));
  k_linear (c, p, s->tok, cx_w (c, t->pow_), cx_w (c, t->pob), N, D, C);
  k_transpose (c, h, p, B, HW, C);
  k_add (c, x, x, h, N * C);
  cx_reset (c, m);
}

static void
transformer_bwd (Run *r, void *dx, const Transformer *t, int Hh, int Ww, const TrSave *s)
{
  Cx *c = &r->c;
  int B = r->B, C = t->ch, D = t->inner;
  int64_t HW = (int64_t) Hh * Ww, N = B * HW;
  CuMark m = cx_mark (c);
  void *dtok = zeros (c, N * D), *tmp = cx_take (c, N * MAX (C, D)), *dh = cx_take (c, N * C);
  /* out = x + proj_out(tokens): dx keeps its value for the residual */
  k_transpose (c, tmp, dx, B, C, HW);
  LP ("linear bwd", oftcu_linear_backward (c->dt, dtok, NULL, NULL, tmp, s->tok, cx_w (c, t->pow_), N, D, C));
  for (int i = t->n_blocks - 1; i >= 0; i--)
    tblock_bwd (r, dtok, &t->blocks[i], HW, &s->blocks[i]);
  zero (c, tmp, N * C);
  LP ("linear bwd", oftcu_linear_backward (c->dt, tmp, NULL, NULL, dtok, NULL, cx_w (c, t->piw), N, C, D));
  k_transpose (c, dh, tmp, B, HW, C);
  LP ("groupnorm bwd", oftcu_groupnorm_backward (c->dt, dx, NULL, NULL, dh, s->x_in, s->mean, s->rstd,
                                                cx_norm (c, t->nw, C), B, C, HW, t->groups));
  cx_reset (c, m);
}

/* ---- ResnetBlock2D ---- */

/* The group norms' outputs are not kept either: the backward recomputes them from x and c1. */
typedef struct {
  void *c1;
  float *mean1, *rstd1, *mean2, *rstd2;
} RSave;

static void
resnet_fwd (Run *r, void *out, const void *x, const OftResnet *n, int H, int W, RSave *s)
{
  Cx *c = &r->c;
  int B = r->B;
  int64_t HW = (int64_t) H * W, G = (int64_t) B * n->groups;
  *s = (RSave) { .c1 = cx_take (c, B * n->cout * HW), .mean1 = cx_f32 (c, G), .rstd1 = cx_f32 (c, G),
                 .mean2 = cx_f32 (c, G), .rstd2 = cx_f32 (c, G) };
  CuMark m = cx_mark (c);
  void *a1 = cx_take (c, (int64_t) B * MAX (n->cin, n->cout) * HW);
  k_groupnorm_silu (c, a1, s->mean1, s->rstd1, x, cx_norm (c, n->n1w, n->cin), cx_norm (c, n->n1b, n->cin), B,
                    n->cin, HW, n->groups, n->eps);
  k_conv (c, s->c1, a1, cx_w (c, n->c1w), cx_w (c, n->c1b), B, n->cin, H, W, n->cout, 3, 1, 1);
  if (n->tw && r->temb_act)
    {
      void *t = cx_take (c, (int64_t) B * n->cout);
      k_linear (c, t, r->temb_act, cx_w (c, n->tw), cx_w (c, n->tb), B, n->temb, n->cout);
      k_add_channel (c, s->c1, t, B, n->cout, HW);
    }
  k_groupnorm_silu (c, a1, s->mean2, s->rstd2, s->c1, cx_norm (c, n->n2w, n->cout), cx_norm (c, n->n2b, n->cout),
                    B, n->cout, HW, n->groups, n->eps);
  k_conv (c, out, a1, cx_w (c, n->c2w), cx_w (c, n->c2b), B, n->cout, H, W, n->cout, 3, 1, 1);
  if (n->scw)
    {
      k_conv (c, a1, x, cx_w (c, n->scw), cx_w (c, n->scb), B, n->cin, H, W, n->cout, 1, 1, 0);
      k_add (c, out, out, a1, B * n->cout * HW);
    }
  else
    k_add (c, out, out, x, B * n->cout * HW);
  cx_reset (c, m);
}

/* dx += ∂/∂x from dout (no time-embedding or weight gradients: nothing before them is trained) */
static void
resnet_bwd (Run *r, void *dx, const void *dout, const void *x, const OftResnet *n, int H, int W, const RSave *s)
{
  Cx *c = &r->c;
  int B = r->B;
  int64_t HW = (int64_t) H * W, big = (int64_t) B * MAX (n->cin, n->cout) * HW;
  CuMark m = cx_mark (c);
  void *da = zeros (c, big), *dh = zeros (c, big), *h = cx_take (c, big);
  float *mean = cx_f32 (c, (int64_t) B * n->groups), *rstd = cx_f32 (c, (int64_t) B * n->groups);
  if (n->scw)
    conv_bwd (c, dx, dout, n->scw, B, n->cin, H, W, n->cout, 1, 1, 0);
  else
    k_add (c, dx, dx, dout, B * n->cout * HW);
  conv_bwd (c, da, dout, n->c2w, B, n->cout, H, W, n->cout, 3, 1, 1);
  k_groupnorm (c, h, mean, rstd, s->c1, cx_norm (c, n->n2w, n->cout), cx_norm (c, n->n2b, n->cout), B, n->cout, HW,
               n->groups, n->eps);
  LP ("silu bwd", oftcu_silu_backward (c->dt, dh, da, h, B * n->cout * HW));
  zero (c, da, B * n->cout * HW);
  LP ("groupnorm bwd", oftcu_groupnorm_backward (c->dt, da, NULL, NULL, dh, s->c1, s->mean2, s->rstd2,
                                                cx_norm (c, n->n2w, n->cout), B, n->cout, HW, n->groups));
  zero (c, dh, big);
  conv_bwd (c, dh, da, n->c1w, B, n->cin, H, W, n->cout, 3, 1, 1);
  zero (c, da, B * n->cin * HW);
  k_groupnorm (c, h, mean, rstd, x, cx_norm (c, n->n1w, n->cin), cx_norm (c, n->n1b, n->cin), B, n->cin, HW,
               n->groups, n->eps);
  LP ("silu bwd", oftcu_silu_backward (c->dt, da, dh, h, B * n->cin * HW));
  LP ("groupnorm bwd", oftcu_groupnorm_backward (c->dt, dx, NULL, NULL, da, x, s->mean1, s->rstd1,
                                                cx_norm (c, n->n1w, n->cin), B, n->cin, HW, n->groups));
  cx_reset (c, m);
}

/* ---- units: a resnet and its transformer (if any), as in unet-train.c ---- */

typedef struct {
  void *res_in, *res_out, *out;
  RSave rs;
  TrSave ts;
  int cin, cout, H, W, skip;
  bool saved;
} Unit;

static void
unit_fwd (Run *r, Unit *x, const OftResnet *res, const Transformer *tr)
{
  Cx *c = &r->c;
  int64_t n = (int64_t) r->B * x->cout * x->H * x->W;
  x->res_out = cx_take (c, n);
  x->out = tr ? cx_take (c, n) : x->res_out;
  x->saved = !r->checkpoint;
  CuMark m = cx_mark (c);
  resnet_fwd (r, x->res_out, x->res_in, res, x->H, x->W, &x->rs);
  if (tr)
    {
      k_copy (c, x->out, x->res_out, n);
      transformer_fwd (r, x->out, tr, x->H, x->W, &x->ts);
    }
  if (!x->saved)
    cx_reset (c, m);
}

/* dx: ∂/∂(unit output) in (overwritten); returns ∂/∂(resnet input), allocated here */
static void *
unit_bwd (Run *r, Unit *x, void *dx, const OftResnet *res, const Transformer *tr)
{
  Cx *c = &r->c;
  int64_t n = (int64_t) r->B * x->cout * x->H * x->W;
  void *din = zeros (c, (int64_t) r->B * x->cin * x->H * x->W);
  CuMark m = cx_mark (c);
  Unit y = *x;
  if (!y.saved)
    {
      /* checkpointing: recompute this unit's activations from its kept input */
      void *tmp = cx_take (c, n);
      resnet_fwd (r, tmp, y.res_in, res, y.H, y.W, &y.rs);
      if (tr)
        {
          k_copy (c, tmp, y.res_out, n);
          transformer_fwd (r, tmp, tr, y.H, y.W, &y.ts);
        }
    }
  if (tr)
    transformer_bwd (r, dx, tr, y.H, y.W, &y.ts);
  resnet_bwd (r, din, dx, y.res_in, res, y.H, y.W, &y.rs);
  cx_reset (c, m);
  return din;
}

/* ---- the step ---- */

gboolean
cu_unet_train_loss (gpointer dev, const float *sample, const float *timesteps, const float *context, int B, int h,
                    int w, int T, const float *target, gboolean checkpoint, float *loss, GError **error)
{
  CuUnet *d = dev;
  OftUnet *u = d->u;
  if (oft_params_have_grads (u->params_list) || u->dcontrol || u->dcontext)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "UNet training on the GPU: only adapter rotations are "
                   "trained there (full training, control and context gradients run on the CPU)");
      return FALSE;
    }
  /* OFT_CUDA_PROFILE=1: GPU time per kind of kernel of this step, printed at the end (for the benches) */
  gboolean profile = g_strcmp0 (g_getenv ("OFT_CUDA_PROFILE"), "1") == 0;
  oftcu_prof_enable (profile);
  if (!u->trainables || !cu_unet_sync_train (d, error))
    {
      oftcu_prof_enable (false);
      if (!u->trainables)
        g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "UNet training on the GPU: no adapter attached");
      return FALSE;
    }
  int L_ = u->n_levels;
  Run run = { .d = d, .B = B, .T = T, .checkpoint = checkpoint, .profile = profile,
              .host = g_ptr_array_new_with_free_func (g_free) };
  Cx *c = &run.c;
  cx_begin (c, &d->acts, &d->w);
  CuMark mark = cx_mark (c);
  d->acts.peak_used = d->acts.used;
  if (d->train_floats)
    L (oftcu_memset0 (d->train_slab + d->train_floats, d->train_floats * sizeof (float)));
  float *dpacked_all = d->train_ne ? d->train_slab + 2 * d->train_floats + d->train_ainv + d->train_ne : NULL;
  if (d->train_ne)
    L (oftcu_memset0 (dpacked_all, d->train_ne * sizeof (float)));

  void *xs = cx_upload (c, sample, (int64_t) B * u->in_ch * h * w);
  float *ts = cx_upload_f32 (c, timesteps, B);
  void *ctx = cx_upload (c, context, (int64_t) B * T * u->ctx_dim);
  void *tgt = cx_upload (c, target, (int64_t) B * u->out_ch * h * w);
  run.ctx = ctx;

  void *tp = cx_take (c, (int64_t) B * u->tproj), *t1 = cx_take (c, (int64_t) B * u->temb);
  void *temb = cx_take (c, (int64_t) B * u->temb);
  k_timestep_embedding (c, tp, ts, B, u->tproj, u->flip, u->freq_shift);
  k_linear (c, t1, tp, cx_w (c, u->t1w), cx_w (c, u->t1b), B, u->tproj, u->temb);
  k_silu (c, t1, t1, (int64_t) B * u->temb);
  k_linear (c, temb, t1, cx_w (c, u->t2w), cx_w (c, u->t2b), B, u->temb, u->temb);
  k_silu (c, t1, temb, (int64_t) B * u->temb);
  run.temb_act = t1;

  void *skips[1 + MAX_LEVELS * (MAX_LAYERS + 1)];
  int skip_ch[G_N_ELEMENTS (skips)], skip_h[G_N_ELEMENTS (skips)], skip_w[G_N_ELEMENTS (skips)], n_skips = 0;
  Unit down[MAX_LEVELS][MAX_LAYERS], up[MAX_LEVELS][MAX_LAYERS], mid, mid1;
  int H = h, W = w, C = u->ch[0];
  void *x = cx_take (c, (int64_t) B * C * H * W);
  k_conv (c, x, xs, cx_w (c, u->cin_w), cx_w (c, u->cin_b), B, u->in_ch, h, w, C, 3, 1, 1);
  if (u->control)
    {
      CuMark cm = cx_mark (c);
      void *ctl = cx_upload (c, u->control, (int64_t) B * C * h * w);
      k_add (c, x, x, ctl, (int64_t) B * C * h * w);
      cx_reset (c, cm);
    }
#define PUSH() (skips[n_skips] = x, skip_ch[n_skips] = C, skip_h[n_skips] = H, skip_w[n_skips++] = W)
  PUSH ();
  for (int i = 0; i < L_; i++)
    {
      Level *dl = &u->down[i];
      for (int j = 0; j < dl->n; j++)
        {
          Unit *un = &down[i][j];
          *un = (Unit) { .res_in = x, .cin = C, .cout = dl->out_ch, .H = H, .W = W, .skip = n_skips };
          unit_fwd (&run, un, &dl->res[j], dl->has_attn ? &dl->attn[j] : NULL);
          x = un->out, C = un->cout;
          PUSH ();
        }
      if (dl->has_sample)
        {
          if (dl->down.asym_pad && cx_ok (c))
            g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "asymmetric downsampling padding");
          void *y = cx_take (c, (int64_t) B * C * (H / 2) * (W / 2));
          k_conv (c, y, x, cx_w (c, dl->down.w), cx_w (c, dl->down.b), B, C, H, W, C, 3, 2, 1);
          H /= 2, W /= 2, x = y;
          PUSH ();
        }
    }
#undef PUSH
  int n_pushed = n_skips;
  mid = (Unit) { .res_in = x, .cin = C, .cout = C, .H = H, .W = W };
  unit_fwd (&run, &mid, &u->mid_r0, &u->mid_attn);
  mid1 = (Unit) { .res_in = mid.out, .cin = C, .cout = C, .H = H, .W = W };
  unit_fwd (&run, &mid1, &u->mid_r1, NULL);
  x = mid1.out;
  for (int i = 0; i < L_; i++)
    {
      Level *lv = &u->up[i];
      for (int j = 0; j < lv->n; j++)
        {
          int k = --n_skips, sc = skip_ch[k];
          void *cat = cx_take (c, (int64_t) B * (C + sc) * H * W);
          k_concat (c, cat, x, skips[k], B, C, sc, (int64_t) H * W);
          Unit *un = &up[i][j];
          *un = (Unit) { .res_in = cat, .cin = C + sc, .cout = lv->out_ch, .H = H, .W = W, .skip = k };
          unit_fwd (&run, un, &lv->res[j], lv->has_attn ? &lv->attn[j] : NULL);
          x = un->out, C = un->cout;
        }
      if (lv->has_sample)
        {
          void *y = cx_take (c, (int64_t) B * C * 4 * H * W);
          cu_upsample (c, y, x, &lv->up, B, H, W);
          H *= 2, W *= 2, x = y;
        }
    }
  int64_t HW = (int64_t) H * W, n_out = (int64_t) B * u->out_ch * HW;
  float *gmean = cx_f32 (c, (int64_t) B * u->groups), *grstd = cx_f32 (c, (int64_t) B * u->groups);
  void *hn = cx_take (c, B * C * HW), *act = cx_take (c, B * C * HW), *out = cx_take (c, n_out);
  float *dloss = cx_f32 (c, 1);
  k_groupnorm (c, hn, gmean, grstd, x, cx_norm (c, u->nout_w, C), cx_norm (c, u->nout_b, C), B, C, HW, u->groups,
               u->norm_eps);
  k_silu (c, act, hn, B * C * HW);
  k_conv (c, out, act, cx_w (c, u->cout_w), cx_w (c, u->cout_b), B, C, H, W, u->out_ch, 3, 1, 1);
  LP ("mse", oftcu_mse_forward (c->dt, dloss, out, tgt, n_out));
  if (cx_ok (c) && d->train_floats && (oftcu_sync () != 0 || oftcu_download (loss, dloss, sizeof (float)) != 0))
    g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "downloading the loss: %s",
                 oftcu_error () ? oftcu_error () : "?");
  if (cx_ok (c) && !isfinite (*loss))
    g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC, "the loss is %g (NaN or infinite)", *loss);

  /* backward */
  void *dskips[G_N_ELEMENTS (skips)];
  for (int k = 0; k < n_pushed; k++)
    dskips[k] = zeros (c, (int64_t) B * skip_ch[k] * skip_h[k] * skip_w[k]);
  void *dout = zeros (c, n_out), *dact = zeros (c, B * C * HW), *dhn = zeros (c, B * C * HW);
  void *dx = zeros (c, B * C * HW);
  LP ("mse bwd", oftcu_mse_backward (c->dt, dout, out, tgt, n_out, 1.0f));
  conv_bwd (c, dact, dout, u->cout_w, B, C, H, W, u->out_ch, 3, 1, 1);
  LP ("silu bwd", oftcu_silu_backward (c->dt, dhn, dact, hn, B * C * HW));
  LP ("groupnorm bwd", oftcu_groupnorm_backward (c->dt, dx, NULL, NULL, dhn, x, gmean, grstd, cx_norm (c, u->nout_w, C),
                                                B, C, HW, u->groups));
  for (int i = L_ - 1; i >= 0; i--)
    {
      Level *lv = &u->up[i];
      if (lv->has_sample)
        {
          H /= 2, W /= 2;
          int ch = lv->up.ch;
          void *dd = zeros (c, (int64_t) B * ch * H * W);
          CuMark m = cx_mark (c);
          void *dup = zeros (c, (int64_t) B * ch * 4 * H * W);
          conv_bwd (c, dup, dx, lv->up.w, B, ch, 2 * H, 2 * W, ch, 3, 1, 1);
          LP ("upsample2x bwd", oftcu_upsample2x_backward (c->dt, dd, dup, (int64_t) B * ch, H, W));
          cx_reset (c, m);
          dx = dd;
        }
      for (int j = lv->n - 1; j >= 0; j--)
        {
          Unit *un = &up[i][j];
          void *dcat = unit_bwd (&run, un, dx, &lv->res[j], lv->has_attn ? &lv->attn[j] : NULL);
          int sc = skip_ch[un->skip], cprev = un->cin - sc;
          void *dd = zeros (c, (int64_t) B * cprev * H * W);
          LP ("concat bwd", oftcu_concat_backward (c->dt, dd, dskips[un->skip], dcat, B, cprev, sc, (int64_t) H * W));
          dx = dd;
        }
    }
  dx = unit_bwd (&run, &mid1, dx, &u->mid_r1, NULL);
  dx = unit_bwd (&run, &mid, dx, &u->mid_r0, &u->mid_attn);
  for (int i = L_ - 1; i >= 0; i--)
    {
      Level *dl = &u->down[i];
      if (dl->has_sample)
        {
          int k = down[i][dl->n - 1].skip + 1;
          k_add (c, dx, dx, dskips[k], (int64_t) B * dl->out_ch * H * W);
          void *dd = zeros (c, (int64_t) B * dl->out_ch * 4 * H * W);
          conv_bwd (c, dd, dx, dl->down.w, B, dl->out_ch, 2 * H, 2 * W, dl->out_ch, 3, 2, 1);
          H *= 2, W *= 2, dx = dd;
        }
      for (int j = dl->n - 1; j >= 0; j--)
        {
          Unit *un = &down[i][j];
          k_add (c, dx, dx, dskips[un->skip], (int64_t) B * un->cout * H * W);
          dx = unit_bwd (&run, un, dx, &dl->res[j], dl->has_attn ? &dl->attn[j] : NULL);
        }
    }

  /* exact Cayley rotations: dR → packed gradients here; then one transfer for the packed gradients, one
   * for the other rotations' dR */
  L (cu_unet_cayley (d, TRUE));   /* frozen ones too: their dR is zero, and the host ignores their result */
  float *host_dR = d->train_host, *host_dpacked = d->train_host + d->train_floats;
  if (cx_ok (c) && d->train_floats &&
      (oftcu_sync () != 0 ||
       (d->train_host_R && oftcu_download (host_dR, d->train_slab + d->train_floats,
                                           d->train_floats * sizeof (float)) != 0) ||
       (d->train_ne && oftcu_download (host_dpacked, dpacked_all, d->train_ne * sizeof (float)) != 0)))
    g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "downloading the rotations' gradients: %s",
                 oftcu_error () ? oftcu_error () : "?");
  size_t off = 0, off_p = 0;
  for (guint i = 0; i < u->trainables->len && cx_ok (c); i++)
    {
      Trainable *t = g_ptr_array_index (u->trainables, i);
      const CuTrain *ct = g_hash_table_lookup (d->train, t);
      size_t bb = (size_t) ct->b * ct->b;
      const float *all = host_dR + off;
      off += bb * ct->nb;
      if (ct->cayley)
        {
          size_t row_ne = (size_t) ct->rows * ct->b * (ct->b - 1) / 2;
          if (t->gR)   /* += as oft_rotation_backward */
            for (size_t e = 0; e < row_ne; e++)
              t->gR[e] += host_dpacked[off_p + e];
          off_p += row_ne;
          continue;
        }
      if (!t->gR)
        continue;
      /* a shared block's gradient summed over the blocks */
      if (t->spec.block_share)
        {
          memset (t->dR, 0, sizeof (float) * bb);
          for (int k = 0; k < ct->nb; k++)
            for (size_t e = 0; e < bb; e++)
              t->dR[e] += all[k * bb + e];
        }
      else
        memcpy (t->dR, all, sizeof (float) * bb * ct->nb);
    }
  oftcu_prof_enable (false);
  if (profile && cx_ok (c))
    {
      char *what = g_strdup_printf ("UNet training step %dx%dx%d%s", B, h, w, checkpoint ? " checkpointed" : "");
      cu_prof_print (what);
      g_free (what);
    }
  gboolean ok = cx_end (c, "the loss and backward", error);
  g_debug ("UNet training step (%s): activations %.1f MiB at most, in %.1f MiB of chunks", checkpoint ?
           "checkpointed" : "not checkpointed", d->acts.peak_used / 1048576.0, d->acts.reserved / 1048576.0);
  cx_reset (c, mark);
  g_ptr_array_unref (run.host);
  return ok;
}
