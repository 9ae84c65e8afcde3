/* AutoencoderKL against diffusers on the golden VAE. */
#include "test-common.h"
#include <string.h>
#include <glib/gstdio.h>

static void
test_golden_decode_encode (void)
{
  char *dir = test_golden_path ("pipeline/vae");
  GError *error = NULL;
  OftVae *v = oft_vae_load (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  g_assert_cmpint (oft_vae_factor (v), ==, 8);
  g_assert_cmpfloat (oft_vae_scaling_factor (v), ==, 0.18215f);
  OftSafetensors *st = test_open_golden ("pipeline/reference.safetensors");

  float *z = test_load (st, "vae_decode_in", NULL), *want = test_load (st, "vae_decode_out", NULL);
  float *img = g_new (float, 3 * 128 * 128);
  g_assert_true (oft_vae_decode (v, z, 1, 16, 16, img, &error));
  /* fp32_vs_fp64_maxabs 8.5e-6 at |x| ≲ 1: 1e-4 of the scale */
  test_assert_close ("vae_decode_out", img, want, 3 * 128 * 128, 1e-4);
  g_free (z);
  g_free (want);
  g_free (img);

  float *in = test_load (st, "vae_encode_in", NULL);
  float *mean = g_new (float, 4 * 16 * 16), *logvar = g_new (float, 4 * 16 * 16);
  g_assert_true (oft_vae_encode (v, in, 1, 128, 128, mean, logvar, &error));
  want = test_load (st, "vae_encode_mean", NULL);
  /* fp32_vs_fp64_maxabs: mean 1.6e-6, logvar 2.3e-6 */
  test_assert_close ("vae_encode_mean", mean, want, 4 * 16 * 16, 1e-4);
  g_free (want);
  want = test_load (st, "vae_encode_logvar", NULL);
  test_assert_close ("vae_encode_logvar", logvar, want, 4 * 16 * 16, 1e-4);
  g_free (want);
  g_assert_false (oft_vae_encode (v, in, 1, 100, 128, mean, NULL, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE);
  g_clear_error (&error);
  g_free (in);
  g_free (mean);
  g_free (logvar);
  oft_safetensors_close (st);
  oft_vae_free (v);
}

static void
test_bad_config (void)
{
  char *dir = g_dir_make_tmp ("oft-vae-XXXXXX", NULL);
  char *cfg = g_build_filename (dir, "config.json", NULL);
  GError *error = NULL;
  g_file_set_contents (cfg, "{\"block_out_channels\": [8, 16], \"norm_num_groups\": 4,"
                            " \"down_block_types\": [\"DownEncoderBlock2D\", \"SomethingElse\"],"
                            " \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}", -1, NULL);
  g_assert_null (oft_vae_load (dir, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "SomethingElse"));
  g_clear_error (&error);
  /* valid config, no weights file */
  g_file_set_contents (cfg, "{\"block_out_channels\": [8, 16], \"norm_num_groups\": 4,"
                            " \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\"],"
                            " \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}", -1, NULL);
  g_assert_null (oft_vae_load (dir, &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "diffusion_pytorch_model.safetensors"));
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
  g_test_add_func ("/vae/golden/decode-encode", test_golden_decode_encode);
  g_test_add_func ("/vae/bad-config", test_bad_config);
  return g_test_run ();
}
