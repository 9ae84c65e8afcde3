/* oft inspect: what is in a .safetensors or PyTorch .ckpt file or a PEFT adapter folder. */
#include "oft-cli.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
cmp_str (const void *a, const void *b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static int
inspect_safetensors (const char *path)
{
  GError *error = NULL;
  OftSafetensors *st = oft_weights_open (path, &error); /* .ckpt/.pt/.pth/.bin or a zip: the torch reader */
  if (!st)
    {
      int rc = cli_fail ("inspect", error);
      g_error_free (error);
      return rc;
    }
  size_t n = oft_safetensors_count (st), width = 4;
  for (size_t i = 0; i < n; i++)
    width = MAX (width, strlen (oft_safetensors_entry (st, i)->name));
  width = MIN (width, 90);
  int64_t params = 0;
  uint64_t bytes = 0;
  printf ("%s\n", path);
  printf ("  %-*s  %-5s  %-20s  %s\n", (int) width, "name", "dtype", "shape", "bytes");
  for (size_t i = 0; i < n; i++)
    {
      const OftSafetensorsEntry *e = oft_safetensors_entry (st, i);
      OftTensor t = oft_safetensors_view (e);
      char *shape = oft_shape_to_string (e->ndim, e->shape);
      printf ("  %-*s  %-5s  %-20s  %" G_GUINT64_FORMAT "\n", (int) width, e->name, oft_dtype_name (e->dtype), shape,
              e->end - e->begin);
      g_free (shape);
      params += oft_tensor_numel (&t);
      bytes += e->end - e->begin;
    }
  char *human = g_format_size (bytes);
  printf ("total: %zu tensors, %" G_GINT64_FORMAT " elements, %" G_GUINT64_FORMAT " bytes (%s)\n", n, params, bytes,
          human);
  g_free (human);
  GHashTable *md = oft_safetensors_metadata (st);
  if (md && g_hash_table_size (md))
    {
      guint nk;
      const char **keys = (const char **) g_hash_table_get_keys_as_array (md, &nk);
      qsort (keys, nk, sizeof *keys, cmp_str);
      printf ("metadata:\n");
      for (guint k = 0; k < nk; k++)
        printf ("  %s = %s\n", keys[k], (const char *) g_hash_table_lookup (md, keys[k]));
      g_free (keys);
    }
  else
    printf ("metadata: none\n");
  oft_safetensors_close (st);
  return 0;
}

static int
inspect_adapter (const char *dir)
{
  GError *error = NULL;
  OftPeftAdapter *a = oft_peft_adapter_load (dir, &error);
  if (!a)
    {
      int rc = cli_fail ("inspect", error);
      g_error_free (error);
      return rc;
    }
  const OftAdapterConfig *c = oft_peft_adapter_config (a);
  size_t n = oft_peft_adapter_n_modules (a), width = 6;
  int64_t total = 0;
  for (size_t i = 0; i < n; i++)
    {
      const OftAdapterModule *m = oft_peft_adapter_module (a, i);
      width = MAX (width, strlen (m->module));
      total += oft_tensor_numel (&m->param) + (m->scale.ndim ? oft_tensor_numel (&m->scale) : 0);
    }
  width = MIN (width, 90);
  printf ("%s: PEFT adapter\n", dir);
  if (c->kind == OFT_ADAPTER_OFT)
    {
      printf ("  peft_type: OFT\n");
      if (c->oft_block_size > 0)
        printf ("  block size: %d\n", c->oft_block_size);
      else
        printf ("  block size: from each tensor (config gives r)\n");
      if (c->neumann)
        printf ("  rotation: Cayley-Neumann series, %d terms\n", c->n_terms);
      else
        printf ("  rotation: exact Cayley\n");
      printf ("  block_share: %s\n", c->block_share ? "yes" : "no");
      if (c->coft)
        printf ("  COFT: yes, eps %g\n", c->eps);
      else
        printf ("  COFT: no\n");
      if (c->magnitude)
        printf ("  magnitude: per-output scale oft_s (gimp_oft_magnitude; PEFT ignores it)\n");
    }
  else
    {
      printf ("  peft_type: BOFT\n");
      if (c->boft_block_size > 0)
        printf ("  block size: %d\n", c->boft_block_size);
      else
        printf ("  block size: from each tensor (config gives boft_block_num)\n");
      printf ("  butterfly factors: %d\n", c->boft_n_factors);
      printf ("  rotation: exact Cayley, per-output scale boft_s\n");
    }
  printf ("  modules: %zu, parameters: %" G_GINT64_FORMAT "\n", n, total);
  printf ("  %-*s  %6s  %4s  %8s  %10s\n", (int) width, "module", "d", "b", "blocks", "parameters");
  for (size_t i = 0; i < n; i++)
    {
      const OftAdapterModule *m = oft_peft_adapter_module (a, i);
      const OftTensor *p = &m->param;
      int64_t np = oft_tensor_numel (p) + (m->scale.ndim ? oft_tensor_numel (&m->scale) : 0);
      if (c->kind == OFT_ADAPTER_OFT)
        {
          int64_t n_e = p->shape[1], b = 2;
          while (b * (b - 1) / 2 < n_e)
            b++;
          if (c->block_share)
            printf ("  %-*s  %6s  %4" G_GINT64_FORMAT "  %8s  %10" G_GINT64_FORMAT "\n", (int) width, m->module,
                    "k*b", b, "shared", np);
          else
            printf ("  %-*s  %6" G_GINT64_FORMAT "  %4" G_GINT64_FORMAT "  %8" G_GINT64_FORMAT "  %10" G_GINT64_FORMAT
                    "\n", (int) width, m->module, p->shape[0] * b, b, p->shape[0], np);
        }
      else
        {
          char *blocks = g_strdup_printf ("%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT, p->shape[0], p->shape[1]);
          printf ("  %-*s  %6" G_GINT64_FORMAT "  %4" G_GINT64_FORMAT "  %8s  %10" G_GINT64_FORMAT "\n", (int) width,
                  m->module, p->shape[1] * p->shape[2], p->shape[2], blocks, np);
          g_free (blocks);
        }
    }
  if (c->kind == OFT_ADAPTER_BOFT)
    printf ("  (blocks: butterfly factors x blocks per factor)\n");
  else if (c->block_share)
    printf ("  (block_share: one stored block used for every block; d is any multiple of b)\n");
  oft_peft_adapter_free (a);
  return 0;
}

int
cmd_inspect (int argc, char **argv)
{
  GOptionContext *ctx = g_option_context_new ("FILE_OR_DIR");
  g_option_context_set_summary (ctx, "List the tensors (name, dtype, shape, bytes), totals and metadata of a "
                                     ".safetensors or PyTorch .ckpt file,\nor the config and per-module block layout of a PEFT "
                                     "OFT/BOFT adapter folder.");
  g_set_prgname ("oft inspect");
  GError *error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      cli_fail ("inspect", error);
      g_error_free (error);
      g_option_context_free (ctx);
      return 2;
    }
  g_option_context_free (ctx);
  if (argc != 2)
    {
      fprintf (stderr, "oft inspect: expected one FILE_OR_DIR (see 'oft inspect --help')\n");
      return 2;
    }
  const char *path = argv[1];
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    return inspect_adapter (path);
  return inspect_safetensors (path);
}
