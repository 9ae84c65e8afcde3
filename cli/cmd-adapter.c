/* oft adapter: tools on PEFT adapter folders. `merge` bakes an OFT/BOFT adapter into base weights. */
#include "oft-cli.h"
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <gio/gio.h>

static void
adapter_usage (FILE *f)
{
  fprintf (f, "Usage: oft adapter SUBCOMMAND [OPTION...]\n\n"
              "Subcommands:\n"
              "  merge    merge a PEFT OFT/BOFT adapter into base weights:\n"
              "           oft adapter merge --base WEIGHTS.safetensors --adapter DIR --out OUT.safetensors\n\n"
              "Run 'oft adapter merge --help' for its options.\n");
}

static int
fail_msg (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static int
fail_msg (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fprintf (stderr, "oft adapter merge: %s\n", msg);
  g_free (msg);
  return 1;
}

/* Merges every module of `a` into a copy of its base weight; the other tensors are passed through. */
static int
merge (const char *base_path, const char *adapter_dir, const char *out_path)
{
  GError *error = NULL;
  OftPeftAdapter *a = oft_peft_adapter_load (adapter_dir, &error);
  if (!a)
    {
      int rc = cli_fail ("adapter merge", error);
      g_error_free (error);
      return rc;
    }
  OftSafetensors *st = oft_safetensors_open (base_path, &error);
  if (!st)
    {
      int rc = cli_fail ("adapter merge", error);
      g_error_free (error);
      oft_peft_adapter_free (a);
      return rc;
    }
  const OftAdapterConfig *cfg = oft_peft_adapter_config (a);
  size_t n = oft_safetensors_count (st), n_mod = oft_peft_adapter_n_modules (a);
  const char **names = g_new (const char *, n ? n : 1);
  OftTensor *tensors = g_new (OftTensor, n ? n : 1);
  GPtrArray *owned = g_ptr_array_new_with_free_func (g_free);
  GHashTable *slot = g_hash_table_new (g_str_hash, g_str_equal); /* tensor name → 1 + index */
  for (size_t i = 0; i < n; i++)
    {
      const OftSafetensorsEntry *e = oft_safetensors_entry (st, i);
      names[i] = e->name;
      tensors[i] = oft_safetensors_view (e);
      g_hash_table_insert (slot, (gpointer) e->name, GSIZE_TO_POINTER (i + 1));
    }

  int rc = 0;
  for (size_t k = 0; k < n_mod && rc == 0; k++)
    {
      const OftAdapterModule *m = oft_peft_adapter_module (a, k);
      char *key = g_strconcat (m->module, ".weight", NULL);
      size_t i = GPOINTER_TO_SIZE (g_hash_table_lookup (slot, key));
      if (!i)
        {
          rc = fail_msg ("%s: no tensor '%s' for module '%s' of the adapter %s", base_path, key, m->module,
                         adapter_dir);
          g_free (key);
          break;
        }
      OftTensor *t = &tensors[i - 1];
      char *shape = oft_shape_to_string (t->ndim, t->shape);
      if (t->ndim != 2 && t->ndim != 4)
        rc = fail_msg ("%s: tensor '%s' has shape %s; expected a Linear [out, in] or Conv2d [out, C, kh, kw] "
                       "weight", base_path, key, shape);
      else if (t->dtype != OFT_DTYPE_F32 && t->dtype != OFT_DTYPE_F16 && t->dtype != OFT_DTYPE_BF16)
        rc = fail_msg ("%s: tensor '%s' has dtype %s; expected F32, F16 or BF16", base_path, key,
                       oft_dtype_name (t->dtype));
      else
        {
          int64_t out = t->shape[0], d = 1;
          for (int j = 1; j < t->ndim; j++)
            d *= t->shape[j];
          float *W = oft_safetensors_dup_f32 (st, key, NULL, &error);
          if (W && oft_adapter_merge (W, out, d, cfg, &m->param, m->scale.ndim ? &m->scale : NULL, m->module,
                                      &error))
            {
              void *merged = g_malloc (oft_tensor_nbytes (t) + 1);
              oft_convert_from_f32 (merged, t->dtype, W, (size_t) (out * d));
              t->data = merged;
              g_ptr_array_add (owned, merged);
            }
          else
            {
              rc = fail_msg ("%s: cannot merge the adapter %s into '%s' %s (rotated dimension %" G_GINT64_FORMAT
                             "): %s", base_path, adapter_dir, key, shape, d, error->message);
              g_clear_error (&error);
            }
          g_free (W);
        }
      g_free (shape);
      g_free (key);
    }

  if (rc == 0 && !oft_safetensors_write (out_path, n, names, tensors, oft_safetensors_metadata (st), &error))
    {
      rc = cli_fail ("adapter merge", error);
      g_clear_error (&error);
    }
  if (rc == 0)
    printf ("merged %zu module%s of %s into %s: %zu tensors written to %s\n", n_mod, n_mod == 1 ? "" : "s",
            adapter_dir, base_path, n, out_path);
  g_hash_table_destroy (slot);
  g_ptr_array_free (owned, TRUE);
  g_free (names);
  g_free (tensors);
  oft_safetensors_close (st);
  oft_peft_adapter_free (a);
  return rc;
}

/* Copies the regular files of src into dst (created), recursively; unet_weights is skipped. */
static gboolean
copy_tree (const char *src, const char *dst, const char *skip, GError **error)
{
  if (g_mkdir_with_parents (dst, 0755) != 0)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_FAILED, "%s: cannot create: %s", dst, g_strerror (errno));
      return FALSE;
    }
  GDir *dir = g_dir_open (src, 0, error);
  if (!dir)
    return FALSE;
  gboolean ok = TRUE;
  const char *name;
  while (ok && (name = g_dir_read_name (dir)))
    {
      char *from = g_build_filename (src, name, NULL), *to = g_build_filename (dst, name, NULL);
      if (g_strcmp0 (from, skip) == 0)
        ;
      else if (g_file_test (from, G_FILE_TEST_IS_DIR))
        ok = copy_tree (from, to, skip, error);
      else if (g_file_test (from, G_FILE_TEST_IS_REGULAR))
        {
          GFile *f = g_file_new_for_path (from), *t = g_file_new_for_path (to);
          ok = g_file_copy (f, t, G_FILE_COPY_NONE, NULL, NULL, NULL, error);
          g_object_unref (f);
          g_object_unref (t);
        }
      g_free (from);
      g_free (to);
    }
  g_dir_close (dir);
  return ok;
}

/* A whole pipeline folder: everything copied, the UNet's weights merged; built beside `out` and
 * renamed into place at the end, so a failure leaves no half-written folder. */
static int
merge_folder (const char *base, const char *adapter, const char *out)
{
  char *index = g_build_filename (base, "model_index.json", NULL);
  char *unet = g_build_filename (base, "unet", "diffusion_pytorch_model.safetensors", NULL);
  char *tmp = g_strdup_printf ("%s.tmp-%d", out, (int) getpid ());
  char *tmp_unet = g_build_filename (tmp, "unet", "diffusion_pytorch_model.safetensors", NULL);
  GError *error = NULL;
  int rc = 1;
  if (!g_file_test (index, G_FILE_TEST_IS_REGULAR))
    rc = fail_msg ("%s: no model_index.json: --base must be a .safetensors file or a diffusers pipeline folder", base);
  else if (g_file_test (out, G_FILE_TEST_EXISTS))
    rc = fail_msg ("%s already exists; a merged pipeline folder is written to a new path", out);
  else if (!copy_tree (base, tmp, unet, &error))
    rc = cli_fail ("adapter merge", error);
  else if ((rc = merge (unet, adapter, tmp_unet)) == 0 && rename (tmp, out) != 0)
    rc = fail_msg ("%s: cannot rename into place: %s", out, g_strerror (errno));
  if (rc != 0 && g_file_test (tmp, G_FILE_TEST_EXISTS))
    {
      char *argv[] = { "rm", "-rf", tmp, NULL };
      g_spawn_sync (NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
    }
  g_clear_error (&error);
  g_free (index);
  g_free (unet);
  g_free (tmp);
  g_free (tmp_unet);
  return rc;
}

static int
cmd_merge (int argc, char **argv)
{
  char *base = NULL, *adapter = NULL, *out = NULL;
  const GOptionEntry entries[] = {
    { "base", 'b', 0, G_OPTION_ARG_FILENAME, &base, "base weights (.safetensors) holding <module>.weight, "
      "or a diffusers pipeline folder (its UNet is merged)", "WEIGHTS|DIR" },
    { "adapter", 'a', 0, G_OPTION_ARG_FILENAME, &adapter, "PEFT adapter folder (OFT or BOFT)", "DIR" },
    { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "merged weights to write (replaced atomically), or the new "
      "pipeline folder when --base is a folder", "OUT" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new (NULL);
  g_option_context_set_summary (ctx,
    "Merge a PEFT OFT/BOFT adapter into base weights: for every adapter module, <module>.weight\n"
    "(Linear [out, in], or Conv2d [out, C, kh, kw] flattened to [out, C*kh*kw]) becomes W*blockdiag(R)^T\n"
    "(BOFT: scaled rows of W*T^T), computed in f32 and stored in the weight's dtype. Biases and all\n"
    "other tensors and the metadata are copied unchanged. With a pipeline folder as --base, the\n"
    "folder is copied to --out with its unet/ weights merged.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_set_prgname ("oft adapter merge");
  GError *error = NULL;
  int rc = 0;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      cli_fail ("adapter merge", error);
      g_error_free (error);
      rc = 2;
    }
  else if (argc > 1)
    {
      fprintf (stderr, "oft adapter merge: unexpected argument '%s'\n", argv[1]);
      rc = 2;
    }
  else if (!base || !adapter || !out)
    {
      fprintf (stderr, "oft adapter merge: --base, --adapter and --out are all required (see --help)\n");
      rc = 2;
    }
  else if (g_file_test (base, G_FILE_TEST_IS_DIR))
    rc = merge_folder (base, adapter, out);
  else
    rc = merge (base, adapter, out);
  g_option_context_free (ctx);
  g_free (base);
  g_free (adapter);
  g_free (out);
  return rc;
}

int
cmd_adapter (int argc, char **argv)
{
  if (argc < 2)
    {
      adapter_usage (stderr);
      return 2;
    }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0 || strcmp (argv[1], "help") == 0)
    {
      adapter_usage (stdout);
      return 0;
    }
  if (strcmp (argv[1], "merge") == 0)
    return cmd_merge (argc - 1, argv + 1);
  fprintf (stderr, "oft adapter: unknown subcommand '%s'\n\n", argv[1]);
  adapter_usage (stderr);
  return 2;
}
