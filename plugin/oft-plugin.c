/* gimp-oft's GIMP 2.10 entry point: registers the procedures under Filters ▸ OFT and dispatches on
 * the procedure name and run mode (as GIMP's plug-ins/common do); the work is in procedure-*.c. */
#include "oft-plugin.h"
#include <libgimp/gimpui.h>
#include <gegl.h>
#include <locale.h>
#include <string.h>
#include "oft/runtime.h"

static void query (void);
static void run (const gchar *name, gint nparams, const GimpParam *param, gint *nreturn_vals, GimpParam **return_vals);

const GimpPlugInInfo PLUG_IN_INFO = { NULL, NULL, query, run };

int
main (int argc, char *argv[])
{
  /* as `oft` runs: this CPU's BLAS kernels and OpenMP workers that sleep instead of spinning against
   * OpenBLAS's threads (it re-executes the plug-in once; GIMP's pipe descriptors stay open across it) */
  oft_runtime_tune_process (argv);
  return gimp_main (&PLUG_IN_INFO, argc, argv);
}

/* Uninstalled runs (tests) point OFT_LOCALEDIR at the build's po/ folder. */
static const char *
locale_dir (void)
{
  const char *d = g_getenv ("OFT_LOCALEDIR");
  return d && *d ? d : LOCALEDIR;
}

#define STD_ARGS \
  { GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1), RUN-WITH-LAST-VALS (2) }" }, \
  { GIMP_PDB_IMAGE, "image", "Input image" }, \
  { GIMP_PDB_DRAWABLE, "drawable", "Input drawable" }

static void
query (void)
{
  static const GimpParamDef generate_args[] = {
    STD_ARGS,
    { GIMP_PDB_STRING, "prompt", "What to draw" },
    { GIMP_PDB_STRING, "negative", "What to avoid (\"\" = nothing)" },
    { GIMP_PDB_STRING, "model", "Diffusers pipeline folder or SD 1.x checkpoint (\"\" = the preference)" },
    { GIMP_PDB_STRING, "adapters", "PEFT OFT/BOFT adapter folders, ';'-separated, applied in order (\"\" = none)" },
    { GIMP_PDB_INT32, "seed", "Random seed (-1 = random; the seed used is stored in the recipe)" },
    { GIMP_PDB_INT32, "steps", "Sampling steps (1-500)" },
    { GIMP_PDB_FLOAT, "guidance", "Classifier-free guidance scale (<= 1 turns it off)" },
    { GIMP_PDB_STRING, "scheduler", "ddim, euler, euler-a, dpmpp-2m or dpmpp-2m-karras" },
    { GIMP_PDB_INT32, "width", "Width in pixels (0 = image width; rounded down to the model's multiple)" },
    { GIMP_PDB_INT32, "height", "Height in pixels (0 = image height; rounded down to the model's multiple)" },
    { GIMP_PDB_STRING, "condition-type", "none, canny, landmarks or segmentation" },
    { GIMP_PDB_DRAWABLE, "condition-drawable", "Condition layer (-1 = none)" },
    { GIMP_PDB_FLOAT, "condition-scale", "Strength of the condition (0-2)" },
  };
  static const GimpParamDef generate_ret[] = {
    { GIMP_PDB_LAYER, "layer", "The generated layer" },
  };
  static const GimpParamDef train_args[] = {
    STD_ARGS,
    { GIMP_PDB_STRING, "images", "Folder of subject images (\"\" = the image's visible layers)" },
    { GIMP_PDB_STRING, "instance-prompt", "Instance prompt, e.g. \"a photo of sks dog\"" },
    { GIMP_PDB_STRING, "class-prompt", "Class prompt for prior preservation (\"\" = none)" },
    { GIMP_PDB_STRING, "model", "Diffusers pipeline folder (\"\" = the preference)" },
    { GIMP_PDB_STRING, "method", "oft, coft or boft" },
    { GIMP_PDB_INT32, "block-size", "OFT block size (0 = 4 blocks per module)" },
    { GIMP_PDB_FLOAT, "eps", "COFT radius" },
    { GIMP_PDB_INT32, "steps", "Optimizer steps" },
    { GIMP_PDB_FLOAT, "learning-rate", "Learning rate" },
    { GIMP_PDB_INT32, "resolution", "Training resolution in pixels (0 = the model's)" },
    { GIMP_PDB_INT32, "seed", "Random seed" },
    { GIMP_PDB_STRING, "output", "Adapter folder to write (\"\" = the preference's adapter folder / image name); "
      "an existing checkpoint there is resumed" },
  };
  static const GimpParamDef condition_args[] = {
    STD_ARGS,
    { GIMP_PDB_STRING, "type", "canny, landmarks or segmentation" },
    { GIMP_PDB_FLOAT, "low", "Canny lower threshold (0-255)" },
    { GIMP_PDB_FLOAT, "high", "Canny upper threshold (0-255)" },
  };
  static const GimpParamDef condition_ret[] = {
    { GIMP_PDB_LAYER, "layer", "The condition layer" },
  };
  /* no image: it sets up the other procedures, with or without an open image */
  static const GimpParamDef prefs_args[] = {
    { GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }" },
    { GIMP_PDB_STRING, "model-folder", "Default model: diffusers pipeline folder or SD 1.x checkpoint" },
    { GIMP_PDB_STRING, "adapter-folder", "Where adapters are trained to and looked up by name" },
    { GIMP_PDB_STRING, "device", "cpu, cuda or auto (the GPU when the CUDA module loads, else the CPU)" },
  };
  const char *author = "gimp-oft authors", *copyright = "GPL-3.0-or-later", *date = "2025";

  gimp_plugin_domain_register (GETTEXT_PACKAGE, locale_dir ());

  gimp_install_procedure (OFT_PROC_GENERATE, N_("Generate a layer from a prompt with Stable Diffusion and OFT adapters"),
                          "Runs text-to-image in the plug-in (oftcore, CPU) and adds the result as a new layer above "
                          "the active one, in one undo step, with the recipe as the \"" OFT_RECIPE_PARASITE
                          "\" parasite (JSON).", author, copyright, date, N_("_Generate..."), "RGB*",
                          GIMP_PLUGIN, G_N_ELEMENTS (generate_args), G_N_ELEMENTS (generate_ret), generate_args,
                          generate_ret);
  gimp_install_procedure (OFT_PROC_TRAIN, N_("Train an OFT adapter on subject images"),
                          "Starts `oft train` as a worker process and follows its progress. Checkpoints are written "
                          "atomically into OUTPUT/checkpoint; running again with the same output folder and settings "
                          "resumes.", author, copyright, date, N_("_Train Adapter..."), "RGB*, GRAY*",
                          GIMP_PLUGIN, G_N_ELEMENTS (train_args), 0, train_args, NULL);
  gimp_install_procedure (OFT_PROC_CONDITION, N_("Make a condition layer (Canny edges, face landmarks, segmentation map)"),
                          "Computes the condition from the drawable's pixels and adds it as a new layer above it.",
                          author, copyright, date, N_("_Condition Layer..."), "RGB*",
                          GIMP_PLUGIN, G_N_ELEMENTS (condition_args), G_N_ELEMENTS (condition_ret), condition_args,
                          condition_ret);
  gimp_install_procedure (OFT_PROC_PREFS, N_("Set the default model, adapter folder and device of the OFT filters"),
                          "Stores them in oft-preferences.json in the GIMP profile folder.",
                          author, copyright, date, N_("_Preferences..."), "",
                          GIMP_PLUGIN, G_N_ELEMENTS (prefs_args), 0, prefs_args, NULL);
  gimp_plugin_menu_register (OFT_PROC_GENERATE, "<Image>/Filters/OFT");
  gimp_plugin_menu_register (OFT_PROC_TRAIN, "<Image>/Filters/OFT");
  gimp_plugin_menu_register (OFT_PROC_CONDITION, "<Image>/Filters/OFT");
  gimp_plugin_menu_register (OFT_PROC_PREFS, "<Image>/Filters/OFT");
}

static void
copy_arg (char *dst, size_t size, const GimpParam *p)
{
  oft_strlcpy (dst, p->data.d_string ? p->data.d_string : "", size);
}

static gboolean
args_generate (OftGenerateVals *v, gint n, const GimpParam *p)
{
  if (n != 16)
    return FALSE;
  copy_arg (v->prompt, sizeof v->prompt, &p[3]);
  copy_arg (v->negative, sizeof v->negative, &p[4]);
  copy_arg (v->model, sizeof v->model, &p[5]);
  copy_arg (v->adapters, sizeof v->adapters, &p[6]);
  v->seed = p[7].data.d_int32;
  v->steps = p[8].data.d_int32;
  v->guidance = p[9].data.d_float;
  copy_arg (v->scheduler, sizeof v->scheduler, &p[10]);
  v->width = p[11].data.d_int32;
  v->height = p[12].data.d_int32;
  copy_arg (v->condition, sizeof v->condition, &p[13]);
  v->condition_drawable = p[14].data.d_drawable;
  v->condition_scale = p[15].data.d_float;
  return TRUE;
}

static gboolean
args_train (OftTrainVals *v, gint n, const GimpParam *p)
{
  if (n != 15)
    return FALSE;
  copy_arg (v->images, sizeof v->images, &p[3]);
  copy_arg (v->instance_prompt, sizeof v->instance_prompt, &p[4]);
  copy_arg (v->class_prompt, sizeof v->class_prompt, &p[5]);
  copy_arg (v->model, sizeof v->model, &p[6]);
  copy_arg (v->method, sizeof v->method, &p[7]);
  v->block_size = p[8].data.d_int32;
  v->eps = p[9].data.d_float;
  v->steps = p[10].data.d_int32;
  v->lr = p[11].data.d_float;
  v->resolution = p[12].data.d_int32;
  v->seed = p[13].data.d_int32;
  copy_arg (v->out, sizeof v->out, &p[14]);
  return TRUE;
}

static gboolean
args_condition (OftConditionVals *v, gint n, const GimpParam *p)
{
  if (n != 6)
    return FALSE;
  copy_arg (v->type, sizeof v->type, &p[3]);
  v->low = p[4].data.d_float;
  v->high = p[5].data.d_float;
  return TRUE;
}

static gboolean
args_prefs (OftPrefs *v, gint n, const GimpParam *p)
{
  if (n != 4)
    return FALSE;
  copy_arg (v->model_folder, sizeof v->model_folder, &p[1]);
  copy_arg (v->adapter_folder, sizeof v->adapter_folder, &p[2]);
  copy_arg (v->device, sizeof v->device, &p[3]);
  return TRUE;
}

static void
run (const gchar *name, gint nparams, const GimpParam *param, gint *nreturn_vals, GimpParam **return_vals)
{
  static GimpParam values[2];
  static char *message;
  GimpRunMode mode = param[0].data.d_int32;
  gboolean has_image = strcmp (name, OFT_PROC_PREFS) != 0 && nparams > 2;
  gint32 image = has_image ? param[1].data.d_image : -1;
  gint32 drawable = has_image ? param[2].data.d_drawable : -1;
  gint32 layer = -1;
  gboolean interactive = mode == GIMP_RUN_INTERACTIVE, ok = TRUE, has_layer = FALSE;
  GError *error = NULL;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, locale_dir ());
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);
  gegl_init (NULL, NULL);
  if (interactive)
    gimp_ui_init (OFT_PLUG_IN_BINARY, FALSE);
  /* after gtk_init, which sets every category: numbers go to the worker's command line and into JSON */
  setlocale (LC_NUMERIC, "C");

  values[0].type = GIMP_PDB_STATUS;
  values[0].data.d_status = GIMP_PDB_SUCCESS;
  *nreturn_vals = 1;
  *return_vals = values;
  g_clear_pointer (&message, g_free);

  if (strcmp (name, OFT_PROC_GENERATE) == 0)
    {
      OftGenerateVals v;
      oft_generate_vals_init (&v);
      if (mode != GIMP_RUN_NONINTERACTIVE)
        gimp_get_data (name, &v);
      if (mode == GIMP_RUN_NONINTERACTIVE && !args_generate (&v, nparams, param))
        ok = FALSE, values[0].data.d_status = GIMP_PDB_CALLING_ERROR;
      else if (interactive && !oft_dialog_generate (image, &v))
        ok = FALSE, values[0].data.d_status = GIMP_PDB_CANCEL;
      if (ok && (ok = oft_procedure_generate (image, drawable, &v, &layer, &error)))
        {
          has_layer = TRUE;
          gimp_set_data (name, &v, sizeof v);
        }
    }
  else if (strcmp (name, OFT_PROC_TRAIN) == 0)
    {
      OftTrainVals v;
      oft_train_vals_init (&v);
      if (mode != GIMP_RUN_NONINTERACTIVE)
        gimp_get_data (name, &v);
      if (mode == GIMP_RUN_NONINTERACTIVE && !args_train (&v, nparams, param))
        ok = FALSE, values[0].data.d_status = GIMP_PDB_CALLING_ERROR;
      else if (interactive && !oft_dialog_train (&v))
        ok = FALSE, values[0].data.d_status = GIMP_PDB_CANCEL;
      if (ok)
        {
          gimp_set_data (name, &v, sizeof v);  /* before the run: a resume after a kill starts from these */
          ok = oft_procedure_train (image, drawable, &v, interactive, &error);
        }
    }
  else if (strcmp (name, OFT_PROC_CONDITION) == 0)
    {
      OftConditionVals v;
      oft_condition_vals_init (&v);
      if (mode != GIMP_RUN_NONINTERACTIVE)
        gimp_get_data (name, &v);
      if (mode == GIMP_RUN_NONINTERACTIVE && !args_condition (&v, nparams, param))
        ok = FALSE, values[0].data.d_status = GIMP_PDB_CALLING_ERROR;
      else if (interactive && !oft_dialog_condition (&v))
        ok = FALSE, values[0].data.d_status = GIMP_PDB_CANCEL;
      if (ok && (ok = oft_procedure_condition (image, drawable, &v, &layer, &error)))
        {
          has_layer = TRUE;
          gimp_set_data (name, &v, sizeof v);
        }
    }
  else if (strcmp (name, OFT_PROC_PREFS) == 0)
    {
      OftPrefs p;
      oft_prefs_load (&p, NULL);
      if (mode == GIMP_RUN_NONINTERACTIVE && !args_prefs (&p, nparams, param))
        ok = FALSE, values[0].data.d_status = GIMP_PDB_CALLING_ERROR;
      else if (interactive && !oft_dialog_prefs (&p))
        ok = FALSE, values[0].data.d_status = GIMP_PDB_CANCEL;
      if (ok)
        ok = oft_prefs_save (&p, &error);
    }
  else
    ok = FALSE, values[0].data.d_status = GIMP_PDB_CALLING_ERROR;

  if (error)
    {
      values[0].data.d_status = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) ? GIMP_PDB_CANCEL
                                                                                         : GIMP_PDB_EXECUTION_ERROR;
      message = g_strdup (error->message);
      values[1].type = GIMP_PDB_STRING;
      values[1].data.d_string = message;
      *nreturn_vals = 2;
      g_clear_error (&error);
    }
  else if (ok && has_layer)
    {
      values[1].type = GIMP_PDB_LAYER;
      values[1].data.d_layer = layer;
      *nreturn_vals = 2;
      if (mode != GIMP_RUN_NONINTERACTIVE)
        gimp_displays_flush ();
    }
}
