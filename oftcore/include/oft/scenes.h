/* Procedural scenes: a dataset of simple coloured shapes with captions in a fixed grammar, their
 * condition images (Canny edges, segmentation maps), and a deterministic analyser that reads such a
 * picture back (background colour, shapes, colours, relation, the "sks" pattern) so that generated
 * images can be checked against their captions.
 *
 * Geometry is resolution-free: centres are fractions of the width/height, sizes fractions of
 * min(width, height), so one scene renders at any size. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include "oft/image.h"
#include "oft/rng.h"
#include "oft/conditions.h"

G_BEGIN_DECLS

/* ---- vocabulary ------------------------------------------------------------------------------------ */

typedef enum {
  OFT_SHAPE_CIRCLE,
  OFT_SHAPE_SQUARE,
  OFT_SHAPE_TRIANGLE,   /* equilateral, apex up */
  OFT_SHAPE_STAR,       /* five points, one up */
  OFT_SHAPE_RING,
  OFT_SHAPE_DIAMOND,    /* rhombus, taller than wide */
  OFT_SHAPE_COUNT
} OftShapeKind;

typedef enum {
  OFT_COLOUR_RED,
  OFT_COLOUR_GREEN,
  OFT_COLOUR_BLUE,
  OFT_COLOUR_YELLOW,
  OFT_COLOUR_ORANGE,
  OFT_COLOUR_PURPLE,
  OFT_COLOUR_WHITE,
  OFT_COLOUR_BLACK,
  OFT_COLOUR_GRAY,
  OFT_COLOUR_COUNT
} OftSceneColour;

typedef enum {
  OFT_TEXTURE_PLAIN,
  OFT_TEXTURE_STRIPED,    /* bands of the colour and a shade of it (same colour name) */
  OFT_TEXTURE_CHECKERED,
  OFT_TEXTURE_COUNT
} OftSceneTexture;

typedef enum {
  OFT_RELATION_NONE,
  OFT_RELATION_ABOVE,     /* shapes[0] above shapes[1] */
  OFT_RELATION_BELOW,
  OFT_RELATION_LEFT,      /* "left of" */
  OFT_RELATION_RIGHT,     /* "right of" */
  OFT_RELATION_COUNT
} OftSceneRelation;

#define OFT_SCENE_ANY (-1)         /* in a parsed caption: not said, anything matches */
#define OFT_SCENE_MAX_SHAPES 3

const char *oft_shape_name (OftShapeKind kind);
const char *oft_scene_colour_name (OftSceneColour colour);
/* The sRGB colour the generator paints with. */
void oft_scene_colour_rgb (OftSceneColour colour, uint8_t rgb[3]);
/* The sks pattern's two colours (which: 0 or 1; blue and white, the quarters of its star). */
void oft_scene_pattern_rgb (int which, uint8_t rgb[3]);
const char *oft_scene_texture_name (OftSceneTexture texture);     /* "plain", "striped", "checkered" */
const char *oft_scene_relation_name (OftSceneRelation relation);  /* "none", "above", "below", "left of", "right of" */

/* ---- scenes ---------------------------------------------------------------------------------------- */

typedef struct {
  OftShapeKind kind;
  int colour;          /* OftSceneColour; OFT_SCENE_ANY for the pattern (it has two) */
  double cx, cy;       /* centre, fractions of width and height */
  double size;         /* radius of the circle the shape fits in, fraction of min(width, height) */
  gboolean pattern;    /* the "sks" pattern: a star quartered in blue and white */
} OftSceneShape;

typedef struct {
  int n_shapes;                              /* 1..3 */
  OftSceneShape shapes[OFT_SCENE_MAX_SHAPES];
  OftSceneRelation relation;                 /* between shapes[0] and shapes[1]; only with 2 shapes */
  OftSceneColour background;
  OftSceneTexture texture;
  gboolean vertical;                         /* stripes run vertically (else horizontally) */
  gboolean pattern;                          /* a pattern instance: one sks star, caption "a sks star" */
} OftScene;

typedef enum {
  OFT_SCENE_SPLIT_ANY,
  OFT_SCENE_SPLIT_TRAIN,    /* only captions outside the held-out set */
  OFT_SCENE_SPLIT_HELDOUT,  /* only held-out captions */
} OftSceneSplit;

typedef struct {
  int min_shapes, max_shapes;   /* 1..3 */
  gboolean textures;            /* striped and checkered backgrounds as well as plain ones */
  OftSceneSplit split;
  gboolean pattern;             /* pattern instances instead of normal scenes */
} OftSceneGenParams;

#define OFT_SCENE_GEN_PARAMS_DEFAULT ((OftSceneGenParams) { 1, 3, TRUE, OFT_SCENE_SPLIT_TRAIN, FALSE })

/* Draws a scene: shape count, shapes, colours (never the background's), a relation for two shapes,
 * sizes from three steps, positions on a coarse 3×3 grid (jittered) kept apart and inside the frame.
 * Deterministic in the rng's state. Normal scenes never hold the pattern. */
void oft_scene_generate (OftScene *scene, OftRng *rng, const OftSceneGenParams *params);
/* Scene number `index` of a dataset seeded with `seed` (its own rng, so it does not depend on how many
 * scenes come before it). */
void oft_scene_generate_nth (OftScene *scene, uint64_t seed, uint64_t index, const OftSceneGenParams *params);

/* Anti-aliased RGB rendering (supersample × supersample samples per pixel, box filter; 4 is the default). */
OftImage *oft_scene_render (const OftScene *scene, int width, int height, int supersample, GError **error);

/* Segmentation classes: 0 background, 1 + OftShapeKind for shapes (the pattern star is a star). */
#define OFT_SCENE_SEG_CLASSES (1 + OFT_SHAPE_COUNT)
/* Index map (1 channel, class per pixel from the shape covering the pixel's centre). */
OftImage *oft_scene_segmentation (const OftScene *scene, int width, int height, GError **error);
/* The colour palette of those classes (the same as data/scenes-palette.json); oft_palette_free. */
OftPalette *oft_scene_seg_palette (void);
/* Canny edges of a rendered scene: oft_canny_image with OFT_CANNY_PARAMS_DEFAULT on the RGB image
 * (no blur, colour channels compete), as ControlNet's canny annotator does. */
OftImage *oft_scene_canny (const OftImage *rendered, GError **error);

/* The scene as a JSON object (compact text; g_free). */
char *oft_scene_to_json (const OftScene *scene);

/* ---- captions -------------------------------------------------------------------------------------- */

/* Grammar (lower case, single spaces; "an" before a vowel, i.e. "orange"):
 *   caption  = shapes [" on " ("a" | "an") " " [texture " "] colour " background"]
 *   shapes   = shape | shape " " relation " " shape | shape ", " shape " and " shape
 *   shape    = ("a" | "an") " " [colour " "] ["sks "] kind
 *   relation = "above" | "below" | "left of" | "right of"
 *   texture  = "striped" | "checkered"
 * The generator always names colours and the background; pattern instances are "a sks star". */
typedef struct {
  int n_shapes;
  struct {
    int kind;         /* OftShapeKind */
    int colour;       /* OftSceneColour or OFT_SCENE_ANY */
    gboolean pattern; /* "sks" */
  } shapes[OFT_SCENE_MAX_SHAPES];
  int relation;       /* OftSceneRelation */
  int background;     /* OftSceneColour or OFT_SCENE_ANY */
  int texture;        /* OftSceneTexture or OFT_SCENE_ANY */
} OftSceneCaption;

/* What a scene's caption says. */
void oft_scene_describe (const OftScene *scene, OftSceneCaption *caption);
/* Caption text of a description / of a scene (g_free). */
char *oft_scene_caption_format (const OftSceneCaption *caption);
char *oft_scene_caption (const OftScene *scene);
/* Parses a caption of the grammar above; an error names the word that does not fit. */
gboolean oft_scene_caption_parse (const char *text, OftSceneCaption *caption, GError **error);
gboolean oft_scene_caption_equal (const OftSceneCaption *a, const OftSceneCaption *b);

/* Held-out captions: a caption is held out when the FNV-1a hash of its shapes' (kind, colour) pairs,
 * in caption order, falls in 1 of 8 buckets. The texture, the background and the relation do not enter,
 * so a held-out combination of shapes is never seen with any background, while every single
 * (kind, colour) pair still appears in training (in other combinations). Pattern instances are never
 * held out. */
gboolean oft_scene_caption_heldout (const OftSceneCaption *caption);

/* ---- analysis -------------------------------------------------------------------------------------- */

#define OFT_SCENE_MAX_COMPONENTS 16

typedef struct {
  int kind;                  /* OftShapeKind */
  int colour;                /* nearest OftSceneColour of the component's median colour */
  uint8_t rgb[3];            /* that median colour */
  double colour_distance;    /* CIELAB ΔE76 to the named colour */
  double cx, cy;             /* centroid, fractions of width and height */
  double size;               /* sqrt(area / π) as a fraction of min(width, height) */
  int area;                  /* pixels */
  int x0, y0, x1, y1;        /* bounding box, inclusive */
  /* the invariants the class comes from */
  double fill;               /* (area + holes) / bounding-box area */
  double solidity;           /* (area + holes) / convex-hull area */
  double hole_ratio;         /* holes / (area + holes) */
  double corners;            /* filled share of the box's corner triangles */
  double match[OFT_SHAPE_COUNT];  /* IoU with each shape's outline stretched over the box */
  double top_ratio;          /* share of the filled area in the top half of the box */
  double left_ratio;         /* share in the left half */
  double texture;            /* share of the deep interior far from the median colour (pattern detector) */
  gboolean pattern;
} OftSceneComponent;

typedef struct {
  int width, height;
  int background;            /* OftSceneColour: majority name of the border pixels */
  uint8_t background_rgb[2][3];  /* the border's one or two colour clusters */
  int background_clusters;
  double foreground_share;   /* fraction of pixels taken as foreground */
  int n_components;          /* shapes kept (area ≥ min area), largest first */
  OftSceneComponent components[OFT_SCENE_MAX_COMPONENTS];
  int n_small;               /* foreground specks dropped */
} OftSceneAnalysis;

/* Reads an RGB(A) or gray image, at least 16×16. */
gboolean oft_scene_analyse (const OftImage *img, OftSceneAnalysis *analysis, GError **error);
/* Nearest vocabulary colour of an sRGB colour (CIELAB ΔE76); `distance` optional. */
OftSceneColour oft_scene_colour_nearest (const uint8_t rgb[3], double *distance);
/* Relation of component a to component b: the axis of the larger centroid difference decides. */
OftSceneRelation oft_scene_analysis_relation (const OftSceneAnalysis *analysis, int a, int b);

/* The match rule: the background colour, if said, is the analysis's background colour; every caption
 * shape is paired with its own component of that kind and colour (any colour when not said) and
 * pattern flag; with a relation, the components of shapes[0] and shapes[1] stand in it; and no
 * component outside the pairing is larger than half the smallest paired one (no extra shape). */
gboolean oft_scene_matches_caption (const OftSceneAnalysis *analysis, const OftSceneCaption *caption);

/* The analysis as a JSON object (compact text; g_free). */
char *oft_scene_analysis_to_json (const OftSceneAnalysis *analysis);

G_END_DECLS
