#pragma once
#include "oft/pipeline.h"

/* The components fit together (text width = cross-attention width, VAE latents = UNet input);
 * errors name `what` (the folder or file). */
gboolean oft_pipeline_check (OftPipeline *p, const char *what, GError **error);
