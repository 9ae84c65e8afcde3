/* The trainer's parts: AdamW against PEFT/torch (golden), learning-rate schedules, gradient clipping,
 * DDPM noising and targets against diffusers (golden), the image transform, checkpoints (bit-exact
 * round trip, atomic failure), the UNet's Linear listing. */
#include "test-common.h"
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>

#define KEY_PREFIX "base_model.model."

/* AdamW step 1 from the golden initial adapter and the golden gradients reproduces torch's step 1. */
static void
test_adamw_golden (void)
{
  char *dir = test_golden_path ("unet_oft/adapter");
  GError *error = NULL;
  OftPeftAdapter *a = oft_peft_adapter_load (dir, &error);
  g_assert_no_error (error);
  OftSafetensors *ref = test_open_golden ("unet_oft/reference.safetensors");
  OftAdamW opt;
  oft_adamw_init (&opt);  /* the golden run's settings are torch's defaults, lr 1e-3 */
  double worst = 0, scale = 0;
  int64_t total = 0, above = 0;
  g_assert_cmpuint (oft_peft_adapter_n_modules (a), ==, 128);
  for (size_t i = 0; i < oft_peft_adapter_n_modules (a); i++)
    {
      const OftAdapterModule *m = oft_peft_adapter_module (a, i);
      char *gk = g_strconcat ("grad." KEY_PREFIX, m->module, ".oft_R.weight", NULL);
      char *sk = g_strconcat ("adamw_step1." KEY_PREFIX, m->module, ".oft_R.weight", NULL);
      int64_t n = oft_tensor_numel (&m->param), ng, ns;
      float *g = test_load (ref, gk, &ng), *want = test_load (ref, sk, &ns);
      g_assert_cmpint (ng, ==, n);
      g_assert_cmpint (ns, ==, n);
      float *p = g_memdup2 (m->param.data, n * sizeof (float)), *mm = g_new0 (float, n), *vv = g_new0 (float, n);
      oft_adamw_step (&opt, p, mm, vv, g, n, 1, 1e-3);
      for (int64_t j = 0; j < n; j++)
        {
          double e = fabs ((double) p[j] - want[j]);
          worst = MAX (worst, e);
          scale = MAX (scale, fabs (want[j]));
          /* 1 ulp of the result plus 1e-10: the step is lr·m̂/(√v̂ + eps) ≈ 1e-3 in float32 */
          above += e > 1.2e-7 * fabs (want[j]) + 1e-10;
        }
      total += n;
      g_free (p);
      g_free (mm);
      g_free (vv);
      g_free (g);
      g_free (want);
      g_free (gk);
      g_free (sk);
    }
  /* Same inputs (the fp32 gradients torch computed) and the same float32 operation order as torch's
   * single-tensor AdamW, so the only differences are fused multiply-adds in torch's vectorised kernels:
   * a few ulps of |p| ≤ 0.25. The README's 4e-5 is fp32 vs fp64 *gradients* amplified by the sign-like first
   * step, which does not arise here. Bound 1e-6 (≈ 16 ulps at 0.25), far below the step size 1e-3, so a
   * wrong bias correction, decay or eps placement fails. */
  g_test_message ("AdamW step 1 vs torch: max abs err %.3g over %" G_GINT64_FORMAT " values (scale %.3g), "
                  "%" G_GINT64_FORMAT " beyond 1 ulp", worst, total, scale, above);
  g_assert_cmpint (total, ==, 21728);
  g_assert_cmpfloat (worst, <=, 1e-6);
  oft_safetensors_close (ref);
  oft_peft_adapter_free (a);
  g_free (dir);
}

/* AdamW invariants beyond step 1: the bias-corrected first step is lr·g/(|g| + eps) after decay. */
static void
test_adamw_formula (void)
{
  OftAdamW o;
  oft_adamw_init (&o);
  o.weight_decay = 0.1;
  float p[4] = { 1, -2, 0.5f, 0 }, m[4] = { 0 }, v[4] = { 0 }, g[4] = { 1e-3f, -4, 0, 1e-9f };
  float p0[4];
  memcpy (p0, p, sizeof p);
  oft_adamw_step (&o, p, m, v, g, 4, 1, 0.01);
  for (int i = 0; i < 4; i++)
    {
      double want = p0[i] * (1 - 0.01 * 0.1) - 0.01 * g[i] / (fabs (g[i]) + 1e-8);
      g_assert_cmpfloat (fabs (p[i] - want), <=, 1e-6);  /* float32 evaluation of a double formula */
    }
  /* step 2 with the same gradient: m̂ = g, v̂ = g² again, so the same update size */
  float q = p[1];
  oft_adamw_step (&o, p, m, v, g, 4, 2, 0.01);
  g_assert_cmpfloat (fabs ((q * (1 - 0.001) + 0.01) - p[1]), <=, 1e-6);
}

static void
test_lr_schedules (void)
{
  OftLrSchedule s;
  g_assert_true (oft_lr_schedule_from_name ("cosine", &s) && s == OFT_LR_COSINE);
  g_assert_false (oft_lr_schedule_from_name ("cosine_with_restarts", &s));
  const double base = 6e-5;
  /* warmup: diffusers' LambdaLR starts at 0 and reaches base at step `warmup` */
  for (int k = OFT_LR_CONSTANT; k <= OFT_LR_LINEAR; k++)
    {
      g_assert_cmpfloat (oft_lr_at (k, base, 0, 10, 100), ==, 0);
      g_assert_cmpfloat (fabs (oft_lr_at (k, base, 5, 10, 100) - base / 2), <=, 1e-18);
      g_assert_cmpfloat (fabs (oft_lr_at (k, base, 10, 10, 100) - base), <=, 1e-18);
      double prev = -1;
      for (int i = 0; i <= 10; i++)
        {
          double lr = oft_lr_at (k, base, i, 10, 100);
          g_assert_cmpfloat (lr, >, prev);
          prev = lr;
        }
    }
  g_assert_cmpfloat (oft_lr_at (OFT_LR_CONSTANT, base, 0, 0, 100), ==, base);
  g_assert_cmpfloat (oft_lr_at (OFT_LR_CONSTANT, base, 99, 0, 100), ==, base);
  /* cosine: base at the end of warmup, base/2 half-way, 0 at `total`, decreasing in between */
  g_assert_cmpfloat (fabs (oft_lr_at (OFT_LR_COSINE, base, 55, 10, 100) - base / 2), <=, 1e-18);
  g_assert_cmpfloat (fabs (oft_lr_at (OFT_LR_COSINE, base, 100, 10, 100)), <=, 1e-20);
  g_assert_cmpfloat (fabs (oft_lr_at (OFT_LR_LINEAR, base, 55, 10, 100) - base / 2), <=, 1e-18);
  g_assert_cmpfloat (oft_lr_at (OFT_LR_LINEAR, base, 100, 10, 100), ==, 0);
  for (int k = OFT_LR_COSINE; k <= OFT_LR_LINEAR; k++)
    for (int i = 10; i < 100; i++)
      g_assert_cmpfloat (oft_lr_at (k, base, i + 1, 10, 100), <, oft_lr_at (k, base, i, 10, 100));
}

/* Training timesteps: in range; uniform has P(t ≥ N/2) = ½, cubic (1 − u³) has P(1 − u³ ≥ ½) = ∛½ ≈ 0.794. */
static void
test_timestep_sampling (void)
{
  OftTimestepSampling s;
  g_assert_true (oft_timestep_sampling_from_name ("cubic", &s) && s == OFT_TIMESTEPS_CUBIC);
  g_assert_true (oft_timestep_sampling_from_name ("uniform", &s) && s == OFT_TIMESTEPS_UNIFORM);
  g_assert_false (oft_timestep_sampling_from_name ("logit-normal", &s));
  g_assert_cmpstr (oft_timestep_sampling_name (OFT_TIMESTEPS_CUBIC), ==, "cubic");
  g_assert_cmpint (oft_timestep_sample (OFT_TIMESTEPS_UNIFORM, 0.0, 1000), ==, 0);
  g_assert_cmpint (oft_timestep_sample (OFT_TIMESTEPS_CUBIC, 0.0, 1000), ==, 999);
  g_assert_cmpint (oft_timestep_sample (OFT_TIMESTEPS_UNIFORM, 0.9999999, 1000), ==, 999);
  g_assert_cmpint (oft_timestep_sample (OFT_TIMESTEPS_CUBIC, 0.9999999, 1000), ==, 0);
  OftRng rng;
  oft_rng_seed (&rng, 12);
  const int n = 200000;
  for (int k = OFT_TIMESTEPS_UNIFORM; k <= OFT_TIMESTEPS_CUBIC; k++)
    {
      int high = 0;
      for (int i = 0; i < n; i++)
        {
          int t = oft_timestep_sample (k, oft_rng_uniform (&rng), 1000);
          g_assert_cmpint (t, >=, 0);
          g_assert_cmpint (t, <=, 999);
          high += t >= 500;
        }
      double want = k == OFT_TIMESTEPS_CUBIC ? cbrt (0.5) : 0.5;
      g_test_message ("%s: P(t >= 500) = %.4f (want %.4f)", oft_timestep_sampling_name (k), (double) high / n, want);
      g_assert_cmpfloat (fabs ((double) high / n - want), <=, 0.005);  /* 4.5 standard errors */
    }
}

static double
norm2 (float *const *g, const int64_t *n, int count)
{
  double s = 0;
  for (int i = 0; i < count; i++)
    for (int64_t j = 0; j < n[i]; j++)
      s += (double) g[i][j] * g[i][j];
  return sqrt (s);
}

static void
test_clip_grad_norm (void)
{
  int64_t n[3] = { 7, 100, 33 };
  float *g[3], *orig[3];
  for (int i = 0; i < 3; i++)
    {
      g[i] = g_new (float, n[i]);
      test_fill_uniform (g[i], n[i], -1, 1, 17 + i);
      orig[i] = g_memdup2 (g[i], n[i] * sizeof (float));
    }
  double before = norm2 (g, n, 3);
  /* below the limit: returned norm is the total norm, gradients untouched bit for bit */
  double r = oft_clip_grad_norm (g, n, 3, before * 2);
  g_assert_cmpfloat (fabs (r - before), <=, 1e-12 * before);
  for (int i = 0; i < 3; i++)
    g_assert_true (memcmp (g[i], orig[i], n[i] * sizeof (float)) == 0);
  /* above: the total norm becomes max_norm (up to torch's +1e-6 and float32 rounding), direction kept */
  r = oft_clip_grad_norm (g, n, 3, 0.5);
  g_assert_cmpfloat (fabs (r - before), <=, 1e-12 * before);
  double after = norm2 (g, n, 3);
  g_assert_cmpfloat (fabs (after - 0.5), <=, 1e-6);
  double ratio = g[0][0] / orig[0][0];
  for (int i = 0; i < 3; i++)
    for (int64_t j = 0; j < n[i]; j++)
      g_assert_cmpfloat (fabs (g[i][j] - ratio * orig[i][j]), <=, 1e-7);
  /* max_norm ≤ 0: only measured */
  double now = norm2 (g, n, 3);
  g_assert_cmpfloat (fabs (oft_clip_grad_norm (g, n, 3, 0) - now), <=, 1e-12);
  /* a NaN gradient: reported, nothing scaled */
  g[1][5] = NAN;
  float keep = g[2][0];
  g_assert_true (isnan (oft_clip_grad_norm (g, n, 3, 1e-3)));
  g_assert_cmpfloat (g[2][0], ==, keep);
  for (int i = 0; i < 3; i++)
    {
      g_free (g[i]);
      g_free (orig[i]);
    }
}

/* add_noise against DDPMScheduler.add_noise; v from the identity x0 = √ᾱ·noisy − √(1−ᾱ)·v. */
static void
test_noise_golden (void)
{
  OftSafetensors *ref = test_open_golden ("unet_oft/reference.safetensors");
  int64_t n;
  float *x0 = test_load (ref, "latents", &n), *eps = test_load (ref, "noise", NULL);
  float *want = test_load (ref, "noisy_latents", NULL), *ac_want = test_load (ref, "alphas_cumprod_at_t", NULL);
  float *ts = test_load (ref, "timesteps", NULL);
  char *sched = test_golden_path ("pipeline/scheduler/scheduler_config.json");
  OftNoiseSchedule s;
  GError *error = NULL;
  g_assert_true (oft_noise_schedule_load (&s, sched, &error));
  g_assert_no_error (error);
  float *alphas = g_new (float, s.num_train_timesteps), ac[2];
  oft_noise_schedule_alphas_cumprod (&s, alphas);
  for (int b = 0; b < 2; b++)
    ac[b] = alphas[(int) ts[b]];
  /* ᾱ in float32 like diffusers: a cumulative product, 1e-6 relative */
  test_assert_close ("alphas_cumprod_at_t", ac, ac_want, 2, 1e-6);
  float *noisy = g_new (float, n), *v = g_new (float, n), *back = g_new (float, n);
  oft_train_add_noise (noisy, x0, eps, ac, 2, n / 2);
  /* our float32 ᾱ differs from torch's cumprod by up to 1 ulp (1.8e-7 above); through √ᾱ, two products and a
   * sum that is a few ulps of the scale: 2e-6 relative */
  test_assert_close ("noisy_latents", noisy, want, n, 2e-6);
  oft_train_velocity (v, x0, eps, ac, 2, n / 2);
  for (int b = 0; b < 2; b++)
    for (int64_t i = 0; i < n / 2; i++)
      back[b * n / 2 + i] = sqrtf (ac[b]) * want[b * n / 2 + i] - sqrtf (1 - ac[b]) * v[b * n / 2 + i];
  test_assert_close ("x0 from golden noisy and our v", back, x0, n, 1e-5);
  g_free (sched);
  g_free (alphas);
  g_free (x0);
  g_free (eps);
  g_free (want);
  g_free (ac_want);
  g_free (ts);
  g_free (noisy);
  g_free (v);
  g_free (back);
  oft_safetensors_close (ref);
}

static void
test_preprocess (void)
{
  /* scale 1 (height already the target): the centred crop returns the middle columns exactly */
  OftImage *img = oft_image_new (256, 128, 3);
  for (int y = 0; y < 128; y++)
    for (int x = 0; x < 256; x++)
      for (int c = 0; c < 3; c++)
        img->pixels[((size_t) y * 256 + x) * 3 + c] = (uint8_t) ((x * 7 + y * 3 + c * 50) & 255);
  float *out = g_new (float, 3 * 128 * 128), *flip = g_new (float, 3 * 128 * 128);
  oft_train_preprocess (out, img, 128, false);
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < 128; y++)
      for (int x = 0; x < 128; x++)
        {
          double want = img->pixels[((size_t) y * 256 + x + 64) * 3 + c] / 255.0 * 2 - 1;
          g_assert_cmpfloat (fabs (out[(c * 128 + y) * 128 + x] - want), <=, 1e-6);
        }
  /* flip is a mirror image of the same crop */
  oft_train_preprocess (flip, img, 128, true);
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < 128; y++)
      for (int x = 0; x < 128; x++)
        g_assert_cmpfloat (out[(c * 128 + y) * 128 + x], ==, flip[(c * 128 + y) * 128 + 127 - x]);
  oft_image_free (img);
  /* antialiasing: a one-pixel checkerboard shrunk 4× is flat mid-gray (a plain bilinear sampler aliases
   * it to black/white); a gray image stays at its value; values stay in [−1, 1] */
  img = oft_image_new (256, 512, 1);
  for (int y = 0; y < 512; y++)
    for (int x = 0; x < 256; x++)
      img->pixels[(size_t) y * 256 + x] = ((x + y) & 1) ? 255 : 0;
  float *small = g_new (float, 3 * 64 * 64);
  oft_train_preprocess (small, img, 64, false);
  double worst = 0;
  for (int i = 0; i < 3 * 64 * 64; i++)
    worst = MAX (worst, fabs (small[i]));
  g_test_message ("4x checkerboard reduction: max |value| %.3g (0 = mid-gray)", worst);
  g_assert_cmpfloat (worst, <=, 1e-4);  /* the triangle taps weigh both values equally; float rounding only */
  oft_image_free (img);
  g_free (out);
  g_free (flip);
  g_free (small);
}

/* An image made by the golden pipeline, resized and cropped to a training size. */
static void
test_preprocess_generated (void)
{
  char *dir = test_golden_path ("pipeline");
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (dir, &error);
  g_assert_no_error (error);
  OftGenerateParams g;
  oft_generate_params_init (&g);
  g.prompt = "a photo of a dog";
  g.steps = 2;
  g.width = 128;
  g.height = 64;
  float *rgb = g_new (float, 3 * 128 * 64);
  g_assert_true (oft_pipeline_generate (p, &g, rgb, NULL, NULL, NULL, &error));
  OftImage *img = oft_image_new (128, 64, 3);
  oft_image_to_rgb8 (img->pixels, rgb, 128, 64);
  float *out = g_new (float, 3 * 32 * 32);
  oft_train_preprocess (out, img, 32, false);
  /* the output is a 32×32 area average of the middle 64×64: its mean is that region's mean */
  double mean_out = 0, mean_in = 0;
  for (int i = 0; i < 3 * 32 * 32; i++)
    {
      g_assert_true (out[i] >= -1 && out[i] <= 1);
      mean_out += out[i] / (3 * 32 * 32);
    }
  for (int y = 0; y < 64; y++)
    for (int x = 32; x < 96; x++)
      for (int c = 0; c < 3; c++)
        mean_in += (img->pixels[((size_t) y * 128 + x) * 3 + c] / 255.0 * 2 - 1) / (3 * 64 * 64);
  g_test_message ("generated 128x64 -> 32x32: mean %.5f vs crop region %.5f", mean_out, mean_in);
  g_assert_cmpfloat (fabs (mean_out - mean_in), <=, 0.01);  /* edge taps are renormalised */
  oft_image_free (img);
  g_free (rgb);
  g_free (out);
  oft_pipeline_free (p);
  g_free (dir);
}

static void
fill_state (OftTrainState *s, int64_t big)
{
  memset (s, 0, sizeof *s);
  s->step = 123;
  oft_rng_seed (&s->rng, 99);
  oft_rng_next (&s->rng);
  s->n_params = 2;
  s->names = g_strsplit ("down_blocks.0.attn1.to_q\nup_blocks.3.attn2.to_out.0", "\n", -1);
  s->numel = g_new (int64_t, 2);
  s->numel[0] = 56;
  s->numel[1] = big;
  s->param = g_new (float *, 2);
  s->m = g_new (float *, 2);
  s->v = g_new (float *, 2);
  for (int i = 0; i < 2; i++)
    {
      s->param[i] = g_new (float, s->numel[i]);
      s->m[i] = g_new (float, s->numel[i]);
      s->v[i] = g_new (float, s->numel[i]);
      test_fill_uniform (s->param[i], s->numel[i], -1, 1, 3 + i);
      test_fill_uniform (s->m[i], s->numel[i], -1e-3f, 1e-3f, 5 + i);
      test_fill_uniform (s->v[i], s->numel[i], 0, 1e-9f, 7 + i);
    }
  s->n_order = 5;
  s->order = g_new (int32_t, 5);
  for (int i = 0; i < 5; i++)
    s->order[i] = (i * 3) % 5;
  s->order_pos = 2;
  s->n_class_order = 3;
  s->class_order = g_new (int32_t, 3);
  s->class_order[0] = 2, s->class_order[1] = 0, s->class_order[2] = 1;
  s->class_order_pos = 3;
  s->fingerprint = g_strdup ("steps=10 lr=6e-05");
}

static void
test_checkpoint_roundtrip (void)
{
  char *dir = g_dir_make_tmp ("oft-train-XXXXXX", NULL);
  char *path = g_build_filename (dir, "state.safetensors", NULL);
  OftTrainState s, r;
  fill_state (&s, 300);
  GError *error = NULL;
  g_assert_true (oft_train_state_save (&s, path, &error));
  g_assert_no_error (error);
  g_assert_true (oft_train_state_load (&r, path, &error));
  g_assert_no_error (error);
  g_assert_cmpint (r.step, ==, s.step);
  g_assert_true (memcmp (&r.rng, &s.rng, sizeof s.rng) == 0);
  g_assert_cmpuint (r.n_params, ==, 2);
  for (int i = 0; i < 2; i++)
    {
      g_assert_cmpstr (r.names[i], ==, s.names[i]);
      g_assert_cmpint (r.numel[i], ==, s.numel[i]);
      g_assert_true (memcmp (r.param[i], s.param[i], s.numel[i] * 4) == 0);
      g_assert_true (memcmp (r.m[i], s.m[i], s.numel[i] * 4) == 0);
      g_assert_true (memcmp (r.v[i], s.v[i], s.numel[i] * 4) == 0);
    }
  g_assert_cmpint (r.n_order, ==, 5);
  g_assert_true (memcmp (r.order, s.order, 5 * 4) == 0);
  g_assert_cmpint (r.order_pos, ==, 2);
  g_assert_cmpint (r.n_class_order, ==, 3);
  g_assert_true (memcmp (r.class_order, s.class_order, 3 * 4) == 0);
  g_assert_cmpint (r.class_order_pos, ==, 3);
  g_assert_cmpstr (r.fingerprint, ==, s.fingerprint);
  /* the restored RNG continues the same stream */
  g_assert_cmpuint (oft_rng_next (&r.rng), ==, oft_rng_next (&s.rng));
  oft_train_state_clear (&r);

  /* not a checkpoint: a clear error naming the file */
  char *other = g_build_filename (dir, "other.safetensors", NULL);
  OftTensor t = { OFT_DTYPE_F32, 1, { 56 }, s.param[0] };
  const char *names[] = { "x" };
  g_assert_true (oft_safetensors_write (other, 1, names, &t, NULL, &error));
  g_assert_false (oft_train_state_load (&r, other, &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT);
  g_assert_nonnull (strstr (error->message, other));
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_unlink (other);
  g_free (other);

  /* a failed write (file size limit, as for a full disk) leaves the previous checkpoint untouched */
  char *before;
  gsize before_len;
  g_assert_true (g_file_get_contents (path, &before, &before_len, NULL));
  OftTrainState big;
  fill_state (&big, 1 << 18);
  big.step = 124;
  struct rlimit old, lim;
  g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &old), ==, 0);
  lim = old;
  lim.rlim_cur = 64 * 1024;
  void (*prev) (int) = signal (SIGXFSZ, SIG_IGN);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &lim), ==, 0);
  gboolean ok = oft_train_state_save (&big, path, &error);
  setrlimit (RLIMIT_FSIZE, &old);
  signal (SIGXFSZ, prev);
  g_assert_false (ok);
  g_assert_nonnull (error);
  g_test_message ("failed checkpoint write: %s", error->message);
  g_clear_error (&error);
  char *after;
  gsize after_len;
  g_assert_true (g_file_get_contents (path, &after, &after_len, NULL));
  g_assert_true (after_len == before_len && memcmp (before, after, before_len) == 0);
  g_assert_true (oft_train_state_load (&r, path, &error));
  g_assert_cmpint (r.step, ==, 123);
  oft_train_state_clear (&r);
  GDir *d = g_dir_open (dir, 0, NULL);
  int entries = 0;
  while (g_dir_read_name (d))
    entries++;
  g_dir_close (d);
  g_assert_cmpint (entries, ==, 1);  /* no temporary file left behind */

  g_free (before);
  g_free (after);
  oft_train_state_clear (&big);
  oft_train_state_clear (&s);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
}

/* The UNet's transformer-block Linears: what PEFT's target_modules would find in the golden UNet. */
static void
test_list_linear (void)
{
  char *dir = test_golden_path ("pipeline/unet");
  GError *error = NULL;
  OftUnet *u = oft_unet_load (dir, &error);
  g_assert_no_error (error);
  GPtrArray *l = oft_unet_list_linear_modules (u);
  char *ref = test_golden_path ("unet_oft/reference.json");
  JsonParser *jp = json_parser_new ();
  g_assert_true (json_parser_load_from_file (jp, ref, &error));
  JsonNode *mods = json_object_get_member (json_node_get_object (json_parser_get_root (jp)), "modules");
  g_assert_nonnull (mods);
  /* every module PEFT adapted (to_q/k/v/out.0) is listed with its in_features */
  int matched = 0, attn = 0;
  for (guint i = 0; i < l->len; i++)
    {
      const OftUnetLinear *m = g_ptr_array_index (l, i);
      attn += g_str_has_suffix (m->path, ".to_q") || g_str_has_suffix (m->path, ".to_k") ||
              g_str_has_suffix (m->path, ".to_v") || g_str_has_suffix (m->path, ".to_out.0");
      if (i > 0)
        g_assert_cmpint (strcmp (((OftUnetLinear *) g_ptr_array_index (l, i - 1))->path, m->path), <, 0);
    }
  JsonArray *arr = json_node_get_array (mods);
  for (guint j = 0; j < json_array_get_length (arr); j++)
    {
      JsonObject *o = json_array_get_object_element (arr, j);
      const char *name = json_object_get_string_member (o, "module");
      for (guint i = 0; i < l->len; i++)
        {
          const OftUnetLinear *m = g_ptr_array_index (l, i);
          if (strcmp (name, m->path) == 0)
            {
              g_assert_cmpint (m->in_features, ==, json_object_get_int_member (o, "in_features"));
              g_assert_cmpint (m->out_features, ==, json_object_get_int_member (o, "out_features"));
              matched++;
              break;
            }
        }
    }
  g_assert_cmpint (matched, ==, 128);
  g_test_message ("%u Linears, %d attention projections, %d matched reference.json", l->len, attn, matched);
  g_assert_cmpint (attn, ==, 128);
  g_object_unref (jp);
  g_free (ref);
  g_ptr_array_unref (l);
  oft_unet_free (u);
  g_free (dir);
}

/* Replay: 1, 2 and 3 AdamW steps on the golden batch from the golden adapter reproduce PEFT's
 * adamw_step{1,2,3} and the loss sequence adamw_losses (UNet forward + backward + AdamW). */
static void
test_replay_golden (void)
{
  char *model = test_golden_path ("pipeline"), *batch = test_golden_path ("unet_oft/reference.safetensors");
  char *init = test_golden_path ("unet_oft/adapter");
  char *tmp = g_dir_make_tmp ("oft-replay-XXXXXX", NULL);
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (model, &error);
  g_assert_no_error (error);
  OftSafetensors *ref = test_open_golden ("unet_oft/reference.safetensors");
  float *want_losses = test_load (ref, "adamw_losses", NULL);
  for (int steps = 1; steps <= 3; steps++)
    {
      char *out = g_strdup_printf ("%s/step%d", tmp, steps);
      double losses[4];
      g_assert_true (oft_train_replay (p->unet, &p->schedule, batch, init, steps, 1e-3, 1e-2, out, losses, &error));
      g_assert_no_error (error);
      OftPeftAdapter *a = oft_peft_adapter_load (out, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (oft_peft_adapter_n_modules (a), ==, 128);
      double worst = 0;
      int64_t total = 0, loose = 0;
      for (size_t i = 0; i < oft_peft_adapter_n_modules (a); i++)
        {
          const OftAdapterModule *m = oft_peft_adapter_module (a, i);
          char *key = g_strdup_printf ("adamw_step%d." KEY_PREFIX "%s.oft_R.weight", steps, m->module);
          int64_t n;
          float *want = test_load (ref, key, &n), *got = m->param.data;
          g_assert_cmpint (n, ==, oft_tensor_numel (&m->param));
          for (int64_t j = 0; j < n; j++)
            {
              double e = fabs ((double) got[j] - want[j]);
              worst = MAX (worst, e);
              loose += e > 1e-6;
            }
          total += n;
          g_free (want);
          g_free (key);
        }
      g_test_message ("replay %d step%s: params max abs err %.3g (%" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                      " beyond 1e-6); loss after %.9g vs %.9g", steps, steps > 1 ? "s" : "", worst, loose, total,
                      losses[steps], want_losses[steps]);
      /* The first steps are ≈ lr·sign(g): where |g| ~ 1e-8 gradient rounding flips the update. PEFT's fp32
       * run differs from fp64 by up to 3.7e-5 (README); ours likewise, so two fp32 runs by up to 7.4e-5:
       * bound 1e-4, far below the step size lr = 1e-3 (a wrong update is off by ~1e-3 per step). Almost all
       * values agree to 1e-6: at most 1% may be looser. */
      g_assert_cmpfloat (worst, <=, 1e-4);
      g_assert_cmpint (loose, <=, total / 100);
      /* losses: fp32 vs fp64 differ by 1.1e-7 (README); 1e-6 relative */
      for (int k = 0; k <= steps; k++)
        g_assert_cmpfloat (fabs (losses[k] - want_losses[k]), <=, 1e-6 * want_losses[k]);
      oft_peft_adapter_free (a);
      char *argv[] = { "rm", "-rf", out, NULL };
      g_spawn_sync (NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
      g_free (out);
    }
  /* a batch file without the tensors: a clear error naming it */
  char *bad = test_golden_path ("pipeline/reference.safetensors");
  g_assert_false (oft_train_replay (p->unet, &p->schedule, bad, init, 1, 1e-3, 1e-2, tmp, NULL, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "latents"));
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_free (bad);
  g_free (want_losses);
  oft_safetensors_close (ref);
  oft_pipeline_free (p);
  g_rmdir (tmp);
  g_free (tmp);
  g_free (model);
  g_free (batch);
  g_free (init);
}

/* Mean ε-prediction MSE of the UNet over a fixed evaluation batch. */
static double
eval_loss (OftPipeline *p, const float *x0, const float *noise, const float *ts, const float *ctx, int B)
{
  int64_t n = (int64_t) B * 4 * 16 * 16;
  float *noisy = g_new (float, n), *out = g_new (float, n), *alphas = g_new (float, 1000), ac[8];
  oft_noise_schedule_alphas_cumprod (&p->schedule, alphas);
  for (int b = 0; b < B; b++)
    ac[b] = alphas[(int) ts[b]];
  oft_train_add_noise (noisy, x0, noise, ac, B, n / B);
  GError *error = NULL;
  g_assert_true (oft_unet_forward (p->unet, noisy, ts, ctx, B, 16, 16, 77, out, &error));
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += (double) (out[i] - noise[i]) * (out[i] - noise[i]);
  g_free (noisy);
  g_free (out);
  g_free (alphas);
  return s / n;
}

/* End to end: four subject images generated by the golden pipeline; a short OFT training run lowers the
 * loss on a fixed evaluation batch (those images' latents, fixed noise and timesteps, the instance prompt). */
static void
test_train_lowers_loss (void)
{
  char *model = test_golden_path ("pipeline");
  char *tmp = g_dir_make_tmp ("oft-train-e2e-XXXXXX", NULL), *out = g_build_filename (tmp, "adapter", NULL);
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (model, &error);
  g_assert_no_error (error);
  OftGenerateParams g;
  oft_generate_params_init (&g);
  g.prompt = "a photo of a red dog";
  g.steps = 4;
  g.width = g.height = 128;
  float *rgb = g_new (float, 3 * 128 * 128);
  OftImage *img = oft_image_new (128, 128, 3);
  char *files[5] = { NULL };
  for (int i = 0; i < 4; i++)
    {
      g.seed = 100 + i;
      g_assert_true (oft_pipeline_generate (p, &g, rgb, NULL, NULL, NULL, &error));
      oft_image_to_rgb8 (img->pixels, rgb, 128, 128);
      files[i] = g_strdup_printf ("%s/subject-%d.png", tmp, i);
      g_assert_true (oft_image_save_png (img, files[i], &error));
    }
  /* evaluation batch: posterior means of the 4 images, noise from seed 7, spread timesteps */
  const int B = 4;
  float *x0 = g_new (float, B * 4 * 256), *noise = g_new (float, B * 4 * 256), ts[4] = { 50, 250, 500, 800 };
  float *ctx = g_new (float, B * 77 * 32), *px = g_new (float, 3 * 128 * 128);
  for (int i = 0; i < B; i++)
    {
      OftImage *im = oft_image_load (files[i], &error);
      g_assert_no_error (error);
      oft_train_preprocess (px, im, 128, false);
      g_assert_true (oft_vae_encode (p->vae, px, 1, 128, 128, x0 + i * 1024, NULL, &error));
      for (int j = 0; j < 1024; j++)
        x0[i * 1024 + j] *= oft_vae_scaling_factor (p->vae);
      oft_image_free (im);
    }
  OftRng rng;
  oft_rng_seed (&rng, 7);
  oft_rng_normal (&rng, noise, B * 1024);
  int32_t ids[77];
  oft_tokenizer_encode_padded (p->tokenizer, "a photo of sks dog", ids, 77);
  g_assert_true (oft_clip_text_forward (p->text, ids, 1, 0, ctx, NULL, &error));
  for (int b = 1; b < B; b++)
    memcpy (ctx + b * 77 * 32, ctx, 77 * 32 * sizeof (float));
  double before = eval_loss (p, x0, noise, ts, ctx, B);

  OftTrainParams t;
  oft_train_params_init (&t);
  t.images = (const char *const *) files;
  t.prompt = "a photo of sks dog";
  t.steps = 40;
  t.lr = 1e-2;   /* far above the paper's 6e-5 so that 40 steps on a random-weight model show an effect */
  t.batch = 2;
  t.seed = 1;
  t.out_dir = out;
  g_assert_true (oft_train_run (p, &t, &error));
  g_assert_no_error (error);
  OftPeftAdapter *a = oft_peft_adapter_load (out, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (oft_peft_adapter_n_modules (a), ==, 128);
  g_assert_cmpint (oft_peft_adapter_config (a)->oft_block_size, ==, 0);  /* r = 4 blocks, PEFT-style config */
  g_assert_true (oft_unet_apply_adapter (p->unet, a, FALSE, &error));
  double after = eval_loss (p, x0, noise, ts, ctx, B);
  g_test_message ("evaluation loss: %.5f before, %.5f after 40 steps (%.1f%% lower)", before, after,
                  100 * (before - after) / before);
  /* measured 8.4% lower (1.0937 → 1.0021); lr 3e-3 gave 5.0%, 3e-2 7.7%. Bound: at least 4% lower, so a
   * no-op (0%) or a wrong-signed update (the loss rises) fails */
  g_assert_cmpfloat (after, <, 0.96 * before);

  oft_peft_adapter_free (a);
  char *argv[] = { "rm", "-rf", tmp, NULL };
  g_spawn_sync (NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
  for (int i = 0; i < 4; i++)
    g_free (files[i]);
  g_free (rgb);
  oft_image_free (img);
  g_free (x0);
  g_free (noise);
  g_free (ctx);
  g_free (px);
  oft_pipeline_free (p);
  g_free (out);
  g_free (tmp);
  g_free (model);
}

/* The control task: four drawn subjects (a bright disk at a different place each) with their canny
 * edges as conditions; OFT on the attention Linears and the GEGLU projection, trained together with a
 * new condition encoder, lowers the loss on a fixed evaluation batch seen with its conditions. */
static double
eval_loss_controlled (OftPipeline *p, const OftCondEncoder *enc, const float *cond, const float *x0,
                      const float *noise, const float *ts, const float *ctx, int B)
{
  int64_t nr = (int64_t) B * oft_unet_control_channels (p->unet) * 16 * 16;
  float *r = g_new0 (float, nr);
  if (enc)
    g_assert_true (oft_cond_encoder_forward (enc, r, cond, B, 128, 128, NULL, NULL));
  oft_unet_set_control (p->unet, r, NULL);
  double l = eval_loss (p, x0, noise, ts, ctx, B);
  oft_unet_set_control (p->unet, NULL, NULL);
  g_free (r);
  return l;
}

static void
test_control_training (void)
{
  char *model = test_golden_path ("pipeline");
  char *tmp = g_dir_make_tmp ("oft-train-ctl-XXXXXX", NULL), *out = g_build_filename (tmp, "adapter", NULL);
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (model, &error);
  g_assert_no_error (error);
  const int B = 4, S = 128;
  char *files[5] = { NULL }, *conds[5] = { NULL }, *caps[5] = { NULL };
  float *cond = g_new (float, (size_t) B * 3 * S * S), *x0 = g_new (float, B * 1024), *px = g_new (float, 3 * S * S);
  for (int i = 0; i < B; i++)
    {
      OftImage *img = oft_image_new (S, S, 3);
      int cx = 32 + 64 * (i % 2), cy = 32 + 64 * (i / 2);
      for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
          {
            gboolean in = (x - cx) * (x - cx) + (y - cy) * (y - cy) < 24 * 24;
            for (int c = 0; c < 3; c++)
              img->pixels[(y * S + x) * 3 + c] = in ? 230 : (uint8_t) (20 + 10 * c);
          }
      OftCannyParams cp = OFT_CANNY_PARAMS_DEFAULT;
      OftImage *edges = oft_canny_image (img, &cp, FALSE, FALSE, &error);
      g_assert_no_error (error);
      files[i] = g_strdup_printf ("%s/img-%d.png", tmp, i);
      conds[i] = g_strdup_printf ("%s/cond-%d.png", tmp, i);
      caps[i] = g_strdup ("a white circle");
      g_assert_true (oft_image_save_png (img, files[i], &error));
      g_assert_true (oft_image_save_png (edges, conds[i], &error));
      /* evaluation: the posterior means and the conditions as the trainer prepares them */
      oft_train_preprocess (px, img, S, false);
      g_assert_true (oft_vae_encode (p->vae, px, 1, S, S, x0 + i * 1024, NULL, &error));
      for (int j = 0; j < 1024; j++)
        x0[i * 1024 + j] *= oft_vae_scaling_factor (p->vae);
      oft_train_preprocess (cond + (size_t) i * 3 * S * S, edges, S, false);
      for (int j = 0; j < 3 * S * S; j++)
        cond[(size_t) i * 3 * S * S + j] = 0.5f * (cond[(size_t) i * 3 * S * S + j] + 1);
      oft_image_free (img);
      oft_image_free (edges);
    }
  float *noise = g_new (float, B * 1024), ts[4] = { 50, 250, 500, 800 }, *ctx = g_new (float, B * 77 * 32);
  OftRng rng;
  oft_rng_seed (&rng, 9);
  oft_rng_normal (&rng, noise, B * 1024);
  int32_t ids[77];
  oft_tokenizer_encode_padded (p->tokenizer, "a white circle", ids, 77);
  g_assert_true (oft_clip_text_forward (p->text, ids, 1, 0, ctx, NULL, &error));
  for (int b = 1; b < B; b++)
    memcpy (ctx + b * 77 * 32, ctx, 77 * 32 * sizeof (float));
  double before = eval_loss_controlled (p, NULL, cond, x0, noise, ts, ctx, B);

  OftTrainParams t;
  oft_train_params_init (&t);
  static const char *const targets[] = { "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", NULL };
  t.images = (const char *const *) files;
  t.captions = (const char *const *) caps;
  t.conditions = (const char *const *) conds;
  t.condition_type = "canny";
  t.prompt = "a white circle";
  t.targets = targets;
  t.adapter.coft = true;
  t.adapter.eps = 1e-3;    /* the paper's control setting */
  t.steps = 40;
  t.lr = 1e-2;             /* as the DreamBooth test: far above the paper's 1e-5, to see an effect in 40 steps */
  t.batch = 2;
  t.seed = 3;
  t.out_dir = out;
  g_assert_true (oft_train_run (p, &t, &error));
  g_assert_no_error (error);
  char *enc_file = g_build_filename (out, OFT_COND_ENCODER_FILE, NULL);
  OftCondEncoder *enc = oft_cond_encoder_load (enc_file, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (enc->condition_type, ==, "canny");
  OftPeftAdapter *a = oft_peft_adapter_load (out, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (oft_peft_adapter_n_modules (a), ==, 128 + 16);  /* + one GEGLU projection per block */
  g_assert_true (oft_peft_adapter_config (a)->coft);
  g_assert_true (oft_unet_apply_adapter (p->unet, a, FALSE, &error));
  double after = eval_loss_controlled (p, enc, cond, x0, noise, ts, ctx, B);
  g_test_message ("control task evaluation loss: %.5f before, %.5f after 40 steps (%.1f%% lower)", before, after,
                  100 * (before - after) / before);
  /* as the DreamBooth test: at least 4% lower, so no-ops and wrong-signed updates fail */
  g_assert_cmpfloat (after, <, 0.96 * before);

  /* generation with the condition runs end to end and the condition changes the image */
  OftGenerateParams g;
  oft_generate_params_init (&g);
  g.prompt = "a white circle";
  g.steps = 3;
  g.width = g.height = S;
  g.seed = 5;
  float *img1 = g_new (float, 3 * S * S), *img2 = g_new (float, 3 * S * S);
  g_assert_true (oft_pipeline_generate (p, &g, img1, NULL, NULL, NULL, &error));
  g.control = enc;
  g.condition = cond;
  g_assert_true (oft_pipeline_generate (p, &g, img2, NULL, NULL, NULL, &error));
  g_assert_true (memcmp (img1, img2, 3 * S * S * sizeof (float)) != 0);

  g_free (img1);
  g_free (img2);
  oft_cond_encoder_free (enc);
  g_free (enc_file);
  oft_peft_adapter_free (a);
  char *argv[] = { "rm", "-rf", tmp, NULL };
  g_spawn_sync (NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
  for (int i = 0; i < B; i++)
    {
      g_free (files[i]);
      g_free (conds[i]);
      g_free (caps[i]);
    }
  g_free (cond);
  g_free (x0);
  g_free (px);
  g_free (noise);
  g_free (ctx);
  oft_pipeline_free (p);
  g_free (out);
  g_free (tmp);
  g_free (model);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/train/adamw-golden", test_adamw_golden);
  g_test_add_func ("/train/adamw-formula", test_adamw_formula);
  g_test_add_func ("/train/lr-schedules", test_lr_schedules);
  g_test_add_func ("/train/timestep-sampling", test_timestep_sampling);
  g_test_add_func ("/train/clip-grad-norm", test_clip_grad_norm);
  g_test_add_func ("/train/noise-golden", test_noise_golden);
  g_test_add_func ("/train/preprocess", test_preprocess);
  g_test_add_func ("/train/preprocess-generated", test_preprocess_generated);
  g_test_add_func ("/train/checkpoint-roundtrip", test_checkpoint_roundtrip);
  g_test_add_func ("/train/list-linear", test_list_linear);
  g_test_add_func ("/train/replay-golden", test_replay_golden);
  g_test_add_func ("/train/train-lowers-loss", test_train_lowers_loss);
  g_test_add_func ("/train/control-training", test_control_training);
  return g_test_run ();
}
