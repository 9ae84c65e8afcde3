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
          const float h = 1.0f / 4096;
          float pv[2] = { orig + h, orig - h };  /* divide by the steps actually taken: p ± h rounds */
          for (int sgn = 0; sgn < 2; sgn++)
            {
              pp[e] = pv[sgn];
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
          fd[m] = (Lpm[0] - Lpm[1]) / ((double) pv[0] - pv[1]);
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

/* ---------------------------------------------------------------- invariants on random data */

static OftSpec
make_spec (int b, int n_blocks, bool neumann, int n_terms, bool share)
{
  return (OftSpec) { .d = b * n_blocks, .b = b, .n_blocks = n_blocks, .block_share = share, .neumann = neumann,
                     .n_terms = n_terms };
}

static float *
random_packed (const OftSpec *s, float amp, guint32 seed)
{
  int64_t n = (int64_t) oft_spec_rows (s) * s->b * (s->b - 1) / 2;
  float *p = g_new (float, n);
  test_fill_uniform (p, n, -amp, amp, seed);
  return p;
}

static void
test_cayley_orthogonal (void)
{
  /* Exact Cayley of a skew Q is orthogonal; our R is rounded to fp32 once (the solve runs in double), so
   * RᵀR − I is a sum of b products each off by ~6e-8: ≤ b·6e-8·2 ≈ 8e-6 at b = 64 in the worst case,
   * ~1e-6 in practice. 1e-5 is the bound; a wrong formula (e.g. (I − Q)(I + Q) without the inverse) is O(‖Q‖²). */
  const int bs[] = { 8, 16, 32, 64 };
  const float amps[] = { 0.05f, 0.5f };  /* PEFT's init scale after training, and a far-from-identity one */
  for (size_t ib = 0; ib < G_N_ELEMENTS (bs); ib++)
    for (size_t ia = 0; ia < G_N_ELEMENTS (amps); ia++)
      {
        OftSpec s = make_spec (bs[ib], 3, false, 0, false);
        float *p = random_packed (&s, amps[ia], 100 + ib);
        int b = s.b;
        float *R = g_new (float, (size_t) 3 * b * b);
        oft_rotation_forward (R, NULL, p, &s);
        double worst = 0;
        for (int r = 0; r < 3; r++)
          for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++)
              {
                double acc = 0;
                for (int k = 0; k < b; k++)
                  acc += (double) R[(r * b + k) * b + i] * R[(r * b + k) * b + j];
                worst = fmax (worst, fabs (acc - (i == j)));
              }
        g_test_message ("cayley b=%d amp=%.2f: max|RᵀR − I| = %.3g", b, amps[ia], worst);
        g_assert_cmpfloat (worst, <=, 1e-5);
        g_free (R);
        g_free (p);
      }
}

static void
test_zero_is_identity (void)
{
  /* zero parameters must give exactly I (no rounding: every product involves a 0) */
  for (int variant = 0; variant < 3; variant++)
    {
      OftSpec s = make_spec (16, 4, variant > 0, variant == 1 ? 5 : 6, variant == 2);
      int rows = oft_spec_rows (&s);
      float *p = g_new0 (float, (size_t) rows * 120), *R = g_new (float, (size_t) rows * 256);
      oft_rotation_forward (R, NULL, p, &s);
      for (int r = 0; r < rows; r++)
        for (int i = 0; i < 16; i++)
          for (int j = 0; j < 16; j++)
            g_assert_cmpfloat (R[(r * 16 + i) * 16 + j], ==, i == j ? 1.0f : 0.0f);
      g_free (R);
      g_free (p);
    }
  OftBoftSpec bs = { .d = 32, .b = 4, .n_blocks = 8, .n_factors = 3 };
  float *A = g_new0 (float, 3 * 8 * 16), *T = g_new (float, 32 * 32);
  oft_boft_transform_forward (T, NULL, A, &bs);
  for (int i = 0; i < 32; i++)
    for (int j = 0; j < 32; j++)
      g_assert_cmpfloat (T[i * 32 + j], ==, i == j ? 1.0f : 0.0f);
  /* and the module-level merge leaves W bit-identical (OFT and BOFT with s = 1) */
  float W[24 * 32], W0[24 * 32], ones[24];
  test_fill_uniform (W0, 24 * 32, -1, 1, 7);
  for (int i = 0; i < 24; i++)
    ones[i] = 1;
  memcpy (W, W0, sizeof W);
  OftAdapterConfig cfg = { .kind = OFT_ADAPTER_BOFT, .boft_block_size = 4, .boft_n_factors = 3 };
  OftTensor pt = { .dtype = OFT_DTYPE_F32, .ndim = 4, .shape = { 3, 8, 4, 4 }, .data = A };
  OftTensor st = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { 24, 1 }, .data = ones };
  GError *error = NULL;
  g_assert_true (oft_adapter_merge (W, 24, 32, &cfg, &pt, &st, "zero", &error));
  g_assert_cmpmem (W, sizeof W, W0, sizeof W0);
  float z[4 * 28] = { 0 };
  OftAdapterConfig ocfg = { .kind = OFT_ADAPTER_OFT, .neumann = true, .n_terms = 5 };
  OftTensor zt = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { 4, 28 }, .data = z };
  g_assert_true (oft_adapter_merge (W, 24, 32, &ocfg, &zt, NULL, "zero", &error));
  g_assert_cmpmem (W, sizeof W, W0, sizeof W0);
  g_free (T);
  g_free (A);
}

static void
roundtrip (const char *what, const OftAdapterConfig *cfg, const OftTensor *param, const OftTensor *scale,
           int out, int d)
{
  float *W0 = g_new (float, (size_t) out * d), *W = g_new (float, (size_t) out * d);
  test_fill_uniform (W0, (int64_t) out * d, -1, 1, 11);
  memcpy (W, W0, sizeof (float) * out * d);
  GError *error = NULL;
  g_assert_true (oft_adapter_merge (W, out, d, cfg, param, scale, what, &error));
  g_assert_no_error (error);
  double moved = 0;
  for (int i = 0; i < out * d; i++)
    moved = fmax (moved, fabs (W[i] - W0[i]));
  g_assert_cmpfloat (moved, >, 1e-2);  /* the merge did something, so the round trip means something */
  g_assert_true (oft_adapter_unmerge (W, out, d, cfg, param, scale, what, &error));
  g_assert_no_error (error);
  /* two fp32 passes of b-term dot products (and a solve in double): a few ulps of |W| ≤ 1 */
  char *name = g_strdup_printf ("%s merge→unmerge restores W", what);
  test_assert_close (name, W, W0, (int64_t) out * d, 1e-5);
  g_free (name);
  g_free (W);
  g_free (W0);
}

static void
test_merge_unmerge_roundtrip (void)
{
  /* exact Cayley, b = 16 */
  float p[4 * 120];
  test_fill_uniform (p, 4 * 120, -0.2f, 0.2f, 21);
  OftTensor pt = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { 4, 120 }, .data = p };
  OftAdapterConfig cfg = { .kind = OFT_ADAPTER_OFT, .oft_block_size = 16 };
  roundtrip ("cayley", &cfg, &pt, NULL, 20, 64);
  /* Neumann with large Q: R is visibly not orthogonal, so only a true inverse restores W */
  cfg.neumann = true;
  cfg.n_terms = 5;
  roundtrip ("neumann", &cfg, &pt, NULL, 20, 64);
  OftSpec s = make_spec (16, 4, true, 5, false);
  float R[4 * 256];
  oft_rotation_forward (R, NULL, p, &s);
  double off = 0;
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++)
      {
        double acc = 0;
        for (int k = 0; k < 16; k++)
          acc += (double) R[k * 16 + i] * R[k * 16 + j];
        off = fmax (off, fabs (acc - (i == j)));
      }
  g_test_message ("neumann R (amp 0.2): max|RᵀR − I| = %.3g", off);
  g_assert_cmpfloat (off, >, 1e-3);
  /* block_share */
  OftTensor p1 = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { 1, 120 }, .data = p };
  cfg.block_share = true;
  roundtrip ("neumann block_share", &cfg, &p1, NULL, 20, 64);
  /* BOFT with a magnitude scale */
  float A[2 * 8 * 64], sv[20];
  test_fill_uniform (A, 2 * 8 * 64, -0.3f, 0.3f, 22);
  test_fill_uniform (sv, 20, 0.8f, 1.2f, 23);
  OftTensor at = { .dtype = OFT_DTYPE_F32, .ndim = 4, .shape = { 2, 8, 8, 8 }, .data = A };
  OftTensor st = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { 1, 20 }, .data = sv };
  OftAdapterConfig bcfg = { .kind = OFT_ADAPTER_BOFT, .boft_block_size = 8, .boft_n_factors = 2 };
  roundtrip ("boft", &bcfg, &at, &st, 20, 64);
}

static void
test_merge_shape_errors (void)
{
  float W[8 * 64] = { 0 }, p[5 * 120] = { 0 }, A[2 * 8 * 64] = { 0 }, sv[16] = { 0 };
  GError *error = NULL;
  OftAdapterConfig cfg = { .kind = OFT_ADAPTER_OFT };
  struct { int64_t rows, ne; bool share; int bsz; } bad[] = {
    { 5, 120, false, 0 },   /* 5 blocks of 16 ≠ 64 */
    { 4, 119, false, 0 },   /* not a triangle number */
    { 4, 120, true, 0 },    /* block_share wants 1 row */
    { 4, 120, false, 8 },   /* config says b = 8 */
    { 3, 45, false, 0 },    /* b = 10 does not divide 64 */
  };
  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      cfg.block_share = bad[i].share;
      cfg.oft_block_size = bad[i].bsz;
      OftTensor t = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { bad[i].rows, bad[i].ne }, .data = p };
      g_assert_false (oft_adapter_merge (W, 8, 64, &cfg, &t, NULL, "down.0.attn1.to_q", &error));
      g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE);
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, "down.0.attn1.to_q"));
      char *got = g_strdup_printf ("[%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]", bad[i].rows, bad[i].ne);
      g_assert_nonnull (strstr (error->message, got));
      g_free (got);
      g_clear_error (&error);
    }
  OftAdapterConfig bcfg = { .kind = OFT_ADAPTER_BOFT, .boft_block_size = 8, .boft_n_factors = 2 };
  OftTensor at = { .dtype = OFT_DTYPE_F32, .ndim = 4, .shape = { 2, 8, 8, 8 }, .data = A };
  OftTensor st = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { 8, 2 }, .data = sv };
  g_assert_false (oft_adapter_merge (W, 8, 64, &bcfg, &at, &st, "layer", &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "boft_s"));
  g_clear_error (&error);
  OftTensor at2 = { .dtype = OFT_DTYPE_F32, .ndim = 4, .shape = { 2, 4, 8, 8 }, .data = A };
  g_assert_false (oft_adapter_merge (W, 8, 64, &bcfg, &at2, NULL, "layer", &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "[2, 4, 8, 8]"));
  g_clear_error (&error);
}

static void
test_energy (void)
{
  /* known values: two orthogonal unit rows. Paper: 2 ordered pairs at distance √2 → √2. Reference code:
   * points ±e1, ±e2 with norms √(1 + 1e-4): 4 pairs with cos 0 → 2^(−1/2) each, 2 antipodal pairs with
   * cos −1/(1 + 1e-4); mean over 6 pairs. */
  float E[2 * 3] = { 1, 0, 0, 0, 1, 0 };
  double want = sqrt (2.0);
  g_assert_cmpfloat (fabs (oft_hyperspherical_energy (E, 2, 3) - want), <=, 1e-12);
  double ca = -1.0 / (1.0 + 1e-4);
  double want_ref = (4.0 / sqrt (2.0) + 2.0 / sqrt (2.0 - 2.0 * ca)) / 6.0;
  g_assert_cmpfloat (fabs (oft_hyperspherical_energy_ref (E, 2, 3) - want_ref), <=, 1e-12);
  /* invariance: every neuron rotated by the same orthogonal blockdiag(R) (the merge of exact Cayley).
   * Energies are computed in double from fp32 rows; the rotation changes rows by fp32 rounding only, so
   * the energies agree to ~1e-6 relative. */
  float W[12 * 32], Wr[12 * 32];
  test_fill_uniform (W, 12 * 32, -1, 1, 31);
  OftSpec s = make_spec (8, 4, false, 0, false);
  float *p = random_packed (&s, 0.4f, 32), R[4 * 64];
  oft_rotation_forward (R, NULL, p, &s);
  oft_rotate_weight_forward (Wr, W, R, 12, &s);
  double e0 = oft_hyperspherical_energy (W, 12, 32), e1 = oft_hyperspherical_energy (Wr, 12, 32);
  double r0 = oft_hyperspherical_energy_ref (W, 12, 32), r1 = oft_hyperspherical_energy_ref (Wr, 12, 32);
  g_test_message ("HE paper %.9g → %.9g, reference-code variant %.9g → %.9g", e0, e1, r0, r1);
  g_assert_cmpfloat (fabs (e1 - e0), <=, 1e-5 * e0);
  g_assert_cmpfloat (fabs (r1 - r0), <=, 1e-5 * r0);
  /* a non-orthogonal change (a shear) moves both */
  for (int j = 0; j < 32; j++)
    Wr[j] += 0.5f * Wr[32 + j];
  g_assert_cmpfloat (fabs (oft_hyperspherical_energy (Wr, 12, 32) - e0), >, 1e-3 * e0);
  /* the reference variant averages over all 276 pairs, so one sheared row moves it less */
  g_assert_cmpfloat (fabs (oft_hyperspherical_energy_ref (Wr, 12, 32) - r0), >, 1e-4 * r0);
  g_free (p);
}

/* L(p) = Σ G ⊙ R(p) in double; central differences against oft_rotation_backward */
static void
rotation_fd (const char *what, const OftSpec *s, float amp, guint32 seed)
{
  const int rows = oft_spec_rows (s), b = s->b, ne = b * (b - 1) / 2;
  const int64_t np = (int64_t) rows * ne;
  float *p = random_packed (s, amp, seed);
  float *G = g_new (float, (size_t) rows * b * b), *cache = g_new (float, (size_t) rows * b * b);
  float *R = g_new (float, (size_t) rows * b * b), *dp = g_new0 (float, np);
  test_fill_uniform (G, (int64_t) rows * b * b, -1, 1, seed + 1);
  oft_rotation_forward (R, cache, p, s);
  oft_rotation_backward (dp, G, cache, p, s);
  double *fd = g_new (double, np), *Rd = g_new (double, (size_t) b * b);
  for (int64_t e = 0; e < np; e++)
    {
      const float h = 1.0f / 4096;
      float orig = p[e];
      float pv[2] = { orig + h, orig - h };  /* divide by the steps actually taken: p ± h rounds */
      double L[2];
      int r = (int) (e / ne);
      for (int sgn = 0; sgn < 2; sgn++)
        {
          p[e] = pv[sgn];
          ref_rotation (Rd, p + (size_t) r * ne, s);
          double acc = 0;
          for (int i = 0; i < b * b; i++)
            acc += (double) G[(size_t) r * b * b + i] * Rd[i];
          L[sgn] = acc;
        }
      p[e] = orig;
      fd[e] = (L[0] - L[1]) / ((double) pv[0] - pv[1]);
    }
  /* double central differences, h = 2^-12: truncation ~h²/6 times the third derivative, ~1e-7 relative;
   * the analytic gradient is computed in double from fp32 inputs (the Cayley cache is fp32: ~1e-7). */
  test_assert_close_d (what, dp, fd, np, 1e-5);
  g_free (Rd);
  g_free (fd);
  g_free (dp);
  g_free (R);
  g_free (cache);
  g_free (G);
  g_free (p);
}

static void
test_rotation_backward_fd (void)
{
  OftSpec s = make_spec (8, 3, false, 0, false);
  rotation_fd ("cayley b=8 backward vs FD", &s, 0.3f, 41);
  s = make_spec (16, 2, false, 0, false);
  rotation_fd ("cayley b=16 backward vs FD", &s, 0.1f, 42);
  for (int n = 1; n <= 6; n++)
    {
      s = make_spec (8, 2, true, n, false);
      char *what = g_strdup_printf ("neumann n=%d b=8 backward vs FD", n);
      rotation_fd (what, &s, 0.2f, 50 + n);
      g_free (what);
    }
  s = make_spec (8, 4, false, 0, true);
  rotation_fd ("cayley block_share backward vs FD", &s, 0.2f, 60);
}

/* dense double T = M_{N−1}⋯M_0 from the definition: M_i = P_i·blockdiag(cayley(½(A − Aᵀ)))·P_iᵀ */
static void
ref_boft_T (double *T, const float *A, const OftBoftSpec *s)
{
  const int d = s->d, b = s->b;
  double *M = g_new0 (double, (size_t) d * d), *P = g_new0 (double, (size_t) d * d);
  double *tmp = g_new (double, (size_t) d * d), *S = g_new (double, (size_t) b * b), *Rb = g_new (double, (size_t) b * b);
  int *idx = g_new (int, d);
  memset (T, 0, sizeof (double) * d * d);
  for (int i = 0; i < d; i++)
    T[i * d + i] = 1;
  for (int f = 0; f < s->n_factors; f++)
    {
      memset (M, 0, sizeof (double) * d * d);
      for (int k = 0; k < s->n_blocks; k++)
        {
          const float *Ak = A + ((size_t) f * s->n_blocks + k) * b * b;
          for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++)
              S[i * b + j] = 0.5 * ((double) Ak[i * b + j] - Ak[j * b + i]);
          ref_cayley (Rb, S, b);
          for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++)
              M[(size_t) (k * b + i) * d + k * b + j] = Rb[i * b + j];
        }
      oft_boft_perm (idx, s, f);   /* checked against boft_P in the golden case */
      memset (P, 0, sizeof (double) * d * d);
      for (int j = 0; j < d; j++)
        P[(size_t) j * d + idx[j]] = 1;
      ref_matmul (tmp, P, M, d);                 /* P·Bd */
      for (int i = 0; i < d; i++)                /* (P·Bd)·Pᵀ: column j of Pᵀ picks column idx[j] */
        for (int j = 0; j < d; j++)
          M[(size_t) i * d + j] = tmp[(size_t) i * d + idx[j]];
      ref_matmul (tmp, M, T, d);                 /* T ← M_f·T */
      memcpy (T, tmp, sizeof (double) * d * d);
    }
  g_free (idx);
  g_free (Rb);
  g_free (S);
  g_free (tmp);
  g_free (P);
  g_free (M);
}

static void
test_boft_backward_fd (void)
{
  OftBoftSpec s = { .d = 16, .b = 4, .n_blocks = 4, .n_factors = 3 };
  const int d = s.d;
  const int64_t nA = (int64_t) s.n_factors * s.n_blocks * s.b * s.b;
  float *A = g_new (float, nA), *G = g_new (float, d * d), *dA = g_new0 (float, nA);
  float *T = g_new (float, d * d), *cache = g_new (float, oft_boft_cache_floats (&s));
  test_fill_uniform (A, nA, -0.4f, 0.4f, 70);
  test_fill_uniform (G, d * d, -1, 1, 71);
  oft_boft_transform_forward (T, cache, A, &s);
  double *Td = g_new (double, d * d), *fd = g_new (double, nA);
  ref_boft_T (Td, A, &s);
  float *Tdf = g_new (float, d * d);
  for (int i = 0; i < d * d; i++)
    Tdf[i] = (float) Td[i];
  /* three fp32 factor applications of b-term sums: a few ulps */
  test_assert_close ("boft T (3 factors) vs double reference", T, Tdf, d * d, 1e-5);
  oft_boft_transform_backward (dA, G, cache, A, &s);
  for (int64_t e = 0; e < nA; e++)
    {
      const float h = 1.0f / 4096;
      float orig = A[e];
      float pv[2] = { orig + h, orig - h };
      double L[2];
      for (int sgn = 0; sgn < 2; sgn++)
        {
          A[e] = pv[sgn];
          ref_boft_T (Td, A, &s);
          double acc = 0;
          for (int i = 0; i < d * d; i++)
            acc += (double) G[i] * Td[i];
          L[sgn] = acc;
        }
      A[e] = orig;
      fd[e] = (L[0] - L[1]) / ((double) pv[0] - pv[1]);
    }
  /* double central differences (h = 2^-12, ~1e-7 truncation) vs a gradient chained through fp32 factor
   * products (d-term sums of ~1e-7 relative error each): 1e-4 relative */
  test_assert_close_d ("boft backward vs FD", dA, fd, nA, 1e-4);
  g_free (Tdf);
  g_free (fd);
  g_free (Td);
  g_free (cache);
  g_free (T);
  g_free (dA);
  g_free (G);
  g_free (A);
}

static void
test_neumann_is_transposed_cayley (void)
{
  /* PEFT's series truncates (I + Q)(I − Q)⁻¹ = I + 2Σ_{k≥1} Q^k = R_exactᵀ. Its error is 2Q² for n = 2 and
   * Q^{n−1} + O(Q^n) for n ≥ 3 (the last kept term has coefficient 1, not 2; n = 3 and 4 coincide), so the
   * order is p = 2, 3, 3, 4, 5 for n = 2..6: one less than n from n = 3 on. Halving Q must divide the error
   * by ≈ 2^p; against R_exact itself (not transposed) the error stays O(‖Q‖), far larger. */
  const int order[] = { 0, 0, 2, 3, 3, 4, 5 };
  OftSpec se = make_spec (8, 1, false, 0, false);
  float *p0 = random_packed (&se, 1.0f, 80);
  for (int n = 2; n <= 6; n++)
    {
      double err[2], err_plain = 0;
      for (int half = 0; half < 2; half++)
        {
          /* sizes where the error stays ≥ 1e-5, far above fp32 rounding, at both scales */
          float amp = (n <= 3 ? 0.08f : 0.1f) / (half ? 2.0f : 1.0f);
          float p[28], Re[64], Rn[64];
          for (int i = 0; i < 28; i++)
            p[i] = p0[i] * amp;
          OftSpec sn = make_spec (8, 1, true, n, false);
          oft_rotation_forward (Re, NULL, p, &se);
          oft_rotation_forward (Rn, NULL, p, &sn);
          err[half] = 0;
          for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++)
              {
                err[half] = fmax (err[half], fabs ((double) Rn[i * 8 + j] - Re[j * 8 + i]));
                if (!half)
                  err_plain = fmax (err_plain, fabs ((double) Rn[i * 8 + j] - Re[i * 8 + j]));
              }
        }
      double ratio = err[0] / err[1];
      g_test_message ("neumann n=%d: |N − R_exactᵀ| %.3g → %.3g when Q halves (ratio %.2f, 2^%d = %d); "
                      "|N − R_exact| = %.3g", n, err[0], err[1], ratio, order[n], 1 << order[n], err_plain);
      /* leading-order behaviour: ratio within 30% of 2^p (higher-order terms shift it a little) */
      g_assert_cmpfloat (ratio, >=, 0.7 * (1 << order[n]));
      g_assert_cmpfloat (ratio, <=, 1.3 * (1 << order[n]));
      g_assert_cmpfloat (err_plain, >, 4 * err[0]);
    }
  g_free (p0);
}

static void
test_rotate_inverse_and_scale_backward (void)
{
  /* weight-centric inverse undoes the forward for a non-orthogonal (Neumann) R */
  OftSpec s = make_spec (8, 4, true, 3, false);
  float *p = random_packed (&s, 0.3f, 90), R[4 * 64], W[10 * 32], Wr[10 * 32], W2[10 * 32];
  test_fill_uniform (W, 320, -1, 1, 91);
  oft_rotation_forward (R, NULL, p, &s);
  oft_rotate_weight_forward (Wr, W, R, 10, &s);
  GError *error = NULL;
  g_assert_true (oft_rotate_weight_inverse (W2, Wr, R, 10, &s, &error));
  test_assert_close ("rotate_weight_inverse(forward(W))", W2, W, 320, 1e-5);
  /* a singular block is refused, not divided by */
  for (int i = 0; i < 64; i++) /* block 0 all zero */
    R[i] = 0;
  g_assert_false (oft_rotate_weight_inverse (W2, Wr, R, 10, &s, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC);
  g_clear_error (&error);
  /* magnitude: L = Σ G ⊙ (s ⊙ W) has ∂L/∂s_o = Σ_i G_oi W_oi and ∂L/∂W = s ⊙ G; backward accumulates */
  float sv[10], G[320], dW[320], ds[10];
  test_fill_uniform (sv, 10, 0.5f, 1.5f, 92);
  test_fill_uniform (G, 320, -1, 1, 93);
  for (int i = 0; i < 320; i++)
    dW[i] = 1;
  for (int o = 0; o < 10; o++)
    ds[o] = 1;
  oft_scale_rows_backward (dW, ds, G, W, sv, 10, 32);
  float wantW[320], wants[10];
  for (int o = 0; o < 10; o++)
    {
      double acc = 0;
      for (int i = 0; i < 32; i++)
        {
          acc += (double) G[o * 32 + i] * W[o * 32 + i];
          wantW[o * 32 + i] = 1 + sv[o] * G[o * 32 + i];
        }
      wants[o] = (float) (1 + acc);
    }
  /* single fp32 products / one rounding of a double sum */
  test_assert_close ("scale_rows_backward dW (accumulated)", dW, wantW, 320, 1e-6);
  test_assert_close ("scale_rows_backward ds (accumulated)", ds, wants, 10, 1e-6);
  g_free (p);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/oft/golden/oft_linear", test_oft_linear);
  g_test_add_func ("/oft/golden/oft_linear_coft", test_oft_linear_coft);
  g_test_add_func ("/oft/golden/oft_linear_neumann", test_oft_linear_neumann);
  g_test_add_func ("/oft/golden/oft_linear_block_share", test_oft_linear_block_share);
  g_test_add_func ("/oft/golden/oft_conv3x3", test_oft_conv3x3);
  g_test_add_func ("/oft/golden/oft_conv1x1", test_oft_conv1x1);
  g_test_add_func ("/oft/golden/boft_linear", test_boft_linear);
  g_test_add_func ("/oft/invariant/cayley-orthogonal", test_cayley_orthogonal);
  g_test_add_func ("/oft/invariant/zero-is-identity", test_zero_is_identity);
  g_test_add_func ("/oft/invariant/merge-unmerge-roundtrip", test_merge_unmerge_roundtrip);
  g_test_add_func ("/oft/invariant/merge-shape-errors", test_merge_shape_errors);
  g_test_add_func ("/oft/invariant/hyperspherical-energy", test_energy);
  g_test_add_func ("/oft/invariant/rotation-backward-fd", test_rotation_backward_fd);
  g_test_add_func ("/oft/invariant/boft-backward-fd", test_boft_backward_fd);
  g_test_add_func ("/oft/invariant/neumann-is-transposed-cayley", test_neumann_is_transposed_cayley);
  g_test_add_func ("/oft/invariant/rotate-inverse-and-scale-backward", test_rotate_inverse_and_scale_backward);
  return g_test_run ();
}
