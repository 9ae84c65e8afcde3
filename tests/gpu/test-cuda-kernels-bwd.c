/* GPU backward and training kernels (oftcore/cuda/cuda-kernels-bwd.cu, cuda-kernels-train.cu) against
 * their CPU references (oft/nn.h, oft_rotate_input_*, oft_rotation_* and oft_coft_project in oft/adapters.h,
 * oft_adamw_step in oft/train.h), in fp32 and bf16, at SD1.5-like shapes and small odd ones (partial
 * tiles, strides, odd head dims).
 *
 * Inputs are random and, for bf16, rounded to bf16 first, so the CPU and the GPU see identical values.
 * Gradient outputs are PRE-FILLED with random values of the gradient's own scale; the GPU result must be
 * prefill + Δ, Δ being the CPU backward run into zeros. In fp32 the launcher then runs again once per
 * gradient output with the others NULL (and `inp` NULL where only dweight reads it), so the result must be
 * prefill + 2Δ: accumulation (+=) and NULL outputs are both checked.
 *
 * Error measure (printed for every tensor, one line each, plus a per-kernel summary at the end):
 * rel = max_i |got_i − want_i| / max_i |Δ_i|, the error relative to the scale of the kernel's own output
 * (the prefill does not enlarge the scale). Bounds:
 *  - fp32: 1e-5. Both sides are fp32 arithmetic over identical inputs; sums of up to ~10⁴ terms in
 *    different orders differ by ~√K·2⁻²⁴ ≈ 1e-6 of the scale, the GPU's fast-math exp/erf by a few ulps.
 *  - fp32 attention: 1e-4. dq = Σ_j dS_ij·k_j sums up to 4096 terms that cancel (Σ_j dS_ij = 0), so the
 *    rounding of the terms (P from exp(s − lse) with fast-math exp, ~1e-6 relative each) is measured
 *    against a result smaller than the terms.
 *  - bf16 outputs: 3e-2. The final rounding of prefill + Δ (up to 2× the scale) costs up to
 *    2·2⁻⁸ ≈ 7.8e-3; bf16 intermediates (conv's dcol, GEMM outputs rounded before they are summed again,
 *    attention's O rounded to bf16 before D = rowsum(dO∘O)) add up to about twice that.
 *  - fp32 outputs in bf16 mode (norm dweight/dbias, dR): 1e-5, the inputs are identical and the sums fp32.
 *  - bf16 outputs rounded once from the CPU's own fp32 value (mse backward, rotation forward): 1e-2.
 *  - AdamW and mse backward in fp32: bit for bit (the kernels use _rn operations in the CPU's order).
 * Exits 77 (skipped) when no CUDA device initialises. */
#include "test-common.h"
#include "cuda-kernels.h"
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define TOL_F32     1e-5
#define TOL_F32_ATT 1e-4
#define TOL_BF16    3e-2
/* bf16 outputs rounded once from the same fp32 value (mse backward, rotation forward): half an ulp is at
 * most 2⁻⁸ of a value ≤ 2× the scale, 7.8e-3; a rounding boundary crossed by fp32 differences costs a
 * full ulp of a value ≤ the scale, also 7.8e-3 */
#define TOL_BF16_ONCE 1e-2

static double
tol_for (OftCuDtype dt)
{
  return dt == OFTCU_BF16 ? TOL_BF16 : TOL_F32;
}

static const char *
dt_name (OftCuDtype dt)
{
  return dt == OFTCU_BF16 ? "bf16" : "f32";
}

/* ---- per-kernel summary: worst rel per dtype ---- */
typedef struct {
  char kernel[48];
  double worst[2], bound[2];
  int seen[2];
} Summary;
static Summary summary[64];
static int n_summary;

static void
note (const char *kernel, OftCuDtype dt, double rel, double bound)
{
  Summary *s = NULL;
  for (int i = 0; i < n_summary; i++)
    if (strcmp (summary[i].kernel, kernel) == 0)
      s = &summary[i];
  if (!s)
    {
      g_assert_cmpint (n_summary, <, (int) G_N_ELEMENTS (summary));
      s = &summary[n_summary++];
      memset (s, 0, sizeof *s);
      g_strlcpy (s->kernel, kernel, sizeof s->kernel);
    }
  int d = dt == OFTCU_BF16;
  if (!s->seen[d] || !(rel <= s->worst[d]))
    s->worst[d] = rel;
  if (!s->seen[d] || bound > s->bound[d])
    s->bound[d] = bound;
  s->seen[d] = 1;
}

/* ---- memory: everything a case allocates is freed at its end ---- */
static GPtrArray *host_pool, *dev_pool;

static gpointer
hkeep (gpointer p)
{
  g_ptr_array_add (host_pool, p);
  return p;
}

static void
dev_free (gpointer p)
{
  oftcu_free (p);
}

static void
pool_clear (void)
{
  g_ptr_array_set_size (host_pool, 0);
  g_ptr_array_set_size (dev_pool, 0);
}

static float *
fzeros (int64_t n)
{
  return hkeep (g_new0 (float, n > 0 ? n : 1));
}

static float *
fdup (const float *x, int64_t n)
{
  return hkeep (g_memdup2 (x, sizeof (float) * (size_t) n));
}

static void
round_dt (OftCuDtype dt, float *x, int64_t n)
{
  if (dt == OFTCU_BF16)
    for (int64_t i = 0; i < n; i++)
      x[i] = oft_bf16_to_f32 (oft_f32_to_bf16 (x[i]));
}

/* uniform in [lo, hi), representable in dt */
static float *
rnd (OftCuDtype dt, int64_t n, float lo, float hi, guint32 seed)
{
  float *x = fzeros (n);
  test_fill_uniform (x, n, lo, hi, seed);
  round_dt (dt, x, n);
  return x;
}

static double
maxabs (const float *x, int64_t n)
{
  double m = 0;
  for (int64_t i = 0; i < n; i++)
    if (fabs (x[i]) > m)
      m = fabs (x[i]);
  return m;
}

static void *
dalloc (size_t bytes)
{
  void *p = oftcu_alloc (bytes ? bytes : 16);
  if (!p)
    g_error ("oftcu_alloc (%zu): %s", bytes, oftcu_error ());
  g_ptr_array_add (dev_pool, p);
  return p;
}

/* device copy of x[n] in storage type dt (x already representable) */
static void *
dput (OftCuDtype dt, const float *x, int64_t n)
{
  if (!x)
    return NULL;
  void *d = dalloc ((size_t) n * oftcu_dtype_size (dt));
  if (dt == OFTCU_F32)
    g_assert_cmpint (oftcu_upload (d, x, sizeof (float) * (size_t) n), ==, 0);
  else
    {
      uint16_t *h = g_new (uint16_t, n > 0 ? n : 1);
      for (int64_t i = 0; i < n; i++)
        h[i] = oft_f32_to_bf16 (x[i]);
      g_assert_cmpint (oftcu_upload (d, h, sizeof (uint16_t) * (size_t) n), ==, 0);
      g_free (h);
    }
  return d;
}

static float *
dget (OftCuDtype dt, const void *d, int64_t n)
{
  float *x = fzeros (n);
  if (dt == OFTCU_F32)
    g_assert_cmpint (oftcu_download (x, d, sizeof (float) * (size_t) n), ==, 0);
  else
    {
      uint16_t *h = g_new (uint16_t, n > 0 ? n : 1);
      g_assert_cmpint (oftcu_download (h, d, sizeof (uint16_t) * (size_t) n), ==, 0);
      for (int64_t i = 0; i < n; i++)
        x[i] = oft_bf16_to_f32 (h[i]);
      g_free (h);
    }
  return x;
}

/* Waits for the stream; a kernel or launch failure fails the case (and is cleared for the next one). */
static void
gpu_ok (const char *what)
{
  if (oftcu_sync () != 0 || oftcu_error ())
    {
      g_test_fail_printf ("%s: %s", what, oftcu_error () ? oftcu_error () : "sync failed");
      oftcu_clear_error ();
    }
}

/* rel = max|got − want| / scale, printed; fails the case when over the bound (the other checks still run
 * and print). NaN counts as an infinite error. */
static double
check_scaled (const char *kernel, OftCuDtype dt, const char *label, const char *what, const float *got,
              const float *want, int64_t n, double scale, double bound)
{
  double err = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double e = fabs ((double) got[i] - (double) want[i]);
      if (isnan (e))
        e = INFINITY;
      if (e > err)
        {
          err = e;
          at = i;
        }
    }
  double rel = scale > 0 ? err / scale : err;
  printf ("# %-22s %-4s %-34s %-6s max|err| %.3e at %-9lld scale %.3e  rel %.3e  (bound %.0e)\n", kernel,
          dt_name (dt), label, what, err, (long long) at, scale, rel, bound);
  fflush (stdout);
  char key[48];
  g_snprintf (key, sizeof key, "%s %s", kernel, what);
  note (key, dt, rel, bound);
  if (!(rel <= bound))
    g_test_fail_printf ("%s %s %s %s: rel error %.3e over %.0e (got %g, want %g at %lld)", kernel, dt_name (dt),
                        label, what, rel, bound, n ? got[at] : 0.0, n ? want[at] : 0.0, (long long) at);
  return rel;
}

/* ---- a gradient output: prefill g0 of Δ's scale, device copy, expected value g0 + mult·Δ ---- */
typedef struct {
  OftCuDtype dt;     /* storage type of this output */
  int64_t n;
  const float *delta;
  float *want;
  void *dev;
} Grad;

static void
grad_init (Grad *g, OftCuDtype dt, const float *delta, int64_t n, int mult, guint32 seed)
{
  g->dt = dt;
  g->n = n;
  g->delta = delta;
  double s = maxabs (delta, n);
  if (s == 0)
    s = 1;
  float *g0 = rnd (dt, n, (float) -s, (float) s, seed);
  g->want = fzeros (n);
  for (int64_t i = 0; i < n; i++)
    g->want[i] = g0[i] + (float) mult * delta[i];
  g->dev = dput (dt, g0, n);
}

static void
grad_check (const char *kernel, OftCuDtype mode, const char *label, const char *what, const Grad *g, double bound)
{
  float *got = dget (g->dt, g->dev, g->n);
  check_scaled (kernel, mode, label, what, got, g->want, g->n, maxabs (g->delta, g->n), bound);
}

/* fp32: a second round of calls with one output each; bf16: the single call only */
static int
mult_for (OftCuDtype dt)
{
  return dt == OFTCU_F32 ? 2 : 1;
}

static const OftCuDtype dtypes[2] = { OFTCU_F32, OFTCU_BF16 };

/* OFT_CUDA_TEST_SMALL=1: only the small odd shapes (a quick run, or the kernels under a CPU emulation) */
static gboolean small_only;

/* ================================================================================================ */

static void
linear_case (OftCuDtype dt, int64_t N, int C, int OC, guint32 seed)
{
  float *inp = rnd (dt, N * C, -1, 1, seed), *w = rnd (dt, (int64_t) OC * C, -0.5f, 0.5f, seed + 1);
  float *dout = rnd (dt, N * OC, -1, 1, seed + 2);
  float *dx = fzeros (N * C), *dw = fzeros ((int64_t) OC * C), *db = fzeros (OC);
  oft_linear_backward (dx, dw, db, dout, inp, w, N, C, OC);

  const int mult = mult_for (dt);
  Grad gx, gw, gb;
  grad_init (&gx, dt, dx, N * C, mult, seed + 3);
  grad_init (&gw, dt, dw, (int64_t) OC * C, mult, seed + 4);
  grad_init (&gb, dt, db, OC, mult, seed + 5);
  void *d_inp = dput (dt, inp, N * C), *d_w = dput (dt, w, (int64_t) OC * C), *d_dout = dput (dt, dout, N * OC);
  oftcu_linear_backward (dt, gx.dev, gw.dev, gb.dev, d_dout, d_inp, d_w, N, C, OC);
  if (mult == 2)
    {
      oftcu_linear_backward (dt, gx.dev, NULL, NULL, d_dout, NULL, d_w, N, C, OC);
      oftcu_linear_backward (dt, NULL, gw.dev, NULL, d_dout, d_inp, d_w, N, C, OC);
      oftcu_linear_backward (dt, NULL, NULL, gb.dev, d_dout, NULL, d_w, N, C, OC);
    }
  gpu_ok ("linear backward");
  char label[64];
  g_snprintf (label, sizeof label, "N%lld C%d OC%d", (long long) N, C, OC);
  grad_check ("linear_backward", dt, label, "dinp", &gx, tol_for (dt));
  grad_check ("linear_backward", dt, label, "dW", &gw, tol_for (dt));
  grad_check ("linear_backward", dt, label, "dbias", &gb, tol_for (dt));
  pool_clear ();
}

static void
test_linear (void)
{
  for (int t = 0; t < 2; t++)
    {
      if (!small_only) linear_case (dtypes[t], 4096, 320, 320, 10);   /* attention projections at 64×64 */
      if (!small_only) linear_case (dtypes[t], 154, 768, 320, 20);    /* to_k/to_v on a batch of 2 contexts */
      if (!small_only) linear_case (dtypes[t], 256, 1280, 1280, 30);  /* the 16×16 level */
      linear_case (dtypes[t], 37, 19, 23, 40);
    }
}

/* ================================================================================================ */

static void
conv_case (OftCuDtype dt, int B, int C, int H, int W, int OC, int k, int stride, int pad, guint32 seed)
{
  OftConv2dShape cs = { .B = B, .C = C, .H = H, .W = W, .OC = OC, .kh = k, .kw = k, .stride = stride, .pad = pad };
  OftCuConvShape gs = { .B = B, .C = C, .H = H, .W = W, .OC = OC, .kh = k, .kw = k, .stride = stride, .pad = pad };
  const int OH = oft_conv2d_out_h (&cs), OW = oft_conv2d_out_w (&cs);
  const int64_t nin = (int64_t) B * C * H * W, nout = (int64_t) B * OC * OH * OW, nw = (int64_t) OC * C * k * k;
  float *inp = rnd (dt, nin, -1, 1, seed), *w = rnd (dt, nw, -0.3f, 0.3f, seed + 1);
  float *dout = rnd (dt, nout, -1, 1, seed + 2);
  float *dx = fzeros (nin), *dw = fzeros (nw), *db = fzeros (OC);
  float *scr = fzeros ((int64_t) oft_conv2d_scratch_floats (&cs));
  oft_conv2d_backward (dx, dw, db, dout, inp, w, &cs, scr);

  const int mult = mult_for (dt);
  Grad gx, gw, gb;
  grad_init (&gx, dt, dx, nin, mult, seed + 3);
  grad_init (&gw, dt, dw, nw, mult, seed + 4);
  grad_init (&gb, dt, db, OC, mult, seed + 5);
  void *d_inp = dput (dt, inp, nin), *d_w = dput (dt, w, nw), *d_dout = dput (dt, dout, nout);
  const size_t sb = oftcu_conv2d_scratch_bytes (dt, &gs);
  void *d_scr = sb ? dalloc (sb) : NULL;
  oftcu_conv2d_backward (dt, gx.dev, gw.dev, gb.dev, d_dout, d_inp, d_w, &gs, d_scr);
  if (mult == 2)
    {
      oftcu_conv2d_backward (dt, gx.dev, NULL, NULL, d_dout, NULL, d_w, &gs, d_scr);
      oftcu_conv2d_backward (dt, NULL, gw.dev, NULL, d_dout, d_inp, d_w, &gs, d_scr);
      oftcu_conv2d_backward (dt, NULL, NULL, gb.dev, d_dout, NULL, d_w, &gs, d_scr);
    }
  gpu_ok ("conv2d backward");
  char label[64];
  g_snprintf (label, sizeof label, "B%d C%d %dx%d OC%d k%d s%d p%d", B, C, H, W, OC, k, stride, pad);
  grad_check ("conv2d_backward", dt, label, "dinp", &gx, tol_for (dt));
  grad_check ("conv2d_backward", dt, label, "dW", &gw, tol_for (dt));
  grad_check ("conv2d_backward", dt, label, "dbias", &gb, tol_for (dt));
  pool_clear ();
}

static void
test_conv2d (void)
{
  for (int t = 0; t < 2; t++)
    {
      if (!small_only) conv_case (dtypes[t], 1, 320, 32, 32, 320, 3, 1, 1, 50);   /* 3×3 of a ResNet block */
      if (!small_only) conv_case (dtypes[t], 2, 64, 33, 33, 32, 3, 2, 1, 60);     /* downsampler, odd size */
      if (!small_only) conv_case (dtypes[t], 2, 320, 16, 16, 640, 1, 1, 0, 70);   /* 1×1 shortcut (no im2col) */
      conv_case (dtypes[t], 3, 5, 7, 9, 4, 3, 2, 0, 80);         /* stride 2 without padding */
      if (!small_only) conv_case (dtypes[t], 2, 4, 8, 8, 320, 3, 1, 1, 90);       /* conv_in */
    }
}

/* ================================================================================================ */

static void
groupnorm_case (OftCuDtype dt, int B, int C, int64_t HW, int G, bool affine, guint32 seed)
{
  const int64_t n = (int64_t) B * C * HW;
  float *x = rnd (dt, n, -2, 3, seed), *dout = rnd (dt, n, -1, 1, seed + 1);
  float *w = affine ? rnd (OFTCU_F32, C, 0.5f, 1.5f, seed + 2) : NULL;
  float *bias = affine ? rnd (OFTCU_F32, C, -0.5f, 0.5f, seed + 3) : NULL;
  float *y = fzeros (n), *mean = fzeros (B * G), *rstd = fzeros (B * G);
  oft_groupnorm_forward (y, mean, rstd, x, w, bias, B, C, HW, G, 1e-5f);
  float *dx = fzeros (n), *dw = fzeros (C), *db = fzeros (C);
  oft_groupnorm_backward (dx, dw, db, dout, x, w, mean, rstd, B, C, HW, G);

  const int mult = mult_for (dt);
  Grad gx, gw, gb;
  grad_init (&gx, dt, dx, n, mult, seed + 4);
  grad_init (&gw, OFTCU_F32, dw, C, mult, seed + 5);
  grad_init (&gb, OFTCU_F32, db, C, mult, seed + 6);
  void *d_x = dput (dt, x, n), *d_dout = dput (dt, dout, n);
  float *d_mean = dput (OFTCU_F32, mean, B * G), *d_rstd = dput (OFTCU_F32, rstd, B * G);
  float *d_w = dput (OFTCU_F32, w, C);
  oftcu_groupnorm_backward (dt, gx.dev, gw.dev, gb.dev, d_dout, d_x, d_mean, d_rstd, d_w, B, C, HW, G);
  if (mult == 2)
    {
      oftcu_groupnorm_backward (dt, gx.dev, NULL, NULL, d_dout, d_x, d_mean, d_rstd, d_w, B, C, HW, G);
      oftcu_groupnorm_backward (dt, NULL, gw.dev, NULL, d_dout, d_x, d_mean, d_rstd, d_w, B, C, HW, G);
      oftcu_groupnorm_backward (dt, NULL, NULL, gb.dev, d_dout, d_x, d_mean, d_rstd, d_w, B, C, HW, G);
    }
  gpu_ok ("groupnorm backward");
  char label[64];
  g_snprintf (label, sizeof label, "B%d C%d HW%lld G%d%s", B, C, (long long) HW, G, affine ? "" : " no-affine");
  grad_check ("groupnorm_backward", dt, label, "dinp", &gx, tol_for (dt));
  grad_check ("groupnorm_backward", dt, label, "dW", &gw, TOL_F32);
  grad_check ("groupnorm_backward", dt, label, "dbias", &gb, TOL_F32);
  pool_clear ();
}

static void
test_groupnorm (void)
{
  for (int t = 0; t < 2; t++)
    {
      if (!small_only) groupnorm_case (dtypes[t], 2, 320, 64 * 64, 32, true, 100);
      if (!small_only) groupnorm_case (dtypes[t], 1, 1280, 8 * 8, 32, true, 110);
      groupnorm_case (dtypes[t], 2, 64, 15, 8, false, 120);
      groupnorm_case (dtypes[t], 3, 80, 9, 2, true, 130);   /* 40 channels per group: more than a block's warps */
    }
}

static void
layernorm_case (OftCuDtype dt, int64_t N, int C, guint32 seed)
{
  const int64_t n = N * C;
  float *x = rnd (dt, n, -2, 3, seed), *dout = rnd (dt, n, -1, 1, seed + 1);
  float *w = rnd (OFTCU_F32, C, 0.5f, 1.5f, seed + 2), *bias = rnd (OFTCU_F32, C, -0.5f, 0.5f, seed + 3);
  float *y = fzeros (n), *mean = fzeros (N), *rstd = fzeros (N);
  oft_layernorm_forward (y, mean, rstd, x, w, bias, N, C, 1e-5f);
  float *dx = fzeros (n), *dw = fzeros (C), *db = fzeros (C);
  oft_layernorm_backward (dx, dw, db, dout, x, w, mean, rstd, N, C);

  const int mult = mult_for (dt);
  Grad gx, gw, gb;
  grad_init (&gx, dt, dx, n, mult, seed + 4);
  grad_init (&gw, OFTCU_F32, dw, C, mult, seed + 5);
  grad_init (&gb, OFTCU_F32, db, C, mult, seed + 6);
  void *d_x = dput (dt, x, n), *d_dout = dput (dt, dout, n);
  float *d_mean = dput (OFTCU_F32, mean, N), *d_rstd = dput (OFTCU_F32, rstd, N), *d_w = dput (OFTCU_F32, w, C);
  oftcu_layernorm_backward (dt, gx.dev, gw.dev, gb.dev, d_dout, d_x, d_mean, d_rstd, d_w, N, C);
  if (mult == 2)
    {
      oftcu_layernorm_backward (dt, gx.dev, NULL, NULL, d_dout, d_x, d_mean, d_rstd, d_w, N, C);
      oftcu_layernorm_backward (dt, NULL, gw.dev, NULL, d_dout, d_x, d_mean, d_rstd, d_w, N, C);
      oftcu_layernorm_backward (dt, NULL, NULL, gb.dev, d_dout, d_x, d_mean, d_rstd, d_w, N, C);
    }
  gpu_ok ("layernorm backward");
  char label[64];
  g_snprintf (label, sizeof label, "N%lld C%d", (long long) N, C);
  grad_check ("layernorm_backward", dt, label, "dinp", &gx, tol_for (dt));
  grad_check ("layernorm_backward", dt, label, "dW", &gw, TOL_F32);
  grad_check ("layernorm_backward", dt, label, "dbias", &gb, TOL_F32);
  pool_clear ();
}

static void
test_layernorm (void)
{
  for (int t = 0; t < 2; t++)
    {
      if (!small_only) layernorm_case (dtypes[t], 4096, 320, 200);
      if (!small_only) layernorm_case (dtypes[t], 154, 768, 210);
      layernorm_case (dtypes[t], 33, 19, 220);
    }
}

/* ================================================================================================ */
/* elementwise: silu, gelu (one output each) */

typedef void (*CpuAct) (float *dinp, const float *dout, const float *inp, int64_t n);
typedef void (*GpuAct) (OftCuDtype dt, void *dinp, const void *dout, const void *inp, int64_t n);

static void
act_case (const char *kernel, CpuAct cpu, GpuAct gpu, OftCuDtype dt, int64_t n, guint32 seed)
{
  float *x = rnd (dt, n, -6, 6, seed), *dout = rnd (dt, n, -1, 1, seed + 1), *dx = fzeros (n);
  cpu (dx, dout, x, n);
  const int mult = mult_for (dt);
  Grad gx;
  grad_init (&gx, dt, dx, n, mult, seed + 2);
  void *d_x = dput (dt, x, n), *d_dout = dput (dt, dout, n);
  for (int i = 0; i < mult; i++)
    gpu (dt, gx.dev, d_dout, d_x, n);
  gpu_ok (kernel);
  char label[64];
  g_snprintf (label, sizeof label, "n%lld", (long long) n);
  grad_check (kernel, dt, label, "dinp", &gx, tol_for (dt));
  pool_clear ();
}

static void
test_activations (void)
{
  for (int t = 0; t < 2; t++)
    {
      if (!small_only) act_case ("silu_backward", oft_silu_backward, oftcu_silu_backward, dtypes[t], 2 * 320 * 64 * 64, 300);
      act_case ("silu_backward", oft_silu_backward, oftcu_silu_backward, dtypes[t], 1001, 310);
      if (!small_only) act_case ("gelu_backward", oft_gelu_backward, oftcu_gelu_backward, dtypes[t], 4096 * 1280, 320);
      act_case ("gelu_backward", oft_gelu_backward, oftcu_gelu_backward, dtypes[t], 1001, 330);
    }
}

static void
geglu_case (OftCuDtype dt, int64_t N, int C, guint32 seed)
{
  float *x = rnd (dt, N * 2 * C, -4, 4, seed), *dout = rnd (dt, N * C, -1, 1, seed + 1);
  float *dx = fzeros (N * 2 * C);
  oft_geglu_backward (dx, dout, x, N, C);
  const int mult = mult_for (dt);
  Grad gx;
  grad_init (&gx, dt, dx, N * 2 * C, mult, seed + 2);
  void *d_x = dput (dt, x, N * 2 * C), *d_dout = dput (dt, dout, N * C);
  for (int i = 0; i < mult; i++)
    oftcu_geglu_backward (dt, gx.dev, d_dout, d_x, N, C);
  gpu_ok ("geglu backward");
  char label[64];
  g_snprintf (label, sizeof label, "N%lld C%d", (long long) N, C);
  grad_check ("geglu_backward", dt, label, "dinp", &gx, tol_for (dt));
  pool_clear ();
}

static void
test_geglu (void)
{
  for (int t = 0; t < 2; t++)
    {
      if (!small_only) geglu_case (dtypes[t], 4096, 1280, 400);
      geglu_case (dtypes[t], 7, 13, 410);
    }
}

static void
softmax_case (OftCuDtype dt, int64_t N, int C, guint32 seed)
{
  float *x = rnd (OFTCU_F32, N * C, -4, 4, seed), *p = fzeros (N * C);
  oft_softmax_forward (p, x, N, C);
  round_dt (dt, p, N * C);
  float *dout = rnd (dt, N * C, -1, 1, seed + 1), *dx = fzeros (N * C);
  oft_softmax_backward (dx, dout, p, N, C);
  const int mult = mult_for (dt);
  Grad gx;
  grad_init (&gx, dt, dx, N * C, mult, seed + 2);
  void *d_p = dput (dt, p, N * C), *d_dout = dput (dt, dout, N * C);
  for (int i = 0; i < mult; i++)
    oftcu_softmax_backward (dt, gx.dev, d_dout, d_p, N, C);
  gpu_ok ("softmax backward");
  char label[64];
  g_snprintf (label, sizeof label, "N%lld C%d", (long long) N, C);
  grad_check ("softmax_backward", dt, label, "dinp", &gx, tol_for (dt));
  pool_clear ();
}

static void
test_softmax (void)
{
  for (int t = 0; t < 2; t++)
    {
      if (!small_only) softmax_case (dtypes[t], 1024, 77, 500);
      if (!small_only) softmax_case (dtypes[t], 64, 4096, 510);
      softmax_case (dtypes[t], 5, 3, 520);
    }
}

/* ================================================================================================ */
/* attention */

/* lse[B, H, Tq] = log Σ_j exp(scale·q_i·k_j) over the valid keys, from fp32 scores (sgemm, as both kernels
 * form them), summed in double */
static float *
host_lse (const float *q, const float *k, int B, int Tq, int Tk, int H, int D, bool causal)
{
  const int HD = H * D;
  const float scale = 1.0f / sqrtf ((float) D);
  float *lse = fzeros ((int64_t) B * H * Tq), *s = g_new (float, (size_t) Tq * Tk);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      {
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, D, scale, q + (int64_t) b * Tq * HD + h * D,
                     HD, k + (int64_t) b * Tk * HD + h * D, HD, 0.0f, s, Tk);
        for (int i = 0; i < Tq; i++)
          {
            const float *row = s + (int64_t) i * Tk;
            const int valid = causal ? i + 1 : Tk;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < valid; j++)
              mx = fmax (mx, row[j]);
            for (int j = 0; j < valid; j++)
              sum += exp ((double) row[j] - mx);
            lse[((int64_t) b * H + h) * Tq + i] = (float) (mx + log (sum));
          }
      }
  g_free (s);
  return lse;
}

static void
attention_case (OftCuDtype dt, int B, int Tq, int Tk, int H, int D, bool causal, guint32 seed)
{
  const int HD = H * D;
  const int64_t nq = (int64_t) B * Tq * HD, nk = (int64_t) B * Tk * HD;
  float *q = rnd (dt, nq, -1, 1, seed), *k = rnd (dt, nk, -1, 1, seed + 1), *v = rnd (dt, nk, -1, 1, seed + 2);
  float *out = fzeros (nq), *att = hkeep (g_new (float, (size_t) B * H * Tq * Tk));
  oft_attention_forward (out, att, q, k, v, B, Tq, Tk, H, D, causal);
  float *out_dt = fdup (out, nq);
  round_dt (dt, out_dt, nq);
  float *dout = rnd (dt, nq, -1, 1, seed + 3);
  float *dq = fzeros (nq), *dk = fzeros (nk), *dv = fzeros (nk);
  float *scr = hkeep (g_new (float, oft_attention_scratch_floats (B, Tq, Tk, H, D)));
  oft_attention_backward (dq, dk, dv, dout, att, q, k, v, B, Tq, Tk, H, D, scr);
  float *lse = host_lse (q, k, B, Tq, Tk, H, D, causal);

  const int mult = mult_for (dt);
  Grad gq, gk, gv;
  grad_init (&gq, dt, dq, nq, mult, seed + 4);
  grad_init (&gk, dt, dk, nk, mult, seed + 5);
  grad_init (&gv, dt, dv, nk, mult, seed + 6);
  void *d_q = dput (dt, q, nq), *d_k = dput (dt, k, nk), *d_v = dput (dt, v, nk);
  void *d_out = dput (dt, out_dt, nq), *d_dout = dput (dt, dout, nq);
  float *d_lse = dput (OFTCU_F32, lse, (int64_t) B * H * Tq);
  oftcu_attention_backward (dt, gq.dev, gk.dev, gv.dev, d_dout, d_out, d_lse, d_q, d_k, d_v, B, Tq, Tk, H, D, causal);
  if (mult == 2)
    {
      oftcu_attention_backward (dt, gq.dev, NULL, NULL, d_dout, d_out, d_lse, d_q, d_k, d_v, B, Tq, Tk, H, D, causal);
      oftcu_attention_backward (dt, NULL, gk.dev, NULL, d_dout, d_out, d_lse, d_q, d_k, d_v, B, Tq, Tk, H, D, causal);
      oftcu_attention_backward (dt, NULL, NULL, gv.dev, d_dout, d_out, d_lse, d_q, d_k, d_v, B, Tq, Tk, H, D, causal);
    }
  gpu_ok ("attention backward");
  char label[64];
  g_snprintf (label, sizeof label, "B%d Tq%d Tk%d H%d D%d%s", B, Tq, Tk, H, D, causal ? " causal" : "");
  const double bound = dt == OFTCU_BF16 ? TOL_BF16 : TOL_F32_ATT;
  grad_check ("attention_backward", dt, label, "dq", &gq, bound);
  grad_check ("attention_backward", dt, label, "dk", &gk, bound);
  grad_check ("attention_backward", dt, label, "dv", &gv, bound);
  pool_clear ();
}

static void
test_attention (void)
{
  for (int t = 0; t < 2; t++)
    {
      if (!small_only) attention_case (dtypes[t], 1, 4096, 4096, 2, 40, false, 600);   /* self-attention at 64×64 (2 of 8 heads) */
      if (!small_only) attention_case (dtypes[t], 2, 1024, 77, 8, 80, false, 610);     /* cross-attention at 32×32 */
      if (!small_only) attention_case (dtypes[t], 1, 256, 77, 8, 160, false, 620);     /* cross-attention at 16×16 */
      if (!small_only) attention_case (dtypes[t], 1, 77, 77, 12, 64, true, 630);       /* CLIP's causal self-attention */
      attention_case (dtypes[t], 2, 37, 50, 3, 24, false, 640);       /* partial tiles */
      attention_case (dtypes[t], 1, 70, 70, 2, 8, true, 650);         /* causal over two query tiles */
      attention_case (dtypes[t], 1, 65, 33, 1, 256, false, 660);      /* largest head dim */
      attention_case (dtypes[t], 1, 20, 77, 2, 80, false, 670);       /* head dims 65..128 */
      attention_case (dtypes[t], 2, 130, 150, 2, 40, false, 680);     /* several full and partial tiles */
      attention_case (dtypes[t], 1, 150, 150, 2, 64, true, 690);      /* causal over three tiles */
      attention_case (dtypes[t], 2, 333, 50, 2, 40, false, 695);      /* dK/dV over query chunks, partial tiles */
    }
}

/* The backward reads the forward's lse: natural log of Σ exp over the SCALED scores, [B, H, Tq]. Checks that
 * the forward kernels (cuda-attention.cu: the fp32 SIMT kernel, and the bf16 tensor-core kernel for D = 40)
 * write exactly that, so the two halves fit together. */
static void
test_attention_lse_contract (void)
{
  const int B = 2, Tq = 70, Tk = 90, H = 3, D = 40;
  for (int t = 0; t < 2; t++)
    for (int c = 0; c < 2; c++)
      {
        const OftCuDtype dt = dtypes[t];
        const bool causal = c == 1;
        const int tk = causal ? Tq : Tk;
        const int64_t nq = (int64_t) B * Tq * H * D, nk = (int64_t) B * tk * H * D, nl = (int64_t) B * H * Tq;
        float *q = rnd (dt, nq, -1, 1, 700), *k = rnd (dt, nk, -1, 1, 701), *v = rnd (dt, nk, -1, 1, 702);
        float *want = host_lse (q, k, B, Tq, tk, H, D, causal);
        void *d_q = dput (dt, q, nq), *d_k = dput (dt, k, nk), *d_v = dput (dt, v, nk);
        void *d_out = dalloc (oftcu_dtype_size (dt) * (size_t) nq);
        float *d_lse = dalloc (sizeof (float) * (size_t) nl);
        oftcu_attention_forward (dt, d_out, d_lse, d_q, d_k, d_v, B, Tq, tk, H, D, causal);
        gpu_ok ("attention forward");
        /* lse ≈ log Tk + O(1). fp32: 1e-5 of its scale is a few ulps of fp32 sums and exps. bf16: the
         * tensor-core kernel may sum bf16-rounded probabilities; an lse off by 1e-3·|lse| ≈ 5e-3 scales the
         * backward's recomputed probabilities by 1 ± 5e-3, inside the bf16 gradient budget */
        check_scaled ("attention_forward_lse", dt, causal ? "B2 Tq70 H3 D40 causal" : "B2 Tq70 Tk90 H3 D40", "lse",
                      dget (OFTCU_F32, d_lse, nl), want, nl, maxabs (want, nl), dt == OFTCU_BF16 ? 1e-3 : TOL_F32);
        pool_clear ();
      }
}

/* ================================================================================================ */
/* upsample, concat, add_channel */

static void
upsample_case (OftCuDtype dt, int64_t BC, int H, int W, guint32 seed)
{
  const int64_t nin = BC * H * W, nout = 4 * nin;
  float *dout = rnd (dt, nout, -1, 1, seed), *dx = fzeros (nin);
  oft_upsample2x_backward (dx, dout, BC, H, W);
  const int mult = mult_for (dt);
  Grad gx;
  grad_init (&gx, dt, dx, nin, mult, seed + 1);
  void *d_dout = dput (dt, dout, nout);
  for (int i = 0; i < mult; i++)
    oftcu_upsample2x_backward (dt, gx.dev, d_dout, BC, H, W);
  gpu_ok ("upsample2x backward");
  char label[64];
  g_snprintf (label, sizeof label, "BC%lld %dx%d", (long long) BC, H, W);
  grad_check ("upsample2x_backward", dt, label, "dinp", &gx, tol_for (dt));
  pool_clear ();
}

static void
concat_case (OftCuDtype dt, int B, int Ca, int Cb, int64_t HW, guint32 seed)
{
  const int64_t na = (int64_t) B * Ca * HW, nb = (int64_t) B * Cb * HW;
  float *dout = rnd (dt, na + nb, -1, 1, seed), *da = fzeros (na), *db = fzeros (nb);
  oft_concat_backward (da, db, dout, B, Ca, Cb, HW);
  const int mult = mult_for (dt);
  Grad ga, gb;
  grad_init (&ga, dt, da, na, mult, seed + 1);
  grad_init (&gb, dt, db, nb, mult, seed + 2);
  void *d_dout = dput (dt, dout, na + nb);
  oftcu_concat_backward (dt, ga.dev, gb.dev, d_dout, B, Ca, Cb, HW);
  if (mult == 2)
    {
      oftcu_concat_backward (dt, ga.dev, NULL, d_dout, B, Ca, Cb, HW);
      oftcu_concat_backward (dt, NULL, gb.dev, d_dout, B, Ca, Cb, HW);
    }
  gpu_ok ("concat backward");
  char label[64];
  g_snprintf (label, sizeof label, "B%d Ca%d Cb%d HW%lld", B, Ca, Cb, (long long) HW);
  grad_check ("concat_backward", dt, label, "da", &ga, tol_for (dt));
  grad_check ("concat_backward", dt, label, "db", &gb, tol_for (dt));
  pool_clear ();
}

static void
add_channel_case (OftCuDtype dt, int B, int C, int64_t HW, guint32 seed)
{
  const int64_t n = (int64_t) B * C * HW;
  float *dx = rnd (dt, n, -1, 1, seed), *dv = fzeros ((int64_t) B * C);
  for (int64_t r = 0; r < (int64_t) B * C; r++)   /* dv[b, c] = Σ_HW dx[b, c, :] in double */
    {
      double s = 0;
      for (int64_t i = 0; i < HW; i++)
        s += dx[r * HW + i];
      dv[r] = (float) s;
    }
  const int mult = mult_for (dt);
  Grad gv;
  grad_init (&gv, dt, dv, (int64_t) B * C, mult, seed + 1);
  void *d_dx = dput (dt, dx, n);
  for (int i = 0; i < mult; i++)
    oftcu_add_channel_backward (dt, gv.dev, d_dx, B, C, HW);
  gpu_ok ("add_channel backward");
  char label[64];
  g_snprintf (label, sizeof label, "B%d C%d HW%lld", B, C, (long long) HW);
  grad_check ("add_channel_backward", dt, label, "dv", &gv, tol_for (dt));
  pool_clear ();
}

static void
test_resample (void)
{
  for (int t = 0; t < 2; t++)
    {
      if (!small_only) upsample_case (dtypes[t], 2 * 640, 32, 32, 800);
      upsample_case (dtypes[t], 3, 5, 7, 810);
      if (!small_only) concat_case (dtypes[t], 2, 640, 320, 32 * 32, 820);
      concat_case (dtypes[t], 3, 5, 2, 7, 830);
      if (!small_only) add_channel_case (dtypes[t], 2, 320, 64 * 64, 840);
      if (!small_only) add_channel_case (dtypes[t], 2, 1280, 8 * 8, 850);
      add_channel_case (dtypes[t], 3, 5, 7, 860);
    }
}

/* ================================================================================================ */
/* OFT block rotation */

static void
rotate_case (OftCuDtype dt, int64_t N, int nb, int b, guint32 seed)
{
  const int d = nb * b;
  OftSpec spec = { .d = d, .b = b, .n_blocks = nb, .block_share = false };
  float *x = rnd (dt, N * d, -1, 1, seed), *dout = rnd (dt, N * d, -1, 1, seed + 1);
  /* R near the identity, as OFT's rotations are: the small part is what bf16/TF32 rounding would lose */
  float *R = rnd (OFTCU_F32, (int64_t) nb * b * b, -0.05f, 0.05f, seed + 2);
  for (int k = 0; k < nb; k++)
    for (int i = 0; i < b; i++)
      R[((int64_t) k * b + i) * b + i] += 1.0f;
  char label[64];
  g_snprintf (label, sizeof label, "N%lld nb%d b%d", (long long) N, nb, b);

  /* forward overwrites: the output starts as garbage */
  float *y = fzeros (N * d);
  oft_rotate_input_forward (y, x, R, N, &spec);
  void *d_x = dput (dt, x, N * d), *d_dout = dput (dt, dout, N * d), *d_R = dput (OFTCU_F32, R, (int64_t) nb * b * b);
  void *d_y = dput (dt, rnd (dt, N * d, 100, 200, seed + 3), N * d);
  oftcu_block_rotate_forward (dt, d_y, d_x, d_R, N, nb, b);
  gpu_ok ("block rotate forward");
  check_scaled ("block_rotate_forward", dt, label, "out", dget (dt, d_y, N * d), y, N * d, maxabs (y, N * d),
                dt == OFTCU_BF16 ? TOL_BF16_ONCE : TOL_F32);

  float *dx = fzeros (N * d), *dR = fzeros ((int64_t) nb * b * b);
  oft_rotate_input_backward (dx, dR, dout, x, R, N, &spec);
  const int mult = mult_for (dt);
  Grad gx, gR;
  grad_init (&gx, dt, dx, N * d, mult, seed + 4);
  grad_init (&gR, OFTCU_F32, dR, (int64_t) nb * b * b, mult, seed + 5);
  oftcu_block_rotate_backward (dt, gx.dev, gR.dev, d_dout, d_x, d_R, N, nb, b);
  if (mult == 2)
    {
      oftcu_block_rotate_backward (dt, gx.dev, NULL, d_dout, d_x, d_R, N, nb, b);
      oftcu_block_rotate_backward (dt, NULL, gR.dev, d_dout, d_x, d_R, N, nb, b);
    }
  gpu_ok ("block rotate backward");
  grad_check ("block_rotate_backward", dt, label, "dinp", &gx, tol_for (dt));
  grad_check ("block_rotate_backward", dt, label, "dR", &gR, TOL_F32);
  pool_clear ();
}

static void
test_block_rotate (void)
{
  for (int t = 0; t < 2; t++)
    {
      if (!small_only) rotate_case (dtypes[t], 4096, 10, 32, 900);   /* to_q at 64×64, block size 32 */
      if (!small_only) rotate_case (dtypes[t], 154, 24, 32, 910);    /* to_k on the 768-wide context */
      if (!small_only) rotate_case (dtypes[t], 256, 20, 64, 920);    /* 1280 wide, block size 64 */
      rotate_case (dtypes[t], 50, 3, 20, 930);      /* partial tiles */
      rotate_case (dtypes[t], 70, 2, 40, 940);      /* blocks over 32: 64-wide dR tiles */
    }
}

/* ================================================================================================ */
/* COFT, MSE, sum of squares, AdamW */

static void
test_coft (void)
{
  const int cases[][2] = { { 10, 32 }, { 40, 32 }, { 5, 7 } };
  for (size_t c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      const int rows = cases[c][0], b = cases[c][1];
      const int64_t ne = (int64_t) b * (b - 1) / 2, n = rows * ne;
      const double eps = 0.1;
      float *v = fzeros (n);
      for (int r = 0; r < rows; r++)   /* alternate rows inside and outside the ball */
        test_fill_uniform (v + r * ne, ne, r % 2 ? -1e-2f : -1e-5f, r % 2 ? 1e-2f : 1e-5f, 1000 + c * 100 + r);
      OftSpec spec = { .d = rows * b, .b = b, .n_blocks = rows, .coft = true, .eps = eps };
      float *d_v = dput (OFTCU_F32, v, n);
      oft_coft_project (v, &spec);
      oftcu_coft_project (d_v, rows, b, eps);
      gpu_ok ("coft project");
      float *got = dget (OFTCU_F32, d_v, n);
      char label[64];
      g_snprintf (label, sizeof label, "rows%d b%d", rows, b);
      /* the same double sums in another order: equal up to the float rounding of v·f (an ulp at most) */
      check_scaled ("coft_project", OFTCU_F32, label, "packed", got, v, n, maxabs (v, n), 1e-6);
      pool_clear ();
    }
}

/* Exact Cayley against oft_rotation_forward/backward (double LU with pivoting on the CPU, fp32 Gauss–Jordan
 * without pivoting on the GPU): R and Ainv, then dpacked into a prefill, for rows of one block each and
 * for one shared block repeated (reps > 1 sums the copies' dR first), at the parameter scales training
 * reaches (|u| ≤ 0.05) and far beyond it (|u| ≤ 0.5, ‖Q‖ ≈ 5 at b = 32). fp32 against double: every
 * entry of (I + Q)⁻¹ is a b-term elimination of values ≤ 1, ~b·2⁻²⁴ ≈ 2e-6 of the scale; bound 1e-5. */
static void
test_cayley (void)
{
  const struct { int rows, reps, b; float amp; } cases[] = {
    { 40, 1, 32, 0.05f }, { 10, 1, 32, 0.5f }, { 1, 12, 32, 0.05f }, { 6, 1, 64, 0.05f }, { 5, 1, 7, 0.3f },
    { 3, 2, 1, 0.1f },
  };
  for (size_t c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      const int rows = cases[c].rows, reps = cases[c].reps, b = cases[c].b;
      const int64_t ne = (int64_t) b * (b - 1) / 2, bb = (int64_t) b * b, nR = (int64_t) rows * reps * bb;
      float *u = fzeros (rows * ne), *R = fzeros (rows * bb), *A = fzeros (rows * bb);
      test_fill_uniform (u, rows * ne, -cases[c].amp, cases[c].amp, 2000 + c);
      OftSpec spec = { .d = rows * b, .b = b, .n_blocks = rows };
      oft_rotation_forward (R, A, u, &spec);
      float *want_R = fzeros (nR);
      for (int r = 0; r < rows; r++)
        for (int q = 0; q < reps; q++)
          memcpy (want_R + ((int64_t) r * reps + q) * bb, R + r * bb, bb * sizeof (float));
      float *d_u = dput (OFTCU_F32, u, rows * ne), *d_R = dalloc (nR * sizeof (float));
      float *d_A = dalloc (rows * bb * sizeof (float));
      oftcu_cayley_forward (d_R, d_A, d_u, rows, reps, b);
      gpu_ok ("cayley forward");
      char label[64];
      g_snprintf (label, sizeof label, "rows%d reps%d b%d |u|<=%g", rows, reps, b, cases[c].amp);
      check_scaled ("cayley_forward", OFTCU_F32, label, "R", dget (OFTCU_F32, d_R, nR), want_R, nR, 1.0, TOL_F32);
      check_scaled ("cayley_forward", OFTCU_F32, label, "Ainv", dget (OFTCU_F32, d_A, rows * bb), A, rows * bb, 1.0,
                    TOL_F32);
      /* backward from the CPU's Ainv (so only the backward is measured), into a prefill */
      float *dR = rnd (OFTCU_F32, nR, -1, 1, 3000 + c), *G = fzeros (rows * bb);
      for (int r = 0; r < rows; r++)
        for (int q = 0; q < reps; q++)
          for (int64_t e = 0; e < bb; e++)
            G[r * bb + e] += dR[((int64_t) r * reps + q) * bb + e];
      float *delta = fzeros (rows * ne), *pre = rnd (OFTCU_F32, rows * ne, -1, 1, 4000 + c);
      oft_rotation_backward (delta, G, A, u, &spec);
      double scale = fmax (maxabs (delta, rows * ne), 1e-30);
      float *want = fzeros (rows * ne);
      for (int64_t e = 0; e < rows * ne; e++)
        want[e] = pre[e] + delta[e];
      float *d_dp = dput (OFTCU_F32, pre, rows * ne);
      float *d_dR = dput (OFTCU_F32, dR, nR), *d_A2 = dput (OFTCU_F32, A, rows * bb);
      oftcu_cayley_backward (d_dp, d_dR, d_A2, rows, reps, b);
      gpu_ok ("cayley backward");
      check_scaled ("cayley_backward", OFTCU_F32, label, "dpacked", dget (OFTCU_F32, d_dp, rows * ne), want,
                    rows * ne, scale, TOL_F32);
      pool_clear ();
    }
  /* a block size over the kernel's limit is an error, not a launch */
  oftcu_cayley_forward (NULL, NULL, NULL, 1, 1, OFTCU_CAYLEY_MAX_B + 1);
  g_assert_nonnull (oftcu_error ());
  oftcu_clear_error ();
}

static void
mse_case (OftCuDtype dt, int64_t n, guint32 seed)
{
  float *p = rnd (dt, n, -2, 2, seed), *t = rnd (dt, n, -2, 2, seed + 1);
  char label[64];
  g_snprintf (label, sizeof label, "n%lld", (long long) n);
  void *d_p = dput (dt, p, n), *d_t = dput (dt, t, n);
  float *d_loss = dalloc (sizeof (float));
  oftcu_mse_forward (dt, d_loss, d_p, d_t, n);
  gpu_ok ("mse forward");
  float want = oft_mse_forward (p, t, n), *got = dget (OFTCU_F32, d_loss, 1);
  /* double sums in another order, rounded once to float */
  check_scaled ("mse_forward", dt, label, "loss", got, &want, 1, fabs (want), 1e-6);

  /* backward: the CPU runs on the same prefill the same number of times, so fp32 must match bit for bit */
  const float dloss = 0.7f;
  float *dz = fzeros (n);
  oft_mse_backward (dz, p, t, n, dloss);
  double s = maxabs (dz, n);
  float *g0 = rnd (dt, n, (float) -s, (float) s, seed + 2), *want_g = fdup (g0, n);
  const int mult = mult_for (dt);
  for (int i = 0; i < mult; i++)
    oft_mse_backward (want_g, p, t, n, dloss);
  void *d_g = dput (dt, g0, n);
  for (int i = 0; i < mult; i++)
    oftcu_mse_backward (dt, d_g, d_p, d_t, n, dloss);
  gpu_ok ("mse backward");
  check_scaled ("mse_backward", dt, label, "dpred", dget (dt, d_g, n), want_g, n, s,
                dt == OFTCU_F32 ? 0.0 : TOL_BF16_ONCE);
  pool_clear ();
}

static void
test_mse (void)
{
  for (int t = 0; t < 2; t++)
    {
      mse_case (dtypes[t], 4 * 64 * 64, 1100);
      mse_case (dtypes[t], 2 * 4 * 64 * 64, 1110);
      mse_case (dtypes[t], 1001, 1120);
    }
}

static void
test_sumsq (void)
{
  const int64_t sizes[] = { 1000000, 1001 };
  for (size_t c = 0; c < G_N_ELEMENTS (sizes); c++)
    {
      const int64_t n = sizes[c];
      float *x = rnd (OFTCU_F32, n, -1, 1, 1200 + (guint32) c);
      float acc0 = 1.5f;
      double s = acc0;
      for (int64_t i = 0; i < n; i++)
        s += (double) x[i] * x[i];
      float want = (float) s;
      void *d_x = dput (OFTCU_F32, x, n);
      float *d_acc = dput (OFTCU_F32, &acc0, 1);
      oftcu_sumsq (d_acc, d_x, n);
      gpu_ok ("sumsq");
      char label[64];
      g_snprintf (label, sizeof label, "n%lld, acc 1.5", (long long) n);
      /* double sum, rounded once: ≤ 1 ulp */
      check_scaled ("sumsq", OFTCU_F32, label, "acc", dget (OFTCU_F32, d_acc, 1), &want, 1, fabs (want), 1e-6);
      pool_clear ();
    }
}

static void
adamw_case (int64_t n, double lr, double wd, double beta2, guint32 seed)
{
  OftAdamW o;
  oft_adamw_init (&o);
  o.weight_decay = wd;
  o.beta2 = beta2;
  float *p = rnd (OFTCU_F32, n, -0.1f, 0.1f, seed), *m = fzeros (n), *v = fzeros (n);
  void *d_p = dput (OFTCU_F32, p, n), *d_m = dput (OFTCU_F32, m, n), *d_v = dput (OFTCU_F32, v, n);
  void *d_g = dalloc (sizeof (float) * (size_t) n);
  for (int64_t k = 1; k <= 3; k++)
    {
      /* gradients over several decades, as real ones are */
      float *g = rnd (OFTCU_F32, n, -1, 1, seed + (guint32) k);
      for (int64_t i = 0; i < n; i++)
        g[i] *= powf (10.0f, -(float) (i % 5));
      g_assert_cmpint (oftcu_upload (d_g, g, sizeof (float) * (size_t) n), ==, 0);
      oft_adamw_step (&o, p, m, v, g, n, k, lr);
      oftcu_adamw_step (d_p, d_m, d_v, d_g, n, k, lr, o.beta1, o.beta2, o.eps, o.weight_decay);
      gpu_ok ("adamw step");
      char label[80];
      g_snprintf (label, sizeof label, "n%lld lr%g wd%g b2 %g step%lld", (long long) n, lr, wd, beta2, (long long) k);
      /* bit for bit: the same fp32 operations in the same order */
      check_scaled ("adamw_step", OFTCU_F32, label, "param", dget (OFTCU_F32, d_p, n), p, n, maxabs (p, n), 0.0);
      check_scaled ("adamw_step", OFTCU_F32, label, "m", dget (OFTCU_F32, d_m, n), m, n, maxabs (m, n), 0.0);
      check_scaled ("adamw_step", OFTCU_F32, label, "v", dget (OFTCU_F32, d_v, n), v, n, maxabs (v, n), 0.0);
    }
  pool_clear ();
}

static void
test_adamw (void)
{
  adamw_case (49600, 1e-3, 1e-2, 0.999, 1300);   /* 10 blocks of 32: 10·496 per layer, 10 layers */
  adamw_case (1001, 1e-4, 0.0, 0.99, 1310);
}

/* ================================================================================================ */

static void
print_summary (void)
{
  printf ("# ---- CUDA backward/training kernels: worst rel error per kernel (bound) ----\n");
  for (int i = 0; i < n_summary; i++)
    {
      const Summary *s = &summary[i];
      char f[48] = "-", b[48] = "-";
      if (s->seen[0])
        g_snprintf (f, sizeof f, "%.2e (%.0e)%s", s->worst[0], s->bound[0], s->worst[0] <= s->bound[0] ? "" : " FAIL");
      if (s->seen[1])
        g_snprintf (b, sizeof b, "%.2e (%.0e)%s", s->worst[1], s->bound[1], s->worst[1] <= s->bound[1] ? "" : " FAIL");
      printf ("# %-30s f32 %-26s bf16 %s\n", s->kernel, f, b);
    }
  fflush (stdout);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  char name[256] = "";
  if (oftcu_init (0, name, sizeof name) != 0)
    {
      g_printerr ("no CUDA device: %s\n", oftcu_error () ? oftcu_error () : "?");
      return 77;
    }
  small_only = g_getenv ("OFT_CUDA_TEST_SMALL") != NULL;
  printf ("# device: %s%s\n", name, small_only ? " (small shapes only)" : "");
  oftcu_set_tf32 (false);   /* fp32 GEMMs in full fp32: the bounds above are fp32's */
  host_pool = g_ptr_array_new_with_free_func (g_free);
  dev_pool = g_ptr_array_new_with_free_func (dev_free);

  g_test_add_func ("/cuda-bwd/linear", test_linear);
  g_test_add_func ("/cuda-bwd/conv2d", test_conv2d);
  g_test_add_func ("/cuda-bwd/groupnorm", test_groupnorm);
  g_test_add_func ("/cuda-bwd/layernorm", test_layernorm);
  g_test_add_func ("/cuda-bwd/activations", test_activations);
  g_test_add_func ("/cuda-bwd/geglu", test_geglu);
  g_test_add_func ("/cuda-bwd/softmax", test_softmax);
  g_test_add_func ("/cuda-bwd/attention", test_attention);
  g_test_add_func ("/cuda-bwd/attention-lse-contract", test_attention_lse_contract);
  g_test_add_func ("/cuda-bwd/upsample-concat-add-channel", test_resample);
  g_test_add_func ("/cuda-train/block-rotate", test_block_rotate);
  g_test_add_func ("/cuda-train/coft", test_coft);
  g_test_add_func ("/cuda-train/cayley", test_cayley);
  g_test_add_func ("/cuda-train/mse", test_mse);
  g_test_add_func ("/cuda-train/sumsq", test_sumsq);
  g_test_add_func ("/cuda-train/adamw", test_adamw);
  int rc = g_test_run ();
  print_summary ();
  g_ptr_array_unref (host_pool);
  g_ptr_array_unref (dev_pool);
  return rc;
}
