/* The condition encoder (ControlNet's hint block): forward against a double-precision reference,
 * parameter gradients against central finite differences of that reference, save/load, zero init. */
#include "test-common.h"
#include "nn-ref.h"
#include <math.h>
#include <string.h>
#include <glib/gstdio.h>

/* loss = Σ out·g of the double reference with parameters p (the encoder's layout) */
static double
ref_loss (const OftCondEncoder *e, const double *p, const double *cond, const double *g, int B, int H, int W,
          double *out_keep)
{
  double *x = g_new (double, (size_t) B * 256 * H * W), *y = g_new (double, (size_t) B * 256 * H * W);
  memcpy (x, cond, sizeof (double) * B * e->in_ch * H * W);
  int h = H, w = W;
  for (int l = 0; l < OFT_COND_ENCODER_LAYERS; l++)
    {
      OftConv2dShape s = { .B = B, .C = e->width[l], .H = h, .W = w, .OC = e->width[l + 1], .kh = 3, .kw = 3,
                           .stride = e->stride[l], .pad = 1 };
      const double *wt = p + oft_cond_encoder_offset (e, l), *bs = wt + (int64_t) s.OC * s.C * 9;
      ref_conv2d (y, x, wt, bs, &s);
      h = oft_conv2d_out_h (&s), w = oft_conv2d_out_w (&s);
      size_t n = (size_t) B * s.OC * h * w;
      for (size_t i = 0; i < n; i++)
        x[i] = l < OFT_COND_ENCODER_LAYERS - 1 ? ref_silu (y[i]) : y[i];
    }
  size_t n = (size_t) B * e->out_ch * h * w;
  double loss = 0;
  for (size_t i = 0; i < n; i++)
    loss += x[i] * g[i];
  if (out_keep)
    memcpy (out_keep, x, n * sizeof (double));
  g_free (x);
  g_free (y);
  return loss;
}

static void
test_forward_backward_fd (void)
{
  const int B = 2, H = 8, W = 8, OC = 6;
  OftCondEncoder *e = oft_cond_encoder_new (3, OC, "canny", 7);
  /* a trained encoder has a non-zero last layer: give it one */
  OftRng rng;
  oft_rng_seed (&rng, 3);
  for (int64_t i = oft_cond_encoder_offset (e, OFT_COND_ENCODER_LAYERS - 1); i < e->n_params; i++)
    e->params[i] = (float) (oft_rng_uniform (&rng) - 0.5) * 0.1f;
  size_t nc = (size_t) B * 3 * H * W, no = (size_t) B * OC * (H / 8) * (W / 8);
  float *cond = g_new (float, nc), *out = g_new (float, no), *g = g_new (float, no);
  test_fill_uniform (cond, (int64_t) nc, 0, 1, 11);
  test_fill_uniform (g, (int64_t) no, -1, 1, 12);
  float *acts = g_new (float, oft_cond_encoder_acts_floats (e, B, H, W));
  g_assert_true (oft_cond_encoder_forward (e, out, cond, B, H, W, acts, NULL));

  double *p = g_new (double, e->n_params), *cd = g_new (double, nc), *gd = g_new (double, no), *od = g_new (double, no);
  for (int64_t i = 0; i < e->n_params; i++)
    p[i] = e->params[i];
  for (size_t i = 0; i < nc; i++)
    cd[i] = cond[i];
  for (size_t i = 0; i < no; i++)
    gd[i] = g[i];
  ref_loss (e, p, cd, gd, B, H, W, od);
  /* float forward vs double reference: eight layers of ~2300-term sums */
  test_assert_close_d ("forward vs double reference", out, od, (int64_t) no, 1e-5);

  float *grads = g_new0 (float, e->n_params);
  g_assert_true (oft_cond_encoder_backward (e, grads, g, cond, B, H, W, acts, NULL));
  /* 12 weights and 6 biases per layer against central differences (h = 1e-5, double) */
  double worst = 0, scale = 0;
  for (int l = 0; l < OFT_COND_ENCODER_LAYERS; l++)
    {
      int64_t off = oft_cond_encoder_offset (e, l), nw = (int64_t) e->width[l + 1] * e->width[l] * 9;
      GArray *idx = g_array_new (FALSE, FALSE, sizeof (int64_t));
      for (int k = 0; k < 18; k++)
        {
          int64_t i = k < 12 ? off + (int64_t) (oft_rng_uniform (&rng) * nw)
                             : off + nw + (int64_t) (oft_rng_uniform (&rng) * e->width[l + 1]);
          g_array_append_val (idx, i);
        }
      for (guint k = 0; k < idx->len; k++)
        {
          int64_t i = g_array_index (idx, int64_t, k);
          double keep = p[i], hh = 1e-5;
          p[i] = keep + hh;
          double lp = ref_loss (e, p, cd, gd, B, H, W, NULL);
          p[i] = keep - hh;
          double lm = ref_loss (e, p, cd, gd, B, H, W, NULL);
          p[i] = keep;
          double fd = (lp - lm) / (2 * hh);
          worst = fmax (worst, fabs (fd - grads[i]));
          scale = fmax (scale, fabs (fd));
        }
      g_array_free (idx, TRUE);
    }
  g_test_message ("parameter gradients: max |analytic − FD| %.3g at scale %.3g", worst, scale);
  /* float backward through eight layers against an O(h²)-accurate double FD: 1e-4 of the scale */
  g_assert_cmpfloat (worst, <=, 1e-4 * scale);

  /* a new encoder's output is zero: it leaves the UNet unchanged until trained */
  OftCondEncoder *fresh = oft_cond_encoder_new (3, OC, "canny", 1);
  g_assert_true (oft_cond_encoder_forward (fresh, out, cond, B, H, W, NULL, NULL));
  for (size_t i = 0; i < no; i++)
    g_assert_cmpfloat (out[i], ==, 0.0f);
  oft_cond_encoder_free (fresh);
  g_free (p); g_free (cd); g_free (gd); g_free (od); g_free (grads); g_free (acts);
  g_free (cond); g_free (out); g_free (g);
  oft_cond_encoder_free (e);
}

/* A new encoder passes its input on: with the zero last conv given the same He-uniform init as the
 * others, a canny-like input (sparse ones on zeros) moves the output by a fair share of its own scale
 * (0.11). At PyTorch's default conv init (bound 1/√fan_in, a sixth of He's variance per layer, random
 * biases) the same measure is 2e-4: the features were the biases' and the condition was lost. */
static void
test_init_keeps_signal (void)
{
  const int S = 64, OC = 32;
  OftCondEncoder *e = oft_cond_encoder_new (3, OC, "canny", 1);
  int last = OFT_COND_ENCODER_LAYERS - 1;
  int64_t nw = (int64_t) e->width[last + 1] * e->width[last] * 9;
  OftRng rng;
  oft_rng_seed (&rng, 2);
  float bound = sqrtf (6.0f / ((float) e->width[last] * 9));
  for (int64_t i = 0; i < nw; i++)
    e->w[last][i] = (float) ((2 * oft_rng_uniform (&rng) - 1) * bound);
  int no = OC * (S / 8) * (S / 8);
  float *cond = g_new0 (float, 3 * S * S), *black = g_new0 (float, 3 * S * S), *out = g_new (float, no),
        *base = g_new (float, no);
  double in2 = 0, out2 = 0;
  for (int i = 0; i < 3 * S * S; i++)
    if (oft_rng_uniform (&rng) < 0.08)  /* about a canny map's share of edge pixels */
      cond[i] = 1.0f, in2 += 1;
  g_assert_true (oft_cond_encoder_forward (e, out, cond, 1, S, S, NULL, NULL));
  g_assert_true (oft_cond_encoder_forward (e, base, black, 1, S, S, NULL, NULL));
  for (int i = 0; i < no; i++)
    out2 += (double) (out[i] - base[i]) * (out[i] - base[i]);
  double ratio = sqrt (out2 / no) / sqrt (in2 / (3 * S * S));
  g_test_message ("rms(f(x) - f(black)) / rms(x) of a new encoder: %.3g", ratio);
  g_assert_cmpfloat (ratio, >=, 0.05);
  g_free (cond);
  g_free (black);
  g_free (base);
  g_free (out);
  oft_cond_encoder_free (e);
}

static void
test_save_load (void)
{
  OftCondEncoder *e = oft_cond_encoder_new (3, 32, "landmarks", 5);
  char *dir = g_dir_make_tmp ("oft-ce-XXXXXX", NULL);
  char *path = g_build_filename (dir, OFT_COND_ENCODER_FILE, NULL);
  GError *error = NULL;
  g_assert_true (oft_cond_encoder_save (e, path, &error));
  OftCondEncoder *back = oft_cond_encoder_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (back->out_ch, ==, 32);
  g_assert_cmpstr (back->condition_type, ==, "landmarks");
  g_assert_cmpint (back->n_params, ==, e->n_params);
  g_assert_cmpmem (back->params, e->n_params * 4, e->params, e->n_params * 4);
  /* a file that is not an encoder */
  char *other = test_golden_path ("oft_layers/oft_linear/adapter/adapter_model.safetensors");
  g_assert_null (oft_cond_encoder_load (other, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_free (other);
  g_remove (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
  oft_cond_encoder_free (e);
  oft_cond_encoder_free (back);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/condition-encoder/forward-backward-fd", test_forward_backward_fd);
  g_test_add_func ("/condition-encoder/save-load", test_save_load);
  g_test_add_func ("/condition-encoder/init-keeps-signal", test_init_keeps_signal);
  return g_test_run ();
}
