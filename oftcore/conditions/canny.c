/* cv2.Canny as OpenCV 4.6 computes it, bit for bit:
 * 1. Sobel dx, dy (BORDER_REPLICATE) as separable integer correlations saturated to int16; aperture 7
 *    scales by 1/16 (rounded half to even, as OpenCV's float path does) and divides the thresholds too.
 * 2. L1 |dx|+|dy| or L2 dx²+dy² magnitude in int32; with several channels the channel with the
 *    largest magnitude (strict >, so the first wins ties) supplies magnitude, dx and dy.
 * 3. Non-maximum suppression along the gradient direction quantised with tan(22.5°) in Q15, the
 *    magnitude taken as 0 outside the image, with OpenCV's asymmetric > / >= comparisons.
 * 4. Hysteresis: candidates (m > low) 8-connected to a strong pixel (m > high) become edges. */
#include "oft/conditions.h"
#include "oft/error.h"
#include <math.h>
#include <string.h>
#include <stdlib.h>

enum { CANNY_SHIFT = 15, TG22 = 13573 /* tan(22.5°)·2^15, rounded */ };

/* Order-1 derivative and smoothing taps of OpenCV's Sobel kernels (getSobelKernels). */
static void
sobel_taps (int aperture, const int **deriv, const int **smooth)
{
  static const int d3[] = { -1, 0, 1 }, s3[] = { 1, 2, 1 };
  static const int d5[] = { -1, -2, 0, 2, 1 }, s5[] = { 1, 4, 6, 4, 1 };
  static const int d7[] = { -1, -4, -5, 0, 5, 4, 1 }, s7[] = { 1, 6, 15, 20, 15, 6, 1 };
  *deriv = aperture == 3 ? d3 : aperture == 5 ? d5 : d7;
  *smooth = aperture == 3 ? s3 : aperture == 5 ? s5 : s7;
}

static inline int16_t
sat16 (int64_t v)
{
  return (int16_t) (v < -32768 ? -32768 : v > 32767 ? 32767 : v);
}

/* Sum S of the integer kernels, scaled by 1/16 for aperture 7: S/16 is exact in float, and OpenCV's
 * cast to short rounds it half to even. */
static inline int16_t
sobel_out (int64_t s, int aperture)
{
  if (aperture != 7)
    return sat16 (s);
  int64_t q = s >> 4, rem = s & 15;  /* floor division by 16 */
  if (rem > 8 || (rem == 8 && (q & 1)))
    q++;
  return sat16 (q);
}

/* dx and dy of channel c of an interleaved image. */
static void
sobel_xy (int16_t *dx, int16_t *dy, const uint8_t *src, int w, int h, int channels, int c, int aperture)
{
  const int *d, *s;
  sobel_taps (aperture, &d, &s);
  int r = aperture / 2, k = aperture;
  /* row pass over every image row: derivative and smoothing along x, replicated borders */
  int32_t *rd = g_new (int32_t, (size_t) w * h), *rs = g_new (int32_t, (size_t) w * h);
  int *xo = g_new (int, (size_t) w * k);
  for (int x = 0; x < w; x++)
    for (int j = 0; j < k; j++)
      xo[x * k + j] = CLAMP (x + j - r, 0, w - 1) * channels + c;
  for (int y = 0; y < h; y++)
    {
      const uint8_t *row = src + (size_t) y * w * channels;
      for (int x = 0; x < w; x++)
        {
          int32_t sd = 0, ss = 0;
          for (int j = 0; j < k; j++)
            {
              int v = row[xo[x * k + j]];
              sd += d[j] * v;
              ss += s[j] * v;
            }
          rd[(size_t) y * w + x] = sd;
          rs[(size_t) y * w + x] = ss;
        }
    }
  /* column pass: dx = smoothing along y of the x-derivative, dy = derivative along y of the x-smoothing */
  for (int y = 0; y < h; y++)
    {
      const int32_t *pd[7], *ps[7];
      for (int i = 0; i < k; i++)
        {
          size_t yy = (size_t) CLAMP (y + i - r, 0, h - 1) * w;
          pd[i] = rd + yy;
          ps[i] = rs + yy;
        }
      for (int x = 0; x < w; x++)
        {
          int64_t sx = 0, sy = 0;
          for (int i = 0; i < k; i++)
            {
              sx += (int64_t) s[i] * pd[i][x];
              sy += (int64_t) d[i] * ps[i][x];
            }
          dx[(size_t) y * w + x] = sobel_out (sx, aperture);
          dy[(size_t) y * w + x] = sobel_out (sy, aperture);
        }
    }
  g_free (xo);
  g_free (rd);
  g_free (rs);
}

gboolean
oft_canny (uint8_t *edges, const uint8_t *src, int width, int height, int channels, const OftCannyParams *p,
           GError **error)
{
  if (p->aperture != 3 && p->aperture != 5 && p->aperture != 7)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "Canny: aperture %d: expected 3, 5 or 7",
                   p->aperture);
      return FALSE;
    }
  if (channels != 1 && channels != 3)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "Canny: %d channels: expected 1 (gray) or 3 (RGB)",
                   channels);
      return FALSE;
    }
  if (width < 1 || height < 1 || !isfinite (p->low) || !isfinite (p->high))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "Canny: image %d×%d, thresholds %g and %g: "
                   "expected a non-empty image and finite thresholds", width, height, p->low, p->high);
      return FALSE;
    }

  /* thresholds as cv::Canny prepares them */
  double lo = p->low, hi = p->high;
  if (lo > hi)
    {
      double t = lo;
      lo = hi;
      hi = t;
    }
  if (p->aperture == 7)
    {
      lo /= 16;
      hi /= 16;
    }
  if (p->l2)
    {
      lo = MIN (32767.0, lo);
      hi = MIN (32767.0, hi);
      if (lo > 0)
        lo *= lo;
      if (hi > 0)
        hi *= hi;
    }
  /* clamp before the cast: thresholds beyond int range mean "everything" or "nothing" alike */
  int64_t low = (int64_t) floor (CLAMP (lo, -4e9, 4e9)), high = (int64_t) floor (CLAMP (hi, -4e9, 4e9));

  size_t n = (size_t) width * height;
  int16_t *dx = g_new (int16_t, n), *dy = g_new (int16_t, n);
  int16_t *cdx = channels > 1 ? g_new (int16_t, n) : NULL, *cdy = channels > 1 ? g_new (int16_t, n) : NULL;
  /* magnitude with a one-pixel ring of zeros: NMS reads neighbours outside the image as 0 */
  int W = width + 2;
  int32_t *mag = g_new0 (int32_t, (size_t) W * (height + 2));
  for (int c = 0; c < channels; c++)
    {
      int16_t *ox = c == 0 ? dx : cdx, *oy = c == 0 ? dy : cdy;
      sobel_xy (ox, oy, src, width, height, channels, c, p->aperture);
      for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
          {
            size_t i = (size_t) y * width + x;
            int64_t a = ox[i], b = oy[i];
            /* int32 as in OpenCV; Sobel outputs stay far below the 46341 where dx² + dy² would overflow */
            int32_t m = (int32_t) MIN (p->l2 ? a * a + b * b : llabs (a) + llabs (b), (int64_t) INT32_MAX);
            int32_t *mp = &mag[(size_t) (y + 1) * W + x + 1];
            if (c == 0)
              *mp = m;
            else if (m > *mp)
              {
                *mp = m;
                dx[i] = ox[i];
                dy[i] = oy[i];
              }
          }
    }
  g_free (cdx);
  g_free (cdy);

  /* non-maximum suppression: 0 = not a candidate, 1 = candidate, 2 = edge */
  uint8_t *map = g_new0 (uint8_t, n);
  int32_t *stack = g_new (int32_t, n);
  size_t top = 0;
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++)
      {
        const int32_t *mp = &mag[(size_t) (y + 1) * W + x + 1];
        int32_t m = *mp;
        if (m <= low)
          continue;
        size_t i = (size_t) y * width + x;
        int xs = dx[i], ys = dy[i];
        int64_t ax = abs (xs), ay = (int64_t) abs (ys) << CANNY_SHIFT;
        int64_t tg22x = ax * TG22;
        gboolean keep;
        if (ay < tg22x)
          keep = m > mp[-1] && m >= mp[1];
        else if (ay > tg22x + (ax << 16))
          keep = m > mp[-W] && m >= mp[W];
        else
          {
            int s = (xs ^ ys) < 0 ? -1 : 1;
            keep = m > mp[-W - s] && m > mp[W + s];
          }
        if (!keep)
          continue;
        if (m > high)
          {
            map[i] = 2;
            stack[top++] = (int32_t) i;
          }
        else
          map[i] = 1;
      }
  g_free (mag);
  g_free (dx);
  g_free (dy);

  /* hysteresis: grow edges through 8-connected candidates */
  while (top > 0)
    {
      int32_t i = stack[--top];
      int y = i / width, x = i % width;
      for (int yy = MAX (y - 1, 0); yy <= MIN (y + 1, height - 1); yy++)
        for (int xx = MAX (x - 1, 0); xx <= MIN (x + 1, width - 1); xx++)
          {
            size_t j = (size_t) yy * width + xx;
            if (map[j] == 1)
              {
                map[j] = 2;
                stack[top++] = (int32_t) j;
              }
          }
    }
  for (size_t i = 0; i < n; i++)
    edges[i] = map[i] == 2 ? 255 : 0;
  g_free (stack);
  g_free (map);
  return TRUE;
}

OftImage *
oft_canny_image (const OftImage *img, const OftCannyParams *params, gboolean gray, gboolean blur, GError **error)
{
  int w = img->width, h = img->height;
  size_t n = (size_t) w * h;
  /* drop alpha: 2 → 1 and 4 → 3 channels */
  int ch = img->channels >= 3 ? 3 : 1;
  uint8_t *src = g_new (uint8_t, n * ch);
  for (size_t i = 0; i < n; i++)
    memcpy (src + i * ch, img->pixels + i * img->channels, (size_t) ch);
  if (blur)
    {
      uint8_t *b = g_new (uint8_t, n * ch);
      if (!oft_gauss_blur (b, src, w, h, ch, 5, 1.0, error))
        {
          g_free (b);
          g_free (src);
          return NULL;
        }
      g_free (src);
      src = b;
    }
  if (gray && ch == 3)
    {
      uint8_t *g = g_new (uint8_t, n);
      oft_gray_from_rgb (g, src, (int64_t) n, 3);
      g_free (src);
      src = g;
      ch = 1;
    }
  OftImage *out = oft_image_new (w, h, 1);
  if (!oft_canny (out->pixels, src, w, h, ch, params, error))
    {
      oft_image_free (out);
      out = NULL;
    }
  g_free (src);
  return out;
}
