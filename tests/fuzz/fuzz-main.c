/* A main() for the fuzz targets without libFuzzer: runs each file named on the command line (a folder:
 * each file in it, sorted) through LLVMFuzzerTestOneInput once and prints TAP. The normal build replays
 * the seed corpora and the regression inputs (tests/fuzz/regressions/<target>/) with it; AFL++ builds the
 * same file with afl-clang-fast and runs `fuzz-<target>-afl @@`. A crash is the test failing. */
#include "fuzz-common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
cmp_path (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static void
collect (const char *arg, GPtrArray *files)
{
  if (!g_file_test (arg, G_FILE_TEST_IS_DIR))
    {
      g_ptr_array_add (files, g_strdup (arg));
      return;
    }
  GDir *d = g_dir_open (arg, 0, NULL);
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *n;
  while (d && (n = g_dir_read_name (d)))
    if (n[0] != '.')
      g_ptr_array_add (names, g_build_filename (arg, n, NULL));
  if (d)
    g_dir_close (d);
  g_ptr_array_sort (names, cmp_path);
  for (guint i = 0; i < names->len; i++)
    collect (names->pdata[i], files);
  g_ptr_array_unref (names);
}

int
main (int argc, char **argv)
{
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  for (int i = 1; i < argc; i++)
    collect (argv[i], files);
  if (files->len == 0)
    {
      printf ("1..0 # SKIP no inputs\n");
      g_ptr_array_unref (files);
      return 0;
    }
  printf ("1..%u\n", files->len);
  for (guint i = 0; i < files->len; i++)
    {
      const char *f = files->pdata[i];
      char *data;
      gsize len;
      GError *error = NULL;
      if (!g_file_get_contents (f, &data, &len, &error))
        {
          printf ("not ok %u - %s: %s\n", i + 1, f, error->message);
          g_error_free (error);
          continue;
        }
      fflush (stdout);
      LLVMFuzzerTestOneInput ((const uint8_t *) data, len); /* a crash ends the program: the test fails */
      g_free (data);
      printf ("ok %u - %s\n", i + 1, f);
    }
  g_ptr_array_unref (files);
  return 0;
}
