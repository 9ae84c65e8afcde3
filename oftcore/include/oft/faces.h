/* Faces for the landmark condition: a Haar-cascade face detector reading OpenCV's cascade XML
 * (Debian opencv-data) that reproduces cv::CascadeClassifier::detectMultiScale of OpenCV 4.6, and
 * dlib's 68-point shape predictor (ensemble of regression trees) reading its serialized .dat file
 * (Debian libdlib-data). Boxes are (x, y, w, h) in pixels; dlib's inclusive rectangle is
 * (x, y, x+w-1, y+h-1). Points are x0,y0,x1,y1,... doubles, x right, y down, origin at the top-left
 * pixel. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include "oft/image.h"

G_BEGIN_DECLS

#define OFT_HAAR_DEFAULT_CASCADE "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml"
#define OFT_HAAR_PACKAGE "opencv-data"
#define OFT_SHAPE_PREDICTOR_DEFAULT "/usr/share/dlib/shape_predictor_68_face_landmarks.dat"
#define OFT_SHAPE_PREDICTOR_PACKAGE "libdlib-data"

#define OFT_HAAR_MAX_FILE_BYTES (64u << 20)
#define OFT_SHAPE_PREDICTOR_MAX_FILE_BYTES (256u << 20)

typedef struct {
  int x, y, w, h;
} OftFaceBox;

/* ---- Haar cascade ---------------------------------------------------------------------------- */

typedef struct OftHaarCascade OftHaarCascade;

/* The cascade XML in OpenCV's current format (BOOST stages of ordered trees over HAAR features,
 * untilted). `path` NULL = OFT_HAAR_DEFAULT_CASCADE. A missing file is OFT_ERROR_NOT_FOUND with a
 * message naming the Debian package. */
OftHaarCascade *oft_haar_load (const char *path, GError **error);
void            oft_haar_free (OftHaarCascade *cascade);
/* Window size the cascade was trained on (24×24 for the frontal face cascades). */
void            oft_haar_window (const OftHaarCascade *cascade, int *width, int *height);

typedef struct {
  double scale_factor; /* > 1; OpenCV's default 1.1 */
  int min_neighbors;   /* a group needs more than this many raw hits; default 5 */
  int min_w, min_h;    /* smallest window; default 30×30 */
  int max_w, max_h;    /* largest window, 0 = image size */
} OftHaarParams;

/* scale 1.1, 5 neighbours, 30×30: the golden call. */
void oft_haar_params_init (OftHaarParams *params);

/* detectMultiScale on an 8-bit gray image (rows of `width` bytes): the grouped boxes, clipped to
 * the image, largest area first (ties: top, then left). Returns the count, boxes in *boxes
 * (g_free; NULL when 0), or -1 on bad arguments (error set). */
int oft_haar_detect (const OftHaarCascade *cascade, const uint8_t *gray, int width, int height,
                     const OftHaarParams *params, OftFaceBox **boxes, GError **error);

/* OpenCV's cvtColor(BGR2GRAY) for 8-bit pixels, (9798 R + 19235 G + 3735 B + 16384) >> 15, from a
 * 3/4-channel RGB(A) image; 1/2-channel images give their gray channel. width·height bytes, g_free. */
uint8_t *oft_faces_gray (const OftImage *img);

/* ---- dlib shape predictor --------------------------------------------------------------------- */

typedef struct OftShapePredictor OftShapePredictor;

/* dlib's serialized shape_predictor (the whole file is read and bounds-checked once; ~100 MB for
 * the 68-point model). `path` NULL = OFT_SHAPE_PREDICTOR_DEFAULT; missing file → OFT_ERROR_NOT_FOUND
 * naming the Debian package; any inconsistency → OFT_ERROR_CORRUPT naming the file and field. */
OftShapePredictor *oft_shape_predictor_load (const char *path, GError **error);
void               oft_shape_predictor_free (OftShapePredictor *sp);
int                oft_shape_predictor_num_parts (const OftShapePredictor *sp);
int                oft_shape_predictor_num_stages (const OftShapePredictor *sp);
/* Feature pixels sampled per cascade stage (500 for the 68-point model). */
int                oft_shape_predictor_num_features (const OftShapePredictor *sp, int stage);

/* Optional intermediate values, for checking a port stage by stage. */
typedef struct {
  float *stage0_features; /* NULL or num_features(0) intensities sampled in stage 0 */
  float *stage_shapes;    /* NULL or num_stages × 2·num_parts normalised shapes after each stage */
} OftShapeTrace;

/* The landmarks of the face in `box` (dlib rectangle (x, y, x+w-1, y+h-1)) as 2·num_parts doubles
 * (dlib's points before its rounding: floor(v + 0.5) gives dlib's integers). Intensity: the gray
 * value of 1/2-channel images, (R+G+B)/3 (integer division) of 3/4-channel ones, as dlib does for
 * array2d<unsigned char> and array2d<rgb_pixel>. w, h ≥ 1. */
gboolean oft_shape_predict (const OftShapePredictor *sp, const OftImage *img, OftFaceBox box,
                            double *points, OftShapeTrace *trace, GError **error);

/* ---- landmark condition image and metric ------------------------------------------------------ */

/* RGB, width×height, black; every pixel within r = max(1, min(W,H)/200) (integer division) of a
 * point rounded by floor(v + 0.5) is white: (px-x)²+(py-y)² ≤ r². */
OftImage *oft_landmarks_render (const double *points, int npoints, int width, int height);

/* OFT eval_landmark.py: mean over the points of the Euclidean distance, in pixels. */
double oft_landmark_error (const double *a, const double *b, int npoints);

G_END_DECLS
