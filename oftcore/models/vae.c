/* AutoencoderKL: Encoder (conv_in, DownEncoderBlock2D×n, mid block, norm/SiLU/conv_out, quant_conv)
 * and Decoder (post_quant_conv, conv_in, mid block, UpDecoderBlock2D×n, norm/SiLU/conv_out).
 * GroupNorm eps is 1e-6 throughout, as diffusers' VAE uses. */
#include "oft/vae.h"
#include "oft/nn.h"
#include "vae-private.h"
#include "config.h"
#include <string.h>

float oft_vae_scaling_factor (const OftVae *v) { return v->scaling; }
int   oft_vae_latent_channels (const OftVae *v) { return v->latent; }
int   oft_vae_factor (const OftVae *v) { return 1 << (v->n_levels - 1); }

static void
mid_load (VaeMid *m, OftWeightLoader *l, const char *side, int ch, int groups, bool attn)
{
  char *p = g_strdup_printf ("%s.mid_block.resnets.0", side);
  oft_resnet_load (&m->r0, l, p, ch, ch, 0, groups, VAE_EPS);
  g_free (p);
  p = g_strdup_printf ("%s.mid_block.resnets.1", side);
  oft_resnet_load (&m->r1, l, p, ch, ch, 0, groups, VAE_EPS);
  g_free (p);
  m->has_attn = attn;
  if (attn)
    {
      p = g_strdup_printf ("%s.mid_block.attentions.0", side);
      oft_spatial_attention_load (&m->attn, l, p, ch, groups, VAE_EPS);
      g_free (p);
    }
}

static gboolean
load_weights (OftVae *v, const OftWeightSource *src, bool mid_attn, GError **error)
{
  v->params_list = oft_params_new ();
  OftWeightLoader l = { .src = src, .arena = &v->params, .record = v->params_list };
  int L = v->n_levels, *ch = v->ch, G = v->groups, lat = v->latent;
  char p[128];
  /* encoder */
  v->e_in_w = oft_weights_get (&l, OFT_SHAPE (ch[0], v->in_ch, 3, 3), "encoder.conv_in.weight");
  v->e_in_b = oft_weights_get (&l, OFT_SHAPE (ch[0]), "encoder.conv_in.bias");
  for (int i = 0; i < L; i++)
    {
      VaeLevel *e = &v->enc[i];
      e->n_resnets = v->layers;
      e->resnets = g_new0 (OftResnet, e->n_resnets);
      for (int j = 0; j < e->n_resnets; j++)
        {
          g_snprintf (p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
          oft_resnet_load (&e->resnets[j], &l, p, j == 0 ? ch[MAX (i - 1, 0)] : ch[i], ch[i], 0, G, VAE_EPS);
        }
      e->has_sample = i < L - 1;
      if (e->has_sample)
        {
          g_snprintf (p, sizeof p, "encoder.down_blocks.%d.downsamplers.0", i);
          oft_downsample_load (&e->down, &l, p, ch[i], true);
        }
    }
  mid_load (&v->e_mid, &l, "encoder", ch[L - 1], G, mid_attn);
  v->e_nw = oft_weights_get (&l, OFT_SHAPE (ch[L - 1]), "encoder.conv_norm_out.weight");
  v->e_nb = oft_weights_get (&l, OFT_SHAPE (ch[L - 1]), "encoder.conv_norm_out.bias");
  v->e_out_w = oft_weights_get (&l, OFT_SHAPE (2 * lat, ch[L - 1], 3, 3), "encoder.conv_out.weight");
  v->e_out_b = oft_weights_get (&l, OFT_SHAPE (2 * lat), "encoder.conv_out.bias");
  if (v->quant)
    {
      v->q_w = oft_weights_get (&l, OFT_SHAPE (2 * lat, 2 * lat, 1, 1), "quant_conv.weight");
      v->q_b = oft_weights_get (&l, OFT_SHAPE (2 * lat), "quant_conv.bias");
    }
  /* decoder: levels run from the deepest channel count back up */
  if (v->post_quant)
    {
      v->pq_w = oft_weights_get (&l, OFT_SHAPE (lat, lat, 1, 1), "post_quant_conv.weight");
      v->pq_b = oft_weights_get (&l, OFT_SHAPE (lat), "post_quant_conv.bias");
    }
  v->d_in_w = oft_weights_get (&l, OFT_SHAPE (ch[L - 1], lat, 3, 3), "decoder.conv_in.weight");
  v->d_in_b = oft_weights_get (&l, OFT_SHAPE (ch[L - 1]), "decoder.conv_in.bias");
  mid_load (&v->d_mid, &l, "decoder", ch[L - 1], G, mid_attn);
  for (int i = 0; i < L; i++)
    {
      VaeLevel *d = &v->dec[i];
      int out = ch[L - 1 - i], prev = ch[L - 1 - MAX (i - 1, 0)];
      d->n_resnets = v->layers + 1;
      d->resnets = g_new0 (OftResnet, d->n_resnets);
      for (int j = 0; j < d->n_resnets; j++)
        {
          g_snprintf (p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
          oft_resnet_load (&d->resnets[j], &l, p, j == 0 ? prev : out, out, 0, G, VAE_EPS);
        }
      d->has_sample = i < L - 1;
      if (d->has_sample)
        {
          g_snprintf (p, sizeof p, "decoder.up_blocks.%d.upsamplers.0", i);
          oft_upsample_load (&d->up, &l, p, out);
        }
    }
  v->d_nw = oft_weights_get (&l, OFT_SHAPE (ch[0]), "decoder.conv_norm_out.weight");
  v->d_nb = oft_weights_get (&l, OFT_SHAPE (ch[0]), "decoder.conv_norm_out.bias");
  v->d_out_w = oft_weights_get (&l, OFT_SHAPE (v->out_ch, ch[0], 3, 3), "decoder.conv_out.weight");
  v->d_out_b = oft_weights_get (&l, OFT_SHAPE (v->out_ch), "decoder.conv_out.bias");
  return oft_weights_finish (&l, error);
}

static gboolean
check_block_types (OftConfig *c, const char *key, const char *want, int n)
{
  int got = 0;
  char **types = oft_config_string_list (c, key, &got);
  gboolean ok = types != NULL;
  if (ok && got != n && !c->error)
    {
      g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: \"%s\" has %d entries, block_out_channels %d",
                   c->path, key, got, n);
      ok = FALSE;
    }
  for (int i = 0; ok && i < got; i++)
    if (strcmp (types[i], want) != 0)
      {
        g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: block type \"%s\" is not supported (expected %s)",
                     c->path, types[i], want);
        ok = FALSE;
      }
  g_strfreev (types);
  return ok;
}

OftVae *
oft_vae_load_from (const char *cfg_path, const OftWeightSource *src, GError **error)
{
  OftVae *v = g_new0 (OftVae, 1);
  oft_arena_init (&v->params, "vae-params", 0);
  oft_arena_init (&v->acts, "vae-activations", 0);
  oft_arena_init (&v->train_acts, "vae-training", 0);
  OftConfig c;
  gboolean ok = FALSE;
  if (!oft_config_open (&c, cfg_path, error))
    goto out;
  v->in_ch = oft_config_int (&c, "in_channels", 3, 1, 64);
  v->out_ch = oft_config_int (&c, "out_channels", 3, 1, 64);
  v->latent = oft_config_int (&c, "latent_channels", 4, 1, 256);
  v->layers = oft_config_int (&c, "layers_per_block", 2, 1, 16);
  v->groups = oft_config_int (&c, "norm_num_groups", 32, 1, 1024);
  v->scaling = (float) oft_config_double (&c, "scaling_factor", 0.18215, 1e-6, 1e6);
  v->quant = oft_config_bool (&c, "use_quant_conv", TRUE);
  v->post_quant = oft_config_bool (&c, "use_post_quant_conv", TRUE);
  bool mid_attn = oft_config_bool (&c, "mid_block_add_attention", TRUE);
  JsonNode *boc = json_object_get_member (c.obj, "block_out_channels");
  v->n_levels = boc && JSON_NODE_HOLDS_ARRAY (boc) ? (int) json_array_get_length (json_node_get_array (boc)) : 4;
  if (v->n_levels < 1 || v->n_levels > MAX_LEVELS)
    g_set_error (&c.error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: \"block_out_channels\" needs 1 to %d entries",
                 cfg_path, MAX_LEVELS);
  else
    {
      int sd[4] = { 128, 256, 512, 512 };
      oft_config_int_list (&c, "block_out_channels", v->ch, v->n_levels, 0, 1, 1 << 14);
      if (!boc)
        memcpy (v->ch, sd, sizeof sd);
      check_block_types (&c, "down_block_types", "DownEncoderBlock2D", v->n_levels);
      check_block_types (&c, "up_block_types", "UpDecoderBlock2D", v->n_levels);
      for (int i = 0; i < v->n_levels && !c.error; i++)
        if (v->ch[i] % v->groups)
          g_set_error (&c.error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                       "%s: block_out_channels[%d] = %d is not a multiple of norm_num_groups %d", cfg_path, i,
                       v->ch[i], v->groups);
    }
  const char *act = oft_config_string (&c, "act_fn", "silu");
  if (!c.error && g_strcmp0 (act, "silu") != 0)
    g_set_error (&c.error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: act_fn \"%s\" is not supported (silu)", cfg_path, act);
  if (!oft_config_finish (&c, error))
    goto out;
  ok = load_weights (v, src, mid_attn, error);
out:
  oft_config_close (&c);
  if (!ok)
    {
      oft_vae_free (v);
      return NULL;
    }
  return v;
}

OftVae *
oft_vae_load (const char *dir, GError **error)
{
  char *cfg_path = g_build_filename (dir, "config.json", NULL);
  char *st_path = g_build_filename (dir, "diffusion_pytorch_model.safetensors", NULL);
  OftVae *v = NULL;
  OftSafetensors *st = NULL;
  /* the config is read first, so its errors come before a missing weights file's */
  GError *open_error = NULL;
  st = oft_safetensors_open (st_path, &open_error);
  OftWeightSource src = { .st = st, .open_error = open_error };
  v = oft_vae_load_from (cfg_path, &src, error);
  g_clear_error (&open_error);
  oft_safetensors_close (st);
  g_free (cfg_path);
  g_free (st_path);
  return v;
}

void
oft_vae_free (OftVae *v)
{
  if (!v)
    return;
  oft_vae_device_release (v);
  for (int i = 0; i < MAX_LEVELS; i++)
    {
      g_free (v->enc[i].resnets);
      g_free (v->dec[i].resnets);
    }
  oft_params_free (v->params_list);
  oft_arena_release (&v->params);
  oft_arena_release (&v->acts);
  oft_arena_release (&v->train_acts);
  g_free (v);
}

/* x[B, C, H, W] through the mid block in place (tmp holds one tensor of the same size) */
static void
mid_forward (OftVae *v, const VaeMid *m, float *x, float *tmp, int B, int H, int W)
{
  oft_resnet_forward (&v->acts, tmp, x, NULL, &m->r0, B, H, W);
  if (m->has_attn)
    oft_spatial_attention_forward (&v->acts, tmp, &m->attn, B, H, W);
  oft_resnet_forward (&v->acts, x, tmp, NULL, &m->r1, B, H, W);
}

static void
norm_silu_conv (OftVae *v, float *out, const float *x, const float *nw, const float *nb, const float *cw,
                const float *cb, int B, int C, int H, int W, int OC)
{
  int64_t HW = (int64_t) H * W;
  OftArenaMark m = oft_arena_mark (&v->acts);
  float *h = oft_arena_scratch (&v->acts, (size_t) B * C * HW);
  float *mean = oft_arena_scratch (&v->acts, (size_t) B * v->groups), *rstd = oft_arena_scratch (&v->acts, (size_t) B * v->groups);
  if (!oft_arena_failed (&v->acts))
    {
      oft_groupnorm_forward (h, mean, rstd, x, nw, nb, B, C, HW, v->groups, VAE_EPS);
      oft_silu_forward (h, h, B * C * HW);
      oft_conv_apply (&v->acts, out, h, cw, cb, B, C, H, W, OC, 3, 1, 1);
    }
  oft_arena_reset (&v->acts, m);
}

static gboolean
check_size (const OftVae *v, int B, int H, int W, int multiple, GError **error)
{
  if (B < 1 || H < 1 || W < 1 || H % multiple || W % multiple || (int64_t) H * W > (1 << 26))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "VAE input %d×%d×%d: sizes must be positive multiples of %d",
                   B, H, W, multiple);
      return FALSE;
    }
  return TRUE;
}

/* The end of a forward in a checked section: a refused allocation becomes the error. */
static gboolean
end_forward (OftVae *v, OftArenaMark mark, const char *what, int B, int H, int W, GError **error)
{
  oft_arena_reset (&v->acts, mark);
  if (oft_arena_end_checked (&v->acts, error))
    return TRUE;
  g_prefix_error (error, "VAE %s %d×%d×%d: ", what, B, H, W);
  return FALSE;
}

gboolean
oft_vae_encode (OftVae *v, const float *img, int B, int H, int W, float *mean, float *logvar, GError **error)
{
  int f = oft_vae_factor (v), L = v->n_levels, maxc = v->ch[L - 1];
  if (!check_size (v, B, H, W, f, error))
    return FALSE;
  OftArenaMark mark = oft_arena_mark (&v->acts);
  oft_arena_begin_checked (&v->acts);
  size_t big = (size_t) B * MAX (v->ch[0], maxc) * H * W;
  float *x = oft_arena_scratch (&v->acts, big), *y = oft_arena_scratch (&v->acts, big);
  if (oft_arena_failed (&v->acts))
    return end_forward (v, mark, "encode of images", B, H, W, error);
  oft_conv_apply (&v->acts, x, img, v->e_in_w, v->e_in_b, B, v->in_ch, H, W, v->ch[0], 3, 1, 1);
  int h = H, w = W;
  for (int i = 0; i < L && !oft_arena_failed (&v->acts); i++)
    {
      VaeLevel *e = &v->enc[i];
      for (int j = 0; j < e->n_resnets; j++)
        {
          oft_resnet_forward (&v->acts, y, x, NULL, &e->resnets[j], B, h, w);
          float *t = x; x = y; y = t;
        }
      if (e->has_sample)
        {
          oft_downsample_forward (&v->acts, y, x, &e->down, B, h, w);
          h /= 2, w /= 2;
          float *t = x; x = y; y = t;
        }
    }
  mid_forward (v, &v->e_mid, x, y, B, h, w);
  int lat2 = 2 * v->latent;
  norm_silu_conv (v, y, x, v->e_nw, v->e_nb, v->e_out_w, v->e_out_b, B, maxc, h, w, lat2);
  float *moments = y;
  if (v->quant)
    {
      oft_conv_apply (&v->acts, x, y, v->q_w, v->q_b, B, lat2, h, w, lat2, 1, 1, 0);
      moments = x;
    }
  if (oft_arena_failed (&v->acts))
    return end_forward (v, mark, "encode of images", B, H, W, error);
  int64_t hw = (int64_t) h * w;
  for (int b = 0; b < B; b++)
    {
      const float *mb = moments + (int64_t) b * lat2 * hw;
      memcpy (mean + (int64_t) b * v->latent * hw, mb, v->latent * hw * sizeof (float));
      if (logvar)
        for (int64_t i = 0; i < v->latent * hw; i++)
          logvar[(int64_t) b * v->latent * hw + i] = CLAMP (mb[v->latent * hw + i], -30.0f, 20.0f);
    }
  return end_forward (v, mark, "encode of images", B, H, W, error);
}

gboolean
oft_vae_decode (OftVae *v, const float *z, int B, int h, int w, float *img, GError **error)
{
  int f = oft_vae_factor (v), L = v->n_levels, maxc = v->ch[L - 1];
  if (!check_size (v, B, h, w, 1, error) || !check_size (v, B, h * f, w * f, 1, error))
    return FALSE;
  if (v->dev)
    return v->dev_ops->vae_decode (v->dev, z, B, h, w, img, error);
  OftArenaMark mark = oft_arena_mark (&v->acts);
  oft_arena_begin_checked (&v->acts);
  int h0 = h, w0 = w, cmax = 0;
  for (int i = 0; i < L; i++)
    cmax = MAX (cmax, v->ch[i]);
  size_t big = (size_t) B * cmax * (size_t) (h * f) * (w * f);
  float *x = oft_arena_scratch (&v->acts, big), *y = oft_arena_scratch (&v->acts, big);
  if (oft_arena_failed (&v->acts))
    return end_forward (v, mark, "decode of latents", B, h0, w0, error);
  const float *zin = z;
  if (v->post_quant)
    {
      oft_conv_apply (&v->acts, y, z, v->pq_w, v->pq_b, B, v->latent, h, w, v->latent, 1, 1, 0);
      zin = y;
    }
  oft_conv_apply (&v->acts, x, zin, v->d_in_w, v->d_in_b, B, v->latent, h, w, maxc, 3, 1, 1);
  mid_forward (v, &v->d_mid, x, y, B, h, w);
  for (int i = 0; i < L && !oft_arena_failed (&v->acts); i++)
    {
      VaeLevel *d = &v->dec[i];
      for (int j = 0; j < d->n_resnets; j++)
        {
          oft_resnet_forward (&v->acts, y, x, NULL, &d->resnets[j], B, h, w);
          float *t = x; x = y; y = t;
        }
      if (d->has_sample)
        {
          oft_upsample_forward (&v->acts, y, x, &d->up, B, h, w);
          h *= 2, w *= 2;
          float *t = x; x = y; y = t;
        }
    }
  if (!oft_arena_failed (&v->acts))
    norm_silu_conv (v, img, x, v->d_nw, v->d_nb, v->d_out_w, v->d_out_b, B, v->ch[0], h, w, v->out_ch);
  return end_forward (v, mark, "decode of latents", B, h0, w0, error);
}

OftVae *
oft_vae_new_random (const char *config_path, guint64 seed, GError **error)
{
  OftWeightSource src = { .random_init = TRUE, .seed = seed };
  return oft_vae_load_from (config_path, &src, error);
}
