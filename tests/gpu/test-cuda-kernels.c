/* Placeholder until the forward-kernel tests land: skips (77) without a GPU. */
#include "test-common.h"
#include "cuda-kernels.h"
int
main (int argc, char **argv)
{
  char name[256];
  if (oftcu_init (0, name, sizeof name))
    return 77;
  test_init (&argc, &argv);
  return g_test_run ();
}
