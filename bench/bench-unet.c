/* UNet throughput beside a same-run sgemm, training steps, and peak memory of whole jobs.
 *   bench-unet [--quick] [--no-sd15] [--sd15-512] [--golden DIR] [--data DIR]
 * --sd15-512 adds one SD1.5-width training step at 512 px with checkpointing (minutes, for its peak RSS).
 * Each measurement runs in a child process so that its peak RSS is its own. PyTorch figures quoted
 * for comparison are from ../shared/docs/baselines.md (same kind of machine, not this run). */
#include "bench-util.h"
#include "oft/oft.h"
#include "oft-config.h"
#include <cblas.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
  int warmup, reps;
  const char *golden, *data;
} Opts;

/* ---- child-process measurement: the function prints its own lines, then the peak RSS ---- */
typedef void (*Job) (const Opts *o, const void *arg);

static void
in_child (const char *what, Job job, const Opts *o, const void *arg)
{
  fflush (stdout);
  pid_t pid = fork ();
  if (pid == 0)
    {
      job (o, arg);
      struct rusage ru;
      getrusage (RUSAGE_SELF, &ru);
      printf ("%-44s peak RSS %8.1f MiB\n", what, ru.ru_maxrss / 1024.0);
      fflush (stdout);
      _exit (0);
    }
  int status = 0;
  waitpid (pid, &status, 0);
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
    printf ("%-44s FAILED (status %d)\n", what, status);
}

static double sgemm_rate;

typedef struct { int n; float *a, *b, *c; } Sq;

static void
run_sgemm (void *p)
{
  Sq *s = p;
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, s->n, s->n, s->n, 1, s->a, s->n, s->b, s->n, 0, s->c, s->n);
}

static void
measure_sgemm (const Opts *o)
{
  Sq s = { 2048, g_new0 (float, 2048 * 2048), g_new0 (float, 2048 * 2048), g_new0 (float, 2048 * 2048) };
  for (int i = 0; i < 2048 * 2048; i++)
    s.a[i] = s.b[i] = (float) (i % 7) * 0.1f;
  double t = bench_median_seconds (run_sgemm, &s, o->warmup, o->reps);
  sgemm_rate = 2.0 * 2048 * 2048 * 2048 / t;
  printf ("%-44s %8.1f GFLOP/s\n", "sgemm 2048^3 (baseline of this run)", sgemm_rate * 1e-9);
  g_free (s.a);
  g_free (s.b);
  g_free (s.c);
}

typedef struct {
  OftUnet *u;
  OftPeftAdapter *a;
  float *x, *t, *ctx, *out, *target, **grads, **m, **v;
  int B, h, w, T;
  gboolean checkpoint;
  int64_t step;
} Run;

static void
run_forward (void *p)
{
  Run *r = p;
  oft_unet_forward (r->u, r->x, r->t, r->ctx, r->B, r->h, r->w, r->T, r->out, NULL);
}

/* a whole optimizer step: forward, backward, AdamW on every adapter tensor (as PEFT's step is timed) */
static void
run_train (void *p)
{
  Run *r = p;
  float loss;
  OftAdamW opt;
  oft_adamw_init (&opt);
  size_t n = oft_peft_adapter_n_modules (r->a);
  for (size_t i = 0; i < n; i++)
    memset (r->grads[i], 0, sizeof (float) * oft_tensor_numel (&oft_peft_adapter_module (r->a, i)->param));
  oft_unet_train_loss (r->u, r->x, r->t, r->ctx, r->B, r->h, r->w, r->T, r->target, r->checkpoint, &loss, r->grads, NULL);
  r->step++;
  for (size_t i = 0; i < n; i++)
    {
      const OftAdapterModule *m = oft_peft_adapter_module (r->a, i);
      oft_adamw_step (&opt, m->param.data, r->m[i], r->v[i], r->grads[i], oft_tensor_numel (&m->param), r->step, 1e-5);
    }
}

/* A zero-initialised OFT adapter (block size b) on to_q/to_k/to_v/to_out.0 of every transformer block. */
static OftPeftAdapter *
new_adapter (OftUnet *u, int b)
{
  OftAdapterConfig cfg = { .kind = OFT_ADAPTER_OFT, .oft_block_size = b, .neumann = true, .n_terms = 5, .eps = 6e-5 };
  static const char *const targets[] = { "to_q", "to_k", "to_v", "to_out.0", NULL };
  OftPeftAdapter *a = oft_peft_adapter_new (&cfg, targets);
  GPtrArray *mods = oft_unet_list_linear_modules (u);
  for (guint i = 0; i < mods->len; i++)
    {
      const OftUnetLinear *l = g_ptr_array_index (mods, i);
      if (!g_str_has_suffix (l->path, "to_q") && !g_str_has_suffix (l->path, "to_k") &&
          !g_str_has_suffix (l->path, "to_v") && !g_str_has_suffix (l->path, "to_out.0"))
        continue;
      int64_t rows = l->in_features / b, ne = (int64_t) b * (b - 1) / 2;
      float *zeros = g_new0 (float, rows * ne);
      OftTensor p = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { rows, ne }, .data = zeros };
      oft_peft_adapter_add_module (a, l->path, &p, NULL, NULL);
      g_free (zeros);
    }
  g_ptr_array_unref (mods);
  return a;
}

static void
fill (float *x, size_t n, guint64 seed)
{
  OftRng rng;
  oft_rng_seed (&rng, seed);
  oft_rng_normal (&rng, x, (int64_t) n);
}

typedef struct {
  const char *label;
  gboolean sd15;        /* random SD1.5-width weights, else the golden tiny UNet */
  int train;            /* 0 forward, 1 training step, 2 training step with checkpointing */
  int B, hw;            /* batch, latent size */
  double pytorch_ms;    /* baselines.md, 0 if none */
} UnetCase;

static OftUnet *
load_unet (const Opts *o, gboolean sd15, GError **error)
{
  if (sd15)
    {
      char *cfg = g_build_filename (o->data, "sd15-config", "unet", "config.json", NULL);
      OftUnet *u = oft_unet_new_random (cfg, 42, error);
      g_free (cfg);
      return u;
    }
  char *dir = g_build_filename (o->golden, "pipeline", "unet", NULL);
  OftUnet *u = oft_unet_load (dir, error);
  g_free (dir);
  return u;
}

static void
unet_job (const Opts *o, const void *arg)
{
  const UnetCase *c = arg;
  GError *error = NULL;
  OftUnet *u = load_unet (o, c->sd15, &error);
  if (!u)
    {
      printf ("%s: %s\n", c->label, error->message);
      _exit (1);
    }
  Run r = { .u = u, .B = c->B, .h = c->hw, .w = c->hw, .T = 77, .checkpoint = c->train == 2 };
  int C = oft_unet_in_channels (u), D = oft_unet_context_dim (u);
  size_t n = (size_t) r.B * C * r.h * r.w;
  r.x = g_new (float, n), r.out = g_new (float, n), r.target = g_new (float, n);
  r.ctx = g_new (float, (size_t) r.B * r.T * D);
  r.t = g_new (float, r.B);
  for (int b = 0; b < r.B; b++)
    r.t[b] = b % 2 ? 10 : 999;
  fill (r.x, n, 1), fill (r.target, n, 2), fill (r.ctx, (size_t) r.B * r.T * D, 3);
  if (c->train)
    {
      /* the golden adapter (block 8) on the tiny UNet; block 32 on SD1.5 widths */
      char *dir = g_build_filename (o->golden, "unet_oft", "adapter", NULL);
      r.a = c->sd15 ? new_adapter (u, 32) : oft_peft_adapter_load (dir, &error);
      g_free (dir);
      if (!r.a || !oft_unet_attach_trainable (u, r.a, &error))
        {
          printf ("%s: %s\n", c->label, error ? error->message : "no adapter for this UNet");
          _exit (1);
        }
      size_t na = oft_peft_adapter_n_modules (r.a);
      r.grads = g_new0 (float *, na);
      r.m = g_new0 (float *, na);
      r.v = g_new0 (float *, na);
      for (size_t i = 0; i < na; i++)
        {
          int64_t numel = oft_tensor_numel (&oft_peft_adapter_module (r.a, i)->param);
          r.grads[i] = g_new0 (float, numel);
          r.m[i] = g_new0 (float, numel);
          r.v[i] = g_new0 (float, numel);
        }
    }
  double t = bench_median_seconds (c->train ? run_train : run_forward, &r, o->warmup, o->reps);
  double flops = oft_unet_forward_flops (u, r.B, r.h, r.w, r.T) * (c->train ? 3 : 1);
  printf ("%-44s %9.2f ms  %7.1f GFLOP/s  %5.1f%% of sgemm", c->label, t * 1e3, flops / t * 1e-9,
          100.0 * flops / t / sgemm_rate);
  if (c->pytorch_ms > 0)
    printf ("  PyTorch %.1f ms (%.2f×)", c->pytorch_ms, c->pytorch_ms / (t * 1e3));
  printf ("\n");
  if (c->train)
    printf ("%-44s (GFLOP/s counts a step as 3 forwards)\n", "");
}

typedef struct {
  int steps;
} GenCase;

static void
generate_job (const Opts *o, const void *arg)
{
  const GenCase *c = arg;
  char *dir = g_build_filename (o->golden, "pipeline", NULL);
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (dir, &error);
  g_free (dir);
  if (!p)
    {
      printf ("generate: %s\n", error->message);
      _exit (1);
    }
  OftGenerateParams g;
  oft_generate_params_init (&g);
  g.prompt = "a photo of a cat";
  g.steps = c->steps;
  g.width = g.height = 128;
  float *rgb = g_new (float, 3 * 128 * 128);
  double t0 = bench_now ();
  oft_pipeline_generate (p, &g, rgb, NULL, NULL, NULL, NULL);
  printf ("%-44s %9.2f ms\n", "generate: golden pipeline, 10 DDIM steps, CFG", (bench_now () - t0) * 1e3);
}

int
main (int argc, char **argv)
{
  oft_runtime_tune_process (argv);
  Opts o = { .warmup = 2, .reps = 9, .golden = g_getenv ("OFT_GOLDEN_DIR"), .data = g_getenv ("OFT_DATA_DIR") };
  gboolean sd15 = TRUE, sd15_512 = FALSE;
  if (!o.golden)
    o.golden = OFT_DEFAULT_GOLDEN_DIR;
  if (!o.data)
    o.data = OFT_SOURCE_DATA_DIR;
  for (int i = 1; i < argc; i++)
    if (!strcmp (argv[i], "--quick"))
      o.warmup = 0, o.reps = 1;
    else if (!strcmp (argv[i], "--no-sd15"))
      sd15 = FALSE;
    else if (!strcmp (argv[i], "--sd15-512"))
      sd15_512 = TRUE;
    else if (!strcmp (argv[i], "--golden") && i + 1 < argc)
      o.golden = argv[++i];
    else if (!strcmp (argv[i], "--data") && i + 1 < argc)
      o.data = argv[++i];
    else
      {
        fprintf (stderr, "usage: %s [--quick] [--no-sd15] [--sd15-512] [--golden DIR] [--data DIR]\n", argv[0]);
        return 2;
      }
  printf ("# bench-unet: medians of %d run(s) after %d warm-up; OpenBLAS %s\n", o.reps, o.warmup,
          oft_runtime_blas_description ());
  measure_sgemm (&o);
  static const UnetCase cases[] = {
    { "tiny UNet forward, B2 16x16", FALSE, 0, 2, 16, 30.7 },
    { "tiny UNet OFT train step, B1 16x16", FALSE, 1, 1, 16, 244 },
    { "tiny UNet OFT train step, B1, checkpointing", FALSE, 2, 1, 16, 0 },
    { "SD1.5-width UNet forward, B2 16x16 (random)", TRUE, 0, 2, 16, 2678 },
    { "SD1.5-width OFT train step, B1 16x16", TRUE, 1, 1, 16, 0 },
    { "SD1.5-width OFT train step, B1 16x16, ckpt", TRUE, 2, 1, 16, 0 },
  };
  static const UnetCase big[] = {
    { "SD1.5-width OFT train step, B1 64x64 (512 px), ckpt", TRUE, 2, 1, 64, 0 },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    if (sd15 || !cases[i].sd15)
      in_child (cases[i].label, unet_job, &o, &cases[i]);
  if (sd15_512)
    in_child (big[0].label, unet_job, &o, &big[0]);
  GenCase g = { 10 };
  in_child ("generate (golden pipeline, 10 steps)", generate_job, &o, &g);
  return 0;
}
