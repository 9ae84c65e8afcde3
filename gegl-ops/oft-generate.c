/* oft:generate: Stable Diffusion text-to-image (with OFT adapters) as a GEGL operation. It renders
 * width×height pixels at (0, 0); its input pad is for the condition image (made by oft:canny,
 * oft:landmarks or oft:segmap, or painted) and is ignored while the condition type is "none", so it
 * works as a source (gegl CLI, GEGL graph) and as a filter on a layer (GIMP's GEGL Operation tool).
 * The result equals `oft generate` (with --condition) with the same settings. */
#include "oft-config.h"
#include <glib/gi18n-lib.h>

#ifdef GEGL_PROPERTIES

enum_start (oft_gegl_scheduler)
  enum_value (OFT_GEGL_SCHEDULER_DDIM, "ddim", N_("DDIM"))
  enum_value (OFT_GEGL_SCHEDULER_EULER, "euler", N_("Euler"))
  enum_value (OFT_GEGL_SCHEDULER_EULER_A, "euler-a", N_("Euler ancestral"))
  enum_value (OFT_GEGL_SCHEDULER_DPMPP_2M, "dpmpp-2m", N_("DPM++ 2M"))
  enum_value (OFT_GEGL_SCHEDULER_DPMPP_2M_KARRAS, "dpmpp-2m-karras", N_("DPM++ 2M Karras"))
enum_end (OftGeglScheduler)

enum_start (oft_gegl_device)
  enum_value (OFT_GEGL_DEVICE_CPU, "cpu", N_("CPU"))
  enum_value (OFT_GEGL_DEVICE_AUTO, "auto", N_("GPU when available"))
  enum_value (OFT_GEGL_DEVICE_CUDA, "cuda", N_("GPU (CUDA)"))
enum_end (OftGeglDevice)

enum_start (oft_gegl_condition)
  enum_value (OFT_GEGL_CONDITION_NONE, "none", N_("None"))
  enum_value (OFT_GEGL_CONDITION_CANNY, "canny", N_("Canny edges"))
  enum_value (OFT_GEGL_CONDITION_LANDMARKS, "landmarks", N_("Face landmarks"))
  enum_value (OFT_GEGL_CONDITION_SEGMENTATION, "segmentation", N_("Segmentation map"))
enum_end (OftGeglCondition)

property_file_path (model, _("Model"), "")
  description (_("Stable Diffusion pipeline folder (diffusers layout) or SD 1.x single-file checkpoint "
                 "(.safetensors, .ckpt); empty: $OFT_MODEL, else the bundled default model"))

property_file_path (config, _("Model configs"), "")
  description (_("For a single-file checkpoint: a diffusers folder with the configs and tokenizer; empty: "
                 "the bundled SD 1.5 configs"))

property_enum (device, _("Device"), OftGeglDevice, oft_gegl_device, OFT_GEGL_DEVICE_CPU)
  description (_("Where the UNet and the VAE decoder run: the GPU needs the CUDA module (bf16); "
                 "'GPU when available' falls back to the CPU"))

property_string (adapters, _("Adapters"), "")
  description (_("OFT/BOFT adapter folders (PEFT format), separated by ';', applied in order"))

property_file_path (control, _("Condition encoder"), "")
  description (_("Condition encoder of a control adapter; empty: the condition_encoder.safetensors of the "
                 "first adapter folder that has one"))

property_string (prompt, _("Prompt"), "")
  description (_("What to draw"))
  ui_meta ("multiline", "true")

property_string (negative, _("Negative prompt"), "")
  description (_("What to avoid"))
  ui_meta ("multiline", "true")

property_seed (seed, _("Random seed"), rand)
  description (_("Seed of the initial noise: the same seed and settings give the same image"))

property_int (steps, _("Steps"), 30)
  description (_("Sampling steps"))
  value_range (1, 1000)
  ui_range (1, 150)

property_double (guidance, _("Guidance scale"), 7.5)
  description (_("Classifier-free guidance: how strongly the image follows the prompt (1 or less: off)"))
  value_range (0.0, 50.0)
  ui_range (1.0, 20.0)

property_enum (scheduler, _("Scheduler"), OftGeglScheduler, oft_gegl_scheduler, OFT_GEGL_SCHEDULER_DDIM)
  description (_("Sampling method"))

property_int (width, _("Width"), 512)
  description (_("Image width in pixels (a multiple of the model's size step, 64 for SD 1.5)"))
  value_range (8, 4096)
  ui_range (64, 2048)
  ui_steps (8, 64)

property_int (height, _("Height"), 512)
  description (_("Image height in pixels (a multiple of the model's size step, 64 for SD 1.5)"))
  value_range (8, 4096)
  ui_range (64, 2048)
  ui_steps (8, 64)

property_enum (condition_type, _("Condition"), OftGeglCondition, oft_gegl_condition, OFT_GEGL_CONDITION_NONE)
  description (_("What the input image is: a condition (made with oft:canny, oft:landmarks or oft:segmap) "
                 "that guides the generation through a control adapter's condition encoder, or none (the "
                 "input is ignored)"))

property_double (condition_scale, _("Condition strength"), 1.0)
  description (_("How strongly the condition image guides the generation"))
  value_range (0.0, 5.0)
  ui_range (0.0, 2.0)

#else

#define GEGL_OP_FILTER
#define GEGL_OP_NAME oft_generate
#define GEGL_OP_C_SOURCE oft-generate.c
#define GEGL_OP_BUNDLE
#include "gegl-op.h"
#include "oft-gegl.h"
#include <string.h>

static const OftSamplerKind sampler_of[] = {
  [OFT_GEGL_SCHEDULER_DDIM] = OFT_SAMPLER_DDIM,
  [OFT_GEGL_SCHEDULER_EULER] = OFT_SAMPLER_EULER,
  [OFT_GEGL_SCHEDULER_EULER_A] = OFT_SAMPLER_EULER_ANCESTRAL,
  [OFT_GEGL_SCHEDULER_DPMPP_2M] = OFT_SAMPLER_DPMPP_2M,
  [OFT_GEGL_SCHEDULER_DPMPP_2M_KARRAS] = OFT_SAMPLER_DPMPP_2M_KARRAS,
};

/* One pipeline is kept for the process (gigabytes for SD 1.5: loading it again for each render is
 * what a user would notice); it is replaced when the model, configs or adapters change. Adapters are
 * applied to the UNet in place, so a different adapter list means a fresh load. The pipeline is not
 * reentrant: generation runs under pipeline_lock. */
static GMutex pipeline_lock;
static OftPipeline *pipeline_cached;
static char *pipeline_cached_key;

/* The model file or folder: the property, $OFT_MODEL, or the bundled default. g_free. */
static char *
model_path (const char *prop, GError **error)
{
  if (prop && *prop)
    return g_strdup (prop);
  const char *env = g_getenv ("OFT_MODEL");
  if (env && *env)
    return g_strdup (env);
  char *bundled = oft_data_path ("default-model", NULL);
  if (bundled)
    return bundled;
  g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND,
               _("no model: set the 'model' property to a Stable Diffusion folder (diffusers layout) or an SD 1.x "
                 ".safetensors/.ckpt file, or set OFT_MODEL (no bundled default model is installed)"));
  return NULL;
}

static OftDevice
device_of (const GeglProperties *o)
{
  return o->device == OFT_GEGL_DEVICE_CUDA ? OFT_DEVICE_CUDA
         : o->device == OFT_GEGL_DEVICE_AUTO ? OFT_DEVICE_AUTO : OFT_DEVICE_CPU;
}

/* Called with pipeline_lock held. */
static OftPipeline *
pipeline_get (const char *model, const char *config, const char *adapters, OftDevice device, GError **error)
{
  char *key = g_strjoin ("\n", model, config, adapters, oft_device_to_string (device), NULL);
  if (pipeline_cached && strcmp (key, pipeline_cached_key) == 0)
    {
      g_free (key);
      return pipeline_cached;
    }
  /* free the old one first: two SD 1.5 pipelines at once may not fit */
  g_clear_pointer (&pipeline_cached, oft_pipeline_free);
  g_clear_pointer (&pipeline_cached_key, g_free);

  OftPipeline *p;
  if (g_file_test (model, G_FILE_TEST_IS_DIR))
    p = oft_pipeline_load (model, error);
  else
    p = oft_pipeline_load_single (model, oft_gegl_path_or_null (config), error);
  char **list = g_strsplit (adapters, ";", -1);
  for (int i = 0; p && list[i]; i++)
    {
      char *dir = g_strstrip (list[i]);
      if (!*dir)
        continue;
      OftPeftAdapter *a = oft_peft_adapter_load (dir, error);
      gboolean applied = a && oft_unet_apply_adapter (p->unet, a, FALSE, error);
      oft_peft_adapter_free (a);
      if (!applied)
        {
          g_prefix_error (error, _("adapter %s: "), dir);
          g_clear_pointer (&p, oft_pipeline_free);
        }
    }
  g_strfreev (list);
  /* after the adapters, so that they go up with the weights */
  if (p && device != OFT_DEVICE_CPU && !oft_pipeline_set_device (p, device, OFT_DTYPE_BF16, error))
    g_clear_pointer (&p, oft_pipeline_free);
  if (!p)
    {
      g_free (key);
      return NULL;
    }
  pipeline_cached = p;
  pipeline_cached_key = key;
  return p;
}

/* The condition encoder: the property's file, or the first adapter folder's. g_free. */
static char *
control_path (const char *prop, const char *adapters, GError **error)
{
  if (prop && *prop)
    return g_strdup (prop);
  char **list = g_strsplit (adapters, ";", -1);
  char *found = NULL;
  for (int i = 0; !found && list[i]; i++)
    {
      char *dir = g_strstrip (list[i]);
      char *file = *dir ? g_build_filename (dir, OFT_COND_ENCODER_FILE, NULL) : NULL;
      if (file && g_file_test (file, G_FILE_TEST_EXISTS))
        found = g_steal_pointer (&file);
      g_free (file);
    }
  g_strfreev (list);
  if (!found)
    g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND,
                 _("a condition needs a condition encoder: an adapter folder trained for control (holding %s), "
                   "or the 'control' property"), OFT_COND_ENCODER_FILE);
  return found;
}

/* The encoder last used, kept beside the pipeline (under pipeline_lock). */
static OftCondEncoder *encoder_cached;
static char *encoder_cached_path;

static const OftCondEncoder *
encoder_get (const char *path, GError **error)
{
  if (encoder_cached && strcmp (encoder_cached_path, path) == 0)
    return encoder_cached;
  OftCondEncoder *e = oft_cond_encoder_load (path, error);
  if (!e)
    return NULL;
  oft_cond_encoder_free (encoder_cached);
  g_free (encoder_cached_path);
  encoder_cached = e;
  encoder_cached_path = g_strdup (path);
  return e;
}

/* The last result of this node, reused while the settings stay the same (GIMP's preview and its
 * final render, or a graph evaluated twice). */
typedef struct {
  char *key;
  int width, height;
  float *rgba;
} Rendered;

static void
rendered_free (Rendered *r)
{
  if (!r)
    return;
  g_free (r->key);
  g_free (r->rgba);
  g_free (r);
}

/* String properties can be set to NULL through GObject. */
#define STR(s) ((s) ? (s) : "")

/* Everything the image depends on; `condition` is a checksum of the condition pixels ("" without). */
static char *
settings_key (const GeglProperties *o, const char *model, const char *condition)
{
  char buf[2][G_ASCII_DTOSTR_BUF_SIZE];
  return g_strdup_printf ("%s\n%s\n%s\n%s\n%s\n%s\n%u\n%d\n%s\n%d\n%dx%d\n%d\n%s\n%s\n%d", model, STR (o->config),
                          STR (o->adapters), STR (o->control), STR (o->prompt), STR (o->negative), o->seed, o->steps,
                          g_ascii_dtostr (buf[0], sizeof buf[0], o->guidance), o->scheduler, o->width, o->height,
                          o->condition_type, g_ascii_dtostr (buf[1], sizeof buf[1], o->condition_scale), condition,
                          o->device);
}

typedef struct {
  GeglOperation *operation;
} ProgressData;

static gboolean
on_progress (int done, int total, gpointer data)
{
  ProgressData *pd = data;
  /* loading takes the first 5 %, decoding the last 5 % */
  gegl_operation_progress (pd->operation, 0.05 + 0.9 * done / total, _("Generating"));
  return TRUE;
}

static const char *
condition_nick (int type)
{
  GEnumClass *ec = g_type_class_ref (oft_gegl_condition_get_type ());
  const char *nick = g_enum_get_value (ec, type)->value_nick;  /* static strings of the enum */
  g_type_class_unref (ec);
  return nick;
}

/* Runs the pipeline, conditioned by `cond` (the input, any size; NULL for none); the image as
 * interleaved RGBA floats (g_free) or NULL. */
static float *
generate (GeglOperation *operation, const GeglProperties *o, const char *model, const OftImage *cond,
          GError **error)
{
  float *rgba = NULL, *condition = NULL;
  const OftCondEncoder *encoder = NULL;
  g_mutex_lock (&pipeline_lock);
  gegl_operation_progress (operation, 0.0, _("Loading the model"));
  OftPipeline *p = pipeline_get (model, STR (o->config), STR (o->adapters), device_of (o), error);
  if (p && cond)
    {
      char *path = control_path (o->control, STR (o->adapters), error);
      encoder = path ? encoder_get (path, error) : NULL;
      g_free (path);
      if (!encoder)
        p = NULL;
      else
        {
          const char *type = condition_nick (o->condition_type);
          if (g_strcmp0 (encoder->condition_type, type) != 0)
            g_warning (_("oft:generate: the condition encoder was trained on %s conditions, not %s"),
                       encoder->condition_type, type);
          /* the condition image scaled to cover the output and centre-cropped, as `oft generate` does */
          condition = g_new (float, (gsize) 3 * o->width * o->height);
          oft_image_to_planar (condition, cond, o->width, o->height);
        }
    }
  if (p)
    {
      OftGenerateParams gp;
      oft_generate_params_init (&gp);
      gp.prompt = STR (o->prompt);
      gp.negative = STR (o->negative);
      gp.steps = o->steps;
      gp.guidance = (float) o->guidance;
      gp.sampler = sampler_of[o->scheduler];
      gp.seed = o->seed;
      gp.width = o->width;
      gp.height = o->height;
      gp.control = encoder;
      gp.condition = condition;
      gp.control_scale = (float) o->condition_scale;
      gsize n = (gsize) o->width * o->height;
      float *rgb = g_new (float, 3 * n);
      ProgressData pd = { operation };
      if (oft_pipeline_generate (p, &gp, rgb, NULL, on_progress, &pd, error))
        {
          rgba = g_new (float, 4 * n);
          for (gsize i = 0; i < n; i++)
            {
              rgba[4 * i + 0] = rgb[i];
              rgba[4 * i + 1] = rgb[n + i];
              rgba[4 * i + 2] = rgb[2 * n + i];
              rgba[4 * i + 3] = 1.0f;
            }
        }
      g_free (rgb);
    }
  g_mutex_unlock (&pipeline_lock);
  g_free (condition);
  gegl_operation_progress (operation, 1.0, "");
  return rgba;
}

static void
prepare (GeglOperation *operation)
{
  gegl_operation_set_format (operation, "input", babl_format ("R'G'B'A u8"));
  gegl_operation_set_format (operation, "output", babl_format ("R'G'B'A float"));
}

static GeglRectangle
get_bounding_box (GeglOperation *operation)
{
  GeglProperties *o = GEGL_PROPERTIES (operation);
  return (GeglRectangle) { 0, 0, o->width, o->height };
}

static GeglRectangle
get_required_for_output (GeglOperation *operation, const gchar *input_pad, const GeglRectangle *roi)
{
  GeglProperties *o = GEGL_PROPERTIES (operation);
  const GeglRectangle *in = gegl_operation_source_get_bounding_box (operation, "input");
  if (o->condition_type == OFT_GEGL_CONDITION_NONE || !in || gegl_rectangle_is_infinite_plane (in))
    return (GeglRectangle) { 0, 0, 0, 0 };
  return *in;
}

static GeglRectangle
get_cached_region (GeglOperation *operation, const GeglRectangle *roi)
{
  return get_bounding_box (operation);
}

static gboolean
process (GeglOperation *operation, GeglBuffer *input, GeglBuffer *output, const GeglRectangle *result, gint level)
{
  GeglProperties *o = GEGL_PROPERTIES (operation);
  OftImage cond = { 0 };
  GeglRectangle in_box;
  if (o->condition_type != OFT_GEGL_CONDITION_NONE)
    {
      if (!oft_gegl_input_box (operation, input, "oft:generate", &in_box))
        return TRUE;
      cond = (OftImage) { in_box.width, in_box.height, 4, oft_gegl_read_rgba8 (input, &in_box) };
    }
  GError *error = NULL;
  char *model = model_path (o->model, &error), *key = NULL, *sum = NULL;
  if (!model)
    goto fail;
  sum = cond.pixels ? g_compute_checksum_for_data (G_CHECKSUM_SHA256, cond.pixels,
                                                    (gsize) 4 * cond.width * cond.height) : g_strdup ("");
  key = settings_key (o, model, sum);
  Rendered *r = o->user_data;
  if (!r || strcmp (r->key, key) != 0)
    {
      float *rgba = generate (operation, o, model, cond.pixels ? &cond : NULL, &error);
      if (!rgba)
        goto fail;
      rendered_free (r);
      r = g_new0 (Rendered, 1);
      r->key = g_steal_pointer (&key);
      r->width = o->width;
      r->height = o->height;
      r->rgba = rgba;
      o->user_data = r;
    }
  GeglRectangle box = { 0, 0, r->width, r->height };
  gegl_buffer_set (output, &box, 0, babl_format ("R'G'B'A float"), r->rgba, GEGL_AUTO_ROWSTRIDE);
  goto done;
fail:
  g_warning ("oft:generate: %s", error->message);
  g_error_free (error);
done:
  g_free (cond.pixels);
  g_free (sum);
  g_free (key);
  g_free (model);
  return TRUE;
}

static void
finalize (GObject *object)
{
  GeglProperties *o = GEGL_PROPERTIES (object);
  g_clear_pointer (&o->user_data, rendered_free);
  /* gegl-op.h (GEGL 0.4.42) creates the seed's GeglRandom but never frees it */
  g_clear_pointer (&o->rand, gegl_random_free);
  G_OBJECT_CLASS (gegl_op_parent_class)->finalize (object);
}

static void
gegl_op_class_init (GeglOpClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GeglOperationClass *operation_class = GEGL_OPERATION_CLASS (klass);
  GeglOperationFilterClass *filter_class = GEGL_OPERATION_FILTER_CLASS (klass);

  object_class->finalize = finalize;
  operation_class->prepare = prepare;
  operation_class->get_bounding_box = get_bounding_box;
  operation_class->get_required_for_output = get_required_for_output;
  operation_class->get_cached_region = get_cached_region;
  operation_class->threaded = FALSE;
  operation_class->want_in_place = FALSE;
  filter_class->process = process;

  gegl_operation_class_set_keys (operation_class,
    "name", "oft:generate",
    "title", _("Generate (Stable Diffusion with OFT)"),
    "categories", "render:oft",
    "description", _("Draws an image from a text prompt with a Stable Diffusion model and optional OFT adapters, "
                     "guided by the input image when a condition type is chosen (otherwise the input is "
                     "ignored)"),
    NULL);
}

#endif
