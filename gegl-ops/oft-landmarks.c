/* oft:landmarks: the 68-point face landmark condition (white dots on black) of one face, found by
 * OpenCV's Haar cascade and placed by dlib's shape predictor (the same result as
 * `oft landmarks --render`). */
#include "oft-config.h"
#include <glib/gi18n-lib.h>

#ifdef GEGL_PROPERTIES

property_int (box_x, _("Face box left"), 0)
  description (_("Left edge of the face box, in pixels from the image's left edge"))
  value_range (-16777216, 16777216)
  ui_range (0, 4096)

property_int (box_y, _("Face box top"), 0)
  description (_("Top edge of the face box, in pixels from the image's top edge"))
  value_range (-16777216, 16777216)
  ui_range (0, 4096)

property_int (box_width, _("Face box width"), 0)
  description (_("Width of the face box; 0: find the largest face automatically"))
  value_range (0, 16777216)
  ui_range (0, 4096)

property_int (box_height, _("Face box height"), 0)
  description (_("Height of the face box; 0: find the largest face automatically"))
  value_range (0, 16777216)
  ui_range (0, 4096)

property_file_path (cascade, _("Face detector"), "")
  description (_("OpenCV Haar cascade XML; empty: the frontal face cascade of opencv-data"))

property_file_path (predictor, _("Landmark model"), "")
  description (_("dlib 68-point shape predictor; empty: the one from libdlib-data"))

#else

#define GEGL_OP_FILTER
#define GEGL_OP_NAME oft_landmarks
#define GEGL_OP_C_SOURCE oft-landmarks.c
#define GEGL_OP_BUNDLE
#include "gegl-op.h"
#include "oft-gegl.h"

/* The detector and the predictor (about 100 MB) are read once per process and kept; they change
 * only when another file is named. Everything below runs under models_lock. */
static GMutex models_lock;
static OftHaarCascade *cascade_cached;
static char *cascade_cached_path;
static OftShapePredictor *predictor_cached;
static char *predictor_cached_path;

static const OftHaarCascade *
cascade_get (const char *path, GError **error)
{
  const char *key = path ? path : "";
  if (cascade_cached && g_strcmp0 (cascade_cached_path, key) == 0)
    return cascade_cached;
  OftHaarCascade *h = oft_haar_load (path, error);
  if (!h)
    return NULL;
  oft_haar_free (cascade_cached);
  g_free (cascade_cached_path);
  cascade_cached = h;
  cascade_cached_path = g_strdup (key);
  return h;
}

static const OftShapePredictor *
predictor_get (const char *path, GError **error)
{
  const char *key = path ? path : "";
  if (predictor_cached && g_strcmp0 (predictor_cached_path, key) == 0)
    return predictor_cached;
  OftShapePredictor *sp = oft_shape_predictor_load (path, error);
  if (!sp)
    return NULL;
  oft_shape_predictor_free (predictor_cached);
  g_free (predictor_cached_path);
  predictor_cached = sp;
  predictor_cached_path = g_strdup (key);
  return sp;
}

/* The landmark image (RGB) of the image's face, or NULL with a warning. */
static OftImage *
landmarks_image (GeglOperation *operation, const OftImage *img, GError **error)
{
  GeglProperties *o = GEGL_PROPERTIES (operation);
  const OftShapePredictor *sp = predictor_get (oft_gegl_path_or_null (o->predictor), error);
  if (!sp)
    return NULL;
  gegl_operation_progress (operation, 0.3, "");
  OftFaceBox box = { o->box_x, o->box_y, o->box_width, o->box_height };
  if (o->box_width <= 0 || o->box_height <= 0)
    {
      const OftHaarCascade *h = cascade_get (oft_gegl_path_or_null (o->cascade), error);
      if (!h)
        return NULL;
      guint8 *gray = oft_faces_gray (img);
      OftFaceBox *boxes = NULL;
      int n = oft_haar_detect (h, gray, img->width, img->height, NULL, &boxes, error);
      g_free (gray);
      if (n < 0)
        return NULL;
      if (n == 0)
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND,
                       _("no face found by the Haar cascade; give the face box (box-x, box-y, box-width, "
                         "box-height)"));
          return NULL;
        }
      box = boxes[0];
      g_free (boxes);
    }
  gegl_operation_progress (operation, 0.7, "");
  int np = oft_shape_predictor_num_parts (sp);
  double *pts = g_new (double, 2 * np);
  OftImage *cond = NULL;
  if (oft_shape_predict (sp, img, box, pts, NULL, error))
    cond = oft_landmarks_render (pts, np, img->width, img->height);
  g_free (pts);
  return cond;
}

static void
prepare (GeglOperation *operation)
{
  const Babl *fmt = babl_format ("R'G'B'A u8");
  gegl_operation_set_format (operation, "input", fmt);
  gegl_operation_set_format (operation, "output", fmt);
}

static gboolean
process (GeglOperation *operation, GeglBuffer *input, GeglBuffer *output, const GeglRectangle *result, gint level)
{
  return oft_gegl_process_image (operation, input, output, "oft:landmarks", landmarks_image, &models_lock);
}

static void
gegl_op_class_init (GeglOpClass *klass)
{
  GeglOperationClass *operation_class = GEGL_OPERATION_CLASS (klass);
  GeglOperationFilterClass *filter_class = GEGL_OPERATION_FILTER_CLASS (klass);

  operation_class->prepare = prepare;
  filter_class->process = process;
  oft_gegl_whole_image_class_init (operation_class);

  gegl_operation_class_set_keys (operation_class,
    "name", "oft:landmarks",
    "title", _("Face Landmarks (OFT condition)"),
    "categories", "render:oft",
    "description", _("Finds a face (the largest, or the given box) and draws its 68 landmarks as white dots "
                     "on black, the landmark condition for OFT"),
    NULL);
}

#endif
