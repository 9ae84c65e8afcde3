/* A condition image derived from a photo, for each condition type the condition encoder knows. */
#include "oft/conditions.h"
#include "oft/faces.h"
#include "oft/error.h"
#include <string.h>

static OftImage *
landmarks_of (const OftImage *photo, GError **error)
{
  OftHaarCascade *cascade = oft_haar_load (NULL, error);
  if (!cascade)
    return NULL;
  OftShapePredictor *sp = NULL;
  OftImage *out = NULL;
  uint8_t *gray = oft_faces_gray (photo);
  OftHaarParams hp;
  oft_haar_params_init (&hp);
  OftFaceBox *boxes = NULL;
  int n = oft_haar_detect (cascade, gray, photo->width, photo->height, &hp, &boxes, error);
  if (n == 0)
    g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND, "no face found in the photo for a landmark condition");
  else if (n > 0 && (sp = oft_shape_predictor_load (NULL, error)))
    {
      int np = oft_shape_predictor_num_parts (sp);
      double *pts = g_new (double, 2 * np);
      if (oft_shape_predict (sp, photo, boxes[0], pts, NULL, error))  /* the largest face */
        out = oft_landmarks_render (pts, np, photo->width, photo->height);
      g_free (pts);
    }
  oft_shape_predictor_free (sp);
  g_free (boxes);
  g_free (gray);
  oft_haar_free (cascade);
  return out;
}

OftImage *
oft_condition_from_photo (const OftImage *photo, const char *type, GError **error)
{
  if (g_strcmp0 (type, "canny") == 0)
    {
      OftCannyParams p = OFT_CANNY_PARAMS_DEFAULT;
      OftImage *edges = oft_canny_image (photo, &p, FALSE, FALSE, error);
      OftImage *rgb = edges ? oft_image_convert (edges, 3) : NULL;
      oft_image_free (edges);
      return rgb;
    }
  if (g_strcmp0 (type, "landmarks") == 0)
    return landmarks_of (photo, error);
  if (g_strcmp0 (type, "segmentation") == 0)
    {
      OftPalette *pal = oft_palette_load_ade20k (error);
      if (!pal)
        return NULL;
      OftImage *rgb = photo->channels == 3 || photo->channels == 4 ? NULL : oft_image_convert (photo, 3);
      const OftImage *src = rgb ? rgb : photo;
      int64_t n = (int64_t) photo->width * photo->height;
      uint8_t *index = g_new (uint8_t, n);
      OftImage *out = oft_image_new (photo->width, photo->height, 3);
      oft_segmap_quantize (index, NULL, src->pixels, n, src->channels, pal);
      oft_segmap_colorize (out->pixels, index, n, pal);
      g_free (index);
      oft_image_free (rgb);
      oft_palette_free (pal);
      return out;
    }
  g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
               "condition type '%s': expected canny, landmarks or segmentation", type ? type : "(none)");
  return NULL;
}
