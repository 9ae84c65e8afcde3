/* Kernel throughput on SD1.5 shapes: each oftcore kernel beside a plain cblas_sgemm doing the same
 * GEMM work in the same run, so the ratio shows what im2col, bias and bookkeeping cost on top of BLAS.
 * Usage: bench-kernels [--quick]   (--quick: one timed run, no warm-up, for smoke tests) */
#include "bench-util.h"
#include "oft/nn.h"
#include "oft/adapters.h"
#include "oft/runtime.h"
#include <cblas.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  int warmup, reps;
} BenchOpts;

static float *
random_floats (size_t n, guint32 seed)
{
  float *x = g_new (float, n);
  GRand *r = g_rand_new_with_seed (seed);
  for (size_t i = 0; i < n; i++)
    x[i] = (float) g_rand_double_range (r, -1, 1);
  g_rand_free (r);
  return x;
}

/* ---- plain sgemm: the machine's reference rate ---- */
typedef struct { int n; float *a, *b, *c; } Sq;

static void
run_square (void *p)
{
  Sq *s = p;
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, s->n, s->n, s->n,
               1.0f, s->a, s->n, s->b, s->n, 0.0f, s->c, s->n);
}

static void
bench_square_sgemm (const BenchOpts *o, int n)
{
  Sq s = { n, random_floats ((size_t) n * n, 1), random_floats ((size_t) n * n, 2), g_new0 (float, (size_t) n * n) };
  double t = bench_median_seconds (run_square, &s, o->warmup, o->reps);
  char shape[64];
  g_snprintf (shape, sizeof shape, "%d^3", n);
  bench_report ("sgemm", shape, 2.0 * n * n * n, t, "sgemm", t);
  g_free (s.a);
  g_free (s.b);
  g_free (s.c);
}

/* ---- linear ---- */
typedef struct {
  int N, C, OC;
  float *x, *w, *b, *out, *dout, *dx, *dw, *db;
} Lin;

static void run_lin_fwd (void *p)
{
  Lin *l = p;
  oft_linear_forward (l->out, l->x, l->w, l->b, l->N, l->C, l->OC);
}

static void run_lin_fwd_base (void *p)
{
  Lin *l = p;
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, l->N, l->OC, l->C,
               1.0f, l->x, l->C, l->w, l->C, 0.0f, l->out, l->OC);
}

static void run_lin_bwd (void *p)
{
  Lin *l = p;
  oft_linear_backward (l->dx, l->dw, l->db, l->dout, l->x, l->w, l->N, l->C, l->OC);
}

static void run_lin_bwd_base (void *p)
{
  Lin *l = p;
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, l->N, l->C, l->OC,
               1.0f, l->dout, l->OC, l->w, l->C, 1.0f, l->dx, l->C);
  cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, l->OC, l->C, l->N,
               1.0f, l->dout, l->OC, l->x, l->C, 1.0f, l->dw, l->C);
}

static void
bench_linear (const BenchOpts *o, const char *what, int N, int C, int OC)
{
  Lin l = { N, C, OC,
            random_floats ((size_t) N * C, 3), random_floats ((size_t) OC * C, 4), random_floats (OC, 5),
            g_new0 (float, (size_t) N * OC), random_floats ((size_t) N * OC, 6),
            g_new0 (float, (size_t) N * C), g_new0 (float, (size_t) OC * C), g_new0 (float, OC) };
  char shape[96];
  g_snprintf (shape, sizeof shape, "%dx%d->%d %s", N, C, OC, what);
  double flops = 2.0 * N * C * OC;
  double t, tb;
  bench_pair_median_seconds (run_lin_fwd, run_lin_fwd_base, &l, o->warmup, o->reps, &t, &tb);
  bench_report ("linear_forward", shape, flops, t, "sgemm", tb);
  bench_pair_median_seconds (run_lin_bwd, run_lin_bwd_base, &l, o->warmup, o->reps, &t, &tb);
  bench_report ("linear_backward", shape, 2 * flops, t, "sgemm", tb);
  g_free (l.x); g_free (l.w); g_free (l.b); g_free (l.out);
  g_free (l.dout); g_free (l.dx); g_free (l.dw); g_free (l.db);
}

/* ---- conv2d ---- */
typedef struct {
  OftConv2dShape s;
  int P, K;
  float *x, *w, *b, *out, *dout, *dx, *dw, *db, *scratch, *col;
} Conv;

static void run_conv_fwd (void *p)
{
  Conv *c = p;
  oft_conv2d_forward (c->out, c->x, c->w, c->b, &c->s, c->scratch);
}

/* the GEMMs of a plain im2col conv alone, one per image, on a col matrix that is already there
 * (oftcore batches small images into one GEMM, so its ratio can exceed 1 there) */
static void run_conv_fwd_base (void *p)
{
  Conv *c = p;
  for (int b = 0; b < c->s.B; b++)
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, c->s.OC, c->P, c->K,
                 1.0f, c->w, c->K, c->col, c->P, 0.0f, c->out + (size_t) b * c->s.OC * c->P, c->P);
}

static void run_conv_bwd (void *p)
{
  Conv *c = p;
  oft_conv2d_backward (c->dx, c->dw, c->db, c->dout, c->x, c->w, &c->s, c->scratch);
}

static void run_conv_bwd_base (void *p)
{
  Conv *c = p;
  for (int b = 0; b < c->s.B; b++)
    {
      const float *d = c->dout + (size_t) b * c->s.OC * c->P;
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, c->s.OC, c->K, c->P,
                   1.0f, d, c->P, c->col, c->P, 1.0f, c->dw, c->K);
      cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, c->K, c->P, c->s.OC,
                   1.0f, c->w, c->K, d, c->P, 0.0f, c->scratch, c->P);
    }
}

static void
bench_conv (const BenchOpts *o, int B, int C, int H, int OC, int k)
{
  Conv c = { .s = { B, C, H, H, OC, k, k, 1, k / 2 } };
  int OH = oft_conv2d_out_h (&c.s), OW = oft_conv2d_out_w (&c.s);
  c.P = OH * OW;
  c.K = C * k * k;
  size_t nx = (size_t) B * C * H * H, nw = (size_t) OC * c.K, no = (size_t) B * OC * c.P;
  size_t ns = MAX (oft_conv2d_scratch_floats (&c.s), (size_t) c.K * c.P);
  c.x = random_floats (nx, 7);
  c.w = random_floats (nw, 8);
  c.b = random_floats (OC, 9);
  c.out = g_new0 (float, no);
  c.dout = random_floats (no, 10);
  c.dx = g_new0 (float, nx);
  c.dw = g_new0 (float, nw);
  c.db = g_new0 (float, OC);
  c.scratch = g_new0 (float, ns);
  c.col = random_floats ((size_t) c.K * c.P, 11);
  char shape[96];
  g_snprintf (shape, sizeof shape, "%dx%d %d->%d %dx%d B%d", k, k, C, OC, H, H, B);
  double flops = 2.0 * B * OC * c.P * c.K;
  double t, tb;
  bench_pair_median_seconds (run_conv_fwd, run_conv_fwd_base, &c, o->warmup, o->reps, &t, &tb);
  bench_report ("conv2d_forward", shape, flops, t, "sgemm", tb);
  bench_pair_median_seconds (run_conv_bwd, run_conv_bwd_base, &c, o->warmup, o->reps, &t, &tb);
  bench_report ("conv2d_backward", shape, 2 * flops, t, "sgemm", tb);
  g_free (c.x); g_free (c.w); g_free (c.b); g_free (c.out); g_free (c.dout);
  g_free (c.dx); g_free (c.dw); g_free (c.db); g_free (c.scratch); g_free (c.col);
}

/* ---- OFT on an attention projection: input-centric x·R then GEMM, against weight-centric
 * W' = W·Rᵀ then GEMM. Both rebuild R from the packed parameters, as every training step must. ---- */
typedef struct {
  OftSpec spec;
  int N, out;
  float *packed, *R, *x, *xr, *w, *wr, *y;
} Oft;

static void
run_oft_input (void *p)
{
  Oft *o = p;
  oft_rotation_forward (o->R, NULL, o->packed, &o->spec);
  oft_rotate_input_forward (o->xr, o->x, o->R, o->N, &o->spec);
  oft_linear_forward (o->y, o->xr, o->w, NULL, o->N, o->spec.d, o->out);
}

static void
run_oft_weight (void *p)
{
  Oft *o = p;
  oft_rotation_forward (o->R, NULL, o->packed, &o->spec);
  oft_rotate_weight_forward (o->wr, o->w, o->R, o->out, &o->spec);
  oft_linear_forward (o->y, o->x, o->wr, NULL, o->N, o->spec.d, o->out);
}

static void
bench_oft (const BenchOpts *opt, const char *what, int N, int d, int out, int b)
{
  Oft o = { .spec = { .d = d, .b = b, .n_blocks = d / b, .n_terms = 5 }, .N = N, .out = out };
  int rows = o.spec.n_blocks, ne = b * (b - 1) / 2;
  o.packed = random_floats ((size_t) rows * ne, 3);
  for (int i = 0; i < rows * ne; i++)
    o.packed[i] *= 0.05f;
  o.R = g_new (float, (size_t) rows * b * b);
  o.x = random_floats ((size_t) N * d, 4);
  o.xr = g_new (float, (size_t) N * d);
  o.w = random_floats ((size_t) out * d, 5);
  o.wr = g_new (float, (size_t) out * d);
  o.y = g_new (float, (size_t) N * out);
  double ti, tw;
  bench_pair_median_seconds (run_oft_input, run_oft_weight, &o, opt->warmup, opt->reps, &ti, &tw);
  printf ("%-16s %-30s input-centric %8.3f ms  weight-centric %8.3f ms  ratio input/weight %.2f\n",
          "oft_linear", what, ti * 1e3, tw * 1e3, ti / tw);
  fflush (stdout);
  g_free (o.packed); g_free (o.R); g_free (o.x); g_free (o.xr); g_free (o.w); g_free (o.wr); g_free (o.y);
}

int
main (int argc, char **argv)
{
  oft_runtime_tune_process (argv);
  BenchOpts o = { 1, 7 };
  for (int i = 1; i < argc; i++)
    {
      if (!strcmp (argv[i], "--quick"))
        o = (BenchOpts) { 0, 1 };
      else
        {
          fprintf (stderr, "usage: %s [--quick]\n", argv[0]);
          return 2;
        }
    }
  printf ("# bench-kernels: median of %d run(s) after %d warm-up; GFLOP/s counts the GEMM work "
          "(backward: dinp + dweight); ours and sgemm alternate; ratio = sgemm time / oftcore time\n", o.reps, o.warmup);
  printf ("# OpenBLAS %s, %d BLAS threads\n", oft_runtime_blas_description (), openblas_get_num_threads ());

  bench_square_sgemm (&o, 2048);

  bench_linear (&o, "(attn proj)", 4096, 320, 320);
  bench_linear (&o, "(attn proj)", 1024, 640, 640);
  bench_linear (&o, "(cross-attn k/v)", 77, 768, 320);
  bench_linear (&o, "(GEGLU proj)", 4096, 320, 2560);

  bench_conv (&o, 2, 320, 64, 320, 3);
  bench_conv (&o, 2, 640, 32, 640, 3);
  bench_conv (&o, 2, 1280, 8, 1280, 3);
  bench_conv (&o, 2, 320, 64, 320, 1);

  /* SD1.5 attention projections at a 64×64 latent (batch 2 = CFG), exact Cayley, block 32 */
  bench_oft (&o, "to_q 8192x320->320 b32", 8192, 320, 320, 32);
  bench_oft (&o, "to_q 2048x640->640 b32", 2048, 640, 640, 32);
  bench_oft (&o, "to_q 512x1280->1280 b32", 512, 1280, 1280, 32);
  bench_oft (&o, "to_k 154x768->320 b32", 154, 768, 320, 32);
  bench_oft (&o, "to_q 8192x320->320 b8", 8192, 320, 320, 8);
  return 0;
}
