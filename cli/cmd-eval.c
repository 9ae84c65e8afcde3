/* oft eval: the metrics the OFT paper reports for controllable generation, on files or folders of
 * same-named PNGs. JSON on stdout, one human-readable line on stderr. Subcommands in `evals`. */
#include "oft-cli.h"
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *summary;
} EvalCommand;

static int eval_canny (int argc, char **argv);
static int eval_segmentation (int argc, char **argv);

static const EvalCommand evals[] = {
  { "canny", eval_canny, "IoU and F1 of edge maps (OFT eval_canny.py)" },
  { "segmentation", eval_segmentation, "mIoU, mAcc, aAcc of class index maps (mmseg)" },
  { "landmarks", cmd_eval_landmarks, "mean L2 error of 68-point landmark JSON files (OFT eval_landmark.py)" },
  { "energy", cmd_eval_energy, "hyperspherical energy per UNet layer, before and after an adapter" },
};

/* ---- shared helpers ------------------------------------------------------------------------------- */

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* (pred, target) paths: two files, or two folders paired by PNG file name. */
static gboolean
collect_pairs (const char *a, const char *b, GPtrArray *pa, GPtrArray *pb, GError **error)
{
  gboolean da = g_file_test (a, G_FILE_TEST_IS_DIR), db = g_file_test (b, G_FILE_TEST_IS_DIR);
  if (!da && !db)
    {
      g_ptr_array_add (pa, g_strdup (a));
      g_ptr_array_add (pb, g_strdup (b));
      return TRUE;
    }
  if (da != db)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, "%s is a folder but %s is not: give two files or two "
                   "folders of same-named PNGs", da ? a : b, da ? b : a);
      return FALSE;
    }
  GDir *dir = g_dir_open (a, 0, error);
  if (!dir)
    return FALSE;
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (dir)))
    if (g_str_has_suffix (name, ".png") || g_str_has_suffix (name, ".PNG"))
      g_ptr_array_add (names, g_strdup (name));
  g_dir_close (dir);
  g_ptr_array_sort (names, compare_names);
  gboolean ok = names->len > 0;
  if (!ok)
    g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: no .png files", a);
  for (guint i = 0; ok && i < names->len; i++)
    {
      char *pb_path = g_build_filename (b, names->pdata[i], NULL);
      if (!g_file_test (pb_path, G_FILE_TEST_IS_REGULAR))
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s has no %s to pair with %s/%s", b,
                       (char *) names->pdata[i], a, (char *) names->pdata[i]);
          g_free (pb_path);
          ok = FALSE;
          break;
        }
      g_ptr_array_add (pa, g_build_filename (a, names->pdata[i], NULL));
      g_ptr_array_add (pb, pb_path);
    }
  g_ptr_array_unref (names);
  return ok;
}

static void
add_number (JsonBuilder *jb, const char *name, double v)
{
  json_builder_set_member_name (jb, name);
  if (isnan (v))
    json_builder_add_null_value (jb);  /* 0/0: JSON has no NaN */
  else
    json_builder_add_double_value (jb, v);
}

static void
print_json (JsonBuilder *jb)
{
  JsonNode *root = json_builder_get_root (jb);
  JsonGenerator *gen = json_generator_new ();
  json_generator_set_pretty (gen, TRUE);
  json_generator_set_root (gen, root);
  char *text = json_generator_to_data (gen, NULL);
  printf ("%s\n", text);
  g_free (text);
  g_object_unref (gen);
  json_node_unref (root);
}

static gboolean
same_size (const OftImage *x, const char *px, const OftImage *y, const char *py, GError **error)
{
  if (x->width == y->width && x->height == y->height)
    return TRUE;
  g_set_error (error, OFT_IO_ERROR, OFT_ERROR_SHAPE, "%s is %d×%d but %s is %d×%d: maps must have the same size",
               px, x->width, x->height, py, y->width, y->height);
  return FALSE;
}

/* ---- canny ------------------------------------------------------------------------------------------ */

/* An edge map as 0/1 per pixel: any colour channel > 0 (alpha ignored). */
static uint8_t *
binarize (const OftImage *img)
{
  size_t n = (size_t) img->width * img->height;
  int colour = img->channels >= 3 ? 3 : 1;
  uint8_t *b = g_new (uint8_t, n);
  for (size_t i = 0; i < n; i++)
    {
      const uint8_t *p = img->pixels + i * img->channels;
      b[i] = 0;
      for (int c = 0; c < colour; c++)
        b[i] |= p[c] > 0;
    }
  return b;
}

static int
eval_canny (int argc, char **argv)
{
  gboolean detect = FALSE;
  GOptionEntry entries[] = {
    { "detect", 0, 0, G_OPTION_ARG_NONE, &detect, "PRED are images, not edge maps: take their Canny edges first "
      "(100, 200, on the RGB array, as OFT's eval_canny.py)", NULL },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("PRED TARGET - IoU and F1 of edge maps (files or folders)");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_summary (ctx, "Edge pixels are those > 0. Per pair: IoU = TP/|P∪T|, F1 = 2TP/(2TP+FP+FN), "
                                "accuracy = share of agreeing pixels; folders pair same-named PNGs and the score is "
                                "the mean over pairs (NaN, printed as null, when a pair has no edges at all).");
  GError *error = NULL;
  GPtrArray *pa = g_ptr_array_new_with_free_func (g_free), *pb = g_ptr_array_new_with_free_func (g_free);
  JsonBuilder *jb = json_builder_new ();
  int rc = 1;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if (argc != 3)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "expected PRED and TARGET (see oft eval canny --help)");
      goto out;
    }
  if (!collect_pairs (argv[1], argv[2], pa, pb, &error))
    goto out;
  double sum[3] = { 0 };
  int nan_pairs = 0;
  json_builder_begin_object (jb);
  json_builder_set_member_name (jb, "metric");
  json_builder_add_string_value (jb, "canny");
  json_builder_set_member_name (jb, "per_pair");
  json_builder_begin_array (jb);
  for (guint i = 0; i < pa->len; i++)
    {
      OftImage *x = oft_image_load (pa->pdata[i], &error), *y = x ? oft_image_load (pb->pdata[i], &error) : NULL;
      gboolean ok = y && same_size (x, pa->pdata[i], y, pb->pdata[i], &error);
      if (ok && detect)
        {
          OftCannyParams p = OFT_CANNY_PARAMS_DEFAULT;
          OftImage *e = oft_canny_image (x, &p, FALSE, FALSE, &error);
          oft_image_free (x);
          x = e;
          ok = e != NULL;
        }
      if (!ok)
        {
          oft_image_free (x);
          oft_image_free (y);
          goto out;
        }
      uint8_t *bx = binarize (x), *by = binarize (y);
      OftEdgeMetrics m;
      oft_metrics_edges (&m, bx, by, (int64_t) x->width * x->height);
      json_builder_begin_object (jb);
      json_builder_set_member_name (jb, "pred");
      json_builder_add_string_value (jb, pa->pdata[i]);
      json_builder_set_member_name (jb, "target");
      json_builder_add_string_value (jb, pb->pdata[i]);
      add_number (jb, "iou", m.iou);
      add_number (jb, "f1", m.f1);
      add_number (jb, "accuracy", m.accuracy);
      json_builder_end_object (jb);
      sum[0] += m.iou;
      sum[1] += m.f1;
      sum[2] += m.accuracy;
      nan_pairs += isnan (m.iou);
      g_free (bx);
      g_free (by);
      oft_image_free (x);
      oft_image_free (y);
    }
  json_builder_end_array (jb);
  int np = (int) pa->len;
  json_builder_set_member_name (jb, "pairs");
  json_builder_add_int_value (jb, np);
  json_builder_set_member_name (jb, "pairs_without_edges");
  json_builder_add_int_value (jb, nan_pairs);
  add_number (jb, "iou", sum[0] / np);
  add_number (jb, "f1", sum[1] / np);
  add_number (jb, "accuracy", sum[2] / np);
  json_builder_end_object (jb);
  print_json (jb);
  fprintf (stderr, "canny: IoU %.4f  F1 %.4f  accuracy %.4f  (mean over %d pair%s%s)\n", sum[0] / np, sum[1] / np,
           sum[2] / np, np, np == 1 ? "" : "s", nan_pairs ? "; some have no edges at all, so IoU/F1 are NaN" : "");
  rc = 0;
out:
  if (rc)
    cli_fail ("eval canny", error);
  g_clear_error (&error);
  g_object_unref (jb);
  g_ptr_array_unref (pa);
  g_ptr_array_unref (pb);
  g_option_context_free (ctx);
  return rc;
}

/* ---- segmentation ----------------------------------------------------------------------------------- */

/* A class index map: one channel (or R=G=B), values < num_classes or `allowed` (255 = ignore). */
static uint8_t *
index_map (const OftImage *img, const char *path, int num_classes, GError **error)
{
  size_t n = (size_t) img->width * img->height;
  int colour = img->channels >= 3 ? 3 : 1;
  uint8_t *v = g_new (uint8_t, n);
  for (size_t i = 0; i < n; i++)
    {
      const uint8_t *p = img->pixels + i * img->channels;
      if (colour == 3 && (p[0] != p[1] || p[1] != p[2]))
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, "%s: pixel x=%zu y=%zu is (%d,%d,%d): expected a gray "
                       "class index map, not a colour map (oft segmap IN OUT --index INDEX.png makes one)", path,
                       i % img->width, i / img->width, p[0], p[1], p[2]);
          g_free (v);
          return NULL;
        }
      v[i] = p[0];
      if (v[i] >= num_classes && v[i] != OFT_SEG_IGNORE)
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, "%s: pixel x=%zu y=%zu holds %d: expected a class "
                       "index 0..%d or 255 (ignore)", path, i % img->width, i / img->width, v[i], num_classes - 1);
          g_free (v);
          return NULL;
        }
    }
  return v;
}

static int
eval_segmentation (int argc, char **argv)
{
  GOptionContext *ctx = g_option_context_new ("PRED GT - mIoU, mAcc and aAcc of class index maps (files or folders)");
  g_option_context_set_summary (ctx,
    "Index maps are gray PNGs holding ADE20K class indices 0..149 (mmseg's numbering; 255 = ignore in GT). Areas "
    "are pooled over all pairs as mmseg does. gimp-oft ships no segmenter (none is packaged for Debian): PRED comes "
    "from elsewhere, e.g. UniFormer/mmseg run on the generated images.");
  GError *error = NULL;
  GPtrArray *pa = g_ptr_array_new_with_free_func (g_free), *pb = g_ptr_array_new_with_free_func (g_free);
  JsonBuilder *jb = json_builder_new ();
  OftPalette *pal = NULL;
  OftSegAreas *areas = NULL;
  const int num_classes = 150;
  int rc = 1;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if (argc != 3)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "expected PRED and GT (see oft eval segmentation --help)");
      goto out;
    }
  if (!collect_pairs (argv[1], argv[2], pa, pb, &error))
    goto out;
  areas = oft_seg_areas_new (num_classes);
  for (guint i = 0; i < pa->len; i++)
    {
      OftImage *x = oft_image_load (pa->pdata[i], &error), *y = x ? oft_image_load (pb->pdata[i], &error) : NULL;
      uint8_t *vx = NULL, *vy = NULL;
      gboolean ok = y && same_size (x, pa->pdata[i], y, pb->pdata[i], &error)
                    && (vx = index_map (x, pa->pdata[i], num_classes, &error))
                    && (vy = index_map (y, pb->pdata[i], num_classes, &error));
      if (ok)
        oft_seg_areas_add (areas, vx, vy, (int64_t) x->width * x->height, OFT_SEG_IGNORE);
      g_free (vx);
      g_free (vy);
      oft_image_free (x);
      oft_image_free (y);
      if (!ok)
        goto out;
    }
  /* class names only label the output: a missing palette file costs the names, not the scores */
  GError *pal_error = NULL;
  pal = oft_palette_load_ade20k (&pal_error);
  if (!pal)
    {
      fprintf (stderr, "oft eval segmentation: warning: no class names: %s\n", pal_error->message);
      g_error_free (pal_error);
    }
  OftSegScores s;
  double iou[150], acc[150];
  oft_seg_areas_score (areas, &s, iou, acc);
  json_builder_begin_object (jb);
  json_builder_set_member_name (jb, "metric");
  json_builder_add_string_value (jb, "segmentation");
  json_builder_set_member_name (jb, "pairs");
  json_builder_add_int_value (jb, pa->len);
  json_builder_set_member_name (jb, "num_classes");
  json_builder_add_int_value (jb, num_classes);
  json_builder_set_member_name (jb, "ignore_index");
  json_builder_add_int_value (jb, OFT_SEG_IGNORE);
  add_number (jb, "aAcc", s.aacc);
  add_number (jb, "mIoU", s.miou);
  add_number (jb, "mAcc", s.macc);
  json_builder_set_member_name (jb, "classes_in_union");
  json_builder_add_int_value (jb, s.classes_in_union);
  json_builder_set_member_name (jb, "classes_in_gt");
  json_builder_add_int_value (jb, s.classes_in_gt);
  json_builder_set_member_name (jb, "per_class");
  json_builder_begin_object (jb);
  for (int k = 0; k < num_classes; k++)
    {
      if (!areas->uni[k])
        continue;
      char key[8];
      g_snprintf (key, sizeof key, "%d", k);
      json_builder_set_member_name (jb, key);
      json_builder_begin_object (jb);
      if (pal && k < pal->n)
        {
          json_builder_set_member_name (jb, "name");
          json_builder_add_string_value (jb, pal->names[k]);
        }
      add_number (jb, "iou", iou[k]);
      add_number (jb, "acc", acc[k]);
      const char *names[] = { "area_intersect", "area_union", "area_pred", "area_label" };
      const int64_t vals[] = { areas->intersect[k], areas->uni[k], areas->pred[k], areas->label[k] };
      for (int j = 0; j < 4; j++)
        {
          json_builder_set_member_name (jb, names[j]);
          json_builder_add_int_value (jb, vals[j]);
        }
      json_builder_end_object (jb);
    }
  json_builder_end_object (jb);
  json_builder_end_object (jb);
  print_json (jb);
  fprintf (stderr, "segmentation: mIoU %.4f  mAcc %.4f  aAcc %.4f  (%d classes in GT or PRED, %d in GT; %u pair%s "
           "pooled)\n", s.miou, s.macc, s.aacc, s.classes_in_union, s.classes_in_gt, pa->len, pa->len == 1 ? "" : "s");
  rc = 0;
out:
  if (rc)
    cli_fail ("eval segmentation", error);
  g_clear_error (&error);
  g_object_unref (jb);
  oft_seg_areas_free (areas);
  oft_palette_free (pal);
  g_ptr_array_unref (pa);
  g_ptr_array_unref (pb);
  g_option_context_free (ctx);
  return rc;
}

/* ---- dispatch --------------------------------------------------------------------------------------- */

static void
eval_usage (FILE *f)
{
  fprintf (f, "Usage: oft eval METRIC PRED TARGET\n\nMetrics (files, or folders of same-named PNGs):\n");
  for (size_t i = 0; i < G_N_ELEMENTS (evals); i++)
    fprintf (f, "  %-14s %s\n", evals[i].name, evals[i].summary);
  fprintf (f, "\nRun 'oft eval METRIC --help' for details. JSON goes to stdout, a summary line to stderr.\n");
}

int
cmd_eval (int argc, char **argv)
{
  if (argc < 2)
    {
      eval_usage (stderr);
      return 2;
    }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0)
    {
      eval_usage (stdout);
      return 0;
    }
  for (size_t i = 0; i < G_N_ELEMENTS (evals); i++)
    if (strcmp (argv[1], evals[i].name) == 0)
      return evals[i].run (argc - 1, argv + 1);
  fprintf (stderr, "oft eval: unknown metric '%s'\n\n", argv[1]);
  eval_usage (stderr);
  return 2;
}
