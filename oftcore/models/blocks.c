/* Every function here that takes scratch from the arena returns without computing when the arena has
 * refused memory in a checked section (oft_arena_begin_checked): the entry point reports it. */
#include "blocks.h"
#include "oft/nn.h"
#include <string.h>

void
oft_conv_apply (OftArena *scratch, float *out, const float *x, const float *w, const float *b,
                int B, int C, int H, int W, int OC, int k, int stride, int pad)
{
  OftConv2dShape s = { .B = B, .C = C, .H = H, .W = W, .OC = OC, .kh = k, .kw = k, .stride = stride, .pad = pad };
  OftArenaMark m = oft_arena_mark (scratch);
  size_t n = oft_conv2d_scratch_floats (&s);
  float *sc = n ? oft_arena_scratch (scratch, n) : NULL;
  if (!oft_arena_failed (scratch))
    oft_conv2d_forward (out, x, w, b, &s, sc);
  oft_arena_reset (scratch, m);
}

void
oft_resnet_load (OftResnet *r, OftWeightLoader *l, const char *p, int cin, int cout, int temb, int groups, float eps)
{
  *r = (OftResnet) { .cin = cin, .cout = cout, .groups = groups, .eps = eps, .temb = temb };
  r->n1w = oft_weights_get (l, OFT_SHAPE (cin), "%s.norm1.weight", p);
  r->n1b = oft_weights_get (l, OFT_SHAPE (cin), "%s.norm1.bias", p);
  r->c1w = oft_weights_get (l, OFT_SHAPE (cout, cin, 3, 3), "%s.conv1.weight", p);
  r->c1b = oft_weights_get (l, OFT_SHAPE (cout), "%s.conv1.bias", p);
  if (temb > 0)
    {
      r->tw = oft_weights_get (l, OFT_SHAPE (cout, temb), "%s.time_emb_proj.weight", p);
      r->tb = oft_weights_get (l, OFT_SHAPE (cout), "%s.time_emb_proj.bias", p);
    }
  r->n2w = oft_weights_get (l, OFT_SHAPE (cout), "%s.norm2.weight", p);
  r->n2b = oft_weights_get (l, OFT_SHAPE (cout), "%s.norm2.bias", p);
  r->c2w = oft_weights_get (l, OFT_SHAPE (cout, cout, 3, 3), "%s.conv2.weight", p);
  r->c2b = oft_weights_get (l, OFT_SHAPE (cout), "%s.conv2.bias", p);
  if (cin != cout)
    {
      r->scw = oft_weights_get (l, OFT_SHAPE (cout, cin, 1, 1), "%s.conv_shortcut.weight", p);
      r->scb = oft_weights_get (l, OFT_SHAPE (cout), "%s.conv_shortcut.bias", p);
    }
}

void
oft_conv_apply_backward_full (OftArena *scratch, float *dx, float *dw, float *db, const float *dout, const float *x,
                              const float *w, int B, int C, int H, int W, int OC, int k, int stride, int pad)
{
  OftConv2dShape s = { .B = B, .C = C, .H = H, .W = W, .OC = OC, .kh = k, .kw = k, .stride = stride, .pad = pad };
  OftArenaMark m = oft_arena_mark (scratch);
  size_t n = oft_conv2d_scratch_floats (&s);
  float *sc = n ? oft_arena_scratch (scratch, n) : NULL;
  if (!oft_arena_failed (scratch))
    oft_conv2d_backward (dx, dw, dw ? db : NULL, dout, dw ? x : NULL, w, &s, sc);
  oft_arena_reset (scratch, m);
}

void
oft_conv_apply_backward (OftArena *scratch, float *dx, const float *dout, const float *w,
                         int B, int C, int H, int W, int OC, int k, int stride, int pad)
{
  oft_conv_apply_backward_full (scratch, dx, NULL, NULL, dout, NULL, w, B, C, H, W, OC, k, stride, pad);
}

void
oft_resnet_forward_save (OftArena *scratch, float *out, const float *x, const float *temb_act,
                         const OftResnet *r, int B, int H, int W, OftResnetSave *save)
{
  int64_t HW = (int64_t) H * W;
  size_t G = (size_t) B * r->groups;
  if (save)
    *save = (OftResnetSave) {
      .h1 = oft_arena_scratch (scratch, (size_t) B * r->cin * HW), .c1 = oft_arena_scratch (scratch, (size_t) B * r->cout * HW),
      .h2 = oft_arena_scratch (scratch, (size_t) B * r->cout * HW),
      .mean1 = oft_arena_scratch (scratch, G), .rstd1 = oft_arena_scratch (scratch, G),
      .mean2 = oft_arena_scratch (scratch, G), .rstd2 = oft_arena_scratch (scratch, G),
    };
  OftArenaMark m = oft_arena_mark (scratch);
  float *a1 = oft_arena_scratch (scratch, (size_t) B * MAX (r->cin, r->cout) * HW);
  float *h1 = save ? save->h1 : oft_arena_scratch (scratch, (size_t) B * r->cin * HW);
  float *c1 = save ? save->c1 : out;
  float *h2 = save ? save->h2 : h1;
  float *mean = save ? save->mean1 : oft_arena_scratch (scratch, G), *rstd = save ? save->rstd1 : oft_arena_scratch (scratch, G);
  float *t = r->tw && temb_act ? oft_arena_scratch (scratch, (size_t) B * r->cout) : NULL;
  if (!save && r->cout > r->cin)
    h2 = oft_arena_scratch (scratch, (size_t) B * r->cout * HW);
  if (oft_arena_failed (scratch))
    goto out;
  oft_groupnorm_forward (h1, mean, rstd, x, r->n1w, r->n1b, B, r->cin, HW, r->groups, r->eps);
  oft_silu_forward (a1, h1, B * r->cin * HW);
  oft_conv_apply (scratch, c1, a1, r->c1w, r->c1b, B, r->cin, H, W, r->cout, 3, 1, 1);
  if (t)
    {
      oft_linear_forward (t, temb_act, r->tw, r->tb, B, r->temb, r->cout);
      for (int b = 0; b < B; b++)
        for (int c = 0; c < r->cout; c++)
          {
            float *o = c1 + ((int64_t) b * r->cout + c) * HW, v = t[b * r->cout + c];
            for (int64_t i = 0; i < HW; i++)
              o[i] += v;
          }
    }
  if (save)
    mean = save->mean2, rstd = save->rstd2;
  oft_groupnorm_forward (h2, mean, rstd, c1, r->n2w, r->n2b, B, r->cout, HW, r->groups, r->eps);
  oft_silu_forward (a1, h2, B * r->cout * HW);
  oft_conv_apply (scratch, out, a1, r->c2w, r->c2b, B, r->cout, H, W, r->cout, 3, 1, 1);
  if (r->scw)
    {
      oft_conv_apply (scratch, a1, x, r->scw, r->scb, B, r->cin, H, W, r->cout, 1, 1, 0);
      oft_add_forward (out, out, a1, B * r->cout * HW);
    }
  else
    oft_add_forward (out, out, x, B * r->cout * HW);
out:
  oft_arena_reset (scratch, m);
}

void
oft_resnet_forward (OftArena *scratch, float *out, const float *x, const float *temb_act,
                    const OftResnet *r, int B, int H, int W)
{
  oft_resnet_forward_save (scratch, out, x, temb_act, r, B, H, W, NULL);
}

void
oft_resnet_backward (OftArena *scratch, float *dx, float *dtemb, const float *dout, const float *x,
                     const float *temb_act, const OftResnet *r, int B, int H, int W, const OftResnetSave *s,
                     const OftParams *g)
{
  int64_t HW = (int64_t) H * W;
  OftArenaMark m = oft_arena_mark (scratch);
  bool full = oft_params_have_grads (g);
  float *da = oft_arena_floats (scratch, (size_t) B * MAX (r->cin, r->cout) * HW);
  float *dh = oft_arena_floats (scratch, (size_t) B * MAX (r->cin, r->cout) * HW);
  /* the convolutions' inputs, recomputed for their weight gradients */
  float *act = full ? oft_arena_scratch (scratch, (size_t) B * MAX (r->cin, r->cout) * HW) : NULL;
  bool time = r->tw && temb_act && (dtemb || full);
  float *dt = time ? oft_arena_floats (scratch, (size_t) B * r->cout) : NULL;
  if (oft_arena_failed (scratch))
    {
      oft_arena_reset (scratch, m);
      return;
    }
#define GR(p) oft_params_grad (g, p)
  /* out = shortcut(x) + conv2(silu(GN2(c1))), c1 = conv1(silu(GN1(x))) + time */
  if (r->scw)
    oft_conv_apply_backward_full (scratch, dx, GR (r->scw), GR (r->scb), dout, x, r->scw, B, r->cin, H, W, r->cout, 1, 1, 0);
  else
    oft_add_forward (dx, dx, dout, B * r->cout * HW);
  if (full)
    oft_silu_forward (act, s->h2, B * r->cout * HW);
  oft_conv_apply_backward_full (scratch, da, GR (r->c2w), GR (r->c2b), dout, act, r->c2w, B, r->cout, H, W, r->cout, 3, 1, 1);
  oft_silu_backward (dh, da, s->h2, B * r->cout * HW);
  memset (da, 0, (size_t) B * r->cout * HW * sizeof (float));
  oft_groupnorm_backward (da, GR (r->n2w), GR (r->n2b), dh, s->c1, r->n2w, s->mean2, s->rstd2, B, r->cout, HW, r->groups);
  if (time)
    {
      /* c1[b, c, :] += t[b, c]: ∂t is the spatial sum of ∂c1 */
      for (int64_t bc = 0; bc < (int64_t) B * r->cout; bc++)
        {
          double sum = 0;
          for (int64_t i = 0; i < HW; i++)
            sum += da[bc * HW + i];
          dt[bc] = (float) sum;
        }
      oft_linear_backward (dtemb, GR (r->tw), GR (r->tb), dt, temb_act, r->tw, B, r->temb, r->cout);
    }
  memset (dh, 0, (size_t) B * MAX (r->cin, r->cout) * HW * sizeof (float));
  if (full)
    oft_silu_forward (act, s->h1, B * r->cin * HW);
  oft_conv_apply_backward_full (scratch, dh, GR (r->c1w), GR (r->c1b), da, act, r->c1w, B, r->cin, H, W, r->cout, 3, 1, 1);
  memset (da, 0, (size_t) B * r->cin * HW * sizeof (float));
  oft_silu_backward (da, dh, s->h1, B * r->cin * HW);
  oft_groupnorm_backward (dx, GR (r->n1w), GR (r->n1b), da, x, r->n1w, s->mean1, s->rstd1, B, r->cin, HW, r->groups);
#undef GR
  oft_arena_reset (scratch, m);
}

void
oft_downsample_load (OftDownsample *d, OftWeightLoader *l, const char *p, int ch, bool asym_pad)
{
  d->ch = ch;
  d->asym_pad = asym_pad;
  d->w = oft_weights_get (l, OFT_SHAPE (ch, ch, 3, 3), "%s.conv.weight", p);
  d->b = oft_weights_get (l, OFT_SHAPE (ch), "%s.conv.bias", p);
}

void
oft_downsample_forward (OftArena *scratch, float *out, const float *x, const OftDownsample *d, int B, int H, int W)
{
  if (!d->asym_pad)
    {
      oft_conv_apply (scratch, out, x, d->w, d->b, B, d->ch, H, W, d->ch, 3, 2, 1);
      return;
    }
  /* diffusers' Downsample2D with padding 0 pads (left 0, right 1, top 0, bottom 1) */
  OftArenaMark m = oft_arena_mark (scratch);
  int PH = H + 1, PW = W + 1;
  float *p = oft_arena_floats (scratch, (size_t) B * d->ch * PH * PW); /* zeroed: the padding */
  for (int64_t bc = 0; p && bc < (int64_t) B * d->ch; bc++)
    for (int y = 0; y < H; y++)
      memcpy (p + (bc * PH + y) * PW, x + (bc * H + y) * W, W * sizeof (float));
  if (p)
    oft_conv_apply (scratch, out, p, d->w, d->b, B, d->ch, PH, PW, d->ch, 3, 2, 0);
  oft_arena_reset (scratch, m);
}

void
oft_downsample_backward (OftArena *scratch, float *dx, const float *dout, const float *x, const OftDownsample *d,
                         int B, int H, int W, const OftParams *g)
{
  float *dw = oft_params_grad (g, d->w), *db = oft_params_grad (g, d->b);
  if (!d->asym_pad)
    {
      oft_conv_apply_backward_full (scratch, dx, dw, db, dout, x, d->w, B, d->ch, H, W, d->ch, 3, 2, 1);
      return;
    }
  /* the forward's padded copy, its gradient, cropped back */
  OftArenaMark m = oft_arena_mark (scratch);
  int PH = H + 1, PW = W + 1;
  int64_t BC = (int64_t) B * d->ch;
  float *p = dw ? oft_arena_floats (scratch, (size_t) BC * PH * PW) : NULL;
  float *dp = oft_arena_floats (scratch, (size_t) BC * PH * PW);
  if (oft_arena_failed (scratch))
    {
      oft_arena_reset (scratch, m);
      return;
    }
  for (int64_t bc = 0; p && bc < BC; bc++)
    for (int y = 0; y < H; y++)
      memcpy (p + (bc * PH + y) * PW, x + (bc * H + y) * W, W * sizeof (float));
  oft_conv_apply_backward_full (scratch, dp, dw, db, dout, p, d->w, B, d->ch, PH, PW, d->ch, 3, 2, 0);
  for (int64_t bc = 0; bc < BC; bc++)
    for (int y = 0; y < H; y++)
      for (int xx = 0; xx < W; xx++)
        dx[(bc * H + y) * W + xx] += dp[(bc * PH + y) * PW + xx];
  oft_arena_reset (scratch, m);
}

void
oft_upsample_load (OftUpsample *u, OftWeightLoader *l, const char *p, int ch)
{
  u->ch = ch;
  u->w = oft_weights_get (l, OFT_SHAPE (ch, ch, 3, 3), "%s.conv.weight", p);
  u->b = oft_weights_get (l, OFT_SHAPE (ch), "%s.conv.bias", p);
}

void
oft_upsample_forward (OftArena *scratch, float *out, const float *x, const OftUpsample *u, int B, int H, int W)
{
  OftArenaMark m = oft_arena_mark (scratch);
  float *up = oft_arena_scratch (scratch, (size_t) B * u->ch * 4 * H * W);
  if (up)
    {
      oft_upsample2x_forward (up, x, (int64_t) B * u->ch, H, W);
      oft_conv_apply (scratch, out, up, u->w, u->b, B, u->ch, 2 * H, 2 * W, u->ch, 3, 1, 1);
    }
  oft_arena_reset (scratch, m);
}

void
oft_upsample_backward (OftArena *scratch, float *dx, const float *dout, const float *x, const OftUpsample *u,
                       int B, int H, int W, const OftParams *g)
{
  OftArenaMark m = oft_arena_mark (scratch);
  float *dw = oft_params_grad (g, u->w), *db = oft_params_grad (g, u->b);
  float *dup = oft_arena_floats (scratch, (size_t) B * u->ch * 4 * H * W);
  float *up = dw ? oft_arena_scratch (scratch, (size_t) B * u->ch * 4 * H * W) : NULL;
  if (oft_arena_failed (scratch))
    {
      oft_arena_reset (scratch, m);
      return;
    }
  if (up)
    oft_upsample2x_forward (up, x, (int64_t) B * u->ch, H, W);
  oft_conv_apply_backward_full (scratch, dup, dw, db, dout, up, u->w, B, u->ch, 2 * H, 2 * W, u->ch, 3, 1, 1);
  oft_upsample2x_backward (dx, dup, (int64_t) B * u->ch, H, W);
  oft_arena_reset (scratch, m);
}

void
oft_spatial_attention_load (OftSpatialAttention *a, OftWeightLoader *l, const char *p, int ch, int groups, float eps)
{
  *a = (OftSpatialAttention) { .ch = ch, .groups = groups, .eps = eps };
  a->nw = oft_weights_get (l, OFT_SHAPE (ch), "%s.group_norm.weight", p);
  a->nb = oft_weights_get (l, OFT_SHAPE (ch), "%s.group_norm.bias", p);
  a->qw = oft_weights_get (l, OFT_SHAPE (ch, ch), "%s.to_q.weight", p);
  a->qb = oft_weights_get (l, OFT_SHAPE (ch), "%s.to_q.bias", p);
  a->kw = oft_weights_get (l, OFT_SHAPE (ch, ch), "%s.to_k.weight", p);
  a->kb = oft_weights_get (l, OFT_SHAPE (ch), "%s.to_k.bias", p);
  a->vw = oft_weights_get (l, OFT_SHAPE (ch, ch), "%s.to_v.weight", p);
  a->vb = oft_weights_get (l, OFT_SHAPE (ch), "%s.to_v.bias", p);
  a->ow = oft_weights_get (l, OFT_SHAPE (ch, ch), "%s.to_out.0.weight", p);
  a->ob = oft_weights_get (l, OFT_SHAPE (ch), "%s.to_out.0.bias", p);
}

void
oft_spatial_attention_forward (OftArena *scratch, float *x, const OftSpatialAttention *a, int B, int H, int W)
{
  int C = a->ch;
  int64_t HW = (int64_t) H * W, N = B * HW;
  OftArenaMark m = oft_arena_mark (scratch);
  float *h = oft_arena_scratch (scratch, N * C), *t = oft_arena_scratch (scratch, N * C);
  float *q = oft_arena_scratch (scratch, N * C), *k = oft_arena_scratch (scratch, N * C), *v = oft_arena_scratch (scratch, N * C);
  float *att = oft_arena_scratch (scratch, (size_t) B * HW * HW);
  float *mean = oft_arena_scratch (scratch, (size_t) B * a->groups), *rstd = oft_arena_scratch (scratch, (size_t) B * a->groups);
  if (oft_arena_failed (scratch))
    {
      oft_arena_reset (scratch, m);
      return;
    }
  oft_groupnorm_forward (h, mean, rstd, x, a->nw, a->nb, B, C, HW, a->groups, a->eps);
  oft_nchw_to_nhwc (t, h, B, C, HW);
  oft_linear_forward (q, t, a->qw, a->qb, N, C, C);
  oft_linear_forward (k, t, a->kw, a->kb, N, C, C);
  oft_linear_forward (v, t, a->vw, a->vb, N, C, C);
  oft_attention_forward (h, att, q, k, v, B, (int) HW, (int) HW, 1, C, false);
  oft_linear_forward (t, h, a->ow, a->ob, N, C, C);
  oft_nhwc_to_nchw (h, t, B, C, HW);
  oft_add_forward (x, x, h, N * C);
  oft_arena_reset (scratch, m);
}

void
oft_spatial_attention_forward_save (OftArena *scratch, float *x, const OftSpatialAttention *a, int B, int H, int W,
                                    OftSpatialAttentionSave *s)
{
  int C = a->ch;
  int64_t HW = (int64_t) H * W, N = B * HW;
  *s = (OftSpatialAttentionSave) {
    .mean = oft_arena_scratch (scratch, (size_t) B * a->groups), .rstd = oft_arena_scratch (scratch, (size_t) B * a->groups),
    .t = oft_arena_scratch (scratch, N * C), .q = oft_arena_scratch (scratch, N * C),
    .k = oft_arena_scratch (scratch, N * C), .v = oft_arena_scratch (scratch, N * C),
    .att = oft_arena_scratch (scratch, (size_t) B * HW * HW), .o = oft_arena_scratch (scratch, N * C),
  };
  OftArenaMark m = oft_arena_mark (scratch);
  float *h = oft_arena_scratch (scratch, N * C), *t = oft_arena_scratch (scratch, N * C);
  if (oft_arena_failed (scratch))
    {
      oft_arena_reset (scratch, m);
      return;
    }
  oft_groupnorm_forward (h, s->mean, s->rstd, x, a->nw, a->nb, B, C, HW, a->groups, a->eps);
  oft_nchw_to_nhwc (s->t, h, B, C, HW);
  oft_linear_forward (s->q, s->t, a->qw, a->qb, N, C, C);
  oft_linear_forward (s->k, s->t, a->kw, a->kb, N, C, C);
  oft_linear_forward (s->v, s->t, a->vw, a->vb, N, C, C);
  oft_attention_forward (s->o, s->att, s->q, s->k, s->v, B, (int) HW, (int) HW, 1, C, false);
  oft_linear_forward (t, s->o, a->ow, a->ob, N, C, C);
  oft_nhwc_to_nchw (h, t, B, C, HW);
  oft_add_forward (x, x, h, N * C);
  oft_arena_reset (scratch, m);
}

void
oft_spatial_attention_backward (OftArena *scratch, float *dx, const float *x_in, const OftSpatialAttention *a, int B,
                                int H, int W, const OftSpatialAttentionSave *s, const OftParams *g)
{
  int C = a->ch;
  int64_t HW = (int64_t) H * W, N = B * HW;
  OftArenaMark m = oft_arena_mark (scratch);
#define GR(p) oft_params_grad (g, p)
  float *dt = oft_arena_scratch (scratch, N * C), *dtt = oft_arena_floats (scratch, N * C);
  float *dq = oft_arena_floats (scratch, N * C), *dk = oft_arena_floats (scratch, N * C);
  float *dv = oft_arena_floats (scratch, N * C), *dout = oft_arena_floats (scratch, N * C);
  float *att_scratch = oft_arena_scratch (scratch, oft_attention_scratch_floats (B, (int) HW, (int) HW, 1, C));
  if (oft_arena_failed (scratch))
    {
      oft_arena_reset (scratch, m);
      return;
    }
  /* out = x + nchw(o_proj(attn(q(t), k(t), v(t)))), t = nhwc(GN(x)) */
  oft_nchw_to_nhwc (dt, dx, B, C, HW);
  oft_linear_backward (dout, GR (a->ow), GR (a->ob), dt, s->o, a->ow, N, C, C);
  oft_attention_backward (dq, dk, dv, dout, s->att, s->q, s->k, s->v, B, (int) HW, (int) HW, 1, C, att_scratch);
  oft_linear_backward (dtt, GR (a->qw), GR (a->qb), dq, s->t, a->qw, N, C, C);
  oft_linear_backward (dtt, GR (a->kw), GR (a->kb), dk, s->t, a->kw, N, C, C);
  oft_linear_backward (dtt, GR (a->vw), GR (a->vb), dv, s->t, a->vw, N, C, C);
  oft_nhwc_to_nchw (dt, dtt, B, C, HW);
  oft_groupnorm_backward (dx, GR (a->nw), GR (a->nb), dt, x_in, a->nw, s->mean, s->rstd, B, C, HW, a->groups);
#undef GR
  oft_arena_reset (scratch, m);
}

void
oft_nchw_to_nhwc (float *out, const float *x, int B, int C, int64_t HW)
{
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++)
      for (int64_t i = 0; i < HW; i++)
        out[((int64_t) b * HW + i) * C + c] = x[((int64_t) b * C + c) * HW + i];
}

void
oft_nhwc_to_nchw (float *out, const float *x, int B, int C, int64_t HW)
{
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++)
      for (int64_t i = 0; i < HW; i++)
        out[((int64_t) b * C + c) * HW + i] = x[((int64_t) b * HW + i) * C + c];
}
