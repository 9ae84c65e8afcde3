/* OpenCV cascade XML (the traincascade format: <cascade> with stageType BOOST, featureType HAAR,
 * stages/_/weakClassifiers/_/{internalNodes,leafValues} and features/_/rects/_) parsed with GMarkup.
 * Everything a detector later indexes with is checked here: rectangles inside the window, feature
 * and child indices, leaf counts. */
#include "faces-internal.h"
#include "oft/error.h"
#include <errno.h>
#include <math.h>
#include <string.h>

#define MAX_DEPTH 16
#define MAX_TEXT (1 << 20)
#define MAX_STAGES 1000
#define MAX_FEATURES 200000
#define MAX_NODES 2000000
#define MAX_NODES_PER_TREE 1024
#define THRESHOLD_EPS 1e-5f /* OpenCV lowers every stage threshold by this */

typedef struct {
  const char *path;
  char *stack[MAX_DEPTH]; /* open element names (copies) */
  int depth;
  GString *text;
  GArray *stages, *trees, *nodes, *leaves, *features;
  char *stage_type, *feature_type;
  int width, height, max_cat;
  gboolean in_tree_nodes, in_tree_leaves; /* the current weak classifier has them */
  int tree_nodes_start, tree_leaves_start;
} Ctx;

static gboolean
xml_fail (GError **error, const Ctx *c, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static gboolean
xml_fail (GError **error, const Ctx *c, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: %s", c->path, msg);
  g_free (msg);
  return FALSE;
}

/* stack[i] == name, for i in range */
static gboolean
at (const Ctx *c, int i, const char *name)
{
  return i < c->depth && strcmp (c->stack[i], name) == 0;
}

/* inside stages/_ (a stage was started) or features/_ (a feature was started) */
static gboolean
in_stage (const Ctx *c)
{
  return at (c, 2, "stages") && at (c, 3, "_");
}

static gboolean
in_feature (const Ctx *c)
{
  return at (c, 2, "features") && at (c, 3, "_");
}

/* Whitespace-separated numbers of one element; at most `max` of them. */
static int
parse_numbers (const char *s, double *out, int max, gboolean *bad)
{
  int n = 0;
  *bad = FALSE;
  for (;;)
    {
      while (g_ascii_isspace (*s))
        s++;
      if (!*s)
        return n;
      char *end;
      errno = 0;
      double v = g_ascii_strtod (s, &end);
      if (end == s || errno == ERANGE || !isfinite (v) || n == max)
        {
          *bad = TRUE;
          return n;
        }
      out[n++] = v;
      s = end;
    }
}

static gboolean
parse_int_text (const Ctx *c, const char *text, const char *field, int lo, int hi, int *out, GError **error)
{
  double v;
  gboolean bad;
  if (parse_numbers (text, &v, 1, &bad) != 1 || bad || v != floor (v) || v < lo || v > hi)
    return xml_fail (error, c, "<%s> must be an integer in %d..%d, got \"%.40s\"", field, lo, hi, text);
  *out = (int) v;
  return TRUE;
}

static void
on_start (GMarkupParseContext *pc, const char *name, const char **an, const char **av, gpointer data,
          GError **error)
{
  Ctx *c = data;
  if (c->depth == MAX_DEPTH)
    {
      xml_fail (error, c, "elements nested deeper than %d", MAX_DEPTH);
      return;
    }
  c->stack[c->depth++] = g_strdup (name);
  g_string_truncate (c->text, 0);
  if (c->depth == 4 && at (c, 2, "stages") && at (c, 3, "_"))
    {
      if (c->stages->len >= MAX_STAGES)
        {
          xml_fail (error, c, "more than %d stages", MAX_STAGES);
          return;
        }
      HaarStage s = { .threshold = NAN, .first_tree = (int) c->trees->len, .ntrees = 0 };
      g_array_append_val (c->stages, s);
    }
  else if (c->depth == 6 && in_stage (c) && at (c, 4, "weakClassifiers") && at (c, 5, "_"))
    {
      c->in_tree_nodes = c->in_tree_leaves = FALSE;
      c->tree_nodes_start = (int) c->nodes->len;
      c->tree_leaves_start = (int) c->leaves->len;
    }
  else if (c->depth == 4 && at (c, 2, "features") && at (c, 3, "_"))
    {
      if (c->features->len >= MAX_FEATURES)
        {
          xml_fail (error, c, "more than %d features", MAX_FEATURES);
          return;
        }
      HaarFeature f = { 0 };
      g_array_append_val (c->features, f);
    }
}

static void
on_text (GMarkupParseContext *pc, const char *text, gsize len, gpointer data, GError **error)
{
  Ctx *c = data;
  if (c->text->len + len > MAX_TEXT)
    {
      xml_fail (error, c, "element <%s> holds more than %d bytes of text", c->depth ? c->stack[c->depth - 1] : "?",
                MAX_TEXT);
      return;
    }
  g_string_append_len (c->text, text, (gssize) len);
}

static gboolean
end_tree (Ctx *c, GError **error)
{
  if (!c->in_tree_nodes || !c->in_tree_leaves)
    return xml_fail (error, c, "stage %u, weak classifier %u: needs <internalNodes> and <leafValues>",
                     c->stages->len - 1, g_array_index (c->stages, HaarStage, c->stages->len - 1).ntrees);
  int nnodes = (int) c->nodes->len - c->tree_nodes_start;
  int nleaves = (int) c->leaves->len - c->tree_leaves_start;
  HaarStage *s = &g_array_index (c->stages, HaarStage, c->stages->len - 1);
  if (nleaves != nnodes + 1)
    return xml_fail (error, c, "stage %u, weak classifier %d: %d leaf values for %d nodes (expected %d)",
                     c->stages->len - 1, s->ntrees, nleaves, nnodes, nnodes + 1);
  /* children: > 0 a later node of this tree, ≤ 0 leaf −v; later-only makes every walk end */
  for (int j = 0; j < nnodes; j++)
    {
      const HaarNode *n = &g_array_index (c->nodes, HaarNode, c->tree_nodes_start + j);
      int ch[2] = { n->left, n->right };
      for (int k = 0; k < 2; k++)
        if ((ch[k] > 0 && (ch[k] <= j || ch[k] >= nnodes)) || (ch[k] <= 0 && -ch[k] > nnodes))
          return xml_fail (error, c, "stage %u, weak classifier %d, node %d: child %d out of range",
                           c->stages->len - 1, s->ntrees, j, ch[k]);
    }
  HaarTree t = { .first_node = c->tree_nodes_start, .nnodes = nnodes, .first_leaf = c->tree_leaves_start };
  g_array_append_val (c->trees, t);
  s->ntrees++;
  return TRUE;
}

static gboolean
end_internal_nodes (Ctx *c, const char *text, GError **error)
{
  if (c->max_cat != 0)
    return xml_fail (error, c, "<maxCatCount> %d: categorical (LBP) cascades are not supported, only HAAR",
                     c->max_cat);
  int cap = MAX_NODES_PER_TREE * 4;
  double *v = g_new (double, cap);
  gboolean bad;
  int n = parse_numbers (text, v, cap, &bad);
  gboolean ok = TRUE;
  if (bad || n == 0 || n % 4 != 0)
    ok = xml_fail (error, c, "stage %u: <internalNodes> must hold groups of 4 numbers "
                   "(left right feature threshold), at most %d nodes", c->stages->len - 1, MAX_NODES_PER_TREE);
  else if (c->nodes->len + (guint) n / 4 > MAX_NODES)
    ok = xml_fail (error, c, "more than %d tree nodes", MAX_NODES);
  for (int i = 0; ok && i < n; i += 4)
    {
      if (v[i] != floor (v[i]) || v[i + 1] != floor (v[i + 1]) || v[i + 2] != floor (v[i + 2]) || v[i + 2] < 0
          || v[i + 2] >= MAX_FEATURES || fabs (v[i]) > MAX_NODES_PER_TREE || fabs (v[i + 1]) > MAX_NODES_PER_TREE)
        {
          ok = xml_fail (error, c, "stage %u: <internalNodes> node %d: left, right and feature must be integers",
                         c->stages->len - 1, i / 4);
          break;
        }
      HaarNode node = { .left = (int) v[i], .right = (int) v[i + 1], .feature = (int) v[i + 2],
                        .threshold = (float) v[i + 3] };
      g_array_append_val (c->nodes, node);
    }
  g_free (v);
  c->in_tree_nodes = ok;
  return ok;
}

static gboolean
end_leaf_values (Ctx *c, const char *text, GError **error)
{
  double v[MAX_NODES_PER_TREE + 1];
  gboolean bad;
  int n = parse_numbers (text, v, MAX_NODES_PER_TREE + 1, &bad);
  if (bad || n < 2)
    return xml_fail (error, c, "stage %u: <leafValues> must hold 2..%d numbers", c->stages->len - 1,
                     MAX_NODES_PER_TREE + 1);
  for (int i = 0; i < n; i++)
    {
      float f = (float) v[i];
      g_array_append_val (c->leaves, f);
    }
  c->in_tree_leaves = TRUE;
  return TRUE;
}

static gboolean
end_rect (Ctx *c, const char *text, GError **error)
{
  guint fi = c->features->len - 1;
  HaarFeature *f = &g_array_index (c->features, HaarFeature, fi);
  double v[5];
  gboolean bad;
  if (f->nrects == 3)
    return xml_fail (error, c, "feature %u: more than 3 rectangles", fi);
  if (parse_numbers (text, v, 5, &bad) != 5 || bad)
    return xml_fail (error, c, "feature %u: a rectangle must be \"x y width height weight\"", fi);
  for (int k = 0; k < 4; k++)
    if (v[k] != floor (v[k]) || fabs (v[k]) > 4096)
      return xml_fail (error, c, "feature %u: rectangle coordinates must be integers", fi);
  HaarRect *r = &f->r[f->nrects++];
  r->x = (int) v[0];
  r->y = (int) v[1];
  r->w = (int) v[2];
  r->h = (int) v[3];
  r->weight = (float) v[4];
  return TRUE;
}

static void
on_end (GMarkupParseContext *pc, const char *name, gpointer data, GError **error)
{
  Ctx *c = data;
  const char *text = c->text->str;
  int d = c->depth;
  if (d == 3 && c->stack[2])
    {
      const char *f = c->stack[2];
      if (strcmp (f, "stageType") == 0 && !c->stage_type)
        c->stage_type = g_strstrip (g_strdup (text));
      else if (strcmp (f, "featureType") == 0 && !c->feature_type)
        c->feature_type = g_strstrip (g_strdup (text));
      else if (strcmp (f, "width") == 0)
        parse_int_text (c, text, "width", 1, 256, &c->width, error);
      else if (strcmp (f, "height") == 0)
        parse_int_text (c, text, "height", 1, 256, &c->height, error);
    }
  else if (d == 4 && at (c, 2, "featureParams") && at (c, 3, "maxCatCount"))
    parse_int_text (c, text, "maxCatCount", 0, 1 << 16, &c->max_cat, error);
  else if (d == 5 && in_stage (c) && at (c, 4, "stageThreshold"))
    {
      double v;
      gboolean bad;
      if (parse_numbers (text, &v, 1, &bad) != 1 || bad)
        xml_fail (error, c, "stage %u: <stageThreshold> must be a number", c->stages->len - 1);
      else
        g_array_index (c->stages, HaarStage, c->stages->len - 1).threshold = (float) v - THRESHOLD_EPS;
    }
  else if (d == 6 && in_stage (c) && at (c, 4, "weakClassifiers") && at (c, 5, "_"))
    end_tree (c, error);
  else if (d == 7 && in_stage (c) && at (c, 4, "weakClassifiers") && at (c, 5, "_") && at (c, 6, "internalNodes"))
    end_internal_nodes (c, text, error);
  else if (d == 7 && in_stage (c) && at (c, 4, "weakClassifiers") && at (c, 5, "_") && at (c, 6, "leafValues"))
    end_leaf_values (c, text, error);
  else if (d == 6 && in_feature (c) && at (c, 4, "rects") && at (c, 5, "_"))
    end_rect (c, text, error);
  else if (d == 5 && in_feature (c) && at (c, 4, "tilted"))
    {
      int tilted = 0;
      if (parse_int_text (c, text, "tilted", 0, 1, &tilted, error) && tilted)
        xml_fail (error, c, "feature %u: tilted (45°) Haar features are not supported", c->features->len - 1);
    }
  g_string_truncate (c->text, 0);
  g_free (c->stack[--c->depth]);
}

/* Whole-cascade checks once everything is read. */
static gboolean
validate (Ctx *c, GError **error)
{
  if (!c->stage_type || !c->feature_type)
    return xml_fail (error, c, "not an OpenCV cascade in the current format (no <stageType>/<featureType>; "
                     "old-format haartraining files are not supported)");
  if (strcmp (c->stage_type, "BOOST") != 0)
    return xml_fail (error, c, "<stageType> is \"%s\", expected BOOST", c->stage_type);
  if (strcmp (c->feature_type, "HAAR") != 0)
    return xml_fail (error, c, "<featureType> is \"%s\", only HAAR is supported", c->feature_type);
  if (c->width <= 2 || c->height <= 2)
    return xml_fail (error, c, "<width>/<height> missing or below 3");
  if (c->stages->len == 0 || c->features->len == 0)
    return xml_fail (error, c, "no <stages> or no <features>");
  for (guint i = 0; i < c->stages->len; i++)
    {
      const HaarStage *s = &g_array_index (c->stages, HaarStage, i);
      if (s->ntrees == 0 || isnan (s->threshold))
        return xml_fail (error, c, "stage %u: needs <stageThreshold> and at least one weak classifier", i);
    }
  for (guint i = 0; i < c->nodes->len; i++)
    if (g_array_index (c->nodes, HaarNode, i).feature >= (int) c->features->len)
      return xml_fail (error, c, "a tree node uses feature %d, but there are %u features",
                       g_array_index (c->nodes, HaarNode, i).feature, c->features->len);
  for (guint i = 0; i < c->features->len; i++)
    {
      const HaarFeature *f = &g_array_index (c->features, HaarFeature, i);
      if (f->nrects < 1)
        return xml_fail (error, c, "feature %u: no rectangles", i);
      for (int k = 0; k < f->nrects; k++)
        {
          const HaarRect *r = &f->r[k];
          if (r->x < 0 || r->y < 0 || r->w <= 0 || r->h <= 0 || r->x + r->w > c->width || r->y + r->h > c->height)
            return xml_fail (error, c, "feature %u: rectangle %d,%d %dx%d is not inside the %dx%d window", i, r->x,
                             r->y, r->w, r->h, c->width, c->height);
        }
    }
  return TRUE;
}

OftHaarCascade *
oft_haar_load (const char *path, GError **error)
{
  if (!path)
    path = OFT_HAAR_DEFAULT_CASCADE;
  GError *err = NULL;
  char *data = NULL;
  gsize len = 0;
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND,
                   "%s: Haar cascade not found (install the Debian package %s: apt-get install %s)", path,
                   OFT_HAAR_PACKAGE, OFT_HAAR_PACKAGE);
      return NULL;
    }
  if (!g_file_get_contents (path, &data, &len, &err))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_FAILED, "%s: cannot read: %s", path, err->message);
      g_error_free (err);
      return NULL;
    }
  if (len > OFT_HAAR_MAX_FILE_BYTES)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: %zu bytes, more than the %u a cascade may have",
                   path, (size_t) len, OFT_HAAR_MAX_FILE_BYTES);
      g_free (data);
      return NULL;
    }
  Ctx c = {
    .path = path,
    .text = g_string_new (NULL),
    .stages = g_array_new (FALSE, FALSE, sizeof (HaarStage)),
    .trees = g_array_new (FALSE, FALSE, sizeof (HaarTree)),
    .nodes = g_array_new (FALSE, FALSE, sizeof (HaarNode)),
    .leaves = g_array_new (FALSE, FALSE, sizeof (float)),
    .features = g_array_new (FALSE, FALSE, sizeof (HaarFeature)),
  };
  GMarkupParser parser = { on_start, on_end, on_text, NULL, NULL };
  GMarkupParseContext *pc = g_markup_parse_context_new (&parser, G_MARKUP_PREFIX_ERROR_POSITION, &c, NULL);
  gboolean ok = g_markup_parse_context_parse (pc, data, (gssize) len, &err)
                && g_markup_parse_context_end_parse (pc, &err);
  g_markup_parse_context_free (pc);
  g_free (data);
  if (!ok)
    {
      if (err->domain == OFT_IO_ERROR)
        g_propagate_error (error, err);
      else
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: not a valid cascade XML: %s", path, err->message);
          g_error_free (err);
        }
    }
  else
    ok = validate (&c, error);

  OftHaarCascade *h = NULL;
  if (ok)
    {
      h = g_new0 (OftHaarCascade, 1);
      h->path = g_strdup (path);
      h->win_w = c.width;
      h->win_h = c.height;
      h->nstages = (int) c.stages->len;
      h->stages = (HaarStage *) g_array_free (c.stages, FALSE);
      h->ntrees = (int) c.trees->len;
      h->trees = (HaarTree *) g_array_free (c.trees, FALSE);
      h->nnodes = (int) c.nodes->len;
      h->nodes = (HaarNode *) g_array_free (c.nodes, FALSE);
      h->leaves = (float *) g_array_free (c.leaves, FALSE);
      h->nfeatures = (int) c.features->len;
      h->features = (HaarFeature *) g_array_free (c.features, FALSE);
    }
  else
    {
      g_array_free (c.stages, TRUE);
      g_array_free (c.trees, TRUE);
      g_array_free (c.nodes, TRUE);
      g_array_free (c.leaves, TRUE);
      g_array_free (c.features, TRUE);
    }
  for (int i = 0; i < c.depth; i++)
    g_free (c.stack[i]);
  g_string_free (c.text, TRUE);
  g_free (c.stage_type);
  g_free (c.feature_type);
  return h;
}

void
oft_haar_free (OftHaarCascade *h)
{
  if (!h)
    return;
  g_free (h->path);
  g_free (h->stages);
  g_free (h->trees);
  g_free (h->nodes);
  g_free (h->leaves);
  g_free (h->features);
  g_free (h);
}

void
oft_haar_window (const OftHaarCascade *h, int *width, int *height)
{
  *width = h->win_w;
  *height = h->win_h;
}
