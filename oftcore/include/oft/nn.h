/* CPU kernels, forward and backward, in llm.c's style: plain float pointers and sizes, outputs first,
 * then inputs, then sizes. Layouts are PyTorch's (NCHW images, [N, C] rows, weights [out, in]).
 *
 * Every backward ACCUMULATES (+=) into its gradient outputs so that a tensor used twice collects
 * both contributions; callers zero gradients once per step. Any gradient output may be NULL when it
 * is not needed (e.g. dweight of a frozen layer); then the forward input `inp` of linear and conv2d
 * may be NULL too, since only the weight gradient reads it. GEMMs go through OpenBLAS; loops are threaded with
 * OpenMP over the available cores. */
#pragma once
#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

G_BEGIN_DECLS

/* ---- linear: out[N,OC] = inp[N,C] · weight[OC,C]ᵀ + bias[OC] (bias may be NULL) ---- */
void oft_linear_forward (float *out, const float *inp, const float *weight, const float *bias,
                         int64_t N, int C, int OC);
void oft_linear_backward (float *dinp, float *dweight, float *dbias,
                          const float *dout, const float *inp, const float *weight,
                          int64_t N, int C, int OC);

/* ---- conv2d over NCHW, weight [OC, C, kh, kw], any kernel/stride/padding (zero padding) ---- */
typedef struct {
  int B, C, H, W;      /* input */
  int OC, kh, kw;      /* output channels, kernel */
  int stride, pad;     /* same in both directions (SD's convs are all square) */
} OftConv2dShape;
int    oft_conv2d_out_h (const OftConv2dShape *s);
int    oft_conv2d_out_w (const OftConv2dShape *s);
/* Floats of scratch that forward and backward need (im2col of one image, or of the whole batch plus
 * its output when images are small; 0 for 1×1 stride-1 convs). */
size_t oft_conv2d_scratch_floats (const OftConv2dShape *s);
void oft_conv2d_forward (float *out, const float *inp, const float *weight, const float *bias,
                         const OftConv2dShape *s, float *scratch);
void oft_conv2d_backward (float *dinp, float *dweight, float *dbias,
                          const float *dout, const float *inp, const float *weight,
                          const OftConv2dShape *s, float *scratch);

/* ---- group norm over inp[B, C, HW] with G groups; mean/rstd [B*G] are saved for backward ---- */
void oft_groupnorm_forward (float *out, float *mean, float *rstd,
                            const float *inp, const float *weight, const float *bias,
                            int B, int C, int64_t HW, int G, float eps);
void oft_groupnorm_backward (float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight,
                             const float *mean, const float *rstd,
                             int B, int C, int64_t HW, int G);

/* ---- layer norm over the last dim of inp[N, C]; mean/rstd [N] ---- */
void oft_layernorm_forward (float *out, float *mean, float *rstd,
                            const float *inp, const float *weight, const float *bias,
                            int64_t N, int C, float eps);
void oft_layernorm_backward (float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight,
                             const float *mean, const float *rstd, int64_t N, int C);

/* ---- elementwise activations over n values ---- */
void oft_silu_forward (float *out, const float *inp, int64_t n);
void oft_silu_backward (float *dinp, const float *dout, const float *inp, int64_t n);
void oft_gelu_forward (float *out, const float *inp, int64_t n);        /* exact, erf */
void oft_gelu_backward (float *dinp, const float *dout, const float *inp, int64_t n);
void oft_gelu_tanh_forward (float *out, const float *inp, int64_t n);   /* tanh approximation */
void oft_gelu_tanh_backward (float *dinp, const float *dout, const float *inp, int64_t n);
void oft_quick_gelu_forward (float *out, const float *inp, int64_t n);  /* x·sigmoid(1.702x), CLIP */
void oft_quick_gelu_backward (float *dinp, const float *dout, const float *inp, int64_t n);
/* GEGLU as diffusers: inp[N, 2C] = [h | gate], out[N, C] = h · gelu_erf(gate). */
void oft_geglu_forward (float *out, const float *inp, int64_t N, int C);
void oft_geglu_backward (float *dinp, const float *dout, const float *inp, int64_t N, int C);

/* ---- softmax over the last dim of inp[N, C]; backward uses the forward's output ---- */
void oft_softmax_forward (float *out, const float *inp, int64_t N, int C);
void oft_softmax_backward (float *dinp, const float *dout, const float *out, int64_t N, int C);

/* ---- multi-head scaled-dot-product attention ----
 * q[B, Tq, H*D], k and v [B, Tk, H*D] (self-attention: Tk = Tq, cross-attention: context length),
 * out[B, Tq, H*D]; att[B, H, Tq, Tk] holds the softmax probabilities for backward.
 * Scale 1/sqrt(D); `causal` masks key j > query i (CLIP's text encoder; needs Tq == Tk). */
void oft_attention_forward (float *out, float *att,
                            const float *q, const float *k, const float *v,
                            int B, int Tq, int Tk, int H, int D, bool causal);
/* scratch: oft_attention_scratch_floats() floats. */
size_t oft_attention_scratch_floats (int B, int Tq, int Tk, int H, int D);
void oft_attention_backward (float *dq, float *dk, float *dv,
                             const float *dout, const float *att,
                             const float *q, const float *k, const float *v,
                             int B, int Tq, int Tk, int H, int D, float *scratch);

/* ---- nearest 2× upsample of inp[BC, H, W] to out[BC, 2H, 2W] ---- */
void oft_upsample2x_forward (float *out, const float *inp, int64_t BC, int H, int W);
void oft_upsample2x_backward (float *dinp, const float *dout, int64_t BC, int H, int W);

/* ---- channel concat: out[B, Ca+Cb, HW] = [a[B, Ca, HW] | b[B, Cb, HW]] ---- */
void oft_concat_forward (float *out, const float *a, const float *b, int B, int Ca, int Cb, int64_t HW);
void oft_concat_backward (float *da, float *db, const float *dout, int B, int Ca, int Cb, int64_t HW);

/* ---- out = a + b, out = s·inp (out may alias an input) ---- */
void oft_add_forward (float *out, const float *a, const float *b, int64_t n);
void oft_add_backward (float *da, float *db, const float *dout, int64_t n);
void oft_scale_forward (float *out, const float *inp, float s, int64_t n);
void oft_scale_backward (float *dinp, const float *dout, float s, int64_t n);

/* ---- sinusoidal timestep embedding as diffusers' get_timestep_embedding:
 * exponent_i = -ln(max_period)·i / (dim/2 - freq_shift); out[n] = [sin(t·e) | cos(t·e)],
 * swapped to [cos | sin] with flip_sin_to_cos; an odd dim gets a zero last column.
 * Timesteps are not differentiable, so there is no backward. ---- */
void oft_timestep_embedding (float *out, const float *timesteps, int N, int dim,
                             bool flip_sin_to_cos, float freq_shift, float max_period);

/* ---- mean squared error over n values; backward adds dloss·2(pred−target)/n to dpred ---- */
float oft_mse_forward (const float *pred, const float *target, int64_t n);
void  oft_mse_backward (float *dpred, const float *pred, const float *target, int64_t n, float dloss);

G_END_DECLS
