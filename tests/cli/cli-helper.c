/* Test helper for test-cli.sh (not installed):
 *   cli-helper make-base TENSORS OUT [f16|wide]  base weights from a golden case: weight/bias renamed to
 *       layer.weight/layer.bias (f16: weight stored as F16; wide: a [96, 48] weight that fits no case),
 *       plus an I64 tensor and metadata that the merge must pass through unchanged;
 *   cli-helper check-merged MERGED TENSORS [f16]  layer.weight against the case's weight_merged
 *       (rel 1e-5, or 1e-3 for f16 storage), the passed-through tensors bit for bit;
 *   cli-helper extract REF TENSOR INDEX OUT  row INDEX of TENSOR in REF, saved alone with a leading dim of 1
 *       (e.g. one prompt's initial noise for `oft generate --init-noise`);
 *   cli-helper compare-png A.png B.png  8-bit RGB images of the same size: passes when ≥ 99.9% of the
 *       values differ by at most one level (the golden README's rule for PNGs from float32 runs). */
#include "oft/oft.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <png.h>

static OftSafetensors *
open_or_die (const char *path)
{
  GError *error = NULL;
  OftSafetensors *st = oft_safetensors_open (path, &error);
  if (!st)
    {
      fprintf (stderr, "cli-helper: %s\n", error->message);
      exit (2);
    }
  return st;
}

static int
make_base (const char *tensors, const char *out, const char *variant)
{
  OftSafetensors *st = open_or_die (tensors);
  OftTensor w = oft_safetensors_view (oft_safetensors_find (st, "weight"));
  OftTensor b = oft_safetensors_view (oft_safetensors_find (st, "bias"));
  void *wdata = NULL;
  if (g_strcmp0 (variant, "f16") == 0)
    {
      int64_t n = oft_tensor_numel (&w);
      wdata = g_new (uint16_t, n);
      oft_convert_from_f32 (wdata, OFT_DTYPE_F16, w.data, (size_t) n);
      w.dtype = OFT_DTYPE_F16;
      w.data = wdata;
    }
  else if (g_strcmp0 (variant, "wide") == 0)
    {
      wdata = g_new0 (float, 96 * 48);
      w = (OftTensor) { OFT_DTYPE_F32, 2, { 96, 48 }, wdata };
    }
  int64_t step[2] = { 7, -3 };
  OftTensor extra = { OFT_DTYPE_I64, 1, { 2 }, step };
  const char *names[] = { "layer.weight", "layer.bias", "extra.step" };
  OftTensor ts[] = { w, b, extra };
  GHashTable *md = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (md, "format", "pt");
  g_hash_table_insert (md, "source", "cli test");
  GError *error = NULL;
  int rc = 0;
  if (!oft_safetensors_write (out, 3, names, ts, md, &error))
    {
      fprintf (stderr, "cli-helper: %s\n", error->message);
      g_error_free (error);
      rc = 2;
    }
  g_hash_table_destroy (md);
  g_free (wdata);
  oft_safetensors_close (st);
  return rc;
}

static int
check_merged (const char *merged, const char *tensors, const char *variant)
{
  OftSafetensors *m = open_or_die (merged), *g = open_or_die (tensors);
  gboolean f16 = g_strcmp0 (variant, "f16") == 0;
  int rc = 0;
  const OftSafetensorsEntry *mw = oft_safetensors_find (m, "layer.weight"),
                            *gw = oft_safetensors_find (g, "weight_merged");
  if (!mw || mw->dtype != (f16 ? OFT_DTYPE_F16 : OFT_DTYPE_F32) || mw->ndim != gw->ndim ||
      memcmp (mw->shape, gw->shape, sizeof mw->shape) != 0)
    {
      fprintf (stderr, "layer.weight missing or with the wrong dtype/shape\n");
      return 1;
    }
  int64_t n;
  float *got = oft_safetensors_dup_f32 (m, "layer.weight", &n, NULL);
  float *want = oft_safetensors_dup_f32 (g, "weight_merged", NULL, NULL);
  double err = 0, scale = 0;
  for (int64_t i = 0; i < n; i++)
    {
      err = fmax (err, fabs ((double) got[i] - want[i]));
      scale = fmax (scale, fabs ((double) want[i]));
      if (isnan (got[i]))
        err = INFINITY;
    }
  /* f32: a few roundings of a d-term dot product; f16 storage: half an f16 ulp (2^-11 relative) on top */
  double tol = f16 ? 1e-3 : 1e-5;
  printf ("layer.weight vs weight_merged: max abs err %.3g, scale %.3g, rel %.3g (tol %.0e)\n", err, scale,
          err / scale, tol);
  if (!(err <= tol * scale))
    rc = 1;
  g_free (got);
  g_free (want);
  /* passed through bit for bit */
  const OftSafetensorsEntry *mb = oft_safetensors_find (m, "layer.bias"), *gb = oft_safetensors_find (g, "bias");
  const OftSafetensorsEntry *ms = oft_safetensors_find (m, "extra.step");
  if (!mb || mb->end - mb->begin != gb->end - gb->begin || memcmp (mb->data, gb->data, gb->end - gb->begin) != 0)
    {
      fprintf (stderr, "layer.bias changed\n");
      rc = 1;
    }
  if (!ms || ms->dtype != OFT_DTYPE_I64 || ((const int64_t *) ms->data)[0] != 7 || ((const int64_t *) ms->data)[1] != -3)
    {
      fprintf (stderr, "extra.step changed\n");
      rc = 1;
    }
  GHashTable *md = oft_safetensors_metadata (m);
  if (!md || g_strcmp0 (g_hash_table_lookup (md, "source"), "cli test") != 0 ||
      g_strcmp0 (g_hash_table_lookup (md, "format"), "pt") != 0)
    {
      fprintf (stderr, "metadata not kept\n");
      rc = 1;
    }
  if (oft_safetensors_count (m) != 3)
    {
      fprintf (stderr, "expected 3 tensors in the merged file\n");
      rc = 1;
    }
  oft_safetensors_close (m);
  oft_safetensors_close (g);
  return rc;
}

static int
extract (const char *ref, const char *name, int index, const char *out)
{
  OftSafetensors *st = open_or_die (ref);
  const OftSafetensorsEntry *e = oft_safetensors_find (st, name);
  if (!e || e->ndim < 1 || index < 0 || index >= e->shape[0])
    {
      fprintf (stderr, "cli-helper: no row %d of tensor %s in %s\n", index, name, ref);
      return 2;
    }
  OftTensor t = oft_safetensors_view (e);
  size_t row = oft_tensor_nbytes (&t) / (size_t) t.shape[0];
  t.data = (char *) t.data + row * (size_t) index;
  t.shape[0] = 1;
  GError *error = NULL;
  const char *names[1] = { name };
  int rc = oft_safetensors_write (out, 1, names, &t, NULL, &error) ? 0 : 2;
  if (rc)
    fprintf (stderr, "cli-helper: %s\n", error->message);
  g_clear_error (&error);
  oft_safetensors_close (st);
  return rc;
}

static uint8_t *
read_png (const char *path, png_image *img)
{
  memset (img, 0, sizeof *img);
  img->version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file (img, path))
    {
      fprintf (stderr, "cli-helper: %s: %s\n", path, img->message);
      return NULL;
    }
  img->format = PNG_FORMAT_RGB;
  uint8_t *buf = g_malloc (PNG_IMAGE_SIZE (*img));
  if (!png_image_finish_read (img, NULL, buf, 0, NULL))
    {
      fprintf (stderr, "cli-helper: %s: %s\n", path, img->message);
      g_free (buf);
      return NULL;
    }
  return buf;
}

static int
compare_png (const char *a, const char *b)
{
  png_image ia, ib;
  uint8_t *pa = read_png (a, &ia), *pb = read_png (b, &ib);
  int rc = 1;
  if (pa && pb && ia.width == ib.width && ia.height == ib.height)
    {
      size_t n = (size_t) ia.width * ia.height * 3, exact = 0, within = 0;
      for (size_t i = 0; i < n; i++)
        {
          int d = abs ((int) pa[i] - (int) pb[i]);
          exact += d == 0;
          within += d <= 1;
        }
      printf ("%zu of %zu values equal, %zu within one level (%.4f%%)\n", exact, n, within, 100.0 * within / n);
      rc = within * 1000 >= n * 999 ? 0 : 1;
    }
  else if (pa && pb)
    fprintf (stderr, "cli-helper: %ux%u vs %ux%u\n", ia.width, ia.height, ib.width, ib.height);
  g_free (pa);
  g_free (pb);
  return rc;
}

int
main (int argc, char **argv)
{
  if (argc >= 6 && strcmp (argv[1], "extract") == 0)
    return extract (argv[2], argv[3], atoi (argv[4]), argv[5]);
  if (argc >= 4 && strcmp (argv[1], "compare-png") == 0)
    return compare_png (argv[2], argv[3]);
  if (argc >= 4 && strcmp (argv[1], "make-base") == 0)
    return make_base (argv[2], argv[3], argc > 4 ? argv[4] : NULL);
  if (argc >= 4 && strcmp (argv[1], "check-merged") == 0)
    return check_merged (argv[2], argv[3], argc > 4 ? argv[4] : NULL);
  fprintf (stderr, "usage: cli-helper make-base TENSORS OUT [f16|wide] | check-merged MERGED TENSORS [f16]\n");
  return 2;
}
