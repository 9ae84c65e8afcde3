/* OFT adapters on the UNet at inference against PEFT (unet_oft/): on the fly (PEFT's input-centric
 * forward) and merged (merge_and_unload), and the whole pipeline with the adapter (unet_oft/pipeline_*). */
#include "test-common.h"
#include <string.h>

static OftPeftAdapter *
load_adapter (void)
{
  return test_load_adapter ("unet_oft/adapter");
}

static void
run (OftUnet *u, OftSafetensors *st, float *out)
{
  float *x = test_load (st, "noisy_latents", NULL), *ctx = test_load (st, "encoder_hidden_states", NULL);
  float *t = test_load (st, "timesteps", NULL);
  GError *error = NULL;
  g_assert_true (oft_unet_forward (u, x, t, ctx, 2, 16, 16, 77, out, &error));
  g_assert_no_error (error);
  g_free (x);
  g_free (ctx);
  g_free (t);
}

static void
test_golden_unet (gconstpointer merge)
{
  OftSafetensors *st = test_open_golden ("unet_oft/reference.safetensors");
  OftUnet *u = test_load_unet ("pipeline/unet");
  OftPeftAdapter *a = load_adapter ();
  const int64_t n = 2 * 4 * 16 * 16;
  float *out = g_new (float, n);
  run (u, st, out);
  float *want = test_load (st, "unet_out_base", NULL);
  test_assert_close ("unet_out_base", out, want, n, 1e-5);
  g_free (want);
  GError *error = NULL;
  g_assert_true (oft_unet_apply_adapter (u, a, GPOINTER_TO_INT (merge), &error));
  g_assert_no_error (error);
  run (u, st, out);
  /* fp32_vs_fp64_maxabs of the outputs ≈ 1e-6 (reference.json); the merged UNet differs from the
   * adapter forward by rounding only (PEFT's own unet_out_merged vs unet_out_adapter) */
  want = test_load (st, merge ? "unet_out_merged" : "unet_out_adapter", NULL);
  test_assert_close (merge ? "unet_out_merged" : "unet_out_adapter", out, want, n, 1e-5);
  g_free (want);
  g_free (out);
  oft_peft_adapter_free (a);
  oft_unet_free (u);
  oft_safetensors_close (st);
}

static void
test_bad_adapter_leaves_unet (void)
{
  OftSafetensors *st = test_open_golden ("unet_oft/reference.safetensors");
  OftUnet *u = test_load_unet ("pipeline/unet");
  const int64_t n = 2 * 4 * 16 * 16;
  float *before = g_new (float, n), *after = g_new (float, n);
  run (u, st, before);
  OftAdapterConfig cfg = { .kind = OFT_ADAPTER_OFT, .oft_block_size = 8, .neumann = true, .n_terms = 5, .eps = 6e-5 };
  const char *targets[] = { "to_q", NULL };
  float p[4 * 28] = { 0.01f };
  OftTensor good = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { 4, 28 }, .data = p };
  OftTensor bad = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { 3, 28 }, .data = p };
  GError *error = NULL;
  for (int merge = 0; merge < 2; merge++)
    {
      /* a valid module first, then one of the wrong shape: nothing may be applied */
      OftPeftAdapter *a = oft_peft_adapter_new (&cfg, targets);
      g_assert_true (oft_peft_adapter_add_module (a, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", &good, NULL, &error));
      g_assert_true (oft_peft_adapter_add_module (a, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k", &bad, NULL, &error));
      g_assert_false (oft_unet_apply_adapter (u, a, merge, &error));
      g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE);
      g_assert_nonnull (strstr (error->message, "attn1.to_k"));
      g_clear_error (&error);
      oft_peft_adapter_free (a);
      a = oft_peft_adapter_new (&cfg, targets);
      g_assert_true (oft_peft_adapter_add_module (a, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", &good, NULL, &error));
      g_assert_true (oft_peft_adapter_add_module (a, "down_blocks.9.attentions.0.to_q", &good, NULL, &error));
      g_assert_false (oft_unet_apply_adapter (u, a, merge, &error));
      g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND);
      g_assert_nonnull (strstr (error->message, "down_blocks.9.attentions.0.to_q"));
      g_clear_error (&error);
      oft_peft_adapter_free (a);
    }
  run (u, st, after);
  g_assert_cmpmem (before, n * 4, after, n * 4);
  g_free (before);
  g_free (after);
  oft_unet_free (u);
  oft_safetensors_close (st);
}

static void
test_golden_pipeline (gconstpointer merge)
{
  char *dir = test_golden_path ("pipeline");
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  OftPeftAdapter *a = load_adapter ();
  g_assert_true (oft_unet_apply_adapter (p->unet, a, GPOINTER_TO_INT (merge), &error));
  OftSafetensors *st = test_open_golden ("unet_oft/pipeline_reference.safetensors");
  float *init = test_load (st, "ddim_init_latents", NULL), *lat = test_load (st, "ddim_latents", NULL);
  float *img = test_load (st, merge ? "ddim_image_merged" : "ddim_image", NULL);
  const int64_t n = 4 * 16 * 16, np = 3 * 128 * 128;
  float *rgb = g_new (float, np), *final = g_new (float, n);
  OftGenerateParams g;
  oft_generate_params_init (&g);
  g.prompt = "a photo of a cat";
  g.steps = 10;
  g.width = g.height = 128;
  g.init_noise = init;
  g_assert_true (oft_pipeline_generate (p, &g, rgb, final, NULL, NULL, &error));
  /* fp32_vs_fp64: latents 4.0e-5 at |x| ≤ 35, images 2.5e-6 / 2.8e-6 (merged); merged vs adapter
   * final latents differ by 6.5e-5 in PEFT's own run */
  test_assert_close (merge ? "final latents (merged, vs the adapter run)" : "final latents (adapter)", final,
                     lat + 10 * 2 * n, n, 1e-5);
  test_assert_close (merge ? "ddim_image_merged" : "ddim_image (adapter)", rgb, img, np, 1e-4);
  g_free (rgb);
  g_free (final);
  g_free (init);
  g_free (lat);
  g_free (img);
  oft_safetensors_close (st);
  oft_peft_adapter_free (a);
  oft_pipeline_free (p);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_data_func ("/unet-adapter/golden/on-the-fly", GINT_TO_POINTER (0), test_golden_unet);
  g_test_add_data_func ("/unet-adapter/golden/merged", GINT_TO_POINTER (1), test_golden_unet);
  g_test_add_func ("/unet-adapter/bad-adapter-leaves-unet", test_bad_adapter_leaves_unet);
  g_test_add_data_func ("/unet-adapter/golden/pipeline-on-the-fly", GINT_TO_POINTER (0), test_golden_pipeline);
  g_test_add_data_func ("/unet-adapter/golden/pipeline-merged", GINT_TO_POINTER (1), test_golden_pipeline);
  return g_test_run ();
}
