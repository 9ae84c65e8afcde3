/* The CUDA kernels of the backend module, as C launchers over device pointers (llm.c's style: outputs
 * first, then inputs, then sizes). Every launcher mirrors the CPU kernel of the same name in oft/nn.h:
 * same layouts (NCHW images, [N, C] rows, weights [out, in]), same accumulate-into-gradients rule for
 * backwards (+=, any gradient output may be NULL), and the CPU kernel is its reference in
 * tests/gpu/test-cuda-kernels*.c.
 *
 * Activations and weights are of one storage type `dt` (fp32 or bf16); arithmetic, reductions, GEMM
 * accumulation and norm statistics are fp32. Norm affine parameters (gamma, beta), statistics (mean, rstd),
 * OFT parameters and optimizer state are always fp32.
 *
 * Launchers are asynchronous on the module's one stream; the first CUDA or cuBLAS failure is kept
 * (sticky) and reported by oftcu_error(). This header is plain C without GLib: GLib cannot be included
 * inside extern "C" in a .cu file. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { OFTCU_F32 = 0, OFTCU_BF16 = 1 } OftCuDtype;

/* ---- device, stream, errors ---- */
/* Picks device `ordinal`, creates the stream and the cuBLAS handle. 0 on success; otherwise -1 and
 * oftcu_error() says why (no driver, no device, ...). `name` receives the device name. */
int         oftcu_init (int ordinal, char *name, size_t name_len);
/* The first failure since the last oftcu_clear_error(), or NULL. */
const char *oftcu_error (void);
void        oftcu_clear_error (void);
/* Waits for the stream; returns 0, or -1 with oftcu_error() set. */
int         oftcu_sync (void);
size_t      oftcu_dtype_size (OftCuDtype dt);
/* fp32 GEMMs use TF32 tensor cores when on (default on; the kernel tests turn it off). */
void        oftcu_set_tf32 (bool on);

/* ---- memory ---- */
void *oftcu_alloc (size_t bytes);                  /* NULL and oftcu_error() on failure */
void  oftcu_free (void *p);
int   oftcu_upload (void *dst, const void *src, size_t bytes);    /* host → device, synchronous */
int   oftcu_download (void *dst, const void *src, size_t bytes);  /* device → host, synchronous */
void  oftcu_memset0 (void *p, size_t bytes);
void  oftcu_copy (void *dst, const void *src, size_t bytes);      /* device → device */
/* dst[n] of type dd from src[n] of type sd (fp32 ↔ bf16, round to nearest even) */
void  oftcu_convert (void *dst, OftCuDtype dd, const void *src, OftCuDtype sd, int64_t n);
/* peak bytes allocated through oftcu_alloc since the last reset */
size_t oftcu_peak_bytes (void);
void   oftcu_reset_peak (void);

/* ---- CUDA graphs: what body enqueues on the stream, recorded once and replayed with one launch ----
 * Capture runs body on the host but launches nothing; the graph keeps the device addresses body used, so
 * inputs and outputs live at fixed addresses, written and read outside the graph. While body runs,
 * oftcu_alloc, oftcu_upload, oftcu_download and oftcu_sync refuse (error) instead of breaking the capture.
 * NULL with oftcu_error() set when capture or instantiation fails (the caller then runs body eagerly). */
typedef struct OftCuGraph OftCuGraph;
OftCuGraph *oftcu_graph_capture (void (*body) (void *data), void *data);
/* asynchronous on the stream; 0, or -1 with oftcu_error() */
int         oftcu_graph_launch (OftCuGraph *g);
void        oftcu_graph_destroy (OftCuGraph *g);

/* ---- profiling (opt-in, for benches): GPU time between begin and end on the stream, summed per label ----
 * No-ops unless enabled, and inside a graph capture. `label` must outlive the report (a string literal). */
void oftcu_prof_enable (bool on);
void oftcu_prof_begin (const char *label);
void oftcu_prof_end (void);
/* Waits for the stream, writes one "label ms calls" line per label (most time first) and the total into buf,
 * and starts over. 0, or -1 with oftcu_error(). */
int  oftcu_prof_report (char *buf, size_t len);

/* ---- GEMM (row-major): C[M,N] = alpha·op(A)·op(B) + beta·C, op = transpose when ta/tb; batched over
 * `batch` with element strides sA, sB, sC. A, B, C all of type dt; fp32 accumulation. ---- */
void oftcu_gemm (OftCuDtype dt, bool ta, bool tb, int M, int N, int K, float alpha,
                 const void *A, int lda, int64_t sA, const void *B, int ldb, int64_t sB,
                 float beta, void *C, int ldc, int64_t sC, int batch);

/* ---- forward kernels (reference: oft/nn.h) ---- */
void oftcu_linear_forward (OftCuDtype dt, void *out, const void *inp, const void *weight, const void *bias,
                           int64_t N, int C, int OC);
typedef struct {
  int B, C, H, W;
  int OC, kh, kw;
  int stride, pad;
} OftCuConvShape;
/* scratch: oftcu_conv2d_scratch_bytes() of device memory (im2col), may be NULL when that is 0 */
size_t oftcu_conv2d_scratch_bytes (OftCuDtype dt, const OftCuConvShape *s);
void oftcu_conv2d_forward (OftCuDtype dt, void *out, const void *inp, const void *weight, const void *bias,
                           const OftCuConvShape *s, void *scratch);
void oftcu_groupnorm_forward (OftCuDtype dt, void *out, float *mean, float *rstd, const void *inp,
                              const float *weight, const float *bias, int B, int C, int64_t HW, int G, float eps);
/* out = silu(groupnorm(inp)) in one pass (ResNet blocks, the models' last step); mean/rstd as groupnorm's.
 * Reference: oft_groupnorm_forward then oft_silu_forward; in bf16 one rounding fewer. */
void oftcu_groupnorm_silu_forward (OftCuDtype dt, void *out, float *mean, float *rstd, const void *inp,
                                   const float *weight, const float *bias, int B, int C, int64_t HW, int G, float eps);
void oftcu_layernorm_forward (OftCuDtype dt, void *out, float *mean, float *rstd, const void *inp,
                              const float *weight, const float *bias, int64_t N, int C, float eps);
void oftcu_silu_forward (OftCuDtype dt, void *out, const void *inp, int64_t n);
void oftcu_gelu_forward (OftCuDtype dt, void *out, const void *inp, int64_t n);
void oftcu_quick_gelu_forward (OftCuDtype dt, void *out, const void *inp, int64_t n);
void oftcu_geglu_forward (OftCuDtype dt, void *out, const void *inp, int64_t N, int C);
void oftcu_softmax_forward (OftCuDtype dt, void *out, const void *inp, int64_t N, int C);
/* Fused (flash-style) attention, softmax(q·kᵀ/√D)·v, q [B, Tq, H·D], k/v [B, Tk, H·D], out [B, Tq, H·D];
 * never materialises the [Tq, Tk] matrix. lse (may be NULL) receives the log-sum-exp per [B, H, Tq] row,
 * fp32, for the backward: natural log over the scaled scores s = q·k/√D, so p = exp(s − lse). */
void oftcu_attention_forward (OftCuDtype dt, void *out, float *lse, const void *q, const void *k, const void *v,
                              int B, int Tq, int Tk, int H, int D, bool causal);
void oftcu_upsample2x_forward (OftCuDtype dt, void *out, const void *inp, int64_t BC, int H, int W);
void oftcu_concat_forward (OftCuDtype dt, void *out, const void *a, const void *b, int B, int Ca, int Cb, int64_t HW);
void oftcu_add_forward (OftCuDtype dt, void *out, const void *a, const void *b, int64_t n);
void oftcu_scale_forward (OftCuDtype dt, void *out, const void *inp, float s, int64_t n);
/* x[B, C, HW] += v[B, C] broadcast over HW (the time embedding added inside a ResNet block) */
void oftcu_add_channel_forward (OftCuDtype dt, void *x, const void *v, int B, int C, int64_t HW);
/* [B, C, HW] ↔ [B, HW, C] (the transformer's tokens) */
void oftcu_transpose_forward (OftCuDtype dt, void *out, const void *inp, int B, int C, int64_t HW);
/* out[N, dim] (type dt): as oft_timestep_embedding(out, timesteps, N, dim, flip_sin_to_cos, shift) */
void oftcu_timestep_embedding (OftCuDtype dt, void *out, const float *timesteps, int N, int dim, bool flip, float shift);

/* ---- backward and training kernels (reference: oft/nn.h, oft/adapters.h, oft/train.h) ---- */
void oftcu_linear_backward (OftCuDtype dt, void *dinp, void *dweight, void *dbias, const void *dout,
                            const void *inp, const void *weight, int64_t N, int C, int OC);
void oftcu_conv2d_backward (OftCuDtype dt, void *dinp, void *dweight, void *dbias, const void *dout,
                            const void *inp, const void *weight, const OftCuConvShape *s, void *scratch);
void oftcu_groupnorm_backward (OftCuDtype dt, void *dinp, float *dweight, float *dbias, const void *dout,
                               const void *inp, const float *mean, const float *rstd, const float *weight,
                               int B, int C, int64_t HW, int G);
void oftcu_layernorm_backward (OftCuDtype dt, void *dinp, float *dweight, float *dbias, const void *dout,
                               const void *inp, const float *mean, const float *rstd, const float *weight,
                               int64_t N, int C);
void oftcu_silu_backward (OftCuDtype dt, void *dinp, const void *dout, const void *inp, int64_t n);
void oftcu_gelu_backward (OftCuDtype dt, void *dinp, const void *dout, const void *inp, int64_t n);
void oftcu_geglu_backward (OftCuDtype dt, void *dinp, const void *dout, const void *inp, int64_t N, int C);
void oftcu_softmax_backward (OftCuDtype dt, void *dinp, const void *dout, const void *out, int64_t N, int C);
/* with out and lse from the forward; recomputes the probabilities blockwise */
void oftcu_attention_backward (OftCuDtype dt, void *dq, void *dk, void *dv, const void *dout, const void *out,
                               const float *lse, const void *q, const void *k, const void *v,
                               int B, int Tq, int Tk, int H, int D, bool causal);
void oftcu_upsample2x_backward (OftCuDtype dt, void *dinp, const void *dout, int64_t BC, int H, int W);
void oftcu_concat_backward (OftCuDtype dt, void *da, void *db, const void *dout, int B, int Ca, int Cb, int64_t HW);
/* dv[B, C] += Σ_HW dx[B, C, HW] */
void oftcu_add_channel_backward (OftCuDtype dt, void *dv, const void *dx, int B, int C, int64_t HW);
/* OFT: out[N, nb·b] = inp[N, nb·b] · blockdiag(R[nb, b, b]) (x ↦ x·R per block; R fp32, converted as
 * needed); backward: dinp += dout·blockdiag(R)ᵀ, dR[k] += inp_kᵀ·dout_k. */
void oftcu_block_rotate_forward (OftCuDtype dt, void *out, const void *inp, const float *R, int64_t N, int nb, int b);
void oftcu_block_rotate_backward (OftCuDtype dt, void *dinp, float *dR, const void *dout, const void *inp,
                                  const float *R, int64_t N, int nb, int b);
/* COFT on packed fp32 parameters [rows, b(b−1)/2] in place: as oft_coft_project (oft/adapters.h);
 * eps is double like OftSpec.eps, so the radius eps/√rows is the CPU's to the last bit */
void oftcu_coft_project (float *packed, int64_t rows, int b, double eps);
/* Exact Cayley (oft_rotation_forward/backward without Neumann, in fp32): per row r of packed[rows,
 * b(b−1)/2], Ainv[r] = (I + Q)⁻¹ and R[r·reps + q] = (I − Q)(I + Q)⁻¹ for q < reps (a shared block
 * repeated to every block: reps = n_blocks, rows = 1). Backward: dpacked[r] += ∂L/∂packed from
 * G = Σ_q dR[r·reps + q]. Blocks of 1 to OFTCU_CAYLEY_MAX_B (shared memory holds the row's matrices). */
#define OFTCU_CAYLEY_MAX_B 64
void oftcu_cayley_forward (float *R, float *Ainv, const float *packed, int rows, int reps, int b);
void oftcu_cayley_backward (float *dpacked, const float *dR, const float *Ainv, int rows, int reps, int b);
/* mean squared error of pred against target (n elements), written to loss[0] (device fp32);
 * dpred += 2·(pred − target)·dloss / n */
void oftcu_mse_forward (OftCuDtype dt, float *loss, const void *pred, const void *target, int64_t n);
void oftcu_mse_backward (OftCuDtype dt, void *dpred, const void *pred, const void *target, int64_t n, float dloss);
/* torch.optim.AdamW on fp32 param/grad/m/v (step k ≥ 1): as oft_adamw_step in oft/train.h, bit for bit.
 * The scalars are double as in OftAdamW and torch (0.9 and 1e-3 are not floats: rounding them first would
 * change the bias corrections in the last bits). */
void oftcu_adamw_step (float *param, float *m, float *v, const float *grad, int64_t n, int64_t k, double lr,
                       double beta1, double beta2, double eps, double weight_decay);
/* sum of squares of x[n] (fp32) added to acc[0] (device), for gradient-norm clipping */
void oftcu_sumsq (float *acc, const float *x, int64_t n);

#ifdef __cplusplus
}
#endif
