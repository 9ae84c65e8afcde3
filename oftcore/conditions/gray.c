/* OpenCV's 8-bit BGR2GRAY: 15-bit fixed-point Rec. 601 weights with rounding. The often-quoted 14-bit
 * weights differ by ±1 on about 0.26 % of colours, so the exact constants matter for bit-exact edges. */
#include "oft/conditions.h"
#include <string.h>

enum { GRAY_R = 9798, GRAY_G = 19235, GRAY_B = 3735, GRAY_SHIFT = 15 };

void
oft_gray_from_rgb (uint8_t *gray, const uint8_t *rgb, int64_t npixels, int channels)
{
  for (int64_t i = 0; i < npixels; i++)
    {
      const uint8_t *p = rgb + i * channels;
      gray[i] = (uint8_t) ((GRAY_R * p[0] + GRAY_G * p[1] + GRAY_B * p[2] + (1 << (GRAY_SHIFT - 1))) >> GRAY_SHIFT);
    }
}

OftImage *
oft_gray_image (const OftImage *img)
{
  OftImage *out = oft_image_new (img->width, img->height, 1);
  int64_t n = (int64_t) img->width * img->height;
  if (img->channels >= 3)
    oft_gray_from_rgb (out->pixels, img->pixels, n, img->channels);
  else if (img->channels == 1)
    memcpy (out->pixels, img->pixels, (size_t) n);
  else
    for (int64_t i = 0; i < n; i++)
      out->pixels[i] = img->pixels[i * img->channels];
  return out;
}
