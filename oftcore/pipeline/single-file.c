/* A pipeline from one original-SD checkpoint (.safetensors or .ckpt with LDM names) plus configs from
 * a diffusers folder or the bundled SD 1.5 ones. */
#include "oft/pipeline.h"
#include "oft/runtime.h"
#include "oft/ldm.h"
#include "oft/error.h"
#include "pipeline-private.h"
#include "oft-config.h"
#include <string.h>

char *
oft_sd15_config_dir (void)
{
  char *path = oft_data_path ("sd15-config", NULL);
  /* not found anywhere: name the installed location in the messages that follow */
  return path ? path : g_build_filename (OFT_DATADIR, "sd15-config", NULL);
}

static gboolean
has_prefix (const OftSafetensors *st, const char *prefix)
{
  size_t n = oft_safetensors_count (st);
  for (size_t i = 0; i < n; i++)
    if (g_str_has_prefix (oft_safetensors_entry (st, i)->name, prefix))
      return TRUE;
  return FALSE;
}

/* Only SD 1.x's LDM layout is mapped; say plainly what else the file is. */
static gboolean
check_layout (const OftSafetensors *st, const char *file, GError **error)
{
  const char *why = NULL;
  if (has_prefix (st, "conditioner.embedders."))
    why = "an SDXL checkpoint (conditioner.embedders.*), which is not supported";
  else if (has_prefix (st, "cond_stage_model.model."))
    why = "an SD 2.x checkpoint with an OpenCLIP text encoder (cond_stage_model.model.*), which is not supported "
          "(SD 1.x only)";
  else if (!has_prefix (st, "model.diffusion_model."))
    why = "no model.diffusion_model.* tensors: not an original Stable Diffusion single-file checkpoint "
          "(a diffusers pipeline is a folder; pass the folder instead)";
  else if (!has_prefix (st, "first_stage_model."))
    why = "no first_stage_model.* (VAE) tensors";
  else if (!has_prefix (st, "cond_stage_model.transformer."))
    why = "no cond_stage_model.transformer.* (CLIP text encoder) tensors";
  if (why)
    g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: %s", file, why);
  return why == NULL;
}

OftPipeline *
oft_pipeline_load_single (const char *file, const char *config_dir, GError **error)
{
  char *root = config_dir ? g_strdup (config_dir) : oft_sd15_config_dir ();
  char *tok = g_build_filename (root, "tokenizer", NULL);
  char *text_cfg = g_build_filename (root, "text_encoder", "config.json", NULL);
  char *unet_cfg = g_build_filename (root, "unet", "config.json", NULL);
  char *vae_cfg = g_build_filename (root, "vae", "config.json", NULL);
  char *sched = g_build_filename (root, "scheduler", "scheduler_config.json", NULL);
  OftPipeline *p = g_new0 (OftPipeline, 1);
  p->dir = g_strdup (file);
  OftSafetensors *st = NULL;
  OftLdmUnetMap umap;
  OftLdmVaeMap vmap;
  gboolean ok = FALSE;

  if (!g_file_test (file, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: no such file or folder (expected a diffusers "
                   "pipeline folder or an SD 1.x .safetensors/.ckpt file)", file);
      goto out;
    }
  if (!g_file_test (unet_cfg, G_FILE_TEST_IS_REGULAR))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: no unet/config.json: %s", root,
                   config_dir ? "not a diffusers pipeline folder" : "the bundled SD 1.5 configs are not installed "
                   "(set OFT_DATA_DIR or pass a diffusers folder for the configs)");
      goto out;
    }
  if (!g_file_test (tok, G_FILE_TEST_IS_DIR))
    {
      /* CLIP's BPE vocabulary (~1.6 MB) is not bundled with the SD 1.5 configs */
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: no tokenizer/ folder (vocab.json, merges.txt): "
                   "pass a diffusers SD 1.x folder for the configs and tokenizer (--config)", root);
      goto out;
    }
  if (!(st = oft_weights_open (file, error)) || !check_layout (st, file, error))
    goto out;
  if (!oft_ldm_unet_map_init (&umap, unet_cfg, error) || !oft_ldm_vae_map_init (&vmap, vae_cfg, error))
    goto out;
  OftWeightSource text_src = { .st = st, .map = oft_ldm_clip_name, .map_data = st };
  OftWeightSource unet_src = { .st = st, .map = oft_ldm_unet_name, .map_data = &umap };
  OftWeightSource vae_src = { .st = st, .map = oft_ldm_vae_name, .map_data = &vmap };
  ok = (p->tokenizer = oft_tokenizer_load_dir (tok, error)) &&
       (p->text = oft_clip_text_load_from (text_cfg, &text_src, error)) &&
       (p->unet = oft_unet_load_from (unet_cfg, &unet_src, error)) &&
       (p->vae = oft_vae_load_from (vae_cfg, &vae_src, error)) &&
       oft_noise_schedule_load (&p->schedule, sched, error) && oft_pipeline_check (p, file, error);
out:
  oft_safetensors_close (st);
  g_free (root);
  g_free (tok);
  g_free (text_cfg);
  g_free (unet_cfg);
  g_free (vae_cfg);
  g_free (sched);
  if (!ok)
    {
      oft_pipeline_free (p);
      return NULL;
    }
  return p;
}
