/* Shared helpers for the GTest programs: golden data paths and tolerance checks that print the
 * measured error, so a failing run says by how much. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include "oft/oft.h"

/* Absolute path of a file in the golden folder (OFT_GOLDEN_DIR, set by meson). g_free. */
char *test_golden_path (const char *relative);
/* Opens a golden safetensors file or fails the test. */
OftSafetensors *test_open_golden (const char *relative);
/* Loads tensor `name` as f32 (g_free), failing the test if absent. */
float *test_load (const OftSafetensors *st, const char *name, int64_t *numel);

/* max |got − want| ≤ rel_tol · max |want| (the "relative to the tensor's scale" rule; absolute when want is all 0).
 * Prints the error and the scale; fails the test with `what` when over. Returns the max abs error. */
double test_assert_close (const char *what, const float *got, const float *want, int64_t n, double rel_tol);
/* Same with double-precision references (finite differences). */
double test_assert_close_d (const char *what, const float *got, const double *want, int64_t n, double rel_tol);

/* Deterministic uniform values in [lo, hi). */
void test_fill_uniform (float *x, int64_t n, float lo, float hi, guint32 seed);
