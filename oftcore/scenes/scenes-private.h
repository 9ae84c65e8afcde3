/* Helpers shared by the scene generator, captions and analyser. */
#pragma once
#include "oft/scenes.h"

/* The second colour of a textured background: the colour moved 18 % toward black (light colours) or
 * 15 % toward white (dark ones), close enough to keep its colour name. */
G_GNUC_INTERNAL void scene_shade_rgb (OftSceneColour colour, uint8_t rgb[3]);
/* The two colours of the sks pattern's quarters: the palette's blue and white. */
G_GNUC_INTERNAL extern const uint8_t *const scene_pattern_rgb[2];

/* sRGB (D65) to CIELAB. */
G_GNUC_INTERNAL void scene_rgb_to_lab (const uint8_t rgb[3], double lab[3]);
G_GNUC_INTERNAL double scene_lab_distance (const double a[3], const double b[3]);

/* Whether shape-local point (u, v) — offset from the centre in units of the shape's size, v down — lies
 * inside a shape of that kind. */
G_GNUC_INTERNAL gboolean scene_shape_contains (OftShapeKind kind, double u, double v);
