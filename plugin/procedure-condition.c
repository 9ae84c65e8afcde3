/* plug-in-oft-condition: a condition layer (Canny edges, face landmarks, ADE20K segmentation map) from
 * the drawable's pixels, computed by oftcore exactly as `oft canny` / `oft landmarks` / `oft segmap` do. */
#include "oft-plugin.h"
#include <gegl.h>
#include <math.h>
#include <string.h>
#include "oft/oft.h"

void
oft_condition_vals_init (OftConditionVals *v)
{
  memset (v, 0, sizeof *v);
  oft_strlcpy (v->type, "canny", sizeof v->type);
  v->low = 100;
  v->high = 200;
}

/* The drawable as 8-bit non-linear RGBA (what the condition code and OpenCV's goldens expect). */
OftImage *
oft_plugin_read_drawable (gint32 drawable)
{
  int w = gimp_drawable_width (drawable), h = gimp_drawable_height (drawable);
  OftImage *img = oft_image_new (w, h, 4);
  GeglBuffer *buf = gimp_drawable_get_buffer (drawable);
  gegl_buffer_get (buf, GEGL_RECTANGLE (0, 0, w, h), 1.0, babl_format ("R'G'B'A u8"), img->pixels,
                   GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
  g_object_unref (buf);
  return img;
}

static OftImage *
make_canny (const OftImage *img, const OftConditionVals *v, GError **error)
{
  OftCannyParams p = OFT_CANNY_PARAMS_DEFAULT;
  p.low = v->low;
  p.high = v->high;
  /* colour channels compete, as ControlNet's CannyDetector (cv2.Canny on RGB) */
  OftImage *rgb = oft_image_convert (img, 3);
  OftImage *edges = oft_canny_image (rgb, &p, FALSE, FALSE, error);
  oft_image_free (rgb);
  if (!edges)
    return NULL;
  OftImage *out = oft_image_convert (edges, 3);
  oft_image_free (edges);
  return out;
}

static OftImage *
make_landmarks (const OftImage *img, GError **error)
{
  OftShapePredictor *sp = oft_shape_predictor_load (NULL, error);
  OftHaarCascade *h = sp ? oft_haar_load (NULL, error) : NULL;
  OftImage *out = NULL;
  OftFaceBox *boxes = NULL;
  double *pts = NULL;
  if (!h)
    goto done;
  uint8_t *gray = oft_faces_gray (img);
  int n = oft_haar_detect (h, gray, img->width, img->height, NULL, &boxes, error);
  g_free (gray);
  if (n < 0)
    goto done;
  if (n == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, _("No face found in the layer"));
      goto done;
    }
  int np = oft_shape_predictor_num_parts (sp);
  pts = g_new (double, 2 * np);
  if (oft_shape_predict (sp, img, boxes[0], pts, NULL, error))
    out = oft_landmarks_render (pts, np, img->width, img->height);
done:
  g_free (pts);
  g_free (boxes);
  oft_haar_free (h);
  oft_shape_predictor_free (sp);
  return out;
}

static OftImage *
make_segmap (const OftImage *img, GError **error)
{
  OftPalette *pal = oft_palette_load_ade20k (error);
  if (!pal)
    return NULL;
  int64_t n = (int64_t) img->width * img->height;
  uint8_t *index = g_new (uint8_t, n);
  oft_segmap_quantize (index, NULL, img->pixels, n, img->channels, pal);
  OftImage *out = oft_image_new (img->width, img->height, 3);
  oft_segmap_colorize (out->pixels, index, n, pal);
  g_free (index);
  oft_palette_free (pal);
  return out;
}

gboolean
oft_procedure_condition (gint32 image, gint32 drawable, const OftConditionVals *v, gint32 *layer_out,
                         GError **error)
{
  const char *label;
  if (strcmp (v->type, "canny") == 0)
    {
      if (!(v->low >= 0 && v->high >= 0 && v->low <= 1e4 && v->high <= 1e4))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                       _("Canny thresholds %g and %g: expected numbers from 0 to 10000"), v->low, v->high);
          return FALSE;
        }
      label = _("Canny edges");
    }
  else if (strcmp (v->type, "landmarks") == 0)
    label = _("Face landmarks");
  else if (strcmp (v->type, "segmentation") == 0)
    label = _("Segmentation map");
  else
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("condition type \"%s\": expected canny, landmarks or segmentation"), v->type);
      return FALSE;
    }
  if (drawable == -1 || !gimp_item_is_drawable (drawable))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, _("No drawable to compute the condition from"));
      return FALSE;
    }
  gimp_progress_init (label);
  OftImage *img = oft_plugin_read_drawable (drawable);
  OftImage *cond = strcmp (v->type, "canny") == 0     ? make_canny (img, v, error)
                   : strcmp (v->type, "landmarks") == 0 ? make_landmarks (img, error)
                                                         : make_segmap (img, error);
  oft_image_free (img);
  if (!cond)
    return FALSE;
  gimp_image_undo_group_start (image);
  gint32 anchor = gimp_item_is_layer (drawable) ? drawable : gimp_image_get_active_layer (image);
  gint32 layer = oft_layer_from_rgb8 (image, anchor, label, cond->pixels, cond->width, cond->height, error);
  gimp_image_undo_group_end (image);
  oft_image_free (cond);
  gimp_progress_update (1.0);
  if (layer == -1)
    return FALSE;
  *layer_out = layer;
  return TRUE;
}
