/* oft canny: the Canny edge condition of an image, as cv2.Canny (OpenCV 4.6) computes it. */
#include "oft-cli.h"
#include <stdio.h>

int
cmd_canny (int argc, char **argv)
{
  double low = 100, high = 200;
  int aperture = 3;
  gboolean l2 = FALSE, gray = FALSE, blur = FALSE;
  GOptionEntry entries[] = {
    { "low", 0, 0, G_OPTION_ARG_DOUBLE, &low, "Lower hysteresis threshold (default 100)", "L" },
    { "high", 0, 0, G_OPTION_ARG_DOUBLE, &high, "Upper hysteresis threshold (default 200)", "H" },
    { "aperture", 0, 0, G_OPTION_ARG_INT, &aperture, "Sobel aperture: 3, 5 or 7 (default 3)", "K" },
    { "l2", 0, 0, G_OPTION_ARG_NONE, &l2, "L2 gradient magnitude instead of |dx|+|dy|", NULL },
    { "gray", 0, 0, G_OPTION_ARG_NONE, &gray, "Convert to gray first (OpenCV's BGR2GRAY); default: all colour "
      "channels compete, as ControlNet's CannyDetector does", NULL },
    { "blur", 0, 0, G_OPTION_ARG_NONE, &blur, "Gaussian blur 5×5, σ = 1 first (cv2.GaussianBlur)", NULL },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("IN OUT - write the Canny edges of IN as a 0/255 gray PNG");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_summary (ctx, "Bit-exact with OpenCV 4.6's cv2.Canny(image, low, high, aperture, L2gradient). "
                                "Alpha is ignored.");
  GError *error = NULL;
  OftImage *img = NULL, *edges = NULL;
  int rc = 1;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if (argc != 3)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "expected IN and OUT (see oft canny --help)");
      goto out;
    }
  if (aperture != 3 && aperture != 5 && aperture != 7)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--aperture %d: expected 3, 5 or 7", aperture);
      goto out;
    }
  if (!(img = oft_image_load (argv[1], &error)))
    goto out;
  OftCannyParams p = { low, high, aperture, l2 };
  if (!(edges = oft_canny_image (img, &p, gray, blur, &error)))
    goto out;
  if (!oft_image_save_png (edges, argv[2], &error))
    goto out;
  size_t n = (size_t) edges->width * edges->height, count = 0;
  for (size_t i = 0; i < n; i++)
    count += edges->pixels[i] != 0;
  printf ("%s: %d×%d, %zu edge pixels (%.2f %%)\n", argv[2], edges->width, edges->height, count, 100.0 * count / n);
  rc = 0;
out:
  if (rc)
    cli_fail ("canny", error);
  g_clear_error (&error);
  oft_image_free (img);
  oft_image_free (edges);
  g_option_context_free (ctx);
  return rc;
}
