/* Faces: Haar boxes and dlib landmarks against golden/conditions/faces (OpenCV 4.6 and dlib 19.24 on
 * the same images), the landmark condition image, OFT's landmark error, and clear errors for
 * missing or corrupt model files and for images without a face. The model files come from the
 * Debian packages opencv-data and libdlib-data (tools/deps installs them); without them the tests
 * that need them are skipped, saying which package is missing. */
#include "test-common.h"
#include <json-glib/json-glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

static const char *face_names[] = { "astronaut", "grace_hopper", "astronaut_hflip", "astronaut_crop" };

static JsonParser *manifest_parser;
static JsonObject *manifest;
static OftHaarCascade *cascade;
static OftShapePredictor *predictor;

static JsonObject *
golden_manifest (void)
{
  if (!manifest)
    {
      char *path = test_golden_path ("conditions/faces/manifest.json");
      GError *error = NULL;
      manifest_parser = json_parser_new ();
      g_assert_true (json_parser_load_from_file (manifest_parser, path, &error));
      g_assert_no_error (error);
      manifest = json_node_get_object (json_parser_get_root (manifest_parser));
      g_free (path);
    }
  return manifest;
}

static JsonObject *
face (const char *name)
{
  return json_object_get_object_member (json_object_get_object_member (golden_manifest (), "faces"), name);
}

/* The installed model files, loaded once; NULL (test skipped) when the package is absent. */
static OftHaarCascade *
get_cascade (void)
{
  if (!cascade && g_file_test (OFT_HAAR_DEFAULT_CASCADE, G_FILE_TEST_EXISTS))
    {
      GError *error = NULL;
      cascade = oft_haar_load (NULL, &error);
      g_assert_no_error (error);
    }
  if (!cascade)
    g_test_skip (OFT_HAAR_DEFAULT_CASCADE " is missing: install the Debian package " OFT_HAAR_PACKAGE
                 " (tools/deps does)");
  return cascade;
}

static OftShapePredictor *
get_predictor (void)
{
  if (!predictor && g_file_test (OFT_SHAPE_PREDICTOR_DEFAULT, G_FILE_TEST_EXISTS))
    {
      GError *error = NULL;
      gint64 t0 = g_get_monotonic_time ();
      predictor = oft_shape_predictor_load (NULL, &error);
      g_assert_no_error (error);
      g_test_message ("shape predictor loaded in %.2f s", (g_get_monotonic_time () - t0) / 1e6);
    }
  if (!predictor)
    g_test_skip (OFT_SHAPE_PREDICTOR_DEFAULT " is missing: install the Debian package " OFT_SHAPE_PREDICTOR_PACKAGE
                 " (tools/deps does)");
  return predictor;
}

/* an image under golden/conditions/ */
static OftImage *
load_cond (const char *relative)
{
  char *rel = g_build_filename ("conditions", relative, NULL), *path = test_golden_path (rel);
  g_free (rel);
  GError *error = NULL;
  OftImage *img = oft_image_load (path, &error);
  g_assert_no_error (error);
  g_free (path);
  return img;
}

static double
iou (OftFaceBox a, OftFaceBox b)
{
  int x0 = MAX (a.x, b.x), y0 = MAX (a.y, b.y), x1 = MIN (a.x + a.w, b.x + b.w), y1 = MIN (a.y + a.h, b.y + b.h);
  double inter = x1 > x0 && y1 > y0 ? (double) (x1 - x0) * (y1 - y0) : 0;
  return inter / ((double) a.w * a.h + (double) b.w * b.h - inter);
}

static OftFaceBox
json_box (JsonArray *a)
{
  return (OftFaceBox) { (int) json_array_get_int_element (a, 0), (int) json_array_get_int_element (a, 1),
                        (int) json_array_get_int_element (a, 2), (int) json_array_get_int_element (a, 3) };
}

/* dlib rectangle [l,t,r,b] (inclusive) → x,y,w,h */
static OftFaceBox
ltrb_box (JsonArray *a)
{
  OftFaceBox b = json_box (a);
  return (OftFaceBox) { b.x, b.y, b.w - b.x + 1, b.h - b.y + 1 };
}

/* Haar boxes on images/<name>_gray.png: the same boxes as OpenCV. The bar is IoU ≥ 0.9;
 * the port reproduces OpenCV's arithmetic (bit-exact resize, float features), so the boxes are
 * asserted equal, with the IoU printed and checked too. */
static void
test_haar_boxes (void)
{
  if (!get_cascade ())
    return;
  for (guint i = 0; i < G_N_ELEMENTS (face_names); i++)
    {
      JsonObject *f = face (face_names[i]);
      OftImage *img = load_cond (json_object_get_string_member (f, "gray"));
      g_assert_cmpint (img->channels, ==, 1);
      OftFaceBox *boxes = NULL;
      GError *error = NULL;
      gint64 t0 = g_get_monotonic_time ();
      int n = oft_haar_detect (cascade, img->pixels, img->width, img->height, NULL, &boxes, &error);
      double secs = (g_get_monotonic_time () - t0) / 1e6;
      g_assert_no_error (error);
      JsonArray *want = json_object_get_array_member (json_object_get_object_member (f, "haar"), "boxes_xywh");
      g_assert_cmpint (n, ==, (int) json_array_get_length (want));
      for (int k = 0; k < n; k++)
        {
          OftFaceBox w = json_box (json_array_get_array_element (want, k));
          double v = iou (boxes[k], w);
          g_test_message ("%s box %d: [%d,%d,%d,%d] vs OpenCV [%d,%d,%d,%d], IoU %.4f (%dx%d in %.2f s)",
                          face_names[i], k, boxes[k].x, boxes[k].y, boxes[k].w, boxes[k].h, w.x, w.y, w.w, w.h, v,
                          img->width, img->height, secs);
          g_assert_cmpfloat (v, >=, 0.9);
          g_assert_cmpmem (&boxes[k], sizeof w, &w, sizeof w);
        }
      /* used_box_xywh is the largest: ours is first */
      OftFaceBox used = json_box (json_object_get_array_member (json_object_get_object_member (f, "haar"), "used_box_xywh"));
      g_assert_cmpfloat (iou (boxes[0], used), >=, 0.9);
      g_free (boxes);
      oft_image_free (img);
    }
}

/* The RGB image through oft_faces_gray must give the golden gray image exactly (cvtColor's formula). */
static void
test_gray_conversion (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (face_names); i++)
    {
      JsonObject *f = face (face_names[i]);
      OftImage *rgb = load_cond (json_object_get_string_member (f, "image"));
      OftImage *gray = load_cond (json_object_get_string_member (f, "gray"));
      uint8_t *g = oft_faces_gray (rgb);
      g_assert_cmpmem (g, (size_t) gray->width * gray->height, gray->pixels, (size_t) gray->width * gray->height);
      g_free (g);
      oft_image_free (rgb);
      oft_image_free (gray);
    }
}

/* Predicts for one golden landmarks case; returns the points (g_free). */
static double *
predict_case (JsonObject *c, OftShapeTrace *trace)
{
  OftImage *img = load_cond (json_object_get_string_member (c, "input"));
  OftFaceBox box = ltrb_box (json_object_get_array_member (c, "rect_ltrb"));
  double *pts = g_new (double, 136);
  GError *error = NULL;
  g_assert_true (oft_shape_predict (predictor, img, box, pts, trace, &error));
  g_assert_no_error (error);
  oft_image_free (img);
  return pts;
}

/* Every golden box (haar/hand/hog) and input (rgb/gray): dlib's integers exactly, its floats to
 * the 9 significant digits the manifest stores (≤ 5e-7 px at these magnitudes; bound 2e-6). */
static void
test_landmarks (void)
{
  if (!get_predictor ())
    return;
  g_assert_cmpint (oft_shape_predictor_num_parts (predictor), ==, 68);
  g_assert_cmpint (oft_shape_predictor_num_stages (predictor), ==, 15);
  g_assert_cmpint (oft_shape_predictor_num_features (predictor, 0), ==, 500);
  int cases = 0;
  double worst = 0;
  for (guint i = 0; i < G_N_ELEMENTS (face_names); i++)
    {
      JsonObject *lm = json_object_get_object_member (face (face_names[i]), "landmarks");
      GList *keys = json_object_get_members (lm);
      for (GList *k = keys; k; k = k->next, cases++)
        {
          JsonObject *c = json_object_get_object_member (lm, k->data);
          double *pts = predict_case (c, NULL);
          JsonArray *parts = json_object_get_array_member (c, "parts"), *pf = json_object_get_array_member (c, "parts_float");
          g_assert_cmpint (json_array_get_length (parts), ==, 136);
          int mismatches = 0;
          double maxe = 0;
          for (int j = 0; j < 136; j++)
            {
              mismatches += (int) floor (pts[j] + 0.5) != (int) json_array_get_int_element (parts, j);
              maxe = fmax (maxe, fabs (pts[j] - json_array_get_double_element (pf, j)));
            }
          g_test_message ("%s %s: %d integer mismatches, max float error %.2g px", face_names[i], (char *) k->data,
                          mismatches, maxe);
          g_assert_cmpint (mismatches, ==, 0);
          g_assert_cmpfloat (maxe, <=, 2e-6);
          worst = fmax (worst, maxe);
          g_free (pts);
        }
      g_list_free (keys);
    }
  g_assert_cmpint (cases, ==, 24);
  g_test_message ("24 cases, worst float error %.2g px", worst);
}

/* Stage by stage for the Haar boxes: the 500 stage-0 intensities exactly, the normalised shapes
 * after each stage to the manifest's 9 digits (values ≤ ~1.2: ≤ 5e-9 rounding; bound 2e-8). */
static void
test_stages (void)
{
  if (!get_predictor ())
    return;
  for (guint i = 0; i < G_N_ELEMENTS (face_names); i++)
    for (int mode = 0; mode < 2; mode++)
      {
        JsonObject *c = json_object_get_object_member (json_object_get_object_member (face (face_names[i]), "landmarks"),
                                                       mode ? "haar_gray" : "haar_rgb");
        float feats[500], shapes[15 * 136];
        OftShapeTrace tr = { feats, shapes };
        g_free (predict_case (c, &tr));
        JsonArray *fa = json_object_get_array_member (c, "stage0_features"), *sa = json_object_get_array_member (c, "stage_shapes");
        g_assert_cmpint (json_array_get_length (fa), ==, 500);
        g_assert_cmpint (json_array_get_length (sa), ==, 15 * 136);
        for (int j = 0; j < 500; j++)
          g_assert_cmpfloat (feats[j], ==, (double) json_array_get_int_element (fa, j));
        double maxe = 0;
        for (int j = 0; j < 15 * 136; j++)
          maxe = fmax (maxe, fabs (shapes[j] - json_array_get_double_element (sa, j)));
        g_test_message ("%s %s: stage shapes max error %.2g", face_names[i], mode ? "gray" : "rgb", maxe);
        g_assert_cmpfloat (maxe, <=, 2e-8);
      }
}

static double *
json_parts (JsonArray *a, int n)
{
  double *p = g_new (double, n);
  for (int j = 0; j < n; j++)
    p[j] = json_array_get_double_element (a, j);
  return p;
}

static void
round_points (double *p, int n)
{
  for (int j = 0; j < n; j++)
    p[j] = floor (p[j] + 0.5);
}

/* landmark_error_example: the shifted image with the same and the moved box; our points and the
 * resulting errors against the manifest's (errors of equal point sets agree to rounding: 1e-9). */
static void
test_landmark_error_example (void)
{
  if (!get_predictor ())
    return;
  JsonObject *ex = json_object_get_object_member (golden_manifest (), "landmark_error_example");
  JsonObject *ref = json_object_get_object_member (json_object_get_object_member (face ("astronaut"), "landmarks"), "haar_rgb");
  double *ref_int = json_parts (json_object_get_array_member (ref, "parts"), 136);
  double *ref_float = json_parts (json_object_get_array_member (ref, "parts_float"), 136);
  OftImage *shifted = load_cond (json_object_get_string_member (ex, "shifted_image"));
  const char *cases[] = { "same_box", "moved_box" };
  for (int c = 0; c < 2; c++)
    {
      JsonObject *o = json_object_get_object_member (ex, cases[c]);
      OftFaceBox box = ltrb_box (json_object_get_array_member (o, "rect_ltrb"));
      double pts[136], pint[136], undone[136];
      GError *error = NULL;
      g_assert_true (oft_shape_predict (predictor, shifted, box, pts, NULL, &error));
      memcpy (pint, pts, sizeof pts);
      round_points (pint, 136);
      double *want = json_parts (json_object_get_array_member (o, "parts"), 136);
      g_assert_cmpmem (pint, sizeof pint, want, sizeof pint);
      for (int j = 0; j < 136; j++)
        undone[j] = pint[j] - (j % 2 == 0 ? 3 : 0);
      double e_int = oft_landmark_error (pint, ref_int, 68), e_float = oft_landmark_error (pts, ref_float, 68);
      double e_undo = oft_landmark_error (undone, ref_int, 68);
      g_test_message ("%s: error int %.10f float %.10f after undoing the shift %.10f", cases[c], e_int, e_float, e_undo);
      g_assert_cmpfloat (fabs (e_int - json_object_get_double_member (o, "error_int")), <=, 1e-9);
      /* our floats differ from the stored 9-digit ones by ≤ 5e-7 px, so the mean moves by at most that */
      g_assert_cmpfloat (fabs (e_float - json_object_get_double_member (o, "error_float")), <=, 1e-6);
      g_assert_cmpfloat (fabs (e_undo - json_object_get_double_member (o, "error_int_after_undoing_shift")), <=, 1e-9);
      g_free (want);
    }
  /* rgb_vs_gray_input: astronaut haar box, RGB vs gray input */
  JsonObject *rg = json_object_get_object_member (ex, "rgb_vs_gray_input");
  JsonObject *gray_case = json_object_get_object_member (json_object_get_object_member (face ("astronaut"), "landmarks"), "haar_gray");
  double *prgb = predict_case (ref, NULL), *pgray = predict_case (gray_case, NULL);
  double ef = oft_landmark_error (prgb, pgray, 68);
  round_points (prgb, 136);
  round_points (pgray, 136);
  double ei = oft_landmark_error (prgb, pgray, 68);
  g_assert_cmpfloat (fabs (ei - json_object_get_double_member (rg, "error_int")), <=, 1e-9);
  g_assert_cmpfloat (fabs (ef - json_object_get_double_member (rg, "error_float")), <=, 1e-6);
  g_free (prgb);
  g_free (pgray);
  g_free (ref_int);
  g_free (ref_float);
  oft_image_free (shifted);
}

/* The metric itself on hand-made points: a pure 3-4-5 shift is 5, identical sets are 0. */
static void
test_landmark_error_invariants (void)
{
  double a[6] = { 0, 0, 10, 10, -5, 2 }, b[6];
  for (int j = 0; j < 6; j++)
    b[j] = a[j] + (j % 2 ? 4 : 3);
  g_assert_cmpfloat (oft_landmark_error (a, b, 3), ==, 5.0);
  g_assert_cmpfloat (oft_landmark_error (a, a, 3), ==, 0.0);
  g_assert_true (isnan (oft_landmark_error (a, b, 0)));
}

/* Condition images rendered from the golden haar_rgb integer points and from our own predictions:
 * both must equal faces/<name>__landmarks.png byte for byte. */
static void
test_render (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (face_names); i++)
    {
      JsonObject *f = face (face_names[i]);
      JsonObject *c = json_object_get_object_member (json_object_get_object_member (f, "landmarks"), "haar_rgb");
      char *want_name = g_strdup_printf ("faces/%s__landmarks.png", face_names[i]);
      OftImage *want = load_cond (want_name);
      g_free (want_name);
      g_assert_cmpint (want->channels, ==, 3);
      double *pts = json_parts (json_object_get_array_member (c, "parts"), 136);
      OftImage *got = oft_landmarks_render (pts, 68, want->width, want->height);
      size_t n = (size_t) want->width * want->height * 3;
      g_assert_cmpmem (got->pixels, n, want->pixels, n);
      oft_image_free (got);
      g_free (pts);
      if (get_predictor ())
        {
          pts = predict_case (c, NULL);
          got = oft_landmarks_render (pts, 68, want->width, want->height);
          g_assert_cmpmem (got->pixels, n, want->pixels, n);
          oft_image_free (got);
          g_free (pts);
        }
      oft_image_free (want);
    }
}

static void
test_missing_files (void)
{
  GError *error = NULL;
  g_assert_null (oft_haar_load ("/nonexistent/cascade.xml", &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "/nonexistent/cascade.xml"));
  g_assert_nonnull (strstr (error->message, "opencv-data"));
  g_clear_error (&error);
  g_assert_null (oft_shape_predictor_load ("/nonexistent/sp.dat", &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "/nonexistent/sp.dat"));
  g_assert_nonnull (strstr (error->message, "libdlib-data"));
  g_clear_error (&error);
}

static char *
write_tmp (const char *dir, const char *name, const void *data, size_t len)
{
  char *path = g_build_filename (dir, name, NULL);
  g_assert_true (g_file_set_contents (path, data, (gssize) len, NULL));
  return path;
}

/* Broken cascades: each refused with OFT_ERROR_CORRUPT and a message naming the file and the problem. */
static void
test_corrupt_cascade (void)
{
  char *dir = g_dir_make_tmp ("oft-faces-XXXXXX", NULL);
  const char *head = "<?xml version=\"1.0\"?><opencv_storage><cascade><stageType>BOOST</stageType>"
                     "<featureType>HAAR</featureType><height>24</height><width>24</width>"
                     "<featureParams><maxCatCount>0</maxCatCount></featureParams><stages><_>"
                     "<stageThreshold>-1.0</stageThreshold><weakClassifiers><_>";
  struct { const char *body, *expect; } cases[] = {
    { "<internalNodes>0 -1 0 0.5</internalNodes><leafValues>1 -1</leafValues></_></weakClassifiers></_></stages>"
      "<features><_><rects><_>0 0 25 4 -1.</_></rects></_></features></cascade></opencv_storage>", "not inside" },
    { "<internalNodes>0 -1 3 0.5</internalNodes><leafValues>1 -1</leafValues></_></weakClassifiers></_></stages>"
      "<features><_><rects><_>0 0 2 4 -1.</_></rects></_></features></cascade></opencv_storage>", "feature 3" },
    { "<internalNodes>0 -1 0 0.5</internalNodes><leafValues>1</leafValues></_></weakClassifiers></_></stages>"
      "<features><_><rects><_>0 0 2 4 -1.</_></rects></_></features></cascade></opencv_storage>", "leafValues" },
    { "<internalNodes>0 -1 0 0.5</internalNodes><leafValues>1 -1</leafValues></_></weakClassifiers></_></stages>"
      "<features><_><rects><_>0 0 2 4 -1.</_></rects><tilted>1</tilted></_></features></cascade></opencv_storage>",
      "tilted" },
    { "<internalNodes>0 -1 0 0.5</internalNodes><leafValues>1 -1</leafValues>", "valid cascade XML" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      char *xml = g_strconcat (head, cases[i].body, NULL);
      char *path = write_tmp (dir, "c.xml", xml, strlen (xml));
      GError *error = NULL;
      g_assert_null (oft_haar_load (path, &error));
      g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT);
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, path));
      g_assert_nonnull (strstr (error->message, cases[i].expect));
      g_clear_error (&error);
      g_remove (path);
      g_free (path);
      g_free (xml);
    }
  /* the same skeleton with a valid ending loads, and a flat image has no face */
  char *xml = g_strconcat (head, cases[0].body, NULL);
  char *fix = strstr (xml, "0 0 25 4");
  fix[5] = ' '; /* "0 0 2  4": inside the window */
  char *path = write_tmp (dir, "ok.xml", xml, strlen (xml));
  GError *error = NULL;
  OftHaarCascade *h = oft_haar_load (path, &error);
  g_assert_no_error (error);
  int w, hh;
  oft_haar_window (h, &w, &hh);
  g_assert_cmpint (w, ==, 24);
  oft_haar_free (h);
  g_remove (path);
  g_free (path);
  g_free (xml);
  g_rmdir (dir);
  g_free (dir);
}

/* A tiny predictor in dlib's format, written here: 2 parts, 1 stage, one depth-1 tree, 2 features. */
static void
put_int (GByteArray *b, int64_t v)
{
  uint8_t buf[9];
  uint64_t m = v < 0 ? (uint64_t) -v : (uint64_t) v;
  int n = 0;
  do
    buf[1 + n++] = (uint8_t) (m & 0xff), m >>= 8;
  while (m);
  buf[0] = (uint8_t) (n | (v < 0 ? 0x80 : 0));
  g_byte_array_append (b, buf, (guint) n + 1);
}

static void
put_float (GByteArray *b, float f)
{
  int e;
  double m = frexp (f, &e); /* f = m·2^e, |m| in [0.5, 1) */
  put_int (b, (int64_t) ldexp (m, 24));
  put_int (b, e - 24);
}

static void
put_column (GByteArray *b, const float *v, int n)
{
  put_int (b, -n);
  put_int (b, -1);
  for (int i = 0; i < n; i++)
    put_float (b, v[i]);
}

static GByteArray *
tiny_predictor (int idx2)
{
  GByteArray *b = g_byte_array_new ();
  float init[4] = { 0.25f, 0.5f, 0.75f, 0.5f };
  float leaf_l[4] = { 0.1f, 0, 0.1f, 0 }, leaf_r[4] = { -0.1f, 0, -0.1f, 0 };
  put_int (b, 1);
  put_column (b, init, 4);
  put_int (b, 1);               /* stages */
  put_int (b, 1);               /* trees */
  put_int (b, 1);               /* splits */
  put_int (b, 0), put_int (b, idx2), put_float (b, 10.f);
  put_int (b, 2);               /* leaves */
  put_column (b, leaf_l, 4);
  put_column (b, leaf_r, 4);
  put_int (b, 1), put_int (b, 2), put_int (b, 0), put_int (b, 1); /* anchor_idx */
  put_int (b, 1), put_int (b, 2);                                 /* deltas */
  put_float (b, 0), put_float (b, 0), put_float (b, 0), put_float (b, 0);
  return b;
}

/* The tiny model by hand: box 0,0 11x11 (scale 10): the features sit on the parts at (2.5→3, 5)
 * and (7.5→8, 5). Left bright by more than 10 → left leaf (+0.1 x), else right (−0.1 x). And every
 * truncation of the file is refused cleanly with OFT_ERROR_CORRUPT. */
static void
test_tiny_predictor (void)
{
  char *dir = g_dir_make_tmp ("oft-faces-XXXXXX", NULL);
  GByteArray *b = tiny_predictor (1);
  char *path = write_tmp (dir, "tiny.dat", b->data, b->len);
  GError *error = NULL;
  OftShapePredictor *sp = oft_shape_predictor_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (oft_shape_predictor_num_parts (sp), ==, 2);
  OftImage *img = oft_image_new (11, 11, 1);
  img->pixels[5 * 11 + 3] = 50;
  double pts[4];
  g_assert_true (oft_shape_predict (sp, img, (OftFaceBox) { 0, 0, 11, 11 }, pts, NULL, &error));
  g_assert_cmpfloat (fabs (pts[0] - (0.25f + 0.1f) * 10.0), <, 1e-6);
  g_assert_cmpfloat (fabs (pts[1] - 5.0), <, 1e-6);
  g_assert_cmpfloat (fabs (pts[2] - (0.75f + 0.1f) * 10.0), <, 1e-6);
  img->pixels[5 * 11 + 3] = 0;
  g_assert_true (oft_shape_predict (sp, img, (OftFaceBox) { 0, 0, 11, 11 }, pts, NULL, &error));
  g_assert_cmpfloat (fabs (pts[0] - (0.25f - 0.1f) * 10.0), <, 1e-6);
  oft_image_free (img);
  oft_shape_predictor_free (sp);
  g_remove (path);
  g_free (path);

  for (guint len = 0; len < b->len; len++)
    {
      path = write_tmp (dir, "cut.dat", b->data, len);
      g_assert_null (oft_shape_predictor_load (path, &error));
      g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT);
      g_assert_nonnull (strstr (error->message, path));
      g_clear_error (&error);
      g_remove (path);
      g_free (path);
    }
  /* a split naming a feature the stage does not sample */
  GByteArray *bad = tiny_predictor (5);
  path = write_tmp (dir, "bad.dat", bad->data, bad->len);
  g_assert_null (oft_shape_predictor_load (path, &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "uses feature 5"));
  g_clear_error (&error);
  g_remove (path);
  g_free (path);
  g_byte_array_free (bad, TRUE);
  g_byte_array_free (b, TRUE);
  g_rmdir (dir);
  g_free (dir);
}

/* A flat gray image (no face) gives no boxes; so does an image smaller than the window. */
static void
test_no_face (void)
{
  if (!get_cascade ())
    return;
  OftImage *img = oft_image_new (200, 160, 1);
  memset (img->pixels, 128, 200 * 160);
  OftFaceBox *boxes = NULL;
  GError *error = NULL;
  g_assert_cmpint (oft_haar_detect (cascade, img->pixels, 200, 160, NULL, &boxes, &error), ==, 0);
  g_assert_no_error (error);
  g_assert_null (boxes);
  g_assert_cmpint (oft_haar_detect (cascade, img->pixels, 20, 20, NULL, &boxes, &error), ==, 0);
  OftHaarParams p;
  oft_haar_params_init (&p);
  p.scale_factor = 1.0;
  g_assert_cmpint (oft_haar_detect (cascade, img->pixels, 200, 160, &p, &boxes, &error), ==, -1);
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_clear_error (&error);
  oft_image_free (img);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/faces/haar/golden-boxes", test_haar_boxes);
  g_test_add_func ("/faces/haar/gray-conversion", test_gray_conversion);
  g_test_add_func ("/faces/haar/no-face", test_no_face);
  g_test_add_func ("/faces/haar/corrupt-cascade", test_corrupt_cascade);
  g_test_add_func ("/faces/landmarks/golden", test_landmarks);
  g_test_add_func ("/faces/landmarks/stages", test_stages);
  g_test_add_func ("/faces/landmarks/tiny-model", test_tiny_predictor);
  g_test_add_func ("/faces/landmarks/error-example", test_landmark_error_example);
  g_test_add_func ("/faces/landmarks/error-invariants", test_landmark_error_invariants);
  g_test_add_func ("/faces/render", test_render);
  g_test_add_func ("/faces/missing-files", test_missing_files);
  int rc = g_test_run ();
  oft_haar_free (cascade);
  oft_shape_predictor_free (predictor);
  if (manifest_parser)
    g_object_unref (manifest_parser);
  return rc;
}
