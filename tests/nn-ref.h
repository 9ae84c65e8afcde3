/* Double-precision reference kernels for test-nn: the textbook definitions as naive loops, written
 * independently of oftcore/nn so that the float kernels are checked against the math, not against
 * themselves. Same layouts and argument order as oft/nn.h. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "oft/nn.h"

void ref_linear (double *out, const double *x, const double *w, const double *b, int64_t N, int C, int OC);
void ref_conv2d (double *out, const double *x, const double *w, const double *b, const OftConv2dShape *s);
void ref_groupnorm (double *out, const double *x, const double *w, const double *b,
                    int B, int C, int64_t HW, int G, double eps);
void ref_layernorm (double *out, const double *x, const double *w, const double *b,
                    int64_t N, int C, double eps);
double ref_silu (double x);
double ref_gelu (double x);
double ref_gelu_tanh (double x);
double ref_quick_gelu (double x);
void ref_geglu (double *out, const double *x, int64_t N, int C);
void ref_softmax (double *out, const double *x, int64_t N, int C);
void ref_attention (double *out, const double *q, const double *k, const double *v,
                    int B, int Tq, int Tk, int H, int D, bool causal);
void ref_upsample2x (double *out, const double *x, int64_t BC, int H, int W);
void ref_concat (double *out, const double *a, const double *b, int B, int Ca, int Cb, int64_t HW);
void ref_timestep_embedding (double *out, const double *t, int N, int dim,
                             bool flip_sin_to_cos, double freq_shift, double max_period);
double ref_mse (const double *p, const double *t, int64_t n);
