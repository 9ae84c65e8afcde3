/* Subject images for training: listing a folder, and the DreamBooth transform (Resize of the
 * shorter side with PIL's antialiased BILINEAR filter, CenterCrop, optional horizontal flip,
 * ToTensor + Normalize(0.5, 0.5)), computed in float instead of PIL's 8-bit intermediates. */
#include "oft/train.h"
#include "oft/error.h"
#include <math.h>
#include <string.h>

static gboolean
is_image_name (const char *name)
{
  char *lower = g_ascii_strdown (name, -1);
  gboolean ok = g_str_has_suffix (lower, ".png") || g_str_has_suffix (lower, ".jpg") ||
                g_str_has_suffix (lower, ".jpeg");
  g_free (lower);
  return ok;
}

static int
cmp_path (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

GPtrArray *
oft_train_list_images (const char *dir, GError **error)
{
  GDir *d = g_dir_open (dir, 0, error);
  if (!d)
    return NULL;
  GPtrArray *list = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (d)))
    if (name[0] != '.' && is_image_name (name))
      {
        char *path = g_build_filename (dir, name, NULL);
        if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
          g_ptr_array_add (list, path);
        else
          g_free (path);
      }
  g_dir_close (d);
  g_ptr_array_sort (list, cmp_path);
  return list;
}

/* PIL's precompute_coeffs for the triangle filter (support 1): output i covers input around
 * (i + 0.5)·scale, the filter widened by scale when shrinking. first[i], and taps·out weights. */
static int
resize_coeffs (int in, int out, int **first_out, int **count_out, double **w_out)
{
  double scale = (double) in / out, fscale = MAX (scale, 1.0), support = fscale;
  int taps = (int) ceil (support) * 2 + 1;
  int *first = g_new (int, out), *count = g_new (int, out);
  double *w = g_new0 (double, (size_t) out * taps);
  for (int i = 0; i < out; i++)
    {
      double center = (i + 0.5) * scale, total = 0;
      int lo = MAX ((int) (center - support + 0.5), 0), hi = MIN ((int) (center + support + 0.5), in);
      int n = MIN (hi - lo, taps);
      for (int k = 0; k < n; k++)
        {
          double t = fabs ((k + lo - center + 0.5) / fscale);
          double v = t < 1.0 ? 1.0 - t : 0.0;
          w[(size_t) i * taps + k] = v;
          total += v;
        }
      for (int k = 0; k < n && total > 0; k++)
        w[(size_t) i * taps + k] /= total;
      first[i] = lo;
      count[i] = n;
    }
  *first_out = first;
  *count_out = count;
  *w_out = w;
  return taps;
}

/* Cover-resize (PIL's antialiased BILINEAR, in float) and centre crop to width×height, planar, scaled as
 * v·mul + add from [0, 255]. For a square output this is torchvision's Resize(shorter side) + CenterCrop. */
static void
resize_crop (float *out, const OftImage *src, int width, int height, bool flip, double mul, double add)
{
  OftImage *rgb = src->channels == 3 ? NULL : oft_image_convert (src, 3);
  const OftImage *img = rgb ? rgb : src;
  int W = img->width, H = img->height, ow, oh;
  /* torchvision Resize(int): the shorter side becomes `size`, the longer int(size·long/short);
   * for a rectangle, the side that needs the larger scale sets it */
  if ((double) width / W >= (double) height / H)
    ow = width, oh = (int) ((double) width * H / W);
  else
    oh = height, ow = (int) ((double) height * W / H);
  ow = MAX (ow, width);
  oh = MAX (oh, height);
  /* CenterCrop offsets: round((resized − size)/2), Python rounding (half to even) */
  int top = (int) nearbyint ((oh - height) / 2.0), left = (int) nearbyint ((ow - width) / 2.0);
  int *fx, *nx, *fy, *ny;
  double *wx, *wy;
  int tx = resize_coeffs (W, ow, &fx, &nx, &wx), ty = resize_coeffs (H, oh, &fy, &ny, &wy);
  /* horizontal pass over every input row, only for the cropped columns */
  float *tmp = g_new (float, (size_t) 3 * H * width);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < width; x++)
      {
        int ox = left + x;
        const uint8_t *row = img->pixels + (size_t) y * W * 3;
        for (int c = 0; c < 3; c++)
          {
            double acc = 0;
            for (int k = 0; k < nx[ox]; k++)
              acc += wx[(size_t) ox * tx + k] * row[(size_t) (fx[ox] + k) * 3 + c];
            tmp[((size_t) c * H + y) * width + x] = (float) acc;
          }
      }
  /* vertical pass for the cropped rows */
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < height; y++)
      {
        int oy = top + y;
        for (int x = 0; x < width; x++)
          {
            double acc = 0;
            for (int k = 0; k < ny[oy]; k++)
              acc += wy[(size_t) oy * ty + k] * tmp[((size_t) c * H + fy[oy] + k) * width + x];
            int xo = flip ? width - 1 - x : x;
            out[((size_t) c * height + y) * width + xo] = (float) (acc * mul + add);
          }
      }
  g_free (tmp);
  g_free (fx);
  g_free (nx);
  g_free (wx);
  g_free (fy);
  g_free (ny);
  g_free (wy);
  oft_image_free (rgb);
}

void
oft_train_preprocess (float *out, const OftImage *src, int size, bool flip)
{
  resize_crop (out, src, size, size, flip, 2.0 / 255.0, -1.0);
}

void
oft_image_to_planar (float *out, const OftImage *img, int width, int height)
{
  resize_crop (out, img, width, height, false, 1.0 / 255.0, 0.0);
}
