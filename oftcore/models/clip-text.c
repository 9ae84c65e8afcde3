/* CLIP text encoder forward (inference). Parameters live in one arena; activations in a second one
 * that is rewound after every call. */
#include "oft/clip.h"
#include "oft/nn.h"
#include "oft/error.h"
#include "config.h"
#include "clip-private.h"
#include <string.h>

const OftClipConfig *
oft_clip_text_config (const OftClipText *m)
{
  return &m->cfg;
}

static OftClipText *
load_weights (const OftClipConfig *cfg, const OftWeightSource *src, GError **error)
{
  OftClipText *m = g_new0 (OftClipText, 1);
  m->cfg = *cfg;
  oft_arena_init (&m->params, "clip-params", 0);
  oft_arena_init (&m->acts, "clip-activations", 0);
  int64_t H = cfg->hidden, I = cfg->intermediate;
  m->params_list = oft_params_new ();
  oft_arena_init (&m->train_acts, "clip-training", 0);
  OftWeightLoader l = { .src = src, .arena = &m->params, .record = m->params_list };
  m->tok_emb = oft_weights_get (&l, OFT_SHAPE (cfg->vocab_size, H), "text_model.embeddings.token_embedding.weight");
  m->pos_emb = oft_weights_get (&l, OFT_SHAPE (cfg->max_positions, H), "text_model.embeddings.position_embedding.weight");
  m->layers = g_new0 (ClipLayer, cfg->n_layers);
  for (int i = 0; i < cfg->n_layers; i++)
    {
      ClipLayer *y = &m->layers[i];
#define P(field, what, ...) y->field = oft_weights_get (&l, OFT_SHAPE (__VA_ARGS__), "text_model.encoder.layers.%d." what, i)
      P (ln1_w, "layer_norm1.weight", H);
      P (ln1_b, "layer_norm1.bias", H);
      P (ln2_w, "layer_norm2.weight", H);
      P (ln2_b, "layer_norm2.bias", H);
      P (q_w, "self_attn.q_proj.weight", H, H);
      P (q_b, "self_attn.q_proj.bias", H);
      P (k_w, "self_attn.k_proj.weight", H, H);
      P (k_b, "self_attn.k_proj.bias", H);
      P (v_w, "self_attn.v_proj.weight", H, H);
      P (v_b, "self_attn.v_proj.bias", H);
      P (o_w, "self_attn.out_proj.weight", H, H);
      P (o_b, "self_attn.out_proj.bias", H);
      P (fc1_w, "mlp.fc1.weight", I, H);
      P (fc1_b, "mlp.fc1.bias", I);
      P (fc2_w, "mlp.fc2.weight", H, I);
      P (fc2_b, "mlp.fc2.bias", H);
#undef P
    }
  m->final_w = oft_weights_get (&l, OFT_SHAPE (H), "text_model.final_layer_norm.weight");
  m->final_b = oft_weights_get (&l, OFT_SHAPE (H), "text_model.final_layer_norm.bias");
  if (!oft_weights_finish (&l, error))
    {
      oft_clip_text_free (m);
      return NULL;
    }
  return m;
}

OftClipText *
oft_clip_text_load_from (const char *cfg_path, const OftWeightSource *src, GError **error)
{
  OftClipText *m = NULL;
  OftConfig c;
  if (!oft_config_open (&c, cfg_path, error))
    return NULL;
  OftClipConfig cfg = {
    .vocab_size = oft_config_int (&c, "vocab_size", 49408, 1, 1 << 24),
    .hidden = oft_config_int (&c, "hidden_size", 768, 1, 1 << 16),
    .intermediate = oft_config_int (&c, "intermediate_size", 3072, 1, 1 << 18),
    .n_layers = oft_config_int (&c, "num_hidden_layers", 12, 1, 1024),
    .n_heads = oft_config_int (&c, "num_attention_heads", 12, 1, 1024),
    .max_positions = oft_config_int (&c, "max_position_embeddings", 77, 1, 1 << 16),
    .ln_eps = (float) oft_config_double (&c, "layer_norm_eps", 1e-5, 0, 1),
  };
  const char *act = oft_config_string (&c, "hidden_act", "quick_gelu");
  if (g_strcmp0 (act, "quick_gelu") == 0)
    cfg.act = OFT_ACT_QUICK_GELU;
  else if (g_strcmp0 (act, "gelu") == 0)
    cfg.act = OFT_ACT_GELU;
  else if (g_strcmp0 (act, "gelu_new") == 0 || g_strcmp0 (act, "gelu_pytorch_tanh") == 0)
    cfg.act = OFT_ACT_GELU_TANH;
  else if (!c.error)
    g_set_error (&c.error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                 "%s: \"hidden_act\" \"%s\" is not supported (quick_gelu, gelu, gelu_new)", cfg_path, act);
  if (!c.error && cfg.hidden % cfg.n_heads != 0)
    g_set_error (&c.error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                 "%s: hidden_size %d is not a multiple of num_attention_heads %d", cfg_path, cfg.hidden, cfg.n_heads);
  if (oft_config_finish (&c, error))
    m = load_weights (&cfg, src, error);
  oft_config_close (&c);
  return m;
}

OftClipText *
oft_clip_text_load (const char *dir, GError **error)
{
  char *cfg_path = g_build_filename (dir, "config.json", NULL);
  char *st_path = g_build_filename (dir, "model.safetensors", NULL);
  OftClipText *m = NULL;
  /* the config is read first, so its errors come before a missing weights file's */
  GError *open_error = NULL;
  OftSafetensors *st = oft_safetensors_open (st_path, &open_error);
  OftWeightSource src = { .st = st, .open_error = open_error };
  m = oft_clip_text_load_from (cfg_path, &src, error);
  g_clear_error (&open_error);
  oft_safetensors_close (st);
  g_free (cfg_path);
  g_free (st_path);
  return m;
}

void
oft_clip_text_free (OftClipText *m)
{
  if (!m)
    return;
  oft_clip_text_discard_tape (m);
  oft_params_free (m->params_list);
  oft_arena_release (&m->params);
  oft_arena_release (&m->acts);
  oft_arena_release (&m->train_acts);
  g_free (m->layers);
  g_free (m);
}

static void
activation (OftActivation act, float *out, const float *inp, int64_t n)
{
  switch (act)
    {
    case OFT_ACT_QUICK_GELU: oft_quick_gelu_forward (out, inp, n); break;
    case OFT_ACT_GELU: oft_gelu_forward (out, inp, n); break;
    default: oft_gelu_tanh_forward (out, inp, n); break;
    }
}

gboolean
oft_clip_text_forward (OftClipText *m, const int32_t *ids, int B, int clip_skip, float *out,
                       float *hidden_states, GError **error)
{
  const OftClipConfig *c = &m->cfg;
  int T = c->max_positions, H = c->hidden, I = c->intermediate, NH = c->n_heads;
  int64_t N = (int64_t) B * T;
  if (clip_skip < 0 || clip_skip >= c->n_layers)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "clip skip %d: expected 0 to %d", clip_skip,
                   c->n_layers - 1);
      return FALSE;
    }
  for (int64_t i = 0; i < N; i++)
    if (ids[i] < 0 || ids[i] >= c->vocab_size)
      {
        g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "token id %d outside the vocabulary of %d",
                     ids[i], c->vocab_size);
        return FALSE;
      }
  OftArenaMark mark = oft_arena_mark (&m->acts);
  oft_arena_begin_checked (&m->acts);  /* a batch too large for the memory is an error */
  float *x = oft_arena_scratch (&m->acts, N * H), *h = oft_arena_scratch (&m->acts, N * H);
  float *q = oft_arena_scratch (&m->acts, N * H), *k = oft_arena_scratch (&m->acts, N * H);
  float *v = oft_arena_scratch (&m->acts, N * H), *a = oft_arena_scratch (&m->acts, N * H);
  float *att = oft_arena_scratch (&m->acts, (size_t) B * NH * T * T);
  float *f = oft_arena_scratch (&m->acts, N * I), *g = oft_arena_scratch (&m->acts, N * I);
  float *mean = oft_arena_scratch (&m->acts, N), *rstd = oft_arena_scratch (&m->acts, N);
  if (oft_arena_failed (&m->acts))
    {
      oft_arena_reset (&m->acts, mark);
      oft_arena_end_checked (&m->acts, error);
      g_prefix_error (error, "CLIP text encoder forward of %d×%d tokens: ", B, T);
      return FALSE;
    }

  for (int64_t i = 0; i < N; i++)
    {
      const float *te = m->tok_emb + (int64_t) ids[i] * H, *pe = m->pos_emb + (i % T) * H;
      for (int j = 0; j < H; j++)
        x[i * H + j] = te[j] + pe[j];
    }
  if (hidden_states)
    memcpy (hidden_states, x, N * H * sizeof (float));
  int stop = c->n_layers - clip_skip;
  for (int l = 0; l < c->n_layers; l++)
    {
      if (l >= stop && !hidden_states)
        break;
      ClipLayer *y = &m->layers[l];
      oft_layernorm_forward (h, mean, rstd, x, y->ln1_w, y->ln1_b, N, H, c->ln_eps);
      oft_linear_forward (q, h, y->q_w, y->q_b, N, H, H);
      oft_linear_forward (k, h, y->k_w, y->k_b, N, H, H);
      oft_linear_forward (v, h, y->v_w, y->v_b, N, H, H);
      oft_attention_forward (a, att, q, k, v, B, T, T, NH, H / NH, true);
      oft_linear_forward (h, a, y->o_w, y->o_b, N, H, H);
      oft_add_forward (x, x, h, N * H);
      oft_layernorm_forward (h, mean, rstd, x, y->ln2_w, y->ln2_b, N, H, c->ln_eps);
      oft_linear_forward (f, h, y->fc1_w, y->fc1_b, N, H, I);
      activation (c->act, g, f, N * I);
      oft_linear_forward (h, g, y->fc2_w, y->fc2_b, N, I, H);
      oft_add_forward (x, x, h, N * H);
      if (hidden_states)
        memcpy (hidden_states + (l + 1) * N * H, x, N * H * sizeof (float));
      if (l + 1 == stop)
        oft_layernorm_forward (out, mean, rstd, x, m->final_w, m->final_b, N, H, c->ln_eps);
    }
  oft_arena_reset (&m->acts, mark);
  return oft_arena_end_checked (&m->acts, error);
}
