/* The backend loader: device names, and oft_cuda_get's errors for a missing, broken or foreign module. Each
 * loader case runs in a subprocess because the outcome is cached for the process. */
#include "test-common.h"
#include "oft-config.h"
#include <dlfcn.h>
#include <stdio.h>
#include <glib/gstdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

static void
test_parse (void)
{
  struct { const char *s; OftDevice d; } ok[] = {
    { "cpu", OFT_DEVICE_CPU }, { "CUDA", OFT_DEVICE_CUDA }, { "gpu", OFT_DEVICE_CUDA }, { "Auto", OFT_DEVICE_AUTO },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (ok); i++)
    {
      OftDevice d = (OftDevice) -1;
      g_assert_true (oft_device_parse (ok[i].s, &d, NULL));
      g_assert_cmpint (d, ==, ok[i].d);
    }
  g_assert_cmpstr (oft_device_to_string (OFT_DEVICE_CUDA), ==, "cuda");
  const char *bad[] = { "tpu", "", "cuda0", NULL };
  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      GError *error = NULL;
      OftDevice d = OFT_DEVICE_CPU;
      g_assert_false (oft_device_parse (bad[i], &d, &error));
      g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
      g_assert_nonnull (strstr (error->message, "expected cpu, cuda or auto"));
      g_assert_nonnull (strstr (error->message, bad[i] ? bad[i] : "(null)"));
      g_clear_error (&error);
      g_assert_cmpint (d, ==, OFT_DEVICE_CPU);  /* untouched on error */
    }
}

/* In the subprocess: oft_cuda_get must fail with a message holding every string of `want`, twice (cached),
 * and AUTO must fall back to the CPU with that reason while CUDA reports it. */
static void
expect_cuda_failure (const char *const *want)
{
  for (int round = 0; round < 2; round++)
    {
      GError *error = NULL;
      g_assert_null (oft_cuda_get (&error));
      g_assert_nonnull (error);
      printf ("# oft_cuda_get: %s\n", error->message);
      for (const char *const *w = want; *w; w++)
        if (!strstr (error->message, *w))
          g_error ("expected '%s' in the error: %s", *w, error->message);
      g_clear_error (&error);
    }
  g_assert_null (oft_cuda_device_name ());
  OftDevice got = OFT_DEVICE_CUDA;
  char *note = NULL;
  g_assert_true (oft_device_resolve (OFT_DEVICE_AUTO, &got, &note, NULL));
  g_assert_cmpint (got, ==, OFT_DEVICE_CPU);
  g_assert_nonnull (note);
  g_assert_nonnull (strstr (note, want[0]));
  g_free (note);
  GError *error = NULL;
  g_assert_false (oft_device_resolve (OFT_DEVICE_CUDA, &got, NULL, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_true (oft_device_resolve (OFT_DEVICE_CPU, &got, NULL, NULL));
  g_assert_cmpint (got, ==, OFT_DEVICE_CPU);
}

static void
run_in_subprocess (const char *path)
{
  g_test_trap_subprocess (path, 0, G_TEST_SUBPROCESS_INHERIT_STDOUT | G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
}

static void
test_missing_module (void)
{
  if (g_test_subprocess ())
    {
      char *path = g_build_filename (g_get_tmp_dir (), "oft-no-such-dir", "oftcore-cuda.so", NULL);
      g_setenv ("OFT_CUDA_MODULE", path, TRUE);
      const char *want[] = { path, "not found", "OFT_CUDA_MODULE", NULL };
      expect_cuda_failure (want);
      g_free (path);
      return;
    }
  run_in_subprocess ("/backend/missing-module");
}

static void
test_not_a_module (void)
{
  if (g_test_subprocess ())
    {
      char *path = NULL;
      int fd = g_file_open_tmp ("oft-fake-module-XXXXXX.so", &path, NULL);
      g_assert_cmpint (fd, >=, 0);
      g_assert_cmpint (write (fd, "not an ELF file\n", 16), ==, 16);
      close (fd);
      g_setenv ("OFT_CUDA_MODULE", path, TRUE);
      const char *want[] = { path, "cannot load the CUDA module", NULL };
      expect_cuda_failure (want);
      g_unlink (path);
      g_free (path);
      return;
    }
  run_in_subprocess ("/backend/not-a-module");
}

/* A real shared library without the entry point: liboftcore itself. */
static void
test_no_entry_point (void)
{
  if (g_test_subprocess ())
    {
      Dl_info info;
      g_assert_true (dladdr ((void *) oft_version, &info) && info.dli_fname);
      g_setenv ("OFT_CUDA_MODULE", info.dli_fname, TRUE);
      const char *want[] = { info.dli_fname, "no oft_cuda_ops entry point", NULL };
      expect_cuda_failure (want);
      return;
    }
  run_in_subprocess ("/backend/no-entry-point");
}

/* Without OFT_CUDA_MODULE: a CPU-only build says how to get CUDA; a CUDA build loads its own module and
 * either initialises the GPU or (no GPU, no driver) says that the device failed, naming the module. */
static void
test_default_module (void)
{
  if (g_test_subprocess ())
    {
      g_unsetenv ("OFT_CUDA_MODULE");
#if !OFT_HAVE_CUDA
      const char *want[] = { "this build has no CUDA backend (configure with -Dcuda=enabled)", NULL };
      expect_cuda_failure (want);
#elif defined (OFT_TEST_CUDA_MODULE_BUILT)
      GError *error = NULL;
      const OftCudaOps *ops = oft_cuda_get (&error);
      if (ops)
        {
          printf ("# CUDA device: %s\n", oft_cuda_device_name ());
          g_assert_nonnull (oft_cuda_device_name ());
          g_assert_true (oft_cuda_get (NULL) == ops);
        }
      else
        {
          printf ("# no GPU here: %s\n", error->message);
          g_clear_error (&error);
          const char *want[] = { OFT_CUDA_MODULE_BUILD_PATH, "no CUDA device could be initialised", NULL };
          expect_cuda_failure (want);
        }
#endif
      return;
    }
#if OFT_HAVE_CUDA && !defined (OFT_TEST_CUDA_MODULE_BUILT)
  g_test_skip ("the CUDA module is not built yet (no cuda-module.c)");
  return;
#endif
  run_in_subprocess ("/backend/default-module");
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/backend/parse", test_parse);
  g_test_add_func ("/backend/missing-module", test_missing_module);
  g_test_add_func ("/backend/not-a-module", test_not_a_module);
  g_test_add_func ("/backend/no-entry-point", test_no_entry_point);
  g_test_add_func ("/backend/default-module", test_default_module);
  return g_test_run ();
}
