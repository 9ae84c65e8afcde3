/* The generation recipe stored on each generated layer as the "oft-recipe" parasite: everything needed
 * to generate the same pixels again. Versioned like darktable's module parameters so that a later
 * plug-in can read (and migrate) layers made by this one. */
#include "oft-plugin.h"
#include <json-glib/json-glib.h>
#include <string.h>

#define RECIPE_VERSION 1

static void
add_string (JsonBuilder *b, const char *key, const char *value)
{
  json_builder_set_member_name (b, key);
  json_builder_add_string_value (b, value);
}

static void
add_int (JsonBuilder *b, const char *key, gint64 value)
{
  json_builder_set_member_name (b, key);
  json_builder_add_int_value (b, value);
}

static void
add_double (JsonBuilder *b, const char *key, double value)
{
  json_builder_set_member_name (b, key);
  json_builder_add_double_value (b, value);
}

char *
oft_recipe_to_json (const OftGenerateVals *v, const char *model, char **adapters, gint64 seed, int width, int height)
{
  JsonBuilder *b = json_builder_new ();
  json_builder_begin_object (b);
  add_int (b, "recipe-version", RECIPE_VERSION);
  add_string (b, "oft-version", OFT_VERSION);
  add_string (b, "prompt", v->prompt);
  add_string (b, "negative", v->negative);
  add_string (b, "model", model);
  json_builder_set_member_name (b, "adapters");
  json_builder_begin_array (b);
  for (int i = 0; adapters && adapters[i]; i++)
    json_builder_add_string_value (b, adapters[i]);
  json_builder_end_array (b);
  add_int (b, "seed", seed);
  add_int (b, "steps", v->steps);
  add_double (b, "guidance", v->guidance);
  add_string (b, "scheduler", v->scheduler);
  add_int (b, "width", width);
  add_int (b, "height", height);
  json_builder_set_member_name (b, "condition");
  json_builder_begin_object (b);
  add_string (b, "type", v->condition);
  add_double (b, "scale", v->condition_scale);
  json_builder_end_object (b);
  json_builder_end_object (b);
  JsonGenerator *g = json_generator_new ();
  JsonNode *root = json_builder_get_root (b);
  json_generator_set_root (g, root);
  char *text = json_generator_to_data (g, NULL);
  json_node_unref (root);
  g_object_unref (g);
  g_object_unref (b);
  return text;
}

gboolean
oft_recipe_from_json (const char *json, OftGenerateVals *v, GError **error)
{
  JsonParser *parser = json_parser_new ();
  gboolean ok = FALSE;
  if (!json_parser_load_from_data (parser, json, -1, error))
    goto out;
  JsonNode *root = json_parser_get_root (parser);
  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, OFT_RECIPE_PARASITE ": expected a JSON object");
      goto out;
    }
  JsonObject *o = json_node_get_object (root);
  gint64 version = json_object_get_int_member_with_default (o, "recipe-version", 0);
  if (version < 1 || version > RECIPE_VERSION)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, OFT_RECIPE_PARASITE ": recipe-version %" G_GINT64_FORMAT
                   ", expected 1..%d", version, RECIPE_VERSION);
      goto out;
    }
  oft_generate_vals_init (v);
  oft_strlcpy (v->prompt, json_object_get_string_member_with_default (o, "prompt", ""), sizeof v->prompt);
  oft_strlcpy (v->negative, json_object_get_string_member_with_default (o, "negative", ""), sizeof v->negative);
  oft_strlcpy (v->model, json_object_get_string_member_with_default (o, "model", ""), sizeof v->model);
  oft_strlcpy (v->scheduler, json_object_get_string_member_with_default (o, "scheduler", "ddim"), sizeof v->scheduler);
  v->seed = (gint32) json_object_get_int_member_with_default (o, "seed", -1);
  v->steps = (gint32) json_object_get_int_member_with_default (o, "steps", v->steps);
  v->guidance = json_object_get_double_member_with_default (o, "guidance", v->guidance);
  v->width = (gint32) json_object_get_int_member_with_default (o, "width", 0);
  v->height = (gint32) json_object_get_int_member_with_default (o, "height", 0);
  GString *ad = g_string_new (NULL);
  JsonNode *an = json_object_get_member (o, "adapters");
  if (an && JSON_NODE_HOLDS_ARRAY (an))
    {
      JsonArray *a = json_node_get_array (an);
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          const char *s = json_node_get_string (json_array_get_element (a, i));
          if (s)
            g_string_append_printf (ad, "%s%s", ad->len ? ";" : "", s);
        }
    }
  oft_strlcpy (v->adapters, ad->str, sizeof v->adapters);
  g_string_free (ad, TRUE);
  JsonNode *cn = json_object_get_member (o, "condition");
  if (cn && JSON_NODE_HOLDS_OBJECT (cn))
    {
      JsonObject *c = json_node_get_object (cn);
      oft_strlcpy (v->condition, json_object_get_string_member_with_default (c, "type", "none"), sizeof v->condition);
      v->condition_scale = json_object_get_double_member_with_default (c, "scale", 1.0);
    }
  ok = TRUE;
out:
  g_object_unref (parser);
  return ok;
}
