/* Where bundled data lives: $OFT_DATA_DIR, then the installed data folder, then the source tree's data/
 * (uninstalled runs from a build folder). */
#include "oft/runtime.h"
#include "oft/error.h"
#include "oft-config.h"

char *
oft_data_path (const char *name, GError **error)
{
  const char *env = g_getenv ("OFT_DATA_DIR");
  const char *dirs[] = { env, OFT_DATADIR, OFT_SOURCE_DATA_DIR };
  GString *tried = g_string_new (NULL);
  for (size_t i = 0; i < G_N_ELEMENTS (dirs); i++)
    {
      if (!dirs[i] || !*dirs[i])
        continue;
      char *path = g_build_filename (dirs[i], name, NULL);
      if (g_file_test (path, G_FILE_TEST_EXISTS))
        {
          g_string_free (tried, TRUE);
          return path;
        }
      g_string_append_printf (tried, "%s%s", tried->len ? ", " : "", path);
      g_free (path);
    }
  g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "data file %s not found (looked at %s; set OFT_DATA_DIR "
               "to the folder that holds it)", name, tried->str);
  g_string_free (tried, TRUE);
  return NULL;
}
