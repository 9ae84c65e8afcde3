/* The scene generator: random scenes of 1–3 shapes on plain or textured backgrounds, their
 * anti-aliased rendering and their condition images. */
#include "scenes-private.h"
#include "oft/error.h"
#include <math.h>
#include <string.h>

static const char *const shape_names[OFT_SHAPE_COUNT] = {
  "circle", "square", "triangle", "star", "ring", "diamond",
};
static const char *const colour_names[OFT_COLOUR_COUNT] = {
  "red", "green", "blue", "yellow", "orange", "purple", "white", "black", "gray",
};
/* Saturated, well separated in CIELAB (ΔE ≥ 40 between any two), so that a diffusion model's drift
 * does not move one onto another. */
static const uint8_t colour_rgb[OFT_COLOUR_COUNT][3] = {
  { 215, 35, 35 }, { 40, 160, 60 }, { 35, 75, 210 }, { 240, 210, 40 }, { 240, 135, 25 },
  { 128, 0, 128 }, { 240, 240, 240 }, { 25, 25, 25 }, { 128, 128, 128 },
};
static const char *const texture_names[OFT_TEXTURE_COUNT] = { "plain", "striped", "checkered" };
static const char *const relation_names[OFT_RELATION_COUNT] = { "none", "above", "below", "left of", "right of" };

/* The sks pattern: a star quartered in blue and white. Vocabulary colours and quarters, because the
 * default model's first stage (8 px latent cells at 64×64) carries neither colours it never saw nor
 * cells finer than its grid: a magenta/cyan checker of 5–12 px cells came back as a blur (README). */
const uint8_t *const scene_pattern_rgb[2] = { colour_rgb[OFT_COLOUR_BLUE], colour_rgb[OFT_COLOUR_WHITE] };

const char *
oft_shape_name (OftShapeKind kind)
{
  return (unsigned) kind < OFT_SHAPE_COUNT ? shape_names[kind] : "unknown";
}

const char *
oft_scene_colour_name (OftSceneColour colour)
{
  return (unsigned) colour < OFT_COLOUR_COUNT ? colour_names[colour] : "any";
}

void
oft_scene_colour_rgb (OftSceneColour colour, uint8_t rgb[3])
{
  for (int c = 0; c < 3; c++)
    rgb[c] = (unsigned) colour < OFT_COLOUR_COUNT ? colour_rgb[colour][c] : 0;
}

void
oft_scene_pattern_rgb (int which, uint8_t rgb[3])
{
  memcpy (rgb, scene_pattern_rgb[which & 1], 3);
}

const char *
oft_scene_texture_name (OftSceneTexture texture)
{
  return (unsigned) texture < OFT_TEXTURE_COUNT ? texture_names[texture] : "any";
}

const char *
oft_scene_relation_name (OftSceneRelation relation)
{
  return (unsigned) relation < OFT_RELATION_COUNT ? relation_names[relation] : "none";
}

void
scene_shade_rgb (OftSceneColour colour, uint8_t rgb[3])
{
  uint8_t base[3];
  oft_scene_colour_rgb (colour, base);
  double luma = 0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2];
  for (int c = 0; c < 3; c++)
    rgb[c] = (uint8_t) lround (luma > 100 ? base[c] * 0.82 : base[c] * 0.85 + 255 * 0.15);
}

/* ---- geometry ----------------------------------------------------------------------------------------- */

#define STAR_INNER 0.4

gboolean
scene_shape_contains (OftShapeKind kind, double u, double v)
{
  if (fabs (u) > 1 || fabs (v) > 1)  /* every shape lies in the unit circle */
    return FALSE;
  switch (kind)
    {
    case OFT_SHAPE_CIRCLE:
      return u * u + v * v <= 0.85 * 0.85;
    case OFT_SHAPE_SQUARE:
      return fabs (u) <= 0.7 && fabs (v) <= 0.7;
    case OFT_SHAPE_TRIANGLE:  /* circumradius 1, apex (0, −1), base at v = 0.5 */
      return v <= 0.5 && fabs (u) * sqrt (3.0) <= v + 1;
    case OFT_SHAPE_RING:
      {
        double r2 = u * u + v * v;
        return r2 <= 0.9 * 0.9 && r2 >= 0.5 * 0.5;
      }
    case OFT_SHAPE_DIAMOND:
      return fabs (u) / 0.7 + fabs (v) <= 1;
    case OFT_SHAPE_STAR:
      {
        /* even–odd test against the ten-vertex outline (outer points at radius 1, the first straight up,
         * inner ones at STAR_INNER between them) */
        static double vx[10], vy[10];
        static gsize init = 0;
        if (g_once_init_enter (&init))
          {
            for (int i = 0; i < 10; i++)
              {
                double r = i % 2 ? STAR_INNER : 1, a = i * G_PI / 5;
                vx[i] = r * sin (a), vy[i] = -r * cos (a);
              }
            g_once_init_leave (&init, 1);
          }
        gboolean in = FALSE;
        for (int i = 0, j = 9; i < 10; j = i++)
          if ((vy[i] > v) != (vy[j] > v) && u < (vx[j] - vx[i]) * (v - vy[i]) / (vy[j] - vy[i]) + vx[i])
            in = !in;
        return in;
      }
    default:
      return FALSE;
    }
}

/* ---- generation --------------------------------------------------------------------------------------- */

static int
rng_int (OftRng *rng, int n)
{
  return (int) (oft_rng_next (rng) % (uint64_t) n);
}

static double
rng_range (OftRng *rng, double lo, double hi)
{
  return lo + (hi - lo) * oft_rng_uniform (rng);
}

#define MARGIN 0.03   /* between a shape's circle and the frame */
#define GAP 0.05      /* between two shapes' circles: 3 px at 64×64 keeps them separate components */
#define JITTER 0.03

static const double grid[3] = { 0.2, 0.5, 0.8 };
static const double single_sizes[3] = { 0.2, 0.26, 0.32 };
static const double multi_sizes[3] = { 0.13, 0.155, 0.18 };
static const double pattern_sizes[3] = { 0.26, 0.32, 0.38 };

static double
clamp_in_frame (double c, double size)
{
  return CLAMP (c, size + MARGIN, 1 - size - MARGIN);
}

/* Two grid cells whose offset makes `relation` unambiguous: the relation's axis has the larger offset. */
static void
pick_cells (OftRng *rng, OftSceneRelation relation, int cells[2][2])
{
  int pairs[81][4], n = 0;
  for (int a = 0; a < 9; a++)
    for (int b = 0; b < 9; b++)
      {
        int ra = a / 3, ca = a % 3, rb = b / 3, cb = b % 3;
        int dr = rb - ra, dc = cb - ca;  /* b relative to a */
        gboolean ok = FALSE;
        switch (relation)
          {
          case OFT_RELATION_ABOVE: ok = dr > 0 && abs (dc) < dr; break;   /* a above b */
          case OFT_RELATION_BELOW: ok = dr < 0 && abs (dc) < -dr; break;
          case OFT_RELATION_LEFT: ok = dc > 0 && abs (dr) < dc; break;
          case OFT_RELATION_RIGHT: ok = dc < 0 && abs (dr) < -dc; break;
          default: ok = a != b; break;
          }
        if (ok)
          {
            pairs[n][0] = ra, pairs[n][1] = ca, pairs[n][2] = rb, pairs[n][3] = cb;
            n++;
          }
      }
  int k = rng_int (rng, n);
  cells[0][0] = pairs[k][0], cells[0][1] = pairs[k][1];
  cells[1][0] = pairs[k][2], cells[1][1] = pairs[k][3];
}

static gboolean
relation_holds (const OftSceneShape *a, const OftSceneShape *b, OftSceneRelation relation)
{
  double dx = b->cx - a->cx, dy = b->cy - a->cy;  /* b relative to a */
  switch (relation)
    {
    case OFT_RELATION_ABOVE: return dy > fabs (dx) + GAP;
    case OFT_RELATION_BELOW: return -dy > fabs (dx) + GAP;
    case OFT_RELATION_LEFT: return dx > fabs (dy) + GAP;
    case OFT_RELATION_RIGHT: return -dx > fabs (dy) + GAP;
    default: return TRUE;
    }
}

static gboolean
try_generate (OftScene *s, OftRng *rng, const OftSceneGenParams *p, int n_shapes)
{
  memset (s, 0, sizeof *s);
  if (p->pattern)
    {
      s->pattern = TRUE;
      s->n_shapes = 1;
      s->background = rng_int (rng, OFT_COLOUR_COUNT - 2);  /* never the pattern's blue or white */
      s->background += s->background >= OFT_COLOUR_BLUE;
      s->background += s->background >= OFT_COLOUR_WHITE;
      s->texture = OFT_TEXTURE_PLAIN;
      OftSceneShape *sh = &s->shapes[0];
      sh->kind = OFT_SHAPE_STAR;
      sh->colour = OFT_SCENE_ANY;
      sh->pattern = TRUE;
      sh->size = pattern_sizes[rng_int (rng, 3)];
      sh->cx = rng_range (rng, sh->size + MARGIN, 1 - sh->size - MARGIN);
      sh->cy = rng_range (rng, sh->size + MARGIN, 1 - sh->size - MARGIN);
      return TRUE;
    }
  s->n_shapes = n_shapes;
  s->background = rng_int (rng, OFT_COLOUR_COUNT);
  if (p->textures)
    {
      int t = rng_int (rng, 4);  /* plain half the time */
      s->texture = t < 2 ? OFT_TEXTURE_PLAIN : t == 2 ? OFT_TEXTURE_STRIPED : OFT_TEXTURE_CHECKERED;
      s->vertical = rng_int (rng, 2);
    }
  for (int i = 0; i < s->n_shapes; i++)
    {
      OftSceneShape *sh = &s->shapes[i];
      sh->kind = rng_int (rng, OFT_SHAPE_COUNT);
      sh->colour = rng_int (rng, OFT_COLOUR_COUNT - 1);
      if (sh->colour >= (int) s->background)  /* any colour but the background's */
        sh->colour++;
    }
  if (s->n_shapes == 1)
    {
      OftSceneShape *sh = &s->shapes[0];
      sh->size = single_sizes[rng_int (rng, 3)];
      sh->cx = rng_range (rng, sh->size + MARGIN, 1 - sh->size - MARGIN);
      sh->cy = rng_range (rng, sh->size + MARGIN, 1 - sh->size - MARGIN);
      return TRUE;
    }
  int cells[OFT_SCENE_MAX_SHAPES][2];
  if (s->n_shapes == 2)
    {
      s->relation = OFT_RELATION_ABOVE + rng_int (rng, 4);
      pick_cells (rng, s->relation, cells);
    }
  else
    {
      int order[9];
      for (int i = 0; i < 9; i++)
        order[i] = i;
      for (int i = 0; i < 3; i++)  /* partial Fisher–Yates: three distinct cells */
        {
          int j = i + rng_int (rng, 9 - i), t = order[i];
          order[i] = order[j], order[j] = t;
          cells[i][0] = order[i] / 3, cells[i][1] = order[i] % 3;
        }
    }
  for (int i = 0; i < s->n_shapes; i++)
    {
      OftSceneShape *sh = &s->shapes[i];
      sh->size = multi_sizes[rng_int (rng, 3)];
      sh->cx = clamp_in_frame (grid[cells[i][1]] + rng_range (rng, -JITTER, JITTER), sh->size);
      sh->cy = clamp_in_frame (grid[cells[i][0]] + rng_range (rng, -JITTER, JITTER), sh->size);
    }
  for (int i = 0; i < s->n_shapes; i++)
    for (int j = i + 1; j < s->n_shapes; j++)
      {
        const OftSceneShape *a = &s->shapes[i], *b = &s->shapes[j];
        if (hypot (a->cx - b->cx, a->cy - b->cy) < a->size + b->size + GAP)
          return FALSE;
      }
  return s->n_shapes != 2 || relation_holds (&s->shapes[0], &s->shapes[1], s->relation);
}

void
oft_scene_generate (OftScene *scene, OftRng *rng, const OftSceneGenParams *params)
{
  OftSceneGenParams p = params ? *params : OFT_SCENE_GEN_PARAMS_DEFAULT;
  /* the shape count is drawn once, so that rejected layouts (more often with three shapes) do not skew it */
  int lo = CLAMP (p.min_shapes, 1, OFT_SCENE_MAX_SHAPES), hi = CLAMP (p.max_shapes, lo, OFT_SCENE_MAX_SHAPES);
  int n_shapes = lo + rng_int (rng, hi - lo + 1);
  for (;;)
    {
      if (!try_generate (scene, rng, &p, n_shapes))
        continue;
      if (p.split == OFT_SCENE_SPLIT_ANY || scene->pattern)
        return;
      OftSceneCaption cap;
      oft_scene_describe (scene, &cap);
      if (oft_scene_caption_heldout (&cap) == (p.split == OFT_SCENE_SPLIT_HELDOUT))
        return;
    }
}

void
oft_scene_generate_nth (OftScene *scene, uint64_t seed, uint64_t index, const OftSceneGenParams *params)
{
  OftRng rng;
  /* one stream per (seed, index): mix the index in through a second splitmix round */
  oft_rng_seed (&rng, seed ^ (index * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull));
  oft_scene_generate (scene, &rng, params);
}

/* ---- rendering ---------------------------------------------------------------------------------------- */

static void
background_at (const OftScene *s, double x, double y, double unit, const uint8_t base[3], const uint8_t shade[3],
               uint8_t out[3])
{
  gboolean alt = FALSE;
  double period = 0.125 * unit;  /* 8 px at 64×64 */
  if (s->texture == OFT_TEXTURE_STRIPED)
    alt = ((int) floor ((s->vertical ? x : y) / period * 2)) & 1;
  else if (s->texture == OFT_TEXTURE_CHECKERED)
    alt = ((int) floor (x / period) + (int) floor (y / period)) & 1;
  memcpy (out, alt ? shade : base, 3);
}

/* Index of the topmost shape covering image point (x, y) in pixels, or −1; `alt` gets the pattern's
 * colour there (0 in the top-left and bottom-right quarters, 1 in the others). */
static int
shape_at (const OftScene *s, double x, double y, int width, int height, int *alt)
{
  double unit = MIN (width, height);
  for (int i = s->n_shapes - 1; i >= 0; i--)
    {
      const OftSceneShape *sh = &s->shapes[i];
      double r = sh->size * unit;
      double u = (x - sh->cx * width) / r, v = (y - sh->cy * height) / r;
      if (scene_shape_contains (sh->kind, u, v))
        {
          if (alt)
            *alt = (u >= 0) != (v >= 0);
          return i;
        }
    }
  return -1;
}

static gboolean
check_size (int width, int height, int supersample, GError **error)
{
  if (width < 8 || height < 8 || width > 8192 || height > 8192 || supersample < 1 || supersample > 16)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "scene rendering: %d×%d with %d× supersampling: "
                   "expected sides of 8..8192 pixels and supersampling of 1..16", width, height, supersample);
      return FALSE;
    }
  return TRUE;
}

OftImage *
oft_scene_render (const OftScene *scene, int width, int height, int supersample, GError **error)
{
  if (!check_size (width, height, supersample, error))
    return NULL;
  OftImage *img = oft_image_new (width, height, 3);
  uint8_t base[3], shade[3], colours[OFT_SCENE_MAX_SHAPES][3];
  oft_scene_colour_rgb (scene->background, base);
  scene_shade_rgb (scene->background, shade);
  for (int i = 0; i < scene->n_shapes; i++)
    oft_scene_colour_rgb (scene->shapes[i].colour, colours[i]);
  double unit = MIN (width, height);
  int ss = supersample;
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++)
      {
        uint8_t *o = img->pixels + ((size_t) y * width + x) * 3;
        /* pixels away from every shape and inside one texture cell are flat: no supersampling */
        gboolean near = FALSE;
        for (int i = 0; i < scene->n_shapes && !near; i++)
          {
            const OftSceneShape *sh = &scene->shapes[i];
            double r = sh->size * unit + 1.5;
            near = fabs (x + 0.5 - sh->cx * width) < r && fabs (y + 0.5 - sh->cy * height) < r;
          }
        if (!near && unit >= 16)  /* texture cells of at least a pixel: equal corners mean one cell */
          {
            uint8_t c0[3], c1[3];
            background_at (scene, x + 0.01, y + 0.01, unit, base, shade, c0);
            background_at (scene, x + 0.99, y + 0.99, unit, base, shade, c1);
            if (memcmp (c0, c1, 3) == 0 && (scene->texture != OFT_TEXTURE_CHECKERED || (background_at
                (scene, x + 0.99, y + 0.01, unit, base, shade, c1), memcmp (c0, c1, 3) == 0)))
              {
                memcpy (o, c0, 3);
                continue;
              }
          }
        int sum[3] = { 0, 0, 0 };
        for (int sy = 0; sy < ss; sy++)
          for (int sx = 0; sx < ss; sx++)
            {
              double px = x + (sx + 0.5) / ss, py = y + (sy + 0.5) / ss;
              int alt = 0, k = shape_at (scene, px, py, width, height, &alt);
              uint8_t c[3];
              if (k < 0)
                background_at (scene, px, py, unit, base, shade, c);
              else
                memcpy (c, scene->shapes[k].pattern ? scene_pattern_rgb[alt] : colours[k], 3);
              for (int ch = 0; ch < 3; ch++)
                sum[ch] += c[ch];
            }
        for (int ch = 0; ch < 3; ch++)
          o[ch] = (uint8_t) ((sum[ch] + ss * ss / 2) / (ss * ss));
      }
  return img;
}

OftImage *
oft_scene_segmentation (const OftScene *scene, int width, int height, GError **error)
{
  if (!check_size (width, height, 1, error))
    return NULL;
  OftImage *img = oft_image_new (width, height, 1);
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++)
      {
        int k = shape_at (scene, x + 0.5, y + 0.5, width, height, NULL);
        img->pixels[(size_t) y * width + x] = k < 0 ? 0 : 1 + scene->shapes[k].kind;
      }
  return img;
}

/* Dark background, bright distinct hues for the shape classes (also data/scenes-palette.json). */
static const uint8_t seg_rgb[OFT_SCENE_SEG_CLASSES][3] = {
  { 0, 0, 0 }, { 255, 64, 64 }, { 64, 96, 255 }, { 64, 224, 64 }, { 255, 224, 32 }, { 224, 64, 255 },
  { 32, 224, 224 },
};

OftPalette *
oft_scene_seg_palette (void)
{
  OftPalette *pal = g_new0 (OftPalette, 1);
  pal->n = OFT_SCENE_SEG_CLASSES;
  pal->names = g_new0 (char *, pal->n);
  pal->rgb = g_new (uint8_t, pal->n * 3);
  for (int k = 0; k < pal->n; k++)
    {
      pal->names[k] = g_strdup (k == 0 ? "background" : shape_names[k - 1]);
      memcpy (pal->rgb + k * 3, seg_rgb[k], 3);
    }
  return pal;
}

OftImage *
oft_scene_canny (const OftImage *rendered, GError **error)
{
  OftCannyParams p = OFT_CANNY_PARAMS_DEFAULT;
  return oft_canny_image (rendered, &p, FALSE, FALSE, error);
}

/* ---- JSON --------------------------------------------------------------------------------------------- */

/* ",\"name\":value" with a '.' decimal point whatever the locale */
static void
json_num (GString *o, const char *name, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_string_append_printf (o, ",\"%s\":%s", name, g_ascii_formatd (buf, sizeof buf, "%.4f", v));
}

char *
oft_scene_to_json (const OftScene *s)
{
  GString *o = g_string_new ("{\"shapes\":[");
  for (int i = 0; i < s->n_shapes; i++)
    {
      const OftSceneShape *sh = &s->shapes[i];
      g_string_append_printf (o, "%s{\"kind\":\"%s\",\"colour\":\"%s\"", i ? "," : "", oft_shape_name (sh->kind),
                              sh->pattern ? "pattern" : oft_scene_colour_name (sh->colour));
      json_num (o, "cx", sh->cx);
      json_num (o, "cy", sh->cy);
      json_num (o, "size", sh->size);
      g_string_append_printf (o, ",\"pattern\":%s}", sh->pattern ? "true" : "false");
    }
  g_string_append_printf (o, "],\"relation\":\"%s\",\"background\":\"%s\",\"texture\":\"%s\",",
                          oft_scene_relation_name (s->relation), oft_scene_colour_name (s->background),
                          oft_scene_texture_name (s->texture));
  if (s->texture == OFT_TEXTURE_STRIPED)
    g_string_append_printf (o, "\"stripes\":\"%s\",", s->vertical ? "vertical" : "horizontal");
  g_string_append_printf (o, "\"pattern\":%s}", s->pattern ? "true" : "false");
  return g_string_free (o, FALSE);
}
