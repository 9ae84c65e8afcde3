/* The plug-in's oft-preferences.json (plugin/prefs.c, compiled into this target with GIMP's headers but
 * without libgimp: gimp_directory() below points it at the fuzz folder), then model/adapter resolution
 * and a save of what was read. */
#include "fuzz-common.h"
#include "../../plugin/oft-plugin.h"

const gchar *
gimp_directory (void)
{
  return fuzz_dir ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *path = oft_prefs_path ();
  fuzz_write ("oft-preferences.json", data, size);
  OftPrefs p;
  GError *warning = NULL;
  oft_prefs_load (&p, &warning);
  fuzz_clear (&warning);
  /* fixed-size fields must hold NUL-terminated valid UTF-8 whatever the file said */
  if (!g_utf8_validate (p.model_folder, -1, NULL) || !g_utf8_validate (p.adapter_folder, -1, NULL) ||
      !g_utf8_validate (p.device, -1, NULL))
    abort ();
  GError *error = NULL;
  char *m = oft_prefs_resolve_model (&p, "", &error);
  fuzz_clear (&error);
  g_free (m);
  g_free (oft_prefs_resolve_adapter (&p, "a"));
  g_free (path);
  return 0;
}
