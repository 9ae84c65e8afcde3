/* safetensors reader: mmap + a header validated before any tensor is touched. */
#include "oft/safetensors.h"
#include "oft/error.h"
#include "safetensors-private.h"
#include <json-glib/json-glib.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct _OftSafetensors {
  char *path;
  void *map;
  size_t map_len;
  const uint8_t *buffer;      /* start of the data buffer */
  uint64_t buffer_len;
  OftSafetensorsEntry *entries;
  size_t n_entries;
  GHashTable *by_name;        /* name → entry */
  GHashTable *metadata;       /* may be NULL */
  GPtrArray *owned;           /* data buffers of a non-mapped container (.ckpt); NULL for a mapping */
};

gboolean
oft_io_fail (GError **error, int code, const char *path, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OFT_IO_ERROR, code, "%s: %s", path, msg);
  g_free (msg);
  return FALSE;
}

#define fail oft_io_fail

/* A JSON integer ≥ 0, or FALSE. json-glib reads integers as gint64 and fractions as double. */
static gboolean
node_uint (JsonNode *n, uint64_t *out)
{
  if (!n || JSON_NODE_TYPE (n) != JSON_NODE_VALUE || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  gint64 v = json_node_get_int (n);
  if (v < 0)
    return FALSE;
  *out = (uint64_t) v;
  return TRUE;
}

static int
cmp_entry_offset (const void *a, const void *b)
{
  const OftSafetensorsEntry *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static gboolean
parse_entry (OftSafetensorsEntry *e, const char *name, JsonNode *node, const char *path,
             uint64_t buffer_len, GError **error)
{
  if (JSON_NODE_TYPE (node) != JSON_NODE_OBJECT)
    return fail (error, OFT_ERROR_CORRUPT, path, "tensor '%s': header entry is not an object", name);
  JsonObject *o = json_node_get_object (node);
  e->name = name;
  /* the header bytes were valid UTF-8, but a \u escape (a lone surrogate) can still decode to junk */
  if (!g_utf8_validate (name, -1, NULL))
    return fail (error, OFT_ERROR_CORRUPT, path, "a tensor name is not valid UTF-8");

  JsonNode *dn = json_object_get_member (o, "dtype");
  const char *dtype = dn && JSON_NODE_HOLDS_VALUE (dn) && json_node_get_value_type (dn) == G_TYPE_STRING
                        ? json_node_get_string (dn) : NULL;
  if (!dtype)
    return fail (error, OFT_ERROR_CORRUPT, path, "tensor '%s': missing or non-string \"dtype\"", name);
  if (!oft_dtype_from_name (dtype, &e->dtype))
    return fail (error, OFT_ERROR_DTYPE, path,
                 "tensor '%s': unsupported dtype \"%s\" (expected F32, F16, BF16, I32 or I64)", name, dtype);

  JsonNode *sn = json_object_get_member (o, "shape");
  if (!sn || JSON_NODE_TYPE (sn) != JSON_NODE_ARRAY)
    return fail (error, OFT_ERROR_CORRUPT, path, "tensor '%s': missing or non-array \"shape\"", name);
  JsonArray *sa = json_node_get_array (sn);
  guint nd = json_array_get_length (sa);
  if (nd > OFT_MAX_DIMS)
    return fail (error, OFT_ERROR_SHAPE, path, "tensor '%s': %u dimensions (at most %d supported)",
                 name, nd, OFT_MAX_DIMS);
  e->ndim = (int) nd;
  for (guint i = 0; i < nd; i++)
    {
      uint64_t v;
      if (!node_uint (json_array_get_element (sa, i), &v) || v > (uint64_t) G_MAXINT64)
        return fail (error, OFT_ERROR_CORRUPT, path, "tensor '%s': shape[%u] is not a non-negative integer",
                     name, i);
      e->shape[i] = (int64_t) v;
    }

  JsonNode *on = json_object_get_member (o, "data_offsets");
  if (!on || JSON_NODE_TYPE (on) != JSON_NODE_ARRAY || json_array_get_length (json_node_get_array (on)) != 2)
    return fail (error, OFT_ERROR_CORRUPT, path, "tensor '%s': \"data_offsets\" must be [begin, end]", name);
  JsonArray *oa = json_node_get_array (on);
  if (!node_uint (json_array_get_element (oa, 0), &e->begin) ||
      !node_uint (json_array_get_element (oa, 1), &e->end))
    return fail (error, OFT_ERROR_CORRUPT, path, "tensor '%s': data_offsets are not non-negative integers", name);
  if (e->begin > e->end)
    return fail (error, OFT_ERROR_CORRUPT, path,
                 "tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "] end before they begin",
                 name, e->begin, e->end);
  if (e->end > buffer_len)
    return fail (error, OFT_ERROR_CORRUPT, path,
                 "tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "] outside the "
                 "%" G_GUINT64_FORMAT "-byte data buffer (truncated file?)", name, e->begin, e->end, buffer_len);

  int64_t numel;
  if (!oft_shape_numel_checked (e->ndim, e->shape, G_MAXINT64 / 8, &numel) ||
      (uint64_t) numel * oft_dtype_size (e->dtype) != e->end - e->begin)
    {
      char *s = oft_shape_to_string (e->ndim, e->shape);
      fail (error, OFT_ERROR_CORRUPT, path, "tensor '%s': %s %s needs a different byte count than its "
            "data_offsets span (%" G_GUINT64_FORMAT " bytes)", name, dtype, s, e->end - e->begin);
      g_free (s);
      return FALSE;
    }
  return TRUE;
}

static gboolean
parse_metadata (OftSafetensors *st, JsonNode *node, GError **error)
{
  if (JSON_NODE_TYPE (node) != JSON_NODE_OBJECT)
    return fail (error, OFT_ERROR_CORRUPT, st->path, "\"__metadata__\" is not an object");
  st->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  JsonObject *o = json_node_get_object (node);
  GList *members = json_object_get_members (o);
  gboolean ok = TRUE;
  for (GList *l = members; l; l = l->next)
    {
      JsonNode *v = json_object_get_member (o, l->data);
      if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_STRING)
        {
          ok = fail (error, OFT_ERROR_CORRUPT, st->path, "\"__metadata__\" value of '%s' is not a string",
                     (const char *) l->data);
          break;
        }
      g_hash_table_insert (st->metadata, g_strdup (l->data), g_strdup (json_node_get_string (v)));
    }
  g_list_free (members);
  return ok;
}

static gboolean
parse_header (OftSafetensors *st, const char *json, size_t len, GError **error)
{
  if (!g_utf8_validate (json, (gssize) len, NULL))
    return fail (error, OFT_ERROR_CORRUPT, st->path, "header is not valid UTF-8 (a tensor name or value)");
  if (memchr (json, '\0', len))
    return fail (error, OFT_ERROR_CORRUPT, st->path, "header contains a NUL byte");

  JsonParser *parser = json_parser_new ();
  GError *jerr = NULL;
  gboolean ok = FALSE;
  if (!json_parser_load_from_data (parser, json, (gssize) len, &jerr))
    {
      char *msg = g_utf8_make_valid (jerr->message, -1); /* json-glib quotes raw header bytes */
      fail (error, OFT_ERROR_CORRUPT, st->path, "header is not valid JSON: %s", msg);
      g_free (msg);
      g_error_free (jerr);
      goto out;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || JSON_NODE_TYPE (root) != JSON_NODE_OBJECT)
    {
      fail (error, OFT_ERROR_CORRUPT, st->path, "header is not a JSON object");
      goto out;
    }
  JsonObject *obj = json_node_get_object (root);
  GList *members = json_object_get_members (obj);
  st->entries = g_new0 (OftSafetensorsEntry, g_list_length (members) + 1);
  ok = TRUE;
  for (GList *l = members; l && ok; l = l->next)
    {
      const char *name = l->data;
      JsonNode *node = json_object_get_member (obj, name);
      if (strcmp (name, "__metadata__") == 0)
        ok = parse_metadata (st, node, error);
      else
        {
          char *owned = g_strdup (name);
          OftSafetensorsEntry *e = &st->entries[st->n_entries];
          /* json-glib keeps one member per name, so names are unique here */
          ok = parse_entry (e, owned, node, st->path, st->buffer_len, error);
          if (ok)
            {
              g_hash_table_insert (st->by_name, owned, e);
              st->n_entries++;
            }
          else
            g_free (owned);
        }
    }
  g_list_free (members);
  if (!ok)
    goto out;

  /* Sort by offset, then any overlap shows up between neighbours. Zero-size tensors overlap nothing. */
  qsort (st->entries, st->n_entries, sizeof *st->entries, cmp_entry_offset);
  uint64_t prev_end = 0;
  const char *prev_name = NULL;
  for (size_t i = 0; i < st->n_entries; i++)
    {
      OftSafetensorsEntry *e = &st->entries[i];
      if (e->begin == e->end)
        continue;
      if (prev_name && e->begin < prev_end)
        {
          ok = fail (error, OFT_ERROR_CORRUPT, st->path, "tensors '%s' and '%s' overlap in the data buffer",
                     prev_name, e->name);
          goto out;
        }
      prev_end = e->end;
      prev_name = e->name;
    }
  /* the hash table pointed at unsorted slots: rebuild it */
  g_hash_table_steal_all (st->by_name);
  for (size_t i = 0; i < st->n_entries; i++)
    {
      OftSafetensorsEntry *e = &st->entries[i];
      e->data = st->buffer + e->begin;
      g_hash_table_insert (st->by_name, (char *) e->name, e);
    }
out:
  g_object_unref (parser);
  return ok;
}

OftSafetensors *
oft_safetensors_open (const char *path, GError **error)
{
  OftSafetensors *st = g_new0 (OftSafetensors, 1);
  st->path = g_strdup (path);
  st->by_name = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      int e = errno;
      fail (error, e == ENOENT ? OFT_ERROR_NOT_FOUND : OFT_ERROR_FAILED, path, "cannot open: %s",
            g_strerror (e));
      goto err;
    }
  struct stat sb;
  if (fstat (fd, &sb) != 0 || !S_ISREG (sb.st_mode))
    {
      fail (error, OFT_ERROR_FAILED, path, "not a regular file");
      close (fd);
      goto err;
    }
  if (sb.st_size < 8)
    {
      fail (error, OFT_ERROR_CORRUPT, path, "file is %lld bytes, too short for a safetensors header",
            (long long) sb.st_size);
      close (fd);
      goto err;
    }
  st->map_len = (size_t) sb.st_size;
  st->map = mmap (NULL, st->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
  close (fd);
  if (st->map == MAP_FAILED)
    {
      st->map = NULL;
      fail (error, OFT_ERROR_FAILED, path, "cannot map: %s", g_strerror (errno));
      goto err;
    }

  const uint8_t *bytes = st->map;
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = (hlen << 8) | bytes[i];
  if (hlen > OFT_SAFETENSORS_MAX_HEADER)
    {
      fail (error, OFT_ERROR_CORRUPT, path, "header length %" G_GUINT64_FORMAT " exceeds the %u-byte limit",
            hlen, OFT_SAFETENSORS_MAX_HEADER);
      goto err;
    }
  if (hlen > st->map_len - 8)
    {
      fail (error, OFT_ERROR_CORRUPT, path,
            "header length %" G_GUINT64_FORMAT " runs past the end of the %zu-byte file (truncated?)",
            hlen, st->map_len);
      goto err;
    }
  if (hlen < 2 || bytes[8] != '{')
    {
      fail (error, OFT_ERROR_CORRUPT, path, "header does not start with a JSON object");
      goto err;
    }
  st->buffer = bytes + 8 + hlen;
  st->buffer_len = st->map_len - 8 - hlen;
  if (!parse_header (st, (const char *) bytes + 8, hlen, error))
    goto err;
  return st;

err:
  oft_safetensors_close (st);
  return NULL;
}

void
oft_safetensors_close (OftSafetensors *st)
{
  if (!st)
    return;
  if (st->map)
    munmap (st->map, st->map_len);
  g_hash_table_destroy (st->by_name); /* frees the names the entries point at */
  if (st->metadata)
    g_hash_table_destroy (st->metadata);
  if (st->owned)
    g_ptr_array_unref (st->owned);
  g_free (st->entries);
  g_free (st->path);
  g_free (st);
}

OftSafetensors *
oft_safetensors_new_owned (const char *path, OftSafetensorsEntry *entries, size_t n, GPtrArray *buffers,
                           GError **error)
{
  OftSafetensors *st = g_new0 (OftSafetensors, 1);
  st->path = g_strdup (path);
  st->by_name = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  st->entries = entries;
  st->owned = buffers;
  for (size_t i = 0; i < n; i++)
    {
      char *name = (char *) entries[i].name;
      if (g_hash_table_contains (st->by_name, name))
        {
          fail (error, OFT_ERROR_CORRUPT, path, "tensor name '%s' appears twice", name);
          for (size_t j = i; j < n; j++)
            g_free ((char *) entries[j].name);
          oft_safetensors_close (st);
          return NULL;
        }
      g_hash_table_insert (st->by_name, name, &entries[i]);
      st->n_entries++;
    }
  return st;
}

const char *
oft_safetensors_path (const OftSafetensors *st)
{
  return st->path;
}

size_t
oft_safetensors_count (const OftSafetensors *st)
{
  return st->n_entries;
}

const OftSafetensorsEntry *
oft_safetensors_entry (const OftSafetensors *st, size_t i)
{
  return i < st->n_entries ? &st->entries[i] : NULL;
}

const OftSafetensorsEntry *
oft_safetensors_find (const OftSafetensors *st, const char *name)
{
  return g_hash_table_lookup (st->by_name, name);
}

GHashTable *
oft_safetensors_metadata (const OftSafetensors *st)
{
  return st->metadata;
}

OftTensor
oft_safetensors_view (const OftSafetensorsEntry *e)
{
  OftTensor t = { .dtype = e->dtype, .ndim = e->ndim, .data = (void *) e->data };
  memcpy (t.shape, e->shape, sizeof t.shape);
  return t;
}

/* Files from other writers may leave a tensor misaligned in the mapping; the converters read
 * whole elements, so such data goes through an aligned copy first. */
static void
convert_view (float *dst, const OftTensor *t)
{
  size_t n = (size_t) oft_tensor_numel (t), es = oft_dtype_size (t->dtype);
  if ((uintptr_t) t->data % es == 0)
    {
      oft_convert_to_f32 (dst, t->data, t->dtype, n);
      return;
    }
  void *tmp = g_malloc (n * es + 1);
  memcpy (tmp, t->data, n * es);
  oft_convert_to_f32 (dst, tmp, t->dtype, n);
  g_free (tmp);
}

gboolean
oft_safetensors_read_f32 (const OftSafetensors *st, const char *name, float *dst,
                          int ndim, const int64_t *shape, GError **error)
{
  const OftSafetensorsEntry *e = oft_safetensors_find (st, name);
  if (!e)
    return fail (error, OFT_ERROR_NOT_FOUND, st->path, "no tensor named '%s'", name);
  OftTensor t = oft_safetensors_view (e);
  if (ndim >= 0 && !oft_tensor_shape_equals (&t, ndim, shape))
    {
      char *want = oft_shape_to_string (ndim, shape), *got = oft_shape_to_string (t.ndim, t.shape);
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_SHAPE, "%s: tensor '%s' has shape %s, expected %s",
                   st->path, name, got, want);
      g_free (want);
      g_free (got);
      return FALSE;
    }
  convert_view (dst, &t);
  return TRUE;
}

float *
oft_safetensors_dup_f32 (const OftSafetensors *st, const char *name, int64_t *numel, GError **error)
{
  const OftSafetensorsEntry *e = oft_safetensors_find (st, name);
  if (!e)
    {
      fail (error, OFT_ERROR_NOT_FOUND, st->path, "no tensor named '%s'", name);
      return NULL;
    }
  OftTensor t = oft_safetensors_view (e);
  int64_t n = oft_tensor_numel (&t);
  float *dst = g_new (float, n ? n : 1);
  convert_view (dst, &t);
  if (numel)
    *numel = n;
  return dst;
}
