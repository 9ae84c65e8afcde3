/* UNet training backward against PEFT (unet_oft/reference.safetensors): the loss and the gradient of
 * every one of the 128 oft_R.weight tensors for the golden batch, with and without checkpointing. */
#include "test-common.h"
#include <math.h>
#include <string.h>

typedef struct {
  OftUnet *u;
  OftPeftAdapter *a;
  OftSafetensors *st;
  float *x, *t, *ctx, *target;
  float **grads;
  size_t n;
} Fixture;

static void
fixture_init (Fixture *f)
{
  GError *error = NULL;
  f->u = test_load_unet ("pipeline/unet");
  f->a = test_load_adapter ("unet_oft/adapter");
  f->st = test_open_golden ("unet_oft/reference.safetensors");
  f->x = test_load (f->st, "noisy_latents", NULL);
  f->ctx = test_load (f->st, "encoder_hidden_states", NULL);
  f->target = test_load (f->st, "noise", NULL);
  f->t = test_load (f->st, "timesteps", NULL);
  f->n = oft_peft_adapter_n_modules (f->a);
  f->grads = g_new0 (float *, f->n);
  for (size_t i = 0; i < f->n; i++)
    f->grads[i] = g_new0 (float, oft_tensor_numel (&oft_peft_adapter_module (f->a, i)->param));
  g_assert_true (oft_unet_attach_trainable (f->u, f->a, &error));
  g_assert_no_error (error);
}

static void
fixture_free (Fixture *f)
{
  oft_unet_free (f->u);
  oft_peft_adapter_free (f->a);
  oft_safetensors_close (f->st);
  for (size_t i = 0; i < f->n; i++)
    g_free (f->grads[i]);
  g_free (f->grads);
  g_free (f->x);
  g_free (f->t);
  g_free (f->ctx);
  g_free (f->target);
}

static void
check_against_golden (Fixture *f, float loss)
{
  float *want = test_load (f->st, "loss", NULL);
  /* fp32_vs_fp64_maxabs of the loss: 2.3e-8 (≈ 2e-8 relative) */
  test_assert_close ("loss", &loss, want, 1, 1e-6);
  g_free (want);
  /* gradients: fp32 vs fp64 differ by 2.7e-9 at max |grad| 1.6e-3 (1.7e-6 relative); 1e-4 relative
   * to each tensor's scale is the project's fp32 rule */
  double worst = 0;
  for (size_t i = 0; i < f->n; i++)
    {
      const OftAdapterModule *m = oft_peft_adapter_module (f->a, i);
      char *key = g_strdup_printf ("grad.base_model.model.%s.oft_R.weight", m->module);
      int64_t n = 0;
      float *g = test_load (f->st, key, &n);
      g_assert_cmpint (n, ==, oft_tensor_numel (&m->param));
      double scale = 0, err = 0;
      for (int64_t j = 0; j < n; j++)
        {
          scale = fmax (scale, fabs (g[j]));
          err = fmax (err, fabs ((double) g[j] - f->grads[i][j]));
        }
      worst = fmax (worst, err / scale);
      if (!(err <= 1e-4 * scale))
        g_test_fail_printf ("%s: max abs error %.3g at scale %.3g", key, err, scale);
      g_free (g);
      g_free (key);
    }
  g_test_message ("128 gradients: worst error %.3g of the tensor's scale", worst);
}

static void
test_golden_grads (gconstpointer checkpoint)
{
  Fixture f;
  fixture_init (&f);
  float loss = 0;
  GError *error = NULL;
  g_assert_true (oft_unet_train_loss (f.u, f.x, f.t, f.ctx, 2, 16, 16, 77, f.target, GPOINTER_TO_INT (checkpoint),
                                      &loss, f.grads, &error));
  g_assert_no_error (error);
  check_against_golden (&f, loss);
  fixture_free (&f);
}

/* Checkpointing recomputes the same arithmetic: bit-identical loss and gradients. */
static void
test_checkpoint_identical (void)
{
  Fixture f;
  fixture_init (&f);
  float l0 = 0, l1 = 0;
  GError *error = NULL;
  g_assert_true (oft_unet_train_loss (f.u, f.x, f.t, f.ctx, 2, 16, 16, 77, f.target, FALSE, &l0, f.grads, &error));
  float **g0 = g_new (float *, f.n);
  for (size_t i = 0; i < f.n; i++)
    {
      int64_t n = oft_tensor_numel (&oft_peft_adapter_module (f.a, i)->param);
      g0[i] = g_memdup2 (f.grads[i], n * sizeof (float));
      memset (f.grads[i], 0, n * sizeof (float));
    }
  g_assert_true (oft_unet_train_loss (f.u, f.x, f.t, f.ctx, 2, 16, 16, 77, f.target, TRUE, &l1, f.grads, &error));
  g_assert_cmpfloat (l0, ==, l1);
  for (size_t i = 0; i < f.n; i++)
    {
      int64_t n = oft_tensor_numel (&oft_peft_adapter_module (f.a, i)->param);
      g_assert_cmpmem (g0[i], n * 4, f.grads[i], n * 4);
      g_free (g0[i]);
    }
  g_free (g0);
  /* the same forward without the tape gives the same prediction as the loss saw */
  fixture_free (&f);
}

static void
test_refusals (void)
{
  Fixture f;
  fixture_init (&f);
  GError *error = NULL;
  float loss;
  f.target[7] = NAN;
  g_assert_false (oft_unet_train_loss (f.u, f.x, f.t, f.ctx, 2, 16, 16, 77, f.target, FALSE, &loss, f.grads, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC);
  g_clear_error (&error);
  oft_unet_detach_trainable (f.u);
  g_assert_false (oft_unet_train_loss (f.u, f.x, f.t, f.ctx, 2, 16, 16, 77, f.target, FALSE, &loss, f.grads, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_clear_error (&error);
  /* an adapter already running on the fly cannot be trained on top */
  g_assert_true (oft_unet_apply_adapter (f.u, f.a, FALSE, &error));
  g_assert_false (oft_unet_attach_trainable (f.u, f.a, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "merge it first"));
  g_clear_error (&error);
  fixture_free (&f);
}

/* ∂loss/∂control (the condition encoder's input to the UNet) against the loss's change along it. */
static void
test_control_gradient (void)
{
  Fixture f;
  fixture_init (&f);
  const int64_t n = 2 * 32 * 16 * 16;
  g_assert_cmpint (oft_unet_control_channels (f.u), ==, 32);
  float *r = g_new (float, n), *dr = g_new0 (float, n), *rp = g_new (float, n);
  test_fill_uniform (r, n, -0.5f, 0.5f, 5);
  oft_unet_set_control (f.u, r, dr);
  float loss0, lp = 0, lm = 0;
  GError *error = NULL;
  g_assert_true (oft_unet_train_loss (f.u, f.x, f.t, f.ctx, 2, 16, 16, 77, f.target, FALSE, &loss0, f.grads, &error));
  /* the control changes the loss at all */
  oft_unet_set_control (f.u, NULL, NULL);
  float plain;
  g_assert_true (oft_unet_train_loss (f.u, f.x, f.t, f.ctx, 2, 16, 16, 77, f.target, FALSE, &plain, f.grads, &error));
  g_assert_cmpfloat (fabsf (plain - loss0), >, 1e-4);
  /* directional derivative along dr/|dr| (the steepest direction, so the finite difference is large
   * against float rounding): central difference with step h in r */
  double norm = 0;
  for (int64_t i = 0; i < n; i++)
    norm += (double) dr[i] * dr[i];
  norm = sqrt (norm);
  g_assert_cmpfloat (norm, >, 0);
  const double h = 0.05;
  for (int sign = -1; sign <= 1; sign += 2)
    {
      for (int64_t i = 0; i < n; i++)
        rp[i] = (float) (r[i] + sign * h * dr[i] / norm);
      oft_unet_set_control (f.u, rp, NULL);
      float *out = g_new (float, 2 * 4 * 16 * 16);
      g_assert_true (oft_unet_forward (f.u, f.x, f.t, f.ctx, 2, 16, 16, 77, out, &error));
      double l = 0;
      for (int i = 0; i < 2 * 4 * 16 * 16; i++)
        l += ((double) out[i] - f.target[i]) * ((double) out[i] - f.target[i]);
      l /= 2 * 4 * 16 * 16;
      if (sign < 0)
        lm = (float) l;
      else
        lp = (float) l;
      g_free (out);
    }
  double fd = ((double) lp - lm) / (2 * h);
  g_test_message ("control gradient: |dr| = %.6g, finite difference %.6g", norm, fd);
  /* curvature over ±0.05 and float rounding of the losses (~1e-7 / 0.1): 1% */
  g_assert_cmpfloat (fabs (fd - norm), <=, 1e-2 * norm);
  oft_unet_set_control (f.u, NULL, NULL);
  g_free (r);
  g_free (dr);
  g_free (rp);
  fixture_free (&f);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_data_func ("/unet-train/golden/loss-and-grads", GINT_TO_POINTER (0), test_golden_grads);
  g_test_add_data_func ("/unet-train/golden/loss-and-grads-checkpointed", GINT_TO_POINTER (1), test_golden_grads);
  g_test_add_func ("/unet-train/checkpoint-identical", test_checkpoint_identical);
  g_test_add_func ("/unet-train/refusals", test_refusals);
  g_test_add_func ("/unet-train/control-gradient", test_control_gradient);
  return g_test_run ();
}
