/* Merging one module's stored adapter into its base weight (and undoing it), with the shape checks
 * a file from elsewhere needs. */
#include "adapters-internal.h"
#include "oft/error.h"
#include <math.h>
#include <string.h>

static gboolean
shape_error (GError **error, const char *module, const char *tensor, const OftTensor *t,
             const char *expected)
{
  char *got = oft_shape_to_string (t->ndim, t->shape);
  g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "module '%s': %s has shape %s, expected %s",
               module ? module : "?", tensor, got, expected);
  g_free (got);
  return FALSE;
}

static float *
param_f32 (const OftTensor *t, const char *module, const char *tensor, GError **error)
{
  if (t->dtype != OFT_DTYPE_F32 && t->dtype != OFT_DTYPE_F16 && t->dtype != OFT_DTYPE_BF16)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_DTYPE, "module '%s': %s has dtype %s, expected F32, F16 or BF16",
                   module ? module : "?", tensor, oft_dtype_name (t->dtype));
      return NULL;
    }
  int64_t n = oft_tensor_numel (t);
  float *p = g_new (float, n > 0 ? n : 1);
  oft_convert_to_f32 (p, t->data, t->dtype, (size_t) n);
  for (int64_t i = 0; i < n; i++)
    if (!isfinite (p[i]))
      {
        g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC, "module '%s': %s holds a NaN or Inf (element %" G_GINT64_FORMAT ")",
                     module ? module : "?", tensor, i);
        g_free (p);
        return NULL;
      }
  return p;
}

/* Validates an OFT oft_R.weight against out/d and the config; fills spec. */
static gboolean
oft_spec_for (OftSpec *spec, int64_t d, const OftAdapterConfig *cfg, const OftTensor *param,
              const char *module, GError **error)
{
  const char *name = "oft_R.weight";
  if (param->ndim != 2)
    return shape_error (error, module, name, param, "2 dimensions [blocks, b(b-1)/2]");
  int b = oft_block_size_from_packed (param->shape[1]);
  if (b == 0)
    {
      char *exp = g_strdup_printf ("a last dimension b(b-1)/2 for some block size b (%" G_GINT64_FORMAT " is not)",
                                   param->shape[1]);
      gboolean r = shape_error (error, module, name, param, exp);
      g_free (exp);
      return r;
    }
  if (cfg->oft_block_size > 0 && cfg->oft_block_size != b)
    {
      char *exp = g_strdup_printf ("[*, %d] for oft_block_size %d", cfg->oft_block_size * (cfg->oft_block_size - 1) / 2,
                                   cfg->oft_block_size);
      gboolean r = shape_error (error, module, name, param, exp);
      g_free (exp);
      return r;
    }
  if (d % b != 0)
    {
      char *exp = g_strdup_printf ("a block size dividing the rotated dimension %" G_GINT64_FORMAT " (block size %d does not)", d, b);
      gboolean r = shape_error (error, module, name, param, exp);
      g_free (exp);
      return r;
    }
  int64_t rows = cfg->block_share ? 1 : d / b;
  if (param->shape[0] != rows)
    {
      char *exp = g_strdup_printf ("[%" G_GINT64_FORMAT ", %d] (rotated dimension %" G_GINT64_FORMAT ", block size %d%s)",
                                   rows, b * (b - 1) / 2, d, b, cfg->block_share ? ", block_share" : "");
      gboolean r = shape_error (error, module, name, param, exp);
      g_free (exp);
      return r;
    }
  *spec = (OftSpec) {
    .d = (int) d, .b = b, .n_blocks = (int) (d / b), .block_share = cfg->block_share,
    .neumann = cfg->neumann, .n_terms = cfg->n_terms, .coft = cfg->coft, .eps = cfg->eps,
  };
  return TRUE;
}

static gboolean
boft_spec_for (OftBoftSpec *spec, int64_t out, int64_t d, const OftAdapterConfig *cfg, const OftTensor *param,
               const OftTensor *scale, const char *module, GError **error)
{
  const char *name = "boft_R";
  if (param->ndim != 4 || param->shape[2] != param->shape[3] || param->shape[2] < 1 || param->shape[0] < 1)
    return shape_error (error, module, name, param, "4 dimensions [factors, blocks, b, b]");
  int64_t N = param->shape[0], D = param->shape[1], b = param->shape[2];
  int want_b = cfg->boft_block_size > 0 ? cfg->boft_block_size : (int) b;
  int want_N = cfg->boft_n_factors > 0 ? cfg->boft_n_factors : (int) N;
  if (d % want_b != 0 || N != want_N || b != want_b || D != d / want_b
      || (N > 1 && (want_b % 2 != 0 || (D % ((int64_t) 1 << (N - 1 < 62 ? N - 1 : 62))) != 0)))
    {
      char *exp = g_strdup_printf ("[%d, %" G_GINT64_FORMAT ", %d, %d] (in = %" G_GINT64_FORMAT ", boft_block_size %d, "
                                   "%d butterfly factors; the block count must be divisible by 2^(factors-1), "
                                   "the block size even)",
                                   want_N, d / want_b, want_b, want_b, d, want_b, want_N);
      gboolean r = shape_error (error, module, name, param, exp);
      g_free (exp);
      return r;
    }
  if (scale)
    {
      bool ok = scale->ndim == 2 && ((scale->shape[0] == out && scale->shape[1] == 1)
                                     || (scale->shape[0] == 1 && scale->shape[1] == out));
      if (!ok)
        {
          char *exp = g_strdup_printf ("[%" G_GINT64_FORMAT ", 1] (Linear) or [1, %" G_GINT64_FORMAT "] (Conv2d)", out, out);
          gboolean r = shape_error (error, module, "boft_s", scale, exp);
          g_free (exp);
          return r;
        }
    }
  *spec = (OftBoftSpec) { .d = (int) d, .b = (int) b, .n_blocks = (int) D, .n_factors = (int) N };
  return TRUE;
}

static gboolean
check_sizes (int64_t out, int64_t d, const char *module, GError **error)
{
  if (out <= 0 || d <= 0 || d > G_MAXINT || out > G_MAXINT64 / d)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "module '%s': base weight [%" G_GINT64_FORMAT ", %"
                   G_GINT64_FORMAT "] cannot carry an adapter", module ? module : "?", out, d);
      return FALSE;
    }
  return TRUE;
}

static gboolean
boft_apply (float *W, int64_t out, int64_t d, const OftAdapterConfig *cfg, const OftTensor *param,
            const OftTensor *scale, const char *module, bool undo, GError **error)
{
  OftBoftSpec s;
  if (!boft_spec_for (&s, out, d, cfg, param, scale, module, error))
    return FALSE;
  float *A = param_f32 (param, module, "boft_R", error);
  if (!A)
    return FALSE;
  float *sv = NULL;
  if (scale && !(sv = param_f32 (scale, module, "boft_s", error)))
    {
      g_free (A);
      return FALSE;
    }
  if (sv && undo)
    for (int64_t o = 0; o < out; o++)
      if (sv[o] == 0)
        {
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC,
                       "module '%s': boft_s[%" G_GINT64_FORMAT "] is 0: the merge cannot be undone", module, o);
          g_free (sv);
          g_free (A);
          return FALSE;
        }
  /* rotations only: T is applied factor by factor, never formed (d×d would not fit for big convs) */
  const size_t per_f = (size_t) s.n_blocks * s.b * s.b;
  float *R = g_new (float, per_f * s.n_factors);
  oft_boft_rotations (R, NULL, A, &s);
  int *idx = g_new (int, d);
  float *tmp = g_new (float, d);
  if (!undo)
    {
      /* W' = W·Tᵀ = W·M_0ᵀ·M_1ᵀ⋯M_{N−1}ᵀ, then rows ⊙ s */
      for (int f = 0; f < s.n_factors; f++)
        {
          oft_boft_perm (idx, &s, f);
          oft_boft_apply_factor (W, out, R + f * per_f, idx, true, &s, tmp);
        }
      if (sv)
        oft_scale_rows_forward (W, W, sv, out, d);
    }
  else
    {
      if (sv)
        for (int64_t o = 0; o < out; o++)
          for (int64_t i = 0; i < d; i++)
            W[o * d + i] /= sv[o];
      /* (Tᵀ)⁻¹ = M_{N−1}⋯M_0 for orthogonal factors */
      for (int f = s.n_factors - 1; f >= 0; f--)
        {
          oft_boft_perm (idx, &s, f);
          oft_boft_apply_factor (W, out, R + f * per_f, idx, false, &s, tmp);
        }
    }
  g_free (tmp);
  g_free (idx);
  g_free (R);
  g_free (sv);
  g_free (A);
  return TRUE;
}

float *
oft_adapter_rotation (OftSpec *spec, int64_t d, const OftAdapterConfig *cfg, const OftTensor *param,
                      const char *module, GError **error)
{
  if (!oft_spec_for (spec, d, cfg, param, module, error))
    return NULL;
  float *p = param_f32 (param, module, "oft_R.weight", error);
  if (!p)
    return NULL;
  if (spec->coft)
    oft_coft_project (p, spec); /* PEFT projects in place before building R, in merge as in forward */
  float *R = g_new (float, (size_t) oft_spec_rows (spec) * spec->b * spec->b);
  oft_rotation_forward (R, NULL, p, spec);
  g_free (p);
  return R;
}

/* The per-output scale (boft_s, or OFT's magnitude oft_s): [out, 1] or [1, out], finite, and non-zero
 * when a merge is undone. */
static float *
scale_f32 (const OftTensor *scale, int64_t out, const char *name, bool undo, const char *module, GError **error)
{
  if (scale->ndim != 2 || !((scale->shape[0] == out && scale->shape[1] == 1)
                            || (scale->shape[0] == 1 && scale->shape[1] == out)))
    {
      char *exp = g_strdup_printf ("[%" G_GINT64_FORMAT ", 1] (Linear) or [1, %" G_GINT64_FORMAT "] (Conv2d)", out, out);
      shape_error (error, module, name, scale, exp);
      g_free (exp);
      return NULL;
    }
  float *sv = param_f32 (scale, module, name, error);
  for (int64_t o = 0; sv && undo && o < out; o++)
    if (sv[o] == 0)
      {
        g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NUMERIC,
                     "module '%s': %s[%" G_GINT64_FORMAT "] is 0: the merge cannot be undone", module, name, o);
        g_clear_pointer (&sv, g_free);
      }
  return sv;
}

static gboolean
oft_apply (float *W, int64_t out, int64_t d, const OftAdapterConfig *cfg, const OftTensor *param,
           const OftTensor *scale, const char *module, bool undo, GError **error)
{
  OftSpec s;
  float *sv = NULL;
  if (scale && !(sv = scale_f32 (scale, out, "oft_s", undo, module, error)))
    return FALSE;
  float *R = oft_adapter_rotation (&s, d, cfg, param, module, error);
  if (!R)
    {
      g_free (sv);
      return FALSE;
    }
  float *tmp = g_new (float, (size_t) (out * d));
  gboolean ok = TRUE;
  if (!undo)
    {
      /* W' = diag(s)·W·blockdiag(R)ᵀ, as BOFT's scale */
      oft_rotate_weight_forward (tmp, W, R, out, &s);
      if (sv)
        oft_scale_rows_forward (tmp, tmp, sv, out, d);
    }
  else
    {
      if (sv)
        for (int64_t o = 0; o < out; o++)
          for (int64_t i = 0; i < d; i++)
            W[o * d + i] /= sv[o];
      if (!oft_rotate_weight_inverse (tmp, W, R, out, &s, error))
        {
          g_prefix_error (error, "module '%s': ", module ? module : "?");
          ok = FALSE;
        }
    }
  if (ok)
    memcpy (W, tmp, sizeof (float) * (size_t) (out * d));
  g_free (tmp);
  g_free (R);
  g_free (sv);
  return ok;
}

static gboolean
adapter_apply (float *W, int64_t out, int64_t d, const OftAdapterConfig *cfg, const OftTensor *param,
               const OftTensor *scale, const char *module, bool undo, GError **error)
{
  if (!check_sizes (out, d, module, error))
    return FALSE;
  if (cfg->kind == OFT_ADAPTER_BOFT)
    return boft_apply (W, out, d, cfg, param, scale, module, undo, error);
  return oft_apply (W, out, d, cfg, param, scale, module, undo, error);
}

gboolean
oft_adapter_merge (float *W, int64_t out, int64_t d, const OftAdapterConfig *cfg, const OftTensor *param,
                   const OftTensor *scale, const char *module, GError **error)
{
  return adapter_apply (W, out, d, cfg, param, scale, module, false, error);
}

gboolean
oft_adapter_boft_spec (OftBoftSpec *spec, int64_t out, int64_t d, const OftAdapterConfig *cfg, const OftTensor *param,
                       const OftTensor *scale, const char *module, GError **error)
{
  return check_sizes (out, d, module, error) && boft_spec_for (spec, out, d, cfg, param, scale, module, error);
}

gboolean
oft_adapter_unmerge (float *W, int64_t out, int64_t d, const OftAdapterConfig *cfg, const OftTensor *param,
                     const OftTensor *scale, const char *module, GError **error)
{
  return adapter_apply (W, out, d, cfg, param, scale, module, true, error);
}
