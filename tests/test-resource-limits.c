/* Resource limits: a model larger than the memory the process may have becomes an error that names the
 * size (not g_malloc's abort), and so do activations that do not fit (a generation or a training step
 * on too large an image: the arenas' checked sections), after which the process carries on. The
 * address space is capped with setrlimit(RLIMIT_AS) in a subprocess (relative to what the process
 * already maps, so AddressSanitizer's shadow reservation does not matter). Under AddressSanitizer the
 * subprocesses run with allocator_may_return_null=1: its allocator would otherwise end the program
 * itself on a refused request instead of returning NULL as the C library does. */
#include "test-common.h"
#include "oft/oft.h"
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

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

/* A checked section: a refused allocation gives NULL, and so does every later one until the section
 * ends with the error; the arena then works again. Outside a section the same request ends the program
 * with the size. (2^60 bytes: no system gives that, no limit needed.) */
static void
test_arena_checked (void)
{
  const size_t huge = (size_t) 1 << 58; /* floats: 2^60 bytes */
  if (g_test_subprocess ())
    {
      OftArena a;
      oft_arena_init (&a, "test-arena", 0);
      oft_arena_scratch (&a, huge);
      return;
    }
  g_test_trap_subprocess (NULL, 60 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*cannot allocate 1099511627776.0 MiB for test-arena*");
  g_test_trap_subprocess ("/limits/arena-checked/section", 60 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

static void
test_arena_checked_section (void)
{
  if (!g_test_subprocess ())
    {
      g_test_skip ("runs as a subprocess of /limits/arena-checked");
      return;
    }
  const size_t huge = (size_t) 1 << 58;
  OftArena a;
  oft_arena_init (&a, "test-arena", 0);
  OftArenaMark m = oft_arena_mark (&a);
  oft_arena_begin_checked (&a);
  g_assert_nonnull (oft_arena_scratch (&a, 16));
  g_assert_null (oft_arena_scratch (&a, huge));
  g_assert_true (oft_arena_failed (&a));
  g_assert_null (oft_arena_floats (&a, 16)); /* sticky: nothing computes on after a refusal */
  oft_arena_begin_checked (&a);              /* nested: reports a copy, keeps the failure */
  GError *error = NULL;
  g_assert_false (oft_arena_end_checked (&a, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED);
  g_clear_error (&error);
  g_assert_true (oft_arena_failed (&a));
  oft_arena_reset (&a, m);
  g_assert_false (oft_arena_end_checked (&a, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "cannot allocate 1099511627776.0 MiB for test-arena"));
  g_clear_error (&error);
  g_assert_false (oft_arena_failed (&a));
  g_assert_nonnull (oft_arena_scratch (&a, 16));
  oft_arena_begin_checked (&a);
  g_assert_true (oft_arena_end_checked (&a, &error));
  g_assert_no_error (error);
  oft_arena_release (&a);
}

static gboolean
generate (OftPipeline *p, int size, float *rgb, GError **error)
{
  OftGenerateParams g;
  oft_generate_params_init (&g);
  g.prompt = "a photo of a cat";
  g.steps = 2;
  g.guidance = 7.5f;
  g.seed = 3;
  g.width = g.height = size;
  return oft_pipeline_generate (p, &g, rgb, NULL, NULL, NULL, error);
}

/* The golden pipeline loaded, then 256 MiB of address space left: a 1024×1024 generation (its
 * self-attention alone would need 4 GiB), a VAE decode to 2048×2048 and a condition encoder on a
 * 4096×4096 condition fail with the size and what it was for; afterwards the same process generates
 * 64×64 exactly as before the failures. */
static void
test_generate_too_large (void)
{
  if (g_test_subprocess ())
    {
      OftPipeline *p = test_load_pipeline ("pipeline");
      GError *error = NULL;
      float *before = g_new (float, 3 * 64 * 64), *after = g_new (float, 3 * 64 * 64);
      float *big = g_new (float, (size_t) 3 * 2048 * 2048), *z = g_new0 (float, (size_t) 4 * 256 * 256);
      /* a control adapter's condition encoder on a 4096×4096 condition (its first im2col alone: 9 GiB) */
      int ch0 = oft_unet_control_channels (p->unet);
      OftCondEncoder *enc = oft_cond_encoder_new (3, ch0, "canny", 1);
      float *cond = g_new0 (float, (size_t) 3 * 4096 * 4096), *feat = g_new (float, (size_t) ch0 * 512 * 512);
      g_assert_true (generate (p, 64, before, &error));
      g_assert_no_error (error);
      cap_address_space ((size_t) 256 << 20);

      g_assert_false (generate (p, 1024, big, &error));
      g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED);
      printf ("generate: %s\n", error->message);
      g_clear_error (&error);
      g_assert_false (oft_vae_decode (p->vae, z, 1, 256, 256, big, &error));
      g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED);
      printf ("decode: %s\n", error->message);
      g_clear_error (&error);
      g_assert_false (oft_cond_encoder_forward (enc, feat, cond, 1, 4096, 4096, NULL, &error));
      g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED);
      printf ("condition: %s\n", error->message);
      g_clear_error (&error);

      g_assert_true (generate (p, 64, after, &error));
      g_assert_no_error (error);
      g_assert_cmpmem (before, 3 * 64 * 64 * sizeof (float), after, 3 * 64 * 64 * sizeof (float));
      printf ("64x64 after the failures: identical\n");
      g_free (before);
      g_free (after);
      g_free (big);
      g_free (z);
      g_free (cond);
      g_free (feat);
      oft_cond_encoder_free (enc);
      oft_pipeline_free (p);
      return;
    }
  g_test_trap_subprocess (NULL, 300 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout ("*generate: UNet forward of 2×4×128×128 latents: cannot allocate *MiB for "
                             "unet-activations*decode: VAE decode of latents 1×256×256: cannot allocate *MiB for "
                             "vae-activations*condition: condition encoder: cannot allocate *MiB for its activations*"
                             "64x64 after the failures: identical*");
}

/* A training step (the golden OFT adapter attached to the golden UNet) on 256×256 latents with 256 MiB
 * left fails with the size; a step on the golden batch then gives the same loss and gradient as before. */
static void
test_train_step_too_large (void)
{
  if (g_test_subprocess ())
    {
      OftPipeline *p = test_load_pipeline ("pipeline");
      OftPeftAdapter *a = test_load_adapter ("unet_oft/adapter");
      GError *error = NULL;
      g_assert_true (oft_unet_attach_trainable (p->unet, a, &error));
      OftSafetensors *st = test_open_golden ("unet_oft/reference.safetensors");
      float *x = test_load (st, "noisy_latents", NULL), *ctx = test_load (st, "encoder_hidden_states", NULL);
      float *target = test_load (st, "noise", NULL);
      float *t = test_load (st, "timesteps", NULL);
      size_t n = oft_peft_adapter_n_modules (a);
      int64_t n0 = oft_tensor_numel (&oft_peft_adapter_module (a, 0)->param);
      float **grads = g_new0 (float *, n), *g0 = g_new (float, n0);
      for (size_t i = 0; i < n; i++)
        grads[i] = g_new0 (float, oft_tensor_numel (&oft_peft_adapter_module (a, i)->param));
      float l0, l1, l2 = 0;
      g_assert_true (oft_unet_train_loss (p->unet, x, t, ctx, 2, 16, 16, 77, target, FALSE, &l0, grads, &error));
      g_assert_no_error (error);
      memcpy (g0, grads[0], n0 * sizeof (float));
      memset (grads[0], 0, n0 * sizeof (float));
      int64_t nbig = (int64_t) 4 * 256 * 256;
      float *bx = g_new0 (float, nbig), *btarget = g_new0 (float, nbig);
      cap_address_space ((size_t) 256 << 20);

      g_assert_false (oft_unet_train_loss (p->unet, bx, t, ctx, 1, 256, 256, 77, btarget, FALSE, &l2, grads, &error));
      g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED);
      printf ("train: %s\n", error->message);
      g_clear_error (&error);
      for (size_t i = 0; i < n; i++)
        memset (grads[i], 0, oft_tensor_numel (&oft_peft_adapter_module (a, i)->param) * sizeof (float));
      g_assert_true (oft_unet_train_loss (p->unet, x, t, ctx, 2, 16, 16, 77, target, FALSE, &l1, grads, &error));
      g_assert_no_error (error);
      g_assert_cmpmem (&l0, sizeof l0, &l1, sizeof l1);
      g_assert_cmpmem (g0, n0 * sizeof (float), grads[0], n0 * sizeof (float));
      printf ("golden batch after the failure: loss %.7f as before\n", l1);
      for (size_t i = 0; i < n; i++)
        g_free (grads[i]);
      g_free (grads);
      g_free (g0);
      g_free (bx);
      g_free (btarget);
      g_free (x);
      g_free (ctx);
      g_free (target);
      g_free (t);
      oft_safetensors_close (st);
      oft_unet_detach_trainable (p->unet);
      oft_peft_adapter_free (a);
      oft_pipeline_free (p);
      return;
    }
  g_test_trap_subprocess (NULL, 300 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout ("*train: UNet training step on 1×4×256×256 latents: cannot allocate *MiB for "
                             "unet-training*golden batch after the failure: loss * as before*");
}

int
main (int argc, char **argv)
{
  if (UNDER_ASAN)
    {
      /* read when a process starts: set for the subprocesses, which do all the refused allocations */
      const char *o = g_getenv ("ASAN_OPTIONS");
      char *opts = g_strconcat (o && *o ? o : "", o && *o ? ":" : "", "allocator_may_return_null=1", NULL);
      g_setenv ("ASAN_OPTIONS", opts, TRUE);
      g_free (opts);
    }
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/limits/arena-try-alloc", test_arena_try_alloc);
  g_test_add_func ("/limits/unet-too-large", test_unet_too_large);
  g_test_add_func ("/limits/arena-checked", test_arena_checked);
  g_test_add_func ("/limits/arena-checked/section", test_arena_checked_section);
  g_test_add_func ("/limits/generate-too-large", test_generate_too_large);
  g_test_add_func ("/limits/train-step-too-large", test_train_step_too_large);
  return g_test_run ();
}
