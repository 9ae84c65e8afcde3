/* oft segmap: snap a painted segmentation layer to the ADE20K palette (the colours ControlNet's seg
 * model was trained on), with an index map and a legend of the classes used. */
#include "oft-cli.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

int
cmd_segmap (int argc, char **argv)
{
  char *index_path = NULL, *legend_path = NULL, *palette_path = NULL;
  gboolean strict = FALSE, legend_all = FALSE;
  double tolerance = 10;
  int scale = 2;
  GOptionEntry entries[] = {
    { "index", 0, 0, G_OPTION_ARG_FILENAME, &index_path, "Also write the class index map (gray PNG, value = class, "
      "255 = transparent)", "OUT" },
    { "legend", 0, 0, G_OPTION_ARG_FILENAME, &legend_path, "Also write a legend PNG of the classes used", "OUT" },
    { "legend-all", 0, 0, G_OPTION_ARG_NONE, &legend_all, "Legend of every palette class instead", NULL },
    { "legend-scale", 0, 0, G_OPTION_ARG_INT, &scale, "Legend text size, 1..8 (default 2)", "S" },
    { "strict", 0, 0, G_OPTION_ARG_NONE, &strict, "Fail if any pixel is farther than --tolerance from every "
      "palette colour (default: snap it and warn)", NULL },
    { "tolerance", 0, 0, G_OPTION_ARG_DOUBLE, &tolerance, "RGB distance counted as 'on the palette' (default 10)", "T" },
    { "palette", 0, 0, G_OPTION_ARG_FILENAME, &palette_path, "Palette JSON (default: the bundled ADE20K "
      "ade20k-palette.json)", "FILE" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("IN OUT - snap a painted segmentation map to the ADE20K palette");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_summary (ctx, "Every pixel takes the nearest palette colour (squared RGB distance, ties to the "
                                "lowest class index); fully transparent pixels become black in OUT and 255 in the "
                                "index map. Pixels farther than --tolerance from every palette colour (strokes in "
                                "a non-palette colour, wide blends) are reported.");
  GError *error = NULL;
  OftImage *img = NULL, *out_img = NULL, *index_img = NULL, *legend = NULL;
  OftPalette *pal = NULL;
  uint32_t *dist2 = NULL;
  int rc = 1;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if (argc != 3)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "expected IN and OUT (see oft segmap --help)");
      goto out;
    }
  if (!(tolerance >= 0) || scale < 1 || scale > 8)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--tolerance %g / --legend-scale %d: expected a "
                   "tolerance ≥ 0 and a scale of 1..8", tolerance, scale);
      goto out;
    }
  if (!(pal = palette_path ? oft_palette_load (palette_path, &error) : oft_palette_load_ade20k (&error)))
    goto out;
  if (!(img = oft_image_load (argv[1], &error)))
    goto out;
  if (img->channels < 3)
    {
      g_set_error (&error, OFT_IO_ERROR, OFT_ERROR_INVALID, "%s: a gray image: expected a colour (RGB or RGBA) "
                   "painted map", argv[1]);
      goto out;
    }
  int64_t n = (int64_t) img->width * img->height;
  index_img = oft_image_new (img->width, img->height, 1);
  dist2 = g_new (uint32_t, n);
  oft_segmap_quantize (index_img->pixels, dist2, img->pixels, n, img->channels, pal);

  /* off-palette report: pixels farther than the tolerance, and the worst one */
  int64_t far = 0, worst = -1, transparent = 0;
  double tol2 = tolerance * tolerance;
  for (int64_t i = 0; i < n; i++)
    {
      transparent += index_img->pixels[i] == OFT_SEG_IGNORE;
      if (dist2[i] > tol2)
        {
          far++;
          if (worst < 0 || dist2[i] > dist2[worst])
            worst = i;
        }
    }
  if (far)
    {
      const uint8_t *p = img->pixels + worst * img->channels;
      int k = index_img->pixels[worst];
      fprintf (stderr, "oft segmap: %s%s: %" G_GINT64_FORMAT " pixels (%.2f %%) are farther than %g from every "
               "palette colour; the farthest, at x=%" G_GINT64_FORMAT " y=%" G_GINT64_FORMAT ", is (%d,%d,%d), "
               "%.1f from class %d '%s' (%d,%d,%d)%s\n", strict ? "" : "warning: ", argv[1], far,
               100.0 * far / n, tolerance, worst % img->width, worst / img->width, p[0], p[1], p[2],
               sqrt ((double) dist2[worst]), k, pal->names[k], pal->rgb[k * 3], pal->rgb[k * 3 + 1],
               pal->rgb[k * 3 + 2], strict ? "" : "; snapped to the nearest colour");
      if (strict)
        {
          rc = 1;
          goto out_quiet;
        }
    }

  out_img = oft_image_new (img->width, img->height, 3);
  oft_segmap_colorize (out_img->pixels, index_img->pixels, n, pal);
  if (!oft_image_save_png (out_img, argv[2], &error))
    goto out;
  if (index_path && !oft_image_save_png (index_img, index_path, &error))
    goto out;

  int64_t *count = g_new0 (int64_t, pal->n);
  for (int64_t i = 0; i < n; i++)
    if (index_img->pixels[i] < pal->n)
      count[index_img->pixels[i]]++;
  int *used = g_new (int, pal->n), nused = 0;
  for (int k = 0; k < pal->n; k++)
    if (count[k] || legend_all)
      used[nused++] = k;
  printf ("%s: %d×%d, %d classes\n", argv[2], img->width, img->height, nused);
  for (int i = 0; i < nused; i++)
    if (count[used[i]])
      printf ("  %3d %-20s %8" G_GINT64_FORMAT " px  %6.2f %%\n", used[i], pal->names[used[i]], count[used[i]],
              100.0 * count[used[i]] / n);
  if (transparent)
    printf ("  transparent          %8" G_GINT64_FORMAT " px  %6.2f %%\n", transparent, 100.0 * transparent / n);
  gboolean ok = TRUE;
  if (legend_path)
    {
      if (nused == 0)
        g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: no classes to list in the legend (the image "
                     "is fully transparent)", argv[1]);
      ok = nused > 0 && (legend = oft_segmap_legend (pal, used, nused, scale, &error)) != NULL
           && oft_image_save_png (legend, legend_path, &error);
    }
  g_free (count);
  g_free (used);
  if (!ok)
    goto out;
  rc = 0;
out:
  if (rc)
    cli_fail ("segmap", error);
out_quiet:
  g_clear_error (&error);
  oft_image_free (img);
  oft_image_free (out_img);
  oft_image_free (index_img);
  oft_image_free (legend);
  oft_palette_free (pal);
  g_free (dist2);
  g_free (index_path);
  g_free (legend_path);
  g_free (palette_path);
  g_option_context_free (ctx);
  return rc;
}
