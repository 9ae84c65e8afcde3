/* Error domains and codes shared by every part of oftcore.
 * Anything that can fail takes `GError **error` last; messages name the file, the field and what was expected. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

#define OFT_IO_ERROR (oft_io_error_quark ())      /* files: safetensors, JSON, adapter folders */
#define OFT_MODEL_ERROR (oft_model_error_quark ()) /* shapes, configs, numerical trouble */
GQuark oft_io_error_quark (void);
GQuark oft_model_error_quark (void);

typedef enum {
  OFT_ERROR_FAILED,     /* anything else */
  OFT_ERROR_NOT_FOUND,  /* missing file, tensor or config key */
  OFT_ERROR_CORRUPT,    /* truncated or malformed file */
  OFT_ERROR_DTYPE,      /* unknown or unsupported dtype */
  OFT_ERROR_SHAPE,      /* shapes that do not fit together */
  OFT_ERROR_INVALID,    /* a value out of its allowed range */
  OFT_ERROR_NUMERIC,    /* NaN/Inf, singular matrix */
  OFT_ERROR_NO_SPACE,   /* disk full, write failed */
  OFT_ERROR_CANCELLED,
} OftErrorCode;

G_END_DECLS
