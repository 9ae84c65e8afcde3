/* PNG and JPEG input (the decoder picks by content), then the channel conversions. */
#include "fuzz-common.h"
#include "oft/oft.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  OftImage *img = oft_image_load (fuzz_write ("in.img", data, size), &error);
  if (!img)
    {
      fuzz_clear (&error);
      return 0;
    }
  oft_image_free (oft_image_convert (img, 1));
  oft_image_free (oft_image_convert (img, 3));
  oft_image_free (img);
  return 0;
}
