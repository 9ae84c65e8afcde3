/* Legend image for segmentation maps: colour swatches with "index name" beside them, so an artist
 * can keep the class colours next to the canvas. Drawn with the built-in 5×7 font. */
#include "oft/conditions.h"
#include "oft/error.h"
#include <string.h>

enum { LEGEND_ROWS_PER_COLUMN = 40 };

OftImage *
oft_segmap_legend (const OftPalette *pal, const int *classes, int n, int scale, GError **error)
{
  if (n < 1 || n > 4 * pal->n || scale < 1 || scale > 8)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "legend: %d classes at scale %d: expected 1..%d "
                   "classes and a scale of 1..8", n, scale, 4 * pal->n);
      return NULL;
    }
  for (int i = 0; i < n; i++)
    if (classes[i] < 0 || classes[i] >= pal->n)
      {
        g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "legend: class %d is not in the palette (0..%d)",
                     classes[i], pal->n - 1);
        return NULL;
      }
  const int s = scale, margin = 4 * s, pitch = 10 * s, sw_w = 12 * s, sw_h = 8 * s, text_dx = 15 * s;
  char **labels = g_new0 (char *, n + 1);
  int text_w = 0;
  for (int i = 0; i < n; i++)
    {
      labels[i] = g_strdup_printf ("%3d %s", classes[i], pal->names[classes[i]]);
      text_w = MAX (text_w, oft_font_text_width (labels[i], s));
    }
  int rows = MIN (n, LEGEND_ROWS_PER_COLUMN), cols = (n + LEGEND_ROWS_PER_COLUMN - 1) / LEGEND_ROWS_PER_COLUMN;
  int col_w = text_dx + text_w + 2 * margin;
  OftImage *img = oft_image_new (margin + cols * col_w - margin, 2 * margin + rows * pitch - (pitch - sw_h), 3);
  memset (img->pixels, 255, (size_t) img->width * img->height * 3);
  static const uint8_t ink[3] = { 0, 0, 0 }, frame[3] = { 64, 64, 64 };
  int border = MAX (1, s / 2);
  for (int i = 0; i < n; i++)
    {
      int x0 = margin + (i / LEGEND_ROWS_PER_COLUMN) * col_w, y0 = margin + (i % LEGEND_ROWS_PER_COLUMN) * pitch;
      const uint8_t *colour = pal->rgb + classes[i] * 3;
      for (int y = y0; y < y0 + sw_h; y++)
        for (int x = x0; x < x0 + sw_w; x++)
          {
            gboolean edge = x < x0 + border || x >= x0 + sw_w - border || y < y0 + border || y >= y0 + sw_h - border;
            memcpy (img->pixels + ((size_t) y * img->width + x) * 3, edge ? frame : colour, 3);
          }
      oft_font_draw (img, x0 + text_dx, y0 + s / 2, labels[i], s, ink);
    }
  g_strfreev (labels);
  return img;
}
