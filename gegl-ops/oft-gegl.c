/* Whole-image filtering for the oft: operations. Canny's hysteresis, the face detector and the
 * landmark predictor need the complete image: an output tile cannot be computed from a neighbourhood,
 * so every request asks for the whole input and the whole result is cached. */
#include "oft-config.h"
#include <glib/gi18n-lib.h>
#include "oft-gegl.h"

static GeglRectangle
whole_required_for_output (GeglOperation *operation, const gchar *input_pad, const GeglRectangle *roi)
{
  const GeglRectangle *in = gegl_operation_source_get_bounding_box (operation, "input");
  if (!in || gegl_rectangle_is_infinite_plane (in))
    return *roi;
  return *in;
}

static GeglRectangle
whole_cached_region (GeglOperation *operation, const GeglRectangle *roi)
{
  const GeglRectangle *in = gegl_operation_source_get_bounding_box (operation, "input");
  if (!in || gegl_rectangle_is_infinite_plane (in))
    return *roi;
  return *in;
}

void
oft_gegl_whole_image_class_init (GeglOperationClass *operation_class)
{
  operation_class->get_required_for_output = whole_required_for_output;
  operation_class->get_cached_region = whole_cached_region;
  operation_class->threaded = FALSE;
  operation_class->want_in_place = FALSE;
}

gboolean
oft_gegl_input_box (GeglOperation *operation, GeglBuffer *input, const char *op_name, GeglRectangle *box)
{
  const GeglRectangle *in = gegl_operation_source_get_bounding_box (operation, "input");
  if (!input || !in || gegl_rectangle_is_empty (in))
    {
      g_warning (_("%s: no input image"), op_name);
      return FALSE;
    }
  if (gegl_rectangle_is_infinite_plane (in))
    {
      g_warning (_("%s: the input is infinite; crop it first (e.g. gegl:crop)"), op_name);
      return FALSE;
    }
  if ((gint64) in->width * in->height > OFT_GEGL_MAX_PIXELS)
    {
      g_warning (_("%s: the input is %d×%d pixels, more than the %d this operation accepts"), op_name,
                 in->width, in->height, OFT_GEGL_MAX_PIXELS);
      return FALSE;
    }
  *box = *in;
  return TRUE;
}

guint8 *
oft_gegl_read_rgba8 (GeglBuffer *input, const GeglRectangle *box)
{
  guint8 *rgba = g_new (guint8, (gsize) 4 * box->width * box->height);
  gegl_buffer_get (input, box, 1.0, babl_format ("R'G'B'A u8"), rgba, GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
  return rgba;
}

void
oft_gegl_write_rgba8 (GeglBuffer *output, const GeglRectangle *box, const guint8 *rgba)
{
  gegl_buffer_set (output, box, 0, babl_format ("R'G'B'A u8"), rgba, GEGL_AUTO_ROWSTRIDE);
}

void
oft_gegl_write_opaque (GeglBuffer *output, const GeglRectangle *box, const guint8 *pixels, int channels)
{
  gsize n = (gsize) box->width * box->height;
  guint8 *rgba = g_new (guint8, 4 * n);
  for (gsize i = 0; i < n; i++)
    {
      const guint8 *p = pixels + i * channels;
      rgba[4 * i + 0] = p[0];
      rgba[4 * i + 1] = channels >= 3 ? p[1] : p[0];
      rgba[4 * i + 2] = channels >= 3 ? p[2] : p[0];
      rgba[4 * i + 3] = 255;
    }
  oft_gegl_write_rgba8 (output, box, rgba);
  g_free (rgba);
}

gboolean
oft_gegl_process_image (GeglOperation *operation, GeglBuffer *input, GeglBuffer *output, const char *op_name,
                        OftGeglImageFunc make, GMutex *lock)
{
  GeglRectangle box;
  if (!oft_gegl_input_box (operation, input, op_name, &box))
    return TRUE;
  guint8 *rgba = oft_gegl_read_rgba8 (input, &box);
  OftImage img = { box.width, box.height, 4, rgba };
  GError *error = NULL;
  gegl_operation_progress (operation, 0.0, "");
  if (lock)
    g_mutex_lock (lock);
  OftImage *out = make (operation, &img, &error);
  if (lock)
    g_mutex_unlock (lock);
  if (out)
    oft_gegl_write_opaque (output, &box, out->pixels, out->channels);
  else
    g_warning ("%s: %s", op_name, error->message);
  gegl_operation_progress (operation, 1.0, "");
  g_clear_error (&error);
  oft_image_free (out);
  g_free (rgba);
  return TRUE;
}
