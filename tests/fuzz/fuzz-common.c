#include "fuzz-common.h"
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *tmp_dir;
static GHashTable *paths; /* name → full path */

static void
remove_dir (void)
{
  if (!tmp_dir)
    return;
  GDir *d = g_dir_open (tmp_dir, 0, NULL);
  const char *n;
  while (d && (n = g_dir_read_name (d)))
    {
      char *p = g_build_filename (tmp_dir, n, NULL);
      g_remove (p);
      g_free (p);
    }
  if (d)
    g_dir_close (d);
  g_rmdir (tmp_dir);
}

static void
quiet_log (const char *domain, GLogLevelFlags level, const char *message, gpointer data)
{
  /* a g_critical / g_error from file input is a bug: make it a crash the fuzzer reports */
  if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR))
    {
      fprintf (stderr, "%s: %s\n", domain ? domain : "", message);
      abort ();
    }
}

const char *
fuzz_dir (void)
{
  if (!tmp_dir)
    {
      const char *base = g_file_test ("/dev/shm", G_FILE_TEST_IS_DIR) && access ("/dev/shm", W_OK) == 0
                           ? "/dev/shm" : g_get_tmp_dir ();
      tmp_dir = g_build_filename (base, "oft-fuzz-XXXXXX", NULL);
      if (!g_mkdtemp (tmp_dir))
        {
          fprintf (stderr, "fuzz: cannot create %s: %s\n", tmp_dir, g_strerror (errno));
          abort ();
        }
      paths = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      atexit (remove_dir);
      g_log_set_default_handler (quiet_log, NULL);
    }
  return tmp_dir;
}

const char *
fuzz_write (const char *name, const void *data, size_t size)
{
  const char *dir = fuzz_dir ();
  char *path = g_hash_table_lookup (paths, name);
  if (!path)
    {
      path = g_build_filename (dir, name, NULL);
      g_hash_table_insert (paths, g_strdup (name), path);
    }
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    {
      fprintf (stderr, "fuzz: cannot write %s: %s\n", path, g_strerror (errno));
      abort ();
    }
  const uint8_t *p = data;
  while (size > 0)
    {
      ssize_t w = write (fd, p, size);
      if (w <= 0)
        {
          fprintf (stderr, "fuzz: writing %s: %s\n", path, g_strerror (errno));
          abort ();
        }
      p += w;
      size -= (size_t) w;
    }
  close (fd);
  return path;
}

void
fuzz_split (const uint8_t *data, size_t size, const uint8_t **part, size_t *len, int n)
{
  size_t sep = strlen (FUZZ_SEP);
  for (int i = 0; i < n; i++)
    {
      part[i] = data;
      len[i] = 0;
    }
  for (int i = 0; i < n; i++)
    {
      part[i] = data;
      const uint8_t *s = i < n - 1 && size >= sep ? memmem (data, size, FUZZ_SEP, sep) : NULL;
      len[i] = s ? (size_t) (s - data) : size;
      if (!s)
        return;
      size -= len[i] + sep;
      data = s + sep;
    }
}

void
fuzz_clear (GError **error)
{
  g_clear_error (error);
}
