/* Condition images for ControlNet-style OFT and the metrics the OFT paper scores them with:
 * Canny edges (bit-exact with OpenCV 4.6's cv2.Canny), OpenCV's 8-bit BGR2GRAY and 5×5 Gaussian blur,
 * ADE20K segmentation maps (palette, nearest-colour quantisation, index maps, legend image),
 * edge-map IoU/F1 and mmseg's mIoU/mAcc/aAcc. Pixels are interleaved 8-bit, rows top to bottom. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include "oft/image.h"

G_BEGIN_DECLS

/* ---- grayscale and blur -------------------------------------------------------------------------- */

/* cv2.cvtColor(COLOR_BGR2GRAY) on 8-bit data held as R,G,B: gray = (9798 R + 19235 G + 3735 B + 16384) >> 15.
 * `channels` (3 or 4) is the stride of `rgb`; alpha is ignored. */
void oft_gray_from_rgb (uint8_t *gray, const uint8_t *rgb, int64_t npixels, int channels);
/* A new 1-channel image: RGB(A) by the formula above, gray(+alpha) copied without alpha. */
OftImage *oft_gray_image (const OftImage *img);

/* cv2.GaussianBlur(src, (ksize, ksize), sigma, sigma, BORDER_REFLECT_101) on 8-bit data, each of the
 * `channels` interleaved channels separately, with OpenCV's bit-exact fixed-point path (Q8 kernel
 * from error-diffused rounding, exact integer sums, one rounding at the end). ksize odd in 1..31,
 * sigma > 0. `out` and `in` must not overlap. */
gboolean oft_gauss_blur (uint8_t *out, const uint8_t *in, int width, int height, int channels,
                         int ksize, double sigma, GError **error);
/* The Q8 kernel that blur uses (ksize taps summing to 256). */
void oft_gauss_kernel_q8 (int *kernel, int ksize, double sigma);

/* ---- Canny ---------------------------------------------------------------------------------------- */

typedef struct {
  double low, high;   /* hysteresis thresholds (swapped if low > high) */
  int aperture;       /* Sobel aperture: 3, 5 or 7 */
  gboolean l2;        /* L2 magnitude sqrt(dx²+dy²) instead of |dx|+|dy| */
} OftCannyParams;

#define OFT_CANNY_PARAMS_DEFAULT ((OftCannyParams) { 100, 200, 3, FALSE })

/* cv2.Canny(src, low, high, aperture, L2gradient) on `channels` (1 or 3) interleaved 8-bit channels:
 * with several channels the one with the largest gradient magnitude at a pixel wins (the first on
 * ties), as OpenCV does. `edges` gets width·height bytes, 255 = edge, 0 = not. */
gboolean oft_canny (uint8_t *edges, const uint8_t *src, int width, int height, int channels,
                    const OftCannyParams *params, GError **error);
/* Canny of an image of any channel count (alpha dropped): optionally blurred first
 * (GaussianBlur 5×5, σ = 1), optionally converted to gray with oft_gray_from_rgb (after the blur).
 * Returns a new 1-channel 0/255 image. */
OftImage *oft_canny_image (const OftImage *img, const OftCannyParams *params, gboolean gray, gboolean blur,
                           GError **error);

/* ---- segmentation maps ----------------------------------------------------------------------------- */

#define OFT_SEG_IGNORE 255  /* index-map value for "no class" (mmseg's ignore index) */

typedef struct {
  int n;             /* number of classes */
  char **names;      /* n names, verbatim from the file */
  uint8_t *rgb;      /* n·3 colours */
} OftPalette;

/* A palette JSON file: {"classes": [{"index": k, "name": "...", "rgb": [r, g, b]}, ...]} with indices 0..n-1
 * in order (n ≤ 255). */
OftPalette *oft_palette_load (const char *path, GError **error);
/* The ADE20K 150-class palette (data/ade20k-palette.json, found with oft_data_path from oft/runtime.h). */
OftPalette *oft_palette_load_ade20k (GError **error);
void oft_palette_free (OftPalette *pal);

/* Nearest palette colour per pixel: index = argmin_k (R-Rk)² + (G-Gk)² + (B-Bk)², integer, ties to the
 * lowest k. `channels` 3 or 4; with 4, pixels with alpha 0 get OFT_SEG_IGNORE (distance 0).
 * `dist2` (optional) receives the squared distance to the chosen colour. */
void oft_segmap_quantize (uint8_t *index, uint32_t *dist2, const uint8_t *rgb, int64_t npixels, int channels,
                          const OftPalette *pal);
/* Index map to palette colours (RGB); indices outside the palette become black. */
void oft_segmap_colorize (uint8_t *rgb, const uint8_t *index, int64_t npixels, const OftPalette *pal);
/* A legend image (RGB, white background): one row per class in `classes` (n of them, in that order),
 * a colour swatch with a dark border then "index name" in a built-in 5×7 font drawn at `scale` (1..8).
 * More than 40 classes flow into several columns. */
OftImage *oft_segmap_legend (const OftPalette *pal, const int *classes, int n, int scale, GError **error);

/* Draws ASCII text with the built-in 5×7 font (6×8 cell per character at scale 1; characters outside
 * 0x20..0x7E as a box) into an RGB image, clipped to the image. Returns the width drawn. */
int oft_font_draw (OftImage *img, int x, int y, const char *text, int scale, const uint8_t rgb[3]);
int oft_font_text_width (const char *text, int scale);

/* ---- metrics --------------------------------------------------------------------------------------- */

/* OFT eval_canny.py calculate_metrics on binary maps (pixel > 0): IoU = TP/|P∪T|,
 * F1 = 2TP/(2TP+FP+FN), accuracy = mean(P == T); 0/0 is NaN. */
typedef struct {
  double iou, f1, accuracy;
  int64_t tp, fp, fn, npixels;
} OftEdgeMetrics;
void oft_metrics_edges (OftEdgeMetrics *m, const uint8_t *pred, const uint8_t *target, int64_t npixels);
/* Edge F1 with a distance tolerance, as edge-detection benchmarks allow: precision is the share of
 * predicted edge pixels with a target edge within `radius` pixels (Chebyshev distance), recall the share
 * of target pixels with a predicted one within it (each side counted on its own, not BSDS's one-to-one
 * matching); F1 = 2PR/(P+R). Radius 0 is the pixel-exact F1 of oft_metrics_edges. NaN when either map is
 * empty, 0 when nothing matches. */
double oft_metrics_edges_f1_within (const uint8_t *pred, const uint8_t *target, int width, int height, int radius);

/* mmseg eval_metrics areas, pooled over any number of (pred, gt) pairs. Pixels whose gt is
 * `ignore_index` are dropped; values ≥ num_classes are not counted in any area (as mmseg's histc). */
typedef struct {
  int num_classes;
  int64_t *intersect, *uni, *pred, *label;  /* num_classes each */
} OftSegAreas;
OftSegAreas *oft_seg_areas_new (int num_classes);
void oft_seg_areas_free (OftSegAreas *a);
void oft_seg_areas_add (OftSegAreas *a, const uint8_t *pred, const uint8_t *gt, int64_t npixels, int ignore_index);

typedef struct {
  double miou;   /* nanmean of IoU_k = I_k/U_k: classes in gt or pred */
  double macc;   /* nanmean of Acc_k = I_k/L_k: classes in gt */
  double aacc;   /* ΣI / ΣL */
  int classes_in_union, classes_in_gt;
} OftSegScores;
/* Scores from pooled areas; iou/acc (optional, num_classes each) get the per-class values (NaN when 0/0). */
void oft_seg_areas_score (const OftSegAreas *a, OftSegScores *s, double *iou, double *acc);

/* ---- a condition from a photo ------------------------------------------------------------------- */

/* The condition image of `type` for a photo, as the condition encoder was trained on it: "canny"
 * (cv2.Canny 100/200 on the colour image, as ControlNet's detector; white edges, RGB), "landmarks"
 * (the largest Haar face's 68 dlib points as white dots; needs opencv-data and libdlib-data) or
 * "segmentation" (the photo's colours snapped to the ADE20K palette — for a painted map). */
OftImage *oft_condition_from_photo (const OftImage *photo, const char *type, GError **error);

G_END_DECLS
