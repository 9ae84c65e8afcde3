/* dlib's shape_predictor (Kazemi & Sullivan's ensemble of regression trees), read from dlib's own
 * serialization and evaluated in the closed form of the golden README, which reproduces dlib's
 * integers and floats exactly:
 *   integer: control byte (bit 7 sign, bits 0-3 byte count 1..8, bits 4-6 zero) + little-endian bytes
 *   float:   integer mantissa, integer exponent (value = m·2^e; 32000..32002 = inf, -inf, NaN)
 *   matrix:  rows, cols (written negated), values;  std::vector: count, elements
 * File: version 1, initial_shape (2P), forests[stages][trees]{splits{idx1,idx2,thresh}, leaves[2P]},
 * anchor_idx[stages][features], deltas[stages][features]{x,y}. Every count and index is checked
 * against its bound and against the bytes left before anything is allocated. */
#include "oft/faces.h"
#include "oft/error.h"
#include <math.h>
#include <string.h>

#define MAX_PARTS 1000
#define MAX_STAGES 100
#define MAX_TREES 100000    /* per stage */
#define MAX_SPLITS 1023      /* per tree: depth ≤ 10 */
#define MAX_FEATURES 100000 /* per stage */

typedef struct {
  uint32_t idx1, idx2;
  float thresh;
} Split;

typedef struct {
  size_t split_off; /* into splits */
  size_t leaf_off;  /* into leaves, in floats */
  int nsplits;
} Tree;

struct OftShapePredictor {
  int nparts, nstages;
  float *initial;          /* 2P */
  int *stage_first_tree;   /* nstages + 1 */
  Tree *trees;
  Split *splits;
  float *leaves;
  int *stage_first_feat;   /* nstages + 1 */
  uint32_t *anchor;        /* per feature, a part index */
  float *deltas;           /* per feature, x y */
};

typedef struct {
  const uint8_t *start, *p, *end;
  const char *path;
  const char *field;       /* what is being read, for messages */
  GError **error;
  gboolean failed;
} Reader;

static gboolean
rd_fail (Reader *r, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static gboolean
rd_fail (Reader *r, const char *fmt, ...)
{
  if (r->failed)
    return FALSE;
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (r->error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: %s at byte %zu: %s (not a dlib shape_predictor file?)",
               r->path, r->field, (size_t) (r->p - r->start), msg);
  g_free (msg);
  r->failed = TRUE;
  return FALSE;
}

static size_t
rd_left (const Reader *r)
{
  return (size_t) (r->end - r->p);
}

static inline gboolean
rd_int (Reader *r, int64_t *out)
{
  const uint8_t *p = r->p;
  *out = 0;
  if (G_UNLIKELY (p >= r->end))
    return rd_fail (r, "file ends early");
  uint8_t c = *p;
  int n = c & 0x0F;
  if (G_UNLIKELY ((c & 0x70) || n < 1 || n > 8))
    return rd_fail (r, "bad integer control byte 0x%02x", c);
  if (G_UNLIKELY (r->end - p < n + 1))
    return rd_fail (r, "file ends early");
  uint64_t v = 0;
  for (int i = n; i >= 1; i--)
    v = (v << 8) | p[i];
  if (G_UNLIKELY (v > (uint64_t) INT64_MAX))
    return rd_fail (r, "integer out of range");
  r->p = p + n + 1;
  *out = (c & 0x80) ? -(int64_t) v : (int64_t) v;
  return TRUE;
}

/* an integer in lo..hi */
static inline gboolean
rd_range (Reader *r, int64_t lo, int64_t hi, int64_t *out)
{
  if (!rd_int (r, out))
    return FALSE;
  if (*out < lo || *out > hi)
    return rd_fail (r, "value %" G_GINT64_FORMAT " outside %" G_GINT64_FORMAT "..%" G_GINT64_FORMAT, *out, lo, hi);
  return TRUE;
}

static inline gboolean
rd_float (Reader *r, float *out)
{
  int64_t m, e;
  if (G_UNLIKELY (r->p < r->end && (*r->p & 0x70)))
    return rd_fail (r, "float in dlib's old text format");
  if (!rd_int (r, &m) || !rd_range (r, INT16_MIN, INT16_MAX, &e))
    return FALSE;
  if (G_UNLIKELY (e >= 32000 && e <= 32002))
    return rd_fail (r, "infinite or NaN value");
  float f;
  if (m > -(1 << 24) && m < (1 << 24) && e >= -126 && e <= 127)
    {
      /* exact mantissa times an exact power of two: one rounding, as ldexp then a cast */
      union { uint32_t u; float f; } pw = { .u = (uint32_t) (e + 127) << 23 };
      f = (float) m * pw.f;
    }
  else
    f = (float) ldexp ((double) m, (int) e);
  if (G_UNLIKELY (!isfinite (f)))
    return rd_fail (r, "value overflows a float");
  *out = f;
  return TRUE;
}

/* a vector count; `min_bytes` per element bounds it by what is left of the file */
static gboolean
rd_count (Reader *r, int64_t lo, int64_t hi, size_t min_bytes, int64_t *out)
{
  if (!rd_range (r, lo, hi, out))
    return FALSE;
  if ((uint64_t) *out * min_bytes > rd_left (r))
    return rd_fail (r, "count %" G_GINT64_FORMAT " needs more bytes than the file has left", *out);
  return TRUE;
}

/* matrix<float,0,1> of exactly `rows` values (rows < 0: any even count in 2..2·MAX_PARTS, returned) */
static gboolean
rd_column (Reader *r, int rows, int *got_rows, float *out_or_null, GArray *append_to)
{
  int64_t nr, nc;
  if (!rd_int (r, &nr) || !rd_int (r, &nc))
    return FALSE;
  if (nr < 0 || nc < 0) /* current dlib writes both negated */
    nr = -nr, nc = -nc;
  if (nc != 1)
    return rd_fail (r, "matrix has %" G_GINT64_FORMAT " columns, expected 1", nc);
  if (rows >= 0 && nr != rows)
    return rd_fail (r, "matrix has %" G_GINT64_FORMAT " rows, expected %d", nr, rows);
  if (rows < 0 && (nr < 2 || nr > 2 * MAX_PARTS || nr % 2))
    return rd_fail (r, "shape has %" G_GINT64_FORMAT " values, expected an even count up to %d", nr, 2 * MAX_PARTS);
  if ((uint64_t) nr * 4 > rd_left (r))
    return rd_fail (r, "file ends early");
  if (got_rows)
    *got_rows = (int) nr;
  float *dst = out_or_null;
  if (append_to)
    {
      guint at = append_to->len;
      g_array_set_size (append_to, at + (guint) nr);
      dst = &g_array_index (append_to, float, at);
    }
  for (int64_t i = 0; i < nr; i++)
    if (!rd_float (r, &dst[i]))
      return FALSE;
  return TRUE;
}

void
oft_shape_predictor_free (OftShapePredictor *sp)
{
  if (!sp)
    return;
  g_free (sp->initial);
  g_free (sp->stage_first_tree);
  g_free (sp->trees);
  g_free (sp->splits);
  g_free (sp->leaves);
  g_free (sp->stage_first_feat);
  g_free (sp->anchor);
  g_free (sp->deltas);
  g_free (sp);
}

static gboolean
parse (Reader *r, OftShapePredictor *sp)
{
  int64_t v, nstages, n;
  r->field = "version";
  if (!rd_int (r, &v))
    return FALSE;
  if (v != 1)
    return rd_fail (r, "version %" G_GINT64_FORMAT ", expected 1", v);

  r->field = "initial_shape";
  float tmp[2 * MAX_PARTS];
  int rows = 0;
  if (!rd_column (r, -1, &rows, tmp, NULL))
    return FALSE;
  sp->nparts = rows / 2;
  sp->initial = g_memdup2 (tmp, sizeof (float) * rows);

  r->field = "forests";
  if (!rd_count (r, 1, MAX_STAGES, 1, &nstages))
    return FALSE;
  sp->nstages = (int) nstages;
  sp->stage_first_tree = g_new0 (int, nstages + 1);
  GArray *trees = g_array_new (FALSE, FALSE, sizeof (Tree));
  GArray *splits = g_array_new (FALSE, FALSE, sizeof (Split));
  GArray *leaves = g_array_new (FALSE, FALSE, sizeof (float));
  gboolean ok = TRUE;
  for (int s = 0; ok && s < nstages; s++)
    {
      int64_t ntrees;
      sp->stage_first_tree[s] = (int) trees->len;
      if (!rd_count (r, 1, MAX_TREES, 4, &ntrees) || trees->len + ntrees > (guint) G_MAXINT)
        {
          ok = FALSE;
          break;
        }
      for (int t = 0; ok && t < ntrees; t++)
        {
          int64_t nsplits, nleaves;
          r->field = "forests: tree splits";
          /* a complete binary tree: 2^d − 1 splits, 2^d leaves */
          if (!rd_count (r, 1, MAX_SPLITS, 8, &nsplits) || ((nsplits + 1) & nsplits))
            {
              ok = rd_fail (r, "stage %d tree %d: %" G_GINT64_FORMAT " splits, expected 2^d - 1", s, t, nsplits);
              break;
            }
          Tree tr = { .split_off = splits->len, .leaf_off = leaves->len, .nsplits = (int) nsplits };
          for (int k = 0; ok && k < nsplits; k++)
            {
              int64_t i1 = 0, i2 = 0;
              Split sp_ = { 0 };
              ok = rd_range (r, 0, MAX_FEATURES - 1, &i1) && rd_range (r, 0, MAX_FEATURES - 1, &i2)
                   && rd_float (r, &sp_.thresh);
              sp_.idx1 = (uint32_t) i1, sp_.idx2 = (uint32_t) i2;
              g_array_append_val (splits, sp_);
            }
          r->field = "forests: tree leaves";
          if (ok && (!rd_count (r, nsplits + 1, nsplits + 1, 4, &nleaves)))
            ok = FALSE;
          for (int k = 0; ok && k < nsplits + 1; k++)
            ok = rd_column (r, 2 * sp->nparts, NULL, NULL, leaves);
          g_array_append_val (trees, tr);
        }
      r->field = "forests";
    }
  sp->stage_first_tree[nstages] = (int) trees->len;
  sp->trees = (Tree *) g_array_free (trees, FALSE);
  sp->splits = (Split *) g_array_free (splits, FALSE);
  sp->leaves = (float *) g_array_free (leaves, FALSE);
  if (!ok)
    return FALSE;

  r->field = "anchor_idx";
  if (!rd_count (r, nstages, nstages, 1, &n))
    return FALSE;
  sp->stage_first_feat = g_new0 (int, nstages + 1);
  GArray *anchor = g_array_new (FALSE, FALSE, sizeof (uint32_t));
  for (int s = 0; ok && s < nstages; s++)
    {
      int64_t nf;
      sp->stage_first_feat[s] = (int) anchor->len;
      ok = rd_count (r, 1, MAX_FEATURES, 2, &nf);
      for (int i = 0; ok && i < nf; i++)
        {
          int64_t a = 0;
          ok = rd_range (r, 0, sp->nparts - 1, &a);
          uint32_t a32 = (uint32_t) a;
          g_array_append_val (anchor, a32);
        }
    }
  sp->stage_first_feat[nstages] = (int) anchor->len;
  sp->anchor = (uint32_t *) g_array_free (anchor, FALSE);
  if (!ok)
    return FALSE;

  r->field = "deltas";
  if (!rd_count (r, nstages, nstages, 1, &n))
    return FALSE;
  sp->deltas = g_new (float, 2 * (size_t) sp->stage_first_feat[nstages]);
  for (int s = 0; s < nstages; s++)
    {
      int64_t nf;
      int want = sp->stage_first_feat[s + 1] - sp->stage_first_feat[s];
      if (!rd_count (r, want, want, 8, &nf))
        return FALSE;
      for (int i = sp->stage_first_feat[s]; i < sp->stage_first_feat[s + 1]; i++)
        if (!rd_float (r, &sp->deltas[2 * i]) || !rd_float (r, &sp->deltas[2 * i + 1]))
          return FALSE;
    }
  if (r->p != r->end)
    return rd_fail (r, "%zu bytes after the last field", rd_left (r));

  /* split features must exist in their stage */
  r->field = "forests: split features";
  for (int s = 0; s < nstages; s++)
    {
      uint32_t nf = (uint32_t) (sp->stage_first_feat[s + 1] - sp->stage_first_feat[s]);
      for (int t = sp->stage_first_tree[s]; t < sp->stage_first_tree[s + 1]; t++)
        for (int k = 0; k < sp->trees[t].nsplits; k++)
          {
            const Split *x = &sp->splits[sp->trees[t].split_off + k];
            if (x->idx1 >= nf || x->idx2 >= nf)
              return rd_fail (r, "stage %d tree %d uses feature %u, the stage has %u", s,
                              t - sp->stage_first_tree[s], MAX (x->idx1, x->idx2), nf);
          }
    }
  return TRUE;
}

OftShapePredictor *
oft_shape_predictor_load (const char *path, GError **error)
{
  if (!path)
    path = OFT_SHAPE_PREDICTOR_DEFAULT;
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND,
                   "%s: dlib shape predictor not found (install the Debian package %s: apt-get install %s)", path,
                   OFT_SHAPE_PREDICTOR_PACKAGE, OFT_SHAPE_PREDICTOR_PACKAGE);
      return NULL;
    }
  GError *err = NULL;
  GMappedFile *mf = g_mapped_file_new (path, FALSE, &err);
  if (!mf)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_FAILED, "%s: cannot read: %s", path, err->message);
      g_error_free (err);
      return NULL;
    }
  size_t len = g_mapped_file_get_length (mf);
  if (len > OFT_SHAPE_PREDICTOR_MAX_FILE_BYTES)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: %zu bytes, more than the %u a shape predictor may have",
                   path, len, OFT_SHAPE_PREDICTOR_MAX_FILE_BYTES);
      g_mapped_file_unref (mf);
      return NULL;
    }
  const uint8_t *data = (const uint8_t *) g_mapped_file_get_contents (mf);
  /* an empty file maps to NULL, and NULL + 0 is undefined */
  Reader r = { .start = data, .p = data, .end = data ? data + len : data, .path = path, .field = "version", .error = error };
  OftShapePredictor *sp = g_new0 (OftShapePredictor, 1);
  if (!data || !parse (&r, sp))
    {
      if (!r.failed)
        g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: empty file", path);
      oft_shape_predictor_free (sp);
      sp = NULL;
    }
  g_mapped_file_unref (mf);
  return sp;
}

int
oft_shape_predictor_num_parts (const OftShapePredictor *sp)
{
  return sp->nparts;
}

int
oft_shape_predictor_num_stages (const OftShapePredictor *sp)
{
  return sp->nstages;
}

int
oft_shape_predictor_num_features (const OftShapePredictor *sp, int stage)
{
  g_return_val_if_fail (stage >= 0 && stage < sp->nstages, 0);
  return sp->stage_first_feat[stage + 1] - sp->stage_first_feat[stage];
}

/* dlib's get_pixel_intensity: gray as is, RGB as (R+G+B)/3 */
static inline float
intensity (const OftImage *img, int x, int y)
{
  const uint8_t *p = img->pixels + ((size_t) y * img->width + x) * img->channels;
  return img->channels >= 3 ? (float) ((p[0] + p[1] + p[2]) / 3) : (float) p[0];
}

gboolean
oft_shape_predict (const OftShapePredictor *sp, const OftImage *img, OftFaceBox box, double *points,
                   OftShapeTrace *trace, GError **error)
{
  if (!img || img->width <= 0 || img->height <= 0 || img->channels < 1 || img->channels > 4)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "landmarks: empty image or unsupported channel count");
      return FALSE;
    }
  if (box.w < 1 || box.h < 1 || abs (box.x) > (1 << 24) || abs (box.y) > (1 << 24) || box.w > (1 << 24)
      || box.h > (1 << 24))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "landmarks: box %d,%d %dx%d needs a width and height "
                   "of at least 1", box.x, box.y, box.w, box.h);
      return FALSE;
    }
  const int P = sp->nparts, P2 = 2 * P;
  const double l = box.x, t = box.y, sx = box.w - 1, sy = box.h - 1; /* dlib scales by right−left */
  float *shape = g_memdup2 (sp->initial, sizeof (float) * P2);
  int maxf = 0;
  for (int s = 0; s < sp->nstages; s++)
    maxf = MAX (maxf, oft_shape_predictor_num_features (sp, s));
  float *feat = g_new (float, maxf);

  /* the reference shape's centred coordinates and |f|² do not change */
  double mfx = 0, mfy = 0;
  for (int j = 0; j < P; j++)
    mfx += sp->initial[2 * j], mfy += sp->initial[2 * j + 1];
  mfx /= P, mfy /= P;

  for (int s = 0; s < sp->nstages; s++)
    {
      /* least-squares similarity initial → shape: [[a,-b],[b,a]] */
      double mgx = 0, mgy = 0, ff = 0, dot = 0, cross = 0;
      for (int j = 0; j < P; j++)
        mgx += shape[2 * j], mgy += shape[2 * j + 1];
      mgx /= P, mgy /= P;
      for (int j = 0; j < P; j++)
        {
          double fx = sp->initial[2 * j] - mfx, fy = sp->initial[2 * j + 1] - mfy;
          double gx = shape[2 * j] - mgx, gy = shape[2 * j + 1] - mgy;
          ff += fx * fx + fy * fy;
          dot += fx * gx + fy * gy;
          cross += fx * gy - fy * gx;
        }
      float a = ff > 0 ? (float) (dot / ff) : 1.f, b = ff > 0 ? (float) (cross / ff) : 0.f, nb = -b;

      int f0 = sp->stage_first_feat[s], nf = sp->stage_first_feat[s + 1] - f0;
      for (int i = 0; i < nf; i++)
        {
          int k = (int) sp->anchor[f0 + i];
          float dx = sp->deltas[2 * (f0 + i)], dy = sp->deltas[2 * (f0 + i) + 1];
          float px = a * dx, py = b * dx;
          px += nb * dy;
          py += a * dy;
          px += shape[2 * k];
          py += shape[2 * k + 1];
          double X = l + px * sx, Y = t + py * sy;
          double xf = floor (X + 0.5), yf = floor (Y + 0.5);
          feat[i] = xf >= 0 && xf < img->width && yf >= 0 && yf < img->height ? intensity (img, (int) xf, (int) yf) : 0.f;
        }
      if (s == 0 && trace && trace->stage0_features)
        memcpy (trace->stage0_features, feat, sizeof (float) * nf);

      for (int ti = sp->stage_first_tree[s]; ti < sp->stage_first_tree[s + 1]; ti++)
        {
          const Tree *tr = &sp->trees[ti];
          const Split *sp_ = sp->splits + tr->split_off;
          int n = 0;
          while (n < tr->nsplits)
            n = feat[sp_[n].idx1] - feat[sp_[n].idx2] > sp_[n].thresh ? 2 * n + 1 : 2 * n + 2;
          const float *leaf = sp->leaves + tr->leaf_off + (size_t) (n - tr->nsplits) * P2;
          for (int j = 0; j < P2; j++)
            shape[j] += leaf[j];
        }
      if (trace && trace->stage_shapes)
        memcpy (trace->stage_shapes + (size_t) s * P2, shape, sizeof (float) * P2);
    }
  for (int j = 0; j < P; j++)
    {
      points[2 * j] = l + shape[2 * j] * sx;
      points[2 * j + 1] = t + shape[2 * j + 1] * sy;
    }
  g_free (feat);
  g_free (shape);
  return TRUE;
}
