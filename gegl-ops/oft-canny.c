/* oft:canny: the Canny edge condition (white edges on black), bit-exact with OpenCV 4.6's
 * cv2.Canny as ControlNet's CannyDetector calls it. */
#include "oft-config.h"
#include <glib/gi18n-lib.h>

#ifdef GEGL_PROPERTIES

property_double (low, _("Low threshold"), 100.0)
  description (_("Lower hysteresis threshold: weaker gradients are never edges"))
  value_range (0.0, 100000.0)
  ui_range (0.0, 1000.0)

property_double (high, _("High threshold"), 200.0)
  description (_("Upper hysteresis threshold: stronger gradients are always edges"))
  value_range (0.0, 100000.0)
  ui_range (0.0, 1000.0)

property_int (aperture, _("Aperture"), 3)
  description (_("Sobel kernel size: 3, 5 or 7"))
  value_range (3, 7)
  ui_steps (2, 2)

property_boolean (l2, _("L2 gradient"), FALSE)
  description (_("Gradient magnitude sqrt(dx² + dy²) instead of |dx| + |dy|"))

property_boolean (gray, _("Gray first"), FALSE)
  description (_("Convert to gray before finding edges (OpenCV's BGR2GRAY); otherwise the colour channel "
                 "with the strongest gradient wins at each pixel, as ControlNet does"))

property_boolean (blur, _("Blur first"), FALSE)
  description (_("Gaussian blur 5×5, σ = 1 before finding edges"))

#else

#define GEGL_OP_FILTER
#define GEGL_OP_NAME oft_canny
#define GEGL_OP_C_SOURCE oft-canny.c
#define GEGL_OP_BUNDLE
#include "gegl-op.h"
#include "oft-gegl.h"

static void
prepare (GeglOperation *operation)
{
  const Babl *fmt = babl_format ("R'G'B'A u8");
  gegl_operation_set_format (operation, "input", fmt);
  gegl_operation_set_format (operation, "output", fmt);
}

static OftImage *
canny_of (GeglOperation *operation, const OftImage *img, GError **error)
{
  GeglProperties *o = GEGL_PROPERTIES (operation);
  OftCannyParams params = { o->low, o->high, o->aperture, o->l2 };
  return oft_canny_image (img, &params, o->gray, o->blur, error);
}

static gboolean
process (GeglOperation *operation, GeglBuffer *input, GeglBuffer *output, const GeglRectangle *result, gint level)
{
  GeglProperties *o = GEGL_PROPERTIES (operation);
  if (o->aperture != 3 && o->aperture != 5 && o->aperture != 7)
    {
      g_warning (_("oft:canny: aperture %d: expected 3, 5 or 7"), o->aperture);
      return TRUE;
    }
  return oft_gegl_process_image (operation, input, output, "oft:canny", canny_of, NULL);
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
    "name", "oft:canny",
    "title", _("Canny Edges (OFT condition)"),
    "categories", "edge-detect:oft",
    "description", _("Canny edge map as white lines on black, the edge condition for OFT and ControlNet "
                     "(the same result as OpenCV's cv2.Canny)"),
    NULL);
}

#endif
