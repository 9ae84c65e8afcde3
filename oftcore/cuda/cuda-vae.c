/* AutoencoderKL decoder on the GPU: models/vae.c's oft_vae_decode step for step (post_quant_conv, conv_in,
 * mid block with its attention, UpDecoderBlock2D×n, norm/SiLU/conv_out). Like the CPU decode it takes
 * unscaled latents: the caller divides by scaling_factor first (the pipeline does).
 *
 * The mid-block attention has one head as wide as the channels (512 for SD), so it runs as two batched
 * GEMMs around a softmax rather than the fused kernel, and in fp32 whatever the storage type: bf16
 * logits of a 512-wide dot product would round by up to ~0.1, too coarse for the softmax. */
#include "cuda-module.h"
#include "../models/vae-private.h"
#include "oft/error.h"
#include <math.h>

typedef struct {
  OftVae *v;
  CuWeights w;
  CuArena acts;
} CuVae;

void
cu_vae_release (gpointer dev)
{
  CuVae *d = dev;
  if (!d)
    return;
  cu_weights_release (&d->w);
  cu_arena_release (&d->acts);
  g_free (d);
}

gpointer
cu_vae_upload (OftVae *v, int dtype, GError **error)
{
  if (dtype != OFTCU_F32 && dtype != OFTCU_BF16)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "VAE: GPU storage type %d is not fp32 or bf16", dtype);
      return NULL;
    }
  CuVae *d = g_new0 (CuVae, 1);
  d->v = v;
  cu_arena_init (&d->acts, "VAE activations", 0);
  if (!cu_weights_upload (&d->w, &v->params, (OftCuDtype) dtype, "VAE weights", error))
    {
      cu_vae_release (d);
      return NULL;
    }
  return d;
}

/* fp32 copy of n elements of the context's storage type (the same buffer when that is fp32) */
static float *
as_f32 (Cx *c, const void *x, int64_t n)
{
  if (c->dt == OFTCU_F32)
    return (float *) x;
  float *f = cx_f32 (c, n);
  k_convert (c, f, OFTCU_F32, x, c->dt, n);
  return f;
}

/* in place on x[B, C, H, W] (oft_spatial_attention_forward) */
static void
spatial_attention (Cx *c, void *x, const OftSpatialAttention *a, int B, int H, int W)
{
  int C = a->ch;
  int64_t HW = (int64_t) H * W, N = B * HW;
  if (HW > G_MAXINT)
    {
      if (cx_ok (c))
        g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "VAE attention over %" G_GINT64_FORMAT " positions "
                     "is too large", HW);
      return;
    }
  int n = (int) HW;
  CuMark m = cx_mark (c);
  void *h = cx_take (c, N * C), *t = cx_take (c, N * C);
  void *q = cx_take (c, N * C), *k = cx_take (c, N * C), *v = cx_take (c, N * C);
  float *mean = cx_f32 (c, (int64_t) B * a->groups), *rstd = cx_f32 (c, (int64_t) B * a->groups);
  k_groupnorm (c, h, mean, rstd, x, cx_norm (c, a->nw, C), cx_norm (c, a->nb, C), B, C, HW, a->groups, a->eps);
  k_transpose (c, t, h, B, C, HW);
  k_linear (c, q, t, cx_w (c, a->qw), cx_w (c, a->qb), N, C, C);
  k_linear (c, k, t, cx_w (c, a->kw), cx_w (c, a->kb), N, C, C);
  k_linear (c, v, t, cx_w (c, a->vw), cx_w (c, a->vb), N, C, C);
  /* softmax(q·kᵀ/√C)·v per image, in fp32 */
  CuMark m2 = cx_mark (c);
  float *qf = as_f32 (c, q, N * C), *kf = as_f32 (c, k, N * C), *vf = as_f32 (c, v, N * C);
  float *s = cx_f32 (c, (int64_t) B * HW * HW), *p = cx_f32 (c, (int64_t) B * HW * HW);
  float *of = c->dt == OFTCU_F32 ? h : cx_f32 (c, N * C);
  k_gemm (c, OFTCU_F32, false, true, n, n, C, 1.0f / sqrtf ((float) C), qf, C, HW * C, kf, C, HW * C, 0.0f, s, n,
          HW * HW, B);
  /* fp32 softmax whatever the storage type: the launcher's storage type is the context's */
  if (cx_ok (c))
    oftcu_softmax_forward (OFTCU_F32, p, s, B * HW, n);
  k_gemm (c, OFTCU_F32, false, false, n, C, n, 1.0f, p, n, HW * HW, vf, C, HW * C, 0.0f, of, C, HW * C, B);
  if (c->dt != OFTCU_F32)
    k_convert (c, h, c->dt, of, OFTCU_F32, N * C);
  cx_reset (c, m2);
  k_linear (c, t, h, cx_w (c, a->ow), cx_w (c, a->ob), N, C, C);
  k_transpose (c, h, t, B, HW, C);
  k_add (c, x, x, h, N * C);
  cx_reset (c, m);
}

static void
mid (Cx *c, const VaeMid *mb, void *x, void *tmp, int B, int H, int W)
{
  cu_resnet (c, tmp, x, NULL, &mb->r0, B, H, W);
  if (mb->has_attn)
    spatial_attention (c, tmp, &mb->attn, B, H, W);
  cu_resnet (c, x, tmp, NULL, &mb->r1, B, H, W);
}

gboolean
cu_vae_decode (gpointer dev, const float *z, int B, int h, int w, float *img, GError **error)
{
  CuVae *d = dev;
  OftVae *v = d->v;
  int f = oft_vae_factor (v), L = v->n_levels, maxc = v->ch[L - 1];
  Cx cx;
  Cx *c = &cx;
  /* OFT_CUDA_PROFILE=1: GPU time per kind of kernel, printed as "profile:" lines for the benches */
  gboolean profile = g_strcmp0 (g_getenv ("OFT_CUDA_PROFILE"), "1") == 0;
  int h0 = h, w0 = w;
  cx_begin (c, &d->acts, &d->w);
  oftcu_prof_enable (profile);
  CuMark mark = cx_mark (c);
  int cmax = 0;
  for (int i = 0; i < L; i++)
    cmax = MAX (cmax, v->ch[i]);
  int64_t big = (int64_t) B * cmax * ((int64_t) h * f) * ((int64_t) w * f);
  void *x = cx_take (c, big), *y = cx_take (c, big);
  const void *zin = cx_upload (c, z, (int64_t) B * v->latent * h * w);
  if (v->post_quant)
    {
      k_conv (c, y, zin, cx_w (c, v->pq_w), cx_w (c, v->pq_b), B, v->latent, h, w, v->latent, 1, 1, 0);
      zin = y;
    }
  k_conv (c, x, zin, cx_w (c, v->d_in_w), cx_w (c, v->d_in_b), B, v->latent, h, w, maxc, 3, 1, 1);
  mid (c, &v->d_mid, x, y, B, h, w);
  for (int i = 0; i < L; i++)
    {
      VaeLevel *dl = &v->dec[i];
      for (int j = 0; j < dl->n_resnets; j++)
        {
          cu_resnet (c, y, x, NULL, &dl->resnets[j], B, h, w);
          void *t = x; x = y; y = t;
        }
      if (dl->has_sample)
        {
          cu_upsample (c, y, x, &dl->up, B, h, w);
          h *= 2, w *= 2;
          void *t = x; x = y; y = t;
        }
    }
  cu_norm_silu_conv (c, y, x, v->d_nw, v->d_nb, v->groups, VAE_EPS, v->d_out_w, v->d_out_b, B, v->ch[0], h, w,
                     v->out_ch);
  oftcu_prof_enable (false);
  cx_download (c, img, y, (int64_t) B * v->out_ch * h * w);
  if (profile && cx_ok (c))
    {
      char *what = g_strdup_printf ("VAE decode %dx%d", h0 * f, w0 * f);
      cu_prof_print (what);
      g_free (what);
    }
  gboolean ok = cx_end (c, "VAE decode", error);
  cx_reset (c, mark);
  return ok;
}
