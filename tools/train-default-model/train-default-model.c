/* The recipe of the bundled default model (issue 6): a small latent diffusion model with the SD 1.5
 * architecture, trained from scratch by oftcore on procedural scenes (oft/scenes.h).
 *
 *   train-default-model OUT [--scenes N] [--vae-steps N] [--unet-steps N] [--batch B] [--seed S]
 *                           [--min-shapes K] [--max-shapes K] [--plain] [--latent-channels C] [--ema D]
 *                           [--eval N] [--minutes M] [--reuse-vae] [--resume] [--resume-vae] [--identifiers P]
 *                           [--partial-captions P] [--vae-broad P]
 *   train-default-model OUT --eval-only [--eval N] [--eval-vae N] [--eval-seen]
 *
 * 1. configs: VAE 16/32/64/64 (factor 8, 4 latent channels: 64×64 images ↔ 8×8 latents), UNet
 *    32/64/64 with one layer per block and cross-attention in the first two levels, a CLIPTextModel of
 *    2 layers, hidden 64, over a vocabulary of the caption words only (tokenizer/ in CLIP's BPE format,
 *    every caption word one token, checked through oft_tokenizer_load_dir), DDIM scaled-linear schedule;
 * 2. N training scenes (the held-out caption split is never drawn), 64×64;
 * 3. the VAE: reconstruction MSE + 1e-6 · KL (LDM's first stage without GAN/LPIPS), AdamW, with
 *    --vae-broad P of the images in random colours and textures (broad_image); its scaling_factor is set
 *    to 1/std of the training scenes' latents, as LDM does;
 * 4. UNet + text encoder jointly on the cached latents: DDPM ε-prediction loss, uniform timesteps,
 *    captions dropped to "" 10% of the time (for classifier-free guidance); of the others 15% say less
 *    (no background clause, no colours, or neither: --partial-captions) and 10% get a rare identifier
 *    word ("sks" or random letters, --identifiers); AdamW with a cosine
 *    schedule (over the time bound when --minutes ends first); an EMA of the weights is what is saved;
 * 5. fp16 safetensors in a diffusers folder, then --eval N held-out captions generated (DDIM 20 steps)
 *    and checked with the scene analyser; the match rate is printed. --eval-vae checks the VAE's
 *    reconstructions the same way: the best the UNet could reach.
 * --minutes bounds the UNet phase's wall time (checkpoints are written every 500 steps); --reuse-vae
 * keeps the VAE already in OUT (with its scaling factor) and trains only the UNet and text encoder;
 * --resume (implies --reuse-vae) also starts the UNet and text encoder from their weights in OUT, with a
 * fresh optimizer and schedule: the model can be trained in several sittings; --resume-vae continues the
 * VAE in OUT the same way (the UNet is then trained anew on its latents). */
#include "oft/oft.h"
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define IMG 64

/* the scene distribution of the training set and of the evaluations (--min/--max-shapes, --plain) */
static OftSceneGenParams data_params;
/* the caption split the evaluations draw from: held out, or (--eval-seen, a diagnostic of fit against
 * generalisation) the training one, with scenes of another seed */
static OftSceneSplit eval_split = OFT_SCENE_SPLIT_HELDOUT;

static void
die (GError *e)
{
  fprintf (stderr, "train-default-model: %s\n", e ? e->message : "failed");
  exit (1);
}

static void
write_text (const char *dir, const char *sub, const char *name, const char *text)
{
  char *d = g_build_filename (dir, sub, NULL);
  g_mkdir_with_parents (d, 0755);
  char *p = g_build_filename (d, name, NULL);
  GError *e = NULL;
  if (!oft_file_write_atomic (p, text, strlen (text), &e))
    die (e);
  g_free (p);
  g_free (d);
}

/* ---- configs ---- */

static const char unet_cfg_fmt[] =
  "{\"_class_name\": \"UNet2DConditionModel\", \"_diffusers_version\": \"0.31.0\", \"act_fn\": \"silu\",\n"
  " \"attention_head_dim\": 4, \"block_out_channels\": [32, 64, 64], \"center_input_sample\": false,\n"
  " \"cross_attention_dim\": 64, \"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"],\n"
  " \"downsample_padding\": 1, \"flip_sin_to_cos\": true, \"freq_shift\": 0, \"in_channels\": %d, \"layers_per_block\": 1,\n"
  " \"mid_block_scale_factor\": 1, \"mid_block_type\": \"UNetMidBlock2DCrossAttn\", \"norm_eps\": 1e-05, \"norm_num_groups\": 8,\n"
  " \"out_channels\": %d, \"sample_size\": 8, \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"],\n"
  " \"use_linear_projection\": false}\n";

static const char vae_cfg_fmt[] =
  "{\"_class_name\": \"AutoencoderKL\", \"_diffusers_version\": \"0.31.0\", \"act_fn\": \"silu\",\n"
  " \"block_out_channels\": [16, 32, 64, 64], \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\",\n"
  " \"DownEncoderBlock2D\", \"DownEncoderBlock2D\"], \"in_channels\": 3, \"latent_channels\": %d, \"layers_per_block\": 1,\n"
  " \"norm_num_groups\": 8, \"out_channels\": 3, \"sample_size\": 64, \"scaling_factor\": %.6f,\n"
  " \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}\n";

static const char clip_cfg_fmt[] =
  "{\"architectures\": [\"CLIPTextModel\"], \"model_type\": \"clip_text_model\", \"hidden_act\": \"quick_gelu\",\n"
  " \"hidden_size\": 64, \"intermediate_size\": 128, \"num_attention_heads\": 4, \"num_hidden_layers\": 2,\n"
  " \"max_position_embeddings\": 77, \"layer_norm_eps\": 1e-05, \"vocab_size\": %d, \"bos_token_id\": %d,\n"
  " \"eos_token_id\": %d, \"pad_token_id\": %d, \"projection_dim\": 64, \"torch_dtype\": \"float16\"}\n";

static const char sched_cfg[] =
  "{\"_class_name\": \"DDIMScheduler\", \"_diffusers_version\": \"0.31.0\", \"beta_end\": 0.012,\n"
  " \"beta_schedule\": \"scaled_linear\", \"beta_start\": 0.00085, \"clip_sample\": false,\n"
  " \"num_train_timesteps\": 1000, \"prediction_type\": \"epsilon\", \"set_alpha_to_one\": false,\n"
  " \"steps_offset\": 1, \"timestep_spacing\": \"leading\", \"trained_betas\": null}\n";

static const char index_json[] =
  "{\"_class_name\": \"StableDiffusionPipeline\", \"_diffusers_version\": \"0.31.0\",\n"
  " \"feature_extractor\": [null, null], \"image_encoder\": [null, null], \"requires_safety_checker\": false,\n"
  " \"safety_checker\": [null, null], \"scheduler\": [\"diffusers\", \"DDIMScheduler\"],\n"
  " \"text_encoder\": [\"transformers\", \"CLIPTextModel\"], \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],\n"
  " \"unet\": [\"diffusers\", \"UNet2DConditionModel\"], \"vae\": [\"diffusers\", \"AutoencoderKL\"]}\n";

/* ---- a CLIP BPE vocabulary of the caption words ----
 * Tokens: every lower-case letter alone and with "</w>", ",</w>", the special tokens, and each word
 * built by merges. Merges are added word by word: the word is run through the merges so far (BPE:
 * lowest rank first) and wherever it gets stuck, merges joining its pieces left to right are appended
 * (higher ranks than all before, so words already whole stay whole). */

typedef struct {
  GHashTable *rank;     /* "a b" → rank+1 */
  GPtrArray *merges;    /* "a b" */
  GHashTable *vocab;    /* token → id+1 */
  GPtrArray *tokens;
} Bpe;

static void
bpe_add_token (Bpe *b, const char *t)
{
  if (!g_hash_table_contains (b->vocab, t))
    {
      g_ptr_array_add (b->tokens, g_strdup (t));
      g_hash_table_insert (b->vocab, g_strdup (t), GINT_TO_POINTER (b->tokens->len));
    }
}

/* pieces of `word` after the current merges */
static GPtrArray *
bpe_run (Bpe *b, const char *word)
{
  GPtrArray *p = g_ptr_array_new_with_free_func (g_free);
  size_t n = strlen (word);
  for (size_t i = 0; i < n; i++)
    g_ptr_array_add (p, i + 1 == n ? g_strdup_printf ("%c</w>", word[i]) : g_strdup_printf ("%c", word[i]));
  for (;;)
    {
      int best = -1, best_rank = G_MAXINT;
      for (guint i = 0; i + 1 < p->len; i++)
        {
          char *pair = g_strdup_printf ("%s %s", (char *) p->pdata[i], (char *) p->pdata[i + 1]);
          int r = GPOINTER_TO_INT (g_hash_table_lookup (b->rank, pair));
          g_free (pair);
          if (r && r < best_rank)
            best_rank = r, best = (int) i;
        }
      if (best < 0)
        return p;
      char *joined = g_strconcat (p->pdata[best], p->pdata[best + 1], NULL);
      g_ptr_array_remove_index (p, best + 1);
      g_free (p->pdata[best]);
      p->pdata[best] = joined;
    }
}

static void
bpe_add_word (Bpe *b, const char *word)
{
  for (;;)
    {
      GPtrArray *p = bpe_run (b, word);
      if (p->len == 1)
        {
          bpe_add_token (b, p->pdata[0]);
          g_ptr_array_unref (p);
          return;
        }
      char *pair = g_strdup_printf ("%s %s", (char *) p->pdata[0], (char *) p->pdata[1]);
      g_ptr_array_add (b->merges, g_strdup (pair));
      g_hash_table_insert (b->rank, pair, GINT_TO_POINTER (b->merges->len));
      char *joined = g_strconcat (p->pdata[0], p->pdata[1], NULL);
      bpe_add_token (b, joined);
      g_free (joined);
      g_ptr_array_unref (p);
    }
}

static int
write_tokenizer (const char *out, GPtrArray *words)
{
  Bpe b = { g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL), g_ptr_array_new_with_free_func (g_free),
            g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL), g_ptr_array_new_with_free_func (g_free) };
  char s[8];
  for (char c = 'a'; c <= 'z'; c++)
    {
      g_snprintf (s, sizeof s, "%c", c);
      bpe_add_token (&b, s);
    }
  for (char c = 'a'; c <= 'z'; c++)
    {
      g_snprintf (s, sizeof s, "%c</w>", c);
      bpe_add_token (&b, s);
    }
  bpe_add_token (&b, ",</w>");
  for (guint i = 0; i < words->len; i++)
    bpe_add_word (&b, words->pdata[i]);
  bpe_add_token (&b, "<|startoftext|>");
  bpe_add_token (&b, "<|endoftext|>");
  GString *v = g_string_new ("{");
  for (guint i = 0; i < b.tokens->len; i++)
    g_string_append_printf (v, "%s\"%s\": %u", i ? ", " : "", (char *) b.tokens->pdata[i], i);
  g_string_append (v, "}\n");
  GString *m = g_string_new ("#version: 0.2 - small caption vocabulary made by train-default-model\n");
  for (guint i = 0; i < b.merges->len; i++)
    g_string_append_printf (m, "%s\n", (char *) b.merges->pdata[i]);
  write_text (out, "tokenizer", "vocab.json", v->str);
  write_text (out, "tokenizer", "merges.txt", m->str);
  write_text (out, "tokenizer", "special_tokens_map.json",
              "{\"bos_token\": \"<|startoftext|>\", \"eos_token\": \"<|endoftext|>\", \"pad_token\": \"<|endoftext|>\","
              " \"unk_token\": \"<|endoftext|>\"}\n");
  write_text (out, "tokenizer", "tokenizer_config.json",
              "{\"model_max_length\": 77, \"do_lower_case\": true, \"tokenizer_class\": \"CLIPTokenizer\"}\n");
  int n = (int) b.tokens->len;
  g_string_free (v, TRUE);
  g_string_free (m, TRUE);
  g_hash_table_destroy (b.rank);
  g_hash_table_destroy (b.vocab);
  g_ptr_array_unref (b.merges);
  g_ptr_array_unref (b.tokens);
  return n;
}

/* every word of the caption grammar, from the vocabulary enums */
static GPtrArray *
caption_words (void)
{
  GHashTable *seen = g_hash_table_new (g_str_hash, g_str_equal);
  GPtrArray *w = g_ptr_array_new_with_free_func (g_free);
  const char *fixed[] = { "a", "an", "on", "background", "and", "sks", "left", "right", "of", "above", "below",
                          "striped", "checkered" };
  GPtrArray *all = g_ptr_array_new ();
  for (size_t i = 0; i < G_N_ELEMENTS (fixed); i++)
    g_ptr_array_add (all, (gpointer) fixed[i]);
  for (int i = 0; i < OFT_SHAPE_COUNT; i++)
    g_ptr_array_add (all, (gpointer) oft_shape_name (i));
  for (int i = 0; i < OFT_COLOUR_COUNT; i++)
    g_ptr_array_add (all, (gpointer) oft_scene_colour_name (i));
  for (guint i = 0; i < all->len; i++)
    if (g_hash_table_add (seen, all->pdata[i]))
      g_ptr_array_add (w, g_strdup (all->pdata[i]));
  g_ptr_array_unref (all);
  g_hash_table_destroy (seen);
  return w;
}

/* The caption with a rare identifier word before one shape's noun: "sks" (the vocabulary's identifier
 * token) one time in three, else 2 to 4 random letters (single-letter tokens). Trained on unchanged
 * images, this teaches that a rare word before the noun leaves the picture as it is: the weak prior that
 * DreamBooth relies on in SD, where "a sks dog" is still a dog before finetuning ("sks" had never been
 * trained; with it, "a yellow sks star on a blue background" draws what the caption without "sks" does).
 * g_free. */
static char *
with_identifier (const char *caption, OftRng *rng)
{
  char **w = g_strsplit (caption, " ", -1);
  int n = (int) g_strv_length (w), nouns[OFT_SCENE_MAX_SHAPES], k = 0;
  for (int i = 0; i < n; i++)
    {
      size_t len = strlen (w[i]) - g_str_has_suffix (w[i], ",");  /* "circle," in a list of three */
      for (int s = 0; s < OFT_SHAPE_COUNT && k < OFT_SCENE_MAX_SHAPES; s++)
        if (strlen (oft_shape_name (s)) == len && !strncmp (w[i], oft_shape_name (s), len))
          nouns[k++] = i;
    }
  char id[5] = "sks";
  if (oft_rng_next (rng) % 3)
    {
      int len = 2 + (int) (oft_rng_next (rng) % 3);
      for (int i = 0; i < len; i++)
        id[i] = (char) ('a' + oft_rng_next (rng) % 26);
      id[len] = 0;
    }
  int at = k ? nouns[oft_rng_next (rng) % (uint64_t) k] : n;
  GString *o = g_string_new (NULL);
  for (int i = 0; i <= n; i++)
    {
      if (i == at)
        g_string_append_printf (o, "%s%s", o->len ? " " : "", id);
      if (i < n)
        g_string_append_printf (o, "%s%s", o->len ? " " : "", w[i]);
    }
  g_strfreev (w);
  return g_string_free (o, FALSE);
}

/* The caption with less said: without its background clause, without its colour words, or without
 * both ("a star"), one in three each. Users leave things out; a model that has only seen full captions
 * draws noise for "a star", and so for "a sks star" before finetuning. g_free. */
static char *
partial_caption (const char *caption, OftRng *rng)
{
  int mode = (int) (oft_rng_next (rng) % 3);  /* 0: no background, 1: no colours, 2: neither */
  const char *on = strstr (caption, " on a");  /* the background clause; no other part says " on " */
  char *shapes = g_strndup (caption, on ? (gsize) (on - caption) : strlen (caption));
  char **w = g_strsplit (shapes, " ", -1);
  GPtrArray *kept = g_ptr_array_new ();
  for (int i = 0; w[i]; i++)
    {
      gboolean colour = FALSE;
      for (int k = 0; k < OFT_COLOUR_COUNT && !colour; k++)
        colour = !strcmp (w[i], oft_scene_colour_name (k));
      if (!colour || mode == 0)
        g_ptr_array_add (kept, w[i]);
    }
  GString *o = g_string_new (NULL);
  for (guint i = 0; i < kept->len; i++)
    {
      const char *word = kept->pdata[i];
      if ((!strcmp (word, "a") || !strcmp (word, "an")) && i + 1 < kept->len)  /* "an orange circle" → "a circle" */
        word = strchr ("aeiou", ((char *) kept->pdata[i + 1])[0]) ? "an" : "a";
      g_string_append_printf (o, "%s%s", o->len ? " " : "", word);
    }
  if (mode == 1 && on)
    g_string_append (o, on);
  g_ptr_array_unref (kept);
  g_strfreev (w);
  g_free (shapes);
  return g_string_free (o, FALSE);
}

/* A "broad" VAE training image: a scene's layout (its segmentation map) with every region filled
 * anew, in random RGB colours, plain or as a checker or stripes of two random colours with a period of
 * 3 to 9 px. SD's VAE learnt from everything; one that has only seen the vocabulary's colours and plain
 * shapes cannot encode anything else (the sks pattern came back from it as a plain star), and then no
 * finetuning of the UNet can draw it. out: [3, IMG, IMG] in [−1, 1]. */
static void
broad_image (float *out, OftRng *rng, const OftSceneGenParams *gp)
{
  OftSceneGenParams any = *gp;
  any.split = OFT_SCENE_SPLIT_ANY;
  OftScene sc;
  oft_scene_generate (&sc, rng, &any);
  GError *e = NULL;
  OftImage *seg = oft_scene_segmentation (&sc, IMG, IMG, &e);
  if (!seg)
    die (e);
  struct { int kind, period; gboolean vertical; float c[2][3]; } fill[OFT_SCENE_SEG_CLASSES];
  for (int k = 0; k < OFT_SCENE_SEG_CLASSES; k++)
    {
      fill[k].kind = (int) (oft_rng_next (rng) % 3);  /* plain, checker, stripes */
      fill[k].period = 3 + (int) (oft_rng_next (rng) % 7);
      fill[k].vertical = oft_rng_uniform (rng) < 0.5;
      for (int j = 0; j < 2; j++)
        for (int ch = 0; ch < 3; ch++)
          fill[k].c[j][ch] = (float) (2 * oft_rng_uniform (rng) - 1);
    }
  for (int y = 0; y < IMG; y++)
    for (int x = 0; x < IMG; x++)
      {
        int k = seg->pixels[y * IMG + x] % OFT_SCENE_SEG_CLASSES, per = fill[k].period;
        int alt = fill[k].kind == 1 ? (x / per + y / per) & 1
                  : fill[k].kind == 2 ? ((fill[k].vertical ? x : y) / per) & 1 : 0;
        for (int ch = 0; ch < 3; ch++)
          out[(ch * IMG + y) * IMG + x] = fill[k].c[alt][ch];
      }
  oft_image_free (seg);
}

/* ---- AdamW over a parameter list ---- */

typedef struct {
  OftParams *p;
  float **m, **v;
  int64_t k;
  OftAdamW o;
} Opt;

static void
opt_init (Opt *o, OftParams *p, double wd)
{
  o->p = p;
  size_t n = oft_params_count (p);
  o->m = g_new (float *, n);
  o->v = g_new (float *, n);
  for (size_t i = 0; i < n; i++)
    {
      o->m[i] = g_new0 (float, oft_params_get (p, i)->numel);
      o->v[i] = g_new0 (float, oft_params_get (p, i)->numel);
    }
  o->k = 0;
  oft_adamw_init (&o->o);
  o->o.weight_decay = wd;
}

static void
opt_step (Opt *o, double lr, double clip)
{
  size_t n = oft_params_count (o->p);
  float **g = g_new (float *, n);
  int64_t *len = g_new (int64_t, n);
  for (size_t i = 0; i < n; i++)
    g[i] = oft_params_get (o->p, i)->grad, len[i] = oft_params_get (o->p, i)->numel;
  oft_clip_grad_norm (g, len, n, clip);
  o->k++;
  for (size_t i = 0; i < n; i++)
    {
      OftParam *x = oft_params_get (o->p, i);
      oft_adamw_step (&o->o, x->data, o->m[i], o->v[i], x->grad, x->numel, o->k, lr);
    }
  oft_params_zero_grads (o->p);
  g_free (g);
  g_free (len);
}

static void
save_params (OftParams *p, const char *out, const char *sub, const char *file)
{
  char *d = g_build_filename (out, sub, NULL);
  g_mkdir_with_parents (d, 0755);
  char *path = g_build_filename (d, file, NULL);
  GError *e = NULL;
  if (!oft_params_save (p, path, OFT_DTYPE_F16, &e))
    die (e);
  g_free (path);
  g_free (d);
}

/* An exponential moving average of the weights (what is saved: it samples better than the last step's
 * weights, as in LDM); the decay ramps up as min(decay, (1 + k) / (10 + k)). */
typedef struct {
  OftParams *p;
  float **avg;
} Ema;

static void
ema_init (Ema *m, OftParams *p)
{
  m->p = p;
  m->avg = g_new (float *, oft_params_count (p));
  for (size_t i = 0; i < oft_params_count (p); i++)
    {
      OftParam *x = oft_params_get (p, i);
      m->avg[i] = g_memdup2 (x->data, sizeof (float) * (size_t) x->numel);
    }
}

static void
ema_update (Ema *m, double decay, int64_t k)
{
  float d = (float) MIN (decay, (1.0 + k) / (10.0 + k));
  for (size_t i = 0; i < oft_params_count (m->p); i++)
    {
      OftParam *x = oft_params_get (m->p, i);
      for (int64_t j = 0; j < x->numel; j++)
        m->avg[i][j] = d * m->avg[i][j] + (1 - d) * x->data[j];
    }
}

static void
ema_free (Ema *m)
{
  for (size_t i = 0; i < oft_params_count (m->p); i++)
    g_free (m->avg[i]);
  g_free (m->avg);
}

/* saves the average (or the weights themselves without one) */
static void
save_weights (OftParams *p, const Ema *m, const char *out, const char *sub, const char *file)
{
  size_t n = oft_params_count (p);
  float **keep = g_new0 (float *, n);
  for (size_t i = 0; m && i < n; i++)
    keep[i] = oft_params_get (p, i)->data, oft_params_get (p, i)->data = m->avg[i];
  save_params (p, out, sub, file);
  for (size_t i = 0; m && i < n; i++)
    oft_params_get (p, i)->data = keep[i];
  g_free (keep);
}

/* ---- evaluation ---- */

/* Analyser verdicts counted per shape count; the first 8 images are kept as OUT/<prefix>-NN.png. */
typedef struct {
  int ok, by[OFT_SCENE_MAX_SHAPES + 1][2];
} Tally;

static gboolean
tally_add (Tally *t, const OftScene *sc, uint8_t *rgb8, const char *out, const char *prefix, int i)
{
  OftImage img = { IMG, IMG, 3, rgb8 };
  OftSceneAnalysis an;
  OftSceneCaption c;
  oft_scene_describe (sc, &c);
  gboolean m = oft_scene_analyse (&img, &an, NULL) && oft_scene_matches_caption (&an, &c);
  t->ok += m;
  t->by[sc->n_shapes][0] += m, t->by[sc->n_shapes][1]++;
  if (i < 8)
    {
      char *name = g_strdup_printf ("%s/%s-%02d.png", out, prefix, i);
      oft_png_write_rgb8 (name, rgb8, IMG, IMG, NULL);
      g_free (name);
    }
  return m;
}

static double
tally_print (const Tally *t, const char *what, int n)
{
  for (int k = 1; k <= OFT_SCENE_MAX_SHAPES; k++)
    if (t->by[k][1])
      printf ("  %d shape%s: %d/%d %s match\n", k, k > 1 ? "s" : "", t->by[k][0], t->by[k][1], what);
  return (double) t->ok / MAX (n, 1);
}

static double
evaluate (const char *out, int n, uint64_t seed, float guidance)
{
  GError *e = NULL;
  OftPipeline *p = oft_pipeline_load (out, &e);
  if (!p)
    die (e);
  OftSceneGenParams gp = data_params;
  gp.split = eval_split;
  Tally t = { 0 };
  float *rgb = g_new (float, 3 * IMG * IMG);
  uint8_t *rgb8 = g_new (uint8_t, 3 * IMG * IMG);
  for (int i = 0; i < n; i++)
    {
      OftScene sc;
      oft_scene_generate_nth (&sc, seed ^ 0xE7A1, (uint64_t) i, &gp);
      char *cap = oft_scene_caption (&sc);
      OftGenerateParams g;
      oft_generate_params_init (&g);
      g.prompt = cap, g.steps = 20, g.guidance = guidance, g.sampler = OFT_SAMPLER_DDIM, g.seed = (uint64_t) i;
      g.width = IMG, g.height = IMG;
      if (!oft_pipeline_generate (p, &g, rgb, NULL, NULL, NULL, &e))
        die (e);
      oft_image_to_rgb8 (rgb8, rgb, IMG, IMG);
      gboolean m = tally_add (&t, &sc, rgb8, out, "eval", i);
      if (i < 8)
        printf ("  eval %d: \"%s\" %s\n", i, cap, m ? "match" : "no match");
      g_free (cap);
    }
  g_free (rgb);
  g_free (rgb8);
  oft_pipeline_free (p);
  return tally_print (&t, "generations", n);
}

/* The VAE's reconstructions of n held-out scenes through the analyser: the match rate the UNet could
 * reach at best, since every generation is decoded by this VAE. */
static double
evaluate_vae (const char *out, int n, uint64_t seed)
{
  GError *e = NULL;
  char *dir = g_build_filename (out, "vae", NULL);
  OftVae *v = oft_vae_load (dir, &e);
  if (!v)
    die (e);
  OftSceneGenParams gp = data_params;
  gp.split = eval_split;
  int f = oft_vae_factor (v), lh = IMG / f;
  Tally t = { 0 };
  float *x = g_new (float, 3 * IMG * IMG), *z = g_new (float, (size_t) oft_vae_latent_channels (v) * lh * lh);
  uint8_t *rgb8 = g_new (uint8_t, 3 * IMG * IMG);
  for (int i = 0; i < n; i++)
    {
      OftScene sc;
      oft_scene_generate_nth (&sc, seed ^ 0xE7A1, (uint64_t) i, &gp);
      OftImage *im = oft_scene_render (&sc, IMG, IMG, 4, &e);
      if (!im)
        die (e);
      oft_train_preprocess (x, im, IMG, false);
      oft_image_free (im);
      if (!oft_vae_encode (v, x, 1, IMG, IMG, z, NULL, &e) || !oft_vae_decode (v, z, 1, lh, lh, x, &e))
        die (e);
      for (int k = 0; k < 3 * IMG * IMG; k++)
        x[k] = CLAMP (x[k] * 0.5f + 0.5f, 0.f, 1.f);
      oft_image_to_rgb8 (rgb8, x, IMG, IMG);
      tally_add (&t, &sc, rgb8, out, "recon", i);
    }
  g_free (x);
  g_free (z);
  g_free (rgb8);
  g_free (dir);
  oft_vae_free (v);
  return tally_print (&t, "reconstructions", n);
}

int
main (int argc, char **argv)
{
  int n_scenes = 4000, vae_steps = 3000, unet_steps = 20000, batch = 16, eval_n = 50, eval_vae_n = 0;
  int min_shapes = 1, max_shapes = 3, latent_channels = 4;
  gboolean plain = FALSE;
  double ema_decay = 0.999;
  gint64 seed = 1;
  double minutes = 0, guidance = 4.0, identifier_p = 0.1, partial_p = 0.15, vae_broad = 0;
  gboolean eval_only = FALSE, reuse_vae = FALSE, resume = FALSE, resume_vae = FALSE, eval_seen = FALSE;
  GOptionEntry entries[] = {
    { "scenes", 0, 0, G_OPTION_ARG_INT, &n_scenes, "training scenes", "N" },
    { "vae-steps", 0, 0, G_OPTION_ARG_INT, &vae_steps, "VAE steps", "N" },
    { "unet-steps", 0, 0, G_OPTION_ARG_INT, &unet_steps, "UNet + text encoder steps", "N" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &batch, "batch size", "B" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "dataset and init seed", "S" },
    { "eval", 0, 0, G_OPTION_ARG_INT, &eval_n, "held-out captions to generate and check", "N" },
    { "guidance", 0, 0, G_OPTION_ARG_DOUBLE, &guidance, "guidance scale of the evaluation", "G" },
    { "minutes", 0, 0, G_OPTION_ARG_DOUBLE, &minutes, "wall-time bound of the UNet phase (0: none)", "M" },
    { "eval-only", 0, 0, G_OPTION_ARG_NONE, &eval_only, "only evaluate OUT", NULL },
    { "eval-seen", 0, 0, G_OPTION_ARG_NONE, &eval_seen, "evaluate on training-split captions instead", NULL },
    { "eval-vae", 0, 0, G_OPTION_ARG_INT, &eval_vae_n, "with --eval-only: also N VAE reconstructions", "N" },
    { "min-shapes", 0, 0, G_OPTION_ARG_INT, &min_shapes, "fewest shapes per scene (1..3, default 1)", "K" },
    { "max-shapes", 0, 0, G_OPTION_ARG_INT, &max_shapes, "most shapes per scene (1..3, default 3)", "K" },
    { "plain", 0, 0, G_OPTION_ARG_NONE, &plain, "plain backgrounds only", NULL },
    { "latent-channels", 0, 0, G_OPTION_ARG_INT, &latent_channels, "VAE latent channels (default 4, as SD)", "C" },
    { "identifiers", 0, 0, G_OPTION_ARG_DOUBLE, &identifier_p,
      "share of training captions with a rare identifier word before a noun (default 0.1)", "P" },
    { "vae-broad", 0, 0, G_OPTION_ARG_DOUBLE, &vae_broad,
      "share of VAE training images with random colours and textures in a scene's layout (default 0)", "P" },
    { "partial-captions", 0, 0, G_OPTION_ARG_DOUBLE, &partial_p,
      "share of training captions without their background clause, colours or both (default 0.15)", "P" },
    { "ema", 0, 0, G_OPTION_ARG_DOUBLE, &ema_decay, "decay of the UNet/text weights' EMA saved (0: off)", "D" },
    { "reuse-vae", 0, 0, G_OPTION_ARG_NONE, &reuse_vae, "keep the VAE in OUT, train the UNet only", NULL },
    { "resume", 0, 0, G_OPTION_ARG_NONE, &resume, "continue from the UNet and text encoder in OUT", NULL },
    { "resume-vae", 0, 0, G_OPTION_ARG_NONE, &resume_vae, "train the VAE in OUT further (then the UNet anew)", NULL },
    { NULL },
  };
  /* as `oft` does: OpenMP workers sleep instead of spinning against OpenBLAS's threads, and the BLAS
   * kernels of this CPU (without it most of the time went to spinning) */
  oft_runtime_tune_process (argv);
  GOptionContext *ctx = g_option_context_new ("OUT - train the bundled default model");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *e = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &e) || argc != 2)
    {
      fprintf (stderr, "%s\n", e ? e->message : g_option_context_get_help (ctx, TRUE, NULL));
      return 2;
    }
  const char *out = argv[1];
  reuse_vae |= resume;
  data_params = OFT_SCENE_GEN_PARAMS_DEFAULT;
  data_params.min_shapes = min_shapes, data_params.max_shapes = max_shapes, data_params.textures = !plain;
  if (eval_seen)
    eval_split = OFT_SCENE_SPLIT_TRAIN;
  if (eval_only)
    {
      if (eval_vae_n > 0)
        printf ("VAE reconstruction match rate: %.3f\n", evaluate_vae (out, eval_vae_n, (uint64_t) seed));
      if (eval_n > 0)
        printf ("%s caption match rate: %.3f\n", eval_seen ? "seen" : "held-out",
                evaluate (out, eval_n, (uint64_t) seed, (float) guidance));
      return 0;
    }
  g_mkdir_with_parents (out, 0755);

  /* 1. tokenizer and configs */
  GPtrArray *words = caption_words ();
  int vocab = write_tokenizer (out, words);
  char *tokdir = g_build_filename (out, "tokenizer", NULL);
  OftTokenizer *tok = oft_tokenizer_load_dir (tokdir, &e);
  if (!tok)
    die (e);
  for (guint i = 0; i < words->len; i++)
    {
      GArray *ids = oft_tokenizer_encode (tok, words->pdata[i]);
      char *want = g_strdup_printf ("%s</w>", (char *) words->pdata[i]);
      if (ids->len != 1 || g_strcmp0 (oft_tokenizer_token (tok, g_array_index (ids, int32_t, 0)), want))
        {
          fprintf (stderr, "the word \"%s\" is not one token\n", (char *) words->pdata[i]);
          return 1;
        }
      g_free (want);
      g_array_unref (ids);
    }
  printf ("tokenizer: %d tokens, every one of %u caption words one token\n", vocab, words->len);
  char *clip_cfg = g_strdup_printf (clip_cfg_fmt, vocab, oft_tokenizer_bos (tok), oft_tokenizer_eos (tok),
                                    oft_tokenizer_eos (tok));
  write_text (out, "text_encoder", "config.json", clip_cfg);
  char *unet_cfg = g_strdup_printf (unet_cfg_fmt, latent_channels, latent_channels);
  write_text (out, "unet", "config.json", unet_cfg);
  g_free (unet_cfg);
  char *vae_cfg = g_strdup_printf (vae_cfg_fmt, latent_channels, 1.0);
  if (!reuse_vae && !resume_vae)
    write_text (out, "vae", "config.json", vae_cfg);
  write_text (out, "scheduler", "scheduler_config.json", sched_cfg);
  write_text (out, ".", "model_index.json", index_json);
  /* the training distribution, for the evaluations and the quality test (tests/test-default-model.c) */
  char *scenes_json = g_strdup_printf ("{\"size\": %d, \"min_shapes\": %d, \"max_shapes\": %d, \"textures\": %s, "
                                       "\"seed\": %" G_GINT64_FORMAT "}\n", IMG, data_params.min_shapes,
                                       data_params.max_shapes, data_params.textures ? "true" : "false", seed);
  write_text (out, ".", "scenes.json", scenes_json);
  g_free (scenes_json);

  /* 2. the dataset */
  OftSceneGenParams gp = data_params;  /* training split: held-out captions never drawn */
  float *imgs = g_new (float, (size_t) n_scenes * 3 * IMG * IMG);
  int32_t *ids = g_new (int32_t, (size_t) n_scenes * OFT_CLIP_MAX_LENGTH);
  char **caps = g_new0 (char *, n_scenes + 1);
  for (int i = 0; i < n_scenes; i++)
    {
      OftScene sc;
      oft_scene_generate_nth (&sc, (uint64_t) seed, (uint64_t) i, &gp);
      OftImage *im = oft_scene_render (&sc, IMG, IMG, 4, &e);
      if (!im)
        die (e);
      oft_train_preprocess (imgs + (size_t) i * 3 * IMG * IMG, im, IMG, false);
      oft_image_free (im);
      char *cap = oft_scene_caption (&sc);
      oft_tokenizer_encode_padded (tok, cap, ids + (size_t) i * OFT_CLIP_MAX_LENGTH, OFT_CLIP_MAX_LENGTH);
      caps[i] = cap;
    }
  int32_t empty[OFT_CLIP_MAX_LENGTH];
  oft_tokenizer_encode_padded (tok, "", empty, OFT_CLIP_MAX_LENGTH);
  printf ("dataset: %d scenes %d×%d\n", n_scenes, IMG, IMG);
  OftRng rng;
  oft_rng_seed (&rng, (uint64_t) seed * 7919 + 1);

  /* 3. the VAE */
  char *vae_cfg_path = g_build_filename (out, "vae", "config.json", NULL);
  OftWeightSource rnd = { .random_init = TRUE, .seed = (guint64) seed };
  char *vae_dir = g_build_filename (out, "vae", NULL);
  OftVae *vae = reuse_vae || resume_vae ? oft_vae_load (vae_dir, &e) : oft_vae_load_from (vae_cfg_path, &rnd, &e);
  if (!vae || (!reuse_vae && !oft_vae_attach_full_training (vae, &e)))
    die (e);
  if (reuse_vae)
    vae_steps = 0;
  if (oft_vae_latent_channels (vae) != latent_channels)
    {
      fprintf (stderr, "the VAE in %s has %d latent channels, not %d (--latent-channels)\n", out,
               oft_vae_latent_channels (vae), latent_channels);
      return 1;
    }
  int f = oft_vae_factor (vae), lh = IMG / f, lat = oft_vae_latent_channels (vae);
  int64_t nlat = (int64_t) lat * lh * lh, npx = 3 * IMG * IMG;
  Opt vo = { 0 };
  if (!reuse_vae)
    opt_init (&vo, oft_vae_params (vae), 0.0);
  float *bimg = g_new (float, (size_t) batch * npx), *beps = g_new (float, (size_t) batch * nlat);
  gint64 t0 = g_get_monotonic_time ();
  for (int s = 1; s <= vae_steps; s++)
    {
      for (int b = 0; b < batch; b++)
        {
          int k = (int) (oft_rng_next (&rng) % (uint64_t) n_scenes);
          if (vae_broad > 0 && oft_rng_uniform (&rng) < vae_broad)
            broad_image (bimg + b * npx, &rng, &data_params);
          else
            memcpy (bimg + b * npx, imgs + (size_t) k * npx, npx * sizeof (float));
        }
      oft_rng_normal (&rng, beps, batch * nlat);
      float loss, rec, kl;
      if (!oft_vae_train_loss (vae, bimg, beps, batch, IMG, IMG, 1e-6f, &loss, &rec, &kl, &e))
        die (e);
      double lr = oft_lr_at (OFT_LR_COSINE, 1e-3, s, 100, vae_steps);
      opt_step (&vo, lr, 1.0);
      if (s % 100 == 0 || s == 1)
        printf ("vae step %d: mse %.5f kl %.3f (%.2f s/step)\n", s, rec, kl,
                (g_get_monotonic_time () - t0) / 1e6 / s);
      fflush (stdout);
    }
  /* latents of every scene (the mean), and the scaling factor 1/std as LDM computes it */
  float *lats = g_new (float, (size_t) n_scenes * nlat);
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n_scenes; i += batch)
    {
      int nb = MIN (batch, n_scenes - i);
      if (!oft_vae_encode (vae, imgs + (size_t) i * npx, nb, IMG, IMG, lats + (size_t) i * nlat, NULL, &e))
        die (e);
    }
  for (int64_t i = 0; i < (int64_t) n_scenes * nlat; i++)
    sum += lats[i], sum2 += (double) lats[i] * lats[i];
  double n_all = (double) n_scenes * nlat, mean = sum / n_all, sd = sqrt (MAX (1e-12, sum2 / n_all - mean * mean));
  float scaling = (float) (1.0 / sd);
  for (int64_t i = 0; i < (int64_t) n_scenes * nlat; i++)
    lats[i] *= scaling;
  g_free (vae_cfg);
  vae_cfg = g_strdup_printf (vae_cfg_fmt, latent_channels, scaling);
  if (!reuse_vae)
    {
      write_text (out, "vae", "config.json", vae_cfg);
      save_params (oft_vae_params (vae), out, "vae", "diffusion_pytorch_model.safetensors");
    }
  printf ("vae: latents mean %.3f std %.3f, scaling_factor %.5f\n", mean, sd, scaling);
  oft_vae_free (vae);
  g_free (imgs);

  /* 4. UNet + text encoder */
  char *unet_cfg_path = g_build_filename (out, "unet", "config.json", NULL);
  char *clip_cfg_path = g_build_filename (out, "text_encoder", "config.json", NULL);
  OftWeightSource rnd2 = { .random_init = TRUE, .seed = (guint64) seed + 2 };
  char *unet_dir = g_build_filename (out, "unet", NULL), *text_dir = g_build_filename (out, "text_encoder", NULL);
  OftUnet *unet = resume ? oft_unet_load (unet_dir, &e) : oft_unet_new_random (unet_cfg_path, (guint64) seed + 1, &e);
  OftClipText *text = !unet ? NULL
                      : resume ? oft_clip_text_load (text_dir, &e) : oft_clip_text_load_from (clip_cfg_path, &rnd2, &e);
  if (!text || !oft_unet_attach_full_training (unet, &e) || !oft_clip_text_attach_full_training (text, &e))
    die (e);
  OftNoiseSchedule sch;
  char *sched_path = g_build_filename (out, "scheduler", "scheduler_config.json", NULL);
  if (!oft_noise_schedule_load (&sch, sched_path, &e))
    die (e);
  float *acp = g_new (float, sch.num_train_timesteps);
  oft_noise_schedule_alphas_cumprod (&sch, acp);
  int H = oft_clip_text_config (text)->hidden, T = OFT_CLIP_MAX_LENGTH;
  Opt uo, to;
  opt_init (&uo, oft_unet_params (unet), 1e-2);
  opt_init (&to, oft_clip_text_params (text), 1e-2);
  float *x0 = g_new (float, (size_t) batch * nlat), *noise = g_new (float, (size_t) batch * nlat);
  float *noisy = g_new (float, (size_t) batch * nlat), *ts = g_new (float, batch), *acpb = g_new (float, batch);
  int32_t *bids = g_new (int32_t, (size_t) batch * T);
  float *ctxv = g_new (float, (size_t) batch * T * H), *dctx = g_new (float, (size_t) batch * T * H);
  oft_unet_set_context_grad (unet, dctx);
  Ema ue, te;
  if (ema_decay > 0)
    ema_init (&ue, oft_unet_params (unet)), ema_init (&te, oft_clip_text_params (text));
  t0 = g_get_monotonic_time ();
  double ema = 0;
  for (int s = 1; s <= unet_steps; s++)
    {
      for (int b = 0; b < batch; b++)
        {
          int k = (int) (oft_rng_next (&rng) % (uint64_t) n_scenes);
          memcpy (x0 + b * nlat, lats + (size_t) k * nlat, nlat * sizeof (float));
          double u = oft_rng_uniform (&rng);
          if (u < 0.1)  /* dropped, for classifier-free guidance */
            memcpy (bids + b * T, empty, T * sizeof (int32_t));
          else
            {
              gboolean partial = oft_rng_uniform (&rng) < partial_p, ident = oft_rng_uniform (&rng) < identifier_p;
              char *cap = partial ? partial_caption (caps[k], &rng) : g_strdup (caps[k]);
              if (ident)
                {
                  char *c2 = with_identifier (cap, &rng);
                  g_free (cap);
                  cap = c2;
                }
              if (partial || ident)
                oft_tokenizer_encode_padded (tok, cap, bids + b * T, T);
              else
                memcpy (bids + b * T, ids + (size_t) k * T, T * sizeof (int32_t));
              g_free (cap);
            }
          int t = (int) (oft_rng_next (&rng) % (uint64_t) sch.num_train_timesteps);
          ts[b] = (float) t, acpb[b] = acp[t];
        }
      oft_rng_normal (&rng, noise, batch * nlat);
      oft_train_add_noise (noisy, x0, noise, acpb, batch, nlat);
      if (!oft_clip_text_train_forward (text, bids, batch, ctxv, &e))
        die (e);
      memset (dctx, 0, sizeof (float) * (size_t) batch * T * H);
      float loss;
      if (!oft_unet_train_loss (unet, noisy, ts, ctxv, batch, lh, lh, T, noise, FALSE, &loss, NULL, &e))
        die (e);
      oft_clip_text_train_backward (text, dctx);
      /* the cosine runs over the steps or, with --minutes, over the time if that ends first */
      double el = (g_get_monotonic_time () - t0) / 1e6;
      int64_t at = s;
      if (minutes > 0)
        at = MAX (at, (int64_t) (el / (minutes * 60) * unet_steps));
      double lr = oft_lr_at (OFT_LR_COSINE, 1e-3, MIN (at, unet_steps), 200, unet_steps);
      opt_step (&uo, lr, 1.0);
      opt_step (&to, lr, 1.0);
      if (ema_decay > 0)
        ema_update (&ue, ema_decay, s), ema_update (&te, ema_decay, s);
      ema = s == 1 ? loss : 0.98 * ema + 0.02 * loss;
      gboolean stop = minutes > 0 && el > minutes * 60;
      if (s % 100 == 0 || s == 1 || stop || s == unet_steps)
        printf ("unet step %d: loss %.4f (ema %.4f, %.3f s/step)\n", s, loss, ema, el / s);
      fflush (stdout);
      if (s % 500 == 0 || stop || s == unet_steps)
        {
          save_weights (oft_unet_params (unet), ema_decay > 0 ? &ue : NULL, out, "unet",
                        "diffusion_pytorch_model.safetensors");
          save_weights (oft_clip_text_params (text), ema_decay > 0 ? &te : NULL, out, "text_encoder",
                        "model.safetensors");
        }
      if (stop)
        break;
    }
  if (ema_decay > 0)
    ema_free (&ue), ema_free (&te);
  oft_unet_free (unet);
  oft_clip_text_free (text);
  oft_tokenizer_free (tok);
  g_strfreev (caps);

  /* 5. evaluation */
  if (eval_n > 0)
    printf ("held-out caption match rate: %.3f (%d captions, DDIM 20 steps, guidance %.1f)\n",
            evaluate (out, eval_n, (uint64_t) seed, (float) guidance), eval_n, guidance);
  return 0;
}
