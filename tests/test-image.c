/* Image files: PNG round trips for every channel count, JPEG decoding, bad files. */
#include "test-common.h"
#include <stdio.h>
#include <jpeglib.h>
#include <string.h>
#include <glib/gstdio.h>

static void
test_png_roundtrip (void)
{
  char *dir = g_dir_make_tmp ("oft-img-XXXXXX", NULL);
  for (int ch = 1; ch <= 4; ch++)
    {
      OftImage *img = oft_image_new (37, 21, ch);
      for (size_t i = 0; i < (size_t) 37 * 21 * ch; i++)
        img->pixels[i] = (uint8_t) (i * 7 + ch);
      char *path = g_strdup_printf ("%s/c%d.png", dir, ch);
      GError *error = NULL;
      g_assert_true (oft_image_save_png (img, path, &error));
      OftImage *back = oft_image_load (path, &error);
      g_assert_no_error (error);
      g_assert_cmpint (back->width, ==, 37);
      g_assert_cmpint (back->height, ==, 21);
      g_assert_cmpint (back->channels, ==, ch);
      g_assert_cmpmem (back->pixels, 37 * 21 * ch, img->pixels, 37 * 21 * ch);
      g_remove (path);
      g_free (path);
      oft_image_free (img);
      oft_image_free (back);
    }
  g_rmdir (dir);
  g_free (dir);
}

static void
test_golden_png (void)
{
  char *path = test_golden_path ("conditions/images/astronaut.png");
  GError *error = NULL;
  OftImage *img = oft_image_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (img->channels, ==, 3);
  g_assert_cmpint (img->width, >, 100);
  OftImage *g = oft_image_convert (img, 1), *rgb = oft_image_convert (g, 3);
  g_assert_cmpint (g->channels, ==, 1);
  g_assert_cmpint (rgb->pixels[3], ==, g->pixels[1]);
  g_assert_cmpint (rgb->pixels[5], ==, g->pixels[1]);
  oft_image_free (img);
  oft_image_free (g);
  oft_image_free (rgb);
  g_free (path);
}

/* A JPEG written by libjpeg here, decoded by the loader: JPEG is lossy, so a smooth gradient at
 * quality 95 must come back within a few levels. */
static void
test_jpeg (void)
{
  char *dir = g_dir_make_tmp ("oft-img-XXXXXX", NULL);
  char *path = g_build_filename (dir, "g.jpg", NULL);
  const int W = 64, H = 48;
  uint8_t *rgb = g_new (uint8_t, W * H * 3);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      {
        rgb[(y * W + x) * 3 + 0] = (uint8_t) (x * 4);
        rgb[(y * W + x) * 3 + 1] = (uint8_t) (y * 5);
        rgb[(y * W + x) * 3 + 2] = 128;
      }
  FILE *f = fopen (path, "wb");
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr err;
  c.err = jpeg_std_error (&err);
  jpeg_create_compress (&c);
  jpeg_stdio_dest (&c, f);
  c.image_width = W;
  c.image_height = H;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults (&c);
  jpeg_set_quality (&c, 95, TRUE);
  jpeg_start_compress (&c, TRUE);
  while (c.next_scanline < c.image_height)
    {
      JSAMPROW row = rgb + c.next_scanline * W * 3;
      jpeg_write_scanlines (&c, &row, 1);
    }
  jpeg_finish_compress (&c);
  jpeg_destroy_compress (&c);
  fclose (f);
  GError *error = NULL;
  OftImage *img = oft_image_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (img->width, ==, W);
  g_assert_cmpint (img->height, ==, H);
  g_assert_cmpint (img->channels, ==, 3);
  int worst = 0;
  for (int i = 0; i < W * H * 3; i++)
    worst = MAX (worst, abs ((int) img->pixels[i] - (int) rgb[i]));
  g_test_message ("JPEG q95 worst error %d levels", worst);
  g_assert_cmpint (worst, <=, 8);
  oft_image_free (img);
  /* a truncated JPEG fails cleanly */
  char *data;
  gsize len;
  g_file_get_contents (path, &data, &len, NULL);
  g_file_set_contents (path, data, (gssize) len / 3, NULL);
  g_assert_null (oft_image_load (path, &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT);
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);
  /* not an image at all */
  g_file_set_contents (path, "hello", 5, NULL);
  g_assert_null (oft_image_load (path, &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID);
  g_clear_error (&error);
  g_file_set_contents (path, data, 20, NULL);
  g_assert_null (oft_image_load (path, &error));
  g_assert_nonnull (strstr (error->message, "JPEG"));
  g_clear_error (&error);
  g_assert_null (oft_image_load ("/nonexistent.png", &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_free (data);
  g_remove (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
  g_free (rgb);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/image/png-roundtrip", test_png_roundtrip);
  g_test_add_func ("/image/golden-png", test_golden_png);
  g_test_add_func ("/image/jpeg", test_jpeg);
  return g_test_run ();
}
