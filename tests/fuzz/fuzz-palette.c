/* A segmentation palette JSON (oft segmap --palette), then a quantization and colorization with it. */
#include "fuzz-common.h"
#include "oft/oft.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  OftPalette *pal = oft_palette_load (fuzz_write ("palette.json", data, size), &error);
  if (!pal)
    {
      fuzz_clear (&error);
      return 0;
    }
  uint8_t rgb[3 * 8] = { 0, 0, 0, 255, 255, 255, 120, 120, 120, 7, 200, 9, 1, 2, 3, 250, 0, 0, 0, 250, 0, 0, 0, 250 };
  uint8_t index[8], out[3 * 8];
  uint32_t dist[8];
  oft_segmap_quantize (index, dist, rgb, 8, 3, pal);
  oft_segmap_colorize (out, index, 8, pal);
  oft_palette_free (pal);
  return 0;
}
