/* Original Stable Diffusion (CompVis LDM) single-file checkpoints: maps from the diffusers /
 * transformers names the model loaders ask for to the names in such a file, as OftNameMap callbacks.
 * SD 1.x layout: the UNet under "model.diffusion_model.", the VAE under "first_stage_model.", the CLIP
 * ViT-L text encoder under "cond_stage_model.transformer." (SD 2.x's OpenCLIP encoder under
 * "cond_stage_model.model." has another layout and is not mapped).
 * Differences in shape: LDM's VAE mid-block attention stores q/k/v/proj_out as 1×1 convolutions
 * [C, C, 1, 1] where diffusers has Linear [C, C]; the weight loader accepts trailing 1-dimensions
 * when the element count matches (see models/weights.c), so the maps only rename. */
#pragma once
#include <glib.h>
#include <stdbool.h>
#include "oft/safetensors.h"

G_BEGIN_DECLS

#define OFT_LDM_MAX_LEVELS 8

/* The UNet's layout decides the flat LDM indices (input_blocks.N / output_blocks.N). */
typedef struct {
  int n_levels;                       /* len (block_out_channels) */
  int layers_per_block;
  bool up_attn[OFT_LDM_MAX_LEVELS];   /* up_blocks.i has attentions (CrossAttnUpBlock2D) */
} OftLdmUnetMap;

/* From a diffusers unet/config.json. */
gboolean oft_ldm_unet_map_init (OftLdmUnetMap *m, const char *unet_config_path, GError **error);

typedef struct {
  int n_levels;                       /* the VAE's len (block_out_channels); LDM numbers decoder levels backwards */
} OftLdmVaeMap;

gboolean oft_ldm_vae_map_init (OftLdmVaeMap *m, const char *vae_config_path, GError **error);

/* OftNameMap callbacks; `data` is the OftLdmUnetMap / OftLdmVaeMap; the CLIP map takes the container
 * (an OftSafetensors, or NULL) to choose between "cond_stage_model.transformer.text_model.X" and the
 * older "cond_stage_model.transformer.X". NULL for a name outside the known layout. */
char *oft_ldm_unet_name (const char *diffusers_name, gpointer unet_map);
char *oft_ldm_vae_name (const char *diffusers_name, gpointer vae_map);
char *oft_ldm_clip_name (const char *transformers_name, gpointer st_or_null);

G_END_DECLS
