/* PEFT adapter folders for OFT and BOFT: adapter_config.json (kept as a JsonNode so that keys we
 * do not know survive load → save) and adapter_model.safetensors (f32 tensors in memory).
 * One extension of ours: an OFT adapter with a fitted magnitude (`oft train --fit-magnitude`) says
 * "gimp_oft_magnitude": true in its config and holds <module>.oft_s [out, 1] beside every oft_R.weight
 * (rows of the merged weight scaled, as BOFT's boft_s). PEFT ignores both: its config loader drops unknown
 * keys with a warning, and load_state_dict(strict=False) drops the extra tensors, so in PEFT such an
 * adapter loads as the plain OFT rotation without the magnitude. We refuse oft_s without the flag and
 * the flag without an oft_s for every module. */
#include "oft/peft.h"
#include "oft/error.h"
#include "oft/safetensors.h"
#include <json-glib/json-glib.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_NAME "adapter_config.json"
#define WEIGHTS_NAME "adapter_model.safetensors"
#define KEY_PREFIX "base_model.model."
#define MAGNITUDE_KEY "gimp_oft_magnitude"
/* the PEFT release whose file format (new OFT, Neumann series of 0.18) we write */
#define PEFT_FORMAT_VERSION "0.20.0"

struct _OftPeftAdapter {
  JsonNode *config;      /* the whole adapter_config.json object */
  OftAdapterConfig cfg;
  int boft_block_num;    /* BOFT: from the config, 0 when boft_block_size is used */
  GPtrArray *modules;    /* OftAdapterModule *, in file order */
  GHashTable *by_name;   /* module path → OftAdapterModule * */
};

static void
module_free (gpointer p)
{
  OftAdapterModule *m = p;
  g_free (m->module);
  g_free (m->param.data);
  g_free (m->scale.data);
  g_free (m);
}

static OftPeftAdapter *
adapter_alloc (void)
{
  OftPeftAdapter *a = g_new0 (OftPeftAdapter, 1);
  a->modules = g_ptr_array_new_with_free_func (module_free);
  a->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  return a;
}

void
oft_peft_adapter_free (OftPeftAdapter *a)
{
  if (!a)
    return;
  if (a->config)
    json_node_unref (a->config);
  g_hash_table_destroy (a->by_name);
  g_ptr_array_free (a->modules, TRUE);
  g_free (a);
}

/* ---- config ---- */

static gboolean
cfg_error (GError **error, int code, const char *file, const char *key, const char *fmt, ...)
  G_GNUC_PRINTF (5, 6);

static gboolean
cfg_error (GError **error, int code, const char *file, const char *key, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OFT_IO_ERROR, code, "%s: \"%s\": %s", file, key, msg);
  g_free (msg);
  return FALSE;
}

static gboolean
is_int (JsonNode *n)
{
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_INT64;
}

/* An integer key; absent → def (or an error when required). */
static gboolean
get_int (JsonObject *o, const char *key, gboolean required, int def, int lo, int *out,
         const char *file, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n || JSON_NODE_HOLDS_NULL (n))
    {
      if (required)
        return cfg_error (error, OFT_ERROR_NOT_FOUND, file, key, "missing (PEFT needs it too)");
      *out = def;
      return TRUE;
    }
  if (!is_int (n))
    return cfg_error (error, OFT_ERROR_INVALID, file, key, "expected an integer");
  gint64 v = json_node_get_int (n);
  if (v < lo || v > G_MAXINT)
    return cfg_error (error, OFT_ERROR_INVALID, file, key, "%" G_GINT64_FORMAT " is out of range (>= %d)", v, lo);
  *out = (int) v;
  return TRUE;
}

static gboolean
get_bool (JsonObject *o, const char *key, gboolean def, bool *out, const char *file, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n || JSON_NODE_HOLDS_NULL (n))
    {
      *out = def;
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return cfg_error (error, OFT_ERROR_INVALID, file, key, "expected true or false");
  *out = json_node_get_boolean (n);
  return TRUE;
}

static gboolean
get_double (JsonObject *o, const char *key, double def, double *out, const char *file, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n || JSON_NODE_HOLDS_NULL (n))
    {
      *out = def;
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_VALUE (n) ||
      (json_node_get_value_type (n) != G_TYPE_DOUBLE && json_node_get_value_type (n) != G_TYPE_INT64))
    return cfg_error (error, OFT_ERROR_INVALID, file, key, "expected a number");
  *out = json_node_get_value_type (n) == G_TYPE_DOUBLE ? json_node_get_double (n) : (double) json_node_get_int (n);
  return TRUE;
}

/* Fills a->cfg from a->config, with PEFT's defaults for absent keys and PEFT's own refusals. */
static gboolean
parse_config (OftPeftAdapter *a, const char *file, GError **error)
{
  JsonObject *o = json_node_get_object (a->config);
  JsonNode *tn = json_object_get_member (o, "peft_type");
  if (!tn)
    return cfg_error (error, OFT_ERROR_NOT_FOUND, file, "peft_type", "missing");
  const char *type = JSON_NODE_HOLDS_VALUE (tn) && json_node_get_value_type (tn) == G_TYPE_STRING
                       ? json_node_get_string (tn) : NULL;
  OftAdapterConfig *c = &a->cfg;
  memset (c, 0, sizeof *c);
  if (g_strcmp0 (type, "OFT") == 0)
    {
      int r;
      c->kind = OFT_ADAPTER_OFT;
      if (!get_int (o, "oft_block_size", TRUE, 0, 0, &c->oft_block_size, file, error) ||
          !get_int (o, "r", FALSE, 0, 0, &r, file, error) ||
          !get_bool (o, "block_share", FALSE, &c->block_share, file, error) ||
          !get_bool (o, "use_cayley_neumann", TRUE, &c->neumann, file, error) ||
          !get_int (o, "num_cayley_neumann_terms", FALSE, 5, 0, &c->n_terms, file, error) ||
          !get_bool (o, "coft", FALSE, &c->coft, file, error) ||
          !get_double (o, "eps", 6e-5, &c->eps, file, error) ||
          !get_bool (o, MAGNITUDE_KEY, FALSE, &c->magnitude, file, error))
        return FALSE;
      if ((r == 0) == (c->oft_block_size == 0))
        return cfg_error (error, OFT_ERROR_INVALID, file, "oft_block_size",
                          "exactly one of \"r\" (%d) and \"oft_block_size\" (%d) must be non-zero",
                          r, c->oft_block_size);
      if (c->oft_block_size == 1)
        return cfg_error (error, OFT_ERROR_INVALID, file, "oft_block_size", "1 leaves no rotation (need >= 2)");
      return TRUE;
    }
  if (g_strcmp0 (type, "BOFT") == 0)
    {
      c->kind = OFT_ADAPTER_BOFT;
      /* PEFT's BOFTConfig defaults: boft_block_size 4, boft_block_num 0, boft_n_butterfly_factor 1 */
      if (!get_int (o, "boft_block_size", FALSE, 4, 0, &c->boft_block_size, file, error) ||
          !get_int (o, "boft_block_num", FALSE, 0, 0, &a->boft_block_num, file, error) ||
          !get_int (o, "boft_n_butterfly_factor", FALSE, 1, 1, &c->boft_n_factors, file, error))
        return FALSE;
      if ((c->boft_block_size == 0) == (a->boft_block_num == 0))
        return cfg_error (error, OFT_ERROR_INVALID, file, "boft_block_size",
                          "exactly one of \"boft_block_size\" (%d) and \"boft_block_num\" (%d) must be non-zero",
                          c->boft_block_size, a->boft_block_num);
      return TRUE;
    }
  if (!type)
    return cfg_error (error, OFT_ERROR_INVALID, file, "peft_type", "expected a string");
  return cfg_error (error, OFT_ERROR_INVALID, file, "peft_type",
                    "unsupported adapter type \"%s\" (only \"OFT\" and \"BOFT\" are supported)", type);
}

/* ---- module tensors ---- */

static int
block_size_from_packed (int64_t n_e)
{
  if (n_e < 1)
    return 0;
  int64_t b = (int64_t) ((1.0 + sqrt (1.0 + 8.0 * (double) n_e)) / 2.0 + 0.5);
  for (int64_t c = MAX (b - 1, 2); c <= b + 1; c++)
    if (c * (c - 1) / 2 == n_e)
      return c <= G_MAXINT ? (int) c : 0;
  return 0;
}

static gboolean
shape_error (GError **error, const char *file, const char *key, const OftTensor *t, const char *fmt, ...)
  G_GNUC_PRINTF (5, 6);

static gboolean
shape_error (GError **error, const char *file, const char *key, const OftTensor *t, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  char *s = oft_shape_to_string (t->ndim, t->shape);
  g_set_error (error, OFT_IO_ERROR, OFT_ERROR_SHAPE, "%s: tensor '%s' has shape %s: %s", file, key, s, msg);
  g_free (s);
  g_free (msg);
  return FALSE;
}

/* The checks PEFT's layers imply for one module's tensors, against the config. */
static gboolean
check_module (const OftPeftAdapter *a, const OftTensor *param, const OftTensor *scale,
              const char *file, const char *pkey, const char *skey, GError **error)
{
  const OftAdapterConfig *c = &a->cfg;
  if (c->kind == OFT_ADAPTER_OFT)
    {
      if (param->ndim != 2 || param->shape[0] < 1)
        return shape_error (error, file, pkey, param, "expected [r, b(b-1)/2]");
      int b = block_size_from_packed (param->shape[1]);
      if (b < 2)
        return shape_error (error, file, pkey, param, "%" G_GINT64_FORMAT " is not b(b-1)/2 for a block size b >= 2",
                            param->shape[1]);
      if (c->oft_block_size > 0 && b != c->oft_block_size)
        return shape_error (error, file, pkey, param, "block size %d, but oft_block_size is %d", b,
                            c->oft_block_size);
      if (c->block_share && param->shape[0] != 1)
        return shape_error (error, file, pkey, param, "block_share needs exactly one stored block");
      if (c->magnitude && !scale)
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: '%s' has no matching '%s' (the config "
                       "says \"" MAGNITUDE_KEY "\": true)", file, pkey, skey);
          return FALSE;
        }
      if (scale && (scale->ndim != 2 || (scale->shape[0] != 1 && scale->shape[1] != 1)))
        return shape_error (error, file, skey, scale, "expected [out, 1]");
      return TRUE;
    }
  if (param->ndim != 4 || param->shape[0] != c->boft_n_factors || param->shape[1] < 1 ||
      param->shape[2] != param->shape[3] || param->shape[2] < 1 ||
      (c->boft_block_size > 0 && param->shape[2] != c->boft_block_size) ||
      (a->boft_block_num > 0 && param->shape[1] != a->boft_block_num))
    {
      char *b = c->boft_block_size > 0 ? g_strdup_printf ("%d", c->boft_block_size) : g_strdup ("b");
      char *d = a->boft_block_num > 0 ? g_strdup_printf ("%d", a->boft_block_num) : g_strdup ("D");
      shape_error (error, file, pkey, param, "expected [%d, %s, %s, %s] (boft_n_butterfly_factor, blocks, "
                   "block size, block size)", c->boft_n_factors, d, b, b);
      g_free (b);
      g_free (d);
      return FALSE;
    }
  if (!scale)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: '%s' has no matching '%s'", file, pkey, skey);
      return FALSE;
    }
  if (scale->ndim != 2 || (scale->shape[0] != 1 && scale->shape[1] != 1))
    return shape_error (error, file, skey, scale, "expected [out, 1] (Linear) or [1, out] (Conv2d)");
  return TRUE;
}

static OftTensor
tensor_dup_f32 (const OftTensor *t)
{
  OftTensor c = *t;
  int64_t n = oft_tensor_numel (t);
  c.dtype = OFT_DTYPE_F32;
  c.data = g_new (float, n ? n : 1);
  /* a view may be misaligned (any writer's file): go through a byte copy when it is */
  size_t es = oft_dtype_size (t->dtype);
  if ((uintptr_t) t->data % es == 0)
    oft_convert_to_f32 (c.data, t->data, t->dtype, (size_t) n);
  else
    {
      void *tmp = g_memdup2 (t->data, (size_t) n * es);
      oft_convert_to_f32 (c.data, tmp, t->dtype, (size_t) n);
      g_free (tmp);
    }
  return c;
}

static void
add_module_unchecked (OftPeftAdapter *a, const char *module, const OftTensor *param, const OftTensor *scale)
{
  OftAdapterModule *m = g_new0 (OftAdapterModule, 1);
  m->module = g_strdup (module);
  m->param = tensor_dup_f32 (param);
  if (scale)
    m->scale = tensor_dup_f32 (scale);
  else
    m->scale = (OftTensor) { .dtype = OFT_DTYPE_F32, .ndim = 0 };
  g_ptr_array_add (a->modules, m);
  g_hash_table_insert (a->by_name, m->module, m);
}

static const char *
scale_suffix (const OftPeftAdapter *a)
{
  return a->cfg.kind == OFT_ADAPTER_OFT ? ".oft_s" : ".boft_s";
}

gboolean
oft_peft_adapter_add_module (OftPeftAdapter *a, const char *module, const OftTensor *param,
                             const OftTensor *scale, GError **error)
{
  const char *suffix = a->cfg.kind == OFT_ADAPTER_OFT ? ".oft_R.weight" : ".boft_R";
  char *pkey = g_strconcat (KEY_PREFIX, module, suffix, NULL);
  char *skey = g_strconcat (KEY_PREFIX, module, scale_suffix (a), NULL);
  gboolean ok = FALSE;
  if (scale && scale->ndim == 0)
    scale = NULL;
  if (g_hash_table_contains (a->by_name, module))
    g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, "adapter: module '%s' added twice", module);
  else if (a->cfg.kind == OFT_ADAPTER_OFT && scale && !a->cfg.magnitude)
    g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, "adapter: module '%s': OFT has no scale tensor (only "
                 "with a fitted magnitude, oft_peft_adapter_set_scale)", module);
  else if (check_module (a, param, scale, "adapter", pkey, skey, error))
    {
      add_module_unchecked (a, module, param, scale);
      ok = TRUE;
    }
  g_free (pkey);
  g_free (skey);
  return ok;
}

typedef struct {
  char *module;
  const OftSafetensorsEntry *param, *scale;
} Pending;

static gboolean
load_tensors (OftPeftAdapter *a, const char *file, GError **error)
{
  OftSafetensors *st = oft_safetensors_open (file, error);
  if (!st)
    return FALSE;
  gboolean ok = TRUE;
  GArray *pending = g_array_new (FALSE, TRUE, sizeof (Pending));
  GHashTable *index = g_hash_table_new (g_str_hash, g_str_equal); /* module → 1 + index in pending */
  gboolean oft = a->cfg.kind == OFT_ADAPTER_OFT;
  const size_t plen = strlen (KEY_PREFIX);

  for (size_t i = 0; i < oft_safetensors_count (st) && ok; i++)
    {
      const OftSafetensorsEntry *e = oft_safetensors_entry (st, i);
      const char *key = e->name;
      if (strstr (key, ".oft_r.") || g_str_has_suffix (key, ".oft_r"))
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID,
                       "%s: key '%s' is in the old OFT format of PEFT <= 0.15 (\"oft_r\"), which PEFT itself "
                       "no longer loads; re-train or convert the adapter", file, key);
          ok = FALSE;
          break;
        }
      const char *suffix = NULL;
      gboolean is_scale = FALSE;
      if (oft && g_str_has_suffix (key, ".oft_R.weight"))
        suffix = ".oft_R.weight";
      else if (!oft && g_str_has_suffix (key, ".boft_R"))
        suffix = ".boft_R";
      else if (!oft && g_str_has_suffix (key, ".boft_s"))
        suffix = ".boft_s", is_scale = TRUE;
      else if (oft && a->cfg.magnitude && g_str_has_suffix (key, ".oft_s"))
        suffix = ".oft_s", is_scale = TRUE;
      size_t klen = strlen (key), slen = suffix ? strlen (suffix) : 0;
      if (!suffix || !g_str_has_prefix (key, KEY_PREFIX) || klen <= plen + slen)
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID,
                       "%s: unexpected key '%s' for a %s adapter (expected %s<module>%s)%s", file, key,
                       oft ? "OFT" : "BOFT", KEY_PREFIX,
                       !oft ? ".boft_R or .boft_s" : a->cfg.magnitude ? ".oft_R.weight or .oft_s" : ".oft_R.weight",
                       oft && !a->cfg.magnitude && g_str_has_suffix (key, ".oft_s")
                         ? "; an oft_s magnitude needs \"" MAGNITUDE_KEY "\": true in the config" : "");
          ok = FALSE;
          break;
        }
      char *module = g_strndup (key + plen, klen - plen - slen);
      guint idx = GPOINTER_TO_UINT (g_hash_table_lookup (index, module));
      if (!idx)
        {
          Pending p = { .module = module };
          g_array_append_val (pending, p);
          idx = pending->len;
          g_hash_table_insert (index, module, GUINT_TO_POINTER (idx));
        }
      else
        g_free (module);
      Pending *p = &g_array_index (pending, Pending, idx - 1);
      if (is_scale)
        p->scale = e;
      else
        p->param = e;
    }

  for (guint i = 0; i < pending->len && ok; i++)
    {
      Pending *p = &g_array_index (pending, Pending, i);
      char *pkey = g_strconcat (KEY_PREFIX, p->module, oft ? ".oft_R.weight" : ".boft_R", NULL);
      char *skey = g_strconcat (KEY_PREFIX, p->module, scale_suffix (a), NULL);
      if (!p->param)
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: '%s' has no matching '%s'", file, skey, pkey);
          ok = FALSE;
        }
      else
        {
          OftTensor pt = oft_safetensors_view (p->param), stt;
          if (p->scale)
            stt = oft_safetensors_view (p->scale);
          ok = check_module (a, &pt, p->scale ? &stt : NULL, file, pkey, skey, error);
          if (ok)
            add_module_unchecked (a, p->module, &pt, p->scale ? &stt : NULL);
        }
      g_free (pkey);
      g_free (skey);
    }
  for (guint i = 0; i < pending->len; i++)
    g_free (g_array_index (pending, Pending, i).module);
  g_array_free (pending, TRUE);
  g_hash_table_destroy (index);
  oft_safetensors_close (st);
  return ok;
}

OftPeftAdapter *
oft_peft_adapter_load (const char *dir, GError **error)
{
  OftPeftAdapter *a = adapter_alloc ();
  char *cfg_path = g_build_filename (dir, CONFIG_NAME, NULL);
  char *st_path = g_build_filename (dir, WEIGHTS_NAME, NULL);
  char *text = NULL;
  gsize len = 0;
  GError *e = NULL;
  JsonParser *parser = NULL;
  gboolean ok = FALSE;

  if (!g_file_get_contents (cfg_path, &text, &len, &e))
    {
      g_set_error (error, OFT_IO_ERROR, e->code == G_FILE_ERROR_NOENT ? OFT_ERROR_NOT_FOUND : OFT_ERROR_FAILED,
                   "%s: cannot read the adapter config: %s", cfg_path, e->message);
      g_error_free (e);
      goto out;
    }
  parser = json_parser_new ();
  if (!g_utf8_validate (text, (gssize) len, NULL) || !json_parser_load_from_data (parser, text, (gssize) len, &e))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: not valid JSON: %s", cfg_path,
                   e ? e->message : "invalid UTF-8");
      g_clear_error (&e);
      goto out;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: expected a JSON object", cfg_path);
      goto out;
    }
  a->config = json_node_copy (root);
  if (!parse_config (a, cfg_path, error) || !load_tensors (a, st_path, error))
    goto out;
  ok = TRUE;

out:
  if (parser)
    g_object_unref (parser);
  g_free (text);
  g_free (cfg_path);
  g_free (st_path);
  if (!ok)
    {
      oft_peft_adapter_free (a);
      return NULL;
    }
  return a;
}

OftPeftAdapter *
oft_peft_adapter_new (const OftAdapterConfig *cfg, const char *const *target_modules)
{
  OftPeftAdapter *a = adapter_alloc ();
  a->cfg = *cfg;
  JsonBuilder *jb = json_builder_new ();
  json_builder_begin_object (jb);
#define KEY(k) json_builder_set_member_name (jb, k)
  /* the keys save_pretrained of PEFT 0.20 writes for OFTConfig/BOFTConfig (written sorted) */
  KEY ("base_model_name_or_path"); json_builder_add_null_value (jb);
  KEY ("bias"); json_builder_add_string_value (jb, "none");
  KEY ("exclude_modules"); json_builder_add_null_value (jb);
  KEY ("fan_in_fan_out"); json_builder_add_boolean_value (jb, FALSE);
  KEY ("inference_mode"); json_builder_add_boolean_value (jb, TRUE);
  KEY ("init_weights"); json_builder_add_boolean_value (jb, TRUE);
  KEY ("layers_pattern"); json_builder_add_null_value (jb);
  KEY ("layers_to_transform"); json_builder_add_null_value (jb);
  KEY ("modules_to_save"); json_builder_add_null_value (jb);
  KEY ("peft_version"); json_builder_add_string_value (jb, PEFT_FORMAT_VERSION);
  KEY ("revision"); json_builder_add_null_value (jb);
  KEY ("target_modules");
  if (target_modules)
    {
      json_builder_begin_array (jb);
      for (const char *const *t = target_modules; *t; t++)
        json_builder_add_string_value (jb, *t);
      json_builder_end_array (jb);
    }
  else
    json_builder_add_null_value (jb);
  KEY ("task_type"); json_builder_add_null_value (jb);
  if (cfg->kind == OFT_ADAPTER_OFT)
    {
      KEY ("peft_type"); json_builder_add_string_value (jb, "OFT");
      KEY ("block_share"); json_builder_add_boolean_value (jb, cfg->block_share);
      KEY ("coft"); json_builder_add_boolean_value (jb, cfg->coft);
      KEY ("eps"); json_builder_add_double_value (jb, cfg->eps);
      KEY ("module_dropout"); json_builder_add_double_value (jb, 0.0);
      KEY ("num_cayley_neumann_terms"); json_builder_add_int_value (jb, cfg->n_terms);
      KEY ("oft_block_size"); json_builder_add_int_value (jb, cfg->oft_block_size);
      KEY ("r"); json_builder_add_int_value (jb, 0);
      KEY ("use_cayley_neumann"); json_builder_add_boolean_value (jb, cfg->neumann);
      if (cfg->magnitude)
        {
          KEY (MAGNITUDE_KEY); json_builder_add_boolean_value (jb, TRUE);
        }
    }
  else
    {
      KEY ("peft_type"); json_builder_add_string_value (jb, "BOFT");
      KEY ("boft_block_num"); json_builder_add_int_value (jb, 0);
      KEY ("boft_block_size"); json_builder_add_int_value (jb, cfg->boft_block_size);
      KEY ("boft_dropout"); json_builder_add_double_value (jb, 0.0);
      KEY ("boft_n_butterfly_factor"); json_builder_add_int_value (jb, cfg->boft_n_factors);
    }
#undef KEY
  json_builder_end_object (jb);
  a->config = json_builder_get_root (jb);
  g_object_unref (jb);
  return a;
}

const OftAdapterConfig *
oft_peft_adapter_config (const OftPeftAdapter *a)
{
  return &a->cfg;
}

size_t
oft_peft_adapter_n_modules (const OftPeftAdapter *a)
{
  return a->modules->len;
}

const OftAdapterModule *
oft_peft_adapter_module (const OftPeftAdapter *a, size_t i)
{
  return i < a->modules->len ? g_ptr_array_index (a->modules, i) : NULL;
}

const OftAdapterModule *
oft_peft_adapter_find (const OftPeftAdapter *a, const char *module)
{
  return g_hash_table_lookup (a->by_name, module);
}

gboolean
oft_peft_adapter_set_scale (OftPeftAdapter *a, size_t i, const OftTensor *scale, GError **error)
{
  OftAdapterModule *m = i < a->modules->len ? g_ptr_array_index (a->modules, i) : NULL;
  if (!m)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, "adapter: no module %zu", i);
      return FALSE;
    }
  if (scale->ndim != 2 || (scale->shape[0] != 1 && scale->shape[1] != 1))
    {
      char *got = oft_shape_to_string (scale->ndim, scale->shape);
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_SHAPE, "adapter: module '%s': scale of shape %s, expected [out, 1]",
                   m->module, got);
      g_free (got);
      return FALSE;
    }
  if (a->cfg.kind == OFT_ADAPTER_OFT && !a->cfg.magnitude)
    {
      a->cfg.magnitude = true;
      json_object_set_boolean_member (json_node_get_object (a->config), MAGNITUDE_KEY, TRUE);
    }
  g_free (m->scale.data);
  m->scale = tensor_dup_f32 (scale);
  return TRUE;
}

/* ---- JSON text as Python's json.dumps(indent=2, sort_keys=True) writes it ---- */

/* repr(float): the shortest digits that read back exactly; fixed notation for 1e-4 ≤ |x| < 1e16. */
static void
append_py_float (GString *s, double v)
{
  if (isnan (v))
    {
      g_string_append (s, "NaN");
      return;
    }
  if (isinf (v))
    {
      g_string_append (s, v < 0 ? "-Infinity" : "Infinity");
      return;
    }
  if (signbit (v))
    g_string_append_c (s, '-');
  v = fabs (v);
  char buf[40];
  for (int p = 0; p < 17; p++)
    {
      snprintf (buf, sizeof buf, "%.*e", p, v);
      if (strtod (buf, NULL) == v)
        break;
    }
  /* buf = d[.ddd]e±XX → digits and decpt (value = 0.digits × 10^decpt) */
  char digits[24];
  int nd = 0;
  char *e = strchr (buf, 'e');
  for (char *c = buf; c < e; c++)
    if (*c != '.')
      digits[nd++] = *c;
  while (nd > 1 && digits[nd - 1] == '0')
    nd--;
  digits[nd] = '\0';
  int decpt = atoi (e + 1) + 1;
  if (v == 0)
    decpt = 1;
  if (decpt > -4 && decpt <= 16)
    {
      if (decpt <= 0)
        {
          g_string_append (s, "0.");
          for (int i = 0; i < -decpt; i++)
            g_string_append_c (s, '0');
          g_string_append (s, digits);
        }
      else if (decpt >= nd)
        {
          g_string_append (s, digits);
          for (int i = nd; i < decpt; i++)
            g_string_append_c (s, '0');
          g_string_append (s, ".0");
        }
      else
        {
          g_string_append_len (s, digits, decpt);
          g_string_append_c (s, '.');
          g_string_append (s, digits + decpt);
        }
    }
  else
    {
      g_string_append_c (s, digits[0]);
      if (nd > 1)
        {
          g_string_append_c (s, '.');
          g_string_append (s, digits + 1);
        }
      int x = decpt - 1;
      g_string_append_printf (s, "e%c%02d", x < 0 ? '-' : '+', abs (x));
    }
}

/* ensure_ascii: everything outside printable ASCII as \uXXXX (UTF-16 surrogate pairs above the BMP). */
static void
append_py_string (GString *s, const char *str)
{
  g_string_append_c (s, '"');
  for (const char *p = str; *p; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      switch (c)
        {
        case '"': g_string_append (s, "\\\""); break;
        case '\\': g_string_append (s, "\\\\"); break;
        case '\n': g_string_append (s, "\\n"); break;
        case '\r': g_string_append (s, "\\r"); break;
        case '\t': g_string_append (s, "\\t"); break;
        case '\b': g_string_append (s, "\\b"); break;
        case '\f': g_string_append (s, "\\f"); break;
        default:
          if (c >= 0x20 && c < 0x7f)
            g_string_append_c (s, (char) c);
          else if (c < 0x10000)
            g_string_append_printf (s, "\\u%04x", c);
          else
            {
              c -= 0x10000;
              g_string_append_printf (s, "\\u%04x\\u%04x", 0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
            }
        }
    }
  g_string_append_c (s, '"');
}

static int
cmp_str (const void *a, const void *b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static void
indent (GString *s, int level)
{
  g_string_append_c (s, '\n');
  for (int i = 0; i < level; i++)
    g_string_append (s, "  ");
}

static void
append_py_json (GString *s, JsonNode *n, int level)
{
  switch (JSON_NODE_TYPE (n))
    {
    case JSON_NODE_NULL:
      g_string_append (s, "null");
      break;
    case JSON_NODE_VALUE:
      switch (json_node_get_value_type (n))
        {
        case G_TYPE_BOOLEAN: g_string_append (s, json_node_get_boolean (n) ? "true" : "false"); break;
        case G_TYPE_INT64: g_string_append_printf (s, "%" G_GINT64_FORMAT, json_node_get_int (n)); break;
        case G_TYPE_DOUBLE: append_py_float (s, json_node_get_double (n)); break;
        case G_TYPE_STRING: append_py_string (s, json_node_get_string (n)); break;
        default: g_string_append (s, "null");
        }
      break;
    case JSON_NODE_ARRAY:
      {
        JsonArray *arr = json_node_get_array (n);
        guint len = json_array_get_length (arr);
        if (!len)
          {
            g_string_append (s, "[]");
            break;
          }
        g_string_append_c (s, '[');
        for (guint i = 0; i < len; i++)
          {
            if (i)
              g_string_append_c (s, ',');
            indent (s, level + 1);
            append_py_json (s, json_array_get_element (arr, i), level + 1);
          }
        indent (s, level);
        g_string_append_c (s, ']');
        break;
      }
    case JSON_NODE_OBJECT:
      {
        JsonObject *o = json_node_get_object (n);
        GList *members = json_object_get_members (o);
        guint len = g_list_length (members);
        if (!len)
          {
            g_string_append (s, "{}");
            g_list_free (members);
            break;
          }
        const char **keys = g_new (const char *, len);
        guint k = 0;
        for (GList *l = members; l; l = l->next)
          keys[k++] = l->data;
        g_list_free (members);
        qsort (keys, len, sizeof *keys, cmp_str); /* code-point order, like sort_keys=True */
        g_string_append_c (s, '{');
        for (guint i = 0; i < len; i++)
          {
            if (i)
              g_string_append_c (s, ',');
            indent (s, level + 1);
            append_py_string (s, keys[i]);
            g_string_append (s, ": ");
            append_py_json (s, json_object_get_member (o, keys[i]), level + 1);
          }
        g_free (keys);
        indent (s, level);
        g_string_append_c (s, '}');
        break;
      }
    }
}

char *
oft_peft_adapter_config_json (const OftPeftAdapter *a)
{
  GString *s = g_string_new (NULL);
  append_py_json (s, a->config, 0);
  return g_string_free (s, FALSE); /* no trailing newline, like PEFT */
}

gboolean
oft_peft_adapter_save (const OftPeftAdapter *a, const char *dir, GError **error)
{
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      int e = errno;
      g_set_error (error, OFT_IO_ERROR, e == ENOSPC ? OFT_ERROR_NO_SPACE : OFT_ERROR_FAILED,
                   "%s: cannot create the adapter folder: %s", dir, g_strerror (e));
      return FALSE;
    }
  gboolean oft = a->cfg.kind == OFT_ADAPTER_OFT;
  guint n = a->modules->len, nt = 0;
  char **names = g_new0 (char *, 2 * n + 1);
  OftTensor *tensors = g_new0 (OftTensor, 2 * n + 1);
  for (guint i = 0; i < n; i++)
    {
      const OftAdapterModule *m = g_ptr_array_index (a->modules, i);
      names[nt] = g_strconcat (KEY_PREFIX, m->module, oft ? ".oft_R.weight" : ".boft_R", NULL);
      tensors[nt++] = m->param;
      if (!oft || a->cfg.magnitude)
        {
          if (m->scale.ndim == 0)
            {
              g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, "%s: module '%s' has no %s tensor", dir, m->module,
                           scale_suffix (a) + 1);
              g_strfreev (names);
              g_free (tensors);
              return FALSE;
            }
          names[nt] = g_strconcat (KEY_PREFIX, m->module, scale_suffix (a), NULL);
          tensors[nt++] = m->scale;
        }
    }
  GHashTable *md = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (md, "format", "pt");
  char *st_path = g_build_filename (dir, WEIGHTS_NAME, NULL);
  char *cfg_path = g_build_filename (dir, CONFIG_NAME, NULL);
  char *json = oft_peft_adapter_config_json (a);
  gboolean ok = oft_safetensors_write (st_path, nt, (const char *const *) names, tensors, md, error) &&
                oft_file_write_atomic (cfg_path, json, strlen (json), error);
  g_free (json);
  g_free (cfg_path);
  g_free (st_path);
  g_hash_table_destroy (md);
  g_strfreev (names);
  g_free (tensors);
  return ok;
}
