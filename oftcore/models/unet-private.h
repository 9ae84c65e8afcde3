/* UNet internals shared by unet.c (loading, adapters, inference), unet-blocks.c (transformer blocks,
 * forward with optional saving and backward) and unet-train.c (the training forward/backward). */
#pragma once
#include "oft/unet.h"
#include "oft/adapters.h"
#include "blocks.h"
#include "../cuda/cuda-ops.h"

#define MAX_LEVELS 8
#define MAX_LAYERS 8

/* An inference adapter applied on the fly: x ↦ x·R per block before the Linear (PEFT's forward). */
typedef struct {
  OftSpec spec;
  float *R;
} LinRot;

/* A trained OFT or BOFT module: the tensors live in the caller's adapter and are read at every forward. */
typedef struct {
  OftAdapterKind kind;
  OftSpec spec;        /* OFT */
  OftBoftSpec bspec;   /* BOFT */
  float *param;        /* OFT [rows, b(b−1)/2] or BOFT [N, D, b, b], the adapter's tensor (updated in place) */
  float *R, *cache;    /* rebuilt by oft_unet_refresh_trainable: OFT [rows, b, b]; BOFT the dense T [d, d] */
  float *dR;           /* ∂loss/∂R (OFT) or ∂loss/∂T (BOFT) accumulated by a backward, shaped like R */
  float *s;            /* [out] per-output scale (boft_s, or OFT's fitted magnitude oft_s), or NULL */
  float *gR, *gs;      /* during oft_unet_train_loss: the caller's gradients, NULL for a frozen tensor */
  int index;           /* the module's index in the adapter */
} Trainable;

/* The GPU module builds this trainable's R from its packed parameter and turns dR into the packed gradient
 * itself (exact Cayley, blocks up to its kernel's OFTCU_CAYLEY_MAX_B), so the host does neither. */
#define OFT_DEVICE_CAYLEY_MAX_B 64
static inline bool
trainable_cayley_on_device (const Trainable *t)
{
  return t->kind == OFT_ADAPTER_OFT && !t->s && !t->spec.neumann && t->spec.b <= OFT_DEVICE_CAYLEY_MAX_B;
}

typedef struct {
  int in, out;
  float *w, *b;        /* b may be NULL */
  GPtrArray *rots;     /* LinRot*, NULL when none */
  Trainable *train;    /* applied after rots; NULL when not training this Linear */
} Lin;

/* Activations one BasicTransformerBlock keeps for its backward. */
typedef struct {
  float *t0, *t1, *t2;                  /* residual stream entering each sub-block [N, D] */
  float *h1, *h2, *h3;                  /* LayerNorm outputs [N, D] */
  float *m1, *r1, *m2, *r2, *m3, *r3;   /* LayerNorm mean / rstd [N] */
  float *q1, *k1, *v1, *att1, *o1;      /* self-attention */
  float *q2, *k2, *v2, *att2, *o2;      /* cross-attention (k2, v2 over the context) */
  float *f, *g;                         /* GEGLU input [N, 2F] and output [N, F] */
} TBlockSave;

typedef struct {
  int dim, heads, ctx, ff;              /* ff = inner width of the GEGLU feed-forward */
  float *n1w, *n1b, *n2w, *n2b, *n3w, *n3b;
  Lin q1, k1, v1, o1;                   /* self-attention (no q/k/v bias) */
  Lin q2, k2, v2, o2;                   /* cross-attention */
  Lin ff1, ff2;
} TBlock;

typedef struct {
  float *x_in;          /* the Transformer2DModel's input [B, C, HW] (its residual and GroupNorm input) */
  float *tok;           /* the blocks' output tokens [B·HW, D] (proj_out's input) */
  float *mean, *rstd;   /* GroupNorm statistics [B·groups] */
  TBlockSave *blocks;
} TransformerSave;

/* Every weight an adapter may target, by its diffusers module path. */
typedef struct {
  float *w;
  int64_t out, d;       /* the weight as [out, d] (convs flattened to C·kh·kw) */
  Lin *lin;             /* set for transformer-block Linears, which can also run adapters on the fly */
} Module;

typedef struct {
  int ch, inner, groups, n_blocks;
  bool linear_proj;
  float *nw, *nb, *piw, *pib, *pow_, *pob;
  TBlock *blocks;
} Transformer;

typedef struct {
  int n;                /* resnets (and attentions when has_attn) */
  bool has_attn, has_sample;
  OftResnet res[MAX_LAYERS];
  Transformer attn[MAX_LAYERS];
  OftDownsample down;
  OftUpsample up;
  int out_ch;
} Level;

struct _OftUnet {
  int in_ch, out_ch, n_levels, layers, groups, ctx_dim, temb, tproj, sample_size;
  float norm_eps, freq_shift;
  bool flip, linear_proj;
  int ch[MAX_LEVELS], heads[MAX_LEVELS];
  OftArena params, acts, train_acts;
  float *t1w, *t1b, *t2w, *t2b, *cin_w, *cin_b, *nout_w, *nout_b, *cout_w, *cout_b;
  Level down[MAX_LEVELS], up[MAX_LEVELS];
  OftResnet mid_r0, mid_r1;
  Transformer mid_attn;
  OftTapFunc tap;
  gpointer tap_data;
  GHashTable *modules;  /* path → Module */
  GPtrArray *trainables;/* Trainable*, NULL when no adapter is attached for training */
  const float *control; /* added to conv_in's output (the condition encoder's features), or NULL */
  float *dcontrol;      /* training: ∂loss/∂control accumulated here when not NULL */
  OftParams *params_list; /* every weight by name; gradients once full training is attached */
  float *dcontext;      /* full training: ∂loss/∂context accumulated here when not NULL */
  /* the GPU copy made by oft_unet_set_device; NULL on the CPU */
  const OftCudaOps *dev_ops;
  gpointer dev;
  OftDType dev_dtype;
};

/* out[N, lin->out] = s ⊙ ((x·R_1⋯·R_train)·Wᵀ) + b (s: the trained module's scale, if any) */
void oft_unet_lin_forward (OftArena *a, float *out, const float *x, const Lin *lin, int64_t N);
/* dx (may be NULL) += ∂/∂x, and the trained module's dR and ds (unless frozen), from dy; x is the Linear's input. */
void oft_unet_lin_backward (OftArena *a, float *dx, const float *dy, const float *x, const Lin *lin, int64_t N,
                            const OftParams *g);

/* BasicTransformerBlock on x[B·HW, D] in place; context[B, T, ctx]; s (may be NULL) receives what the
 * backward needs, allocated in `a` before any scratch. */
void oft_unet_tblock_forward (OftArena *a, float *x, const float *context, const TBlock *b, int B, int64_t HW,
                              int T, TBlockSave *s);
/* dx[N, D]: on entry ∂/∂(block output), on return ∂/∂(block input); trained rotations get dR;
 * dcontext (may be NULL) += ∂/∂context; g (may be NULL) receives the weights' gradients. */
void oft_unet_tblock_backward (OftArena *a, float *dx, float *dcontext, const float *context, const TBlock *b,
                               int B, int64_t HW, int T, const TBlockSave *s, const OftParams *g);

/* Transformer2DModel in place on x[B, C, H, W]; s as above. */
void oft_unet_transformer_forward (OftArena *a, float *x, const float *context, const Transformer *t, int B,
                                   int H, int W, int T, TransformerSave *s);
/* dx[B, C, H, W] as for the block. */
void oft_unet_transformer_backward (OftArena *a, float *dx, float *dcontext, const float *context,
                                    const Transformer *t, int B, int H, int W, int T, const TransformerSave *s,
                                    const OftParams *g);

/* Rebuilds every trained rotation from its parameter (COFT-projecting it in place first, as PEFT). */
void oft_unet_refresh_trainable (OftUnet *u);
void oft_unet_lin_clear (Lin *lin);

/* After the weights or the adapters changed: a UNet on the GPU uploads itself again (model-device.c).
 * On failure it is left on the CPU and the error says so. */
gboolean oft_unet_device_refresh (OftUnet *u, GError **error);
void     oft_unet_device_release (OftUnet *u);
