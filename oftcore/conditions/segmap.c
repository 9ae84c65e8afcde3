/* Segmentation maps: the class palette (JSON in data/), nearest-colour quantisation of painted maps,
 * index maps back to colours. */
#include "oft/conditions.h"
#include "oft/error.h"
#include "conditions-internal.h"
#include "oft/runtime.h"
#include <json-glib/json-glib.h>
#include <string.h>

void
oft_palette_free (OftPalette *pal)
{
  if (!pal)
    return;
  if (pal->names)
    for (int i = 0; i < pal->n; i++)
      g_free (pal->names[i]);
  g_free (pal->names);
  g_free (pal->rgb);
  g_free (pal);
}

static gboolean
bad (GError **error, const char *path, const char *fmt, int k)
{
  char *what = g_strdup_printf (fmt, k);
  g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: %s", path, what);
  g_free (what);
  return FALSE;
}

static gboolean
read_class (OftPalette *pal, JsonNode *node, int k, const char *path, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return bad (error, path, "classes[%d]: expected an object {index, name, rgb}", k);
  JsonObject *o = json_node_get_object (node);
  JsonNode *idx = json_object_get_member (o, "index"), *name = json_object_get_member (o, "name");
  JsonNode *rgb = json_object_get_member (o, "rgb");
  if (!idx || json_node_get_value_type (idx) != G_TYPE_INT64 || json_node_get_int (idx) != k)
    return bad (error, path, "classes[%d].index: expected the integer %d (classes in index order)", k);
  if (!name || json_node_get_value_type (name) != G_TYPE_STRING)
    return bad (error, path, "classes[%d].name: expected a string", k);
  if (!rgb || !JSON_NODE_HOLDS_ARRAY (rgb) || json_array_get_length (json_node_get_array (rgb)) != 3)
    return bad (error, path, "classes[%d].rgb: expected [r, g, b]", k);
  JsonArray *a = json_node_get_array (rgb);
  for (guint c = 0; c < 3; c++)
    {
      JsonNode *v = json_array_get_element (a, c);
      if (json_node_get_value_type (v) != G_TYPE_INT64 || json_node_get_int (v) < 0 || json_node_get_int (v) > 255)
        return bad (error, path, "classes[%d].rgb: expected three integers 0..255", k);
      pal->rgb[k * 3 + c] = (uint8_t) json_node_get_int (v);
    }
  pal->names[k] = g_strdup (json_node_get_string (name));
  return TRUE;
}

OftPalette *
oft_palette_load (const char *path, GError **error)
{
  JsonParser *parser = json_parser_new ();
  OftPalette *pal = NULL;
  GError *local = NULL;
  if (!json_parser_load_from_file (parser, path, &local))
    {
      g_set_error (error, OFT_IO_ERROR, g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT)
                   ? OFT_ERROR_NOT_FOUND : OFT_ERROR_CORRUPT, "%s: %s", path, local->message);
      g_error_free (local);
      goto out;
    }
  JsonNode *root = json_parser_get_root (parser);
  JsonNode *classes = root && JSON_NODE_HOLDS_OBJECT (root)
                      ? json_object_get_member (json_node_get_object (root), "classes") : NULL;
  if (!classes || !JSON_NODE_HOLDS_ARRAY (classes))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: expected an object with a \"classes\" array", path);
      goto out;
    }
  JsonArray *arr = json_node_get_array (classes);
  int n = (int) json_array_get_length (arr);
  if (n < 1 || n > 255)  /* 255 is the ignore value of index maps */
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: %d classes: expected 1..255", path, n);
      goto out;
    }
  pal = g_new0 (OftPalette, 1);
  pal->n = n;
  pal->names = g_new0 (char *, n);
  pal->rgb = g_new0 (uint8_t, (size_t) n * 3);
  for (int k = 0; k < n; k++)
    if (!read_class (pal, json_array_get_element (arr, k), k, path, error))
      {
        oft_palette_free (pal);
        pal = NULL;
        break;
      }
out:
  g_object_unref (parser);
  return pal;
}

OftPalette *
oft_palette_load_ade20k (GError **error)
{
  char *path = oft_data_path ("ade20k-palette.json", error);
  if (!path)
    return NULL;
  OftPalette *pal = oft_palette_load (path, error);
  g_free (path);
  return pal;
}

void
oft_segmap_quantize (uint8_t *index, uint32_t *dist2, const uint8_t *rgb, int64_t npixels, int channels,
                     const OftPalette *pal)
{
  const uint8_t *P = pal->rgb;
  for (int64_t i = 0; i < npixels; i++)
    {
      const uint8_t *p = rgb + i * channels;
      if (channels == 4 && p[3] == 0)
        {
          index[i] = OFT_SEG_IGNORE;
          if (dist2)
            dist2[i] = 0;
          continue;
        }
      /* painted maps are mostly flat: reuse the previous answer when the colour repeats */
      if (i > 0 && memcmp (p, p - channels, 3) == 0 && index[i - 1] != OFT_SEG_IGNORE)
        {
          index[i] = index[i - 1];
          if (dist2)
            dist2[i] = dist2[i - 1];
          continue;
        }
      uint32_t best = UINT32_MAX;
      int bk = 0;
      for (int k = 0; k < pal->n; k++)
        {
          int dr = p[0] - P[k * 3], dg = p[1] - P[k * 3 + 1], db = p[2] - P[k * 3 + 2];
          uint32_t d = (uint32_t) (dr * dr + dg * dg + db * db);
          if (d < best)  /* strict: ties keep the lowest index */
            {
              best = d;
              bk = k;
            }
        }
      index[i] = (uint8_t) bk;
      if (dist2)
        dist2[i] = best;
    }
}

void
oft_segmap_colorize (uint8_t *rgb, const uint8_t *index, int64_t npixels, const OftPalette *pal)
{
  for (int64_t i = 0; i < npixels; i++)
    {
      uint8_t *o = rgb + i * 3;
      if (index[i] < pal->n)
        memcpy (o, pal->rgb + index[i] * 3, 3);
      else
        o[0] = o[1] = o[2] = 0;
    }
}
