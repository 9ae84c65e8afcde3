/* Procedural scenes: generator determinism, the caption grammar, token lengths with the golden CLIP
 * tokenizer, the held-out split, the condition images, and the analyser's accuracy on renders whose
 * truth is known (clean, noisy + blurred, wrong captions, the sks pattern). */
#include "test-common.h"
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer (~4× slower) the accuracy runs use fewer scenes to stay within the suite's time;
 * the normal build measures the full counts. */
#define ACCURACY_SCENES (UNDER_ASAN ? 150 : 500)

static OftSceneGenParams
params (int shapes, gboolean pattern)
{
  OftSceneGenParams p = OFT_SCENE_GEN_PARAMS_DEFAULT;
  p.split = OFT_SCENE_SPLIT_ANY;
  if (shapes)
    p.min_shapes = p.max_shapes = shapes;
  p.pattern = pattern;
  return p;
}

static OftImage *
render (const OftScene *s, int w, int h)
{
  GError *error = NULL;
  OftImage *img = oft_scene_render (s, w, h, 4, &error);
  g_assert_no_error (error);
  return img;
}

/* A 3×3 Gaussian blur (σ = 0.8) then Gaussian noise of σ = 8 levels, rounded and clipped. */
static void
degrade (OftImage *img, uint64_t seed)
{
  int n = img->width * img->height * 3;
  uint8_t *t = g_malloc (n);
  GError *error = NULL;
  g_assert_true (oft_gauss_blur (t, img->pixels, img->width, img->height, 3, 3, 0.8, &error));
  g_assert_no_error (error);
  float *z = g_new (float, n + 1);
  OftRng rng;
  oft_rng_seed (&rng, seed);
  oft_rng_normal (&rng, z, n + 1);
  for (int i = 0; i < n; i++)
    img->pixels[i] = (uint8_t) CLAMP (lround (t[i] + 8.0 * z[i]), 0, 255);
  g_free (z);
  g_free (t);
}

static void
analyse (const OftImage *img, OftSceneAnalysis *a)
{
  GError *error = NULL;
  g_assert_true (oft_scene_analyse (img, a, &error));
  g_assert_no_error (error);
}

/* ---- generator ------------------------------------------------------------------------------------- */

static void
test_determinism (void)
{
  OftSceneGenParams p = OFT_SCENE_GEN_PARAMS_DEFAULT;
  for (int i = 0; i < 50; i++)
    {
      OftScene a, b, c;
      oft_scene_generate_nth (&a, 1234, i, &p);
      oft_scene_generate_nth (&b, 1234, i, &p);
      oft_scene_generate_nth (&c, 1235, i, &p);
      g_assert_cmpmem (&a, sizeof a, &b, sizeof b);
      g_assert_true (memcmp (&a, &c, sizeof a) != 0);
      OftImage *x = render (&a, 64, 64), *y = render (&b, 64, 64);
      g_assert_cmpmem (x->pixels, 64 * 64 * 3, y->pixels, 64 * 64 * 3);
      oft_image_free (x);
      oft_image_free (y);
    }
  /* the rng form: the same seed gives the same sequence */
  OftRng r1, r2;
  oft_rng_seed (&r1, 99);
  oft_rng_seed (&r2, 99);
  for (int i = 0; i < 20; i++)
    {
      OftScene a, b;
      oft_scene_generate (&a, &r1, &p);
      oft_scene_generate (&b, &r2, &p);
      g_assert_cmpmem (&a, sizeof a, &b, sizeof b);
    }
}

/* Geometry the analyser relies on: shapes inside the frame, apart from each other, relations unambiguous,
 * shape colours never the background's, patterns only when asked for. */
static void
test_generator_invariants (void)
{
  int kinds[OFT_SHAPE_COUNT] = { 0 }, textures[OFT_TEXTURE_COUNT] = { 0 }, counts[4] = { 0 };
  for (int i = 0; i < 3000; i++)
    {
      OftSceneGenParams p = params (0, FALSE);
      OftScene s;
      oft_scene_generate_nth (&s, 5, i, &p);
      g_assert_cmpint (s.n_shapes, >=, 1);
      g_assert_cmpint (s.n_shapes, <=, 3);
      g_assert_false (s.pattern);
      counts[s.n_shapes]++;
      textures[s.texture]++;
      for (int k = 0; k < s.n_shapes; k++)
        {
          const OftSceneShape *a = &s.shapes[k];
          kinds[a->kind]++;
          g_assert_false (a->pattern);
          g_assert_cmpint (a->colour, !=, s.background);
          g_assert_cmpfloat (a->cx - a->size, >=, 0.02);
          g_assert_cmpfloat (a->cx + a->size, <=, 0.98);
          g_assert_cmpfloat (a->cy - a->size, >=, 0.02);
          g_assert_cmpfloat (a->cy + a->size, <=, 0.98);
          for (int j = k + 1; j < s.n_shapes; j++)
            g_assert_cmpfloat (hypot (a->cx - s.shapes[j].cx, a->cy - s.shapes[j].cy), >=,
                               a->size + s.shapes[j].size + 0.049);
        }
      if (s.n_shapes == 2)
        {
          double dx = s.shapes[1].cx - s.shapes[0].cx, dy = s.shapes[1].cy - s.shapes[0].cy;
          OftSceneRelation want = fabs (dy) > fabs (dx) ? (dy > 0 ? OFT_RELATION_ABOVE : OFT_RELATION_BELOW)
                                                        : (dx > 0 ? OFT_RELATION_LEFT : OFT_RELATION_RIGHT);
          g_assert_cmpint (s.relation, ==, want);
        }
      else
        g_assert_cmpint (s.relation, ==, OFT_RELATION_NONE);
    }
  for (int k = 0; k < OFT_SHAPE_COUNT; k++)
    g_assert_cmpint (kinds[k], >, 500);  /* ~6000 shapes over 6 kinds */
  for (int t = 0; t < OFT_TEXTURE_COUNT; t++)
    g_assert_cmpint (textures[t], >, 500);
  for (int n = 1; n <= 3; n++)
    g_assert_cmpint (counts[n], >, 800);
}

/* The shade of a textured background keeps its colour's name, so "a striped red background" is red. */
static void
test_colours (void)
{
  for (int c = 0; c < OFT_COLOUR_COUNT; c++)
    {
      uint8_t rgb[3];
      oft_scene_colour_rgb (c, rgb);
      g_assert_cmpint (oft_scene_colour_nearest (rgb, NULL), ==, c);
      OftScene s = { .n_shapes = 1, .background = c, .texture = OFT_TEXTURE_CHECKERED,
                     .shapes = { { OFT_SHAPE_CIRCLE, (c + 1) % OFT_COLOUR_COUNT, 0.5, 0.5, 0.2, FALSE } } };
      OftImage *img = render (&s, 64, 64);
      OftSceneAnalysis a;
      analyse (img, &a);
      g_assert_cmpint (a.background, ==, c);
      oft_image_free (img);
    }
}

/* ---- captions -------------------------------------------------------------------------------------- */

static void
test_caption_round_trip (void)
{
  for (int kind = 0; kind <= 4; kind++)
    for (int i = 0; i < 400; i++)
      {
        OftSceneGenParams p = params (kind == 4 ? 0 : kind, kind == 4);
        OftScene s;
        oft_scene_generate_nth (&s, 17, i, &p);
        OftSceneCaption want, got;
        oft_scene_describe (&s, &want);
        char *text = oft_scene_caption (&s);
        GError *error = NULL;
        g_assert_true (oft_scene_caption_parse (text, &got, &error));
        g_assert_no_error (error);
        if (!oft_scene_caption_equal (&got, &want))
          g_test_fail_printf ("caption \"%s\" parses to something else than its scene", text);
        char *again = oft_scene_caption_format (&got);
        g_assert_cmpstr (again, ==, text);
        if (s.pattern)
          g_assert_cmpstr (text, ==, "a sks star");
        g_free (again);
        g_free (text);
      }
  /* written by hand */
  OftSceneCaption c;
  g_assert_true (oft_scene_caption_parse ("A green star on a striped white background", &c, NULL));
  g_assert_cmpint (c.n_shapes, ==, 1);
  g_assert_cmpint (c.shapes[0].kind, ==, OFT_SHAPE_STAR);
  g_assert_cmpint (c.shapes[0].colour, ==, OFT_COLOUR_GREEN);
  g_assert_cmpint (c.background, ==, OFT_COLOUR_WHITE);
  g_assert_cmpint (c.texture, ==, OFT_TEXTURE_STRIPED);
  g_assert_true (oft_scene_caption_parse ("a red circle left of an orange square on an orange background", &c, NULL));
  g_assert_cmpint (c.relation, ==, OFT_RELATION_LEFT);
  g_assert_cmpint (c.shapes[1].colour, ==, OFT_COLOUR_ORANGE);
  g_assert_cmpint (c.texture, ==, OFT_TEXTURE_PLAIN);
  g_assert_true (oft_scene_caption_parse ("a sks star on a blue background", &c, NULL));
  g_assert_true (c.shapes[0].pattern);
  g_assert_cmpint (c.shapes[0].colour, ==, OFT_SCENE_ANY);
  g_assert_true (oft_scene_caption_parse ("a ring", &c, NULL));
  g_assert_cmpint (c.background, ==, OFT_SCENE_ANY);
  const char *bad[] = { "", "a red", "red circle", "a red circle above", "a red circle on a background",
                        "a red circle, a blue square", "a purple hexagon", "a red circle on a blue backdrop",
                        "a red circle left a blue square", "a red circle on a blue background please",
                        "a red circle, a blue square, a star and a ring" };
  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      GError *error = NULL;
      g_assert_false (oft_scene_caption_parse (bad[i], &c, &error));
      g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
      g_assert_nonnull (strstr (error->message, "expected"));
      g_clear_error (&error);
    }
}

/* Every caption fits CLIP's context easily: ≤ 30 tokens with BOS and EOS. Vocabulary words are one
 * token each, except "checkered" (check + ered). */
static void
test_caption_tokens (void)
{
  char *dir = test_golden_path ("pipeline/tokenizer");
  GError *error = NULL;
  OftTokenizer *tok = oft_tokenizer_load_dir (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  const char *words[] = { "a", "an", "on", "background", "above", "below", "left", "right", "of", "and", "sks",
                          "striped", "checkered" };
  for (size_t i = 0; i < G_N_ELEMENTS (words) + OFT_SHAPE_COUNT + OFT_COLOUR_COUNT; i++)
    {
      const char *w = i < G_N_ELEMENTS (words) ? words[i] : i < G_N_ELEMENTS (words) + OFT_SHAPE_COUNT
                      ? oft_shape_name (i - G_N_ELEMENTS (words))
                      : oft_scene_colour_name (i - G_N_ELEMENTS (words) - OFT_SHAPE_COUNT);
      GArray *ids = oft_tokenizer_encode (tok, w);
      g_assert_cmpuint (ids->len, ==, strcmp (w, "checkered") == 0 ? 2 : 1);
      g_array_free (ids, TRUE);
    }
  int longest = 0;
  for (int kind = 0; kind <= 4; kind++)
    for (int i = 0; i < 300; i++)
      {
        OftSceneGenParams p = params (kind == 4 ? 0 : kind, kind == 4);
        OftScene s;
        oft_scene_generate_nth (&s, 23, i, &p);
        char *text = oft_scene_caption (&s);
        int32_t ids[OFT_CLIP_MAX_LENGTH];
        longest = MAX (longest, oft_tokenizer_encode_padded (tok, text, ids, OFT_CLIP_MAX_LENGTH));
        g_free (text);
      }
  /* the longest the grammar allows: three shapes, a texture */
  const char *worst = "an orange triangle, a yellow diamond and a purple square on a checkered orange background";
  int32_t ids[OFT_CLIP_MAX_LENGTH];
  int worst_len = oft_tokenizer_encode_padded (tok, worst, ids, OFT_CLIP_MAX_LENGTH);
  g_test_message ("longest generated caption: %d tokens; longest possible: %d (with BOS/EOS)", longest, worst_len);
  g_assert_cmpint (longest, <=, worst_len);
  g_assert_cmpint (worst_len, <=, 30);
  oft_tokenizer_free (tok);
}

static void
test_split (void)
{
  int heldout_any = 0, n = 2000;
  int pair_seen[OFT_SHAPE_COUNT][OFT_COLOUR_COUNT] = { { 0 } };
  for (int i = 0; i < n; i++)
    {
      OftSceneGenParams p = params (0, FALSE);
      OftScene s;
      OftSceneCaption c;
      oft_scene_generate_nth (&s, 31, i, &p);
      oft_scene_describe (&s, &c);
      heldout_any += oft_scene_caption_heldout (&c);
      p.split = OFT_SCENE_SPLIT_TRAIN;
      oft_scene_generate_nth (&s, 31, i, &p);
      oft_scene_describe (&s, &c);
      g_assert_false (oft_scene_caption_heldout (&c));
      for (int k = 0; k < c.n_shapes; k++)
        pair_seen[c.shapes[k].kind][c.shapes[k].colour]++;
      p.split = OFT_SCENE_SPLIT_HELDOUT;
      oft_scene_generate_nth (&s, 31, i, &p);
      oft_scene_describe (&s, &c);
      g_assert_true (oft_scene_caption_heldout (&c));
    }
  /* 1 bucket in 8: 12.5 % expected, binomial spread over 2000 draws is ~0.7 % */
  g_test_message ("held-out share of unrestricted captions: %.1f %%", 100.0 * heldout_any / n);
  g_assert_cmpfloat (heldout_any, >, 0.08 * n);
  g_assert_cmpfloat (heldout_any, <, 0.18 * n);
  /* held-out combinations are new combinations of known words: every (shape, colour) is trained */
  for (int k = 0; k < OFT_SHAPE_COUNT; k++)
    for (int c = 0; c < OFT_COLOUR_COUNT; c++)
      g_assert_cmpint (pair_seen[k][c], >, 0);
  /* pattern instances are never held out */
  OftSceneGenParams p = params (0, TRUE);
  p.split = OFT_SCENE_SPLIT_TRAIN;
  OftScene s;
  oft_scene_generate_nth (&s, 31, 0, &p);
  g_assert_true (s.pattern);
}

/* ---- conditions ------------------------------------------------------------------------------------ */

static void
test_conditions (void)
{
  GError *error = NULL;
  /* the palette file in data/ is the built-in one */
  char *path = oft_data_path ("scenes-palette.json", &error);
  g_assert_no_error (error);
  OftPalette *file = oft_palette_load (path, &error), *pal = oft_scene_seg_palette ();
  g_assert_no_error (error);
  g_free (path);
  g_assert_cmpint (file->n, ==, OFT_SCENE_SEG_CLASSES);
  g_assert_cmpint (pal->n, ==, file->n);
  g_assert_cmpmem (pal->rgb, pal->n * 3, file->rgb, file->n * 3);
  for (int k = 0; k < pal->n; k++)
    g_assert_cmpstr (pal->names[k], ==, file->names[k]);
  oft_palette_free (file);
  oft_palette_free (pal);

  int near = 0, edges = 0;
  for (int i = 0; i < 200; i++)
    {
      OftSceneGenParams p = params (0, i % 10 == 0);
      OftScene s;
      oft_scene_generate_nth (&s, 41, i, &p);
      int w = i % 3 == 0 ? 96 : 64, h = i % 3 == 0 ? 80 : 64;
      OftImage *img = render (&s, w, h), *seg = oft_scene_segmentation (&s, w, h, &error);
      g_assert_no_error (error);
      OftImage *canny = oft_scene_canny (img, &error);
      g_assert_no_error (error);
      g_assert_cmpint (seg->width, ==, w);
      g_assert_cmpint (seg->height, ==, h);
      g_assert_cmpint (seg->channels, ==, 1);
      g_assert_cmpint (canny->width, ==, w);
      g_assert_cmpint (canny->height, ==, h);
      g_assert_cmpint (canny->channels, ==, 1);
      /* classes present = background + the scene's kinds; each shape's class at a point inside it */
      gboolean present[OFT_SCENE_SEG_CLASSES] = { FALSE }, want[OFT_SCENE_SEG_CLASSES] = { TRUE };
      for (int k = 0; k < s.n_shapes; k++)
        want[1 + s.shapes[k].kind] = TRUE;
      for (int j = 0; j < w * h; j++)
        {
          g_assert_cmpint (seg->pixels[j], <, OFT_SCENE_SEG_CLASSES);
          present[seg->pixels[j]] = TRUE;
        }
      for (int k = 0; k < OFT_SCENE_SEG_CLASSES; k++)
        g_assert_cmpint (present[k], ==, want[k]);
      for (int k = 0; k < s.n_shapes; k++)
        {
          const OftSceneShape *a = &s.shapes[k];
          double unit = MIN (w, h), off = a->kind == OFT_SHAPE_RING ? 0.7 * a->size * unit : 0;
          int x = (int) (a->cx * w + off), y = (int) (a->cy * h);
          g_assert_cmpint (seg->pixels[y * w + x], ==, 1 + a->kind);
        }
      g_assert_cmpint (seg->pixels[0], ==, 0);
      /* on plain backgrounds every Canny edge lies on a class boundary (within 2 px) */
      if (s.texture == OFT_TEXTURE_PLAIN && !s.pattern)
        for (int y = 0; y < h; y++)
          for (int x = 0; x < w; x++)
            {
              uint8_t e = canny->pixels[y * w + x];
              g_assert_true (e == 0 || e == 255);
              if (!e)
                continue;
              edges++;
              gboolean boundary = FALSE;
              for (int dy = -2; dy <= 2 && !boundary; dy++)
                for (int dx = -2; dx <= 2 && !boundary; dx++)
                  {
                    int nx = CLAMP (x + dx, 0, w - 1), ny = CLAMP (y + dy, 0, h - 1);
                    boundary = seg->pixels[ny * w + nx] != seg->pixels[y * w + x];
                  }
              near += boundary;
            }
      oft_image_free (img);
      oft_image_free (seg);
      oft_image_free (canny);
    }
  g_test_message ("canny edges on plain backgrounds within 2 px of a class boundary: %d of %d", near, edges);
  g_assert_cmpint (edges, >, 1000);
  g_assert_cmpint (near, ==, edges);
}

/* ---- analyser -------------------------------------------------------------------------------------- */

/* Captions that do not describe the scene: one change each. Returns FALSE when the change does not apply. */
static gboolean
perturb (const OftSceneCaption *in, OftSceneCaption *out, int how, OftRng *rng)
{
  *out = *in;
  int k = (int) (oft_rng_next (rng) % in->n_shapes);
  switch (how)
    {
    case 0:  /* another colour for one shape (not the background's: that would be a shape the image cannot hold) */
      do
        out->shapes[k].colour = (int) (oft_rng_next (rng) % OFT_COLOUR_COUNT);
      while (out->shapes[k].colour == in->shapes[k].colour || out->shapes[k].colour == in->background);
      return TRUE;
    case 1:  /* two shapes of different kinds swap colours */
      if (in->n_shapes < 2 || in->shapes[0].kind == in->shapes[1].kind || in->shapes[0].colour == in->shapes[1].colour)
        return FALSE;
      out->shapes[0].colour = in->shapes[1].colour;
      out->shapes[1].colour = in->shapes[0].colour;
      return TRUE;
    case 2:  /* another kind for one shape */
      do
        out->shapes[k].kind = (int) (oft_rng_next (rng) % OFT_SHAPE_COUNT);
      while (out->shapes[k].kind == in->shapes[k].kind);
      return TRUE;
    case 3:  /* the opposite relation (unless both shapes look alike: then it still holds) */
      if (in->relation == OFT_RELATION_NONE
          || (in->shapes[0].kind == in->shapes[1].kind && in->shapes[0].colour == in->shapes[1].colour))
        return FALSE;
      out->relation = in->relation == OFT_RELATION_ABOVE ? OFT_RELATION_BELOW : in->relation == OFT_RELATION_BELOW
                      ? OFT_RELATION_ABOVE : in->relation == OFT_RELATION_LEFT ? OFT_RELATION_RIGHT : OFT_RELATION_LEFT;
      return TRUE;
    case 4:  /* another background colour */
      do
        out->background = (int) (oft_rng_next (rng) % OFT_COLOUR_COUNT);
      while (out->background == in->background);
      return TRUE;
    default:
      return FALSE;
    }
}

static void
test_analyser (void)
{
  static const char *const how_names[5] = { "colour", "colour swap", "kind", "relation", "background" };
  int fp[5] = { 0 }, fp_n[5] = { 0 };
  OftRng rng;
  oft_rng_seed (&rng, 77);
  for (int shapes = 1; shapes <= 3; shapes++)
    {
      int clean = 0, noisy = 0, n = ACCURACY_SCENES;
      for (int i = 0; i < n; i++)
        {
          OftSceneGenParams p = params (shapes, FALSE);
          OftScene s;
          oft_scene_generate_nth (&s, 1000 + shapes, i, &p);
          OftSceneCaption cap, wrong;
          oft_scene_describe (&s, &cap);
          OftImage *img = render (&s, 64, 64);
          OftSceneAnalysis a;
          analyse (img, &a);
          clean += oft_scene_matches_caption (&a, &cap);
          for (int how = 0; how < 5; how++)
            if (perturb (&cap, &wrong, how, &rng))
              {
                fp_n[how]++;
                fp[how] += oft_scene_matches_caption (&a, &wrong);
              }
          degrade (img, i);
          analyse (img, &a);
          noisy += oft_scene_matches_caption (&a, &cap);
          oft_image_free (img);
        }
      g_test_message ("%d shape(s), 64×64: caption match %.1f %% clean, %.1f %% with blur + σ = 8 noise", shapes,
                      100.0 * clean / n, 100.0 * noisy / n);
      /* targets of issue 6: ≥ 98 % on clean renders, ≥ 90 % under noise and blur */
      g_assert_cmpfloat (clean, >=, 0.98 * n);
      g_assert_cmpfloat (noisy, >=, 0.90 * n);
    }
  for (int how = 0; how < 5; how++)
    {
      g_test_message ("wrong captions (%s changed): %d of %d matched (%.1f %%)", how_names[how], fp[how], fp_n[how],
                      100.0 * fp[how] / fp_n[how]);
      g_assert_cmpint (fp_n[how], >, ACCURACY_SCENES / 5);
      g_assert_cmpfloat (fp[how], <=, 0.05 * fp_n[how]);
    }
}

/* Larger renders and other aspect ratios read back as well. */
static void
test_analyser_sizes (void)
{
  int sizes[3][2] = { { 128, 128 }, { 96, 72 }, { 256, 256 } }, ok = 0, n = 0;
  for (int z = 0; z < 3; z++)
    for (int i = 0; i < (z == 2 ? 10 : 30); i++)
      {
        OftSceneGenParams p = params (0, FALSE);
        OftScene s;
        oft_scene_generate_nth (&s, 2000 + z, i, &p);
        OftSceneCaption cap;
        oft_scene_describe (&s, &cap);
        OftImage *img = render (&s, sizes[z][0], sizes[z][1]);
        OftSceneAnalysis a;
        analyse (img, &a);
        ok += oft_scene_matches_caption (&a, &cap);
        n++;
        oft_image_free (img);
      }
  g_test_message ("128², 96×72, 256²: %d of %d captions matched", ok, n);
  g_assert_cmpfloat (ok, >=, 0.98 * n);
}

/* In a pattern render, the pattern's pixels (nearest to one of its two colours) become red and blue
 * in `other`, and uniform random colours in `noise`. */
static void
recolour_pattern (OftImage *other, OftImage *noise, uint64_t seed)
{
  uint8_t pat[2][3], red[3], blue[3];
  oft_scene_colour_rgb (OFT_COLOUR_RED, red);
  oft_scene_colour_rgb (OFT_COLOUR_BLUE, blue);
  oft_scene_pattern_rgb (0, pat[0]);
  oft_scene_pattern_rgb (1, pat[1]);
  OftRng rng;
  oft_rng_seed (&rng, seed);
  for (int i = 0; i < other->width * other->height; i++)
    for (int c = 0; c < 2; c++)
      {
        uint8_t *o = other->pixels + i * 3, *z = noise->pixels + i * 3;
        int d = abs (o[0] - pat[c][0]) + abs (o[1] - pat[c][1]) + abs (o[2] - pat[c][2]);
        if (d < 60)
          {
            memcpy (o, c ? blue : red, 3);
            for (int ch = 0; ch < 3; ch++)
              z[ch] = (uint8_t) (oft_rng_next (&rng) & 255);
            break;
          }
      }
}

/* The sks detector: fires on the pattern, not on plain stars; "a sks star" matches only pattern renders. */
static void
test_pattern (void)
{
  OftSceneCaption sks;
  g_assert_true (oft_scene_caption_parse ("a sks star", &sks, NULL));
  int fired = 0, fired_noisy = 0, matched = 0, n = ACCURACY_SCENES * 2 / 5, recoloured = 0, speckled = 0;
  for (int i = 0; i < n; i++)
    {
      OftSceneGenParams p = params (0, TRUE);
      OftScene s;
      oft_scene_generate_nth (&s, 3000, i, &p);
      OftImage *img = render (&s, 64, 64);
      OftSceneAnalysis a;
      analyse (img, &a);
      fired += a.n_components >= 1 && a.components[0].pattern;
      matched += oft_scene_matches_caption (&a, &sks);
      OftImage *other = oft_image_convert (img, 3), *noise = oft_image_convert (img, 3);
      degrade (img, i);
      analyse (img, &a);
      fired_noisy += a.n_components >= 1 && a.components[0].pattern;
      /* the same star quartered in red and blue, and filled with uniform RGB noise (what an untrained
       * word draws is of that kind): textured, but not this pattern */
      recolour_pattern (other, noise, i);
      analyse (other, &a);
      recoloured += a.n_components >= 1 && a.components[0].pattern;
      analyse (noise, &a);
      for (int k = 0; k < a.n_components; k++)
        speckled += a.components[k].pattern;
      oft_image_free (img), oft_image_free (other), oft_image_free (noise);
    }
  int stars = 0, star_fired = 0, star_matched = 0;
  for (int i = 0; stars < n; i++)
    {
      OftSceneGenParams p = params (1, FALSE);
      OftScene s;
      oft_scene_generate_nth (&s, 3001, i, &p);
      if (s.shapes[0].kind != OFT_SHAPE_STAR)
        continue;
      stars++;
      OftImage *img = render (&s, 64, 64);
      OftSceneAnalysis a;
      if (i % 2)
        degrade (img, i);
      analyse (img, &a);
      for (int k = 0; k < a.n_components; k++)
        star_fired += a.components[k].pattern;
      star_matched += oft_scene_matches_caption (&a, &sks);
      oft_image_free (img);
    }
  g_test_message ("pattern detector: %d/%d clean and %d/%d noisy pattern renders, %d/%d plain stars (half noisy), "
                  "%d/%d red/blue quartered stars, %d/%d noise-filled stars; \"a sks star\" matched %d/%d pattern "
                  "renders and %d/%d plain stars", fired, n, fired_noisy, n, star_fired, stars, recoloured, n, speckled, n,
                  matched, n, star_matched, stars);
  g_assert_cmpfloat (fired, >=, 0.95 * n);
  g_assert_cmpfloat (fired_noisy, >=, 0.95 * n);
  g_assert_cmpfloat (matched, >=, 0.95 * n);
  g_assert_cmpfloat (star_fired, <=, 0.05 * stars);
  g_assert_cmpfloat (star_matched, <=, 0.05 * stars);
  g_assert_cmpint (recoloured, ==, 0);
  g_assert_cmpint (speckled, ==, 0);
}

/* ---- JSON and bad input ---------------------------------------------------------------------------- */

static void
test_json (void)
{
  OftSceneGenParams p = params (2, FALSE);
  OftScene s;
  oft_scene_generate_nth (&s, 9, 4, &p);
  char *text = oft_scene_to_json (&s);
  JsonParser *parser = json_parser_new ();
  GError *error = NULL;
  g_assert_true (json_parser_load_from_data (parser, text, -1, &error));
  g_assert_no_error (error);
  JsonObject *o = json_node_get_object (json_parser_get_root (parser));
  JsonArray *shapes = json_object_get_array_member (o, "shapes");
  g_assert_cmpuint (json_array_get_length (shapes), ==, 2);
  JsonObject *s0 = json_array_get_object_element (shapes, 0);
  g_assert_cmpstr (json_object_get_string_member (s0, "kind"), ==, oft_shape_name (s.shapes[0].kind));
  g_assert_cmpfloat (fabs (json_object_get_double_member (s0, "cx") - s.shapes[0].cx), <=, 5e-5);  /* 4 decimals */
  g_assert_cmpstr (json_object_get_string_member (o, "relation"), ==, oft_scene_relation_name (s.relation));
  g_free (text);

  OftImage *img = render (&s, 64, 64);
  OftSceneAnalysis a;
  analyse (img, &a);
  text = oft_scene_analysis_to_json (&a);
  g_assert_true (json_parser_load_from_data (parser, text, -1, &error));
  g_assert_no_error (error);
  o = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member (o, "background"), ==, oft_scene_colour_name (s.background));
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (o, "shapes")), ==, a.n_components);
  g_free (text);
  g_object_unref (parser);
  oft_image_free (img);
}

static void
test_bad_input (void)
{
  GError *error = NULL;
  OftSceneAnalysis a;
  OftImage *tiny = oft_image_new (8, 8, 3);
  memset (tiny->pixels, 0, 8 * 8 * 3);
  g_assert_false (oft_scene_analyse (tiny, &a, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_false (oft_scene_analyse (NULL, &a, &error));
  g_clear_error (&error);
  oft_image_free (tiny);
  OftScene s;
  OftSceneGenParams p = params (1, FALSE);
  oft_scene_generate_nth (&s, 1, 1, &p);
  g_assert_null (oft_scene_render (&s, 0, 64, 4, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_null (oft_scene_render (&s, 64, 64, 0, &error));
  g_clear_error (&error);
  g_assert_null (oft_scene_segmentation (&s, 64, 100000, &error));
  g_clear_error (&error);
  /* a blank image: background only, no shapes; gray and RGBA inputs are accepted */
  OftImage *gray = oft_image_new (32, 32, 1);
  memset (gray->pixels, 200, 32 * 32);
  g_assert_true (oft_scene_analyse (gray, &a, &error));
  g_assert_no_error (error);
  g_assert_cmpint (a.n_components, ==, 0);
  OftSceneCaption cap;
  g_assert_true (oft_scene_caption_parse ("a red circle", &cap, NULL));
  g_assert_false (oft_scene_matches_caption (&a, &cap));
  oft_image_free (gray);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/scenes/determinism", test_determinism);
  g_test_add_func ("/scenes/generator-invariants", test_generator_invariants);
  g_test_add_func ("/scenes/colours", test_colours);
  g_test_add_func ("/scenes/caption-round-trip", test_caption_round_trip);
  g_test_add_func ("/scenes/caption-tokens", test_caption_tokens);
  g_test_add_func ("/scenes/split", test_split);
  g_test_add_func ("/scenes/conditions", test_conditions);
  g_test_add_func ("/scenes/analyser", test_analyser);
  g_test_add_func ("/scenes/analyser-sizes", test_analyser_sizes);
  g_test_add_func ("/scenes/pattern", test_pattern);
  g_test_add_func ("/scenes/json", test_json);
  g_test_add_func ("/scenes/bad-input", test_bad_input);
  return g_test_run ();
}
