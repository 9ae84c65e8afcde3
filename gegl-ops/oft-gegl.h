/* What the oft: GEGL operations share: the registration functions module.c calls, whole-image
 * filtering (these algorithms look at every pixel of the input before writing any), and a few
 * checks. Internal to the gegl-oft module. */
#pragma once
#include <gegl-plugin.h>
#include "oft/oft.h"

G_BEGIN_DECLS

/* Defined by gegl-op.h from each file's GEGL_OP_NAME. */
void gegl_op_oft_canny_register_type (GTypeModule *module);
void gegl_op_oft_segmap_register_type (GTypeModule *module);
void gegl_op_oft_landmarks_register_type (GTypeModule *module);
void gegl_op_oft_generate_register_type (GTypeModule *module);

/* Larger inputs are refused with a warning rather than allocated (the same limit as image files). */
#define OFT_GEGL_MAX_PIXELS OFT_IMAGE_MAX_PIXELS

/* Makes a GeglOperationFilter class a whole-image filter: the whole input is required for any
 * output region and cached, and process runs once, unthreaded (the cores are used inside oftcore). */
void oft_gegl_whole_image_class_init (GeglOperationClass *operation_class);

/* The input's bounding box; FALSE (and a warning naming `op_name`) when there is no input, it is
 * empty, infinite or larger than OFT_GEGL_MAX_PIXELS. */
gboolean oft_gegl_input_box (GeglOperation *operation, GeglBuffer *input, const char *op_name, GeglRectangle *box);

/* The pixels of `box` as non-premultiplied "R'G'B'A u8" (g_free), and back. */
guint8 *oft_gegl_read_rgba8 (GeglBuffer *input, const GeglRectangle *box);
void oft_gegl_write_rgba8 (GeglBuffer *output, const GeglRectangle *box, const guint8 *rgba);
/* 1- or 3-channel 8-bit pixels written as opaque "R'G'B'A u8" (gray replicated). */
/* The whole-image operations' process(): reads the input as 8-bit RGBA, calls make (under `lock` when
 * not NULL) and writes its image opaque; a failure becomes a warning naming the op and a transparent
 * output. Progress goes 0 → 1 around make. */
typedef OftImage *(*OftGeglImageFunc) (GeglOperation *operation, const OftImage *input, GError **error);
gboolean oft_gegl_process_image (GeglOperation *operation, GeglBuffer *input, GeglBuffer *output,
                                 const char *op_name, OftGeglImageFunc make, GMutex *lock);

void oft_gegl_write_opaque (GeglBuffer *output, const GeglRectangle *box, const guint8 *pixels, int channels);

/* Paths from properties: NULL for "" (the operation's default), else the string itself. */
static inline const char *
oft_gegl_path_or_null (const char *s)
{
  return s && *s ? s : NULL;
}

G_END_DECLS
