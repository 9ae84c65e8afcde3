/* The metrics the OFT paper reports for controllable generation: edge-map IoU/F1 (OFT eval_canny.py)
 * and segmentation mIoU/mAcc/aAcc pooled over a dataset (mmseg eval_metrics). 0/0 is NaN. */
#include "oft/conditions.h"
#include <math.h>

void
oft_metrics_edges (OftEdgeMetrics *m, const uint8_t *pred, const uint8_t *target, int64_t npixels)
{
  int64_t tp = 0, np = 0, nt = 0;
  for (int64_t i = 0; i < npixels; i++)
    {
      int p = pred[i] > 0, t = target[i] > 0;
      tp += p & t;
      np += p;
      nt += t;
    }
  m->tp = tp;
  m->fp = np - tp;
  m->fn = nt - tp;
  m->npixels = npixels;
  int64_t uni = np + nt - tp, agree = npixels - m->fp - m->fn;
  m->iou = uni ? (double) tp / (double) uni : NAN;
  m->f1 = (2 * tp + m->fp + m->fn) ? (double) (2 * tp) / (double) (2 * tp + m->fp + m->fn) : NAN;
  m->accuracy = npixels ? (double) agree / (double) npixels : NAN;
}

/* pixels of `a` with a pixel of `b` within `r` (Chebyshev), and of `a` in all */
static void
near_count (const uint8_t *a, const uint8_t *b, int w, int h, int r, int64_t *hit, int64_t *all)
{
  *hit = *all = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        if (!a[(int64_t) y * w + x])
          continue;
        ++*all;
        gboolean found = FALSE;
        for (int yy = MAX (0, y - r); !found && yy <= MIN (h - 1, y + r); yy++)
          for (int xx = MAX (0, x - r); !found && xx <= MIN (w - 1, x + r); xx++)
            found = b[(int64_t) yy * w + xx] != 0;
        *hit += found;
      }
}

double
oft_metrics_edges_f1_within (const uint8_t *pred, const uint8_t *target, int width, int height, int radius)
{
  int64_t tp_p, np, tp_t, nt;
  near_count (pred, target, width, height, MAX (radius, 0), &tp_p, &np);
  near_count (target, pred, width, height, MAX (radius, 0), &tp_t, &nt);
  if (!np || !nt)
    return NAN;
  double p = (double) tp_p / np, r = (double) tp_t / nt;
  return p + r > 0 ? 2 * p * r / (p + r) : 0;
}

OftSegAreas *
oft_seg_areas_new (int num_classes)
{
  OftSegAreas *a = g_new0 (OftSegAreas, 1);
  a->num_classes = num_classes;
  a->intersect = g_new0 (int64_t, num_classes);
  a->uni = g_new0 (int64_t, num_classes);
  a->pred = g_new0 (int64_t, num_classes);
  a->label = g_new0 (int64_t, num_classes);
  return a;
}

void
oft_seg_areas_free (OftSegAreas *a)
{
  if (!a)
    return;
  g_free (a->intersect);
  g_free (a->uni);
  g_free (a->pred);
  g_free (a->label);
  g_free (a);
}

void
oft_seg_areas_add (OftSegAreas *a, const uint8_t *pred, const uint8_t *gt, int64_t npixels, int ignore_index)
{
  int k = a->num_classes;
  for (int64_t i = 0; i < npixels; i++)
    {
      int g = gt[i], p = pred[i];
      if (g == ignore_index)
        continue;
      if (p < k)
        a->pred[p]++;
      if (g < k)
        a->label[g]++;
      if (p == g && g < k)
        a->intersect[g]++;
    }
  for (int c = 0; c < k; c++)
    a->uni[c] = a->pred[c] + a->label[c] - a->intersect[c];
}

void
oft_seg_areas_score (const OftSegAreas *a, OftSegScores *s, double *iou, double *acc)
{
  double sum_iou = 0, sum_acc = 0;
  int64_t total_i = 0, total_l = 0;
  s->classes_in_union = s->classes_in_gt = 0;
  for (int c = 0; c < a->num_classes; c++)
    {
      double ci = a->uni[c] ? (double) a->intersect[c] / (double) a->uni[c] : NAN;
      double ca = a->label[c] ? (double) a->intersect[c] / (double) a->label[c] : NAN;
      if (a->uni[c])
        {
          sum_iou += ci;
          s->classes_in_union++;
        }
      if (a->label[c])
        {
          sum_acc += ca;
          s->classes_in_gt++;
        }
      total_i += a->intersect[c];
      total_l += a->label[c];
      if (iou)
        iou[c] = ci;
      if (acc)
        acc[c] = ca;
    }
  s->miou = s->classes_in_union ? sum_iou / s->classes_in_union : NAN;
  s->macc = s->classes_in_gt ? sum_acc / s->classes_in_gt : NAN;
  s->aacc = total_l ? (double) total_i / (double) total_l : NAN;
}
