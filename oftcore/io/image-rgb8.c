/* Float images to 8-bit the way diffusers rounds them. */
#include "oft/pipeline.h"
#include "oft/safetensors.h"
#include "oft/error.h"
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

