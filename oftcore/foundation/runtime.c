#include "oft/runtime.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static gboolean
core_is (const char *core, const char *const *names)
{
  for (; *names; names++)
    if (!strcasecmp (core, *names))
      return TRUE;
  return FALSE;
}

/* The core OpenBLAS should use, or NULL when its own choice is already right. */
static const char *
wanted_core (void)
{
  static const char *const avx512[] = { "SkylakeX", "Cooperlake", "SapphireRapids", NULL };
  static const char *const avx2[] = { "Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", NULL };
  const char *core = openblas_get_corename ();
  __builtin_cpu_init ();
  if (__builtin_cpu_supports ("avx512f") && __builtin_cpu_supports ("avx512bw") &&
      __builtin_cpu_supports ("avx512dq") && __builtin_cpu_supports ("avx512vl"))
    return core_is (core, avx512) ? NULL : "SKYLAKEX";
  if (__builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma"))
    return core_is (core, avx2) ? NULL : "HASWELL";
  return NULL;
}

void
oft_runtime_tune_process (char **argv)
{
  if (g_strcmp0 (g_getenv ("OFT_NO_REEXEC"), "1") == 0)
    return;
  gboolean change = FALSE;
  const char *core = g_getenv ("OPENBLAS_CORETYPE") ? NULL : wanted_core ();
  if (core)
    {
      g_setenv ("OPENBLAS_CORETYPE", core, TRUE);
      change = TRUE;
    }
  if (!g_getenv ("OMP_WAIT_POLICY"))
    {
      g_setenv ("OMP_WAIT_POLICY", "passive", TRUE);
      change = TRUE;
    }
  if (!change)
    return;
  g_setenv ("OFT_NO_REEXEC", "1", TRUE); /* once is enough, whatever happens next */
  execv ("/proc/self/exe", argv);
  /* carry on with the defaults */
}

const char *
oft_runtime_blas_description (void)
{
  static char buf[256];
  snprintf (buf, sizeof buf, "%s (%s)", openblas_get_corename (), openblas_get_config ());
  return buf;
}
