/* Shared between the cascade reader and the detector. */
#pragma once
#include "oft/faces.h"

typedef struct {
  int x, y, w, h;
  float weight;
} HaarRect;

typedef struct {
  HaarRect r[3];
  int nrects;
} HaarFeature;

/* left/right: > 0 another node of the tree, ≤ 0 leaf −v (OpenCV's convention) */
typedef struct {
  int left, right, feature;
  float threshold;
} HaarNode;

typedef struct {
  float threshold; /* already lowered by OpenCV's 1e-5 */
  int first_tree, ntrees;
} HaarStage;

typedef struct {
  int first_node, nnodes, first_leaf;
} HaarTree;

struct OftHaarCascade {
  char *path;
  int win_w, win_h;
  HaarStage *stages;
  int nstages;
  HaarTree *trees;
  int ntrees;
  HaarNode *nodes;
  int nnodes;
  float *leaves;
  HaarFeature *features;
  int nfeatures;
};
