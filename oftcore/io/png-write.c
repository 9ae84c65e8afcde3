/* PNG output through libpng into memory, then an atomic file replace. */
#include "oft/pipeline.h"
#include "oft/safetensors.h"
#include "oft/error.h"
#include <png.h>
#include <math.h>

void
oft_image_to_rgb8 (uint8_t *rgb8, const float *rgb, int width, int height)
{
  int64_t plane = (int64_t) width * height;
  for (int64_t i = 0; i < plane; i++)
    for (int c = 0; c < 3; c++)
      {
        /* numpy: (x * 255).round() in float32, half to even; nearbyintf rounds the same way */
        float v = fminf (fmaxf (rgb[c * plane + i], 0.0f), 1.0f) * 255.0f;
        rgb8[i * 3 + c] = (uint8_t) nearbyintf (v);
      }
}

static void
append (png_structp png, png_bytep data, png_size_t len)
{
  g_byte_array_append (png_get_io_ptr (png), data, (guint) len);
}

static void
flush (png_structp png)
{
}

gboolean
oft_png_write_rgb8 (const char *path, const uint8_t *rgb8, int width, int height, GError **error)
{
  png_structp png = png_create_write_struct (PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct (png) : NULL;
  GByteArray *buf = g_byte_array_new ();
  gboolean ok = FALSE;
  if (!info)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_FAILED, "%s: cannot start a PNG writer", path);
      goto out;
    }
  if (setjmp (png_jmpbuf (png)))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_FAILED, "%s: PNG encoding failed", path);
      goto out;
    }
  png_set_write_fn (png, buf, append, flush);
  png_set_IHDR (png, info, (png_uint_32) width, (png_uint_32) height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info (png, info);
  for (int y = 0; y < height; y++)
    png_write_row (png, (png_const_bytep) (rgb8 + (size_t) y * width * 3));
  png_write_end (png, NULL);
  ok = oft_file_write_atomic (path, buf->data, buf->len, error);
out:
  png_destroy_write_struct (&png, &info);
  g_byte_array_unref (buf);
  return ok;
}
