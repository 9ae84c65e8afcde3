/* The gegl-oft module: registers every oft: operation (one file each, built with GEGL_OP_BUNDLE) and
 * binds the project's message catalogue before their classes, whose titles and property labels are
 * translated when they are created. */
#include "oft-config.h"
#include <glib/gi18n-lib.h>
#include "oft-gegl.h"

G_MODULE_EXPORT const GeglModuleInfo *gegl_module_query (GTypeModule *module);
G_MODULE_EXPORT gboolean gegl_module_register (GTypeModule *module);

static const GeglModuleInfo modinfo = { GEGL_MODULE_ABI_VERSION };

G_MODULE_EXPORT const GeglModuleInfo *
gegl_module_query (GTypeModule *module)
{
  return &modinfo;
}

G_MODULE_EXPORT gboolean
gegl_module_register (GTypeModule *module)
{
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");

  gegl_op_oft_canny_register_type (module);
  gegl_op_oft_segmap_register_type (module);
  gegl_op_oft_landmarks_register_type (module);
  gegl_op_oft_generate_register_type (module);
  return TRUE;
}
