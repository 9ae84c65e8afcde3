/* The CUDA module (oftcore-cuda.so): its one exported symbol, the vtable oftcore's loader
 * (foundation/backend.c) looks up, and what the GPU models (cuda-unet.c, cuda-vae.c) share: the device
 * arena, the device copy of a parameter arena, the forward context with its launch wrappers and the
 * blocks both models use (cuda-module.h). */
#include "cuda-ops.h"
#include "cuda-module.h"
#include "oft/error.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define CU_ALIGN 256

/* ---- device arena ---- */

struct _CuChunk {
  CuChunk *prev;
  char *base;
  size_t size, offset;
};

void
cu_arena_init (CuArena *a, const char *name, size_t chunk_size)
{
  memset (a, 0, sizeof *a);
  a->name = name;
  a->chunk_size = chunk_size ? chunk_size : (size_t) 64 << 20;
}

void *
cu_arena_take (CuArena *a, size_t bytes, GError **error)
{
  size_t need = (bytes + CU_ALIGN - 1) & ~(size_t) (CU_ALIGN - 1);
  if (need == 0)
    need = CU_ALIGN;
  CuChunk *c = a->head;
  if (!c || c->size - c->offset < need)
    {
      CuChunk **sp = &a->spare, *n = NULL;
      for (; *sp; sp = &(*sp)->prev)
        if ((*sp)->size >= need)
          {
            n = *sp;
            *sp = n->prev;
            break;
          }
      if (!n)
        {
          size_t size = MAX (need, a->chunk_size);
          void *p = oftcu_alloc (size);
          if (!p)
            {
              const char *why = oftcu_error ();
              g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED,
                           "cannot allocate %.1f MiB of GPU memory for %s (%.1f MiB held already): %s",
                           (double) size / (1 << 20), a->name, (double) a->reserved / (1 << 20),
                           why ? why : "out of memory");
              oftcu_clear_error ();  /* reported here; the context is still usable */
              return NULL;
            }
          n = g_new0 (CuChunk, 1);
          n->base = p;
          n->size = size;
          a->reserved += size;
        }
      n->offset = 0;
      n->prev = c;
      a->head = c = n;
    }
  void *p = c->base + c->offset;
  c->offset += need;
  a->used += need;
  a->peak_used = MAX (a->peak_used, a->used);
  return p;
}

CuMark
cu_arena_mark (const CuArena *a)
{
  return (CuMark) { a->head, a->head ? a->head->offset : 0, a->used };
}

void
cu_arena_reset (CuArena *a, CuMark m)
{
  while (a->head && a->head != m.chunk)
    {
      CuChunk *c = a->head;
      a->head = c->prev;
      c->prev = a->spare;
      a->spare = c;
    }
  if (a->head)
    a->head->offset = m.offset;
  a->used = m.used;
}

static gint
chunk_cmp (gconstpointer a, gconstpointer b)
{
  uintptr_t x = (uintptr_t) (*(CuChunk *const *) a)->base, y = (uintptr_t) (*(CuChunk *const *) b)->base;
  return x < y ? -1 : x > y;
}

void
cu_arena_sort_spare (CuArena *a)
{
  GPtrArray *v = g_ptr_array_new ();
  for (CuChunk *c = a->spare; c; c = c->prev)
    g_ptr_array_add (v, c);
  g_ptr_array_sort (v, chunk_cmp);
  a->spare = NULL;
  for (guint i = v->len; i-- > 0;)
    {
      CuChunk *c = g_ptr_array_index (v, i);
      c->prev = a->spare;
      a->spare = c;
    }
  g_ptr_array_free (v, TRUE);
}

static void
free_chain (CuArena *a, CuChunk *c)
{
  while (c)
    {
      CuChunk *prev = c->prev;
      oftcu_free (c->base);
      a->reserved -= c->size;
      g_free (c);
      c = prev;
    }
}

void
cu_arena_release (CuArena *a)
{
  free_chain (a, a->head);
  free_chain (a, a->spare);
  a->head = a->spare = NULL;
  a->used = 0;
}

/* ---- device weights ---- */

typedef struct {
  GArray *spans;
} Collect;

static void
collect_chunk (const void *base, size_t used, gpointer data)
{
  CuSpan s = { .host = base, .used = used };
  g_array_append_val (((Collect *) data)->spans, s);
}

static gint
span_cmp (gconstpointer a, gconstpointer b)
{
  uintptr_t x = (uintptr_t) ((const CuSpan *) a)->host, y = (uintptr_t) ((const CuSpan *) b)->host;
  return x < y ? -1 : x > y;
}

static gboolean
cuda_failed (const char *what, GError **error)
{
  const char *e = oftcu_error ();
  if (!e)
    return FALSE;
  g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "%s on the GPU: %s", what, e);
  oftcu_clear_error ();
  return TRUE;
}

gboolean
cu_weights_upload (CuWeights *w, const OftArena *host, OftCuDtype dt, const char *what, GError **error)
{
  memset (w, 0, sizeof *w);
  w->dt = dt;
  w->spans = g_array_new (FALSE, TRUE, sizeof (CuSpan));
  w->f32 = g_hash_table_new (NULL, NULL);
  cu_arena_init (&w->f32_store, "fp32 norm parameters", (size_t) 4 << 20);
  Collect col = { w->spans };
  oft_arena_foreach_chunk (host, collect_chunk, &col);
  g_array_sort (w->spans, span_cmp);
  size_t biggest = 0;
  for (guint i = 0; i < w->spans->len; i++)
    biggest = MAX (biggest, g_array_index (w->spans, CuSpan, i).used);
  /* bf16: each chunk goes up as fp32 through a staging buffer of at most 8 MiB, converted there */
  size_t stage_bytes = MIN (biggest, (size_t) 8 << 20);
  void *stage = NULL;
  if (dt != OFTCU_F32 && stage_bytes && !(stage = oftcu_alloc (stage_bytes)))
    goto oom;
  for (guint i = 0; i < w->spans->len; i++)
    {
      CuSpan *s = &g_array_index (w->spans, CuSpan, i);
      size_t n = s->used / sizeof (float);
      if (!(s->dev = oftcu_alloc (MAX (n * oftcu_dtype_size (dt), 1))))
        goto oom;
      if (dt == OFTCU_F32)
        {
          if (oftcu_upload (s->dev, s->host, s->used) != 0)
            break;
        }
      else
        for (size_t off = 0; off < s->used; off += stage_bytes)
          {
            size_t piece = MIN (stage_bytes, s->used - off);
            if (oftcu_upload (stage, s->host + off, piece) != 0)
              break;
            oftcu_convert ((char *) s->dev + off / sizeof (float) * oftcu_dtype_size (dt), dt, stage, OFTCU_F32,
                           (int64_t) (piece / sizeof (float)));
            if (oftcu_sync () != 0)  /* before the staging buffer is written again */
              break;
          }
      if (oftcu_error ())
        break;
    }
  oftcu_free (stage);
  if (cuda_failed (what, error))
    {
      cu_weights_release (w);
      return FALSE;
    }
  return TRUE;
oom:
  {
    const char *e = oftcu_error ();
    g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED,
                 "%s: cannot allocate GPU memory for the weights (%.1f MiB in %s): %s", what,
                 (double) cu_weights_bytes (w) / (1 << 20), dt == OFTCU_F32 ? "fp32" : "bf16",
                 e ? e : "out of memory");
    oftcu_clear_error ();
    oftcu_free (stage);
    cu_weights_release (w);
    return FALSE;
  }
}

size_t
cu_weights_bytes (const CuWeights *w)
{
  size_t n = 0;
  for (guint i = 0; w->spans && i < w->spans->len; i++)
    n += g_array_index (w->spans, CuSpan, i).used / sizeof (float) * oftcu_dtype_size (w->dt);
  return n + w->f32_store.reserved;
}

void
cu_weights_release (CuWeights *w)
{
  for (guint i = 0; w->spans && i < w->spans->len; i++)
    oftcu_free (g_array_index (w->spans, CuSpan, i).dev);
  if (w->spans)
    g_array_unref (w->spans);
  if (w->f32)
    g_hash_table_destroy (w->f32);
  cu_arena_release (&w->f32_store);
  memset (w, 0, sizeof *w);
}

/* The span holding host pointer p, or NULL */
static const CuSpan *
find_span (const CuWeights *w, const void *p)
{
  uintptr_t q = (uintptr_t) p;
  guint lo = 0, hi = w->spans->len;
  while (lo < hi)  /* the first span starting after q */
    {
      guint mid = (lo + hi) / 2;
      if ((uintptr_t) g_array_index (w->spans, CuSpan, mid).host <= q)
        lo = mid + 1;
      else
        hi = mid;
    }
  if (lo == 0)
    return NULL;
  const CuSpan *s = &g_array_index (w->spans, CuSpan, lo - 1);
  return q < (uintptr_t) s->host + s->used ? s : NULL;
}

/* ---- forward context ---- */

void
cx_begin (Cx *c, CuArena *a, CuWeights *w)
{
  *c = (Cx) { .dt = w->dt, .es = oftcu_dtype_size (w->dt), .a = a, .w = w };
  /* a failure left over from an earlier call belongs to it; start clean */
  oftcu_clear_error ();
}

gboolean
cx_end (Cx *c, const char *what, GError **error)
{
  if (c->error)
    {
      g_propagate_prefixed_error (error, c->error, "%s on the GPU: ", what);
      c->error = NULL;
      oftcu_sync ();
      oftcu_clear_error ();
      return FALSE;
    }
  oftcu_sync ();
  return !cuda_failed (what, error);
}

void *
cx_take (Cx *c, int64_t n)
{
  if (c->error)
    return NULL;
  return cu_arena_take (c->a, (size_t) MAX (n, 1) * c->es, &c->error);
}

float *
cx_f32 (Cx *c, int64_t n)
{
  if (c->error)
    return NULL;
  return cu_arena_take (c->a, (size_t) MAX (n, 1) * sizeof (float), &c->error);
}

const void *
cx_w (Cx *c, const float *host)
{
  if (!host || c->error)
    return NULL;
  const CuSpan *s = find_span (c->w, host);
  if (!s)
    {
      g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_FAILED,
                   "a weight is not in the uploaded parameters (changed after the upload?)");
      return NULL;
    }
  size_t idx = (size_t) ((const char *) host - s->host) / sizeof (float);
  return (const char *) s->dev + idx * c->es;
}

const float *
cx_norm (Cx *c, const float *host, int64_t n)
{
  if (!host || c->error)
    return NULL;
  if (c->dt == OFTCU_F32)
    return cx_w (c, host);
  float *d = g_hash_table_lookup (c->w->f32, host);
  if (d)
    return d;
  /* first use: a synchronous copy of a few hundred floats, kept for the model's life */
  d = cu_arena_take (&c->w->f32_store, (size_t) n * sizeof (float), &c->error);
  if (!d)
    return NULL;
  if (oftcu_upload (d, host, (size_t) n * sizeof (float)) != 0)
    {
      g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "uploading norm parameters: %s",
                   oftcu_error () ? oftcu_error () : "?");
      return NULL;
    }
  g_hash_table_insert (c->w->f32, (gpointer) host, d);
  return d;
}

float *
cx_upload_f32 (Cx *c, const float *host, int64_t n)
{
  float *d = cx_f32 (c, n);
  if (d && oftcu_upload (d, host, (size_t) n * sizeof (float)) != 0)
    {
      g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "uploading an input: %s",
                   oftcu_error () ? oftcu_error () : "?");
      return NULL;
    }
  return d;
}

void *
cx_upload (Cx *c, const float *host, int64_t n)
{
  if (c->dt == OFTCU_F32)
    return cx_upload_f32 (c, host, n);
  void *d = cx_take (c, n);
  CuMark m = cx_mark (c);
  float *f = cx_upload_f32 (c, host, n);
  k_convert (c, d, c->dt, f, OFTCU_F32, n);
  cx_reset (c, m);  /* the conversion is queued before anything reuses the staging memory */
  return d;
}

void
cx_download (Cx *c, float *host, const void *dev, int64_t n)
{
  if (c->error)
    return;
  CuMark m = cx_mark (c);
  const void *src = dev;
  if (c->dt != OFTCU_F32)
    {
      float *f = cx_f32 (c, n);
      k_convert (c, f, OFTCU_F32, dev, c->dt, n);
      src = f;
    }
  if (c->error || oftcu_sync () != 0 || oftcu_download (host, src, (size_t) n * sizeof (float)) != 0)
    {
      if (!c->error)
        g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "downloading a result: %s",
                     oftcu_error () ? oftcu_error () : "?");
    }
  cx_reset (c, m);
}

void
cx_tap (Cx *c, CxTapFunc tap, gpointer data, const char *name, const void *dev, int64_t n)
{
  if (!tap || c->error)
    return;
  float *h = g_new (float, n);
  cx_download (c, h, dev, n);
  if (!c->error)
    tap (name, h, n, data);
  g_free (h);
}

void
cu_prof_print (const char *what)
{
  char buf[4096];
  if (oftcu_prof_report (buf, sizeof buf) != 0)
    return;
  char **lines = g_strsplit (buf, "\n", -1);
  for (char **l = lines; *l; l++)
    if (**l)
      printf ("profile: %s: %s\n", what, *l);
  g_strfreev (lines);
}

/* ---- launch wrappers ---- */

#define GO if (c->error) return

void
k_linear (Cx *c, void *out, const void *inp, const void *w, const void *b, int64_t N, int C, int OC)
{
  GO;
  PROF ("linear", oftcu_linear_forward (c->dt, out, inp, w, b, N, C, OC));
}

void
k_conv (Cx *c, void *out, const void *inp, const void *w, const void *b, int B, int C, int H, int W, int OC,
        int k, int stride, int pad)
{
  GO;
  OftCuConvShape s = { .B = B, .C = C, .H = H, .W = W, .OC = OC, .kh = k, .kw = k, .stride = stride, .pad = pad };
  size_t n = oftcu_conv2d_scratch_bytes (c->dt, &s);
  CuMark m = cx_mark (c);
  void *scratch = n ? cu_arena_take (c->a, n, &c->error) : NULL;
  if (!c->error)
    PROF (k == 1 ? "conv1x1" : stride == 1 ? "conv3x3" : "conv3x3 s2",
          oftcu_conv2d_forward (c->dt, out, inp, w, b, &s, scratch));
  cx_reset (c, m);
}

void
k_groupnorm (Cx *c, void *out, float *mean, float *rstd, const void *inp, const float *w, const float *b,
             int B, int C, int64_t HW, int G, float eps)
{
  GO;
  PROF ("groupnorm", oftcu_groupnorm_forward (c->dt, out, mean, rstd, inp, w, b, B, C, HW, G, eps));
}

void
k_groupnorm_silu (Cx *c, void *out, float *mean, float *rstd, const void *inp, const float *w, const float *b,
                  int B, int C, int64_t HW, int G, float eps)
{
  GO;
  PROF ("groupnorm+silu", oftcu_groupnorm_silu_forward (c->dt, out, mean, rstd, inp, w, b, B, C, HW, G, eps));
}

void
k_layernorm (Cx *c, void *out, float *mean, float *rstd, const void *inp, const float *w, const float *b,
             int64_t N, int C, float eps)
{
  GO;
  PROF ("layernorm", oftcu_layernorm_forward (c->dt, out, mean, rstd, inp, w, b, N, C, eps));
}

void
k_silu (Cx *c, void *out, const void *inp, int64_t n)
{
  GO;
  PROF ("silu", oftcu_silu_forward (c->dt, out, inp, n));
}

void
k_geglu (Cx *c, void *out, const void *inp, int64_t N, int C)
{
  GO;
  PROF ("geglu", oftcu_geglu_forward (c->dt, out, inp, N, C));
}

void
k_softmax (Cx *c, void *out, const void *inp, int64_t N, int C)
{
  GO;
  PROF ("softmax", oftcu_softmax_forward (c->dt, out, inp, N, C));
}

void
k_attention (Cx *c, void *out, const void *q, const void *k, const void *v, int B, int Tq, int Tk, int H, int D)
{
  GO;
  PROF (Tq == Tk ? "self-attention" : "cross-attention",
        oftcu_attention_forward (c->dt, out, NULL, q, k, v, B, Tq, Tk, H, D, false));
}

void
k_upsample2x (Cx *c, void *out, const void *inp, int64_t BC, int H, int W)
{
  GO;
  PROF ("upsample2x", oftcu_upsample2x_forward (c->dt, out, inp, BC, H, W));
}

void
k_concat (Cx *c, void *out, const void *a, const void *b, int B, int Ca, int Cb, int64_t HW)
{
  GO;
  PROF ("concat", oftcu_concat_forward (c->dt, out, a, b, B, Ca, Cb, HW));
}

void
k_add (Cx *c, void *out, const void *a, const void *b, int64_t n)
{
  GO;
  PROF ("add", oftcu_add_forward (c->dt, out, a, b, n));
}

void
k_add_channel (Cx *c, void *x, const void *v, int B, int C, int64_t HW)
{
  GO;
  PROF ("add_channel", oftcu_add_channel_forward (c->dt, x, v, B, C, HW));
}

void
k_transpose (Cx *c, void *out, const void *inp, int B, int64_t C, int64_t HW)
{
  GO;
  if (C > G_MAXINT)
    {
      g_set_error (&c->error, OFT_MODEL_ERROR, OFT_ERROR_SHAPE, "a transpose of %" G_GINT64_FORMAT " rows is too large",
                   C);
      return;
    }
  PROF ("transpose", oftcu_transpose_forward (c->dt, out, inp, B, (int) C, HW));
}

void
k_copy (Cx *c, void *dst, const void *src, int64_t n)
{
  GO;
  PROF ("copy", oftcu_copy (dst, src, (size_t) n * c->es));
}

void
k_timestep_embedding (Cx *c, void *out, const float *t, int N, int dim, bool flip, float shift)
{
  GO;
  oftcu_timestep_embedding (c->dt, out, t, N, dim, flip, shift);
}

void
k_block_rotate (Cx *c, void *out, const void *inp, const float *R, int64_t N, int nb, int b)
{
  GO;
  PROF ("block_rotate", oftcu_block_rotate_forward (c->dt, out, inp, R, N, nb, b));
}

void
k_convert (Cx *c, void *dst, OftCuDtype dd, const void *src, OftCuDtype sd, int64_t n)
{
  GO;
  PROF ("convert", oftcu_convert (dst, dd, src, sd, n));
}

void
k_gemm (Cx *c, OftCuDtype dt, bool ta, bool tb, int M, int N, int K, float alpha, const void *A, int lda,
        int64_t sA, const void *B, int ldb, int64_t sB, float beta, void *C, int ldc, int64_t sC, int batch)
{
  GO;
  PROF ("gemm", oftcu_gemm (dt, ta, tb, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch));
}

/* ---- blocks ---- */

void
cu_resnet (Cx *c, void *out, const void *x, const void *temb_act, const OftResnet *r, int B, int H, int W)
{
  /* as oft_resnet_forward_save without saving: c1 lives in out until conv2 overwrites it; each norm and its
   * SiLU are one kernel */
  int64_t HW = (int64_t) H * W, G = (int64_t) B * r->groups;
  CuMark m = cx_mark (c);
  void *a1 = cx_take (c, (int64_t) B * MAX (r->cin, r->cout) * HW), *c1 = out;
  float *mean = cx_f32 (c, G), *rstd = cx_f32 (c, G);
  k_groupnorm_silu (c, a1, mean, rstd, x, cx_norm (c, r->n1w, r->cin), cx_norm (c, r->n1b, r->cin), B, r->cin, HW,
                    r->groups, r->eps);
  k_conv (c, c1, a1, cx_w (c, r->c1w), cx_w (c, r->c1b), B, r->cin, H, W, r->cout, 3, 1, 1);
  if (r->tw && temb_act)
    {
      void *t = cx_take (c, (int64_t) B * r->cout);
      k_linear (c, t, temb_act, cx_w (c, r->tw), cx_w (c, r->tb), B, r->temb, r->cout);
      k_add_channel (c, c1, t, B, r->cout, HW);
    }
  k_groupnorm_silu (c, a1, mean, rstd, c1, cx_norm (c, r->n2w, r->cout), cx_norm (c, r->n2b, r->cout), B, r->cout,
                    HW, r->groups, r->eps);
  k_conv (c, out, a1, cx_w (c, r->c2w), cx_w (c, r->c2b), B, r->cout, H, W, r->cout, 3, 1, 1);
  if (r->scw)
    {
      k_conv (c, a1, x, cx_w (c, r->scw), cx_w (c, r->scb), B, r->cin, H, W, r->cout, 1, 1, 0);
      k_add (c, out, out, a1, B * r->cout * HW);
    }
  else
    k_add (c, out, out, x, B * r->cout * HW);
  cx_reset (c, m);
}

void
cu_upsample (Cx *c, void *out, const void *x, const OftUpsample *u, int B, int H, int W)
{
  CuMark m = cx_mark (c);
  void *up = cx_take (c, (int64_t) B * u->ch * 4 * H * W);
  k_upsample2x (c, up, x, (int64_t) B * u->ch, H, W);
  k_conv (c, out, up, cx_w (c, u->w), cx_w (c, u->b), B, u->ch, 2 * H, 2 * W, u->ch, 3, 1, 1);
  cx_reset (c, m);
}

void
cu_norm_silu_conv (Cx *c, void *out, const void *x, const float *nw, const float *nb, int groups, float eps,
                   const float *cw, const float *cb, int B, int C, int H, int W, int OC)
{
  int64_t HW = (int64_t) H * W;
  CuMark m = cx_mark (c);
  void *h = cx_take (c, (int64_t) B * C * HW);
  float *mean = cx_f32 (c, (int64_t) B * groups), *rstd = cx_f32 (c, (int64_t) B * groups);
  k_groupnorm_silu (c, h, mean, rstd, x, cx_norm (c, nw, C), cx_norm (c, nb, C), B, C, HW, groups, eps);
  k_conv (c, out, h, cx_w (c, cw), cx_w (c, cb), B, C, H, W, OC, 3, 1, 1);
  cx_reset (c, m);
}

/* ---- the vtable ---- */

/* Idempotent: the UNet and the VAE each ask for the device. OFT_CUDA_TF32=0 turns TF32 off for fp32
 * GEMMs (the golden GPU tests compare fp32 at 1e-4 of the scale, which TF32's 10-bit mantissa misses). */
static gboolean
cu_init (char **device_name, GError **error)
{
  static gboolean done;
  static char name[256];
  if (!done)
    {
      if (oftcu_init (0, name, sizeof name) != 0)
        {
          const char *why = oftcu_error ();
          g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED, "CUDA: %s", why ? why : "no usable GPU");
          oftcu_clear_error ();
          return FALSE;
        }
      const char *tf32 = g_getenv ("OFT_CUDA_TF32");
      if (tf32 && g_str_equal (tf32, "0"))
        oftcu_set_tf32 (false);
      done = TRUE;
    }
  if (device_name)
    *device_name = g_strdup (name);
  return TRUE;
}

static size_t
cu_peak_bytes (void)
{
  return oftcu_peak_bytes ();
}

static void
cu_reset_peak (void)
{
  oftcu_reset_peak ();
}

static const OftCudaOps ops = {
  .abi = OFT_CUDA_OPS_ABI,
  .init = cu_init,
  .unet_upload = cu_unet_upload,
  .unet_release = cu_unet_release,
  .unet_forward = cu_unet_forward,
  .unet_train_loss = cu_unet_train_loss,
  .vae_upload = cu_vae_upload,
  .vae_release = cu_vae_release,
  .vae_decode = cu_vae_decode,
  .peak_bytes = cu_peak_bytes,
  .reset_peak = cu_reset_peak,
};

const OftCudaOps *
oft_cuda_ops (void)
{
  return &ops;
}
