/* The landmark condition image (white disks on black, after OFT's CelebA-HQ landmark task) and
 * OFT's landmark error. */
#include "oft/faces.h"
#include <math.h>

OftImage *
oft_landmarks_render (const double *points, int npoints, int width, int height)
{
  OftImage *img = oft_image_new (width, height, 3); /* zeroed: black */
  int r = MAX (1, MIN (width, height) / 200);
  for (int i = 0; i < npoints; i++)
    {
      double fx = floor (points[2 * i] + 0.5), fy = floor (points[2 * i + 1] + 0.5);
      if (!(fx > -r - 1 && fx < width + r + 1 && fy > -r - 1 && fy < height + r + 1)) /* also NaN */
        continue;
      int cx = (int) fx, cy = (int) fy;
      for (int y = MAX (cy - r, 0); y <= MIN (cy + r, height - 1); y++)
        for (int x = MAX (cx - r, 0); x <= MIN (cx + r, width - 1); x++)
          if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r)
            {
              uint8_t *p = img->pixels + ((size_t) y * width + x) * 3;
              p[0] = p[1] = p[2] = 255;
            }
    }
  return img;
}

double
oft_landmark_error (const double *a, const double *b, int npoints)
{
  if (npoints <= 0)
    return NAN;
  double sum = 0;
  for (int i = 0; i < npoints; i++)
    {
      double dx = a[2 * i] - b[2 * i], dy = a[2 * i + 1] - b[2 * i + 1];
      sum += sqrt (dx * dx + dy * dy); /* as numpy: sqrt of the summed squares */
    }
  return sum / npoints;
}
