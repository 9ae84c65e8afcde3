#include "config.h"
#include <math.h>
#include <string.h>

gboolean
oft_config_open (OftConfig *c, const char *path, GError **error)
{
  memset (c, 0, sizeof *c);
  c->path = g_strdup (path);
  c->parser = json_parser_new ();
  GError *e = NULL;
  if (!json_parser_load_from_file (c->parser, path, &e))
    {
      g_set_error (error, OFT_IO_ERROR, g_error_matches (e, G_FILE_ERROR, G_FILE_ERROR_NOENT) ? OFT_ERROR_NOT_FOUND
                   : OFT_ERROR_CORRUPT, "%s: %s", path, e->message);
      g_error_free (e);
      oft_config_close (c);
      return FALSE;
    }
  JsonNode *root = json_parser_get_root (c->parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: expected a JSON object", path);
      oft_config_close (c);
      return FALSE;
    }
  c->obj = json_node_get_object (root);
  return TRUE;
}

void
oft_config_close (OftConfig *c)
{
  g_clear_object (&c->parser);
  g_clear_pointer (&c->path, g_free);
  g_clear_error (&c->error);
  c->obj = NULL;
}

static JsonNode *
member (OftConfig *c, const char *key)
{
  if (c->error)
    return NULL;
  JsonNode *n = json_object_get_member (c->obj, key);
  return n && !JSON_NODE_HOLDS_NULL (n) ? n : NULL;
}

static void
bad (OftConfig *c, const char *key, const char *expected)
{
  if (!c->error)
    g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: \"%s\" must be %s", c->path, key, expected);
}

static gboolean
node_int (JsonNode *n, gint64 *v)
{
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  *v = json_node_get_int (n);
  return TRUE;
}

int
oft_config_int (OftConfig *c, const char *key, int def, int min, int max)
{
  JsonNode *n = member (c, key);
  gint64 v;
  if (!n)
    return def;
  if (!node_int (n, &v) || v < min || v > max)
    {
      char *e = g_strdup_printf ("an integer in [%d, %d]", min, max);
      bad (c, key, e);
      g_free (e);
      return def;
    }
  return (int) v;
}

double
oft_config_double (OftConfig *c, const char *key, double def, double min, double max)
{
  JsonNode *n = member (c, key);
  if (!n)
    return def;
  GType t = JSON_NODE_HOLDS_VALUE (n) ? json_node_get_value_type (n) : G_TYPE_INVALID;
  double v = t == G_TYPE_DOUBLE ? json_node_get_double (n) : t == G_TYPE_INT64 ? (double) json_node_get_int (n) : NAN;
  if (!(v >= min && v <= max))
    {
      char *e = g_strdup_printf ("a number in [%g, %g]", min, max);
      bad (c, key, e);
      g_free (e);
      return def;
    }
  return v;
}

gboolean
oft_config_bool (OftConfig *c, const char *key, gboolean def)
{
  JsonNode *n = member (c, key);
  if (!n)
    return def;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    {
      bad (c, key, "true or false");
      return def;
    }
  return json_node_get_boolean (n);
}

const char *
oft_config_string (OftConfig *c, const char *key, const char *def)
{
  JsonNode *n = member (c, key);
  if (!n)
    return def;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    {
      bad (c, key, "a string");
      return def;
    }
  return json_node_get_string (n);
}

gboolean
oft_config_int_list (OftConfig *c, const char *key, int *out, int n, int def, int min, int max)
{
  JsonNode *node = member (c, key);
  gint64 v = 0;
  char *expected = g_strdup_printf ("an integer in [%d, %d] or a list of %d of them", min, max, n);
  gboolean ok = TRUE;
  if (!node)
    for (int i = 0; i < n; i++)
      out[i] = def;
  else if (node_int (node, &v) && v >= min && v <= max)
    for (int i = 0; i < n; i++)
      out[i] = (int) v;
  else if (JSON_NODE_HOLDS_ARRAY (node) && json_array_get_length (json_node_get_array (node)) == (guint) n)
    {
      JsonArray *a = json_node_get_array (node);
      for (int i = 0; i < n && ok; i++)
        {
          ok = node_int (json_array_get_element (a, (guint) i), &v) && v >= min && v <= max;
          out[i] = (int) v;
        }
    }
  else
    ok = FALSE;
  if (!ok)
    bad (c, key, expected);
  g_free (expected);
  return ok && !c->error;
}

char **
oft_config_string_list (OftConfig *c, const char *key, int *n)
{
  JsonNode *node = member (c, key);
  if (!node || !JSON_NODE_HOLDS_ARRAY (node))
    {
      bad (c, key, "a list of strings");
      return NULL;
    }
  JsonArray *a = json_node_get_array (node);
  guint len = json_array_get_length (a);
  char **out = g_new0 (char *, len + 1);
  for (guint i = 0; i < len; i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_STRING)
        {
          bad (c, key, "a list of strings");
          g_strfreev (out);
          return NULL;
        }
      out[i] = g_strdup (json_node_get_string (e));
    }
  *n = (int) len;
  return out;
}

gboolean
oft_config_finish (OftConfig *c, GError **error)
{
  if (!c->error)
    return TRUE;
  g_propagate_error (error, c->error);
  c->error = NULL;
  return FALSE;
}
