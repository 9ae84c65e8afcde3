#include "test-common.h"
#include <math.h>

void
test_init (int *argc, char ***argv)
{
  oft_runtime_tune_process (*argv);
  g_test_init (argc, argv, NULL);
}

char *
test_golden_path (const char *relative)
{
  const char *dir = g_getenv ("OFT_GOLDEN_DIR");
  if (!dir)
    dir = "../shared/golden";
  return g_build_filename (dir, relative, NULL);
}

OftSafetensors *
test_open_golden (const char *relative)
{
  char *path = test_golden_path (relative);
  GError *error = NULL;
  OftSafetensors *st = oft_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_free (path);
  return st;
}

float *
test_load (const OftSafetensors *st, const char *name, int64_t *numel)
{
  GError *error = NULL;
  float *x = oft_safetensors_dup_f32 (st, name, numel, &error);
  g_assert_no_error (error);
  return x;
}

static double
check (const char *what, double maxerr, double scale, double rel_tol)
{
  if (scale == 0)
    scale = 1; /* an all-zero reference: the tolerance becomes absolute */
  double bound = rel_tol * scale;
  g_test_message ("%-40s max abs err %.3g  (scale %.3g, bound %.3g)", what, maxerr, scale, bound);
  if (!(maxerr <= bound))
    g_test_fail_printf ("%s: max abs error %.3g exceeds %.3g (rel tol %.1e × scale %.3g)",
                        what, maxerr, bound, rel_tol, scale);
  return maxerr;
}

double
test_assert_close (const char *what, const float *got, const float *want, int64_t n, double rel_tol)
{
  double maxerr = 0, scale = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double e = fabs ((double) got[i] - (double) want[i]);
      if (!(e <= maxerr))
        maxerr = isnan (e) ? INFINITY : e;
      scale = fmax (scale, fabs ((double) want[i]));
    }
  return check (what, maxerr, scale, rel_tol);
}

double
test_assert_close_d (const char *what, const float *got, const double *want, int64_t n, double rel_tol)
{
  double maxerr = 0, scale = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double e = fabs ((double) got[i] - want[i]);
      if (!(e <= maxerr))
        maxerr = isnan (e) ? INFINITY : e;
      scale = fmax (scale, fabs (want[i]));
    }
  return check (what, maxerr, scale, rel_tol);
}

void
test_fill_uniform (float *x, int64_t n, float lo, float hi, guint32 seed)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (int64_t i = 0; i < n; i++)
    x[i] = lo + (hi - lo) * (float) g_rand_double (r);
  g_rand_free (r);
}

JsonNode *
test_load_json (const char *relative)
{
  char *path = test_golden_path (relative);
  JsonParser *p = json_parser_new ();
  GError *error = NULL;
  json_parser_load_from_file (p, path, &error);
  g_assert_no_error (error);
  JsonNode *root = json_node_copy (json_parser_get_root (p));
  g_object_unref (p);
  g_free (path);
  return root;
}

OftImage *
test_load_image (const char *relative)
{
  char *path = test_golden_path (relative);
  GError *error = NULL;
  OftImage *img = oft_image_load (path, &error);
  g_assert_no_error (error);
  g_free (path);
  return img;
}

OftPeftAdapter *
test_load_adapter (const char *relative_dir)
{
  char *dir = test_golden_path (relative_dir);
  GError *error = NULL;
  OftPeftAdapter *a = oft_peft_adapter_load (dir, &error);
  g_assert_no_error (error);
  g_assert_nonnull (a);
  g_free (dir);
  return a;
}

OftUnet *
test_load_unet (const char *relative_dir)
{
  char *dir = test_golden_path (relative_dir);
  GError *error = NULL;
  OftUnet *u = oft_unet_load (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  return u;
}

OftPipeline *
test_load_pipeline (const char *relative_dir)
{
  char *dir = test_golden_path (relative_dir);
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  return p;
}
