/* Noise schedules and samplers: DDIM against diffusers' golden loop; every sampler against the
 * invariant that a perfect denoiser is followed exactly to its clean sample. */
#include "test-common.h"
#include <math.h>
#include <string.h>
#include <glib/gstdio.h>

static void
test_alphas_cumprod_golden (void)
{
  OftNoiseSchedule sc;
  char *path = test_golden_path ("pipeline/scheduler/scheduler_config.json");
  GError *error = NULL;
  g_assert_true (oft_noise_schedule_load (&sc, path, &error));
  g_assert_no_error (error);
  g_free (path);
  float *ac = g_new (float, sc.num_train_timesteps);
  oft_noise_schedule_alphas_cumprod (&sc, ac);
  OftSafetensors *st = test_open_golden ("unet_oft/reference.safetensors");
  float *want = test_load (st, "alphas_cumprod_at_t", NULL);
  const int64_t *t = oft_safetensors_find (st, "timesteps")->data;
  float got[2] = { ac[t[0]], ac[t[1]] };
  /* both are float32 sequential products of the same float32 betas: equal up to a few ulp */
  test_assert_close ("alphas_cumprod_at_t", got, want, 2, 1e-6);
  g_free (want);
  g_free (ac);
  oft_safetensors_close (st);
}

static OftSampler *
golden_ddim (void)
{
  OftNoiseSchedule sc;
  char *path = test_golden_path ("pipeline/scheduler/scheduler_config.json");
  GError *error = NULL;
  g_assert_true (oft_noise_schedule_load (&sc, path, &error));
  g_free (path);
  OftSampler *s = oft_sampler_new (OFT_SAMPLER_DDIM, &sc, 10, 0.0f, &error);
  g_assert_no_error (error);
  return s;
}

static void
test_ddim_golden_loop (void)
{
  OftSampler *s = golden_ddim ();
  OftSafetensors *st = test_open_golden ("pipeline/reference.safetensors");
  const int64_t *ts = oft_safetensors_find (st, "ddim_timesteps")->data;
  for (int i = 0; i < 10; i++)
    g_assert_cmpfloat (oft_sampler_timestep (s, i), ==, (float) ts[i]);
  g_assert_cmpfloat (oft_sampler_init_noise_sigma (s), ==, 1.0f);
  g_assert_cmpfloat (oft_sampler_input_scale (s, 3), ==, 1.0f);

  float *lat = test_load (st, "ddim_latents", NULL), *eps = test_load (st, "ddim_eps_guided", NULL);
  float *x0 = test_load (st, "ddim_pred_x0", NULL);
  const int64_t n = 2 * 4 * 16 * 16;
  float *x = g_new (float, n), *px0 = g_new (float, n);
  double worst = 0, worst_x0 = 0;
  for (int i = 0; i < 10; i++)
    {
      /* each step from the golden input, so errors do not compound: this checks the step itself */
      memcpy (x, lat + i * n, n * sizeof (float));
      oft_sampler_step (s, i, x, eps + i * n, NULL, px0, n);
      char what[64];
      g_snprintf (what, sizeof what, "ddim step %d latents", i);
      /* float32 vs float32 with the same formula: a few ulp of |x| ≤ ~40 (fp32_vs_fp64 of the whole
       * run is 3.6e-5 absolute); 1e-6 relative to the scale leaves room for operation order */
      worst = fmax (worst, test_assert_close (what, x, lat + (i + 1) * n, n, 1e-6));
      g_snprintf (what, sizeof what, "ddim step %d pred_x0", i);
      worst_x0 = fmax (worst_x0, test_assert_close (what, px0, x0 + i * n, n, 1e-6));
    }
  g_test_message ("ddim: worst latent error %.3g, worst pred_x0 error %.3g", worst, worst_x0);
  g_free (x);
  g_free (px0);
  g_free (lat);
  g_free (eps);
  g_free (x0);
  oft_safetensors_close (st);
  oft_sampler_free (s);
}

/* A perfect denoiser for a known x0: given the model input at step i, the ε (or v) that makes the
 * model's x0 prediction exactly x0. Deterministic samplers must then land on x0 (σ_end = 0), or for
 * DDIM on √ᾱ₀·x0 + √(1−ᾱ₀)·ε (it ends at ᾱ[0]). */
static void
oracle (const OftSampler *s, OftPrediction p, int i, const float *x, const float *x0, float *out, int64_t n)
{
  double sigma = oft_sampler_sigma (s, i), a = 1.0 / (sigma * sigma + 1);
  double scale = oft_sampler_input_scale (s, i);
  for (int64_t j = 0; j < n; j++)
    {
      double xin = x[j] * scale; /* the VP sample √ᾱ x0 + √(1−ᾱ) ε */
      double eps = (xin - sqrt (a) * x0[j]) / sqrt (1 - a);
      out[j] = (float) (p == OFT_PREDICT_EPSILON ? eps : sqrt (a) * eps - sqrt (1 - a) * x0[j]);
    }
}

static void
run_oracle (OftSamplerKind kind, OftPrediction p, OftTimestepSpacing spacing, int steps)
{
  OftNoiseSchedule sc;
  oft_noise_schedule_sd15 (&sc);
  sc.prediction = p;
  sc.spacing = spacing;
  GError *error = NULL;
  OftSampler *s = oft_sampler_new (kind, &sc, steps, 0.0f, &error);
  g_assert_no_error (error);
  const int64_t n = 512;
  float *x0 = g_new (float, n), *eps = g_new (float, n), *x = g_new (float, n), *out = g_new (float, n);
  float *noise = g_new (float, n), *want = g_new (float, n);
  test_fill_uniform (x0, n, -1, 1, 1);
  test_fill_uniform (eps, n, -2, 2, 2);
  test_fill_uniform (noise, n, -2, 2, 3);
  /* start on the noisy sample of the first step: VE (Euler) x0 + σε, VP (DDIM, DPM) √ᾱ x0 + √(1−ᾱ) ε */
  double s0 = oft_sampler_sigma (s, 0), a0 = 1.0 / (s0 * s0 + 1);
  bool ve = kind == OFT_SAMPLER_EULER || kind == OFT_SAMPLER_EULER_ANCESTRAL;
  for (int64_t j = 0; j < n; j++)
    x[j] = ve ? (float) (x0[j] + s0 * eps[j]) : (float) (sqrt (a0) * x0[j] + sqrt (1 - a0) * eps[j]);
  for (int i = 0; i < steps; i++)
    {
      g_assert_true (oft_sampler_timestep (s, i) >= 0 && oft_sampler_timestep (s, i) < 1000);
      if (i > 0)
        g_assert_true (oft_sampler_timestep (s, i) < oft_sampler_timestep (s, i - 1));
      oracle (s, p, i, x, x0, out, n);
      oft_sampler_step (s, i, x, out, noise, NULL, n);
    }
  double a_end = 1.0 / (1.0 + pow (oft_sampler_sigma (s, steps), 2));
  for (int64_t j = 0; j < n; j++)
    want[j] = kind == OFT_SAMPLER_DDIM ? (float) (sqrt (a_end) * x0[j] + sqrt (1 - a_end) * eps[j]) : x0[j];
  char what[96];
  g_snprintf (what, sizeof what, "%s %s spacing %d, %d steps", oft_sampler_kind_name (kind),
              p == OFT_PREDICT_EPSILON ? "eps" : "v", spacing, steps);
  /* float rounding through up to 50 steps of O(σ_max ≈ 15) arithmetic */
  test_assert_close (what, x, want, n, 2e-4);
  oft_sampler_free (s);
  g_free (x0);
  g_free (eps);
  g_free (x);
  g_free (out);
  g_free (noise);
  g_free (want);
}

static void
test_oracle_all (void)
{
  for (int k = OFT_SAMPLER_DDIM; k <= OFT_SAMPLER_DPMPP_2M_KARRAS; k++)
    for (int p = 0; p < 2; p++)
      for (int sp = 0; sp < 3; sp++)
        for (int steps = 7; steps <= 20; steps += 13)
          {
            /* diffusers' DDIM always steps to t − N/steps: with linspace, or trailing spacing whose
             * steps do not divide N, that is not the next timestep and no exact trajectory exists */
            if (k == OFT_SAMPLER_DDIM && (sp == OFT_SPACING_LINSPACE || (sp == OFT_SPACING_TRAILING && 1000 % steps)))
              continue;
            run_oracle ((OftSamplerKind) k, (OftPrediction) p, (OftTimestepSpacing) sp, steps);
          }
}

/* Convergence order of DPM++ 2M Karras on a denoiser whose x0 prediction moves with the sample,
 * x0 = c·x_VE, where the probability-flow ODE dx/dσ = (x − x0)/σ has the exact solution
 * x(σ) = x(σ₀)·(σ/σ₀)^(1−c) and the final jump to σ = 0 returns c·x(σ_min). Karras grids all run
 * from σ(t=999) to σ(t=0), so one exact answer serves every step count. A second-order multistep
 * method cuts the error ~4× per doubling (a first-order one ~2×). */
static double
linear_denoiser_run (int steps, double c, double *exact)
{
  OftNoiseSchedule sc;
  oft_noise_schedule_sd15 (&sc);
  OftSampler *s = oft_sampler_new (OFT_SAMPLER_DPMPP_2M_KARRAS, &sc, steps, 0.0f, NULL);
  double s0 = oft_sampler_sigma (s, 0), smin = oft_sampler_sigma (s, steps - 1);
  float x = 1.0f; /* VP sample; x_VE = x·√(σ₀²+1) */
  *exact = c * sqrt (s0 * s0 + 1) * pow (smin / s0, 1 - c);
  for (int i = 0; i < steps; i++)
    {
      double sigma = oft_sampler_sigma (s, i), a = 1.0 / (sigma * sigma + 1);
      double x0 = c * x / sqrt (a);
      float out = (float) ((x - sqrt (a) * x0) / sqrt (1 - a));
      oft_sampler_step (s, i, &x, &out, NULL, NULL, 1);
    }
  oft_sampler_free (s);
  return x;
}

static void
test_convergence_order (void)
{
  double err[3], exact = 0;
  for (int r = 0; r < 3; r++)
    err[r] = fabs (linear_denoiser_run (20 << r, 0.5, &exact) - exact);
  g_test_message ("dpmpp-2m-karras: |error| %.3g / %.3g / %.3g at 20/40/80 steps (exact %.6f)",
                  err[0], err[1], err[2], exact);
  /* measured ratios ≈ 4.3–4.6; 3 still tells second order from first */
  g_assert_cmpfloat (err[0] / err[1], >, 3.0);
  g_assert_cmpfloat (err[1] / err[2], >, 3.0);
}

static void
test_ddim_eta_adds_noise (void)
{
  OftNoiseSchedule sc;
  oft_noise_schedule_sd15 (&sc);
  OftSampler *a = oft_sampler_new (OFT_SAMPLER_DDIM, &sc, 10, 0.0f, NULL);
  OftSampler *b = oft_sampler_new (OFT_SAMPLER_DDIM, &sc, 10, 1.0f, NULL);
  g_assert_false (oft_sampler_needs_noise (a));
  g_assert_true (oft_sampler_needs_noise (b));
  float x1[4] = { 1, 2, 3, 4 }, x2[4] = { 1, 2, 3, 4 }, e[4] = { .1f, .2f, .3f, .4f }, z[4] = { 1, -1, 1, -1 };
  oft_sampler_step (a, 0, x1, e, NULL, NULL, 4);
  oft_sampler_step (b, 0, x2, e, z, NULL, 4);
  for (int j = 0; j < 4; j++)
    g_assert_cmpfloat (fabsf (x1[j] - x2[j]), >, 1e-3);
  oft_sampler_free (a);
  oft_sampler_free (b);
}

static void
test_bad_config (void)
{
  char *dir = g_dir_make_tmp ("oft-sched-XXXXXX", NULL);
  char *path = g_build_filename (dir, "scheduler_config.json", NULL);
  OftNoiseSchedule sc;
  GError *error = NULL;
  g_file_set_contents (path, "{\"beta_schedule\": \"cosine-ish\"}", -1, NULL);
  g_assert_false (oft_noise_schedule_load (&sc, path, &error));
  g_assert_nonnull (strstr (error->message, "beta_schedule"));
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);
  g_file_set_contents (path, "{\"num_train_timesteps\": 1000,", -1, NULL);
  g_assert_false (oft_noise_schedule_load (&sc, path, &error));
  g_clear_error (&error);
  g_assert_null (oft_sampler_new (OFT_SAMPLER_EULER, &sc, 0, 0, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_clear_error (&error);
  g_remove (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/scheduler/alphas-cumprod/golden", test_alphas_cumprod_golden);
  g_test_add_func ("/scheduler/ddim/golden-loop", test_ddim_golden_loop);
  g_test_add_func ("/scheduler/ddim/eta-adds-noise", test_ddim_eta_adds_noise);
  g_test_add_func ("/scheduler/oracle-denoiser/all-samplers", test_oracle_all);
  g_test_add_func ("/scheduler/convergence-order", test_convergence_order);
  g_test_add_func ("/scheduler/bad-config", test_bad_config);
  return g_test_run ();
}
