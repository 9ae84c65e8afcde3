/* The CUDA module's one exported symbol: the vtable oftcore's loader (foundation/backend.c) looks up. */
#include "cuda-ops.h"
#include "cuda-model.h"
#include "oft/error.h"

/* Idempotent: the UNet and the VAE each ask for the device. OFT_CUDA_TF32=0 turns TF32 off for fp32
 * GEMMs (the golden GPU tests compare fp32 at 1e-4 of the scale, which TF32's 10-bit mantissa misses). */
static gboolean
cu_init (char **device_name, GError **error)
{
  static gboolean done;
  static char name[256];
  if (!done)
    {
      if (oftcu_init (0, name, sizeof name) != 0)
        {
          const char *why = oftcu_error ();
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "CUDA: %s", why ? why : "no usable GPU");
          oftcu_clear_error ();
          return FALSE;
        }
      const char *tf32 = g_getenv ("OFT_CUDA_TF32");
      if (tf32 && g_str_equal (tf32, "0"))
        oftcu_set_tf32 (false);
      done = TRUE;
    }
  if (device_name)
    *device_name = g_strdup (name);
  return TRUE;
}

static size_t
cu_peak_bytes (void)
{
  return oftcu_peak_bytes ();
}

static void
cu_reset_peak (void)
{
  oftcu_reset_peak ();
}

static const OftCudaOps ops = {
  .abi = OFT_CUDA_OPS_ABI,
  .init = cu_init,
  .unet_upload = cu_unet_upload,
  .unet_release = cu_unet_release,
  .unet_forward = cu_unet_forward,
  .vae_upload = cu_vae_upload,
  .vae_release = cu_vae_release,
  .vae_decode = cu_vae_decode,
  .peak_bytes = cu_peak_bytes,
  .reset_peak = cu_reset_peak,
};

const OftCudaOps *
oft_cuda_ops (void)
{
  return &ops;
}
