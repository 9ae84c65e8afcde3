/* txt2img against diffusers' golden DDIM run (pipeline/reference.safetensors): 2 prompts, 10 steps,
 * guidance 7.5, η 0, 128×128, the golden initial noise. */
#include "test-common.h"
#include <string.h>

static const char *prompts[2] = { "a photo of a cat", "an astronaut riding a horse on mars, highly detailed, 8k" };

typedef struct {
  int calls, last;
} Progress;

static gboolean
count_progress (int done, int total, gpointer data)
{
  Progress *p = data;
  p->calls++;
  p->last = done;
  g_assert_cmpint (total, ==, 10);
  return TRUE;
}

static void
test_golden_ddim (void)
{
  char *dir = test_golden_path ("pipeline");
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  OftSafetensors *st = test_open_golden ("pipeline/reference.safetensors");
  float *init = test_load (st, "ddim_init_latents", NULL), *lat = test_load (st, "ddim_latents", NULL);
  float *img = test_load (st, "ddim_image", NULL);
  const int64_t n = 4 * 16 * 16, np = 3 * 128 * 128;
  float *rgb = g_new (float, np), *final = g_new (float, n);
  for (int i = 0; i < 2; i++)
    {
      OftGenerateParams g;
      oft_generate_params_init (&g);
      g.prompt = prompts[i];
      g.steps = 10;
      g.guidance = 7.5f;
      g.width = g.height = 128;
      g.init_noise = init + i * n;
      Progress prog = { 0 };
      g_assert_true (oft_pipeline_generate (p, &g, rgb, final, count_progress, &prog, &error));
      g_assert_no_error (error);
      g_assert_cmpint (prog.calls, ==, 10);
      g_assert_cmpint (prog.last, ==, 10);
      char what[64];
      /* fp32_vs_fp64_maxabs: latents 3.6e-5 at |x| ≤ 35 (≈ 1e-6 of the scale), image 2.6e-6;
       * a batch of 2 here against diffusers' batch of 4 changes GEMM blocking, so allow 1e-5 and 1e-4 */
      g_snprintf (what, sizeof what, "prompt %d final latents", i);
      test_assert_close (what, final, lat + (10 * 2 + i) * n, n, 1e-5);
      g_snprintf (what, sizeof what, "prompt %d ddim_image", i);
      test_assert_close (what, rgb, img + i * np, np, 1e-4);
    }
  g_free (rgb);
  g_free (final);
  g_free (init);
  g_free (lat);
  g_free (img);
  oft_safetensors_close (st);
  oft_pipeline_free (p);
}

static gboolean
cancel_at_3 (int done, int total, gpointer data)
{
  return done < 3;
}

static void
test_cancel_and_bad_size (void)
{
  char *dir = test_golden_path ("pipeline");
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (dir, &error);
  g_free (dir);
  OftGenerateParams g;
  oft_generate_params_init (&g);
  g.prompt = "a cat";
  g.steps = 6;
  g.width = g.height = 64;
  float *rgb = g_new (float, 3 * 128 * 128);
  g_assert_false (oft_pipeline_generate (p, &g, rgb, NULL, cancel_at_3, NULL, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_CANCELLED);
  g_clear_error (&error);
  g.width = 100;
  g_assert_false (oft_pipeline_generate (p, &g, rgb, NULL, NULL, NULL, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_clear_error (&error);
  /* the same seed gives the same image; another seed a different one */
  float *again = g_new (float, 3 * 64 * 64);
  g.width = 64;
  g.seed = 42;
  g.sampler = OFT_SAMPLER_EULER_ANCESTRAL;
  g_assert_true (oft_pipeline_generate (p, &g, rgb, NULL, NULL, NULL, &error));
  g_assert_true (oft_pipeline_generate (p, &g, again, NULL, NULL, NULL, &error));
  g_assert_cmpmem (rgb, 3 * 64 * 64 * 4, again, 3 * 64 * 64 * 4);
  g.seed = 43;
  g_assert_true (oft_pipeline_generate (p, &g, again, NULL, NULL, NULL, &error));
  g_assert_true (memcmp (rgb, again, 3 * 64 * 64 * 4) != 0);
  g_free (again);
  g_free (rgb);
  oft_pipeline_free (p);
}

static void
test_not_a_pipeline (void)
{
  GError *error = NULL;
  char *dir = test_golden_path ("pipeline/unet");
  g_assert_null (oft_pipeline_load (dir, &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "model_index.json"));
  g_clear_error (&error);
  g_free (dir);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/pipeline/golden/ddim-txt2img", test_golden_ddim);
  g_test_add_func ("/pipeline/cancel-and-bad-size", test_cancel_and_bad_size);
  g_test_add_func ("/pipeline/not-a-pipeline", test_not_a_pipeline);
  return g_test_run ();
}
