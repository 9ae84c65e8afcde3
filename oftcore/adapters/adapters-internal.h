/* Helpers shared by the OFT-family files; not part of the public API.
 * Small b×b matrices are handled in double: b ≤ a few hundred, and the solves are then exact to
 * float rounding whatever the conditioning of I + Q. */
#pragma once
#include <stdbool.h>
#include "oft/adapters.h"
#include "oft/error.h"

/* Q = U − Uᵀ (b×b, double) from one packed row (strict upper triangle, row-major). */
void oft_packed_to_skew (double *Q, const float *row, int b);
/* drow += ∂L/∂U from dQ = ∂L/∂Q: dQ_ij − dQ_ji over the strict upper triangle. */
void oft_skew_grad_to_packed (float *drow, const double *dQ, int b);

/* In-place LU with partial pivoting of the n×n row-major A; FALSE if singular. */
bool oft_lu_factor (double *A, int *piv, int n);
/* Solves A·x = rhs in place (A as factored above). */
void oft_lu_solve (const double *LU, const int *piv, double *x, int n);

/* Exact Cayley of a skew S: Ainv = (I + S)⁻¹, R = (I − S)(I + S)⁻¹ = 2·Ainv − I. FALSE if I + S is singular
 * (never for a real skew S: its eigenvalues are 1 ± iλ). */
bool oft_cayley_d (double *R, double *Ainv, const double *S, int b);
/* dS = ∂L/∂S = −2·Aᵀ·G·Aᵀ for G = ∂L/∂R (overwrites dS). */
void oft_cayley_backward_d (double *dS, const double *G, const double *Ainv, int b);

/* PEFT's Cayley–Neumann series coefficients c_0..c_K of R = Σ c_k Q^k; returns K. */
int oft_neumann_coeffs (double *c, int n_terms);
/* R = Σ c_k Q^k (double). scratch holds 2·b·b doubles. */
void oft_neumann_d (double *R, const double *Q, int n_terms, int b, double *scratch);
/* dQ = ∂L/∂Q for the series (overwrites dQ). scratch holds (K + 2)·b·b doubles with K ≤ max(3, n − 1). */
void oft_neumann_backward_d (double *dQ, const double *G, const double *Q, int n_terms, int b, double *scratch);
size_t oft_neumann_scratch (int n_terms, int b);

/* R[N, D, b, b] (and (I + S)⁻¹ when Ainv is not NULL) of every BOFT block from the raw boft_R. */
void oft_boft_rotations (float *R, float *Ainv, const float *boft_R, const OftBoftSpec *s);

/* Row operators of one BOFT factor M_i = P_i·blockdiag(R_i)·P_iᵀ on X[rows, d] in place:
 * X ← X·M_i, or X·M_iᵀ when transpose. R_i is [n_blocks, b, b]; idx from oft_boft_perm; tmp holds d floats. */
void oft_boft_apply_factor (float *X, int64_t rows, const float *R_i, const int *idx, bool transpose,
                            const OftBoftSpec *s, float *tmp);
