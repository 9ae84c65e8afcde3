/* oft generate: txt2img with a diffusers pipeline folder or an original SD single-file checkpoint,
 * written as an 8-bit PNG. */
#include "oft-cli.h"
#include <stdio.h>
#include <string.h>

static gboolean
on_progress (int done, int total, gpointer data)
{
  cli_progress_update (data, done, total);
  return TRUE;
}

/* --init-noise: a safetensors file with one f32/f16 tensor [1, C, h, w]. */
static float *
load_init_noise (const char *path, int C, int h, int w, GError **error)
{
  OftSafetensors *st = oft_safetensors_open (path, error);
  if (!st)
    return NULL;
  float *x = NULL;
  if (oft_safetensors_count (st) != 1)
    g_set_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID, "%s: expected exactly one tensor, found %zu", path,
                 oft_safetensors_count (st));
  else
    {
      int64_t shape[4] = { 1, C, h, w };
      x = g_new (float, (size_t) C * h * w);
      if (!oft_safetensors_read_f32 (st, oft_safetensors_entry (st, 0)->name, x, 4, shape, error))
        g_clear_pointer (&x, g_free);
    }
  oft_safetensors_close (st);
  return x;
}

int
cmd_generate (int argc, char **argv)
{
  char *model = NULL, *config = NULL, *prompt = NULL, *negative = NULL, *sampler = NULL, *out = NULL, *noise_path = NULL;
  char **adapters = NULL, *cond_path = NULL, *cond_from = NULL, *cond_type = NULL, *control_path = NULL;
  char *device_name = NULL, *precision = NULL;
  gboolean merge = FALSE;
  double cond_scale = 1.0;
  int steps = 30, width = 0, height = 0, clip_skip = 0;
  double guidance = 7.5, eta = 0;
  gint64 seed = -1;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model, "Stable Diffusion pipeline folder (diffusers layout), or an "
      "SD 1.x single-file checkpoint (.safetensors or .ckpt); default: the bundled default model", "PATH" },
    { "config", 0, 0, G_OPTION_ARG_FILENAME, &config, "For a single file: diffusers folder with the configs and tokenizer "
      "(default: the bundled SD 1.5 configs, which need a tokenizer/ installed beside them)", "DIR" },
    { "prompt", 'p', 0, G_OPTION_ARG_STRING, &prompt, "What to draw", "TEXT" },
    { "negative", 'n', 0, G_OPTION_ARG_STRING, &negative, "What to avoid (default: empty)", "TEXT" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &steps, "Sampling steps (default 30)", "N" },
    { "guidance", 'g', 0, G_OPTION_ARG_DOUBLE, &guidance, "Classifier-free guidance scale (default 7.5; ≤ 1 turns it off)", "G" },
    { "scheduler", 's', 0, G_OPTION_ARG_STRING, &sampler, "ddim (default), euler, euler-a, dpmpp-2m, dpmpp-2m-karras", "NAME" },
    { "eta", 0, 0, G_OPTION_ARG_DOUBLE, &eta, "DDIM η (default 0: deterministic)", "ETA" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "Random seed (default: from the clock, printed)", "S" },
    { "width", 'W', 0, G_OPTION_ARG_INT, &width, "Width in pixels (default: the model's native size)", "W" },
    { "height", 'H', 0, G_OPTION_ARG_INT, &height, "Height in pixels (default: the model's native size)", "H" },
    { "clip-skip", 0, 0, G_OPTION_ARG_INT, &clip_skip, "Skip this many final CLIP layers (default 0)", "N" },
    { "adapter", 'a', 0, G_OPTION_ARG_FILENAME_ARRAY, &adapters, "PEFT OFT/BOFT adapter folder (repeat to stack, applied in order)", "DIR" },
    { "merge", 0, 0, G_OPTION_ARG_NONE, &merge, "Merge adapters into the weights at load instead of rotating inputs on the fly", NULL },
    { "condition", 'c', 0, G_OPTION_ARG_FILENAME, &cond_path, "Condition image (edges, landmark dots or a segmentation map) "
      "for a control adapter", "IMG" },
    { "condition-from", 0, 0, G_OPTION_ARG_FILENAME, &cond_from, "Derive the condition from this photo first (--condition-type)", "PHOTO" },
    { "condition-type", 0, 0, G_OPTION_ARG_STRING, &cond_type, "canny, landmarks or segmentation (default: the encoder's)", "TYPE" },
    { "condition-scale", 0, 0, G_OPTION_ARG_DOUBLE, &cond_scale, "Strength of the condition (default 1.0)", "S" },
    { "control", 0, 0, G_OPTION_ARG_FILENAME, &control_path, "Condition encoder file (default: the one in the first "
      "--adapter folder that has one)", "FILE" },
    { "init-noise", 0, 0, G_OPTION_ARG_FILENAME, &noise_path, "safetensors with one [1,4,H/8,W/8] tensor used as the initial noise", "FILE" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device_name, "cpu (default), cuda, or auto (CUDA when available, else "
      "the CPU); the UNet and the VAE decoder run there", "DEV" },
    { "precision", 0, 0, G_OPTION_ARG_STRING, &precision, "Storage type on the GPU: bf16 (default) or fp32", "TYPE" },
    { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "Output PNG", "OUT.png" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("- generate an image from a prompt");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  int rc = 1;
  OftPipeline *p = NULL;
  OftCondEncoder *encoder = NULL;
  float *noise = NULL, *rgb = NULL, *condition = NULL;
  uint8_t *rgb8 = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if (!prompt || !out)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--prompt and --out are required (see --help)");
      goto out;
    }
  if (!model && !(model = cli_default_model ("generate", &error)))
    goto out;
  OftGenerateParams gp;
  oft_generate_params_init (&gp);
  gp.prompt = prompt;
  gp.negative = negative ? negative : "";
  gp.steps = steps;
  gp.guidance = (float) guidance;
  gp.eta = (float) eta;
  gp.clip_skip = clip_skip;
  if (sampler && !oft_sampler_kind_from_name (sampler, &gp.sampler))
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                   "unknown scheduler '%s' (ddim, euler, euler-a, dpmpp-2m, dpmpp-2m-karras)", sampler);
      goto out;
    }
  if (seed < 0)
    {
      seed = g_get_real_time () & G_MAXINT32;
      fprintf (stderr, "oft generate: seed %" G_GINT64_FORMAT "\n", seed);
    }
  gp.seed = (uint64_t) seed;
  OftDevice device = OFT_DEVICE_CPU;
  OftDType dtype = OFT_DTYPE_BF16;
  if (device_name && !oft_device_parse (device_name, &device, &error))
    goto out;
  if (precision && g_strcmp0 (precision, "fp32") == 0)
    dtype = OFT_DTYPE_F32;
  else if (precision && g_strcmp0 (precision, "bf16") != 0)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--precision %s: expected bf16 or fp32", precision);
      goto out;
    }
  if (g_file_test (model, G_FILE_TEST_IS_DIR))
    p = oft_pipeline_load (model, &error);
  else
    p = oft_pipeline_load_single (model, config, &error);
  if (!p)
    goto out;
  for (int i = 0; adapters && adapters[i]; i++)
    {
      OftPeftAdapter *a = oft_peft_adapter_load (adapters[i], &error);
      gboolean applied = a && oft_unet_apply_adapter (p->unet, a, merge, &error);
      oft_peft_adapter_free (a);
      if (!applied)
        {
          g_prefix_error (&error, "adapter %s: ", adapters[i]);
          goto out;
        }
    }
  /* after the adapters, so that they go up with the weights */
  if (device != OFT_DEVICE_CPU)
    {
      if (!oft_pipeline_set_device (p, device, dtype, &error))
        goto out;
      if (oft_unet_device (p->unet) == OFT_DEVICE_CUDA)
        fprintf (stderr, "oft generate: the UNet and the VAE decoder run on the GPU (%s)\n",
                 dtype == OFT_DTYPE_F32 ? "fp32" : "bf16");
    }
  int f = oft_vae_factor (p->vae), native = oft_unet_sample_size (p->unet) * f;
  gp.width = width > 0 ? width : native;
  gp.height = height > 0 ? height : native;
  if (cond_path || cond_from)
    {
      /* the encoder: --control, or the first adapter folder holding one */
      for (int i = 0; !control_path && adapters && adapters[i]; i++)
        {
          char *file = g_build_filename (adapters[i], OFT_COND_ENCODER_FILE, NULL);
          if (g_file_test (file, G_FILE_TEST_EXISTS))
            control_path = g_strdup (file);
          g_free (file);
        }
      if (!control_path)
        {
          g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND, "a condition needs a condition encoder: an --adapter "
                       "folder trained with --task control (holding %s), or --control FILE", OFT_COND_ENCODER_FILE);
          goto out;
        }
      if (!(encoder = oft_cond_encoder_load (control_path, &error)))
        goto out;
      const char *type = cond_type ? cond_type : encoder->condition_type;
      if (cond_type && g_strcmp0 (cond_type, encoder->condition_type) != 0)
        fprintf (stderr, "oft generate: warning: the encoder was trained on %s conditions, not %s\n",
                 encoder->condition_type, cond_type);
      OftImage *src = oft_image_load (cond_from ? cond_from : cond_path, &error), *c = src;
      if (src && cond_from)
        {
          c = oft_condition_from_photo (src, type, &error);
          oft_image_free (src);
        }
      if (!c)
        goto out;
      condition = g_new (float, (size_t) 3 * gp.width * gp.height);
      oft_image_to_planar (condition, c, gp.width, gp.height);
      oft_image_free (c);
      gp.control = encoder;
      gp.condition = condition;
      gp.control_scale = (float) cond_scale;
    }
  if (noise_path)
    {
      noise = load_init_noise (noise_path, oft_unet_in_channels (p->unet), gp.height / f, gp.width / f, &error);
      if (!noise)
        goto out;
      gp.init_noise = noise;
    }
  rgb = g_new (float, (size_t) 3 * gp.width * gp.height);
  CliProgress bar;
  cli_progress_init (&bar, "generate");
  if (!oft_pipeline_generate (p, &gp, rgb, NULL, on_progress, &bar, &error))
    goto out;
  rgb8 = g_new (uint8_t, (size_t) 3 * gp.width * gp.height);
  oft_image_to_rgb8 (rgb8, rgb, gp.width, gp.height);
  if (!oft_png_write_rgb8 (out, rgb8, gp.width, gp.height, &error))
    goto out;
  rc = 0;
out:
  if (rc)
    cli_fail ("generate", error);
  g_clear_error (&error);
  oft_pipeline_free (p);
  g_free (noise);
  g_free (rgb);
  g_free (rgb8);
  g_free (model);
  g_free (config);
  g_free (prompt);
  g_free (negative);
  g_free (sampler);
  g_free (out);
  g_free (noise_path);
  g_strfreev (adapters);
  oft_cond_encoder_free (encoder);
  g_free (condition);
  g_free (cond_path);
  g_free (cond_from);
  g_free (cond_type);
  g_free (control_path);
  g_free (device_name);
  g_free (precision);
  g_option_context_free (ctx);
  return rc;
}
