/* UNet2DConditionModel forward (inference). Block structure and channel bookkeeping follow
 * diffusers' UNet2DConditionModel.__init__: skip connections are pushed after conv_in, after every
 * resnet(+attention) of a down block and after every downsampler, and popped by the up blocks. */
#include "unet-private.h"
#include "oft/nn.h"
#include "config.h"
#include <math.h>
#include <string.h>

int oft_unet_in_channels (const OftUnet *u) { return u->in_ch; }
int oft_unet_out_channels (const OftUnet *u) { return u->out_ch; }
int oft_unet_context_dim (const OftUnet *u) { return u->ctx_dim; }
int oft_unet_size_multiple (const OftUnet *u) { return 1 << (u->n_levels - 1); }
int oft_unet_sample_size (const OftUnet *u) { return u->sample_size; }
int oft_unet_control_channels (const OftUnet *u) { return u->ch[0]; }

void
oft_unet_set_control (OftUnet *u, const float *r, float *dr)
{
  u->control = r;
  u->dcontrol = r ? dr : NULL;
}

void
oft_unet_set_tap (OftUnet *u, OftTapFunc tap, gpointer user_data)
{
  u->tap = tap;
  u->tap_data = user_data;
}

static void
tap (OftUnet *u, const char *name, const float *x, int64_t n)
{
  if (u->tap)
    u->tap (name, x, n, u->tap_data);
}

static void
reg (OftUnet *u, const char *path, float *w, int64_t out, int64_t d, Lin *lin)
{
  if (!w)
    return;  /* a failed load: the sticky error is reported by the caller */
  Module *m = g_new (Module, 1);
  *m = (Module) { .w = w, .out = out, .d = d, .lin = lin };
  g_hash_table_replace (u->modules, g_strdup (path), m);
}

static void
reg_resnet (OftUnet *u, const char *p, const OftResnet *r)
{
  char path[200];
  g_snprintf (path, sizeof path, "%s.conv1", p);
  reg (u, path, r->c1w, r->cout, (int64_t) r->cin * 9, NULL);
  g_snprintf (path, sizeof path, "%s.conv2", p);
  reg (u, path, r->c2w, r->cout, (int64_t) r->cout * 9, NULL);
  g_snprintf (path, sizeof path, "%s.time_emb_proj", p);
  reg (u, path, r->tw, r->cout, r->temb, NULL);
  g_snprintf (path, sizeof path, "%s.conv_shortcut", p);
  reg (u, path, r->scw, r->cout, r->cin, NULL);
}

static void
lin_load (OftUnet *u, Lin *lin, OftWeightLoader *l, const char *p, const char *name, int in, int out, bool bias)
{
  *lin = (Lin) { .in = in, .out = out };
  lin->w = oft_weights_get (l, OFT_SHAPE (out, in), "%s.%s.weight", p, name);
  if (bias)
    lin->b = oft_weights_get (l, OFT_SHAPE (out), "%s.%s.bias", p, name);
  char *path = g_strdup_printf ("%s.%s", p, name);
  reg (u, path, lin->w, out, in, lin);
  g_free (path);
}

static void
lin_rot_free (gpointer p)
{
  LinRot *r = p;
  g_free (r->R);
  g_free (r);
}

void
oft_unet_lin_clear (Lin *lin)
{
  if (lin->rots)
    g_ptr_array_unref (lin->rots);
  lin->rots = NULL;
}

static void
transformer_load (OftUnet *u, Transformer *t, OftWeightLoader *l, const char *p, int ch, int heads, int ctx, int groups,
                  bool linear_proj)
{
  int D = ch; /* inner_dim = heads · (ch / heads) */
  *t = (Transformer) { .ch = ch, .inner = D, .groups = groups, .n_blocks = 1, .linear_proj = linear_proj };
  char path[200];
  t->nw = oft_weights_get (l, OFT_SHAPE (ch), "%s.norm.weight", p);
  t->nb = oft_weights_get (l, OFT_SHAPE (ch), "%s.norm.bias", p);
  if (linear_proj)
    {
      t->piw = oft_weights_get (l, OFT_SHAPE (D, ch), "%s.proj_in.weight", p);
      t->pow_ = oft_weights_get (l, OFT_SHAPE (ch, D), "%s.proj_out.weight", p);
    }
  else
    {
      t->piw = oft_weights_get (l, OFT_SHAPE (D, ch, 1, 1), "%s.proj_in.weight", p);
      t->pow_ = oft_weights_get (l, OFT_SHAPE (ch, D, 1, 1), "%s.proj_out.weight", p);
    }
  t->pib = oft_weights_get (l, OFT_SHAPE (D), "%s.proj_in.bias", p);
  t->pob = oft_weights_get (l, OFT_SHAPE (ch), "%s.proj_out.bias", p);
  g_snprintf (path, sizeof path, "%s.proj_in", p);
  reg (u, path, t->piw, D, ch, NULL);
  g_snprintf (path, sizeof path, "%s.proj_out", p);
  reg (u, path, t->pow_, ch, D, NULL);
  t->blocks = g_new0 (TBlock, t->n_blocks);
  for (int i = 0; i < t->n_blocks; i++)
    {
      TBlock *b = &t->blocks[i];
      *b = (TBlock) { .dim = D, .heads = heads, .ctx = ctx, .ff = 4 * D };
#define W(field, what, ...) b->field = oft_weights_get (l, OFT_SHAPE (__VA_ARGS__), "%s.transformer_blocks.%d." what, p, i)
      W (n1w, "norm1.weight", D);
      W (n1b, "norm1.bias", D);
      W (n2w, "norm2.weight", D);
      W (n2b, "norm2.bias", D);
      W (n3w, "norm3.weight", D);
      W (n3b, "norm3.bias", D);
      char bp[200];
      g_snprintf (bp, sizeof bp, "%s.transformer_blocks.%d", p, i);
      lin_load (u, &b->q1, l, bp, "attn1.to_q", D, D, false);
      lin_load (u, &b->k1, l, bp, "attn1.to_k", D, D, false);
      lin_load (u, &b->v1, l, bp, "attn1.to_v", D, D, false);
      lin_load (u, &b->o1, l, bp, "attn1.to_out.0", D, D, true);
      lin_load (u, &b->q2, l, bp, "attn2.to_q", D, D, false);
      lin_load (u, &b->k2, l, bp, "attn2.to_k", ctx, D, false);
      lin_load (u, &b->v2, l, bp, "attn2.to_v", ctx, D, false);
      lin_load (u, &b->o2, l, bp, "attn2.to_out.0", D, D, true);
      lin_load (u, &b->ff1, l, bp, "ff.net.0.proj", D, 2 * b->ff, true);
      lin_load (u, &b->ff2, l, bp, "ff.net.2", b->ff, D, true);
#undef W
    }
}

static void
transformer_free (Transformer *t)
{
  for (int i = 0; t->blocks && i < t->n_blocks; i++)
    {
      TBlock *b = &t->blocks[i];
      Lin *all[] = { &b->q1, &b->k1, &b->v1, &b->o1, &b->q2, &b->k2, &b->v2, &b->o2, &b->ff1, &b->ff2 };
      for (size_t j = 0; j < G_N_ELEMENTS (all); j++)
        oft_unet_lin_clear (all[j]);
    }
  g_free (t->blocks);
}

static gboolean
read_config (OftUnet *u, OftConfig *c, bool *cross_down, bool *cross_up)
{
  u->in_ch = oft_config_int (c, "in_channels", 4, 1, 64);
  u->out_ch = oft_config_int (c, "out_channels", 4, 1, 64);
  u->layers = oft_config_int (c, "layers_per_block", 2, 1, MAX_LAYERS - 1);
  u->groups = oft_config_int (c, "norm_num_groups", 32, 1, 1024);
  u->norm_eps = (float) oft_config_double (c, "norm_eps", 1e-5, 0, 1);
  u->ctx_dim = oft_config_int (c, "cross_attention_dim", 768, 1, 1 << 16);
  u->flip = oft_config_bool (c, "flip_sin_to_cos", TRUE);
  u->freq_shift = (float) oft_config_double (c, "freq_shift", 0, -1e3, 1e3);
  u->linear_proj = oft_config_bool (c, "use_linear_projection", FALSE);
  u->sample_size = oft_config_int (c, "sample_size", 64, 1, 1 << 12);
  int ntypes = 0;
  char **down = oft_config_string_list (c, "down_block_types", &ntypes);
  if (!down)
    return FALSE;
  u->n_levels = ntypes;
  int nup = 0;
  char **up = oft_config_string_list (c, "up_block_types", &nup);
  gboolean ok = up != NULL;
  if (ok && (ntypes < 1 || ntypes > MAX_LEVELS || nup != ntypes))
    {
      g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                   "%s: down_block_types and up_block_types need the same count, 1 to %d", c->path, MAX_LEVELS);
      ok = FALSE;
    }
  for (int i = 0; ok && i < ntypes; i++)
    {
      if (strcmp (down[i], "CrossAttnDownBlock2D") == 0)
        cross_down[i] = true;
      else if (strcmp (down[i], "DownBlock2D") != 0)
        ok = FALSE;
      if (ok && strcmp (up[i], "CrossAttnUpBlock2D") == 0)
        cross_up[i] = true;
      else if (ok && strcmp (up[i], "UpBlock2D") != 0)
        ok = FALSE;
      if (!ok)
        g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                     "%s: block type \"%s\" is not supported (CrossAttnDownBlock2D, DownBlock2D, "
                     "CrossAttnUpBlock2D, UpBlock2D)", c->path, cross_down[i] || !strcmp (down[i], "DownBlock2D") ? up[i] : down[i]);
    }
  g_strfreev (down);
  g_strfreev (up);
  if (!ok)
    return FALSE;
  const char *mid = oft_config_string (c, "mid_block_type", "UNetMidBlock2DCrossAttn");
  const char *act = oft_config_string (c, "act_fn", "silu");
  const char *shift = oft_config_string (c, "resnet_time_scale_shift", "default");
  if (!c->error && (g_strcmp0 (mid, "UNetMidBlock2DCrossAttn") || g_strcmp0 (act, "silu") || g_strcmp0 (shift, "default")))
    g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                 "%s: mid_block_type \"%s\", act_fn \"%s\", resnet_time_scale_shift \"%s\": only "
                 "UNetMidBlock2DCrossAttn, silu and default are supported", c->path, mid, act, shift);
  if (oft_config_int (c, "transformer_layers_per_block", 1, 1, 1) != 1)
    return FALSE;
  oft_config_int_list (c, "block_out_channels", u->ch, u->n_levels, 0, 1, 1 << 14);
  /* diffusers reads attention_head_dim as the number of heads when num_attention_heads is unset */
  JsonNode *nh = json_object_get_member (c->obj, "num_attention_heads");
  const char *heads_key = nh && !JSON_NODE_HOLDS_NULL (nh) ? "num_attention_heads" : "attention_head_dim";
  oft_config_int_list (c, heads_key, u->heads, u->n_levels, 8, 1, 1024);
  for (int i = 0; i < u->n_levels && !c->error; i++)
    if (u->ch[i] % u->groups || u->ch[i] % u->heads[i])
      g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                   "%s: block_out_channels[%d] = %d must be a multiple of norm_num_groups (%d) and of the "
                   "head count (%d)", c->path, i, u->ch[i], u->groups, u->heads[i]);
  if (c->error)  /* a refused list may hold any value: no sizes from it */
    return FALSE;
  u->tproj = u->ch[0];
  u->temb = 4 * u->ch[0];
  return TRUE;
}

static void
load_weights (OftUnet *u, OftWeightLoader *l, const bool *cross_down, const bool *cross_up)
{
  int L = u->n_levels, G = u->groups, TE = u->temb;
  float eps = u->norm_eps;
  char p[160];
  u->t1w = oft_weights_get (l, OFT_SHAPE (TE, u->tproj), "time_embedding.linear_1.weight");
  u->t1b = oft_weights_get (l, OFT_SHAPE (TE), "time_embedding.linear_1.bias");
  u->t2w = oft_weights_get (l, OFT_SHAPE (TE, TE), "time_embedding.linear_2.weight");
  u->t2b = oft_weights_get (l, OFT_SHAPE (TE), "time_embedding.linear_2.bias");
  u->cin_w = oft_weights_get (l, OFT_SHAPE (u->ch[0], u->in_ch, 3, 3), "conv_in.weight");
  u->cin_b = oft_weights_get (l, OFT_SHAPE (u->ch[0]), "conv_in.bias");
  int out = u->ch[0];
  for (int i = 0; i < L; i++)
    {
      Level *d = &u->down[i];
      int in = out;
      out = u->ch[i];
      d->n = u->layers;
      d->out_ch = out;
      d->has_attn = cross_down[i];
      d->has_sample = i < L - 1;
      for (int j = 0; j < d->n; j++)
        {
          g_snprintf (p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
          oft_resnet_load (&d->res[j], l, p, j == 0 ? in : out, out, TE, G, eps);
          reg_resnet (u, p, &d->res[j]);
          if (d->has_attn)
            {
              g_snprintf (p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
              transformer_load (u, &d->attn[j], l, p, out, u->heads[i], u->ctx_dim, G, u->linear_proj);
            }
        }
      if (d->has_sample)
        {
          g_snprintf (p, sizeof p, "down_blocks.%d.downsamplers.0", i);
          oft_downsample_load (&d->down, l, p, out, false);
          g_strlcat (p, ".conv", sizeof p);
          reg (u, p, d->down.w, out, (int64_t) out * 9, NULL);
        }
    }
  int top = u->ch[L - 1];
  oft_resnet_load (&u->mid_r0, l, "mid_block.resnets.0", top, top, TE, G, eps);
  reg_resnet (u, "mid_block.resnets.0", &u->mid_r0);
  transformer_load (u, &u->mid_attn, l, "mid_block.attentions.0", top, u->heads[L - 1], u->ctx_dim, G, u->linear_proj);
  oft_resnet_load (&u->mid_r1, l, "mid_block.resnets.1", top, top, TE, G, eps);
  reg_resnet (u, "mid_block.resnets.1", &u->mid_r1);
  out = top;
  for (int i = 0; i < L; i++)
    {
      Level *up = &u->up[i];
      int prev = out;
      out = u->ch[L - 1 - i];
      int in = u->ch[L - 1 - MIN (i + 1, L - 1)];
      up->n = u->layers + 1;
      up->out_ch = out;
      up->has_attn = cross_up[i];
      up->has_sample = i < L - 1;
      for (int j = 0; j < up->n; j++)
        {
          int skip = j == up->n - 1 ? in : out;
          int rin = j == 0 ? prev : out;
          g_snprintf (p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
          oft_resnet_load (&up->res[j], l, p, rin + skip, out, TE, G, eps);
          reg_resnet (u, p, &up->res[j]);
          if (up->has_attn)
            {
              g_snprintf (p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
              transformer_load (u, &up->attn[j], l, p, out, u->heads[L - 1 - i], u->ctx_dim, G, u->linear_proj);
            }
        }
      if (up->has_sample)
        {
          g_snprintf (p, sizeof p, "up_blocks.%d.upsamplers.0", i);
          oft_upsample_load (&up->up, l, p, out);
          g_strlcat (p, ".conv", sizeof p);
          reg (u, p, up->up.w, out, (int64_t) out * 9, NULL);
        }
    }
  u->nout_w = oft_weights_get (l, OFT_SHAPE (u->ch[0]), "conv_norm_out.weight");
  u->nout_b = oft_weights_get (l, OFT_SHAPE (u->ch[0]), "conv_norm_out.bias");
  u->cout_w = oft_weights_get (l, OFT_SHAPE (u->out_ch, u->ch[0], 3, 3), "conv_out.weight");
  u->cout_b = oft_weights_get (l, OFT_SHAPE (u->out_ch), "conv_out.bias");
  reg (u, "time_embedding.linear_1", u->t1w, TE, u->tproj, NULL);
  reg (u, "time_embedding.linear_2", u->t2w, TE, TE, NULL);
  reg (u, "conv_in", u->cin_w, u->ch[0], (int64_t) u->in_ch * 9, NULL);
  reg (u, "conv_out", u->cout_w, u->out_ch, (int64_t) u->ch[0] * 9, NULL);
}

OftUnet *
oft_unet_load_from (const char *cfg_path, const OftWeightSource *src, GError **error)
{
  OftUnet *u = g_new0 (OftUnet, 1);
  oft_arena_init (&u->params, "unet-params", 0);
  oft_arena_init (&u->acts, "unet-activations", 0);
  oft_arena_init (&u->train_acts, "unet-training", 0);
  u->modules = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  OftConfig c;
  bool cross_down[MAX_LEVELS] = { 0 }, cross_up[MAX_LEVELS] = { 0 };
  gboolean ok = FALSE;
  if (!oft_config_open (&c, cfg_path, error))
    goto out;
  read_config (u, &c, cross_down, cross_up);
  if (!oft_config_finish (&c, error))
    goto out;
  u->params_list = oft_params_new ();
  OftWeightLoader l = { .src = src, .arena = &u->params, .record = u->params_list };
  load_weights (u, &l, cross_down, cross_up);
  ok = oft_weights_finish (&l, error);
out:
  oft_config_close (&c);
  if (!ok)
    {
      oft_unet_free (u);
      return NULL;
    }
  return u;
}

OftUnet *
oft_unet_load (const char *dir, GError **error)
{
  char *cfg_path = g_build_filename (dir, "config.json", NULL);
  char *st_path = g_build_filename (dir, "diffusion_pytorch_model.safetensors", NULL);
  OftUnet *u = NULL;
  OftSafetensors *st = NULL;
  /* the config is read first, so its errors come before a missing weights file's */
  GError *open_error = NULL;
  st = oft_safetensors_open (st_path, &open_error);
  OftWeightSource src = { .st = st, .open_error = open_error };
  u = oft_unet_load_from (cfg_path, &src, error);
  g_clear_error (&open_error);
  oft_safetensors_close (st);
  g_free (cfg_path);
  g_free (st_path);
  return u;
}

void
oft_unet_free (OftUnet *u)
{
  if (!u)
    return;
  oft_unet_device_release (u);
  oft_unet_detach_trainable (u);  /* first: it clears pointers inside the blocks freed below */
  for (int i = 0; i < MAX_LEVELS; i++)
    for (int j = 0; j < MAX_LAYERS; j++)
      {
        transformer_free (&u->down[i].attn[j]);
        transformer_free (&u->up[i].attn[j]);
      }
  transformer_free (&u->mid_attn);
  g_hash_table_destroy (u->modules);
  oft_params_free (u->params_list);
  oft_arena_release (&u->train_acts);
  oft_arena_release (&u->params);
  oft_arena_release (&u->acts);
  g_free (u);
}

gboolean
oft_unet_apply_adapter (OftUnet *u, const OftPeftAdapter *a, gboolean merge, GError **error)
{
  const OftAdapterConfig *cfg = oft_peft_adapter_config (a);
  size_t n = oft_peft_adapter_n_modules (a);
  /* check every module first, so that a bad adapter leaves the UNet untouched */
  for (size_t i = 0; i < n; i++)
    {
      const OftAdapterModule *m = oft_peft_adapter_module (a, i);
      if (!g_hash_table_lookup (u->modules, m->module))
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND,
                       "the adapter's module '%s' is not a Linear or Conv2d of this UNet", m->module);
          return FALSE;
        }
    }
  LinRot **rots = g_new0 (LinRot *, n ? n : 1);
  float **merged = g_new0 (float *, n ? n : 1);  /* merged copies, swapped in once all succeeded */
  gboolean ok = TRUE;
  for (size_t i = 0; ok && i < n; i++)
    {
      const OftAdapterModule *m = oft_peft_adapter_module (a, i);
      Module *mod = g_hash_table_lookup (u->modules, m->module);
      /* BOFT, conv modules and OFT with a fitted magnitude always merge; OFT on a Linear may run input-centric */
      if (!merge && mod->lin && cfg->kind == OFT_ADAPTER_OFT && m->scale.ndim == 0)
        {
          rots[i] = g_new0 (LinRot, 1);
          rots[i]->R = oft_adapter_rotation (&rots[i]->spec, mod->d, cfg, &m->param, m->module, error);
          ok = rots[i]->R != NULL;
        }
      else
        {
          merged[i] = g_memdup2 (mod->w, sizeof (float) * (size_t) (mod->out * mod->d));
          ok = oft_adapter_merge (merged[i], mod->out, mod->d, cfg, &m->param, m->scale.ndim ? &m->scale : NULL,
                                  m->module, error);
        }
    }
  for (size_t i = 0; i < n; i++)
    {
      Module *mod = g_hash_table_lookup (u->modules, oft_peft_adapter_module (a, i)->module);
      if (ok && rots[i])
        {
          if (!mod->lin->rots)
            mod->lin->rots = g_ptr_array_new_with_free_func (lin_rot_free);
          g_ptr_array_add (mod->lin->rots, rots[i]);
        }
      else if (rots[i])
        lin_rot_free (rots[i]);
      if (ok && merged[i])
        memcpy (mod->w, merged[i], sizeof (float) * (size_t) (mod->out * mod->d));
      g_free (merged[i]);
    }
  g_free (merged);
  g_free (rots);
  /* a UNet on the GPU carries the new rotations or merged weights there too */
  return ok && oft_unet_device_refresh (u, error);
}

gboolean
oft_unet_forward (OftUnet *u, const float *sample, const float *timesteps, const float *context,
                  int B, int h, int w, int T, float *out, GError **error)
{
  int L = u->n_levels, mult = oft_unet_size_multiple (u);
  if (B < 1 || T < 1 || h < 1 || w < 1 || h % mult || w % mult)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE,
                   "UNet input %d×%d×%d (context length %d): the latent size must be a positive multiple of %d",
                   B, h, w, T, mult);
      return FALSE;
    }
  if (u->dev)
    return u->dev_ops->unet_forward (u->dev, sample, timesteps, context, B, h, w, T, out, error);
  OftArena *a = &u->acts;
  OftArenaMark mark = oft_arena_mark (a);
  char name[64];
  oft_unet_refresh_trainable (u);
  /* activations that do not fit become an error, not an abort (a latent too large for the memory) */
  oft_arena_begin_checked (a);

  /* time embedding; every resnet consumes SiLU(temb) */
  float *tp = oft_arena_scratch (a, (size_t) B * u->tproj), *t1 = oft_arena_scratch (a, (size_t) B * u->temb);
  float *temb = oft_arena_scratch (a, (size_t) B * u->temb);
  if (oft_arena_failed (a))
    goto out;
  oft_timestep_embedding (tp, timesteps, B, u->tproj, u->flip, u->freq_shift, 10000.0f);
  tap (u, "time_proj", tp, (int64_t) B * u->tproj);
  oft_linear_forward (t1, tp, u->t1w, u->t1b, B, u->tproj, u->temb);
  oft_silu_forward (t1, t1, (int64_t) B * u->temb);
  oft_linear_forward (temb, t1, u->t2w, u->t2b, B, u->temb, u->temb);
  tap (u, "time_embedding", temb, (int64_t) B * u->temb);
  oft_silu_forward (t1, temb, (int64_t) B * u->temb);
  const float *temb_act = t1;

  /* skip connections, largest first */
  float *skips[1 + MAX_LEVELS * (MAX_LAYERS + 1)];
  int skip_ch[G_N_ELEMENTS (skips)], n_skips = 0;
  int cmax = 0;
  for (int i = 0; i < L; i++)
    cmax = MAX (cmax, u->ch[i]);
  size_t big = (size_t) B * 2 * cmax * h * w; /* room for a concat at full resolution */
  float *x = oft_arena_scratch (a, big), *y = oft_arena_scratch (a, big), *cat = oft_arena_scratch (a, big);
  if (oft_arena_failed (a))
    goto out;

  oft_conv_apply (a, x, sample, u->cin_w, u->cin_b, B, u->in_ch, h, w, u->ch[0], 3, 1, 1);
  tap (u, "conv_in", x, (int64_t) B * u->ch[0] * h * w);
  if (u->control)
    oft_add_forward (x, x, u->control, (int64_t) B * u->ch[0] * h * w);
  int H = h, W = w, C = u->ch[0];
  /* a refused allocation in a block (or here) stops the forward */
#define PUSH()                                                                         \
  do {                                                                                 \
    skips[n_skips] = oft_arena_scratch (a, (size_t) B * C * H * W);                     \
    if (oft_arena_failed (a))                                                          \
      goto out;                                                                        \
    memcpy (skips[n_skips], x, (size_t) B * C * H * W * sizeof (float));               \
    skip_ch[n_skips++] = C;                                                            \
  } while (0)
  PUSH ();
  for (int i = 0; i < L; i++)
    {
      Level *d = &u->down[i];
      for (int j = 0; j < d->n; j++)
        {
          oft_resnet_forward (a, y, x, temb_act, &d->res[j], B, H, W);
          float *t = x; x = y; y = t;
          C = d->out_ch;
          if (d->has_attn)
            oft_unet_transformer_forward (a, x, context, &d->attn[j], B, H, W, T, NULL);
          PUSH (); /* checks the blocks' allocations too */
        }
      if (d->has_sample)
        {
          oft_downsample_forward (a, y, x, &d->down, B, H, W);
          H /= 2, W /= 2;
          float *t = x; x = y; y = t;
          PUSH ();
        }
      g_snprintf (name, sizeof name, "down_blocks.%d", i);
      tap (u, name, x, (int64_t) B * C * H * W);
    }

  oft_resnet_forward (a, y, x, temb_act, &u->mid_r0, B, H, W);
  oft_unet_transformer_forward (a, y, context, &u->mid_attn, B, H, W, T, NULL);
  oft_resnet_forward (a, x, y, temb_act, &u->mid_r1, B, H, W);
  if (oft_arena_failed (a))
    goto out;
  tap (u, "mid_block", x, (int64_t) B * C * H * W);

  for (int i = 0; i < L; i++)
    {
      Level *up = &u->up[i];
      for (int j = 0; j < up->n; j++)
        {
          int sc = skip_ch[--n_skips];
          oft_concat_forward (cat, x, skips[n_skips], B, C, sc, (int64_t) H * W);
          oft_resnet_forward (a, x, cat, temb_act, &up->res[j], B, H, W);
          C = up->out_ch;
          if (up->has_attn)
            oft_unet_transformer_forward (a, x, context, &up->attn[j], B, H, W, T, NULL);
          if (oft_arena_failed (a))
            goto out;
        }
      if (up->has_sample)
        {
          oft_upsample_forward (a, y, x, &up->up, B, H, W);
          H *= 2, W *= 2;
          float *t = x; x = y; y = t;
        }
      if (oft_arena_failed (a))
        goto out;
      g_snprintf (name, sizeof name, "up_blocks.%d", i);
      tap (u, name, x, (int64_t) B * C * H * W);
    }
#undef PUSH

  float *mean = oft_arena_scratch (a, (size_t) B * u->groups), *rstd = oft_arena_scratch (a, (size_t) B * u->groups);
  if (oft_arena_failed (a))
    goto out;
  oft_groupnorm_forward (y, mean, rstd, x, u->nout_w, u->nout_b, B, C, (int64_t) H * W, u->groups, u->norm_eps);
  tap (u, "conv_norm_out", y, (int64_t) B * C * H * W);
  oft_silu_forward (y, y, (int64_t) B * C * H * W);
  oft_conv_apply (a, out, y, u->cout_w, u->cout_b, B, C, H, W, u->out_ch, 3, 1, 1);
out:
  oft_arena_reset (a, mark);
  if (!oft_arena_end_checked (a, error))
    {
      g_prefix_error (error, "UNet forward of %d×%d×%d×%d latents: ", B, u->in_ch, h, w);
      return FALSE;
    }
  return TRUE;
}

/* ---- arithmetic of one forward, for benchmarks: the GEMM/conv/attention multiply-adds ×2 ---- */

static double
resnet_flops (const OftResnet *r, double B, double HW)
{
  double f = 2 * B * HW * 9.0 * ((double) r->cin * r->cout + (double) r->cout * r->cout);
  if (r->scw)
    f += 2 * B * HW * r->cin * r->cout;
  return f;
}

static double
transformer_flops (const Transformer *t, double B, double HW, double T)
{
  double N = B * HW, C = t->ch, D = t->inner, f = 2 * N * C * D * 2;  /* proj_in, proj_out */
  for (int i = 0; i < t->n_blocks; i++)
    {
      const TBlock *b = &t->blocks[i];
      f += 2 * N * D * D * 4;                        /* attn1 q, k, v, out */
      f += 2 * N * HW * D * 2;                       /* attn1 scores and values */
      f += 2 * N * D * D * 2 + 2 * B * T * b->ctx * D * 2;  /* attn2 q, out; k, v over the context */
      f += 2 * N * T * D * 2;                        /* attn2 scores and values */
      f += 2 * N * D * 2.0 * b->ff + 2 * N * b->ff * D;     /* GEGLU proj and out */
    }
  return f;
}

double
oft_unet_forward_flops (const OftUnet *u, int B, int h, int w, int T)
{
  double HW = (double) h * w, f = 2.0 * B * HW * 9 * u->in_ch * u->ch[0];
  for (int i = 0; i < u->n_levels; i++)
    {
      const Level *d = &u->down[i];
      for (int j = 0; j < d->n; j++)
        {
          f += resnet_flops (&d->res[j], B, HW);
          if (d->has_attn)
            f += transformer_flops (&d->attn[j], B, HW, T);
        }
      if (d->has_sample)
        {
          HW /= 4;
          f += 2.0 * B * HW * 9 * d->out_ch * d->out_ch;
        }
    }
  f += resnet_flops (&u->mid_r0, B, HW) + transformer_flops (&u->mid_attn, B, HW, T) + resnet_flops (&u->mid_r1, B, HW);
  for (int i = 0; i < u->n_levels; i++)
    {
      const Level *up = &u->up[i];
      for (int j = 0; j < up->n; j++)
        {
          f += resnet_flops (&up->res[j], B, HW);
          if (up->has_attn)
            f += transformer_flops (&up->attn[j], B, HW, T);
        }
      if (up->has_sample)
        {
          HW *= 4;
          f += 2.0 * B * HW * 9 * up->out_ch * up->out_ch;
        }
    }
  return f + 2.0 * B * HW * 9 * u->ch[0] * u->out_ch;
}

OftUnet *
oft_unet_new_random (const char *config_path, guint64 seed, GError **error)
{
  OftWeightSource src = { .random_init = TRUE, .seed = seed };
  return oft_unet_load_from (config_path, &src, error);
}

/* ---- enumeration for the trainer (read-only over the module table) ---- */

static void
unet_linear_free (gpointer p)
{
  OftUnetLinear *l = p;
  g_free (l->path);
  g_free (l);
}

static int
unet_linear_cmp (gconstpointer a, gconstpointer b)
{
  return strcmp ((*(OftUnetLinear *const *) a)->path, (*(OftUnetLinear *const *) b)->path);
}

GPtrArray *
oft_unet_list_linear_modules (const OftUnet *u)
{
  GPtrArray *list = g_ptr_array_new_with_free_func (unet_linear_free);
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init (&it, u->modules);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      const Module *m = value;
      if (!m->lin)
        continue;
      OftUnetLinear *l = g_new (OftUnetLinear, 1);
      *l = (OftUnetLinear) { .path = g_strdup (key), .in_features = m->lin->in, .out_features = m->lin->out };
      g_ptr_array_add (list, l);
    }
  g_ptr_array_sort (list, unet_linear_cmp);
  return list;
}

const float *
oft_unet_module_weight (const OftUnet *u, const char *path, int64_t *out, int64_t *d)
{
  const Module *m = g_hash_table_lookup (u->modules, path);
  if (!m)
    return NULL;
  *out = m->out;
  *d = m->d;
  return m->w;
}
