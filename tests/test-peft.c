/* PEFT adapter folders: every golden adapter loads with the config and shapes case.json / reference.json
 * state, load → save reproduces PEFT's own bytes, and malformed folders are refused with the file named. */
#include "test-common.h"
#include <json-glib/json-glib.h>
#include <glib/gstdio.h>
#include <string.h>

static const char *layer_cases[] = {
  "oft_linear", "oft_linear_coft", "oft_linear_neumann", "oft_linear_block_share",
  "oft_conv3x3", "oft_conv1x1", "boft_linear",
};


static void
assert_tensor_bits (const OftTensor *got, const OftSafetensors *st, const char *name)
{
  const OftSafetensorsEntry *e = oft_safetensors_find (st, name);
  g_assert_nonnull (e);
  g_assert_cmpint (got->dtype, ==, OFT_DTYPE_F32);
  g_assert_true (oft_tensor_shape_equals (got, e->ndim, e->shape));
  float *want = test_load (st, name, NULL);
  g_assert_true (memcmp (got->data, want, oft_tensor_nbytes (got)) == 0);
  g_free (want);
}

/* The adapters of section A: config values as case.json / adapter_config.json say, one module "layer"
 * whose tensors equal the case's oft_R (boft_R, boft_s) bit for bit. */
static void
test_load_golden_layers (void)
{
  for (size_t c = 0; c < G_N_ELEMENTS (layer_cases); c++)
    {
      const char *name = layer_cases[c];
      char *rel = g_strdup_printf ("oft_layers/%s/adapter", name);
      char *case_rel = g_strdup_printf ("oft_layers/%s/case.json", name);
      char *cfg_rel = g_strdup_printf ("oft_layers/%s/adapter/adapter_config.json", name);
      char *t_rel = g_strdup_printf ("oft_layers/%s/tensors.safetensors", name);
      OftPeftAdapter *a = test_load_adapter (rel);
      JsonNode *cj = test_load_json (case_rel), *aj = test_load_json (cfg_rel);
      JsonObject *co = json_node_get_object (cj), *ao = json_node_get_object (aj);
      OftSafetensors *st = test_open_golden (t_rel);
      const OftAdapterConfig *cfg = oft_peft_adapter_config (a);

      g_assert_cmpuint (oft_peft_adapter_n_modules (a), ==, 1);
      const OftAdapterModule *m = oft_peft_adapter_module (a, 0);
      g_assert_cmpstr (m->module, ==, "layer");
      g_assert_true (oft_peft_adapter_find (a, "layer") == m);
      g_assert_null (oft_peft_adapter_find (a, "other"));
      if (g_str_has_prefix (name, "boft"))
        {
          g_assert_cmpint (cfg->kind, ==, OFT_ADAPTER_BOFT);
          g_assert_cmpint (cfg->boft_block_size, ==, json_object_get_int_member (ao, "boft_block_size"));
          g_assert_cmpint (cfg->boft_n_factors, ==, json_object_get_int_member (ao, "boft_n_butterfly_factor"));
          assert_tensor_bits (&m->param, st, "boft_R");
          assert_tensor_bits (&m->scale, st, "boft_s");
        }
      else
        {
          g_assert_cmpint (cfg->kind, ==, OFT_ADAPTER_OFT);
          g_assert_cmpint (cfg->oft_block_size, ==, json_object_get_int_member (co, "oft_block_size"));
          g_assert_cmpint (cfg->neumann, ==, json_object_get_boolean_member (co, "use_cayley_neumann"));
          g_assert_cmpint (cfg->n_terms, ==, json_object_get_int_member (co, "num_cayley_neumann_terms"));
          g_assert_cmpint (cfg->coft, ==, json_object_get_boolean_member (ao, "coft"));
          g_assert_cmpint (cfg->block_share, ==, json_object_get_boolean_member (ao, "block_share"));
          g_assert_cmpfloat (cfg->eps, ==, json_object_get_double_member (ao, "eps"));
          if (json_object_has_member (co, "coft_eps"))
            g_assert_cmpfloat (cfg->eps, ==, json_object_get_double_member (co, "coft_eps"));
          JsonArray *shape = json_object_get_array_member (co, "oft_R_shape");
          g_assert_cmpint (m->param.ndim, ==, 2);
          g_assert_cmpint (m->param.shape[0], ==, json_array_get_int_element (shape, 0));
          g_assert_cmpint (m->param.shape[1], ==, json_array_get_int_element (shape, 1));
          g_assert_cmpint (m->scale.ndim, ==, 0);
          assert_tensor_bits (&m->param, st, "oft_R");
        }
      oft_safetensors_close (st);
      json_node_unref (cj);
      json_node_unref (aj);
      oft_peft_adapter_free (a);
      g_free (rel);
      g_free (case_rel);
      g_free (cfg_rel);
      g_free (t_rel);
    }
}

/* Section C: 128 modules, each named and shaped as reference.json lists them. */
static void
test_load_golden_unet (void)
{
  OftPeftAdapter *a = test_load_adapter ("unet_oft/adapter");
  JsonNode *ref = test_load_json ("unet_oft/reference.json");
  JsonObject *ro = json_node_get_object (ref);
  JsonArray *mods = json_object_get_array_member (ro, "modules");
  const OftAdapterConfig *cfg = oft_peft_adapter_config (a);
  g_assert_cmpint (cfg->kind, ==, OFT_ADAPTER_OFT);
  g_assert_cmpint (cfg->oft_block_size, ==, 8);
  g_assert_true (cfg->neumann);
  g_assert_cmpint (cfg->n_terms, ==, json_object_get_int_member (ro, "num_cayley_neumann_terms"));
  g_assert_false (cfg->coft);
  g_assert_cmpuint (oft_peft_adapter_n_modules (a), ==, json_object_get_int_member (ro, "n_adapter_tensors"));
  g_assert_cmpuint (json_array_get_length (mods), ==, oft_peft_adapter_n_modules (a));
  int64_t params = 0;
  for (guint i = 0; i < json_array_get_length (mods); i++)
    {
      JsonObject *mo = json_array_get_object_element (mods, i);
      const OftAdapterModule *m = oft_peft_adapter_find (a, json_object_get_string_member (mo, "module"));
      g_assert_nonnull (m);
      JsonArray *shape = json_object_get_array_member (mo, "oft_R_shape");
      g_assert_cmpint (m->param.shape[0], ==, json_array_get_int_element (shape, 0));
      g_assert_cmpint (m->param.shape[1], ==, json_array_get_int_element (shape, 1));
      g_assert_cmpint (m->param.shape[0] * 8, ==, json_object_get_int_member (mo, "in_features"));
      params += oft_tensor_numel (&m->param);
    }
  g_assert_cmpint (params, ==, json_object_get_int_member (ro, "n_adapter_params"));
  json_node_unref (ref);
  oft_peft_adapter_free (a);
}

static gboolean
files_equal (const char *a, const char *b)
{
  char *x, *y;
  gsize nx, ny;
  g_assert_true (g_file_get_contents (a, &x, &nx, NULL));
  g_assert_true (g_file_get_contents (b, &y, &ny, NULL));
  gboolean eq = nx == ny && memcmp (x, y, nx) == 0;
  if (!eq)
    g_test_message ("%s (%zu bytes) differs from %s (%zu bytes)", a, nx, b, ny);
  g_free (x);
  g_free (y);
  return eq;
}

static void
rm_adapter_dir (const char *dir)
{
  const char *files[] = { "adapter_config.json", "adapter_model.safetensors" };
  for (size_t i = 0; i < G_N_ELEMENTS (files); i++)
    {
      char *p = g_build_filename (dir, files[i], NULL);
      g_unlink (p);
      g_free (p);
    }
  g_rmdir (dir);
}

/* load → save gives PEFT's own files byte for byte (every config key, auto_mapping included, PEFT's
 * json.dumps layout and float spelling; the safetensors header as the library writes it), and loading
 * the saved folder again gives bit-identical tensors. */
static void
test_roundtrip (void)
{
  char *tmp = g_dir_make_tmp ("oft-peft-XXXXXX", NULL);
  for (size_t c = 0; c <= G_N_ELEMENTS (layer_cases); c++)
    {
      char *rel = c < G_N_ELEMENTS (layer_cases) ? g_strdup_printf ("oft_layers/%s/adapter", layer_cases[c])
                                                  : g_strdup ("unet_oft/adapter");
      OftPeftAdapter *a = test_load_adapter (rel);
      char *out = g_build_filename (tmp, "nested", "out", NULL); /* folders are created */
      GError *error = NULL;
      g_assert_true (oft_peft_adapter_save (a, out, &error));
      g_assert_no_error (error);
      const char *files[] = { "adapter_config.json", "adapter_model.safetensors" };
      for (size_t f = 0; f < 2; f++)
        {
          char *gp = g_build_filename (rel, files[f], NULL);
          char *want = test_golden_path (gp);
          char *got = g_build_filename (out, files[f], NULL);
          if (!files_equal (got, want))
            g_test_fail_printf ("%s: saved %s differs from PEFT's", rel, files[f]);
          g_free (gp);
          g_free (want);
          g_free (got);
        }
      OftPeftAdapter *b = oft_peft_adapter_load (out, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (oft_peft_adapter_n_modules (b), ==, oft_peft_adapter_n_modules (a));
      for (size_t i = 0; i < oft_peft_adapter_n_modules (a); i++)
        {
          const OftAdapterModule *x = oft_peft_adapter_module (a, i), *y = oft_peft_adapter_module (b, i);
          g_assert_cmpstr (x->module, ==, y->module);
          g_assert_true (oft_tensor_shape_equals (&y->param, x->param.ndim, x->param.shape));
          g_assert_true (memcmp (x->param.data, y->param.data, oft_tensor_nbytes (&x->param)) == 0);
          g_assert_true (oft_tensor_shape_equals (&y->scale, x->scale.ndim, x->scale.shape));
          g_assert_true (x->scale.ndim == 0 ||
                         memcmp (x->scale.data, y->scale.data, oft_tensor_nbytes (&x->scale)) == 0);
        }
      g_assert_true (memcmp (oft_peft_adapter_config (a), oft_peft_adapter_config (b), sizeof (OftAdapterConfig)) == 0);
      oft_peft_adapter_free (b);
      oft_peft_adapter_free (a);
      rm_adapter_dir (out);
      char *nested = g_build_filename (tmp, "nested", NULL);
      g_rmdir (nested);
      g_free (nested);
      g_free (out);
      g_free (rel);
    }
  g_rmdir (tmp);
  g_free (tmp);
}

/* Unknown keys, odd values and nesting survive a round trip, with their values (compared as JSON). */
static void
test_roundtrip_unknown_keys (void)
{
  char *tmp = g_dir_make_tmp ("oft-peft-XXXXXX", NULL);
  char *src = g_build_filename (tmp, "src", NULL);
  char *dst = g_build_filename (tmp, "dst", NULL);
  g_mkdir (src, 0755);
  const char *cfg_text =
    "{\"zzz_future\": {\"b\": [1, 2.5, null, \"x\\u00e9\\ud83d\\ude00\"], \"a\": {}},\n"
    " \"peft_type\": \"OFT\", \"oft_block_size\": 16, \"r\": 0, \"eps\": 1e-30, \"big\": 1e22,\n"
    " \"tiny\": 0.0001, \"neg\": -0.0, \"empty\": [], \"auto_mapping\": {\"k\": \"v\"}}";
  char *cfg_path = g_build_filename (src, "adapter_config.json", NULL);
  g_assert_true (g_file_set_contents (cfg_path, cfg_text, -1, NULL));
  OftSafetensors *st = test_open_golden ("oft_layers/oft_linear/adapter/adapter_model.safetensors");
  char *st_src = test_golden_path ("oft_layers/oft_linear/adapter/adapter_model.safetensors");
  char *st_dst = g_build_filename (src, "adapter_model.safetensors", NULL);
  char *bytes;
  gsize len;
  g_assert_true (g_file_get_contents (st_src, &bytes, &len, NULL));
  g_assert_true (g_file_set_contents (st_dst, bytes, (gssize) len, NULL));
  g_free (bytes);
  oft_safetensors_close (st);

  GError *error = NULL;
  OftPeftAdapter *a = oft_peft_adapter_load (src, &error);
  g_assert_no_error (error);
  const OftAdapterConfig *cfg = oft_peft_adapter_config (a);
  g_assert_true (cfg->neumann);            /* PEFT's defaults for absent keys */
  g_assert_cmpint (cfg->n_terms, ==, 5);
  g_assert_false (cfg->coft);
  g_assert_cmpfloat (cfg->eps, ==, 1e-30);
  g_assert_true (oft_peft_adapter_save (a, dst, &error));
  g_assert_no_error (error);

  char *out_cfg = g_build_filename (dst, "adapter_config.json", NULL);
  JsonParser *p1 = json_parser_new (), *p2 = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p1, cfg_text, -1, NULL));
  g_assert_true (json_parser_load_from_file (p2, out_cfg, &error));
  g_assert_no_error (error);
  g_assert_true (json_node_equal (json_parser_get_root (p1), json_parser_get_root (p2)));
  /* PEFT's layout: sorted keys, 2-space indent, Python's float repr, ASCII-only */
  char *text;
  g_assert_true (g_file_get_contents (out_cfg, &text, NULL, NULL));
  g_assert_true (g_str_has_prefix (text, "{\n  \"auto_mapping\": {\n    \"k\": \"v\"\n  },\n  \"big\": 1e+22,\n"));
  g_assert_nonnull (strstr (text, "\"eps\": 1e-30,"));
  g_assert_nonnull (strstr (text, "\"tiny\": 0.0001,"));
  g_assert_nonnull (strstr (text, "\"neg\": -0.0,"));
  g_assert_nonnull (strstr (text, "\"empty\": [],"));
  g_assert_nonnull (strstr (text, "\"zzz_future\": {\n    \"a\": {},\n    \"b\": [\n      1,\n      2.5,\n"
                                  "      null,\n      \"x\\u00e9\\ud83d\\ude00\"\n    ]\n  }\n}"));
  g_free (text);
  g_object_unref (p1);
  g_object_unref (p2);
  oft_peft_adapter_free (a);
  rm_adapter_dir (src);
  rm_adapter_dir (dst);
  g_rmdir (tmp);
  g_free (out_cfg);
  g_free (cfg_path);
  g_free (st_src);
  g_free (st_dst);
  g_free (src);
  g_free (dst);
  g_free (tmp);
}

/* A new adapter gets PEFT 0.20's key set (golden config minus auto_mapping, which PEFT writes only for
 * models without a task type) and, with the golden tensor added, the golden safetensors bytes. */
static void
test_new_adapter (void)
{
  const struct { const char *name; OftAdapterConfig cfg; } cases[] = {
    { "oft_linear", { .kind = OFT_ADAPTER_OFT, .oft_block_size = 16, .n_terms = 5, .eps = 6e-5 } },
    { "boft_linear", { .kind = OFT_ADAPTER_BOFT, .boft_block_size = 8, .boft_n_factors = 2 } },
  };
  char *tmp = g_dir_make_tmp ("oft-peft-XXXXXX", NULL);
  for (size_t c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      const char *targets[] = { "layer", NULL };
      OftPeftAdapter *a = oft_peft_adapter_new (&cases[c].cfg, targets);
      g_assert_cmpuint (oft_peft_adapter_n_modules (a), ==, 0);
      char *t_rel = g_strdup_printf ("oft_layers/%s/tensors.safetensors", cases[c].name);
      OftSafetensors *st = test_open_golden (t_rel);
      gboolean boft = cases[c].cfg.kind == OFT_ADAPTER_BOFT;
      OftTensor param = oft_safetensors_view (oft_safetensors_find (st, boft ? "boft_R" : "oft_R"));
      OftTensor scale = boft ? oft_safetensors_view (oft_safetensors_find (st, "boft_s")) : (OftTensor) { 0 };
      GError *error = NULL;
      g_assert_true (oft_peft_adapter_add_module (a, "layer", &param, boft ? &scale : NULL, &error));
      g_assert_no_error (error);
      /* twice is refused */
      g_assert_false (oft_peft_adapter_add_module (a, "layer", &param, boft ? &scale : NULL, &error));
      g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID);
      g_clear_error (&error);
      char *out = g_build_filename (tmp, cases[c].name, NULL);
      g_assert_true (oft_peft_adapter_save (a, out, &error));
      g_assert_no_error (error);

      char *cfg_rel = g_strdup_printf ("oft_layers/%s/adapter/adapter_config.json", cases[c].name);
      JsonNode *want = test_load_json (cfg_rel);
      json_object_remove_member (json_node_get_object (want), "auto_mapping");
      char *text = oft_peft_adapter_config_json (a);
      JsonParser *p = json_parser_new ();
      g_assert_true (json_parser_load_from_data (p, text, -1, NULL));
      g_assert_true (json_node_equal (want, json_parser_get_root (p)));
      char *st_rel = g_strdup_printf ("oft_layers/%s/adapter/adapter_model.safetensors", cases[c].name);
      char *st_want = test_golden_path (st_rel);
      char *st_got = g_build_filename (out, "adapter_model.safetensors", NULL);
      g_assert_true (files_equal (st_got, st_want));

      g_object_unref (p);
      json_node_unref (want);
      g_free (text);
      rm_adapter_dir (out);
      oft_safetensors_close (st);
      oft_peft_adapter_free (a);
      g_free (st_rel);
      g_free (st_want);
      g_free (st_got);
      g_free (cfg_rel);
      g_free (out);
      g_free (t_rel);
    }
  g_rmdir (tmp);
  g_free (tmp);
}

/* ---- malformed folders ---- */

typedef struct {
  const char *name;
  const char *config;        /* NULL: no config file */
  const char *keys[3];       /* tensors to write; NULL-terminated; NULL keys[0] with no_weights */
  int64_t shapes[3][4];      /* ndim from the count of non-zero leading entries */
  gboolean no_weights;
  int code;
  const char *says;
  gboolean names_weights;    /* the message names the safetensors file (else the config) */
} BadAdapter;

#define OFT_CFG "{\"peft_type\": \"OFT\", \"oft_block_size\": 4, \"r\": 0, \"use_cayley_neumann\": false}"
#define BOFT_CFG "{\"peft_type\": \"BOFT\", \"boft_block_size\": 4, \"boft_block_num\": 0, " \
                 "\"boft_n_butterfly_factor\": 2}"

static void
test_bad_adapters (void)
{
  const BadAdapter cases[] = {
    { "no-config", NULL, { "base_model.model.l.oft_R.weight" }, { { 2, 6 } }, FALSE,
      OFT_ERROR_NOT_FOUND, "adapter_config.json", FALSE },
    { "config-not-json", "{\"peft_type\": \"OFT\",", { "base_model.model.l.oft_R.weight" }, { { 2, 6 } }, FALSE,
      OFT_ERROR_CORRUPT, "JSON", FALSE },
    { "config-not-object", "[\"OFT\"]", { NULL }, { { 0 } }, FALSE, OFT_ERROR_CORRUPT, "object", FALSE },
    { "no-peft-type", "{\"oft_block_size\": 4}", { NULL }, { { 0 } }, FALSE, OFT_ERROR_NOT_FOUND, "peft_type", FALSE },
    { "unsupported-type", "{\"peft_type\": \"LORA\", \"r\": 8}", { NULL }, { { 0 } }, FALSE,
      OFT_ERROR_INVALID, "LORA", FALSE },
    { "no-oft-block-size", "{\"peft_type\": \"OFT\", \"r\": 4}", { "base_model.model.l.oft_R.weight" },
      { { 2, 6 } }, FALSE, OFT_ERROR_NOT_FOUND, "oft_block_size", FALSE },
    { "r-and-block-size", "{\"peft_type\": \"OFT\", \"r\": 4, \"oft_block_size\": 4}", { NULL }, { { 0 } }, FALSE,
      OFT_ERROR_INVALID, "exactly one", FALSE },
    { "bad-value-type", "{\"peft_type\": \"OFT\", \"oft_block_size\": 4, \"coft\": \"yes\"}", { NULL },
      { { 0 } }, FALSE, OFT_ERROR_INVALID, "coft", FALSE },
    { "no-weights", OFT_CFG, { NULL }, { { 0 } }, TRUE, OFT_ERROR_NOT_FOUND, "adapter_model.safetensors", TRUE },
    { "legacy-oft-r", OFT_CFG, { "base_model.model.l.oft_r" }, { { 2, 4, 4 } }, FALSE,
      OFT_ERROR_INVALID, "0.15", TRUE },
    { "legacy-oft-r-weight", OFT_CFG, { "base_model.model.l.oft_r.weight" }, { { 2, 4, 4 } }, FALSE,
      OFT_ERROR_INVALID, "0.15", TRUE },
    { "not-triangular", OFT_CFG, { "base_model.model.l.oft_R.weight" }, { { 2, 7 } }, FALSE,
      OFT_ERROR_SHAPE, "b(b-1)/2", TRUE },
    { "block-size-differs", OFT_CFG, { "base_model.model.l.oft_R.weight" }, { { 2, 10 } }, FALSE,
      OFT_ERROR_SHAPE, "oft_block_size is 4", TRUE },
    { "oft-3d", OFT_CFG, { "base_model.model.l.oft_R.weight" }, { { 2, 6, 1 } }, FALSE,
      OFT_ERROR_SHAPE, "l.oft_R.weight", TRUE },
    { "unknown-key", OFT_CFG, { "base_model.model.l.oft_R.weight", "base_model.model.l.lora_A.weight" },
      { { 2, 6 }, { 2, 2 } }, FALSE, OFT_ERROR_INVALID, "lora_A", TRUE },
    { "no-prefix", OFT_CFG, { "l.oft_R.weight" }, { { 2, 6 } }, FALSE, OFT_ERROR_INVALID, "l.oft_R.weight", TRUE },
    { "boft-r-without-s", BOFT_CFG, { "base_model.model.l.boft_R" }, { { 2, 4, 4, 4 } }, FALSE,
      OFT_ERROR_NOT_FOUND, "boft_s", TRUE },
    { "boft-s-without-r", BOFT_CFG, { "base_model.model.l.boft_s" }, { { 16, 1 } }, FALSE,
      OFT_ERROR_NOT_FOUND, "boft_R", TRUE },
    { "boft-wrong-b", BOFT_CFG, { "base_model.model.l.boft_R", "base_model.model.l.boft_s" },
      { { 2, 2, 8, 8 }, { 16, 1 } }, FALSE, OFT_ERROR_SHAPE, "[2, D, 4, 4]", TRUE },
    { "boft-wrong-factors", BOFT_CFG, { "base_model.model.l.boft_R", "base_model.model.l.boft_s" },
      { { 1, 4, 4, 4 }, { 16, 1 } }, FALSE, OFT_ERROR_SHAPE, "boft_R", TRUE },
    { "boft-bad-scale", BOFT_CFG, { "base_model.model.l.boft_R", "base_model.model.l.boft_s" },
      { { 2, 4, 4, 4 }, { 4, 4 } }, FALSE, OFT_ERROR_SHAPE, "boft_s", TRUE },
    { "boft-oft-key", BOFT_CFG, { "base_model.model.l.oft_R.weight" }, { { 2, 6 } }, FALSE,
      OFT_ERROR_INVALID, "BOFT", TRUE },
  };
  char *tmp = g_dir_make_tmp ("oft-peft-XXXXXX", NULL);
  float zeros[256] = { 0 };
  for (size_t c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      const BadAdapter *bc = &cases[c];
      char *dir = g_build_filename (tmp, bc->name, NULL);
      char *cfg = g_build_filename (dir, "adapter_config.json", NULL);
      char *wts = g_build_filename (dir, "adapter_model.safetensors", NULL);
      g_mkdir (dir, 0755);
      if (bc->config)
        g_assert_true (g_file_set_contents (cfg, bc->config, -1, NULL));
      if (!bc->no_weights)
        {
          OftTensor ts[3];
          size_t n = 0;
          for (; n < 3 && bc->keys[n]; n++)
            {
              ts[n] = (OftTensor) { .dtype = OFT_DTYPE_F32, .data = zeros };
              while (ts[n].ndim < 4 && bc->shapes[n][ts[n].ndim])
                {
                  ts[n].shape[ts[n].ndim] = bc->shapes[n][ts[n].ndim];
                  ts[n].ndim++;
                }
              g_assert_cmpint (oft_tensor_numel (&ts[n]), <=, 256);
            }
          GError *werr = NULL;
          g_assert_true (oft_safetensors_write (wts, n, bc->keys, ts, NULL, &werr));
          g_assert_no_error (werr);
        }
      GError *error = NULL;
      OftPeftAdapter *a = oft_peft_adapter_load (dir, &error);
      const char *file = bc->names_weights ? wts : cfg;
      if (a || !error || error->domain != OFT_IO_ERROR || error->code != bc->code ||
          !strstr (error->message, file) || !strstr (error->message, bc->says))
        g_test_fail_printf ("case %s: expected code %d naming %s with \"%s\", got %s (code %d)", bc->name,
                            bc->code, file, bc->says, error ? error->message : "success", error ? error->code : -1);
      else
        g_test_message ("%-20s %s", bc->name, error->message);
      g_clear_error (&error);
      oft_peft_adapter_free (a);
      g_unlink (cfg);
      g_unlink (wts);
      g_rmdir (dir);
      g_free (cfg);
      g_free (wts);
      g_free (dir);
    }
  g_rmdir (tmp);
  g_free (tmp);
}

/* r instead of oft_block_size: b comes from each tensor's n_e (config keeps 0). */
static void
test_block_size_from_tensor (void)
{
  char *tmp = g_dir_make_tmp ("oft-peft-XXXXXX", NULL);
  char *cfg = g_build_filename (tmp, "adapter_config.json", NULL);
  char *wts = g_build_filename (tmp, "adapter_model.safetensors", NULL);
  g_assert_true (g_file_set_contents (cfg, "{\"peft_type\": \"OFT\", \"r\": 4, \"oft_block_size\": 0}", -1, NULL));
  float zeros[4 * 120] = { 0 };
  OftTensor ts[2] = { { OFT_DTYPE_F16, 2, { 4, 120 }, zeros }, { OFT_DTYPE_F32, 2, { 4, 28 }, zeros } };
  const char *keys[] = { "base_model.model.a.oft_R.weight", "base_model.model.b.oft_R.weight" };
  GError *error = NULL;
  g_assert_true (oft_safetensors_write (wts, 2, keys, ts, NULL, &error));
  OftPeftAdapter *a = oft_peft_adapter_load (tmp, &error);
  g_assert_no_error (error);
  g_assert_cmpint (oft_peft_adapter_config (a)->oft_block_size, ==, 0);
  const OftAdapterModule *m = oft_peft_adapter_find (a, "a");
  g_assert_cmpint (m->param.dtype, ==, OFT_DTYPE_F32); /* converted on load */
  g_assert_cmpint (m->param.shape[1], ==, 120);
  g_assert_cmpint (oft_peft_adapter_find (a, "b")->param.shape[1], ==, 28);
  oft_peft_adapter_free (a);
  g_unlink (cfg);
  g_unlink (wts);
  g_rmdir (tmp);
  g_free (cfg);
  g_free (wts);
  g_free (tmp);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/peft/load/golden-layers", test_load_golden_layers);
  g_test_add_func ("/peft/load/golden-unet", test_load_golden_unet);
  g_test_add_func ("/peft/load/block-size-from-tensor", test_block_size_from_tensor);
  g_test_add_func ("/peft/load/bad-adapters", test_bad_adapters);
  g_test_add_func ("/peft/save/roundtrip-golden-bytes", test_roundtrip);
  g_test_add_func ("/peft/save/roundtrip-unknown-keys", test_roundtrip_unknown_keys);
  g_test_add_func ("/peft/save/new-adapter", test_new_adapter);
  return g_test_run ();
}
