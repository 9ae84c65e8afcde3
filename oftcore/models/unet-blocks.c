/* The UNet's transformer parts, forward (optionally keeping activations) and backward. The backward
 * produces input gradients and the trained rotations' dR; with full training (gradients in the
 * OftParams passed as g) every weight's gradient too, and frozen weights get none otherwise. */
#include "unet-private.h"
#include "oft/nn.h"
#include <string.h>

void
oft_unet_lin_forward (OftArena *a, float *out, const float *x, const Lin *lin, int64_t N)
{
  guint n_rot = lin->rots ? lin->rots->len : 0;
  const Trainable *t = lin->train;
  if (n_rot == 0 && !t)
    {
      oft_linear_forward (out, x, lin->w, lin->b, N, lin->in, lin->out);
      return;
    }
  OftArenaMark m = oft_arena_mark (a);
  float *t0 = oft_arena_scratch (a, (size_t) N * lin->in), *t1 = oft_arena_scratch (a, (size_t) N * lin->in);
  const float *src = x;
  for (guint i = 0; i <= n_rot; i++)
    {
      float *dst = src == t0 ? t1 : t0;
      if (i < n_rot)
        {
          const LinRot *r = g_ptr_array_index (lin->rots, i);
          oft_rotate_input_forward (dst, src, r->R, N, &r->spec);
        }
      else if (t && t->kind == OFT_ADAPTER_BOFT)
        oft_boft_rotate_input_forward (dst, src, t->R, N, lin->in);
      else if (t)
        oft_rotate_input_forward (dst, src, t->R, N, &t->spec);
      else
        break;
      src = dst;
    }
  if (t && t->s)
    {
      /* y = s ⊙ (xr·Wᵀ) + b: the bias is not scaled (PEFT's BOFT) */
      oft_linear_forward (out, src, lin->w, NULL, N, lin->in, lin->out);
      oft_scale_output_forward (out, out, t->s, N, lin->out);
      if (lin->b)
        for (int64_t n = 0; n < N; n++)
          for (int o = 0; o < lin->out; o++)
            out[n * lin->out + o] += lin->b[o];
    }
  else
    oft_linear_forward (out, src, lin->w, lin->b, N, lin->in, lin->out);
  oft_arena_reset (a, m);
}

void
oft_unet_lin_backward (OftArena *a, float *dx, const float *dy, const float *x, const Lin *lin, int64_t N,
                       const OftParams *g)
{
  /* training attaches only to Linears without inference rotations (oft_unet_attach_trainable checks),
   * so x is the trained rotation's input */
  Trainable *t = lin->train;
  if (!t)
    {
      /* full training refuses Linears that rotate on the fly, so x is the Linear's own input here */
      float *dw = oft_params_grad (g, lin->w);
      if (dx || dw)
        oft_linear_backward (dx, dw, dw ? oft_params_grad (g, lin->b) : NULL, dy, x, lin->w, N, lin->in, lin->out);
      return;
    }
  OftArenaMark m = oft_arena_mark (a);
  bool boft = t->kind == OFT_ADAPTER_BOFT;
  float *dR = t->gR ? t->dR : NULL;
  if (t->s)
    {
      /* dy ⊙ s flows into the Linear; ∂/∂s needs the unscaled output again (recomputed, not kept) */
      float *dys = oft_arena_floats (a, (size_t) N * lin->out);
      if (t->gs)
        {
          float *xr = oft_arena_scratch (a, (size_t) N * lin->in), *yp = oft_arena_scratch (a, (size_t) N * lin->out);
          if (boft)
            oft_boft_rotate_input_forward (xr, x, t->R, N, lin->in);
          else
            oft_rotate_input_forward (xr, x, t->R, N, &t->spec);
          oft_linear_forward (yp, xr, lin->w, NULL, N, lin->in, lin->out);
          oft_scale_output_backward (dys, t->gs, dy, yp, t->s, N, lin->out);
        }
      else
        oft_scale_output_backward (dys, NULL, dy, NULL, t->s, N, lin->out);
      dy = dys;
    }
  if (dx || dR)
    {
      float *dxr = oft_arena_floats (a, (size_t) N * lin->in);
      oft_linear_backward (dxr, NULL, NULL, dy, x, lin->w, N, lin->in, lin->out);
      if (boft)
        oft_boft_rotate_input_backward (dx, dR, dxr, x, t->R, N, lin->in);
      else
        oft_rotate_input_backward (dx, dR, dxr, x, t->R, N, &t->spec);
    }
  oft_arena_reset (a, m);
}

/* A buffer that outlives the forward when saving, else scratch. */
static float *
keep (OftArena *a, bool save, size_t n)
{
  return save ? oft_arena_scratch (a, n) : NULL;
}

void
oft_unet_tblock_forward (OftArena *a, float *x, const float *context, const TBlock *b, int B, int64_t HW, int T,
                         TBlockSave *s)
{
  int D = b->dim, H = b->heads, F = b->ff;
  int64_t N = B * HW, NC = (int64_t) B * T;
  TBlockSave tmp;
  bool save = s != NULL;
  if (save)
    {
      /* saved activations first, so the scratch below can be rewound without touching them */
      *s = (TBlockSave) {
        .t0 = keep (a, save, N * D), .t1 = keep (a, save, N * D), .t2 = keep (a, save, N * D),
        .h1 = keep (a, save, N * D), .h2 = keep (a, save, N * D), .h3 = keep (a, save, N * D),
        .m1 = keep (a, save, N), .r1 = keep (a, save, N), .m2 = keep (a, save, N), .r2 = keep (a, save, N),
        .m3 = keep (a, save, N), .r3 = keep (a, save, N),
        .q1 = keep (a, save, N * D), .k1 = keep (a, save, N * D), .v1 = keep (a, save, N * D),
        .att1 = keep (a, save, (size_t) B * H * HW * HW), .o1 = keep (a, save, N * D),
        .q2 = keep (a, save, N * D), .k2 = keep (a, save, NC * D), .v2 = keep (a, save, NC * D),
        .att2 = keep (a, save, (size_t) B * H * HW * T), .o2 = keep (a, save, N * D),
        .f = keep (a, save, N * 2 * F), .g = keep (a, save, N * F),
      };
    }
  OftArenaMark m = oft_arena_mark (a);
  if (!save)
    {
      /* inference: one set of buffers reused by the three sub-blocks */
      float *h = oft_arena_scratch (a, N * D), *q = oft_arena_scratch (a, N * D), *o = oft_arena_scratch (a, N * D);
      float *k = oft_arena_scratch (a, MAX (N, NC) * D), *v = oft_arena_scratch (a, MAX (N, NC) * D);
      float *mean = oft_arena_scratch (a, N), *rstd = oft_arena_scratch (a, N);
      float *att = oft_arena_scratch (a, (size_t) B * H * HW * MAX (HW, T));
      tmp = (TBlockSave) { .h1 = h, .h2 = h, .h3 = h, .m1 = mean, .r1 = rstd, .m2 = mean, .r2 = rstd, .m3 = mean,
                           .r3 = rstd, .q1 = q, .k1 = k, .v1 = v, .att1 = att, .o1 = o, .q2 = q, .k2 = k, .v2 = v,
                           .att2 = att, .o2 = o, .f = oft_arena_scratch (a, N * 2 * F), .g = oft_arena_scratch (a, N * F) };
      s = &tmp;
    }
  float *y = oft_arena_scratch (a, N * D);

  if (save)
    memcpy (s->t0, x, N * D * sizeof (float));
  oft_layernorm_forward (s->h1, s->m1, s->r1, x, b->n1w, b->n1b, N, D, 1e-5f);
  oft_unet_lin_forward (a, s->q1, s->h1, &b->q1, N);
  oft_unet_lin_forward (a, s->k1, s->h1, &b->k1, N);
  oft_unet_lin_forward (a, s->v1, s->h1, &b->v1, N);
  oft_attention_forward (s->o1, s->att1, s->q1, s->k1, s->v1, B, (int) HW, (int) HW, H, D / H, false);
  oft_unet_lin_forward (a, y, s->o1, &b->o1, N);
  oft_add_forward (x, x, y, N * D);

  if (save)
    memcpy (s->t1, x, N * D * sizeof (float));
  oft_layernorm_forward (s->h2, s->m2, s->r2, x, b->n2w, b->n2b, N, D, 1e-5f);
  oft_unet_lin_forward (a, s->q2, s->h2, &b->q2, N);
  oft_unet_lin_forward (a, s->k2, context, &b->k2, NC);
  oft_unet_lin_forward (a, s->v2, context, &b->v2, NC);
  oft_attention_forward (s->o2, s->att2, s->q2, s->k2, s->v2, B, (int) HW, T, H, D / H, false);
  oft_unet_lin_forward (a, y, s->o2, &b->o2, N);
  oft_add_forward (x, x, y, N * D);

  if (save)
    memcpy (s->t2, x, N * D * sizeof (float));
  oft_layernorm_forward (s->h3, s->m3, s->r3, x, b->n3w, b->n3b, N, D, 1e-5f);
  oft_unet_lin_forward (a, s->f, s->h3, &b->ff1, N);
  oft_geglu_forward (s->g, s->f, N, F);
  oft_unet_lin_forward (a, y, s->g, &b->ff2, N);
  oft_add_forward (x, x, y, N * D);
  oft_arena_reset (a, m);
}

void
oft_unet_tblock_backward (OftArena *a, float *dx, float *dcontext, const float *context, const TBlock *b, int B,
                          int64_t HW, int T, const TBlockSave *s, const OftParams *g)
{
  int D = b->dim, H = b->heads, F = b->ff;
  int64_t N = B * HW, NC = (int64_t) B * T;
  OftArenaMark m = oft_arena_mark (a);
  float *dh = oft_arena_floats (a, N * D), *dy = oft_arena_floats (a, N * D);
  float *dq = oft_arena_floats (a, N * D), *dk = oft_arena_floats (a, MAX (N, NC) * D);
  float *dv = oft_arena_floats (a, MAX (N, NC) * D);
  float *scratch = oft_arena_scratch (a, oft_attention_scratch_floats (B, (int) HW, (int) MAX (HW, T), H, D / H));
#define GR(p) oft_params_grad (g, p)

  /* feed-forward: x3 = t2 + ff2(geglu(ff1(LN3(t2)))); the residual passes dx through unchanged */
  float *dg = oft_arena_floats (a, N * F), *df = oft_arena_floats (a, N * 2 * F);
  oft_unet_lin_backward (a, dg, dx, s->g, &b->ff2, N, g);
  oft_geglu_backward (df, dg, s->f, N, F);
  oft_unet_lin_backward (a, dh, df, s->h3, &b->ff1, N, g);
  oft_layernorm_backward (dx, GR (b->n3w), GR (b->n3b), dh, s->t2, b->n3w, s->m3, s->r3, N, D);

  /* cross-attention: x2 = t1 + o2(attn(q2(LN2(t1)), k2(ctx), v2(ctx))); dcontext may be NULL */
  memset (dy, 0, N * D * sizeof (float));
  memset (dh, 0, N * D * sizeof (float));
  oft_unet_lin_backward (a, dy, dx, s->o2, &b->o2, N, g);
  oft_attention_backward (dq, dk, dv, dy, s->att2, s->q2, s->k2, s->v2, B, (int) HW, T, H, D / H, scratch);
  oft_unet_lin_backward (a, dh, dq, s->h2, &b->q2, N, g);
  oft_unet_lin_backward (a, dcontext, dk, context, &b->k2, NC, g);
  oft_unet_lin_backward (a, dcontext, dv, context, &b->v2, NC, g);
  oft_layernorm_backward (dx, GR (b->n2w), GR (b->n2b), dh, s->t1, b->n2w, s->m2, s->r2, N, D);

  /* self-attention: x1 = t0 + o1(attn(q1(h), k1(h), v1(h))), h = LN1(t0) */
  memset (dy, 0, N * D * sizeof (float));
  memset (dh, 0, N * D * sizeof (float));
  memset (dq, 0, N * D * sizeof (float));
  memset (dk, 0, N * D * sizeof (float));
  memset (dv, 0, N * D * sizeof (float));
  oft_unet_lin_backward (a, dy, dx, s->o1, &b->o1, N, g);
  oft_attention_backward (dq, dk, dv, dy, s->att1, s->q1, s->k1, s->v1, B, (int) HW, (int) HW, H, D / H, scratch);
  oft_unet_lin_backward (a, dh, dq, s->h1, &b->q1, N, g);
  oft_unet_lin_backward (a, dh, dk, s->h1, &b->k1, N, g);
  oft_unet_lin_backward (a, dh, dv, s->h1, &b->v1, N, g);
  oft_layernorm_backward (dx, GR (b->n1w), GR (b->n1b), dh, s->t0, b->n1w, s->m1, s->r1, N, D);
#undef GR
  oft_arena_reset (a, m);
}

void
oft_unet_transformer_forward (OftArena *a, float *x, const float *context, const Transformer *t, int B, int Hh,
                              int Ww, int T, TransformerSave *s)
{
  int C = t->ch, D = t->inner;
  int64_t HW = (int64_t) Hh * Ww, N = B * HW;
  if (s)
    {
      s->x_in = oft_arena_scratch (a, N * C);
      s->mean = oft_arena_scratch (a, (size_t) B * t->groups);
      s->rstd = oft_arena_scratch (a, (size_t) B * t->groups);
      s->blocks = (TBlockSave *) oft_arena_alloc (a, sizeof (TBlockSave) * t->n_blocks);
      memcpy (s->x_in, x, N * C * sizeof (float));
    }
  /* the blocks' saved activations must precede this call's scratch */
  float *tok = s ? oft_arena_scratch (a, N * D) : NULL;
  OftArenaMark m0 = oft_arena_mark (a);
  float *mean = s ? s->mean : oft_arena_scratch (a, (size_t) B * t->groups);
  float *rstd = s ? s->rstd : oft_arena_scratch (a, (size_t) B * t->groups);
  float *h = oft_arena_scratch (a, N * MAX (C, D)), *p = oft_arena_scratch (a, N * MAX (C, D));
  if (!tok)
    tok = oft_arena_scratch (a, N * D);
  /* Transformer2DModel's GroupNorm uses eps 1e-6 whatever the UNet's norm_eps */
  oft_groupnorm_forward (h, mean, rstd, x, t->nw, t->nb, B, C, HW, t->groups, 1e-6f);
  if (t->linear_proj)
    {
      oft_nchw_to_nhwc (p, h, B, C, HW);
      oft_linear_forward (tok, p, t->piw, t->pib, N, C, D);
    }
  else
    {
      oft_conv_apply (a, p, h, t->piw, t->pib, B, C, Hh, Ww, D, 1, 1, 0);
      oft_nchw_to_nhwc (tok, p, B, D, HW);
    }
  if (s)
    {
      /* rewind the scratch so the blocks' saved activations sit right after ours */
      oft_arena_reset (a, m0);
      for (int i = 0; i < t->n_blocks; i++)
        oft_unet_tblock_forward (a, tok, context, &t->blocks[i], B, HW, T, &s->blocks[i]);
      s->tok = tok;
      m0 = oft_arena_mark (a);
      h = oft_arena_scratch (a, N * MAX (C, D));
      p = oft_arena_scratch (a, N * MAX (C, D));
    }
  else
    for (int i = 0; i < t->n_blocks; i++)
      oft_unet_tblock_forward (a, tok, context, &t->blocks[i], B, HW, T, NULL);
  if (t->linear_proj)
    {
      oft_linear_forward (p, tok, t->pow_, t->pob, N, D, C);
      oft_nhwc_to_nchw (h, p, B, C, HW);
    }
  else
    {
      oft_nhwc_to_nchw (p, tok, B, D, HW);
      oft_conv_apply (a, h, p, t->pow_, t->pob, B, D, Hh, Ww, C, 1, 1, 0);
    }
  oft_add_forward (x, x, h, N * C);
  oft_arena_reset (a, m0);
}

void
oft_unet_transformer_backward (OftArena *a, float *dx, float *dcontext, const float *context, const Transformer *t,
                               int B, int Hh, int Ww, int T, const TransformerSave *s, const OftParams *g)
{
  int C = t->ch, D = t->inner;
  int64_t HW = (int64_t) Hh * Ww, N = B * HW;
  OftArenaMark m = oft_arena_mark (a);
  float *dtok = oft_arena_floats (a, N * D), *tmp = oft_arena_floats (a, N * MAX (C, D));
  float *dh = oft_arena_floats (a, N * C);
  float *dpow = oft_params_grad (g, t->pow_), *dpiw = oft_params_grad (g, t->piw);
  /* out = x + proj_out(tokens): dx keeps its value for the residual. A 1×1 conv's [out, in, 1, 1]
   * weight is a Linear's [out, in], so both projection kinds run backward as Linears over tokens. */
  oft_nchw_to_nhwc (tmp, dx, B, C, HW);
  oft_linear_backward (dtok, dpow, oft_params_grad (g, t->pob), tmp, s->tok, t->pow_, N, D, C);
  for (int i = t->n_blocks - 1; i >= 0; i--)
    oft_unet_tblock_backward (a, dtok, dcontext, context, &t->blocks[i], B, HW, T, &s->blocks[i], g);
  /* tokens = proj_in(GN(x)); proj_in's input is recomputed from the kept statistics */
  float *hin = NULL;
  if (dpiw)
    {
      float *h = oft_arena_scratch (a, N * C), *mean = oft_arena_scratch (a, (size_t) B * t->groups);
      float *rstd = oft_arena_scratch (a, (size_t) B * t->groups);
      oft_groupnorm_forward (h, mean, rstd, s->x_in, t->nw, t->nb, B, C, HW, t->groups, 1e-6f);
      hin = oft_arena_scratch (a, N * C);
      oft_nchw_to_nhwc (hin, h, B, C, HW);
    }
  memset (tmp, 0, N * MAX (C, D) * sizeof (float));
  oft_linear_backward (tmp, dpiw, oft_params_grad (g, t->pib), dtok, hin, t->piw, N, C, D);
  oft_nhwc_to_nchw (dh, tmp, B, C, HW);
  oft_groupnorm_backward (dx, oft_params_grad (g, t->nw), oft_params_grad (g, t->nb), dh, s->x_in, t->nw, s->mean,
                          s->rstd, B, C, HW, t->groups);
  oft_arena_reset (a, m);
}
