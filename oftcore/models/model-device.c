/* Moving the UNet, the VAE decoder and a pipeline's two to a device: the CUDA module (loaded at run time
 * through oft_cuda_get, oft/backend.h) keeps a copy of the weights and runs the forward there, while the
 * host model stays complete, so the CPU path is untouched and OFT_DEVICE_CPU is a plain release. */
#include "unet-private.h"
#include "vae-private.h"
#include "oft/pipeline.h"
#include "oft/error.h"
#include "../cuda/cuda-kernels.h"

/* A failure to get onto the GPU: with AUTO the CPU and a message naming `what` and why, with CUDA an
 * error. Takes `why`. */
static gboolean
fall_back (OftDevice device, const char *what, GError *why, GError **error)
{
  if (device == OFT_DEVICE_AUTO)
    {
      g_message ("%s: using the CPU: %s", what, why->message);
      g_error_free (why);
      return TRUE;
    }
  g_propagate_prefixed_error (error, why, "%s: ", what);
  return FALSE;
}

/* The CUDA ops for `device` (oft_device_resolve), or NULL for the CPU */
static gboolean
resolve (OftDevice device, OftDType dtype, const char *what, const OftCudaOps **ops, GError **error)
{
  *ops = NULL;
  if (device == OFT_DEVICE_CPU)
    return TRUE;
  if (device != OFT_DEVICE_CUDA && device != OFT_DEVICE_AUTO)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: unknown device %d", what, (int) device);
      return FALSE;
    }
  if (dtype != OFT_DTYPE_F32 && dtype != OFT_DTYPE_BF16)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: storage type %s on the GPU: only F32 and BF16",
                   what, (unsigned) dtype < OFT_DTYPE_COUNT ? oft_dtype_name (dtype) : "?");
      return FALSE;
    }
  OftDevice got;
  char *note = NULL;
  GError *why = NULL;
  if (!oft_device_resolve (device, &got, &note, &why))
    return fall_back (device, what, why, error);
  if (note)
    g_message ("%s: %s", what, note);
  g_free (note);
  if (got == OFT_DEVICE_CUDA)
    *ops = oft_cuda_get (NULL);
  return TRUE;
}

static int
cu_dtype (OftDType d)
{
  return d == OFT_DTYPE_BF16 ? OFTCU_BF16 : OFTCU_F32;
}

/* ---- UNet ---- */

void
oft_unet_device_release (OftUnet *u)
{
  if (u->dev)
    u->dev_ops->unet_release (u->dev);
  u->dev = NULL;
  u->dev_ops = NULL;
}

/* full-parameter training stays on the CPU; an attached OFT adapter trains on the GPU (cuda-unet-train.c) */
static gboolean
unet_training (const OftUnet *u)
{
  return oft_params_have_grads (u->params_list);
}

gboolean
oft_unet_set_device (OftUnet *u, OftDevice device, OftDType dtype, GError **error)
{
  const OftCudaOps *ops;
  if (device != OFT_DEVICE_CPU && unet_training (u))
    return fall_back (device, "UNet", g_error_new (OFT_MODEL_ERROR, OFT_ERROR_INVALID, "full-parameter training is "
                      "attached, and it runs on the CPU only (detach it first)"), error);
  if (!resolve (device, dtype, "UNet", &ops, error))
    return FALSE;
  oft_unet_device_release (u);  /* first, so that the old copy's memory is free for the new one */
  if (!ops)
    return TRUE;
  GError *why = NULL;
  gpointer dev = ops->unet_upload (u, cu_dtype (dtype), &why);
  if (!dev)
    return fall_back (device, "UNet", why, error);
  u->dev_ops = ops;
  u->dev = dev;
  u->dev_dtype = dtype;
  return TRUE;
}

OftDevice
oft_unet_device (const OftUnet *u)
{
  return u->dev ? OFT_DEVICE_CUDA : OFT_DEVICE_CPU;
}

gboolean
oft_unet_device_refresh (OftUnet *u, GError **error)
{
  if (!u->dev)
    return TRUE;
  const OftCudaOps *ops = u->dev_ops;
  oft_unet_device_release (u);
  GError *why = NULL;
  gpointer dev = ops->unet_upload (u, cu_dtype (u->dev_dtype), &why);
  if (!dev)
    {
      g_propagate_prefixed_error (error, why, "the adapter is applied, but uploading the UNet to the GPU again "
                                  "failed, so it runs on the CPU now: ");
      return FALSE;
    }
  u->dev_ops = ops;
  u->dev = dev;
  return TRUE;
}

/* ---- VAE ---- */

void
oft_vae_device_release (OftVae *v)
{
  if (v->dev)
    v->dev_ops->vae_release (v->dev);
  v->dev = NULL;
  v->dev_ops = NULL;
}

gboolean
oft_vae_set_device (OftVae *v, OftDevice device, OftDType dtype, GError **error)
{
  const OftCudaOps *ops;
  if (device != OFT_DEVICE_CPU && oft_params_have_grads (v->params_list))
    return fall_back (device, "VAE", g_error_new (OFT_MODEL_ERROR, OFT_ERROR_INVALID, "training is attached, and "
                      "it runs on the CPU only"), error);
  if (!resolve (device, dtype, "VAE", &ops, error))
    return FALSE;
  oft_vae_device_release (v);
  if (!ops)
    return TRUE;
  GError *why = NULL;
  gpointer dev = ops->vae_upload (v, cu_dtype (dtype), &why);
  if (!dev)
    return fall_back (device, "VAE", why, error);
  v->dev_ops = ops;
  v->dev = dev;
  return TRUE;
}

OftDevice
oft_vae_device (const OftVae *v)
{
  return v->dev ? OFT_DEVICE_CUDA : OFT_DEVICE_CPU;
}

/* ---- pipeline ---- */

gboolean
oft_pipeline_set_device (OftPipeline *p, OftDevice device, OftDType dtype, GError **error)
{
  if (device == OFT_DEVICE_AUTO)
    {
      /* one message, not one per model, when there is no GPU at all */
      const OftCudaOps *ops;
      if (!resolve (device, dtype, "pipeline", &ops, error))
        return FALSE;
      if (!ops)
        device = OFT_DEVICE_CPU;
    }
  if (oft_unet_set_device (p->unet, device, dtype, error) && oft_vae_set_device (p->vae, device, dtype, error))
    return TRUE;
  oft_unet_set_device (p->unet, OFT_DEVICE_CPU, dtype, NULL);
  oft_vae_set_device (p->vae, OFT_DEVICE_CPU, dtype, NULL);
  g_prefix_error (error, "device %s: ", oft_device_to_string (device));
  return FALSE;
}
