/* UNet2DConditionModel against diffusers on the golden tiny UNet, intermediates included. */
#include "test-common.h"
#include <string.h>
#include <glib/gstdio.h>

typedef struct {
  OftSafetensors *st;
  int checked;
} TapCtx;

/* fp32_vs_fp64_maxabs of the intermediates is ≤ 3e-6 at |x| ≲ 10: 1e-5 of the scale */
static void
compare_tap (const char *name, const float *data, int64_t n, gpointer user)
{
  TapCtx *c = user;
  char *key = g_strconcat ("unet_dbg.", name, NULL);
  int64_t want_n = 0;
  float *want = test_load (c->st, key, &want_n);
  g_assert_cmpint (n, ==, want_n);
  test_assert_close (key, data, want, n, 1e-5);
  c->checked++;
  g_free (want);
  g_free (key);
}

static void
test_golden_forward (void)
{
  char *dir = test_golden_path ("pipeline/unet");
  GError *error = NULL;
  OftUnet *u = oft_unet_load (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  TapCtx ctx = { .st = test_open_golden ("pipeline/reference.safetensors") };
  float *sample = test_load (ctx.st, "unet_sample", NULL), *context = test_load (ctx.st, "unet_encoder_hidden_states", NULL);
  float t[2];
  const int64_t *ts = oft_safetensors_find (ctx.st, "unet_timesteps")->data;
  t[0] = (float) ts[0];
  t[1] = (float) ts[1];
  float *out = g_new (float, 2 * 4 * 16 * 16);
  oft_unet_set_tap (u, compare_tap, &ctx);
  g_assert_true (oft_unet_forward (u, sample, t, context, 2, 16, 16, 77, out, &error));
  g_assert_cmpint (ctx.checked, ==, 13); /* time_proj, time_embedding, conv_in, 4 down, mid, 4 up, conv_norm_out */
  float *want = test_load (ctx.st, "unet_out", NULL);
  /* fp32_vs_fp64_maxabs 1.0e-6 */
  test_assert_close ("unet_out", out, want, 2 * 4 * 16 * 16, 1e-5);
  g_assert_false (oft_unet_forward (u, sample, t, context, 2, 12, 16, 77, out, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE);
  g_clear_error (&error);
  g_free (want);
  g_free (out);
  g_free (sample);
  g_free (context);
  oft_safetensors_close (ctx.st);
  oft_unet_free (u);
}

static void
test_bad_config (void)
{
  char *dir = g_dir_make_tmp ("oft-unet-XXXXXX", NULL);
  char *cfg = g_build_filename (dir, "config.json", NULL);
  GError *error = NULL;
  g_file_set_contents (cfg, "{\"down_block_types\": [\"CrossAttnDownBlock2D\", \"SimpleCrossAttnDownBlock2D\"],"
                            " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"]}", -1, NULL);
  g_assert_null (oft_unet_load (dir, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "SimpleCrossAttnDownBlock2D"));
  g_clear_error (&error);
  g_file_set_contents (cfg, "{\"down_block_types\": [\"CrossAttnDownBlock2D\"], \"up_block_types\": [\"UpBlock2D\"],"
                            " \"block_out_channels\": [32, 64]}", -1, NULL);
  g_assert_null (oft_unet_load (dir, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "block_out_channels"));
  g_clear_error (&error);
  g_file_set_contents (cfg, "{\"down_block_types\": [\"CrossAttnDownBlock2D\"], \"up_block_types\": [\"UpBlock2D\"],"
                            " \"block_out_channels\": [32], \"attention_head_dim\": 2, \"cross_attention_dim\": 8}", -1, NULL);
  g_assert_null (oft_unet_load (dir, &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_remove (cfg);
  g_rmdir (dir);
  g_free (cfg);
  g_free (dir);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/unet/golden/forward", test_golden_forward);
  g_test_add_func ("/unet/bad-config", test_bad_config);
  return g_test_run ();
}
