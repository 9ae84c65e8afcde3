/* The scene analyser: reads a picture of the procedural-scene kind back into background colour,
 * shapes (class, colour, position, size), relations and the sks pattern, with fixed rules so that
 * the same image always gives the same answer.
 *
 * Steps: the border's one or two colour clusters (k-means in CIELAB) are the background; pixels
 * farther than FG_DISTANCE from both are foreground; 8-connected foreground components of at least
 * MIN_AREA pixels are shapes, classed by shape invariants (holes, convex-hull solidity, bounding-box
 * fill, top/bottom and left/right balance) and named by the vocabulary colour nearest to the median
 * colour of their interior. */
#include "scenes-private.h"
#include "oft/error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FG_DISTANCE 20.0      /* ΔE76 from the background; vocabulary colours are ≥ 40 from each other */
#define MIN_AREA_SHARE 0.003  /* of the image; 12 px at 64×64, smallest shapes are ~75 px */
#define PATTERN_DISTANCE 60.0 /* RGB distance from a shape's median colour that counts as texture */
#define PATTERN_SHARE 0.25    /* share of such pixels in the shape's deep interior that makes the pattern */
#define PATTERN_NEAR 70.0     /* RGB distance from one of the pattern's two colours that counts as that colour */
#define PATTERN_EACH 0.2      /* share of the deep interior each of the two colours must hold */

/* ---- colour ------------------------------------------------------------------------------------------- */

static double
srgb_to_linear (double c)
{
  c /= 255.0;
  return c <= 0.04045 ? c / 12.92 : pow ((c + 0.055) / 1.055, 2.4);
}

static double
lab_f (double t)
{
  const double d = 6.0 / 29.0;
  return t > d * d * d ? cbrt (t) : t / (3 * d * d) + 4.0 / 29.0;
}

void
scene_rgb_to_lab (const uint8_t rgb[3], double lab[3])
{
  static double linear[256];
  static gsize init = 0;
  if (g_once_init_enter (&init))
    {
      for (int i = 0; i < 256; i++)
        linear[i] = srgb_to_linear (i);
      g_once_init_leave (&init, 1);
    }
  double r = linear[rgb[0]], g = linear[rgb[1]], b = linear[rgb[2]];
  double x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047;
  double y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b;
  double z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883;
  double fx = lab_f (x), fy = lab_f (y), fz = lab_f (z);
  lab[0] = 116 * fy - 16;
  lab[1] = 500 * (fx - fy);
  lab[2] = 200 * (fy - fz);
}

double
scene_lab_distance (const double a[3], const double b[3])
{
  return sqrt ((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) + (a[2] - b[2]) * (a[2] - b[2]));
}

static OftSceneColour
nearest_lab (const double lab[3], double *distance)
{
  static double vocab[OFT_COLOUR_COUNT][3];
  static gsize init = 0;
  if (g_once_init_enter (&init))
    {
      for (int k = 0; k < OFT_COLOUR_COUNT; k++)
        {
          uint8_t rgb[3];
          oft_scene_colour_rgb (k, rgb);
          scene_rgb_to_lab (rgb, vocab[k]);
        }
      g_once_init_leave (&init, 1);
    }
  int best = 0;
  double bd = INFINITY;
  for (int k = 0; k < OFT_COLOUR_COUNT; k++)
    {
      double d = scene_lab_distance (lab, vocab[k]);
      if (d < bd)
        bd = d, best = k;
    }
  if (distance)
    *distance = bd;
  return best;
}

OftSceneColour
oft_scene_colour_nearest (const uint8_t rgb[3], double *distance)
{
  double lab[3];
  scene_rgb_to_lab (rgb, lab);
  return nearest_lab (lab, distance);
}

static void
lab_to_rgb (const double lab[3], uint8_t rgb[3])
{
  /* only for reporting cluster centres: invert Lab → XYZ → linear → sRGB */
  double fy = (lab[0] + 16) / 116, fx = fy + lab[1] / 500, fz = fy - lab[2] / 200;
  const double d = 6.0 / 29.0;
  double f[3] = { fx, fy, fz }, t[3];
  for (int i = 0; i < 3; i++)
    t[i] = f[i] > d ? f[i] * f[i] * f[i] : 3 * d * d * (f[i] - 4.0 / 29.0);
  double x = t[0] * 0.95047, y = t[1], z = t[2] * 1.08883;
  double lin[3] = { 3.2404542 * x - 1.5371385 * y - 0.4985314 * z, -0.9692660 * x + 1.8760108 * y + 0.0415560 * z,
                    0.0556434 * x - 0.2040259 * y + 1.0572252 * z };
  for (int i = 0; i < 3; i++)
    {
      double c = CLAMP (lin[i], 0.0, 1.0);
      c = c <= 0.0031308 ? 12.92 * c : 1.055 * pow (c, 1 / 2.4) - 0.055;
      rgb[i] = (uint8_t) lround (c * 255);
    }
}

static int
cmp_u8 (const void *a, const void *b)
{
  return (int) *(const uint8_t *) a - (int) *(const uint8_t *) b;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

/* ---- background --------------------------------------------------------------------------------------- */

/* k-means (k = 2, 10 rounds) of the border pixels' Lab colours, started from the per-channel median and
 * the pixel farthest from it. One cluster when the two are close or the smaller holds < 15 %. */
static void
background_clusters (const double *lab, int width, int height, double centre[2][3], int count[2], int *nclusters)
{
  int frame = MAX (1, MIN (width, height) / 32);  /* 2 px at 64 */
  GArray *idx = g_array_new (FALSE, FALSE, sizeof (int));
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++)
      if (x < frame || y < frame || x >= width - frame || y >= height - frame)
        {
          int i = y * width + x;
          g_array_append_val (idx, i);
        }
  int n = idx->len;
  const int *px = (const int *) idx->data;
  /* the median of at most ~256 of them (evenly spaced) starts the first cluster */
  int stride = MAX (1, n / 256), m = 0;
  double *chan = g_new (double, n / stride + 1);
  for (int c = 0; c < 3; c++)
    {
      m = 0;
      for (int i = 0; i < n; i += stride)
        chan[m++] = lab[px[i] * 3 + c];
      qsort (chan, m, sizeof *chan, cmp_double);
      centre[0][c] = chan[m / 2];
    }
  g_free (chan);
  double far = -1;
  for (int i = 0; i < n; i++)
    {
      double d = scene_lab_distance (lab + px[i] * 3, centre[0]);
      if (d > far)
        {
          far = d;
          memcpy (centre[1], lab + px[i] * 3, sizeof centre[1]);
        }
    }
  for (int round = 0; round < 10; round++)
    {
      double sum[2][3] = { { 0 } };
      count[0] = count[1] = 0;
      for (int i = 0; i < n; i++)
        {
          const double *p = lab + px[i] * 3;
          int k = scene_lab_distance (p, centre[1]) < scene_lab_distance (p, centre[0]);
          count[k]++;
          for (int c = 0; c < 3; c++)
            sum[k][c] += p[c];
        }
      for (int k = 0; k < 2; k++)
        if (count[k])
          for (int c = 0; c < 3; c++)
            centre[k][c] = sum[k][c] / count[k];
    }
  if (count[1] > count[0])
    {
      double t[3];
      memcpy (t, centre[0], sizeof t);
      memcpy (centre[0], centre[1], sizeof t);
      memcpy (centre[1], t, sizeof t);
      int tc = count[0];
      count[0] = count[1], count[1] = tc;
    }
  *nclusters = 2;
  if (scene_lab_distance (centre[0], centre[1]) < 8 || count[1] < 0.15 * n)
    {
      /* one cluster: the mean of all */
      double sum[3] = { 0 };
      for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
          sum[c] += lab[px[i] * 3 + c];
      for (int c = 0; c < 3; c++)
        centre[0][c] = sum[c] / n;
      count[0] = n, count[1] = 0;
      *nclusters = 1;
    }
  g_array_free (idx, TRUE);
}

/* ---- shape invariants --------------------------------------------------------------------------------- */

static double
cross (const double o[2], const double a[2], const double b[2])
{
  return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
}

static int
cmp_point (const void *pa, const void *pb)
{
  const double *a = pa, *b = pb;
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1];
}

/* Area of the convex hull of points (x, y pairs), Andrew's monotone chain. Sorts `pts`. */
static double
hull_area (double (*pts)[2], int n)
{
  if (n < 3)
    return 0;
  qsort (pts, n, sizeof pts[0], cmp_point);
  double (*h)[2] = g_malloc (sizeof *h * 2 * n);
  int k = 0;
  for (int i = 0; i < n; i++)
    {
      while (k >= 2 && cross (h[k - 2], h[k - 1], pts[i]) <= 0)
        k--;
      memcpy (h[k++], pts[i], sizeof pts[i]);
    }
  for (int i = n - 2, lo = k + 1; i >= 0; i--)
    {
      while (k >= lo && cross (h[k - 2], h[k - 1], pts[i]) <= 0)
        k--;
      memcpy (h[k++], pts[i], sizeof pts[i]);
    }
  double area = 0;
  for (int i = 0; i + 1 < k; i++)
    area += h[i][0] * h[i + 1][1] - h[i + 1][0] * h[i][1];
  g_free (h);
  return fabs (area) / 2;
}

/* The class from the invariants, in an order where each test separates one class from all those left
 * (margins measured on 64×64 and 96×96 renders, clean and with σ = 8 noise after a 3×3 blur):
 *   ring      a hole of ≥ 8 % of the filled area (rings have ~30 %, the rest ~0)
 *   star      convex-hull solidity < 0.80 (stars 0.54–0.78, all others ≥ 0.81)
 *   triangle  top/bottom or left/right imbalance ≥ 0.10 (triangles ≥ 0.12, others ≤ 0.09)
 *   square    its outline fits the box no worse than a circle's, within 0.03 (squares ≥ −0.05 but 1 in 500,
 *             circles ≤ −0.04)
 *   diamond   fill + corner fill − ½·(diamond fit − circle fit) < 0.735 (a diamond fills half its box and
 *             none of its corners; a circle π/4 of it and some of them)
 *   circle    the rest */
static int
classify (const OftSceneComponent *c)
{
  if (c->hole_ratio >= 0.08)
    return OFT_SHAPE_RING;
  if (c->solidity < 0.80)
    return OFT_SHAPE_STAR;
  if (MAX (fabs (c->top_ratio - 0.5), fabs (c->left_ratio - 0.5)) >= 0.10)
    return OFT_SHAPE_TRIANGLE;
  if (c->match[OFT_SHAPE_SQUARE] - c->match[OFT_SHAPE_CIRCLE] > -0.03)
    return OFT_SHAPE_SQUARE;
  if (c->fill + c->corners - 0.5 * (c->match[OFT_SHAPE_DIAMOND] - c->match[OFT_SHAPE_CIRCLE]) < 0.735)
    return OFT_SHAPE_DIAMOND;
  return OFT_SHAPE_CIRCLE;
}

/* Pixels of component `label` in its box whose (2r+1)² neighbourhood lies in it. */
static GArray *
interior (const OftSceneComponent *c, const int *labels, int label, int width, int height, int r)
{
  GArray *in = g_array_new (FALSE, FALSE, sizeof (int));
  for (int y = c->y0; y <= c->y1; y++)
    for (int x = c->x0; x <= c->x1; x++)
      {
        int i = y * width + x;
        gboolean inner = labels[i] == label;
        for (int dy = -r; dy <= r && inner; dy++)
          for (int dx = -r; dx <= r && inner; dx++)
            {
              int nx = x + dx, ny = y + dy;
              inner = nx >= 0 && ny >= 0 && nx < width && ny < height && labels[ny * width + nx] == label;
            }
        if (inner)
          g_array_append_val (in, i);
      }
  return in;
}

/* Colour: the per-channel median over the interior (1 px in from the rim, whose pixels are mixed with
 * the background; the whole component when that is under 4 pixels).
 * Texture: the share of pixels 2 px in from the rim (clear of blur and anti-aliasing) farther than
 * PATTERN_DISTANCE from that median: 0 for flat fills even with σ = 8 noise (a 7σ distance), about
 * half or more for the pattern's blue and white quarters. The pattern: that texture, made of the
 * pattern's own two colours (each within PATTERN_NEAR on PATTERN_EACH of those pixels). */
static void
measure_colour (OftSceneComponent *c, const int *labels, int label, const uint8_t *rgb, int width, int height)
{
  GArray *in = interior (c, labels, label, width, height, 1);
  if (in->len < 4)
    {
      g_array_free (in, TRUE);
      in = interior (c, labels, label, width, height, 0);
    }
  int n = in->len;
  const int *ip = (const int *) in->data;
  uint8_t *chan = g_new (uint8_t, n);
  for (int ch = 0; ch < 3; ch++)
    {
      for (int i = 0; i < n; i++)
        chan[i] = rgb[ip[i] * 3 + ch];
      qsort (chan, n, 1, cmp_u8);
      c->rgb[ch] = chan[n / 2];
    }
  g_free (chan);
  g_array_free (in, TRUE);
  c->colour = oft_scene_colour_nearest (c->rgb, &c->colour_distance);

  GArray *deep = interior (c, labels, label, width, height, 2);
  int far = 0, near[2] = { 0, 0 };
  for (guint i = 0; i < deep->len; i++)
    {
      const uint8_t *p = rgb + g_array_index (deep, int, i) * 3;
      double d2 = 0, dp[2] = { 0, 0 };
      for (int ch = 0; ch < 3; ch++)
        {
          d2 += ((double) p[ch] - c->rgb[ch]) * ((double) p[ch] - c->rgb[ch]);
          for (int k = 0; k < 2; k++)
            dp[k] += ((double) p[ch] - scene_pattern_rgb[k][ch]) * ((double) p[ch] - scene_pattern_rgb[k][ch]);
        }
      far += d2 > PATTERN_DISTANCE * PATTERN_DISTANCE;
      for (int k = 0; k < 2; k++)
        near[k] += dp[k] <= PATTERN_NEAR * PATTERN_NEAR;
    }
  c->texture = deep->len ? (double) far / deep->len : 0;
  /* textured, and both of the pattern's colours in it: texture alone also fires on the noise an
   * untrained word draws */
  c->pattern = deep->len >= 12 && c->texture >= PATTERN_SHARE && near[0] >= PATTERN_EACH * deep->len
               && near[1] >= PATTERN_EACH * deep->len;
  g_array_free (deep, TRUE);
}

/* Redraws the component's outline at half coverage: each pixel's coverage (alpha) is its position
 * between the nearer background colour and the shape's colour, averaged with its four neighbours
 * (σ = 8 noise would otherwise make the outline ragged; the cross keeps squares' corner pixels and
 * one-pixel spikes), and pixels under one half are dropped. This also drops the blur halo that the low
 * foreground threshold takes in. Area, box and centroid are recomputed. */
static void
refine (OftSceneComponent *c, int *labels, int label, const double *lab, double bg[2][3], int nbg, int width,
        int height)
{
  double own[3];
  scene_rgb_to_lab (c->rgb, own);
  int bx0 = MAX (0, c->x0 - 1), by0 = MAX (0, c->y0 - 1), bx1 = MIN (width - 1, c->x1 + 1),
      by1 = MIN (height - 1, c->y1 + 1);
  int bw = bx1 - bx0 + 1, bh = by1 - by0 + 1;
  double *alpha = g_new0 (double, (size_t) bw * bh);
  for (int y = by0; y <= by1; y++)
    for (int x = bx0; x <= bx1; x++)
      {
        int i = y * width + x;
        if (labels[i] != label && labels[i] != -1)  /* other shapes count as background */
          continue;
        const double *p = lab + i * 3;
        const double *b = bg[0];
        if (nbg == 2 && scene_lab_distance (p, bg[1]) < scene_lab_distance (p, bg[0]))
          b = bg[1];
        double num = 0, den = 0;
        for (int ch = 0; ch < 3; ch++)
          {
            num += (p[ch] - b[ch]) * (own[ch] - b[ch]);
            den += (own[ch] - b[ch]) * (own[ch] - b[ch]);
          }
        alpha[(y - by0) * bw + (x - bx0)] = den > 0 ? CLAMP (num / den, 0.0, 1.0) : 1;
      }
  int area = 0, x0 = width, y0 = height, x1 = -1, y1 = -1;
  double sx = 0, sy = 0;
  for (int y = c->y0; y <= c->y1; y++)
    for (int x = c->x0; x <= c->x1; x++)
      {
        int i = y * width + x;
        if (labels[i] != label)
          continue;
        int ax = x - bx0, ay = y - by0;
        double sum = alpha[ay * bw + ax];
        sum += ax > 0 ? alpha[ay * bw + ax - 1] : 0;
        sum += ax + 1 < bw ? alpha[ay * bw + ax + 1] : 0;
        sum += ay > 0 ? alpha[(ay - 1) * bw + ax] : 0;
        sum += ay + 1 < bh ? alpha[(ay + 1) * bw + ax] : 0;
        if (sum < 2.5)
          {
            labels[i] = -2;  /* rim: dropped */
            continue;
          }
        area++;
        sx += x + 0.5, sy += y + 0.5;
        x0 = MIN (x0, x), x1 = MAX (x1, x), y0 = MIN (y0, y), y1 = MAX (y1, y);
      }
  g_free (alpha);
  if (area == 0)
    return;
  c->area = area;
  c->x0 = x0, c->y0 = y0, c->x1 = x1, c->y1 = y1;
  c->cx = sx / area / width, c->cy = sy / area / height;
  c->size = sqrt (area / G_PI) / MIN (width, height);
}

/* Each shape's outline stretched over the component's box (2×2 samples per pixel): the IoU of its
 * area with the component's pixels. */
static void
template_match (OftSceneComponent *c, const int *labels, int label, int width)
{
  static const double extent[OFT_SHAPE_COUNT][4] = {  /* u0, u1, v0, v1 of each outline, size units */
    [OFT_SHAPE_CIRCLE] = { -0.85, 0.85, -0.85, 0.85 },
    [OFT_SHAPE_SQUARE] = { -0.7, 0.7, -0.7, 0.7 },
    [OFT_SHAPE_TRIANGLE] = { -0.8660254, 0.8660254, -1, 0.5 },
    [OFT_SHAPE_STAR] = { -0.9510565, 0.9510565, -1, 0.8090170 },
    [OFT_SHAPE_RING] = { -0.9, 0.9, -0.9, 0.9 },
    [OFT_SHAPE_DIAMOND] = { -0.7, 0.7, -1, 1 },
  };
  int bw = c->x1 - c->x0 + 1, bh = c->y1 - c->y0 + 1;
  for (int k = 0; k < OFT_SHAPE_COUNT; k++)
    {
      double inter = 0, uni = 0;
      for (int y = c->y0; y <= c->y1; y++)
        for (int x = c->x0; x <= c->x1; x++)
          {
            gboolean in = labels[y * width + x] == label;
            double t = 0;
            for (int sy = 0; sy < 2; sy++)
              for (int sx = 0; sx < 2; sx++)
                {
                  double fx = (x - c->x0 + 0.25 + 0.5 * sx) / bw, fy = (y - c->y0 + 0.25 + 0.5 * sy) / bh;
                  double u = extent[k][0] + fx * (extent[k][1] - extent[k][0]);
                  double v = extent[k][2] + fy * (extent[k][3] - extent[k][2]);
                  t += scene_shape_contains (k, u, v) ? 0.25 : 0;
                }
            inter += in ? t : 0;
            uni += in ? 1 : t;
          }
      c->match[k] = uni > 0 ? inter / uni : 0;
    }
}

/* Shape invariants of component `label` and its class. */
static void
measure_shape (OftSceneComponent *c, const int *labels, int label, int width)
{
  int x0 = c->x0, y0 = c->y0, x1 = c->x1, y1 = c->y1;
  int bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  /* holes: non-component pixels of the box not reachable from outside it */
  int ew = bw + 2, eh = bh + 2;
  uint8_t *outside = g_new0 (uint8_t, (size_t) ew * eh);
  int *stack = g_new (int, (size_t) ew * eh), sp = 0;
#define IN_COMP(ex, ey) ((ex) >= 1 && (ey) >= 1 && (ex) <= bw && (ey) <= bh \
                         && labels[(y0 + (ey) - 1) * width + x0 + (ex) - 1] == label)
  outside[0] = 1;
  stack[sp++] = 0;
  while (sp)
    {
      int e = stack[--sp], ex = e % ew, ey = e / ew;
      static const int d4[4][2] = { { 1, 0 }, { -1, 0 }, { 0, 1 }, { 0, -1 } };
      for (int k = 0; k < 4; k++)
        {
          int nx = ex + d4[k][0], ny = ey + d4[k][1];
          if (nx < 0 || ny < 0 || nx >= ew || ny >= eh || outside[ny * ew + nx] || IN_COMP (nx, ny))
            continue;
          outside[ny * ew + nx] = 1;
          stack[sp++] = ny * ew + nx;
        }
    }
#undef IN_COMP
  int holes = 0, filled_n = 0;
  double top = 0, left = 0, ymid = (y0 + y1 + 1) / 2.0, xmid = (x0 + x1 + 1) / 2.0;
  double (*pts)[2] = g_malloc (sizeof *pts * 4 * bh);
  int npts = 0;
  for (int y = y0; y <= y1; y++)
    {
      int first = -1, last = -1;
      for (int x = x0; x <= x1; x++)
        {
          gboolean in = labels[y * width + x] == label;
          if (!in && outside[(y - y0 + 1) * ew + (x - x0 + 1)])
            continue;
          holes += !in;
          filled_n++;
          double cy = y + 0.5, cx = x + 0.5;
          top += cy < ymid ? 1 : cy == ymid ? 0.5 : 0;
          left += cx < xmid ? 1 : cx == xmid ? 0.5 : 0;
          if (first < 0)
            first = x;
          last = x;
        }
      if (first >= 0)  /* the row's outer pixel corners are all the hull needs */
        {
          pts[npts][0] = first, pts[npts++][1] = y;
          pts[npts][0] = first, pts[npts++][1] = y + 1;
          pts[npts][0] = last + 1, pts[npts++][1] = y;
          pts[npts][0] = last + 1, pts[npts++][1] = y + 1;
        }
    }
  double hull = hull_area (pts, npts);
  c->fill = (double) filled_n / (bw * bh);
  /* corners: the box's four corner triangles (|u| + |v| > 1.3 in box-normalised coordinates), filled
   * fully by a square, ~10 % by a circle, half by a triangle's base, not at all by a diamond */
  int corner_px = 0, corner_in = 0;
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++)
      {
        double u = (x + 0.5 - xmid) / (bw / 2.0), v = (y + 0.5 - ymid) / (bh / 2.0);
        if (fabs (u) + fabs (v) <= 1.3)
          continue;
        corner_px++;
        corner_in += labels[y * width + x] == label || !outside[(y - y0 + 1) * ew + (x - x0 + 1)];
      }
  c->corners = corner_px ? (double) corner_in / corner_px : 0;
  template_match (c, labels, label, width);
  c->solidity = hull > 0 ? MIN (1.0, filled_n / hull) : 1;
  c->hole_ratio = (double) holes / filled_n;
  c->top_ratio = top / filled_n;
  c->left_ratio = left / filled_n;
  c->kind = classify (c);
  g_free (pts);
  g_free (stack);
  g_free (outside);
}

static int
cmp_area_desc (const void *pa, const void *pb)
{
  const OftSceneComponent *a = pa, *b = pb;
  if (a->area != b->area)
    return a->area > b->area ? -1 : 1;
  return a->y0 != b->y0 ? a->y0 - b->y0 : a->x0 - b->x0;  /* ties: reading order, for determinism */
}

gboolean
oft_scene_analyse (const OftImage *img, OftSceneAnalysis *a, GError **error)
{
  memset (a, 0, sizeof *a);
  if (!img || !img->pixels || img->width < 16 || img->height < 16 || img->channels < 1 || img->channels > 4
      || (int64_t) img->width * img->height > OFT_IMAGE_MAX_PIXELS)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "scene analysis: image %d×%d×%d: expected at least "
                   "16×16 pixels with 1 to 4 channels", img ? img->width : 0, img ? img->height : 0,
                   img ? img->channels : 0);
      return FALSE;
    }
  int width = img->width, height = img->height, npx = width * height;
  OftImage *conv = img->channels == 3 ? NULL : oft_image_convert (img, 3);
  const uint8_t *rgb = conv ? conv->pixels : img->pixels;
  a->width = width, a->height = height;

  double *lab = g_new (double, (size_t) npx * 3);
  for (int i = 0; i < npx; i++)
    if (i > 0 && memcmp (rgb + i * 3, rgb + (i - 1) * 3, 3) == 0)  /* flat areas: same colour as the last */
      memcpy (lab + i * 3, lab + (i - 1) * 3, 3 * sizeof *lab);
    else
      scene_rgb_to_lab (rgb + i * 3, lab + i * 3);

  double centre[2][3];
  int count[2];
  background_clusters (lab, width, height, centre, count, &a->background_clusters);
  /* background name: the clusters' names weighted by their border share */
  int votes[OFT_COLOUR_COUNT] = { 0 };
  for (int k = 0; k < a->background_clusters; k++)
    {
      votes[nearest_lab (centre[k], NULL)] += count[k];
      lab_to_rgb (centre[k], a->background_rgb[k]);
    }
  a->background = 0;
  for (int k = 1; k < OFT_COLOUR_COUNT; k++)
    if (votes[k] > votes[a->background])
      a->background = k;

  /* foreground mask and 8-connected components */
  int *labels = g_new (int, npx);
  int nfg = 0;
  for (int i = 0; i < npx; i++)
    {
      double d = scene_lab_distance (lab + i * 3, centre[0]);
      if (a->background_clusters == 2)
        d = MIN (d, scene_lab_distance (lab + i * 3, centre[1]));
      labels[i] = d > FG_DISTANCE ? 0 : -1;  /* 0: foreground not yet labelled */
      nfg += d > FG_DISTANCE;
    }
  a->foreground_share = (double) nfg / npx;
  int min_area = MAX (8, (int) lround (MIN_AREA_SHARE * npx));
  int *stack = g_new (int, npx);
  GArray *comps = g_array_new (FALSE, TRUE, sizeof (OftSceneComponent));
  int next_label = 1;
  for (int start = 0; start < npx; start++)
    {
      if (labels[start] != 0)
        continue;
      int label = next_label++, sp = 0, area = 0;
      OftSceneComponent c = { 0 };
      c.x0 = width, c.y0 = height, c.x1 = -1, c.y1 = -1;
      double sx = 0, sy = 0;
      labels[start] = label;
      stack[sp++] = start;
      while (sp)
        {
          int i = stack[--sp], x = i % width, y = i / width;
          area++;
          sx += x + 0.5, sy += y + 0.5;
          c.x0 = MIN (c.x0, x), c.x1 = MAX (c.x1, x), c.y0 = MIN (c.y0, y), c.y1 = MAX (c.y1, y);
          for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++)
              {
                int nx = x + dx, ny = y + dy;
                if (nx < 0 || ny < 0 || nx >= width || ny >= height || labels[ny * width + nx] != 0)
                  continue;
                labels[ny * width + nx] = label;
                stack[sp++] = ny * width + nx;
              }
        }
      if (area < min_area)
        {
          a->n_small++;
          continue;
        }
      c.area = area;
      c.cx = sx / area / width, c.cy = sy / area / height;
      c.size = sqrt (area / G_PI) / MIN (width, height);
      measure_colour (&c, labels, label, rgb, width, height);
      if (!c.pattern)  /* the pattern's second colour would be cut away */
        refine (&c, labels, label, lab, centre, a->background_clusters, width, height);
      measure_shape (&c, labels, label, width);
      g_array_append_val (comps, c);
    }
  a->n_components = MIN ((int) comps->len, OFT_SCENE_MAX_COMPONENTS);
  if (a->n_components > 0)  /* an empty GArray has no data */
    {
      qsort (comps->data, comps->len, sizeof (OftSceneComponent), cmp_area_desc);
      memcpy (a->components, comps->data, a->n_components * sizeof (OftSceneComponent));
    }
  g_array_free (comps, TRUE);
  g_free (stack);
  g_free (labels);
  g_free (lab);
  oft_image_free (conv);
  return TRUE;
}

OftSceneRelation
oft_scene_analysis_relation (const OftSceneAnalysis *a, int i, int j)
{
  const OftSceneComponent *p = &a->components[i], *q = &a->components[j];
  double dx = (q->cx - p->cx) * a->width, dy = (q->cy - p->cy) * a->height;  /* q relative to p */
  if (fabs (dy) > fabs (dx))
    return dy > 0 ? OFT_RELATION_ABOVE : OFT_RELATION_BELOW;
  return dx > 0 ? OFT_RELATION_LEFT : OFT_RELATION_RIGHT;
}

/* ---- caption match ------------------------------------------------------------------------------------ */

static gboolean
shape_fits (const OftSceneComponent *c, const OftSceneCaption *cap, int i)
{
  return c->kind == cap->shapes[i].kind && !c->pattern == !cap->shapes[i].pattern
         && (cap->shapes[i].colour == OFT_SCENE_ANY || c->colour == cap->shapes[i].colour);
}

static gboolean
assign (const OftSceneAnalysis *a, const OftSceneCaption *cap, int i, int *chosen)
{
  if (i == cap->n_shapes)
    {
      if (cap->n_shapes == 2 && cap->relation != OFT_RELATION_NONE
          && (int) oft_scene_analysis_relation (a, chosen[0], chosen[1]) != cap->relation)
        return FALSE;
      int smallest = G_MAXINT;
      for (int k = 0; k < cap->n_shapes; k++)
        smallest = MIN (smallest, a->components[chosen[k]].area);
      for (int c = 0; c < a->n_components; c++)
        {
          gboolean used = FALSE;
          for (int k = 0; k < cap->n_shapes; k++)
            used |= chosen[k] == c;
          if (!used && 2 * a->components[c].area > smallest)
            return FALSE;
        }
      return TRUE;
    }
  for (int c = 0; c < a->n_components; c++)
    {
      gboolean used = FALSE;
      for (int k = 0; k < i; k++)
        used |= chosen[k] == c;
      if (used || !shape_fits (&a->components[c], cap, i))
        continue;
      chosen[i] = c;
      if (assign (a, cap, i + 1, chosen))
        return TRUE;
    }
  return FALSE;
}

gboolean
oft_scene_matches_caption (const OftSceneAnalysis *a, const OftSceneCaption *cap)
{
  if (cap->n_shapes < 1 || cap->n_shapes > OFT_SCENE_MAX_SHAPES)
    return FALSE;
  if (cap->background != OFT_SCENE_ANY && cap->background != a->background)
    return FALSE;
  int chosen[OFT_SCENE_MAX_SHAPES];
  return assign (a, cap, 0, chosen);
}

/* ---- JSON --------------------------------------------------------------------------------------------- */

/* ",\"name\":value" with a '.' decimal point whatever the locale (json-glib would print 17 digits) */
static void
json_num (GString *o, const char *name, double v, const char *format)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_string_append_printf (o, ",\"%s\":%s", name, g_ascii_formatd (buf, sizeof buf, format, v));
}

char *
oft_scene_analysis_to_json (const OftSceneAnalysis *a)
{
  GString *o = g_string_new (NULL);
  g_string_append_printf (o, "{\"background\":\"%s\",\"background_rgb\":[", oft_scene_colour_name (a->background));
  for (int k = 0; k < a->background_clusters; k++)
    g_string_append_printf (o, "%s[%d,%d,%d]", k ? "," : "", a->background_rgb[k][0], a->background_rgb[k][1],
                            a->background_rgb[k][2]);
  g_string_append (o, "]");
  json_num (o, "foreground_share", a->foreground_share, "%.4f");
  g_string_append_printf (o, ",\"specks\":%d,\"shapes\":[", a->n_small);
  for (int i = 0; i < a->n_components; i++)
    {
      const OftSceneComponent *c = &a->components[i];
      g_string_append_printf (o, "%s{\"kind\":\"%s\",\"colour\":\"%s\",\"rgb\":[%d,%d,%d],\"pattern\":%s,\"area\":%d,"
                              "\"box\":[%d,%d,%d,%d]", i ? "," : "", oft_shape_name (c->kind),
                              oft_scene_colour_name (c->colour), c->rgb[0], c->rgb[1], c->rgb[2],
                              c->pattern ? "true" : "false", c->area, c->x0, c->y0, c->x1, c->y1);
      json_num (o, "colour_distance", c->colour_distance, "%.2f");
      json_num (o, "cx", c->cx, "%.4f");
      json_num (o, "cy", c->cy, "%.4f");
      json_num (o, "size", c->size, "%.4f");
      json_num (o, "fill", c->fill, "%.4f");
      json_num (o, "solidity", c->solidity, "%.4f");
      json_num (o, "hole_ratio", c->hole_ratio, "%.4f");
      json_num (o, "corners", c->corners, "%.4f");
      json_num (o, "top_ratio", c->top_ratio, "%.4f");
      json_num (o, "left_ratio", c->left_ratio, "%.4f");
      json_num (o, "texture", c->texture, "%.4f");
      g_string_append (o, ",\"match\":{");
      for (int k = 0; k < OFT_SHAPE_COUNT; k++)
        {
          char buf[G_ASCII_DTOSTR_BUF_SIZE];
          g_string_append_printf (o, "%s\"%s\":%s", k ? "," : "", oft_shape_name (k),
                                  g_ascii_formatd (buf, sizeof buf, "%.4f", c->match[k]));
        }
      g_string_append (o, "}}");
    }
  g_string_append (o, "]");
  if (a->n_components >= 2)
    g_string_append_printf (o, ",\"relation_0_1\":\"%s\"",
                            oft_scene_relation_name (oft_scene_analysis_relation (a, 0, 1)));
  g_string_append (o, "}");
  return g_string_free (o, FALSE);
}
