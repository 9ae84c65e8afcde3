/* GPU kernel throughput at SD1.5 shapes (built with -Dcuda=enabled; run by hand or from tests/gpu/run.sh):
 * GEMM TFLOP/s against the GPU's dense bf16 peak, attention (tensor-core and SIMT kernels) and its backward,
 * conv2d 3×3, group norm. Each figure is the median of 5 timed batches of `iters` launches after a warm-up, launches
 * queued back to back on the stream and timed to the final sync, so launch overhead is included as in a
 * real step. Exits 77 without a GPU. `bench-gpu-kernels [--quick]` */
#include "cuda-kernels.h"
#include "bench-util.h"
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void oftcu_attention_force_simt (int on);   /* hook in cuda-attention.cu */

/* dense bf16 tensor-core peak of an H100/H200 SXM (989 TFLOP/s); other GPUs: set OFT_BENCH_PEAK_TFLOPS */
static double
peak_tflops (void)
{
  const char *e = getenv ("OFT_BENCH_PEAK_TFLOPS");
  return e ? atof (e) : 989.0;
}

typedef struct {
  void (*run) (void *ctx);
  void *ctx;
  int iters;
} Batch;

static void
run_batch (void *p)
{
  Batch *b = p;
  for (int i = 0; i < b->iters; i++)
    b->run (b->ctx);
  if (oftcu_sync () != 0)
    {
      fprintf (stderr, "CUDA error: %s\n", oftcu_error ());
      exit (1);
    }
}

/* milliseconds per launch */
static double
time_ms (void (*run) (void *), void *ctx, int iters)
{
  Batch b = { run, ctx, iters };
  return bench_median_seconds (run_batch, &b, 1, 5) * 1e3 / iters;
}

static void *
dev_random (int64_t n, OftCuDtype dt)
{
  float *h = g_new (float, n);
  GRand *r = g_rand_new_with_seed ((guint32) n);
  for (int64_t i = 0; i < n; i++)
    h[i] = (float) g_rand_double_range (r, -1, 1);
  g_rand_free (r);
  float *d32 = oftcu_alloc (n * 4);
  void *d = oftcu_alloc (n * oftcu_dtype_size (dt));
  if (!d32 || !d || oftcu_upload (d32, h, n * 4))
    {
      fprintf (stderr, "allocation of %lld values failed: %s\n", (long long) n, oftcu_error ());
      exit (1);
    }
  oftcu_convert (d, dt, d32, OFTCU_F32, n);
  oftcu_free (d32);
  g_free (h);
  return d;
}

typedef struct { OftCuDtype dt; int n; void *a, *b, *c; } GemmCtx;
static void
gemm_run (void *p)
{
  GemmCtx *g = p;
  oftcu_gemm (g->dt, false, false, g->n, g->n, g->n, 1.0f, g->a, g->n, 0, g->b, g->n, 0, 0.0f, g->c, g->n, 0, 1);
}

typedef struct { OftCuDtype dt; int B, Tq, Tk, H, D; void *q, *k, *v, *o; float *lse; } AttnCtx;
static void
attn_run (void *p)
{
  AttnCtx *a = p;
  oftcu_attention_forward (a->dt, a->o, a->lse, a->q, a->k, a->v, a->B, a->Tq, a->Tk, a->H, a->D, false);
}

typedef struct { AttnCtx f; void *dout, *dq, *dk, *dv; } AttnBwdCtx;
static void
attn_bwd_run (void *p)
{
  AttnBwdCtx *a = p;
  oftcu_attention_backward (a->f.dt, a->dq, a->dk, a->dv, a->dout, a->f.o, a->f.lse, a->f.q, a->f.k, a->f.v, a->f.B,
                            a->f.Tq, a->f.Tk, a->f.H, a->f.D, false);
}

typedef struct { OftCuDtype dt; OftCuConvShape s; void *x, *w, *bias, *y, *scratch; } ConvCtx;
static void
conv_run (void *p)
{
  ConvCtx *c = p;
  oftcu_conv2d_forward (c->dt, c->y, c->x, c->w, c->bias, &c->s, c->scratch);
}

typedef struct { OftCuDtype dt; int B, C, G; int64_t HW; void *x, *y; float *w, *b, *m, *r; } NormCtx;
static void
norm_run (void *p)
{
  NormCtx *n = p;
  oftcu_groupnorm_forward (n->dt, n->y, n->m, n->r, n->x, n->w, n->b, n->B, n->C, n->HW, n->G, 1e-5f);
}

static void
bench_gemm (OftCuDtype dt, bool tf32, int n, int iters)
{
  oftcu_set_tf32 (tf32);
  GemmCtx g = { dt, n, dev_random ((int64_t) n * n, dt), dev_random ((int64_t) n * n, dt), NULL };
  g.c = oftcu_alloc ((size_t) n * n * oftcu_dtype_size (dt));
  double ms = time_ms (gemm_run, &g, iters), tf = 2.0 * n * n * n / (ms * 1e-3) / 1e12;
  printf ("gemm %s%s %d³: %.3f ms, %.1f TFLOP/s (%.0f%% of the %.0f TFLOP/s bf16 dense peak)\n",
          dt == OFTCU_BF16 ? "bf16" : "fp32", dt == OFTCU_F32 ? (tf32 ? " tf32" : " (no tf32)") : "", n, ms, tf,
          100 * tf / peak_tflops (), peak_tflops ());
  oftcu_free (g.a);
  oftcu_free (g.b);
  oftcu_free (g.c);
  oftcu_set_tf32 (true);
}

static void
bench_attention (OftCuDtype dt, int B, int H, int Tq, int Tk, int D, int simt, int iters)
{
  AttnCtx a = { dt, B, Tq, Tk, H, D, NULL, NULL, NULL, NULL, NULL };
  a.q = dev_random ((int64_t) B * Tq * H * D, dt);
  a.k = dev_random ((int64_t) B * Tk * H * D, dt);
  a.v = dev_random ((int64_t) B * Tk * H * D, dt);
  a.o = oftcu_alloc ((size_t) B * Tq * H * D * oftcu_dtype_size (dt));
  a.lse = oftcu_alloc ((size_t) B * H * Tq * 4);
  oftcu_attention_force_simt (simt);
  double ms = time_ms (attn_run, &a, iters);
  oftcu_attention_force_simt (-1);
  double tf = 4.0 * B * H * (double) Tq * Tk * D / (ms * 1e-3) / 1e12;
  printf ("attention %s %s B%d H%d Tq%d Tk%d D%d: %.3f ms, %.1f TFLOP/s (%.0f%% of peak)\n",
          dt == OFTCU_BF16 ? "bf16" : "fp32", simt ? "simt" : "auto", B, H, Tq, Tk, D, ms, tf, 100 * tf / peak_tflops ());
  oftcu_free (a.q);
  oftcu_free (a.k);
  oftcu_free (a.v);
  oftcu_free (a.o);
  oftcu_free (a.lse);
}

/* The backward at the training step's shapes: all three gradients, then dQ alone and dK, dV alone (the two
 * kernels), against the forward's time. TFLOP/s counts the five GEMMs of the backward, 10·B·H·Tq·Tk·D. */
static void
bench_attention_bwd (OftCuDtype dt, int B, int H, int Tq, int Tk, int D, int iters)
{
  const int64_t nq = (int64_t) B * Tq * H * D, nk = (int64_t) B * Tk * H * D;
  AttnBwdCtx a = { { dt, B, Tq, Tk, H, D, dev_random (nq, dt), dev_random (nk, dt), dev_random (nk, dt), NULL, NULL },
                   dev_random (nq, dt), NULL, NULL, NULL };
  a.f.o = oftcu_alloc ((size_t) nq * oftcu_dtype_size (dt));
  a.f.lse = oftcu_alloc ((size_t) B * H * Tq * 4);
  void *dq = dev_random (nq, dt), *dk = dev_random (nk, dt), *dv = dev_random (nk, dt);
  double fwd = time_ms (attn_run, &a.f, iters);
  const char *names[3] = { "dq dk dv", "dq only", "dk dv only" };
  for (int w = 0; w < 3; w++)
    {
      a.dq = w != 2 ? dq : NULL;
      a.dk = w != 1 ? dk : NULL;
      a.dv = w != 1 ? dv : NULL;
      double ms = time_ms (attn_bwd_run, &a, iters), tf = 10.0 * B * H * (double) Tq * Tk * D / (ms * 1e-3) / 1e12;
      printf ("attention backward %s B%d H%d Tq%d Tk%d D%d, %s: %.3f ms (%.1f× the forward's %.3f ms)",
              dt == OFTCU_BF16 ? "bf16" : "fp32", B, H, Tq, Tk, D, names[w], ms, ms / fwd, fwd);
      if (w == 0)  /* the GEMM count holds for all three gradients only */
        printf (", %.1f TFLOP/s (%.0f%% of peak)", tf, 100 * tf / peak_tflops ());
      putchar ('\n');
    }
  void *bufs[] = { a.f.q, a.f.k, a.f.v, a.f.o, a.f.lse, a.dout, dq, dk, dv };
  for (size_t i = 0; i < G_N_ELEMENTS (bufs); i++)
    oftcu_free (bufs[i]);
}

static void
bench_conv (OftCuDtype dt, OftCuConvShape s, int iters)
{
  const int OH = (s.H + 2 * s.pad - s.kh) / s.stride + 1, OW = (s.W + 2 * s.pad - s.kw) / s.stride + 1;
  ConvCtx c = { dt, s, dev_random ((int64_t) s.B * s.C * s.H * s.W, dt),
                dev_random ((int64_t) s.OC * s.C * s.kh * s.kw, dt), dev_random (s.OC, dt), NULL, NULL };
  c.y = oftcu_alloc ((size_t) s.B * s.OC * OH * OW * oftcu_dtype_size (dt));
  const size_t sb = oftcu_conv2d_scratch_bytes (dt, &s);
  c.scratch = sb ? oftcu_alloc (sb) : NULL;
  double ms = time_ms (conv_run, &c, iters);
  double tf = 2.0 * s.B * s.OC * (double) OH * OW * s.C * s.kh * s.kw / (ms * 1e-3) / 1e12;
  printf ("conv2d %s B%d C%d %dx%d OC%d k%d: %.3f ms, %.1f TFLOP/s (%.0f%% of peak), scratch %.0f MiB\n",
          dt == OFTCU_BF16 ? "bf16" : "fp32", s.B, s.C, s.H, s.W, s.OC, s.kh, ms, tf, 100 * tf / peak_tflops (),
          sb / 1048576.0);
  oftcu_free (c.x);
  oftcu_free (c.w);
  oftcu_free (c.bias);
  oftcu_free (c.y);
  oftcu_free (c.scratch);
}

static void
bench_groupnorm (OftCuDtype dt, int B, int C, int64_t HW, int G, int iters)
{
  NormCtx n = { dt, B, C, G, HW, dev_random ((int64_t) B * C * HW, dt), NULL, NULL, NULL, NULL, NULL };
  n.y = oftcu_alloc ((size_t) B * C * HW * oftcu_dtype_size (dt));
  n.w = dev_random (C, OFTCU_F32);
  n.b = dev_random (C, OFTCU_F32);
  n.m = oftcu_alloc ((size_t) B * G * 4);
  n.r = oftcu_alloc ((size_t) B * G * 4);
  double ms = time_ms (norm_run, &n, iters);
  double gbs = 2.0 * B * C * HW * oftcu_dtype_size (dt) / (ms * 1e-3) / 1e9;
  printf ("groupnorm %s B%d C%d HW%lld G%d: %.3f ms, %.0f GB/s (one read, one write)\n",
          dt == OFTCU_BF16 ? "bf16" : "fp32", B, C, (long long) HW, G, ms, gbs);
  oftcu_free (n.x);
  oftcu_free (n.y);
  oftcu_free (n.w);
  oftcu_free (n.b);
  oftcu_free (n.m);
  oftcu_free (n.r);
}

int
main (int argc, char **argv)
{
  const bool quick = argc > 1 && !strcmp (argv[1], "--quick");
  const int it = quick ? 3 : 20;
  char name[256];
  if (oftcu_init (0, name, sizeof name) != 0)
    {
      printf ("no CUDA device: %s\n", oftcu_error ());
      return 77;
    }
  printf ("device: %s\n", name);
  bench_gemm (OFTCU_BF16, true, 4096, it);
  bench_gemm (OFTCU_F32, true, 4096, it);
  /* SD1.5 CFG step (batch 2): self-attention at 64², 32², 16², cross-attention to 77 tokens; the VAE's
   * 512-wide single head at 64² */
  bench_attention (OFTCU_BF16, 2, 8, 4096, 4096, 40, 0, it);
  bench_attention (OFTCU_BF16, 2, 8, 4096, 4096, 40, 1, it);
  bench_attention (OFTCU_BF16, 2, 8, 4096, 77, 40, 0, it);
  bench_attention (OFTCU_BF16, 2, 8, 1024, 1024, 80, 0, it);
  bench_attention (OFTCU_BF16, 2, 8, 256, 256, 160, 0, it);
  bench_attention (OFTCU_F32, 2, 8, 4096, 4096, 40, 0, it);
  bench_attention (OFTCU_BF16, 1, 1, 4096, 4096, 512, 0, quick ? 1 : 3);
  /* the training step's (batch 1): self-attention at 64², 32², 16², cross-attention to 77 tokens */
  bench_attention_bwd (OFTCU_BF16, 1, 8, 4096, 4096, 40, it);
  bench_attention_bwd (OFTCU_BF16, 1, 8, 4096, 77, 40, it);
  bench_attention_bwd (OFTCU_BF16, 1, 8, 1024, 1024, 80, it);
  bench_attention_bwd (OFTCU_BF16, 1, 8, 256, 256, 160, it);
  bench_conv (OFTCU_BF16, (OftCuConvShape) { 2, 320, 64, 64, 320, 3, 3, 1, 1 }, it);
  bench_conv (OFTCU_BF16, (OftCuConvShape) { 2, 1280, 8, 8, 1280, 3, 3, 1, 1 }, it);
  bench_conv (OFTCU_BF16, (OftCuConvShape) { 1, 128, 512, 512, 128, 3, 3, 1, 1 }, quick ? 1 : 3);
  bench_groupnorm (OFTCU_BF16, 2, 320, 4096, 32, it);
  bench_groupnorm (OFTCU_BF16, 1, 128, 512 * 512, 32, it);
  printf ("peak GPU memory through oftcu_alloc: %.0f MiB\n", oftcu_peak_bytes () / 1048576.0);
  return 0;
}
