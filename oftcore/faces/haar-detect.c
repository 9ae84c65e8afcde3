/* detectMultiScale as OpenCV 4.6's CPU path runs it, step for step, so the boxes match:
 *  - scales 1, f, f², … (double) while the rounded window fits the image and the max size; windows
 *    under the min size skipped; each scale kept as a float;
 *  - per scale the image is resized to round(W/s)×round(H/s) with cv::resize INTER_LINEAR, which for
 *    8-bit images is OpenCV's bit-exact fixed-point linear resize;
 *  - integral images (int32, squares wrapping like OpenCV's CV_32S), windows every 2 px (1 px from
 *    scale 2 on), one more skipped after a rejection at stage 0;
 *  - window variance over the 1-px shrunk window normalises the features; flat windows are
 *    rejected;
 *  - groupRectangles(minNeighbors, eps 0.2) and clipping to the image. */
#include "faces-internal.h"
#include "oft/error.h"
#include <math.h>
#include <string.h>

#define MAX_SCALES 1024

/* ---- cv::resize(INTER_LINEAR) for 8-bit, one channel ------------------------------------------ */
/* OpenCV 4.6 resizes 8-bit images with its bit-exact linear code (the one INTER_LINEAR_EXACT names):
 * source position (d + 0.5)·scale − 0.5 in double with scale = 1/(dst/src), weights in 8.8 fixed
 * point, horizontal sums in 8.8, vertical sums in 16.16 rounded half up. Positions left of the first
 * or right of the last source pixel take that pixel. (The older 11-bit SIMD path gives boxes a pixel
 * off; this one reproduces the golden boxes exactly.) */

typedef struct {
  int *ofs;  /* first source index */
  int *w1;   /* weight of ofs+1 in 1/256; ofs's weight is 256 − w1 */
} LinearTab;

static void
linear_tab (LinearTab *t, int dsize, int ssize)
{
  double scale = 1.0 / ((double) dsize / ssize);
  for (int d = 0; d < dsize; d++)
    {
      double f = scale * (d + 0.5) - 0.5;
      int i = (int) floor (f);
      if (i >= 0 && i < ssize - 1)
        t->ofs[d] = i, t->w1[d] = (int) lrint ((f - i) * 256);
      else
        t->ofs[d] = i < 0 ? 0 : ssize - 1, t->w1[d] = 0;
    }
}

static void
hresize_row (const uint8_t *S, const LinearTab *tx, int dw, uint32_t *D)
{
  for (int d = 0; d < dw; d++)
    {
      int s = tx->ofs[d], w1 = tx->w1[d];
      D[d] = w1 ? S[s] * (uint32_t) (256 - w1) + S[s + 1] * (uint32_t) w1 : (uint32_t) S[s] << 8;
    }
}

static void
resize_linear (const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh)
{
  if (sw == dw && sh == dh)
    {
      memcpy (dst, src, (size_t) sw * sh);
      return;
    }
  double sx = 1. / ((double) dw / sw), sy = 1. / ((double) dh / sh);
  if (fabs (sx - 2) < 2.220446049250313e-16 && fabs (sy - 2) < 2.220446049250313e-16)
    {
      /* exactly half: OpenCV switches to its fast INTER_AREA, a rounded 2×2 mean */
      for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++)
          {
            const uint8_t *p = src + (size_t) 2 * y * sw + 2 * x;
            dst[(size_t) y * dw + x] = (uint8_t) ((p[0] + p[1] + p[sw] + p[sw + 1] + 2) >> 2);
          }
      return;
    }
  LinearTab tx = { g_new (int, dw), g_new (int, dw) }, ty = { g_new (int, dh), g_new (int, dh) };
  linear_tab (&tx, dw, sw);
  linear_tab (&ty, dh, sh);
  uint32_t *rows = g_new (uint32_t, 2 * (size_t) dw), *r0 = rows, *r1 = rows + dw;
  int have0 = -1, have1 = -1;
  for (int y = 0; y < dh; y++)
    {
      int y0 = ty.ofs[y], y1 = ty.w1[y] ? y0 + 1 : y0;
      if (have0 != y0)
        {
          if (have1 == y0)
            {
              uint32_t *t = r0;
              r0 = r1, r1 = t;
              have0 = y0, have1 = -1;
            }
          else
            hresize_row (src + (size_t) y0 * sw, &tx, dw, r0), have0 = y0;
        }
      if (have1 != y1)
        hresize_row (src + (size_t) y1 * sw, &tx, dw, r1), have1 = y1;
      uint32_t b1 = (uint32_t) ty.w1[y], b0 = 256 - b1;
      uint8_t *out = dst + (size_t) y * dw;
      for (int x = 0; x < dw; x++)
        {
          uint32_t v = (r0[x] * b0 + r1[x] * b1 + 32768) >> 16; /* ≤ 255·65536: fits, never saturates */
          out[x] = (uint8_t) v;
        }
    }
  g_free (rows);
  g_free (tx.ofs);
  g_free (tx.w1);
  g_free (ty.ofs);
  g_free (ty.w1);
}

/* ---- cascade evaluation ----------------------------------------------------------------------- */

typedef struct {
  int ofs[3][4]; /* tl, tr, bl, br offsets into the integral image, per rectangle */
  float weight[3];
} OptFeature;

static inline int
rect_sum (const int32_t *p, const int *o)
{
  /* int32 arithmetic that may wrap (the squares do), as OpenCV's CV_32S buffers */
  return (int) ((uint32_t) p[o[0]] - (uint32_t) p[o[1]] - (uint32_t) p[o[2]] + (uint32_t) p[o[3]]);
}

static void
set_offsets (int *o, int x, int y, int w, int h, int step)
{
  o[0] = y * step + x;
  o[1] = y * step + x + w;
  o[2] = (y + h) * step + x;
  o[3] = (y + h) * step + x + w;
}

/* 1 accepted; 0 rejected by stage 0 (the caller then skips a position); −1 otherwise */
static int
run_window (const OftHaarCascade *h, const OptFeature *of, const int32_t *sum, const int32_t *sq, const int *nofs,
            double area)
{
  int valsum = rect_sum (sum, nofs);
  unsigned valsq = (unsigned) rect_sum (sq, nofs);
  double nf = area * valsq - (double) valsum * valsum;
  if (!(nf > 0.))
    return -1;
  float vnf = (float) (1. / sqrt (nf));
  if (!(area * vnf < 1e-1))
    return -1;
  for (int si = 0; si < h->nstages; si++)
    {
      const HaarStage *st = &h->stages[si];
      double acc = 0;
      for (int t = st->first_tree; t < st->first_tree + st->ntrees; t++)
        {
          const HaarTree *tr = &h->trees[t];
          int idx = 0;
          do
            {
              const HaarNode *n = &h->nodes[tr->first_node + idx];
              const OptFeature *f = &of[n->feature];
              float v = f->weight[0] * (float) rect_sum (sum, f->ofs[0]) + f->weight[1] * (float) rect_sum (sum, f->ofs[1]);
              if (f->weight[2] != 0.0f)
                v += f->weight[2] * (float) rect_sum (sum, f->ofs[2]);
              v *= vnf;
              idx = v < n->threshold ? n->left : n->right;
            }
          while (idx > 0);
          acc += h->leaves[tr->first_leaf - idx];
        }
      if (acc < st->threshold)
        return si == 0 ? 0 : -1;
    }
  return 1;
}

/* ---- grouping --------------------------------------------------------------------------------- */

static int
uf_find (int *parent, int i)
{
  while (parent[i] != i)
    {
      parent[i] = parent[parent[i]];
      i = parent[i];
    }
  return i;
}

static gboolean
similar (const OftFaceBox *a, const OftFaceBox *b, double eps)
{
  double delta = eps * (MIN (a->w, b->w) + MIN (a->h, b->h)) * 0.5;
  return abs (a->x - b->x) <= delta && abs (a->y - b->y) <= delta && abs (a->x + a->w - b->x - b->w) <= delta
         && abs (a->y + a->h - b->y - b->h) <= delta;
}

/* cv::groupRectangles: classes of similar boxes (transitively), averaged; classes with more than
 * `threshold` members kept unless inside a much better supported one. */
static int
group_rectangles (OftFaceBox *r, int n, int threshold, double eps)
{
  if (threshold <= 0 || n == 0)
    return n;
  int *parent = g_new (int, n), *label = g_new (int, n);
  for (int i = 0; i < n; i++)
    parent[i] = i;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (similar (&r[i], &r[j], eps))
        {
          int a = uf_find (parent, i), b = uf_find (parent, j);
          if (a != b)
            parent[b] = a;
        }
  int nclasses = 0;
  int *cls_of_root = g_new (int, n);
  for (int i = 0; i < n; i++)
    cls_of_root[i] = -1;
  for (int i = 0; i < n; i++)
    {
      int root = uf_find (parent, i);
      if (cls_of_root[root] < 0)
        cls_of_root[root] = nclasses++;
      label[i] = cls_of_root[root];
    }
  int64_t *acc = g_new0 (int64_t, 4 * (size_t) nclasses);
  int *cnt = g_new0 (int, nclasses);
  for (int i = 0; i < n; i++)
    {
      int64_t *a = acc + 4 * label[i];
      a[0] += r[i].x, a[1] += r[i].y, a[2] += r[i].w, a[3] += r[i].h;
      cnt[label[i]]++;
    }
  OftFaceBox *avg = g_new (OftFaceBox, nclasses);
  for (int k = 0; k < nclasses; k++)
    {
      float s = 1.f / (float) cnt[k];
      const int64_t *a = acc + 4 * k;
      avg[k] = (OftFaceBox) { (int) lrintf ((float) a[0] * s), (int) lrintf ((float) a[1] * s),
                              (int) lrintf ((float) a[2] * s), (int) lrintf ((float) a[3] * s) };
    }
  int out = 0;
  for (int i = 0; i < nclasses; i++)
    {
      OftFaceBox r1 = avg[i];
      int n1 = cnt[i], j;
      if (n1 <= threshold)
        continue;
      for (j = 0; j < nclasses; j++)
        {
          int n2 = cnt[j];
          if (j == i || n2 <= threshold)
            continue;
          OftFaceBox r2 = avg[j];
          int dx = (int) lrint (r2.w * eps), dy = (int) lrint (r2.h * eps);
          if (r1.x >= r2.x - dx && r1.y >= r2.y - dy && r1.x + r1.w <= r2.x + r2.w + dx
              && r1.y + r1.h <= r2.y + r2.h + dy && (n2 > MAX (3, n1) || n1 < 3))
            break;
        }
      if (j == nclasses)
        r[out++] = r1;
    }
  g_free (parent);
  g_free (label);
  g_free (cls_of_root);
  g_free (acc);
  g_free (cnt);
  g_free (avg);
  return out;
}

static int
cmp_box (const void *pa, const void *pb)
{
  const OftFaceBox *a = pa, *b = pb;
  int64_t aa = (int64_t) a->w * a->h, ab = (int64_t) b->w * b->h;
  if (aa != ab)
    return aa > ab ? -1 : 1;
  if (a->y != b->y)
    return a->y < b->y ? -1 : 1;
  return (a->x > b->x) - (a->x < b->x);
}

/* ---- detectMultiScale ------------------------------------------------------------------------- */

void
oft_haar_params_init (OftHaarParams *p)
{
  *p = (OftHaarParams) { .scale_factor = 1.1, .min_neighbors = 5, .min_w = 30, .min_h = 30 };
}

int
oft_haar_detect (const OftHaarCascade *h, const uint8_t *gray, int width, int height, const OftHaarParams *params,
                 OftFaceBox **boxes, GError **error)
{
  OftHaarParams def;
  if (!params)
    oft_haar_params_init (&def), params = &def;
  *boxes = NULL;
  if (!h || !gray || width <= 0 || height <= 0 || (int64_t) width * height > OFT_IMAGE_MAX_PIXELS)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "face detection: image %dx%d must be non-empty and "
                   "at most %d pixels", width, height, OFT_IMAGE_MAX_PIXELS);
      return -1;
    }
  if (!(params->scale_factor > 1.0001 && params->scale_factor < 100) || params->min_neighbors < 0
      || params->min_w < 0 || params->min_h < 0 || params->max_w < 0 || params->max_h < 0)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "face detection: scale factor %g must be above 1, "
                   "neighbours and sizes ≥ 0", params->scale_factor);
      return -1;
    }
  int max_w = params->max_w ? params->max_w : width, max_h = params->max_h ? params->max_h : height;
  float scales[MAX_SCALES];
  int nscales = 0;
  for (double factor = 1; nscales < MAX_SCALES; factor *= params->scale_factor)
    {
      int ww = (int) lrint (h->win_w * factor), wh = (int) lrint (h->win_h * factor);
      if (ww > max_w || wh > max_h || ww > width || wh > height)
        break;
      if (ww < params->min_w || wh < params->min_h)
        continue;
      scales[nscales++] = (float) factor;
    }

  GArray *cand = g_array_new (FALSE, FALSE, sizeof (OftFaceBox));
  uint8_t *img = g_malloc ((size_t) width * height);
  size_t isz = (size_t) (width + 2) * (height + 2);
  int32_t *sum = g_new (int32_t, isz), *sq = g_new (int32_t, isz);
  OptFeature *of = g_new (OptFeature, h->nfeatures);
  double area = (double) (h->win_w - 2) * (h->win_h - 2);
  for (int si = 0; si < nscales; si++)
    {
      float sc = scales[si];
      int sw = (int) lrintf ((float) width / sc), sh = (int) lrintf ((float) height / sc);
      sw = CLAMP (sw, 1, width), sh = CLAMP (sh, 1, height);
      int step = sc >= 2 ? 1 : 2;
      /* positions x ≤ sw − win_w (the window fits); the integral has one more row and column */
      int nx = sw + 1 - h->win_w, ny = sh + 1 - h->win_h;
      if (nx <= 0 || ny <= 0)
        continue;
      resize_linear (gray, width, height, img, sw, sh);
      int is = sw + 1;
      memset (sum, 0, sizeof (int32_t) * is);
      memset (sq, 0, sizeof (int32_t) * is);
      for (int y = 0; y < sh; y++)
        {
          int32_t *s = sum + (size_t) (y + 1) * is, *q = sq + (size_t) (y + 1) * is;
          const int32_t *sp = s - is, *qp = q - is;
          const uint8_t *row = img + (size_t) y * sw;
          uint32_t rs = 0, rq = 0;
          s[0] = q[0] = 0;
          for (int x = 0; x < sw; x++)
            {
              rs += row[x];
              rq += (uint32_t) row[x] * row[x];
              s[x + 1] = (int32_t) ((uint32_t) sp[x + 1] + rs);
              q[x + 1] = (int32_t) ((uint32_t) qp[x + 1] + rq);
            }
        }
      for (int f = 0; f < h->nfeatures; f++)
        for (int k = 0; k < 3; k++)
          {
            const HaarRect *r = &h->features[f].r[k];
            if (k < h->features[f].nrects)
              set_offsets (of[f].ofs[k], r->x, r->y, r->w, r->h, is);
            else
              memset (of[f].ofs[k], 0, sizeof of[f].ofs[k]);
            of[f].weight[k] = k < h->features[f].nrects ? r->weight : 0.f;
          }
      int nofs[4];
      set_offsets (nofs, 1, 1, h->win_w - 2, h->win_h - 2, is);
      int ww = (int) lrintf ((float) h->win_w * sc), wh = (int) lrintf ((float) h->win_h * sc);
      for (int y = 0; y < ny; y += step)
        for (int x = 0; x < nx; x += step)
          {
            size_t o = (size_t) y * is + x;
            int res = run_window (h, of, sum + o, sq + o, nofs, area);
            if (res > 0)
              {
                OftFaceBox b = { (int) lrintf ((float) x * sc), (int) lrintf ((float) y * sc), ww, wh };
                g_array_append_val (cand, b);
              }
            else if (res == 0)
              x += step;
          }
    }
  g_free (img);
  g_free (sum);
  g_free (sq);
  g_free (of);

  OftFaceBox *r = (OftFaceBox *) cand->data;
  int n = group_rectangles (r, (int) cand->len, params->min_neighbors, 0.2);
  /* clipObjects: intersect with the image, drop empty ones */
  int m = 0;
  for (int i = 0; i < n; i++)
    {
      int x0 = MAX (r[i].x, 0), y0 = MAX (r[i].y, 0);
      int x1 = MIN (r[i].x + r[i].w, width), y1 = MIN (r[i].y + r[i].h, height);
      if (x1 > x0 && y1 > y0)
        r[m++] = (OftFaceBox) { x0, y0, x1 - x0, y1 - y0 };
    }
  if (m > 1)
    qsort (r, m, sizeof *r, cmp_box);
  *boxes = m ? g_memdup2 (r, sizeof *r * m) : NULL;
  g_array_free (cand, TRUE);
  return m;
}

uint8_t *
oft_faces_gray (const OftImage *img)
{
  size_t n = (size_t) img->width * img->height;
  uint8_t *g = g_malloc (n ? n : 1);
  for (size_t i = 0; i < n; i++)
    {
      const uint8_t *p = img->pixels + i * img->channels;
      g[i] = img->channels >= 3 ? (uint8_t) ((9798 * p[0] + 19235 * p[1] + 3735 * p[2] + 16384) >> 15) : p[0];
    }
  return g;
}
