/* A model's config.json as the UNet, the VAE and the CLIP text encoder read it. The weights source is
 * absent, so a config that passes fails at the first tensor without allocating the model. */
#include "fuzz-common.h"
#include "oft/oft.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *path = fuzz_write ("config.json", data, size);
  GError *open_error = g_error_new (OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "no weights (fuzzing the config)");
  OftWeightSource src = { .open_error = open_error };
  GError *error = NULL;
  OftUnet *u = oft_unet_load_from (path, &src, &error);
  fuzz_clear (&error);
  oft_unet_free (u);
  OftVae *v = oft_vae_load_from (path, &src, &error);
  fuzz_clear (&error);
  oft_vae_free (v);
  OftClipText *c = oft_clip_text_load_from (path, &src, &error);
  fuzz_clear (&error);
  oft_clip_text_free (c);
  g_error_free (open_error);
  return 0;
}
