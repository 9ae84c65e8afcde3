/* oft faces: Haar-cascade face boxes as JSON. oft landmarks: dlib's 68 points of one face as JSON,
 * optionally rendered as the landmark condition image. */
#include "oft-cli.h"
#include <stdio.h>
#include <string.h>

static gboolean
parse_box (const char *s, OftFaceBox *box, GError **error)
{
  char *end;
  long v[4];
  const char *p = s;
  for (int i = 0; i < 4; i++)
    {
      v[i] = strtol (p, &end, 10);
      if (end == p || (i < 3 && *end != ',') || (i == 3 && *end) || v[i] < -(1L << 24) || v[i] > (1L << 24))
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--box \"%s\": expected X,Y,W,H integers", s);
          return FALSE;
        }
      p = end + 1;
    }
  if (v[2] < 1 || v[3] < 1)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--box \"%s\": width and height must be at least 1", s);
      return FALSE;
    }
  *box = (OftFaceBox) { (int) v[0], (int) v[1], (int) v[2], (int) v[3] };
  return TRUE;
}

/* The boxes of `img`, largest first; -1 on error. */
static int
detect (const OftImage *img, const char *cascade_path, const OftHaarParams *params, OftFaceBox **boxes,
        GError **error)
{
  OftHaarCascade *h = oft_haar_load (cascade_path, error);
  if (!h)
    return -1;
  uint8_t *gray = oft_faces_gray (img);
  int n = oft_haar_detect (h, gray, img->width, img->height, params, boxes, error);
  g_free (gray);
  oft_haar_free (h);
  return n;
}

int
cmd_faces (int argc, char **argv)
{
  char *cascade = NULL;
  int min_neighbors = 5, min_size = 30;
  double scale_factor = 1.1;
  GOptionEntry entries[] = {
    { "cascade", 'c', 0, G_OPTION_ARG_FILENAME, &cascade, "OpenCV cascade XML (default " OFT_HAAR_DEFAULT_CASCADE ")", "PATH" },
    { "scale-factor", 0, 0, G_OPTION_ARG_DOUBLE, &scale_factor, "Image pyramid step (default 1.1)", "F" },
    { "min-neighbors", 0, 0, G_OPTION_ARG_INT, &min_neighbors, "Raw hits a face needs, minus one (default 5)", "N" },
    { "min-size", 0, 0, G_OPTION_ARG_INT, &min_size, "Smallest face side in pixels (default 30)", "PX" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("IMAGE - print the Haar-cascade face boxes [[x,y,w,h],...] as JSON, "
                                              "largest first");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  OftImage *img = NULL;
  OftFaceBox *boxes = NULL;
  int rc = 1;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if (argc != 2)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "expected one IMAGE");
      goto out;
    }
  if (!(img = oft_image_load (argv[1], &error)))
    goto out;
  OftHaarParams params;
  oft_haar_params_init (&params);
  params.scale_factor = scale_factor;
  params.min_neighbors = min_neighbors;
  params.min_w = params.min_h = min_size;
  int n = detect (img, cascade, &params, &boxes, &error);
  if (n < 0)
    goto out;
  printf ("[");
  for (int i = 0; i < n; i++)
    printf ("%s[%d, %d, %d, %d]", i ? ", " : "", boxes[i].x, boxes[i].y, boxes[i].w, boxes[i].h);
  printf ("]\n");
  if (n == 0)
    fprintf (stderr, "oft faces: no face found in %s\n", argv[1]);
  rc = 0;
out:
  if (rc)
    cli_fail ("faces", error);
  g_clear_error (&error);
  g_free (boxes);
  oft_image_free (img);
  g_free (cascade);
  g_option_context_free (ctx);
  return rc;
}

static void
append_num (GString *s, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_string_append (s, g_ascii_formatd (buf, sizeof buf, "%.6f", v));
}

int
cmd_landmarks (int argc, char **argv)
{
  char *cascade = NULL, *predictor = NULL, *box_s = NULL, *json_out = NULL, *render_out = NULL;
  GOptionEntry entries[] = {
    { "box", 'b', 0, G_OPTION_ARG_STRING, &box_s, "Face box (default: the largest Haar-cascade face)", "X,Y,W,H" },
    { "json", 'o', 0, G_OPTION_ARG_FILENAME, &json_out, "Write {\"box\": [x,y,w,h], \"points\": [[x,y],...]} here", "OUT.json" },
    { "render", 'r', 0, G_OPTION_ARG_FILENAME, &render_out, "Also write the landmark condition image (white dots on black)", "OUT.png" },
    { "cascade", 'c', 0, G_OPTION_ARG_FILENAME, &cascade, "OpenCV cascade XML (default " OFT_HAAR_DEFAULT_CASCADE ")", "PATH" },
    { "predictor", 'p', 0, G_OPTION_ARG_FILENAME, &predictor, "dlib shape predictor (default " OFT_SHAPE_PREDICTOR_DEFAULT ")", "PATH" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("IMAGE - 68 face landmarks (dlib's shape predictor) of one face");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  OftImage *img = NULL, *cond = NULL;
  OftShapePredictor *sp = NULL;
  OftFaceBox *boxes = NULL;
  double *pts = NULL;
  GString *js = NULL;
  int rc = 1;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if (argc != 2 || !json_out)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "expected one IMAGE and --json OUT");
      goto out;
    }
  OftFaceBox box;
  if (box_s && !parse_box (box_s, &box, &error))
    goto out;
  /* the predictor first: a missing model file should not wait for the detector */
  if (!(sp = oft_shape_predictor_load (predictor, &error)))
    goto out;
  if (!(img = oft_image_load (argv[1], &error)))
    goto out;
  if (!box_s)
    {
      int n = detect (img, cascade, NULL, &boxes, &error);
      if (n < 0)
        goto out;
      if (n == 0)
        {
          g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND,
                       "no face found in %s by the Haar cascade; give one with --box X,Y,W,H", argv[1]);
          goto out;
        }
      box = boxes[0];
    }
  int np = oft_shape_predictor_num_parts (sp);
  pts = g_new (double, 2 * np);
  if (!oft_shape_predict (sp, img, box, pts, NULL, &error))
    goto out;
  js = g_string_new (NULL);
  g_string_append_printf (js, "{\"box\": [%d, %d, %d, %d], \"points\": [", box.x, box.y, box.w, box.h);
  for (int i = 0; i < np; i++)
    {
      g_string_append (js, i ? ", [" : "[");
      append_num (js, pts[2 * i]);
      g_string_append (js, ", ");
      append_num (js, pts[2 * i + 1]);
      g_string_append (js, "]");
    }
  g_string_append (js, "]}\n");
  if (!oft_file_write_atomic (json_out, js->str, js->len, &error))
    goto out;
  if (render_out)
    {
      cond = oft_landmarks_render (pts, np, img->width, img->height);
      if (!oft_image_save_png (cond, render_out, &error))
        goto out;
    }
  rc = 0;
out:
  if (rc)
    cli_fail ("landmarks", error);
  g_clear_error (&error);
  if (js)
    g_string_free (js, TRUE);
  g_free (pts);
  g_free (boxes);
  oft_shape_predictor_free (sp);
  oft_image_free (img);
  oft_image_free (cond);
  g_free (cascade);
  g_free (predictor);
  g_free (box_s);
  g_free (json_out);
  g_free (render_out);
  g_option_context_free (ctx);
  return rc;
}
