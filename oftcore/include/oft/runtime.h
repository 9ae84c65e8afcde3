/* Process-level tuning that has to happen before the BLAS and OpenMP runtimes start. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

/* OpenBLAS picks its kernels once, when it is loaded, from CPUID; on virtual CPUs that report a
 * generic model it falls back to "Prescott" (SSE3 only, about 4× slower sgemm on this project's
 * machines). And OpenBLAS's pthreads and OpenMP's workers both spin after each job, fighting over
 * the cores. Unless the user set them, this sets OPENBLAS_CORETYPE to what the CPU's features allow
 * (SkylakeX for AVX-512, Haswell for AVX2+FMA) and OMP_WAIT_POLICY=passive, then re-executes the
 * program (/proc/self/exe with argv). Call first thing in main of a program, never in a library or
 * plug-in module; it returns only when nothing needed changing or the re-exec failed.
 * OFT_NO_REEXEC=1 turns it off. */
void oft_runtime_tune_process (char **argv);

/* A bundled data file or folder (e.g. "ade20k-palette.json", "sd15-config"): $OFT_DATA_DIR, then the
 * installed data folder (<prefix>/share/gimp-oft), then the source tree's data/ for uninstalled runs.
 * Returns the first path that exists (g_free), or NULL with an error listing where it looked. */
char *oft_data_path (const char *name, GError **error);

/* "<core> (<config>)" of the OpenBLAS in use, for reports. */
const char *oft_runtime_blas_description (void);

G_END_DECLS
