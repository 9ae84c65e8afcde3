/* oft_unet_set_device / oft_vae_set_device / oft_pipeline_set_device without a GPU: AUTO falls back to the
 * CPU with a message, CUDA without its module is a clear error; and, over the CPU stand-in module
 * (tests/gpu/mock-cuda.c, path in $OFT_TEST_CUDA_MOCK), dispatch, re-upload after an adapter, storage
 * types, out-of-memory errors and the fallback they cause. The loader caches its outcome per process, so
 * each case runs in a subprocess with its own OFT_CUDA_MODULE. */
#include "test-common.h"
#include <math.h>
#include <string.h>

static const int64_t N_UNET = 2 * 4 * 16 * 16;

typedef struct {
  float *sample, *context, *t, *want;
} UnetIn;

static UnetIn
unet_inputs (void)
{
  OftSafetensors *st = test_open_golden ("pipeline/reference.safetensors");
  UnetIn in = { test_load (st, "unet_sample", NULL), test_load (st, "unet_encoder_hidden_states", NULL),
                test_load (st, "unet_timesteps", NULL), test_load (st, "unet_out", NULL) };
  oft_safetensors_close (st);
  return in;
}

static void
unet_inputs_free (UnetIn *in)
{
  g_free (in->sample);
  g_free (in->context);
  g_free (in->t);
  g_free (in->want);
}

static void
forward (OftUnet *u, const UnetIn *in, float *out)
{
  GError *error = NULL;
  g_assert_true (oft_unet_forward (u, in->sample, in->t, in->context, 2, 16, 16, 77, out, &error));
  g_assert_no_error (error);
}

/* ---- no module: OFT_CUDA_MODULE names a file that does not exist ---- */

static void
no_module (void)
{
  OftUnet *u = test_load_unet ("pipeline/unet");
  GError *error = NULL;
  g_test_expect_message (NULL, G_LOG_LEVEL_MESSAGE, "UNet: using the CPU: *not found*");
  g_assert_true (oft_unet_set_device (u, OFT_DEVICE_AUTO, OFT_DTYPE_BF16, &error));
  g_test_assert_expected_messages ();
  g_assert_no_error (error);
  g_assert_cmpint (oft_unet_device (u), ==, OFT_DEVICE_CPU);
  UnetIn in = unet_inputs ();
  float *out = g_new (float, N_UNET);
  forward (u, &in, out);
  test_assert_close ("unet_out after the fallback", out, in.want, N_UNET, 1e-5);  /* test-unet's bound */

  /* asked for explicitly: an error naming the module path, the UNet still on the CPU */
  g_assert_false (oft_unet_set_device (u, OFT_DEVICE_CUDA, OFT_DTYPE_F32, &error));
  g_assert_nonnull (error);
  g_test_message ("CUDA without the module: %s", error->message);
  g_assert_nonnull (strstr (error->message, "UNet: "));
  g_assert_nonnull (strstr (error->message, "/nonexistent/oftcore-cuda.so"));
  g_clear_error (&error);
  g_assert_cmpint (oft_unet_device (u), ==, OFT_DEVICE_CPU);
  /* a storage type the GPU does not keep is refused before the loader is asked */
  g_assert_false (oft_unet_set_device (u, OFT_DEVICE_CUDA, OFT_DTYPE_F16, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "F32 and BF16"));
  g_clear_error (&error);
  g_assert_true (oft_unet_set_device (u, OFT_DEVICE_CPU, OFT_DTYPE_F16, &error));  /* the CPU ignores it */
  g_free (out);
  unet_inputs_free (&in);
  oft_unet_free (u);

  /* a pipeline says it once, not once per model */
  OftPipeline *p = test_load_pipeline ("pipeline");
  g_test_expect_message (NULL, G_LOG_LEVEL_MESSAGE, "pipeline: using the CPU: *");
  g_assert_true (oft_pipeline_set_device (p, OFT_DEVICE_AUTO, OFT_DTYPE_BF16, &error));
  g_test_assert_expected_messages ();
  g_assert_cmpint (oft_unet_device (p->unet), ==, OFT_DEVICE_CPU);
  g_assert_cmpint (oft_vae_device (p->vae), ==, OFT_DEVICE_CPU);
  g_assert_false (oft_pipeline_set_device (p, OFT_DEVICE_CUDA, OFT_DTYPE_BF16, &error));
  g_assert_nonnull (strstr (error->message, "device cuda: UNet: "));
  g_clear_error (&error);
  oft_pipeline_free (p);
}

/* ---- the CPU stand-in module ---- */

static void
mock_dispatch (void)
{
  OftUnet *u = test_load_unet ("pipeline/unet");
  UnetIn in = unet_inputs ();
  float *cpu = g_new (float, N_UNET), *dev = g_new (float, N_UNET);
  GError *error = NULL;
  forward (u, &in, cpu);
  /* AUTO finds the module: no message (G_DEBUG=fatal-criticals; an unexpected message is not fatal,
   * so the device is what tells) */
  g_assert_true (oft_unet_set_device (u, OFT_DEVICE_AUTO, OFT_DTYPE_F32, &error));
  g_assert_no_error (error);
  g_assert_cmpint (oft_unet_device (u), ==, OFT_DEVICE_CUDA);
  forward (u, &in, dev);
  /* the stand-in computes with the CPU kernels; only the transformer projections' order differs */
  test_assert_close ("stand-in fp32 vs CPU", dev, cpu, N_UNET, 1e-5);
  /* an adapter applied now is uploaded with the model: the forward follows it */
  OftPeftAdapter *a = test_load_adapter ("unet_oft/adapter");
  g_assert_true (oft_unet_apply_adapter (u, a, FALSE, &error));
  g_assert_no_error (error);
  g_assert_cmpint (oft_unet_device (u), ==, OFT_DEVICE_CUDA);
  float *adapted = g_new (float, N_UNET);
  forward (u, &in, adapted);
  g_assert_true (oft_unet_set_device (u, OFT_DEVICE_CPU, OFT_DTYPE_F32, &error));
  g_assert_cmpint (oft_unet_device (u), ==, OFT_DEVICE_CPU);
  forward (u, &in, cpu);
  test_assert_close ("stand-in with the adapter applied after the upload vs CPU", adapted, cpu, N_UNET, 1e-5);
  double scale = 0, diff = 0;
  for (int64_t i = 0; i < N_UNET; i++)
    {
      diff = fmax (diff, fabs ((double) adapted[i] - dev[i]));
      scale = fmax (scale, fabs ((double) dev[i]));
    }
  g_test_message ("the adapter changes the output by %.3g (scale %.3g)", diff, scale);
  g_assert_cmpfloat (diff, >, 1e-3 * scale);  /* so the comparison above saw the rotations */
  g_free (adapted);
  g_free (cpu);
  g_free (dev);
  oft_peft_adapter_free (a);
  unet_inputs_free (&in);
  oft_unet_free (u);
}

static void
mock_out_of_memory (void)
{
  OftUnet *u = test_load_unet ("pipeline/unet");
  GError *error = NULL;
  /* 4 MiB: the tiny UNet's 13 MB of weights do not fit */
  g_setenv ("OFT_CUDA_MOCK_MEMORY", "4194304", TRUE);
  g_assert_false (oft_unet_set_device (u, OFT_DEVICE_CUDA, OFT_DTYPE_F32, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED);
  g_test_message ("weights too large: %s", error->message);
  g_assert_nonnull (strstr (error->message, "GPU memory"));
  g_assert_nonnull (strstr (error->message, "out of memory"));
  g_clear_error (&error);
  g_assert_cmpint (oft_unet_device (u), ==, OFT_DEVICE_CPU);
  g_test_expect_message (NULL, G_LOG_LEVEL_MESSAGE, "UNet: using the CPU: *GPU memory*");
  g_assert_true (oft_unet_set_device (u, OFT_DEVICE_AUTO, OFT_DTYPE_F32, &error));
  g_test_assert_expected_messages ();
  g_assert_cmpint (oft_unet_device (u), ==, OFT_DEVICE_CPU);

  /* room for the bf16 weights (6.5 MB, staged through 8 MiB) but not for the activations (64 MiB
   * chunks): the forward fails cleanly, and works once memory is back */
  g_setenv ("OFT_CUDA_MOCK_MEMORY", "16777216", TRUE);
  g_assert_true (oft_unet_set_device (u, OFT_DEVICE_CUDA, OFT_DTYPE_BF16, &error));
  g_assert_no_error (error);
  UnetIn in = unet_inputs ();
  float *out = g_new (float, N_UNET);
  g_assert_false (oft_unet_forward (u, in.sample, in.t, in.context, 2, 16, 16, 77, out, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED);
  g_test_message ("activations too large: %s", error->message);
  g_assert_nonnull (strstr (error->message, "UNet forward on the GPU"));
  g_assert_nonnull (strstr (error->message, "UNet activations"));
  g_clear_error (&error);
  g_unsetenv ("OFT_CUDA_MOCK_MEMORY");
  forward (u, &in, out);
  /* bf16 storage: within the golden GPU test's bound (see tests/gpu/test-cuda-golden.c) */
  test_assert_close ("stand-in bf16 after an out-of-memory forward", out, in.want, N_UNET, 5e-2);
  g_free (out);
  unet_inputs_free (&in);
  oft_unet_free (u);
}

static void
mock_pipeline (void)
{
  OftPipeline *p = test_load_pipeline ("pipeline");
  GError *error = NULL;
  g_assert_true (oft_pipeline_set_device (p, OFT_DEVICE_AUTO, OFT_DTYPE_BF16, &error));
  g_assert_no_error (error);
  g_assert_cmpint (oft_unet_device (p->unet), ==, OFT_DEVICE_CUDA);
  g_assert_cmpint (oft_vae_device (p->vae), ==, OFT_DEVICE_CUDA);
  /* training stays on the CPU */
  g_assert_false (oft_vae_attach_full_training (p->vae, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_clear_error (&error);
  /* moving again while memory is short: the UNet's new copy fails, and the pipeline is left all on the
   * CPU (the VAE's copy released too) */
  g_setenv ("OFT_CUDA_MOCK_MEMORY", "4194304", TRUE);
  g_assert_false (oft_pipeline_set_device (p, OFT_DEVICE_CUDA, OFT_DTYPE_F32, &error));
  g_assert_nonnull (error);
  g_test_message ("pipeline upload failure: %s", error->message);
  g_clear_error (&error);
  g_assert_cmpint (oft_unet_device (p->unet), ==, OFT_DEVICE_CPU);
  g_assert_cmpint (oft_vae_device (p->vae), ==, OFT_DEVICE_CPU);
  g_unsetenv ("OFT_CUDA_MOCK_MEMORY");
  oft_pipeline_free (p);
}

/* ---- subprocess driver ---- */

typedef void (*Body) (void);

static void
in_subprocess (const char *module, Body body)
{
  if (g_test_subprocess ())
    {
      body ();
      return;
    }
  if (!module)
    {
      g_test_skip ("OFT_TEST_CUDA_MOCK is not set (the stand-in module's path)");
      return;
    }
  g_setenv ("OFT_CUDA_MODULE", module, TRUE);
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDOUT | G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_unsetenv ("OFT_CUDA_MODULE");
  g_test_trap_assert_passed ();
}

static void test_no_module (void) { in_subprocess ("/nonexistent/oftcore-cuda.so", no_module); }
static void test_mock_dispatch (void) { in_subprocess (g_getenv ("OFT_TEST_CUDA_MOCK"), mock_dispatch); }
static void test_mock_oom (void) { in_subprocess (g_getenv ("OFT_TEST_CUDA_MOCK"), mock_out_of_memory); }
static void test_mock_pipeline (void) { in_subprocess (g_getenv ("OFT_TEST_CUDA_MOCK"), mock_pipeline); }

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/device/no-module", test_no_module);
  g_test_add_func ("/device/mock/dispatch-and-adapter", test_mock_dispatch);
  g_test_add_func ("/device/mock/out-of-memory", test_mock_oom);
  g_test_add_func ("/device/mock/pipeline", test_mock_pipeline);
  return g_test_run ();
}
