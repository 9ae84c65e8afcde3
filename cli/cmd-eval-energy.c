/* oft eval energy: the hyperspherical energy of the UNet's neurons per layer (the OFT paper's measure
 * of what finetuning preserves), before and after an adapter is merged. OFT rotates every neuron of a
 * layer by the same orthogonal matrix, so the energy stays (to rounding; the Cayley–Neumann series is
 * only nearly orthogonal); a BOFT magnitude scale or any non-orthogonal change moves it. */
#include "oft-cli.h"
#include <math.h>
#include <stdio.h>

int
cmd_eval_energy (int argc, char **argv)
{
  char *model = NULL, *adapter = NULL;
  gboolean all = FALSE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model, "Pipeline folder (its UNet is measured)", "PATH" },
    { "adapter", 'a', 0, G_OPTION_ARG_FILENAME, &adapter, "PEFT adapter: its modules, before and after merging", "DIR" },
    { "all", 0, 0, G_OPTION_ARG_NONE, &all, "Every transformer-block Linear (default: the adapter's modules)", NULL },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("- hyperspherical energy of the UNet's layers");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  int rc = 1;
  OftUnet *u = NULL;
  OftPeftAdapter *a = NULL;
  GPtrArray *paths = g_ptr_array_new_with_free_func (g_free);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if (!model || (!adapter && !all))
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--model and --adapter (or --all) are required");
      goto out;
    }
  char *unet_dir = g_build_filename (model, "unet", NULL);
  u = oft_unet_load (unet_dir, &error);
  g_free (unet_dir);
  if (!u || (adapter && !(a = oft_peft_adapter_load (adapter, &error))))
    goto out;
  if (a)
    for (size_t i = 0; i < oft_peft_adapter_n_modules (a); i++)
      g_ptr_array_add (paths, g_strdup (oft_peft_adapter_module (a, i)->module));
  else
    {
      GPtrArray *lins = oft_unet_list_linear_modules (u);
      for (guint i = 0; i < lins->len; i++)
        g_ptr_array_add (paths, g_strdup (((OftUnetLinear *) g_ptr_array_index (lins, i))->path));
      g_ptr_array_unref (lins);
    }
  double *before = g_new0 (double, paths->len), *before_ref = g_new0 (double, paths->len);
  for (guint i = 0; i < paths->len; i++)
    {
      int64_t o, d;
      const float *w = oft_unet_module_weight (u, g_ptr_array_index (paths, i), &o, &d);
      if (!w)
        {
          g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND, "module '%s' is not in the UNet",
                       (char *) g_ptr_array_index (paths, i));
          g_free (before);
          g_free (before_ref);
          goto out;
        }
      before[i] = oft_hyperspherical_energy (w, o, d);
      before_ref[i] = oft_hyperspherical_energy_ref (w, o, d);
    }
  if (a && !oft_unet_apply_adapter (u, a, TRUE, &error))
    {
      g_free (before);
      g_free (before_ref);
      goto out;
    }
  double sum_b = 0, sum_a = 0, worst = 0;
  printf ("{\"layers\": [");
  for (guint i = 0; i < paths->len; i++)
    {
      int64_t o, d;
      const float *w = oft_unet_module_weight (u, g_ptr_array_index (paths, i), &o, &d);
      double he = oft_hyperspherical_energy (w, o, d), he_ref = oft_hyperspherical_energy_ref (w, o, d);
      sum_b += before[i];
      sum_a += he;
      worst = fmax (worst, fabs (he - before[i]) / before[i]);
      printf ("%s\n  {\"module\": \"%s\", \"energy\": %.10g", i ? "," : "", (char *) g_ptr_array_index (paths, i), before[i]);
      if (a)
        printf (", \"energy_merged\": %.10g, \"energy_ref\": %.10g, \"energy_ref_merged\": %.10g", he, before_ref[i], he_ref);
      else
        printf (", \"energy_ref\": %.10g", before_ref[i]);
      printf ("}");
    }
  printf ("\n], \"total\": %.10g", sum_b);
  if (a)
    printf (", \"total_merged\": %.10g, \"max_relative_change\": %.3g", sum_a, worst);
  printf ("}\n");
  if (a)
    fprintf (stderr, "%u layers: hyperspherical energy %.6g before, %.6g after merging (largest relative change %.2g)\n",
             paths->len, sum_b, sum_a, worst);
  else
    fprintf (stderr, "%u layers: hyperspherical energy %.6g\n", paths->len, sum_b);
  g_free (before);
  g_free (before_ref);
  rc = 0;
out:
  if (rc)
    cli_fail ("eval energy", error);
  g_clear_error (&error);
  oft_unet_free (u);
  oft_peft_adapter_free (a);
  g_ptr_array_unref (paths);
  g_free (model);
  g_free (adapter);
  g_option_context_free (ctx);
  return rc;
}
