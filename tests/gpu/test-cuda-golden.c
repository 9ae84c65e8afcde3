/* The golden inference tests on the GPU: the tiny UNet, the VAE decoder, the UNet with the OFT adapter
 * applied on the fly, and the whole txt2img pipeline, through oft_*_set_device and the CUDA module, in fp32
 * (TF32 off) against the golden references and in bf16 against stated bounds; every measured error is
 * printed. Exits 77 (skipped) when no GPU can be used. Run against tests/gpu/mock-cuda.c (a CPU stand-in
 * for the kernels) it checks the model code's wiring on machines without a GPU; the bounds are the same.
 *
 * bf16 bounds: measured with the CPU stand-in, which rounds every stored tensor to bf16 as the device
 * kernels do, the UNet output is off by 1.5 % of its scale, the OFT UNet by 1.8 %, the VAE image by 3.5 %,
 * the txt2img image by 0.042; the GPU sums in other orders and rounds attention probabilities too, so the
 * bounds are about 3× those. */
#include "../test-common.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define BF16_UNET_TOL 5e-2
#define BF16_VAE_TOL 1e-1
/* bf16 training: the loss's relative error, each gradient tensor's max error relative to its scale, and
 * all 128 gradients' relative L2 error together. The CPU stand-in measured 8e-5, 0.128 and 0.036; the GPU
 * sums in other orders and rounds attention probabilities too, so the bounds are about 3× those (the
 * loss, a mean over all outputs, 25×). */
#define BF16_TRAIN_LOSS_TOL 2e-3
#define BF16_TRAIN_TOL 0.4
#define BF16_TRAIN_L2_TOL 0.1

static const int64_t N_UNET = 2 * 4 * 16 * 16;

typedef struct {
  OftSafetensors *st;
  double tol;          /* 0: print only */
  int checked;
} TapCtx;

/* max |got − want| over n, and the scale max |want| */
static double
max_err (const float *got, const float *want, int64_t n, double *scale)
{
  double m = 0, s = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double e = fabs ((double) got[i] - want[i]);
      m = isnan (e) ? INFINITY : fmax (m, e);
      s = fmax (s, fabs ((double) want[i]));
    }
  *scale = s;
  return m;
}

static double
report (const char *what, const float *got, const float *want, int64_t n, double tol)
{
  if (tol > 0)
    return test_assert_close (what, got, want, n, tol);
  double scale, m = max_err (got, want, n, &scale);
  g_test_message ("%-40s max abs err %.3g  (scale %.3g, relative %.3g; printed, not asserted)", what, m, scale,
                  m / fmax (scale, 1e-30));
  return m;
}

static void
compare_tap (const char *name, const float *data, int64_t n, gpointer user)
{
  TapCtx *c = user;
  char *key = g_strconcat ("unet_dbg.", name, NULL);
  int64_t want_n = 0;
  float *want = test_load (c->st, key, &want_n);
  g_assert_cmpint (n, ==, want_n);
  report (key, data, want, n, c->tol);
  c->checked++;
  g_free (want);
  g_free (key);
}

static void
to_device (OftUnet *u, OftDType dt)
{
  GError *error = NULL;
  g_assert_true (oft_unet_set_device (u, OFT_DEVICE_CUDA, dt, &error));
  g_assert_no_error (error);
  g_assert_cmpint (oft_unet_device (u), ==, OFT_DEVICE_CUDA);
}

/* max |a − b| over n (NaN counts as infinite) */
static double
max_diff (const float *a, const float *b, int64_t n)
{
  double m = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double e = fabs ((double) a[i] - b[i]);
      m = isnan (e) ? INFINITY : fmax (m, e);
    }
  return m;
}

/* The CPU stand-in (tests/gpu/mock-cuda.c) converts every operand of every bf16 launch, slow under the
 * sanitizers: its bf16 graph checks are left out (the graph path is the same code in fp32, checked there). */
static gboolean
on_stand_in (void)
{
  const char *name = oft_cuda_device_name ();
  return name && g_str_has_prefix (name, "CPU mock");
}

/* CUDA graph replay (cuda-unet.c): the forwards after the first untapped one are captured once and
 * replayed; they must give the eager forward's output to the last bit (the same kernels on the same
 * inputs; only the launching differs), also after the inputs change between replays. That presumes the
 * eager forward is itself deterministic, which is checked first (two eager forwards with graphs off); if it
 * is not, the replays are held to the golden tolerance `tol` instead, and the test says so. `eager` is the
 * output of an eager forward of (sample, t, context). */
static void
graph_replay_check (OftUnet *u, const float *sample, const float *t, const float *context, const float *eager,
                    double tol)
{
  GError *error = NULL;
  float *got = g_new (float, N_UNET), *want = g_new (float, N_UNET), *s2 = g_new (float, N_UNET);
  g_setenv ("OFT_CUDA_GRAPHS", "0", TRUE);
  g_assert_true (oft_unet_forward (u, sample, t, context, 2, 16, 16, 77, want, &error));
  g_unsetenv ("OFT_CUDA_GRAPHS");
  g_assert_no_error (error);
  double nondet = max_diff (want, eager, N_UNET);
  /* bound on |replay − eager|: 0, or the golden tolerance relative to the output's scale */
  double scale = 0;
  for (int64_t i = 0; i < N_UNET; i++)
    scale = fmax (scale, fabs (eager[i]));
  const double bound = nondet == 0 ? 0 : tol * fmax (scale, 1.0);
  g_test_message ("eager forward vs eager forward: max abs diff %.3g (%s)", nondet,
                  nondet == 0 ? "deterministic: graph replays must match to the bit"
                              : "NOT deterministic: graph replays held to the golden tolerance");
  for (int i = 0; i < 3; i++)  /* warm eager run, capture, replay */
    {
      g_assert_true (oft_unet_forward (u, sample, t, context, 2, 16, 16, 77, got, &error));
      g_assert_no_error (error);
      double d = max_diff (got, eager, N_UNET);
      g_test_message ("graph forward %d vs eager: max abs diff %.3g (bound %.3g)", i, d, bound);
      g_assert_cmpfloat (d, <=, bound);
    }
  /* new inputs into the same buffers: the replay reads them (an eager run with graphs off is the reference);
   * a new context too (the module skips uploading an unchanged one) */
  const int64_t n_ctx = 2 * 77 * (int64_t) oft_unet_context_dim (u);
  float t2[2] = { t[1] * 0.5f + 3, t[0] + 7 }, *c2 = g_new (float, n_ctx);
  for (int64_t i = 0; i < N_UNET; i++)
    s2[i] = 0.8f * sample[i] + 0.1f;
  for (int64_t i = 0; i < n_ctx; i++)
    c2[i] = 0.9f * context[i];
  g_assert_true (oft_unet_forward (u, s2, t2, c2, 2, 16, 16, 77, got, &error));
  g_assert_no_error (error);
  g_setenv ("OFT_CUDA_GRAPHS", "0", TRUE);
  g_assert_true (oft_unet_forward (u, s2, t2, c2, 2, 16, 16, 77, want, &error));
  g_unsetenv ("OFT_CUDA_GRAPHS");
  g_assert_no_error (error);
  double d = max_diff (got, want, N_UNET), moved = max_diff (got, eager, N_UNET);
  g_test_message ("graph replay on new inputs vs eager: max abs diff %.3g (bound %.3g); moved %.3g from the "
                  "first inputs' output", d, bound, moved);
  g_assert_cmpfloat (d, <=, bound);
  g_assert_cmpfloat (moved, >, 2 * bound);  /* the replay did not return a stale output */
  /* and back to the first inputs */
  g_assert_true (oft_unet_forward (u, sample, t, context, 2, 16, 16, 77, got, &error));
  g_assert_no_error (error);
  g_assert_cmpfloat (max_diff (got, eager, N_UNET), <=, bound);
  g_free (got);
  g_free (want);
  g_free (s2);
  g_free (c2);
}

static void
unet_golden (OftDType dt, double tol, double tap_tol)
{
  OftUnet *u = test_load_unet ("pipeline/unet");
  to_device (u, dt);
  TapCtx ctx = { .st = test_open_golden ("pipeline/reference.safetensors"), .tol = tap_tol };
  float *sample = test_load (ctx.st, "unet_sample", NULL);
  float *context = test_load (ctx.st, "unet_encoder_hidden_states", NULL), *t = test_load (ctx.st, "unet_timesteps", NULL);
  float *out = g_new (float, N_UNET), *out2 = g_new (float, N_UNET);
  GError *error = NULL;
  oft_unet_set_tap (u, compare_tap, &ctx);
  g_assert_true (oft_unet_forward (u, sample, t, context, 2, 16, 16, 77, out, &error));
  g_assert_no_error (error);
  g_assert_cmpint (ctx.checked, ==, 13);  /* the same intermediates as the CPU forward reports */
  float *want = test_load (ctx.st, "unet_out", NULL);
  report (dt == OFT_DTYPE_F32 ? "GPU fp32 unet_out" : "GPU bf16 unet_out", out, want, N_UNET, tol);
  /* without taps (the fused last step) and a second time (reused device memory): the same numbers */
  oft_unet_set_tap (u, NULL, NULL);
  g_assert_true (oft_unet_forward (u, sample, t, context, 2, 16, 16, 77, out2, &error));
  g_assert_no_error (error);
  report ("second forward vs first", out2, out, N_UNET, tol);
  if (dt == OFT_DTYPE_F32 || !on_stand_in ())
    graph_replay_check (u, sample, t, context, out2, tol);
  /* a bad size is refused before the device is touched */
  g_assert_false (oft_unet_forward (u, sample, t, context, 2, 12, 16, 77, out, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE);
  g_clear_error (&error);
  g_free (want);
  g_free (out);
  g_free (out2);
  g_free (sample);
  g_free (context);
  g_free (t);
  oft_safetensors_close (ctx.st);
  oft_unet_free (u);
}

/* fp32 with TF32 off: the project tolerance, 1e-4 of the scale (the CPU meets 1e-5; the GPU's sums run
 * in other orders and its exp/erf differ in the last bits) */
static void test_unet_fp32 (void) { unet_golden (OFT_DTYPE_F32, 1e-4, 1e-4); }
static void test_unet_bf16 (void) { unet_golden (OFT_DTYPE_BF16, BF16_UNET_TOL, 0); }

static void
vae_golden (OftDType dt, double tol)
{
  char *dir = test_golden_path ("pipeline/vae");
  GError *error = NULL;
  OftVae *v = oft_vae_load (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  g_assert_true (oft_vae_set_device (v, OFT_DEVICE_CUDA, dt, &error));
  g_assert_no_error (error);
  g_assert_cmpint (oft_vae_device (v), ==, OFT_DEVICE_CUDA);
  OftSafetensors *st = test_open_golden ("pipeline/reference.safetensors");
  int64_t n = 0;
  float *z = test_load (st, "vae_decode_in", NULL), *want = test_load (st, "vae_decode_out", &n);
  float *img = g_new (float, n);
  g_assert_true (oft_vae_decode (v, z, 1, 16, 16, img, &error));
  g_assert_no_error (error);
  /* vae_decode_out is vae.decode(z) without the scaling factor, as oft_vae_decode */
  report (dt == OFT_DTYPE_F32 ? "GPU fp32 vae_decode_out" : "GPU bf16 vae_decode_out", img, want, n, tol);
  g_free (z);
  g_free (want);
  g_free (img);
  oft_safetensors_close (st);
  oft_vae_free (v);
}

static void test_vae_fp32 (void) { vae_golden (OFT_DTYPE_F32, 1e-4); }
static void test_vae_bf16 (void) { vae_golden (OFT_DTYPE_BF16, BF16_VAE_TOL); }

/* The OFT adapter of golden C applied on the fly (128 rotated Linears, block 8): once before moving
 * to the GPU and once after (which uploads again), against PEFT's output and the CPU forward. */
static void
unet_oft (OftDType dt, double tol)
{
  OftSafetensors *st = test_open_golden ("unet_oft/reference.safetensors");
  float *x = test_load (st, "noisy_latents", NULL), *ctx = test_load (st, "encoder_hidden_states", NULL);
  float *t = test_load (st, "timesteps", NULL), *want = test_load (st, "unet_out_adapter", NULL);
  OftPeftAdapter *a = test_load_adapter ("unet_oft/adapter");
  float *cpu = g_new (float, N_UNET), *gpu = g_new (float, N_UNET);
  GError *error = NULL;
  for (int order = 0; order < 2; order++)
    {
      OftUnet *u = test_load_unet ("pipeline/unet");
      if (order == 1)
        to_device (u, dt);
      g_assert_true (oft_unet_apply_adapter (u, a, FALSE, &error));
      g_assert_no_error (error);
      if (order == 0)
        {
          g_assert_true (oft_unet_forward (u, x, t, ctx, 2, 16, 16, 77, cpu, &error));
          g_assert_no_error (error);
          to_device (u, dt);
        }
      g_assert_cmpint (oft_unet_device (u), ==, OFT_DEVICE_CUDA);
      g_assert_true (oft_unet_forward (u, x, t, ctx, 2, 16, 16, 77, gpu, &error));
      g_assert_no_error (error);
      char what[80];
      g_snprintf (what, sizeof what, "GPU %s OFT unet_out_adapter (%s)", dt == OFT_DTYPE_F32 ? "fp32" : "bf16",
                  order == 0 ? "applied first" : "applied on the GPU");
      report (what, gpu, want, N_UNET, tol);
      report ("  vs the CPU forward", gpu, cpu, N_UNET, tol);
      /* the rotations inside a captured graph */
      if (order == 1 && (dt == OFT_DTYPE_F32 || !on_stand_in ()))
        graph_replay_check (u, x, t, ctx, gpu, tol);
      oft_unet_free (u);
    }
  g_free (cpu);
  g_free (gpu);
  g_free (x);
  g_free (ctx);
  g_free (t);
  g_free (want);
  oft_peft_adapter_free (a);
  oft_safetensors_close (st);
}

static void test_unet_oft_fp32 (void) { unet_oft (OFT_DTYPE_F32, 1e-4); }
static void test_unet_oft_bf16 (void) { unet_oft (OFT_DTYPE_BF16, BF16_UNET_TOL); }

/* Full-parameter training stays on the CPU: refused both ways round, with a message that says what to
 * do; an OFT adapter attaches for training on the GPU either way round. */
static void
test_training_refused (void)
{
  OftUnet *u = test_load_unet ("pipeline/unet");
  OftPeftAdapter *a = test_load_adapter ("unet_oft/adapter");
  GError *error = NULL;
  to_device (u, OFT_DTYPE_F32);
  g_assert_false (oft_unet_attach_full_training (u, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "GPU"));
  g_clear_error (&error);
  g_assert_true (oft_unet_attach_trainable (u, a, &error));
  g_assert_no_error (error);
  oft_unet_detach_trainable (u);
  /* BOFT trains on the CPU only: refused when attached on the GPU, and the upload refused when attached first */
  OftAdapterConfig cfg = { .kind = OFT_ADAPTER_BOFT, .boft_block_size = 8, .boft_n_factors = 1 };
  OftPeftAdapter *boft = oft_peft_adapter_new (&cfg, NULL);
  float *zeros = g_new0 (float, 32 * 8), *ones = g_new (float, 32);
  for (int i = 0; i < 32; i++)
    ones[i] = 1;
  OftTensor p = { .dtype = OFT_DTYPE_F32, .ndim = 4, .shape = { 1, 4, 8, 8 }, .data = zeros };
  OftTensor sc = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { 32, 1 }, .data = ones };
  g_assert_true (oft_peft_adapter_add_module (boft, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", &p,
                                              &sc, &error));
  g_assert_no_error (error);
  g_assert_false (oft_unet_attach_trainable (u, boft, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "BOFT"));
  g_clear_error (&error);
  g_assert_true (oft_unet_set_device (u, OFT_DEVICE_CPU, OFT_DTYPE_F32, &error));
  g_assert_true (oft_unet_attach_trainable (u, boft, &error));
  g_assert_no_error (error);
  g_assert_false (oft_unet_set_device (u, OFT_DEVICE_CUDA, OFT_DTYPE_F32, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "BOFT"));
  g_clear_error (&error);
  g_assert_cmpint (oft_unet_device (u), ==, OFT_DEVICE_CPU);
  oft_unet_detach_trainable (u);
  oft_peft_adapter_free (boft);
  g_free (zeros);
  g_free (ones);
  g_assert_true (oft_unet_attach_full_training (u, &error));
  g_assert_no_error (error);
  g_assert_false (oft_unet_set_device (u, OFT_DEVICE_CUDA, OFT_DTYPE_F32, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "training"));
  g_clear_error (&error);
  g_assert_cmpint (oft_unet_device (u), ==, OFT_DEVICE_CPU);
  oft_peft_adapter_free (a);
  oft_unet_free (u);
}

/* The OFT training step on the GPU (golden C: 128 trained rotations, block 8) against PEFT's loss and
 * its gradient of every oft_R.weight, with and without checkpointing: the same checks as
 * tests/test-unet-train.c makes of the CPU. tol: relative to each gradient tensor's scale. */
static void
unet_train (OftDType dt, gboolean checkpoint, double loss_tol, double tol, double l2_tol)
{
  OftSafetensors *st = test_open_golden ("unet_oft/reference.safetensors");
  float *x = test_load (st, "noisy_latents", NULL), *ctx = test_load (st, "encoder_hidden_states", NULL);
  float *t = test_load (st, "timesteps", NULL), *target = test_load (st, "noise", NULL);
  float *want_loss = test_load (st, "loss", NULL);
  OftPeftAdapter *a = test_load_adapter ("unet_oft/adapter");
  OftUnet *u = test_load_unet ("pipeline/unet");
  GError *error = NULL;
  to_device (u, dt);
  g_assert_true (oft_unet_attach_trainable (u, a, &error));
  g_assert_no_error (error);
  size_t n = oft_peft_adapter_n_modules (a);
  float **grads = g_new0 (float *, n);
  for (size_t i = 0; i < n; i++)
    grads[i] = g_new0 (float, oft_tensor_numel (&oft_peft_adapter_module (a, i)->param));
  float loss = 0;
  gboolean ok = oft_unet_train_loss (u, x, t, ctx, 2, 16, 16, 77, target, checkpoint, &loss, grads, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  g_assert_cmpint (oft_unet_device (u), ==, OFT_DEVICE_CUDA);
  const char *name = dt == OFT_DTYPE_F32 ? "fp32" : "bf16";
  char what[96];
  g_snprintf (what, sizeof what, "GPU %s training loss%s", name, checkpoint ? " (checkpointed)" : "");
  report (what, &loss, want_loss, 1, loss_tol);
  double worst = 0, d2 = 0, r2 = 0;
  for (size_t i = 0; i < n; i++)
    {
      const OftAdapterModule *m = oft_peft_adapter_module (a, i);
      char *key = g_strdup_printf ("grad.base_model.model.%s.oft_R.weight", m->module);
      int64_t ng = 0;
      float *g = test_load (st, key, &ng);
      g_assert_cmpint (ng, ==, oft_tensor_numel (&m->param));
      for (int64_t j = 0; j < ng; j++)
        {
          d2 += ((double) grads[i][j] - g[j]) * ((double) grads[i][j] - g[j]);
          r2 += (double) g[j] * g[j];
        }
      double scale, err = max_err (grads[i], g, ng, &scale);
      worst = fmax (worst, err / fmax (scale, 1e-30));
      if (!(err <= tol * scale))
        g_test_fail_printf ("GPU %s %s: max abs error %.3g at scale %.3g (bound %.3g of the scale)", name, key, err,
                            scale, tol);
      g_free (g);
      g_free (key);
    }
  double all = sqrt (d2 / fmax (r2, 1e-300));
  /* the forward with the adapter attached for training runs its rotations too: PEFT's output with it */
  float *out = g_new (float, N_UNET), *want_out = test_load (st, "unet_out_adapter", NULL);
  g_assert_true (oft_unet_forward (u, x, t, ctx, 2, 16, 16, 77, out, &error));
  g_assert_no_error (error);
  g_snprintf (what, sizeof what, "GPU %s forward, adapter attached for training", name);
  report (what, out, want_out, N_UNET, dt == OFT_DTYPE_F32 ? 1e-4 : BF16_UNET_TOL);
  g_free (out);
  g_free (want_out);
  g_test_message ("GPU %s training, %zu gradients%s: worst error %.3g of the tensor's scale (bound %.3g); all "
                  "gradients together: relative L2 error %.3g (bound %.3g)", name, n, checkpoint ? " (checkpointed)" : "",
                  worst, tol, all, l2_tol);
  if (!(all <= l2_tol))
    g_test_fail_printf ("GPU %s gradients: relative L2 error %.3g over the bound %.3g", name, all, l2_tol);
  for (size_t i = 0; i < n; i++)
    g_free (grads[i]);
  g_free (grads);
  oft_unet_free (u);
  oft_peft_adapter_free (a);
  g_free (x);
  g_free (ctx);
  g_free (t);
  g_free (target);
  g_free (want_loss);
  oft_safetensors_close (st);
}

/* fp32 with TF32 off: the project's 1e-4 of each tensor's scale, and the loss within 1e-5 relative
 * (the CPU meets 1e-6; the GPU sums in other orders) */
static void test_unet_train_fp32 (void) { unet_train (OFT_DTYPE_F32, FALSE, 1e-5, 1e-4, 1e-4); }
static void test_unet_train_fp32_ckpt (void) { unet_train (OFT_DTYPE_F32, TRUE, 1e-5, 1e-4, 1e-4); }
/* bf16: every activation stored in bf16 (8-bit mantissa) through a forward and a backward of the whole
 * UNet; BF16_TRAIN_* at the top are the stated bounds, with the measurements */
static void test_unet_train_bf16 (void)
{
  unet_train (OFT_DTYPE_BF16, TRUE, BF16_TRAIN_LOSS_TOL, BF16_TRAIN_TOL, BF16_TRAIN_L2_TOL);
}

/* The golden adapter's parameters as an exact Cayley adapter (golden C itself uses the Neumann series,
 * which the host computes): with block_share each module keeps its first row, with coft a radius small
 * enough to project every module. */
static OftPeftAdapter *
exact_cayley_adapter (const OftPeftAdapter *golden, gboolean share_coft)
{
  OftAdapterConfig cfg = *oft_peft_adapter_config (golden);
  cfg.neumann = false;
  cfg.block_share = share_coft;
  cfg.coft = share_coft;
  cfg.eps = 1e-3;
  const char *const targets[] = { "to_q", "to_k", "to_v", "to_out.0", NULL };
  OftPeftAdapter *a = oft_peft_adapter_new (&cfg, targets);
  GError *error = NULL;
  for (size_t i = 0; i < oft_peft_adapter_n_modules (golden); i++)
    {
      const OftAdapterModule *m = oft_peft_adapter_module (golden, i);
      OftTensor p = m->param;
      if (share_coft)
        p.shape[0] = 1;
      g_assert_true (oft_peft_adapter_add_module (a, m->module, &p, NULL, &error));
      g_assert_no_error (error);
    }
  return a;
}

static float
train_grads (OftUnet *u, OftPeftAdapter *a, float **grads, const float *x, const float *t, const float *ctx,
             const float *target)
{
  GError *error = NULL;
  float loss = 0;
  g_assert_true (oft_unet_attach_trainable (u, a, &error));
  g_assert_no_error (error);
  g_assert_true (oft_unet_train_loss (u, x, t, ctx, 2, 16, 16, 77, target, FALSE, &loss, grads, &error));
  g_assert_no_error (error);
  return loss;
}

/* Exact Cayley rotations are built and differentiated on the GPU (oftcu_cayley_*): the loss and every
 * packed gradient against the CPU's (double LU) on the same model, fp32 with TF32 off, ≤ 1e-4 of each
 * tensor's scale; then the same with one shared block per module and COFT projecting every module. */
static void
test_unet_train_exact_cayley (void)
{
  OftSafetensors *st = test_open_golden ("unet_oft/reference.safetensors");
  float *x = test_load (st, "noisy_latents", NULL), *ctx = test_load (st, "encoder_hidden_states", NULL);
  float *t = test_load (st, "timesteps", NULL), *target = test_load (st, "noise", NULL);
  OftPeftAdapter *golden = test_load_adapter ("unet_oft/adapter");
  OftUnet *cpu = test_load_unet ("pipeline/unet"), *gpu = test_load_unet ("pipeline/unet");
  to_device (gpu, OFT_DTYPE_F32);
  for (int share_coft = 0; share_coft <= 1; share_coft++)
    {
      OftPeftAdapter *ac = exact_cayley_adapter (golden, share_coft), *ag = exact_cayley_adapter (golden, share_coft);
      size_t n = oft_peft_adapter_n_modules (ac);
      float **gc = g_new0 (float *, n), **gg = g_new0 (float *, n);
      for (size_t i = 0; i < n; i++)
        {
          int64_t k = oft_tensor_numel (&oft_peft_adapter_module (ac, i)->param);
          gc[i] = g_new0 (float, k);
          gg[i] = g_new0 (float, k);
        }
      float lc = train_grads (cpu, ac, gc, x, t, ctx, target), lg = train_grads (gpu, ag, gg, x, t, ctx, target);
      const char *what = share_coft ? "shared blocks, COFT" : "a block per row";
      char label[128];
      g_snprintf (label, sizeof label, "GPU fp32 exact Cayley (%s) loss vs the CPU", what);
      report (label, &lg, &lc, 1, 1e-5);
      double worst = 0;
      for (size_t i = 0; i < n; i++)
        {
          const OftAdapterModule *mc = oft_peft_adapter_module (ac, i), *mg = oft_peft_adapter_module (ag, i);
          int64_t k = oft_tensor_numel (&mc->param);
          /* COFT projected both copies of the parameters in place, on the host (up to an ulp per repetition) */
          double scale, err = max_err (mg->param.data, mc->param.data, k, &scale);
          g_assert_cmpfloat (err, <=, 1e-6 * scale);
          err = max_err (gg[i], gc[i], k, &scale);
          worst = fmax (worst, err / fmax (scale, 1e-30));
          if (!(err <= 1e-4 * scale))
            g_test_fail_printf ("GPU exact Cayley (%s) %s: max abs error %.3g at scale %.3g", what, mc->module, err,
                                scale);
        }
      g_test_message ("GPU fp32 exact Cayley (%s), %zu gradients vs the CPU: worst error %.3g of the tensor's scale "
                      "(bound 0.0001)", what, n, worst);
      for (size_t i = 0; i < n; i++)
        g_free (gc[i]), g_free (gg[i]);
      g_free (gc);
      g_free (gg);
      oft_unet_detach_trainable (cpu);
      oft_unet_detach_trainable (gpu);
      oft_peft_adapter_free (ac);
      oft_peft_adapter_free (ag);
    }
  oft_unet_free (cpu);
  oft_unet_free (gpu);
  oft_peft_adapter_free (golden);
  g_free (x);
  g_free (ctx);
  g_free (t);
  g_free (target);
  oft_safetensors_close (st);
}

/* Replay (oft train --replay-batch with --device): 3 AdamW steps on the golden batch from the golden
 * adapter with the UNet on the GPU, against PEFT's adamw_step3 parameters and its loss sequence. */
static void
replay (OftDType dt, double loss_tol, double loose_at, double loose_share)
{
  char *model = test_golden_path ("pipeline"), *batch = test_golden_path ("unet_oft/reference.safetensors");
  char *init = test_golden_path ("unet_oft/adapter");
  char *tmp = g_dir_make_tmp ("oft-replay-gpu-XXXXXX", NULL), *out = g_build_filename (tmp, "a", NULL);
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (model, &error);
  g_assert_no_error (error);
  to_device (p->unet, dt);
  double losses[4];
  g_assert_true (oft_train_replay (p->unet, &p->schedule, batch, init, 3, 1e-3, 1e-2, out, losses, &error));
  g_assert_no_error (error);
  g_assert_cmpint (oft_unet_device (p->unet), ==, OFT_DEVICE_CUDA);
  OftSafetensors *ref = test_open_golden ("unet_oft/reference.safetensors");
  float *want_losses = test_load (ref, "adamw_losses", NULL);
  OftPeftAdapter *a = oft_peft_adapter_load (out, &error);
  g_assert_no_error (error);
  double worst = 0;
  int64_t total = 0, loose = 0;
  for (size_t i = 0; i < oft_peft_adapter_n_modules (a); i++)
    {
      const OftAdapterModule *m = oft_peft_adapter_module (a, i);
      char *key = g_strdup_printf ("adamw_step3.base_model.model.%s.oft_R.weight", m->module);
      int64_t n;
      float *want = test_load (ref, key, &n), *got = m->param.data;
      g_assert_cmpint (n, ==, oft_tensor_numel (&m->param));
      for (int64_t j = 0; j < n; j++)
        {
          double e = fabs ((double) got[j] - want[j]);
          worst = isnan (e) ? INFINITY : fmax (worst, e);
          loose += !(e <= loose_at);
        }
      total += n;
      g_free (want);
      g_free (key);
    }
  const char *name = dt == OFT_DTYPE_F32 ? "fp32" : "bf16";
  g_test_message ("GPU %s replay 3 AdamW steps: params max abs err %.3g, %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                  " beyond %.g (bound %.2g%%); losses %.9g %.9g %.9g %.9g vs %.9g %.9g %.9g %.9g", name, worst, loose,
                  total, loose_at, 100 * loose_share, losses[0], losses[1], losses[2], losses[3], want_losses[0],
                  want_losses[1], want_losses[2], want_losses[3]);
  /* The first Adam steps are ≈ lr·sign(g): where |g| is near Adam's eps (1e-8) the GPU's summation order
   * moves an update by up to lr = 1e-3, so the bound is on how many values move beyond loose_at, not on
   * the worst one; a wrong gradient moves most of them by ~1e-3. */
  g_assert_cmpfloat ((double) loose, <=, loose_share * total);
  for (int k = 0; k <= 3; k++)
    if (!(fabs (losses[k] - want_losses[k]) <= loss_tol * want_losses[k]))
      g_test_fail_printf ("GPU %s replay loss %d: %.9g vs %.9g (bound %.g relative)", name, k, losses[k],
                          want_losses[k], loss_tol);
  oft_peft_adapter_free (a);
  oft_safetensors_close (ref);
  g_free (want_losses);
  oft_pipeline_free (p);
  char *argv[] = { "rm", "-rf", tmp, NULL };
  g_spawn_sync (NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
  g_free (tmp);
  g_free (out);
  g_free (model);
  g_free (batch);
  g_free (init);
}

/* fp32 (TF32 off): at most 1 % of the values beyond 1e-5 (the CPU: 1 % beyond 1e-6, worst 1e-4), the
 * losses within 1e-5 relative */
static void test_replay_fp32 (void) { replay (OFT_DTYPE_F32, 1e-5, 1e-5, 0.01); }

/* txt2img (golden B's DDIM call, prompt 0, its initial noise) with the UNet and VAE on the GPU, against
 * the same call on the CPU and the golden image */
static void
pipeline (OftDType dt, double tol_cpu, double tol_golden)
{
  char *dir = test_golden_path ("pipeline");
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  OftSafetensors *st = test_open_golden ("pipeline/reference.safetensors");
  float *init = test_load (st, "ddim_init_latents", NULL), *img = test_load (st, "ddim_image", NULL);
  const int64_t np = 3 * 128 * 128;
  float *cpu = g_new (float, np), *gpu = g_new (float, np);
  OftGenerateParams g;
  oft_generate_params_init (&g);
  g.prompt = "a photo of a cat";
  g.steps = 10;
  g.guidance = 7.5f;
  g.width = g.height = 128;
  g.init_noise = init;
  g_assert_true (oft_pipeline_generate (p, &g, cpu, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (oft_pipeline_set_device (p, OFT_DEVICE_CUDA, dt, &error));
  g_assert_no_error (error);
  gint64 t0 = g_get_monotonic_time ();
  g_assert_true (oft_pipeline_generate (p, &g, gpu, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  g_test_message ("GPU %s txt2img 128x128, 10 steps: %.1f ms", dt == OFT_DTYPE_F32 ? "fp32" : "bf16",
                  (g_get_monotonic_time () - t0) / 1e3);
  report (dt == OFT_DTYPE_F32 ? "GPU fp32 image vs CPU image" : "GPU bf16 image vs CPU image", gpu, cpu, np, tol_cpu);
  report (dt == OFT_DTYPE_F32 ? "GPU fp32 image vs golden ddim_image" : "GPU bf16 image vs golden ddim_image", gpu, img,
          np, tol_golden);
  g_free (cpu);
  g_free (gpu);
  g_free (init);
  g_free (img);
  oft_safetensors_close (st);
  oft_pipeline_free (p);
}

/* fp32: the image is in [0, 1]; the CPU test holds it to 1e-4 of golden, fp32-vs-fp64 is 2.6e-6. Ten
 * guided steps (×7.5 on the branch difference) amplify the GPU's different summation orders, so 1e-3. */
static void test_pipeline_fp32 (void) { pipeline (OFT_DTYPE_F32, 1e-3, 1e-3); }
/* bf16 through ten guided steps (0.042 on the stand-in): asserted within 0.25 of the CPU image, which a
 * broken forward (noise, off by ~1) misses; printed against golden */
static void
test_pipeline_bf16 (void)
{
  /* the stand-in converts every operand of every launch: 5 s here, for wiring the fp32 run has checked */
  const char *name = oft_cuda_device_name ();
  if (name && g_str_has_prefix (name, "CPU mock"))
    {
      g_test_skip ("bf16 txt2img on the CPU stand-in (measured 0.042 from the CPU image when run)");
      return;
    }
  pipeline (OFT_DTYPE_BF16, 0.25, 0);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  /* before the module's first init: fp32 GEMMs without TF32, to meet the fp32 tolerance */
  g_setenv ("OFT_CUDA_TF32", "0", TRUE);
  GError *error = NULL;
  OftUnet *probe = test_load_unet ("pipeline/unet");
  gboolean gpu = oft_unet_set_device (probe, OFT_DEVICE_CUDA, OFT_DTYPE_F32, &error);
  oft_unet_free (probe);
  if (!gpu)
    {
      printf ("1..0 # SKIP no usable GPU: %s\n", error->message);
      g_clear_error (&error);
      return 77;
    }
  g_test_add_func ("/cuda/unet/fp32", test_unet_fp32);
  g_test_add_func ("/cuda/unet/bf16", test_unet_bf16);
  g_test_add_func ("/cuda/vae/fp32", test_vae_fp32);
  g_test_add_func ("/cuda/vae/bf16", test_vae_bf16);
  g_test_add_func ("/cuda/unet-oft/fp32", test_unet_oft_fp32);
  g_test_add_func ("/cuda/unet-oft/bf16", test_unet_oft_bf16);
  g_test_add_func ("/cuda/training-refused", test_training_refused);
  g_test_add_func ("/cuda/unet-train/fp32", test_unet_train_fp32);
  g_test_add_func ("/cuda/unet-train/fp32-checkpointed", test_unet_train_fp32_ckpt);
  g_test_add_func ("/cuda/unet-train/bf16", test_unet_train_bf16);
  g_test_add_func ("/cuda/unet-train/exact-cayley-fp32", test_unet_train_exact_cayley);
  g_test_add_func ("/cuda/unet-train/replay-fp32", test_replay_fp32);
  g_test_add_func ("/cuda/pipeline/fp32", test_pipeline_fp32);
  g_test_add_func ("/cuda/pipeline/bf16", test_pipeline_bf16);
  return g_test_run ();
}
