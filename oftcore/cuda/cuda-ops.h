/* The boundary between oftcore and the CUDA module (oftcore-cuda.so). oftcore loads the module at run
 * time (oftcore/foundation/backend.c), so the library, the CLI, the GEGL module and the GIMP plug-in never
 * link libcudart and still load on machines without CUDA. The module exports one symbol, oft_cuda_ops. */
#pragma once
#include <glib.h>
#include "oft/unet.h"
#include "oft/vae.h"

G_BEGIN_DECLS

#define OFT_CUDA_OPS_ABI 2

typedef struct OftCudaOps {
  int abi;                                  /* OFT_CUDA_OPS_ABI of the module's build */
  /* Initialises the first device; its name (g_free) on success. */
  gboolean (*init) (char **device_name, GError **error);
  /* Device copy of the UNet's weights (and the adapters applied to it) in storage type dtype
   * (OftCuDtype); NULL and an error (out of memory names the size) on failure. */
  gpointer (*unet_upload) (OftUnet *u, int dtype, GError **error);
  void     (*unet_release) (gpointer dev);
  /* As oft_unet_forward, on host buffers (the module uploads the inputs and downloads out). */
  gboolean (*unet_forward) (gpointer dev, const float *sample, const float *timesteps, const float *context,
                            int B, int h, int w, int T, float *out, GError **error);
  /* The OFT training step (ABI 2): as oft_unet_train_loss with an OFT adapter attached for training, on
   * host buffers. Reads each trainable's R (rebuilt by the caller with oft_unet_refresh_trainable) and
   * writes its dR (∂loss/∂R) for those whose gradient is asked (gR set); the caller turns dR into the
   * packed parameters' gradient. Refuses BOFT, per-output scales and full training. */
  gboolean (*unet_train_loss) (gpointer dev, const float *sample, const float *timesteps, const float *context,
                               int B, int h, int w, int T, const float *target, gboolean checkpoint, float *loss,
                               GError **error);
  gpointer (*vae_upload) (OftVae *v, int dtype, GError **error);
  void     (*vae_release) (gpointer dev);
  /* As oft_vae_decode, on host buffers. */
  gboolean (*vae_decode) (gpointer dev, const float *z, int B, int h, int w, float *img, GError **error);
  /* Peak device bytes since the last reset (for the bench), and the reset. */
  size_t   (*peak_bytes) (void);
  void     (*reset_peak) (void);
} OftCudaOps;

/* The module's exported entry point. */
const OftCudaOps *oft_cuda_ops (void);

G_END_DECLS
