/* oft eval landmarks A B: OFT's landmark error (mean Euclidean distance over the points, pixels)
 * between two landmark JSON files, or between same-named *.json files of two folders (then the
 * mean over the pairs, as eval_landmark.py). */
#include "oft-cli.h"
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

#define MAX_POINTS 100000

/* {"points": [[x,y],...]} as `oft landmarks` writes, or a bare [[x,y],...]. */
static double *
load_points (const char *path, int *npoints, GError **error)
{
  JsonParser *p = json_parser_new ();
  double *pts = NULL;
  if (!json_parser_load_from_file (p, path, error))
    {
      g_prefix_error (error, "%s: ", path);
      goto out;
    }
  JsonNode *root = json_parser_get_root (p), *pn = root;
  if (root && JSON_NODE_HOLDS_OBJECT (root))
    pn = json_object_get_member (json_node_get_object (root), "points");
  if (!pn || !JSON_NODE_HOLDS_ARRAY (pn))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: expected \"points\": [[x, y], ...]", path);
      goto out;
    }
  JsonArray *a = json_node_get_array (pn);
  guint n = json_array_get_length (a);
  if (n == 0 || n > MAX_POINTS)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: \"points\" has %u entries, expected 1..%d", path, n,
                   MAX_POINTS);
      goto out;
    }
  pts = g_new (double, 2 * (size_t) n);
  for (guint i = 0; i < n; i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      JsonArray *xy = JSON_NODE_HOLDS_ARRAY (e) ? json_node_get_array (e) : NULL;
      gboolean ok = xy && json_array_get_length (xy) == 2;
      for (guint k = 0; ok && k < 2; k++)
        {
          JsonNode *v = json_array_get_element (xy, k);
          GType t = JSON_NODE_HOLDS_VALUE (v) ? json_node_get_value_type (v) : G_TYPE_INVALID;
          ok = t == G_TYPE_INT64 || t == G_TYPE_DOUBLE;
          if (ok)
            pts[2 * i + k] = json_node_get_double (v);
        }
      if (!ok)
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: point %u is not a pair of numbers", path, i);
          g_clear_pointer (&pts, g_free);
          goto out;
        }
    }
  *npoints = (int) n;
out:
  g_object_unref (p);
  return pts;
}

static gboolean
pair_error (const char *a, const char *b, double *err, GError **error)
{
  int na = 0, nb = 0;
  double *pa = load_points (a, &na, error), *pb = pa ? load_points (b, &nb, error) : NULL;
  gboolean ok = pa && pb;
  if (ok && na != nb)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "%s has %d points, %s has %d", a, na, b, nb);
      ok = FALSE;
    }
  if (ok)
    *err = oft_landmark_error (pa, pb, na);
  g_free (pa);
  g_free (pb);
  return ok;
}

static int
cmp_str (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

int
cmd_eval_landmarks (int argc, char **argv)
{
  GOptionContext *ctx = g_option_context_new ("A B - mean landmark error in pixels between two landmark JSON "
                                              "files, or between same-named *.json of two folders");
  GError *error = NULL;
  GPtrArray *names = NULL;
  int rc = 1;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if (argc != 3)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "expected A B (two JSON files or two folders)");
      goto out;
    }
  gboolean da = g_file_test (argv[1], G_FILE_TEST_IS_DIR), db = g_file_test (argv[2], G_FILE_TEST_IS_DIR);
  if (da != db)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s and %s must both be files or both folders",
                   argv[1], argv[2]);
      goto out;
    }
  if (!da)
    {
      double e;
      if (!pair_error (argv[1], argv[2], &e, &error))
        goto out;
      printf ("%.10g\n", e);
      rc = 0;
      goto out;
    }
  GDir *dir = g_dir_open (argv[1], 0, &error);
  if (!dir)
    goto out;
  names = g_ptr_array_new_with_free_func (g_free);
  for (const char *n; (n = g_dir_read_name (dir));)
    if (g_str_has_suffix (n, ".json"))
      g_ptr_array_add (names, g_strdup (n));
  g_dir_close (dir);
  if (names->len == 0)
    {
      g_set_error (&error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: no *.json files", argv[1]);
      goto out;
    }
  g_ptr_array_sort (names, cmp_str);
  double sum = 0;
  for (guint i = 0; i < names->len; i++)
    {
      char *a = g_build_filename (argv[1], names->pdata[i], NULL), *b = g_build_filename (argv[2], names->pdata[i], NULL);
      double e = 0;
      gboolean ok = g_file_test (b, G_FILE_TEST_EXISTS);
      if (!ok)
        g_set_error (&error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s has no counterpart %s", a, b);
      else
        ok = pair_error (a, b, &e, &error);
      g_free (a);
      g_free (b);
      if (!ok)
        goto out;
      printf ("%s %.10g\n", (char *) names->pdata[i], e);
      sum += e;
    }
  printf ("mean %.10g\n", sum / names->len);
  rc = 0;
out:
  if (rc)
    cli_fail ("eval landmarks", error);
  g_clear_error (&error);
  if (names)
    g_ptr_array_free (names, TRUE);
  g_option_context_free (ctx);
  return rc;
}
