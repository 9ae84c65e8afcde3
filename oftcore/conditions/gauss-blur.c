/* cv2.GaussianBlur on 8-bit images, bit-exact with OpenCV 4.x's fixed-point path: the normalised
 * Gaussian is rounded to Q8 taps by error diffusion over the left half (the centre takes what is left
 * so the taps sum to exactly 256), rows and columns are filtered in exact integers (Q8 then Q16) and
 * the result is rounded once, half up. Border: BORDER_REFLECT_101 (…, 2, 1 | 0, 1, 2, …). */
#include "oft/conditions.h"
#include "oft/error.h"
#include <math.h>

void
oft_gauss_kernel_q8 (int *kernel, int ksize, double sigma)
{
  /* OpenCV evaluates exp(x²·(-1/8σ²)) at doubled offsets x = 1-n, 3-n, …, i.e. exp(-d²/2σ²). */
  int half = ksize / 2;
  double scale2 = -0.125 / (sigma * sigma), sum = 0, values[16];
  for (int i = 0, x = 1 - ksize; i < half; i++, x += 2)
    {
      values[i] = exp ((double) (x * x) * scale2);
      sum += values[i];
    }
  sum = sum * 2 + 1;
  double mul = 1 / sum, err = 0;
  int taken = 0;
  for (int i = 0; i < half; i++)
    {
      double adj = values[i] * mul * 256 + err;
      int v = (int) lrint (adj);  /* cvRound: nearest, ties to even */
      err = adj - v;
      kernel[i] = kernel[ksize - 1 - i] = v;
      taken += v;
    }
  kernel[half] = 256 - 2 * taken;
}

static inline int
reflect101 (int i, int n)
{
  if (n == 1)
    return 0;
  while (i < 0 || i >= n)
    i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

gboolean
oft_gauss_blur (uint8_t *out, const uint8_t *in, int width, int height, int channels, int ksize, double sigma,
                GError **error)
{
  if (ksize < 1 || ksize > 31 || ksize % 2 == 0 || !(sigma > 0) || width < 1 || height < 1 || channels < 1)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                   "Gaussian blur: kernel size %d (want odd 1..31), sigma %g (want > 0), image %d×%d×%d",
                   ksize, sigma, width, height, channels);
      return FALSE;
    }
  int k[31], r = ksize / 2;
  oft_gauss_kernel_q8 (k, ksize, sigma);
  int rowlen = width * channels;
  /* rows pass into Q8 (≤ 255·256, fits uint16 as in OpenCV) */
  uint32_t *tmp = g_new (uint32_t, (size_t) rowlen * height);
  int *xoff = g_new (int, (size_t) width * ksize);
  for (int x = 0; x < width; x++)
    for (int j = 0; j < ksize; j++)
      xoff[x * ksize + j] = reflect101 (x + j - r, width) * channels;
  for (int y = 0; y < height; y++)
    {
      const uint8_t *src = in + (size_t) y * rowlen;
      uint32_t *dst = tmp + (size_t) y * rowlen;
      for (int x = 0; x < width; x++)
        for (int c = 0; c < channels; c++)
          {
            uint32_t s = 0;
            for (int j = 0; j < ksize; j++)
              s += (uint32_t) k[j] * src[xoff[x * ksize + j] + c];
            dst[x * channels + c] = s;
          }
    }
  /* columns pass into Q16, rounded half up to 8 bits */
  for (int y = 0; y < height; y++)
    {
      const uint32_t *rows[31];
      for (int i = 0; i < ksize; i++)
        rows[i] = tmp + (size_t) reflect101 (y + i - r, height) * rowlen;
      uint8_t *dst = out + (size_t) y * rowlen;
      for (int x = 0; x < rowlen; x++)
        {
          uint32_t s = 0;
          for (int i = 0; i < ksize; i++)
            s += (uint32_t) k[i] * rows[i][x];
          uint32_t v = (s + (1u << 15)) >> 16;
          dst[x] = (uint8_t) (v > 255 ? 255 : v);
        }
    }
  g_free (xoff);
  g_free (tmp);
  return TRUE;
}
