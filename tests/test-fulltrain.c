/* Full-parameter training: gradients of the loss with respect to every weight (UNet), checked against
 * finite differences of the loss on tiny random-weight models. For each parameter tensor the
 * directional derivative along its own gradient (the steepest direction, so the difference of the two
 * losses is as large as it can be against float rounding) must equal the gradient's norm. */
#include "test-common.h"
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

static char *
write_tmp (const char *name, const char *text)
{
  char *dir = g_dir_make_tmp ("oft-fulltrain-XXXXXX", NULL);
  g_assert_nonnull (dir);
  char *path = g_build_filename (dir, name, NULL);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
  g_free (dir);
  return path;
}

static void
remove_tmp (char *path)
{
  char *dir = g_path_get_dirname (path);
  g_remove (path);
  g_rmdir (dir);
  g_free (dir);
  g_free (path);
}

/* Random values in every tensor (biases and norm weights included, which random init sets to 0/1),
 * so that no gradient vanishes by symmetry. */
static void
jitter (OftParams *p, guint32 seed)
{
  for (size_t i = 0; i < oft_params_count (p); i++)
    {
      OftParam *x = oft_params_get (p, i);
      float *r = g_new (float, x->numel);
      test_fill_uniform (r, x->numel, -0.2f, 0.2f, seed + (guint32) i);
      for (int64_t j = 0; j < x->numel; j++)
        x->data[j] += r[j];
      g_free (r);
    }
}

static const char tiny_unet[] =
  "{\"_class_name\": \"UNet2DConditionModel\", \"in_channels\": 4, \"out_channels\": 4,"
  " \"block_out_channels\": [8, 16], \"layers_per_block\": 1, \"norm_num_groups\": 4,"
  " \"attention_head_dim\": 2, \"cross_attention_dim\": 8, \"sample_size\": 8,"
  " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"],"
  " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"]}";

enum { B = 2, HL = 8, T = 3, CTX = 8 };

typedef struct {
  OftUnet *u;
  float x[B * 4 * HL * HL], target[B * 4 * HL * HL], ctx[B * T * CTX], t[B];
} UnetCase;

static double
unet_loss (UnetCase *c)
{
  float out[B * 4 * HL * HL];
  GError *error = NULL;
  g_assert_true (oft_unet_forward (c->u, c->x, c->t, c->ctx, B, HL, HL, T, out, &error));
  double l = 0;
  for (int i = 0; i < B * 4 * HL * HL; i++)
    l += ((double) out[i] - c->target[i]) * ((double) out[i] - c->target[i]);
  return l / (B * 4 * HL * HL);
}

static void
unet_case_init (UnetCase *c, char **cfg)
{
  GError *error = NULL;
  *cfg = write_tmp ("config.json", tiny_unet);
  c->u = oft_unet_new_random (*cfg, 3, &error);
  g_assert_no_error (error);
  jitter (oft_unet_params (c->u), 100);
  test_fill_uniform (c->x, G_N_ELEMENTS (c->x), -1, 1, 1);
  test_fill_uniform (c->target, G_N_ELEMENTS (c->target), -1, 1, 2);
  test_fill_uniform (c->ctx, G_N_ELEMENTS (c->ctx), -1, 1, 3);
  c->t[0] = 17, c->t[1] = 803;
}

/* Central difference of the loss along the unit direction d of `data`, against |grad|. */
static double
fd_along_grad (double (*loss) (gpointer), gpointer data, float *w, const float *grad, int64_t n, double h,
               double *norm_out)
{
  double norm = 0;
  for (int64_t j = 0; j < n; j++)
    norm += (double) grad[j] * grad[j];
  norm = sqrt (norm);
  *norm_out = norm;
  if (norm == 0)
    return 0;
  float *w0 = g_memdup2 (w, n * sizeof (float));
  double l[2];
  for (int s = 0; s < 2; s++)
    {
      double sign = s ? 1 : -1;
      for (int64_t j = 0; j < n; j++)
        w[j] = (float) (w0[j] + sign * h * grad[j] / norm);
      l[s] = loss (data);
    }
  memcpy (w, w0, n * sizeof (float));
  g_free (w0);
  return (l[1] - l[0]) / (2 * h);
}

static double unet_loss_cb (gpointer c) { return unet_loss (c); }

static void
test_unet_weight_grads (gconstpointer checkpoint)
{
  UnetCase c;
  char *cfg;
  unet_case_init (&c, &cfg);
  OftParams *p = oft_unet_params (c.u);
  g_assert_false (oft_params_have_grads (p));  /* no buffers until full training is attached */
  GError *error = NULL;
  g_assert_true (oft_unet_attach_full_training (c.u, &error));
  g_assert_true (oft_params_have_grads (p));
  float dctx[B * T * CTX] = { 0 };
  oft_unet_set_context_grad (c.u, dctx);
  float loss;
  g_assert_true (oft_unet_train_loss (c.u, c.x, c.t, c.ctx, B, HL, HL, T, c.target, GPOINTER_TO_INT (checkpoint),
                                      &loss, NULL, &error));
  g_assert_no_error (error);
  double l0 = unet_loss (&c);
  /* the training forward is the inference forward: same arithmetic up to float reassociation */
  g_assert_cmpfloat (fabs (l0 - loss), <=, 1e-5 * l0);
  /* h = 1e-2 along a unit direction: the curvature term (h²/6·L''') stays below 1e-4 relative for these
   * O(1) tensors; the losses are accurate to ~1e-7·L each (float outputs summed in double), so the
   * difference has an absolute error of about 1e-7·L/h = 1e-5·L */
  const double h = 1e-2, rel = 1e-2, abs_floor = 1e-5 * l0 + 1e-6;
  double worst = 0;
  const char *worst_name = "";
  int checked = 0;
  for (size_t i = 0; i < oft_params_count (p); i++)
    {
      OftParam *x = oft_params_get (p, i);
      double norm, fd = fd_along_grad (unet_loss_cb, &c, x->data, x->grad, x->numel, h, &norm);
      if (norm == 0)
        {
          g_test_fail_printf ("%s: zero gradient", x->name);
          continue;
        }
      double err = fabs (fd - norm);
      if (norm > 100 * abs_floor && err / norm > worst)
        worst = err / norm, worst_name = x->name;
      checked++;
      if (!(err <= rel * norm + abs_floor))
        g_test_fail_printf ("%s: |grad| %.6g, finite difference %.6g", x->name, norm, fd);
    }
  g_test_message ("%d tensors: worst relative error %.3g (%s) among gradients above 100 times the rounding floor",
                  checked, worst, worst_name);
  g_assert_cmpint (checked, ==, (int) oft_params_count (p));
  /* the context's gradient, for training the text encoder jointly */
  double norm, fd = fd_along_grad (unet_loss_cb, &c, c.ctx, dctx, G_N_ELEMENTS (dctx), h, &norm);
  g_test_message ("context: |grad| %.6g, finite difference %.6g", norm, fd);
  g_assert_cmpfloat (norm, >, 0);
  g_assert_cmpfloat (fabs (fd - norm), <=, rel * norm + abs_floor);
  oft_unet_free (c.u);
  remove_tmp (cfg);
}

/* Checkpointing recomputes the same arithmetic: bit-identical weight gradients. */
static void
test_unet_checkpoint_identical (void)
{
  UnetCase c;
  char *cfg;
  unet_case_init (&c, &cfg);
  GError *error = NULL;
  g_assert_true (oft_unet_attach_full_training (c.u, &error));
  OftParams *p = oft_unet_params (c.u);
  float l0, l1;
  g_assert_true (oft_unet_train_loss (c.u, c.x, c.t, c.ctx, B, HL, HL, T, c.target, FALSE, &l0, NULL, &error));
  float *g0 = g_new (float, oft_params_numel (p));
  int64_t off = 0;
  for (size_t i = 0; i < oft_params_count (p); i++)
    {
      OftParam *x = oft_params_get (p, i);
      memcpy (g0 + off, x->grad, x->numel * sizeof (float));
      off += x->numel;
    }
  oft_params_zero_grads (p);
  g_assert_true (oft_unet_train_loss (c.u, c.x, c.t, c.ctx, B, HL, HL, T, c.target, TRUE, &l1, NULL, &error));
  g_assert_cmpfloat (l0, ==, l1);
  off = 0;
  for (size_t i = 0; i < oft_params_count (p); i++)
    {
      OftParam *x = oft_params_get (p, i);
      g_assert_cmpmem (g0 + off, x->numel * 4, x->grad, x->numel * 4);
      off += x->numel;
    }
  g_free (g0);
  oft_unet_free (c.u);
  remove_tmp (cfg);
}

static const char tiny_vae[] =
  "{\"_class_name\": \"AutoencoderKL\", \"in_channels\": 3, \"out_channels\": 3, \"latent_channels\": 2,"
  " \"block_out_channels\": [8, 16], \"layers_per_block\": 1, \"norm_num_groups\": 4,"
  " \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\"],"
  " \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}";

enum { VB = 2, VH = 8, VLAT = 2, VH_LAT = 4 };
#define KL_WEIGHT 0.1f

typedef struct {
  OftVae *v;
  float img[VB * 3 * VH * VH], eps[VB * VLAT * VH_LAT * VH_LAT];
} VaeCase;

/* The loss through the inference encoder and decoder, in double where the test sums. */
static double
vae_loss (gpointer data)
{
  VaeCase *c = data;
  enum { NL = VB * VLAT * VH_LAT * VH_LAT, NP = VB * 3 * VH * VH };
  float mean[NL], logvar[NL], z[NL], rec[NP];
  GError *error = NULL;
  g_assert_true (oft_vae_encode (c->v, c->img, VB, VH, VH, mean, logvar, &error));
  double kl = 0;
  for (int i = 0; i < NL; i++)
    {
      z[i] = mean[i] + expf (0.5f * logvar[i]) * c->eps[i];
      kl += 0.5 * ((double) mean[i] * mean[i] + exp (logvar[i]) - 1.0 - logvar[i]);
    }
  g_assert_true (oft_vae_decode (c->v, z, VB, VH_LAT, VH_LAT, rec, &error));
  double mse = 0;
  for (int i = 0; i < NP; i++)
    mse += ((double) rec[i] - c->img[i]) * ((double) rec[i] - c->img[i]);
  return mse / NP + KL_WEIGHT * kl / NL;
}

static void
test_vae_weight_grads (void)
{
  char *cfg = write_tmp ("config.json", tiny_vae);
  GError *error = NULL;
  OftWeightSource src = { .random_init = TRUE, .seed = 5 };
  VaeCase c;
  c.v = oft_vae_load_from (cfg, &src, &error);
  g_assert_no_error (error);
  OftParams *p = oft_vae_params (c.v);
  jitter (p, 200);
  test_fill_uniform (c.img, G_N_ELEMENTS (c.img), -1, 1, 11);
  test_fill_uniform (c.eps, G_N_ELEMENTS (c.eps), -1.5f, 1.5f, 12);
  float loss, rec, kl;
  /* refused before gradients exist */
  g_assert_false (oft_vae_train_loss (c.v, c.img, c.eps, VB, VH, VH, KL_WEIGHT, &loss, &rec, &kl, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_true (oft_vae_attach_full_training (c.v, &error));
  g_assert_true (oft_vae_train_loss (c.v, c.img, c.eps, VB, VH, VH, KL_WEIGHT, &loss, &rec, &kl, &error));
  g_assert_no_error (error);
  double l0 = vae_loss (&c);
  g_test_message ("VAE loss %.6g (reconstruction %.6g, KL %.6g), inference path %.6g", loss, rec, kl, l0);
  /* training and inference forwards: the same arithmetic up to float reassociation */
  g_assert_cmpfloat (fabs (l0 - loss), <=, 1e-5 * l0);
  /* tolerances as for the UNet (same step, same float accuracy of the loss) */
  const double h = 1e-2, rel = 1e-2, abs_floor = 1e-5 * l0 + 1e-6;
  double worst = 0;
  const char *worst_name = "";
  for (size_t i = 0; i < oft_params_count (p); i++)
    {
      OftParam *x = oft_params_get (p, i);
      double norm, fd = fd_along_grad (vae_loss, &c, x->data, x->grad, x->numel, h, &norm);
      g_assert_cmpfloat (norm, >, 0);
      double err = fabs (fd - norm);
      if (norm > 100 * abs_floor && err / norm > worst)
        worst = err / norm, worst_name = x->name;
      if (!(err <= rel * norm + abs_floor))
        g_test_fail_printf ("%s: |grad| %.6g, finite difference %.6g", x->name, norm, fd);
    }
  g_test_message ("%u tensors: worst relative error %.3g (%s) among gradients above 100 times the rounding floor",
                  (unsigned) oft_params_count (p), worst, worst_name);
  oft_vae_free (c.v);
  remove_tmp (cfg);
}

static const char tiny_clip[] =
  "{\"vocab_size\": 20, \"hidden_size\": 16, \"intermediate_size\": 32, \"num_hidden_layers\": 2,"
  " \"num_attention_heads\": 2, \"max_position_embeddings\": 6, \"hidden_act\": \"quick_gelu\"}";

enum { CB = 2, CT = 6, CH = 16 };

typedef struct {
  OftClipText *m;
  int32_t ids[CB * CT];
  float r[CB * CT * CH];
} ClipCase;

/* loss = Σ out·r through the inference forward: ∂loss/∂out = r */
static double
clip_loss (gpointer data)
{
  ClipCase *c = data;
  float out[CB * CT * CH];
  GError *error = NULL;
  g_assert_true (oft_clip_text_forward (c->m, c->ids, CB, 0, out, NULL, &error));
  double l = 0;
  for (int i = 0; i < CB * CT * CH; i++)
    l += (double) out[i] * c->r[i];
  return l;
}

static void
test_clip_weight_grads (void)
{
  char *cfg = write_tmp ("config.json", tiny_clip);
  GError *error = NULL;
  OftWeightSource src = { .random_init = TRUE, .seed = 9 };
  ClipCase c;
  c.m = oft_clip_text_load_from (cfg, &src, &error);
  g_assert_no_error (error);
  OftParams *p = oft_clip_text_params (c.m);
  jitter (p, 300);
  for (int i = 0; i < CB * CT; i++)
    c.ids[i] = (i * 7 + 3) % 20;  /* token 3 appears twice, so its embedding row collects two positions */
  test_fill_uniform (c.r, G_N_ELEMENTS (c.r), -1, 1, 21);
  float out[CB * CT * CH];
  g_assert_false (oft_clip_text_train_forward (c.m, c.ids, CB, out, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_true (oft_clip_text_attach_full_training (c.m, &error));
  g_assert_true (oft_clip_text_train_forward (c.m, c.ids, CB, out, &error));
  double l0 = clip_loss (&c), l = 0;
  for (int i = 0; i < CB * CT * CH; i++)
    l += (double) out[i] * c.r[i];
  /* the training forward is the inference forward */
  g_assert_cmpfloat (fabs (l - l0), <=, 1e-5 * fabs (l0) + 1e-5);
  oft_clip_text_train_backward (c.m, c.r);
  /* Σ out·r over 192 O(1) outputs: each loss is accurate to ~1e-6 absolute, 1e-4 after dividing by 2h */
  const double h = 1e-2, rel = 1e-2, abs_floor = 1e-4;
  double worst = 0;
  const char *worst_name = "";
  int unused_rows = 0;
  for (size_t i = 0; i < oft_params_count (p); i++)
    {
      OftParam *x = oft_params_get (p, i);
      double norm, fd = fd_along_grad (clip_loss, &c, x->data, x->grad, x->numel, h, &norm);
      g_assert_cmpfloat (norm, >, 0);
      double err = fabs (fd - norm);
      if (norm > 100 * abs_floor && err / norm > worst)
        worst = err / norm, worst_name = x->name;
      if (!(err <= rel * norm + abs_floor))
        g_test_fail_printf ("%s: |grad| %.6g, finite difference %.6g", x->name, norm, fd);
      if (g_str_has_suffix (x->name, "token_embedding.weight"))
        for (int v = 0; v < 20; v++)
          {
            gboolean used = FALSE;
            for (int k = 0; k < CB * CT; k++)
              used |= c.ids[k] == v;
            double row = 0;
            for (int j = 0; j < CH; j++)
              row += fabs (x->grad[v * CH + j]);
            /* tokens not in the batch get no gradient */
            if (!used)
              {
                g_assert_cmpfloat (row, ==, 0);
                unused_rows++;
              }
          }
    }
  g_assert_cmpint (unused_rows, >, 0);
  g_test_message ("%u tensors: worst relative error %.3g (%s)", (unsigned) oft_params_count (p), worst, worst_name);
  oft_clip_text_free (c.m);
  remove_tmp (cfg);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_data_func ("/fulltrain/unet/weight-grads", GINT_TO_POINTER (0), test_unet_weight_grads);
  g_test_add_data_func ("/fulltrain/unet/weight-grads-checkpointed", GINT_TO_POINTER (1), test_unet_weight_grads);
  g_test_add_func ("/fulltrain/unet/checkpoint-identical", test_unet_checkpoint_identical);
  g_test_add_func ("/fulltrain/vae/weight-grads", test_vae_weight_grads);
  g_test_add_func ("/fulltrain/clip/weight-grads", test_clip_weight_grads);
  return g_test_run ();
}
