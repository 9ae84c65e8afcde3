/* The forward CUDA kernels (oftcore/cuda/cuda-kernels.h) against their CPU references (oft/nn.h, or a loop
 * here where nn.h has none), on random inputs at small odd shapes and at SD1.5's shapes. Exits 77 (skipped)
 * when no CUDA device initialises.
 *
 * Measure: err = max_i |gpu_i − cpu_i| / max_i |cpu_i|, the error relative to the tensor's scale. Each check
 * prints one line "# kernel dtype shape: err … (tol …) ok|FAIL" and a failure does not stop the program, so
 * one run shows every number.
 *
 * Tolerances. fp32 (TF32 off): 1e-5; fp32 arithmetic differs from the CPU only in summation order and
 * libm rounding (a few ulp, ~1e-7 of the scale, times √K for K-term sums).
 * bf16: inputs are rounded to bf16 first and the CPU reference runs on those rounded values, so only the
 * kernel's own error is measured: the bf16 rounding of the output (≤ 2⁻⁹ ≈ 2e-3 of a value) and of
 * intermediates the kernel keeps in bf16 (attention's probabilities before P·V, ≤ 2⁻⁹ each, averaging out
 * over keys). 1e-2 leaves a factor 4 over the worst single rounding; an indexing bug or a missing term gives
 * errors of order 1. Norm statistics (mean, rstd) and lse are fp32 outputs computed in fp32/fp64 from the
 * bf16 inputs: 1e-5 and 1e-4 respectively. */
#include "test-common.h"
#include "cuda-kernels.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* test hook in cuda-attention.cu: 1 forces the SIMT kernel, 0 allows the tensor-core one */
void oftcu_attention_force_simt (int on);

#define TOL_F32  1e-5
#define TOL_BF16 1e-2

static const OftCuDtype dtypes[] = { OFTCU_F32, OFTCU_BF16 };

static const char *
dt_name (OftCuDtype dt)
{
  return dt == OFTCU_BF16 ? "bf16" : "fp32";
}

static double
dt_tol (OftCuDtype dt)
{
  return dt == OFTCU_BF16 ? TOL_BF16 : TOL_F32;
}

static float *
rnd (int64_t n, float lo, float hi, guint32 seed)
{
  float *x = g_new (float, n > 0 ? n : 1);
  test_fill_uniform (x, n, lo, hi, seed);
  return x;
}

/* rounds x to what a dt tensor can hold (bf16: to nearest even), so the CPU sees the GPU's inputs */
static void
quantize (float *x, int64_t n, OftCuDtype dt)
{
  if (dt == OFTCU_BF16)
    for (int64_t i = 0; i < n; i++)
      x[i] = oft_bf16_to_f32 (oft_f32_to_bf16 (x[i]));
}

static void
fail_on_cuda_error (const char *what)
{
  if (oftcu_sync () != 0)
    {
      printf ("# %s: CUDA error: %s\n", what, oftcu_error ());
      oftcu_clear_error ();
      g_test_fail ();
    }
}

/* device copy of x[n] in type dt */
static void *
up (const float *x, int64_t n, OftCuDtype dt)
{
  void *d = oftcu_alloc ((size_t) n * oftcu_dtype_size (dt));
  g_assert_nonnull (d);
  if (dt == OFTCU_BF16)
    {
      uint16_t *h = g_new (uint16_t, n > 0 ? n : 1);
      oft_convert_from_f32 (h, OFT_DTYPE_BF16, x, n);
      g_assert_cmpint (oftcu_upload (d, h, n * 2), ==, 0);
      g_free (h);
    }
  else
    g_assert_cmpint (oftcu_upload (d, x, n * 4), ==, 0);
  return d;
}

static float *
down (const void *d, int64_t n, OftCuDtype dt)
{
  float *x = g_new (float, n > 0 ? n : 1);
  fail_on_cuda_error ("before download");
  if (dt == OFTCU_BF16)
    {
      uint16_t *h = g_new (uint16_t, n > 0 ? n : 1);
      g_assert_cmpint (oftcu_download (h, d, n * 2), ==, 0);
      oft_convert_to_f32 (x, h, OFT_DTYPE_BF16, n);
      g_free (h);
    }
  else
    g_assert_cmpint (oftcu_download (x, d, n * 4), ==, 0);
  return x;
}

static void *
zeros (int64_t n, OftCuDtype dt)
{
  void *d = oftcu_alloc ((size_t) (n > 0 ? n : 1) * oftcu_dtype_size (dt));
  g_assert_nonnull (d);
  oftcu_memset0 (d, (size_t) n * oftcu_dtype_size (dt));
  return d;
}

/* the one-line report; fails the test (without stopping it) when over tol or not finite */
static double
report (const char *kernel, const char *dtype, const char *shape, const float *got, const float *want, int64_t n,
        double tol)
{
  double maxerr = 0, scale = 0;
  int64_t worst = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double e = fabs ((double) got[i] - (double) want[i]);
      if (isnan (e))
        e = INFINITY;
      if (e > maxerr)
        {
          maxerr = e;
          worst = i;
        }
      scale = fmax (scale, fabs ((double) want[i]));
    }
  const double rel = scale > 0 ? maxerr / scale : maxerr;
  const gboolean ok = rel <= tol;
  printf ("# %-22s %s %-40s err %.3g (max|err| %.3g at %lld: %.6g vs %.6g, scale %.3g) tol %.0e %s\n", kernel, dtype,
          shape, rel, maxerr, (long long) worst, n ? got[worst] : 0.0, n ? want[worst] : 0.0, scale, tol,
          ok ? "ok" : "FAIL");
  if (!ok)
    g_test_fail ();
  return rel;
}

/* ---- runtime ---- */

static void
test_memory_and_errors (void)
{
  oftcu_reset_peak ();
  size_t base = oftcu_peak_bytes ();
  void *a = oftcu_alloc (1 << 20), *b = oftcu_alloc (3 << 20);
  g_assert_nonnull (a);
  g_assert_nonnull (b);
  g_assert_cmpuint (oftcu_peak_bytes (), ==, base + (4u << 20));
  oftcu_free (b);
  oftcu_reset_peak ();
  g_assert_cmpuint (oftcu_peak_bytes (), ==, base + (1u << 20));   /* the reset restarts from what is live */
  oftcu_free (a);
  fail_on_cuda_error ("alloc/free");
  /* an impossible allocation: NULL and a message with the size, then the error can be cleared */
  void *huge = oftcu_alloc ((size_t) 1 << 52);
  g_assert_null (huge);
  const char *e = oftcu_error ();
  printf ("# oftcu_alloc 4 PiB: %s\n", e ? e : "(no error!)");
  g_assert_nonnull (e);
  g_assert_nonnull (strstr (e, "out of GPU memory"));
  oftcu_clear_error ();
  g_assert_null (oftcu_error ());
  /* a launcher misuse is reported, not a crash: conv2d without its scratch */
  OftCuConvShape s = { 1, 4, 8, 8, 4, 3, 3, 1, 1 };
  void *x = zeros (4 * 64, OFTCU_F32), *w = zeros (4 * 36, OFTCU_F32), *y = zeros (4 * 64, OFTCU_F32);
  oftcu_conv2d_forward (OFTCU_F32, y, x, w, NULL, &s, NULL);
  g_assert_nonnull (oftcu_error ());
  printf ("# conv2d without scratch: %s\n", oftcu_error ());
  oftcu_clear_error ();
  oftcu_free (x);
  oftcu_free (w);
  oftcu_free (y);
  fail_on_cuda_error ("after the error cases");
}

static void
test_convert (void)
{
  const int64_t n = 100003;
  float *x = rnd (n, -300.0f, 300.0f, 1);
  x[0] = 1.0f + 0x1p-8f;       /* ties to even: 1 */
  x[1] = 1.0f + 3 * 0x1p-8f;   /* ties to even: 1 + 2⁻⁶ */
  x[2] = 0.0f;
  x[3] = -0.0f;
  void *d32 = up (x, n, OFTCU_F32), *d16 = zeros (n, OFTCU_BF16), *back = zeros (n, OFTCU_F32);
  oftcu_convert (d16, OFTCU_BF16, d32, OFTCU_F32, n);
  oftcu_convert (back, OFTCU_F32, d16, OFTCU_BF16, n);
  uint16_t *h = g_new (uint16_t, n);
  fail_on_cuda_error ("convert");
  g_assert_cmpint (oftcu_download (h, d16, n * 2), ==, 0);
  float *y = down (back, n, OFTCU_F32);
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++)
    if (h[i] != oft_f32_to_bf16 (x[i]) || y[i] != oft_bf16_to_f32 (h[i]))
      bad++;
  printf ("# %-22s      %-40s %lld of %lld values differ from the CPU's rounding %s\n", "convert f32<->bf16",
          "n=100003", (long long) bad, (long long) n, bad ? "FAIL" : "ok");
  g_assert_cmpint (bad, ==, 0);
  g_free (x);
  g_free (h);
  g_free (y);
  oftcu_free (d32);
  oftcu_free (d16);
  oftcu_free (back);
}

/* oftcu_gemm against a double loop: every transpose combination, padded leading dimensions, a batch with
 * strides, alpha and beta */
static void
test_gemm (void)
{
  const int M = 37, N = 45, K = 29, batch = 3;
  const float alpha = 0.5f, beta = 0.25f;
  for (int tr = 0; tr < 4; tr++)
    for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
      {
        const OftCuDtype dt = dtypes[di];
        const bool ta = tr & 1, tb = tr & 2;
        const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
        const int lda = ac + 3, ldb = bc + 5, ldc = N + 2;
        const int64_t sA = (int64_t) ar * lda + 7, sB = (int64_t) br * ldb + 1, sC = (int64_t) M * ldc + 4;
        float *A = rnd (sA * batch, -1, 1, 10 + tr), *B = rnd (sB * batch, -1, 1, 20 + tr);
        float *C = rnd (sC * batch, -1, 1, 30 + tr);
        quantize (A, sA * batch, dt);
        quantize (B, sB * batch, dt);
        quantize (C, sC * batch, dt);
        float *want = g_memdup2 (C, sizeof (float) * sC * batch);
        for (int bi = 0; bi < batch; bi++)
          for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
              {
                double s = 0;
                for (int kk = 0; kk < K; kk++)
                  {
                    double a = ta ? A[bi * sA + (int64_t) kk * lda + i] : A[bi * sA + (int64_t) i * lda + kk];
                    double b = tb ? B[bi * sB + (int64_t) j * ldb + kk] : B[bi * sB + (int64_t) kk * ldb + j];
                    s += a * b;
                  }
                float *c = want + bi * sC + (int64_t) i * ldc + j;
                *c = (float) (alpha * s + beta * *c);
              }
        void *dA = up (A, sA * batch, dt), *dB = up (B, sB * batch, dt), *dC = up (C, sC * batch, dt);
        oftcu_gemm (dt, ta, tb, M, N, K, alpha, dA, lda, sA, dB, ldb, sB, beta, dC, ldc, sC, batch);
        float *got = down (dC, sC * batch, dt);
        char shape[64];
        g_snprintf (shape, sizeof shape, "ta=%d tb=%d %dx%dx%d batch %d", ta, tb, M, N, K, batch);
        report ("gemm", dt_name (dt), shape, got, want, sC * batch, dt_tol (dt));
        g_free (A);
        g_free (B);
        g_free (C);
        g_free (want);
        g_free (got);
        oftcu_free (dA);
        oftcu_free (dB);
        oftcu_free (dC);
      }
}

/* ---- linear and conv2d ---- */

static void
test_linear (void)
{
  const struct { int64_t N; int C, OC; bool bias; } cases[] = {
    { 33, 40, 24, false }, { 77, 768, 320, true }, { 2 * 4096, 320, 320, true }, { 2 * 4096, 320, 2560, true },
  };
  for (size_t ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
      {
        const OftCuDtype dt = dtypes[di];
        const int64_t N = cases[ci].N;
        const int C = cases[ci].C, OC = cases[ci].OC;
        float *x = rnd (N * C, -1, 1, 100 + ci), *w = rnd ((int64_t) OC * C, -0.1f, 0.1f, 200 + ci);
        float *bias = cases[ci].bias ? rnd (OC, -1, 1, 300 + ci) : NULL;
        quantize (x, N * C, dt);
        quantize (w, (int64_t) OC * C, dt);
        if (bias)
          quantize (bias, OC, dt);
        float *want = g_new (float, N * OC);
        oft_linear_forward (want, x, w, bias, N, C, OC);
        void *dx = up (x, N * C, dt), *dw = up (w, (int64_t) OC * C, dt), *db = bias ? up (bias, OC, dt) : NULL;
        void *dy = zeros (N * OC, dt);
        oftcu_linear_forward (dt, dy, dx, dw, db, N, C, OC);
        float *got = down (dy, N * OC, dt);
        char shape[64];
        g_snprintf (shape, sizeof shape, "N=%lld C=%d OC=%d%s", (long long) N, C, OC, bias ? " +bias" : "");
        report ("linear", dt_name (dt), shape, got, want, N * OC, dt_tol (dt));
        g_free (x);
        g_free (w);
        g_free (bias);
        g_free (want);
        g_free (got);
        oftcu_free (dx);
        oftcu_free (dw);
        oftcu_free (db);
        oftcu_free (dy);
      }
}

static void
test_conv2d (void)
{
  /* B, C, H, W, OC, k, stride, pad, bias: pointwise; SD's 3×3 at 64×64; a batch split into image chunks
   * (3 images of 11.8M col elements, 2 per chunk); stride-2 downsampling on odd sizes; one image whose col
   * is over the 32M-element cap (pixel ranges) */
  const struct { int B, C, H, W, OC, k, stride, pad; bool bias; } cases[] = {
    { 2, 8, 5, 7, 6, 3, 1, 1, true },
    { 2, 320, 32, 32, 640, 1, 1, 0, true },
    { 1, 4, 16, 16, 4, 1, 1, 0, false },
    { 2, 320, 64, 64, 320, 3, 1, 1, true },
    { 3, 320, 64, 64, 32, 3, 1, 1, true },
    { 2, 64, 33, 33, 48, 3, 2, 1, true },
    { 1, 16, 9, 9, 8, 3, 2, 0, false },
    { 1, 128, 200, 200, 8, 3, 1, 1, true },
  };
  for (size_t ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
      {
        const OftCuDtype dt = dtypes[di];
        OftConv2dShape cs = { cases[ci].B, cases[ci].C, cases[ci].H, cases[ci].W, cases[ci].OC, cases[ci].k,
                              cases[ci].k, cases[ci].stride, cases[ci].pad };
        OftCuConvShape gs = { cs.B, cs.C, cs.H, cs.W, cs.OC, cs.kh, cs.kw, cs.stride, cs.pad };
        const int64_t nin = (int64_t) cs.B * cs.C * cs.H * cs.W, nw = (int64_t) cs.OC * cs.C * cs.kh * cs.kw;
        const int64_t nout = (int64_t) cs.B * cs.OC * oft_conv2d_out_h (&cs) * oft_conv2d_out_w (&cs);
        float *x = rnd (nin, -1, 1, 400 + ci), *w = rnd (nw, -0.05f, 0.05f, 500 + ci);
        float *bias = cases[ci].bias ? rnd (cs.OC, -1, 1, 600 + ci) : NULL;
        quantize (x, nin, dt);
        quantize (w, nw, dt);
        if (bias)
          quantize (bias, cs.OC, dt);
        float *want = g_new (float, nout), *scratch = g_new (float, oft_conv2d_scratch_floats (&cs) + 1);
        oft_conv2d_forward (want, x, w, bias, &cs, scratch);
        void *dx = up (x, nin, dt), *dw = up (w, nw, dt), *db = bias ? up (bias, cs.OC, dt) : NULL;
        void *dy = zeros (nout, dt);
        const size_t sb = oftcu_conv2d_scratch_bytes (dt, &gs);
        void *dscratch = sb ? oftcu_alloc (sb) : NULL;
        g_assert_true (!sb || dscratch);
        oftcu_conv2d_forward (dt, dy, dx, dw, db, &gs, dscratch);
        float *got = down (dy, nout, dt);
        char shape[96];
        g_snprintf (shape, sizeof shape, "B%d C%d %dx%d OC%d k%d s%d p%d%s (%.0f MiB scratch)", cs.B, cs.C, cs.H,
                    cs.W, cs.OC, cs.kh, cs.stride, cs.pad, bias ? " +b" : "", sb / 1048576.0);
        report ("conv2d", dt_name (dt), shape, got, want, nout, dt_tol (dt));
        g_free (x);
        g_free (w);
        g_free (bias);
        g_free (want);
        g_free (scratch);
        g_free (got);
        oftcu_free (dx);
        oftcu_free (dw);
        oftcu_free (db);
        oftcu_free (dy);
        oftcu_free (dscratch);
      }
}

/* ---- norms ---- */

static void
test_groupnorm (void)
{
  const struct { int B, C; int64_t HW; int G; bool affine; } cases[] = {
    { 2, 32, 7 * 9, 4, true }, { 2, 320, 64 * 64, 32, true }, { 1, 128, 128 * 128, 32, true }, { 3, 12, 5, 3, false },
  };
  for (size_t ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
      {
        const OftCuDtype dt = dtypes[di];
        const int B = cases[ci].B, C = cases[ci].C, G = cases[ci].G;
        const int64_t HW = cases[ci].HW, n = (int64_t) B * C * HW;
        /* an offset mean (3) so a one-pass variance would lose digits */
        float *x = rnd (n, 2.0f, 4.0f, 700 + ci);
        float *w = cases[ci].affine ? rnd (C, 0.5f, 1.5f, 800 + ci) : NULL;
        float *b = cases[ci].affine ? rnd (C, -0.5f, 0.5f, 900 + ci) : NULL;
        quantize (x, n, dt);
        float *want = g_new (float, n), *wm = g_new (float, B * G), *wr = g_new (float, B * G);
        oft_groupnorm_forward (want, wm, wr, x, w, b, B, C, HW, G, 1e-5f);
        void *dx = up (x, n, dt), *dy = zeros (n, dt);
        float *dwt = w ? up (w, C, OFTCU_F32) : NULL, *dbs = b ? up (b, C, OFTCU_F32) : NULL;
        float *dm = zeros (B * G, OFTCU_F32), *dr = zeros (B * G, OFTCU_F32);
        oftcu_groupnorm_forward (dt, dy, dm, dr, dx, dwt, dbs, B, C, HW, G, 1e-5f);
        float *got = down (dy, n, dt), *gm = down (dm, B * G, OFTCU_F32), *gr = down (dr, B * G, OFTCU_F32);
        char shape[64];
        g_snprintf (shape, sizeof shape, "B%d C%d HW%lld G%d%s", B, C, (long long) HW, G, w ? "" : " no affine");
        report ("groupnorm", dt_name (dt), shape, got, want, n, dt_tol (dt));
        report ("groupnorm mean", dt_name (dt), shape, gm, wm, B * G, TOL_F32);
        report ("groupnorm rstd", dt_name (dt), shape, gr, wr, B * G, TOL_F32);
        /* the fused silu(groupnorm(x)) against the two CPU kernels (mean and rstd as above) */
        oft_silu_forward (want, want, n);
        oftcu_memset0 (dm, (size_t) B * G * sizeof (float));
        oftcu_groupnorm_silu_forward (dt, dy, dm, dr, dx, dwt, dbs, B, C, HW, G, 1e-5f);
        float *got2 = down (dy, n, dt), *gm2 = down (dm, B * G, OFTCU_F32);
        report ("groupnorm+silu", dt_name (dt), shape, got2, want, n, dt_tol (dt));
        report ("groupnorm+silu mean", dt_name (dt), shape, gm2, wm, B * G, TOL_F32);
        g_free (got2);
        g_free (gm2);
        g_free (x);
        g_free (w);
        g_free (b);
        g_free (want);
        g_free (wm);
        g_free (wr);
        g_free (got);
        g_free (gm);
        g_free (gr);
        oftcu_free (dx);
        oftcu_free (dy);
        oftcu_free (dwt);
        oftcu_free (dbs);
        oftcu_free (dm);
        oftcu_free (dr);
      }
}

static void
test_layernorm (void)
{
  const struct { int64_t N; int C; bool affine; } cases[] = {
    { 5, 33, true }, { 77, 768, true }, { 2 * 4096, 320, true }, { 3, 1280, false },
  };
  for (size_t ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
      {
        const OftCuDtype dt = dtypes[di];
        const int64_t N = cases[ci].N, n = N * cases[ci].C;
        const int C = cases[ci].C;
        float *x = rnd (n, -2.0f, 6.0f, 1000 + ci);
        float *w = cases[ci].affine ? rnd (C, 0.5f, 1.5f, 1100 + ci) : NULL;
        float *b = cases[ci].affine ? rnd (C, -0.5f, 0.5f, 1200 + ci) : NULL;
        quantize (x, n, dt);
        float *want = g_new (float, n), *wm = g_new (float, N), *wr = g_new (float, N);
        oft_layernorm_forward (want, wm, wr, x, w, b, N, C, 1e-5f);
        void *dx = up (x, n, dt), *dy = zeros (n, dt);
        float *dwt = w ? up (w, C, OFTCU_F32) : NULL, *dbs = b ? up (b, C, OFTCU_F32) : NULL;
        float *dm = zeros (N, OFTCU_F32), *dr = zeros (N, OFTCU_F32);
        oftcu_layernorm_forward (dt, dy, dm, dr, dx, dwt, dbs, N, C, 1e-5f);
        float *got = down (dy, n, dt), *gm = down (dm, N, OFTCU_F32), *gr = down (dr, N, OFTCU_F32);
        char shape[64];
        g_snprintf (shape, sizeof shape, "N%lld C%d%s", (long long) N, C, w ? "" : " no affine");
        report ("layernorm", dt_name (dt), shape, got, want, n, dt_tol (dt));
        report ("layernorm mean", dt_name (dt), shape, gm, wm, N, TOL_F32);
        report ("layernorm rstd", dt_name (dt), shape, gr, wr, N, TOL_F32);
        g_free (x);
        g_free (w);
        g_free (b);
        g_free (want);
        g_free (wm);
        g_free (wr);
        g_free (got);
        g_free (gm);
        g_free (gr);
        oftcu_free (dx);
        oftcu_free (dy);
        oftcu_free (dwt);
        oftcu_free (dbs);
        oftcu_free (dm);
        oftcu_free (dr);
      }
}

/* ---- pointwise ---- */

typedef void (*CpuAct) (float *, const float *, int64_t);
typedef void (*GpuAct) (OftCuDtype, void *, const void *, int64_t);

static void
check_activation (const char *name, CpuAct cpu, GpuAct gpu)
{
  const int64_t sizes[] = { 1, 1000003, 2LL * 320 * 64 * 64 };
  for (size_t si = 0; si < G_N_ELEMENTS (sizes); si++)
    for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
      {
        const OftCuDtype dt = dtypes[di];
        const int64_t n = sizes[si];
        float *x = rnd (n, -8.0f, 8.0f, 1300 + si);
        quantize (x, n, dt);
        float *want = g_new (float, n);
        cpu (want, x, n);
        void *dx = up (x, n, dt), *dy = zeros (n, dt);
        gpu (dt, dy, dx, n);
        float *got = down (dy, n, dt);
        char shape[32];
        g_snprintf (shape, sizeof shape, "n=%lld", (long long) n);
        report (name, dt_name (dt), shape, got, want, n, dt_tol (dt));
        g_free (x);
        g_free (want);
        g_free (got);
        oftcu_free (dx);
        oftcu_free (dy);
      }
}

static void
test_activations (void)
{
  check_activation ("silu", oft_silu_forward, oftcu_silu_forward);
  check_activation ("gelu", oft_gelu_forward, oftcu_gelu_forward);
  check_activation ("quick_gelu", oft_quick_gelu_forward, oftcu_quick_gelu_forward);
}

static void
test_geglu (void)
{
  const struct { int64_t N; int C; } cases[] = { { 7, 5 }, { 2 * 4096, 1280 } };
  for (size_t ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
      {
        const OftCuDtype dt = dtypes[di];
        const int64_t N = cases[ci].N;
        const int C = cases[ci].C;
        float *x = rnd (N * 2 * C, -4.0f, 4.0f, 1400 + ci);
        quantize (x, N * 2 * C, dt);
        float *want = g_new (float, N * C);
        oft_geglu_forward (want, x, N, C);
        void *dx = up (x, N * 2 * C, dt), *dy = zeros (N * C, dt);
        oftcu_geglu_forward (dt, dy, dx, N, C);
        float *got = down (dy, N * C, dt);
        char shape[32];
        g_snprintf (shape, sizeof shape, "N%lld C%d", (long long) N, C);
        report ("geglu", dt_name (dt), shape, got, want, N * C, dt_tol (dt));
        g_free (x);
        g_free (want);
        g_free (got);
        oftcu_free (dx);
        oftcu_free (dy);
      }
}

static void
test_softmax (void)
{
  const struct { int64_t N; int C; } cases[] = { { 3, 1 }, { 2 * 8 * 77, 77 }, { 64, 4096 } };
  for (size_t ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
      {
        const OftCuDtype dt = dtypes[di];
        const int64_t N = cases[ci].N;
        const int C = cases[ci].C;
        float *x = rnd (N * C, -10.0f, 10.0f, 1500 + ci);
        quantize (x, N * C, dt);
        float *want = g_new (float, N * C);
        oft_softmax_forward (want, x, N, C);
        void *dx = up (x, N * C, dt), *dy = zeros (N * C, dt);
        oftcu_softmax_forward (dt, dy, dx, N, C);
        float *got = down (dy, N * C, dt);
        char shape[32];
        g_snprintf (shape, sizeof shape, "N%lld C%d", (long long) N, C);
        report ("softmax", dt_name (dt), shape, got, want, N * C, dt_tol (dt));
        g_free (x);
        g_free (want);
        g_free (got);
        oftcu_free (dx);
        oftcu_free (dy);
      }
}

/* ---- attention ---- */

/* log-sum-exp of the scaled scores of query row i of (b, h), in double, as the kernels define lse */
static double
ref_lse (const float *q, const float *k, int b, int h, int i, int Tq, int Tk, int H, int D, bool causal)
{
  const int64_t HD = (int64_t) H * D;
  const float *qr = q + ((int64_t) b * Tq + i) * HD + (int64_t) h * D;
  const double scale = 1.0 / sqrt ((double) D);
  const int nk = causal ? i + 1 : Tk;
  double mx = -INFINITY, *s = g_new (double, nk > 0 ? nk : 1);
  for (int j = 0; j < nk; j++)
    {
      const float *kr = k + ((int64_t) b * Tk + j) * HD + (int64_t) h * D;
      double d = 0;
      for (int e = 0; e < D; e++)
        d += (double) qr[e] * kr[e];
      s[j] = d * scale;
      mx = fmax (mx, s[j]);
    }
  double sum = 0;
  for (int j = 0; j < nk; j++)
    sum += exp (s[j] - mx);
  g_free (s);
  return mx + log (sum);
}

static const char *
attention_kernel_used (OftCuDtype dt, int D, int force_simt)
{
  /* mirrors oftcu_attention_forward's choice (all test buffers are 16-byte aligned) */
  return dt == OFTCU_BF16 && !force_simt && D % 8 == 0 && D >= 8 && D <= 160 ? "mma" : "simt";
}

static void
check_attention (int B, int H, int Tq, int Tk, int D, bool causal, OftCuDtype dt, int force_simt, guint32 seed)
{
  const int64_t HD = (int64_t) H * D, nq = (int64_t) B * Tq * HD, nk = (int64_t) B * Tk * HD;
  float *q = rnd (nq, -1.5f, 1.5f, seed), *k = rnd (nk, -1.5f, 1.5f, seed + 1), *v = rnd (nk, -1, 1, seed + 2);
  quantize (q, nq, dt);
  quantize (k, nk, dt);
  quantize (v, nk, dt);
  void *dq = up (q, nq, dt), *dk = up (k, nk, dt), *dv = up (v, nk, dt), *dout = zeros (nq, dt);
  float *dlse = zeros ((int64_t) B * H * Tq, OFTCU_F32);
  oftcu_attention_force_simt (force_simt);
  oftcu_attention_forward (dt, dout, dlse, dq, dk, dv, B, Tq, Tk, H, D, causal);
  oftcu_attention_force_simt (-1);
  float *got = down (dout, nq, dt), *glse = down (dlse, (int64_t) B * H * Tq, OFTCU_F32);

  /* The CPU reference on a sample of query rows (rows are independent without the causal mask): every row up
   * to 512 rows, else 256 rows spread over the sequence, first and last included. */
  const int S = causal || Tq <= 512 ? Tq : 256;
  int *rows = g_new (int, S);
  for (int s = 0; s < S; s++)
    rows[s] = S == Tq ? s : (int) ((int64_t) s * (Tq - 1) / (S - 1));
  float *qs = g_new (float, (int64_t) B * S * HD), *gs = g_new (float, (int64_t) B * S * HD);
  for (int b = 0; b < B; b++)
    for (int s = 0; s < S; s++)
      {
        memcpy (qs + ((int64_t) b * S + s) * HD, q + ((int64_t) b * Tq + rows[s]) * HD, sizeof (float) * HD);
        memcpy (gs + ((int64_t) b * S + s) * HD, got + ((int64_t) b * Tq + rows[s]) * HD, sizeof (float) * HD);
      }
  float *want = g_new (float, (int64_t) B * S * HD), *att = g_new (float, (int64_t) B * H * S * Tk);
  oft_attention_forward (want, att, qs, k, v, B, S, Tk, H, D, causal);
  /* lse on at most 64 of the sampled rows per (b, h) */
  const int SL = S < 64 ? S : 64;
  float *wl = g_new (float, (int64_t) B * H * SL), *gl = g_new (float, (int64_t) B * H * SL);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int s = 0; s < SL; s++)
        {
          const int i = rows[(int64_t) s * (S - 1) / (SL > 1 ? SL - 1 : 1)];
          const int64_t o = ((int64_t) b * H + h) * SL + s;
          wl[o] = (float) ref_lse (q, k, b, h, i, Tq, Tk, H, D, causal);
          gl[o] = glse[((int64_t) b * H + h) * Tq + i];
        }
  char shape[96], name[32];
  g_snprintf (shape, sizeof shape, "B%d H%d Tq%d Tk%d D%d%s%s", B, H, Tq, Tk, D, causal ? " causal" : "",
              S < Tq ? " (256 rows)" : "");
  g_snprintf (name, sizeof name, "attention %s", attention_kernel_used (dt, D, force_simt));
  report (name, dt_name (dt), shape, gs, want, (int64_t) B * S * HD, dt_tol (dt));
  g_snprintf (name, sizeof name, "attention lse %s", attention_kernel_used (dt, D, force_simt));
  report (name, dt_name (dt), shape, gl, wl, (int64_t) B * H * SL, dt == OFTCU_BF16 ? 1e-4 : TOL_F32);
  g_free (q);
  g_free (k);
  g_free (v);
  g_free (got);
  g_free (glse);
  g_free (rows);
  g_free (qs);
  g_free (gs);
  g_free (want);
  g_free (att);
  g_free (wl);
  g_free (gl);
  oftcu_free (dq);
  oftcu_free (dk);
  oftcu_free (dv);
  oftcu_free (dout);
  oftcu_free (dlse);
}

static void
test_attention (void)
{
  /* B, H, Tq, Tk, D, causal: SD1.5 self-attention at 64×64 and 32×32, cross-attention to 77 tokens, the
   * deepest level; CLIP's causal text attention (L/14: D 64; the golden tiny CLIP: D 8); the golden tiny UNet
   * (D 16, 32) and VAE (D 32); odd sizes and head dims the tensor-core kernel does not take (12, 100) or pads
   * (24, 40); the SD VAE's single 512-wide head */
  const struct { int B, H, Tq, Tk, D; bool causal; } cases[] = {
    { 2, 8, 4096, 4096, 40, false }, { 2, 8, 4096, 77, 40, false }, { 2, 8, 1024, 1024, 80, false },
    { 2, 8, 1024, 77, 80, false }, { 2, 8, 256, 256, 160, false }, { 2, 8, 256, 77, 160, false },
    { 1, 12, 77, 77, 64, true }, { 2, 4, 77, 77, 8, true }, { 2, 2, 64, 64, 16, false }, { 2, 2, 16, 77, 32, false },
    { 1, 1, 256, 256, 32, false }, { 2, 3, 100, 37, 24, false }, { 1, 2, 65, 130, 12, false },
    { 1, 2, 33, 33, 100, true }, { 1, 1, 1024, 1024, 512, false },
  };
  for (size_t ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
      for (int simt = 0; simt < (dtypes[di] == OFTCU_BF16 ? 2 : 1); simt++)
        {
          /* bf16 runs each shape through both kernels where the tensor-core one applies */
          if (simt && !strcmp (attention_kernel_used (OFTCU_BF16, cases[ci].D, 0), "simt"))
            continue;
          check_attention (cases[ci].B, cases[ci].H, cases[ci].Tq, cases[ci].Tk, cases[ci].D, cases[ci].causal,
                           dtypes[di], simt, 1600 + 10 * ci);
        }
}

/* ---- data movement ---- */

static void
test_upsample_concat (void)
{
  for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
    {
      const OftCuDtype dt = dtypes[di];
      const struct { int64_t BC; int H, W; } up_cases[] = { { 3, 5, 7 }, { 2 * 320, 32, 32 } };
      for (size_t ci = 0; ci < G_N_ELEMENTS (up_cases); ci++)
        {
          const int64_t BC = up_cases[ci].BC, n = BC * up_cases[ci].H * up_cases[ci].W;
          float *x = rnd (n, -1, 1, 1700 + ci);
          quantize (x, n, dt);
          float *want = g_new (float, 4 * n);
          oft_upsample2x_forward (want, x, BC, up_cases[ci].H, up_cases[ci].W);
          void *dx = up (x, n, dt), *dy = zeros (4 * n, dt);
          oftcu_upsample2x_forward (dt, dy, dx, BC, up_cases[ci].H, up_cases[ci].W);
          float *got = down (dy, 4 * n, dt);
          char shape[48];
          g_snprintf (shape, sizeof shape, "BC%lld %dx%d", (long long) BC, up_cases[ci].H, up_cases[ci].W);
          report ("upsample2x", dt_name (dt), shape, got, want, 4 * n, 0.0);   /* a copy: exact */
          g_free (x);
          g_free (want);
          g_free (got);
          oftcu_free (dx);
          oftcu_free (dy);
        }
      const struct { int B, Ca, Cb; int64_t HW; } cat_cases[] = { { 3, 1, 5, 7 }, { 2, 320, 640, 1024 } };
      for (size_t ci = 0; ci < G_N_ELEMENTS (cat_cases); ci++)
        {
          const int B = cat_cases[ci].B, Ca = cat_cases[ci].Ca, Cb = cat_cases[ci].Cb;
          const int64_t HW = cat_cases[ci].HW, na = (int64_t) B * Ca * HW, nb = (int64_t) B * Cb * HW;
          float *a = rnd (na, -1, 1, 1800 + ci), *b = rnd (nb, -1, 1, 1900 + ci);
          quantize (a, na, dt);
          quantize (b, nb, dt);
          float *want = g_new (float, na + nb);
          oft_concat_forward (want, a, b, B, Ca, Cb, HW);
          void *da = up (a, na, dt), *db = up (b, nb, dt), *dy = zeros (na + nb, dt);
          oftcu_concat_forward (dt, dy, da, db, B, Ca, Cb, HW);
          float *got = down (dy, na + nb, dt);
          char shape[48];
          g_snprintf (shape, sizeof shape, "B%d Ca%d Cb%d HW%lld", B, Ca, Cb, (long long) HW);
          report ("concat", dt_name (dt), shape, got, want, na + nb, 0.0);
          g_free (a);
          g_free (b);
          g_free (want);
          g_free (got);
          oftcu_free (da);
          oftcu_free (db);
          oftcu_free (dy);
        }
    }
}

static void
test_add_scale (void)
{
  const int64_t n = 1000003;
  for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
    {
      const OftCuDtype dt = dtypes[di];
      float *a = rnd (n, -3, 3, 2000), *b = rnd (n, -3, 3, 2001);
      quantize (a, n, dt);
      quantize (b, n, dt);
      float *want = g_new (float, n);
      oft_add_forward (want, a, b, n);
      void *da = up (a, n, dt), *db = up (b, n, dt);
      oftcu_add_forward (dt, da, da, db, n);   /* in place, as the residual adds run */
      float *got = down (da, n, dt);
      report ("add (in place)", dt_name (dt), "n=1000003", got, want, n, dt_tol (dt));
      g_free (got);
      oft_scale_forward (want, b, 0.18215f, n);
      oftcu_scale_forward (dt, da, db, 0.18215f, n);
      got = down (da, n, dt);
      report ("scale", dt_name (dt), "n=1000003 s=0.18215", got, want, n, dt_tol (dt));
      g_free (a);
      g_free (b);
      g_free (want);
      g_free (got);
      oftcu_free (da);
      oftcu_free (db);
    }
  /* add_channel: x[B, C, HW] += v[B, C] (no CPU kernel: the definition is this loop) */
  const struct { int B, C; int64_t HW; } cases[] = { { 3, 5, 7 }, { 2, 320, 4096 } };
  for (size_t ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
      {
        const OftCuDtype dt = dtypes[di];
        const int B = cases[ci].B, C = cases[ci].C;
        const int64_t HW = cases[ci].HW, nx = (int64_t) B * C * HW;
        float *x = rnd (nx, -2, 2, 2100 + ci), *v = rnd ((int64_t) B * C, -2, 2, 2200 + ci);
        quantize (x, nx, dt);
        quantize (v, (int64_t) B * C, dt);
        float *want = g_new (float, nx);
        for (int64_t i = 0; i < nx; i++)
          want[i] = x[i] + v[i / HW];
        void *dx = up (x, nx, dt), *dv = up (v, (int64_t) B * C, dt);
        oftcu_add_channel_forward (dt, dx, dv, B, C, HW);
        float *got = down (dx, nx, dt);
        char shape[48];
        g_snprintf (shape, sizeof shape, "B%d C%d HW%lld", B, C, (long long) HW);
        report ("add_channel", dt_name (dt), shape, got, want, nx, dt_tol (dt));
        g_free (x);
        g_free (v);
        g_free (want);
        g_free (got);
        oftcu_free (dx);
        oftcu_free (dv);
      }
}

static void
test_transpose (void)
{
  /* [B, C, HW] → [B, HW, C], then back with the roles swapped; the definition is the index map */
  const struct { int B, C; int64_t HW; } cases[] = { { 3, 33, 65 }, { 2, 320, 4096 }, { 1, 4, 70000 } };
  for (size_t ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
      {
        const OftCuDtype dt = dtypes[di];
        const int B = cases[ci].B, C = cases[ci].C;
        const int64_t HW = cases[ci].HW, n = (int64_t) B * C * HW;
        float *x = rnd (n, -1, 1, 2300 + ci);
        quantize (x, n, dt);
        float *want = g_new (float, n);
        for (int b = 0; b < B; b++)
          for (int c = 0; c < C; c++)
            for (int64_t p = 0; p < HW; p++)
              want[((int64_t) b * HW + p) * C + c] = x[((int64_t) b * C + c) * HW + p];
        void *dx = up (x, n, dt), *dy = zeros (n, dt), *dz = zeros (n, dt);
        oftcu_transpose_forward (dt, dy, dx, B, C, HW);
        oftcu_transpose_forward (dt, dz, dy, B, (int) HW, C);
        float *got = down (dy, n, dt), *round = down (dz, n, dt);
        char shape[48];
        g_snprintf (shape, sizeof shape, "B%d C%d HW%lld", B, C, (long long) HW);
        report ("transpose", dt_name (dt), shape, got, want, n, 0.0);
        report ("transpose back", dt_name (dt), shape, round, x, n, 0.0);
        g_free (x);
        g_free (want);
        g_free (got);
        g_free (round);
        oftcu_free (dx);
        oftcu_free (dy);
        oftcu_free (dz);
      }
}

static void
test_timestep_embedding (void)
{
  /* t up to 999: one ulp of t·freq (≈ 6e-5 at 1000) moves sin/cos by as much, and the CPU's expf may sit one
   * ulp off the correctly rounded value the kernel computes; so the bound here is 1e-5 plus 2 ulp of the
   * largest argument (2 · 2⁻²³ · 1024 ≈ 2.4e-4). Small timesteps must meet 1e-5 itself. */
  const float t_big[] = { 999.0f, 1.0f, 500.5f }, t_small[] = { 0.5f, 3.0f };
  const struct { const float *t; int N, dim; bool flip; float shift; double tol; } cases[] = {
    { t_big, 3, 320, true, 0.0f, 1e-5 + 2 * 0x1p-23 * 1024 },
    { t_big, 2, 33, false, 1.0f, 1e-5 + 2 * 0x1p-23 * 1024 },
    { t_small, 2, 64, true, 1.0f, 1e-5 },
  };
  for (size_t ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    for (size_t di = 0; di < G_N_ELEMENTS (dtypes); di++)
      {
        const OftCuDtype dt = dtypes[di];
        const int N = cases[ci].N, dim = cases[ci].dim;
        float *want = g_new (float, N * dim);
        oft_timestep_embedding (want, cases[ci].t, N, dim, cases[ci].flip, cases[ci].shift, 10000.0f);
        float *dt_ = up (cases[ci].t, N, OFTCU_F32);
        void *dy = zeros ((int64_t) N * dim, dt);
        oftcu_timestep_embedding (dt, dy, dt_, N, dim, cases[ci].flip, cases[ci].shift);
        float *got = down (dy, (int64_t) N * dim, dt);
        char shape[64];
        g_snprintf (shape, sizeof shape, "N%d dim%d flip%d shift%g t<=%g", N, dim, cases[ci].flip, cases[ci].shift,
                    cases[ci].t[0]);
        report ("timestep_embedding", dt_name (dt), shape, got, want, (int64_t) N * dim,
                dt == OFTCU_BF16 ? TOL_BF16 : cases[ci].tol);
        g_free (want);
        g_free (got);
        oftcu_free (dt_);
        oftcu_free (dy);
      }
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  char name[256];
  if (oftcu_init (0, name, sizeof name) != 0)
    {
      printf ("# SKIP: no CUDA device: %s\n", oftcu_error ());
      return 77;
    }
  printf ("# device: %s\n", name);
  oftcu_set_tf32 (false);   /* fp32 GEMMs in full fp32: the 1e-5 bound */
  g_test_add_func ("/cuda/memory-and-errors", test_memory_and_errors);
  g_test_add_func ("/cuda/convert", test_convert);
  g_test_add_func ("/cuda/gemm", test_gemm);
  g_test_add_func ("/cuda/linear", test_linear);
  g_test_add_func ("/cuda/conv2d", test_conv2d);
  g_test_add_func ("/cuda/groupnorm", test_groupnorm);
  g_test_add_func ("/cuda/layernorm", test_layernorm);
  g_test_add_func ("/cuda/activations", test_activations);
  g_test_add_func ("/cuda/geglu", test_geglu);
  g_test_add_func ("/cuda/softmax", test_softmax);
  g_test_add_func ("/cuda/attention", test_attention);
  g_test_add_func ("/cuda/upsample-concat", test_upsample_concat);
  g_test_add_func ("/cuda/add-scale", test_add_scale);
  g_test_add_func ("/cuda/transpose", test_transpose);
  g_test_add_func ("/cuda/timestep-embedding", test_timestep_embedding);
  return g_test_run ();
}
