/* oft selfcheck: the OFT invariants on random data, one line per check with the measured value and its bound.
 * Gradients are compared with central differences of double-precision references written here, so a
 * mistake shared by forward and backward in oftcore cannot hide. */
#include "oft-cli.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  gboolean quiet;
  int passed, failed;
} Report;

static void
report (Report *r, gboolean ok, const char *what, const char *measure, double value, double bound)
{
  if (ok)
    r->passed++;
  else
    r->failed++;
  if (!ok || !r->quiet)
    printf ("%s  %-32s %s = %.2g (≤ %.2g)\n", ok ? "PASS" : "FAIL", what, measure, value, bound);
}

static void
check_le (Report *r, const char *what, const char *measure, double value, double bound)
{
  report (r, value <= bound, what, measure, value, bound);   /* NaN fails */
}

static void
fill (float *x, int64_t n, double amp, GRand *rng)
{
  for (int64_t i = 0; i < n; i++)
    x[i] = (float) g_rand_double_range (rng, -amp, amp);
}

/* ---------------------------------------------------------------- double references */

static void
mat_mul (double *C, const double *A, const double *B, int n)
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

/* (I − S)(I + S)⁻¹ by Gauss–Jordan on [I + S | I − S]ᵀ: X(I + S) = I − S ⇔ (I + S)ᵀXᵀ = (I − S)ᵀ */
static void
ref_cayley (double *R, const double *S, int b)
{
  int w = 2 * b;
  double *M = g_new (double, (size_t) b * w);
  for (int i = 0; i < b; i++)
    for (int j = 0; j < b; j++)
      {
        M[i * w + j] = (i == j) + S[j * b + i];       /* (I + S)ᵀ */
        M[i * w + b + j] = (i == j) - S[j * b + i];   /* (I − S)ᵀ */
      }
  for (int k = 0; k < b; k++)
    {
      int p = k;
      for (int i = k + 1; i < b; i++)
        if (fabs (M[i * w + k]) > fabs (M[p * w + k]))
          p = i;
      for (int j = 0; j < w; j++)
        {
          double t = M[k * w + j];
          M[k * w + j] = M[p * w + j];
          M[p * w + j] = t;
        }
      double piv = M[k * w + k];
      for (int j = 0; j < w; j++)
        M[k * w + j] /= piv;
      for (int i = 0; i < b; i++)
        if (i != k && M[i * w + k] != 0)
          {
            double f = M[i * w + k];
            for (int j = 0; j < w; j++)
              M[i * w + j] -= f * M[k * w + j];
          }
    }
  for (int i = 0; i < b; i++)          /* Xᵀ sits in the right half */
    for (int j = 0; j < b; j++)
      R[j * b + i] = M[i * w + b + j];
  g_free (M);
}

static void
ref_neumann (double *R, const double *Q, int n, int b)
{
  double *P = g_new (double, (size_t) 2 * b * b), *T = P + b * b;
  memset (R, 0, sizeof (double) * b * b);
  for (int i = 0; i < b; i++)
    R[i * b + i] = 1;
  int last = n >= 3 ? MAX (3, n - 1) : n - 1;   /* PEFT ≥ 0.18: coefficients 2 except 1 on the last power */
  memcpy (P, Q, sizeof (double) * b * b);
  for (int k = 1; k <= last; k++)
    {
      double c = (n >= 3 && k == last) ? 1 : 2;
      for (int i = 0; i < b * b; i++)
        R[i] += c * P[i];
      mat_mul (T, P, Q, b);
      memcpy (P, T, sizeof (double) * b * b);
    }
  g_free (P);
}

static void
ref_oft_block (double *R, const float *row, const OftSpec *s)
{
  int b = s->b, k = 0;
  double *Q = g_new0 (double, (size_t) b * b);
  for (int i = 0; i < b; i++)
    for (int j = i + 1; j < b; j++, k++)
      Q[i * b + j] = row[k], Q[j * b + i] = -(double) row[k];
  if (s->neumann)
    ref_neumann (R, Q, s->n_terms, b);
  else
    ref_cayley (R, Q, b);
  g_free (Q);
}

/* Σ G ⊙ T for T = M_{N−1}⋯M_0, M_f[m, j] = blockdiag(R_f)[idx_f[m], idx_f[j]], all in double */
static double
ref_boft_loss (const float *A, const float *G, const OftBoftSpec *s)
{
  const int d = s->d, b = s->b;
  double *T = g_new0 (double, (size_t) d * d), *M = g_new0 (double, (size_t) d * d), *tmp = g_new (double, (size_t) d * d);
  double *S = g_new (double, (size_t) 2 * b * b), *Rb = S + b * b;
  int *idx = g_new (int, d);
  for (int i = 0; i < d; i++)
    T[i * d + i] = 1;
  for (int f = 0; f < s->n_factors; f++)
    {
      double *Bd = tmp;
      memset (Bd, 0, sizeof (double) * d * d);
      for (int k = 0; k < s->n_blocks; k++)
        {
          const float *Ak = A + ((size_t) f * s->n_blocks + k) * b * b;
          for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++)
              S[i * b + j] = 0.5 * ((double) Ak[i * b + j] - Ak[j * b + i]);
          ref_cayley (Rb, S, b);
          for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++)
              Bd[(size_t) (k * b + i) * d + k * b + j] = Rb[i * b + j];
        }
      oft_boft_perm (idx, s, f);
      for (int m = 0; m < d; m++)
        for (int j = 0; j < d; j++)
          M[(size_t) m * d + j] = Bd[(size_t) idx[m] * d + idx[j]];
      mat_mul (tmp, M, T, d);
      memcpy (T, tmp, sizeof (double) * d * d);
    }
  double L = 0;
  for (int i = 0; i < d * d; i++)
    L += G[i] * T[i];
  g_free (idx);
  g_free (S);
  g_free (tmp);
  g_free (M);
  g_free (T);
  return L;
}

/* ---------------------------------------------------------------- shared measurements */

/* ‖Q‖₂ of the skew matrix of one packed row: power iteration on QᵀQ = −Q² */
static double
spectral_norm (const float *row, int b)
{
  int k = 0;
  double *Q = g_new0 (double, (size_t) b * b + 2 * b), *v = Q + b * b, *w = v + b;
  for (int i = 0; i < b; i++)
    for (int j = i + 1; j < b; j++, k++)
      Q[i * b + j] = row[k], Q[j * b + i] = -(double) row[k];
  for (int i = 0; i < b; i++)
    v[i] = 1.0 + 0.01 * i;
  double lambda = 0;
  for (int it = 0; it < 300; it++)
    {
      double nrm = 0;
      for (int i = 0; i < b; i++)    /* w = Q·v */
        {
          double acc = 0;
          for (int j = 0; j < b; j++)
            acc += Q[i * b + j] * v[j];
          w[i] = acc;
          nrm += acc * acc;
        }
      lambda = sqrt (nrm);           /* ‖Q·v‖ for unit v, → ‖Q‖₂ */
      for (int i = 0; i < b; i++)    /* v = Qᵀ·w / ‖·‖ */
        {
          double acc = 0;
          for (int j = 0; j < b; j++)
            acc += Q[j * b + i] * w[j];
          v[i] = acc;
        }
      double nv = 0;
      for (int i = 0; i < b; i++)
        nv += v[i] * v[i];
      nv = sqrt (nv);
      if (nv == 0)
        break;
      for (int i = 0; i < b; i++)
        v[i] /= nv;
    }
  g_free (Q);
  return lambda;
}

static double
max_orth_err (const float *R, int n_mats, int b)
{
  double worst = 0;
  for (int r = 0; r < n_mats; r++)
    for (int i = 0; i < b; i++)
      for (int j = 0; j < b; j++)
        {
          double acc = 0;
          for (int k = 0; k < b; k++)
            acc += (double) R[((size_t) r * b + k) * b + i] * R[((size_t) r * b + k) * b + j];
          worst = fmax (worst, fabs (acc - (i == j)));
        }
  return worst;
}

static double
max_identity_err (const float *R, int n_mats, int b)
{
  double worst = 0;
  for (int r = 0; r < n_mats; r++)
    for (int i = 0; i < b; i++)
      for (int j = 0; j < b; j++)
        worst = fmax (worst, fabs (R[((size_t) r * b + i) * b + j] - (i == j)));
  return worst;
}

/* merge then unmerge, relative to max|W| (W ∈ [−1, 1]) */
static double
roundtrip_err (const OftAdapterConfig *cfg, const OftTensor *param, const OftTensor *scale, int out, int d,
               GRand *rng, GError **error)
{
  float *W0 = g_new (float, (size_t) out * d), *W = g_new (float, (size_t) out * d);
  fill (W0, (int64_t) out * d, 1, rng);
  memcpy (W, W0, sizeof (float) * out * d);
  double err = INFINITY;
  if (oft_adapter_merge (W, out, d, cfg, param, scale, "selfcheck", error)
      && oft_adapter_unmerge (W, out, d, cfg, param, scale, "selfcheck", error))
    {
      err = 0;
      for (int i = 0; i < out * d; i++)
        err = fmax (err, fabs (W[i] - W0[i]));
    }
  g_free (W);
  g_free (W0);
  return err;
}

static double
energy_change (const float *W, const float *Wr, int out, int d, gboolean ref)
{
  double e0 = ref ? oft_hyperspherical_energy_ref (W, out, d) : oft_hyperspherical_energy (W, out, d);
  double e1 = ref ? oft_hyperspherical_energy_ref (Wr, out, d) : oft_hyperspherical_energy (Wr, out, d);
  return fabs (e1 - e0) / e0;
}

/* FD parameters checked per configuration: a random subset keeps the run short at large b */
#define FD_SAMPLES 48
/* Central differences in double with h = 2^-14 have truncation error ~h²/6·|L'''| ≲ 1e-8 relative here;
 * the analytic gradients are computed in double from fp32 inputs and rounded to fp32 (~1e-7 relative). */
#define FD_TOL 1e-5

static void
check_oft (Report *rep, const char *kind, int b, gboolean neumann, GRand *rng)
{
  const int n_blocks = 4, d = b * n_blocks, out = 24, ne = b * (b - 1) / 2;
  OftSpec s = { .d = d, .b = b, .n_blocks = n_blocks, .neumann = neumann, .n_terms = 5 };
  const int64_t np = (int64_t) n_blocks * ne;
  const size_t nr = (size_t) n_blocks * b * b;
  /* entries ±0.05/√b·4 keep ‖Q‖ moderate (≈ 0.1–0.2), like a trained adapter */
  const double amp = 0.2 / sqrt ((double) b);
  float *p = g_new (float, np), *R = g_new (float, nr), *cache = g_new (float, nr);
  fill (p, np, amp, rng);
  oft_rotation_forward (R, cache, p, &s);
  char what[96];

  snprintf (what, sizeof what, "%s b=%d orthogonality", kind, b);
  double orth = max_orth_err (R, n_blocks, b);
  if (!neumann)
    /* one fp32 rounding of an exactly orthogonal matrix: b·2^-24·2 ≲ 8e-6 at b = 64 */
    check_le (rep, what, "max|RᵀR−I|", orth, 1e-5);
  else
    {
      /* 5 terms: R = R_exactᵀ + D with ‖D‖₂ ≤ q⁴ + 2q⁵/(1 − q), q = ‖Q‖₂ (the series' tail), and
       * |RᵀR − I| ≤ 2‖D‖ + ‖D‖². q by power iteration on QᵀQ (it converges from below; the bound keeps
       * a factor ~10 over the measured value, see the output). */
      double q = 0;
      for (int r = 0; r < n_blocks; r++)
        q = fmax (q, spectral_norm (p + (size_t) r * ne, b));
      double D = pow (q, 4) + 2 * pow (q, 5) / (1 - q);
      check_le (rep, what, "max|RᵀR−I|", orth, 2 * D + D * D + 1e-5);
    }

  snprintf (what, sizeof what, "%s b=%d identity at zero", kind, b);
  float *z = g_new0 (float, np), *Rz = g_new (float, nr);
  oft_rotation_forward (Rz, NULL, z, &s);
  check_le (rep, what, "max|R−I|", max_identity_err (Rz, n_blocks, b), 0);

  snprintf (what, sizeof what, "%s b=%d merge/unmerge", kind, b);
  OftAdapterConfig cfg = { .kind = OFT_ADAPTER_OFT, .oft_block_size = b, .neumann = neumann, .n_terms = 5 };
  OftTensor pt = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { n_blocks, ne }, .data = p };
  GError *error = NULL;
  double rt = roundtrip_err (&cfg, &pt, NULL, out, d, rng, &error);
  if (error)
    {
      fprintf (stderr, "oft selfcheck: %s\n", error->message);
      g_clear_error (&error);
    }
  /* two passes of b-term fp32 dot products on |W| ≤ 1 (Neumann: a double solve with a well-conditioned R) */
  check_le (rep, what, "max|W−unmerge(merge(W))|", rt, 1e-5);

  snprintf (what, sizeof what, "%s b=%d gradient vs FD", kind, b);
  float *G = g_new (float, nr), *dp = g_new0 (float, np);
  fill (G, nr, 1, rng);
  oft_rotation_backward (dp, G, cache, p, &s);
  double worst = 0, scale = 0, *Rd = g_new (double, (size_t) b * b);
  for (int t = 0; t < FD_SAMPLES; t++)
    {
      int64_t e = g_rand_int_range (rng, 0, (gint32) np);
      int r = (int) (e / ne);
      float orig = p[e];
      const float h = 1.0f / 16384;
      double L[2];
      float pv[2] = { orig + h, orig - h };   /* the steps actually taken: p ± h rounds near a power of 2 */
      for (int sg = 0; sg < 2; sg++)
        {
          p[e] = pv[sg];
          ref_oft_block (Rd, p + (size_t) r * ne, &s);
          L[sg] = 0;
          for (int i = 0; i < b * b; i++)
            L[sg] += G[(size_t) r * b * b + i] * Rd[i];
        }
      p[e] = orig;
      double fd = (L[0] - L[1]) / ((double) pv[0] - pv[1]);
      worst = fmax (worst, fabs (fd - dp[e]));
      scale = fmax (scale, fabs (fd));
    }
  check_le (rep, what, "max|∂−FD|/max|FD|", worst / scale, FD_TOL);

  if (!neumann)
    {
      /* every neuron rotated by the same orthogonal blockdiag(R): energies computed in double from fp32 rows */
      float *W = g_new (float, (size_t) out * d), *Wr = g_new (float, (size_t) out * d);
      fill (W, (int64_t) out * d, 1, rng);
      oft_rotate_weight_forward (Wr, W, R, out, &s);
      snprintf (what, sizeof what, "%s b=%d energy invariance", kind, b);
      check_le (rep, what, "|ΔHE|/HE (paper)", energy_change (W, Wr, out, d, FALSE), 1e-5);
      snprintf (what, sizeof what, "%s b=%d energy invariance", kind, b);
      check_le (rep, what, "|ΔHE|/HE (ref code)", energy_change (W, Wr, out, d, TRUE), 1e-5);
      g_free (Wr);
      g_free (W);
    }
  g_free (Rd);
  g_free (dp);
  g_free (G);
  g_free (Rz);
  g_free (z);
  g_free (cache);
  g_free (R);
  g_free (p);
}

static void
check_boft (Report *rep, int b, int n_blocks, int n_factors, GRand *rng)
{
  OftBoftSpec s = { .d = b * n_blocks, .b = b, .n_blocks = n_blocks, .n_factors = n_factors };
  const int d = s.d, out = 24;
  const int64_t nA = (int64_t) n_factors * n_blocks * b * b;
  float *A = g_new (float, nA), *T = g_new (float, (size_t) d * d), *cache = g_new (float, oft_boft_cache_floats (&s));
  fill (A, nA, 0.2, rng);
  oft_boft_transform_forward (T, cache, A, &s);
  char what[96];

  snprintf (what, sizeof what, "boft b=%d m=%d orthogonality", b, n_factors);
  /* m fp32 factor applications, each one rounding of b-term sums */
  check_le (rep, what, "max|TᵀT−I|", max_orth_err (T, 1, d), 1e-5 * n_factors);

  snprintf (what, sizeof what, "boft b=%d m=%d identity at zero", b, n_factors);
  float *z = g_new0 (float, nA), *Tz = g_new (float, (size_t) d * d);
  oft_boft_transform_forward (Tz, NULL, z, &s);
  check_le (rep, what, "max|T−I|", max_identity_err (Tz, 1, d), 0);

  snprintf (what, sizeof what, "boft b=%d m=%d merge/unmerge", b, n_factors);
  float *sv = g_new (float, out);
  for (int o = 0; o < out; o++)
    sv[o] = (float) g_rand_double_range (rng, 0.8, 1.2);
  OftAdapterConfig cfg = { .kind = OFT_ADAPTER_BOFT, .boft_block_size = b, .boft_n_factors = n_factors };
  OftTensor at = { .dtype = OFT_DTYPE_F32, .ndim = 4, .shape = { n_factors, n_blocks, b, b }, .data = A };
  OftTensor st = { .dtype = OFT_DTYPE_F32, .ndim = 2, .shape = { out, 1 }, .data = sv };
  GError *error = NULL;
  double rt = roundtrip_err (&cfg, &at, &st, out, d, rng, &error);
  if (error)
    {
      fprintf (stderr, "oft selfcheck: %s\n", error->message);
      g_clear_error (&error);
    }
  check_le (rep, what, "max|W−unmerge(merge(W))|", rt, 1e-5 * n_factors);

  snprintf (what, sizeof what, "boft b=%d m=%d gradient vs FD", b, n_factors);
  float *G = g_new (float, (size_t) d * d), *dA = g_new0 (float, nA);
  fill (G, (int64_t) d * d, 1, rng);
  oft_boft_transform_backward (dA, G, cache, A, &s);
  double worst = 0, scale = 0;
  for (int t = 0; t < FD_SAMPLES / 4; t++)   /* each sample rebuilds a dense d×d product in double */
    {
      int64_t e = g_rand_int_range (rng, 0, (gint32) nA);
      float orig = A[e];
      const float h = 1.0f / 16384;
      float ap = orig + h, am = orig - h;   /* steps actually taken (rounded) */
      A[e] = ap;
      double Lp = ref_boft_loss (A, G, &s);
      A[e] = am;
      double Lm = ref_boft_loss (A, G, &s);
      A[e] = orig;
      double fd = (Lp - Lm) / ((double) ap - am);
      worst = fmax (worst, fabs (fd - dA[e]));
      scale = fmax (scale, fabs (fd));
    }
  /* the chain through m fp32 factor products adds d-term sums: 10× the OFT tolerance */
  check_le (rep, what, "max|∂−FD|/max|FD|", worst / scale, 10 * FD_TOL);

  float *W = g_new (float, (size_t) out * d), *Wr = g_new (float, (size_t) out * d);
  fill (W, (int64_t) out * d, 1, rng);
  memcpy (Wr, W, sizeof (float) * out * d);
  OftAdapterConfig plain = cfg;   /* no scale: a pure rotation of every neuron */
  if (oft_adapter_merge (Wr, out, d, &plain, &at, NULL, "selfcheck", &error))
    {
      snprintf (what, sizeof what, "boft b=%d m=%d energy invariance", b, n_factors);
      check_le (rep, what, "|ΔHE|/HE (paper)", energy_change (W, Wr, out, d, FALSE), 1e-5);
      check_le (rep, what, "|ΔHE|/HE (ref code)", energy_change (W, Wr, out, d, TRUE), 1e-5);
    }
  else
    {
      fprintf (stderr, "oft selfcheck: %s\n", error->message);
      g_clear_error (&error);
      rep->failed++;
    }
  g_free (Wr);
  g_free (W);
  g_free (dA);
  g_free (G);
  g_free (sv);
  g_free (Tz);
  g_free (z);
  g_free (cache);
  g_free (T);
  g_free (A);
}

int
cmd_selfcheck (int argc, char **argv)
{
  gint64 seed = 1;
  gboolean quiet = FALSE;
  GOptionEntry entries[] = {
    { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "seed of the random data (default 1)", "N" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "print only failures and the summary", NULL },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("- check the OFT invariants on random data");
  g_option_context_set_summary (ctx,
      "Exact Cayley, Cayley–Neumann and BOFT at a few block sizes: orthogonality, identity at zero,\n"
      "merge/unmerge round trip, rotation gradients against central differences of a double-precision\n"
      "reference, and rotation invariance of the hyperspherical energy. Exit status 0 if all pass.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  /* parse a copy of argv: GOption removes what it consumed from the array it is given */
  char **args = g_new0 (char *, argc + 1);
  for (int i = 0; i < argc; i++)
    args[i] = argv[i];
  int n = argc;
  char **a = args;
  gboolean ok = g_option_context_parse (ctx, &n, &a, &error);
  g_option_context_free (ctx);
  if (!ok)
    {
      cli_fail ("selfcheck", error);
      g_error_free (error);
      g_free (args);
      return 2;
    }
  if (n > 1)
    {
      fprintf (stderr, "oft selfcheck: unexpected argument '%s'\n", a[1]);
      g_free (args);
      return 2;
    }
  g_free (args);
  Report rep = { .quiet = quiet };
  GRand *rng = g_rand_new_with_seed ((guint32) seed);
  gint64 t0 = g_get_monotonic_time ();
  const int cayley_b[] = { 8, 16, 32, 64 }, neumann_b[] = { 8, 16, 32 };
  for (size_t i = 0; i < G_N_ELEMENTS (cayley_b); i++)
    check_oft (&rep, "cayley", cayley_b[i], FALSE, rng);
  for (size_t i = 0; i < G_N_ELEMENTS (neumann_b); i++)
    check_oft (&rep, "neumann5", neumann_b[i], TRUE, rng);
  check_boft (&rep, 4, 8, 3, rng);
  check_boft (&rep, 8, 8, 2, rng);
  g_rand_free (rng);
  printf ("%s: %d passed, %d failed (seed %" G_GINT64_FORMAT ", %.2f s)\n", rep.failed ? "FAILED" : "OK",
          rep.passed, rep.failed, seed, (g_get_monotonic_time () - t0) / 1e6);
  return rep.failed ? 1 : 0;
}
