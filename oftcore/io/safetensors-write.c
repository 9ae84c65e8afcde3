/* safetensors writer: the header byte-for-byte as the safetensors library writes it, and an atomic
 * replace (temporary file beside the target, fsync, rename, fsync of the folder). */
#include "oft/safetensors.h"
#include "oft/error.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int
errno_code (int e)
{
  if (e == ENOSPC || e == EDQUOT)
    return OFT_ERROR_NO_SPACE;
  return e == ENOENT ? OFT_ERROR_NOT_FOUND : OFT_ERROR_FAILED;
}

static gboolean
write_all (int fd, const void *data, size_t len)
{
  const uint8_t *p = data;
  while (len > 0)
    {
      /* cap each call: some kernels refuse single writes near 2 GiB */
      ssize_t w = write (fd, p, MIN (len, (size_t) 1 << 30));
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        {
          if (w == 0)
            errno = EIO; /* a write that makes no progress would loop forever */
          return FALSE;
        }
      p += w;
      len -= (size_t) w;
    }
  return TRUE;
}

/* Writes the concatenation of n chunks to `path` atomically. */
static gboolean
write_chunks_atomic (const char *path, size_t n, const void *const *chunks, const size_t *lens,
                     GError **error)
{
  char *dir = g_path_get_dirname (path);
  char *base = g_path_get_basename (path);
  char *name = g_strdup_printf (".%s.XXXXXX", base);
  char *tmp = g_build_filename (dir, name, NULL);
  g_free (name);
  g_free (base);
  gboolean ok = FALSE, created = FALSE;
  const char *what = "cannot create a temporary file beside it";

  int fd = g_mkstemp_full (tmp, O_RDWR | O_CLOEXEC, 0666);
  if (fd < 0)
    goto fail_errno;
  created = TRUE;

  /* keep the permissions of the file being replaced */
  struct stat sb;
  if (stat (path, &sb) == 0 && S_ISREG (sb.st_mode))
    (void) fchmod (fd, sb.st_mode & 07777);

  what = "write failed";
  for (size_t i = 0; i < n; i++)
    if (lens[i] && !write_all (fd, chunks[i], lens[i]))
      goto fail_errno;
  what = "fsync failed";
  if (fsync (fd) != 0)
    goto fail_errno;
  what = "close failed";
  int rc = close (fd);
  fd = -1;
  if (rc != 0)
    goto fail_errno;
  what = "cannot rename the temporary file over it";
  if (rename (tmp, path) != 0)
    goto fail_errno;

  /* make the rename itself durable; some file systems cannot fsync a folder, which is not an error */
  int dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0)
    {
      (void) fsync (dfd);
      close (dfd);
    }
  ok = TRUE;
  goto out;

fail_errno:;
  int e = errno;
  g_set_error (error, OFT_IO_ERROR, errno_code (e), "%s: %s: %s", path, what, g_strerror (e));
  if (fd >= 0)
    close (fd);
  if (created)
    unlink (tmp);
out:
  g_free (tmp);
  g_free (dir);
  return ok;
}

gboolean
oft_file_write_atomic (const char *path, const void *data, size_t len, GError **error)
{
  const void *chunks[1] = { data };
  size_t lens[1] = { len };
  return write_chunks_atomic (path, 1, chunks, lens, error);
}

int
oft_file_remove_stale_temps (const char *path)
{
  char *dir = g_path_get_dirname (path), *base = g_path_get_basename (path);
  size_t nb = strlen (base);
  GDir *d = g_dir_open (dir, 0, NULL);
  int removed = 0;
  for (const char *name; d && (name = g_dir_read_name (d));)
    {
      /* exactly what write_chunks_atomic creates: '.', the name, '.', six mkstemp characters */
      if (name[0] != '.' || strlen (name) != nb + 8 || strncmp (name + 1, base, nb) != 0 || name[nb + 1] != '.')
        continue;
      char *tmp = g_build_filename (dir, name, NULL);
      struct stat sb;
      if (lstat (tmp, &sb) == 0 && S_ISREG (sb.st_mode) && unlink (tmp) == 0)
        removed++;
      g_free (tmp);
    }
  if (d)
    g_dir_close (d);
  g_free (dir);
  g_free (base);
  return removed;
}

/* JSON string the way serde_json writes it: only '"', '\\' and control characters are escaped. */
static void
append_json_string (GString *s, const char *str)
{
  g_string_append_c (s, '"');
  for (const unsigned char *p = (const unsigned char *) str; *p; p++)
    switch (*p)
      {
      case '"': g_string_append (s, "\\\""); break;
      case '\\': g_string_append (s, "\\\\"); break;
      case '\b': g_string_append (s, "\\b"); break;
      case '\f': g_string_append (s, "\\f"); break;
      case '\n': g_string_append (s, "\\n"); break;
      case '\r': g_string_append (s, "\\r"); break;
      case '\t': g_string_append (s, "\\t"); break;
      default:
        if (*p < 0x20)
          g_string_append_printf (s, "\\u%04x", *p);
        else
          g_string_append_c (s, (char) *p);
      }
  g_string_append_c (s, '"');
}

/* The safetensors library orders tensors by its Dtype enum descending (I64, F32, I32, BF16, F16
 * here: larger alignment first, so every tensor starts aligned), then by name (bytewise). */
static int
dtype_rank (OftDType d)
{
  switch (d)
    {
    case OFT_DTYPE_F16: return 0;
    case OFT_DTYPE_BF16: return 1;
    case OFT_DTYPE_I32: return 2;
    case OFT_DTYPE_F32: return 3;
    case OFT_DTYPE_I64: return 4;
    default: return -1;
    }
}

typedef struct {
  const char *name;
  const OftTensor *t;
  size_t nbytes;
} Item;

static int
cmp_item (const void *a, const void *b)
{
  const Item *x = a, *y = b;
  int rx = dtype_rank (x->t->dtype), ry = dtype_rank (y->t->dtype);
  if (rx != ry)
    return ry - rx;
  return strcmp (x->name, y->name);
}

static int
cmp_str (const void *a, const void *b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static gboolean
invalid (GError **error, const char *path, const char *fmt, const char *name)
{
  g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, fmt, path, name);
  return FALSE;
}

gboolean
oft_safetensors_write (const char *path, size_t n, const char *const *names, const OftTensor *tensors,
                       GHashTable *metadata, GError **error)
{
  Item *items = g_new0 (Item, n ? n : 1);
  GHashTable *seen = g_hash_table_new (g_str_hash, g_str_equal);
  GString *h = NULL;
  gboolean ok = FALSE;

  for (size_t i = 0; i < n; i++)
    {
      const char *name = names[i];
      const OftTensor *t = &tensors[i];
      if (!name || !g_utf8_validate (name, -1, NULL))
        {
          invalid (error, path, "%s: tensor name%s is not valid UTF-8", name ? "" : " (NULL)");
          goto out;
        }
      if (strcmp (name, "__metadata__") == 0)
        {
          invalid (error, path, "%s: '%s' is reserved for the metadata and cannot name a tensor", name);
          goto out;
        }
      if (!g_hash_table_add (seen, (gpointer) name))
        {
          invalid (error, path, "%s: tensor name '%s' appears twice", name);
          goto out;
        }
      if (dtype_rank (t->dtype) < 0)
        {
          invalid (error, path, "%s: tensor '%s' has an unknown dtype", name);
          goto out;
        }
      int64_t numel;
      if (t->ndim < 0 || t->ndim > OFT_MAX_DIMS ||
          !oft_shape_numel_checked (t->ndim, t->shape, G_MAXINT64 / 8, &numel))
        {
          invalid (error, path, "%s: tensor '%s' has an invalid shape", name);
          goto out;
        }
      items[i] = (Item) { name, t, (size_t) numel * oft_dtype_size (t->dtype) };
      if (items[i].nbytes && !t->data)
        {
          invalid (error, path, "%s: tensor '%s' has no data", name);
          goto out;
        }
    }
  qsort (items, n, sizeof *items, cmp_item);

  h = g_string_new ("{");
  gboolean first = TRUE;
  if (metadata)
    {
      guint nk;
      const char **keys = (const char **) g_hash_table_get_keys_as_array (metadata, &nk);
      qsort (keys, nk, sizeof *keys, cmp_str); /* the library's HashMap has no order; sorted is stable */
      g_string_append (h, "\"__metadata__\":{");
      for (guint k = 0; k < nk; k++)
        {
          const char *v = g_hash_table_lookup (metadata, keys[k]);
          if (!g_utf8_validate (keys[k], -1, NULL) || !v || !g_utf8_validate (v, -1, NULL))
            {
              invalid (error, path, "%s: metadata entry '%s' is not a valid UTF-8 string pair",
                       g_utf8_validate (keys[k], -1, NULL) ? keys[k] : "?");
              g_free (keys);
              goto out;
            }
          if (k)
            g_string_append_c (h, ',');
          append_json_string (h, keys[k]);
          g_string_append_c (h, ':');
          append_json_string (h, v);
        }
      g_string_append_c (h, '}');
      g_free (keys);
      first = FALSE;
    }
  uint64_t offset = 0;
  for (size_t i = 0; i < n; i++)
    {
      const OftTensor *t = items[i].t;
      if (!first)
        g_string_append_c (h, ',');
      first = FALSE;
      append_json_string (h, items[i].name);
      g_string_append_printf (h, ":{\"dtype\":\"%s\",\"shape\":[", oft_dtype_name (t->dtype));
      for (int d = 0; d < t->ndim; d++)
        g_string_append_printf (h, "%s%" G_GINT64_FORMAT, d ? "," : "", t->shape[d]);
      g_string_append_printf (h, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]}",
                              offset, offset + items[i].nbytes);
      offset += items[i].nbytes;
    }
  g_string_append_c (h, '}');
  while (h->len % 8)
    g_string_append_c (h, ' ');
  if (h->len > OFT_SAFETENSORS_MAX_HEADER)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, "%s: header of %zu bytes exceeds the %u-byte limit",
                   path, h->len, OFT_SAFETENSORS_MAX_HEADER);
      goto out;
    }

  uint8_t len_le[8];
  for (int i = 0; i < 8; i++)
    len_le[i] = (uint8_t) ((uint64_t) h->len >> (8 * i));
  const void **chunks = g_new (const void *, n + 2);
  size_t *lens = g_new (size_t, n + 2);
  chunks[0] = len_le, lens[0] = 8;
  chunks[1] = h->str, lens[1] = h->len;
  for (size_t i = 0; i < n; i++)
    chunks[i + 2] = items[i].t->data, lens[i + 2] = items[i].nbytes;
  ok = write_chunks_atomic (path, n + 2, chunks, lens, error);
  g_free (chunks);
  g_free (lens);

out:
  if (h)
    g_string_free (h, TRUE);
  g_hash_table_destroy (seen);
  g_free (items);
  return ok;
}
