/* The OFT family on one layer: rotations from packed parameters, their gradients, the input-centric
 * and weight-centric forms, COFT, BOFT, magnitude scaling, merge/unmerge and hyperspherical energy.
 * Conventions are PEFT >= 0.18's (see ../shared/docs/oft-math.md):
 *   - packed row i = strict upper triangle of U_i, row-major; Q_i = U_i − U_iᵀ;
 *   - exact Cayley R = (I − Q)(I + Q)⁻¹; Neumann R ≈ (I + Q)(I − Q)⁻¹ (the transpose!);
 *   - Linear: x ↦ x·blockdiag(R), then the frozen layer; merged weight W' = W·blockdiag(R)ᵀ;
 *   - Conv2d: always the merged form over W_flat [out, C·kh·kw] (PEFT's unmerged conv is wrong for k > 1).
 * Backwards accumulate (+=) like the kernels in nn.h. */
#pragma once
#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "oft/tensor.h"

G_BEGIN_DECLS

/* Block size from a packed row length n_e = b(b−1)/2; 0 if n_e is not of that form. */
int oft_block_size_from_packed (int64_t n_e);

typedef struct {
  int d;              /* rotated dimension: in_features, or C_in·kh·kw for a conv */
  int b;              /* block size */
  int n_blocks;       /* d / b */
  bool block_share;   /* one stored block used for every block */
  bool neumann;       /* use_cayley_neumann */
  int n_terms;        /* num_cayley_neumann_terms */
  bool coft;
  double eps;         /* COFT radius parameter */
} OftSpec;

/* Rows of the stored parameter: n_blocks, or 1 with block_share. */
int oft_spec_rows (const OftSpec *s);

/* R[rows, b, b] from packed[rows, b(b−1)/2]; cache[rows, b, b] keeps what backward needs
 * (the inverse (I+Q)⁻¹ for Cayley). cache may be NULL when no backward follows. */
void oft_rotation_forward (float *R, float *cache, const float *packed, const OftSpec *s);
/* dpacked += ∂L/∂packed from dR[rows, b, b]. */
void oft_rotation_backward (float *dpacked, const float *dR, const float *cache,
                            const float *packed, const OftSpec *s);

/* COFT (PEFT's radius): per row, ε' = eps/√rows; if ‖Q_i‖_F > ε' scale the row to ‖Q_i‖_F = ε'.
 * In place, not differentiated. (The paper's code used ε·b²/√r on P with S = ½(P − Pᵀ).) */
void oft_coft_project (float *packed, const OftSpec *s);

/* Input-centric: xr[N, d] = x[N, d]·blockdiag(R). Backward: dx += dxr·blockdiag(R)ᵀ,
 * dR += Σ_rows x_iᵀ·dxr_i (summed over blocks with block_share). */
void oft_rotate_input_forward (float *xr, const float *x, const float *R, int64_t N, const OftSpec *s);
void oft_rotate_input_backward (float *dx, float *dR, const float *dxr, const float *x,
                                const float *R, int64_t N, const OftSpec *s);

/* Weight-centric (= merge): Wr[out, d] = W[out, d]·blockdiag(R)ᵀ.
 * Backward: dR += diagonal blocks of dWrᵀ·W (dW of the frozen weight is not produced). */
void oft_rotate_weight_forward (float *Wr, const float *W, const float *R, int64_t out, const OftSpec *s);
void oft_rotate_weight_backward (float *dR, const float *dWr, const float *W, int64_t out, const OftSpec *s);
/* Inverse of the above: W = Wr·(blockdiag(R)ᵀ)⁻¹, a true inverse (Neumann R is not orthogonal). */
gboolean oft_rotate_weight_inverse (float *W, const float *Wr, const float *R, int64_t out,
                                    const OftSpec *s, GError **error);

/* ---- BOFT (PEFT peft_type "BOFT") ---- */
typedef struct {
  int d;          /* in_features (C·kh·kw for conv) */
  int b;          /* boft_block_size */
  int n_blocks;   /* d / b */
  int n_factors;  /* boft_n_butterfly_factor */
} OftBoftSpec;
/* idx[d] of butterfly factor i (P_i[j, idx[j]] = 1; factor 0 is the identity). */
void oft_boft_perm (int *idx, const OftBoftSpec *s, int factor);
/* T[d, d] (the product of the factors, as PEFT builds it) from boft_R[n_factors, n_blocks, b, b];
 * cache (oft_boft_cache_floats) keeps what backward needs: first the rotation blocks R[n_factors, n_blocks, b, b],
 * then (I + S)⁻¹ of each block. cache may be NULL when no backward follows. */
size_t oft_boft_cache_floats (const OftBoftSpec *s);
void oft_boft_transform_forward (float *T, float *cache, const float *boft_R, const OftBoftSpec *s);
void oft_boft_transform_backward (float *dboft_R, const float *dT, const float *cache,
                                  const float *boft_R, const OftBoftSpec *s);
/* BOFT on a Linear, input-centric with the dense transform (PEFT builds T too): xr[N, d] = x·T.
 * Backward: dx (may be NULL) += dxr·Tᵀ, dT (may be NULL) += xᵀ·dxr. */
void oft_boft_rotate_input_forward (float *xr, const float *x, const float *T, int64_t N, int d);
void oft_boft_rotate_input_backward (float *dx, float *dT, const float *dxr, const float *x, const float *T,
                                     int64_t N, int d);

/* ---- per-output magnitude scale (BOFT's boft_s, the paper's train_with_norm) ----
 * out[N, OC] = s ⊙ y[N, OC] + bias: scales rows of W' when merged. */
void oft_scale_rows_forward (float *Ws, const float *W, const float *s, int64_t out, int64_t d);
void oft_scale_rows_backward (float *dW, float *ds, const float *dWs, const float *W, const float *s,
                              int64_t out, int64_t d);
/* The same on the layer's output (input-centric form): y[N, out] = s ⊙ ypre (bias added by the caller).
 * Backward: dypre (may be NULL) += dy ⊙ s; ds (may be NULL) += Σ_n dy ⊙ ypre. y may alias ypre. */
void oft_scale_output_forward (float *y, const float *ypre, const float *s, int64_t N, int64_t out);
void oft_scale_output_backward (float *dypre, float *ds, const float *dy, const float *ypre, const float *s,
                                int64_t N, int64_t out);

/* ---- hyperspherical energy of the neurons (rows) of W[out, d] ----
 * paper: Σ_{i≠j} ‖ŵ_i − ŵ_j‖⁻¹ over unit rows; reference-code variant: rows and their negations
 * (2·out points), mean of (2 − 2cos θ)^(−1/2) over distinct pairs. Both are rotation invariant. */
double oft_hyperspherical_energy (const float *W, int64_t out, int64_t d);
double oft_hyperspherical_energy_ref (const float *W, int64_t out, int64_t d);

/* ---- one adapted module, as stored in a PEFT adapter ---- */
typedef enum { OFT_ADAPTER_OFT, OFT_ADAPTER_BOFT } OftAdapterKind;

typedef struct {
  OftAdapterKind kind;
  /* OFT */
  int oft_block_size;        /* 0: infer from the tensor */
  bool block_share, neumann, coft;
  int n_terms;
  double eps;
  /* BOFT */
  int boft_block_size, boft_n_factors;
  /* OFT with a fitted per-output magnitude (the paper's train_with_norm): this project's extension
   * "gimp_oft_magnitude": true in adapter_config.json with one <module>.oft_s [out, 1] tensor per module.
   * PEFT ignores both (a warning for the config key; load_state_dict(strict=False) drops the tensors). */
  bool magnitude;
} OftAdapterConfig;

/* Merge one module's adapter into its base weight W (f32, [out, d] with d = in or C·kh·kw), in place.
 * `param` is oft_R.weight (OFT) or boft_R (BOFT), F32/F16/BF16; `scale` is boft_s (BOFT), the magnitude
 * oft_s (OFT, rows scaled after the rotation) or NULL (s = 1). With
 * cfg->coft the parameter (a private copy) is projected first, as PEFT does. Shapes are
 * checked against out/d and the config; mismatches give OFT_ERROR_SHAPE in OFT_MODEL_ERROR naming `module`. */
gboolean oft_adapter_merge (float *W, int64_t out, int64_t d, const OftAdapterConfig *cfg,
                            const OftTensor *param, const OftTensor *scale,
                            const char *module, GError **error);
/* The rotation blocks R[rows, b, b] (g_free) of one stored OFT module for input-centric use, after the
 * same checks as oft_adapter_merge against the rotated dimension d (COFT applied to a copy when
 * configured); fills spec. */
float *oft_adapter_rotation (OftSpec *spec, int64_t d, const OftAdapterConfig *cfg, const OftTensor *param,
                             const char *module, GError **error);
/* The checks oft_adapter_merge makes on one BOFT module (boft_R, and boft_s when not NULL, against the
 * base weight [out, d] and the config); fills spec. */
gboolean oft_adapter_boft_spec (OftBoftSpec *spec, int64_t out, int64_t d, const OftAdapterConfig *cfg,
                                const OftTensor *param, const OftTensor *scale, const char *module, GError **error);
gboolean oft_adapter_unmerge (float *W, int64_t out, int64_t d, const OftAdapterConfig *cfg,
                              const OftTensor *param, const OftTensor *scale,
                              const char *module, GError **error);

G_END_DECLS
