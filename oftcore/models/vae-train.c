/* Full-parameter training of the AutoencoderKL, the first stage of latent diffusion without its GAN
 * and LPIPS parts: loss = mean((decode(μ + σ·ε) − img)²) + β · mean(½(μ² + σ² − 1 − log σ²)).
 * Every layer's input and what its backward needs is kept on the training arena for one step, in a
 * checked section: a step too large for the memory fails with the size (the helpers below return NULL
 * once the arena has refused, and the gradients of that step are incomplete). */
#include "vae-private.h"
#include "oft/nn.h"
#include <math.h>
#include <string.h>

gboolean
oft_vae_attach_full_training (OftVae *v, GError **error)
{
  if (v->dev)
    {
      /* training changes the host weights, which the GPU copy would not see */
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "the VAE runs on the GPU, where training is not "
                   "supported: move it back with oft_vae_set_device (…, OFT_DEVICE_CPU, …) first");
      return FALSE;
    }
  oft_params_alloc_grads (v->params_list);
  return TRUE;
}

OftParams *
oft_vae_params (OftVae *v)
{
  return v->params_list;
}

typedef struct {
  OftVae *v;
  OftArena *a;
  const OftParams *g;
  int B;
} Tape;

/* A resnet application kept for the backward. */
typedef struct {
  const OftResnet *r;
  const float *in;
  OftResnetSave rs;
  int H, W;
} ResStep;

static float *
res_fwd (Tape *t, ResStep *st, const OftResnet *r, const float *in, int H, int W)
{
  *st = (ResStep) { .r = r, .in = in, .H = H, .W = W };
  float *out = oft_arena_scratch (t->a, (size_t) t->B * r->cout * H * W);
  if (out)
    oft_resnet_forward_save (t->a, out, in, NULL, r, t->B, H, W, &st->rs);
  return oft_arena_failed (t->a) ? NULL : out;
}

/* ∂/∂input of the step, a new zeroed buffer, from dout */
static float *
res_bwd (Tape *t, const ResStep *st, const float *dout)
{
  float *dx = dout ? oft_arena_floats (t->a, (size_t) t->B * st->r->cin * st->H * st->W) : NULL;
  if (dx)
    oft_resnet_backward (t->a, dx, NULL, dout, st->in, NULL, st->r, t->B, st->H, st->W, &st->rs, t->g);
  return oft_arena_failed (t->a) ? NULL : dx;
}

typedef struct {
  ResStep r0, r1;
  float *attn_in;
  OftSpatialAttentionSave as;
} MidStep;

static float *
mid_fwd (Tape *t, MidStep *s, const VaeMid *m, const float *x, int H, int W)
{
  float *y = x ? res_fwd (t, &s->r0, &m->r0, x, H, W) : NULL;
  if (y && m->has_attn)
    {
      size_t n = (size_t) t->B * m->r0.cout * H * W;
      s->attn_in = y;
      float *z = oft_arena_scratch (t->a, n);
      if (!z)
        return NULL;
      memcpy (z, y, n * sizeof (float));
      oft_spatial_attention_forward_save (t->a, z, &m->attn, t->B, H, W, &s->as);
      y = z;
    }
  return y ? res_fwd (t, &s->r1, &m->r1, y, H, W) : NULL;
}

static float *
mid_bwd (Tape *t, const MidStep *s, const VaeMid *m, const float *dout)
{
  float *d = res_bwd (t, &s->r1, dout);
  if (d && m->has_attn)
    oft_spatial_attention_backward (t->a, d, s->attn_in, &m->attn, t->B, s->r1.H, s->r1.W, &s->as, t->g);
  return res_bwd (t, &s->r0, d);
}

/* GroupNorm → SiLU → 3×3 conv, kept */
typedef struct {
  const float *in;
  float *hn, *act, *mean, *rstd;
} HeadStep;

static void
head_fwd (Tape *t, HeadStep *s, float *out, const float *x, const float *nw, const float *nb, const float *cw,
          const float *cb, int C, int H, int W, int OC)
{
  OftVae *v = t->v;
  size_t n = (size_t) t->B * C * H * W;
  *s = (HeadStep) { .in = x, .hn = oft_arena_scratch (t->a, n), .act = oft_arena_scratch (t->a, n),
                    .mean = oft_arena_scratch (t->a, (size_t) t->B * v->groups),
                    .rstd = oft_arena_scratch (t->a, (size_t) t->B * v->groups) };
  if (oft_arena_failed (t->a))
    return;
  oft_groupnorm_forward (s->hn, s->mean, s->rstd, x, nw, nb, t->B, C, (int64_t) H * W, v->groups, VAE_EPS);
  oft_silu_forward (s->act, s->hn, (int64_t) n);
  oft_conv_apply (t->a, out, s->act, cw, cb, t->B, C, H, W, OC, 3, 1, 1);
}

static float *
head_bwd (Tape *t, const HeadStep *s, const float *dout, const float *nw, const float *nb, const float *cw,
          const float *cb, int C, int H, int W, int OC)
{
  size_t n = (size_t) t->B * C * H * W;
  float *da = oft_arena_floats (t->a, n), *dh = oft_arena_floats (t->a, n), *dx = oft_arena_floats (t->a, n);
  if (oft_arena_failed (t->a))
    return NULL;
  oft_conv_apply_backward_full (t->a, da, oft_params_grad (t->g, cw), oft_params_grad (t->g, cb), dout, s->act, cw,
                                t->B, C, H, W, OC, 3, 1, 1);
  oft_silu_backward (dh, da, s->hn, (int64_t) n);
  oft_groupnorm_backward (dx, oft_params_grad (t->g, nw), oft_params_grad (t->g, nb), dh, s->in, nw, s->mean, s->rstd,
                          t->B, C, (int64_t) H * W, t->v->groups);
  return oft_arena_failed (t->a) ? NULL : dx;
}

#define MAX_RES 17

gboolean
oft_vae_train_loss (OftVae *v, const float *img, const float *eps, int B, int H, int W, float kl_weight,
                    float *loss, float *rec_loss, float *kl_loss, GError **error)
{
  int f = oft_vae_factor (v), L = v->n_levels, top = v->ch[L - 1], lat = v->latent, lat2 = 2 * lat;
  if (!oft_params_have_grads (v->params_list))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "VAE training: full training is not attached");
      return FALSE;
    }
  if (B < 1 || H < 1 || W < 1 || H % f || W % f || v->layers + 1 > MAX_RES)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "VAE training input %d×%d×%d: sizes must be positive "
                   "multiples of %d", B, H, W, f);
      return FALSE;
    }
  OftArena *a = &v->train_acts;
  OftArenaMark mark = oft_arena_mark (a);
  oft_arena_begin_checked (a);
  gboolean ok = FALSE;
#define CHECK(p) do { if (!(p) || oft_arena_failed (a)) goto out; } while (0)
  Tape t = { .v = v, .a = a, .g = v->params_list, .B = B };
  const OftParams *g = t.g;
#define GR(p) oft_params_grad (g, p)
  int h = H / f, w = W / f;
  int64_t nl = (int64_t) B * lat * h * w;

  /* ---- encoder ---- */
  ResStep enc[MAX_LEVELS][MAX_RES], dec[MAX_LEVELS][MAX_RES];
  float *ds_in[MAX_LEVELS], *us_in[MAX_LEVELS];
  MidStep em, dm;
  HeadStep eh, dh_;
  float *x = oft_arena_scratch (a, (size_t) B * v->ch[0] * H * W);
  CHECK (x);
  oft_conv_apply (a, x, img, v->e_in_w, v->e_in_b, B, v->in_ch, H, W, v->ch[0], 3, 1, 1);
  int hh = H, ww = W;
  for (int i = 0; i < L; i++)
    {
      VaeLevel *e = &v->enc[i];
      for (int j = 0; j < e->n_resnets; j++)
        CHECK (x = res_fwd (&t, &enc[i][j], &e->resnets[j], x, hh, ww));
      if (e->has_sample)
        {
          float *y = oft_arena_scratch (a, (size_t) B * v->ch[i] * (hh / 2) * (ww / 2));
          CHECK (y);
          ds_in[i] = x;
          oft_downsample_forward (a, y, x, &e->down, B, hh, ww);
          hh /= 2, ww /= 2, x = y;
        }
    }
  CHECK (x = mid_fwd (&t, &em, &v->e_mid, x, h, w));
  float *mom0 = oft_arena_scratch (a, (size_t) B * lat2 * h * w), *mom = mom0;
  CHECK (mom0);
  head_fwd (&t, &eh, mom0, x, v->e_nw, v->e_nb, v->e_out_w, v->e_out_b, top, h, w, lat2);
  if (v->quant)
    {
      mom = oft_arena_scratch (a, (size_t) B * lat2 * h * w);
      CHECK (mom);
      oft_conv_apply (a, mom, mom0, v->q_w, v->q_b, B, lat2, h, w, lat2, 1, 1, 0);
    }
  /* reparameterisation and KL */
  int64_t hw = (int64_t) h * w;
  float *z = oft_arena_scratch (a, nl), *sig = oft_arena_scratch (a, nl);
  CHECK (TRUE);
  double kl = 0;
  for (int b = 0; b < B; b++)
    for (int64_t i = 0; i < lat * hw; i++)
      {
        int64_t k = (int64_t) b * lat * hw + i;
        float mu = mom[(int64_t) b * lat2 * hw + i];
        float lv = CLAMP (mom[(int64_t) b * lat2 * hw + lat * hw + i], -30.0f, 20.0f);
        sig[k] = expf (0.5f * lv);
        z[k] = mu + sig[k] * eps[k];
        kl += 0.5 * ((double) mu * mu + (double) sig[k] * sig[k] - 1.0 - lv);
      }
  kl /= (double) nl;

  /* ---- decoder ---- */
  const float *zin = z;
  float *zq = NULL;
  if (v->post_quant)
    {
      zq = oft_arena_scratch (a, nl);
      CHECK (zq);
      oft_conv_apply (a, zq, z, v->pq_w, v->pq_b, B, lat, h, w, lat, 1, 1, 0);
      zin = zq;
    }
  x = oft_arena_scratch (a, (size_t) B * top * hw);
  CHECK (x);
  oft_conv_apply (a, x, zin, v->d_in_w, v->d_in_b, B, lat, h, w, top, 3, 1, 1);
  CHECK (x = mid_fwd (&t, &dm, &v->d_mid, x, h, w));
  hh = h, ww = w;
  for (int i = 0; i < L; i++)
    {
      VaeLevel *d = &v->dec[i];
      for (int j = 0; j < d->n_resnets; j++)
        CHECK (x = res_fwd (&t, &dec[i][j], &d->resnets[j], x, hh, ww));
      if (d->has_sample)
        {
          int c = v->ch[L - 1 - i];
          float *y = oft_arena_scratch (a, (size_t) B * c * 4 * hh * ww);
          CHECK (y);
          us_in[i] = x;
          oft_upsample_forward (a, y, x, &d->up, B, hh, ww);
          hh *= 2, ww *= 2, x = y;
        }
    }
  int64_t npx = (int64_t) B * v->out_ch * H * W;
  float *rec = oft_arena_scratch (a, npx);
  CHECK (rec);
  head_fwd (&t, &dh_, rec, x, v->d_nw, v->d_nb, v->d_out_w, v->d_out_b, v->ch[0], H, W, v->out_ch);
  CHECK (TRUE);
  float mse = oft_mse_forward (rec, img, npx);
  *loss = (float) (mse + kl_weight * kl);
  if (rec_loss)
    *rec_loss = mse;
  if (kl_loss)
    *kl_loss = (float) kl;
  if (!isfinite (*loss))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC, "the VAE loss is %g (NaN or infinite)", *loss);
      goto out;
    }

  /* ---- backward ---- */
  float *drec = oft_arena_floats (a, npx);
  CHECK (drec);
  oft_mse_backward (drec, rec, img, npx, 1.0f);
  float *dx = head_bwd (&t, &dh_, drec, v->d_nw, v->d_nb, v->d_out_w, v->d_out_b, v->ch[0], H, W, v->out_ch);
  CHECK (dx);
  for (int i = L - 1; i >= 0; i--)
    {
      VaeLevel *d = &v->dec[i];
      if (d->has_sample)
        {
          hh /= 2, ww /= 2;
          float *dd = oft_arena_floats (a, (size_t) B * v->ch[L - 1 - i] * hh * ww);
          CHECK (dd);
          oft_upsample_backward (a, dd, dx, us_in[i], &d->up, B, hh, ww, g);
          dx = dd;
        }
      for (int j = d->n_resnets - 1; j >= 0; j--)
        CHECK (dx = res_bwd (&t, &dec[i][j], dx));
    }
  CHECK (dx = mid_bwd (&t, &dm, &v->d_mid, dx));
  float *dzin = oft_arena_floats (a, nl);
  CHECK (dzin);
  oft_conv_apply_backward_full (a, dzin, GR (v->d_in_w), GR (v->d_in_b), dx, zin, v->d_in_w, B, lat, h, w, top, 3, 1, 1);
  float *dz = dzin;
  if (v->post_quant)
    {
      dz = oft_arena_floats (a, nl);
      CHECK (dz);
      oft_conv_apply_backward_full (a, dz, GR (v->pq_w), GR (v->pq_b), dzin, z, v->pq_w, B, lat, h, w, lat, 1, 1, 0);
    }
  float *dmom = oft_arena_floats (a, (size_t) B * lat2 * hw);
  CHECK (dmom);
  double kscale = kl_weight / (double) nl;
  for (int b = 0; b < B; b++)
    for (int64_t i = 0; i < lat * hw; i++)
      {
        int64_t k = (int64_t) b * lat * hw + i, km = (int64_t) b * lat2 * hw + i, kv = km + lat * hw;
        float mu = mom[km], raw = mom[kv];
        dmom[km] = (float) (dz[k] + kscale * mu);
        /* z = μ + exp(lv/2)·ε; KL term ½(exp(lv) − lv); the clamp passes no gradient outside its range */
        if (raw >= -30.0f && raw <= 20.0f)
          dmom[kv] = (float) (dz[k] * eps[k] * 0.5 * sig[k] + kscale * 0.5 * ((double) sig[k] * sig[k] - 1.0));
      }
  float *dmom0 = dmom;
  if (v->quant)
    {
      dmom0 = oft_arena_floats (a, (size_t) B * lat2 * hw);
      CHECK (dmom0);
      oft_conv_apply_backward_full (a, dmom0, GR (v->q_w), GR (v->q_b), dmom, mom0, v->q_w, B, lat2, h, w, lat2, 1, 1, 0);
    }
  CHECK (dx = head_bwd (&t, &eh, dmom0, v->e_nw, v->e_nb, v->e_out_w, v->e_out_b, top, h, w, lat2));
  CHECK (dx = mid_bwd (&t, &em, &v->e_mid, dx));
  hh = h, ww = w;
  for (int i = L - 1; i >= 0; i--)
    {
      VaeLevel *e = &v->enc[i];
      if (e->has_sample)
        {
          float *dd = oft_arena_floats (a, (size_t) B * v->ch[i] * 4 * hh * ww);
          CHECK (dd);
          oft_downsample_backward (a, dd, dx, ds_in[i], &e->down, B, 2 * hh, 2 * ww, g);
          hh *= 2, ww *= 2, dx = dd;
        }
      for (int j = e->n_resnets - 1; j >= 0; j--)
        CHECK (dx = res_bwd (&t, &enc[i][j], dx));
    }
  oft_conv_apply_backward_full (a, NULL, GR (v->e_in_w), GR (v->e_in_b), dx, img, v->e_in_w, B, v->in_ch, H, W,
                                v->ch[0], 3, 1, 1);
  CHECK (TRUE);
  ok = TRUE;
#undef GR
#undef CHECK
out:
  oft_arena_reset (a, mark);
  if (!oft_arena_end_checked (a, error))
    g_prefix_error (error, "VAE training step on %d×%d×%d images: ", B, H, W);
  return ok;
}
