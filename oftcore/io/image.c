/* Image files through libpng's simplified API and libjpeg-turbo. */
#include "oft/image.h"
#include "oft/pipeline.h"
#include "oft/error.h"
#include <png.h>
#include <jpeglib.h>
#include <setjmp.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

OftImage *
oft_image_new (int width, int height, int channels)
{
  OftImage *img = g_new0 (OftImage, 1);
  img->width = width;
  img->height = height;
  img->channels = channels;
  img->pixels = g_malloc0 ((size_t) width * height * channels);
  return img;
}

void
oft_image_free (OftImage *img)
{
  if (!img)
    return;
  g_free (img->pixels);
  g_free (img);
}

static gboolean
too_big (const char *path, uint64_t w, uint64_t h, GError **error)
{
  if (w == 0 || h == 0 || w * h > OFT_IMAGE_MAX_PIXELS)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, "%s: %" G_GUINT64_FORMAT "×%" G_GUINT64_FORMAT
                   " pixels: empty or over the limit of %d", path, w, h, OFT_IMAGE_MAX_PIXELS);
      return TRUE;
    }
  return FALSE;
}

static OftImage *
load_png (const char *path, GError **error)
{
  png_image pi;
  memset (&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file (&pi, path))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: not a readable PNG: %s", path, pi.message);
      return NULL;
    }
  if (too_big (path, pi.width, pi.height, error))
    {
      png_image_free (&pi);
      return NULL;
    }
  gboolean color = (pi.format & PNG_FORMAT_FLAG_COLOR) != 0, alpha = (pi.format & PNG_FORMAT_FLAG_ALPHA) != 0;
  pi.format = color ? (alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB) : (alpha ? PNG_FORMAT_GA : PNG_FORMAT_GRAY);
  OftImage *img = oft_image_new ((int) pi.width, (int) pi.height, (int) PNG_IMAGE_PIXEL_CHANNELS (pi.format));
  if (!png_image_finish_read (&pi, NULL, img->pixels, 0, NULL))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: PNG decoding failed: %s", path, pi.message);
      oft_image_free (img);
      return NULL;
    }
  return img;
}

typedef struct {
  struct jpeg_error_mgr base;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
} JpegError;

static void
jpeg_fail (j_common_ptr cinfo)
{
  JpegError *e = (JpegError *) cinfo->err;
  cinfo->err->format_message (cinfo, e->message);
  longjmp (e->jump, 1);
}

static void
jpeg_quiet (j_common_ptr cinfo)
{
  /* warnings (e.g. a premature end of data, padded by libjpeg) stay off stderr */
}

static OftImage *
load_jpeg (const char *path, FILE *f, GError **error)
{
  struct jpeg_decompress_struct cinfo;
  JpegError jerr;
  OftImage *volatile img = NULL;
  cinfo.err = jpeg_std_error (&jerr.base);
  jerr.base.error_exit = jpeg_fail;
  jerr.base.output_message = jpeg_quiet;
  if (setjmp (jerr.jump))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: JPEG decoding failed: %s", path, jerr.message);
      jpeg_destroy_decompress (&cinfo);
      oft_image_free (img);
      return NULL;
    }
  jpeg_create_decompress (&cinfo);
  jpeg_stdio_src (&cinfo, f);
  jpeg_read_header (&cinfo, TRUE);
  cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  if (too_big (path, cinfo.image_width, cinfo.image_height, error))
    {
      jpeg_destroy_decompress (&cinfo);
      return NULL;
    }
  jpeg_start_decompress (&cinfo);
  img = oft_image_new ((int) cinfo.output_width, (int) cinfo.output_height, cinfo.output_components);
  while (cinfo.output_scanline < cinfo.output_height)
    {
      JSAMPROW row = img->pixels + (size_t) cinfo.output_scanline * img->width * img->channels;
      jpeg_read_scanlines (&cinfo, &row, 1);
    }
  jpeg_finish_decompress (&cinfo);
  long warnings = jerr.base.num_warnings;
  jpeg_destroy_decompress (&cinfo);
  if (warnings > 0)
    {
      /* libjpeg pads a premature end with gray and only warns: a damaged photo must not train silently */
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: JPEG data is truncated or damaged", path);
      oft_image_free (img);
      return NULL;
    }
  return img;
}

OftImage *
oft_image_load (const char *path, GError **error)
{
  FILE *f = fopen (path, "rb");
  if (!f)
    {
      int e = errno;
      g_set_error (error, OFT_IO_ERROR, e == ENOENT ? OFT_ERROR_NOT_FOUND : OFT_ERROR_FAILED, "%s: cannot open: %s",
                   path, g_strerror (e));
      return NULL;
    }
  unsigned char sig[8] = { 0 };
  size_t got = fread (sig, 1, sizeof sig, f);
  rewind (f);
  OftImage *img = NULL;
  if (got == 8 && png_sig_cmp (sig, 0, 8) == 0)
    img = load_png (path, error);
  else if (got >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF)
    img = load_jpeg (path, f, error);
  else
    g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, "%s: not a PNG or JPEG file", path);
  fclose (f);
  return img;
}

OftImage *
oft_image_convert (const OftImage *img, int channels)
{
  g_return_val_if_fail (channels == 1 || channels == 3, NULL);
  OftImage *out = oft_image_new (img->width, img->height, channels);
  size_t n = (size_t) img->width * img->height;
  for (size_t i = 0; i < n; i++)
    {
      const uint8_t *p = img->pixels + i * img->channels;
      uint8_t *o = out->pixels + i * channels;
      gboolean color = img->channels >= 3;
      if (channels == 3)
        for (int c = 0; c < 3; c++)
          o[c] = color ? p[c] : p[0];
      else
        o[0] = color ? (uint8_t) ((299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000) : p[0];
    }
  return out;
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
oft_image_save_png (const OftImage *img, const char *path, GError **error)
{
  static const int types[5] = { 0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGBA };
  png_structp png = png_create_write_struct (PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct (png) : NULL;
  GByteArray *buf = g_byte_array_new ();
  gboolean ok = FALSE;
  if (!info || img->channels < 1 || img->channels > 4)
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
  png_set_IHDR (png, info, (png_uint_32) img->width, (png_uint_32) img->height, 8, types[img->channels],
                PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info (png, info);
  for (int y = 0; y < img->height; y++)
    png_write_row (png, (png_const_bytep) (img->pixels + (size_t) y * img->width * img->channels));
  png_write_end (png, NULL);
  ok = oft_file_write_atomic (path, buf->data, buf->len, error);
out:
  png_destroy_write_struct (&png, &info);
  g_byte_array_unref (buf);
  return ok;
}

gboolean
oft_png_write_rgb8 (const char *path, const uint8_t *rgb8, int width, int height, GError **error)
{
  OftImage img = { .width = width, .height = height, .channels = 3, .pixels = (uint8_t *) rgb8 };
  return oft_image_save_png (&img, path, error);
}
