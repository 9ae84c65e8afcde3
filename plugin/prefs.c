/* Preferences of the OFT filters: a small JSON file in the user's GIMP profile folder, so that the
 * non-interactive signatures can leave the model and adapter folders empty. */
#include "oft-plugin.h"
#include <json-glib/json-glib.h>
#include <string.h>
#include "oft/oft.h"

void
oft_strlcpy (char *dst, const char *s, size_t size)
{
  size_t n = strlen (s);
  if (n >= size)
    {
      /* back up to a character start so the copy stays valid UTF-8 */
      const char *end = g_utf8_find_prev_char (s, s + size);
      n = end ? (size_t) (end - s) : 0;
    }
  memcpy (dst, s, n);
  dst[n] = '\0';
}

char *
oft_prefs_path (void)
{
  return g_build_filename (gimp_directory (), "oft-preferences.json", NULL);
}

static void
prefs_defaults (OftPrefs *p)
{
  memset (p, 0, sizeof *p);
  char *adapters = g_build_filename (gimp_directory (), "oft-adapters", NULL);
  oft_strlcpy (p->adapter_folder, adapters, sizeof p->adapter_folder);
  g_free (adapters);
  oft_strlcpy (p->device, "cpu", sizeof p->device);
}

static void
get_string (JsonObject *o, const char *key, char *dst, size_t size)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
    oft_strlcpy (dst, json_node_get_string (n), size);
}

void
oft_prefs_load (OftPrefs *p, GError **warning)
{
  prefs_defaults (p);
  char *path = oft_prefs_path ();
  if (g_file_test (path, G_FILE_TEST_EXISTS))
    {
      JsonParser *parser = json_parser_new ();
      GError *e = NULL;
      if (!json_parser_load_from_file (parser, path, &e))
        {
          g_set_error (warning, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: %s; using the defaults", path, e->message);
          g_error_free (e);
        }
      /* an empty file parses to no root at all */
      else if (!json_parser_get_root (parser) || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
        g_set_error (warning, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: expected a JSON object; using the defaults",
                     path);
      else
        {
          JsonObject *o = json_node_get_object (json_parser_get_root (parser));
          get_string (o, "model-folder", p->model_folder, sizeof p->model_folder);
          get_string (o, "adapter-folder", p->adapter_folder, sizeof p->adapter_folder);
          get_string (o, "device", p->device, sizeof p->device);
        }
      g_object_unref (parser);
    }
  g_free (path);
}

gboolean
oft_prefs_save (const OftPrefs *p, GError **error)
{
  OftDevice d;
  if (!oft_device_parse (p->device, &d, error))
    return FALSE;
  JsonBuilder *b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "model-folder");
  json_builder_add_string_value (b, p->model_folder);
  json_builder_set_member_name (b, "adapter-folder");
  json_builder_add_string_value (b, p->adapter_folder);
  json_builder_set_member_name (b, "device");
  json_builder_add_string_value (b, p->device);
  json_builder_end_object (b);
  JsonGenerator *g = json_generator_new ();
  json_generator_set_pretty (g, TRUE);
  JsonNode *root = json_builder_get_root (b);
  json_generator_set_root (g, root);
  gsize len;
  char *text = json_generator_to_data (g, &len);
  char *path = oft_prefs_path ();
  gboolean ok = oft_file_write_atomic (path, text, len, error);
  g_free (path);
  g_free (text);
  json_node_unref (root);
  g_object_unref (g);
  g_object_unref (b);
  return ok;
}

char *
oft_prefs_resolve_model (const OftPrefs *p, const char *model, GError **error)
{
  if (model && *model)
    return g_strdup (model);
  if (p->model_folder[0])
    return g_strdup (p->model_folder);
  const char *env = g_getenv ("OFT_DEFAULT_MODEL");
  if (env && *env)
    return g_strdup (env);
  char *bundled = oft_data_path ("default-model", NULL);
  if (bundled)
    return bundled;
  char *prefs = oft_prefs_path ();
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
               _("No model given: choose one in Filters > OFT > Preferences (stored in %s), pass a model path, "
                 "or set OFT_DEFAULT_MODEL"), prefs);
  g_free (prefs);
  return NULL;
}

char *
oft_prefs_resolve_adapter (const OftPrefs *p, const char *name)
{
  if (g_path_is_absolute (name) || g_file_test (name, G_FILE_TEST_EXISTS) || !p->adapter_folder[0])
    return g_strdup (name);
  return g_build_filename (p->adapter_folder, name, NULL);
}
