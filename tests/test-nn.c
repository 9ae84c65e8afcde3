/* CPU kernels (oft/nn.h) against double-precision references (nn-ref.c):
 *  - forward: the float kernel against the naive double loop;
 *  - backward: every gradient output against central differences of L = Σ out·g (g random) taken on
 *    the DOUBLE reference, so the finite differences themselves are accurate to ~1e-9;
 *    conv2d covers both of its paths: batch in one GEMM (B > 1, < 256 output pixels) and per image;
 *  - accumulation: gradient buffers start with random values and backward runs twice (once with all
 *    outputs, once split over calls that pass NULL for the others), so (buf − pre) must equal 2·∂L/∂x.
 * Shapes are small and odd; each family also has one case above the OpenMP threshold (32768 floats of
 * work) so the threaded paths run too; there the gradients are checked on 64 sampled coordinates. */
#include "test-common.h"
#include "nn-ref.h"
#include <math.h>
#include <string.h>

/* Forward: float sums of up to ~100 products of O(1) terms round to ≈ √K·2⁻²⁴ ≈ 1e-6 of the scale;
 * 1e-5 leaves a margin for exp/erf/tanh (a few ulps each). */
#define FWD_TOL 1e-5
/* Gradients chain two or three such float sums (e.g. norm backward: mean(dx̂), mean(dx̂·x̂), then
 * x̂·mean), and the check subtracts the pre-filled value: 1e-4 of the scale. */
#define GRAD_TOL 1e-4
#define FD_H 1e-5
#define FD_SAMPLES 64

/* ---- allocation pool: everything a case allocates is freed at its end (LeakSanitizer) ---- */
static GPtrArray *pool;

static gpointer
keep (gpointer p)
{
  if (!pool)
    pool = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (pool, p);
  return p;
}

static void
pool_clear (void)
{
  if (pool)
    g_ptr_array_set_size (pool, 0);
}

static float *
rnd (int64_t n, float lo, float hi, guint32 seed)
{
  float *x = keep (g_new (float, n));
  test_fill_uniform (x, n, lo, hi, seed);
  return x;
}

static float *
fzeros (int64_t n)
{
  return keep (g_new0 (float, n));
}

static double *
dzeros (int64_t n)
{
  return keep (g_new0 (double, n));
}

static double *
dup_d (const float *x, int64_t n)
{
  if (!x)
    return NULL;
  double *d = keep (g_new (double, n));
  for (int64_t i = 0; i < n; i++)
    d[i] = x[i];
  return d;
}

static double
dotd (const double *a, const double *b, int64_t n)
{
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += a[i] * b[i];
  return s;
}

/* ---- gradient checks ---- */
typedef double (*LossFn) (void *ctx);

typedef struct {
  float *buf, *pre;
  int64_t n;
} Grad;

/* A gradient buffer pre-filled with random values in the range of the gradients themselves. */
static Grad
grad_new (int64_t n, guint32 seed)
{
  Grad g = { rnd (n, -1, 1, seed), keep (g_new (float, n)), n };
  memcpy (g.pre, g.buf, sizeof (float) * n);
  return g;
}

/* (buf − pre) against times·∂L/∂x by central differences over x (all coordinates, or FD_SAMPLES
 * sampled ones for large tensors). */
static void
check_grad (const char *what, const Grad *gr, int times, LossFn f, void *ctx, double *x)
{
  int64_t n = gr->n, m = n <= 1024 ? n : FD_SAMPLES;
  float *got = keep (g_new (float, m));
  double *want = keep (g_new (double, m));
  GRand *r = g_rand_new_with_seed ((guint32) n);
  for (int64_t k = 0; k < m; k++)
    {
      int64_t i = m == n ? k : (int64_t) g_rand_int_range (r, 0, (gint32) n);
      double xi = x[i];
      x[i] = xi + FD_H;
      double lp = f (ctx);
      x[i] = xi - FD_H;
      double lm = f (ctx);
      x[i] = xi;
      want[k] = times * (lp - lm) / (2 * FD_H);
      got[k] = gr->buf[i] - gr->pre[i];
    }
  g_rand_free (r);
  test_assert_close_d (what, got, want, m, GRAD_TOL);
}

/* ---------------------------------------------------------------- linear */
typedef struct { double *x, *w, *b, *g, *out; int64_t N; int C, OC; } LinCtx;

static double
linear_loss (void *p)
{
  LinCtx *c = p;
  ref_linear (c->out, c->x, c->w, c->b, c->N, c->C, c->OC);
  return dotd (c->out, c->g, c->N * c->OC);
}

static void
check_linear (int64_t N, int C, int OC, gboolean has_bias, guint32 seed)
{
  int64_t nx = N * C, nw = (int64_t) OC * C, no = N * OC;
  float *x = rnd (nx, -1, 1, seed), *w = rnd (nw, -1, 1, seed + 1), *g = rnd (no, -1, 1, seed + 2);
  float *b = has_bias ? rnd (OC, -1, 1, seed + 3) : NULL;
  float *out = fzeros (no);
  oft_linear_forward (out, x, w, b, N, C, OC);
  LinCtx c = { dup_d (x, nx), dup_d (w, nw), dup_d (b, OC), dup_d (g, no), dzeros (no), N, C, OC };
  linear_loss (&c);
  test_assert_close_d ("linear out", out, c.out, no, FWD_TOL);

  Grad dx = grad_new (nx, seed + 4), dw = grad_new (nw, seed + 5), db = grad_new (OC, seed + 6);
  oft_linear_backward (dx.buf, dw.buf, db.buf, g, x, w, N, C, OC);
  oft_linear_backward (dx.buf, NULL, NULL, g, x, w, N, C, OC);
  oft_linear_backward (NULL, dw.buf, db.buf, g, x, w, N, C, OC);
  check_grad ("linear dinp", &dx, 2, linear_loss, &c, c.x);
  check_grad ("linear dweight", &dw, 2, linear_loss, &c, c.w);
  if (has_bias)
    check_grad ("linear dbias", &db, 2, linear_loss, &c, c.b);
  pool_clear ();
}

static void
test_linear (void)
{
  check_linear (5, 7, 3, TRUE, 10);
  check_linear (4, 16, 9, FALSE, 20);
  check_linear (1100, 16, 130, TRUE, 30);  /* > 1024 rows: dbias takes two sgemv chunks */
}

/* ---------------------------------------------------------------- conv2d */
typedef struct { double *x, *w, *b, *g, *out; OftConv2dShape s; int64_t no; } ConvCtx;

static double
conv_loss (void *p)
{
  ConvCtx *c = p;
  ref_conv2d (c->out, c->x, c->w, c->b, &c->s);
  return dotd (c->out, c->g, c->no);
}

static void
check_conv (OftConv2dShape s, gboolean has_bias, guint32 seed)
{
  int OH = oft_conv2d_out_h (&s), OW = oft_conv2d_out_w (&s);
  g_assert_cmpint (OH, ==, (s.H + 2 * s.pad - s.kh) / s.stride + 1);
  int64_t nx = (int64_t) s.B * s.C * s.H * s.W, nw = (int64_t) s.OC * s.C * s.kh * s.kw;
  int64_t no = (int64_t) s.B * s.OC * OH * OW;
  float *x = rnd (nx, -1, 1, seed), *w = rnd (nw, -1, 1, seed + 1), *g = rnd (no, -1, 1, seed + 2);
  float *b = has_bias ? rnd (s.OC, -1, 1, seed + 3) : NULL;
  size_t ns = oft_conv2d_scratch_floats (&s);
  /* the scratch is exactly as large as promised: ASan catches any overrun of this allocation */
  float *scratch = ns ? keep (g_new (float, ns)) : NULL;
  float *out = fzeros (no);
  oft_conv2d_forward (out, x, w, b, &s, scratch);
  ConvCtx c = { dup_d (x, nx), dup_d (w, nw), dup_d (b, s.OC), dup_d (g, no), dzeros (no), s, no };
  conv_loss (&c);
  test_assert_close_d ("conv2d out", out, c.out, no, FWD_TOL);

  Grad dx = grad_new (nx, seed + 4), dw = grad_new (nw, seed + 5), db = grad_new (s.OC, seed + 6);
  oft_conv2d_backward (dx.buf, dw.buf, db.buf, g, x, w, &s, scratch);
  oft_conv2d_backward (dx.buf, NULL, NULL, g, x, w, &s, scratch);
  oft_conv2d_backward (NULL, dw.buf, db.buf, g, x, w, &s, scratch);
  check_grad ("conv2d dinp", &dx, 2, conv_loss, &c, c.x);
  check_grad ("conv2d dweight", &dw, 2, conv_loss, &c, c.w);
  if (has_bias)
    check_grad ("conv2d dbias", &db, 2, conv_loss, &c, c.b);
  pool_clear ();
}

static void
test_conv2d (void)
{
  /*                    B  C  H  W  OC kh kw st pad */
  check_conv ((OftConv2dShape) { 2, 3, 5, 7, 4, 3, 3, 1, 1 }, TRUE, 100);   /* SD's 3×3 same conv */
  check_conv ((OftConv2dShape) { 2, 3, 6, 5, 2, 3, 3, 2, 1 }, TRUE, 110);   /* downsampler, odd W */
  check_conv ((OftConv2dShape) { 1, 2, 7, 4, 3, 3, 3, 2, 0 }, FALSE, 120);  /* stride 2, no pad */
  check_conv ((OftConv2dShape) { 2, 5, 4, 3, 3, 1, 1, 1, 0 }, TRUE, 130);   /* 1×1: direct sgemm */
  check_conv ((OftConv2dShape) { 1, 3, 5, 5, 2, 1, 1, 2, 0 }, TRUE, 140);   /* 1×1 stride 2: im2col */
  check_conv ((OftConv2dShape) { 2, 2, 5, 6, 3, 3, 2, 1, 1 }, TRUE, 150);   /* kh ≠ kw */
  check_conv ((OftConv2dShape) { 1, 2, 3, 4, 2, 1, 3, 1, 2 }, FALSE, 160);  /* pad > needed, 1×3 */
  check_conv ((OftConv2dShape) { 2, 2, 17, 17, 3, 3, 3, 1, 1 }, TRUE, 165); /* ≥ 256 pixels: per image */
  check_conv ((OftConv2dShape) { 1, 4, 32, 33, 5, 3, 3, 1, 1 }, TRUE, 170); /* threaded im2col/col2im */
  check_conv ((OftConv2dShape) { 1, 8, 64, 64, 2, 1, 1, 1, 0 }, TRUE, 180); /* threaded bias, 1×1 */
}

/* ---------------------------------------------------------------- group norm */
typedef struct { double *x, *w, *b, *g, *out; int B, C; int64_t HW; int G; double eps; } GnCtx;

static double
gn_loss (void *p)
{
  GnCtx *c = p;
  ref_groupnorm (c->out, c->x, c->w, c->b, c->B, c->C, c->HW, c->G, c->eps);
  return dotd (c->out, c->g, (int64_t) c->B * c->C * c->HW);
}

static void
check_groupnorm (int B, int C, int64_t HW, int G, float eps, guint32 seed)
{
  int64_t n = (int64_t) B * C * HW;
  /* an offset mean shows that the variance is taken around the mean (no E[x²]−E[x]² cancellation) */
  float *x = rnd (n, 2, 5, seed), *w = rnd (C, 0.5f, 1.5f, seed + 1), *b = rnd (C, -1, 1, seed + 2);
  float *g = rnd (n, -1, 1, seed + 3);
  float *out = fzeros (n), *mean = fzeros (B * G), *rstd = fzeros (B * G);
  oft_groupnorm_forward (out, mean, rstd, x, w, b, B, C, HW, G, eps);
  GnCtx c = { dup_d (x, n), dup_d (w, C), dup_d (b, C), dup_d (g, n), dzeros (n), B, C, HW, G, eps };
  gn_loss (&c);
  test_assert_close_d ("groupnorm out", out, c.out, n, FWD_TOL);

  Grad dx = grad_new (n, seed + 4), dw = grad_new (C, seed + 5), db = grad_new (C, seed + 6);
  oft_groupnorm_backward (dx.buf, dw.buf, db.buf, g, x, w, mean, rstd, B, C, HW, G);
  oft_groupnorm_backward (dx.buf, NULL, NULL, g, x, w, mean, rstd, B, C, HW, G);
  oft_groupnorm_backward (NULL, dw.buf, db.buf, g, x, w, mean, rstd, B, C, HW, G);
  check_grad ("groupnorm dinp", &dx, 2, gn_loss, &c, c.x);
  check_grad ("groupnorm dweight", &dw, 2, gn_loss, &c, c.w);
  check_grad ("groupnorm dbias", &db, 2, gn_loss, &c, c.b);
  pool_clear ();
}

static void
test_groupnorm (void)
{
  check_groupnorm (2, 6, 10, 3, 1e-5f, 200);
  check_groupnorm (1, 4, 7, 1, 1e-6f, 210);
  check_groupnorm (2, 4, 5, 4, 1e-5f, 220);   /* one channel per group */
  check_groupnorm (2, 6, 3, 2, 0.5f, 230);    /* a large eps: wrong placement of eps would show */
  check_groupnorm (2, 8, 4096, 4, 1e-6f, 240);
}

/* ---------------------------------------------------------------- layer norm */
typedef struct { double *x, *w, *b, *g, *out; int64_t N; int C; double eps; } LnCtx;

static double
ln_loss (void *p)
{
  LnCtx *c = p;
  ref_layernorm (c->out, c->x, c->w, c->b, c->N, c->C, c->eps);
  return dotd (c->out, c->g, c->N * c->C);
}

static void
check_layernorm (int64_t N, int C, float eps, guint32 seed)
{
  int64_t n = N * C;
  float *x = rnd (n, -3, 1, seed), *w = rnd (C, 0.5f, 1.5f, seed + 1), *b = rnd (C, -1, 1, seed + 2);
  float *g = rnd (n, -1, 1, seed + 3);
  float *out = fzeros (n), *mean = fzeros (N), *rstd = fzeros (N);
  oft_layernorm_forward (out, mean, rstd, x, w, b, N, C, eps);
  LnCtx c = { dup_d (x, n), dup_d (w, C), dup_d (b, C), dup_d (g, n), dzeros (n), N, C, eps };
  ln_loss (&c);
  test_assert_close_d ("layernorm out", out, c.out, n, FWD_TOL);

  Grad dx = grad_new (n, seed + 4), dw = grad_new (C, seed + 5), db = grad_new (C, seed + 6);
  oft_layernorm_backward (dx.buf, dw.buf, db.buf, g, x, w, mean, rstd, N, C);
  oft_layernorm_backward (dx.buf, NULL, NULL, g, x, w, mean, rstd, N, C);
  oft_layernorm_backward (NULL, dw.buf, db.buf, g, x, w, mean, rstd, N, C);
  check_grad ("layernorm dinp", &dx, 2, ln_loss, &c, c.x);
  check_grad ("layernorm dweight", &dw, 2, ln_loss, &c, c.w);
  check_grad ("layernorm dbias", &db, 2, ln_loss, &c, c.b);
  pool_clear ();
}

static void
test_layernorm (void)
{
  check_layernorm (5, 17, 1e-5f, 300);
  check_layernorm (3, 4, 0.5f, 310);
  check_layernorm (600, 64, 1e-5f, 320);  /* threaded, per-thread dweight/dbias partial sums */
}

/* ---------------------------------------------------------------- activations */
typedef struct { double *x, *g; int64_t n; double (*f) (double); } ActCtx;

static double
act_loss (void *p)
{
  ActCtx *c = p;
  double s = 0;
  for (int64_t i = 0; i < c->n; i++)
    s += c->g[i] * c->f (c->x[i]);
  return s;
}

typedef struct {
  const char *name;
  void (*fwd) (float *, const float *, int64_t);
  void (*bwd) (float *, const float *, const float *, int64_t);
  double (*ref) (double);
} Act;

static void
check_activation (const Act *a, int64_t n, guint32 seed)
{
  float *x = rnd (n, -6, 6, seed), *g = rnd (n, -1, 1, seed + 1), *out = fzeros (n);
  a->fwd (out, x, n);
  ActCtx c = { dup_d (x, n), dup_d (g, n), n, a->ref };
  double *want = dzeros (n);
  for (int64_t i = 0; i < n; i++)
    want[i] = a->ref (c.x[i]);
  char what[64];
  g_snprintf (what, sizeof what, "%s out", a->name);
  test_assert_close_d (what, out, want, n, FWD_TOL);
  Grad dx = grad_new (n, seed + 2);
  a->bwd (dx.buf, g, x, n);
  a->bwd (dx.buf, g, x, n);
  g_snprintf (what, sizeof what, "%s dinp", a->name);
  check_grad (what, &dx, 2, act_loss, &c, c.x);
  pool_clear ();
}

static void
test_activations (void)
{
  const Act acts[] = {
    { "silu", oft_silu_forward, oft_silu_backward, ref_silu },
    { "gelu", oft_gelu_forward, oft_gelu_backward, ref_gelu },
    { "gelu_tanh", oft_gelu_tanh_forward, oft_gelu_tanh_backward, ref_gelu_tanh },
    { "quick_gelu", oft_quick_gelu_forward, oft_quick_gelu_backward, ref_quick_gelu },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (acts); i++)
    {
      check_activation (&acts[i], 257, 400 + 10 * i);
      check_activation (&acts[i], 40000, 450 + 10 * i);
    }
}

typedef struct { double *x, *g, *out; int64_t N; int C; } GegluCtx;

static double
geglu_loss (void *p)
{
  GegluCtx *c = p;
  ref_geglu (c->out, c->x, c->N, c->C);
  return dotd (c->out, c->g, c->N * c->C);
}

static void
check_geglu (int64_t N, int C, guint32 seed)
{
  int64_t nx = N * 2 * C, no = N * C;
  float *x = rnd (nx, -4, 4, seed), *g = rnd (no, -1, 1, seed + 1), *out = fzeros (no);
  oft_geglu_forward (out, x, N, C);
  GegluCtx c = { dup_d (x, nx), dup_d (g, no), dzeros (no), N, C };
  geglu_loss (&c);
  test_assert_close_d ("geglu out", out, c.out, no, FWD_TOL);
  Grad dx = grad_new (nx, seed + 2);
  oft_geglu_backward (dx.buf, g, x, N, C);
  oft_geglu_backward (dx.buf, g, x, N, C);
  check_grad ("geglu dinp", &dx, 2, geglu_loss, &c, c.x);
  pool_clear ();
}

static void
test_geglu (void)
{
  check_geglu (5, 7, 500);
  check_geglu (300, 128, 510);
}

/* ---------------------------------------------------------------- softmax */
typedef struct { double *x, *g, *out; int64_t N; int C; } SmCtx;

static double
sm_loss (void *p)
{
  SmCtx *c = p;
  ref_softmax (c->out, c->x, c->N, c->C);
  return dotd (c->out, c->g, c->N * c->C);
}

static void
check_softmax (int64_t N, int C, float lo, float hi, guint32 seed)
{
  int64_t n = N * C;
  float *x = rnd (n, lo, hi, seed), *g = rnd (n, -1, 1, seed + 1), *out = fzeros (n);
  oft_softmax_forward (out, x, N, C);
  SmCtx c = { dup_d (x, n), dup_d (g, n), dzeros (n), N, C };
  sm_loss (&c);
  test_assert_close_d ("softmax out", out, c.out, n, FWD_TOL);
  Grad dx = grad_new (n, seed + 2);
  oft_softmax_backward (dx.buf, g, out, N, C);
  oft_softmax_backward (dx.buf, g, out, N, C);
  check_grad ("softmax dinp", &dx, 2, sm_loss, &c, c.x);
  pool_clear ();
}

static void
test_softmax (void)
{
  check_softmax (4, 9, -3, 3, 600);
  check_softmax (3, 5, 80, 100, 610);   /* exp(100) overflows float: the max must be subtracted */
  check_softmax (600, 64, -5, 5, 620);
}

/* ---------------------------------------------------------------- attention */
typedef struct { double *q, *k, *v, *g, *out; int B, Tq, Tk, H, D; bool causal; } AttCtx;

static double
att_loss (void *p)
{
  AttCtx *c = p;
  ref_attention (c->out, c->q, c->k, c->v, c->B, c->Tq, c->Tk, c->H, c->D, c->causal);
  return dotd (c->out, c->g, (int64_t) c->B * c->Tq * c->H * c->D);
}

static void
check_attention (int B, int Tq, int Tk, int H, int D, bool causal, guint32 seed)
{
  int64_t nq = (int64_t) B * Tq * H * D, nk = (int64_t) B * Tk * H * D;
  float *q = rnd (nq, -2, 2, seed), *k = rnd (nk, -2, 2, seed + 1), *v = rnd (nk, -1, 1, seed + 2);
  float *g = rnd (nq, -1, 1, seed + 3), *out = fzeros (nq);
  float *att = fzeros ((int64_t) B * H * Tq * Tk);
  oft_attention_forward (out, att, q, k, v, B, Tq, Tk, H, D, causal);
  AttCtx c = { dup_d (q, nq), dup_d (k, nk), dup_d (v, nk), dup_d (g, nq), dzeros (nq),
               B, Tq, Tk, H, D, causal };
  att_loss (&c);
  test_assert_close_d ("attention out", out, c.out, nq, FWD_TOL);

  size_t ns = oft_attention_scratch_floats (B, Tq, Tk, H, D);
  float *scratch = keep (g_new (float, ns));
  Grad dq = grad_new (nq, seed + 4), dk = grad_new (nk, seed + 5), dv = grad_new (nk, seed + 6);
  oft_attention_backward (dq.buf, dk.buf, dv.buf, g, att, q, k, v, B, Tq, Tk, H, D, scratch);
  oft_attention_backward (dq.buf, NULL, NULL, g, att, q, k, v, B, Tq, Tk, H, D, scratch);
  oft_attention_backward (NULL, dk.buf, dv.buf, g, att, q, k, v, B, Tq, Tk, H, D, scratch);
  check_grad ("attention dq", &dq, 2, att_loss, &c, c.q);
  check_grad ("attention dk", &dk, 2, att_loss, &c, c.k);
  check_grad ("attention dv", &dv, 2, att_loss, &c, c.v);
  pool_clear ();
}

static void
test_attention (void)
{
  check_attention (2, 5, 7, 3, 4, false, 700);   /* cross-attention, Tq ≠ Tk, several heads */
  check_attention (1, 6, 6, 2, 8, true, 710);    /* causal (CLIP) */
  check_attention (2, 5, 5, 1, 3, false, 720);   /* one head, odd D */
  check_attention (1, 9, 3, 2, 5, false, 730);   /* Tk < Tq */
  check_attention (1, 200, 200, 2, 8, true, 740); /* threaded softmax rows */
}

/* ---------------------------------------------------------------- upsample, concat, add, scale */
typedef struct { double *x, *g, *out; int64_t BC; int H, W; } UpCtx;

static double
up_loss (void *p)
{
  UpCtx *c = p;
  ref_upsample2x (c->out, c->x, c->BC, c->H, c->W);
  return dotd (c->out, c->g, c->BC * 4 * c->H * c->W);
}

static void
check_upsample (int64_t BC, int H, int W, guint32 seed)
{
  int64_t nx = BC * H * W, no = 4 * nx;
  float *x = rnd (nx, -1, 1, seed), *g = rnd (no, -1, 1, seed + 1), *out = fzeros (no);
  oft_upsample2x_forward (out, x, BC, H, W);
  UpCtx c = { dup_d (x, nx), dup_d (g, no), dzeros (no), BC, H, W };
  up_loss (&c);
  test_assert_close_d ("upsample2x out", out, c.out, no, 0);  /* pure copies: exact */
  Grad dx = grad_new (nx, seed + 2);
  oft_upsample2x_backward (dx.buf, g, BC, H, W);
  oft_upsample2x_backward (dx.buf, g, BC, H, W);
  check_grad ("upsample2x dinp", &dx, 2, up_loss, &c, c.x);
  pool_clear ();
}

static void
test_upsample2x (void)
{
  check_upsample (3, 2, 3, 800);
  check_upsample (9, 32, 31, 810);
}

typedef struct { double *a, *b, *g, *out; int B, Ca, Cb; int64_t HW; } CatCtx;

static double
cat_loss (void *p)
{
  CatCtx *c = p;
  ref_concat (c->out, c->a, c->b, c->B, c->Ca, c->Cb, c->HW);
  return dotd (c->out, c->g, (int64_t) c->B * (c->Ca + c->Cb) * c->HW);
}

static void
test_concat (void)
{
  int B = 2, Ca = 2, Cb = 3;
  int64_t HW = 5, na = B * Ca * HW, nb = B * Cb * HW, no = na + nb;
  float *a = rnd (na, -1, 1, 900), *b = rnd (nb, -1, 1, 901), *g = rnd (no, -1, 1, 902);
  float *out = fzeros (no);
  oft_concat_forward (out, a, b, B, Ca, Cb, HW);
  CatCtx c = { dup_d (a, na), dup_d (b, nb), dup_d (g, no), dzeros (no), B, Ca, Cb, HW };
  cat_loss (&c);
  test_assert_close_d ("concat out", out, c.out, no, 0);  /* pure copies: exact */
  Grad da = grad_new (na, 903), db = grad_new (nb, 904);
  oft_concat_backward (da.buf, db.buf, g, B, Ca, Cb, HW);
  oft_concat_backward (da.buf, NULL, g, B, Ca, Cb, HW);
  oft_concat_backward (NULL, db.buf, g, B, Ca, Cb, HW);
  check_grad ("concat da", &da, 2, cat_loss, &c, c.a);
  check_grad ("concat db", &db, 2, cat_loss, &c, c.b);
  pool_clear ();
}

typedef struct { double *a, *b, *g; int64_t n; double s; } AddCtx;

static double
add_loss (void *p)
{
  AddCtx *c = p;
  double l = 0;
  for (int64_t i = 0; i < c->n; i++)
    l += c->g[i] * (c->a[i] + c->s * c->b[i]);  /* out = a + s·b covers both add and scale */
  return l;
}

static void
check_add_scale (int64_t n, guint32 seed)
{
  const float s = -0.37f;
  float *a = rnd (n, -1, 1, seed), *b = rnd (n, -1, 1, seed + 1), *g = rnd (n, -1, 1, seed + 2);
  float *sb = fzeros (n), *out = fzeros (n);
  oft_scale_forward (sb, b, s, n);
  oft_add_forward (out, a, sb, n);
  AddCtx c = { dup_d (a, n), dup_d (b, n), dup_d (g, n), n, s };
  double *want = dzeros (n);
  for (int64_t i = 0; i < n; i++)
    want[i] = c.a[i] + c.s * c.b[i];
  /* two float roundings of O(1) values: ≤ 2⁻²³ of the scale */
  test_assert_close_d ("add(a, scale(b)) out", out, want, n, 1e-6);
  /* in place (out aliases a), the residual pattern x += f(x) */
  float *a2 = keep (g_memdup2 (a, sizeof (float) * n));
  oft_scale_forward (sb, b, s, n);
  oft_scale_forward (sb, sb, 1.0f, n);
  oft_add_forward (a2, a2, sb, n);
  test_assert_close ("add in place", a2, out, n, 0);

  Grad da = grad_new (n, seed + 3), db = grad_new (n, seed + 4);
  float *dsb = fzeros (n);
  oft_add_backward (da.buf, dsb, g, n);
  oft_add_backward (da.buf, NULL, g, n);
  oft_add_backward (NULL, dsb, g, n);
  oft_scale_backward (db.buf, dsb, s, n);
  check_grad ("add da", &da, 2, add_loss, &c, c.a);
  check_grad ("scale+add db", &db, 2, add_loss, &c, c.b);
  pool_clear ();
}

static void
test_add_scale (void)
{
  check_add_scale (37, 1000);
  check_add_scale (40000, 1010);
}

/* ---------------------------------------------------------------- timestep embedding, mse */
static void
check_timestep (int N, int dim, bool flip, float shift, float max_period, guint32 seed)
{
  float *t = rnd (N, 0, 50, seed), *out = fzeros ((int64_t) N * dim);
  t[0] = 0;
  oft_timestep_embedding (out, t, N, dim, flip, shift, max_period);
  double *want = dzeros ((int64_t) N * dim);
  ref_timestep_embedding (want, dup_d (t, N), N, dim, flip, shift, max_period);
  /* float32 arguments t·exp(e) as PyTorch forms them: each of exp, the product and e itself rounds
   * (≈ 3 ulps of t·e ≤ 50) → ≈ 1e-5 absolute in sin/cos */
  test_assert_close_d ("timestep embedding", out, want, (int64_t) N * dim, 3e-5);
  if (dim % 2)
    for (int n = 0; n < N; n++)
      g_assert_cmpfloat (out[(int64_t) n * dim + dim - 1], ==, 0);
  pool_clear ();
}

static void
test_timestep_embedding (void)
{
  check_timestep (3, 32, true, 0, 10000, 1100);
  check_timestep (4, 7, false, 1, 10000, 1110);    /* odd dim, freq_shift 1 (SD's time_proj uses 0) */
  check_timestep (2, 9, true, 0.5f, 100, 1120);
}

/* unet_dbg.time_proj [2,32] = diffusers Timesteps(32, flip_sin_to_cos=True, downscale_freq_shift=0)
 * of unet_timesteps [999, 10] */
static void
test_timestep_embedding_pipeline_reference (void)
{
  OftSafetensors *st = test_open_golden ("pipeline/reference.safetensors");
  int64_t nt, ne;
  float *t = test_load (st, "unet_timesteps", &nt);
  float *want = test_load (st, "unet_dbg.time_proj", &ne);
  g_assert_cmpint (nt, ==, 2);
  g_assert_cmpint (ne, ==, 2 * 32);
  float out[2 * 32];
  oft_timestep_embedding (out, t, 2, 32, true, 0, 10000);
  /* same float32 operation order as PyTorch; sin/cos of arguments up to 999 differ by libm ulps */
  test_assert_close ("time_proj vs pipeline/reference", out, want, ne, 1e-5);
  g_free (t);
  g_free (want);
  oft_safetensors_close (st);
}

typedef struct { double *p, *t; int64_t n; double dloss; } MseCtx;

static double
mse_loss (void *p)
{
  MseCtx *c = p;
  return c->dloss * ref_mse (c->p, c->t, c->n);
}

static void
check_mse (int64_t n, guint32 seed)
{
  float *p = rnd (n, -1, 1, seed), *t = rnd (n, -1, 1, seed + 1);
  /* dloss ∝ n keeps the gradients O(0.01), comparable to the pre-filled values they are added to */
  const float dloss = (float) n / 50;
  MseCtx c = { dup_d (p, n), dup_d (t, n), n, dloss };
  float got = oft_mse_forward (p, t, n);
  double want = ref_mse (c.p, c.t, n);
  test_assert_close_d ("mse", &got, &want, 1, 1e-6);  /* double accumulation: only the final rounding */
  Grad dp = grad_new (n, seed + 2);
  oft_mse_backward (dp.buf, p, t, n, dloss);
  oft_mse_backward (dp.buf, p, t, n, dloss);
  check_grad ("mse dpred", &dp, 2, mse_loss, &c, c.p);
  pool_clear ();
}

static void
test_mse (void)
{
  check_mse (101, 1200);
  check_mse (40000, 1210);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/nn/linear", test_linear);
  g_test_add_func ("/nn/conv2d", test_conv2d);
  g_test_add_func ("/nn/groupnorm", test_groupnorm);
  g_test_add_func ("/nn/layernorm", test_layernorm);
  g_test_add_func ("/nn/activations", test_activations);
  g_test_add_func ("/nn/geglu", test_geglu);
  g_test_add_func ("/nn/softmax", test_softmax);
  g_test_add_func ("/nn/attention", test_attention);
  g_test_add_func ("/nn/upsample2x", test_upsample2x);
  g_test_add_func ("/nn/concat", test_concat);
  g_test_add_func ("/nn/add-scale", test_add_scale);
  g_test_add_func ("/nn/timestep-embedding", test_timestep_embedding);
  g_test_add_func ("/nn/timestep-embedding/pipeline-reference", test_timestep_embedding_pipeline_reference);
  g_test_add_func ("/nn/mse", test_mse);
  int rc = g_test_run ();
  if (pool)
    g_ptr_array_free (pool, TRUE);
  return rc;
}
