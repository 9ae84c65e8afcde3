/* The txt2img job: prompt → tokens → text embeddings (uncond, cond) → sampler loop with CFG →
 * VAE decode. */
#include "oft/pipeline.h"
#include "oft/rng.h"
#include "oft/error.h"
#include "pipeline-private.h"
#include <math.h>
#include <string.h>

void
oft_generate_params_init (OftGenerateParams *p)
{
  *p = (OftGenerateParams) { .prompt = "", .negative = "", .steps = 30, .guidance = 7.5f,
                             .sampler = OFT_SAMPLER_DDIM, .seed = 0, .width = 512, .height = 512,
                             .control_scale = 1.0f };
}

OftPipeline *
oft_pipeline_load (const char *dir, GError **error)
{
  OftPipeline *p = g_new0 (OftPipeline, 1);
  p->dir = g_strdup (dir);
  char *index = g_build_filename (dir, "model_index.json", NULL);
  char *tok = g_build_filename (dir, "tokenizer", NULL), *text = g_build_filename (dir, "text_encoder", NULL);
  char *unet = g_build_filename (dir, "unet", NULL), *vae = g_build_filename (dir, "vae", NULL);
  char *sched = g_build_filename (dir, "scheduler", "scheduler_config.json", NULL);
  gboolean ok = FALSE;
  if (!g_file_test (index, G_FILE_TEST_IS_REGULAR))
    g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND,
                 "%s: no model_index.json: not a diffusers pipeline folder", dir);
  else
    ok = (p->tokenizer = oft_tokenizer_load_dir (tok, error)) && (p->text = oft_clip_text_load (text, error)) &&
         (p->unet = oft_unet_load (unet, error)) && (p->vae = oft_vae_load (vae, error)) &&
         oft_noise_schedule_load (&p->schedule, sched, error);
  ok = ok && oft_pipeline_check (p, dir, error);
  g_free (index);
  g_free (tok);
  g_free (text);
  g_free (unet);
  g_free (vae);
  g_free (sched);
  if (!ok)
    {
      oft_pipeline_free (p);
      return NULL;
    }
  return p;
}

gboolean
oft_pipeline_check (OftPipeline *p, const char *what, GError **error)
{
  if (oft_clip_text_config (p->text)->hidden != oft_unet_context_dim (p->unet))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE,
                   "%s: the text encoder's hidden size %d does not match the UNet's cross_attention_dim %d",
                   what, oft_clip_text_config (p->text)->hidden, oft_unet_context_dim (p->unet));
      return FALSE;
    }
  if (oft_vae_latent_channels (p->vae) != oft_unet_in_channels (p->unet))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "%s: the VAE's %d latent channels do not match the "
                   "UNet's %d input channels", what, oft_vae_latent_channels (p->vae), oft_unet_in_channels (p->unet));
      return FALSE;
    }
  return TRUE;
}

void
oft_pipeline_free (OftPipeline *p)
{
  if (!p)
    return;
  oft_tokenizer_free (p->tokenizer);
  oft_clip_text_free (p->text);
  oft_unet_free (p->unet);
  oft_vae_free (p->vae);
  g_free (p->dir);
  g_free (p);
}

gboolean
oft_pipeline_generate (OftPipeline *p, const OftGenerateParams *g, float *rgb, float *latents_out,
                       OftProgressFunc progress, gpointer progress_data, GError **error)
{
  int f = oft_vae_factor (p->vae), mult = f * oft_unet_size_multiple (p->unet);
  if (g->width < mult || g->height < mult || g->width % mult || g->height % mult || g->width > 4096 || g->height > 4096)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                   "image size %d×%d: width and height must be multiples of %d, at most 4096", g->width, g->height, mult);
      return FALSE;
    }
  if (!isfinite (g->guidance) || !isfinite (g->eta) || g->eta < 0)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "guidance %g and eta %g must be finite, eta ≥ 0",
                   (double) g->guidance, (double) g->eta);
      return FALSE;
    }
  if ((g->prompt && !g_utf8_validate (g->prompt, -1, NULL)) || (g->negative && !g_utf8_validate (g->negative, -1, NULL)))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "the prompt or negative prompt is not valid UTF-8 text");
      return FALSE;
    }
  const OftClipConfig *cc = oft_clip_text_config (p->text);
  int T = cc->max_positions, D = cc->hidden, C = oft_unet_in_channels (p->unet);
  int h = g->height / f, w = g->width / f;
  int64_t n = (int64_t) C * h * w;
  bool cfg = g->guidance > 1.0f;
  int B = cfg ? 2 : 1;
  OftSampler *s = oft_sampler_new (g->sampler, &p->schedule, g->steps, g->eta, error);
  if (!s)
    return FALSE;

  /* text embeddings: batch [uncond, cond] like diffusers */
  int32_t *ids = g_new (int32_t, 2 * T);
  oft_tokenizer_encode_padded (p->tokenizer, g->negative ? g->negative : "", ids, T);
  oft_tokenizer_encode_padded (p->tokenizer, g->prompt ? g->prompt : "", ids + T, T);
  float *ctx = g_new (float, (size_t) 2 * T * D);
  gboolean ok = oft_clip_text_forward (p->text, cfg ? ids : ids + T, B, g->clip_skip, ctx, NULL, error);

  float *lat = g_new (float, n), *xin = g_new (float, B * n), *eps = g_new (float, B * n), *noise = g_new (float, n);
  OftRng rng;
  oft_rng_seed (&rng, g->seed);
  if (g->init_noise)
    memcpy (lat, g->init_noise, n * sizeof (float));
  else
    oft_rng_normal (&rng, lat, n);
  float *control = NULL;
  if (ok && g->control && g->condition)
    {
      /* the condition is the same at every step: encode it once, for both CFG branches */
      int ch0 = oft_unet_control_channels (p->unet);
      if (g->control->out_ch != ch0 || g->control->in_ch != 3)
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "the condition encoder maps %d to %d channels; this "
                       "UNet needs 3 to %d", g->control->in_ch, g->control->out_ch, ch0);
          ok = FALSE;
        }
      else
        {
          int64_t nr = (int64_t) ch0 * h * w;
          control = g_new (float, B * nr);
          ok = oft_cond_encoder_forward (g->control, control, g->condition, 1, g->height, g->width, NULL, error);
          for (int64_t j = 0; ok && j < nr; j++)
            control[j] *= g->control_scale;
          if (ok && B == 2)
            memcpy (control + nr, control, nr * sizeof (float));
          if (ok)
            oft_unet_set_control (p->unet, control, NULL);
        }
    }
  float sigma0 = oft_sampler_init_noise_sigma (s);
  for (int64_t i = 0; i < n; i++)
    lat[i] *= sigma0;

  for (int i = 0; ok && i < g->steps; i++)
    {
      float scale = oft_sampler_input_scale (s, i), t[2];
      t[0] = t[1] = oft_sampler_timestep (s, i);
      for (int b = 0; b < B; b++)
        for (int64_t j = 0; j < n; j++)
          xin[b * n + j] = lat[j] * scale;
      ok = oft_unet_forward (p->unet, xin, t, ctx, B, h, w, T, eps, error);
      if (!ok)
        break;
      if (cfg)
        for (int64_t j = 0; j < n; j++)
          eps[j] = eps[j] + g->guidance * (eps[n + j] - eps[j]);
      if (oft_sampler_needs_noise (s))
        oft_rng_normal (&rng, noise, n);
      oft_sampler_step (s, i, lat, eps, noise, NULL, n);
      if (progress && !progress (i + 1, g->steps, progress_data))
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_CANCELLED, "cancelled at step %d of %d", i + 1, g->steps);
          ok = FALSE;
        }
    }
  for (int64_t j = 0; ok && j < n; j++)
    if (!isfinite (lat[j]))
      {
        g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC, "the latents became NaN or infinite");
        ok = FALSE;
      }
  if (control)
    oft_unet_set_control (p->unet, NULL, NULL);
  g_free (control);
  if (ok && latents_out)
    memcpy (latents_out, lat, n * sizeof (float));
  if (ok)
    {
      float inv = 1.0f / oft_vae_scaling_factor (p->vae);
      for (int64_t j = 0; j < n; j++)
        lat[j] *= inv;
      ok = oft_vae_decode (p->vae, lat, 1, h, w, rgb, error);
      int64_t np = (int64_t) 3 * g->width * g->height;
      for (int64_t j = 0; ok && j < np; j++)
        rgb[j] = fminf (fmaxf (rgb[j] / 2 + 0.5f, 0.0f), 1.0f);
    }
  g_free (ids);
  g_free (ctx);
  g_free (lat);
  g_free (xin);
  g_free (eps);
  g_free (noise);
  oft_sampler_free (s);
  return ok;
}
