/* Scene captions: the fixed grammar (see oft/scenes.h), its parser, and the held-out split. */
#include "scenes-private.h"
#include "oft/error.h"
#include <string.h>

void
oft_scene_describe (const OftScene *s, OftSceneCaption *c)
{
  memset (c, 0, sizeof *c);
  c->n_shapes = CLAMP (s->n_shapes, 0, OFT_SCENE_MAX_SHAPES);
  for (int i = 0; i < c->n_shapes; i++)
    {
      c->shapes[i].kind = s->shapes[i].kind;
      c->shapes[i].colour = s->shapes[i].pattern ? OFT_SCENE_ANY : s->shapes[i].colour;
      c->shapes[i].pattern = s->shapes[i].pattern;
    }
  c->relation = c->n_shapes == 2 ? s->relation : OFT_RELATION_NONE;
  /* a pattern instance's caption is just "a sks star" */
  c->background = s->pattern ? OFT_SCENE_ANY : (int) s->background;
  c->texture = s->pattern ? OFT_SCENE_ANY : (int) s->texture;
}

static void
append_shape (GString *out, const OftSceneCaption *c, int i)
{
  const char *first = c->shapes[i].colour != OFT_SCENE_ANY ? oft_scene_colour_name (c->shapes[i].colour)
                      : c->shapes[i].pattern ? "sks" : oft_shape_name (c->shapes[i].kind);
  g_string_append (out, strchr ("aeiou", first[0]) ? "an " : "a ");
  if (c->shapes[i].colour != OFT_SCENE_ANY)
    g_string_append_printf (out, "%s ", oft_scene_colour_name (c->shapes[i].colour));
  if (c->shapes[i].pattern)
    g_string_append (out, "sks ");
  g_string_append (out, oft_shape_name (c->shapes[i].kind));
}

char *
oft_scene_caption_format (const OftSceneCaption *c)
{
  GString *out = g_string_new (NULL);
  for (int i = 0; i < c->n_shapes; i++)
    {
      if (i > 0)
        {
          if (c->n_shapes == 2 && c->relation != OFT_RELATION_NONE)
            g_string_append_printf (out, " %s ", oft_scene_relation_name (c->relation));
          else if (i == c->n_shapes - 1)
            g_string_append (out, " and ");
          else
            g_string_append (out, ", ");
        }
      append_shape (out, c, i);
    }
  if (c->background != OFT_SCENE_ANY)
    {
      gboolean textured = c->texture != OFT_SCENE_ANY && c->texture != OFT_TEXTURE_PLAIN;
      const char *first = textured ? oft_scene_texture_name (c->texture) : oft_scene_colour_name (c->background);
      g_string_append (out, strchr ("aeiou", first[0]) ? " on an " : " on a ");
      if (textured)
        g_string_append_printf (out, "%s ", oft_scene_texture_name (c->texture));
      g_string_append_printf (out, "%s background", oft_scene_colour_name (c->background));
    }
  return g_string_free (out, FALSE);
}

char *
oft_scene_caption (const OftScene *scene)
{
  OftSceneCaption c;
  oft_scene_describe (scene, &c);
  return oft_scene_caption_format (&c);
}

/* ---- parser ------------------------------------------------------------------------------------------- */

typedef struct {
  char **words;
  int n, pos;
  const char *text;
} Words;

static const char *
peek (const Words *w, int ahead)
{
  return w->pos + ahead < w->n ? w->words[w->pos + ahead] : NULL;
}

static int
lookup (const char *word, const char *(*name) (int), int count)
{
  if (!word)
    return -1;
  for (int k = 0; k < count; k++)
    if (strcmp (word, name (k)) == 0)
      return k;
  return -1;
}

static const char *shape_name_i (int k) { return oft_shape_name (k); }
static const char *colour_name_i (int k) { return oft_scene_colour_name (k); }

static gboolean
fail (const Words *w, GError **error, const char *expected)
{
  const char *got = peek (w, 0);
  g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "caption \"%s\": word %d%s%s%s: expected %s", w->text,
               w->pos + 1, got ? " '" : " (end)", got ? got : "", got ? "'" : "", expected);
  return FALSE;
}

static gboolean
parse_shape (Words *w, OftSceneCaption *c, GError **error)
{
  if (c->n_shapes == OFT_SCENE_MAX_SHAPES)
    return fail (w, error, "at most three shapes");
  const char *art = peek (w, 0);
  if (!art || (strcmp (art, "a") != 0 && strcmp (art, "an") != 0))
    return fail (w, error, "'a' or 'an'");
  w->pos++;
  int i = c->n_shapes;
  c->shapes[i].colour = lookup (peek (w, 0), colour_name_i, OFT_COLOUR_COUNT);
  if (c->shapes[i].colour >= 0)
    w->pos++;
  else
    c->shapes[i].colour = OFT_SCENE_ANY;
  c->shapes[i].pattern = peek (w, 0) && strcmp (peek (w, 0), "sks") == 0;
  if (c->shapes[i].pattern)
    w->pos++;
  c->shapes[i].kind = lookup (peek (w, 0), shape_name_i, OFT_SHAPE_COUNT);
  if (c->shapes[i].kind < 0)
    return fail (w, error, "a colour, 'sks' or a shape (circle, square, triangle, star, ring, diamond)");
  w->pos++;
  c->n_shapes++;
  return TRUE;
}

gboolean
oft_scene_caption_parse (const char *text, OftSceneCaption *c, GError **error)
{
  memset (c, 0, sizeof *c);
  c->background = OFT_SCENE_ANY;
  c->texture = OFT_SCENE_ANY;
  /* commas are words of their own */
  char *spaced = g_strdelimit (g_ascii_strdown (text ? text : "", -1), "\t\n\r", ' ');
  GString *tmp = g_string_new (NULL);
  for (const char *p = spaced; *p; p++)
    if (*p == ',')
      g_string_append (tmp, " , ");
    else
      g_string_append_c (tmp, *p);
  g_free (spaced);
  char **parts = g_strsplit (tmp->str, " ", -1);
  g_string_free (tmp, TRUE);
  Words w = { NULL, 0, 0, text ? text : "" };
  w.words = g_new0 (char *, g_strv_length (parts) + 1);
  for (char **p = parts; *p; p++)
    if (**p)
      w.words[w.n++] = *p;
  gboolean ok = FALSE;

  if (!parse_shape (&w, c, error))
    goto out;
  const char *next = peek (&w, 0);
  int rel = !next ? -1 : strcmp (next, "above") == 0 ? OFT_RELATION_ABOVE : strcmp (next, "below") == 0
            ? OFT_RELATION_BELOW : strcmp (next, "left") == 0 ? OFT_RELATION_LEFT : strcmp (next, "right") == 0
            ? OFT_RELATION_RIGHT : -1;
  if (rel > 0)
    {
      w.pos++;
      if (rel == OFT_RELATION_LEFT || rel == OFT_RELATION_RIGHT)
        {
          if (!peek (&w, 0) || strcmp (peek (&w, 0), "of") != 0)
            {
              fail (&w, error, "'of'");
              goto out;
            }
          w.pos++;
        }
      c->relation = rel;
      if (!parse_shape (&w, c, error))
        goto out;
    }
  else if (next && (strcmp (next, ",") == 0 || strcmp (next, "and") == 0))
    {
      gboolean comma = strcmp (next, ",") == 0;
      w.pos++;
      if (!parse_shape (&w, c, error))
        goto out;
      if (comma)  /* "A, B and C" */
        {
          if (!peek (&w, 0) || strcmp (peek (&w, 0), "and") != 0)
            {
              fail (&w, error, "'and' before the last shape");
              goto out;
            }
          w.pos++;
          if (!parse_shape (&w, c, error))
            goto out;
        }
    }
  if (peek (&w, 0))
    {
      if (strcmp (peek (&w, 0), "on") != 0 || !peek (&w, 1)
          || (strcmp (peek (&w, 1), "a") != 0 && strcmp (peek (&w, 1), "an") != 0))
        {
          fail (&w, error, rel > 0 || c->n_shapes > 1 ? "'on a ... background'"
                                                      : "a relation, 'and', ',' or 'on a ... background'");
          goto out;
        }
      w.pos += 2;
      c->texture = OFT_TEXTURE_PLAIN;
      for (int t = OFT_TEXTURE_STRIPED; t < OFT_TEXTURE_COUNT; t++)
        if (peek (&w, 0) && strcmp (peek (&w, 0), oft_scene_texture_name (t)) == 0)
          {
            c->texture = t;
            w.pos++;
          }
      c->background = lookup (peek (&w, 0), colour_name_i, OFT_COLOUR_COUNT);
      if (c->background < 0)
        {
          c->background = OFT_SCENE_ANY;
          fail (&w, error, "a background colour");
          goto out;
        }
      w.pos++;
      if (!peek (&w, 0) || strcmp (peek (&w, 0), "background") != 0)
        {
          fail (&w, error, "'background'");
          goto out;
        }
      w.pos++;
      if (peek (&w, 0))
        {
          fail (&w, error, "the end of the caption");
          goto out;
        }
    }
  ok = TRUE;
out:
  g_free (w.words);
  g_strfreev (parts);
  return ok;
}

gboolean
oft_scene_caption_equal (const OftSceneCaption *a, const OftSceneCaption *b)
{
  if (a->n_shapes != b->n_shapes || a->relation != b->relation || a->background != b->background
      || a->texture != b->texture)
    return FALSE;
  for (int i = 0; i < a->n_shapes; i++)
    if (a->shapes[i].kind != b->shapes[i].kind || a->shapes[i].colour != b->shapes[i].colour
        || !a->shapes[i].pattern != !b->shapes[i].pattern)
      return FALSE;
  return TRUE;
}

gboolean
oft_scene_caption_heldout (const OftSceneCaption *c)
{
  for (int i = 0; i < c->n_shapes; i++)
    if (c->shapes[i].pattern)
      return FALSE;
  uint32_t h = 2166136261u;  /* FNV-1a over (kind, colour) bytes */
  for (int i = 0; i < c->n_shapes; i++)
    {
      uint8_t bytes[2] = { (uint8_t) c->shapes[i].kind, (uint8_t) c->shapes[i].colour };
      for (int k = 0; k < 2; k++)
        h = (h ^ bytes[k]) * 16777619u;
    }
  return h % 8 == 3;
}
