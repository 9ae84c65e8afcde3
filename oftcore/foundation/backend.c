/* The run-time loader of the CUDA module. oftcore never links CUDA: it dlopen()s oftcore-cuda.so, checks
 * its ABI and initialises the device once per process, keeping the outcome (table or error). */
#include "oft/backend.h"
#include "oft/error.h"
#include "oft-config.h"
#include "../cuda/cuda-ops.h"
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

gboolean
oft_device_parse (const char *s, OftDevice *d, GError **error)
{
  static const struct { const char *name; OftDevice dev; } names[] = {
    { "cpu", OFT_DEVICE_CPU }, { "cuda", OFT_DEVICE_CUDA }, { "gpu", OFT_DEVICE_CUDA }, { "auto", OFT_DEVICE_AUTO },
  };
  for (size_t i = 0; s && i < G_N_ELEMENTS (names); i++)
    if (!strcasecmp (s, names[i].name))
      {
        *d = names[i].dev;
        return TRUE;
      }
  g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "unknown device '%s' (expected cpu, cuda or auto)",
               s ? s : "(null)");
  return FALSE;
}

const char *
oft_device_to_string (OftDevice d)
{
  switch (d)
    {
    case OFT_DEVICE_CPU: return "cpu";
    case OFT_DEVICE_CUDA: return "cuda";
    case OFT_DEVICE_AUTO: return "auto";
    }
  return "unknown";
}

static GMutex cuda_lock;
static gboolean cuda_tried;
static const OftCudaOps *cuda_ops;
static GError *cuda_error;
static char *cuda_name;

/* Whether this oftcore is the build tree's (then the build tree's module matches it). */
static gboolean
running_uninstalled (void)
{
  Dl_info info;
  if (!dladdr ((void *) oft_cuda_get, &info) || !info.dli_fname)
    return FALSE;
  char *dir = g_path_get_dirname (info.dli_fname);
  char *real = realpath (dir, NULL), *build = realpath (OFT_BUILD_OFTCORE_DIR, NULL);
  gboolean same = real && build && !strcmp (real, build);
  free (real);
  free (build);
  g_free (dir);
  return same;
}

static const OftCudaOps *
cuda_load (GError **error)
{
  /* OFT_CUDA_MODULE works in any build: the loader itself needs no CUDA */
  const char *env = g_getenv ("OFT_CUDA_MODULE");
  if (!OFT_HAVE_CUDA && !(env && *env))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND,
                   "this build has no CUDA backend (configure with -Dcuda=enabled)");
      return NULL;
    }
  const char *path = env && *env ? env
                     : running_uninstalled () ? OFT_CUDA_MODULE_BUILD_PATH : OFT_CUDA_MODULE_INSTALL_PATH;
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "CUDA module %s not found%s", path,
                   env && *env ? " (from OFT_CUDA_MODULE)" : "");
      return NULL;
    }
  /* RTLD_LOCAL: the module's symbols stay its own; it is never unloaded (CUDA's runtime dislikes that). */
  void *handle = dlopen (path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!handle)
    {
      const char *why = dlerror ();
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_FAILED, "cannot load the CUDA module %s: %s", path,
                   why ? why : "unknown dlopen error");
      return NULL;
    }
  const OftCudaOps *(*entry) (void) = NULL;
  *(void **) &entry = dlsym (handle, "oft_cuda_ops");
  if (!entry)
    {
      const char *why = dlerror ();
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "the CUDA module %s has no oft_cuda_ops entry point: %s",
                   path, why ? why : "symbol not found");
      return NULL;
    }
  const OftCudaOps *ops = entry ();
  if (!ops || ops->abi != OFT_CUDA_OPS_ABI)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "the CUDA module %s has ABI %d, this oftcore expects %d "
                   "(rebuild the module with this oftcore)", path, ops ? ops->abi : -1, OFT_CUDA_OPS_ABI);
      return NULL;
    }
  GError *err = NULL;
  char *name = NULL;
  if (!ops->init (&name, &err))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "the CUDA module %s loaded, but no CUDA device could "
                   "be initialised: %s", path, err ? err->message : "(no reason given)");
      g_clear_error (&err);
      g_free (name);
      return NULL;
    }
  cuda_name = name ? name : g_strdup ("CUDA device");
  return ops;
}

const OftCudaOps *
oft_cuda_get (GError **error)
{
  g_mutex_lock (&cuda_lock);
  if (!cuda_tried)
    {
      cuda_tried = TRUE;
      cuda_ops = cuda_load (&cuda_error);
    }
  const OftCudaOps *ops = cuda_ops;
  if (!ops)
    g_propagate_error (error, g_error_copy (cuda_error));
  g_mutex_unlock (&cuda_lock);
  return ops;
}

const char *
oft_cuda_device_name (void)
{
  g_mutex_lock (&cuda_lock);
  const char *name = cuda_ops ? cuda_name : NULL;
  g_mutex_unlock (&cuda_lock);
  return name;
}

gboolean
oft_device_resolve (OftDevice want, OftDevice *got, char **note, GError **error)
{
  if (note)
    *note = NULL;
  if (want == OFT_DEVICE_CPU)
    {
      *got = OFT_DEVICE_CPU;
      return TRUE;
    }
  GError *err = NULL;
  if (oft_cuda_get (&err))
    {
      *got = OFT_DEVICE_CUDA;
      return TRUE;
    }
  if (want == OFT_DEVICE_CUDA)
    {
      g_propagate_error (error, err);
      return FALSE;
    }
  *got = OFT_DEVICE_CPU;
  if (note)
    *note = g_strdup_printf ("using the CPU: %s", err->message);
  g_error_free (err);
  return TRUE;
}
