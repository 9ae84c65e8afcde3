/* diffusers → LDM names. Layout facts (from diffusers' original-SD conversion): the UNet's down path is
 * one flat list input_blocks (0 = conv_in, then per level layers_per_block × [resnet, attention] and a
 * downsampler "op"), the up path output_blocks (per level layers_per_block + 1 × [resnet, attention,
 * upsampler]), resnets name their layers in_layers / emb_layers / out_layers; the VAE numbers decoder
 * levels from the deepest, calls resnets "block" and the mid attention "attn_1" with q/k/v/proj_out. */
#include "oft/ldm.h"
#include "oft/error.h"
#include "config.h"
#include <string.h>

#define UNET_PREFIX "model.diffusion_model."
#define VAE_PREFIX "first_stage_model."
#define CLIP_PREFIX "cond_stage_model.transformer."

/* Consumes `lit` at *s. */
static gboolean
eat (const char **s, const char *lit)
{
  size_t n = strlen (lit);
  if (strncmp (*s, lit, n) != 0)
    return FALSE;
  *s += n;
  return TRUE;
}

/* Consumes a small decimal index followed by '.'. */
static gboolean
index_dot (const char **s, int *out)
{
  const char *p = *s;
  int v = 0, digits = 0;
  while (*p >= '0' && *p <= '9' && digits < 4)
    v = v * 10 + (*p++ - '0'), digits++;
  if (!digits || *p != '.' || (digits > 1 && **s == '0'))
    return FALSE;
  *s = p + 1;
  *out = v;
  return TRUE;
}

/* A UNet resnet's layer: "norm1.weight" → "in_layers.0.weight". */
static char *
unet_resnet (const char *head, const char *rest)
{
  static const char *const map[][2] = {
    { "norm1.", "in_layers.0." }, { "conv1.", "in_layers.2." }, { "time_emb_proj.", "emb_layers.1." },
    { "norm2.", "out_layers.0." }, { "conv2.", "out_layers.3." }, { "conv_shortcut.", "skip_connection." },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (map); i++)
    {
      const char *r = rest;
      if (eat (&r, map[i][0]))
        return g_strconcat (UNET_PREFIX, head, map[i][1], r, NULL);
    }
  return NULL;
}

char *
oft_ldm_unet_name (const char *name, gpointer data)
{
  const OftLdmUnetMap *m = data;
  const char *s = name;
  int i, j, L = m->layers_per_block;
  char head[64];
  if (eat (&s, "time_embedding.linear_1."))
    return g_strconcat (UNET_PREFIX "time_embed.0.", s, NULL);
  if (eat (&s, "time_embedding.linear_2."))
    return g_strconcat (UNET_PREFIX "time_embed.2.", s, NULL);
  if (eat (&s, "conv_in."))
    return g_strconcat (UNET_PREFIX "input_blocks.0.0.", s, NULL);
  if (eat (&s, "conv_norm_out."))
    return g_strconcat (UNET_PREFIX "out.0.", s, NULL);
  if (eat (&s, "conv_out."))
    return g_strconcat (UNET_PREFIX "out.2.", s, NULL);
  if (eat (&s, "mid_block."))
    {
      if (eat (&s, "resnets.0."))
        return unet_resnet ("middle_block.0.", s);
      if (eat (&s, "resnets.1."))
        return unet_resnet ("middle_block.2.", s);
      if (eat (&s, "attentions.0."))
        return g_strconcat (UNET_PREFIX "middle_block.1.", s, NULL);
      return NULL;
    }
  if (eat (&s, "down_blocks.") && index_dot (&s, &i) && i < m->n_levels)
    {
      int base = 1 + i * (L + 1);
      if (eat (&s, "resnets.") && index_dot (&s, &j) && j < L)
        {
          g_snprintf (head, sizeof head, "input_blocks.%d.0.", base + j);
          return unet_resnet (head, s);
        }
      if (eat (&s, "attentions.") && index_dot (&s, &j) && j < L)
        return g_strdup_printf (UNET_PREFIX "input_blocks.%d.1.%s", base + j, s);
      if (eat (&s, "downsamplers.0.conv.") && i < m->n_levels - 1)
        return g_strdup_printf (UNET_PREFIX "input_blocks.%d.0.op.%s", base + L, s);
      return NULL;
    }
  s = name;
  if (eat (&s, "up_blocks.") && index_dot (&s, &i) && i < m->n_levels)
    {
      int base = i * (L + 1);
      if (eat (&s, "resnets.") && index_dot (&s, &j) && j <= L)
        {
          g_snprintf (head, sizeof head, "output_blocks.%d.0.", base + j);
          return unet_resnet (head, s);
        }
      if (eat (&s, "attentions.") && index_dot (&s, &j) && j <= L)
        return g_strdup_printf (UNET_PREFIX "output_blocks.%d.1.%s", base + j, s);
      /* the upsampler follows the last resnet (and its attention, when the level has one) */
      if (eat (&s, "upsamplers.0.conv.") && i < m->n_levels - 1)
        return g_strdup_printf (UNET_PREFIX "output_blocks.%d.%d.conv.%s", base + L, m->up_attn[i] ? 2 : 1, s);
    }
  return NULL;
}

/* A VAE resnet: the same layer names but conv_shortcut → nin_shortcut. */
static char *
vae_resnet (const char *head, const char *rest)
{
  const char *r = rest;
  if (eat (&r, "conv_shortcut."))
    return g_strconcat (VAE_PREFIX, head, "nin_shortcut.", r, NULL);
  return g_strconcat (VAE_PREFIX, head, rest, NULL);
}

char *
oft_ldm_vae_name (const char *name, gpointer data)
{
  const OftLdmVaeMap *m = data;
  const char *s = name;
  int i, j;
  char head[64];
  static const char *const same[] = { "quant_conv.", "post_quant_conv.", "encoder.conv_in.", "encoder.conv_out.",
                                      "decoder.conv_in.", "decoder.conv_out." };
  for (size_t k = 0; k < G_N_ELEMENTS (same); k++)
    if (g_str_has_prefix (name, same[k]))
      return g_strconcat (VAE_PREFIX, name, NULL);
  const char *side = eat (&s, "encoder.") ? "encoder" : eat (&s, "decoder.") ? "decoder" : NULL;
  if (!side)
    return NULL;
  if (eat (&s, "conv_norm_out."))
    return g_strconcat (VAE_PREFIX, side, ".norm_out.", s, NULL);
  if (eat (&s, "mid_block."))
    {
      static const char *const attn[][2] = { { "group_norm.", "norm." }, { "to_q.", "q." }, { "to_k.", "k." },
                                             { "to_v.", "v." }, { "to_out.0.", "proj_out." } };
      g_snprintf (head, sizeof head, "%s.mid.block_1.", side);
      if (eat (&s, "resnets.0."))
        return vae_resnet (head, s);
      g_snprintf (head, sizeof head, "%s.mid.block_2.", side);
      if (eat (&s, "resnets.1."))
        return vae_resnet (head, s);
      if (eat (&s, "attentions.0."))
        for (size_t k = 0; k < G_N_ELEMENTS (attn); k++)
          if (eat (&s, attn[k][0]))
            return g_strconcat (VAE_PREFIX, side, ".mid.attn_1.", attn[k][1], s, NULL);
      return NULL;
    }
  gboolean enc = side[0] == 'e';
  if (!eat (&s, enc ? "down_blocks." : "up_blocks.") || !index_dot (&s, &i) || i >= m->n_levels)
    return NULL;
  int level = enc ? i : m->n_levels - 1 - i;
  if (eat (&s, "resnets.") && index_dot (&s, &j) && j <= 16)
    {
      g_snprintf (head, sizeof head, "%s.%s.%d.block.%d.", side, enc ? "down" : "up", level, j);
      return vae_resnet (head, s);
    }
  if (i < m->n_levels - 1 && eat (&s, enc ? "downsamplers.0.conv." : "upsamplers.0.conv."))
    return g_strdup_printf (VAE_PREFIX "%s.%s.%d.%s.conv.%s", side, enc ? "down" : "up", level,
                            enc ? "downsample" : "upsample", s);
  return NULL;
}

char *
oft_ldm_clip_name (const char *name, gpointer data)
{
  const OftSafetensors *st = data;
  const char *s = name;
  if (!eat (&s, "text_model."))
    return NULL;
  char *full = g_strconcat (CLIP_PREFIX, name, NULL);
  if (st && !oft_safetensors_find (st, full))
    {
      /* files from older transformers versions lack the "text_model." level */
      char *old = g_strconcat (CLIP_PREFIX, s, NULL);
      if (oft_safetensors_find (st, old))
        {
          g_free (full);
          return old;
        }
      g_free (old);
    }
  return full;
}

static int
count_levels (OftConfig *c, const char *path)
{
  JsonNode *boc = json_object_get_member (c->obj, "block_out_channels");
  int n = boc && JSON_NODE_HOLDS_ARRAY (boc) ? (int) json_array_get_length (json_node_get_array (boc)) : 4;
  if (!c->error && (n < 1 || n > OFT_LDM_MAX_LEVELS))
    g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: \"block_out_channels\" needs 1 to %d entries",
                 path, OFT_LDM_MAX_LEVELS);
  return n;
}

gboolean
oft_ldm_unet_map_init (OftLdmUnetMap *m, const char *path, GError **error)
{
  OftConfig c;
  *m = (OftLdmUnetMap) { 0 };
  if (!oft_config_open (&c, path, error))
    return FALSE;
  m->layers_per_block = oft_config_int (&c, "layers_per_block", 2, 1, 16);
  m->n_levels = count_levels (&c, path);
  int n = 0;
  char **up = c.error ? NULL : oft_config_string_list (&c, "up_block_types", &n);
  if (up && n != m->n_levels)
    g_set_error (&c.error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: up_block_types has %d entries, "
                 "block_out_channels %d", path, n, m->n_levels);
  for (int i = 0; up && i < n && i < OFT_LDM_MAX_LEVELS; i++)
    m->up_attn[i] = strstr (up[i], "CrossAttn") != NULL;
  g_strfreev (up);
  gboolean ok = oft_config_finish (&c, error);
  oft_config_close (&c);
  return ok;
}

gboolean
oft_ldm_vae_map_init (OftLdmVaeMap *m, const char *path, GError **error)
{
  OftConfig c;
  *m = (OftLdmVaeMap) { 0 };
  if (!oft_config_open (&c, path, error))
    return FALSE;
  m->n_levels = count_levels (&c, path);
  gboolean ok = oft_config_finish (&c, error);
  oft_config_close (&c);
  return ok;
}
