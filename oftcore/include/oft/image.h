/* 8-bit images as files hold them: PNG (libpng, any bit depth/colour type, reduced to 8 bits) and
 * JPEG (libjpeg-turbo). Pixels are interleaved, rows top to bottom. */
#pragma once
#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define OFT_IMAGE_MAX_PIXELS (1 << 28)  /* larger files are refused before decoding */

typedef struct {
  int width, height;
  int channels;     /* 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA */
  uint8_t *pixels;  /* width·height·channels bytes */
} OftImage;

OftImage *oft_image_new (int width, int height, int channels);
void      oft_image_free (OftImage *img);
/* PNG or JPEG, told apart by their signatures; errors name the file. */
OftImage *oft_image_load (const char *path, GError **error);
/* The image converted to `channels` (1 or 3: luminance by Rec. 601 weights, or gray replicated;
 * alpha dropped) as a new image. */
OftImage *oft_image_convert (const OftImage *img, int channels);
/* PNG, atomically (temporary file, fsync, rename). */
gboolean  oft_image_save_png (const OftImage *img, const char *path, GError **error);

G_END_DECLS
