/* The OFT family (oftcore/adapters): every golden case of oft_layers/ and the invariants.
 * The frozen layers (linear, conv) are computed here with naive loops so this program depends on
 * nothing but the adapters. */
#include "test-common.h"
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* Golden tolerance: the files are PyTorch fp32 on CPU. Their own fp32 rounding shows in case.json's
 * maxdiff_y_vs_y_merged (7.7e-7 … 1.2e-6 on outputs of size ~1–5, i.e. ~3e-7 relative); our kernels
 * sum in a different order, so allow 1e-4 relative to each tensor's scale (~300× that rounding), far
 * below any real mistake (a transposed R or a wrong block order changes outputs by O(‖Q‖) ~ 10%). */
#define GOLDEN_TOL 1e-4

/* ---------------------------------------------------------------- golden case plumbing */

typedef struct {
  char *name;
  OftSafetensors *t;        /* tensors.safetensors */
  OftSafetensors *ad;       /* adapter/adapter_model.safetensors */
  JsonParser *case_json, *cfg_json;
  JsonObject *cs, *cfg;
  double maxdiff_y;
} Case;

static JsonParser *
load_json (const char *rel, JsonObject **obj)
{
  char *path = test_golden_path (rel);
  JsonParser *p = json_parser_new ();
  GError *error = NULL;
  json_parser_load_from_file (p, path, &error);
  g_assert_no_error (error);
  *obj = json_node_get_object (json_parser_get_root (p));
  g_free (path);
  return p;
}

static Case
case_open (const char *name)
{
  Case c = { .name = g_strdup (name) };
  char *rel = g_strdup_printf ("oft_layers/%s/tensors.safetensors", name);
  c.t = test_open_golden (rel);
  g_free (rel);
  rel = g_strdup_printf ("oft_layers/%s/adapter/adapter_model.safetensors", name);
  c.ad = test_open_golden (rel);
  g_free (rel);
  rel = g_strdup_printf ("oft_layers/%s/case.json", name);
  c.case_json = load_json (rel, &c.cs);
  g_free (rel);
  rel = g_strdup_printf ("oft_layers/%s/adapter/adapter_config.json", name);
  c.cfg_json = load_json (rel, &c.cfg);
  g_free (rel);
  c.maxdiff_y = json_object_get_double_member (c.cs, "maxdiff_y_vs_y_merged");
  return c;
}

static void
case_close (Case *c)
{
  oft_safetensors_close (c->t);
  oft_safetensors_close (c->ad);
  g_object_unref (c->case_json);
  g_object_unref (c->cfg_json);
  g_free (c->name);
}

static OftAdapterConfig
case_config (const Case *c)
{
  JsonObject *o = c->cfg;
  OftAdapterConfig cfg = { 0 };
  if (g_strcmp0 (json_object_get_string_member (o, "peft_type"), "BOFT") == 0)
    {
      cfg.kind = OFT_ADAPTER_BOFT;
      cfg.boft_block_size = (int) json_object_get_int_member (o, "boft_block_size");
      cfg.boft_n_factors = (int) json_object_get_int_member (o, "boft_n_butterfly_factor");
      return cfg;
    }
  cfg.kind = OFT_ADAPTER_OFT;
  cfg.oft_block_size = (int) json_object_get_int_member (o, "oft_block_size");
  cfg.block_share = json_object_get_boolean_member (o, "block_share");
  cfg.neumann = json_object_get_boolean_member (o, "use_cayley_neumann");
  cfg.coft = json_object_get_boolean_member (o, "coft");
  cfg.n_terms = (int) json_object_get_int_member (o, "num_cayley_neumann_terms");
  cfg.eps = json_object_get_double_member (o, "eps");
  return cfg;
}

static const OftSafetensorsEntry *
entry (const OftSafetensors *st, const char *name)
{
  const OftSafetensorsEntry *e = oft_safetensors_find (st, name);
  g_assert_nonnull (e);
  return e;
}

static double
check (const Case *c, const char *tensor, const float *got, const float *want, int64_t n)
{
  char *what = g_strdup_printf ("%s %s", c->name, tensor);
  double err = test_assert_close (what, got, want, n, GOLDEN_TOL);
  if (c->maxdiff_y < 1e-3) /* oft_conv3x3's y differs from y_merged by design: no rounding scale there */
    g_test_message ("%s: max abs err %.3g = %.2f x the case's y-vs-y_merged rounding %.2g", what, err,
                    err / c->maxdiff_y, c->maxdiff_y);
  g_free (what);
  return err;
}

/* ---------------------------------------------------------------- naive frozen layers */

/* y[N, out] = x[N, in]·Wᵀ + bias */
static void
linear_ref (float *y, const float *x, const float *W, const float *bias, int64_t N, int in, int out)
{
  for (int64_t n = 0; n < N; n++)
    for (int o = 0; o < out; o++)
      {
        double acc = bias ? bias[o] : 0;
        for (int i = 0; i < in; i++)
          acc += (double) x[n * in + i] * W[(size_t) o * in + i];
        y[n * out + o] = (float) acc;
      }
}

typedef struct { int B, C, H, W, O, k, pad; } ConvShape;  /* stride 1, square kernel, same-size out for pad=(k−1)/2 */

static inline int conv_ho (const ConvShape *s) { return s->H + 2 * s->pad - s->k + 1; }
static inline int conv_wo (const ConvShape *s) { return s->W + 2 * s->pad - s->k + 1; }

/* y[B, O, Ho, Wo] = conv2d(x, Wf[O, C·k·k], bias) */
static void
conv_ref (double *y, const float *x, const float *Wf, const float *bias, const ConvShape *s)
{
  int Ho = conv_ho (s), Wo = conv_wo (s), kk = s->k * s->k, d = s->C * kk;
  for (int n = 0; n < s->B; n++)
    for (int o = 0; o < s->O; o++)
      for (int oy = 0; oy < Ho; oy++)
        for (int ox = 0; ox < Wo; ox++)
          {
            double acc = bias ? bias[o] : 0;
            for (int c = 0; c < s->C; c++)
              for (int ky = 0; ky < s->k; ky++)
                for (int kx = 0; kx < s->k; kx++)
                  {
                    int iy = oy + ky - s->pad, ix = ox + kx - s->pad;
                    if (iy < 0 || ix < 0 || iy >= s->H || ix >= s->W)
                      continue;
                    acc += (double) Wf[(size_t) o * d + c * kk + ky * s->k + kx]
                           * x[(((size_t) n * s->C + c) * s->H + iy) * s->W + ix];
                  }
            y[(((size_t) n * s->O + o) * Ho + oy) * Wo + ox] = acc;
          }
}

/* dW[O, C·k·k] = Σ g ⊗ patches (double); dx += conv transpose of g with Wf. Either may be NULL. */
static void
conv_ref_backward (double *dW, float *dx, const float *g, const float *x, const float *Wf, const ConvShape *s)
{
  int Ho = conv_ho (s), Wo = conv_wo (s), kk = s->k * s->k, d = s->C * kk;
  if (dW)
    memset (dW, 0, sizeof (double) * s->O * d);
  for (int n = 0; n < s->B; n++)
    for (int o = 0; o < s->O; o++)
      for (int oy = 0; oy < Ho; oy++)
        for (int ox = 0; ox < Wo; ox++)
          {
            double gv = g[(((size_t) n * s->O + o) * Ho + oy) * Wo + ox];
            for (int c = 0; c < s->C; c++)
              for (int ky = 0; ky < s->k; ky++)
                for (int kx = 0; kx < s->k; kx++)
                  {
                    int iy = oy + ky - s->pad, ix = ox + kx - s->pad;
                    if (iy < 0 || ix < 0 || iy >= s->H || ix >= s->W)
                      continue;
                    size_t xi = (((size_t) n * s->C + c) * s->H + iy) * s->W + ix;
                    size_t wi = (size_t) o * d + c * kk + ky * s->k + kx;
                    if (dW)
                      dW[wi] += gv * x[xi];
                    if (dx)
                      dx[xi] += (float) (gv * Wf[wi]);
                  }
          }
}

static float *
blockdiag (const float *R, int rows, int n_blocks, int b)
{
  int d = n_blocks * b;
  float *M = g_new0 (float, (size_t) d * d);
  for (int k = 0; k < n_blocks; k++)
    {
      const float *Rk = R + (size_t) (rows == 1 ? 0 : k) * b * b;
      for (int i = 0; i < b; i++)
        for (int j = 0; j < b; j++)
          M[(size_t) (k * b + i) * d + k * b + j] = Rk[i * b + j];
    }
  return M;
}

static OftTensor
view (const OftSafetensors *st, const char *name)
{
  return oft_safetensors_view (entry (st, name));
}

/* ---------------------------------------------------------------- OFT golden cases */

static OftSpec
spec_from (const OftAdapterConfig *cfg, const OftSafetensorsEntry *p, int d)
{
  int b = oft_block_size_from_packed (p->shape[1]);
  g_assert_cmpint (b, ==, cfg->oft_block_size);
  return (OftSpec) { .d = d, .b = b, .n_blocks = d / b, .block_share = cfg->block_share, .neumann = cfg->neumann,
                     .n_terms = cfg->n_terms, .coft = cfg->coft, .eps = cfg->eps };
}

/* R_blocks, R_full, COFT projection, merge: what linear and conv cases share. Returns R (g_free). */
static float *
oft_case_rotation (const Case *c, const OftAdapterConfig *cfg, const OftSpec *s, float *p)
{
  const int rows = oft_spec_rows (s), b = s->b, d = s->d;
  if (cfg->coft)
    {
      oft_coft_project (p, s);
      float *want = test_load (c->t, "oft_R_projected", NULL);
      check (c, "oft_R_projected", p, want, (int64_t) rows * b * (b - 1) / 2);
      /* block 0 was inside the ball and must be left bit-identical */
      float *orig = test_load (c->t, "oft_R", NULL);
      g_assert_cmpmem (p, sizeof (float) * b * (b - 1) / 2, orig, sizeof (float) * b * (b - 1) / 2);
      g_free (orig);
      g_free (want);
    }
  float *R = g_new (float, (size_t) rows * b * b), *cache = g_new (float, (size_t) rows * b * b);
  oft_rotation_forward (R, cache, p, s);
  g_free (cache);
  int64_t nR;
  float *want = test_load (c->t, "R_blocks", &nR);
  float *got = g_new (float, nR);
  for (int64_t k = 0; k < nR / (b * b); k++)   /* with block_share every golden block is the one stored */
    memcpy (got + k * b * b, R + (size_t) (rows == 1 ? 0 : k) * b * b, sizeof (float) * b * b);
  check (c, "R_blocks", got, want, nR);
  g_free (got);
  g_free (want);
  float *M = blockdiag (R, rows, s->n_blocks, b);
  want = test_load (c->t, "R_full", NULL);
  check (c, "R_full", M, want, (int64_t) d * d);
  g_free (want);
  g_free (M);
  return R;
}

static void
merge_check (const Case *c, const OftAdapterConfig *cfg, const float *W, int out, int d, float **Wm_out)
{
  float *Wm = g_memdup2 (W, sizeof (float) * out * d);
  GError *error = NULL;
  gboolean boft = cfg->kind == OFT_ADAPTER_BOFT;
  OftTensor param = view (c->ad, boft ? "base_model.model.layer.boft_R" : "base_model.model.layer.oft_R.weight");
  OftTensor scale;
  if (boft)
    scale = view (c->ad, "base_model.model.layer.boft_s");
  g_assert_true (oft_adapter_merge (Wm, out, d, cfg, &param, boft ? &scale : NULL, "layer", &error));
  g_assert_no_error (error);
  float *want = test_load (c->t, "weight_merged", NULL);
  check (c, "weight_merged", Wm, want, (int64_t) out * d);
  g_free (want);
  /* the bias is not touched by any merge */
  float *b0 = test_load (c->t, "bias", NULL), *b1 = test_load (c->t, "bias_merged", NULL);
  g_assert_cmpmem (b0, sizeof (float) * out, b1, sizeof (float) * out);
  g_free (b0);
  g_free (b1);
  *Wm_out = Wm;
}

static void
run_oft_linear (const char *name)
{
  Case c = case_open (name);
  OftAdapterConfig cfg = case_config (&c);
  const int in = (int) json_object_get_int_member (c.cs, "in_features");
  const int out = (int) json_object_get_int_member (c.cs, "out_features");
  const OftSafetensorsEntry *pe = entry (c.t, "oft_R");
  OftSpec s = spec_from (&cfg, pe, in);
  int64_t np, nx;
  float *p = test_load (c.t, "oft_R", &np);
  float *x = test_load (c.t, "x", &nx);
  float *W = test_load (c.t, "weight", NULL), *bias = test_load (c.t, "bias", NULL);
  float *g = test_load (c.t, "g", NULL);
  const int64_t N = nx / in;
  float *R = oft_case_rotation (&c, &cfg, &s, p);
  const int rows = oft_spec_rows (&s);
  float *cache = g_new (float, (size_t) rows * s.b * s.b);
  oft_rotation_forward (R, cache, p, &s);

  /* forward: x_rot = x·blockdiag(R), then the frozen layer */
  float *xr = g_new (float, nx), *y = g_new (float, N * out);
  oft_rotate_input_forward (xr, x, R, N, &s);
  linear_ref (y, xr, W, bias, N, in, out);
  float *want = test_load (c.t, "y", NULL);
  check (&c, "y", y, want, N * out);
  g_free (want);

  /* backward of loss = Σ y·g: dx_rot = g·W */
  float *dxr = g_new0 (float, nx);
  for (int64_t n = 0; n < N; n++)
    for (int i = 0; i < in; i++)
      {
        double acc = 0;
        for (int o = 0; o < out; o++)
          acc += (double) g[n * out + o] * W[(size_t) o * in + i];
        dxr[n * in + i] = (float) acc;
      }
  float *dx = g_new0 (float, nx), *dR = g_new0 (float, (size_t) rows * s.b * s.b), *dp = g_new0 (float, np);
  oft_rotate_input_backward (dx, dR, dxr, x, R, N, &s);
  oft_rotation_backward (dp, dR, cache, p, &s);
  want = test_load (c.t, "grad_x", NULL);
  check (&c, "grad_x", dx, want, nx);
  g_free (want);
  want = test_load (c.t, "grad_oft_R", NULL);
  check (&c, "grad_oft_R", dp, want, np);
  g_free (want);

  float *Wm;
  merge_check (&c, &cfg, W, out, in, &Wm);
  linear_ref (y, x, Wm, bias, N, in, out);
  want = test_load (c.t, "y_merged", NULL);
  check (&c, "y_merged", y, want, N * out);
  g_free (want);

  g_free (Wm);
  g_free (dp);
  g_free (dR);
  g_free (dx);
  g_free (dxr);
  g_free (y);
  g_free (xr);
  g_free (cache);
  g_free (R);
  g_free (g);
  g_free (bias);
  g_free (W);
  g_free (x);
  g_free (p);
  case_close (&c);
}

static void test_oft_linear (void) { run_oft_linear ("oft_linear"); }
static void test_oft_linear_coft (void) { run_oft_linear ("oft_linear_coft"); }
static void test_oft_linear_neumann (void) { run_oft_linear ("oft_linear_neumann"); }
static void test_oft_linear_block_share (void) { run_oft_linear ("oft_linear_block_share"); }

/* ---------------------------------------------------------------- double-precision references */

static void
ref_unpack (double *Q, const float *row, int b)
{
  int k = 0;
  memset (Q, 0, sizeof (double) * b * b);
  for (int i = 0; i < b; i++)
    for (int j = i + 1; j < b; j++, k++)
      Q[i * b + j] = row[k], Q[j * b + i] = -(double) row[k];
}

static void
ref_matmul (double *C, const double *A, const double *B, int n)
{
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++)
      {
        double acc = 0;
        for (int k = 0; k < n; k++)
          acc += A[i * n + k] * B[k * n + j];
        C[i * n + j] = acc;
      }
}

/* inverse by Gauss–Jordan with partial pivoting (independent of the library's LU) */
static void
ref_inverse (double *inv, const double *A, int n)
{
  double *M = g_new (double, (size_t) 2 * n * n);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++)
      M[i * 2 * n + j] = A[i * n + j], M[i * 2 * n + n + j] = i == j;
  for (int k = 0; k < n; k++)
    {
      int p = k;
      for (int i = k + 1; i < n; i++)
        if (fabs (M[i * 2 * n + k]) > fabs (M[p * 2 * n + k]))
          p = i;
      for (int j = 0; j < 2 * n; j++)
        {
          double t = M[k * 2 * n + j];
          M[k * 2 * n + j] = M[p * 2 * n + j];
          M[p * 2 * n + j] = t;
        }
      double piv = M[k * 2 * n + k];
      for (int j = 0; j < 2 * n; j++)
        M[k * 2 * n + j] /= piv;
      for (int i = 0; i < n; i++)
        if (i != k)
          {
            double f = M[i * 2 * n + k];
            for (int j = 0; j < 2 * n; j++)
              M[i * 2 * n + j] -= f * M[k * 2 * n + j];
          }
    }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++)
      inv[i * n + j] = M[i * 2 * n + n + j];
  g_free (M);
}

/* exact Cayley (I − Q)(I + Q)⁻¹ */
static void
ref_cayley (double *R, const double *Q, int b)
{
  double *A = g_new (double, (size_t) 3 * b * b), *inv = A + b * b, *B = inv + b * b;
  for (int i = 0; i < b * b; i++)
    A[i] = Q[i], B[i] = -Q[i];
  for (int i = 0; i < b; i++)
    A[i * b + i] += 1, B[i * b + i] += 1;
  ref_inverse (inv, A, b);
  ref_matmul (R, B, inv, b);
  g_free (A);
}

/* PEFT's series written out term by term from its definition */
static void
ref_neumann (double *R, const double *Q, int n, int b)
{
  double *P = g_new (double, (size_t) 2 * b * b), *T = P + b * b;
  memset (R, 0, sizeof (double) * b * b);
  for (int i = 0; i < b; i++)
    R[i * b + i] = 1;
  if (n >= 2)
    {
      int last = n >= 3 ? (n - 1 > 3 ? n - 1 : 3) : 1;
      memcpy (P, Q, sizeof (double) * b * b);
      for (int k = 1; k <= last; k++)
        {
          double coef = (k == last && n >= 3) ? 1.0 : 2.0;
          for (int i = 0; i < b * b; i++)
            R[i] += coef * P[i];
          ref_matmul (T, P, Q, b);
          memcpy (P, T, sizeof (double) * b * b);
        }
    }
  g_free (P);
}

static void
ref_rotation (double *R, const float *row, const OftSpec *s)
{
  double *Q = g_new (double, (size_t) s->b * s->b);
  ref_unpack (Q, row, s->b);
  if (s->neumann)
    ref_neumann (R, Q, s->n_terms, s->b);
  else
    ref_cayley (R, Q, s->b);
  g_free (Q);
}

/* ---------------------------------------------------------------- conv golden cases */

static void
run_oft_conv (const char *name)
{
  Case c = case_open (name);
  OftAdapterConfig cfg = case_config (&c);
  const OftSafetensorsEntry *xe = entry (c.t, "x"), *we = entry (c.t, "weight");
  ConvShape cs = { .B = (int) xe->shape[0], .C = (int) xe->shape[1], .H = (int) xe->shape[2], .W = (int) xe->shape[3],
                   .O = (int) we->shape[0], .k = (int) we->shape[2],
                   .pad = (int) json_object_get_int_member (c.cs, "padding") };
  const int d = cs.C * cs.k * cs.k, out = cs.O;
  OftSpec s = spec_from (&cfg, entry (c.t, "oft_R"), d);
  const int rows = oft_spec_rows (&s), b = s.b;
  int64_t np, nx, ny;
  float *p = test_load (c.t, "oft_R", &np);
  float *x = test_load (c.t, "x", &nx);
  float *W = test_load (c.t, "weight", NULL), *bias = test_load (c.t, "bias", NULL);
  float *g = test_load (c.t, "g", &ny);
  float *R = oft_case_rotation (&c, &cfg, &s, p);
  float *cache = g_new (float, (size_t) rows * b * b);
  oft_rotation_forward (R, cache, p, &s);

  /* the adapter acts as the merged conv; PEFT's unfold/fold forward is only equal to it for k = 1 */
  float *Wm;
  merge_check (&c, &cfg, W, out, d, &Wm);
  double *yd = g_new (double, ny);
  float *y = g_new (float, ny);
  conv_ref (yd, x, Wm, bias, &cs);
  for (int64_t i = 0; i < ny; i++)
    y[i] = (float) yd[i];
  float *want = test_load (c.t, "y_merged", NULL);
  check (&c, "y_merged", y, want, ny);
  g_free (want);

  double *dWd = g_new (double, (size_t) out * d);
  float *dWm = g_new (float, (size_t) out * d), *dx = g_new0 (float, nx);
  conv_ref_backward (dWd, dx, g, x, Wm, &cs);
  for (int64_t i = 0; i < (int64_t) out * d; i++)
    dWm[i] = (float) dWd[i];
  float *dR = g_new0 (float, (size_t) rows * b * b), *dp = g_new0 (float, np);
  oft_rotate_weight_backward (dR, dWm, W, out, &s);
  oft_rotation_backward (dp, dR, cache, p, &s);

  if (cs.k == 1)
    {
      /* 1×1: PEFT's forward is the merged one, so its y and gradients are the reference */
      want = test_load (c.t, "y", NULL);
      check (&c, "y", y, want, ny);
      g_free (want);
      want = test_load (c.t, "grad_x", NULL);
      check (&c, "grad_x", dx, want, nx);
      g_free (want);
      want = test_load (c.t, "grad_oft_R", NULL);
      check (&c, "grad_oft_R", dp, want, np);
      g_free (want);
    }
  else
    {
      /* k > 1: golden y/grads describe PEFT's broken forward. Check ∂L/∂p of the merged form against central
       * differences of L(p) = <dW', W·blockdiag(R(p))ᵀ> (exact: the conv is linear in W') in double. */
      const int ne = b * (b - 1) / 2;
      double *Rd = g_new (double, (size_t) rows * b * b);
      double *fd = g_new (double, np);
      float *an = g_new (float, np);
      int64_t m = 0;
      float *pp = g_memdup2 (p, sizeof (float) * np);
      for (int64_t e = 0; e < np; e += 7, m++)
        {
          double Lpm[2];
          float orig = pp[e];
          /* h: a float-representable step so that p ± h is exact in the packed float row */
          const float h = 1.0f / 4096;
          for (int sgn = 0; sgn < 2; sgn++)
            {
              pp[e] = orig + (sgn ? -h : h);
              int r = (int) (e / ne);
              ref_rotation (Rd + (size_t) r * b * b, pp + (size_t) r * ne, &s);
              double L = 0;
              for (int o = 0; o < out; o++)
                for (int i = 0; i < b; i++)
                  {
                    double acc = 0;
                    for (int j = 0; j < b; j++)
                      acc += (double) W[(size_t) o * d + r * b + j] * Rd[((size_t) r * b + i) * b + j];
                    L += dWd[(size_t) o * d + r * b + i] * acc;
                  }
              Lpm[sgn] = L;
            }
          pp[e] = orig;
          fd[m] = (Lpm[0] - Lpm[1]) / (2.0 * h);
          an[m] = dp[e];
        }
      /* central differences in double with h = 2^-12: truncation O(h²·‖L'''‖) ~ 1e-7 relative; the analytic
       * gradient is fp32 (products of ~150 terms), ~1e-6 relative: 1e-4 relative is ample and still catches a
       * transposed or mis-signed gradient (O(1) errors). Only the block touched by p[e] changes L. */
      char *what = g_strdup_printf ("%s grad_oft_R (merged form) vs central differences", name);
      test_assert_close_d (what, an, fd, m, 1e-4);
      g_free (what);
      g_free (pp);
      g_free (an);
      g_free (fd);
      g_free (Rd);
    }
  g_free (dp);
  g_free (dR);
  g_free (dx);
  g_free (dWm);
  g_free (dWd);
  g_free (y);
  g_free (yd);
  g_free (Wm);
  g_free (cache);
  g_free (R);
  g_free (g);
  g_free (bias);
  g_free (W);
  g_free (x);
  g_free (p);
  case_close (&c);
}

static void test_oft_conv3x3 (void) { run_oft_conv ("oft_conv3x3"); }
static void test_oft_conv1x1 (void) { run_oft_conv ("oft_conv1x1"); }

/* ---------------------------------------------------------------- BOFT golden case */

static void
test_boft_linear (void)
{
  Case c = case_open ("boft_linear");
  OftAdapterConfig cfg = case_config (&c);
  const int in = (int) json_object_get_int_member (c.cs, "in_features");
  const int out = (int) json_object_get_int_member (c.cs, "out_features");
  const OftSafetensorsEntry *re = entry (c.t, "boft_R");
  OftBoftSpec s = { .d = in, .b = (int) re->shape[2], .n_blocks = (int) re->shape[1], .n_factors = (int) re->shape[0] };
  g_assert_cmpint (s.b, ==, cfg.boft_block_size);
  g_assert_cmpint (s.n_factors, ==, cfg.boft_n_factors);
  int64_t nA, nx;
  float *A = test_load (c.t, "boft_R", &nA), *sv = test_load (c.t, "boft_s", NULL);
  float *x = test_load (c.t, "x", &nx);
  float *W = test_load (c.t, "weight", NULL), *bias = test_load (c.t, "bias", NULL);
  float *g = test_load (c.t, "g", NULL);
  const int64_t N = nx / in;

  /* permutations: P_i[j, idx[j]] = 1, exactly */
  float *P = test_load (c.t, "boft_P", NULL);
  int *idx = g_new (int, in);
  for (int f = 0; f < s.n_factors; f++)
    {
      oft_boft_perm (idx, &s, f);
      for (int j = 0; j < in; j++)
        for (int k = 0; k < in; k++)
          g_assert_cmpfloat (P[((size_t) f * in + j) * in + k], ==, idx[j] == k ? 1.0f : 0.0f);
    }
  g_free (idx);
  g_free (P);

  float *T = g_new (float, (size_t) in * in), *cache = g_new (float, oft_boft_cache_floats (&s));
  oft_boft_transform_forward (T, cache, A, &s);
  float *want = test_load (c.t, "R_blocks", NULL);
  check (&c, "R_blocks", cache, want, nA);   /* the cache starts with the rotation blocks */
  g_free (want);
  want = test_load (c.t, "R_full", NULL);
  check (&c, "R_full (T)", T, want, (int64_t) in * in);
  g_free (want);

  /* y = s ⊙ ((x·T)·Wᵀ) + bias */
  float *z = g_new (float, nx), *u = g_new (float, N * out), *y = g_new (float, N * out);
  for (int64_t n = 0; n < N; n++)
    for (int j = 0; j < in; j++)
      {
        double acc = 0;
        for (int i = 0; i < in; i++)
          acc += (double) x[n * in + i] * T[(size_t) i * in + j];
        z[n * in + j] = (float) acc;
      }
  linear_ref (u, z, W, NULL, N, in, out);
  for (int64_t n = 0; n < N; n++)
    for (int o = 0; o < out; o++)
      y[n * out + o] = sv[o] * u[n * out + o] + bias[o];
  want = test_load (c.t, "y", NULL);
  check (&c, "y", y, want, N * out);
  g_free (want);

  /* backward: ds = Σ g⊙u, dz = (g⊙s)·W, dx = dz·Tᵀ, dT = xᵀ·dz */
  float *ds = g_new0 (float, out), *dz = g_new0 (float, nx), *dx = g_new0 (float, nx);
  float *dT = g_new0 (float, (size_t) in * in), *dA = g_new0 (float, nA);
  for (int o = 0; o < out; o++)
    {
      double acc = 0;
      for (int64_t n = 0; n < N; n++)
        acc += (double) g[n * out + o] * u[n * out + o];
      ds[o] = (float) acc;
    }
  for (int64_t n = 0; n < N; n++)
    for (int i = 0; i < in; i++)
      {
        double acc = 0;
        for (int o = 0; o < out; o++)
          acc += (double) g[n * out + o] * sv[o] * W[(size_t) o * in + i];
        dz[n * in + i] = (float) acc;
      }
  for (int64_t n = 0; n < N; n++)
    for (int i = 0; i < in; i++)
      {
        double acc = 0;
        for (int j = 0; j < in; j++)
          acc += (double) dz[n * in + j] * T[(size_t) i * in + j];
        dx[n * in + i] = (float) acc;
      }
  for (int i = 0; i < in; i++)
    for (int j = 0; j < in; j++)
      {
        double acc = 0;
        for (int64_t n = 0; n < N; n++)
          acc += (double) x[n * in + i] * dz[n * in + j];
        dT[(size_t) i * in + j] = (float) acc;
      }
  oft_boft_transform_backward (dA, dT, cache, A, &s);
  want = test_load (c.t, "grad_x", NULL);
  check (&c, "grad_x", dx, want, nx);
  g_free (want);
  want = test_load (c.t, "grad_boft_R", NULL);
  check (&c, "grad_boft_R", dA, want, nA);
  g_free (want);
  want = test_load (c.t, "grad_boft_s", NULL);
  check (&c, "grad_boft_s", ds, want, out);
  g_free (want);

  float *Wm;
  merge_check (&c, &cfg, W, out, in, &Wm);
  linear_ref (y, x, Wm, bias, N, in, out);
  want = test_load (c.t, "y_merged", NULL);
  check (&c, "y_merged", y, want, N * out);
  g_free (want);

  g_free (Wm);
  g_free (dA);
  g_free (dT);
  g_free (dx);
  g_free (dz);
  g_free (ds);
  g_free (y);
  g_free (u);
  g_free (z);
  g_free (cache);
  g_free (T);
  g_free (g);
  g_free (bias);
  g_free (W);
  g_free (x);
  g_free (sv);
  g_free (A);
  case_close (&c);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/oft/golden/oft_linear", test_oft_linear);
  g_test_add_func ("/oft/golden/oft_linear_coft", test_oft_linear_coft);
  g_test_add_func ("/oft/golden/oft_linear_neumann", test_oft_linear_neumann);
  g_test_add_func ("/oft/golden/oft_linear_block_share", test_oft_linear_block_share);
  g_test_add_func ("/oft/golden/oft_conv3x3", test_oft_conv3x3);
  g_test_add_func ("/oft/golden/oft_conv1x1", test_oft_conv1x1);
  g_test_add_func ("/oft/golden/boft_linear", test_boft_linear);
  return g_test_run ();
}
