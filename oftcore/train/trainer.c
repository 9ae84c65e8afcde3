/* The DreamBooth training loop (diffusers' train_dreambooth with PEFT OFT on the UNet): data are
 * prepared once (VAE posterior mean and std per image and flip, text embeddings), then every step
 * draws from one RNG, in this fixed order: data order reshuffles, flips, latent samples, timesteps,
 * noise (instance batch, then class batch), so a seed and a checkpoint reproduce a run bit for bit.
 * With fit_magnitude a second stage follows (the paper's train_with_norm): R frozen, the per-output
 * scales trained alone; it continues the same step counter, RNG and checkpoints. */
#include "oft/train.h"
#include "oft/error.h"
#include "oft/safetensors.h"
#include <errno.h>
#include <math.h>
#include <string.h>

void
oft_train_params_init (OftTrainParams *t)
{
  memset (t, 0, sizeof *t);
  t->num_class_images = 100;
  t->prior_weight = 1.0;
  t->class_steps = 30;
  t->adapter = (OftAdapterConfig) { .kind = OFT_ADAPTER_OFT, .neumann = true, .n_terms = 5, .eps = 6e-5 };
  t->blocks = 4;
  t->steps = 1000;
  t->batch = 1;
  t->grad_accum = 1;
  t->lr = 6e-5;
  t->schedule = OFT_LR_CONSTANT;
  oft_adamw_init (&t->adamw);
  t->max_grad_norm = 1.0;
}

static const char *const default_targets[] = { "to_q", "to_k", "to_v", "to_out.0", NULL };

/* PEFT's target_modules as a list: the module path equals a target or ends with "." + target. */
static gboolean
matches_target (const char *path, const char *const *targets)
{
  for (const char *const *t = targets; *t; t++)
    {
      size_t lp = strlen (path), lt = strlen (*t);
      if (strcmp (path, *t) == 0 || (lp > lt && path[lp - lt - 1] == '.' && strcmp (path + lp - lt, *t) == 0))
        return TRUE;
    }
  return FALSE;
}

/* PEFT's BOFT layer checks for one Linear: b divides in; with N > 1 factors b is even and the block
 * count D = in/b divisible by 2^(N−1) (so the butterfly permutations exist). */
static gboolean
boft_sizes (const char *path, int d, int blocks, int block_size, int N, int *b_out, GError **error)
{
  int b = blocks > 0 ? (d % blocks == 0 ? d / blocks : 0) : block_size;
  int D = b > 0 && d % b == 0 ? d / b : 0;
  if (b < 2 || D < 1 || N < 1 || N > 31 || (N > 1 && (b % 2 != 0 || D % (1 << (N - 1)) != 0)))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE,
                   "module '%s': in_features %d cannot be cut into %s %d for %d butterfly factor%s (need a block size "
                   ">= 2 dividing it; with several factors an even block size and a block count divisible by 2^(factors-1))",
                   path, d, blocks > 0 ? "blocks:" : "blocks of", blocks > 0 ? blocks : block_size, N, N == 1 ? "" : "s");
      return FALSE;
    }
  *b_out = b;
  return TRUE;
}

/* A new adapter on every matching Linear, with PEFT's init_weights=True: OFT parameters zero (R = I);
 * BOFT boft_R zero (every factor I) and boft_s one. */
static OftPeftAdapter *
new_adapter (OftUnet *u, const OftTrainParams *t, GError **error)
{
  const char *const *targets = t->targets && t->targets[0] ? t->targets : default_targets;
  OftAdapterConfig cfg = t->adapter;
  gboolean boft = cfg.kind == OFT_ADAPTER_BOFT;
  cfg.magnitude = false;
  if (boft)
    {
      cfg.boft_n_factors = MAX (cfg.boft_n_factors, 1);
      if (t->blocks > 0)
        cfg.boft_block_size = 0;  /* the config then says boft_block_num (save_adapter) */
    }
  else if (t->blocks > 0)
    cfg.oft_block_size = 0;
  int bs = boft ? cfg.boft_block_size : cfg.oft_block_size;
  if (t->blocks <= 0 && bs < 2)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "block size %d: need >= 2 (or a number of blocks)", bs);
      return NULL;
    }
  OftPeftAdapter *a = oft_peft_adapter_new (&cfg, targets);
  GPtrArray *mods = oft_unet_list_linear_modules (u);
  gboolean ok = TRUE;
  for (guint i = 0; ok && i < mods->len; i++)
    {
      const OftUnetLinear *l = g_ptr_array_index (mods, i);
      if (!matches_target (l->path, targets))
        continue;
      int d = l->in_features, b = t->blocks > 0 ? d / t->blocks : bs;
      if (boft)
        {
          int N = cfg.boft_n_factors;
          if (!(ok = boft_sizes (l->path, d, t->blocks, bs, N, &b, error)))
            break;
          int64_t n = (int64_t) N * (d / b) * b * b, out = l->out_features;
          float *zeros = g_new0 (float, n), *ones = g_new (float, out);
          for (int64_t o = 0; o < out; o++)
            ones[o] = 1.0f;
          OftTensor p = { .dtype = OFT_DTYPE_F32, .ndim = 4, .shape = { N, d / b, b, b }, .data = zeros };
          OftTensor sc = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { out, 1 }, .data = ones };
          ok = oft_peft_adapter_add_module (a, l->path, &p, &sc, error);
          g_free (zeros);
          g_free (ones);
          continue;
        }
      if (b < 2 || d % b != 0)
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE,
                       "module '%s': in_features %d cannot be cut into %s %d (need a divisor >= 2)", l->path, d,
                       t->blocks > 0 ? "blocks:" : "blocks of", t->blocks > 0 ? t->blocks : b);
          ok = FALSE;
          break;
        }
      int64_t rows = cfg.block_share ? 1 : d / b, ne = (int64_t) b * (b - 1) / 2;
      float *zeros = g_new0 (float, rows * ne);
      OftTensor p = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { rows, ne }, .data = zeros };
      ok = oft_peft_adapter_add_module (a, l->path, &p, NULL, error);
      g_free (zeros);
    }
  /* every target must match: one that does not (a resnet conv, a typo) would otherwise be left out silently */
  for (const char *const *tg = targets; ok && *tg; tg++)
    {
      const char *one[] = { *tg, NULL };
      gboolean hit = FALSE;
      for (guint i = 0; !hit && i < mods->len; i++)
        hit = matches_target (((const OftUnetLinear *) g_ptr_array_index (mods, i))->path, one);
      if (!hit)
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND,
                       "target '%s' matches no transformer-block Linear of the UNet (training adapts those only: "
                       "to_q, to_k, to_v, to_out.0, ff.net.0.proj, ff.net.2)", *tg);
          ok = FALSE;
        }
    }
  g_ptr_array_unref (mods);
  if (!ok)
    g_clear_pointer (&a, oft_peft_adapter_free);
  return a;
}

/* Saves the adapter; with a number of blocks the config says r = blocks, oft_block_size = 0 (BOFT:
 * boft_block_num = blocks, boft_block_size = 0), and PEFT derives each module's block size from its
 * in_features. */
static gboolean
save_adapter (const OftPeftAdapter *a, const char *dir, int blocks, GError **error)
{
  if (!oft_peft_adapter_save (a, dir, error))
    return FALSE;
  const OftAdapterConfig *c = oft_peft_adapter_config (a);
  gboolean boft = c->kind == OFT_ADAPTER_BOFT;
  if (blocks <= 0 || (boft ? c->boft_block_size : c->oft_block_size) > 0)
    return TRUE;
  char *json = oft_peft_adapter_config_json (a);
  char *r = g_strdup_printf (boft ? "\"boft_block_num\": %d" : "\"r\": %d", blocks);
  GRegex *re = g_regex_new (boft ? "\"boft_block_num\": 0\\b" : "\"r\": 0\\b", 0, 0, NULL);
  char *patched = g_regex_replace_literal (re, json, -1, 0, r, 0, NULL);
  char *path = g_build_filename (dir, "adapter_config.json", NULL);
  gboolean ok = oft_file_write_atomic (path, patched, strlen (patched), error);
  g_regex_unref (re);
  g_free (json);
  g_free (r);
  g_free (patched);
  g_free (path);
  return ok;
}

/* ---- data ---- */

typedef struct {
  int n;              /* images */
  int variants;       /* 1, or 2 with flips (index 2i + flipped) */
  float *mean, *std;  /* [n·variants, C, h, w] VAE posterior */
  float *ctx;         /* [n, T, D] per-image caption embeddings, or NULL (one prompt for all) */
  float *cond;        /* [n·variants, 3, res, res] condition images in [0, 1], flipped with their image, or NULL */
} LatentSet;

static void
latent_set_clear (LatentSet *s)
{
  g_free (s->mean);
  g_free (s->std);
  g_free (s->ctx);
  g_free (s->cond);
  memset (s, 0, sizeof *s);
}

/* Condition images as the encoder sees them: the image's resize/crop/flip, in [0, 1]. */
static gboolean
load_conditions (char *const *files, int n, int res, LatentSet *out, GError **error)
{
  int64_t nc = (int64_t) 3 * res * res;
  out->cond = g_new (float, nc * n * out->variants);
  for (int i = 0; i < n; i++)
    {
      OftImage *im = oft_image_load (files[i], error);
      if (!im)
        return FALSE;
      for (int v = 0; v < out->variants; v++)
        {
          float *c = out->cond + ((int64_t) i * out->variants + v) * nc;
          oft_train_preprocess (c, im, res, v == 1);
          for (int64_t j = 0; j < nc; j++)
            c[j] = 0.5f * (c[j] + 1.0f);
        }
      oft_image_free (im);
    }
  return TRUE;
}

static gboolean
encode_images (OftPipeline *p, char *const *files, int n, int res, bool flip, LatentSet *out, GError **error)
{
  int f = oft_vae_factor (p->vae), C = oft_vae_latent_channels (p->vae), h = res / f;
  int64_t nl = (int64_t) C * h * h;
  out->n = n;
  out->variants = flip ? 2 : 1;
  out->mean = g_new (float, nl * n * out->variants);
  out->std = g_new (float, nl * n * out->variants);
  float *img = g_new (float, (size_t) 3 * res * res);
  gboolean ok = TRUE;
  for (int i = 0; ok && i < n; i++)
    {
      OftImage *im = oft_image_load (files[i], error);
      if (!im)
        {
          ok = FALSE;
          break;
        }
      for (int v = 0; ok && v < out->variants; v++)
        {
          int64_t k = (int64_t) i * out->variants + v;
          oft_train_preprocess (img, im, res, v == 1);
          ok = oft_vae_encode (p->vae, img, 1, res, res, out->mean + k * nl, out->std + k * nl, error);
          for (int64_t j = 0; ok && j < nl; j++)
            out->std[k * nl + j] = expf (0.5f * out->std[k * nl + j]);
          if (!ok)
            g_prefix_error (error, "%s: ", files[i]);
        }
      oft_image_free (im);
    }
  g_free (img);
  return ok;
}

static gboolean
embed (OftPipeline *p, const char *prompt, float *ctx, GError **error)
{
  int T = oft_clip_text_config (p->text)->max_positions;
  int32_t *ids = g_new (int32_t, T);
  oft_tokenizer_encode_padded (p->tokenizer, prompt, ids, T);
  gboolean ok = oft_clip_text_forward (p->text, ids, 1, 0, ctx, NULL, error);
  g_free (ids);
  return ok;
}

static void
say (const OftTrainParams *t, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static void
say (const OftTrainParams *t, const char *fmt, ...)
{
  if (!t->log)
    return;
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  t->log (msg, t->log_data);
  g_free (msg);
}

/* Prior preservation: class images are generated with the base pipeline (before the adapter is
 * attached) until the folder holds num_class_images, and always read back from the PNGs, so that a
 * resumed run sees exactly the same 8-bit images. */
static GPtrArray *
class_images (OftPipeline *p, const OftTrainParams *t, int res, GError **error)
{
  if (g_mkdir_with_parents (t->class_dir, 0755) != 0)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_FAILED, "%s: cannot create the class image folder: %s",
                   t->class_dir, g_strerror (errno));
      return NULL;
    }
  GPtrArray *have = oft_train_list_images (t->class_dir, error);
  if (!have)
    return NULL;
  int missing = t->num_class_images - (int) have->len;
  if (missing > 0)
    {
      say (t, "generating %d class images for \"%s\" in %s", missing, t->class_prompt, t->class_dir);
      OftGenerateParams g;
      oft_generate_params_init (&g);
      g.prompt = t->class_prompt;
      g.steps = t->class_steps;
      g.width = g.height = res;
      float *rgb = g_new (float, (size_t) 3 * res * res);
      OftImage *im = oft_image_new (res, res, 3);
      gboolean ok = TRUE;
      for (int i = 0, k = 0; ok && i < missing; k++)
        {
          char *path = g_strdup_printf ("%s/class-%05d.png", t->class_dir, k);
          if (!g_file_test (path, G_FILE_TEST_EXISTS))
            {
              g.seed = t->seed * 1000003u + (uint64_t) k;
              ok = oft_pipeline_generate (p, &g, rgb, NULL, NULL, NULL, error);
              if (ok)
                {
                  oft_image_to_rgb8 (im->pixels, rgb, res, res);
                  ok = oft_image_save_png (im, path, error);
                }
              i++;
              if (t->cancel && g_atomic_int_get (t->cancel))
                {
                  g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_CANCELLED, "cancelled while generating class images");
                  ok = FALSE;
                }
            }
          g_free (path);
        }
      g_free (rgb);
      oft_image_free (im);
      g_ptr_array_unref (have);
      if (!ok)
        return NULL;
      if (!(have = oft_train_list_images (t->class_dir, error)))
        return NULL;
    }
  if ((int) have->len > t->num_class_images)
    g_ptr_array_set_size (have, t->num_class_images);
  return have;
}

/* ---- the loop ---- */

/* Next index of a data order; a new epoch reshuffles (Fisher–Yates with the run's RNG). */
static int
next_index (int32_t *order, int n, int *pos, OftRng *rng)
{
  if (*pos >= n)
    {
      for (int i = n - 1; i > 0; i--)
        {
          int j = (int) (oft_rng_uniform (rng) * (i + 1));
          int32_t x = order[i];
          order[i] = order[j];
          order[j] = x;
        }
      *pos = 0;
    }
  return order[(*pos)++];
}

typedef struct {
  OftPipeline *p;
  const OftTrainParams *t;
  OftPeftAdapter *a;
  /* parameter blocks: the n_mod module parameters, then (n_scale = n_mod or 0) their per-output scales,
   * then the condition encoder; `active` says which ones the current stage trains */
  size_t n_params, n_mod, n_scale;
  int64_t *numel;
  float **param, **m, **v, **grad, **tmp, **view;
  float **own_scale;            /* OFT magnitude scales held here until the second stage adds them to a */
  bool *active;
  bool stage2;                  /* the magnitude stage has begun (scales attached, R frozen) */
  LatentSet inst, cls;
  float *ctx_inst, *ctx_cls;    /* [T, D] */
  float *alphas;                /* ᾱ_t, num_train_timesteps */
  OftTrainState st;             /* step, rng, orders (param/m/v borrowed) */
  int C, h, w, T, D, res;
  float *x0, *noise, *noisy, *target, *ts, *ctx;  /* one micro-batch */
  OftCondEncoder *enc;          /* control task: trained with the adapter, the last parameter "module" */
  float *cond, *control, *dcontrol, *enc_acts;    /* one micro-batch of the control task */
} Trainer;

/* One micro-batch from a latent set: latents sampled from the posterior, DDPM noise, targets. Its
 * gradient (× weight) is added to tr->grad. */
static gboolean
micro_batch (Trainer *tr, const LatentSet *set, int32_t *order, int n_order, int *pos, const float *ctx1,
             double weight, double *loss, GError **error)
{
  const OftTrainParams *t = tr->t;
  int B = t->batch;
  int64_t nl = (int64_t) tr->C * tr->h * tr->w;
  float sf = oft_vae_scaling_factor (tr->p->vae), ac[64];
  OftRng *rng = &tr->st.rng;
  int64_t nc = (int64_t) 3 * tr->res * tr->res;
  for (int b = 0; b < B; b++)
    {
      int i = next_index (order, n_order, pos, rng);
      int var = set->variants == 2 && oft_rng_uniform (rng) < 0.5 ? 1 : 0;
      int64_t k = (int64_t) i * set->variants + var;
      if (set->ctx)
        memcpy (tr->ctx + (size_t) b * tr->T * tr->D, set->ctx + (size_t) i * tr->T * tr->D,
                (size_t) tr->T * tr->D * sizeof (float));
      else
        memcpy (tr->ctx + (size_t) b * tr->T * tr->D, ctx1, (size_t) tr->T * tr->D * sizeof (float));
      if (set->cond)
        memcpy (tr->cond + b * nc, set->cond + k * nc, nc * sizeof (float));
      /* latent_dist.sample() · scaling_factor */
      oft_rng_normal (rng, tr->x0 + b * nl, nl);
      for (int64_t j = 0; j < nl; j++)
        tr->x0[b * nl + j] = (set->mean[k * nl + j] + set->std[k * nl + j] * tr->x0[b * nl + j]) * sf;
    }
  int NT = tr->p->schedule.num_train_timesteps;
  for (int b = 0; b < B; b++)
    {
      int ti = oft_timestep_sample (t->timesteps, oft_rng_uniform (rng), NT);
      tr->ts[b] = (float) ti;
      ac[b] = tr->alphas[ti];
    }
  oft_rng_normal (rng, tr->noise, B * nl);
  oft_train_add_noise (tr->noisy, tr->x0, tr->noise, ac, B, nl);
  if (tr->p->schedule.prediction == OFT_PREDICT_V)
    oft_train_velocity (tr->target, tr->x0, tr->noise, ac, B, nl);
  else
    memcpy (tr->target, tr->noise, B * nl * sizeof (float));
  float **g = weight == 1.0 ? tr->grad : tr->tmp;
  if (g == tr->tmp)
    for (size_t i = 0; i < tr->n_params; i++)
      memset (g[i], 0, tr->numel[i] * sizeof (float));
  float l = 0;
  int64_t nr = (int64_t) B * oft_unet_control_channels (tr->p->unet) * tr->h * tr->w;
  if (set->cond)
    {
      /* the condition encoder's features join after conv_in; their gradient comes back in dcontrol */
      if (!oft_cond_encoder_forward (tr->enc, tr->control, tr->cond, B, tr->res, tr->res, tr->enc_acts, error))
        return FALSE;
      memset (tr->dcontrol, 0, nr * sizeof (float));
      oft_unet_set_control (tr->p->unet, tr->control, tr->dcontrol);
    }
  /* frozen blocks get no gradient (NULL) */
  for (size_t i = 0; i < tr->n_params; i++)
    tr->view[i] = tr->active[i] ? g[i] : NULL;
  gboolean ok = oft_unet_train_loss (tr->p->unet, tr->noisy, tr->ts, tr->ctx, B, tr->h, tr->w, tr->T, tr->target,
                                     t->gradient_checkpointing, &l, tr->view, error);
  oft_unet_set_control (tr->p->unet, NULL, NULL);
  if (!ok)
    return FALSE;
  if (set->cond && tr->active[tr->n_params - 1]
      && !oft_cond_encoder_backward (tr->enc, g[tr->n_params - 1], tr->dcontrol, tr->cond, B, tr->res, tr->res,
                                     tr->enc_acts, error))
    return FALSE;
  if (g == tr->tmp)
    for (size_t i = 0; i < tr->n_params; i++)
      for (int64_t j = 0; j < tr->numel[i]; j++)
        tr->grad[i][j] += (float) weight * tr->tmp[i][j];
  *loss = weight * l;
  return TRUE;
}

static char *
fingerprint (const OftTrainParams *t, int n_inst, int n_cls, const OftPeftAdapter *a)
{
  const OftAdapterConfig *c = oft_peft_adapter_config (a);
  /* BOFT and the magnitude stage add their settings (plain OFT runs keep the fingerprint they had) */
  char *extra = c->kind == OFT_ADAPTER_BOFT || t->fit_magnitude > 0 || c->magnitude
    ? g_strdup_printf (" kind=%s boft_block=%d factors=%d magnitude=%d fit_magnitude=%d magnitude_lr=%.17g",
                       c->kind == OFT_ADAPTER_BOFT ? "boft" : "oft", c->boft_block_size, c->boft_n_factors, c->magnitude,
                       t->fit_magnitude, t->magnitude_lr)
    : g_strdup ("");
  char *fp = g_strdup_printf ("steps=%d batch=%d accum=%d lr=%.17g sched=%s warmup=%d b1=%.17g b2=%.17g eps=%.17g "
                          "wd=%.17g clip=%.17g seed=%" G_GUINT64_FORMAT " flip=%d images=%d prompt=%s class=%s "
                          "class_images=%d prior=%.17g modules=%zu block=%d blocks=%d share=%d neumann=%d terms=%d "
                          "coft=%d eps=%.17g captions=%d conditions=%d type=%s",
                          t->steps, t->batch, t->grad_accum, t->lr, oft_lr_schedule_name (t->schedule), t->warmup,
                          t->adamw.beta1, t->adamw.beta2, t->adamw.eps, t->adamw.weight_decay, t->max_grad_norm,
                          t->seed, t->flip, n_inst, t->prompt, t->class_prompt ? t->class_prompt : "", n_cls,
                          t->prior_weight, oft_peft_adapter_n_modules (a), c->oft_block_size, t->blocks,
                          c->block_share, c->neumann, c->n_terms, c->coft, c->eps, t->captions != NULL,
                          t->conditions != NULL, t->condition_type ? t->condition_type : "");
  char *all = g_strconcat (fp, extra, NULL);
  g_free (fp);
  g_free (extra);
  return all;
}

/* A run killed while writing leaves the temporary file of that write beside the target; they are never
 * read (the rename is what publishes a file), only taken off the disk here. */
static void
remove_stale_temps (const OftTrainParams *t)
{
  static const char *const files[] = { "checkpoint/state.safetensors", "adapter_model.safetensors",
                                       "adapter_config.json", OFT_COND_ENCODER_FILE };
  int n = 0;
  for (size_t i = 0; i < G_N_ELEMENTS (files); i++)
    {
      char *path = g_build_filename (t->out_dir, files[i], NULL);
      n += oft_file_remove_stale_temps (path);
      g_free (path);
    }
  if (n > 0)
    say (t, "removed %d temporary file%s left by an interrupted run", n, n == 1 ? "" : "s");
}

static gboolean
save_checkpoint (Trainer *tr, GError **error)
{
  char *dir = g_build_filename (tr->t->out_dir, "checkpoint", NULL);
  char *path = g_build_filename (dir, "state.safetensors", NULL);
  gboolean ok = TRUE;
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      int e = errno;
      g_set_error (error, OFT_IO_ERROR, e == ENOSPC ? OFT_ERROR_NO_SPACE : OFT_ERROR_FAILED,
                   "%s: cannot create the checkpoint folder: %s", dir, g_strerror (e));
      ok = FALSE;
    }
  ok = ok && oft_train_state_save (&tr->st, path, error);
  g_free (dir);
  g_free (path);
  return ok;
}

static int
total_steps (const OftTrainParams *t)
{
  return t->steps + MAX (t->fit_magnitude, 0);
}

/* Restores OUT/checkpoint into the trainer after checking it belongs to this run. */
static gboolean
resume (Trainer *tr, GError **error)
{
  char *path = g_build_filename (tr->t->out_dir, "checkpoint", "state.safetensors", NULL);
  OftTrainState s;
  gboolean ok = FALSE;
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: no checkpoint to resume from", path);
      g_free (path);
      return FALSE;
    }
  if (!oft_train_state_load (&s, path, error))
    {
      g_free (path);
      return FALSE;
    }
  if (g_strcmp0 (s.fingerprint, tr->st.fingerprint) != 0)
    g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                 "%s: the checkpoint was made with other settings:\n  checkpoint: %s\n  now:        %s", path,
                 s.fingerprint, tr->st.fingerprint);
  else if (s.n_params != tr->n_params || s.n_order != tr->st.n_order || s.n_class_order != tr->st.n_class_order)
    g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "%s: the checkpoint holds %zu modules and %d/%d data "
                 "indices; this run has %zu and %d/%d", path, s.n_params, s.n_order, s.n_class_order, tr->n_params,
                 tr->st.n_order, tr->st.n_class_order);
  else if (s.step > total_steps (tr->t))
    g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: the checkpoint is at step %" G_GINT64_FORMAT
                 ", past --steps %d (+ --fit-magnitude %d)", path, s.step, tr->t->steps, tr->t->fit_magnitude);
  else
    {
      ok = TRUE;
      for (size_t i = 0; ok && i < s.n_params; i++)
        if (strcmp (s.names[i], tr->st.names[i]) != 0 || s.numel[i] != tr->numel[i])
          {
            g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "%s: checkpoint module %zu is '%s' (%" G_GINT64_FORMAT
                         " values), the adapter's is '%s' (%" G_GINT64_FORMAT ")", path, i, s.names[i], s.numel[i],
                         tr->st.names[i], tr->numel[i]);
            ok = FALSE;
          }
      for (int i = 0; ok && i < s.n_order + s.n_class_order; i++)
        {
          int32_t x = i < s.n_order ? s.order[i] : s.class_order[i - s.n_order];
          if (x < 0 || x >= (i < s.n_order ? s.n_order : s.n_class_order))
            {
              g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: data order index %d out of range", path, x);
              ok = FALSE;
            }
        }
    }
  if (ok)
    {
      for (size_t i = 0; i < s.n_params; i++)
        {
          memcpy (tr->param[i], s.param[i], s.numel[i] * sizeof (float));
          memcpy (tr->m[i], s.m[i], s.numel[i] * sizeof (float));
          memcpy (tr->v[i], s.v[i], s.numel[i] * sizeof (float));
        }
      memcpy (tr->st.order, s.order, s.n_order * sizeof (int32_t));
      if (s.n_class_order)
        memcpy (tr->st.class_order, s.class_order, s.n_class_order * sizeof (int32_t));
      tr->st.order_pos = s.order_pos;
      tr->st.class_order_pos = s.class_order_pos;
      tr->st.rng = s.rng;
      tr->st.step = s.step;
    }
  oft_train_state_clear (&s);
  g_free (path);
  return ok;
}

static gboolean
check_params (OftPipeline *p, const OftTrainParams *t, int res, GError **error)
{
  int mult = oft_vae_factor (p->vae) * oft_unet_size_multiple (p->unet);
  const char *bad = NULL;
  if (!t->images || !t->images[0])
    bad = "no instance images";
  else if (!t->prompt || !*t->prompt)
    bad = "an instance prompt is required";
  else if (!t->out_dir)
    bad = "an output folder is required";
  else if (t->steps < 1 || t->batch < 1 || t->batch > 64 || t->grad_accum < 1 || t->fit_magnitude < 0 ||
           t->fit_magnitude > G_MAXINT - t->steps)
    bad = "steps and grad_accum must be >= 1, batch in 1..64, fit_magnitude >= 0";
  else if (!(t->lr > 0) || t->warmup < 0 || t->adamw.weight_decay < 0)
    bad = "the learning rate must be > 0, warmup and weight decay >= 0";
  else if (res < mult || res % mult || res > 4096)
    bad = "the resolution must be a multiple of the VAE factor × the UNet's size multiple";
  else if (t->class_prompt && (!t->class_dir || t->num_class_images < 1 || t->prior_weight < 0))
    bad = "prior preservation needs a class image folder, num_class_images >= 1 and prior_weight >= 0";
  else if ((t->captions && g_strv_length ((char **) t->captions) != g_strv_length ((char **) t->images)) ||
           (t->conditions && g_strv_length ((char **) t->conditions) != g_strv_length ((char **) t->images)))
    bad = "captions and condition images must be one per instance image";
  if (bad)
    g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "training settings: %s (resolution %d, multiple of %d)",
                 bad, res, mult);
  return !bad;
}

static void
trainer_free (Trainer *tr)
{
  for (size_t i = 0; i < tr->n_params; i++)
    {
      g_free (tr->m[i]);
      g_free (tr->v[i]);
      g_free (tr->grad[i]);
      g_free (tr->tmp[i]);
    }
  for (size_t i = 0; tr->own_scale && i < tr->n_scale; i++)
    g_free (tr->own_scale[i]);
  g_free (tr->own_scale);
  g_free (tr->view);
  g_free (tr->active);
  g_free (tr->numel);
  g_free (tr->param);
  g_free (tr->m);
  g_free (tr->v);
  g_free (tr->grad);
  g_free (tr->tmp);
  g_strfreev (tr->st.names);
  g_free (tr->st.order);
  g_free (tr->st.class_order);
  g_free (tr->st.fingerprint);
  latent_set_clear (&tr->inst);
  latent_set_clear (&tr->cls);
  g_free (tr->ctx_inst);
  g_free (tr->ctx_cls);
  g_free (tr->alphas);
  g_free (tr->x0);
  g_free (tr->noise);
  g_free (tr->noisy);
  g_free (tr->target);
  g_free (tr->ts);
  g_free (tr->ctx);
  oft_cond_encoder_free (tr->enc);
  g_free (tr->cond);
  g_free (tr->control);
  g_free (tr->dcontrol);
  g_free (tr->enc_acts);
}

/* The magnitude stage begins: OFT scales (held by the trainer so far) join the adapter, which the UNet
 * re-attaches so that its forwards apply them; R and the condition encoder freeze. fresh (the stage's
 * first step): the scales' AdamW moments start from zero, a new optimizer over s alone; a run resumed
 * inside the stage keeps the checkpoint's. */
static gboolean
begin_magnitude_stage (Trainer *tr, bool fresh, GError **error)
{
  size_t n = tr->n_mod;
  if (tr->own_scale)
    {
      for (size_t i = 0; i < n; i++)
        {
          OftTensor sc = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { tr->numel[n + i], 1 }, .data = tr->own_scale[i] };
          if (!oft_peft_adapter_set_scale (tr->a, i, &sc, error))
            return FALSE;
          tr->param[n + i] = oft_peft_adapter_module (tr->a, i)->scale.data;
          g_clear_pointer (&tr->own_scale[i], g_free);
        }
      g_clear_pointer (&tr->own_scale, g_free);
      oft_unet_detach_trainable (tr->p->unet);
      if (!oft_unet_attach_trainable (tr->p->unet, tr->a, error))
        return FALSE;
    }
  for (size_t i = 0; i < tr->n_params; i++)
    {
      tr->active[i] = i >= n && i < n + tr->n_scale;
      if (fresh && tr->active[i])
        {
          memset (tr->m[i], 0, tr->numel[i] * sizeof (float));
          memset (tr->v[i], 0, tr->numel[i] * sizeof (float));
        }
    }
  tr->stage2 = TRUE;
  return TRUE;
}

static gboolean
run_loop (Trainer *tr, GError **error)
{
  const OftTrainParams *t = tr->t;
  gint64 start = g_get_monotonic_time ();
  int64_t first = tr->st.step;
  const int total = total_steps (t);
  while (tr->st.step < total)
    {
      if (tr->st.step >= t->steps && !tr->stage2 && !begin_magnitude_stage (tr, tr->st.step == t->steps, error))
        return FALSE;
      /* the magnitude stage: its own constant learning rate and AdamW step count */
      double lr = tr->stage2 ? (t->magnitude_lr > 0 ? t->magnitude_lr : t->lr)
                             : oft_lr_at (t->schedule, t->lr, tr->st.step, t->warmup, t->steps);
      int64_t k_adam = tr->stage2 ? tr->st.step + 1 - t->steps : tr->st.step + 1;
      double loss = 0;
      for (size_t i = 0; i < tr->n_params; i++)
        memset (tr->grad[i], 0, tr->numel[i] * sizeof (float));
      for (int k = 0; k < t->grad_accum; k++)
        {
          double li = 0, lc = 0;
          GError *e = NULL;
          if (!micro_batch (tr, &tr->inst, tr->st.order, tr->st.n_order, &tr->st.order_pos, tr->ctx_inst, 1.0, &li,
                            &e) ||
              (t->class_prompt && !micro_batch (tr, &tr->cls, tr->st.class_order, tr->st.n_class_order,
                                                &tr->st.class_order_pos, tr->ctx_cls, t->prior_weight, &lc, &e)))
            {
              if (e->domain == OFT_MODEL_ERROR && e->code == OFT_ERROR_NUMERIC)
                g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC, "step %" G_GINT64_FORMAT ": %s; stopped "
                             "without updating (the last checkpoint in %s/checkpoint is kept; try a lower learning "
                             "rate)", tr->st.step + 1, e->message, t->out_dir);
              else
                g_propagate_prefixed_error (error, g_steal_pointer (&e), "step %" G_GINT64_FORMAT ": ", tr->st.step + 1);
              g_clear_error (&e);
              return FALSE;
            }
          loss += (li + lc) / t->grad_accum;
        }
      /* accelerate divides the loss by the accumulation steps: the gradient of the mean */
      if (t->grad_accum > 1)
        for (size_t i = 0; i < tr->n_params; i++)
          for (int64_t j = 0; j < tr->numel[i]; j++)
            tr->grad[i][j] /= (float) t->grad_accum;
      double norm = oft_clip_grad_norm (tr->grad, tr->numel, tr->n_params, t->max_grad_norm);
      if (!isfinite (loss) || !isfinite (norm))
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC,
                       "step %" G_GINT64_FORMAT ": the %s is %g; stopped without updating (the last checkpoint in "
                       "%s/checkpoint is kept; try a lower learning rate)", tr->st.step + 1,
                       isfinite (loss) ? "gradient norm" : "loss", isfinite (loss) ? norm : loss, t->out_dir);
          return FALSE;
        }
      /* frozen blocks have zero gradients, so the norm above is that of the trained ones */
      for (size_t i = 0; i < tr->n_params; i++)
        if (tr->active[i])
          oft_adamw_step (&t->adamw, tr->param[i], tr->m[i], tr->v[i], tr->grad[i], tr->numel[i], k_adam, lr);
      tr->st.step++;
      gboolean go = TRUE;
      if (t->progress)
        {
          double secs = (g_get_monotonic_time () - start) / 1e6;
          OftTrainProgress pr = { .step = (int) tr->st.step, .total = total, .loss = loss, .lr = lr,
                                  .eta_s = secs / (double) (tr->st.step - first) * (double) (total - tr->st.step) };
          go = t->progress (&pr, t->progress_data);
        }
      gboolean cancelled = !go || (t->cancel && g_atomic_int_get (t->cancel));
      if ((cancelled || (t->checkpoint_every > 0 && tr->st.step % t->checkpoint_every == 0)) && tr->st.step < total &&
          !save_checkpoint (tr, error))
        return FALSE;
      if (cancelled && tr->st.step < total)
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_CANCELLED, "cancelled after step %" G_GINT64_FORMAT " of %d; "
                       "checkpoint written to %s/checkpoint (continue with --resume)", tr->st.step, total, t->out_dir);
          return FALSE;
        }
    }
  /* a run resumed from its final checkpoint still saves the scales */
  if (t->fit_magnitude > 0 && !tr->stage2 && !begin_magnitude_stage (tr, FALSE, error))
    return FALSE;
  if (!save_checkpoint (tr, error) || !save_adapter (tr->a, t->out_dir, t->init_adapter ? 0 : t->blocks, error))
    return FALSE;
  if (!tr->enc)
    return TRUE;
  char *file = g_build_filename (t->out_dir, OFT_COND_ENCODER_FILE, NULL);
  gboolean ok = oft_cond_encoder_save (tr->enc, file, error);
  g_free (file);
  return ok;
}

gboolean
oft_train_run (OftPipeline *p, const OftTrainParams *t, GError **error)
{
  int f = oft_vae_factor (p->vae);
  int res = t->resolution > 0 ? t->resolution : oft_unet_sample_size (p->unet) * f;
  if (!check_params (p, t, res, error))
    return FALSE;
  Trainer trs = { .p = p, .t = t, .res = res }, *tr = &trs;
  const OftClipConfig *cc = oft_clip_text_config (p->text);
  tr->C = oft_unet_in_channels (p->unet);
  tr->h = tr->w = res / f;
  tr->T = cc->max_positions;
  tr->D = cc->hidden;
  gboolean ok = FALSE, attached = FALSE;
  GPtrArray *cls_files = NULL;
  int n_inst = (int) g_strv_length ((char **) t->images);

  /* data, before the adapter is attached: class images come from the base model */
  if (t->class_prompt && !(cls_files = class_images (p, t, res, error)))
    goto out;
  if (cls_files && cls_files->len == 0)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: no class images", t->class_dir);
      goto out;
    }
  say (t, "encoding %d instance image%s and %u class images", n_inst, n_inst == 1 ? "" : "s",
       cls_files ? cls_files->len : 0);
  if (!encode_images (p, (char *const *) t->images, n_inst, res, t->flip, &tr->inst, error))
    goto out;
  if (cls_files && !encode_images (p, (char *const *) cls_files->pdata, (int) cls_files->len, res, t->flip, &tr->cls,
                                   error))
    goto out;
  tr->ctx_inst = g_new (float, (size_t) tr->T * tr->D);
  tr->ctx_cls = g_new (float, (size_t) tr->T * tr->D);
  if (!embed (p, t->prompt, tr->ctx_inst, error) || (t->class_prompt && !embed (p, t->class_prompt, tr->ctx_cls, error)))
    goto out;
  if (t->captions)
    {
      tr->inst.ctx = g_new (float, (size_t) n_inst * tr->T * tr->D);
      for (int i = 0; i < n_inst; i++)
        if (!embed (p, t->captions[i], tr->inst.ctx + (size_t) i * tr->T * tr->D, error))
          goto out;
    }
  if (t->conditions)
    {
      if (!load_conditions ((char *const *) t->conditions, n_inst, res, &tr->inst, error))
        goto out;
      char *file = t->init_adapter ? g_build_filename (t->init_adapter, OFT_COND_ENCODER_FILE, NULL) : NULL;
      int ch0 = oft_unet_control_channels (p->unet);
      if (file && g_file_test (file, G_FILE_TEST_EXISTS))
        tr->enc = oft_cond_encoder_load (file, error);
      else
        tr->enc = oft_cond_encoder_new (3, ch0, t->condition_type, t->seed ^ 0x5eedc0dull);
      g_free (file);
      if (!tr->enc)
        goto out;
      if (tr->enc->out_ch != ch0)
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "the condition encoder gives %d channels, the UNet's "
                       "conv_in %d", tr->enc->out_ch, ch0);
          goto out;
        }
    }
  tr->alphas = g_new (float, p->schedule.num_train_timesteps);
  oft_noise_schedule_alphas_cumprod (&p->schedule, tr->alphas);

  /* the adapter */
  tr->a = t->init_adapter ? oft_peft_adapter_load (t->init_adapter, error) : new_adapter (p->unet, t, error);
  if (!tr->a || !(attached = oft_unet_attach_trainable (p->unet, tr->a, error)))
    goto out;
  /* BOFT trains boft_s with boft_R (as PEFT); OFT scales exist when the adapter has a magnitude or one is
   * to be fitted (ones until then, held by the trainer, so the first stage runs exactly as plain OFT) */
  tr->n_mod = oft_peft_adapter_n_modules (tr->a);
  const OftAdapterModule *m0 = oft_peft_adapter_module (tr->a, 0);
  gboolean has_scales = m0 && m0->scale.ndim > 0;
  tr->n_scale = has_scales || t->fit_magnitude > 0 ? tr->n_mod : 0;
  tr->n_params = tr->n_mod + tr->n_scale + (tr->enc ? 1 : 0);
  size_t np = tr->n_params;
  tr->numel = g_new0 (int64_t, np);
  tr->param = g_new0 (float *, np);
  tr->m = g_new0 (float *, np);
  tr->v = g_new0 (float *, np);
  tr->grad = g_new0 (float *, np);
  tr->tmp = g_new0 (float *, np);
  tr->view = g_new0 (float *, np);
  tr->active = g_new0 (bool, np);
  tr->st.names = g_new0 (char *, np + 1);
  if (tr->n_scale && !has_scales)
    tr->own_scale = g_new0 (float *, tr->n_mod);
  GPtrArray *lins = oft_unet_list_linear_modules (p->unet);
  for (size_t i = 0; i < np; i++)
    {
      /* the adapter's modules, their scales, then the condition encoder as one more parameter block */
      gboolean is_enc = tr->enc && i == np - 1, is_scale = !is_enc && i >= tr->n_mod;
      const OftAdapterModule *m = is_enc ? NULL : oft_peft_adapter_module (tr->a, is_scale ? i - tr->n_mod : i);
      if (is_enc)
        tr->numel[i] = tr->enc->n_params, tr->param[i] = tr->enc->params;
      else if (!is_scale)
        tr->numel[i] = oft_tensor_numel (&m->param), tr->param[i] = m->param.data;
      else if (has_scales)
        tr->numel[i] = oft_tensor_numel (&m->scale), tr->param[i] = m->scale.data;
      else
        {
          /* out_features of the module (attach has checked every module is one of these Linears) */
          int out = 0;
          for (guint k = 0; k < lins->len && !out; k++)
            if (strcmp (((OftUnetLinear *) g_ptr_array_index (lins, k))->path, m->module) == 0)
              out = ((OftUnetLinear *) g_ptr_array_index (lins, k))->out_features;
          tr->numel[i] = out;
          float *ones = tr->own_scale[i - tr->n_mod] = g_new (float, MAX (out, 1));
          for (int o = 0; o < out; o++)
            ones[o] = 1.0f;
          tr->param[i] = ones;
        }
      /* the first stage trains R (and BOFT's boft_s) and the encoder; an OFT magnitude only in the second */
      tr->active[i] = !is_scale || oft_peft_adapter_config (tr->a)->kind == OFT_ADAPTER_BOFT;
      tr->m[i] = g_new0 (float, tr->numel[i]);
      tr->v[i] = g_new0 (float, tr->numel[i]);
      tr->grad[i] = g_new0 (float, tr->numel[i]);
      tr->tmp[i] = g_new0 (float, tr->numel[i]);
      tr->st.names[i] = is_enc ? g_strdup ("condition_encoder")
                        : is_scale ? g_strconcat (m->module, oft_peft_adapter_config (tr->a)->kind == OFT_ADAPTER_BOFT
                                                               ? ".boft_s" : ".oft_s", NULL)
                        : g_strdup (m->module);
    }
  g_ptr_array_unref (lins);
  tr->st.n_params = np;
  tr->st.numel = tr->numel;
  tr->st.param = tr->param;
  tr->st.m = tr->m;
  tr->st.v = tr->v;
  oft_rng_seed (&tr->st.rng, t->seed);
  tr->st.n_order = n_inst;
  tr->st.order_pos = n_inst;  /* the first draw shuffles */
  tr->st.order = g_new (int32_t, n_inst);
  for (int i = 0; i < n_inst; i++)
    tr->st.order[i] = i;
  tr->st.n_class_order = cls_files ? (int) cls_files->len : 0;
  tr->st.class_order_pos = tr->st.n_class_order;
  tr->st.class_order = g_new (int32_t, tr->st.n_class_order + 1);
  for (int i = 0; i < tr->st.n_class_order; i++)
    tr->st.class_order[i] = i;
  tr->st.fingerprint = fingerprint (t, n_inst, tr->st.n_class_order, tr->a);
  if (t->resume && !resume (tr, error))
    goto out;
  if (t->resume)
    say (t, "resuming at step %" G_GINT64_FORMAT " of %d", tr->st.step, t->steps);
  remove_stale_temps (t);

  int64_t nb = (int64_t) t->batch * tr->C * tr->h * tr->w;
  tr->x0 = g_new (float, nb);
  tr->noise = g_new (float, nb);
  tr->noisy = g_new (float, nb);
  tr->target = g_new (float, nb);
  tr->ts = g_new (float, t->batch);
  tr->ctx = g_new (float, (size_t) t->batch * tr->T * tr->D);
  if (tr->enc)
    {
      int64_t nr = (int64_t) t->batch * tr->enc->out_ch * tr->h * tr->w;
      tr->cond = g_new (float, (size_t) t->batch * 3 * res * res);
      tr->control = g_new (float, nr);
      tr->dcontrol = g_new (float, nr);
      tr->enc_acts = g_new (float, oft_cond_encoder_acts_floats (tr->enc, t->batch, res, res));
    }
  ok = run_loop (tr, error);
out:
  /* the saved adapter is independent of the trainer's copies: parameters live in tr->a */
  tr->st.numel = NULL;
  tr->st.param = tr->st.m = tr->st.v = NULL;
  if (attached)
    oft_unet_detach_trainable (p->unet);
  oft_peft_adapter_free (tr->a);
  if (cls_files)
    g_ptr_array_unref (cls_files);
  trainer_free (tr);
  return ok;
}

/* ---- replay of a fixed batch (golden comparisons) ---- */

gboolean
oft_train_replay (OftUnet *u, const OftNoiseSchedule *s, const char *batch_file, const char *init_adapter, int steps,
                  double lr, double weight_decay, const char *out_dir, double *losses, GError **error)
{
  OftSafetensors *st = oft_safetensors_open (batch_file, error);
  if (!st)
    return FALSE;
  int64_t nx = 0, nn = 0, nt = 0, nc = 0;
  float *x0 = oft_safetensors_dup_f32 (st, "latents", &nx, error), *noise = NULL, *ts = NULL, *ctx = NULL;
  const OftSafetensorsEntry *e = oft_safetensors_find (st, "latents"), *ec = oft_safetensors_find (st, "encoder_hidden_states");
  OftPeftAdapter *a = NULL;
  gboolean ok = FALSE, attached = FALSE;
  float *noisy = NULL, *target = NULL, *ac = NULL, *alphas = NULL, **grads = NULL, **m = NULL, **v = NULL;
  size_t np = 0;
  if (!x0 || !(noise = oft_safetensors_dup_f32 (st, "noise", &nn, error)) ||
      !(ts = oft_safetensors_dup_f32 (st, "timesteps", &nt, error)) ||
      !(ctx = oft_safetensors_dup_f32 (st, "encoder_hidden_states", &nc, error)))
    goto out;
  if (e->ndim != 4 || !ec || ec->ndim != 3 || nn != nx || nt != e->shape[0] || ec->shape[0] != e->shape[0] ||
      e->shape[1] != oft_unet_in_channels (u) || ec->shape[2] != oft_unet_context_dim (u) || steps < 1 || steps > 100000)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_SHAPE, "%s: expected latents and noise [B, %d, h, w], timesteps [B], "
                   "encoder_hidden_states [B, T, %d] and 1..100000 steps", batch_file, oft_unet_in_channels (u),
                   oft_unet_context_dim (u));
      goto out;
    }
  int B = (int) e->shape[0], h = (int) e->shape[2], w = (int) e->shape[3], T = (int) ec->shape[1];
  int64_t n = nx / B;
  alphas = g_new (float, s->num_train_timesteps);
  oft_noise_schedule_alphas_cumprod (s, alphas);
  ac = g_new (float, B);
  for (int b = 0; b < B; b++)
    {
      if (!(ts[b] >= 0 && ts[b] < s->num_train_timesteps) || ts[b] != floorf (ts[b]))
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, "%s: timesteps[%d] = %g is not an integer in 0..%d",
                       batch_file, b, ts[b], s->num_train_timesteps - 1);
          goto out;
        }
      ac[b] = alphas[(int) ts[b]];
    }
  noisy = g_new (float, nx);
  target = g_new (float, nx);
  oft_train_add_noise (noisy, x0, noise, ac, B, n);
  if (s->prediction == OFT_PREDICT_V)
    oft_train_velocity (target, x0, noise, ac, B, n);
  else
    memcpy (target, noise, nx * sizeof (float));
  if (!(a = oft_peft_adapter_load (init_adapter, error)) || !(attached = oft_unet_attach_trainable (u, a, error)))
    goto out;
  /* every tensor of the adapter is trained: the parameters, then the scales (BOFT's boft_s) when present */
  size_t nm = oft_peft_adapter_n_modules (a);
  np = nm && oft_peft_adapter_module (a, 0)->scale.ndim ? 2 * nm : nm;
  grads = g_new0 (float *, np);
  m = g_new0 (float *, np);
  v = g_new0 (float *, np);
  float **pp = g_new0 (float *, np);
  int64_t *pn = g_new0 (int64_t, np);
  for (size_t i = 0; i < np; i++)
    {
      const OftAdapterModule *mod = oft_peft_adapter_module (a, i % nm);
      const OftTensor *t = i < nm ? &mod->param : &mod->scale;
      pp[i] = t->data;
      pn[i] = oft_tensor_numel (t);
      grads[i] = g_new0 (float, pn[i]);
      m[i] = g_new0 (float, pn[i]);
      v[i] = g_new0 (float, pn[i]);
    }
  OftAdamW opt;
  oft_adamw_init (&opt);
  opt.weight_decay = weight_decay;
  ok = TRUE;
  for (int k = 0; ok && k <= steps; k++)
    {
      float loss = 0;
      for (size_t i = 0; i < np; i++)
        memset (grads[i], 0, pn[i] * sizeof (float));
      ok = oft_unet_train_loss (u, noisy, ts, ctx, B, h, w, T, target, FALSE, &loss, grads, error);
      if (ok && !isfinite (loss))
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC, "replay step %d: the loss is %g", k + 1, loss);
          ok = FALSE;
        }
      if (ok && losses)
        losses[k] = loss;
      for (size_t i = 0; ok && k < steps && i < np; i++)
        oft_adamw_step (&opt, pp[i], m[i], v[i], grads[i], pn[i], k + 1, lr);
    }
  g_free (pp);
  g_free (pn);
  ok = ok && oft_peft_adapter_save (a, out_dir, error);
out:
  if (attached)
    oft_unet_detach_trainable (u);
  for (size_t i = 0; i < np; i++)
    {
      g_free (grads[i]);
      g_free (m[i]);
      g_free (v[i]);
    }
  g_free (grads);
  g_free (m);
  g_free (v);
  oft_peft_adapter_free (a);
  oft_safetensors_close (st);
  g_free (x0);
  g_free (noise);
  g_free (ts);
  g_free (ctx);
  g_free (noisy);
  g_free (target);
  g_free (ac);
  g_free (alphas);
  return ok;
}
