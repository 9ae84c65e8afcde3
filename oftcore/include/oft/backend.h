/* Compute backends: the CPU (always) and CUDA, a separate module (oftcore-cuda.so, built with
 * -Dcuda=enabled) that oftcore loads at run time, so oftcore and everything built on it never link
 * libcudart and still run on machines without CUDA. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

typedef enum { OFT_DEVICE_CPU, OFT_DEVICE_CUDA, OFT_DEVICE_AUTO } OftDevice;

/* "cpu", "cuda" (or "gpu") and "auto", any case; otherwise FALSE and an OFT_ERROR_INVALID that lists them. */
gboolean    oft_device_parse (const char *s, OftDevice *d, GError **error);
const char *oft_device_to_string (OftDevice d);

/* The module's operations table (oftcore/cuda/cuda-ops.h). */
typedef struct OftCudaOps OftCudaOps;

/* Loads the CUDA module once per process and initialises its device: $OFT_CUDA_MODULE if set, else the
 * build tree's module when this oftcore runs uninstalled, else <libdir>/oftcore/oftcore-cuda.so. Checks the
 * module's ABI against this oftcore's. Success and failure are both cached: later calls return the same
 * table, or a copy of the first error (which names the path tried and dlerror() or the CUDA error).
 * Thread-safe. A build without CUDA fails with OFT_ERROR_NOT_FOUND unless $OFT_CUDA_MODULE names a module. */
const OftCudaOps *oft_cuda_get (GError **error);
/* The initialised device's name, or NULL when oft_cuda_get has not succeeded. */
const char *oft_cuda_device_name (void);

/* What `want` means here: CPU stays CPU; CUDA needs oft_cuda_get (else FALSE and its error); AUTO is CUDA
 * when the module loads and initialises, else the CPU, with the reason in *note (g_free; NULL when none). */
gboolean    oft_device_resolve (OftDevice want, OftDevice *got, char **note, GError **error);

G_END_DECLS
