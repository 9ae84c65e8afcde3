/* What the module's files share (in cuda-module.c, used by cuda-unet.c and cuda-vae.c): a device arena
 * for activations, the device copy of a host parameter arena with pointer mapping, and a forward context
 * whose launch wrappers stop launching after the first failure (a kernel given a NULL buffer would corrupt the CUDA context, so an
 * allocation that fails must turn the rest of the forward into no-ops and an error). */
#pragma once
#include <glib.h>
#include "oft/tensor.h"
#include "cuda-kernels.h"
#include "../models/blocks.h"

/* ---- device arena: bump allocation over oftcu_alloc chunks, rewound to a mark after each forward.
 * Reuse after a reset is safe without waiting: every kernel runs in order on the module's one stream. */
typedef struct _CuChunk CuChunk;
typedef struct {
  const char *name;
  size_t chunk_size;
  CuChunk *head, *spare;
  size_t used, reserved;
  size_t peak_used;   /* the most used at once since the owner last set it to used (chunk tails not counted) */
} CuArena;

typedef struct {
  CuChunk *chunk;
  size_t offset, used;
} CuMark;

void   cu_arena_init (CuArena *a, const char *name, size_t chunk_size);
/* 256-byte aligned, contents undefined; NULL and an error naming the size on failure. */
void  *cu_arena_take (CuArena *a, size_t bytes, GError **error);
CuMark cu_arena_mark (const CuArena *a);
void   cu_arena_reset (CuArena *a, CuMark m);
void   cu_arena_release (CuArena *a);
/* Puts the spare chunks in address order: two runs of the same allocation sequence from an arena reset
 * to empty then take the same chunks (a graph captured after an eager run allocates nothing). */
void   cu_arena_sort_spare (CuArena *a);

/* ---- a host parameter arena on the device, in storage type dt ----
 * Every chunk of the host arena is copied whole (converted to bf16 on the device when asked), so a host
 * weight pointer maps to its copy by its offset in its chunk: a table sorted by host address, binary
 * searched. Norm affine parameters stay fp32 (the kernels' contract): with bf16 storage they get an
 * fp32 copy of their own, made on first use. */
typedef struct {
  const char *host;
  size_t used;      /* bytes of the host chunk (fp32) */
  void *dev;        /* used / 4 elements of dt */
} CuSpan;

typedef struct {
  OftCuDtype dt;
  GArray *spans;    /* CuSpan, sorted by host */
  GHashTable *f32;  /* host float* → device float* (bf16 storage only) */
  CuArena f32_store;
} CuWeights;

gboolean cu_weights_upload (CuWeights *w, const OftArena *host, OftCuDtype dt, const char *what, GError **error);
void     cu_weights_release (CuWeights *w);
size_t   cu_weights_bytes (const CuWeights *w);

/* ---- one forward ---- */
typedef struct {
  OftCuDtype dt;
  size_t es;          /* bytes per element of dt */
  CuArena *a;
  CuWeights *w;
  GError *error;      /* the first failure; once set, nothing more is launched or allocated */
} Cx;

void     cx_begin (Cx *c, CuArena *a, CuWeights *w);
/* Waits for the device, collects a sticky CUDA error, and hands over the first failure. */
gboolean cx_end (Cx *c, const char *what, GError **error);
static inline gboolean cx_ok (const Cx *c) { return c->error == NULL; }

/* n elements of dt / of fp32 from the arena (NULL once failed) */
void  *cx_take (Cx *c, int64_t n);
float *cx_f32 (Cx *c, int64_t n);
static inline CuMark cx_mark (const Cx *c) { return cu_arena_mark (c->a); }
static inline void   cx_reset (Cx *c, CuMark m) { cu_arena_reset (c->a, m); }

/* The device copy of a host weight (dt) or bias; NULL for NULL. */
const void  *cx_w (Cx *c, const float *host);
/* The fp32 device copy of n host floats (norm affine parameters). */
const float *cx_norm (Cx *c, const float *host, int64_t n);

/* host fp32 ↔ device dt */
void    *cx_upload (Cx *c, const float *host, int64_t n);
float   *cx_upload_f32 (Cx *c, const float *host, int64_t n);
void     cx_download (Cx *c, float *host, const void *dev, int64_t n);
/* Calls tap (when set) with a host fp32 copy of dev[n]: for tests comparing intermediates. */
typedef void (*CxTapFunc) (const char *name, const float *data, int64_t n, gpointer user_data);
void     cx_tap (Cx *c, CxTapFunc tap, gpointer data, const char *name, const void *dev, int64_t n);

/* GPU time per kind of kernel when profiling (oftcu_prof_enable: OFT_CUDA_PROFILE=1, eager runs only) */
#define PROF(label, ...) do { oftcu_prof_begin (label); __VA_ARGS__; oftcu_prof_end (); } while (0)
/* The profile since the last report as "profile: <what>: ..." lines on stdout (for the benches) */
void cu_prof_print (const char *what);

/* ---- launch wrappers (storage type from the context; no-ops after a failure) ---- */
void k_linear (Cx *c, void *out, const void *inp, const void *w, const void *b, int64_t N, int C, int OC);
/* conv2d with its im2col scratch taken from the arena and given back */
void k_conv (Cx *c, void *out, const void *inp, const void *w, const void *b, int B, int C, int H, int W, int OC,
             int k, int stride, int pad);
void k_groupnorm (Cx *c, void *out, float *mean, float *rstd, const void *inp, const float *w, const float *b,
                  int B, int C, int64_t HW, int G, float eps);
/* out = silu(groupnorm(inp)), one kernel */
void k_groupnorm_silu (Cx *c, void *out, float *mean, float *rstd, const void *inp, const float *w, const float *b,
                       int B, int C, int64_t HW, int G, float eps);
void k_layernorm (Cx *c, void *out, float *mean, float *rstd, const void *inp, const float *w, const float *b,
                  int64_t N, int C, float eps);
void k_silu (Cx *c, void *out, const void *inp, int64_t n);
void k_geglu (Cx *c, void *out, const void *inp, int64_t N, int C);
void k_softmax (Cx *c, void *out, const void *inp, int64_t N, int C);
void k_attention (Cx *c, void *out, const void *q, const void *k, const void *v, int B, int Tq, int Tk, int H, int D);
void k_upsample2x (Cx *c, void *out, const void *inp, int64_t BC, int H, int W);
void k_concat (Cx *c, void *out, const void *a, const void *b, int B, int Ca, int Cb, int64_t HW);
void k_add (Cx *c, void *out, const void *a, const void *b, int64_t n);
void k_add_channel (Cx *c, void *x, const void *v, int B, int C, int64_t HW);
/* [B, C, HW] → [B, HW, C]; the inverse is k_transpose (out, inp, B, HW, C) */
void k_transpose (Cx *c, void *out, const void *inp, int B, int64_t C, int64_t HW);
void k_copy (Cx *c, void *dst, const void *src, int64_t n);
void k_timestep_embedding (Cx *c, void *out, const float *t, int N, int dim, bool flip, float shift);
void k_block_rotate (Cx *c, void *out, const void *inp, const float *R, int64_t N, int nb, int b);
void k_convert (Cx *c, void *dst, OftCuDtype dd, const void *src, OftCuDtype sd, int64_t n);
void k_gemm (Cx *c, OftCuDtype dt, bool ta, bool tb, int M, int N, int K, float alpha, const void *A, int lda,
             int64_t sA, const void *B, int ldb, int64_t sB, float beta, void *C, int ldc, int64_t sC, int batch);

/* ---- the blocks both models use: models/blocks.h on the device, reading the host structs ---- */
/* out[B, cout, H, W] (not aliasing x); temb_act [B, temb] or NULL */
void cu_resnet (Cx *c, void *out, const void *x, const void *temb_act, const OftResnet *r, int B, int H, int W);
/* out[B, ch, 2H, 2W]: nearest 2× then the 3×3 conv */
void cu_upsample (Cx *c, void *out, const void *x, const OftUpsample *u, int B, int H, int W);
/* out = conv(silu(groupnorm(x))): the models' last step */
void cu_norm_silu_conv (Cx *c, void *out, const void *x, const float *nw, const float *nb, int groups, float eps,
                        const float *cw, const float *cb, int B, int C, int H, int W, int OC);

/* ---- the models (cuda-unet.c, cuda-vae.c), as the module's vtable calls them (cuda-ops.h) ---- */
#include "oft/unet.h"
#include "oft/vae.h"
typedef struct _CuUnet CuUnet;

/* One forward's shapes and its inputs/output on the device at fixed addresses (fp32, as the host has them),
 * so that a captured graph can be replayed with new inputs; the Cx is the body's. */
typedef struct {
  CuUnet *d;
  Cx c;
  int B, h, w, T;
  float *sample, *ts, *ctx, *out;
  float *ctx_host;    /* what ctx holds: the context rarely changes between sampling steps */
  OftCuGraph *graph;  /* the body captured for these shapes, or NULL */
  gboolean warm;      /* the last eager run could be captured and allocated nothing */
  int failed_captures;
} CuUnetFwd;

/* The UNet's device state (cuda-unet.c; the training step in cuda-unet-train.c reads it too). */
struct _CuUnet {
  OftUnet *u;
  CuWeights w;
  CuArena acts;
  GHashTable *rots;   /* LinRot* → device R [n_blocks, b, b] fp32 */
  GHashTable *train;  /* Trainable* → CuTrain*: its R uploaded at every call, its dR */
  /* device: R of every trainable, then dR of every trainable (train_floats each), then for the exact Cayley
   * ones built here their (I + Q)⁻¹ (train_ainv), packed parameters and packed gradients (train_ne each) */
  float *train_slab;
  float *train_host;  /* host staging: [train_floats] for R and dR, then [train_ne] for packed values */
  size_t train_floats, train_ainv, train_ne;
  gboolean train_host_R;  /* some trainable's R comes from the host (Neumann, larger blocks) */
  CuUnetFwd fwd;      /* the inference forward (cuda-unet.c) */
};

/* A trained OFT rotation on the device: R and ∂loss/∂R [nb, b, b] fp32 (a shared block repeated), views
 * into the CuUnet's slab. With cayley (trainable_cayley_on_device), R is built here from packed [rows,
 * b(b−1)/2] and the backward turns dR into dpacked, keeping Ainv [rows, b, b] between the two. */
typedef struct {
  float *R, *dR;
  int nb, b;
  gboolean cayley;
  int rows;
  float *Ainv, *packed, *dpacked;
} CuTrain;

/* Puts every attached trainable's R on the device: exact Cayley ones from their packed parameters (COFT
 * projected on the host first, in place, as PEFT does before every forward), the others from the host's
 * oft_unet_refresh_trainable result; an error for what the GPU does not train (BOFT, per-output scales). */
gboolean cu_unet_sync_train (CuUnet *d, GError **error);
/* The exact Cayley trainables' R and Ainv from their packed values, or (backward) their packed gradients
 * from dR, in as few launches as the slab's layout allows */
void     cu_unet_cayley (CuUnet *d, gboolean backward);
/* The Linear's forward as oft_unet_lin_forward (inference rotations, then the trained one) */
void     cu_unet_lin (Cx *c, CuUnet *d, void *out, const void *x, const void *lin, int64_t N);
gboolean cu_unet_train_loss (gpointer dev, const float *sample, const float *timesteps, const float *context,
                             int B, int h, int w, int T, const float *target, gboolean checkpoint, float *loss,
                             GError **error);
gpointer cu_unet_upload (OftUnet *u, int dtype, GError **error);
void     cu_unet_release (gpointer dev);
gboolean cu_unet_forward (gpointer dev, const float *sample, const float *timesteps, const float *context,
                          int B, int h, int w, int T, float *out, GError **error);
gpointer cu_vae_upload (OftVae *v, int dtype, GError **error);
void     cu_vae_release (gpointer dev);
gboolean cu_vae_decode (gpointer dev, const float *z, int B, int h, int w, float *img, GError **error);
