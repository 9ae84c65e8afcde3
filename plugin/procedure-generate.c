/* plug-in-oft-generate: txt2img in the plug-in process through oftcore; the result becomes a new layer
 * above the active one (one undo group) carrying its recipe as a parasite. */
#include "oft-plugin.h"
#include <gegl.h>
#include <math.h>
#include <string.h>
#include "oft/oft.h"

void
oft_generate_vals_init (OftGenerateVals *v)
{
  memset (v, 0, sizeof *v);
  v->seed = -1;
  v->steps = 30;
  v->guidance = 7.5;
  oft_strlcpy (v->scheduler, "ddim", sizeof v->scheduler);
  oft_strlcpy (v->condition, "none", sizeof v->condition);
  v->condition_drawable = -1;
  v->condition_scale = 1.0;
}

gboolean
oft_progress_cb (int done, int total, gpointer user_data)
{
  gimp_progress_update (total > 0 ? (double) done / total : 0.0);
  return TRUE;
}

/* The layer to stack above: the drawable when it is a layer, else the image's active layer. */
static gint32
anchor_layer (gint32 image, gint32 drawable)
{
  if (drawable != -1 && gimp_item_is_layer (drawable))
    return drawable;
  return gimp_image_get_active_layer (image);
}

/* Inserts `layer` directly above `anchor` (or at the top), in the anchor's group. */
static gboolean
insert_above (gint32 image, gint32 layer, gint32 anchor)
{
  gint32 parent = anchor != -1 ? gimp_item_get_parent (anchor) : -1;
  gint position = anchor != -1 ? gimp_image_get_item_position (image, anchor) : 0;
  return gimp_image_insert_layer (image, layer, parent > 0 ? parent : -1, MAX (position, 0));
}

gint32
oft_layer_from_rgb8 (gint32 image, gint32 anchor, const char *name, const guint8 *rgb8, int w, int h, GError **error)
{
  gint32 layer = gimp_layer_new (image, name, w, h, GIMP_RGB_IMAGE, 100.0, GIMP_LAYER_MODE_NORMAL);
  if (layer == -1 || !insert_above (image, layer, anchor))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, _("Could not add a layer to the image"));
      return -1;
    }
  gint ox = 0, oy = 0;
  if (anchor != -1)
    gimp_drawable_offsets (anchor, &ox, &oy);
  gimp_layer_set_offsets (layer, ox, oy);
  GeglBuffer *buf = gimp_drawable_get_buffer (layer);
  gegl_buffer_set (buf, GEGL_RECTANGLE (0, 0, w, h), 0, babl_format ("R'G'B' u8"), rgb8, GEGL_AUTO_ROWSTRIDE);
  g_object_unref (buf);
  return layer;
}

static gboolean
check_vals (const OftGenerateVals *v, OftSamplerKind *sampler, GError **error)
{
  if (!v->prompt[0])
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, _("The prompt is empty"));
  else if (v->steps < 1 || v->steps > 1000)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, _("steps %d: expected 1 to 1000"), v->steps);
  else if (!isfinite (v->guidance) || v->guidance < 0 || v->guidance > 50)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, _("guidance %g: expected 0 to 50"), v->guidance);
  else if (!oft_sampler_kind_from_name (v->scheduler, sampler))
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 _("scheduler \"%s\": expected ddim, euler, euler-a, dpmpp-2m or dpmpp-2m-karras"), v->scheduler);
  else if (v->width < 0 || v->height < 0 || v->width > 4096 || v->height > 4096)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, _("size %d×%d: expected 0 (image size) to 4096"),
                 v->width, v->height);
  else if (strcmp (v->condition, "none") != 0 && strcmp (v->condition, "canny") != 0
           && strcmp (v->condition, "landmarks") != 0 && strcmp (v->condition, "segmentation") != 0)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 _("condition type \"%s\": expected none, canny, landmarks or segmentation"), v->condition);
  else if (strcmp (v->condition, "none") != 0 && v->condition_drawable < 0)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 _("A %s condition needs a condition layer (make one with Filters ▸ OFT ▸ Condition Layer)"),
                 v->condition);
  else
    return TRUE;
  return FALSE;
}

gboolean
oft_procedure_generate (gint32 image, gint32 drawable, const OftGenerateVals *v, gint32 *layer_out, GError **error)
{
  OftSamplerKind sampler;
  if (!check_vals (v, &sampler, error))
    return FALSE;
  OftPrefs prefs;
  oft_prefs_load (&prefs, NULL);
  char *model = oft_prefs_resolve_model (&prefs, v->model, error);
  if (!model)
    return FALSE;

  gboolean ok = FALSE;
  OftPipeline *p = NULL;
  float *rgb = NULL;
  guint8 *rgb8 = NULL;
  char *recipe = NULL;
  GPtrArray *adapters = g_ptr_array_new_with_free_func (g_free);
  OftCondEncoder *encoder = NULL;
  float *condition = NULL;

  gimp_progress_init (_("Loading the model"));
  p = g_file_test (model, G_FILE_TEST_IS_DIR) ? oft_pipeline_load (model, error)
                                               : oft_pipeline_load_single (model, NULL, error);
  if (!p)
    goto out;
  char **names = g_strsplit (v->adapters, ";", -1);
  for (int i = 0; names[i]; i++)
    {
      char *name = g_strstrip (names[i]);
      if (!*name)
        continue;
      char *path = oft_prefs_resolve_adapter (&prefs, name);
      OftPeftAdapter *a = oft_peft_adapter_load (path, error);
      gboolean applied = a && oft_unet_apply_adapter (p->unet, a, FALSE, error);
      oft_peft_adapter_free (a);
      g_ptr_array_add (adapters, path);
      if (!applied)
        {
          g_prefix_error (error, _("adapter %s: "), path);
          g_strfreev (names);
          goto out;
        }
    }
  g_strfreev (names);
  g_ptr_array_add (adapters, NULL);
  /* the preference's device, after the adapters so that they go up with the weights ("auto" falls
   * back to the CPU when the CUDA module does not load) */
  OftDevice device;
  if (!oft_device_parse (prefs.device, &device, error))
    goto out;
  if (device != OFT_DEVICE_CPU && !oft_pipeline_set_device (p, device, OFT_DTYPE_BF16, error))
    goto out;

  int multiple = oft_vae_factor (p->vae) * oft_unet_size_multiple (p->unet);
  int w = v->width > 0 ? v->width : gimp_image_width (image);
  int h = v->height > 0 ? v->height : gimp_image_height (image);
  /* the UNet halves the latent at each downsampler: sizes go down to the model's multiple */
  w = MAX (multiple, w / multiple * multiple);
  h = MAX (multiple, h / multiple * multiple);
  gint64 seed = v->seed >= 0 ? v->seed : (gint64) (g_random_int () & G_MAXINT32);

  OftGenerateParams gp;
  oft_generate_params_init (&gp);
  gp.prompt = v->prompt;
  gp.negative = v->negative;
  gp.steps = v->steps;
  gp.guidance = (float) v->guidance;
  gp.sampler = sampler;
  gp.seed = (uint64_t) seed;
  gp.width = w;
  gp.height = h;
  if (strcmp (v->condition, "none") != 0)
    {
      /* the condition encoder comes with a control adapter (trained with oft train --task control) */
      for (guint i = 0; !encoder && i + 1 < adapters->len; i++)
        {
          char *file = g_build_filename (g_ptr_array_index (adapters, i), OFT_COND_ENCODER_FILE, NULL);
          if (g_file_test (file, G_FILE_TEST_EXISTS) && !(encoder = oft_cond_encoder_load (file, error)))
            {
              g_free (file);
              goto out;
            }
          g_free (file);
        }
      if (!encoder)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, _("A %s condition needs a control adapter (one "
                       "trained with a condition encoder, %s) among the adapters"), v->condition, OFT_COND_ENCODER_FILE);
          goto out;
        }
      OftImage *cimg = oft_plugin_read_drawable (v->condition_drawable);
      condition = g_new (float, (size_t) 3 * w * h);
      oft_image_to_planar (condition, cimg, w, h);
      oft_image_free (cimg);
      gp.control = encoder;
      gp.condition = condition;
      gp.control_scale = (float) v->condition_scale;
    }
  rgb = g_try_new (float, (size_t) 3 * w * h);
  rgb8 = g_try_new (guint8, (size_t) 3 * w * h);
  if (!rgb || !rgb8)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE, _("Out of memory for a %d×%d image"), w, h);
      goto out;
    }
  gimp_progress_set_text (_("Generating"));
  if (!oft_pipeline_generate (p, &gp, rgb, NULL, oft_progress_cb, NULL, error))
    goto out;
  oft_image_to_rgb8 (rgb8, rgb, w, h);

  gimp_image_undo_group_start (image);
  char *short_prompt = g_utf8_substring (v->prompt, 0, MIN (g_utf8_strlen (v->prompt, -1), 40));
  char *name = g_strdup_printf (_("Generated: %s"), short_prompt);
  gint32 layer = oft_layer_from_rgb8 (image, anchor_layer (image, drawable), name, rgb8, w, h, error);
  g_free (short_prompt);
  g_free (name);
  if (layer != -1)
    {
      recipe = oft_recipe_to_json (v, model, (char **) adapters->pdata, seed, w, h);
      GimpParasite *par = gimp_parasite_new (OFT_RECIPE_PARASITE, GIMP_PARASITE_PERSISTENT | GIMP_PARASITE_UNDOABLE,
                                             strlen (recipe) + 1, recipe);
      gimp_item_attach_parasite (layer, par);
      gimp_parasite_free (par);
      gimp_image_set_active_layer (image, layer);
      *layer_out = layer;
      ok = TRUE;
    }
  gimp_image_undo_group_end (image);
  gimp_progress_update (1.0);
out:
  g_ptr_array_unref (adapters);
  oft_cond_encoder_free (encoder);
  g_free (condition);
  oft_pipeline_free (p);
  g_free (rgb);
  g_free (rgb8);
  g_free (recipe);
  g_free (model);
  return ok;
}
