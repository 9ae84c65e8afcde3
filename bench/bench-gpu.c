/* The GPU bench on SD1.5 shapes with random weights made in-process (data/sd15-config):
 *   bench-gpu [--quick] [--reps N] [--fp32] [--train-only [--train-steps N] [--warmup N]]
 * UNet CFG step (one batch-2 forward: 64×64 latent, 77×768 context; replayed as a CUDA graph, and eager
 * with OFT_CUDA_GRAPHS=0) and VAE decode of a 64×64 latent to
 * 512², in bf16 (--fp32 adds the UNet in fp32), through oft_*_set_device and the CUDA module: the same path
 * oft generate takes, host buffers in and out included. Warm-up, then the median of N; milliseconds, it/s,
 * peak GPU memory (weights + activations) and the UNet's rate against the GPU's dense bf16 peak
 * (oft_unet_forward_flops; the peak from the device name, or $OFT_BF16_PEAK_TFLOPS). Then an OFT training
 * step (bench_train), checkpointed and not. No pass/fail on time. --train-only runs the training step alone,
 * e.g. over the CPU stand-in module (OFT_CUDA_MODULE=build/tests/oftcore-cuda-mock.so), whose peak memory
 * counts what the module allocates as the GPU's does: a step there takes minutes, not milliseconds.
 * Exits 77 when no GPU can be used. PyTorch on an H200 (../shared/docs/baselines.md): 26.2 ms eager bf16,
 * 7.9 ms compiled with CUDA graphs; VAE decode 23.4 ms fp16. */
#include "oft/oft.h"
#include "oftcore/cuda/cuda-ops.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double
now (void)
{
  return g_get_monotonic_time () / 1e6;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static double
median (double *t, int n)
{
  qsort (t, n, sizeof *t, cmp_double);
  return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/* Dense bf16 tensor-core peak of the device, TFLOP/s; 0 when unknown */
static double
bf16_peak (const char *name)
{
  const char *env = g_getenv ("OFT_BF16_PEAK_TFLOPS");
  if (env)
    return g_ascii_strtod (env, NULL);
  if (!name)
    return 0;
  if (strstr (name, "H100") && (strstr (name, "PCIe") || strstr (name, "PCIE")))
    return 756;
  if (strstr (name, "H100") || strstr (name, "H200") || strstr (name, "H800") || strstr (name, "GH200"))
    return 989;
  if (strstr (name, "A100"))
    return 312;
  return 0;
}

static void
fill_normal (float *x, int64_t n, guint64 seed)
{
  OftRng r;
  oft_rng_seed (&r, seed);
  oft_rng_normal (&r, x, n);
}

static gboolean
fail (const char *what, GError *error)
{
  printf ("%s: FAILED: %s\n", what, error ? error->message : "?");
  g_clear_error (&error);
  return FALSE;
}

typedef struct {
  double ms_median, ms_min, tflops, peak_gib;
  double ms_adamw;     /* training: the host AdamW's share of the median step */
  double ms_cayley;    /* training: the host's Cayley transform and its backward over all modules (what the
                        * step ran on the host before oftcu_cayley_*; now a baseline, not part of the step) */
  double ms_forward;   /* training: one forward of the same batch with the rotations (inference path) */
  gboolean ok;
} Result;

/* graphs: FALSE sets OFT_CUDA_GRAPHS=0 (every forward eager); TRUE replays the forward's CUDA graph, which
 * the module captures once an eager forward of a shape allocated nothing (so at least 5 warm-up forwards) */
static Result
bench_unet (const OftCudaOps *ops, OftUnet *u, OftDType dt, gboolean graphs, int warmup, int reps)
{
  Result r = { 0 };
  GError *error = NULL;
  g_setenv ("OFT_CUDA_GRAPHS", graphs ? "1" : "0", TRUE);
  warmup = MAX (warmup, 5);
  const char *dts = dt == OFT_DTYPE_F32 ? "fp32" : "bf16";
  double t0 = now ();
  if (!oft_unet_set_device (u, OFT_DEVICE_CUDA, dt, &error))
    {
      fail ("UNet upload", error);
      return r;
    }
  printf ("UNet %s upload: %.2f s (CUDA graphs %s)\n", dts, now () - t0, graphs ? "on" : "off");
  const int B = 2, h = 64, w = 64, T = 77, ctx_dim = oft_unet_context_dim (u), C = oft_unet_in_channels (u);
  int64_t n = (int64_t) B * C * h * w;
  float *x = g_new (float, n), *ctx = g_new (float, (int64_t) B * T * ctx_dim), *out = g_new (float, n);
  float t[2] = { 500, 500 };
  fill_normal (x, n, 1);
  fill_normal (ctx, (int64_t) B * T * ctx_dim, 2);
  ops->reset_peak ();
  double *times = g_new (double, reps);
  for (int i = 0; i < warmup + reps; i++)
    {
      double s = now ();
      if (!oft_unet_forward (u, x, t, ctx, B, h, w, T, out, &error))
        {
          fail ("UNet forward", error);
          goto out;
        }
      if (i >= warmup)
        times[i - warmup] = (now () - s) * 1e3;
    }
  if (!graphs)
    {
      /* one more eager forward with OFT_CUDA_PROFILE=1: the module prints "profile:" lines, GPU time per kind
       * of kernel (events around each launch, so a little slower than the timed runs) */
      g_setenv ("OFT_CUDA_PROFILE", "1", TRUE);
      gboolean ok = oft_unet_forward (u, x, t, ctx, B, h, w, T, out, &error);
      g_unsetenv ("OFT_CUDA_PROFILE");
      if (!ok)
        {
          fail ("UNet forward (profiled)", error);
          goto out;
        }
    }
  for (int64_t i = 0; i < n; i++)
    if (!isfinite (out[i]))
      {
        printf ("UNet %s: the output is not finite at %" G_GINT64_FORMAT "\n", dts, i);
        goto out;
      }
  r.ms_median = median (times, reps);
  r.ms_min = times[0];
  r.tflops = oft_unet_forward_flops (u, B, h, w, T) / (r.ms_median / 1e3) / 1e12;
  r.peak_gib = ops->peak_bytes () / (double) (1 << 30);
  r.ok = TRUE;
out:
  oft_unet_set_device (u, OFT_DEVICE_CPU, dt, NULL);
  g_unsetenv ("OFT_CUDA_GRAPHS");
  g_free (times);
  g_free (x);
  g_free (ctx);
  g_free (out);
  return r;
}

/* One OFT training step as `oft train` takes it on the GPU: batch 1, 64×64 latent (512²), 77×768 context,
 * block size 32 on every to_q/to_k/to_v/to_out.0 (attn1 and attn2), bf16 base weights, fp32 rotations
 * (exact Cayley and its backward on the GPU, the packed parameters up and their gradients down each step),
 * the loss and backward on the GPU, then AdamW on the host. checkpoint: recompute each unit in the backward
 * (oft train --gradient-checkpointing). */
static Result
bench_train (const OftCudaOps *ops, OftUnet *u, gboolean checkpoint, int warmup, int reps, int *n_modules)
{
  Result r = { 0 };
  GError *error = NULL;
  if (!oft_unet_set_device (u, OFT_DEVICE_CUDA, OFT_DTYPE_BF16, &error))
    {
      fail ("UNet upload", error);
      return r;
    }
  OftAdapterConfig cfg = { .kind = OFT_ADAPTER_OFT, .oft_block_size = 32, .eps = 6e-5 };
  const char *const targets[] = { "to_q", "to_k", "to_v", "to_out.0", NULL };
  OftPeftAdapter *a = oft_peft_adapter_new (&cfg, targets);
  GPtrArray *mods = oft_unet_list_linear_modules (u);
  guint64 seed = 10;
  for (guint i = 0; i < mods->len; i++)
    {
      const OftUnetLinear *l = g_ptr_array_index (mods, i);
      gboolean hit = FALSE;
      for (int k = 0; targets[k]; k++)
        hit |= g_str_has_suffix (l->path, targets[k]) && l->path[strlen (l->path) - strlen (targets[k]) - 1] == '.';
      if (!hit)
        continue;
      int b = 32, rows = l->in_features / b;
      int64_t n = (int64_t) rows * b * (b - 1) / 2;
      float *p = g_new (float, n);
      fill_normal (p, n, seed++);
      for (int64_t j = 0; j < n; j++)
        p[j] *= 1e-3f;  /* a rotation near I, not I, so that nothing is skipped as trivial */
      OftTensor t = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { rows, b * (b - 1) / 2 }, .data = p };
      gboolean ok = oft_peft_adapter_add_module (a, l->path, &t, NULL, &error);
      g_free (p);
      if (!ok)
        {
          fail ("OFT adapter", error);
          g_ptr_array_unref (mods);
          goto out;
        }
    }
  g_ptr_array_unref (mods);
  size_t nm = oft_peft_adapter_n_modules (a);
  *n_modules = (int) nm;
  if (!oft_unet_attach_trainable (u, a, &error))
    {
      fail ("attaching the adapter for training", error);
      goto out;
    }
  const int B = 1, h = 64, w = 64, T = 77, ctx_dim = oft_unet_context_dim (u), C = oft_unet_in_channels (u);
  int64_t n = (int64_t) B * C * h * w;
  float *x = g_new (float, n), *ctx = g_new (float, (int64_t) B * T * ctx_dim), *target = g_new (float, n);
  float t[1] = { 500 };
  fill_normal (x, n, 4);
  fill_normal (ctx, (int64_t) B * T * ctx_dim, 5);
  fill_normal (target, n, 6);
  float **grads = g_new0 (float *, nm), **m = g_new0 (float *, nm), **v = g_new0 (float *, nm);
  int64_t *sz = g_new (int64_t, nm);
  for (size_t i = 0; i < nm; i++)
    {
      sz[i] = oft_tensor_numel (&oft_peft_adapter_module (a, i)->param);
      grads[i] = g_new0 (float, sz[i]);
      m[i] = g_new0 (float, sz[i]);
      v[i] = g_new0 (float, sz[i]);
    }
  OftAdamW opt;
  oft_adamw_init (&opt);
  ops->reset_peak ();
  double *times = g_new (double, reps);
  gboolean ok = TRUE;
  for (int i = 0; i < warmup + reps && ok; i++)
    {
      double st = now ();
      float loss = 0;
      for (size_t j = 0; j < nm; j++)
        memset (grads[j], 0, sizeof (float) * sz[j]);
      ok = oft_unet_train_loss (u, x, t, ctx, B, h, w, T, target, checkpoint, &loss, grads, &error);
      if (!ok)
        {
          fail ("OFT training step", error);
          break;
        }
      double sa = now ();
      for (size_t j = 0; j < nm; j++)
        oft_adamw_step (&opt, oft_peft_adapter_module (a, j)->param.data, m[j], v[j], grads[j], sz[j], i + 1, 1e-4);
      if (i >= warmup)
        {
          times[i - warmup] = (now () - st) * 1e3;
          r.ms_adamw += (now () - sa) * 1e3 / reps;
        }
      if (!isfinite (loss))
        {
          printf ("OFT training step: the loss is %g\n", loss);
          ok = FALSE;
        }
    }
  if (ok)
    {
      /* the baseline the GPU's Cayley replaced: R from the parameters and the parameters' gradient from
       * dR on the host, every module (as oft_unet_train_loss did it: modules in parallel) */
      float **R = g_new0 (float *, nm), **cache = g_new0 (float *, nm);
      for (size_t j = 0; j < nm; j++)
        {
          R[j] = g_new (float, sz[j] / (32 * 31 / 2) * 32 * 32);
          cache[j] = g_new (float, sz[j] / (32 * 31 / 2) * 32 * 32);
        }
      double sc = now ();
      for (int k = 0; k < 3; k++)
        {
#pragma omp parallel for schedule(dynamic, 1)
          for (int j = 0; j < (int) nm; j++)
            {
              int rows = (int) (sz[j] / (32 * 31 / 2));
              OftSpec spec = { .d = rows * 32, .b = 32, .n_blocks = rows, .eps = 6e-5 };
              const float *p = oft_peft_adapter_module (a, j)->param.data;
              oft_rotation_forward (R[j], cache[j], p, &spec);
              oft_rotation_backward (grads[j], R[j], cache[j], p, &spec);
            }
        }
      r.ms_cayley = (now () - sc) * 1e3 / 3;
      /* the forward alone, same batch and rotations, for the backward's share */
      float *out = g_new (float, n);
      double fbest = INFINITY;
      for (int k = 0; k < 3 && ok; k++)
        {
          double sf = now ();
          ok = oft_unet_forward (u, x, t, ctx, B, h, w, T, out, &error);
          fbest = fmin (fbest, (now () - sf) * 1e3);
        }
      if (!ok)
        fail ("UNet forward with the adapter attached", error);
      r.ms_forward = fbest;
      /* one more step and one more eager forward with OFT_CUDA_PROFILE=1: "profile:" lines, GPU time per
       * kind of kernel (events around each launch, so a little slower than the timed runs) */
      g_setenv ("OFT_CUDA_PROFILE", "1", TRUE);
      g_setenv ("OFT_CUDA_GRAPHS", "0", TRUE);
      float loss = 0;
      if (ok && !(ok = oft_unet_train_loss (u, x, t, ctx, B, h, w, T, target, checkpoint, &loss, grads, &error)))
        fail ("OFT training step (profiled)", error);
      if (ok && !(ok = oft_unet_forward (u, x, t, ctx, B, h, w, T, out, &error)))
        fail ("UNet forward with the adapter attached (profiled)", error);
      g_unsetenv ("OFT_CUDA_PROFILE");
      g_unsetenv ("OFT_CUDA_GRAPHS");
      g_free (out);
      for (size_t j = 0; j < nm; j++)
        {
          g_free (R[j]);
          g_free (cache[j]);
        }
      g_free (R);
      g_free (cache);
      r.ms_median = median (times, reps);
      r.ms_min = times[0];
      r.peak_gib = ops->peak_bytes () / (double) (1 << 30);
      r.ok = TRUE;
    }
  for (size_t i = 0; i < nm; i++)
    {
      g_free (grads[i]);
      g_free (m[i]);
      g_free (v[i]);
    }
  g_free (grads);
  g_free (m);
  g_free (v);
  g_free (sz);
  g_free (times);
  g_free (x);
  g_free (ctx);
  g_free (target);
out:
  oft_unet_detach_trainable (u);
  oft_unet_set_device (u, OFT_DEVICE_CPU, OFT_DTYPE_BF16, NULL);
  oft_peft_adapter_free (a);
  return r;
}

static Result
bench_vae (const OftCudaOps *ops, OftVae *v, OftDType dt, int warmup, int reps)
{
  Result r = { 0 };
  GError *error = NULL;
  if (!oft_vae_set_device (v, OFT_DEVICE_CUDA, dt, &error))
    {
      fail ("VAE upload", error);
      return r;
    }
  const int h = 64, w = 64, f = oft_vae_factor (v), L = oft_vae_latent_channels (v);
  float *z = g_new (float, (int64_t) L * h * w), *img = g_new (float, (int64_t) 3 * h * f * w * f);
  fill_normal (z, (int64_t) L * h * w, 3);
  ops->reset_peak ();
  double *times = g_new (double, reps);
  for (int i = 0; i < warmup + reps; i++)
    {
      double s = now ();
      if (!oft_vae_decode (v, z, 1, h, w, img, &error))
        {
          fail ("VAE decode", error);
          goto out;
        }
      if (i >= warmup)
        times[i - warmup] = (now () - s) * 1e3;
    }
  /* one more decode with OFT_CUDA_PROFILE=1: "profile:" lines, GPU time per kind of kernel */
  g_setenv ("OFT_CUDA_PROFILE", "1", TRUE);
  if (!oft_vae_decode (v, z, 1, h, w, img, &error))
    {
      g_unsetenv ("OFT_CUDA_PROFILE");
      fail ("VAE decode (profiled)", error);
      goto out;
    }
  g_unsetenv ("OFT_CUDA_PROFILE");
  r.ms_median = median (times, reps);
  r.ms_min = times[0];
  r.peak_gib = ops->peak_bytes () / (double) (1 << 30);
  r.ok = TRUE;
out:
  oft_vae_set_device (v, OFT_DEVICE_CPU, dt, NULL);
  g_free (times);
  g_free (z);
  g_free (img);
  return r;
}

/* The UNet CFG step (graph, eager, fp32 when asked) and the VAE decode, with their summary lines; 0, or 1
 * when one failed */
static int
bench_inference (const OftCudaOps *ops, OftUnet *u, const char *vcfg, const char *name, double peak, gboolean fp32,
                 int warmup, int reps)
{
  GError *error = NULL;
  int rc = 0;
  Result ub = bench_unet (ops, u, OFT_DTYPE_BF16, TRUE, warmup, reps), uf = { 0 };
  Result ue = bench_unet (ops, u, OFT_DTYPE_BF16, FALSE, warmup, reps);
  if (fp32)
    uf = bench_unet (ops, u, OFT_DTYPE_F32, TRUE, warmup, reps);
  double gflop = oft_unet_forward_flops (u, 2, 64, 64, 77) / 1e9;

  double t0 = now ();
  OftVae *v = oft_vae_new_random (vcfg, 1234, &error);
  if (!v)
    {
      fail ("SD1.5 VAE", error);
      return 1;
    }
  printf ("SD1.5 VAE, random weights: %.1f s on the host\n", now () - t0);
  Result vb = bench_vae (ops, v, OFT_DTYPE_BF16, warmup, reps);
  oft_vae_free (v);

  printf ("\n== bench-gpu summary (%s; median of %d after %d warm-up; host buffers in and out included) ==\n",
          name ? name : "?", reps, warmup);
  char share[64] = "";
  if (peak > 0)
    g_snprintf (share, sizeof share, " = %.1f%% of the bf16 peak", 100 * ub.tflops / peak);
  if (ub.ok)
    printf ("summary: UNet CFG step bf16 (batch 2, 64x64, 77x768, %.0f GFLOP, CUDA graph): %.2f ms median (min %.2f), "
            "%.1f it/s, %.1f TFLOP/s%s, peak GPU memory %.2f GiB\n", gflop, ub.ms_median, ub.ms_min,
            1e3 / ub.ms_median, ub.tflops, share, ub.peak_gib);
  else
    {
      printf ("summary: UNet CFG step bf16: FAILED\n");
      rc = 1;
    }
  if (ue.ok)
    printf ("summary: UNet CFG step bf16 eager (OFT_CUDA_GRAPHS=0): %.2f ms median (min %.2f), %.1f TFLOP/s; "
            "the graph saves %.2f ms\n", ue.ms_median, ue.ms_min, ue.tflops, ue.ms_median - ub.ms_median);
  else
    {
      printf ("summary: UNet CFG step bf16 eager: FAILED\n");
      rc = 1;
    }
  if (fp32)
    {
      if (uf.ok)
        printf ("summary: UNet CFG step fp32 (TF32 %s): %.2f ms median, %.1f TFLOP/s, peak GPU memory %.2f GiB\n",
                g_strcmp0 (g_getenv ("OFT_CUDA_TF32"), "0") ? "on" : "off", uf.ms_median, uf.tflops, uf.peak_gib);
      else
        {
          printf ("summary: UNet CFG step fp32: FAILED\n");
          rc = 1;
        }
    }
  if (vb.ok)
    printf ("summary: VAE decode bf16 512x512: %.2f ms median (min %.2f), peak GPU memory %.2f GiB\n",
            vb.ms_median, vb.ms_min, vb.peak_gib);
  else
    {
      printf ("summary: VAE decode bf16 512x512: FAILED\n");
      rc = 1;
    }
  printf ("summary: PyTorch on an H200 (baselines.md): UNet CFG step bf16 26.2 ms eager, 7.9 ms compiled; "
          "VAE decode fp16 23.4 ms\n");
  return rc;
}

int
main (int argc, char **argv)
{
  gboolean quick = FALSE, fp32 = FALSE, train_only = FALSE;
  int reps = 20, train_steps = -1, warmup = -1;
  for (int i = 1; i < argc; i++)
    if (!strcmp (argv[i], "--quick"))
      quick = TRUE;
    else if (!strcmp (argv[i], "--train-only"))
      train_only = TRUE;
    else if (!strcmp (argv[i], "--train-steps") && i + 1 < argc)
      train_steps = MAX (1, atoi (argv[i + 1])), i++;
    else if (!strcmp (argv[i], "--warmup") && i + 1 < argc)
      warmup = MAX (0, atoi (argv[i + 1])), i++;
    else if (!strcmp (argv[i], "--fp32"))
      fp32 = TRUE;
    else if (!strcmp (argv[i], "--reps") && i + 1 < argc)
      reps = MAX (1, atoi (argv[i + 1])), i++;
    else
      {
        fprintf (stderr, "usage: bench-gpu [--quick] [--reps N] [--fp32] [--train-only [--train-steps N] "
                 "[--warmup N]]\n");
        return 2;
      }
  if (quick)
    reps = MIN (reps, 5);
  if (warmup < 0)
    warmup = quick ? 1 : 3;
  setvbuf (stdout, NULL, _IOLBF, 0);
  GError *error = NULL;
  const OftCudaOps *ops = oft_cuda_get (&error);
  if (!ops)
    {
      printf ("bench-gpu: SKIP, no usable GPU: %s\n", error->message);
      g_clear_error (&error);
      return 77;
    }
  const char *name = oft_cuda_device_name ();
  double peak = bf16_peak (name);
  char peak_s[64] = "unknown; set OFT_BF16_PEAK_TFLOPS";
  if (peak > 0)
    g_snprintf (peak_s, sizeof peak_s, "%.0f", peak);
  printf ("device: %s (dense bf16 peak %s TFLOP/s)\n", name ? name : "?", peak_s);
  char *dir = oft_sd15_config_dir ();
  char *ucfg = g_build_filename (dir, "unet", "config.json", NULL);
  char *vcfg = g_build_filename (dir, "vae", "config.json", NULL);
  int rc = 0;

  double t0 = now ();
  OftUnet *u = oft_unet_new_random (ucfg, 1234, &error);
  if (!u)
    {
      fail ("SD1.5 UNet", error);
      return 1;
    }
  printf ("SD1.5 UNet, random weights: %.1f s on the host\n", now () - t0);
  if (!train_only)
    rc = bench_inference (ops, u, vcfg, name, peak, fp32, warmup, reps);
  /* training last, after the inference summary is out: whatever happens here, those numbers are kept */
  int n_mod = 0;
  int treps = train_steps > 0 ? train_steps : quick ? 3 : 10;
  Result tc = bench_train (ops, u, TRUE, warmup, treps, &n_mod);
  Result tn = bench_train (ops, u, FALSE, warmup, treps, &n_mod);
  oft_unet_free (u);
  for (int k = 0; k < 2; k++)
    {
      const Result *tr = k == 0 ? &tc : &tn;
      const char *how = k == 0 ? "checkpointed" : "no checkpointing";
      if (tr->ok)
        printf ("summary: OFT train step bf16 (batch 1, 64x64, b32 on %d to_q/k/v/out.0, AdamW, %s): %.2f ms "
                "median (min %.2f; host AdamW %.2f; Cayley fwd+bwd on the GPU, the host's would take %.2f; "
                "a forward alone %.2f), peak GPU memory %.2f GiB (target <= 85 ms, <= 2.2 GiB; PyTorch+PEFT on an "
                "H200 252-280 ms, 2.85 GiB)\n", n_mod, how, tr->ms_median, tr->ms_min,
                tr->ms_adamw, tr->ms_cayley, tr->ms_forward, tr->peak_gib);
      else
        {
          printf ("summary: OFT train step bf16 (%s): FAILED\n", how);
          rc = 1;
        }
    }
  g_free (ucfg);
  g_free (vcfg);
  g_free (dir);
  return rc;
}
