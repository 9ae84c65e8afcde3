/* Shared helpers for the GTest programs: golden data paths and tolerance checks that print the
 * measured error, so a failing run says by how much. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include "oft/oft.h"
#include <json-glib/json-glib.h>

/* 1 in a build with AddressSanitizer (GCC's macro, or clang's feature test): the runs it slows several
 * times use fewer cases or skip there. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* g_test_init after oft_runtime_tune_process: the tests run with the BLAS kernels and OpenMP wait
 * policy the `oft` command uses (the process may re-execute itself once, before any output). */
void test_init (int *argc, char ***argv);

/* Absolute path of a file in the golden folder (OFT_GOLDEN_DIR, set by meson). g_free. */
char *test_golden_path (const char *relative);
/* Opens a golden safetensors file or fails the test. */
OftSafetensors *test_open_golden (const char *relative);
/* Loads tensor `name` as f32 (g_free), failing the test if absent. */
float *test_load (const OftSafetensors *st, const char *name, int64_t *numel);

/* A golden JSON file's root (json_node_unref), an image, a PEFT adapter folder, a UNet or pipeline
 * folder; each fails the test when it cannot be read. */
JsonNode       *test_load_json (const char *relative);
OftImage       *test_load_image (const char *relative);
OftPeftAdapter *test_load_adapter (const char *relative_dir);
OftUnet        *test_load_unet (const char *relative_dir);
OftPipeline    *test_load_pipeline (const char *relative_dir);

/* max |got − want| ≤ rel_tol · max |want| (the "relative to the tensor's scale" rule; absolute when want is all 0).
 * Prints the error and the scale; fails the test with `what` when over. Returns the max abs error. */
double test_assert_close (const char *what, const float *got, const float *want, int64_t n, double rel_tol);
/* Same with double-precision references (finite differences). */
double test_assert_close_d (const char *what, const float *got, const double *want, int64_t n, double rel_tol);

/* Deterministic uniform values in [lo, hi). */
void test_fill_uniform (float *x, int64_t n, float lo, float hi, guint32 seed);
