/* Resource limits: a model larger than the memory the process may have becomes an error that names the
 * size (not g_malloc's abort). The address space is capped with setrlimit(RLIMIT_AS) in a subprocess.
 * AddressSanitizer reserves terabytes of shadow memory and refuses huge requests itself, so under it
 * these tests skip. */
#include "test-common.h"
#include "oft/oft.h"
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

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

/* Current virtual size in bytes, from /proc/self/statm (pages). */
static size_t
vm_size (void)
{
  FILE *f = fopen ("/proc/self/statm", "r");
  unsigned long pages = 0;
  g_assert_nonnull (f);
  g_assert_cmpint (fscanf (f, "%lu", &pages), ==, 1);
  fclose (f);
  return (size_t) pages * (size_t) sysconf (_SC_PAGESIZE);
}

static void
cap_address_space (size_t extra)
{
  rlim_t cap = (rlim_t) (vm_size () + extra);
  struct rlimit rl = { .rlim_cur = cap, .rlim_max = cap };
  g_assert_cmpint (setrlimit (RLIMIT_AS, &rl), ==, 0);
}

/* An arena asked for more than the address space allows: NULL, the size in MiB and the arena's name. */
static void
test_arena_try_alloc (void)
{
  if (UNDER_ASAN)
    {
      g_test_skip ("AddressSanitizer handles huge allocations itself");
      return;
    }
  if (g_test_subprocess ())
    {
      cap_address_space ((size_t) 256 << 20);
      OftArena a;
      oft_arena_init (&a, "test-arena", 0);
      GError *error = NULL;
      g_assert_nonnull (oft_arena_try_alloc (&a, 1000, &error)); /* the first 64 MiB chunk fits */
      g_assert_null (oft_arena_try_alloc (&a, (size_t) 1 << 30, &error));
      g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED);
      printf ("%s\n", error->message);
      g_error_free (error);
      oft_arena_release (&a);
      return;
    }
  g_test_trap_subprocess (NULL, 60 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout ("*cannot allocate 1024.0 MiB for test-arena (64.0 MiB held already)*");
}

/* SD1.5's UNet (about 3.4 GB of f32 parameters) with 768 MiB of address space: loading fails cleanly,
 * naming the tensor and the MiB it needed. */
static void
test_unet_too_large (void)
{
  if (UNDER_ASAN)
    {
      g_test_skip ("AddressSanitizer handles huge allocations itself");
      return;
    }
  char *cfg = g_build_filename (g_getenv ("OFT_DATA_DIR"), "sd15-config", "unet", "config.json", NULL);
  if (g_test_subprocess ())
    {
      cap_address_space ((size_t) 768 << 20);
      GError *error = NULL;
      OftUnet *u = oft_unet_new_random (cfg, 1, &error);
      g_assert_null (u);
      g_assert_nonnull (error);
      printf ("%s\n", error->message);
      g_error_free (error);
      g_free (cfg);
      return;
    }
  g_test_trap_subprocess (NULL, 120 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout ("*tensor '*': cannot allocate *MiB for unet-params*");
  g_free (cfg);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/limits/arena-try-alloc", test_arena_try_alloc);
  g_test_add_func ("/limits/unet-too-large", test_unet_too_large);
  return g_test_run ();
}
