/* oft:segmap: snaps a painted segmentation layer to the ADE20K palette, the colours ControlNet's
 * segmentation model was trained on (the same result as `oft segmap`). */
#include "oft-config.h"
#include <glib/gi18n-lib.h>

#ifdef GEGL_PROPERTIES

property_file_path (palette, _("Palette"), "")
  description (_("Palette JSON file; empty: the bundled ADE20K palette (150 classes)"))

#else

#define GEGL_OP_FILTER
#define GEGL_OP_NAME oft_segmap
#define GEGL_OP_C_SOURCE oft-segmap.c
#define GEGL_OP_BUNDLE
#include "gegl-op.h"
#include "oft-gegl.h"

/* The palette last used, kept for the process: loading means parsing a JSON file. */
static GMutex palette_lock;
static OftPalette *palette_cached;
static char *palette_cached_path;

/* Called with palette_lock held. */
static const OftPalette *
palette_get (const char *path, GError **error)
{
  const char *key = path ? path : "";
  if (palette_cached && g_strcmp0 (palette_cached_path, key) == 0)
    return palette_cached;
  OftPalette *pal = path ? oft_palette_load (path, error) : oft_palette_load_ade20k (error);
  if (!pal)
    return NULL;
  oft_palette_free (palette_cached);
  g_free (palette_cached_path);
  palette_cached = pal;
  palette_cached_path = g_strdup (key);
  return pal;
}

static void
prepare (GeglOperation *operation)
{
  const Babl *fmt = babl_format ("R'G'B'A u8");
  gegl_operation_set_format (operation, "input", fmt);
  gegl_operation_set_format (operation, "output", fmt);
}

static OftImage *
segmap_of (GeglOperation *operation, const OftImage *img, GError **error)
{
  GeglProperties *o = GEGL_PROPERTIES (operation);
  const OftPalette *pal = palette_get (oft_gegl_path_or_null (o->palette), error);
  if (!pal)
    return NULL;
  gint64 n = (gint64) img->width * img->height;
  guint8 *index = g_new (guint8, n);
  OftImage *out = oft_image_new (img->width, img->height, 3);
  /* fully transparent pixels get no class, which colorize paints black, as `oft segmap` does */
  oft_segmap_quantize (index, NULL, img->pixels, n, 4, pal);
  oft_segmap_colorize (out->pixels, index, n, pal);
  g_free (index);
  return out;
}

static gboolean
process (GeglOperation *operation, GeglBuffer *input, GeglBuffer *output, const GeglRectangle *result, gint level)
{
  return oft_gegl_process_image (operation, input, output, "oft:segmap", segmap_of, &palette_lock);
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
    "name", "oft:segmap",
    "title", _("Segmentation Map (OFT condition)"),
    "categories", "color:oft",
    "description", _("Snaps every pixel of a painted segmentation map to the nearest ADE20K palette colour, "
                     "the segmentation condition for OFT and ControlNet; transparent pixels become black"),
    NULL);
}

#endif
